//! AmberDB on PostgreSQL (issue 15: a second engine behind the server's API, several servers
//! on one database). In progress: what exists so far is [`testing::TempPostgres`], the real
//! PostgreSQL that this crate's tests, and later the server's suite run against this engine,
//! start in a temporary directory.

pub mod testing;

//! Without PostgreSQL's binaries a test that needs them fails and says what is missing; it
//! does not pass by skipping. (A binary of its own: it changes the environment.)

#![allow(clippy::unwrap_used)]

use amberdb_postgres::testing::TempPostgres;

#[test]
fn missing_postgresql_binaries_are_an_error_that_names_them() {
    let empty = tempfile::tempdir().unwrap();
    std::env::set_var("AMBERDB_PG_BIN", empty.path());
    let err = TempPostgres::start().unwrap_err();
    assert!(
        err.contains("AMBERDB_PG_BIN") && err.contains("pg_ctl"),
        "{err}"
    );
}

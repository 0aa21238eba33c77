//! The engines under test behind one small interface, each in its fairest configuration.
//!
//! Every engine stores the same thing: a JSON value under (collection, key). Writers hand over
//! an owned `serde_json::Value` (what an application holds); AmberDB canonicalizes and hashes
//! it, SQLite, redb and fjall serialize it with `serde_json::to_vec`, all inside the timed region.
//! Readers return the stored value's length so the compiler cannot skip the read.

mod amber;
pub use amber::bench_keyring;
mod fjall;
mod redb;
mod sqlite;

use std::path::Path;

use serde_json::Value;

use crate::Result;

/// An engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum EngineKind {
    /// AmberDB, the engine under test.
    AmberDb,
    /// AmberDB with encryption at rest (a fixed bench key, so a reopen child has it too).
    AmberEncrypted,
    /// SQLite (bundled) through rusqlite.
    Sqlite,
    /// redb.
    Redb,
    /// fjall, an LSM tree.
    Fjall,
}

impl EngineKind {
    /// Every engine, AmberDB first (it is the ratios' numerator).
    pub const ALL: [EngineKind; 5] = [
        EngineKind::AmberDb,
        EngineKind::AmberEncrypted,
        EngineKind::Sqlite,
        EngineKind::Redb,
        EngineKind::Fjall,
    ];

    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::AmberDb => "AmberDB",
            EngineKind::AmberEncrypted => "AmberDB (encrypted)",
            EngineKind::Sqlite => "SQLite",
            EngineKind::Redb => "redb",
            EngineKind::Fjall => "fjall",
        }
    }

    /// Name used on the command line between parent and child processes.
    pub fn arg(self) -> &'static str {
        match self {
            EngineKind::AmberDb => "amberdb",
            EngineKind::AmberEncrypted => "amberdb-encrypted",
            EngineKind::Sqlite => "sqlite",
            EngineKind::Redb => "redb",
            EngineKind::Fjall => "fjall",
        }
    }

    /// Parses [`EngineKind::arg`].
    pub fn from_arg(s: &str) -> Option<EngineKind> {
        EngineKind::ALL.into_iter().find(|e| e.arg() == s)
    }
}

/// Whether acknowledged commits must survive power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Acknowledged after fsync: AmberDB `Sync`, SQLite `synchronous=FULL`, redb `Immediate`,
    /// fjall `PersistMode::SyncData`.
    Durable,
    /// Acknowledged after the OS write: AmberDB `Buffered`, SQLite `synchronous=NORMAL`, redb
    /// `Durability::None` with an `Immediate` commit in [`Store::sync`].
    Buffered,
}

/// One open database.
pub trait Store: Send + Sync {
    /// Commits one document in its own transaction.
    fn put(&self, key: &str, value: Value) -> Result<()>;
    /// Commits many documents in one transaction.
    fn put_batch(&self, docs: Vec<(String, Value)>) -> Result<()>;
    /// Makes every acknowledged commit durable (the end of a buffered run).
    fn sync(&self) -> Result<()>;
    /// A read handle for one thread.
    fn reader(&self) -> Result<Box<dyn Reader + Send + '_>>;
    /// Commits made durable per fsync since open, where the engine counts it.
    fn commits_per_fsync(&self) -> Option<f64> {
        None
    }
    /// Closes cleanly.
    fn close(self: Box<Self>) -> Result<()>;
}

/// Reads for one thread. Every read sees the latest committed state.
pub trait Reader {
    /// The length of the stored value, if the key exists.
    fn get(&mut self, key: &str) -> Result<Option<usize>>;
    /// Up to `limit` documents whose key starts with `prefix`, in key order: (docs, bytes).
    fn prefix(&mut self, prefix: &str, limit: usize) -> Result<(usize, usize)>;
    /// Up to `limit` documents with keys strictly after `start_after`, in key order.
    fn after(&mut self, start_after: &str, limit: usize) -> Result<(usize, usize)>;
}

/// Opens (creating) the engine's database inside `dir`.
pub fn open(kind: EngineKind, dir: &Path, mode: Mode) -> Result<Box<dyn Store>> {
    std::fs::create_dir_all(dir)?;
    Ok(match kind {
        EngineKind::AmberDb => Box::new(amber::AmberStore::open(dir, mode, None)?),
        EngineKind::AmberEncrypted => Box::new(amber::AmberStore::open(
            dir,
            mode,
            Some(amber::bench_keyring()),
        )?),
        EngineKind::Sqlite => Box::new(sqlite::SqliteStore::open(dir, mode)?),
        EngineKind::Redb => Box::new(redb::RedbStore::open(dir, mode)?),
        EngineKind::Fjall => Box::new(fjall::FjallStore::open(dir, mode)?),
    })
}

/// How each engine is configured, for the tables' notes.
pub fn config_notes(mode: Mode) -> Vec<String> {
    match mode {
        Mode::Durable => vec![
            "AmberDB: `Durability::Sync` (ack after fdatasync, group commit), default options."
                .into(),
            "SQLite: WAL, `synchronous=FULL`, one table `docs(collection, key, value)` with \
             UNIQUE(collection, key), cached prepared statements, `mmap_size` 8 GiB; writers \
             share one connection behind a mutex (no busy-retry sleeps)."
                .into(),
            "redb: `Durability::Immediate`, one table keyed by (collection, key), 1 GiB cache."
                .into(),
            "fjall: one keyspace keyed by collection \\0 key, 1 GiB cache; each commit a write \
             batch with `PersistMode::SyncData` (fdatasync of the journal)."
                .into(),
        ],
        Mode::Buffered => vec![
            "AmberDB: `Buffered { max_delay: 100 ms }` (ack after write(2), fsync at most \
             100 ms later), then one `sync()`."
                .into(),
            "SQLite: WAL, `synchronous=NORMAL` (no fsync per commit; fsync at WAL checkpoints)."
                .into(),
            "redb: `Durability::None` per commit, then one `Durability::Immediate` commit.".into(),
            "fjall: each commit a write batch with `PersistMode::Buffer`, then one \
             `persist(SyncData)`."
                .into(),
        ],
    }
}

/// The buffered AmberDB delay, stated in the notes.
pub const AMBER_BUFFERED_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

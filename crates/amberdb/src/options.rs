//! Tuning knobs for opening a database, with the defaults documented per field.

use std::time::Duration;

use crate::io::Faults;
use crate::txn::Durability;

/// How to open a database. `Options::default()` is a durable, sensible configuration.
#[derive(Debug, Clone)]
pub struct Options {
    /// Durability of transactions that do not choose one. Default: `Sync`.
    pub durability: Durability,
    /// Largest canonical JSON value accepted, in bytes. Default: 16 MiB.
    pub max_doc_bytes: usize,
    /// A log segment is sealed and a new one started once it reaches this size. Default: 64 MiB.
    pub segment_size: u64,
    /// A background checkpoint starts after this many log bytes. Default: 128 MiB.
    pub checkpoint_log_bytes: u64,
    /// A background checkpoint starts after this long if anything was written; `None`
    /// disables time-based checkpoints. Default: 5 minutes.
    pub checkpoint_interval: Option<Duration>,
    /// Write a checkpoint on clean close, so the next open replays nothing. Default: true.
    pub checkpoint_on_close: bool,
    /// zstd level for checkpoint blocks; 0 stores them uncompressed. Default: 1.
    pub checkpoint_compression_level: i32,
    /// Keep sealed log segments at least this long after their last commit, even when no
    /// checkpoint needs them (the history window). Default: 0.
    pub log_retention: Duration,
    /// Most transactions the committer groups into one write and one fsync. Default: 1024.
    pub max_batch: usize,
    /// Fault injection for tests. Default: none.
    pub faults: Faults,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Sync,
            max_doc_bytes: 16 << 20,
            segment_size: 64 << 20,
            checkpoint_log_bytes: 128 << 20,
            checkpoint_interval: Some(Duration::from_secs(300)),
            checkpoint_on_close: true,
            checkpoint_compression_level: 1,
            log_retention: Duration::ZERO,
            max_batch: 1024,
            faults: Faults::default(),
        }
    }
}

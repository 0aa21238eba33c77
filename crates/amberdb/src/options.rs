//! Tuning knobs for opening a database, with the defaults documented per field.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::backup::BackupSchedule;
use crate::clock::{Clock, SystemClock};
use crate::io::Faults;
use crate::txn::Durability;

/// How to open a database. `Options::default()` is a durable, sensible configuration.
#[derive(Debug, Clone)]
pub struct Options {
    /// Durability of transactions that do not choose one. Default: `Sync`.
    pub durability: Durability,
    /// Largest canonical JSON value accepted, in bytes. At most `limits::MAX_DOC_BYTES`
    /// (256 MiB; `open` refuses more). Default: 16 MiB.
    pub max_doc_bytes: usize,
    /// Largest transaction, as the payload of its commit record (every written value plus
    /// its metadata), in bytes; a larger one gets `Error::TransactionTooLarge` and nothing is
    /// written. At most `limits::MAX_PAYLOAD_LEN` (1 GiB, the largest commit frame; `open`
    /// refuses more). Default: 1 GiB.
    pub max_txn_bytes: usize,
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
    /// The history window: keep sealed log segments at least this long after their last
    /// commit, even when no checkpoint needs them, so `Db::history`, `Db::get_at` and
    /// `Db::list_at` can read them (see also `history_max_bytes`; whichever is reached first
    /// bounds the window). Formerly `log_retention`. Default: 72 hours.
    pub history_retention: Duration,
    /// The history window's size bound: once the retained log exceeds this many bytes, its
    /// oldest segments go even inside `history_retention` (never one a checkpoint or an
    /// attached repository still needs). Default: 4 GiB.
    pub history_max_bytes: u64,
    /// Keep the tombstone of a deleted key at least this long (in commit time) after the
    /// delete, and at least `history_retention`: while it exists, a re-created document's
    /// `prev_lsn` links to the delete. Pruning never lets a version repeat (a collection
    /// keeps the highest version its pruned tombstones held). Default: 1 hour.
    pub tombstone_retention: Duration,
    /// Most transactions the committer groups into one write and one fsync. Default: 1024.
    pub max_batch: usize,
    /// Copy every sealed log segment to this backup repository as soon as it is sealed
    /// (continuous archiving). Default: none.
    pub archive_to: Option<PathBuf>,
    /// With archiving on, seal the active segment once its oldest unarchived commit is this
    /// old, bounding how much recent history only the data directory holds. Default: 60 s.
    pub archive_timeout: Option<Duration>,
    /// Scheduled backups (and retention) run by a thread owned by the database. Default: none.
    pub backup_schedule: Option<BackupSchedule>,
    /// zstd level for backup snapshots and archived segments. Default: 3.
    pub backup_compression_level: i32,
    /// What `open` does when the data directory is damaged beyond a torn tail.
    pub recovery: RecoveryMode,
    /// Log a warning when the log kept for attached repositories grows past this many bytes
    /// (a repository that is no longer backed up to; `amberdb backup detach` releases it).
    /// Default: 1 GiB.
    pub max_retained_log_bytes: u64,
    /// Create the database when `dir` holds none. With `false`, opening a directory that is
    /// not a database (no `log/`: missing, empty, a backup repository, anything else) fails
    /// with `InvalidArgument` and writes nothing: for read-only tools. Default: true.
    pub create_if_missing: bool,
    /// Fault injection for tests. Default: none.
    pub faults: Faults,
    /// Files and directories the engine creates get group read access (0640/0750) instead
    /// of owner-only (0600/0700); the umask never widens either. The mode is process-wide
    /// (like the umask): opening any database with `true` turns it on for every file created
    /// afterwards, see [`crate::io::set_group_access`]. Default: false.
    pub group_access: bool,
    /// Encryption at rest (issue 12, `docs/ENCRYPTION.md`): new log segments and checkpoints
    /// are sealed with the keyring's first key; files sealed with any of its keys are read.
    /// Opening a directory that holds a file sealed with a key the keyring lacks (or any
    /// encrypted file, with `None`) fails with `Error::KeyMissing` naming the key id.
    /// Default: none (files are written unencrypted).
    pub encryption: Option<crate::crypto::Keyring>,
    /// Where the engine reads time: commit timestamps, TTL expiry, log and history aging.
    /// Tests inject a [`crate::clock::ManualClock`]. Default: the system clock.
    pub clock: Arc<dyn Clock>,
    /// Called with every system event (open and recovery, backups, verify, checkpoints,
    /// poisoning, background failures; `feed::events`), on the thread that emits it: keep
    /// it short. Default: none.
    pub on_event: Option<crate::feed::events::EventHook>,
    /// The TTL reaper runs a pass this often (deleting expired documents in a logged
    /// transaction with reason `ttl`); `None` runs none in the background (only
    /// `Db::reap_expired`). Expired documents are invisible at once either way: the reaper
    /// only frees their memory and logs their end. Default: 1 s.
    pub ttl_reap_interval: Option<Duration>,
    /// Most documents one reaper pass deletes (one transaction); with the interval, the
    /// reaper's rate limit. Default: 1000.
    pub ttl_reap_batch: usize,
    /// The blob collector ([`crate::Db::gc_blobs`]) runs this often in the background,
    /// removing blob files nothing needs any more and staged uploads older than an hour;
    /// `None` runs none (only explicit calls). Default: 10 minutes.
    pub blob_gc_interval: Option<Duration>,
    /// Largest blob an upload may stream, in bytes (default 1 GiB,
    /// `limits::DEFAULT_MAX_BLOB_BYTES`; at most `limits::MAX_BLOB_BYTES`).
    pub max_blob_bytes: u64,
    /// Bytes after which a stream's next append starts a new stream file (default 64 MiB).
    /// Retention removes whole files, so this is also how much trimmed data a stream may keep
    /// on disk until its file is full.
    pub stream_segment_bytes: u64,
    /// Rust functions that migration specs may call as steps (`{"op": "native", "name"}`),
    /// for embedded use; see [`crate::schema::NativeSteps`]. Default: none.
    pub native_steps: crate::schema::NativeSteps,
}

impl Options {
    /// These options with encryption at rest under `keys` (see [`Options::encryption`]).
    pub fn encryption(mut self, keys: crate::crypto::Keyring) -> Options {
        self.encryption = Some(keys);
        self
    }
}

/// Default of [`Options::history_retention`]: 72 hours.
pub const DEFAULT_HISTORY_RETENTION: Duration = Duration::from_secs(72 * 3600);
/// Default of [`Options::history_max_bytes`]: 4 GiB.
pub const DEFAULT_HISTORY_MAX_BYTES: u64 = 4 << 30;

/// What `open` does when it finds damage it cannot repair by cutting a torn tail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Refuse to open, naming the file, the offset and what to run. The default.
    #[default]
    Refuse,
    /// Quarantine the damaged files under `DATA/quarantine/<time>/` and rebuild from whatever
    /// reaches furthest: local checkpoints and log, or the newest good backup in `repo` plus
    /// its archived log (then any valid local log after it). The open returns a report of
    /// what was recovered and what, if anything, was lost.
    Auto {
        /// The backup repository to recover from.
        repo: PathBuf,
    },
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Sync,
            max_doc_bytes: crate::limits::DEFAULT_MAX_DOC_BYTES,
            max_txn_bytes: crate::limits::DEFAULT_MAX_TXN_BYTES,
            segment_size: 64 << 20,
            checkpoint_log_bytes: 128 << 20,
            checkpoint_interval: Some(Duration::from_secs(300)),
            checkpoint_on_close: true,
            checkpoint_compression_level: 1,
            history_retention: DEFAULT_HISTORY_RETENTION,
            history_max_bytes: DEFAULT_HISTORY_MAX_BYTES,
            tombstone_retention: crate::state::DEFAULT_TOMBSTONE_RETENTION,
            archive_to: None,
            archive_timeout: Some(Duration::from_secs(60)),
            backup_schedule: None,
            backup_compression_level: 3,
            recovery: RecoveryMode::Refuse,
            max_retained_log_bytes: 1 << 30,
            max_batch: 1024,
            create_if_missing: true,
            faults: Faults::default(),
            group_access: false,
            encryption: None,
            clock: Arc::new(SystemClock),
            on_event: None,
            ttl_reap_interval: Some(Duration::from_secs(1)),
            ttl_reap_batch: 1000,
            blob_gc_interval: Some(Duration::from_secs(600)),
            max_blob_bytes: crate::limits::DEFAULT_MAX_BLOB_BYTES,
            stream_segment_bytes: crate::stream::files::DEFAULT_STREAM_SEGMENT_BYTES,
            native_steps: Default::default(),
        }
    }
}

//! The engine's error type. Every variant carries enough context for the CLI and the server to
//! turn it into a sentence, a hint and a stable code without guessing.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a transaction's precondition failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictReason {
    /// `if_version` or `check` named a version the document does not have.
    VersionMismatch,
    /// `create` found an existing document.
    AlreadyExists,
    /// `replace` or `patch` found no document.
    Missing,
    /// An append's `expected_seq` is not the stream's last sequence number (`collection` is
    /// the stream, `key` is empty, versions are sequence numbers).
    StreamSeqMismatch,
}

/// One failed precondition: which document, what was expected and what was found.
///
/// Versions use 0 for "no document".
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Conflict {
    /// Index of the operation in the transaction.
    pub op_index: usize,
    /// Collection of the document.
    pub collection: String,
    /// Key of the document.
    pub key: String,
    /// Version the operation required (0 = must not exist).
    pub expected: u64,
    /// Version the document had when the transaction was validated (0 = missing).
    pub actual: u64,
    /// What kind of precondition failed.
    pub reason: ConflictReason,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.reason {
            ConflictReason::VersionMismatch => "version mismatch",
            ConflictReason::AlreadyExists => "document already exists",
            ConflictReason::Missing => "document does not exist",
            ConflictReason::StreamSeqMismatch => {
                return write!(
                    f,
                    "op {}: stream {}: expected_seq {} but the stream's last sequence number is {}",
                    self.op_index, self.collection, self.expected, self.actual
                );
            }
        };
        write!(
            f,
            "op {}: {}/{}: {what} (expected version {}, actual {})",
            self.op_index, self.collection, self.key, self.expected, self.actual
        )
    }
}

/// Damage found in a file of the data directory that recovery could not repair on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The damaged file.
    pub file: PathBuf,
    /// Byte offset of the first damaged record in `file`.
    pub offset: u64,
    /// What is wrong.
    pub detail: String,
    /// What the operator can run to fix it.
    pub hint: String,
}

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A collection name does not match `[a-z0-9_][a-z0-9_.-]{0,63}`.
    #[error("invalid collection name {name:?}: {reason}")]
    InvalidCollection {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A document key is empty, longer than 1024 bytes, or contains a NUL byte.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The rejected key (possibly truncated for display).
        key: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A value, patch or request is not valid JSON or not the expected shape.
    #[error("invalid value: {0}")]
    InvalidValue(String),
    /// A document would exceed the configured size limit.
    #[error("document {collection}/{key} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Collection of the document.
        collection: String,
        /// Key of the document.
        key: String,
        /// Size of its canonical JSON encoding.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// One or more preconditions failed; nothing in the transaction was applied.
    #[error("transaction conflict: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Conflict(Vec<Conflict>),
    /// A JSON Patch could not be applied (for example a failed `test` operation).
    #[error("patch of {collection}/{key} failed: {message}")]
    PatchFailed {
        /// Collection of the document.
        collection: String,
        /// Key of the document.
        key: String,
        /// The patch library's explanation.
        message: String,
    },
    /// An earlier write or fsync failed, so the on-disk state is uncertain. Every later write
    /// fails with this error until the database is closed and reopened; reads keep working.
    #[error("database is poisoned after an I/O failure ({cause}); writes are refused until it is reopened")]
    Poisoned {
        /// The original failure.
        cause: String,
    },
    /// The write or fsync of the batch holding this commit failed after its bytes may have
    /// reached the disk: the commit was not acknowledged, but it may be present after the
    /// database is reopened. Re-read the documents it wrote before retrying (a blind retry
    /// of a non-idempotent change may apply it twice). The database is poisoned; later
    /// writes get [`Error::Poisoned`].
    #[error("the outcome of commit LSN {lsn} is unknown after an I/O failure ({cause}); it may be present after a reopen: re-read before retrying")]
    CommitOutcomeUnknown {
        /// The LSN the commit was assigned.
        lsn: u64,
        /// The failure that poisoned the database.
        cause: String,
    },
    /// A transaction's commit record would exceed the largest commit frame the log accepts
    /// (or the configured `Options::max_txn_bytes`); nothing was written.
    #[error("transaction is {size} bytes as a commit record ({ops} operations), over the limit of {limit} bytes; split it into smaller transactions")]
    TransactionTooLarge {
        /// Encoded size of the commit record's payload.
        size: usize,
        /// Operations in the transaction.
        ops: usize,
        /// The limit it exceeds.
        limit: usize,
    },
    /// The database has been closed.
    #[error("database is closed")]
    Closed,
    /// Another process (or another handle in this process) holds the data directory.
    #[error("data directory {} is in use{}", path.display(), pid.map(|p| format!(" by pid {p}")).unwrap_or_default())]
    Locked {
        /// The data directory.
        path: PathBuf,
        /// The holder's pid, when it could be read from the lock file.
        pid: Option<u32>,
    },
    /// A file is damaged in a way recovery will not paper over.
    #[error("{}: damaged at offset {}: {}. {}", .0.file.display(), .0.offset, .0.detail, .0.hint)]
    Damaged(Damage),
    /// A backup repository is missing, malformed, or holds damaged data.
    #[error("backup repository {location}: {detail}")]
    Repository {
        /// Where the repository is.
        location: String,
        /// What is wrong.
        detail: String,
    },
    /// A restore target cannot be reached; nothing was written.
    #[error("cannot restore to {target}: {reason}; the furthest reachable point is {reached}")]
    Unreachable {
        /// The requested target.
        target: String,
        /// How far a restore could get (LSN and time), or "nothing".
        reached: String,
        /// Why it stops there.
        reason: String,
    },
    /// A history, as-of, revert or undo target, or a change-feed cursor, reaches before the
    /// history window (`Options::history_retention`, `Options::history_max_bytes`): the log it
    /// needs is no longer kept. A feed resyncs from a snapshot and resumes at an LSN at or
    /// after `retained_from_lsn - 1`.
    #[error(
        "that point is older than the history window, which starts at LSN {retained_from_lsn}: resync from a snapshot or a backup"
    )]
    HistoryLost {
        /// The oldest LSN the window still answers for.
        retained_from_lsn: u64,
    },
    /// An argument is invalid (an empty retention policy, a non-empty restore directory, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// A sealed unit names an encryption key id that no key in the keyring has: the key is
    /// missing or a wrong key was supplied. Not damage.
    #[error("{unit} is encrypted with key id {key_id:08x}, which is not in the keyring (it holds {available}): supply that key; this is a missing key, not damage")]
    KeyMissing {
        /// The key id the unit needs (as in the `u32 key_id` header fields).
        key_id: u32,
        /// The unit (file kind, ids, LSN, index).
        unit: String,
        /// Ids of the keys the keyring does hold, comma-separated.
        available: String,
    },
    /// A sealed unit did not authenticate under the key its envelope names (damaged bytes,
    /// a unit moved from another file, offset or timeline, or a malformed envelope).
    #[error(
        "{unit}: encrypted contents failed authentication under key id {key_id:08x}: {detail}"
    )]
    Unauthentic {
        /// The key id the envelope names; 0 when the envelope is too malformed to name one.
        key_id: u32,
        /// The unit (file kind, ids, LSN, index).
        unit: String,
        /// What failed.
        detail: String,
    },
    /// An encryption key could not be loaded (wrong length, not base64, unreadable file).
    #[error("encryption key from {origin}: {reason}")]
    InvalidEncryptionKey {
        /// Where the key came from (key file path or environment variable).
        origin: String,
        /// What is wrong with it and how to make a good one.
        reason: String,
    },
    /// A blob upload streamed more than `Options::max_blob_bytes`; nothing was stored.
    #[error("blob {collection}/{key} is over the limit of {limit} bytes")]
    BlobTooLarge {
        /// The collection.
        collection: String,
        /// The blob's key.
        key: String,
        /// The configured limit.
        limit: u64,
    },
    /// An upload's bytes do not hash to the SHA-256 the client declared; nothing was stored.
    #[error("the upload's SHA-256 is {actual}, not the declared {expected}")]
    DigestMismatch {
        /// What the client declared (hex).
        expected: String,
        /// What the bytes hash to (hex).
        actual: String,
    },
    /// A document does not satisfy the JSON Schema of the version it would be stored at.
    #[error("{collection}/{key} does not match the schema of version {schema_version} ({total} error{}): {}", if *total == 1 { "" } else { "s" }, errors.iter().map(|e| format!("{}: {}", if e.instance_path.is_empty() { "/" } else { &e.instance_path }, e.message)).collect::<Vec<_>>().join("; "))]
    SchemaValidation {
        /// The collection.
        collection: String,
        /// The document's key.
        key: String,
        /// The version whose schema it fails.
        schema_version: u32,
        /// The errors (at most `limits::MAX_SCHEMA_ERRORS`).
        errors: Vec<crate::schema::SchemaError>,
        /// How many errors there are in all.
        total: usize,
    },
    /// A reader or writer asked for an older version, and a migration on the way down has
    /// no `down`.
    #[error("{collection}: no down migration from version {from} to {to}: migration {missing_from} -> {missing_to} has no down")]
    NoDownMigration {
        /// The collection.
        collection: String,
        /// The version the document is at.
        from: u32,
        /// The version asked for.
        to: u32,
        /// The migration without a `down`: its `from`.
        missing_from: u32,
        /// Its `to`.
        missing_to: u32,
    },
    /// Migrating a document between versions failed (a step failed, or an old client's
    /// change cannot be carried to the current version).
    #[error("migrating {collection}/{key} from version {from} to {to} failed: {message}")]
    MigrationFailed {
        /// The collection.
        collection: String,
        /// The document's key.
        key: String,
        /// The version it started at.
        from: u32,
        /// The version it was going to.
        to: u32,
        /// What failed (the migration, direction and step).
        message: String,
    },
    /// An operating-system I/O error, with what the engine was doing.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, including the path.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Adds a context string to `io::Result`s.
pub(crate) trait IoContext<T> {
    fn context(self, f: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, f: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(f(), e))
    }
}

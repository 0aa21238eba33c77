//! Transactions: an ordered list of operations applied atomically, and what a commit returns.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::log::record::CommitReason;

/// What a commit records about why it was made: ordinary transactions are
/// `CommitReason::Write` with no target; reverts, undos, restores, the TTL reaper and batch
/// migrations say so, with the LSN they refer to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CommitMeta {
    /// Why the commit is made.
    pub reason: CommitReason,
    /// The LSN a revert, undo or restore refers to, 0 for none.
    pub target_lsn: u64,
}

/// How durable a commit must be before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Acknowledged after `fdatasync`: survives power loss.
    Sync,
    /// Acknowledged after the OS write, fsynced at most `max_delay` later: survives a process
    /// crash, may lose the last `max_delay` of commits on power loss.
    Buffered {
        /// Longest time a commit may stay unsynced.
        max_delay: Duration,
    },
}

/// A patch to apply to a document's current value.
#[derive(Debug, Clone, PartialEq)]
pub enum Patch {
    /// RFC 7396 JSON Merge Patch.
    Merge(serde_json::Value),
    /// RFC 6902 JSON Patch.
    Json(json_patch::Patch),
}

/// What a write operation does.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteKind {
    /// Create or overwrite.
    Put(serde_json::Value),
    /// Create; fails if the document exists.
    Create(serde_json::Value),
    /// Overwrite; fails if the document is missing.
    Replace(serde_json::Value),
    /// Patch the current value; fails if the document is missing.
    Patch(Patch),
    /// Delete; deleting a missing document is a no-op unless `if_version` says otherwise.
    Delete,
}

/// A write to one document.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    /// Target collection.
    pub collection: String,
    /// Target key.
    pub key: String,
    /// What to do.
    pub kind: WriteKind,
    /// Required current version (0 = must not exist).
    pub if_version: Option<u64>,
    /// Schema version of the written value (default 1).
    pub schema_version: Option<u32>,
    /// When the written document expires; [`Expiry::Unset`] lets the write decide (see
    /// [`Expiry`]).
    pub expiry: Expiry,
}

/// What a write says about its document's expiry (`DocMeta::expires_at`).
///
/// A document whose `expires_at` is at or before the clock's now is invisible to every read
/// and counts as missing for transaction preconditions; the TTL reaper deletes it later in a
/// logged transaction (`docs/API.md`, "TTL").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Expiry {
    /// The write sets no expiry: the collection's default TTL applies when its spec has one
    /// (counted from this commit); otherwise a `patch` keeps the document's current expiry
    /// and every other write clears it.
    #[default]
    Unset,
    /// The document never expires, whatever the collection's default.
    Never,
    /// The document expires this long after the commit's timestamp (at most
    /// [`crate::limits::MAX_TTL`]).
    Ttl(Duration),
    /// The document expires at this time, microseconds since the Unix epoch. Must be after
    /// the commit's timestamp and at most [`crate::limits::MAX_TTL`] after it: a time in the
    /// past is refused (`Error::InvalidArgument`) rather than writing a document nobody can
    /// read.
    At(u64),
}

impl Write {
    /// Requires the document to be at `version` (0 = must not exist) when the transaction commits.
    pub fn if_version(&mut self, version: u64) -> &mut Self {
        self.if_version = Some(version);
        self
    }

    /// Declares the schema version of the written value.
    pub fn schema_version(&mut self, version: u32) -> &mut Self {
        self.schema_version = Some(version);
        self
    }

    /// The written document expires `ttl` after the commit (refreshing any expiry it had).
    pub fn ttl(&mut self, ttl: Duration) -> &mut Self {
        self.expiry = Expiry::Ttl(ttl);
        self
    }

    /// The written document expires at `micros` (microseconds since the Unix epoch).
    pub fn expires_at(&mut self, micros: u64) -> &mut Self {
        self.expiry = Expiry::At(micros);
        self
    }

    /// The written document never expires, overriding the collection's default TTL and, for
    /// a patch, the document's current expiry.
    pub fn never_expires(&mut self) -> &mut Self {
        self.expiry = Expiry::Never;
        self
    }
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// A write.
    Write(Write),
    /// A precondition on a document's version (0 = must not exist), writing nothing.
    Check {
        /// Collection of the document.
        collection: String,
        /// Key of the document.
        key: String,
        /// Required version.
        version: u64,
    },
    /// A write to a blob (`crate::blob`): naming a staged blob, or deleting one.
    Blob(crate::blob::BlobWrite),
    /// Appends entries to a stream (issue 13): each gets the next sequence number and the
    /// commit's time. With `expected_seq`, the transaction fails (a conflict with reason
    /// `StreamSeqMismatch`) unless the stream's last sequence number is that (0: no entries
    /// were ever appended), so a retrying client appends exactly once.
    Append {
        /// The stream (named like a collection).
        stream: String,
        /// The entries, in order (at most `limits::MAX_APPEND_ENTRIES`).
        values: Vec<serde_json::Value>,
        /// Required last sequence number of the stream.
        expected_seq: Option<u64>,
    },
}

/// An ordered list of operations applied all-or-nothing.
///
/// ```
/// # use amberdb::Transaction;
/// # use serde_json::json;
/// let mut tx = Transaction::new();
/// tx.check("parties", "p9", 4);
/// tx.put("players", "alice", json!({"hp": 10})).if_version(2);
/// tx.delete("invites", "alice->p9");
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transaction {
    /// The operations, in order.
    pub ops: Vec<Op>,
    /// Durability for this transaction; `None` uses the database default.
    pub durability: Option<Durability>,
}

impl Transaction {
    /// An empty transaction.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether any operation is a blob write or delete (such a transaction stages files, so
    /// it commits with `Db::commit`, not `Db::commit_async`).
    pub fn has_blobs(&self) -> bool {
        self.ops.iter().any(|op| matches!(op, Op::Blob(_)))
    }

    /// Sets this transaction's durability.
    pub fn durability(&mut self, durability: Durability) -> &mut Self {
        self.durability = Some(durability);
        self
    }

    fn write(&mut self, collection: &str, key: &str, kind: WriteKind) -> &mut Write {
        self.ops.push(Op::Write(Write {
            collection: collection.to_owned(),
            key: key.to_owned(),
            kind,
            if_version: None,
            schema_version: None,
            expiry: Expiry::Unset,
        }));
        match self.ops.last_mut() {
            Some(Op::Write(w)) => w,
            _ => unreachable!("a write was just pushed"),
        }
    }

    /// Creates or overwrites a document.
    pub fn put(&mut self, collection: &str, key: &str, value: serde_json::Value) -> &mut Write {
        self.write(collection, key, WriteKind::Put(value))
    }

    /// Creates a document; the transaction fails if it exists.
    pub fn create(&mut self, collection: &str, key: &str, value: serde_json::Value) -> &mut Write {
        self.write(collection, key, WriteKind::Create(value))
    }

    /// Overwrites a document; the transaction fails if it is missing.
    pub fn replace(&mut self, collection: &str, key: &str, value: serde_json::Value) -> &mut Write {
        self.write(collection, key, WriteKind::Replace(value))
    }

    /// Applies an RFC 7396 merge patch or RFC 6902 JSON Patch to an existing document.
    pub fn patch(&mut self, collection: &str, key: &str, patch: Patch) -> &mut Write {
        self.write(collection, key, WriteKind::Patch(patch))
    }

    /// Deletes a document.
    pub fn delete(&mut self, collection: &str, key: &str) -> &mut Write {
        self.write(collection, key, WriteKind::Delete)
    }

    /// Requires a document to be at `version` (0 = must not exist).
    pub fn check(&mut self, collection: &str, key: &str, version: u64) -> &mut Self {
        self.ops.push(Op::Check {
            collection: collection.to_owned(),
            key: key.to_owned(),
            version,
        });
        self
    }

    /// Makes the blob staged under `staging_id` (`Db::stage_blob`) the new version of the
    /// blob `collection/key` when this transaction commits.
    pub fn blob_ref(&mut self, collection: &str, key: &str, staging_id: &str) -> &mut Self {
        self.ops.push(Op::Blob(crate::blob::BlobWrite {
            collection: collection.to_owned(),
            key: key.to_owned(),
            kind: crate::blob::BlobWriteKind::Ref(staging_id.to_owned()),
            if_version: None,
        }));
        self
    }

    /// Deletes the blob `collection/key`.
    pub fn delete_blob(&mut self, collection: &str, key: &str) -> &mut Self {
        self.ops.push(Op::Blob(crate::blob::BlobWrite {
            collection: collection.to_owned(),
            key: key.to_owned(),
            kind: crate::blob::BlobWriteKind::Delete,
            if_version: None,
        }));
        self
    }

    /// Appends `values` to `stream` (see [`Op::Append`]).
    pub fn append(
        &mut self,
        stream: &str,
        values: Vec<serde_json::Value>,
        expected_seq: Option<u64>,
    ) -> &mut Self {
        self.ops.push(Op::Append {
            stream: stream.to_owned(),
            values,
            expected_seq,
        });
        self
    }

    /// True when the transaction has no operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// The outcome of one operation of a committed transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpResult {
    /// Collection of the document.
    pub collection: String,
    /// Key of the document.
    pub key: String,
    /// The document's version after the operation (0 when deleted or absent).
    pub version: u64,
    /// Whether the operation changed anything (`false` for checks and no-op deletes).
    pub written: bool,
    /// The document's schema version after the operation (0 when deleted or absent): what a
    /// patch kept, or what the write declared.
    pub schema_version: u32,
    /// When the document expires after the operation (microseconds since the Unix epoch),
    /// `None` for never (and for deletes and absent documents).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// What a successful commit returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Committed {
    /// LSN of the commit, or the current LSN when the transaction wrote nothing.
    pub lsn: u64,
    /// Commit time, microseconds since the Unix epoch.
    pub commit_ts: u64,
    /// One result per operation, in order.
    pub results: Vec<OpResult>,
}

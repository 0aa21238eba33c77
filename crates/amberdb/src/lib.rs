//! AmberDB: a durable, versioned document store for game and app state.
//!
//! Every change is a transaction in a checksummed commit log; state lives in memory as
//! persistent maps published to readers as immutable views; checkpoints bound recovery time.
//! See `docs/ARCHITECTURE.md` for how a write and a read flow through the modules and
//! `docs/FORMAT.md` for the bytes on disk.
//!
//! ```
//! use amberdb::{Db, Transaction, ListOptions};
//! use serde_json::json;
//!
//! # fn main() -> amberdb::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! let db = Db::open(dir.path())?;
//! db.put("players", "alice", json!({"level": 3, "hp": 20}))?;
//!
//! // Atomic, with optimistic concurrency: only if alice is still at version 1.
//! let mut tx = Transaction::new();
//! tx.put("players", "alice", json!({"level": 4, "hp": 25})).if_version(1);
//! tx.create("events", "alice-levelup-4", json!({"at": "dungeon"}));
//! db.commit(&tx)?;
//!
//! let alice = db.get("players", "alice").expect("present");
//! assert_eq!(alice.meta.version, 2);
//! assert_eq!(alice.json()?["level"], 4);
//! assert_eq!(db.list("players", &ListOptions::default()).docs.len(), 1);
//! db.close()?;
//! # Ok(()) }
//! ```
//!
//! The data set must fit in memory: the engine keeps every live document in RAM and writes
//! only the log and checkpoints to disk.

#![deny(unsafe_code)]
#![warn(missing_docs)]
// Engine code never panics on a missing value or an out-of-range index: `?` with a typed
// error, `get(..)` with a damage error in decoders, or `expect` naming the invariant.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::indexing_slicing))]

pub mod backup;
pub mod blob;
pub mod checkpoint;
pub mod clock;
mod codec;
mod committer;
pub mod crypto;
mod db;
mod document;
mod engine_state;
mod error;
pub mod feed;
pub mod history;
pub mod identity;
pub mod io;
pub mod json_numbers;
pub mod limits;
mod lock;
pub mod log;
mod options;
mod patch;
mod pipeline;
mod poison;
mod recovery;
pub mod revert;
pub mod schema;
pub mod spec;
mod state;
pub mod stream;
mod ttl;
mod txn;
mod verify;

pub use backup::{BackupManifest, BackupRepo, RestoreTarget, RetentionPolicy};
pub use blob::{
    BlobGcReport, BlobInfo, BlobReader, BlobUpload, BlobWrite, BlobWriteKind, StagedBlob,
};
pub use db::{buffered, CheckpointInfo, Db, PendingCommit, Stats};
pub use document::{
    canonical_json, format_micros, validate_collection, validate_key, DocMeta, Document,
    MAX_COLLECTION_BYTES, MAX_KEY_BYTES,
};
pub use error::{Conflict, ConflictReason, Damage, Error, Result};
pub use feed::{Change, ChangedDoc, ChangedStream, Filter, StreamChangeKind, Subscription};
pub use lock::LOCK_FILE;
pub use options::{Options, RecoveryMode};
pub use recovery::{
    AutoRecovery, RecoveryReport, SlotsRebuilt, TornTail, CHECKPOINT_DIR, LOG_DIR, QUARANTINE_DIR,
};
pub use revert::{Action, Changed, RevertOptions, RevertReport, Scope, UndoOptions};
pub use state::{CollectionInfo, ListOptions, Page, ReadView};
pub use stream::{Appended, Retention, StreamEntry, StreamFrom, StreamInfo, StreamPage};
pub use ttl::ReapReport;
pub use txn::{Committed, Durability, Expiry, Op, OpResult, Patch, Transaction, Write, WriteKind};
pub use verify::{verify_dir, verify_dir_with, Problem, VerifyReport};

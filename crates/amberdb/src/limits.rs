//! Every size limit of the engine's formats and of what a client may send, in one place.
//!
//! A limit that only a decoder enforces turns an acknowledged commit into an unreadable one;
//! so writers and decoders import the same constant from here, and the options that let a
//! user lower a limit are checked against these caps when a database is opened.

// ---------------------------------------------------------------------------------------------
// Storage formats: commit frames, documents, checkpoint blocks (the commit path).
// ---------------------------------------------------------------------------------------------

pub use crate::document::{MAX_COLLECTION_BYTES, MAX_KEY_BYTES};

/// Largest payload a commit frame may declare. The committer refuses a transaction whose
/// commit record is larger (`Error::TransactionTooLarge`) before writing anything; the frame
/// decoder treats a larger declared length as damage and never allocates it.
pub const MAX_PAYLOAD_LEN: usize = 1 << 30;

/// Largest transaction (commit record payload) by default; `Options::max_txn_bytes` may
/// lower it, never raise it above [`MAX_PAYLOAD_LEN`].
pub const DEFAULT_MAX_TXN_BYTES: usize = MAX_PAYLOAD_LEN;

/// Largest canonical JSON value `Options::max_doc_bytes` may allow. One document of this
/// size must fit in one commit frame and in one checkpoint block, with room for its metadata.
pub const MAX_DOC_BYTES: usize = 256 << 20;

/// `Options::max_doc_bytes` by default.
pub const DEFAULT_MAX_DOC_BYTES: usize = 16 << 20;

/// Bytes a checkpoint entry or a commit-record op adds to a document's value: kind, flags,
/// collection and key with their lengths, versions, timestamps, LSNs, SHA-256, value length.
/// Rounded up generously.
pub const MAX_ENTRY_OVERHEAD: usize = 4096;

/// Largest uncompressed checkpoint block. The encoder cuts blocks well below it
/// (`BLOCK_TARGET`) and refuses an entry that cannot fit; the decoder refuses larger declared
/// lengths and allocates at most this much per block, so a compression bomb cannot make it
/// allocate more.
pub const MAX_BLOCK: usize = MAX_DOC_BYTES + MAX_ENTRY_OVERHEAD;

/// Largest stored (compressed) checkpoint block: zstd's worst-case expansion of an
/// incompressible [`MAX_BLOCK`] (`ZSTD_COMPRESSBOUND`).
pub const MAX_STORED_BLOCK: usize = MAX_BLOCK + (MAX_BLOCK >> 8) + (128 << 10);

const _: () = assert!(MAX_DOC_BYTES + MAX_ENTRY_OVERHEAD <= MAX_PAYLOAD_LEN);
const _: () = assert!(MAX_ENTRY_OVERHEAD > 64 + MAX_COLLECTION_BYTES + MAX_KEY_BYTES);
const _: () = assert!(MAX_STORED_BLOCK < u32::MAX as usize);
const _: () = assert!(DEFAULT_MAX_DOC_BYTES <= MAX_DOC_BYTES);

// ---- Value shape and JSON Patch bounds (documents; the server engineer's block) ----
//
// Enforced on the result of every write path (put, create, replace, merge patch, JSON Patch,
// transaction ops) before anything is logged, so a stored value is always one that every
// reader (serde_json's parser, the CLI, the HTTP envelope) can parse back.

/// Deepest nesting of arrays and objects in a stored value: `[]` and `{}` are depth 1, a
/// scalar is depth 0. Below serde_json's parser limit (128) with room for the envelopes that
/// carry a value (`{"ops":[{"value": ...}]}` of a transaction request), so any value that can
/// be stored can be sent in every request that writes one and parsed back on every read.
pub const MAX_DEPTH: usize = 100;

/// Most operations in one RFC 6902 JSON Patch.
pub const MAX_PATCH_OPS: usize = 1000;

// ---- Document expiry (TTL; the TTL engineer's block) ----

/// Longest time-to-live a write may give (`Write::ttl`, `Amber-TTL`, `ttl_ms`, a
/// collection's `default_ttl_s`), and the furthest an absolute `expires_at` may lie after the
/// commit: 100 years. Larger values are refused before anything is logged, so no expiry
/// computation can overflow and no typo makes a document immortal by accident.
pub const MAX_TTL: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 86_400);
// ---- Blobs ----

/// `Options::max_blob_bytes` by default (the server's `limits.blob_bytes`): 1 GiB. Counted
/// while an upload streams, so a larger one is refused after at most this many bytes were
/// written to its temp file (which is removed).
pub const DEFAULT_MAX_BLOB_BYTES: u64 = 1 << 30;

/// Largest value `Options::max_blob_bytes` may take: 64 GiB.
pub const MAX_BLOB_BYTES: u64 = 64 << 30;

/// A blob staged and not named by a commit within this time is removed by blob garbage
/// collection (its staging id stops working).
pub const BLOB_STAGING_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

// ---- Revert, undo and live restore ----

/// Most documents one revert, undo or live restore may consider (documents changed since its
/// target); a larger one is refused before any old version is read. Narrow the scope or
/// restore a backup into a new directory instead.
pub const MAX_REVERT_DOCS: usize = 100_000;

// ---- Streams (issue 13) ----
//
// Stream names follow the collection rules (`document::validate_collection`). Every bound
// below is checked before anything is logged or read; the stream file decoder refuses an
// entry over `MAX_STREAM_ENTRY_BYTES` as damage, so no writer may produce one.

/// Largest canonical JSON value of one stream entry.
pub const MAX_STREAM_ENTRY_BYTES: usize = 1 << 20;

/// Most entries one append (or one transaction's appends to one stream) may add.
pub const MAX_APPEND_ENTRIES: usize = 10_000;

/// Most entries one stream read returns.
pub const MAX_STREAM_READ_ENTRIES: usize = 10_000;

/// Most value bytes one stream read returns (at least one entry is always returned).
pub const MAX_STREAM_READ_BYTES: usize = 16 << 20;

/// Largest `max_age_s` a stream's retention may have (the same 100 years as [`MAX_TTL`]).
pub const MAX_STREAM_AGE_S: u64 = MAX_TTL.as_secs();

const _: () = assert!(MAX_STREAM_ENTRY_BYTES <= MAX_STREAM_READ_BYTES);

// ---- Collection specs, schemas and migrations (the schema engineer's block) ----

/// Largest collection spec (its canonical JSON, schemas and migrations included). Refused
/// before the spec is compiled or logged.
pub const MAX_SPEC_BYTES: usize = 1 << 20;

/// Highest schema version a spec may define (versions run contiguously from 1).
pub const MAX_SCHEMA_VERSION: u32 = 1000;

/// Most steps in one migration's `up` or `down` (a `map` step's inner step counts as one).
pub const MAX_MIGRATION_STEPS: usize = 1000;

/// Longest `jq` filter of a migration step, in bytes.
pub const MAX_JQ_FILTER_BYTES: usize = 16 << 10;

/// Longest wall-clock time one `jq` step may run on one document before the migration of
/// that document fails.
pub const MAX_JQ_TIME: std::time::Duration = std::time::Duration::from_millis(250);

/// Most schema validation errors reported for one document (the rest are counted, not
/// listed).
pub const MAX_SCHEMA_ERRORS: usize = 50;

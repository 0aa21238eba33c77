//! The JSON shapes of API v1 that are more than a document value: transactions, listings,
//! write results, status. They derive their OpenAPI schemas, and the CLI reuses them so that
//! `amberdb txn --data` and `POST /v1/txn` accept exactly the same document.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// `POST /v1/txn`: operations applied all-or-nothing, in order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TxnRequest {
    /// The operations (at least one).
    pub ops: Vec<TxnOp>,
}

/// One operation of a transaction. Writes may carry `if_version` (0 = must not exist).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum TxnOp {
    /// Create or overwrite.
    Put {
        /// Collection.
        #[schema(pattern = r"^[a-z0-9_][a-z0-9_.\-]{0,63}$")]
        collection: String,
        /// Key.
        #[schema(min_length = 1, max_length = 1024)]
        key: String,
        /// The new value (any JSON).
        value: Value,
        /// Required current version (0 = must not exist).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        if_version: Option<u64>,
        /// Schema version of the value (default 1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(minimum = 1)]
        schema_version: Option<u32>,
        /// The document expires this many milliseconds after the commit (whole seconds are
        /// not required; at most 100 years).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(minimum = 1)]
        ttl_ms: Option<u64>,
        /// The document expires at this RFC 3339 time (in the future).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<String>,
    },
    /// Create; fails if the document exists.
    Create {
        /// Collection.
        #[schema(pattern = r"^[a-z0-9_][a-z0-9_.\-]{0,63}$")]
        collection: String,
        /// Key.
        #[schema(min_length = 1, max_length = 1024)]
        key: String,
        /// The value.
        value: Value,
        /// Required current version.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        if_version: Option<u64>,
        /// Schema version of the value.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(minimum = 1)]
        schema_version: Option<u32>,
        /// The document expires this many milliseconds after the commit (whole seconds are
        /// not required; at most 100 years).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(minimum = 1)]
        ttl_ms: Option<u64>,
        /// The document expires at this RFC 3339 time (in the future).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<String>,
    },
    /// Overwrite; fails if the document is missing.
    Replace {
        /// Collection.
        #[schema(pattern = r"^[a-z0-9_][a-z0-9_.\-]{0,63}$")]
        collection: String,
        /// Key.
        #[schema(min_length = 1, max_length = 1024)]
        key: String,
        /// The value.
        value: Value,
        /// Required current version.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        if_version: Option<u64>,
        /// Schema version of the value.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(minimum = 1)]
        schema_version: Option<u32>,
        /// The document expires this many milliseconds after the commit (whole seconds are
        /// not required; at most 100 years).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(minimum = 1)]
        ttl_ms: Option<u64>,
        /// The document expires at this RFC 3339 time (in the future).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<String>,
    },
    /// Patch an existing document: exactly one of `merge_patch` (RFC 7396) or `json_patch`
    /// (RFC 6902, an array of operations).
    Patch {
        /// Collection.
        #[schema(pattern = r"^[a-z0-9_][a-z0-9_.\-]{0,63}$")]
        collection: String,
        /// Key.
        #[schema(min_length = 1, max_length = 1024)]
        key: String,
        /// RFC 7396 merge patch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        merge_patch: Option<Value>,
        /// RFC 6902 JSON Patch operations.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Vec<Object>)]
        json_patch: Option<Value>,
        /// Required current version.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        if_version: Option<u64>,
        /// Schema version of the result.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(minimum = 1)]
        schema_version: Option<u32>,
        /// The document expires this many milliseconds after the commit (whole seconds are
        /// not required; at most 100 years).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(minimum = 1)]
        ttl_ms: Option<u64>,
        /// The document expires at this RFC 3339 time (in the future).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<String>,
    },
    /// Delete (a missing document is a no-op unless `if_version` says otherwise).
    Delete {
        /// Collection.
        #[schema(pattern = r"^[a-z0-9_][a-z0-9_.\-]{0,63}$")]
        collection: String,
        /// Key.
        #[schema(min_length = 1, max_length = 1024)]
        key: String,
        /// Required current version.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        if_version: Option<u64>,
    },
    /// Append entries to a stream (the stream's name takes the place of the collection in
    /// token scopes). With `expected_seq`, the transaction fails (409) unless the stream's last
    /// sequence number is that (0: none yet). Its result's `version` is the stream's last
    /// sequence number after the append.
    Append {
        /// Stream.
        #[schema(pattern = r"^[a-z0-9_][a-z0-9_.\-]{0,63}$")]
        stream: String,
        /// The entries (at least one, at most 10000).
        #[schema(value_type = Vec<Object>)]
        values: Vec<Value>,
        /// Required last sequence number of the stream.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected_seq: Option<u64>,
    },
    /// Require a document to be at `version` (0 = must not exist); writes nothing.
    Check {
        /// Collection.
        #[schema(pattern = r"^[a-z0-9_][a-z0-9_.\-]{0,63}$")]
        collection: String,
        /// Key.
        #[schema(min_length = 1, max_length = 1024)]
        key: String,
        /// Required version.
        version: u64,
    },
    /// Make the blob staged under `staging_id` (`POST .../blobs/{key}/staged`) the blob's new
    /// version, atomically with the other operations.
    BlobRef {
        /// Collection.
        #[schema(pattern = r"^[a-z0-9_][a-z0-9_.\-]{0,63}$")]
        collection: String,
        /// Blob key.
        #[schema(min_length = 1, max_length = 1024)]
        key: String,
        /// The staging id the upload returned.
        staging_id: String,
        /// Required current version of the blob (0 = must not exist).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        if_version: Option<u64>,
    },
    /// Delete a blob.
    BlobDelete {
        /// Collection.
        #[schema(pattern = r"^[a-z0-9_][a-z0-9_.\-]{0,63}$")]
        collection: String,
        /// Blob key.
        #[schema(min_length = 1, max_length = 1024)]
        key: String,
        /// Required current version of the blob.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        if_version: Option<u64>,
    },
}

impl TxnOp {
    /// The collection the operation touches.
    pub fn collection(&self) -> &str {
        match self {
            TxnOp::Put { collection, .. }
            | TxnOp::Create { collection, .. }
            | TxnOp::Replace { collection, .. }
            | TxnOp::Patch { collection, .. }
            | TxnOp::Delete { collection, .. }
            | TxnOp::Check { collection, .. }
            | TxnOp::BlobRef { collection, .. }
            | TxnOp::BlobDelete { collection, .. } => collection,
            TxnOp::Append { stream, .. } => stream,
        }
    }

    /// True for every operation but `check`.
    pub fn is_write(&self) -> bool {
        !matches!(self, TxnOp::Check { .. })
    }
}

impl TxnRequest {
    /// Builds the engine transaction, or says which operation is malformed.
    pub fn to_transaction(&self) -> Result<amberdb::Transaction, String> {
        if self.ops.is_empty() {
            return Err("a transaction needs at least one operation in \"ops\"".into());
        }
        let mut tx = amberdb::Transaction::new();
        for (i, op) in self.ops.iter().enumerate() {
            let (w, if_version, schema_version, expiry) = match op {
                TxnOp::Put {
                    collection,
                    key,
                    value,
                    if_version,
                    schema_version,
                    ttl_ms,
                    expires_at,
                } => (
                    tx.put(collection, key, value.clone()),
                    *if_version,
                    *schema_version,
                    op_expiry(i, *ttl_ms, expires_at.as_deref())?,
                ),
                TxnOp::Create {
                    collection,
                    key,
                    value,
                    if_version,
                    schema_version,
                    ttl_ms,
                    expires_at,
                } => (
                    tx.create(collection, key, value.clone()),
                    *if_version,
                    *schema_version,
                    op_expiry(i, *ttl_ms, expires_at.as_deref())?,
                ),
                TxnOp::Replace {
                    collection,
                    key,
                    value,
                    if_version,
                    schema_version,
                    ttl_ms,
                    expires_at,
                } => (
                    tx.replace(collection, key, value.clone()),
                    *if_version,
                    *schema_version,
                    op_expiry(i, *ttl_ms, expires_at.as_deref())?,
                ),
                TxnOp::Patch {
                    collection,
                    key,
                    merge_patch,
                    json_patch,
                    if_version,
                    schema_version,
                    ttl_ms,
                    expires_at,
                } => {
                    let patch = match (merge_patch, json_patch) {
                        (Some(m), None) => amberdb::Patch::Merge(m.clone()),
                        (None, Some(j)) => {
                            amberdb::Patch::Json(serde_json::from_value(j.clone()).map_err(
                                |e| format!("ops[{i}].json_patch is not an RFC 6902 patch: {e}"),
                            )?)
                        }
                        _ => {
                            return Err(format!(
                                "ops[{i}]: a patch needs exactly one of merge_patch or json_patch"
                            ))
                        }
                    };
                    (
                        tx.patch(collection, key, patch),
                        *if_version,
                        *schema_version,
                        op_expiry(i, *ttl_ms, expires_at.as_deref())?,
                    )
                }
                TxnOp::Delete {
                    collection,
                    key,
                    if_version,
                } => (tx.delete(collection, key), *if_version, None, None),
                TxnOp::Check {
                    collection,
                    key,
                    version,
                } => {
                    tx.check(collection, key, *version);
                    continue;
                }
                TxnOp::BlobRef {
                    collection,
                    key,
                    staging_id,
                    if_version,
                } => {
                    tx.blob_ref(collection, key, staging_id);
                    if let Some(amberdb::Op::Blob(w)) = tx.ops.last_mut() {
                        w.if_version = *if_version;
                    }
                    continue;
                }
                TxnOp::BlobDelete {
                    collection,
                    key,
                    if_version,
                } => {
                    tx.delete_blob(collection, key);
                    if let Some(amberdb::Op::Blob(w)) = tx.ops.last_mut() {
                        w.if_version = *if_version;
                    }
                    continue;
                }
                TxnOp::Append {
                    stream,
                    values,
                    expected_seq,
                } => {
                    tx.append(stream, values.clone(), *expected_seq);
                    continue;
                }
            };
            if let Some(v) = if_version {
                w.if_version(v);
            }
            if let Some(v) = schema_version {
                if v == 0 {
                    return Err(format!(
                        "ops[{i}].schema_version must be a positive integer"
                    ));
                }
                w.schema_version(v);
            }
            if let Some(e) = expiry {
                w.expiry = e;
            }
        }
        Ok(tx)
    }
}

/// The expiry of a transaction write from its `ttl_ms` / `expires_at` (at most one).
fn op_expiry(
    i: usize,
    ttl_ms: Option<u64>,
    expires_at: Option<&str>,
) -> Result<Option<amberdb::Expiry>, String> {
    match (ttl_ms, expires_at) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(format!("ops[{i}]: give ttl_ms or expires_at, not both")),
        (Some(ms), None) => Ok(Some(amberdb::Expiry::Ttl(
            std::time::Duration::from_millis(ms),
        ))),
        (None, Some(s)) => crate::headers::parse_rfc3339_micros(s)
            .map(|us| Some(amberdb::Expiry::At(us)))
            .ok_or_else(|| {
                format!(
                    "ops[{i}].expires_at {s:?} is not an RFC 3339 time (like 2026-12-01T00:00:00Z)"
                )
            }),
    }
}

/// The outcome of one operation of a committed transaction.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OpResultBody {
    /// Collection.
    pub collection: String,
    /// Key.
    pub key: String,
    /// Version after the operation (0 when deleted or absent).
    pub version: u64,
    /// Whether the operation changed anything (false for checks and no-op deletes).
    pub written: bool,
    /// Schema version of the document after the operation (0 when deleted or absent).
    pub schema_version: u32,
    /// When the document expires after the operation (RFC 3339); absent when it never does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// A committed transaction.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TxnResponse {
    /// LSN of the commit (the current LSN when nothing was written).
    pub lsn: u64,
    /// Commit time, microseconds since the Unix epoch.
    pub commit_ts: u64,
    /// One result per operation, in order.
    pub results: Vec<OpResultBody>,
}

impl From<amberdb::Committed> for TxnResponse {
    fn from(c: amberdb::Committed) -> Self {
        TxnResponse {
            lsn: c.lsn,
            commit_ts: c.commit_ts,
            results: c
                .results
                .into_iter()
                .map(|r| OpResultBody {
                    collection: r.collection,
                    key: r.key,
                    version: r.version,
                    written: r.written,
                    schema_version: r.schema_version,
                    expires_at: r.expires_at.map(amberdb::format_micros),
                })
                .collect(),
        }
    }
}

/// The result of a PUT, PATCH or DELETE of one document.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WriteResult {
    /// Collection.
    pub collection: String,
    /// Key.
    pub key: String,
    /// The document's version now (0 after a delete).
    pub version: u64,
    /// LSN of the commit.
    pub lsn: u64,
    /// Schema version of the stored value (absent after a delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<u32>,
    /// True when this write created the document.
    pub created: bool,
    /// True after a delete.
    pub deleted: bool,
    /// When the document expires (RFC 3339); absent when it never does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// A document with its metadata (`?meta=true`, listings and exports).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Envelope {
    /// Collection.
    pub collection: String,
    /// Key.
    pub key: String,
    /// The value (any JSON).
    pub value: Value,
    /// 1 on create, +1 on every write.
    pub version: u64,
    /// Schema version of the value as returned (the version asked for with
    /// `Amber-Accept-Schema` / `?schema_version=`, else the collection's current one).
    pub schema_version: u32,
    /// Schema version the value is stored at (reads; a value stored at another version than
    /// the one returned was migrated on read, not persisted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_schema_version: Option<u32>,
    /// Creation time, RFC 3339 UTC.
    pub created_at: String,
    /// Last write time, RFC 3339 UTC.
    pub updated_at: String,
    /// Creation time, microseconds since the Unix epoch.
    pub created_at_us: u64,
    /// Last write time, microseconds since the Unix epoch.
    pub updated_at_us: u64,
    /// LSN of the last write.
    pub lsn: u64,
    /// SHA-256 of the stored canonical JSON, hex.
    pub sha256: String,
    /// When the document expires, RFC 3339 UTC; absent when it never does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// When the document expires, microseconds since the Unix epoch; absent when it never does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_us: Option<u64>,
}

/// `GET|PUT /v1/collections/{c}/spec`: what a collection says about its documents (stored in
/// the database, so the log, backups and point-in-time restore carry it): its schema
/// versions, JSON Schemas and migrations (`docs/SCHEMAS.md`) and its default TTL. A `PUT`
/// replaces the fields it names; `schema_version`, `versions` and `migrations` left out keep
/// what is stored, so a client that only sets the TTL never drops a collection's schemas.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpecBody {
    /// The version documents are stored and returned at (versions run from 1); absent for a
    /// collection without schemas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub schema_version: Option<u32>,
    /// Per version (`"1"`, `"2"`, ...): `{"schema": <JSON Schema, draft 2020-12>}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub versions: Option<serde_json::Map<String, Value>>,
    /// Migrations `{"from", "to", "up": [steps], "down": [steps]?}`; the server adds each
    /// one's `checksum`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub migrations: Option<Vec<Value>>,
    /// Forced changes of applied migrations (kept by the server; ignored in a `PUT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub forced: Option<Vec<Value>>,
    /// Writes that set no expiry of their own expire this many seconds after their commit
    /// (1 to 100 years); null for no default TTL.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub default_ttl_s: Option<u64>,
}

/// A page of a listing.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ListResponse {
    /// Documents in key order.
    pub documents: Vec<Envelope>,
    /// Pass as `start_after` for the next page; null on the last page.
    pub next: Option<String>,
}

/// A collection and its document count.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CollectionSummary {
    /// Name.
    pub name: String,
    /// Live documents.
    pub documents: u64,
}

/// `GET /v1/collections`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CollectionsResponse {
    /// Collections the caller may read, by name.
    pub collections: Vec<CollectionSummary>,
}

/// A collection's spec. Until the engine stores specs, every collection has the default one.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CollectionSpec {
    /// Current schema version of the collection.
    pub schema_version: u32,
}

/// `GET /v1/collections/{c}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CollectionResponse {
    /// Name.
    pub name: String,
    /// Live documents.
    pub documents: u64,
    /// LSN of the view the count was taken from.
    pub lsn: u64,
    /// The collection's spec.
    pub spec: CollectionSpec,
}

/// `GET /v1/admin/status`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatusResponse {
    /// Server version.
    pub version: String,
    /// Seconds since the server started.
    pub uptime_s: u64,
    /// The data directory.
    pub data: String,
    /// LSN of the newest published commit.
    pub lsn: u64,
    /// Highest LSN on stable storage.
    pub durable_lsn: u64,
    /// Commits since open.
    pub commits: u64,
    /// Log fsyncs since open.
    pub fsyncs: u64,
    /// Commits made durable per fsync (group commit factor).
    pub commits_per_fsync: f64,
    /// Log segments on disk.
    pub log_segments: u64,
    /// Bytes of log on disk.
    pub log_bytes: u64,
    /// Checkpoint files on disk.
    pub checkpoints: u64,
    /// Bytes of checkpoints on disk.
    pub checkpoint_bytes: u64,
    /// LSN of the newest checkpoint.
    pub last_checkpoint_lsn: Option<u64>,
    /// Time and id of the newest backup; null until backups exist.
    pub last_backup: Option<Value>,
    /// Why the database is poisoned, or null.
    pub poisoned: Option<String>,
    /// True while a graceful shutdown is draining requests.
    pub shutting_down: bool,
    /// Collections and their document counts.
    pub collections: Vec<CollectionSummary>,
    /// What recovery did when this server opened the database.
    pub recovery: RecoveryBody,
    /// The history window: where it starts and how much log it holds.
    pub history: HistoryWindowBody,
    /// Documents expired (invisible to reads) but not yet deleted by the TTL reaper.
    #[serde(default)]
    pub ttl_expired_pending: u64,
    /// Documents the TTL reaper deleted since the server opened the database.
    #[serde(default)]
    pub ttl_reaped: u64,
    /// Encryption key ids (8 hex digits) the data directory's log segments and checkpoints
    /// are sealed with; a key not listed is no longer needed by the data directory.
    #[serde(default)]
    pub key_ids_in_use: Vec<String>,
    /// The running or last key rotation since the server started (`POST
    /// /v1/admin/keys/rotate`), or null.
    #[serde(default)]
    pub key_rotation: Option<crate::routes::keys::KeyRotationBody>,
}

/// The history window (`history.retention`, `history.max_bytes`) in `/v1/admin/status`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HistoryWindowBody {
    /// The oldest LSN history and as-of reads answer for.
    pub retained_from_lsn: u64,
    /// Commit time of that commit, RFC 3339 (null when the log holds no commit).
    pub retained_from_time: Option<String>,
    /// Bytes of log on disk.
    pub retained_bytes: u64,
}

/// What recovery did when the server opened its database (`Db::recovery_report()`), in
/// `GET /v1/admin/status`: the checkpoint it started from, the commits it replayed, the LSN
/// it reached, the documents it ended with, a torn tail it cut, damaged checkpoints it moved
/// aside, and, after an automatic recovery (`recovery.mode = auto`), where the state came
/// from and what, if anything, was lost.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecoveryBody {
    /// The checkpoint loaded, if any.
    pub checkpoint: Option<String>,
    /// Its LSN (0 when the open started from an empty state).
    pub checkpoint_lsn: u64,
    /// Commits replayed from the local log after it.
    pub commits_replayed: u64,
    /// LSN reached.
    pub lsn: u64,
    /// Live documents per collection when the open finished (before any request).
    pub documents: std::collections::BTreeMap<String, u64>,
    /// The torn tail that was cut, if there was one.
    pub torn_tail: Option<TornTailBody>,
    /// Damaged checkpoints skipped and moved to quarantine.
    pub quarantined: Vec<MovedFile>,
    /// Set when automatic recovery rebuilt the data directory.
    pub auto: Option<AutoRecoveryBody>,
    /// Set when automatic recovery rebuilt a damaged `archive.json`.
    pub slots_rebuilt: Option<SlotsRebuiltBody>,
}

/// A torn tail cut by recovery.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TornTailBody {
    /// The segment.
    pub file: String,
    /// Where it was cut.
    pub offset: u64,
    /// Bytes removed.
    pub bytes: u64,
    /// LSNs `[first, last]` of frames after the cut that were never synced (never
    /// acknowledged as `sync`), if any.
    pub unsynced: Option<(u64, u64)>,
}

/// A file recovery moved aside.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MovedFile {
    /// Where it was.
    pub from: String,
    /// Where it is now (under `DATA/quarantine/`).
    pub to: String,
}

/// What automatic recovery did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AutoRecoveryBody {
    /// The damage that triggered it (file, offset, what was wrong).
    pub damage: String,
    /// Where the state came from, in words (a local checkpoint, or a backup, plus which logs).
    pub source: String,
    /// Id of the backup the state was rebuilt from; null when local data reached further.
    pub backup: Option<String>,
    /// LSN reached.
    pub lsn: u64,
    /// Commits replayed on top of the base (checkpoint or backup).
    pub commits_replayed: u64,
    /// Documents restored (all collections).
    pub documents: u64,
    /// LSNs `[first, last]` known to have existed that could not be recovered; null when
    /// nothing was lost.
    pub lost: Option<(u64, u64)>,
    /// Where the damaged files were moved.
    pub quarantine: String,
    /// The files moved there.
    pub quarantined_files: Vec<String>,
    /// Damaged frames of commits the base already held that replay stepped over (no commit
    /// is lost by this).
    pub stepped_over: Vec<ProblemBody>,
}

/// A damaged slot file that automatic recovery rebuilt.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SlotsRebuiltBody {
    /// Why the file was unusable.
    pub damage: String,
    /// Where the damaged file was copied.
    pub quarantined: String,
    /// Repository ids of the rebuilt slots.
    pub repos: Vec<String>,
}

impl RecoveryBody {
    /// The report of `db`'s open, with `documents` per collection as counted right after it.
    pub fn new(
        r: &amberdb::RecoveryReport,
        documents: std::collections::BTreeMap<String, u64>,
    ) -> Self {
        let path = |p: &std::path::Path| p.display().to_string();
        RecoveryBody {
            checkpoint: r.checkpoint.as_deref().map(path),
            checkpoint_lsn: r.checkpoint_lsn,
            commits_replayed: r.commits_replayed,
            lsn: r.lsn,
            documents,
            torn_tail: r.torn_tail.as_ref().map(|t| TornTailBody {
                file: path(&t.file),
                offset: t.offset,
                bytes: t.bytes,
                unsynced: t.unsynced,
            }),
            quarantined: r
                .quarantined
                .iter()
                .map(|(from, to)| MovedFile {
                    from: path(from),
                    to: path(to),
                })
                .collect(),
            auto: r.auto.as_ref().map(|a| AutoRecoveryBody {
                damage: a.damage.clone(),
                source: a.source.clone(),
                backup: a.backup.clone(),
                lsn: a.lsn,
                commits_replayed: a.commits_replayed,
                documents: a.documents,
                lost: a.lost,
                quarantine: path(&a.quarantine),
                quarantined_files: a.quarantined_files.iter().map(|p| path(p)).collect(),
                stepped_over: a
                    .stepped_over
                    .iter()
                    .map(|(file, offset, detail)| ProblemBody {
                        file: path(file),
                        offset: Some(*offset),
                        detail: detail.clone(),
                    })
                    .collect(),
            }),
            slots_rebuilt: r.slots_rebuilt.as_ref().map(|s| SlotsRebuiltBody {
                damage: s.damage.clone(),
                quarantined: path(&s.quarantined),
                repos: s.repos.clone(),
            }),
        }
    }
}

/// One file of a backup, with the sizes and SHA-256s of its plain and stored bytes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupFileBody {
    /// File name within the backup directory (`backups/<id>/<name>` in the repository).
    pub name: String,
    /// Uncompressed size.
    pub plain_size: u64,
    /// SHA-256 of the uncompressed bytes, hex.
    pub plain_sha256: String,
    /// Size as stored.
    pub stored_size: u64,
    /// SHA-256 of the stored bytes (the file on disk), hex.
    pub stored_sha256: String,
}

/// One backup as `GET /v1/admin/backups` lists it, `POST /v1/admin/backups` returns it and
/// `amberdb backup list --json` prints it (all three through [`backup_json`]). A complete
/// backup is its whole manifest plus `status` and `stored_bytes`; a damaged or incomplete one
/// has only `id`, `status` and `problem`. The fields below are the ones clients rely on; the
/// manifest's other fields (`format_version`, `repository_id`, `schema_versions`, ...) are
/// documented in docs/FORMAT.md.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupBody {
    /// Backup id (`YYYYMMDDTHHMMSSZ-<lsn>`).
    pub id: String,
    /// `complete`, `damaged` (the manifest is unreadable or refused) or `incomplete` (no
    /// manifest: interrupted or still running).
    pub status: String,
    /// What is wrong, when not complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// When it was taken, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// LSN of the last commit it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn: Option<u64>,
    /// Commit time of that commit, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_time: Option<String>,
    /// Live documents per collection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documents: Option<std::collections::BTreeMap<String, u64>>,
    /// Bytes stored in the repository (compressed), all files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_bytes: Option<u64>,
    /// Every file of the backup with its sizes and checksums.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<BackupFileBody>>,
}

/// The one serializer of a backup listing entry (see [`BackupBody`]), shared by the server
/// and the CLI so the two can never disagree.
pub fn backup_json(e: &amberdb::backup::BackupListing) -> Value {
    let status = serde_json::to_value(e.status).unwrap_or_default();
    match &e.manifest {
        Some(m) => {
            let mut v = serde_json::to_value(m).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("status".into(), status);
                let stored: u64 = m.files.iter().map(|f| f.stored_size).sum();
                o.insert("stored_bytes".into(), stored.into());
            }
            v
        }
        None => serde_json::json!({"id": e.id, "status": status, "problem": e.problem}),
    }
}

/// [`backup_json`] of a backup just taken (complete by construction).
pub fn backup_manifest_json(m: &amberdb::BackupManifest) -> Value {
    backup_json(&amberdb::backup::BackupListing {
        id: m.id.clone(),
        status: amberdb::backup::BackupState::Complete,
        problem: None,
        manifest: Some(m.clone()),
    })
}

/// `POST /v1/admin/checkpoint`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckpointResponse {
    /// The checkpoint file.
    pub path: String,
    /// LSN it covers.
    pub lsn: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// False when the newest checkpoint was already current.
    pub written: bool,
    /// Log segments removed because no kept checkpoint needs them.
    pub segments_removed: u64,
}

/// `POST /v1/admin/blobs/gc`: what one blob garbage collection did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BlobGcResponse {
    /// Blob files found in the data directory.
    pub files: u64,
    /// Blob files still needed (kept).
    pub kept: u64,
    /// Blob files removed.
    pub removed: u64,
    /// Bytes of the removed files.
    pub removed_bytes: u64,
    /// Staged uploads removed because they were not committed within an hour.
    pub staging_expired: u64,
}

/// One problem found by verify.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProblemBody {
    /// The file (or `<memory>`).
    pub file: String,
    /// Byte offset, when there is one.
    pub offset: Option<u64>,
    /// What is wrong.
    pub detail: String,
}

/// `POST /v1/admin/verify`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VerifyResponse {
    /// True when no problem was found.
    pub clean: bool,
    /// Log segments read.
    pub segments: u64,
    /// Seals checked.
    pub seals: u64,
    /// Commits whose CRC was checked.
    pub commits: u64,
    /// Checkpoints read.
    pub checkpoints: u64,
    /// Documents whose SHA-256 was checked.
    pub documents_checked: u64,
    /// Blob files whose SHA-256 was checked against their names.
    pub blobs_checked: u64,
    /// Stream entries checked (CRC32C and sequence), up to the newest checkpoint's watermarks.
    pub stream_entries_checked: u64,
    /// A torn tail left by a crash (normal; the next open cuts it), as "file:offset".
    pub torn_tail: Option<String>,
    /// Every problem found.
    pub problems: Vec<ProblemBody>,
}

/// `/healthz` and `/readyz`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    /// `ok`.
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_parse_every_op_kind() {
        let req: TxnRequest = serde_json::from_value(serde_json::json!({"ops": [
            {"op": "check", "collection": "parties", "key": "p9", "version": 4},
            {"op": "put", "collection": "players", "key": "alice", "value": {"hp": 10}, "if_version": 2},
            {"op": "create", "collection": "events", "key": "e1", "value": 1, "schema_version": 2},
            {"op": "replace", "collection": "players", "key": "bob", "value": null},
            {"op": "patch", "collection": "players", "key": "bob", "merge_patch": {"hp": 3}},
            {"op": "patch", "collection": "players", "key": "bob", "json_patch": [{"op": "add", "path": "/x", "value": 1}]},
            {"op": "delete", "collection": "invites", "key": "i1"}
        ]}))
        .expect("parses");
        let tx = req.to_transaction().expect("valid");
        assert_eq!(tx.ops.len(), 7);
    }

    #[test]
    fn malformed_transactions_are_refused_with_the_op_index() {
        let bad = |v: serde_json::Value| {
            serde_json::from_value::<TxnRequest>(v)
                .map_err(|e| e.to_string())
                .and_then(|r| r.to_transaction())
        };
        assert!(bad(serde_json::json!({"ops": []})).is_err());
        assert!(bad(
            serde_json::json!({"ops": [{"op": "frobnicate", "collection": "a", "key": "b"}]})
        )
        .is_err());
        assert!(bad(serde_json::json!({"ops": [{"op": "put", "collection": "a", "key": "b", "value": 1, "typo": 2}]})).is_err());
        let e = bad(serde_json::json!({"ops": [{"op": "delete", "collection": "a", "key": "b"}, {"op": "patch", "collection": "a", "key": "b"}]})).expect_err("no patch");
        assert!(e.contains("ops[1]"), "{e}");
    }
}

//! Blobs: binary values (images, replays, attachments) stored beside documents.
//!
//! A blob's bytes live in a content-addressed file under `DATA/blobs/` (named by the SHA-256
//! of its bytes, so equal content is one file), written and synced **before** the commit that
//! refers to it is logged (`store.rs`). Its metadata (size, SHA-256, content type) is an
//! ordinary document in the reserved collection `.blobs.<collection>` (keyed by the blob's
//! key), so a JSON document and a blob with the same key never clash, and transactions,
//! history, PITR, backups, verify and the change feed cover blobs with no special case: the
//! document's version is the blob's version and its `updated_at` the blob's.
//!
//! Uploading is two steps: [`Db::stage_blob`] streams the bytes into place and returns a
//! staging id; a transaction op [`Transaction::blob_ref`] names it and makes the blob visible
//! atomically with the transaction's other writes. [`Db::put_blob`] does both. A staged blob
//! that no commit names within [`crate::limits::BLOB_STAGING_TTL`] is removed by garbage
//! collection (`gc.rs`), which removes a blob file only when no live document and no version
//! inside the retained log names it.

pub(crate) mod gc;
mod repo;
pub mod sealed;
mod store;

pub use gc::BlobGcReport;
pub use repo::BlobEntry;
pub(crate) use repo::{copy_to_repo, prune_repo, referenced, restore_into, verify_repo};
pub use store::{blob_rel_path, BLOB_DIR};
pub(crate) use store::{hash_file, list_blob_files, BlobStore};

use std::io::{Read, Seek, SeekFrom};

use serde::{Deserialize, Serialize};

use crate::db::Db;
use crate::document::{validate_collection, validate_key, Document};
use crate::error::{Error, Result};
use crate::state::{EncodedKind, EncodedOp, EncodedValue};
use crate::txn::{CommitMeta, Committed, Expiry, Transaction};

/// Prefix of the reserved collections holding blob metadata: `.blobs.<collection>`.
pub const BLOB_COLLECTION_PREFIX: &str = ".blobs.";

/// The reserved collection holding the metadata of the blobs of `collection`.
pub fn metadata_collection(collection: &str) -> String {
    format!("{BLOB_COLLECTION_PREFIX}{collection}")
}

/// The user collection whose blobs the reserved collection `name` holds, if it is one.
pub fn user_collection(name: &str) -> Option<&str> {
    name.strip_prefix(BLOB_COLLECTION_PREFIX)
}

/// Default content type of a blob uploaded without one.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// The metadata document's value (`.blobs.<collection>/<key>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BlobDoc {
    /// SHA-256 of the blob's bytes, lowercase hex.
    pub sha256: String,
    /// Length in bytes.
    pub size: u64,
    /// The content type given on upload.
    pub content_type: String,
}

/// A blob as a read sees it: its metadata and version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlobInfo {
    /// The user collection.
    pub collection: String,
    /// The blob's key.
    pub key: String,
    /// SHA-256 of its bytes.
    #[serde(serialize_with = "hex_sha")]
    pub sha256: [u8; 32],
    /// Length in bytes.
    pub size: u64,
    /// The content type given on upload.
    pub content_type: String,
    /// The version (of its metadata document; grows on every write of the key).
    pub version: u64,
    /// LSN of the commit that wrote this version.
    pub lsn: u64,
    /// When the key was first written, microseconds since the Unix epoch.
    pub created_at: u64,
    /// When this version was committed, microseconds since the Unix epoch.
    pub updated_at: u64,
}

fn hex_sha<S: serde::Serializer>(sha: &[u8; 32], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(sha))
}

impl BlobInfo {
    /// The blob's SHA-256 as lowercase hex.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }

    /// Reads the metadata document `doc` of the blob `collection/key`.
    pub(crate) fn from_doc(collection: &str, doc: &Document) -> Option<BlobInfo> {
        let meta: BlobDoc = serde_json::from_slice(&doc.value).ok()?;
        Some(BlobInfo {
            collection: collection.to_owned(),
            key: doc.key.to_string(),
            sha256: store::parse_sha256(&meta.sha256)?,
            size: meta.size,
            content_type: meta.content_type,
            version: doc.meta.version,
            lsn: doc.meta.lsn,
            created_at: doc.meta.created_at,
            updated_at: doc.meta.updated_at,
        })
    }
}

/// A blob uploaded under a staging id, not visible until a commit names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StagedBlob {
    /// Name it in [`Transaction::blob_ref`] (32 hex digits).
    pub staging_id: String,
    /// SHA-256 of its bytes.
    #[serde(serialize_with = "hex_sha")]
    pub sha256: [u8; 32],
    /// Length in bytes.
    pub size: u64,
    /// Its content type.
    pub content_type: String,
}

/// What a transaction does to a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobWriteKind {
    /// Makes the blob staged under this id the blob's new version.
    Ref(String),
    /// Deletes the blob (a no-op when missing unless `if_version` says otherwise).
    Delete,
}

/// A write to one blob, as a transaction operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobWrite {
    /// The user collection.
    pub collection: String,
    /// The blob's key.
    pub key: String,
    /// What to do.
    pub kind: BlobWriteKind,
    /// Required current version of the blob (0 = must not exist).
    pub if_version: Option<u64>,
}

/// What a caller may require of a blob's upload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlobUpload {
    /// Content type (default `application/octet-stream`).
    pub content_type: Option<String>,
    /// Refuse the upload (storing nothing) unless its bytes hash to this SHA-256.
    pub expected_sha256: Option<[u8; 32]>,
}

/// A blob's bytes, read (and seeked) through the engine's io layer; a sealed blob file is
/// decrypted one 64 KiB unit at a time, each unit authenticated before any of its bytes is
/// returned (an unauthentic unit fails the read with `ErrorKind::InvalidData`).
pub struct BlobReader {
    content: store::Content,
    len: u64,
}

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobReader({} bytes)", self.len)
    }
}

impl BlobReader {
    /// Length of the blob in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty blob.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match &mut self.content {
            store::Content::Plain(f) => f.read(buf),
            store::Content::Sealed(r) => r.read(buf),
        }
    }
}

impl Seek for BlobReader {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        match &mut self.content {
            store::Content::Plain(f) => f.seek(pos),
            store::Content::Sealed(r) => r.seek(pos),
        }
    }
}

/// Encodes a blob write of a transaction: the metadata document's put (from the staging
/// record, with its content hash pinned until the commit returns) or delete.
pub(crate) fn encode_write(
    store: &BlobStore,
    w: &BlobWrite,
    pinned: &mut Vec<[u8; 32]>,
) -> Result<EncodedOp> {
    validate_collection(&w.collection)?;
    validate_key(&w.key)?;
    let kind = match &w.kind {
        BlobWriteKind::Delete => EncodedKind::Delete,
        BlobWriteKind::Ref(id) => {
            let rec = store.staged(id)?.ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "no staged blob {id:?} (never staged, already committed, or removed after {} s)",
                    crate::limits::BLOB_STAGING_TTL.as_secs()
                ))
            })?;
            let sha = store::parse_sha256(&rec.sha256).ok_or_else(|| {
                Error::InvalidValue(format!("staging record {id} has a malformed SHA-256"))
            })?;
            // Pinned before the file is checked, so collection cannot remove it in between.
            store.pin(sha);
            pinned.push(sha);
            if !store.path_of(&sha).is_file() {
                return Err(Error::InvalidArgument(format!(
                    "the file of staged blob {id} is gone"
                )));
            }
            let doc = BlobDoc {
                sha256: rec.sha256,
                size: rec.size,
                content_type: rec.content_type,
            };
            let value =
                serde_json::to_value(&doc).map_err(|e| Error::InvalidValue(e.to_string()))?;
            EncodedKind::Put(EncodedValue::new(&value))
        }
    };
    Ok(EncodedOp {
        collection: metadata_collection(&w.collection).into(),
        key: w.key.as_str().into(),
        kind,
        if_version: w.if_version,
        schema_version: None,
        expiry: Expiry::Never,
    })
}

/// Staging ids a transaction names, to remove their records after it committed.
pub(crate) fn staging_ids(txn: &Transaction) -> Vec<&str> {
    txn.ops
        .iter()
        .filter_map(|op| match op {
            crate::txn::Op::Blob(BlobWrite {
                kind: BlobWriteKind::Ref(id),
                ..
            }) => Some(id.as_str()),
            _ => None,
        })
        .collect()
}

impl Db {
    /// Streams `body` into a blob file under a staging id (content-addressed, synced, its
    /// name durable) and returns the id; nothing is visible until a transaction names it
    /// with [`Transaction::blob_ref`]. Refused past [`crate::Options::max_blob_bytes`]
    /// (`Error::BlobTooLarge`, counted while streaming) and, with `expected_sha256`, when the
    /// bytes hash otherwise (`Error::DigestMismatch`); both store nothing. Holds one 64 KiB
    /// buffer, whatever the blob's size.
    pub fn stage_blob(
        &self,
        collection: &str,
        key: &str,
        body: &mut dyn Read,
        upload: &BlobUpload,
    ) -> Result<StagedBlob> {
        validate_collection(collection)?;
        validate_key(key)?;
        if let Some(e) = self.shared_state().poisoned_error() {
            return Err(e);
        }
        let content_type = upload
            .content_type
            .clone()
            .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned());
        check_content_type(&content_type)?;
        let store = self.blob_store();
        let limit = self.options().max_blob_bytes;
        let got = store.receive(body, limit, || (collection.to_owned(), key.to_owned()))?;
        if let Some(want) = upload.expected_sha256 {
            if want != got.sha256 {
                let actual = got.sha256;
                store.discard(&got);
                return Err(Error::DigestMismatch {
                    expected: hex::encode(want),
                    actual: hex::encode(actual),
                });
            }
        }
        let (sha256, size) = (got.sha256, got.size);
        let now = self.options().clock.wall_micros();
        let staging_id = store.stage(got, &content_type, now)?;
        Ok(StagedBlob {
            staging_id,
            sha256,
            size,
            content_type,
        })
    }

    /// Uploads a blob and commits it as the new version of `collection/key` (optionally only
    /// if the blob is at `if_version`, 0 = must not exist).
    pub fn put_blob(
        &self,
        collection: &str,
        key: &str,
        body: &mut dyn Read,
        upload: &BlobUpload,
        if_version: Option<u64>,
    ) -> Result<(Committed, BlobInfo)> {
        let staged = self.stage_blob(collection, key, body, upload)?;
        let mut t = Transaction::new();
        t.blob_ref(collection, key, &staged.staging_id);
        if let Some(v) = if_version {
            if let Some(crate::txn::Op::Blob(w)) = t.ops.last_mut() {
                w.if_version = Some(v);
            }
        }
        let committed = self.commit(&t)?;
        let info = self
            .blob(collection, key)
            .filter(|b| b.lsn == committed.lsn)
            .unwrap_or(BlobInfo {
                collection: collection.to_owned(),
                key: key.to_owned(),
                sha256: staged.sha256,
                size: staged.size,
                content_type: staged.content_type,
                version: committed.results.first().map_or(0, |r| r.version),
                lsn: committed.lsn,
                created_at: committed.commit_ts,
                updated_at: committed.commit_ts,
            });
        Ok((committed, info))
    }

    /// Deletes a blob (its file is removed by garbage collection once nothing needs it).
    pub fn delete_blob(&self, collection: &str, key: &str) -> Result<Committed> {
        let mut t = Transaction::new();
        t.delete_blob(collection, key);
        self.commit(&t)
    }

    /// The current version of a blob's metadata, `None` when missing.
    pub fn blob(&self, collection: &str, key: &str) -> Option<BlobInfo> {
        let doc = self.get(&metadata_collection(collection), key)?;
        BlobInfo::from_doc(collection, &doc)
    }

    /// Blobs of `collection` in key order (prefix, range and cursor as for documents).
    pub fn list_blobs(
        &self,
        collection: &str,
        opts: &crate::ListOptions,
    ) -> Result<(Vec<BlobInfo>, Option<String>)> {
        validate_collection(collection)?;
        let page = self.list(&metadata_collection(collection), opts);
        let blobs = page
            .docs
            .iter()
            .filter_map(|d| BlobInfo::from_doc(collection, d))
            .collect();
        Ok((blobs, page.next))
    }

    /// Opens the bytes of a blob version (from [`Db::blob`] or a listing) for reading.
    /// A sealed blob file needs the key its header names (`Error::KeyMissing` otherwise) and
    /// must authenticate as this blob (`Error::Unauthentic`).
    pub fn open_blob(&self, info: &BlobInfo) -> Result<BlobReader> {
        let content = self.blob_store().open_content(&info.sha256, info.size)?;
        Ok(BlobReader {
            content,
            len: info.size,
        })
    }

    /// Removes blob files that nothing needs any more and staging records older than
    /// [`crate::limits::BLOB_STAGING_TTL`] (see `gc.rs` for the rule).
    pub fn gc_blobs(&self) -> Result<BlobGcReport> {
        gc::collect(self)
    }

    /// Commits `txn` whose blob ops are resolved against the store: staged blobs pinned until
    /// the commit returns, staging records removed after it succeeded.
    pub(crate) fn commit_with_blobs(
        &self,
        txn: &Transaction,
        meta: CommitMeta,
    ) -> Result<Committed> {
        let store = self.blob_store();
        let mut pinned = vec![];
        let mut result = (|| {
            let ops = crate::state::encode_transaction_with(
                txn,
                self.options().max_doc_bytes,
                &mut |w| encode_write(store, w, &mut pinned),
            )?;
            let durability = txn.durability.unwrap_or(self.options().durability);
            self.commit_encoded(ops, durability, meta)
        })();
        if let Ok(c) = &mut result {
            // Results name the blob's collection, not its metadata collection.
            for r in &mut c.results {
                if let Some(user) = user_collection(&r.collection) {
                    r.collection = user.to_owned();
                }
            }
            for id in staging_ids(txn) {
                if let Err(e) = store.unstage(id) {
                    // The blob is committed; an unremoved record only expires later.
                    tracing::warn!(error = %e, id, "could not remove a committed staging record");
                }
            }
        }
        for sha in &pinned {
            store.unpin(sha);
        }
        result
    }
}

/// A content type is a short printable ASCII string (it is echoed in a response header).
fn check_content_type(ct: &str) -> Result<()> {
    if ct.is_empty() || ct.len() > 255 || !ct.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(Error::InvalidArgument(
            "a content type must be 1 to 255 printable ASCII characters".into(),
        ));
    }
    Ok(())
}

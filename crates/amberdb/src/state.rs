//! The in-memory state: persistent ordered maps of collections and documents, the rules that
//! turn a transaction into a commit record against it, and the immutable read view.
//!
//! A `State` is never mutated once published; the committer derives the next one by applying
//! a commit record to a clone (cheap: the maps share structure), so readers holding an older
//! view see a consistent snapshot for as long as they keep it.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use imbl::{OrdMap, OrdSet};

use crate::document::{validate_collection, validate_key, DocMeta, Document};
use crate::error::{Conflict, ConflictReason, Error, Result};
use crate::log::record::{CommitRecord, LoggedOp, WrittenDoc};
use crate::txn::{Op, OpResult, Patch, Transaction, WriteKind};

/// What is left of a deleted document: enough for a later write of the key to link to the
/// delete (`prev_lsn`) and to continue its versions, so a version never repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tombstone {
    /// LSN of the delete.
    pub lsn: u64,
    /// Commit time of the delete; the tombstone is pruned once it is older than the
    /// tombstone retention (measured in commit time, so replay prunes at the same commits).
    pub deleted_at: u64,
    /// The version the document had when it was deleted (or a bound above it, for tombstones
    /// read from a format-1 checkpoint, which did not record it).
    pub last_version: u64,
}

/// One collection's documents, and a tombstone per recently deleted key (so a later write
/// can link to the delete as its previous LSN and continue after its version).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Collection {
    /// Documents in key order, for listing and checkpoints. Change through `insert_doc` and
    /// `remove_doc` only, so `by_key` stays in step.
    pub docs: OrdMap<Arc<str>, Document>,
    /// The same documents hashed by key, for point reads and transaction preparation: a
    /// lookup in the ordered map chases a pointer per key comparison (~7 us at a million
    /// documents, `docs/BENCHMARKS.md`), a hash lookup touches a few nodes.
    /// Values are shared `Arc`s: an inline `Document` in every slot of the hash trie's
    /// full-width nodes cost ~1.3 KB per document, a pointer ~450 bytes.
    by_key: imbl::HashMap<Arc<str>, Arc<Document>>,
    /// Deleted keys. Change through `State::insert_tombstone`, `State::apply` and pruning
    /// only, so `State::tombstone_queue` stays in step.
    pub tombstones: OrdMap<Arc<str>, Tombstone>,
    /// The highest version any pruned tombstone of this collection had (0 = none pruned). A
    /// key with neither a document nor a tombstone may have had a pruned one, so a new
    /// document starts above this floor: versions of a key never repeat.
    pub version_floor: u64,
}

impl Collection {
    pub(crate) fn insert_doc(&mut self, key: Arc<str>, doc: Document) {
        self.by_key.insert(key.clone(), Arc::new(doc.clone()));
        self.docs.insert(key, doc);
    }

    pub(crate) fn remove_doc(&mut self, key: &str) {
        self.by_key.remove(key);
        self.docs.remove(key);
    }

    pub(crate) fn get_doc(&self, key: &str) -> Option<&Document> {
        self.by_key.get(key).map(|d| &**d)
    }

    /// The highest version `key` ever had while it has no document: a new document of the
    /// key starts after it.
    fn last_version(&self, key: &str) -> u64 {
        self.tombstones.get(key).map_or(self.version_floor, |t| {
            t.last_version.max(self.version_floor)
        })
    }
}

/// Default of `Options::tombstone_retention` (and of states that were not told otherwise).
pub(crate) const DEFAULT_TOMBSTONE_RETENTION: Duration = Duration::from_secs(3600);

/// The whole database at one LSN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct State {
    pub lsn: u64,
    pub commit_ts: u64,
    pub collections: OrdMap<Arc<str>, Collection>,
    /// Every tombstone as (deleted_at, collection, key), oldest first, so pruning looks only
    /// at the tombstones it removes. Derived from the collections' tombstones, never stored.
    tombstone_queue: OrdSet<(u64, Arc<str>, Arc<str>)>,
    /// Tombstones older than this many microseconds of commit time are pruned when a commit
    /// is applied. Part of the state (and of checkpoints), so a replay prunes exactly where
    /// the live database did.
    pub tombstone_retention_us: u64,
}

impl Default for State {
    fn default() -> Self {
        State {
            lsn: 0,
            commit_ts: 0,
            collections: OrdMap::new(),
            tombstone_queue: OrdSet::new(),
            tombstone_retention_us: duration_us(DEFAULT_TOMBSTONE_RETENTION),
        }
    }
}

fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The tombstone retention a database opened with `opts` prunes with: at least the log
/// retention, so the `prev_lsn` chain through a delete lasts as long as the log it points to.
pub(crate) fn tombstone_retention_us(opts: &crate::options::Options) -> u64 {
    duration_us(opts.tombstone_retention.max(opts.log_retention))
}

impl State {
    /// An empty state that prunes tombstones older than `tombstone_retention_us`.
    pub(crate) fn empty(tombstone_retention_us: u64) -> State {
        State {
            tombstone_retention_us,
            ..State::default()
        }
    }

    /// Adds (or replaces) the tombstone of `collection`/`key`.
    pub(crate) fn insert_tombstone(&mut self, collection: &Arc<str>, key: &Arc<str>, t: Tombstone) {
        let coll = self.collections.entry(collection.clone()).or_default();
        if let Some(old) = coll.tombstones.insert(key.clone(), t) {
            self.tombstone_queue
                .remove(&(old.deleted_at, collection.clone(), key.clone()));
        }
        self.tombstone_queue
            .insert((t.deleted_at, collection.clone(), key.clone()));
    }

    /// Removes every tombstone deleted before `cutoff` (commit time), raising its
    /// collection's version floor to the versions it held.
    fn prune_tombstones(&mut self, cutoff: u64) {
        while let Some(oldest) = self.tombstone_queue.get_min() {
            if oldest.0 >= cutoff {
                break;
            }
            let Some((_, collection, key)) = self.tombstone_queue.remove_min() else {
                break;
            };
            if let Some(coll) = self.collections.get_mut(&collection) {
                if let Some(t) = coll.tombstones.remove(&key) {
                    coll.version_floor = coll.version_floor.max(t.last_version);
                }
            }
        }
    }

    /// Tombstones kept in all collections.
    #[cfg(test)]
    pub(crate) fn tombstone_count(&self) -> u64 {
        self.tombstone_queue.len() as u64
    }

    /// Applies a commit record (replay and live commits use this same path), then prunes
    /// tombstones older than the retention, measured from this commit's time.
    pub(crate) fn apply(&mut self, rec: &CommitRecord) {
        for op in &rec.ops {
            let coll = self.collections.entry(op.collection.clone()).or_default();
            match &op.doc {
                Some(d) => {
                    if let Some(t) = coll.tombstones.remove(&op.key) {
                        self.tombstone_queue.remove(&(
                            t.deleted_at,
                            op.collection.clone(),
                            op.key.clone(),
                        ));
                    }
                    coll.insert_doc(
                        op.key.clone(),
                        Document {
                            key: op.key.clone(),
                            value: d.value.clone(),
                            meta: DocMeta {
                                version: d.version,
                                schema_version: d.schema_version,
                                created_at: d.created_at,
                                updated_at: rec.commit_ts,
                                lsn: rec.lsn,
                                sha256: d.sha256,
                            },
                        },
                    );
                }
                None => {
                    // The delete frame carries no version: the deleted document (always
                    // present when the log is sound) says which one it was.
                    let last_version = coll
                        .get_doc(&op.key)
                        .map_or_else(|| coll.last_version(&op.key), |d| d.meta.version);
                    coll.remove_doc(&op.key);
                    let tombstone = Tombstone {
                        lsn: rec.lsn,
                        deleted_at: rec.commit_ts,
                        last_version,
                    };
                    self.insert_tombstone(&op.collection, &op.key, tombstone);
                }
            }
        }
        self.lsn = rec.lsn;
        self.commit_ts = rec.commit_ts;
        self.prune_tombstones(rec.commit_ts.saturating_sub(self.tombstone_retention_us));
    }

    pub(crate) fn get(&self, collection: &str, key: &str) -> Option<&Document> {
        self.collections.get(collection)?.get_doc(key)
    }

    /// Number of live documents.
    pub(crate) fn doc_count(&self) -> u64 {
        self.collections.values().map(|c| c.docs.len() as u64).sum()
    }
}

/// A value already encoded by the writer's thread: canonical JSON and its SHA-256.
#[derive(Debug, Clone)]
pub(crate) struct EncodedValue {
    pub bytes: Arc<[u8]>,
    pub sha256: [u8; 32],
}

impl EncodedValue {
    pub(crate) fn new(value: &serde_json::Value) -> Self {
        let bytes = crate::document::canonical_json(value);
        let sha256 = crate::codec::sha256(&bytes);
        EncodedValue {
            bytes: bytes.into(),
            sha256,
        }
    }
}

/// A transaction operation after validation and encoding, ready for the committer.
#[derive(Debug, Clone)]
pub(crate) enum EncodedKind {
    Put(EncodedValue),
    Create(EncodedValue),
    Replace(EncodedValue),
    Patch(Patch),
    Delete,
    Check(u64),
}

#[derive(Debug, Clone)]
pub(crate) struct EncodedOp {
    pub collection: Arc<str>,
    pub key: Arc<str>,
    pub kind: EncodedKind,
    pub if_version: Option<u64>,
    /// Declared schema version; `None` keeps the document's (patches) or uses 1 (new values).
    pub schema_version: Option<u32>,
}

/// Validates names and sizes and encodes values, in the caller's thread, so the committer
/// only does what needs the latest state.
pub(crate) fn encode_transaction(
    txn: &Transaction,
    max_doc_bytes: usize,
) -> Result<Vec<EncodedOp>> {
    let mut out = Vec::with_capacity(txn.ops.len());
    for op in &txn.ops {
        let (collection, key) = match op {
            Op::Write(w) => (&w.collection, &w.key),
            Op::Check {
                collection, key, ..
            } => (collection, key),
        };
        validate_collection(collection)?;
        validate_key(key)?;
        let encode = |v: &serde_json::Value| {
            // Depth first: encoding recurses, and a hostile value may be arbitrarily deep.
            crate::patch::check_depth(collection, key, v)?;
            let e = EncodedValue::new(v);
            if e.bytes.len() > max_doc_bytes {
                return Err(Error::TooLarge {
                    collection: collection.clone(),
                    key: key.clone(),
                    size: e.bytes.len(),
                    limit: max_doc_bytes,
                });
            }
            Ok(e)
        };
        let (kind, if_version, schema_version) = match op {
            Op::Write(w) => {
                let kind = match &w.kind {
                    WriteKind::Put(v) => EncodedKind::Put(encode(v)?),
                    WriteKind::Create(v) => EncodedKind::Create(encode(v)?),
                    WriteKind::Replace(v) => EncodedKind::Replace(encode(v)?),
                    WriteKind::Patch(p) => {
                        match p {
                            Patch::Json(ops) => {
                                crate::patch::check_json_patch(collection, key, ops)?
                            }
                            Patch::Merge(m) => crate::patch::check_depth(collection, key, m)?,
                        }
                        EncodedKind::Patch(p.clone())
                    }
                    WriteKind::Delete => EncodedKind::Delete,
                };
                (kind, w.if_version, w.schema_version)
            }
            Op::Check { version, .. } => (EncodedKind::Check(*version), None, None),
        };
        if schema_version == Some(0) {
            return Err(Error::InvalidValue(
                "schema_version must be a positive integer".into(),
            ));
        }
        out.push(EncodedOp {
            collection: collection.as_str().into(),
            key: key.as_str().into(),
            kind,
            if_version,
            schema_version,
        });
    }
    Ok(out)
}

/// A document as the transaction being prepared sees it.
#[derive(Clone)]
struct Current {
    /// 0 when absent.
    version: u64,
    value: Option<EncodedValue>,
    created_at: u64,
    schema_version: u32,
    /// LSN of the last committed write or delete, for the record's prev_lsn.
    prev_lsn: u64,
    /// While absent: the highest version the key ever had, so a new document continues
    /// after it (a version never repeats, so an `if_version` can never match a different
    /// document).
    last_version: u64,
    touched: bool,
}

/// The result of preparing a transaction: the record to log and per-op results.
pub(crate) struct Prepared {
    pub record: CommitRecord,
    pub results: Vec<OpResult>,
}

impl State {
    fn current(&self, collection: &str, key: &str) -> Current {
        let coll = self.collections.get(collection);
        match coll.and_then(|c| c.get_doc(key)) {
            Some(d) => Current {
                version: d.meta.version,
                value: Some(EncodedValue {
                    bytes: d.value.clone(),
                    sha256: d.meta.sha256,
                }),
                created_at: d.meta.created_at,
                schema_version: d.meta.schema_version,
                prev_lsn: d.meta.lsn,
                last_version: d.meta.version,
                touched: false,
            },
            None => Current {
                version: 0,
                value: None,
                created_at: 0,
                schema_version: 0,
                prev_lsn: coll
                    .and_then(|c| c.tombstones.get(key))
                    .map_or(0, |t| t.lsn),
                last_version: coll.map_or(0, |c| c.last_version(key)),
                touched: false,
            },
        }
    }

    /// Evaluates a transaction against this state as commit `lsn` at time `ts`. Operations
    /// see the effects of earlier operations of the same transaction. Every failed
    /// precondition is collected; any failure means nothing is applied.
    pub(crate) fn prepare(
        &self,
        ops: &[EncodedOp],
        lsn: u64,
        ts: u64,
        max_doc_bytes: usize,
    ) -> Result<Prepared> {
        let mut scratch: BTreeMap<(Arc<str>, Arc<str>), Current> = BTreeMap::new();
        let mut order: Vec<(Arc<str>, Arc<str>)> = vec![];
        let mut results = Vec::with_capacity(ops.len());
        let mut conflicts = vec![];
        for (i, op) in ops.iter().enumerate() {
            let id = (op.collection.clone(), op.key.clone());
            let cur = scratch
                .entry(id.clone())
                .or_insert_with(|| self.current(&op.collection, &op.key));
            let conflict = |expected, reason| Conflict {
                op_index: i,
                collection: op.collection.to_string(),
                key: op.key.to_string(),
                expected,
                actual: cur.version,
                reason,
            };
            if let Some(v) = op.if_version.or(match op.kind {
                EncodedKind::Check(v) => Some(v),
                _ => None,
            }) {
                if cur.version != v {
                    conflicts.push(conflict(v, ConflictReason::VersionMismatch));
                    continue;
                }
            }
            let new_value = match &op.kind {
                EncodedKind::Check(_) => {
                    let schema = if cur.value.is_some() {
                        cur.schema_version
                    } else {
                        0
                    };
                    results.push(result(op, cur.version, false, schema));
                    continue;
                }
                EncodedKind::Delete => {
                    let existed = cur.value.is_some();
                    if existed {
                        cur.value = None;
                        cur.last_version = cur.version;
                        cur.version = 0;
                        // First write to this document in the transaction: remember its place
                        // (a flag, not a search of `order`, so big batches stay linear).
                        if !cur.touched {
                            order.push(id);
                        }
                        cur.touched = true;
                    }
                    results.push(result(op, 0, existed, 0));
                    continue;
                }
                EncodedKind::Put(v) => v.clone(),
                EncodedKind::Create(v) => {
                    if cur.value.is_some() {
                        conflicts.push(conflict(0, ConflictReason::AlreadyExists));
                        continue;
                    }
                    v.clone()
                }
                EncodedKind::Replace(v) => {
                    if cur.value.is_none() {
                        conflicts.push(conflict(1, ConflictReason::Missing));
                        continue;
                    }
                    v.clone()
                }
                EncodedKind::Patch(p) => {
                    let Some(existing) = &cur.value else {
                        conflicts.push(conflict(1, ConflictReason::Missing));
                        continue;
                    };
                    let mut doc: serde_json::Value = serde_json::from_slice(&existing.bytes)
                        .map_err(|e| {
                            Error::InvalidValue(format!("stored value does not parse: {e}"))
                        })?;
                    match p {
                        Patch::Merge(m) => json_patch::merge(&mut doc, m),
                        // Bounded: refused as soon as it grows past the size or depth limit.
                        Patch::Json(ops) => crate::patch::apply_json_patch(
                            &mut doc,
                            ops,
                            &op.collection,
                            &op.key,
                            existing.bytes.len(),
                            max_doc_bytes,
                        )?,
                    }
                    crate::patch::check_depth(&op.collection, &op.key, &doc)?;
                    let v = EncodedValue::new(&doc);
                    if v.bytes.len() > max_doc_bytes {
                        return Err(Error::TooLarge {
                            collection: op.collection.to_string(),
                            key: op.key.to_string(),
                            size: v.bytes.len(),
                            limit: max_doc_bytes,
                        });
                    }
                    v
                }
            };
            let is_patch = matches!(op.kind, EncodedKind::Patch(_));
            if cur.value.is_none() {
                cur.created_at = ts;
                cur.version = cur.last_version;
            }
            // A patch edits the stored value, so it keeps its schema version unless the
            // writer declares one; a whole new value without a declaration is version 1.
            cur.schema_version = match op.schema_version {
                Some(v) => v,
                None if is_patch => cur.schema_version.max(1),
                None => 1,
            };
            cur.value = Some(new_value);
            cur.version += 1;
            if !cur.touched {
                order.push(id);
            }
            cur.touched = true;
            results.push(result(op, cur.version, true, cur.schema_version));
        }
        if !conflicts.is_empty() {
            return Err(Error::Conflict(conflicts));
        }
        let ops = order
            .into_iter()
            .filter_map(|id| {
                let cur = scratch.get(&id)?;
                // A document created and deleted inside the same transaction that did not
                // exist before leaves nothing to log.
                if cur.value.is_none() && self.get(&id.0, &id.1).is_none() {
                    return None;
                }
                Some(LoggedOp {
                    collection: id.0,
                    key: id.1,
                    prev_lsn: cur.prev_lsn,
                    doc: cur.value.as_ref().map(|v| WrittenDoc {
                        version: cur.version,
                        schema_version: cur.schema_version,
                        created_at: cur.created_at,
                        sha256: v.sha256,
                        value: v.bytes.clone(),
                    }),
                })
            })
            .collect();
        Ok(Prepared {
            record: CommitRecord {
                lsn,
                commit_ts: ts,
                ops,
            },
            results,
        })
    }
}

fn result(op: &EncodedOp, version: u64, written: bool, schema_version: u32) -> OpResult {
    OpResult {
        schema_version,
        collection: op.collection.to_string(),
        key: op.key.to_string(),
        version,
        written,
    }
}

/// Which documents a listing returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Only keys starting with this prefix.
    pub prefix: Option<String>,
    /// Only keys strictly after this one (the resume cursor).
    pub start_after: Option<String>,
    /// Only keys strictly before this one.
    pub end_before: Option<String>,
    /// At most this many documents (0 = no limit).
    pub limit: usize,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The documents, in key order.
    pub docs: Vec<Document>,
    /// Pass as `start_after` to get the next page; `None` when this is the last page.
    pub next: Option<String>,
}

/// Documents and counts of one collection, as the read view sees them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CollectionInfo {
    /// The collection's name.
    pub name: String,
    /// Live documents.
    pub documents: u64,
    /// Tombstones kept for deleted keys (pruned after `Options::tombstone_retention`).
    pub tombstones: u64,
}

/// An immutable, consistent view of the database at one LSN. Reads never block writers and
/// never see part of a transaction; hold it as long as needed.
#[derive(Debug, Clone)]
pub struct ReadView {
    pub(crate) state: Arc<State>,
}

impl ReadView {
    /// LSN of the last commit this view contains.
    pub fn lsn(&self) -> u64 {
        self.state.lsn
    }

    /// Commit time of that commit (0 for an empty database).
    pub fn commit_ts(&self) -> u64 {
        self.state.commit_ts
    }

    /// One document.
    pub fn get(&self, collection: &str, key: &str) -> Option<Document> {
        self.state.get(collection, key).cloned()
    }

    /// Live documents in a collection (0 when it does not exist).
    pub fn count(&self, collection: &str) -> u64 {
        self.state
            .collections
            .get(collection)
            .map_or(0, |c| c.docs.len() as u64)
    }

    /// Every collection and its document count, by name.
    pub fn collections(&self) -> Vec<CollectionInfo> {
        self.state
            .collections
            .iter()
            .map(|(name, c)| CollectionInfo {
                name: name.to_string(),
                documents: c.docs.len() as u64,
                tombstones: c.tombstones.len() as u64,
            })
            .collect()
    }

    /// Documents of a collection in key order, filtered by prefix and range, one page at a time.
    pub fn list(&self, collection: &str, opts: &ListOptions) -> Page {
        let Some(coll) = self.state.collections.get(collection) else {
            return Page {
                docs: vec![],
                next: None,
            };
        };
        let prefix = opts.prefix.as_deref().unwrap_or("");
        let lower = match opts.start_after.as_deref() {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let limit = if opts.limit == 0 {
            usize::MAX
        } else {
            opts.limit
        };
        let mut docs = vec![];
        let mut next = None;
        for (key, doc) in coll.docs.range::<_, str>((lower, Bound::Unbounded)) {
            if !key.starts_with(prefix) || opts.end_before.as_deref().is_some_and(|e| &**key >= e) {
                break;
            }
            if docs.len() == limit {
                next = docs.last().map(|d: &Document| d.key.to_string());
                break;
            }
            docs.push(doc.clone());
        }
        Page { docs, next }
    }

    /// Every document of every collection, in (collection, key) order.
    pub fn iter_all(&self) -> impl Iterator<Item = (&str, &Document)> + '_ {
        self.state
            .collections
            .iter()
            .flat_map(|(name, c)| c.docs.values().map(move |d| (&**name, d)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use serde_json::json;

    /// Prepares `txn` as the next commit at time `ts` and applies it; returns the versions.
    fn commit(state: &mut State, txn: &Transaction, ts: u64) -> Result<Vec<u64>> {
        let ops = encode_transaction(txn, 1 << 20)?;
        let p = state.prepare(&ops, state.lsn + 1, ts, 1 << 20)?;
        if !p.record.ops.is_empty() {
            state.apply(&p.record);
        }
        Ok(p.results.iter().map(|r| r.version).collect())
    }

    fn put(key: &str) -> Transaction {
        let mut t = Transaction::new();
        t.put("c", key, json!({"k": key}));
        t
    }

    fn delete(key: &str) -> Transaction {
        let mut t = Transaction::new();
        t.delete("c", key);
        t
    }

    fn version(state: &State, key: &str) -> u64 {
        state.get("c", key).map_or(0, |d| d.meta.version)
    }

    #[test]
    fn recreated_document_continues_after_its_tombstone() {
        let mut s = State::default();
        for ts in 1..=3 {
            commit(&mut s, &put("k"), ts).unwrap();
        }
        commit(&mut s, &delete("k"), 4).unwrap();
        let tomb = s.collections["c"].tombstones["k"];
        assert_eq!((tomb.lsn, tomb.deleted_at, tomb.last_version), (4, 4, 3));
        assert_eq!(commit(&mut s, &put("k"), 5).unwrap(), vec![4]);
        // The re-created document still links to the delete.
        assert_eq!(s.get("c", "k").unwrap().meta.lsn, 5);
        assert_eq!(s.tombstone_count(), 0);
        // An `if_version` taken from the first document cannot match the new one.
        let mut stale = put("k");
        if let Op::Write(w) = &mut stale.ops[0] {
            w.if_version = Some(1);
        }
        assert!(matches!(commit(&mut s, &stale, 6), Err(Error::Conflict(_))));
    }

    #[test]
    fn recreate_links_prev_lsn_to_the_delete() {
        let mut s = State::default();
        commit(&mut s, &put("k"), 1).unwrap();
        commit(&mut s, &delete("k"), 2).unwrap();
        let ops = encode_transaction(&put("k"), 1 << 20).unwrap();
        let p = s.prepare(&ops, 3, 3, 1 << 20).unwrap();
        assert_eq!(p.record.ops[0].prev_lsn, 2);
        assert_eq!(p.record.ops[0].doc.as_ref().unwrap().version, 2);
    }

    #[test]
    fn delete_and_recreate_inside_one_transaction_never_repeats_a_version() {
        let mut s = State::default();
        commit(&mut s, &put("k"), 1).unwrap();
        let mut t = Transaction::new();
        t.put("c", "k", json!(1));
        t.delete("c", "k");
        t.put("c", "k", json!(2));
        assert_eq!(commit(&mut s, &t, 2).unwrap(), vec![2, 0, 3]);
        assert_eq!(version(&s, "k"), 3);
    }

    #[test]
    fn pruned_tombstone_leaves_a_floor_above_every_version_of_the_key() {
        let mut s = State {
            tombstone_retention_us: 10,
            ..State::default()
        };
        for ts in 1..=5 {
            commit(&mut s, &put("old"), ts).unwrap();
        }
        commit(&mut s, &put("fresh-before"), 6).unwrap();
        commit(&mut s, &delete("old"), 7).unwrap();
        // Deleted at 7: kept while commits are within 10 us of it...
        commit(&mut s, &put("other"), 17).unwrap();
        assert_eq!(s.tombstone_count(), 1);
        // ...and pruned by the first commit more than 10 us later.
        commit(&mut s, &put("other"), 18).unwrap();
        assert_eq!(s.tombstone_count(), 0);
        assert_eq!(s.collections["c"].version_floor, 5);
        assert_eq!(commit(&mut s, &put("old"), 19).unwrap(), vec![6]);
        // A key that never existed cannot be told from a pruned one: it starts above the
        // floor too; collections without pruning still start at 1.
        assert_eq!(commit(&mut s, &put("new"), 20).unwrap(), vec![6]);
        let mut t = Transaction::new();
        t.put("d", "new", json!({}));
        assert_eq!(commit(&mut s, &t, 21).unwrap(), vec![1]);
    }

    /// Why a pruned key continues above a floor and not at its create LSN: one transaction
    /// that writes a key several times takes its version past the commit's LSN, so "version
    /// <= LSN" does not hold and a document re-created at its LSN could reach an old version.
    #[test]
    fn recreate_after_pruning_stays_above_versions_that_outran_their_lsn() {
        let mut s = State::empty(0);
        let mut t = Transaction::new();
        for _ in 0..5 {
            t.put("c", "k", json!(1));
        }
        assert_eq!(commit(&mut s, &t, 1).unwrap(), vec![1, 2, 3, 4, 5]);
        assert_eq!((s.lsn, version(&s, "k")), (1, 5));
        commit(&mut s, &delete("k"), 2).unwrap();
        commit(&mut s, &put("other"), 3).unwrap();
        assert!(s.collections["c"].tombstones.is_empty(), "pruned");
        // At LSN 4 a create-LSN rule would give 4 and the next write 5, the old version.
        assert_eq!(commit(&mut s, &put("k"), 4).unwrap(), vec![6]);
        assert_eq!(commit(&mut s, &put("k"), 5).unwrap(), vec![7]);
    }

    #[test]
    fn tombstones_of_a_unique_key_workload_stay_bounded() {
        let mut s = State {
            tombstone_retention_us: 100,
            ..State::default()
        };
        for i in 0..5_000u64 {
            let key = format!("session-{i}");
            commit(&mut s, &put(&key), 2 * i + 1).unwrap();
            commit(&mut s, &delete(&key), 2 * i + 2).unwrap();
            // Deletes are 2 us apart, so at most 100 / 2 of them are inside the window.
            assert!(
                s.tombstone_count() <= 51,
                "{} tombstones",
                s.tombstone_count()
            );
        }
        assert_eq!(
            s.tombstone_count(),
            s.collections["c"].tombstones.len() as u64
        );
    }

    #[test]
    fn replaying_the_records_reproduces_pruning_exactly() {
        let mut live = State {
            tombstone_retention_us: 3,
            ..State::default()
        };
        let mut records = vec![];
        for i in 0..200u64 {
            let key = format!("k{}", i % 7);
            let txn = if i % 3 == 2 { delete(&key) } else { put(&key) };
            let ops = encode_transaction(&txn, 1 << 20).unwrap();
            let p = live.prepare(&ops, live.lsn + 1, i + 1, 1 << 20).unwrap();
            if !p.record.ops.is_empty() {
                live.apply(&p.record);
                records.push(p.record);
            }
        }
        let mut replayed = State {
            tombstone_retention_us: 3,
            ..State::default()
        };
        for r in &records {
            replayed.apply(r);
        }
        assert_eq!(replayed, live);
    }

    #[test]
    fn checkpoint_round_trips_tombstones_floors_and_retention() {
        let mut s = State {
            tombstone_retention_us: 5,
            ..State::default()
        };
        for ts in 1..=3 {
            commit(&mut s, &put("a"), ts).unwrap();
        }
        commit(&mut s, &delete("a"), 4).unwrap();
        commit(&mut s, &put("b"), 20).unwrap(); // prunes "a": floor 3
        commit(&mut s, &delete("b"), 21).unwrap(); // a kept tombstone
        assert_eq!(s.tombstone_count(), 1);
        for level in [0, 1] {
            let mut bytes = vec![];
            crate::checkpoint::encode_to(&s, level, &mut bytes).unwrap();
            let d = crate::checkpoint::decode(&bytes);
            assert!(d.problems.is_empty(), "{:?}", d.problems);
            assert_eq!(d.header.unwrap().format_version, 2);
            assert_eq!(d.state, s);
        }
    }

    /// The checkpoint format-1 encoder as it was before format 2 (one uncompressed block),
    /// kept here so the old decoder path stays tested.
    fn encode_v1(state: &State) -> Vec<u8> {
        use crate::codec::{put_str16, PutLe};
        use sha2::Digest;
        let mut raw = vec![];
        let mut entries = 0u64;
        for (name, c) in state.collections.iter() {
            raw.put_u8(1);
            put_str16(&mut raw, name);
            entries += 1;
            for (key, doc) in c.docs.iter() {
                raw.put_u8(2);
                put_str16(&mut raw, name);
                put_str16(&mut raw, key);
                raw.put_u64(doc.meta.version);
                raw.put_u32(doc.meta.schema_version);
                raw.put_u64(doc.meta.created_at);
                raw.put_u64(doc.meta.updated_at);
                raw.put_u64(doc.meta.lsn);
                raw.extend_from_slice(&doc.meta.sha256);
                raw.put_u32(doc.value.len() as u32);
                raw.extend_from_slice(&doc.value);
                entries += 1;
            }
            for (key, t) in c.tombstones.iter() {
                raw.put_u8(3);
                put_str16(&mut raw, name);
                put_str16(&mut raw, key);
                raw.put_u64(t.lsn);
                entries += 1;
            }
        }
        let mut b = vec![];
        b.extend_from_slice(b"AMBRCKPT");
        b.put_u32(1);
        b.put_u32(0);
        b.put_u64(state.lsn);
        b.put_u64(state.commit_ts);
        b.put_u64(state.doc_count());
        b.put_u64(entries);
        b.put_u32(0);
        b.put_u32(0);
        b.put_u32(0);
        let crc = crc32c::crc32c(&b);
        b.put_u32(crc);
        let mut block = vec![];
        block.put_u32(raw.len() as u32);
        block.put_u32(raw.len() as u32);
        block.put_u32(crc32c::crc32c(&raw));
        block.extend_from_slice(&raw);
        b.extend_from_slice(&block);
        b.put_u64(block.len() as u64);
        b.extend_from_slice(&sha2::Sha256::digest(&block));
        b.extend_from_slice(b"AMBRCEND");
        b
    }

    #[test]
    fn format_1_checkpoint_reads_with_the_same_versions_and_bounded_tombstones() {
        let mut s = State::default();
        for ts in 1..=4 {
            commit(&mut s, &put("gone"), ts).unwrap();
        }
        commit(&mut s, &put("live"), 5).unwrap();
        commit(&mut s, &delete("gone"), 6).unwrap();
        let d = crate::checkpoint::decode(&encode_v1(&s));
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        assert_eq!(d.header.unwrap().format_version, 1);
        let mut old = d.state;
        assert_eq!(old.get("c", "live"), s.get("c", "live"));
        assert_eq!(old.doc_count(), 1);
        // Format 1 kept only the delete's LSN: it bounds the deleted versions (4 < 6).
        let t = old.collections["c"].tombstones["gone"];
        assert_eq!((t.lsn, t.last_version, t.deleted_at), (6, 6, 6));
        assert_eq!(commit(&mut old, &put("gone"), 7).unwrap(), vec![7]);
    }
}

//! The in-memory state: persistent ordered maps of collections, documents and tombstones, and
//! applying a commit record to them (live commits and log replay use the same
//! [`State::apply`], so a replay reproduces the live state exactly, tombstone pruning included).
//!
//! A `State` is never mutated once published; the committer derives the next one by applying
//! a commit record to a clone (cheap: the maps share structure), so readers holding an older
//! view see a consistent snapshot for as long as they keep it.
//!
//! What else works on a `State` lives beside it: [`prepare`] turns a transaction into the
//! commit record to log (validation, preconditions, versions), [`view`] holds the public read
//! types. None of them does I/O: the log, checkpoints and the committer own that.

use std::sync::Arc;
use std::time::Duration;

use imbl::{OrdMap, OrdSet};

use crate::document::Document;
use crate::log::record::CommitRecord;

mod hash_index;
mod prepare;
mod view;

use hash_index::HashIndex;
pub(crate) use hash_index::HashedDoc;

pub(crate) use prepare::{
    encode_append, encode_transaction, encode_transaction_with, EncodedKind, EncodedOp,
    EncodedValue,
};
pub(crate) use view::is_system_collection;
pub use view::{CollectionInfo, ListOptions, Page, ReadView};

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
    /// `remove_doc` only, so `by_key` stays in step. Each document is held once, as an
    /// `Arc` shared with `by_key`: an inline `Document` made every ordered-map entry ~120
    /// bytes and every path copy clone two reference counts per entry.
    pub docs: OrdMap<Arc<str>, Arc<Document>>,
    /// The same documents hashed by key, for point reads and transaction preparation: a
    /// lookup in the ordered map chases a pointer per key comparison (~7 us at a million
    /// documents, `docs/BENCHMARKS.md`), a hash lookup touches a few nodes.
    /// Values are the `Arc`s of `docs`; [`HashIndex`] says why it is not `imbl::HashMap`.
    by_key: HashIndex,
    /// Deleted keys. Change through `State::insert_tombstone`, `State::apply` and pruning
    /// only, so `State::tombstone_queue` stays in step.
    pub tombstones: OrdMap<Arc<str>, Tombstone>,
    /// The highest version any pruned tombstone of this collection had (0 = none pruned). A
    /// key with neither a document nor a tombstone may have had a pruned one, so a new
    /// document starts above this floor: versions of a key never repeat.
    pub version_floor: u64,
    /// Every document with an expiry as (expires_at, key), soonest first: counts skip the
    /// expired ones without a scan, and the TTL reaper finds its work here. Derived from
    /// `docs` (kept in step by `insert_doc` and `remove_doc`), never stored.
    expiring: OrdSet<(u64, Arc<str>)>,
}

impl Collection {
    pub(crate) fn insert_doc(&mut self, doc: Document) {
        self.insert_arc(Arc::new(doc));
    }

    fn insert_arc(&mut self, doc: Arc<Document>) {
        let at = doc.meta.expires_at;
        let key = doc.key.clone();
        // One walk of the hash index: the document it replaces comes back from the insert
        // (a separate lookup first was 16% of a 1M-document reopen, docs/BENCHMARKS.md).
        let old = self
            .by_key
            .insert(doc.clone())
            .and_then(|d| d.meta.expires_at);
        if let Some(old) = old.filter(|o| Some(*o) != at) {
            self.expiring.remove(&(old, key.clone()));
        }
        if let Some(at) = at {
            self.expiring.insert((at, key.clone()));
        }
        self.docs.insert(key, doc);
    }

    /// Adds `docs` (a checkpoint's documents of this collection, in the order it stored
    /// them). Into an empty collection, documents in strictly ascending key order, the
    /// usual case, are loaded in bulk: the hash index is built in one pass
    /// ([`HashIndex::build`]) instead of one path-copying insert each. Anything else is
    /// inserted one by one, so a later duplicate still replaces an earlier one.
    pub(crate) fn extend_docs(&mut self, docs: Vec<HashedDoc>) {
        let sorted = docs
            .iter()
            .zip(docs.iter().skip(1))
            .all(|(a, b)| a.key() < b.key());
        if !(sorted && self.docs.is_empty()) {
            docs.into_iter()
                .for_each(|d| self.insert_arc(d.doc().clone()));
            return;
        }
        // The ordered maps and the hash index are built side by side: for 1,000,000
        // documents the ordered map's inserts took 0.59 s and the index 0.12 s, one after
        // the other. The index takes `docs` on this thread. A small collection is built
        // here, one after the other: starting a thread costs more than it saves.
        let docs_arcs: Vec<Arc<Document>> = docs.iter().map(|d| d.doc().clone()).collect();
        let build_ordered = |docs: Vec<Arc<Document>>| {
            let mut ordered = OrdMap::new();
            let mut expiring = OrdSet::new();
            for d in docs {
                if let Some(at) = d.meta.expires_at {
                    expiring.insert((at, d.key.clone()));
                }
                ordered.insert(d.key.clone(), d);
            }
            (ordered, expiring)
        };
        let (ordered, expiring) = if docs.len() < PARALLEL_BUILD_MIN_DOCS {
            self.by_key = HashIndex::build(docs);
            build_ordered(docs_arcs)
        } else {
            std::thread::scope(|s| {
                let (tx, rx) = std::sync::mpsc::sync_channel(1);
                let started = std::thread::Builder::new()
                    .name("amberdb-load-map".into())
                    .spawn_scoped(s, move || {
                        let _ = tx.send(build_ordered(docs_arcs));
                    });
                let unstarted = started.err().map(|_| ());
                self.by_key = HashIndex::build(docs);
                match (unstarted, rx.recv()) {
                    (None, Ok(built)) => built,
                    // No thread could be started: the closure (and its documents) was dropped,
                    // so build the ordered maps here from the index's documents.
                    _ => build_ordered(self.by_key.iter().cloned().collect()),
                }
            })
        };
        self.docs = ordered;
        self.expiring = expiring;
    }

    pub(crate) fn remove_doc(&mut self, key: &str) {
        if let Some(d) = self.by_key.remove(key) {
            if let Some(at) = d.meta.expires_at {
                self.expiring.remove(&(at, d.key.clone()));
            }
        }
        self.docs.remove(key);
    }

    /// Documents stored but expired at `now` (invisible to reads, not reaped yet), soonest
    /// expired first: (expires_at, key).
    pub(crate) fn expired_at(&self, now: u64) -> impl Iterator<Item = &(u64, Arc<str>)> + '_ {
        self.expiring
            .range(..(now.saturating_add(1), Arc::<str>::from("")))
    }

    /// Documents visible at `now`: stored ones minus the expired.
    pub(crate) fn live_count(&self, now: u64) -> u64 {
        self.docs.len().saturating_sub(self.expired_at(now).count()) as u64
    }

    pub(crate) fn get_doc(&self, key: &str) -> Option<&Document> {
        self.by_key.get(key).map(|d| &**d)
    }

    /// The highest version `key` ever had while it has no document: a new document of the
    /// key starts after it.
    pub(super) fn last_version(&self, key: &str) -> u64 {
        self.tombstones.get(key).map_or(self.version_floor, |t| {
            t.last_version.max(self.version_floor)
        })
    }
}

/// Collections loaded from a checkpoint with fewer documents than this build their ordered
/// map and hash index on one thread ([`Collection::extend_docs`]).
pub(crate) const PARALLEL_BUILD_MIN_DOCS: usize = 4096;

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
    /// Streams by name (`stream/`): sequence ranges, retention and a small index per entry;
    /// values live in the stream files, never here.
    pub streams: OrdMap<Arc<str>, crate::stream::StreamState>,
}

impl Default for State {
    fn default() -> Self {
        State {
            lsn: 0,
            commit_ts: 0,
            collections: OrdMap::new(),
            tombstone_queue: OrdSet::new(),
            tombstone_retention_us: duration_us(DEFAULT_TOMBSTONE_RETENTION),
            streams: OrdMap::new(),
        }
    }
}

fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The tombstone retention a database opened with `opts` prunes with: at least the log
/// retention, so the `prev_lsn` chain through a delete lasts as long as the log it points to.
pub(crate) fn tombstone_retention_us(opts: &crate::options::Options) -> u64 {
    duration_us(opts.tombstone_retention.max(opts.history_retention))
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
            match op.document(rec) {
                Some(doc) => {
                    if let Some(t) = coll.tombstones.remove(&op.key) {
                        self.tombstone_queue.remove(&(
                            t.deleted_at,
                            op.collection.clone(),
                            op.key.clone(),
                        ));
                    }
                    coll.insert_doc(doc);
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
        crate::stream::apply(&mut self.streams, rec);
        self.lsn = rec.lsn;
        self.commit_ts = rec.commit_ts;
        self.prune_tombstones(rec.commit_ts.saturating_sub(self.tombstone_retention_us));
    }

    pub(crate) fn get(&self, collection: &str, key: &str) -> Option<&Document> {
        self.collections.get(collection)?.get_doc(key)
    }

    /// A document as a read at `now` sees it: `None` when it is missing or expired.
    pub(crate) fn get_live(&self, collection: &str, key: &str, now: u64) -> Option<&Document> {
        self.get(collection, key).filter(|d| d.meta.is_live_at(now))
    }

    /// Number of live documents.
    pub(crate) fn doc_count(&self) -> u64 {
        self.collections.values().map(|c| c.docs.len() as u64).sum()
    }
}

#[cfg(test)]
mod tests;

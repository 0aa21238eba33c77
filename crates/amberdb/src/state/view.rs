//! The public read types: [`ReadView`], an immutable view of one published [`State`], and the
//! listing options and results it answers with. Reads only; they never block the committer.

use std::ops::Bound;
use std::sync::Arc;

use super::State;
use crate::document::Document;

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
///
/// A view reads at one instant, [`ReadView::now`]: documents that expired at or before it are
/// invisible to every method except [`ReadView::iter_all`] (which snapshots and verification
/// use, and which sees what is stored).
#[derive(Debug, Clone)]
pub struct ReadView {
    pub(crate) state: Arc<State>,
    /// The instant the view reads at (microseconds since the Unix epoch): the clock's wall
    /// time when the view was taken, and never before its last commit.
    pub(crate) now: u64,
}

/// Names of collections the engine keeps for itself (outside the user namespace, which
/// `validate_collection` enforces): hidden from listings of collections.
pub(crate) fn is_system_collection(name: &str) -> bool {
    name.starts_with('.')
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

    /// The instant this view reads at, microseconds since the Unix epoch: a document with
    /// `expires_at <= now()` is expired for it.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// One document (`None` when missing or expired).
    pub fn get(&self, collection: &str, key: &str) -> Option<Document> {
        self.state.get_live(collection, key, self.now).cloned()
    }

    /// Live documents in a collection (0 when it does not exist), expired ones not counted.
    pub fn count(&self, collection: &str) -> u64 {
        self.state
            .collections
            .get(collection)
            .map_or(0, |c| c.live_count(self.now))
    }

    /// Stored documents that have expired but are not reaped yet, in every collection.
    pub fn expired_pending(&self) -> u64 {
        self.state
            .collections
            .values()
            .map(|c| c.expired_at(self.now).count() as u64)
            .sum()
    }

    /// Every collection and its document count, by name (the engine's own collections left
    /// out).
    pub fn collections(&self) -> Vec<CollectionInfo> {
        self.state
            .collections
            .iter()
            .filter(|(name, _)| !is_system_collection(name))
            .map(|(name, c)| CollectionInfo {
                name: name.to_string(),
                documents: c.live_count(self.now),
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
            if doc.expired_at(self.now) {
                continue;
            }
            if docs.len() == limit {
                next = docs.last().map(|d: &Document| d.key.to_string());
                break;
            }
            docs.push(Document::clone(doc));
        }
        Page { docs, next }
    }

    /// Every stored document of every collection, in (collection, key) order, expired ones
    /// not yet reaped included (snapshots must carry them: their versions and `prev_lsn`
    /// chain continue when the key is written again).
    pub fn iter_all(&self) -> impl Iterator<Item = (&str, &Document)> + '_ {
        self.state
            .collections
            .iter()
            .flat_map(|(name, c)| c.docs.values().map(move |d| (&**name, &**d)))
    }
}

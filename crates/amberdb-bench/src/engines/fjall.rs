//! fjall (an LSM tree) with one keyspace keyed by `collection \0 key`, 1 GiB block cache
//! (the same budget as redb's cache).
//!
//! Durability is per write batch, the fairest fjall has: a durable commit is a batch
//! committed with `PersistMode::SyncData` (fdatasync of the journal, what AmberDB's `Sync`
//! does); a buffered one is a batch with `PersistMode::Buffer` (the OS write, like AmberDB's
//! `Buffered`), and [`Store::sync`] persists the journal with `SyncData`. A bulk load is one
//! batch per transaction, durable at its commit.

use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use serde_json::Value;

use super::{Mode, Reader, Store};
use crate::gamestate::COLLECTION;
use crate::Result;

/// The keyspace key of a document: collection, a 0 byte (never in a collection name), key.
fn doc_key(key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(COLLECTION.len() + 1 + key.len());
    k.extend_from_slice(COLLECTION.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

pub(super) struct FjallStore {
    db: Database,
    docs: Keyspace,
    persist: PersistMode,
}

impl FjallStore {
    pub(super) fn open(dir: &Path, mode: Mode) -> Result<Self> {
        let db = Database::builder(dir.join("fjall"))
            .cache_size(1 << 30)
            .open()?;
        let docs = db.keyspace("docs", KeyspaceCreateOptions::default)?;
        let persist = match mode {
            Mode::Durable => PersistMode::SyncData,
            Mode::Buffered => PersistMode::Buffer,
        };
        Ok(FjallStore { db, docs, persist })
    }

    fn commit(&self, docs: impl IntoIterator<Item = (String, Value)>) -> Result<()> {
        let mut batch = self.db.batch().durability(Some(self.persist));
        for (key, value) in docs {
            batch.insert(&self.docs, doc_key(&key), serde_json::to_vec(&value)?);
        }
        batch.commit()?;
        Ok(())
    }
}

impl Store for FjallStore {
    fn put(&self, key: &str, value: Value) -> Result<()> {
        self.commit([(key.to_string(), value)])
    }

    fn put_batch(&self, docs: Vec<(String, Value)>) -> Result<()> {
        self.commit(docs)
    }

    fn sync(&self) -> Result<()> {
        self.db.persist(PersistMode::SyncData)?;
        Ok(())
    }

    fn reader(&self) -> Result<Box<dyn Reader + Send + '_>> {
        Ok(Box::new(FjallReader { docs: &self.docs }))
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.db.persist(PersistMode::SyncAll)?;
        drop(self.docs);
        drop(self.db);
        Ok(())
    }
}

struct FjallReader<'a> {
    docs: &'a Keyspace,
}

impl FjallReader<'_> {
    /// Counts up to `limit` entries of `iter` (documents and value bytes).
    fn count(iter: fjall::Iter, limit: usize) -> Result<(usize, usize)> {
        let (mut docs, mut bytes) = (0, 0);
        for guard in iter.take(limit) {
            let (_, v) = guard.into_inner()?;
            docs += 1;
            bytes += v.len();
        }
        Ok((docs, bytes))
    }
}

impl Reader for FjallReader<'_> {
    fn get(&mut self, key: &str) -> Result<Option<usize>> {
        Ok(self.docs.get(doc_key(key))?.map(|v| v.len()))
    }

    fn prefix(&mut self, prefix: &str, limit: usize) -> Result<(usize, usize)> {
        Self::count(self.docs.prefix(doc_key(prefix)), limit)
    }

    fn after(&mut self, start_after: &str, limit: usize) -> Result<(usize, usize)> {
        use std::ops::Bound;
        let lo = doc_key(start_after);
        let mut hi = doc_key("");
        // Every key of the collection is below "collection\x01".
        if let Some(last) = hi.last_mut() {
            *last = 1;
        }
        Self::count(
            self.docs
                .range::<Vec<u8>, _>((Bound::Excluded(lo), Bound::Excluded(hi))),
            limit,
        )
    }
}

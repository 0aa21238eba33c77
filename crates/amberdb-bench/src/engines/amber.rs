//! AmberDB through its public embedded API, default options.

use std::path::Path;

use amberdb::{Db, Durability, ListOptions, Options, Transaction};
use serde_json::Value;

use super::{Mode, Reader, Store, AMBER_BUFFERED_DELAY};
use crate::gamestate::COLLECTION;
use crate::Result;

/// The key of `AmberDB (encrypted)`: fixed, so the parent and a reopen child agree (a bench
/// key, never a secret).
pub fn bench_keyring() -> amberdb::crypto::Keyring {
    amberdb::crypto::Keyring::single(amberdb::crypto::Key::from_bytes([0xA7; 32]))
}

pub(super) struct AmberStore {
    db: Db,
}

impl AmberStore {
    pub(super) fn open(
        dir: &Path,
        mode: Mode,
        encryption: Option<amberdb::crypto::Keyring>,
    ) -> Result<Self> {
        let durability = match mode {
            Mode::Durable => Durability::Sync,
            Mode::Buffered => amberdb::buffered(AMBER_BUFFERED_DELAY),
        };
        let db = Db::open_with(
            dir.join("amberdb"),
            Options {
                durability,
                encryption,
                ..Default::default()
            },
        )?;
        Ok(AmberStore { db })
    }
}

impl Store for AmberStore {
    fn put(&self, key: &str, value: Value) -> Result<()> {
        self.db.put(COLLECTION, key, value)?;
        Ok(())
    }

    fn put_batch(&self, docs: Vec<(String, Value)>) -> Result<()> {
        let mut tx = Transaction::new();
        for (key, value) in docs {
            tx.put(COLLECTION, &key, value);
        }
        self.db.commit(&tx)?;
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.db.sync()?;
        Ok(())
    }

    fn reader(&self) -> Result<Box<dyn Reader + Send + '_>> {
        Ok(Box::new(AmberReader {
            db: self.db.clone(),
        }))
    }

    fn commits_per_fsync(&self) -> Option<f64> {
        Some(self.db.stats().commits_per_fsync)
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.db.close()?;
        Ok(())
    }
}

struct AmberReader {
    db: Db,
}

fn page_size(page: &amberdb::Page) -> (usize, usize) {
    (
        page.docs.len(),
        page.docs.iter().map(|d| d.value.len()).sum(),
    )
}

impl Reader for AmberReader {
    fn get(&mut self, key: &str) -> Result<Option<usize>> {
        Ok(self.db.get(COLLECTION, key).map(|d| d.value.len()))
    }

    fn prefix(&mut self, prefix: &str, limit: usize) -> Result<(usize, usize)> {
        let opts = ListOptions {
            prefix: Some(prefix.to_owned()),
            limit,
            ..Default::default()
        };
        Ok(page_size(&self.db.list(COLLECTION, &opts)))
    }

    fn after(&mut self, start_after: &str, limit: usize) -> Result<(usize, usize)> {
        let opts = ListOptions {
            start_after: Some(start_after.to_owned()),
            limit,
            ..Default::default()
        };
        Ok(page_size(&self.db.list(COLLECTION, &opts)))
    }
}

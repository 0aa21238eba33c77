//! redb with one table keyed by (collection, key), default 1 GiB cache.

use std::ops::Bound;
use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use serde_json::Value;

use super::{Mode, Reader, Store};
use crate::gamestate::COLLECTION;
use crate::Result;

const DOCS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("docs");

pub(super) struct RedbStore {
    db: Database,
    durability: Durability,
}

impl RedbStore {
    pub(super) fn open(dir: &Path, mode: Mode) -> Result<Self> {
        let db = Database::create(dir.join("redb.db"))?;
        let durability = match mode {
            Mode::Durable => Durability::Immediate,
            Mode::Buffered => Durability::None,
        };
        let store = RedbStore { db, durability };
        // Create the table up front so readers never see it missing.
        store.write(Durability::Immediate, |_| Ok(()))?;
        Ok(store)
    }

    fn write(
        &self,
        durability: Durability,
        f: impl FnOnce(&mut redb::Table<'_, (&str, &str), &[u8]>) -> Result<()>,
    ) -> Result<()> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(durability)?;
        {
            let mut table = tx.open_table(DOCS)?;
            f(&mut table)?;
        }
        tx.commit()?;
        Ok(())
    }
}

impl Store for RedbStore {
    fn put(&self, key: &str, value: Value) -> Result<()> {
        let bytes = serde_json::to_vec(&value)?;
        self.write(self.durability, |t| {
            t.insert((COLLECTION, key), bytes.as_slice())?;
            Ok(())
        })
    }

    fn put_batch(&self, docs: Vec<(String, Value)>) -> Result<()> {
        self.write(self.durability, |t| {
            for (key, value) in docs {
                let bytes = serde_json::to_vec(&value)?;
                t.insert((COLLECTION, key.as_str()), bytes.as_slice())?;
            }
            Ok(())
        })
    }

    fn sync(&self) -> Result<()> {
        self.write(Durability::Immediate, |_| Ok(()))
    }

    fn reader(&self) -> Result<Box<dyn Reader + Send + '_>> {
        Ok(Box::new(RedbReader { db: &self.db }))
    }

    fn close(self: Box<Self>) -> Result<()> {
        drop(self.db);
        Ok(())
    }
}

struct RedbReader<'a> {
    db: &'a Database,
}

impl RedbReader<'_> {
    fn scan(
        &mut self,
        lo: Bound<(&str, &str)>,
        keep: impl Fn(&str) -> bool,
        limit: usize,
    ) -> Result<(usize, usize)> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(DOCS)?;
        let (mut docs, mut bytes) = (0, 0);
        for entry in table.range::<(&str, &str)>((lo, Bound::Unbounded))? {
            let (k, v) = entry?;
            let (coll, key) = k.value();
            if coll != COLLECTION || !keep(key) || docs == limit {
                break;
            }
            docs += 1;
            bytes += v.value().len();
        }
        Ok((docs, bytes))
    }
}

impl Reader for RedbReader<'_> {
    fn get(&mut self, key: &str) -> Result<Option<usize>> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(DOCS)?;
        Ok(table.get((COLLECTION, key))?.map(|v| v.value().len()))
    }

    fn prefix(&mut self, prefix: &str, limit: usize) -> Result<(usize, usize)> {
        self.scan(
            Bound::Included((COLLECTION, prefix)),
            |k| k.starts_with(prefix),
            limit,
        )
    }

    fn after(&mut self, start_after: &str, limit: usize) -> Result<(usize, usize)> {
        self.scan(Bound::Excluded((COLLECTION, start_after)), |_| true, limit)
    }
}

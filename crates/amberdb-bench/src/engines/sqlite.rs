//! SQLite (bundled) in WAL mode, one table keyed by (collection, key).
//!
//! Writers share one connection behind a mutex: with several connections SQLite serializes
//! writers anyway, and losers of the lock sleep in the busy handler, which only makes SQLite
//! slower. Each reader thread gets its own connection.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use super::{Mode, Reader, Store};
use crate::gamestate::COLLECTION;
use crate::Result;

const UPSERT: &str = "INSERT INTO docs (collection, key, value) VALUES (?1, ?2, ?3) \
                      ON CONFLICT (collection, key) DO UPDATE SET value = excluded.value";

pub(super) struct SqliteStore {
    path: PathBuf,
    writer: Mutex<Connection>,
}

fn connect(path: &Path, mode: Mode) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    let sync = match mode {
        Mode::Durable => "FULL",
        Mode::Buffered => "NORMAL",
    };
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", sync)?;
    // Reads through the OS page cache without copying, as fast as SQLite reads get.
    conn.pragma_update(None, "mmap_size", 8i64 << 30)?;
    Ok(conn)
}

impl SqliteStore {
    pub(super) fn open(dir: &Path, mode: Mode) -> Result<Self> {
        let path = dir.join("sqlite.db");
        let conn = connect(&path, mode)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS docs (
                 collection TEXT NOT NULL,
                 key TEXT NOT NULL,
                 value BLOB NOT NULL,
                 UNIQUE (collection, key)
             );",
        )?;
        Ok(SqliteStore {
            path,
            writer: Mutex::new(conn),
        })
    }

    fn writer(&self) -> Result<std::sync::MutexGuard<'_, Connection>> {
        self.writer
            .lock()
            .map_err(|_| "SQLite writer mutex poisoned".into())
    }
}

impl Store for SqliteStore {
    fn put(&self, key: &str, value: Value) -> Result<()> {
        let bytes = serde_json::to_vec(&value)?;
        let conn = self.writer()?;
        conn.prepare_cached(UPSERT)?
            .execute(params![COLLECTION, key, bytes])?;
        Ok(())
    }

    fn put_batch(&self, docs: Vec<(String, Value)>) -> Result<()> {
        let mut conn = self.writer()?;
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(UPSERT)?;
            for (key, value) in docs {
                stmt.execute(params![COLLECTION, key, serde_json::to_vec(&value)?])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        // A full checkpoint fsyncs the WAL and the database file.
        self.writer()?
            .query_row("PRAGMA wal_checkpoint(FULL)", [], |_| Ok(()))?;
        Ok(())
    }

    fn reader(&self) -> Result<Box<dyn Reader + Send + '_>> {
        Ok(Box::new(SqliteReader {
            conn: connect(&self.path, Mode::Durable)?,
        }))
    }

    fn close(self: Box<Self>) -> Result<()> {
        let conn = self
            .writer
            .into_inner()
            .map_err(|_| "SQLite writer mutex poisoned")?;
        conn.close().map_err(|(_, e)| e)?;
        Ok(())
    }
}

struct SqliteReader {
    conn: Connection,
}

impl SqliteReader {
    fn scan(
        &mut self,
        sql: &str,
        lo: &str,
        hi: Option<&str>,
        limit: usize,
    ) -> Result<(usize, usize)> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut rows = match hi {
            Some(hi) => stmt.query(params![COLLECTION, lo, hi, limit as i64])?,
            None => stmt.query(params![COLLECTION, lo, limit as i64])?,
        };
        let (mut docs, mut bytes) = (0, 0);
        while let Some(row) = rows.next()? {
            docs += 1;
            bytes += row.get_ref(0)?.as_blob()?.len();
        }
        Ok((docs, bytes))
    }
}

/// The smallest string greater than every string starting with `prefix` (ASCII prefixes).
fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.to_owned();
    end.push(char::MAX);
    end
}

impl Reader for SqliteReader {
    fn get(&mut self, key: &str) -> Result<Option<usize>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT value FROM docs WHERE collection = ?1 AND key = ?2")?;
        Ok(stmt
            .query_row(params![COLLECTION, key], |row| {
                Ok(row.get_ref(0)?.as_blob()?.len())
            })
            .optional()?)
    }

    fn prefix(&mut self, prefix: &str, limit: usize) -> Result<(usize, usize)> {
        self.scan(
            "SELECT value FROM docs WHERE collection = ?1 AND key >= ?2 AND key < ?3 \
             ORDER BY key LIMIT ?4",
            prefix,
            Some(&prefix_end(prefix)),
            limit,
        )
    }

    fn after(&mut self, start_after: &str, limit: usize) -> Result<(usize, usize)> {
        self.scan(
            "SELECT value FROM docs WHERE collection = ?1 AND key > ?2 ORDER BY key LIMIT ?3",
            start_after,
            None,
            limit,
        )
    }
}

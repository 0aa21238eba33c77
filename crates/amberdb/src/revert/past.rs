//! What revert and undo read of the past, through the history module's indexed point reader
//! of the retained log (`log::reader`, `history::doc_at`): the commit with a given LSN, the
//! version of a document a commit wrote, and a document's state at an LSN. Anything before
//! the history window is `Error::HistoryLost`.

use std::collections::HashMap;
use std::sync::Arc;

use super::document_of;
use crate::db::Db;
use crate::document::Document;
use crate::error::{Damage, Error, Result};
use crate::history::At;
use crate::log::reader::ReadError;
use crate::log::record::CommitRecord;
use crate::state::ReadView;

/// Bytes of decoded commits one operation keeps: a revert of many documents written by the
/// same few large commits decodes each of them once instead of once per document (10,000
/// documents from 1,000-document commits: 10.5 s without, see docs/BENCHMARKS.md).
const CACHE_BYTES: usize = 64 << 20;

/// Reads the past for one revert or undo, against one history window.
pub(crate) struct Reader<'d> {
    db: &'d Db,
    /// The first LSN the window answers for, read once per operation.
    window: Option<u64>,
    /// Decoded commits by LSN, and their payload bytes in total.
    cache: HashMap<u64, Arc<CommitRecord>>,
    cached_bytes: usize,
}

impl<'d> Reader<'d> {
    pub(crate) fn new(db: &'d Db) -> Reader<'d> {
        Reader {
            db,
            window: None,
            cache: HashMap::new(),
            cached_bytes: 0,
        }
    }

    fn window(&mut self) -> Result<u64> {
        match self.window {
            Some(w) => Ok(w),
            None => {
                let w = self.db.history_window()?.retained_from_lsn;
                self.window = Some(w);
                Ok(w)
            }
        }
    }

    /// The commit with LSN `lsn`, decoded once per operation while the cache has room.
    fn cached(&mut self, lsn: u64) -> Result<Arc<CommitRecord>> {
        if let Some(rec) = self.cache.get(&lsn) {
            return Ok(rec.clone());
        }
        let rec = Arc::new(self.commit(lsn)?);
        let size = rec.payload_len();
        if self.cached_bytes + size > CACHE_BYTES {
            self.cache.clear();
            self.cached_bytes = 0;
        }
        self.cached_bytes += size;
        self.cache.insert(lsn, rec.clone());
        Ok(rec)
    }

    /// The commit with LSN `lsn`.
    pub(crate) fn commit(&mut self, lsn: u64) -> Result<CommitRecord> {
        let window = self.window()?;
        if lsn < window {
            return Err(Error::HistoryLost {
                retained_from_lsn: window,
            });
        }
        match self.db.log_reader().read(lsn) {
            Ok(rec) => Ok(rec),
            Err(ReadError::NotRetained) => Err(Error::HistoryLost {
                retained_from_lsn: window,
            }),
            Err(ReadError::Io(detail)) => Err(Error::Damaged(Damage {
                file: crate::recovery::LOG_DIR.into(),
                offset: 0,
                detail,
                hint: "Run `amberdb verify` for a full report".into(),
            })),
        }
    }

    /// The state commit `lsn` left `collection`/`key` in: the document it wrote, or `None`
    /// when it deleted it.
    pub(crate) fn written_by(
        &mut self,
        lsn: u64,
        collection: &str,
        key: &str,
    ) -> Result<Option<Document>> {
        let rec = self.cached(lsn)?;
        let op = rec
            .ops
            .iter()
            .find(|o| &*o.collection == collection && &*o.key == key)
            .ok_or_else(|| broken(lsn, collection, key))?;
        Ok(op
            .doc
            .as_ref()
            .map(|d| document_of(key, rec.lsn, rec.commit_ts, d)))
    }

    /// `collection`/`key` as it was right after commit `lsn` (`None`: it did not exist).
    pub(crate) fn doc_at(
        &mut self,
        view: &ReadView,
        collection: &str,
        key: &str,
        lsn: u64,
    ) -> Result<Option<Document>> {
        let coll = view.state.collections.get(collection);
        let current = coll.and_then(|c| c.get_doc(key));
        // LSN of the latest change of the document (its write or its delete).
        let mut at = match (current, coll.and_then(|c| c.tombstones.get(key))) {
            (Some(d), _) => d.meta.lsn,
            (None, Some(t)) => t.lsn,
            (None, None) => 0,
        };
        if at <= lsn {
            return Ok(current.cloned());
        }
        // Walk the prev_lsn chain back to the change at or before `lsn` (the same walk as
        // `history::doc_at`, through this operation's cache of decoded commits).
        loop {
            let rec = self.cached(at)?;
            let prev = rec
                .ops
                .iter()
                .find(|o| &*o.collection == collection && &*o.key == key)
                .map(|o| o.prev_lsn)
                .ok_or_else(|| broken(at, collection, key))?;
            if prev == 0 {
                return Ok(None);
            }
            if prev <= lsn {
                return self.written_by(prev, collection, key);
            }
            at = prev;
        }
    }
}

/// The LSN `at` names in `view`, checked against the history window.
pub(crate) fn resolve(db: &Db, view: &ReadView, at: At) -> Result<u64> {
    // `Db::resolve_at` reads its own view; a revert must resolve against the view it plans
    // from, so a target LSN is capped at it (a commit that lands in between is not in it).
    let lsn = match db.resolve_at(at) {
        Ok(lsn) => lsn,
        // The state right after LSN w - 1 is the one the window's first commit started from:
        // every commit after it is retained, so a revert to it is exact (`resolve_at` calls it
        // lost). With a log from LSN 1 that is the empty database, also by time.
        Err(Error::HistoryLost {
            retained_from_lsn: w,
        }) => match at {
            At::Lsn(n) if n.saturating_add(1) >= w => n,
            At::Time(t) if w <= 1 && Reader::new(db).commit(1)?.commit_ts > t => 0,
            _ => {
                return Err(Error::HistoryLost {
                    retained_from_lsn: w,
                })
            }
        },
        Err(e) => return Err(e),
    };
    Ok(lsn.min(view.lsn()))
}

fn broken(lsn: u64, collection: &str, key: &str) -> Error {
    Error::Damaged(Damage {
        file: crate::recovery::LOG_DIR.into(),
        offset: 0,
        detail: format!(
            "commit LSN {lsn} does not touch {collection}/{key}, yet a later version names it \
             as previous"
        ),
        hint: "Run `amberdb verify` for a full report".into(),
    })
}

//! What revert and undo read of the past, through the history module's indexed point reader
//! of the retained log (`log::reader`, `history::doc_at`) and one operation's cache of
//! decoded commits: the commit with a given LSN, the version of a document a commit wrote,
//! and a document's state at an LSN. Anything before the history window is
//! `Error::HistoryLost`.

use std::sync::Arc;

use super::document_of;
use crate::db::Db;
use crate::document::Document;
use crate::error::{Damage, Error, Result};
use crate::history::At;
use crate::log::reader::CommitCache;
use crate::log::record::CommitRecord;
use crate::state::ReadView;

/// Reads the past for one revert or undo, against one history window, decoding each commit
/// once per operation (`log::reader::CommitCache`).
pub(crate) struct Reader<'d> {
    db: &'d Db,
    /// The first LSN the window answers for, read once per operation.
    window: Option<u64>,
    cache: CommitCache<'d>,
}

impl<'d> Reader<'d> {
    pub(crate) fn new(db: &'d Db) -> Reader<'d> {
        Reader {
            db,
            window: None,
            cache: CommitCache::new(db.log_reader()),
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

    /// The commit with LSN `lsn`.
    pub(crate) fn commit(&mut self, lsn: u64) -> Result<Arc<CommitRecord>> {
        let window = self.window()?;
        if lsn < window {
            return Err(Error::HistoryLost {
                retained_from_lsn: window,
            });
        }
        crate::history::cached_commit(&mut self.cache, lsn, window)
    }

    /// The commit time of commit `lsn`.
    pub(crate) fn commit_ts(&mut self, lsn: u64) -> Result<u64> {
        Ok(self.commit(lsn)?.commit_ts)
    }

    /// The state commit `lsn` left `collection`/`key` in: the document it wrote, or `None`
    /// when it deleted it.
    pub(crate) fn written_by(
        &mut self,
        lsn: u64,
        collection: &str,
        key: &str,
    ) -> Result<Option<Document>> {
        let rec = self.commit(lsn)?;
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

    /// `collection`/`key` as it was right after commit `lsn` (`None`: it did not exist),
    /// by `history::doc_at`'s walk through this operation's cache.
    pub(crate) fn doc_at(
        &mut self,
        view: &ReadView,
        collection: &str,
        key: &str,
        lsn: u64,
    ) -> Result<Option<Document>> {
        let window = self.window()?;
        crate::history::doc_at(&mut self.cache, view, collection, key, lsn, window)
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

//! The point reader of the retained log that revert and undo need: the commit with a given
//! LSN, the version of a document a commit wrote, and a document's state at an LSN (walking
//! its `prev_lsn` chain from the current state, so only its own versions are read).
//!
//! This is the smallest local helper while the history module's indexed reader is not there:
//! it finds a commit by decoding the one segment that holds it, and keeps the decoded
//! segments of one operation in memory. Anything older than the oldest retained segment is
//! `Error::HistoryLost`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::{document_of, At};
use crate::db::Db;
use crate::document::Document;
use crate::error::{Error, Result};
use crate::log::record::CommitRecord;
use crate::recovery::LOG_DIR;
use crate::state::ReadView;

/// Reads commits of the retained log for one revert or undo.
pub(crate) struct Reader {
    dir: PathBuf,
    /// Retained segments by first LSN, oldest first.
    segments: Option<Vec<(u64, PathBuf)>>,
    /// Decoded segments by first LSN.
    decoded: HashMap<u64, Arc<Vec<CommitRecord>>>,
}

impl Reader {
    pub(crate) fn new(db: &Db) -> Reader {
        Reader {
            dir: db.path().join(LOG_DIR),
            segments: None,
            decoded: HashMap::new(),
        }
    }

    fn segments(&mut self) -> Result<&[(u64, PathBuf)]> {
        if self.segments.is_none() {
            let list = crate::log::segment::list_segments(&self.dir)
                .map_err(|e| Error::io(format!("listing {}", self.dir.display()), e))?;
            self.segments = Some(list);
        }
        Ok(self.segments.as_deref().unwrap_or_default())
    }

    /// The first LSN the retained log holds.
    pub(crate) fn retained_from(&mut self) -> Result<u64> {
        Ok(self.segments()?.first().map_or(1, |s| s.0))
    }

    fn lost(&mut self) -> Error {
        match self.retained_from() {
            Ok(retained_from_lsn) => Error::HistoryLost { retained_from_lsn },
            Err(e) => e,
        }
    }

    /// The decoded commits of the segment starting at `first`.
    fn segment(&mut self, first: u64, path: &std::path::Path) -> Result<Arc<Vec<CommitRecord>>> {
        if let Some(d) = self.decoded.get(&first) {
            return Ok(d.clone());
        }
        let bytes = match crate::log::read_file(path) {
            Ok(b) => b,
            // Removed by a checkpoint since the listing: outside the window now.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.segments = None;
                return Err(self.lost());
            }
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        let mut records = vec![];
        crate::log::segment::scan(&bytes, |r, _| records.push(r))
            .map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))?;
        let records = Arc::new(records);
        self.decoded.insert(first, records.clone());
        Ok(records)
    }

    /// The commit with LSN `lsn`.
    pub(crate) fn commit(&mut self, lsn: u64) -> Result<CommitRecord> {
        let seg = self
            .segments()?
            .iter()
            .rev()
            .find(|(first, _)| *first <= lsn)
            .cloned();
        let Some((first, path)) = seg else {
            return Err(self.lost());
        };
        let records = self.segment(first, &path)?;
        let idx = usize::try_from(lsn - first).unwrap_or(usize::MAX);
        match records.get(idx) {
            Some(r) if r.lsn == lsn => Ok(r.clone()),
            _ => records
                .iter()
                .find(|r| r.lsn == lsn)
                .cloned()
                .ok_or_else(|| self.lost()),
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
        let rec = self.commit(lsn)?;
        let op = rec
            .ops
            .iter()
            .find(|o| &*o.collection == collection && &*o.key == key)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "commit {lsn} does not touch {collection}/{key} although the document's \
                     history links to it"
                ))
            })?;
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
        // LSN of the latest change and whether it left a document.
        let mut at = match (current, coll.and_then(|c| c.tombstones.get(key))) {
            (Some(d), _) => d.meta.lsn,
            (None, Some(t)) => t.lsn,
            (None, None) => 0,
        };
        if at <= lsn {
            return Ok(current.cloned());
        }
        // Walk back until the change at or before `lsn`.
        loop {
            let rec = self.commit(at)?;
            let prev = rec
                .ops
                .iter()
                .find(|o| &*o.collection == collection && &*o.key == key)
                .map(|o| o.prev_lsn)
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "commit {at} does not touch {collection}/{key} although the \
                         document's history links to it"
                    ))
                })?;
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

/// The LSN `at` names, checked against the history window.
pub(crate) fn resolve(db: &Db, view: &ReadView, at: At) -> Result<u64> {
    let mut reader = Reader::new(db);
    let retained_from = reader.retained_from()?;
    let lsn = match at {
        At::Lsn(n) => n.min(view.lsn()),
        At::Time(t) if t >= view.commit_ts() => view.lsn(),
        At::Time(t) => {
            let mut found = None;
            let segments: Vec<_> = reader.segments()?.to_vec();
            'outer: for (first, path) in segments.iter().rev() {
                let records = reader.segment(*first, path)?;
                for r in records.iter().rev() {
                    if r.lsn <= view.lsn() && r.commit_ts <= t {
                        found = Some(r.lsn);
                        break 'outer;
                    }
                }
            }
            match found {
                Some(n) => n,
                // Before the first commit of a log that starts at LSN 1: the empty database.
                None if retained_from <= 1 => 0,
                None => {
                    return Err(Error::HistoryLost {
                        retained_from_lsn: retained_from,
                    })
                }
            }
        }
    };
    // The state after `lsn` is known when the commits after it are retained.
    if lsn + 1 < retained_from {
        return Err(Error::HistoryLost {
            retained_from_lsn: retained_from,
        });
    }
    Ok(lsn)
}

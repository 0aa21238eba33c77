//! `amberdb log`: the commits of a data directory's log or a repository's archive, with time,
//! LSN and the documents they touched, to pick a restore point.

use std::path::PathBuf;

use serde::Serialize;

use super::BackupRepo;
use crate::document::format_micros;
use crate::error::{IoContext, Result};
use crate::log::read_file;
use crate::log::record::CommitRecord;
use crate::log::segment::{list_segments, scan_with, ScanEnd};
use crate::recovery::LOG_DIR;

/// Where to read commits from.
#[derive(Debug, Clone)]
pub enum LogSource {
    /// A data directory's own log (read-only; safe while it is open elsewhere).
    DataDir(PathBuf),
    /// A repository's archive.
    Repo(BackupRepo),
}

/// Which commits to list.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// Only commits at or after this time (microseconds).
    pub from_time: Option<u64>,
    /// Only commits at or before this time.
    pub to_time: Option<u64>,
    /// Only commits touching this collection.
    pub collection: Option<String>,
    /// Only commits touching this key (in any collection, or in `collection` when set).
    pub key: Option<String>,
    /// At most this many commits (0 = all).
    pub limit: usize,
    /// Only commits with an LSN at or after this (data directories skip whole segments
    /// before it).
    pub from_lsn: Option<u64>,
    /// Only commits with an LSN at or before this (the listing stops after it).
    pub to_lsn: Option<u64>,
}

/// One document touched by a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogOp {
    /// Collection.
    pub collection: String,
    /// Key.
    pub key: String,
    /// The operation: `create`, `put`, `replace`, `patch` or `delete` (log format 4; older
    /// commits say `put` or `delete`).
    pub op: &'static str,
    /// New version (0 for deletes).
    pub version: u64,
    /// Previous LSN of this document.
    pub prev_lsn: u64,
}

/// One commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogEntry {
    /// LSN.
    pub lsn: u64,
    /// Commit time, RFC 3339.
    pub time: String,
    /// Commit time, microseconds.
    pub time_us: u64,
    /// Why it was made: `write`, `revert`, `undo`, `restore`, `ttl` or `migration`.
    pub reason: &'static str,
    /// The LSN a revert, undo or restore refers to (0: none).
    pub target_lsn: u64,
    /// What it touched.
    pub ops: Vec<LogOp>,
}

impl LogFilter {
    fn matches(&self, rec: &CommitRecord) -> bool {
        if self.from_time.is_some_and(|t| rec.commit_ts < t)
            || self.to_time.is_some_and(|t| rec.commit_ts > t)
            || self.from_lsn.is_some_and(|l| rec.lsn < l)
            || self.to_lsn.is_some_and(|l| rec.lsn > l)
        {
            return false;
        }
        if self.collection.is_none() && self.key.is_none() {
            return true;
        }
        rec.ops.iter().any(|op| {
            self.collection
                .as_deref()
                .is_none_or(|c| &*op.collection == c)
                && self.key.as_deref().is_none_or(|k| &*op.key == k)
        })
    }
}

fn entry(rec: &CommitRecord) -> LogEntry {
    LogEntry {
        lsn: rec.lsn,
        time: format_micros(rec.commit_ts),
        time_us: rec.commit_ts,
        reason: rec.reason.as_str(),
        target_lsn: rec.target_lsn,
        ops: rec
            .ops
            .iter()
            .map(|op| LogOp {
                collection: op.collection.to_string(),
                key: op.key.to_string(),
                op: op.op.as_str(),
                version: op.doc.as_ref().map_or(0, |d| d.version),
                prev_lsn: op.prev_lsn,
            })
            .collect(),
    }
}

/// Lists matching commits in LSN order. An encrypted segment is refused with
/// `Error::KeyMissing` ([`read_log_with`] takes keys).
pub fn read_log(source: &LogSource, filter: &LogFilter) -> Result<Vec<LogEntry>> {
    read_log_with(source, filter, None)
}

/// Like [`read_log`], opening encrypted segments with `keys`.
pub fn read_log_with(
    source: &LogSource,
    filter: &LogFilter,
    keys: Option<&crate::crypto::Keyring>,
) -> Result<Vec<LogEntry>> {
    let mut out = vec![];
    let limit = if filter.limit == 0 {
        usize::MAX
    } else {
        filter.limit
    };
    // Damage is reported, never taken for the end of the log: a listing that silently
    // stopped would hide the commits after it. Only the newest data-directory segment may end
    // in a torn tail (a writer may be appending to it right now).
    // `upto`: the last LSN of the segment in the listed history (a parent timeline's
    // segment is cut at the branch LSN).
    // Set once `limit` commits matched, so no later segment is read.
    let full = std::cell::Cell::new(false);
    let mut visit = |bytes: &[u8], name: PathBuf, torn_ok: bool, upto: u64| -> Result<()> {
        let damaged = |offset: u64, detail: String| {
            crate::error::Error::Damaged(crate::error::Damage {
                file: name.clone(),
                offset,
                detail,
                hint: "the log listing stops here; run `amberdb verify` for a full report".into(),
            })
        };
        // A key the segment needs and `keys` lacks: a refusal naming the key id, never
        // "damaged".
        if let Ok(h) = crate::log::segment::SegmentHeader::decode(bytes) {
            crate::log::segment::FrameDecoder::for_segment(&h, keys)?;
        }
        let s = scan_with(bytes, keys, |rec, _| {
            if out.len() < limit && rec.lsn <= upto && filter.matches(&rec) {
                out.push(entry(&rec));
                full.set(out.len() >= limit);
            }
        })
        .map_err(|e| damaged(0, e))?;
        match s.end {
            ScanEnd::Clean => Ok(()),
            ScanEnd::TornTail { .. } if torn_ok => Ok(()),
            ScanEnd::TornTail { offset, error, .. } => Err(damaged(
                offset,
                format!("{error} in a segment that is not the last one"),
            )),
            ScanEnd::Damaged { offset, detail } => Err(damaged(offset, detail)),
        }
    };
    match source {
        LogSource::DataDir(dir) => {
            let log = dir.join(LOG_DIR);
            let segments = list_segments(&log).context(|| format!("listing {}", log.display()))?;
            let count = segments.len();
            let firsts: Vec<u64> = segments.iter().map(|(f, _)| *f).collect();
            for (i, (first, path)) in segments.into_iter().enumerate() {
                // Segments wholly before `from_lsn` or after `to_lsn` are not read at all.
                let next_first = firsts.get(i + 1).copied().unwrap_or(u64::MAX);
                if filter.from_lsn.is_some_and(|l| next_first <= l) {
                    continue;
                }
                if filter.to_lsn.is_some_and(|l| first > l) || full.get() {
                    break;
                }
                let bytes = read_file(&path).context(|| format!("reading {}", path.display()))?;
                visit(&bytes, path, i + 1 == count, u64::MAX)?;
            }
        }
        LogSource::Repo(repo) => {
            // The history a restore follows (the newest timeline's), so commits another
            // timeline undid never show up as restore points beside the ones that replaced them.
            let history = repo.histories()?.pop();
            for seg in repo
                .archived_segments()?
                .into_iter()
                .filter(|s| super::restore::in_history(history.as_ref(), s.ids(), s.first_lsn))
            {
                if filter.from_time.is_some_and(|t| seg.last_commit_ts_us < t) {
                    continue;
                }
                let bytes = repo.read_segment(&seg)?;
                let name = PathBuf::from(seg.data_file());
                let upto = super::restore::used_to(history.as_ref(), &seg);
                visit(&bytes, name, false, upto)?;
            }
        }
    }
    Ok(out)
}

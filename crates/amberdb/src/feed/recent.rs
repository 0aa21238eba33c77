//! The newest commits written to the log, decoded, in memory: the change feed serves a
//! subscription that has caught up from here, so following live commits costs each
//! subscriber a lock and a filter per commit instead of a read and a decode of the log.
//!
//! The committer adds a batch's records once their frames are written to the log (never a
//! batch whose write failed), in LSN order and without gaps; the oldest are dropped past
//! [`MAX_COMMITS`] commits or [`MAX_BYTES`] bytes of frames. A record here is the very value
//! that was encoded into the log frame, so a subscription delivers the same commit from here
//! or from the log. It still delivers only up to the durable LSN: a record above it waits
//! for its sync like any other. A subscription behind the oldest record here reads the log.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::log::record::CommitRecord;

/// Most commits kept.
pub(crate) const MAX_COMMITS: usize = 8192;
/// Most commits one [`RecentCommits::scan`] visits under the lock (bounds how long it holds
/// the committer off).
pub(crate) const SCAN_MAX: usize = 1024;
/// Most frame bytes kept (a commit's frame length is its cost; the newest commit is always
/// kept, however big).
pub(crate) const MAX_BYTES: usize = 32 << 20;

#[derive(Debug, Default)]
struct Ring {
    /// Consecutive LSNs, oldest first, with each commit's frame length.
    commits: VecDeque<(Arc<CommitRecord>, usize)>,
    bytes: usize,
}

/// The ring of recent commits (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct RecentCommits {
    ring: Mutex<Ring>,
}

impl RecentCommits {
    /// Adds commits just written to the log (`(record, frame bytes)`, in LSN order). A
    /// commit that does not follow the newest one held replaces everything held, so the
    /// ring never has a gap.
    pub(crate) fn remember(&self, commits: Vec<(Arc<CommitRecord>, usize)>) {
        let Ok(mut r) = self.ring.lock() else {
            return;
        };
        for (rec, len) in commits {
            let follows = r.commits.back().is_none_or(|(b, _)| b.lsn + 1 == rec.lsn);
            if !follows {
                r.commits.clear();
                r.bytes = 0;
            }
            r.bytes += len;
            r.commits.push_back((rec, len));
            while r.commits.len() > 1 && (r.commits.len() > MAX_COMMITS || r.bytes > MAX_BYTES) {
                if let Some((_, l)) = r.commits.pop_front() {
                    r.bytes -= l;
                }
            }
        }
    }

    /// Calls `visit` on the commits from LSN `from` through `to`, oldest first, while it
    /// returns true and for at most [`SCAN_MAX`] commits, under the ring's lock and without
    /// copying them (for filters that skip most commits). Returns the LSN of the last commit
    /// visited (`from - 1` when `from > to`), or `None` when `from` is not held (or `to` is
    /// newer than the newest commit held), so the log must be read.
    pub(crate) fn scan(
        &self,
        from: u64,
        to: u64,
        mut visit: impl FnMut(&CommitRecord) -> bool,
    ) -> Option<u64> {
        if from > to {
            return Some(from - 1);
        }
        let r = self.ring.lock().ok()?;
        let first = r.commits.front()?.0.lsn;
        let last = r.commits.back()?.0.lsn;
        if from < first || to > last {
            return None;
        }
        let skip = usize::try_from(from - first).ok()?;
        let take = usize::try_from(to - from + 1).ok()?.min(SCAN_MAX);
        let mut seen = from - 1;
        for (c, _) in r.commits.iter().skip(skip).take(take) {
            seen = c.lsn;
            if !visit(c) {
                break;
            }
        }
        Some(seen)
    }

    /// The oldest LSN held, if any.
    pub(crate) fn first_lsn(&self) -> Option<u64> {
        Some(self.ring.lock().ok()?.commits.front()?.0.lsn)
    }

    /// The oldest and newest LSN held, if any (diagnostics and tests).
    #[cfg(test)]
    pub(crate) fn extent(&self) -> Option<(u64, u64)> {
        let r = self.ring.lock().ok()?;
        Some((r.commits.front()?.0.lsn, r.commits.back()?.0.lsn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::record::CommitReason;

    fn rec(lsn: u64) -> (Arc<CommitRecord>, usize) {
        let r = CommitRecord {
            lsn,
            commit_ts: lsn,
            reason: CommitReason::Write,
            target_lsn: 0,
            ops: vec![],
            streams: vec![],
        };
        (Arc::new(r), 100)
    }

    /// The LSNs `scan` visits, stopping after `max`.
    fn lsns(ring: &RecentCommits, from: u64, to: u64, max: usize) -> Option<Vec<u64>> {
        let mut out = vec![];
        ring.scan(from, to, |c| {
            out.push(c.lsn);
            out.len() < max
        })
        .map(|last| {
            assert_eq!(out.last().copied().unwrap_or(from - 1), last);
            out
        })
    }

    #[test]
    fn scans_are_served_only_when_every_commit_in_them_is_held() {
        let ring = RecentCommits::default();
        assert_eq!(lsns(&ring, 1, 0, 10), Some(vec![]));
        assert!(lsns(&ring, 1, 1, 10).is_none(), "nothing held yet");
        ring.remember((5..=9).map(rec).collect());
        assert_eq!(lsns(&ring, 5, 9, 10), Some(vec![5, 6, 7, 8, 9]));
        assert_eq!(lsns(&ring, 7, 8, 10), Some(vec![7, 8]));
        assert_eq!(lsns(&ring, 6, 9, 2), Some(vec![6, 7]));
        assert!(lsns(&ring, 4, 9, 10).is_none(), "4 is older than the ring");
        assert!(lsns(&ring, 9, 10, 10).is_none(), "10 is not written");
        assert_eq!(lsns(&ring, 10, 9, 10), Some(vec![]));
        ring.remember((10..=(SCAN_MAX as u64 + 100)).map(rec).collect());
        let all = lsns(&ring, 5, SCAN_MAX as u64 + 100, usize::MAX).unwrap();
        assert_eq!(all.len(), SCAN_MAX, "one scan visits at most SCAN_MAX");
    }

    #[test]
    fn the_oldest_commits_go_past_the_count_and_byte_bounds_and_a_gap_restarts_the_ring() {
        let ring = RecentCommits::default();
        ring.remember((1..=MAX_COMMITS as u64 + 10).map(rec).collect());
        assert_eq!(ring.extent(), Some((11, MAX_COMMITS as u64 + 10)));
        let big = |lsn| {
            let (r, _) = rec(lsn);
            (r, MAX_BYTES / 2 + 1)
        };
        let n = MAX_COMMITS as u64 + 10;
        ring.remember(vec![big(n + 1), big(n + 2)]);
        assert_eq!(ring.extent(), Some((n + 2, n + 2)), "bytes bound");
        ring.remember(vec![big(n + 3)]);
        assert_eq!(ring.extent(), Some((n + 3, n + 3)), "the newest is kept");
        ring.remember(vec![rec(n + 10)]);
        assert_eq!(ring.extent(), Some((n + 10, n + 10)), "a gap restarts");
    }
}

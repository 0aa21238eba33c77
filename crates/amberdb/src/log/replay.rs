//! Log replay, shared by open (`recovery.rs`), automatic recovery (`backup/auto.rs`) and
//! restore (`backup/restore.rs`): one set of continuity rules for applying a chain of segments
//! onto a state.
//!
//! Rules:
//! - A segment's header must say the first LSN its name (or archive entry) says, and the ids
//!   its archive entry says (log format 3).
//! - Identity: a segment of another database is refused; so is one of a timeline outside the
//!   history being replayed (the directory's, or a restore's target timeline), and one that
//!   starts after the history left its timeline. A parent timeline's segment is applied only
//!   up to the branch LSN (the commits after it were undone). A segment without ids (log
//!   formats 1 and 2, written before ids existed) counts as the history's first timeline.
//! - Chains are exact: after a segment ending at LSN `reach` (or at the branch LSN, for a
//!   parent's segment that goes past it), the next one of the same source must start at
//!   `reach + 1` (no gap, no overlap: an overlap means two histories). The first segment of a
//!   source must start at or before `state.lsn + 1`.
//! - Frames at or below `state.lsn` are already in the state and are skipped; the next frame
//!   applied is always `state.lsn + 1`.
//! - Damage to frames the state already holds (a checkpoint covers them) may be stepped over
//!   when the caller allows it: replay resumes at the frame `state.lsn + 1` if the segment
//!   holds it intact, and the step is reported.

use crate::identity::{FileIds, Identity};
use crate::log::record::CommitRecord;
use crate::log::segment::{find_frame, scan_from, FrameDecoder, Scan, ScanEnd, SegmentHeader};
use crate::state::State;

/// Damage that replay stepped over because the state already held those LSNs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SteppedOver {
    /// Offset of the damaged frame.
    pub offset: u64,
    /// What was wrong.
    pub detail: String,
}

/// What replaying one segment did.
#[derive(Debug)]
pub(crate) struct SegmentReplay {
    /// How the scan ended (after any step over damage).
    pub scan: Scan,
    /// Commits applied from this segment.
    pub applied: u64,
    /// Commit time of the segment's last valid frame, applied or not (0 if none).
    pub last_ts: u64,
    /// Damage inside LSNs the state already held that replay stepped over.
    pub stepped_over: Option<SteppedOver>,
}

/// Applies segments, in order, onto a state.
pub(crate) struct Replayer<'s> {
    state: &'s mut State,
    /// Last LSN of the previous segment of the current source, when known.
    reach: Option<u64>,
    /// Commits applied so far.
    pub commits: u64,
    /// First and last LSN applied.
    pub range: Option<(u64, u64)>,
    /// Set once `want` refused a commit: nothing after it is applied.
    pub stopped: bool,
    /// The history segments must belong to (`None`: files without ids only, e.g. a
    /// repository written before ids existed).
    history: Option<&'s Identity>,
    /// Keys for encrypted segments (issue 12).
    keys: Option<&'s crate::crypto::Keyring>,
}

impl<'s> Replayer<'s> {
    /// Starts replay onto `state` of segments of `history` (see the module rules).
    pub(crate) fn new(state: &'s mut State, history: Option<&'s Identity>) -> Self {
        Replayer {
            state,
            reach: None,
            commits: 0,
            range: None,
            stopped: false,
            history,
            keys: None,
        }
    }

    /// Opens encrypted segments with `keys` (without, an encrypted segment is refused with
    /// the key id it needs).
    pub(crate) fn with_keys(mut self, keys: Option<&'s crate::crypto::Keyring>) -> Self {
        self.keys = keys;
        self
    }

    /// The ids `header` (or, for a segment without them, its archive entry `named`) gives a
    /// segment, checked against the history; returns the last LSN of it to apply (the branch
    /// LSN for a parent timeline's segment).
    fn check_ids(
        &self,
        header: &SegmentHeader,
        named: Option<FileIds>,
    ) -> Result<Option<u64>, String> {
        if let (Some(h), Some(n)) = (header.ids, named) {
            if h != n {
                return Err(format!(
                    "header says {h} but its archive entry says {n}: the file was swapped"
                ));
            }
        }
        let Some(history) = self.history else {
            return Ok(None);
        };
        // Written before ids existed: the first timeline of this database's history.
        let ids = header.ids.or(named).unwrap_or(FileIds {
            database_id: history.database_id,
            timeline: history
                .history
                .first()
                .map_or(history.timeline, |e| e.timeline),
        });
        if let Some(why) = history.refuses(ids, header.first_lsn) {
            return Err(format!(
                "segment of another history ({ids}), starting at LSN {}: {why}",
                header.first_lsn
            ));
        }
        Ok(history.range_of(ids.timeline).and_then(|r| r.hi))
    }

    /// LSN of the state so far.
    pub(crate) fn lsn(&self) -> u64 {
        self.state.lsn
    }

    /// The next segments come from another source (the local log after the archive): their
    /// chain starts afresh, at or before `state.lsn + 1`.
    pub(crate) fn new_source(&mut self) {
        self.reach = None;
    }

    /// Replays one segment whose name (or archive entry) says it starts at `named_first`.
    /// `want` is asked before each commit that would be applied; the first `false` stops
    /// replay for good (a restore target). With `step_over_covered`, damage to frames at or
    /// below the state's LSN does not end the scan when the segment holds the next needed
    /// frame intact. Errors say why the segment cannot continue the chain.
    pub(crate) fn segment(
        &mut self,
        bytes: &[u8],
        named_first: u64,
        named_ids: Option<FileIds>,
        step_over_covered: bool,
        want: &mut dyn FnMut(&CommitRecord) -> bool,
    ) -> Result<SegmentReplay, String> {
        let header = SegmentHeader::decode(bytes)?;
        if header.first_lsn != named_first {
            return Err(format!(
                "header says first LSN {} but its name says {named_first}",
                header.first_lsn
            ));
        }
        let cap = self.check_ids(&header, named_ids)?;
        let dec = FrameDecoder::for_segment(&header, self.keys).map_err(|e| e.to_string())?;
        match self.reach {
            Some(reach) if header.first_lsn != reach + 1 => {
                return Err(format!(
                    "segment starts at LSN {} but the previous one ends at LSN {reach}: the \
                     chain must continue at LSN {} ({})",
                    header.first_lsn,
                    reach + 1,
                    if header.first_lsn > reach + 1 {
                        "a gap"
                    } else {
                        "an overlap, which means another history"
                    }
                ));
            }
            None if header.first_lsn > self.state.lsn + 1 => {
                return Err(format!(
                    "segment starts at LSN {} but replay must continue at LSN {}: segments \
                     are missing",
                    header.first_lsn,
                    self.state.lsn + 1
                ));
            }
            _ => {}
        }
        let mut applied = 0;
        let mut last_ts = 0;
        let mut stepped_over = None;
        let mut pos = header.encoded_len();
        let mut expected = header.first_lsn;
        let scan = loop {
            let s = scan_from(bytes, header, &dec, pos, expected, |rec, _| {
                last_ts = rec.commit_ts;
                if self.stopped || rec.lsn != self.state.lsn + 1 || cap.is_some_and(|c| rec.lsn > c)
                {
                    return;
                }
                if !want(&rec) {
                    self.stopped = true;
                    return;
                }
                self.state.apply(&rec);
                applied += 1;
                let r = self.range.get_or_insert((rec.lsn, rec.lsn));
                r.1 = rec.lsn;
            });
            let (offset, detail) = match &s.end {
                ScanEnd::Clean => break s,
                ScanEnd::TornTail { offset, error, .. } => (*offset, error.to_string()),
                ScanEnd::Damaged { offset, detail } => (*offset, detail.clone()),
            };
            // Damage at LSN `s.last_lsn + 1`: step over it only when the state holds it.
            let next = self.state.lsn + 1;
            if !step_over_covered || stepped_over.is_some() || s.last_lsn + 1 >= next {
                break s;
            }
            // An offset inside `bytes` always fits a usize.
            let from = usize::try_from(offset).map_or(bytes.len(), |o| o.saturating_add(1));
            let Some(at) = find_frame(bytes, from, next, &dec) else {
                break s;
            };
            tracing::warn!(offset, %detail, resume_lsn = next, "stepping over damage to commits a checkpoint holds");
            stepped_over = Some(SteppedOver { offset, detail });
            pos = at;
            expected = next;
        };
        self.reach = match (&scan.end, &stepped_over) {
            (ScanEnd::Clean, _) => Some(cap.map_or(scan.last_lsn, |c| c.min(scan.last_lsn))),
            // Damage past the branch LSN is in commits this history undid.
            (_, None) if cap.is_some_and(|c| scan.last_lsn >= c) => cap,
            _ => None,
        };
        self.commits += applied;
        Ok(SegmentReplay {
            scan,
            applied,
            last_ts,
            stepped_over,
        })
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::log::record::{LoggedOp, WrittenDoc};
    use crate::log::segment::LOG_FORMAT_VERSION;

    /// A segment starting at `first` holding commits `first..=last`.
    fn segment(first: u64, last: u64) -> Vec<u8> {
        segment_of(first, last, None)
    }

    /// Like [`segment`], with `ids` in the header when given.
    fn segment_of(first: u64, last: u64, ids: Option<FileIds>) -> Vec<u8> {
        // Frames are encoded in the current format, so the header is too; without `ids`
        // the segment gets fixed ones (the replayers these tests make check none).
        let ids = ids.unwrap_or(FileIds {
            database_id: crate::identity::DatabaseId([1; 16]),
            timeline: crate::identity::TimelineId(1),
        });
        let mut b = SegmentHeader {
            format_version: LOG_FORMAT_VERSION,
            key_id: 0,
            first_lsn: first,
            ids: Some(ids),
            salt: [0; 16],
        }
        .encode();
        for lsn in first..=last {
            let value: Arc<[u8]> = Arc::from(format!("{lsn}").as_bytes());
            CommitRecord {
                lsn,
                commit_ts: lsn * 10,
                reason: Default::default(),
                target_lsn: 0,
                ops: vec![LoggedOp {
                    collection: "c".into(),
                    key: format!("k{lsn}").into(),
                    prev_lsn: 0,
                    op: crate::log::record::OpKind::Put,
                    doc: Some(WrittenDoc {
                        version: 1,
                        schema_version: 1,
                        created_at: lsn * 10,
                        expires_at: None,
                        sha256: crate::codec::sha256(&value),
                        value,
                    }),
                }],
                streams: vec![],
            }
            .encode_into(&mut b, lsn - 1)
            .expect("encodes");
        }
        b
    }

    #[test]
    fn chains_continue_exactly_at_reach_plus_one_and_refuse_gaps_and_overlaps() {
        for (next_first, ok, why) in [(4, true, ""), (3, false, "overlap"), (5, false, "gap")] {
            let mut state = State::default();
            let mut r = Replayer::new(&mut state, None);
            r.segment(&segment(1, 3), 1, None, false, &mut |_| true)
                .unwrap();
            let second = r.segment(
                &segment(next_first, 6),
                next_first,
                None,
                false,
                &mut |_| true,
            );
            match second {
                Ok(s) => {
                    assert!(ok, "segment at {next_first} accepted");
                    assert_eq!(s.applied, 3);
                }
                Err(e) => {
                    assert!(!ok, "segment at {next_first}: {e}");
                    assert!(e.contains(why), "{e}");
                }
            }
        }
    }

    #[test]
    fn a_header_that_disagrees_with_the_name_is_refused() {
        let mut state = State::default();
        let mut r = Replayer::new(&mut state, None);
        let e = r
            .segment(&segment(1, 2), 7, None, false, &mut |_| true)
            .unwrap_err();
        assert!(e.contains("its name says 7"), "{e}");
    }

    #[test]
    fn damage_to_commits_the_state_holds_is_stepped_over_only_when_allowed() {
        let mut bytes = segment(1, 6);
        // Break LSN 2's CRC: the state (at LSN 3) holds it.
        let at = {
            let mut offs = vec![];
            crate::log::segment::scan(&bytes, |rec, off| offs.push((rec.lsn, off))).unwrap();
            offs.iter().find(|(l, _)| *l == 2).unwrap().1 as usize
        };
        bytes[at + 4] ^= 1;
        let mut base = State::default();
        let mut r = Replayer::new(&mut base, None);
        r.segment(&segment(1, 3), 1, None, false, &mut |_| true)
            .unwrap();
        for (allowed, applied) in [(false, 0), (true, 3)] {
            let mut state = base.clone();
            let mut r = Replayer::new(&mut state, None);
            let s = r.segment(&bytes, 1, None, allowed, &mut |_| true).unwrap();
            assert_eq!(s.applied, applied, "step over allowed: {allowed}");
            assert_eq!(s.stepped_over.is_some(), allowed);
            assert_eq!(state.lsn, 3 + applied);
        }
    }

    #[test]
    fn segments_of_another_database_or_an_undone_timeline_are_refused_and_a_parent_stops_at_the_branch(
    ) {
        let root = Identity::create("test");
        let child = root.branch(3, "restore");
        let other = Identity::create("test");
        // Another database's segment: refused, naming both ids.
        let mut state = State::default();
        let mut r = Replayer::new(&mut state, Some(&child));
        let e = r
            .segment(
                &segment_of(1, 6, Some(other.ids())),
                1,
                None,
                false,
                &mut |_| true,
            )
            .unwrap_err();
        assert!(e.contains(&other.database_id.to_string()), "{e}");
        assert!(e.contains(&child.database_id.to_string()), "{e}");
        // The parent's segment goes past the branch point: applied up to LSN 3 only, and the
        // child's segment continues at 4.
        let mut state = State::default();
        let mut r = Replayer::new(&mut state, Some(&child));
        let s = r
            .segment(
                &segment_of(1, 6, Some(root.ids())),
                1,
                None,
                false,
                &mut |_| true,
            )
            .unwrap();
        assert_eq!(s.applied, 3);
        let s = r
            .segment(
                &segment_of(4, 5, Some(child.ids())),
                4,
                None,
                false,
                &mut |_| true,
            )
            .unwrap();
        assert_eq!(s.applied, 2);
        // A parent's segment that starts after the branch holds undone commits.
        let mut state = State::default();
        let mut r = Replayer::new(&mut state, Some(&child));
        r.segment(
            &segment_of(1, 3, Some(root.ids())),
            1,
            None,
            false,
            &mut |_| true,
        )
        .unwrap();
        let e = r
            .segment(
                &segment_of(4, 6, Some(root.ids())),
                4,
                None,
                false,
                &mut |_| true,
            )
            .unwrap_err();
        assert!(e.contains("undone"), "{e}");
        // An archive entry that disagrees with the header: swapped.
        let mut state = State::default();
        let mut r = Replayer::new(&mut state, Some(&root));
        let e = r
            .segment(
                &segment_of(1, 3, Some(root.ids())),
                1,
                Some(other.ids()),
                false,
                &mut |_| true,
            )
            .unwrap_err();
        assert!(e.contains("swapped"), "{e}");
    }
}

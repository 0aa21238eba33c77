//! Torn tail: a crash in the middle of appending the last commit leaves part of its frame on
//! disk. For every byte offset inside the last commit the log is cut there (and, separately,
//! the rest of the frame is zeroed, as a file system may leave it after a power loss): `verify`
//! must call it a torn tail and nothing else, and open must cut it and come back with exactly
//! the commits before it, then keep appending after them.

#![allow(clippy::unwrap_used)]

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use amberdb::log::segment::{list_segments, scan};
use amberdb::{verify_dir, Db, Document, Transaction, LOG_DIR};
use serde_json::json;
use support::{copy_dir, opts, snapshot, truncate, zero};

/// A database whose last commit is the multi-document transaction `last`, closed without a
/// checkpoint. Returns the state and LSN before `last`.
struct Setup {
    dir: tempfile::TempDir,
    before: Vec<(String, Document)>,
    lsn_before: u64,
    segment: PathBuf,
    /// Offset of the last commit's frame and the end of the file.
    last_frame: (u64, u64),
}

fn setup(segment_size: u64, checkpoint_midway: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(dir.path(), opts(segment_size)).unwrap();
    for i in 0..12u64 {
        db.put(
            "players",
            &format!("p{}", i % 5),
            json!({"hp": i, "name": format!("player {i}")}),
        )
        .unwrap();
        if i == 6 {
            db.delete("players", "p1").unwrap();
            if checkpoint_midway {
                db.checkpoint().unwrap();
            }
        }
    }
    db.put("parties", "red", json!({"members": ["p0", "p2"]}))
        .unwrap();
    let before = snapshot(&db);
    let lsn_before = db.view().lsn();
    let mut tx = Transaction::new();
    tx.put(
        "players",
        "p0",
        json!({"hp": 99, "inventory": ["sword", "shield", "x".repeat(40)]}),
    )
    .if_version(3);
    tx.create("players", "p9", json!({"hp": 1}));
    tx.delete("parties", "red");
    tx.patch(
        "players",
        "p2",
        amberdb::Patch::Merge(json!({"hp": null, "level": 7})),
    );
    db.commit(&tx).unwrap();
    assert_eq!(db.view().lsn(), lsn_before + 1);
    db.close().unwrap();

    let segments = list_segments(&dir.path().join(LOG_DIR)).unwrap();
    let segment = segments.last().unwrap().1.clone();
    let bytes = fs::read(&segment).unwrap();
    let mut offsets = vec![];
    let s = scan(&bytes, |rec, off| offsets.push((rec.lsn, off))).unwrap();
    assert_eq!(s.last_lsn, lsn_before + 1);
    let (lsn, start) = *offsets.last().unwrap();
    assert_eq!(
        lsn,
        lsn_before + 1,
        "the last frame of the last segment is the last commit"
    );
    Setup {
        dir,
        before,
        lsn_before,
        segment,
        last_frame: (start, bytes.len() as u64),
    }
}

/// Damage is applied to a copy of the directory by `damage(segment, cut)`; the copy must then
/// verify clean with the expected torn tail and reopen at exactly the state before the last
/// commit.
fn check_every_offset(s: &Setup, name: &str, damage: impl Fn(&Path, u64)) {
    let (start, end) = s.last_frame;
    let seg_name = s.segment.file_name().unwrap();
    for cut in start..end {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(s.dir.path(), copy.path());
        let segment = copy.path().join(LOG_DIR).join(seg_name);
        let original = fs::read(&segment).unwrap();
        damage(&segment, cut);
        let ctx = format!("{name} at offset {cut} (last frame {start}..{end})");
        if fs::read(&segment).unwrap() == original {
            // The damage wrote what was already there (zeroes over a frame's trailing zero
            // count of stream ops, log format 5): no damage, so the commit must survive whole.
            let report = verify_dir(copy.path()).unwrap();
            assert!(report.is_clean() && report.torn_tail.is_none(), "{ctx}");
            let db = Db::open_with(copy.path(), opts(1 << 20)).unwrap();
            assert_eq!(db.recovery_report().lsn, s.lsn_before + 1, "{ctx}");
            assert_eq!(db.recovery_report().torn_tail, None, "{ctx}");
            db.close().unwrap();
            continue;
        }

        let report = verify_dir(copy.path()).unwrap();
        assert!(
            report.is_clean(),
            "{ctx}: verify must not call a torn tail damage: {:?}",
            report.problems
        );
        let on_disk = fs::metadata(&segment).unwrap().len();
        if on_disk == start {
            assert_eq!(report.torn_tail, None, "{ctx}");
        } else {
            let torn = report
                .torn_tail
                .as_ref()
                .unwrap_or_else(|| panic!("{ctx}: verify reports the torn tail"));
            assert_eq!(
                (&torn.file, torn.offset, torn.bytes),
                (&segment, start, on_disk - start),
                "{ctx}"
            );
        }

        let db = Db::open_with(copy.path(), opts(1 << 20))
            .unwrap_or_else(|e| panic!("{ctx}: open failed: {e}"));
        let rec = db.recovery_report().clone();
        assert_eq!(rec.lsn, s.lsn_before, "{ctx}");
        assert_eq!(
            snapshot(&db),
            s.before,
            "{ctx}: exactly the commits before the torn one"
        );
        match &rec.torn_tail {
            None => assert_eq!(
                on_disk, start,
                "{ctx}: a torn tail must be reported by open"
            ),
            Some(t) => assert_eq!(
                (&t.file, t.offset, t.bytes),
                (&segment, start, on_disk - start),
                "{ctx}"
            ),
        }
        assert_eq!(
            fs::metadata(&segment).unwrap().len(),
            start,
            "{ctx}: the tail is cut"
        );

        // The log continues after the cut: the next commit reuses the lost LSN and survives.
        // (Checked at a sample of offsets; reopening twice per byte would dominate the run.)
        if cut % 8 != 0 && cut + 1 != end {
            db.close().unwrap();
            continue;
        }
        let c = db.put("players", "after", json!({"cut": cut})).unwrap();
        assert_eq!(c.lsn, s.lsn_before + 1, "{ctx}");
        db.close().unwrap();
        let db = Db::open_with(copy.path(), opts(1 << 20)).unwrap();
        assert_eq!(db.recovery_report().torn_tail, None, "{ctx}");
        assert_eq!(
            db.get("players", "after").map(|d| d.meta.lsn),
            Some(s.lsn_before + 1),
            "{ctx}"
        );
        assert!(db.verify().unwrap().is_clean(), "{ctx}");
        db.close().unwrap();
    }
}

/// Zeroes `segment` from `cut` to its end.
fn zero_from(segment: &Path, cut: u64) {
    zero(segment, cut, usize::MAX);
}

#[test]
fn log_cut_at_every_byte_of_its_last_commit_reopens_with_exactly_the_commits_before_it() {
    let s = setup(64 << 20, false);
    check_every_offset(&s, "truncated", truncate);
}

#[test]
fn last_commit_zeroed_from_every_byte_is_a_torn_tail_too() {
    let s = setup(64 << 20, false);
    check_every_offset(&s, "zeroed", zero_from);
}

#[test]
fn torn_last_commit_after_a_checkpoint_in_a_later_segment_loses_only_that_commit() {
    // Small segments: the log has rolled several times, the checkpoint let older segments go,
    // and the torn commit sits in the newest segment.
    let s = setup(400, true);
    let segments = list_segments(&s.dir.path().join(LOG_DIR)).unwrap();
    assert!(segments.len() > 1, "the log rolled: {segments:?}");
    check_every_offset(&s, "truncated after checkpoint", truncate);
}

#[test]
fn acknowledged_commit_after_a_segment_cut_inside_its_header_is_never_lost() {
    // A fresh segment holds only its 56-byte header (log format 3); cut it inside the
    // header's last (reserved) bytes, and inside its ids. Open may refuse (the damage is named) or carry on, but if it carries on, a
    // commit it acknowledges must survive the next reopen: the writer must never append where
    // the reader does not look.
    for cut in [28u64, 30, 31, 52, 54, 55] {
        let dir = tempfile::tempdir().unwrap();
        Db::open_with(dir.path(), opts(64 << 20))
            .unwrap()
            .close()
            .unwrap();
        let segment = list_segments(&dir.path().join(LOG_DIR)).unwrap()[0]
            .1
            .clone();
        assert_eq!(
            fs::metadata(&segment).unwrap().len(),
            amberdb::log::segment::SEGMENT_HEADER_LEN_V4 as u64
        );
        truncate(&segment, cut);
        match Db::open_with(dir.path(), opts(64 << 20)) {
            Err(amberdb::Error::Damaged(d)) => {
                assert_eq!(d.file, segment, "cut at {cut}: {}", d.detail)
            }
            Err(e) => panic!("cut at {cut}: unexpected error {e}"),
            Ok(db) => {
                let c = db.put("players", "alice", json!({"hp": 1})).unwrap();
                db.close().unwrap();
                let db = Db::open_with(dir.path(), opts(64 << 20)).unwrap();
                let got = db.get("players", "alice").map(|d| d.meta.lsn);
                assert_eq!(
                    got,
                    Some(c.lsn),
                    "cut at {cut}: the acknowledged commit was lost"
                );
                db.close().unwrap();
            }
        }
    }
}

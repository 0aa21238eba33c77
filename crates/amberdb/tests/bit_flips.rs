//! Bit flips: damage that is not a torn tail must never be skipped silently.
//!
//! - A flipped byte in a commit with valid commits after it refuses the open with
//!   `Error::Damaged` naming the segment and the frame's offset, changes nothing, and `verify`
//!   reports the same file and offset.
//! - A flipped byte in the newest checkpoint makes open fall back to the older checkpoint (or
//!   to the log alone) when that loses nothing, and moves the damaged file to quarantine; when
//!   falling back would lose commits, open refuses and names the checkpoint.
//! - A flipped byte inside a stored document's value in an uncompressed checkpoint is reported
//!   by `verify` with the document's key, the file and the value's offset.
//! - A damaged seal, and a sealed segment that no longer matches its seal, are reported.

#![allow(clippy::unwrap_used)]

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use amberdb::checkpoint::list_checkpoints;
use amberdb::log::segment::{list_segments, seal_file_name};
use amberdb::{
    verify_dir, Db, Document, Error, Options, VerifyReport, CHECKPOINT_DIR, LOG_DIR, QUARANTINE_DIR,
};
use serde_json::json;
use support::{copy_dir, expect_damaged, flip, opts, segment_frames, snapshot, truncate};

fn write_commits(db: &Db, range: std::ops::Range<u64>) {
    for i in range {
        db.put(
            "players",
            &format!("p{}", i % 7),
            json!({"i": i, "name": format!("player {i}")}),
        )
        .unwrap();
    }
}

fn has_problem(report: &VerifyReport, file: &Path, offset: Option<u64>) -> bool {
    report
        .problems
        .iter()
        .any(|p| p.file == file && (offset.is_none() || p.offset == offset))
}

#[test]
fn flipped_byte_in_a_middle_commit_refuses_open_naming_the_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(dir.path(), opts(64 << 20)).unwrap();
    write_commits(&db, 0..10);
    db.close().unwrap();
    let segment = list_segments(&dir.path().join(LOG_DIR)).unwrap()[0]
        .1
        .clone();
    let frames = segment_frames(&segment);
    assert_eq!(frames.len(), 10);
    // Every byte of a commit in the middle, and every byte of the segment header that its
    // CRC covers (the last 4 header bytes are reserved padding, outside the CRC).
    let (_, start) = frames[4];
    let end = frames[5].1;
    let targets: Vec<(u64, u64)> = (start..end)
        .map(|o| (o, start))
        .chain((0..28).map(|o| (o, 0)))
        .collect();
    for (offset, expect_at) in targets {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        let seg = copy.path().join(LOG_DIR).join(segment.file_name().unwrap());
        flip(&seg, offset);
        let damaged_bytes = fs::read(&seg).unwrap();
        let ctx = format!("byte {offset} flipped");

        let report = verify_dir(copy.path()).unwrap();
        assert!(
            has_problem(&report, &seg, Some(expect_at)),
            "{ctx}: verify must name {} at {expect_at}: {:?}",
            seg.display(),
            report.problems
        );
        assert_eq!(
            report.torn_tail, None,
            "{ctx}: damage with valid commits after it is not a torn tail"
        );

        let d = expect_damaged(copy.path(), opts(64 << 20));
        assert_eq!(
            (&d.file, d.offset),
            (&seg, expect_at),
            "{ctx}: {}",
            d.detail
        );
        let message = Error::Damaged(d).to_string();
        assert!(
            message.contains(&seg.display().to_string()) && message.contains("amberdb verify"),
            "{ctx}: {message}"
        );
        assert_eq!(
            fs::read(&seg).unwrap(),
            damaged_bytes,
            "{ctx}: a refused open changes nothing"
        );
    }
}

/// A database with two checkpoints (at LSN 20 and 40), log segments before the older one
/// removed, and commits up to LSN 50 in the log only.
struct TwoCheckpoints {
    dir: tempfile::TempDir,
    expected: Vec<(String, Document)>,
    newest: PathBuf,
    older: PathBuf,
}

fn two_checkpoints(checkpoints: usize) -> TwoCheckpoints {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(dir.path(), opts(600)).unwrap();
    write_commits(&db, 0..20);
    if checkpoints > 1 {
        db.checkpoint().unwrap();
    }
    write_commits(&db, 20..40);
    db.checkpoint().unwrap();
    write_commits(&db, 40..50);
    db.delete("players", "p3").unwrap();
    let expected = snapshot(&db);
    db.close().unwrap();
    let ckpts = list_checkpoints(&dir.path().join(CHECKPOINT_DIR)).unwrap();
    assert_eq!(ckpts.len(), checkpoints);
    let first_log_lsn = list_segments(&dir.path().join(LOG_DIR)).unwrap()[0].0;
    assert!(
        first_log_lsn > 1,
        "segments no checkpoint needs were removed"
    );
    assert!(
        first_log_lsn <= ckpts.last().unwrap().0 + 1,
        "the log reaches back to the oldest checkpoint"
    );
    let newest = ckpts[0].1.clone();
    let older = ckpts.last().unwrap().1.clone();
    TwoCheckpoints {
        dir,
        expected,
        newest,
        older,
    }
}

#[test]
fn flipped_byte_in_the_newest_checkpoint_falls_back_to_the_older_one_and_quarantines_it() {
    let s = two_checkpoints(2);
    let len = fs::metadata(&s.newest).unwrap().len();
    let name = s.newest.file_name().unwrap().to_owned();
    // Header, first block header, the middle of the body, the trailer's hash and end magic.
    for offset in [0, 20, 64, 70, len / 2, len - 40, len - 1] {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(s.dir.path(), copy.path());
        let newest = copy.path().join(CHECKPOINT_DIR).join(&name);
        let older = copy
            .path()
            .join(CHECKPOINT_DIR)
            .join(s.older.file_name().unwrap());
        flip(&newest, offset);
        let damaged_bytes = fs::read(&newest).unwrap();
        let ctx = format!("checkpoint byte {offset} of {len} flipped");

        let report = verify_dir(copy.path()).unwrap();
        assert!(
            has_problem(&report, &newest, None),
            "{ctx}: verify names the checkpoint: {:?}",
            report.problems
        );
        assert!(
            report
                .problems
                .iter()
                .all(|p| p.file == newest && p.offset.is_some()),
            "{ctx}: {:?}",
            report.problems
        );

        let db = Db::open_with(copy.path(), opts(600)).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        let rec = db.recovery_report().clone();
        assert_eq!(
            rec.checkpoint.as_ref(),
            Some(&older),
            "{ctx}: fell back to the older checkpoint"
        );
        assert_eq!(rec.lsn, 51, "{ctx}");
        assert_eq!(snapshot(&db), s.expected, "{ctx}: nothing lost");
        assert_eq!(rec.quarantined.len(), 1, "{ctx}");
        let (from, to) = &rec.quarantined[0];
        assert_eq!(from, &newest, "{ctx}");
        assert!(
            to.starts_with(copy.path().join(QUARANTINE_DIR)),
            "{ctx}: {}",
            to.display()
        );
        assert_eq!(
            fs::read(to).unwrap(),
            damaged_bytes,
            "{ctx}: quarantined, not deleted or rewritten"
        );
        assert!(!newest.exists(), "{ctx}");
        assert!(db.verify().unwrap().is_clean(), "{ctx}");
        // And the database carries on: a new checkpoint and a clean reopen.
        db.put("players", "after", json!({})).unwrap();
        db.checkpoint().unwrap();
        db.close().unwrap();
        let db = Db::open_with(copy.path(), opts(600)).unwrap();
        assert_eq!(db.view().lsn(), 52, "{ctx}");
        assert!(db.recovery_report().quarantined.is_empty(), "{ctx}");
        db.close().unwrap();
    }
}

#[test]
fn flipped_byte_in_the_only_checkpoint_refuses_open_when_the_log_no_longer_reaches_back() {
    let s = two_checkpoints(1);
    let copy = tempfile::tempdir().unwrap();
    copy_dir(s.dir.path(), copy.path());
    let ckpt = copy
        .path()
        .join(CHECKPOINT_DIR)
        .join(s.newest.file_name().unwrap());
    let len = fs::metadata(&ckpt).unwrap().len();
    flip(&ckpt, len / 2);
    let damaged_bytes = fs::read(&ckpt).unwrap();
    assert!(has_problem(&verify_dir(copy.path()).unwrap(), &ckpt, None));

    let d = expect_damaged(copy.path(), opts(600));
    assert_eq!(d.file, ckpt, "{}", d.detail);
    assert!(
        d.detail.contains("LSN 1"),
        "says why falling back is impossible: {}",
        d.detail
    );
    assert_eq!(
        fs::read(&ckpt).unwrap(),
        damaged_bytes,
        "not quarantined, not changed"
    );
    assert!(!copy.path().join(QUARANTINE_DIR).exists());
}

#[test]
fn both_checkpoints_damaged_refuses_open_because_falling_back_would_lose_commits() {
    let s = two_checkpoints(2);
    let copy = tempfile::tempdir().unwrap();
    copy_dir(s.dir.path(), copy.path());
    let newest = copy
        .path()
        .join(CHECKPOINT_DIR)
        .join(s.newest.file_name().unwrap());
    let older = copy
        .path()
        .join(CHECKPOINT_DIR)
        .join(s.older.file_name().unwrap());
    flip(&newest, 100);
    flip(&older, 100);
    let d = expect_damaged(copy.path(), opts(600));
    assert!(
        d.file == newest || d.file == older,
        "names a damaged checkpoint: {}",
        d.file.display()
    );
    assert!(
        newest.exists() && older.exists(),
        "a refused open quarantines nothing"
    );
}

#[test]
fn flipped_byte_in_the_newest_checkpoint_falls_back_to_the_log_alone_when_it_starts_at_lsn_1() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(
        dir.path(),
        Options {
            segment_size: 64 << 20,
            ..Options::default()
        },
    )
    .unwrap();
    write_commits(&db, 0..30);
    let expected = snapshot(&db);
    db.close().unwrap(); // writes the only checkpoint; the single segment stays
    let ckpt = list_checkpoints(&dir.path().join(CHECKPOINT_DIR)).unwrap()[0]
        .1
        .clone();
    flip(&ckpt, 90);
    let db = Db::open_with(dir.path(), opts(64 << 20)).unwrap();
    let rec = db.recovery_report().clone();
    assert_eq!(
        (rec.checkpoint, rec.commits_replayed, rec.lsn),
        (None, 30, 30)
    );
    assert_eq!(rec.quarantined.len(), 1);
    assert_eq!(snapshot(&db), expected);
    db.close().unwrap();
}

#[test]
fn flipped_byte_in_a_document_value_of_an_uncompressed_checkpoint_is_reported_with_key_file_and_offset(
) {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        checkpoint_compression_level: 0,
        ..Options::default()
    };
    let db = Db::open_with(dir.path(), o.clone()).unwrap();
    write_commits(&db, 0..10);
    db.put(
        "treasure.chests",
        "chest-42",
        json!({"gold": 1234567, "needle": "find-me-in-the-checkpoint"}),
    )
    .unwrap();
    write_commits(&db, 10..20);
    let expected = snapshot(&db);
    db.close().unwrap(); // checkpoint on close, uncompressed
    let ckpt = list_checkpoints(&dir.path().join(CHECKPOINT_DIR)).unwrap()[0]
        .1
        .clone();
    let bytes = fs::read(&ckpt).unwrap();
    let value =
        amberdb::canonical_json(&json!({"gold": 1234567, "needle": "find-me-in-the-checkpoint"}));
    let value_at = bytes
        .windows(value.len())
        .position(|w| w == value.as_slice())
        .expect("value stored verbatim") as u64;
    flip(&ckpt, value_at + 12);

    let report = verify_dir(dir.path()).unwrap();
    let p = report
        .problems
        .iter()
        .find(|p| p.detail.contains("treasure.chests/chest-42"))
        .unwrap_or_else(|| panic!("verify names the document: {:?}", report.problems));
    assert_eq!((&p.file, p.offset), (&ckpt, Some(value_at)), "{}", p.detail);
    assert!(p.detail.contains("SHA-256"), "{}", p.detail);

    // The log still starts at LSN 1, so open falls back to it and loses nothing.
    let db = Db::open_with(dir.path(), o).unwrap();
    assert_eq!(db.recovery_report().quarantined.len(), 1);
    assert_eq!(snapshot(&db), expected);
    assert_eq!(
        db.get("treasure.chests", "chest-42")
            .unwrap()
            .json()
            .unwrap()["needle"],
        "find-me-in-the-checkpoint"
    );
    db.close().unwrap();
}

/// A database whose log rolled several times, closed without a checkpoint, so every segment
/// but the last is sealed and all of them are needed for replay.
fn sealed_segments() -> (tempfile::TempDir, Vec<(u64, PathBuf)>) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(dir.path(), opts(500)).unwrap();
    write_commits(&db, 0..30);
    db.close().unwrap();
    let segments = list_segments(&dir.path().join(LOG_DIR)).unwrap();
    assert!(segments.len() >= 3, "{segments:?}");
    (dir, segments)
}

#[test]
fn damaged_seal_is_reported_and_open_still_replays_the_segment() {
    let (dir, segments) = sealed_segments();
    let seal = dir.path().join(LOG_DIR).join(seal_file_name(segments[1].0));
    // Every byte the seal's CRC covers (the last 4 bytes are reserved padding).
    for offset in 0..84 {
        flip(&seal, offset);
        let report = verify_dir(dir.path()).unwrap();
        assert!(
            has_problem(&report, &seal, None),
            "seal byte {offset}: {:?}",
            report.problems
        );
        assert_eq!(
            report.problems.len(),
            1,
            "only the seal is damaged: {:?}",
            report.problems
        );
        flip(&seal, offset);
        assert!(verify_dir(dir.path()).unwrap().is_clean());
    }
    flip(&seal, 40);
    let db = Db::open_with(dir.path(), opts(500)).unwrap();
    assert_eq!(db.view().lsn(), 30);
    db.close().unwrap();
    assert!(
        has_problem(&verify_dir(dir.path()).unwrap(), &seal, None),
        "open keeps the damaged seal for inspection"
    );
}

#[test]
fn sealed_segment_that_no_longer_matches_its_seal_is_reported() {
    let (dir, segments) = sealed_segments();
    let (first, segment) = &segments[0];
    let seal = dir.path().join(LOG_DIR).join(seal_file_name(*first));
    // A flipped byte in the middle of the sealed segment's first frame (right after the log
    // format 3 header): its frame and its seal disagree.
    let len = fs::metadata(segment).unwrap().len();
    let frame = amberdb::log::segment::SEGMENT_HEADER_LEN_V4 as u64;
    flip(segment, frame + 8);
    let report = verify_dir(dir.path()).unwrap();
    assert!(
        has_problem(&report, segment, Some(frame)),
        "{:?}",
        report.problems
    );
    assert!(has_problem(&report, &seal, None), "{:?}", report.problems);
    flip(segment, frame + 8);
    // Whole commits cut off the end of a sealed segment: every frame is fine, but the seal
    // and the LSN sequence say otherwise.
    let cut = segment_frames(segment).last().unwrap().1;
    truncate(segment, cut);
    let report = verify_dir(dir.path()).unwrap();
    assert!(has_problem(&report, &seal, None), "{:?}", report.problems);
    assert!(
        report.problems.iter().any(|p| p.detail.contains("gap")),
        "{:?}",
        report.problems
    );
    assert!(cut < len);
    let d = expect_damaged(dir.path(), opts(500));
    assert!(d.detail.contains("gap"), "{}", d.detail);
}

//! `verify` of a data directory's stream files (issue 13): every entry the newest sound
//! checkpoint names is checked (CRC32C, sequence numbers), a flipped byte or a missing file
//! below the watermark is a problem naming the file, and bytes past the watermark (written
//! after the checkpoint, rewritten from the log by open) are not. Sealed files are checked
//! with their key; without it (the checkpoint naming what they hold is sealed too) they are
//! listed as not checked.

#![allow(clippy::unwrap_used)]

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use amberdb::{verify_dir, verify_dir_with};
use amberdb::{Db, Options, Retention, StreamFrom};
use serde_json::json;
use support::test_ring as ring;

fn opts() -> Options {
    Options {
        stream_segment_bytes: 256,
        checkpoint_interval: None,
        checkpoint_log_bytes: u64::MAX,
        checkpoint_on_close: false,
        history_retention: Duration::ZERO,
        ttl_reap_interval: None,
        ..Options::default()
    }
}

/// The stream files of `stream`, oldest first.
fn files(data: &Path, stream: &str) -> Vec<PathBuf> {
    let mut out = vec![];
    for dir in fs::read_dir(data.join("streams")).unwrap() {
        let dir = dir.unwrap().path();
        if dir.to_str().unwrap().ends_with(&format!("-{stream}")) {
            for f in fs::read_dir(&dir).unwrap() {
                out.push(f.unwrap().path());
            }
        }
    }
    out.sort();
    out
}

fn flip(file: &Path, at: usize) {
    let mut bytes = fs::read(file).unwrap();
    bytes[at] ^= 0x20;
    fs::write(file, &bytes).unwrap();
}

/// 30 entries in several files, the first 10 trimmed by retention, then a checkpoint.
fn thirty_entries_ten_trimmed(db: &Db) {
    for i in 0..30 {
        db.append("chat", &[json!({"line": i, "pad": "abcdefgh"})], None)
            .unwrap();
    }
    db.set_stream_retention(
        "chat",
        Retention {
            max_entries: Some(20),
            max_age_s: None,
        },
    )
    .unwrap();
    db.checkpoint().unwrap();
}

#[test]
fn verify_checks_every_retained_stream_entry_and_finds_a_flipped_byte_below_the_watermark() {
    let t = tempfile::tempdir().unwrap();
    let db = Db::open_with(t.path(), opts()).unwrap();
    thirty_entries_ten_trimmed(&db);
    db.close().unwrap();
    let r = verify_dir(t.path()).unwrap();
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(
        r.stream_entries_checked, 20,
        "the retained entries, each once"
    );

    let last = files(t.path(), "chat").pop().unwrap();
    flip(&last, 40 + 12);
    let r = verify_dir(t.path()).unwrap();
    assert!(
        r.problems
            .iter()
            .any(|p| p.file == last && p.detail.contains("stream chat")),
        "{r:?}"
    );
    // Open agrees: the same byte is damage to it.
    assert!(matches!(
        Db::open_with(t.path(), opts()),
        Err(amberdb::Error::Damaged(_))
    ));
}

#[test]
fn verify_reports_a_missing_stream_file_that_holds_retained_entries() {
    let t = tempfile::tempdir().unwrap();
    let db = Db::open_with(t.path(), opts()).unwrap();
    thirty_entries_ten_trimmed(&db);
    db.close().unwrap();
    let all = files(t.path(), "chat");
    assert!(all.len() >= 4, "{all:?}");
    let middle = &all[all.len() - 2];
    fs::remove_file(middle).unwrap();
    let r = verify_dir(t.path()).unwrap();
    assert!(
        !r.is_clean(),
        "a missing file below the watermark is damage"
    );
    assert!(
        r.problems.iter().any(|p| p.detail.contains("stream chat")),
        "{r:?}"
    );
}

#[test]
fn a_damaged_stream_tail_past_the_watermark_is_not_a_problem_and_open_rewrites_it_from_the_log() {
    let t = tempfile::tempdir().unwrap();
    let db = Db::open_with(t.path(), opts()).unwrap();
    thirty_entries_ten_trimmed(&db);
    // After the checkpoint: entries past its watermark (a crash, no closing checkpoint).
    for i in 30..33 {
        db.append("chat", &[json!({"line": i})], None).unwrap();
    }
    db.close().unwrap();
    let last = files(t.path(), "chat").pop().unwrap();
    let len = fs::metadata(&last).unwrap().len() as usize;
    flip(&last, len - 3);
    let r = verify_dir(t.path()).unwrap();
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(r.stream_entries_checked, 20);
    let db = Db::open_with(t.path(), opts()).unwrap();
    let page = db.read_stream("chat", StreamFrom::Seq(1), 100).unwrap();
    let lines: Vec<i64> = page
        .entries
        .iter()
        .map(|e| e.json().unwrap()["line"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, (13..33).collect::<Vec<_>>(), "retention keeps 20");
    db.close().unwrap();
}

#[test]
fn sealed_stream_files_are_verified_with_their_key_and_listed_as_not_checked_without_it() {
    let t = tempfile::tempdir().unwrap();
    let o = || Options {
        encryption: Some(ring(&[1])),
        ..opts()
    };
    let db = Db::open_with(t.path(), o()).unwrap();
    thirty_entries_ten_trimmed(&db);
    db.close().unwrap();
    let with = verify_dir_with(t.path(), Some(&ring(&[1]))).unwrap();
    assert!(with.is_clean(), "{with:?}");
    assert_eq!(with.stream_entries_checked, 20);
    let without = verify_dir(t.path()).unwrap();
    assert!(without.is_clean(), "{without:?}");
    assert_eq!(without.stream_entries_checked, 0);
    assert!(
        without
            .contents_not_checked
            .iter()
            .any(|p| p.detail.contains("stream files not checked")),
        "{without:?}"
    );

    let last = files(t.path(), "chat").pop().unwrap();
    let len = fs::metadata(&last).unwrap().len() as usize;
    flip(&last, len - 5);
    let r = verify_dir_with(t.path(), Some(&ring(&[1]))).unwrap();
    assert!(r.problems.iter().any(|p| p.file == last), "{r:?}");
}

//! Streams (issue 13): appends get gap-free sequence numbers and the commit time, survive
//! reopen, crash and checkpoints, `expected_seq` refuses a stale append, retention trims from
//! the head, a deleted stream starts again at 1, and transactions append atomically with
//! document writes.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use amberdb::clock::ManualClock;
use amberdb::{ConflictReason, Db, Error, Options, Retention, StreamFrom, Transaction};
use serde_json::{json, Value};

const START: u64 = 1_800_000_000_000_000;

fn opts(clock: &ManualClock) -> Options {
    Options {
        clock: std::sync::Arc::new(clock.clone()),
        stream_segment_bytes: 256,
        checkpoint_interval: None,
        checkpoint_log_bytes: u64::MAX,
        checkpoint_on_close: false,
        history_retention: Duration::ZERO,
        ttl_reap_interval: None,
        ..Options::default()
    }
}

fn values(db: &Db, stream: &str) -> Vec<(u64, Value)> {
    let mut out = vec![];
    let mut from = 1;
    loop {
        let page = db.read_stream(stream, StreamFrom::Seq(from), 7).unwrap();
        if page.entries.is_empty() {
            return out;
        }
        for e in &page.entries {
            out.push((e.seq, e.json().unwrap()));
        }
        from = page.next_seq;
    }
}

#[test]
fn appends_get_gap_free_seqs_and_survive_reopen_checkpoint_and_crash() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let db = Db::open_with(dir.path(), opts(&clock)).unwrap();
    let a = db.append("chat", &[json!("hi")], None).unwrap();
    assert_eq!((a.first_seq, a.last_seq), (1, 1));
    clock.advance(Duration::from_secs(1));
    let b = db
        .append("chat", &[json!({"n": 2}), json!([3]), json!(null)], Some(1))
        .unwrap();
    assert_eq!((b.first_seq, b.last_seq), (2, 4));
    assert!(b.commit_ts > a.commit_ts);
    let page = db.read_stream("chat", StreamFrom::Seq(1), 100).unwrap();
    let seqs: Vec<u64> = page.entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert_eq!(page.entries[0].commit_ts, a.commit_ts);
    assert_eq!(page.entries[3].commit_ts, b.commit_ts);
    let info = db.stream("chat").unwrap();
    assert_eq!(
        (info.entries, info.first_seq, info.last_seq),
        (4, Some(1), 4)
    );

    // Many small appends roll files (256-byte segments); a checkpoint in the middle.
    for i in 5..=60 {
        db.append(
            "chat",
            &[json!({"i": i, "pad": "x".repeat(i as usize)})],
            None,
        )
        .unwrap();
        if i == 30 {
            db.checkpoint().unwrap();
        }
    }
    let before = values(&db, "chat");
    assert_eq!(before.len(), 60);

    // A crash: what the directory holds while the database is open.
    let crashed = tempfile::tempdir().unwrap();
    support::copy_dir(dir.path(), crashed.path());
    let c = Db::open_with(crashed.path(), opts(&clock)).unwrap();
    assert_eq!(values(&c, "chat"), before, "after a crash");
    assert_eq!(
        c.append("chat", &[json!("after")], None).unwrap().first_seq,
        61
    );
    c.close().unwrap();

    db.close().unwrap();
    let db = Db::open_with(dir.path(), opts(&clock)).unwrap();
    assert_eq!(values(&db, "chat"), before, "after reopen");
    assert!(db.verify().unwrap().is_clean());
    db.close().unwrap();
}

#[test]
fn a_stale_expected_seq_is_a_conflict_naming_expected_and_actual_and_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let db = Db::open_with(dir.path(), opts(&clock)).unwrap();
    let err = db.append("log", &[json!(1)], Some(3)).unwrap_err();
    match err {
        Error::Conflict(c) => {
            assert_eq!(c[0].reason, ConflictReason::StreamSeqMismatch);
            assert_eq!((c[0].expected, c[0].actual), (3, 0));
            assert_eq!(c[0].collection, "log");
        }
        other => panic!("expected a conflict, got {other}"),
    }
    assert!(db.stream("log").is_none(), "nothing was created");
    db.append("log", &[json!(1)], Some(0)).unwrap();
    let err = db.append("log", &[json!(2)], Some(0)).unwrap_err();
    assert!(err.to_string().contains("expected_seq 0"), "{err}");
    assert!(err.to_string().contains("is 1"), "{err}");
    assert_eq!(db.stream("log").unwrap().last_seq, 1);
    db.close().unwrap();
}

#[test]
fn two_threads_racing_with_the_same_expected_seq_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let db = Db::open_with(dir.path(), opts(&clock)).unwrap();
    for round in 0..50u64 {
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|t| {
                    let db = db.clone();
                    s.spawn(move || db.append("race", &[json!({"t": t, "r": round})], Some(round)))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {results:?}");
        assert_eq!(db.stream("race").unwrap().last_seq, round + 1);
    }
    db.close().unwrap();
}

#[test]
fn retention_trims_from_the_head_by_count_and_by_age_in_logged_commits() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let db = Db::open_with(dir.path(), opts(&clock)).unwrap();
    for i in 1..=10 {
        db.append("events", &[json!(i)], None).unwrap();
    }
    let info = db
        .set_stream_retention(
            "events",
            Retention {
                max_entries: Some(4),
                max_age_s: None,
            },
        )
        .unwrap();
    assert_eq!(
        (info.first_seq, info.last_seq, info.entries),
        (Some(7), 10, 4)
    );
    db.append("events", &[json!(11), json!(12)], None).unwrap();
    let got: Vec<u64> = values(&db, "events").iter().map(|v| v.0).collect();
    assert_eq!(got, [9, 10, 11, 12]);
    // A read from a trimmed seq starts at the first retained one.
    let page = db.read_stream("events", StreamFrom::Seq(2), 1).unwrap();
    assert_eq!(page.entries[0].seq, 9);

    db.set_stream_retention(
        "events",
        Retention {
            max_entries: None,
            max_age_s: Some(60),
        },
    )
    .unwrap();
    clock.advance(Duration::from_secs(30));
    db.append("events", &[json!(13)], None).unwrap();
    clock.advance(Duration::from_secs(40));
    assert_eq!(db.apply_stream_retention().unwrap(), 1);
    let got: Vec<u64> = values(&db, "events").iter().map(|v| v.0).collect();
    assert_eq!(got, [13], "entries older than 60 s are gone");
    assert_eq!(
        db.apply_stream_retention().unwrap(),
        0,
        "nothing more is due"
    );
    // Trims are logged: a reopen without a checkpoint replays them.
    db.close().unwrap();
    let db = Db::open_with(dir.path(), opts(&clock)).unwrap();
    let got: Vec<u64> = values(&db, "events").iter().map(|v| v.0).collect();
    assert_eq!(got, [13]);
    db.close().unwrap();
}

#[test]
fn reads_by_time_start_at_the_first_entry_committed_at_or_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let db = Db::open_with(dir.path(), opts(&clock)).unwrap();
    let mut stamps = vec![];
    for i in 0..5 {
        clock.advance(Duration::from_secs(10));
        stamps.push(
            db.append("t", &[json!(i), json!(i)], None)
                .unwrap()
                .commit_ts,
        );
    }
    let page = db
        .read_stream("t", StreamFrom::Time(stamps[2]), 100)
        .unwrap();
    assert_eq!(page.entries[0].seq, 5);
    let page = db
        .read_stream("t", StreamFrom::Time(stamps[2] + 1), 100)
        .unwrap();
    assert_eq!(page.entries[0].seq, 7);
    let page = db
        .read_stream("t", StreamFrom::Time(stamps[4] + 1), 100)
        .unwrap();
    assert!(page.entries.is_empty());
    assert_eq!(page.next_seq, 11);
    db.close().unwrap();
}

#[test]
fn a_deleted_stream_starts_again_at_one_and_its_files_go_after_two_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let db = Db::open_with(dir.path(), opts(&clock)).unwrap();
    for i in 0..20 {
        db.append("s", &[json!({"i": i, "pad": "p".repeat(40)})], None)
            .unwrap();
    }
    db.checkpoint().unwrap();
    assert!(db.delete_stream("s").unwrap());
    assert!(
        !db.delete_stream("s").unwrap(),
        "a second delete finds nothing"
    );
    assert!(db.stream("s").is_none());
    let a = db.append("s", &[json!("new")], Some(0)).unwrap();
    assert_eq!(a.first_seq, 1);
    let streams_dir = dir.path().join("streams");
    let dirs = || std::fs::read_dir(&streams_dir).unwrap().count();
    assert_eq!(
        dirs(),
        2,
        "the old stream's files are still needed by a checkpoint"
    );
    db.checkpoint().unwrap();
    db.append("s", &[json!("more")], None).unwrap();
    db.checkpoint().unwrap();
    assert_eq!(
        dirs(),
        1,
        "no kept checkpoint needs the deleted stream's files"
    );
    assert_eq!(values(&db, "s"), [(1, json!("new")), (2, json!("more"))]);
    db.close().unwrap();
    let db = Db::open_with(dir.path(), opts(&clock)).unwrap();
    assert_eq!(values(&db, "s"), [(1, json!("new")), (2, json!("more"))]);
    db.close().unwrap();
}

#[test]
fn trimmed_stream_files_are_removed_once_no_kept_checkpoint_needs_them() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let db = Db::open_with(dir.path(), opts(&clock)).unwrap();
    for i in 0..100 {
        db.append("s", &[json!({"i": i, "pad": "p".repeat(40)})], None)
            .unwrap();
    }
    let files = || {
        let d = std::fs::read_dir(dir.path().join("streams"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        std::fs::read_dir(d.path()).unwrap().count()
    };
    let before = files();
    assert!(before > 10, "{before} files");
    db.trim_stream("s", 95).unwrap();
    db.checkpoint().unwrap();
    db.checkpoint().unwrap(); // same LSN: nothing new is written
    db.append("s", &[json!("x")], None).unwrap();
    db.checkpoint().unwrap();
    assert!(files() <= 3, "{} files left of {before}", files());
    let got: Vec<u64> = values(&db, "s").iter().map(|v| v.0).collect();
    assert_eq!(got, [95, 96, 97, 98, 99, 100, 101]);
    db.close().unwrap();
    let db = Db::open_with(dir.path(), opts(&clock)).unwrap();
    let got: Vec<u64> = values(&db, "s").iter().map(|v| v.0).collect();
    assert_eq!(got, [95, 96, 97, 98, 99, 100, 101]);
    db.close().unwrap();
}

#[test]
fn a_transaction_appends_and_writes_a_document_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let db = Db::open_with(dir.path(), opts(&clock)).unwrap();
    db.put("conv", "c1", json!({"unread": 0})).unwrap();
    let mut tx = Transaction::new();
    tx.append("chat.c1", vec![json!({"line": "hello"})], Some(0));
    tx.put("conv", "c1", json!({"unread": 1})).if_version(1);
    let c = db.commit(&tx).unwrap();
    assert_eq!(
        c.results[0].version, 1,
        "an append's result names its last seq"
    );
    assert_eq!(db.stream("chat.c1").unwrap().last_seq, 1);
    // A failed precondition on the document appends nothing.
    let mut tx = Transaction::new();
    tx.append("chat.c1", vec![json!({"line": "lost"})], Some(1));
    tx.put("conv", "c1", json!({"unread": 2})).if_version(1);
    assert!(matches!(db.commit(&tx), Err(Error::Conflict(_))));
    assert_eq!(db.stream("chat.c1").unwrap().last_seq, 1);
    // A stale expected_seq writes no document.
    let mut tx = Transaction::new();
    tx.append("chat.c1", vec![json!({"line": "lost"})], Some(0));
    tx.put("conv", "c1", json!({"unread": 2}));
    assert!(matches!(db.commit(&tx), Err(Error::Conflict(_))));
    assert_eq!(db.get("conv", "c1").unwrap().meta.version, 2);
    db.close().unwrap();
}

#[test]
fn stream_names_sizes_and_counts_are_bounded_before_anything_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let db = Db::open_with(dir.path(), opts(&clock)).unwrap();
    assert!(db.append("Bad Name", &[json!(1)], None).is_err());
    assert!(db.append("ok", &[], None).is_err(), "an empty append");
    let big = json!("x".repeat(amberdb::limits::MAX_STREAM_ENTRY_BYTES));
    assert!(matches!(
        db.append("ok", &[big], None),
        Err(Error::TooLarge { .. })
    ));
    let many = vec![json!(1); amberdb::limits::MAX_APPEND_ENTRIES + 1];
    assert!(db.append("ok", &many, None).is_err());
    assert!(db
        .set_stream_retention(
            "ok",
            Retention {
                max_entries: Some(0),
                max_age_s: None
            }
        )
        .is_err());
    assert_eq!(db.view().lsn(), 0, "nothing was logged");
    db.close().unwrap();
}

/// A backup copies the stream files its snapshot needs (tests/stream_backup.rs has the
/// restores); a stream only configured, never appended to, has no files and backs up as
/// its retention alone.
#[test]
fn a_backup_of_streams_with_and_without_entries_restores_both() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let db = Db::open_with(dir.path().join("data"), opts(&clock)).unwrap();
    let repo = amberdb::BackupRepo::open_or_init(dir.path().join("repo")).unwrap();
    db.put("players", "a", json!({"n": 1})).unwrap();
    db.append("chat", &[json!("hello")], None).unwrap();
    let retention = Retention {
        max_entries: Some(7),
        ..Retention::default()
    };
    db.set_stream_retention("empty", retention).unwrap();
    let m = db.backup(&repo).unwrap();
    assert_eq!(m.format_version, 2, "a manifest with stream files");
    db.close().unwrap();
    let into = dir.path().join("restored");
    amberdb::backup::restore(
        &repo,
        &amberdb::RestoreTarget::Latest,
        false,
        &into,
        &amberdb::backup::NoProgress,
    )
    .unwrap();
    let db = Db::open_with(&into, opts(&clock)).unwrap();
    let page = db.read_stream("chat", StreamFrom::Seq(1), 10).unwrap();
    assert_eq!(page.entries.len(), 1);
    assert_eq!(page.entries[0].json().unwrap(), json!("hello"));
    assert_eq!(db.stream("empty").unwrap().retention, retention);
}

/// Regression (CI, schemathesis): a stream that was only configured never gets a directory;
/// deleting it made the next checkpoint (and so `close`) fail removing a directory that was
/// never there.
#[test]
fn a_configured_then_deleted_stream_that_never_had_an_entry_does_not_fail_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let db = Db::open_with(dir.path(), opts(&clock)).unwrap();
    db.set_stream_retention("empty", Retention::default())
        .unwrap();
    db.checkpoint().unwrap();
    assert!(db.delete_stream("empty").unwrap());
    db.append("other", &[json!(1)], None).unwrap();
    db.checkpoint().unwrap();
    db.append("other", &[json!(2)], None).unwrap();
    db.checkpoint().unwrap();
    db.close().unwrap();
    let db = Db::open_with(dir.path(), opts(&clock)).unwrap();
    assert!(db.stream("empty").is_none());
    assert_eq!(values(&db, "other"), [(1, json!(1)), (2, json!(2))]);
    db.close().unwrap();
}

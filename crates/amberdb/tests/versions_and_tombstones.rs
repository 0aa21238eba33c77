//! Versions across delete and re-create, and tombstone pruning (issue 8, items 10 and 11).
//!
//! A key's version never repeats: a re-created document continues after the version its
//! tombstone remembers, and after the tombstone is pruned, after its collection's version
//! floor. Tombstones older than `Options::tombstone_retention` are pruned, so a unique-key
//! workload keeps a bounded number of them in memory and in checkpoints; recovery (from a
//! checkpoint or by replaying the log) prunes exactly where the live database did, so a
//! reopened database gives the same versions the live one would have.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use amberdb::backup::{read_log, LogFilter, LogSource};
use amberdb::{ConflictReason, Db, Durability, Error, Options, Transaction};
use serde_json::json;
use support::copy_dir;

const C: &str = "sessions";

fn options(retention: Duration, checkpoint_on_close: bool) -> Options {
    Options {
        tombstone_retention: retention,
        // Tombstones live at least as long as the history window; these tests choose the
        // tombstone retention alone, so they have no window.
        history_retention: Duration::ZERO,
        checkpoint_on_close,
        ..Options::default()
    }
}

fn put(db: &Db, key: &str) -> u64 {
    let c = db.put(C, key, json!({"key": key})).unwrap();
    c.results[0].version
}

fn delete(db: &Db, key: &str) {
    let mut t = Transaction::new();
    t.delete(C, key);
    db.commit(&t).unwrap();
}

fn version(db: &Db, key: &str) -> u64 {
    db.get(C, key).unwrap().meta.version
}

fn tombstones(db: &Db) -> u64 {
    db.stats()
        .collections
        .iter()
        .find(|c| c.name == C)
        .map_or(0, |c| c.tombstones)
}

/// Writes `key` `n` times and deletes it; returns the version it was deleted at.
fn write_and_delete(db: &Db, key: &str, n: u64) -> u64 {
    let first = put(db, key);
    for _ in 1..n {
        put(db, key);
    }
    let last = version(db, key);
    assert_eq!(last, first + n - 1);
    delete(db, key);
    last
}

#[test]
fn if_match_taken_before_delete_fails_against_the_recreated_document() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(put(&db, "k"), 1);
    delete(&db, "k");
    // The client that read version 1 of the old document is unaware of the delete and the
    // re-create; its conditional write must not land on the new document.
    assert_eq!(put(&db, "k"), 2);
    let mut t = Transaction::new();
    t.put(C, "k", json!({"stale": true})).if_version(1);
    match db.commit(&t) {
        Err(Error::Conflict(c)) => {
            assert_eq!((c[0].expected, c[0].actual), (1, 2));
            assert_eq!(c[0].reason, ConflictReason::VersionMismatch);
        }
        other => panic!("a stale If-Match succeeded: {other:?}"),
    }
    assert_eq!(db.get(C, "k").unwrap().json().unwrap(), json!({"key": "k"}));
}

#[test]
fn versions_continue_after_delete_and_recreate_across_reopen() {
    for checkpoint_on_close in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let opts = || options(Options::default().tombstone_retention, checkpoint_on_close);
        let db = Db::open_with(dir.path(), opts()).unwrap();
        assert_eq!(write_and_delete(&db, "k", 3), 3);
        db.close().unwrap();
        // The tombstone (and the version it remembers) survives a checkpoint and a replay.
        let db = Db::open_with(dir.path(), opts()).unwrap();
        assert_eq!(
            db.recovery_report().commits_replayed == 0,
            checkpoint_on_close
        );
        assert_eq!(tombstones(&db), 1);
        assert_eq!(
            put(&db, "k"),
            4,
            "checkpoint_on_close {checkpoint_on_close}"
        );
        delete(&db, "k");
        db.close().unwrap();
        let db = Db::open_with(dir.path(), opts()).unwrap();
        assert_eq!(
            put(&db, "k"),
            5,
            "checkpoint_on_close {checkpoint_on_close}"
        );
        db.close().unwrap();
    }
}

#[test]
fn recreate_after_the_tombstone_is_pruned_gets_a_higher_version() {
    for checkpoint_on_close in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let opts = || options(Duration::ZERO, checkpoint_on_close);
        let db = Db::open_with(dir.path(), opts()).unwrap();
        assert_eq!(write_and_delete(&db, "k", 5), 5);
        assert_eq!(tombstones(&db), 1, "kept until a later commit");
        put(&db, "other");
        assert_eq!(
            tombstones(&db),
            0,
            "retention zero: pruned by the next commit"
        );
        db.close().unwrap();
        let db = Db::open_with(dir.path(), opts()).unwrap();
        assert_eq!(tombstones(&db), 0);
        let v = put(&db, "k");
        assert!(v > 5, "re-created at version {v} after versions 1..=5");
        assert_eq!(v, 6);
        // A stale If-Match for any old version fails.
        for old in 1..=5 {
            let mut t = Transaction::new();
            t.put(C, "k", json!({})).if_version(old);
            assert!(matches!(db.commit(&t), Err(Error::Conflict(_))));
        }
        db.close().unwrap();
    }
}

#[test]
fn unique_key_workload_keeps_the_tombstone_count_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || Options {
        durability: Durability::Buffered {
            max_delay: Duration::from_millis(50),
        },
        ..options(Duration::ZERO, true)
    };
    let db = Db::open_with(dir.path(), opts()).unwrap();
    let cycles = 3000;
    let mut highest = 0;
    let mut ckpt_size_early = 0;
    for i in 0..cycles {
        let key = format!("match-{i}");
        highest = highest.max(put(&db, &key));
        delete(&db, &key);
        assert!(tombstones(&db) <= 1, "{} tombstones", tombstones(&db));
        if i == 300 {
            ckpt_size_early = db.checkpoint().unwrap().bytes;
        }
    }
    let late = db.checkpoint().unwrap().bytes;
    assert!(
        late <= ckpt_size_early + 64,
        "checkpoint grew from {ckpt_size_early} to {late} bytes"
    );
    db.close().unwrap();
    let db = Db::open_with(dir.path(), opts()).unwrap();
    assert!(tombstones(&db) <= 1);
    assert_eq!(db.count(C), 0);
    assert!(put(&db, "match-0") > highest);
    db.close().unwrap();
}

/// Re-creates every key in one transaction; returns the versions it got.
fn recreate_all(db: &Db, keys: &[String]) -> Vec<u64> {
    let mut t = Transaction::new();
    for k in keys {
        t.put(C, k, json!({"again": true}));
    }
    db.commit(&t)
        .unwrap()
        .results
        .iter()
        .map(|r| r.version)
        .collect()
}

#[test]
fn reopened_database_gives_the_same_versions_as_the_live_one() {
    // Retention 30 ms: the first round of deletes is pruned, the second is not yet.
    let retention = Duration::from_millis(30);
    for checkpoint_midway in [false, true] {
        let live_dir = tempfile::tempdir().unwrap();
        let copy_root = tempfile::tempdir().unwrap();
        let copy = copy_root.path().join("copy");
        let db = Db::open_with(live_dir.path(), options(retention, false)).unwrap();
        let keys: Vec<String> = (0..8).map(|i| format!("k{i}")).collect();
        let mut deleted_at = vec![];
        for (i, k) in keys.iter().take(4).enumerate() {
            deleted_at.push(write_and_delete(&db, k, 2 * i as u64 + 1));
        }
        if checkpoint_midway {
            db.checkpoint().unwrap();
        }
        std::thread::sleep(retention * 2);
        for (i, k) in keys.iter().enumerate().skip(4) {
            deleted_at.push(write_and_delete(&db, k, i as u64 - 2));
        }
        let live_tombstones = tombstones(&db);
        // The first round is pruned; the last delete is kept (no commit came after it).
        assert!(
            (1..=4).contains(&live_tombstones),
            "{live_tombstones} tombstones"
        );
        db.sync().unwrap();
        // The copy is what a crash at this moment leaves: checkpoint (maybe) and log.
        copy_dir(live_dir.path(), &copy);
        let live = recreate_all(&db, &keys);
        db.close().unwrap();

        let reopened = Db::open_with(&copy, options(retention, false)).unwrap();
        assert!(reopened.recovery_report().commits_replayed > 0);
        assert_eq!(tombstones(&reopened), live_tombstones);
        let again = recreate_all(&reopened, &keys);
        assert_eq!(again, live, "checkpoint midway: {checkpoint_midway}");
        // And never a version the key had before.
        for ((k, v), before) in keys.iter().zip(&again).zip(&deleted_at) {
            assert!(v > before, "{k}: {v} after {before}");
        }
        reopened.close().unwrap();
    }
}

#[test]
fn history_of_a_recreated_document_links_through_its_delete() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    put(&db, "other");
    put(&db, "k");
    put(&db, "k");
    delete(&db, "k");
    put(&db, "k");
    db.close().unwrap();
    let log = read_log(
        &LogSource::DataDir(dir.path().to_owned()),
        &LogFilter {
            key: Some("k".into()),
            ..LogFilter::default()
        },
    )
    .unwrap();
    let chain: Vec<(u64, &str, u64, u64)> = log
        .iter()
        .flat_map(|e| {
            e.ops
                .iter()
                .map(move |o| (e.lsn, o.op, o.version, o.prev_lsn))
        })
        .collect();
    assert_eq!(
        chain,
        vec![
            (2, "put", 1, 0),
            (3, "put", 2, 2),
            (4, "delete", 0, 3),
            (5, "put", 3, 4),
        ]
    );
}

//! What makes the commit path fast, pinned without timing anything (issue 14): a writer
//! alone commits on its own thread (no round trip to a committer thread), and concurrent
//! durable writers share fsyncs in batches of nearly all of them, not in alternating halves.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use amberdb::{Db, Durability, Transaction};
use serde_json::json;
use support::open_watched as open;

fn put(db: &Db, key: &str, durability: Durability) {
    let mut t = Transaction::new();
    t.put("c", key, json!({ "k": key }));
    t.durability = Some(durability);
    db.commit(&t).unwrap();
}

#[test]
fn one_writer_commits_on_its_own_thread() {
    let dir = tempfile::tempdir().unwrap();
    let (db, watch) = open(dir.path(), Duration::ZERO);
    watch.writers.lock().unwrap().clear();
    for i in 0..50 {
        let d = if i % 2 == 0 {
            Durability::Sync
        } else {
            Durability::Buffered {
                max_delay: Duration::from_secs(60),
            }
        };
        put(&db, &format!("k{i}"), d);
    }
    let me = std::thread::current().id();
    let writers = watch.writers.lock().unwrap().clone();
    assert!(writers.len() >= 50, "{} log writes", writers.len());
    assert!(
        writers.iter().all(|(t, _)| *t == me),
        "a lone writer's commits were written by another thread: {writers:?}"
    );
    assert_eq!(db.view().count("c"), 50);
}

#[test]
fn sixteen_durable_writers_share_each_fsync_when_the_disk_is_slow() {
    let dir = tempfile::tempdir().unwrap();
    // 2 ms per fsync: every writer acknowledged by one batch is back in the queue long
    // before the next batch's fsync ends.
    let (db, _watch) = open(dir.path(), Duration::from_millis(2));
    let db = Arc::new(db);
    // Warm the fsync estimate the leader's wait is bounded by.
    for i in 0..5 {
        put(&db, &format!("warm{i}"), Durability::Sync);
    }
    let before = db.stats();
    let threads: Vec<_> = (0..16)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0..40 {
                    put(&db, &format!("w{w}-{i}"), Durability::Sync);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let after = db.stats();
    let fsyncs = after.fsyncs - before.fsyncs;
    let per_fsync = 640.0 / fsyncs as f64;
    // Without the leader's wait for the writers inside a call, batches alternate between
    // two halves of the writers: about 8 commits per fsync.
    assert!(
        per_fsync >= 12.0,
        "{per_fsync:.1} commits per fsync ({fsyncs} fsyncs for 640 commits)"
    );
    assert_eq!(db.view().count("c"), 645);
}

//! `Db::commit_async`: commits awaited by tasks, with no thread of theirs waiting (issue 14,
//! the sync-PUT path of the server). Pinned here: the committer's own thread leads batches
//! nobody else leads, so a task's thread never writes the log; tasks on one runtime thread
//! share fsyncs; tasks and writer threads mixed all finish (no message left without a
//! leader) with the state a plain model expects; outcomes are those of `Db::commit`
//! (conflicts, refusals, `Closed`); a dropped future does not withdraw its commit; and under
//! the power-cut simulator every acknowledged `Sync` commit of a task survives the cut.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amberdb::io::{install, PowerCut};
use amberdb::{verify_dir, Db, Durability, Error, ListOptions, Transaction};
use serde_json::{json, Value};
use support::open_watched as open;

fn put_txn(key: &str, value: Value, durability: Durability) -> Transaction {
    let mut t = Transaction::new();
    t.put("c", key, value);
    t.durability = Some(durability);
    t
}

fn buffered() -> Durability {
    Durability::Buffered {
        max_delay: Duration::from_millis(2),
    }
}

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .build()
            .unwrap()
    }
}

/// Runs `f` on a thread of its own and fails the test if it has not returned within a
/// minute: a message left without a leader shows up as a hang.
fn within_a_minute<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what} did not finish within a minute"))
}

#[test]
fn an_async_commit_is_written_by_the_committers_own_thread_not_the_tasks() {
    within_a_minute(
        "an_async_commit_is_written_by_the_committers_own_thread_not_the_tasks",
        || {
            let dir = tempfile::tempdir().unwrap();
            let (db, watch) = open(dir.path(), Duration::ZERO);
            watch.writers.lock().unwrap().clear();
            runtime(1).block_on(async {
                for i in 0..50 {
                    let d = if i % 2 == 0 {
                        Durability::Sync
                    } else {
                        buffered()
                    };
                    let c = db
                        .commit_async(&put_txn(&format!("k{i}"), json!(i), d))
                        .await
                        .unwrap();
                    // Visible once the future resolves, as after `Db::commit`.
                    assert!(db.view().lsn() >= c.lsn);
                }
            });
            let writers = watch.writer_names();
            assert!(writers.len() >= 25, "{} log writes", writers.len());
            assert!(
                writers.iter().all(|t| t == "amberdb-committer"),
                "a task's commit was written by a thread other than the committer's: {writers:?}"
            );
            assert_eq!(db.view().count("c"), 50);
        },
    );
}

#[test]
fn sixty_four_tasks_on_one_thread_share_each_fsync_when_the_disk_is_slow() {
    within_a_minute(
        "sixty_four_tasks_on_one_thread_share_each_fsync_when_the_disk_is_slow",
        || {
            let dir = tempfile::tempdir().unwrap();
            let (db, _watch) = open(dir.path(), Duration::from_millis(2));
            let db = Arc::new(db);
            let before = db.stats();
            runtime(1).block_on(async {
                let tasks: Vec<_> = (0..64)
                    .map(|t| {
                        let db = db.clone();
                        tokio::spawn(async move {
                            for i in 0..10 {
                                let txn = put_txn(&format!("t{t}-{i}"), json!(i), Durability::Sync);
                                db.commit_async(&txn).await.unwrap();
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            });
            let after = db.stats();
            let fsyncs = after.fsyncs - before.fsyncs;
            let per_fsync = 640.0 / fsyncs as f64;
            eprintln!("{per_fsync:.1} commits per fsync");
            // A task per fsync (a leader per message, or a batch that waits for nobody) gives 1.
            assert!(
                per_fsync >= 16.0,
                "{per_fsync:.1} commits per fsync ({fsyncs} fsyncs for 640 commits)"
            );
            assert_eq!(db.view().count("c"), 640);
        },
    );
}

#[test]
fn tasks_and_writer_threads_mixed_all_finish_with_the_models_state() {
    for round in 0..20u64 {
        let dir = tempfile::tempdir().unwrap();
        let (db, _watch) = open(dir.path(), Duration::ZERO);
        let db = Arc::new(db);
        let d = db.clone();
        let model = within_a_minute("mixed commits", move || {
            let mut model: BTreeMap<String, Value> = BTreeMap::new();
            let threads: Vec<_> = (0..4)
                .map(|w| {
                    let db = d.clone();
                    std::thread::spawn(move || {
                        let mut last = BTreeMap::new();
                        for i in 0..60u64 {
                            let key = format!("w{w}-{}", i % 7);
                            let dur = if (i + round) % 3 == 0 {
                                Durability::Sync
                            } else {
                                buffered()
                            };
                            db.commit(&put_txn(&key, json!(i), dur)).unwrap();
                            last.insert(key, json!(i));
                        }
                        last
                    })
                })
                .collect();
            let from_tasks = runtime(2).block_on(async {
                let tasks: Vec<_> = (0..32)
                    .map(|t| {
                        let db = d.clone();
                        tokio::spawn(async move {
                            let mut last = BTreeMap::new();
                            for i in 0..30u64 {
                                let key = format!("t{t}-{}", i % 5);
                                let dur = if (i + round + t) % 2 == 0 {
                                    Durability::Sync
                                } else {
                                    buffered()
                                };
                                db.commit_async(&put_txn(&key, json!(i), dur))
                                    .await
                                    .unwrap();
                                last.insert(key, json!(i));
                            }
                            last
                        })
                    })
                    .collect();
                let mut all = BTreeMap::new();
                for t in tasks {
                    all.extend(t.await.unwrap());
                }
                all
            });
            model.extend(from_tasks);
            for t in threads {
                model.extend(t.join().unwrap());
            }
            model
        });
        let stored: BTreeMap<String, Value> = db
            .view()
            .list("c", &ListOptions::default())
            .docs
            .into_iter()
            .map(|doc| (doc.key.to_string(), doc.json().unwrap()))
            .collect();
        assert_eq!(stored, model, "round {round}");
        assert_eq!(db.stats().commits, 4 * 60 + 32 * 30, "round {round}");
    }
}

#[test]
fn an_async_commit_answers_as_commit_does() {
    within_a_minute("an_async_commit_answers_as_commit_does", || {
        let dir = tempfile::tempdir().unwrap();
        let (db, _watch) = open(dir.path(), Duration::ZERO);
        let rt = runtime(1);
        rt.block_on(async {
            let first = db
                .commit_async(&put_txn("k", json!(1), Durability::Sync))
                .await
                .unwrap();
            assert_eq!(first.results.len(), 1);
            // A stale condition is a conflict, naming the version there is.
            let mut t = Transaction::new();
            t.put("c", "k", json!(2)).if_version(7);
            match db.commit_async(&t).await {
                Err(Error::Conflict(cs)) => assert_eq!(cs[0].actual, 1),
                other => panic!("expected a conflict, got {other:?}"),
            }
            // Refused before it is queued: an invalid key, and blob operations.
            let mut t = Transaction::new();
            t.put("c", "", json!(1));
            assert!(matches!(
                db.commit_async(&t).await,
                Err(Error::InvalidKey { .. })
            ));
            let mut t = Transaction::new();
            t.blob_ref("c", "b", "no-such-staging-id");
            assert!(matches!(
                db.commit_async(&t).await,
                Err(Error::InvalidArgument(_))
            ));
        });
        // A future dropped before it resolves does not withdraw its commit.
        let pending = db.commit_async(&put_txn("dropped", json!(3), buffered()));
        drop(pending);
        db.sync().unwrap();
        assert_eq!(db.get("c", "dropped").unwrap().json().unwrap(), json!(3));
        let db2 = db.clone();
        db.close().unwrap();
        let after_close =
            rt.block_on(db2.commit_async(&put_txn("late", json!(4), Durability::Sync)));
        assert!(matches!(after_close, Err(Error::Closed)), "{after_close:?}");
    });
}

/// Every acknowledged `Sync` commit of a task survives a power cut in the middle of a
/// stream of task commits, in every materialization of what the disk could hold; nothing
/// is partial and `verify` is clean.
#[test]
fn acknowledged_async_sync_commits_survive_a_power_cut() {
    within_a_minute(
        "acknowledged_async_sync_commits_survive_a_power_cut",
        || {
            for case in 0..6u64 {
                let root = tempfile::tempdir().unwrap();
                let data = root.path().join("data");
                std::fs::create_dir(&data).unwrap();
                let pc = Arc::new(PowerCut::new(root.path(), None).unwrap());
                let acked: BTreeMap<String, u64> = {
                    let _scope = install(root.path(), pc.clone());
                    let db = Arc::new(Db::open(&data).unwrap());
                    let pc2 = pc.clone();
                    let acked = runtime(2).block_on(async move {
                        let acked = Arc::new(Mutex::new(BTreeMap::new()));
                        let tasks: Vec<_> = (0..16u64)
                            .map(|t| {
                                let (db, acked, pc) = (db.clone(), acked.clone(), pc2.clone());
                                tokio::spawn(async move {
                                    for i in 0..1000u64 {
                                        if t == 0 && i == 20 + case * 7 {
                                            pc.cut_now();
                                        }
                                        let key = format!("t{t}");
                                        let sync = (i + t + case) % 3 != 0;
                                        let dur = if sync { Durability::Sync } else { buffered() };
                                        let v = json!({ "i": i, "pad": "x".repeat(100) });
                                        match db.commit_async(&put_txn(&key, v, dur)).await {
                                            Ok(_) if sync => {
                                                acked.lock().unwrap().insert(key, i);
                                            }
                                            Ok(_) => {}
                                            Err(_) => break,
                                        }
                                    }
                                })
                            })
                            .collect();
                        for t in tasks {
                            t.await.unwrap();
                        }
                        let a = acked.lock().unwrap().clone();
                        a
                    });
                    acked
                };
                assert!(pc.model_errors().is_empty(), "{:?}", pc.model_errors());
                assert!(!acked.is_empty(), "case {case}: nothing was acknowledged");
                for m in 0..3u64 {
                    let out = tempfile::tempdir().unwrap();
                    let report = pc.materialize(out.path(), case * 5 + m).unwrap();
                    let dir = out.path().join("data");
                    let what = format!("case {case}, materialization {m}: {report:?}");
                    let db = Db::open(&dir).unwrap_or_else(|e| panic!("{what}: open failed: {e}"));
                    for (key, i) in &acked {
                        let got = db
                            .get("c", key)
                            .and_then(|d| d.json().ok())
                            .and_then(|v| v["i"].as_u64());
                        assert!(
                            got.is_some_and(|g| g >= *i),
                            "{what}: {key} acknowledged at {i}, found {got:?}"
                        );
                    }
                    db.close().unwrap();
                    let report = verify_dir(&dir).unwrap();
                    assert!(report.is_clean(), "{what}: {report:?}");
                }
            }
        },
    );
}

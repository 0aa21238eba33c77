//! The change feed (`Db::subscribe`): a model-based property test of exact delivery (every
//! durable commit after the cursor, in order, no gap, no duplicate, across the replay-to-live
//! switch, reopens and checkpoints), durability (a buffered commit is delivered only after
//! its sync), and `HistoryLost` whenever the log no longer reaches back to the cursor.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

use amberdb::clock::ManualClock;
use amberdb::feed::{Change, CommitReason, Filter, OpKind, Subscription};
use amberdb::{Db, Durability, Error, Options, Transaction};
use proptest::prelude::*;
use serde_json::json;

const COLLECTIONS: [&str; 3] = ["players", "party", "chat.log"];
const KEYS: [&str; 5] = ["a1", "a2", "b1", "b2", "c"];

/// What the model says a commit touched: (collection, key, deleted, version).
type Touched = Vec<(String, String, bool, u64)>;

fn opts() -> Options {
    opts_at(&ManualClock::new(1_800_000_000_000_000))
}

/// Options with commit times from `clock`.
fn opts_at(clock: &ManualClock) -> Options {
    Options {
        clock: std::sync::Arc::new(clock.clone()),
        // Many small segments, kept (the window is a day), so replays cross segment
        // boundaries and checkpoints do not remove history.
        segment_size: 512,
        history_retention: Duration::from_secs(86_400),
        checkpoint_interval: None,
        ..Options::default()
    }
}

#[derive(Debug, Clone)]
enum Step {
    /// A transaction: (collection index, key index, delete?) per op, distinct documents,
    /// after the clock moved this many milliseconds.
    Commit(Vec<(usize, usize, bool)>, u64),
    /// Subscribe from a point picked by this fraction of the current LSN, with a filter.
    Subscribe(f64, usize),
    /// Drain every open subscription and compare with the model.
    Drain,
    Checkpoint,
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (prop::collection::btree_map((0..3usize, 0..5usize), any::<bool>(), 1..4), 0..5000u64)
            .prop_map(|(m, ms)| Step::Commit(m.into_iter().map(|((c, k), d)| (c, k, d)).collect(), ms)),
        2 => (0.0..=1.0f64, 0..4usize).prop_map(|(f, x)| Step::Subscribe(f, x)),
        2 => Just(Step::Drain),
        1 => Just(Step::Checkpoint),
        1 => Just(Step::Reopen),
    ]
}

fn filter(which: usize) -> Filter {
    match which {
        0 => Filter::all(),
        1 => Filter::all().collection("players"),
        2 => Filter::all().collection("p*").prefix("a"),
        _ => Filter::all().collection("chat.???").with_values(true),
    }
}

/// An open subscription and what it has received so far.
struct Sub {
    from: u64,
    which: usize,
    sub: Subscription,
    got: Vec<Change>,
}

/// The model's commits after `from` that match `filter`, as the feed must deliver them.
fn expected(model: &[(u64, Touched)], from: u64, f: &Filter) -> Vec<(u64, Touched)> {
    model
        .iter()
        .filter(|(lsn, _)| *lsn > from)
        .filter_map(|(lsn, docs)| {
            let docs: Touched = docs
                .iter()
                .filter(|(c, k, _, _)| f.matches(c, k))
                .cloned()
                .collect();
            (!docs.is_empty()).then_some((*lsn, docs))
        })
        .collect()
}

fn seen(got: &[Change]) -> Vec<(u64, Touched)> {
    got.iter()
        .map(|c| {
            assert_eq!(c.reason, CommitReason::Write);
            let docs = c
                .docs
                .iter()
                .map(|d| {
                    let kind = if d.deleted {
                        OpKind::Delete
                    } else {
                        OpKind::Put
                    };
                    assert_eq!(d.op, kind, "the op the transaction used");
                    (
                        d.collection.to_string(),
                        d.key.to_string(),
                        d.deleted,
                        d.version,
                    )
                })
                .collect();
            (c.lsn, docs)
        })
        .collect()
}

/// Takes everything available from `s` and checks it against the model: exactly the
/// matching commits after its cursor through the newest (all durable: `Sync` commits).
fn drain_and_check(s: &mut Sub, model: &[(u64, Touched)], values: &[(u64, String, String)]) {
    while let Some(c) = s.sub.try_next().unwrap() {
        s.got.push(c);
    }
    let f = filter(s.which);
    assert_eq!(
        seen(&s.got),
        expected(model, s.from, &f),
        "subscriber from LSN {} with filter {f:?}",
        s.from
    );
    let newest = model.last().map_or(0, |(l, _)| *l);
    assert!(
        s.sub.high_water_lsn() >= newest,
        "high water covers skipped commits"
    );
    for c in &s.got {
        for d in &c.docs {
            if f.values && !d.deleted {
                let want = values
                    .iter()
                    .find(|(l, coll, k)| *l == c.lsn && **coll == *d.collection && **k == *d.key)
                    .map(|(l, ..)| format!("{{\"at\":{l}}}"));
                let got = d
                    .value
                    .as_ref()
                    .map(|v| String::from_utf8(v.to_vec()).unwrap());
                assert_eq!(
                    got, want,
                    "value of {}/{} at {}",
                    d.collection, d.key, c.lsn
                );
            } else {
                assert!(d.value.is_none(), "no values unless asked");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("AMBERDB_FEED_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24),
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_subscriber_from_a_random_lsn_gets_exactly_the_commits_after_it_across_replay_live_reopen_and_checkpoints(
        steps in prop::collection::vec(step(), 1..60)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(1_800_000_000_000_000);
        let mut db = Db::open_with(dir.path(), opts_at(&clock)).unwrap();
        let mut model: Vec<(u64, Touched)> = vec![];
        let mut values: Vec<(u64, String, String)> = vec![];
        let mut subs: Vec<Sub> = vec![];
        let mut commit_ts = std::collections::BTreeMap::new();
        for step in steps {
            match step {
                Step::Commit(ops, ms) => {
                    clock.advance(Duration::from_millis(ms));
                    let lsn = db.view().lsn() + 1;
                    let mut t = Transaction::new();
                    for (c, k, del) in &ops {
                        if *del {
                            t.delete(COLLECTIONS[*c], KEYS[*k]);
                        } else {
                            t.put(COLLECTIONS[*c], KEYS[*k], json!({ "at": lsn }));
                        }
                    }
                    let done = db.commit(&t).unwrap();
                    let touched: Touched = done
                        .results
                        .iter()
                        .filter(|r| r.written)
                        .map(|r| (r.collection.clone(), r.key.clone(), r.version == 0, r.version))
                        .collect();
                    if !touched.is_empty() {
                        prop_assert_eq!(done.lsn, lsn);
                        for (c, k, del, _) in &touched {
                            if !del {
                                values.push((lsn, c.clone(), k.clone()));
                            }
                        }
                        commit_ts.insert(lsn, done.commit_ts);
                        model.push((lsn, touched));
                    }
                }
                Step::Subscribe(frac, which) => {
                    let newest = db.view().lsn();
                    let from = (newest as f64 * frac).floor() as u64;
                    let sub = db.subscribe(from, filter(which)).unwrap();
                    subs.push(Sub { from, which, sub, got: vec![] });
                }
                Step::Drain => {
                    for s in &mut subs {
                        drain_and_check(s, &model, &values);
                    }
                }
                Step::Checkpoint => {
                    db.checkpoint().unwrap();
                }
                Step::Reopen => {
                    // Whatever was durable is still delivered to subscribers of the closed
                    // handle; after that they report the close.
                    for s in &mut subs {
                        drain_and_check(s, &model, &values);
                    }
                    db.close().unwrap();
                    for s in &mut subs {
                        prop_assert!(matches!(s.sub.next_timeout(Duration::from_secs(5)), Err(Error::Closed)));
                    }
                    // Resume each where it stopped, on the reopened database: no gap, no
                    // duplicate across the reopen.
                    db = Db::open_with(dir.path(), opts_at(&clock)).unwrap();
                    for s in &mut subs {
                        let cursor = s.sub.high_water_lsn();
                        s.sub = db.subscribe(cursor, filter(s.which)).unwrap();
                    }
                }
            }
        }
        for s in &mut subs {
            drain_and_check(s, &model, &values);
            // Commit times are the injected clock's, as the commit returned them.
            for c in &s.got {
                prop_assert_eq!(Some(&c.commit_ts), commit_ts.get(&c.lsn));
            }
        }
        db.close().unwrap();
    }
}

#[test]
fn a_blocking_subscriber_follows_live_commits_from_another_thread_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(dir.path(), opts()).unwrap();
    for i in 0..50 {
        db.put("players", &format!("p{i}"), json!({ "i": i }))
            .unwrap();
    }
    // Starts in the replayed history (LSN 10) and has to cross into live commits made
    // while it reads.
    let mut sub = db.subscribe(10, Filter::all()).unwrap();
    let reader = std::thread::spawn(move || {
        let mut lsns = vec![];
        while lsns.len() < 190 {
            let c = sub.next_timeout(Duration::from_secs(30)).unwrap();
            lsns.push(c.expect("every commit arrives").lsn);
        }
        lsns
    });
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0..40 {
                    db.put("party", &format!("w{w}-{i}"), json!({ "i": i }))
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let lsns = reader.join().unwrap();
    assert_eq!(lsns, (11..=200).collect::<Vec<u64>>());
    db.close().unwrap();
}

#[test]
fn an_unsynced_buffered_commit_is_not_delivered_before_its_sync() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(dir.path(), opts()).unwrap();
    db.put("players", "sync", json!(1)).unwrap();
    let mut sub = db.subscribe(0, Filter::all()).unwrap();
    assert_eq!(sub.try_next().unwrap().map(|c| c.lsn), Some(1));
    let mut t = Transaction::new();
    t.put("players", "buffered", json!(2));
    t.durability = Some(Durability::Buffered {
        max_delay: Duration::from_secs(3600),
    });
    let done = db.commit(&t).unwrap();
    assert_eq!(done.lsn, 2);
    // Acknowledged and visible to reads, but not on stable storage: not in the feed.
    assert!(db.get("players", "buffered").is_some());
    assert_eq!(sub.try_next().unwrap(), None);
    assert_eq!(sub.next_timeout(Duration::from_millis(100)).unwrap(), None);
    assert_eq!(sub.high_water_lsn(), 1);
    assert_eq!(db.durable_lsn(), 1);
    // Its sync makes it durable: now it is delivered.
    db.sync().unwrap();
    let c = sub.next_timeout(Duration::from_secs(5)).unwrap().unwrap();
    assert_eq!((c.lsn, &*c.docs[0].key), (2, "buffered"));
    db.close().unwrap();
}

#[test]
fn a_buffered_commit_is_delivered_once_its_deferred_sync_happens() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(
        dir.path(),
        Options {
            durability: Durability::Buffered {
                max_delay: Duration::from_millis(50),
            },
            ..opts()
        },
    )
    .unwrap();
    let mut sub = db.subscribe(0, Filter::all()).unwrap();
    db.put("players", "x", json!(1)).unwrap();
    // Nobody calls sync: the committer's deadline does, and the feed wakes up for it.
    let c = sub.next_timeout(Duration::from_secs(10)).unwrap().unwrap();
    assert_eq!(c.lsn, 1);
    assert!(db.durable_lsn() >= 1);
    db.close().unwrap();
}

fn many_segments(db: &Db, n: usize) {
    let pad = "x".repeat(300);
    for i in 0..n {
        db.put(
            "players",
            &format!("k{}", i % 7),
            json!({ "pad": pad, "i": i }),
        )
        .unwrap();
    }
}

#[test]
fn a_cursor_older_than_the_retained_log_is_history_lost_with_the_lsn_to_resume_from() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        history_retention: Duration::ZERO,
        ..opts()
    };
    let db = Db::open_with(dir.path(), o).unwrap();
    many_segments(&db, 60);
    // Before the checkpoint every commit is retained.
    assert!(db.subscribe(0, Filter::all()).is_ok());
    let removed = db.checkpoint().unwrap().segments_removed;
    assert!(removed > 0, "the checkpoint removed history");
    let Err(Error::HistoryLost { retained_from_lsn }) = db.subscribe(0, Filter::all()) else {
        panic!("expected HistoryLost");
    };
    assert!(retained_from_lsn > 1);
    let Err(Error::HistoryLost { .. }) = db.subscribe(retained_from_lsn - 2, Filter::all()) else {
        panic!("one commit short is lost too");
    };
    // Resuming right before the oldest retained commit works and delivers all of it.
    let mut sub = db.subscribe(retained_from_lsn - 1, Filter::all()).unwrap();
    let mut lsns = vec![];
    while let Some(c) = sub.try_next().unwrap() {
        lsns.push(c.lsn);
    }
    assert_eq!(lsns, (retained_from_lsn..=60).collect::<Vec<_>>());
    // A cursor ahead of the log is a mistake, not lost history.
    assert!(matches!(
        db.subscribe(61, Filter::all()),
        Err(Error::InvalidArgument(_))
    ));
    db.close().unwrap();
}

#[test]
fn a_segment_removed_under_a_slow_reader_is_history_lost_never_a_silent_gap() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        history_retention: Duration::ZERO,
        checkpoint_on_close: false,
        ..opts()
    };
    let db = Db::open_with(dir.path(), o.clone()).unwrap();
    db.put("players", "first", json!(1)).unwrap();
    many_segments(&db, 60);
    // Reopened, so the commits it will read are not in the ring of recent commits (a reader
    // the ring still covers never needs the log, see below): it must read the log.
    db.close().unwrap();
    let db = Db::open_with(dir.path(), o).unwrap();
    // Subscribed, but not reading yet.
    let mut sub = db.subscribe(0, Filter::all()).unwrap();
    many_segments(&db, 5);
    let removed = db.checkpoint().unwrap().segments_removed;
    assert!(removed > 1, "{removed} segments removed");
    let mut lsns = vec![];
    let err = loop {
        match sub.try_next() {
            Ok(Some(c)) => lsns.push(c.lsn),
            Ok(None) => panic!("reached the end without noticing the lost segments: {lsns:?}"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::HistoryLost { .. }), "{err}");
    // What it delivered before noticing is a gap-free prefix (the segment it held open).
    assert_eq!(lsns, (1..=lsns.len() as u64).collect::<Vec<_>>());
    db.close().unwrap();
}

#[test]
fn a_waiting_subscriber_is_told_when_the_database_closes() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(dir.path(), opts()).unwrap();
    let mut sub = db.subscribe(0, Filter::all()).unwrap();
    let waiter = std::thread::spawn(move || sub.next().map(|c| c.lsn));
    std::thread::sleep(Duration::from_millis(50));
    db.close().unwrap();
    assert!(matches!(waiter.join().unwrap(), Err(Error::Closed)));
}

#[test]
fn commits_the_filter_skips_still_advance_the_high_water_lsn() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(dir.path(), opts()).unwrap();
    let mut sub = db.subscribe(0, Filter::all().collection("chat*")).unwrap();
    for i in 0..5 {
        db.put("players", &format!("p{i}"), json!(i)).unwrap();
    }
    assert_eq!(sub.try_next().unwrap(), None);
    assert_eq!(sub.high_water_lsn(), 5);
    db.put("chat", "m", json!("hi")).unwrap();
    let c = sub.try_next().unwrap().unwrap();
    assert_eq!((c.lsn, sub.high_water_lsn()), (6, 6));
    db.close().unwrap();
}

#[test]
fn each_document_carries_the_op_kind_version_schema_version_and_commit_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_900_000_000_000_000);
    let db = Db::open_with(dir.path(), opts_at(&clock)).unwrap();
    let mut sub = db.subscribe(0, Filter::all().with_values(true)).unwrap();
    let mut t = Transaction::new();
    t.create("players", "a", json!({"hp": 1}));
    db.commit(&t).unwrap();
    clock.advance(Duration::from_secs(60));
    let mut t = Transaction::new();
    t.replace("players", "a", json!({"hp": 2}));
    t.put("players", "b", json!(7));
    db.commit(&t).unwrap();
    let mut t = Transaction::new();
    t.patch("players", "a", amberdb::Patch::Merge(json!({"mp": 3})));
    db.commit(&t).unwrap();
    db.delete("players", "b").unwrap();
    let got: Vec<Change> = (0..4).map(|_| sub.try_next().unwrap().unwrap()).collect();
    let ops: Vec<Vec<(OpKind, u64)>> = got
        .iter()
        .map(|c| c.docs.iter().map(|d| (d.op, d.version)).collect())
        .collect();
    assert_eq!(
        ops,
        [
            vec![(OpKind::Create, 1)],
            vec![(OpKind::Replace, 2), (OpKind::Put, 1)],
            vec![(OpKind::Patch, 3)],
            vec![(OpKind::Delete, 0)],
        ]
    );
    assert_eq!(
        got[1].commit_ts - got[0].commit_ts,
        60_000_000,
        "the injected clock"
    );
    assert_eq!(
        got[2].docs[0].value.as_deref(),
        Some(&br#"{"hp":2,"mp":3}"#[..])
    );
    assert_eq!(got[2].docs[0].schema_version, 1);
    assert_eq!(got[2].docs[0].expires_at, None);
    assert!(got[3].docs[0].deleted && got[3].docs[0].value.is_none());
    db.close().unwrap();
}

/// Options for many commits: segments of a realistic size.
fn bulk_opts() -> Options {
    Options {
        segment_size: 4 << 20,
        ..opts()
    }
}

/// Buffered commits (one sync at the end): many commits quickly.
fn bulk(db: &Db, from: usize, n: usize) {
    for i in from..from + n {
        let mut t = Transaction::new();
        if i % 7 == 3 {
            t.delete("players", &format!("k{}", i % 50));
        } else {
            t.put("players", &format!("k{}", i % 50), json!({ "i": i }));
        }
        t.put("party", &format!("p{}", i % 3), json!([i, "x"]));
        t.durability = Some(Durability::Buffered {
            max_delay: Duration::from_secs(3600),
        });
        db.commit(&t).unwrap();
    }
    db.sync().unwrap();
}

fn drain(sub: &mut Subscription) -> Vec<Change> {
    let mut out = vec![];
    while let Some(c) = sub.try_next().unwrap() {
        out.push(c);
    }
    out
}

#[test]
fn caught_up_subscribers_follow_live_commits_from_memory_without_reading_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(dir.path(), bulk_opts()).unwrap();
    bulk(&db, 0, 10);
    let mut subs: Vec<Subscription> = (0..40)
        .map(|_| db.subscribe(db.durable_lsn(), Filter::all()).unwrap())
        .collect();
    let mut idle: Vec<Subscription> = (0..40)
        .map(|_| {
            db.subscribe(db.durable_lsn(), Filter::all().collection("nobody"))
                .unwrap()
        })
        .collect();
    let before = db.feed_read_counters();
    for round in 0..20 {
        bulk(&db, 10 + round * 25, 25);
        for s in &mut subs {
            assert_eq!(drain(s).len(), 25);
        }
        for s in &mut idle {
            assert!(drain(s).is_empty());
            assert_eq!(s.high_water_lsn(), db.durable_lsn());
        }
    }
    let after = db.feed_read_counters();
    assert_eq!(after.1, before.1, "no subscriber read the log");
    assert_eq!(
        after.0 - before.0,
        80 * 500,
        "each took each commit from memory"
    );
    db.close().unwrap();
}

#[test]
fn a_subscriber_that_falls_behind_the_ring_reads_the_log_then_rejoins_it_without_gap_or_duplicate()
{
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(dir.path(), bulk_opts()).unwrap();
    bulk(&db, 0, 10);
    let f = Filter::all().with_values(true);
    let mut sub = db.subscribe(0, f.clone()).unwrap();
    let mut got = vec![sub.try_next().unwrap().unwrap()];
    // Far more commits than the ring holds, while this subscriber reads nothing.
    bulk(&db, 10, 9000);
    let (_, log_before) = db.feed_read_counters();
    got.extend(drain(&mut sub));
    let (_, log_after) = db.feed_read_counters();
    assert!(log_after > log_before, "it had to read the log");
    let lsns: Vec<u64> = got.iter().map(|c| c.lsn).collect();
    assert_eq!(lsns, (1..=9010).collect::<Vec<_>>(), "no gap, no duplicate");
    // Caught up: live commits come from memory again.
    bulk(&db, 9010, 20);
    got.extend(drain(&mut sub));
    assert_eq!(db.feed_read_counters().1, log_after, "back on the ring");
    assert_eq!(got.len(), 9030);
    db.close().unwrap();
    // What it got from memory and from the log is exactly what the log holds: a fresh
    // subscription after a reopen (empty ring) reads all of it from the log.
    let db = Db::open_with(dir.path(), bulk_opts()).unwrap();
    let mut from_log = db.subscribe(0, f).unwrap();
    let all = drain(&mut from_log);
    assert_eq!(db.feed_read_counters(), (0, 9030));
    assert_eq!(all, got);
    db.close().unwrap();
}

#[test]
fn a_slow_reader_the_ring_still_covers_gets_every_commit_after_its_segments_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        history_retention: Duration::ZERO,
        ..opts()
    };
    let db = Db::open_with(dir.path(), o).unwrap();
    db.put("players", "first", json!(1)).unwrap();
    let mut sub = db.subscribe(0, Filter::all()).unwrap();
    many_segments(&db, 60);
    assert!(db.checkpoint().unwrap().segments_removed > 1);
    let lsns: Vec<u64> = drain(&mut sub).iter().map(|c| c.lsn).collect();
    assert_eq!(lsns, (1..=61).collect::<Vec<_>>());
    db.close().unwrap();
}

#[test]
fn touched_names_the_collections_and_streams_recent_commits_wrote_and_none_once_they_left_memory() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(dir.path(), opts()).unwrap();
    db.put("players", "a", json!(1)).unwrap();
    db.put("party", "p", json!(1)).unwrap();
    db.put("players", "b", json!(1)).unwrap();
    let names = |v: Option<amberdb::feed::Touched>| {
        v.map(|v| {
            let mut v: Vec<String> = v.collections.iter().map(|s| s.to_string()).collect();
            v.sort();
            v
        })
    };
    assert_eq!(
        names(db.touched(0, 3)),
        Some(vec!["party".into(), "players".into()])
    );
    assert_eq!(names(db.touched(2, 3)), Some(vec!["players".into()]));
    assert_eq!(names(db.touched(3, 3)), Some(vec![]));
    db.close().unwrap();
    let db = Db::open_with(dir.path(), opts()).unwrap();
    assert_eq!(db.touched(0, 3), None, "not in memory after a reopen");
    db.put("chat.log", "x", json!(1)).unwrap();
    assert_eq!(names(db.touched(3, 4)), Some(vec!["chat.log".into()]));
    assert_eq!(db.touched(2, 4), None);
    db.append("chat.room1", &[json!("hi")], None).unwrap();
    let t = db.touched(4, 5).unwrap();
    assert_eq!(t.streams, vec![std::sync::Arc::from("chat.room1")]);
    assert!(t.collections.is_empty());
    db.close().unwrap();
}

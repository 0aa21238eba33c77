//! History and as-of reads against a model: random transactions at known commit times (a
//! `ManualClock`), with reopens and checkpoints in between; after each step, for random keys
//! and random points, `history` equals the model's version list and `get_at` / `list_at`
//! equal the model at that point. Plus: the window (`HistoryLost` before it, by time and by
//! bytes), point reads that decode O(1) frames in a log of many segments, and `.idx` files
//! rebuilt when missing or garbage.
//!
//! `HISTORY_PROPTEST_CASES` raises the case count (default 12).

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use amberdb::clock::ManualClock;
use amberdb::history::{At, HistoryOptions};
use amberdb::{Db, Error, ListOptions, Options, Transaction};
use proptest::prelude::*;
use serde_json::{json, Value};

const COLLS: [&str; 2] = ["players", "inv"];
const KEYS: [&str; 4] = ["a", "b", "c", "d"];
const START: u64 = 1_800_000_000_000_000;

#[derive(Debug, Clone)]
enum Step {
    /// Ops (collection, key, value or delete), then advance the clock by ms.
    Txn(Vec<(usize, usize, Option<i64>)>, u64),
    Reopen,
    Checkpoint,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (
            prop::collection::vec((0..2usize, 0..4usize, prop::option::weighted(0.75, 0..1000i64)), 1..4),
            0..5000u64
        )
            .prop_map(|(ops, ms)| Step::Txn(ops, ms)),
        1 => Just(Step::Reopen),
        1 => Just(Step::Checkpoint),
    ]
}

/// One version in the model: lsn, commit_ts, version, value (None = delete).
#[derive(Debug, Clone, PartialEq)]
struct MVer {
    lsn: u64,
    ts: u64,
    version: u64,
    value: Option<Value>,
    op: &'static str,
}

#[derive(Default)]
struct Model {
    /// Per document, oldest first.
    docs: BTreeMap<(usize, usize), Vec<MVer>>,
    /// Commit times by LSN.
    commits: Vec<(u64, u64)>,
}

impl Model {
    fn at(&self, d: (usize, usize), lsn: u64) -> Option<&MVer> {
        self.docs
            .get(&d)?
            .iter()
            .rev()
            .find(|v| v.lsn <= lsn)
            .filter(|v| v.value.is_some())
    }
}

fn opts(clock: &ManualClock) -> Options {
    Options {
        segment_size: 2048,
        checkpoint_on_close: false,
        checkpoint_interval: None,
        history_retention: Duration::from_secs(1000 * 24 * 3600),
        clock: Arc::new(clock.clone()),
        ..Options::default()
    }
}

fn run(steps: Vec<Step>, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let mut db = Db::open_with(dir.path(), opts(&clock)).unwrap();
    let mut model = Model::default();
    let mut rng = seed | 1;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n.max(1)
    };
    for s in steps {
        match s {
            Step::Txn(ops, ms) => {
                let mut txn = Transaction::new();
                let mut seen = vec![];
                let mut planned = vec![];
                for (c, k, v) in ops {
                    if seen.contains(&(c, k)) {
                        continue;
                    }
                    let exists = model.at((c, k), u64::MAX).is_some();
                    match v {
                        Some(n) if !exists && n % 2 == 0 => {
                            txn.create(COLLS[c], KEYS[k], json!({ "n": n }));
                            planned.push(((c, k), Some(json!({ "n": n })), "create"));
                        }
                        Some(n) => {
                            txn.put(COLLS[c], KEYS[k], json!({ "n": n }));
                            planned.push(((c, k), Some(json!({ "n": n })), "put"));
                        }
                        None if exists => {
                            txn.delete(COLLS[c], KEYS[k]);
                            planned.push(((c, k), None, "delete"));
                        }
                        None => continue,
                    }
                    seen.push((c, k));
                }
                if planned.is_empty() {
                    continue;
                }
                let done = db.commit(&txn).unwrap();
                model.commits.push((done.lsn, done.commit_ts));
                for (d, value, op) in planned {
                    let vers = model.docs.entry(d).or_default();
                    let last = vers.last().map_or(0, |v| v.version);
                    let version = if value.is_some() { last + 1 } else { last };
                    vers.push(MVer {
                        lsn: done.lsn,
                        ts: done.commit_ts,
                        version,
                        value,
                        op,
                    });
                }
                clock.advance(Duration::from_millis(ms));
            }
            Step::Reopen => {
                db.close().unwrap();
                db = Db::open_with(dir.path(), opts(&clock)).unwrap();
            }
            Step::Checkpoint => {
                db.checkpoint().unwrap();
            }
        }
        let Some(&(last_lsn, _)) = model.commits.last() else {
            continue;
        };
        assert_eq!(db.history_window().unwrap().retained_from_lsn, 1);
        for _ in 0..3 {
            let d = (next(2) as usize, next(4) as usize);
            // History: newest first, every version and delete.
            let page = db
                .history(COLLS[d.0], KEYS[d.1], HistoryOptions::default())
                .unwrap();
            let want: Vec<MVer> = model.docs.get(&d).cloned().unwrap_or_default();
            let got: Vec<MVer> = page
                .versions
                .iter()
                .map(|v| MVer {
                    lsn: v.lsn,
                    ts: v.commit_ts,
                    version: v.version,
                    value: v.value.as_ref().map(|b| serde_json::from_slice(b).unwrap()),
                    op: v.op,
                })
                .collect();
            let mut want_rev = want.clone();
            want_rev.reverse();
            assert_eq!(got, want_rev, "history of {d:?}");
            assert_eq!(page.next, None);
            // Paged by before_lsn, 2 at a time, the same list.
            let mut paged = vec![];
            let mut before = None;
            loop {
                let p = db
                    .history(
                        COLLS[d.0],
                        KEYS[d.1],
                        HistoryOptions {
                            before_lsn: before,
                            limit: 2,
                            values: false,
                        },
                    )
                    .unwrap();
                assert!(p.versions.iter().all(|v| v.value.is_none()));
                paged.extend(p.versions.iter().map(|v| v.lsn));
                match p.next {
                    Some(n) => before = Some(n),
                    None => break,
                }
            }
            assert_eq!(
                paged,
                want_rev.iter().map(|v| v.lsn).collect::<Vec<_>>(),
                "paged history of {d:?}"
            );
            // get_at a random point, by LSN and by time.
            let p = 1 + next(last_lsn);
            let got = db.get_at(COLLS[d.0], KEYS[d.1], At::Lsn(p)).unwrap();
            let want = model.at(d, p);
            assert_eq!(
                got.as_ref()
                    .map(|g| (g.json().unwrap(), g.meta.version, g.meta.lsn)),
                want.map(|w| (w.value.clone().unwrap(), w.version, w.lsn)),
                "{d:?} at LSN {p}"
            );
            let (cl, cts) = model.commits[next(model.commits.len() as u64) as usize];
            let by_time = db.get_at(COLLS[d.0], KEYS[d.1], At::Time(cts)).unwrap();
            let want = model.at(d, cl);
            assert_eq!(
                by_time.map(|g| g.meta.lsn),
                want.map(|w| w.lsn),
                "{d:?} at time of LSN {cl}"
            );
            assert_eq!(db.resolve_at(At::Time(cts)).unwrap(), cl);
            assert_eq!(db.resolve_at(At::Time(cts + 1)).unwrap(), cl);
            // list_at the same point.
            let (at, page) = db
                .list_at(COLLS[d.0], &ListOptions::default(), At::Lsn(p))
                .unwrap();
            assert_eq!(at, p);
            let got: Vec<(String, Value)> = page
                .docs
                .iter()
                .map(|d| (d.key.to_string(), d.json().unwrap()))
                .collect();
            let want: Vec<(String, Value)> = (0..4)
                .filter_map(|k| {
                    model
                        .at((d.0, k), p)
                        .map(|v| (KEYS[k].to_string(), v.value.clone().unwrap()))
                })
                .collect();
            assert_eq!(got, want, "list of {} at {p}", COLLS[d.0]);
        }
    }
    db.close().unwrap();
}

fn cases() -> u32 {
    std::env::var("HISTORY_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn history_get_at_and_list_at_equal_the_model_across_reopens_and_checkpoints(
        steps in prop::collection::vec(step(), 1..60),
        seed in any::<u64>(),
    ) {
        run(steps, seed);
    }
}

fn pad_put(db: &Db, key: &str, n: u64) -> amberdb::Committed {
    db.put("c", key, json!({ "n": n, "pad": "x".repeat(200) }))
        .unwrap()
}

/// Outside the window (after the retention passed and a checkpoint let the old segments go)
/// every read answers HistoryLost naming where the window starts; inside it, reads work.
#[test]
fn reads_before_the_time_window_answer_history_lost_with_the_window_start() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let o = Options {
        segment_size: 4096,
        checkpoint_interval: None,
        history_retention: Duration::from_secs(3600),
        clock: Arc::new(clock.clone()),
        ..Options::default()
    };
    let db = Db::open_with(dir.path(), o).unwrap();
    for i in 0..100 {
        pad_put(&db, "old", i);
    }
    // Within the window nothing goes, even though the checkpoint does not need the log.
    db.checkpoint().unwrap();
    assert_eq!(db.history_window().unwrap().retained_from_lsn, 1);
    assert_eq!(
        db.get_at("c", "old", At::Lsn(1))
            .unwrap()
            .unwrap()
            .json()
            .unwrap()["n"],
        0
    );
    clock.advance(Duration::from_secs(2 * 3600));
    let keep = pad_put(&db, "new", 0);
    pad_put(&db, "new", 1);
    db.checkpoint().unwrap();
    let w = db.history_window().unwrap();
    assert_eq!(w.retained_from_lsn, keep.lsn, "{w:?}");
    assert_eq!(w.retained_from_time, Some(keep.commit_ts));
    assert!(w.retained_bytes > 0);
    assert_eq!(db.stats().history, w);
    match db.get_at("c", "old", At::Lsn(50)) {
        Err(Error::HistoryLost { retained_from_lsn }) => assert_eq!(retained_from_lsn, keep.lsn),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        db.get_at("c", "old", At::Time(START)),
        Err(Error::HistoryLost { .. })
    ));
    // "old" was last written before the window and not since: still its current value.
    assert_eq!(
        db.get_at("c", "old", At::Lsn(keep.lsn))
            .unwrap()
            .unwrap()
            .json()
            .unwrap()["n"],
        99
    );
    assert_eq!(
        db.get_at("c", "new", At::Lsn(keep.lsn))
            .unwrap()
            .unwrap()
            .json()
            .unwrap()["n"],
        0
    );
    // History lists only the versions inside the window.
    let h = db.history("c", "old", HistoryOptions::default()).unwrap();
    assert!(h.versions.is_empty(), "{h:?}");
    assert_eq!(h.retained_from_lsn, keep.lsn);
    assert_eq!(
        db.history("c", "new", HistoryOptions::default())
            .unwrap()
            .versions
            .len(),
        2
    );
    db.close().unwrap();
}

/// `history_max_bytes` bounds the window even inside the retention time.
#[test]
fn the_byte_bound_shrinks_the_window_inside_the_retention_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let o = Options {
        segment_size: 4096,
        checkpoint_interval: None,
        history_max_bytes: 16 * 1024,
        clock: Arc::new(clock.clone()),
        ..Options::default()
    };
    let db = Db::open_with(dir.path(), o).unwrap();
    for i in 0..400 {
        pad_put(&db, "k", i);
    }
    db.checkpoint().unwrap();
    let w = db.history_window().unwrap();
    assert!(w.retained_bytes <= 16 * 1024 + 4096, "{w:?}");
    assert!(w.retained_from_lsn > 1, "{w:?}");
    assert!(matches!(
        db.get_at("c", "k", At::Lsn(1)),
        Err(Error::HistoryLost { .. })
    ));
    let got = db
        .get_at("c", "k", At::Lsn(w.retained_from_lsn))
        .unwrap()
        .unwrap();
    assert_eq!(got.meta.lsn, w.retained_from_lsn);
    db.close().unwrap();
}

/// A point read in a log of many segments decodes one frame per version read, not the log.
#[test]
fn reading_an_old_version_in_a_log_of_many_segments_decodes_o1_frames() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let o = Options {
        segment_size: 64 * 1024,
        checkpoint_interval: None,
        clock: Arc::new(clock.clone()),
        ..Options::default()
    };
    let db = Db::open_with(dir.path(), o).unwrap();
    let mut lsns = vec![];
    for i in 0..3000u64 {
        lsns.push(pad_put(&db, &format!("k{}", i % 100), i).lsn);
        clock.advance(Duration::from_millis(1));
    }
    assert!(
        db.stats().log_segments >= 8,
        "{:?}",
        db.stats().log_segments
    );
    // k7 at the point after its 3rd write: walking back from its 30th version to its 3rd
    // reads 28 commits (27 walked + the version), plus one for the window start's commit
    // time, whatever the log's size.
    let p = lsns[207];
    let (before, _) = db.log_read_counters();
    let doc = db.get_at("c", "k7", At::Lsn(p)).unwrap().unwrap();
    assert_eq!(doc.json().unwrap()["n"], 207);
    let (after, _) = db.log_read_counters();
    assert_eq!(
        after - before,
        29,
        "frames decoded for 28 versions and the window start"
    );
    // By time: binary search, then the same walk.
    let (before, _) = db.log_read_counters();
    let doc = db
        .get_at(
            "c",
            "k50",
            At::Time(
                db.history(
                    "c",
                    "k50",
                    HistoryOptions {
                        before_lsn: None,
                        limit: 1,
                        values: false,
                    },
                )
                .unwrap()
                .versions[0]
                    .commit_ts,
            ),
        )
        .unwrap()
        .unwrap();
    assert_eq!(doc.json().unwrap()["n"], 2950);
    let (after, _) = db.log_read_counters();
    assert!(after - before <= 4, "{}", after - before);
    db.close().unwrap();
}

/// The `.idx` files are derived: missing or garbage ones are rebuilt (once) and reads are
/// still right.
#[test]
fn missing_or_garbage_segment_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let o = Options {
        segment_size: 4096,
        checkpoint_interval: None,
        checkpoint_on_close: false,
        clock: Arc::new(clock.clone()),
        ..Options::default()
    };
    let db = Db::open_with(dir.path(), o.clone()).unwrap();
    for i in 0..300 {
        pad_put(&db, "k", i);
    }
    db.close().unwrap();
    let log = dir.path().join("log");
    let mut idx: Vec<_> = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "idx"))
        .collect();
    idx.sort();
    assert!(idx.len() >= 4, "{idx:?}");
    std::fs::remove_file(&idx[0]).unwrap();
    std::fs::write(&idx[1], b"garbage").unwrap();
    let good = std::fs::read(&idx[2]).unwrap();
    let mut flipped = good.clone();
    flipped[40] ^= 1;
    std::fs::write(&idx[2], &flipped).unwrap();
    let db = Db::open_with(dir.path(), o).unwrap();
    let h = db
        .history(
            "c",
            "k",
            HistoryOptions {
                before_lsn: None,
                limit: 1000,
                values: true,
            },
        )
        .unwrap();
    assert_eq!(h.versions.len(), 300);
    for (i, v) in h.versions.iter().rev().enumerate() {
        let value: Value = serde_json::from_slice(v.value.as_ref().unwrap()).unwrap();
        assert_eq!(value["n"], i as u64);
    }
    let (_, rebuilt) = db.log_read_counters();
    assert_eq!(rebuilt, 3);
    assert!(idx[0].exists());
    assert_eq!(std::fs::read(&idx[2]).unwrap(), good);
    db.close().unwrap();
}

//! As-of reads of streams (`Db::read_stream_at`), checked against a plain model that keeps
//! every stream's entries after every commit: at any point inside the history window a read
//! returns exactly the entries appended by then that retention has not trimmed since, by LSN
//! and by time, through trims, retention, deletes, re-creation, checkpoints and reopens; a
//! stream deleted or re-created since reads as `None`; a point before the window is
//! `HistoryLost`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use amberdb::clock::ManualClock;
use amberdb::history::At;
use amberdb::{Db, Error, Options, Retention, StreamFrom, Transaction};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

mod support;

const STREAMS: [&str; 2] = ["chat", "events"];

/// One stream of the model: the LSN of the commit that created it, and its retained entries
/// as (seq, commit_ts, value).
#[derive(Debug, Clone, PartialEq)]
struct ModelStream {
    created: u64,
    next_seq: u64,
    entries: Vec<(u64, u64, Value)>,
    retention: Retention,
}

type Model = BTreeMap<String, ModelStream>;
/// Entries as (seq, commit_ts, value).
type Entries = Vec<(u64, u64, Value)>;

fn opts(clock: &ManualClock, seg: u64) -> Options {
    Options {
        clock: Arc::new(clock.clone()),
        stream_segment_bytes: seg,
        segment_size: 4096,
        checkpoint_interval: None,
        checkpoint_on_close: false,
        history_retention: Duration::from_secs(30 * 24 * 3600),
        ttl_reap_interval: None,
        ..Options::default()
    }
}

/// Every entry of `stream` at `at`, paged with random limits; `None` as the engine says.
fn read_all_at(db: &Db, stream: &str, at: At, rng: &mut StdRng) -> Option<(u64, Entries)> {
    let mut out = vec![];
    let mut from = 1;
    let mut point = None;
    loop {
        let limit = rng.random_range(1..12);
        let (lsn, page) = db
            .read_stream_at(stream, StreamFrom::Seq(from), limit, at)
            .unwrap()?;
        assert!(
            point.is_none_or(|p| p == lsn),
            "a point resolves to one LSN"
        );
        point = Some(lsn);
        if page.entries.is_empty() {
            return Some((lsn, out));
        }
        assert!(page.entries.len() <= limit);
        for e in &page.entries {
            out.push((e.seq, e.commit_ts, e.json().unwrap()));
        }
        assert_eq!(
            page.last_seq,
            out.last().map(|e| e.0).max(Some(page.last_seq)).unwrap()
        );
        from = page.next_seq;
    }
}

fn retain(m: &mut ModelStream, ts: u64) {
    if let Some(max) = m.retention.max_entries {
        let over = m.entries.len().saturating_sub(max as usize);
        m.entries.drain(..over);
    }
    if let Some(age) = m.retention.max_age_s {
        let cutoff = ts.saturating_sub(age * 1_000_000);
        m.entries.retain(|e| e.1 >= cutoff);
    }
}

/// What an as-of read at `then` (the model right after that commit, with its LSN) must
/// return, given the model now.
fn expected_at(now: &Model, then: &Model, lsn: u64, name: &str) -> Option<Entries> {
    let cur = now.get(name).filter(|s| s.created <= lsn)?;
    let first_kept = cur.entries.first().map_or(cur.next_seq, |e| e.0);
    let at = then.get(name).map_or(&[][..], |s| &s.entries[..]);
    Some(at.iter().filter(|e| e.0 >= first_kept).cloned().collect())
}

fn model_case(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let clock = ManualClock::new(1_800_000_000_000_000);
    let o = opts(&clock, rng.random_range(100..1500));
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("d");
    let mut db = Db::open_with(&dir, o.clone()).unwrap();
    let mut model = Model::new();
    // The model after every commit: LSN -> (commit_ts, model).
    let mut points: BTreeMap<u64, (u64, Model)> = BTreeMap::new();
    for step in 0..rng.random_range(30..90) {
        let name = STREAMS[rng.random_range(0..STREAMS.len())];
        let what = format!("seed {seed} step {step}");
        let before = db.view().lsn();
        match rng.random_range(0..100) {
            0..45 => {
                let vals: Vec<Value> = (0..rng.random_range(1..5))
                    .map(|i| json!({"step": step, "i": i}))
                    .collect();
                let (lsn, ts) = if rng.random_bool(0.7) {
                    let a = db.append(name, &vals, None).unwrap();
                    (a.lsn, a.commit_ts)
                } else {
                    let mut tx = Transaction::new();
                    tx.append(name, vals.clone(), None);
                    tx.put("meta", name, json!({"step": step}));
                    let c = db.commit(&tx).unwrap();
                    (c.lsn, c.commit_ts)
                };
                let m = model.entry(name.into()).or_insert_with(|| ModelStream {
                    created: lsn,
                    next_seq: 1,
                    entries: vec![],
                    retention: Retention::default(),
                });
                for v in vals {
                    m.entries.push((m.next_seq, ts, v));
                    m.next_seq += 1;
                }
                retain(m, ts);
            }
            45..52 => {
                let r = Retention {
                    max_entries: rng.random_bool(0.6).then(|| rng.random_range(1..12)),
                    max_age_s: rng.random_bool(0.3).then(|| rng.random_range(1..20)),
                };
                db.set_stream_retention(name, r).unwrap();
                let (lsn, ts) = (db.view().lsn(), db.view().commit_ts());
                let m = model.entry(name.into()).or_insert_with(|| ModelStream {
                    created: lsn,
                    next_seq: 1,
                    entries: vec![],
                    retention: r,
                });
                m.retention = r;
                retain(m, ts);
            }
            52..60 => {
                let Some(m) = model.get_mut(name) else {
                    continue;
                };
                let to = rng.random_range(0..m.next_seq + 2);
                db.trim_stream(name, to).unwrap();
                if db.view().lsn() > before {
                    m.entries.retain(|e| e.0 >= to);
                }
            }
            60..65 => {
                let existed = db.delete_stream(name).unwrap();
                assert_eq!(existed, model.remove(name).is_some(), "{what}");
            }
            65..75 => {
                clock.advance(Duration::from_millis(rng.random_range(100..5000)));
            }
            75..85 => {
                db.checkpoint().unwrap();
            }
            85..92 => {
                db.close().unwrap();
                db = Db::open_with(&dir, o.clone()).unwrap();
            }
            _ => {
                db.put("other", "k", json!(step)).unwrap();
            }
        }
        let view = db.view();
        if view.lsn() > before {
            points.insert(view.lsn(), (view.commit_ts(), model.clone()));
        }
        // A few earlier points, by LSN and by time (a time between two commits resolves to
        // the earlier one), against the model then and now.
        let lsns: Vec<u64> = points.keys().copied().collect();
        for _ in 0..3 {
            let Some(&lsn) = lsns.get(rng.random_range(0..lsns.len().max(1))) else {
                break;
            };
            let (ts, then) = &points[&lsn];
            for name in STREAMS {
                let want = expected_at(&model, then, lsn, name);
                let case = format!("{what}: {name} at LSN {lsn}");
                let got = read_all_at(&db, name, At::Lsn(lsn), &mut rng);
                assert_eq!(got.as_ref().map(|g| &g.1), want.as_ref(), "{case}");
                if let Some((l, _)) = got {
                    assert_eq!(l, lsn, "{case}");
                }
                let got = read_all_at(&db, name, At::Time(*ts), &mut rng);
                assert_eq!(got.map(|g| g.1), want, "{case}, by time");
            }
        }
    }
    db.close().unwrap();
}

#[test]
fn as_of_stream_reads_equal_a_model_of_every_point() {
    let cases = std::env::var("AMBERDB_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24u64);
    for seed in 1..=cases {
        model_case(seed);
    }
}

#[test]
fn as_of_stream_reads_before_the_history_window_are_history_lost() {
    let t = tempfile::tempdir().unwrap();
    let o = Options {
        history_retention: Duration::ZERO,
        segment_size: 4096,
        ..Options::default()
    };
    let db = Db::open_with(t.path().join("d"), o).unwrap();
    for i in 0..50 {
        db.append("events", &[json!({"i": i, "pad": "p".repeat(200)})], None)
            .unwrap();
    }
    db.checkpoint().unwrap();
    match db.read_stream_at("events", StreamFrom::Seq(1), 10, At::Lsn(2)) {
        Err(Error::HistoryLost { retained_from_lsn }) => assert!(retained_from_lsn > 2),
        other => panic!("expected HistoryLost, got {other:?}"),
    }
    // The newest point is always answered.
    let (lsn, page) = db
        .read_stream_at("events", StreamFrom::Seq(1), 100, At::Lsn(50))
        .unwrap()
        .unwrap();
    assert_eq!((lsn, page.entries.len(), page.last_seq), (50, 50, 50));
    db.close().unwrap();
}

/// A stream deleted and created again: a point before the re-creation is `None` (the earlier
/// incarnation's entries are not history), a point after it sees the new entries only.
#[test]
fn as_of_reads_of_a_recreated_stream_do_not_mix_incarnations() {
    let t = tempfile::tempdir().unwrap();
    let db = Db::open_with(t.path().join("d"), Options::default()).unwrap();
    let old = db
        .append("chat", &[json!("old 1"), json!("old 2")], None)
        .unwrap();
    db.delete_stream("chat").unwrap();
    let new = db.append("chat", &[json!("new 1")], None).unwrap();
    assert_eq!(new.first_seq, 1);
    assert!(db
        .read_stream_at("chat", StreamFrom::Seq(1), 10, At::Lsn(old.lsn))
        .unwrap()
        .is_none());
    let (_, page) = db
        .read_stream_at("chat", StreamFrom::Seq(1), 10, At::Lsn(new.lsn))
        .unwrap()
        .unwrap();
    assert_eq!(page.entries.len(), 1);
    assert_eq!(page.entries[0].json().unwrap(), json!("new 1"));
    // An LSN not committed yet is refused, as for documents.
    assert!(matches!(
        db.read_stream_at("chat", StreamFrom::Seq(1), 10, At::Lsn(99)),
        Err(Error::InvalidArgument(_))
    ));
    db.close().unwrap();
}

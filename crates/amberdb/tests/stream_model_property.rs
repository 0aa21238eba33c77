//! Streams against a plain in-memory model (issue 13): seeded random workloads of appends,
//! batch appends, `expected_seq` (right and stale), transactions that append and write a
//! document, retention by count and by age, explicit trims, deletes, checkpoints, reopens,
//! crashes (a copy of the directory taken while the database is open) and power cuts (the
//! io layer's simulator: unsynced data dropped or torn, undurable names undone).
//!
//! After every step the database must equal the model: each stream's entries (sequence
//! number, commit time, value), counts and first/last sequence numbers. After a power cut it
//! must equal the model after some prefix of the attempted commits that includes every one
//! acknowledged as durable. `AMBERDB_STREAM_CASES=N` runs N seeds (default 40 and 16).

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use amberdb::clock::ManualClock;
use amberdb::io::{install, PowerCut};
use amberdb::{Db, Durability, Error, Options, Retention, StreamFrom, Transaction};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const STREAMS: [&str; 3] = ["chat", "events.a", "audit-1"];

#[derive(Debug, Clone, Default, PartialEq)]
struct ModelStream {
    next_seq: u64,
    entries: VecDeque<(u64, u64, Value)>,
    retention: Retention,
}

impl ModelStream {
    fn fresh() -> Self {
        ModelStream {
            next_seq: 1,
            ..ModelStream::default()
        }
    }

    fn trim_to(&mut self, first: u64) {
        while self.entries.front().is_some_and(|e| e.0 < first) {
            self.entries.pop_front();
        }
    }

    /// Retention at commit time `ts` (after the commit's appends).
    fn retain(&mut self, ts: u64) {
        if let Some(max) = self.retention.max_entries {
            while self.entries.len() as u64 > max {
                self.entries.pop_front();
            }
        }
        if let Some(age) = self.retention.max_age_s {
            let cutoff = ts.saturating_sub(age * 1_000_000);
            while self.entries.front().is_some_and(|e| e.1 < cutoff) {
                self.entries.pop_front();
            }
        }
    }
}

type Model = BTreeMap<String, ModelStream>;

/// With `encrypted`, the database seals its files (stream files in format 2, issue 12).
fn opts(clock: &ManualClock, seg: u64, encrypted: bool) -> Options {
    Options {
        encryption: encrypted.then(|| {
            amberdb::crypto::Keyring::single(amberdb::crypto::Key::from_bytes([0x4d; 32]))
        }),
        clock: Arc::new(clock.clone()),
        stream_segment_bytes: seg,
        segment_size: 4096,
        checkpoint_interval: None,
        checkpoint_log_bytes: u64::MAX,
        checkpoint_on_close: false,
        history_retention: Duration::ZERO,
        ttl_reap_interval: None,
        ..Options::default()
    }
}

fn read_all(db: &Db, stream: &str, rng: &mut StdRng) -> Vec<(u64, u64, Value)> {
    let mut out = vec![];
    let mut from = 1;
    loop {
        let limit = rng.random_range(1..20);
        let page = db
            .read_stream(stream, StreamFrom::Seq(from), limit)
            .unwrap();
        if page.entries.is_empty() {
            return out;
        }
        assert!(page.entries.len() <= limit);
        for e in &page.entries {
            out.push((e.seq, e.commit_ts, e.json().unwrap()));
        }
        from = page.next_seq;
    }
}

fn check(db: &Db, model: &Model, rng: &mut StdRng, what: &str) {
    let infos = db.streams();
    let names: Vec<&str> = infos.iter().map(|i| i.name.as_str()).collect();
    let want: Vec<&str> = model.keys().map(String::as_str).collect();
    assert_eq!(names, want, "{what}: stream names");
    for info in &infos {
        let m = &model[&info.name];
        let entries: Vec<_> = m.entries.iter().cloned().collect();
        assert_eq!(
            read_all(db, &info.name, rng),
            entries,
            "{what}: {}",
            info.name
        );
        assert_eq!(
            info.last_seq,
            m.next_seq - 1,
            "{what}: {} last_seq",
            info.name
        );
        assert_eq!(
            info.entries,
            m.entries.len() as u64,
            "{what}: {}",
            info.name
        );
        assert_eq!(info.first_seq, m.entries.front().map(|e| e.0), "{what}");
        assert_eq!(
            info.retention, m.retention,
            "{what}: {} retention",
            info.name
        );
        // A read by time starts at the first entry at or after it.
        if let Some(e) = m.entries.get(m.entries.len() / 2) {
            let page = db
                .read_stream(&info.name, StreamFrom::Time(e.1), 1)
                .unwrap();
            let first = m.entries.iter().find(|x| x.1 >= e.1).unwrap();
            assert_eq!(page.entries[0].seq, first.0, "{what}: read by time");
        }
    }
}

fn values(rng: &mut StdRng, step: usize) -> Vec<Value> {
    (0..rng.random_range(1..6))
        .map(|i| json!({"step": step, "i": i, "pad": "x".repeat(rng.random_range(0..60))}))
        .collect()
}

/// One seeded workload with checks after every step.
fn model_case(seed: u64, encrypted: bool) {
    let mut rng = StdRng::seed_from_u64(seed);
    let clock = ManualClock::new(1_800_000_000_000_000);
    let o = opts(&clock, rng.random_range(100..2000), encrypted);
    let root = tempfile::tempdir().unwrap();
    let mut dir = root.path().join("d0");
    let mut db = Db::open_with(&dir, o.clone()).unwrap();
    let mut model = Model::new();
    let mut copies = 0;
    for step in 0..rng.random_range(20..80) {
        let name = STREAMS[rng.random_range(0..STREAMS.len())];
        let what = format!("seed {seed} step {step}");
        match rng.random_range(0..100) {
            0..40 => {
                let vals = values(&mut rng, step);
                let last = model.get(name).map_or(0, |m| m.next_seq - 1);
                let expected = match rng.random_range(0..3) {
                    0 => None,
                    1 => Some(last),
                    _ => Some(last + rng.random_range(1..3)),
                };
                match db.append(name, &vals, expected) {
                    Ok(a) => {
                        assert!(
                            expected.is_none_or(|e| e == last),
                            "{what}: stale append won"
                        );
                        let m = model.entry(name.into()).or_insert_with(ModelStream::fresh);
                        assert_eq!(a.first_seq, m.next_seq, "{what}");
                        for v in vals {
                            m.entries.push_back((m.next_seq, a.commit_ts, v));
                            m.next_seq += 1;
                        }
                        m.retain(a.commit_ts);
                    }
                    Err(Error::Conflict(c)) => {
                        assert_ne!(expected, Some(last), "{what}: {c:?}");
                        assert_eq!(c[0].actual, last, "{what}");
                    }
                    Err(e) => panic!("{what}: {e}"),
                }
            }
            40..48 => {
                // A transaction: an append and a document write, atomically.
                let vals = values(&mut rng, step);
                let mut tx = Transaction::new();
                tx.append(name, vals.clone(), None);
                tx.put("meta", name, json!({"step": step}));
                let c = db.commit(&tx).unwrap();
                let m = model.entry(name.into()).or_insert_with(ModelStream::fresh);
                for v in vals {
                    m.entries.push_back((m.next_seq, c.commit_ts, v));
                    m.next_seq += 1;
                }
                m.retain(c.commit_ts);
                assert_eq!(db.get("meta", name).unwrap().json().unwrap()["step"], step);
            }
            48..55 => {
                let r = Retention {
                    max_entries: rng.random_bool(0.6).then(|| rng.random_range(1..15)),
                    max_age_s: rng.random_bool(0.4).then(|| rng.random_range(1..30)),
                };
                db.set_stream_retention(name, r).unwrap();
                let m = model.entry(name.into()).or_insert_with(ModelStream::fresh);
                m.retention = r;
                m.retain(db.view().commit_ts());
            }
            55..60 => {
                let Some(m) = model.get_mut(name) else {
                    continue;
                };
                let to = rng.random_range(0..m.next_seq + 2);
                let before = db.view().lsn();
                db.trim_stream(name, to).unwrap();
                if db.view().lsn() > before {
                    m.trim_to(to);
                }
            }
            60..64 => {
                let existed = db.delete_stream(name).unwrap();
                assert_eq!(existed, model.remove(name).is_some(), "{what}");
            }
            64..72 => clock.advance(Duration::from_millis(rng.random_range(100..9000))),
            72..76 => {
                let trimmed = db.apply_stream_retention().unwrap();
                let ts = db.view().commit_ts();
                if trimmed > 0 {
                    for m in model.values_mut() {
                        m.retain(ts);
                    }
                }
            }
            76..86 => {
                db.checkpoint().unwrap();
            }
            86..93 => {
                db.close().unwrap();
                db = Db::open_with(&dir, o.clone()).unwrap();
            }
            _ => {
                // A crash: what the directory holds at this moment, opened in a copy.
                copies += 1;
                let copy = root.path().join(format!("d{copies}"));
                support::copy_dir(&dir, &copy);
                drop(db);
                dir = copy;
                db = Db::open_with(&dir, o.clone()).unwrap();
            }
        }
        check(&db, &model, &mut rng, &what);
    }
    assert!(db.verify().unwrap().is_clean());
    db.close().unwrap();
    let db = Db::open_with(&dir, o).unwrap();
    check(&db, &model, &mut rng, &format!("seed {seed} at the end"));
    db.close().unwrap();
}

#[test]
fn streams_equal_a_plain_model_through_retention_checkpoints_reopens_and_crashes() {
    let cases: u64 = std::env::var("AMBERDB_STREAM_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    for seed in 0..cases {
        model_case(seed, false);
    }
}

#[test]
fn sealed_streams_equal_a_plain_model_through_retention_checkpoints_reopens_and_crashes() {
    let cases: u64 = std::env::var("AMBERDB_STREAM_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    for seed in 0..cases.div_ceil(2) {
        model_case(seed + 1000, true);
    }
}

/// Stream contents (seq, value) per stream after each attempted commit (index = LSN).
type Snapshot = BTreeMap<String, Vec<(u64, Value)>>;

fn snapshot(db: &Db) -> Snapshot {
    db.streams()
        .into_iter()
        .map(|i| {
            let mut out = vec![];
            let mut from = 1;
            loop {
                let page = db
                    .read_stream(&i.name, StreamFrom::Seq(from), 1000)
                    .unwrap();
                if page.entries.is_empty() {
                    break;
                }
                out.extend(page.entries.iter().map(|e| (e.seq, e.json().unwrap())));
                from = page.next_seq;
            }
            (i.name, out)
        })
        .collect()
}

fn powercut_workload(
    root: &Path,
    seed: u64,
    pc: &PowerCut,
    encrypted: bool,
) -> (Vec<Snapshot>, u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let clock = ManualClock::new(1_800_000_000_000_000);
    let o = opts(&clock, rng.random_range(100..1500), encrypted);
    let data = root.join("data");
    let mut states = vec![Snapshot::new()];
    let mut durable = 0;
    let Ok(mut db) = Db::open_with(&data, o.clone()) else {
        return (states, durable);
    };
    let mut model: BTreeMap<String, (u64, Vec<(u64, Value)>)> = BTreeMap::new();
    for step in 0..rng.random_range(10..40) {
        if pc.is_cut() {
            break;
        }
        let name = STREAMS[rng.random_range(0..2)];
        match rng.random_range(0..100) {
            0..60 => {
                let vals = values(&mut rng, step);
                let sync = rng.random_bool(0.5);
                let mut tx = Transaction::new();
                tx.append(name, vals.clone(), None);
                if !sync {
                    tx.durability(Durability::Buffered {
                        max_delay: Duration::from_secs(3600),
                    });
                }
                let m = model.entry(name.into()).or_insert((1, vec![]));
                for v in vals {
                    m.1.push((m.0, v));
                    m.0 += 1;
                }
                states.push(
                    model
                        .iter()
                        .map(|(k, v)| (k.clone(), v.1.clone()))
                        .collect(),
                );
                match db.commit(&tx) {
                    Ok(c) => {
                        assert_eq!(c.lsn as usize, states.len() - 1);
                        if sync {
                            durable = c.lsn;
                        }
                    }
                    Err(_) => break,
                }
            }
            60..68 => {
                let Some(m) = model.get_mut(name) else {
                    continue;
                };
                let to = m.1.get(m.1.len() / 2).map_or(0, |e| e.0);
                if to <= m.1.first().map_or(u64::MAX, |e| e.0) {
                    continue;
                }
                m.1.retain(|e| e.0 >= to);
                states.push(
                    model
                        .iter()
                        .map(|(k, v)| (k.clone(), v.1.clone()))
                        .collect(),
                );
                if db.trim_stream(name, to).is_err() {
                    break;
                }
                durable = states.len() as u64 - 1;
            }
            68..72 => {
                if model.remove(name).is_none() {
                    continue;
                }
                states.push(
                    model
                        .iter()
                        .map(|(k, v)| (k.clone(), v.1.clone()))
                        .collect(),
                );
                if db.delete_stream(name).is_err() {
                    break;
                }
                durable = states.len() as u64 - 1;
            }
            72..88 => {
                let _ = db.checkpoint();
            }
            88..94 => {
                if db.sync().is_ok() {
                    durable = states.len() as u64 - 1;
                }
            }
            _ => {
                let attempted = states.len() as u64 - 1;
                if db.close().is_ok() {
                    durable = attempted;
                }
                match Db::open_with(&data, o.clone()) {
                    Ok(d) => db = d,
                    Err(_) => return (states, durable),
                }
            }
        }
    }
    drop(db);
    (states, durable)
}

fn powercut_case(seed: u64, encrypted: bool) {
    let dry = tempfile::tempdir().unwrap();
    let pc = Arc::new(PowerCut::new(dry.path(), None).unwrap());
    let total = {
        let _scope = install(dry.path(), pc.clone());
        powercut_workload(dry.path(), seed, &pc, encrypted);
        pc.ops()
    };
    let mut rng = StdRng::seed_from_u64(seed ^ 0xc0ffee);
    let cut_at = rng.random_range(0..=total);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("live");
    std::fs::create_dir(&root).unwrap();
    let pc = Arc::new(PowerCut::new(&root, Some(cut_at)).unwrap());
    let (states, durable) = {
        let _scope = install(&root, pc.clone());
        let r = powercut_workload(&root, seed, &pc, encrypted);
        pc.cut_now();
        r
    };
    assert!(
        pc.model_errors().is_empty(),
        "seed {seed}: {:?}",
        pc.model_errors()
    );
    for m in 0..3 {
        let out = tmp.path().join(format!("cut{m}"));
        let report = pc.materialize(&out, seed * 7 + m).unwrap();
        let case = format!(
            "seed {seed} materialization {m}: cut before {} of {total}",
            report.cut_before.as_deref().unwrap_or("nothing")
        );
        let data = out.join("data");
        if !data.join("log").exists() && durable == 0 {
            continue;
        }
        let clock = ManualClock::new(1_900_000_000_000_000);
        let db = Db::open_with(&data, opts(&clock, 1000, encrypted))
            .unwrap_or_else(|e| panic!("{case}: reopen failed: {e}"));
        let lsn = db.view().lsn();
        assert!(
            lsn >= durable && lsn < states.len() as u64,
            "{case}: LSN {lsn}, durable {durable}, attempted {}",
            states.len() - 1
        );
        assert_eq!(
            snapshot(&db),
            states[lsn as usize],
            "{case}: streams at LSN {lsn}"
        );
        // The reopened database keeps appending after what it holds.
        for s in db.streams() {
            let a = db
                .append(&s.name, &[json!("after")], Some(s.last_seq))
                .unwrap();
            assert_eq!(a.first_seq, s.last_seq + 1, "{case}");
        }
        assert!(db.verify().unwrap().is_clean(), "{case}");
        db.close().unwrap();
    }
}

#[test]
fn power_cuts_anywhere_leave_streams_equal_to_the_model_after_a_durable_prefix() {
    let cases: u64 = std::env::var("AMBERDB_STREAM_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    for seed in 0..cases {
        powercut_case(seed, false);
    }
}

#[test]
fn power_cuts_anywhere_leave_sealed_streams_equal_to_the_model_after_a_durable_prefix() {
    let cases: u64 = std::env::var("AMBERDB_STREAM_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    for seed in 0..cases.div_ceil(2) {
        powercut_case(seed + 1000, true);
    }
}

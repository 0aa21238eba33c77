//! Revert and undo against a model: random transactions at known commit times (a manual
//! clock), reopens and checkpoints in between, then reverts of random scopes to random points
//! (by LSN and by time) and undos of random commits. A revert must leave its scope equal to
//! the model at the target and everything else untouched; an undo must be refused exactly
//! when the model says a document it touched changed since, and otherwise restore exactly
//! the state before that commit. Reverts and undos are commits too, so later steps revert and
//! undo them. Every such commit must carry its reason and target in the log.
//!
//! Writes may carry a TTL and the clock moves on, so documents expire during a run and
//! reaper passes log their end: the model keeps what is stored with each document's expiry,
//! and a revert or undo must give a document back the expiry it had at the target, or, when
//! that has passed since, its TTL again from the revert's commit (a version already expired
//! at the target was gone then and stays gone).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use amberdb::clock::ManualClock;
use amberdb::log::record::{CommitReason, CommitRecord};
use amberdb::log::segment::{list_segments, scan};
use amberdb::revert::At;
use amberdb::{
    Action, Db, Error, Options, RevertOptions, Scope, Transaction, UndoOptions, LOG_DIR,
};
use proptest::prelude::*;
use serde_json::json;

type Id = (String, String);
/// Value, schema version, expiry (`expires_at`) and time of the last write (`updated_at`),
/// in microseconds, of every stored document (expired ones too, until a write or the reaper
/// removes them).
type Model = BTreeMap<Id, Entry>;
type Entry = (serde_json::Value, u32, Option<u64>, u64);

/// TTLs a generated put may carry, in milliseconds (0: none); the clock moves 1 s per step.
const TTLS_MS: [u64; 4] = [0, 1_500, 4_000, 20_000];

/// The documents of `m` visible at `now`.
fn visible(m: &Model, now: u64) -> Model {
    m.iter()
        .filter(|(_, (_, _, exp, _))| exp.is_none_or(|e| e > now))
        .map(|(i, v)| (i.clone(), v.clone()))
        .collect()
}

/// The documents of `m` visible at `point`, as a revert or undo at `now` writes them back:
/// the expiry each had while it is still ahead, else its TTL again from `now`.
fn given_back(m: &Model, point: u64, now: u64) -> Model {
    visible(m, point)
        .into_iter()
        .map(|(id, (v, schema, exp, written))| {
            let exp = exp.map(|e| if e > now { e } else { now + (e - written) });
            (id, (v, schema, exp, now))
        })
        .collect()
}

/// The part of an entry a revert compares (not when it was written).
fn content(e: &Entry) -> (&serde_json::Value, u32, Option<u64>) {
    (&e.0, e.1, e.2)
}

const COLS: [&str; 2] = ["players", "parties"];
const KEYS: [&str; 5] = ["a0", "a1", "a10", "b0", "b1"];

/// One write of a generated transaction: collection, key, and `Some((value, schema, ttl))`
/// for a put (`ttl` indexes `TTLS_MS`) or `None` for a delete.
type GenWrite = (u8, u8, Option<(u16, u32, u8)>);

#[derive(Debug, Clone)]
enum Step {
    Txn(Vec<GenWrite>),
    Revert {
        scope: u8,
        c: u8,
        k: u8,
        pick: u64,
        by_time: bool,
        dry_run: bool,
    },
    Undo {
        pick: u64,
        force: bool,
        dry_run: bool,
    },
    Checkpoint,
    Reopen,
    /// One reaper pass (the background reaper is off, so passes land only here).
    Reap,
}

fn step() -> impl Strategy<Value = Step> {
    let write = (
        0u8..2,
        0u8..5,
        prop::option::weighted(0.75, (0u16..8, 1u32..3, 0u8..4)),
    );
    prop_oneof![
        8 => prop::collection::vec(write, 1..4).prop_map(Step::Txn),
        3 => (0u8..4, 0u8..2, 0u8..5, any::<u64>(), any::<bool>(), prop::bool::weighted(0.2))
            .prop_map(|(scope, c, k, pick, by_time, dry_run)| Step::Revert { scope, c, k, pick, by_time, dry_run }),
        2 => (any::<u64>(), prop::bool::weighted(0.3), prop::bool::weighted(0.2))
            .prop_map(|(pick, force, dry_run)| Step::Undo { pick, force, dry_run }),
        1 => Just(Step::Checkpoint),
        1 => Just(Step::Reopen),
        1 => Just(Step::Reap),
    ]
}

fn opts(clock: &ManualClock) -> Options {
    Options {
        // Small segments so history spans many sealed segments; a long retention keeps them
        // all (the history window) across checkpoints.
        segment_size: 700,
        history_retention: Duration::from_secs(365 * 86_400),
        checkpoint_on_close: true,
        clock: Arc::new(clock.clone()),
        ttl_reap_interval: None,
        ..Options::default()
    }
}

/// What the database stores, expired documents included.
fn db_state(db: &Db) -> Model {
    db.view()
        .iter_all()
        .map(|(c, d)| {
            (
                (c.to_string(), d.key.to_string()),
                (
                    d.json().unwrap(),
                    d.meta.schema_version,
                    d.meta.expires_at,
                    d.meta.updated_at,
                ),
            )
        })
        .collect()
}

fn commit_record(db: &Db, lsn: u64) -> CommitRecord {
    let mut found = None;
    for (_, path) in list_segments(&db.path().join(LOG_DIR)).unwrap() {
        let bytes = std::fs::read(&path).unwrap();
        scan(&bytes, |r, _| {
            if r.lsn == lsn {
                found = Some(r);
            }
        })
        .unwrap();
    }
    found.unwrap_or_else(|| panic!("commit {lsn} is not in the log"))
}

fn in_scope(scope: &Scope, id: &Id) -> bool {
    match scope {
        Scope::Key { collection, key } => &id.0 == collection && &id.1 == key,
        Scope::Prefix { collection, prefix } => &id.0 == collection && id.1.starts_with(prefix),
        Scope::Collection { collection } => &id.0 == collection,
        Scope::All => true,
    }
}

/// What the test knows of every commit: the state after it, its time, the documents it
/// logged, and each document's last logged change.
struct History {
    states: Vec<Model>,
    times: Vec<u64>,
    touched: Vec<BTreeSet<Id>>,
    last_change: BTreeMap<Id, u64>,
}

impl History {
    fn now(&self) -> &Model {
        self.states.last().unwrap()
    }
    fn lsn(&self) -> u64 {
        self.states.len() as u64 - 1
    }
    fn push(&mut self, lsn: u64, ts: u64, state: Model, touched: BTreeSet<Id>) {
        assert_eq!(lsn, self.states.len() as u64, "LSNs are gap-free");
        for id in &touched {
            self.last_change.insert(id.clone(), lsn);
        }
        self.states.push(state);
        self.times.push(ts);
        self.touched.push(touched);
    }
}

/// The stored state after a revert or undo wrote `changed` to their state in `expected`
/// (a document absent there was deleted).
fn apply(stored: &Model, expected: &Model, changed: &BTreeSet<Id>) -> Model {
    let mut next = stored.clone();
    for id in changed {
        match expected.get(id) {
            Some(v) => next.insert(id.clone(), v.clone()),
            None => next.remove(id),
        };
    }
    next
}

/// The documents whose state differs between two models (compare visible ones).
fn diff(a: &Model, b: &Model) -> BTreeSet<Id> {
    a.keys()
        .chain(b.keys())
        .filter(|id| a.get(*id).map(content) != b.get(*id).map(content))
        .cloned()
        .collect()
}

fn run(steps: &[Step]) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let clock = ManualClock::new(1_700_000_000_000_000);
    let mut db = Db::open_with(&data, opts(&clock)).unwrap();
    let mut h = History {
        states: vec![Model::new()],
        times: vec![0],
        touched: vec![BTreeSet::new()],
        last_change: BTreeMap::new(),
    };
    for s in steps {
        clock.advance(Duration::from_millis(1000));
        let now = clock.now_micros();
        match s {
            Step::Txn(writes) => {
                let mut tx = Transaction::new();
                let before = h.now().clone();
                let mut next = before.clone();
                let mut touched = BTreeSet::new();
                let live = |m: &Model, id: &Id| {
                    m.get(id)
                        .is_some_and(|(_, _, exp, _)| exp.is_none_or(|e| e > now))
                };
                for (c, k, w) in writes {
                    let id = (COLS[*c as usize].to_string(), KEYS[*k as usize].to_string());
                    match w {
                        Some((v, schema, ttl)) => {
                            let value = json!({"v": v});
                            let write = tx.put(&id.0, &id.1, value.clone()).schema_version(*schema);
                            let ms = TTLS_MS[*ttl as usize];
                            if ms > 0 {
                                write.ttl(Duration::from_millis(ms));
                            }
                            let exp = (ms > 0).then(|| now + ms * 1000);
                            next.insert(id.clone(), (value, *schema, exp, now));
                            touched.insert(id);
                        }
                        None => {
                            tx.delete(&id.0, &id.1);
                            // A delete of an expired document is a no-op: it is missing.
                            if live(&next, &id) {
                                next.remove(&id);
                                touched.insert(id);
                            }
                        }
                    }
                }
                // Logged: what is live before or after, and an expired document that a
                // write in this transaction replaced and a later one deleted.
                touched.retain(|id| {
                    live(&next, id) || live(&before, id) || next.get(id) != before.get(id)
                });
                let done = db.commit(&tx).unwrap();
                if touched.is_empty() {
                    prop_assert_eq!(done.lsn, h.lsn());
                } else {
                    // The expiries above were counted from this commit's time.
                    prop_assert_eq!(done.commit_ts, now);
                    h.push(done.lsn, done.commit_ts, next, touched);
                }
            }
            Step::Revert {
                scope,
                c,
                k,
                pick,
                by_time,
                dry_run,
            } => {
                let (collection, key) = (COLS[*c as usize].to_string(), KEYS[*k as usize]);
                let scope = match scope {
                    0 => Scope::Key {
                        collection,
                        key: key.to_string(),
                    },
                    1 => Scope::Prefix {
                        collection,
                        prefix: key[..1].to_string(),
                    },
                    2 => Scope::Collection { collection },
                    _ => Scope::All,
                };
                let target = pick % (h.lsn() + 1);
                let at = if *by_time && target > 0 {
                    // Any time from this commit's to just before the next one names it.
                    let from = h.times[target as usize];
                    let to = h.times.get(target as usize + 1).map_or(from + 1, |t| *t);
                    At::Time(from + (pick / 7) % (to - from))
                } else {
                    At::Lsn(target)
                };
                let report = db
                    .revert(&scope, at, RevertOptions { dry_run: *dry_run })
                    .unwrap();
                prop_assert_eq!(report.target_lsn, target);
                // Each document of the scope as it was at the target (gone if expired by
                // the point's time), given back its expiry.
                let point = match at {
                    At::Time(t) => t,
                    At::Lsn(_) => h.times[target as usize],
                };
                let cur = visible(h.now(), now);
                let then = given_back(&h.states[target as usize], point, now);
                let mut expected = cur.clone();
                expected.retain(|id, _| !in_scope(&scope, id));
                expected.extend(
                    then.iter()
                        .filter(|(id, _)| in_scope(&scope, id))
                        .map(|(i, v)| (i.clone(), v.clone())),
                );
                let changed: BTreeSet<Id> = report
                    .changed
                    .iter()
                    .map(|c| (c.collection.clone(), c.key.clone()))
                    .collect();
                prop_assert_eq!(
                    &changed,
                    &diff(&cur, &expected),
                    "changed list of {:?} to {}",
                    scope,
                    target
                );
                for c in &report.changed {
                    let id = (c.collection.clone(), c.key.clone());
                    let action = match (cur.contains_key(&id), expected.contains_key(&id)) {
                        (true, true) => Action::Restored,
                        (true, false) => Action::Deleted,
                        _ => Action::Recreated,
                    };
                    prop_assert_eq!(c.action, action);
                }
                if *dry_run || changed.is_empty() {
                    prop_assert_eq!(report.commit_lsn, None);
                    prop_assert_eq!(db.view().lsn(), h.lsn());
                } else {
                    let lsn = report.commit_lsn.unwrap();
                    let rec = commit_record(&db, lsn);
                    prop_assert_eq!(rec.reason, CommitReason::Revert);
                    prop_assert_eq!(rec.target_lsn, target);
                    prop_assert_eq!(rec.commit_ts, now);
                    let stored = apply(h.now(), &expected, &changed);
                    h.push(lsn, rec.commit_ts, stored, changed);
                }
            }
            Step::Undo {
                pick,
                force,
                dry_run,
            } => {
                if h.lsn() == 0 {
                    continue;
                }
                let lsn = 1 + pick % h.lsn();
                let touched = h.touched[lsn as usize].clone();
                let stale: BTreeSet<Id> = touched
                    .iter()
                    .filter(|id| h.last_change.get(*id) != Some(&lsn))
                    .cloned()
                    .collect();
                let result = db.undo(
                    lsn,
                    UndoOptions {
                        dry_run: *dry_run,
                        force: *force,
                    },
                );
                if !stale.is_empty() && !force {
                    let Err(Error::Conflict(conflicts)) = result else {
                        return Err(TestCaseError::fail(format!(
                            "undo of {lsn} with {stale:?} changed since: {result:?}"
                        )));
                    };
                    let named: BTreeSet<Id> = conflicts
                        .iter()
                        .map(|c| (c.collection.clone(), c.key.clone()))
                        .collect();
                    prop_assert_eq!(named, stale);
                    prop_assert_eq!(db.view().lsn(), h.lsn());
                } else {
                    let report = result.unwrap();
                    // The state just before the commit (gone if expired by its time),
                    // given back its expiry.
                    let before =
                        given_back(&h.states[lsn as usize - 1], h.times[lsn as usize], now);
                    let cur = visible(h.now(), now);
                    let mut expected = cur.clone();
                    for id in &touched {
                        match before.get(id) {
                            Some(v) => expected.insert(id.clone(), v.clone()),
                            None => expected.remove(id),
                        };
                    }
                    let changed: BTreeSet<Id> = report
                        .changed
                        .iter()
                        .map(|c| (c.collection.clone(), c.key.clone()))
                        .collect();
                    prop_assert_eq!(&changed, &diff(&cur, &expected));
                    match report.commit_lsn {
                        Some(commit) => {
                            prop_assert!(!dry_run);
                            let rec = commit_record(&db, commit);
                            prop_assert_eq!(rec.reason, CommitReason::Undo);
                            prop_assert_eq!(rec.target_lsn, lsn);
                            prop_assert_eq!(rec.commit_ts, now);
                            let stored = apply(h.now(), &expected, &changed);
                            h.push(commit, rec.commit_ts, stored, changed);
                        }
                        None => prop_assert!(*dry_run || changed.is_empty()),
                    }
                }
            }
            Step::Checkpoint => {
                db.checkpoint().unwrap();
            }
            Step::Reopen => {
                db.close().unwrap();
                db = Db::open_with(&data, opts(&clock)).unwrap();
            }
            Step::Reap => {
                let expired: BTreeSet<Id> = h
                    .now()
                    .iter()
                    .filter(|(_, (_, _, exp, _))| exp.is_some_and(|e| e <= now))
                    .map(|(id, _)| id.clone())
                    .collect();
                let report = db.reap_expired().unwrap();
                prop_assert_eq!(report.reaped, expired.len() as u64);
                match report.lsn {
                    Some(lsn) => {
                        let rec = commit_record(&db, lsn);
                        prop_assert_eq!(rec.reason, CommitReason::Ttl);
                        let stored = visible(h.now(), now);
                        h.push(lsn, rec.commit_ts, stored, expired);
                    }
                    None => prop_assert!(expired.is_empty()),
                }
            }
        }
        prop_assert_eq!(&db_state(&db), h.now());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("AMBERDB_REVERT_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24),
        ..ProptestConfig::default()
    })]

    #[test]
    fn reverts_and_undos_of_random_scopes_and_commits_match_the_model(steps in prop::collection::vec(step(), 5..60)) {
        run(&steps)?;
    }
}

#[test]
fn a_revert_can_be_reverted_and_an_undo_undone() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000_000);
    let db = Db::open_with(tmp.path(), opts(&clock)).unwrap();
    db.put("players", "p1234", json!({"gold": 10})).unwrap(); // 1
    clock.advance(Duration::from_secs(60));
    db.put("players", "p1234", json!({"gold": 0})).unwrap(); // 2: the bad deploy
    let scope = Scope::Key {
        collection: "players".into(),
        key: "p1234".into(),
    };
    let r = db
        .revert(&scope, At::Lsn(1), RevertOptions::default())
        .unwrap();
    assert_eq!(r.commit_lsn, Some(3));
    assert_eq!(
        db.get("players", "p1234").unwrap().json().unwrap(),
        json!({"gold": 10})
    );
    assert_eq!(db.get("players", "p1234").unwrap().meta.version, 3);
    // Reverting the revert brings the bad value back: it is just another commit.
    let r = db
        .revert(&scope, At::Lsn(2), RevertOptions::default())
        .unwrap();
    assert_eq!(r.commit_lsn, Some(4));
    assert_eq!(
        db.get("players", "p1234").unwrap().json().unwrap(),
        json!({"gold": 0})
    );
    // Undo of that revert restores the good value; undo of the undo, the bad one again.
    let u = db.undo(4, UndoOptions::default()).unwrap();
    assert_eq!(
        db.get("players", "p1234").unwrap().json().unwrap(),
        json!({"gold": 10})
    );
    let uu = db
        .undo(u.commit_lsn.unwrap(), UndoOptions::default())
        .unwrap();
    assert_eq!(uu.changed.len(), 1);
    assert_eq!(
        db.get("players", "p1234").unwrap().json().unwrap(),
        json!({"gold": 0})
    );
    // A revert to the state it already has is a no-op with an empty list.
    let none = db
        .revert(&scope, At::Lsn(2), RevertOptions::default())
        .unwrap();
    assert_eq!((none.commit_lsn, none.changed.len()), (None, 0));
}

#[test]
fn a_revert_to_a_point_before_the_retained_log_is_history_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000_000);
    let o = Options {
        history_retention: Duration::ZERO,
        ..opts(&clock)
    };
    let db = Db::open_with(tmp.path(), o).unwrap();
    for i in 0..40 {
        db.put("players", &format!("p{i}"), json!({"pad": "x".repeat(100)}))
            .unwrap();
    }
    db.checkpoint().unwrap();
    let scope = Scope::Collection {
        collection: "players".into(),
    };
    match db.revert(&scope, At::Lsn(1), RevertOptions::default()) {
        Err(Error::HistoryLost { retained_from_lsn }) => assert!(retained_from_lsn > 2),
        other => panic!("expected HistoryLost, got {other:?}"),
    }
    match db.undo(1, UndoOptions::default()) {
        Err(Error::HistoryLost { .. }) => {}
        other => panic!("expected HistoryLost, got {other:?}"),
    }
}

#[test]
fn live_restore_is_one_restore_commit_of_the_whole_database() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000_000);
    let db = Db::open_with(tmp.path(), opts(&clock)).unwrap();
    db.put("players", "a", json!(1)).unwrap();
    db.put("parties", "x", json!(2)).unwrap();
    let t = db.view().commit_ts();
    clock.advance(Duration::from_secs(3600));
    db.put("players", "a", json!(3)).unwrap();
    db.put("players", "b", json!(4)).unwrap();
    db.delete("parties", "x").unwrap();
    let r = db
        .restore_live(At::Time(t + 1), RevertOptions::default())
        .unwrap();
    assert_eq!(r.target_lsn, 2);
    assert_eq!(r.changed.len(), 3);
    let rec = commit_record(&db, r.commit_lsn.unwrap());
    assert_eq!(
        (rec.reason, rec.target_lsn, rec.ops.len()),
        (CommitReason::Restore, 2, 3)
    );
    assert_eq!(db.get("players", "a").unwrap().json().unwrap(), json!(1));
    assert!(db.get("players", "b").is_none());
    assert_eq!(db.get("parties", "x").unwrap().json().unwrap(), json!(2));
}

#[test]
fn a_revert_to_lsn_0_of_a_log_that_starts_at_1_empties_the_scope() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000_000);
    let db = Db::open_with(tmp.path(), opts(&clock)).unwrap();
    let before = clock.now_micros() - 1;
    clock.advance(Duration::from_secs(1));
    db.put("players", "a", json!(1)).unwrap();
    db.put("players", "b", json!(2)).unwrap();
    let scope = Scope::Collection {
        collection: "players".into(),
    };
    let dry = db
        .revert(&scope, At::Time(before), RevertOptions { dry_run: true })
        .unwrap();
    assert_eq!((dry.target_lsn, dry.changed.len()), (0, 2));
    let r = db
        .revert(&scope, At::Lsn(0), RevertOptions::default())
        .unwrap();
    assert_eq!(
        r.changed
            .iter()
            .filter(|c| c.action == Action::Deleted)
            .count(),
        2
    );
    assert_eq!(db.count("players"), 0);
}

/// Regression (a CI seed of the property above): a document whose expiry at the target has
/// passed comes back with its TTL counted from the revert. Reverting to that target again
/// at the same moment writes exactly what is stored, so it must be a no-op, not a commit
/// that "restores" the same value and expiry (the planner compared the target's own, passed
/// expiry with the current one).
#[test]
fn a_second_revert_to_an_expired_version_at_the_same_moment_is_a_no_op() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000_000);
    let db = Db::open_with(tmp.path(), opts(&clock)).unwrap();
    let mut tx = Transaction::new();
    tx.put("players", "p1", json!({"gold": 10}))
        .ttl(Duration::from_secs(10));
    assert_eq!(db.commit(&tx).unwrap().lsn, 1);
    clock.advance(Duration::from_secs(15));
    let scope = Scope::Key {
        collection: "players".into(),
        key: "p1".into(),
    };
    let first = db
        .revert(&scope, At::Lsn(1), RevertOptions::default())
        .unwrap();
    assert_eq!(first.commit_lsn, Some(2));
    let doc = db.get("players", "p1").unwrap();
    assert_eq!(doc.meta.expires_at, Some(clock.now_micros() + 10_000_000));
    let again = db
        .revert(&scope, At::Lsn(1), RevertOptions::default())
        .unwrap();
    assert_eq!(again.changed.len(), 0, "{again:?}");
    assert_eq!(again.commit_lsn, None);
    assert_eq!(db.view().lsn(), 2);
}

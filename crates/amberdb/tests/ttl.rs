//! TTL (issue 10): expiry is visible at once, at the injected clock, on every read path
//! (get, list, count, collection listings, transaction preconditions); writes set, refresh,
//! keep or clear it as they say; a collection spec gives a default; the reaper deletes
//! expired documents in logged commits with reason `ttl`; reopen and checkpoints keep it.
//! No test sleeps: the clock is a `ManualClock` and reaper passes are explicit.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use amberdb::clock::ManualClock;
use amberdb::log::record::{CommitReason, CommitRecord, OpKind};
use amberdb::log::segment::{list_segments, scan};
use amberdb::spec::CollectionSpec;
use amberdb::{ConflictReason, Db, Error, ListOptions, Options, Patch, Transaction, LOG_DIR};
use serde_json::json;

const SEC: u64 = 1_000_000;
const T0: u64 = 1_800_000_000 * SEC;

fn opts(clock: &ManualClock) -> Options {
    Options {
        clock: Arc::new(clock.clone()),
        ttl_reap_interval: None,
        checkpoint_interval: None,
        ..Options::default()
    }
}

fn open(dir: &Path, clock: &ManualClock) -> Db {
    Db::open_with(dir, opts(clock)).unwrap()
}

/// Every commit in the log, in LSN order.
fn log_commits(dir: &Path) -> Vec<CommitRecord> {
    let mut out = vec![];
    for (_, path) in list_segments(&dir.join(LOG_DIR)).unwrap() {
        let bytes = std::fs::read(&path).unwrap();
        scan(&bytes, |rec, _| out.push(rec)).unwrap();
    }
    out
}

fn put_ttl(db: &Db, key: &str, value: serde_json::Value, ttl_s: u64) -> amberdb::Committed {
    let mut t = Transaction::new();
    t.put("c", key, value).ttl(Duration::from_secs(ttl_s));
    db.commit(&t).unwrap()
}

#[test]
fn an_expired_document_is_invisible_at_once_to_get_list_count_and_collections() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    let c = put_ttl(&db, "a", json!(1), 10);
    db.put("c", "b", json!(2)).unwrap();
    let ts = c.commit_ts;
    assert_eq!(c.results[0].expires_at, Some(ts + 10 * SEC));
    let doc = db.get("c", "a").unwrap();
    assert_eq!(doc.meta.expires_at, Some(ts + 10 * SEC));
    assert_eq!(
        doc.envelope("c")["expires_at_us"],
        json!(ts + 10 * SEC),
        "the envelope shows the expiry"
    );
    assert_eq!(db.count("c"), 2);

    // One microsecond before the expiry it is there; at the expiry it is gone everywhere.
    clock.set(ts + 10 * SEC - 1);
    assert!(db.get("c", "a").is_some());
    clock.set(ts + 10 * SEC);
    assert!(db.get("c", "a").is_none(), "get");
    let view = db.view();
    assert!(view.get("c", "a").is_none(), "view get");
    assert_eq!(db.count("c"), 1, "count");
    let page = db.list("c", &ListOptions::default());
    let keys: Vec<_> = page.docs.iter().map(|d| d.key.to_string()).collect();
    assert_eq!(keys, ["b"], "list");
    let page = db.list(
        "c",
        &ListOptions {
            limit: 1,
            ..ListOptions::default()
        },
    );
    assert_eq!(page.docs.len(), 1);
    assert_eq!(page.next, None, "a page never ends on an expired document");
    let colls = view.collections();
    assert_eq!(colls.len(), 1);
    assert_eq!(colls[0].documents, 1, "collection listing");
    assert_eq!(db.stats().ttl_expired_pending, 1);
    // Nothing was deleted yet: the document is stored until the reaper removes it.
    assert_eq!(view.iter_all().count(), 2);
}

#[test]
fn txn_preconditions_count_an_expired_document_as_missing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    put_ttl(&db, "a", json!({"n": 1}), 5);
    clock.advance(Duration::from_secs(5));

    for (what, build) in [
        (
            "replace",
            Box::new(|t: &mut Transaction| {
                t.replace("c", "a", json!(2));
            }) as Box<dyn Fn(&mut Transaction)>,
        ),
        (
            "patch",
            Box::new(|t: &mut Transaction| {
                t.patch("c", "a", Patch::Merge(json!({"n": 2})));
            }),
        ),
    ] {
        let mut t = Transaction::new();
        build(&mut t);
        match db.commit(&t) {
            Err(Error::Conflict(c)) => {
                assert_eq!(c[0].reason, ConflictReason::Missing, "{what}");
                assert_eq!(c[0].actual, 0, "{what}");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    let mut t = Transaction::new();
    t.check("c", "a", 1);
    assert!(matches!(db.commit(&t), Err(Error::Conflict(_))), "check 1");
    let mut t = Transaction::new();
    t.check("c", "a", 0);
    t.put("c", "x", json!(0)).if_version(0);
    db.commit(&t).unwrap();
    let mut t = Transaction::new();
    t.create("c", "a", json!("new")).if_version(0);
    let c = db.commit(&t).unwrap();
    assert_eq!(
        c.results[0].version, 2,
        "the create continues the version counter"
    );
    assert_eq!(db.get("c", "a").unwrap().meta.expires_at, None);
}

#[test]
fn a_create_over_an_expired_unreaped_document_continues_its_version_and_links_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    db.put("c", "a", json!(1)).unwrap();
    let mut t = Transaction::new();
    t.put("c", "a", json!(2)).ttl(Duration::from_secs(1));
    let second = db.commit(&t).unwrap();
    assert_eq!(second.results[0].version, 2);
    clock.advance(Duration::from_secs(2));
    let mut t = Transaction::new();
    t.create("c", "a", json!(3));
    let third = db.commit(&t).unwrap();
    assert_eq!(third.results[0].version, 3, "never repeats version 1 or 2");
    db.close().unwrap();
    let rec = log_commits(dir.path())
        .into_iter()
        .find(|r| r.lsn == third.lsn)
        .unwrap();
    assert_eq!(
        rec.ops[0].prev_lsn, second.lsn,
        "links to the expired version"
    );
    assert_eq!(rec.ops[0].op, OpKind::Create);
}

#[test]
fn patch_keeps_the_expiry_put_clears_it_and_a_new_ttl_refreshes_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    let first = put_ttl(&db, "a", json!({"n": 1}), 60);
    let expiry = first.commit_ts + 60 * SEC;
    clock.advance(Duration::from_secs(10));
    let mut t = Transaction::new();
    t.patch("c", "a", Patch::Merge(json!({"n": 2})));
    let c = db.commit(&t).unwrap();
    assert_eq!(c.results[0].expires_at, Some(expiry), "patch keeps it");
    assert_eq!(db.get("c", "a").unwrap().meta.expires_at, Some(expiry));

    let mut t = Transaction::new();
    t.patch("c", "a", Patch::Merge(json!({"n": 3})))
        .ttl(Duration::from_secs(100));
    let c = db.commit(&t).unwrap();
    assert_eq!(
        db.get("c", "a").unwrap().meta.expires_at,
        Some(c.commit_ts + 100 * SEC),
        "a patch that sets a TTL refreshes it"
    );
    let at = c.commit_ts + 500 * SEC;
    let mut t = Transaction::new();
    t.put("c", "a", json!(4)).expires_at(at);
    db.commit(&t).unwrap();
    assert_eq!(
        db.get("c", "a").unwrap().meta.expires_at,
        Some(at),
        "expires_at"
    );

    db.put("c", "a", json!(5)).unwrap();
    assert_eq!(
        db.get("c", "a").unwrap().meta.expires_at,
        None,
        "put clears it"
    );
    clock.advance(Duration::from_secs(10_000));
    assert!(db.get("c", "a").is_some());
}

#[test]
fn an_expiry_in_the_past_a_zero_ttl_and_one_past_the_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    for (what, write) in [
        (
            "past",
            Box::new(|t: &mut Transaction| {
                t.put("c", "a", json!(1)).expires_at(T0 - SEC);
            }) as Box<dyn Fn(&mut Transaction)>,
        ),
        (
            "zero",
            Box::new(|t: &mut Transaction| {
                t.put("c", "a", json!(1)).ttl(Duration::ZERO);
            }),
        ),
        (
            "long",
            Box::new(|t: &mut Transaction| {
                t.put("c", "a", json!(1))
                    .ttl(amberdb::limits::MAX_TTL + Duration::from_secs(1));
            }),
        ),
        (
            "far",
            Box::new(|t: &mut Transaction| {
                t.put("c", "a", json!(1)).expires_at(u64::MAX);
            }),
        ),
    ] {
        let mut t = Transaction::new();
        write(&mut t);
        assert!(
            matches!(db.commit(&t), Err(Error::InvalidArgument(_))),
            "{what}"
        );
    }
    assert_eq!(db.view().lsn(), 0, "nothing was logged");
    let mut t = Transaction::new();
    t.put("c", "a", json!(1)).ttl(amberdb::limits::MAX_TTL);
    db.commit(&t).unwrap();
}

#[test]
fn the_collection_default_ttl_applies_to_writes_without_their_own_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    assert_eq!(db.spec("sessions").unwrap().default_ttl_s, None);
    let spec = CollectionSpec {
        default_ttl_s: Some(30),
        ..CollectionSpec::default()
    };
    db.set_spec("sessions", &spec).unwrap();
    let c = db.put("sessions", "s1", json!(1)).unwrap();
    assert_eq!(c.results[0].expires_at, Some(c.commit_ts + 30 * SEC));
    let mut t = Transaction::new();
    t.put("sessions", "s2", json!(2))
        .ttl(Duration::from_secs(5));
    t.put("sessions", "s3", json!(3)).never_expires();
    t.put("other", "o", json!(0));
    let c2 = db.commit(&t).unwrap();
    assert_eq!(
        c2.results[0].expires_at,
        Some(c2.commit_ts + 5 * SEC),
        "own TTL wins"
    );
    assert_eq!(c2.results[1].expires_at, None, "never_expires");
    assert_eq!(
        c2.results[2].expires_at, None,
        "other collections have no default"
    );
    // The spec collection is the engine's: hidden from listings of collections.
    let names: Vec<_> = db
        .view()
        .collections()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["other", "sessions"]);
    assert!(db
        .set_spec(
            "sessions",
            &CollectionSpec {
                default_ttl_s: Some(0),
                ..CollectionSpec::default()
            }
        )
        .is_err());
    db.close().unwrap();

    let db = open(dir.path(), &clock);
    assert_eq!(
        db.spec("sessions").unwrap(),
        spec,
        "the spec is logged and replayed"
    );
    // Counted from each write: a later write refreshes the expiry.
    clock.advance(Duration::from_secs(20));
    let c3 = db.put("sessions", "s1", json!(11)).unwrap();
    assert_eq!(c3.results[0].expires_at, Some(c3.commit_ts + 30 * SEC));
    clock.advance(Duration::from_secs(20));
    assert!(db.get("sessions", "s1").is_some());
    assert!(db.get("sessions", "s2").is_none());
    db.set_spec("sessions", &CollectionSpec::default()).unwrap();
    let c4 = db.put("sessions", "s4", json!(4)).unwrap();
    assert_eq!(c4.results[0].expires_at, None, "default removed");
}

#[test]
fn the_reaper_deletes_expired_documents_in_a_ttl_commit_and_a_refresh_wins() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = Db::open_with(
        dir.path(),
        Options {
            ttl_reap_batch: 2,
            ..opts(&clock)
        },
    )
    .unwrap();
    for k in ["a", "b", "c"] {
        put_ttl(&db, k, json!(k), 10);
    }
    db.put("c", "keep", json!(0)).unwrap();
    assert_eq!(
        db.reap_expired().unwrap().candidates,
        0,
        "nothing expired yet"
    );
    clock.advance(Duration::from_secs(11));
    // "a" is refreshed after it expired and before any pass: the reaper leaves it alone
    // (the race of a refresh between a pass's view and its commit is pinned beside the
    // reaper, `ttl::tests`).
    let mut t = Transaction::new();
    t.put("c", "a", json!("again"))
        .ttl(Duration::from_secs(100));
    db.commit(&t).unwrap();
    let r = db.reap_expired().unwrap();
    assert_eq!(r.candidates, 2, "batch size bounds a pass");
    assert_eq!(r.reaped, 2);
    let r2 = db.reap_expired().unwrap();
    assert_eq!(r2.reaped, 0, "b and c were reaped by the first pass");
    assert_eq!(db.stats().ttl_reaped, 2);
    assert_eq!(db.stats().ttl_expired_pending, 0);
    assert_eq!(
        db.get("c", "a").unwrap().value_as::<String>().unwrap(),
        "again"
    );
    let lsn = r.lsn.unwrap();
    // A create after the reap continues the versions through the tombstone.
    let mut t = Transaction::new();
    t.create("c", "b", json!("b2"));
    assert_eq!(db.commit(&t).unwrap().results[0].version, 2);
    db.close().unwrap();
    let rec = log_commits(dir.path())
        .into_iter()
        .find(|r| r.lsn == lsn)
        .unwrap();
    assert_eq!(rec.reason, CommitReason::Ttl);
    let keys: Vec<_> = rec.ops.iter().map(|o| o.key.to_string()).collect();
    assert_eq!(keys, ["b", "c"]);
    assert!(rec
        .ops
        .iter()
        .all(|o| o.op == OpKind::Delete && o.doc.is_none() && o.prev_lsn > 0));
}

#[test]
fn a_reaper_delete_of_a_document_written_since_its_pass_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    put_ttl(&db, "a", json!(1), 1);
    clock.advance(Duration::from_secs(1));
    // The reaper's delete names the version it saw; a write in between (here: a create over
    // the expired document, version 2) makes it a no-op rather than a conflict.
    let view_version = db.view().iter_all().next().unwrap().1.meta.version;
    assert_eq!(view_version, 1);
    let mut t = Transaction::new();
    t.create("c", "a", json!(2)).ttl(Duration::from_secs(1));
    db.commit(&t).unwrap();
    // Now version 2 is live; pass over it before it expires: nothing to do.
    assert_eq!(db.reap_expired().unwrap().candidates, 0);
    clock.advance(Duration::from_secs(1));
    let r = db.reap_expired().unwrap();
    assert_eq!((r.candidates, r.reaped), (1, 1));
    assert!(db.view().iter_all().next().is_none());
}

#[test]
fn reopen_and_checkpoint_keep_expiries() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    let c = put_ttl(&db, "a", json!(1), 100);
    put_ttl(&db, "b", json!(2), 200);
    let expiry = c.commit_ts + 100 * SEC;
    db.close().unwrap();
    // Replay of the log.
    let db = Db::open_with(
        dir.path(),
        Options {
            checkpoint_on_close: false,
            ..opts(&clock)
        },
    )
    .unwrap();
    assert_eq!(db.get("c", "a").unwrap().meta.expires_at, Some(expiry));
    db.checkpoint().unwrap();
    db.close().unwrap();
    // From the checkpoint.
    let db = open(dir.path(), &clock);
    assert_eq!(db.recovery_report().commits_replayed, 0);
    assert_eq!(db.get("c", "a").unwrap().meta.expires_at, Some(expiry));
    clock.advance(Duration::from_secs(150));
    assert!(db.get("c", "a").is_none());
    assert_eq!(
        db.count("c"),
        1,
        "the expiry index is rebuilt from the checkpoint"
    );
    assert_eq!(db.reap_expired().unwrap().reaped, 1);
}

// ---- Model-based property test: random TTL writes and clock steps vs a plain model ----

#[derive(Debug, Clone)]
enum Step {
    Put { key: u8, ttl_s: Option<u8> },
    Patch { key: u8, ttl_s: Option<u8> },
    Create { key: u8 },
    Delete { key: u8 },
    Advance { secs: u8 },
    Reap,
    Reopen,
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    let key = 0u8..6;
    let ttl = proptest::option::of(1u8..20);
    prop_oneof![
        3 => (key.clone(), ttl.clone()).prop_map(|(key, ttl_s)| Step::Put { key, ttl_s }),
        2 => (key.clone(), ttl).prop_map(|(key, ttl_s)| Step::Patch { key, ttl_s }),
        1 => key.clone().prop_map(|key| Step::Create { key }),
        1 => key.prop_map(|key| Step::Delete { key }),
        3 => (0u8..15).prop_map(|secs| Step::Advance { secs }),
        1 => Just(Step::Reap),
        1 => Just(Step::Reopen),
    ]
}

/// The model: per key, the value counter, the highest version ever and the expiry.
#[derive(Debug, Default, Clone)]
struct ModelDoc {
    n: u64,
    version: u64,
    expires_at: Option<u64>,
    live: bool,
}

fn run_model(steps: &[Step]) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut db = open(dir.path(), &clock);
    let mut model: BTreeMap<u8, ModelDoc> = BTreeMap::new();
    let mut counter = 0u64;
    for (i, s) in steps.iter().enumerate() {
        // The next commit's time: the manual clock's reading, or 1 us after the last commit
        // when the clock has not moved (the commit clock never repeats a timestamp).
        let next_ts = (clock.now_micros()).max(db.view().commit_ts() + 1);
        let alive = |d: &ModelDoc, now: u64| d.live && d.expires_at.is_none_or(|e| e > now);
        match s {
            Step::Put { key, ttl_s } | Step::Patch { key, ttl_s } => {
                counter += 1;
                let is_patch = matches!(s, Step::Patch { .. });
                let mut t = Transaction::new();
                let k = key.to_string();
                let w = if is_patch {
                    t.patch("c", &k, Patch::Merge(json!({"n": counter})))
                } else {
                    t.put("c", &k, json!({"n": counter}))
                };
                if let Some(ttl) = ttl_s {
                    w.ttl(Duration::from_secs(u64::from(*ttl)));
                }
                let res = db.commit(&t);
                let d = model.entry(*key).or_default();
                let now = next_ts;
                if is_patch && !alive(d, now) {
                    assert!(matches!(res, Err(Error::Conflict(_))), "step {i}: {res:?}");
                    continue;
                }
                let c = res.unwrap();
                assert_eq!(c.commit_ts, next_ts, "step {i}");
                d.expires_at = match ttl_s {
                    Some(ttl) => Some(c.commit_ts + u64::from(*ttl) * SEC),
                    None if is_patch => d.expires_at,
                    None => None,
                };
                d.version += 1;
                d.n = counter;
                d.live = true;
                assert_eq!(c.results[0].version, d.version, "step {i}");
                assert_eq!(c.results[0].expires_at, d.expires_at, "step {i}");
            }
            Step::Create { key } => {
                counter += 1;
                let mut t = Transaction::new();
                t.create("c", &key.to_string(), json!({"n": counter}));
                let res = db.commit(&t);
                let d = model.entry(*key).or_default();
                let now = next_ts;
                if alive(d, now) {
                    assert!(matches!(res, Err(Error::Conflict(_))), "step {i}: {res:?}");
                    continue;
                }
                let c = res.unwrap();
                d.version += 1;
                d.n = counter;
                d.live = true;
                d.expires_at = None;
                assert_eq!(c.results[0].version, d.version, "step {i}");
            }
            Step::Delete { key } => {
                let c = db.delete("c", &key.to_string()).unwrap();
                let d = model.entry(*key).or_default();
                assert_eq!(c.results[0].written, alive(d, next_ts), "step {i}");
                if c.results[0].written {
                    d.live = false;
                }
            }
            Step::Advance { secs } => clock.advance(Duration::from_secs(u64::from(*secs))),
            Step::Reap => {
                db.reap_expired().unwrap();
            }
            Step::Reopen => {
                db.close().unwrap();
                db = open(dir.path(), &clock);
            }
        }
        // After every step: every read path agrees with the model at the view's now.
        let view = db.view();
        let now = view.now();
        let expect: Vec<(String, u64, u64)> = model
            .iter()
            .filter(|(_, d)| alive(d, now))
            .map(|(k, d)| (k.to_string(), d.version, d.n))
            .collect();
        let got: Vec<(String, u64, u64)> = view
            .list("c", &ListOptions::default())
            .docs
            .iter()
            .map(|d| {
                let n = d.json().unwrap()["n"].as_u64().unwrap();
                (d.key.to_string(), d.meta.version, n)
            })
            .collect();
        assert_eq!(got, expect, "list after step {i} ({s:?})");
        assert_eq!(view.count("c"), expect.len() as u64, "count after step {i}");
        for k in 0u8..6 {
            let m = model.get(&k).filter(|d| alive(d, now));
            let g = view.get("c", &k.to_string());
            assert_eq!(
                g.as_ref().map(|d| (d.meta.version, d.meta.expires_at)),
                m.map(|d| (d.version, d.expires_at)),
                "get {k} after step {i} ({s:?})"
            );
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: std::env::var("AMBERDB_TTL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24),
        ..proptest::prelude::ProptestConfig::default()
    })]

    #[test]
    fn random_ttl_writes_and_clock_steps_match_a_plain_model(
        steps in proptest::collection::vec(step(), 1..40)
    ) {
        run_model(&steps);
    }
}

/// As-of reads see expiry too: at a point (an LSN or a time) at or after a document's
/// `expires_at` it counts as missing, before it is there, whether or not it was reaped since.
#[test]
fn as_of_reads_leave_out_documents_expired_at_the_point() {
    use amberdb::history::At;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let db = open(dir.path(), &clock);
    let a = put_ttl(&db, "a", json!(1), 10); // expires at T0 + 10 s
    clock.advance(Duration::from_secs(5));
    let b = db.put("c", "b", json!(2)).unwrap(); // T0 + 5 s
    clock.advance(Duration::from_secs(10));
    let c = db.put("c", "x", json!(3)).unwrap(); // T0 + 15 s
    let at_lsn = |lsn| db.get_at("c", "a", At::Lsn(lsn)).unwrap().is_some();
    assert!(at_lsn(a.lsn) && at_lsn(b.lsn), "live before its expiry");
    assert!(!at_lsn(c.lsn), "expired at the later commit");
    let at_time = |t| db.get_at("c", "a", At::Time(t)).unwrap().is_some();
    assert!(at_time(T0 + 10 * SEC - 1));
    assert!(!at_time(T0 + 10 * SEC), "expired exactly at its expires_at");
    let keys = |at| {
        let (_, page) = db.list_at("c", &ListOptions::default(), at).unwrap();
        page.docs
            .iter()
            .map(|d| d.key.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(At::Lsn(b.lsn)), ["a", "b"]);
    assert_eq!(keys(At::Lsn(c.lsn)), ["b", "x"]);
    // Reaped since: the point before its expiry still shows it.
    db.reap_expired().unwrap();
    assert!(at_lsn(b.lsn));
    assert!(!at_lsn(c.lsn));
}

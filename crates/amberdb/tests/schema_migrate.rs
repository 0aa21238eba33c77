//! Batch migration: exact dry-run counts, all-or-nothing real runs in one commit with reason
//! `migration`, the applied-migration record, and a clear refusal when the rewrite does not
//! fit one commit.
#![allow(clippy::unwrap_used)]

use amberdb::schema::MigrateOptions;
use amberdb::spec::CollectionSpec;
use amberdb::{Db, Transaction};
use serde_json::{json, Value};

fn spec(current: u32, up: Value, down: Option<Value>) -> CollectionSpec {
    let mut m = json!({"from": 1, "to": 2, "up": up});
    if let Some(d) = down {
        m["down"] = d;
    }
    serde_json::from_value(json!({
        "schema_version": current,
        "versions": {"1": {}, "2": {"schema": {"type": "object", "required": ["hp"]}}},
        "migrations": [m]}))
    .unwrap()
}

fn value(d: &amberdb::Document) -> Value {
    serde_json::from_slice(&d.value).unwrap()
}

#[test]
fn a_dry_run_reports_exact_counts_sizes_and_round_trip_failures() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    // up: health -> hp; down renames back but also drops `extra`, so documents with an
    // `extra` field fail the round trip.
    let up = json!([{"op": "rename", "path": "/health", "to": "hp"}]);
    let down = json!([{"op": "rename", "path": "/hp", "to": "health"},
                      {"op": "remove", "path": "/extra"}]);
    db.set_spec("p", &spec(1, up.clone(), Some(down.clone())))
        .unwrap();
    let mut before = 0;
    for i in 0..30 {
        let v = if i % 10 == 0 {
            json!({"health": i, "extra": true})
        } else if i % 10 == 1 {
            json!({"name": "no health"})
        } else {
            json!({"health": i})
        };
        before += amberdb::canonical_json(&v).len() as u64;
        db.put("p", &format!("k{i:02}"), v).unwrap();
    }
    let lsn = db.view().lsn();
    let r = db
        .migrate(
            "p",
            MigrateOptions {
                to: 2,
                dry_run: true,
            },
        )
        .unwrap();
    assert_eq!(r.documents, 30);
    assert_eq!(r.by_stored_version, [(1, 30)].into_iter().collect());
    // Three lack `health`, so they fail the v2 schema (`required: ["hp"]`).
    assert_eq!(r.failure_count, 3);
    let mut keys: Vec<&str> = r.failures.iter().map(|f| f.key.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["k01", "k11", "k21"]);
    assert!(
        r.failures[0]
            .error
            .contains("\"hp\" is a required property"),
        "{:?}",
        r.failures[0]
    );
    assert_eq!(r.would_change, 27);
    assert_eq!(r.bytes_before, before);
    // "health" -> "hp" saves 4 bytes on each of the 27 migrating documents; the failing
    // ones are not counted after.
    let failing = 3 * amberdb::canonical_json(&json!({"name": "no health"})).len() as u64;
    assert_eq!(r.bytes_after, before - 27 * 4 - failing);
    assert!(r.round_trip_checked);
    assert_eq!(r.round_trip_failure_count, 3);
    assert_eq!(r.round_trip_failures, ["k00", "k10", "k20"]);
    assert_eq!(r.lsn, None);
    assert_eq!(db.view().lsn(), lsn, "a dry run writes nothing");
    db.close().unwrap();
}

#[test]
fn a_jq_step_failing_on_3_of_10000_documents_fails_the_real_run_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    db.set_spec(
        "p",
        &spec(1, json!([{"op": "jq", "filter": ".hp = (.hp + 1)"}]), None),
    )
    .unwrap();
    let mut tx = Transaction::new();
    for i in 0..10_000 {
        let hp = if [17, 4711, 9999].contains(&i) {
            json!("broken")
        } else {
            json!(i)
        };
        tx.put("p", &format!("k{i:05}"), json!({"hp": hp}));
    }
    db.commit(&tx).unwrap();
    let lsn = db.view().lsn();
    let r = db
        .migrate(
            "p",
            MigrateOptions {
                to: 2,
                dry_run: false,
            },
        )
        .unwrap();
    assert_eq!(r.failure_count, 3);
    let keys: Vec<&str> = r.failures.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(keys, ["k00017", "k04711", "k09999"]);
    assert!(r.failures.iter().all(|f| f.error.contains("jq error")));
    assert_eq!(r.lsn, None);
    assert_eq!(db.view().lsn(), lsn, "nothing was written");
    assert_eq!(db.spec("p").unwrap().schema_version, Some(1));
    assert_eq!(db.get("p", "k00000").unwrap().meta.schema_version, 1);
    assert!(db.migrations("p").unwrap().is_empty());
    db.close().unwrap();
}

#[test]
fn a_real_run_rewrites_every_document_and_the_spec_in_one_migration_commit() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let up = json!([{"op": "rename", "path": "/health", "to": "hp"}]);
    let down = json!([{"op": "rename", "path": "/hp", "to": "health"}]);
    db.set_spec("p", &spec(1, up.clone(), Some(down.clone())))
        .unwrap();
    for i in 0..100 {
        db.put("p", &format!("k{i:03}"), json!({"health": i}))
            .unwrap();
    }
    let created = db.get("p", "k007").unwrap().meta;
    // What a lazy read at version 2 shows before the migration...
    db.set_spec("p", &spec(2, up.clone(), Some(down.clone())))
        .unwrap();
    let lazy = db.get_as("p", "k007", None).unwrap().unwrap();
    db.set_spec("p", &spec(1, up.clone(), Some(down.clone())))
        .unwrap();
    let before = db.view().lsn();
    let r = db
        .migrate(
            "p",
            MigrateOptions {
                to: 2,
                dry_run: false,
            },
        )
        .unwrap();
    assert_eq!(
        (r.documents, r.would_change, r.failure_count),
        (100, 100, 0)
    );
    let lsn = r.lsn.unwrap();
    assert_eq!(lsn, before + 1, "one commit");
    assert_eq!(db.spec("p").unwrap().schema_version, Some(2));
    let view = db.view();
    let page = view.list("p", &amberdb::ListOptions::default());
    assert_eq!(page.docs.len(), 100);
    for d in &page.docs {
        assert_eq!(d.meta.schema_version, 2);
        assert_eq!(d.meta.lsn, lsn);
    }
    // ...equals the batch-migrated stored document; created_at and the version counter go on.
    let stored = db.get("p", "k007").unwrap();
    assert_eq!(value(&stored), value(&lazy.doc));
    assert_eq!(stored.meta.created_at, created.created_at);
    assert_eq!(stored.meta.version, created.version + 1);
    let applied = db.migrations("p").unwrap();
    assert_eq!(applied.len(), 1);
    assert_eq!(
        (applied[0].from, applied[0].to, applied[0].lsn),
        (1, 2, lsn)
    );
    assert_eq!(applied[0].rewritten, 100);
    assert_eq!(
        applied[0].checksums,
        vec![db.spec("p").unwrap().migrations[0]
            .checksum
            .clone()
            .unwrap()]
    );
    // The commit says why it was made.
    let h = db
        .history("p", "k007", amberdb::history::HistoryOptions::default())
        .unwrap();
    assert_eq!(h.versions[0].lsn, lsn);
    assert_eq!(h.versions[0].op, "migration");
    // Rolling back is a migration down.
    let r = db
        .migrate(
            "p",
            MigrateOptions {
                to: 1,
                dry_run: false,
            },
        )
        .unwrap();
    assert_eq!(r.would_change, 100);
    assert_eq!(value(&db.get("p", "k007").unwrap()), json!({"health": 7}));
    assert_eq!(db.spec("p").unwrap().schema_version, Some(1));
    assert_eq!(db.migrations("p").unwrap().len(), 2);
    db.close().unwrap();
}

#[test]
fn a_migration_that_does_not_fit_one_commit_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let opts = amberdb::Options {
        max_txn_bytes: 64 << 10,
        ..Default::default()
    };
    let db = Db::open_with(dir.path(), opts).unwrap();
    db.set_spec(
        "p",
        &spec(1, json!([{"op": "set", "path": "/hp", "value": 1}]), None),
    )
    .unwrap();
    for i in 0..100 {
        db.put("p", &format!("k{i:03}"), json!({"pad": "x".repeat(1000)}))
            .unwrap();
    }
    let lsn = db.view().lsn();
    let err = db
        .migrate(
            "p",
            MigrateOptions {
                to: 2,
                dry_run: false,
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("one atomic commit"), "{err}");
    assert_eq!(db.view().lsn(), lsn);
    db.close().unwrap();
}

/// Regression: the fit check counted 4 KiB of overhead per document (the checkpoint-entry
/// bound), so a million small documents (~230 MB of frame) were refused as over 1 GiB. Here
/// 1,000 small documents fit a 256 KiB commit (about 100 KiB of frame) and must migrate;
/// the old estimate (4 MB) refused them.
#[test]
fn many_small_documents_that_fit_one_commit_are_migrated_not_refused() {
    let dir = tempfile::tempdir().unwrap();
    let opts = amberdb::Options {
        max_txn_bytes: 256 << 10,
        ..Default::default()
    };
    let db = Db::open_with(dir.path(), opts).unwrap();
    db.set_spec(
        "p",
        &spec(1, json!([{"op": "set", "path": "/hp", "value": 1}]), None),
    )
    .unwrap();
    for chunk in (0..1000).collect::<Vec<_>>().chunks(100) {
        let mut tx = Transaction::new();
        for i in chunk {
            tx.put("p", &format!("k{i:04}"), json!({"n": i}));
        }
        db.commit(&tx).unwrap();
    }
    let report = db
        .migrate(
            "p",
            MigrateOptions {
                to: 2,
                dry_run: false,
            },
        )
        .unwrap();
    assert_eq!(report.would_change, 1000);
    assert!(report.lsn.is_some());
    assert_eq!(
        db.get("p", "k0999")
            .map(|d| (value(&d), d.meta.schema_version)),
        Some((json!({"n": 999, "hp": 1}), 2))
    );
    db.close().unwrap();
}

/// A spec migrating 1 -> 2 through the native step `step`.
fn native_spec(current: u32, step: &str) -> CollectionSpec {
    serde_json::from_value(json!({
        "schema_version": current, "versions": {"1": {}, "2": {}},
        "migrations": [{"from": 1, "to": 2, "up": [{"op": "native", "name": step}]}]}))
    .unwrap()
}

#[test]
fn a_write_after_the_migrations_read_view_makes_it_conflict_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // The step writes k05 while the migration is converting documents, i.e. after the
    // migration took its read view and before it commits: a concurrent write.
    let handle: std::sync::Arc<std::sync::Mutex<Option<Db>>> = Default::default();
    let mut opts = amberdb::Options::default();
    let h = handle.clone();
    opts.native_steps
        .register("hp_with_a_concurrent_write", move |mut v| {
            // Taken once, so the second migration below runs without it (and the handle's
            // clone does not keep the database alive past the test).
            if let Some(db) = h.lock().unwrap().take() {
                db.put("p", "k05", json!({"health": 99}))
                    .map_err(|e| e.to_string())?;
            }
            let hp = v
                .as_object_mut()
                .and_then(|o| o.remove("health"))
                .ok_or("no health")?;
            v["hp"] = hp;
            Ok(v)
        });
    let db = Db::open_with(dir.path(), opts).unwrap();
    db.set_spec("p", &native_spec(1, "hp_with_a_concurrent_write"))
        .unwrap();
    for i in 0..10 {
        db.put("p", &format!("k{i:02}"), json!({"health": i}))
            .unwrap();
    }
    *handle.lock().unwrap() = Some(db.clone());
    let lsn = db.view().lsn();
    let to2 = MigrateOptions {
        to: 2,
        dry_run: false,
    };
    let e = db.migrate("p", to2).unwrap_err();
    let amberdb::Error::Conflict(conflicts) = &e else {
        panic!("expected a conflict, got {e}");
    };
    assert_eq!(
        conflicts
            .iter()
            .map(|c| (c.key.as_str(), c.expected, c.actual))
            .collect::<Vec<_>>(),
        vec![("k05", 1, 2)],
        "{e}"
    );
    // Only the concurrent write was committed: every other document, the spec and the
    // migration record are as before.
    assert_eq!(db.view().lsn(), lsn + 1);
    assert_eq!(db.spec("p").unwrap().schema_version, Some(1));
    assert!(db.migrations("p").unwrap().is_empty());
    for i in 0..10 {
        let d = db.get("p", &format!("k{i:02}")).unwrap();
        assert_eq!(d.meta.schema_version, 1);
        let want = if i == 5 { 99 } else { i };
        assert_eq!(value(&d), json!({"health": want}));
    }
    // Run again, with nothing writing meanwhile: every document moves, k05 from its new value.
    let r = db.migrate("p", to2).unwrap();
    assert_eq!((r.documents, r.would_change), (10, 10));
    let d = db.get("p", "k05").unwrap();
    assert_eq!(
        (value(&d), d.meta.schema_version, d.meta.version),
        (json!({"hp": 99}), 2, 3)
    );
    db.close().unwrap();
}

#[test]
fn a_migration_growing_a_document_past_the_document_limit_fails_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = amberdb::Options {
        max_doc_bytes: 1024,
        ..Default::default()
    };
    opts.native_steps.register("pad", |mut v| {
        if v["big"] == json!(true) {
            v["pad"] = json!("x".repeat(2000));
        }
        Ok(v)
    });
    let db = Db::open_with(dir.path(), opts).unwrap();
    db.set_spec("p", &native_spec(1, "pad")).unwrap();
    for i in 0..5 {
        db.put("p", &format!("k{i}"), json!({"big": i == 3}))
            .unwrap();
    }
    let lsn = db.view().lsn();
    let r = db
        .migrate(
            "p",
            MigrateOptions {
                to: 2,
                dry_run: false,
            },
        )
        .unwrap();
    assert_eq!((r.failure_count, r.lsn), (1, None), "{r:?}");
    assert_eq!(r.failures[0].key, "k3");
    assert!(
        r.failures[0]
            .error
            .contains("over the 1024-byte document limit"),
        "{:?}",
        r.failures
    );
    assert_eq!(db.view().lsn(), lsn, "nothing written");
    assert_eq!(db.get("p", "k3").unwrap().meta.schema_version, 1);
    db.close().unwrap();
}

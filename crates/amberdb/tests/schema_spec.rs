//! Collection specs with schema versions: what is refused (with the exact reason), what is
//! kept (the JSON shape of the issue, checksums, forced changes), and the steps.
#![allow(clippy::unwrap_used)]

use amberdb::spec::{CollectionSpec, SetSpecOptions};
use amberdb::{Db, Error};
use serde_json::{json, Value};

fn spec(v: Value) -> CollectionSpec {
    serde_json::from_value(v).unwrap()
}

/// The spec of the issue: v1 `{name}`, v2 adds `inventory`.
fn players_v2() -> Value {
    json!({"schema_version": 2,
           "versions": {"1": {"schema": {"type": "object", "required": ["name"]}},
                        "2": {"schema": {"type": "object", "required": ["name", "inventory"]}}},
           "migrations": [{"from": 1, "to": 2,
                           "up":   [{"op": "set_default", "path": "/inventory", "value": []}],
                           "down": [{"op": "remove", "path": "/inventory"}]}],
           "default_ttl_s": null})
}

fn refusal(db: &Db, v: Value) -> String {
    match db.set_spec("players", &spec(v)) {
        Err(Error::InvalidArgument(m)) => m,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn the_issues_spec_round_trips_with_a_checksum_per_migration() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    db.set_spec("players", &spec(players_v2())).unwrap();
    let stored = db.spec("players").unwrap();
    assert_eq!(stored.schema_version, Some(2));
    let m = &stored.migrations[0];
    assert_eq!(m.checksum.as_deref(), Some(m.compute_checksum().as_str()));
    assert_eq!(m.compute_checksum().len(), 64);
    let mut back = serde_json::to_value(&stored).unwrap();
    back["migrations"][0]
        .as_object_mut()
        .unwrap()
        .remove("checksum");
    assert_eq!(back, players_v2());
    db.close().unwrap();
}

#[test]
fn a_spec_with_a_gap_in_its_versions_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let msg = refusal(
        &db,
        json!({"schema_version": 3, "versions": {"1": {}, "3": {}},
               "migrations": [{"from": 1, "to": 3, "up": []}]}),
    );
    assert!(msg.contains("version 2 is missing"), "{msg}");
    let msg = refusal(&db, json!({"schema_version": 2, "versions": {"1": {}}}));
    assert!(msg.contains("version 2 is missing"), "{msg}");
    db.close().unwrap();
}

#[test]
fn a_spec_whose_older_version_cannot_reach_the_current_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let msg = refusal(
        &db,
        json!({"schema_version": 3, "versions": {"1": {}, "2": {}, "3": {}},
               "migrations": [{"from": 2, "to": 3, "up": []}]}),
    );
    assert!(
        msg.contains("version 1 cannot reach the current version 3"),
        "{msg}"
    );
    db.close().unwrap();
}

#[test]
fn a_schema_that_does_not_compile_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let msg = refusal(
        &db,
        json!({"schema_version": 1, "versions": {"1": {"schema": {"type": "objekt"}}}}),
    );
    assert!(
        msg.contains("the schema of version 1 does not compile"),
        "{msg}"
    );
    let msg = refusal(
        &db,
        json!({"schema_version": 1, "versions": {"1": {"schema": {"minLength": -1}}}}),
    );
    assert!(msg.contains("does not compile"), "{msg}");
    db.close().unwrap();
}

#[test]
fn malformed_steps_are_refused_with_the_step_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let base = |up: Value| {
        json!({"schema_version": 2, "versions": {"1": {}, "2": {}},
               "migrations": [{"from": 1, "to": 2, "up": up}]})
    };
    // An unknown op or field does not even parse as a spec.
    assert!(serde_json::from_value::<CollectionSpec>(base(json!([{"op": "explode"}]))).is_err());
    assert!(serde_json::from_value::<CollectionSpec>(base(
        json!([{"op": "remove", "path": "/a", "extra": 1}])
    ))
    .is_err());
    let msg = refusal(&db, base(json!([{"op": "remove", "path": "a"}])));
    assert!(msg.contains("migration 1 -> 2: up step 0"), "{msg}");
    assert!(msg.contains("JSON Pointer"), "{msg}");
    let msg = refusal(&db, base(json!([{"op": "jq", "filter": "def f: f; f"}])));
    assert!(msg.contains("def"), "{msg}");
    let msg = refusal(&db, base(json!([{"op": "jq", "filter": ".a |"}])));
    assert!(msg.contains("does not parse"), "{msg}");
    let long = format!(".a{}", " ".repeat(amberdb::limits::MAX_JQ_FILTER_BYTES));
    let msg = refusal(&db, base(json!([{"op": "jq", "filter": long}])));
    assert!(msg.contains("over the limit"), "{msg}");
    let many: Vec<Value> = (0..=amberdb::limits::MAX_MIGRATION_STEPS)
        .map(|_| json!({"op": "remove", "path": "/a"}))
        .collect();
    let msg = refusal(&db, base(Value::Array(many)));
    assert!(msg.contains("steps, over the limit"), "{msg}");
    let msg = refusal(&db, base(json!([{"op": "native", "name": "nope"}])));
    assert!(msg.contains("not registered"), "{msg}");
    let msg = refusal(
        &db,
        json!({"schema_version": 2, "versions": {"1": {}, "2": {}},
               "migrations": [{"from": 2, "to": 1, "up": []}]}),
    );
    assert!(msg.contains("to a higher one"), "{msg}");
    db.close().unwrap();
}

#[test]
fn a_spec_over_the_size_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let big = "x".repeat(amberdb::limits::MAX_SPEC_BYTES);
    let msg = refusal(
        &db,
        json!({"schema_version": 1, "versions": {"1": {"schema": {"description": big}}}}),
    );
    assert!(msg.contains("over the limit"), "{msg}");
    db.close().unwrap();
}

#[test]
fn changing_an_applied_migration_is_refused_unless_forced_and_the_force_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    db.set_spec("players", &spec(players_v2())).unwrap();
    let applied = db.spec("players").unwrap().migrations[0].checksum.clone();
    let mut changed = players_v2();
    changed["migrations"][0]["up"][0]["value"] = json!(["sword"]);
    let msg = refusal(&db, changed.clone());
    assert!(msg.contains("migration 1 -> 2 has been applied"), "{msg}");
    assert!(msg.contains("changed"), "{msg}");
    // Removing it is a change too.
    let mut removed = players_v2();
    removed["schema_version"] = json!(1);
    removed["migrations"] = json!([]);
    removed["versions"] = json!({"1": {}});
    assert!(refusal(&db, removed).contains("removed"));
    // The same definition again is no change.
    db.set_spec("players", &spec(players_v2())).unwrap();

    db.set_spec_with("players", &spec(changed), SetSpecOptions { force: true })
        .unwrap();
    let stored = db.spec("players").unwrap();
    assert_eq!(stored.forced.len(), 1);
    assert_eq!(Some(stored.forced[0].old_checksum.clone()), applied);
    assert_eq!(stored.forced[0].new_checksum, stored.migrations[0].checksum);
    // A later spec keeps the record.
    let mut later = serde_json::to_value(&stored).unwrap();
    later.as_object_mut().unwrap().remove("forced");
    db.set_spec("players", &spec(later)).unwrap();
    assert_eq!(db.spec("players").unwrap().forced.len(), 1);
    db.close().unwrap();
}

#[test]
fn a_migration_above_the_current_version_is_not_applied_and_may_change() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let mut s = players_v2();
    s["schema_version"] = json!(1);
    db.set_spec("players", &spec(s.clone())).unwrap();
    s["migrations"][0]["up"][0]["value"] = json!(["shield"]);
    db.set_spec("players", &spec(s)).unwrap();
    assert!(db.spec("players").unwrap().forced.is_empty());
    db.close().unwrap();
}

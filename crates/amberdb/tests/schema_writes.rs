//! Writes in a schema-managed collection: validated at the version they are stored at,
//! upgraded from the version an old client declares, and an old client never destroys the
//! fields it does not know (PUT, PATCH and transactions).
#![allow(clippy::unwrap_used)]

use amberdb::spec::CollectionSpec;
use amberdb::{Db, Error, Patch, Transaction};
use serde_json::{json, Value};

fn players_v2() -> CollectionSpec {
    serde_json::from_value(json!({
        "schema_version": 2,
        "versions": {"1": {"schema": {"type": "object", "required": ["name"]}},
                     "2": {"schema": {"type": "object", "required": ["name", "inventory"],
                                      "properties": {"inventory": {"type": "array"}}}}},
        "migrations": [{"from": 1, "to": 2,
                        "up":   [{"op": "set_default", "path": "/inventory", "value": []}],
                        "down": [{"op": "remove", "path": "/inventory"}]}]}))
    .unwrap()
}

fn open() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    db.set_spec("players", &players_v2()).unwrap();
    (dir, db)
}

fn put_at(db: &Db, key: &str, v: Value, version: u32) -> amberdb::Result<amberdb::Committed> {
    let mut tx = Transaction::new();
    tx.put("players", key, v).schema_version(version);
    db.commit(&tx)
}

fn value(db: &Db, key: &str) -> (Value, u32) {
    let d = db.get("players", key).unwrap();
    (
        serde_json::from_slice(&d.value).unwrap(),
        d.meta.schema_version,
    )
}

#[test]
fn a_write_that_fails_the_current_schema_is_refused_with_every_error() {
    let (_d, db) = open();
    let err = db
        .put("players", "a", json!({"inventory": "none"}))
        .unwrap_err();
    let Error::SchemaValidation {
        schema_version,
        errors,
        total,
        key,
        ..
    } = err
    else {
        panic!("expected a schema validation error, got {err:?}");
    };
    assert_eq!((schema_version, total, key.as_str()), (2, 2, "a"));
    let mut found: Vec<(String, String)> = errors
        .iter()
        .map(|e| (e.instance_path.clone(), e.schema_path.clone()))
        .collect();
    found.sort();
    assert_eq!(
        found,
        vec![
            ("".into(), "/required".into()),
            ("/inventory".into(), "/properties/inventory/type".into()),
        ]
    );
    assert!(errors.iter().any(|e| e.message.contains("\"name\"")));
    assert!(db.get("players", "a").is_none(), "nothing was written");
    db.close().unwrap();
}

#[test]
fn validation_errors_are_capped_at_fifty_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let required: Vec<String> = (0..80).map(|i| format!("f{i}")).collect();
    let s: CollectionSpec = serde_json::from_value(json!({
        "schema_version": 1,
        "versions": {"1": {"schema": {"type": "object", "required": required}}}}))
    .unwrap();
    db.set_spec("c", &s).unwrap();
    match db.put("c", "k", json!({})).unwrap_err() {
        Error::SchemaValidation { errors, total, .. } => {
            assert_eq!(errors.len(), amberdb::limits::MAX_SCHEMA_ERRORS);
            assert!(total >= 50, "{total}");
        }
        e => panic!("{e:?}"),
    }
    db.close().unwrap();
}

#[test]
fn an_old_clients_new_document_is_upgraded_and_stored_at_the_current_version() {
    let (_d, db) = open();
    let c = put_at(&db, "a", json!({"name": "ann"}), 1).unwrap();
    assert_eq!(c.results[0].schema_version, 2);
    assert_eq!(
        value(&db, "a"),
        (json!({"name": "ann", "inventory": []}), 2)
    );
    // Undeclared means the current version: validated at 2 as is.
    assert!(matches!(
        db.put("players", "b", json!({"name": "bo"})),
        Err(Error::SchemaValidation { .. })
    ));
    // Above the current version is refused.
    assert!(put_at(&db, "c", json!({"name": "x", "inventory": []}), 3)
        .unwrap_err()
        .to_string()
        .contains("above"));
    db.close().unwrap();
}

/// The scenario: a v2 client fills the inventory; a v1 client renames the player;
/// the stored v2 document has the new name and the inventory.
#[test]
fn an_old_clients_put_keeps_the_fields_it_does_not_know() {
    let (_d, db) = open();
    db.put(
        "players",
        "a",
        json!({"name": "ann", "inventory": ["sword"]}),
    )
    .unwrap();
    put_at(&db, "a", json!({"name": "anna"}), 1).unwrap();
    assert_eq!(
        value(&db, "a"),
        (json!({"name": "anna", "inventory": ["sword"]}), 2)
    );
    db.close().unwrap();
}

#[test]
fn an_old_clients_patch_keeps_the_fields_it_does_not_know() {
    let (_d, db) = open();
    db.put(
        "players",
        "a",
        json!({"name": "ann", "inventory": ["sword"]}),
    )
    .unwrap();
    let mut tx = Transaction::new();
    tx.patch(
        "players",
        "a",
        Patch::Merge(json!({"name": "anna", "level": 3})),
    )
    .schema_version(1);
    db.commit(&tx).unwrap();
    assert_eq!(
        value(&db, "a").0,
        json!({"name": "anna", "level": 3, "inventory": ["sword"]})
    );
    // A JSON Patch against the old view: `/inventory` does not exist there.
    let mut tx = Transaction::new();
    let ops: json_patch::Patch =
        serde_json::from_value(json!([{"op": "remove", "path": "/inventory"}])).unwrap();
    tx.patch("players", "a", Patch::Json(ops)).schema_version(1);
    assert!(matches!(
        db.commit(&tx).unwrap_err(),
        Error::PatchFailed { .. }
    ));
    // The current client's patch sees the whole document.
    let mut tx = Transaction::new();
    tx.patch(
        "players",
        "a",
        Patch::Merge(json!({"inventory": ["sword", "shield"]})),
    );
    db.commit(&tx).unwrap();
    assert_eq!(
        value(&db, "a").0,
        json!({"name": "anna", "level": 3, "inventory": ["sword", "shield"]})
    );
    db.close().unwrap();
}

#[test]
fn an_old_clients_transaction_keeps_the_fields_it_does_not_know() {
    let (_d, db) = open();
    db.put("players", "a", json!({"name": "a", "inventory": [1]}))
        .unwrap();
    db.put("players", "b", json!({"name": "b", "inventory": [2]}))
        .unwrap();
    let mut tx = Transaction::new();
    tx.put("players", "a", json!({"name": "a2"}))
        .schema_version(1);
    tx.patch("players", "b", Patch::Merge(json!({"name": "b2"})))
        .schema_version(1);
    tx.put("players", "a", json!({"name": "a3"}))
        .schema_version(1);
    db.commit(&tx).unwrap();
    assert_eq!(value(&db, "a").0, json!({"name": "a3", "inventory": [1]}));
    assert_eq!(value(&db, "b").0, json!({"name": "b2", "inventory": [2]}));
    db.close().unwrap();
}

#[test]
fn if_match_works_the_same_across_schema_versions() {
    let (_d, db) = open();
    let v = db
        .put("players", "a", json!({"name": "a", "inventory": []}))
        .unwrap()
        .results[0]
        .version;
    let mut tx = Transaction::new();
    tx.put("players", "a", json!({"name": "b"}))
        .schema_version(1)
        .if_version(v + 7);
    assert!(matches!(db.commit(&tx).unwrap_err(), Error::Conflict(_)));
    let mut tx = Transaction::new();
    tx.put("players", "a", json!({"name": "b"}))
        .schema_version(1)
        .if_version(v);
    assert_eq!(db.commit(&tx).unwrap().results[0].version, v + 1);
    db.close().unwrap();
}

#[test]
fn an_unmanaged_collection_keeps_the_declared_version_and_validates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    put_at(&db, "a", json!(5), 9).unwrap();
    let d = db.get("players", "a").unwrap();
    assert_eq!(d.meta.schema_version, 9);
    db.close().unwrap();
}

#[test]
fn a_failing_step_fails_the_write_naming_the_migration_and_step() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let s: CollectionSpec = serde_json::from_value(json!({
        "schema_version": 2, "versions": {"1": {}, "2": {}},
        "migrations": [{"from": 1, "to": 2, "up": [
            {"op": "convert", "path": "/class", "mapping": [["warrior", 1], ["mage", 2]]}]}]}))
    .unwrap();
    db.set_spec("c", &s).unwrap();
    let mut tx = Transaction::new();
    tx.put("c", "k", json!({"class": "mage"})).schema_version(1);
    db.commit(&tx).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&db.get("c", "k").unwrap().value).unwrap(),
        json!({"class": 2})
    );
    let mut tx = Transaction::new();
    tx.put("c", "k2", json!({"class": "bard"}))
        .schema_version(1);
    let msg = db.commit(&tx).unwrap_err().to_string();
    assert!(msg.contains("migration 1 -> 2 up step 0"), "{msg}");
    assert!(msg.contains("not in the conversion table"), "{msg}");
    db.close().unwrap();
}

#[test]
fn a_native_step_registered_by_an_embedded_user_runs_in_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = amberdb::Options::default();
    opts.native_steps.register("double_hp", |mut v| {
        let hp = v["hp"].as_i64().ok_or("hp is not an integer")?;
        v["hp"] = json!(hp * 2);
        Ok(v)
    });
    let db = Db::open_with(dir.path(), opts).unwrap();
    let s: CollectionSpec = serde_json::from_value(json!({
        "schema_version": 2, "versions": {"1": {}, "2": {}},
        "migrations": [{"from": 1, "to": 2, "up": [{"op": "native", "name": "double_hp"}]}]}))
    .unwrap();
    db.set_spec("c", &s).unwrap();
    let mut tx = Transaction::new();
    tx.put("c", "k", json!({"hp": 21})).schema_version(1);
    db.commit(&tx).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&db.get("c", "k").unwrap().value).unwrap(),
        json!({"hp": 42})
    );
    db.close().unwrap();
}

#[test]
fn a_jq_step_upgrades_an_old_write_and_a_failing_one_names_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let s: CollectionSpec = serde_json::from_value(json!({
        "schema_version": 2, "versions": {"1": {}, "2": {}},
        "migrations": [{"from": 1, "to": 2, "up": [
            {"op": "jq", "filter": ".hp = (.hp * 10) | .name |= ascii_upcase"}]}]}))
    .unwrap();
    db.set_spec("c", &s).unwrap();
    let mut tx = Transaction::new();
    tx.put("c", "k", json!({"hp": 4, "name": "ann"}))
        .schema_version(1);
    db.commit(&tx).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&db.get("c", "k").unwrap().value).unwrap(),
        json!({"hp": 40, "name": "ANN"})
    );
    let mut tx = Transaction::new();
    tx.put("c", "bad", json!({"hp": 1, "name": 5}))
        .schema_version(1);
    let err = db.commit(&tx).unwrap_err();
    assert!(
        matches!(err, Error::MigrationFailed { ref key, .. } if key == "bad"),
        "{err:?}"
    );
    assert!(err.to_string().contains("jq error"), "{err}");
    db.close().unwrap();
}

#[test]
fn a_reader_at_an_older_version_without_a_down_gets_no_down_migration() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let s: CollectionSpec = serde_json::from_value(json!({
        "schema_version": 3, "versions": {"1": {}, "2": {}, "3": {}},
        "migrations": [
            {"from": 1, "to": 2, "up": [{"op": "rename", "path": "/n", "to": "name"}],
             "down": [{"op": "rename", "path": "/name", "to": "n"}]},
            {"from": 2, "to": 3, "up": [{"op": "set_default", "path": "/xp", "value": 0}]}]}))
    .unwrap();
    db.set_spec("c", &s).unwrap();
    db.put("c", "k", json!({"name": "ann", "xp": 5})).unwrap();
    let three = db.get_as("c", "k", None).unwrap().unwrap();
    assert_eq!(three.doc.meta.schema_version, 3);
    match db.get_as("c", "k", Some(1)).unwrap_err() {
        Error::NoDownMigration {
            missing_from,
            missing_to,
            ..
        } => assert_eq!((missing_from, missing_to), (2, 3)),
        e => panic!("{e:?}"),
    }
    assert!(db.get_as("c", "k", Some(4)).is_err());
    // An old client cannot edit what it cannot see.
    let mut tx = Transaction::new();
    tx.put("c", "k", json!({"n": "bo"})).schema_version(1);
    assert!(matches!(
        db.commit(&tx).unwrap_err(),
        Error::NoDownMigration { .. }
    ));
    db.close().unwrap();
}

//! Which schema version a write stores: the declared one, else the document's own for a patch
//! (a patch edits the stored value), else 1 for a whole new value.
#![allow(clippy::unwrap_used)]

use amberdb::{Db, Patch, Transaction};
use serde_json::json;

#[test]
fn patch_keeps_the_documents_schema_version_unless_one_is_declared() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let mut tx = Transaction::new();
    tx.put("players", "a", json!({"hp": 1})).schema_version(3);
    db.commit(&tx).unwrap();
    assert_eq!(db.get("players", "a").unwrap().meta.schema_version, 3);

    let mut tx = Transaction::new();
    tx.patch("players", "a", Patch::Merge(json!({"hp": 2})));
    db.commit(&tx).unwrap();
    let doc = db.get("players", "a").unwrap();
    assert_eq!((doc.meta.schema_version, doc.meta.version), (3, 2));

    let mut tx = Transaction::new();
    tx.patch("players", "a", Patch::Merge(json!({"hp": 3})))
        .schema_version(4);
    db.commit(&tx).unwrap();
    assert_eq!(db.get("players", "a").unwrap().meta.schema_version, 4);

    // A whole new value without a declaration is schema version 1.
    db.put("players", "a", json!({"hp": 4})).unwrap();
    assert_eq!(db.get("players", "a").unwrap().meta.schema_version, 1);

    let mut tx = Transaction::new();
    tx.put("players", "b", json!({})).schema_version(0);
    assert!(db
        .commit(&tx)
        .unwrap_err()
        .to_string()
        .contains("schema_version"));
    db.close().unwrap();
}

//! Specs travel with the data: a backup manifest lists each spec's checksum, and a
//! point-in-time restore to just before or just after a batch migration brings back data and
//! spec consistently.
#![allow(clippy::unwrap_used)]

use amberdb::backup::{restore, NoProgress};
use amberdb::schema::MigrateOptions;
use amberdb::spec::CollectionSpec;
use amberdb::{BackupRepo, Db, RestoreTarget};
use serde_json::{json, Value};

fn spec(current: u32) -> CollectionSpec {
    serde_json::from_value(json!({
        "schema_version": current, "versions": {"1": {}, "2": {}},
        "migrations": [{"from": 1, "to": 2,
                        "up": [{"op": "rename", "path": "/health", "to": "hp"}],
                        "down": [{"op": "rename", "path": "/hp", "to": "health"}]}]}))
    .unwrap()
}

fn spec_sha(db: &Db, collection: &str) -> String {
    let view = db.view();
    let d = view
        .iter_all()
        .find(|(c, d)| *c == ".spec" && &*d.key == collection)
        .map(|(_, d)| d.meta.sha256)
        .unwrap();
    hex::encode(d)
}

/// (spec version, every document's (key, stored version, value)).
fn state_at(
    repo: &BackupRepo,
    target: RestoreTarget,
    into: &std::path::Path,
) -> (Option<u32>, Vec<(String, u32, Value)>) {
    restore(repo, &target, false, into, &NoProgress).unwrap();
    let db = Db::open(into).unwrap();
    let page = db.list("p", &amberdb::ListOptions::default());
    let docs = page
        .docs
        .iter()
        .map(|d| {
            (
                d.key.to_string(),
                d.meta.schema_version,
                serde_json::from_slice(&d.value).unwrap(),
            )
        })
        .collect();
    let s = db.spec("p").unwrap().schema_version;
    db.close().unwrap();
    (s, docs)
}

#[test]
fn pitr_to_before_and_after_a_migration_restores_data_and_spec_consistently() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, repo_dir) = (tmp.path().join("d"), tmp.path().join("r"));
    let repo = BackupRepo::open_or_init(&repo_dir).unwrap();
    let db = Db::open(&data).unwrap();
    db.set_spec("p", &spec(1)).unwrap();
    for i in 0..20 {
        db.put("p", &format!("k{i:02}"), json!({"health": i}))
            .unwrap();
    }
    let manifest = db.backup(&repo).unwrap();
    assert_eq!(
        manifest.spec_checksums.get("p"),
        Some(&spec_sha(&db, "p")),
        "the manifest lists the spec's checksum"
    );
    let r = db
        .migrate(
            "p",
            MigrateOptions {
                to: 2,
                dry_run: false,
            },
        )
        .unwrap();
    let m = r.lsn.unwrap();
    let after = db.backup(&repo).unwrap();
    assert_eq!(after.spec_checksums.get("p"), Some(&spec_sha(&db, "p")));
    assert_ne!(after.spec_checksums, manifest.spec_checksums);
    db.close().unwrap();

    let (s, docs) = state_at(&repo, RestoreTarget::Lsn(m - 1), &tmp.path().join("before"));
    assert_eq!(s, Some(1));
    assert_eq!(docs.len(), 20);
    assert!(docs.iter().all(|(k, v, d)| *v == 1
        && d["health"].as_u64().map(|h| format!("k{h:02}")).as_deref() == Some(k.as_str())));

    let (s, docs) = state_at(&repo, RestoreTarget::Lsn(m), &tmp.path().join("after"));
    assert_eq!(s, Some(2));
    assert_eq!(docs.len(), 20);
    assert!(docs.iter().all(|(k, v, d)| *v == 2
        && d["hp"].as_u64().map(|h| format!("k{h:02}")).as_deref() == Some(k.as_str())));
}

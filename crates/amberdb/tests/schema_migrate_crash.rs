//! SIGKILL during a batch migration of 100,000 documents leaves either all of them (and the
//! spec) at the new version or all at the old one. The test binary runs itself as the child
//! that migrates, and the parent kills it at several points.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use amberdb::schema::MigrateOptions;
use amberdb::spec::CollectionSpec;
use amberdb::{Db, Transaction};
use serde_json::json;

const DOCS: usize = 100_000;
const CHILD: &str = "AMBERDB_MIGRATE_CHILD_DIR";

fn spec() -> CollectionSpec {
    serde_json::from_value(json!({
        "schema_version": 1, "versions": {"1": {}, "2": {}},
        "migrations": [{"from": 1, "to": 2,
                        "up": [{"op": "rename", "path": "/health", "to": "hp"},
                               {"op": "set_default", "path": "/inventory", "value": []}]}]}))
    .unwrap()
}

/// In the child: migrate the directory named by the environment, announcing the start.
fn child(dir: &str) {
    let db = Db::open(dir).unwrap();
    println!("migrating");
    let r = db
        .migrate(
            "p",
            MigrateOptions {
                to: 2,
                dry_run: false,
            },
        )
        .unwrap();
    println!("done {:?}", r.lsn);
    db.close().unwrap();
}

#[test]
fn sigkill_during_a_batch_migration_of_100000_documents_leaves_all_old_or_all_new() {
    if let Ok(dir) = std::env::var(CHILD) {
        child(&dir);
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    {
        let db = Db::open(&base).unwrap();
        db.set_spec("p", &spec()).unwrap();
        let mut tx = Transaction::new();
        for i in 0..DOCS {
            tx.put("p", &format!("k{i:06}"), json!({"health": i % 1000}));
        }
        db.commit(&tx).unwrap();
        db.close().unwrap();
    }
    let mut outcomes = vec![];
    // Kill points after the child starts migrating; `None`: right after `migrate` returned
    // (the commit was acknowledged, so it must survive).
    let kills = [Some(0u64), Some(30), Some(120), Some(400), Some(1500), None];
    for (i, delay) in kills.into_iter().enumerate() {
        let dir = tmp.path().join(format!("run{i}"));
        support::copy_dir(&base, &dir);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sigkill_during_a_batch_migration_of_100000_documents_leaves_all_old_or_all_new",
                "--nocapture",
            ])
            .env(CHILD, &dir)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Wait until the child has opened the database and starts migrating.
        let wait_for = if delay.is_some() { "migrating" } else { "done" };
        for line in lines.by_ref() {
            if line.unwrap().contains(wait_for) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(delay.unwrap_or(0)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let db = Db::open(&dir).unwrap();
        let spec_version = db.spec("p").unwrap().schema_version.unwrap();
        let page = db.list(
            "p",
            &amberdb::ListOptions {
                limit: DOCS + 1,
                ..Default::default()
            },
        );
        assert_eq!(page.docs.len(), DOCS);
        let at_new = page
            .docs
            .iter()
            .filter(|d| d.meta.schema_version == 2)
            .count();
        assert!(
            at_new == 0 || at_new == DOCS,
            "{at_new} of {DOCS} documents at the new version after a kill at {delay:?} ms"
        );
        assert_eq!(
            spec_version,
            if at_new == 0 { 1 } else { 2 },
            "the spec's version matches the documents'"
        );
        assert_eq!(
            db.migrations("p").unwrap().len(),
            usize::from(at_new == DOCS)
        );
        outcomes.push(at_new == DOCS);
        db.close().unwrap();
    }
    // The earliest kill lands before the commit; the last one after it (both ends seen).
    assert!(
        !outcomes[0],
        "a kill right at the start left the migration applied"
    );
    assert!(
        *outcomes.last().unwrap(),
        "an acknowledged migration was lost: {outcomes:?}"
    );
}

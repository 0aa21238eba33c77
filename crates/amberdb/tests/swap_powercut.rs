//! Power cuts during the directory swap of a live restore (`backup::swap_in`), under the
//! power-cut simulator (`amberdb::io::PowerCut`): the exchange (`renameat2(RENAME_EXCHANGE)`,
//! seen by the simulator as one `exchange` operation), the parent syncs and the rename of the
//! old database to its kept name. Cut before every one of its file-system mutations, and
//! materialized several ways (names not yet made durable by a directory fsync undone from
//! some point on), the data directory always holds a complete database, the old one or the
//! restored one, which opens and verifies clean; the other one is complete beside it under
//! the restore's or the kept name; and once `swap_in` has returned, the data directory is
//! the restored database.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use amberdb::backup::{restore, swap_in, NoProgress};
use amberdb::io::{install, PowerCut};
use amberdb::{BackupRepo, Db, Options, RestoreTarget};
use serde_json::{json, Value};

/// `root/data` with p1 = gold 2, and `root/data.restore-1`, the restore of its backup
/// taken at gold 1.
fn prepare(root: &Path) {
    let repo = BackupRepo::open_or_init(root.join("repo")).unwrap();
    let db = Db::open(root.join("data")).unwrap();
    db.put("players", "p1", json!({"gold": 1})).unwrap();
    let m = db.backup(&repo).unwrap();
    db.put("players", "p1", json!({"gold": 2})).unwrap();
    db.close().unwrap();
    restore(
        &repo,
        &RestoreTarget::Backup(m.id),
        false,
        &root.join("data.restore-1"),
        &NoProgress,
    )
    .unwrap();
}

/// p1's gold in the database at `dir`, which must open and verify clean.
fn gold(dir: &Path, case: &str) -> Value {
    let db = Db::open_with(
        dir,
        Options {
            create_if_missing: false,
            ..Options::default()
        },
    )
    .unwrap_or_else(|e| panic!("{case}: {} does not open: {e}", dir.display()));
    let report = db.verify().unwrap();
    assert!(
        report.is_clean(),
        "{case}: {}: {:?}",
        dir.display(),
        report.problems
    );
    let v = db.get("players", "p1").unwrap().json().unwrap();
    db.close().unwrap();
    v["gold"].clone()
}

#[test]
fn a_power_cut_at_any_moment_of_the_swap_leaves_one_complete_database_at_the_data_directory() {
    let dry = tempfile::tempdir().unwrap();
    prepare(dry.path());
    let pc = Arc::new(PowerCut::new(dry.path(), None).unwrap());
    let total = {
        let _scope = install(dry.path(), pc.clone());
        swap_in(&dry.path().join("data"), &dry.path().join("data.restore-1")).unwrap();
        pc.ops()
    };
    assert!(pc.model_errors().is_empty(), "{:?}", pc.model_errors());
    assert!(
        total >= 5,
        "sync, exchange, sync, rename, sync: {total} mutations"
    );
    let mut restored_seen = false;
    let mut old_seen = false;
    for cut_at in 0..=total {
        let root = tempfile::tempdir().unwrap();
        prepare(root.path());
        let pc = Arc::new(PowerCut::new(root.path(), Some(cut_at)).unwrap());
        let returned = {
            let _scope = install(root.path(), pc.clone());
            let r = swap_in(
                &root.path().join("data"),
                &root.path().join("data.restore-1"),
            );
            pc.cut_now();
            r.is_ok()
        };
        assert!(pc.model_errors().is_empty(), "{:?}", pc.model_errors());
        for m in 0..4u64 {
            let out = tempfile::tempdir().unwrap();
            let report = pc.materialize(out.path(), cut_at * 11 + m).unwrap();
            let case = format!(
                "cut before {} ({cut_at} of {total}), materialization {m}",
                report.cut_before.as_deref().unwrap_or("nothing")
            );
            let at_data = gold(&out.path().join("data"), &case);
            if returned {
                assert_eq!(
                    at_data,
                    json!(1),
                    "{case}: swap_in returned, restored in place"
                );
            }
            // The other database is beside it, complete, under exactly one of its names.
            let others: Vec<_> = std::fs::read_dir(out.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n == "data.restore-1" || n.starts_with("data.replaced-"))
                })
                .collect();
            assert_eq!(others.len(), 1, "{case}: {others:?}");
            let other = gold(&others[0], &case);
            assert_eq!(
                (at_data.clone(), other),
                if at_data == json!(1) {
                    (json!(1), json!(2))
                } else {
                    (json!(2), json!(1))
                },
                "{case}"
            );
            restored_seen |= at_data == json!(1);
            old_seen |= at_data == json!(2);
        }
    }
    assert!(
        restored_seen && old_seen,
        "the cuts reach both sides of the exchange"
    );
}

//! Regression tests for backup, retention, verify and restore-selection bugs (issue 8 items
//! 7, 12-15, 17; issue 9 item 10), one test per scenario, named after it.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use amberdb::backup::{plan_restore, restore, NoProgress};
use amberdb::{BackupRepo, Db, Options, RestoreTarget, RetentionPolicy};
use serde_json::{json, Value};

fn keep_last(n: u32) -> RetentionPolicy {
    RetentionPolicy {
        keep_last: Some(n),
        ..Default::default()
    }
}

/// A repository `T/r` with two backups of a database `T/d` (LSN 3 and LSN 6).
fn two_backups(tmp: &Path) -> (BackupRepo, Vec<String>) {
    let repo = BackupRepo::open_or_init(tmp.join("r")).unwrap();
    let db = Db::open(tmp.join("d")).unwrap();
    for i in 0..3 {
        db.put("players", &format!("p{i}"), json!(i)).unwrap();
    }
    let a = db.backup(&repo).unwrap().id;
    for i in 3..6 {
        db.put("players", &format!("p{i}"), json!(i)).unwrap();
    }
    let b = db.backup(&repo).unwrap().id;
    db.close().unwrap();
    (repo, vec![a, b])
}

fn manifest_path(tmp: &Path, id: &str) -> PathBuf {
    tmp.join("r/backups").join(id).join("manifest.json")
}

fn edit_manifest(tmp: &Path, id: &str, edit: impl FnOnce(&mut Value)) {
    let path = manifest_path(tmp, id);
    let mut v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

fn victim(tmp: &Path) -> PathBuf {
    let v = tmp.join("x/victim");
    std::fs::create_dir_all(&v).unwrap();
    std::fs::write(v.join("precious"), b"not the repository's").unwrap();
    std::fs::write(v.join("manifest.json"), b"{}").unwrap();
    v
}

// ---- issue 9 item 10: ids and file names that leave the repository ----

#[test]
fn prune_never_deletes_outside_the_repository_when_a_manifest_id_climbs_out() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, ids) = two_backups(tmp.path());
    let victim = victim(tmp.path());
    // backups/../../x/victim is T/x/victim.
    edit_manifest(tmp.path(), &ids[0], |m| m["id"] = json!("../../x/victim"));
    let plan = repo.prune(&keep_last(1), None, false).unwrap();
    assert!(
        victim.join("precious").exists(),
        "prune deleted outside the repository: {plan:?}"
    );
    assert!(
        plan.remove.iter().all(|e| e.id != "../../x/victim"),
        "{plan:?}"
    );
    // The tampered backup is not complete, and verify says why.
    assert!(repo.list().unwrap().iter().all(|m| m.id == ids[1]));
    let r = repo.verify(None, false, &NoProgress).unwrap();
    assert!(
        r.problems
            .iter()
            .any(|p| p.detail.contains("names backup \"../../x/victim\"")),
        "{r:?}"
    );
}

#[test]
fn ids_given_by_callers_that_are_not_backup_ids_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, _) = two_backups(tmp.path());
    victim(tmp.path());
    for bad in [
        "../../x/victim",
        "..",
        "",
        "a/b",
        "20261121T023000Z-1/../..",
    ] {
        let err = repo.verify(Some(bad), false, &NoProgress).unwrap_err();
        assert!(err.to_string().contains("not a backup id"), "{bad}: {err}");
        let err = plan_restore(&repo, &RestoreTarget::Backup(bad.into()), false).unwrap_err();
        assert!(err.to_string().contains("not a backup id"), "{bad}: {err}");
        assert!(repo.manifest(bad).is_err());
    }
    // A stray directory in backups/ is not a backup: listed by verify, left alone by prune.
    let stray = tmp.path().join("r/backups/not-a-backup");
    std::fs::create_dir_all(&stray).unwrap();
    std::fs::write(stray.join("snapshot.ckpt.zst"), b"?").unwrap();
    assert!(!repo.backup_ids().unwrap().contains(&"not-a-backup".into()));
    let r = repo.verify(None, false, &NoProgress).unwrap();
    assert!(
        r.problems
            .iter()
            .any(|p| p.file.ends_with("not-a-backup") && p.detail.contains("not a backup")),
        "{r:?}"
    );
    repo.prune(&keep_last(1), None, false).unwrap();
    assert!(stray.join("snapshot.ckpt.zst").exists());
}

#[test]
fn a_manifest_whose_file_names_leave_the_backup_directory_is_refused_by_verify_restore_and_prune() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, ids) = two_backups(tmp.path());
    let victim = victim(tmp.path());
    edit_manifest(tmp.path(), &ids[0], |m| {
        m["files"][0]["name"] = json!("../../../x/victim/precious")
    });
    let r = repo.verify(None, true, &NoProgress).unwrap();
    assert!(
        r.problems.iter().any(|p| p
            .detail
            .contains("not a file inside the backup's directory")),
        "{r:?}"
    );
    let err = restore(
        &repo,
        &RestoreTarget::Backup(ids[0].clone()),
        false,
        &tmp.path().join("t"),
        &NoProgress,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("not a file inside the backup's directory"),
        "{err}"
    );
    repo.prune(&keep_last(1), None, false).unwrap();
    assert!(victim.join("precious").exists());
}

#[test]
fn a_manifest_format_version_newer_than_known_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, ids) = two_backups(tmp.path());
    edit_manifest(tmp.path(), &ids[1], |m| m["format_version"] = json!(99));
    assert!(repo.list().unwrap().iter().all(|m| m.id != ids[1]));
    let r = repo.verify(None, false, &NoProgress).unwrap();
    assert!(
        r.problems
            .iter()
            .any(|p| p.detail.contains("format version 99 is not supported")),
        "{r:?}"
    );
    let err = plan_restore(&repo, &RestoreTarget::Backup(ids[1].clone()), false).unwrap_err();
    assert!(err.to_string().contains(&ids[1]), "{err}");
}

#[allow(dead_code)]
fn sleep(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[allow(dead_code)]
fn open_opts(dir: &Path, opts: Options) -> Db {
    Db::open_with(dir, opts).unwrap()
}

//! The directory swap of a live restore (`backup::swap_in`): a crash after any step leaves
//! the old or the restored database fully in place at the data directory, and openable, and
//! the other one intact beside it. A crash is stopping after the step (`swap_in_until`): each
//! step is one syscall the kernel makes atomic (`renameat2(RENAME_EXCHANGE)`, `rename`)
//! followed by a sync of the parent. An incomplete restored directory is refused before
//! anything changes.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use amberdb::backup::{restore, swap_in, swap_in_until, NoProgress, SwapStep, RESTORE_MARKER};
use amberdb::{BackupRepo, Db, Options, RestoreTarget};
use serde_json::json;

fn value(dir: &Path) -> serde_json::Value {
    let db = Db::open_with(
        dir,
        Options {
            create_if_missing: false,
            ..Options::default()
        },
    )
    .unwrap();
    let v = db.get("players", "p1").unwrap().json().unwrap();
    db.close().unwrap();
    v
}

/// A data directory whose player p1 is `{"gold": 2}`, and beside it the restore of its
/// backup taken when p1 was `{"gold": 1}`.
fn old_and_restored(root: &Path) -> (PathBuf, PathBuf) {
    let data = root.join("data");
    let repo = BackupRepo::open_or_init(root.join("repo")).unwrap();
    let db = Db::open(&data).unwrap();
    db.put("players", "p1", json!({"gold": 1})).unwrap();
    let m = db.backup(&repo).unwrap();
    db.put("players", "p1", json!({"gold": 2})).unwrap();
    db.close().unwrap();
    let restored = root.join("data.restore-1");
    restore(
        &repo,
        &RestoreTarget::Backup(m.id),
        false,
        &restored,
        &NoProgress,
    )
    .unwrap();
    (data, restored)
}

fn replaced(root: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("data.replaced-"))
        })
        .collect()
}

#[test]
fn a_crash_after_any_step_of_the_swap_leaves_the_old_or_the_restored_database_in_place() {
    for step in [SwapStep::Synced, SwapStep::Exchanged, SwapStep::Kept] {
        let tmp = tempfile::tempdir().unwrap();
        let (data, restored) = old_and_restored(tmp.path());
        let kept = swap_in_until(&data, &restored, step).unwrap();
        let (at_data, other) = match step {
            SwapStep::Synced => (json!({"gold": 2}), restored.clone()),
            SwapStep::Exchanged => (json!({"gold": 1}), restored.clone()),
            SwapStep::Kept => (json!({"gold": 1}), kept.clone()),
        };
        assert_eq!(value(&data), at_data, "data after {step:?}");
        // The other database is complete beside it (the old one once exchanged).
        let other_gold = if step == SwapStep::Synced { 1 } else { 2 };
        assert_eq!(value(&other), json!({"gold": other_gold}), "{step:?}");
        assert_eq!(
            replaced(tmp.path()).len(),
            usize::from(step == SwapStep::Kept)
        );
        assert_eq!(step == SwapStep::Kept, !restored.exists());
    }
}

#[test]
fn swap_in_keeps_the_old_database_and_serves_the_restored_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, restored) = old_and_restored(tmp.path());
    let kept = swap_in(&data, &restored).unwrap();
    assert_eq!(replaced(tmp.path()), vec![kept.clone()]);
    assert_eq!(value(&data), json!({"gold": 1}));
    assert_eq!(value(&kept), json!({"gold": 2}));
}

#[test]
fn an_incomplete_restored_directory_is_refused_before_anything_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, restored) = old_and_restored(tmp.path());
    std::fs::write(restored.join(RESTORE_MARKER), b"incomplete\n").unwrap();
    assert!(matches!(
        swap_in(&data, &restored),
        Err(amberdb::Error::InvalidArgument(_))
    ));
    assert_eq!(value(&data), json!({"gold": 2}));
    assert!(replaced(tmp.path()).is_empty());
    // Directories in different parents cannot be exchanged: refused too.
    std::fs::remove_file(restored.join(RESTORE_MARKER)).unwrap();
    let elsewhere = tmp.path().join("sub");
    std::fs::create_dir(&elsewhere).unwrap();
    let moved = elsewhere.join("r");
    std::fs::rename(&restored, &moved).unwrap();
    assert!(swap_in(&data, &moved).is_err());
    assert_eq!(value(&data), json!({"gold": 2}));
}

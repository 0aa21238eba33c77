//! Regression tests for backup, retention, verify and restore-selection bugs (issue 8 items
//! 7, 12-15, 17; issue 9 item 10), one test per scenario, named after it.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use amberdb::backup::{plan_restore, restore, BackupSchedule, BackupState, NoProgress};
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

// ---- issue 8 item 17: the scheduler must not keep the directory open ----

fn scheduled(repo: &Path, interval: Duration) -> Options {
    Options {
        backup_schedule: Some(BackupSchedule {
            repo: repo.to_owned(),
            interval,
            retention: Some(keep_last(3)),
            pitr_window: None,
        }),
        ..Default::default()
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn dropping_the_last_handle_with_a_backup_schedule_releases_the_directory_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, repo) = (tmp.path().join("d"), tmp.path().join("r"));
    let db = Db::open(&data).unwrap();
    db.put("players", "a", json!(1)).unwrap();
    db.backup(&BackupRepo::open_or_init(&repo).unwrap())
        .unwrap();
    db.close().unwrap();
    // The repository has a backup, so the scheduler goes straight to sleep for an hour; it
    // must not hold the database (and its lock) meanwhile.
    let db = Db::open_with(&data, scheduled(&repo, Duration::from_secs(3600))).unwrap();
    db.put("players", "a", json!(2)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    drop(db);
    // Only a scheduler thread caught between two steps may hold it, for microseconds.
    let db = loop {
        match Db::open(&data) {
            Ok(db) => break db,
            Err(amberdb::Error::Locked { .. }) if started.elapsed() < Duration::from_secs(2) => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("reopen after dropping the last handle failed: {e}"),
        }
    };
    assert_eq!(db.get("players", "a").unwrap().json().unwrap(), json!(2));
    db.close().unwrap();
}

// ---- issue 8 item 15: nothing changed, no new backup ----

#[test]
fn scheduled_backups_are_skipped_when_nothing_changed_since_the_last_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, repo) = (tmp.path().join("d"), tmp.path().join("r"));
    let db = Db::open_with(&data, scheduled(&repo, Duration::from_millis(30))).unwrap();
    db.put("players", "a", json!(1)).unwrap();
    wait_for("a backup at LSN 1", || {
        db.backup_status().last_backup_lsn == Some(1)
    });
    let taken = db.backup_status().backups;
    wait_for("three idle rounds", || {
        db.backup_status().skipped_unchanged >= 3
    });
    assert_eq!(
        db.backup_status().backups,
        taken,
        "{:?}",
        db.backup_status()
    );
    db.put("players", "b", json!(2)).unwrap();
    wait_for("a backup at LSN 2", || {
        db.backup_status().last_backup_lsn == Some(2)
    });
    db.close().unwrap();
    let lsns: Vec<u64> = BackupRepo::open(&repo)
        .unwrap()
        .list()
        .unwrap()
        .iter()
        .map(|m| m.lsn)
        .collect();
    assert_eq!(lsns, [1, 2], "one backup per distinct state");
}

// ---- issue 8 item 7: a failed segment removal must not forget sealed segments ----

fn small_log() -> Options {
    Options {
        segment_size: 1024,
        history_retention: Duration::ZERO,
        checkpoint_log_bytes: u64::MAX,
        checkpoint_interval: None,
        ..Default::default()
    }
}

fn fill(db: &Db, n: u32) {
    for i in 0..n {
        db.put(
            "players",
            &format!("p{}", i % 7),
            json!({"i": i, "pad": "x".repeat(200)}),
        )
        .unwrap();
    }
}

fn log_segments(data: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

#[test]
fn a_failed_segment_removal_keeps_every_unarchived_segment_listed_for_archiving() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, repo_dir) = (tmp.path().join("d"), tmp.path().join("r"));
    let repo = BackupRepo::open_or_init(&repo_dir).unwrap();
    let db = Db::open_with(&data, small_log()).unwrap();
    db.backup(&repo).unwrap();
    fill(&db, 30);
    db.archive(&repo).unwrap(); // these segments may go once a checkpoint covers them
    fill(&db, 30); // sealed, not archived yet: they must stay
                   // The second archived segment cannot be removed (a directory stands in its place).
    let segs = log_segments(&data);
    let victim = segs[1].clone();
    std::fs::rename(&victim, tmp.path().join("moved")).unwrap();
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("x"), b"x").unwrap();
    assert!(db.checkpoint().is_err(), "removal was expected to fail");
    std::fs::remove_dir_all(&victim).unwrap();
    std::fs::rename(tmp.path().join("moved"), &victim).unwrap();
    fill(&db, 10);
    let lsn = db.view().lsn();
    db.backup(&repo).unwrap();
    db.close().unwrap();
    let r = repo.verify(None, true, &NoProgress).unwrap();
    assert!(r.gaps.is_empty() && r.is_clean(), "{r:?}");
    let reach = repo.archived_segments().unwrap().last().unwrap().last_lsn;
    assert_eq!(reach, lsn);
    // Every LSN is restorable from the first backup.
    let t = tmp.path().join("t");
    restore(&repo, &RestoreTarget::Lsn(40), false, &t, &NoProgress).unwrap();
}

#[test]
fn archiving_stops_at_a_gap_in_the_data_directory_log_until_a_backup_covers_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    let db = Db::open_with(&data, small_log()).unwrap();
    fill(&db, 40);
    db.checkpoint().unwrap(); // no repository attached: old segments go
                              // Enough commits after it to seal at least one more segment (whatever the frame size),
                              // so there is a sealed segment that starts after the removed ones.
    fill(&db, 10);
    let repo = BackupRepo::open_or_init(tmp.path().join("r")).unwrap();
    db.sync().unwrap();
    // A new repository has nothing; the data directory no longer has LSN 1.
    let err = db.archive(&repo).unwrap_err();
    assert!(
        err.to_string().contains("no longer holds LSNs 1..="),
        "{err}"
    );
    assert!(repo.archived_segments().unwrap().is_empty());
    // A backup's snapshot covers the gap; archiving then continues after it.
    let m = db.backup(&repo).unwrap();
    fill(&db, 5);
    let lsn = db.view().lsn();
    db.close().unwrap(); // nothing sealed after the backup: archive what is there now
    let db = Db::open_with(&data, small_log()).unwrap();
    db.backup(&repo).unwrap();
    db.close().unwrap();
    let t = tmp.path().join("t");
    let report = restore(
        &repo,
        &RestoreTarget::Lsn(m.lsn + 3),
        false,
        &t,
        &NoProgress,
    )
    .unwrap();
    assert_eq!(report.backup_id, m.id);
    assert_eq!(report.lsn, m.lsn + 3);
    assert!(lsn > m.lsn + 3);
}

// ---- issue 8 item 12: point-in-time restore to a quiet moment ----

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

#[test]
fn pitr_to_a_quiet_moment_is_proven_by_a_later_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = BackupRepo::open_or_init(tmp.path().join("r")).unwrap();
    let db = Db::open(tmp.path().join("d")).unwrap();
    db.put("players", "a", json!(1)).unwrap();
    db.backup(&repo).unwrap();
    let second = db.put("players", "a", json!(2)).unwrap();
    sleep(20);
    let quiet = now_us();
    sleep(20);
    db.backup(&repo).unwrap();
    db.close().unwrap();
    for (i, t) in [quiet, second.commit_ts].into_iter().enumerate() {
        for exclusive in [false, true] {
            let into = tmp.path().join(format!("t{i}{exclusive}"));
            let r = restore(
                &repo,
                &RestoreTarget::Time(t),
                exclusive,
                &into,
                &NoProgress,
            );
            let r = r.unwrap_or_else(|e| panic!("t={t} exclusive={exclusive}: {e}"));
            let want = if exclusive && t == second.commit_ts {
                1
            } else {
                2
            };
            assert_eq!(r.lsn, want, "t={t} exclusive={exclusive}");
            let db = Db::open(&into).unwrap();
            assert_eq!(db.get("players", "a").unwrap().json().unwrap(), json!(want));
            db.close().unwrap();
        }
    }
    // After the newest backup nothing proves what happened: still refused.
    sleep(5);
    let err = plan_restore(&repo, &RestoreTarget::Time(now_us()), false).unwrap_err();
    assert!(
        err.to_string().contains("archive ends before that time"),
        "{err}"
    );
}

// ---- issue 8 item 13: restore uses the newest valid backup and says what it skipped ----

/// Backups at LSN 3 and 6, then three more archived commits (LSN 9).
fn history(tmp: &Path) -> (BackupRepo, Vec<String>) {
    let (repo, ids) = two_backups(tmp);
    let db = Db::open(tmp.join("d")).unwrap();
    for i in 6..9 {
        db.put("players", &format!("p{i}"), json!(i)).unwrap();
    }
    db.backup(&repo).unwrap();
    db.close().unwrap();
    // Keep only the first two backups; the third only archived LSNs 7..=9.
    let third = repo.list().unwrap()[2].id.clone();
    std::fs::remove_dir_all(tmp.join("r/backups").join(third)).unwrap();
    (repo, ids)
}

fn flip(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    let at = at.min(b.len() - 1);
    b[at] ^= 0x40;
    std::fs::write(path, b).unwrap();
}

#[test]
fn a_flipped_snapshot_byte_makes_restore_use_the_older_backup_and_report_the_skipped_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, ids) = history(tmp.path());
    flip(
        &tmp.path()
            .join("r/backups")
            .join(&ids[1])
            .join("snapshot.ckpt.zst"),
        60,
    );
    for (n, target) in [RestoreTarget::Latest, RestoreTarget::Lsn(7)]
        .into_iter()
        .enumerate()
    {
        let into = tmp.path().join(format!("t{n}"));
        let r = restore(&repo, &target, false, &into, &NoProgress)
            .unwrap_or_else(|e| panic!("{target}: {e}"));
        assert_eq!(r.backup_id, ids[0], "{target}");
        assert_eq!(r.lsn, if n == 0 { 9 } else { 7 });
        assert!(
            r.skipped
                .iter()
                .any(|s| s.id == ids[1] && s.reason.contains("damaged")),
            "{r:?}"
        );
    }
    // Asked for by id, the damaged backup is refused, not replaced.
    let err = plan_restore(&repo, &RestoreTarget::Backup(ids[1].clone()), false).unwrap_err();
    assert!(err.to_string().contains("damaged"), "{err}");
}

#[test]
fn a_wrong_plain_size_is_refused_and_restore_falls_back_to_the_older_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, ids) = history(tmp.path());
    edit_manifest(tmp.path(), &ids[1], |m| {
        let n = m["files"][0]["plain_size"].as_u64().unwrap();
        m["files"][0]["plain_size"] = json!(n - 1);
    });
    let r = repo.verify(None, true, &NoProgress).unwrap();
    assert!(
        r.problems
            .iter()
            .any(|p| p.detail.contains("decompresses to more than")),
        "{r:?}"
    );
    let r = restore(
        &repo,
        &RestoreTarget::Latest,
        false,
        &tmp.path().join("t"),
        &NoProgress,
    )
    .unwrap();
    assert_eq!((r.backup_id.as_str(), r.lsn), (ids[0].as_str(), 9));
    assert!(
        r.skipped
            .iter()
            .any(|s| s.id == ids[1] && s.reason.contains("the manifest says")),
        "{r:?}"
    );
}

#[test]
fn a_damaged_seal_fails_verify_and_restore_through_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, ids) = history(tmp.path());
    let last = repo.archived_segments().unwrap().last().unwrap().clone();
    flip(&tmp.path().join("r").join(last.seal_file()), 10);
    let r = repo.verify(None, false, &NoProgress).unwrap();
    assert!(
        r.problems
            .iter()
            .any(|p| p.file.to_string_lossy().ends_with(".seal")),
        "{r:?}"
    );
    let err = restore(
        &repo,
        &RestoreTarget::Lsn(9),
        false,
        &tmp.path().join("t"),
        &NoProgress,
    )
    .unwrap_err();
    assert!(err.to_string().contains("seal"), "{err}");
    // Before the damaged segment, restores still work.
    let r = restore(
        &repo,
        &RestoreTarget::Lsn(6),
        false,
        &tmp.path().join("u"),
        &NoProgress,
    )
    .unwrap();
    assert_eq!((r.backup_id.as_str(), r.lsn), (ids[1].as_str(), 6));
}

#[test]
fn a_deleted_newest_archived_segment_is_reported_by_verify_and_by_latest_restore() {
    for all_of_wal in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let (repo, _) = history(tmp.path()); // the data directory archived through LSN 9
        let segs = repo.archived_segments().unwrap();
        assert_eq!(segs.last().unwrap().last_lsn, 9);
        let wal = tmp.path().join("r/wal");
        if all_of_wal {
            std::fs::remove_dir_all(&wal).unwrap();
        } else {
            let last = segs.last().unwrap();
            for name in [last.data_file(), last.seal_file(), last.meta_file()] {
                std::fs::remove_file(tmp.path().join("r").join(name)).unwrap();
            }
        }
        let mut r = repo.verify(None, false, &NoProgress).unwrap();
        if all_of_wal {
            // The newest backup saw the archive reach LSN 6.
            assert!(
                r.problems
                    .iter()
                    .any(|p| p.detail.contains("recorded it reaching LSN 6")),
                "{r:?}"
            );
        }
        repo.verify_against_data_dir(&tmp.path().join("d"), &mut r)
            .unwrap();
        assert!(
            r.problems
                .iter()
                .any(|p| p.detail.contains("archived through LSN 9")),
            "all_of_wal={all_of_wal}: {r:?}"
        );
        let rep = restore(
            &repo,
            &RestoreTarget::Latest,
            false,
            &tmp.path().join("t"),
            &NoProgress,
        )
        .unwrap();
        assert_eq!(rep.lsn, 6);
        assert!(
            rep.notes
                .iter()
                .any(|n| n.contains("--latest reaches LSN 6")),
            "{rep:?}"
        );
    }
}

// ---- issue 8 item 14: interrupted backups are cleaned up; damaged ones are listed ----

/// What a kill during a backup leaves: a directory with a snapshot and a temp file, no
/// manifest.
fn interrupted(tmp: &Path, id: &str) -> PathBuf {
    let dir = tmp.join("r/backups").join(id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("snapshot.ckpt.zst"), b"partial").unwrap();
    std::fs::write(dir.join(".manifest.json.123.tmp"), b"{").unwrap();
    dir
}

#[test]
fn prune_removes_interrupted_backups_and_leaves_a_running_one_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, ids) = two_backups(tmp.path());
    let dead = interrupted(tmp.path(), "20200101T000000Z-1");
    let running = interrupted(tmp.path(), "20200101T000001Z-2");
    // A running backup holds its lock.
    let lock = std::fs::File::create(running.join(".lock")).unwrap();
    lock.try_lock().unwrap();
    let dry = repo.prune(&keep_last(5), None, true).unwrap();
    assert_eq!(dry.remove_incomplete, ["20200101T000000Z-1"]);
    assert!(dead.exists(), "a dry run removes nothing");
    let plan = repo.prune(&keep_last(5), None, false).unwrap();
    assert_eq!(plan.remove_incomplete, ["20200101T000000Z-1"], "{plan:?}");
    assert_eq!(plan.in_progress, ["20200101T000001Z-2"], "{plan:?}");
    assert!(!dead.exists());
    assert!(running.join("snapshot.ckpt.zst").exists());
    assert_eq!(repo.list().unwrap().len(), ids.len());
    // Its writer died: the next prune removes it too, and verify is clean again.
    drop(lock);
    let plan = repo.prune(&keep_last(5), None, false).unwrap();
    assert_eq!(plan.remove_incomplete, ["20200101T000001Z-2"]);
    assert!(!running.exists());
    assert!(repo.verify(None, false, &NoProgress).unwrap().is_clean());
}

#[test]
fn scheduled_retention_removes_an_interrupted_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, _) = two_backups(tmp.path());
    let dead = interrupted(tmp.path(), "20200101T000000Z-1");
    let db = Db::open_with(
        tmp.path().join("d"),
        scheduled(&tmp.path().join("r"), Duration::from_millis(20)),
    )
    .unwrap();
    wait_for("the interrupted backup to be removed", || !dead.exists());
    db.close().unwrap();
}

#[test]
fn a_backup_whose_manifest_is_corrupt_is_listed_as_damaged() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, ids) = two_backups(tmp.path());
    std::fs::write(manifest_path(tmp.path(), &ids[0]), b"{ not json").unwrap();
    interrupted(tmp.path(), "20200101T000000Z-1");
    let entries = repo.entries().unwrap();
    let status: Vec<(String, BackupState)> =
        entries.iter().map(|e| (e.id.clone(), e.status)).collect();
    assert_eq!(
        status,
        [
            ("20200101T000000Z-1".to_string(), BackupState::Incomplete),
            (ids[0].clone(), BackupState::Damaged),
            (ids[1].clone(), BackupState::Complete),
        ]
    );
    assert!(entries[1]
        .problem
        .as_deref()
        .unwrap()
        .contains("manifest is damaged"));
    // Restore passes over it, and says so.
    let plan = plan_restore(&repo, &RestoreTarget::Latest, false).unwrap();
    assert!(plan.skipped.iter().any(|s| s.id == ids[0]), "{plan:?}");
}

fn sleep(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

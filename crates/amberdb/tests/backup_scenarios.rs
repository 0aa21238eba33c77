//! Backup, restore and recovery scenarios, one test per scenario: online backups under load,
//! damage in every repository file, pruning that must not break chains, automatic recovery,
//! continuous archiving, scheduling and detaching.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amberdb::backup::{restore, BackupSchedule, NoProgress};
use amberdb::{BackupRepo, Db, Options, RecoveryMode, RestoreTarget, RetentionPolicy};
use serde_json::json;

type State = BTreeMap<(String, String), serde_json::Value>;

fn state_of(db: &Db) -> State {
    db.view()
        .iter_all()
        .map(|(c, d)| ((c.to_string(), d.key.to_string()), d.json().unwrap()))
        .collect()
}

fn small_segments() -> Options {
    Options {
        segment_size: 2048,
        ..Default::default()
    }
}

fn restore_to(repo: &BackupRepo, target: RestoreTarget, into: &Path) -> State {
    restore(repo, &target, false, into, &NoProgress).unwrap();
    let db = Db::open(into).unwrap();
    let s = state_of(&db);
    db.close().unwrap();
    s
}

fn fill(db: &Db, from: u32, to: u32) {
    for i in from..to {
        db.put(
            "players",
            &format!("p{}", i % 17),
            json!({"i": i, "pad": "x".repeat(100)}),
        )
        .unwrap();
    }
}

#[test]
fn segment_sealed_right_after_a_checkpointed_reopen_keeps_its_last_commit_time() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, repo_dir) = (tmp.path().join("d"), tmp.path().join("r"));
    let repo = BackupRepo::open_or_init(&repo_dir).unwrap();
    let db = Db::open(&data).unwrap();
    db.backup(&repo).unwrap();
    let first = db.put("players", "a", json!(1)).unwrap();
    db.put("players", "a", json!(2)).unwrap();
    db.close().unwrap(); // checkpoint: the next open replays nothing from this segment
    let db = Db::open(&data).unwrap();
    db.backup(&repo).unwrap(); // seals the segment without appending to it
    db.close().unwrap();
    let seg = repo
        .archived_segments()
        .unwrap()
        .into_iter()
        .last()
        .unwrap();
    assert!(
        seg.last_commit_ts_us > first.commit_ts,
        "sealed segment lost its last commit time"
    );
    let s = restore_to(
        &repo,
        RestoreTarget::Time(first.commit_ts),
        &tmp.path().join("t"),
    );
    assert_eq!(s[&("players".into(), "a".into())], json!(1));
}

#[test]
fn backups_taken_while_writers_run_equal_the_model_at_their_lsn() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, repo_dir) = (tmp.path().join("d"), tmp.path().join("r"));
    let repo = BackupRepo::open_or_init(&repo_dir).unwrap();
    let db = Db::open_with(&data, small_segments()).unwrap();
    let log: Arc<Mutex<Vec<(u64, String, serde_json::Value)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (db, log, stop) = (db.clone(), log.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let key = format!("w{w}-{}", i % 20);
                    let v = json!({"w": w, "i": i});
                    let c = db.put("players", &key, v.clone()).unwrap();
                    log.lock().unwrap().push((c.lsn, key, v));
                    i += 1;
                }
            })
        })
        .collect();
    let mut manifests = vec![];
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(30));
        manifests.push(db.backup(&repo).unwrap());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    db.close().unwrap();
    let mut log = log.lock().unwrap().clone();
    log.sort_by_key(|e| e.0);
    for (i, m) in manifests.iter().enumerate() {
        assert!(m.lsn > 0);
        let mut model = State::new();
        for (lsn, key, v) in log.iter().take_while(|e| e.0 <= m.lsn) {
            let _ = lsn;
            model.insert(("players".into(), key.clone()), v.clone());
        }
        let restored = restore_to(
            &repo,
            RestoreTarget::Backup(m.id.clone()),
            &tmp.path().join(format!("b{i}")),
        );
        assert_eq!(restored, model, "backup {} at LSN {}", m.id, m.lsn);
    }
}

/// A repository with two backups and archived log in between.
fn repo_with_history(tmp: &Path) -> (BackupRepo, u64, u64) {
    let repo = BackupRepo::open_or_init(tmp.join("r")).unwrap();
    let db = Db::open_with(tmp.join("d"), small_segments()).unwrap();
    fill(&db, 0, 50);
    let b1 = db.backup(&repo).unwrap().lsn;
    fill(&db, 50, 150);
    let b2 = db.backup(&repo).unwrap().lsn;
    db.close().unwrap();
    (repo, b1, b2)
}

fn flip(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    let at = at.min(b.len() - 1);
    b[at] ^= 0x40;
    std::fs::write(path, b).unwrap();
}

#[test]
fn flipped_byte_in_a_snapshot_is_found_by_verify_and_restore_refuses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, b1, _) = repo_with_history(tmp.path());
    let id = repo.list().unwrap()[0].id.clone();
    flip(
        &tmp.path()
            .join("r/backups")
            .join(&id)
            .join("snapshot.ckpt.zst"),
        200,
    );
    let r = repo.verify(None, false, &NoProgress).unwrap();
    assert!(
        r.problems
            .iter()
            .any(|p| p.file.to_string_lossy().contains(&id) && p.detail.contains("SHA-256")),
        "{r:?}"
    );
    let err = restore(
        &repo,
        &RestoreTarget::Lsn(b1),
        false,
        &tmp.path().join("x"),
        &NoProgress,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("snapshot.ckpt.zst") && err.to_string().contains("damaged"),
        "{err}"
    );
    assert!(
        !tmp.path().join("x").exists(),
        "nothing may be written for a failed restore"
    );
}

#[test]
fn flipped_byte_in_an_archived_segment_is_found_by_read_data_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, b1, _) = repo_with_history(tmp.path());
    let seg = repo
        .archived_segments()
        .unwrap()
        .into_iter()
        .find(|s| s.first_lsn > b1)
        .unwrap();
    let name = seg.data_file();
    flip(&tmp.path().join("r").join(&name), 30);
    let r = repo.verify(None, true, &NoProgress).unwrap();
    assert!(
        r.problems
            .iter()
            .any(|p| p.file.to_string_lossy().contains(&name)),
        "{r:?}"
    );
    let err = restore(
        &repo,
        &RestoreTarget::Lsn(seg.last_lsn),
        false,
        &tmp.path().join("x"),
        &NoProgress,
    )
    .unwrap_err();
    assert!(err.to_string().contains(&name), "{err}");
}

#[test]
fn flipped_byte_in_a_manifest_is_found_by_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, ..) = repo_with_history(tmp.path());
    let id = repo.list().unwrap()[1].id.clone();
    flip(
        &tmp.path().join("r/backups").join(&id).join("manifest.json"),
        10,
    );
    let r = repo.verify(None, false, &NoProgress).unwrap();
    assert!(
        r.problems
            .iter()
            .any(|p| p.file.to_string_lossy().contains("manifest.json")),
        "{r:?}"
    );
}

#[test]
fn deleted_archived_segment_shows_as_a_gap_with_the_targets_it_makes_unreachable() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, b1, b2) = repo_with_history(tmp.path());
    let seg = repo
        .archived_segments()
        .unwrap()
        .into_iter()
        .find(|s| s.first_lsn > b1 + 1 && s.last_lsn < b2)
        .unwrap();
    for name in [seg.meta_file(), seg.data_file(), seg.seal_file()] {
        std::fs::remove_file(tmp.path().join("r").join(name)).unwrap();
    }
    let r = repo.verify(None, false, &NoProgress).unwrap();
    assert_eq!(r.gaps, vec![(seg.first_lsn, seg.last_lsn)]);
    assert!(
        r.problems.iter().any(|p| p.detail.contains(&format!(
            "missing LSNs {}..={}",
            seg.first_lsn, seg.last_lsn
        ))),
        "{r:?}"
    );
    let err = restore(
        &repo,
        &RestoreTarget::Lsn(seg.last_lsn),
        false,
        &tmp.path().join("x"),
        &NoProgress,
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("gap") && text.contains(&format!("LSN {}", seg.first_lsn - 1)),
        "{text}"
    );
    // Targets before the gap and at the later backup still work.
    restore_to(
        &repo,
        RestoreTarget::Lsn(seg.first_lsn - 1),
        &tmp.path().join("before"),
    );
    restore_to(&repo, RestoreTarget::Lsn(b2), &tmp.path().join("at-b2"));
}

#[test]
fn prune_never_breaks_the_chain_of_a_kept_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = BackupRepo::open_or_init(tmp.path().join("r")).unwrap();
    let db = Db::open_with(tmp.path().join("d"), small_segments()).unwrap();
    let mut lsns = vec![];
    for round in 0..4 {
        fill(&db, round * 40, round * 40 + 40);
        lsns.push(db.backup(&repo).unwrap().lsn);
    }
    fill(&db, 200, 230);
    let end = db.backup(&repo).unwrap().lsn;
    db.close().unwrap();
    let plan = repo
        .prune(
            &RetentionPolicy {
                keep_last: Some(2),
                ..Default::default()
            },
            None,
            false,
        )
        .unwrap();
    assert_eq!(plan.keep.len(), 2);
    assert!(!plan.remove_segments.is_empty(), "old segments should go");
    let oldest_kept = plan.keep.iter().map(|k| k.lsn).min().unwrap();
    // Every LSN from the oldest kept backup to the end is still restorable.
    for (i, lsn) in [oldest_kept, (oldest_kept + end) / 2, end]
        .into_iter()
        .enumerate()
    {
        restore_to(
            &repo,
            RestoreTarget::Lsn(lsn),
            &tmp.path().join(format!("x{i}")),
        );
    }
    assert!(repo.verify(None, true, &NoProgress).unwrap().is_clean());
    // And the removed ones are really gone.
    let err = restore(
        &repo,
        &RestoreTarget::Lsn(lsns[0]),
        false,
        &tmp.path().join("gone"),
        &NoProgress,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("before the oldest backup"),
        "{err}"
    );
}

#[test]
fn automatic_recovery_rebuilds_a_damaged_directory_from_the_repository_and_reports_the_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, repo_dir) = (tmp.path().join("d"), tmp.path().join("r"));
    let repo = BackupRepo::open_or_init(&repo_dir).unwrap();
    let opts = Options {
        segment_size: 2048,
        checkpoint_on_close: false,
        // No history window: the local log goes as soon as checkpoints allow, so the repository
        // is the only copy of the archived commits.
        history_retention: Duration::ZERO,
        ..Default::default()
    };
    let db = Db::open_with(&data, opts.clone()).unwrap();
    // The model after every commit.
    let mut history: Vec<State> = vec![State::new()];
    let mut commit = |db: &Db, i: u32| {
        db.put(
            "players",
            &format!("p{}", i % 17),
            json!({"i": i, "pad": "x".repeat(100)}),
        )
        .unwrap();
        history.push(state_of(db));
    };
    for i in 0..60 {
        commit(&db, i);
    }
    let backup = db.backup(&repo).unwrap();
    for i in 60..200 {
        commit(&db, i);
    }
    let archived = db.archive(&repo).unwrap();
    let last = db.view().lsn();
    assert!(
        archived > backup.lsn && archived < last,
        "archived {archived}, last {last}"
    );
    db.checkpoint().unwrap();
    db.close().unwrap();
    // Damage the only checkpoint and the first local segment after the archived ones.
    let ckpt = std::fs::read_dir(data.join("checkpoints"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    flip(&ckpt, 100);
    let seg = data.join("log").join(format!("{:020}.log", archived + 1));
    flip(&seg, 700);
    // Without the option, open refuses.
    let refused = Db::open_with(&data, opts.clone()).expect_err("refused");
    assert!(matches!(refused, amberdb::Error::Damaged(_)), "{refused}");
    let db = Db::open_with(
        &data,
        Options {
            recovery: RecoveryMode::Auto {
                repo: repo_dir.clone(),
            },
            ..opts
        },
    )
    .unwrap();
    let auto = db
        .recovery_report()
        .auto
        .clone()
        .expect("auto recovery ran");
    assert!(auto.source.contains(&backup.id), "{}", auto.source);
    assert!(
        auto.lsn >= archived && auto.lsn < last,
        "reached {}",
        auto.lsn
    );
    assert_eq!(auto.commits_replayed, auto.lsn - backup.lsn);
    assert_eq!(auto.lost, Some((auto.lsn + 1, last)));
    assert_eq!(auto.documents, history[auto.lsn as usize].len() as u64);
    assert_eq!(state_of(&db), history[auto.lsn as usize]);
    // The damaged files are in quarantine, untouched.
    let names: Vec<_> = auto
        .quarantined_files
        .iter()
        .map(|p| p.file_name().unwrap().to_owned())
        .collect();
    assert!(names.contains(&ckpt.file_name().unwrap().to_owned()));
    assert!(names.contains(&seg.file_name().unwrap().to_owned()));
    assert!(auto.quarantined_files.iter().all(|p| p.exists()));
    // It is a normal database again.
    db.put("players", "after", json!(1)).unwrap();
    db.close().unwrap();
    assert!(amberdb::verify_dir(&data).unwrap().is_clean());
}

#[test]
fn continuous_archiving_copies_sealed_segments_without_a_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("r");
    let opts = Options {
        segment_size: 1024,
        archive_to: Some(repo_dir.clone()),
        ..Default::default()
    };
    let db = Db::open_with(tmp.path().join("d"), opts).unwrap();
    fill(&db, 0, 80);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let repo = loop {
        if let Ok(repo) = BackupRepo::open(&repo_dir) {
            if repo.archived_segments().unwrap().len() >= 3 {
                break repo;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "archiver did not archive sealed segments"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let sealed_through = repo.archived_segments().unwrap().last().unwrap().last_lsn;
    assert!(db.stats().archive_slots[0].archived_through_lsn >= sealed_through);
    db.close().unwrap();
}

#[test]
fn scheduler_backs_up_prunes_and_reports_failures_without_stopping_the_database() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("r");
    let schedule = BackupSchedule {
        repo: repo_dir.clone(),
        interval: Duration::from_millis(150),
        retention: Some(RetentionPolicy {
            keep_last: Some(2),
            ..Default::default()
        }),
        pitr_window: None,
    };
    let db = Db::open_with(
        tmp.path().join("d"),
        Options {
            backup_schedule: Some(schedule),
            ..Default::default()
        },
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut i = 0;
    while db.backup_status().backups < 4 {
        db.put("players", &format!("p{i}"), json!(i)).unwrap();
        i += 1;
        assert!(
            std::time::Instant::now() < deadline,
            "scheduler did not run: {:?}",
            db.backup_status()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    db.close().unwrap();
    let kept = BackupRepo::open(&repo_dir).unwrap().list().unwrap();
    assert!(
        kept.len() <= 3,
        "retention not applied: {} backups",
        kept.len()
    );

    // A repository path that cannot work: failures are recorded, writes go on.
    let bad = tmp.path().join("not-a-dir");
    std::fs::write(&bad, b"file").unwrap();
    let schedule = BackupSchedule {
        repo: bad,
        interval: Duration::from_millis(50),
        retention: None,
        pitr_window: None,
    };
    let db = Db::open_with(
        tmp.path().join("d2"),
        Options {
            backup_schedule: Some(schedule),
            ..Default::default()
        },
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while db.backup_status().failures < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "failures not reported"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(db.backup_status().last_error.is_some());
    db.put("players", "still", json!("writing")).unwrap();
    db.close().unwrap();
}

#[test]
fn a_data_directory_keeps_its_log_for_an_attached_repository_until_detached() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    let repo = BackupRepo::open_or_init(tmp.path().join("r")).unwrap();
    let opts = Options {
        segment_size: 1024,
        // No history window: only the repository's slot keeps segments checkpoints released.
        history_retention: Duration::ZERO,
        ..Default::default()
    };
    let db = Db::open_with(&data, opts.clone()).unwrap();
    db.backup(&repo).unwrap();
    fill(&db, 0, 100);
    db.checkpoint().unwrap();
    db.checkpoint().unwrap();
    fill(&db, 100, 101);
    db.checkpoint().unwrap();
    // Checkpoints would allow removing the segments, but the repository has not archived them.
    let stats = db.stats();
    assert!(stats.log_segments > 3, "{stats:?}");
    assert!(stats.log_retained_for_archive_bytes > 0);
    assert!(db.detach(repo.id()).unwrap());
    fill(&db, 101, 102);
    db.checkpoint().unwrap();
    let after = db.stats();
    assert!(
        after.log_segments < stats.log_segments,
        "{} vs {}",
        after.log_segments,
        stats.log_segments
    );
    assert_eq!(after.log_retained_for_archive_bytes, 0);
    db.close().unwrap();
}

#[test]
fn restore_refuses_a_non_empty_target_and_an_interrupted_restore_does_not_open() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, b1, _) = repo_with_history(tmp.path());
    let busy = tmp.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("x"), b"data").unwrap();
    let err = restore(&repo, &RestoreTarget::Lsn(b1), false, &busy, &NoProgress).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    let half = tmp.path().join("half");
    std::fs::create_dir(&half).unwrap();
    std::fs::write(half.join(amberdb::backup::RESTORE_MARKER), b"").unwrap();
    let err = Db::open(&half).expect_err("refused");
    assert!(err.to_string().contains("interrupted restore"), "{err}");
}

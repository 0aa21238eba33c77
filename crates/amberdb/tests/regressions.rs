//! Regression tests of issue 8 (durability and recovery hardening), one per scenario, each
//! named after what it proves. Each fails on the engine before its fix.

#![allow(clippy::unwrap_used)]

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use amberdb::io::{Fault, FaultInjector, IoOp};
use amberdb::log::segment::LOG_HEAD_FILE;
use amberdb::{
    buffered, verify_dir, BackupRepo, Db, Error, Options, RecoveryMode, Transaction, LOG_DIR,
};
use serde_json::json;
use support::{flip, newest_segment, segment_frames, truncate, zero};

fn no_checkpoint_on_close() -> Options {
    Options {
        checkpoint_on_close: false,
        checkpoint_interval: None,
        // No history window: checkpoints release the segments they do not need.
        history_retention: Duration::ZERO,
        ..Options::default()
    }
}

/// The newest segment and the offsets of its frames by LSN.
fn last_segment_frames(data: &Path) -> (PathBuf, Vec<(u64, u64)>) {
    let path = newest_segment(data);
    let frames = segment_frames(&path);
    (path, frames)
}

fn offset_of(frames: &[(u64, u64)], lsn: u64) -> u64 {
    frames.iter().find(|(l, _)| *l == lsn).unwrap().1
}

/// 10 `Sync` commits, then 5 `Buffered` ones (written in one go, never synced while the
/// process ran: `max_delay` is long and the database is dropped by a "power cut" simulation
/// that loses the first sectors of their write).
fn torn_group_commit(data: &Path) -> (PathBuf, u64) {
    let db = Db::open_with(data, no_checkpoint_on_close()).unwrap();
    for i in 0..10 {
        db.put("players", &format!("s{i}"), json!(i)).unwrap();
    }
    for i in 0..5 {
        let mut tx = Transaction::new();
        tx.put("players", &format!("b{i}"), json!(i));
        tx.durability(buffered(Duration::from_secs(3600)));
        db.commit(&tx).unwrap();
    }
    db.close().unwrap();
    let (path, frames) = last_segment_frames(data);
    assert_eq!(frames.len(), 15);
    // The disk kept the later sectors of the unsynced write and lost the start of LSN 11.
    let at = offset_of(&frames, 11);
    zero(&path, at, 40);
    (path, at)
}

#[test]
fn torn_group_commit_after_power_loss_is_cut_as_a_torn_tail_not_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    let (path, at) = torn_group_commit(&data);
    let report = verify_dir(&data).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    let db = Db::open_with(&data, no_checkpoint_on_close()).unwrap();
    let r = db.recovery_report().clone();
    assert_eq!(r.lsn, 10);
    let torn = r.torn_tail.unwrap();
    assert_eq!((torn.file, torn.offset), (path, at));
    assert_eq!(
        torn.unsynced,
        Some((12, 15)),
        "the report names the discarded commits"
    );
    assert!(r.auto.is_none());
    for i in 0..10 {
        assert_eq!(
            db.get("players", &format!("s{i}")).unwrap().json().unwrap(),
            json!(i)
        );
    }
    assert!(db.get("players", "b1").is_none());
    // The log continues after the cut.
    assert_eq!(db.put("players", "after", json!(1)).unwrap().lsn, 11);
    db.close().unwrap();
    assert!(verify_dir(&data).unwrap().is_clean());
}

#[test]
fn torn_group_commit_with_auto_recovery_reports_the_unsynced_commits_it_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    let repo = tmp.path().join("r");
    BackupRepo::open_or_init(&repo).unwrap();
    torn_group_commit(&data);
    let opts = Options {
        recovery: RecoveryMode::Auto { repo },
        ..no_checkpoint_on_close()
    };
    let db = Db::open_with(&data, opts).unwrap();
    let r = db.recovery_report().clone();
    assert!(
        r.auto.is_none(),
        "a torn tail needs no automatic recovery: {r:?}"
    );
    assert_eq!(r.lsn, 10);
    assert_eq!(r.torn_tail.unwrap().unsynced, Some((12, 15)));
    db.close().unwrap();
}

#[test]
fn damage_to_a_synced_frame_followed_by_valid_frames_is_still_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    let db = Db::open_with(&data, no_checkpoint_on_close()).unwrap();
    for i in 0..10 {
        db.put("players", &format!("s{i}"), json!(i)).unwrap();
    }
    db.close().unwrap();
    let (path, frames) = last_segment_frames(&data);
    // LSN 6 was synced before LSN 7 was written: LSN 7's frame records it.
    let at = offset_of(&frames, 6);
    zero(&path, at, 40);
    match Db::open_with(&data, no_checkpoint_on_close()) {
        Err(Error::Damaged(d)) => {
            assert_eq!((d.file, d.offset), (path.clone(), at));
            assert!(d.detail.contains("LSN 7"), "{}", d.detail);
        }
        other => panic!("expected Damaged, got {:?}", other.map(|_| ())),
    }
    let v = verify_dir(&data).unwrap();
    assert!(
        v.problems
            .iter()
            .any(|p| p.file == path && p.offset == Some(at)),
        "{:?}",
        v.problems
    );
}

/// 30 `Sync` puts k1..k30, a checkpoint after the 20th, then the process stops without a
/// checkpoint (like a SIGKILL: nothing else is written). Returns the auto-recovery options.
fn thirty_puts_checkpoint_after_twenty(tmp: &Path) -> (PathBuf, Options) {
    let data = tmp.join("d");
    let repo = tmp.join("r");
    BackupRepo::open_or_init(&repo).unwrap();
    // No checkpoint on close: the disk is as a SIGKILL leaves it.
    thirty_puts_checkpoint_at_twenty(&data, no_checkpoint_on_close());
    let opts = Options {
        recovery: RecoveryMode::Auto { repo },
        ..no_checkpoint_on_close()
    };
    (data, opts)
}

#[test]
fn auto_recovery_replays_intact_commits_after_damage_inside_the_checkpointed_range() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, opts) = thirty_puts_checkpoint_after_twenty(tmp.path());
    let (path, frames) = last_segment_frames(&data);
    // The CRC byte of LSN 5's frame, which the checkpoint at LSN 20 already holds.
    let at = offset_of(&frames, 5);
    flip(&path, at + 4);
    let db = Db::open_with(&data, opts).unwrap();
    let r = db.recovery_report().clone();
    let auto = r.auto.clone().expect("automatic recovery ran");
    assert_eq!(r.lsn, 30, "{auto:?}");
    assert_eq!(auto.lsn, 30);
    assert_eq!(auto.lost, None);
    assert_eq!(auto.commits_replayed, 10);
    assert_eq!(auto.stepped_over.len(), 1, "{auto:?}");
    assert_eq!(
        (&auto.stepped_over[0].0, auto.stepped_over[0].1),
        (&path, at)
    );
    assert_puts_through(&db, 30);
    db.close().unwrap();
}

#[test]
fn auto_recovery_names_the_intact_commits_it_could_not_replay_after_damage_past_the_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, opts) = thirty_puts_checkpoint_after_twenty(tmp.path());
    let (path, frames) = last_segment_frames(&data);
    // LSN 25 is after the checkpoint, and valid commits 26..=30 follow it.
    flip(&path, offset_of(&frames, 25) + 4);
    let db = Db::open_with(&data, opts).unwrap();
    let r = db.recovery_report().clone();
    let auto = r.auto.clone().expect("automatic recovery ran");
    assert_eq!(r.lsn, 24);
    assert_eq!(auto.lost, Some((25, 30)), "{auto:?}");
    assert!(db.get("kv", "k24").is_some() && db.get("kv", "k25").is_none());
    db.close().unwrap();
}

fn expect_damaged(data: &Path) -> amberdb::Damage {
    support::expect_damaged(data, no_checkpoint_on_close())
}

/// `db` holds k1..=k`last` with the values `thirty_puts_checkpoint_at_twenty` wrote.
fn assert_puts_through(db: &Db, last: u64) {
    for i in 1..=last {
        let doc = db.get("kv", &format!("k{i}"));
        assert_eq!(doc.map(|d| d.json().unwrap()), Some(json!(i)), "k{i}");
    }
}

/// Puts k1..k30 into a new database at `data`, a checkpoint after the 20th, then closes it
/// without a checkpoint.
fn thirty_puts_checkpoint_at_twenty(data: &Path, opts: Options) {
    let db = Db::open_with(data, opts).unwrap();
    for i in 1..=30 {
        db.put("kv", &format!("k{i}"), json!(i)).unwrap();
        if i == 20 {
            assert_eq!(db.checkpoint().unwrap().lsn, 20);
        }
    }
    db.close().unwrap();
}

#[test]
fn deleted_newest_segment_is_noticed_by_open_and_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    let opts = Options {
        segment_size: 512,
        ..no_checkpoint_on_close()
    };
    thirty_puts_checkpoint_at_twenty(&data, opts);
    let newest = newest_segment(&data);
    fs::remove_file(&newest).unwrap();
    let d = expect_damaged(&data);
    assert_eq!(d.file, newest);
    assert!(d.detail.contains("missing"), "{}", d.detail);
    let v = verify_dir(&data).unwrap();
    assert!(
        v.problems.iter().any(|p| p.file == newest),
        "{:?}",
        v.problems
    );
}

#[test]
fn newest_segment_truncated_below_the_checkpoint_is_noticed_by_open_and_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    thirty_puts_checkpoint_at_twenty(&data, no_checkpoint_on_close());
    let (path, frames) = last_segment_frames(&data);
    // Cut at a frame boundary below the checkpoint: the rest scans clean.
    let cut = offset_of(&frames, 15);
    truncate(&path, cut);
    let d = expect_damaged(&data);
    assert_eq!((d.file.clone(), d.offset), (path.clone(), cut));
    assert!(d.detail.contains("LSN 20"), "{}", d.detail);
    let v = verify_dir(&data).unwrap();
    assert!(
        v.problems
            .iter()
            .any(|p| p.file == path && p.offset == Some(cut)),
        "{:?}",
        v.problems
    );
}

#[test]
fn deleted_newest_segment_with_auto_recovery_is_refused_not_reported_as_nothing_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, opts) = thirty_puts_checkpoint_after_twenty(tmp.path());
    let (path, _) = last_segment_frames(&data);
    fs::remove_file(&path).unwrap();
    match Db::open_with(&data, opts) {
        Err(Error::Damaged(d)) => {
            assert_eq!(d.file, path);
            assert!(
                d.detail.contains("cannot name what was lost"),
                "{}",
                d.detail
            );
        }
        other => panic!("expected Damaged, got {:?}", other.map(|_| ())),
    }
    // Nothing was moved: the checkpoint is still in place.
    assert!(!data.join(amberdb::QUARANTINE_DIR).exists());
}

#[test]
fn damage_inside_the_newest_segment_is_reported_as_damage_not_as_a_truncation() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, _) = thirty_puts_checkpoint_after_twenty(tmp.path());
    let (path, frames) = last_segment_frames(&data);
    let at = offset_of(&frames, 5);
    flip(&path, at + 4);
    let d = expect_damaged(&data);
    assert_eq!((d.file, d.offset), (path, at));
    assert!(d.detail.contains("CRC"), "{}", d.detail);
}

/// Fails every write to a file whose name contains `what` with ENOSPC.
struct FullDiskFor(&'static str);

impl amberdb::io::FaultInjector for FullDiskFor {
    fn on_io(&self, op: amberdb::io::IoOp<'_>) -> amberdb::io::Fault {
        match op {
            amberdb::io::IoOp::Write { path, .. } if path.to_string_lossy().contains(self.0) => {
                amberdb::io::Fault::Fail(std::io::Error::from_raw_os_error(28))
            }
            _ => amberdb::io::Fault::Proceed,
        }
    }
}

#[test]
fn auto_recovery_that_cannot_write_the_recovered_state_leaves_the_original_files_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, opts) = thirty_puts_checkpoint_after_twenty(tmp.path());
    let (path, frames) = last_segment_frames(&data);
    flip(&path, offset_of(&frames, 25) + 4);
    let full = Options {
        faults: amberdb::io::Faults::new(std::sync::Arc::new(FullDiskFor(".ckpt"))),
        ..opts.clone()
    };
    assert!(Db::open_with(&data, full).is_err());
    // The directory is not a new, empty database: it is still the damaged one.
    let d = expect_damaged(&data);
    assert_eq!(d.file, path);
    // With room again, automatic recovery succeeds and loses only what it names.
    let db = Db::open_with(&data, opts).unwrap();
    assert_eq!(db.recovery_report().lsn, 24);
    assert_eq!(
        db.recovery_report().auto.as_ref().unwrap().lost,
        Some((25, 30))
    );
    db.close().unwrap();
}

#[test]
fn auto_recovery_interrupted_after_its_marker_is_refused_by_open_and_finished_by_auto_open() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, opts) = thirty_puts_checkpoint_after_twenty(tmp.path());
    let (path, frames) = last_segment_frames(&data);
    flip(&path, offset_of(&frames, 25) + 4);
    // The marker's directory sync fails: the new state is staged, the marker written, and no
    // original file has been moved yet.
    struct FailMarkerSync;
    impl amberdb::io::FaultInjector for FailMarkerSync {
        fn on_io(&self, op: amberdb::io::IoOp<'_>) -> amberdb::io::Fault {
            match op {
                amberdb::io::IoOp::Write { path, .. }
                    if path.to_string_lossy().contains("RECOVERY_IN_PROGRESS") =>
                {
                    amberdb::io::Fault::Proceed
                }
                amberdb::io::IoOp::Sync { path } | amberdb::io::IoOp::SyncDir { path }
                    if path.join(amberdb::backup::RECOVERY_MARKER).exists() =>
                {
                    amberdb::io::Fault::Fail(std::io::Error::from_raw_os_error(5))
                }
                _ => amberdb::io::Fault::Proceed,
            }
        }
    }
    let failing = Options {
        faults: amberdb::io::Faults::new(std::sync::Arc::new(FailMarkerSync)),
        ..opts.clone()
    };
    assert!(Db::open_with(&data, failing).is_err());
    assert!(data.join(amberdb::backup::RECOVERY_MARKER).exists());
    let d = expect_damaged(&data);
    assert_eq!(d.file, data.join(amberdb::backup::RECOVERY_MARKER));
    let db = Db::open_with(&data, opts).unwrap();
    let r = db.recovery_report().clone();
    assert_eq!(r.lsn, 24);
    let auto = r.auto.unwrap();
    assert_eq!(auto.lost, Some((25, 30)));
    assert!(auto
        .quarantined_files
        .iter()
        .any(|f| f.ends_with(path.file_name().unwrap())));
    assert!(!data.join(amberdb::backup::RECOVERY_MARKER).exists());
    assert!(!data.join(amberdb::backup::STAGING_DIR).exists());
    assert_puts_through(&db, 24);
    db.close().unwrap();
}

#[test]
fn read_log_reports_damage_in_the_log_instead_of_stopping_there() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, _) = thirty_puts_checkpoint_after_twenty(tmp.path());
    let source = amberdb::backup::LogSource::DataDir(data.clone());
    let all = amberdb::backup::read_log(&source, &Default::default()).unwrap();
    assert_eq!(all.len(), 30);
    let (path, frames) = last_segment_frames(&data);
    let at = offset_of(&frames, 12);
    flip(&path, at + 4);
    match amberdb::backup::read_log(&source, &Default::default()) {
        Err(Error::Damaged(d)) => assert_eq!((d.file, d.offset), (path, at)),
        other => panic!("expected Damaged, got {other:?}"),
    }
}

fn flip_middle(path: &Path) {
    let len = fs::metadata(path).unwrap().len();
    flip(path, len / 2);
}

#[test]
fn auto_recovery_rebuilds_a_damaged_slot_file_and_reports_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, repo_dir) = (tmp.path().join("d"), tmp.path().join("r"));
    let repo = BackupRepo::open_or_init(&repo_dir).unwrap();
    let db = Db::open(&data).unwrap();
    db.put("kv", "a", json!(1)).unwrap();
    db.backup(&repo).unwrap();
    db.close().unwrap();
    let slots = data.join("archive.json");
    fs::write(&slots, b"{\"repos\": [{\"repository_id\": ").unwrap();
    match Db::open(&data) {
        Err(Error::Damaged(d)) => assert_eq!(d.file, slots),
        other => panic!("expected Damaged, got {:?}", other.map(|_| ())),
    }
    let opts = Options {
        recovery: RecoveryMode::Auto { repo: repo_dir },
        ..Options::default()
    };
    let db = Db::open_with(&data, opts).unwrap();
    let rebuilt = db.recovery_report().slots_rebuilt.clone().unwrap();
    assert_eq!(rebuilt.repos, vec![repo.id().to_string()]);
    assert_eq!(
        fs::read(&rebuilt.quarantined).unwrap(),
        b"{\"repos\": [{\"repository_id\": "
    );
    assert_eq!(db.stats().archive_slots.len(), 1);
    assert_eq!(db.get("kv", "a").unwrap().json().unwrap(), json!(1));
    // The rebuilt slot works: the next backup archives and succeeds.
    db.put("kv", "b", json!(2)).unwrap();
    db.backup(&repo).unwrap();
    db.close().unwrap();
    assert!(Db::open(&data)
        .unwrap()
        .recovery_report()
        .slots_rebuilt
        .is_none());
}

#[test]
fn auto_recovery_replays_the_archive_from_empty_when_every_backup_is_damaged() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, repo_dir) = (tmp.path().join("d"), tmp.path().join("r"));
    let repo = BackupRepo::open_or_init(&repo_dir).unwrap();
    let opts = Options {
        segment_size: 1024,
        // No history window: the local log goes once checkpoints and the archive allow.
        history_retention: Duration::ZERO,
        ..Options::default()
    };
    let db = Db::open_with(&data, opts.clone()).unwrap();
    for i in 1..=20 {
        db.put("kv", &format!("k{i}"), json!(i)).unwrap();
        if i == 10 || i == 20 {
            db.backup(&repo).unwrap();
        }
    }
    db.close().unwrap();
    for (_, ckpt) in amberdb::checkpoint::list_checkpoints(&data.join("checkpoints")).unwrap() {
        flip_middle(&ckpt);
    }
    for b in repo.list().unwrap() {
        flip_middle(
            &repo_dir
                .join("backups")
                .join(&b.id)
                .join("snapshot.ckpt.zst"),
        );
    }
    let auto_opts = Options {
        recovery: RecoveryMode::Auto { repo: repo_dir },
        ..opts
    };
    let db = Db::open_with(&data, auto_opts).unwrap();
    let auto = db
        .recovery_report()
        .auto
        .clone()
        .expect("automatic recovery ran");
    assert_eq!(auto.lsn, 20, "{auto:?}");
    assert!(
        auto.source.contains("every backup damaged"),
        "{}",
        auto.source
    );
    assert_eq!(auto.lost, None);
    assert_puts_through(&db, 20);
    db.close().unwrap();
}

#[test]
fn archiving_a_restored_timeline_into_the_old_repository_starts_a_timeline_not_stitched() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, repo_dir) = (tmp.path().join("d"), tmp.path().join("r"));
    let repo = BackupRepo::open_or_init(&repo_dir).unwrap();
    let db = Db::open(&data).unwrap();
    for i in 1..=20 {
        db.put("kv", &format!("k{i}"), json!(i)).unwrap();
        if i == 10 || i == 20 {
            db.backup(&repo).unwrap(); // seals 1..=10, then 11..=20
        }
    }
    db.close().unwrap();
    // The runbook: restore to LSN 12, swap it in, keep writing, back up to the same repository.
    let restored = tmp.path().join("restored");
    amberdb::backup::restore(
        &repo,
        &amberdb::RestoreTarget::Lsn(12),
        false,
        &restored,
        &amberdb::backup::NoProgress,
    )
    .unwrap();
    let db = Db::open(&restored).unwrap();
    for i in 13..=17 {
        db.put("kv", &format!("new{i}"), json!(i)).unwrap();
    }
    // The new timeline archives beside the old one (issue 8 item 5: timelines).
    db.backup(&repo).unwrap();
    db.close().unwrap();
    // Latest follows the newest timeline: LSN 17 with the new commits, never the undone
    // 13..=20 of the old one.
    let latest = tmp.path().join("latest");
    let r = amberdb::backup::restore(
        &repo,
        &amberdb::RestoreTarget::Latest,
        false,
        &latest,
        &amberdb::backup::NoProgress,
    )
    .unwrap();
    assert_eq!(r.lsn, 17);
    let db = Db::open(&latest).unwrap();
    assert!(db.get("kv", "new13").is_some() && db.get("kv", "k12").is_some());
    assert!(db.get("kv", "k13").is_none() && db.get("kv", "k20").is_none());
    db.close().unwrap();
}

/// Issue 8 item 17: a checkpoint copied under a later LSN's name made open refuse with an
/// empty file name and an empty reason (": damaged at offset 0: ; falling back would lose
/// commits 11..=20"), while `verify` named the file. Open now skips it as damage, like
/// `verify`, and names it with what is wrong; one renamed to an earlier name is refused too.
#[test]
fn checkpoint_under_another_lsn_name_is_refused_naming_it_not_an_empty_file_name() {
    for (name_lsn, keep_original) in [(20, true), (20, false), (5, false)] {
        let ctx = format!("checkpoint at 10 named {name_lsn}, original kept: {keep_original}");
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("d");
        let opts = Options {
            segment_size: 600,
            ..no_checkpoint_on_close()
        };
        let db = Db::open_with(&data, opts).unwrap();
        for i in 1..=10 {
            db.put("kv", &format!("k{i}"), json!(i)).unwrap();
        }
        let c = db.checkpoint().unwrap();
        db.close().unwrap();
        let misnamed = c.path.with_file_name(format!("{name_lsn:020}.ckpt"));
        fs::copy(&c.path, &misnamed).unwrap();
        if !keep_original {
            fs::remove_file(&c.path).unwrap();
        }
        let d = expect_damaged(&data);
        assert_eq!(d.file, misnamed, "{ctx}: {d:?}");
        assert!(
            d.detail
                .contains(&format!("header says LSN 10, file name says {name_lsn}")),
            "{ctx}: {}",
            d.detail
        );
        let v = verify_dir(&data).unwrap();
        assert!(
            v.problems.iter().any(|p| p.file == misnamed),
            "{ctx}: {:?}",
            v.problems
        );
    }
}

/// Fails every read of a file whose path ends with these components with EIO.
struct UnreadableFiles(PathBuf);

impl FaultInjector for UnreadableFiles {
    fn on_io(&self, op: IoOp<'_>) -> Fault {
        match op {
            IoOp::Read { path } if path.ends_with(&self.0) => {
                Fault::Fail(std::io::Error::from_raw_os_error(5))
            }
            _ => Fault::Proceed,
        }
    }
}

/// Issue 8 items 6, 9 and 17: an unreadable (EIO) `log/HEAD` was skipped as if it were absent,
/// so with the newest segment also gone open succeeded at the checkpoint and the commits after
/// it vanished without a word. An unreadable head record is damage naming the file and the
/// failed read, for open and verify alike.
#[test]
fn unreadable_log_head_is_damage_naming_it_not_silently_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    let opts = Options {
        segment_size: 512,
        ..no_checkpoint_on_close()
    };
    thirty_puts_checkpoint_at_twenty(&data, opts);
    fs::remove_file(newest_segment(&data)).unwrap();
    let head = data.join(LOG_DIR).join(LOG_HEAD_FILE);
    let _eio = amberdb::io::install(
        tmp.path(),
        Arc::new(UnreadableFiles(Path::new(LOG_DIR).join(LOG_HEAD_FILE))),
    );
    let d = expect_damaged(&data);
    assert_eq!(d.file, head, "{d:?}");
    assert!(d.detail.contains("read of"), "{}", d.detail);
    let v = verify_dir(&data).unwrap();
    assert!(
        v.problems.iter().any(|p| p.file == head),
        "{:?}",
        v.problems
    );
}

/// Issue 8 items 13 and 17: when every manifest failed to read, restore said only "repository
/// … holds no complete backup", hiding the failed read (the backups are there; the disk is
/// failing). It names each backup it passed over and why, the failed operation included.
#[test]
fn restore_with_only_unreadable_manifests_names_the_failed_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, repo_dir) = (tmp.path().join("d"), tmp.path().join("r"));
    let repo = BackupRepo::open_or_init(&repo_dir).unwrap();
    let db = Db::open(&data).unwrap();
    db.put("kv", "k", json!(1)).unwrap();
    let m = db.backup(&repo).unwrap();
    db.close().unwrap();
    let _eio = amberdb::io::install(
        tmp.path(),
        Arc::new(UnreadableFiles("manifest.json".into())),
    );
    let e = amberdb::backup::restore(
        &repo,
        &amberdb::RestoreTarget::Latest,
        false,
        &tmp.path().join("restored"),
        &amberdb::backup::NoProgress,
    )
    .unwrap_err();
    assert!(matches!(e, Error::Unreachable { .. }), "{e:?}");
    let e = e.to_string();
    assert!(e.contains(&m.id) && e.contains("read of"), "{e}");
    assert!(
        e.contains("manifest.json") && e.contains("os error 5"),
        "{e}"
    );
}

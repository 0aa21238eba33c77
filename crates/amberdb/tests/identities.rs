//! Database and timeline identities (issue 8 item 5): files of another database are refused
//! wherever they turn up (open, verify, archiving, restore), and histories are never stitched
//! together: after a restore is swapped in, or a recovery that lost commits, the new timeline
//! archives beside the old one and restore replays only the target timeline's ancestry.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use amberdb::backup::{restore, NoProgress};
use amberdb::log::segment::list_segments;
use amberdb::{
    verify_dir, BackupRepo, Db, Error, Options, RecoveryMode, RestoreTarget, CHECKPOINT_DIR,
    LOG_DIR,
};
use serde_json::json;

mod support;
use support::copy_dir;

type Model = BTreeMap<String, serde_json::Value>;

fn opts() -> Options {
    Options {
        // Eight commits per segment in log format 4 (as in damage_matrix.rs), so the active
        // segment holds several commits and a flip in its middle has synced frames after it.
        segment_size: 1200,
        checkpoint_on_close: false,
        checkpoint_interval: None,
        ..Options::default()
    }
}

fn state_of(db: &Db) -> Model {
    db.view()
        .iter_all()
        .map(|(_, d)| (d.key.to_string(), d.json().unwrap()))
        .collect()
}

/// Commit `i` writes key `k{i % 13}` = `{"i": i, "tag": tag}`; every tag has the same length,
/// so two databases built alike have the same segment boundaries.
fn put(db: &Db, i: u64, tag: &str) {
    db.put("kv", &format!("k{}", i % 13), json!({"i": i, "tag": tag}))
        .unwrap();
}

/// The state after commits `from..=to` with `tag` on top of `base`.
fn model(base: &Model, from: u64, to: u64, tag: &str) -> Model {
    let mut m = base.clone();
    for i in from..=to {
        m.insert(format!("k{}", i % 13), json!({"i": i, "tag": tag}));
    }
    m
}

/// A database in `root/d` with a repository `root/r`: 40 commits, backups at LSN 2 and 25,
/// checkpoints at LSN 20 and 30, small segments; every sealed segment after LSN 25 is kept
/// (not archived yet).
fn build(root: &Path, tag: &str) -> (PathBuf, PathBuf) {
    let (data, repo_dir) = (root.join("d"), root.join("r"));
    let repo = BackupRepo::open_or_init(&repo_dir).unwrap();
    let db = Db::open_with(&data, opts()).unwrap();
    for i in 1..=40u64 {
        put(&db, i, tag);
        match i {
            2 | 25 => {
                db.backup(&repo).unwrap();
            }
            20 | 30 => {
                db.checkpoint().unwrap();
            }
            _ => {}
        }
    }
    db.close().unwrap();
    (data, repo_dir)
}

fn damaged(r: Result<Db, Error>) -> amberdb::Damage {
    match r {
        Err(Error::Damaged(d)) => d,
        Err(e) => panic!("not a Damaged error: {e}"),
        Ok(_) => panic!("opened"),
    }
}

/// The database id a directory's files carry.
fn database_id(data: &Path) -> String {
    let db = Db::open_with(data, opts()).unwrap();
    let id = db.identity().database_id.to_string();
    db.close().unwrap();
    id
}

#[test]
fn segment_from_another_database_is_refused_by_open_verify_and_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let (mine, _) = build(&tmp.path().join("mine"), "aa");
    let (other, _) = build(&tmp.path().join("other"), "bb");
    let (my_id, other_id) = (database_id(&mine), database_id(&other));
    assert_ne!(my_id, other_id);

    // Open: the active segment swapped with the other database's (same name, valid CRCs).
    let case = tmp.path().join("open");
    copy_dir(&mine, &case);
    let segs = list_segments(&case.join(LOG_DIR)).unwrap();
    let active = segs.last().unwrap().1.clone();
    let rel = active.strip_prefix(&case).unwrap().to_owned();
    fs::copy(other.join(&rel), &active).unwrap();
    let d = damaged(Db::open_with(&case, opts()));
    assert_eq!(d.file, active);
    assert!(
        d.detail.contains(&my_id) && d.detail.contains(&other_id),
        "{}",
        d.detail
    );
    let v = verify_dir(&case).unwrap();
    assert!(
        v.problems
            .iter()
            .any(|p| p.file == active && p.detail.contains(&other_id)),
        "{:?}",
        v.problems
    );

    // Archive: a sealed segment that open does not need (a checkpoint at LSN 40 covers it)
    // and that no repository has yet (after the backup at LSN 25), swapped with its seal.
    let case = tmp.path().join("archive");
    copy_dir(&mine, &case);
    let db = Db::open_with(&case, opts()).unwrap();
    db.checkpoint().unwrap();
    db.close().unwrap();
    let segs = list_segments(&case.join(LOG_DIR)).unwrap();
    let (first, sealed) = segs
        .iter()
        .find(|(first, p)| *first > 25 && p.with_extension("seal").exists())
        .cloned()
        .expect("a sealed segment after the backup at LSN 25");
    for ext in ["log", "seal"] {
        let file = sealed.with_extension(ext);
        let rel = file.strip_prefix(&case).unwrap().to_owned();
        fs::copy(other.join(&rel), &file).unwrap();
    }
    let v = verify_dir(&case).unwrap();
    assert!(
        v.problems
            .iter()
            .any(|p| p.file == sealed && p.detail.contains(&other_id)),
        "segment {first}: {:?}",
        v.problems
    );
    let db = Db::open_with(&case, opts()).unwrap();
    let repo = BackupRepo::open(tmp.path().join("mine/r")).unwrap();
    let e = db.archive(&repo).unwrap_err();
    match &e {
        Error::Damaged(d) => {
            assert_eq!(d.file, sealed);
            assert!(
                d.detail.contains(&my_id) && d.detail.contains(&other_id),
                "{}",
                d.detail
            );
        }
        e => panic!("not a Damaged error: {e}"),
    }
    // Nothing of it reached the repository.
    assert!(repo
        .archived_segments()
        .unwrap()
        .iter()
        .all(|s| s.first_lsn != first));
    db.close().unwrap();
}

#[test]
fn backing_up_into_another_databases_repository_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (mine, _) = build(&tmp.path().join("mine"), "aa");
    let (_, other_repo) = build(&tmp.path().join("other"), "bb");
    let repo = BackupRepo::open(&other_repo).unwrap();
    let before = repo.list().unwrap().len();
    let db = Db::open_with(&mine, opts()).unwrap();
    let my_id = db.identity().database_id.to_string();
    let e = db.backup(&repo).unwrap_err().to_string();
    assert!(
        e.contains(&my_id) && e.contains("belongs to database"),
        "{e}"
    );
    let e = db.archive(&repo).unwrap_err().to_string();
    assert!(e.contains("belongs to database"), "{e}");
    db.close().unwrap();
    assert_eq!(repo.list().unwrap().len(), before);
}

#[test]
fn checkpoint_from_another_database_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (mine, _) = build(&tmp.path().join("mine"), "aa");
    let (other, _) = build(&tmp.path().join("other"), "bb");
    let other_id = database_id(&other);
    let want = model(&Model::new(), 1, 40, "aa");

    // The newest checkpoint swapped: not used; the older one plus the log reach the same
    // state, and the foreign file goes to quarantine.
    let case = tmp.path().join("newest");
    copy_dir(&mine, &case);
    let ckpt = case.join(CHECKPOINT_DIR).join("00000000000000000030.ckpt");
    let rel = ckpt.strip_prefix(&case).unwrap().to_owned();
    fs::copy(other.join(&rel), &ckpt).unwrap();
    let v = verify_dir(&case).unwrap();
    assert!(
        v.problems
            .iter()
            .any(|p| p.file == ckpt && p.detail.contains(&other_id)),
        "{:?}",
        v.problems
    );
    let db = Db::open_with(&case, opts()).unwrap();
    let r = db.recovery_report().clone();
    assert_eq!(state_of(&db), want);
    assert_eq!(r.checkpoint_lsn, 20);
    assert_eq!(r.quarantined.len(), 1);
    assert_eq!(r.quarantined[0].0, ckpt);
    db.close().unwrap();

    // Both checkpoints swapped and the log no longer starting at LSN 1: nothing to fall back
    // on, so open refuses, naming the file and both databases.
    let case = tmp.path().join("all");
    copy_dir(&mine, &case);
    for lsn in [20, 30] {
        let ckpt = case.join(CHECKPOINT_DIR).join(format!("{lsn:020}.ckpt"));
        let rel = ckpt.strip_prefix(&case).unwrap().to_owned();
        fs::copy(other.join(&rel), &ckpt).unwrap();
    }
    let (_, oldest) = list_segments(&case.join(LOG_DIR)).unwrap()[0].clone();
    fs::remove_file(&oldest).unwrap();
    let _ = fs::remove_file(oldest.with_extension("seal"));
    let d = damaged(Db::open_with(&case, opts()));
    assert!(
        d.file.starts_with(case.join(CHECKPOINT_DIR)),
        "{}",
        d.file.display()
    );
    assert!(
        d.detail.contains(&other_id) && d.detail.contains("another history"),
        "{}",
        d.detail
    );
}

#[test]
fn pitr_after_restore_and_swap_does_not_replay_the_undone_timeline() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, repo_dir) = (tmp.path().join("d"), tmp.path().join("r"));
    let repo = BackupRepo::open_or_init(&repo_dir).unwrap();
    // Timeline 1: commits 1..=10, backup; 11..=20 (the mistake), backup.
    let db = Db::open_with(&data, opts()).unwrap();
    for i in 1..=10 {
        put(&db, i, "good");
    }
    db.backup(&repo).unwrap();
    for i in 11..=20 {
        put(&db, i, "oops");
    }
    let mistake = db.backup(&repo).unwrap();
    let t1 = db.identity().timeline;
    db.close().unwrap();
    let kept = model(&Model::new(), 1, 10, "good");
    let at_15 = model(&kept, 11, 15, "oops");

    // The runbook: restore to LSN 15 (before the worst of it) and swap it in.
    let swapped = tmp.path().join("swapped");
    let r = restore(&repo, &RestoreTarget::Lsn(15), false, &swapped, &NoProgress).unwrap();
    assert_eq!(r.lsn, 15);
    let db = Db::open_with(&swapped, opts()).unwrap();
    let t2 = db.identity().timeline;
    assert_ne!(t2, t1);
    assert_eq!(db.identity().history.len(), 2);
    assert_eq!(db.identity().history[1].parent, Some(t1));
    assert_eq!(db.identity().history[1].branch_lsn, 15);
    // Its new commits reuse LSNs 16..=25: archiving them must keep working, beside the old
    // timeline's segment that holds the undone 16..=20.
    let bridge = db.backup(&repo).unwrap();
    for i in 16..=25 {
        put(&db, i, "new!");
    }
    db.backup(&repo).unwrap();
    db.close().unwrap();
    let archive = repo.archived_segments().unwrap();
    assert!(archive
        .iter()
        .any(|s| s.timeline == Some(t1) && s.last_lsn >= 16));
    assert!(archive
        .iter()
        .any(|s| s.timeline == Some(t2) && s.first_lsn == 16));
    assert!(repo.verify(None, true, &NoProgress).unwrap().is_clean());
    // `amberdb log --repo` lists the history restores follow: LSNs 16..=25 once, the new ones.
    let log = amberdb::backup::read_log(
        &amberdb::backup::LogSource::Repo(repo.clone()),
        &amberdb::backup::LogFilter::default(),
    )
    .unwrap();
    let lsns: Vec<u64> = log.iter().map(|e| e.lsn).collect();
    assert_eq!(lsns, (1..=25).collect::<Vec<_>>());

    // The backup taken right after the swap goes, so a PITR into the new timeline starts
    // from the old timeline's backup at LSN 10: it must replay the old timeline only up to
    // LSN 15 and then the new one, never the undone 16..=20, and pass over the backup at 20.
    fs::remove_dir_all(repo_dir.join("backups").join(&bridge.id)).unwrap();
    for (target, lsn, base) in [
        (RestoreTarget::Lsn(18), 18, 10),
        (RestoreTarget::Lsn(22), 22, 10),
        (RestoreTarget::Lsn(25), 25, 25),
        (RestoreTarget::Latest, 25, 25),
    ] {
        let into = tmp
            .path()
            .join(format!("pitr-{lsn}-{target}").replace([' ', ':'], "_"));
        let r = restore(&repo, &target, false, &into, &NoProgress).unwrap();
        assert_eq!(r.lsn, lsn, "{target}");
        assert_eq!(r.backup_lsn, base, "{target}");
        assert!(
            r.skipped
                .iter()
                .any(|s| s.id == mistake.id && s.reason.contains("not in the history")),
            "{target}: {:?}",
            r.skipped
        );
        let db = Db::open(&into).unwrap();
        assert_eq!(state_of(&db), model(&at_15, 16, lsn, "new!"), "{target}");
        db.close().unwrap();
    }
}

#[test]
fn recovery_with_loss_starts_a_new_timeline() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, repo_dir) = build(tmp.path(), "aa");
    let before = Db::open_with(&data, opts()).unwrap();
    let old = before.identity().clone();
    before.close().unwrap();
    // A byte flipped in the middle of the active segment (after the checkpoint at LSN 30):
    // the commits from there on are lost (the repository has only up to LSN 25).
    let segs = list_segments(&data.join(LOG_DIR)).unwrap();
    let sealed = segs.last().unwrap().1.clone();
    let mut b = fs::read(&sealed).unwrap();
    let at = b.len() / 2;
    b[at] ^= 0x10;
    fs::write(&sealed, b).unwrap();
    let db = Db::open_with(
        &data,
        Options {
            recovery: RecoveryMode::Auto {
                repo: repo_dir.clone(),
            },
            ..opts()
        },
    )
    .unwrap();
    let report = db.recovery_report().clone();
    let auto = report.auto.clone().unwrap();
    let (lost_from, lost_to) = auto.lost.expect("commits were lost");
    assert_eq!((lost_from, lost_to), (report.lsn + 1, 40));
    let id = db.identity().clone();
    assert_eq!(auto.new_timeline, Some(id.timeline));
    assert_eq!(id.database_id, old.database_id);
    assert_ne!(id.timeline, old.timeline);
    let branch = id.history.last().unwrap();
    assert_eq!(branch.parent, Some(old.timeline));
    assert_eq!(branch.branch_lsn, report.lsn);
    // New commits reuse the lost LSNs on the new timeline; backing up to the same repository
    // works, and the latest restore is the new history.
    let mut want = state_of(&db);
    for i in lost_from..=lost_to + 2 {
        put(&db, i, "new!");
        want.insert(format!("k{}", i % 13), json!({"i": i, "tag": "new!"}));
    }
    let repo = BackupRepo::open(&repo_dir).unwrap();
    db.backup(&repo).unwrap();
    db.close().unwrap();
    let into = tmp.path().join("restored");
    let r = restore(&repo, &RestoreTarget::Latest, false, &into, &NoProgress).unwrap();
    assert_eq!(r.lsn, lost_to + 2);
    let db = Db::open(&into).unwrap();
    assert_eq!(state_of(&db), want);
    db.close().unwrap();
    // Reopening keeps the new timeline.
    let db = Db::open_with(&data, opts()).unwrap();
    assert_eq!(db.identity().timeline, id.timeline);
    db.close().unwrap();
}

#[test]
fn a_directory_written_before_ids_gets_them_on_first_open_and_keeps_them() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1/data"),
        &data,
    );
    assert!(!data.join(amberdb::identity::IDENTITY_FILE).exists());
    let db = Db::open_with(&data, opts()).unwrap();
    let id = db.identity().clone();
    assert!(id.history[0].reason.contains("upgrade"), "{id:?}");
    db.put("players", "after", json!(1)).unwrap();
    db.close().unwrap();
    assert!(data.join(amberdb::identity::IDENTITY_FILE).exists());
    let db = Db::open_with(&data, opts()).unwrap();
    assert_eq!(db.identity(), &id);
    db.close().unwrap();
    assert!(verify_dir(&data).unwrap().is_clean());
    // Deleting the record of a directory whose files carry ids is refused, naming it.
    fs::remove_file(data.join(amberdb::identity::IDENTITY_FILE)).unwrap();
    let d = damaged(Db::open_with(&data, opts()));
    assert_eq!(d.file, data.join(amberdb::identity::IDENTITY_FILE));
    assert!(
        d.detail.contains(&id.database_id.to_string()),
        "{}",
        d.detail
    );
}

#[test]
fn a_repository_written_before_ids_keeps_archiving_and_restoring_after_the_upgrade() {
    // Log format 2 data directory and repository (tests/fixtures/v2, written before ids):
    // backups at LSN 6 and 14, archive through 14, the directory at LSN 24.
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2");
    let (data, repo_dir) = (tmp.path().join("data"), tmp.path().join("repo"));
    copy_dir(&fixtures.join("data"), &data);
    copy_dir(&fixtures.join("repo"), &repo_dir);
    let repo = BackupRepo::open(&repo_dir).unwrap();
    let db = Db::open(&data).unwrap();
    let want = state_of(&db);
    // The old segments (no ids) archive as the first timeline, beside the old names.
    db.backup(&repo).unwrap();
    db.close().unwrap();
    assert!(repo.verify(None, true, &NoProgress).unwrap().is_clean());
    for (target, lsn) in [(RestoreTarget::Latest, 24), (RestoreTarget::Lsn(18), 18)] {
        let into = tmp.path().join(format!("restored-{lsn}"));
        let r = restore(&repo, &target, false, &into, &NoProgress).unwrap();
        assert_eq!(r.lsn, lsn, "{target}");
        if lsn == 24 {
            let db = Db::open(&into).unwrap();
            assert_eq!(state_of(&db), want);
            db.close().unwrap();
        }
    }
}

#[test]
fn restore_and_swap_from_a_repository_written_before_ids_archives_beside_the_old_history() {
    // The v2 repository (no ids) archives LSNs 1..=14; restore to LSN 10, swap it in, write
    // new commits over LSNs 11.., back up to the same repository.
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2");
    let repo_dir = tmp.path().join("repo");
    copy_dir(&fixtures.join("repo"), &repo_dir);
    let repo = BackupRepo::open(&repo_dir).unwrap();
    let swapped = tmp.path().join("swapped");
    restore(&repo, &RestoreTarget::Lsn(10), false, &swapped, &NoProgress).unwrap();
    let db = Db::open(&swapped).unwrap();
    assert_eq!(db.identity().history.len(), 2);
    for i in 11..=16 {
        put(&db, i, "new!");
    }
    let want = state_of(&db);
    db.backup(&repo).unwrap();
    db.close().unwrap();
    let into = tmp.path().join("latest");
    let r = restore(&repo, &RestoreTarget::Latest, false, &into, &NoProgress).unwrap();
    assert_eq!(r.lsn, 16);
    let db = Db::open(&into).unwrap();
    assert_eq!(state_of(&db), want);
    db.close().unwrap();
}

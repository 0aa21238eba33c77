//! Automatic recovery (`RecoveryMode::Auto`) brings streams back with the documents: the
//! chosen source's stream files (a local checkpoint's, copied; or a backup's) are assembled
//! beside the recovered checkpoint, the log's appends after it are written into them, and the
//! data directory's own `streams/` goes to quarantine. A damaged or missing stream file is
//! rebuilt from a backup and the log; a power cut anywhere in that leaves a directory the next
//! automatic open finishes. Plaintext and sealed.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use amberdb::crypto::Keyring;
use amberdb::io::{install, PowerCut};
use amberdb::{BackupRepo, Db, Error, Options, RecoveryMode};
use serde_json::{json, Value};

mod support;

/// Entries of a stream as (seq, value).
type Entries = Vec<(u64, Value)>;

fn base_opts(keys: Option<Keyring>) -> Options {
    Options {
        encryption: keys,
        // One segment: damage to an early frame is inside the replayed range.
        segment_size: 1 << 20,
        // Small stream files, so each stream has several.
        stream_segment_bytes: 2048,
        checkpoint_on_close: false,
        checkpoint_interval: None,
        ..Options::default()
    }
}

fn auto_opts(keys: Option<Keyring>, repo: &Path) -> Options {
    Options {
        recovery: RecoveryMode::Auto {
            repo: repo.to_owned(),
        },
        ..base_opts(keys)
    }
}

/// Every retained entry of `stream` as (seq, value).
fn entries(db: &Db, stream: &str) -> Entries {
    support::stream_entries(db, stream, 1000)
}

use support::append_padded as append;

/// What the database held when the workload stopped: `events`, `chat`, and one document.
#[derive(Debug, PartialEq)]
struct Expected {
    lsn: u64,
    events: Entries,
    chat: Entries,
    doc: Value,
}

fn expected(db: &Db) -> Expected {
    Expected {
        lsn: db.view().lsn(),
        events: entries(db, "events"),
        chat: entries(db, "chat"),
        doc: db.get("c", "k").unwrap().json().unwrap(),
    }
}

/// Entries before and after a backup (when `backup`) and a checkpoint, and more after that
/// only in the log; stopped as a SIGKILL leaves the disk (no checkpoint on close).
fn workload(data: &Path, repo_dir: &Path, keys: Option<Keyring>, backup: bool) -> Expected {
    let db = Db::open_with(data, base_opts(keys)).unwrap();
    let repo = BackupRepo::open_or_init(repo_dir).unwrap();
    append(&db, "events", 1, 30);
    append(&db, "chat", 1, 5);
    db.put("c", "k", json!({"n": 1})).unwrap();
    db.trim_stream("events", 4).unwrap();
    if backup {
        db.backup(&repo).unwrap();
    }
    append(&db, "events", 31, 20);
    db.put("c", "k", json!({"n": 2})).unwrap();
    db.checkpoint().unwrap();
    append(&db, "events", 51, 10);
    append(&db, "chat", 6, 3);
    let want = expected(&db);
    assert_eq!(want.events.len(), 57);
    db.close().unwrap();
    want
}

/// The stream files of `stream` in `data`, oldest first.
fn stream_files(data: &Path, stream: &str) -> Vec<PathBuf> {
    let root = data.join("streams");
    let dir = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .ends_with(&format!("-{stream}"))
        })
        .unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// Opens `data` with automatic recovery and checks that it holds `want`, that `verify` is
/// clean, and that a plain reopen and a new append work; returns the recovery's report.
fn recover_and_check(
    data: &Path,
    repo: &Path,
    keys: Option<Keyring>,
    want: &Expected,
) -> amberdb::AutoRecovery {
    let db = Db::open_with(data, auto_opts(keys.clone(), repo)).unwrap();
    let auto = db
        .recovery_report()
        .auto
        .clone()
        .expect("automatic recovery ran");
    assert_eq!(&expected(&db), want, "{auto:?}");
    assert_eq!(auto.lost, None, "{auto:?}");
    assert!(db.verify().unwrap().is_clean(), "{auto:?}");
    db.close().unwrap();
    let db = Db::open_with(data, base_opts(keys)).unwrap();
    assert!(db.recovery_report().auto.is_none());
    assert_eq!(&expected(&db), want);
    let seq = db.append("events", &[json!("after")], None).unwrap();
    assert_eq!(seq.first_seq, 61);
    db.close().unwrap();
    auto
}

fn a_damaged_stream_file_is_rebuilt_from_the_backup_and_the_log(keys: Option<Keyring>) {
    let t = tempfile::tempdir().unwrap();
    let (data, repo) = (t.path().join("d"), t.path().join("r"));
    let want = workload(&data, &repo, keys.clone(), true);
    // A byte inside an entry the checkpoint holds (the second file of `events`).
    let damaged = stream_files(&data, "events")[1].clone();
    support::flip(&damaged, 200);
    let flipped = std::fs::read(&damaged).unwrap();
    support::expect_damaged(&data, base_opts(keys.clone()));
    let auto = recover_and_check(&data, &repo, keys, &want);
    let id = BackupRepo::open(&repo).unwrap().list().unwrap()[0]
        .id
        .clone();
    assert_eq!(auto.backup.as_deref(), Some(id.as_str()), "{auto:?}");
    // The damaged file is kept, byte for byte, in quarantine.
    let q = auto.quarantine.join("streams");
    assert!(auto.quarantined_files.contains(&q), "{auto:?}");
    let rel = damaged.strip_prefix(data.join("streams")).unwrap();
    assert_eq!(std::fs::read(q.join(rel)).unwrap(), flipped);
    assert!(!data.join(amberdb::backup::STAGING_DIR).exists());
}

#[test]
fn a_damaged_stream_file_is_rebuilt_from_the_backup_and_the_log_plaintext() {
    a_damaged_stream_file_is_rebuilt_from_the_backup_and_the_log(None);
}

#[test]
fn a_damaged_stream_file_is_rebuilt_from_the_backup_and_the_log_sealed() {
    a_damaged_stream_file_is_rebuilt_from_the_backup_and_the_log(Some(support::test_ring(&[1])));
}

#[test]
fn lost_stream_files_are_rebuilt_from_the_backup_and_the_log() {
    let t = tempfile::tempdir().unwrap();
    let (data, repo) = (t.path().join("d"), t.path().join("r"));
    let want = workload(&data, &repo, None, true);
    std::fs::remove_dir_all(data.join("streams")).unwrap();
    support::expect_damaged(&data, base_opts(None));
    let auto = recover_and_check(&data, &repo, None, &want);
    assert!(auto.backup.is_some(), "{auto:?}");
}

/// Log damage inside the checkpointed range, no backup: the local checkpoint's stream files
/// (copied) and the local log rebuild every entry.
#[test]
fn log_damage_recovered_from_the_local_checkpoint_keeps_every_stream_entry() {
    let t = tempfile::tempdir().unwrap();
    let (data, repo) = (t.path().join("d"), t.path().join("r"));
    let want = workload(&data, &repo, None, false);
    let seg = support::newest_segment(&data);
    let frames = support::segment_frames(&seg);
    let (_, at) = frames.iter().find(|(lsn, _)| *lsn == 5).copied().unwrap();
    support::flip(&seg, at + 4);
    support::expect_damaged(&data, base_opts(None));
    let auto = recover_and_check(&data, &repo, None, &want);
    assert_eq!(auto.backup, None, "{auto:?}");
    assert_eq!(auto.stepped_over.len(), 1, "{auto:?}");
}

/// A damaged stream file and no backup to rebuild it from: refused, naming the stream files,
/// and nothing moved (no quarantine, no staging left).
#[test]
fn a_damaged_stream_file_without_a_backup_is_refused_and_nothing_moves() {
    let t = tempfile::tempdir().unwrap();
    let (data, repo) = (t.path().join("d"), t.path().join("r"));
    workload(&data, &repo, None, false);
    let damaged = stream_files(&data, "events")[1].clone();
    support::flip(&damaged, 200);
    // A plain open already cuts stream files past the checkpoint (replay writes them again);
    // automatic recovery changes nothing after that.
    support::expect_damaged(&data, base_opts(None));
    let before = support::tree_listing(&data);
    match Db::open_with(&data, auto_opts(None, &repo)) {
        Err(Error::Damaged(d)) => {
            assert!(d.detail.contains("local stream files"), "{d:?}");
        }
        other => panic!("expected Damaged, got {:?}", other.map(|_| ())),
    }
    assert!(!data.join(amberdb::backup::STAGING_DIR).exists());
    assert!(!data.join(amberdb::QUARANTINE_DIR).exists());
    let after = support::tree_listing(&data);
    let names = |l: &[(PathBuf, Vec<u8>)]| l.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    assert_eq!(names(&after), names(&before));
    let at = |l: &[(PathBuf, Vec<u8>)]| {
        l.iter()
            .find(|(p, _)| damaged.ends_with(p))
            .map(|(_, b)| b.clone())
    };
    assert_eq!(
        at(&after),
        at(&before),
        "the damaged file is left as it was"
    );
}

/// A power cut before any file operation of the recovery above: the next automatic open
/// (finishing or redoing it) holds every entry and document.
#[test]
fn power_cuts_during_automatic_recovery_of_a_stream_lose_no_entry() {
    let t = tempfile::tempdir().unwrap();
    let base = t.path().join("base");
    let want = workload(&base.join("d"), &base.join("r"), None, true);
    let damaged = stream_files(&base.join("d"), "events")[1].clone();
    support::flip(&damaged, 200);

    let dry = t.path().join("dry");
    support::copy_dir(&base, &dry);
    let pc = Arc::new(PowerCut::new(&dry, None).unwrap());
    let total = {
        let _scope = install(&dry, pc.clone());
        let db = Db::open_with(dry.join("d"), auto_opts(None, &dry.join("r"))).unwrap();
        assert_eq!(expected(&db), want);
        drop(db);
        pc.ops()
    };
    assert!(total > 20, "{total}");
    let cases: u64 = std::env::var("AMBERDB_POWERCUT_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    for i in 0..cases {
        let cut_at = i * total / cases;
        let live = t.path().join(format!("live{i}"));
        support::copy_dir(&base, &live);
        let pc = Arc::new(PowerCut::new(&live, Some(cut_at)).unwrap());
        {
            let _scope = install(&live, pc.clone());
            if let Ok(db) = Db::open_with(live.join("d"), auto_opts(None, &live.join("r"))) {
                drop(db);
            }
            pc.cut_now();
        }
        assert!(pc.model_errors().is_empty(), "{:?}", pc.model_errors());
        let out = t.path().join(format!("cut{i}"));
        let report = pc.materialize(&out, i).unwrap();
        let case = format!(
            "power cut before {} (operation {cut_at} of {total})",
            report.cut_before.as_deref().unwrap_or("nothing")
        );
        // The marker names the quarantine under `live`; the directory is now `out`.
        std::fs::remove_dir_all(&live).unwrap();
        let db = Db::open_with(out.join("d"), auto_opts(None, &out.join("r")))
            .unwrap_or_else(|e| panic!("{case}: open after the cut failed: {e}"));
        assert_eq!(expected(&db), want, "{case}");
        assert!(db.verify().unwrap().is_clean(), "{case}");
        if let Some(auto) = &db.recovery_report().auto {
            assert!(
                auto.quarantine.starts_with(out.join("d")),
                "{case}: {auto:?}"
            );
            assert!(auto.quarantine.is_dir(), "{case}: {auto:?}");
        }
        assert!(
            !live.exists(),
            "{case}: the recovery wrote under the old path"
        );
        drop(db);
        std::fs::remove_dir_all(&out).unwrap();
    }
}

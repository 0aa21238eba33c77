//! Backups carry streams: a backup copies the stream files its snapshot needs, a restore puts
//! them back cut to the snapshot, and a point-in-time restore replays the archived log's
//! appends into them; damaged stream files in a repository are refused, plaintext and sealed.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use amberdb::backup::{restore_with, NoProgress};
use amberdb::crypto::Keyring;
use amberdb::{BackupRepo, Db, Options, RestoreTarget};
use serde_json::{json, Value};

mod support;

fn opts(keys: Option<Keyring>, repo: &Path) -> Options {
    Options {
        encryption: keys,
        segment_size: 4096,
        // Small stream files, so a backup copies several per stream.
        stream_segment_bytes: 2048,
        archive_to: Some(repo.to_owned()),
        ..Options::default()
    }
}

/// Every retained entry of `stream` as (seq, value).
fn entries(db: &Db, stream: &str) -> Entries {
    support::stream_entries(db, stream, 1000)
}

use support::append_padded as append;

/// Entries of a stream as (seq, value).
type Entries = Vec<(u64, Value)>;
/// A point of the history: its LSN and the entries of `events` and `log` there.
type Point = (u64, Entries, Entries);

struct Points {
    /// Backup 1: (LSN, events, log).
    first: Point,
    /// A point between the backups, reached through backup 1 and the archived log.
    mid: Point,
    /// The end (backup 2).
    end: Point,
    first_id: String,
}

fn workload(data: &Path, repo_dir: &Path, keys: Option<Keyring>) -> Points {
    let db = Db::open_with(data, opts(keys, repo_dir)).unwrap();
    let point = |db: &Db| (db.view().lsn(), entries(db, "events"), entries(db, "log"));
    append(&db, "events", 1, 40);
    append(&db, "log", 1, 5);
    db.put("c", "k", json!({"n": 1})).unwrap();
    // Trimmed entries stay trimmed in every restore.
    db.trim_stream("events", 6).unwrap();
    let repo = BackupRepo::open_or_init(repo_dir).unwrap();
    let m = db.backup(&repo).unwrap();
    let stream_files = m
        .files
        .iter()
        .filter(|f| f.name.starts_with("streams/"))
        .count();
    assert!(stream_files > 2, "{:?}", m.files);
    let first = point(&db);
    append(&db, "events", 41, 20);
    // A stream created after backup 1 exists only in the archived log.
    append(&db, "late", 1, 3);
    let mid = point(&db);
    let mid_late = entries(&db, "late");
    assert_eq!(mid_late.len(), 3);
    append(&db, "events", 61, 10);
    db.delete_stream("log").unwrap();
    db.backup(&repo).unwrap();
    let end = point(&db);
    db.close().unwrap();
    Points {
        first,
        mid,
        end,
        first_id: m.id,
    }
}

fn check_restores(keys: Option<Keyring>) {
    let t = tempfile::tempdir().unwrap();
    let repo_dir = t.path().join("r");
    let p = workload(&t.path().join("d"), &repo_dir, keys.clone());
    let repo = BackupRepo::open(&repo_dir).unwrap();
    for (target, want, name) in [
        (RestoreTarget::Backup(p.first_id.clone()), &p.first, "first"),
        (RestoreTarget::Lsn(p.mid.0), &p.mid, "mid"),
        (RestoreTarget::Latest, &p.end, "end"),
    ] {
        let into = t.path().join(name);
        restore_with(&repo, &target, false, &into, &NoProgress, keys.as_ref()).unwrap();
        let o = Options {
            encryption: keys.clone(),
            ..Options::default()
        };
        let db = Db::open_with(&into, o.clone()).unwrap();
        assert_eq!(db.view().lsn(), want.0, "{name}");
        assert_eq!(entries(&db, "events"), want.1, "{name}: events");
        assert_eq!(entries(&db, "log"), want.2, "{name}: log");
        if name == "mid" {
            assert_eq!(
                entries(&db, "late").len(),
                3,
                "a stream created after backup 1"
            );
        }
        // The restored streams go on: the next append continues the sequence, and survives
        // a reopen.
        let next = want.1.last().map_or(1, |(s, _)| s + 1);
        let a = db
            .append("events", &[json!({"after": name})], None)
            .unwrap();
        assert_eq!(a.first_seq, next, "{name}");
        db.close().unwrap();
        let db = Db::open_with(&into, o).unwrap();
        assert_eq!(entries(&db, "events").len(), want.1.len() + 1, "{name}");
        db.close().unwrap();
    }
}

#[test]
fn backups_restores_and_point_in_time_restores_carry_every_stream_entry() {
    check_restores(None);
}

#[test]
fn sealed_stream_files_are_backed_up_and_restored_with_the_keyring() {
    check_restores(Some(support::test_ring(&[1])));
}

#[test]
fn a_damaged_stream_file_in_a_backup_fails_its_restore_and_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let repo_dir = t.path().join("r");
    let p = workload(&t.path().join("d"), &repo_dir, None);
    let repo = BackupRepo::open(&repo_dir).unwrap();
    let m = repo
        .list()
        .unwrap()
        .into_iter()
        .find(|b| b.id == p.first_id)
        .unwrap();
    let f = m
        .files
        .iter()
        .find(|f| f.name.starts_with("streams/"))
        .unwrap();
    let path = repo_dir.join("backups").join(&m.id).join(&f.name);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();
    let into = t.path().join("x");
    let e = restore_with(
        &repo,
        &RestoreTarget::Backup(m.id.clone()),
        false,
        &into,
        &NoProgress,
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("damaged"), "{e}");
    assert!(!into.exists(), "nothing written");
    let leftovers: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("restoring"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Verify names it too.
    let report = repo.verify_with(None, false, &NoProgress, None).unwrap();
    assert!(!report.is_clean(), "verify finds the damaged stream file");
}

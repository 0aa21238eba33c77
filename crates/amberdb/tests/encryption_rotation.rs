//! Issue 12: key rotation. After `Db::rotate_keys` the old key can be removed from the
//! keyring and the directory still opens, verifies with contents checked, serves history,
//! as-of reads and the change feed over the re-sealed segments; a backup taken before the
//! rotation still needs (and names) the old key; the archive accepts a re-sealed segment as
//! the one it holds; and a rotation that fails at any file operation of its rewrite (a crash
//! there: no later operation happens) finishes when run again, losing nothing.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use amberdb::backup::{restore_with, NoProgress};
use amberdb::crypto::{Key, Keyring};
use amberdb::history::{At, HistoryOptions};
use amberdb::io::{install, Fault, FaultInjector, IoOp};
use amberdb::{BackupRepo, Db, Error, Filter, Options, RestoreTarget};
use serde_json::json;

fn key(n: u8) -> Key {
    let mut b = [0u8; 32];
    for (i, x) in b.iter_mut().enumerate() {
        *x = n.wrapping_mul(71).wrapping_add(i as u8).wrapping_mul(37) ^ 0x5a;
    }
    Key::from_bytes(b)
}

fn ring(keys: &[u8]) -> Keyring {
    Keyring::new(keys.iter().map(|k| key(*k)).collect()).unwrap()
}

fn opts(keys: Keyring) -> Options {
    Options {
        encryption: Some(keys),
        stream_segment_bytes: 400,
        segment_size: 2048,
        // Keep the whole log: history and the feed read every segment.
        history_retention: Duration::from_secs(24 * 3600),
        checkpoint_interval: None,
        ..Options::default()
    }
}

type State = BTreeMap<(String, String), serde_json::Value>;

fn state_of(db: &Db) -> State {
    db.view()
        .iter_all()
        .map(|(c, d)| ((c.to_string(), d.key.to_string()), d.json().unwrap()))
        .collect()
}

/// Several sealed segments and two checkpoints under key 1; returns the final state and the
/// state at a point in the middle (LSN, state).
fn workload(data: &Path, repo: Option<&BackupRepo>) -> (State, u64, State) {
    let db = Db::open_with(data, opts(ring(&[1]))).unwrap();
    for i in 0..40 {
        db.put(
            "c",
            &format!("k{}", i % 9),
            json!({ "i": i, "pad": "p".repeat(120) }),
        )
        .unwrap();
    }
    // Blob files are rotated too (one of two units, one of a few bytes).
    for (k, bytes) in blobs() {
        db.put_blob("files", k, &mut &bytes[..], &Default::default(), None)
            .unwrap();
    }
    db.checkpoint().unwrap();
    if let Some(r) = repo {
        db.backup(r).unwrap();
    }
    let mid_lsn = db.view().lsn();
    let mid = state_of(&db);
    for i in 40..80 {
        db.put(
            "d",
            &format!("k{}", i % 5),
            json!({ "i": i, "pad": "q".repeat(120) }),
        )
        .unwrap();
        if i % 10 == 0 {
            db.delete("c", &format!("k{}", i % 9)).unwrap();
        }
    }
    db.checkpoint().unwrap();
    let end = state_of(&db);
    db.close().unwrap();
    (end, mid_lsn, mid)
}

const STREAM_ENTRIES: u64 = 30;

/// Stream entries under key 1 in several stream files; returns the LSNs of their commits.
fn stream_workload(data: &Path) -> Vec<u64> {
    let db = Db::open_with(data, opts(ring(&[1]))).unwrap();
    let lsns = (0..STREAM_ENTRIES)
        .map(|i| {
            db.append("chat", &[json!({ "i": i, "pad": "s".repeat(40) })], None)
                .unwrap()
                .lsn
        })
        .collect();
    db.checkpoint().unwrap();
    db.close().unwrap();
    lsns
}

fn blobs() -> [(&'static str, Vec<u8>); 2] {
    [
        ("big", (0..70_000u32).map(|i| (i % 251) as u8).collect()),
        ("small", b"ten bytes!".to_vec()),
    ]
}

fn id(n: u8) -> String {
    key(n).id().to_string()
}

/// Every check the issue asks of a rotated directory, with only the new key (2).
/// `stream_lsns`: the commits of `stream_workload` (they are no document changes).
fn check_rotated(data: &Path, end: &State, mid_lsn: u64, mid: &State, stream_lsns: &[u64]) {
    let db = Db::open_with(data, opts(ring(&[2]))).unwrap();
    assert_eq!(db.key_ids_in_use().unwrap(), vec![id(2)]);
    assert_eq!(db.stats().key_ids_in_use, vec![id(2)]);
    assert_eq!(&state_of(&db), end);
    for (k, bytes) in blobs() {
        let info = db.blob("files", k).unwrap();
        let mut got = vec![];
        std::io::Read::read_to_end(&mut db.open_blob(&info).unwrap(), &mut got).unwrap();
        assert_eq!(got, bytes, "blob {k}");
    }
    let page = db
        .read_stream("chat", amberdb::StreamFrom::Seq(1), 1000)
        .unwrap();
    let got: Vec<u64> = page
        .entries
        .iter()
        .map(|e| e.json().unwrap()["i"].as_u64().unwrap())
        .collect();
    assert_eq!(got, (0..STREAM_ENTRIES).collect::<Vec<_>>());
    assert_eq!(stream_lsns.len() as u64, STREAM_ENTRIES);
    let report = db.verify().unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert!(
        report.contents_not_checked.is_empty(),
        "{:?}",
        report.contents_not_checked
    );
    // As-of reads over the re-sealed segments.
    // (Blob metadata lives in reserved collections, which as-of reads do not name.)
    for ((c, k), v) in mid.iter().filter(|((c, _), _)| !c.starts_with('.')) {
        let doc = db.get_at(c, k, At::Lsn(mid_lsn)).unwrap().unwrap();
        assert_eq!(&doc.json().unwrap(), v, "{c}/{k} at LSN {mid_lsn}");
    }
    // History: every version of c/k0 back to its first.
    let h = db.history("c", "k0", HistoryOptions::default()).unwrap();
    assert!(h.versions.len() >= 5, "{:?}", h.versions);
    assert_eq!(h.versions.last().unwrap().version, 1);
    // The change feed from the first commit.
    let mut sub = db.subscribe(0, Filter::default()).unwrap();
    let mut lsns = vec![];
    while let Some(ch) = sub.try_next().unwrap() {
        lsns.push(ch.lsn);
    }
    let want: Vec<u64> = (1..=db.view().lsn())
        .filter(|l| !stream_lsns.contains(l))
        .collect();
    assert_eq!(lsns, want);
    db.close().unwrap();
    // The old key alone no longer opens it, and says which key is needed.
    match Db::open_with(data, opts(ring(&[1]))) {
        Err(Error::KeyMissing { key_id, .. }) => assert_eq!(format!("{key_id:08x}"), id(2)),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened with the old key only"),
    }
}

#[test]
fn after_rotation_the_old_key_can_be_removed_and_everything_opens_verifies_and_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (end, mid_lsn, mid) = workload(&data, None);
    let stream_lsns = stream_workload(&data);
    let db = Db::open_with(&data, opts(ring(&[2, 1]))).unwrap();
    let before = db.key_ids_in_use().unwrap();
    assert!(before.contains(&id(1)), "{before:?}");
    let r = db.rotate_keys(&NoProgress).unwrap();
    assert_eq!(r.key_id, id(2));
    assert_eq!(r.key_ids_in_use, vec![id(2)]);
    assert!(r.segments_rewritten >= 3, "{r:?}");
    assert!(r.checkpoints_rewritten >= 1, "{r:?}");
    let status = db.stats().key_rotation.unwrap();
    assert!(!status.running && status.error.is_none(), "{status:?}");
    assert_eq!(status.files_done, status.files_total);
    // A second run finds nothing left to do.
    let again = db.rotate_keys(&NoProgress).unwrap();
    assert_eq!(
        (again.segments_rewritten, again.checkpoints_rewritten),
        (0, 0)
    );
    assert!(r.streams_rewritten >= 3, "{r:?}");
    db.close().unwrap();
    check_rotated(&data, &end, mid_lsn, &mid, &stream_lsns);
}

#[test]
fn rotating_an_unencrypted_database_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path()).unwrap();
    db.put("c", "k", json!(1)).unwrap();
    let e = db.rotate_keys(&NoProgress).unwrap_err();
    assert!(e.to_string().contains("not encrypted"), "{e}");
}

#[test]
fn restore_from_a_backup_taken_before_rotation_needs_and_names_the_old_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let repo = BackupRepo::open_or_init(tmp.path().join("repo")).unwrap();
    let (_, _, mid) = workload(&data, Some(&repo));
    let db = Db::open_with(&data, opts(ring(&[2, 1]))).unwrap();
    db.rotate_keys(&NoProgress).unwrap();
    db.close().unwrap();
    // Backups keep the key id they were written with.
    let into = tmp.path().join("restored");
    match restore_with(
        &repo,
        &RestoreTarget::Latest,
        false,
        &into,
        &NoProgress,
        Some(&ring(&[2])),
    ) {
        Err(Error::KeyMissing { key_id, .. }) => assert_eq!(format!("{key_id:08x}"), id(1)),
        other => panic!("{other:?}"),
    }
    assert!(!into.exists(), "a refused restore writes nothing");
    restore_with(
        &repo,
        &RestoreTarget::Latest,
        false,
        &into,
        &NoProgress,
        Some(&ring(&[2, 1])),
    )
    .unwrap();
    let db = Db::open_with(&into, opts(ring(&[2, 1]))).unwrap();
    assert_eq!(state_of(&db), mid);
    db.close().unwrap();
}

#[test]
fn the_archive_accepts_a_re_sealed_segment_as_the_one_it_holds_and_keeps_its_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let repo = BackupRepo::open_or_init(tmp.path().join("repo")).unwrap();
    workload(&data, None);
    let db = Db::open_with(&data, opts(ring(&[1]))).unwrap();
    db.backup(&repo).unwrap();
    db.close().unwrap();
    let archived_before = repo.archived_segments().unwrap();
    assert!(archived_before.len() >= 3);
    let db = Db::open_with(&data, opts(ring(&[2, 1]))).unwrap();
    db.rotate_keys(&NoProgress).unwrap();
    db.close().unwrap();
    // Forget how far the archive reaches: the next backup offers every re-sealed segment
    // to the repository again, which holds them under the old key.
    std::fs::remove_file(data.join(amberdb::backup::SLOTS_FILE)).unwrap();
    let db = Db::open_with(&data, opts(ring(&[2, 1]))).unwrap();
    db.backup(&repo).unwrap();
    db.close().unwrap();
    let archived_after = repo.archived_segments().unwrap();
    for a in &archived_before {
        let b = archived_after
            .iter()
            .find(|b| b.first_lsn == a.first_lsn && b.timeline == a.timeline)
            .unwrap();
        assert_eq!(a.plain_sha256, b.plain_sha256, "the archive kept its copy");
    }
    let v = repo
        .verify_with(None, true, &NoProgress, Some(&ring(&[2, 1])))
        .unwrap();
    assert!(v.key_ids.contains(&id(1)), "{:?}", v.key_ids);
}

/// Fails every file-system operation under its root from the `after`-th mutating one on,
/// as if the process died there; counts mutating operations.
struct CrashAt {
    after: usize,
    seen: AtomicUsize,
}

impl FaultInjector for CrashAt {
    fn on_io(&self, op: IoOp<'_>) -> Fault {
        if !op.is_mutation() {
            return Fault::Proceed;
        }
        if self.seen.fetch_add(1, Ordering::SeqCst) >= self.after {
            Fault::Fail(io::Error::other("injected crash"))
        } else {
            Fault::Proceed
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst: PathBuf = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

#[test]
fn a_rotation_interrupted_at_every_file_operation_finishes_when_run_again() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    let (end, mid_lsn, mid) = workload(&base, None);
    let stream_lsns = stream_workload(&base);
    // How many mutating operations a whole rotation makes.
    let total = {
        let data = tmp.path().join("count");
        copy_dir(&base, &data);
        let db = Db::open_with(&data, opts(ring(&[2, 1]))).unwrap();
        let counter = Arc::new(CrashAt {
            after: usize::MAX,
            seen: AtomicUsize::new(0),
        });
        let guard = install(data.clone(), counter.clone());
        db.rotate_keys(&NoProgress).unwrap();
        drop(guard);
        db.close().unwrap();
        counter.seen.load(Ordering::SeqCst)
    };
    assert!(total > 20, "{total} operations");
    for after in 0..total {
        let data = tmp.path().join(format!("crash{after}"));
        copy_dir(&base, &data);
        let db = Db::open_with(
            &data,
            Options {
                checkpoint_on_close: false,
                ..opts(ring(&[2, 1]))
            },
        )
        .unwrap();
        let guard = install(
            data.clone(),
            Arc::new(CrashAt {
                after,
                seen: AtomicUsize::new(0),
            }),
        );
        assert!(db.rotate_keys(&NoProgress).is_err(), "crash at {after}");
        // Whatever shutdown tries fails too (the injector is still in place).
        let _ = db.close();
        drop(guard);
        // Harmless: the directory opens with the keyring the rotation ran with, holding
        // everything; running the rotation again finishes it.
        let db = Db::open_with(&data, opts(ring(&[2, 1]))).unwrap();
        assert_eq!(state_of(&db), end, "crash at {after}");
        let r = db.rotate_keys(&NoProgress).unwrap();
        assert_eq!(r.key_ids_in_use, vec![id(2)], "crash at {after}");
        db.close().unwrap();
        check_rotated(&data, &end, mid_lsn, &mid, &stream_lsns);
        std::fs::remove_dir_all(&data).unwrap();
    }
}

const MARKER: &str = "MARKER-in-place-secret-0xbeef";

fn files_with_marker(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(root).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(files_with_marker(&e.path()));
        } else {
            let b = std::fs::read(e.path()).unwrap();
            if b.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()) {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn encrypting_a_plaintext_directory_in_place_and_decrypting_it_again_keep_every_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let plain = Options {
        encryption: None,
        checkpoint_compression_level: 0,
        ..opts(ring(&[1]))
    };
    let db = Db::open_with(&data, plain.clone()).unwrap();
    for i in 0..60 {
        db.put("c", &format!("k{}", i % 7), json!({ "s": MARKER, "i": i }))
            .unwrap();
        if i == 30 {
            db.checkpoint().unwrap();
        }
    }
    let want = state_of(&db);
    let mid_lsn = 20;
    let mid = state_of_at(&db, mid_lsn);
    db.close().unwrap();
    assert!(
        !files_with_marker(&data).is_empty(),
        "the scan finds plaintext"
    );

    let r = amberdb::crypto::encrypt_dir(&data, ring(&[1]), &NoProgress).unwrap();
    assert_eq!(r.key_ids_in_use, vec![id(1)]);
    assert!(r.segments_rewritten >= 3, "{r:?}");
    assert_eq!(files_with_marker(&data), Vec::<PathBuf>::new());
    match Db::open_with(
        &data,
        Options {
            encryption: None,
            ..plain.clone()
        },
    ) {
        Err(Error::KeyMissing { key_id, .. }) => assert_eq!(format!("{key_id:08x}"), id(1)),
        other => panic!("{:?}", other.map(|_| ())),
    }
    let db = Db::open_with(&data, opts(ring(&[1]))).unwrap();
    assert_eq!(state_of(&db), want);
    assert_eq!(state_of_at(&db, mid_lsn), mid);
    let v = db.verify().unwrap();
    assert!(v.is_clean() && v.contents_not_checked.is_empty(), "{v:?}");
    db.close().unwrap();

    let r = amberdb::crypto::decrypt_dir(&data, ring(&[1]), &NoProgress).unwrap();
    assert_eq!(r.key_ids_in_use, Vec::<String>::new());
    assert_eq!(r.key_id, "plaintext");
    let db = Db::open_with(&data, plain.clone()).unwrap();
    assert_eq!(state_of(&db), want);
    assert_eq!(state_of_at(&db, mid_lsn), mid);
    db.put("c", "after", json!({ "s": MARKER })).unwrap();
    db.close().unwrap();
    let v = amberdb::verify_dir(&data).unwrap();
    assert!(v.is_clean() && v.contents_not_checked.is_empty(), "{v:?}");
    assert!(!files_with_marker(&data).is_empty());
}

fn state_of_at(db: &Db, lsn: u64) -> State {
    let (_, page) = db
        .list_at(
            "c",
            &amberdb::ListOptions {
                limit: 100,
                ..Default::default()
            },
            At::Lsn(lsn),
        )
        .unwrap();
    page.docs
        .iter()
        .map(|d| (("c".to_string(), d.key.to_string()), d.json().unwrap()))
        .collect()
}

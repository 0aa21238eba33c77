//! Blobs in the engine: streamed uploads into content-addressed files, staging and the
//! `blob_ref` transaction op, limits and digests, deduplication, range reads, garbage
//! collection, and a SIGKILL during an upload.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use amberdb::blob::{metadata_collection, BLOB_DIR};
use amberdb::clock::ManualClock;
use amberdb::{BlobUpload, Db, Error, ListOptions, Options, Transaction};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use serde_json::json;
use sha2::{Digest, Sha256};

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

fn sha(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

fn read_all(db: &Db, c: &str, k: &str) -> Vec<u8> {
    let info = db.blob(c, k).expect("blob present");
    let mut out = vec![];
    db.open_blob(&info).unwrap().read_to_end(&mut out).unwrap();
    out
}

/// Blob files (not temp files or staging records) under `data`.
fn blob_files(data: &Path) -> Vec<std::path::PathBuf> {
    let root = data.join(BLOB_DIR);
    let mut out = vec![];
    let Ok(rd) = std::fs::read_dir(&root) else {
        return out;
    };
    for fan in rd {
        let fan = fan.unwrap().path();
        let name = fan.file_name().unwrap().to_str().unwrap().to_owned();
        if name.len() == 2 {
            for f in std::fs::read_dir(&fan).unwrap() {
                out.push(f.unwrap().path());
            }
        }
    }
    out.sort();
    out
}

fn tmp_files(data: &Path) -> usize {
    std::fs::read_dir(data.join(BLOB_DIR).join("tmp")).map_or(0, |d| d.count())
}

fn up() -> BlobUpload {
    BlobUpload::default()
}

#[test]
fn random_binary_files_from_0_bytes_to_100_mib_round_trip_with_equal_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    // Chunk boundaries (64 KiB) and one large file, once.
    let sizes = [0usize, 1, 65_535, 65_536, 65_537, 3 << 20, 100 << 20];
    for (i, &n) in sizes.iter().enumerate() {
        let bytes = random_bytes(n, i as u64);
        let key = format!("f{n}");
        let (_, info) = db
            .put_blob("files", &key, &mut &bytes[..], &up(), None)
            .unwrap();
        assert_eq!(
            (info.size, info.sha256),
            (n as u64, sha(&bytes)),
            "size {n}"
        );
        let back = read_all(&db, "files", &key);
        assert_eq!(back.len(), n);
        assert_eq!(sha(&back), sha(&bytes), "size {n}");
    }
    db.close().unwrap();
    // And after a reopen (the metadata came back from the log or a checkpoint).
    let db = Db::open(dir.path()).unwrap();
    let info = db.blob("files", "f65537").unwrap();
    assert_eq!(info.sha256, sha(&random_bytes(65_537, 4)));
    assert_eq!(read_all(&db, "files", "f65537"), random_bytes(65_537, 4));
}

#[test]
fn range_reads_return_exactly_the_requested_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let bytes = random_bytes(300_000, 9);
    db.put_blob("r", "k", &mut &bytes[..], &up(), None).unwrap();
    let info = db.blob("r", "k").unwrap();
    for (start, len) in [
        (0u64, 1usize),
        (65_530, 20),
        (299_999, 1),
        (123_456, 100_000),
    ] {
        let mut r = db.open_blob(&info).unwrap();
        r.seek(SeekFrom::Start(start)).unwrap();
        let mut got = vec![0u8; len];
        r.read_exact(&mut got).unwrap();
        let s = start as usize;
        assert_eq!(got, bytes[s..s + len], "range {start}+{len}");
    }
}

#[test]
fn concurrent_uploads_of_the_same_content_share_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let bytes = Arc::new(random_bytes(700_000, 1));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let (db, bytes) = (db.clone(), bytes.clone());
            std::thread::spawn(move || {
                db.put_blob("avatars", &format!("p{i}"), &mut &bytes[..], &up(), None)
                    .unwrap()
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(blob_files(dir.path()).len(), 1, "one file for one content");
    assert_eq!(tmp_files(dir.path()), 0);
    for i in 0..8 {
        assert_eq!(read_all(&db, "avatars", &format!("p{i}")), *bytes);
    }
    let (list, next) = db.list_blobs("avatars", &ListOptions::default()).unwrap();
    assert_eq!((list.len(), next), (8, None));
}

#[test]
fn a_blob_and_a_document_with_the_same_key_do_not_clash() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    db.put("cards", "alice", json!({"name": "Alice"})).unwrap();
    db.put_blob("cards", "alice", &mut &b"\x89PNG"[..], &up(), None)
        .unwrap();
    assert_eq!(
        db.get("cards", "alice").unwrap().json().unwrap()["name"],
        "Alice"
    );
    assert_eq!(read_all(&db, "cards", "alice"), b"\x89PNG");
    assert_eq!(
        db.count("cards"),
        1,
        "the blob is not a document of the collection"
    );
    // The metadata collection is reserved: users cannot reach it.
    assert!(db
        .put(&metadata_collection("cards"), "x", json!(1))
        .is_err());
}

#[test]
fn an_upload_over_the_limit_is_refused_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        max_blob_bytes: 100_000,
        ..Options::default()
    };
    let db = Db::open_with(dir.path(), opts).unwrap();
    let ok = random_bytes(100_000, 2);
    db.put_blob("b", "ok", &mut &ok[..], &up(), None).unwrap();
    let big = random_bytes(100_001, 3);
    let err = db
        .put_blob("b", "big", &mut &big[..], &up(), None)
        .unwrap_err();
    assert!(
        matches!(err, Error::BlobTooLarge { limit: 100_000, .. }),
        "{err}"
    );
    assert!(db.blob("b", "big").is_none());
    assert_eq!(blob_files(dir.path()).len(), 1);
    assert_eq!(tmp_files(dir.path()), 0);
}

#[test]
fn a_declared_sha256_that_does_not_match_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let bytes = random_bytes(10_000, 4);
    let wrong = BlobUpload {
        expected_sha256: Some(sha(b"something else")),
        ..up()
    };
    let err = db
        .put_blob("b", "k", &mut &bytes[..], &wrong, None)
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(db.blob("b", "k").is_none());
    assert!(blob_files(dir.path()).is_empty());
    assert_eq!(tmp_files(dir.path()), 0);
    let right = BlobUpload {
        expected_sha256: Some(sha(&bytes)),
        content_type: Some("image/png".into()),
    };
    let (_, info) = db
        .put_blob("b", "k", &mut &bytes[..], &right, None)
        .unwrap();
    assert_eq!(info.content_type, "image/png");
}

#[test]
fn a_staged_blob_becomes_visible_only_with_the_transaction_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    db.put("chars", "bob", json!({"v": 1})).unwrap();
    let bytes = random_bytes(5000, 5);
    let staged = db
        .stage_blob("cards", "bob", &mut &bytes[..], &up())
        .unwrap();
    assert!(db.blob("cards", "bob").is_none(), "staged is not visible");
    // A transaction that fails its precondition makes nothing visible.
    let mut t = Transaction::new();
    t.put("chars", "bob", json!({"card": true})).if_version(7);
    t.blob_ref("cards", "bob", &staged.staging_id);
    assert!(matches!(db.commit(&t), Err(Error::Conflict(_))));
    assert!(db.blob("cards", "bob").is_none());
    // The same staging id still works; the document and the blob land in one commit.
    let mut t = Transaction::new();
    t.put("chars", "bob", json!({"card": true})).if_version(1);
    t.blob_ref("cards", "bob", &staged.staging_id);
    let c = db.commit(&t).unwrap();
    let info = db.blob("cards", "bob").unwrap();
    assert_eq!(info.lsn, c.lsn);
    assert_eq!(db.get("chars", "bob").unwrap().meta.lsn, c.lsn);
    assert_eq!(read_all(&db, "cards", "bob"), bytes);
    // A staging id is used once.
    let mut t = Transaction::new();
    t.blob_ref("cards", "again", &staged.staging_id);
    assert!(matches!(db.commit(&t), Err(Error::InvalidArgument(_))));
}

#[test]
fn a_blob_version_precondition_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let (_, v1) = db
        .put_blob("b", "k", &mut &b"one"[..], &up(), Some(0))
        .unwrap();
    assert_eq!(v1.version, 1);
    assert!(matches!(
        db.put_blob("b", "k", &mut &b"two"[..], &up(), Some(0)),
        Err(Error::Conflict(_))
    ));
    let (_, v2) = db
        .put_blob("b", "k", &mut &b"two"[..], &up(), Some(1))
        .unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(read_all(&db, "b", "k"), b"two");
}

#[test]
fn a_staged_blob_not_committed_within_an_hour_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_800_000_000_000_000);
    let opts = Options {
        clock: Arc::new(clock.clone()),
        ..Options::default()
    };
    let db = Db::open_with(dir.path(), opts).unwrap();
    let staged = db
        .stage_blob("b", "k", &mut &random_bytes(1000, 6)[..], &up())
        .unwrap();
    let early = db.gc_blobs().unwrap();
    assert_eq!((early.removed, early.staging_expired), (0, 0), "{early:?}");
    clock.advance(Duration::from_secs(3601));
    let late = db.gc_blobs().unwrap();
    assert_eq!((late.removed, late.staging_expired), (1, 1), "{late:?}");
    assert!(blob_files(dir.path()).is_empty());
    let mut t = Transaction::new();
    t.blob_ref("b", "k", &staged.staging_id);
    assert!(db.commit(&t).is_err(), "an expired staging id is refused");
}

#[test]
fn gc_keeps_blobs_the_live_state_or_the_retained_log_names_and_removes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        segment_size: 600,
        history_retention: Duration::ZERO,
        checkpoint_interval: None,
        ..Options::default()
    };
    let db = Db::open_with(dir.path(), opts).unwrap();
    db.put_blob("b", "k", &mut &b"version one"[..], &up(), None)
        .unwrap();
    db.put_blob("b", "k", &mut &b"version two"[..], &up(), None)
        .unwrap();
    db.put_blob("b", "gone", &mut &b"deleted soon"[..], &up(), None)
        .unwrap();
    db.delete_blob("b", "gone").unwrap();
    // Everything is still in the retained log: nothing is removed.
    let r = db.gc_blobs().unwrap();
    assert_eq!((r.files, r.removed), (3, 0), "{r:?}");
    // Push the old commits out of the log: only the live blob stays.
    for i in 0..20 {
        db.put("pad", &format!("{i}"), json!({"pad": "x".repeat(100)}))
            .unwrap();
    }
    db.checkpoint().unwrap();
    let r = db.gc_blobs().unwrap();
    assert_eq!((r.files, r.removed, r.kept), (3, 2, 1), "{r:?}");
    assert_eq!(read_all(&db, "b", "k"), b"version two");
    assert!(db.blob("b", "gone").is_none());
}

#[test]
fn the_background_collector_removes_unneeded_blob_files_without_being_called() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        segment_size: 600,
        history_retention: Duration::ZERO,
        checkpoint_interval: None,
        blob_gc_interval: Some(Duration::from_millis(20)),
        ..Options::default()
    };
    let db = Db::open_with(dir.path(), opts).unwrap();
    db.put_blob("b", "k", &mut &b"version one"[..], &up(), None)
        .unwrap();
    db.put_blob("b", "k", &mut &b"version two"[..], &up(), None)
        .unwrap();
    for i in 0..20 {
        db.put("pad", &format!("{i}"), json!({"pad": "x".repeat(100)}))
            .unwrap();
    }
    db.checkpoint().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while blob_files(dir.path()).len() > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        blob_files(dir.path()).len(),
        1,
        "only the live version stays"
    );
    assert_eq!(read_all(&db, "b", "k"), b"version two");
}

#[test]
fn an_interrupted_upload_leaves_no_file() {
    struct Failing(usize);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("client went away"));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(7);
            self.0 -= n;
            Ok(n)
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    assert!(db
        .put_blob("b", "k", &mut Failing(200_000), &up(), None)
        .is_err());
    assert!(db.blob("b", "k").is_none());
    assert_eq!(tmp_files(dir.path()), 0);
    assert!(blob_files(dir.path()).is_empty());
}

/// The child half of the SIGKILL test: uploads an endless stream until killed.
#[test]
fn sigkill_child_uploads_forever() {
    let Ok(data) = std::env::var("AMBERDB_BLOB_SIGKILL_CHILD") else {
        return;
    };
    struct Endless;
    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            buf.fill(1);
            Ok(buf.len())
        }
    }
    let db = Db::open(&data).unwrap();
    db.put_blob("b", "done", &mut &b"committed before"[..], &up(), None)
        .unwrap();
    let _ = db.put_blob("b", "partial", &mut Endless, &up(), None);
    unreachable!("the upload is over the limit only after 1 GiB; the parent kills it first");
}

#[test]
fn a_sigkill_during_an_upload_leaves_no_visible_blob_and_no_file_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "sigkill_child_uploads_forever", "--nocapture"])
        .env("AMBERDB_BLOB_SIGKILL_CHILD", &data)
        .spawn()
        .unwrap();
    // Wait until the upload's temp file holds a few MiB.
    let tmp = data.join(BLOB_DIR).join("tmp");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let grown = std::fs::read_dir(&tmp).ok().is_some_and(|d| {
            d.filter_map(|e| e.ok())
                .any(|e| e.metadata().is_ok_and(|m| m.len() > 4 << 20))
        });
        if grown {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the child never uploaded"
        );
        assert!(child.try_wait().unwrap().is_none(), "the child ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(tmp_files(&data), 1, "the partial upload was on disk");
    let db = Db::open(&data).unwrap();
    assert!(db.blob("b", "partial").is_none());
    assert_eq!(read_all(&db, "b", "done"), b"committed before");
    assert_eq!(tmp_files(&data), 0, "open removes interrupted uploads");
    let r = db.gc_blobs().unwrap();
    assert_eq!((r.files, r.kept, r.removed), (1, 1, 0), "{r:?}");
}

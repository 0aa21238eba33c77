//! Issue 12: encryption at rest in the engine: files are sealed, the keys are required, and a
//! wrong or missing key is a clear refusal that never reads as damage.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::fs;
use std::path::Path;

use amberdb::crypto::{Key, Keyring};
use amberdb::{Db, Error, Options, RecoveryMode};
use serde_json::json;

fn key(n: u8) -> Key {
    let mut b = [0u8; 32];
    for (i, x) in b.iter_mut().enumerate() {
        *x = n.wrapping_mul(97).wrapping_add(i as u8).wrapping_mul(61) ^ 0xa5;
    }
    Key::from_bytes(b)
}

fn ring(n: u8) -> Keyring {
    Keyring::single(key(n))
}

fn enc_opts(keys: Option<Keyring>) -> Options {
    Options {
        encryption: keys,
        segment_size: 4096,
        ..support::opts(4096)
    }
}

const MARKERS: [&str; 3] = [
    "MARKER-secret-email-7f3a",
    "MARKER-purchase-91bc",
    "MARKERKEY-session-token",
];

/// Writes a workload with the markers in values and keys, some checkpointed, some only in
/// the log (several segments).
fn marker_workload(dir: &Path, keys: Option<Keyring>) {
    let db = Db::open_with(dir, enc_opts(keys.clone())).unwrap();
    for i in 0..40 {
        db.put(
            "players",
            &format!("{}-{i}", MARKERS[2]),
            json!({ "email": MARKERS[0], "pad": "x".repeat(200), "i": i }),
        )
        .unwrap();
    }
    db.checkpoint().unwrap();
    for i in 0..20 {
        db.put(
            "orders",
            &format!("o{i}"),
            json!({ "what": MARKERS[1], "i": i }),
        )
        .unwrap();
    }
    // Stream entries (stream files), a blob (blob files).
    for i in 0..10 {
        db.append("chat", &[json!({ "said": MARKERS[1], "i": i })], None)
            .unwrap();
    }
    let blob = MARKERS[0].repeat(100);
    db.put_blob(
        "files",
        "b",
        &mut blob.as_bytes(),
        &Default::default(),
        None,
    )
    .unwrap();
    db.checkpoint().unwrap();
    db.close().unwrap();
}

/// Every (file, marker) pair where a marker's bytes appear in a file under `root`.
fn find_markers(root: &Path) -> Vec<(String, &'static str)> {
    let mut found = vec![];
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
                continue;
            }
            let bytes = fs::read(e.path()).unwrap();
            for m in MARKERS {
                if bytes.windows(m.len()).any(|w| w == m.as_bytes()) {
                    found.push((e.path().display().to_string(), m));
                }
            }
        }
    }
    found
}

#[test]
fn with_encryption_no_marker_is_in_any_file_of_the_data_directory_and_without_it_they_are() {
    let plain = tempfile::tempdir().unwrap();
    marker_workload(plain.path(), None);
    let found = find_markers(plain.path());
    for dir in ["streams", "blobs"] {
        assert!(
            found.iter().any(|(f, _)| f.contains(dir)),
            "the scan reads {dir}: {found:?}"
        );
    }
    for m in MARKERS {
        assert!(
            found.iter().any(|(_, f)| *f == m),
            "the scan finds {m} in an unencrypted directory: {found:?}"
        );
    }
    let enc = tempfile::tempdir().unwrap();
    marker_workload(enc.path(), Some(ring(1)));
    assert_eq!(
        find_markers(enc.path()),
        vec![],
        "plaintext in an encrypted directory"
    );
    // And it all reads back.
    let db = Db::open_with(enc.path(), enc_opts(Some(ring(1)))).unwrap();
    // 60 documents and the blob's metadata document.
    assert_eq!(db.view().iter_all().count(), 61);
    assert_eq!(
        db.read_stream("chat", amberdb::StreamFrom::Seq(1), 100)
            .unwrap()
            .entries
            .len(),
        10
    );
    assert_eq!(
        db.get("orders", "o19").unwrap().json().unwrap()["what"],
        json!(MARKERS[1])
    );
    db.close().unwrap();
}

#[test]
fn an_encrypted_directory_reopens_many_times_with_its_key_and_every_commit_survives() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..4u64 {
        let db = Db::open_with(dir.path(), enc_opts(Some(ring(1)))).unwrap();
        for i in 0..10 {
            db.put(
                "c",
                &format!("k{round}-{i}"),
                json!({ "round": round, "i": i }),
            )
            .unwrap();
        }
        // No checkpoint on close: every round's commits come back from the sealed log.
        db.close().unwrap();
    }
    let db = Db::open_with(dir.path(), enc_opts(Some(ring(1)))).unwrap();
    assert_eq!(db.view().iter_all().count(), 40);
    assert_eq!(db.get("c", "k3-9").unwrap().json().unwrap()["i"], json!(9));
    db.close().unwrap();
}

fn expect_key_missing(r: amberdb::Result<Db>, want: u32) -> String {
    match r {
        Err(e @ Error::KeyMissing { key_id, .. }) => {
            assert_eq!(key_id, want);
            e.to_string()
        }
        Err(e) => panic!("expected KeyMissing, got {e:?}"),
        Ok(_) => panic!("expected KeyMissing, the open succeeded"),
    }
}

#[test]
fn opening_an_encrypted_directory_without_a_key_or_with_a_wrong_key_is_key_missing() {
    let dir = tempfile::tempdir().unwrap();
    marker_workload(dir.path(), Some(ring(1)));
    let id = key(1).id().get();
    let msg = expect_key_missing(Db::open_with(dir.path(), enc_opts(None)), id);
    assert!(msg.contains(&format!("{id:08x}")), "{msg}");
    assert!(msg.contains("not damage"), "{msg}");
    let msg = expect_key_missing(Db::open_with(dir.path(), enc_opts(Some(ring(2)))), id);
    assert!(
        msg.contains(&key(2).id().to_string()),
        "names the keys it has: {msg}"
    );
    // Nothing was changed: it still opens with the right key.
    let db = Db::open_with(dir.path(), enc_opts(Some(ring(1)))).unwrap();
    assert_eq!(db.view().iter_all().count(), 61, "60 documents and a blob");
    db.close().unwrap();
}

#[test]
fn a_keyring_with_the_old_key_second_reads_old_files_and_seals_new_ones_with_the_first() {
    let dir = tempfile::tempdir().unwrap();
    marker_workload(dir.path(), Some(ring(1)));
    let both = Keyring::new(vec![key(2), key(1)]).unwrap();
    let db = Db::open_with(dir.path(), enc_opts(Some(both.clone()))).unwrap();
    db.put("c", "new", json!({ "v": 1 })).unwrap();
    db.close().unwrap();
    let ids: Vec<u32> = amberdb::crypto::key_ids_in_dir(dir.path())
        .unwrap()
        .iter()
        .map(|(k, _)| k.get())
        .collect();
    assert!(
        ids.contains(&key(2).id().get()),
        "new segment sealed with the first key: {ids:?}"
    );
    let db = Db::open_with(dir.path(), enc_opts(Some(both))).unwrap();
    assert_eq!(db.get("c", "new").unwrap().json().unwrap()["v"], json!(1));
    db.close().unwrap();
    // The new key alone is not enough while old files need the old one.
    expect_key_missing(
        Db::open_with(dir.path(), enc_opts(Some(ring(2)))),
        key(1).id().get(),
    );
}

#[test]
fn automatic_recovery_never_quarantines_a_directory_because_the_key_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let repo = tempfile::tempdir().unwrap();
    marker_workload(dir.path(), Some(ring(1)));
    let before = support::tree_listing(dir.path());
    let auto = Options {
        recovery: RecoveryMode::Auto {
            repo: repo.path().to_owned(),
        },
        ..enc_opts(Some(ring(2)))
    };
    expect_key_missing(Db::open_with(dir.path(), auto.clone()), key(1).id().get());
    expect_key_missing(
        Db::open_with(
            dir.path(),
            Options {
                encryption: None,
                ..auto
            },
        ),
        key(1).id().get(),
    );
    assert_eq!(support::tree_listing(dir.path()), before, "nothing moved");
    assert!(!dir.path().join(amberdb::QUARANTINE_DIR).exists());
}

fn header_of(path: &Path) -> amberdb::log::segment::SegmentHeader {
    amberdb::log::segment::SegmentHeader::decode(&fs::read(path).unwrap()).unwrap()
}

/// The nonce rule (docs/ENCRYPTION.md, "Nonces"): the bytes of a cut torn tail may still be on
/// the disk, so the commits after the reopen must never be sealed at those offsets under the
/// same file key. The cut segment gets nothing appended; the next commit is in a new file.
#[test]
fn after_a_torn_tail_is_cut_no_commit_is_ever_sealed_again_at_its_offsets_in_that_segment() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        segment_size: 1 << 20,
        ..enc_opts(Some(ring(1)))
    };
    let db = Db::open_with(dir.path(), opts.clone()).unwrap();
    for i in 0..5 {
        db.put("c", &format!("k{i}"), json!({ "i": i })).unwrap();
    }
    db.close().unwrap();
    let seg = support::newest_segment(dir.path());
    let frames = support::segment_frames_any(&seg);
    let (_, last_off) = *frames.last().unwrap();
    // A torn last frame: its second half never reached the disk.
    let len = fs::metadata(&seg).unwrap().len();
    support::truncate(&seg, last_off + (len - last_off) / 2);
    let db = Db::open_with(dir.path(), opts.clone()).unwrap();
    assert_eq!(
        db.recovery_report().torn_tail.as_ref().unwrap().offset,
        last_off
    );
    db.put("c", "after", json!({ "v": 1 })).unwrap();
    db.close().unwrap();
    assert_eq!(
        fs::metadata(&seg).unwrap().len(),
        last_off,
        "nothing appended after the cut"
    );
    let newest = support::newest_segment(dir.path());
    assert_ne!(newest, seg, "the next commit went to a new segment");
    assert_ne!(header_of(&newest).salt, header_of(&seg).salt);
    let db = Db::open_with(dir.path(), opts).unwrap();
    assert_eq!(
        db.get("c", "after").unwrap().json().unwrap(),
        json!({ "v": 1 })
    );
    assert!(db.get("c", "k4").is_none(), "the torn commit is gone");
    db.close().unwrap();
}

/// A segment re-created at the same first LSN (an empty one replaced on open, or one whose
/// creation a power cut undid) gets a new salt, hence a new file key.
#[test]
fn a_segment_re_created_at_the_same_first_lsn_gets_a_new_salt() {
    let dir = tempfile::tempdir().unwrap();
    Db::open_with(dir.path(), enc_opts(Some(ring(1))))
        .unwrap()
        .close()
        .unwrap();
    let seg = support::newest_segment(dir.path());
    let before = header_of(&seg);
    Db::open_with(dir.path(), enc_opts(Some(ring(1))))
        .unwrap()
        .close()
        .unwrap();
    let after = header_of(&support::newest_segment(dir.path()));
    assert_eq!(after.first_lsn, before.first_lsn);
    assert_ne!(after.salt, before.salt);
    assert_eq!(after.key_id, key(1).id().get());
}

#[test]
fn verify_without_the_key_checks_structure_and_says_contents_were_not_checked() {
    let dir = tempfile::tempdir().unwrap();
    marker_workload(dir.path(), Some(ring(1)));
    let with = amberdb::verify_dir_with(dir.path(), Some(&ring(1))).unwrap();
    assert!(with.is_clean(), "{:?}", with.problems);
    assert!(with.contents_not_checked.is_empty());
    assert!(with.documents_checked >= 60);
    let without = amberdb::verify_dir(dir.path()).unwrap();
    assert!(without.is_clean(), "{:?}", without.problems);
    assert!(without.commits > 0, "frames were checked");
    assert_eq!(without.documents_checked, 0);
    let id = key(1).id().to_string();
    assert!(!without.contents_not_checked.is_empty());
    assert!(without
        .contents_not_checked
        .iter()
        .all(|p| p.detail.contains(&id)));
    // A flipped ciphertext byte in the sealed checkpoint is found without the key too.
    let ckpt = amberdb::checkpoint::list_checkpoints(&dir.path().join(amberdb::CHECKPOINT_DIR))
        .unwrap()[0]
        .1
        .clone();
    support::flip(&ckpt, 100);
    let without = amberdb::verify_dir(dir.path()).unwrap();
    assert!(
        without.problems.iter().any(|p| p.file == ckpt),
        "{:?}",
        without.problems
    );
}

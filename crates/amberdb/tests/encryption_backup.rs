//! Issue 12: backups and the archive of an encrypted database are ciphertext, restore and
//! point-in-time recovery work with the keyring, and refuse with `KeyMissing` without it.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use amberdb::backup::{restore_with, NoProgress};
use amberdb::crypto::{Key, Keyring};
use amberdb::{BackupRepo, Db, Error, Options, RestoreTarget};
use serde_json::json;

fn key(n: u8) -> Key {
    let mut b = [0u8; 32];
    for (i, x) in b.iter_mut().enumerate() {
        *x = n.wrapping_mul(53).wrapping_add(i as u8).wrapping_mul(29) ^ 0x3c;
    }
    Key::from_bytes(b)
}

const MARKER: &str = "MARKER-backup-secret-0xfeed";

fn opts(keys: Option<Keyring>, repo: &Path) -> Options {
    Options {
        encryption: keys,
        segment_size: 4096,
        archive_to: Some(repo.to_owned()),
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

/// A database with a backup in the middle of its history and archived segments after it;
/// returns the state at the end and (LSN, state) at a point after the backup.
fn workload(data: &Path, repo_dir: &Path, keys: Option<Keyring>) -> (State, u64, State) {
    let db = Db::open_with(data, opts(keys, repo_dir)).unwrap();
    for i in 0..30 {
        db.put(
            "c",
            &format!("{MARKER}-{i}"),
            json!({ "s": MARKER, "i": i }),
        )
        .unwrap();
    }
    // A blob whose bytes are the marker (sealed in the data directory and the repository).
    let blob = MARKER.repeat(3000);
    db.put_blob(
        "files",
        "b",
        &mut blob.as_bytes(),
        &Default::default(),
        None,
    )
    .unwrap();
    let repo = BackupRepo::open_or_init(repo_dir).unwrap();
    db.backup(&repo).unwrap();
    for i in 0..30 {
        db.put(
            "d",
            &format!("k{i}"),
            json!({ "s": MARKER, "pad": "p".repeat(300) }),
        )
        .unwrap();
    }
    let mid_lsn = db.view().lsn();
    let mid = state_of(&db);
    for i in 0..30 {
        db.delete("d", &format!("k{i}")).unwrap();
    }
    // A second backup seals and archives the log: the point in between is reached through
    // the first backup and the archived segments.
    db.backup(&repo).unwrap();
    let end = state_of(&db);
    db.close().unwrap();
    (end, mid_lsn, mid)
}

fn has_marker(root: &Path) -> Vec<String> {
    let mut found = vec![];
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
                continue;
            }
            let mut bytes = fs::read(e.path()).unwrap();
            // Compressed files are scanned decompressed too: compression is not encryption.
            if e.path().extension().is_some_and(|x| x == "zst") {
                bytes.extend(zstd::decode_all(&bytes[..]).unwrap());
            }
            if bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()) {
                found.push(e.path().display().to_string());
            }
        }
    }
    found
}

#[test]
fn with_encryption_no_marker_is_in_any_repository_file_even_decompressed_and_without_it_it_is() {
    let t = tempfile::tempdir().unwrap();
    workload(&t.path().join("p"), &t.path().join("pr"), None);
    let found = has_marker(&t.path().join("pr"));
    assert!(found.iter().any(|f| f.contains("snapshot")), "{found:?}");
    assert!(found.iter().any(|f| f.contains("blobs")), "{found:?}");
    assert!(found.iter().any(|f| f.contains("wal")), "{found:?}");
    workload(
        &t.path().join("e"),
        &t.path().join("er"),
        Some(Keyring::single(key(1))),
    );
    assert_eq!(has_marker(&t.path().join("er")), Vec::<String>::new());
    assert_eq!(has_marker(&t.path().join("e")), Vec::<String>::new());
}

#[test]
fn restore_and_point_in_time_recovery_of_an_encrypted_repository_work_with_the_keyring() {
    let t = tempfile::tempdir().unwrap();
    let ring = Keyring::single(key(1));
    let (end, mid_lsn, mid) =
        workload(&t.path().join("e"), &t.path().join("r"), Some(ring.clone()));
    let repo = BackupRepo::open(t.path().join("r")).unwrap();
    let m = repo.list().unwrap();
    assert_eq!(
        m[0].key_id,
        Some(key(1).id().get()),
        "the manifest names the key"
    );
    for (target, want, into) in [
        (RestoreTarget::Latest, &end, "latest"),
        (RestoreTarget::Lsn(mid_lsn), &mid, "pitr"),
    ] {
        let into = t.path().join(into);
        restore_with(&repo, &target, false, &into, &NoProgress, Some(&ring)).unwrap();
        // The restored directory is encrypted too.
        assert_eq!(has_marker(&into), Vec::<String>::new());
        let db = Db::open_with(&into, Options::default().encryption(ring.clone())).unwrap();
        let got = state_of(&db);
        let diff: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
        let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
        assert!(
            got == *want,
            "{target}: extra {diff:?}, missing {missing:?}, lsn {}",
            db.view().lsn()
        );
        db.close().unwrap();
    }
    let report = repo
        .verify_with(None, true, &NoProgress, Some(&ring))
        .unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert!(report.contents_not_checked.is_empty());
    assert_eq!(report.key_ids, vec![key(1).id().to_string()]);
    assert!(report.documents_checked > 0);
}

#[test]
fn restore_without_the_key_or_with_a_wrong_one_refuses_with_key_missing_and_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    workload(
        &t.path().join("e"),
        &t.path().join("r"),
        Some(Keyring::single(key(1))),
    );
    let repo = BackupRepo::open(t.path().join("r")).unwrap();
    let wrong = Keyring::single(key(2));
    for keys in [None, Some(&wrong)] {
        let into = t.path().join("out");
        match restore_with(
            &repo,
            &RestoreTarget::Latest,
            false,
            &into,
            &NoProgress,
            keys,
        ) {
            Err(e @ Error::KeyMissing { key_id, .. }) => {
                assert_eq!(key_id, key(1).id().get());
                assert!(e.to_string().contains(&key(1).id().to_string()), "{e}");
            }
            other => panic!("expected KeyMissing, got {other:?}"),
        }
        assert!(!into.exists(), "nothing was written");
    }
    // Verify without the key checks structure and says what it could not check.
    let report = repo.verify(None, true, &NoProgress).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert!(!report.contents_not_checked.is_empty());
    assert_eq!(report.key_ids, vec![key(1).id().to_string()]);
}

/// OPERATIONS.md, "Turning encryption on": a plaintext repository restored with a keyring
/// gives an encrypted directory with the same state.
#[test]
fn restoring_an_unencrypted_backup_with_a_keyring_gives_an_encrypted_directory() {
    let t = tempfile::tempdir().unwrap();
    let (end, _, _) = workload(&t.path().join("p"), &t.path().join("r"), None);
    let repo = BackupRepo::open(t.path().join("r")).unwrap();
    let ring = Keyring::single(key(3));
    let into = t.path().join("enc");
    restore_with(
        &repo,
        &RestoreTarget::Latest,
        false,
        &into,
        &NoProgress,
        Some(&ring),
    )
    .unwrap();
    assert_eq!(has_marker(&into), Vec::<String>::new());
    let db = Db::open_with(&into, Options::default().encryption(ring)).unwrap();
    assert_eq!(state_of(&db), end);
    db.close().unwrap();
    assert!(matches!(
        Db::open(&into),
        Err(Error::KeyMissing { key_id, .. }) if key_id == key(3).id().get()
    ));
}

//! Issue 12, blobs: with encryption on, blob files are sealed in 64 KiB units
//! (`blob::sealed`). No byte of a blob is on disk in plaintext; whole and range reads return
//! the blob; a flipped byte, a unit moved between files, a file moved to another blob's name
//! and a cut file each fail authentication instead of serving other bytes; a blob whose key
//! is missing is `KeyMissing`; verify checks structure without the key and contents with it;
//! rotation, `encrypt_dir` and `decrypt_dir` rewrite blob files; backups keep them sealed and
//! restores bring them back (sealing plaintext ones when restoring into an encrypted
//! directory).

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use amberdb::backup::{restore_with, NoProgress};
use amberdb::blob::sealed::{sealed_len, HEADER_LEN, UNIT};
use amberdb::crypto::{decrypt_dir, encrypt_dir, Keyring, ENVELOPE_OVERHEAD};
use amberdb::{verify_dir, verify_dir_with, BackupRepo, BlobInfo, BlobUpload, Db, Error, Options};
use proptest::prelude::*;
use support::{test_key as key, test_ring as ring};

const MARKER: &[u8] = b"MARKER-blob-secret-0xb10b";

fn opts(keys: Option<Keyring>) -> Options {
    Options {
        encryption: keys,
        ..Options::default()
    }
}

/// `len` bytes, the marker repeated with a counter between (so units differ).
fn content(len: usize, seed: u8) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 64);
    let mut i = 0u32;
    while v.len() < len {
        v.extend_from_slice(MARKER);
        v.extend_from_slice(&i.to_le_bytes());
        v.push(seed);
        i += 1;
    }
    v.truncate(len);
    v
}

fn put(db: &Db, key: &str, bytes: &[u8]) -> BlobInfo {
    db.put_blob("files", key, &mut &bytes[..], &BlobUpload::default(), None)
        .unwrap()
        .1
}

fn read_all(db: &Db, key: &str) -> std::io::Result<Vec<u8>> {
    let info = db.blob("files", key).unwrap();
    let mut r = db.open_blob(&info).map_err(std::io::Error::other)?;
    let mut out = vec![];
    r.read_to_end(&mut out)?;
    Ok(out)
}

fn blob_path(data: &Path, info: &BlobInfo) -> PathBuf {
    data.join("blobs")
        .join(amberdb::blob::blob_rel_path(&info.sha256))
}

/// Every file under `root` holding the marker.
fn files_with_marker(root: &Path) -> Vec<String> {
    support::files_containing(root, MARKER)
        .iter()
        .map(|p| p.display().to_string())
        .collect()
}

const SIZES: [usize; 7] = [0, 1, UNIT - 1, UNIT, UNIT + 1, 3 * UNIT + 5, 200_000];

#[test]
fn sealed_blob_files_hold_no_plaintext_and_read_back_whole_at_every_unit_boundary_size() {
    let t = tempfile::tempdir().unwrap();
    let (plain, enc) = (t.path().join("plain"), t.path().join("enc"));
    for (dir, keys) in [(&plain, None), (&enc, Some(ring(&[1])))] {
        let db = Db::open_with(dir, opts(keys)).unwrap();
        for (i, size) in SIZES.iter().enumerate() {
            let info = put(&db, &format!("b{i}"), &content(*size, i as u8));
            let on_disk = fs::metadata(blob_path(dir, &info)).unwrap().len();
            if dir == &enc {
                assert_eq!(on_disk, sealed_len(*size as u64), "size {size}");
            } else {
                assert_eq!(on_disk, *size as u64);
            }
        }
        db.close().unwrap();
    }
    // The scan works: plaintext blob files hold the marker.
    assert!(files_with_marker(&plain.join("blobs")).len() >= 5);
    assert_eq!(files_with_marker(&enc), Vec::<String>::new());
    let db = Db::open_with(&enc, opts(Some(ring(&[1])))).unwrap();
    for (i, size) in SIZES.iter().enumerate() {
        assert_eq!(
            read_all(&db, &format!("b{i}")).unwrap(),
            content(*size, i as u8),
            "size {size}"
        );
    }
    let report = verify_dir_with(&enc, Some(&ring(&[1]))).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.blobs_checked, SIZES.len() as u64);
    assert!(report.contents_not_checked.is_empty());
    // The stats name the blob files' key with the log's.
    assert_eq!(db.stats().key_ids_in_use, vec![key(1).id().to_string()]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Range reads of a sealed blob against the plaintext: any seek, any read length.
    #[test]
    fn range_reads_of_a_sealed_blob_match_the_plaintext(
        size in 0usize..(3 * UNIT + 100),
        reads in prop::collection::vec((0u64..(3 * UNIT as u64 + 200), 1usize..(UNIT + 300)), 1..12),
    ) {
        let t = tempfile::tempdir().unwrap();
        let db = Db::open_with(t.path(), opts(Some(ring(&[1])))).unwrap();
        let want = content(size, 7);
        let info = put(&db, "r", &want);
        let mut r = db.open_blob(&info).unwrap();
        for (at, len) in reads {
            r.seek(SeekFrom::Start(at)).unwrap();
            let mut got = vec![];
            (&mut r).take(len as u64).read_to_end(&mut got).unwrap();
            let from = (at as usize).min(want.len());
            let to = (from + len).min(want.len());
            prop_assert_eq!(&got[..], &want[from..to], "at {} len {}", at, len);
        }
        db.close().unwrap();
    }
}

/// An encrypted database with two blobs of three units each: (db dir, info a, info b).
fn two_blobs(t: &Path) -> (PathBuf, BlobInfo, BlobInfo) {
    let dir = t.join("d");
    let db = Db::open_with(&dir, opts(Some(ring(&[1])))).unwrap();
    let a = put(&db, "a", &content(2 * UNIT + 10, 1));
    let b = put(&db, "b", &content(2 * UNIT + 10, 2));
    db.close().unwrap();
    (dir, a, b)
}

fn expect_unauthentic(db: &Db, key: &str) -> String {
    let info = db.blob("files", key).unwrap();
    let err = match db.open_blob(&info) {
        Err(e) => e.to_string(),
        Ok(mut r) => {
            let mut v = vec![];
            r.read_to_end(&mut v)
                .expect_err("a damaged sealed blob must not read")
                .to_string()
        }
    };
    assert!(
        err.contains("authenticat")
            || err.contains("tag does not match")
            || err.contains("sealed for"),
        "{err}"
    );
    err
}

#[test]
fn a_flipped_byte_in_a_sealed_blob_unit_fails_the_read_and_verify_with_the_key_names_the_file() {
    let t = tempfile::tempdir().unwrap();
    let (dir, a, _) = two_blobs(t.path());
    let path = blob_path(&dir, &a);
    // A byte of unit 1's ciphertext.
    let at = HEADER_LEN as u64 + (UNIT + ENVELOPE_OVERHEAD) as u64 + 100;
    let mut bytes = fs::read(&path).unwrap();
    bytes[at as usize] ^= 0x40;
    fs::write(&path, &bytes).unwrap();
    // Without the key the structure is sound: not a problem, contents not checked.
    let without = verify_dir(&dir).unwrap();
    assert!(
        without.problems.iter().all(|p| p.file != path),
        "{:?}",
        without.problems
    );
    assert!(without.contents_not_checked.iter().any(|p| p.file == path));
    let with = verify_dir_with(&dir, Some(&ring(&[1]))).unwrap();
    assert!(
        with.problems.iter().any(|p| p.file == path),
        "{:?}",
        with.problems
    );
    let db = Db::open_with(&dir, opts(Some(ring(&[1])))).unwrap();
    let err = expect_unauthentic(&db, "a");
    assert!(err.contains("unit 1"), "{err}");
    // Unit 0 is intact and still reads: only the damaged unit fails.
    let mut r = db.open_blob(&a).unwrap();
    let mut first = vec![0u8; UNIT];
    r.read_exact(&mut first).unwrap();
    assert_eq!(first, content(2 * UNIT + 10, 1)[..UNIT]);
    db.close().unwrap();
}

#[test]
fn a_unit_swapped_between_two_sealed_blob_files_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let (dir, a, b) = two_blobs(t.path());
    let (pa, pb) = (blob_path(&dir, &a), blob_path(&dir, &b));
    let (ba, mut bb) = (fs::read(&pa).unwrap(), fs::read(&pb).unwrap());
    let unit = HEADER_LEN..HEADER_LEN + UNIT + ENVELOPE_OVERHEAD;
    bb[unit.clone()].copy_from_slice(&ba[unit]);
    fs::write(&pb, &bb).unwrap();
    let db = Db::open_with(&dir, opts(Some(ring(&[1])))).unwrap();
    let err = expect_unauthentic(&db, "b");
    assert!(err.contains("unit 0"), "{err}");
    assert_eq!(read_all(&db, "a").unwrap(), content(2 * UNIT + 10, 1));
    db.close().unwrap();
    let report = verify_dir_with(&dir, Some(&ring(&[1]))).unwrap();
    assert!(
        report.problems.iter().any(|p| p.file == pb),
        "{:?}",
        report.problems
    );
}

#[test]
fn a_sealed_blob_file_moved_to_another_blobs_name_is_refused_not_served() {
    let t = tempfile::tempdir().unwrap();
    let (dir, a, b) = two_blobs(t.path());
    // Same length, same key: only the trailer tells them apart.
    fs::copy(blob_path(&dir, &a), blob_path(&dir, &b)).unwrap();
    let db = Db::open_with(&dir, opts(Some(ring(&[1])))).unwrap();
    let err = expect_unauthentic(&db, "b");
    assert!(err.contains("sealed for blob"), "{err}");
    db.close().unwrap();
    let report = verify_dir_with(&dir, Some(&ring(&[1]))).unwrap();
    assert!(report
        .problems
        .iter()
        .any(|p| p.file == blob_path(&dir, &b)));
}

#[test]
fn a_sealed_blob_file_cut_by_a_whole_unit_or_grown_is_refused_not_served_short() {
    let t = tempfile::tempdir().unwrap();
    let (dir, a, b) = two_blobs(t.path());
    // Cut unit 1 out (the trailer stays at the end): the length is a sealed file's, of a
    // shorter blob, and the trailer's size disagrees.
    let pa = blob_path(&dir, &a);
    let bytes = fs::read(&pa).unwrap();
    let (u1, u2) = (
        HEADER_LEN + UNIT + ENVELOPE_OVERHEAD,
        HEADER_LEN + 2 * (UNIT + ENVELOPE_OVERHEAD),
    );
    let cut: Vec<u8> = [&bytes[..u1], &bytes[u2..]].concat();
    fs::write(&pa, &cut).unwrap();
    // Grow b by a copy of its unit 0.
    let pb = blob_path(&dir, &b);
    let mut grown = fs::read(&pb).unwrap();
    let u0 = grown[HEADER_LEN..u1].to_vec();
    grown.splice(u1..u1, u0);
    fs::write(&pb, &grown).unwrap();
    let db = Db::open_with(&dir, opts(Some(ring(&[1])))).unwrap();
    for k in ["a", "b"] {
        let info = db.blob("files", k).unwrap();
        let err = db.open_blob(&info).unwrap_err().to_string();
        assert!(err.contains("units were cut or added"), "{k}: {err}");
    }
    db.close().unwrap();
}

#[test]
fn a_sealed_blob_whose_key_is_not_given_is_key_missing_naming_its_key_id() {
    let t = tempfile::tempdir().unwrap();
    let (dir, a, _) = two_blobs(t.path());
    // A plaintext database holding the same blob; its file replaced by the sealed one.
    let other = t.path().join("plain");
    let db = Db::open(&other).unwrap();
    let info = put(&db, "a", &content(2 * UNIT + 10, 1));
    assert_eq!(info.sha256, a.sha256);
    fs::copy(blob_path(&dir, &a), blob_path(&other, &info)).unwrap();
    match db.open_blob(&info) {
        Err(Error::KeyMissing { key_id, .. }) => assert_eq!(key_id, key(1).id().get()),
        other => panic!("{other:?}"),
    }
    db.close().unwrap();
    // Verify without the key: structure checked, needs key 1, no problem.
    let report = verify_dir(&other).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert!(report.contents_not_checked[0]
        .detail
        .contains(&key(1).id().to_string()));
}

#[test]
fn rotation_reseals_every_blob_file_so_the_old_key_can_be_removed() {
    let t = tempfile::tempdir().unwrap();
    let (dir, _, _) = two_blobs(t.path());
    let db = Db::open_with(&dir, opts(Some(ring(&[2, 1])))).unwrap();
    let new = put(&db, "c", &content(UNIT + 3, 3));
    assert_eq!(db.stats().key_ids_in_use, {
        let mut v = vec![key(1).id().to_string(), key(2).id().to_string()];
        v.sort();
        v
    });
    let r = db.rotate_keys(&NoProgress).unwrap();
    assert_eq!(r.blobs_rewritten, 2, "{r:?}");
    assert_eq!(r.key_ids_in_use, vec![key(2).id().to_string()]);
    assert_eq!(db.stats().key_ids_in_use, vec![key(2).id().to_string()]);
    assert_eq!(db.rotate_keys(&NoProgress).unwrap().blobs_rewritten, 0);
    db.close().unwrap();
    assert!(blob_path(&dir, &new).exists());
    let db = Db::open_with(&dir, opts(Some(ring(&[2])))).unwrap();
    assert_eq!(read_all(&db, "a").unwrap(), content(2 * UNIT + 10, 1));
    assert_eq!(read_all(&db, "c").unwrap(), content(UNIT + 3, 3));
    db.close().unwrap();
    let report = verify_dir_with(&dir, Some(&ring(&[2]))).unwrap();
    assert!(
        report.is_clean() && report.contents_not_checked.is_empty(),
        "{report:?}"
    );
}

#[test]
fn encrypt_dir_seals_plaintext_blob_files_and_decrypt_dir_opens_them_again() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("d");
    let db = Db::open(&dir).unwrap();
    for (i, size) in SIZES.iter().enumerate() {
        put(&db, &format!("b{i}"), &content(*size, i as u8));
    }
    db.close().unwrap();
    assert!(!files_with_marker(&dir).is_empty());
    let r = encrypt_dir(&dir, ring(&[4]), &NoProgress).unwrap();
    assert_eq!(r.blobs_rewritten, SIZES.len() as u64);
    assert_eq!(files_with_marker(&dir), Vec::<String>::new());
    let db = Db::open_with(&dir, opts(Some(ring(&[4])))).unwrap();
    for (i, size) in SIZES.iter().enumerate() {
        assert_eq!(
            read_all(&db, &format!("b{i}")).unwrap(),
            content(*size, i as u8)
        );
    }
    db.close().unwrap();
    let r = decrypt_dir(&dir, ring(&[4]), &NoProgress).unwrap();
    assert_eq!(r.blobs_rewritten, SIZES.len() as u64);
    assert!(r.key_ids_in_use.is_empty(), "{r:?}");
    let db = Db::open(&dir).unwrap();
    for (i, size) in SIZES.iter().enumerate() {
        assert_eq!(
            read_all(&db, &format!("b{i}")).unwrap(),
            content(*size, i as u8)
        );
    }
    db.close().unwrap();
}

#[test]
fn backups_keep_blob_files_sealed_verify_reads_them_with_the_key_and_restore_needs_it() {
    let t = tempfile::tempdir().unwrap();
    let (dir, a, _) = two_blobs(t.path());
    let repo_dir = t.path().join("repo");
    let repo = BackupRepo::open_or_init(&repo_dir).unwrap();
    let db = Db::open_with(&dir, opts(Some(ring(&[1])))).unwrap();
    db.backup(&repo).unwrap();
    db.close().unwrap();
    assert_eq!(files_with_marker(&repo_dir), Vec::<String>::new());
    let v = repo
        .verify_with(None, true, &NoProgress, Some(&ring(&[1])))
        .unwrap();
    assert!(v.is_clean() && v.contents_not_checked.is_empty(), "{v:?}");
    assert_eq!(v.blobs_checked, 2);
    // Without the key: the blob files' key id is listed and their contents not checked.
    let v = repo.verify_with(None, true, &NoProgress, None).unwrap();
    assert!(v.is_clean(), "{v:?}");
    assert!(v.key_ids.contains(&format!("{:08x}", key(1).id().get())));
    assert!(v
        .contents_not_checked
        .iter()
        .any(|p| p.file.to_string_lossy().starts_with("blobs/")));
    // Restore with the key: the blob is back, still sealed.
    let into = t.path().join("restored");
    restore_with(
        &repo,
        &amberdb::RestoreTarget::Latest,
        false,
        &into,
        &NoProgress,
        Some(&ring(&[1])),
    )
    .unwrap();
    assert_eq!(files_with_marker(&into), Vec::<String>::new());
    let db = Db::open_with(&into, opts(Some(ring(&[1])))).unwrap();
    assert_eq!(read_all(&db, "a").unwrap(), content(2 * UNIT + 10, 1));
    db.close().unwrap();
    // A flipped byte in the repository's copy: verify with the key finds it, restore refuses.
    let rp = repo_dir
        .join("blobs")
        .join(amberdb::blob::blob_rel_path(&a.sha256));
    let mut bytes = fs::read(&rp).unwrap();
    bytes[HEADER_LEN + 7] ^= 1;
    fs::write(&rp, &bytes).unwrap();
    let v = repo
        .verify_with(None, true, &NoProgress, Some(&ring(&[1])))
        .unwrap();
    assert!(
        v.problems
            .iter()
            .any(|p| p.file.to_string_lossy().contains(&a.sha256_hex())),
        "{v:?}"
    );
    let err = restore_with(
        &repo,
        &amberdb::RestoreTarget::Latest,
        false,
        &t.path().join("r2"),
        &NoProgress,
        Some(&ring(&[1])),
    )
    .unwrap_err();
    assert!(err.to_string().contains("damaged"), "{err}");
}

#[test]
fn a_plaintext_blob_restored_into_an_encrypted_directory_is_sealed_on_the_way_in() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("p");
    let repo_dir = t.path().join("repo");
    let repo = BackupRepo::open_or_init(&repo_dir).unwrap();
    let db = Db::open(&dir).unwrap();
    put(&db, "a", &content(UNIT + 9, 5));
    db.backup(&repo).unwrap();
    db.close().unwrap();
    assert!(!files_with_marker(&repo_dir).is_empty());
    let into = t.path().join("enc");
    restore_with(
        &repo,
        &amberdb::RestoreTarget::Latest,
        false,
        &into,
        &NoProgress,
        Some(&ring(&[6])),
    )
    .unwrap();
    assert_eq!(files_with_marker(&into), Vec::<String>::new());
    let db = Db::open_with(&into, opts(Some(ring(&[6])))).unwrap();
    assert_eq!(read_all(&db, "a").unwrap(), content(UNIT + 9, 5));
    assert_eq!(db.stats().key_ids_in_use, vec![key(6).id().to_string()]);
    db.close().unwrap();
}

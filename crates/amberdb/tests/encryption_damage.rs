//! Issue 12: damage to an encrypted directory gives its own clear error: a flipped ciphertext
//! byte, a frame moved between segments, a checkpoint block swapped between checkpoints, a
//! segment copied from another database with the same key. None is silently accepted, and
//! none is cut as a torn tail unless it really is the tail.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use amberdb::checkpoint::list_checkpoints;
use amberdb::crypto::{Key, Keyring};
use amberdb::log::segment::list_segments;
use amberdb::{verify_dir, verify_dir_with, Db, Options, CHECKPOINT_DIR, LOG_DIR};
use serde_json::json;
use support::{expect_damaged, flip, segment_frames_any};

fn ring() -> Keyring {
    let mut b = [0u8; 32];
    for (i, x) in b.iter_mut().enumerate() {
        *x = (i as u8).wrapping_mul(71) ^ 0x5e;
    }
    Keyring::single(Key::from_bytes(b))
}

fn opts() -> Options {
    Options {
        encryption: Some(ring()),
        ..support::opts(4096)
    }
}

/// An encrypted directory with several sealed segments and a last one.
fn written(dir: &Path) -> Vec<(u64, PathBuf)> {
    let db = Db::open_with(dir, opts()).unwrap();
    for i in 0..60 {
        db.put(
            "c",
            &format!("k{i}"),
            json!({ "i": i, "pad": "z".repeat(150) }),
        )
        .unwrap();
    }
    db.close().unwrap();
    let segs = list_segments(&dir.join(LOG_DIR)).unwrap();
    assert!(segs.len() >= 3, "{segs:?}");
    segs
}

/// The frame at `offset` of `bytes`: its whole length.
fn frame_len(bytes: &[u8], offset: u64) -> usize {
    let o = offset as usize;
    32 + u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap()) as usize
}

/// `frame` with its LSN set to `lsn` and its CRC fixed: structurally a perfect frame.
fn relabel(frame: &[u8], lsn: u64) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[8..16].copy_from_slice(&lsn.to_le_bytes());
    let crc = crc32c::crc32c(&f[8..]);
    f[4..8].copy_from_slice(&crc.to_le_bytes());
    f
}

#[test]
fn a_flipped_ciphertext_byte_in_a_sealed_segment_is_damage_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let segs = written(dir.path());
    // Make the database need the first segment: drop the checkpoints (none on close here).
    let (_, seg) = &segs[1];
    let frames = segment_frames_any(seg);
    let (_, off) = frames[frames.len() / 2];
    flip(seg, off + 40);
    let d = expect_damaged(dir.path(), opts());
    assert_eq!(&d.file, seg);
    assert_eq!(d.offset, off);
}

#[test]
fn a_frame_moved_from_another_segment_with_its_lsn_and_crc_fixed_is_unauthentic_damage_even_at_the_tail(
) {
    let dir = tempfile::tempdir().unwrap();
    let segs = written(dir.path());
    let (_, first) = &segs[0];
    let (_, last) = segs.last().unwrap();
    let donor = fs::read(first).unwrap();
    let (_, donor_off) = segment_frames_any(first)[1];
    let donor_frame = &donor[donor_off as usize..donor_off as usize + frame_len(&donor, donor_off)];
    // Replace the very last frame of the last segment: a torn tail would be cut there, but a
    // frame whose CRC matches is never a torn write.
    let mut bytes = fs::read(last).unwrap();
    let frames = segment_frames_any(last);
    let (lsn, off) = *frames.last().unwrap();
    bytes.truncate(off as usize);
    bytes.extend(relabel(donor_frame, lsn));
    fs::write(last, &bytes).unwrap();
    let before = fs::read(last).unwrap();
    let d = expect_damaged(dir.path(), opts());
    assert_eq!(&d.file, last);
    assert_eq!(d.offset, off);
    assert!(d.detail.contains("does not authenticate"), "{}", d.detail);
    assert_eq!(fs::read(last).unwrap(), before, "nothing was cut");
    // Verify with the key says the same; without it, the structure is sound and it says
    // contents were not checked.
    let with = verify_dir_with(dir.path(), Some(&ring())).unwrap();
    assert!(
        with.problems
            .iter()
            .any(|p| p.file == *last && p.detail.contains("does not authenticate")),
        "{:?}",
        with.problems
    );
    let without = verify_dir(dir.path()).unwrap();
    assert!(without.is_clean(), "{:?}", without.problems);
    assert!(without.contents_not_checked.iter().any(|p| p.file == *last));
}

#[test]
fn a_checkpoint_block_swapped_between_two_checkpoints_is_refused_by_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let uncompressed = Options {
        checkpoint_compression_level: 0,
        ..opts()
    };
    let db = Db::open_with(dir.path(), uncompressed).unwrap();
    db.put("c", "a", json!({ "v": 1 })).unwrap();
    db.checkpoint().unwrap();
    db.put("c", "a", json!({ "v": 2 })).unwrap();
    db.checkpoint().unwrap();
    db.close().unwrap();
    let ckpts = list_checkpoints(&dir.path().join(CHECKPOINT_DIR)).unwrap();
    let (newest, older) = (&ckpts[0].1, &ckpts[1].1);
    let (mut new_bytes, old_bytes) = (fs::read(newest).unwrap(), fs::read(older).unwrap());
    // One block each, at the same offset (after the 80-byte header): same length, since the
    // states differ only in one digit and blocks are not compressed. Swap it in and fix the trailer's SHA-256, so every
    // structural check (block CRC, body hash) passes.
    assert_eq!(new_bytes.len(), old_bytes.len());
    let body = 80..new_bytes.len() - 48;
    new_bytes[body.clone()].copy_from_slice(&old_bytes[body.clone()]);
    let sha = <sha2::Sha256 as sha2::Digest>::digest(&new_bytes[body.clone()]);
    let t = new_bytes.len() - 40;
    new_bytes[t..t + 32].copy_from_slice(&sha);
    fs::write(newest, &new_bytes).unwrap();
    let report = verify_dir_with(dir.path(), Some(&ring())).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.file == *newest && p.detail.contains("does not authenticate")),
        "{:?}",
        report.problems
    );
    // Open passes over it (to quarantine) and recovers the same state from the older
    // checkpoint and the log: the swapped block's contents are never used.
    let db = Db::open_with(dir.path(), opts()).unwrap();
    assert_eq!(db.get("c", "a").unwrap().json().unwrap(), json!({ "v": 2 }));
    assert_eq!(db.recovery_report().quarantined.len(), 1);
    db.close().unwrap();
}

#[test]
fn a_segment_copied_from_another_database_with_the_same_key_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    let segs_a = written(&a);
    let segs_b = written(&b);
    let (first, path_a) = segs_a.last().unwrap().clone();
    let path_b = &segs_b.iter().find(|(f, _)| *f == first).unwrap().1;
    // As copied: the header names the other database.
    fs::copy(path_b, &path_a).unwrap();
    let d = expect_damaged(&a, opts());
    assert_eq!(d.file, path_a);
    assert!(d.detail.contains("another history"), "{}", d.detail);
    // With the header rewritten to this database's ids (and its CRC fixed), the frames fail
    // authentication: the file key is this database's, they were sealed under the other's.
    let mine = fs::read(&segs_a[0].1).unwrap();
    let mut theirs = fs::read(path_b).unwrap();
    theirs[24..48].copy_from_slice(&mine[24..48]);
    let crc = crc32c::crc32c(&theirs[..64]);
    theirs[64..68].copy_from_slice(&crc.to_le_bytes());
    fs::write(&path_a, &theirs).unwrap();
    let d = expect_damaged(&a, opts());
    assert_eq!(d.file, path_a);
    assert!(d.detail.contains("does not authenticate"), "{}", d.detail);
}

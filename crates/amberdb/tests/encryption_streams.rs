//! Issue 12, streams: with encryption on, stream files (`DATA/streams/`) are sealed (stream
//! file format 2): no entry is on disk in plaintext; entries survive reopens, crashes, file
//! rolls and retention; a flipped byte in a sealed entry is damage, a missing key is
//! `KeyMissing` before anything is read; rotation, `encrypt_dir` and `decrypt_dir` rewrite
//! stream files; after a reopen no sealed file is appended to again (nonces are never
//! reused over cut bytes).

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use amberdb::backup::NoProgress;
use amberdb::crypto::{decrypt_dir, encrypt_dir, Keyring};
use amberdb::{Db, Error, Options, StreamFrom};
use serde_json::{json, Value};
use support::{test_key as key, test_ring as ring};

const MARKER: &str = "MARKER-stream-secret-0x57e4";

fn opts(keys: Option<Keyring>) -> Options {
    Options {
        encryption: keys,
        stream_segment_bytes: 512,
        checkpoint_interval: None,
        checkpoint_on_close: false,
        history_retention: Duration::ZERO,
        ttl_reap_interval: None,
        ..Options::default()
    }
}

fn entries(db: &Db, stream: &str) -> Vec<(u64, u64, Value)> {
    let mut out = vec![];
    let mut from = 1;
    loop {
        let page = db.read_stream(stream, StreamFrom::Seq(from), 5).unwrap();
        if page.entries.is_empty() {
            return out;
        }
        for e in &page.entries {
            out.push((e.seq, e.commit_ts, e.json().unwrap()));
        }
        from = page.next_seq;
    }
}

fn workload(db: &Db, from: usize, to: usize) {
    for i in from..to {
        db.append(
            "chat",
            &[
                json!({ "msg": MARKER, "i": i }),
                json!(format!("{MARKER}-{i}")),
            ],
            None,
        )
        .unwrap();
        if i % 17 == 0 {
            db.checkpoint().unwrap();
        }
    }
}

fn stream_files(data: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let root = data.join("streams");
    for d in fs::read_dir(&root).unwrap() {
        for f in fs::read_dir(d.unwrap().path()).unwrap() {
            out.push(f.unwrap().path());
        }
    }
    out.sort();
    out
}

fn with_marker(data: &Path) -> Vec<PathBuf> {
    support::files_containing(&data.join("streams"), MARKER.as_bytes())
}

#[test]
fn sealed_stream_files_hold_no_plaintext_and_entries_survive_reopen_and_crash() {
    let t = tempfile::tempdir().unwrap();
    let (plain, enc) = (t.path().join("plain"), t.path().join("enc"));
    let db = Db::open_with(&plain, opts(None)).unwrap();
    workload(&db, 0, 40);
    db.close().unwrap();
    // The scan works: plaintext stream files hold the marker.
    assert!(with_marker(&plain).len() > 3);
    let db = Db::open_with(&enc, opts(Some(ring(&[1])))).unwrap();
    workload(&db, 0, 40);
    let before = entries(&db, "chat");
    assert_eq!(before.len(), 80);
    assert!(stream_files(&enc).len() > 3, "files roll");
    assert_eq!(with_marker(&enc), Vec::<PathBuf>::new());
    // A crash: the directory as it is while open.
    let crashed = t.path().join("crashed");
    support::copy_dir(&enc, &crashed);
    db.close().unwrap();
    for dir in [&enc, &crashed] {
        let db = Db::open_with(dir, opts(Some(ring(&[1])))).unwrap();
        assert_eq!(entries(&db, "chat"), before);
        workload(&db, 40, 50);
        assert_eq!(entries(&db, "chat").len(), 100);
        let report = db.verify().unwrap();
        assert!(report.is_clean(), "{report:?}");
        db.close().unwrap();
        assert_eq!(with_marker(dir), Vec::<PathBuf>::new());
    }
    let db = Db::open_with(&enc, opts(Some(ring(&[1])))).unwrap();
    assert_eq!(entries(&db, "chat").len(), 100);
    db.close().unwrap();
}

#[test]
fn after_a_reopen_no_sealed_stream_file_is_appended_to_again() {
    let t = tempfile::tempdir().unwrap();
    let db = Db::open_with(
        t.path(),
        Options {
            stream_segment_bytes: 1 << 20,
            ..opts(Some(ring(&[1])))
        },
    )
    .unwrap();
    db.append("chat", &[json!("one")], None).unwrap();
    db.checkpoint().unwrap();
    db.close().unwrap();
    let first = stream_files(t.path());
    assert_eq!(first.len(), 1);
    let len = fs::metadata(&first[0]).unwrap().len();
    let db = Db::open_with(
        t.path(),
        Options {
            stream_segment_bytes: 1 << 20,
            ..opts(Some(ring(&[1])))
        },
    )
    .unwrap();
    db.append("chat", &[json!("two")], None).unwrap();
    db.checkpoint().unwrap();
    let now = stream_files(t.path());
    assert_eq!(now.len(), 2, "the append after reopen starts a new file");
    assert_eq!(fs::metadata(&first[0]).unwrap().len(), len);
    let got: Vec<Value> = entries(&db, "chat").into_iter().map(|e| e.2).collect();
    assert_eq!(got, vec![json!("one"), json!("two")]);
    db.close().unwrap();
}

#[test]
fn a_flipped_byte_in_a_sealed_stream_entry_is_damage_and_a_missing_key_is_key_missing() {
    let t = tempfile::tempdir().unwrap();
    let db = Db::open_with(t.path(), opts(Some(ring(&[1])))).unwrap();
    workload(&db, 0, 10);
    db.checkpoint().unwrap();
    db.close().unwrap();
    // Without the key, or with another: refused before anything is read, never damage.
    for keys in [None, Some(ring(&[2]))] {
        match Db::open_with(t.path(), opts(keys)) {
            Err(Error::KeyMissing { key_id, .. }) => assert_eq!(key_id, key(1).id().get()),
            other => panic!("{other:?}"),
        }
    }
    let file = stream_files(t.path())[0].clone();
    let mut bytes = fs::read(&file).unwrap();
    let at = bytes.len() - 30;
    bytes[at] ^= 0x10;
    fs::write(&file, &bytes).unwrap();
    match Db::open_with(t.path(), opts(Some(ring(&[1])))) {
        Err(Error::Damaged(d)) => assert_eq!(d.file, file, "{d:?}"),
        other => panic!("a flipped sealed byte must be damage: {other:?}"),
    }
}

#[test]
fn rotation_reseals_stream_files_and_encrypt_and_decrypt_dir_convert_them() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("d");
    let db = Db::open_with(&dir, opts(None)).unwrap();
    workload(&db, 0, 30);
    db.checkpoint().unwrap();
    let want = entries(&db, "chat");
    db.close().unwrap();
    assert!(!with_marker(&dir).is_empty());

    encrypt_dir(&dir, ring(&[1]), &NoProgress).unwrap();
    assert_eq!(with_marker(&dir), Vec::<PathBuf>::new());
    let db = Db::open_with(&dir, opts(Some(ring(&[2, 1])))).unwrap();
    assert_eq!(entries(&db, "chat"), want);
    let r = db.rotate_keys(&NoProgress).unwrap();
    assert!(r.streams_rewritten > 0, "{r:?}");
    assert_eq!(r.key_ids_in_use, vec![key(2).id().to_string()]);
    assert_eq!(db.stats().key_ids_in_use, vec![key(2).id().to_string()]);
    // Appends after the rotation land in files sealed with the new key.
    db.append("chat", &[json!(MARKER)], None).unwrap();
    db.checkpoint().unwrap();
    db.close().unwrap();
    assert_eq!(with_marker(&dir), Vec::<PathBuf>::new());
    let db = Db::open_with(&dir, opts(Some(ring(&[2])))).unwrap();
    let got = entries(&db, "chat");
    assert_eq!(got[..want.len()], want[..]);
    assert_eq!(got.len(), want.len() + 1);
    db.close().unwrap();

    let r = decrypt_dir(&dir, ring(&[2]), &NoProgress).unwrap();
    assert!(r.streams_rewritten > 0, "{r:?}");
    assert!(r.key_ids_in_use.is_empty(), "{r:?}");
    let db = Db::open_with(&dir, opts(None)).unwrap();
    assert_eq!(entries(&db, "chat"), got);
    db.close().unwrap();
}

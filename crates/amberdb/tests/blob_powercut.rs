//! Power cuts during blob uploads and the commits that name them, at every file-system
//! mutation: after the cut, every blob the database shows has its exact bytes on disk (the
//! file was synced and its name made durable before the commit was logged), and every blob
//! acknowledged before the cut is there. Run plaintext and with encryption on (sealed blob
//! files, `blob::sealed`).

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use amberdb::io::{install, PowerCut};
use amberdb::{BlobUpload, Db, Options, Transaction};
use serde_json::json;

fn content(i: usize) -> Vec<u8> {
    (0..(40_000 + i * 70_001))
        .map(|j| (j * 31 + i) as u8)
        .collect()
}

fn opts(encrypted: bool) -> Options {
    Options {
        encryption: encrypted.then(|| {
            amberdb::crypto::Keyring::single(amberdb::crypto::Key::from_bytes([0x5c; 32]))
        }),
        checkpoint_interval: None,
        ttl_reap_interval: None,
        segment_size: 4096,
        ..Options::default()
    }
}

/// Uploads three blobs (one in a transaction with a document, one overwriting another);
/// returns how many were acknowledged.
fn workload(data: &Path, pc: &PowerCut, encrypted: bool) -> usize {
    let Ok(db) = Db::open_with(data, opts(encrypted)) else {
        return 0;
    };
    let mut acked = 0;
    for i in 0..3 {
        if pc.is_cut() {
            break;
        }
        let bytes = content(i);
        let ok = if i == 1 {
            db.stage_blob("b", "k1", &mut &bytes[..], &BlobUpload::default())
                .and_then(|s| {
                    let mut t = Transaction::new();
                    t.put("docs", "k1", json!({"blob": s.staging_id}));
                    t.blob_ref("b", "k1", &s.staging_id);
                    db.commit(&t)
                })
                .is_ok()
        } else {
            db.put_blob("b", "k0", &mut &bytes[..], &BlobUpload::default(), None)
                .is_ok()
        };
        if !ok {
            break;
        }
        acked += 1;
    }
    drop(db);
    acked
}

fn check(out: &Path, acked: usize, case: &str, encrypted: bool) {
    let db = Db::open_with(out, opts(encrypted)).unwrap_or_else(|e| panic!("{case}: open: {e}"));
    let read = |k: &str| {
        db.blob("b", k).map(|info| {
            let mut v = vec![];
            db.open_blob(&info)
                .unwrap_or_else(|e| panic!("{case}: blob {k} is visible but its file is not: {e}"))
                .read_to_end(&mut v)
                .unwrap();
            assert_eq!(v.len() as u64, info.size, "{case}: {k} size");
            v
        })
    };
    let k0 = read("k0");
    let k1 = read("k1");
    // Each visible blob holds exactly the bytes of an upload of it.
    if let Some(v) = &k0 {
        assert!(*v == content(0) || *v == content(2), "{case}: k0 bytes");
    }
    if let Some(v) = &k1 {
        assert_eq!(*v, content(1), "{case}: k1 bytes");
    }
    // The document and the blob of one transaction are both there or both not.
    assert_eq!(
        db.get("docs", "k1").is_some(),
        k1.is_some(),
        "{case}: atomic"
    );
    if acked >= 1 {
        assert!(k0.is_some(), "{case}: acknowledged k0 lost");
    }
    if acked >= 2 {
        assert!(k1.is_some(), "{case}: acknowledged k1 lost");
    }
    if acked >= 3 {
        assert_eq!(
            k0.unwrap(),
            content(2),
            "{case}: acknowledged overwrite lost"
        );
    }
    let report = db.verify().unwrap();
    assert!(report.is_clean(), "{case}: verify: {:?}", report.problems);
}

#[test]
fn a_power_cut_at_any_moment_of_an_upload_and_its_commit_never_shows_a_blob_without_its_bytes() {
    power_cut_at_every_mutation(false);
}

#[test]
fn a_power_cut_at_any_moment_of_a_sealed_upload_and_its_commit_never_shows_a_blob_without_its_bytes(
) {
    power_cut_at_every_mutation(true);
}

fn power_cut_at_every_mutation(encrypted: bool) {
    let dry = tempfile::tempdir().unwrap();
    let pc = Arc::new(PowerCut::new(dry.path(), None).unwrap());
    let total = {
        let _scope = install(dry.path(), pc.clone());
        assert_eq!(workload(&dry.path().join("data"), &pc, encrypted), 3);
        pc.ops()
    };
    assert!(total > 20, "{total} mutations");
    for cut_at in 0..total {
        let root = tempfile::tempdir().unwrap();
        let pc = Arc::new(PowerCut::new(root.path(), Some(cut_at)).unwrap());
        let acked = {
            let _scope = install(root.path(), pc.clone());
            let acked = workload(&root.path().join("data"), &pc, encrypted);
            pc.cut_now();
            acked
        };
        for m in 0..3u64 {
            let out = tempfile::tempdir().unwrap();
            let report = pc.materialize(out.path(), cut_at * 7 + m).unwrap();
            let case = format!(
                "cut before {} ({cut_at} of {total}), materialization {m}",
                report.cut_before.as_deref().unwrap_or("nothing")
            );
            let data = out.path().join("data");
            if !data.join("log").is_dir() {
                assert_eq!(acked, 0, "{case}");
                continue;
            }
            check(&data, acked, &case, encrypted);
        }
    }
}

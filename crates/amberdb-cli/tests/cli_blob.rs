//! `amberdb blob put|get|rm|ls|gc` with `--data` and with `--url` against `amberdb serve`:
//! the bytes come back exactly, listing shows metadata, `rm` of a missing blob exits 3, and
//! garbage collection (asked for, or on the server's timer) removes exactly the blob files
//! nothing names any more.

#![allow(clippy::unwrap_used)]

mod serve_support;

use std::time::{Duration, Instant};

use serve_support::{agent, amberdb, send, Served};
use sha2::{Digest, Sha256};

fn file_with(dir: &std::path::Path, name: &str, n: usize) -> (std::path::PathBuf, Vec<u8>) {
    let bytes: Vec<u8> = (0..n).map(|i| (i * 13 + i / 7) as u8).collect();
    let p = dir.join(name);
    std::fs::write(&p, &bytes).unwrap();
    (p, bytes)
}

fn round_trip(target: &[&str], dir: &std::path::Path) {
    let (src, bytes) = file_with(dir, "in.bin", 3 << 20);
    let src = src.to_str().unwrap();
    let mut args = vec!["blob", "put"];
    args.extend_from_slice(target);
    args.extend_from_slice(&["cards", "alice.png", src, "--content-type", "image/png"]);
    let (code, out, err) = amberdb(&args, &[]);
    assert_eq!(code, 0, "{err}");
    let meta: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(meta["sha256"], hex::encode(Sha256::digest(&bytes)));
    assert_eq!(meta["content_type"], "image/png");

    let dst = dir.join("out.bin");
    let mut args = vec!["blob", "get"];
    args.extend_from_slice(target);
    args.extend_from_slice(&["cards", "alice.png", "-o", dst.to_str().unwrap()]);
    let (code, _, err) = amberdb(&args, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(&dst).unwrap(), bytes);

    let mut args = vec!["blob", "ls"];
    args.extend_from_slice(target);
    args.push("cards");
    let (code, out, _) = amberdb(&args, &[]);
    assert_eq!(code, 0);
    let l: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(l["blobs"][0]["key"], "alice.png");
    assert_eq!(l["blobs"][0]["size"], bytes.len());

    let mut args = vec!["blob", "rm"];
    args.extend_from_slice(target);
    args.extend_from_slice(&["cards", "alice.png"]);
    assert_eq!(amberdb(&args, &[]).0, 0);
    assert_eq!(amberdb(&args, &[]).0, 3, "removing a missing blob exits 3");
    let mut args = vec!["blob", "get"];
    args.extend_from_slice(target);
    args.extend_from_slice(&["cards", "alice.png"]);
    assert_eq!(amberdb(&args, &[]).0, 3);

    // The deleted blob's write is still in the log (the history window): its file stays.
    let mut args = vec!["blob", "gc"];
    args.extend_from_slice(target);
    let (code, out, err) = amberdb(&args, &[]);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (&r["files"], &r["kept"], &r["removed"]),
        (&1.into(), &1.into(), &0.into()),
        "{r}"
    );
}

/// Blob files (not temp files or staging records) in a data directory.
fn blob_files(data: &std::path::Path) -> usize {
    let Ok(rd) = std::fs::read_dir(data.join("blobs")) else {
        return 0;
    };
    rd.map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().len() == 2)
        .map(|fan| std::fs::read_dir(fan).unwrap().count())
        .sum()
}

/// A server whose old log leaves the data directory at the next checkpoint (no history
/// window, small segments), collecting blobs every `gc_interval_s` (0: only on request).
fn short_history(data: &std::path::Path, gc_interval_s: &str) -> Served {
    Served::start(
        data,
        &[],
        &[
            ("AMBERDB_HISTORY_RETENTION", "0"),
            ("AMBERDB_ENGINE_SEGMENT_SIZE", "4096"),
            ("AMBERDB_BLOBS_GC_INTERVAL_S", gc_interval_s),
        ],
    )
}

/// Writes two versions of cards/k, then enough documents to seal the segments holding the
/// first, and checkpoints so those segments are removed: only the second version is named.
fn overwrite_and_push_out_of_the_log(url: &str) {
    let a = agent();
    let blob = format!("{url}/v1/collections/cards/blobs/k");
    assert_eq!(send(&a, "PUT", &blob, Some("version one")).unwrap().0, 201);
    assert_eq!(send(&a, "PUT", &blob, Some("version two")).unwrap().0, 200);
    let pad = format!("{{\"pad\": \"{}\"}}", "x".repeat(300));
    for i in 0..40 {
        let doc = format!("{url}/v1/collections/pad/docs/{i}");
        assert_eq!(send(&a, "PUT", &doc, Some(&pad)).unwrap().0, 201);
    }
    let (code, body) = send(&a, "POST", &format!("{url}/v1/admin/checkpoint"), None).unwrap();
    assert_eq!(code, 200, "{body}");
}

#[test]
fn blob_gc_through_a_server_removes_the_overwritten_version_once_the_log_no_longer_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let served = short_history(&data, "0");
    overwrite_and_push_out_of_the_log(&served.url);
    assert_eq!(blob_files(&data), 2, "nothing collects without being asked");
    let (code, out, err) = amberdb(&["blob", "gc", "--url", &served.url], &[]);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (&r["files"], &r["kept"], &r["removed"]),
        (&2.into(), &1.into(), &1.into()),
        "{r}"
    );
    assert_eq!(r["removed_bytes"], "version one".len());
    assert_eq!(blob_files(&data), 1);
    let (code, out, _) = amberdb(&["blob", "get", "--url", &served.url, "cards", "k"], &[]);
    assert_eq!((code, out.as_str()), (0, "version two"));
}

#[test]
fn the_server_collects_unneeded_blob_files_on_its_own_every_gc_interval() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let served = short_history(&data, "1");
    overwrite_and_push_out_of_the_log(&served.url);
    let deadline = Instant::now() + Duration::from_secs(20);
    while blob_files(&data) > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(blob_files(&data), 1, "the overwritten version is collected");
    let (code, out, _) = amberdb(&["blob", "get", "--url", &served.url, "cards", "k"], &[]);
    assert_eq!((code, out.as_str()), (0, "version two"));
}

#[test]
fn blob_commands_round_trip_with_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    round_trip(&["--data", data.to_str().unwrap()], dir.path());
}

#[test]
fn blob_commands_round_trip_with_url() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(&dir.path().join("data"), &[], &[]);
    let url = served.url.clone();
    round_trip(&["--url", &url], dir.path());
}

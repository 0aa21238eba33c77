//! `amberdb blob put|get|rm|ls` with `--data` and with `--url` against `amberdb serve`: the
//! bytes come back exactly, listing shows metadata, `rm` of a missing blob exits 3.

#![allow(clippy::unwrap_used)]

mod serve_support;

use serve_support::{amberdb, Served};
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

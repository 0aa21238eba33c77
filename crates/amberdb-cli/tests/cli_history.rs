//! `amberdb history` and `amberdb get --as-of | --as-of-lsn`, against `--data` and against a
//! running `amberdb serve` (`--url`), with the same answers and exit codes both ways.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod serve_support;

use serde_json::{json, Value};
use serve_support::{amberdb, Served};

/// alice: hp 10, hp 20, deleted, hp 30.
fn seed(target: &[&str]) {
    for v in [r#"{"hp": 10}"#, r#"{"hp": 20}"#] {
        let mut args = vec!["put"];
        args.extend_from_slice(target);
        args.extend_from_slice(&["players", "alice", v]);
        let (code, _, err) = amberdb(&args, &[]);
        assert_eq!(code, 0, "{err}");
    }
    let mut args = vec!["delete"];
    args.extend_from_slice(target);
    args.extend_from_slice(&["players", "alice"]);
    assert_eq!(amberdb(&args, &[]).0, 0);
    let mut args = vec!["put"];
    args.extend_from_slice(target);
    args.extend_from_slice(&["players", "alice", r#"{"hp": 30}"#]);
    assert_eq!(amberdb(&args, &[]).0, 0);
}

fn check(target: &[&str]) {
    let with = |extra: &[&str]| {
        let mut a: Vec<&str> = vec![extra[0]];
        a.extend_from_slice(target);
        a.extend_from_slice(&extra[1..]);
        amberdb(&a, &[])
    };
    let (code, out, err) = with(&["history", "players", "alice", "--json"]);
    assert_eq!(code, 0, "{err}");
    let page: Value = serde_json::from_str(&out).unwrap();
    let v = page["versions"].as_array().unwrap();
    let ops: Vec<(&str, u64, bool)> = v
        .iter()
        .map(|v| {
            (
                v["op"].as_str().unwrap(),
                v["version"].as_u64().unwrap(),
                v["deleted"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ops,
        vec![
            ("put", 3, false),
            ("delete", 2, true),
            ("put", 2, false),
            ("put", 1, false)
        ]
    );
    assert_eq!(v[3]["value"], json!({"hp": 10}));
    assert_eq!(page["next"], json!(null));
    let lsn = |i: usize| v[i]["lsn"].as_u64().unwrap().to_string();
    // Text output and paging.
    let (code, out, _) = with(&["history", "players", "alice", "--limit", "2"]);
    assert_eq!(code, 0);
    assert!(out.contains("delete (v2)"), "{out}");
    assert!(out.contains(&format!("--before-lsn {}", lsn(1))), "{out}");
    let (_, out, _) = with(&[
        "history",
        "players",
        "alice",
        "--before-lsn",
        &lsn(1),
        "--json",
        "--no-values",
    ]);
    let older: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(older["versions"].as_array().unwrap().len(), 2);
    assert_eq!(older["versions"][0]["value"], json!(null));
    // get --as-of-lsn and --as-of.
    let (code, out, err) = with(&[
        "get",
        "players",
        "alice",
        "--as-of-lsn",
        &lsn(3),
        "--value-only",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!({"hp": 10})
    );
    let t = v[2]["time"].as_str().unwrap().to_owned();
    let (code, out, err) = with(&["get", "players", "alice", "--as-of", &t]);
    assert_eq!(code, 0, "{err}");
    let env: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(env["value"], json!({"hp": 20}));
    assert_eq!(env["version"], json!(2));
    // Deleted then: not found (3). Bad arguments: usage (2).
    let (code, _, err) = with(&["get", "players", "alice", "--as-of-lsn", &lsn(1)]);
    assert_eq!(code, 3, "{err}");
    let (code, _, _) = with(&["get", "players", "alice", "--as-of", "noon"]);
    assert_eq!(code, 2);
    let (code, _, _) = with(&["get", "players", "alice", "--as-of", &t, "--as-of-lsn", "1"]);
    assert_eq!(code, 2);
    let (code, _, _) = with(&["history", "players", "alice", "--limit", "0"]);
    assert_eq!(code, 2);
}

#[test]
fn history_and_get_as_of_work_against_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("db");
    let d = data.to_str().unwrap();
    seed(&["--data", d]);
    check(&["--data", d]);
}

#[test]
fn history_and_get_as_of_work_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(&dir.path().join("data"), &[], &[]);
    let url = served.url.clone();
    seed(&["--url", &url]);
    check(&["--url", &url]);
}

#[test]
fn history_help_teaches_how_to_pick_and_read_a_version() {
    let (code, out, _) = amberdb(&["history", "--help"], &[]);
    assert_eq!(code, 0);
    assert!(
        out.contains("--before-lsn") && out.contains("--as-of-lsn"),
        "{out}"
    );
    let (_, out, _) = amberdb(&["get", "--help"], &[]);
    assert!(
        out.contains("--as-of") && out.contains("history window"),
        "{out}"
    );
}

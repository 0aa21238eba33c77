//! `amberdb revert` and `amberdb undo` through the real binary, on a data directory and
//! through a running server: the report, dry runs, and a refused undo naming the document.

#![allow(clippy::unwrap_used)]

mod serve_support;

use serve_support::{amberdb, Served};

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

#[test]
fn revert_and_undo_work_on_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let (c, out, err) = amberdb(
        &["put", "--data", d, "players", "1234", r#"{"gold": 10}"#],
        &[],
    );
    assert_eq!(c, 0, "{out}{err}");
    let good = json(&out)["lsn"].as_u64().unwrap().to_string();
    amberdb(
        &["put", "--data", d, "players", "1234", r#"{"gold": 0}"#],
        &[],
    );
    let (c, out, err) = amberdb(
        &[
            "revert",
            "--data",
            d,
            "players",
            "--key",
            "1234",
            "--to-lsn",
            &good,
            "--dry-run",
        ],
        &[],
    );
    assert_eq!(c, 0, "{out}{err}");
    assert_eq!(json(&out)["changed"][0]["action"], "restored");
    assert_eq!(json(&out)["commit_lsn"], serde_json::Value::Null);
    let (c, out, err) = amberdb(
        &[
            "revert", "--data", d, "players", "--key", "1234", "--to-lsn", &good,
        ],
        &[],
    );
    assert_eq!(c, 0, "{out}{err}");
    let revert_lsn = json(&out)["commit_lsn"].as_u64().unwrap().to_string();
    let (_, out, _) = amberdb(
        &["get", "--data", d, "players", "1234", "--value-only"],
        &[],
    );
    assert_eq!(json(&out), serde_json::json!({"gold": 10}));
    // Undo the revert: the bad value again.
    let (c, out, err) = amberdb(&["undo", "--data", d, &revert_lsn], &[]);
    assert_eq!(c, 0, "{out}{err}");
    let (_, out, _) = amberdb(
        &["get", "--data", d, "players", "1234", "--value-only"],
        &[],
    );
    assert_eq!(json(&out), serde_json::json!({"gold": 0}));
    // The first commit's document was written since: refused, naming it.
    let (c, _, err) = amberdb(&["undo", "--data", d, &good], &[]);
    assert_eq!(c, 1, "{err}");
    assert!(err.contains("players/1234"), "{err}");
    // Usage: a target is required.
    let (c, _, _) = amberdb(&["revert", "--data", d, "players"], &[]);
    assert_eq!(c, 2);
}

#[test]
fn revert_and_undo_work_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(&dir.path().join("data"), &[], &[]);
    let url = served.url.as_str();
    let (_, out, _) = amberdb(&["put", "--url", url, "players", "a", "1"], &[]);
    let first = json(&out)["lsn"].as_u64().unwrap().to_string();
    amberdb(&["put", "--url", url, "players", "b", "2"], &[]);
    let (c, out, err) = amberdb(
        &["revert", "--url", url, "players", "--to-lsn", &first],
        &[],
    );
    assert_eq!(c, 0, "{out}{err}");
    assert_eq!(json(&out)["changed"][0]["action"], "deleted");
    let (c, out, err) = amberdb(&["undo", "--url", url, &first, "--dry-run"], &[]);
    assert_eq!(c, 0, "{out}{err}");
    assert_eq!(json(&out)["changed"][0]["key"], "a");
    assert!(served.terminate().success());
}

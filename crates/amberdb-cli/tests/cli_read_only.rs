//! Read-only commands never create a database: `get`, `list`, `stats` and `checkpoint` on a
//! path that is not a database fail (exit 1, "no database at ...") and write nothing, and a
//! backup repository is never written into.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

fn amberdb(args: &[&str], data: &Path) -> Output {
    let (cmd, rest) = args.split_first().unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_amberdb"));
    for var in ["AMBERDB_DATA", "AMBERDB_URL", "AMBERDB_TOKEN"] {
        c.env_remove(var);
    }
    c.arg(cmd)
        .arg("--data")
        .arg(data)
        .args(rest)
        .output()
        .unwrap()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walk(dir);
    v.sort();
    v
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.push(p.display().to_string());
        if p.is_dir() {
            out.extend(walk(&p));
        }
    }
    out
}

#[test]
fn read_only_commands_on_a_missing_directory_fail_and_create_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no").join("such").join("dir");
    for args in [
        &["get", "players", "alice"][..],
        &["get", "players", "alice", "--value-only"],
        &["list", "players"],
        &["stats"],
        &["checkpoint"],
    ] {
        let o = amberdb(args, &missing);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("no database at"), "{args:?}: {err}");
        assert!(
            !missing.exists() && !tmp.path().join("no").exists(),
            "{args:?} created it"
        );
    }
}

#[test]
fn checkpoint_into_a_backup_repository_is_refused_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let repo = tmp.path().join("repo");
    let o = amberdb(&["put", "players", "alice", r#"{"hp":1}"#], &db);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new(env!("CARGO_BIN_EXE_amberdb"))
        .args(["backup", "create", "--data"])
        .arg(&db)
        .arg("--repo")
        .arg(&repo)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let before = listing(&repo);
    for args in [
        &["checkpoint"][..],
        &["stats"],
        &["get", "players", "alice"],
        &["list", "players"],
    ] {
        let o = amberdb(args, &repo);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("no database at"), "{args:?}: {err}");
    }
    assert_eq!(listing(&repo), before, "the repository was written into");
    // The real database still reads.
    let o = amberdb(&["get", "players", "alice", "--value-only"], &db);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn list_limit_zero_is_refused_the_same_way_locally_as_against_a_server() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    assert!(amberdb(&["put", "players", "a", "1"], &db).status.success());
    for limit in ["0", "10001"] {
        let o = amberdb(&["list", "players", "--limit", limit], &db);
        assert_eq!(o.status.code(), Some(2), "--limit {limit}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("1..=10000"));
    }
}

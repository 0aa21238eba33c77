//! The backup commands end to end through the real binary, each a separate process as an
//! operator would run them: create, list, verify, prune, restore (dry run, time, LSN), log,
//! detach, and their exit codes.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_amberdb"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn ok(args: &[&str], cwd: &Path) -> String {
    let out = run(args, cwd);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(args: &[&str], cwd: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(args, cwd)).unwrap()
}

#[test]
fn backup_restore_and_log_commands_work_across_separate_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(
        &["put", "--data", "db", "players", "alice", r#"{"hp": 10}"#],
        d,
    );
    let b1 = json(
        &[
            "backup", "create", "--data", "db", "--repo", "repo", "--json",
        ],
        d,
    );
    let lsn1 = b1["lsn"].as_u64().unwrap();
    // Between backups: a change we will want to restore to, then a bad one.
    let good = json(
        &["put", "--data", "db", "players", "alice", r#"{"hp": 20}"#],
        d,
    );
    let good_lsn = good["lsn"].as_u64().unwrap();
    ok(
        &["put", "--data", "db", "players", "alice", r#"{"hp": -999}"#],
        d,
    );
    json(
        &[
            "backup", "create", "--data", "db", "--repo", "repo", "--json",
        ],
        d,
    );

    let list = json(&["backup", "list", "--repo", "repo", "--json"], d);
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["lsn"].as_u64().unwrap(), lsn1);
    assert!(
        ok(&["backup", "verify", "--repo", "repo", "--read-data"], d).contains("ok: no problems")
    );

    // The log shows which commits touched alice, with their LSNs.
    let log = ok(
        &[
            "log",
            "--repo",
            "repo",
            "--collection",
            "players",
            "--key",
            "alice",
            "--json",
        ],
        d,
    );
    let lsns: Vec<u64> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["lsn"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(lsns, vec![1, good_lsn, good_lsn + 1]);

    // Dry run writes nothing; the restore to the good LSN gets hp 20 back.
    let plan = ok(
        &[
            "restore",
            "--repo",
            "repo",
            "--to-lsn",
            &good_lsn.to_string(),
            "--into",
            "asof",
            "--dry-run",
        ],
        d,
    );
    assert!(
        plan.contains("backup:") && plan.contains(&format!("LSN {good_lsn}")),
        "{plan}"
    );
    assert!(!d.join("asof").exists());
    let report = json(
        &[
            "restore",
            "--repo",
            "repo",
            "--to-lsn",
            &good_lsn.to_string(),
            "--into",
            "asof",
            "--json",
        ],
        d,
    );
    assert_eq!(report["lsn"].as_u64().unwrap(), good_lsn);
    assert_eq!(report["verified"], true);
    let v = json(
        &["get", "--data", "asof", "players", "alice", "--value-only"],
        d,
    );
    assert_eq!(v["hp"], 20);
    // --exclusive stops before the target commit.
    json(
        &[
            "restore",
            "--repo",
            "repo",
            "--to-lsn",
            &good_lsn.to_string(),
            "--exclusive",
            "--into",
            "before",
            "--json",
        ],
        d,
    );
    assert_eq!(
        json(
            &[
                "get",
                "--data",
                "before",
                "players",
                "alice",
                "--value-only"
            ],
            d
        )["hp"],
        10
    );
    // By time: the commit time of the good write.
    let t = good["updated_at"].as_str().unwrap();
    json(
        &[
            "restore",
            "--repo",
            "repo",
            "--to-time",
            t,
            "--into",
            "bytime",
            "--json",
        ],
        d,
    );
    assert_eq!(
        json(
            &[
                "get",
                "--data",
                "bytime",
                "players",
                "alice",
                "--value-only"
            ],
            d
        )["hp"],
        20
    );

    // Unreachable targets fail loudly, exit 1, and write nothing.
    let out = run(
        &[
            "restore", "--repo", "repo", "--to-lsn", "999", "--into", "nope",
        ],
        d,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the furthest reachable point is"));
    assert!(!d.join("nope").exists());
    let out = run(
        &[
            "restore",
            "--repo",
            "repo",
            "--to-time",
            "1999-01-01T00:00:00Z",
            "--into",
            "nope",
        ],
        d,
    );
    assert_eq!(out.status.code(), Some(1));
    // Bad input is a usage error.
    assert_eq!(
        run(
            &[
                "restore",
                "--repo",
                "repo",
                "--to-time",
                "yesterday",
                "--into",
                "nope"
            ],
            d
        )
        .status
        .code(),
        Some(2)
    );
    assert_eq!(
        run(&["restore", "--repo", "repo", "--into", "nope"], d)
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        run(&["backup", "prune", "--repo", "repo"], d).status.code(),
        Some(2)
    );

    // Prune: dry run lists reasons, then removes the older backup.
    let plan = ok(
        &[
            "backup",
            "prune",
            "--repo",
            "repo",
            "--keep-last",
            "1",
            "--dry-run",
        ],
        d,
    );
    assert!(
        plan.contains("(newest, last)") && plan.contains("would remove"),
        "{plan}"
    );
    assert_eq!(
        json(&["backup", "list", "--repo", "repo", "--json"], d)
            .as_array()
            .unwrap()
            .len(),
        2
    );
    ok(
        &["backup", "prune", "--repo", "repo", "--keep-last", "1"],
        d,
    );
    assert_eq!(
        json(&["backup", "list", "--repo", "repo", "--json"], d)
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Detach releases the repository; a second detach is an error.
    let stats = json(&["stats", "--data", "db"], d);
    assert_eq!(stats["archive_slots"].as_array().unwrap().len(), 1);
    ok(&["backup", "detach", "--data", "db", "--repo", "repo"], d);
    assert_eq!(
        json(&["stats", "--data", "db"], d)["archive_slots"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        run(&["backup", "detach", "--data", "db", "--repo", "repo"], d)
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn repository_verify_exits_non_zero_and_names_the_damaged_file() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(
        &["put", "--data", "db", "players", "alice", r#"{"hp": 10}"#],
        d,
    );
    let b = json(
        &[
            "backup", "create", "--data", "db", "--repo", "repo", "--json",
        ],
        d,
    );
    let snap = d
        .join("repo/backups")
        .join(b["id"].as_str().unwrap())
        .join("snapshot.ckpt.zst");
    let mut bytes = std::fs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&snap, bytes).unwrap();
    let out = run(&["backup", "verify", "--repo", "repo"], d);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("snapshot.ckpt.zst"));
}

//! Regression tests of the backup commands through the real binary (issue 8 items 13, 14).
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

fn two_backups(d: &Path) -> Vec<String> {
    let mut ids = vec![];
    for v in ["1", "2"] {
        ok(&["put", "--data", "db", "players", "a", v], d);
        let m: serde_json::Value = serde_json::from_str(&ok(
            &[
                "backup", "create", "--data", "db", "--repo", "repo", "--json",
            ],
            d,
        ))
        .unwrap();
        ids.push(m["id"].as_str().unwrap().to_owned());
    }
    ids
}

#[test]
fn backup_list_shows_a_backup_with_a_corrupt_manifest_as_damaged_in_text_and_json() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let ids = two_backups(d);
    std::fs::write(
        d.join("repo/backups").join(&ids[0]).join("manifest.json"),
        b"{ not json",
    )
    .unwrap();
    let text = ok(&["backup", "list", "--repo", "repo"], d);
    let line = text
        .lines()
        .find(|l| l.starts_with(&ids[0]))
        .unwrap_or_else(|| {
            panic!("the damaged backup is not listed:\n{text}");
        });
    assert!(line.contains("DAMAGED"), "{line}");
    let list: serde_json::Value =
        serde_json::from_str(&ok(&["backup", "list", "--repo", "repo", "--json"], d)).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], ids[0].as_str());
    assert_eq!(list[0]["status"], "damaged");
    assert!(list[0]["problem"].as_str().unwrap().contains("damaged"));
    assert_eq!(list[1]["status"], "complete");
    assert_eq!(list[1]["lsn"], 2);
}

#[test]
fn restore_latest_says_which_backup_it_skipped_and_how_far_it_reaches() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let ids = two_backups(d);
    let snap = d
        .join("repo/backups")
        .join(&ids[1])
        .join("snapshot.ckpt.zst");
    let mut b = std::fs::read(&snap).unwrap();
    b[20] ^= 0x40;
    std::fs::write(&snap, b).unwrap();
    let out = ok(&["restore", "--repo", "repo", "--latest", "--into", "t"], d);
    assert!(
        out.contains(&format!("source backup:  {}", ids[0])),
        "{out}"
    );
    assert!(
        out.contains(&format!("skipped:        backup {}", ids[1])) && out.contains("damaged"),
        "{out}"
    );
    assert!(out.contains("--latest reaches LSN 2"), "{out}");
}

#[test]
fn backup_verify_with_the_data_directory_reports_an_archive_cut_short() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    two_backups(d);
    std::fs::remove_dir_all(d.join("repo/wal")).unwrap();
    let out = run(&["backup", "verify", "--repo", "repo", "--data", "db"], d);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("archived through LSN 2"), "{text}");
}

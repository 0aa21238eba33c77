//! Old-format fixtures: `tests/fixtures/v1/` holds a data directory and a backup repository
//! written by the v1 formats (log 1, checkpoint 1, repository 1, manifest 1), and
//! `tests/fixtures/v2/` the same script written by log 2 and checkpoint 2 (the code of
//! `2434d97`, before database and timeline ids), `tests/fixtures/v3/` by log 3 and
//! checkpoint 3 (the code of `c0911c1`, before commit reasons, op kinds and expiries), each generated once by
//! `generate_v1_fixtures` below (run with `--ignored` and the code of that format) and
//! committed. Every later build must open, verify and restore them with exact contents.
//!
//! The fixture's history is `script()`: one commit per step, so step n is LSN n.
//! - data directory: LSNs 1..=24; sealed segments (with seals), a checkpoint at LSN 20 and
//!   log after it (21..=24) in the active segment, an `archive.json` slot.
//! - repository: backups at LSN 6 and LSN 14, archived segments covering 7..=14.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use amberdb::backup::{restore, NoProgress};
use amberdb::{verify_dir, BackupRepo, Db, Options, RestoreTarget};
use serde_json::{json, Value};
use support::{copy_dir, truncate};

/// (collection, key) -> (value, version)
type Model = BTreeMap<(String, String), (Value, u64)>;

enum Step {
    Put(&'static str, String, Value),
    Delete(&'static str, String),
}

/// The fixture's history: step i (0-based) is LSN i + 1.
fn script() -> Vec<Step> {
    let mut s = vec![];
    for i in 0..24u64 {
        let step = match i % 6 {
            0 | 1 => Step::Put(
                "players",
                format!("p{}", i % 4),
                json!({"level": i, "name": format!("player {}", i % 4)}),
            ),
            2 => Step::Put("items", format!("i{}", i % 3), json!([i, "sword"])),
            3 => Step::Put("settings", "global".into(), json!({"round": i})),
            4 if i > 6 => Step::Delete("players", format!("p{}", (i + 1) % 4)),
            _ => Step::Put("items", format!("i{}", (i + 1) % 3), json!(i)),
        };
        s.push(step);
    }
    s
}

/// The state after the first `lsn` steps of the script.
fn model_at(lsn: u64) -> Model {
    let mut m = Model::new();
    let mut versions: BTreeMap<(String, String), u64> = BTreeMap::new();
    for step in script().into_iter().take(lsn as usize) {
        match step {
            Step::Put(c, k, v) => {
                let id = (c.to_string(), k);
                let version = m.get(&id).map_or(0, |(_, v)| *v) + 1;
                versions.insert(id.clone(), version);
                m.insert(id, (v, version));
            }
            Step::Delete(c, k) => {
                assert!(
                    m.remove(&(c.to_string(), k)).is_some(),
                    "script deletes a live key"
                );
            }
        }
    }
    m
}

fn state_of(db: &Db) -> Model {
    db.view()
        .iter_all()
        .map(|(c, d)| {
            (
                (c.to_string(), d.key.to_string()),
                (d.json().unwrap(), d.meta.version),
            )
        })
        .collect()
}

fn fixtures() -> PathBuf {
    fixtures_of("v1")
}

fn fixtures_of(version: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(version)
}

fn fixture_opts() -> Options {
    Options {
        segment_size: 600,
        checkpoint_on_close: false,
        checkpoint_interval: None,
        ..Options::default()
    }
}

fn apply(db: &Db, step: &Step) {
    match step {
        Step::Put(c, k, v) => {
            db.put(c, k, v.clone()).unwrap();
        }
        Step::Delete(c, k) => {
            db.delete(c, k).unwrap();
        }
    }
}

/// Wrote `tests/fixtures/v1/` with the code of `bd9332f` (log format 1). Run once per format
/// version, with `AMBERDB_FIXTURE_OUT=<new dir> cargo test -p amberdb --test
/// old_format_fixtures -- --ignored generate`, and commit the result.
#[test]
#[ignore]
fn generate_v1_fixtures() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, repo_dir) = (tmp.path().join("data"), tmp.path().join("repo"));
    let repo = BackupRepo::open_or_init(&repo_dir).unwrap();
    let db = Db::open_with(&data, fixture_opts()).unwrap();
    let steps = script();
    for (i, step) in steps.iter().enumerate() {
        apply(&db, step);
        let lsn = i as u64 + 1;
        if lsn == 6 || lsn == 14 {
            assert_eq!(db.backup(&repo).unwrap().lsn, lsn);
        }
        if lsn == 20 {
            assert_eq!(db.checkpoint().unwrap().lsn, 20);
        }
    }
    assert_eq!(state_of(&db), model_at(24));
    db.close().unwrap();
    // Committed fixtures are the bytes an old release wrote: never regenerate them with a
    // newer format. A new format gets its own directory (AMBERDB_FIXTURE_OUT).
    let out = std::env::var_os("AMBERDB_FIXTURE_OUT").map_or_else(fixtures, PathBuf::from);
    assert!(
        !out.exists(),
        "{} exists; fixtures of an old format are never rewritten",
        out.display()
    );
    copy_dir(&data, &out.join("data"));
    copy_dir(&repo_dir, &out.join("repo"));
}

#[test]
fn v1_data_directory_opens_verifies_and_keeps_appending() {
    data_directory_opens_verifies_and_keeps_appending("v1");
}

#[test]
fn v2_data_directory_opens_verifies_and_keeps_appending() {
    data_directory_opens_verifies_and_keeps_appending("v2");
}

#[test]
fn v3_data_directory_opens_verifies_and_keeps_appending() {
    data_directory_opens_verifies_and_keeps_appending("v3");
}

fn data_directory_opens_verifies_and_keeps_appending(version: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_dir(&fixtures_of(version).join("data"), &data);
    let report = verify_dir(&data).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    let db = Db::open_with(&data, fixture_opts()).unwrap();
    let r = db.recovery_report().clone();
    assert_eq!((r.checkpoint_lsn, r.commits_replayed, r.lsn), (20, 4, 24));
    assert!(r.torn_tail.is_none() && r.auto.is_none());
    assert_eq!(state_of(&db), model_at(24));
    // A v1 directory keeps working: new commits after the old ones, across a reopen.
    db.put("players", "new", json!("after")).unwrap();
    db.close().unwrap();
    let db = Db::open_with(&data, fixture_opts()).unwrap();
    let mut want = model_at(24);
    want.insert(("players".into(), "new".into()), (json!("after"), 1));
    assert_eq!(state_of(&db), want);
    assert_eq!(db.recovery_report().lsn, 25);
    db.close().unwrap();
    assert!(verify_dir(&data).unwrap().is_clean());
}

#[test]
fn v1_repository_restores_to_latest_to_a_backup_and_to_an_lsn() {
    repository_restores_to_latest_to_a_backup_and_to_an_lsn("v1");
}

#[test]
fn v2_repository_restores_to_latest_to_a_backup_and_to_an_lsn() {
    repository_restores_to_latest_to_a_backup_and_to_an_lsn("v2");
}

#[test]
fn v3_repository_restores_to_latest_to_a_backup_and_to_an_lsn() {
    repository_restores_to_latest_to_a_backup_and_to_an_lsn("v3");
}

fn repository_restores_to_latest_to_a_backup_and_to_an_lsn(version: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    copy_dir(&fixtures_of(version).join("repo"), &repo_dir);
    let repo = BackupRepo::open(&repo_dir).unwrap();
    let mut lsns: Vec<u64> = repo.list().unwrap().iter().map(|b| b.lsn).collect();
    lsns.sort_unstable();
    assert_eq!(lsns, vec![6, 14]);
    for (target, lsn) in [
        (RestoreTarget::Latest, 14),
        (RestoreTarget::Lsn(10), 10),
        (RestoreTarget::Lsn(6), 6),
        (RestoreTarget::Lsn(13), 13),
    ] {
        let into = tmp.path().join(format!("restored-{lsn}"));
        let report = restore(&repo, &target, false, &into, &NoProgress).unwrap();
        assert_eq!(report.lsn, lsn, "{target}");
        assert!(report.verified);
        let db = Db::open(&into).unwrap();
        assert_eq!(state_of(&db), model_at(lsn), "{target}");
        db.close().unwrap();
    }
}

#[test]
fn v1_data_directory_whose_active_segment_is_empty_reopens_twice_and_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_dir(&fixtures().join("data"), &data);
    // Make the v1 active segment empty: its commits (21..=24) move into the checkpoint's
    // past by truncating to the header and dropping LSNs above 20 from the model.
    let active = data.join("log/00000000000000000021.log");
    truncate(&active, 32);
    for round in 0..2 {
        let db = Db::open_with(&data, fixture_opts()).unwrap();
        assert_eq!(db.recovery_report().lsn, 20 + round, "round {round}");
        db.put("players", &format!("r{round}"), json!(round))
            .unwrap();
        db.close().unwrap();
        let report = verify_dir(&data).unwrap();
        assert!(report.is_clean(), "round {round}: {:?}", report.problems);
    }
}

//! The admin reports an operator reads after something went wrong: `GET /v1/admin/status`
//! carries the recovery report of the last open (after a real automatic recovery: where the
//! state came from, the backup used, the LSN reached, the commits replayed, the documents per
//! collection and the LSN range lost), and `GET /v1/admin/backups` carries every backup's
//! files with checksums that match the files on disk, in the same shape as
//! `amberdb backup list --json`.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use amberdb::{BackupRepo, Db, Options};
use common::TestServer;
use serde_json::json;
use sha2::{Digest, Sha256};

fn flip(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset] ^= 0x55;
    std::fs::write(path, bytes).unwrap();
}

/// Documents per collection, as the database holds them now.
fn counts(db: &Db) -> BTreeMap<String, u64> {
    db.stats()
        .collections
        .into_iter()
        .filter(|c| c.documents > 0)
        .map(|c| (c.name, c.documents))
        .collect()
}

#[test]
fn after_an_automatic_recovery_the_status_carries_the_recovery_report() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, repo_dir) = (tmp.path().join("data"), tmp.path().join("repo"));
    let repo = BackupRepo::open_or_init(&repo_dir).unwrap();
    let opts = Options {
        segment_size: 2048,
        checkpoint_on_close: false,
        // No history window: archived segments leave the data directory after the
        // checkpoint, so recovery must come from the backup.
        history_retention: std::time::Duration::ZERO,
        ..Default::default()
    };
    let db = Db::open_with(&data, opts).unwrap();
    // The documents per collection after every commit (index = LSN).
    let mut history = vec![BTreeMap::new()];
    let mut commit = |db: &Db, i: u32| {
        let (collection, key) = if i.is_multiple_of(3) {
            ("parties", format!("party{}", i % 7))
        } else {
            ("players", format!("p{}", i % 17))
        };
        db.put(collection, &key, json!({"i": i, "pad": "x".repeat(100)}))
            .unwrap();
        history.push(counts(db));
    };
    for i in 0..60 {
        commit(&db, i);
    }
    let backup = db.backup(&repo).unwrap();
    for i in 60..200 {
        commit(&db, i);
    }
    let archived = db.archive(&repo).unwrap();
    let last = db.view().lsn();
    assert!(
        archived > backup.lsn && archived < last,
        "{archived} {last}"
    );
    db.checkpoint().unwrap();
    db.close().unwrap();
    // Damage the only checkpoint and the first local segment after the archived ones: only
    // the backup, its archived log and part of the local log remain.
    let ckpt = std::fs::read_dir(data.join("checkpoints"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    flip(&ckpt, 100);
    let seg = data.join("log").join(format!("{:020}.log", archived + 1));
    flip(&seg, 700);

    let s = TestServer::start_in(&data, |c| {
        c.backup_repo = Some(repo_dir.clone());
        c.recovery_auto = true;
    });
    let st = s.get("/v1/admin/status");
    assert_eq!(st.status, 200, "{}", st.body);
    let st = st.json();
    let rec = &st["recovery"];
    let auto = &rec["auto"];
    assert!(auto.is_object(), "no automatic recovery reported: {st}");
    let reached = auto["lsn"].as_u64().unwrap();
    assert!(
        reached >= archived && reached < last,
        "reached {reached}: {auto}"
    );
    assert_eq!(st["lsn"], reached, "{st}");
    assert_eq!(rec["lsn"], reached, "{rec}");
    assert_eq!(auto["backup"], backup.id.as_str(), "{auto}");
    assert!(
        auto["source"].as_str().unwrap().contains(&backup.id),
        "{auto}"
    );
    assert_eq!(auto["commits_replayed"], reached - backup.lsn, "{auto}");
    assert_eq!(auto["lost"], json!([reached + 1, last]), "{auto}");
    let expected = &history[reached as usize];
    assert_eq!(auto["documents"], expected.values().sum::<u64>(), "{auto}");
    assert_eq!(rec["documents"], json!(expected), "{rec}");
    assert!(
        auto["damage"].as_str().unwrap().contains("checkpoint")
            || auto["damage"].as_str().unwrap().contains(".log"),
        "{auto}"
    );
    let quarantined: Vec<&str> = auto["quarantined_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    let named = |p: &Path| p.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(
        quarantined.iter().any(|f| f.ends_with(&named(&ckpt))),
        "{quarantined:?}"
    );
    assert!(
        quarantined.iter().any(|f| f.ends_with(&named(&seg))),
        "{quarantined:?}"
    );
    s.stop().unwrap();

    // The report is of the last open: a clean restart replaces it.
    let s = TestServer::start_in(&data, |c| c.backup_repo = Some(repo_dir.clone()));
    let rec = s.get("/v1/admin/status").json()["recovery"].clone();
    assert!(rec["auto"].is_null(), "{rec}");
    assert_eq!(rec["lsn"], reached, "{rec}");
    assert_eq!(rec["documents"], json!(expected), "{rec}");
    assert!(rec["checkpoint"].is_string(), "{rec}");
    s.stop().unwrap();
}

#[test]
fn a_restart_reports_the_commits_it_replayed_and_a_torn_tail_it_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let db = Db::open_with(
        &data,
        Options {
            checkpoint_on_close: false,
            ..Default::default()
        },
    )
    .unwrap();
    for i in 0..5 {
        db.put("players", &format!("p{i}"), json!({"i": i}))
            .unwrap();
    }
    db.close().unwrap();
    // Half a frame at the end of the log: what a crash mid-write leaves.
    let seg = std::fs::read_dir(data.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .max()
        .unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    std::io::Write::write_all(&mut f, &[7u8; 11]).unwrap();
    drop(f);

    let s = TestServer::start_in(&data, |_| {});
    let rec = s.get("/v1/admin/status").json()["recovery"].clone();
    assert_eq!(rec["commits_replayed"], 5, "{rec}");
    assert_eq!(rec["lsn"], 5, "{rec}");
    assert_eq!(rec["checkpoint_lsn"], 0, "{rec}");
    assert_eq!(rec["documents"], json!({"players": 5}), "{rec}");
    assert_eq!(rec["torn_tail"]["offset"], len, "{rec}");
    assert_eq!(rec["torn_tail"]["bytes"], 11, "{rec}");
    assert!(rec["auto"].is_null(), "{rec}");
    s.stop().unwrap();
}

fn sha256_hex(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn the_backup_listing_carries_file_checksums_that_match_the_files_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let s = TestServer::start_in(&tmp.path().join("data"), |c| {
        c.backup_repo = Some(repo.clone())
    });
    for i in 0..20 {
        let r = s.put_json(&format!("/v1/collections/players/docs/p{i}"), "{\"hp\": 1}");
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let created = s.req("POST", "/v1/admin/backups", &[], None);
    assert_eq!(created.status, 201, "{}", created.body);
    let created = created.json();
    let id = created["id"].as_str().unwrap().to_owned();

    let list = s.get("/v1/admin/backups").json();
    let entries = list["backups"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{list}");
    let b = &entries[0];
    // One serializer: the listing entry is what the POST returned.
    assert_eq!(b, &created);
    assert_eq!(b["status"], "complete", "{b}");
    let files = b["files"].as_array().unwrap();
    assert!(!files.is_empty(), "{b}");
    let mut stored_total = 0;
    for f in files {
        let on_disk = repo
            .join("backups")
            .join(&id)
            .join(f["name"].as_str().unwrap());
        assert_eq!(f["stored_sha256"], sha256_hex(&on_disk), "{f}");
        assert_eq!(
            f["stored_size"],
            std::fs::metadata(&on_disk).unwrap().len(),
            "{f}"
        );
        assert_eq!(f["plain_sha256"].as_str().unwrap().len(), 64, "{f}");
        stored_total += f["stored_size"].as_u64().unwrap();
    }
    assert!(
        files.iter().any(|f| f["name"] == "snapshot.ckpt.zst"),
        "{b}"
    );
    assert_eq!(b["stored_bytes"], stored_total, "{b}");

    // The same entries the engine lists, file for file.
    let manifest = BackupRepo::open(&repo).unwrap().manifest(&id).unwrap();
    for (f, m) in files.iter().zip(&manifest.files) {
        assert_eq!(f["name"], m.name.as_str());
        assert_eq!(f["plain_sha256"], m.plain_sha256.as_str());
        assert_eq!(f["stored_sha256"], m.stored_sha256.as_str());
    }

    // A damaged manifest is listed with what is wrong, as `backup list --json` does.
    std::fs::write(
        repo.join("backups").join(&id).join("manifest.json"),
        b"{ nope",
    )
    .unwrap();
    let list = s.get("/v1/admin/backups").json();
    let b = &list["backups"][0];
    assert_eq!(b["id"], id.as_str(), "{list}");
    assert_eq!(b["status"], "damaged", "{list}");
    assert!(b["problem"].is_string(), "{list}");
    s.stop().unwrap();
}

#[test]
fn the_openapi_document_describes_the_recovery_report_and_backup_files() {
    let s = TestServer::start(|_| {});
    let doc = s.get("/openapi.json").json();
    let schemas = &doc["components"]["schemas"];
    assert!(
        schemas["StatusResponse"]["properties"]["recovery"].is_object(),
        "{}",
        schemas["StatusResponse"]
    );
    for (schema, field) in [
        ("RecoveryBody", "documents"),
        ("RecoveryBody", "auto"),
        ("AutoRecoveryBody", "backup"),
        ("AutoRecoveryBody", "lost"),
        ("BackupBody", "files"),
        ("BackupBody", "status"),
        ("BackupFileBody", "stored_sha256"),
    ] {
        assert!(
            schemas[schema]["properties"][field].is_object(),
            "{schema}.{field}: {}",
            schemas[schema]
        );
    }
    s.stop().unwrap();
}

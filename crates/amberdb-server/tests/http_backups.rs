//! Backups through the admin API and the config: list, create, verify (clean and damaged),
//! 404 without a repository, the schedule and retention from config, the status and metrics
//! that report them, and a restore of what the server backed up.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::TestServer;

#[test]
fn without_a_repository_the_backup_endpoints_say_so() {
    let s = TestServer::start(|_| {});
    let r = s.get("/v1/admin/backups");
    assert_eq!(
        (r.status, r.code().as_str()),
        (404, "backup_repo_not_configured")
    );
    let r = s.req("POST", "/v1/admin/backups", &[], None);
    assert_eq!(
        (r.status, r.code().as_str()),
        (404, "backup_repo_not_configured")
    );
    assert!(s.get("/v1/admin/status").json()["last_backup"].is_null());
}

#[test]
fn create_list_verify_and_restore_a_backup_taken_through_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let s = TestServer::start_in(&tmp.path().join("data"), |c| {
        c.backup_repo = Some(repo.clone())
    });
    for i in 0..30 {
        assert_eq!(
            s.put_json(&format!("/v1/collections/players/docs/p{i}"), "{\"hp\": 1}")
                .status,
            201
        );
    }
    let r = s.req("POST", "/v1/admin/backups", &[], None);
    assert_eq!(r.status, 201, "{}", r.body);
    let b = r.json();
    let id = b["id"].as_str().unwrap().to_owned();
    assert_eq!(b["lsn"], 30);
    assert_eq!(b["documents"]["players"], 30);

    let list = s.get("/v1/admin/backups").json();
    assert_eq!(list["backups"].as_array().unwrap().len(), 1);
    assert_eq!(list["backups"][0]["id"], id.as_str());
    assert_eq!(list["archived_lsn_range"], serde_json::json!([1, 30]));
    assert_eq!(list["status"]["last_backup_id"], id.as_str());

    let st = s.get("/v1/admin/status").json();
    assert_eq!(st["last_backup"]["last_backup_lsn"], 30);
    let metrics = s.get("/metrics").body;
    assert!(
        metrics.contains("amberdb_last_backup_age_seconds "),
        "{metrics}"
    );

    let v = s.req(
        "POST",
        &format!("/v1/admin/backups/{id}/verify?read_data=true"),
        &[],
        None,
    );
    assert_eq!(v.status, 200, "{}", v.body);
    assert_eq!(v.json()["clean"], true, "{}", v.body);
    assert!(v.json()["documents_checked"].as_u64().unwrap() >= 30);
    let r = s.req("POST", "/v1/admin/backups/nope/verify", &[], None);
    assert_eq!((r.status, r.code().as_str()), (404, "backup_not_found"));

    // Damage the snapshot: verify reports it (200 with clean=false and the file named).
    let snap = repo.join("backups").join(&id).join("snapshot.ckpt.zst");
    let mut bytes = std::fs::read(&snap).unwrap();
    bytes[40] ^= 1;
    std::fs::write(&snap, &bytes).unwrap();
    let v = s
        .req("POST", &format!("/v1/admin/backups/{id}/verify"), &[], None)
        .json();
    assert_eq!(v["clean"], false);
    assert!(
        v["problems"][0]
            .as_str()
            .unwrap()
            .contains("snapshot.ckpt.zst"),
        "{v}"
    );
    bytes[40] ^= 1;
    std::fs::write(&snap, &bytes).unwrap();
    s.stop().unwrap();

    // What the server backed up restores offline.
    let repo_h = amberdb::BackupRepo::open(&repo).unwrap();
    let into = tmp.path().join("restored");
    amberdb::backup::restore(
        &repo_h,
        &amberdb::RestoreTarget::Backup(id),
        false,
        &into,
        &amberdb::backup::NoProgress,
    )
    .unwrap();
    assert_eq!(amberdb::Db::open(&into).unwrap().count("players"), 30);
}

#[test]
fn scheduled_backups_and_retention_come_from_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let config = amberdb_server::Config::load(
        None,
        vec![],
        &[
            ("listen".into(), "127.0.0.1:0".into()),
            ("data".into(), tmp.path().join("data").display().to_string()),
            ("backup.repo".into(), repo.display().to_string()),
            ("backup.interval_s".into(), "1".into()),
            ("backup.keep_last".into(), "2".into()),
        ],
    )
    .unwrap();
    let opts = config.engine_options();
    let schedule = opts.backup_schedule.clone().expect("schedule from config");
    assert_eq!(schedule.interval, Duration::from_secs(1));
    assert_eq!(schedule.retention.unwrap().keep_last, Some(2));
    assert_eq!(opts.archive_to.as_deref(), Some(repo.as_path()));

    let s = TestServer::start_in(&tmp.path().join("data"), move |c| *c = config);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut i = 0;
    loop {
        s.put_json(&format!("/v1/collections/players/docs/p{i}"), "{}");
        i += 1;
        let st = s.get("/v1/admin/status").json();
        if st["last_backup"]["backups"].as_u64().unwrap_or(0) >= 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled backups: {st}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let list = s.get("/v1/admin/backups").json();
    assert!(
        list["backups"].as_array().unwrap().len() <= 3,
        "retention not applied: {list}"
    );
}

#[test]
fn config_refuses_a_schedule_or_auto_recovery_without_a_repository() {
    for (key, value) in [("backup.interval_s", "60"), ("recovery.mode", "auto")] {
        let err =
            amberdb_server::Config::load(None, vec![], &[(key.into(), value.into())]).unwrap_err();
        assert_eq!(err.key, key);
        assert!(err.reason.contains("backup.repo"), "{err}");
    }
    let err =
        amberdb_server::Config::load(None, vec![], &[("recovery.mode".into(), "maybe".into())])
            .unwrap_err();
    assert!(err.reason.contains("refuse or auto"), "{err}");
}

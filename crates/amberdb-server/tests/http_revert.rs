//! `POST /v1/revert`, `POST /v1/undo`, `POST /v1/admin/restore` and
//! `POST /v1/collections/{c}/docs`: the reports, dry runs, 409 naming each document, 410
//! outside the history window, generated keys, and the scopes each needs.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use amberdb::clock::ManualClock;

use common::{token, Resp, TestServer};
use serde_json::json;

/// A server whose engine keeps `retention` of history and commits on `clock`. The server
/// comes first in the pair so it stops before its directory is removed.
fn start_on(
    clock: &ManualClock,
    config: impl FnOnce(&mut amberdb_server::Config),
    retention: Duration,
) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock.clone();
    let s = TestServer::start_with(&dir.path().join("data"), config, move |o| {
        o.history_retention = retention;
        o.clock = Arc::new(clock);
    });
    (s, dir)
}

fn start() -> (TestServer, tempfile::TempDir) {
    start_on(&ManualClock::new(T0), |_| {}, DAY)
}

const T0: u64 = 1_790_000_000_000_000;
const DAY: Duration = Duration::from_secs(86_400);

fn post(s: &TestServer, path: &str, body: serde_json::Value) -> Resp {
    s.req(
        "POST",
        path,
        &[("content-type", "application/json")],
        Some(body.to_string().as_bytes()),
    )
}

fn lsn_of(r: &Resp) -> u64 {
    r.json()["lsn"].as_u64().unwrap()
}

#[test]
fn put_player_1234_back_as_of_a_time_in_one_request() {
    let clock = ManualClock::new(T0);
    let (s, _dir) = start_on(&clock, |_| {}, DAY);
    // 02:39: the good state of 1234; 02:41: the bad deploy.
    clock.set(T0 + 39 * 60_000_000);
    s.put_json(
        "/v1/collections/players/docs/1234",
        r#"{"inventory": ["sword"]}"#,
    );
    let last_before = s.put_json(
        "/v1/collections/players/docs/99",
        r#"{"inventory": ["bow"]}"#,
    );
    let at = amberdb::format_micros(T0 + 40 * 60_000_000);
    clock.set(T0 + 41 * 60_000_000);
    s.put_json("/v1/collections/players/docs/1234", r#"{"inventory": []}"#);
    s.put_json("/v1/collections/players/docs/99", r#"{"inventory": []}"#);
    let dry = post(
        &s,
        "/v1/revert",
        json!({"collection": "players", "key": "1234", "to_time": at, "dry_run": true}),
    );
    assert_eq!(dry.status, 200, "{}", dry.body);
    assert_eq!(dry.json()["commit_lsn"], serde_json::Value::Null);
    assert_eq!(
        dry.json()["changed"],
        json!([{"collection": "players", "key": "1234", "version_before": 2, "version_after": 3, "action": "restored"}])
    );
    assert_eq!(
        s.get("/v1/collections/players/docs/1234").json(),
        json!({"inventory": []})
    );
    let r = post(
        &s,
        "/v1/revert",
        json!({"collection": "players", "key": "1234", "to_time": at}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["reason"], "revert");
    assert_eq!(v["target_lsn"], lsn_of(&last_before));
    assert!(v["commit_lsn"].as_u64().is_some());
    assert_eq!(v["changed"][0]["version_after"], 3);
    assert_eq!(
        s.get("/v1/collections/players/docs/1234").json(),
        json!({"inventory": ["sword"]})
    );
    // Everyone else keeps their current state.
    assert_eq!(
        s.get("/v1/collections/players/docs/99").json(),
        json!({"inventory": []})
    );
    // Again: nothing differs now, a no-op with an empty list.
    let again = post(
        &s,
        "/v1/revert",
        json!({"collection": "players", "key": "1234", "to_time": at}),
    );
    assert_eq!(again.json()["changed"], json!([]));
    assert_eq!(again.json()["commit_lsn"], serde_json::Value::Null);
}

#[test]
fn revert_of_a_prefix_deletes_what_did_not_exist_and_recreates_what_did() {
    let (s, _dir) = start();
    s.put_json("/v1/collections/inv/docs/p1-a", "1");
    let target = lsn_of(&s.put_json("/v1/collections/inv/docs/p1-b", "2"));
    s.req("DELETE", "/v1/collections/inv/docs/p1-a", &[], None);
    s.put_json("/v1/collections/inv/docs/p1-c", "3");
    s.put_json("/v1/collections/inv/docs/p2-a", "4");
    let r = post(
        &s,
        "/v1/revert",
        json!({"collection": "inv", "prefix": "p1-", "to_lsn": target}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let actions: Vec<(String, String)> = r.json()["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["key"].as_str().unwrap().into(),
                c["action"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        vec![
            ("p1-a".into(), "recreated".into()),
            ("p1-c".into(), "deleted".into())
        ]
    );
    assert_eq!(s.get("/v1/collections/inv/docs/p1-a").json(), json!(1));
    assert_eq!(s.get("/v1/collections/inv/docs/p1-c").status, 404);
    assert_eq!(s.get("/v1/collections/inv/docs/p2-a").json(), json!(4));
}

#[test]
fn revert_requests_need_exactly_one_target_and_a_sane_scope() {
    let (s, _dir) = start();
    s.put_json("/v1/collections/c/docs/k", "1");
    for (body, code) in [
        (json!({"collection": "c"}), "invalid_target"),
        (
            json!({"collection": "c", "to_lsn": 1, "to_time": "2026-01-01T00:00:00Z"}),
            "invalid_target",
        ),
        (
            json!({"collection": "c", "to_time": "yesterday"}),
            "invalid_time",
        ),
        (json!({"key": "k", "to_lsn": 1}), "invalid_scope"),
        (
            json!({"collection": "c", "key": "k", "prefix": "k", "to_lsn": 1}),
            "invalid_scope",
        ),
        (
            json!({"collection": "C!", "to_lsn": 1}),
            "invalid_collection",
        ),
        (
            json!({"collection": "c", "to_lsn": 1, "bogus": 1}),
            "invalid_request",
        ),
    ] {
        let r = post(&s, "/v1/revert", body.clone());
        assert_eq!(
            (r.status, r.code()),
            (400, code.to_string()),
            "{body}: {}",
            r.body
        );
    }
}

#[test]
fn undo_restores_the_state_before_a_commit_and_409_names_documents_written_since() {
    let (s, _dir) = start();
    s.put_json("/v1/collections/players/docs/a", r#"{"gold": 1}"#);
    s.put_json("/v1/collections/players/docs/b", r#"{"gold": 2}"#);
    // The "admin transaction" to undo: touches a and b.
    let t = post(
        &s,
        "/v1/txn",
        json!({"ops": [
            {"op": "put", "collection": "players", "key": "a", "value": {"gold": 0}},
            {"op": "delete", "collection": "players", "key": "b"},
        ]}),
    );
    let bad = t.json()["lsn"].as_u64().unwrap();
    // Dry run first.
    let dry = post(&s, "/v1/undo", json!({"lsn": bad, "dry_run": true}));
    assert_eq!(dry.status, 200, "{}", dry.body);
    assert_eq!(dry.json()["changed"].as_array().unwrap().len(), 2);
    assert_eq!(
        s.get("/v1/collections/players/docs/a").json(),
        json!({"gold": 0})
    );
    // Someone writes a since: refused, naming it with its versions.
    s.put_json("/v1/collections/players/docs/a", r#"{"gold": 7}"#);
    let r = post(&s, "/v1/undo", json!({"lsn": bad}));
    assert_eq!(
        (r.status, r.code()),
        (409, "conflict".to_string()),
        "{}",
        r.body
    );
    let conflicts = r.json()["error"]["details"]["conflicts"].clone();
    assert_eq!(conflicts.as_array().unwrap().len(), 1);
    assert_eq!(conflicts[0]["key"], "a");
    assert_eq!(
        (
            conflicts[0]["expected"].clone(),
            conflicts[0]["actual"].clone()
        ),
        (json!(2), json!(3))
    );
    // Forced: both go back to their state before the commit.
    let f = post(&s, "/v1/undo", json!({"lsn": bad, "force": true}));
    assert_eq!(f.status, 200, "{}", f.body);
    assert_eq!(f.json()["reason"], "undo");
    assert_eq!(f.json()["target_lsn"], bad);
    assert_eq!(
        s.get("/v1/collections/players/docs/a").json(),
        json!({"gold": 1})
    );
    assert_eq!(
        s.get("/v1/collections/players/docs/b").json(),
        json!({"gold": 2})
    );
    // An LSN that is no commit is a 400.
    let r = post(&s, "/v1/undo", json!({"lsn": 10_000}));
    assert_eq!(r.status, 400, "{}", r.body);
}

#[test]
fn targets_older_than_the_retained_log_answer_410_history_lost() {
    let (s, _dir) = start_on(
        &ManualClock::new(T0),
        |c| c.segment_size = 4096,
        Duration::ZERO,
    );
    for i in 0..100 {
        s.put_json(
            &format!("/v1/collections/c/docs/k{i}"),
            &format!(r#"{{"pad": "{}"}}"#, "x".repeat(100)),
        );
    }
    let c = s.req("POST", "/v1/admin/checkpoint", &[], None);
    assert_eq!(c.status, 200, "{}", c.body);
    let r = post(&s, "/v1/revert", json!({"collection": "c", "to_lsn": 1}));
    assert_eq!(
        (r.status, r.code()),
        (410, "history_lost".to_string()),
        "{}",
        r.body
    );
    assert!(
        r.json()["error"]["details"]["retained_from_lsn"]
            .as_u64()
            .unwrap()
            > 2
    );
    let u = post(&s, "/v1/undo", json!({"lsn": 1}));
    assert_eq!(
        (u.status, u.code()),
        (410, "history_lost".to_string()),
        "{}",
        u.body
    );
    // A restore outside the window needs the backup repository to restore from.
    let x = post(&s, "/v1/admin/restore", json!({"to_lsn": 1}));
    assert_eq!(
        (x.status, x.code()),
        (404, "backup_repo_not_configured".to_string()),
        "{}",
        x.body
    );
    assert_eq!(s.get("/v1/collections/c/docs/k99").status, 200);
}

fn events_of(s: &TestServer, kind: &str) -> Vec<serde_json::Value> {
    s.get("/v1/admin/events").json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .cloned()
        .collect()
}

#[test]
fn a_restore_outside_the_window_is_restored_from_the_repository_and_swapped_in() {
    let repo = tempfile::tempdir().unwrap();
    let repo_path = repo.path().join("repo");
    let (s, dir) = start_on(
        &ManualClock::new(T0),
        move |c| {
            c.backup_repo = Some(repo_path);
            c.segment_size = 4096;
        },
        Duration::ZERO,
    );
    for i in 0..60 {
        s.put_json(
            &format!("/v1/collections/c/docs/k{i}"),
            &format!(r#"{{"v": {i}, "pad": "{}"}}"#, "x".repeat(100)),
        );
    }
    let b = s.req("POST", "/v1/admin/backups", &[], None);
    assert_eq!(b.status, 201, "{}", b.body);
    let backup_lsn = b.json()["lsn"].as_u64().unwrap();
    s.put_json("/v1/collections/c/docs/k0", r#"{"v": "changed"}"#);
    for i in 0..40 {
        s.put_json(
            &format!("/v1/collections/after/docs/a{i}"),
            &format!(r#"{{"pad": "{}"}}"#, "y".repeat(100)),
        );
    }
    let c = s.req("POST", "/v1/admin/checkpoint", &[], None);
    assert_eq!(c.status, 200, "{}", c.body);
    // The backup's LSN is before the retained log now: only the repository has it.
    let h = s.get("/v1/collections/c/docs/k0?as_of_lsn=1");
    assert_eq!(h.status, 410, "{}", h.body);

    let dry = post(
        &s,
        "/v1/admin/restore",
        json!({"to_lsn": backup_lsn, "dry_run": true}),
    );
    assert_eq!(dry.status, 200, "{}", dry.body);
    assert_eq!(
        (dry.json()["mode"].clone(), dry.json()["dry_run"].clone()),
        (json!("swap"), json!(true))
    );
    assert_eq!(s.get("/v1/collections/after/docs/a0").status, 200);

    let r = post(&s, "/v1/admin/restore", json!({"to_lsn": backup_lsn}));
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(j["mode"], "swap");
    assert_eq!(j["reason"], "restore");
    assert_eq!(j["target_lsn"], backup_lsn);
    assert_eq!(j["restore"]["lsn"], backup_lsn);
    assert_eq!(j["restore"]["verified"], true);
    let kept = std::path::PathBuf::from(j["replaced_kept_at"].as_str().unwrap());
    assert!(kept.is_dir());
    // The server serves the restored database: the state of the backup, writable.
    assert_eq!(s.get("/v1/collections/c/docs/k0").json()["v"], 0);
    assert_eq!(s.get("/v1/collections/after/docs/a0").status, 404);
    let w = s.put_json("/v1/collections/c/docs/new", "{}");
    assert_eq!((w.status, lsn_of(&w)), (201, backup_lsn + 1), "{}", w.body);
    let restored = events_of(&s, "backup_restored");
    assert_eq!(restored.len(), 1, "{restored:?}");
    assert_eq!(restored[0]["details"]["mode"], "swap");
    assert_eq!(restored[0]["details"]["report"]["lsn"], backup_lsn);
    s.stop().unwrap();
    // The replaced database is kept, complete, beside the data directory.
    let old = amberdb::Db::open(&kept).unwrap();
    assert!(old.get("after", "a0").is_some());
    assert!(old.get("c", "new").is_none());
    old.close().unwrap();
    let now = amberdb::Db::open(dir.path().join("data")).unwrap();
    assert!(now.get("c", "new").is_some());
    now.close().unwrap();
}

#[test]
fn admin_restore_to_an_lsn_or_a_backup_is_one_restore_transaction() {
    let repo = tempfile::tempdir().unwrap();
    let repo_path = repo.path().join("repo");
    let (s, _dir) = start_on(
        &ManualClock::new(T0),
        move |c| c.backup_repo = Some(repo_path),
        DAY,
    );
    s.put_json("/v1/collections/a/docs/1", "1");
    let target = lsn_of(&s.put_json("/v1/collections/b/docs/1", "2"));
    let b = s.req("POST", "/v1/admin/backups", &[], None);
    assert_eq!(b.status, 201, "{}", b.body);
    let backup_id = b.json()["id"].as_str().unwrap().to_owned();
    s.put_json("/v1/collections/a/docs/1", "10");
    s.put_json("/v1/collections/c/docs/1", "30");
    let r = post(&s, "/v1/admin/restore", json!({"to_lsn": target}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["reason"], "restore");
    assert_eq!(r.json()["mode"], "live");
    assert_eq!(r.json()["changed"].as_array().unwrap().len(), 2);
    // A live restore is a system event too.
    let restored = events_of(&s, "backup_restored");
    assert_eq!(restored.len(), 1, "{restored:?}");
    assert_eq!(restored[0]["details"]["mode"], "live");
    assert_eq!(restored[0]["details"]["target_lsn"], target);
    assert_eq!(s.get("/v1/collections/a/docs/1").json(), json!(1));
    assert_eq!(s.get("/v1/collections/c/docs/1").status, 404);
    // Change again, then restore by backup id.
    s.put_json("/v1/collections/b/docs/1", "20");
    let r = post(&s, "/v1/admin/restore", json!({"backup_id": backup_id}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["backup_id"], backup_id.as_str());
    assert_eq!(r.json()["target_lsn"], target);
    assert_eq!(s.get("/v1/collections/b/docs/1").json(), json!(2));
    let missing = post(
        &s,
        "/v1/admin/restore",
        json!({"backup_id": "20260101T000000Z-1"}),
    );
    assert_eq!(missing.status, 404, "{}", missing.body);
    let both = post(
        &s,
        "/v1/admin/restore",
        json!({"backup_id": backup_id, "to_lsn": 1}),
    );
    assert_eq!(
        (both.status, both.code()),
        (400, "invalid_target".to_string())
    );
}

#[test]
fn post_to_a_collection_creates_under_a_generated_time_ordered_key() {
    let (s, _dir) = start();
    let mut keys = vec![];
    for i in 0..5 {
        let r = s.req(
            "POST",
            "/v1/collections/events/docs",
            &[
                ("content-type", "application/json"),
                ("amber-schema-version", "2"),
            ],
            Some(format!(r#"{{"n": {i}}}"#).as_bytes()),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        let key = r.json()["key"].as_str().unwrap().to_owned();
        assert_eq!(r.json()["version"], 1);
        assert_eq!(r.json()["schema_version"], 2);
        assert_eq!(
            r.header("location").unwrap(),
            format!("/v1/collections/events/docs/{key}")
        );
        // A UUIDv7: 36 characters, version nibble 7.
        assert_eq!((key.len(), &key[14..15]), (36, "7"), "{key}");
        assert_eq!(
            s.get(&format!("/v1/collections/events/docs/{key}")).json(),
            json!({"n": i})
        );
        keys.push(key);
    }
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(sorted, keys, "generated keys sort in creation order");
    let bad = s.req(
        "POST",
        "/v1/collections/events/docs",
        &[("content-type", "application/json")],
        Some(b"{"),
    );
    assert_eq!(bad.status, 400);
    let text = s.req(
        "POST",
        "/v1/collections/events/docs",
        &[("content-type", "text/plain")],
        Some(b"1"),
    );
    assert_eq!(text.status, 415);
}

#[test]
fn revert_and_undo_need_write_scope_on_what_they_touch_and_whole_database_needs_admin() {
    let (reader, r) = token("reader", &["read:*"]);
    let (writer, w) = token("writer", &["read:*", "write:players"]);
    let (admin, a) = token("ops", &["admin"]);
    let (s, _dir) = start_on(
        &ManualClock::new(T0),
        move |c| c.tokens = vec![r, w, a],
        DAY,
    );
    let call = |token: &str, path: &str, body: serde_json::Value| {
        s.req(
            "POST",
            path,
            &[
                ("content-type", "application/json"),
                ("authorization", &format!("Bearer {token}")),
            ],
            Some(body.to_string().as_bytes()),
        )
    };
    let put = |c: &str| {
        call(
            &admin,
            "/v1/txn",
            json!({"ops": [{"op": "put", "collection": c, "key": "k", "value": 1}]}),
        )
    };
    let players = put("players").json()["lsn"].as_u64().unwrap();
    let chat = put("chat").json()["lsn"].as_u64().unwrap();
    assert_eq!(call(&writer, "/v1/undo", json!({"lsn": chat})).status, 403);
    assert_eq!(
        call(
            &writer,
            "/v1/undo",
            json!({"lsn": players, "dry_run": true})
        )
        .status,
        200
    );
    let players_revert = json!({"collection": "players", "to_lsn": 0});
    assert_eq!(
        call(&reader, "/v1/revert", players_revert.clone()).status,
        403
    );
    assert_eq!(call(&writer, "/v1/revert", players_revert).status, 200);
    assert_eq!(
        call(
            &writer,
            "/v1/revert",
            json!({"collection": "chat", "to_lsn": 0})
        )
        .status,
        403
    );
    assert_eq!(
        call(&writer, "/v1/revert", json!({"to_lsn": 0})).status,
        403
    );
    assert_eq!(
        call(&writer, "/v1/admin/restore", json!({"to_lsn": 0})).status,
        403
    );
    assert_eq!(
        call(&reader, "/v1/collections/players/docs", json!(1)).status,
        403
    );
    assert_eq!(
        call(&writer, "/v1/collections/players/docs", json!(1)).status,
        201
    );
    let all = call(&admin, "/v1/revert", json!({"to_lsn": 0, "dry_run": true}));
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(all.json()["changed"].as_array().unwrap().len(), 2);
    assert_eq!(
        call(&admin, "/v1/admin/restore", json!({"to_lsn": 0})).status,
        200
    );
    let auth = format!("Bearer {admin}");
    let get = s.req(
        "GET",
        "/v1/collections/chat/docs/k",
        &[("authorization", &auth)],
        None,
    );
    assert_eq!(get.status, 404);
}

//! `POST /v1/txn`: every operation kind, per-operation results, atomicity, and a 409 that
//! names every failed precondition.

#![allow(clippy::unwrap_used)]

mod common;

use common::TestServer;
use serde_json::json;

fn txn(s: &TestServer, body: serde_json::Value) -> common::Resp {
    s.req(
        "POST",
        "/v1/txn",
        &[("content-type", "application/json")],
        Some(body.to_string().as_bytes()),
    )
}

#[test]
fn every_op_kind_commits_atomically_with_per_op_results() {
    let s = TestServer::start(|_| {});
    s.put_json("/v1/collections/parties/docs/p9", r#"{"members": []}"#);
    s.put_json("/v1/collections/players/docs/bob", r#"{"hp": 5}"#);
    s.put_json("/v1/collections/invites/docs/alice-p9", "true");
    let r = txn(
        &s,
        json!({"ops": [
            {"op": "check", "collection": "parties", "key": "p9", "version": 1},
            {"op": "create", "collection": "players", "key": "alice", "value": {"hp": 10}, "schema_version": 2},
            {"op": "put", "collection": "players", "key": "carol", "value": 1, "if_version": 0},
            {"op": "replace", "collection": "players", "key": "bob", "value": {"hp": 6}, "if_version": 1},
            {"op": "patch", "collection": "parties", "key": "p9", "merge_patch": {"leader": "alice"}},
            {"op": "patch", "collection": "parties", "key": "p9", "json_patch": [{"op": "add", "path": "/members/-", "value": "alice"}]},
            {"op": "delete", "collection": "invites", "key": "alice-p9"},
            {"op": "delete", "collection": "invites", "key": "never-existed"}
        ]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 8);
    assert_eq!(
        results[0],
        json!({"collection": "parties", "key": "p9", "version": 1, "written": false, "schema_version": 1})
    );
    assert_eq!(results[1]["version"], 1);
    assert_eq!(results[3]["version"], 2);
    assert_eq!(results[5]["version"], 3);
    assert_eq!(
        results[6],
        json!({"collection": "invites", "key": "alice-p9", "version": 0, "written": true, "schema_version": 0})
    );
    assert_eq!(results[7]["written"], false);
    assert!(v["lsn"].as_u64().unwrap() > 3 && v["commit_ts"].as_u64().unwrap() > 0);
    assert_eq!(
        s.get("/v1/collections/parties/docs/p9").json(),
        json!({"leader": "alice", "members": ["alice"]})
    );
    assert_eq!(
        s.get("/v1/collections/players/docs/alice")
            .header("amber-schema-version"),
        Some("2")
    );
    assert_eq!(s.get("/v1/collections/invites/docs/alice-p9").status, 404);
}

#[test]
fn a_conflict_is_409_naming_every_failed_precondition_and_applies_nothing() {
    let s = TestServer::start(|_| {});
    s.put_json("/v1/collections/players/docs/a", "1");
    s.put_json("/v1/collections/players/docs/a", "2");
    s.put_json("/v1/collections/players/docs/b", "1");
    let r = txn(
        &s,
        json!({"ops": [
            {"op": "put", "collection": "players", "key": "new", "value": 1},
            {"op": "put", "collection": "players", "key": "a", "value": 3, "if_version": 1},
            {"op": "create", "collection": "players", "key": "b", "value": 3},
            {"op": "check", "collection": "players", "key": "ghost", "version": 4},
            {"op": "replace", "collection": "players", "key": "ghost2", "value": 1}
        ]}),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.code(), "conflict");
    let conflicts = r.json()["error"]["details"]["conflicts"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(conflicts.len(), 4, "{conflicts:?}");
    assert_eq!(
        conflicts[0],
        json!({"op_index": 1, "collection": "players", "key": "a", "expected": 1, "actual": 2, "reason": "version_mismatch"})
    );
    assert_eq!(conflicts[1]["reason"], "already_exists");
    assert_eq!(conflicts[1]["op_index"], 2);
    assert_eq!(
        conflicts[2],
        json!({"op_index": 3, "collection": "players", "key": "ghost", "expected": 4, "actual": 0, "reason": "version_mismatch"})
    );
    assert_eq!(conflicts[3]["reason"], "missing");
    // Nothing was applied, not even the unconditional put.
    assert_eq!(s.get("/v1/collections/players/docs/new").status, 404);
    assert_eq!(s.get("/v1/collections/players/docs/a").body, "2");
}

#[test]
fn durability_header_applies_to_transactions() {
    let s = TestServer::start(|_| {});
    let body =
        json!({"ops": [{"op": "put", "collection": "c", "key": "k", "value": 1}]}).to_string();
    for d in ["sync", "buffered"] {
        let r = s.req(
            "POST",
            "/v1/txn",
            &[
                ("content-type", "application/json"),
                ("amber-durability", d),
            ],
            Some(body.as_bytes()),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = s.req(
        "POST",
        "/v1/txn",
        &[
            ("content-type", "application/json"),
            ("amber-durability", "fast"),
        ],
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 400);
    let r = txn(
        &s,
        json!({"ops": [{"op": "patch", "collection": "c", "key": "k", "merge_patch": {}, "json_patch": []}]}),
    );
    assert_eq!(r.code(), "invalid_transaction");
}

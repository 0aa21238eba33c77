//! Schemas over HTTP (issue 11, first step): a spec with JSON Schemas and migrations is
//! stored through `PUT /v1/collections/{c}/spec`, a write that fails its version's schema is
//! 422 `schema_validation_failed` listing every error, a refused spec is 400, and an old
//! client's write (`schema_version` 1 in a transaction) is upgraded and stored at the
//! current version.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use common::TestServer;

const SPEC: &str = r#"{"schema_version": 2,
  "versions": {"1": {"schema": {"type": "object", "required": ["name"]}},
               "2": {"schema": {"type": "object", "required": ["name", "inventory"],
                                "properties": {"name": {"type": "string"},
                                               "inventory": {"type": "array"}}}}},
  "migrations": [{"from": 1, "to": 2,
                  "up":   [{"op": "set_default", "path": "/inventory", "value": []}],
                  "down": [{"op": "remove", "path": "/inventory"}]}]}"#;

#[test]
fn a_write_that_fails_the_schema_is_422_with_every_error_and_nothing_is_stored() {
    let s = TestServer::start(|_| {});
    let r = s.put_json("/v1/collections/players/spec", SPEC);
    assert!(
        r.status == 200 || r.status == 201,
        "{} {}",
        r.status,
        r.body
    );
    let got = s.get("/v1/collections/players/spec").json();
    assert_eq!(got["schema_version"], 2, "{got}");

    let bad = s.put_json(
        "/v1/collections/players/docs/p1",
        r#"{"name": 7, "inventory": "none"}"#,
    );
    assert_eq!(bad.status, 422, "{}", bad.body);
    let e = bad.json();
    assert_eq!(e["error"]["code"], "schema_validation_failed", "{e}");
    let d = &e["error"]["details"];
    assert_eq!(d["schema_version"], 2, "{e}");
    assert_eq!(d["total"], 2, "{e}");
    let paths: Vec<&str> = d["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["instance_path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"/name") && paths.contains(&"/inventory"),
        "{e}"
    );
    assert_eq!(s.get("/v1/collections/players/docs/p1").status, 404);

    let ok = s.put_json(
        "/v1/collections/players/docs/p1",
        r#"{"name": "ann", "inventory": ["sword"]}"#,
    );
    assert!(ok.status == 200 || ok.status == 201, "{}", ok.body);
}

#[test]
fn an_old_clients_write_is_upgraded_and_stored_at_the_current_version() {
    let s = TestServer::start(|_| {});
    assert!(s.put_json("/v1/collections/players/spec", SPEC).status < 300);
    let body = r#"{"ops": [{"op": "put", "collection": "players", "key": "p2",
                     "value": {"name": "bob"}, "schema_version": 1}]}"#;
    let t = s.req(
        "POST",
        "/v1/txn",
        &[("content-type", "application/json")],
        Some(body.as_bytes()),
    );
    assert_eq!(t.status, 200, "{}", t.body);
    let doc = s.get("/v1/collections/players/docs/p2?meta=true").json();
    assert_eq!(doc["value"]["inventory"], serde_json::json!([]), "{doc}");
    assert_eq!(doc["schema_version"], 2, "{doc}");
}

#[test]
fn a_spec_with_a_gap_or_a_schema_that_does_not_compile_is_refused() {
    let s = TestServer::start(|_| {});
    let gap = r#"{"schema_version": 3, "versions": {"1": {}, "3": {}}, "migrations": []}"#;
    let r = s.put_json("/v1/collections/players/spec", gap);
    assert_eq!(r.status, 400, "{}", r.body);
    let bad_schema = r#"{"schema_version": 1, "versions": {"1": {"schema": {"type": 12}}}}"#;
    let r = s.put_json("/v1/collections/players/spec", bad_schema);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(s.get("/v1/collections/players/spec").json()["schema_version"].is_null());
}

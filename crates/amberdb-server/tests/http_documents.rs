//! Documents over HTTP: GET/PUT/PATCH/DELETE with ETag, If-Match, If-None-Match, meta
//! envelopes, both patch media types, and the metadata headers.

#![allow(clippy::unwrap_used)]

mod common;

use common::TestServer;
use serde_json::json;

const DOC: &str = "/v1/collections/players/docs/alice";

#[test]
fn put_get_patch_delete_round_trip_with_versions_and_etags() {
    let s = TestServer::start(|_| {});

    let r = s.put_json(DOC, r#"{"hp": 20, "name": "alice"}"#);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.header("etag"), Some("\"1\""));
    assert_eq!(r.header("amber-version"), Some("1"));
    assert!(r.json()["created"].as_bool().unwrap());
    let lsn1: u64 = r.header("amber-lsn").unwrap().parse().unwrap();

    let r = s.get(DOC);
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"hp": 20, "name": "alice"}));
    assert_eq!(r.header("etag"), Some("\"1\""));
    assert_eq!(r.header("amber-schema-version"), Some("1"));
    assert_eq!(r.header("content-type"), Some("application/json"));

    // Overwrite: 200, version 2, later LSN.
    let r = s.req(
        "PUT",
        DOC,
        &[
            ("content-type", "application/json"),
            ("amber-schema-version", "3"),
        ],
        Some(br#"{"hp": 25}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["version"], 2);
    assert!(r.header("amber-lsn").unwrap().parse::<u64>().unwrap() > lsn1);

    // meta=true: the full envelope.
    let env = s.get(&format!("{DOC}?meta=true")).json();
    assert_eq!(env["key"], "alice");
    assert_eq!(env["collection"], "players");
    assert_eq!(env["value"], json!({"hp": 25}));
    assert_eq!(env["version"], 2);
    assert_eq!(env["schema_version"], 3);
    assert_eq!(env["sha256"].as_str().unwrap().len(), 64);
    assert!(env["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(env["lsn"].as_u64().unwrap() > lsn1);

    // Merge patch (RFC 7396): null removes, objects merge.
    let r = s.req(
        "PATCH",
        DOC,
        &[("content-type", "application/merge-patch+json")],
        Some(br#"{"hp": null, "level": 2}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["version"], 3);
    assert_eq!(s.get(DOC).json(), json!({"level": 2}));

    // JSON Patch (RFC 6902).
    let r = s.req(
        "PATCH",
        DOC,
        &[("content-type", "application/json-patch+json"), ("if-match", "\"3\"")],
        Some(br#"[{"op": "add", "path": "/items", "value": ["sword"]}, {"op": "replace", "path": "/level", "value": 3}]"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(s.get(DOC).json(), json!({"level": 3, "items": ["sword"]}));

    // A failing JSON Patch `test` is 422 and changes nothing.
    let r = s.req(
        "PATCH",
        DOC,
        &[("content-type", "application/json-patch+json")],
        Some(br#"[{"op": "test", "path": "/level", "value": 99}]"#),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.code(), "patch_failed");
    assert_eq!(s.get(DOC).header("etag"), Some("\"4\""));

    let r = s.req("DELETE", DOC, &[], None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["deleted"].as_bool().unwrap());
    assert_eq!(s.get(DOC).status, 404);
    assert_eq!(s.get(DOC).code(), "document_not_found");
    assert_eq!(s.req("DELETE", DOC, &[], None).status, 404);
    assert_eq!(
        s.req(
            "PATCH",
            DOC,
            &[("content-type", "application/merge-patch+json")],
            Some(b"{}")
        )
        .status,
        404
    );
}

#[test]
fn conditional_requests_follow_http_semantics() {
    let s = TestServer::start(|_| {});
    let json_ct = ("content-type", "application/json");

    // If-None-Match: * creates only.
    let r = s.req("PUT", DOC, &[json_ct, ("if-none-match", "*")], Some(b"1"));
    assert_eq!(r.status, 201, "{}", r.body);
    let r = s.req("PUT", DOC, &[json_ct, ("if-none-match", "*")], Some(b"2"));
    assert_eq!(r.status, 412, "{}", r.body);
    assert_eq!(r.code(), "precondition_failed");
    assert_eq!(r.json()["error"]["details"]["actual"], 1);

    // If-Match with the current ETag succeeds, a stale one is 412.
    assert_eq!(
        s.req("PUT", DOC, &[json_ct, ("if-match", "\"1\"")], Some(b"3"))
            .status,
        200
    );
    let r = s.req("PUT", DOC, &[json_ct, ("if-match", "\"1\"")], Some(b"4"));
    assert_eq!(r.status, 412);
    assert_eq!(s.get(DOC).body, "3");
    // Lists and weak tags.
    assert_eq!(
        s.req(
            "PUT",
            DOC,
            &[json_ct, ("if-match", "\"7\", W/\"2\"")],
            Some(b"5")
        )
        .status,
        200
    );
    // A tag that is not a version never matches.
    assert_eq!(
        s.req("PUT", DOC, &[json_ct, ("if-match", "\"abc\"")], Some(b"6"))
            .status,
        412
    );
    // If-Match: * on a missing document is 412.
    assert_eq!(
        s.req(
            "PUT",
            "/v1/collections/players/docs/nobody",
            &[json_ct, ("if-match", "*")],
            Some(b"1")
        )
        .status,
        412
    );
    assert_eq!(s.get("/v1/collections/players/docs/nobody").status, 404);

    // GET: If-None-Match with the current ETag is 304; a stale If-Match is 412.
    let r = s.req("GET", DOC, &[("if-none-match", "\"3\"")], None);
    assert_eq!(r.status, 304);
    assert_eq!(r.header("etag"), Some("\"3\""));
    assert_eq!(
        s.req("GET", DOC, &[("if-none-match", "\"2\"")], None)
            .status,
        200
    );
    assert_eq!(
        s.req("GET", DOC, &[("if-match", "\"2\"")], None).status,
        412
    );
    assert_eq!(
        s.req("GET", DOC, &[("if-match", "\"3\"")], None).status,
        200
    );

    // DELETE and PATCH honour If-Match too.
    assert_eq!(
        s.req("DELETE", DOC, &[("if-match", "\"2\"")], None).status,
        412
    );
    assert_eq!(
        s.req(
            "PATCH",
            DOC,
            &[
                ("content-type", "application/merge-patch+json"),
                ("if-match", "\"2\"")
            ],
            Some(b"{}")
        )
        .status,
        412
    );
    assert_eq!(
        s.req("DELETE", DOC, &[("if-match", "\"3\"")], None).status,
        200
    );

    // A malformed entity tag is a 400, not a silent mismatch.
    let r = s.req("PUT", DOC, &[json_ct, ("if-match", "3")], Some(b"1"));
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "invalid_header");
}

#[test]
fn durability_header_and_keys_that_need_percent_encoding() {
    let s = TestServer::start(|_| {});
    let path = "/v1/collections/game.states-v2/docs/eu%2Fplayer%201%F0%9F%8E%AE";
    let r = s.req(
        "PUT",
        path,
        &[
            ("content-type", "application/json"),
            ("amber-durability", "buffered"),
        ],
        Some(b"{\"a\":1}"),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["key"], "eu/player 1\u{1F3AE}");
    let env = s.get(&format!("{path}?meta=true")).json();
    assert_eq!(env["key"], "eu/player 1\u{1F3AE}");
    let r = s.req(
        "PUT",
        path,
        &[
            ("content-type", "application/json"),
            ("amber-durability", "sync"),
        ],
        Some(b"2"),
    );
    assert_eq!(r.status, 200);
    let r = s.req(
        "PUT",
        path,
        &[
            ("content-type", "application/json"),
            ("amber-durability", "eventually"),
        ],
        Some(b"2"),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "invalid_header");
    // No Content-Type at all is accepted as JSON (curl -T, simple clients).
    let r = s.req("PUT", path, &[], Some(b"3"));
    assert_eq!(r.status, 200, "{}", r.body);
    // HEAD answers like GET without a body.
    let r = s.req("HEAD", path, &[], None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), Some("\"3\""));
    assert!(r.body.is_empty());
}

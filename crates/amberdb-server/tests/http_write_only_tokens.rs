//! A token with write scope but no read scope must not learn content: JSON Patch (whose
//! `test` answers 200 or 422 for a guessed value) needs read scope, a merge patch does not,
//! and 412/409 answers withhold the current version of documents the token may not read.

#![allow(clippy::unwrap_used)]

mod common;

use common::{token, Resp, TestServer};
use serde_json::json;

fn call(s: &TestServer, token: &str, method: &str, path: &str, ct: &str, body: &str) -> Resp {
    let auth = format!("Bearer {token}");
    s.req(
        method,
        path,
        &[("authorization", &auth), ("content-type", ct)],
        Some(body.as_bytes()),
    )
}

const DOC: &str = "/v1/collections/players/docs/alice";

#[test]
fn a_write_only_token_cannot_read_through_json_patch_test_or_precondition_details() {
    let (owner, o) = token("owner", &["read:players", "write:players"]);
    let (writer, w) = token("writer", &["write:players"]);
    let s = TestServer::start(move |c| c.tokens = vec![o, w]);
    let r = call(
        &s,
        &owner,
        "PUT",
        DOC,
        "application/json",
        r#"{"pin":"1234"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    // The probe from the issue: `test` answered 200 for the right value, 422 for a wrong one.
    for guess in ["1234", "0000"] {
        let patch = json!([{"op": "test", "path": "/pin", "value": guess}]).to_string();
        let r = call(
            &s,
            &writer,
            "PATCH",
            DOC,
            "application/json-patch+json",
            &patch,
        );
        assert_eq!(r.status, 403, "guess {guess}: {}", r.body);
        assert!(r.body.contains("JSON Patch"), "{}", r.body);
    }
    let txn = json!({"ops": [{"op": "patch", "collection": "players", "key": "alice",
        "json_patch": [{"op": "test", "path": "/pin", "value": "1234"}]}]})
    .to_string();
    let r = call(&s, &writer, "POST", "/v1/txn", "application/json", &txn);
    assert_eq!(r.status, 403, "{}", r.body);
    // A merge patch needs write scope only.
    let r = call(
        &s,
        &writer,
        "PATCH",
        DOC,
        "application/merge-patch+json",
        r#"{"x":1}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // 412 and 409 do not tell it the current version.
    let auth = format!("Bearer {writer}");
    let r = s.req(
        "PUT",
        DOC,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("if-match", "\"9\""),
        ],
        Some(b"{}"),
    );
    assert_eq!(r.status, 412, "{}", r.body);
    assert_eq!(
        r.json()["error"]["details"]["actual"],
        json!(null),
        "{}",
        r.body
    );
    assert!(!r.body.contains("version 2"), "{}", r.body);
    let txn = json!({"ops": [{"op": "put", "collection": "players", "key": "alice",
        "value": {}, "if_version": 9}]})
    .to_string();
    let r = call(&s, &writer, "POST", "/v1/txn", "application/json", &txn);
    assert_eq!(r.status, 409, "{}", r.body);
    let c = &r.json()["error"]["details"]["conflicts"][0];
    assert_eq!(c["actual"], json!(null), "{}", r.body);
    assert!(!r.body.contains("actual 2"), "{}", r.body);
    // The owner still sees it.
    let auth = format!("Bearer {owner}");
    let r = s.req(
        "PUT",
        DOC,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("if-match", "\"9\""),
        ],
        Some(b"{}"),
    );
    assert_eq!(r.json()["error"]["details"]["actual"], 2, "{}", r.body);
}

//! What a write answers: the engine's view of the document after the write (version and
//! schema version), the same in the headers, the body and a transaction's results.

#![allow(clippy::unwrap_used)]

mod common;

use common::TestServer;
use serde_json::json;

const DOC: &str = "/v1/collections/c/docs/k";

#[test]
fn patch_answers_the_schema_version_the_document_keeps() {
    // PATCH answered schema_version 1 (header and body) while the document kept its 3.
    let s = TestServer::start(|_| {});
    let r = s.req(
        "PUT",
        DOC,
        &[
            ("content-type", "application/json"),
            ("amber-schema-version", "3"),
        ],
        Some(br#"{"a":1}"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["schema_version"], 3);
    for (ct, body) in [
        ("application/merge-patch+json", r#"{"b":2}"#),
        (
            "application/json-patch+json",
            r#"[{"op":"add","path":"/c","value":3}]"#,
        ),
    ] {
        let r = s.req("PATCH", DOC, &[("content-type", ct)], Some(body.as_bytes()));
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["schema_version"], 3, "{ct}: {}", r.body);
        assert_eq!(r.header("amber-schema-version"), Some("3"), "{ct}");
    }
    assert_eq!(s.get(DOC).header("amber-schema-version"), Some("3"));
    // Declaring one changes it, and the answer says so.
    let r = s.req(
        "PATCH",
        DOC,
        &[
            ("content-type", "application/merge-patch+json"),
            ("amber-schema-version", "4"),
        ],
        Some(br#"{"d":4}"#),
    );
    assert_eq!(r.json()["schema_version"], 4);
    // A transaction's results carry it too.
    let txn = json!({"ops": [
        {"op": "patch", "collection": "c", "key": "k", "merge_patch": {"e": 5}},
        {"op": "check", "collection": "c", "key": "k", "version": 5},
        {"op": "delete", "collection": "c", "key": "k"}
    ]});
    let r = s.req(
        "POST",
        "/v1/txn",
        &[("content-type", "application/json")],
        Some(txn.to_string().as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let results = r.json()["results"].clone();
    assert_eq!(results[0]["schema_version"], 4, "{results}");
    assert_eq!(results[1]["schema_version"], 4, "{results}");
    assert_eq!(results[2]["schema_version"], 0, "{results}");
}

//! Numbers that serde_json would store changed (issue 9 item 7): refused with 400
//! `inexact_number` naming the JSON Pointer in the request body, on every path by which a
//! client's JSON enters a document (PUT, merge patch, JSON Patch, transaction ops); and
//! exact numbers stored in serde_json's shortest round-trip form, which is what the document's
//! SHA-256 covers.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Resp, TestServer};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const DOC: &str = "/v1/collections/c/docs/k";

fn patch(s: &TestServer, content_type: &str, body: &str) -> Resp {
    s.req(
        "PATCH",
        DOC,
        &[("content-type", content_type)],
        Some(body.as_bytes()),
    )
}

fn txn(s: &TestServer, body: &str) -> Resp {
    s.req(
        "POST",
        "/v1/txn",
        &[("content-type", "application/json")],
        Some(body.as_bytes()),
    )
}

fn assert_inexact(r: &Resp, pointer: &str, stored: Value) {
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.code(), "inexact_number", "{}", r.body);
    let d = &r.json()["error"]["details"];
    assert_eq!(d["pointer"], pointer, "{}", r.body);
    assert_eq!(d["stored"], stored, "{}", r.body);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains(pointer),
        "{}",
        r.body
    );
}

#[test]
fn the_issues_three_numbers_are_refused_with_400_naming_their_pointer_and_nothing_is_stored() {
    let s = TestServer::start(|_| {});
    for (literal, stored) in [
        (
            "123456789012345678901234567890",
            json!("1.2345678901234568e+29"),
        ),
        ("18446744073709551616", json!("1.8446744073709552e+19")),
        ("1.0e-400", json!("0.0")),
    ] {
        let r = s.put_json(DOC, &format!(r#"{{"score": [1, {literal}]}}"#));
        assert_inexact(&r, "/score/1", stored.clone());
        assert_eq!(r.json()["error"]["details"]["number"], literal);
        let r = s.put_json(DOC, literal);
        assert_inexact(&r, "", stored);
        assert_eq!(s.get(DOC).status, 404, "nothing stored for {literal}");
    }
    // Beyond f64's range: nothing could be stored at all.
    let r = s.put_json(DOC, r#"{"a": {"b/c": 1e400}}"#);
    assert_inexact(&r, "/a/b~1c", Value::Null);
}

#[test]
fn inexact_numbers_are_refused_in_patches_and_transactions_and_change_nothing() {
    let s = TestServer::start(|_| {});
    assert_eq!(s.put_json(DOC, r#"{"n": 1}"#).status, 201);
    let r = patch(
        &s,
        "application/merge-patch+json",
        r#"{"n": 18446744073709551616}"#,
    );
    assert_inexact(&r, "/n", json!("1.8446744073709552e+19"));
    let r = patch(
        &s,
        "application/json-patch+json",
        r#"[{"op": "test", "path": "/n", "value": 1}, {"op": "replace", "path": "/n", "value": 1e-400}]"#,
    );
    assert_inexact(&r, "/1/value", json!("0.0"));
    let r = txn(
        &s,
        r#"{"ops": [{"op": "put", "collection": "c", "key": "k2", "value": {"ok": 1}},
                    {"op": "put", "collection": "c", "key": "k3", "value": {"x": [0.10000000000000000001]}}]}"#,
    );
    assert_inexact(&r, "/ops/1/value/x/0", json!("0.1"));
    let r = txn(
        &s,
        r#"{"ops": [{"op": "patch", "collection": "c", "key": "k", "json_patch": [{"op": "add", "path": "/m", "value": 123456789012345678901234567890}]}]}"#,
    );
    assert_inexact(
        &r,
        "/ops/0/json_patch/0/value",
        json!("1.2345678901234568e+29"),
    );
    let r = txn(
        &s,
        r#"{"ops": [{"op": "check", "collection": "c", "key": "k", "version": 18446744073709551617}]}"#,
    );
    assert_inexact(&r, "/ops/0/version", json!("1.8446744073709552e+19"));
    assert_eq!(s.get(DOC).body, r#"{"n":1}"#);
    assert_eq!(s.get("/v1/collections/c/docs/k2").status, 404);
}

#[test]
fn exact_numbers_are_stored_in_shortest_round_trip_form_and_the_sha256_covers_that_form() {
    let s = TestServer::start(|_| {});
    let sent = r#"{"int": 1e3, "big": 18446744073709551615, "neg": -9223372036854775808,
        "tenth": 0.1, "zero": -0.0, "tiny": 1.5e-300, "sub": 5e-324, "wide": 100000000000000000000,
        "pad": 1.50, "js": 0.30000000000000004}"#;
    let r = s.put_json(DOC, sent);
    assert_eq!(r.status, 201, "{}", r.body);
    let stored = s.get(DOC).body;
    assert_eq!(
        stored,
        r#"{"big":18446744073709551615,"int":1000.0,"js":0.30000000000000004,"neg":-9223372036854775808,"pad":1.5,"sub":5e-324,"tenth":0.1,"tiny":1.5e-300,"wide":1e+20,"zero":-0.0}"#
    );
    let meta = s.get(&format!("{DOC}?meta=true")).json();
    assert_eq!(
        meta["sha256"].as_str().unwrap(),
        hex::encode(Sha256::digest(stored.as_bytes()))
    );
    // What was stored is accepted back as it is: a client can round-trip a document.
    let r = s.put_json("/v1/collections/c/docs/k2", &stored);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(s.get("/v1/collections/c/docs/k2").body, stored);
}

#[test]
fn a_patch_leaves_the_untouched_floats_of_the_document_unchanged() {
    // Without correctly rounded parsing (serde_json's float_roundtrip), every rewrite of the
    // document by a patch re-parsed these one unit in the last place off.
    let s = TestServer::start(|_| {});
    let floats =
        r#"[1.5e-300,-1.8218816927580057e+294,-1.0729132283643165e-38,-5.791054108416719e-286]"#;
    let r = s.put_json(DOC, &format!(r#"{{"f":{floats},"n":0}}"#));
    assert_eq!(r.status, 201, "{}", r.body);
    for n in 1..=3 {
        let r = patch(
            &s,
            "application/merge-patch+json",
            &format!(r#"{{"n":{n}}}"#),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = patch(
        &s,
        "application/json-patch+json",
        r#"[{"op": "copy", "from": "/f", "path": "/g"}]"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        s.get(DOC).body,
        format!(r#"{{"f":{floats},"g":{floats},"n":3}}"#)
    );
}

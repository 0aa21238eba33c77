//! Hostile request bodies against a real server: amplifying and deepening JSON Patches, values
//! nested past the depth limit, and the reads of what such writes leave behind. Each case is
//! bounded (sizes and counts are constants below) and checks the server's memory stays within
//! a stated bound, measured as the growth of this process's peak RSS (the server runs in it).

#![allow(clippy::unwrap_used)]

mod common;

use common::TestServer;
use serde_json::{json, Value};

const DOC: &str = "/v1/collections/c/docs/k";

/// Peak resident set of this process, in bytes (Linux; 0 elsewhere).
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn json_patch(s: &TestServer, path: &str, ops: &Value) -> common::Resp {
    s.req(
        "PATCH",
        path,
        &[("content-type", "application/json-patch+json")],
        Some(ops.to_string().as_bytes()),
    )
}

fn nested_arrays(levels: usize) -> String {
    format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
}

#[test]
fn json_patch_of_doubling_copies_is_refused_with_413_before_memory_grows() {
    // The issue's attack: on a 1 KB document, every `copy` from "" doubles the value. 18 ops
    // would build 256 MiB of JSON (gigabytes as a parsed value) before any size check.
    let s = TestServer::start(|c| c.max_doc_bytes = 1 << 20);
    let r = s.put_json(DOC, &json!({"pad": "x".repeat(1000)}).to_string());
    assert_eq!(r.status, 201, "{}", r.body);
    let ops: Vec<Value> = (0..18)
        .map(|i| json!({"op": "copy", "from": "", "path": format!("/c{i}")}))
        .collect();
    let before = peak_rss();
    let r = json_patch(&s, DOC, &json!(ops));
    let grew = peak_rss().saturating_sub(before);
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.code(), "document_too_large");
    assert!(
        grew < 64 << 20,
        "peak RSS grew by {} MiB for a patch of a 1 KB document (bound: 64 MiB)",
        grew >> 20
    );
    // Nothing changed.
    assert_eq!(s.get(DOC).json(), json!({"pad": "x".repeat(1000)}));
}

#[test]
fn json_patch_with_more_operations_than_the_limit_is_refused_with_413() {
    let s = TestServer::start(|_| {});
    assert_eq!(s.put_json(DOC, r#"{"n":0}"#).status, 201);
    let n = amberdb::limits::MAX_PATCH_OPS + 1;
    let ops: Vec<Value> = (0..n)
        .map(|_| json!({"op": "replace", "path": "/n", "value": 1}))
        .collect();
    let r = json_patch(&s, DOC, &json!(ops));
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.code(), "patch_too_large");
    // The same patch inside a transaction.
    let txn = json!({"ops": [{"op": "patch", "collection": "c", "key": "k", "json_patch": ops}]});
    let r = s.req(
        "POST",
        "/v1/txn",
        &[("content-type", "application/json")],
        Some(txn.to_string().as_bytes()),
    );
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(s.get(DOC).json(), json!({"n": 0}));
}

#[test]
fn json_patch_copies_that_nest_past_the_depth_limit_are_refused_and_reads_stay_values() {
    // Writes refused deep bodies, but `copy` of "" into "/a" nests the document one level
    // deeper per op: the result was stored, then every read served `null`.
    let s = TestServer::start(|_| {});
    assert_eq!(s.put_json(DOC, "{}").status, 201);
    let deepen = |n: usize| -> Value {
        json!((0..n)
            .map(|_| json!({"op": "copy", "from": "", "path": "/a"}))
            .collect::<Vec<_>>())
    };
    let r = json_patch(&s, DOC, &deepen(150));
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.code(), "invalid_value");
    assert!(r.body.contains("deeper than 100 levels"), "{}", r.body);
    // Up to the limit is fine, and every read returns the stored value, never null.
    let r = json_patch(&s, DOC, &deepen(amberdb::limits::MAX_DEPTH - 1));
    assert_eq!(r.status, 200, "{}", r.body);
    let stored = s.get(DOC).body;
    assert!(stored.starts_with(r#"{"a":{"a":"#), "{stored}");
    let meta = s.get(&format!("{DOC}?meta=true"));
    assert_eq!(meta.status, 200);
    assert!(
        meta.body.contains(&format!("\"value\":{stored}")),
        "{}",
        meta.body
    );
    let list = s.get("/v1/collections/c/docs");
    assert!(
        list.body.contains(&format!("\"value\":{stored}")),
        "{}",
        list.body
    );
    let export = s.get("/v1/collections/c/export");
    assert!(
        export.body.contains(&format!("\"value\":{stored}")),
        "{}",
        export.body
    );
    // One more level is refused, and the document can still be patched.
    let r = json_patch(&s, DOC, &deepen(1));
    assert_eq!(r.status, 400, "{}", r.body);
    let r = json_patch(&s, DOC, &json!([{"op": "add", "path": "/b", "value": 1}]));
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn values_nested_past_the_depth_limit_are_refused_on_every_write_path() {
    let s = TestServer::start(|_| {});
    let max = amberdb::limits::MAX_DEPTH;
    let r = s.put_json(DOC, &nested_arrays(max));
    assert_eq!(r.status, 201, "{}", r.body);
    let r = s.put_json("/v1/collections/c/docs/k2", &nested_arrays(max + 1));
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.code(), "invalid_value");
    // Merge patch and transaction put get the same limit.
    let r = s.req(
        "PATCH",
        DOC,
        &[("content-type", "application/merge-patch+json")],
        Some(format!(r#"{{"x":{}}}"#, nested_arrays(max)).as_bytes()),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let txn = format!(
        r#"{{"ops":[{{"op":"put","collection":"c","key":"k3","value":{}}}]}}"#,
        nested_arrays(max + 1)
    );
    let r = s.req(
        "POST",
        "/v1/txn",
        &[("content-type", "application/json")],
        Some(txn.as_bytes()),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(s.get("/v1/collections/c/docs/k2").status, 404);
    assert_eq!(s.get("/v1/collections/c/docs/k3").status, 404);
}

#[test]
fn invalid_percent_encoding_in_a_path_is_400_not_a_literal_key() {
    let s = TestServer::start(|_| {});
    for path in ["/v1/collections/c/docs/a%zzb", "/v1/collections/c/docs/a%2"] {
        let r = s.put_json(path, "1");
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert_eq!(r.code(), "invalid_path");
    }
    assert!(s
        .get("/v1/collections/c/docs")
        .body
        .contains(r#""documents":[]"#));
    // Valid escapes still work.
    assert_eq!(
        s.put_json("/v1/collections/c/docs/a%25zzb", "1").status,
        201
    );
    assert_eq!(s.get("/v1/collections/c/docs/a%25zzb").body, "1");
}

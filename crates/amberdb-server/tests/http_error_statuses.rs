//! Every error status the API promises (400, 404, 405, 409, 412, 413, 415, 422, 503; 401 and
//! 403 are in `http_auth_scopes.rs`), each with its stable code and the JSON error body.

#![allow(clippy::unwrap_used)]

mod common;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use amberdb::io::{Fault, FaultInjector, Faults, IoOp};
use common::{Resp, TestServer};

fn assert_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(
        r.status, status,
        "expected {status} {code}, got: {}",
        r.body
    );
    let v = r.json();
    assert_eq!(v["error"]["code"], code, "{}", r.body);
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        r.body
    );
    assert!(v["error"].get("details").is_some(), "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
}

#[test]
fn malformed_requests_are_400_with_a_precise_code() {
    let s = TestServer::start(|_| {});
    let ct = ("content-type", "application/json");
    assert_error(
        &s.put_json("/v1/collections/Players/docs/a", "1"),
        400,
        "invalid_collection",
    );
    assert_error(
        &s.put_json("/v1/collections/players/docs/a%00b", "1"),
        400,
        "invalid_key",
    );
    let long_key = "k".repeat(1025);
    assert_error(
        &s.put_json(&format!("/v1/collections/players/docs/{long_key}"), "1"),
        400,
        "invalid_key",
    );
    assert_error(
        &s.put_json("/v1/collections/players/docs/a", "{\"hp\": "),
        400,
        "invalid_json",
    );
    assert_error(
        &s.req("PUT", "/v1/collections/players/docs/a", &[ct], None),
        400,
        "invalid_json",
    );
    assert_error(
        &s.get("/v1/collections/players/docs?limit=0"),
        400,
        "invalid_query",
    );
    assert_error(
        &s.get("/v1/collections/players/docs?limit=10001"),
        400,
        "invalid_query",
    );
    assert_error(
        &s.get("/v1/collections/players/docs?limit=many"),
        400,
        "invalid_query",
    );
    assert_error(
        &s.get("/v1/collections/players/docs/a?meta=maybe"),
        400,
        "invalid_query",
    );
    assert_error(
        &s.req(
            "PUT",
            "/v1/collections/players/docs/a",
            &[ct, ("amber-schema-version", "0")],
            Some(b"1"),
        ),
        400,
        "invalid_header",
    );
    assert_error(
        &s.req("POST", "/v1/txn", &[ct], Some(b"{\"ops\": []}")),
        400,
        "invalid_transaction",
    );
    assert_error(
        &s.req(
            "POST",
            "/v1/txn",
            &[ct],
            Some(b"{\"ops\": [{\"op\": \"upsert\"}]}"),
        ),
        400,
        "invalid_transaction",
    );
    assert_error(
        &s.req(
            "PATCH",
            "/v1/collections/players/docs/a",
            &[("content-type", "application/json-patch+json")],
            Some(b"{\"not\": \"a patch\"}"),
        ),
        400,
        "invalid_patch",
    );
}

#[test]
fn missing_things_are_404_and_wrong_methods_405() {
    let s = TestServer::start(|_| {});
    assert_error(
        &s.get("/v1/collections/players/docs/nobody"),
        404,
        "document_not_found",
    );
    assert_error(
        &s.get("/v1/collections/nothing"),
        404,
        "collection_not_found",
    );
    assert_error(&s.get("/v1/nope"), 404, "route_not_found");
    assert_error(
        &s.req("POST", "/v1/collections/players/docs/a", &[], Some(b"1")),
        405,
        "method_not_allowed",
    );
    assert_error(
        &s.req("GET", "/v1/txn", &[], None),
        405,
        "method_not_allowed",
    );
    assert_error(
        &s.req("DELETE", "/v1/admin/status", &[], None),
        405,
        "method_not_allowed",
    );
}

#[test]
fn conflicts_preconditions_and_patch_failures() {
    let s = TestServer::start(|_| {});
    let ct = ("content-type", "application/json");
    assert_eq!(
        s.put_json("/v1/collections/players/docs/a", "1").status,
        201
    );
    let r = s.req(
        "POST",
        "/v1/txn",
        &[ct],
        Some(br#"{"ops": [{"op": "create", "collection": "players", "key": "a", "value": 2}]}"#),
    );
    assert_error(&r, 409, "conflict");
    assert_error(
        &s.req(
            "PUT",
            "/v1/collections/players/docs/a",
            &[ct, ("if-match", "\"9\"")],
            Some(b"1"),
        ),
        412,
        "precondition_failed",
    );
    assert_error(
        &s.req(
            "PATCH",
            "/v1/collections/players/docs/a",
            &[("content-type", "application/json-patch+json")],
            Some(br#"[{"op": "remove", "path": "/missing"}]"#),
        ),
        422,
        "patch_failed",
    );
}

#[test]
fn oversized_bodies_and_documents_are_413() {
    let s = TestServer::start(|c| {
        c.body_limit = 64 * 1024;
        c.max_doc_bytes = 1024;
    });
    let big_body = format!("\"{}\"", "x".repeat(100 * 1024));
    assert_error(
        &s.put_json("/v1/collections/players/docs/a", &big_body),
        413,
        "payload_too_large",
    );
    let big_doc = format!("\"{}\"", "x".repeat(2000));
    let r = s.put_json("/v1/collections/players/docs/a", &big_doc);
    assert_error(&r, 413, "document_too_large");
    assert_eq!(r.json()["error"]["details"]["limit"], 1024);
    let txn = format!(
        r#"{{"ops": [{{"op": "put", "collection": "players", "key": "b", "value": {big_doc}}}]}}"#
    );
    assert_error(
        &s.req(
            "POST",
            "/v1/txn",
            &[("content-type", "application/json")],
            Some(txn.as_bytes()),
        ),
        413,
        "document_too_large",
    );
    assert_eq!(s.get("/v1/collections/players/docs/a").status, 404);
}

#[test]
fn unknown_content_types_are_415() {
    let s = TestServer::start(|_| {});
    let doc = "/v1/collections/players/docs/a";
    assert_error(
        &s.req("PUT", doc, &[("content-type", "text/plain")], Some(b"1")),
        415,
        "unsupported_media_type",
    );
    assert_error(
        &s.req(
            "PUT",
            doc,
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(b"a=1"),
        ),
        415,
        "unsupported_media_type",
    );
    assert_eq!(s.put_json(doc, "{}").status, 201);
    // PATCH needs one of the two patch types: plain JSON is ambiguous.
    assert_error(
        &s.req(
            "PATCH",
            doc,
            &[("content-type", "application/json")],
            Some(b"{}"),
        ),
        415,
        "unsupported_media_type",
    );
    assert_error(
        &s.req("PATCH", doc, &[], Some(b"{}")),
        415,
        "unsupported_media_type",
    );
    assert_error(
        &s.req(
            "POST",
            "/v1/txn",
            &[("content-type", "text/csv")],
            Some(b"a,b"),
        ),
        415,
        "unsupported_media_type",
    );
}

/// Fails every log sync once armed, which poisons the database.
struct FailSyncs(AtomicBool);

impl FaultInjector for FailSyncs {
    fn on_io(&self, op: IoOp<'_>) -> Fault {
        match op {
            IoOp::Sync { .. } if self.0.load(Ordering::SeqCst) => {
                Fault::Fail(io::Error::other("injected fsync failure"))
            }
            _ => Fault::Proceed,
        }
    }
}

#[test]
fn a_poisoned_database_is_503_for_writes_and_readiness_but_reads_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let armed = Arc::new(FailSyncs(AtomicBool::new(false)));
    let injector = armed.clone();
    let s = TestServer::start_with(
        dir.path(),
        |_| {},
        move |o| o.faults = Faults::new(injector),
    );
    assert_eq!(
        s.put_json("/v1/collections/players/docs/a", "1").status,
        201
    );
    assert_eq!(s.get("/readyz").status, 200);
    armed.0.store(true, Ordering::SeqCst);
    // The write whose fsync failed may be on disk after a restart: its writer is told so
    // (with the LSN to re-read), not that it failed; every later write is refused.
    let unknown = s.put_json("/v1/collections/players/docs/a", "2");
    assert_error(&unknown, 503, "commit_outcome_unknown");
    assert_eq!(
        unknown.json()["error"]["details"]["lsn"],
        2,
        "{}",
        unknown.body
    );
    assert_error(
        &s.put_json("/v1/collections/players/docs/b", "2"),
        503,
        "poisoned",
    );
    assert_error(&s.get("/readyz"), 503, "poisoned");
    assert_eq!(s.get("/healthz").status, 200);
    assert_eq!(s.get("/v1/collections/players/docs/a").body, "1");
    let status = s.get("/v1/admin/status").json();
    assert!(status["poisoned"].as_str().is_some(), "{status}");
    let _ = s.stop();
}

#[test]
fn a_request_over_its_deadline_is_503_timeout() {
    // One slot and a tiny deadline: an export of a big collection holds nothing, but a
    // burst of concurrent sync writes with a 1 ms deadline cannot all make it.
    let s = TestServer::start(|c| {
        c.request_timeout = Duration::from_millis(1);
        c.concurrency = 1;
    });
    let url = s.url("/v1/collections/players/docs/");
    let results: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let url = url.clone();
                scope.spawn(move || {
                    let agent = common::agent();
                    (0..10)
                        .map(|i| {
                            let r = common::send(
                                &agent,
                                "PUT",
                                &format!("{url}k{t}-{i}"),
                                &[("content-type", "application/json")],
                                Some(b"{\"x\": 1}"),
                            );
                            if r.status == 503 {
                                assert_eq!(r.code(), "timeout", "{}", r.body);
                            }
                            r.status
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(results.contains(&503), "no request timed out: {results:?}");
    assert!(
        results.iter().all(|s| *s == 503 || *s == 201),
        "{results:?}"
    );
}

//! `GET /v1/admin/events`: the engine's system events as SSE (replay buffer with ids,
//! `Last-Event-ID`) and as a JSON list; admin scope only.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;
#[path = "common/sse.rs"]
mod sse;

use std::time::Duration;

use amberdb_server::auth::{new_token, parse_hash, Scope, TokenEntry};
use common::TestServer;
use sse::SseStream;

const T: Duration = Duration::from_secs(20);

#[test]
fn events_stream_replays_the_buffer_then_follows_live_and_resumes_with_last_event_id() {
    let s = TestServer::start(|_| {});
    let j = s.get("/v1/admin/events").json();
    assert_eq!(j["events"][0]["kind"], "storage_initialized");
    assert_eq!(j["events"][0]["id"], 1);
    assert!(j["events"][0]["details"].get("commits_replayed").is_some());
    let mut st = SseStream::open(s.addr, "/v1/admin/events", &[]);
    assert_eq!(st.status, 200);
    let e = st.next_event(T).unwrap();
    assert_eq!(
        (e.id.as_deref(), e.event.as_deref()),
        (Some("1"), Some("storage_initialized"))
    );
    // Live: a checkpoint and a verify arrive as they happen.
    s.put_json("/v1/collections/players/docs/a", "{}");
    assert_eq!(s.req("POST", "/v1/admin/checkpoint", &[], None).status, 200);
    let e = st.next_event(T).unwrap();
    assert_eq!(
        (e.id.as_deref(), e.event.as_deref()),
        (Some("2"), Some("checkpoint"))
    );
    assert_eq!(e.json()["details"]["lsn"], 1);
    assert_eq!(s.req("POST", "/v1/admin/verify", &[], None).status, 200);
    let e = st.next_event(T).unwrap();
    assert_eq!(e.event.as_deref(), Some("data_validated"));
    // Resume after event 1: the buffer replays 2 and 3.
    let mut st = SseStream::open(s.addr, "/v1/admin/events", &[("Last-Event-ID", "1")]);
    let ids: Vec<String> = (0..2)
        .map(|_| st.next_event(T).unwrap().id.unwrap())
        .collect();
    assert_eq!(ids, ["2", "3"]);
    let j = s.get("/v1/admin/events?since=2").json();
    assert_eq!(
        (j["events"].as_array().unwrap().len(), &j["last_id"]),
        (1, &serde_json::json!(3))
    );
    let r = s.req(
        "GET",
        "/v1/admin/events",
        &[("last-event-id", "nope")],
        None,
    );
    assert_eq!((r.status, r.code()), (400, "invalid_header".to_string()));
}

#[test]
fn events_need_the_admin_scope() {
    let (secret, hash) = new_token();
    let reader = TokenEntry {
        name: "reader".into(),
        sha256: parse_hash(&hash).unwrap(),
        scopes: vec!["read:*".parse::<Scope>().unwrap()],
    };
    let s = TestServer::start(move |c| c.tokens = vec![reader]);
    let r = s.req(
        "GET",
        "/v1/admin/events",
        &[("authorization", &format!("Bearer {secret}"))],
        None,
    );
    assert_eq!(r.status, 403);
    assert_eq!(s.get("/v1/admin/events").status, 401);
}

#[test]
fn the_openapi_document_describes_the_change_feed_and_the_events_endpoint() {
    let s = TestServer::start(|_| {});
    let doc = s.get("/openapi.json").json();
    for p in ["/v1/changes", "/v1/admin/events"] {
        assert!(doc["paths"][p]["get"].is_object(), "{p}");
    }
    assert!(doc["paths"]["/v1/changes"]["get"]["responses"]["410"].is_object());
}

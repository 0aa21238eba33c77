//! TTL over HTTP (issue 10): `Amber-TTL` / `Amber-Expires-At` on PUT and PATCH, `ttl_ms` /
//! `expires_at` on transaction ops, the `Amber-Expires-At` response header and the envelope's
//! `expires_at`, the collection spec endpoint's default TTL, and 404 once a document expired.
//! The engine's clock is a `ManualClock`: no test sleeps for time to pass.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use amberdb::clock::ManualClock;
use common::TestServer;

const SEC: u64 = 1_000_000;
const T0: u64 = 1_800_000_000 * SEC;

/// A server whose engine reads `clock`; the directory lives as long as the server.
fn server(clock: &ManualClock) -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock.clone();
    let s = TestServer::start_with(
        dir.path(),
        |_| {},
        move |o| {
            o.clock = Arc::new(c);
            o.ttl_reap_interval = None;
        },
    );
    (dir, s)
}

const JSON: (&str, &str) = ("content-type", "application/json");
const MERGE: (&str, &str) = ("content-type", "application/merge-patch+json");

#[test]
fn amber_ttl_on_put_sets_the_expiry_and_the_document_is_404_once_expired() {
    let clock = ManualClock::new(T0);
    let (_dir, s) = server(&clock);
    let r = s.req(
        "PUT",
        "/v1/collections/peers/docs/p1",
        &[JSON, ("amber-ttl", "30")],
        Some(b"{\"addr\":\"10.0.0.1\"}"),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let expires = r.header("amber-expires-at").unwrap().to_owned();
    assert_eq!(r.json()["expires_at"], expires.as_str());
    assert!(expires.starts_with("2027-01-15T08:00:30"), "{expires}");

    let g = s.get("/v1/collections/peers/docs/p1");
    assert_eq!(g.status, 200);
    assert_eq!(g.header("amber-expires-at"), Some(expires.as_str()));
    let m = s.get("/v1/collections/peers/docs/p1?meta=true").json();
    assert_eq!(m["expires_at"], expires.as_str());
    assert_eq!(m["expires_at_us"].as_u64().unwrap() / SEC, T0 / SEC + 30);
    let listed = s.get("/v1/collections/peers/docs").json();
    assert_eq!(listed["documents"][0]["expires_at"], expires.as_str());

    clock.advance(Duration::from_secs(30));
    let g = s.get("/v1/collections/peers/docs/p1");
    assert_eq!(g.status, 404, "{}", g.body);
    assert_eq!(g.code(), "document_not_found");
    let listed = s.get("/v1/collections/peers/docs").json();
    assert_eq!(listed["documents"].as_array().unwrap().len(), 0);
    let export = s.get("/v1/collections/peers/export");
    assert!(!export.body.contains("10.0.0.1"), "{}", export.body);
    let colls = s.get("/v1/collections").json();
    assert_eq!(colls["collections"][0]["documents"], 0);
    let status = s.get("/v1/admin/status").json();
    assert_eq!(status["ttl_expired_pending"], 1, "{status}");
    assert_eq!(status["ttl_reaped"], 0);
    // PATCH of an expired document: 404, like a missing one.
    let p = s.req(
        "PATCH",
        "/v1/collections/peers/docs/p1",
        &[MERGE],
        Some(b"{\"x\":1}"),
    );
    assert_eq!(p.status, 404, "{}", p.body);
    // A document without an expiry has no header.
    let r = s.put_json("/v1/collections/peers/docs/p2", "{}");
    assert_eq!(r.header("amber-expires-at"), None);
    assert!(r.json().get("expires_at").is_none());
}

#[test]
fn patch_keeps_the_expiry_unless_it_sends_one_and_put_clears_it() {
    let clock = ManualClock::new(T0);
    let (_dir, s) = server(&clock);
    let at = "2027-01-15T09:00:00Z";
    let r = s.req(
        "PUT",
        "/v1/collections/c/docs/k",
        &[JSON, ("amber-expires-at", at)],
        Some(b"{\"n\":1}"),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.header("amber-expires-at"),
        Some("2027-01-15T09:00:00.000000Z")
    );
    let p = s.req(
        "PATCH",
        "/v1/collections/c/docs/k",
        &[MERGE],
        Some(b"{\"n\":2}"),
    );
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(
        p.header("amber-expires-at"),
        Some("2027-01-15T09:00:00.000000Z")
    );
    let p = s.req(
        "PATCH",
        "/v1/collections/c/docs/k",
        &[MERGE, ("amber-ttl", "60")],
        Some(b"{\"n\":3}"),
    );
    assert!(p
        .header("amber-expires-at")
        .unwrap()
        .starts_with("2027-01-15T08:01:00"));
    let r = s.put_json("/v1/collections/c/docs/k", "{\"n\":4}");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("amber-expires-at"),
        None,
        "PUT without a TTL clears it"
    );
    assert_eq!(
        s.get("/v1/collections/c/docs/k").header("amber-expires-at"),
        None
    );
}

#[test]
fn bad_ttl_headers_are_400() {
    let clock = ManualClock::new(T0);
    let (_dir, s) = server(&clock);
    for h in [
        ("amber-ttl", "0"),
        ("amber-ttl", "-5"),
        ("amber-ttl", "soon"),
        ("amber-ttl", "99999999999"),
        ("amber-expires-at", "tomorrow"),
        ("amber-expires-at", "2020-01-01T00:00:00Z"),
    ] {
        let r = s.req("PUT", "/v1/collections/c/docs/k", &[JSON, h], Some(b"1"));
        assert_eq!(r.status, 400, "{h:?}: {}", r.body);
    }
    let r = s.req(
        "PUT",
        "/v1/collections/c/docs/k",
        &[
            JSON,
            ("amber-ttl", "5"),
            ("amber-expires-at", "2027-06-01T00:00:00Z"),
        ],
        Some(b"1"),
    );
    assert_eq!(r.status, 400, "both: {}", r.body);
    assert_eq!(
        s.get("/v1/collections/c/docs/k").status,
        404,
        "nothing was written"
    );
}

#[test]
fn txn_ops_carry_ttl_ms_and_expires_at_and_preconditions_see_expiry() {
    let clock = ManualClock::new(T0);
    let (_dir, s) = server(&clock);
    let body = r#"{"ops":[
        {"op":"put","collection":"c","key":"a","value":1,"ttl_ms":1500},
        {"op":"create","collection":"c","key":"b","value":2,"expires_at":"2027-01-15T08:00:10Z"},
        {"op":"put","collection":"c","key":"c","value":3}
    ]}"#;
    let r = s.req("POST", "/v1/txn", &[JSON], Some(body.as_bytes()));
    assert_eq!(r.status, 200, "{}", r.body);
    let res = &r.json()["results"];
    assert!(res[0]["expires_at"]
        .as_str()
        .unwrap()
        .starts_with("2027-01-15T08:00:01.5"));
    assert_eq!(res[1]["expires_at"], "2027-01-15T08:00:10.000000Z");
    assert!(res[2].get("expires_at").is_none());
    let bad = r#"{"ops":[{"op":"put","collection":"c","key":"a","value":1,"ttl_ms":5,"expires_at":"2027-01-15T08:00:10Z"}]}"#;
    assert_eq!(
        s.req("POST", "/v1/txn", &[JSON], Some(bad.as_bytes()))
            .status,
        400
    );

    clock.advance(Duration::from_secs(2));
    // "a" expired: a check for version 0 and a create succeed, a replace is a conflict.
    let ok = r#"{"ops":[{"op":"check","collection":"c","key":"a","version":0},
        {"op":"create","collection":"c","key":"a","value":"again"}]}"#;
    let r = s.req("POST", "/v1/txn", &[JSON], Some(ok.as_bytes()));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["results"][1]["version"], 2, "versions continue");
    clock.advance(Duration::from_secs(10));
    let replace = r#"{"ops":[{"op":"replace","collection":"c","key":"b","value":0}]}"#;
    let r = s.req("POST", "/v1/txn", &[JSON], Some(replace.as_bytes()));
    assert_eq!(r.status, 409, "{}", r.body);
}

#[test]
fn the_spec_endpoint_stores_a_default_ttl_that_writes_follow() {
    let clock = ManualClock::new(T0);
    let (_dir, s) = server(&clock);
    let g = s.get("/v1/collections/sessions/spec");
    assert_eq!(g.status, 200, "{}", g.body);
    assert_eq!(g.json(), serde_json::json!({"default_ttl_s": null}));
    let p = s.put_json("/v1/collections/sessions/spec", r#"{"default_ttl_s": 60}"#);
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.json()["default_ttl_s"], 60);
    assert_eq!(
        s.get("/v1/collections/sessions/spec").json()["default_ttl_s"],
        60
    );
    for bad in [
        r#"{"default_ttl_s": 0}"#,
        r#"{"default_ttl_s": "x"}"#,
        r#"{"ttl": 5}"#,
    ] {
        let r = s.put_json("/v1/collections/sessions/spec", bad);
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    let w = s.put_json("/v1/collections/sessions/docs/s1", "{}");
    assert!(w
        .header("amber-expires-at")
        .unwrap()
        .starts_with("2027-01-15T08:01:00"));
    let own = s.req(
        "PUT",
        "/v1/collections/sessions/docs/s2",
        &[JSON, ("amber-ttl", "5")],
        Some(b"{}"),
    );
    assert!(own
        .header("amber-expires-at")
        .unwrap()
        .starts_with("2027-01-15T08:00:05"));
    // The spec is not a collection anyone lists.
    let colls = s.get("/v1/collections").json();
    let names: Vec<_> = colls["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["sessions"]);
    clock.advance(Duration::from_secs(61));
    assert_eq!(s.get("/v1/collections/sessions/docs/s1").status, 404);
    let p = s.put_json(
        "/v1/collections/sessions/spec",
        r#"{"default_ttl_s": null}"#,
    );
    assert_eq!(p.json()["default_ttl_s"], serde_json::Value::Null);
    let w = s.put_json("/v1/collections/sessions/docs/s3", "{}");
    assert_eq!(w.header("amber-expires-at"), None);
}

#[test]
fn the_openapi_document_describes_the_ttl_headers_and_the_spec_endpoint() {
    let clock = ManualClock::new(T0);
    let (_dir, s) = server(&clock);
    let doc = s.get("/openapi.json").json();
    let spec = &doc["paths"]["/v1/collections/{collection}/spec"];
    assert!(
        spec.get("get").is_some() && spec.get("put").is_some(),
        "{spec}"
    );
    let put = &doc["paths"]["/v1/collections/{collection}/docs/{key}"]["put"];
    let params: Vec<_> = put["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(params.iter().any(|p| p == "Amber-TTL"), "{params:?}");
    assert!(params.iter().any(|p| p == "Amber-Expires-At"), "{params:?}");
    let txn = doc["components"]["schemas"]["TxnOp"].to_string();
    assert!(
        txn.contains("ttl_ms") && txn.contains("expires_at"),
        "{txn}"
    );
}

/// `[ttl] reap_interval` and `reap_batch` in the server config reach the engine: with a
/// batch of 2, five expired documents go in three reaper commits of at most two deletes,
/// run by the background reaper (polled, never slept for); `reap_interval = 0` runs none.
#[test]
fn reaper_interval_and_batch_from_the_config_reach_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let load = |extra: &[(&str, &str)]| {
        let mut flags = vec![
            ("listen".to_string(), "127.0.0.1:0".to_string()),
            ("data".to_string(), dir.path().display().to_string()),
        ];
        flags.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        amberdb_server::Config::load(None, vec![], &flags).unwrap()
    };
    let off = load(&[("ttl.reap_interval", "0")]);
    assert_eq!(off.engine_options().ttl_reap_interval, None);
    let defaults = load(&[]).engine_options();
    assert_eq!(
        (defaults.ttl_reap_interval, defaults.ttl_reap_batch),
        (Some(Duration::from_secs(1)), 1000)
    );

    let config = load(&[("ttl.reap_interval", "1"), ("ttl.reap_batch", "2")]);
    let clock = ManualClock::new(T0);
    let c = clock.clone();
    let s = TestServer::start_with(
        dir.path(),
        move |cfg| *cfg = config,
        move |o| o.clock = Arc::new(c),
    );
    for i in 0..5 {
        let r = s.req(
            "PUT",
            &format!("/v1/collections/peers/docs/p{i}"),
            &[JSON, ("amber-ttl", "1")],
            Some(b"{}"),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    clock.advance(Duration::from_secs(5));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = s.get("/v1/admin/status").json();
        if status["ttl_reaped"] == 5 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = s.get("/v1/log?from_lsn=1").json();
    let reaps: Vec<usize> = log["commits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["reason"] == "ttl")
        .map(|c| c["ops"].as_array().unwrap().len())
        .collect();
    assert_eq!(reaps, vec![2, 2, 1], "{log}");
    s.stop().unwrap();
}

//! Admin endpoints (status, checkpoint, verify), probes, Prometheus metrics and the OpenAPI
//! document.

#![allow(clippy::unwrap_used)]

mod common;

use common::TestServer;

#[test]
fn status_checkpoint_and_verify() {
    let s = TestServer::start(|_| {});
    for i in 0..20 {
        s.put_json(&format!("/v1/collections/players/docs/p{i}"), "{\"hp\": 1}");
    }
    let st = s.get("/v1/admin/status").json();
    assert_eq!(st["lsn"], 20);
    assert_eq!(st["durable_lsn"], 20);
    assert!(st["log_bytes"].as_u64().unwrap() > 0);
    assert!(st["poisoned"].is_null());
    assert_eq!(st["shutting_down"], false);
    assert!(st["last_backup"].is_null());
    assert_eq!(st["collections"][0]["documents"], 20);

    let r = s.req("POST", "/v1/admin/checkpoint", &[], None);
    assert_eq!(r.status, 200, "{}", r.body);
    let c = r.json();
    assert_eq!(c["lsn"], 20);
    assert_eq!(c["written"], true);
    assert!(c["bytes"].as_u64().unwrap() > 0);
    assert_eq!(
        s.req("POST", "/v1/admin/checkpoint", &[], None).json()["written"],
        false
    );
    assert_eq!(s.get("/v1/admin/status").json()["last_checkpoint_lsn"], 20);

    let r = s.req("POST", "/v1/admin/verify", &[], None);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["clean"], true, "{v}");
    assert!(v["documents_checked"].as_u64().unwrap() >= 20);
    assert_eq!(v["problems"], serde_json::json!([]));
}

#[test]
fn probes_and_metrics() {
    let s = TestServer::start(|_| {});
    assert_eq!(s.get("/healthz").json()["status"], "ok");
    assert_eq!(s.get("/readyz").json()["status"], "ok");
    s.put_json("/v1/collections/players/docs/a", "1");
    s.get("/v1/collections/players/docs/a");
    s.get("/v1/collections/players/docs/missing");
    let r = s.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let m = r.body;
    let route = "route=\"/v1/collections/{collection}/docs/{key}\"";
    assert!(
        m.contains(&format!(
            "amberdb_http_requests_total{{{route},method=\"GET\",status=\"200\"}} 1"
        )),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "amberdb_http_requests_total{{{route},method=\"GET\",status=\"404\"}} 1"
        )),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "amberdb_http_request_duration_seconds_count{{{route},method=\"PUT\"}} 1"
        )),
        "{m}"
    );
    assert!(m.contains("amberdb_commits_total 1"), "{m}");
    assert!(
        m.contains("amberdb_feed_commits_read_total{source=\"memory\"} 0"),
        "{m}"
    );
    assert!(
        m.contains("amberdb_feed_commits_read_total{source=\"log\"} 0"),
        "{m}"
    );
    assert!(m.contains("amberdb_fsyncs_total "), "{m}");
    assert!(m.contains("amberdb_commits_per_fsync "), "{m}");
    assert!(m.contains("amberdb_log_bytes "), "{m}");
    assert!(
        m.contains("amberdb_documents{collection=\"players\"} 1"),
        "{m}"
    );
    assert!(m.contains("amberdb_poisoned 0"), "{m}");
    // Every sample line is `name{labels} value` or `name value`.
    for line in m.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad sample line: {line}");
    }
}

#[test]
fn openapi_document_describes_every_route() {
    let s = TestServer::start(|_| {});
    let doc = s.get("/openapi.json").json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/v1/collections", &["get"][..]),
        ("/v1/collections/{collection}", &["get"]),
        ("/v1/collections/{collection}/docs", &["get", "post"]),
        ("/v1/collections/{collection}/export", &["get"]),
        ("/v1/collections/{collection}/spec", &["get", "put"]),
        (
            "/v1/collections/{collection}/docs/{key}",
            &["get", "put", "patch", "delete"],
        ),
        ("/v1/txn", &["post"]),
        ("/v1/streams", &["get"]),
        ("/v1/streams/{stream}", &["get", "delete"]),
        ("/v1/streams/{stream}/append", &["post"]),
        ("/v1/streams/{stream}/retention", &["get", "put"]),
        ("/v1/revert", &["post"]),
        ("/v1/undo", &["post"]),
        ("/v1/admin/restore", &["post"]),
        ("/v1/admin/status", &["get"]),
        ("/v1/admin/checkpoint", &["post"]),
        ("/v1/admin/verify", &["post"]),
        ("/v1/admin/blobs/gc", &["post"]),
        ("/v1/admin/keys/rotate", &["post"]),
        ("/v1/admin/backups", &["get", "post"]),
        ("/v1/admin/backups/{id}/verify", &["post"]),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
        ("/metrics", &["get"]),
        ("/openapi.json", &["get"]),
        ("/v1/changes", &["get"]),
        ("/v1/admin/events", &["get"]),
        ("/v1/log", &["get"]),
        ("/v1/collections/{collection}/docs/{key}/history", &["get"]),
        ("/v1/collections/{collection}/blobs", &["get"]),
        (
            "/v1/collections/{collection}/blobs/{key}",
            &["get", "put", "delete"],
        ),
        ("/v1/collections/{collection}/blobs/{key}/staged", &["post"]),
        ("/v1/collections/{collection}/migrate", &["post"]),
        ("/v1/collections/{collection}/migrations", &["get"]),
    ] {
        for m in methods {
            assert!(
                paths.get(path).and_then(|p| p.get(*m)).is_some(),
                "{m} {path} missing from /openapi.json"
            );
        }
    }
    assert_eq!(
        paths.len(),
        34,
        "a route is served but not documented, or the reverse"
    );
    let put = &paths["/v1/collections/{collection}/docs/{key}"]["put"]["responses"];
    for status in [
        "200", "201", "400", "401", "403", "412", "413", "415", "503",
    ] {
        assert!(put.get(status).is_some(), "PUT does not document {status}");
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    // Document values in history versions and changes are any JSON (false, 3, "x", ...),
    // not only objects (schemathesis found `"value": false` refused by the old schema).
    for schema in ["VersionBody", "ChangeDoc"] {
        let value = &doc["components"]["schemas"][schema]["properties"]["value"];
        assert!(value.is_object(), "{schema}.value missing");
        assert!(
            value.get("type").is_none(),
            "{schema}.value is typed: {value}"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

//! Blobs over HTTP: streamed PUT of any content type, GET with ETag, Amber-Sha256, ranges
//! and conditions, HEAD, DELETE, listing, digests, the size limit, and the `blob_ref`
//! transaction op.

#![allow(clippy::unwrap_used)]

mod common;

use common::TestServer;
use sha2::{Digest, Sha256};

struct Raw {
    status: u16,
    headers: std::collections::HashMap<String, String>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, n: &str) -> Option<&str> {
        self.headers.get(n).map(String::as_str)
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

fn raw(
    s: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Raw {
    let mut b = ureq::http::Request::builder()
        .method(method)
        .uri(s.url(path));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b
        .body(body.map(<[u8]>::to_vec).unwrap_or_default())
        .unwrap();
    let mut resp = common::agent().run(req).unwrap();
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = resp
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .unwrap();
    Raw {
        status,
        headers,
        body,
    }
}

fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn hex_sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

const URL: &str = "/v1/collections/cards/blobs/alice.png";

#[test]
fn a_png_put_round_trips_with_its_content_type_etag_and_sha256() {
    let s = TestServer::start(|_| {});
    let png = bytes(3 << 20);
    let r = raw(&s, "PUT", URL, &[("content-type", "image/png")], Some(&png));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["sha256"], hex_sha(&png));
    assert_eq!(r.json()["size"], png.len());
    let g = raw(&s, "GET", URL, &[], None);
    assert_eq!(g.status, 200);
    assert_eq!(g.body, png);
    assert_eq!(g.header("content-type"), Some("image/png"));
    assert_eq!(g.header("content-length"), Some(&*png.len().to_string()));
    assert_eq!(g.header("etag"), Some("\"1\""));
    assert_eq!(g.header("amber-sha256"), Some(&*hex_sha(&png)));
    let h = raw(&s, "HEAD", URL, &[], None);
    assert_eq!((h.status, h.body.len()), (200, 0));
    assert_eq!(h.header("content-length"), Some(&*png.len().to_string()));
    // Overwrite: 200, version 2.
    let r = raw(
        &s,
        "PUT",
        URL,
        &[("content-type", "image/png")],
        Some(b"tiny"),
    );
    assert_eq!((r.status, r.json()["version"].as_u64()), (200, Some(2)));
    assert_eq!(raw(&s, "GET", URL, &[], None).body, b"tiny");
}

#[test]
fn range_requests_answer_206_and_unsatisfiable_ones_416() {
    let s = TestServer::start(|_| {});
    let b = bytes(200_000);
    raw(&s, "PUT", URL, &[], Some(&b));
    for (range, lo, hi) in [
        ("bytes=0-0", 0, 0),
        ("bytes=100-65636", 100, 65_636),
        ("bytes=199990-", 199_990, 199_999),
        ("bytes=-10", 199_990, 199_999),
    ] {
        let g = raw(&s, "GET", URL, &[("range", range)], None);
        assert_eq!(g.status, 206, "{range}");
        assert_eq!(g.body, b[lo..=hi], "{range}");
        assert_eq!(
            g.header("content-range"),
            Some(&*format!("bytes {lo}-{hi}/200000")),
            "{range}"
        );
    }
    for range in ["bytes=200000-", "bytes=5-1", "bytes=0-1,5-6", "items=0-1"] {
        let g = raw(&s, "GET", URL, &[("range", range)], None);
        assert_eq!(g.status, 416, "{range}");
        assert_eq!(g.header("content-range"), Some("bytes */200000"), "{range}");
    }
}

#[test]
fn conditional_requests_use_the_blob_version() {
    let s = TestServer::start(|_| {});
    let r = raw(&s, "PUT", URL, &[("if-none-match", "*")], Some(b"one"));
    assert_eq!(r.status, 201);
    assert_eq!(
        raw(&s, "PUT", URL, &[("if-none-match", "*")], Some(b"x")).status,
        412
    );
    assert_eq!(
        raw(&s, "PUT", URL, &[("if-match", "\"7\"")], Some(b"x")).status,
        412
    );
    assert_eq!(
        raw(&s, "PUT", URL, &[("if-match", "\"1\"")], Some(b"two")).status,
        200
    );
    assert_eq!(
        raw(&s, "GET", URL, &[("if-none-match", "\"2\"")], None).status,
        304
    );
    assert_eq!(
        raw(&s, "GET", URL, &[("if-match", "\"1\"")], None).status,
        412
    );
    assert_eq!(raw(&s, "GET", URL, &[], None).body, b"two");
}

#[test]
fn a_wrong_declared_digest_is_400_and_stores_nothing() {
    let s = TestServer::start(|_| {});
    let b = bytes(10_000);
    let wrong = hex_sha(b"other");
    let r = raw(&s, "PUT", URL, &[("amber-sha256", &wrong)], Some(&b));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "digest_mismatch");
    assert_eq!(raw(&s, "GET", URL, &[], None).status, 404);
    use base64::Engine;
    let digest = format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&b))
    );
    let r = raw(&s, "PUT", URL, &[("content-digest", &digest)], Some(&b));
    assert_eq!(r.status, 201);
    let r = raw(&s, "PUT", URL, &[("amber-sha256", &hex_sha(&b))], Some(&b));
    assert_eq!(r.status, 200);
}

#[test]
fn an_upload_over_limits_blob_bytes_is_413_and_stores_nothing() {
    let s = TestServer::start(|c| c.blob_limit = 100_000);
    let r = raw(&s, "PUT", URL, &[], Some(&bytes(100_001)));
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["code"], "blob_too_large");
    assert_eq!(raw(&s, "GET", URL, &[], None).status, 404);
    // Bodies larger than limits.body_bytes are fine for blobs.
    let s = TestServer::start(|c| c.body_limit = 4096);
    let big = bytes(1 << 20);
    assert_eq!(raw(&s, "PUT", URL, &[], Some(&big)).status, 201);
    assert_eq!(raw(&s, "GET", URL, &[], None).body, big);
}

#[test]
fn delete_and_listing_with_metadata() {
    let s = TestServer::start(|_| {});
    for k in ["a", "b", "c"] {
        raw(
            &s,
            "PUT",
            &format!("/v1/collections/cards/blobs/{k}"),
            &[("content-type", "text/plain")],
            Some(k.as_bytes()),
        );
    }
    let l = raw(&s, "GET", "/v1/collections/cards/blobs?limit=2", &[], None).json();
    assert_eq!(l["blobs"].as_array().unwrap().len(), 2);
    assert_eq!(l["blobs"][0]["key"], "a");
    assert_eq!(l["blobs"][0]["content_type"], "text/plain");
    assert_eq!(l["blobs"][0]["sha256"], hex_sha(b"a"));
    assert_eq!(l["next"], "b");
    let d = raw(&s, "DELETE", "/v1/collections/cards/blobs/a", &[], None);
    assert_eq!((d.status, d.json()["deleted"].as_bool()), (200, Some(true)));
    assert_eq!(
        raw(&s, "GET", "/v1/collections/cards/blobs/a", &[], None).status,
        404
    );
    let l = raw(&s, "GET", "/v1/collections/cards/blobs", &[], None).json();
    assert_eq!(l["blobs"].as_array().unwrap().len(), 2);
}

#[test]
fn a_staged_blob_becomes_visible_with_the_transaction_that_names_it() {
    let s = TestServer::start(|_| {});
    let png = bytes(50_000);
    let st = raw(
        &s,
        "POST",
        "/v1/collections/cards/blobs/bob/staged",
        &[("content-type", "image/png")],
        Some(&png),
    );
    assert_eq!(st.status, 201);
    let id = st.json()["staging_id"].as_str().unwrap().to_owned();
    assert_eq!(
        raw(&s, "GET", "/v1/collections/cards/blobs/bob", &[], None).status,
        404
    );
    let txn = serde_json::json!({"ops": [
        {"op": "put", "collection": "chars", "key": "bob", "value": {"card": "bob"}},
        {"op": "blob_ref", "collection": "cards", "key": "bob", "staging_id": id},
    ]});
    let r = s.req(
        "POST",
        "/v1/txn",
        &[("content-type", "application/json")],
        Some(txn.to_string().as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["results"][1]["collection"], "cards");
    let g = raw(&s, "GET", "/v1/collections/cards/blobs/bob", &[], None);
    assert_eq!((g.status, g.body == png), (200, true));
    assert_eq!(g.header("amber-lsn"), Some(&*r.json()["lsn"].to_string()));
}

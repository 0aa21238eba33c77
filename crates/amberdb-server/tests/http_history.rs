//! History and as-of over HTTP: `GET .../docs/{key}/history` (paging, values, deletes),
//! `GET .../docs/{key}?as_of=|as_of_lsn=` (headers, 404 before creation and after delete,
//! 410 before the window), `GET .../docs?as_of_lsn=`, `GET /v1/log` (filters, paging,
//! scopes), the 400s of bad queries, and the window in `/v1/admin/status`.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::{token, Resp, TestServer};
use serde_json::json;

const DOC: &str = "/v1/collections/players/docs/alice";

fn lsn(r: &Resp) -> u64 {
    r.header("amber-lsn").unwrap().parse().unwrap()
}

/// alice: v1 (hp 10), v2 (hp 20), deleted, v3 (hp 30); bob: v1. Returns the LSNs.
fn seed(s: &TestServer) -> Vec<u64> {
    let mut lsns = vec![];
    for body in [r#"{"hp": 10}"#, r#"{"hp": 20}"#] {
        let r = s.put_json(DOC, body);
        assert!(r.status == 200 || r.status == 201, "{}", r.body);
        lsns.push(lsn(&r));
    }
    let r = s.req("DELETE", DOC, &[], None);
    assert_eq!(r.status, 200, "{}", r.body);
    lsns.push(lsn(&r));
    let r = s.put_json(DOC, r#"{"hp": 30}"#);
    lsns.push(lsn(&r));
    let r = s.put_json("/v1/collections/players/docs/bob", r#"{"hp": 1}"#);
    lsns.push(lsn(&r));
    lsns
}

#[test]
fn history_lists_every_version_and_the_delete_newest_first_and_pages_by_before_lsn() {
    let s = TestServer::start(|_| {});
    let l = seed(&s);
    let r = s.get(&format!("{DOC}/history"));
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    let v = j["versions"].as_array().unwrap();
    let summary: Vec<(u64, u64, &str, bool)> = v
        .iter()
        .map(|v| {
            (
                v["lsn"].as_u64().unwrap(),
                v["version"].as_u64().unwrap(),
                v["op"].as_str().unwrap(),
                v["deleted"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (l[3], 3, "put", false),
            (l[2], 2, "delete", true),
            (l[1], 2, "put", false),
            (l[0], 1, "put", false),
        ]
    );
    assert_eq!(v[0]["value"], json!({"hp": 30}));
    assert_eq!(v[3]["value"], json!({"hp": 10}));
    assert!(v[1]["value"].is_null() && v[1]["sha256"].is_null());
    assert_eq!(v[0]["sha256"].as_str().unwrap().len(), 64);
    assert!(v[0]["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(j["next"], json!(null));
    assert_eq!(j["retained_from_lsn"], json!(1));

    // Two at a time, without values.
    let r = s.get(&format!("{DOC}/history?limit=2&values=false"));
    let j = r.json();
    assert_eq!(j["versions"].as_array().unwrap().len(), 2);
    assert!(j["versions"][0].get("value").is_none_or(|v| v.is_null()));
    assert_eq!(j["next"], json!(l[2]));
    let r = s.get(&format!("{DOC}/history?limit=2&before_lsn={}", l[2]));
    let j = r.json();
    let lsns: Vec<u64> = j["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["lsn"].as_u64().unwrap())
        .collect();
    assert_eq!(lsns, vec![l[1], l[0]]);
    assert_eq!(j["next"], json!(null));

    // A key that never existed has an empty history; bad queries are 400.
    let r = s.get("/v1/collections/players/docs/nobody/history");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["versions"], json!([]));
    for q in ["limit=0", "limit=1001", "before_lsn=x", "values=maybe"] {
        let r = s.get(&format!("{DOC}/history?{q}"));
        assert_eq!(r.status, 400, "{q}: {}", r.body);
    }
    s.stop().unwrap();
}

#[test]
fn as_of_reads_answer_the_document_at_that_point_with_its_headers() {
    let s = TestServer::start(|_| {});
    let l = seed(&s);
    let r = s.get(&format!("{DOC}?as_of_lsn={}", l[0]));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"hp": 10}));
    assert_eq!(r.header("etag"), Some("\"1\""));
    assert_eq!(r.header("amber-version"), Some("1"));
    assert_eq!(r.header("amber-lsn"), Some(l[0].to_string().as_str()));
    assert_eq!(r.header("amber-as-of-lsn"), Some(l[0].to_string().as_str()));
    // Between two writes: the older one, but the point resolved is the one asked.
    let r = s.get(&format!("{DOC}?as_of_lsn={}&meta=true", l[1]));
    assert_eq!(r.json()["value"], json!({"hp": 20}));
    assert_eq!(r.json()["version"], json!(2));
    // Deleted at that point, and not yet created at LSN 0: 404.
    let r = s.get(&format!("{DOC}?as_of_lsn={}", l[2]));
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "document_not_found");
    let r = s.get("/v1/collections/players/docs/bob?as_of_lsn=1");
    assert_eq!(r.status, 404);
    // By time: the history's commit time of v2 resolves to v2's LSN.
    let h = s.get(&format!("{DOC}/history")).json();
    let t = h["versions"][2]["time"].as_str().unwrap().to_owned();
    let r = s.get(&format!("{DOC}?as_of={}", t.replace('+', "%2B")));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"hp": 20}));
    assert_eq!(r.header("amber-as-of-lsn"), Some(l[1].to_string().as_str()));
    // A future LSN, both parameters, or a bad time: 400.
    for q in [
        "as_of_lsn=999999".to_string(),
        format!("as_of_lsn=1&as_of={t}"),
        "as_of=yesterday".to_string(),
    ] {
        let r = s.get(&format!("{DOC}?{q}"));
        assert_eq!(r.status, 400, "{q}: {}", r.body);
    }
    // Listing as of: the collection at that point.
    let r = s.get(&format!("/v1/collections/players/docs?as_of_lsn={}", l[1]));
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    let keys: Vec<&str> = j["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, vec!["alice"]);
    assert_eq!(j["documents"][0]["value"], json!({"hp": 20}));
    assert_eq!(j["as_of_lsn"], json!(l[1]));
    assert_eq!(r.header("amber-as-of-lsn"), Some(l[1].to_string().as_str()));
    let r = s.get(&format!("/v1/collections/players/docs?as_of_lsn={}", l[2]));
    assert_eq!(r.json()["documents"], json!([]));
    let r = s.get(&format!("/v1/collections/players/docs?as_of_lsn={}", l[4]));
    assert_eq!(r.json()["documents"].as_array().unwrap().len(), 2);
    s.stop().unwrap();
}

#[test]
fn points_before_the_history_window_answer_410_history_lost_with_the_window_start() {
    let s = TestServer::start(|c| {
        c.segment_size = 4096;
        c.history_retention = Duration::ZERO;
    });
    let pad = "x".repeat(500);
    for i in 0..40 {
        let r = s.put_json(DOC, &format!(r#"{{"hp": {i}, "pad": "{pad}"}}"#));
        assert!(r.status < 300, "{}", r.body);
    }
    let r = s.req("POST", "/v1/admin/checkpoint", &[], None);
    assert_eq!(r.status, 200, "{}", r.body);
    let status = s.get("/v1/admin/status").json();
    let from = status["history"]["retained_from_lsn"].as_u64().unwrap();
    assert!(from > 1, "{status}");
    assert!(status["history"]["retained_bytes"].as_u64().unwrap() > 0);
    assert!(status["history"]["retained_from_time"].as_str().is_some());
    for path in [
        format!("{DOC}?as_of_lsn=1"),
        "/v1/collections/players/docs?as_of_lsn=1".to_string(),
        format!("{DOC}?as_of=2001-01-01T00:00:00Z"),
    ] {
        let r = s.get(&path);
        assert_eq!(r.status, 410, "{path}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], "history_lost");
        assert_eq!(
            r.json()["error"]["details"]["retained_from_lsn"],
            json!(from)
        );
    }
    let h = s.get(&format!("{DOC}/history?limit=1000")).json();
    assert_eq!(h["retained_from_lsn"], json!(from));
    assert!(h["versions"]
        .as_array()
        .unwrap()
        .iter()
        .all(|v| v["lsn"].as_u64().unwrap() >= from));
    s.stop().unwrap();
}

#[test]
fn the_log_lists_commits_with_reason_and_documents_filtered_paged_and_scoped() {
    let (reader, r) = token("reader", &["read:players"]);
    let (all, a) = token("all", &["read:*", "write:*", "admin"]);
    let s = TestServer::start(move |c| c.tokens = vec![r, a]);
    let as_all = format!("Bearer {all}");
    let as_reader = format!("Bearer {reader}");
    let put = |path: &str, body: &str| {
        let r = s.req(
            "PUT",
            path,
            &[
                ("authorization", &as_all),
                ("content-type", "application/json"),
            ],
            Some(body.as_bytes()),
        );
        assert!(r.status < 300, "{}", r.body);
        lsn(&r)
    };
    let l1 = put(DOC, "1");
    let l2 = put("/v1/collections/secrets/docs/s", "2");
    let l3 = put(DOC, "3");
    let get = |who: &str, q: &str| {
        s.req(
            "GET",
            &format!("/v1/log{q}"),
            &[("authorization", who)],
            None,
        )
    };
    let r = get(&as_all, "");
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    let lsns: Vec<u64> = j["commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["lsn"].as_u64().unwrap())
        .collect();
    assert_eq!(lsns, vec![l1, l2, l3]);
    assert_eq!(j["commits"][0]["reason"], "write");
    assert_eq!(
        j["commits"][0]["ops"][0],
        json!({"collection": "players", "key": "alice", "op": "put", "version": 1, "prev_lsn": 0})
    );
    assert_eq!(j["commits"][2]["ops"][0]["prev_lsn"], json!(l1));
    assert_eq!(j["next_from_lsn"], json!(null));
    // LSN range, key filter, paging.
    let j = get(&as_all, &format!("?from_lsn={l2}&to_lsn={l2}")).json();
    assert_eq!(j["commits"].as_array().unwrap().len(), 1);
    assert_eq!(j["commits"][0]["lsn"], json!(l2));
    let j = get(&as_all, "?key=alice").json();
    assert_eq!(j["commits"].as_array().unwrap().len(), 2);
    let j = get(&as_all, "?limit=1").json();
    assert_eq!(j["commits"].as_array().unwrap().len(), 1);
    assert_eq!(j["next_from_lsn"], json!(l1 + 1));
    let t = j["commits"][0]["time"].as_str().unwrap().to_owned();
    let j = get(&as_all, &format!("?to_time={t}")).json();
    assert_eq!(j["commits"].as_array().unwrap().len(), 1);
    // A reader of players sees neither the secrets commit nor may it ask for secrets.
    let j = get(&as_reader, "").json();
    let lsns: Vec<u64> = j["commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["lsn"].as_u64().unwrap())
        .collect();
    assert_eq!(lsns, vec![l1, l3]);
    assert_eq!(get(&as_reader, "?collection=secrets").status, 403);
    assert_eq!(s.req("GET", "/v1/log", &[], None).status, 401);
    // History and as-of need the read scope of the collection.
    let r = s.req(
        "GET",
        "/v1/collections/secrets/docs/s/history",
        &[("authorization", &as_reader)],
        None,
    );
    assert_eq!(r.status, 403);
    let r = s.req(
        "GET",
        "/v1/collections/secrets/docs/s?as_of_lsn=1",
        &[("authorization", &as_reader)],
        None,
    );
    assert_eq!(r.status, 403);
    for q in [
        "?limit=0",
        "?limit=5000",
        "?from_time=noon",
        "?collection=Bad%20Name",
    ] {
        assert_eq!(get(&as_all, q).status, 400, "{q}");
    }
    s.stop().unwrap();
}

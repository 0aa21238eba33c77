//! Listing with prefix, range and cursor; the NDJSON export; the collections endpoints.

#![allow(clippy::unwrap_used)]

mod common;

use common::TestServer;

#[test]
fn listing_pages_with_a_cursor_and_filters() {
    let s = TestServer::start(|_| {});
    for i in 0..25 {
        assert_eq!(
            s.put_json(
                &format!("/v1/collections/players/docs/p{i:02}"),
                &format!("{{\"i\": {i}}}")
            )
            .status,
            201
        );
    }
    assert_eq!(
        s.put_json("/v1/collections/players/docs/zed", "0").status,
        201
    );

    // Walk every page of 10 with the cursor.
    let mut keys = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("/v1/collections/players/docs?prefix=p&limit=10&start_after={c}"),
            None => "/v1/collections/players/docs?prefix=p&limit=10".to_string(),
        };
        let page = s.get(&q).json();
        let docs = page["documents"].as_array().unwrap();
        assert!(docs.len() <= 10);
        keys.extend(docs.iter().map(|d| d["key"].as_str().unwrap().to_owned()));
        assert!(docs
            .iter()
            .all(|d| d["version"] == 1 && d["sha256"].is_string()));
        match page["next"].as_str() {
            Some(n) => cursor = Some(n.to_owned()),
            None => break,
        }
    }
    let want: Vec<String> = (0..25).map(|i| format!("p{i:02}")).collect();
    assert_eq!(keys, want);

    // A range.
    let page = s
        .get("/v1/collections/players/docs?start_after=p05&end_before=p08")
        .json();
    let got: Vec<&str> = page["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["key"].as_str().unwrap())
        .collect();
    assert_eq!(got, ["p06", "p07"]);
    assert!(page["next"].is_null());

    // Default page size is 100; an unknown collection is an empty page.
    assert_eq!(
        s.get("/v1/collections/players/docs").json()["documents"]
            .as_array()
            .unwrap()
            .len(),
        26
    );
    assert_eq!(
        s.get("/v1/collections/ghosts/docs").json()["documents"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn export_streams_every_document_as_ndjson() {
    let s = TestServer::start(|_| {});
    let mut ops = vec![];
    for i in 0..2500 {
        ops.push(serde_json::json!({"op": "put", "collection": "chat", "key": format!("m{i:05}"), "value": {"i": i}}));
    }
    let body = serde_json::json!({ "ops": ops }).to_string();
    let r = s.req(
        "POST",
        "/v1/txn",
        &[("content-type", "application/json")],
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.body);

    let r = s.get("/v1/collections/chat/export");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let lines: Vec<serde_json::Value> = r
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2500);
    for (i, d) in lines.iter().enumerate() {
        assert_eq!(d["key"], format!("m{i:05}"));
        assert_eq!(d["value"]["i"], i);
    }
    assert_eq!(s.get("/v1/collections/empty/export").body, "");
}

#[test]
fn collections_are_listed_with_counts() {
    let s = TestServer::start(|_| {});
    assert_eq!(
        s.get("/v1/collections").json()["collections"],
        serde_json::json!([])
    );
    s.put_json("/v1/collections/players/docs/a", "1");
    s.put_json("/v1/collections/players/docs/b", "1");
    s.put_json("/v1/collections/chat/docs/a", "1");
    let all = s.get("/v1/collections").json();
    assert_eq!(
        all["collections"],
        serde_json::json!([{"name": "chat", "documents": 1}, {"name": "players", "documents": 2}])
    );
    let one = s.get("/v1/collections/players").json();
    assert_eq!(one["name"], "players");
    assert_eq!(one["documents"], 2);
    assert_eq!(one["spec"]["schema_version"], 1);
    assert!(one["lsn"].as_u64().unwrap() >= 3);
}

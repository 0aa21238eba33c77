//! Streams over HTTP (issue 13): append one JSON value or an NDJSON batch in one commit,
//! `expected_seq` 409s, reads by seq and by time as JSON and NDJSON, listing, retention,
//! delete, the txn op `append`, and bounds checked before work.

#![allow(clippy::unwrap_used)]

mod common;

use common::TestServer;
use serde_json::json;

fn append(s: &TestServer, stream: &str, query: &str, ct: &str, body: &str) -> common::Resp {
    s.req(
        "POST",
        &format!("/v1/streams/{stream}/append{query}"),
        &[("content-type", ct)],
        Some(body.as_bytes()),
    )
}

#[test]
fn json_and_ndjson_appends_get_gap_free_seqs_and_read_back_as_json_and_ndjson() {
    let s = TestServer::start(|_| {});
    let r = append(&s, "chat", "", "application/json", r#"{"line": "hi"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (
            r.json()["first_seq"].as_u64(),
            r.json()["last_seq"].as_u64()
        ),
        (Some(1), Some(1))
    );
    let r = append(
        &s,
        "chat",
        "?expected_seq=1",
        "application/x-ndjson",
        "{\"line\": \"a\"}\n\n[1, 2]\n\"c\"\n",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(
        (v["first_seq"].as_u64(), v["last_seq"].as_u64()),
        (Some(2), Some(4))
    );

    let r = s.get("/v1/streams/chat?from_seq=2&limit=2");
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["entries"][0]["seq"], 2);
    assert_eq!(v["entries"][0]["value"], json!({"line": "a"}));
    assert_eq!(v["entries"][1]["value"], json!([1, 2]));
    assert_eq!(
        (v["next_seq"].as_u64(), v["last_seq"].as_u64()),
        (Some(4), Some(4))
    );

    let r = s.req(
        "GET",
        "/v1/streams/chat",
        &[("accept", "application/x-ndjson")],
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(r.header("amber-next-seq"), Some("5"));
    let lines: Vec<serde_json::Value> = r
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[3]["value"], "c");

    // By time: the first entry committed at or after the time of entry 2.
    let t = v["entries"][0]["commit_time"].as_str().unwrap().to_owned();
    let r = s.get(&format!("/v1/streams/chat?from_time={t}"));
    assert_eq!(r.json()["entries"][0]["seq"], 2, "{}", r.body);

    let r = s.get("/v1/streams");
    assert_eq!(r.json()["streams"][0]["name"], "chat");
    assert_eq!(r.json()["streams"][0]["entries"], 4);
    assert_eq!(r.json()["streams"][0]["first_seq"], 1);
}

#[test]
fn a_stale_expected_seq_is_409_with_expected_and_actual_and_appends_nothing() {
    let s = TestServer::start(|_| {});
    append(&s, "log", "", "application/json", "1");
    let r = append(&s, "log", "?expected_seq=0", "application/json", "2");
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.code(), "conflict");
    let c = &r.json()["error"]["details"]["conflicts"][0];
    assert_eq!(
        (c["expected"].as_u64(), c["actual"].as_u64()),
        (Some(0), Some(1)),
        "{c}"
    );
    assert_eq!(c["reason"], "stream_seq_mismatch");
    assert_eq!(s.get("/v1/streams/log").json()["last_seq"], 1);
}

#[test]
fn retention_delete_and_missing_streams() {
    let s = TestServer::start(|_| {});
    for i in 0..6 {
        append(&s, "ev", "", "application/json", &i.to_string());
    }
    let r = s.put_json(
        "/v1/streams/ev/retention",
        r#"{"max_entries": 2, "max_age_s": null}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (r.json()["first_seq"].as_u64(), r.json()["entries"].as_u64()),
        (Some(5), Some(2))
    );
    assert_eq!(s.get("/v1/streams/ev/retention").json()["max_entries"], 2);
    let r = s.put_json(
        "/v1/streams/ev/retention",
        r#"{"max_entries": 0, "max_age_s": null}"#,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let r = s.req("DELETE", "/v1/streams/ev", &[], None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["deleted"], true);
    assert_eq!(s.get("/v1/streams/ev").code(), "stream_not_found");
    assert_eq!(s.req("DELETE", "/v1/streams/ev", &[], None).status, 404);
    let r = append(&s, "ev", "?expected_seq=0", "application/json", "\"again\"");
    assert_eq!(
        r.json()["first_seq"],
        1,
        "a deleted stream starts again at 1"
    );
}

#[test]
fn the_txn_op_append_commits_with_a_document_write() {
    let s = TestServer::start(|_| {});
    let body = json!({"ops": [
        {"op": "append", "stream": "chat.c1", "values": [{"line": "hello"}], "expected_seq": 0},
        {"op": "put", "collection": "conv", "key": "c1", "value": {"unread": 1}}
    ]});
    let r = s.req(
        "POST",
        "/v1/txn",
        &[("content-type", "application/json")],
        Some(body.to_string().as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["results"][0]["version"], 1);
    assert_eq!(
        s.get("/v1/streams/chat.c1").json()["entries"][0]["value"]["line"],
        "hello"
    );
    // A stale expected_seq fails the whole transaction: the document keeps its value.
    let body = json!({"ops": [
        {"op": "append", "stream": "chat.c1", "values": [{"line": "again"}], "expected_seq": 0},
        {"op": "put", "collection": "conv", "key": "c1", "value": {"unread": 2}}
    ]});
    let r = s.req(
        "POST",
        "/v1/txn",
        &[("content-type", "application/json")],
        Some(body.to_string().as_bytes()),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(
        s.get("/v1/collections/conv/docs/c1").json(),
        json!({"unread": 1})
    );
    assert_eq!(s.get("/v1/streams/chat.c1").json()["last_seq"], 1);
}

#[test]
fn bad_names_bodies_counts_and_limits_are_refused_before_anything_is_appended() {
    let s = TestServer::start(|_| {});
    assert_eq!(
        append(&s, "Bad%20Name", "", "application/json", "1").status,
        400
    );
    assert_eq!(append(&s, "ok", "", "text/plain", "1").status, 415);
    assert_eq!(append(&s, "ok", "", "application/json", "{").status, 400);
    let r = append(&s, "ok", "", "application/x-ndjson", "1\n{\n");
    assert_eq!(r.status, 400);
    assert!(r.body.contains("line 2"), "{}", r.body);
    assert_eq!(
        append(&s, "ok", "", "application/x-ndjson", "\n\n").status,
        400
    );
    let many = "1\n".repeat(amberdb::limits::MAX_APPEND_ENTRIES + 1);
    let r = append(&s, "ok", "", "application/x-ndjson", &many);
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(s.get("/v1/streams/ok?limit=0").status, 400);
    assert_eq!(s.get("/v1/streams/ok?limit=10001").status, 400);
    assert_eq!(
        s.get("/v1/streams/ok?from_seq=1&from_time=2026-01-01T00:00:00Z")
            .status,
        400
    );
    assert!(s.get("/v1/streams").json()["streams"]
        .as_array()
        .unwrap()
        .is_empty());
}

/// `?as_of_lsn=` and `?as_of=` read the stream as it was then (JSON and NDJSON, with the
/// Amber-As-Of-Lsn header); a stream re-created since is 404 at an older point, both forms
/// at once are 400.
#[test]
fn as_of_reads_return_the_entries_of_that_point() {
    let s = TestServer::start(|_| {});
    let first = append(&s, "chat", "", "application/x-ndjson", "\"a\"\n\"b\"\n");
    assert_eq!(first.status, 200, "{}", first.body);
    let lsn = first.json()["lsn"].as_u64().unwrap();
    append(&s, "chat", "", "application/json", "\"c\"");

    let r = s.get(&format!("/v1/streams/chat?as_of_lsn={lsn}"));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let values: Vec<_> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"].clone())
        .collect();
    assert_eq!(values, vec![json!("a"), json!("b")]);
    assert_eq!(
        (v["last_seq"].as_u64(), v["as_of_lsn"].as_u64()),
        (Some(2), Some(lsn))
    );
    assert_eq!(r.header("amber-as-of-lsn"), Some(lsn.to_string().as_str()));

    // By time: the commit time of the first append.
    let t = v["entries"][0]["commit_time"].as_str().unwrap().to_owned();
    let r = s.req(
        "GET",
        &format!("/v1/streams/chat?as_of={t}"),
        &[("accept", "application/x-ndjson")],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body.lines().count(), 2, "{}", r.body);
    assert_eq!(r.header("amber-as-of-lsn"), Some(lsn.to_string().as_str()));

    let r = s.get(&format!("/v1/streams/chat?as_of_lsn={lsn}&as_of={t}"));
    assert_eq!(r.status, 400, "{}", r.body);
    let r = s.get("/v1/streams/chat?as_of_lsn=999999");
    assert_eq!(r.status, 400, "{}", r.body);

    assert_eq!(s.req("DELETE", "/v1/streams/chat", &[], None).status, 200);
    append(&s, "chat", "", "application/json", "\"new\"");
    let r = s.get(&format!("/v1/streams/chat?as_of_lsn={lsn}"));
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.code(), "stream_not_found", "{}", r.body);
}

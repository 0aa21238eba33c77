//! `GET /v1/changes` over real HTTP: an SSE stream read from a raw socket (resume with
//! `Last-Event-ID` across a SIGKILL of the server process, heartbeats with the high-water
//! LSN), 410 `history_lost` before a stream starts, the long-poll, filters, token scopes,
//! tailing streams (`stream=`, also across a SIGKILL), and the bounds of every parameter.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;
#[path = "common/sse.rs"]
mod sse;

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{token, TestServer};
use sse::SseStream;

const T: Duration = Duration::from_secs(20);

fn put(s: &TestServer, c: &str, k: &str, v: &str) -> u64 {
    let r = s.put_json(&format!("/v1/collections/{c}/docs/{k}"), v);
    assert!(
        r.status == 200 || r.status == 201,
        "{}: {}",
        r.status,
        r.body
    );
    r.header("amber-lsn").unwrap().parse().unwrap()
}

/// The server as a separate process (this test binary re-run as `child_server`), so the
/// test can SIGKILL it.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_server(data: &Path) -> ServerProcess {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_server",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("AMBERDB_FEED_CHILD_DATA", data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(out).lines();
    let addr = loop {
        let line = lines.next().expect("child printed its address").unwrap();
        // libtest prints "test child_server ... " before the test's own output.
        if let Some((_, a)) = line.split_once("CHILD_ADDR ") {
            break a.trim().parse().unwrap();
        }
    };
    ServerProcess { child, addr }
}

/// Runs a server until killed; only when started by `spawn_server`.
#[test]
#[ignore]
fn child_server() {
    let Some(data) = std::env::var_os("AMBERDB_FEED_CHILD_DATA") else {
        return;
    };
    let s = TestServer::start_in(Path::new(&data), |_| {});
    println!("CHILD_ADDR {}", s.addr);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn append_at(addr: SocketAddr, stream: &str, ndjson: &str) -> u64 {
    let r = common::send(
        &common::agent(),
        "POST",
        &format!("http://{addr}/v1/streams/{stream}/append"),
        &[("content-type", "application/x-ndjson")],
        Some(ndjson.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["last_seq"].as_u64().unwrap()
}

/// `(seq, value)` of the entries appended to `stream` that a change carries.
fn stream_entries(change: &serde_json::Value, stream: &str) -> Vec<(u64, serde_json::Value)> {
    let mut out = vec![];
    for s in change["streams"].as_array().into_iter().flatten() {
        if s["stream"] == stream && s["op"] == "append" {
            let entries = s["entries"].as_array().unwrap();
            let (first, last) = (s["first_seq"].as_u64(), s["last_seq"].as_u64());
            assert_eq!(
                (first, last),
                (
                    entries[0]["seq"].as_u64(),
                    entries[entries.len() - 1]["seq"].as_u64()
                )
            );
            for e in entries {
                out.push((e["seq"].as_u64().unwrap(), e["value"].clone()));
            }
        }
    }
    out
}

#[test]
fn a_stream_tail_resumes_with_last_event_id_after_a_sigkill_of_the_server_without_gap_or_duplicate()
{
    let dir = tempfile::tempdir().unwrap();
    let mut srv = spawn_server(dir.path());
    let line = |i: u64| format!("{{\"line\":{i}}}\n");
    let batch = |from: u64, n: u64| (from..from + n).map(line).collect::<String>();
    let mut last = 0;
    for n in [1, 3, 2, 4] {
        last = append_at(srv.addr, "chat", &batch(last + 1, n));
        put_at(srv.addr, "players", &format!("p{last}"), "{}");
        append_at(srv.addr, "other", &line(last));
    }
    assert_eq!(last, 10);
    let path = "/v1/changes?since=0&stream=chat&values=true";
    let mut stream = SseStream::open(srv.addr, path, &[]);
    assert_eq!(stream.status, 200);
    let mut got = vec![];
    let mut cursor = String::new();
    for _ in 0..2 {
        let e = stream.next_change(T).expect("a change");
        let j = e.json();
        assert_eq!(
            j["docs"],
            serde_json::json!([]),
            "stream= alone: no documents"
        );
        got.extend(stream_entries(&j, "chat"));
        cursor = e.id.unwrap();
    }
    assert_eq!(got.len(), 4, "the first two appends: 1 and 3 entries");
    last = append_at(srv.addr, "chat", &batch(last + 1, 5));
    srv.child.kill().unwrap();
    srv.child.wait().unwrap();
    drop((stream, srv));
    let srv = spawn_server(dir.path());
    last = append_at(srv.addr, "chat", &batch(last + 1, 2));
    assert_eq!(last, 17, "the stream continues after the crash");
    let mut stream = SseStream::open(
        srv.addr,
        "/v1/changes?stream=chat&values=true",
        &[("Last-Event-ID", &cursor)],
    );
    assert_eq!(stream.status, 200);
    while got.len() < 17 {
        let e = stream
            .next_change(T)
            .expect("every append after the cursor");
        got.extend(stream_entries(&e.json(), "chat"));
    }
    let want: Vec<(u64, serde_json::Value)> = (1..=17)
        .map(|i| (i, serde_json::json!({"line": i})))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn a_stream_tail_reports_trims_retention_and_delete_and_only_streams_the_token_may_read() {
    let (reader, r) = token("reader", &["read:chat.*"]);
    let (admin, a) = token("ops", &["admin"]);
    let s = TestServer::start(move |c| c.tokens = vec![r, a]);
    let auth = |t: &str| format!("Bearer {t}");
    let call = |method: &str, path: &str, body: Option<&str>| {
        let r = common::call(&s, &admin, method, path, body);
        assert!(r.status < 300, "{method} {path}: {} {}", r.status, r.body);
    };
    call("POST", "/v1/streams/chat.room1/append", Some("\"hi\""));
    call("POST", "/v1/streams/secret/append", Some("\"psst\""));
    call("POST", "/v1/streams/chat.room1/append", Some("[2]"));
    call(
        "PUT",
        "/v1/streams/chat.room1/retention",
        Some(r#"{"max_entries": 1}"#),
    );
    call("DELETE", "/v1/streams/chat.room1", None);
    let get = |token: &str, q: &str| {
        s.req(
            "GET",
            &format!("/v1/changes?since=0&{q}"),
            &[("authorization", &auth(token))],
            None,
        )
    };
    let r = get(&reader, "stream=*");
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    let ops: Vec<serde_json::Value> = j["changes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["streams"].as_array().unwrap().clone())
        .collect();
    assert_eq!(
        ops,
        vec![
            serde_json::json!({"stream": "chat.room1", "op": "append", "first_seq": 1, "last_seq": 1}),
            serde_json::json!({"stream": "chat.room1", "op": "append", "first_seq": 2, "last_seq": 2}),
            serde_json::json!({"stream": "chat.room1", "op": "configure",
                               "retention": {"max_entries": 1, "max_age_s": null}}),
            serde_json::json!({"stream": "chat.room1", "op": "trim", "first_seq": 2}),
            serde_json::json!({"stream": "chat.room1", "op": "delete"}),
        ],
        "the glob delivers only the streams the token may read, without values unless asked"
    );
    assert_eq!(j["high_water_lsn"], 5);
    let r = get(&reader, "stream=secret");
    assert_eq!((r.status, r.code()), (403, "forbidden".to_string()));
    let j = get(&admin, "stream=secret&values=true").json();
    assert_eq!(j["changes"].as_array().unwrap().len(), 1);
    assert_eq!(
        stream_entries(&j["changes"][0], "secret"),
        vec![(1, serde_json::json!("psst"))]
    );
    // Without stream= the feed carries documents only, as before.
    let j = get(&admin, "").json();
    assert_eq!(j["changes"], serde_json::json!([]));
}

fn put_at(addr: SocketAddr, c: &str, k: &str, v: &str) -> u64 {
    let r = common::send(
        &common::agent(),
        "PUT",
        &format!("http://{addr}/v1/collections/{c}/docs/{k}"),
        &[("content-type", "application/json")],
        Some(v.as_bytes()),
    );
    assert!(
        r.status == 200 || r.status == 201,
        "{}: {}",
        r.status,
        r.body
    );
    r.header("amber-lsn").unwrap().parse().unwrap()
}

#[test]
fn a_stream_resumes_with_last_event_id_after_a_sigkill_of_the_server_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = spawn_server(dir.path());
    for i in 0..10 {
        put_at(
            srv.addr,
            "players",
            &format!("p{i}"),
            &format!("{{\"i\":{i}}}"),
        );
    }
    let mut stream = SseStream::open(srv.addr, "/v1/changes?since=0", &[]);
    assert_eq!(stream.status, 200);
    assert!(stream
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let mut got = vec![];
    for _ in 0..6 {
        let e = stream.next_change(T).expect("a change");
        let lsn: u64 = e.id.clone().unwrap().parse().unwrap();
        assert_eq!(e.json()["lsn"], lsn);
        got.push(lsn);
    }
    // More commits, acknowledged (durable) but perhaps never sent on this stream; then the
    // server process dies without any shutdown.
    for i in 10..15 {
        put_at(srv.addr, "players", &format!("p{i}"), "{}");
    }
    srv.child.kill().unwrap();
    srv.child.wait().unwrap();
    drop((stream, srv));
    let srv = spawn_server(dir.path());
    for i in 15..20 {
        put_at(srv.addr, "party", &format!("q{i}"), "{}");
    }
    let last = got.last().unwrap().to_string();
    let mut stream = SseStream::open(srv.addr, "/v1/changes", &[("Last-Event-ID", &last)]);
    assert_eq!(stream.status, 200);
    while got.len() < 20 {
        let e = stream
            .next_change(T)
            .expect("every commit after the cursor");
        got.push(e.id.unwrap().parse().unwrap());
    }
    assert_eq!(got, (1..=20).collect::<Vec<u64>>());
    // Live commits keep coming on the resumed stream.
    put_at(srv.addr, "party", "live", "{}");
    let e = stream.next_change(T).unwrap();
    assert_eq!(e.id.as_deref(), Some("21"));
}

#[test]
fn a_since_older_than_the_retained_log_is_410_history_lost_before_the_stream_starts() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_with(
        dir.path(),
        |_| {},
        |o| {
            o.segment_size = 1024;
            o.history_retention = Duration::ZERO;
        },
    );
    let pad = "x".repeat(200);
    for i in 0..40 {
        put(
            &s,
            "players",
            &format!("k{}", i % 3),
            &format!("{{\"pad\":\"{pad}\"}}"),
        );
    }
    let r = s.req("POST", "/v1/admin/checkpoint", &[], None);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.get("/v1/changes?since=0");
    assert_eq!(r.status, 410, "{}", r.body);
    assert_eq!(r.code(), "history_lost");
    let from = r.json()["error"]["details"]["retained_from_lsn"]
        .as_u64()
        .unwrap();
    assert!(from > 1);
    // As a stream: the 410 comes before any event.
    let mut st = SseStream::open(s.addr, "/v1/changes?since=0", &[]);
    assert_eq!(st.status, 410);
    let body: serde_json::Value = serde_json::from_str(&st.read_body(T)).unwrap();
    assert_eq!(body["error"]["details"]["retained_from_lsn"], from);
    // Resuming from just before the retained log works.
    let r = s.get(&format!("/v1/changes?since={}&limit=1000", from - 1));
    assert_eq!(r.status, 200, "{}", r.body);
    let lsns: Vec<u64> = r.json()["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["lsn"].as_u64().unwrap())
        .collect();
    assert_eq!(lsns, (from..=40).collect::<Vec<_>>());
}

#[test]
fn the_long_poll_returns_changes_with_the_high_water_and_waits_for_the_next_commit() {
    let s = TestServer::start(|_| {});
    put(&s, "players", "a", "{\"hp\":1}");
    put(&s, "players", "b", "{\"hp\":2}");
    let r = s.get("/v1/changes?since=0");
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(j["high_water_lsn"], 2);
    assert_eq!(j["changes"][0]["lsn"], 1);
    assert_eq!(j["changes"][0]["reason"], "write");
    assert!(j["changes"][0]["commit_ts"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert_eq!(
        j["changes"][0]["docs"][0]["expires_at"],
        serde_json::Value::Null
    );
    assert_eq!(j["changes"][0]["docs"][0]["collection"], "players");
    assert_eq!(j["changes"][0]["docs"][0]["key"], "a");
    assert_eq!(j["changes"][0]["docs"][0]["op"], "put");
    assert_eq!(j["changes"][0]["docs"][0]["version"], 1);
    assert!(
        j["changes"][0]["docs"][0].get("value").is_none(),
        "values only when asked"
    );
    assert_eq!(j["changes"][1]["lsn"], 2);
    // limit bounds one answer; the high water then covers only what was returned.
    let j = s.get("/v1/changes?since=0&limit=1").json();
    assert_eq!(
        (j["changes"].as_array().unwrap().len(), &j["high_water_lsn"]),
        (1, &json(1))
    );
    // Nothing new: without wait_ms it answers at once, empty, at the same high water.
    let j = s.get("/v1/changes?since=2").json();
    assert_eq!(
        (j["changes"].as_array().unwrap().len(), &j["high_water_lsn"]),
        (0, &json(2))
    );
    // With wait_ms it waits for the next durable commit.
    let url = s.url("/v1/changes?since=2&wait_ms=10000");
    let waiter = std::thread::spawn(move || common::send(&common::agent(), "GET", &url, &[], None));
    std::thread::sleep(Duration::from_millis(300));
    put(&s, "players", "a", "null");
    let r = waiter.join().unwrap();
    let j = r.json();
    assert_eq!(j["changes"][0]["lsn"], 3);
    assert_eq!(j["changes"][0]["docs"][0]["version"], 2);
    let r = s.req("DELETE", "/v1/collections/players/docs/b", &[], None);
    assert!(r.status < 300);
    let j = s.get("/v1/changes?since=3").json();
    assert_eq!(j["changes"][0]["docs"][0]["op"], "delete");
}

fn json(n: u64) -> serde_json::Value {
    serde_json::json!(n)
}

#[test]
fn filters_by_collection_glob_and_key_prefix_deliver_values_when_asked() {
    let s = TestServer::start(|_| {});
    put(&s, "players", "alice", "{\"hp\":1}"); // 1
    put(&s, "players", "bob", "{\"hp\":2}"); // 2
    put(&s, "party", "alice", "{\"n\":3}"); // 3
    put(&s, "chat", "alice", "\"hi\""); // 4
    let lsns = |q: &str| -> Vec<u64> {
        let r = s.get(&format!("/v1/changes?since=0&{q}"));
        assert_eq!(r.status, 200, "{q}: {}", r.body);
        let j = r.json();
        assert_eq!(
            j["high_water_lsn"], 4,
            "{q}: skipped commits advance the high water"
        );
        j["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["lsn"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(lsns("collection=players"), [1, 2]);
    assert_eq!(lsns("collection=pa*"), [3]);
    assert_eq!(lsns("collection=p*&prefix=al"), [1, 3]);
    assert_eq!(lsns("collection=chat&collection=party"), [3, 4]);
    assert_eq!(lsns("collection=p?rty"), [3]);
    assert_eq!(lsns("prefix=b"), [2]);
    let j = s
        .get("/v1/changes?since=0&collection=chat&values=true")
        .json();
    assert_eq!(j["changes"][0]["docs"][0]["value"], "hi");
    let j = s
        .get("/v1/changes?since=0&collection=players&values=true")
        .json();
    assert_eq!(j["changes"][1]["docs"][0]["value"]["hp"], 2);
}

#[test]
fn a_token_sees_only_the_documents_of_collections_it_may_read() {
    let (reader, r) = token("reader", &["read:players*"]);
    let (writer_only, w) = token("writer", &["write:*"]);
    let (admin, a) = token("ops", &["admin"]);
    let s = TestServer::start(move |c| c.tokens = vec![r, w, a]);
    let auth = |t: &str| format!("Bearer {t}");
    let put_as = |c: &str, k: &str| {
        let r = s.req(
            "PUT",
            &format!("/v1/collections/{c}/docs/{k}"),
            &[
                ("authorization", &auth(&admin)),
                ("content-type", "application/json"),
            ],
            Some(b"{}"),
        );
        assert!(r.status < 300, "{}", r.body);
    };
    put_as("players", "a"); // 1
    put_as("secrets", "x"); // 2
                            // One transaction touching both: the reader sees only its players half.
    let r = s.req(
        "POST",
        "/v1/txn",
        &[("authorization", &auth(&admin)), ("content-type", "application/json")],
        Some(br#"{"ops":[{"op":"put","collection":"players","key":"b","value":1},{"op":"put","collection":"secrets","key":"y","value":2}]}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.req(
        "GET",
        "/v1/changes?since=0",
        &[("authorization", &auth(&reader))],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    let seen: Vec<(u64, String)> = j["changes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| {
            let lsn = c["lsn"].as_u64().unwrap();
            c["docs"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |d| {
                    (
                        lsn,
                        format!(
                            "{}/{}",
                            d["collection"].as_str().unwrap(),
                            d["key"].as_str().unwrap()
                        ),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        seen,
        [(1, "players/a".to_string()), (3, "players/b".to_string())]
    );
    assert_eq!(j["high_water_lsn"], 3);
    // Naming a collection it may not read is 403; so is a token that reads nothing.
    let r = s.req(
        "GET",
        "/v1/changes?since=0&collection=secrets",
        &[("authorization", &auth(&reader))],
        None,
    );
    assert_eq!((r.status, r.code()), (403, "forbidden".to_string()));
    let r = s.req(
        "GET",
        "/v1/changes?since=0",
        &[("authorization", &auth(&writer_only))],
        None,
    );
    assert_eq!(r.status, 403);
    let r = s.get("/v1/changes?since=0");
    assert_eq!(r.status, 401);
    // The admin sees everything, as a stream too.
    let mut st = SseStream::open(
        s.addr,
        "/v1/changes?since=1",
        &[("Authorization", &auth(&admin))],
    );
    assert_eq!(st.status, 200);
    assert_eq!(
        st.next_change(T).unwrap().json()["docs"][0]["collection"],
        "secrets"
    );
}

#[test]
fn heartbeats_carry_the_high_water_lsn_so_a_quiet_consumer_advances() {
    let s = TestServer::start(|_| {});
    let mut st = SseStream::open(
        s.addr,
        "/v1/changes?since=0&collection=chat&heartbeat_ms=100",
        &[],
    );
    assert_eq!(st.status, 200);
    for i in 0..3 {
        put(&s, "players", &format!("p{i}"), "{}");
    }
    // Commits the filter skips produce no change, but the heartbeat says how far it got.
    let deadline = std::time::Instant::now() + T;
    let mut saw_comment = false;
    let hw = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no high_water reached LSN 3"
        );
        let e = st.next_event(T).expect("an event");
        assert_ne!(e.event.as_deref(), Some("change"), "{e:?}");
        saw_comment |= e.comment.is_some();
        if e.event.as_deref() == Some("high_water") {
            let hw = e.json()["high_water_lsn"].as_u64().unwrap();
            assert_eq!(e.id, Some(hw.to_string()), "the id advances Last-Event-ID");
            if hw == 3 {
                break hw;
            }
        }
    };
    assert!(saw_comment, "a heartbeat comment line");
    // Resuming from the heartbeat's id delivers the next matching commit only.
    put(&s, "chat", "m", "\"hi\"");
    let mut st = SseStream::open(s.addr, "/v1/changes", &[("Last-Event-ID", &hw.to_string())]);
    assert_eq!(st.next_change(T).unwrap().id.as_deref(), Some("4"));
}

#[test]
fn every_parameter_is_bounded_and_a_bad_cursor_is_400() {
    let s = TestServer::start(|_| {});
    put(&s, "players", "a", "{}");
    for q in [
        "heartbeat_ms=5",
        "heartbeat_ms=999999999",
        "limit=0",
        "limit=1001",
        "wait_ms=30001",
        "since=-1",
        "since=abc",
        "values=maybe",
        "collection=BAD",
        "collection=",
        "stream=BAD",
        "stream=",
        "stream=a/b",
        "bogus=1",
    ] {
        let r = s.get(&format!("/v1/changes?{q}"));
        assert_eq!(
            (r.status, r.code()),
            (400, "invalid_query".to_string()),
            "{q}"
        );
    }
    let r = s.get(&format!("/v1/changes?prefix={}", "k".repeat(1025)));
    assert_eq!(r.status, 400);
    let many: String = (0..65).map(|i| format!("collection=c{i}&")).collect();
    assert_eq!(s.get(&format!("/v1/changes?{many}")).status, 400);
    let many: String = (0..65).map(|i| format!("stream=s{i}&")).collect();
    assert_eq!(s.get(&format!("/v1/changes?{many}")).status, 400);
    let at_most: String = (0..64).map(|i| format!("stream=s{i}&")).collect();
    assert_eq!(s.get(&format!("/v1/changes?{at_most}")).status, 200);
    let r = s.req("GET", "/v1/changes", &[("last-event-id", "x")], None);
    assert_eq!((r.status, r.code()), (400, "invalid_header".to_string()));
    let r = s.get("/v1/changes?since=99");
    assert_eq!((r.status, r.code()), (400, "invalid_argument".to_string()));
    // since=now (the default) sees only what comes next.
    let j = s.get("/v1/changes?since=now").json();
    assert_eq!(
        (j["changes"].as_array().unwrap().len(), &j["high_water_lsn"]),
        (0, &json(1))
    );
}

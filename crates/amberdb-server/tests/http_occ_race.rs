//! Optimistic concurrency over HTTP: many clients race to update the same document with the
//! same `If-Match`; exactly one wins each round, every loser gets 412, and no update is lost.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Barrier;

use common::TestServer;

#[test]
fn if_match_races_have_exactly_one_winner() {
    let s = TestServer::start(|_| {});
    let doc = "/v1/collections/counters/docs/c";
    assert_eq!(s.put_json(doc, "{\"n\": 0}").status, 201);
    let clients = 8;
    let rounds = 25;
    let url = s.url(doc);
    for round in 0..rounds {
        let version = round + 1;
        let barrier = Barrier::new(clients);
        let statuses: Vec<u16> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..clients)
                .map(|c| {
                    let (url, barrier) = (&url, &barrier);
                    scope.spawn(move || {
                        let agent = common::agent();
                        let tag = format!("\"{version}\"");
                        let body = format!("{{\"n\": {}, \"by\": {c}}}", round + 1);
                        barrier.wait();
                        let r = common::send(
                            &agent,
                            "PUT",
                            url,
                            &[("content-type", "application/json"), ("if-match", &tag)],
                            Some(body.as_bytes()),
                        );
                        if r.status == 412 {
                            assert_eq!(r.code(), "precondition_failed");
                        }
                        r.status
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners = statuses.iter().filter(|s| **s == 200).count();
        let losers = statuses.iter().filter(|s| **s == 412).count();
        assert_eq!(
            (winners, losers),
            (1, clients - 1),
            "round {round}: {statuses:?}"
        );
        let r = s.get(doc);
        assert_eq!(r.header("etag").unwrap(), format!("\"{}\"", version + 1));
        assert_eq!(r.json()["n"], round + 1);
    }
}

#[test]
fn concurrent_json_patch_increments_with_retry_lose_nothing() {
    let s = TestServer::start(|_| {});
    let doc = "/v1/collections/counters/docs/total";
    assert_eq!(s.put_json(doc, "{\"n\": 0}").status, 201);
    let url = s.url(doc);
    let clients = 6;
    let per_client = 15;
    std::thread::scope(|scope| {
        for _ in 0..clients {
            let url = &url;
            scope.spawn(move || {
                let agent = common::agent();
                for _ in 0..per_client {
                    loop {
                        let cur = common::send(&agent, "GET", url, &[], None);
                        let n = cur.json()["n"].as_u64().unwrap();
                        let tag = cur.header("etag").unwrap().to_owned();
                        let patch = format!(
                            "[{{\"op\": \"replace\", \"path\": \"/n\", \"value\": {}}}]",
                            n + 1
                        );
                        let r = common::send(
                            &agent,
                            "PATCH",
                            url,
                            &[
                                ("content-type", "application/json-patch+json"),
                                ("if-match", &tag),
                            ],
                            Some(patch.as_bytes()),
                        );
                        match r.status {
                            200 => break,
                            412 => continue,
                            other => panic!("unexpected {other}: {}", r.body),
                        }
                    }
                }
            });
        }
    });
    assert_eq!(s.get(doc).json()["n"], clients * per_client);
}

//! Graceful shutdown with requests in flight: every write acknowledged with a 2xx is present
//! after a restart, requests after the drain began are refused cleanly (503 or connection
//! refused, never a 5xx from a half-closed engine), and the closing checkpoint means the next
//! open replays nothing.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::TestServer;

/// Per writer: the acknowledged (key, i) pairs, and the statuses of refused requests (0 for a
/// connection error).
type WriterLog = (Vec<(String, u64)>, Vec<u16>);

#[test]
fn acknowledged_writes_survive_a_graceful_shutdown_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), |_| {});
    let url = s.url("/v1/collections/saves/docs/");
    let stop = AtomicBool::new(false);
    let logs: Vec<WriterLog> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let (url, stop) = (&url, &stop);
                scope.spawn(move || {
                    let agent = common::agent();
                    let mut acked = vec![];
                    let mut other = vec![];
                    for i in 0u64.. {
                        let key = format!("w{w}-{i}");
                        let body = format!("{{\"w\": {w}, \"i\": {i}}}");
                        match common::try_send(
                            &agent,
                            "PUT",
                            &format!("{url}{key}"),
                            &[("content-type", "application/json")],
                            Some(body.as_bytes()),
                        ) {
                            Ok(r) if r.status == 201 => acked.push((key, i)),
                            Ok(r) => {
                                assert_eq!(r.status, 503, "{}", r.body);
                                assert_eq!(r.code(), "shutting_down");
                                other.push(r.status);
                            }
                            Err(_) => other.push(0),
                        }
                        if stop.load(Ordering::SeqCst) && (other.len() > 3 || i > 100_000) {
                            break;
                        }
                    }
                    (acked, other)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(400));
        stop.store(true, Ordering::SeqCst);
        s.stop()
            .expect("graceful shutdown closes the database cleanly");
        writers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (acked, other): (Vec<_>, Vec<_>) = logs.into_iter().unzip();
    let acked: Vec<(String, u64)> = acked.into_iter().flatten().collect();
    assert!(
        acked.len() > 50,
        "too few writes acknowledged before shutdown: {}",
        acked.len()
    );
    assert!(
        other.iter().flatten().count() >= 8,
        "every writer saw the server go away"
    );

    let db = amberdb::Db::open(dir.path()).unwrap();
    assert_eq!(
        db.recovery_report().commits_replayed,
        0,
        "close wrote a checkpoint covering everything"
    );
    for (key, i) in &acked {
        let doc = db
            .get("saves", key)
            .unwrap_or_else(|| panic!("acknowledged write {key} lost"));
        assert_eq!(doc.json().unwrap()["i"], *i);
    }
    db.close().unwrap();
}

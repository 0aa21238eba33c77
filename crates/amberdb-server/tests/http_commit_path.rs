//! How an HTTP write reaches the committer (issue 14): a small write is awaited, so no
//! blocking-pool thread parks for its fsync and the committer's own thread writes the log;
//! concurrent sync PUTs share fsyncs; a body over `ASYNC_COMMIT_MAX_BODY` commits on the
//! blocking pool as before. Real server, real HTTP client, a slow disk simulated by an
//! injector that sleeps in every log fsync.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amberdb::io::{Fault, FaultInjector, Faults, IoOp};
use amberdb_server::ASYNC_COMMIT_MAX_BODY;
use common::TestServer;

/// Names of the threads that wrote the log; every log fsync takes `sync_delay`.
struct LogWatch {
    log: Mutex<Option<PathBuf>>,
    sync_delay: Duration,
    writers: Mutex<Vec<String>>,
}

impl FaultInjector for LogWatch {
    fn on_io(&self, op: IoOp<'_>) -> Fault {
        let Some(log) = self.log.lock().unwrap().clone() else {
            return Fault::Proceed;
        };
        match op {
            IoOp::Write { path, .. } if path.starts_with(&log) => {
                let name = std::thread::current().name().unwrap_or("?").to_string();
                self.writers.lock().unwrap().push(name);
            }
            IoOp::Sync { path } if path.starts_with(&log) => std::thread::sleep(self.sync_delay),
            _ => {}
        }
        Fault::Proceed
    }
}

fn start(sync_delay: Duration) -> (TestServer, Arc<LogWatch>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let watch = Arc::new(LogWatch {
        log: Mutex::new(Some(dir.path().join(amberdb::LOG_DIR))),
        sync_delay,
        writers: Mutex::new(vec![]),
    });
    let w = watch.clone();
    let s = TestServer::start_with(dir.path(), |_| {}, move |o| o.faults = Faults::new(w));
    (s, watch, dir)
}

fn sync_put(s: &TestServer, key: &str, body: &str) -> u16 {
    s.req(
        "PUT",
        &format!("/v1/collections/c/docs/{key}"),
        &[
            ("content-type", "application/json"),
            ("amber-durability", "sync"),
        ],
        Some(body.as_bytes()),
    )
    .status
}

#[test]
fn concurrent_small_sync_puts_are_committed_by_the_committers_thread_and_share_fsyncs() {
    let (s, watch, _dir) = start(Duration::from_millis(5));
    watch.writers.lock().unwrap().clear();
    let before = s.get("/v1/admin/status").json();
    let s = Arc::new(s);
    let clients: Vec<_> = (0..32)
        .map(|c| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..5 {
                    assert_eq!(sync_put(&s, &format!("k{c}-{i}"), r#"{"hp":1}"#), 201);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let after = s.get("/v1/admin/status").json();
    let writers = watch.writers.lock().unwrap().clone();
    assert!(!writers.is_empty());
    // With the write on the blocking pool, a pool thread ("tokio-rt-worker") leads
    // the batch and 32 of them park in the engine.
    assert!(
        writers.iter().all(|t| t == "amberdb-committer"),
        "log written by {writers:?}"
    );
    let commits = after["commits"].as_u64().unwrap() - before["commits"].as_u64().unwrap();
    let fsyncs = after["fsyncs"].as_u64().unwrap() - before["fsyncs"].as_u64().unwrap();
    assert_eq!(commits, 160);
    assert!(
        commits >= 4 * fsyncs,
        "{commits} commits in {fsyncs} fsyncs: concurrent PUTs did not share them"
    );
    let listed = s.get("/v1/collections/c/docs?limit=1000").json();
    assert_eq!(
        listed["documents"].as_array().unwrap().len(),
        160,
        "{listed}"
    );
}

#[test]
fn a_put_over_the_async_body_bound_commits_on_the_blocking_pool() {
    let (s, watch, _dir) = start(Duration::ZERO);
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(ASYNC_COMMIT_MAX_BODY));
    watch.writers.lock().unwrap().clear();
    assert_eq!(sync_put(&s, "big", &big), 201);
    let writers = watch.writers.lock().unwrap().clone();
    assert!(
        !writers.is_empty() && writers.iter().all(|t| t != "amberdb-committer"),
        "log written by {writers:?}"
    );
    watch.writers.lock().unwrap().clear();
    assert_eq!(sync_put(&s, "small", r#"{"hp":1}"#), 201);
    let writers = watch.writers.lock().unwrap().clone();
    assert_eq!(writers, vec!["amberdb-committer".to_string()]);
    let got = s.get("/v1/collections/c/docs/big").json();
    assert_eq!(got["pad"].as_str().unwrap().len(), ASYNC_COMMIT_MAX_BODY);
}

//! A live restore from the backup repository, looked at while it runs: the restore is held
//! (by the server's before-swap hook, a channel, never a sleep) once the new directory is
//! complete and before the swap. Meanwhile reads are served by the old database, writes answer
//! 503 `restoring` with `Retry-After`, and a second restore answers 409 `restore_in_progress`.
//! After the swap a change stream of the old database ends with `event: history_lost` naming
//! the LSN to resync from.
//!
//! One test in its own binary: the hook is process-wide.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;
#[path = "common/sse.rs"]
mod sse;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::TestServer;
use serde_json::json;
use sse::SseStream;

const T: Duration = Duration::from_secs(30);

fn post(s: &TestServer, path: &str, body: serde_json::Value) -> common::Resp {
    s.req(
        "POST",
        path,
        &[("content-type", "application/json")],
        Some(body.to_string().as_bytes()),
    )
}

#[test]
fn during_a_restore_reads_see_the_old_database_writes_get_503_and_streams_end_with_history_lost() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let s = TestServer::start_with(
        &dir.path().join("data"),
        move |c| {
            c.backup_repo = Some(repo);
            c.segment_size = 4096;
        },
        |o| o.history_retention = Duration::ZERO,
    );
    for i in 0..60 {
        s.put_json(
            &format!("/v1/collections/c/docs/k{i}"),
            &format!(r#"{{"v": {i}, "pad": "{}"}}"#, "x".repeat(100)),
        );
    }
    let b = s.req("POST", "/v1/admin/backups", &[], None);
    assert_eq!(b.status, 201, "{}", b.body);
    let backup_id = b.json()["id"].as_str().unwrap().to_owned();
    let backup_lsn = b.json()["lsn"].as_u64().unwrap();
    for i in 0..40 {
        s.put_json(&format!("/v1/collections/c/docs/k{i}"), r#"{"v": "later"}"#);
    }
    assert_eq!(s.req("POST", "/v1/admin/checkpoint", &[], None).status, 200);
    let mut stream = SseStream::open(s.addr, "/v1/changes?since=now", &[]);
    assert_eq!(stream.status, 200);

    // Hold the restore once its directory is complete, until the test lets it go.
    let (paused_tx, paused_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let go_rx = Mutex::new(go_rx);
    amberdb_server::set_before_swap_hook(Some(Arc::new(move || {
        paused_tx.send(()).unwrap();
        go_rx.lock().unwrap().recv().unwrap();
    })));
    let (url, id) = (s.url("/v1/admin/restore"), backup_id.clone());
    let restore = std::thread::spawn(move || {
        let r = common::send(
            &common::agent(),
            "POST",
            &url,
            &[("content-type", "application/json")],
            Some(json!({ "backup_id": id }).to_string().as_bytes()),
        );
        (r.status, r.body)
    });
    paused_rx.recv_timeout(T).unwrap();

    // Reads: the old database.
    let g = s.get("/v1/collections/c/docs/k0");
    assert_eq!((g.status, g.json()["v"].clone()), (200, json!("later")));
    // Writes: 503 restoring, with Retry-After.
    let w = s.put_json("/v1/collections/c/docs/k0", r#"{"v": "lost?"}"#);
    assert_eq!(
        (w.status, w.code()),
        (503, "restoring".to_string()),
        "{}",
        w.body
    );
    assert!(w.header("retry-after").unwrap().parse::<u64>().unwrap() > 0);
    let t = post(
        &s,
        "/v1/txn",
        json!({"ops": [{"op": "delete", "collection": "c", "key": "k1"}]}),
    );
    assert_eq!(
        (t.status, t.code()),
        (503, "restoring".to_string()),
        "{}",
        t.body
    );
    // One restore at a time.
    let again = post(&s, "/v1/admin/restore", json!({ "backup_id": backup_id }));
    assert_eq!(
        (again.status, again.code()),
        (409, "restore_in_progress".to_string()),
        "{}",
        again.body
    );

    go_tx.send(()).unwrap();
    let (status, body) = restore.join().unwrap();
    amberdb_server::set_before_swap_hook(None);
    assert_eq!(status, 200, "{body}");
    let r: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (r["mode"].clone(), r["backup_id"].clone()),
        (json!("swap"), json!(backup_id))
    );
    // The write refused during the restore is not anywhere; the restored state is served.
    let g = s.get("/v1/collections/c/docs/k0");
    assert_eq!((g.status, g.json()["v"].clone()), (200, json!(0)));
    assert_eq!(s.put_json("/v1/collections/c/docs/k0", "{}").status, 200);
    // The old database's stream ends with history_lost and where to resync from.
    let mut last = None;
    while let Some(e) = stream.next_event(T) {
        if e.event.as_deref() == Some("history_lost") {
            last = Some(e);
            break;
        }
    }
    let e = last.expect("the old stream ends with history_lost");
    assert_eq!(e.json()["error"]["details"]["resync_from_lsn"], backup_lsn);
    s.stop().unwrap();
}

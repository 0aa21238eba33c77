//! Issue 12: `POST /v1/admin/keys/rotate` over real HTTP. Documents written under an old key
//! are re-sealed with the new key by the route; afterwards `key_ids_in_use` lists only the
//! new key and a server holding ONLY the new key reads every document back. Also: 403
//! without the admin scope, 409 `not_encrypted` on a server without a key, 409
//! `key_mismatch` when the expected key id is not the sealing key.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use amberdb_server::auth::TokenEntry;
use amberdb_server::Config;
use common::{any_file_contains, call, token, TestServer};

fn key_bytes(n: u8) -> Vec<u8> {
    (0..32u8)
        .map(|i| i.wrapping_mul(29).wrapping_add(n.wrapping_mul(113)) ^ 0x6c)
        .collect()
}

fn key_id(n: u8) -> String {
    amberdb::crypto::Key::from_bytes(key_bytes(n).try_into().unwrap())
        .id()
        .to_string()
}

/// A config on `data` with `extra` flags and the given tokens.
fn config(data: &Path, extra: &[(&str, String)], tokens: Vec<TokenEntry>) -> Config {
    let mut flags = vec![
        ("listen".to_string(), "127.0.0.1:0".to_string()),
        ("data".to_string(), data.display().to_string()),
        // Keep every segment so the rewrite has many files sealed with the old key.
        ("history.retention".to_string(), "86400".to_string()),
        ("engine.checkpoint_interval_s".to_string(), "0".to_string()),
    ];
    flags.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let mut c = Config::load(None, vec![], &flags).unwrap();
    c.tokens = tokens;
    c
}

/// Starts a server with small log segments (so several sealed segments exist).
fn start(data: &Path, c: Config) -> TestServer {
    TestServer::start_with(data, move |x| *x = c, |o| o.segment_size = 4096)
}

fn in_use(s: &TestServer, admin: &str) -> Vec<String> {
    let r = call(s, admin, "GET", "/v1/admin/status", None);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["key_ids_in_use"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

const DOCS: usize = 60;

fn marker(i: usize) -> String {
    format!("MARKER-rot-{i:03}")
}

#[test]
fn rotate_over_http_reseals_everything_and_the_old_key_can_be_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new) = (tmp.path().join("old.key"), tmp.path().join("new.key"));
    std::fs::write(&old, key_bytes(1)).unwrap();
    std::fs::write(&new, key_bytes(2)).unwrap();
    let data = tmp.path().join("data");
    let (admin, a) = token("ops", &["admin"]);
    let (writer, w) = token("writer", &["read:*", "write:*"]);
    let tokens = vec![a, w];
    let oldf = old.display().to_string();
    let newf = new.display().to_string();

    // 1. Data under the old key only.
    let s = start(
        &data,
        config(
            &data,
            &[("encryption.key_file", oldf.clone())],
            tokens.clone(),
        ),
    );
    for i in 0..DOCS {
        let body = format!(
            r#"{{"secret":"{}","pad":"{}"}}"#,
            marker(i),
            "x".repeat(200)
        );
        let r = call(
            &s,
            &writer,
            "PUT",
            &format!("/v1/collections/c/docs/d{i}"),
            Some(&body),
        );
        assert!(r.status < 300, "{}", r.body);
    }
    assert_eq!(in_use(&s, &admin), vec![key_id(1)]);
    s.stop().unwrap();
    let segments = std::fs::read_dir(data.join("log")).unwrap().count();
    assert!(
        segments > 3,
        "only {segments} log files: the rewrite would be trivial"
    );

    // 2. Restart with the new key sealing and the old one for reading; rotate.
    let s = start(
        &data,
        config(
            &data,
            &[
                ("encryption.key_file", newf.clone()),
                ("encryption.old_key_file", oldf.clone()),
            ],
            tokens.clone(),
        ),
    );
    let before = in_use(&s, &admin);
    assert!(before.contains(&key_id(1)), "{before:?}");
    // Without the admin scope: 403 and nothing starts.
    let r = call(&s, &writer, "POST", "/v1/admin/keys/rotate", None);
    assert_eq!(r.status, 403, "{}", r.body);
    // A key id that is not the sealing key: 409 key_mismatch, nothing starts.
    let body = format!(r#"{{"key_id":"{}"}}"#, key_id(1));
    let r = call(&s, &admin, "POST", "/v1/admin/keys/rotate", Some(&body));
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.code(), "key_mismatch");
    let st = call(&s, &admin, "GET", "/v1/admin/status", None).json();
    assert!(st["key_rotation"].is_null(), "{st}");
    // The real one.
    let body = format!(r#"{{"key_id":"{}"}}"#, key_id(2));
    let r = call(&s, &admin, "POST", "/v1/admin/keys/rotate", Some(&body));
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.json()["key_id"], key_id(2));
    assert!(r.json()["key_ids_in_use"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v == &serde_json::Value::String(key_id(1))));
    let deadline = Instant::now() + Duration::from_secs(60);
    let rot = loop {
        let st = call(&s, &admin, "GET", "/v1/admin/status", None).json();
        let rot = st["key_rotation"].clone();
        if !rot.is_null() && rot["running"] == false {
            break rot;
        }
        assert!(Instant::now() < deadline, "rotation did not finish: {st}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(rot["error"].is_null(), "{rot}");
    assert_eq!(rot["key_id"], key_id(2), "{rot}");
    assert!(rot["files_done"].as_u64().unwrap() >= 3, "{rot}");
    assert_eq!(rot["files_done"], rot["files_total"], "{rot}");
    assert_eq!(in_use(&s, &admin), vec![key_id(2)]);
    s.stop().unwrap();
    assert!(!any_file_contains(&data, "MARKER-rot-"));

    // 3. Only the new key: the engine opens it and finds nothing sealed with the old key,
    // and a server reads every document back.
    let db = amberdb::Db::open_with(
        &data,
        amberdb::Options {
            create_if_missing: false,
            checkpoint_on_close: false,
            encryption: Some(
                amberdb::crypto::Keyring::new(vec![amberdb::crypto::Key::from_bytes(
                    key_bytes(2).try_into().unwrap(),
                )])
                .unwrap(),
            ),
            history_retention: Duration::from_secs(86400),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(db.key_ids_in_use().unwrap(), vec![key_id(2)]);
    db.close().unwrap();
    let s = start(
        &data,
        config(&data, &[("encryption.key_file", newf)], tokens),
    );
    assert_eq!(in_use(&s, &admin), vec![key_id(2)]);
    for i in 0..DOCS {
        let r = call(
            &s,
            &writer,
            "GET",
            &format!("/v1/collections/c/docs/d{i}"),
            None,
        );
        assert_eq!(r.status, 200, "d{i}: {}", r.body);
        assert!(r.body.contains(&marker(i)), "d{i}: {}", r.body);
    }
    s.stop().unwrap();
}

#[test]
fn rotate_on_a_server_without_encryption_is_409_not_encrypted() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (admin, a) = token("ops", &["admin"]);
    let s = start(&data, config(&data, &[], vec![a]));
    let r = call(&s, &admin, "POST", "/v1/admin/keys/rotate", None);
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.code(), "not_encrypted");
    let st = call(&s, &admin, "GET", "/v1/admin/status", None).json();
    assert!(st["key_rotation"].is_null(), "{st}");
    s.stop().unwrap();
}

/// Regression: the "already running" check and the start of the rotation were not atomic, so
/// two quick requests could both answer 202.
#[test]
fn rotate_requests_racing_start_exactly_one_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new) = (tmp.path().join("old.key"), tmp.path().join("new.key"));
    std::fs::write(&old, key_bytes(1)).unwrap();
    std::fs::write(&new, key_bytes(2)).unwrap();
    let data = tmp.path().join("data");
    let (admin, a) = token("ops", &["admin"]);
    let (oldf, newf) = (old.display().to_string(), new.display().to_string());
    let s = start(
        &data,
        config(
            &data,
            &[("encryption.key_file", oldf.clone())],
            vec![a.clone()],
        ),
    );
    for i in 0..DOCS {
        let body = format!(r#"{{"pad":"{}"}}"#, "x".repeat(300));
        let r = call(
            &s,
            &admin,
            "PUT",
            &format!("/v1/collections/c/docs/d{i}"),
            Some(&body),
        );
        assert!(r.status < 300, "{}", r.body);
    }
    s.stop().unwrap();
    let s = start(
        &data,
        config(
            &data,
            &[
                ("encryption.key_file", newf),
                ("encryption.old_key_file", oldf),
            ],
            vec![a],
        ),
    );
    const N: usize = 8;
    let barrier = std::sync::Barrier::new(N);
    let statuses: Vec<(u16, String)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..N)
            .map(|_| {
                sc.spawn(|| {
                    barrier.wait();
                    let r = call(&s, &admin, "POST", "/v1/admin/keys/rotate", None);
                    let code = if r.status == 202 {
                        String::new()
                    } else {
                        r.code()
                    };
                    (r.status, code)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let started = statuses.iter().filter(|(st, _)| *st == 202).count();
    assert_eq!(started, 1, "{statuses:?}");
    for (st, code) in &statuses {
        assert!(
            *st == 202 || (*st == 409 && code == "rotation_running"),
            "{statuses:?}"
        );
    }
    let finish = || {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let st = call(&s, &admin, "GET", "/v1/admin/status", None).json();
            if st["key_rotation"]["running"] == false {
                assert!(st["key_rotation"]["error"].is_null(), "{st}");
                return;
            }
            assert!(Instant::now() < deadline, "rotation did not finish: {st}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    finish();
    s.stop().unwrap();
}

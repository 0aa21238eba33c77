//! `amberdb serve` as an operator meets it: config precedence and refusals that name the key,
//! the loopback rule, and signals (SIGTERM and SIGINT drain and exit 0 with a checkpoint).

#![allow(clippy::unwrap_used)]

mod serve_support;

use serve_support::{agent, amberdb, send, Served};

#[test]
fn invalid_config_is_refused_with_the_key_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("amberdb.toml");
    std::fs::write(&config, "[limits]\nbody_bytes = \"huge\"\n").unwrap();
    let (code, _, err) = amberdb(
        &[
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--check-config",
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("`limits.body_bytes`") && err.contains("amberdb.toml") && err.contains("huge"),
        "{err}"
    );

    let (code, _, err) = amberdb(
        &["serve", "--check-config"],
        &[("AMBERDB_LIMITS_CONCURRENCY", "-1")],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("`limits.concurrency`") && err.contains("AMBERDB_LIMITS_CONCURRENCY"),
        "{err}"
    );

    let (code, _, err) = amberdb(&["serve", "--set", "limits.nope=1", "--check-config"], &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("`limits.nope`") && err.contains("unknown key"),
        "{err}"
    );

    // Not loopback, no tokens: refused unless explicitly insecure.
    let (code, _, err) = amberdb(&["serve", "--listen", "0.0.0.0:0", "--check-config"], &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("`listen`") && err.contains("--insecure-no-auth"),
        "{err}"
    );
    let (code, out, _) = amberdb(
        &[
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--insecure-no-auth",
            "--check-config",
        ],
        &[],
    );
    assert_eq!(code, 0);
    assert!(out.contains("config ok"));
}

#[test]
fn flags_beat_environment_beat_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("amberdb.toml");
    std::fs::write(
        &config,
        "data = \"/from/file\"\n[limits]\nconcurrency = 5\n",
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let (_, out, _) = amberdb(&["serve", "--config", cfg, "--check-config"], &[]);
    assert!(out.contains("data /from/file"), "{out}");
    let (_, out, _) = amberdb(
        &["serve", "--config", cfg, "--check-config"],
        &[("AMBERDB_DATA", "/from/env")],
    );
    assert!(out.contains("data /from/env"), "{out}");
    let (_, out, _) = amberdb(
        &[
            "serve",
            "--config",
            cfg,
            "--data",
            "/from/flag",
            "--check-config",
        ],
        &[("AMBERDB_DATA", "/from/env")],
    );
    assert!(out.contains("data /from/flag"), "{out}");
}

#[test]
fn sigterm_and_sigint_drain_checkpoint_and_exit_zero() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for sig in ["TERM", "INT"] {
        let served = Served::start(&data, &[], &[]);
        let url = served.url.clone();
        for i in 0..20 {
            let (s, body) = send(
                &agent(),
                "PUT",
                &format!("{url}/v1/collections/saves/docs/{sig}{i}"),
                Some("{\"ok\": true}"),
            )
            .unwrap();
            assert!(s == 201, "{body}");
        }
        serve_support::signal(&served.child, sig);
        let mut served = served;
        let status = served.child.wait().unwrap();
        assert_eq!(
            status.code(),
            Some(0),
            "SIG{sig}: {}",
            served.stderr.lock().unwrap()
        );
        let log = served.stderr.lock().unwrap().clone();
        assert!(
            log.contains("wrote checkpoint") && log.contains("database closed cleanly"),
            "{log}"
        );
    }
    let (code, out, _) = amberdb(&["stats", "--data", data.to_str().unwrap()], &[]);
    assert_eq!(code, 0);
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        stats["recovery"]["commits_replayed"], 0,
        "the closing checkpoint covers everything"
    );
    assert_eq!(stats["collections"][0]["documents"], 40);
}

#[test]
fn a_second_signal_during_the_drain_exits_at_once() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let served = Served::start(&data, &["--set", "shutdown.grace_ms=60000"], &[]);
    let (s, _) = send(
        &agent(),
        "PUT",
        &format!("{}/v1/collections/saves/docs/kept", served.url),
        Some("1"),
    )
    .unwrap();
    assert_eq!(s, 201);

    // A request that stays in flight: headers promise 100 bytes of body, only 5 arrive, so the
    // drain has to wait for it (up to the 60 s grace).
    let addr = served.url.trim_start_matches("http://").to_owned();
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.write_all(b"PUT /v1/collections/saves/docs/slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[1, 2").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));

    let started = std::time::Instant::now();
    serve_support::signal(&served.child, "TERM");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut served = served;
    assert!(
        served.child.try_wait().unwrap().is_none(),
        "the drain waits for the in-flight request"
    );
    serve_support::signal(&served.child, "TERM");
    let status = served.child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "{}",
        served.stderr.lock().unwrap()
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "exited at once, not after the grace period"
    );
    drop(slow);

    // The acknowledged write is in the log even without the closing checkpoint.
    let (code, out, err) = amberdb(
        &["get", "--data", data.to_str().unwrap(), "saves", "kept"],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"version\": 1"), "{out}");
}

//! Server logs: no ANSI colour unless stderr is a terminal, `--log-format json` for log
//! shippers, and a failing stderr (a full disk) never stops requests or SIGTERM.

#![allow(clippy::unwrap_used)]

mod serve_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serve_support::{send, signal, Served, BIN};

/// The log once its last line (written just before exit) has been read from the pipe.
/// Waits until the server answers (its signal handlers are installed once it serves).
fn wait_ready(s: &Served) {
    let agent = serve_support::agent();
    let start = Instant::now();
    while send(&agent, "GET", &format!("{}/readyz", s.url), None).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "not ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
}

fn final_log(log: &std::sync::Arc<std::sync::Mutex<String>>) -> String {
    let start = Instant::now();
    loop {
        let text = log.lock().unwrap().clone();
        if text.contains("database closed cleanly") || start.elapsed() > Duration::from_secs(10) {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn logs_to_a_pipe_have_no_colour_and_json_lines_parse() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(&dir.path().join("d1"), &[], &[]);
    let log = s.stderr.clone();
    wait_ready(&s);
    assert!(s.terminate().success());
    let text = final_log(&log);
    assert!(text.contains("database closed cleanly"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escapes in a piped log: {text:?}"
    );

    let s = Served::start(&dir.path().join("d2"), &["--log-format", "json"], &[]);
    let log = s.stderr.clone();
    wait_ready(&s);
    assert!(s.terminate().success());
    let text = final_log(&log);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for l in &lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["level"].is_string(), "{l}");
    }
    assert!(text.contains("database closed cleanly"), "{text}");
}

#[test]
fn a_full_disk_under_stderr_neither_stops_requests_nor_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    if !std::path::Path::new("/dev/full").exists() {
        return;
    }
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("d"))
        .env("AMBERDB_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create("/dev/full").unwrap())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut first).unwrap();
    // Keep reading stdout (the server prints there too) so only stderr is failing.
    std::thread::spawn(move || for _ in out.lines() {});
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http"))
        .unwrap_or_else(|| panic!("no URL in {first:?}"))
        .to_owned();
    let agent = serve_support::agent();
    for i in 0..50 {
        let (status, _) = send(
            &agent,
            "PUT",
            &format!("{url}/v1/collections/c/docs/k{i}"),
            Some("{}"),
        )
        .unwrap();
        assert_eq!(status, 201);
    }
    signal(&child, "TERM");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("SIGTERM was ignored with stderr on a full disk");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

//! Connection behaviour under idle, slow, half-open and many clients, over raw TCP so that
//! nothing in an HTTP client library hides what the server does: header timeouts, the
//! connection cap (with the server's file descriptors counted), immediate 413 for a declared
//! body over the limit, lingering close, and `Connection: close` on early error answers.
//! Bounded: a few hundred sockets, short timeouts, every wait capped.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::TestServer;

fn connect(s: &TestServer) -> TcpStream {
    let c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c
}

/// Reads until the server closes the connection (EOF or reset) and returns what arrived, or
/// panics if it is still open after `within`.
fn read_until_closed(c: &mut TcpStream, within: Duration) -> Vec<u8> {
    c.set_read_timeout(Some(within)).unwrap();
    let mut out = vec![];
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!(
                    "the connection is still open after {within:?}; got {:?}",
                    String::from_utf8_lossy(&out)
                )
            }
            Err(_) => return out,
        }
    }
}

/// Reads one response head (through the blank line).
fn read_head(c: &mut TcpStream) -> String {
    let mut out = vec![];
    let mut byte = [0u8; 1];
    while !out.ends_with(b"\r\n\r\n") {
        match c.read(&mut byte) {
            Ok(1) => out.push(byte[0]),
            other => panic!(
                "reading a response head: {other:?} after {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
    String::from_utf8_lossy(&out).to_ascii_lowercase()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

#[test]
fn silent_half_sent_and_idle_keep_alive_connections_are_closed_after_the_header_timeout() {
    let s = TestServer::start(|c| c.header_read_timeout = Duration::from_millis(300));
    let mut silent = connect(&s);
    let mut half = connect(&s);
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut idle = connect(&s);
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let head = read_head(&mut idle);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let start = Instant::now();
    for c in [&mut silent, &mut half, &mut idle] {
        read_until_closed(c, Duration::from_secs(3));
    }
    assert!(start.elapsed() < Duration::from_secs(3));
    // The server still serves.
    assert_eq!(s.get("/healthz").status, 200);
}

#[test]
fn connections_over_the_cap_are_closed_at_once_and_server_fds_stay_bounded() {
    const CAP: usize = 8;
    const CLIENTS: usize = 200;
    let s = TestServer::start(|c| c.max_connections = CAP);
    // Let the server settle (engine files open) before counting.
    assert_eq!(s.get("/healthz").status, 200);
    std::thread::sleep(Duration::from_millis(300));
    let before = open_fds();
    let mut held: Vec<TcpStream> = (0..CLIENTS).map(|_| connect(&s)).collect();
    std::thread::sleep(Duration::from_millis(500));
    // Every client socket is an fd of this process too; what is left is the server's.
    let server_fds = open_fds().saturating_sub(before + CLIENTS);
    assert!(
        server_fds <= CAP + 4,
        "the server holds {server_fds} descriptors for {CLIENTS} idle connections (cap {CAP})"
    );
    // The ones over the cap were closed: reading them ends at once.
    let mut closed = 0;
    for c in held.iter_mut().skip(CAP) {
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        if matches!(c.read(&mut [0u8; 1]), Ok(0) | Err(_)) {
            closed += 1;
        }
    }
    assert!(closed >= CLIENTS - CAP - 1, "only {closed} were closed");
    drop(held);
    // Once they are gone the server serves again (lingering ends at the client's EOF).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = common::try_send(&common::agent(), "GET", &s.url("/healthz"), &[], None)
            .is_ok_and(|r| r.status == 200);
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not recover after the clients left"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_content_length_over_the_body_limit_gets_an_immediate_413() {
    let s = TestServer::start(|c| c.body_limit = 1 << 20);
    let mut c = connect(&s);
    let start = Instant::now();
    c.write_all(
        b"PUT /v1/collections/c/docs/k HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 67108864\r\n\r\n",
    )
    .unwrap();
    let head = read_head(&mut c);
    assert!(head.starts_with("http/1.1 413"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn a_client_still_sending_an_over_limit_body_sees_the_413_instead_of_a_reset() {
    // Like Python's urllib: send the whole body, then read the answer.
    let s = TestServer::start(|c| c.body_limit = 1 << 20);
    let mut c = connect(&s);
    let body_len: usize = 24 << 20;
    let head = format!(
        "PUT /v1/collections/c/docs/k HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {body_len}\r\n\r\n"
    );
    c.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b' '; 64 << 10];
    let mut sent = 0;
    while sent < body_len {
        c.write_all(&chunk)
            .unwrap_or_else(|e| panic!("sending the body failed after {sent} bytes: {e}"));
        sent += chunk.len();
    }
    let got = read_until_closed(&mut c, Duration::from_secs(15));
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
}

#[test]
fn early_error_answers_to_requests_with_a_body_say_connection_close() {
    let s = TestServer::start(|_| {});
    for (req, status) in [
        // 404 before the body is read.
        (
            "PUT /v1/nope HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n",
            "404",
        ),
        // 405 before the body is read.
        (
            "POST /v1/collections/c/docs/k HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n",
            "405",
        ),
    ] {
        let mut c = connect(&s);
        c.write_all(req.as_bytes()).unwrap();
        let head = read_head(&mut c);
        assert!(head.starts_with(&format!("http/1.1 {status}")), "{head}");
        assert!(head.contains("connection: close"), "{req}: {head}");
    }
    // Without a body, a keep-alive connection stays usable after an error.
    let mut c = connect(&s);
    c.write_all(
        b"GET /v1/nope HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    let first = read_head(&mut c);
    assert!(
        first.starts_with("http/1.1 404") && !first.contains("connection: close"),
        "{first}"
    );
}

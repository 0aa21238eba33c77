//! A real Server-Sent Events reader over a raw TCP socket for the HTTP tests: sends one
//! request, decodes the chunked body as it arrives, and parses events (`id`, `event`,
//! `data`, comment lines). Include with `#[path = "common/sse.rs"] mod sse;`.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// One parsed event (or a comment-only block).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
    pub comment: Option<String>,
}

impl SseEvent {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {}", self.data))
    }
}

/// An open stream.
pub struct SseStream {
    sock: TcpStream,
    raw: Vec<u8>,
    body: Vec<u8>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    chunked: bool,
    eof: bool,
}

impl SseStream {
    /// Sends `GET path` with `Accept: text/event-stream` and the extra headers; returns once
    /// the response head is read.
    pub fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> SseStream {
        let mut sock = TcpStream::connect(addr).unwrap();
        let mut req =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        sock.write_all(req.as_bytes()).unwrap();
        let mut s = SseStream {
            sock,
            raw: vec![],
            body: vec![],
            status: 0,
            headers: vec![],
            chunked: false,
            eof: false,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let end = loop {
            if let Some(i) = s.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            assert!(s.read_more(deadline), "no response head");
        };
        let head = String::from_utf8(s.raw[..end].to_vec()).unwrap();
        s.raw.drain(..end + 4);
        let mut lines = head.split("\r\n");
        s.status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        for l in lines {
            let (k, v) = l.split_once(':').unwrap();
            s.headers
                .push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        s.chunked = s
            .header("transfer-encoding")
            .is_some_and(|v| v.contains("chunked"));
        s
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn read_more(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        self.sock.set_read_timeout(Some(left)).unwrap();
        let mut buf = [0u8; 8192];
        match self.sock.read(&mut buf) {
            Ok(0) => {
                self.eof = true;
                false
            }
            Ok(n) => {
                self.raw.extend_from_slice(&buf[..n]);
                true
            }
            Err(_) => false,
        }
    }

    /// Moves complete chunks from `raw` to `body`.
    fn dechunk(&mut self) {
        if !self.chunked {
            self.body.append(&mut self.raw);
            return;
        }
        loop {
            let Some(i) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let line = String::from_utf8_lossy(&self.raw[..i]).to_string();
            let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).unwrap();
            if self.raw.len() < i + 2 + size + 2 {
                return;
            }
            let data: Vec<u8> = self.raw[i + 2..i + 2 + size].to_vec();
            self.raw.drain(..i + 2 + size + 2);
            if size == 0 {
                self.eof = true;
                return;
            }
            self.body.extend_from_slice(&data);
        }
    }

    /// The rest of the body (for a non-stream answer such as an error), read to its end.
    pub fn read_body(&mut self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            self.dechunk();
            let len = self
                .header("content-length")
                .and_then(|v| v.parse::<usize>().ok());
            if self.eof || len.is_some_and(|n| self.body.len() >= n) {
                return String::from_utf8_lossy(&self.body).to_string();
            }
            if !self.read_more(deadline) && !self.eof {
                return String::from_utf8_lossy(&self.body).to_string();
            }
        }
    }

    /// The next event or comment block, or `None` after `timeout` or at the end of the stream.
    pub fn next_event(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            self.dechunk();
            if let Some(i) = self.body.windows(2).position(|w| w == b"\n\n") {
                let block = String::from_utf8(self.body[..i].to_vec()).unwrap();
                self.body.drain(..i + 2);
                let mut e = SseEvent::default();
                let mut data = vec![];
                for line in block.lines() {
                    if let Some(c) = line.strip_prefix(':') {
                        e.comment = Some(c.trim().to_owned());
                        continue;
                    }
                    let (k, v) = line.split_once(':').unwrap_or((line, ""));
                    let v = v.strip_prefix(' ').unwrap_or(v);
                    match k {
                        "id" => e.id = Some(v.to_owned()),
                        "event" => e.event = Some(v.to_owned()),
                        "data" => data.push(v.to_owned()),
                        _ => {}
                    }
                }
                e.data = data.join("\n");
                return Some(e);
            }
            if self.eof || !self.read_more(deadline) {
                return None;
            }
        }
    }

    /// The next `event: change`, skipping heartbeats.
    pub fn next_change(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let e = self.next_event(left)?;
            if e.event.as_deref() == Some("change") {
                return Some(e);
            }
        }
    }
}

//! Shared helpers for the HTTP integration tests: a real server on a random loopback port
//! (in this process, on its own tokio runtime), and a tiny blocking client.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use amberdb_server::{Config, Server};

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub base: String,
    pub data: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), String>>>,
    _dir: Option<tempfile::TempDir>,
}

/// A config for tests: loopback port 0, data in `data`.
pub fn test_config(data: &Path) -> Config {
    Config::load(
        None,
        vec![],
        &[
            ("listen".into(), "127.0.0.1:0".into()),
            ("data".into(), data.display().to_string()),
        ],
    )
    .unwrap()
}

impl TestServer {
    /// Starts a server on a fresh temporary data directory.
    pub fn start(customize: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut s = TestServer::start_in(dir.path(), customize);
        s._dir = Some(dir);
        s
    }

    /// Starts a server on `data`.
    pub fn start_in(data: &Path, customize: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_with(data, customize, |_| {})
    }

    /// Starts a server on `data` with engine options adjusted (fault injection).
    pub fn start_with(
        data: &Path,
        customize: impl FnOnce(&mut Config),
        engine: impl FnOnce(&mut amberdb::Options) + Send + 'static,
    ) -> TestServer {
        let mut config = test_config(data);
        customize(&mut config);
        let tls = config.tls.is_some();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || -> Result<(), String> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async move {
                let server = match Server::bind_with(config, engine).await {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = addr_tx.send(Err(e.to_string()));
                        return Err(e.to_string());
                    }
                };
                let _ = addr_tx.send(Ok(server.local_addr()));
                server
                    .run(async move {
                        let _ = stop_rx.await;
                    })
                    .await
                    .map_err(|e| e.to_string())
            })
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap()
            .unwrap();
        let scheme = if tls { "https" } else { "http" };
        TestServer {
            addr,
            base: format!("{scheme}://{addr}"),
            data: data.to_owned(),
            stop: Some(stop_tx),
            thread: Some(thread),
            _dir: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Graceful shutdown; returns the server's result.
    pub fn stop(mut self) -> Result<(), String> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<(), String> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| "server thread panicked".to_string())?,
            None => Ok(()),
        }
    }

    /// Sends a request.
    pub fn req(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Resp {
        send(&agent(), method, &self.url(path), headers, body)
    }

    pub fn get(&self, path: &str) -> Resp {
        self.req("GET", path, &[], None)
    }

    pub fn put_json(&self, path: &str, body: &str) -> Resp {
        self.req(
            "PUT",
            path,
            &[("content-type", "application/json")],
            Some(body.as_bytes()),
        )
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The stable error code of an error response.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", self.body))
            .to_owned()
    }
}

/// An agent that returns 4xx/5xx as responses instead of errors.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// Sends one request with any method, headers and body.
pub fn send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Resp {
    try_send(agent, method, url, headers, body).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// Like [`send`], but a transport error (refused, reset) is returned.
pub fn try_send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Resp, ureq::Error> {
    let mut b = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b
        .body(body.map(<[u8]>::to_vec).unwrap_or_default())
        .unwrap();
    let mut resp = agent.run(req)?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let body = resp
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()?;
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// A new API token with these scopes: (the secret to send, the entry for `Config::tokens`).
pub fn token(name: &str, scopes: &[&str]) -> (String, amberdb_server::auth::TokenEntry) {
    let (secret, hash) = amberdb_server::auth::new_token();
    let entry = amberdb_server::auth::TokenEntry {
        name: name.into(),
        sha256: amberdb_server::auth::parse_hash(&hash).unwrap(),
        scopes: scopes
            .iter()
            .map(|s| s.parse::<amberdb_server::auth::Scope>().unwrap())
            .collect(),
    };
    (secret, entry)
}

/// A JSON request with `token` as the bearer.
pub fn call(s: &TestServer, token: &str, method: &str, path: &str, body: Option<&str>) -> Resp {
    let auth = format!("Bearer {token}");
    s.req(
        method,
        path,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body.map(str::as_bytes),
    )
}

/// Whether any byte of any file under `root` spells `needle` (the plaintext scans of the
/// encryption tests).
pub fn any_file_contains(root: &Path, needle: &str) -> bool {
    std::fs::read_dir(root).unwrap().any(|e| {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            any_file_contains(&e.path(), needle)
        } else {
            let b = std::fs::read(e.path()).unwrap();
            b.windows(needle.len()).any(|w| w == needle.as_bytes())
        }
    })
}

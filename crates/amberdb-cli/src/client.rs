//! The CLI's side of the HTTP API: a small blocking client for `--url` (`AMBERDB_URL`) with
//! an optional bearer token (`--token`, `AMBERDB_TOKEN`), turning API errors into the same
//! sentences, hints and exit codes as local errors.

use std::time::Duration;

use crate::exit::{CliError, ERROR, NOT_FOUND, USAGE};

/// A server to talk to.
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// A response: status, headers we care about, body.
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The body as text.
    pub body: String,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, CliError> {
        serde_json::from_str(&self.body).map_err(|e| {
            CliError::new(
                ERROR,
                format!("the server answered with something that is not JSON ({e})"),
            )
        })
    }
}

impl Client {
    /// A client for `url` (e.g. `http://127.0.0.1:7070`).
    pub fn new(url: &str, token: Option<String>) -> Result<Client, CliError> {
        let base = url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(CliError::usage(format!(
                "--url {url:?} must start with http:// or https://"
            )));
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        Ok(Client { base, token, agent })
    }

    /// Sends a request; transport failures become errors with a hint, HTTP errors are
    /// returned as replies (see [`Client::check`]).
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Reply, CliError> {
        let url = format!("{}{}", self.base, path);
        let mut b = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = &self.token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            b = b.header(*k, v.as_str());
        }
        let req = b
            .body(body.unwrap_or_default())
            .map_err(|e| CliError::usage(format!("bad request for {url}: {e}")))?;
        let mut resp = self.agent.run(req).map_err(|e| {
            CliError::new(ERROR, format!("cannot reach {url}: {e}"))
                .hint("is `amberdb serve` running there? check --url / AMBERDB_URL")
        })?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 32)
            .read_to_string()
            .map_err(|e| CliError::new(ERROR, format!("reading the answer from {url}: {e}")))?;
        Ok(Reply { status, body })
    }

    /// Sends a request whose body streams from `body` (blob uploads); the answer is read
    /// whole (it is JSON).
    pub fn send_reader(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &mut dyn std::io::Read,
    ) -> Result<Reply, CliError> {
        let url = format!("{}{}", self.base, path);
        let mut b = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = &self.token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            b = b.header(*k, v.as_str());
        }
        let req = b
            .body(ureq::SendBody::from_reader(body))
            .map_err(|e| CliError::usage(format!("bad request for {url}: {e}")))?;
        let mut resp = self.agent.run(req).map_err(|e| {
            CliError::new(ERROR, format!("cannot reach {url}: {e}"))
                .hint("is `amberdb serve` running there? check --url / AMBERDB_URL")
        })?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 24)
            .read_to_string()
            .map_err(|e| CliError::new(ERROR, format!("reading the answer from {url}: {e}")))?;
        Ok(Reply { status, body })
    }

    /// GETs `path` and streams a 200 answer's body into `out` (blob downloads), reporting
    /// progress by its `Content-Length`; any other answer is an error as in [`Client::call`].
    pub fn download(
        &self,
        path: &str,
        out: &mut dyn std::io::Write,
        progress: &dyn amberdb::backup::Progress,
    ) -> Result<u64, CliError> {
        let url = format!("{}{}", self.base, path);
        let mut b = ureq::http::Request::builder().method("GET").uri(&url);
        if let Some(t) = &self.token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let req = b
            .body(())
            .map_err(|e| CliError::usage(format!("bad request for {url}: {e}")))?;
        let mut resp = self.agent.run(req).map_err(|e| {
            CliError::new(ERROR, format!("cannot reach {url}: {e}"))
                .hint("is `amberdb serve` running there? check --url / AMBERDB_URL")
        })?;
        let status = resp.status().as_u16();
        if status != 200 {
            let body = resp
                .body_mut()
                .with_config()
                .limit(1 << 24)
                .read_to_string()
                .unwrap_or_default();
            check(Reply { status, body })?;
            return Ok(0);
        }
        let total = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        progress.begin(&format!("downloading {path}"), total);
        let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
        let mut buf = vec![0u8; 64 << 10];
        let mut n = 0u64;
        loop {
            let k = std::io::Read::read(&mut reader, &mut buf)
                .map_err(|e| CliError::new(ERROR, format!("reading {url}: {e}")))?;
            if k == 0 {
                break;
            }
            out.write_all(buf.get(..k).unwrap_or_default())
                .map_err(|e| CliError::new(ERROR, format!("writing the blob: {e}")))?;
            progress.advance(k as u64);
            n += k as u64;
        }
        progress.end();
        Ok(n)
    }

    /// Sends and turns any non-2xx answer into a CLI error.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Reply, CliError> {
        let r = self.send(method, path, headers, body)?;
        check(r)
    }
}

/// Maps an error answer to an exit code and a hint: 404 is "not found" (3), malformed input
/// is a usage error (2), everything else is 1.
pub fn check(r: Reply) -> Result<Reply, CliError> {
    if (200..300).contains(&r.status) {
        return Ok(r);
    }
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
    let code = v["error"]["code"].as_str().unwrap_or("unknown").to_owned();
    let message = v["error"]["message"].as_str().map_or_else(
        || format!("HTTP {}: {}", r.status, r.body.trim()),
        str::to_owned,
    );
    let exit = match r.status {
        404 => NOT_FOUND,
        400 | 413 | 415 => USAGE,
        _ => ERROR,
    };
    let mut err = CliError::new(exit, format!("{message} ({code})"));
    err = match r.status {
        401 => err.hint(
            "pass a token with --token or AMBERDB_TOKEN (create one with `amberdb token create`)",
        ),
        403 => err.hint("the token's scopes do not cover this; see `amberdb token create --help`"),
        409 | 412 => err.hint("re-read the document and retry with its current version"),
        503 => err.hint("the server is shutting down, poisoned or overloaded; check GET /readyz"),
        _ => err,
    };
    if let Some(conflicts) = v["error"]["details"]["conflicts"].as_array() {
        for c in conflicts {
            eprintln!("conflict: {c}");
        }
    }
    Err(err)
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved characters).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `/v1/collections/{c}/docs/{key}` with both parts encoded.
pub fn doc_path(collection: &str, key: &str) -> String {
    format!(
        "/v1/collections/{}/docs/{}",
        segment(collection),
        segment(key)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
        assert_eq!(segment("é"), "%C3%A9");
        assert_eq!(
            doc_path("players", "x?y"),
            "/v1/collections/players/docs/x%3Fy"
        );
    }
}

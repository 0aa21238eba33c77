//! The request and response headers of API v1: entity tags (`ETag` = document version),
//! `If-Match`, `If-None-Match`, `Amber-Durability`, `Amber-Schema-Version`, content types.

use axum::http::{header, HeaderMap, HeaderName, HeaderValue};

use crate::config::Config;
use crate::error::ApiError;

/// Durability of this request: `sync` or `buffered`.
pub const DURABILITY: HeaderName = HeaderName::from_static("amber-durability");
/// Schema version of a written value (request) or the stored value (response).
pub const SCHEMA_VERSION: HeaderName = HeaderName::from_static("amber-schema-version");
/// The document's version.
pub const VERSION: HeaderName = HeaderName::from_static("amber-version");
/// LSN of the document's last write (or of the commit, on writes).
pub const LSN: HeaderName = HeaderName::from_static("amber-lsn");

/// A parsed `If-Match` or `If-None-Match` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// `*`: any current document.
    Any,
    /// A list of versions. Tags that are not versions are kept as `None`: they never match.
    Versions(Vec<Option<u64>>),
}

impl Condition {
    /// True when the document at `version` (0 = missing) satisfies the condition.
    pub fn matches(&self, version: u64) -> bool {
        match self {
            Condition::Any => version != 0,
            Condition::Versions(vs) => version != 0 && vs.contains(&Some(version)),
        }
    }
}

/// The `ETag` value for a version.
pub fn etag(version: u64) -> HeaderValue {
    // Digits and quotes are always a valid header value.
    HeaderValue::from_str(&format!("\"{version}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

fn parse_condition(headers: &HeaderMap, name: HeaderName) -> Result<Option<Condition>, ApiError> {
    let mut tags = vec![];
    let mut any = false;
    let mut seen = false;
    for v in headers.get_all(&name) {
        seen = true;
        let s = v
            .to_str()
            .map_err(|_| ApiError::bad_request("invalid_header", format!("{name} is not ASCII")))?;
        for part in s.split(',') {
            let t = part.trim();
            if t == "*" {
                any = true;
                continue;
            }
            let t = t.strip_prefix("W/").unwrap_or(t);
            let inner = t.strip_prefix('"').and_then(|t| t.strip_suffix('"')).ok_or_else(|| {
                ApiError::bad_request("invalid_header", format!("{name}: {part:?} is not an entity tag; use the ETag value, e.g. \"3\", or *"))
            })?;
            tags.push(inner.parse::<u64>().ok());
        }
    }
    Ok(match (seen, any) {
        (false, _) => None,
        (true, true) => Some(Condition::Any),
        (true, false) => Some(Condition::Versions(tags)),
    })
}

/// `If-Match`, if present.
pub fn if_match(headers: &HeaderMap) -> Result<Option<Condition>, ApiError> {
    parse_condition(headers, header::IF_MATCH)
}

/// `If-None-Match`, if present.
pub fn if_none_match(headers: &HeaderMap) -> Result<Option<Condition>, ApiError> {
    parse_condition(headers, header::IF_NONE_MATCH)
}

/// The durability a write asks for, or `None` for the configured default.
pub fn durability(
    headers: &HeaderMap,
    config: &Config,
) -> Result<Option<amberdb::Durability>, ApiError> {
    let Some(v) = headers.get(DURABILITY) else {
        return Ok(None);
    };
    match v.to_str().map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        Ok("sync") => Ok(Some(amberdb::Durability::Sync)),
        Ok("buffered") => Ok(Some(amberdb::buffered(config.buffered_max_delay))),
        _ => Err(ApiError::bad_request(
            "invalid_header",
            "Amber-Durability must be sync or buffered",
        )),
    }
}

/// `Amber-Schema-Version`, if present.
pub fn schema_version(headers: &HeaderMap) -> Result<Option<u32>, ApiError> {
    let Some(v) = headers.get(SCHEMA_VERSION) else {
        return Ok(None);
    };
    match v.to_str().ok().and_then(|s| s.trim().parse::<u32>().ok()) {
        Some(n) if n > 0 => Ok(Some(n)),
        _ => Err(ApiError::bad_request(
            "invalid_header",
            "Amber-Schema-Version must be a positive integer",
        )),
    }
}

/// The schema version a reader asks for: `Amber-Accept-Schema: N` (request; the response's
/// `Amber-Schema-Version` is the version returned).
pub const ACCEPT_SCHEMA: HeaderName = HeaderName::from_static("amber-accept-schema");

/// The schema version a read asks for, from `Amber-Accept-Schema` or `?schema_version=`
/// (`None`: the collection's current version). Both given and different is refused.
pub fn accept_schema(headers: &HeaderMap, query: Option<u32>) -> Result<Option<u32>, ApiError> {
    let header = match headers.get(ACCEPT_SCHEMA) {
        None => None,
        Some(v) => match v.to_str().ok().and_then(|s| s.trim().parse::<u32>().ok()) {
            Some(n) if n > 0 => Some(n),
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_header",
                    "Amber-Accept-Schema must be a positive integer",
                ))
            }
        },
    };
    if query == Some(0) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "schema_version must be a positive integer",
        ));
    }
    match (header, query) {
        (Some(h), Some(q)) if h != q => Err(ApiError::bad_request(
            "invalid_query",
            format!("Amber-Accept-Schema: {h} and ?schema_version={q} disagree"),
        )),
        (h, q) => Ok(h.or(q)),
    }
}

/// The media type of the request body, lower-cased, without parameters; `None` when absent.
pub fn content_type(headers: &HeaderMap) -> Option<String> {
    headers.get(header::CONTENT_TYPE).map(|v| {
        v.to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    })
}

/// Requires a JSON body: `application/json`, any `+json` type, or no Content-Type at all.
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    match content_type(headers) {
        None => Ok(()),
        Some(ct) if ct == "application/json" || ct.ends_with("+json") => Ok(()),
        Some(ct) => Err(unsupported(&ct, "application/json")),
    }
}

/// 415 for a body of the wrong type.
pub fn unsupported(got: &str, want: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("Content-Type {got:?} is not accepted here; send {want}"),
    )
}

// ---- Document expiry (TTL) ----

/// Request: the written document expires this many seconds after the commit.
pub const TTL: HeaderName = HeaderName::from_static("amber-ttl");
/// Request: the written document expires at this RFC 3339 time. Response: when the document
/// expires (absent when it never does).
pub const EXPIRES_AT: HeaderName = HeaderName::from_static("amber-expires-at");

/// Parses an RFC 3339 time into microseconds since the Unix epoch (`None` when it is not one,
/// or before 1970).
pub fn parse_rfc3339_micros(s: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        .ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1000).ok()
}

/// The expiry a write asks for with `Amber-TTL: <seconds>` or `Amber-Expires-At: <RFC 3339>`
/// (at most one of them); `None` when neither is sent. The engine bounds both
/// (`amberdb::limits::MAX_TTL`) and refuses an `Amber-Expires-At` that is not in the future.
pub fn expiry(headers: &HeaderMap) -> Result<Option<amberdb::Expiry>, ApiError> {
    match (headers.get(TTL), headers.get(EXPIRES_AT)) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "invalid_header",
            "send Amber-TTL or Amber-Expires-At, not both",
        )),
        (Some(v), None) => {
            let max = amberdb::limits::MAX_TTL.as_secs();
            match v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) {
                Some(n) if (1..=max).contains(&n) => Ok(Some(amberdb::Expiry::Ttl(
                    std::time::Duration::from_secs(n),
                ))),
                _ => Err(ApiError::bad_request(
                    "invalid_header",
                    format!("Amber-TTL must be a whole number of seconds from 1 to {max}"),
                )),
            }
        }
        (None, Some(v)) => match v.to_str().ok().and_then(parse_rfc3339_micros) {
            Some(us) => Ok(Some(amberdb::Expiry::At(us))),
            None => Err(ApiError::bad_request(
                "invalid_header",
                "Amber-Expires-At must be an RFC 3339 time, like 2026-12-01T00:00:00Z",
            )),
        },
    }
}

/// Sets `Amber-Expires-At` (RFC 3339) when the document has an expiry.
pub fn set_expires_at(h: &mut HeaderMap, expires_at: Option<u64>) {
    if let Some(at) = expires_at {
        if let Ok(v) = HeaderValue::from_str(&amberdb::format_micros(at)) {
            h.insert(EXPIRES_AT, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: HeaderName, v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn conditions_parse_tags_lists_and_star() {
        assert_eq!(if_match(&HeaderMap::new()).expect("ok"), None);
        assert_eq!(
            if_match(&with(header::IF_MATCH, "\"3\"")).expect("ok"),
            Some(Condition::Versions(vec![Some(3)]))
        );
        assert_eq!(
            if_match(&with(header::IF_MATCH, "W/\"3\", \"5\"")).expect("ok"),
            Some(Condition::Versions(vec![Some(3), Some(5)]))
        );
        assert_eq!(
            if_match(&with(header::IF_MATCH, "*")).expect("ok"),
            Some(Condition::Any)
        );
        assert_eq!(
            if_match(&with(header::IF_MATCH, "\"abc\"")).expect("ok"),
            Some(Condition::Versions(vec![None]))
        );
        assert!(if_match(&with(header::IF_MATCH, "3")).is_err());
        assert!(Condition::Versions(vec![Some(3)]).matches(3));
        assert!(!Condition::Versions(vec![Some(3)]).matches(4));
        assert!(!Condition::Any.matches(0));
    }
}

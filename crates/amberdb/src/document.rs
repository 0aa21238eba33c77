//! Documents and their metadata, and the validation rules for collection names and keys.

use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest collection name, in bytes.
pub const MAX_COLLECTION_BYTES: usize = 64;

/// A stored document: its key, its value as canonical compact JSON bytes, and its metadata.
///
/// Cloning is cheap: the key and value are shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The document's key within its collection.
    pub key: Arc<str>,
    /// Canonical compact JSON (object keys sorted), exactly the bytes `sha256` covers.
    pub value: Arc<[u8]>,
    /// Version, timestamps, LSN and checksum.
    pub meta: DocMeta,
}

/// Metadata kept with every document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocMeta {
    /// 1 on create, +1 on every write. A counter, never a content hash.
    pub version: u64,
    /// Schema version the value conforms to.
    pub schema_version: u32,
    /// Commit time of the creating write, microseconds since the Unix epoch.
    pub created_at: u64,
    /// Commit time of the last write, microseconds since the Unix epoch.
    pub updated_at: u64,
    /// LSN of the last write.
    pub lsn: u64,
    /// When the document expires, microseconds since the Unix epoch; `None` never.
    pub expires_at: Option<u64>,
    /// SHA-256 of `value`.
    pub sha256: [u8; 32],
}

impl DocMeta {
    /// Whether the document is visible at `now` (microseconds since the Unix epoch): it has
    /// no expiry, or expires after `now`. Every read path filters with this one function
    /// (reads at the clock's now, transaction preconditions at the commit time, as-of reads
    /// at their target's commit time), so they all agree on when a document is gone.
    pub fn is_live_at(&self, now: u64) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

impl Document {
    /// Whether the document has expired at `now`: the negation of [`DocMeta::is_live_at`].
    pub fn expired_at(&self, now: u64) -> bool {
        !self.meta.is_live_at(now)
    }

    /// Parses the value into any deserializable type.
    pub fn value_as<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.value).map_err(|e| Error::InvalidValue(e.to_string()))
    }

    /// Parses the value as a generic JSON value.
    pub fn json(&self) -> Result<serde_json::Value> {
        self.value_as()
    }

    /// The JSON envelope used by the CLI and the server: key, value, version, schema_version,
    /// timestamps (RFC 3339 and microseconds), lsn and sha256 (hex), and `expires_at` /
    /// `expires_at_us` when the document has an expiry.
    ///
    /// A `serde_json::Value` cannot hold a value nested deeper than serde_json's parser limit
    /// (128 levels; databases written before the depth limit may have such documents), and
    /// this returns `null` for one: readers that serve stored values use
    /// [`Document::envelope_raw`], which never parses the value.
    pub fn envelope(&self, collection: &str) -> serde_json::Value {
        serde_json::from_str(self.envelope_raw(collection).get()).unwrap_or(serde_json::Value::Null)
    }

    /// The envelope of [`Document::envelope`] as JSON text, with the stored value bytes
    /// copied in as they are (never parsed into a `Value`), so a read serves exactly what was
    /// stored whatever its depth.
    pub fn envelope_raw(&self, collection: &str) -> Box<serde_json::value::RawValue> {
        self.envelope_with(collection, None)
    }

    /// The envelope, with `stored_schema_version` when the value is presented at another
    /// schema version than it is stored at (see `schema::VersionedDoc`).
    pub(crate) fn envelope_with(
        &self,
        collection: &str,
        stored_schema_version: Option<u32>,
    ) -> Box<serde_json::value::RawValue> {
        #[derive(Serialize)]
        struct Envelope<'a> {
            collection: &'a str,
            key: &'a str,
            value: &'a serde_json::value::RawValue,
            version: u64,
            schema_version: u32,
            #[serde(skip_serializing_if = "Option::is_none")]
            stored_schema_version: Option<u32>,
            created_at: String,
            updated_at: String,
            created_at_us: u64,
            updated_at_us: u64,
            lsn: u64,
            sha256: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            expires_at: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            expires_at_us: Option<u64>,
        }
        // Stored values are always valid JSON (canonical bytes under a SHA-256); borrowing
        // them as a RawValue only scans them (iteratively: no depth limit). Should they not
        // be JSON, null rather than a panic.
        let raw: &serde_json::value::RawValue = std::str::from_utf8(&self.value)
            .ok()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_else(|| {
                serde_json::from_str("null").unwrap_or_else(|_| unreachable!("null is JSON"))
            });
        let env = Envelope {
            collection,
            key: &self.key,
            value: raw,
            version: self.meta.version,
            schema_version: self.meta.schema_version,
            stored_schema_version,
            created_at: format_micros(self.meta.created_at),
            updated_at: format_micros(self.meta.updated_at),
            created_at_us: self.meta.created_at,
            updated_at_us: self.meta.updated_at,
            lsn: self.meta.lsn,
            sha256: hex::encode(self.meta.sha256),
            expires_at: self.meta.expires_at.map(format_micros),
            expires_at_us: self.meta.expires_at,
        };
        // Serializing plain fields and a RawValue to text cannot fail.
        serde_json::value::to_raw_value(&env).unwrap_or_else(|_| unreachable!("envelope is JSON"))
    }
}

/// Checks a collection name against `[a-z0-9_][a-z0-9_.-]{0,63}`.
pub fn validate_collection(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidCollection {
            name: truncate(name),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_COLLECTION_BYTES {
        return bad("longer than 64 bytes");
    }
    let mut chars = name.bytes();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_');
    if !first_ok {
        return bad("must start with a-z, 0-9 or _");
    }
    if !chars
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'.' | b'-'))
    {
        return bad("may only contain a-z, 0-9, _, . and -");
    }
    Ok(())
}

/// Checks a document key: UTF-8 (guaranteed by `&str`), 1..=1024 bytes, no NUL.
pub fn validate_key(key: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidKey {
            key: truncate(key),
            reason,
        })
    };
    if key.is_empty() {
        return bad("empty");
    }
    if key.len() > MAX_KEY_BYTES {
        return bad("longer than 1024 bytes");
    }
    if key.contains('\0') {
        return bad("contains a NUL byte");
    }
    Ok(())
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Encodes a JSON value canonically: compact, object keys sorted (serde_json's default map is
/// ordered), so equal values always have equal bytes and equal SHA-256.
pub fn canonical_json(value: &serde_json::Value) -> Vec<u8> {
    // Serializing a `Value` to a Vec cannot fail: it has no non-string map keys and no I/O.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Formats microseconds since the epoch as RFC 3339 UTC with microsecond precision.
pub fn format_micros(us: u64) -> String {
    let secs = us / 1_000_000;
    let micros = us % 1_000_000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Current time in microseconds since the Unix epoch.
pub(crate) fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_names_follow_the_documented_pattern() {
        for ok in ["players", "a", "_x", "0", "game.states-v2", &"a".repeat(64)] {
            assert!(validate_collection(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Players",
            ".x",
            "-x",
            "a b",
            "a/b",
            &"a".repeat(65),
            "é",
        ] {
            assert!(validate_collection(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_are_one_to_1024_bytes_without_nul() {
        assert!(validate_key("p1").is_ok());
        assert!(validate_key(&"k".repeat(1024)).is_ok());
        assert!(validate_key("").is_err());
        assert!(validate_key(&"k".repeat(1025)).is_err());
        assert!(validate_key("a\0b").is_err());
    }

    #[test]
    fn envelopes_of_values_deeper_than_the_parser_limit_carry_the_stored_bytes() {
        // A database written before the depth limit may hold such a value; reads served it
        // as `null` (serde_json's Value cannot parse past 128 levels).
        let deep = format!("{}1{}", "[".repeat(300), "]".repeat(300));
        let doc = Document {
            key: "k".into(),
            value: deep.as_bytes().into(),
            meta: DocMeta {
                version: 1,
                schema_version: 1,
                created_at: 0,
                updated_at: 0,
                lsn: 1,
                expires_at: None,
                sha256: [0; 32],
            },
        };
        let raw = doc.envelope_raw("c");
        assert!(
            raw.get().contains(&format!("\"value\":{deep}")),
            "{}",
            raw.get()
        );
    }

    #[test]
    fn micros_format_as_rfc3339() {
        assert_eq!(format_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            format_micros(1_700_000_000_123_456),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(
            format_micros(951_782_400_000_000),
            "2000-02-29T00:00:00.000000Z"
        );
    }
}

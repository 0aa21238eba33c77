//! Reads at a schema version (docs/SCHEMAS.md, "Reads across versions"): which version a
//! read asks for (`Amber-Accept-Schema: N` or `?schema_version=N`; the collection's current
//! version by default) and the presenting of stored documents at it, migrated on read and
//! never persisted. Documents, listings, exports, as-of reads and history go through here.

use amberdb::schema::{Reader, VersionedDoc};
use amberdb::{Document, ReadView};
use axum::http::{header, HeaderMap, HeaderValue};

use crate::blocking::blocking;
use crate::error::ApiError;
use crate::headers;
use crate::state::Shared;

/// The reader for `collection` at the version the request asks for, under the spec of
/// `view`: 400 for a version the spec does not define.
pub fn reader(
    state: &Shared,
    view: &ReadView,
    collection: &str,
    h: &HeaderMap,
    query: Option<u32>,
) -> Result<Reader, ApiError> {
    let want = headers::accept_schema(h, query)?;
    Ok(state.db.schema_reader(view, collection, want)?)
}

/// True when `reader` returns a document stored at `stored` migrated (not as stored).
fn migrates(reader: &Reader, stored: u32) -> bool {
    reader.target().is_some_and(|t| stored.max(1) != t)
}

/// `docs` at the reader's version. Migrating may run `jq` steps (bounded per document), so
/// a page that needs any migration is presented on the blocking pool; a page stored at the
/// version asked for costs nothing. A document without a down path fails the whole read
/// with 406 `no_down_migration`.
pub async fn present(reader: &Reader, docs: Vec<Document>) -> Result<Vec<VersionedDoc>, ApiError> {
    if !docs.iter().any(|d| migrates(reader, d.meta.schema_version)) {
        return Ok(docs
            .into_iter()
            .map(|d| reader.present(d))
            .collect::<amberdb::Result<_>>()?);
    }
    let reader = reader.clone();
    Ok(blocking(move || {
        docs.into_iter()
            .map(|d| reader.present(d))
            .collect::<amberdb::Result<Vec<_>>>()
    })
    .await??)
}

/// One stored value (`key`, stored at `stored`) at the reader's version: the bytes to send
/// (`None`: as stored) and the version returned. Runs on the caller's thread: use it inside
/// blocking work.
pub fn present_value(
    reader: &Reader,
    key: &str,
    value: &[u8],
    stored: u32,
) -> amberdb::Result<(Option<Vec<u8>>, u32)> {
    Ok(reader
        .present_value(key, value, stored)?
        .unwrap_or((None, stored)))
}

/// Marks a read's answer as depending on `Amber-Accept-Schema` (caches must not mix
/// versions).
pub fn vary(h: &mut HeaderMap) {
    h.append(
        header::VARY,
        HeaderValue::from_static("amber-accept-schema"),
    );
}

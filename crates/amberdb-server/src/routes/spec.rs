//! Collection specs: `GET|PUT /v1/collections/{c}/spec`. A spec is stored in the database
//! (`amberdb::spec`), so it is logged, backed up and restored like the documents it governs.
//! Today it holds the collection's default TTL only.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::{Extension, Json};

use super::documents::CollectionPath;
use super::{body, parse_json, path, require_read, require_write, ReadErrors, WriteErrors};
use crate::api::SpecBody;
use crate::auth::Principal;
use crate::blocking::blocking;
use crate::error::ApiResult;
use crate::headers;
use crate::state::Shared;

/// A collection's spec (the default spec, `{"default_ttl_s": null}`, when none was set).
#[utoipa::path(
    get,
    path = "/v1/collections/{collection}/spec",
    tag = "collections",
    params(CollectionPath),
    responses((status = 200, description = "The spec", body = SpecBody), ReadErrors),
    security(("bearer" = []))
)]
pub async fn get_spec(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    p: Result<Path<CollectionPath>, PathRejection>,
) -> ApiResult<Json<SpecBody>> {
    let CollectionPath { collection } = path(p)?;
    amberdb::validate_collection(&collection)?;
    require_read(&who, &collection)?;
    let spec = state.db.spec(&collection)?;
    Ok(Json(SpecBody {
        default_ttl_s: spec.default_ttl_s,
    }))
}

/// Set a collection's spec (write scope on the collection). `default_ttl_s`: writes that set
/// no expiry of their own (`Amber-TTL`, `Amber-Expires-At`, `ttl_ms`, `expires_at`) expire
/// this many seconds after their commit; `null` removes the default. Documents written
/// before keep the expiry they have.
#[utoipa::path(
    put,
    path = "/v1/collections/{collection}/spec",
    tag = "collections",
    params(CollectionPath),
    request_body(content = SpecBody, content_type = "application/json"),
    responses((status = 200, description = "Stored; the new spec", body = SpecBody), WriteErrors),
    security(("bearer" = []))
)]
pub async fn put_spec(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    p: Result<Path<CollectionPath>, PathRejection>,
    h: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<SpecBody>> {
    let CollectionPath { collection } = path(p)?;
    amberdb::validate_collection(&collection)?;
    require_write(&who, &collection)?;
    headers::require_json(&h)?;
    let bytes = body(b)?;
    let req: SpecBody = parse_json(&bytes, "invalid_spec")?;
    let db = state.db.clone();
    let c = collection.clone();
    let stored = blocking(move || {
        // Keep what a later version stored beside the default TTL.
        let mut spec = db.spec(&c)?;
        spec.default_ttl_s = req.default_ttl_s;
        db.set_spec(&c, &spec)?;
        Ok::<_, amberdb::Error>(spec)
    })
    .await??;
    Ok(Json(SpecBody {
        default_ttl_s: stored.default_ttl_s,
    }))
}

//! Collection specs: `GET|PUT /v1/collections/{c}/spec`. A spec is stored in the database
//! (`amberdb::spec`), so it is logged, backed up and restored like the documents it governs.
//! It holds the collection's schema versions, JSON Schemas and migrations (`docs/SCHEMAS.md`)
//! and its default TTL.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
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
    Ok(Json(to_body(&spec)?))
}

/// The HTTP shape of a stored spec.
fn to_body(spec: &amberdb::spec::CollectionSpec) -> ApiResult<SpecBody> {
    let mut v =
        serde_json::to_value(spec).map_err(|e| crate::error::ApiError::internal(e.to_string()))?;
    if let Some(o) = v.as_object_mut() {
        // Fields a later version stored stay in the database, not in this answer.
        o.retain(|k, _| {
            matches!(
                k.as_str(),
                "schema_version" | "versions" | "migrations" | "forced" | "default_ttl_s"
            )
        });
    }
    serde_json::from_value(v).map_err(|e| crate::error::ApiError::internal(e.to_string()))
}

/// `spec` with the fields `req` names replaced (`forced` is the server's own).
fn merged(
    spec: &amberdb::spec::CollectionSpec,
    req: SpecBody,
) -> Result<amberdb::spec::CollectionSpec, amberdb::Error> {
    let bad = |e: serde_json::Error| amberdb::Error::InvalidArgument(format!("invalid spec: {e}"));
    let mut v = serde_json::to_value(spec).map_err(bad)?;
    let o = v
        .as_object_mut()
        .ok_or_else(|| amberdb::Error::InvalidArgument("invalid spec".into()))?;
    o.insert("default_ttl_s".into(), serde_json::json!(req.default_ttl_s));
    if let Some(n) = req.schema_version {
        o.insert("schema_version".into(), serde_json::json!(n));
    }
    if let Some(versions) = req.versions {
        o.insert("versions".into(), serde_json::Value::Object(versions));
    }
    if let Some(migrations) = req.migrations {
        o.insert("migrations".into(), serde_json::Value::Array(migrations));
    }
    serde_json::from_value(v).map_err(bad)
}

/// `?force=true`: allow changing a migration that has been applied (recorded in `forced`).
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SpecQuery {
    /// Allow changing or removing a migration that has been applied; the change is recorded.
    #[serde(default)]
    pub force: bool,
}

/// Set a collection's spec (write scope on the collection): schema versions, JSON Schemas and
/// migrations (validated: versions contiguous from 1, every older version reaches the current
/// one through `up`, every schema compiles; refused with the reason otherwise), and
/// `default_ttl_s`: writes that set no expiry of their own expire this many seconds after
/// their commit; `null` removes the default. Fields left out keep what is stored.
#[utoipa::path(
    put,
    path = "/v1/collections/{collection}/spec",
    tag = "collections",
    params(CollectionPath, SpecQuery),
    request_body(content = SpecBody, content_type = "application/json"),
    responses((status = 200, description = "Stored; the new spec", body = SpecBody), WriteErrors),
    security(("bearer" = []))
)]
pub async fn put_spec(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    p: Result<Path<CollectionPath>, PathRejection>,
    q: Result<Query<SpecQuery>, QueryRejection>,
    h: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<SpecBody>> {
    let force = super::query(q)?.force;
    let CollectionPath { collection } = path(p)?;
    amberdb::validate_collection(&collection)?;
    require_write(&who, &collection)?;
    headers::require_json(&h)?;
    let bytes = body(b)?;
    let req: SpecBody = parse_json(&bytes, "invalid_spec")?;
    let db = state.db.clone();
    let c = collection.clone();
    let stored = blocking(move || {
        // Keep what the request leaves out (and what a later version stored).
        let spec = merged(&db.spec(&c)?, req)?;
        db.set_spec_with(&c, &spec, amberdb::spec::SetSpecOptions { force })?;
        db.spec(&c)
    })
    .await??;
    Ok(Json(to_body(&stored)?))
}

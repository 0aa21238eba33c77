//! Collections: `GET /v1/collections` and `GET /v1/collections/{c}`.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};

use super::documents::CollectionPath;
use super::{path, require_read, ReadErrors};
use crate::api::{CollectionResponse, CollectionSpec, CollectionSummary, CollectionsResponse};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::Shared;

/// Every collection the caller may read, with its document count.
#[utoipa::path(
    get,
    path = "/v1/collections",
    tag = "collections",
    responses((status = 200, description = "Collections by name", body = CollectionsResponse), ReadErrors),
    security(("bearer" = []))
)]
pub async fn list_collections(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
) -> Json<CollectionsResponse> {
    let collections = state
        .db
        .view()
        .collections()
        .into_iter()
        .filter(|c| who.can_read(&c.name))
        .map(|c| CollectionSummary {
            name: c.name,
            documents: c.documents,
        })
        .collect();
    Json(CollectionsResponse { collections })
}

/// One collection: its document count and spec.
#[utoipa::path(
    get,
    path = "/v1/collections/{collection}",
    tag = "collections",
    params(CollectionPath),
    responses((status = 200, description = "The collection", body = CollectionResponse), ReadErrors),
    security(("bearer" = []))
)]
pub async fn get_collection(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    p: Result<Path<CollectionPath>, PathRejection>,
) -> ApiResult<Json<CollectionResponse>> {
    let CollectionPath { collection } = path(p)?;
    amberdb::validate_collection(&collection)?;
    require_read(&who, &collection)?;
    let view = state.db.view();
    let info = view
        .collections()
        .into_iter()
        .find(|c| c.name == collection)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "collection_not_found",
                format!(
                    "collection {collection:?} does not exist (it is created by its first write)"
                ),
            )
        })?;
    Ok(Json(CollectionResponse {
        name: info.name,
        documents: info.documents,
        lsn: view.lsn(),
        spec: CollectionSpec { schema_version: 1 },
    }))
}

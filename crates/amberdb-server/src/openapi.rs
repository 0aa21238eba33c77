//! The OpenAPI 3 document, generated from the handlers' annotations and the API types, so it
//! cannot drift from the code. Served at `/openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "AmberDB",
        description = "A durable, versioned JSON document store. Errors are {\"error\": {\"code\", \"message\", \"details\"}} with stable codes; see docs/API.md."
    ),
    paths(
        routes::collections::list_collections,
        routes::collections::get_collection,
        routes::spec::get_spec,
        routes::spec::put_spec,
        routes::migrate::migrate,
        routes::migrate::migrations,
        routes::documents::get_doc,
        routes::documents::put_doc,
        routes::documents::patch_doc,
        routes::documents::delete_doc,
        routes::documents::list_docs,
        routes::documents::export,
        routes::blobs::put_blob,
        routes::blobs::get_blob,
        routes::blobs::delete_blob,
        routes::blobs::list_blobs,
        routes::blobs::stage_blob,
        routes::history::history,
        routes::history::log,
        routes::txn::commit,
        routes::streams::append,
        routes::streams::read,
        routes::streams::list,
        routes::streams::delete,
        routes::streams::get_retention,
        routes::streams::put_retention,
        routes::revert::revert,
        routes::revert::undo,
        routes::revert::restore,
        routes::revert::create_doc,
        routes::admin::status,
        routes::admin::checkpoint,
        routes::admin::verify,
        routes::admin::blob_gc,
        routes::keys::rotate,
        routes::backups::list,
        routes::backups::create,
        routes::backups::verify,
        routes::changes::changes,
        routes::events::events,
        routes::probes::healthz,
        routes::probes::readyz,
        routes::probes::metrics,
        routes::probes::openapi,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorObject, crate::api::Envelope)),
    modifiers(&BearerAuth),
    tags(
        (name = "documents", description = "Read and write documents"),
        (name = "collections", description = "Collections and their counts"),
        (name = "blobs", description = "Binary blobs beside documents: streamed, content-addressed, versioned"),
        (name = "transactions", description = "Atomic batches"),
        (name = "streams", description = "Append-only streams of JSON entries"),
        (name = "changes", description = "The change feed (SSE or long-poll)"),
        (name = "history", description = "Versions, as-of reads and the commit log inside the history window"),
        (name = "revert", description = "Revert, undo and live restore: new, logged transactions"),
        (name = "admin", description = "Operations (scope admin)"),
        (name = "probes", description = "Health, readiness, metrics, this document"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("A token from `amberdb token create`; optional when the server has no tokens configured")).build()),
        );
    }
}

/// The document as pretty JSON.
pub fn json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

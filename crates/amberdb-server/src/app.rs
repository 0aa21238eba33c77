//! The router and the middleware every request passes through, outermost first:
//! panic catching (a bug answers 500 JSON, never a dropped connection), metrics, the shutdown
//! gate, authentication, then for `/v1` the concurrency limit and the request deadline.

use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::auth::{hash_token, Principal};
use crate::error::ApiError;
use crate::routes;
use crate::state::Shared;

/// Builds the complete application.
pub fn router(state: Shared) -> Router {
    let api = Router::new()
        .route(
            "/v1/collections",
            get(routes::collections::list_collections),
        )
        .route(
            "/v1/collections/{collection}",
            get(routes::collections::get_collection),
        )
        .route(
            "/v1/collections/{collection}/spec",
            get(routes::spec::get_spec).put(routes::spec::put_spec),
        )
        .route(
            "/v1/collections/{collection}/migrate",
            post(routes::migrate::migrate),
        )
        .route(
            "/v1/collections/{collection}/migrations",
            get(routes::migrate::migrations),
        )
        .route(
            "/v1/collections/{collection}/docs",
            get(routes::documents::list_docs).post(routes::revert::create_doc),
        )
        .route(
            "/v1/collections/{collection}/export",
            get(routes::documents::export),
        )
        .route(
            "/v1/collections/{collection}/docs/{key}",
            get(routes::documents::get_doc)
                .put(routes::documents::put_doc)
                .patch(routes::documents::patch_doc)
                .delete(routes::documents::delete_doc),
        )
        .route(
            "/v1/collections/{collection}/docs/{key}/history",
            get(routes::history::history),
        )
        .route("/v1/log", get(routes::history::log))
        .route("/v1/streams", get(routes::streams::list))
        .route(
            "/v1/streams/{stream}",
            get(routes::streams::read).delete(routes::streams::delete),
        )
        .route("/v1/streams/{stream}/append", post(routes::streams::append))
        .route(
            "/v1/streams/{stream}/retention",
            get(routes::streams::get_retention).put(routes::streams::put_retention),
        )
        .route("/v1/txn", post(routes::txn::commit))
        .route("/v1/revert", post(routes::revert::revert))
        .route("/v1/undo", post(routes::revert::undo))
        .route("/v1/admin/restore", post(routes::revert::restore))
        .route("/v1/admin/status", get(routes::admin::status))
        .route("/v1/admin/checkpoint", post(routes::admin::checkpoint))
        .route("/v1/admin/verify", post(routes::admin::verify))
        .route("/v1/admin/blobs/gc", post(routes::admin::blob_gc))
        .route("/v1/admin/keys/rotate", post(routes::keys::rotate))
        .route(
            "/v1/admin/backups",
            get(routes::backups::list).post(routes::backups::create),
        )
        .route(
            "/v1/admin/backups/{id}/verify",
            post(routes::backups::verify),
        )
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limit_and_deadline,
        ));

    // Blobs: streamed bodies outside the request deadline and `limits.body_bytes`
    // (`limits.blob_bytes` bounds them, counted while streaming).
    let blobs = Router::new()
        .route(
            "/v1/collections/{collection}/blobs",
            get(routes::blobs::list_blobs),
        )
        .route(
            "/v1/collections/{collection}/blobs/{key}",
            get(routes::blobs::get_blob)
                .put(routes::blobs::put_blob)
                .delete(routes::blobs::delete_blob),
        )
        .route(
            "/v1/collections/{collection}/blobs/{key}/staged",
            axum::routing::post(routes::blobs::stage_blob),
        )
        .layer(DefaultBodyLimit::disable());

    Router::new()
        .merge(api)
        .merge(blobs)
        // Streams: outside the request deadline and the concurrency limit (bounded apart).
        .route("/v1/changes", get(routes::changes::changes))
        .route("/v1/admin/events", get(routes::events::events))
        .route("/healthz", get(routes::probes::healthz))
        .route("/readyz", get(routes::probes::readyz))
        .route("/metrics", get(routes::probes::metrics))
        .route("/openapi.json", get(routes::probes::openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.body_limit))
        // One middleware for every request (metrics, body policy, shutdown gate, auth, in
        // that order): as four `from_fn` layers each cloned its inner service and boxed a
        // future per request, most of the gap to a bare axum handler (docs/BENCHMARKS.md).
        .layer(middleware::from_fn_with_state(state.clone(), front_door))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                ApiError::internal("the server hit a bug while handling this request")
                    .into_response()
            },
        ))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "route_not_found",
        format!("no route for {}; see /openapi.json", uri.path()),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// What every request passes through before its handler: [`track`], then [`body_policy`],
/// [`gate`] and [`authenticate`], each wrapping the next.
async fn front_door(State(state): State<Shared>, req: Request, next: Next) -> Response {
    track(&state, req, next).await
}

/// Counts every request by route template and status, with its latency.
async fn track(state: &Shared, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let resp = body_policy(state, req, next).await;
    state
        .metrics
        .observe(&route, &method, resp.status().as_u16(), start.elapsed());
    resp
}

/// A declared body over `limits.body_bytes` is refused at once with 413 (never waited for),
/// and an error answer to a request that carries a body says `Connection: close`: the handler
/// may have refused it before reading the body, and an unread body cannot be skipped on a
/// kept-alive connection, so the client must know not to reuse it. (The socket then closes
/// lingeringly, see `conn`, so a client still sending sees the answer.)
async fn body_policy(state: &Shared, req: Request, next: Next) -> Response {
    // A `%` must start an escape of two hex digits: anything else was taken as a literal
    // key (`a%zzb`) and stored under a name the client never meant.
    if let Some(bad) = bad_percent_escape(req.uri().path()) {
        return ApiError::bad_request(
            "invalid_path",
            format!("invalid percent-encoding {bad:?} in the path; encode % as %25"),
        )
        .into_response();
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let has_body =
        declared.is_some_and(|n| n > 0) || req.headers().contains_key(header::TRANSFER_ENCODING);
    // Blob uploads are bounded by `limits.blob_bytes` in their handler instead.
    let blob_upload = req.uri().path().contains("/blobs/")
        && matches!(
            *req.method(),
            axum::http::Method::PUT | axum::http::Method::POST
        );
    let mut resp = match declared {
        Some(n) if n > state.config.body_limit as u64 && !blob_upload => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the request body is {n} bytes, over limits.body_bytes ({} bytes)",
                state.config.body_limit
            ),
        )
        .details(serde_json::json!({"size": n, "limit": state.config.body_limit}))
        .into_response(),
        _ => gate(state, req, next).await,
    };
    let status = resp.status();
    if has_body && (status.is_client_error() || status.is_server_error()) {
        resp.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    resp
}

/// The first `%` in `path` not followed by two hex digits, with what follows it.
fn bad_percent_escape(path: &str) -> Option<String> {
    let b = path.as_bytes();
    b.iter().enumerate().find_map(|(i, &c)| {
        let ok = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
        (c == b'%' && !(ok(i + 1) && ok(i + 2))).then(|| {
            path.get(i..(i + 3).min(path.len()))
                .unwrap_or("%")
                .to_owned()
        })
    })
}

/// During a graceful shutdown, new API requests on still-open connections are turned away
/// with 503 (probes keep answering so orchestrators can see the drain).
async fn gate(state: &Shared, req: Request, next: Next) -> Response {
    if state.is_shutting_down() && req.uri().path().starts_with("/v1/") {
        return ApiError::shutting_down().into_response();
    }
    authenticate(state, req, next).await
}

/// Resolves the bearer token to a [`Principal`]; 401 when tokens are configured and the
/// request has none or an unknown one. Probes and the OpenAPI document are public.
async fn authenticate(state: &Shared, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let public = matches!(path, "/healthz" | "/readyz" | "/openapi.json");
    let principal = if state.tokens.is_empty() {
        Principal::Anyone
    } else {
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        match token.and_then(|t| state.tokens.get(&hash_token(t))) {
            Some(entry) => Principal::Token(entry.clone()),
            None if public => Principal::Anyone,
            None => {
                let why = if token.is_some() {
                    "the bearer token is not valid"
                } else {
                    "this server requires Authorization: Bearer <token>"
                };
                return ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", why)
                    .into_response();
            }
        }
    };
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// Bounds how many API requests run at once and how long each may take. Waiting for a slot
/// counts against the deadline, so a overloaded server answers 503 instead of queueing forever.
async fn limit_and_deadline(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let deadline = state.config.request_timeout;
    let limit = state.limit.clone();
    let work = async move {
        let _permit = limit.acquire_owned().await;
        next.run(req).await
    };
    match tokio::time::timeout(deadline, work).await {
        Ok(resp) => resp,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("the request did not finish within {} ms; a write may still have committed, so re-read before retrying", deadline.as_millis()),
        )
        .into_response(),
    }
}

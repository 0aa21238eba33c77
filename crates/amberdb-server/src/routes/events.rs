//! System events over HTTP: `GET /v1/admin/events` (admin scope).
//!
//! The engine's `Options::on_event` hook feeds a bounded replay buffer ([`EventLog`]) that
//! numbers events from 1 (per server process). With `Accept: text/event-stream` the
//! endpoint streams `id: <n>`, `event: <kind>`, `data: {json}`, first every buffered event
//! after `since` / `Last-Event-ID`, then new ones as they happen; otherwise it answers
//! `{"events": [...], "last_id": N}` with the buffered events after `since`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Mutex;
use std::time::Duration;

use amberdb::feed::events::SystemEvent;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use utoipa::{IntoParams, ToSchema};

use super::{query, require_admin, AdminErrors};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::Shared;

/// Events kept for replay.
pub const REPLAY_EVENTS: usize = 1024;
const HEARTBEAT: Duration = Duration::from_secs(15);
const SHUTDOWN_POLL: Duration = Duration::from_millis(250);

/// One event as JSON.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventBody {
    /// Sequence number (per server process, from 1): the `Last-Event-ID` to resume after.
    pub id: u64,
    /// `storage_initialized`, `backup_created`, `backup_failed`, `backup_cleaned`,
    /// `backup_restored`, `data_validated`, `checkpoint`, `poisoned`, `schedule_failed`,
    /// `error_occurred`, `key_rotation`.
    pub kind: String,
    /// When, RFC 3339 UTC.
    pub at: String,
    /// When, microseconds since the Unix epoch.
    pub at_us: u64,
    /// What it is about (a report, a manifest, an error).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// The answer without `Accept: text/event-stream`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsResponse {
    /// Buffered events after `since`, oldest first.
    pub events: Vec<EventBody>,
    /// The newest event's id (0 when none happened yet).
    pub last_id: u64,
}

/// The bounded replay buffer the engine's hook writes into.
pub struct EventLog {
    buf: Mutex<(u64, VecDeque<EventBody>)>,
    tx: watch::Sender<u64>,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog {
            buf: Mutex::new((0, VecDeque::new())),
            tx: watch::channel(0).0,
        }
    }
}

impl EventLog {
    /// Records an event (called by the engine's hook; never blocks for long).
    pub fn push(&self, e: &SystemEvent) {
        let mut b = self.buf.lock().unwrap_or_else(|p| p.into_inner());
        b.0 += 1;
        let id = b.0;
        b.1.push_back(EventBody {
            id,
            kind: e.kind.as_str().to_owned(),
            at: amberdb::format_micros(e.at_us),
            at_us: e.at_us,
            details: e.details.clone(),
        });
        while b.1.len() > REPLAY_EVENTS {
            b.1.pop_front();
        }
        drop(b);
        self.tx.send_replace(id);
    }

    fn after(&self, since: u64) -> (Vec<EventBody>, u64) {
        let b = self.buf.lock().unwrap_or_else(|p| p.into_inner());
        let events = b.1.iter().filter(|e| e.id > since).cloned().collect();
        (events, b.0)
    }
}

/// Query of `GET /v1/admin/events`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events after this id (default: the Last-Event-ID header, else 0: all buffered).
    pub since: Option<u64>,
}

/// System events: an SSE stream with `Accept: text/event-stream`, else the buffered list.
#[utoipa::path(
    get,
    path = "/v1/admin/events",
    tag = "admin",
    params(EventsQuery),
    responses(
        (status = 200, description = "Buffered events after since; with Accept: text/event-stream an SSE stream (id = event id, event = kind)", body = EventsResponse),
        (status = 400, description = "Malformed since or Last-Event-ID (codes invalid_query, invalid_header).", body = crate::error::ErrorBody),
        AdminErrors,
    ),
    security(("bearer" = []))
)]
pub async fn events(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    q: Result<Query<EventsQuery>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    require_admin(&who)?;
    let q = query(q)?;
    let since = match (q.since, headers.get("last-event-id")) {
        (Some(s), _) => s,
        (None, Some(v)) => {
            let v = v.to_str().unwrap_or("").trim();
            v.parse::<u64>().map_err(|_| {
                ApiError::bad_request(
                    "invalid_header",
                    format!("Last-Event-ID {v:?} is not an event id"),
                )
            })?
        }
        (None, None) => 0,
    };
    if !super::changes::wants_sse(&headers) {
        let (events, last_id) = state.events.after(since);
        return Ok(axum::Json(EventsResponse { events, last_id }).into_response());
    }
    let permit = state.feed.permit()?;
    let rx = state.events.tx.subscribe();
    struct St {
        state: Shared,
        rx: watch::Receiver<u64>,
        last: u64,
        queue: VecDeque<Event>,
        next_beat: tokio::time::Instant,
        _permit: tokio::sync::OwnedSemaphorePermit,
    }
    let st = St {
        state,
        rx,
        last: since,
        queue: VecDeque::new(),
        next_beat: tokio::time::Instant::now() + HEARTBEAT,
        _permit: permit,
    };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(e) = st.queue.pop_front() {
                return Some((Ok::<Event, Infallible>(e), st));
            }
            if st.state.is_shutting_down() {
                return None;
            }
            let (new, _) = st.state.events.after(st.last);
            for e in new {
                st.last = e.id;
                let data = serde_json::to_string(&e).unwrap_or_default();
                st.queue.push_back(
                    Event::default()
                        .id(e.id.to_string())
                        .event(e.kind.clone())
                        .data(data),
                );
            }
            if !st.queue.is_empty() {
                continue;
            }
            let now = tokio::time::Instant::now();
            if now >= st.next_beat {
                st.next_beat = now + HEARTBEAT;
                st.queue.push_back(Event::default().comment("heartbeat"));
                continue;
            }
            let step = (st.next_beat - now).min(SHUTDOWN_POLL);
            let _ = tokio::time::timeout(step, st.rx.changed()).await;
        }
    });
    Ok(Sse::new(stream).into_response())
}

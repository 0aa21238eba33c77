//! The change feed over HTTP: `GET /v1/changes`.
//!
//! With `Accept: text/event-stream` it is a Server-Sent Events stream: each durable commit
//! is `id: <lsn>`, `event: change`, `data: {json}`; every `heartbeat_ms` a comment line and
//! an `event: high_water` (with `id:` the high-water LSN, so an `EventSource` resumes past
//! commits the filter skipped). `since=<lsn>` or the `Last-Event-ID` header resumes. Without
//! it the endpoint is a long-poll returning `{"changes": [...], "high_water_lsn": N}`.
//!
//! No blocking thread waits per client: one bridge thread per server waits on the engine's
//! durable LSN and, for each new durable commit, wakes only the streams whose filter may
//! match a collection it wrote (all of them when the engine no longer holds those commits in
//! memory). A woken stream takes new commits from the engine's memory right on its task, or
//! reads the log on the blocking pool when it lags; a stream nothing concerns wakes only on
//! its own timer (`SHUTDOWN_POLL`), which also moves its high water. So idle streams cost the
//! commit path nothing per commit. A token sees only the documents of collections, and the
//! changes of streams (`stream=`), it may read; a commit with none of them only advances the
//! high water.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amberdb::feed::{Change, Filter, Subscription};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use utoipa::ToSchema;

use super::{query, E401, E403, E503};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::Shared;

/// Most change streams and waiting long-polls one server serves at once.
pub const MAX_STREAMS: usize = 1024;
/// Heartbeat interval when `heartbeat_ms` is not given.
pub const DEFAULT_HEARTBEAT_MS: u64 = 15_000;
/// Bounds of `heartbeat_ms`.
pub const HEARTBEAT_MS_RANGE: (u64, u64) = (100, 300_000);
/// Most changes one long-poll answer holds, and the default.
pub const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 100;
/// Longest `wait_ms` of a long-poll.
pub const MAX_WAIT_MS: u64 = 30_000;
/// Most `collection=` filters in one request, and most `stream=` filters.
pub const MAX_COLLECTION_FILTERS: usize = 64;
/// Changes read per visit to the blocking pool.
const BATCH: usize = 256;
/// How often an idle stream looks at the shutdown flag (and moves its high water).
const SHUTDOWN_POLL: Duration = Duration::from_millis(250);
/// How often, and how many times, a stream whose database closed looks for the live restore
/// that replaced it before it ends with an error instead.
const CLOSED_POLL: Duration = Duration::from_millis(50);
const CLOSED_GRACE_POLLS: u32 = 200;

/// The server's side of the engine's durable-LSN watch, and the stream limit.
pub struct FeedHub {
    hub: Arc<Mutex<Hub>>,
    streams: Arc<Semaphore>,
}

/// The streams the bridge wakes, and whether it runs (it stops when no stream listens).
#[derive(Default)]
struct Hub {
    running: bool,
    slots: Vec<std::sync::Weak<Slot>>,
}

/// One stream's (or long-poll's) registration with the bridge.
struct Slot {
    /// Which collections and streams concern it.
    filter: Filter,
    /// Notified when a commit may concern it, and when the database closed (a permit is
    /// kept if it is not waiting).
    woken: tokio::sync::Notify,
}

impl Default for FeedHub {
    fn default() -> Self {
        FeedHub {
            hub: Arc::new(Mutex::new(Hub::default())),
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
        }
    }
}

impl FeedHub {
    /// Registers a stream with `filter`; starts the bridge thread when none runs.
    fn register(&self, db: &amberdb::Db, filter: &Filter) -> Arc<Slot> {
        let slot = Arc::new(Slot {
            filter: filter.clone(),
            woken: tokio::sync::Notify::new(),
        });
        let mut hub = self.hub.lock().unwrap_or_else(|p| p.into_inner());
        hub.slots.retain(|s| s.strong_count() > 0);
        hub.slots.push(Arc::downgrade(&slot));
        if !hub.running {
            hub.running = true;
            let (db, h) = (db.clone(), self.hub.clone());
            let spawned = std::thread::Builder::new()
                .name("amberdb-feed-bridge".into())
                .spawn(move || bridge(db, h));
            if spawned.is_err() {
                hub.running = false;
            }
        }
        slot
    }

    pub(crate) fn permit(&self) -> ApiResult<OwnedSemaphorePermit> {
        self.streams.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_streams",
                format!("this server already serves {MAX_STREAMS} change streams; retry later"),
            )
            .details(serde_json::json!({"limit": MAX_STREAMS}))
        })
    }
}

/// Wakes the streams each new durable commit may concern, until none is registered or the
/// database closes (then it wakes every stream, whose next read reports the close). Holds its
/// handle only while streams listen.
fn bridge(db: amberdb::Db, hub: Arc<Mutex<Hub>>) {
    let mut last = db.durable_lsn();
    loop {
        let waited = db.wait_durable_past(last, Duration::from_secs(1));
        let mut h = hub.lock().unwrap_or_else(|p| p.into_inner());
        h.slots.retain(|s| s.strong_count() > 0);
        let slots: Vec<Arc<Slot>> = h.slots.iter().filter_map(|s| s.upgrade()).collect();
        match waited {
            Err(_) => {
                h.running = false;
                drop(h);
                for s in &slots {
                    s.woken.notify_one();
                }
                return;
            }
            Ok(_) if slots.is_empty() => {
                h.running = false;
                return;
            }
            Ok(d) if d > last => {
                drop(h);
                // `None`: the commits are no longer in memory, so any stream may care.
                let touched = db.touched(last, d);
                for s in &slots {
                    let concerned = touched.as_ref().is_none_or(|t| s.filter.may_concern(t));
                    if concerned {
                        s.woken.notify_one();
                    }
                }
                last = d;
            }
            Ok(_) => {}
        }
    }
}

/// One document of a change, as JSON.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChangeDoc {
    /// Collection.
    pub collection: String,
    /// Key.
    pub key: String,
    /// `create`, `put`, `replace`, `patch` or `delete`.
    pub op: &'static str,
    /// The version written (0 for a delete).
    pub version: u64,
    /// Schema version of the value written (0 for a delete).
    pub schema_version: u32,
    /// When the document expires, RFC 3339 UTC (null: never, and for a delete).
    pub expires_at: Option<String>,
    /// SHA-256 of the stored value, hex (null for a delete).
    pub sha256: Option<String>,
    /// The value written, with `values=true` (absent otherwise and for deletes); with
    /// `schema_version=N`, at that version.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
    pub value: Option<Box<RawValue>>,
    /// With `schema_version=N`: the version the value is stored at (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored_schema_version: Option<u32>,
    /// With `schema_version=N`: why this value could not be presented at N (the value is then
    /// left out; the change itself is still delivered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_error: Option<String>,
}

/// One change of one stream in a commit, as JSON (with `stream=`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ChangeStream {
    /// The stream.
    pub stream: String,
    /// `append`, `trim` (entries before `first_seq` removed), `delete` (the whole stream) or
    /// `configure` (retention set).
    pub op: &'static str,
    /// Append: the first new entry's sequence number; trim: the first one kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_seq: Option<u64>,
    /// Append: the last new entry's sequence number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
    /// Append with `values=true`: the new entries (their time is the commit's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<Vec<ChangeStreamEntry>>,
    /// Configure: the retention set.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub retention: Option<amberdb::Retention>,
}

/// One appended entry in a change.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChangeStreamEntry {
    /// Sequence number.
    pub seq: u64,
    /// The entry.
    #[schema(value_type = serde_json::Value)]
    pub value: Box<RawValue>,
}

/// One durable commit, as JSON.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChangeBody {
    /// The commit's LSN: the cursor to resume after.
    pub lsn: u64,
    /// Commit time, RFC 3339 UTC.
    pub commit_ts: String,
    /// Commit time, microseconds since the Unix epoch.
    pub commit_ts_us: u64,
    /// `write`, `revert`, `undo`, `restore`, `ttl` or `migration`.
    pub reason: &'static str,
    /// For a revert, undo or restore: the LSN it went back to (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_lsn: Option<u64>,
    /// The documents of the commit the request matches and the token may read.
    pub docs: Vec<ChangeDoc>,
    /// With `stream=`: the changes of the streams named that the token may read, in
    /// transaction order (absent when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<ChangeStream>,
}

/// A long-poll answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChangesResponse {
    /// Matching durable commits after `since`, in LSN order.
    pub changes: Vec<ChangeBody>,
    /// Every commit up to this LSN has been returned or skipped: pass it as the next `since`.
    pub high_water_lsn: u64,
}

/// What the request asked for.
struct Params {
    since: Option<u64>,
    filter: Filter,
    heartbeat: Duration,
    limit: usize,
    wait: Duration,
    schema_version: Option<u32>,
}

fn parse(pairs: Vec<(String, String)>, headers: &HeaderMap) -> ApiResult<Params> {
    let bad = |m: String| ApiError::bad_request("invalid_query", m);
    let num = |k: &str, v: &str| {
        v.parse::<u64>()
            .map_err(|_| bad(format!("{k}={v:?} is not a non-negative integer")))
    };
    let mut p = Params {
        since: None,
        filter: Filter::all(),
        heartbeat: Duration::from_millis(DEFAULT_HEARTBEAT_MS),
        limit: DEFAULT_LIMIT,
        wait: Duration::ZERO,
        schema_version: None,
    };
    for (k, v) in pairs {
        match k.as_str() {
            "since" if v == "now" => p.since = None,
            "since" => p.since = Some(num(&k, &v)?),
            "collection" | "stream" => {
                let ok = !v.is_empty()
                    && v.len() <= 64
                    && v.bytes().all(|c| {
                        c.is_ascii_lowercase()
                            || c.is_ascii_digit()
                            || matches!(c, b'_' | b'.' | b'-' | b'*' | b'?')
                    });
                if !ok {
                    return Err(bad(format!("{k}={v:?}: a name or glob of 1-64 characters of a-z, 0-9, _, ., -, * and ?")));
                }
                let list = if k == "stream" {
                    &mut p.filter.streams
                } else {
                    &mut p.filter.collections
                };
                if list.len() >= MAX_COLLECTION_FILTERS {
                    return Err(bad(format!(
                        "at most {MAX_COLLECTION_FILTERS} {k}= filters"
                    )));
                }
                list.push(v);
            }
            "prefix" => {
                if v.len() > amberdb::MAX_KEY_BYTES {
                    return Err(bad(format!(
                        "prefix is longer than a key ({} bytes)",
                        amberdb::MAX_KEY_BYTES
                    )));
                }
                p.filter.prefix = v;
            }
            "values" => {
                p.filter.values = match v.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad(format!("values={v:?}: true or false"))),
                }
            }
            "heartbeat_ms" => {
                let ms = num(&k, &v)?;
                let (lo, hi) = HEARTBEAT_MS_RANGE;
                if !(lo..=hi).contains(&ms) {
                    return Err(bad(format!("heartbeat_ms must be {lo}..={hi}")));
                }
                p.heartbeat = Duration::from_millis(ms);
            }
            "limit" => {
                let n = num(&k, &v)?;
                if n == 0 || n > MAX_LIMIT as u64 {
                    return Err(bad(format!("limit must be 1..={MAX_LIMIT}")));
                }
                p.limit = n as usize;
            }
            "wait_ms" => {
                let ms = num(&k, &v)?;
                if ms > MAX_WAIT_MS {
                    return Err(bad(format!("wait_ms must be at most {MAX_WAIT_MS}")));
                }
                p.wait = Duration::from_millis(ms);
            }
            "schema_version" => match v.parse::<u32>() {
                Ok(n) if n > 0 => p.schema_version = Some(n),
                _ => return Err(bad(format!("schema_version={v:?}: a positive integer"))),
            },
            other => return Err(bad(format!("unknown query parameter {other:?}"))),
        }
    }
    if p.since.is_none() {
        if let Some(v) = headers.get("last-event-id") {
            let v = v.to_str().unwrap_or("").trim();
            p.since = Some(v.parse::<u64>().map_err(|_| {
                ApiError::bad_request(
                    "invalid_header",
                    format!("Last-Event-ID {v:?} is not an LSN"),
                )
            })?);
        }
    }
    Ok(p)
}

/// Whether the request asks for an event stream.
pub(crate) fn wants_sse(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/event-stream"))
}

/// The change feed: Server-Sent Events with `Accept: text/event-stream`, a long-poll
/// otherwise.
#[utoipa::path(
    get,
    path = "/v1/changes",
    tag = "changes",
    params(
        ("since" = Option<String>, Query, description = "Deliver commits after this LSN (or `now`, the default: only new ones). The Last-Event-ID header does the same for a stream."),
        ("collection" = Option<Vec<String>>, Query, description = "Collection name or glob (* and ?); repeatable; default every collection the token may read (none when only stream= is given)."),
        ("stream" = Option<Vec<String>>, Query, description = "Stream name or glob (* and ?); repeatable (at most 64): also deliver the appends, trims, deletes and retention changes of these streams. Without it no stream change is delivered."),
        ("prefix" = Option<String>, Query, description = "Only keys starting with this prefix."),
        ("values" = Option<bool>, Query, description = "Include each written value (default false)."),
        ("heartbeat_ms" = Option<u64>, Query, minimum = 100, maximum = 300000, description = "Stream only: heartbeat interval (default 15000)."),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "Long-poll only: most changes per answer (default 100)."),
        ("wait_ms" = Option<u64>, Query, minimum = 0, maximum = 30000, description = "Long-poll only: how long to wait for a first change (default 0)."),
        ("schema_version" = Option<u32>, Query, minimum = 1, description = "With exactly one collection= (a name, not a glob): present each value at this schema version of that collection's current spec (values migrated on read; stored_schema_version says where each was stored)."),
    ),
    responses(
        (status = 200, description = "A long-poll answer; with Accept: text/event-stream an SSE stream (events change and high_water, id = LSN)", body = ChangesResponse),
        ChangesErrors,
    ),
    security(("bearer" = []))
)]
pub async fn changes(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let params = parse(query(q)?, &headers)?;
    authorize(&who, &params.filter)?;
    let present = match params.schema_version {
        None => None,
        Some(n) => {
            let [c] = params.filter.collections.as_slice() else {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    "schema_version needs exactly one collection= filter",
                ));
            };
            if c.contains(['*', '?']) {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    "schema_version needs a collection name, not a glob",
                ));
            }
            Some(state.db.schema_reader(&state.db.view(), c, Some(n))?)
        }
    };
    let permit = state.feed.permit()?;
    let slot = state.feed.register(&state.db, &params.filter);
    let db = state.db.clone();
    let (since, filter) = (params.since, params.filter.clone());
    let sub = tokio::task::spawn_blocking(move || {
        let from = since.unwrap_or_else(|| db.durable_lsn());
        db.subscribe(from, filter)
    })
    .await
    .map_err(|e| ApiError::internal(format!("engine task failed: {e}")))??;
    let reader = Reader {
        sub: Some(sub),
        slot,
        who,
        state,
        present,
        _permit: permit,
    };
    if wants_sse(&headers) {
        Ok(sse(reader, params.heartbeat).into_response())
    } else {
        long_poll(reader, params.limit, params.wait).await
    }
}

/// 403 when the token may read nothing, or names a collection or stream it may not read.
fn authorize(who: &Principal, filter: &Filter) -> ApiResult<()> {
    let named = (filter.collections.iter().map(|c| ("collection", c)))
        .chain(filter.streams.iter().map(|s| ("stream", s)));
    for (what, c) in named {
        let is_glob = c.contains(['*', '?']);
        if !is_glob && !who.can_read(c) {
            return Err(ApiError::forbidden(format!(
                "token {:?} has no read scope for {what} {c:?}",
                who.name()
            )));
        }
    }
    if !can_read_any(who) {
        return Err(ApiError::forbidden(format!(
            "token {:?} has no read scope, so it can see no changes",
            who.name()
        )));
    }
    Ok(())
}

/// Whether the principal may read any collection at all.
fn can_read_any(who: &Principal) -> bool {
    use crate::auth::Scope;
    match who {
        Principal::Anyone => true,
        Principal::Token(t) => t
            .scopes
            .iter()
            .any(|s| matches!(s, Scope::Admin | Scope::Read(_))),
    }
}

/// A subscription with what a stream or long-poll needs around it.
struct Reader {
    sub: Option<Subscription>,
    /// Woken by the bridge when a commit may concern this reader.
    slot: Arc<Slot>,
    who: Principal,
    state: Shared,
    /// With `schema_version=N`: presents values at N.
    present: Option<amberdb::schema::Reader>,
    _permit: OwnedSemaphorePermit,
}

impl Reader {
    /// Reads what is durable now; only what the token may read. A caught-up subscription
    /// is served from the engine's memory right here; reading the log, or presenting values
    /// at a schema version (which may run migration steps), goes to the blocking pool.
    async fn read(&mut self, max: usize) -> amberdb::Result<Vec<ChangeBody>> {
        if self.present.is_none() {
            let Some(sub) = self.sub.as_mut() else {
                return Err(amberdb::Error::Closed);
            };
            if let Some(changes) = sub.next_batch_in_memory(max)? {
                let who = &self.who;
                return Ok(changes
                    .into_iter()
                    .filter_map(|c| body(c, who, None))
                    .collect());
            }
        }
        let Some(mut sub) = self.sub.take() else {
            return Err(amberdb::Error::Closed);
        };
        let who = self.who.clone();
        let present = self.present.clone();
        // Presenting at a schema version may run migration steps: on the blocking pool too.
        let (sub, got) = tokio::task::spawn_blocking(move || {
            let got = sub.next_batch(max, Duration::ZERO).map(|changes| {
                changes
                    .into_iter()
                    .filter_map(|c| body(c, &who, present.as_ref()))
                    .collect::<Vec<_>>()
            });
            (sub, got)
        })
        .await
        .map_err(|_| amberdb::Error::Closed)?;
        self.sub = Some(sub);
        got
    }

    fn high_water(&self) -> u64 {
        self.sub.as_ref().map_or(0, Subscription::high_water_lsn)
    }
}

fn body(
    c: Change,
    who: &Principal,
    present: Option<&amberdb::schema::Reader>,
) -> Option<ChangeBody> {
    let docs: Vec<ChangeDoc> = c
        .docs
        .into_iter()
        .filter(|d| who.can_read(&d.collection))
        .map(|d| {
            let mut doc = ChangeDoc {
                collection: d.collection.to_string(),
                key: d.key.to_string(),
                op: d.op.as_str(),
                version: d.version,
                schema_version: d.schema_version,
                expires_at: d.expires_at.map(amberdb::format_micros),
                sha256: d.sha256.map(hex::encode),
                value: None,
                stored_schema_version: None,
                value_error: None,
            };
            let mut value = d.value.map(|v| v.to_vec());
            // Deletes (schema version 0) have nothing to present.
            if let Some(reader) = present.filter(|_| d.schema_version > 0) {
                doc.stored_schema_version = Some(d.schema_version);
                let migrated = match &value {
                    Some(v) => {
                        super::schema_read::present_value(reader, &d.key, v, d.schema_version)
                            .map(|(m, at)| (m, Some(at)))
                    }
                    None => Ok((None, reader.target())),
                };
                match migrated {
                    Ok((m, at)) => {
                        if let Some(m) = m {
                            value = Some(m);
                        }
                        doc.schema_version = at.unwrap_or(d.schema_version);
                    }
                    Err(e) => {
                        value = None;
                        doc.value_error = Some(e.to_string());
                    }
                }
            }
            doc.value = value
                .and_then(|v| String::from_utf8(v).ok())
                .and_then(|s| RawValue::from_string(s).ok());
            doc
        })
        .collect();
    let streams: Vec<ChangeStream> = c
        .streams
        .into_iter()
        .filter(|s| who.can_read(&s.stream))
        .map(stream_body)
        .collect();
    (!docs.is_empty() || !streams.is_empty()).then(|| ChangeBody {
        lsn: c.lsn,
        commit_ts: amberdb::format_micros(c.commit_ts),
        commit_ts_us: c.commit_ts,
        reason: c.reason.as_str(),
        target_lsn: (c.target_lsn != 0).then_some(c.target_lsn),
        docs,
        streams,
    })
}

fn stream_body(s: amberdb::feed::ChangedStream) -> ChangeStream {
    use amberdb::feed::StreamChangeKind as K;
    let seqs = s.first_seq..s.first_seq + s.count;
    ChangeStream {
        stream: s.stream.to_string(),
        op: s.op.as_str(),
        first_seq: matches!(s.op, K::Append | K::Trim).then_some(s.first_seq),
        last_seq: (s.op == K::Append).then(|| seqs.end.saturating_sub(1)),
        entries: s.values.map(|values| {
            seqs.zip(values)
                .filter_map(|(seq, v)| {
                    let v = String::from_utf8(v.to_vec()).ok()?;
                    Some(ChangeStreamEntry {
                        seq,
                        value: RawValue::from_string(v).ok()?,
                    })
                })
                .collect()
        }),
        retention: (s.op == K::Configure).then_some(amberdb::Retention {
            max_entries: s.max_entries,
            max_age_s: s.max_age_s,
        }),
    }
}

async fn long_poll(mut r: Reader, limit: usize, wait: Duration) -> ApiResult<Response> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let changes = r.read(limit).await?;
        let now = tokio::time::Instant::now();
        if !changes.is_empty() || now >= deadline || r.state.is_shutting_down() {
            let body = ChangesResponse {
                changes,
                high_water_lsn: r.high_water(),
            };
            return Ok(axum::Json(body).into_response());
        }
        let step = (deadline - now).min(SHUTDOWN_POLL);
        let _ = tokio::time::timeout(step, r.slot.woken.notified()).await;
    }
}

fn sse(
    reader: Reader,
    heartbeat: Duration,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    struct St {
        r: Reader,
        queue: VecDeque<Event>,
        next_beat: tokio::time::Instant,
        heartbeat: Duration,
        done: bool,
        /// Reads that found the database closed so far.
        closed_polls: u32,
    }
    let st = St {
        r: reader,
        queue: VecDeque::new(),
        next_beat: tokio::time::Instant::now() + heartbeat,
        heartbeat,
        done: false,
        closed_polls: 0,
    };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(e) = st.queue.pop_front() {
                return Some((Ok(e), st));
            }
            if st.done || st.r.state.is_shutting_down() {
                return None;
            }
            match st.r.read(BATCH).await {
                Ok(changes) => {
                    for c in changes {
                        let data = serde_json::to_string(&c).unwrap_or_default();
                        st.queue.push_back(
                            Event::default()
                                .id(c.lsn.to_string())
                                .event("change")
                                .data(data),
                        );
                    }
                }
                Err(_) if st.r.state.replaced.get().is_some() => {
                    st.queue.extend(replaced_event(&st.r.state));
                    st.done = true;
                    continue;
                }
                Err(amberdb::Error::Closed) if st.closed_polls < CLOSED_GRACE_POLLS => {
                    // Closed under the stream: a live restore closes the database, swaps it
                    // and then says so (`replaced`); give it time to, so the stream can end
                    // with `history_lost` and where to resync from.
                    st.closed_polls += 1;
                    tokio::time::sleep(CLOSED_POLL).await;
                    continue;
                }
                Err(e) => {
                    // The stream has started: the error becomes its last event.
                    let err = ApiError::from(e);
                    let data = serde_json::json!({"error": {
                        "code": err.code, "message": err.message, "details": err.details,
                    }});
                    st.queue
                        .push_back(Event::default().event("error").data(data.to_string()));
                    st.done = true;
                    continue;
                }
            }
            if !st.queue.is_empty() {
                continue;
            }
            let now = tokio::time::Instant::now();
            if now >= st.next_beat {
                st.next_beat = now + st.heartbeat;
                let hw = st.r.high_water();
                st.queue.push_back(Event::default().comment("heartbeat"));
                st.queue.push_back(
                    Event::default()
                        .id(hw.to_string())
                        .event("high_water")
                        .data(serde_json::json!({ "high_water_lsn": hw }).to_string()),
                );
                continue;
            }
            let step = (st.next_beat - now).min(SHUTDOWN_POLL);
            let _ = tokio::time::timeout(step, st.r.slot.woken.notified()).await;
        }
    });
    Sse::new(stream)
}

/// The last event of a stream whose database a live restore replaced: `event: history_lost`
/// with the LSN the restored database starts from. The commits this stream delivered after
/// it are not in the restored history: resync (re-read what you mirror), then follow the
/// new database from `resync_from_lsn`.
fn replaced_event(state: &crate::state::AppState) -> Option<Event> {
    let lsn = state.replaced.get()?;
    let data = serde_json::json!({"error": {
        "code": "history_lost",
        "message": "the database was replaced by a restore from the backup repository; \
                    resync, then resume from details.resync_from_lsn",
        "details": {"reason": "restored", "resync_from_lsn": lsn},
    }});
    Some(
        Event::default()
            .event("history_lost")
            .data(data.to_string()),
    )
}

/// Errors of `GET /v1/changes`.
pub struct ChangesErrors;
impl utoipa::IntoResponses for ChangesErrors {
    fn responses(
    ) -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        super::error_responses(&[
            (400, "Malformed query or Last-Event-ID, or since is ahead of the log (codes invalid_query, invalid_header, invalid_argument)."),
            E401,
            E403,
            (410, "since is older than the retained log: details.retained_from_lsn says where the log starts (code history_lost)."),
            E503,
        ])
    }
}

//! The served database can be replaced while the server runs: a live restore from the backup
//! repository (`POST /v1/admin/restore` with a target outside the history window) restores into
//! a new directory beside the data directory, then swaps it in. This module owns the handle
//! every request goes through to reach the current router (and so the current `AppState` and
//! its `Db`), and the phases of a swap: while the restore runs, writes answer 503 `restoring`
//! and reads keep the old database; while the directories are exchanged and the restored
//! database opens, every request answers 503 `restoring`; then requests reach the restored
//! database. The rename protocol itself is `amberdb::backup::swap_in`; the restore handler
//! (`routes::revert`) drives the steps.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::ServiceExt;

use crate::error::ApiError;
use crate::state::{AppState, Shared};

/// No swap under way.
const IDLE: u8 = 0;
/// Restoring into the new directory: writes are refused, reads served by the old database.
const RESTORING: u8 = 1;
/// Closing the old database, exchanging directories, opening the restored one: everything is
/// refused for this short moment.
const SWAPPING: u8 = 2;

/// Seconds a client is told to wait (`Retry-After`) while a restore runs, and while the swap
/// itself runs.
const RETRY_RESTORING_S: u64 = 5;
const RETRY_SWAPPING_S: u64 = 1;

/// The current database generation and the phase of a live restore.
#[derive(Default)]
pub struct DbSwap {
    router: ArcSwapOption<Router>,
    current: ArcSwapOption<AppState>,
    phase: AtomicU8,
    /// Set when a graceful shutdown starts (every generation sees it).
    shutting_down: AtomicBool,
    /// Engine options to open a restored database with (what the server opened with).
    options: Mutex<Option<amberdb::Options>>,
}

impl std::fmt::Debug for DbSwap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbSwap")
            .field("phase", &self.phase.load(Ordering::Acquire))
            .finish()
    }
}

/// A live restore holding the swap's phase; back to idle when dropped.
pub(crate) struct SwapGuard<'s>(&'s DbSwap);

impl SwapGuard<'_> {
    /// From restoring to swapping: every request is refused until the guard drops.
    pub(crate) fn swapping(&self) {
        self.0.phase.store(SWAPPING, Ordering::Release);
    }
}

impl Drop for SwapGuard<'_> {
    fn drop(&mut self) {
        self.0.phase.store(IDLE, Ordering::Release);
    }
}

impl DbSwap {
    /// Makes `state` the one requests reach.
    pub(crate) fn publish(&self, state: Shared) {
        self.router
            .store(Some(Arc::new(crate::app::router(state.clone()))));
        self.current.store(Some(state));
    }

    /// Forgets the current generation (the server stopped serving; it closes the database).
    pub(crate) fn clear(&self) {
        self.router.store(None);
        self.current.store(None);
    }

    /// The state requests reach now.
    pub(crate) fn current(&self) -> Option<Shared> {
        self.current.load_full()
    }

    /// Remembers the engine options the server opened its database with.
    pub(crate) fn set_options(&self, opts: amberdb::Options) {
        *self.options.lock().unwrap_or_else(|p| p.into_inner()) = Some(opts);
    }

    /// The engine options to open a restored database with.
    pub(crate) fn options(&self) -> Option<amberdb::Options> {
        self.options
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Starts a live restore (writes refused from now on); `None` when one is under way.
    pub(crate) fn begin(&self) -> Option<SwapGuard<'_>> {
        self.phase
            .compare_exchange(IDLE, RESTORING, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| SwapGuard(self))
    }

    /// Marks a graceful shutdown for every generation.
    pub(crate) fn shut_down(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// True once a graceful shutdown has begun.
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Routes one request to the current generation, or refuses it with 503 `restoring`
    /// while a swap says so.
    async fn handle(&self, req: Request) -> Response {
        let refuse = match self.phase.load(Ordering::Acquire) {
            RESTORING => is_write(req.method()) && req.uri().path() != "/v1/admin/restore",
            SWAPPING => true,
            _ => false,
        };
        let router = self.router.load_full();
        match router {
            Some(r) if !refuse => match (*r).clone().oneshot(req).await {
                Ok(resp) => resp,
                Err(e) => match e {},
            },
            Some(_) => restoring(self.phase.load(Ordering::Acquire)),
            None => ApiError::shutting_down().into_response(),
        }
    }
}

/// Writes are every method but the reading ones.
fn is_write(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// 503 `restoring` with `Retry-After`.
fn restoring(phase: u8) -> Response {
    let (wait, message) = if phase == SWAPPING {
        (
            RETRY_SWAPPING_S,
            "the restored database is being swapped in; retry in a moment",
        )
    } else {
        (
            RETRY_RESTORING_S,
            "a restore from the backup repository is running: writes are refused until it is \
             swapped in (reads are served by the current database)",
        )
    };
    let mut resp =
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "restoring", message).into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(wait));
    resp
}

/// The service the listener serves: every request goes to the generation current when it
/// arrives (an in-flight request keeps the one it started on).
pub(crate) fn service(swap: Arc<DbSwap>) -> Router {
    Router::new().fallback_service(tower::service_fn(move |req: Request| {
        let swap = swap.clone();
        async move { Ok::<_, Infallible>(swap.handle(req).await) }
    }))
}

/// A test's hook, called on the blocking pool once the restore into the new directory is
/// complete and before the old database closes (what the server does while a long restore
/// runs: serve reads, refuse writes).
type PauseHook = Arc<dyn Fn() + Send + Sync>;
static BEFORE_SWAP: Mutex<Option<PauseHook>> = Mutex::new(None);

/// Sets (or clears) the hook every live restore of this process calls before it swaps: tests
/// block there to look at the server mid-restore. Not for production use.
#[doc(hidden)]
pub fn set_before_swap_hook(hook: Option<PauseHook>) {
    *BEFORE_SWAP.lock().unwrap_or_else(|p| p.into_inner()) = hook;
}

/// What a live restore from the repository did (or, for a dry run, would do).
pub(crate) struct Swapped {
    /// The restore report (a dry run: the restore plan), as JSON.
    pub report: serde_json::Value,
    /// The LSN the restored database ends at (a dry run: the plan's, when known).
    pub lsn: u64,
    /// Where the replaced database is kept (none for a dry run).
    pub kept: Option<std::path::PathBuf>,
}

/// Restores `target` from the configured repository into a new directory beside the data
/// directory and swaps it in (see the module doc and `amberdb::backup::swap_in`): the old
/// database is closed only once the restore is complete and verified; if the restored one
/// fails to open, the directories are exchanged back and the old one reopened. Emits a
/// `backup_restored` system event, and ends the old database's change streams with
/// `history_lost`.
pub(crate) async fn restore_from_repo(
    state: &Shared,
    target: amberdb::RestoreTarget,
    dry_run: bool,
) -> Result<Swapped, ApiError> {
    let Some(repo_path) = state.config.backup_repo.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "backup_repo_not_configured",
            "the target is outside the history window and no backup repository is \
             configured to restore it from; set backup.repo (see docs/CONFIG.md)",
        ));
    };
    let blocking_err = |e: tokio::task::JoinError| ApiError::internal(format!("restore task: {e}"));
    if dry_run {
        let t = target.clone();
        let plan = tokio::task::spawn_blocking(move || {
            let repo = amberdb::BackupRepo::open(&repo_path)?;
            amberdb::backup::plan_restore(&repo, &t, false)
        })
        .await
        .map_err(blocking_err)??;
        return Ok(Swapped {
            lsn: plan.replay_to_lsn.unwrap_or(plan.backup.lsn),
            report: serde_json::to_value(&plan).unwrap_or_default(),
            kept: None,
        });
    }
    let swap = state.swap.clone();
    let Some(guard) = swap.begin() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "restore_in_progress",
            "another restore is running; wait for it to finish",
        ));
    };
    let data = state.config.data.clone();
    let parent = match data.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    let name = data
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("data")
        .to_owned();
    let into = parent.join(format!(
        "{name}.restore-{}",
        time::OffsetDateTime::now_utc().unix_timestamp_nanos()
    ));
    let keys = state.config.encryption.clone();
    let (into2, t) = (into.clone(), target.clone());
    let restored = tokio::task::spawn_blocking(move || {
        let repo = amberdb::BackupRepo::open(&repo_path)?;
        let report = amberdb::backup::restore_with(
            &repo,
            &t,
            false,
            &into2,
            &amberdb::backup::NoProgress,
            keys.as_ref(),
        )?;
        let hook = BEFORE_SWAP
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(hook) = hook {
            hook();
        }
        Ok::<_, amberdb::Error>(report)
    })
    .await
    .map_err(blocking_err)?;
    let report = match restored {
        Ok(r) => r,
        Err(e) => {
            // Our own new directory, never the data directory: restore writes nothing else.
            let _ = std::fs::remove_dir_all(&into);
            return Err(e.into());
        }
    };
    if state.is_shutting_down() {
        let _ = std::fs::remove_dir_all(&into);
        return Err(ApiError::shutting_down());
    }
    guard.swapping();
    let Some(mut opts) = swap.options() else {
        let _ = std::fs::remove_dir_all(&into);
        return Err(ApiError::internal(
            "the server's engine options are unknown",
        ));
    };
    opts.create_if_missing = false;
    let old = state.db.clone();
    let (data2, into2) = (data.clone(), into.clone());
    let swapped = tokio::task::spawn_blocking(move || -> Result<_, amberdb::Error> {
        old.close()?;
        let kept = match amberdb::backup::swap_in(&data2, &into2) {
            Ok(kept) => kept,
            Err(e) => {
                // Nothing was exchanged: the old database is still in place.
                let db = amberdb::Db::open_with(&data2, opts)?;
                return Ok(Err((e, db)));
            }
        };
        match amberdb::Db::open_with(&data2, opts.clone()) {
            Ok(db) => Ok(Ok((db, kept))),
            Err(e) => {
                // Put the old database back (the failed one is kept beside it) and serve it.
                amberdb::backup::swap_in(&data2, &kept)?;
                let db = amberdb::Db::open_with(&data2, opts)?;
                Ok(Err((e, db)))
            }
        }
    })
    .await
    .map_err(blocking_err)?;
    let next = |db: amberdb::Db| {
        Arc::new(AppState {
            events: state.events.clone(),
            swap: swap.clone(),
            ..AppState::new(db, state.config.clone())
        })
    };
    match swapped {
        Ok(Ok((db, kept))) => {
            let lsn = report.lsn;
            let _ = state.replaced.set(lsn);
            swap.publish(next(db));
            let report = serde_json::to_value(&report).unwrap_or_default();
            state.events.push(&amberdb::feed::events::SystemEvent {
                kind: amberdb::feed::events::EventKind::BackupRestored,
                at_us: u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000)
                    .unwrap_or(0),
                details: serde_json::json!({
                    "mode": "swap",
                    "report": report,
                    "replaced_kept_at": kept.display().to_string(),
                }),
            });
            drop(guard);
            Ok(Swapped {
                report,
                lsn,
                kept: Some(kept),
            })
        }
        Ok(Err((e, db))) => {
            swap.publish(next(db));
            Err(ApiError::internal(format!(
                "the restored database could not be swapped in ({e}); the old database is \
                 served again"
            )))
        }
        // The old database could not be reopened either: nothing is served.
        Err(e) => Err(ApiError::internal(format!(
            "live restore failed and the database could not be reopened: {e}; restart the \
             server (the data directory holds the old or the restored database, complete)"
        ))),
    }
}

//! What every handler shares: the open database, the configuration, metrics, the token table
//! and the request-concurrency limit. Built by `Server::bind`, and again for the restored
//! database by a live restore (one `AppState` per database generation, `swap::DbSwap` says
//! which is current); routes and middleware read it, nothing here knows about the router.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;

use crate::auth::TokenEntry;
use crate::config::Config;
use crate::metrics::Metrics;

/// Everything a handler needs, shared by all requests.
pub struct AppState {
    /// The engine.
    pub db: amberdb::Db,
    /// The configuration the server started with.
    pub config: Config,
    /// Request counters and histograms.
    pub metrics: Metrics,
    /// Token hash to token entry.
    pub(crate) tokens: HashMap<[u8; 32], Arc<TokenEntry>>,
    /// Set when a graceful shutdown starts.
    pub shutting_down: AtomicBool,
    /// When the server started.
    pub started: Instant,
    pub(crate) limit: Arc<Semaphore>,
    /// What recovery did when the database was opened, with the documents it ended with.
    pub recovery: crate::api::RecoveryBody,
    /// The change feed's durable-LSN bridge and stream limit.
    pub(crate) feed: crate::routes::changes::FeedHub,
    /// System events from the engine, for `GET /v1/admin/events`.
    pub events: Arc<crate::routes::events::EventLog>,
    /// The current generation and the phase of a live restore, shared by every generation.
    pub(crate) swap: Arc<crate::swap::DbSwap>,
    /// Set when a live restore replaced this generation's database: the LSN the restored
    /// database starts from (the old one's change streams end with `history_lost`).
    pub(crate) replaced: std::sync::OnceLock<u64>,
    /// Held from a `POST /v1/admin/keys/rotate` that starts a rotation until that rotation
    /// ends, so two requests cannot both start one.
    pub(crate) rotation_claimed: Arc<AtomicBool>,
}

impl AppState {
    /// State for a database and configuration.
    pub fn new(db: amberdb::Db, config: Config) -> Self {
        let tokens = config
            .tokens
            .iter()
            .map(|t| (t.sha256, Arc::new(t.clone())))
            .collect();
        let limit = Arc::new(Semaphore::new(config.concurrency));
        // Counted now, before the first request: these are the documents the open ended with.
        let documents = db
            .stats()
            .collections
            .into_iter()
            .map(|c| (c.name, c.documents))
            .collect();
        let recovery = crate::api::RecoveryBody::new(db.recovery_report(), documents);
        AppState {
            recovery,
            db,
            config,
            metrics: Metrics::default(),
            tokens,
            shutting_down: AtomicBool::new(false),
            started: Instant::now(),
            limit,
            feed: Default::default(),
            events: Default::default(),
            swap: Default::default(),
            replaced: Default::default(),
            rotation_claimed: Default::default(),
        }
    }

    /// True once a graceful shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire) || self.swap.is_shutting_down()
    }
}

/// Shared state handle.
pub type Shared = Arc<AppState>;

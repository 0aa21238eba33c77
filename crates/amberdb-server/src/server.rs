//! One server's lifecycle: open the database, bind, serve, drain on a signal, close.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::conn::ConnAcceptor;
use crate::state::AppState;

/// Open files kept free of client connections for the engine (segments, checkpoints, backups).
const RESERVED_FDS: u64 = 256;
use crate::config::Config;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration was refused.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The database could not be opened (locked, damaged, unreadable).
    #[error("cannot open the database in {dir}: {source}")]
    Open {
        /// The data directory.
        dir: String,
        /// The engine's error.
        #[source]
        source: amberdb::Error,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// Serving failed.
    #[error("server error: {0}")]
    Serve(#[source] std::io::Error),
    /// Closing the database after the drain failed (the log still holds every acknowledged commit).
    #[error("closing the database: {0}")]
    Close(#[source] amberdb::Error),
}

/// A bound, not yet serving server.
pub struct Server {
    state: Arc<AppState>,
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
}

impl Server {
    /// Opens the database (on the blocking pool: recovery reads files) and binds the listen
    /// address. Logs a warning when authentication is off.
    pub async fn bind(config: Config) -> Result<Server, StartError> {
        Server::bind_with(config, |_| {}).await
    }

    /// Like [`Server::bind`], with a last look at the engine options before the database
    /// opens (embedding, and tests that inject I/O faults).
    pub async fn bind_with(
        config: Config,
        customize: impl FnOnce(&mut amberdb::Options),
    ) -> Result<Server, StartError> {
        let tls = match &config.tls {
            Some(files) => {
                // Several crypto providers may be linked in; pick ring explicitly. An error
                // only means one is already installed, which is fine.
                let _ = rustls::crypto::ring::default_provider().install_default();
                Some(
                    axum_server::tls_rustls::RustlsConfig::from_pem_file(&files.cert, &files.key)
                        .await
                        .map_err(|e| {
                            StartError::Tls(format!(
                                "loading {} and {}: {e}",
                                files.cert.display(),
                                files.key.display()
                            ))
                        })?,
                )
            }
            None => None,
        };
        let listener = TcpListener::bind(config.listen).map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| StartError::Bind {
                addr: config.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        // Connections and the engine's files share the open-file limit: take all of it, and
        // keep the connection cap below it so the engine can always open a new segment.
        let mut config = config;
        if let Some(nofile) = crate::conn::raise_nofile_limit() {
            let room = usize::try_from(nofile.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
            if config.max_connections > room {
                tracing::warn!(
                    open_file_limit = nofile,
                    "limits.max_connections lowered from {} to {} to leave {RESERVED_FDS} descriptors for the engine",
                    config.max_connections,
                    room.max(1)
                );
                config.max_connections = room.max(1);
            }
        }
        let dir = config.data.clone();
        let mut opts = config.engine_options();
        let events = Arc::new(crate::routes::events::EventLog::default());
        let sink = events.clone();
        opts.on_event = Some(amberdb::feed::events::EventHook::new(move |e| sink.push(e)));
        customize(&mut opts);
        let swap = Arc::new(crate::swap::DbSwap::default());
        swap.set_options(opts.clone());
        let db = tokio::task::spawn_blocking(move || amberdb::Db::open_with(&dir, opts))
            .await
            .map_err(|e| StartError::Serve(std::io::Error::other(e.to_string())))?
            .map_err(|source| StartError::Open {
                dir: config.data.display().to_string(),
                source,
            })?;
        if !config.auth_enabled() {
            if config.listen.ip().is_loopback() {
                tracing::warn!("no auth.tokens configured: authentication is off (acceptable on loopback only)");
            } else {
                tracing::warn!(listen = %config.listen, "no auth.tokens configured and --insecure-no-auth given: anyone who can reach this port can read and write everything");
            }
        }
        Ok(Server {
            state: Arc::new(AppState {
                events,
                swap,
                ..AppState::new(db, config)
            }),
            listener,
            local_addr,
            tls,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle on the open database (for tests and embedding).
    pub fn db(&self) -> amberdb::Db {
        self.state.db.clone()
    }

    /// True when serving HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until `shutdown` completes, then drains gracefully: stop accepting, let in-flight
    /// requests finish (up to `shutdown.grace_ms`), then close the database, which finishes
    /// queued commits, syncs and writes a checkpoint.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let Server {
            state,
            listener,
            local_addr,
            tls,
        } = self;
        let handle = axum_server::Handle::new();
        // Requests reach the current database generation (a live restore swaps it).
        let swap = state.swap.clone();
        swap.publish(state.clone());
        let app = crate::swap::service(swap.clone()).into_make_service();
        let grace = state.config.shutdown_grace;
        {
            let handle = handle.clone();
            let state = state.clone();
            tokio::spawn(async move {
                shutdown.await;
                tracing::info!("shutting down: no new connections, draining in-flight requests");
                state.shutting_down.store(true, Ordering::Release);
                state.swap.shut_down();
                handle.graceful_shutdown(Some(grace));
            });
        }
        let conns = ConnAcceptor::new(
            state.config.max_connections,
            state.config.header_read_timeout,
        );
        let header_timeout = state.config.header_read_timeout;
        let tune = |b: &mut hyper_util::server::conn::auto::Builder<_>| {
            // Without a timer hyper applies no header timeout at all: silent, half-sent and
            // idle keep-alive connections would stay open forever.
            b.http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                // A client that half-closes after sending its request still gets the answer.
                .half_close(true);
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(addr = %local_addr, data = %state.config.data.display(), "serving on {scheme}://{local_addr}");
        let served = match tls {
            Some(cfg) => {
                let mut server = axum_server::from_tcp_rustls(listener, cfg)
                    .map_err(StartError::Serve)?
                    .map(|tls| tls.acceptor(conns))
                    .handle(handle);
                tune(server.http_builder());
                server.serve(app).await
            }
            None => {
                let mut server = axum_server::from_tcp(listener)
                    .map_err(StartError::Serve)?
                    .acceptor(conns)
                    .handle(handle);
                tune(server.http_builder());
                server.serve(app).await
            }
        };
        // The current generation's database (a live restore may have replaced the first).
        let db = swap
            .current()
            .map_or_else(|| state.db.clone(), |s| s.db.clone());
        swap.clear();
        drop(state);
        drop(swap);
        let closed = tokio::task::spawn_blocking(move || db.close())
            .await
            .map_err(|e| StartError::Serve(std::io::Error::other(e.to_string())))?;
        served.map_err(StartError::Serve)?;
        closed.map_err(StartError::Close)?;
        tracing::info!("database closed cleanly");
        Ok(())
    }
}

/// Resolves on the first SIGINT or SIGTERM. A second signal exits the process at once with
/// status 130: the commit log still protects every acknowledged write, only the drain and the
/// closing checkpoint are skipped.
pub async fn shutdown_signal() {
    wait_for_signal().await;
    tokio::spawn(async {
        wait_for_signal().await;
        eprintln!("amberdb: second signal, exiting now (acknowledged writes are safe in the log)");
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

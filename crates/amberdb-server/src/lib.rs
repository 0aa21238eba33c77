//! The AmberDB HTTP/JSON server: a library that `amberdb serve` runs.
//!
//! It owns the HTTP surface only: configuration ([`config`]), authentication and scopes
//! ([`auth`]), the routes of API v1 (`routes`), stable JSON errors ([`error`]), Prometheus
//! metrics ([`metrics`]), the OpenAPI document ([`openapi`]) and the lifecycle of one server
//! ([`Server`]: bind, serve, drain, close). It never touches the data directory's files
//! itself: every read and write goes through the engine's public API, and every engine call
//! that may block (commits wait for fsync, checkpoints, verify) runs on tokio's blocking pool
//! so the runtime's worker threads never wait on the disk. Every write (PUT, PATCH, DELETE,
//! `POST /v1/txn`) passes through one pipeline (`routes::write`) that checks scopes, body
//! limits and preconditions and shapes the result in one place; the state every handler shares
//! is in `state`, apart from the router (`app`).
//!
//! ```no_run
//! # async fn run() -> Result<(), amberdb_server::StartError> {
//! let config = amberdb_server::Config::default();
//! let server = amberdb_server::Server::bind(config).await?;
//! println!("listening on {}", server.local_addr());
//! server.run(amberdb_server::shutdown_signal()).await
//! # }
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
mod app;
pub mod auth;
mod blocking;
pub use blocking::ASYNC_COMMIT_MAX_BODY;
pub mod config;
mod conn;
pub mod error;
mod headers;
pub mod logging;
pub mod metrics;
mod numbers;
pub mod openapi;
mod routes;
mod server;
mod state;
mod swap;
#[doc(hidden)]
pub use swap::set_before_swap_hook;

pub use config::{Config, ConfigError};
pub use server::{shutdown_signal, Server, StartError};

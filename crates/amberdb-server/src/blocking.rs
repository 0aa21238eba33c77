//! Engine calls that may wait on the disk (commits wait for fsync, checkpoints, verify,
//! backups) run on tokio's blocking pool, so the runtime's worker threads never block; a
//! small commit is awaited instead, without a thread ([`commit`]).

use crate::error::ApiError;

/// Runs blocking engine work on tokio's blocking pool.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("engine task failed: {e}")))
}

/// Largest request body whose transaction is encoded on a runtime worker and awaited
/// ([`amberdb::Db::commit_async`]): encoding hashes every document, which for this much
/// JSON takes tens of microseconds. Larger ones commit on the blocking pool.
pub const ASYNC_COMMIT_MAX_BODY: usize = 64 * 1024;

/// Commits `tx`, built from a request body of `body_len` bytes. A small transaction without
/// blob operations is queued and awaited: no blocking-pool thread parks for its fsync
/// (a thread per in-flight sync write was most of the server's time in a profile of sync
/// PUTs, docs/BENCHMARKS.md). Others run [`amberdb::Db::commit`] on the blocking pool.
pub async fn commit(
    db: &amberdb::Db,
    tx: amberdb::Transaction,
    body_len: usize,
) -> Result<amberdb::Committed, amberdb::Error> {
    if body_len <= ASYNC_COMMIT_MAX_BODY && !tx.has_blobs() {
        return db.commit_async(&tx).await;
    }
    let db = db.clone();
    blocking(move || db.commit(&tx))
        .await
        .unwrap_or(Err(amberdb::Error::Closed))
}

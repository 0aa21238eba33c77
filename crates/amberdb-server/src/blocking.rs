//! Engine calls that may wait on the disk (commits wait for fsync, checkpoints, verify,
//! backups) run on tokio's blocking pool, so the runtime's worker threads never block.

use crate::error::ApiError;

/// Runs blocking engine work on tokio's blocking pool.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("engine task failed: {e}")))
}

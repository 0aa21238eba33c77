//! Which checkpoints a data directory keeps: the two newest, so a damaged newest checkpoint
//! always has an older one to fall back to. The log keeps what the older of them needs.

use std::path::PathBuf;

/// Checkpoints kept.
pub(crate) const KEEP_CHECKPOINTS: usize = 2;

/// A listed checkpoint: its LSN and file.
pub(crate) type Listed = (u64, PathBuf);

/// Splits checkpoints listed newest first (as `list_checkpoints` returns them) into the kept
/// and the removable ones.
pub(crate) fn split(ckpts: &[Listed]) -> (&[Listed], &[Listed]) {
    ckpts.split_at(KEEP_CHECKPOINTS.min(ckpts.len()))
}

/// LSN of the oldest kept checkpoint, which the log must be able to replay from.
pub(crate) fn oldest_kept_lsn(ckpts: &[Listed]) -> Option<u64> {
    split(ckpts).0.last().map(|c| c.0)
}

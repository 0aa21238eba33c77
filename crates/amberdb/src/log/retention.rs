//! Which sealed log segments a data directory may delete, and deleting them.
//!
//! A sealed segment may go only when every kept checkpoint starts after it, it is older than
//! the retention window, and every attached backup repository has archived it. The decision
//! never changes the list of sealed segments: the caller removes a segment from its list only
//! after the segment is gone from disk, so a failed removal keeps it listed (and archivable).

use std::path::Path;

use super::segment::seal_file_name;
use super::SealedSegment;

/// What the log must keep.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SegmentRetention {
    /// LSN of the oldest kept checkpoint: segments ending after it are needed to open.
    pub oldest_checkpoint_lsn: u64,
    /// Commit time (microseconds) before which history may go (the retention window).
    pub horizon_us: u64,
    /// LSN every attached repository has archived through (`None`: no repository).
    pub archived_through: Option<u64>,
}

impl SegmentRetention {
    /// Whether `seg` may be deleted.
    pub(crate) fn removable(&self, seg: &SealedSegment) -> bool {
        seg.seal.last_lsn <= self.oldest_checkpoint_lsn
            && seg.seal.last_commit_ts <= self.horizon_us
            && self.archived_through.is_none_or(|a| seg.seal.last_lsn <= a)
    }

    /// The segments of `sealed` that may be deleted, oldest first; `sealed` is left as it is.
    pub(crate) fn removable_segments(&self, sealed: &[SealedSegment]) -> Vec<SealedSegment> {
        let mut out: Vec<SealedSegment> = sealed
            .iter()
            .filter(|s| self.removable(s))
            .cloned()
            .collect();
        out.sort_by_key(|s| s.seal.first_lsn);
        out
    }
}

/// Deletes a sealed segment: the segment file, then its seal (a seal without its segment is
/// ignored by recovery; a segment without its seal would be resealed).
pub(crate) fn remove_segment(
    log_dir: &Path,
    seg: &SealedSegment,
    faults: &crate::io::Faults,
) -> std::io::Result<()> {
    match crate::io::remove_file(&seg.path, faults) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let seal = log_dir.join(seal_file_name(seg.seal.first_lsn));
    match crate::io::remove_file(&seal, faults) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

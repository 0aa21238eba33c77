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
    /// The history window's size bound (`Options::history_max_bytes`): while the log holds
    /// more, its oldest segments go even inside the time window.
    pub max_bytes: u64,
    /// Bytes of the active segment (counted toward `max_bytes`, never removed).
    pub active_bytes: u64,
}

impl SegmentRetention {
    /// Whether `seg` may be deleted as far as checkpoints and repositories go.
    fn unneeded(&self, seg: &SealedSegment) -> bool {
        seg.seal.last_lsn <= self.oldest_checkpoint_lsn
            && self.archived_through.is_none_or(|a| seg.seal.last_lsn <= a)
    }

    /// The segments of `sealed` that may be deleted, oldest first; `sealed` is left as it is.
    /// A segment goes when no checkpoint or repository needs it and it is either older than
    /// the time window or the log (without the segments already chosen) exceeds `max_bytes`.
    pub(crate) fn removable_segments(&self, sealed: &[SealedSegment]) -> Vec<SealedSegment> {
        let mut all: Vec<&SealedSegment> = sealed.iter().collect();
        all.sort_by_key(|s| s.seal.first_lsn);
        let mut total: u64 = all
            .iter()
            .map(|s| s.seal.length)
            .fold(self.active_bytes, u64::saturating_add);
        let mut out = vec![];
        for s in all {
            let old = s.seal.last_commit_ts <= self.horizon_us;
            if self.unneeded(s) && (old || total > self.max_bytes) {
                total = total.saturating_sub(s.seal.length);
                out.push(s.clone());
            }
        }
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
    // The derived index first: without its segment it is litter, never harm.
    let idx = log_dir.join(super::index::idx_file_name(seg.seal.first_lsn));
    match crate::io::remove_file(&idx, faults) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let seal = log_dir.join(seal_file_name(seg.seal.first_lsn));
    match crate::io::remove_file(&seal, faults) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

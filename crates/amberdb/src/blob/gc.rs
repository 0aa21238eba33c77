//! Blob garbage collection: which blob files are still needed, and removing the others.
//!
//! A blob file is needed while any of these names its content hash:
//!
//! - a commit in flight (a pin, taken when a transaction's `blob_ref` is resolved);
//! - a staging record younger than [`crate::limits::BLOB_STAGING_TTL`] (older ones are
//!   removed here);
//! - a live blob metadata document of the published view;
//! - any blob write in the retained log (every segment still in `DATA/log/`), which covers
//!   every version inside the history window, so as-of reads, history, revert and undo find
//!   their bytes.
//!
//! Blob files copied into a backup repository belong to the repository (its prune removes
//! what no kept backup names), so a data directory never keeps a file for a backup.
//!
//! The background collector (`collect_loop`, every `Options::blob_gc_interval`) runs the
//! same pass as an explicit [`Db::gc_blobs`]; a database that never held a blob pays only
//! a directory check per pass.
//!
//! Order matters: staging records are listed before the view is taken, so a commit that
//! removed its record after the listing is in the view; the store's lock is held throughout,
//! so no upload moves a file into place (and no pin is taken) between the listing and the
//! removals.

use std::collections::HashSet;
use std::sync::Weak;

use serde::Serialize;

use super::{store, BlobDoc, BLOB_COLLECTION_PREFIX};
use crate::db::{Db, Inner};
use crate::error::{IoContext, Result};
use crate::feed::Filter;
use crate::io;

/// What one garbage collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BlobGcReport {
    /// Blob files found.
    pub files: u64,
    /// Blob files still needed (kept).
    pub kept: u64,
    /// Blob files removed.
    pub removed: u64,
    /// Bytes of the removed files.
    pub removed_bytes: u64,
    /// Staging records removed (older than the staging TTL, or unreadable).
    pub staging_expired: u64,
}

fn insert_doc(needed: &mut HashSet<[u8; 32]>, value: &[u8]) {
    if let Some(sha) = serde_json::from_slice::<BlobDoc>(value)
        .ok()
        .and_then(|d| store::parse_sha256(&d.sha256))
    {
        needed.insert(sha);
    }
}

pub(super) fn collect(db: &Db) -> Result<BlobGcReport> {
    let store = db.blob_store();
    let mut report = BlobGcReport::default();
    if !store.root().is_dir() {
        return Ok(report);
    }
    let pins = store.lock();
    let mut needed: HashSet<[u8; 32]> = pins.keys().copied().collect();
    let now = db.options().clock.wall_micros();
    let ttl = u64::try_from(crate::limits::BLOB_STAGING_TTL.as_micros()).unwrap_or(u64::MAX);
    for (path, rec) in store.staging_records()? {
        let live = rec
            .as_ref()
            .filter(|r| now.saturating_sub(r.staged_at) < ttl);
        match live.and_then(|r| store::parse_sha256(&r.sha256)) {
            Some(sha) => {
                needed.insert(sha);
            }
            None => {
                io::remove_file(&path, store.faults()).context(|| {
                    format!("removing the expired staging record {}", path.display())
                })?;
                report.staging_expired += 1;
            }
        }
    }
    let view = db.view();
    for (name, coll) in view.state.collections.iter() {
        if name.starts_with(BLOB_COLLECTION_PREFIX) {
            for doc in coll.docs.values() {
                insert_doc(&mut needed, &doc.value);
            }
        }
    }
    let filter = Filter::all()
        .collection(format!("{BLOB_COLLECTION_PREFIX}*"))
        .with_values(true);
    // Every segment still on disk, from the oldest (which `HistoryLost` names), while no
    // cleanup removes one under the reader.
    db.without_log_cleanup(|| -> Result<()> {
        let mut sub = match db.subscribe(0, filter.clone()) {
            Err(crate::Error::HistoryLost { retained_from_lsn }) => {
                db.subscribe(retained_from_lsn.saturating_sub(1), filter)?
            }
            other => other?,
        };
        while let Some(change) = sub.try_next()? {
            for doc in &change.docs {
                if let Some(v) = &doc.value {
                    insert_doc(&mut needed, v);
                }
            }
        }
        Ok(())
    })??;
    let mut touched = HashSet::new();
    for (sha, path) in store::list_blob_files(store.root(), store.faults())? {
        report.files += 1;
        if needed.contains(&sha) {
            report.kept += 1;
            continue;
        }
        let len = std::fs::metadata(&path).map_or(0, |m| m.len());
        io::remove_file(&path, store.faults())
            .context(|| format!("removing the unneeded blob file {}", path.display()))?;
        report.removed += 1;
        report.removed_bytes += len;
        touched.insert(io::parent_dir(&path).to_owned());
    }
    if report.removed > 0 {
        store.forget_key_ids();
    }
    for dir in touched {
        io::sync_dir(&dir, store.faults()).context(|| format!("syncing {}", dir.display()))?;
    }
    drop(pins);
    Ok(report)
}

/// The background collector: a pass every `Options::blob_gc_interval` until shutdown. A
/// failed pass is logged and reported as an `error_occurred` event; the next one retries.
pub(crate) fn collect_loop(inner: Weak<Inner>) {
    Db::every(
        inner,
        |o| o.blob_gc_interval,
        |db| match collect(db) {
            Ok(r) if r.removed > 0 || r.staging_expired > 0 => tracing::info!(
                removed = r.removed,
                removed_bytes = r.removed_bytes,
                staging_expired = r.staging_expired,
                kept = r.kept,
                "blob garbage collection"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "background blob garbage collection failed");
                db.shared_state().emit(
                    crate::feed::events::EventKind::ErrorOccurred,
                    serde_json::json!({"during": "blob_gc", "error": e.to_string()}),
                );
            }
        },
    );
}

//! What an open data directory knows about its backups: the slots of the repositories it
//! archives to (`DATA/archive.json`), the lock that serializes archiving, and the status of
//! the latest backup. `Db` owns one [`BackupBook`]; the methods here are the only code that
//! reads or changes it.

use std::sync::{Mutex, MutexGuard};

use super::{BackupManifest, BackupRepo, BackupStatus, Slot, Slots};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::log::SealedSegment;

/// Slots, archive serialization and backup status of one open database.
#[derive(Debug, Default)]
pub(crate) struct BackupBook {
    /// Repositories this directory archives to (`DATA/archive.json`).
    slots: Mutex<Slots>,
    /// Serializes archiving, so two archivers never race on one repository.
    archive_serial: Mutex<()>,
    status: Mutex<BackupStatus>,
}

impl BackupBook {
    pub(crate) fn new(slots: Slots) -> Self {
        BackupBook {
            slots: Mutex::new(slots),
            ..Default::default()
        }
    }

    /// The lowest LSN archived to every attached repository (`None`: no repository).
    pub(crate) fn min_archived(&self) -> Result<Option<u64>> {
        Ok(self.slots.lock().map_err(|_| Error::Closed)?.min_archived())
    }

    /// Every slot.
    pub(crate) fn slots(&self) -> Vec<Slot> {
        self.slots
            .lock()
            .map(|s| s.repos.clone())
            .unwrap_or_default()
    }

    /// Bytes of `sealed` past the lowest slot (kept only for archiving).
    pub(crate) fn retained_for_archive(&self, sealed: &[SealedSegment]) -> u64 {
        let Ok(Some(min)) = self.min_archived() else {
            return 0;
        };
        sealed
            .iter()
            .filter(|seg| seg.seal.last_lsn > min)
            .map(|seg| seg.seal.length)
            .sum()
    }

    /// Warns when the log kept for a lagging repository grows past `bound` bytes.
    pub(crate) fn warn_if_archive_lags(&self, sealed: &[SealedSegment], bound: u64) {
        let retained = self.retained_for_archive(sealed);
        if retained > bound {
            let lagging = self
                .slots()
                .into_iter()
                .min_by_key(|r| r.archived_through_lsn);
            tracing::warn!(
                retained,
                bound,
                repository = ?lagging.map(|r| r.path),
                "log kept for an attached backup repository is growing; back up to it or run `amberdb backup detach`"
            );
        }
    }
}

impl Db {
    pub(crate) fn archive_lock(&self) -> MutexGuard<'_, ()> {
        self.backup_book()
            .archive_serial
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Attaches `repo` (creates its slot) so the log is kept until archived there.
    pub(crate) fn attach(&self, repo: &BackupRepo) -> Result<()> {
        let mut slots = self.backup_book().slots.lock().map_err(|_| Error::Closed)?;
        if slots.attach(repo, Some(self.identity().ids())) {
            slots.save(self.path(), &self.options().faults)?;
            tracing::info!(repository = %repo.location(), "attached backup repository; the log is kept until archived there");
        }
        Ok(())
    }

    pub(crate) fn slot(&self, repository_id: &str) -> Option<Slot> {
        self.backup_book()
            .slots
            .lock()
            .ok()?
            .repos
            .iter()
            .find(|s| s.repository_id == repository_id)
            .cloned()
    }

    pub(crate) fn set_archived_through(&self, repository_id: &str, lsn: u64) -> Result<()> {
        let mut slots = self.backup_book().slots.lock().map_err(|_| Error::Closed)?;
        if let Some(s) = slots
            .repos
            .iter_mut()
            .find(|s| s.repository_id == repository_id)
        {
            s.archived_through_lsn = s.archived_through_lsn.max(lsn);
            s.database_id = Some(self.identity().database_id);
            s.timeline = Some(self.identity().timeline);
        }
        slots.save(self.path(), &self.options().faults)
    }

    pub(crate) fn record_backup(&self, m: &BackupManifest) {
        if let Ok(mut st) = self.backup_book().status.lock() {
            st.last_backup_id = Some(m.id.clone());
            st.last_backup_at_us = Some(m.created_at_us);
            st.last_backup_lsn = Some(m.lsn);
            st.last_error = None;
            st.backups += 1;
        }
        (self.shared_state()).emit(crate::feed::events::EventKind::BackupCreated, m);
    }

    /// A scheduled backup was not taken because nothing changed since the last one.
    pub(crate) fn record_backup_skipped(&self) {
        if let Ok(mut st) = self.backup_book().status.lock() {
            st.last_error = None;
            st.skipped_unchanged += 1;
        }
    }

    pub(crate) fn record_backup_error(&self, e: &Error) {
        tracing::error!(error = %e, "scheduled backup work failed; the database keeps running");
        if let Ok(mut st) = self.backup_book().status.lock() {
            st.last_error = Some(e.to_string());
            st.failures += 1;
        }
        (self.shared_state()).emit(
            crate::feed::events::EventKind::BackupFailed,
            serde_json::json!({ "error": e.to_string() }),
        );
    }

    /// The latest backup and any backup error.
    pub fn backup_status(&self) -> BackupStatus {
        self.backup_book()
            .status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Releases a repository: the log is no longer kept for it. Returns false when it was not
    /// attached.
    pub fn detach(&self, repository_id: &str) -> Result<bool> {
        let mut slots = self.backup_book().slots.lock().map_err(|_| Error::Closed)?;
        let before = slots.repos.len();
        slots.repos.retain(|s| s.repository_id != repository_id);
        if slots.repos.len() == before {
            return Ok(false);
        }
        slots.save(self.path(), &self.options().faults)?;
        Ok(true)
    }
}

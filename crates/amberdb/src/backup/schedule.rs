//! Scheduled backups: a thread owned by `Db` that backs up every interval and then applies the
//! retention policy. Failures are logged and recorded in [`BackupStatus`]; they never stop
//! the database or the schedule.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::RetentionPolicy;

/// When and where to back up automatically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSchedule {
    /// The repository directory (created if missing).
    pub repo: PathBuf,
    /// Time between backups.
    pub interval: Duration,
    /// Applied after each backup; `None` keeps every backup.
    pub retention: Option<RetentionPolicy>,
    /// Window of point-in-time recovery that pruning must preserve.
    pub pitr_window: Option<Duration>,
}

/// The outcome of the latest scheduled (or manual) backup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BackupStatus {
    /// Id of the last successful backup.
    pub last_backup_id: Option<String>,
    /// Its time, microseconds.
    pub last_backup_at_us: Option<u64>,
    /// Its LSN.
    pub last_backup_lsn: Option<u64>,
    /// The last scheduled backup, archive or prune error, if the latest attempt failed.
    pub last_error: Option<String>,
    /// Successful backups since open.
    pub backups: u64,
    /// Failed scheduled attempts since open.
    pub failures: u64,
    /// Scheduled backups not taken since open because nothing changed since the newest
    /// backup (same LSN).
    pub skipped_unchanged: u64,
}

/// The continuous archiver: copies sealed segments to `Options::archive_to` as they appear,
/// and seals the active segment when its oldest unarchived commit is older than
/// `archive_timeout`.
pub(crate) fn archive_loop(inner: std::sync::Weak<crate::db::Inner>) {
    let mut repo: Option<super::BackupRepo> = None;
    let mut last_roll = std::time::Instant::now();
    let mut failing = false;
    loop {
        if !crate::db::Db::idle_weak(&inner, Duration::from_secs(1)) {
            return;
        }
        let Some(db) = inner.upgrade().map(crate::db::Db::from_inner) else {
            return;
        };
        let Some(path) = db.options().archive_to.clone() else {
            return;
        };
        let result = (|| -> crate::Result<()> {
            let repo = match &repo {
                Some(r) => r.clone(),
                None => repo.insert(super::BackupRepo::open_or_init(&path)?).clone(),
            };
            if let Some(timeout) = db.options().archive_timeout {
                let through = db.slot(repo.id()).map_or(0, |s| s.archived_through_lsn);
                if db.view().lsn() > through && last_roll.elapsed() >= timeout {
                    db.roll()?;
                    last_roll = std::time::Instant::now();
                }
            }
            db.archive(&repo)?;
            Ok(())
        })();
        match result {
            Ok(()) => failing = false,
            Err(e) => {
                if !failing {
                    db.record_backup_error(&e);
                }
                failing = true;
            }
        }
    }
}

/// The backup scheduler: backs up every interval (at once when the repository has no backup
/// yet), unless nothing changed since the newest backup, then prunes with the retention
/// policy. It holds the database only while working, never while it sleeps.
pub(crate) fn schedule_loop(inner: std::sync::Weak<crate::db::Inner>) {
    let mut first = true;
    loop {
        let Some(schedule) = inner.upgrade().and_then(|i| {
            crate::db::Db::from_inner(i)
                .options()
                .backup_schedule
                .clone()
        }) else {
            return;
        };
        let due_now = first
            && super::BackupRepo::open(&schedule.repo)
                .and_then(|r| r.list())
                .map_or(true, |l| l.is_empty());
        first = false;
        if !due_now && !crate::db::Db::idle_weak(&inner, schedule.interval) {
            return;
        }
        let Some(db) = inner.upgrade().map(crate::db::Db::from_inner) else {
            return;
        };
        let result = (|db: crate::db::Db| -> crate::Result<()> {
            let repo = super::BackupRepo::open_or_init(&schedule.repo)?;
            let newest = repo.list()?.into_iter().map(|m| m.lsn).max();
            if newest == Some(db.view().lsn()) {
                db.record_backup_skipped();
            } else {
                db.backup(&repo)?;
            }
            // Pruning needs only the repository: hold the database no longer than needed.
            drop(db);
            if let Some(policy) = &schedule.retention {
                let plan = repo.prune(policy, schedule.pitr_window, false)?;
                if let Some(i) = inner.upgrade() {
                    crate::db::Db::from_inner(i)
                        .shared_state()
                        .emit(crate::feed::events::EventKind::BackupCleaned, &plan);
                }
            }
            Ok(())
        })(db);
        if let Err(e) = result {
            if let Some(db) = inner.upgrade().map(crate::db::Db::from_inner) {
                db.record_backup_error(&e);
                db.shared_state().emit(
                    crate::feed::events::EventKind::ScheduleFailed,
                    serde_json::json!({ "error": e.to_string() }),
                );
            }
        }
    }
}

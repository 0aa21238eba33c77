//! System events: what the engine did on its own or what went wrong (open and recovery,
//! backups created, failed and pruned, verify results, checkpoints, poisoning, background
//! failures), delivered to a callback registered in `Options::on_event`. The callback runs
//! on the engine thread that emits the event: keep it short (queue the event, never block
//! on I/O). Emitting is one line at each call site: `shared.emit(kind, details)`.

use std::sync::Arc;

use serde::Serialize;

use crate::engine_state::Shared;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// The database opened; details are the recovery report.
    StorageInitialized,
    /// A backup was written; details are its manifest.
    BackupCreated,
    /// A backup (or archiving) failed; details say why.
    BackupFailed,
    /// Scheduled retention removed backups; details are the prune plan.
    BackupCleaned,
    /// A restore finished; details are its report.
    BackupRestored,
    /// `verify` ran; details say what it checked and found.
    DataValidated,
    /// A checkpoint was taken; details are its info.
    Checkpoint,
    /// The database was poisoned; details name the cause.
    Poisoned,
    /// A scheduled backup run failed; details say why.
    ScheduleFailed,
    /// Background work failed (a checkpoint, archiving); details say what and why.
    ErrorOccurred,
    /// A key rotation started, finished (details are its report) or failed.
    KeyRotation,
}

impl EventKind {
    /// The snake_case name (`backup_created`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::StorageInitialized => "storage_initialized",
            EventKind::BackupCreated => "backup_created",
            EventKind::BackupFailed => "backup_failed",
            EventKind::BackupCleaned => "backup_cleaned",
            EventKind::BackupRestored => "backup_restored",
            EventKind::DataValidated => "data_validated",
            EventKind::Checkpoint => "checkpoint",
            EventKind::Poisoned => "poisoned",
            EventKind::ScheduleFailed => "schedule_failed",
            EventKind::ErrorOccurred => "error_occurred",
            EventKind::KeyRotation => "key_rotation",
        }
    }
}

/// One system event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SystemEvent {
    /// What happened.
    pub kind: EventKind,
    /// When, microseconds since the Unix epoch (wall time of the engine's clock).
    pub at_us: u64,
    /// What the event is about (a report, a manifest, an error message).
    pub details: serde_json::Value,
}

/// A callback receiving every system event (`Options::on_event`).
#[derive(Clone)]
pub struct EventHook(Arc<dyn Fn(&SystemEvent) + Send + Sync>);

impl EventHook {
    /// Wraps a callback.
    pub fn new(f: impl Fn(&SystemEvent) + Send + Sync + 'static) -> Self {
        EventHook(Arc::new(f))
    }
}

impl std::fmt::Debug for EventHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventHook")
    }
}

impl Shared {
    /// Delivers an event to the registered hook, if any. Details serialize with serde; a
    /// value that does not becomes its error message.
    pub(crate) fn emit(&self, kind: EventKind, details: impl Serialize) {
        let Some(hook) = &self.events else {
            return;
        };
        let details = serde_json::to_value(details)
            .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }));
        let at_us = self
            .clock
            .lock()
            .map(|mut c| c.now())
            .unwrap_or_else(|_| crate::document::now_micros());
        (hook.0)(&SystemEvent {
            kind,
            at_us,
            details,
        });
    }
}

//! System events through `Options::on_event`: what the engine emits on open, checkpoint,
//! verify, backup, scheduled retention and poisoning.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use amberdb::feed::events::{EventHook, EventKind, SystemEvent};
use amberdb::io::{Fault, FaultInjector, Faults, IoOp};
use amberdb::{BackupRepo, Db, Options};
use serde_json::json;

fn recording() -> (Options, Arc<Mutex<Vec<SystemEvent>>>) {
    let seen = Arc::new(Mutex::new(vec![]));
    let sink = seen.clone();
    let opts = Options {
        on_event: Some(EventHook::new(move |e| {
            sink.lock().unwrap().push(e.clone())
        })),
        ..Options::default()
    };
    (opts, seen)
}

fn kinds(seen: &Mutex<Vec<SystemEvent>>) -> Vec<EventKind> {
    seen.lock().unwrap().iter().map(|e| e.kind).collect()
}

#[test]
fn open_checkpoint_verify_and_backup_each_emit_their_event_with_details() {
    let dir = tempfile::tempdir().unwrap();
    let repo_dir = tempfile::tempdir().unwrap();
    let (opts, seen) = recording();
    let db = Db::open_with(dir.path(), opts).unwrap();
    assert_eq!(kinds(&seen), [EventKind::StorageInitialized]);
    assert!(
        seen.lock().unwrap()[0]
            .details
            .get("commits_replayed")
            .is_some(),
        "the recovery report"
    );
    db.put("players", "a", json!(1)).unwrap();
    let info = db.checkpoint().unwrap();
    db.verify().unwrap();
    let repo = BackupRepo::open_or_init(repo_dir.path()).unwrap();
    let manifest = db.backup(&repo).unwrap();
    let events = seen.lock().unwrap().clone();
    let k: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        k,
        [
            EventKind::StorageInitialized,
            EventKind::Checkpoint,
            EventKind::DataValidated,
            EventKind::BackupCreated,
        ]
    );
    assert_eq!(events[1].details["lsn"], info.lsn);
    assert_eq!(events[2].details["problems"], json!([]));
    assert_eq!(events[3].details["id"], manifest.id);
    assert!(events.iter().all(|e| e.at_us > 0));
    drop(events);
    db.close().unwrap();
    // The checkpoint on close is an event too.
    assert_eq!(kinds(&seen).last(), Some(&EventKind::Checkpoint));
}

/// Fails every fsync of a log segment once armed.
struct FailLogSync(AtomicBool);

impl FaultInjector for FailLogSync {
    fn on_io(&self, op: IoOp<'_>) -> Fault {
        if let IoOp::Sync { path, .. } = op {
            let in_log = path.parent().and_then(|d| d.file_name()) == Some("log".as_ref());
            if in_log && self.0.load(Ordering::SeqCst) {
                return Fault::Fail(std::io::Error::other("injected fsync failure"));
            }
        }
        Fault::Proceed
    }
}

#[test]
fn poisoning_emits_one_poisoned_event_with_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let (opts, seen) = recording();
    let inj = Arc::new(FailLogSync(AtomicBool::new(false)));
    let db = Db::open_with(
        dir.path(),
        Options {
            faults: Faults::new(inj.clone()),
            checkpoint_on_close: false,
            ..opts
        },
    )
    .unwrap();
    inj.0.store(true, Ordering::SeqCst);
    assert!(db.put("players", "a", json!(1)).is_err());
    assert!(db.put("players", "b", json!(1)).is_err());
    let poisoned: Vec<SystemEvent> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.kind == EventKind::Poisoned)
        .cloned()
        .collect();
    assert_eq!(poisoned.len(), 1, "once, for the first cause");
    assert!(poisoned[0].details["cause"]
        .as_str()
        .unwrap()
        .contains("injected fsync failure"));
    let _ = db.close();
}

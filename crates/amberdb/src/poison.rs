//! Poisoning: after a failed write or fsync, or a panic in an engine thread, the on-disk
//! state is uncertain, so every later write is refused until the database is reopened.
//! The first cause is kept and reported (`Db::poisoned`, `/readyz`).

use crate::engine_state::Shared;
use crate::error::Error;

impl Shared {
    pub(crate) fn poisoned(&self) -> Option<String> {
        self.poisoned.lock().ok().and_then(|p| p.clone())
    }

    pub(crate) fn poison(&self, cause: String) {
        tracing::error!(%cause, "database poisoned: writes are refused until it is reopened");
        let first = match self.poisoned.lock() {
            Ok(mut p) if p.is_none() => {
                *p = Some(cause.clone());
                true
            }
            _ => false,
        };
        if first {
            self.emit(
                crate::feed::events::EventKind::Poisoned,
                serde_json::json!({ "cause": cause }),
            );
        }
    }

    pub(crate) fn poisoned_error(&self) -> Option<Error> {
        self.poisoned().map(|cause| Error::Poisoned { cause })
    }

    /// Runs the body of an engine thread; a panic poisons the database with its message
    /// instead of ending the thread quietly, which would look like a shutdown (readiness
    /// stays true, writes get `Closed`, background work silently stops).
    pub(crate) fn run_guarded(&self, thread: &str, body: impl FnOnce()) {
        let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) else {
            return;
        };
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic payload".into());
        self.poison(format!("the {thread} thread panicked: {message}"));
    }
}

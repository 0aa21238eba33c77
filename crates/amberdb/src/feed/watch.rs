//! The durable-LSN watch: the committer publishes the highest LSN on stable storage after
//! every log sync; subscribers wait on it. Publishing takes a mutex only long enough to store
//! a number and notify, so any number of waiting (or slow) subscribers never slow the
//! committer: they hold the mutex only while going to sleep.

use std::sync::{Condvar, Mutex};
use std::time::Instant;

use crate::error::{Error, Result};

#[derive(Debug, Default)]
struct WatchState {
    durable: u64,
    closed: bool,
}

/// The highest durable LSN, and a way to wait for it to move.
#[derive(Debug, Default)]
pub(crate) struct DurableWatch {
    state: Mutex<WatchState>,
    moved: Condvar,
}

impl DurableWatch {
    /// A watch starting at `durable` (the LSN recovery reached: all of it is on disk).
    pub(crate) fn new(durable: u64) -> Self {
        DurableWatch {
            state: Mutex::new(WatchState {
                durable,
                closed: false,
            }),
            moved: Condvar::new(),
        }
    }

    /// Called by the committer once every LSN through `durable` is fdatasynced.
    pub(crate) fn publish(&self, durable: u64) {
        if let Ok(mut s) = self.state.lock() {
            if durable > s.durable {
                s.durable = durable;
                self.moved.notify_all();
            }
        }
    }

    /// Called when the database closes: waiters wake and get `Error::Closed`.
    pub(crate) fn close(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.closed = true;
            self.moved.notify_all();
        }
    }

    /// Whether the database closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.state.lock().map(|s| s.closed).unwrap_or(true)
    }

    /// The highest durable LSN now.
    pub(crate) fn durable(&self) -> u64 {
        self.state.lock().map(|s| s.durable).unwrap_or(0)
    }

    /// Waits until the durable LSN is above `lsn` or `deadline` passes (`None`: no deadline);
    /// returns the durable LSN then (which may still be `lsn` or below after a timeout).
    /// `Error::Closed` once the database is closed and nothing above `lsn` is durable.
    pub(crate) fn wait_past(&self, lsn: u64, deadline: Option<Instant>) -> Result<u64> {
        let mut s = self.state.lock().map_err(|_| Error::Closed)?;
        loop {
            if s.durable > lsn {
                return Ok(s.durable);
            }
            if s.closed {
                return Err(Error::Closed);
            }
            s = match deadline {
                None => self.moved.wait(s).map_err(|_| Error::Closed)?,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(s.durable);
                    }
                    self.moved
                        .wait_timeout(s, left)
                        .map_err(|_| Error::Closed)?
                        .0
                }
            };
        }
    }
}

//! The committer thread: the only writer of state and log.
//!
//! Writers send encoded transactions over a channel. The committer takes everything queued
//! (group commit), validates each transaction against the latest state, frames the survivors
//! into one buffer, writes it with one `write`, syncs once if any of them asked for `Sync`,
//! publishes the new read view, and only then acknowledges. A failed write or sync poisons the
//! database: the batch is not published, its writers get the error, and every later write is
//! refused. The committer never retries an fsync.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::document::now_micros;
use crate::error::{Error, Result};
use crate::log::CommitLog;
use crate::state::{EncodedOp, State};
use crate::txn::{Committed, Durability};

type Reply<T> = SyncSender<Result<T>>;

/// A request to the committer.
pub(crate) enum Msg {
    Commit {
        ops: Vec<EncodedOp>,
        durability: Durability,
        reply: Reply<Committed>,
    },
    /// Make everything written so far durable; replies with the durable LSN.
    Sync { reply: Reply<u64> },
    /// Seal the active segment so every commit so far can be archived; replies with the last
    /// sealed LSN.
    Roll { reply: Reply<u64> },
    /// Finish queued work, sync, and stop.
    Shutdown { reply: Reply<()> },
}

/// Counters exposed through `Db::stats`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub commits: AtomicU64,
    pub fsyncs: AtomicU64,
    pub synced_commits: AtomicU64,
    pub batches: AtomicU64,
    pub log_bytes_written: AtomicU64,
    pub durable_lsn: AtomicU64,
}

/// What background checkpointing needs to know and be woken by.
#[derive(Debug, Default)]
pub(crate) struct CheckpointSignal {
    pub bytes_since: u64,
    pub shutdown: bool,
}

/// State shared by the committer, the checkpointer and every `Db` handle.
pub(crate) struct Shared {
    pub view: ArcSwap<State>,
    pub poisoned: Mutex<Option<String>>,
    pub counters: Counters,
    pub ckpt: Mutex<CheckpointSignal>,
    pub ckpt_wake: Condvar,
    pub checkpoint_log_bytes: u64,
}

impl Shared {
    pub(crate) fn poisoned(&self) -> Option<String> {
        self.poisoned.lock().ok().and_then(|p| p.clone())
    }

    pub(crate) fn poison(&self, cause: String) {
        tracing::error!(%cause, "database poisoned: writes are refused until it is reopened");
        if let Ok(mut p) = self.poisoned.lock() {
            p.get_or_insert(cause);
        }
    }

    pub(crate) fn poisoned_error(&self) -> Option<Error> {
        self.poisoned().map(|cause| Error::Poisoned { cause })
    }
}

pub(crate) struct Committer {
    pub rx: Receiver<Msg>,
    pub log: CommitLog,
    pub shared: Arc<Shared>,
    pub max_doc_bytes: usize,
    pub max_batch: usize,
    pub next_lsn: u64,
    pub last_ts: u64,
    /// Highest LSN written to the OS.
    pub written_lsn: u64,
    /// Highest LSN known to be on stable storage.
    pub durable_lsn: u64,
    /// When unsynced buffered commits must be synced by.
    pub sync_deadline: Option<Instant>,
}

impl Committer {
    pub(crate) fn run(mut self) {
        loop {
            let first = match self.sync_deadline {
                Some(deadline) => match self
                    .rx
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => {
                        let _ = self.sync();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match self.rx.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                },
            };
            let mut batch = vec![first];
            while batch.len() < self.max_batch {
                match self.rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            if self.process(batch) {
                return;
            }
        }
        // Every handle is gone without a shutdown: still leave nothing unsynced.
        let _ = self.sync();
    }

    /// Syncs the log if anything written is not yet durable.
    fn sync(&mut self) -> Result<u64> {
        self.sync_deadline = None;
        if let Some(e) = self.shared.poisoned_error() {
            return Err(e);
        }
        if self.written_lsn > self.durable_lsn {
            if let Err(e) = self.log.sync() {
                let cause = format!("fdatasync of the commit log failed: {e}");
                self.shared.poison(cause.clone());
                return Err(Error::Poisoned { cause });
            }
            let c = &self.shared.counters;
            c.fsyncs.fetch_add(1, Ordering::Relaxed);
            c.synced_commits
                .fetch_add(self.written_lsn - self.durable_lsn, Ordering::Relaxed);
            self.durable_lsn = self.written_lsn;
            c.durable_lsn.store(self.durable_lsn, Ordering::Release);
        }
        Ok(self.durable_lsn)
    }

    /// Handles one batch; returns true when the committer must stop.
    fn process(&mut self, batch: Vec<Msg>) -> bool {
        let mut state: State = (**self.shared.view.load()).clone();
        let mut frames = Vec::new();
        let mut acks: Vec<(Reply<Committed>, Committed)> = vec![];
        let mut refusals: Vec<(Reply<Committed>, Error)> = vec![];
        let mut sync_waiters = vec![];
        let mut roll_waiters = vec![];
        let mut shutdown = None;
        let mut need_sync = false;
        let mut max_delay: Option<Duration> = None;
        let first_lsn = self.next_lsn;
        for msg in batch {
            match msg {
                Msg::Commit {
                    ops,
                    durability,
                    reply,
                } => {
                    if let Some(e) = self.shared.poisoned_error() {
                        refusals.push((reply, e));
                        continue;
                    }
                    let ts = now_micros().max(self.last_ts + 1);
                    match state.prepare(&ops, self.next_lsn, ts, self.max_doc_bytes) {
                        Ok(p) if p.record.ops.is_empty() => {
                            acks.push((
                                reply,
                                Committed {
                                    lsn: state.lsn,
                                    commit_ts: state.commit_ts,
                                    results: p.results,
                                },
                            ));
                        }
                        Ok(p) => {
                            p.record.encode_into(&mut frames);
                            state.apply(&p.record);
                            self.next_lsn += 1;
                            self.last_ts = ts;
                            match durability {
                                Durability::Sync => need_sync = true,
                                Durability::Buffered { max_delay: d } => {
                                    max_delay = Some(max_delay.map_or(d, |m| m.min(d)));
                                }
                            }
                            acks.push((
                                reply,
                                Committed {
                                    lsn: p.record.lsn,
                                    commit_ts: ts,
                                    results: p.results,
                                },
                            ));
                        }
                        Err(e) => refusals.push((reply, e)),
                    }
                }
                Msg::Sync { reply } => {
                    need_sync = true;
                    sync_waiters.push(reply);
                }
                Msg::Roll { reply } => {
                    need_sync = true;
                    roll_waiters.push(reply);
                }
                Msg::Shutdown { reply } => {
                    need_sync = true;
                    shutdown = Some(reply);
                }
            }
        }
        let mut failure: Option<Error> = None;
        if !frames.is_empty() {
            let last_lsn = self.next_lsn - 1;
            match self.log.append(&frames, first_lsn, last_lsn, self.last_ts) {
                Ok(()) => {
                    self.written_lsn = last_lsn;
                    let c = &self.shared.counters;
                    c.commits
                        .fetch_add(last_lsn + 1 - first_lsn, Ordering::Relaxed);
                    c.batches.fetch_add(1, Ordering::Relaxed);
                    c.log_bytes_written
                        .fetch_add(frames.len() as u64, Ordering::Relaxed);
                }
                Err(e) if crate::log::is_out_of_descriptors(&e) => {
                    // Failed opening the next segment: nothing of this batch was written, so
                    // it fails and is not applied, and the next batch retries the roll.
                    self.next_lsn = first_lsn;
                    let context = format!(
                        "opening a new log segment in {} failed; nothing of this transaction was written, retry",
                        self.log.active_path().parent().map_or("the log directory".into(), |d| d.display().to_string())
                    );
                    failure = Some(Error::io(context, e));
                }
                Err(e) => {
                    let cause = format!(
                        "write to commit log {} failed: {e}",
                        self.log.active_path().display()
                    );
                    self.shared.poison(cause.clone());
                    failure = Some(Error::Poisoned { cause });
                }
            }
        }
        if failure.is_none() {
            if need_sync {
                if let Err(e) = self.sync() {
                    failure = Some(e);
                }
            } else if let Some(d) = max_delay {
                let deadline = Instant::now() + d;
                self.sync_deadline = Some(self.sync_deadline.map_or(deadline, |x| x.min(deadline)));
            }
        }
        if failure.is_none() && !roll_waiters.is_empty() {
            if let Err(e) = self.log.seal_active(self.next_lsn) {
                let cause = format!(
                    "sealing log segment {} failed: {e}",
                    self.log.active_path().display()
                );
                self.shared.poison(cause.clone());
                failure = Some(Error::Poisoned { cause });
            }
        }
        match &failure {
            None => {
                if !frames.is_empty() {
                    self.shared.view.store(Arc::new(state));
                }
                for (reply, committed) in acks {
                    let _ = reply.send(Ok(committed));
                }
                for reply in sync_waiters {
                    let _ = reply.send(Ok(self.durable_lsn));
                }
                for reply in roll_waiters {
                    let _ = reply.send(Ok(self.durable_lsn));
                }
            }
            Some(Error::Io { context, source }) => {
                // Not poisoned (see above): every waiter gets the same I/O error.
                let err = || {
                    Error::io(
                        context.clone(),
                        std::io::Error::new(source.kind(), source.to_string()),
                    )
                };
                for (reply, _) in acks {
                    let _ = reply.send(Err(err()));
                }
                for reply in sync_waiters.into_iter().chain(roll_waiters) {
                    let _ = reply.send(Err(err()));
                }
            }
            Some(e) => {
                let cause = match e {
                    Error::Poisoned { cause } => cause.clone(),
                    other => other.to_string(),
                };
                for (reply, _) in acks {
                    let _ = reply.send(Err(Error::Poisoned {
                        cause: cause.clone(),
                    }));
                }
                for reply in sync_waiters.into_iter().chain(roll_waiters) {
                    let _ = reply.send(Err(Error::Poisoned {
                        cause: cause.clone(),
                    }));
                }
            }
        }
        for (reply, e) in refusals {
            let _ = reply.send(Err(e));
        }
        if !frames.is_empty() && failure.is_none() {
            if let Ok(mut s) = self.shared.ckpt.lock() {
                s.bytes_since += frames.len() as u64;
                if s.bytes_since >= self.shared.checkpoint_log_bytes {
                    self.shared.ckpt_wake.notify_all();
                }
            }
        }
        match shutdown {
            Some(reply) => {
                let _ = reply.send(match failure {
                    None => Ok(()),
                    Some(e) => Err(e),
                });
                true
            }
            None => false,
        }
    }
}

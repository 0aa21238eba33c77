//! The committer: the only writer of state and log, run by one thread at a time (the writer
//! that found it free, see [`CommitQueue`]; a timer thread for buffered deadlines).
//!
//! Writers queue encoded transactions ([`CommitQueue`]). The committer takes everything queued
//! (group commit), validates each transaction against the latest state, frames the survivors
//! into one buffer, writes it with one `write`, syncs once if any of them asked for `Sync`,
//! publishes the new read view, and only then acknowledges. A failed write or sync poisons the
//! database: the batch is not published, its writers are told `CommitOutcomeUnknown` when its
//! bytes may be on disk (`Poisoned` when none were written), and every later write is refused.
//! The committer never retries an fsync. `Buffered` deadlines are checked before every batch,
//! so a busy committer still makes buffered commits durable within about `max_delay`.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use futures_channel::oneshot;

use crate::document::now_micros;
use crate::engine_state::Shared;
use crate::error::{Error, Result};
use crate::limits::MAX_PAYLOAD_LEN;
use crate::log::record::{CommitRecord, LoggedOp};
use crate::log::CommitLog;
use crate::state::{EncodedOp, State};
use crate::txn::{CommitMeta, Committed, Durability};

/// Where the committer sends a message's outcome: to a thread waiting inside
/// [`CommitQueue::call`], or to a task awaiting a message it queued with
/// [`CommitQueue::submit`] (no thread waits for it).
pub(crate) enum Reply<T> {
    Thread(SyncSender<Result<T>>),
    Task(oneshot::Sender<Result<T>>),
}

impl<T> Reply<T> {
    /// Delivers the outcome; false when nobody waits for it any more.
    fn send(self, outcome: Result<T>) -> bool {
        match self {
            Reply::Thread(tx) => tx.send(outcome).is_ok(),
            Reply::Task(tx) => tx.send(outcome).is_ok(),
        }
    }
}

impl Msg {
    /// Whether a task, not a thread inside [`CommitQueue::call`], waits for this message.
    fn for_task(&self) -> bool {
        match self {
            Msg::Commit { reply, .. } => matches!(reply, Reply::Task(_)),
            Msg::Sync { reply } | Msg::Roll { reply } => matches!(reply, Reply::Task(_)),
            Msg::Shutdown { reply } => matches!(reply, Reply::Task(_)),
        }
    }
}

/// A request to the committer.
pub(crate) enum Msg {
    Commit {
        ops: Vec<EncodedOp>,
        /// Rewrites of existing documents built from a read view (a batch migration), each
        /// applied only if its document is still the one the view saw
        /// (`State::check_prebuilt`); logged before the prepared `ops`, which must not touch
        /// the same documents.
        prebuilt: Vec<LoggedOp>,
        durability: Durability,
        meta: CommitMeta,
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

pub(crate) struct Committer {
    pub log: CommitLog,
    pub shared: Arc<Shared>,
    pub max_doc_bytes: usize,
    /// Rust migration steps of this process (`Options::native_steps`).
    pub native_steps: crate::schema::NativeSteps,
    /// Largest commit record payload accepted (at most `limits::MAX_PAYLOAD_LEN`).
    pub max_txn_bytes: usize,
    pub max_batch: usize,
    pub next_lsn: u64,
    pub last_ts: u64,
    /// Highest LSN written to the OS.
    pub written_lsn: u64,
    /// Highest LSN known to be on stable storage.
    pub durable_lsn: u64,
    /// When unsynced buffered commits must be durable by.
    pub sync_deadline: Option<Instant>,
    /// How long a log sync has been taking (a moving average).
    pub fsync_estimate: Duration,
    /// Stream files: each commit's appends are written there after its log write, before
    /// it is published (`stream/files.rs`).
    pub streams: Arc<crate::stream::files::StreamFiles>,
}

/// The committer's work and who does it. A writer queues its message, and when no other
/// thread is committing it becomes the leader and does the committer's work itself
/// ([`CommitQueue::call`]): it takes every queued message as one batch, processes it, and
/// retires; a writer whose message is still queued then leads the next batch. One writer
/// alone therefore commits without a thread switch (a round trip to a committer thread, two
/// futex wake-ups, was most of a buffered commit: docs/BENCHMARKS.md), and concurrent
/// writers still share batches: the messages queued while a leader syncs form the next one.
/// A leader leads one batch only, so no writer waits behind others' commits for long.
/// Queueing, waiting and retiring happen under one lock, so a queued message always has a
/// sender that will lead it or a leader that will take it. The committer's own thread
/// ([`CommitQueue::run_timer`]) makes `Buffered` commits durable by their deadline when no
/// writer comes by, and leads the batches of messages that tasks queued
/// ([`CommitQueue::submit`]) when no writer thread is leading: a task that queues while
/// nobody leads wakes it, and a leader that retires with such messages still queued wakes
/// it again.
pub(crate) struct CommitQueue {
    pending: Mutex<Pending>,
    /// Woken when a leader retires: waiting writers look for their reply, or lead.
    retired: Condvar,
    /// Woken when a message is queued or a caller leaves while the leader gathers.
    arrived: Condvar,
    /// Locked only by the leader.
    core: Mutex<Committer>,
    /// What the committer's own thread must do next.
    timer: Mutex<Timer>,
    timer_wake: Condvar,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Pending {
    msgs: VecDeque<Msg>,
    /// A thread is leading a batch.
    leading: bool,
    /// Closed to new messages (the shutdown message alone still gets in).
    closed: bool,
    /// Threads inside [`CommitQueue::call`] (queued, waiting or leading).
    callers: usize,
    /// The leader is waiting for more messages before it takes its batch.
    gathering: bool,
    /// Messages in `msgs` that tasks queued ([`CommitQueue::submit`]): no thread of theirs
    /// will lead them.
    tasks: usize,
}

/// The committer's own thread's to-do list ([`CommitQueue::run_timer`]).
#[derive(Default, Clone, Copy, PartialEq, Eq)]
struct Timer {
    /// When it must start a sync (`None`: nothing buffered).
    start: Option<Instant>,
    /// Messages of tasks are queued and may have no leader.
    lead: bool,
    /// The committer has shut down.
    stopped: bool,
}

/// Longest a leader waits for writers to queue before a synced batch.
const MAX_GATHER: Duration = Duration::from_micros(500);

impl CommitQueue {
    pub(crate) fn new(core: Committer) -> CommitQueue {
        CommitQueue {
            shared: core.shared.clone(),
            core: Mutex::new(core),
            pending: Mutex::new(Pending::default()),
            retired: Condvar::new(),
            arrived: Condvar::new(),
            timer: Mutex::new(Timer::default()),
            timer_wake: Condvar::new(),
        }
    }

    /// Queues `msg` and returns its reply from `rx` (the receiving end of the message's own
    /// reply channel), leading batches in this thread while no other thread is. `None` when
    /// the reply was dropped (a panic poisoned the database); `Closed` after
    /// [`CommitQueue::close`].
    pub(crate) fn call<T>(&self, msg: Msg, rx: &Receiver<Result<T>>) -> Option<Result<T>> {
        self.queue(msg, rx, false)
    }

    /// Refuses every later [`CommitQueue::call`] with `Closed`; false when already closed.
    pub(crate) fn close(&self) -> bool {
        self.pending
            .lock()
            .is_ok_and(|mut p| !std::mem::replace(&mut p.closed, true))
    }

    /// [`CommitQueue::call`] for the shutdown message, after [`CommitQueue::close`].
    pub(crate) fn call_shutdown(&self, msg: Msg, rx: &Receiver<Result<()>>) -> Option<Result<()>> {
        self.queue(msg, rx, true)
    }

    /// Queues `msg`, whose reply a task awaits (a [`Reply::Task`]), and returns at once: the
    /// leader of the moment takes it, or the committer's own thread leads it. `Closed` after
    /// [`CommitQueue::close`]; `None` when a panic poisoned the queue.
    pub(crate) fn submit(&self, msg: Msg) -> Option<Result<()>> {
        debug_assert!(msg.for_task());
        let mut p = self.pending.lock().ok()?;
        if p.closed {
            return Some(Err(Error::Closed));
        }
        p.msgs.push_back(msg);
        p.tasks += 1;
        if p.gathering {
            self.arrived.notify_all();
        }
        // A leader of the moment looks for task messages when it retires.
        let wake = !p.leading;
        drop(p);
        if wake {
            self.update_timer(|t| t.lead = true);
        }
        Some(Ok(()))
    }

    fn queue<T>(&self, msg: Msg, rx: &Receiver<Result<T>>, after_close: bool) -> Option<Result<T>> {
        let mut p = self.pending.lock().ok()?;
        if p.closed && !after_close {
            return Some(Err(Error::Closed));
        }
        debug_assert!(!msg.for_task());
        p.msgs.push_back(msg);
        p.callers += 1;
        if p.gathering {
            self.arrived.notify_all();
        }
        let reply = loop {
            // A leader sends its replies before it retires (under this lock), so a reply not
            // here yet comes with a later wake-up.
            match rx.try_recv() {
                Ok(reply) => break Some(reply),
                Err(TryRecvError::Disconnected) => break None,
                Err(TryRecvError::Empty) => {}
            }
            if p.leading {
                p = self.retired.wait(p).ok()?;
                continue;
            }
            p.leading = true;
            drop(p);
            self.lead_one();
            p = self.pending.lock().ok()?;
        };
        p.callers -= 1;
        if p.gathering {
            self.arrived.notify_all();
        }
        reply
    }

    /// Takes the next batch. One that will be synced first waits, for at most half an
    /// fsync, until every writer inside [`CommitQueue::call`] has queued: the writers the
    /// last leader just acknowledged come back within microseconds, and without the wait
    /// each batch took only those that queued during the previous sync, so 16 writers
    /// shared fsyncs in two alternating halves (8 commits per fsync, docs/BENCHMARKS.md).
    /// Tasks are not counted: nothing says how many will come back.
    fn take_batch(&self, core: &Committer) -> Vec<Msg> {
        let Ok(mut p) = self.pending.lock() else {
            return vec![];
        };
        let syncs = |p: &Pending| {
            p.msgs.iter().any(|m| match m {
                Msg::Commit { durability, .. } => *durability == Durability::Sync,
                Msg::Sync { .. } | Msg::Roll { .. } | Msg::Shutdown { .. } => true,
            })
        };
        let wait = (core.fsync_estimate / 2).min(MAX_GATHER);
        let threads_missing = |p: &Pending| p.msgs.len() - p.tasks < p.callers;
        if threads_missing(&p) && !wait.is_zero() && syncs(&p) {
            let until = Instant::now() + wait;
            p.gathering = true;
            while threads_missing(&p) && p.msgs.len() < core.max_batch {
                let now = Instant::now();
                if now >= until {
                    break;
                }
                p = match self.arrived.wait_timeout(p, until - now) {
                    Ok((p, _)) => p,
                    Err(_) => return vec![],
                };
            }
            p.gathering = false;
        }
        let n = p.msgs.len().min(core.max_batch);
        let batch: Vec<Msg> = p.msgs.drain(..n).collect();
        p.tasks -= batch.iter().filter(|m| m.for_task()).count();
        batch
    }

    /// Leads one batch (every message queued now, up to `max_batch`), then retires and wakes
    /// the waiting writers. Called only by the thread that set `leading`. Runs under the
    /// panic guard the committer thread had: a panic poisons the database, the batch's
    /// replies are dropped (their senders see the error), and later batches are refused.
    fn lead_one(&self) {
        let mut start = None;
        if let Ok(mut core) = self.core.lock() {
            self.shared.run_guarded("committer", || {
                // A `Buffered` deadline is honoured while commits keep coming too.
                if core.sync_due() {
                    let _ = core.sync();
                }
                let batch = self.take_batch(&core);
                if !batch.is_empty() && core.process(batch) {
                    self.set_timer(None, true);
                }
            });
            start = core.sync_deadline.map(|d| core.sync_start(d));
        }
        // Messages of tasks still queued have no thread of their own to lead them.
        let unled = match self.pending.lock() {
            Ok(mut p) => {
                p.leading = false;
                p.tasks > 0
            }
            Err(_) => false,
        };
        self.retired.notify_all();
        self.update_timer(|t| {
            t.start = start;
            t.lead |= unled;
        });
    }

    /// Stops the committer's own thread (after the shutdown message, whatever its outcome).
    pub(crate) fn stop_timer(&self) {
        self.set_timer(None, true);
    }

    fn set_timer(&self, start: Option<Instant>, stop: bool) {
        self.update_timer(|t| {
            t.start = start;
            t.stopped |= stop;
        });
    }

    /// Changes the committer's own thread's to-do list (not after it stopped) and wakes it
    /// when that changed anything.
    fn update_timer(&self, change: impl FnOnce(&mut Timer)) {
        if let Ok(mut t) = self.timer.lock() {
            if t.stopped {
                return;
            }
            let before = *t;
            change(&mut t);
            if *t != before {
                self.timer_wake.notify_all();
            }
        }
    }

    /// The committer's own thread. It syncs buffered commits when their deadline comes and
    /// no writer has done it first (by leading a batch itself, or leaving it to the leader of
    /// the moment, which checks the deadline before its batch and sets the timer again when
    /// it retires), and leads batches for tasks' messages when no writer thread leads;
    /// returns once the committer has shut down.
    pub(crate) fn run_timer(&self) {
        let Ok(mut t) = self.timer.lock() else { return };
        loop {
            if t.stopped {
                return;
            }
            let now = Instant::now();
            let due = t.start.is_some_and(|start| now >= start);
            if !(due || t.lead) {
                t = match t.start {
                    None => match self.timer_wake.wait(t) {
                        Ok(t) => t,
                        Err(_) => return,
                    },
                    Some(start) => match self.timer_wake.wait_timeout(t, start - now) {
                        Ok((t, _)) => t,
                        Err(_) => return,
                    },
                };
                continue;
            }
            if due {
                t.start = None;
            }
            t.lead = false;
            drop(t);
            // When a writer leads, it sets the timer again and looks for tasks' messages
            // when it retires.
            let lead = self
                .pending
                .lock()
                .map(|mut p| !std::mem::replace(&mut p.leading, true))
                .unwrap_or(false);
            if lead {
                self.lead_one();
            }
            t = match self.timer.lock() {
                Ok(t) => t,
                Err(_) => return,
            };
        }
    }
}

impl Committer {
    /// When the sync for `deadline` must start so that it completes by `deadline`:
    /// `max_delay` bounds the time until a commit is durable, not until its fsync starts.
    fn sync_start(&self, deadline: Instant) -> Instant {
        deadline
            .checked_sub(self.fsync_estimate)
            .unwrap_or(deadline)
    }

    fn sync_due(&self) -> bool {
        self.sync_deadline
            .is_some_and(|d| Instant::now() >= self.sync_start(d))
    }

    /// Syncs the log if anything written is not yet durable.
    fn sync(&mut self) -> Result<u64> {
        self.sync_deadline = None;
        if let Some(e) = self.shared.poisoned_error() {
            return Err(e);
        }
        if self.written_lsn > self.durable_lsn {
            let started = Instant::now();
            if let Err(e) = self.log.sync() {
                let cause = format!("syncing the commit log failed: {e}");
                self.shared.poison(cause.clone());
                return Err(Error::Poisoned { cause });
            }
            // A moving average of fsync times, so buffered deadlines start the sync early
            // enough to be durable by the deadline.
            let took = started.elapsed();
            self.fsync_estimate = (self.fsync_estimate * 3 + took) / 4;
            let c = &self.shared.counters;
            c.fsyncs.fetch_add(1, Ordering::Relaxed);
            c.synced_commits
                .fetch_add(self.written_lsn - self.durable_lsn, Ordering::Relaxed);
            self.durable_lsn = self.written_lsn;
            c.durable_lsn.store(self.durable_lsn, Ordering::Release);
            self.shared.feed.publish(self.durable_lsn);
        }
        Ok(self.durable_lsn)
    }

    /// Handles one batch; returns true when the committer must stop.
    fn process(&mut self, batch: Vec<Msg>) -> bool {
        let mut state: State = (**self.shared.view.load()).clone();
        let mut frames = Vec::new();
        // Acknowledgements held until the batch is written (and synced when asked); the
        // flag says whether the commit took an LSN, i.e. has a frame in this batch.
        let mut acks: Vec<(Reply<Committed>, Committed, bool)> = vec![];
        let mut refusals: Vec<(Reply<Committed>, Error)> = vec![];
        let mut sync_waiters = vec![];
        let mut roll_waiters = vec![];
        let mut shutdown = None;
        let mut need_sync = false;
        let mut max_delay: Option<Duration> = None;
        let first_lsn = self.next_lsn;
        // What this batch frames: stream files are written from it after the log write, and
        // the change feed's ring of recent commits keeps it.
        let mut written: Vec<(Arc<CommitRecord>, usize)> = vec![];
        for msg in batch {
            match msg {
                Msg::Commit {
                    ops,
                    prebuilt,
                    durability,
                    meta,
                    reply,
                } => {
                    if let Some(e) = self.shared.poisoned_error() {
                        refusals.push((reply, e));
                        continue;
                    }
                    let ts = match self.shared.clock.lock() {
                        Ok(mut clock) => clock.commit_ts(self.last_ts),
                        Err(_) => now_micros().max(self.last_ts + 1),
                    };
                    let prepared = state
                        .prepare_with(
                            &ops,
                            self.next_lsn,
                            ts,
                            self.max_doc_bytes,
                            meta,
                            &self.native_steps,
                        )
                        .and_then(|mut p| {
                            state.check_prebuilt(&prebuilt, ts)?;
                            if !prebuilt.is_empty() {
                                let mut all = prebuilt;
                                all.append(&mut p.record.ops);
                                p.record.ops = all;
                            }
                            Ok(p)
                        });
                    // The record holds what is logged; the operations it came from are not
                    // needed past here (a big transaction frees them before its frame and
                    // its new state are built).
                    drop(ops);
                    match prepared {
                        Ok(p) if p.record.ops.is_empty() && p.record.streams.is_empty() => {
                            // A check-only transaction writes nothing, but what it checked
                            // may be a buffered commit not yet durable: a `Sync` one is
                            // acknowledged only after a sync covering it.
                            if durability == Durability::Sync {
                                need_sync = true;
                            }
                            acks.push((
                                reply,
                                Committed {
                                    lsn: state.lsn,
                                    commit_ts: state.commit_ts,
                                    results: p.results,
                                },
                                false,
                            ));
                        }
                        Ok(p) => {
                            // Refused before anything is written: a frame over the limit
                            // would be acknowledged, then cut as damage on the next open.
                            let size = p.record.payload_len();
                            let ops = p.record.ops.len();
                            if size > self.max_txn_bytes {
                                let limit = self.max_txn_bytes;
                                let e = Error::TransactionTooLarge { size, ops, limit };
                                refusals.push((reply, e));
                                continue;
                            }
                            let frame_start = frames.len();
                            if let Err(e) = p.record.encode_into(&mut frames, self.durable_lsn) {
                                let (size, limit) = (e.payload_len, MAX_PAYLOAD_LEN);
                                let e = Error::TransactionTooLarge { size, ops, limit };
                                refusals.push((reply, e));
                                continue;
                            }
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
                                true,
                            ));
                            written.push((Arc::new(p.record), frames.len() - frame_start));
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
        // What went wrong, and whether this batch's frames may be on disk regardless.
        let mut failure: Option<(String, bool)> = None;
        // A failure that wrote nothing and leaves the database writable (see below).
        let mut retryable: Option<(String, std::io::Error)> = None;
        if !frames.is_empty() {
            let last_lsn = self.next_lsn - 1;
            if let Err(e) = self.log.roll_if_full(first_lsn) {
                if crate::log::is_out_of_descriptors(&e) {
                    // Out of file descriptors opening the next segment: nothing of this batch
                    // was written and the next append redoes the roll, so the batch fails and
                    // the database stays writable (an idle-connection flood must not take
                    // writes down for good).
                    self.next_lsn = first_lsn;
                    let context = format!(
                        "opening a new log segment in {} failed; nothing of this transaction was written, retry",
                        self.log.dir().display()
                    );
                    retryable = Some((context, e));
                } else {
                    // Nothing of this batch was written: its commits are certainly absent.
                    failure = Some((format!("rolling the commit log failed: {e}"), false));
                }
            } else if let Err(e) = self.log.append(&frames, last_lsn, self.last_ts) {
                failure = Some((format!("appending to the commit log failed: {e}"), true));
            } else {
                self.written_lsn = last_lsn;
                let c = &self.shared.counters;
                c.commits
                    .fetch_add(last_lsn + 1 - first_lsn, Ordering::Relaxed);
                c.batches.fetch_add(1, Ordering::Relaxed);
                c.log_bytes_written
                    .fetch_add(frames.len() as u64, Ordering::Relaxed);
                // Readers of the view about to be published read these entries from the
                // stream files. The log holds them already: a failure here leaves the
                // commits in the log (open writes the files again), so it is a failure
                // whose frames may be on disk.
                for (rec, _) in &written {
                    if let Err(e) = self.streams.write_record(rec) {
                        failure = Some((format!("writing stream files failed: {e}"), true));
                        break;
                    }
                }
                if failure.is_none() {
                    // Delivered only once the durable LSN passes them, as from the log.
                    self.shared.recent.remember(std::mem::take(&mut written));
                }
            }
            if let Some((cause, _)) = &failure {
                self.shared.poison(cause.clone());
            }
        }
        if let Some((context, source)) = retryable {
            let err = || {
                Error::io(
                    context.clone(),
                    std::io::Error::new(source.kind(), source.to_string()),
                )
            };
            for (reply, _, _) in acks {
                let _ = reply.send(Err(err()));
            }
            for reply in sync_waiters.into_iter().chain(roll_waiters) {
                let _ = reply.send(Err(err()));
            }
            for (reply, e) in refusals {
                let _ = reply.send(Err(e));
            }
            return match shutdown {
                Some(reply) => {
                    let _ = reply.send(Err(err()));
                    true
                }
                None => false,
            };
        }
        if failure.is_none() {
            if need_sync {
                if let Err(e) = self.sync() {
                    // The frames were written: a failed sync does not mean they are gone.
                    failure = Some((poison_cause(e), !frames.is_empty()));
                }
            } else if let Some(d) = max_delay {
                let deadline = Instant::now() + d;
                self.sync_deadline = Some(self.sync_deadline.map_or(deadline, |x| x.min(deadline)));
            }
        }
        // Sealing comes after the batch is durable: its failure poisons the database and
        // fails the roll, but the commits are on stable storage and are acknowledged.
        let mut roll_failure = None;
        if failure.is_none() && !roll_waiters.is_empty() {
            if let Err(e) = self.log.seal_active(self.next_lsn) {
                let cause = format!("sealing the active log segment failed: {e}");
                self.shared.poison(cause.clone());
                roll_failure = Some(cause);
            }
        }
        match &failure {
            None => {
                if !frames.is_empty() {
                    self.shared.view.store(Arc::new(state));
                }
                for (reply, committed, _) in acks {
                    let _ = reply.send(Ok(committed));
                }
                for reply in sync_waiters {
                    let _ = reply.send(Ok(self.durable_lsn));
                }
                for reply in roll_waiters {
                    let _ = reply.send(match &roll_failure {
                        None => Ok(self.durable_lsn),
                        Some(cause) => Err(Error::Poisoned {
                            cause: cause.clone(),
                        }),
                    });
                }
            }
            Some((cause, frames_may_be_on_disk)) => {
                for (reply, committed, wrote) in acks {
                    let _ = reply.send(Err(if wrote && *frames_may_be_on_disk {
                        Error::CommitOutcomeUnknown {
                            lsn: committed.lsn,
                            cause: cause.clone(),
                        }
                    } else {
                        Error::Poisoned {
                            cause: cause.clone(),
                        }
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
                let _ = reply.send(match (failure, roll_failure) {
                    (None, None) => Ok(()),
                    (Some((cause, _)), _) | (None, Some(cause)) => Err(Error::Poisoned { cause }),
                });
                true
            }
            None => false,
        }
    }
}

/// The cause text of a poisoning error.
fn poison_cause(e: Error) -> String {
    match e {
        Error::Poisoned { cause } => cause,
        other => other.to_string(),
    }
}

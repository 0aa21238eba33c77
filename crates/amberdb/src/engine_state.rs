//! State shared by the committer, the background threads and every `Db` handle: the
//! published read view, the poison cause, counters, the checkpoint signal and the commit
//! clock. Only the committer publishes a view; poisoning lives in `poison.rs`.

use std::sync::atomic::AtomicU64;
use std::sync::{Condvar, Mutex};

use arc_swap::ArcSwap;

use crate::clock::CommitClock;
use crate::state::State;

/// Counters exposed through `Db::stats`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub commits: AtomicU64,
    pub fsyncs: AtomicU64,
    pub synced_commits: AtomicU64,
    pub batches: AtomicU64,
    pub log_bytes_written: AtomicU64,
    pub durable_lsn: AtomicU64,
    /// Commits change-feed subscriptions took from the ring of recent commits.
    pub feed_from_memory: AtomicU64,
    /// Commits change-feed subscriptions read (and decoded) from the log files.
    pub feed_from_log: AtomicU64,
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
    /// Commit timestamps and the age of the log (monotonic, never frozen by a clock step).
    pub clock: Mutex<CommitClock>,
    /// The durable LSN, published by the committer after every sync (the change feed).
    pub feed: crate::feed::DurableWatch,
    /// The newest commits written, decoded (the change feed serves caught-up subscribers
    /// from here).
    pub recent: crate::feed::recent::RecentCommits,
    /// Where system events go (`Options::on_event`).
    pub events: Option<crate::feed::events::EventHook>,
}

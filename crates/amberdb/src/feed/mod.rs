//! The change feed: `Db::subscribe(from_lsn, filter)` delivers, in LSN order, every durable
//! commit after `from_lsn` that touches a matching document or stream.
//!
//! A subscription reads commits in LSN order up to the durable LSN that the committer
//! publishes after each sync ([`watch`]), and sleeps on that watch when it has caught up. It
//! takes each commit from the in-memory ring of the newest written commits ([`recent`]) when
//! the ring holds it, else from the log files ([`reader`]); both hold the same records, and
//! the one cursor (the next LSN) is the same for both, so there is no switch at which a
//! commit could be skipped or delivered twice. A buffered commit is delivered only once its
//! deferred sync has happened, and a slow consumer only reads older bytes of the log (the
//! committer never waits for it). Following live commits costs a subscriber no log read, so
//! many idle subscribers do not slow the committer down.

pub mod events;
pub(crate) mod reader;
pub(crate) mod recent;
pub(crate) mod watch;

mod filter;

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::db::Db;
use crate::engine_state::Shared;
use crate::error::{Error, Result};
pub use crate::log::record::{CommitReason, OpKind};
use crate::log::record::{CommitRecord, StreamOp};
use crate::recovery::LOG_DIR;

pub use filter::{glob_match, Filter, Touched};
pub(crate) use watch::DurableWatch;

/// Most matching commits a subscription reads ahead of its consumer.
const READ_AHEAD: usize = 256;

/// One document a commit touched, as the change feed reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedDoc {
    /// Collection.
    pub collection: Arc<str>,
    /// Key.
    pub key: Arc<str>,
    /// What the operation was (`Delete` for a delete, whatever produced the write).
    pub op: OpKind,
    /// True when the commit deleted the document.
    pub deleted: bool,
    /// The version written (0 for a delete).
    pub version: u64,
    /// Schema version of the value written (0 for a delete).
    pub schema_version: u32,
    /// When the written document expires, microseconds since the Unix epoch (`None`: never,
    /// and for a delete).
    pub expires_at: Option<u64>,
    /// SHA-256 of the value written (for a delete: `None`).
    pub sha256: Option<[u8; 32]>,
    /// The value written, canonical JSON, when the filter asked for values.
    pub value: Option<Arc<[u8]>>,
}

/// What a commit did to a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamChangeKind {
    /// Entries appended (the first append creates the stream).
    Append,
    /// Entries before `first_seq` removed (retention, or an explicit trim).
    Trim,
    /// The stream deleted as a whole.
    Delete,
    /// The stream's retention set (creating it, empty, when missing).
    Configure,
}

impl StreamChangeKind {
    /// `append`, `trim`, `delete` or `configure`.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamChangeKind::Append => "append",
            StreamChangeKind::Trim => "trim",
            StreamChangeKind::Delete => "delete",
            StreamChangeKind::Configure => "configure",
        }
    }
}

/// One change of one stream in a commit, as the change feed reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedStream {
    /// The stream.
    pub stream: Arc<str>,
    /// What happened.
    pub op: StreamChangeKind,
    /// Append: the sequence number of the first entry appended; trim: of the first entry
    /// kept; 0 otherwise.
    pub first_seq: u64,
    /// Append: how many entries (sequence numbers `first_seq..first_seq + count`); 0
    /// otherwise.
    pub count: u64,
    /// Append, when the filter asked for values: each entry, canonical JSON, in order.
    pub values: Option<Vec<Arc<[u8]>>>,
    /// Configure: most entries kept (`None`: no limit).
    pub max_entries: Option<u64>,
    /// Configure: oldest entry kept, in seconds of commit time (`None`: no limit).
    pub max_age_s: Option<u64>,
}

impl ChangedStream {
    fn of(op: &StreamOp, values: bool) -> Self {
        let mut c = ChangedStream {
            stream: op.stream().clone(),
            op: StreamChangeKind::Delete,
            first_seq: 0,
            count: 0,
            values: None,
            max_entries: None,
            max_age_s: None,
        };
        match op {
            StreamOp::Append {
                first_seq,
                values: v,
                ..
            } => {
                c.op = StreamChangeKind::Append;
                c.first_seq = *first_seq;
                c.count = v.len() as u64;
                c.values = values.then(|| v.clone());
            }
            StreamOp::Trim { first_seq, .. } => {
                c.op = StreamChangeKind::Trim;
                c.first_seq = *first_seq;
            }
            StreamOp::Delete { .. } => {}
            StreamOp::Configure {
                max_entries,
                max_age_s,
                ..
            } => {
                c.op = StreamChangeKind::Configure;
                c.max_entries = *max_entries;
                c.max_age_s = *max_age_s;
            }
        }
        c
    }
}

/// One durable commit, with the documents and stream changes of it that match the
/// subscription's filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The commit's LSN (the feed's cursor: resume after it with `subscribe(lsn, ..)`).
    pub lsn: u64,
    /// Commit time, microseconds since the Unix epoch.
    pub commit_ts: u64,
    /// Why the commit was made (a client write, a revert, an undo, a restore, the TTL
    /// reaper, a migration).
    pub reason: CommitReason,
    /// For a revert, undo or restore: the LSN it went back to (0 otherwise).
    pub target_lsn: u64,
    /// The matching documents, in transaction order.
    pub docs: Vec<ChangedDoc>,
    /// The matching stream changes, in transaction order (only when the filter names
    /// streams).
    pub streams: Vec<ChangedStream>,
}

/// A subscription to the change feed (see [`Db::subscribe`]). Not shared between threads;
/// move it to the thread that consumes it.
pub struct Subscription {
    shared: Arc<Shared>,
    reader: reader::LogReader,
    filter: Filter,
    /// Matching commits read but not yet returned.
    pending: VecDeque<Change>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("next_lsn", &self.reader.next_lsn())
            .field("pending", &self.pending.len())
            .field("filter", &self.filter)
            .finish()
    }
}

impl Db {
    /// Subscribes to the change feed: every durable commit after `from_lsn` (0: from the
    /// start of the retained log) that writes or deletes a document matching `filter`, or
    /// changes a stream it names, in
    /// LSN order, replayed from the retained log and then followed live, with no gap and no
    /// duplicate. A commit with `Buffered` durability is delivered only once it is synced.
    ///
    /// Fails with [`Error::HistoryLost`] when the log no longer holds every commit after
    /// `from_lsn` (older than the history window), and with `InvalidArgument` when
    /// `from_lsn` is ahead of the newest commit.
    pub fn subscribe(&self, from_lsn: u64, filter: Filter) -> Result<Subscription> {
        let shared = self.shared_state().clone();
        let newest = shared.view.load().lsn;
        if from_lsn > newest {
            return Err(Error::InvalidArgument(format!(
                "from_lsn {from_lsn} is ahead of the newest commit (LSN {newest})"
            )));
        }
        let reader = reader::LogReader::new(
            &self.path().join(LOG_DIR),
            self.options().encryption.clone(),
            from_lsn,
        )?;
        Ok(Subscription {
            shared,
            reader,
            filter,
            pending: VecDeque::new(),
        })
    }

    /// How many commits change-feed subscriptions of this handle's database took from memory
    /// (the ring of recent commits) and how many they read from the log files, since open:
    /// `(from_memory, from_log)`. Subscribers that keep up add only to the first.
    pub fn feed_read_counters(&self) -> (u64, u64) {
        let c = &self.shared_state().counters;
        (
            c.feed_from_memory.load(Ordering::Relaxed),
            c.feed_from_log.load(Ordering::Relaxed),
        )
    }

    /// The distinct collections and streams that the commits after `after_lsn` through
    /// `through_lsn` write, if those commits are all still in memory (the ring of recent
    /// commits); `None` when some are not (then assume any). Never does I/O. For bridges that
    /// wake, of many subscriptions, only those a new commit may concern (the server's SSE
    /// endpoint: [`Filter::may_concern`]).
    pub fn touched(&self, after_lsn: u64, through_lsn: u64) -> Option<Touched> {
        let mut out = Touched::default();
        let mut next = after_lsn.checked_add(1)?;
        while next <= through_lsn {
            let last = self.shared_state().recent.scan(next, through_lsn, |c| {
                for op in &c.ops {
                    if !out.collections.contains(&op.collection) {
                        out.collections.push(op.collection.clone());
                    }
                }
                for op in &c.streams {
                    if !out.streams.contains(op.stream()) {
                        out.streams.push(op.stream().clone());
                    }
                }
                true
            })?;
            next = last + 1;
        }
        Some(out)
    }

    /// The highest LSN on stable storage (what the change feed has delivered up to when it
    /// has caught up).
    pub fn durable_lsn(&self) -> u64 {
        self.shared_state().feed.durable()
    }

    /// Waits until a commit after `lsn` is durable, or `timeout` passes; returns the durable
    /// LSN then. `Error::Closed` once the database is closed. For bridges that wake many
    /// subscriptions from one thread (the server's SSE endpoint).
    pub fn wait_durable_past(&self, lsn: u64, timeout: Duration) -> Result<u64> {
        self.shared_state()
            .feed
            .wait_past(lsn, Some(Instant::now() + timeout))
    }
}

impl Subscription {
    /// Every commit up to this LSN has been delivered or skipped as not matching: a consumer
    /// that stores it as its cursor resumes without a gap. Advances over commits the filter
    /// skips, so a quiet consumer's cursor still moves.
    pub fn high_water_lsn(&self) -> u64 {
        match self.pending.front() {
            Some(c) => c.lsn - 1,
            None => self.reader.next_lsn() - 1,
        }
    }

    /// The next matching durable commit, if one is available now (never waits for one).
    pub fn try_next(&mut self) -> Result<Option<Change>> {
        if self.pending.is_empty() {
            self.fill()?;
        }
        Ok(self.pending.pop_front())
    }

    /// The next matching durable commit, waiting as long as it takes. `Error::Closed` when
    /// the database closes first.
    // Not `Iterator::next`: it blocks and fails (`Closed`, `HistoryLost`) instead of ending.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Change> {
        loop {
            if let Some(c) = self.wait_until(None)? {
                return Ok(c);
            }
        }
    }

    /// The next matching durable commit, waiting at most `timeout`; `None` on timeout.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Change>> {
        self.wait_until(Some(Instant::now() + timeout))
    }

    /// Up to `max` matching commits available now (waiting at most `wait` for the first).
    /// The high-water LSN after the call covers what was returned and everything skipped.
    pub fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Change>> {
        let mut out = Vec::new();
        if let Some(c) = self.next_timeout(wait)? {
            out.push(c);
        }
        while out.len() < max {
            match self.try_next()? {
                Some(c) => out.push(c),
                None => break,
            }
        }
        Ok(out)
    }

    /// Like `next_batch(max, Duration::ZERO)`, but only when that needs no log read: when
    /// every commit it would look at is in memory (the subscription has caught up to the
    /// newest commits). Never blocks on I/O, so an async task may call it; `Ok(None)` means
    /// the log must be read: call `next_batch` where blocking is fine. As with `next_batch`,
    /// `Error::Closed` when nothing is left and the database closed.
    pub fn next_batch_in_memory(&mut self, max: usize) -> Result<Option<Vec<Change>>> {
        if self.pending.is_empty() && !self.fill_from_recent() {
            return Ok(None);
        }
        let mut out = Vec::new();
        while out.len() < max {
            if self.pending.is_empty() && !self.fill_from_recent() {
                break;
            }
            match self.pending.pop_front() {
                Some(c) => out.push(c),
                None => break,
            }
        }
        if out.is_empty() && self.shared.feed.is_closed() {
            return Err(Error::Closed);
        }
        Ok(Some(out))
    }

    fn wait_until(&mut self, deadline: Option<Instant>) -> Result<Option<Change>> {
        loop {
            if let Some(c) = self.try_next()? {
                return Ok(Some(c));
            }
            let seen = self.reader.next_lsn() - 1;
            let durable = self.shared.feed.wait_past(seen, deadline)?;
            if durable <= seen {
                return Ok(None); // timed out
            }
        }
    }

    /// Reads durable commits until `READ_AHEAD` matching ones are pending or the durable LSN
    /// is reached: from the ring of recent commits when it holds them, else from the log,
    /// up to where the ring begins (the next fill takes the rest from memory). Never holds a
    /// lock the committer takes while reading the log.
    fn fill(&mut self) -> Result<()> {
        loop {
            if self.fill_from_recent() {
                return Ok(());
            }
            let next = self.reader.next_lsn();
            let durable = self.shared.feed.durable();
            let upto = match self.shared.recent.first_lsn() {
                Some(first) if first > next => durable.min(first - 1),
                _ => durable,
            };
            let (filter, pending) = (&self.filter, &mut self.pending);
            let mut read = 0u64;
            let r = self.reader.read(upto, |rec| {
                read += 1;
                if let Some(c) = to_change(&rec, filter) {
                    pending.push_back(c);
                }
                pending.len() < READ_AHEAD
            });
            let c = &self.shared.counters;
            c.feed_from_log.fetch_add(read, Ordering::Relaxed);
            r?;
            // Stopped where the ring begins with nothing matching yet: the rest is in memory
            // (or, evicted meanwhile, in the log again). Never "nothing now" while a durable
            // commit is left to look at.
            if !self.pending.is_empty() || self.reader.next_lsn() > durable {
                return Ok(());
            }
        }
    }

    /// [`Subscription::fill`] from the ring of recent commits only; false when the ring no
    /// longer (or not yet) holds the next commit to read, so the log must be read. True when
    /// there is nothing durable left to read.
    fn fill_from_recent(&mut self) -> bool {
        let durable = self.shared.feed.durable();
        loop {
            let from = self.reader.next_lsn();
            let (filter, pending) = (&self.filter, &mut self.pending);
            let scanned = self.shared.recent.scan(from, durable, |rec| {
                if let Some(c) = to_change(rec, filter) {
                    pending.push_back(c);
                }
                pending.len() < READ_AHEAD
            });
            let Some(last) = scanned else {
                return false;
            };
            let c = &self.shared.counters;
            c.feed_from_memory
                .fetch_add(last + 1 - from, Ordering::Relaxed);
            self.reader.skip_to(last + 1);
            if !self.pending.is_empty() || last >= durable {
                return true;
            }
        }
    }
}

/// The part of a commit that matches `filter`, or `None` when none of it does.
fn to_change(rec: &CommitRecord, filter: &Filter) -> Option<Change> {
    let docs: Vec<ChangedDoc> = rec
        .ops
        .iter()
        .filter(|op| filter.matches(&op.collection, &op.key))
        .map(|op| match &op.doc {
            Some(d) => ChangedDoc {
                collection: op.collection.clone(),
                key: op.key.clone(),
                op: op.op,
                deleted: false,
                version: d.version,
                schema_version: d.schema_version,
                expires_at: d.expires_at,
                sha256: Some(d.sha256),
                value: filter.values.then(|| d.value.clone()),
            },
            None => ChangedDoc {
                collection: op.collection.clone(),
                key: op.key.clone(),
                op: op.op,
                deleted: true,
                version: 0,
                schema_version: 0,
                expires_at: None,
                sha256: None,
                value: None,
            },
        })
        .collect();
    let streams: Vec<ChangedStream> = rec
        .streams
        .iter()
        .filter(|op| filter.matches_stream(op.stream()))
        .map(|op| ChangedStream::of(op, filter.values))
        .collect();
    (!docs.is_empty() || !streams.is_empty()).then_some(Change {
        lsn: rec.lsn,
        commit_ts: rec.commit_ts,
        reason: rec.reason,
        target_lsn: rec.target_lsn,
        docs,
        streams,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::{CommitMeta, Transaction};

    #[test]
    fn a_system_commit_is_delivered_with_its_reason_and_target() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        db.put("players", "a", serde_json::json!(1)).unwrap();
        let mut t = Transaction::new();
        t.put("players", "a", serde_json::json!(0));
        let meta = CommitMeta {
            reason: CommitReason::Revert,
            target_lsn: 1,
        };
        db.commit_with(&t, meta).unwrap();
        let mut sub = db.subscribe(1, Filter::all()).unwrap();
        let c = sub.try_next().unwrap().unwrap();
        assert_eq!(
            (c.lsn, c.reason, c.target_lsn),
            (2, CommitReason::Revert, 1)
        );
        db.close().unwrap();
    }
}

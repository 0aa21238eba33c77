//! Streams: named, append-only sequences of JSON entries with gap-free sequence numbers from 1
//! (issue 13).
//!
//! This module owns the in-memory side of a stream: its state in a [`crate::state::State`]
//! (sequence range, byte positions, retention, and a 16-byte index entry per retained entry:
//! its position in the stream's files and its commit time), applying logged stream ops to it
//! (live commits and replay use the same [`apply`]), evaluating a transaction's stream
//! operations against the latest state ([`StreamTxn`]: `expected_seq`, retention trims), and
//! the public read types. Values are never held in memory: they live in the log (the source of
//! truth for durability) and in derived, append-only stream files (`files.rs`, which owns every
//! byte under `DATA/streams/`). Nothing here does I/O.

mod api;
pub(crate) mod files;

pub use files::{decode_stream_file, DecodedEntry};

use std::collections::BTreeMap;
use std::sync::Arc;

use imbl::{OrdMap, Vector};
use serde::Serialize;

use crate::error::{Conflict, ConflictReason, Error, Result};
use crate::log::record::{CommitRecord, StreamOp};

/// Bytes a stream file frame adds to an entry's value: len u32, crc u32, seq u64, commit_ts u64.
pub(crate) const ENTRY_HEADER_LEN: u64 = 24;

/// Bytes one entry takes in a stream file.
pub(crate) fn frame_len(value_len: usize) -> u64 {
    ENTRY_HEADER_LEN + value_len as u64
}

/// How many entries of a stream are kept, counted from its newest; the rest are trimmed from
/// the head in logged commits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Retention {
    /// Most entries kept (`None`: no limit).
    pub max_entries: Option<u64>,
    /// Entries older than this many seconds of commit time are trimmed (`None`: no limit).
    pub max_age_s: Option<u64>,
}

impl Retention {
    /// Refuses limits of 0 (use `None`) and ages over [`crate::limits::MAX_STREAM_AGE_S`].
    pub fn validate(&self) -> Result<()> {
        if self.max_entries == Some(0) || self.max_age_s == Some(0) {
            return Err(Error::InvalidArgument(
                "stream retention limits must be positive (omit a limit for none)".into(),
            ));
        }
        if self
            .max_age_s
            .is_some_and(|a| a > crate::limits::MAX_STREAM_AGE_S)
        {
            return Err(Error::InvalidArgument(format!(
                "max_age_s may be at most {} seconds",
                crate::limits::MAX_STREAM_AGE_S
            )));
        }
        Ok(())
    }
}

/// Where one retained entry is: its position in the stream's files (see `files.rs`) and its
/// commit time. 16 bytes per entry is all a stream holds in memory per entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub pos: u64,
    pub ts: u64,
}

/// One stream in the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamState {
    /// LSN of the commit that created this stream: names its directory, so a stream deleted
    /// and created again never shares files with its predecessor.
    pub created_lsn: u64,
    /// First retained sequence number (`next_seq` when empty).
    pub first_seq: u64,
    /// Sequence number the next append gets (last sequence number + 1).
    pub next_seq: u64,
    /// Position of the first retained entry (`end_pos` when empty).
    pub first_pos: u64,
    /// Bytes the stream's files hold, trimmed ones included (the next entry's position).
    pub end_pos: u64,
    /// Retention in force.
    pub retention: Retention,
    /// One entry per retained sequence number, `first_seq` first. Derived from the stream
    /// files on open, never stored in checkpoints.
    pub index: Vector<IndexEntry>,
}

impl StreamState {
    fn new(created_lsn: u64) -> Self {
        StreamState {
            created_lsn,
            first_seq: 1,
            next_seq: 1,
            first_pos: 0,
            end_pos: 0,
            retention: Retention::default(),
            index: Vector::new(),
        }
    }

    /// Retained entries.
    pub(crate) fn len(&self) -> u64 {
        self.next_seq - self.first_seq
    }

    /// The last sequence number appended (0 when none ever was).
    pub(crate) fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// The index of the first retained entry with commit time at or after `ts`.
    pub(crate) fn first_at_or_after(&self, ts: u64) -> usize {
        match self.index.binary_search_by(|e| {
            if e.ts < ts {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Greater
            }
        }) {
            Ok(i) | Err(i) => i,
        }
    }

    fn info(&self, name: &str) -> StreamInfo {
        let n = self.len();
        StreamInfo {
            name: name.to_owned(),
            entries: n,
            first_seq: (n > 0).then_some(self.first_seq),
            last_seq: self.last_seq(),
            first_ts: self.index.front().map(|e| e.ts),
            last_ts: self.index.back().map(|e| e.ts),
            bytes: self.end_pos - self.first_pos,
            retention: self.retention,
        }
    }
}

/// Applies the stream ops of a commit (live commits and replay).
pub(crate) fn apply(streams: &mut OrdMap<Arc<str>, StreamState>, rec: &CommitRecord) {
    for op in &rec.streams {
        match op {
            StreamOp::Append {
                stream,
                first_seq,
                values,
            } => {
                let s = streams
                    .entry(stream.clone())
                    .or_insert_with(|| StreamState::new(rec.lsn));
                debug_assert_eq!(*first_seq, s.next_seq, "appends are gap-free");
                let empty = s.len() == 0;
                for v in values {
                    s.index.push_back(IndexEntry {
                        pos: s.end_pos,
                        ts: rec.commit_ts,
                    });
                    s.end_pos += frame_len(v.len());
                    s.next_seq += 1;
                }
                if empty {
                    s.first_pos = s.index.front().map_or(s.end_pos, |e| e.pos);
                }
            }
            StreamOp::Trim { stream, first_seq } => {
                if let Some(s) = streams.get_mut(stream) {
                    let to = (*first_seq).min(s.next_seq);
                    if to > s.first_seq {
                        let drop = usize::try_from(to - s.first_seq).unwrap_or(usize::MAX);
                        s.index = s.index.skip(drop.min(s.index.len()));
                        s.first_seq = to;
                        s.first_pos = s.index.front().map_or(s.end_pos, |e| e.pos);
                    }
                }
            }
            StreamOp::Delete { stream } => {
                streams.remove(stream);
            }
            StreamOp::Configure {
                stream,
                max_entries,
                max_age_s,
            } => {
                let s = streams
                    .entry(stream.clone())
                    .or_insert_with(|| StreamState::new(rec.lsn));
                s.retention = Retention {
                    max_entries: *max_entries,
                    max_age_s: *max_age_s,
                };
            }
        }
    }
}

/// A stream as listed by `Db::streams`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamInfo {
    /// The stream's name.
    pub name: String,
    /// Entries retained.
    pub entries: u64,
    /// First retained sequence number (`None` when empty).
    pub first_seq: Option<u64>,
    /// Last sequence number ever appended (0 when none); the next append gets this + 1.
    pub last_seq: u64,
    /// Commit time of the first retained entry, microseconds since the Unix epoch.
    pub first_ts: Option<u64>,
    /// Commit time of the last entry.
    pub last_ts: Option<u64>,
    /// Bytes the retained entries take in the stream's files (values plus 24 bytes each).
    pub bytes: u64,
    /// Retention in force.
    pub retention: Retention,
}

/// Every stream of a state, by name.
pub(crate) fn list(streams: &OrdMap<Arc<str>, StreamState>) -> Vec<StreamInfo> {
    streams.iter().map(|(n, s)| s.info(n)).collect()
}

/// One stream, if it exists.
pub(crate) fn info(streams: &OrdMap<Arc<str>, StreamState>, name: &str) -> Option<StreamInfo> {
    streams.get(name).map(|s| s.info(name))
}

/// One entry read from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// Sequence number (from 1, gap-free).
    pub seq: u64,
    /// Commit time of the append, microseconds since the Unix epoch.
    pub commit_ts: u64,
    /// Canonical JSON of the entry.
    pub value: Arc<[u8]>,
}

impl StreamEntry {
    /// The entry's value, parsed.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.value)
            .map_err(|e| Error::InvalidValue(format!("stream entry does not parse: {e}")))
    }
}

/// Where a stream read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFrom {
    /// At this sequence number (or the first retained one, if it was trimmed).
    Seq(u64),
    /// At the first entry committed at or after this time (microseconds since the epoch).
    Time(u64),
}

/// A page of a stream read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPage {
    /// Entries in sequence order.
    pub entries: Vec<StreamEntry>,
    /// Where the next page starts (`last entry + 1`, or the start when nothing was read).
    pub next_seq: u64,
    /// First retained sequence number at the time of the read (`None` when empty).
    pub first_seq: Option<u64>,
    /// Last sequence number appended at the time of the read.
    pub last_seq: u64,
}

/// What one append committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Appended {
    /// LSN of the commit.
    pub lsn: u64,
    /// Commit time, microseconds since the Unix epoch (every entry's time).
    pub commit_ts: u64,
    /// Sequence number of the first appended entry.
    pub first_seq: u64,
    /// Sequence number of the last appended entry (the stream's new `last_seq`).
    pub last_seq: u64,
}

/// A stream as a transaction being prepared sees it.
#[derive(Debug, Clone, Default)]
struct Pending {
    exists: bool,
    /// The state's next seq, plus this transaction's appends.
    next_seq: u64,
    values: Vec<Arc<[u8]>>,
    configure: Option<Retention>,
    trim_to: u64,
    retain: bool,
    delete: bool,
}

/// The stream operations of one transaction being prepared: evaluated against the latest
/// state in the committer, in transaction order, then turned into the stream ops to log.
#[derive(Debug, Default)]
pub(crate) struct StreamTxn {
    pending: BTreeMap<Arc<str>, Pending>,
    order: Vec<Arc<str>>,
}

impl StreamTxn {
    fn entry(
        &mut self,
        streams: &OrdMap<Arc<str>, StreamState>,
        stream: &Arc<str>,
    ) -> &mut Pending {
        if !self.pending.contains_key(stream) {
            self.order.push(stream.clone());
        }
        self.pending.entry(stream.clone()).or_insert_with(|| {
            let s = streams.get(stream);
            Pending {
                exists: s.is_some(),
                next_seq: s.map_or(1, |s| s.next_seq),
                trim_to: s.map_or(1, |s| s.first_seq),
                ..Pending::default()
            }
        })
    }

    /// Appends `values`; `expected_seq` must be the stream's last sequence number (0 for a
    /// stream that has none). Returns the new last sequence number.
    pub(crate) fn append(
        &mut self,
        streams: &OrdMap<Arc<str>, StreamState>,
        stream: &Arc<str>,
        values: &[Arc<[u8]>],
        expected_seq: Option<u64>,
        op_index: usize,
    ) -> std::result::Result<u64, Conflict> {
        let p = self.entry(streams, stream);
        let last = if p.delete { 0 } else { p.next_seq - 1 };
        if let Some(expected) = expected_seq {
            if expected != last {
                return Err(Conflict {
                    op_index,
                    collection: stream.to_string(),
                    key: String::new(),
                    expected,
                    actual: last,
                    reason: ConflictReason::StreamSeqMismatch,
                });
            }
        }
        p.values.extend(values.iter().cloned());
        p.next_seq += values.len() as u64;
        Ok(p.next_seq - 1)
    }

    /// Removes every entry before `first_seq`.
    pub(crate) fn trim(
        &mut self,
        streams: &OrdMap<Arc<str>, StreamState>,
        stream: &Arc<str>,
        first_seq: u64,
    ) {
        let p = self.entry(streams, stream);
        p.trim_to = p.trim_to.max(first_seq);
    }

    /// Applies the stream's retention at this commit's time (also done after every append).
    pub(crate) fn retain(&mut self, streams: &OrdMap<Arc<str>, StreamState>, stream: &Arc<str>) {
        self.entry(streams, stream).retain = true;
    }

    /// Sets the stream's retention (creating it empty when missing).
    pub(crate) fn configure(
        &mut self,
        streams: &OrdMap<Arc<str>, StreamState>,
        stream: &Arc<str>,
        retention: Retention,
    ) {
        self.entry(streams, stream).configure = Some(retention);
    }

    /// Deletes the stream as a whole; returns whether it existed.
    pub(crate) fn delete(
        &mut self,
        streams: &OrdMap<Arc<str>, StreamState>,
        stream: &Arc<str>,
    ) -> bool {
        let p = self.entry(streams, stream);
        p.delete = true;
        p.exists
    }

    /// The stream ops to log for a commit at `ts`: per stream its retention, its appends,
    /// then the trim its retention (or an explicit trim) asks for.
    pub(crate) fn finish(
        self,
        streams: &OrdMap<Arc<str>, StreamState>,
        ts: u64,
    ) -> Result<Vec<StreamOp>> {
        let mut ops = vec![];
        let mut pending = self.pending;
        for name in self.order {
            let Some(p) = pending.remove(&name) else {
                continue;
            };
            if p.values.len() > crate::limits::MAX_APPEND_ENTRIES {
                return Err(Error::InvalidArgument(format!(
                    "a transaction may append at most {} entries to one stream, {} were given",
                    crate::limits::MAX_APPEND_ENTRIES,
                    p.values.len()
                )));
            }
            if p.delete {
                if !p.values.is_empty() || p.configure.is_some() {
                    return Err(Error::InvalidArgument(format!(
                        "a transaction cannot both delete stream {name} and change it"
                    )));
                }
                if p.exists {
                    ops.push(StreamOp::Delete {
                        stream: name.clone(),
                    });
                }
                continue;
            }
            let state = streams.get(&name);
            if !p.exists && p.values.is_empty() && p.configure.is_none() {
                continue; // trimming or retaining a missing stream writes nothing
            }
            if let Some(r) = p.configure {
                ops.push(StreamOp::Configure {
                    stream: name.clone(),
                    max_entries: r.max_entries,
                    max_age_s: r.max_age_s,
                });
            }
            let retention = p
                .configure
                .or(state.map(|s| s.retention))
                .unwrap_or_default();
            let appended = !p.values.is_empty();
            let first_new = p.next_seq - p.values.len() as u64;
            if appended {
                ops.push(StreamOp::Append {
                    stream: name.clone(),
                    first_seq: first_new,
                    values: p.values,
                });
            }
            let current_first = state.map_or(1, |s| s.first_seq);
            let mut first = p.trim_to.max(current_first);
            if appended || p.retain || p.configure.is_some() {
                if let Some(max) = retention.max_entries {
                    first = first.max(p.next_seq.saturating_sub(max));
                }
                if let (Some(age), Some(s)) = (retention.max_age_s, state) {
                    let cutoff = ts.saturating_sub(age.saturating_mul(1_000_000));
                    // Entries appended by this commit are stamped `ts`, never older.
                    first = first.max(s.first_seq + s.first_at_or_after(cutoff) as u64);
                }
            }
            let first = first.min(p.next_seq);
            if first > current_first {
                ops.push(StreamOp::Trim {
                    stream: name.clone(),
                    first_seq: first,
                });
            }
        }
        Ok(ops)
    }
}

//! The public stream API of [`Db`]: appends, reads, listing, retention and deletion. Writes
//! go through the one committer path (`Db::commit_encoded`); reads take the published view
//! and read values from the stream files, never from memory.

use std::sync::Arc;

use crate::db::Db;
use crate::error::{Error, Result};
use crate::state::EncodedKind;
use crate::state::EncodedOp;
use crate::stream::{Appended, Retention, StreamFrom, StreamInfo, StreamPage};
use crate::txn::{CommitMeta, Committed};

impl Db {
    fn stream_commit(&self, ops: Vec<EncodedOp>) -> Result<Committed> {
        let durability = self.options().durability;
        self.commit_encoded(ops, durability, CommitMeta::default())
    }

    /// Appends `values` to `stream` in one atomic commit: they get the next sequence numbers
    /// (gap-free from 1) and the commit's time; the first append creates the stream. With
    /// `expected_seq`, only if the stream's last sequence number is that (0: none yet);
    /// otherwise [`Error::Conflict`] with reason `StreamSeqMismatch` naming both, and nothing
    /// is appended. The stream's retention is applied in the same commit.
    pub fn append(
        &self,
        stream: &str,
        values: &[serde_json::Value],
        expected_seq: Option<u64>,
    ) -> Result<Appended> {
        let encoded = crate::state::encode_append(stream, values)?;
        let n = encoded.len() as u64;
        let kind = EncodedKind::Append {
            values: encoded,
            expected_seq,
        };
        let c = self.stream_commit(vec![EncodedOp::stream(stream, kind)])?;
        let last_seq = c.results.first().map_or(0, |r| r.version);
        Ok(Appended {
            lsn: c.lsn,
            commit_ts: c.commit_ts,
            first_seq: last_seq + 1 - n,
            last_seq,
        })
    }

    /// Reads up to `limit` entries of `stream` (at most `limits::MAX_STREAM_READ_ENTRIES`, and
    /// at most `limits::MAX_STREAM_READ_BYTES` of values, but always one entry when any is
    /// there) from `from`, from the latest view. A missing stream reads as empty.
    pub fn read_stream(&self, stream: &str, from: StreamFrom, limit: usize) -> Result<StreamPage> {
        crate::document::validate_collection(stream)?;
        let view = self.view();
        let Some(s) = view.state.streams.get(stream) else {
            return Ok(StreamPage {
                entries: vec![],
                next_seq: match from {
                    StreamFrom::Seq(n) => n.max(1),
                    StreamFrom::Time(_) => 1,
                },
                first_seq: None,
                last_seq: 0,
            });
        };
        self.read_page(&view.state, stream, s, from, limit, s.index.len())
    }

    /// Like [`Db::read_stream`], as the stream was right after commit `at` (inclusive; the
    /// history window bounds it as for documents: [`Error::HistoryLost`] before it). Returns
    /// the LSN the point resolved to and the page: the entries appended up to that point that
    /// are still retained (entries never change, so these are exactly the entries of then;
    /// entries retention trimmed since are not history, and `first_seq` is the first still
    /// kept). `last_seq` is the last of them, or the entry before the first kept when none is
    /// left. `None` when no stream of that name from that point is kept: none existed then, or
    /// it was deleted (or deleted and created again) since.
    pub fn read_stream_at(
        &self,
        stream: &str,
        from: StreamFrom,
        limit: usize,
        at: crate::history::At,
    ) -> Result<Option<(u64, StreamPage)>> {
        crate::document::validate_collection(stream)?;
        let view = self.view();
        let (lsn, ts) = self.point_on(&view, at)?;
        let Some(s) = view
            .state
            .streams
            .get(stream)
            .filter(|s| s.created_lsn <= lsn)
        else {
            return Ok(None);
        };
        // Commit times strictly increase with the LSN, so the entries of commits up to the
        // point are those with a time at or before its commit's.
        let visible = s.first_at_or_after(ts.saturating_add(1));
        let page = self.read_page(&view.state, stream, s, from, limit, visible)?;
        Ok(Some((lsn, page)))
    }

    /// A page of the first `visible` retained entries of `s` (the stream `stream` of `state`).
    fn read_page(
        &self,
        state: &crate::state::State,
        stream: &str,
        s: &crate::stream::StreamState,
        from: StreamFrom,
        limit: usize,
        visible: usize,
    ) -> Result<StreamPage> {
        let visible = visible.min(s.index.len());
        let start = match from {
            StreamFrom::Seq(n) => {
                usize::try_from(n.saturating_sub(s.first_seq)).unwrap_or(usize::MAX)
            }
            StreamFrom::Time(t) => s.first_at_or_after(t),
        }
        .min(visible);
        let limit = limit.min(crate::limits::MAX_STREAM_READ_ENTRIES);
        let mut end = start;
        let mut bytes = 0u64;
        while end < visible && end - start < limit {
            let pos = s.index.get(end).map_or(s.end_pos, |e| e.pos);
            let next = s.index.get(end + 1).map_or(s.end_pos, |e| e.pos);
            let size = next - pos;
            if end > start && bytes + size > crate::limits::MAX_STREAM_READ_BYTES as u64 {
                break;
            }
            bytes += size;
            end += 1;
        }
        let entries = self.stream_files().read(state, stream, start, end)?;
        Ok(StreamPage {
            next_seq: s.first_seq + end as u64,
            entries,
            first_seq: (visible > 0).then_some(s.first_seq),
            last_seq: s.first_seq + visible as u64 - 1,
        })
    }

    /// Every stream with its counts and sequence range, by name.
    pub fn streams(&self) -> Vec<StreamInfo> {
        crate::stream::list(&self.view().state.streams)
    }

    /// One stream's counts and sequence range, if it exists.
    pub fn stream(&self, name: &str) -> Option<StreamInfo> {
        crate::stream::info(&self.view().state.streams, name)
    }

    /// Sets the retention of `stream` (creating it, empty, when missing) and trims it to the
    /// new retention in the same commit.
    pub fn set_stream_retention(&self, stream: &str, retention: Retention) -> Result<StreamInfo> {
        crate::document::validate_collection(stream)?;
        retention.validate()?;
        let kind = EncodedKind::StreamConfigure(retention);
        self.stream_commit(vec![EncodedOp::stream(stream, kind)])?;
        self.stream(stream)
            .ok_or_else(|| Error::InvalidArgument(format!("stream {stream} was deleted meanwhile")))
    }

    /// Removes every entry of `stream` before `first_seq` in a logged commit (never the
    /// entries after it; a sequence number past the end empties the stream, and the next
    /// append still continues after the last one).
    pub fn trim_stream(&self, stream: &str, first_seq: u64) -> Result<Committed> {
        crate::document::validate_collection(stream)?;
        let kind = EncodedKind::StreamTrim(first_seq);
        self.stream_commit(vec![EncodedOp::stream(stream, kind)])
    }

    /// Applies every stream's age retention now (appends apply it too): one logged commit
    /// that trims each stream with a `max_age_s` whose oldest entries are past it at the
    /// commit's time (nothing is logged when none is). Returns the streams trimmed.
    pub fn apply_stream_retention(&self) -> Result<u64> {
        let before = self.view();
        let aged: Vec<Arc<str>> = before
            .state
            .streams
            .iter()
            .filter(|(_, s)| s.retention.max_age_s.is_some() && s.len() > 0)
            .map(|(n, _)| n.clone())
            .collect();
        if aged.is_empty() {
            return Ok(0);
        }
        let ops = aged
            .iter()
            .map(|n| EncodedOp::stream(n, EncodedKind::StreamRetain))
            .collect();
        self.stream_commit(ops)?;
        let after = self.view();
        Ok(aged
            .iter()
            .filter(|n| {
                let first =
                    |v: &crate::state::ReadView| v.state.streams.get(*n).map(|s| s.first_seq);
                first(&before) != first(&after)
            })
            .count() as u64)
    }

    /// Deletes `stream` as a whole in a logged commit; returns whether it existed. A later
    /// append creates a new stream starting at sequence number 1. Its files are removed once
    /// no kept checkpoint needs them.
    pub fn delete_stream(&self, stream: &str) -> Result<bool> {
        crate::document::validate_collection(stream)?;
        let c = self.stream_commit(vec![EncodedOp::stream(stream, EncodedKind::StreamDelete)])?;
        Ok(c.results.first().is_some_and(|r| r.written))
    }
}

//! The commit record: one transaction's effects, framed with length, CRC32C, LSN and time.
//!
//! The log is physical redo: a record holds each written document's resulting value and
//! metadata, never the operation that produced it, so replay is a plain apply and needs no
//! patch library, clock or validation. Byte layout: `docs/FORMAT.md`, "Commit frame".

use std::sync::Arc;

use crate::codec::{put_str16, PutLe, Reader};
use crate::log::segment::LOG_FORMAT_VERSION;

/// Bytes before the payload (log format 2): len u32, crc u32, lsn u64, commit_ts u64,
/// durable_lsn u64.
pub const FRAME_HEADER_LEN: usize = 32;
/// Bytes before the payload in log format 1 (no durable_lsn).
pub const FRAME_HEADER_LEN_V1: usize = 24;
/// Largest payload a frame may declare; anything larger is treated as damage, not allocated,
/// and no writer produces one.
pub use crate::limits::MAX_PAYLOAD_LEN;

const OP_WRITE: u8 = 1;
const OP_DELETE: u8 = 2;

/// Why a commit was made (log format 4; older commits decode as [`CommitReason::Write`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitReason {
    /// An ordinary transaction of a client.
    #[default]
    Write,
    /// A revert of documents to their state at `target_lsn`.
    Revert,
    /// The undo of the commit `target_lsn`.
    Undo,
    /// A restore of the live database to `target_lsn` (or a backup's LSN).
    Restore,
    /// The TTL reaper deleting expired documents.
    Ttl,
    /// A batch schema migration.
    Migration,
}

impl CommitReason {
    /// Every reason, in code order.
    pub const ALL: [CommitReason; 6] = [
        CommitReason::Write,
        CommitReason::Revert,
        CommitReason::Undo,
        CommitReason::Restore,
        CommitReason::Ttl,
        CommitReason::Migration,
    ];

    /// The byte stored in the frame.
    pub fn code(self) -> u8 {
        match self {
            CommitReason::Write => 0,
            CommitReason::Revert => 1,
            CommitReason::Undo => 2,
            CommitReason::Restore => 3,
            CommitReason::Ttl => 4,
            CommitReason::Migration => 5,
        }
    }

    /// The reason stored as `code`, if it is one.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    /// The lower-case name used in the API (`write`, `revert`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            CommitReason::Write => "write",
            CommitReason::Revert => "revert",
            CommitReason::Undo => "undo",
            CommitReason::Restore => "restore",
            CommitReason::Ttl => "ttl",
            CommitReason::Migration => "migration",
        }
    }
}

/// Which kind of operation produced a logged document change (log format 4; older frames
/// decode as [`OpKind::Put`] for writes and [`OpKind::Delete`] for deletes). When a
/// transaction writes one document several times, the last write's kind is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// `create`: the document did not exist.
    Create,
    /// `put`: create or overwrite.
    Put,
    /// `replace`: overwrite an existing document.
    Replace,
    /// `patch`: a merge patch or JSON Patch of the existing value.
    Patch,
    /// `delete`.
    Delete,
}

impl OpKind {
    /// Every kind, in code order.
    pub const ALL: [OpKind; 5] = [
        OpKind::Create,
        OpKind::Put,
        OpKind::Replace,
        OpKind::Patch,
        OpKind::Delete,
    ];

    /// The byte stored in the frame.
    pub fn code(self) -> u8 {
        match self {
            OpKind::Create => 1,
            OpKind::Put => 2,
            OpKind::Replace => 3,
            OpKind::Patch => 4,
            OpKind::Delete => 5,
        }
    }

    /// The kind stored as `code`, if it is one.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }

    /// The lower-case name used in the API (`create`, `put`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Create => "create",
            OpKind::Put => "put",
            OpKind::Replace => "replace",
            OpKind::Patch => "patch",
            OpKind::Delete => "delete",
        }
    }
}

/// The stored state of a document written by a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenDoc {
    /// New version.
    pub version: u64,
    /// Schema version of the value.
    pub schema_version: u32,
    /// Creation time (kept from the previous version on updates).
    pub created_at: u64,
    /// When the document expires, microseconds since the Unix epoch (log format 4).
    pub expires_at: Option<u64>,
    /// SHA-256 of `value`.
    pub sha256: [u8; 32],
    /// Canonical JSON bytes.
    pub value: Arc<[u8]>,
}

/// One document touched by a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedOp {
    /// Collection.
    pub collection: Arc<str>,
    /// Key.
    pub key: Arc<str>,
    /// LSN of the previous write (or delete) of this document, 0 if none is known.
    pub prev_lsn: u64,
    /// The operation that produced the change (`Delete` exactly when `doc` is `None`).
    pub op: OpKind,
    /// The new document, or `None` for a delete.
    pub doc: Option<WrittenDoc>,
}

impl LoggedOp {
    /// The document this op wrote, as the state holds it after `rec` (the commit carrying
    /// the op): its LSN and update time are the commit's. `None` for a delete.
    pub(crate) fn document(&self, rec: &CommitRecord) -> Option<crate::document::Document> {
        let d = self.doc.as_ref()?;
        Some(crate::document::Document {
            key: self.key.clone(),
            value: d.value.clone(),
            meta: crate::document::DocMeta {
                version: d.version,
                schema_version: d.schema_version,
                created_at: d.created_at,
                updated_at: rec.commit_ts,
                lsn: rec.lsn,
                expires_at: d.expires_at,
                sha256: d.sha256,
            },
        })
    }
}

/// One change to a stream (log format 5): stream ops follow the document ops of a commit.
/// Byte layout: `docs/FORMAT.md`, "Stream ops".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamOp {
    /// Entries appended with sequence numbers `first_seq`, `first_seq + 1`, ... and the
    /// commit's time; the first append to a missing stream creates it (seq 1).
    Append {
        /// The stream.
        stream: Arc<str>,
        /// Sequence number of the first value.
        first_seq: u64,
        /// Canonical JSON of each entry, in order.
        values: Vec<Arc<[u8]>>,
    },
    /// Every entry before `first_seq` is removed (retention, or an explicit trim).
    Trim {
        /// The stream.
        stream: Arc<str>,
        /// The first sequence number kept.
        first_seq: u64,
    },
    /// The stream is deleted as a whole; a later append starts a new stream at seq 1.
    Delete {
        /// The stream.
        stream: Arc<str>,
    },
    /// The stream's retention is set (creating the stream, empty, when missing).
    Configure {
        /// The stream.
        stream: Arc<str>,
        /// Most entries kept (`None`: no limit).
        max_entries: Option<u64>,
        /// Oldest entry kept, in seconds of commit time (`None`: no limit).
        max_age_s: Option<u64>,
    },
}

const STREAM_APPEND: u8 = 1;
const STREAM_TRIM: u8 = 2;
const STREAM_DELETE: u8 = 3;
const STREAM_CONFIGURE: u8 = 4;

impl StreamOp {
    /// The stream the op changes.
    pub fn stream(&self) -> &Arc<str> {
        match self {
            StreamOp::Append { stream, .. }
            | StreamOp::Trim { stream, .. }
            | StreamOp::Delete { stream }
            | StreamOp::Configure { stream, .. } => stream,
        }
    }

    fn encoded_len(&self) -> usize {
        1 + 2
            + self.stream().len()
            + match self {
                StreamOp::Append { values, .. } => {
                    8 + 4 + values.iter().map(|v| 4 + v.len()).sum::<usize>()
                }
                StreamOp::Trim { .. } => 8,
                StreamOp::Delete { .. } => 0,
                StreamOp::Configure { .. } => 16,
            }
    }

    fn encode_into(&self, buf: &mut Vec<u8>) {
        let code = match self {
            StreamOp::Append { .. } => STREAM_APPEND,
            StreamOp::Trim { .. } => STREAM_TRIM,
            StreamOp::Delete { .. } => STREAM_DELETE,
            StreamOp::Configure { .. } => STREAM_CONFIGURE,
        };
        buf.put_u8(code);
        put_str16(buf, self.stream());
        match self {
            StreamOp::Append {
                first_seq, values, ..
            } => {
                buf.put_u64(*first_seq);
                // Bounded by the payload limit, checked before encoding.
                buf.put_u32(u32::try_from(values.len()).unwrap_or(u32::MAX));
                for v in values {
                    buf.put_u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
                    buf.extend_from_slice(v);
                }
            }
            StreamOp::Trim { first_seq, .. } => buf.put_u64(*first_seq),
            StreamOp::Delete { .. } => {}
            StreamOp::Configure {
                max_entries,
                max_age_s,
                ..
            } => {
                buf.put_u64(max_entries.unwrap_or(0));
                buf.put_u64(max_age_s.unwrap_or(0));
            }
        }
    }

    fn decode(r: &mut Reader<'_>, payload_len: usize) -> Result<StreamOp, FrameError> {
        let malformed = FrameError::Malformed;
        let code = r.u8().ok_or(malformed("stream op kind"))?;
        let stream: Arc<str> = r.str16().ok_or(malformed("stream name"))?.into();
        Ok(match code {
            STREAM_APPEND => {
                let first_seq = r.u64().ok_or(malformed("stream first seq"))?;
                let count = r.u32().ok_or(malformed("stream entry count"))? as usize;
                // Each entry takes at least 4 bytes; refuse counts the payload cannot hold.
                if count > payload_len / 4 || first_seq == 0 {
                    return Err(malformed("stream entry count exceeds payload"));
                }
                let mut values = Vec::with_capacity(count);
                for _ in 0..count {
                    let len = r.u32().ok_or(malformed("stream entry length"))? as usize;
                    values.push(r.bytes(len).ok_or(malformed("stream entry"))?.into());
                }
                StreamOp::Append {
                    stream,
                    first_seq,
                    values,
                }
            }
            STREAM_TRIM => StreamOp::Trim {
                stream,
                first_seq: r.u64().ok_or(malformed("stream trim seq"))?,
            },
            STREAM_DELETE => StreamOp::Delete { stream },
            STREAM_CONFIGURE => {
                let max_entries = r.u64().ok_or(malformed("stream max entries"))?;
                let max_age_s = r.u64().ok_or(malformed("stream max age"))?;
                StreamOp::Configure {
                    stream,
                    max_entries: Some(max_entries).filter(|&n| n != 0),
                    max_age_s: Some(max_age_s).filter(|&n| n != 0),
                }
            }
            _ => return Err(malformed("unknown stream op kind")),
        })
    }
}

/// A decoded commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRecord {
    /// Commit sequence number.
    pub lsn: u64,
    /// Commit time, microseconds since the Unix epoch.
    pub commit_ts: u64,
    /// Why the commit was made (log format 4).
    pub reason: CommitReason,
    /// The LSN a revert, undo or restore refers to, 0 for none (log format 4).
    pub target_lsn: u64,
    /// Documents written, in transaction order.
    pub ops: Vec<LoggedOp>,
    /// Stream changes (log format 5; empty in older frames).
    pub streams: Vec<StreamOp>,
}

/// Why bytes did not decode as a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The buffer ends before the frame does (a torn tail when nothing valid follows).
    Incomplete,
    /// The declared length is impossible.
    BadLength,
    /// The CRC32C does not match the bytes.
    BadCrc,
    /// The CRC matched but the payload does not parse (a bug or a format mismatch).
    Malformed(&'static str),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Incomplete => f.write_str("commit frame is incomplete"),
            FrameError::BadLength => f.write_str("commit frame declares an impossible length"),
            FrameError::BadCrc => f.write_str("commit frame fails its CRC32C"),
            FrameError::Malformed(what) => write!(f, "commit payload is malformed: {what}"),
        }
    }
}

/// A decoded frame: the commit, the frame's length, and (log format 2 on) the LSN that was
/// durable when the frame was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The commit.
    pub record: CommitRecord,
    /// Bytes of the frame, header included.
    pub len: usize,
    /// Every LSN up to this one was durable (fdatasynced) when this frame was written; `None`
    /// in log format 1, which does not record it.
    pub durable_lsn: Option<u64>,
}

/// A commit record too large for one frame; nothing was encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameTooLarge {
    /// The payload length the frame would need.
    pub payload_len: usize,
}

impl std::fmt::Display for FrameTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "commit record of {} bytes exceeds the frame limit of {MAX_PAYLOAD_LEN} bytes",
            self.payload_len
        )
    }
}

impl CommitRecord {
    /// Length of this commit's frame payload (the frame without its header).
    pub fn payload_len(&self) -> usize {
        self.encoded_len() - FRAME_HEADER_LEN
    }

    /// Appends this commit as one frame (current log format) to `buf`, or refuses (leaving
    /// `buf` untouched) when its payload would exceed [`MAX_PAYLOAD_LEN`], which the decoder
    /// would call damage. Every length field then fits its width: a payload under the limit
    /// bounds them all. `durable_lsn` is the LSN the writer knows to be durable at this moment
    /// (recovery uses it to tell a write that was never synced from damage to synced bytes).
    pub fn encode_into(&self, buf: &mut Vec<u8>, durable_lsn: u64) -> Result<(), FrameTooLarge> {
        let payload_len = self.payload_len();
        let too_large = FrameTooLarge { payload_len };
        if payload_len > MAX_PAYLOAD_LEN {
            return Err(too_large);
        }
        let width = |n: usize| u32::try_from(n).map_err(|_| too_large);
        // One allocation for the whole frame: a doubling growth of a big commit's buffer
        // would hold up to twice the frame while it copies.
        buf.reserve(FRAME_HEADER_LEN + payload_len);
        let (payload_len, op_count) = (width(payload_len)?, width(self.ops.len())?);
        let start = buf.len();
        buf.put_u32(payload_len);
        buf.put_u32(0); // crc, patched below
        buf.put_u64(self.lsn);
        buf.put_u64(self.commit_ts);
        buf.put_u64(durable_lsn);
        buf.put_u8(self.reason.code());
        buf.put_u64(self.target_lsn);
        buf.put_u32(op_count);
        for op in &self.ops {
            buf.put_u8(if op.doc.is_some() {
                OP_WRITE
            } else {
                OP_DELETE
            });
            buf.put_u8(op.op.code());
            put_str16(buf, &op.collection);
            put_str16(buf, &op.key);
            buf.put_u64(op.prev_lsn);
            if let Some(doc) = &op.doc {
                buf.put_u64(doc.version);
                buf.put_u32(doc.schema_version);
                buf.put_u64(doc.created_at);
                buf.put_u64(doc.expires_at.unwrap_or(0));
                buf.extend_from_slice(&doc.sha256);
                // At most the payload length, which fits.
                buf.put_u32(u32::try_from(doc.value.len()).unwrap_or(payload_len));
                buf.extend_from_slice(&doc.value);
            }
        }
        buf.put_u32(width(self.streams.len())?);
        for op in &self.streams {
            op.encode_into(buf);
        }
        debug_assert_eq!(buf.len() - start, FRAME_HEADER_LEN + payload_len as usize);
        let crc = crc32c::crc32c(buf.get(start + 8..).unwrap_or_default());
        if let Some(h) = buf.get_mut(start + 4..start + 8) {
            h.copy_from_slice(&crc.to_le_bytes());
        }
        Ok(())
    }

    /// Total encoded size of this commit's frame.
    pub fn encoded_len(&self) -> usize {
        self.encoded_len_in(LOG_FORMAT_VERSION)
    }

    /// Size this commit's frame has in log format `format_version` (1 to 5): what a frame
    /// decoded from a segment of that format occupies.
    pub fn encoded_len_in(&self, format_version: u32) -> usize {
        let v4 = format_version >= 4;
        let streams = if format_version >= 5 {
            4 + self
                .streams
                .iter()
                .map(StreamOp::encoded_len)
                .sum::<usize>()
        } else {
            0
        };
        let header = if format_version < 2 {
            FRAME_HEADER_LEN_V1
        } else {
            FRAME_HEADER_LEN
        };
        let expiry = if v4 { 8 } else { 0 };
        header
            + if v4 { 1 + 8 } else { 0 }
            + 4
            + self
                .ops
                .iter()
                .map(|op| {
                    2 + 2
                        + op.collection.len()
                        + 2
                        + op.key.len()
                        + 8
                        + op.doc
                            .as_ref()
                            .map_or(0, |d| 8 + 4 + 8 + expiry + 32 + 4 + d.value.len())
                })
                .sum::<usize>()
            + streams
    }
}

/// Decodes one frame of the current log format at the start of `buf`; returns the commit and
/// the frame's length.
pub fn decode_frame(buf: &[u8]) -> Result<(CommitRecord, usize), FrameError> {
    decode_frame_in(buf, LOG_FORMAT_VERSION).map(|f| (f.record, f.len))
}

/// Decodes one frame of log format `format_version` (1 to 5) at the start of `buf`.
pub fn decode_frame_in(buf: &[u8], format_version: u32) -> Result<Frame, FrameError> {
    let header_len = if format_version < 2 {
        FRAME_HEADER_LEN_V1
    } else {
        FRAME_HEADER_LEN
    };
    let mut r = Reader::new(buf);
    let (Some(len), Some(crc)) = (r.u32(), r.u32()) else {
        return Err(FrameError::Incomplete);
    };
    let len = len as usize;
    if !(4..=MAX_PAYLOAD_LEN).contains(&len) {
        return Err(FrameError::BadLength);
    }
    let total = header_len + len;
    let Some(covered) = buf.get(8..total) else {
        return Err(FrameError::Incomplete);
    };
    if crc32c::crc32c(covered) != crc {
        return Err(FrameError::BadCrc);
    }
    let malformed = FrameError::Malformed;
    let lsn = r.u64().ok_or(malformed("lsn"))?;
    let commit_ts = r.u64().ok_or(malformed("timestamp"))?;
    let durable_lsn = if format_version < 2 {
        None
    } else {
        Some(r.u64().ok_or(malformed("durable lsn"))?)
    };
    // Log format 4 added the commit's reason and target, each op's kind and each written
    // document's expiry; older frames are ordinary writes without expiry.
    let v4 = format_version >= 4;
    let (reason, target_lsn) = if v4 {
        let code = r.u8().ok_or(malformed("reason"))?;
        let reason = CommitReason::from_code(code).ok_or(malformed("unknown commit reason"))?;
        (reason, r.u64().ok_or(malformed("target lsn"))?)
    } else {
        (CommitReason::Write, 0)
    };
    let count = r.u32().ok_or(malformed("op count"))? as usize;
    // Each op takes at least 16 bytes; refuse counts the payload cannot hold before allocating.
    if count > len / 16 {
        return Err(malformed("op count exceeds payload"));
    }
    let mut ops = Vec::with_capacity(count);
    for _ in 0..count {
        let kind = r.u8().ok_or(malformed("op kind"))?;
        let op_code = r.u8().ok_or(malformed("op flags"))?;
        let collection: Arc<str> = r.str16().ok_or(malformed("collection"))?.into();
        let key: Arc<str> = r.str16().ok_or(malformed("key"))?.into();
        let prev_lsn = r.u64().ok_or(malformed("prev lsn"))?;
        let doc = match kind {
            OP_WRITE => {
                let version = r.u64().ok_or(malformed("version"))?;
                let schema_version = r.u32().ok_or(malformed("schema version"))?;
                let created_at = r.u64().ok_or(malformed("created_at"))?;
                let expires_at = if v4 {
                    Some(r.u64().ok_or(malformed("expires_at"))?).filter(|&t| t != 0)
                } else {
                    None
                };
                let sha256 = r.array::<32>().ok_or(malformed("sha256"))?;
                let vlen = r.u32().ok_or(malformed("value length"))? as usize;
                let value = r.bytes(vlen).ok_or(malformed("value"))?.into();
                Some(WrittenDoc {
                    version,
                    schema_version,
                    created_at,
                    expires_at,
                    sha256,
                    value,
                })
            }
            OP_DELETE => None,
            _ => return Err(malformed("unknown op kind")),
        };
        let op = if !v4 {
            if doc.is_some() {
                OpKind::Put
            } else {
                OpKind::Delete
            }
        } else {
            match OpKind::from_code(op_code) {
                Some(OpKind::Delete) if doc.is_none() => OpKind::Delete,
                Some(k) if k != OpKind::Delete && doc.is_some() => k,
                _ => return Err(malformed("op kind does not match the op")),
            }
        };
        ops.push(LoggedOp {
            collection,
            key,
            prev_lsn,
            op,
            doc,
        });
    }
    // Log format 5 added stream ops after the document ops.
    let mut streams = vec![];
    if format_version >= 5 {
        let count = r.u32().ok_or(malformed("stream op count"))? as usize;
        // Each stream op takes at least 3 bytes.
        if count > len / 3 {
            return Err(malformed("stream op count exceeds payload"));
        }
        streams.reserve(count);
        for _ in 0..count {
            streams.push(StreamOp::decode(&mut r, len)?);
        }
    }
    if r.position() != total {
        return Err(malformed("payload length does not match its contents"));
    }
    Ok(Frame {
        record: CommitRecord {
            lsn,
            commit_ts,
            reason,
            target_lsn,
            ops,
            streams,
        },
        len: total,
        durable_lsn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CommitRecord {
        CommitRecord {
            lsn: 42,
            commit_ts: 1_700_000_000_000_000,
            reason: CommitReason::Revert,
            target_lsn: 17,
            ops: vec![
                LoggedOp {
                    collection: "players".into(),
                    key: "alice".into(),
                    prev_lsn: 7,
                    op: OpKind::Patch,
                    doc: Some(WrittenDoc {
                        version: 3,
                        schema_version: 1,
                        created_at: 5,
                        expires_at: Some(1_700_000_000_500_000),
                        sha256: crate::codec::sha256(b"{\"hp\":1}"),
                        value: Arc::from(&b"{\"hp\":1}"[..]),
                    }),
                },
                LoggedOp {
                    collection: "invites".into(),
                    key: "x".into(),
                    prev_lsn: 9,
                    op: OpKind::Delete,
                    doc: None,
                },
            ],
            streams: vec![
                StreamOp::Configure {
                    stream: "chat".into(),
                    max_entries: Some(100),
                    max_age_s: None,
                },
                StreamOp::Append {
                    stream: "chat".into(),
                    first_seq: 7,
                    values: vec![Arc::from(&b"\"hi\""[..]), Arc::from(&b"{}"[..])],
                },
                StreamOp::Trim {
                    stream: "chat".into(),
                    first_seq: 3,
                },
                StreamOp::Delete {
                    stream: "old".into(),
                },
            ],
        }
    }

    #[test]
    fn frame_round_trips_and_reports_its_length() {
        let rec = sample();
        let mut buf = vec![];
        rec.encode_into(&mut buf, 40).expect("encodes");
        assert_eq!(buf.len(), rec.encoded_len());
        let (back, len) = decode_frame(&buf).expect("decodes");
        assert_eq!(back, rec);
        assert_eq!(len, buf.len());
    }

    /// Log format 4: an op kind that contradicts the op (a delete called a write, or an
    /// unknown code) and an unknown commit reason are refused, not guessed.
    #[test]
    fn format_4_refuses_unknown_reasons_and_contradictory_op_kinds() {
        let encode = |rec: &CommitRecord| {
            let mut buf = vec![];
            rec.encode_into(&mut buf, 40).expect("encodes");
            // Re-stamp the CRC after an edit, so only the payload check can refuse it.
            buf
        };
        let restamp = |buf: &mut Vec<u8>| {
            let crc = crc32c::crc32c(&buf[8..]);
            buf[4..8].copy_from_slice(&crc.to_le_bytes());
        };
        let rec = sample();
        let mut buf = encode(&rec);
        buf[FRAME_HEADER_LEN] = 99; // the reason byte
        restamp(&mut buf);
        assert_eq!(
            decode_frame(&buf).unwrap_err(),
            FrameError::Malformed("unknown commit reason")
        );
        let mut wrong = rec.clone();
        wrong.ops[1].op = OpKind::Put; // a delete logged as a put
        let buf = encode(&wrong);
        assert_eq!(
            decode_frame(&buf).unwrap_err(),
            FrameError::Malformed("op kind does not match the op")
        );
        let mut wrong = rec;
        wrong.ops[0].op = OpKind::Delete; // a write logged as a delete
        let buf = encode(&wrong);
        assert_eq!(
            decode_frame(&buf).unwrap_err(),
            FrameError::Malformed("op kind does not match the op")
        );
    }

    #[test]
    fn every_truncation_is_incomplete_and_every_bit_flip_is_detected() {
        let mut buf = vec![];
        sample().encode_into(&mut buf, 40).expect("encodes");
        for cut in 0..buf.len() {
            assert!(decode_frame(&buf[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..buf.len() {
            for bit in 0..8 {
                let mut b = buf.clone();
                b[i] ^= 1 << bit;
                assert!(decode_frame(&b).is_err(), "flip byte {i} bit {bit}");
            }
        }
    }

    /// Issue 8 item 2: no writer produces a frame the decoder would refuse. Seventeen ops
    /// share one 64 MiB value (cheap: an `Arc`), so the record is over 1 GiB.
    #[test]
    fn a_record_over_the_frame_limit_is_refused_before_encoding() {
        let value: Arc<[u8]> = vec![b'7'; 64 << 20].into();
        let op = LoggedOp {
            collection: "c".into(),
            key: "k".into(),
            prev_lsn: 0,
            op: OpKind::Put,
            doc: Some(WrittenDoc {
                version: 1,
                schema_version: 1,
                created_at: 1,
                expires_at: None,
                sha256: [0; 32],
                value,
            }),
        };
        let mut rec = CommitRecord {
            lsn: 1,
            commit_ts: 1,
            reason: CommitReason::Write,
            target_lsn: 0,
            ops: vec![op; 15],
            streams: vec![],
        };
        assert!(rec.payload_len() <= MAX_PAYLOAD_LEN);
        rec.ops.push(rec.ops[0].clone());
        assert!(rec.payload_len() > MAX_PAYLOAD_LEN);
        let mut buf = vec![1, 2, 3];
        let err = rec.encode_into(&mut buf, 0).expect_err("refused");
        assert_eq!(err.payload_len, rec.payload_len());
        assert_eq!(buf, [1, 2, 3], "nothing was encoded");
    }
}

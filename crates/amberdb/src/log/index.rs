//! The sparse LSN → offset index of log segments, so a point read of one commit reads at most
//! [`STRIDE`] frames of one segment instead of scanning the log.
//!
//! Every segment's index holds the offset and commit time of every frame whose LSN is a
//! multiple of [`STRIDE`] past the segment's first LSN (so the first frame is always there).
//! The active segment's index lives in memory ([`ActiveIndex`], kept by the writer as it
//! appends); a sealed segment's is written beside it as `<first lsn>.idx` when it is sealed
//! and rebuilt by one walk of the segment when missing or bad. An index is derived data and
//! never trusted over the segment: a reader decodes (CRC and all) the frame it points at and
//! checks its LSN. Byte layout of `.idx`: `docs/FORMAT.md`, "Segment index".

use std::path::PathBuf;

use crate::codec::{PutLe, Reader};
use crate::log::record::{FRAME_HEADER_LEN, FRAME_HEADER_LEN_V1, MAX_PAYLOAD_LEN};

/// One frame in every `STRIDE` is indexed.
pub(crate) const STRIDE: u64 = STRIDE_U32 as u64;
/// [`STRIDE`] as stored in `.idx`.
const STRIDE_U32: u32 = 64;
/// First bytes of an `.idx` file.
pub(crate) const IDX_MAGIC: [u8; 8] = *b"AMBRLIDX";
/// Version of the `.idx` layout.
pub(crate) const IDX_VERSION: u32 = 1;
/// Bytes of the fixed part of an `.idx` file before its entries.
const IDX_HEADER_LEN: usize = 8 + 4 + 4 + 8 + 8 + 4;
/// Bytes of one entry.
const IDX_ENTRY_LEN: usize = 24;

/// One indexed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IdxEntry {
    /// Its LSN.
    pub lsn: u64,
    /// Offset of the frame in the segment file.
    pub offset: u64,
    /// Its commit time (microseconds).
    pub commit_ts: u64,
}

/// Bytes before a frame's payload in log format `format_version`.
pub(crate) fn frame_header_len(format_version: u32) -> usize {
    if format_version < 2 {
        FRAME_HEADER_LEN_V1
    } else {
        FRAME_HEADER_LEN
    }
}

/// What a frame header says without checking the payload: (total frame length, lsn, ts).
/// `None` when the bytes are too short or the length impossible.
pub(crate) fn peek_frame(head: &[u8], format_version: u32) -> Option<(usize, u64, u64)> {
    let mut r = Reader::new(head);
    let len = r.u32()? as usize;
    let _crc = r.u32()?;
    let lsn = r.u64()?;
    let ts = r.u64()?;
    if !(4..=MAX_PAYLOAD_LEN).contains(&len) {
        return None;
    }
    Some((frame_header_len(format_version) + len, lsn, ts))
}

/// Adds to `out` the index entries of the frames in `bytes` (which start at file offset
/// `base`), walking frame headers only; stops at the first header that does not follow (a
/// torn tail, or damage a reader will find when it decodes). Returns the LSN of the last
/// frame walked, or `None` when none was.
pub(crate) fn index_frames(
    bytes: &[u8],
    base: u64,
    first_lsn: u64,
    format_version: u32,
    out: &mut Vec<IdxEntry>,
) -> Option<u64> {
    let mut pos = 0usize;
    let mut last = None;
    while let Some((len, lsn, ts)) = bytes.get(pos..).and_then(|b| peek_frame(b, format_version)) {
        if pos + len > bytes.len() || lsn < first_lsn {
            break;
        }
        if (lsn - first_lsn).is_multiple_of(STRIDE) {
            out.push(IdxEntry {
                lsn,
                offset: base + pos as u64,
                commit_ts: ts,
            });
        }
        last = Some(lsn);
        pos += len;
    }
    last
}

/// The index of the segment the writer appends to, shared with readers. Readers read the
/// active segment only up to `len` (bytes written) and `last_lsn`.
#[derive(Debug, Clone)]
pub(crate) struct ActiveIndex {
    /// The segment file.
    pub path: PathBuf,
    /// Its first LSN.
    pub first_lsn: u64,
    /// Its log format version.
    pub format_version: u32,
    /// LSN of its last written frame (`first_lsn - 1` when none).
    pub last_lsn: u64,
    /// Bytes written to it.
    pub len: u64,
    /// Its sparse index.
    pub entries: Vec<IdxEntry>,
}

/// Encodes the `.idx` file of a sealed segment of `length` bytes starting at `first_lsn`.
pub(crate) fn encode_idx(first_lsn: u64, length: u64, entries: &[IdxEntry]) -> Vec<u8> {
    let mut b = Vec::with_capacity(IDX_HEADER_LEN + entries.len() * IDX_ENTRY_LEN + 4);
    b.extend_from_slice(&IDX_MAGIC);
    b.put_u32(IDX_VERSION);
    b.put_u32(STRIDE_U32);
    b.put_u64(first_lsn);
    b.put_u64(length);
    b.put_u32(u32::try_from(entries.len()).unwrap_or(u32::MAX));
    for e in entries {
        b.put_u64(e.lsn);
        b.put_u64(e.offset);
        b.put_u64(e.commit_ts);
    }
    let crc = crc32c::crc32c(&b);
    b.put_u32(crc);
    b
}

/// Decodes an `.idx` file and checks it against the segment it claims to index (first LSN,
/// length, last LSN): entries in LSN order, one every [`STRIDE`] from the first LSN, offsets
/// increasing inside the segment. `None` when anything is off (the caller rebuilds it).
pub(crate) fn decode_idx(
    buf: &[u8],
    first_lsn: u64,
    last_lsn: u64,
    length: u64,
) -> Option<Vec<IdxEntry>> {
    let body_len = buf.len().checked_sub(4)?;
    let (body, crc) = (buf.get(..body_len)?, buf.get(body_len..)?);
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return None;
    }
    let mut r = Reader::new(body);
    if r.array::<8>()? != IDX_MAGIC || r.u32()? != IDX_VERSION || u64::from(r.u32()?) != STRIDE {
        return None;
    }
    if r.u64()? != first_lsn || r.u64()? != length {
        return None;
    }
    let count = r.u32()? as usize;
    if r.remaining() != count.checked_mul(IDX_ENTRY_LEN)? {
        return None;
    }
    let expected = (last_lsn.checked_sub(first_lsn)? / STRIDE) + 1;
    if count as u64 != expected {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count as u64 {
        let e = IdxEntry {
            lsn: r.u64()?,
            offset: r.u64()?,
            commit_ts: r.u64()?,
        };
        let prev_ok = out
            .last()
            .is_none_or(|p: &IdxEntry| e.offset > p.offset && e.commit_ts >= p.commit_ts);
        if e.lsn != first_lsn + i * STRIDE || e.offset >= length || !prev_ok {
            return None;
        }
        out.push(e);
    }
    Some(out)
}

/// Writes an `.idx` file: temp file and rename, without fsync and outside the engine's I/O
/// layer and its fault injection (so an injected fault never fires on a derived file and is
/// never mistaken for a lost commit), but with the engine's file mode (0600, or 0640 with
/// group access). The index is derived data whose loss costs a rebuild, never a commit, so
/// a failure here is logged and otherwise ignored.
pub(crate) fn write_idx_best_effort(path: &std::path::Path, bytes: &[u8]) {
    use std::io::Write;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("idx");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(crate::io::file_mode());
    }
    let result = options
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        tracing::warn!(path = %path.display(), error = %e, "could not write segment index");
    }
}

/// File name of the index of the segment starting at `first_lsn`.
pub(crate) fn idx_file_name(first_lsn: u64) -> String {
    format!("{first_lsn:020}.idx")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idx_round_trips_and_refuses_any_flipped_byte() {
        let entries: Vec<IdxEntry> = (0..3)
            .map(|i| IdxEntry {
                lsn: 10 + i * STRIDE,
                offset: 56 + i * 1000,
                commit_ts: 5 + i,
            })
            .collect();
        let buf = encode_idx(10, 5000, &entries);
        assert_eq!(
            decode_idx(&buf, 10, 10 + 2 * STRIDE + 5, 5000),
            Some(entries.clone())
        );
        // Another segment's length or LSN range: refused.
        assert_eq!(decode_idx(&buf, 10, 10 + 3 * STRIDE, 5000), None);
        assert_eq!(decode_idx(&buf, 10, 10 + 2 * STRIDE, 5001), None);
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            assert_eq!(
                decode_idx(&bad, 10, 10 + 2 * STRIDE, 5000),
                None,
                "byte {i}"
            );
        }
        assert_eq!(decode_idx(&buf[..buf.len() - 1], 10, 10, 5000), None);
    }
}

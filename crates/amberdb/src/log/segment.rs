//! Segment files: their header, their names, their seals, and scanning their frames.
//!
//! A segment is `<first lsn, 20 digits>.log`: a 32-byte header followed by commit frames. When
//! the writer moves on to a new segment, the old one gets a `<first lsn>.seal` file with the
//! SHA-256 of its bytes. Byte layout: `docs/FORMAT.md`.

use std::path::{Path, PathBuf};

use crate::codec::{PutLe, Reader};
use crate::identity::{DatabaseId, FileIds, TimelineId};
use crate::log::record::{CommitRecord, FrameError, FRAME_HEADER_LEN_V1};
pub use crate::log::sealed::FrameDecoder;
use crate::log::sealed::UNAUTHENTIC_PAYLOAD;

/// First bytes of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"AMBERLOG";
/// First bytes of every seal.
pub const SEAL_MAGIC: [u8; 8] = *b"AMBRSEAL";
/// Current log format version. Readers accept every version up to this one. Version 2 added
/// `durable_lsn` to every commit frame; version 3 added the database and timeline ids to the
/// segment header; version 4 added each commit's reason and target LSN, each op's kind and
/// each written document's expiry to the frame payload, and (issue 12) a random per-file salt
/// to the segment header (72 bytes) and a non-zero key id: the frames' payloads are then
/// sealed (`log::sealed`); version 5 (issue 13) adds stream ops (append, trim, delete,
/// configure) after the document ops of each payload. Versions 1 to 4 stay readable.
pub const LOG_FORMAT_VERSION: u32 = 5;
/// Size of the segment header of log formats 1 and 2.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// Size of the segment header of log format 3 (with database and timeline ids).
pub const SEGMENT_HEADER_LEN_V3: usize = 56;
/// Size of the segment header of log format 4 (with the per-file salt).
pub const SEGMENT_HEADER_LEN_V4: usize = 72;
/// Size of a seal file.
pub const SEAL_LEN: usize = 88;
/// Format version seals and the log head record are written with: their layout did not
/// change in log formats 3 and 4. Readers accept 1 and 2 only: no writer ever stamped a seal
/// or head with a later version, and a record claiming one would not re-encode to its bytes.
pub const SEAL_FORMAT_VERSION: u32 = 2;

/// The decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Format version the segment was written with.
    pub format_version: u32,
    /// Encryption key id, 0 when unencrypted.
    pub key_id: u32,
    /// LSN of the first commit in the segment.
    pub first_lsn: u64,
    /// The database and timeline the segment belongs to (log format 3; `None` before).
    pub ids: Option<FileIds>,
    /// Random bytes drawn when the file was created (log format 4; zeros before): part of
    /// the file key of an encrypted segment, so no two segment files share one.
    pub salt: [u8; 16],
}

impl SegmentHeader {
    /// Bytes of the header (where the first frame starts).
    pub fn encoded_len(&self) -> usize {
        if self.format_version >= 4 {
            SEGMENT_HEADER_LEN_V4
        } else if self.format_version >= 3 {
            SEGMENT_HEADER_LEN_V3
        } else {
            SEGMENT_HEADER_LEN
        }
    }

    /// Encodes the header (the format 3 layout when `format_version` is 3).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.encoded_len());
        b.extend_from_slice(&SEGMENT_MAGIC);
        b.put_u32(self.format_version);
        b.put_u32(self.key_id);
        b.put_u64(self.first_lsn);
        if self.format_version >= 3 {
            let ids = self.ids.unwrap_or(FileIds {
                database_id: DatabaseId([0; 16]),
                timeline: TimelineId(0),
            });
            b.extend_from_slice(&ids.database_id.0);
            b.put_u64(ids.timeline.0);
        }
        if self.format_version >= 4 {
            b.extend_from_slice(&self.salt);
        }
        let crc = crc32c::crc32c(&b);
        b.put_u32(crc);
        b.put_u32(0);
        b
    }

    /// Decodes and checks a header.
    pub fn decode(buf: &[u8]) -> Result<Self, String> {
        // All of the header, reserved bytes included: frames start right after them, and a
        // scan of a shorter file would report frames (and the writer would append) at the
        // wrong offset.
        if buf.len() < SEGMENT_HEADER_LEN {
            return Err("file is shorter than a segment header".into());
        }
        let mut r = Reader::new(buf);
        let magic = r
            .array::<8>()
            .ok_or("file is shorter than a segment header")?;
        if magic != SEGMENT_MAGIC {
            return Err("not an AmberDB log segment (bad magic)".into());
        }
        let format_version = r.u32().ok_or("short header")?;
        let key_id = r.u32().ok_or("short header")?;
        let first_lsn = r.u64().ok_or("short header")?;
        let header_len = match format_version {
            4.. => SEGMENT_HEADER_LEN_V4,
            3 => SEGMENT_HEADER_LEN_V3,
            _ => SEGMENT_HEADER_LEN,
        };
        if buf.len() < header_len {
            return Err("file is shorter than a segment header".into());
        }
        let crc_end = header_len - 8;
        let ids = if format_version >= 3 {
            let database_id = DatabaseId(r.array::<16>().ok_or("short header")?);
            let timeline = TimelineId(r.u64().ok_or("short header")?);
            Some(FileIds {
                database_id,
                timeline,
            })
        } else {
            None
        };
        let salt = if format_version >= 4 {
            r.array::<16>().ok_or("short header")?
        } else {
            [0; 16]
        };
        let crc = r.u32().ok_or("short header")?;
        // Reserved bytes sit outside the CRC; requiring zeros makes a flip there visible too.
        if r.u32() != Some(0) {
            return Err("segment header's reserved bytes are not zero".into());
        }
        if crc32c::crc32c(buf.get(..crc_end).unwrap_or_default()) != crc {
            return Err("segment header fails its CRC32C".into());
        }
        if format_version == 0 || format_version > LOG_FORMAT_VERSION {
            return Err(format!(
                "segment format version {format_version} is not supported (this build reads up to {LOG_FORMAT_VERSION})"
            ));
        }
        if key_id != 0 && format_version < 4 {
            return Err(format!(
                "segment of log format {format_version} names key id {key_id}; encryption \
                 exists from log format 4 on"
            ));
        }
        if first_lsn == 0 {
            return Err("segment header says first LSN 0, but LSNs start at 1".into());
        }
        if ids.is_some_and(|i| i.timeline.0 == 0) {
            return Err("segment header says timeline 0, which is never assigned".into());
        }
        Ok(SegmentHeader {
            format_version,
            key_id,
            first_lsn,
            ids,
            salt,
        })
    }
}

/// Reads and decodes only the header of the segment at `path` (`None` when unreadable or
/// not a valid header).
pub(crate) fn read_header(path: &Path) -> Option<SegmentHeader> {
    use std::io::Read;
    let mut head = Vec::with_capacity(SEGMENT_HEADER_LEN_V4);
    crate::io::open_read(path, &crate::io::Faults::none())
        .ok()?
        .take(SEGMENT_HEADER_LEN_V4 as u64)
        .read_to_end(&mut head)
        .ok()?;
    SegmentHeader::decode(&head).ok()
}

/// A seal: proof of a sealed segment's exact bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seal {
    /// First LSN in the segment.
    pub first_lsn: u64,
    /// Last LSN in the segment (first_lsn - 1 when empty).
    pub last_lsn: u64,
    /// Length of the segment file in bytes.
    pub length: u64,
    /// Commit time of the last commit (0 when empty), for time-based retention.
    pub last_commit_ts: u64,
    /// SHA-256 of the segment's bytes.
    pub sha256: [u8; 32],
}

impl Seal {
    /// Encodes the seal.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(SEAL_LEN);
        b.extend_from_slice(&SEAL_MAGIC);
        b.put_u32(SEAL_FORMAT_VERSION);
        b.put_u32(0);
        b.put_u64(self.first_lsn);
        b.put_u64(self.last_lsn);
        b.put_u64(self.length);
        b.put_u64(self.last_commit_ts);
        b.extend_from_slice(&self.sha256);
        let crc = crc32c::crc32c(&b);
        b.put_u32(crc);
        b.put_u32(0);
        b
    }

    /// Decodes and checks a seal.
    pub fn decode(buf: &[u8]) -> Result<Self, String> {
        let mut r = Reader::new(buf);
        if r.array::<8>() != Some(SEAL_MAGIC) {
            return Err("not a seal (bad magic)".into());
        }
        let version = r.u32().ok_or("short seal")?;
        let _reserved = r.u32().ok_or("short seal")?;
        let first_lsn = r.u64().ok_or("short seal")?;
        let last_lsn = r.u64().ok_or("short seal")?;
        let length = r.u64().ok_or("short seal")?;
        let last_commit_ts = r.u64().ok_or("short seal")?;
        let sha256 = r.array::<32>().ok_or("short seal")?;
        let crc = r.u32().ok_or("short seal")?;
        if r.u32() != Some(0) {
            return Err("seal is truncated or its reserved bytes are not zero".into());
        }
        if crc32c::crc32c(buf.get(..80).unwrap_or_default()) != crc {
            return Err("seal fails its CRC32C".into());
        }
        if version == 0 || version > SEAL_FORMAT_VERSION {
            return Err(format!("seal format version {version} is not supported"));
        }
        Ok(Seal {
            first_lsn,
            last_lsn,
            length,
            last_commit_ts,
            sha256,
        })
    }
}

/// First bytes of the log head record.
pub const LOG_HEAD_MAGIC: [u8; 8] = *b"AMBRHEAD";
/// File name of the log head record in `DATA/log/`.
pub const LOG_HEAD_FILE: &str = "HEAD";
/// Size of the log head record.
pub const LOG_HEAD_LEN: usize = 32;

/// The log head record (`DATA/log/HEAD`): the first LSN of the newest segment, written
/// (atomically) each time a segment is created, so that open and verify notice a newest
/// segment that was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogHead {
    /// First LSN of the newest segment.
    pub newest_first_lsn: u64,
}

impl LogHead {
    /// Encodes the record.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(LOG_HEAD_LEN);
        b.extend_from_slice(&LOG_HEAD_MAGIC);
        b.put_u32(SEAL_FORMAT_VERSION);
        b.put_u32(0);
        b.put_u64(self.newest_first_lsn);
        let crc = crc32c::crc32c(&b);
        b.put_u32(crc);
        b.put_u32(0);
        b
    }

    /// Decodes and checks the record.
    pub fn decode(buf: &[u8]) -> Result<Self, String> {
        let mut r = Reader::new(buf);
        if buf.len() != LOG_HEAD_LEN || r.array::<8>() != Some(LOG_HEAD_MAGIC) {
            return Err("not a log head record (bad magic or length)".into());
        }
        let version = r.u32().ok_or("short log head")?;
        let reserved = r.u32().ok_or("short log head")?;
        let newest_first_lsn = r.u64().ok_or("short log head")?;
        let crc = r.u32().ok_or("short log head")?;
        if reserved != 0 || r.u32() != Some(0) {
            return Err("log head's reserved bytes are not zero".into());
        }
        if crc32c::crc32c(buf.get(..24).unwrap_or_default()) != crc {
            return Err("log head fails its CRC32C".into());
        }
        if version == 0 || version > SEAL_FORMAT_VERSION {
            return Err(format!(
                "log head format version {version} is not supported"
            ));
        }
        Ok(LogHead { newest_first_lsn })
    }
}

/// Writes the log head record (temp file, fsync, rename, directory fsync).
pub(crate) fn write_log_head(
    log_dir: &Path,
    newest_first_lsn: u64,
    faults: &crate::io::Faults,
) -> std::io::Result<()> {
    crate::io::write_atomic(
        &log_dir.join(LOG_HEAD_FILE),
        &LogHead { newest_first_lsn }.encode(),
        faults,
    )
}

/// What is missing from a log: the newest segment the head record names, or commits the
/// newest checkpoint proves were in the newest segment. `segments` are the listed segments;
/// `newest` the newest one's (first LSN, last valid LSN, valid length); `checkpoint_lsn` the
/// LSN of the newest sound checkpoint (0 if none). Returns (file, offset, what is wrong).
pub fn missing_log(
    log_dir: &Path,
    segments: &[(u64, PathBuf)],
    newest: Option<(u64, u64, u64)>,
    checkpoint_lsn: u64,
) -> Option<(PathBuf, u64, String)> {
    let head_path = log_dir.join(LOG_HEAD_FILE);
    let head = match crate::io::read(&head_path, &crate::io::Faults::none()) {
        Ok(bytes) => Some(bytes),
        // Absent: a log older than the head record, or a new database.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        // Unreadable (EIO) is damage, not "absent": skipping it would hide a deleted segment.
        Err(e) => {
            return Some((
                head_path,
                0,
                format!("the log head record is unreadable: {e}"),
            ))
        }
    };
    if let Some(bytes) = head {
        match LogHead::decode(&bytes) {
            Err(e) => return Some((head_path, 0, e)),
            Ok(h) if !segments.iter().any(|(f, _)| *f >= h.newest_first_lsn) => {
                let first = h.newest_first_lsn;
                return Some((
                    log_dir.join(segment_file_name(first)),
                    0,
                    format!(
                        "segment is missing: log/{LOG_HEAD_FILE} records that the newest segment \
                         starts at LSN {first}, so commits from LSN {first} on may be lost"
                    ),
                ));
            }
            Ok(_) => {}
        }
    }
    if let (Some((first, last, len)), Some((_, path))) = (newest, segments.last()) {
        if first <= checkpoint_lsn && last < checkpoint_lsn {
            return Some((
                path.clone(),
                len,
                format!(
                    "the newest segment ends at LSN {last}, but the checkpoint at LSN \
                     {checkpoint_lsn} proves the log reached it: the segment was truncated \
                     or a newer one is missing, so commits after LSN {checkpoint_lsn} may be lost"
                ),
            ));
        }
    }
    None
}

/// File name of the segment starting at `first_lsn`.
pub fn segment_file_name(first_lsn: u64) -> String {
    format!("{first_lsn:020}.log")
}

/// File name of the seal of the segment starting at `first_lsn`.
pub fn seal_file_name(first_lsn: u64) -> String {
    format!("{first_lsn:020}.seal")
}

/// Segments in `dir`, sorted by first LSN.
pub fn list_segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    crate::io::list_by_lsn(dir, ".log")
}

/// How a scan of a segment's frames ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEnd {
    /// Every byte belongs to a valid frame.
    Clean,
    /// Bytes after the last valid frame are not a valid frame and nothing after them proves
    /// they were ever synced: an interrupted write. Either nothing valid follows them, or
    /// (log format 2) every valid frame after them records a durable LSN below the first
    /// missing LSN, so the whole tail was written after the last completed sync.
    TornTail {
        /// Offset of the first invalid byte (where the file should be cut).
        offset: u64,
        /// Bytes after it.
        bytes: u64,
        /// What was wrong with them.
        error: FrameError,
        /// LSNs (first, last) of valid but never-synced frames after the gap, which the cut
        /// discards with it (commits acknowledged as `Buffered` at most; never a `Sync` one).
        unsynced: Option<(u64, u64)>,
    },
    /// An invalid frame with valid data after it, or a frame out of LSN sequence: real damage.
    Damaged {
        /// Offset of the invalid frame.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
}

/// The result of scanning one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The decoded header.
    pub header: SegmentHeader,
    /// LSN of the last valid commit (header.first_lsn - 1 when none).
    pub last_lsn: u64,
    /// End offset of the last valid frame.
    pub valid_len: u64,
    /// How the scan ended.
    pub end: ScanEnd,
}

/// Scans a whole unencrypted segment's bytes, calling `on_commit(record, offset)` for each
/// valid frame in order. LSNs must start at the header's first LSN and increase by one. An
/// encrypted segment is refused (its records need a key: [`scan_with`]; or
/// [`scan_structure`]): a reader written before encryption never sees records without ops.
pub fn scan(bytes: &[u8], on_commit: impl FnMut(CommitRecord, u64)) -> Result<Scan, String> {
    let header = SegmentHeader::decode(bytes)?;
    if header.key_id != 0 {
        return Err(format!(
            "segment is encrypted with key id {:08x}; this reader was given no key",
            header.key_id
        ));
    }
    let dec = FrameDecoder::plain(header.format_version);
    Ok(scan_from(
        bytes,
        header,
        &dec,
        header.encoded_len(),
        header.first_lsn,
        on_commit,
    ))
}

/// Like [`scan`], opening an encrypted segment's payloads with `keys`. Fails with
/// [`crate::Error::KeyMissing`] (as text) when the segment needs a key `keys` lacks.
pub fn scan_with(
    bytes: &[u8],
    keys: Option<&crate::crypto::Keyring>,
    on_commit: impl FnMut(CommitRecord, u64),
) -> Result<Scan, String> {
    let header = SegmentHeader::decode(bytes)?;
    let dec = FrameDecoder::for_segment(&header, keys).map_err(|e| e.to_string())?;
    Ok(scan_from(
        bytes,
        header,
        &dec,
        header.encoded_len(),
        header.first_lsn,
        on_commit,
    ))
}

/// Like [`scan`], but an encrypted segment is scanned without opening its payloads (lengths,
/// CRCs and LSNs are checked; records carry LSN and commit time, no operations): for callers
/// that need only those, and `verify` without the key. Returns whether contents went
/// unchecked.
pub fn scan_structure(
    bytes: &[u8],
    on_commit: impl FnMut(CommitRecord, u64),
) -> Result<(Scan, bool), String> {
    let header = SegmentHeader::decode(bytes)?;
    let dec = FrameDecoder::structure_only(&header);
    let scan = scan_from(
        bytes,
        header,
        &dec,
        header.encoded_len(),
        header.first_lsn,
        on_commit,
    );
    Ok((scan, dec.is_structure_only()))
}

/// Scans the frames of a segment (whose decoded header is `header`) from offset `pos`, where
/// a frame with LSN `expected` must start; like [`scan`] otherwise. Replay uses it to go on
/// after damage it may step over (bytes of LSNs a checkpoint already holds).
pub fn scan_from(
    bytes: &[u8],
    header: SegmentHeader,
    dec: &FrameDecoder,
    mut pos: usize,
    mut expected: u64,
    mut on_commit: impl FnMut(CommitRecord, u64),
) -> Scan {
    let end = loop {
        let Some(rest) = bytes.get(pos..) else {
            break ScanEnd::Clean;
        };
        if rest.is_empty() {
            break ScanEnd::Clean;
        }
        match dec.decode(rest, pos as u64) {
            // The last LSN of the range could never be followed; refusing it keeps the LSN
            // arithmetic below from overflowing on crafted input.
            Ok(f) if f.record.lsn == expected && expected < u64::MAX => {
                on_commit(f.record, pos as u64);
                pos += f.len;
                expected += 1;
            }
            Ok(f) => {
                break ScanEnd::Damaged {
                    offset: pos as u64,
                    detail: format!("commit LSN {} where {expected} was expected", f.record.lsn),
                }
            }
            // Its CRC matched: not a torn write, wherever it is.
            Err(FrameError::Malformed(m)) if m == UNAUTHENTIC_PAYLOAD => {
                break ScanEnd::Damaged {
                    offset: pos as u64,
                    detail: format!("commit frame (LSN {expected}): {m}"),
                }
            }
            Err(error) => match frames_after(bytes, pos + 1, expected, dec) {
                After::Synced { lsn, durable } => {
                    let why = match durable {
                        Some(d) => format!(
                            "a valid commit (LSN {lsn}) follows it that was written after LSN \
                             {d} was synced"
                        ),
                        None => "valid commits follow it".into(),
                    };
                    break ScanEnd::Damaged {
                        offset: pos as u64,
                        detail: format!("{error} (LSN {expected}), and {why}"),
                    };
                }
                After::Unsynced(unsynced) => {
                    break ScanEnd::TornTail {
                        offset: pos as u64,
                        bytes: (bytes.len() - pos) as u64,
                        error,
                        unsynced,
                    }
                }
            },
        }
    };
    Scan {
        header,
        last_lsn: expected - 1,
        valid_len: pos as u64,
        end,
    }
}

/// Offset of a valid frame with LSN `lsn` at or after `from`, if there is one.
pub fn find_frame(bytes: &[u8], from: usize, lsn: u64, dec: &FrameDecoder) -> Option<usize> {
    let want = lsn.to_le_bytes();
    (from..bytes.len().saturating_sub(FRAME_HEADER_LEN_V1 - 1)).find(|&pos| {
        bytes.get(pos + 8..pos + 16) == Some(&want[..])
            && bytes
                .get(pos..)
                .and_then(|b| dec.decode(b, pos as u64).ok())
                .is_some_and(|f| f.record.lsn == lsn)
    })
}

/// The highest LSN of any valid frame anywhere in a segment's bytes (damaged stretches
/// included), or `None` when the header is unreadable. Automatic recovery uses it to name
/// what it could not recover. Encrypted frames are checked by length and CRC only.
pub fn highest_valid_lsn(bytes: &[u8]) -> Option<u64> {
    let header = SegmentHeader::decode(bytes).ok()?;
    let dec = FrameDecoder::structure_only(&header);
    let mut max = header.first_lsn - 1;
    let mut pos = header.encoded_len();
    while pos + FRAME_HEADER_LEN_V1 <= bytes.len() {
        let lsn = bytes
            .get(pos + 8..pos + 16)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0);
        if lsn > max && lsn >= header.first_lsn && lsn - header.first_lsn < 1 << 32 {
            if let Some(f) = bytes
                .get(pos..)
                .and_then(|b| dec.decode(b, pos as u64).ok())
            {
                max = lsn;
                pos += f.len;
                continue;
            }
        }
        pos += 1;
    }
    Some(max)
}

/// What follows an invalid frame.
enum After {
    /// Nothing valid, or only frames written before `min_lsn` was synced: (first, last) LSN
    /// of those frames, if any.
    Unsynced(Option<(u64, u64)>),
    /// A valid frame (LSN `lsn`) that proves the bytes before it were synced (it records a
    /// durable LSN of at least `min_lsn`), or any valid frame in log format 1, which records
    /// no durable LSN (`durable` is `None`).
    Synced { lsn: u64, durable: Option<u64> },
}

/// Looks for valid frames with an LSN at or after `min_lsn` starting at or after `from`. Only
/// runs when a frame fails, to tell a torn tail from damage.
fn frames_after(bytes: &[u8], from: usize, min_lsn: u64, dec: &FrameDecoder) -> After {
    let mut pos = from;
    let mut unsynced: Option<(u64, u64)> = None;
    while pos + FRAME_HEADER_LEN_V1 <= bytes.len() {
        let lsn = bytes
            .get(pos + 8..pos + 16)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0);
        // A later commit has a nearby LSN; the filter keeps the CRC checks rare.
        if lsn >= min_lsn && lsn < min_lsn.saturating_add(1 << 32) {
            if let Some(f) = bytes
                .get(pos..)
                .and_then(|b| dec.decode(b, pos as u64).ok())
            {
                match f.durable_lsn {
                    Some(d) if d < min_lsn => {
                        let r = unsynced.get_or_insert((lsn, lsn));
                        r.0 = r.0.min(lsn);
                        r.1 = r.1.max(lsn);
                        pos += f.len;
                        continue;
                    }
                    durable => return After::Synced { lsn, durable },
                }
            }
        }
        pos += 1;
    }
    After::Unsynced(unsynced)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `log_head` fuzz target when the log format became 4: a head (or seal)
    /// stamped with a version no writer uses was accepted, and re-encoded to other bytes.
    #[test]
    fn a_seal_or_log_head_of_a_version_no_writer_uses_is_refused() {
        let restamp = |b: &mut Vec<u8>, version: u32, crc_end: usize| {
            b[8..12].copy_from_slice(&version.to_le_bytes());
            let crc = crc32c::crc32c(&b[..crc_end]);
            b[crc_end..crc_end + 4].copy_from_slice(&crc.to_le_bytes());
        };
        let head = LogHead {
            newest_first_lsn: 9,
        }
        .encode();
        let seal = Seal {
            first_lsn: 1,
            last_lsn: 9,
            length: 100,
            last_commit_ts: 5,
            sha256: [3; 32],
        }
        .encode();
        for version in [1, 2] {
            let mut h = head.clone();
            restamp(&mut h, version, 24);
            assert!(LogHead::decode(&h).is_ok(), "head version {version}");
            let mut s = seal.clone();
            restamp(&mut s, version, 80);
            assert!(Seal::decode(&s).is_ok(), "seal version {version}");
        }
        for version in [3, 4, 5] {
            let mut h = head.clone();
            restamp(&mut h, version, 24);
            assert!(LogHead::decode(&h).is_err(), "head version {version}");
            let mut s = seal.clone();
            restamp(&mut s, version, 80);
            assert!(Seal::decode(&s).is_err(), "seal version {version}");
        }
    }

    #[test]
    fn a_flip_in_the_reserved_bytes_of_a_header_or_seal_is_detected() {
        for (version, reserved) in [(1, 28..32), (3, 52..56), (4, 68..72)] {
            let header = SegmentHeader {
                format_version: version,
                key_id: 0,
                first_lsn: 7,
                ids: (version >= 3).then(|| crate::identity::Identity::create("test").ids()),
                salt: if version >= 4 { [5; 16] } else { [0; 16] },
            }
            .encode();
            assert_eq!(SegmentHeader::decode(&header).map(|h| h.first_lsn), Ok(7));
            for i in reserved {
                let mut h = header.clone();
                h[i] ^= 1;
                assert!(SegmentHeader::decode(&h).is_err(), "header byte {i}");
            }
            // A flip in an id (or the salt) is caught by the CRC.
            if version >= 3 {
                let mut h = header.clone();
                h[30] ^= 1;
                assert!(SegmentHeader::decode(&h).is_err(), "id byte");
            }
        }
        let seal = Seal {
            first_lsn: 1,
            last_lsn: 9,
            length: 100,
            last_commit_ts: 5,
            sha256: [3; 32],
        }
        .encode();
        assert_eq!(Seal::decode(&seal).map(|s| s.last_lsn), Ok(9));
        for i in 84..88 {
            let mut s = seal.clone();
            s[i] ^= 1;
            assert!(Seal::decode(&s).is_err(), "seal byte {i}");
        }
        assert!(Seal::decode(&seal[..84]).is_err(), "a truncated seal");
    }
}

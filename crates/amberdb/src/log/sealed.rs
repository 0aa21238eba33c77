//! Sealed commit frames (issue 12): the payload of every frame of an encrypted segment is a
//! sealed unit (`crypto`), the frame header stays plaintext.
//!
//! An encrypted frame is `payload_len u32 | crc u32 | lsn u64 | commit_ts u64 | durable_lsn
//! u64 | envelope`, where `payload_len` counts the envelope (plaintext payload + 21 bytes) and
//! the CRC32C covers bytes 8.. as in every frame, so over the ciphertext: torn-tail detection
//! and `verify` without the key work on the stored bytes. The unit is the frame's byte offset
//! in its segment; the file key is derived from the segment header (database, timeline, first
//! LSN and the header's random salt), so a frame moved to another offset, segment, timeline
//! or database fails authentication even when its CRC and LSN were made to fit.

use crate::crypto::{FileCipher, FileId, FileKind, Keyring, ENVELOPE_OVERHEAD};
use crate::error::{Error, Result};
use crate::log::record::{decode_frame_in, CommitRecord, Frame, FrameError, FRAME_HEADER_LEN};
use crate::log::segment::SegmentHeader;

/// The error a sealed payload that does not authenticate decodes to. Its CRC matched, so it
/// is never a torn write: scans report it as damage wherever it is.
pub const UNAUTHENTIC_PAYLOAD: &str =
    "sealed payload does not authenticate (damaged after its CRC was computed, moved from \
     another offset, segment, timeline or database, or sealed with a different key)";

/// The sealing identity of a segment: its kind, ids, first LSN and salt.
pub fn file_id(header: &SegmentHeader) -> FileId {
    let (database_id, timeline) = header
        .ids
        .map_or(([0; 16], 0), |i| (i.database_id.0, i.timeline.0));
    let mut timeline_id = [0u8; 16];
    if let Some(t) = timeline_id.get_mut(..8) {
        t.copy_from_slice(&timeline.to_le_bytes());
    }
    FileId {
        kind: FileKind::LogSegment,
        database_id,
        timeline_id,
        file_lsn: header.first_lsn,
        salt: header.salt,
    }
}

enum Mode {
    /// An unencrypted segment: frames decode as they always did.
    Plain,
    /// An encrypted segment, with its key: payloads are opened and decoded.
    Open(Box<FileCipher>),
    /// An encrypted segment without its key: length, CRC and LSN are checked, payloads are
    /// not opened; records carry LSN and commit time, no operations, reason `Write` and
    /// target LSN 0 (the real ones are sealed).
    Structure,
}

/// How the frames of one segment are decoded.
pub struct FrameDecoder {
    version: u32,
    mode: Mode,
}

impl FrameDecoder {
    /// Frames of an unencrypted segment of log format `version`.
    pub fn plain(version: u32) -> FrameDecoder {
        FrameDecoder {
            version,
            mode: Mode::Plain,
        }
    }

    /// Frames of the segment with `header`: plaintext when its key id is 0, else opened with
    /// the keyring's key of that id; [`Error::KeyMissing`] (naming the key id) when there is
    /// no keyring or it lacks that key.
    pub fn for_segment(header: &SegmentHeader, keys: Option<&Keyring>) -> Result<FrameDecoder> {
        let Some(key_id) = crate::crypto::KeyId::from_u32(header.key_id) else {
            return Ok(FrameDecoder::plain(header.format_version));
        };
        let file = file_id(header);
        let cipher = match keys {
            Some(k) => k.file_cipher_for(&file, key_id)?,
            None => {
                return Err(Error::KeyMissing {
                    key_id: key_id.get(),
                    unit: format!("log segment {:020}", header.first_lsn),
                    available: "no keys: encryption was not configured".into(),
                })
            }
        };
        Ok(FrameDecoder {
            version: header.format_version,
            mode: Mode::Open(Box::new(cipher)),
        })
    }

    /// Frames of the segment with `header`, checked as far as possible without a key: an
    /// encrypted segment's payloads are not opened (see [`FrameDecoder::is_structure_only`]).
    pub fn structure_only(header: &SegmentHeader) -> FrameDecoder {
        FrameDecoder {
            version: header.format_version,
            mode: if header.key_id == 0 {
                Mode::Plain
            } else {
                Mode::Structure
            },
        }
    }

    /// True when payloads are not opened (an encrypted segment read without its key): the
    /// records have no operations and their contents were not checked.
    pub fn is_structure_only(&self) -> bool {
        matches!(self.mode, Mode::Structure)
    }

    /// Decodes the frame at the start of `buf`, which is at byte `offset` of its segment.
    pub fn decode(&self, buf: &[u8], offset: u64) -> std::result::Result<Frame, FrameError> {
        let cipher = match &self.mode {
            Mode::Plain => return decode_frame_in(buf, self.version),
            Mode::Open(c) => Some(c),
            Mode::Structure => None,
        };
        let header = buf.get(..FRAME_HEADER_LEN).ok_or(FrameError::Incomplete)?;
        let word = |at: usize, n: usize| -> u64 {
            header.get(at..at + n).map_or(0, |b| {
                b.iter()
                    .rev()
                    .fold(0u64, |acc, x| (acc << 8) | u64::from(*x))
            })
        };
        let len = usize::try_from(word(0, 4)).unwrap_or(usize::MAX);
        let crc = u32::try_from(word(4, 4)).unwrap_or(0);
        if !(ENVELOPE_OVERHEAD + 4..=crate::limits::MAX_PAYLOAD_LEN + ENVELOPE_OVERHEAD)
            .contains(&len)
        {
            return Err(FrameError::BadLength);
        }
        let total = FRAME_HEADER_LEN + len;
        let covered = buf.get(8..total).ok_or(FrameError::Incomplete)?;
        if crc32c::crc32c(covered) != crc {
            return Err(FrameError::BadCrc);
        }
        let (lsn, commit_ts, durable_lsn) = (word(8, 8), word(16, 8), word(24, 8));
        let Some(cipher) = cipher else {
            return Ok(Frame {
                // The reason, target and ops are inside the sealed payload: unknown here.
                record: CommitRecord {
                    lsn,
                    commit_ts,
                    reason: Default::default(),
                    target_lsn: 0,
                    ops: vec![],
                    streams: vec![],
                },
                len: total,
                durable_lsn: Some(durable_lsn),
            });
        };
        let sealed = buf
            .get(FRAME_HEADER_LEN..total)
            .ok_or(FrameError::Incomplete)?;
        let plain = cipher
            .open(offset, sealed)
            .map_err(|_| FrameError::Malformed(UNAUTHENTIC_PAYLOAD))?;
        // The plaintext frame, as an unencrypted segment holds it, decoded by the one decoder.
        let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + plain.len());
        let plain_len = u32::try_from(plain.len()).map_err(|_| FrameError::BadLength)?;
        frame.extend_from_slice(&plain_len.to_le_bytes());
        frame.extend_from_slice(&[0; 4]);
        frame.extend_from_slice(header.get(8..).unwrap_or_default());
        frame.extend_from_slice(&plain);
        let crc = crc32c::crc32c(frame.get(8..).unwrap_or_default());
        if let Some(c) = frame.get_mut(4..8) {
            c.copy_from_slice(&crc.to_le_bytes());
        }
        let mut f = decode_frame_in(&frame, self.version)?;
        f.len = total;
        Ok(f)
    }
}

/// Seals a batch of plaintext frames (current log format, back to back) that will be
/// appended at byte `offset` of the segment `cipher` belongs to: each payload becomes the
/// envelope of the unit at its frame's offset, lengths and CRCs are recomputed.
pub(crate) fn seal_frames(cipher: &FileCipher, plain: &[u8], offset: u64) -> Result<Vec<u8>> {
    let bad = || Error::InvalidArgument("a commit batch is not a sequence of frames".into());
    let mut out = Vec::with_capacity(plain.len() + plain.len() / 64 + ENVELOPE_OVERHEAD);
    let mut pos = 0usize;
    while pos < plain.len() {
        let len = plain
            .get(pos..pos + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes)
            .ok_or_else(bad)? as usize;
        let head = plain.get(pos + 8..pos + FRAME_HEADER_LEN).ok_or_else(bad)?;
        let payload = plain
            .get(pos + FRAME_HEADER_LEN..pos + FRAME_HEADER_LEN + len)
            .ok_or_else(bad)?;
        let at = offset + out.len() as u64;
        let sealed = cipher.seal(at, payload)?;
        let start = out.len();
        let sealed_len = u32::try_from(sealed.len()).map_err(|_| bad())?;
        out.extend_from_slice(&sealed_len.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(head);
        out.extend_from_slice(&sealed);
        let crc = crc32c::crc32c(out.get(start + 8..).unwrap_or_default());
        if let Some(c) = out.get_mut(start + 4..start + 8) {
            c.copy_from_slice(&crc.to_le_bytes());
        }
        pos += FRAME_HEADER_LEN + len;
    }
    Ok(out)
}

/// Re-seals the frames of a log format 4 segment body (`body`, the bytes after its header,
/// which starts at byte `header_len`) for key rotation (`crypto::rotate`): each frame's
/// payload is opened with `from` (`None`: the frames are plaintext) and sealed with `to`
/// (`None`: written plaintext) at the frame's new offset; the plaintext frame header (LSN,
/// commit time, durable LSN) is kept and the length and CRC are recomputed. Between two
/// encrypted files every frame keeps its offset (the envelope overhead is constant). Every
/// byte must belong to a frame that checks (CRC, and authentication when sealed): a sealed
/// segment has no torn tail.
pub(crate) fn reseal_frames(
    body: &[u8],
    header_len: usize,
    from: Option<&FileCipher>,
    to: Option<&FileCipher>,
) -> Result<Vec<u8>> {
    let damaged = |at: usize, what: &str| {
        Error::InvalidArgument(format!(
            "the segment's frame at offset {} {what}; it cannot be re-sealed",
            header_len + at
        ))
    };
    let mut out = Vec::with_capacity(body.len() + body.len() / 32);
    let mut pos = 0usize;
    while pos < body.len() {
        let len = body
            .get(pos..pos + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| damaged(pos, "is cut short"))? as usize;
        let crc = body
            .get(pos + 4..pos + 8)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| damaged(pos, "is cut short"))?;
        let end = pos + FRAME_HEADER_LEN + len;
        let covered = body
            .get(pos + 8..end)
            .ok_or_else(|| damaged(pos, "is cut short"))?;
        if crc32c::crc32c(covered) != crc {
            return Err(damaged(pos, "fails its CRC"));
        }
        let head = body
            .get(pos + 8..pos + FRAME_HEADER_LEN)
            .ok_or_else(|| damaged(pos, "is cut short"))?;
        let stored = body
            .get(pos + FRAME_HEADER_LEN..end)
            .ok_or_else(|| damaged(pos, "is cut short"))?;
        let plain = match from {
            Some(c) => c.open((header_len + pos) as u64, stored)?,
            None => stored.to_vec(),
        };
        let at = (header_len + out.len()) as u64;
        let new = match to {
            Some(c) => c.seal(at, &plain)?,
            None => plain,
        };
        let start = out.len();
        let new_len = u32::try_from(new.len()).map_err(|_| damaged(pos, "is too long"))?;
        out.extend_from_slice(&new_len.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(head);
        out.extend_from_slice(&new);
        let crc = crc32c::crc32c(out.get(start + 8..).unwrap_or_default());
        if let Some(c) = out.get_mut(start + 4..start + 8) {
            c.copy_from_slice(&crc.to_le_bytes());
        }
        pos = end;
    }
    Ok(out)
}

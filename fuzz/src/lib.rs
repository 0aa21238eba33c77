//! What the fuzz targets check, shared with `crates/amberdb/tests/fuzz_seeds.rs` (which includes
//! this file by path, so the seed test in CI and the fuzzers run exactly the same checks).
//!
//! Each check feeds bytes to one decoder and panics only when the decoder panics or breaks one
//! of its own promises (offsets inside the input, a decoded value that re-encodes to the same
//! size, ...). It returns whether the bytes decoded cleanly. The `fix_*` functions recompute
//! the checksums of mutated bytes so that mutations get past the CRC and SHA-256 checks and
//! reach the parsers behind them.
//!
//! Only `amberdb`, `crc32c`, `sha2` and `serde_json` may be used here: the seed test has nothing
//! else.

use amberdb::blob::sealed::{read_sealed, size_from_len, SealedReader, HEADER_LEN};
use amberdb::checkpoint::{self, CHECKPOINT_END_MAGIC};
use amberdb::crypto::{Envelope, FileKind, Key, Keyring, UnitId, ENVELOPE_OVERHEAD};
use amberdb::identity::Identity;
use amberdb::log::record::{decode_frame, decode_frame_in, FRAME_HEADER_LEN};
use amberdb::log::segment::{
    scan, LogHead, ScanEnd, Seal, SegmentHeader, LOG_FORMAT_VERSION, LOG_HEAD_LEN, SEAL_LEN,
    SEGMENT_HEADER_LEN, SEGMENT_HEADER_LEN_V3, SEGMENT_HEADER_LEN_V4,
};

/// Decodes one commit frame at the start of `data`. A decoded frame must lie inside `data`,
/// re-encode to the same length, and decode again to the same record.
pub fn commit_frame(data: &[u8]) -> bool {
    let Ok(frame) = decode_frame_in(data, LOG_FORMAT_VERSION) else {
        return false;
    };
    let (rec, len) = (frame.record, frame.len);
    assert!(
        (FRAME_HEADER_LEN..=data.len()).contains(&len),
        "frame length {len} of {}",
        data.len()
    );
    assert_eq!(rec.encoded_len(), len, "encoded_len of a decoded frame");
    let mut again = Vec::with_capacity(len);
    rec.encode_into(&mut again, frame.durable_lsn.unwrap_or(0))
        .expect("a decoded frame is within the frame limit");
    assert_eq!(
        again.len(),
        len,
        "a decoded frame re-encodes to the same length"
    );
    let (back, back_len) = decode_frame(&again).expect("a re-encoded frame decodes");
    assert_eq!(
        (back, back_len),
        (rec, len),
        "re-encoded frame decodes to the same record"
    );
    true
}

/// Scans a whole segment. Frames must be contiguous from the header on, and how the scan ended
/// must account for every byte: clean to the end, or a torn tail / damage at the end of the last
/// valid frame.
pub fn segment_scan(data: &[u8]) -> bool {
    let header = SegmentHeader::decode(data);
    // An encrypted segment (log format 4, key id set): `scan` refuses it without a key; the
    // structure-only scan must not panic and must stay in the LSN range.
    if header.as_ref().is_ok_and(|h| h.key_id != 0) {
        assert!(scan(data, |_, _| {}).is_err(), "scan without a key refuses");
        let (s, unchecked) =
            amberdb::log::segment::scan_structure(data, |_, _| {}).expect("the header decodes");
        assert!(unchecked, "an encrypted segment's contents are not checked");
        assert!(s.valid_len as usize <= data.len());
        return true;
    }
    let mut next = header
        .as_ref()
        .map_or(SEGMENT_HEADER_LEN, |h| h.encoded_len()) as u64;
    let mut frames = 0u64;
    // Frames of older log formats are laid out differently from the current ones.
    let version = header.as_ref().map_or(0, |h| h.format_version);
    let scanned = scan(data, |rec, offset| {
        assert_eq!(offset, next, "frames are contiguous");
        next = offset + rec.encoded_len_in(version) as u64;
        frames += 1;
    });
    let s = match scanned {
        Ok(s) => s,
        Err(_) => {
            assert!(
                header.is_err(),
                "scan refused a segment whose header decodes"
            );
            return false;
        }
    };
    let header = header.expect("scan accepted the header");
    assert_eq!(
        SegmentHeader::decode(&header.encode()),
        Ok(header),
        "header round trip"
    );
    assert_eq!(s.header, header);
    assert_eq!(
        s.valid_len, next,
        "valid_len is the end of the last valid frame"
    );
    assert_eq!(
        s.last_lsn,
        header.first_lsn.wrapping_sub(1).wrapping_add(frames),
        "last LSN"
    );
    assert!(
        header.first_lsn >= 1 && s.last_lsn < u64::MAX,
        "LSNs stay in 1..u64::MAX: {s:?}"
    );
    let len = data.len() as u64;
    match s.end {
        ScanEnd::Clean => {
            assert_eq!(s.valid_len, len, "a clean scan covers every byte");
            true
        }
        ScanEnd::TornTail { offset, bytes, .. } => {
            assert_eq!(
                (offset, offset + bytes),
                (s.valid_len, len),
                "a torn tail runs to the end"
            );
            false
        }
        ScanEnd::Damaged { offset, .. } => {
            assert!(
                offset == s.valid_len && offset < len,
                "damage at {offset}, valid to {}",
                s.valid_len
            );
            false
        }
    }
}

/// Decodes a seal; a decoded seal must survive an encode/decode round trip.
pub fn seal(data: &[u8]) -> bool {
    let Ok(seal) = Seal::decode(data) else {
        return false;
    };
    let encoded = seal.encode();
    assert_eq!(encoded.len(), SEAL_LEN);
    assert_eq!(Seal::decode(&encoded), Ok(seal), "seal round trip");
    true
}

/// Decodes a checkpoint exhaustively. Every problem must point inside the file, and a
/// checkpoint without problems must have a header.
pub fn checkpoint(data: &[u8]) -> bool {
    let d = checkpoint::decode(data);
    for p in &d.problems {
        assert!(
            p.offset <= data.len() as u64,
            "problem offset {} past the end ({}): {}",
            p.offset,
            data.len(),
            p.detail
        );
    }
    if d.problems.is_empty() {
        assert!(d.header.is_some(), "a sound checkpoint has a header");
    }
    // The stream decoder (backup snapshots) never panics, and agrees on every sound checkpoint.
    let s = checkpoint::decode_reader(&mut &data[..], data.len() as u64);
    if d.problems.is_empty() {
        assert!(
            s.problems.is_empty(),
            "the stream decoder refuses a sound checkpoint: {:?}",
            s.problems
        );
        assert_eq!(
            (s.header.map(|h| h.lsn), s.documents_checked),
            (d.header.map(|h| h.lsn), d.documents_checked),
            "stream and slice decoders disagree"
        );
    }
    d.problems.is_empty()
}

/// Decodes a `log/HEAD` record. A decoded record must re-encode to exactly the input.
pub fn log_head(data: &[u8]) -> bool {
    match LogHead::decode(data) {
        Ok(h) => {
            assert_eq!(h.encode(), data, "log head re-encodes to other bytes");
            true
        }
        Err(_) => false,
    }
}

/// Recomputes a `log/HEAD` record's CRC32C (over its first 24 bytes, stored at 24).
pub fn fix_log_head(buf: &mut [u8]) {
    if buf.len() == LOG_HEAD_LEN {
        fix_crc(buf, 0..24, 24);
    }
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    if let Some(b) = buf.get_mut(at..at + 4) {
        b.copy_from_slice(&v.to_le_bytes());
    }
}

fn get_u32(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

fn fix_crc(buf: &mut [u8], covered: std::ops::Range<usize>, at: usize) {
    if let Some(bytes) = buf.get(covered) {
        let crc = crc32c::crc32c(bytes);
        put_u32(buf, at, crc);
    }
}

/// Recomputes the CRC32C of every commit frame laid end to end from the start of `buf`.
pub fn fix_frames(buf: &mut [u8]) {
    fix_frames_from(buf, 0);
}

fn fix_frames_from(buf: &mut [u8], mut pos: usize) {
    while let Some(len) = get_u32(buf, pos) {
        let end = pos + FRAME_HEADER_LEN + len as usize;
        if end > buf.len() {
            break;
        }
        fix_crc(buf, pos + 8..end, pos + 4);
        pos = end;
    }
}

/// Recomputes a segment's header CRC and its frames' CRCs.
pub fn fix_segment(buf: &mut [u8]) {
    // Log format 4 headers hold the ids and the salt before their CRC, format 3 the ids.
    if get_u32(buf, 8).is_some_and(|v| v >= 4) {
        fix_crc(buf, 0..64, 64);
        fix_frames_from(buf, SEGMENT_HEADER_LEN_V4);
    } else if get_u32(buf, 8).is_some_and(|v| v >= 3) {
        fix_crc(buf, 0..48, 48);
        fix_frames_from(buf, SEGMENT_HEADER_LEN_V3);
    } else {
        fix_crc(buf, 0..24, 24);
        fix_frames_from(buf, SEGMENT_HEADER_LEN);
    }
}

/// Recomputes a seal's CRC.
pub fn fix_seal(buf: &mut [u8]) {
    fix_crc(buf, 0..80, 80);
}

/// Recomputes a checkpoint's header CRC, every block's CRC, and the trailer (body length,
/// body SHA-256, end magic).
pub fn fix_checkpoint(buf: &mut [u8]) {
    use sha2::Digest;
    const TRAILER: usize = checkpoint::TRAILER_LEN;
    // Format 4 headers are 80 bytes (with the salt), CRC at 76.
    #[allow(non_snake_case)]
    let HEADER: usize = if get_u32(buf, 8).is_some_and(|v| v >= 4) {
        fix_crc(buf, 0..76, 76);
        checkpoint::HEADER_LEN_V4
    } else {
        fix_crc(buf, 0..60, 60);
        checkpoint::HEADER_LEN
    };
    let Some(trailer_at) = buf.len().checked_sub(TRAILER).filter(|t| *t >= HEADER) else {
        return;
    };
    let mut pos = HEADER;
    while let Some(stored) = get_u32(buf, pos + 4) {
        let end = pos + checkpoint::BLOCK_HEADER_LEN + stored as usize;
        if end > trailer_at {
            break;
        }
        fix_crc(buf, pos + checkpoint::BLOCK_HEADER_LEN..end, pos + 8);
        pos = end;
    }
    let sha: [u8; 32] = sha2::Sha256::digest(&buf[HEADER..trailer_at]).into();
    let body_len = (trailer_at - HEADER) as u64;
    buf[trailer_at..trailer_at + 8].copy_from_slice(&body_len.to_le_bytes());
    buf[trailer_at + 8..trailer_at + 40].copy_from_slice(&sha);
    buf[trailer_at + 40..].copy_from_slice(&CHECKPOINT_END_MAGIC);
}

/// The key and unit the `sealed_unit` seeds are sealed for (the target's fixed context).
pub fn sealed_unit_context() -> (Keyring, UnitId) {
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(97) ^ 0xa5;
    }
    let ring = Keyring::single(Key::from_bytes(key));
    let unit = UnitId::new(FileKind::LogSegment, [0xd1; 16], [0x71; 16], 1000, 32);
    (ring, unit)
}

/// Parses and opens a sealed unit (`amberdb::crypto` envelope) under the fixed context. What
/// opens must have parsed, be `ENVELOPE_OVERHEAD` bytes shorter, and seal back to exactly the
/// input (sealing is deterministic: the nonce comes from the unit id).
pub fn sealed_unit(data: &[u8]) -> bool {
    let (ring, unit) = sealed_unit_context();
    let parsed = Envelope::parse(data, &unit);
    if let Ok(env) = &parsed {
        assert_eq!(
            env.ciphertext.len() + ENVELOPE_OVERHEAD,
            data.len(),
            "envelope parts account for every byte"
        );
    }
    match ring.open(&unit, data) {
        Ok(plain) => {
            assert!(parsed.is_ok(), "opened an envelope that does not parse");
            assert_eq!(plain.len() + ENVELOPE_OVERHEAD, data.len());
            let again = ring.seal(&unit, &plain).expect("reseal");
            assert_eq!(again, data, "an opened unit seals back to the same bytes");
            true
        }
        Err(_) => false,
    }
}

/// The AEAD tag cannot be recomputed like a CRC; the fix-up re-seals the ciphertext bytes as
/// a new plaintext of the same length (version, key id and tag rewritten), so mutations of the
/// contents and the header reach `open`'s success path. Too-short inputs stay as they are.
pub fn fix_sealed_unit(buf: &mut [u8]) {
    let (ring, unit) = sealed_unit_context();
    let Some(body) = buf
        .get(5..buf.len().saturating_sub(16))
        .filter(|_| buf.len() >= ENVELOPE_OVERHEAD)
    else {
        return;
    };
    let sealed = ring.seal(&unit, body).expect("seal");
    buf.copy_from_slice(&sealed);
}

/// The keyring the `sealed_blob` seeds are sealed with (the target's fixed context).
pub fn sealed_blob_keyring() -> Keyring {
    Keyring::single(Key::from_bytes([0x3b; 32]))
}

/// Reads a sealed blob file (`amberdb::blob::sealed`) front to back, without and with the
/// key, and by random access. What authenticates must have passed the structure check, hash
/// to what its trailer names, have the size its length implies, and read the same bytes by
/// random access.
pub fn sealed_blob(data: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let ring = sealed_blob_keyring();
    let len = data.len() as u64;
    let structure = read_sealed(&mut &data[..], len, None, "fuzz", &mut |_| Ok(()));
    let mut plain = vec![];
    let full = read_sealed(&mut &data[..], len, Some(&ring), "fuzz", &mut |p| {
        plain.extend_from_slice(p);
        Ok(())
    });
    let Ok(c) = full else {
        return false;
    };
    assert!(
        structure.is_ok(),
        "authenticated a file whose structure fails"
    );
    let (sha, size) = c.content.expect("with the key, the contents are checked");
    assert_eq!(size, plain.len() as u64, "trailer size and plaintext");
    assert_eq!(size_from_len(len), Some(size), "size follows from length");
    let got: [u8; 32] = Sha256::digest(&plain).into();
    assert_eq!(got, sha, "plaintext hashes to the trailer's SHA-256");
    let mut r = SealedReader::open(std::io::Cursor::new(data), len, Some(&ring), &sha, "fuzz")
        .expect("a file that reads front to back opens for random access");
    let mut again = vec![];
    r.read_to_end(&mut again).expect("random access reads it");
    assert_eq!(again, plain, "random access and front-to-back agree");
    true
}

/// Recomputes a sealed blob header's CRC (the units' tags cannot be recomputed; the valid
/// seeds reach the success path).
pub fn fix_sealed_blob(buf: &mut [u8]) {
    if buf.len() >= HEADER_LEN {
        let crc = crc32c::crc32c(&buf[..36]);
        buf[36..40].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Decodes an identity record (`DATA/identity.json`, also `wal/<timeline>.history`). A decoded
/// record must re-encode to bytes that decode to the same record.
pub fn identity(data: &[u8]) -> bool {
    match Identity::decode(data) {
        Ok(id) => {
            let again = Identity::decode(&id.encode());
            assert_eq!(
                again.as_ref(),
                Ok(&id),
                "identity re-encodes to another record"
            );
            true
        }
        Err(_) => false,
    }
}

/// Recomputes an identity record's CRC32C (8 hex digits over the compact JSON of the record
/// without it) in place, when the bytes still parse as the record.
pub fn fix_identity(buf: &mut [u8]) {
    let Ok(serde_json::Value::Object(mut obj)) = serde_json::from_slice(buf) else {
        return;
    };
    let Some(serde_json::Value::String(old)) = obj.remove("crc32c") else {
        return;
    };
    let Ok(id) = serde_json::from_value::<Identity>(serde_json::Value::Object(obj)) else {
        return;
    };
    let Ok(body) = serde_json::to_vec(&id) else {
        return;
    };
    let new = format!("{:08x}", crc32c::crc32c(&body));
    let Some(key) = find(buf, b"\"crc32c\"") else {
        return;
    };
    if old.len() != new.len() {
        return;
    }
    let Some(at) = buf.get(key..).and_then(|rest| find(rest, old.as_bytes())) else {
        return;
    };
    if let Some(b) = buf.get_mut(key + at..key + at + new.len()) {
        b.copy_from_slice(new.as_bytes());
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a plaintext stream file (`DATA/streams/…/<base>.stream`) as open reads it. Decoded
/// entries must start right after the header, be contiguous, and lie inside the input; an
/// error must point inside it.
pub fn stream_file(data: &[u8]) -> bool {
    match amberdb::stream::decode_stream_file(data) {
        Ok(entries) => {
            let mut expect = 40u64;
            for (at, _, _) in &entries {
                assert_eq!(*at, expect, "entries are contiguous from the header on");
                let len =
                    u32::from_le_bytes(data[*at as usize..*at as usize + 4].try_into().unwrap());
                expect = at + 24 + u64::from(len);
            }
            assert_eq!(
                expect,
                data.len() as u64,
                "the entries end where the file does"
            );
            true
        }
        Err((at, _)) => {
            assert!(
                at <= data.len() as u64,
                "error offset {at} past the end ({})",
                data.len()
            );
            false
        }
    }
}

/// Recomputes a stream file's header CRC and the CRC of every frame that fits.
pub fn fix_stream_file(buf: &mut [u8]) {
    if buf.len() < 40 {
        return;
    }
    let crc = crc32c::crc32c(&buf[..32]);
    buf[32..36].copy_from_slice(&crc.to_le_bytes());
    let mut at = 40;
    while at + 24 <= buf.len() {
        let len = u32::from_le_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
        let Some(end) = (at + 24).checked_add(len).filter(|e| *e <= buf.len()) else {
            return;
        };
        let crc = crc32c::crc32c(&buf[at + 8..end]);
        buf[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        at = end;
    }
}

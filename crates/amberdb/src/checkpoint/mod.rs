//! Checkpoints: snapshot files of a read view in `DATA/checkpoints/`, so recovery replays only
//! the log after them. This module owns the checkpoint byte format, writing one atomically,
//! decoding one (strictly for recovery, exhaustively for `verify`), and listing them.
//! It never deletes log segments; the database decides that from what it keeps here.
//! Byte layout: `docs/FORMAT.md`, "Checkpoint file". Which checkpoints are kept: [`retention`].

// Lengths are written as fixed-width integers: a silent `as u32` turned oversized data into
// frames and blocks no decoder accepts. Every narrowing conversion is checked.
#![deny(clippy::cast_possible_truncation)]

pub(crate) mod retention;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::Digest;

use crate::codec::{put_str16, PutLe, Reader};
use crate::document::{DocMeta, Document};
use crate::identity::{DatabaseId, FileIds, TimelineId};
use crate::io::{self, sync_dir, Faults};
use crate::state::{Collection, HashedDoc, State, Tombstone};

/// First bytes of every checkpoint.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"AMBRCKPT";
/// Last bytes of every checkpoint.
pub const CHECKPOINT_END_MAGIC: [u8; 8] = *b"AMBRCEND";
/// Current checkpoint format version. Version 2 records each tombstone's time and last
/// version, each collection's version floor and the tombstone retention (`docs/FORMAT.md`);
/// version 3 adds an identity entry (database and timeline ids); version 4 adds each
/// document's expiry (`expires_at`, 0 for none) to its entry, and (issue 12) a random
/// per-file salt to the header (80 bytes) and a non-zero key id: every block's stored bytes
/// are then sealed; version 5 (issue 13) adds a stream entry per stream (its sequence range,
/// file watermark and retention). Versions 1 to 4 are still read.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 5;
/// Header size of formats 1 to 3.
pub const HEADER_LEN: usize = 64;
/// Header size of format 4 (with the salt).
pub const HEADER_LEN_V4: usize = 80;
/// Trailer size: body length, SHA-256 of the body, end magic.
pub const TRAILER_LEN: usize = 48;
/// Block header size: raw length, stored length, CRC32C of the stored bytes.
pub const BLOCK_HEADER_LEN: usize = 12;
/// Uncompressed bytes gathered before a block is cut.
const BLOCK_TARGET: usize = 256 * 1024;
/// Largest blocks a decoder accepts and an encoder writes (uncompressed, stored).
use crate::limits::{MAX_BLOCK, MAX_STORED_BLOCK};

/// Format 1 only: a collection's name.
const ENTRY_COLLECTION_V1: u8 = 1;
const ENTRY_DOCUMENT: u8 = 2;
/// Format 1 only: a tombstone with the LSN of its delete.
const ENTRY_TOMBSTONE_V1: u8 = 3;
/// Format 2: the state's settings (tombstone retention); the first entry.
const ENTRY_STATE: u8 = 4;
/// Format 2: a collection's name and version floor.
const ENTRY_COLLECTION: u8 = 5;
/// Format 2: a tombstone with the LSN and time of its delete and the version it ended at.
const ENTRY_TOMBSTONE: u8 = 6;
/// Format 3: the database and timeline the checkpoint belongs to; the second entry.
const ENTRY_IDENTITY: u8 = 7;
/// Format 5: a stream's sequence range, the bytes of its files the checkpoint covers, and its
/// retention (values are in the stream files, `stream/files.rs`).
const ENTRY_STREAM: u8 = 8;

const COMPRESSION_NONE: u32 = 0;
const COMPRESSION_ZSTD: u32 = 1;

/// Summary of a checkpoint's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointHeader {
    /// Format version.
    pub format_version: u32,
    /// LSN of the last commit included.
    pub lsn: u64,
    /// Commit time of that commit.
    pub commit_ts: u64,
    /// Live documents.
    pub doc_count: u64,
    /// Entries: the state entry (format 2), collections, documents and tombstones.
    pub entry_count: u64,
    /// 0 none, 1 zstd.
    pub compression: u32,
    /// Encryption key id, 0 when unencrypted.
    pub key_id: u32,
    /// Random bytes drawn when the file was written (format 4; zeros before): part of the
    /// file key of an encrypted checkpoint.
    pub salt: [u8; 16],
}

impl CheckpointHeader {
    /// Bytes of the header (where the first block starts).
    pub fn encoded_len(&self) -> usize {
        if self.format_version >= 4 {
            HEADER_LEN_V4
        } else {
            HEADER_LEN
        }
    }

    /// The sealing identity of this checkpoint's blocks: its LSN and salt (the database and
    /// timeline are inside the sealed identity entry; the salt alone already makes the file
    /// key unique per file).
    fn file_id(&self) -> crate::crypto::FileId {
        crate::crypto::FileId {
            kind: crate::crypto::FileKind::Checkpoint,
            database_id: [0; 16],
            timeline_id: [0; 16],
            file_lsn: self.lsn,
            salt: self.salt,
        }
    }
}

/// A problem found while decoding a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointProblem {
    /// Byte offset in the file.
    pub offset: u64,
    /// What is wrong.
    pub detail: String,
}

/// A fully or partly decoded checkpoint.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The header, when it was readable.
    pub header: Option<CheckpointHeader>,
    /// The state it holds (partial when problems were found).
    pub(crate) state: State,
    /// Documents whose SHA-256 was checked.
    pub documents_checked: u64,
    /// Every problem, in file order. Empty means the checkpoint is sound.
    pub problems: Vec<CheckpointProblem>,
    /// The database and timeline it belongs to (format 3; `None` before).
    pub ids: Option<FileIds>,
    /// Set when the checkpoint is encrypted with this key id and was decoded without it:
    /// only its structure (header, block CRCs, body SHA-256) was checked, and `problems`
    /// holds one entry saying so (the state is empty, never usable).
    pub key_missing: Option<u32>,
    /// Whether each document's value is hashed and compared with its stored SHA-256
    /// (`verify`, backups, restore), or trusted because the body's SHA-256, which covers
    /// every byte of every block, has been checked (opening a database).
    check_document_hashes: bool,
    /// Documents decoded but not yet in `state`: the current run of one collection's
    /// documents, added in bulk when the collection changes and at the end
    /// ([`Collection::extend_docs`]).
    pending: Option<(Arc<str>, Vec<HashedDoc>)>,
}

impl Decoded {
    fn empty(check_document_hashes: bool) -> Decoded {
        Decoded {
            header: None,
            state: State::default(),
            documents_checked: 0,
            problems: vec![],
            ids: None,
            key_missing: None,
            check_document_hashes,
            pending: None,
        }
    }

    /// Queues a decoded document of `collection`, adding the queued run to the state first
    /// when it belongs to another collection.
    fn push_document(&mut self, collection: &str, doc: Document) {
        if self
            .pending
            .as_ref()
            .is_some_and(|(c, _)| &**c != collection)
        {
            self.add_pending();
        }
        let (_, docs) = self
            .pending
            .get_or_insert_with(|| (collection.into(), Vec::new()));
        docs.push(HashedDoc::new(doc));
    }

    /// Adds the queued documents to the state. Every decoder calls this before it counts
    /// documents and before it returns.
    fn add_pending(&mut self) {
        if let Some((name, docs)) = self.pending.take() {
            let c: &mut Collection = self.state.collections.entry(name).or_default();
            c.extend_docs(docs);
        }
    }
}

/// File name of the checkpoint at `lsn`.
pub fn checkpoint_file_name(lsn: u64) -> String {
    format!("{lsn:020}.ckpt")
}

/// Checkpoints in `dir`, newest (highest LSN) first.
pub fn list_checkpoints(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = crate::io::list_by_lsn(dir, ".ckpt")?;
    out.reverse();
    Ok(out)
}

fn encode_header(
    state: &State,
    version: u32,
    entry_count: u64,
    compression: u32,
    key_id: u32,
    salt: [u8; 16],
) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER_LEN_V4);
    b.extend_from_slice(&CHECKPOINT_MAGIC);
    b.put_u32(version);
    b.put_u32(key_id);
    b.put_u64(state.lsn);
    b.put_u64(state.commit_ts);
    b.put_u64(state.doc_count());
    b.put_u64(entry_count);
    b.put_u32(compression);
    b.put_u32(0);
    if version >= 4 {
        b.extend_from_slice(&salt);
    }
    b.put_u32(0);
    let crc = crc32c::crc32c(&b);
    b.put_u32(crc);
    b
}

fn decode_header(bytes: &[u8]) -> Result<CheckpointHeader, String> {
    let mut r = Reader::new(bytes);
    if r.array::<8>() != Some(CHECKPOINT_MAGIC) {
        return Err("not an AmberDB checkpoint (bad magic)".into());
    }
    let short = || "file is shorter than a checkpoint header".to_string();
    let format_version = r.u32().ok_or_else(short)?;
    let key_id = r.u32().ok_or_else(short)?;
    let lsn = r.u64().ok_or_else(short)?;
    let commit_ts = r.u64().ok_or_else(short)?;
    let doc_count = r.u64().ok_or_else(short)?;
    let entry_count = r.u64().ok_or_else(short)?;
    let compression = r.u32().ok_or_else(short)?;
    let _ = r.u32();
    let salt = if format_version >= 4 {
        r.array::<16>().ok_or_else(short)?
    } else {
        [0; 16]
    };
    let _ = r.u32();
    let crc_at = r.position();
    let crc = r.u32().ok_or_else(short)?;
    if crc32c::crc32c(bytes.get(..crc_at).unwrap_or_default()) != crc {
        return Err("checkpoint header fails its CRC32C".into());
    }
    if format_version == 0 || format_version > CHECKPOINT_FORMAT_VERSION {
        return Err(format!(
            "checkpoint format version {format_version} is not supported"
        ));
    }
    if key_id != 0 && format_version < 4 {
        return Err(format!(
            "checkpoint of format {format_version} names key id {key_id}; encryption exists \
             from checkpoint format 4 on"
        ));
    }
    if compression > COMPRESSION_ZSTD {
        return Err(format!("unknown compression {compression}"));
    }
    Ok(CheckpointHeader {
        format_version,
        lsn,
        commit_ts,
        doc_count,
        entry_count,
        compression,
        key_id,
        salt,
    })
}

/// The header of the checkpoint at `path` (`None` when unreadable or damaged).
pub(crate) fn read_header(path: &Path) -> Option<CheckpointHeader> {
    use std::io::Read;
    let mut head = Vec::with_capacity(HEADER_LEN_V4);
    io::open_read(path, &Faults::none())
        .ok()?
        .take(HEADER_LEN_V4 as u64)
        .read_to_end(&mut head)
        .ok()?;
    decode_header(&head).ok()
}

/// Streams blocks to a sink while hashing them.
struct BlockWriter<'a, W: std::io::Write> {
    out: &'a mut W,
    hasher: sha2::Sha256,
    body_len: u64,
    raw: Vec<u8>,
    level: i32,
    /// Seals each block's stored bytes (as unit `blocks`), when encrypted.
    cipher: Option<crate::crypto::FileCipher>,
    /// Blocks written so far.
    blocks: u64,
}

impl<W: std::io::Write> BlockWriter<'_, W> {
    fn flush_block(&mut self) -> std::io::Result<()> {
        if self.raw.is_empty() {
            return Ok(());
        }
        let stored = if self.level > 0 {
            zstd::bulk::compress(&self.raw, self.level)?
        } else {
            self.raw.clone()
        };
        // Compressed first, then sealed: ciphertext does not compress.
        let stored = match &self.cipher {
            Some(c) => c
                .seal(self.blocks, &stored)
                .map_err(|e| std::io::Error::other(e.to_string()))?,
            None => stored,
        };
        let max_stored = MAX_STORED_BLOCK
            + if self.cipher.is_some() {
                crate::crypto::ENVELOPE_OVERHEAD
            } else {
                0
            };
        let too_large = |what: &str, len: usize| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("checkpoint block of {len} {what} bytes exceeds the block limit"),
            )
        };
        let raw_len = u32::try_from(self.raw.len())
            .ok()
            .filter(|_| self.raw.len() <= MAX_BLOCK)
            .ok_or_else(|| too_large("raw", self.raw.len()))?;
        let stored_len = u32::try_from(stored.len())
            .ok()
            .filter(|_| stored.len() <= max_stored)
            .ok_or_else(|| too_large("stored", stored.len()))?;
        let mut block = Vec::with_capacity(BLOCK_HEADER_LEN + stored.len());
        block.put_u32(raw_len);
        block.put_u32(stored_len);
        block.put_u32(crc32c::crc32c(&stored));
        block.extend_from_slice(&stored);
        self.out.write_all(&block)?;
        self.hasher.update(&block);
        self.body_len += block.len() as u64;
        self.blocks += 1;
        self.raw.clear();
        Ok(())
    }

    /// Adds one entry. A block is cut before an entry that would take it past [`MAX_BLOCK`],
    /// so an entry larger than `BLOCK_TARGET` (a big document) gets a block of its own; an
    /// entry larger than a block (only a document over `limits::MAX_DOC_BYTES`) is refused,
    /// never written as a block the decoder would call damage.
    fn entry(&mut self, encode: impl FnOnce(&mut Vec<u8>)) -> std::io::Result<()> {
        let before = self.raw.len();
        encode(&mut self.raw);
        if self.raw.len() > MAX_BLOCK && before > 0 {
            let entry = self.raw.split_off(before);
            self.flush_block()?;
            self.raw = entry;
        }
        if self.raw.len() > MAX_BLOCK {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "a checkpoint entry of {} bytes exceeds the block limit of {MAX_BLOCK} bytes",
                    self.raw.len()
                ),
            ));
        }
        if self.raw.len() >= BLOCK_TARGET {
            self.flush_block()?;
        }
        Ok(())
    }
}

/// Encodes `state` in checkpoint format 2 (without ids): the test-only path of older callers.
#[cfg(test)]
pub(crate) fn encode_to<W: std::io::Write>(
    state: &State,
    level: i32,
    out: &mut W,
) -> std::io::Result<u64> {
    encode_with(state, None, level, out)
}

/// Encodes `state` in the checkpoint format into `out`, streaming block by block: the current
/// format with `ids` (format 2 when `None`, for tests of older files; it drops expiries). `level` is the zstd level
/// for blocks; 0 stores them uncompressed. Returns the bytes written.
#[cfg(test)]
pub(crate) fn encode_with<W: std::io::Write>(
    state: &State,
    ids: Option<FileIds>,
    level: i32,
    out: &mut W,
) -> std::io::Result<u64> {
    encode_sealed(state, ids, level, None, out)
}

/// Encodes like `encode_with` (tests); with `keys` (and `ids`), every block is sealed with the first key
/// under a fresh random salt (`docs/ENCRYPTION.md`).
pub(crate) fn encode_sealed<W: std::io::Write>(
    state: &State,
    ids: Option<FileIds>,
    level: i32,
    keys: Option<&crate::crypto::Keyring>,
    out: &mut W,
) -> std::io::Result<u64> {
    let version = if ids.is_some() {
        CHECKPOINT_FORMAT_VERSION
    } else {
        2
    };
    let entry_count = 1
        + u64::from(ids.is_some())
        + state
            .collections
            .values()
            .map(|c| 1 + c.docs.len() as u64 + c.tombstones.len() as u64)
            .sum::<u64>()
        + if version >= 5 {
            state.streams.len() as u64
        } else {
            0
        };
    let compression = if level > 0 {
        COMPRESSION_ZSTD
    } else {
        COMPRESSION_NONE
    };
    let keys = keys.filter(|_| version >= 4);
    let salt =
        crate::crypto::FileId::new_salt().map_err(|e| std::io::Error::other(e.to_string()))?;
    let key_id = keys.map_or(0, |k| k.primary().id().get());
    let header = encode_header(state, version, entry_count, compression, key_id, salt);
    let cipher = match keys {
        Some(k) => {
            let h = decode_header(&header).map_err(std::io::Error::other)?;
            Some(
                k.file_cipher(&h.file_id())
                    .map_err(|e| std::io::Error::other(e.to_string()))?,
            )
        }
        None => None,
    };
    out.write_all(&header)?;
    let header_len = header.len() as u64;
    let mut w = BlockWriter {
        out,
        hasher: sha2::Sha256::new(),
        body_len: 0,
        raw: Vec::with_capacity(BLOCK_TARGET * 2),
        level,
        cipher,
        blocks: 0,
    };
    w.entry(|b| {
        b.put_u8(ENTRY_STATE);
        b.put_u64(state.tombstone_retention_us);
    })?;
    if let Some(ids) = ids {
        w.entry(|b| {
            b.put_u8(ENTRY_IDENTITY);
            b.extend_from_slice(&ids.database_id.0);
            b.put_u64(ids.timeline.0);
        })?;
    }
    for (name, coll) in state.collections.iter() {
        w.entry(|b| {
            b.put_u8(ENTRY_COLLECTION);
            put_str16(b, name);
            b.put_u64(coll.version_floor);
        })?;
        for (key, doc) in coll.docs.iter() {
            w.entry(|b| {
                b.put_u8(ENTRY_DOCUMENT);
                put_str16(b, name);
                put_str16(b, key);
                b.put_u64(doc.meta.version);
                b.put_u32(doc.meta.schema_version);
                b.put_u64(doc.meta.created_at);
                b.put_u64(doc.meta.updated_at);
                b.put_u64(doc.meta.lsn);
                if version >= 4 {
                    b.put_u64(doc.meta.expires_at.unwrap_or(0));
                }
                b.extend_from_slice(&doc.meta.sha256);
                // A value over u32 is far over the block limit, which `entry` refuses.
                b.put_u32(u32::try_from(doc.value.len()).unwrap_or(u32::MAX));
                b.extend_from_slice(&doc.value);
            })?;
        }
        for (key, t) in coll.tombstones.iter() {
            w.entry(|b| {
                b.put_u8(ENTRY_TOMBSTONE);
                put_str16(b, name);
                put_str16(b, key);
                b.put_u64(t.lsn);
                b.put_u64(t.deleted_at);
                b.put_u64(t.last_version);
            })?;
        }
    }
    if version >= 5 {
        for (name, st) in state.streams.iter() {
            w.entry(|b| {
                b.put_u8(ENTRY_STREAM);
                put_str16(b, name);
                b.put_u64(st.created_lsn);
                b.put_u64(st.first_seq);
                b.put_u64(st.next_seq);
                b.put_u64(st.first_pos);
                b.put_u64(st.end_pos);
                b.put_u64(st.retention.max_entries.unwrap_or(0));
                b.put_u64(st.retention.max_age_s.unwrap_or(0));
            })?;
        }
    }
    w.flush_block()?;
    let mut trailer = Vec::with_capacity(TRAILER_LEN);
    trailer.put_u64(w.body_len);
    trailer.extend_from_slice(&w.hasher.clone().finalize());
    trailer.extend_from_slice(&CHECKPOINT_END_MAGIC);
    let size = header_len + w.body_len + TRAILER_LEN as u64;
    w.out.write_all(&trailer)?;
    Ok(size)
}

/// Writes `state` as `dir/<lsn>.ckpt`: temp file, fsync, rename, fsync of the directory.
/// `level` is the zstd level; 0 stores blocks uncompressed. Returns the path and size.
pub(crate) fn write(
    dir: &Path,
    state: &State,
    ids: FileIds,
    level: i32,
    keys: Option<&crate::crypto::Keyring>,
    faults: &Faults,
) -> std::io::Result<(PathBuf, u64)> {
    let name = checkpoint_file_name(state.lsn);
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let mut out = io::create(&tmp, faults)?;
        let size = encode_sealed(state, Some(ids), level, keys, &mut out)?;
        out.sync_all()?;
        io::rename(&tmp, &path, faults)?;
        sync_dir(dir, faults)?;
        Ok((path.clone(), size))
    })();
    if result.is_err() {
        let _ = io::remove_file(&tmp, faults);
    }
    result
}

/// Decodes a checkpoint, checking the header CRC, the body SHA-256, every block's CRC32C and
/// every document's SHA-256. It keeps going after a problem so `verify` can list them all; a
/// caller that needs a sound checkpoint checks that `problems` is empty. Never panics. An
/// encrypted checkpoint is checked for structure only (see [`Decoded::key_missing`]).
pub fn decode(bytes: &[u8]) -> Decoded {
    decode_with(bytes, None)
}

/// Like [`decode`], opening an encrypted checkpoint's blocks with `keys`.
pub fn decode_with(bytes: &[u8], keys: Option<&crate::crypto::Keyring>) -> Decoded {
    decode_slice(bytes, keys, true)
}

fn decode_slice(
    bytes: &[u8],
    keys: Option<&crate::crypto::Keyring>,
    check_document_hashes: bool,
) -> Decoded {
    let mut out = Decoded::empty(check_document_hashes);
    let problem = |offset: usize, detail: String| CheckpointProblem {
        offset: offset as u64,
        detail,
    };
    let header = match decode_header(bytes) {
        Ok(h) => h,
        Err(e) => {
            out.problems.push(problem(0, e));
            return out;
        }
    };
    out.header = Some(header);
    let cipher = match block_cipher(&header, keys, &mut out) {
        Ok(c) => c,
        Err(()) => return out,
    };
    let header_len = header.encoded_len();
    let trailer_at = bytes.len().saturating_sub(TRAILER_LEN);
    if bytes.len() < header_len + TRAILER_LEN {
        out.problems.push(problem(
            bytes.len(),
            "checkpoint is truncated (no trailer)".into(),
        ));
        return out;
    }
    let mut t = Reader::new(bytes.get(trailer_at..).unwrap_or_default());
    let body_len = t.u64().unwrap_or(u64::MAX);
    let sha = t.array::<32>().unwrap_or_default();
    let end_magic = t.array::<8>().unwrap_or_default();
    if end_magic != CHECKPOINT_END_MAGIC || body_len != (trailer_at - header_len) as u64 {
        out.problems.push(problem(
            trailer_at,
            "checkpoint trailer is damaged or the file is truncated".into(),
        ));
    }
    let body = bytes.get(header_len..trailer_at).unwrap_or_default();
    if crate::codec::sha256(body) != sha {
        out.problems.push(problem(
            header_len,
            "checkpoint body does not match its SHA-256".into(),
        ));
    }
    let mut pos = header_len;
    let mut entries = 0u64;
    let mut block_no = 0u64;
    let max_stored = max_stored_len(&header);
    while pos < trailer_at {
        let mut r = Reader::new(bytes.get(pos..trailer_at).unwrap_or_default());
        let (Some(raw_len), Some(stored_len), Some(crc)) = (r.u32(), r.u32(), r.u32()) else {
            out.problems
                .push(problem(pos, "truncated block header".into()));
            break;
        };
        let (raw_len, stored_len) = (raw_len as usize, stored_len as usize);
        // No writer produces an empty block or one over the limits; refusing them bounds
        // every allocation below by the limits, whatever a (compressed) block expands to.
        if raw_len == 0 || raw_len > MAX_BLOCK || stored_len > max_stored {
            out.problems
                .push(problem(pos, "block declares an impossible length".into()));
            break;
        }
        let Some(stored) = r.bytes(stored_len) else {
            out.problems
                .push(problem(pos, "block runs past the end of the body".into()));
            break;
        };
        let block_at = pos;
        pos += BLOCK_HEADER_LEN + stored_len;
        let unit = (cipher.as_ref(), block_no);
        entries += decode_block(&header, block_at, raw_len, crc, stored, unit, &mut out);
        block_no += 1;
    }
    check_counts(&header, entries, &mut out);
    out.state.lsn = header.lsn;
    out.state.commit_ts = header.commit_ts;
    out
}

/// Checks one block's CRC32C, decompresses it (bounded by its declared length) and decodes
/// its entries into `out`; returns how many entries it held.
fn decode_block(
    header: &CheckpointHeader,
    block_at: usize,
    raw_len: usize,
    crc: u32,
    stored: &[u8],
    unit: (Option<&crate::crypto::FileCipher>, u64),
    out: &mut Decoded,
) -> u64 {
    let opened = open_block(header, block_at, raw_len, crc, stored, unit);
    decode_opened(opened, header, out)
}

/// One block as [`open_block`] left it: its raw bytes, when they could be had, and what was
/// wrong with it.
struct OpenedBlock {
    /// Offset of the block's header in the file.
    at: usize,
    raw: Option<Vec<u8>>,
    problems: Vec<CheckpointProblem>,
}

/// Records an opened block's problems in `out` and decodes its entries; returns how many
/// there were.
fn decode_opened(block: OpenedBlock, header: &CheckpointHeader, out: &mut Decoded) -> u64 {
    out.problems.extend(block.problems);
    block.raw.map_or(0, |raw| {
        decode_entries(&raw, header, block.at + BLOCK_HEADER_LEN, out)
    })
}

/// Checks one block's CRC32C, opens it when the checkpoint is encrypted and decompresses it
/// (bounded by its declared length): everything but decoding its entries, so a reader can
/// do this on one thread while another decodes the block before it.
fn open_block(
    header: &CheckpointHeader,
    block_at: usize,
    raw_len: usize,
    crc: u32,
    stored: &[u8],
    (cipher, block_no): (Option<&crate::crypto::FileCipher>, u64),
) -> OpenedBlock {
    let mut block = OpenedBlock {
        at: block_at,
        raw: None,
        problems: vec![],
    };
    let mut problem = |detail: String| {
        block.problems.push(CheckpointProblem {
            offset: block_at as u64,
            detail,
        })
    };
    if crc32c::crc32c(stored) != crc {
        problem("block fails its CRC32C".into());
        if header.compression == COMPRESSION_ZSTD {
            // Decompressing bytes known to be wrong only produces noise (and a large
            // allocation if the damage is in the declared length); uncompressed blocks
            // are still decoded so the damaged documents can be named.
            return block;
        }
    }
    let opened;
    let stored = match (header.key_id, cipher) {
        (0, _) => stored,
        // Structure only (no key): the CRC was all that could be checked.
        (_, None) => return block,
        (_, Some(c)) => match c.open(block_no, stored) {
            Ok(p) => {
                opened = p;
                &opened[..]
            }
            Err(e) => {
                problem(format!("block {block_no} does not authenticate: {e}"));
                return block;
            }
        },
    };
    let raw = if header.compression == COMPRESSION_ZSTD {
        let raw = decompress_block(stored, raw_len);
        if raw.is_none() {
            problem("block does not decompress".into());
        }
        raw
    } else {
        Some(stored.to_vec())
    };
    block.raw = raw;
    block
}

/// Largest stored block length `header`'s checkpoint may declare.
fn max_stored_len(header: &CheckpointHeader) -> usize {
    MAX_STORED_BLOCK
        + if header.key_id != 0 {
            crate::crypto::ENVELOPE_OVERHEAD
        } else {
            0
        }
}

/// The cipher for an encrypted checkpoint's blocks (`None` for an unencrypted one, or when
/// the key is missing: then `out` says so, and only structure is checked). `Err` when the
/// checkpoint cannot be decoded at all.
fn block_cipher(
    header: &CheckpointHeader,
    keys: Option<&crate::crypto::Keyring>,
    out: &mut Decoded,
) -> Result<Option<crate::crypto::FileCipher>, ()> {
    let Some(key_id) = crate::crypto::KeyId::from_u32(header.key_id) else {
        return Ok(None);
    };
    match keys.map(|k| k.file_cipher_for(&header.file_id(), key_id)) {
        Some(Ok(c)) => Ok(Some(c)),
        Some(Err(e)) if !matches!(e, crate::Error::KeyMissing { .. }) => {
            out.problems.push(CheckpointProblem {
                offset: 0,
                detail: e.to_string(),
            });
            Err(())
        }
        _ => {
            out.key_missing = Some(header.key_id);
            out.problems.push(CheckpointProblem {
                offset: 0,
                detail: format!(
                    "checkpoint is encrypted with key id {key_id}, which was not given: only \
                     its structure was checked, not its contents"
                ),
            });
            Ok(None)
        }
    }
}

/// A sound body must hold exactly the entries and documents its header counts.
fn check_counts(header: &CheckpointHeader, entries: u64, out: &mut Decoded) {
    out.add_pending();
    let problem = |offset: usize, detail: String| CheckpointProblem {
        offset: offset as u64,
        detail,
    };
    if out.problems.is_empty() && out.key_missing.is_none() {
        if header.format_version >= 3 && out.ids.is_none() {
            out.problems.push(problem(
                HEADER_LEN,
                "checkpoint of format 3 has no identity entry".into(),
            ));
        }
        if entries != header.entry_count {
            out.problems.push(problem(
                HEADER_LEN,
                format!(
                    "{entries} entries found, header says {}",
                    header.entry_count
                ),
            ));
        }
        if out.state.doc_count() != header.doc_count {
            out.problems.push(problem(
                HEADER_LEN,
                format!(
                    "{} documents found, header says {}",
                    out.state.doc_count(),
                    header.doc_count
                ),
            ));
        }
    }
}

/// Decodes a checkpoint of `len` bytes read from `src` (a backup snapshot being
/// decompressed), with the same checks as [`decode`]. It holds at most one block of the
/// stream in memory, and every allocation is bounded by the block limits whatever `len`
/// and the stream claim: a small compression bomb that expands to gigabytes fails at its
/// first bytes that are not a checkpoint, instead of being decompressed into memory.
/// It reads `src` to its end (so a caller hashing the stream sees all of it) only when the
/// checkpoint is sound up to its trailer.
pub fn decode_reader(src: &mut (impl std::io::Read + Send), len: u64) -> Decoded {
    decode_reader_with(src, len, None)
}

/// Like [`decode_reader`], opening an encrypted checkpoint's blocks with `keys`.
pub fn decode_reader_with(
    src: &mut (impl std::io::Read + Send),
    len: u64,
    keys: Option<&crate::crypto::Keyring>,
) -> Decoded {
    decode_reader_checking(src, len, keys, true)
}

/// Decodes the checkpoint at `path` to open a database, one block at a time (holding the
/// whole file in memory was a quarter of the peak RSS of a reopen, `docs/BENCHMARKS.md`).
/// Every block's CRC32C and the body's SHA-256 are checked (they cover every stored byte,
/// so a flipped bit anywhere is still found), but documents' values are not hashed one by
/// one: that is `verify`'s job (it was 22% of a reopen). An error reading the file is
/// returned as such, not as damage.
pub(crate) fn read_for_open(
    path: &Path,
    keys: Option<&crate::crypto::Keyring>,
) -> std::io::Result<Decoded> {
    let file = io::open_read(path, &Faults::none())?;
    let len = file.len()?;
    let mut src = KeepError {
        inner: std::io::BufReader::with_capacity(256 * 1024, file),
        error: None,
    };
    let out = decode_reader_checking(&mut src, len, keys, false);
    src.error.map_or(Ok(out), Err)
}

/// A reader that keeps the first error it returned, so a decoder that reports a short read
/// as damage can be told apart from a file that could not be read.
struct KeepError<R> {
    inner: R,
    error: Option<std::io::Error>,
}

impl<R: std::io::Read> std::io::Read for KeepError<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            if self.error.is_none() {
                self.error = Some(std::io::Error::new(e.kind(), e.to_string()));
            }
        })
    }
}

/// [`decode_reader_with`], hashing every document's value or not (see [`read_for_open`]).
fn decode_reader_checking(
    src: &mut (impl std::io::Read + Send),
    len: u64,
    keys: Option<&crate::crypto::Keyring>,
    check_document_hashes: bool,
) -> Decoded {
    let mut out = decode_reader_queued(src, len, keys, check_document_hashes);
    // It returns early on damage, with documents still queued.
    out.add_pending();
    out
}

fn decode_reader_queued(
    src: &mut (impl std::io::Read + Send),
    len: u64,
    keys: Option<&crate::crypto::Keyring>,
    check_document_hashes: bool,
) -> Decoded {
    let mut out = Decoded::empty(check_document_hashes);
    let problem = |offset: u64, detail: &str| CheckpointProblem {
        offset,
        detail: detail.to_string(),
    };
    let mut head = vec![0u8; HEADER_LEN];
    if src.read_exact(&mut head).is_err() {
        out.problems
            .push(problem(0, "file is shorter than a checkpoint header"));
        return out;
    }
    // Format 4 headers are longer: read the rest before checking the CRC.
    let is_v4 = head
        .get(8..12)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_le_bytes)
        .is_some_and(|v| v >= 4);
    if is_v4 {
        head.resize(HEADER_LEN_V4, 0);
        if src
            .read_exact(head.get_mut(HEADER_LEN..).unwrap_or_default())
            .is_err()
        {
            out.problems
                .push(problem(0, "file is shorter than a checkpoint header"));
            return out;
        }
    }
    let header = match decode_header(&head) {
        Ok(h) => h,
        Err(e) => {
            out.problems.push(problem(0, &e));
            return out;
        }
    };
    out.header = Some(header);
    let cipher = match block_cipher(&header, keys, &mut out) {
        Ok(c) => c,
        Err(()) => return out,
    };
    let header_len = header.encoded_len() as u64;
    let Some(trailer_at) = len
        .checked_sub(TRAILER_LEN as u64)
        .filter(|t| *t >= header_len)
    else {
        out.problems
            .push(problem(len, "checkpoint is truncated (no trailer)"));
        return out;
    };
    let mut entries = 0u64;
    let mut fatal = false;
    let mut consume = |event: BodyEvent| match event {
        BodyEvent::Block(b) => entries += decode_opened(b, &header, &mut out),
        BodyEvent::Problem(p) => out.problems.push(p),
        BodyEvent::Fatal(p) => {
            out.problems.push(p);
            fatal = true;
        }
    };
    let cipher = cipher.as_ref();
    crate::pipeline::pipelined(
        "amberdb-ckpt-read",
        |sink: &mut dyn FnMut(BodyEvent) -> bool| {
            read_body(src, &header, cipher, (len, trailer_at), sink)
        },
        &mut consume,
    );
    if fatal {
        return out;
    }
    check_counts(&header, entries, &mut out);
    out.state.lsn = header.lsn;
    out.state.commit_ts = header.commit_ts;
    out
}

/// What [`read_body`] finds, in file order.
enum BodyEvent {
    /// A block, opened.
    Block(OpenedBlock),
    /// Damage in the trailer or the body's hash; decoding goes on to count the entries.
    Problem(CheckpointProblem),
    /// The body cannot be read on from here: the last event.
    Fatal(CheckpointProblem),
}

/// Reads a checkpoint's blocks after its header from `src` (`len` bytes in all, the trailer
/// at `trailer_at`), hashing the body and opening each block ([`open_block`]), then checks
/// the trailer, handing everything it finds to `sink` in order. It stops when `sink`
/// returns `false` (the decoding side is gone).
fn read_body(
    src: &mut impl std::io::Read,
    header: &CheckpointHeader,
    cipher: Option<&crate::crypto::FileCipher>,
    (len, trailer_at): (u64, u64),
    sink: &mut dyn FnMut(BodyEvent) -> bool,
) {
    let problem = |offset: u64, detail: &str| CheckpointProblem {
        offset,
        detail: detail.to_string(),
    };
    let header_len = header.encoded_len() as u64;
    let max_stored = max_stored_len(header);
    let mut hasher = sha2::Sha256::new();
    let mut pos = header_len;
    let mut block_no = 0u64;
    while pos < trailer_at {
        let mut bh = [0u8; BLOCK_HEADER_LEN];
        if trailer_at - pos < BLOCK_HEADER_LEN as u64 || src.read_exact(&mut bh).is_err() {
            sink(BodyEvent::Fatal(problem(pos, "truncated block header")));
            return;
        }
        let mut r = Reader::new(&bh);
        let (raw_len, stored_len, crc) = (
            r.u32().unwrap_or(0) as usize,
            r.u32().unwrap_or(0) as usize,
            r.u32().unwrap_or(0),
        );
        if raw_len == 0 || raw_len > MAX_BLOCK || stored_len > max_stored {
            sink(BodyEvent::Fatal(problem(
                pos,
                "block declares an impossible length",
            )));
            return;
        }
        let end = pos + (BLOCK_HEADER_LEN + stored_len) as u64;
        let mut stored = Vec::new();
        if end > trailer_at || stored.try_reserve_exact(stored_len).is_err() {
            sink(BodyEvent::Fatal(problem(
                pos,
                "block runs past the end of the body",
            )));
            return;
        }
        stored.resize(stored_len, 0);
        if src.read_exact(&mut stored).is_err() {
            sink(BodyEvent::Fatal(problem(
                pos,
                "block runs past the end of the body",
            )));
            return;
        }
        hasher.update(bh);
        hasher.update(&stored);
        let block_at = usize::try_from(pos).unwrap_or(usize::MAX);
        let block = open_block(header, block_at, raw_len, crc, &stored, (cipher, block_no));
        if !sink(BodyEvent::Block(block)) {
            return;
        }
        block_no += 1;
        pos = end;
    }
    let mut trailer = [0u8; TRAILER_LEN];
    if src.read_exact(&mut trailer).is_err() {
        sink(BodyEvent::Fatal(problem(
            trailer_at,
            "checkpoint is truncated (no trailer)",
        )));
        return;
    }
    let mut t = Reader::new(&trailer);
    let body_len = t.u64().unwrap_or(u64::MAX);
    let sha = t.array::<32>().unwrap_or_default();
    let end_magic = t.array::<8>().unwrap_or_default();
    let mut problems = vec![];
    if end_magic != CHECKPOINT_END_MAGIC || body_len != trailer_at - header_len {
        problems.push(problem(
            trailer_at,
            "checkpoint trailer is damaged or the file is truncated",
        ));
    }
    if <[u8; 32]>::from(hasher.finalize()) != sha {
        problems.push(problem(
            header_len,
            "checkpoint body does not match its SHA-256",
        ));
    }
    if !matches!(src.read(&mut [0u8; 1]), Ok(0)) {
        problems.push(problem(len, "checkpoint is longer than its declared size"));
    }
    for p in problems {
        if !sink(BodyEvent::Problem(p)) {
            return;
        }
    }
}

/// Decompresses one block into exactly `raw_len` bytes (at most [`MAX_BLOCK`], checked by
/// the caller), or `None` when it does not decompress to exactly that: a block that expands
/// further (a compression bomb) fails when the buffer is full instead of growing it, and a
/// failed allocation is a damaged block, not an abort.
fn decompress_block(stored: &[u8], raw_len: usize) -> Option<Vec<u8>> {
    thread_local! {
        // One decompression context per thread, reused for every block: creating one per
        // block was 2% of a reopen (docs/BENCHMARKS.md, "Reopen").
        static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    let mut raw = Vec::new();
    raw.try_reserve_exact(raw_len).ok()?;
    raw.resize(raw_len, 0);
    let n = DCTX.with_borrow_mut(|d| {
        if d.is_none() {
            *d = zstd::bulk::Decompressor::new().ok();
        }
        d.as_mut()?.decompress_to_buffer(stored, &mut raw).ok()
    });
    (n == Some(raw_len)).then_some(raw)
}

/// Decodes the entries of one raw block into `out.state`; returns how many were read.
fn decode_entries(raw: &[u8], header: &CheckpointHeader, data_at: usize, out: &mut Decoded) -> u64 {
    let compression = header.compression;
    let v1 = header.format_version == 1;
    let mut r = Reader::new(raw);
    let mut n = 0;
    // Offsets inside a compressed block only make sense relative to the block.
    let where_ = |rel: usize| {
        if compression == COMPRESSION_NONE {
            (data_at + rel) as u64
        } else {
            data_at as u64
        }
    };
    while r.remaining() > 0 {
        let at = r.position();
        let bad = |what: &str| CheckpointProblem {
            offset: where_(at),
            detail: format!("malformed {what} entry at block offset {at}"),
        };
        match r.u8() {
            Some(ENTRY_COLLECTION_V1) if v1 => {
                let Some(name) = r.str16() else {
                    out.problems.push(bad("collection"));
                    return n;
                };
                out.state.collections.entry(name.into()).or_default();
            }
            Some(ENTRY_STATE) if !v1 => {
                let Some(retention) = r.u64() else {
                    out.problems.push(bad("state"));
                    return n;
                };
                out.state.tombstone_retention_us = retention;
            }
            Some(ENTRY_IDENTITY) if header.format_version >= 3 && out.ids.is_none() => {
                let parsed = (|| Some((r.array::<16>()?, r.u64()?)))();
                let Some((db, timeline)) = parsed.filter(|(_, t)| *t != 0) else {
                    out.problems.push(bad("identity"));
                    return n;
                };
                out.ids = Some(FileIds {
                    database_id: DatabaseId(db),
                    timeline: TimelineId(timeline),
                });
            }
            Some(ENTRY_COLLECTION) if !v1 => {
                let parsed = (|| Some((r.str16()?, r.u64()?)))();
                let Some((name, floor)) = parsed else {
                    out.problems.push(bad("collection"));
                    return n;
                };
                out.state
                    .collections
                    .entry(name.into())
                    .or_default()
                    .version_floor = floor;
            }
            Some(ENTRY_DOCUMENT) => {
                let parsed = (|| {
                    let coll = r.str16()?;
                    let key = r.str16()?;
                    let meta = DocMeta {
                        version: r.u64()?,
                        schema_version: r.u32()?,
                        created_at: r.u64()?,
                        updated_at: r.u64()?,
                        lsn: r.u64()?,
                        expires_at: if header.format_version >= 4 {
                            Some(r.u64()?).filter(|&t| t != 0)
                        } else {
                            None
                        },
                        sha256: r.array::<32>()?,
                    };
                    let vlen = r.u32()? as usize;
                    let value_at = r.position();
                    let value = r.bytes(vlen)?;
                    Some((coll, key, meta, value, value_at))
                })();
                let Some((coll, key, meta, value, value_at)) = parsed else {
                    out.problems.push(bad("document"));
                    return n;
                };
                if out.check_document_hashes {
                    out.documents_checked += 1;
                }
                if out.check_document_hashes && crate::codec::sha256(value) != meta.sha256 {
                    out.problems.push(CheckpointProblem {
                        offset: where_(value_at),
                        detail: format!(
                            "document {coll}/{key} (version {}) does not match its SHA-256",
                            meta.version
                        ),
                    });
                }
                let doc = Document {
                    key: key.into(),
                    value: value.into(),
                    meta,
                };
                out.push_document(coll, doc);
            }
            Some(ENTRY_TOMBSTONE_V1) if v1 => {
                let parsed = (|| Some((r.str16()?, r.str16()?, r.u64()?)))();
                let Some((coll, key, lsn)) = parsed else {
                    out.problems.push(bad("tombstone"));
                    return n;
                };
                // Format 1 did not record the deleted version or time. Versions are at most
                // the LSN of the write that produced them unless a transaction wrote the key
                // more than once, so the delete's LSN bounds them; the checkpoint's time keeps
                // the tombstone for one full retention after it is read.
                let t = Tombstone {
                    lsn,
                    deleted_at: header.commit_ts,
                    last_version: lsn,
                };
                out.state.insert_tombstone(&coll.into(), &key.into(), t);
            }
            Some(ENTRY_TOMBSTONE) if !v1 => {
                let parsed = (|| Some((r.str16()?, r.str16()?, r.u64()?, r.u64()?, r.u64()?)))();
                let Some((coll, key, lsn, deleted_at, last_version)) = parsed else {
                    out.problems.push(bad("tombstone"));
                    return n;
                };
                let t = Tombstone {
                    lsn,
                    deleted_at,
                    last_version,
                };
                out.state.insert_tombstone(&coll.into(), &key.into(), t);
            }
            Some(ENTRY_STREAM) if header.format_version >= 5 => {
                let parsed = (|| {
                    let name = r.str16()?;
                    let fields = [r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?];
                    Some((name, fields, r.u64()?, r.u64()?))
                })();
                let Some((
                    name,
                    [created_lsn, first_seq, next_seq, first_pos, end_pos],
                    max_n,
                    max_age,
                )) = parsed
                    .filter(|(_, f, _, _)| f[1] >= 1 && f[1] <= f[2] && f[3] <= f[4] && f[0] >= 1)
                else {
                    out.problems.push(bad("stream"));
                    return n;
                };
                out.state.streams.insert(
                    name.into(),
                    crate::stream::StreamState {
                        created_lsn,
                        first_seq,
                        next_seq,
                        first_pos,
                        end_pos,
                        retention: crate::stream::Retention {
                            max_entries: Some(max_n).filter(|&v| v != 0),
                            max_age_s: Some(max_age).filter(|&v| v != 0),
                        },
                        index: imbl::Vector::new(),
                    },
                );
            }
            _ => {
                out.problems.push(bad("unknown"));
                return n;
            }
        }
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint whose only block is `block` (header fields as given), with a trailer
    /// that matches, so only the block itself can be refused.
    fn with_block(raw_len: u32, stored: &[u8]) -> Vec<u8> {
        let mut state = State::default();
        state.lsn = 1;
        let mut out = encode_header(&state, 2, 1, COMPRESSION_ZSTD, 0, [0; 16]);
        let mut body = vec![];
        body.put_u32(raw_len);
        body.put_u32(u32::try_from(stored.len()).expect("small"));
        body.put_u32(crc32c::crc32c(stored));
        body.extend_from_slice(stored);
        out.extend_from_slice(&body);
        out.put_u64(body.len() as u64);
        out.extend_from_slice(&crate::codec::sha256(&body));
        out.extend_from_slice(&CHECKPOINT_END_MAGIC);
        out
    }

    fn bomb(expands_to: usize) -> Vec<u8> {
        use std::io::Write;
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).expect("encoder");
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..expands_to / chunk.len() {
            enc.write_all(&chunk).expect("compress");
        }
        enc.finish().expect("finish")
    }

    fn both(bytes: &[u8]) -> [Decoded; 2] {
        let mut r = bytes;
        [decode(bytes), decode_reader(&mut r, bytes.len() as u64)]
    }

    /// Issue 8 item 2: a small block that expands to 512 MiB is damage, whatever it declares:
    /// declaring the truth is over the block limit (refused before any allocation), declaring
    /// the limit or less fails when the bounded buffer is full.
    #[test]
    fn a_zstd_bomb_block_is_damage_and_never_decompressed_past_its_declared_length() {
        let stored = bomb(512 << 20);
        assert!(stored.len() < 1 << 20, "{}", stored.len());
        let truthful = u32::try_from(512usize << 20).expect("fits");
        for d in both(&with_block(truthful, &stored)) {
            let p = d.problems.first().expect("refused");
            assert!(p.detail.contains("impossible length"), "{p:?}");
        }
        let at_limit = u32::try_from(MAX_BLOCK).expect("fits");
        for d in both(&with_block(at_limit, &stored)) {
            let p = d.problems.first().expect("refused");
            assert!(p.detail.contains("does not decompress"), "{p:?}");
        }
    }

    /// Writers never produce an empty block, so a decoder refuses one (a stream of them would
    /// otherwise be an endless source of zero-length allocations).
    #[test]
    fn an_empty_block_is_damage() {
        for d in both(&with_block(0, &[])) {
            let p = d.problems.first().expect("refused");
            assert!(p.detail.contains("impossible length"), "{p:?}");
        }
    }

    /// The stream decoder agrees with the slice decoder on a sound checkpoint.
    /// Format 5: streams round-trip (sequence range, watermark, retention; no index).
    #[test]
    fn stream_entries_round_trip_without_their_index() {
        let mut state = State::default();
        state.lsn = 7;
        let rec = crate::log::record::CommitRecord {
            lsn: 3,
            commit_ts: 5,
            reason: Default::default(),
            target_lsn: 0,
            ops: vec![],
            streams: vec![
                crate::log::record::StreamOp::Configure {
                    stream: "s".into(),
                    max_entries: Some(9),
                    max_age_s: None,
                },
                crate::log::record::StreamOp::Append {
                    stream: "s".into(),
                    first_seq: 1,
                    values: vec![Arc::from(&b"1"[..]), Arc::from(&b"22"[..])],
                },
                crate::log::record::StreamOp::Trim {
                    stream: "s".into(),
                    first_seq: 2,
                },
            ],
        };
        crate::stream::apply(&mut state.streams, &rec);
        let ids = crate::identity::Identity::create("test").ids();
        let mut bytes = vec![];
        encode_with(&state, Some(ids), 1, &mut bytes).expect("encodes");
        let d = decode(&bytes);
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        let mut want = state.streams.clone();
        if let Some(s) = want.get_mut("s") {
            s.index = imbl::Vector::new();
        }
        assert_eq!(d.state.streams, want);
        let s = &d.state.streams["s"];
        assert_eq!((s.first_seq, s.next_seq, s.created_lsn), (2, 3, 3));
        assert_eq!((s.first_pos, s.end_pos), (25, 51));
    }

    #[test]
    fn stream_and_slice_decoders_agree_on_a_sound_checkpoint() {
        let mut state = State::default();
        state.lsn = 7;
        state.commit_ts = 9;
        state.collections.entry("c".into()).or_default();
        let mut bytes = vec![];
        encode_to(&state, 1, &mut bytes).expect("encodes");
        let [a, b] = both(&bytes);
        assert!(
            a.problems.is_empty() && b.problems.is_empty(),
            "{:?} {:?}",
            a.problems,
            b.problems
        );
        assert_eq!((a.state.lsn, b.state.lsn), (7, 7));
        assert_eq!(b.header, a.header);
        let mut longer = bytes.clone();
        longer.push(0);
        let mut r = &longer[..];
        let d = decode_reader(&mut r, bytes.len() as u64);
        assert!(
            d.problems.iter().any(|p| p.detail.contains("longer")),
            "{:?}",
            d.problems
        );
    }

    /// A checkpoint of many blocks, one damaged in the middle: the slice decoder and the
    /// (pipelined) stream decoder find the same documents and the same problems (the slice
    /// decoder checks the body hash first, the stream decoder once it has read the body).
    #[test]
    fn stream_and_slice_decoders_agree_on_a_damaged_block_among_many() {
        let mut state = State::default();
        state.lsn = 5;
        let coll = state.collections.entry("c".into()).or_default();
        for i in 0..5_000u32 {
            // Incompressible values, so the body is many blocks; more documents than
            // `PARALLEL_BUILD_MIN_DOCS`, so the maps are built on two threads.
            let value: Vec<u8> = (0..1_000u32)
                .map(|j| (i.wrapping_mul(2_654_435_761) ^ j.wrapping_mul(40_503)).to_le_bytes()[1])
                .collect();
            coll.insert_doc(Document {
                key: format!("k{i:05}").into(),
                meta: DocMeta {
                    version: 1,
                    schema_version: 1,
                    created_at: 1,
                    updated_at: 1,
                    lsn: 5,
                    expires_at: None,
                    sha256: crate::codec::sha256(&value),
                },
                value: value.into(),
            });
        }
        const { assert!(5_000 >= crate::state::PARALLEL_BUILD_MIN_DOCS) };
        let mut bytes = vec![];
        encode_to(&state, 1, &mut bytes).expect("encodes");
        let [a, b] = both(&bytes);
        assert!(a.problems.is_empty() && b.problems.is_empty());
        assert_eq!(a.state.doc_count(), 5_000);
        assert_eq!(b.state.doc_count(), 5_000);
        assert_eq!(a.state, b.state);
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        let [a, b] = both(&bytes);
        assert!(!a.problems.is_empty());
        let details = |d: &Decoded| {
            let mut v: Vec<_> = d
                .problems
                .iter()
                .map(|p| (p.offset, p.detail.clone()))
                .collect();
            v.sort();
            v
        };
        assert_eq!(details(&a), details(&b));
        assert!(
            details(&b).iter().any(|(_, d)| d.contains("CRC32C")),
            "{:?}",
            b.problems
        );
        assert_eq!(a.state.doc_count(), b.state.doc_count());
        assert!(b.state.doc_count() < 5_000);
    }

    /// Issue 14: opening a database trusts the body's SHA-256 instead of hashing every
    /// document again (22% of a reopen), while `verify` (and everything else decoding with
    /// `decode_with`) still checks each document's SHA-256. A document whose stored hash
    /// does not match its value, in a checkpoint whose block CRC and body hash are sound (a
    /// writer bug, not disk damage: disk damage fails the body hash), tells them apart.
    #[test]
    fn opening_trusts_the_body_hash_and_verify_still_checks_every_document_hash() {
        let mut state = State::default();
        state.lsn = 3;
        let key: Arc<str> = "k".into();
        let value: Arc<[u8]> = Arc::from(&b"{\"a\":1}"[..]);
        let meta = DocMeta {
            version: 1,
            schema_version: 1,
            created_at: 1,
            updated_at: 1,
            lsn: 3,
            expires_at: None,
            sha256: [7; 32],
        };
        let doc = Document {
            key: key.clone(),
            value,
            meta,
        };
        state
            .collections
            .entry("c".into())
            .or_default()
            .insert_doc(doc);
        let mut bytes = vec![];
        encode_to(&state, 1, &mut bytes).expect("encodes");

        let checked = decode_with(&bytes, None);
        assert_eq!(checked.documents_checked, 1);
        let p = checked
            .problems
            .first()
            .expect("verify finds the wrong hash");
        assert!(p.detail.contains("does not match its SHA-256"), "{p:?}");

        let dir = tempfile::tempdir().expect("temp dir");
        let open = |b: &[u8]| {
            let path = dir.path().join("checkpoint");
            std::fs::write(&path, b).expect("writes");
            read_for_open(&path, None).expect("reads")
        };
        let opened = open(&bytes);
        assert!(opened.problems.is_empty(), "{:?}", opened.problems);
        assert_eq!(opened.documents_checked, 0);
        assert_eq!(opened.state.doc_count(), 1);

        // A flipped byte anywhere in the body still fails the open decode.
        let mut flipped = bytes.clone();
        let at = flipped.len() - TRAILER_LEN - 1;
        flipped[at] ^= 1;
        let d = open(&flipped);
        assert!(
            !d.problems.is_empty(),
            "a flipped body byte must be refused"
        );
    }
}

//! Checkpoints: snapshot files of a read view in `DATA/checkpoints/`, so recovery replays only
//! the log after them. This module owns the checkpoint byte format, writing one atomically,
//! decoding one (strictly for recovery, exhaustively for `verify`), and listing them.
//! It never deletes log segments; the database decides that from what it keeps here.
//! Byte layout: `docs/FORMAT.md`, "Checkpoint file". Which checkpoints are kept: [`retention`].

pub(crate) mod retention;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::Digest;

use crate::codec::{put_str16, PutLe, Reader};
use crate::document::{DocMeta, Document};
use crate::io::{sync_dir, DataFile, Faults};
use crate::state::{Collection, State};

/// First bytes of every checkpoint.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"AMBRCKPT";
/// Last bytes of every checkpoint.
pub const CHECKPOINT_END_MAGIC: [u8; 8] = *b"AMBRCEND";
/// Current checkpoint format version.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;
/// Header size.
pub const HEADER_LEN: usize = 64;
/// Trailer size: body length, SHA-256 of the body, end magic.
pub const TRAILER_LEN: usize = 48;
/// Block header size: raw length, stored length, CRC32C of the stored bytes.
pub const BLOCK_HEADER_LEN: usize = 12;
/// Uncompressed bytes gathered before a block is cut.
const BLOCK_TARGET: usize = 256 * 1024;
/// Largest block a decoder accepts.
const MAX_BLOCK: usize = 1 << 30;

const ENTRY_COLLECTION: u8 = 1;
const ENTRY_DOCUMENT: u8 = 2;
const ENTRY_TOMBSTONE: u8 = 3;

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
    /// Collections, documents and tombstones.
    pub entry_count: u64,
    /// 0 none, 1 zstd.
    pub compression: u32,
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

fn encode_header(state: &State, entry_count: u64, compression: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER_LEN);
    b.extend_from_slice(&CHECKPOINT_MAGIC);
    b.put_u32(CHECKPOINT_FORMAT_VERSION);
    b.put_u32(0); // key id
    b.put_u64(state.lsn);
    b.put_u64(state.commit_ts);
    b.put_u64(state.doc_count());
    b.put_u64(entry_count);
    b.put_u32(compression);
    b.put_u32(0);
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
    let _ = (r.u32(), r.u32());
    let crc = r.u32().ok_or_else(short)?;
    if crc32c::crc32c(bytes.get(..60).unwrap_or_default()) != crc {
        return Err("checkpoint header fails its CRC32C".into());
    }
    if format_version == 0 || format_version > CHECKPOINT_FORMAT_VERSION {
        return Err(format!(
            "checkpoint format version {format_version} is not supported"
        ));
    }
    if key_id != 0 {
        return Err(format!(
            "checkpoint is encrypted with key id {key_id}, which this build cannot read"
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
    })
}

/// Streams blocks to a sink while hashing them.
struct BlockWriter<'a, W: std::io::Write> {
    out: &'a mut W,
    hasher: sha2::Sha256,
    body_len: u64,
    raw: Vec<u8>,
    level: i32,
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
        let mut block = Vec::with_capacity(BLOCK_HEADER_LEN + stored.len());
        block.put_u32(self.raw.len() as u32);
        block.put_u32(stored.len() as u32);
        block.put_u32(crc32c::crc32c(&stored));
        block.extend_from_slice(&stored);
        self.out.write_all(&block)?;
        self.hasher.update(&block);
        self.body_len += block.len() as u64;
        self.raw.clear();
        Ok(())
    }

    fn entry(&mut self, encode: impl FnOnce(&mut Vec<u8>)) -> std::io::Result<()> {
        encode(&mut self.raw);
        if self.raw.len() >= BLOCK_TARGET {
            self.flush_block()?;
        }
        Ok(())
    }
}

/// Encodes `state` in the checkpoint format into `out`, streaming block by block. `level` is
/// the zstd level for blocks; 0 stores them uncompressed. Returns the bytes written.
pub(crate) fn encode_to<W: std::io::Write>(
    state: &State,
    level: i32,
    out: &mut W,
) -> std::io::Result<u64> {
    let entry_count = state
        .collections
        .values()
        .map(|c| 1 + c.docs.len() as u64 + c.tombstones.len() as u64)
        .sum();
    let compression = if level > 0 {
        COMPRESSION_ZSTD
    } else {
        COMPRESSION_NONE
    };
    let header = encode_header(state, entry_count, compression);
    out.write_all(&header)?;
    let mut w = BlockWriter {
        out,
        hasher: sha2::Sha256::new(),
        body_len: 0,
        raw: Vec::with_capacity(BLOCK_TARGET * 2),
        level,
    };
    for (name, coll) in state.collections.iter() {
        w.entry(|b| {
            b.put_u8(ENTRY_COLLECTION);
            put_str16(b, name);
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
                b.extend_from_slice(&doc.meta.sha256);
                b.put_u32(doc.value.len() as u32);
                b.extend_from_slice(&doc.value);
            })?;
        }
        for (key, lsn) in coll.tombstones.iter() {
            w.entry(|b| {
                b.put_u8(ENTRY_TOMBSTONE);
                put_str16(b, name);
                put_str16(b, key);
                b.put_u64(*lsn);
            })?;
        }
    }
    w.flush_block()?;
    let mut trailer = Vec::with_capacity(TRAILER_LEN);
    trailer.put_u64(w.body_len);
    trailer.extend_from_slice(&w.hasher.clone().finalize());
    trailer.extend_from_slice(&CHECKPOINT_END_MAGIC);
    let size = HEADER_LEN as u64 + w.body_len + TRAILER_LEN as u64;
    w.out.write_all(&trailer)?;
    Ok(size)
}

/// Writes `state` as `dir/<lsn>.ckpt`: temp file, fsync, rename, fsync of the directory.
/// `level` is the zstd level; 0 stores blocks uncompressed. Returns the path and size.
pub(crate) fn write(
    dir: &Path,
    state: &State,
    level: i32,
    faults: &Faults,
) -> std::io::Result<(PathBuf, u64)> {
    let name = checkpoint_file_name(state.lsn);
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let mut out = DataFile::new(File::create(&tmp)?, tmp.clone(), faults.clone());
        let size = encode_to(state, level, &mut out)?;
        out.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        sync_dir(dir, faults)?;
        Ok((path.clone(), size))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Decodes a checkpoint, checking the header CRC, the body SHA-256, every block's CRC32C and
/// every document's SHA-256. It keeps going after a problem so `verify` can list them all; a
/// caller that needs a sound checkpoint checks that `problems` is empty. Never panics.
pub fn decode(bytes: &[u8]) -> Decoded {
    let mut out = Decoded {
        header: None,
        state: State::default(),
        documents_checked: 0,
        problems: vec![],
    };
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
    let trailer_at = bytes.len().saturating_sub(TRAILER_LEN);
    if bytes.len() < HEADER_LEN + TRAILER_LEN {
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
    if end_magic != CHECKPOINT_END_MAGIC || body_len != (trailer_at - HEADER_LEN) as u64 {
        out.problems.push(problem(
            trailer_at,
            "checkpoint trailer is damaged or the file is truncated".into(),
        ));
    }
    let body = bytes.get(HEADER_LEN..trailer_at).unwrap_or_default();
    if crate::codec::sha256(body) != sha {
        out.problems.push(problem(
            HEADER_LEN,
            "checkpoint body does not match its SHA-256".into(),
        ));
    }
    let mut pos = HEADER_LEN;
    let mut entries = 0u64;
    while pos < trailer_at {
        let mut r = Reader::new(bytes.get(pos..trailer_at).unwrap_or_default());
        let (Some(raw_len), Some(stored_len), Some(crc)) = (r.u32(), r.u32(), r.u32()) else {
            out.problems
                .push(problem(pos, "truncated block header".into()));
            break;
        };
        let (raw_len, stored_len) = (raw_len as usize, stored_len as usize);
        if raw_len > MAX_BLOCK || stored_len > MAX_BLOCK {
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
        if crc32c::crc32c(stored) != crc {
            out.problems
                .push(problem(block_at, "block fails its CRC32C".into()));
            if header.compression == COMPRESSION_ZSTD {
                // Decompressing bytes known to be wrong only produces noise (and a large
                // allocation if the damage is in the declared length); uncompressed blocks
                // are still decoded so the damaged documents can be named.
                continue;
            }
        }
        let raw = if header.compression == COMPRESSION_ZSTD {
            match zstd::bulk::decompress(stored, raw_len) {
                Ok(raw) if raw.len() == raw_len => raw,
                Ok(_) | Err(_) => {
                    out.problems
                        .push(problem(block_at, "block does not decompress".into()));
                    continue;
                }
            }
        } else {
            stored.to_vec()
        };
        let data_at = block_at + BLOCK_HEADER_LEN;
        entries += decode_entries(&raw, header.compression, data_at, &mut out);
    }
    if out.problems.is_empty() {
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
    out.state.lsn = header.lsn;
    out.state.commit_ts = header.commit_ts;
    out
}

/// Decodes the entries of one raw block into `out.state`; returns how many were read.
fn decode_entries(raw: &[u8], compression: u32, data_at: usize, out: &mut Decoded) -> u64 {
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
            Some(ENTRY_COLLECTION) => {
                let Some(name) = r.str16() else {
                    out.problems.push(bad("collection"));
                    return n;
                };
                out.state.collections.entry(name.into()).or_default();
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
                out.documents_checked += 1;
                if crate::codec::sha256(value) != meta.sha256 {
                    out.problems.push(CheckpointProblem {
                        offset: where_(value_at),
                        detail: format!(
                            "document {coll}/{key} (version {}) does not match its SHA-256",
                            meta.version
                        ),
                    });
                }
                let key: Arc<str> = key.into();
                let c: &mut Collection = out.state.collections.entry(coll.into()).or_default();
                c.insert_doc(
                    key.clone(),
                    Document {
                        key,
                        value: value.into(),
                        meta,
                    },
                );
            }
            Some(ENTRY_TOMBSTONE) => {
                let parsed = (|| Some((r.str16()?, r.str16()?, r.u64()?)))();
                let Some((coll, key, lsn)) = parsed else {
                    out.problems.push(bad("tombstone"));
                    return n;
                };
                out.state
                    .collections
                    .entry(coll.into())
                    .or_default()
                    .tombstones
                    .insert(key.into(), lsn);
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

//! Stream files: the durable home of stream values under `DATA/streams/`, derived from the log.
//!
//! Each stream (each *incarnation*: a stream deleted and created again gets a new one) has a
//! directory `<created lsn:020>-<name>/` of append-only segment files `<base:020>.stream`, each
//! a 40-byte header and entry frames (`len u32 | crc u32 | seq u64 | commit_ts u64 | value`,
//! CRC32C over everything after the crc). A stream's positions are virtual: the file holding
//! position `p` is the one with the largest base at or below `p`, at offset `header + p - base`.
//! Byte layout: `docs/FORMAT.md`, "Stream files".
//!
//! The log stays the source of truth: the committer writes an append's frames here after the
//! commit's log write and before publishing it (never synced on the commit path); the
//! checkpointer syncs these files before writing a checkpoint, which records each stream's
//! watermark (`end_pos`); open truncates every file to the chosen checkpoint's watermark and
//! replay appends again what the log holds after it, so a crash or power cut anywhere leaves
//! nothing that open does not repair. Files are removed only when neither kept checkpoint needs
//! them. Every file operation goes through `io.rs`. This module never decides what a stream
//! holds: `stream/mod.rs` and the state do.
//!
//! With encryption on (issue 12) files are written in format 2: a 56-byte header naming the
//! key id and a random salt, and each entry sealed as `len u32 | crc u32 | envelope` (the
//! envelope of `seq u64 | commit_ts u64 | value`, at index = its byte offset, so 21 bytes
//! longer than its plaintext frame). Positions stay those of the plaintext frames (the state
//! and checkpoints do not change with encryption); each sealed file keeps the position of
//! every frame in it to find its offset. A sealed file is appended to only by the process
//! that created it: after a reopen (which may have cut bytes past a watermark) the next
//! append starts a new file, so no offset is ever sealed twice under one file key.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::codec::{PutLe, Reader};
use crate::crypto::{FileCipher, FileId, FileKind, KeyId, Keyring, ENVELOPE_OVERHEAD};
use crate::error::{Damage, Error, IoContext, Result};
use crate::io::{self, Faults};
use crate::log::record::{CommitRecord, StreamOp};
use crate::state::State;
use crate::stream::{frame_len, IndexEntry, StreamEntry, ENTRY_HEADER_LEN};

/// The directory of stream files inside a data directory.
pub const STREAMS_DIR: &str = "streams";
/// First bytes of every stream file.
pub(crate) const STREAM_MAGIC: [u8; 8] = *b"AMBRSTRM";
/// Stream file format version of plaintext files.
pub(crate) const STREAM_FORMAT_VERSION: u32 = 1;
/// Stream file format version of sealed files (encryption on).
pub(crate) const STREAM_FORMAT_SEALED: u32 = 2;
/// Stream file header: magic, version u32, reserved u32, created_lsn u64, base u64, crc u32,
/// reserved u32.
pub(crate) const STREAM_HEADER_LEN: u64 = 40;
/// Sealed stream file header: magic, version u32 = 2, key_id u32, created_lsn u64, base u64,
/// salt [16], crc u32 (of bytes 0..48), reserved u32.
pub(crate) const STREAM_HEADER_LEN_SEALED: u64 = 56;
/// Bytes a sealed entry frame has beyond its plaintext frame.
const SEALED_EXTRA: u64 = ENVELOPE_OVERHEAD as u64;
/// Bytes after which the next append starts a new segment file (`Options` may lower it).
pub const DEFAULT_STREAM_SEGMENT_BYTES: u64 = 64 << 20;

/// Which bytes of which incarnations a checkpoint (or state) needs: created LSN to
/// (first_pos, end_pos).
pub(crate) type Marks = BTreeMap<u64, (u64, u64)>;

/// The marks of a state.
pub(crate) fn marks(state: &State) -> Marks {
    state
        .streams
        .values()
        .map(|s| (s.created_lsn, (s.first_pos, s.end_pos)))
        .collect()
}

/// The stream files of one open database.
pub(crate) struct StreamFiles {
    root: PathBuf,
    faults: Faults,
    /// With encryption on, new files are sealed with the first key.
    keys: Option<Keyring>,
    segment_bytes: u64,
    inner: Mutex<Files>,
}

#[derive(Default)]
struct Files {
    /// Live stream name to its incarnation (mirrors the state the committer builds).
    live: HashMap<Arc<str>, u64>,
    /// Every incarnation with files (or about to have them), by created LSN.
    incs: BTreeMap<u64, Inc>,
    /// Files written since the last sync.
    unsynced: BTreeSet<PathBuf>,
    /// Directories whose entries changed since the last sync (the root included).
    dirs_unsynced: BTreeSet<PathBuf>,
    /// What the last checkpoint written (or loaded) needs; files it needs are never removed.
    last_marks: Marks,
}

struct Inc {
    dir: PathBuf,
    /// Segment files by base position.
    segments: BTreeMap<u64, PathBuf>,
    /// The sealed ones among them, by base position.
    sealed: HashMap<u64, SealedSeg>,
    /// Bytes written (the next frame's position).
    end_pos: u64,
    /// Base of the file this process created last: the only one a sealed append may extend.
    created_here: Option<u64>,
}

/// A sealed stream file: its cipher, and the position of every frame in it (from its first).
#[derive(Clone)]
struct SealedSeg {
    cipher: Arc<FileCipher>,
    starts: Vec<u64>,
}

impl SealedSeg {
    /// The byte offset in the file of position `pos` (a frame's start, or the end of the file's
    /// frames), for a file based at `base`.
    fn offset(&self, base: u64, pos: u64) -> u64 {
        let before = self.starts.partition_point(|s| *s < pos) as u64;
        STREAM_HEADER_LEN_SEALED + (pos - base) + before * SEALED_EXTRA
    }
}

/// A byte range of one file that a read decodes.
struct Chunk {
    path: PathBuf,
    from_at: u64,
    to_at: u64,
    /// The file's cipher when it is sealed.
    cipher: Option<Arc<FileCipher>>,
}

/// What a stream file's header says.
struct Header {
    len: u64,
    /// Sealed: its key id and salt.
    sealed: Option<(KeyId, [u8; 16])>,
}

fn file_id(created_lsn: u64, base: u64, salt: [u8; 16]) -> FileId {
    let mut timeline = [0u8; 16];
    if let Some(t) = timeline.get_mut(..8) {
        t.copy_from_slice(&base.to_le_bytes());
    }
    FileId {
        kind: FileKind::StreamFile,
        database_id: [0; 16],
        // The file's base position stands in the timeline field: a file renamed to another
        // base fails authentication.
        timeline_id: timeline,
        file_lsn: created_lsn,
        salt,
    }
}

fn dir_name(created_lsn: u64, name: &str) -> String {
    format!("{created_lsn:020}-{name}")
}

fn segment_name(base: u64) -> String {
    format!("{base:020}.stream")
}

fn parse_dir_name(name: &str) -> Option<(u64, &str)> {
    let (lsn, stream) = name.split_at_checked(20)?;
    Some((lsn.parse().ok()?, stream.strip_prefix('-')?))
}

fn encode_header(created_lsn: u64, base: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(STREAM_HEADER_LEN as usize);
    b.extend_from_slice(&STREAM_MAGIC);
    b.put_u32(STREAM_FORMAT_VERSION);
    b.put_u32(0);
    b.put_u64(created_lsn);
    b.put_u64(base);
    let crc = crc32c::crc32c(&b);
    b.put_u32(crc);
    b.put_u32(0);
    b
}

fn encode_sealed_header(created_lsn: u64, base: u64, key_id: KeyId, salt: &[u8; 16]) -> Vec<u8> {
    let mut b = Vec::with_capacity(STREAM_HEADER_LEN_SEALED as usize);
    b.extend_from_slice(&STREAM_MAGIC);
    b.put_u32(STREAM_FORMAT_SEALED);
    b.put_u32(key_id.get());
    b.put_u64(created_lsn);
    b.put_u64(base);
    b.extend_from_slice(salt);
    let crc = crc32c::crc32c(&b);
    b.put_u32(crc);
    b.put_u32(0);
    b
}

/// Reads a stream file's header (plaintext format 1 or sealed format 2) and checks it
/// against its path; returns why it is wrong.
fn parse_header(bytes: &[u8], created_lsn: u64, base: u64) -> std::result::Result<Header, String> {
    let mut r = Reader::new(bytes);
    let magic = r.array::<8>().ok_or("shorter than its header")?;
    if magic != STREAM_MAGIC {
        return Err("not a stream file (bad magic)".into());
    }
    if r.u32() != Some(STREAM_FORMAT_SEALED) {
        check_header(bytes, created_lsn, base)?;
        return Ok(Header {
            len: STREAM_HEADER_LEN,
            sealed: None,
        });
    }
    let (Some(key), Some(lsn), Some(b), Some(salt), Some(crc), Some(zero)) =
        (r.u32(), r.u64(), r.u64(), r.array::<16>(), r.u32(), r.u32())
    else {
        return Err("shorter than its header".into());
    };
    if crc32c::crc32c(bytes.get(..48).unwrap_or_default()) != crc || zero != 0 {
        return Err("stream file header fails its CRC32C".into());
    }
    let key = KeyId::from_u32(key).ok_or("sealed stream file header names key id 0")?;
    if lsn != created_lsn || b != base {
        return Err(format!(
            "header says stream of LSN {lsn} at {b}, its path says LSN {created_lsn} at {base}"
        ));
    }
    Ok(Header {
        len: STREAM_HEADER_LEN_SEALED,
        sealed: Some((key, salt)),
    })
}

/// The key id a stream file's header names, when it is sealed (header bytes only).
fn sealed_key_of(bytes: &[u8]) -> Option<KeyId> {
    let mut r = Reader::new(bytes);
    if r.array::<8>()? != STREAM_MAGIC || r.u32()? != STREAM_FORMAT_SEALED {
        return None;
    }
    KeyId::from_u32(r.u32()?)
}

/// What [`verify_files`] found in a data directory's stream files.
#[derive(Debug, Default)]
pub(crate) struct StreamCheck {
    /// Entries whose CRC (and, sealed with a given key, authentication) was checked.
    pub entries: u64,
    /// Damage: (file, byte offset, what).
    pub problems: Vec<(PathBuf, Option<u64>, String)>,
    /// Sealed files checked for structure only, for want of their key: (file, key id).
    pub structure_only: Vec<(PathBuf, KeyId)>,
}

/// Checks, without changing anything, that the stream files under `data` hold what `state`
/// (the newest sound checkpoint's) says they do: for every stream, the files from its first
/// retained position to its watermark exist, every frame there decodes (CRC32C; a sealed
/// frame authenticates when `keys` has its key) and sequence numbers run from `first_seq`
/// to `next_seq - 1` without a gap, commit times never going back. Bytes past a watermark
/// are not checked: they were written after the checkpoint and open rewrites them from the
/// log. Stream directories the state does not name are likewise left to open.
pub(crate) fn verify_files(data: &Path, state: &State, keys: Option<&Keyring>) -> StreamCheck {
    let faults = Faults::none();
    let mut out = StreamCheck::default();
    for (name, s) in &state.streams {
        if s.first_pos >= s.end_pos {
            continue;
        }
        let dir = data.join(STREAMS_DIR).join(dir_name(s.created_lsn, name));
        let mut segments: BTreeMap<u64, PathBuf> = BTreeMap::new();
        match io::read_dir(&dir, &faults) {
            Ok(paths) => {
                for path in paths {
                    let base = path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .and_then(parse_segment_name);
                    if let Some(b) = base.filter(|b| *b < s.end_pos) {
                        segments.insert(b, path);
                    }
                }
            }
            Err(e) => {
                out.problems.push((
                    dir.clone(),
                    None,
                    format!("stream {name} holds entries but its directory cannot be listed: {e}"),
                ));
                continue;
            }
        }
        let bases: Vec<u64> = segments.keys().copied().collect();
        if !bases.iter().any(|b| *b <= s.first_pos) {
            out.problems.push((
                dir.clone(),
                None,
                format!(
                    "stream {name}: no file holds its first retained entry (position {})",
                    s.first_pos
                ),
            ));
            continue;
        }
        // The next entry's seq, unknown after a file checked for structure only.
        let mut expect = Some(s.first_seq);
        let mut last_ts = 0u64;
        let mut damaged = false;
        for (i, (base, path)) in segments.iter().enumerate() {
            let end = bases.get(i + 1).copied().unwrap_or(s.end_pos);
            if end <= s.first_pos {
                continue;
            }
            let from = s.first_pos.max(*base);
            match check_file(path, s.created_lsn, *base, from, end, keys) {
                Err((offset, detail)) => {
                    out.problems
                        .push((path.clone(), offset, format!("stream {name}: {detail}")));
                    damaged = true;
                }
                Ok(FileCheck::StructureOnly(key)) => {
                    out.structure_only.push((path.clone(), key));
                    expect = None;
                }
                Ok(FileCheck::Entries(entries)) => {
                    for (offset, seq, ts) in entries {
                        out.entries += 1;
                        if expect.is_some_and(|e| e != seq) || ts < last_ts {
                            out.problems.push((
                                path.clone(),
                                Some(offset),
                                format!(
                                    "stream {name}: entry seq {seq} at commit time {ts} \
                                     does not follow seq {} at {last_ts}",
                                    expect.map_or(0, |e| e.saturating_sub(1))
                                ),
                            ));
                            damaged = true;
                            break;
                        }
                        expect = Some(seq + 1);
                        last_ts = ts;
                    }
                }
            }
            if damaged {
                break;
            }
        }
        if let Some(e) = expect.filter(|e| !damaged && *e != s.next_seq) {
            out.problems.push((
                dir,
                None,
                format!(
                    "stream {name}: its files end at seq {}, the checkpoint says {}",
                    e.saturating_sub(1),
                    s.next_seq.saturating_sub(1)
                ),
            ));
        }
    }
    out
}

/// One stream file as [`check_file`] found it.
enum FileCheck {
    /// Every entry from the first checked position: (byte offset, seq, commit_ts).
    Entries(Vec<(u64, u64, u64)>),
    /// Sealed with this key, which was not given: frames walked, contents not opened.
    StructureOnly(KeyId),
}

/// Walks the frames of the stream file at `path` (based at `base`) up to position `end`,
/// decoding those from position `from` on. Errors are (byte offset, what is wrong).
fn check_file(
    path: &Path,
    created_lsn: u64,
    base: u64,
    from: u64,
    end: u64,
    keys: Option<&Keyring>,
) -> std::result::Result<FileCheck, (Option<u64>, String)> {
    let bytes = io::read(path, &Faults::none()).map_err(|e| (None, format!("cannot read: {e}")))?;
    let header = parse_header(&bytes, created_lsn, base).map_err(|e| (Some(0), e))?;
    let cipher = match header.sealed {
        Some((key_id, salt)) => match keys.filter(|k| k.get(key_id).is_some()) {
            Some(k) => Some(
                k.file_cipher_for(&file_id(created_lsn, base, salt), key_id)
                    .map_err(|e| (Some(0), e.to_string()))?,
            ),
            None => None,
        },
        None => None,
    };
    let mut entries = vec![];
    let (mut pos, mut at) = match header.sealed {
        Some(_) => (base, header.len),
        // Plaintext offsets are positions: start at `from` directly.
        None => (from, header.len + (from - base)),
    };
    while pos < end {
        let frame = bytes.get(at as usize..).unwrap_or_default();
        if frame.is_empty() {
            return Err((
                Some(at),
                format!("the file ends at byte {at} but must hold entries up to position {end}"),
            ));
        }
        let logical = match (&header.sealed, &cipher) {
            (None, _) => {
                let (seq, ts, _, n) = decode_entry(frame).map_err(|e| (Some(at), e))?;
                entries.push((at, seq, ts));
                at += n as u64;
                n as u64
            }
            (Some(_), Some(c)) if pos >= from => {
                let (seq, ts, _, n) =
                    decode_sealed_entry(frame, c, at).map_err(|e| (Some(at), e))?;
                entries.push((at, seq, ts));
                at += n as u64;
                n as u64 - SEALED_EXTRA
            }
            (Some(_), _) => {
                let n = sealed_frame(frame).map_err(|e| (Some(at), e))?.1;
                at += n as u64;
                n as u64 - SEALED_EXTRA
            }
        };
        pos += logical;
    }
    if pos != end {
        return Err((
            Some(at),
            format!("a frame crosses position {end}, where the next file or the watermark begins"),
        ));
    }
    match (header.sealed, cipher) {
        (Some((key, _)), None) => Ok(FileCheck::StructureOnly(key)),
        _ => Ok(FileCheck::Entries(entries)),
    }
}

/// The stream files under `data` that `state`'s streams may need, as paths relative to
/// `data` (`streams/<created lsn:020>-<name>/<base:020>.stream`), in order: every file of
/// every incarnation `state` has (a backup copies them; open cuts them back to the
/// watermarks of the checkpoint it restores).
pub(crate) fn files_of(data: &Path, state: &State, faults: &Faults) -> Result<Vec<String>> {
    let mut out = vec![];
    for (name, s) in &state.streams {
        let dir_rel = dir_name(s.created_lsn, name);
        let dir = data.join(STREAMS_DIR).join(&dir_rel);
        if s.end_pos == 0 && !dir.exists() {
            // Configured, never appended to: no directory yet.
            continue;
        }
        let mut names: Vec<String> = io::read_dir(&dir, faults)
            .context(|| format!("listing {}", dir.display()))?
            .into_iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .filter(|f| parse_segment_name(f).is_some())
            .collect();
        names.sort();
        out.extend(
            names
                .into_iter()
                .map(|f| format!("{STREAMS_DIR}/{dir_rel}/{f}")),
        );
    }
    Ok(out)
}

/// Whether `rel` names a stream file as [`files_of`] does (what a restore accepts from a
/// backup manifest before writing it under a data directory: no other path).
pub(crate) fn is_stream_file_path(rel: &str) -> bool {
    let mut parts = rel.split('/');
    let (Some(root), Some(dir), Some(file), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    root == STREAMS_DIR
        && parse_dir_name(dir)
            .is_some_and(|(_, name)| crate::document::validate_collection(name).is_ok())
        && parse_segment_name(file).is_some()
}

fn parse_segment_name(file: &str) -> Option<u64> {
    let digits = file.strip_suffix(".stream")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The key id of every sealed stream file under `data`, each with one file sealed with it
/// (headers only; open checks them before recovery reads anything).
pub(crate) fn key_ids_of_files(data: &Path) -> Result<Vec<(KeyId, PathBuf)>> {
    let root = data.join(STREAMS_DIR);
    let mut out: Vec<(KeyId, PathBuf)> = vec![];
    if !root.is_dir() {
        return Ok(out);
    }
    let faults = Faults::none();
    for dir in io::read_dir(&root, &faults).context(|| format!("listing {}", root.display()))? {
        if !dir.is_dir() {
            continue;
        }
        for path in io::read_dir(&dir, &faults).context(|| format!("listing {}", dir.display()))? {
            // A rotation's leftover `.rekey` file is removed by open, never read.
            let dotted = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_none_or(|n| n.starts_with('.'));
            if dotted {
                continue;
            }
            let Ok(f) = io::open_read(&path, &faults) else {
                continue;
            };
            let mut head = Vec::with_capacity(STREAM_HEADER_LEN_SEALED as usize);
            if std::io::Read::read_to_end(
                &mut std::io::Read::take(f, STREAM_HEADER_LEN_SEALED),
                &mut head,
            )
            .is_err()
            {
                continue;
            }
            if let Some(k) = sealed_key_of(&head) {
                if !out.iter().any(|(id, _)| *id == k) {
                    out.push((k, path));
                }
            }
        }
    }
    Ok(out)
}

/// Encodes one sealed entry frame at byte offset `offset` of its file.
fn encode_sealed_entry(
    buf: &mut Vec<u8>,
    cipher: &FileCipher,
    offset: u64,
    seq: u64,
    ts: u64,
    value: &[u8],
) -> Result<()> {
    let mut plain = Vec::with_capacity(16 + value.len());
    plain.put_u64(seq);
    plain.put_u64(ts);
    plain.extend_from_slice(value);
    let env = cipher.seal(offset, &plain)?;
    let start = buf.len();
    buf.put_u32(u32::try_from(env.len()).unwrap_or(u32::MAX));
    buf.put_u32(crc32c::crc32c(&env));
    buf.extend_from_slice(&env);
    debug_assert_eq!(
        (buf.len() - start) as u64,
        frame_len(value.len()) + SEALED_EXTRA
    );
    Ok(())
}

/// The length and CRC check of the sealed frame at the start of `buf`: its envelope and
/// whole length.
fn sealed_frame(buf: &[u8]) -> std::result::Result<(&[u8], usize), String> {
    let mut r = Reader::new(buf);
    let (Some(len), Some(crc)) = (r.u32(), r.u32()) else {
        return Err("entry header is incomplete".into());
    };
    let len = len as usize;
    if len > crate::limits::MAX_STREAM_ENTRY_BYTES + 16 + ENVELOPE_OVERHEAD {
        return Err(format!("entry declares {len} bytes, over the entry limit"));
    }
    if len < 16 + ENVELOPE_OVERHEAD {
        return Err(format!(
            "sealed entry declares {len} bytes, shorter than its envelope"
        ));
    }
    let env = buf.get(8..8 + len).ok_or("entry is incomplete")?;
    if crc32c::crc32c(env) != crc {
        return Err("entry fails its CRC32C".into());
    }
    Ok((env, 8 + len))
}

/// Opens the sealed frame at the start of `buf`, at byte offset `offset`: (seq, commit_ts,
/// value, frame length).
fn decode_sealed_entry(
    buf: &[u8],
    cipher: &FileCipher,
    offset: u64,
) -> std::result::Result<(u64, u64, Vec<u8>, usize), String> {
    let (env, n) = sealed_frame(buf)?;
    let plain = cipher.open(offset, env).map_err(|e| e.to_string())?;
    let mut r = Reader::new(&plain);
    let (Some(seq), Some(ts)) = (r.u64(), r.u64()) else {
        return Err("sealed entry is shorter than its sequence number and time".into());
    };
    Ok((seq, ts, plain.get(16..).unwrap_or_default().to_vec(), n))
}

/// Checks a stream file's header; returns why it is wrong.
fn check_header(bytes: &[u8], created_lsn: u64, base: u64) -> std::result::Result<(), String> {
    let mut r = Reader::new(bytes);
    let magic = r.array::<8>().ok_or("shorter than its header")?;
    let (Some(version), Some(_), Some(lsn), Some(b), Some(crc), Some(zero)) =
        (r.u32(), r.u32(), r.u64(), r.u64(), r.u32(), r.u32())
    else {
        return Err("shorter than its header".into());
    };
    if magic != STREAM_MAGIC {
        return Err("not a stream file (bad magic)".into());
    }
    if crc32c::crc32c(bytes.get(..32).unwrap_or_default()) != crc || zero != 0 {
        return Err("stream file header fails its CRC32C".into());
    }
    if version == 0 || version > STREAM_FORMAT_VERSION {
        return Err(format!("stream file format {version} is not supported"));
    }
    if lsn != created_lsn || b != base {
        return Err(format!(
            "header says stream of LSN {lsn} at {b}, its path says LSN {created_lsn} at {base}"
        ));
    }
    Ok(())
}

/// Reads the entry frames of a plaintext stream file one at a time, through a buffer of
/// [`FRAME_BUFFER`] bytes and one frame (never the whole file). Open reads files with it;
/// [`decode_stream_file`] (the `stream_file` fuzz target) reads bytes with it.
struct FrameCursor<R> {
    reader: std::io::BufReader<R>,
    frame: Vec<u8>,
    path: PathBuf,
}

/// The read buffer of a [`FrameCursor`].
const FRAME_BUFFER: usize = 1 << 20;

impl FrameCursor<io::ReadFile> {
    /// Opens `path` and checks its header (that of incarnation `created_lsn`, based at
    /// `base`).
    fn open(path: &Path, faults: &Faults, created_lsn: u64, base: u64) -> Result<Self> {
        let f = io::open_read(path, faults).context(|| format!("opening {}", path.display()))?;
        FrameCursor::new(f, path, created_lsn, base)
    }
}

impl<R: std::io::Read + std::io::Seek> FrameCursor<R> {
    /// Reads and checks the header of the stream file `r` (named `path` in errors).
    fn new(r: R, path: &Path, created_lsn: u64, base: u64) -> Result<Self> {
        let mut c = FrameCursor {
            reader: std::io::BufReader::with_capacity(FRAME_BUFFER, r),
            frame: Vec::new(),
            path: path.to_owned(),
        };
        let mut head = [0u8; STREAM_HEADER_LEN as usize];
        let got = c.fill(&mut head)?;
        check_header(head.get(..got).unwrap_or_default(), created_lsn, base)
            .map_err(|e| damaged(path, 0, e))?;
        Ok(c)
    }

    /// Reads into `buf` until it is full or the file ends; returns the bytes read.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            let got = std::io::Read::read(&mut self.reader, buf.get_mut(n..).unwrap_or_default())
                .context(|| format!("reading {}", self.path.display()))?;
            if got == 0 {
                break;
            }
            n += got;
        }
        Ok(n)
    }

    /// Moves to byte `offset` of the file (a frame's start).
    fn skip_to(&mut self, offset: u64) -> Result<()> {
        std::io::Seek::seek(&mut self.reader, std::io::SeekFrom::Start(offset))
            .map(|_| ())
            .context(|| format!("reading {}", self.path.display()))
    }

    /// The next frame, checked: (seq, commit_ts, frame length); an error names what is wrong.
    /// `Ok(None)` at the end of the file.
    fn next(&mut self) -> std::result::Result<Option<(u64, u64, usize)>, String> {
        let mut head = [0u8; 8];
        let got = self.fill(&mut head).map_err(|e| e.to_string())?;
        if got == 0 {
            return Ok(None);
        }
        let len = match head.get(..4).filter(|_| got == 8) {
            Some(b) => u32::from_le_bytes(b.try_into().unwrap_or_default()) as usize,
            None => return Err("entry header is incomplete".into()),
        };
        // Bounded before anything is allocated for it.
        if len > crate::limits::MAX_STREAM_ENTRY_BYTES {
            return Err(format!("entry declares {len} bytes, over the entry limit"));
        }
        let total = ENTRY_HEADER_LEN as usize + len;
        let mut frame = std::mem::take(&mut self.frame);
        frame.clear();
        frame.extend_from_slice(&head);
        frame.resize(total, 0);
        let got = self
            .fill(frame.get_mut(8..).unwrap_or_default())
            .map_err(|e| e.to_string());
        self.frame = frame;
        if got? != total - 8 {
            return Err("entry is incomplete".into());
        }
        decode_entry(&self.frame).map(|(seq, ts, _, len)| Some((seq, ts, len)))
    }
}

/// One entry [`decode_stream_file`] found: (byte offset, seq, commit_ts).
pub type DecodedEntry = (u64, u64, u64);

/// Decodes a whole plaintext stream file held in `bytes` as open reads one: its header (the
/// incarnation and base it names), then every entry frame to the end. Returns each entry's
/// (byte offset, seq, commit_ts), or the byte offset where it stops being a stream file and
/// why. Used by the `stream_file` fuzz target; it never panics and allocates at most one
/// frame (bounded by `limits::MAX_STREAM_ENTRY_BYTES`) beyond its buffer and the list it
/// returns.
pub fn decode_stream_file(bytes: &[u8]) -> std::result::Result<Vec<DecodedEntry>, (u64, String)> {
    let field = |at: usize| {
        bytes
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    };
    let path = Path::new("stream file");
    let mut c = FrameCursor::new(std::io::Cursor::new(bytes), path, field(16), field(24))
        .map_err(|e| (0, e.to_string()))?;
    let mut at = STREAM_HEADER_LEN;
    let mut out = vec![];
    while let Some((seq, ts, len)) = c.next().map_err(|e| (at, e))? {
        out.push((at, seq, ts));
        at += len as u64;
    }
    Ok(out)
}

/// Decodes one entry frame at the start of `buf`: (seq, commit_ts, value, frame length).
pub(crate) fn decode_entry(buf: &[u8]) -> std::result::Result<(u64, u64, &[u8], usize), String> {
    let mut r = Reader::new(buf);
    let (Some(len), Some(crc)) = (r.u32(), r.u32()) else {
        return Err("entry header is incomplete".into());
    };
    let len = len as usize;
    if len > crate::limits::MAX_STREAM_ENTRY_BYTES {
        return Err(format!("entry declares {len} bytes, over the entry limit"));
    }
    let total = ENTRY_HEADER_LEN as usize + len;
    let covered = buf.get(8..total).ok_or("entry is incomplete")?;
    if crc32c::crc32c(covered) != crc {
        return Err("entry fails its CRC32C".into());
    }
    let (Some(seq), Some(ts), Some(value)) = (r.u64(), r.u64(), r.bytes(len)) else {
        return Err("entry is incomplete".into());
    };
    Ok((seq, ts, value, total))
}

fn encode_entry(buf: &mut Vec<u8>, seq: u64, ts: u64, value: &[u8]) {
    let start = buf.len();
    // Entries are at most `MAX_STREAM_ENTRY_BYTES`, checked before they are logged.
    buf.put_u32(u32::try_from(value.len()).unwrap_or(u32::MAX));
    buf.put_u32(0);
    buf.put_u64(seq);
    buf.put_u64(ts);
    buf.extend_from_slice(value);
    let crc = crc32c::crc32c(buf.get(start + 8..).unwrap_or_default());
    if let Some(h) = buf.get_mut(start + 4..start + 8) {
        h.copy_from_slice(&crc.to_le_bytes());
    }
}

fn damaged(file: &Path, offset: u64, detail: String) -> Error {
    Error::Damaged(Damage {
        file: file.to_owned(),
        offset,
        detail,
        hint: "stream files below the checkpoint's watermark were synced before it was \
               written; restore the directory from a backup"
            .into(),
    })
}

/// An entry open read from a sealed file: (position, seq, commit_ts).
type OpenedEntry = (u64, u64, u64);

/// Suffix of a stream file being rewritten by a key rotation (`.<base>.stream.rekey`).
const REKEY_SUFFIX: &str = ".rekey";

/// Every entry of the stream file at `path` (based at `base`, its entries ending at position
/// `end`), plaintext or sealed: (seq, commit_ts, value). For a rewrite; damage is refused.
fn read_whole(
    path: &Path,
    created_lsn: u64,
    base: u64,
    end: u64,
    keys: Option<&Keyring>,
    faults: &Faults,
) -> Result<Vec<(u64, u64, Vec<u8>)>> {
    let bytes = io::read(path, faults).context(|| format!("reading {}", path.display()))?;
    let header = parse_header(&bytes, created_lsn, base).map_err(|e| damaged(path, 0, e))?;
    let cipher = match header.sealed {
        Some((key_id, salt)) => {
            let keys = keys.ok_or_else(|| Error::KeyMissing {
                key_id: key_id.get(),
                unit: path.display().to_string(),
                available: crate::crypto::describe_keys(None),
            })?;
            Some(keys.file_cipher_for(&file_id(created_lsn, base, salt), key_id)?)
        }
        None => None,
    };
    let mut out = vec![];
    let (mut pos, mut at) = (base, header.len);
    while pos < end {
        let frame = bytes.get(at as usize..).unwrap_or_default();
        let (seq, ts, value, n, logical) = match &cipher {
            Some(c) => {
                let (q, t, v, n) =
                    decode_sealed_entry(frame, c, at).map_err(|e| damaged(path, at, e))?;
                (q, t, v, n, n as u64 - SEALED_EXTRA)
            }
            None => {
                let (q, t, v, n) = decode_entry(frame).map_err(|e| damaged(path, at, e))?;
                (q, t, v.to_vec(), n, n as u64)
            }
        };
        out.push((seq, ts, value));
        pos += logical;
        at += n as u64;
    }
    Ok(out)
}

/// Opens a sealed stream file based at `base` whose entries end at position `end`: walks its
/// frames (checking each CRC) up to `end`, cuts what lies past it, and opens every entry from
/// `first_pos` on. Returns the file's frame positions and, per opened entry, (position, seq,
/// commit_ts). A file that ends before `end`, or an entry that does not authenticate, is
/// damage; a key the keyring lacks is `KeyMissing` (open checked the keys before, so only a
/// file changed since gets here).
fn open_sealed(
    path: &Path,
    created_lsn: u64,
    base: u64,
    end: u64,
    first_pos: u64,
    keys: Option<&Keyring>,
    faults: &Faults,
) -> Result<(SealedSeg, Vec<OpenedEntry>)> {
    let bytes = io::read(path, faults).context(|| format!("reading {}", path.display()))?;
    let header = parse_header(&bytes, created_lsn, base).map_err(|e| damaged(path, 0, e))?;
    let Some((key_id, salt)) = header.sealed else {
        return Err(damaged(path, 0, "not a sealed stream file".into()));
    };
    let keys = keys.ok_or_else(|| Error::KeyMissing {
        key_id: key_id.get(),
        unit: path.display().to_string(),
        available: crate::crypto::describe_keys(None),
    })?;
    let cipher = keys.file_cipher_for(&file_id(created_lsn, base, salt), key_id)?;
    let mut starts = vec![];
    let mut entries = vec![];
    let (mut pos, mut at) = (base, header.len);
    while pos < end {
        let frame = bytes.get(at as usize..).unwrap_or_default();
        if frame.is_empty() {
            return Err(damaged(
                path,
                at,
                format!("the file ends at byte {at} but must hold entries up to position {end}"),
            ));
        }
        let n = if pos >= first_pos {
            let (seq, ts, _, n) =
                decode_sealed_entry(frame, &cipher, at).map_err(|e| damaged(path, at, e))?;
            entries.push((pos, seq, ts));
            n
        } else {
            sealed_frame(frame).map_err(|e| damaged(path, at, e))?.1
        };
        starts.push(pos);
        pos += n as u64 - SEALED_EXTRA;
        at += n as u64;
    }
    if pos != end {
        return Err(damaged(
            path,
            at,
            format!("a frame crosses position {end}, where the next file or the watermark begins"),
        ));
    }
    if (bytes.len() as u64) > at {
        let mut f =
            io::open_write(path, faults).context(|| format!("opening {}", path.display()))?;
        f.set_len(at)
            .context(|| format!("truncating {}", path.display()))?;
    }
    Ok((
        SealedSeg {
            cipher: Arc::new(cipher),
            starts,
        },
        entries,
    ))
}

impl StreamFiles {
    /// Opens `DATA/streams/` for `state` (a checkpoint's, before replay): removes the
    /// directories of streams the state does not have (deleted, or created after it: replay
    /// writes them again), removes and truncates every file past each stream's watermark, and
    /// rebuilds each stream's index by reading its retained entries (checking every CRC and
    /// sequence number). Damage below a watermark is refused.
    pub(crate) fn open(
        data: &Path,
        faults: &Faults,
        segment_bytes: u64,
        state: &mut State,
        keys: Option<&Keyring>,
    ) -> Result<StreamFiles> {
        let root = data.join(STREAMS_DIR);
        io::create_dir_all(&root, faults).context(|| format!("creating {}", root.display()))?;
        let mut files = Files {
            last_marks: marks(state),
            ..Files::default()
        };
        for path in io::read_dir(&root, faults).context(|| format!("listing {}", root.display()))? {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let keep = parse_dir_name(name).is_some_and(|(lsn, stream)| {
                state
                    .streams
                    .get(stream)
                    .is_some_and(|s| s.created_lsn == lsn)
            });
            if !keep {
                tracing::info!(dir = %path.display(), "removing stream files the checkpoint does not name");
                io::remove_dir_all(&path, faults)
                    .context(|| format!("removing {}", path.display()))?;
                files.dirs_unsynced.insert(root.clone());
            }
        }
        let names: Vec<Arc<str>> = state.streams.keys().cloned().collect();
        for name in names {
            let Some(s) = state.streams.get_mut(&name) else {
                continue;
            };
            let dir = root.join(dir_name(s.created_lsn, &name));
            let mut segments = BTreeMap::new();
            if dir.is_dir() {
                for path in
                    io::read_dir(&dir, faults).context(|| format!("listing {}", dir.display()))?
                {
                    let base = path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .and_then(|n| n.strip_suffix(".stream"))
                        .and_then(|n| n.parse::<u64>().ok());
                    match base {
                        Some(b) if b < s.end_pos => {
                            segments.insert(b, path);
                        }
                        _ => {
                            io::remove_file(&path, faults)
                                .context(|| format!("removing {}", path.display()))?;
                            files.dirs_unsynced.insert(dir.clone());
                        }
                    }
                }
            }
            // Cut the newest file at the watermark, check that every file reaches the next;
            // sealed files are walked frame by frame (their offsets are not positions).
            let bases: Vec<u64> = segments.keys().copied().collect();
            let mut sealed: HashMap<u64, SealedSeg> = HashMap::new();
            let mut sealed_entries: BTreeMap<u64, Vec<OpenedEntry>> = BTreeMap::new();
            for (i, (base, path)) in segments.iter().enumerate() {
                let end = bases.get(i + 1).copied().unwrap_or(s.end_pos);
                let mut head = Vec::with_capacity(STREAM_HEADER_LEN_SEALED as usize);
                let f = io::open_read(path, faults)
                    .context(|| format!("opening {}", path.display()))?;
                std::io::Read::read_to_end(
                    &mut std::io::Read::take(f, STREAM_HEADER_LEN_SEALED),
                    &mut head,
                )
                .context(|| format!("reading {}", path.display()))?;
                if sealed_key_of(&head).is_some() {
                    // Never appended to again, so bytes past the watermark of a file no
                    // entry is read from can stay until the file is collected.
                    if end > s.first_pos {
                        let (seg, entries) = open_sealed(
                            path,
                            s.created_lsn,
                            *base,
                            end,
                            s.first_pos,
                            keys,
                            faults,
                        )?;
                        sealed.insert(*base, seg);
                        sealed_entries.insert(*base, entries);
                    }
                    continue;
                }
                let want = STREAM_HEADER_LEN + (end - base);
                let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                if len < want && end > s.first_pos {
                    return Err(damaged(
                        path,
                        len,
                        format!(
                            "stream {name} file ends at byte {len} but must hold {want} bytes (stream positions {base}..{end})"
                        ),
                    ));
                }
                if len > want {
                    let mut f = io::open_write(path, faults)
                        .context(|| format!("opening {}", path.display()))?;
                    f.set_len(want)
                        .context(|| format!("truncating {}", path.display()))?;
                    files.unsynced.insert(path.clone());
                }
            }
            // Rebuild the index from the first retained entry.
            let mut pos = s.first_pos;
            let mut seq = s.first_seq;
            let mut index = imbl::Vector::new();
            while pos < s.end_pos {
                let Some((&base, path)) = segments.range(..=pos).next_back() else {
                    return Err(damaged(
                        &dir,
                        0,
                        format!("stream {name}: no file holds position {pos} (entry {seq})"),
                    ));
                };
                let end = segments
                    .range(base + 1..)
                    .next()
                    .map_or(s.end_pos, |(b, _)| *b);
                if let Some(entries) = sealed_entries.get(&base) {
                    let from = pos;
                    for &(at, got, ts) in entries.iter().filter(|e| e.0 >= from) {
                        if at != pos || got != seq {
                            return Err(damaged(
                                path,
                                0,
                                format!("stream {name}: entry {got} at position {at} where entry {seq} at {pos} belongs"),
                            ));
                        }
                        index.push_back(IndexEntry { pos, ts });
                        let seg = sealed.get(&base);
                        let next = seg
                            .and_then(|g| g.starts.get(g.starts.partition_point(|s| *s <= at)))
                            .copied()
                            .unwrap_or(end);
                        pos = next;
                        seq += 1;
                    }
                    if pos != end {
                        return Err(damaged(
                            path,
                            0,
                            format!("stream {name}: the file's entries end at position {pos}, not at {end}"),
                        ));
                    }
                    continue;
                }
                // Frame by frame through a bounded buffer: open's memory does not grow with
                // the size of a stream file.
                let mut frames = FrameCursor::open(path, faults, s.created_lsn, base)?;
                frames.skip_to(STREAM_HEADER_LEN + (pos - base))?;
                while pos < end {
                    let at = STREAM_HEADER_LEN + (pos - base);
                    let (got, ts, len) = frames
                        .next()
                        .and_then(|f| f.ok_or_else(|| "entry header is incomplete".to_string()))
                        .map_err(|e| damaged(path, at, e))?;
                    if got != seq {
                        return Err(damaged(
                            path,
                            at,
                            format!("stream {name}: entry {got} where entry {seq} belongs"),
                        ));
                    }
                    index.push_back(IndexEntry { pos, ts });
                    pos += len as u64;
                    seq += 1;
                }
            }
            if seq != s.next_seq || pos != s.end_pos {
                return Err(damaged(
                    &dir,
                    0,
                    format!(
                        "stream {name}: files hold entries up to {} but the checkpoint says {}",
                        seq - 1,
                        s.next_seq - 1
                    ),
                ));
            }
            s.index = index;
            files.live.insert(name.clone(), s.created_lsn);
            files.incs.insert(
                s.created_lsn,
                Inc {
                    dir,
                    segments,
                    sealed,
                    end_pos: s.end_pos,
                    created_here: None,
                },
            );
        }
        Ok(StreamFiles {
            root,
            faults: faults.clone(),
            keys: keys.cloned(),
            segment_bytes: segment_bytes.max(1),
            inner: Mutex::new(files),
        })
    }

    /// These files with new segments started after `bytes` (`Options::stream_segment_bytes`).
    pub(crate) fn with_segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes.max(1);
        self
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Files>> {
        self.inner.lock().map_err(|_| Error::Closed)
    }

    /// Writes the stream entries of a commit (after its log write; replay calls it for every
    /// commit it applies). Not synced: [`StreamFiles::sync`] does that before a checkpoint.
    pub(crate) fn write_record(&self, rec: &CommitRecord) -> Result<()> {
        if rec.streams.is_empty() {
            return Ok(());
        }
        let mut g = self.lock()?;
        for op in &rec.streams {
            match op {
                StreamOp::Append {
                    stream,
                    first_seq,
                    values,
                } => {
                    let lsn = self.incarnation(&mut g, stream, rec.lsn);
                    self.append(&mut g, lsn, *first_seq, rec.commit_ts, values)?;
                }
                StreamOp::Configure { stream, .. } => {
                    self.incarnation(&mut g, stream, rec.lsn);
                }
                StreamOp::Delete { stream } => {
                    g.live.remove(stream);
                }
                StreamOp::Trim { .. } => {}
            }
        }
        Ok(())
    }

    /// A replay's `want` answer for `rec` (every replay that rebuilds stream files uses it:
    /// open, restore, automatic recovery): writes its stream values first and says to apply
    /// it; after the first failure, kept in `error`, says to apply nothing more.
    pub(crate) fn replay_record(&self, rec: &CommitRecord, error: &mut Option<Error>) -> bool {
        if error.is_some() {
            return false;
        }
        match self.write_record(rec) {
            Ok(()) => true,
            Err(e) => {
                *error = Some(e);
                false
            }
        }
    }

    fn incarnation(&self, g: &mut Files, stream: &Arc<str>, lsn: u64) -> u64 {
        if let Some(l) = g.live.get(stream) {
            return *l;
        }
        g.live.insert(stream.clone(), lsn);
        g.incs.insert(
            lsn,
            Inc {
                dir: self.root.join(dir_name(lsn, stream)),
                segments: BTreeMap::new(),
                sealed: HashMap::new(),
                end_pos: 0,
                created_here: None,
            },
        );
        lsn
    }

    fn append(
        &self,
        g: &mut Files,
        lsn: u64,
        first_seq: u64,
        ts: u64,
        values: &[Arc<[u8]>],
    ) -> Result<()> {
        let faults = &self.faults;
        let Some(inc) = g.incs.get_mut(&lsn) else {
            return Err(Error::InvalidArgument(format!(
                "no stream incarnation {lsn}"
            )));
        };
        let mut new_dirs = vec![];
        if !inc.dir.is_dir() {
            io::create_dir_all(&inc.dir, faults)
                .context(|| format!("creating {}", inc.dir.display()))?;
            new_dirs.push(self.root.clone());
        }
        // A new file when the newest is full, and, for sealed files, when this process did
        // not create it (after a reopen: its offsets past a cut watermark were sealed before)
        // or it is in the other form than this handle writes.
        let newest = inc.segments.keys().next_back().copied();
        let roll = match newest {
            None => true,
            Some(base) => {
                let sealed_newest = inc.sealed.contains_key(&base);
                inc.end_pos - base >= self.segment_bytes
                    || sealed_newest != self.keys.is_some()
                    || (sealed_newest && inc.created_here != Some(base))
            }
        };
        if roll {
            let path = inc.dir.join(segment_name(inc.end_pos));
            let mut f =
                io::create(&path, faults).context(|| format!("creating {}", path.display()))?;
            let header = match &self.keys {
                Some(keys) => {
                    let salt = FileId::new_salt()?;
                    let key_id = keys.primary().id();
                    let cipher = keys.file_cipher(&file_id(lsn, inc.end_pos, salt))?;
                    inc.sealed.insert(
                        inc.end_pos,
                        SealedSeg {
                            cipher: Arc::new(cipher),
                            starts: vec![],
                        },
                    );
                    encode_sealed_header(lsn, inc.end_pos, key_id, &salt)
                }
                None => encode_header(lsn, inc.end_pos),
            };
            f.write_all(&header)
                .context(|| format!("writing {}", path.display()))?;
            inc.segments.insert(inc.end_pos, path);
            inc.created_here = Some(inc.end_pos);
            new_dirs.push(inc.dir.clone());
        }
        let Some((&base, path)) = inc.segments.iter().next_back() else {
            return Ok(());
        };
        let path = path.clone();
        let mut buf = Vec::with_capacity(values.iter().map(|v| frame_len(v.len()) as usize).sum());
        let mut logical = 0u64;
        match inc.sealed.get_mut(&base) {
            Some(seg) => {
                for (i, v) in values.iter().enumerate() {
                    let pos = inc.end_pos + logical;
                    let offset = seg.offset(base, pos);
                    encode_sealed_entry(
                        &mut buf,
                        &seg.cipher,
                        offset,
                        first_seq + i as u64,
                        ts,
                        v,
                    )?;
                    seg.starts.push(pos);
                    logical += frame_len(v.len());
                }
            }
            None => {
                for (i, v) in values.iter().enumerate() {
                    encode_entry(&mut buf, first_seq + i as u64, ts, v);
                }
                logical = buf.len() as u64;
            }
        }
        let mut f =
            io::open_append(&path, faults).context(|| format!("opening {}", path.display()))?;
        f.write_all(&buf)
            .context(|| format!("appending to {}", path.display()))?;
        inc.end_pos += logical;
        g.unsynced.insert(path);
        g.dirs_unsynced.extend(new_dirs);
        Ok(())
    }

    /// Syncs every stream file written since the last sync, and the directories that gained
    /// files: everything a view published so far holds is then durable (a checkpoint of it may
    /// follow). A failure must poison the database: a retried fsync may report success for
    /// pages it dropped.
    pub(crate) fn sync(&self) -> Result<()> {
        let (files, dirs) = {
            let mut g = self.lock()?;
            (
                std::mem::take(&mut g.unsynced),
                std::mem::take(&mut g.dirs_unsynced),
            )
        };
        for path in &files {
            if !path.exists() {
                continue; // removed since (a deleted stream collected)
            }
            let mut f = io::open_write(path, &self.faults)
                .context(|| format!("opening {}", path.display()))?;
            f.sync_all()
                .context(|| format!("syncing {}", path.display()))?;
        }
        // Deepest first, so a new stream's directory is durable before the root names it.
        for dir in dirs.iter().rev() {
            if dir.is_dir() {
                io::sync_dir(dir, &self.faults).context(|| format!("syncing {}", dir.display()))?;
            }
        }
        Ok(())
    }

    /// After a checkpoint of `state` was written: removes stream files that neither it nor
    /// the checkpoint before it needs (trimmed segments, deleted streams). Returns how many
    /// files and directories were removed.
    pub(crate) fn collect(&self, state: &State) -> Result<u64> {
        let new_marks = marks(state);
        let (files, dirs) = {
            let mut g = self.lock()?;
            let old_marks = std::mem::replace(&mut g.last_marks, new_marks.clone());
            let live: BTreeSet<u64> = g.live.values().copied().collect();
            let mut files = vec![];
            let mut dirs = vec![];
            let mut gone = vec![];
            for (lsn, inc) in g.incs.iter_mut() {
                let needed_from = [old_marks.get(lsn), new_marks.get(lsn)]
                    .into_iter()
                    .flatten()
                    .map(|m| m.0)
                    .min();
                match needed_from {
                    None if *lsn <= state.lsn && !live.contains(lsn) => {
                        dirs.push(inc.dir.clone());
                        gone.push(*lsn);
                    }
                    None => {}
                    Some(from) => {
                        // A segment ends where the next begins; the newest is always kept.
                        let bases: Vec<u64> = inc.segments.keys().copied().collect();
                        for pair in bases.windows(2) {
                            if let [base, next] = pair {
                                if *next <= from {
                                    if let Some(p) = inc.segments.remove(base) {
                                        files.push(p);
                                    }
                                    inc.sealed.remove(base);
                                }
                            }
                        }
                    }
                }
            }
            for lsn in gone {
                g.incs.remove(&lsn);
            }
            (files, dirs)
        };
        let mut removed = 0;
        for f in &files {
            io::remove_file(f, &self.faults).context(|| format!("removing {}", f.display()))?;
            removed += 1;
        }
        for d in &dirs {
            // A stream that was only configured never had an entry, so never a directory.
            if std::fs::symlink_metadata(d).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
            {
                continue;
            }
            io::remove_dir_all(d, &self.faults).context(|| format!("removing {}", d.display()))?;
            removed += 1;
        }
        if removed > 0 {
            io::sync_dir(&self.root, &self.faults)
                .context(|| format!("syncing {}", self.root.display()))?;
        }
        Ok(removed)
    }

    /// Writes every stream file that is not in the target form again: sealed with `to`'s
    /// first key, or plaintext without `to` (a key rotation's rewrite, `crypto::rotate`).
    /// Each file's entries up to its end are decoded (with `keys`), written to
    /// `.<base>.stream.rekey` beside it, synced, and renamed over it, then the directory is
    /// synced; open removes a `.rekey` file a crash left (its name is no segment's). Holds the
    /// files' lock throughout, so appends wait. Returns (files, bytes) written.
    pub(crate) fn reseal(&self, keys: &Keyring, to: Option<&Keyring>) -> Result<(u64, u64)> {
        let target = to.map(|k| k.primary().id());
        let mut g = self.lock()?;
        let (mut files, mut bytes) = (0u64, 0u64);
        let mut touched = vec![];
        for (&lsn, inc) in g.incs.iter_mut() {
            let bases: Vec<u64> = inc.segments.keys().copied().collect();
            for (i, base) in bases.iter().enumerate() {
                let Some(path) = inc.segments.get(base).cloned() else {
                    continue;
                };
                let on_disk = {
                    let mut head = Vec::with_capacity(STREAM_HEADER_LEN_SEALED as usize);
                    let f = io::open_read(&path, &self.faults)
                        .context(|| format!("opening {}", path.display()))?;
                    std::io::Read::read_to_end(
                        &mut std::io::Read::take(f, STREAM_HEADER_LEN_SEALED),
                        &mut head,
                    )
                    .context(|| format!("reading {}", path.display()))?;
                    sealed_key_of(&head)
                };
                if on_disk == target {
                    continue;
                }
                let end = bases.get(i + 1).copied().unwrap_or(inc.end_pos);
                let entries = read_whole(&path, lsn, *base, end, Some(keys), &self.faults)?;
                let mut out = vec![];
                let mut seg = None;
                match to {
                    Some(k) => {
                        let salt = FileId::new_salt()?;
                        let key_id = k.primary().id();
                        let cipher = k.file_cipher(&file_id(lsn, *base, salt))?;
                        out.extend_from_slice(&encode_sealed_header(lsn, *base, key_id, &salt));
                        let mut starts = Vec::with_capacity(entries.len());
                        let mut pos = *base;
                        for (seq, ts, v) in &entries {
                            let at = out.len() as u64;
                            encode_sealed_entry(&mut out, &cipher, at, *seq, *ts, v)?;
                            starts.push(pos);
                            pos += frame_len(v.len());
                        }
                        seg = Some(SealedSeg {
                            cipher: Arc::new(cipher),
                            starts,
                        });
                    }
                    None => {
                        out.extend_from_slice(&encode_header(lsn, *base));
                        for (seq, ts, v) in &entries {
                            encode_entry(&mut out, *seq, *ts, v);
                        }
                    }
                }
                let tmp = inc
                    .dir
                    .join(format!(".{}{REKEY_SUFFIX}", segment_name(*base)));
                let mut f = io::create(&tmp, &self.faults)
                    .context(|| format!("creating {}", tmp.display()))?;
                f.write_all(&out)
                    .context(|| format!("writing {}", tmp.display()))?;
                f.sync_all()
                    .context(|| format!("syncing {}", tmp.display()))?;
                io::rename(&tmp, &path, &self.faults)
                    .context(|| format!("renaming {}", tmp.display()))?;
                match seg {
                    Some(s) => {
                        inc.sealed.insert(*base, s);
                    }
                    None => {
                        inc.sealed.remove(base);
                    }
                }
                // Written by this process from its first byte: sealed appends may extend it.
                inc.created_here = Some(*base);
                files += 1;
                bytes += out.len() as u64;
                touched.push(inc.dir.clone());
            }
        }
        touched.dedup();
        for dir in &touched {
            io::sync_dir(dir, &self.faults).context(|| format!("syncing {}", dir.display()))?;
        }
        Ok((files, bytes))
    }

    /// Reads the entries at index positions `from..to` of `stream` in `state` (a published
    /// view: every byte it names was written before it was published).
    pub(crate) fn read(
        &self,
        state: &State,
        stream: &str,
        from: usize,
        to: usize,
    ) -> Result<Vec<StreamEntry>> {
        let Some(s) = state.streams.get(stream) else {
            return Ok(vec![]);
        };
        let (Some(start), true) = (s.index.get(from), from < to) else {
            return Ok(vec![]);
        };
        let end_pos = s.index.get(to).map_or(s.end_pos, |e| e.pos);
        let first_seq = s.first_seq + from as u64;
        let chunks: Vec<Chunk> = {
            let g = self.lock()?;
            let Some(inc) = g.incs.get(&s.created_lsn) else {
                return Err(Error::InvalidArgument(format!(
                    "stream {stream} has no files (it was deleted)"
                )));
            };
            let mut out = vec![];
            let mut pos = start.pos;
            while pos < end_pos {
                let Some((&base, path)) = inc.segments.range(..=pos).next_back() else {
                    return Err(Error::InvalidArgument(format!(
                        "stream {stream}: entries from {first_seq} were removed by retention since this view was taken"
                    )));
                };
                let seg_end = inc
                    .segments
                    .range(base + 1..)
                    .next()
                    .map_or(end_pos, |(b, _)| (*b).min(end_pos));
                let (from_at, to_at, cipher) = match inc.sealed.get(&base) {
                    Some(seg) => (
                        seg.offset(base, pos),
                        seg.offset(base, seg_end),
                        Some(seg.cipher.clone()),
                    ),
                    None => (
                        STREAM_HEADER_LEN + (pos - base),
                        STREAM_HEADER_LEN + (seg_end - base),
                        None,
                    ),
                };
                out.push(Chunk {
                    path: path.clone(),
                    from_at,
                    to_at,
                    cipher,
                });
                pos = seg_end;
            }
            out
        };
        let mut entries = Vec::with_capacity(to - from);
        let mut seq = first_seq;
        for c in &chunks {
            let path = &c.path;
            let len = usize::try_from(c.to_at - c.from_at).unwrap_or(usize::MAX);
            let mut f = io::open_read(path, &self.faults)
                .context(|| format!("opening {}", path.display()))?;
            f.seek_to(c.from_at)
                .context(|| format!("seeking in {}", path.display()))?;
            let mut buf = vec![0; len];
            std::io::Read::read_exact(&mut f, &mut buf)
                .context(|| format!("reading {}", path.display()))?;
            let mut at = 0;
            while at < buf.len() {
                let offset = c.from_at + at as u64;
                let frame = buf.get(at..).unwrap_or_default();
                let (got, ts, value, n) = match &c.cipher {
                    Some(cipher) => decode_sealed_entry(frame, cipher, offset)
                        .map(|(q, t, v, n)| (q, t, std::borrow::Cow::Owned(v), n)),
                    None => decode_entry(frame).map(|(q, t, v, n)| (q, t, v.into(), n)),
                }
                .map_err(|e| damaged(path, offset, e))?;
                if got != seq {
                    return Err(damaged(
                        path,
                        offset,
                        format!("entry {got} where entry {seq} belongs"),
                    ));
                }
                entries.push(StreamEntry {
                    seq,
                    commit_ts: ts,
                    value: value.as_ref().into(),
                });
                seq += 1;
                at += n;
            }
        }
        Ok(entries)
    }
}

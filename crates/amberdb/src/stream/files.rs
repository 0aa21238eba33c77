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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::codec::{PutLe, Reader};
use crate::error::{Damage, Error, IoContext, Result};
use crate::io::{self, Faults};
use crate::log::record::{CommitRecord, StreamOp};
use crate::state::State;
use crate::stream::{frame_len, IndexEntry, StreamEntry, ENTRY_HEADER_LEN};

/// The directory of stream files inside a data directory.
pub const STREAMS_DIR: &str = "streams";
/// First bytes of every stream file.
pub(crate) const STREAM_MAGIC: [u8; 8] = *b"AMBRSTRM";
/// Stream file format version.
pub(crate) const STREAM_FORMAT_VERSION: u32 = 1;
/// Stream file header: magic, version u32, reserved u32, created_lsn u64, base u64, crc u32,
/// reserved u32.
pub(crate) const STREAM_HEADER_LEN: u64 = 40;
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
    /// Bytes written (the next frame's position).
    end_pos: u64,
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
            // Cut the newest file at the watermark, check that every file reaches the next.
            let bases: Vec<u64> = segments.keys().copied().collect();
            for (i, (base, path)) in segments.iter().enumerate() {
                let end = bases.get(i + 1).copied().unwrap_or(s.end_pos);
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
                let bytes =
                    io::read(path, faults).context(|| format!("reading {}", path.display()))?;
                check_header(&bytes, s.created_lsn, base).map_err(|e| damaged(path, 0, e))?;
                while pos < end {
                    let at = STREAM_HEADER_LEN + (pos - base);
                    let frame = bytes.get(at as usize..).unwrap_or_default();
                    let (got, ts, _, len) =
                        decode_entry(frame).map_err(|e| damaged(path, at, e))?;
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
                    end_pos: s.end_pos,
                },
            );
        }
        Ok(StreamFiles {
            root,
            faults: faults.clone(),
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
                end_pos: 0,
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
        let roll = inc
            .segments
            .iter()
            .next_back()
            .is_none_or(|(base, _)| inc.end_pos - base >= self.segment_bytes);
        if roll {
            let path = inc.dir.join(segment_name(inc.end_pos));
            let mut f =
                io::create(&path, faults).context(|| format!("creating {}", path.display()))?;
            f.write_all(&encode_header(lsn, inc.end_pos))
                .context(|| format!("writing {}", path.display()))?;
            inc.segments.insert(inc.end_pos, path);
            new_dirs.push(inc.dir.clone());
        }
        let Some((_, path)) = inc.segments.iter().next_back() else {
            return Ok(());
        };
        let path = path.clone();
        let mut buf = Vec::with_capacity(values.iter().map(|v| frame_len(v.len()) as usize).sum());
        for (i, v) in values.iter().enumerate() {
            encode_entry(&mut buf, first_seq + i as u64, ts, v);
        }
        let mut f =
            io::open_append(&path, faults).context(|| format!("opening {}", path.display()))?;
        f.write_all(&buf)
            .context(|| format!("appending to {}", path.display()))?;
        inc.end_pos += buf.len() as u64;
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
        let chunks: Vec<(u64, u64, PathBuf)> = {
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
                out.push((base, pos, path.clone()));
                pos = seg_end;
            }
            out
        };
        let mut entries = Vec::with_capacity(to - from);
        let mut seq = first_seq;
        for (i, (base, pos, path)) in chunks.iter().enumerate() {
            let until = chunks.get(i + 1).map_or(end_pos, |c| c.1);
            let len = usize::try_from(until - pos).unwrap_or(usize::MAX);
            let mut f = io::open_read(path, &self.faults)
                .context(|| format!("opening {}", path.display()))?;
            f.seek_to(STREAM_HEADER_LEN + (pos - base))
                .context(|| format!("seeking in {}", path.display()))?;
            let mut buf = vec![0; len];
            std::io::Read::read_exact(&mut f, &mut buf)
                .context(|| format!("reading {}", path.display()))?;
            let mut at = 0;
            while at < buf.len() {
                let offset = STREAM_HEADER_LEN + (pos - base) + at as u64;
                let (got, ts, value, n) = decode_entry(buf.get(at..).unwrap_or_default())
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
                    value: value.into(),
                });
                seq += 1;
                at += n;
            }
        }
        Ok(entries)
    }
}

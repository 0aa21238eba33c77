//! Point reads of the retained log: the commit with LSN n, and the last commit at or before a
//! time, without scanning the log.
//!
//! The segment holding an LSN is found from the sealed list (seals name their LSN range) and
//! the active segment's in-memory index; inside it the sparse index (`log::index`) gives the
//! offset of a frame at most [`STRIDE`](super::index::STRIDE) - 1 frames before the one
//! wanted, so a read decodes at most that many frames. No committer lock is taken: the active
//! segment is read only up to the bytes and LSN the writer had written when the read began.
//!
//! A point read decodes a whole commit. One operation that reads many documents of the same
//! commits (an as-of listing, a revert of many documents written by a few large commits)
//! reads through a [`CommitCache`]: each commit decoded once per operation, within a bound.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::index::{self, ActiveIndex, IdxEntry};
use super::record::CommitRecord;
use super::sealed::FrameDecoder;
use super::segment::{read_header, SegmentHeader};
use super::SealedList;
use crate::io::Faults;

/// Bytes of decoded commits one [`CommitCache`] keeps (their payload sizes): past it, the
/// cache starts over. A revert of 10,000 documents written by 1,000-document commits took
/// 10.5 s decoding each commit once per document (docs/BENCHMARKS.md).
pub(crate) const COMMIT_CACHE_BYTES: usize = 64 << 20;

/// Decoded commits by LSN for one operation (a history page, an as-of read or listing, a
/// revert, undo or restore), bounded by [`COMMIT_CACHE_BYTES`]. Never shared between
/// operations: each sees the log as it is when it reads.
pub(crate) struct CommitCache<'r> {
    reader: &'r LogReader,
    map: HashMap<u64, Arc<CommitRecord>>,
    bytes: usize,
    limit: usize,
}

impl<'r> CommitCache<'r> {
    pub(crate) fn new(reader: &'r LogReader) -> Self {
        CommitCache {
            reader,
            map: HashMap::new(),
            bytes: 0,
            limit: COMMIT_CACHE_BYTES,
        }
    }

    /// The commit with LSN `lsn`, decoded at most once while the cache has room.
    pub(crate) fn get(&mut self, lsn: u64) -> Result<Arc<CommitRecord>, ReadError> {
        if let Some(rec) = self.map.get(&lsn) {
            return Ok(rec.clone());
        }
        let rec = Arc::new(self.reader.read(lsn)?);
        let size = rec.payload_len();
        if self.bytes + size > self.limit {
            self.map.clear();
            self.bytes = 0;
        }
        self.bytes += size;
        self.map.insert(lsn, rec.clone());
        Ok(rec)
    }
}

/// Why a point read failed.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The LSN (or time) is not in the retained log.
    NotRetained,
    /// The segment could not be read or does not hold what its seal and index say.
    Io(String),
}

/// One segment as a read sees it: where it is and how far to read it.
#[derive(Debug, Clone)]
struct SegRef {
    path: PathBuf,
    first_lsn: u64,
    last_lsn: u64,
    length: u64,
    /// Commit time of its last commit.
    last_commit_ts: u64,
    /// `Some` for the active segment: its in-memory index as of the read.
    active: Option<Vec<IdxEntry>>,
}

/// Point reader of a data directory's retained log, shared by every handle.
pub(crate) struct LogReader {
    dir: PathBuf,
    /// Keys to open encrypted segments with.
    keys: Option<crate::crypto::Keyring>,
    sealed: SealedList,
    active: Arc<Mutex<ActiveIndex>>,
    /// Sealed segments' indexes by first LSN, loaded from `.idx` or rebuilt.
    cache: Mutex<HashMap<u64, Arc<Vec<IdxEntry>>>>,
    /// Frames decoded by point reads since open (evidence that reads do not scan).
    frames_decoded: AtomicU64,
    /// Segments whose index had to be rebuilt by walking them since open.
    indexes_rebuilt: AtomicU64,
}

impl LogReader {
    pub(crate) fn new(
        dir: &Path,
        keys: Option<crate::crypto::Keyring>,
        sealed: SealedList,
        active: Arc<Mutex<ActiveIndex>>,
    ) -> Self {
        LogReader {
            dir: dir.to_owned(),
            keys,
            sealed,
            active,
            cache: Mutex::new(HashMap::new()),
            frames_decoded: AtomicU64::new(0),
            indexes_rebuilt: AtomicU64::new(0),
        }
    }

    /// Frames decoded by point reads since open.
    pub(crate) fn frames_decoded(&self) -> u64 {
        self.frames_decoded.load(Ordering::Relaxed)
    }

    /// Segment indexes rebuilt since open.
    pub(crate) fn indexes_rebuilt(&self) -> u64 {
        self.indexes_rebuilt.load(Ordering::Relaxed)
    }

    /// Every retained segment, oldest first (the active one last).
    fn segments(&self) -> Vec<SegRef> {
        let mut out: Vec<SegRef> = self
            .sealed
            .lock()
            .map(|s| {
                s.iter()
                    .map(|seg| SegRef {
                        path: seg.path.clone(),
                        first_lsn: seg.seal.first_lsn,
                        last_lsn: seg.seal.last_lsn,
                        length: seg.seal.length,
                        last_commit_ts: seg.seal.last_commit_ts,
                        active: None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by_key(|s| s.first_lsn);
        if let Ok(a) = self.active.lock() {
            if a.last_lsn >= a.first_lsn && out.last().is_none_or(|l| l.last_lsn < a.first_lsn) {
                out.push(SegRef {
                    path: a.path.clone(),
                    first_lsn: a.first_lsn,
                    last_lsn: a.last_lsn,
                    length: a.len,
                    last_commit_ts: 0,
                    active: Some(a.entries.clone()),
                });
            }
        }
        out
    }

    /// First LSN of the retained log and the bytes it holds; `None` when it holds no commit.
    pub(crate) fn extent(&self) -> (Option<u64>, u64) {
        let segs = self.segments();
        let bytes = segs.iter().map(|s| s.length).sum();
        (segs.first().map(|s| s.first_lsn), bytes)
    }

    /// Bytes written to the active segment.
    pub(crate) fn extent_active_bytes(&self) -> u64 {
        self.active.lock().map_or(0, |a| a.len)
    }

    /// The segment holding `lsn`, if it is retained.
    fn segment_of(&self, lsn: u64) -> Option<SegRef> {
        self.segments()
            .into_iter()
            .find(|s| s.first_lsn <= lsn && lsn <= s.last_lsn)
    }

    /// The sparse index of `seg` (the active one's copy, or a sealed one's cached, loaded or
    /// rebuilt index), with the segment's header.
    fn index_of(
        &self,
        seg: &SegRef,
        rebuild: bool,
    ) -> Result<(Arc<Vec<IdxEntry>>, SegmentHeader), ReadError> {
        let header = self.header(seg)?;
        if let Some(entries) = &seg.active {
            return Ok((Arc::new(entries.clone()), header));
        }
        if !rebuild {
            if let Some(e) = self
                .cache
                .lock()
                .ok()
                .and_then(|c| c.get(&seg.first_lsn).cloned())
            {
                return Ok((e, header));
            }
            let idx_path = self.dir.join(index::idx_file_name(seg.first_lsn));
            if let Some(entries) = std::fs::read(&idx_path)
                .ok()
                .and_then(|b| index::decode_idx(&b, seg.first_lsn, seg.last_lsn, seg.length))
            {
                let entries = Arc::new(entries);
                if let Ok(mut c) = self.cache.lock() {
                    c.insert(seg.first_lsn, entries.clone());
                }
                return Ok((entries, header));
            }
        }
        // Missing or bad: one walk of the segment's frame headers rebuilds it.
        let bytes =
            crate::io::read(&seg.path, &Faults::none()).map_err(|e| not_found_or(e, &seg.path))?;
        let start = header.encoded_len();
        let body = bytes
            .get(
                start
                    ..usize::try_from(seg.length)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len()),
            )
            .unwrap_or_default();
        let mut entries = vec![];
        let last = index::index_frames(
            body,
            start as u64,
            seg.first_lsn,
            header.format_version,
            &mut entries,
        );
        if last != Some(seg.last_lsn) {
            return Err(ReadError::Io(format!(
                "{}: frames end at LSN {} but its seal says {}",
                seg.path.display(),
                last.unwrap_or(seg.first_lsn - 1),
                seg.last_lsn
            )));
        }
        self.indexes_rebuilt.fetch_add(1, Ordering::Relaxed);
        let idx_path = self.dir.join(index::idx_file_name(seg.first_lsn));
        let encoded = index::encode_idx(seg.first_lsn, seg.length, &entries);
        index::write_idx_best_effort(&idx_path, &encoded);
        let entries = Arc::new(entries);
        if let Ok(mut c) = self.cache.lock() {
            c.insert(seg.first_lsn, entries.clone());
        }
        Ok((entries, header))
    }

    fn header(&self, seg: &SegRef) -> Result<SegmentHeader, ReadError> {
        match read_header(&seg.path) {
            Some(h) if h.first_lsn == seg.first_lsn => Ok(h),
            Some(_) => Err(ReadError::Io(format!(
                "{}: header names another first LSN",
                seg.path.display()
            ))),
            None if !seg.path.exists() => Err(ReadError::NotRetained),
            None => Err(ReadError::Io(format!(
                "{}: unreadable segment header",
                seg.path.display()
            ))),
        }
    }

    /// The commit with LSN `lsn`.
    pub(crate) fn read(&self, lsn: u64) -> Result<CommitRecord, ReadError> {
        let seg = self.segment_of(lsn).ok_or(ReadError::NotRetained)?;
        match self.read_in(&seg, lsn, false) {
            // The index did not lead to the frame: rebuild it from the segment once.
            Err(ReadError::Io(_)) if seg.active.is_none() => self.read_in(&seg, lsn, true),
            other => other,
        }
    }

    fn read_in(&self, seg: &SegRef, lsn: u64, rebuild: bool) -> Result<CommitRecord, ReadError> {
        let (entries, header) = self.index_of(seg, rebuild)?;
        let at = entries.partition_point(|e| e.lsn <= lsn);
        let start = at
            .checked_sub(1)
            .and_then(|i| entries.get(i))
            .ok_or_else(|| {
                ReadError::Io(format!(
                    "{}: no index entry before LSN {lsn}",
                    seg.path.display()
                ))
            })?;
        let mut file = std::fs::File::open(&seg.path).map_err(|e| not_found_or(e, &seg.path))?;
        file.seek(SeekFrom::Start(start.offset))
            .map_err(|e| ReadError::Io(format!("{}: {e}", seg.path.display())))?;
        let version = header.format_version;
        // Plaintext, or opened with the keyring for an encrypted segment.
        let decoder = FrameDecoder::for_segment(&header, self.keys.as_ref())
            .map_err(|e| ReadError::Io(format!("{}: {e}", seg.path.display())))?;
        let header_len = index::frame_header_len(version);
        let mut pos = start.offset;
        let mut buf = vec![];
        while pos < seg.length {
            buf.resize(header_len, 0);
            file.read_exact(&mut buf)
                .map_err(|e| ReadError::Io(format!("{} at {pos}: {e}", seg.path.display())))?;
            let (len, at_lsn, _) = index::peek_frame(&buf, version).ok_or_else(|| {
                ReadError::Io(format!("{} at {pos}: not a frame", seg.path.display()))
            })?;
            if pos + len as u64 > seg.length {
                break;
            }
            if at_lsn > lsn || at_lsn < start.lsn {
                break;
            }
            if at_lsn < lsn {
                file.seek(SeekFrom::Current((len - header_len) as i64))
                    .map_err(|e| ReadError::Io(format!("{}: {e}", seg.path.display())))?;
                pos += len as u64;
                continue;
            }
            buf.resize(len, 0);
            file.read_exact(buf.get_mut(header_len..).unwrap_or_default())
                .map_err(|e| ReadError::Io(format!("{} at {pos}: {e}", seg.path.display())))?;
            self.frames_decoded.fetch_add(1, Ordering::Relaxed);
            let frame = decoder
                .decode(&buf, pos)
                .map_err(|e| ReadError::Io(format!("{} at {pos}: {e}", seg.path.display())))?;
            if frame.record.lsn != lsn {
                break;
            }
            return Ok(frame.record);
        }
        Err(ReadError::Io(format!(
            "{}: LSN {lsn} not found where its index points",
            seg.path.display()
        )))
    }

    /// Commit time of the commit `lsn` (reads its frame header only).
    pub(crate) fn commit_ts(&self, lsn: u64) -> Result<u64, ReadError> {
        Ok(self.read(lsn)?.commit_ts)
    }

    /// The LSN of the last retained commit with commit time `<= t`: `Ok(None)` when every
    /// retained commit is later than `t`. Binary search over segments (seals carry their last
    /// commit time), then over the segment's index, then at most a stride of frame headers.
    pub(crate) fn lsn_at_time(&self, t: u64) -> Result<Option<u64>, ReadError> {
        let segs = self.segments();
        // The first segment whose last commit is later than t (the active one has no seal:
        // treat it as later than anything).
        let i = segs.partition_point(|s| s.active.is_none() && s.last_commit_ts <= t);
        let Some(seg) = segs.get(i) else {
            return Ok(segs.last().map(|s| s.last_lsn));
        };
        let (entries, header) = self.index_of(seg, false)?;
        let j = entries.partition_point(|e| e.commit_ts <= t);
        let Some(start) = j.checked_sub(1).and_then(|j| entries.get(j)) else {
            // Even the segment's first commit is later: the answer ends the previous segment.
            return Ok(i
                .checked_sub(1)
                .and_then(|i| segs.get(i))
                .map(|s| s.last_lsn));
        };
        let mut file = std::fs::File::open(&seg.path).map_err(|e| not_found_or(e, &seg.path))?;
        let version = header.format_version;
        let header_len = index::frame_header_len(version);
        let (mut pos, mut best) = (start.offset, start.lsn);
        let mut buf = vec![0u8; header_len];
        while pos < seg.length {
            file.seek(SeekFrom::Start(pos))
                .map_err(|e| ReadError::Io(format!("{}: {e}", seg.path.display())))?;
            file.read_exact(&mut buf)
                .map_err(|e| ReadError::Io(format!("{} at {pos}: {e}", seg.path.display())))?;
            let Some((len, lsn, ts)) = index::peek_frame(&buf, version) else {
                break;
            };
            if ts > t || lsn > seg.last_lsn {
                break;
            }
            best = lsn;
            pos += len as u64;
        }
        Ok(Some(best))
    }
}

fn not_found_or(e: std::io::Error, path: &Path) -> ReadError {
    if e.kind() == std::io::ErrorKind::NotFound {
        ReadError::NotRetained
    } else {
        ReadError::Io(format!("{}: {e}", path.display()))
    }
}

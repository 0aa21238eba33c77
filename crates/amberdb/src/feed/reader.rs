//! The sequential log reader of the change feed: reads commit frames from the retained
//! segment files in LSN order, up to a given durable LSN, with its own file handles.
//!
//! It never takes a lock the committer takes. The committer only appends to the active
//! segment and every frame through the durable LSN was written before that LSN was
//! published, so a frame at or below it is complete in the file the reader opens (or in a
//! newer segment, which exists before its first frame is written). A frame above the durable
//! LSN is never decoded. The reader holds the segment it reads open, so removing that file
//! under it changes nothing; a segment it still has to open that is gone is `HistoryLost`
//! (never a silent gap).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::crypto::Keyring;
use crate::error::{Damage, Error, Result};
use crate::log::index::peek_frame;
use crate::log::record::{CommitRecord, FrameError};
use crate::log::sealed::FrameDecoder;
use crate::log::segment::{list_segments, SegmentHeader, SEGMENT_HEADER_LEN_V4};

/// Bytes read from a segment file at a time.
const CHUNK: usize = 1 << 20;

struct OpenSegment {
    first_lsn: u64,
    path: PathBuf,
    file: crate::io::ReadFile,
    /// Decodes (and, for an encrypted segment, opens) its frames.
    decoder: FrameDecoder,
    /// Its log format version (how to step over a frame by its header alone).
    format_version: u32,
    /// Bytes read from the file and not yet consumed, starting at `buf_offset` in the file.
    buf: Vec<u8>,
    /// Where in `buf` the next frame starts.
    pos: usize,
    /// File offset of `buf[0]`.
    buf_offset: u64,
}

impl OpenSegment {
    /// Reads up to one more chunk; returns the bytes read (0 at the end of the file).
    fn fill(&mut self) -> std::io::Result<usize> {
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.buf_offset += self.pos as u64;
            self.pos = 0;
        }
        let start = self.buf.len();
        self.buf.resize(start + CHUNK, 0);
        let n = loop {
            match self
                .file
                .read(self.buf.get_mut(start..).unwrap_or_default())
            {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(start);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(start + n);
        Ok(n)
    }
}

/// Reads commits in LSN order from `DATA/log/`.
pub(crate) struct LogReader {
    dir: PathBuf,
    /// Keys to open encrypted segments with.
    keys: Option<Keyring>,
    /// The next LSN to deliver.
    next_lsn: u64,
    seg: Option<OpenSegment>,
}

impl LogReader {
    /// A reader that delivers commits after `from_lsn`. Opens the segment holding
    /// `from_lsn + 1` now (so it cannot be removed from under the reader later), or fails
    /// with `HistoryLost` when the log no longer reaches back that far.
    pub(crate) fn new(log_dir: &Path, keys: Option<Keyring>, from_lsn: u64) -> Result<LogReader> {
        let next_lsn = from_lsn.checked_add(1).ok_or_else(|| {
            Error::InvalidArgument(format!("from_lsn {from_lsn} is out of range"))
        })?;
        let mut r = LogReader {
            dir: log_dir.to_owned(),
            keys,
            next_lsn,
            seg: None,
        };
        r.seg = Some(r.open_for(next_lsn)?);
        Ok(r)
    }

    /// The LSN of the next commit this reader will return.
    pub(crate) fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// Moves the cursor forward to `lsn` (the commits before it were delivered from
    /// memory). The open segment stays open; a later [`LogReader::read`] steps over the
    /// frames before `lsn` by their headers, without decoding them.
    pub(crate) fn skip_to(&mut self, lsn: u64) {
        self.next_lsn = self.next_lsn.max(lsn);
    }

    /// Reads commits with LSNs up to `durable`, in order, calling `on_commit` for each;
    /// stops early when it returns false. Returns when `durable` is reached.
    pub(crate) fn read(
        &mut self,
        durable: u64,
        mut on_commit: impl FnMut(CommitRecord) -> bool,
    ) -> Result<()> {
        while self.next_lsn <= durable {
            if self.seg.is_none() {
                self.seg = Some(self.open_for(self.next_lsn)?);
            }
            let Some(seg) = self.seg.as_mut() else {
                continue;
            };
            let rest = seg.buf.get(seg.pos..).unwrap_or_default();
            // A frame before the cursor was delivered already (from memory): step over it by
            // its header. The frame at the cursor is decoded and checked in full below.
            if let Some((len, lsn, _)) = peek_frame(rest, seg.format_version) {
                if lsn < self.next_lsn && len <= rest.len() {
                    seg.pos += len;
                    continue;
                }
            }
            match seg.decoder.decode(rest, seg.buf_offset + seg.pos as u64) {
                Ok(f) if f.record.lsn < self.next_lsn => seg.pos += f.len,
                Ok(f) if f.record.lsn == self.next_lsn => {
                    seg.pos += f.len;
                    self.next_lsn += 1;
                    if !on_commit(f.record) {
                        return Ok(());
                    }
                }
                Ok(f) => {
                    let detail = format!(
                        "commit LSN {} where {} was expected",
                        f.record.lsn, self.next_lsn
                    );
                    return Err(damaged(seg, detail));
                }
                Err(FrameError::Incomplete) => {
                    let n = seg
                        .fill()
                        .map_err(|e| Error::io(format!("reading {}", seg.path.display()), e))?;
                    if n > 0 {
                        continue;
                    }
                    // The end of this segment: LSN `next_lsn` is durable, so it was written
                    // before we looked, into a segment starting exactly there.
                    let current = seg.first_lsn;
                    let next = self.open_for(self.next_lsn)?;
                    if next.first_lsn == current {
                        let detail = format!(
                            "the segment ends before LSN {}, which is durable, and no segment starts at it",
                            self.next_lsn
                        );
                        return Err(damaged(&next, detail));
                    }
                    self.seg = Some(next);
                }
                Err(e) => {
                    let detail = format!("{e} (LSN {})", self.next_lsn);
                    return Err(damaged(seg, detail));
                }
            }
        }
        Ok(())
    }

    /// Opens the segment that holds `lsn`: the newest one starting at or before it.
    fn open_for(&self, lsn: u64) -> Result<OpenSegment> {
        // A segment can be removed between listing and opening: list again, and a
        // segment that is still missing then is gone for good.
        for _ in 0..2 {
            let segments = list_segments(&self.dir)
                .map_err(|e| Error::io(format!("listing {}", self.dir.display()), e))?;
            let Some((oldest, _)) = segments.first() else {
                return Err(Error::HistoryLost {
                    retained_from_lsn: lsn,
                });
            };
            if *oldest > lsn {
                return Err(Error::HistoryLost {
                    retained_from_lsn: *oldest,
                });
            }
            let Some((first_lsn, path)) = segments.iter().rev().find(|(f, _)| *f <= lsn) else {
                continue;
            };
            let file = match crate::io::open_read(path, &crate::io::Faults::none()) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
            };
            let mut seg = OpenSegment {
                first_lsn: *first_lsn,
                path: path.clone(),
                file,
                decoder: FrameDecoder::plain(0),
                format_version: 0,
                buf: Vec::new(),
                pos: 0,
                buf_offset: 0,
            };
            while seg.buf.len() < SEGMENT_HEADER_LEN_V4 {
                let n = seg
                    .fill()
                    .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                if n == 0 {
                    break;
                }
            }
            let header = SegmentHeader::decode(&seg.buf).map_err(|detail| damaged(&seg, detail))?;
            if header.first_lsn != seg.first_lsn {
                let detail = format!(
                    "header says first LSN {}, the name says {}",
                    header.first_lsn, seg.first_lsn
                );
                return Err(damaged(&seg, detail));
            }
            seg.decoder = FrameDecoder::for_segment(&header, self.keys.as_ref())?;
            seg.format_version = header.format_version;
            seg.pos = header.encoded_len();
            return Ok(seg);
        }
        // Listed twice and gone both times: removed under us.
        let segments = list_segments(&self.dir).unwrap_or_default();
        Err(Error::HistoryLost {
            retained_from_lsn: segments.first().map_or(lsn, |(f, _)| *f),
        })
    }
}

fn damaged(seg: &OpenSegment, detail: String) -> Error {
    Error::Damaged(Damage {
        file: seg.path.clone(),
        offset: seg.buf_offset + seg.pos as u64,
        detail: format!("change feed: {detail}"),
        hint: "run `amberdb verify --data <dir>`".into(),
    })
}

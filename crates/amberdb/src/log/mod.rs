//! The commit log: segment files in `DATA/log/`, appended by the committer only (one leader at a time).
//!
//! This module owns the byte format of the log ([`record`], [`segment`]) and the append side
//! ([`CommitLog`]). It never decides what is durable or acknowledged: the committer does.

// Lengths are written as fixed-width integers: a silent `as u32` turned oversized data into
// frames and blocks no decoder accepts. Every narrowing conversion is checked.
#![deny(clippy::cast_possible_truncation)]

pub(crate) mod index;
pub(crate) mod reader;
pub mod record;
pub(crate) mod replay;
pub(crate) mod retention;
pub mod sealed;
pub mod segment;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::Digest;

use crate::identity::FileIds;
use crate::io::{open_append, write_atomic, DataFile, Faults};
use segment::{seal_file_name, segment_file_name, Seal, SegmentHeader, LOG_FORMAT_VERSION};

/// A segment the writer has moved past, with its seal.
#[derive(Debug, Clone)]
pub struct SealedSegment {
    /// The segment file.
    pub path: PathBuf,
    /// Its seal.
    pub seal: Seal,
}

/// The sealed segments of a data directory, shared between the committer (which adds them)
/// and the checkpointer (which removes the ones no checkpoint needs).
pub(crate) type SealedList = Arc<Mutex<Vec<SealedSegment>>>;

/// Where the writer resumes: the active segment's state as recovery left it.
pub(crate) struct ActiveSegment {
    pub first_lsn: u64,
    pub path: PathBuf,
    /// Bytes already in the file (recovery cut any torn tail first).
    pub bytes: Vec<u8>,
    pub last_lsn: u64,
    pub last_commit_ts: u64,
}

/// The append side of the log.
pub(crate) struct CommitLog {
    dir: PathBuf,
    file: DataFile,
    first_lsn: u64,
    len: u64,
    last_lsn: u64,
    last_commit_ts: u64,
    hasher: sha2::Sha256,
    segment_size: u64,
    faults: Faults,
    sealed: SealedList,
    /// Database and timeline written into every new segment's header.
    ids: FileIds,
    /// Keys new segments are sealed with (the first one), `None` when unencrypted.
    keys: Option<crate::crypto::Keyring>,
    /// Seals the active segment's frames; `None` when it is unencrypted.
    cipher: Option<crate::crypto::FileCipher>,
    /// Bytes appended since the log was opened.
    pub appended_bytes: u64,
    /// The active segment's sparse index, shared with readers (`log::reader`).
    index: Arc<Mutex<index::ActiveIndex>>,
}

impl CommitLog {
    /// The log directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Resumes appending to `active`, or starts a new segment at `next_lsn` when `None`. New
    /// segments carry `ids` (the directory's database and current timeline), and with `keys`
    /// are encrypted with its first key. An encrypted log never resumes a segment: recovery
    /// passes `active` only for an unencrypted segment opened without keys (see
    /// `docs/ENCRYPTION.md`, "Nonces").
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open(
        dir: &Path,
        active: Option<ActiveSegment>,
        next_lsn: u64,
        segment_size: u64,
        faults: Faults,
        sealed: SealedList,
        ids: FileIds,
        keys: Option<crate::crypto::Keyring>,
    ) -> std::io::Result<Self> {
        match active {
            Some(_) if keys.is_some() => Err(std::io::Error::other(
                "an encrypted log never appends to a segment written before this open",
            )),
            Some(a) => {
                let file = open_append(&a.path, &faults)?;
                let mut hasher = sha2::Sha256::new();
                hasher.update(&a.bytes);
                let index = Arc::new(Mutex::new(active_index_of(&a.path, a.first_lsn, &a.bytes)));
                Ok(CommitLog {
                    dir: dir.to_owned(),
                    file,
                    first_lsn: a.first_lsn,
                    len: a.bytes.len() as u64,
                    last_lsn: a.last_lsn,
                    last_commit_ts: a.last_commit_ts,
                    hasher,
                    segment_size,
                    faults,
                    sealed,
                    ids,
                    keys,
                    cipher: None,
                    appended_bytes: 0,
                    index,
                })
            }
            None => {
                let (file, hasher, len, cipher) =
                    create_segment(dir, next_lsn, ids, keys.as_ref(), &faults)?;
                let index = Arc::new(Mutex::new(empty_index(
                    dir.join(segment_file_name(next_lsn)),
                    next_lsn,
                    len,
                )));
                Ok(CommitLog {
                    dir: dir.to_owned(),
                    file,
                    first_lsn: next_lsn,
                    len,
                    last_lsn: next_lsn - 1,
                    last_commit_ts: 0,
                    hasher,
                    segment_size,
                    faults,
                    sealed,
                    ids,
                    keys,
                    cipher,
                    appended_bytes: 0,
                    index,
                })
            }
        }
    }

    /// The active segment's index, for readers.
    pub(crate) fn active_index(&self) -> Arc<Mutex<index::ActiveIndex>> {
        self.index.clone()
    }

    /// Seals the active segment and starts one at `first_lsn` when the active one is full, so
    /// the batch about to be appended never spans two segments. A failure here leaves no byte
    /// of that batch on disk.
    pub(crate) fn roll_if_full(&mut self, first_lsn: u64) -> std::io::Result<()> {
        if self.len >= self.segment_size && self.last_lsn >= self.first_lsn {
            self.roll(first_lsn)?;
        }
        Ok(())
    }

    /// Appends already-framed commits ending at `last_lsn` (call [`Self::roll_if_full`]
    /// first). A failure may leave any prefix of `frames` on disk.
    pub(crate) fn append(
        &mut self,
        frames: &[u8],
        last_lsn: u64,
        last_ts: u64,
    ) -> std::io::Result<()> {
        let sealed;
        let frames = match &self.cipher {
            None => frames,
            Some(c) => {
                sealed = sealed::seal_frames(c, frames, self.len)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                &sealed[..]
            }
        };
        self.file
            .write_all(frames)
            .map_err(|e| op_failed("write to log segment", self.file.path(), e))?;
        if let Ok(mut idx) = self.index.lock() {
            let (first, version) = (idx.first_lsn, idx.format_version);
            let mut added = vec![];
            index::index_frames(frames, self.len, first, version, &mut added);
            idx.entries.extend(added);
            idx.last_lsn = last_lsn;
            idx.len = self.len + frames.len() as u64;
        }
        self.hasher.update(frames);
        self.len += frames.len() as u64;
        self.appended_bytes += frames.len() as u64;
        self.last_lsn = last_lsn;
        self.last_commit_ts = last_ts;
        Ok(())
    }

    /// `fdatasync` of the active segment.
    pub(crate) fn sync(&mut self) -> std::io::Result<()> {
        self.file
            .sync_data()
            .map_err(|e| op_failed("fdatasync of log segment", self.file.path(), e))
    }

    /// Seals the active segment (if it holds any commit) and starts a new one at `next_lsn`,
    /// so every commit so far is in a sealed segment (backups archive sealed segments only).
    pub(crate) fn seal_active(&mut self, next_lsn: u64) -> std::io::Result<()> {
        if self.last_lsn >= self.first_lsn {
            self.roll(next_lsn)?;
        }
        Ok(())
    }

    /// Seals the active segment and starts a new one at `next_lsn`.
    fn roll(&mut self, next_lsn: u64) -> std::io::Result<()> {
        self.file
            .sync_data()
            .map_err(|e| op_failed("fdatasync of log segment", self.file.path(), e))?;
        let seal = Seal {
            first_lsn: self.first_lsn,
            last_lsn: self.last_lsn,
            length: self.len,
            last_commit_ts: self.last_commit_ts,
            sha256: self.hasher.clone().finalize().into(),
        };
        let seal_path = self.dir.join(seal_file_name(self.first_lsn));
        write_atomic(&seal_path, &seal.encode(), &self.faults)
            .map_err(|e| op_failed("writing seal", &seal_path, e))?;
        let (file, hasher, len, cipher) = create_segment(
            &self.dir,
            next_lsn,
            self.ids,
            self.keys.as_ref(),
            &self.faults,
        )
        .map_err(|e| {
            op_failed(
                "creating log segment",
                &self.dir.join(segment_file_name(next_lsn)),
                e,
            )
        })?;
        // The sealed segment's index beside it: derived data, rebuilt by readers when missing,
        // so a failure to write it fails nothing.
        let entries = self
            .index
            .lock()
            .map(|i| i.entries.clone())
            .unwrap_or_default();
        let idx_path = self.dir.join(index::idx_file_name(self.first_lsn));
        let idx_bytes = index::encode_idx(self.first_lsn, self.len, &entries);
        index::write_idx_best_effort(&idx_path, &idx_bytes);
        let old_path = std::mem::replace(&mut self.file, file).path().to_owned();
        if let Ok(mut sealed) = self.sealed.lock() {
            sealed.push(SealedSegment {
                path: old_path,
                seal,
            });
        }
        tracing::debug!(
            first_lsn = self.first_lsn,
            last_lsn = self.last_lsn,
            "sealed log segment"
        );
        // Only now that the sealed list has the old segment does the active index move on,
        // so a reader always finds every written LSN in one of them.
        if let Ok(mut idx) = self.index.lock() {
            *idx = empty_index(self.dir.join(segment_file_name(next_lsn)), next_lsn, len);
        }
        self.hasher = hasher;
        self.len = len;
        self.first_lsn = next_lsn;
        self.cipher = cipher;
        Ok(())
    }
}

/// Names the operation and the file in an I/O error, keeping its kind (so "fdatasync of X
/// failed" never reads as a failed write).
fn op_failed(op: &str, path: &Path, e: std::io::Error) -> std::io::Error {
    let what = format!("{op} {}", path.display());
    std::io::Error::new(e.kind(), LogOpFailed { what, source: e })
}

/// An operation on the log that failed; the OS error stays reachable as its source (so
/// [`is_out_of_descriptors`] can still see it).
#[derive(Debug)]
struct LogOpFailed {
    what: String,
    source: std::io::Error,
}

impl std::fmt::Display for LogOpFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed: {}", self.what, self.source)
    }
}

impl std::error::Error for LogOpFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// True when `e` says the process or the system is out of file descriptors (EMFILE, ENFILE).
/// Only calls that create a descriptor (open) fail so, never a write or an fsync; in
/// [`CommitLog::append`] such a failure comes from rolling to a new segment before any byte of
/// the batch was written, and every step of the roll is redone on the next append. So it fails
/// the batch and must not poison the database (an idle-connection flood must not take writes
/// down for good).
pub(crate) fn is_out_of_descriptors(e: &std::io::Error) -> bool {
    // EMFILE = 24, ENFILE = 23 on Linux, the BSDs and macOS. The io layer and `op_failed`
    // wrap the OS error to name the operation; it stays reachable as a source.
    let mut at: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = at {
        let io = err.downcast_ref::<std::io::Error>();
        if cfg!(unix) && matches!(io.and_then(std::io::Error::raw_os_error), Some(23 | 24)) {
            return true;
        }
        at = match io {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    false
}

/// The index of an active segment with no frame yet.
fn empty_index(path: PathBuf, first_lsn: u64, len: u64) -> index::ActiveIndex {
    index::ActiveIndex {
        path,
        first_lsn,
        format_version: LOG_FORMAT_VERSION,
        last_lsn: first_lsn - 1,
        len,
        entries: vec![],
    }
}

/// The index of the active segment recovery left (`bytes`, torn tail already cut).
fn active_index_of(path: &Path, first_lsn: u64, bytes: &[u8]) -> index::ActiveIndex {
    let header = SegmentHeader::decode(bytes).ok();
    let version = header.map_or(LOG_FORMAT_VERSION, |h| h.format_version);
    let start = header.map_or(bytes.len(), |h| h.encoded_len());
    let mut entries = vec![];
    let last = index::index_frames(
        bytes.get(start..).unwrap_or_default(),
        start as u64,
        first_lsn,
        version,
        &mut entries,
    );
    index::ActiveIndex {
        path: path.to_owned(),
        first_lsn,
        format_version: version,
        last_lsn: last.unwrap_or(first_lsn - 1),
        len: bytes.len() as u64,
        entries,
    }
}

/// Creates a segment file with its header, durably (file and directory synced): with `keys`,
/// encrypted with the first key, and the cipher for its frames. Every segment gets a fresh
/// random salt, so a segment re-created at the same first LSN (its creation lost in a power
/// cut, or an empty one replaced) never shares a file key with the one before.
fn create_segment(
    dir: &Path,
    first_lsn: u64,
    ids: FileIds,
    keys: Option<&crate::crypto::Keyring>,
    faults: &Faults,
) -> std::io::Result<(
    DataFile,
    sha2::Sha256,
    u64,
    Option<crate::crypto::FileCipher>,
)> {
    let path = dir.join(segment_file_name(first_lsn));
    let salt =
        crate::crypto::FileId::new_salt().map_err(|e| std::io::Error::other(e.to_string()))?;
    let head = SegmentHeader {
        format_version: LOG_FORMAT_VERSION,
        key_id: keys.map_or(0, |k| k.primary().id().get()),
        first_lsn,
        ids: Some(ids),
        salt,
    };
    let cipher = keys
        .map(|k| k.file_cipher(&sealed::file_id(&head)))
        .transpose()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let header = head.encode();
    // Temp file, fsync, rename, fsync of the directory: a segment never exists without its
    // whole header, so a crash or a failed write here cannot leave a file that recovery would
    // have to call damage (recovery removes a leftover temp file).
    write_atomic(&path, &header, faults)?;
    segment::write_log_head(dir, first_lsn, faults)?;
    let file = open_append(&path, faults)?;
    let mut hasher = sha2::Sha256::new();
    hasher.update(&header);
    Ok((file, hasher, header.len() as u64, cipher))
}

/// Seals a segment that recovery found complete but unsealed (the writer stopped between
/// finishing it and writing its seal).
pub(crate) fn write_seal(
    dir: &Path,
    path: &Path,
    bytes: &[u8],
    first_lsn: u64,
    last_lsn: u64,
    last_commit_ts: u64,
    faults: &Faults,
) -> std::io::Result<Seal> {
    let seal = Seal {
        first_lsn,
        last_lsn,
        length: bytes.len() as u64,
        last_commit_ts,
        sha256: crate::codec::sha256(bytes),
    };
    let _ = path;
    write_atomic(&dir.join(seal_file_name(first_lsn)), &seal.encode(), faults)?;
    Ok(seal)
}

/// Reads a whole file.
pub(crate) fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    crate::io::read(path, &Faults::none())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod out_of_descriptors_tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use crate::io::{Fault, FaultInjector, Faults, IoOp};
    use crate::{Db, Error, Options};

    /// Fails the next `left` writes of a temp file in the log directory (the seal or the new
    /// segment of a roll) with EMFILE, as an open would when the process is out of fds.
    struct OutOfFds {
        left: AtomicU32,
    }

    impl FaultInjector for OutOfFds {
        fn on_io(&self, op: IoOp<'_>) -> Fault {
            if let IoOp::Write { path, .. } = op {
                let in_log = path.parent().and_then(|d| d.file_name()) == Some("log".as_ref());
                let tmp = path.extension() == Some("tmp".as_ref());
                if in_log && tmp && self.left.load(Ordering::SeqCst) > 0 {
                    self.left.fetch_sub(1, Ordering::SeqCst);
                    return Fault::Fail(std::io::Error::from_raw_os_error(24));
                }
            }
            Fault::Proceed
        }
    }

    #[test]
    fn running_out_of_descriptors_while_rolling_to_a_new_segment_fails_the_batch_without_poisoning()
    {
        let dir = tempfile::tempdir().unwrap();
        let inj = Arc::new(OutOfFds {
            left: AtomicU32::new(0),
        });
        let opts = Options {
            segment_size: 4096,
            faults: Faults::new(inj.clone()),
            ..Options::default()
        };
        let db = Db::open_with(dir.path(), opts.clone()).unwrap();
        let pad = "x".repeat(1000);
        let mut i = 0;
        inj.left.store(1, Ordering::SeqCst);
        let mut failed = None;
        for _ in 0..20 {
            match db.put("c", &format!("k{i}"), serde_json::json!({ "pad": pad })) {
                Ok(_) => i += 1,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let e = failed.expect("a roll happened and failed");
        assert!(matches!(e, Error::Io { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("nothing of this transaction was written"),
            "{e}"
        );
        // The failed write is not visible, the database is writable, and everything
        // acknowledged survives a reopen.
        assert!(db.get("c", &format!("k{i}")).is_none());
        db.put("c", &format!("k{i}"), serde_json::json!({ "pad": pad }))
            .unwrap();
        db.close().unwrap();
        let db = Db::open_with(dir.path(), Options::default()).unwrap();
        for k in 0..=i {
            assert!(db.get("c", &format!("k{k}")).is_some(), "k{k} lost");
        }
        db.close().unwrap();
    }
}

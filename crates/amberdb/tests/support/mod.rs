//! Helpers shared by the engine's integration tests: copying a data directory, reading the
//! frames of a segment, and the damage the tests apply (bit flips, zeroed bytes, cuts).
//! Each test binary includes it with `mod support;` and uses only what it needs.

// Every test binary compiles this module and uses a different part of it.
#![allow(dead_code, clippy::unwrap_used, clippy::indexing_slicing)]

use std::fs;
use std::path::{Path, PathBuf};

use amberdb::log::segment::{list_segments, scan};
use amberdb::{Damage, Db, Document, Error, Options, LOCK_FILE, LOG_DIR};

/// Options with small segments and no checkpoint on close, so a test's log stays on disk, and
/// no history window (`history_retention` zero), so a checkpoint removes the segments it
/// does not need, as these tests expect.
pub fn opts(segment_size: u64) -> Options {
    Options {
        checkpoint_on_close: false,
        history_retention: std::time::Duration::ZERO,
        segment_size,
        ..Options::default()
    }
}

/// Every document of the database, in (collection, key) order, with its metadata.
pub fn snapshot(db: &Db) -> Vec<(String, Document)> {
    db.view()
        .iter_all()
        .map(|(c, d)| (c.to_string(), d.clone()))
        .collect()
}

/// Copies a (closed) data directory or repository, without its lock file.
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != LOCK_FILE {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The newest segment of the data directory `data`.
pub fn newest_segment(data: &Path) -> PathBuf {
    list_segments(&data.join(LOG_DIR))
        .unwrap()
        .last()
        .unwrap()
        .1
        .clone()
}

/// (LSN, offset) of every valid frame of the segment file `path`.
pub fn segment_frames(path: &Path) -> Vec<(u64, u64)> {
    let bytes = fs::read(path).unwrap();
    let mut frames = vec![];
    scan(&bytes, |rec, off| frames.push((rec.lsn, off))).unwrap();
    frames
}

/// Flips a bit of the byte at `offset` (a different bit for different offsets).
pub fn flip(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset as usize] ^= 1 << (offset % 8);
    fs::write(path, bytes).unwrap();
}

/// Zeroes up to `len` bytes of `path` from `at` (what a lost sector of an unsynced write, or
/// a file system that zero-fills after a power loss, leaves).
pub fn zero(path: &Path, at: u64, len: usize) {
    let mut bytes = fs::read(path).unwrap();
    for b in bytes.iter_mut().skip(at as usize).take(len) {
        *b = 0;
    }
    fs::write(path, bytes).unwrap();
}

/// Cuts `path` to `len` bytes (a torn or truncated file).
pub fn truncate(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Opens `dir` and expects it to be refused as damaged.
pub fn expect_damaged(dir: &Path, opts: Options) -> Damage {
    match Db::open_with(dir, opts) {
        Err(Error::Damaged(d)) => d,
        Err(e) => panic!("expected Error::Damaged, got {e}"),
        Ok(_) => panic!("expected Error::Damaged, but the database opened"),
    }
}

/// Every file under `root` (relative path, bytes), sorted, without the lock file: to show a
/// refused open changed nothing.
pub fn tree_listing(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = vec![];
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if e.file_name() != LOCK_FILE {
                let rel = e.path().strip_prefix(root).unwrap().to_owned();
                out.push((rel, fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Every file under `root` (full path) whose bytes contain `needle`: the plaintext scan of the
/// encryption tests.
pub fn files_containing(root: &Path, needle: &[u8]) -> Vec<PathBuf> {
    tree_listing(root)
        .into_iter()
        .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle))
        .map(|(rel, _)| root.join(rel))
        .collect()
}

/// A test key from one byte (distinct bytes give distinct keys and key ids).
pub fn test_key(n: u8) -> amberdb::crypto::Key {
    let mut b = [0u8; 32];
    for (i, x) in b.iter_mut().enumerate() {
        *x = n.wrapping_mul(41).wrapping_add(i as u8).wrapping_mul(23) ^ 0x71;
    }
    amberdb::crypto::Key::from_bytes(b)
}

/// A keyring of [`test_key`]s, the first sealing.
pub fn test_ring(keys: &[u8]) -> amberdb::crypto::Keyring {
    amberdb::crypto::Keyring::new(keys.iter().map(|k| test_key(*k)).collect()).unwrap()
}

/// (LSN, offset) of every valid frame of the segment file `path`, encrypted or not (payloads
/// are not opened).
pub fn segment_frames_any(path: &Path) -> Vec<(u64, u64)> {
    let bytes = fs::read(path).unwrap();
    let mut frames = vec![];
    amberdb::log::segment::scan_structure(&bytes, |rec, off| frames.push((rec.lsn, off))).unwrap();
    frames
}

/// Every retained entry of `stream` as (seq, value), read in pages of `page` entries.
pub fn stream_entries(db: &Db, stream: &str, page: usize) -> Vec<(u64, serde_json::Value)> {
    let mut out = vec![];
    let mut from = 1;
    loop {
        let p = db
            .read_stream(stream, amberdb::StreamFrom::Seq(from), page)
            .unwrap();
        if p.entries.is_empty() {
            return out;
        }
        for e in &p.entries {
            out.push((e.seq, e.json().unwrap()));
        }
        from = p.next_seq;
    }
}

/// Appends entries `from..from + n` of `stream`, one per commit, each ~110 bytes.
pub fn append_padded(db: &Db, stream: &str, from: u64, n: u64) {
    for i in from..from + n {
        db.append(
            stream,
            &[serde_json::json!({"i": i, "pad": "e".repeat(100)})],
            None,
        )
        .unwrap();
    }
}

/// Records which threads write the log (id and name), and makes every log fsync take
/// `sync_delay`: a slow disk, so that many writers are always waiting behind one fsync.
pub struct LogWatch {
    pub log: PathBuf,
    pub sync_delay: std::time::Duration,
    pub writers: std::sync::Mutex<Vec<(std::thread::ThreadId, String)>>,
}

impl amberdb::io::FaultInjector for LogWatch {
    fn on_io(&self, op: amberdb::io::IoOp<'_>) -> amberdb::io::Fault {
        match op {
            amberdb::io::IoOp::Write { path, .. } if path.starts_with(&self.log) => {
                let me = std::thread::current();
                let name = me.name().unwrap_or("?").to_string();
                self.writers.lock().unwrap().push((me.id(), name));
            }
            amberdb::io::IoOp::Sync { path } if path.starts_with(&self.log) => {
                std::thread::sleep(self.sync_delay);
            }
            _ => {}
        }
        amberdb::io::Fault::Proceed
    }
}

impl LogWatch {
    /// Names of the threads that wrote the log so far.
    pub fn writer_names(&self) -> Vec<String> {
        self.writers
            .lock()
            .unwrap()
            .iter()
            .map(|(_, n)| n.clone())
            .collect()
    }
}

/// Opens `dir` with default options under a [`LogWatch`].
pub fn open_watched(dir: &Path, sync_delay: std::time::Duration) -> (Db, std::sync::Arc<LogWatch>) {
    let watch = std::sync::Arc::new(LogWatch {
        log: dir.join(LOG_DIR),
        sync_delay,
        writers: std::sync::Mutex::new(vec![]),
    });
    let opts = Options {
        faults: amberdb::io::Faults::new(watch.clone()),
        ..Options::default()
    };
    (Db::open_with(dir, opts).unwrap(), watch)
}

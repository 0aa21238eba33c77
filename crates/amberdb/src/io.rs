//! File writes and syncs, routed through an optional fault injector.
//!
//! Every byte the engine writes to the data directory and every fsync goes through
//! [`DataFile`] or [`sync_dir`], so tests can make any of them fail (an I/O error, a full disk,
//! or a torn write that stores only part of the buffer) at an exact point.

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An I/O operation about to be performed on a data-directory file.
#[derive(Debug, Clone, Copy)]
pub enum IoOp<'a> {
    /// A write of `len` bytes.
    Write {
        /// The file.
        path: &'a Path,
        /// Bytes about to be written.
        len: usize,
    },
    /// An `fdatasync`/`fsync` of a file or directory.
    Sync {
        /// The file or directory.
        path: &'a Path,
    },
}

/// What the injector wants to happen to an operation.
#[derive(Debug)]
pub enum Fault {
    /// Perform it normally.
    Proceed,
    /// Fail it without touching the file.
    Fail(io::Error),
    /// Write only the first `written` bytes, then fail (a torn write). Syncs treat it as `Fail`.
    Partial {
        /// Bytes that reach the file.
        written: usize,
        /// The error returned afterwards.
        error: io::Error,
    },
}

/// A hook consulted before every write and sync. For tests; production code never sets one.
pub trait FaultInjector: Send + Sync {
    /// Decides the fate of one operation.
    fn on_io(&self, op: IoOp<'_>) -> Fault;
}

/// Shared, optional injector handle.
#[derive(Clone, Default)]
pub struct Faults(pub(crate) Option<Arc<dyn FaultInjector>>);

impl Faults {
    /// Wraps an injector.
    pub fn new(injector: Arc<dyn FaultInjector>) -> Self {
        Faults(Some(injector))
    }

    fn check(&self, op: IoOp<'_>) -> Fault {
        match &self.0 {
            Some(i) => i.on_io(op),
            None => Fault::Proceed,
        }
    }
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Faults(injector)"
        } else {
            "Faults(none)"
        })
    }
}

/// A file being written by the engine.
pub(crate) struct DataFile {
    file: File,
    path: PathBuf,
    faults: Faults,
}

impl DataFile {
    pub(crate) fn new(file: File, path: PathBuf, faults: Faults) -> Self {
        DataFile { file, path, faults }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self.faults.check(IoOp::Write {
            path: &self.path,
            len: buf.len(),
        }) {
            Fault::Proceed => self.file.write_all(buf),
            Fault::Fail(e) => Err(e),
            Fault::Partial { written, error } => {
                self.file
                    .write_all(buf.get(..written.min(buf.len())).unwrap_or_default())?;
                Err(error)
            }
        }
    }

    pub(crate) fn sync_data(&mut self) -> io::Result<()> {
        match self.faults.check(IoOp::Sync { path: &self.path }) {
            Fault::Proceed => self.file.sync_data(),
            Fault::Fail(e) | Fault::Partial { error: e, .. } => Err(e),
        }
    }

    pub(crate) fn sync_all(&mut self) -> io::Result<()> {
        match self.faults.check(IoOp::Sync { path: &self.path }) {
            Fault::Proceed => self.file.sync_all(),
            Fault::Fail(e) | Fault::Partial { error: e, .. } => Err(e),
        }
    }
}

/// Lets encoders stream into a data file; every write still passes the fault injector.
impl Write for DataFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Fsyncs a directory so that creations, renames and removals in it are durable.
pub(crate) fn sync_dir(dir: &Path, faults: &Faults) -> io::Result<()> {
    match faults.check(IoOp::Sync { path: dir }) {
        Fault::Proceed => File::open(dir)?.sync_all(),
        Fault::Fail(e) | Fault::Partial { error: e, .. } => Err(e),
    }
}

/// Writes `bytes` to `path` atomically: a temp file in the same directory, fsync, rename,
/// fsync of the directory. A crash leaves either the old file (or none) or the new one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], faults: &Faults) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let mut f = DataFile::new(File::create(&tmp)?, tmp.clone(), faults.clone());
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_dir(dir, faults)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Files named `<lsn><suffix>` (for example `00000000000000000042.log`) in `dir`, sorted by
/// LSN, oldest first. A missing directory has none.
pub(crate) fn list_by_lsn(dir: &Path, suffix: &str) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = vec![];
    if !dir.exists() {
        return Ok(out);
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let lsn = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(suffix))
            .and_then(|s| s.parse::<u64>().ok());
        if let Some(lsn) = lsn {
            out.push((lsn, path));
        }
    }
    out.sort();
    Ok(out)
}

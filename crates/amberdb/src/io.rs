//! The engine's one file-system layer.
//!
//! Every file operation of the engine (data directory, backup repository, restore) goes
//! through this module: creating and opening files, writes, file and directory syncs,
//! renames, removals, directory creation, truncation, reads and directory listings. That gives
//! three things one place:
//!
//! - **Fault injection**: before each operation a [`FaultInjector`] may fail it (an I/O error,
//!   a full disk, a torn write that stores only part of the buffer), and after it the
//!   injector learns that it took effect. Injectors come from [`Faults`] handles (the legacy
//!   per-database hook, [`crate::Options::faults`]) and from [`install`], which scopes an
//!   injector to a directory tree for as long as the returned guard lives (tests install one
//!   over a temp directory and see every operation under it, repository and restores
//!   included). [`PowerCut`] is an injector that simulates power loss.
//! - **Error messages that name the operation**: a failure reads "fsync of …/log/…01.log
//!   failed: …", "rename of A to B failed: …", never just the caller's context.
//! - **File modes**: files are created 0600 and directories 0700 (0640/0750 with group
//!   access), whatever the umask.
//!
//! Production code never installs an injector; the cost then is one relaxed atomic load per
//! operation.

mod powercut;

pub use powercut::{CutReport, PowerCut};

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// A file-system operation about to be performed (or just performed) by the engine.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum IoOp<'a> {
    /// A file created for writing; an existing file of that name is truncated.
    Create {
        /// The file.
        path: &'a Path,
    },
    /// An existing file opened for writing (appending, truncating, or the lock file), created
    /// empty if missing when `create` is set. Never truncates.
    Open {
        /// The file.
        path: &'a Path,
        /// Whether a missing file is created.
        create: bool,
    },
    /// A write of `len` bytes at the end of the file (the engine only appends).
    Write {
        /// The file.
        path: &'a Path,
        /// Bytes about to be written.
        len: usize,
        /// The bytes (for recording injectors). In `after_io` of a torn write, only the bytes
        /// that reached the file.
        data: &'a [u8],
    },
    /// An `fdatasync`/`fsync` of a file.
    Sync {
        /// The file.
        path: &'a Path,
    },
    /// An `fsync` of a directory, making creations, renames and removals in it durable.
    SyncDir {
        /// The directory.
        path: &'a Path,
    },
    /// A rename (replacing `to` if it exists).
    Rename {
        /// Old name.
        from: &'a Path,
        /// New name.
        to: &'a Path,
    },
    /// An atomic exchange of two names (`renameat2(RENAME_EXCHANGE)`): each now names what
    /// the other named.
    Exchange {
        /// One name.
        a: &'a Path,
        /// The other.
        b: &'a Path,
    },
    /// Removal of a file.
    RemoveFile {
        /// The file.
        path: &'a Path,
    },
    /// Removal of a directory and everything in it.
    RemoveDir {
        /// The directory.
        path: &'a Path,
    },
    /// Creation of one directory (`create_dir_all` reports each directory it creates).
    CreateDir {
        /// The directory.
        path: &'a Path,
    },
    /// Truncation (or extension) of a file to `len` bytes.
    SetLen {
        /// The file.
        path: &'a Path,
        /// New length.
        len: u64,
    },
    /// A read: a whole file, the opening of a streaming read, or one chunk of it.
    Read {
        /// The file.
        path: &'a Path,
    },
    /// A directory listing.
    ReadDir {
        /// The directory.
        path: &'a Path,
    },
}

impl IoOp<'_> {
    /// The file or directory operated on (`from` for a rename).
    pub fn path(&self) -> &Path {
        match *self {
            IoOp::Create { path }
            | IoOp::Open { path, .. }
            | IoOp::Write { path, .. }
            | IoOp::Sync { path }
            | IoOp::SyncDir { path }
            | IoOp::RemoveFile { path }
            | IoOp::RemoveDir { path }
            | IoOp::CreateDir { path }
            | IoOp::SetLen { path, .. }
            | IoOp::Read { path }
            | IoOp::ReadDir { path } => path,
            IoOp::Rename { from, .. } => from,
            IoOp::Exchange { a, .. } => a,
        }
    }

    /// Whether the operation changes the file system (everything but reads and listings).
    pub fn is_mutation(&self) -> bool {
        !matches!(self, IoOp::Read { .. } | IoOp::ReadDir { .. })
    }

    /// A short name of the kind of operation: `create`, `open`, `write`, `fsync`, `dir-fsync`,
    /// `rename`, `exchange`, `remove`, `remove-dir`, `create-dir`, `truncate`, `read`,
    /// `read-dir`.
    pub fn kind(&self) -> &'static str {
        match self {
            IoOp::Create { .. } => "create",
            IoOp::Open { .. } => "open",
            IoOp::Write { .. } => "write",
            IoOp::Sync { .. } => "fsync",
            IoOp::SyncDir { .. } => "dir-fsync",
            IoOp::Rename { .. } => "rename",
            IoOp::Exchange { .. } => "exchange",
            IoOp::RemoveFile { .. } => "remove",
            IoOp::RemoveDir { .. } => "remove-dir",
            IoOp::CreateDir { .. } => "create-dir",
            IoOp::SetLen { .. } => "truncate",
            IoOp::Read { .. } => "read",
            IoOp::ReadDir { .. } => "read-dir",
        }
    }

    fn touches(&self, root: &Path) -> bool {
        match self {
            IoOp::Rename { from, to } => from.starts_with(root) || to.starts_with(root),
            IoOp::Exchange { a, b } => a.starts_with(root) || b.starts_with(root),
            op => op.path().starts_with(root),
        }
    }
}

impl fmt::Display for IoOp<'_> {
    /// "fsync of /d/log/….log", "rename of A to B", ...: the subject of a failure message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IoOp::Create { path } => write!(f, "create of {}", path.display()),
            IoOp::Open { path, .. } => write!(f, "open of {}", path.display()),
            IoOp::Write { path, len, .. } => {
                write!(f, "write of {len} bytes to {}", path.display())
            }
            IoOp::Sync { path } => write!(f, "fsync of {}", path.display()),
            IoOp::SyncDir { path } => write!(f, "fsync of directory {}", path.display()),
            IoOp::Rename { from, to } => {
                write!(f, "rename of {} to {}", from.display(), to.display())
            }
            IoOp::Exchange { a, b } => {
                write!(f, "exchange of {} and {}", a.display(), b.display())
            }
            IoOp::RemoveFile { path } => write!(f, "removal of {}", path.display()),
            IoOp::RemoveDir { path } => write!(f, "removal of directory {}", path.display()),
            IoOp::CreateDir { path } => write!(f, "creation of directory {}", path.display()),
            IoOp::SetLen { path, len } => {
                write!(f, "truncation of {} to {len} bytes", path.display())
            }
            IoOp::Read { path } => write!(f, "read of {}", path.display()),
            IoOp::ReadDir { path } => write!(f, "listing of directory {}", path.display()),
        }
    }
}

/// What the injector wants to happen to an operation.
#[derive(Debug)]
pub enum Fault {
    /// Perform it normally.
    Proceed,
    /// Fail it without touching the file system.
    Fail(io::Error),
    /// Write only the first `written` bytes, then fail (a torn write). Other operations
    /// treat it as `Fail`.
    Partial {
        /// Bytes that reach the file.
        written: usize,
        /// The error returned afterwards.
        error: io::Error,
    },
}

/// A hook consulted around every file-system operation. For tests; production code never
/// sets one.
pub trait FaultInjector: Send + Sync {
    /// Decides the fate of one operation, before it runs.
    fn on_io(&self, op: IoOp<'_>) -> Fault;

    /// Called after an operation that `on_io` let through took effect (`done`), or failed on
    /// its own (`!done`). For a torn write, `done` is true and `data` holds the bytes that
    /// reached the file. Default: nothing.
    fn after_io(&self, op: IoOp<'_>, done: bool) {
        let _ = (op, done);
    }
}

/// Shared, optional injector handle.
#[derive(Clone, Default)]
pub struct Faults(pub(crate) Option<Arc<dyn FaultInjector>>);

impl Faults {
    /// Wraps an injector.
    pub fn new(injector: Arc<dyn FaultInjector>) -> Self {
        Faults(Some(injector))
    }

    /// No injector of its own (scoped injectors from [`install`] still apply).
    pub fn none() -> Self {
        Faults(None)
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

struct Scope {
    id: u64,
    root: PathBuf,
    injector: Arc<dyn FaultInjector>,
}

static SCOPES: RwLock<Vec<Scope>> = RwLock::new(Vec::new());
static SCOPE_COUNT: AtomicUsize = AtomicUsize::new(0);
static NEXT_SCOPE: AtomicU64 = AtomicU64::new(0);

/// Keeps an injector installed by [`install`]; dropping it uninstalls it.
#[must_use = "the injector is uninstalled when the guard is dropped"]
pub struct InjectorScope {
    id: u64,
}

impl fmt::Debug for InjectorScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InjectorScope({})", self.id)
    }
}

impl Drop for InjectorScope {
    fn drop(&mut self) {
        if let Ok(mut scopes) = SCOPES.write() {
            scopes.retain(|s| s.id != self.id);
            SCOPE_COUNT.store(scopes.len(), Ordering::Release);
        }
    }
}

/// Installs `injector` for every operation of this process on a path under `root` (for a
/// rename: either name), until the guard is dropped. Paths are compared as given, so pass
/// the same (absolute) spelling the engine is given.
pub fn install(root: impl Into<PathBuf>, injector: Arc<dyn FaultInjector>) -> InjectorScope {
    let id = NEXT_SCOPE.fetch_add(1, Ordering::Relaxed);
    let mut scopes = SCOPES.write().unwrap_or_else(|e| e.into_inner());
    scopes.push(Scope {
        id,
        root: root.into(),
        injector,
    });
    SCOPE_COUNT.store(scopes.len(), Ordering::Release);
    InjectorScope { id }
}

/// The injectors that see `op`: the handle's own, then every installed scope covering it.
fn injectors(faults: &Faults, op: &IoOp<'_>) -> Vec<Arc<dyn FaultInjector>> {
    let mut out: Vec<Arc<dyn FaultInjector>> = faults.0.iter().cloned().collect();
    if SCOPE_COUNT.load(Ordering::Acquire) > 0 {
        if let Ok(scopes) = SCOPES.read() {
            out.extend(
                scopes
                    .iter()
                    .filter(|s| op.touches(&s.root))
                    .map(|s| s.injector.clone()),
            );
        }
    }
    out
}

/// An I/O error that names the operation that failed; the OS error stays its source.
#[derive(Debug)]
struct OpError {
    op: String,
    source: io::Error,
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.op, self.source)
    }
}

impl std::error::Error for OpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn named(op: &IoOp<'_>, e: io::Error) -> io::Error {
    if e.get_ref().is_some_and(|inner| inner.is::<OpError>()) {
        return e;
    }
    io::Error::new(
        e.kind(),
        OpError {
            op: op.to_string(),
            source: e,
        },
    )
}

/// Runs `f` as `op`: asks the injectors first, tells them the outcome after, and names the
/// operation in any error.
fn run<T>(faults: &Faults, op: IoOp<'_>, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let injectors = injectors(faults, &op);
    for i in &injectors {
        match i.on_io(op) {
            Fault::Proceed => {}
            Fault::Fail(e) | Fault::Partial { error: e, .. } => return Err(named(&op, e)),
        }
    }
    let result = f();
    for i in &injectors {
        i.after_io(op, result.is_ok());
    }
    result.map_err(|e| named(&op, e))
}

/// Whether new files and directories get group read (and search) permission.
static GROUP_ACCESS: AtomicBool = AtomicBool::new(false);

/// Sets the mode of files and directories the engine creates from now on, in this process:
/// 0600/0700 (the default), or 0640/0750 with `group_access`. [`crate::Db::open_with`] applies
/// [`crate::Options::group_access`]; the CLI and server set it from their configuration.
pub fn set_group_access(group_access: bool) {
    GROUP_ACCESS.store(group_access, Ordering::Relaxed);
}

pub(crate) fn file_mode() -> u32 {
    if GROUP_ACCESS.load(Ordering::Relaxed) {
        0o640
    } else {
        0o600
    }
}

fn dir_mode() -> u32 {
    if GROUP_ACCESS.load(Ordering::Relaxed) {
        0o750
    } else {
        0o700
    }
}

/// Gives `file` exactly `mode`: the umask can only have removed bits from it.
fn fix_mode(file: &File, mode: u32) -> io::Result<()> {
    if mode & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// A file being written by the engine.
pub(crate) struct DataFile {
    file: File,
    path: PathBuf,
    faults: Faults,
}

impl fmt::Debug for DataFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataFile({})", self.path.display())
    }
}

impl DataFile {
    /// Wraps an already open file (prefer [`create`] and [`open_append`]).
    pub(crate) fn new(file: File, path: PathBuf, faults: Faults) -> Self {
        DataFile { file, path, faults }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying file, for what the layer does not cover (the directory lock).
    pub(crate) fn file(&mut self) -> &mut File {
        &mut self.file
    }

    pub(crate) fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let op = IoOp::Write {
            path: &self.path,
            len: buf.len(),
            data: buf,
        };
        let injectors = injectors(&self.faults, &op);
        for i in &injectors {
            match i.on_io(op) {
                Fault::Proceed => {}
                Fault::Fail(e) => return Err(named(&op, e)),
                Fault::Partial { written, error } => {
                    let part = buf.get(..written.min(buf.len())).unwrap_or_default();
                    let result = self.file.write_all(part);
                    let done = IoOp::Write {
                        path: &self.path,
                        len: part.len(),
                        data: part,
                    };
                    for i in &injectors {
                        i.after_io(done, result.is_ok());
                    }
                    result.map_err(|e| named(&op, e))?;
                    return Err(named(&op, error));
                }
            }
        }
        let result = self.file.write_all(buf);
        for i in &injectors {
            i.after_io(op, result.is_ok());
        }
        result.map_err(|e| named(&op, e))
    }

    pub(crate) fn sync_data(&mut self) -> io::Result<()> {
        let file = &self.file;
        run(&self.faults, IoOp::Sync { path: &self.path }, || {
            file.sync_data()
        })
    }

    pub(crate) fn sync_all(&mut self) -> io::Result<()> {
        let file = &self.file;
        run(&self.faults, IoOp::Sync { path: &self.path }, || {
            file.sync_all()
        })
    }

    pub(crate) fn set_len(&mut self, len: u64) -> io::Result<()> {
        let file = &self.file;
        run(
            &self.faults,
            IoOp::SetLen {
                path: &self.path,
                len,
            },
            || file.set_len(len),
        )
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

/// Creates `path` for writing (mode 0600), truncating an existing file.
pub(crate) fn create(path: &Path, faults: &Faults) -> io::Result<DataFile> {
    let mode = file_mode();
    let file = run(faults, IoOp::Create { path }, || {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path)?;
        fix_mode(&f, mode)?;
        Ok(f)
    })?;
    Ok(DataFile::new(file, path.to_owned(), faults.clone()))
}

/// Opens an existing file for appending.
pub(crate) fn open_append(path: &Path, faults: &Faults) -> io::Result<DataFile> {
    let file = run(
        faults,
        IoOp::Open {
            path,
            create: false,
        },
        || OpenOptions::new().append(true).open(path),
    )?;
    Ok(DataFile::new(file, path.to_owned(), faults.clone()))
}

/// Opens an existing file for writing at its start (to truncate it), without truncating.
pub(crate) fn open_write(path: &Path, faults: &Faults) -> io::Result<DataFile> {
    let file = run(
        faults,
        IoOp::Open {
            path,
            create: false,
        },
        || OpenOptions::new().write(true).open(path),
    )?;
    Ok(DataFile::new(file, path.to_owned(), faults.clone()))
}

/// Opens `path` for reading and writing, creating it empty (mode 0600) if missing, never
/// truncating (the directory lock file).
pub(crate) fn open_or_create(path: &Path, faults: &Faults) -> io::Result<DataFile> {
    let mode = file_mode();
    let file = run(faults, IoOp::Open { path, create: true }, || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(mode)
            .open(path)
    })?;
    Ok(DataFile::new(file, path.to_owned(), faults.clone()))
}

/// Writes `bytes` as the whole new content of `path` and fsyncs it (its name is durable once
/// the directory is synced).
pub(crate) fn write_new(path: &Path, bytes: &[u8], faults: &Faults) -> io::Result<()> {
    let mut f = create(path, faults)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Reads a whole file.
pub(crate) fn read(path: &Path, faults: &Faults) -> io::Result<Vec<u8>> {
    run(faults, IoOp::Read { path }, || std::fs::read(path))
}

/// A file opened for streaming reads; every chunk read passes the fault injector.
pub(crate) struct ReadFile {
    file: File,
    path: PathBuf,
    faults: Faults,
}

impl Read for ReadFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let file = &mut self.file;
        run(&self.faults, IoOp::Read { path: &self.path }, || {
            file.read(buf)
        })
    }
}

/// Moves the read position (range reads of blobs); no file-system operation of its own.
impl Seek for ReadFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.file.seek(pos)
    }
}

impl ReadFile {
    /// Length of the open file (of the file this handle opened, even if its name has since
    /// been renamed over).
    pub(crate) fn len(&self) -> io::Result<u64> {
        self.file.metadata().map(|m| m.len())
    }

    /// Moves the read position to `offset` from the start (positioned reads of stream files;
    /// the reads that follow pass the fault injector).
    pub(crate) fn seek_to(&mut self, offset: u64) -> io::Result<()> {
        use std::io::Seek;
        self.file.seek(io::SeekFrom::Start(offset)).map(|_| ())
    }
}

/// Opens a file for streaming reads.
pub(crate) fn open_read(path: &Path, faults: &Faults) -> io::Result<ReadFile> {
    let file = run(faults, IoOp::Read { path }, || File::open(path))?;
    Ok(ReadFile {
        file,
        path: path.to_owned(),
        faults: faults.clone(),
    })
}

/// The entries of a directory (full paths), sorted by name.
pub(crate) fn read_dir(dir: &Path, faults: &Faults) -> io::Result<Vec<PathBuf>> {
    run(faults, IoOp::ReadDir { path: dir }, || {
        let mut out = vec![];
        for entry in std::fs::read_dir(dir)? {
            out.push(entry?.path());
        }
        out.sort();
        Ok(out)
    })
}

/// Renames `from` to `to` (replacing `to`). Durable once both directories are synced.
pub(crate) fn rename(from: &Path, to: &Path, faults: &Faults) -> io::Result<()> {
    run(faults, IoOp::Rename { from, to }, || {
        std::fs::rename(from, to)
    })
}

/// Exchanges two names atomically (both must exist). Durable once their directories are
/// synced. Linux only (`renameat2(RENAME_EXCHANGE)`); elsewhere `Unsupported`.
pub(crate) fn exchange(a: &Path, b: &Path, faults: &Faults) -> io::Result<()> {
    run(faults, IoOp::Exchange { a, b }, || exchange_names(a, b))
}

#[cfg(target_os = "linux")]
fn exchange_names(a: &Path, b: &Path) -> io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).map_err(io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn exchange_names(_: &Path, _: &Path) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "this OS has no atomic exchange of two names",
    ))
}

/// Removes a file. Durable once its directory is synced.
pub(crate) fn remove_file(path: &Path, faults: &Faults) -> io::Result<()> {
    run(faults, IoOp::RemoveFile { path }, || {
        std::fs::remove_file(path)
    })
}

/// Removes an empty directory.
pub(crate) fn remove_dir(path: &Path, faults: &Faults) -> io::Result<()> {
    run(faults, IoOp::RemoveDir { path }, || {
        std::fs::remove_dir(path)
    })
}

/// Removes a directory and everything in it.
pub(crate) fn remove_dir_all(path: &Path, faults: &Faults) -> io::Result<()> {
    run(faults, IoOp::RemoveDir { path }, || {
        std::fs::remove_dir_all(path)
    })
}

/// Creates one directory (mode 0700).
pub(crate) fn create_dir(path: &Path, faults: &Faults) -> io::Result<()> {
    let mode = dir_mode();
    run(faults, IoOp::CreateDir { path }, || {
        std::fs::DirBuilder::new().mode(mode).create(path)?;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        }
        Ok(())
    })
}

/// Creates `path` and any missing parents (mode 0700), and makes each new directory durable:
/// after creating a directory its parent is fsynced, so the new name survives power loss.
pub(crate) fn create_dir_all(path: &Path, faults: &Faults) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    let mut missing = vec![];
    let mut p = path;
    while !p.as_os_str().is_empty() && !p.is_dir() {
        missing.push(p);
        match p.parent() {
            Some(parent) => p = parent,
            None => break,
        }
    }
    for dir in missing.into_iter().rev() {
        match create_dir(dir, faults) {
            Ok(()) => {}
            // Another thread or process made it first; it still needs the parent's sync.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(e),
        }
        sync_dir(parent_dir(dir), faults)?;
    }
    Ok(())
}

/// The directory holding `path` (`.` for a bare name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Fsyncs a directory so that creations, renames and removals in it are durable.
pub(crate) fn sync_dir(dir: &Path, faults: &Faults) -> io::Result<()> {
    run(faults, IoOp::SyncDir { path: dir }, || {
        File::open(dir)?.sync_all()
    })
}

/// Writes `bytes` to `path` atomically: a temp file in the same directory, fsync, rename,
/// fsync of the directory. A crash leaves either the old file (or none) or the new one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], faults: &Faults) -> io::Result<()> {
    let dir = parent_dir(path);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let mut f = create(&tmp, faults)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        rename(&tmp, path, faults)?;
        sync_dir(dir, faults)
    })();
    if result.is_err() {
        let _ = remove_file(&tmp, faults);
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
    for path in read_dir(dir, &Faults::none())? {
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

//! Where a backup repository's bytes live. The engine talks to a repository only through
//! [`RepoStorage`], so object storage can be added later without touching backup logic.
//! Paths are `/`-separated and relative to the repository root; a path that could leave the
//! root (absolute, empty, `.` or `..` components, backslashes) is refused by every operation,
//! and deletions also refuse to pass through a symbolic link, so nothing a repository file
//! says can make the engine read or delete outside the repository.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::io::{self as fs, DataFile, Faults};

/// A finished-or-discarded streaming upload: `commit` makes it visible atomically; dropping
/// it without committing leaves nothing behind under the final name.
pub trait RepoWriter: Write + Send {
    /// Makes the written bytes visible under the final name, durably.
    fn commit(self: Box<Self>) -> io::Result<()>;
}

/// Storage for a backup repository.
pub trait RepoStorage: Send + Sync + std::fmt::Debug {
    /// Reads a whole object.
    fn read(&self, path: &str) -> io::Result<Vec<u8>>;
    /// Opens an object for streaming reads.
    fn open(&self, path: &str) -> io::Result<Box<dyn Read + Send>>;
    /// Writes a whole object atomically and durably.
    fn write_atomic(&self, path: &str, bytes: &[u8]) -> io::Result<()>;
    /// Starts a streaming upload of an object.
    fn create(&self, path: &str) -> io::Result<Box<dyn RepoWriter>>;
    /// Names directly under a directory (files and subdirectories), sorted.
    fn list(&self, dir: &str) -> io::Result<Vec<String>>;
    /// Whether an object exists.
    fn exists(&self, path: &str) -> bool;
    /// Size of an object in bytes.
    fn size(&self, path: &str) -> io::Result<u64>;
    /// Removes an object.
    fn remove(&self, path: &str) -> io::Result<()>;
    /// Removes an (empty after its objects are removed) directory and anything left in it.
    fn remove_dir(&self, dir: &str) -> io::Result<()>;
    /// Human-readable location, for messages.
    fn location(&self) -> String;
    /// Takes the exclusive lock named `path` without waiting, creating it if needed: `None`
    /// when someone else (another process or handle) holds it. The lock lasts as long as the
    /// returned guard and ends when its holder dies, so a crashed writer never leaves it held.
    fn try_lock(&self, path: &str) -> io::Result<Option<Box<dyn Send + Sync>>>;
}

/// A repository in a local (or mounted) directory.
#[derive(Debug, Clone)]
pub struct DirStorage {
    root: PathBuf,
}

impl DirStorage {
    /// Storage rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirStorage { root: root.into() }
    }

    /// The file-system path of repository path `p`, or an error when `p` could leave the root.
    fn path(&self, p: &str) -> io::Result<PathBuf> {
        confined(p)?;
        Ok(self.root.join(p))
    }

    /// Like `path`, for deletions: also refuses when a directory on the way (below the root)
    /// is a symbolic link, which could point outside the repository.
    fn path_for_removal(&self, p: &str) -> io::Result<PathBuf> {
        let full = self.path(p)?;
        let mut at = self.root.clone();
        let parts: Vec<&str> = p.split('/').collect();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            at.push(part);
            if std::fs::symlink_metadata(&at)?.file_type().is_symlink() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is a symbolic link; refusing to delete through it",
                        at.display()
                    ),
                ));
            }
        }
        Ok(full)
    }
}

/// Refuses a repository path that is not a plain relative path below the root.
pub(crate) fn confined(p: &str) -> io::Result<()> {
    let bad = p.is_empty()
        || p.contains(['\\', '\0'])
        || p.split('/').any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{p:?} is not a path inside the repository"),
        ));
    }
    Ok(())
}

fn sync_parent(path: &Path) -> io::Result<()> {
    fs::sync_dir(fs::parent_dir(path), &Faults::none())
}

struct DirWriter {
    file: Option<DataFile>,
    tmp: PathBuf,
    dest: PathBuf,
}

impl Write for DirWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.file {
            Some(f) => f.write(buf),
            None => Err(io::Error::other("writer already committed")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl RepoWriter for DirWriter {
    fn commit(mut self: Box<Self>) -> io::Result<()> {
        if let Some(mut f) = self.file.take() {
            f.sync_all()?;
        }
        fs::rename(&self.tmp, &self.dest, &Faults::none())?;
        sync_parent(&self.dest)
    }
}

impl Drop for DirWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.tmp, &Faults::none());
        }
    }
}

impl RepoStorage for DirStorage {
    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        fs::read(&self.path(path)?, &Faults::none())
    }

    fn open(&self, path: &str) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(io::BufReader::new(fs::open_read(
            &self.path(path)?,
            &Faults::none(),
        )?)))
    }

    fn write_atomic(&self, path: &str, bytes: &[u8]) -> io::Result<()> {
        let mut w = self.create(path)?;
        w.write_all(bytes)?;
        w.commit()
    }

    fn create(&self, path: &str) -> io::Result<Box<dyn RepoWriter>> {
        let dest = self.path(path)?;
        let dir = dest
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| self.root.clone());
        // Creates each missing directory and syncs its parent (the repository root's own
        // parent included), so a committed object's path survives power loss.
        fs::create_dir_all(&dir, &Faults::none())?;
        let name = dest
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("object");
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        Ok(Box::new(DirWriter {
            file: Some(fs::create(&tmp, &Faults::none())?),
            tmp,
            dest,
        }))
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        let d = self.path(dir)?;
        if !d.exists() {
            return Ok(vec![]);
        }
        let mut out: Vec<String> = fs::read_dir(&d, &Faults::none())?
            .into_iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .filter(|n| !n.starts_with('.'))
            .collect();
        out.sort();
        Ok(out)
    }

    fn exists(&self, path: &str) -> bool {
        self.path(path).is_ok_and(|p| p.exists())
    }

    fn size(&self, path: &str) -> io::Result<u64> {
        Ok(std::fs::metadata(self.path(path)?)?.len())
    }

    fn remove(&self, path: &str) -> io::Result<()> {
        fs::remove_file(&self.path_for_removal(path)?, &Faults::none())
    }

    fn remove_dir(&self, dir: &str) -> io::Result<()> {
        let d = self.path_for_removal(dir)?;
        fs::remove_dir_all(&d, &Faults::none())?;
        sync_parent(&d)
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn try_lock(&self, path: &str) -> io::Result<Option<Box<dyn Send + Sync>>> {
        let path = self.path(path)?;
        if let Some(dir) = path.parent() {
            if !dir.exists() {
                fs::create_dir_all(dir, &Faults::none())?;
                sync_parent(dir)?;
            }
        }
        // Through the io layer, like every file the engine creates (faults and the power-cut
        // model see it).
        let mut file = fs::open_or_create(&path, &Faults::none())?;
        match file.file().try_lock() {
            Ok(()) => Ok(Some(Box::new(file))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn paths_that_leave_the_root_are_refused_by_every_operation() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("f"), b"keep").unwrap();
        let s = DirStorage::new(tmp.path().join("repo"));
        fs::create_dir_all(tmp.path().join("repo/backups")).unwrap();
        for p in [
            "../outside/f",
            "backups/../../outside/f",
            "/etc/passwd",
            "",
            "a//b",
            "./f",
        ] {
            assert!(s.read(p).is_err(), "{p}");
            assert!(s.open(p).is_err(), "{p}");
            assert!(!s.exists(p), "{p}");
            assert!(s.size(p).is_err(), "{p}");
            assert!(s.remove(p).is_err(), "{p}");
            assert!(s.remove_dir(p).is_err(), "{p}");
            assert!(s.create(p).is_err(), "{p}");
            assert!(s.list(p).is_err(), "{p}");
        }
        assert!(s.remove_dir("../outside").is_err());
        assert!(outside.join("f").exists());
    }

    #[test]
    fn deletions_do_not_pass_through_a_symbolic_link() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("manifest.json"), b"keep").unwrap();
        fs::create_dir_all(tmp.path().join("repo/backups")).unwrap();
        std::os::unix::fs::symlink(&outside, tmp.path().join("repo/backups/b")).unwrap();
        let s = DirStorage::new(tmp.path().join("repo"));
        assert!(s.remove("backups/b/manifest.json").is_err());
        assert!(outside.join("manifest.json").exists());
    }
}

//! The exclusive lock on a data directory (`DATA/LOCK`), held for as long as a `Db` is open.
//!
//! The lock is an advisory `flock` on the file, released by the kernel when the process dies,
//! so a crashed process never leaves a stale lock behind. The holder's pid is written into the
//! file only so the error message can name it.

use std::io::{Read, Seek};
use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::io::{open_or_create, DataFile, Faults};

/// Name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "LOCK";

/// A held directory lock; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: DataFile,
}

impl DirLock {
    pub(crate) fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let mut file = open_or_create(&path, &Faults::none())
            .context(|| format!("opening {}", path.display()))?;
        match file.file().try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut s = String::new();
                let _ = file.file().read_to_string(&mut s);
                return Err(Error::Locked {
                    path: dir.to_owned(),
                    pid: s.trim().parse().ok(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io(format!("locking {}", path.display()), e));
            }
        }
        file.set_len(0)
            .context(|| format!("writing {}", path.display()))?;
        file.file()
            .rewind()
            .context(|| format!("writing {}", path.display()))?;
        file.write_all(std::process::id().to_string().as_bytes())
            .context(|| format!("writing {}", path.display()))?;
        Ok(DirLock { _file: file })
    }
}

//! Backups: repositories, online backups, continuous log archiving, retention, verification,
//! restore and point-in-time recovery. Layout of a repository: `docs/FORMAT.md`, "Backup
//! repository".
//!
//! A backup is a snapshot (the checkpoint format, zstd-compressed as a whole) of one read view
//! plus a manifest written last; the `wal/` archive holds sealed log segments so any LSN or
//! time after a backup can be reached by replay. This module never touches the data directory
//! except through `Db` (backups) and the slot file (`DATA/archive.json`).

mod archive;
mod auto;
mod book;
mod create;
mod log_listing;
mod restore;
pub mod retention;
mod schedule;
pub mod storage;
mod verify;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::error::{Error, Result};
use storage::{DirStorage, RepoStorage};

pub use archive::{ArchivedSegment, Slot, Slots, SLOTS_FILE};
pub(crate) use auto::{auto_recover, load_slots_on_open};
pub use auto::{RECOVERY_MARKER, STAGING_DIR};
pub(crate) use book::BackupBook;
pub use log_listing::{read_log, read_log_with, LogEntry, LogFilter, LogOp, LogSource};
pub use restore::{
    plan_restore, restore, restore_with, RestorePlan, RestoreReport, RestoreTarget, SkippedBackup,
    RESTORE_MARKER,
};
pub use restore::{swap_in, swap_in_until, SwapStep};
pub use retention::{PruneEntry, PrunePlan, RetentionPolicy};
pub(crate) use schedule::{archive_loop, schedule_loop};
pub use schedule::{BackupSchedule, BackupStatus};
pub use verify::{RepoProblem, RepoVerifyReport};

/// Version of the repository layout.
pub const REPO_FORMAT_VERSION: u32 = 1;
/// Newest manifest format this engine reads: 2, written by a backup with stream files (its
/// `files` also name them, `streams/<dir>/<file>`); a backup without streams writes 1.
pub const MANIFEST_FORMAT_VERSION: u32 = 2;
/// Name of the repository config file.
pub const REPO_CONFIG: &str = "config.json";
/// Name of a backup's snapshot file.
pub const SNAPSHOT_FILE: &str = "snapshot.ckpt.zst";
/// Name of a backup's manifest.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Lock file a running backup holds in its directory (hidden from listings), so `prune`
/// can tell an interrupted backup from one still being written.
pub(crate) const BACKUP_LOCK: &str = ".lock";

/// Reports progress of long operations; the library never prints. The CLI implements it
/// with progress bars.
pub trait Progress: Send + Sync {
    /// A stage starts; `total` is its size in bytes when known.
    fn begin(&self, _stage: &str, _total: Option<u64>) {}
    /// `n` more bytes of the current stage are done.
    fn advance(&self, _n: u64) {}
    /// The current stage is done.
    fn end(&self) {}
}

/// A `Progress` that reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;
impl Progress for NoProgress {}

/// The repository config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConfig {
    /// Layout version.
    pub format_version: u32,
    /// Random-looking id, recorded in every manifest and in data directories' slots.
    pub repository_id: String,
    /// Creation time, RFC 3339.
    pub created_at: String,
}

/// One file of a backup, with sizes and hashes of its plain and stored bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// File name within the backup directory.
    pub name: String,
    /// Uncompressed size.
    pub plain_size: u64,
    /// SHA-256 of the uncompressed bytes, hex.
    pub plain_sha256: String,
    /// Size as stored.
    pub stored_size: u64,
    /// SHA-256 of the stored bytes, hex.
    pub stored_sha256: String,
}

/// A backup's manifest: written last, so a backup without one is incomplete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupManifest {
    /// Manifest format version.
    pub format_version: u32,
    /// Backup id (`YYYYMMDDTHHMMSSZ-<lsn>`), sortable by time.
    pub id: String,
    /// The repository it belongs to.
    pub repository_id: String,
    /// When the backup was taken, RFC 3339.
    pub created_at: String,
    /// Same, microseconds since the epoch.
    pub created_at_us: u64,
    /// LSN of the last commit included.
    pub lsn: u64,
    /// Commit time of that commit, microseconds (0 for an empty database).
    pub commit_ts_us: u64,
    /// Same, RFC 3339.
    pub commit_time: String,
    /// Live documents per collection.
    pub documents: BTreeMap<String, u64>,
    /// Schema versions present per collection.
    pub schema_versions: BTreeMap<String, Vec<u32>>,
    /// SHA-256 (hex) of each collection's stored spec document (`.spec`), for collections
    /// that have one; absent in manifests written before specs had schemas.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub spec_checksums: BTreeMap<String, String>,
    /// Version of the engine that wrote it.
    pub engine_version: String,
    /// Compression of stored files (`zstd`).
    pub compression: String,
    /// zstd level used.
    pub compression_level: i32,
    /// Encryption key id, when encrypted.
    pub key_id: Option<u32>,
    /// LSN the repository's archive reached when this manifest was written (absent in
    /// manifests of older engines). Verify reports an archive that ends before it, and
    /// point-in-time restore uses it: every commit stamped at or before `created_at_us` is
    /// at or below it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived_through_lsn: Option<u64>,
    /// The database the backup is of (absent in manifests written before ids existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_id: Option<crate::identity::DatabaseId>,
    /// The timeline its snapshot is on (absent in manifests written before ids existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<crate::identity::TimelineId>,
    /// Every file of the backup.
    pub files: Vec<FileEntry>,
    /// Blob files (`blobs/<ab>/<sha256>` in the repository, shared by every backup that
    /// lists them) the backup holds: every blob its snapshot names, and every other blob file
    /// the data directory had (for the archived log after it). Absent before blobs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blobs: Vec<crate::blob::BlobEntry>,
}

impl BackupManifest {
    /// Total live documents.
    pub fn total_documents(&self) -> u64 {
        self.documents.values().sum()
    }

    /// The ids of its snapshot, when it records them.
    pub fn ids(&self) -> Option<crate::identity::FileIds> {
        Some(crate::identity::FileIds {
            database_id: self.database_id?,
            timeline: self.timeline?,
        })
    }
}

/// The state of one backup directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupState {
    /// Its manifest is present and checks out.
    Complete,
    /// Its manifest is present but unreadable or refused.
    Damaged,
    /// It has no manifest (interrupted, or still being written).
    Incomplete,
}

/// One backup directory, as [`BackupRepo::entries`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupListing {
    /// Backup id (its directory name).
    pub id: String,
    /// Complete, damaged or incomplete.
    pub status: BackupState,
    /// What is wrong, when not complete.
    pub problem: Option<String>,
    /// The manifest, when complete.
    pub manifest: Option<BackupManifest>,
}

/// A backup repository.
#[derive(Debug, Clone)]
pub struct BackupRepo {
    storage: Arc<dyn RepoStorage>,
    config: RepoConfig,
    path: Option<PathBuf>,
}

pub(crate) fn repo_error(storage: &dyn RepoStorage, detail: impl Into<String>) -> Error {
    Error::Repository {
        location: storage.location(),
        detail: detail.into(),
    }
}

impl BackupRepo {
    /// Opens the repository in directory `path`, creating it when the directory is missing or
    /// empty.
    pub fn open_or_init(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let storage = DirStorage::new(path);
        if !storage.exists(REPO_CONFIG) {
            let empty = crate::io::read_dir(path, &crate::io::Faults::none())
                .map(|d| d.is_empty())
                .unwrap_or(true);
            if !empty {
                return Err(repo_error(&storage, "directory is not empty and has no config.json; refusing to turn it into a repository"));
            }
            let now = crate::document::now_micros();
            let seed = format!("{now}-{}-{}", std::process::id(), path.display());
            let config = RepoConfig {
                format_version: REPO_FORMAT_VERSION,
                repository_id: hex::encode(&crate::codec::sha256(seed.as_bytes())[..8]),
                created_at: crate::document::format_micros(now),
            };
            let bytes = serde_json::to_vec_pretty(&config)
                .map_err(|e| repo_error(&storage, e.to_string()))?;
            storage
                .write_atomic(REPO_CONFIG, &bytes)
                .map_err(|e| repo_error(&storage, format!("writing config.json: {e}")))?;
        }
        Self::with_storage(Arc::new(storage), Some(path.to_owned()))
    }

    /// Opens an existing repository in directory `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        Self::with_storage(Arc::new(DirStorage::new(path)), Some(path.to_owned()))
    }

    /// Opens an existing repository on any storage.
    pub fn with_storage(storage: Arc<dyn RepoStorage>, path: Option<PathBuf>) -> Result<Self> {
        let bytes = storage.read(REPO_CONFIG).map_err(|e| {
            repo_error(
                &*storage,
                format!("not a backup repository (reading config.json: {e})"),
            )
        })?;
        let config: RepoConfig = serde_json::from_slice(&bytes)
            .map_err(|e| repo_error(&*storage, format!("config.json is damaged: {e}")))?;
        if config.format_version == 0 || config.format_version > REPO_FORMAT_VERSION {
            return Err(repo_error(
                &*storage,
                format!(
                    "repository format version {} is not supported",
                    config.format_version
                ),
            ));
        }
        Ok(BackupRepo {
            storage,
            config,
            path,
        })
    }

    /// The repository's id.
    pub fn id(&self) -> &str {
        &self.config.repository_id
    }

    /// The repository directory, for directory-backed repositories.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Where the repository is, for messages.
    pub fn location(&self) -> String {
        self.storage.location()
    }

    pub(crate) fn storage(&self) -> &dyn RepoStorage {
        &*self.storage
    }

    pub(crate) fn err(&self, detail: impl Into<String>) -> Error {
        repo_error(&*self.storage, detail)
    }

    /// Ids of every backup directory, complete or not, sorted (oldest first). Entries of
    /// `backups/` whose name is not a backup id are not backups and are left out (`verify`
    /// reports them).
    pub fn backup_ids(&self) -> Result<Vec<String>> {
        Ok(self
            .backup_dir_names()?
            .into_iter()
            .filter(|n| is_backup_id(n))
            .collect())
    }

    /// Every name under `backups/`, backup id or not.
    pub(crate) fn backup_dir_names(&self) -> Result<Vec<String>> {
        self.storage
            .list("backups")
            .map_err(|e| self.err(format!("listing backups: {e}")))
    }

    /// Refuses anything that is not a backup id (see [`is_backup_id`]), so no id read from a
    /// manifest, a command line or a request can name a path outside `backups/`.
    pub fn check_backup_id(&self, id: &str) -> Result<()> {
        if is_backup_id(id) {
            return Ok(());
        }
        Err(Error::InvalidArgument(format!(
            "{id:?} is not a backup id (backup ids look like 20261121T023000Z-1234; see `amberdb backup list`)"
        )))
    }

    /// A backup's manifest, checked: its format version is one this engine reads, its id is
    /// the directory it is in, and every file it lists is a plain name inside that directory.
    pub fn manifest(&self, id: &str) -> Result<BackupManifest> {
        self.check_backup_id(id)?;
        let bytes = self
            .storage
            .read(&format!("backups/{id}/{MANIFEST_FILE}"))
            .map_err(|e| self.err(format!("backup {id}: cannot read manifest: {e}")))?;
        let m: BackupManifest = serde_json::from_slice(&bytes)
            .map_err(|e| self.err(format!("backup {id}: manifest is damaged: {e}")))?;
        if m.format_version == 0 || m.format_version > MANIFEST_FORMAT_VERSION {
            return Err(self.err(format!(
                "backup {id}: manifest format version {} is not supported (this engine reads 1..={MANIFEST_FORMAT_VERSION}); upgrade amberdb to read it",
                m.format_version
            )));
        }
        if m.id != id {
            return Err(self.err(format!(
                "backup {id}: its manifest names backup {:?}; refusing it (a manifest edited or copied from another backup)",
                m.id
            )));
        }
        // Format 2 adds stream files, named by their path in the data directory.
        let allowed = |name: &str| {
            is_plain_file_name(name)
                || (m.format_version >= 2
                    && crate::stream::files::is_stream_file_path(name)
                    && storage::confined(name).is_ok())
        };
        if let Some(f) = m.files.iter().find(|f| !allowed(&f.name)) {
            return Err(self.err(format!(
                "backup {id}: its manifest lists file {:?}, which is not a file inside the backup's directory; refusing it",
                f.name
            )));
        }
        Ok(m)
    }

    /// Every backup directory with its state, by id (oldest first): complete (with its
    /// manifest), damaged (a manifest that cannot be read or is refused, with why), or
    /// incomplete (no manifest: interrupted, or still being written).
    pub fn entries(&self) -> Result<Vec<BackupListing>> {
        let mut out = vec![];
        for id in self.backup_ids()? {
            let listing = if !self
                .storage
                .exists(&format!("backups/{id}/{MANIFEST_FILE}"))
            {
                BackupListing {
                    id,
                    status: BackupState::Incomplete,
                    problem: Some(
                        "no manifest: the backup was interrupted or is still running".into(),
                    ),
                    manifest: None,
                }
            } else {
                match self.manifest(&id) {
                    Ok(m) => BackupListing {
                        id,
                        status: BackupState::Complete,
                        problem: None,
                        manifest: Some(m),
                    },
                    Err(e) => BackupListing {
                        id,
                        status: BackupState::Damaged,
                        problem: Some(e.to_string()),
                        manifest: None,
                    },
                }
            };
            out.push(listing);
        }
        Ok(out)
    }

    /// Every complete backup, oldest first. Backups whose manifest is missing (interrupted)
    /// or unreadable are skipped here and reported by `verify`.
    pub fn list(&self) -> Result<Vec<BackupManifest>> {
        let mut out: Vec<BackupManifest> = self
            .backup_ids()?
            .iter()
            .filter_map(|id| self.manifest(id).ok())
            .collect();
        out.sort_by(|a, b| (a.lsn, a.created_at_us, &a.id).cmp(&(b.lsn, b.created_at_us, &b.id)));
        Ok(out)
    }
}

/// A writer that hashes and counts what passes through it.
pub(crate) struct HashWriter<W: Write> {
    pub inner: W,
    pub hasher: sha2::Sha256,
    pub count: u64,
}

impl<W: Write> HashWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hasher: sha2::Sha256::new(),
            count: 0,
        }
    }
    pub(crate) fn digest_hex(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(buf.get(..n).unwrap_or_default());
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Whether `id` has the form backups are named with: `YYYYMMDDTHHMMSSZ-<lsn>`, with `-<n>`
/// appended when two backups of one LSN fall in the same second. Such an id is one path
/// component by construction.
pub fn is_backup_id(id: &str) -> bool {
    let digits = |s: &str, n: std::ops::RangeInclusive<usize>| {
        n.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    let Some((stamp, rest)) = id.split_once("Z-") else {
        return false;
    };
    let Some((date, time)) = stamp.split_once('T') else {
        return false;
    };
    let mut tail = rest.split('-');
    digits(date, 8..=8)
        && digits(time, 6..=6)
        && tail.next().is_some_and(|lsn| digits(lsn, 1..=20))
        && tail.next().is_none_or(|n| digits(n, 1..=20))
        && tail.next().is_none()
}

/// A file name a manifest may list: one plain path component.
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && storage::confined(name).is_ok()
}

/// Hex SHA-256 of bytes.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(crate::codec::sha256(bytes))
}

/// Describes an (LSN, time) point for messages.
pub(crate) fn point(lsn: u64, ts: u64) -> String {
    if lsn == 0 {
        "LSN 0 (empty database)".into()
    } else {
        format!("LSN {lsn} ({})", crate::document::format_micros(ts))
    }
}

#[cfg(test)]
mod tests {
    use super::is_backup_id;

    #[test]
    fn backup_ids_have_exactly_the_form_backups_are_named_with() {
        for good in [
            "20261121T023000Z-0",
            "20261121T023000Z-1234",
            "20261121T023000Z-7-2",
        ] {
            assert!(is_backup_id(good), "{good}");
        }
        for bad in [
            "",
            "..",
            "../../x/victim",
            "20261121T023000Z-",
            "20261121T023000Z-1/..",
            "20261121T023000Z-1-2-3",
            "2026112T023000Z-1",
            "20261121T023000-1",
            "20261121T023000Z-1\0",
            "x20261121T023000Z-1",
        ] {
            assert!(!is_backup_id(bad), "{bad:?}");
        }
    }
}

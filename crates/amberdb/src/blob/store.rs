//! Blob files on disk: content-addressed files under `DATA/blobs/`, uploads streamed to a
//! temp file and moved into place, staging records, and the pins that keep a blob alive
//! between its staging and the commit that names it.
//!
//! Every file operation goes through `crate::io`, so fault injection and the power-cut
//! simulator see uploads as they see the log. This module never decides which blobs are
//! needed (that is `gc.rs`) and never writes a document (that is `Db`).

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::sealed::{self, SealedReader, SealedWriter};
use crate::crypto::{KeyId, Keyring};
use crate::error::{Error, IoContext, Result};
use crate::io::{self, Faults};

/// Directory of blob files in a data directory (and in a backup repository).
pub const BLOB_DIR: &str = "blobs";
/// Uploads in progress (`blobs/tmp/<random>.part`); emptied on open.
pub(crate) const TMP_DIR: &str = "tmp";
/// Staging records (`blobs/staging/<id>.json`).
pub(crate) const STAGING_DIR: &str = "staging";
/// Bytes read from an upload stream at once: the only buffer an upload holds.
pub(crate) const CHUNK: usize = 64 << 10;

/// What a staging record holds: a blob uploaded under a staging id, not yet committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StagingRecord {
    pub sha256: String,
    pub size: u64,
    pub content_type: String,
    /// Microseconds since the Unix epoch.
    pub staged_at: u64,
}

/// The blob files of one data directory.
pub(crate) struct BlobStore {
    root: PathBuf,
    faults: Faults,
    /// With encryption on, new blob files are sealed with the first key (`sealed.rs`) and
    /// sealed ones are opened with the key their header names.
    keys: Option<Keyring>,
    /// Serializes moving a finished upload into place and writing its staging record with
    /// garbage collection, and holds the pins: content hashes that a commit in flight
    /// names (counted, as two transactions may name one blob).
    pins: Mutex<HashMap<[u8; 32], usize>>,
    /// The key ids the blob files are sealed with, once scanned (`None`: scan on the next
    /// ask). An upload only adds its key; removing or rewriting files forgets the set.
    key_ids: Mutex<Option<BTreeSet<KeyId>>>,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobStore({})", self.root.display())
    }
}

/// The relative path of the blob file with content hash `sha256`: `ab/abcdef…` (one level of
/// 256 fan-out directories by the first byte).
pub fn blob_rel_path(sha256: &[u8; 32]) -> PathBuf {
    let hex = hex::encode(sha256);
    let fan = hex.get(..2).unwrap_or("00").to_owned();
    PathBuf::from(fan).join(hex)
}

/// Parses a 64-digit lowercase hex SHA-256.
pub(crate) fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// A staging id: 32 lowercase hex digits (128 random bits).
pub(crate) fn valid_staging_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Every blob file under `root` (a `blobs/` directory): content hash (from the file name)
/// and path. Names that are not a blob file's are skipped.
pub(crate) fn list_blob_files(root: &Path, faults: &Faults) -> Result<Vec<([u8; 32], PathBuf)>> {
    let mut out = vec![];
    if !root.is_dir() {
        return Ok(out);
    }
    for fan in io::read_dir(root, faults).context(|| format!("listing {}", root.display()))? {
        let Some(fan_name) = fan.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if fan_name.len() != 2 || !fan.is_dir() {
            continue;
        }
        for path in io::read_dir(&fan, faults).context(|| format!("listing {}", fan.display()))? {
            let sha = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(parse_sha256);
            if let Some(sha) = sha {
                if hex::encode(sha).starts_with(fan_name) {
                    out.push((sha, path));
                }
            }
        }
    }
    Ok(out)
}

/// SHA-256 and length of a file, read in [`CHUNK`]s through the io layer.
pub(crate) fn hash_file(path: &Path, faults: &Faults) -> std::io::Result<([u8; 32], u64)> {
    let mut f = io::open_read(path, faults)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
        len += n as u64;
    }
    Ok((h.finalize().into(), len))
}

/// A finished upload: its content hash and size (and its temp file until it is moved).
pub(crate) struct Upload {
    pub sha256: [u8; 32],
    pub size: u64,
    /// Length of the file on disk (longer than `size` when sealed).
    disk_len: u64,
    tmp: PathBuf,
}

/// Where a blob's bytes go: into the file as they are (hashed, counted), or sealed.
pub(crate) enum Sink {
    Plain(io::DataFile, Sha256, u64),
    Sealed(Box<SealedWriter<io::DataFile>>),
}

impl Sink {
    pub(crate) fn write(&mut self, chunk: &[u8], tmp: &Path) -> Result<()> {
        match self {
            Sink::Plain(f, h, n) => {
                h.update(chunk);
                *n += chunk.len() as u64;
                f.write_all(chunk)
                    .context(|| format!("writing {}", tmp.display()))
            }
            Sink::Sealed(w) => w.write(chunk),
        }
    }

    /// The file (to sync), and the content's SHA-256 and size.
    pub(crate) fn finish(self) -> Result<(io::DataFile, [u8; 32], u64)> {
        match self {
            Sink::Plain(f, h, n) => Ok((f, h.finalize().into(), n)),
            Sink::Sealed(w) => w.finish(),
        }
    }
}

/// The reader of a blob's bytes: the file as it is, or its sealed units decrypted.
pub(crate) enum Content {
    Plain(io::ReadFile),
    Sealed(Box<SealedReader<io::ReadFile>>),
}

impl BlobStore {
    /// The store of the data directory `dir`. Removes leftovers of uploads that a crash
    /// interrupted (nothing can refer to a temp file).
    pub(crate) fn open(dir: &Path, faults: Faults, keys: Option<Keyring>) -> Result<BlobStore> {
        let root = dir.join(BLOB_DIR);
        let store = BlobStore {
            root,
            faults,
            keys,
            pins: Mutex::new(HashMap::new()),
            key_ids: Mutex::new(None),
        };
        let tmp = store.root.join(TMP_DIR);
        if tmp.is_dir() {
            for path in io::read_dir(&tmp, &store.faults)
                .context(|| format!("listing {}", tmp.display()))?
            {
                io::remove_file(&path, &store.faults)
                    .context(|| format!("removing the interrupted upload {}", path.display()))?;
            }
        }
        Ok(store)
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn faults(&self) -> &Faults {
        &self.faults
    }

    pub(crate) fn keys(&self) -> Option<&Keyring> {
        self.keys.as_ref()
    }

    /// The key ids the blob files are sealed with (scanning their headers on the first ask
    /// after a change that may have removed one).
    pub(crate) fn key_ids(&self) -> Result<BTreeSet<KeyId>> {
        let mut cached = self.key_ids.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ids) = cached.as_ref() {
            return Ok(ids.clone());
        }
        let ids: BTreeSet<KeyId> = sealed::key_ids_of_files(&self.root)?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        *cached = Some(ids.clone());
        Ok(ids)
    }

    /// Forgets the key ids (files were removed or rewritten).
    pub(crate) fn forget_key_ids(&self) {
        *self.key_ids.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Writes the blob with content hash `sha256` again, sealed with `to`'s first key
    /// (plaintext without `to`), and renames it over its file (a rotation's rewrite: the
    /// same content, so readers with the file open and readers opening it afterwards both
    /// see the blob). Returns the bytes written, `None` when the file was removed meanwhile.
    pub(crate) fn rewrite(&self, sha256: &[u8; 32], to: Option<&Keyring>) -> Result<Option<u64>> {
        let path = self.path_of(sha256);
        let size = match sealed::check_file(&path, sha256, self.keys.as_ref(), &self.faults) {
            Ok(sealed::FileForm::Plain { size }) => size,
            Ok(sealed::FileForm::Sealed(c)) => match c.content {
                Some((_, size)) => size,
                None => {
                    return Err(Error::KeyMissing {
                        key_id: c.key_id.get(),
                        unit: path.display().to_string(),
                        available: crate::crypto::describe_keys(self.keys.as_ref()),
                    })
                }
            },
            Err(_) if !path.exists() => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut src = match self.open_content(sha256, size)? {
            Content::Plain(f) => Box::new(f) as Box<dyn Read>,
            Content::Sealed(r) => Box::new(r) as Box<dyn Read>,
        };
        let upload = self.write_tmp(&mut src, u64::MAX, to, &|| (String::new(), String::new()))?;
        if upload.sha256 != *sha256 {
            self.discard(&upload);
            return Err(Error::InvalidValue(format!(
                "blob file {} decodes to bytes hashing to {}: it is damaged; run `amberdb verify`",
                path.display(),
                hex::encode(upload.sha256)
            )));
        }
        let _guard = self.lock();
        self.forget_key_ids();
        if !path.exists() {
            self.discard(&upload);
            return Ok(None);
        }
        let dir = io::parent_dir(&path).to_owned();
        io::rename(&upload.tmp, &path, &self.faults)
            .context(|| format!("moving the rewritten blob file to {}", path.display()))?;
        io::sync_dir(&dir, &self.faults).context(|| format!("syncing {}", dir.display()))?;
        Ok(Some(upload.disk_len))
    }

    /// Opens the bytes of the blob with content hash `sha256` and `size` bytes: a file of
    /// that length is plaintext, any other must be a sealed blob file for that content
    /// (`Error::KeyMissing` when the keyring lacks its key, `Error::Unauthentic` when it does
    /// not authenticate as this blob).
    pub(crate) fn open_content(&self, sha256: &[u8; 32], size: u64) -> Result<Content> {
        let path = self.path_of(sha256);
        let name = path.display().to_string();
        let file =
            io::open_read(&path, &self.faults).context(|| format!("opening blob file {name}"))?;
        let len = file.len().context(|| format!("reading {name}"))?;
        if len == size {
            return Ok(Content::Plain(file));
        }
        if sealed::size_from_len(len).is_none() {
            return Err(Error::InvalidValue(format!(
                "blob file {name} has {len} bytes, neither the blob's {size} nor a sealed                  file's length: it is damaged; run `amberdb verify`"
            )));
        }
        let r = SealedReader::open(file, len, self.keys.as_ref(), sha256, &name)?;
        if r.size() != size {
            return Err(Error::InvalidValue(format!(
                "blob file {name} holds {} bytes, its metadata says {size}",
                r.size()
            )));
        }
        Ok(Content::Sealed(Box::new(r)))
    }

    /// Path of the blob file with this content hash.
    pub(crate) fn path_of(&self, sha256: &[u8; 32]) -> PathBuf {
        self.root.join(blob_rel_path(sha256))
    }

    fn staging_path(&self, id: &str) -> PathBuf {
        self.root.join(STAGING_DIR).join(format!("{id}.json"))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<[u8; 32], usize>> {
        self.pins.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Streams `body` into a temp file, hashing it, refusing it once it passes `limit`
    /// bytes, and fsyncs it. Holds one [`CHUNK`] in memory, whatever the blob's size.
    pub(crate) fn receive(
        &self,
        body: &mut dyn Read,
        limit: u64,
        what: impl Fn() -> (String, String),
    ) -> Result<Upload> {
        self.write_tmp(body, limit, self.keys.as_ref(), &what)
    }

    /// Streams `body` into a temp file under `blobs/tmp/`, sealed with `keys`' first key
    /// (plaintext without `keys`), hashing its plaintext and refusing it past `limit` bytes,
    /// and fsyncs it.
    fn write_tmp(
        &self,
        body: &mut dyn Read,
        limit: u64,
        keys: Option<&Keyring>,
        what: &dyn Fn() -> (String, String),
    ) -> Result<Upload> {
        let tmp_dir = self.root.join(TMP_DIR);
        io::create_dir_all(&tmp_dir, &self.faults)
            .context(|| format!("creating {}", tmp_dir.display()))?;
        let tmp = tmp_dir.join(format!("{}.part", random_id()));
        let result = (|| {
            let f =
                io::create(&tmp, &self.faults).context(|| format!("creating {}", tmp.display()))?;
            let mut sink = match keys {
                Some(keys) => Sink::Sealed(Box::new(SealedWriter::new(f, keys)?)),
                None => Sink::Plain(f, Sha256::new(), 0),
            };
            let mut buf = vec![0u8; CHUNK];
            let mut size = 0u64;
            loop {
                let n = match body.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::io("reading the blob's upload stream", e)),
                };
                if n == 0 {
                    break;
                }
                size += n as u64;
                if size > limit {
                    let (collection, key) = what();
                    return Err(Error::BlobTooLarge {
                        collection,
                        key,
                        limit,
                    });
                }
                sink.write(buf.get(..n).unwrap_or_default(), &tmp)?;
            }
            let (mut f, sha256, size) = sink.finish()?;
            f.sync_all()
                .context(|| format!("syncing {}", tmp.display()))?;
            let disk_len = match keys {
                Some(_) => sealed::sealed_len(size),
                None => size,
            };
            Ok(Upload {
                sha256,
                size,
                disk_len,
                tmp: tmp.clone(),
            })
        })();
        if result.is_err() {
            let _ = io::remove_file(&tmp, &self.faults);
        }
        result
    }

    /// Drops an upload that will not be kept (its digest did not match).
    pub(crate) fn discard(&self, upload: &Upload) {
        let _ = io::remove_file(&upload.tmp, &self.faults);
    }

    /// Moves a finished upload to its content-addressed name (or drops it when that file is
    /// already there: same content, one file), makes the name durable, and writes a staging
    /// record for it, all under the store's lock so garbage collection cannot remove the
    /// file between the two. Returns the staging id.
    pub(crate) fn stage(&self, upload: Upload, content_type: &str, now: u64) -> Result<String> {
        let _guard = self.lock();
        let dest = self.path_of(&upload.sha256);
        let dir = io::parent_dir(&dest).to_owned();
        // Same content in the same form (plaintext, or sealed: a sealed file's length follows
        // from the content's); a plaintext file is replaced by a sealed upload.
        let same =
            std::fs::metadata(&dest).is_ok_and(|m| m.is_file() && m.len() == upload.disk_len);
        if same {
            self.discard(&upload);
        } else {
            if let (Some(keys), Some(ids)) = (
                &self.keys,
                self.key_ids
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_mut(),
            ) {
                ids.insert(keys.primary().id());
            }
            // A file of another length under this name is damage; the new upload replaces it.
            io::create_dir_all(&dir, &self.faults)
                .context(|| format!("creating {}", dir.display()))?;
            io::rename(&upload.tmp, &dest, &self.faults)
                .context(|| format!("moving the upload to {}", dest.display()))?;
            // A rename is durable once both directories are synced.
            io::sync_dir(&dir, &self.faults).context(|| format!("syncing {}", dir.display()))?;
            let from = io::parent_dir(&upload.tmp);
            io::sync_dir(from, &self.faults).context(|| format!("syncing {}", from.display()))?;
        }
        let id = random_id();
        let rec = StagingRecord {
            sha256: hex::encode(upload.sha256),
            size: upload.size,
            content_type: content_type.to_owned(),
            staged_at: now,
        };
        let staging = self.root.join(STAGING_DIR);
        io::create_dir_all(&staging, &self.faults)
            .context(|| format!("creating {}", staging.display()))?;
        let bytes = serde_json::to_vec(&rec).map_err(|e| Error::InvalidValue(e.to_string()))?;
        io::write_atomic(&self.staging_path(&id), &bytes, &self.faults)
            .context(|| format!("writing the staging record {id}"))?;
        Ok(id)
    }

    /// The staging record `id`, if it exists.
    pub(crate) fn staged(&self, id: &str) -> Result<Option<StagingRecord>> {
        if !valid_staging_id(id) {
            return Err(Error::InvalidArgument(format!(
                "{id:?} is not a staging id (32 hex digits)"
            )));
        }
        let path = self.staging_path(id);
        if !path.exists() {
            return Ok(None);
        }
        let bytes =
            io::read(&path, &self.faults).context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::InvalidValue(format!(
                "staging record {} is unreadable: {e}",
                path.display()
            ))
        })
    }

    /// Every staging record: id and record (unreadable ones as `None`, for removal).
    pub(crate) fn staging_records(&self) -> Result<Vec<(PathBuf, Option<StagingRecord>)>> {
        let dir = self.root.join(STAGING_DIR);
        let mut out = vec![];
        if !dir.is_dir() {
            return Ok(out);
        }
        for path in
            io::read_dir(&dir, &self.faults).context(|| format!("listing {}", dir.display()))?
        {
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let rec = io::read(&path, &self.faults)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            out.push((path, rec));
        }
        Ok(out)
    }

    /// Removes a staging record (its blob was committed, or it expired).
    pub(crate) fn unstage(&self, id: &str) -> Result<()> {
        let path = self.staging_path(id);
        match io::remove_file(&path, &self.faults) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(format!("removing {}", path.display()), e)),
        }
        let dir = self.root.join(STAGING_DIR);
        io::sync_dir(&dir, &self.faults).context(|| format!("syncing {}", dir.display()))
    }

    /// Pins `sha256` (a commit naming it is in flight).
    pub(crate) fn pin(&self, sha256: [u8; 32]) {
        *self.lock().entry(sha256).or_insert(0) += 1;
    }

    /// Releases one pin of `sha256`.
    pub(crate) fn unpin(&self, sha256: &[u8; 32]) {
        let mut pins = self.lock();
        if let Some(n) = pins.get_mut(sha256) {
            *n -= 1;
            if *n == 0 {
                pins.remove(sha256);
            }
        }
    }
}

/// 32 hex digits of randomness (staging ids, temp file names).
pub(crate) fn random_id() -> String {
    crate::identity::DatabaseId::random().to_string()
}

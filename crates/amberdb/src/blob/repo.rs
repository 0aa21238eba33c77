//! Blob files in backup repositories: copying them in (content-addressed, deduplicated
//! across backups and archive runs), listing them in manifests, checking them, bringing them
//! back on restore, and removing those that nothing the repository keeps names.
//!
//! A repository holds its blob files under `blobs/<ab>/<sha256>`, like a data directory. They
//! belong to the repository: a data directory's garbage collection never waits for a backup.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{store, BlobDoc, BLOB_COLLECTION_PREFIX};
use crate::backup::{ArchivedSegment, BackupManifest, BackupRepo};
use crate::db::Db;
use crate::error::{Error, IoContext, Result};
use crate::io::{self, Faults};
use crate::state::State;

/// A blob file a backup's manifest lists.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BlobEntry {
    /// SHA-256 of its bytes (its name), lowercase hex.
    pub sha256: String,
    /// Length in bytes.
    pub size: u64,
}

/// Repository path of the blob file `sha256`.
pub(crate) fn repo_path(sha256: &[u8; 32]) -> String {
    let hex = hex::encode(sha256);
    format!("blobs/{}/{hex}", hex.get(..2).unwrap_or("00"))
}

/// Content hashes of every blob metadata document of `state`.
pub(crate) fn referenced(state: &State) -> BTreeSet<[u8; 32]> {
    let mut out = BTreeSet::new();
    for (name, coll) in state.collections.iter() {
        if name.starts_with(BLOB_COLLECTION_PREFIX) {
            for doc in coll.docs.values() {
                if let Some(sha) = sha_of(&doc.value) {
                    out.insert(sha);
                }
            }
        }
    }
    out
}

fn sha_of(value: &[u8]) -> Option<[u8; 32]> {
    serde_json::from_slice::<BlobDoc>(value)
        .ok()
        .and_then(|d| store::parse_sha256(&d.sha256))
}

/// Streams `src` into the repository object `name`, refusing (and storing nothing) unless
/// the bytes hash to `sha256`.
fn put_verified(
    repo: &BackupRepo,
    name: &str,
    src: &mut dyn Read,
    sha256: &[u8; 32],
) -> Result<u64> {
    let mut w = repo
        .storage()
        .create(name)
        .map_err(|e| repo.err(format!("creating {name}: {e}")))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; store::CHUNK];
    let mut len = 0u64;
    loop {
        let n = src
            .read(&mut buf)
            .map_err(|e| Error::io(format!("reading the blob for {name}"), e))?;
        if n == 0 {
            break;
        }
        let chunk = buf.get(..n).unwrap_or_default();
        h.update(chunk);
        w.write_all(chunk)
            .map_err(|e| repo.err(format!("writing {name}: {e}")))?;
        len += n as u64;
    }
    let got: [u8; 32] = h.finalize().into();
    if &got != sha256 {
        // Dropping the writer removes its temp file.
        return Err(Error::InvalidValue(format!(
            "blob {} hashes to {}: the source file is damaged; run `amberdb verify`",
            hex::encode(sha256),
            hex::encode(got)
        )));
    }
    w.commit()
        .map_err(|e| repo.err(format!("writing {name}: {e}")))?;
    Ok(len)
}

/// Copies into `repo` every blob file of `db` the repository lacks (checking each one's
/// SHA-256 on the way) and returns what the repository then holds of them: every blob that
/// `needed` names (a snapshot's state: each must be copied or already there, else the call
/// fails) and every other blob file of the data directory (which later commits of the
/// archived log may name; one collected meanwhile is passed over).
pub(crate) fn copy_to_repo(
    db: &Db,
    repo: &BackupRepo,
    needed: Option<&State>,
) -> Result<Vec<BlobEntry>> {
    let store = db.blob_store();
    let mut want: BTreeSet<[u8; 32]> = needed.map(referenced).unwrap_or_default();
    let must: BTreeSet<[u8; 32]> = want.clone();
    for (sha, _) in store::list_blob_files(store.root(), store.faults())? {
        want.insert(sha);
    }
    let mut out = vec![];
    for sha in want {
        let name = repo_path(&sha);
        let local = store.path_of(&sha);
        if repo.storage().exists(&name) {
            let size = repo.storage().size(&name).unwrap_or(0);
            out.push(BlobEntry {
                sha256: hex::encode(sha),
                size,
            });
            continue;
        }
        let mut src = match io::open_read(&local, store.faults()) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must.contains(&sha) => continue,
            Err(e) => {
                return Err(Error::io(
                    format!("reading blob file {} for the backup", local.display()),
                    e,
                ))
            }
        };
        let size = put_verified(repo, &name, &mut src, &sha)?;
        out.push(BlobEntry {
            sha256: hex::encode(sha),
            size,
        });
    }
    Ok(out)
}

/// Copies every blob that `state` names from `repo` into the data directory `dir` being
/// restored (`dir/blobs/...`), checking each one's SHA-256. A blob the repository lacks
/// fails the restore, naming it.
pub(crate) fn restore_into(
    repo: &BackupRepo,
    state: &State,
    dir: &Path,
    faults: &Faults,
) -> Result<u64> {
    let root = dir.join(store::BLOB_DIR);
    let mut n = 0;
    for sha in referenced(state) {
        let name = repo_path(&sha);
        let mut src = repo.storage().open(&name).map_err(|e| {
            repo.err(format!(
                "{name} (a blob the restored state names) is missing or unreadable: {e}"
            ))
        })?;
        let dest = root.join(store::blob_rel_path(&sha));
        let fan = io::parent_dir(&dest).to_owned();
        io::create_dir_all(&fan, faults).context(|| format!("creating {}", fan.display()))?;
        let tmp = fan.join(format!(".{}.tmp", hex::encode(sha)));
        let result = (|| -> Result<()> {
            let mut out =
                io::create(&tmp, faults).context(|| format!("creating {}", tmp.display()))?;
            let mut h = Sha256::new();
            let mut buf = vec![0u8; store::CHUNK];
            loop {
                let k = src
                    .read(&mut buf)
                    .map_err(|e| repo.err(format!("reading {name}: {e}")))?;
                if k == 0 {
                    break;
                }
                let chunk = buf.get(..k).unwrap_or_default();
                h.update(chunk);
                out.write_all(chunk)
                    .context(|| format!("writing {}", tmp.display()))?;
            }
            let got: [u8; 32] = h.finalize().into();
            if got != sha {
                return Err(repo.err(format!(
                    "{name} is damaged (its bytes hash to {}); run `amberdb backup verify --read-data`",
                    hex::encode(got)
                )));
            }
            out.sync_all()
                .context(|| format!("syncing {}", tmp.display()))?;
            io::rename(&tmp, &dest, faults).context(|| format!("renaming {}", tmp.display()))?;
            io::sync_dir(&fan, faults).context(|| format!("syncing {}", fan.display()))
        })();
        if result.is_err() {
            let _ = io::remove_file(&tmp, faults);
        }
        result?;
        n += 1;
    }
    Ok(n)
}

/// Checks the blob files that `manifests` list: present with the listed size, and with
/// `read_data` hashing to their names. Returns (files checked, problems as (file, detail)).
pub(crate) fn verify_repo(
    repo: &BackupRepo,
    manifests: &[BackupManifest],
    read_data: bool,
) -> (u64, Vec<(String, String)>) {
    let mut listed: BTreeSet<&BlobEntry> = BTreeSet::new();
    for m in manifests {
        listed.extend(m.blobs.iter());
    }
    let mut problems = vec![];
    let mut checked = 0;
    for e in listed {
        let Some(sha) = store::parse_sha256(&e.sha256) else {
            problems.push((
                "manifest".into(),
                format!("malformed blob SHA-256 {:?}", e.sha256),
            ));
            continue;
        };
        let name = repo_path(&sha);
        checked += 1;
        match repo.storage().size(&name) {
            Err(err) => {
                problems.push((name, format!("blob file missing or unreadable: {err}")));
                continue;
            }
            Ok(size) if size != e.size => {
                problems.push((
                    name,
                    format!("size {size} but the manifest says {}", e.size),
                ));
                continue;
            }
            Ok(_) => {}
        }
        if read_data {
            let got = repo.storage().open(&name).and_then(|mut r| {
                let mut h = Sha256::new();
                std::io::copy(&mut r, &mut h)?;
                Ok::<[u8; 32], std::io::Error>(h.finalize().into())
            });
            match got {
                Ok(got) if got == sha => {}
                Ok(got) => problems.push((
                    name,
                    format!("blob file hashes to {}, not to its name", hex::encode(got)),
                )),
                Err(err) => problems.push((name, format!("unreadable: {err}"))),
            }
        }
    }
    (checked, problems)
}

/// Removes repository blob files that no kept backup's manifest lists and no write in a
/// kept archived segment names. Removes nothing when a kept segment cannot be decoded
/// (encrypted, no key given): what it names cannot be known. Returns the files removed.
pub(crate) fn prune_repo(
    repo: &BackupRepo,
    kept: &[BackupManifest],
    kept_segments: &[ArchivedSegment],
) -> Result<u64> {
    let mut needed: BTreeSet<[u8; 32]> = BTreeSet::new();
    for m in kept {
        needed.extend(
            m.blobs
                .iter()
                .filter_map(|e| store::parse_sha256(&e.sha256)),
        );
    }
    for seg in kept_segments {
        let bytes = repo.read_segment(seg)?;
        let scanned = crate::log::segment::scan_with(&bytes, None, |rec, _| {
            for op in &rec.ops {
                if op.collection.starts_with(BLOB_COLLECTION_PREFIX) {
                    if let Some(sha) = op.doc.as_ref().and_then(|d| sha_of(&d.value)) {
                        needed.insert(sha);
                    }
                }
            }
        });
        if let Err(e) = scanned {
            tracing::info!(segment = seg.first_lsn, error = %e, "repository blob files kept: an archived segment could not be read");
            return Ok(0);
        }
    }
    let mut removed = 0;
    for fan in repo
        .storage()
        .list("blobs")
        .map_err(|e| repo.err(format!("listing blobs: {e}")))?
    {
        if fan.len() != 2 {
            continue;
        }
        let dir = format!("blobs/{fan}");
        for name in repo
            .storage()
            .list(&dir)
            .map_err(|e| repo.err(format!("listing {dir}: {e}")))?
        {
            let Some(sha) = store::parse_sha256(&name) else {
                continue;
            };
            if !needed.contains(&sha) {
                let path = format!("{dir}/{name}");
                repo.storage()
                    .remove(&path)
                    .map_err(|e| repo.err(format!("removing {path}: {e}")))?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

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

use super::store::Sink;
use super::{sealed, store, BlobDoc, BLOB_COLLECTION_PREFIX};
use crate::backup::{ArchivedSegment, BackupManifest, BackupRepo};
use crate::crypto::Keyring;
use crate::db::Db;
use crate::error::{Error, IoContext, Result};
use crate::io::{self, Faults};
use crate::state::State;

/// A blob file a backup's manifest lists.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BlobEntry {
    /// SHA-256 of the blob's bytes (its name), lowercase hex.
    pub sha256: String,
    /// Length of the file in bytes (the blob's, or its sealed file's: `blob::sealed`).
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

/// Streams `src` into the repository object `name`, refusing (and storing nothing), when
/// `sha256` is given, unless the bytes hash to it.
fn put_verified(
    repo: &BackupRepo,
    name: &str,
    src: &mut dyn Read,
    sha256: Option<&[u8; 32]>,
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
    if let Some(sha256) = sha256.filter(|s| **s != got) {
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
        let open = || io::open_read(&local, store.faults());
        let mut src = match open() {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must.contains(&sha) => continue,
            Err(e) => {
                return Err(Error::io(
                    format!("reading blob file {} for the backup", local.display()),
                    e,
                ))
            }
        };
        // A sealed file is copied as it is (the repository holds it sealed, under the key it
        // was written with), after its contents were checked with the database's keys.
        let len = src
            .len()
            .context(|| format!("reading {}", local.display()))?;
        let mut head = Vec::with_capacity(sealed::HEADER_LEN);
        (&mut src)
            .take(sealed::HEADER_LEN as u64)
            .read_to_end(&mut head)
            .context(|| format!("reading {}", local.display()))?;
        let form = match sealed::sniff(&head, len) {
            Some(_) => sealed::check_file(&local, &sha, store.keys(), store.faults())?,
            None => sealed::FileForm::Plain { size: len },
        };
        let mut src = open().context(|| format!("reading {}", local.display()))?;
        let size = match form {
            sealed::FileForm::Plain { .. } => put_verified(repo, &name, &mut src, Some(&sha))?,
            sealed::FileForm::Sealed(_) => put_verified(repo, &name, &mut src, None)?,
        };
        out.push(BlobEntry {
            sha256: hex::encode(sha),
            size,
        });
    }
    Ok(out)
}

/// Copies every blob that `state` names from `repo` into the data directory `dir` being
/// restored (`dir/blobs/...`), checking each one's SHA-256 (a sealed file is copied as it is
/// and must authenticate as its blob with `keys`). A blob the repository lacks, or whose key
/// `keys` lacks, fails the restore, naming it.
pub(crate) fn restore_into(
    repo: &BackupRepo,
    state: &State,
    dir: &Path,
    faults: &Faults,
    keys: Option<&Keyring>,
) -> Result<u64> {
    let root = dir.join(store::BLOB_DIR);
    let mut n = 0;
    for sha in referenced(state) {
        let name = repo_path(&sha);
        let open = || {
            repo.storage().open(&name).map_err(|e| {
                repo.err(format!(
                    "{name} (a blob the restored state names) is missing or unreadable: {e}"
                ))
            })
        };
        let len = repo
            .storage()
            .size(&name)
            .map_err(|e| repo.err(format!("{name} (a blob the restored state names): {e}")))?;
        let mut head = Vec::with_capacity(sealed::HEADER_LEN);
        open()?
            .take(sealed::HEADER_LEN as u64)
            .read_to_end(&mut head)
            .map_err(|e| repo.err(format!("reading {name}: {e}")))?;
        // A plaintext blob restored into an encrypted directory is sealed on the way in.
        let seal_with = keys.filter(|_| sealed::sniff(&head, len).is_none());
        let mut src = open()?;
        let dest = root.join(store::blob_rel_path(&sha));
        let fan = io::parent_dir(&dest).to_owned();
        io::create_dir_all(&fan, faults).context(|| format!("creating {}", fan.display()))?;
        let tmp = fan.join(format!(".{}.tmp", hex::encode(sha)));
        let result = (|| -> Result<()> {
            let out = io::create(&tmp, faults).context(|| format!("creating {}", tmp.display()))?;
            let mut sink = match seal_with {
                Some(k) => Sink::Sealed(Box::new(sealed::SealedWriter::new(out, k)?)),
                None => Sink::Plain(out, Sha256::new(), 0),
            };
            let mut buf = vec![0u8; store::CHUNK];
            loop {
                let k = src
                    .read(&mut buf)
                    .map_err(|e| repo.err(format!("reading {name}: {e}")))?;
                if k == 0 {
                    break;
                }
                sink.write(buf.get(..k).unwrap_or_default(), &tmp)?;
            }
            let (mut out, got, _) = sink.finish()?;
            out.sync_all()
                .context(|| format!("syncing {}", tmp.display()))?;
            if got != sha && seal_with.is_some() {
                return Err(repo.err(format!(
                    "{name} is damaged (its bytes hash to {}); run `amberdb backup verify --read-data`",
                    hex::encode(got)
                )));
            }
            if got != sha {
                // Not the plaintext blob: a sealed file of it, with a key we hold?
                match sealed::check_file(&tmp, &sha, keys, faults) {
                    Ok(sealed::FileForm::Sealed(c)) if c.content.is_none() => {
                        return Err(Error::KeyMissing {
                            key_id: c.key_id.get(),
                            unit: format!("{name} (a blob the restored state names)"),
                            available: crate::crypto::describe_keys(keys),
                        })
                    }
                    Ok(_) => {}
                    Err(e @ (Error::KeyMissing { .. } | Error::Io { .. })) => return Err(e),
                    Err(e) => {
                        return Err(repo.err(format!(
                            "{name} is damaged ({e}); run `amberdb backup verify --read-data`"
                        )))
                    }
                }
            }
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

/// What [`verify_repo`] found of the blob files the manifests list.
#[derive(Debug, Default)]
pub(crate) struct RepoBlobCheck {
    /// Files checked.
    pub checked: u64,
    /// Problems, as (file, detail).
    pub problems: Vec<(String, String)>,
    /// Sealed files whose contents were not checked (no key given, or no `read_data`), as
    /// (file, detail).
    pub not_checked: Vec<(String, String)>,
    /// Key ids the sealed files are sealed with.
    pub key_ids: BTreeSet<u32>,
}

/// Checks the blob files that `manifests` list: present with the listed size, sealed ones
/// with a sound header (naming their key id); with `read_data`, plaintext ones hashing to
/// their names and sealed ones authenticating as their blob with `keys` (structure only
/// without their key).
pub(crate) fn verify_repo(
    repo: &BackupRepo,
    manifests: &[BackupManifest],
    read_data: bool,
    keys: Option<&Keyring>,
) -> RepoBlobCheck {
    let mut listed: BTreeSet<&BlobEntry> = BTreeSet::new();
    for m in manifests {
        listed.extend(m.blobs.iter());
    }
    let mut out = RepoBlobCheck::default();
    for e in listed {
        let Some(sha) = store::parse_sha256(&e.sha256) else {
            out.problems.push((
                "manifest".into(),
                format!("malformed blob SHA-256 {:?}", e.sha256),
            ));
            continue;
        };
        let name = repo_path(&sha);
        out.checked += 1;
        match repo.storage().size(&name) {
            Err(err) => {
                out.problems
                    .push((name, format!("blob file missing or unreadable: {err}")));
                continue;
            }
            Ok(size) if size != e.size => {
                out.problems.push((
                    name,
                    format!("size {size} but the manifest says {}", e.size),
                ));
                continue;
            }
            Ok(_) => {}
        }
        let mut head = Vec::with_capacity(sealed::HEADER_LEN);
        let sniffed = repo.storage().open(&name).and_then(|r| {
            r.take(sealed::HEADER_LEN as u64).read_to_end(&mut head)?;
            Ok(sealed::sniff(&head, e.size))
        });
        let header = match sniffed {
            Ok(h) => h,
            Err(err) => {
                out.problems.push((name, format!("unreadable: {err}")));
                continue;
            }
        };
        if let Some(h) = header {
            out.key_ids.insert(h.key_id.get());
        }
        if !read_data {
            continue;
        }
        let plain_hash = || {
            repo.storage().open(&name).and_then(|mut r| {
                let mut h = Sha256::new();
                std::io::copy(&mut r, &mut h)?;
                Ok::<[u8; 32], std::io::Error>(h.finalize().into())
            })
        };
        if let Some(h) = header {
            let usable = keys.filter(|k| k.get(h.key_id).is_some());
            let got = repo
                .storage()
                .open(&name)
                .map_err(|err| Error::io(format!("reading {name}"), err))
                .and_then(|mut r| {
                    sealed::read_sealed(&mut r, e.size, usable, &name, &mut |_| Ok(()))
                });
            match got {
                Ok(c) if c.content.is_none() => out.not_checked.push((
                    name,
                    format!(
                        "sealed with key id {}, which was not given: size and structure \
                         checked, contents not",
                        c.key_id
                    ),
                )),
                Ok(c) if c.content.is_some_and(|(s, _)| s != sha) => out
                    .problems
                    .push((name, "sealed for another blob than its name says".into())),
                Ok(_) => {}
                // A plaintext blob whose bytes happen to look sealed is told by its hash.
                Err(_) if plain_hash().is_ok_and(|g| g == sha) => {
                    out.key_ids.remove(&h.key_id.get());
                }
                Err(err) => out
                    .problems
                    .push((name, format!("sealed blob file: {err}"))),
            }
            continue;
        }
        match plain_hash() {
            Ok(got) if got == sha => {}
            Ok(got) => out.problems.push((
                name,
                format!("blob file hashes to {}, not to its name", hex::encode(got)),
            )),
            Err(err) => out.problems.push((name, format!("unreadable: {err}"))),
        }
    }
    out
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

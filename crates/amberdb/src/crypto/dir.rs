//! Which keys a data directory needs, checked before recovery reads anything (issue 12).

use std::path::Path;

use super::{KeyId, Keyring};
use crate::error::{Error, Result};

/// The key ids the files of `data` (log segments, checkpoints and blob files) are sealed
/// with, sorted, each with one file that uses it. Files whose header cannot be read are left
/// to recovery (and verify).
pub fn key_ids_in_dir(data: &Path) -> Result<Vec<(KeyId, std::path::PathBuf)>> {
    let mut out = log_and_checkpoint_key_ids(data)?;
    for (id, path) in crate::blob::sealed::key_ids_of_files(&data.join(crate::blob::BLOB_DIR))? {
        if !out.iter().any(|(k, _)| *k == id) {
            out.push((id, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Like [`key_ids_in_dir`] for log segments, checkpoints and stream files only (what open
/// reads; a blob file names its key when it is read).
pub(crate) fn log_and_checkpoint_key_ids(data: &Path) -> Result<Vec<(KeyId, std::path::PathBuf)>> {
    let mut out: Vec<(KeyId, std::path::PathBuf)> = vec![];
    let mut add = |id: u32, path: &Path| {
        if let Some(id) = KeyId::from_u32(id) {
            if !out.iter().any(|(k, _)| *k == id) {
                out.push((id, path.to_owned()));
            }
        }
    };
    let log = data.join(crate::recovery::LOG_DIR);
    if log.is_dir() {
        let segments = crate::log::segment::list_segments(&log)
            .map_err(|e| Error::io(format!("listing {}", log.display()), e))?;
        for (_, p) in segments {
            if let Some(h) = crate::log::segment::read_header(&p) {
                add(h.key_id, &p);
            }
        }
    }
    let ckpt = data.join(crate::recovery::CHECKPOINT_DIR);
    if ckpt.is_dir() {
        let checkpoints = crate::checkpoint::list_checkpoints(&ckpt)
            .map_err(|e| Error::io(format!("listing {}", ckpt.display()), e))?;
        for (_, p) in checkpoints {
            if let Some(h) = crate::checkpoint::read_header(&p) {
                add(h.key_id, &p);
            }
        }
    }
    for (id, path) in crate::stream::files::key_ids_of_files(data)? {
        if !out.iter().any(|(k, _)| *k == id) {
            out.push((id, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Refuses, with [`Error::KeyMissing`] naming the key id and a file that needs it, a data
/// directory holding a log segment or checkpoint sealed with a key `keys` lacks (any sealed file when `keys` is
/// `None`). Open calls it before recovery, so a missing or wrong key is never taken for
/// damage and automatic recovery never quarantines because of it.
pub fn check_dir_keys(data: &Path, keys: Option<&Keyring>) -> Result<()> {
    for (id, file) in log_and_checkpoint_key_ids(data)? {
        if keys.and_then(|k| k.get(id)).is_none() {
            return Err(Error::KeyMissing {
                key_id: id.get(),
                unit: file.display().to_string(),
                available: super::describe_keys(keys),
            });
        }
    }
    Ok(())
}

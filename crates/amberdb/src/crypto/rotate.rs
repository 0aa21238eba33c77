//! Key rotation (issue 12): re-sealing a data directory's checkpoints and sealed log segments
//! under the keyring's first key, so that no file needs an older key any more.
//!
//! The keyring of an open database is fixed: the new key is put first when the database is
//! opened (`amberdb key rotate --new-key`, or the server's `encryption.key_file` with the old
//! keys in `encryption.old_key_files`), so every new segment and checkpoint is sealed with it
//! from that open on (open always starts a new segment when encryption is on). What this
//! module does is the rewrite that retires the others ([`rotate_keys`]):
//!
//! 1. a fresh checkpoint (sealed with the first key; retention then drops older checkpoints
//!    and the segments only they needed);
//! 2. every checkpoint still sealed with another key is decoded and written again at its LSN
//!    (temp file, fsync, rename, directory fsync: `checkpoint::write`);
//! 3. every sealed segment still sealed with another key is re-sealed frame by frame
//!    ([`reseal_segment`]): same frames at the same offsets, a new header (key id, salt),
//!    a new seal. Its steps, each durable before the next: the new bytes in
//!    `log/.<segment>.rekey`; the new seal (atomic replace: the commit point); the rename of
//!    the `.rekey` file over the segment. [`finish_interrupted`], run by open before the key
//!    check, completes a rewrite whose seal was replaced (the `.rekey` file matches the
//!    seal) and removes one whose seal was not (the segment still matches its seal). So a
//!    crash at any point leaves every file readable with the keyring the rotation ran with,
//!    and running the rotation again finishes it;
//! 4. every blob file in another form (plaintext, or sealed with another key) is written
//!    again, sealed with the first key, into `blobs/tmp/` and renamed over its file
//!    (`BlobStore::rewrite`): same content, so either file serves the blob, and a crash
//!    leaves the old file in place (open empties `blobs/tmp/`);
//! 5. every stream file in another form is written again beside itself and renamed over
//!    itself, holding the stream files' lock (`StreamFiles::reseal`; open removes a leftover).
//!
//! It never touches a backup repository: archived segments and snapshots keep the key id they
//! were written with (`docs/ENCRYPTION.md`, "Rotation"), and the archive treats a re-sealed
//! segment as the segment it archived (`BackupRepo::archive_segment`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use super::{FileCipher, KeyId, Keyring};
use crate::backup::Progress;
use crate::error::{Damage, Error, IoContext, Result};
use crate::io::{self, sync_dir, Faults};
use crate::log::sealed::{file_id, reseal_frames};
use crate::log::segment::{seal_file_name, Seal, SegmentHeader};
use crate::log::SealedSegment;

/// Suffix of a re-sealed segment waiting to replace its segment (`.<segment>.rekey`).
const REKEY_SUFFIX: &str = ".rekey";

/// Where a rotation is, for `Db::stats` and the server's status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RotationStatus {
    /// True while the rewrite runs.
    pub running: bool,
    /// The key id everything is being re-sealed with (the keyring's first key).
    pub key_id: String,
    /// Files (checkpoints and segments) found sealed with another key.
    pub files_total: u64,
    /// Of those, files re-sealed so far.
    pub files_done: u64,
    /// Bytes re-sealed so far.
    pub bytes_done: u64,
    /// Why the last rotation stopped, if it failed (run it again to finish).
    pub error: Option<String>,
}

/// What a finished rotation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RotationReport {
    /// The key id every checkpoint and segment is now sealed with (`plaintext` after a
    /// decryption).
    pub key_id: String,
    /// Checkpoints written again under it.
    pub checkpoints_rewritten: u64,
    /// Sealed segments re-sealed under it.
    pub segments_rewritten: u64,
    /// Blob files written again under it (`blob::sealed`).
    pub blobs_rewritten: u64,
    /// Stream files written again under it (`stream::files`).
    pub streams_rewritten: u64,
    /// Bytes written by the rewrite.
    pub bytes_rewritten: u64,
    /// The key ids the data directory's log segments and checkpoints need afterwards.
    pub key_ids_in_use: Vec<String>,
    /// Plaintext files of formats before encryption (log format 1 to 3, checkpoint format 1
    /// and 2), which are not rewritten: retention removes them.
    pub left_as_is: Vec<String>,
}

/// A database's rotation state: one rotation at a time, and its status.
#[derive(Debug, Default)]
pub(crate) struct RotationBook {
    serial: Mutex<()>,
    status: Mutex<Option<RotationStatus>>,
}

impl RotationBook {
    /// The status of the running or last rotation since open, if any.
    pub(crate) fn status(&self) -> Option<RotationStatus> {
        self.status.lock().ok().and_then(|s| s.clone())
    }

    fn update(&self, f: impl FnOnce(&mut RotationStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(s.get_or_insert_with(RotationStatus::default));
        }
    }
}

/// What a rotation needs from the open database (`Db` implements it), so this module owns
/// the rewrite and `db.rs` only hands out its locks and lists.
pub(crate) trait RotationHost {
    fn data_dir(&self) -> &Path;
    fn keyring(&self) -> Option<&Keyring>;
    fn faults(&self) -> &Faults;
    fn rotation_book(&self) -> &RotationBook;
    /// A checkpoint now (the fresh one, sealed with the first key).
    fn fresh_checkpoint(&self) -> Result<()>;
    /// Runs `f` holding the locks that keep checkpoint cleanup and archiving away from the
    /// files `f` rewrites.
    fn with_files_held(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<()>;
    /// The sealed segments, oldest first.
    fn sealed(&self) -> Vec<SealedSegment>;
    /// Replaces the seal of the sealed segment at `first_lsn` (after its rewrite).
    fn replace_seal(&self, first_lsn: u64, seal: Seal);
    fn identity_ids(&self) -> crate::identity::FileIds;
    fn compression_level(&self) -> i32;
    fn emit(&self, details: serde_json::Value);
    /// The blob files (re-sealed one by one, each renamed over its file).
    fn blob_store(&self) -> &crate::blob::BlobStore;
    /// Rewrites the stream files not in the target form (`StreamFiles::reseal`): (files,
    /// bytes) written.
    fn reseal_streams(&self, keys: &Keyring, to: Option<&Keyring>) -> Result<(u64, u64)>;
}

/// Re-seals every checkpoint and sealed segment of an open database that is sealed with
/// another key than the keyring's first (see the module docs); with `to_plaintext`, writes
/// every one plaintext instead (decryption; the caller then replaces the active segment).
/// Safe to run again after a crash or an error; a second run finds nothing to do.
pub(crate) fn rotate_keys(
    host: &dyn RotationHost,
    progress: &dyn Progress,
    to_plaintext: bool,
) -> Result<RotationReport> {
    let keys = host.keyring().cloned().ok_or_else(|| {
        Error::InvalidArgument(
            "this database is not encrypted (opened without a keyring): there is no key to rotate"
                .into(),
        )
    })?;
    let book = host.rotation_book();
    let _serial = book.serial.try_lock().map_err(|_| {
        Error::InvalidArgument("a key rotation is already running on this database".into())
    })?;
    let to = (!to_plaintext).then_some(&keys);
    let target = target_name(to);
    book.update(|s| {
        *s = RotationStatus {
            running: true,
            key_id: target.clone(),
            ..Default::default()
        }
    });
    host.emit(serde_json::json!({ "phase": "started", "key_id": target }));
    let result = rotate_locked(host, &keys, to, progress);
    match &result {
        Ok(r) => {
            book.update(|s| s.running = false);
            host.emit(serde_json::json!({ "phase": "finished", "report": r }));
        }
        Err(e) => {
            book.update(|s| {
                s.running = false;
                s.error = Some(e.to_string());
            });
            host.emit(
                serde_json::json!({ "phase": "failed", "key_id": target, "error": e.to_string() }),
            );
        }
    }
    result
}

/// The key id files are re-sealed with, or `plaintext`.
fn target_name(to: Option<&Keyring>) -> String {
    to.map_or_else(|| "plaintext".into(), |k| k.primary().id().to_string())
}

fn rotate_locked(
    host: &dyn RotationHost,
    keys: &Keyring,
    to: Option<&Keyring>,
    progress: &dyn Progress,
) -> Result<RotationReport> {
    let target = to.map_or(0, |k| k.primary().id().get());
    let data = host.data_dir().to_owned();
    let faults = host.faults().clone();
    host.fresh_checkpoint()?;
    let mut report = RotationReport {
        key_id: target_name(to),
        checkpoints_rewritten: 0,
        segments_rewritten: 0,
        blobs_rewritten: 0,
        streams_rewritten: 0,
        bytes_rewritten: 0,
        key_ids_in_use: vec![],
        left_as_is: vec![],
    };
    let ckpt_dir = data.join(crate::recovery::CHECKPOINT_DIR);
    let mut stale_ckpts: Vec<PathBuf> = vec![];
    for (_, p) in crate::checkpoint::list_checkpoints(&ckpt_dir)
        .context(|| format!("listing {}", ckpt_dir.display()))?
    {
        match crate::checkpoint::read_header(&p) {
            Some(h) if h.key_id == target => {}
            // Without database and timeline ids (format 1, 2): which history it belongs to
            // is recovery's call, not a rewrite's.
            Some(h) if h.format_version < 3 => report.left_as_is.push(p.display().to_string()),
            Some(_) => stale_ckpts.push(p),
            None => {}
        }
    }
    let mut stale_segs: Vec<SealedSegment> = vec![];
    for s in host.sealed() {
        match crate::log::segment::read_header(&s.path) {
            Some(h) if h.key_id == target => {}
            // Frames of log formats 1 to 3 cannot be re-framed in format 4: left to retention.
            Some(h) if h.format_version < 4 => report.left_as_is.push(s.path.display().to_string()),
            Some(_) => stale_segs.push(s),
            None => {}
        }
    }
    // Blob files in another form than the target's: plaintext ones when sealing, sealed
    // ones under another key (or any, when decrypting).
    let blobs = host.blob_store();
    let mut stale_blobs: Vec<([u8; 32], u64)> = vec![];
    for (sha, path) in crate::blob::list_blob_files(blobs.root(), &faults)? {
        let key = crate::blob::sealed::header_of(&path, &faults).map_or(0, |h| h.key_id.get());
        if key != target {
            stale_blobs.push((sha, std::fs::metadata(&path).map_or(0, |m| m.len())));
        }
    }
    let total_bytes: u64 = stale_segs.iter().map(|s| s.seal.length).sum::<u64>()
        + stale_blobs.iter().map(|(_, n)| n).sum::<u64>()
        + stale_ckpts
            .iter()
            .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum::<u64>();
    host.rotation_book().update(|s| {
        s.files_total = (stale_ckpts.len() + stale_segs.len() + stale_blobs.len()) as u64
    });
    progress.begin(
        &format!("re-sealing as {}", report.key_id),
        Some(total_bytes),
    );
    let done = |bytes: u64| {
        progress.advance(bytes);
        host.rotation_book().update(|s| {
            s.files_done += 1;
            s.bytes_done += bytes;
        });
    };
    for path in &stale_ckpts {
        let mut written = 0;
        host.with_files_held(&mut || {
            // Cleanup may have removed it since it was listed.
            if path.exists() {
                written = reseal_checkpoint(
                    path,
                    keys,
                    to,
                    host.identity_ids(),
                    host.compression_level(),
                    &faults,
                )?;
            }
            Ok(())
        })?;
        if written > 0 {
            report.checkpoints_rewritten += 1;
            report.bytes_rewritten += written;
        }
        done(written);
    }
    for seg in &stale_segs {
        let mut written = None;
        host.with_files_held(&mut || {
            // Still retained, with the seal it was listed with?
            let current = host
                .sealed()
                .into_iter()
                .find(|s| s.seal.first_lsn == seg.seal.first_lsn);
            if let Some(cur) = current.filter(|c| c.seal == seg.seal) {
                let first = cur.seal.first_lsn;
                let seal = reseal_segment(&cur, keys, to, &faults, &mut |seal| {
                    host.replace_seal(first, seal)
                })?;
                written = Some(seal.length);
            }
            Ok(())
        })?;
        if let Some(n) = written {
            report.segments_rewritten += 1;
            report.bytes_rewritten += n;
        }
        done(written.unwrap_or(0));
    }
    for (sha, _) in &stale_blobs {
        // Removed by garbage collection since it was listed: nothing to do.
        let written = blobs.rewrite(sha, to)?;
        if let Some(n) = written {
            report.blobs_rewritten += 1;
            report.bytes_rewritten += n;
        }
        done(written.unwrap_or(0));
    }
    let (files, bytes) = host.reseal_streams(keys, to)?;
    report.streams_rewritten = files;
    report.bytes_rewritten += bytes;
    progress.advance(bytes);
    progress.end();
    report.key_ids_in_use = super::key_ids_in_dir(&data)?
        .into_iter()
        .map(|(id, _)| id.to_string())
        .collect();
    Ok(report)
}

fn damaged(file: &Path, detail: String) -> Error {
    Error::Damaged(Damage {
        file: file.to_owned(),
        offset: 0,
        detail,
        hint: "run `amberdb verify` on the data directory; see \"Damaged data directory\" in \
               docs/OPERATIONS.md"
            .into(),
    })
}

/// Decodes the checkpoint at `path` with `keys` and writes it again at its LSN, sealed with
/// `to`'s first key, plaintext without `to` (atomic replace). A checkpoint that does not decode soundly is refused as
/// damage, never rewritten. Returns the bytes written.
fn reseal_checkpoint(
    path: &Path,
    keys: &Keyring,
    to: Option<&Keyring>,
    ids: crate::identity::FileIds,
    level: i32,
    faults: &Faults,
) -> Result<u64> {
    let bytes = io::read(path, faults).context(|| format!("reading {}", path.display()))?;
    let decoded = crate::checkpoint::decode_with(&bytes, Some(keys));
    if let Some(id) = decoded.key_missing {
        return Err(Error::KeyMissing {
            key_id: id,
            unit: path.display().to_string(),
            available: keys
                .key_ids()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    if let Some(p) = decoded.problems.first() {
        return Err(Error::Damaged(Damage {
            file: path.to_owned(),
            offset: p.offset,
            detail: format!("{}; refusing to re-seal a damaged checkpoint", p.detail),
            hint: "run `amberdb verify` on the data directory".into(),
        }));
    }
    let dir = io::parent_dir(path);
    let (written, size) = crate::checkpoint::write(
        dir,
        &decoded.state,
        decoded.ids.unwrap_or(ids),
        level,
        to,
        faults,
    )
    .context(|| format!("re-sealing {}", path.display()))?;
    if written != path {
        return Err(damaged(
            path,
            format!(
                "decodes to the state of LSN {}, which another file name holds",
                decoded.state.lsn
            ),
        ));
    }
    Ok(size)
}

/// The `.rekey` file of the segment at `segment`.
fn rekey_path(segment: &Path) -> PathBuf {
    let name = segment
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("segment");
    io::parent_dir(segment).join(format!(".{name}{REKEY_SUFFIX}"))
}

/// Re-seals one sealed segment of log format 4: its frames opened with `from` and sealed
/// with `to`'s first key (`None`: written plaintext), at the same LSNs. Durable steps (module
/// docs): `.rekey` file, new seal (commit point), rename over the segment; `on_renamed` gets
/// the new seal as soon as the segment has the new bytes. Returns the new seal. A segment
/// that does not match its seal is refused as damage, never rewritten.
pub(crate) fn reseal_segment(
    seg: &SealedSegment,
    from: &Keyring,
    to: Option<&Keyring>,
    faults: &Faults,
    on_renamed: &mut dyn FnMut(Seal),
) -> Result<Seal> {
    let path = &seg.path;
    let bytes = io::read(path, faults).context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 != seg.seal.length || crate::codec::sha256(&bytes) != seg.seal.sha256 {
        return Err(damaged(
            path,
            "the sealed segment does not match its seal; refusing to re-seal damaged log".into(),
        ));
    }
    let header = SegmentHeader::decode(&bytes).map_err(|e| damaged(path, e))?;
    if header.format_version < 4 {
        return Err(Error::InvalidArgument(format!(
            "{} is of log format {}, written before encryption existed; it is not re-sealed \
             (retention removes it)",
            path.display(),
            header.format_version
        )));
    }
    let old: Option<FileCipher> = match KeyId::from_u32(header.key_id) {
        Some(id) => Some(from.file_cipher_for(&file_id(&header), id)?),
        None => None,
    };
    let new_header = SegmentHeader {
        key_id: to.map_or(0, |k| k.primary().id().get()),
        salt: super::FileId::new_salt()?,
        ..header
    };
    let new_cipher = to
        .map(|k| k.file_cipher(&file_id(&new_header)))
        .transpose()?;
    let header_len = header.encoded_len();
    let mut out = new_header.encode();
    out.extend(reseal_frames(
        bytes.get(header_len..).unwrap_or_default(),
        header_len,
        old.as_ref(),
        new_cipher.as_ref(),
    )?);
    let seal = Seal {
        length: out.len() as u64,
        sha256: crate::codec::sha256(&out),
        ..seg.seal
    };
    let dir = io::parent_dir(path);
    let rekey = rekey_path(path);
    let seal_path = dir.join(seal_file_name(seg.seal.first_lsn));
    (|| -> std::io::Result<()> {
        let mut f = io::create(&rekey, faults)?;
        f.write_all(&out)?;
        f.sync_all()?;
        sync_dir(dir, faults)?;
        // The commit point: from here on open finishes the rewrite.
        io::write_atomic(&seal_path, &seal.encode(), faults)?;
        io::rename(&rekey, path, faults)?;
        // The segment now has the new bytes: whoever holds its seal must have the new one,
        // even if the directory sync below fails.
        on_renamed(seal);
        sync_dir(dir, faults)
    })()
    .context(|| format!("re-sealing {}", path.display()))?;
    if seal.length != seg.seal.length {
        // Offsets moved (plaintext <-> sealed): the derived index is rebuilt by readers.
        let idx = dir.join(crate::log::index::idx_file_name(seg.seal.first_lsn));
        let _ = std::fs::remove_file(idx);
    }
    Ok(seal)
}

/// Completes or undoes a segment rewrite a crash interrupted (module docs): a `.rekey` file
/// that matches its segment's seal replaces the segment, any other is removed. Open runs it
/// before the key check. Returns the segments it completed.
pub(crate) fn finish_interrupted(data: &Path, faults: &Faults) -> Result<Vec<PathBuf>> {
    let log = data.join(crate::recovery::LOG_DIR);
    let mut finished = vec![];
    if !log.is_dir() {
        return Ok(finished);
    }
    let mut changed = false;
    for path in io::read_dir(&log, faults).context(|| format!("reading {}", log.display()))? {
        let Some(segment_name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix('.'))
            .and_then(|n| n.strip_suffix(REKEY_SUFFIX))
            .map(str::to_owned)
        else {
            continue;
        };
        let Some(first) = segment_name
            .strip_suffix(".log")
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        let seal = io::read(&log.join(seal_file_name(first)), faults)
            .ok()
            .and_then(|b| Seal::decode(&b).ok());
        let matches = seal.is_some_and(|s| {
            io::read(&path, faults)
                .is_ok_and(|b| b.len() as u64 == s.length && crate::codec::sha256(&b) == s.sha256)
        });
        let segment = log.join(&segment_name);
        if matches {
            io::rename(&path, &segment, faults)
                .context(|| format!("completing the re-seal of {}", segment.display()))?;
            let idx = log.join(crate::log::index::idx_file_name(first));
            let _ = std::fs::remove_file(idx);
            tracing::info!(segment = %segment.display(), "completed an interrupted re-seal");
            finished.push(segment);
        } else {
            io::remove_file(&path, faults).context(|| format!("removing {}", path.display()))?;
        }
        changed = true;
    }
    if changed {
        sync_dir(&log, faults).context(|| format!("syncing {}", log.display()))?;
    }
    Ok(finished)
}

/// True when `a` and `b` are the same sealed segment written under different keys (or one
/// of them plaintext), as a rotation leaves it: the same database, timeline and first LSN in
/// the header, another key id or salt, and frame by frame the same LSNs and commit times,
/// every frame checking by length and CRC. Within one timeline an LSN names
/// one commit, so that is the same history; the payloads are not compared (that would need
/// the old key, which may be gone). The archive uses it where it compares bytes.
pub(crate) fn same_segment_resealed(a: &[u8], b: &[u8]) -> bool {
    use crate::log::segment::{scan_structure, ScanEnd};
    let frames = |bytes: &[u8]| {
        let mut out = vec![];
        let scan = scan_structure(bytes, |rec, _| out.push((rec.lsn, rec.commit_ts)));
        match scan {
            Ok((s, _)) if s.end == ScanEnd::Clean && s.valid_len == bytes.len() as u64 => {
                Some((s.header, out))
            }
            _ => None,
        }
    };
    let (Some((ha, fa)), Some((hb, fb))) = (frames(a), frames(b)) else {
        return false;
    };
    ha.format_version == hb.format_version
        && ha.first_lsn == hb.first_lsn
        && ha.ids.is_some()
        && ha.ids == hb.ids
        && (ha.key_id != hb.key_id || ha.salt != hb.salt)
        && fa == fb
}

/// Turns encryption on for an existing data directory, offline (no other process may have it
/// open): opens it with `keys` (so every new file is sealed with the first key) and re-seals
/// every plaintext checkpoint and log segment with it ([`crate::Db::rotate_keys`]). Also
/// rotates whatever is sealed with another key of `keys`. Run it again to finish one that was
/// interrupted.
pub fn encrypt_dir(data: &Path, keys: Keyring, progress: &dyn Progress) -> Result<RotationReport> {
    let db = crate::Db::open_with(
        data,
        crate::Options {
            encryption: Some(keys),
            create_if_missing: false,
            ..crate::Options::default()
        },
    )?;
    let report = db.rotate_keys(progress);
    let closed = db.close();
    let report = report?;
    closed?;
    Ok(report)
}

/// Turns encryption off for a data directory, offline (no other process may have it open):
/// every checkpoint and log segment is written plaintext (same crash-safe steps as a
/// rotation), then the empty segment this open started (sealed with the key, no commit in
/// it) is replaced by a plaintext one. Afterwards the directory opens without a keyring. Run
/// it again to finish one that was interrupted; until then it opens with `keys`.
pub fn decrypt_dir(data: &Path, keys: Keyring, progress: &dyn Progress) -> Result<RotationReport> {
    let faults = Faults::none();
    let db = crate::Db::open_with(
        data,
        crate::Options {
            encryption: Some(keys),
            create_if_missing: false,
            checkpoint_on_close: false,
            ..crate::Options::default()
        },
    )?;
    let report = rotate_keys(&db, progress, true);
    let closed = db.close();
    let mut report = report?;
    closed?;
    let log = data.join(crate::recovery::LOG_DIR);
    let segments = crate::log::segment::list_segments(&log)
        .context(|| format!("listing {}", log.display()))?;
    if let Some((first, path)) = segments.last() {
        let bytes = io::read(path, &faults).context(|| format!("reading {}", path.display()))?;
        let header = SegmentHeader::decode(&bytes).map_err(|e| damaged(path, e))?;
        let sealed = log.join(seal_file_name(*first)).exists();
        if header.key_id != 0 && !sealed {
            if bytes.len() != header.encoded_len() {
                return Err(Error::InvalidArgument(format!(
                    "{} holds commits sealed with key id {:08x} that are not in a sealed \
                     segment; open the directory with the key once and run decrypt again",
                    path.display(),
                    header.key_id
                )));
            }
            let plain = SegmentHeader {
                key_id: 0,
                salt: super::FileId::new_salt()?,
                ..header
            };
            io::write_atomic(path, &plain.encode(), &faults)
                .context(|| format!("rewriting {} plaintext", path.display()))?;
        }
    }
    report.key_ids_in_use = super::key_ids_in_dir(data)?
        .into_iter()
        .map(|(id, _)| id.to_string())
        .collect();
    Ok(report)
}

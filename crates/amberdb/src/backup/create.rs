//! `Db::backup`: an online backup of one read view, and `Db::archive`: copying sealed log
//! segments to a repository's `wal/`.
//!
//! A backup never blocks writers beyond the one commit that seals the active segment: the
//! snapshot is written from an immutable view while the committer keeps going.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use super::{
    BackupManifest, BackupRepo, FileEntry, HashWriter, NoProgress, Progress, BACKUP_LOCK,
    MANIFEST_FILE, SNAPSHOT_FILE,
};
use crate::checkpoint;
use crate::db::Db;
use crate::document::{format_micros, now_micros};
use crate::error::{Error, Result};

/// Forwards bytes and reports them to a `Progress`.
struct Counting<'a, W: Write> {
    inner: W,
    progress: &'a dyn Progress,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn backup_id(now: u64, lsn: u64) -> String {
    // 2026-11-21T21:30:00.123456Z -> 20261121T213000Z
    let t = format_micros(now);
    let compact: String = t
        .chars()
        .take(19)
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect();
    format!("{compact}Z-{lsn}")
}

impl Db {
    /// Takes an online backup into `repo` (see [`Db::backup_with`]).
    pub fn backup(&self, repo: &BackupRepo) -> Result<BackupManifest> {
        self.backup_with(repo, &NoProgress)
    }

    /// Takes an online backup into `repo`: attaches the repository (so this data directory
    /// keeps its log until archived there), snapshots the current view, seals the active log
    /// segment and archives every sealed segment, then writes the manifest last.
    pub fn backup_with(
        &self,
        repo: &BackupRepo,
        progress: &dyn Progress,
    ) -> Result<BackupManifest> {
        // Refuses a repository of another database before attaching it.
        repo.record_history(self.identity())?;
        self.attach(repo)?;
        // View first, then sync: the sync covers every published commit, so the snapshot
        // never holds a commit that a power loss could still take back.
        let view = self.view();
        // The backup's time is read between the view and the roll: every commit stamped at
        // or before it was processed by the committer before the roll, so it is in the view
        // or in the segment the roll seals (archived below). That makes the backup proof
        // that nothing was committed between its archive's last commit and its time, which
        // point-in-time restore to a quiet moment relies on.
        let now = now_micros();
        self.roll()?;
        let level = self.options().backup_compression_level;
        let mut id = backup_id(now, view.lsn());
        let existing = repo.backup_ids()?;
        let mut n = 1;
        while existing.contains(&id) {
            n += 1;
            id = format!("{}-{n}", backup_id(now, view.lsn()));
        }
        // Held while the backup is written: `prune` removes a backup without a manifest only
        // when it can take this lock, i.e. when its writer is gone.
        let lock_name = format!("backups/{id}/{BACKUP_LOCK}");
        let lock = repo
            .storage()
            .try_lock(&lock_name)
            .map_err(|e| repo.err(format!("locking {lock_name}: {e}")))?
            .ok_or_else(|| repo.err(format!("backup {id} is being written by someone else")))?;
        let result = self.write_backup(repo, progress, &id, view, now, level);
        let dir = format!("backups/{id}");
        if result.is_err() {
            // A refused or failed backup leaves nothing behind (prune would remove it later).
            let _ = repo.storage().remove_dir(&dir);
        } else {
            let _ = repo.storage().remove(&lock_name);
        }
        drop(lock);
        result
    }

    fn write_backup(
        &self,
        repo: &BackupRepo,
        progress: &dyn Progress,
        id: &str,
        view: crate::state::ReadView,
        now: u64,
        level: i32,
    ) -> Result<BackupManifest> {
        let snapshot_name = format!("backups/{id}/{SNAPSHOT_FILE}");
        let total: u64 = view
            .iter_all()
            .map(|(_, d)| d.value.len() as u64 + 100)
            .sum();
        progress.begin(
            &format!("backup {id}: snapshot at LSN {}", view.lsn()),
            Some(total),
        );
        let writer = repo
            .storage()
            .create(&snapshot_name)
            .map_err(|e| repo.err(format!("creating {snapshot_name}: {e}")))?;
        let stored = HashWriter::new(writer);
        let encoder = zstd::stream::write::Encoder::new(stored, level)
            .map_err(|e| repo.err(format!("zstd: {e}")))?;
        let mut plain = HashWriter::new(Counting {
            inner: encoder,
            progress,
        });
        // Encrypted snapshots compress each block before sealing it (ciphertext does not
        // compress; the outer zstd stream then only frames it).
        let keys = self.options().encryption.as_ref();
        let block_level = if keys.is_some() { level.max(1) } else { 0 };
        let ids = Some(self.identity().ids());
        checkpoint::encode_sealed(&view.state, ids, block_level, keys, &mut plain)
            .map_err(|e| repo.err(format!("writing {snapshot_name}: {e}")))?;
        let (plain_size, plain_sha256) = (plain.count, plain.digest_hex());
        let stored = plain
            .inner
            .inner
            .finish()
            .map_err(|e| repo.err(format!("writing {snapshot_name}: {e}")))?;
        let (stored_size, stored_sha256) = (stored.count, stored.digest_hex());
        stored
            .inner
            .commit()
            .map_err(|e| repo.err(format!("writing {snapshot_name}: {e}")))?;
        progress.end();

        // The snapshot covers every commit up to its LSN, so a gap in the data directory's log
        // at or below it does not stop archiving.
        let (archived_through, gap) = self.archive_until_gap(repo, progress, view.lsn())?;
        if let Some((from, to)) = gap {
            return Err(repo.err(format!(
                "backup {id}: this data directory's log is missing LSNs {from}..={to}, after the snapshot's LSN {}; run `amberdb verify` on it",
                view.lsn()
            )));
        }

        let mut documents = BTreeMap::new();
        let mut schema_versions: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for c in view.collections() {
            documents.insert(c.name.clone(), c.documents);
            let versions: BTreeSet<u32> = view
                .state
                .collections
                .get(c.name.as_str())
                .map(|coll| coll.docs.values().map(|d| d.meta.schema_version).collect())
                .unwrap_or_default();
            schema_versions.insert(c.name, versions.into_iter().collect());
        }
        let spec_checksums: BTreeMap<String, String> = view
            .state
            .collections
            .get(crate::spec::SPEC_COLLECTION)
            .map(|specs| {
                specs
                    .docs
                    .iter()
                    .map(|(c, d)| (c.to_string(), hex::encode(d.meta.sha256)))
                    .collect()
            })
            .unwrap_or_default();
        if !repo.storage().exists(&snapshot_name) {
            return Err(repo.err(format!(
                "{snapshot_name} vanished while the backup was written (removed by a prune that did not see the backup's lock?)"
            )));
        }
        // Blob files after the snapshot and the archive: every blob the snapshot names must
        // be in the repository before its manifest is.
        let blobs = crate::blob::copy_to_repo(self, repo, Some(&view.state))?;
        // Stream values live in stream files, not in the snapshot: copy the files the view's
        // streams need (a restore cuts them back to the snapshot's watermarks).
        let mut files = vec![FileEntry {
            name: SNAPSHOT_FILE.into(),
            plain_size,
            plain_sha256,
            stored_size,
            stored_sha256,
        }];
        files.extend(self.copy_stream_files(repo, id, &view.state, progress)?);
        let manifest = BackupManifest {
            // Format 1 unless the backup has stream files (format 2): an older engine
            // refuses a format-2 manifest by its version, and reads every other backup.
            format_version: if files.len() > 1 {
                super::MANIFEST_FORMAT_VERSION
            } else {
                1
            },
            id: id.to_owned(),
            repository_id: repo.id().to_owned(),
            created_at: format_micros(now),
            created_at_us: now,
            lsn: view.lsn(),
            commit_ts_us: view.commit_ts(),
            commit_time: format_micros(view.commit_ts()),
            documents,
            schema_versions,
            spec_checksums,
            engine_version: env!("CARGO_PKG_VERSION").to_owned(),
            compression: "zstd".into(),
            compression_level: level,
            key_id: keys.map(|k| k.primary().id().get()),
            archived_through_lsn: Some(archived_through),
            database_id: Some(self.identity().database_id),
            timeline: Some(self.identity().timeline),
            files,
            blobs,
        };
        let bytes =
            serde_json::to_vec_pretty(&manifest).map_err(|e| Error::InvalidValue(e.to_string()))?;
        let manifest_name = format!("backups/{id}/{MANIFEST_FILE}");
        repo.storage()
            .write_atomic(&manifest_name, &bytes)
            .map_err(|e| repo.err(format!("writing {manifest_name}: {e}")))?;
        self.record_backup(&manifest);
        tracing::info!(id = %manifest.id, lsn = manifest.lsn, docs = manifest.total_documents(), stored_size, "backup complete");
        Ok(manifest)
    }

    /// Copies the stream files `state`'s streams need into backup `id`, as they are (sealed
    /// files stay sealed), each as a manifest file entry named by its path in the data
    /// directory. A file's bytes past the view (later appends) are copied too; a restore
    /// cuts them back to the snapshot's watermarks, as open does.
    fn copy_stream_files(
        &self,
        repo: &BackupRepo,
        id: &str,
        state: &crate::state::State,
        progress: &dyn Progress,
    ) -> Result<Vec<FileEntry>> {
        if state.streams.is_empty() {
            return Ok(vec![]);
        }
        let (data, faults) = (self.path(), &self.options().faults);
        let rels = crate::stream::files::files_of(data, state, faults)?;
        progress.begin(
            &format!("backup {id}: {} stream files", rels.len()),
            Some(rels.len() as u64),
        );
        let mut out = vec![];
        for rel in rels {
            let path = data.join(&rel);
            let mut src = crate::io::open_read(&path, faults).map_err(|e| {
                Error::io(
                    format!(
                        "reading {} for backup {id} (removed by retention while the backup ran? take it again)",
                        path.display()
                    ),
                    e,
                )
            })?;
            let name = format!("backups/{id}/{rel}");
            let writer = repo
                .storage()
                .create(&name)
                .map_err(|e| repo.err(format!("creating {name}: {e}")))?;
            let mut w = HashWriter::new(writer);
            std::io::copy(&mut src, &mut w)
                .map_err(|e| repo.err(format!("copying {} to {name}: {e}", path.display())))?;
            let (size, sha) = (w.count, w.digest_hex());
            w.inner
                .commit()
                .map_err(|e| repo.err(format!("writing {name}: {e}")))?;
            out.push(FileEntry {
                name: rel,
                plain_size: size,
                plain_sha256: sha.clone(),
                stored_size: size,
                stored_sha256: sha,
            });
            progress.advance(1);
        }
        progress.end();
        Ok(out)
    }

    /// Archives every sealed segment not yet in `repo`; returns the LSN the archive reaches.
    pub fn archive(&self, repo: &BackupRepo) -> Result<u64> {
        self.archive_with(repo, &NoProgress)
    }

    /// Like [`Db::archive`], reporting progress. Stops with an error at a gap: a sealed
    /// segment that does not continue what the repository holds (its earlier commits are no
    /// longer in this data directory), so the archive never looks continuous across commits
    /// it does not have; a backup (whose snapshot covers the gap) lets archiving go on.
    pub fn archive_with(&self, repo: &BackupRepo, progress: &dyn Progress) -> Result<u64> {
        match self.archive_until_gap(repo, progress, 0)? {
            (through, None) => Ok(through),
            (through, Some((from, to))) => Err(repo.err(format!(
                "archiving stopped at LSN {through}: this data directory no longer holds LSNs {from}..={to}, which the repository has not archived; take a backup (`amberdb backup create`) so archiving can continue from its snapshot"
            ))),
        }
    }

    /// Archives sealed segments in LSN order from the slot's position, stopping before the
    /// first one that leaves a gap after what is archived, unless the gap ends at or below
    /// `covered` (a snapshot's LSN). Returns the LSN archived through and the gap, if any.
    pub(crate) fn archive_until_gap(
        &self,
        repo: &BackupRepo,
        progress: &dyn Progress,
        covered: u64,
    ) -> Result<(u64, Option<(u64, u64)>)> {
        repo.record_history(self.identity())?;
        self.attach(repo)?;
        let _serial = self.archive_lock();
        let mut through = self.slot(repo.id()).map_or(0, |s| s.archived_through_lsn);
        let mut sealed = self.sealed_segments();
        sealed.sort_by_key(|s| s.seal.first_lsn);
        let level = self.options().backup_compression_level;
        // Blob files before the segments that name them (each was synced before its commit).
        crate::blob::copy_to_repo(self, repo, None)?;
        for seg in &sealed {
            if seg.seal.last_lsn <= through {
                continue;
            }
            let first = seg.seal.first_lsn;
            if first > through + 1 && first > covered + 1 {
                return Ok((through, Some((through + 1, first - 1))));
            }
            repo.archive_segment(seg, self.identity(), level, progress)?;
            through = seg.seal.last_lsn;
            self.set_archived_through(repo.id(), through)?;
        }
        Ok((through, None))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn backup_ids_sort_by_time() {
        assert_eq!(
            super::backup_id(1_700_000_000_000_000, 42),
            "20231114T221320Z-42"
        );
    }
}

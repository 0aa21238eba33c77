//! Verifying a backup repository: structure (manifests, files, sizes, stored hashes, log
//! continuity) and, with `read_data`, a full decode of every snapshot and archived segment
//! with every document's SHA-256.

use std::path::PathBuf;

use serde::Serialize;

use super::{
    point, sha256_hex, ArchivedSegment, BackupManifest, BackupRepo, Progress, MANIFEST_FILE,
    SNAPSHOT_FILE,
};
use crate::error::Result;
use crate::log::segment::{scan_structure, scan_with, ScanEnd};

/// One problem in a repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepoProblem {
    /// The file, relative to the repository.
    pub file: PathBuf,
    /// What is wrong.
    pub detail: String,
}

/// What repository verification checked and found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RepoVerifyReport {
    /// Backups checked.
    pub backups: u64,
    /// Archived segments checked.
    pub segments: u64,
    /// Whether data was fully decoded.
    pub read_data: bool,
    /// Documents whose SHA-256 was checked.
    pub documents_checked: u64,
    /// Blob files the manifests list that were checked (size; with `read_data`, SHA-256).
    pub blobs_checked: u64,
    /// Gaps in the archived log: (first missing LSN, last missing LSN).
    pub gaps: Vec<(u64, u64)>,
    /// Every problem found.
    pub problems: Vec<RepoProblem>,
    /// Encryption key ids the repository needs (issue 12), as 8 hex digits, sorted: from
    /// every backup's manifest, and with `read_data` from every archived segment's header.
    pub key_ids: Vec<String>,
    /// Encrypted files whose contents were not checked because their key was not given
    /// (their stored hashes and, for segments, frame structure were). Not problems.
    pub contents_not_checked: Vec<RepoProblem>,
}

impl RepoVerifyReport {
    /// True when no problem was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl BackupRepo {
    /// Verifies the repository, or only backup `only` (plus the whole archive). Encrypted
    /// files are checked for structure only ([`BackupRepo::verify_with`] takes keys).
    pub fn verify(
        &self,
        only: Option<&str>,
        read_data: bool,
        progress: &dyn Progress,
    ) -> Result<RepoVerifyReport> {
        self.verify_with(only, read_data, progress, None)
    }

    /// Like [`BackupRepo::verify`], decoding encrypted snapshots and segments with `keys`.
    pub fn verify_with(
        &self,
        only: Option<&str>,
        read_data: bool,
        progress: &dyn Progress,
        keys: Option<&crate::crypto::Keyring>,
    ) -> Result<RepoVerifyReport> {
        let mut key_ids = std::collections::BTreeSet::new();
        let has_key = |id: u32| {
            crate::crypto::KeyId::from_u32(id)
                .is_none_or(|k| keys.is_some_and(|ring| ring.get(k).is_some()))
        };
        let mut r = RepoVerifyReport {
            read_data,
            ..Default::default()
        };
        let problem = |r: &mut RepoVerifyReport, file: String, detail: String| {
            r.problems.push(RepoProblem {
                file: file.into(),
                detail,
            })
        };
        if let Some(id) = only {
            self.check_backup_id(id)?;
        }
        let ids = self.backup_ids()?;
        if only.is_none() {
            for name in self.backup_dir_names()? {
                if !super::is_backup_id(&name) {
                    problem(
                        &mut r,
                        format!("backups/{name}"),
                        "not a backup (its name is not a backup id); left alone by prune, restore and verify".into(),
                    );
                }
            }
        }
        if let Some(id) = only {
            if !ids.iter().any(|i| i == id) {
                problem(&mut r, format!("backups/{id}"), "no such backup".into());
            }
        }
        // The database the repository belongs to: the one of its timeline histories. Every
        // backup and archived segment must be of it, and every segment's timeline recorded.
        let histories = match self.histories() {
            Ok(h) => h,
            Err(e) => {
                problem(&mut r, "wal".into(), e.to_string());
                vec![]
            }
        };
        let database = histories.first().map(|h| h.database_id);
        for h in &histories {
            if Some(h.database_id) != database {
                problem(
                    &mut r,
                    super::archive::history_name(h.timeline),
                    format!(
                        "history of database {}, but this repository belongs to database {}",
                        h.database_id,
                        database.map_or("?".into(), |d| d.to_string())
                    ),
                );
            }
        }
        let foreign = |db: Option<crate::identity::DatabaseId>| match (db, database) {
            (Some(d), Some(ours)) if d != ours => Some(format!(
                "belongs to database {d}, but this repository belongs to database {ours}"
            )),
            _ => None,
        };
        let mut manifests: Vec<BackupManifest> = vec![];
        for id in ids.iter().filter(|i| only.is_none_or(|o| o == i.as_str())) {
            r.backups += 1;
            let mname = format!("backups/{id}/{MANIFEST_FILE}");
            if !self.storage().exists(&mname) {
                problem(
                    &mut r,
                    mname,
                    "missing: the backup is incomplete (interrupted); prune or delete it".into(),
                );
                continue;
            }
            let m = match self.manifest(id) {
                Ok(m) => m,
                Err(e) => {
                    problem(&mut r, mname, e.to_string());
                    continue;
                }
            };
            if m.id != *id || m.repository_id != self.id() {
                problem(
                    &mut r,
                    mname.clone(),
                    format!(
                        "manifest names backup {} of repository {}",
                        m.id, m.repository_id
                    ),
                );
            }
            if let Some(why) = foreign(m.database_id) {
                problem(&mut r, mname.clone(), format!("backup {why}"));
            }
            for f in &m.files {
                let name = format!("backups/{id}/{}", f.name);
                let stored = match self.storage().read(&name) {
                    Ok(b) => b,
                    Err(e) => {
                        problem(&mut r, name, format!("missing or unreadable: {e}"));
                        continue;
                    }
                };
                if stored.len() as u64 != f.stored_size {
                    problem(
                        &mut r,
                        name.clone(),
                        format!(
                            "size {} but the manifest says {}",
                            stored.len(),
                            f.stored_size
                        ),
                    );
                } else if sha256_hex(&stored) != f.stored_sha256 {
                    problem(
                        &mut r,
                        name.clone(),
                        "stored bytes do not match the manifest's SHA-256".into(),
                    );
                }
                if read_data && f.name == SNAPSHOT_FILE {
                    progress.begin(&format!("reading backup {id}"), Some(f.plain_size));
                    if let Some(k) = m.key_id {
                        key_ids.insert(k);
                    }
                    let loaded = if m.key_id.is_some_and(|k| !has_key(k)) {
                        r.contents_not_checked.push(RepoProblem {
                            file: name.clone().into(),
                            detail: format!(
                                "encrypted with key id {:08x}, which was not given: stored \
                                 size and SHA-256 checked, contents not",
                                m.key_id.unwrap_or(0)
                            ),
                        });
                        None
                    } else {
                        Some(super::restore::load_snapshot_with(
                            self,
                            &m,
                            &super::NoProgress,
                            keys,
                        ))
                    };
                    match loaded {
                        None => {}
                        Some(Ok(state)) => {
                            r.documents_checked += state.doc_count();
                            // The manifest counts the collections users see (no `.spec`,
                            // no blob metadata).
                            let user_docs: u64 = state
                                .collections
                                .iter()
                                .filter(|(n, _)| !crate::state::is_system_collection(n))
                                .map(|(_, c)| c.docs.len() as u64)
                                .sum();
                            if user_docs != m.total_documents() {
                                problem(
                                    &mut r,
                                    name,
                                    format!(
                                        "{user_docs} documents, manifest says {}",
                                        m.total_documents()
                                    ),
                                );
                            }
                        }
                        Some(Err(e)) => problem(&mut r, name, e.to_string()),
                    }
                    progress.advance(f.plain_size);
                    progress.end();
                }
            }
            manifests.push(m);
        }

        let archive = match self.archived_segments() {
            Ok(a) => a,
            Err(e) => {
                problem(&mut r, "wal".into(), e.to_string());
                vec![]
            }
        };
        // Continuity within each timeline (a new timeline's segments overlap its parent's).
        let mut prevs: std::collections::BTreeMap<_, &ArchivedSegment> = Default::default();
        for seg in &archive {
            r.segments += 1;
            let name = seg.data_file();
            if let Some(why) = foreign(seg.database_id) {
                problem(&mut r, seg.meta_file(), format!("archived segment {why}"));
            }
            if let Some(t) = seg.timeline {
                if !histories.iter().any(|h| h.timeline == t) {
                    problem(
                        &mut r,
                        seg.meta_file(),
                        format!("archived segment of timeline {t}, which has no history here"),
                    );
                }
            }
            let prev = prevs.insert(seg.timeline, seg);
            if let Some(p) = prev {
                if seg.first_lsn > p.last_lsn + 1 {
                    r.gaps.push((p.last_lsn + 1, seg.first_lsn - 1));
                } else if seg.first_lsn <= p.last_lsn {
                    problem(
                        &mut r,
                        name.clone(),
                        format!(
                            "overlaps the previous segment (LSNs {}..={})",
                            p.first_lsn, p.last_lsn
                        ),
                    );
                }
            }
            match self.storage().read(&name) {
                Err(e) => problem(&mut r, name.clone(), format!("missing or unreadable: {e}")),
                Ok(stored) => {
                    if stored.len() as u64 != seg.stored_size
                        || sha256_hex(&stored) != seg.stored_sha256
                    {
                        problem(
                            &mut r,
                            name.clone(),
                            "stored bytes do not match the size and SHA-256 in its .json".into(),
                        );
                    }
                }
            }
            match self.read_seal(seg) {
                Err(e) => problem(&mut r, seg.seal_file(), e.to_string()),
                Ok(seal) => {
                    if hex::encode(seal.sha256) != seg.plain_sha256 || seal.last_lsn != seg.last_lsn
                    {
                        problem(
                            &mut r,
                            seg.seal_file(),
                            "seal does not match the segment's description".into(),
                        );
                    }
                }
            }
            if read_data {
                progress.begin(
                    &format!("reading segment {}", seg.first_lsn),
                    Some(seg.plain_size),
                );
                match self.read_segment(seg) {
                    Err(e) => problem(&mut r, name.clone(), e.to_string()),
                    Ok(plain) => {
                        let mut bad_docs = vec![];
                        let mut docs = 0;
                        let header = crate::log::segment::SegmentHeader::decode(&plain).ok();
                        let seg_key = header.map_or(0, |h| h.key_id);
                        if seg_key != 0 {
                            key_ids.insert(seg_key);
                        }
                        let keyed = has_key(seg_key);
                        if !keyed {
                            r.contents_not_checked.push(RepoProblem {
                                file: name.clone().into(),
                                detail: format!(
                                    "encrypted with key id {seg_key:08x}, which was not given: \
                                     frame structure checked, contents not"
                                ),
                            });
                        }
                        let on_commit = |rec: crate::log::record::CommitRecord, off: u64| {
                            for op in &rec.ops {
                                if let Some(d) = &op.doc {
                                    docs += 1;
                                    if crate::codec::sha256(&d.value) != d.sha256 {
                                        bad_docs.push(format!("document {}/{} in commit LSN {} (offset {off}) does not match its SHA-256", op.collection, op.key, rec.lsn));
                                    }
                                }
                            }
                        };
                        let scanned = if keyed {
                            scan_with(&plain, keys, on_commit)
                        } else {
                            scan_structure(&plain, on_commit).map(|(s, _)| s)
                        };
                        match scanned {
                            Err(e) => problem(&mut r, name.clone(), e),
                            Ok(s) if s.header.ids.is_some() && s.header.ids != seg.ids() => {
                                problem(
                                    &mut r,
                                    name.clone(),
                                    format!(
                                        "segment header says {} but its description says {}: the file was swapped",
                                        s.header.ids.map_or("no ids".into(), |i| i.to_string()),
                                        seg.ids().map_or("no ids".into(), |i| i.to_string())
                                    ),
                                );
                            }
                            Ok(s) => {
                                if s.end != ScanEnd::Clean || s.last_lsn != seg.last_lsn {
                                    problem(
                                        &mut r,
                                        name.clone(),
                                        format!(
                                            "segment does not decode cleanly to LSN {} ({:?})",
                                            seg.last_lsn, s.end
                                        ),
                                    );
                                }
                            }
                        }
                        r.documents_checked += docs;
                        for d in bad_docs {
                            problem(&mut r, name.clone(), d);
                        }
                    }
                }
                progress.advance(seg.plain_size);
                progress.end();
            }
        }
        // An archive that ends before where a backup saw it reach lost its newest segments
        // (deleted by hand, or all of wal/): restores would silently stop early.
        let archive_end = archive.last().map_or(0, |s| s.last_lsn);
        if let Some((claim, m)) = manifests
            .iter()
            .filter_map(|m| m.archived_through_lsn.map(|a| (a, m)))
            .max_by_key(|(a, _)| *a)
            .filter(|(a, _)| *a > archive_end)
        {
            problem(
                &mut r,
                "wal".into(),
                format!(
                    "the archive ends at LSN {archive_end}, but backup {} recorded it reaching LSN {claim}: archived segments are missing, and restore --latest reaches only LSN {archive_end}",
                    m.id
                ),
            );
        }
        // Which restore targets each gap makes impossible.
        for &(from, to) in &r.gaps.clone() {
            let base = manifests
                .iter()
                .filter(|m| m.lsn < from)
                .max_by_key(|m| m.lsn);
            let next = manifests
                .iter()
                .filter(|m| m.lsn > to)
                .min_by_key(|m| m.lsn);
            let unreachable_to = next.map_or("the end of the archive".to_string(), |m| {
                format!("LSN {} (backup {})", m.lsn.saturating_sub(1), m.id)
            });
            let detail = match base {
                Some(b) => format!(
                    "archived log is missing LSNs {from}..={to}: targets from LSN {from} up to {unreachable_to} cannot be restored (backup {} at {} reaches only LSN {})",
                    b.id,
                    point(b.lsn, b.commit_ts_us),
                    from - 1
                ),
                None => format!("archived log is missing LSNs {from}..={to} (no backup depends on them)"),
            };
            if base.is_some() {
                problem(&mut r, "wal".into(), detail);
            }
        }
        let blobs = crate::blob::verify_repo(self, &manifests, read_data, keys);
        r.blobs_checked = blobs.checked;
        for (file, detail) in blobs.problems {
            problem(&mut r, file, detail);
        }
        for (file, detail) in blobs.not_checked {
            r.contents_not_checked.push(RepoProblem {
                file: file.into(),
                detail,
            });
        }
        key_ids.extend(blobs.key_ids);
        r.key_ids = key_ids.iter().map(|k| format!("{k:08x}")).collect();
        Ok(r)
    }

    /// Adds to `report` a problem when data directory `data` has a slot for this repository
    /// that says its archive reaches further than the archive does (newest segments deleted
    /// from the repository after they were archived).
    pub fn verify_against_data_dir(
        &self,
        data: &std::path::Path,
        report: &mut RepoVerifyReport,
    ) -> Result<()> {
        let slots = super::Slots::load(data)?;
        let Some(slot) = slots.repos.iter().find(|s| s.repository_id == self.id()) else {
            return Ok(());
        };
        let end = self.archived_segments()?.last().map_or(0, |s| s.last_lsn);
        if slot.archived_through_lsn > end {
            report.problems.push(RepoProblem {
                file: "wal".into(),
                detail: format!(
                    "the archive ends at LSN {end}, but data directory {} archived through LSN {} to this repository: archived segments are missing, and restore --latest reaches only LSN {end}",
                    data.display(),
                    slot.archived_through_lsn
                ),
            });
        }
        Ok(())
    }
}

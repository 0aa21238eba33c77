//! `verify`: an exhaustive, read-only check of a data directory.
//!
//! It checks every commit frame's CRC32C and LSN sequence, every segment seal's SHA-256,
//! every checkpoint's header, blocks and body hash, and every document's SHA-256 in both the
//! log and the checkpoints, every blob file's SHA-256, and every stream entry the newest sound
//! checkpoint names (CRC32C, sequence numbers; `stream::files::verify_files`). It reports every problem with its file and offset and never
//! modifies anything, so it is safe to run against a directory another process has open.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::checkpoint::{self, list_checkpoints};
use crate::error::{IoContext, Result};
use crate::log::read_file;
use crate::log::segment::{
    list_segments, missing_log, scan_structure, scan_with, seal_file_name, ScanEnd, Seal,
};
use crate::recovery::{TornTail, CHECKPOINT_DIR, LOG_DIR};

/// One problem found by `verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// Byte offset in it, when the problem has one.
    pub offset: Option<u64>,
    /// What is wrong.
    pub detail: String,
}

/// What `verify` checked and found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Log segments read.
    pub segments: u64,
    /// Seals checked.
    pub seals: u64,
    /// Commits whose CRC was checked.
    pub commits: u64,
    /// First and last LSN found in the log.
    pub log_lsn_range: Option<(u64, u64)>,
    /// Checkpoints read.
    pub checkpoints: u64,
    /// Documents whose SHA-256 was checked (log records and checkpoint entries).
    pub documents_checked: u64,
    /// Blob files whose SHA-256 was checked against their names (`DATA/blobs/`).
    pub blobs_checked: u64,
    /// Stream entries whose frame was checked (`DATA/streams/`, up to the newest sound
    /// checkpoint's watermarks; later entries are rewritten from the log on open).
    pub stream_entries_checked: u64,
    /// A torn tail at the end of the last segment: normal after a crash, not damage. The next
    /// open cuts it.
    pub torn_tail: Option<TornTail>,
    /// Every problem found. Empty means the directory is sound.
    pub problems: Vec<Problem>,
    /// Encrypted files verified without their key (issue 12): their structure (lengths,
    /// CRCs over the ciphertext, LSN sequence, seals, SHA-256 of checkpoint bodies) was
    /// checked, their contents (document hashes, entries) were not. Each names the file and
    /// the key id it needs. Not problems.
    pub contents_not_checked: Vec<Problem>,
}

impl VerifyReport {
    /// True when no problem was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies the data directory at `data` without opening it. Encrypted files are checked for
/// structure only (see [`VerifyReport::contents_not_checked`]; [`verify_dir_with`] takes keys).
pub fn verify_dir(data: &Path) -> Result<VerifyReport> {
    verify_dir_with(data, None)
}

/// Like [`verify_dir`], opening encrypted files with `keys`; files sealed with a key `keys`
/// lacks are checked for structure only.
pub fn verify_dir_with(data: &Path, keys: Option<&crate::crypto::Keyring>) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    // Which database and history the files must belong to (`None`: no record yet, a
    // directory written before ids existed, or a damaged record, reported here).
    let identity = match crate::identity::Identity::load(data) {
        Ok(i) => i,
        Err(crate::Error::Damaged(d)) => {
            report.problems.push(Problem {
                file: d.file,
                offset: Some(d.offset),
                detail: d.detail,
            });
            None
        }
        Err(e) => return Err(e),
    };
    let foreign = |ids: Option<crate::identity::FileIds>, lsn: u64| -> Option<String> {
        let ids = ids?;
        match &identity {
            Some(id) => id
                .refuses(ids, lsn)
                .map(|why| format!("file of another history ({ids}): {why}")),
            // Reported once, on the record (below).
            None => None,
        }
    };
    let log_dir = data.join(LOG_DIR);
    let segments = list_segments(&log_dir).context(|| format!("listing {}", log_dir.display()))?;
    let record = data.join(crate::identity::IDENTITY_FILE);
    if identity.is_none() && !record.exists() {
        if let Some((path, ids)) = segments
            .iter()
            .find_map(|(_, p)| Some((p, crate::log::segment::read_header(p)?.ids?)))
        {
            report.problems.push(Problem {
                file: record.clone(),
                offset: Some(0),
                detail: format!(
                    "identity record is missing, but {} belongs to {ids}",
                    path.display()
                ),
            });
        }
    }
    if let Some(why) = identity
        .as_ref()
        .and_then(|id| crate::recovery::record_disagrees(id, &segments))
    {
        report.problems.push(Problem {
            file: data.join(crate::identity::IDENTITY_FILE),
            offset: Some(0),
            detail: why,
        });
    }
    let mut prev_last: Option<u64> = None;
    let mut newest = None;
    let count = segments.len();
    for (i, (first, path)) in segments.iter().enumerate() {
        let is_last = i + 1 == count;
        report.segments += 1;
        let mut problem = |offset: Option<u64>, detail: String| {
            report.problems.push(Problem {
                file: path.clone(),
                offset,
                detail,
            });
        };
        let bytes = match read_file(path) {
            Ok(b) => b,
            Err(e) => {
                problem(None, format!("cannot read: {e}"));
                continue;
            }
        };
        let mut doc_problems = vec![];
        let mut commits = 0;
        let mut docs = 0;
        let header = crate::log::segment::SegmentHeader::decode(&bytes).ok();
        let keyed = header.is_some_and(|h| {
            crate::crypto::KeyId::from_u32(h.key_id)
                .is_none_or(|id| keys.is_some_and(|k| k.get(id).is_some()))
        });
        if let Some(h) = header.filter(|_| !keyed) {
            report.contents_not_checked.push(Problem {
                file: path.clone(),
                offset: None,
                detail: format!(
                    "encrypted with key id {:08x}, which was not given: structure checked, \
                     contents not",
                    h.key_id
                ),
            });
        }
        let on_commit = |rec: crate::log::record::CommitRecord, offset: u64| {
            commits += 1;
            for op in &rec.ops {
                if let Some(d) = &op.doc {
                    docs += 1;
                    if crate::codec::sha256(&d.value) != d.sha256 {
                        doc_problems.push((
                            offset,
                            format!(
                                "document {}/{} in commit LSN {} does not match its SHA-256",
                                op.collection, op.key, rec.lsn
                            ),
                        ));
                    }
                }
            }
        };
        let scanned = if keyed {
            scan_with(&bytes, keys, on_commit)
        } else {
            scan_structure(&bytes, on_commit).map(|(s, _)| s)
        };
        report.commits += commits;
        report.documents_checked += docs;
        for (offset, detail) in doc_problems {
            problem(Some(offset), detail);
        }
        let s = match scanned {
            Ok(s) => s,
            Err(e) => {
                problem(Some(0), e);
                continue;
            }
        };
        if let Some(why) = foreign(s.header.ids, s.header.first_lsn) {
            problem(Some(0), why);
        }
        if s.header.first_lsn != *first {
            problem(
                Some(0),
                format!(
                    "header says first LSN {} but the file name says {first}",
                    s.header.first_lsn
                ),
            );
        }
        if let Some(prev) = prev_last {
            if s.header.first_lsn != prev + 1 {
                problem(Some(0), format!("gap in the log: previous segment ends at LSN {prev}, this one starts at {}", s.header.first_lsn));
            }
        }
        prev_last = Some(s.last_lsn);
        if is_last && !matches!(s.end, ScanEnd::Damaged { .. }) {
            newest = Some((s.header.first_lsn, s.last_lsn, s.valid_len));
        }
        let range = report
            .log_lsn_range
            .get_or_insert((s.header.first_lsn, s.last_lsn));
        range.1 = s.last_lsn;
        match s.end {
            ScanEnd::Clean => {}
            ScanEnd::TornTail {
                offset,
                bytes: n,
                unsynced,
                ..
            } if is_last => {
                report.torn_tail = Some(TornTail {
                    file: path.clone(),
                    offset,
                    bytes: n,
                    unsynced,
                });
            }
            ScanEnd::TornTail { offset, error, .. } => problem(
                Some(offset),
                format!("{error}, in a segment that is not the last one"),
            ),
            ScanEnd::Damaged { offset, detail } => problem(Some(offset), detail),
        }
        let seal_path = log_dir.join(seal_file_name(*first));
        match read_file(&seal_path) {
            Ok(seal_bytes) => {
                report.seals += 1;
                let mut seal_problem = |detail: String| {
                    report.problems.push(Problem {
                        file: seal_path.clone(),
                        offset: None,
                        detail,
                    });
                };
                match Seal::decode(&seal_bytes) {
                    Err(e) => seal_problem(e),
                    Ok(seal) => {
                        if seal.length != bytes.len() as u64 {
                            seal_problem(format!(
                                "seal says {} bytes, segment has {}",
                                seal.length,
                                bytes.len()
                            ));
                        } else if crate::codec::sha256(&bytes) != seal.sha256 {
                            seal_problem(
                                "segment bytes do not match the SHA-256 in its seal".into(),
                            );
                        }
                        if seal.last_lsn != s.last_lsn || seal.first_lsn != *first {
                            seal_problem(format!(
                                "seal covers LSNs {}..={}, segment holds {}..={}",
                                seal.first_lsn, seal.last_lsn, first, s.last_lsn
                            ));
                        }
                    }
                }
            }
            Err(_) if !is_last => report.problems.push(Problem {
                file: path.clone(),
                offset: None,
                detail: "segment is not the last one but has no seal".into(),
            }),
            Err(_) => {}
        }
    }

    let ckpt_dir = data.join(CHECKPOINT_DIR);
    let checkpoints =
        list_checkpoints(&ckpt_dir).context(|| format!("listing {}", ckpt_dir.display()))?;
    let newest_ckpt = checkpoints.iter().find_map(|(lsn, path)| {
        let bytes = read_file(path).ok()?;
        let d = checkpoint::decode_with(&bytes, keys);
        let sound = d.problems.len() == usize::from(d.key_missing.is_some());
        sound.then_some(*lsn)
    });
    if let Some((file, offset, detail)) =
        missing_log(&log_dir, &segments, newest, newest_ckpt.unwrap_or(0))
    {
        report.problems.push(Problem {
            file,
            offset: Some(offset),
            detail,
        });
    }
    match crate::backup::Slots::load(data) {
        Err(crate::Error::Damaged(d)) => report.problems.push(Problem {
            file: d.file,
            offset: Some(d.offset),
            detail: d.detail,
        }),
        Ok(slots) => {
            // A slot of another database keeps this directory's log for a repository that
            // would refuse it (a slot file copied from another directory).
            for s in &slots.repos {
                if let (Some(d), Some(id)) = (s.database_id, &identity) {
                    if d != id.database_id {
                        report.problems.push(Problem {
                            file: data.join(crate::backup::SLOTS_FILE),
                            offset: None,
                            detail: format!(
                                "slot for repository {} ({}) is of database {d}, but this is database {}",
                                s.repository_id,
                                s.path.display(),
                                id.database_id
                            ),
                        });
                    }
                }
            }
        }
        Err(_) => {}
    }
    // The newest sound checkpoint's state: what open would start from, so what the stream
    // files must hold.
    let mut stream_state: Option<crate::state::State> = None;
    let mut state_key_missing = None;
    for (lsn, path) in &checkpoints {
        report.checkpoints += 1;
        let bytes = match read_file(path) {
            Ok(b) => b,
            Err(e) => {
                report.problems.push(Problem {
                    file: path.clone(),
                    offset: None,
                    detail: format!("cannot read: {e}"),
                });
                continue;
            }
        };
        let mut decoded = checkpoint::decode_with(&bytes, keys);
        report.documents_checked += decoded.documents_checked;
        if let Some(id) = decoded.key_missing {
            // The first problem says the key is missing; the rest are structural.
            if !decoded.problems.is_empty() {
                decoded.problems.remove(0);
            }
            report.contents_not_checked.push(Problem {
                file: path.clone(),
                offset: None,
                detail: format!(
                    "encrypted with key id {id:08x}, which was not given: structure checked, \
                     contents not"
                ),
            });
        }
        if let Some(why) = foreign(decoded.ids, decoded.header.map_or(*lsn, |h| h.lsn)) {
            report.problems.push(Problem {
                file: path.clone(),
                offset: Some(0),
                detail: why,
            });
        }
        if stream_state.is_none() && state_key_missing.is_none() {
            state_key_missing = decoded.key_missing;
        }
        if stream_state.is_none() && decoded.problems.is_empty() && decoded.key_missing.is_none() {
            stream_state = Some(std::mem::take(&mut decoded.state));
        }
        for p in decoded.problems {
            report.problems.push(Problem {
                file: path.clone(),
                offset: Some(p.offset),
                detail: p.detail,
            });
        }
        if let Some(h) = decoded.header {
            if h.lsn != *lsn {
                report.problems.push(Problem {
                    file: path.clone(),
                    offset: Some(16),
                    detail: format!("header says LSN {}, file name says {lsn}", h.lsn),
                });
            }
        }
    }
    // Every blob file hashes to its name; a sealed one authenticates as the blob its name
    // says (with its key), or has a sound structure (without).
    let blob_root = data.join(crate::blob::BLOB_DIR);
    let faults = crate::io::Faults::none();
    for (sha, path) in crate::blob::list_blob_files(&blob_root, &faults)? {
        report.blobs_checked += 1;
        match crate::blob::sealed::check_file(&path, &sha, keys, &faults) {
            Ok(crate::blob::sealed::FileForm::Sealed(c)) if c.content.is_none() => {
                report.contents_not_checked.push(Problem {
                    file: path,
                    offset: None,
                    detail: format!(
                        "sealed blob file checked for structure only: it needs key id {}",
                        c.key_id
                    ),
                })
            }
            Ok(_) => {}
            Err(e) => report.problems.push(Problem {
                file: path,
                offset: None,
                detail: format!("blob file: {e}"),
            }),
        }
    }
    let stream_root = data.join(crate::stream::files::STREAMS_DIR);
    if let (None, Some(id)) = (&stream_state, state_key_missing) {
        if std::fs::read_dir(&stream_root).is_ok_and(|mut d| d.next().is_some()) {
            report.contents_not_checked.push(Problem {
                file: stream_root,
                offset: None,
                detail: format!(
                    "stream files not checked: what they must hold is in the newest checkpoint, \
                     encrypted with key id {id:08x}, which was not given"
                ),
            });
        }
    } else if let Some(state) = &stream_state {
        let check = crate::stream::files::verify_files(data, state, keys);
        report.stream_entries_checked = check.entries;
        for (file, offset, detail) in check.problems {
            report.problems.push(Problem {
                file,
                offset,
                detail,
            });
        }
        for (file, key) in check.structure_only {
            report.contents_not_checked.push(Problem {
                file,
                offset: None,
                detail: format!(
                    "sealed stream file checked for structure only: it needs key id {:08x}",
                    key.get()
                ),
            });
        }
    }
    // Replay from the oldest checkpoint (or from LSN 1) must be possible.
    let needed_from = checkpoints.last().map_or(1, |c| c.0 + 1);
    if let Some((first, last)) = report.log_lsn_range {
        if first > needed_from && last >= first {
            report.problems.push(Problem {
                file: log_dir.clone(),
                offset: None,
                detail: format!("log starts at LSN {first} but the oldest checkpoint needs it from LSN {needed_from}"),
            });
        }
    }
    Ok(report)
}

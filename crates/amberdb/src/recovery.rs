//! Opening a data directory: pick the newest sound checkpoint, replay the log after it, cut a
//! torn tail, and refuse (naming file and offset) on any other damage.
//!
//! Rules, in order:
//! - A checkpoint that fails its checks is skipped for the next older one (or for an empty
//!   state when the log still starts at LSN 1), but only if replay then reaches at least the
//!   LSN the damaged checkpoint claimed: falling back must lose nothing. Skipped checkpoints
//!   are moved to `DATA/quarantine/`, never deleted.
//! - In the last segment, invalid bytes with nothing valid after them are a torn tail (an
//!   interrupted write): they are cut and logged.
//! - Anything else (a bad frame followed by valid ones, an incomplete non-last segment, a gap
//!   in LSNs, an unreadable header) refuses the open with `Error::Damaged`.

use std::path::{Path, PathBuf};

use crate::checkpoint::{self, list_checkpoints};
use crate::error::{Damage, Error, IoContext, Result};
use crate::identity::{Identity, IDENTITY_FILE};
use crate::io::{self, sync_dir, Faults};
use crate::log::replay::Replayer;
use crate::log::segment::{
    list_segments, missing_log, scan_structure, seal_file_name, ScanEnd, Seal, LOG_FORMAT_VERSION,
};
use crate::log::{read_file, write_seal, ActiveSegment, SealedSegment};
use crate::state::State;

/// Subdirectory holding log segments.
pub const LOG_DIR: &str = "log";
/// Subdirectory holding checkpoints.
pub const CHECKPOINT_DIR: &str = "checkpoints";
/// Subdirectory where damaged files are moved.
pub const QUARANTINE_DIR: &str = "quarantine";

/// A torn tail that recovery cut.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TornTail {
    /// The segment.
    pub file: PathBuf,
    /// Where it was cut.
    pub offset: u64,
    /// How many bytes were removed.
    pub bytes: u64,
    /// LSNs (first, last) of valid frames after the cut that were written after the last
    /// completed sync (log format 2 records this in every frame), discarded with the tail:
    /// never `Sync`-acknowledged, at most `Buffered` commits a power loss may take.
    pub unsynced: Option<(u64, u64)>,
}

/// What `open` did to get the database back.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RecoveryReport {
    /// The checkpoint loaded, if any.
    pub checkpoint: Option<PathBuf>,
    /// Its LSN (0 when starting from an empty state).
    pub checkpoint_lsn: u64,
    /// Commits replayed from the log after it.
    pub commits_replayed: u64,
    /// LSN reached.
    pub lsn: u64,
    /// The torn tail that was cut, if there was one.
    pub torn_tail: Option<TornTail>,
    /// Damaged checkpoints that were skipped and moved to quarantine (old path, new path).
    pub quarantined: Vec<(PathBuf, PathBuf)>,
    /// Set when automatic recovery rebuilt the directory.
    pub auto: Option<AutoRecovery>,
    /// Set when automatic recovery rebuilt a damaged `archive.json` (slots).
    pub slots_rebuilt: Option<SlotsRebuilt>,
}

/// What automatic recovery did about a damaged slot file (`DATA/archive.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SlotsRebuilt {
    /// Why the file was unusable.
    pub damage: String,
    /// Where the damaged file was copied before it was replaced.
    pub quarantined: PathBuf,
    /// Repository ids of the rebuilt slots (the recovery repository, if it opens). Any other
    /// repository the directory archived to is no longer attached: back up to it again.
    pub repos: Vec<String>,
}

/// What automatic recovery (`RecoveryMode::Auto`) did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AutoRecovery {
    /// The damage that triggered it.
    pub damage: String,
    /// Where the state came from.
    pub source: String,
    /// Id of the backup the state was rebuilt from; `None` when local data reached further.
    #[serde(default)]
    pub backup: Option<String>,
    /// LSN reached.
    pub lsn: u64,
    /// Commits replayed on top of the base (checkpoint or backup).
    pub commits_replayed: u64,
    /// Documents restored.
    pub documents: u64,
    /// LSNs known to have existed that could not be recovered (first, last), if any.
    pub lost: Option<(u64, u64)>,
    /// Where the damaged files were moved.
    pub quarantine: PathBuf,
    /// The files moved there (the data directory's `streams/` as one directory).
    pub quarantined_files: Vec<PathBuf>,
    /// Damaged frames of commits the base already held (a checkpoint covers them) that replay
    /// stepped over to reach the intact commits after them: (segment, offset, what was
    /// wrong). No commit is lost by this; those commits' log history is only in quarantine.
    pub stepped_over: Vec<(PathBuf, u64, String)>,
    /// The new timeline started because commits were lost (`None` when nothing was lost:
    /// the history goes on). Its parent and branch LSN are in `DATA/identity.json`.
    #[serde(default)]
    pub new_timeline: Option<crate::identity::TimelineId>,
}

pub(crate) struct Recovered {
    pub state: State,
    /// The directory's database id, timeline and history (`DATA/identity.json`).
    pub identity: Identity,
    pub active: Option<ActiveSegment>,
    pub sealed: Vec<SealedSegment>,
    pub report: RecoveryReport,
    /// The stream files, cut to the checkpoint and written again by replay.
    pub streams: crate::stream::files::StreamFiles,
}

fn damaged(file: &Path, offset: u64, detail: impl Into<String>, dir: &Path) -> Error {
    Error::Damaged(Damage {
        file: file.to_owned(),
        offset,
        detail: detail.into(),
        hint: format!(
            "Nothing was changed. Run `amberdb verify --data {}` for a full report, then follow \
             \"Damaged data directory\" in docs/OPERATIONS.md",
            dir.display()
        ),
    })
}

/// Removes temp files left by an interrupted checkpoint or seal write.
fn remove_temp_files(dir: &Path) -> Result<()> {
    for path in
        io::read_dir(dir, &Faults::none()).context(|| format!("reading {}", dir.display()))?
    {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') && name.ends_with(".tmp") {
            io::remove_file(&path, &Faults::none())
                .context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

/// Moves `file` into `DATA/quarantine/<time>/`, returning its new path.
pub(crate) fn quarantine(data: &Path, file: &Path) -> Result<PathBuf> {
    let dir = data
        .join(QUARANTINE_DIR)
        .join(crate::document::now_micros().to_string());
    io::create_dir_all(&dir, &Faults::none()).context(|| format!("creating {}", dir.display()))?;
    let to = dir.join(file.file_name().unwrap_or_default());
    io::rename(file, &to, &Faults::none())
        .context(|| format!("moving {} to {}", file.display(), to.display()))?;
    // The caller syncs the directory the file left; this one holds its new name.
    sync_dir(&dir, &Faults::none()).context(|| format!("syncing {}", dir.display()))?;
    Ok(to)
}

/// `tombstone_retention_us` is the retention a replay from LSN 1 prunes tombstones with (a
/// checkpoint carries its own), so replay prunes where the live database did.
pub(crate) fn recover(
    data: &Path,
    faults: &Faults,
    tombstone_retention_us: u64,
    keys: Option<&crate::crypto::Keyring>,
) -> Result<Recovered> {
    let marker = data.join(crate::backup::RECOVERY_MARKER);
    if marker.exists() {
        return Err(Error::Damaged(Damage {
            file: marker,
            offset: 0,
            detail: format!(
                "an automatic recovery was interrupted: the recovered state is staged in {}",
                data.join(crate::backup::STAGING_DIR).display()
            ),
            hint: "Open with `recovery.mode = auto` (the same repository) to finish it; the \
                   original files are in the quarantine directory the marker names"
                .into(),
        }));
    }
    let log_dir = data.join(LOG_DIR);
    let ckpt_dir = data.join(CHECKPOINT_DIR);
    for d in [&log_dir, &ckpt_dir] {
        io::create_dir_all(d, faults).context(|| format!("creating {}", d.display()))?;
        remove_temp_files(d)?;
    }
    let segments = list_segments(&log_dir).context(|| format!("listing {}", log_dir.display()))?;
    let checkpoints =
        list_checkpoints(&ckpt_dir).context(|| format!("listing {}", ckpt_dir.display()))?;
    let claimed_lsn = checkpoints.first().map_or(0, |c| c.0);
    let identity = load_or_assign_identity(data, &segments, &checkpoints, faults)?;

    let mut report = RecoveryReport::default();
    let mut skipped: Vec<(PathBuf, String)> = vec![];
    let mut base: Option<(State, Option<PathBuf>)> = None;
    for (named_lsn, path) in &checkpoints {
        // An unreadable checkpoint (EIO) is damage like a failed checksum: skip it.
        let decoded = match checkpoint::read_for_open(path, keys) {
            Ok(decoded) => decoded,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "skipping unreadable checkpoint");
                skipped.push((path.clone(), format!("unreadable: {e}")));
                continue;
            }
        };
        let foreign = decoded
            .ids
            .and_then(|ids| Some((ids, identity.refuses(ids, decoded.state.lsn)?)));
        match decoded.problems.first() {
            // A checkpoint under another LSN's name (copied or renamed) is damage, as `verify`
            // says: the name is what the log cleanup and the newest-segment check trust.
            None if decoded.state.lsn != *named_lsn => {
                let why = format!(
                    "header says LSN {}, file name says {named_lsn}",
                    decoded.state.lsn
                );
                tracing::warn!(file = %path.display(), problem = %why, "skipping misnamed checkpoint");
                skipped.push((path.clone(), why));
            }
            None if foreign.is_some() => {
                let Some((ids, why)) = foreign else { continue };
                tracing::warn!(file = %path.display(), %ids, %why, "skipping a checkpoint of another history");
                skipped.push((
                    path.clone(),
                    format!(
                        "checkpoint of another history ({ids}, this directory is {}): {why}",
                        identity.ids()
                    ),
                ));
            }
            None => {
                base = Some((decoded.state, Some(path.clone())));
                break;
            }
            Some(p) => {
                tracing::warn!(file = %path.display(), offset = p.offset, problem = %p.detail, "skipping damaged checkpoint");
                skipped.push((path.clone(), format!("{} (offset {})", p.detail, p.offset)));
            }
        }
    }
    let (mut state, ckpt_path) = match base {
        Some(b) => b,
        None if segments.first().is_none_or(|s| s.0 == 1) => {
            (State::empty(tombstone_retention_us), None)
        }
        None => {
            // Name a real file: the damaged checkpoint, or (when there is none) the oldest
            // segment, whose first LSN shows what is missing.
            let (file, detail) = match (skipped.first(), segments.first()) {
                (Some((file, why)), _) => (
                    file.clone(),
                    format!("no sound checkpoint and the log no longer starts at LSN 1: {why}"),
                ),
                (None, Some((first, path))) => (
                    path.clone(),
                    format!("no checkpoint, and the oldest log segment starts at LSN {first}, not 1: the log before it is missing"),
                ),
                (None, None) => (ckpt_dir.clone(), "no sound checkpoint and no log".into()),
            };
            return Err(damaged(&file, 0, detail, data));
        }
    };
    report.checkpoint_lsn = state.lsn;
    report.checkpoint = ckpt_path;

    // Replay every segment that may hold LSNs after the checkpoint.
    let mut sealed = vec![];
    let mut active = None;
    let start = state.lsn + 1;
    let first_needed = segments
        .iter()
        .rposition(|(first, _)| *first <= start)
        .unwrap_or(0);
    if let Some((first, path)) = segments.get(first_needed) {
        if *first > start {
            return Err(damaged(path, 0, format!("log starts at LSN {first} but replay must start at LSN {start}: segments are missing"), data));
        }
    }
    for (first, path) in segments.iter().take(first_needed) {
        sealed.push(existing_seal(&log_dir, *first, path, faults)?);
    }
    let count = segments.len();
    if segments.is_empty() {
        if let Some((file, offset, why)) = missing_log(&log_dir, &segments, None, state.lsn) {
            return Err(damaged(&file, offset, why, data));
        }
    }
    // Stream files are cut back to the checkpoint's watermarks; replay writes the rest again.
    let streams = crate::stream::files::StreamFiles::open(
        data,
        faults,
        crate::stream::files::DEFAULT_STREAM_SEGMENT_BYTES,
        &mut state,
        keys,
    )?;
    let mut replayer = Replayer::new(&mut state, Some(&identity)).with_keys(keys);
    for (i, (first, path)) in segments.iter().enumerate().skip(first_needed) {
        let is_last = i + 1 == count;
        let bytes = read_segment(path, data)?;
        let mut stream_error = None;
        let r = replayer
            .segment(&bytes, *first, None, false, &mut |rec| {
                streams.replay_record(rec, &mut stream_error)
            })
            .map_err(|e| damaged(path, 0, e, data))?;
        if let Some(e) = stream_error {
            return Err(e);
        }
        report.commits_replayed += r.applied;
        // Commit time of the segment's last frame, replayed or not (seals and retention use it).
        let last_ts = r.last_ts;
        let s = r.scan;
        // (A damaged newest segment is reported as damage below, not as a missing log.)
        if is_last && !matches!(s.end, ScanEnd::Damaged { .. }) {
            let newest = Some((s.header.first_lsn, s.last_lsn, s.valid_len));
            if let Some((file, offset, why)) =
                missing_log(&log_dir, &segments, newest, report.checkpoint_lsn)
            {
                return Err(damaged(&file, offset, why, data));
            }
        }
        match &s.end {
            ScanEnd::Clean => {}
            ScanEnd::Damaged { offset, detail } => {
                return Err(damaged(path, *offset, detail.clone(), data))
            }
            ScanEnd::TornTail {
                offset,
                bytes: n,
                error,
                unsynced,
            } if is_last => {
                tracing::warn!(file = %path.display(), offset, bytes = n, %error, ?unsynced, "cutting torn tail of the commit log");
                let mut f = io::open_write(path, faults)
                    .context(|| format!("opening {}", path.display()))?;
                f.set_len(*offset)
                    .context(|| format!("truncating {}", path.display()))?;
                f.sync_all()
                    .context(|| format!("syncing {}", path.display()))?;
                report.torn_tail = Some(TornTail {
                    file: path.clone(),
                    offset: *offset,
                    bytes: *n,
                    unsynced: *unsynced,
                });
            }
            ScanEnd::TornTail { offset, error, .. } => {
                return Err(damaged(
                    path,
                    *offset,
                    format!("{error} in a segment that is not the last one"),
                    data,
                ));
            }
        }
        let valid = bytes.get(..s.valid_len as usize).unwrap_or_default();
        let seal_path = log_dir.join(seal_file_name(*first));
        // A segment of an older log format is never appended to (its frames have another
        // layout): seal it, and the writer starts a new segment.
        // Nor is a segment of an earlier timeline: new commits carry the current one.
        // Nor, with encryption, any segment: its cut tail may have left sealed bytes at the
        // offsets the next commits would take (the same file key and nonce for other bytes),
        // so the writer starts a new segment with a new salt (`docs/ENCRYPTION.md`).
        let current_format = s.header.format_version == LOG_FORMAT_VERSION
            && s.header.ids == Some(identity.ids())
            && s.header.key_id == 0
            && keys.is_none();
        if is_last && current_format && !seal_path.exists() {
            active = Some(ActiveSegment {
                first_lsn: *first,
                path: path.clone(),
                bytes: valid.to_vec(),
                last_lsn: s.last_lsn,
                last_commit_ts: last_ts,
            });
        } else if seal_path.exists() {
            sealed.push(existing_seal(&log_dir, *first, path, faults)?);
        } else if is_last && s.last_lsn < *first && replayer.lsn() + 1 == *first {
            // An empty segment of an older format: nothing to keep or seal. The writer's new
            // segment starts at the same LSN and replaces it atomically (sealing it would
            // leave a seal of the old, empty file next to the new one).
            tracing::info!(file = %path.display(), "replacing an empty segment of an older log format");
        } else {
            let seal = write_seal(&log_dir, path, valid, *first, s.last_lsn, last_ts, faults)
                .context(|| format!("sealing {}", path.display()))?;
            sealed.push(SealedSegment {
                path: path.clone(),
                seal,
            });
        }
    }
    if state.lsn < claimed_lsn {
        // Never an empty file name: with nothing skipped, the newest checkpoint is the claim.
        let (file, why) = skipped.first().cloned().unwrap_or_else(|| {
            let newest = checkpoints
                .first()
                .map_or(ckpt_dir.clone(), |c| c.1.clone());
            (
                newest,
                format!("the newest checkpoint claims LSN {claimed_lsn}"),
            )
        });
        return Err(damaged(
            &file,
            0,
            format!("{why}; falling back would lose commits {}..={claimed_lsn} because the log only reaches LSN {}", state.lsn + 1, state.lsn),
            data,
        ));
    }
    // The checkpoint may be ahead of the active segment (its log was already sealed and
    // removed); then the next commit must start a new segment, so seal the old one.
    if let Some(a) = &active {
        if a.last_lsn < state.lsn {
            let seal = write_seal(
                &log_dir,
                &a.path,
                &a.bytes,
                a.first_lsn,
                a.last_lsn,
                a.last_commit_ts,
                faults,
            )
            .context(|| format!("sealing {}", a.path.display()))?;
            sealed.push(SealedSegment {
                path: a.path.clone(),
                seal,
            });
            active = None;
        }
    }
    for (path, _) in skipped {
        let to = quarantine(data, &path)?;
        tracing::warn!(from = %path.display(), to = %to.display(), "moved damaged checkpoint to quarantine");
        report.quarantined.push((path, to));
    }
    sync_dir(&ckpt_dir, faults).context(|| format!("syncing {}", ckpt_dir.display()))?;
    report.lsn = state.lsn;
    Ok(Recovered {
        state,
        identity,
        active,
        sealed,
        report,
        streams,
    })
}

/// Reads `DATA/identity.json`, or gives a directory without one its ids: a new database (no
/// files yet), or a directory written before ids existed (every file without ids), written
/// and synced before anything else happens. A directory whose files carry ids but whose
/// record is missing is refused: those ids and the history cannot be guessed.
fn load_or_assign_identity(
    data: &Path,
    segments: &[(u64, PathBuf)],
    checkpoints: &[(u64, PathBuf)],
    faults: &Faults,
) -> Result<Identity> {
    let record = data.join(IDENTITY_FILE);
    if let Some(id) = Identity::load(data)? {
        // The record itself was swapped (or edited) when the two newest segments both belong
        // to another database; one foreign segment is that segment's problem, found by replay.
        if let Some(why) = record_disagrees(&id, segments) {
            return Err(Error::Damaged(Damage {
                file: record,
                offset: 0,
                detail: why,
                hint: "Nothing was changed. Copy the matching `wal/<timeline>.history` from a \
                       repository this directory archives to over it, or restore from a backup"
                    .into(),
            }));
        }
        return Ok(id);
    }
    for (_, path) in segments {
        let ids = crate::log::segment::read_header(path).and_then(|h| h.ids);
        if let Some(ids) = ids {
            return Err(missing_identity(&record, path, ids));
        }
    }
    for (_, path) in checkpoints {
        if let Some(ids) = read_file(path)
            .ok()
            .and_then(|b| checkpoint::decode_with(&b, None).ids)
        {
            return Err(missing_identity(&record, path, ids));
        }
    }
    let reason = if segments.is_empty() && checkpoints.is_empty() {
        "create"
    } else {
        "assigned on upgrade to log format 3 (files written before ids existed)"
    };
    let id = Identity::create(reason);
    id.save(data, faults)?;
    tracing::info!(database_id = %id.database_id, timeline = %id.timeline, reason, "assigned database and timeline ids");
    Ok(id)
}

/// Why the identity record `id` is not this directory's: the two newest segments both carry
/// another database id.
pub(crate) fn record_disagrees(id: &Identity, segments: &[(u64, PathBuf)]) -> Option<String> {
    let newest: Vec<(PathBuf, crate::identity::FileIds)> = segments
        .iter()
        .rev()
        .take(2)
        .filter_map(|(_, p)| Some((p.clone(), crate::log::segment::read_header(p)?.ids?)))
        .collect();
    let foreign = newest.len() == 2 && newest.iter().all(|(_, i)| i.database_id != id.database_id);
    foreign.then(|| {
        format!(
            "identity record names database {}, but the newest segments ({}) belong to database {}",
            id.database_id,
            newest
                .iter()
                .map(|(p, _)| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            newest
                .first()
                .map_or(String::new(), |(_, i)| i.database_id.to_string())
        )
    })
}

fn missing_identity(record: &Path, file: &Path, ids: crate::identity::FileIds) -> Error {
    Error::Damaged(Damage {
        file: record.to_owned(),
        offset: 0,
        detail: format!(
            "identity record is missing, but {} belongs to {ids}",
            file.display()
        ),
        hint: format!(
            "Nothing was changed. Copy `wal/{}.history` from a repository this directory \
             archives to as {}, or restore from a backup",
            ids.timeline,
            record.display()
        ),
    })
}

/// Reads a segment; an unreadable one (EIO) is damage at offset 0, so the older-checkpoint
/// rules and automatic recovery treat it like any other damaged segment.
fn read_segment(path: &Path, dir: &Path) -> Result<Vec<u8>> {
    read_file(path).map_err(|e| damaged(path, 0, format!("unreadable: {e}"), dir))
}

/// Reads a sealed segment's seal, writing one if the writer stopped before it could.
fn existing_seal(
    log_dir: &Path,
    first: u64,
    path: &Path,
    faults: &Faults,
) -> Result<SealedSegment> {
    let seal_path = log_dir.join(seal_file_name(first));
    if let Ok(bytes) = read_file(&seal_path) {
        if let Ok(seal) = Seal::decode(&bytes) {
            return Ok(SealedSegment {
                path: path.to_owned(),
                seal,
            });
        }
    }
    // No usable seal: derive one from a full scan (verify reports a seal that was damaged).
    let bytes = read_segment(path, log_dir)?;
    let mut last_ts = 0;
    let (s, _) = scan_structure(&bytes, |rec, _| last_ts = rec.commit_ts)
        .map_err(|e| damaged(path, 0, e, log_dir))?;
    if s.end != ScanEnd::Clean {
        // Older than the checkpoint in use, so recovery does not need it; leave it for verify.
        tracing::warn!(file = %path.display(), "sealed segment before the checkpoint is damaged");
    }
    let valid = bytes.get(..s.valid_len as usize).unwrap_or_default();
    let seal = Seal {
        first_lsn: first,
        last_lsn: s.last_lsn,
        length: valid.len() as u64,
        last_commit_ts: last_ts,
        sha256: crate::codec::sha256(valid),
    };
    if seal_path.exists() {
        // Keep the damaged seal for inspection instead of overwriting it.
        return Ok(SealedSegment {
            path: path.to_owned(),
            seal,
        });
    }
    let seal = write_seal(log_dir, path, valid, first, s.last_lsn, last_ts, faults)
        .context(|| format!("sealing {}", path.display()))?;
    Ok(SealedSegment {
        path: path.to_owned(),
        seal,
    })
}

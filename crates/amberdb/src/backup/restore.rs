//! Restore and point-in-time recovery: pick the newest backup at or before the target, replay
//! the archived log up to it, and write the result into a new directory, atomically.
//!
//! Timelines: a restore follows one history, the target timeline's (by default the newest
//! timeline the repository holds a history of, `wal/<timeline>.history`; for a restore of one
//! backup by id, that backup's own). Backups and archived segments outside that history are
//! passed over, and a parent timeline's segments are replayed only up to the branch LSN, so
//! commits a restore or a lossy recovery undid never come back. The restored directory is
//! the same database on a new timeline branching at the restored LSN.
//!
//! Nothing is written to the target unless the target is reachable. The new directory is
//! assembled under a temporary sibling name holding a `RESTORE_IN_PROGRESS` marker (which
//! `Db::open` refuses), and renamed into place only when complete, so an interrupted restore
//! never leaves a directory that opens as a database.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::Digest;

use super::{
    point, sha256_hex, ArchivedSegment, BackupManifest, BackupRepo, Progress, SNAPSHOT_FILE,
};
use crate::checkpoint;
use crate::document::format_micros;
use crate::error::{Error, IoContext, Result};
use crate::identity::{DatabaseId, FileIds, Identity, TimelineId};
use crate::io::{self, sync_dir, Faults};
use crate::log::record::CommitRecord;
use crate::log::replay::Replayer;
use crate::log::segment::ScanEnd;
use crate::recovery::{CHECKPOINT_DIR, LOG_DIR};
use crate::state::State;

/// Marker file present while a restore assembles a directory.
pub const RESTORE_MARKER: &str = "RESTORE_IN_PROGRESS";

/// What to restore to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreTarget {
    /// The newest backup plus every archived commit after it.
    Latest,
    /// Exactly one backup.
    Backup(String),
    /// The state right after this commit (or right before it, when exclusive).
    Lsn(u64),
    /// The state at this time, microseconds since the epoch: every commit at or before it (or
    /// strictly before it, when exclusive).
    Time(u64),
}

impl fmt::Display for RestoreTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreTarget::Latest => f.write_str("the latest archived state"),
            RestoreTarget::Backup(id) => write!(f, "backup {id}"),
            RestoreTarget::Lsn(n) => write!(f, "LSN {n}"),
            RestoreTarget::Time(t) => write!(f, "{}", format_micros(*t)),
        }
    }
}

/// A backup a restore passed over, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedBackup {
    /// Backup id.
    pub id: String,
    /// Why it was not used.
    pub reason: String,
}

/// What a restore will do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestorePlan {
    /// The target, as text.
    pub target: String,
    /// Whether the target commit itself is excluded.
    pub exclusive: bool,
    /// The backup it starts from.
    pub backup: BackupManifest,
    /// Archived segments it replays, in order.
    pub segments: Vec<ArchivedSegment>,
    /// First LSN replayed (backup LSN + 1).
    pub replay_from_lsn: u64,
    /// Last LSN replayed, when known before replay (LSN and latest targets).
    pub replay_to_lsn: Option<u64>,
    /// Backups that are newer than the one used (and not after the target) or damaged, and
    /// why each was not used.
    pub skipped: Vec<SkippedBackup>,
    /// What the operator should know about the result, e.g. that the archive ends before
    /// where a backup recorded it reaching, so `--latest` is older than expected.
    pub notes: Vec<String>,
    /// The history replayed: the target timeline and its ancestry (`None` for a repository
    /// written before ids existed).
    pub history: Option<Identity>,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    /// The new data directory.
    pub into: PathBuf,
    /// The target, as text.
    pub target: String,
    /// Source backup id.
    pub backup_id: String,
    /// Source backup LSN.
    pub backup_lsn: u64,
    /// Archived segments replayed.
    pub segments_replayed: u64,
    /// LSN range replayed, if any.
    pub replayed_lsn_range: Option<(u64, u64)>,
    /// Commits replayed.
    pub commits_replayed: u64,
    /// LSN reached.
    pub lsn: u64,
    /// Commit time reached, RFC 3339.
    pub commit_time: String,
    /// Documents per collection.
    pub documents: BTreeMap<String, u64>,
    /// Whether `verify` of the new directory was clean.
    pub verified: bool,
    /// Backups passed over, and why (see [`RestorePlan::skipped`]).
    pub skipped: Vec<SkippedBackup>,
    /// See [`RestorePlan::notes`].
    pub notes: Vec<String>,
    /// The restored database's id (the backup's database).
    pub database_id: DatabaseId,
    /// The restored directory's new timeline (its history is in `DATA/identity.json`).
    pub timeline: TimelineId,
}

/// Why a chain of archived segments ends.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ChainEnd {
    /// At the end of the archive.
    End,
    /// Before a gap: this LSN is missing, later segments exist.
    Gap(u64),
    /// Before a segment that cannot be used (its seal is damaged or does not match): its
    /// file name and why.
    Damaged(String, String),
}

impl ChainEnd {
    fn why(&self) -> Option<String> {
        match self {
            ChainEnd::End => None,
            ChainEnd::Gap(g) => Some(format!("archived segment with LSN {g} is missing (a gap)")),
            ChainEnd::Damaged(name, why) => {
                Some(format!("archived segment {name} cannot be used: {why}"))
            }
        }
    }
}

/// The ids an archived segment or backup counts with in `history`: its own, or (written
/// before ids existed) the history's first timeline.
fn ids_in(history: &Identity, ids: Option<FileIds>) -> FileIds {
    ids.unwrap_or(FileIds {
        database_id: history.database_id,
        timeline: history
            .history
            .first()
            .map_or(history.timeline, |e| e.timeline),
    })
}

/// Whether a file with `ids` holding LSNs from `lsn` is part of `history` (always, without
/// one).
pub(crate) fn in_history(history: Option<&Identity>, ids: Option<FileIds>, lsn: u64) -> bool {
    history.is_none_or(|h| h.refuses(ids_in(h, ids), lsn).is_none())
}

/// The last LSN of `seg` that `history` uses (the branch LSN when its timeline was left).
pub(crate) fn used_to(history: Option<&Identity>, seg: &ArchivedSegment) -> u64 {
    let hi = history.and_then(|h| h.range_of(ids_in(h, seg.ids()).timeline)?.hi);
    hi.map_or(seg.last_lsn, |hi| hi.min(seg.last_lsn))
}

/// The history a restore follows (see the module docs): `None` for a repository without
/// timeline histories (written before ids existed).
fn target_history(
    repo: &BackupRepo,
    backups: &[BackupManifest],
    target: &RestoreTarget,
) -> Result<Option<Identity>> {
    let histories = repo.histories()?;
    if let RestoreTarget::Backup(id) = target {
        let own = backups
            .iter()
            .find(|b| &b.id == id)
            .and_then(|b| b.timeline)
            .and_then(|t| histories.iter().find(|h| h.timeline == t));
        if let Some(h) = own {
            return Ok(Some(h.clone()));
        }
    }
    Ok(histories.last().cloned())
}

/// The furthest LSN reachable from `backup` through contiguous, usable archived segments
/// (all of `history`), the segments of that chain, and why it ends. `damaged` holds
/// segments (by file name) whose seal does not check out.
fn chain<'a>(
    backup: &BackupManifest,
    archive: &'a [ArchivedSegment],
    damaged: &BTreeMap<String, String>,
    history: Option<&Identity>,
) -> (u64, Vec<&'a ArchivedSegment>, ChainEnd) {
    let mut reach = backup.lsn;
    let mut used = vec![];
    for seg in archive.iter().filter(|s| used_to(history, s) > backup.lsn) {
        // Exact continuation: the first segment covers the LSN after the backup, each later
        // one starts right after the previous one (an overlap means another history).
        let continues = if used.is_empty() {
            seg.first_lsn <= reach + 1
        } else {
            seg.first_lsn == reach + 1
        };
        if !continues {
            return (reach, used, ChainEnd::Gap(reach + 1));
        }
        if let Some(why) = damaged.get(&seg.data_file()) {
            return (reach, used, ChainEnd::Damaged(seg.data_file(), why.clone()));
        }
        used.push(seg);
        reach = used_to(history, seg);
    }
    (reach, used, ChainEnd::End)
}

/// Archived segments whose seal is missing, damaged, or does not describe the segment, with
/// the reason (the same check `verify` makes).
fn damaged_seals(repo: &BackupRepo, archive: &[ArchivedSegment]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for seg in archive {
        match repo.read_seal(seg) {
            Err(e) => {
                out.insert(seg.data_file(), format!("its seal is unreadable: {e}"));
            }
            Ok(seal) => {
                if hex::encode(seal.sha256) != seg.plain_sha256
                    || seal.first_lsn != seg.first_lsn
                    || seal.last_lsn != seg.last_lsn
                {
                    out.insert(
                        seg.data_file(),
                        "its seal does not match the segment's description".into(),
                    );
                }
            }
        }
    }
    out
}

/// Checks a backup's stored files against its manifest (presence, size, SHA-256), without
/// decoding them; the reason when they do not match.
fn check_stored_files(repo: &BackupRepo, b: &BackupManifest) -> std::result::Result<(), String> {
    if !b.files.iter().any(|f| f.name == SNAPSHOT_FILE) {
        return Err("its manifest lists no snapshot file".into());
    }
    for f in &b.files {
        let name = format!("backups/{}/{}", b.id, f.name);
        let stored = repo
            .storage()
            .read(&name)
            .map_err(|e| format!("{name} is missing or unreadable: {e}"))?;
        if stored.len() as u64 != f.stored_size || sha256_hex(&stored) != f.stored_sha256 {
            return Err(format!(
                "{name} is damaged: its stored bytes do not match the manifest's size and SHA-256"
            ));
        }
    }
    Ok(())
}

/// Works out which backup and archived segments reach `target`, or fails saying how far a
/// restore could get. The base is the newest backup at or before the target whose files
/// check out; every newer or damaged one passed over is listed in [`RestorePlan::skipped`].
pub fn plan_restore(
    repo: &BackupRepo,
    target: &RestoreTarget,
    exclusive: bool,
) -> Result<RestorePlan> {
    plan_skipping(repo, target, exclusive, &[])
}

/// `plan_restore`, also passing over the backups in `unusable` (found bad while restoring).
fn plan_skipping(
    repo: &BackupRepo,
    target: &RestoreTarget,
    exclusive: bool,
    unusable: &[SkippedBackup],
) -> Result<RestorePlan> {
    if let RestoreTarget::Backup(id) = target {
        repo.check_backup_id(id)?;
    }
    let mut skipped: Vec<SkippedBackup> = unusable.to_vec();
    let mut backups = vec![];
    for entry in repo.entries()? {
        match (entry.manifest, entry.problem) {
            (Some(m), _) if !unusable.iter().any(|u| u.id == m.id) => backups.push(m),
            (None, Some(problem)) if entry.status == super::BackupState::Damaged => {
                skipped.push(SkippedBackup {
                    id: entry.id,
                    reason: problem,
                })
            }
            _ => {}
        }
    }
    let history = target_history(repo, &backups, target)?;
    let h = history.as_ref();
    if let Some(hist) = h {
        // Backups of another history: another database, a timeline this one does not descend
        // from, or past the point where this history left the backup's timeline.
        backups.retain(|b| match hist.refuses(ids_in(hist, b.ids()), b.lsn) {
            None => true,
            Some(why) => {
                skipped.push(SkippedBackup {
                    id: b.id.clone(),
                    reason: format!(
                        "not in the history of the target timeline {}: {why}",
                        hist.timeline
                    ),
                });
                false
            }
        });
    }
    // Only the segments of the target history; other timelines' may overlap them.
    let archive: Vec<ArchivedSegment> = repo
        .archived_segments()?
        .into_iter()
        .filter(|s| in_history(h, s.ids(), s.first_lsn))
        .collect();
    let damaged = damaged_seals(repo, &archive);
    let unreachable = |reached: String, reason: String| Error::Unreachable {
        target: target.to_string(),
        reached,
        reason,
    };
    let Some(newest) = backups
        .iter()
        .max_by_key(|b| (b.lsn, b.created_at_us))
        .cloned()
    else {
        let mut why = format!("repository {} holds no complete backup", repo.location());
        // Backups whose manifest failed to read or was refused are there: say why each was
        // passed over (the failed operation included), not only that none is complete.
        for s in &skipped {
            why.push_str(&format!("; passed over {}: {}", s.id, s.reason));
        }
        return Err(unreachable("nothing".into(), why));
    };
    let reach_text = |b: &BackupManifest| {
        let (reach, used, _) = chain(b, &archive, &damaged, h);
        let ts = used.last().map_or(b.commit_ts_us, |s| s.last_commit_ts_us);
        point(reach, ts)
    };
    // Candidates for the base, newest first: the newest whose files check out is used.
    let fits_time = |ts: u64, t: u64| if exclusive { ts < t } else { ts <= t };
    let mut candidates: Vec<&BackupManifest> = backups
        .iter()
        .filter(|b| match target {
            RestoreTarget::Backup(id) => &b.id == id,
            RestoreTarget::Latest => true,
            RestoreTarget::Lsn(n) => b.lsn <= if exclusive { n.saturating_sub(1) } else { *n },
            RestoreTarget::Time(t) => fits_time(b.commit_ts_us, *t),
        })
        .collect();
    candidates.sort_by_key(|b| std::cmp::Reverse((b.lsn, b.created_at_us)));
    let mut base = None;
    for b in candidates {
        match check_stored_files(repo, b) {
            Ok(()) => {
                base = Some(b.clone());
                break;
            }
            Err(reason) => {
                if matches!(target, RestoreTarget::Backup(_)) {
                    return Err(repo.err(format!("backup {}: {reason}", b.id)));
                }
                skipped.push(SkippedBackup {
                    id: b.id.clone(),
                    reason,
                });
            }
        }
    }
    let Some(backup) = base else {
        let why = match target {
            RestoreTarget::Backup(id) => {
                // Say why: a damaged or refused manifest, rather than "no such backup".
                if repo.backup_ids()?.contains(id) {
                    repo.manifest(id)?;
                }
                format!("no complete backup with id {id} (see `amberdb backup list`)")
            }
            RestoreTarget::Latest => "no backup's files check out".into(),
            RestoreTarget::Lsn(n) => {
                let t = if exclusive { n.saturating_sub(1) } else { *n };
                let oldest = backups.iter().map(|b| b.lsn).min().unwrap_or(0);
                if oldest > t {
                    format!("LSN {t} is before the oldest backup (LSN {oldest})")
                } else {
                    format!("no backup at or before LSN {t} checks out")
                }
            }
            RestoreTarget::Time(_) => {
                let oldest = backups.iter().map(|b| b.commit_ts_us).min().unwrap_or(0);
                format!(
                    "the time is before the oldest usable backup ({})",
                    format_micros(oldest)
                )
            }
        };
        let why = if skipped.is_empty() {
            why
        } else {
            let list: Vec<String> = skipped
                .iter()
                .map(|s| format!("{}: {}", s.id, s.reason))
                .collect();
            format!("{why}; passed over: {}", list.join("; "))
        };
        let reached = if matches!(target, RestoreTarget::Backup(_)) {
            reach_text(&newest)
        } else {
            "nothing".into()
        };
        return Err(unreachable(reached, why));
    };
    let (reach, used, end) = chain(&backup, &archive, &damaged, h);
    let mut notes = vec![];
    let to_lsn = match target {
        RestoreTarget::Backup(_) => Some(backup.lsn),
        RestoreTarget::Latest => {
            if !matches!(end, ChainEnd::End) {
                let why = end.why().unwrap_or_default();
                return Err(unreachable(
                    reach_text(&backup),
                    format!("{why} but the archive has later segments; restore --to-lsn {reach} to get as far as possible"),
                ));
            }
            if let Some(claim) = backups
                .iter()
                .filter_map(|b| b.archived_through_lsn.map(|a| (a, b)))
                .max_by_key(|(a, _)| *a)
                .filter(|(a, _)| *a > reach)
            {
                notes.push(format!(
                    "the archive ends at LSN {reach}, but backup {} recorded it reaching LSN {} when it was taken (archived segments were removed?): the latest restorable state is LSN {reach}",
                    claim.1.id, claim.0
                ));
            }
            notes.push(format!(
                "--latest reaches {}: the end of the archive after backup {}; commits after it, if any, are not in the archive (`amberdb backup verify --data DIR` compares it with the data directory)",
                reach_text(&backup),
                backup.id
            ));
            Some(reach)
        }
        RestoreTarget::Lsn(n) => {
            let t = if exclusive { n.saturating_sub(1) } else { *n };
            if reach < t {
                let why = end.why().unwrap_or_else(|| format!("the archive ends at LSN {reach}; later commits are not archived yet (a backup archives them)"));
                return Err(unreachable(reach_text(&backup), why));
            }
            Some(t)
        }
        RestoreTarget::Time(t) => {
            // The state at `t` is proven once the archive holds a commit after `t`, or a
            // backup taken at or after `t` whose archive the chain reaches: every commit
            // stamped at or before a backup's time is at or below its `archived_through_lsn`.
            // (Not by a parent's segment cut at the branch: its last commit was undone.)
            let by_commit = used
                .iter()
                .any(|s| used_to(h, s) == s.last_lsn && !fits_time(s.last_commit_ts_us, *t));
            let by_backup = backups.iter().any(|b| {
                b.created_at_us >= *t
                    && b.lsn >= backup.lsn
                    && b.archived_through_lsn.is_some_and(|a| a <= reach)
            });
            if !by_commit && !by_backup {
                let why = end.why().unwrap_or_else(|| "the archive ends before that time, so later commits may exist that are not archived yet (a backup archives them); restore --latest or --to-lsn for what is archived".into());
                return Err(unreachable(reach_text(&backup), why));
            }
            None
        }
    };
    let segments: Vec<ArchivedSegment> = {
        let mut out = vec![];
        for s in used {
            // A parent's segment cut at the branch ends at the branch LSN; its later commits
            // (and their times) were undone.
            let cut = used_to(h, s) != s.last_lsn;
            let stop = match (target, to_lsn) {
                (RestoreTarget::Time(_), _) if cut => {
                    out.push(s.clone());
                    false
                }
                (RestoreTarget::Time(t), _) => {
                    let past = if exclusive {
                        s.last_commit_ts_us >= *t
                    } else {
                        s.last_commit_ts_us > *t
                    };
                    out.push(s.clone());
                    past
                }
                (_, Some(to)) => {
                    if s.first_lsn > to {
                        true
                    } else {
                        out.push(s.clone());
                        used_to(h, s) >= to
                    }
                }
                _ => false,
            };
            if stop {
                break;
            }
        }
        out
    };
    Ok(RestorePlan {
        target: target.to_string(),
        exclusive,
        replay_from_lsn: backup.lsn + 1,
        replay_to_lsn: to_lsn,
        backup,
        segments,
        skipped,
        notes,
        history,
    })
}

/// Counts and hashes the bytes read through it; keeps the first read error.
struct HashingReader<R> {
    inner: R,
    hasher: sha2::Sha256,
    count: u64,
    error: Option<std::io::Error>,
}

impl<R: std::io::Read> std::io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                let read = buf.get(..n).unwrap_or_default();
                self.hasher.update(read);
                self.count += n as u64;
                Ok(n)
            }
            Err(e) => {
                let kept = std::io::Error::new(e.kind(), e.to_string());
                self.error.get_or_insert(kept);
                Err(e)
            }
        }
    }
}

/// Loads and fully checks a backup's snapshot (an encrypted one is refused with
/// `KeyMissing`: callers with keys use [`load_snapshot_with`]).
#[allow(dead_code)]
pub(crate) fn load_snapshot(
    repo: &BackupRepo,
    b: &BackupManifest,
    progress: &dyn Progress,
) -> Result<State> {
    load_snapshot_with(repo, b, progress, None)
}

/// A backup's key: [`Error::KeyMissing`] when it was written encrypted with a key `keys`
/// lacks (checked before any byte is read, so it is never taken for damage).
pub(crate) fn check_backup_key(
    b: &BackupManifest,
    keys: Option<&crate::crypto::Keyring>,
) -> Result<()> {
    let Some(id) = b.key_id.and_then(crate::crypto::KeyId::from_u32) else {
        return Ok(());
    };
    if keys.and_then(|k| k.get(id)).is_some() {
        return Ok(());
    }
    Err(Error::KeyMissing {
        key_id: id.get(),
        unit: format!("backup {}", b.id),
        available: crate::crypto::describe_keys(keys),
    })
}

/// Like [`load_snapshot`], opening an encrypted snapshot with `keys`.
pub(crate) fn load_snapshot_with(
    repo: &BackupRepo,
    b: &BackupManifest,
    progress: &dyn Progress,
    keys: Option<&crate::crypto::Keyring>,
) -> Result<State> {
    check_backup_key(b, keys)?;
    let entry = b
        .files
        .iter()
        .find(|f| f.name == SNAPSHOT_FILE)
        .ok_or_else(|| repo.err(format!("backup {}: manifest lists no snapshot file", b.id)))?;
    let name = format!("backups/{}/{SNAPSHOT_FILE}", b.id);
    progress.begin(&format!("reading backup {}", b.id), Some(entry.stored_size));
    let stored = repo
        .storage()
        .read(&name)
        .map_err(|e| repo.err(format!("reading {name}: {e}")))?;
    progress.advance(stored.len() as u64);
    progress.end();
    if stored.len() as u64 != entry.stored_size || sha256_hex(&stored) != entry.stored_sha256 {
        return Err(repo.err(format!(
            "{name} is damaged: its stored bytes do not match the manifest's size and SHA-256"
        )));
    }
    // Decoded as a stream, never decompressed into memory whole: a small snapshot that
    // expands to gigabytes (a zstd bomb, even with a manifest that agrees) fails at its first
    // bytes that are not a sound checkpoint, with every allocation bounded by the block limit.
    let decoder = zstd::stream::Decoder::new(&stored[..])
        .map_err(|e| repo.err(format!("{name} does not decompress: {e}")))?;
    let mut plain = HashingReader {
        inner: decoder,
        hasher: sha2::Sha256::new(),
        count: 0,
        error: None,
    };
    let decoded = checkpoint::decode_reader_with(&mut plain, entry.plain_size, keys);
    if let Some(e) = &plain.error {
        return Err(repo.err(format!("{name} does not decompress: {e}")));
    }
    // The decoder may stop early at damage; read on (through a fixed buffer, at most one byte
    // past the declared size) so the size and hash cover the whole stream.
    let rest = entry
        .plain_size
        .saturating_add(1)
        .saturating_sub(plain.count);
    let _ = std::io::copy(
        &mut std::io::Read::take(&mut plain, rest),
        &mut std::io::sink(),
    );
    if let Some(e) = &plain.error {
        return Err(repo.err(format!("{name} does not decompress: {e}")));
    }
    if plain.count != entry.plain_size {
        return Err(repo.err(format!(
            "{name} decompresses to {}{} bytes but the manifest says {}",
            if plain.count > entry.plain_size {
                "more than "
            } else {
                ""
            },
            plain.count.min(entry.plain_size),
            entry.plain_size
        )));
    }
    if hex::encode(plain.hasher.finalize()) != entry.plain_sha256 {
        return Err(repo.err(format!(
            "{name} decompresses to bytes that do not match the manifest's size and SHA-256{}",
            decoded
                .problems
                .first()
                .map(|p| format!(" (at offset {}: {})", p.offset, p.detail))
                .unwrap_or_default()
        )));
    }
    if let Some(p) = decoded.problems.first() {
        return Err(repo.err(format!(
            "{name}: snapshot is damaged at offset {}: {}",
            p.offset, p.detail
        )));
    }
    if let (Some(theirs), Some(said)) = (decoded.ids, b.ids()) {
        if theirs != said {
            return Err(repo.err(format!(
                "{name} belongs to {theirs}, but its manifest says {said}: the snapshot was swapped"
            )));
        }
    }
    if decoded.state.lsn != b.lsn {
        return Err(repo.err(format!(
            "{name} holds LSN {} but the manifest says {}",
            decoded.state.lsn, b.lsn
        )));
    }
    Ok(decoded.state)
}

/// What a replay applied: commits, segments, and the LSN range (first, last).
pub(crate) struct Replayed {
    pub commits: u64,
    pub segments: u64,
    pub range: Option<(u64, u64)>,
}

/// Replays the plan's segments onto `state`.
pub(crate) fn replay(
    repo: &BackupRepo,
    plan: &RestorePlan,
    target: &RestoreTarget,
    state: &mut State,
    progress: &dyn Progress,
    keys: Option<&crate::crypto::Keyring>,
    streams: Option<&crate::stream::files::StreamFiles>,
) -> Result<Replayed> {
    let exclusive = plan.exclusive;
    let total: u64 = plan.segments.iter().map(|s| s.plain_size).sum();
    progress.begin("replaying archived log", Some(total));
    let mut r = Replayer::new(state, plan.history.as_ref()).with_keys(keys);
    for seg in &plan.segments {
        let bytes = repo.read_segment(seg)?;
        // A key the archive needs and the keyring lacks is a refusal, not damage.
        if let Ok(h) = crate::log::segment::SegmentHeader::decode(&bytes) {
            crate::log::segment::FrameDecoder::for_segment(&h, keys)?;
        }
        let name = seg.data_file();
        let mut stream_error = None;
        let mut want = |rec: &CommitRecord| {
            let wanted = match target {
                RestoreTarget::Time(t) => {
                    if exclusive {
                        rec.commit_ts < *t
                    } else {
                        rec.commit_ts <= *t
                    }
                }
                _ => plan.replay_to_lsn.is_none_or(|to| rec.lsn <= to),
            };
            // A replayed append's values go to the restored stream files, as open's replay
            // writes them (the record is applied only once they are there).
            match streams {
                Some(files) if wanted => files.replay_record(rec, &mut stream_error),
                _ => wanted && stream_error.is_none(),
            }
        };
        let s = r
            .segment(&bytes, seg.first_lsn, seg.ids(), false, &mut want)
            .map_err(|e| repo.err(format!("{name}: {e}")))?;
        if let Some(e) = stream_error {
            return Err(e);
        }
        if s.scan.end != ScanEnd::Clean {
            return Err(repo.err(format!(
                "{name}: archived segment is damaged ({:?})",
                s.scan.end
            )));
        }
        progress.advance(seg.plain_size);
    }
    let (commits, range) = (r.commits, r.range);
    progress.end();
    if let Some(to) = plan.replay_to_lsn {
        if state.lsn != to {
            return Err(Error::Unreachable {
                target: plan.target.clone(),
                reached: point(state.lsn, state.commit_ts),
                reason: "the archived log stops early".into(),
            });
        }
    }
    Ok(Replayed {
        commits,
        segments: plan.segments.len() as u64,
        range,
    })
}

/// Writes backup `b`'s stream files into the data directory `data` being assembled (each
/// name checked to be a stream file path first: a manifest from a repository writes nothing
/// else), synced. Their bytes were checked against the manifest when the restore was planned.
pub(super) fn restore_stream_files(
    repo: &BackupRepo,
    b: &BackupManifest,
    data: &Path,
    faults: &Faults,
) -> Result<()> {
    for f in b.files.iter().filter(|f| f.name != SNAPSHOT_FILE) {
        if !crate::stream::files::is_stream_file_path(&f.name) {
            return Err(repo.err(format!(
                "backup {}: its manifest lists {:?}, which is neither its snapshot nor a stream file",
                b.id, f.name
            )));
        }
        let name = format!("backups/{}/{}", b.id, f.name);
        let bytes = repo
            .storage()
            .read(&name)
            .map_err(|e| repo.err(format!("reading {name}: {e}")))?;
        if bytes.len() as u64 != f.stored_size || sha256_hex(&bytes) != f.stored_sha256 {
            return Err(repo.err(format!(
                "{name} is damaged: its stored bytes do not match the manifest's size and SHA-256"
            )));
        }
        let path = data.join(&f.name);
        let dir = path.parent().unwrap_or(data);
        io::create_dir_all(dir, faults).context(|| format!("creating {}", dir.display()))?;
        io::write_new(&path, &bytes, faults).context(|| format!("writing {}", path.display()))?;
        sync_dir(dir, faults).context(|| format!("syncing {}", dir.display()))?;
    }
    let root = data.join(crate::stream::files::STREAMS_DIR);
    if root.exists() {
        sync_dir(&root, faults).context(|| format!("syncing {}", root.display()))?;
    }
    Ok(())
}

/// Restores `target` from `repo` into the new directory `into` (which must not exist or be
/// empty), verifies the result and reports what was restored.
pub fn restore(
    repo: &BackupRepo,
    target: &RestoreTarget,
    exclusive: bool,
    into: &Path,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    restore_with(repo, target, exclusive, into, progress, None)
}

/// Like [`restore`], reading encrypted backups and archived segments with `keys`; the
/// restored checkpoint is sealed with its first key (unencrypted when `keys` is `None`). A
/// backup or segment sealed with a key `keys` lacks is refused with `Error::KeyMissing`
/// naming the key id.
pub fn restore_with(
    repo: &BackupRepo,
    target: &RestoreTarget,
    exclusive: bool,
    into: &Path,
    progress: &dyn Progress,
    keys: Option<&crate::crypto::Keyring>,
) -> Result<RestoreReport> {
    if into.exists() {
        let empty = io::read_dir(into, &Faults::none())
            .map(|d| d.is_empty())
            .unwrap_or(false);
        if !empty {
            return Err(Error::InvalidArgument(format!(
                "{} exists and is not empty; restore never writes over data: choose a new directory",
                into.display()
            )));
        }
    }
    // A snapshot whose stored bytes match its manifest can still fail to decode: pass over
    // it like a damaged one (unless it was asked for by id) and plan again.
    let mut unusable: Vec<SkippedBackup> = vec![];
    let (plan, mut state) = loop {
        let plan = plan_skipping(repo, target, exclusive, &unusable)?;
        match load_snapshot_with(repo, &plan.backup, progress, keys) {
            Ok(state) => break (plan, state),
            Err(e @ Error::KeyMissing { .. }) => return Err(e),
            Err(e) if !matches!(target, RestoreTarget::Backup(_)) => {
                tracing::warn!(backup = %plan.backup.id, error = %e, "passing over a damaged backup");
                unusable.push(SkippedBackup {
                    id: plan.backup.id.clone(),
                    reason: e.to_string(),
                });
            }
            Err(e) => return Err(e),
        }
    };
    let parent = into
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    io::create_dir_all(parent, &Faults::none())
        .context(|| format!("creating {}", parent.display()))?;
    let name = into
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("restore");
    let tmp = parent.join(format!(".{name}.restoring-{}", std::process::id()));
    let faults = Faults::default();
    if tmp.exists() {
        io::remove_dir_all(&tmp, &faults)
            .context(|| format!("removing stale {}", tmp.display()))?;
    }
    // The directory is assembled in `tmp` (marked incomplete until the end) from before the
    // replay: the backup's stream files go in first, cut back to the snapshot, and the replay
    // appends what the archived log adds to them.
    let begin = |state: &mut State| -> Result<crate::stream::files::StreamFiles> {
        io::create_dir_all(&tmp, &faults).context(|| format!("creating {}", tmp.display()))?;
        io::write_new(
            &tmp.join(RESTORE_MARKER),
            b"restore in progress; this directory is incomplete\n",
            &faults,
        )
        .context(|| format!("writing marker in {}", tmp.display()))?;
        sync_dir(&tmp, &faults).context(|| format!("syncing {}", tmp.display()))?;
        for d in [LOG_DIR, CHECKPOINT_DIR] {
            io::create_dir_all(&tmp.join(d), &faults)
                .context(|| format!("creating {}", tmp.join(d).display()))?;
        }
        restore_stream_files(repo, &plan.backup, &tmp, &faults)?;
        crate::stream::files::StreamFiles::open(
            &tmp,
            &faults,
            crate::stream::files::DEFAULT_STREAM_SEGMENT_BYTES,
            state,
            keys,
        )
    };
    let replayed = begin(&mut state).and_then(|streams| {
        let r = replay(
            repo,
            &plan,
            target,
            &mut state,
            progress,
            keys,
            Some(&streams),
        )?;
        // Durable before the checkpoint that names their watermarks.
        streams.sync()?;
        Ok(r)
    });
    let Replayed {
        commits,
        segments,
        range,
    } = match replayed {
        Ok(r) => r,
        Err(e) => {
            let _ = io::remove_dir_all(&tmp, &faults);
            return Err(e);
        }
    };
    // The same database on a new timeline, branching at the restored LSN.
    let reason = format!("restore of backup {} to LSN {}", plan.backup.id, state.lsn);
    let identity = match &plan.history {
        Some(h) => h.branch(state.lsn, &reason),
        None => {
            // A repository written before ids: its history becomes a first timeline, which
            // the restored one branches from (so archiving into it again is not refused as
            // an overlap with the commits this restore undid).
            let mut before = Identity::create("history written before ids existed");
            if let Some(db) = plan.backup.database_id {
                before.database_id = db;
            }
            before.branch(state.lsn, &reason)
        }
    };

    let assemble = || -> Result<()> {
        progress.begin("writing restored checkpoint", None);
        checkpoint::write(
            &tmp.join(CHECKPOINT_DIR),
            &state,
            identity.ids(),
            1,
            keys,
            &faults,
        )
        .context(|| format!("writing checkpoint in {}", tmp.display()))?;
        progress.end();
        crate::blob::restore_into(repo, &state, &tmp, &faults, keys)?;
        identity.save(&tmp, &faults)?;
        sync_dir(&tmp, &faults).context(|| format!("syncing {}", tmp.display()))?;
        io::remove_file(&tmp.join(RESTORE_MARKER), &faults)
            .context(|| format!("removing marker in {}", tmp.display()))?;
        sync_dir(&tmp, &faults).context(|| format!("syncing {}", tmp.display()))?;
        if into.exists() {
            io::remove_dir(into, &faults)
                .context(|| format!("replacing empty {}", into.display()))?;
        }
        io::rename(&tmp, into, &faults)
            .context(|| format!("moving {} to {}", tmp.display(), into.display()))?;
        sync_dir(parent, &faults).context(|| format!("syncing {}", parent.display()))
    };
    if let Err(e) = assemble() {
        let _ = io::remove_dir_all(&tmp, &faults);
        return Err(e);
    }
    let verify = crate::verify::verify_dir_with(into, keys)?;
    let documents: BTreeMap<String, u64> = state
        .collections
        .iter()
        .map(|(n, c)| (n.to_string(), c.docs.len() as u64))
        .collect();
    let report = RestoreReport {
        into: into.to_owned(),
        target: plan.target.clone(),
        backup_id: plan.backup.id.clone(),
        backup_lsn: plan.backup.lsn,
        segments_replayed: segments,
        replayed_lsn_range: range,
        commits_replayed: commits,
        lsn: state.lsn,
        commit_time: format_micros(state.commit_ts),
        documents,
        verified: verify.is_clean() && verify.documents_checked == state.doc_count(),
        skipped: plan.skipped.clone(),
        notes: plan.notes.clone(),
        database_id: identity.database_id,
        timeline: identity.timeline,
    };
    if !report.verified {
        return Err(Error::Repository {
            location: into.display().to_string(),
            detail: format!(
                "restored directory failed verification: {:?}",
                verify.problems
            ),
        });
    }
    Ok(report)
}

/// The steps of [`swap_in`], in order; [`swap_in_until`] stops after one of them (what a
/// crash there would leave, for tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SwapStep {
    /// The restored directory was checked complete and synced.
    Synced,
    /// The two directories were exchanged in one `renameat2(RENAME_EXCHANGE)` and the parent
    /// synced: `data` is the restored database, `restored` the old one.
    Exchanged,
    /// The old database was renamed to its kept name and the parent synced.
    Kept,
}

/// Puts the complete restored database directory `restored` in place of the database
/// directory `data` (closed: its lock released), keeping the old one beside it, and returns
/// where it is kept (`<data>.replaced-<time>`). Both must be in the same parent directory.
///
/// The rename protocol, so that a crash or power cut at any point leaves either the old or the
/// restored database fully in place at `data`, and openable:
/// 1. `restored` must be complete (no [`RESTORE_MARKER`]: `restore` assembles in a temporary
///    directory and renames it into place) and is synced;
/// 2. `data` and `restored` are exchanged atomically by the kernel (`renameat2` with
///    `RENAME_EXCHANGE`, Linux), then the parent is synced: before it, `data` is the old
///    database; after it, the restored one; there is no moment without one;
/// 3. the old database, now at `restored`, is renamed to `<data>.replaced-<time>` and the
///    parent synced. A crash between 2 and 3 leaves the old database under the restored
///    directory's name: inert, never opened by the server, removable by the operator.
///
/// On a filesystem or OS without an atomic exchange this refuses (`Error::InvalidArgument`)
/// before changing anything.
pub fn swap_in(data: &Path, restored: &Path) -> Result<PathBuf> {
    swap_in_until(data, restored, SwapStep::Kept)
}

/// [`swap_in`], stopping after `last` (a crash there; tests).
#[doc(hidden)]
pub fn swap_in_until(data: &Path, restored: &Path, last: SwapStep) -> Result<PathBuf> {
    let faults = Faults::none();
    let parent = match (data.parent(), restored.parent()) {
        (Some(a), Some(b)) if a == b => a.to_owned(),
        _ => {
            return Err(Error::InvalidArgument(format!(
                "{} and {} must be in the same directory to be exchanged",
                restored.display(),
                data.display()
            )))
        }
    };
    if !data.is_dir() || !restored.is_dir() || restored.join(RESTORE_MARKER).exists() {
        return Err(Error::InvalidArgument(format!(
            "{} is not a complete restored database, or {} is not a directory",
            restored.display(),
            data.display()
        )));
    }
    sync_dir(restored, &faults).context(|| format!("syncing {}", restored.display()))?;
    let stamp =
        crate::document::format_micros(crate::document::now_micros()).replace([':', '.'], "");
    let name = data.file_name().and_then(|n| n.to_str()).unwrap_or("data");
    let kept = parent.join(format!("{name}.replaced-{stamp}"));
    if last == SwapStep::Synced {
        return Ok(kept);
    }
    exchange(restored, data, &faults)?;
    sync_dir(&parent, &faults).context(|| format!("syncing {}", parent.display()))?;
    if last == SwapStep::Exchanged {
        return Ok(kept);
    }
    io::rename(restored, &kept, &faults)
        .context(|| format!("moving {} to {}", restored.display(), kept.display()))?;
    sync_dir(&parent, &faults).context(|| format!("syncing {}", parent.display()))?;
    Ok(kept)
}

/// Exchanges two directory entries atomically (through the io layer, so fault injection
/// and the power-cut simulator see it).
fn exchange(a: &Path, b: &Path, faults: &Faults) -> Result<()> {
    match io::exchange(a, b, faults) {
        Ok(()) => Ok(()),
        // No atomic exchange on this OS or file system: refused before anything changed.
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported || e.raw_os_error() == Some(22) => {
            Err(Error::InvalidArgument(format!(
                "cannot exchange {} and {} atomically ({e}); nothing was changed: restore \
                 offline with `amberdb restore --into NEW` and restart on NEW",
                a.display(),
                b.display()
            )))
        }
        Err(e) => Err(e).context(|| format!("exchanging {} and {}", a.display(), b.display())),
    }
}

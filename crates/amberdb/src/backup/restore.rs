//! Restore and point-in-time recovery: pick the newest backup at or before the target, replay
//! the archived log up to it, and write the result into a new directory, atomically.
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
}

/// The furthest LSN reachable from `backup` through contiguous archived segments, and the
/// segments of that chain.
fn chain<'a>(
    backup: &BackupManifest,
    archive: &'a [ArchivedSegment],
) -> (u64, Vec<&'a ArchivedSegment>, Option<u64>) {
    let mut reach = backup.lsn;
    let mut used = vec![];
    let mut gap_at = None;
    for seg in archive.iter().filter(|s| s.last_lsn > backup.lsn) {
        // Exact continuation: the first segment covers the LSN after the backup, each later
        // one starts right after the previous one (an overlap means another history).
        let continues = if used.is_empty() {
            seg.first_lsn <= reach + 1
        } else {
            seg.first_lsn == reach + 1
        };
        if !continues {
            gap_at = Some(reach + 1);
            break;
        }
        used.push(seg);
        reach = seg.last_lsn;
    }
    (reach, used, gap_at)
}

/// Works out which backup and archived segments reach `target`, or fails saying how far a
/// restore could get.
pub fn plan_restore(
    repo: &BackupRepo,
    target: &RestoreTarget,
    exclusive: bool,
) -> Result<RestorePlan> {
    let backups = repo.list()?;
    let archive = repo.archived_segments()?;
    let unreachable = |reached: String, reason: String| Error::Unreachable {
        target: target.to_string(),
        reached,
        reason,
    };
    let newest = backups
        .iter()
        .max_by_key(|b| (b.lsn, b.created_at_us))
        .cloned();
    let Some(newest) = newest else {
        return Err(unreachable(
            "nothing".into(),
            format!("repository {} holds no complete backup", repo.location()),
        ));
    };
    let reach_text = |b: &BackupManifest| {
        let (reach, used, _) = chain(b, &archive);
        let ts = used.last().map_or(b.commit_ts_us, |s| s.last_commit_ts_us);
        point(reach, ts)
    };
    let (backup, to_lsn) = match target {
        RestoreTarget::Backup(id) => {
            repo.check_backup_id(id)?;
            let Some(b) = backups.iter().find(|b| &b.id == id).cloned() else {
                // Say why: a damaged or refused manifest, rather than "no such backup".
                if repo.backup_ids()?.contains(id) {
                    repo.manifest(id)?;
                }
                return Err(unreachable(
                    reach_text(&newest),
                    format!("no complete backup with id {id} (see `amberdb backup list`)"),
                ));
            };
            let lsn = b.lsn;
            (b, Some(lsn))
        }
        RestoreTarget::Latest => {
            let (reach, _, gap) = chain(&newest, &archive);
            if let Some(gap) = gap {
                return Err(unreachable(
                    reach_text(&newest),
                    format!("the archive is missing LSN {gap} (a gap) but has later segments; restore --to-lsn {} to get as far as possible", gap - 1),
                ));
            }
            (newest.clone(), Some(reach))
        }
        RestoreTarget::Lsn(n) => {
            let t = if exclusive { n.saturating_sub(1) } else { *n };
            let b = backups
                .iter()
                .filter(|b| b.lsn <= t)
                .max_by_key(|b| (b.lsn, b.created_at_us))
                .cloned();
            let Some(b) = b else {
                let oldest = backups.iter().map(|b| b.lsn).min().unwrap_or(0);
                return Err(unreachable(
                    "nothing".into(),
                    format!("LSN {t} is before the oldest backup (LSN {oldest})"),
                ));
            };
            let (reach, _, gap) = chain(&b, &archive);
            if reach < t {
                let why = match gap {
                    Some(g) => format!("archived segment with LSN {g} is missing (a gap)"),
                    None => format!("the archive ends at LSN {reach}; later commits are not archived yet (a backup archives them)"),
                };
                return Err(unreachable(reach_text(&b), why));
            }
            (b, Some(t))
        }
        RestoreTarget::Time(t) => {
            let fits = |ts: u64| if exclusive { ts < *t } else { ts <= *t };
            let b = backups
                .iter()
                .filter(|b| fits(b.commit_ts_us))
                .max_by_key(|b| (b.lsn, b.created_at_us))
                .cloned();
            let Some(b) = b else {
                let oldest = backups.iter().map(|b| b.commit_ts_us).min().unwrap_or(0);
                return Err(unreachable(
                    "nothing".into(),
                    format!(
                        "the time is before the oldest backup ({})",
                        format_micros(oldest)
                    ),
                ));
            };
            // The state at `t` is proven only once a commit after `t` is in the archive.
            let (_, used, gap) = chain(&b, &archive);
            if !used.iter().any(|s| !fits(s.last_commit_ts_us)) {
                let why = match gap {
                    Some(g) => format!("archived segment with LSN {g} is missing (a gap)"),
                    None => "the archive ends before that time, so later commits may exist that are not archived yet (a backup archives them); restore --latest or --to-lsn for what is archived".into(),
                };
                return Err(unreachable(reach_text(&b), why));
            }
            (b, None)
        }
    };
    let segments: Vec<ArchivedSegment> = {
        let (_, used, _) = chain(&backup, &archive);
        let mut out = vec![];
        for s in used {
            let stop = match (target, to_lsn) {
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
                        s.last_lsn >= to
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

/// Loads and fully checks a backup's snapshot.
pub(crate) fn load_snapshot(
    repo: &BackupRepo,
    b: &BackupManifest,
    progress: &dyn Progress,
) -> Result<State> {
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
    let decoded = checkpoint::decode_reader(&mut plain, entry.plain_size);
    if let Some(e) = plain.error {
        return Err(repo.err(format!("{name} does not decompress: {e}")));
    }
    if plain.count != entry.plain_size || hex::encode(plain.hasher.finalize()) != entry.plain_sha256
    {
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
) -> Result<Replayed> {
    let exclusive = plan.exclusive;
    let total: u64 = plan.segments.iter().map(|s| s.plain_size).sum();
    progress.begin("replaying archived log", Some(total));
    let mut r = Replayer::new(state);
    for seg in &plan.segments {
        let bytes = repo.read_segment(seg)?;
        let name = ArchivedSegment::data_name(seg.first_lsn);
        let mut want = |rec: &CommitRecord| match target {
            RestoreTarget::Time(t) => {
                if exclusive {
                    rec.commit_ts < *t
                } else {
                    rec.commit_ts <= *t
                }
            }
            _ => plan.replay_to_lsn.is_none_or(|to| rec.lsn <= to),
        };
        let s = r
            .segment(&bytes, seg.first_lsn, false, &mut want)
            .map_err(|e| repo.err(format!("{name}: {e}")))?;
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

/// Restores `target` from `repo` into the new directory `into` (which must not exist or be
/// empty), verifies the result and reports what was restored.
pub fn restore(
    repo: &BackupRepo,
    target: &RestoreTarget,
    exclusive: bool,
    into: &Path,
    progress: &dyn Progress,
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
    let plan = plan_restore(repo, target, exclusive)?;
    let mut state = load_snapshot(repo, &plan.backup, progress)?;
    let Replayed {
        commits,
        segments,
        range,
    } = replay(repo, &plan, target, &mut state, progress)?;

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
    let assemble = || -> Result<()> {
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
        progress.begin("writing restored checkpoint", None);
        checkpoint::write(&tmp.join(CHECKPOINT_DIR), &state, 1, &faults)
            .context(|| format!("writing checkpoint in {}", tmp.display()))?;
        progress.end();
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
    let verify = crate::verify::verify_dir(into)?;
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

//! Automatic recovery (`RecoveryMode::Auto`): when `open` finds damage it will not repair on
//! its own, rebuild from whatever reaches furthest, move the damaged files to quarantine
//! (never delete them), and report exactly what was recovered and what was lost.

use std::path::{Path, PathBuf};

use super::restore::{in_history, load_snapshot_with};
use super::{BackupRepo, Slots};
use crate::checkpoint::{self, list_checkpoints};
use crate::error::{Damage, IoContext, Result};
use crate::identity::{Identity, IDENTITY_FILE};
use crate::io::{sync_dir, write_atomic};
use crate::log::read_file;
use crate::log::replay::Replayer;
use crate::log::segment::{highest_valid_lsn, list_segments, missing_log, scan_structure, ScanEnd};
use crate::options::Options;
use crate::recovery::{recover, AutoRecovery, Recovered, CHECKPOINT_DIR, LOG_DIR, QUARANTINE_DIR};
use crate::state::State;
use crate::stream::files::{files_of, StreamFiles, STREAMS_DIR};

/// What one way of recovering reaches.
struct Candidate {
    state: State,
    source: String,
    replayed: u64,
    /// Damage stepped over: (file, offset, what).
    stepped_over: Vec<(PathBuf, u64, String)>,
    /// The directory under the staging directory holding its `streams/`.
    streams: PathBuf,
    /// The backup it starts from.
    backup: Option<String>,
}

/// Where the candidates assemble their stream files, under [`STAGING_DIR`].
const LOCAL_CANDIDATE: &str = "local";
const BACKUP_CANDIDATE: &str = "backup";

/// The local stream files `state` (a local checkpoint's) needs, copied into `into` (the
/// originals go to quarantine untouched) and opened for it. Damaged files make this
/// candidate unusable.
fn copy_local_streams(
    data: &Path,
    into: &Path,
    state: &mut State,
    opts: &Options,
) -> Result<StreamFiles> {
    let faults = &opts.faults;
    let wanted = files_of(data, state, faults)?;
    candidate_streams(into, state, opts, || {
        for rel in &wanted {
            let (from, to) = (data.join(rel), into.join(rel));
            let dir = crate::io::parent_dir(&to);
            crate::io::create_dir_all(dir, faults)
                .context(|| format!("creating {}", dir.display()))?;
            let bytes =
                crate::io::read(&from, faults).context(|| format!("reading {}", from.display()))?;
            crate::io::write_new(&to, &bytes, faults)
                .context(|| format!("writing {}", to.display()))?;
            sync_dir(dir, faults).context(|| format!("syncing {}", dir.display()))?;
        }
        Ok(())
    })
}

/// Backup `b`'s stream files (none for the empty state an archive from LSN 1 starts on),
/// written into `into` and opened for its snapshot `state`.
fn backup_streams(
    repo: &BackupRepo,
    b: Option<&super::BackupManifest>,
    into: &Path,
    state: &mut State,
    opts: &Options,
) -> Result<StreamFiles> {
    candidate_streams(into, state, opts, || match b {
        Some(b) => super::restore::restore_stream_files(repo, b, into, &opts.faults),
        None => Ok(()),
    })
}

/// A candidate's stream files: `fill` writes them under `into/streams/` (synced), then they
/// are opened for `state` as open does (cut to its watermarks, every retained entry checked,
/// its stream indexes rebuilt) and synced.
fn candidate_streams(
    into: &Path,
    state: &mut State,
    opts: &Options,
    fill: impl FnOnce() -> Result<()>,
) -> Result<StreamFiles> {
    let root = into.join(STREAMS_DIR);
    crate::io::create_dir_all(&root, &opts.faults)
        .context(|| format!("creating {}", root.display()))?;
    fill()?;
    for dir in [&root, into] {
        sync_dir(dir, &opts.faults).context(|| format!("syncing {}", dir.display()))?;
    }
    let files = StreamFiles::open(
        into,
        &opts.faults,
        opts.stream_segment_bytes,
        state,
        opts.encryption.as_ref(),
    )?;
    files.sync()?;
    Ok(files)
}

/// Applies valid local commits that continue the replay, segment by segment, stepping over
/// damage to commits the state already holds and stopping at the first damage or gap after
/// it.
fn extend_with_local(
    r: &mut Replayer<'_>,
    segments: &[(u64, PathBuf)],
    streams: &StreamFiles,
    stream_error: &mut Option<crate::Error>,
    stepped: &mut Vec<(PathBuf, u64, String)>,
) {
    r.new_source();
    for (first, path) in segments {
        let Ok(bytes) = read_file(path) else { break };
        let result = r.segment(&bytes, *first, None, true, &mut |rec| {
            streams.replay_record(rec, stream_error)
        });
        if stream_error.is_some() {
            break;
        }
        if let Ok(s) = &result {
            if let Some(d) = &s.stepped_over {
                stepped.push((path.clone(), d.offset, d.detail.clone()));
            }
        }
        match result {
            Ok(s) if s.scan.end == ScanEnd::Clean => {}
            Ok(s) => {
                tracing::warn!(file = %path.display(), end = ?s.scan.end, "local log ends here");
                break;
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "local log does not continue the replay");
                break;
            }
        }
    }
}

/// The highest LSN any local file shows evidence of: checkpoints, segment names, and every
/// valid frame of every segment (also those after damage).
fn highest_known_lsn(segments: &[(u64, PathBuf)], checkpoints: &[(u64, PathBuf)]) -> u64 {
    let mut max = checkpoints.first().map_or(0, |c| c.0);
    for (first, path) in segments {
        max = max.max(first.saturating_sub(1));
        if let Some(last) = read_file(path).ok().and_then(|b| highest_valid_lsn(&b)) {
            max = max.max(last);
        }
    }
    max
}

pub(crate) fn auto_recover(
    data: &Path,
    repo_path: &Path,
    damage: &Damage,
    opts: &Options,
) -> Result<Recovered> {
    let damage_text = format!(
        "{}: offset {}: {}",
        damage.file.display(),
        damage.offset,
        damage.detail
    );
    if data.join(RECOVERY_MARKER).exists() {
        return resume_staged(data, opts);
    }
    // Which database and history this directory is: what it recovers must belong to it. A
    // damaged record is refused (nothing else says which database this is).
    let identity = Identity::load(data)?.ok_or_else(|| crate::Error::Damaged(damage.clone()))?;
    tracing::warn!(damage = %damage_text, repo = %repo_path.display(), "data directory is damaged; recovering automatically");
    // Each candidate assembles its stream files under the staging directory; the chosen
    // one's are installed with the recovered checkpoint.
    let staging = data.join(STAGING_DIR);
    if staging.exists() {
        // Left by an attempt that stopped before its marker: nothing depends on it.
        crate::io::remove_dir_all(&staging, &opts.faults)
            .context(|| format!("removing stale {}", staging.display()))?;
    }
    crate::io::create_dir_all(&staging, &opts.faults)
        .context(|| format!("creating {}", staging.display()))?;
    let log_dir = data.join(LOG_DIR);
    let ckpt_dir = data.join(CHECKPOINT_DIR);
    let segments = list_segments(&log_dir).context(|| format!("listing {}", log_dir.display()))?;
    let checkpoints =
        list_checkpoints(&ckpt_dir).context(|| format!("listing {}", ckpt_dir.display()))?;

    // Candidate 1: the newest sound local checkpoint (or nothing, if the log starts at 1),
    // extended with the valid local log.
    let mut best: Option<Candidate> = None;
    // Why a candidate was passed over for its stream files (said when none is left).
    let mut stream_problems: Vec<String> = vec![];
    let local_base = checkpoints
        .iter()
        .find_map(|(_, p)| {
            let d = checkpoint::decode_with(&read_file(p).ok()?, opts.encryption.as_ref());
            let ours = d
                .ids
                .is_none_or(|ids| identity.refuses(ids, d.state.lsn).is_none());
            (d.problems.is_empty() && ours)
                .then(|| (d.state, format!("local checkpoint {}", p.display())))
        })
        .or_else(|| {
            segments.first().is_none_or(|s| s.0 == 1).then(|| {
                let empty = State::empty(crate::state::tombstone_retention_us(opts));
                (empty, "local log from LSN 1".to_string())
            })
        });
    // A deleted or truncated newest segment: what it held cannot be named, so automatic
    // recovery would report a loss it cannot measure. Refuse; the operator restores.
    let sound_ckpt_lsn = local_base.as_ref().map_or(0, |(s, _)| s.lsn);
    let newest = segments
        .last()
        .and_then(|(_, p)| read_file(p).ok())
        .and_then(|b| scan_structure(&b, |_, _| {}).ok().map(|(s, _)| s))
        .filter(|s| !matches!(s.end, ScanEnd::Damaged { .. }))
        .map(|s| (s.header.first_lsn, s.last_lsn, s.valid_len));
    if let Some((file, offset, why)) = missing_log(&log_dir, &segments, newest, sound_ckpt_lsn) {
        return Err(crate::Error::Damaged(Damage {
            file,
            offset,
            detail: format!(
                "{why}; automatic recovery does not run because it cannot name what was lost"
            ),
            hint: format!(
                "Nothing was changed. Restore from a backup into a new directory (`amberdb \
                 restore --latest`), or see \"Damaged data directory\" in docs/OPERATIONS.md \
                 ({})",
                data.display()
            ),
        }));
    }
    if let Some((mut state, source)) = local_base {
        let into = staging.join(LOCAL_CANDIDATE);
        let built = copy_local_streams(data, &into, &mut state, opts).and_then(|streams| {
            let mut stepped = vec![];
            let mut stream_error = None;
            let mut r =
                Replayer::new(&mut state, Some(&identity)).with_keys(opts.encryption.as_ref());
            extend_with_local(&mut r, &segments, &streams, &mut stream_error, &mut stepped);
            let n = r.commits;
            match stream_error {
                Some(e) => Err(e),
                None => streams.sync().map(|()| (n, stepped)),
            }
        });
        match built {
            Ok((n, stepped)) => {
                best = Some(Candidate {
                    state,
                    source: format!("{source} + local log"),
                    replayed: n,
                    stepped_over: stepped,
                    streams: into,
                    backup: None,
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "the local stream files do not rebuild; trying the backups");
                stream_problems.push(format!("local stream files: {e}"));
            }
        }
    }

    // Candidate 2: the newest good backup, its archived log, then valid local log after it.
    match BackupRepo::open(repo_path) {
        Ok(repo) => {
            // Only backups and segments of this directory's history.
            let mut backups = repo.list().unwrap_or_default();
            backups.retain(|b| in_history(Some(&identity), b.ids(), b.lsn));
            backups.sort_by_key(|b| std::cmp::Reverse((b.lsn, b.created_at_us)));
            let mut archive = repo.archived_segments().unwrap_or_default();
            archive.retain(|s| in_history(Some(&identity), s.ids(), s.first_lsn));
            // The newest backup whose snapshot is sound; when none is, the archive alone if
            // it is complete from LSN 1 (replayed onto an empty state).
            let base = backups
                .iter()
                .find_map(|b| match load_snapshot_with(&repo, b, &super::NoProgress, opts.encryption.as_ref()) {
                    Ok(state) => Some((
                        state,
                        format!("backup {} (LSN {})", b.id, b.lsn),
                        Some(b),
                    )),
                    Err(e) => {
                        tracing::warn!(backup = %b.id, error = %e, "backup snapshot is damaged; trying an older one");
                        None
                    }
                })
                .or_else(|| {
                    archive.first().filter(|s| s.first_lsn == 1).map(|_| {
                        let why = if backups.is_empty() {
                            "no backup"
                        } else {
                            "every backup damaged"
                        };
                        (State::default(), format!("empty state ({why})"), None)
                    })
                });
            if let Some((mut state, label, backup)) = base {
                let base_lsn = state.lsn;
                let into = staging.join(BACKUP_CANDIDATE);
                let built =
                    backup_streams(&repo, backup, &into, &mut state, opts).and_then(|streams| {
                        let mut stream_error = None;
                        let mut r = Replayer::new(&mut state, Some(&identity))
                            .with_keys(opts.encryption.as_ref());
                        for seg in archive.iter().filter(|s| s.last_lsn > base_lsn) {
                            let Ok(bytes) = repo.read_segment(seg) else {
                                break;
                            };
                            match r.segment(&bytes, seg.first_lsn, seg.ids(), false, &mut |rec| {
                                streams.replay_record(rec, &mut stream_error)
                            }) {
                                Ok(s) if s.scan.end == ScanEnd::Clean => {}
                                _ => break,
                            }
                        }
                        let mut stepped = vec![];
                        if stream_error.is_none() {
                            extend_with_local(
                                &mut r,
                                &segments,
                                &streams,
                                &mut stream_error,
                                &mut stepped,
                            );
                        }
                        let replayed = r.commits;
                        match stream_error {
                            Some(e) => Err(e),
                            None => streams.sync().map(|()| (replayed, stepped)),
                        }
                    });
                match built {
                    Ok((replayed, stepped)) => {
                        if best.as_ref().is_none_or(|c| state.lsn > c.state.lsn) {
                            best = Some(Candidate {
                                state,
                                source: format!("{label} + archived log + local log"),
                                replayed,
                                stepped_over: stepped,
                                streams: into,
                                backup: backup.map(|b| b.id.clone()),
                            });
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the backup's stream files do not rebuild");
                        stream_problems.push(format!("{label}: stream files: {e}"));
                    }
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot use the backup repository for recovery"),
    }
    let Some(Candidate {
        state,
        source,
        replayed,
        stepped_over,
        streams,
        backup: backup_used,
    }) = best
    else {
        // Nothing was changed: the candidates' stream files are not the data directory's.
        let _ = crate::io::remove_dir_all(&staging, &opts.faults);
        let streams = if stream_problems.is_empty() {
            String::new()
        } else {
            format!(" ({})", stream_problems.join("; "))
        };
        return Err(crate::Error::Damaged(Damage {
            file: damage.file.clone(),
            offset: damage.offset,
            detail: format!(
                "{}; automatic recovery found no sound checkpoint and no usable backup in {}{streams}",
                damage.detail,
                repo_path.display()
            ),
            hint: damage.hint.clone(),
        }));
    };
    let known = highest_known_lsn(&segments, &checkpoints);
    let lost = (known > state.lsn).then_some((state.lsn + 1, known));
    // Commits were lost: the LSNs after the recovered one will be reused by new commits, so
    // they start a new timeline (branching at the recovered LSN), never mistaken for the lost
    // ones by archiving or a later restore.
    let new_identity = lost.map(|(a, b)| {
        identity.branch(
            state.lsn,
            &format!("automatic recovery lost LSNs {a}..={b}"),
        )
    });

    let qdir = data
        .join(QUARANTINE_DIR)
        .join(crate::document::now_micros().to_string());
    let mut auto = AutoRecovery {
        damage: damage_text,
        source,
        backup: backup_used,
        lsn: state.lsn,
        commits_replayed: replayed,
        documents: state.doc_count(),
        lost,
        quarantine: qdir,
        quarantined_files: vec![],
        stepped_over,
        new_timeline: new_identity.as_ref().map(|i| i.timeline),
    };

    // Stage it like a restore: the new state written and synced first, then a marker that
    // plain `open` refuses, then the old files moved to quarantine, then the new state put in
    // place, then the marker removed. A crash or a full disk at any point leaves either the
    // untouched original files or a marker that the next automatic open finishes from.
    // The chosen candidate's stream files become the staged ones; the other's go.
    crate::io::rename(
        &streams.join(STREAMS_DIR),
        &staging.join(STREAMS_DIR),
        &opts.faults,
    )
    .context(|| format!("moving {} into {}", streams.display(), staging.display()))?;
    // A rename is durable once both directories are synced.
    sync_dir(&streams, &opts.faults).context(|| format!("syncing {}", streams.display()))?;
    sync_dir(&staging, &opts.faults).context(|| format!("syncing {}", staging.display()))?;
    for c in [LOCAL_CANDIDATE, BACKUP_CANDIDATE] {
        let dir = staging.join(c);
        if dir.exists() {
            crate::io::remove_dir_all(&dir, &opts.faults)
                .context(|| format!("removing {}", dir.display()))?;
        }
    }
    sync_dir(&staging, &opts.faults).context(|| format!("syncing {}", staging.display()))?;
    let ids = new_identity.as_ref().unwrap_or(&identity).ids();
    checkpoint::write(
        &staging,
        &state,
        ids,
        opts.checkpoint_compression_level,
        opts.encryption.as_ref(),
        &opts.faults,
    )
    .context(|| format!("writing the recovered checkpoint in {}", staging.display()))?;
    if let Some(new) = &new_identity {
        // Installed by `finish_staged` with the checkpoint, after the old files moved.
        new.save(&staging, &opts.faults)?;
    }
    sync_dir(data, &opts.faults).context(|| format!("syncing {}", data.display()))?;
    let marker = serde_json::to_vec_pretty(&auto).map_err(|e| crate::Error::Repository {
        location: data.display().to_string(),
        detail: format!("encoding the recovery marker: {e}"),
    })?;
    write_atomic(&data.join(RECOVERY_MARKER), &marker, &opts.faults)
        .context(|| format!("writing {}", data.join(RECOVERY_MARKER).display()))?;
    finish_staged(data, &mut auto, opts)?;
    tracing::warn!(lsn = auto.lsn, source = %auto.source, lost = ?auto.lost, quarantine = %auto.quarantine.display(), "automatic recovery complete");
    let mut rec = recover(
        data,
        &opts.faults,
        crate::state::tombstone_retention_us(opts),
        opts.encryption.as_ref(),
    )?;
    rec.report.auto = Some(auto);
    Ok(rec)
}

/// Marker present while automatic recovery swaps the recovered state in; holds the report.
pub const RECOVERY_MARKER: &str = "RECOVERY_IN_PROGRESS";
/// Where automatic recovery stages the recovered checkpoint.
pub const STAGING_DIR: &str = ".recovering";

/// Moves the original files to quarantine and the staged checkpoint into place, then removes
/// the marker. Idempotent: an interrupted run is finished by running it again.
fn finish_staged(data: &Path, auto: &mut AutoRecovery, opts: &Options) -> Result<()> {
    let staging = data.join(STAGING_DIR);
    let ckpt_dir = data.join(CHECKPOINT_DIR);
    let staged = list_checkpoints(&staging).context(|| format!("listing {}", staging.display()))?;
    if let Some((_, staged_ckpt)) = staged.first() {
        // Not yet installed: everything in log/ and checkpoints/ is an original file.
        for sub in [LOG_DIR, CHECKPOINT_DIR] {
            let dir = data.join(sub);
            let to_dir = auto.quarantine.join(sub);
            crate::io::create_dir_all(&to_dir, &opts.faults)
                .context(|| format!("creating {}", to_dir.display()))?;
            if dir.exists() {
                for from in crate::io::read_dir(&dir, &opts.faults)
                    .context(|| format!("reading {}", dir.display()))?
                {
                    let to = to_dir.join(from.file_name().unwrap_or_default());
                    crate::io::rename(&from, &to, &opts.faults)
                        .context(|| format!("moving {} to {}", from.display(), to.display()))?;
                    auto.quarantined_files.push(to);
                }
                sync_dir(&dir, &opts.faults).context(|| format!("syncing {}", dir.display()))?;
            }
            sync_dir(&to_dir, &opts.faults).context(|| format!("syncing {}", to_dir.display()))?;
        }
        sync_dir(&auto.quarantine, &opts.faults)
            .context(|| format!("syncing {}", auto.quarantine.display()))?;
        install_staged_streams(data, auto, opts)?;
        crate::io::create_dir_all(&ckpt_dir, &opts.faults)
            .context(|| format!("creating {}", ckpt_dir.display()))?;
        // A new timeline's record goes in before its checkpoint (the old timeline's record
        // would refuse it); rewriting it when resuming is harmless.
        let staged_identity = staging.join(IDENTITY_FILE);
        if staged_identity.exists() {
            let bytes = read_file(&staged_identity)
                .context(|| format!("reading {}", staged_identity.display()))?;
            write_atomic(&data.join(IDENTITY_FILE), &bytes, &opts.faults)
                .context(|| format!("writing {}", data.join(IDENTITY_FILE).display()))?;
        }
        let to = ckpt_dir.join(staged_ckpt.file_name().unwrap_or_default());
        crate::io::rename(staged_ckpt, &to, &opts.faults)
            .context(|| format!("moving {} to {}", staged_ckpt.display(), to.display()))?;
        // A rename is durable once both directories are synced.
        sync_dir(&ckpt_dir, &opts.faults).context(|| format!("syncing {}", ckpt_dir.display()))?;
        sync_dir(&staging, &opts.faults).context(|| format!("syncing {}", staging.display()))?;
    } else {
        // Installed by the interrupted run; report what it had moved.
        auto.quarantined_files = files_under(&auto.quarantine);
    }
    if staging.exists() {
        crate::io::remove_dir_all(&staging, &opts.faults)
            .context(|| format!("removing {}", staging.display()))?;
    }
    crate::io::remove_file(&data.join(RECOVERY_MARKER), &opts.faults)
        .context(|| format!("removing {}", data.join(RECOVERY_MARKER).display()))?;
    sync_dir(data, &opts.faults).context(|| format!("syncing {}", data.display()))
}

/// Moves the data directory's `streams/` to quarantine (as one directory) and the staged
/// one into its place; before the staged checkpoint is installed. Idempotent: while the
/// staged `streams/` is there, the data directory's is the original.
fn install_staged_streams(data: &Path, auto: &mut AutoRecovery, opts: &Options) -> Result<()> {
    let staged = data.join(STAGING_DIR).join(STREAMS_DIR);
    if !staged.exists() {
        // Installed by the interrupted run (every recovery stages one, empty or not).
        return Ok(());
    }
    let live = data.join(STREAMS_DIR);
    if live.exists() {
        let to = auto.quarantine.join(STREAMS_DIR);
        crate::io::rename(&live, &to, &opts.faults)
            .context(|| format!("moving {} to {}", live.display(), to.display()))?;
        sync_dir(&auto.quarantine, &opts.faults)
            .context(|| format!("syncing {}", auto.quarantine.display()))?;
        sync_dir(data, &opts.faults).context(|| format!("syncing {}", data.display()))?;
        auto.quarantined_files.push(to);
    }
    crate::io::rename(&staged, &live, &opts.faults)
        .context(|| format!("moving {} to {}", staged.display(), live.display()))?;
    sync_dir(data, &opts.faults).context(|| format!("syncing {}", data.display()))?;
    let staging = data.join(STAGING_DIR);
    sync_dir(&staging, &opts.faults).context(|| format!("syncing {}", staging.display()))
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    if dir.join(STREAMS_DIR).is_dir() {
        out.push(dir.join(STREAMS_DIR));
    }
    for sub in [LOG_DIR, CHECKPOINT_DIR] {
        if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
            out.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()));
        }
    }
    out.sort();
    out
}

/// Finishes an automatic recovery that was interrupted after its marker was written.
pub(crate) fn resume_staged(data: &Path, opts: &Options) -> Result<Recovered> {
    let marker = data.join(RECOVERY_MARKER);
    let bytes = crate::io::read(&marker, &opts.faults)
        .context(|| format!("reading {}", marker.display()))?;
    let mut auto: AutoRecovery = serde_json::from_slice(&bytes).map_err(|e| {
        crate::Error::Damaged(Damage {
            file: marker.clone(),
            offset: 0,
            detail: format!("recovery marker does not parse: {e}"),
            hint: "an automatic recovery was interrupted; see \"Damaged data directory\" in docs/OPERATIONS.md".into(),
        })
    })?;
    // The marker names the quarantine where the directory was then; it is this directory's.
    if let Some(name) = auto.quarantine.file_name() {
        auto.quarantine = data.join(QUARANTINE_DIR).join(name);
    }
    tracing::warn!(quarantine = %auto.quarantine.display(), "finishing an interrupted automatic recovery");
    finish_staged(data, &mut auto, opts)?;
    let mut rec = recover(
        data,
        &opts.faults,
        crate::state::tombstone_retention_us(opts),
        opts.encryption.as_ref(),
    )?;
    rec.report.auto = Some(auto);
    Ok(rec)
}

/// Loads the slots for `open`. With `RecoveryMode::Auto`, a damaged slot file (rebuildable
/// metadata) is copied to quarantine and replaced by slots rebuilt from the recovery
/// repository, starting at LSN 0 (the log is kept until that repository archives it again,
/// which is idempotent); the report says so.
pub(crate) fn load_slots_on_open(
    data: &Path,
    opts: &Options,
    identity: &Identity,
    report: &mut crate::recovery::RecoveryReport,
) -> Result<Slots> {
    let damage = match Slots::load(data) {
        Err(crate::Error::Damaged(d)) => d,
        // Slots of an earlier timeline (after a recovery that lost commits) count only the
        // commits this history shares with it, so the new timeline's log is kept until it is
        // archived too.
        Ok(mut slots) => {
            if slots.follow_timeline(identity) {
                slots.save(data, &opts.faults)?;
            }
            return Ok(slots);
        }
        other => return other,
    };
    let crate::options::RecoveryMode::Auto { repo } = &opts.recovery else {
        return Err(crate::Error::Damaged(damage));
    };
    tracing::warn!(file = %damage.file.display(), detail = %damage.detail, "slot file is damaged; rebuilding it");
    let qdir = data
        .join(QUARANTINE_DIR)
        .join(crate::document::now_micros().to_string());
    crate::io::create_dir_all(&qdir, &opts.faults)
        .context(|| format!("creating {}", qdir.display()))?;
    let kept = qdir.join(damage.file.file_name().unwrap_or_default());
    let bytes = read_file(&damage.file).context(|| format!("reading {}", damage.file.display()))?;
    write_atomic(&kept, &bytes, &opts.faults).context(|| format!("writing {}", kept.display()))?;
    let mut slots = Slots::default();
    match BackupRepo::open(repo) {
        Ok(r) => {
            slots.attach(&r, Some(identity.ids()));
        }
        Err(e) => tracing::warn!(error = %e, "recovery repository does not open; no slot rebuilt"),
    }
    slots.save(data, &opts.faults)?;
    report.slots_rebuilt = Some(crate::recovery::SlotsRebuilt {
        damage: format!("{}: {}", damage.file.display(), damage.detail),
        quarantined: kept,
        repos: slots
            .repos
            .iter()
            .map(|s| s.repository_id.clone())
            .collect(),
    });
    Ok(slots)
}

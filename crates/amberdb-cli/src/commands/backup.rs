//! `amberdb backup create|list|verify|prune|detach`.

use std::path::PathBuf;
use std::time::Duration;

use amberdb::{BackupRepo, RetentionPolicy};

use super::{print_json, DataArgs};
use crate::exit::{CliError, CliResult, ERROR};
use crate::progress::CliProgress;

#[derive(clap::Subcommand, Debug)]
pub enum Backup {
    /// Take an online backup of a data directory into a repository (created if missing).
    ///
    /// The data directory then remembers the repository and keeps its log until archived
    /// there, so point-in-time restore between any two backups works.
    Create(CreateArgs),
    /// List the backups in a repository, oldest first; damaged and incomplete ones are
    /// listed as such.
    List(RepoArgs),
    /// Check a repository: manifests, files, sizes, hashes and log continuity; with
    /// --read-data also decode every snapshot and segment and check every document.
    Verify(VerifyArgs),
    /// Remove backups a retention policy does not keep (restic semantics), and archived log
    /// no kept backup needs.
    Prune(PruneArgs),
    /// Stop keeping the data directory's log for a repository.
    Detach(DetachArgs),
}

#[derive(clap::Args, Debug)]
pub struct RepoArgs {
    /// The backup repository directory.
    #[arg(long, env = "AMBERDB_REPO", value_name = "DIR")]
    pub repo: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub repo: RepoArgs,
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Only this backup (the archive is always checked).
    pub id: Option<String>,
    /// Decode every snapshot and segment and check every document's SHA-256.
    #[arg(long)]
    pub read_data: bool,
    /// Also check that the archive reaches as far as this data directory's slot says it
    /// archived (read only; the directory is not opened).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub keys: super::KeyArgs,
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Rules are OR-ed; the newest backup is always kept. Periods are UTC calendar hours/days/ISO weeks/months, and only periods that contain a backup count.\nDurations: 90s, 30m, 12h, 7d, 2w.\nExample: amberdb backup prune --repo /backups/game --keep-last 3 --keep-daily 7 --keep-weekly 4 --dry-run"
)]
pub struct PruneArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Keep the N newest backups.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the N newest hours that have one.
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// ... of each of the N newest days.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// ... of each of the N newest ISO weeks.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// ... of each of the N newest months.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep every backup within this long of the newest one.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub keep_within: Option<Duration>,
    /// Keep what point-in-time restore to any moment in this window needs.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub pitr_window: Option<Duration>,
    /// Show the plan without removing anything.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(clap::Args, Debug)]
pub struct DetachArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The repository to release.
    #[arg(long, value_name = "DIR")]
    pub repo: PathBuf,
}

/// Parses `90s`, `30m`, `12h`, `7d`, `2w` (or plain seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 30m, 12h, 7d or 2w"))?;
    let secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {s:?}; use s, m, h, d or w"
            ))
        }
    };
    Ok(Duration::from_secs(n * secs))
}

pub fn run(b: Backup) -> CliResult {
    match b {
        Backup::Create(a) => create(a),
        Backup::List(a) => list(a),
        Backup::Verify(a) => verify(a),
        Backup::Prune(a) => prune(a),
        Backup::Detach(a) => detach(a),
    }
}

fn create(a: CreateArgs) -> CliResult {
    let repo = BackupRepo::open_or_init(&a.repo.repo)?;
    let db = a.data.open()?;
    let progress = CliProgress::new(a.repo.json);
    let m = db.backup_with(&repo, &progress)?;
    db.close()?;
    if a.repo.json {
        print_json(&serde_json::to_value(&m).unwrap_or_default());
    } else {
        println!(
            "backup {} at LSN {} ({}): {} documents in {} collections, snapshot {} bytes stored",
            m.id,
            m.lsn,
            m.commit_time,
            m.total_documents(),
            m.documents.len(),
            m.files.iter().map(|f| f.stored_size).sum::<u64>()
        );
    }
    Ok(())
}

fn list(a: RepoArgs) -> CliResult {
    let repo = BackupRepo::open(&a.repo)?;
    let entries = repo.entries()?;
    if a.json {
        // The same serializer as `GET /v1/admin/backups`: a complete backup is its manifest
        // plus "status" and "stored_bytes"; any other is id, status, problem.
        let out: Vec<serde_json::Value> = entries
            .iter()
            .map(amberdb_server::api::backup_json)
            .collect();
        print_json(&serde_json::Value::Array(out));
        return Ok(());
    }
    println!(
        "{:<28} {:>10} {:<28} {:>10} {:>12}",
        "ID", "LSN", "COMMIT TIME", "DOCUMENTS", "STORED"
    );
    for e in &entries {
        let Some(m) = &e.manifest else {
            let what = match e.status {
                amberdb::backup::BackupState::Incomplete => "INCOMPLETE",
                _ => "DAMAGED",
            };
            println!(
                "{:<28} {what}: {}",
                e.id,
                e.problem.as_deref().unwrap_or_default()
            );
            continue;
        };
        println!(
            "{:<28} {:>10} {:<28} {:>10} {:>12}",
            m.id,
            m.lsn,
            m.commit_time,
            m.total_documents(),
            m.files.iter().map(|f| f.stored_size).sum::<u64>()
        );
    }
    let archive = repo.archived_segments()?;
    match (archive.first(), archive.last()) {
        (Some(f), Some(l)) => println!(
            "archived log: {} segments, LSN {}..={}",
            archive.len(),
            f.first_lsn,
            l.last_lsn
        ),
        _ => println!("archived log: empty"),
    }
    Ok(())
}

fn verify(a: VerifyArgs) -> CliResult {
    let repo = BackupRepo::open(&a.repo.repo)?;
    let progress = CliProgress::new(a.repo.json);
    let keys = a.keys.keyring()?;
    let mut r = repo.verify_with(a.id.as_deref(), a.read_data, &progress, keys.as_ref())?;
    if let Some(data) = &a.data {
        repo.verify_against_data_dir(data, &mut r)?;
    }
    if a.repo.json {
        print_json(&serde_json::to_value(&r).unwrap_or_default());
    } else {
        println!(
            "checked {} backups and {} archived segments{}",
            r.backups,
            r.segments,
            if r.read_data {
                format!(", {} documents decoded", r.documents_checked)
            } else {
                " (structure only; --read-data decodes everything)".into()
            }
        );
        if !r.key_ids.is_empty() {
            println!("encryption key ids needed: {}", r.key_ids.join(", "));
        }
        for p in &r.contents_not_checked {
            println!("note: {}: {}", p.file.display(), p.detail);
        }
        for p in &r.problems {
            println!("PROBLEM {}: {}", p.file.display(), p.detail);
        }
        if r.is_clean() {
            println!("ok: no problems found");
        }
    }
    if r.is_clean() {
        Ok(())
    } else {
        Err(CliError::new(
            ERROR,
            format!(
                "{} problem(s) found in {}",
                r.problems.len(),
                repo.location()
            ),
        ))
    }
}

fn prune(a: PruneArgs) -> CliResult {
    let policy = RetentionPolicy {
        keep_last: a.keep_last,
        keep_hourly: a.keep_hourly,
        keep_daily: a.keep_daily,
        keep_weekly: a.keep_weekly,
        keep_monthly: a.keep_monthly,
        keep_within: a.keep_within,
    };
    if policy.is_empty() {
        return Err(CliError::usage(
            "refusing to prune without a policy: give at least one --keep-* rule",
        ));
    }
    let repo = BackupRepo::open(&a.repo.repo)?;
    let plan = repo.prune(&policy, a.pitr_window, a.dry_run)?;
    if a.repo.json {
        print_json(&serde_json::to_value(&plan).unwrap_or_default());
        return Ok(());
    }
    let verb = if a.dry_run { "would remove" } else { "removed" };
    for e in &plan.keep {
        println!(
            "keep   {:<28} {}  ({})",
            e.id,
            e.created_at,
            e.reasons.join(", ")
        );
    }
    for e in &plan.remove {
        println!("{verb} {:<28} {}", e.id, e.created_at);
    }
    println!(
        "{verb} {} archived segment(s) no kept backup needs",
        plan.remove_segments.len()
    );
    for id in &plan.remove_incomplete {
        println!("{verb} {id:<28} (incomplete: interrupted before its manifest was written)");
    }
    for id in &plan.in_progress {
        println!("left   {id:<28} (incomplete: still being written)");
    }
    Ok(())
}

fn detach(a: DetachArgs) -> CliResult {
    let repo = BackupRepo::open(&a.repo)?;
    let db = a.data.open()?;
    let was = db.detach(repo.id())?;
    db.close()?;
    if was {
        println!(
            "detached {}: the data directory no longer keeps its log for it",
            repo.location()
        );
        Ok(())
    } else {
        Err(CliError::new(
            ERROR,
            format!(
                "{} is not attached to {}",
                repo.location(),
                a.data.data.display()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_duration("12"), Ok(Duration::from_secs(12)));
        assert!(parse_duration("3y").is_err());
        assert!(parse_duration("h").is_err());
    }
}

//! `amberdb restore`: restore a backup, a time or an LSN into a new directory.

use std::path::PathBuf;

use amberdb::backup::{plan_restore, restore_with};
use amberdb::{BackupRepo, RestoreTarget};

use super::print_json;
use crate::exit::{CliError, CliResult};
use crate::progress::CliProgress;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  amberdb restore --repo /backups/game --to-time 2026-11-21T02:40:00Z --into ./restored --dry-run\n  amberdb restore --repo /backups/game --to-lsn 1234 --exclusive --into ./before-1234\n\nThe target directory must not exist (or be empty); restore never writes over data. Use `amberdb log --repo R` to pick a point."
)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["backup", "to_time", "to_lsn", "latest"])))]
pub struct Args {
    /// The backup repository.
    #[arg(long, env = "AMBERDB_REPO", value_name = "DIR")]
    pub repo: PathBuf,
    /// Restore exactly this backup.
    #[arg(long, value_name = "ID")]
    pub backup: Option<String>,
    /// Restore the state at this time (RFC 3339, e.g. 2026-11-21T02:40:00Z).
    #[arg(long, value_name = "TIME")]
    pub to_time: Option<String>,
    /// Restore the state right after this commit.
    #[arg(long, value_name = "LSN")]
    pub to_lsn: Option<u64>,
    /// Restore the newest backup plus everything archived after it.
    #[arg(long)]
    pub latest: bool,
    /// Stop just before the target commit/time instead of including it.
    #[arg(long)]
    pub exclusive: bool,
    /// The new data directory.
    #[arg(long, value_name = "DIR")]
    pub into: PathBuf,
    /// Print the plan (backup, segments, LSN range) and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub keys: super::KeyArgs,
}

/// Parses an RFC 3339 time into microseconds since the epoch.
pub fn parse_time(s: &str) -> Result<u64, CliError> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            CliError::usage(format!(
                "--to-time {s:?} is not an RFC 3339 time (like 2026-11-21T02:40:00Z): {e}"
            ))
        })?;
    u64::try_from(t.unix_timestamp_nanos() / 1000)
        .map_err(|_| CliError::usage(format!("--to-time {s:?} is before 1970")))
}

pub fn run(a: Args) -> CliResult {
    let target = match (&a.backup, &a.to_time, a.to_lsn, a.latest) {
        (Some(id), ..) => RestoreTarget::Backup(id.clone()),
        (_, Some(t), ..) => RestoreTarget::Time(parse_time(t)?),
        (_, _, Some(n), _) => RestoreTarget::Lsn(n),
        _ => RestoreTarget::Latest,
    };
    let repo = BackupRepo::open(&a.repo)?;
    if a.dry_run {
        let plan = plan_restore(&repo, &target, a.exclusive)?;
        if a.json {
            print_json(&serde_json::to_value(&plan).unwrap_or_default());
        } else {
            println!(
                "target:   {}{}",
                plan.target,
                if plan.exclusive { " (exclusive)" } else { "" }
            );
            println!(
                "backup:   {} at LSN {} ({})",
                plan.backup.id, plan.backup.lsn, plan.backup.commit_time
            );
            match plan.segments.last() {
                Some(last) => {
                    let to = plan.replay_to_lsn.map_or(
                        format!("the target time (segments end at LSN {})", last.last_lsn),
                        |t| format!("LSN {t}"),
                    );
                    println!(
                        "replay:   {} archived segment(s), from LSN {} to {to}",
                        plan.segments.len(),
                        plan.replay_from_lsn
                    );
                }
                None => println!("replay:   nothing (the backup is the target)"),
            }
            for sk in &plan.skipped {
                println!("skipped:  backup {}: {}", sk.id, sk.reason);
            }
            for n in &plan.notes {
                println!("note:     {n}");
            }
            println!("into:     {} (nothing written: dry run)", a.into.display());
        }
        return Ok(());
    }
    let progress = CliProgress::new(a.json);
    let keys = a.keys.keyring()?;
    let report = restore_with(
        &repo,
        &target,
        a.exclusive,
        &a.into,
        &progress,
        keys.as_ref(),
    )?;
    if a.json {
        print_json(&serde_json::to_value(&report).unwrap_or_default());
    } else {
        println!("restored {} into {}", report.target, report.into.display());
        println!(
            "  source backup:  {} (LSN {})",
            report.backup_id, report.backup_lsn
        );
        match report.replayed_lsn_range {
            Some((f, l)) => println!(
                "  log replayed:   LSN {f}..={l} ({} commits, {} segments)",
                report.commits_replayed, report.segments_replayed
            ),
            None => println!("  log replayed:   none"),
        }
        println!(
            "  reached:        LSN {} at {}",
            report.lsn, report.commit_time
        );
        for (c, n) in &report.documents {
            println!("  {c}: {n} documents");
        }
        println!(
            "  verified:       {}",
            if report.verified { "ok" } else { "FAILED" }
        );
        for sk in &report.skipped {
            println!("  skipped:        backup {}: {}", sk.id, sk.reason);
        }
        for n in &report.notes {
            println!("  note:           {n}");
        }
    }
    Ok(())
}

//! `amberdb verify`: check every checksum of a data directory without modifying it.

use super::DataArgs;
use crate::exit::{CliError, CliResult, ERROR};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit status: 0 when clean (a torn tail left by a crash is normal and only noted), 1 when any problem is found."
)]
pub struct Args {
    #[command(flatten)]
    pub data: DataArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> CliResult {
    if !a.data.data.is_dir() {
        return Err(CliError::new(
            ERROR,
            format!("{} is not a directory", a.data.data.display()),
        ));
    }
    let report = amberdb::verify_dir_with(&a.data.data, a.data.keys.keyring()?.as_ref())?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        let range = report
            .log_lsn_range
            .map_or("empty".to_string(), |(a, b)| format!("LSN {a}..={b}"));
        println!(
            "checked {} segments ({range}), {} seals, {} commits, {} checkpoints, {} documents, {} blob files, {} stream entries",
            report.segments,
            report.seals,
            report.commits,
            report.checkpoints,
            report.documents_checked,
            report.blobs_checked,
            report.stream_entries_checked
        );
        if let Some(t) = &report.torn_tail {
            println!(
                "note: torn tail of {} bytes at {}:{} (an interrupted write; the next open cuts it)",
                t.bytes,
                t.file.display(),
                t.offset
            );
        }
        for p in &report.contents_not_checked {
            println!("note: {}: {}", p.file.display(), p.detail);
        }
        for p in &report.problems {
            match p.offset {
                Some(o) => println!("PROBLEM {}:{}: {}", p.file.display(), o, p.detail),
                None => println!("PROBLEM {}: {}", p.file.display(), p.detail),
            }
        }
        if report.is_clean() {
            println!("ok: no problems found");
        }
    }
    if report.is_clean() {
        Ok(())
    } else {
        Err(
            CliError::new(ERROR, format!("{} problem(s) found", report.problems.len()))
                .hint("see \"Damaged data directory\" in docs/OPERATIONS.md"),
        )
    }
}

//! `amberdb migrate`: every document of a collection moved to one schema version in one
//! atomic, logged commit (or a dry run that reports), on a data directory or through a
//! server (docs/SCHEMAS.md, "Batch migration").

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{print_json, Target, TargetArgs};
use crate::client::segment;
use crate::exit::{CliError, CliResult, ERROR};

#[derive(clap::Args, Debug)]
#[command(after_help = "Check first, then migrate:
  amberdb migrate --data ./db players --to 2 --dry-run
  amberdb migrate --data ./db players --to 2
  amberdb migrate --url http://127.0.0.1:7070 players --to 2

The dry run prints documents per stored version, how many change, failures (up to 20 samples with
key and error), bytes before and after, and, where every migration on the way has a `down`, the
documents whose down(up(doc)) differs. The real run writes every rewritten document and the spec's
new version in ONE commit (reason: migration): if any document fails, nothing is written and every
failure is listed. To roll back: `amberdb migrate ... --to <older version>` (through `down`), or
`amberdb revert` of the collection to the LSN before the migration (see `amberdb log`).

Exit status: 0 done (or a clean dry run), 1 when documents fail or the migration is refused,
2 bad arguments.")]
pub struct Args {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Collection name.
    pub collection: String,
    /// The schema version to move every document to.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub to: u32,
    /// Only check and report; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON only (no progress lines).
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> CliResult {
    amberdb::validate_collection(&a.collection)?;
    let started = Instant::now();
    let ticker = (!a.json).then(|| ticker(&a));
    let report: Value = match a.target.open_existing()? {
        Target::Local(db) => {
            let r = db.migrate(
                &a.collection,
                amberdb::schema::MigrateOptions {
                    to: a.to,
                    dry_run: a.dry_run,
                },
            );
            db.close()?;
            serde_json::to_value(r?).map_err(|e| CliError::new(ERROR, e.to_string()))?
        }
        Target::Remote(client) => {
            let path = format!("/v1/collections/{}/migrate", segment(&a.collection));
            let body = serde_json::json!({"to": a.to, "dry_run": a.dry_run});
            let reply = client.send(
                "POST",
                &path,
                &[("content-type", "application/json".into())],
                Some(body.to_string().into_bytes()),
            )?;
            if reply.status == 422 {
                // The report of a failed run travels in the error's details.
                let v: Value = serde_json::from_str(&reply.body).unwrap_or_default();
                match v["error"]["details"]["report"].clone() {
                    Value::Null => crate::client::check(reply)?.json()?,
                    r => r,
                }
            } else {
                crate::client::check(reply)?.json()?
            }
        }
    };
    drop(ticker);
    if a.json {
        print_json(&report);
    } else {
        summarize(&report, started.elapsed());
    }
    let failures = report["failure_count"].as_u64().unwrap_or(0);
    if failures > 0 {
        return Err(CliError::new(
            ERROR,
            format!(
                "{failures} document(s) of {} cannot be migrated to version {}{}",
                a.collection,
                a.to,
                if a.dry_run {
                    ""
                } else {
                    "; nothing was written"
                }
            ),
        )
        .hint("fix the documents or the migration's steps, then run again (--dry-run to check)"));
    }
    Ok(())
}

/// A line on stderr every few seconds while the migration runs (the engine does it in one
/// call: one commit, all or nothing), so a long one is visibly alive.
fn ticker(a: &Args) -> std::sync::mpsc::Sender<()> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let what = format!(
        "{} {} to schema version {}",
        if a.dry_run { "checking" } else { "migrating" },
        a.collection,
        a.to
    );
    eprintln!("{what} ...");
    std::thread::spawn(move || {
        let start = Instant::now();
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            rx.recv_timeout(Duration::from_secs(5))
        {
            eprintln!("{what}: {} s", start.elapsed().as_secs());
        }
    });
    tx
}

fn summarize(r: &Value, took: Duration) {
    let dry = r["dry_run"].as_bool().unwrap_or(false);
    println!(
        "{} {}: schema version {} -> {}, {} documents ({}), {} {}",
        if dry { "dry run of" } else { "migration of" },
        r["collection"].as_str().unwrap_or(""),
        r["from"],
        r["to"],
        r["documents"],
        r["by_stored_version"]
            .as_object()
            .map(|m| m
                .iter()
                .map(|(v, n)| format!("{n} at v{v}"))
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default(),
        r["would_change"],
        if dry { "would change" } else { "change" },
    );
    println!("bytes {} -> {}", r["bytes_before"], r["bytes_after"]);
    if r["round_trip_checked"].as_bool() == Some(true) {
        println!(
            "round trip down(up(doc)): {} failure(s)",
            r["round_trip_failure_count"]
        );
    } else {
        println!("round trip not checked: a migration on the way has no down");
    }
    for f in r["failures"].as_array().into_iter().flatten() {
        println!(
            "failed: {}: {}",
            f["key"].as_str().unwrap_or(""),
            f["error"].as_str().unwrap_or("")
        );
    }
    for k in r["round_trip_failures"].as_array().into_iter().flatten() {
        println!("round trip differs: {}", k.as_str().unwrap_or(""));
    }
    match r["lsn"].as_u64() {
        Some(lsn) => println!(
            "written in one commit at LSN {lsn} ({:.1} s)",
            took.as_secs_f64()
        ),
        None if dry => println!("nothing written (dry run, {:.1} s)", took.as_secs_f64()),
        None => println!("nothing written"),
    }
}

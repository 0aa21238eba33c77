//! `amberdb revert` and `amberdb undo`: put documents back to an earlier state, or undo one
//! commit, as a new logged transaction, in a data directory or through a server.

use super::restore::parse_time;
use super::{print_json, Target, TargetArgs};
use crate::exit::{CliError, CliResult};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Every document in scope that differs from its state at the target is written back (or
deleted if it did not exist then) in ONE new transaction, logged with reason `revert` and
the target LSN: nothing is rewritten, and the revert can itself be reverted or undone.
Only documents changed after the target are looked at. The target must be inside the
history window (history.retention); older targets fail with history_lost: then restore a
backup into a new directory with `amberdb restore`.

Examples:
  # what would change for player 1234 if put back as of 02:40, then do it
  amberdb revert --url http://127.0.0.1:7070 players --key 1234 --to-time 2026-11-21T02:40:00Z --dry-run
  amberdb revert --url http://127.0.0.1:7070 players --key 1234 --to-time 2026-11-21T02:40:00Z
  # every inventory under a prefix, to a commit picked with `amberdb log`
  amberdb revert --data ./amberdb-data inventories --prefix guild-7/ --to-lsn 812
  # the whole database (admin scope through a server)
  amberdb revert --url http://127.0.0.1:7070 --all --to-lsn 812

Prints the report: target_lsn, commit_lsn (null for a dry run or when nothing differed) and
every document changed with version_before, version_after and action
(restored|deleted|recreated). Exit status: 0 done, 1 conflict or error, 2 usage.")]
pub struct Args {
    #[command(flatten)]
    pub target: TargetArgs,
    /// The collection (omit with --all).
    #[arg(required_unless_present = "all")]
    pub collection: Option<String>,
    /// Only this document.
    #[arg(long, conflicts_with_all = ["prefix", "all"])]
    pub key: Option<String>,
    /// Only documents whose keys start with this.
    #[arg(long, conflicts_with = "all")]
    pub prefix: Option<String>,
    /// Every collection of the database.
    #[arg(long, conflicts_with = "collection")]
    pub all: bool,
    /// Target time, RFC 3339 (the state after the last commit at or before it).
    #[arg(
        long,
        value_name = "TIME",
        required_unless_present = "to_lsn",
        conflicts_with = "to_lsn"
    )]
    pub to_time: Option<String>,
    /// Target LSN (the state right after that commit; 0 = before the first).
    #[arg(long, value_name = "LSN")]
    pub to_lsn: Option<u64>,
    /// Only report what would change.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(a: Args) -> CliResult {
    let report = match a.target.open()? {
        Target::Local(db) => {
            let at = match (&a.to_time, a.to_lsn) {
                (Some(t), _) => amberdb::revert::At::Time(parse_time(t)?),
                (None, Some(n)) => amberdb::revert::At::Lsn(n),
                (None, None) => return Err(CliError::usage("give --to-time or --to-lsn")),
            };
            let scope = match (&a.collection, &a.key, &a.prefix) {
                (Some(c), Some(k), _) => amberdb::Scope::Key {
                    collection: c.clone(),
                    key: k.clone(),
                },
                (Some(c), None, Some(p)) => amberdb::Scope::Prefix {
                    collection: c.clone(),
                    prefix: p.clone(),
                },
                (Some(c), None, None) => amberdb::Scope::Collection {
                    collection: c.clone(),
                },
                (None, ..) => amberdb::Scope::All,
            };
            let r = db.revert(&scope, at, amberdb::RevertOptions { dry_run: a.dry_run });
            db.close()?;
            serde_json::to_value(r?).unwrap_or_default()
        }
        Target::Remote(client) => {
            let mut body = serde_json::json!({"dry_run": a.dry_run});
            for (k, v) in [
                ("collection", &a.collection),
                ("key", &a.key),
                ("prefix", &a.prefix),
                ("to_time", &a.to_time),
            ] {
                if let Some(v) = v {
                    body[k] = v.clone().into();
                }
            }
            if let Some(n) = a.to_lsn {
                body["to_lsn"] = n.into();
            }
            let headers = [("content-type", "application/json".to_string())];
            client
                .call(
                    "POST",
                    "/v1/revert",
                    &headers,
                    Some(body.to_string().into_bytes()),
                )?
                .json()?
        }
    };
    print_json(&report);
    Ok(())
}

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Each document the commit touched goes back to its state just before it (its previous
version, or absent), in ONE new transaction logged with reason `undo`. If any of them was
written after that commit, the undo is refused and every such document is printed
(`conflict:` lines with the version the commit left and the current one); --force undoes
anyway, dropping those later changes from the current state (they stay in the history).

Examples:
  amberdb log --data ./amberdb-data --from-time 2026-11-21T02:00:00Z   # pick the commit
  amberdb undo --url http://127.0.0.1:7070 901 --dry-run
  amberdb undo --url http://127.0.0.1:7070 901

Exit status: 0 done, 1 conflict or error, 2 usage.")]
pub struct UndoArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// LSN of the commit to undo.
    pub lsn: u64,
    /// Only report what would change.
    #[arg(long)]
    pub dry_run: bool,
    /// Undo even documents written since.
    #[arg(long)]
    pub force: bool,
}

pub fn run_undo(a: UndoArgs) -> CliResult {
    let report = match a.target.open()? {
        Target::Local(db) => {
            let r = db.undo(
                a.lsn,
                amberdb::UndoOptions {
                    dry_run: a.dry_run,
                    force: a.force,
                },
            );
            db.close()?;
            if let Err(amberdb::Error::Conflict(cs)) = &r {
                for c in cs {
                    eprintln!(
                        "conflict: {}/{} was written since (the commit left version {}, now {})",
                        c.collection, c.key, c.expected, c.actual
                    );
                }
            }
            serde_json::to_value(r?).unwrap_or_default()
        }
        Target::Remote(client) => {
            let body = serde_json::json!({"lsn": a.lsn, "dry_run": a.dry_run, "force": a.force});
            let headers = [("content-type", "application/json".to_string())];
            client
                .call(
                    "POST",
                    "/v1/undo",
                    &headers,
                    Some(body.to_string().into_bytes()),
                )?
                .json()?
        }
    };
    print_json(&report);
    Ok(())
}

//! `amberdb log`: list commits (time, LSN, documents touched) to pick a restore point.

use std::path::PathBuf;

use amberdb::backup::{read_log_with, LogFilter, LogSource};
use amberdb::BackupRepo;

use super::restore::parse_time;
use crate::exit::{CliError, CliResult};

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["data", "repo"])))]
#[command(
    after_help = "Example: which commits touched player 1234 around the bad deploy?\n  amberdb log --repo /backups/game --collection players --key 1234 --from-time 2026-11-21T02:30:00Z"
)]
pub struct Args {
    /// Read a data directory's log (safe while it is in use).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Read a backup repository's archived log.
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// Only commits at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub from_time: Option<String>,
    /// Only commits at or before this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub to_time: Option<String>,
    /// Only commits touching this collection.
    #[arg(long)]
    pub collection: Option<String>,
    /// Only commits touching this key.
    #[arg(long)]
    pub key: Option<String>,
    /// At most this many commits.
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub keys: super::KeyArgs,
}

pub fn run(a: Args) -> CliResult {
    let source = match (&a.data, &a.repo) {
        (Some(d), _) => LogSource::DataDir(d.clone()),
        (_, Some(r)) => LogSource::Repo(BackupRepo::open(r)?),
        _ => return Err(CliError::usage("give --data DIR or --repo DIR")),
    };
    let filter = LogFilter {
        from_time: a.from_time.as_deref().map(parse_time).transpose()?,
        to_time: a.to_time.as_deref().map(parse_time).transpose()?,
        collection: a.collection,
        key: a.key,
        limit: a.limit,
        ..LogFilter::default()
    };
    let keys = a.keys.keyring()?;
    for e in read_log_with(&source, &filter, keys.as_ref())? {
        if a.json {
            println!("{}", serde_json::to_string(&e).unwrap_or_default());
        } else {
            let ops: Vec<String> = e
                .ops
                .iter()
                .map(|o| match o.op {
                    "delete" => format!("delete {}/{}", o.collection, o.key),
                    _ => format!("{}/{} v{}", o.collection, o.key, o.version),
                })
                .collect();
            println!("{:>8}  {}  {}", e.lsn, e.time, ops.join(", "));
        }
    }
    Ok(())
}

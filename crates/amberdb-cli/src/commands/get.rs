//! `amberdb get`: print one document's envelope, from a data directory or a server.

use super::{print_json, Target, TargetArgs};
use crate::client::doc_path;
use crate::exit::{CliError, CliResult, NOT_FOUND};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit status: 0 found, 3 not found (also: did not exist at --as-of), 1 when the point is older than the history window (history_lost) or no down migration leads to --schema-version, 2 for a schema version the spec does not define.\n\nExamples:\n  amberdb get --data ./db players alice\n  AMBERDB_URL=http://127.0.0.1:7070 amberdb get players alice --value-only\n  # player 1234 as it was just before the bad deploy at 02:41:\n  amberdb get --url http://127.0.0.1:7070 players 1234 --as-of 2026-11-21T02:40:00Z\n  # as it was right after commit 5120 (LSNs from `amberdb history` or `amberdb log`):\n  amberdb get --data ./db players 1234 --as-of-lsn 5120\n  # what a client still at schema version 1 reads:\n  amberdb get --data ./db players 1234 --schema-version 1"
)]
pub struct Args {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Collection name.
    pub collection: String,
    /// Document key.
    pub key: String,
    /// Print only the value, not the envelope.
    #[arg(long)]
    pub value_only: bool,
    /// Read the document as it was at this time (RFC 3339, e.g. 2026-11-21T02:40:00Z): after
    /// the last commit at or before it. Only inside the history window (history.retention,
    /// default 72 h).
    #[arg(long, value_name = "TIME", conflicts_with = "as_of_lsn")]
    pub as_of: Option<String>,
    /// Read the document as it was right after the commit with this LSN.
    #[arg(long, value_name = "LSN")]
    pub as_of_lsn: Option<u64>,
    /// Print the document at this schema version (an old client's view): migrated on read
    /// through the spec's `up` or `down` chain, never stored. Default: the collection's
    /// current version. The envelope's `stored_schema_version` is the version it is stored at.
    #[arg(long, value_name = "N")]
    pub schema_version: Option<u32>,
}

pub fn run(a: Args) -> CliResult {
    amberdb::validate_collection(&a.collection)?;
    amberdb::validate_key(&a.key)?;
    let at = match (&a.as_of, a.as_of_lsn) {
        (Some(t), _) => Some(amberdb::history::At::Time(super::restore::parse_time(t)?)),
        (None, Some(n)) => Some(amberdb::history::At::Lsn(n)),
        (None, None) => None,
    };
    let envelope = match a.target.open_existing()? {
        Target::Local(db) => {
            // The same presentation as a server's read: at the current schema version (or
            // the one asked for), so `--data` and `--url` print the same document.
            let doc = (|| -> Result<_, CliError> {
                let reader = db
                    .schema_reader(&db.view(), &a.collection, a.schema_version)
                    .map_err(crate::exit::input_error)?;
                let doc = match at {
                    Some(at) => db.get_at(&a.collection, &a.key, at)?,
                    None => db.get(&a.collection, &a.key),
                };
                Ok(doc.map(|d| reader.present(d)).transpose()?)
            })();
            db.close()?;
            doc?.map(|d| {
                serde_json::from_str(d.envelope_raw(&a.collection).get())
                    .unwrap_or(serde_json::Value::Null)
            })
        }
        Target::Remote(client) => {
            let point = match (&a.as_of, a.as_of_lsn) {
                (Some(t), _) => format!("&as_of={}", crate::client::segment(t)),
                (None, Some(n)) => format!("&as_of_lsn={n}"),
                (None, None) => String::new(),
            };
            let point = match a.schema_version {
                Some(n) => format!("{point}&schema_version={n}"),
                None => point,
            };
            let r = client.send(
                "GET",
                &format!("{}?meta=true{point}", doc_path(&a.collection, &a.key)),
                &[],
                None,
            )?;
            if r.status == 404 {
                None
            } else {
                Some(crate::client::check(r)?.json()?)
            }
        }
    };
    let env = envelope
        .ok_or_else(|| CliError::new(NOT_FOUND, format!("{}/{} not found", a.collection, a.key)))?;
    if a.value_only {
        print_json(&env["value"]);
    } else {
        print_json(&env);
    }
    Ok(())
}

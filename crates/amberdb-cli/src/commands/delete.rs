//! `amberdb delete`: delete one document, in a data directory or through a server.

use amberdb::Transaction;

use super::{print_json, Target, TargetArgs};
use crate::client::doc_path;
use crate::exit::{CliError, CliResult, NOT_FOUND};

#[derive(clap::Args, Debug)]
#[command(after_help = "Exit status: 0 deleted, 3 it did not exist.")]
pub struct Args {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Collection name.
    pub collection: String,
    /// Document key.
    pub key: String,
    /// Only if the document is at this version.
    #[arg(long, value_name = "N")]
    pub if_version: Option<u64>,
}

pub fn run(a: Args) -> CliResult {
    let not_found = || CliError::new(NOT_FOUND, format!("{}/{} not found", a.collection, a.key));
    let lsn = match a.target.open()? {
        Target::Local(db) => {
            let mut tx = Transaction::new();
            let w = tx.delete(&a.collection, &a.key);
            if let Some(v) = a.if_version {
                w.if_version(v);
            }
            let committed = db.commit(&tx)?;
            db.close()?;
            if !committed.results.first().is_some_and(|r| r.written) {
                return Err(not_found());
            }
            committed.lsn
        }
        Target::Remote(client) => {
            amberdb::validate_collection(&a.collection)?;
            amberdb::validate_key(&a.key)?;
            let headers: Vec<(&str, String)> = a
                .if_version
                .map(|v| ("if-match", format!("\"{v}\"")))
                .into_iter()
                .collect();
            let r = client.send("DELETE", &doc_path(&a.collection, &a.key), &headers, None)?;
            if r.status == 404 {
                return Err(not_found());
            }
            crate::client::check(r)?.json()?["lsn"]
                .as_u64()
                .unwrap_or(0)
        }
    };
    print_json(&serde_json::json!({
        "collection": a.collection, "key": a.key, "deleted": true, "lsn": lsn
    }));
    Ok(())
}

//! `amberdb delete`: delete one document.

use amberdb::Transaction;

use super::{print_json, DataArgs};
use crate::exit::{CliError, CliResult, NOT_FOUND};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub data: DataArgs,
    /// Collection name.
    pub collection: String,
    /// Document key.
    pub key: String,
    /// Only if the document is at this version.
    #[arg(long, value_name = "N")]
    pub if_version: Option<u64>,
}

pub fn run(a: Args) -> CliResult {
    let db = a.data.open()?;
    let mut tx = Transaction::new();
    let w = tx.delete(&a.collection, &a.key);
    if let Some(v) = a.if_version {
        w.if_version(v);
    }
    let committed = db.commit(&tx)?;
    db.close()?;
    let deleted = committed.results.first().is_some_and(|r| r.written);
    if !deleted {
        return Err(CliError::new(NOT_FOUND, format!("{}/{} not found", a.collection, a.key)));
    }
    print_json(&serde_json::json!({
        "collection": a.collection, "key": a.key, "deleted": true, "lsn": committed.lsn
    }));
    Ok(())
}

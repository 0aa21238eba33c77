//! `amberdb get`: print one document's envelope.

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
    /// Print only the value, not the envelope.
    #[arg(long)]
    pub value_only: bool,
}

pub fn run(a: Args) -> CliResult {
    amberdb::validate_collection(&a.collection)?;
    amberdb::validate_key(&a.key)?;
    let db = a.data.open()?;
    let doc = db.get(&a.collection, &a.key);
    db.close()?;
    let doc = doc.ok_or_else(|| CliError::new(NOT_FOUND, format!("{}/{} not found", a.collection, a.key)))?;
    if a.value_only {
        print_json(&doc.json()?);
    } else {
        print_json(&doc.envelope(&a.collection));
    }
    Ok(())
}

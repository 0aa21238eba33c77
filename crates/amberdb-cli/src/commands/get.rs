//! `amberdb get`: print one document's envelope, from a data directory or a server.

use super::{print_json, Target, TargetArgs};
use crate::client::doc_path;
use crate::exit::{CliError, CliResult, NOT_FOUND};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit status: 0 found, 3 not found.\n\nExamples:\n  amberdb get --data ./db players alice\n  AMBERDB_URL=http://127.0.0.1:7070 amberdb get players alice --value-only"
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
}

pub fn run(a: Args) -> CliResult {
    amberdb::validate_collection(&a.collection)?;
    amberdb::validate_key(&a.key)?;
    let envelope = match a.target.open_existing()? {
        Target::Local(db) => {
            let doc = db.get(&a.collection, &a.key);
            db.close()?;
            doc.map(|d| d.envelope(&a.collection))
        }
        Target::Remote(client) => {
            let r = client.send(
                "GET",
                &format!("{}?meta=true", doc_path(&a.collection, &a.key)),
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

//! `amberdb put`: store one document, in a data directory or through a server.

use amberdb::Transaction;

use super::{print_json, read_json, DurabilityArg, Target, TargetArgs};
use crate::client::doc_path;
use crate::exit::CliResult;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  amberdb put --data ./db players alice '{\"hp\": 20}'\n  echo '{\"hp\": 21}' | amberdb put --data ./db players alice - --if-version 1\n  amberdb put --url http://127.0.0.1:7070 players alice '{\"hp\": 22}' --durability buffered"
)]
pub struct Args {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Collection name ([a-z0-9_][a-z0-9_.-]{0,63}).
    pub collection: String,
    /// Document key (1..=1024 bytes of UTF-8).
    pub key: String,
    /// The value as JSON; `-` or nothing reads it from stdin.
    pub value: Option<String>,
    /// Only if the document is at this version (0 = must not exist).
    #[arg(long, value_name = "N")]
    pub if_version: Option<u64>,
    /// Schema version of the value.
    #[arg(long, value_name = "N")]
    pub schema_version: Option<u32>,
    /// Durability of this write.
    #[arg(long, value_enum, default_value = "sync")]
    pub durability: DurabilityArg,
}

pub fn run(a: Args) -> CliResult {
    let value = read_json(a.value.as_deref())?;
    match a.target.open()? {
        Target::Local(db) => {
            let mut tx = Transaction::new();
            let w = tx.put(&a.collection, &a.key, value);
            if let Some(v) = a.if_version {
                w.if_version(v);
            }
            if let Some(v) = a.schema_version {
                w.schema_version(v);
            }
            tx.durability(a.durability.to_durability());
            db.commit(&tx)?;
            if let Some(doc) = db.get(&a.collection, &a.key) {
                print_json(&doc.envelope(&a.collection));
            }
            db.close()?;
        }
        Target::Remote(client) => {
            amberdb::validate_collection(&a.collection)?;
            amberdb::validate_key(&a.key)?;
            let path = doc_path(&a.collection, &a.key);
            let mut headers = vec![("content-type", "application/json".to_string())];
            headers.push(("amber-durability", a.durability.header().to_string()));
            match a.if_version {
                Some(0) => headers.push(("if-none-match", "*".to_string())),
                Some(v) => headers.push(("if-match", format!("\"{v}\""))),
                None => {}
            }
            if let Some(v) = a.schema_version {
                headers.push(("amber-schema-version", v.to_string()));
            }
            client.call(
                "PUT",
                &path,
                &headers,
                Some(amberdb::canonical_json(&value)),
            )?;
            print_json(
                &client
                    .call("GET", &format!("{path}?meta=true"), &[], None)?
                    .json()?,
            );
        }
    }
    Ok(())
}

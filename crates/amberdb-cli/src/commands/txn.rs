//! `amberdb txn`: commit an atomic batch of operations, in a data directory or through a
//! server. The input is the same JSON document `POST /v1/txn` takes.

use amberdb_server::api::{TxnRequest, TxnResponse};

use super::{print_json, DurabilityArg, Target, TargetArgs};
use crate::exit::{CliError, CliResult, USAGE};

#[derive(clap::Args, Debug)]
#[command(
    after_help = r#"The transaction is JSON: {"ops": [...]} where each op is one of
  {"op": "put",     "collection": C, "key": K, "value": V, "if_version": N?, "schema_version": N?}
  {"op": "create",  "collection": C, "key": K, "value": V}          fails if it exists
  {"op": "replace", "collection": C, "key": K, "value": V}          fails if it is missing
  {"op": "patch",   "collection": C, "key": K, "merge_patch": {..}} or "json_patch": [..]
  {"op": "delete",  "collection": C, "key": K, "if_version": N?}
  {"op": "check",   "collection": C, "key": K, "version": N}        0 = must not exist
All ops apply or none does. On a failed precondition nothing is written, every failed op is
printed on stderr, and the exit status is 1.

Example:
  amberdb txn --url http://127.0.0.1:7070 '{"ops": [
    {"op": "check", "collection": "parties", "key": "p9", "version": 4},
    {"op": "put", "collection": "players", "key": "alice", "value": {"party": "p9"}, "if_version": 2}]}'"#
)]
pub struct Args {
    #[command(flatten)]
    pub target: TargetArgs,
    /// The transaction as JSON; `-` or nothing reads it from stdin.
    pub transaction: Option<String>,
    /// Durability of this transaction.
    #[arg(long, value_enum, default_value = "sync")]
    pub durability: DurabilityArg,
}

pub fn run(a: Args) -> CliResult {
    let raw = super::read_json(a.transaction.as_deref())?;
    let req: TxnRequest = serde_json::from_value(raw)
        .map_err(|e| CliError::new(USAGE, format!("not a transaction: {e}")))?;
    let out: TxnResponse = match a.target.open()? {
        Target::Local(db) => {
            let mut tx = req.to_transaction().map_err(CliError::usage)?;
            tx.durability(a.durability.to_durability());
            let committed = db.commit(&tx);
            db.close()?;
            if let Err(amberdb::Error::Conflict(cs)) = &committed {
                for c in cs {
                    eprintln!("conflict: {}", serde_json::to_string(c).unwrap_or_default());
                }
            }
            committed?.into()
        }
        Target::Remote(client) => {
            req.to_transaction().map_err(CliError::usage)?;
            let body = serde_json::to_vec(&req).map_err(|e| CliError::usage(e.to_string()))?;
            let headers = [
                ("content-type", "application/json".to_string()),
                ("amber-durability", a.durability.header().to_string()),
            ];
            let reply = client.call("POST", "/v1/txn", &headers, Some(body))?;
            serde_json::from_str(&reply.body)
                .map_err(|e| CliError::new(1, format!("unexpected answer from the server: {e}")))?
        }
    };
    print_json(&serde_json::to_value(&out).unwrap_or_default());
    Ok(())
}

//! `amberdb history`: one document's versions (and deletes) in the history window, newest
//! first, from a data directory or a server.

use serde_json::{json, Value};

use super::{print_json, Target, TargetArgs};
use crate::client::doc_path;
use crate::exit::CliResult;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Every write of a document is a version; a delete is listed too (deleted: true, \
the version it deleted, no value). Only the history window is kept (history.retention, default 72 h, \
and history.max_bytes): `retained_from_lsn` says where it starts.

Pick a version, then read or restore it:
  amberdb history --url http://127.0.0.1:7070 players 1234 --limit 5
  amberdb get --url http://127.0.0.1:7070 players 1234 --as-of-lsn 5120

Older pages: pass the `next` LSN of a page as --before-lsn.
  amberdb history --data ./db players 1234 --before-lsn 5120 --json

Exit status: 0 (an empty history too), 1 on errors, 2 on bad arguments."
)]
pub struct Args {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Collection name.
    pub collection: String,
    /// Document key.
    pub key: String,
    /// At most this many versions (1..=1000).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub limit: u64,
    /// Only versions older than this LSN (a previous page's `next`).
    #[arg(long, value_name = "LSN")]
    pub before_lsn: Option<u64>,
    /// Leave the values out (metadata only).
    #[arg(long)]
    pub no_values: bool,
    /// Print the page as one JSON object (`versions`, `next`, `retained_from_lsn`).
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> CliResult {
    amberdb::validate_collection(&a.collection)?;
    amberdb::validate_key(&a.key)?;
    let limit = usize::try_from(a.limit).unwrap_or(1000);
    let page: Value = match a.target.open_existing()? {
        Target::Local(db) => {
            let page = db.history(
                &a.collection,
                &a.key,
                amberdb::history::HistoryOptions {
                    before_lsn: a.before_lsn,
                    limit,
                    values: !a.no_values,
                },
            );
            db.close()?;
            let page = page?;
            let versions: Vec<Value> = page
                .versions
                .iter()
                .map(|v| {
                    json!({
                        "version": v.version,
                        "lsn": v.lsn,
                        "time": amberdb::format_micros(v.commit_ts),
                        "time_us": v.commit_ts,
                        "op": v.op,
                        "deleted": v.deleted,
                        "schema_version": v.schema_version,
                        "sha256": v.sha256.map(hex::encode),
                        "expires_at": v.expires_at.map(amberdb::format_micros),
                        "value": v.value.as_ref().and_then(|b| serde_json::from_slice::<Value>(b).ok()),
                    })
                })
                .collect();
            json!({"versions": versions, "next": page.next, "retained_from_lsn": page.retained_from_lsn})
        }
        Target::Remote(client) => {
            let mut q = format!("limit={limit}&values={}", !a.no_values);
            if let Some(b) = a.before_lsn {
                q.push_str(&format!("&before_lsn={b}"));
            }
            let path = format!("{}/history?{q}", doc_path(&a.collection, &a.key));
            crate::client::check(client.send("GET", &path, &[], None)?)?.json()?
        }
    };
    if a.json {
        print_json(&page);
        return Ok(());
    }
    let empty = vec![];
    for v in page["versions"].as_array().unwrap_or(&empty) {
        let what = if v["deleted"].as_bool().unwrap_or(false) {
            format!(
                "{} (v{})",
                v["op"].as_str().unwrap_or("delete"),
                v["version"]
            )
        } else {
            format!("{} v{}", v["op"].as_str().unwrap_or("?"), v["version"])
        };
        let value = match &v["value"] {
            Value::Null => String::new(),
            other => other.to_string(),
        };
        println!(
            "{:>8}  {}  {what:<14}  {value}",
            v["lsn"],
            v["time"].as_str().unwrap_or("")
        );
    }
    match page["next"].as_u64() {
        Some(n) => println!("(older versions: --before-lsn {n})"),
        None => println!(
            "(history window starts at LSN {})",
            page["retained_from_lsn"]
        ),
    }
    Ok(())
}

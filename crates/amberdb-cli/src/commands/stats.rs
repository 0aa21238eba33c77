//! `amberdb stats`: LSNs, sizes, collections, commit and fsync counters.

use super::{print_json, DataArgs};
use crate::exit::CliResult;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub data: DataArgs,
}

pub fn run(a: Args) -> CliResult {
    let db = amberdb::Db::open_with(
        &a.data.data,
        a.data.keys.options(amberdb::Options {
            checkpoint_on_close: false,
            ..super::existing_only()
        })?,
    )?;
    let stats = db.stats();
    let recovery = db.recovery_report().clone();
    db.close()?;
    let mut v = serde_json::to_value(&stats).unwrap_or_default();
    v["recovery"] = serde_json::to_value(&recovery).unwrap_or_default();
    print_json(&v);
    Ok(())
}

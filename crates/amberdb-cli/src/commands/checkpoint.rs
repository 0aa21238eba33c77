//! `amberdb checkpoint`: write a checkpoint now.

use super::{print_json, DataArgs};
use crate::exit::CliResult;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub data: DataArgs,
}

pub fn run(a: Args) -> CliResult {
    let db = a.data.open()?;
    let info = db.checkpoint()?;
    db.close()?;
    print_json(&serde_json::to_value(&info).unwrap_or_default());
    Ok(())
}

//! `amberdb list`: a page of a collection's documents in key order.

use amberdb::ListOptions;

use super::{print_json, Target, TargetArgs};
use crate::client::segment;
use crate::exit::{CliError, CliResult};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Pages: pass the printed \"next\" value as --start-after to get the next page."
)]
pub struct Args {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Collection name.
    pub collection: String,
    /// Only keys starting with this prefix.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Only keys after this one (the resume cursor).
    #[arg(long, value_name = "KEY")]
    pub start_after: Option<String>,
    /// Only keys before this one.
    #[arg(long, value_name = "KEY")]
    pub end_before: Option<String>,
    /// At most this many documents, 1..=10000 (the server's page size).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

pub fn run(a: Args) -> CliResult {
    amberdb::validate_collection(&a.collection)?;
    // One rule for both targets: the server's page size.
    if a.limit == 0 || a.limit > 10_000 {
        return Err(CliError::usage("--limit must be 1..=10000"));
    }
    match a.target.open_existing()? {
        Target::Local(db) => {
            let page = db.list(
                &a.collection,
                &ListOptions {
                    prefix: a.prefix,
                    start_after: a.start_after,
                    end_before: a.end_before,
                    limit: a.limit,
                },
            );
            db.close()?;
            let docs: Vec<_> = page
                .docs
                .iter()
                .map(|d| d.envelope(&a.collection))
                .collect();
            print_json(&serde_json::json!({ "documents": docs, "next": page.next }));
        }
        Target::Remote(client) => {
            let mut q = format!("limit={}", a.limit);
            for (name, v) in [
                ("prefix", &a.prefix),
                ("start_after", &a.start_after),
                ("end_before", &a.end_before),
            ] {
                if let Some(v) = v {
                    q.push_str(&format!("&{name}={}", segment(v)));
                }
            }
            let page = client
                .call(
                    "GET",
                    &format!("/v1/collections/{}/docs?{q}", segment(&a.collection)),
                    &[],
                    None,
                )?
                .json()?;
            print_json(&page);
        }
    }
    Ok(())
}

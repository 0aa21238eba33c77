//! `amberdb-bench`: AmberDB against SQLite, redb and fjall on the same workloads, in one run.
//!
//! ```text
//! cargo run --release -p amberdb-bench -- [--quick] [--only WORKLOAD] [--json FILE]
//! ```
//!
//! Prints a markdown table per workload on stdout, progress on stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use amberdb_bench::child::{run_child, CHILD_ARG};
use amberdb_bench::{run, Config, Scale, WORKLOADS};
use clap::Parser;

/// Every engine in the run (AmberDB, SQLite, redb, fjall) allocates through jemalloc, the
/// allocator the `amberdb` binary uses, so no peer is measured on a different allocator.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser, Debug)]
#[command(
    name = "amberdb-bench",
    about = "Side-by-side benchmarks of AmberDB, SQLite, redb and fjall",
    after_help = "Workloads: 1 durable-1, 2 durable-16, 3 buffered-1, 4 bulk-load, \
                  5 point-reads, 6 scans, 7 reopen, 8 footprint."
)]
struct Args {
    /// Smaller sizes and fewer repetitions (under 2 minutes on 2 cores).
    #[arg(long)]
    quick: bool,
    /// Run only these workloads, by number or id (repeatable, or comma-separated).
    #[arg(long, value_name = "WORKLOAD", value_delimiter = ',')]
    only: Vec<String>,
    /// Also write the full results (every sample) as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Directory under which the databases are created (its filesystem is what is measured).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Override the number of repetitions of every workload.
    #[arg(long, value_name = "N")]
    reps: Option<usize>,
    /// Run only these engines besides AmberDB (comma-separated): amberdb-encrypted, sqlite,
    /// redb, fjall. Default: all.
    #[arg(long, value_name = "ENGINE", value_delimiter = ',')]
    engines: Vec<String>,
    /// Sizes only good for checking that the harness works (numbers are noise).
    #[arg(long, hide = true)]
    tiny: bool,
}

fn parse_workload(s: &str) -> Option<u8> {
    WORKLOADS
        .iter()
        .find(|w| w.id == s || w.number.to_string() == s)
        .map(|w| w.number)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(CHILD_ARG) {
        return match run_child(argv.get(2).map_or("", String::as_str)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("amberdb-bench child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let args = Args::parse();
    let scale = if args.tiny {
        Scale::Tiny
    } else if args.quick {
        Scale::Quick
    } else {
        Scale::Full
    };
    let mut cfg = match Config::new(scale) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("amberdb-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    for w in &args.only {
        match parse_workload(w.trim()) {
            Some(n) => cfg.only.push(n),
            None => {
                eprintln!("amberdb-bench: unknown workload {w:?} (see --help)");
                return ExitCode::from(2);
            }
        }
    }
    for e in &args.engines {
        match amberdb_bench::engines::EngineKind::from_arg(e.trim()) {
            Some(k) => cfg.engines.push(k),
            None => {
                eprintln!("amberdb-bench: unknown engine {e:?} (amberdb, amberdb-encrypted, sqlite, redb, fjall)");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(d) = args.dir {
        cfg.dir = d;
    }
    if let Some(r) = args.reps {
        cfg.sizes.reps = r.max(1);
        cfg.sizes.heavy_reps = r.max(1);
    }
    let shown: Vec<&str> = argv.iter().skip(1).map(String::as_str).collect();
    cfg.command = if shown.is_empty() {
        "cargo run --release -p amberdb-bench".into()
    } else {
        format!(
            "cargo run --release -p amberdb-bench -- {}",
            shown.join(" ")
        )
    };
    let report = match run(&cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("amberdb-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", report.markdown());
    if let Some(path) = args.json {
        let written = serde_json::to_vec_pretty(&report)
            .map_err(|e| e.to_string())
            .and_then(|b| std::fs::write(&path, b).map_err(|e| e.to_string()));
        if let Err(e) = written {
            eprintln!("amberdb-bench: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

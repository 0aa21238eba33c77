//! `amberdb bench write`: a load generator (like pgbench) against a data directory.
//!
//! Each writer thread commits transactions of `--docs-per-txn` documents. The first document
//! of transaction `i` of writer `w` is `w<w>-<i % keys>`; the others are `w<w>-<i % keys>-m<j>`,
//! and all of them carry the same `{"w": w, "seq": i}`, so a checker can tell whether a
//! transaction is visible whole or not at all. With `--print-acks` every acknowledged
//! transaction prints `acked <collection> <key> <version>` and is flushed at once.

use std::io::Write;
use std::time::{Duration, Instant};

use amberdb::{Db, Options, Transaction};

use super::DurabilityArg;
use crate::exit::{CliError, CliResult};

#[derive(clap::Subcommand, Debug)]
pub enum Bench {
    /// Concurrent writers committing small transactions; prints throughput and latency.
    Write(WriteArgs),
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  amberdb bench write --data /tmp/bench --writers 16 --txns 2000 --durability sync"
)]
pub struct WriteArgs {
    /// The data directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub data: std::path::PathBuf,
    /// Concurrent writer threads.
    #[arg(long, default_value_t = 1)]
    pub writers: usize,
    /// Transactions per writer.
    #[arg(long, default_value_t = 1000)]
    pub txns: u64,
    /// Durability of every transaction.
    #[arg(long, value_enum, default_value = "sync")]
    pub durability: DurabilityArg,
    /// Approximate size of each document's JSON value.
    #[arg(long, default_value_t = 1024)]
    pub doc_bytes: usize,
    /// Documents written by each transaction.
    #[arg(long, default_value_t = 1)]
    pub docs_per_txn: usize,
    /// Distinct keys per writer (transactions cycle through them); default: one per transaction.
    #[arg(long)]
    pub keys: Option<u64>,
    /// Collection to write to.
    #[arg(long, default_value = "bench")]
    pub collection: String,
    /// Print `acked <collection> <key> <version>` for every acknowledged transaction.
    #[arg(long)]
    pub print_acks: bool,
    /// Take online backups into this repository while the writers run (to measure what a
    /// backup costs writers).
    #[arg(long, value_name = "DIR")]
    pub backup_to: Option<std::path::PathBuf>,
    /// Pause between those backups.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub backup_every_ms: u64,
    #[command(flatten)]
    pub encryption: super::KeyArgs,
}

pub fn run(b: Bench) -> CliResult {
    match b {
        Bench::Write(a) => write(a),
    }
}

fn write(a: WriteArgs) -> CliResult {
    if a.writers == 0 || a.docs_per_txn == 0 {
        return Err(CliError::usage(
            "--writers and --docs-per-txn must be at least 1",
        ));
    }
    amberdb::validate_collection(&a.collection)?;
    let db = Db::open_with(
        &a.data,
        a.encryption.options(Options {
            durability: a.durability.to_durability(),
            ..Default::default()
        })?,
    )?;
    let keys = a.keys.unwrap_or(a.txns).max(1);
    let pad = "x".repeat(a.doc_bytes.saturating_sub(40));
    let started = Instant::now();
    let stats_before = db.stats();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let backups = match &a.backup_to {
        Some(path) => {
            let repo = amberdb::BackupRepo::open_or_init(path)?;
            let (db, stop) = (db.clone(), stop.clone());
            let pause = Duration::from_millis(a.backup_every_ms);
            Some(std::thread::spawn(
                move || -> Result<(u64, Duration), amberdb::Error> {
                    let (mut n, mut busy) = (0, Duration::ZERO);
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let t0 = Instant::now();
                        db.backup(&repo)?;
                        busy += t0.elapsed();
                        n += 1;
                        std::thread::sleep(pause);
                    }
                    Ok((n, busy))
                },
            ))
        }
        None => None,
    };
    let handles: Vec<_> = (0..a.writers)
        .map(|w| {
            let db = db.clone();
            let collection = a.collection.clone();
            let pad = pad.clone();
            let (txns, docs, print) = (a.txns, a.docs_per_txn, a.print_acks);
            std::thread::spawn(move || -> Result<Vec<Duration>, amberdb::Error> {
                let mut latencies = Vec::with_capacity(txns as usize);
                let stdout = std::io::stdout();
                for i in 0..txns {
                    let key = format!("w{w}-{}", i % keys);
                    let value = serde_json::json!({ "w": w, "seq": i, "pad": pad });
                    let mut tx = Transaction::new();
                    tx.put(&collection, &key, value.clone());
                    for j in 1..docs {
                        tx.put(&collection, &format!("{key}-m{j}"), value.clone());
                    }
                    let t0 = Instant::now();
                    let c = db.commit(&tx)?;
                    latencies.push(t0.elapsed());
                    if print {
                        let version = c.results.first().map_or(0, |r| r.version);
                        let mut out = stdout.lock();
                        let _ = writeln!(out, "acked {collection} {key} {version}");
                        let _ = out.flush();
                    }
                }
                Ok(latencies)
            })
        })
        .collect();
    let mut latencies = vec![];
    let mut first_error = None;
    for h in handles {
        match h.join() {
            Ok(Ok(l)) => latencies.extend(l),
            Ok(Err(e)) => first_error = first_error.or(Some(e)),
            Err(_) => first_error = first_error.or(Some(amberdb::Error::Closed)),
        }
    }
    let elapsed = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let backup_summary = match backups.map(|h| h.join()) {
        Some(Ok(Ok((n, busy)))) => Some(format!(
            "\n  {n} online backups during the run, {:.0}% of the time backing up",
            100.0 * busy.as_secs_f64() / elapsed.as_secs_f64()
        )),
        Some(Ok(Err(e))) => return Err(e.into()),
        Some(Err(_)) => return Err(CliError::new(crate::exit::ERROR, "backup thread panicked")),
        None => None,
    };
    let stats = db.stats();
    db.close()?;
    if let Some(e) = first_error {
        return Err(e.into());
    }
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    let n = latencies.len() as f64;
    let fsyncs = stats.fsyncs - stats_before.fsyncs;
    eprintln!(
        "bench write: {} writers x {} txns ({} docs of ~{} bytes each), durability {:?}\n  \
         {:.0} txn/s over {:.2}s; latency p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms\n  \
         {} fsyncs, {:.2} commits per fsync{}",
        a.writers,
        a.txns,
        a.docs_per_txn,
        a.doc_bytes,
        a.durability,
        n / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        fsyncs,
        if fsyncs == 0 {
            0.0
        } else {
            (stats.commits - stats_before.commits) as f64 / fsyncs as f64
        },
        backup_summary.unwrap_or_default(),
    );
    Ok(())
}

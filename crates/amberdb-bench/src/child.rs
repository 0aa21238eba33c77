//! Work that runs in a child process: the bench binary re-executes itself as
//! `amberdb-bench __child '<task as JSON>'`.
//!
//! Children keep engines from polluting each other's peak RSS (`VmHWM` is per process), and a
//! child is the only way to crash an engine with SIGKILL in the middle of its writes. A child
//! prints `READY` when a crash writer has done its minimum, and `RESULT <json>` when it ends.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::engines::{self, EngineKind, Mode};
use crate::gamestate::{document, key};
use crate::machine::peak_rss_kib;
use crate::Result;

/// The hidden subcommand.
pub const CHILD_ARG: &str = "__child";

/// What a child does.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum ChildTask {
    /// Bulk-loads `docs` documents into a fresh database in durable transactions of `batch`.
    Load {
        /// Engine.
        engine: EngineKind,
        /// Data directory.
        dir: PathBuf,
        /// Documents to load.
        docs: u64,
        /// Documents per transaction.
        batch: u64,
        /// Data seed.
        seed: u64,
        /// Also add up the serialized size of keys and values (the raw data size).
        measure_raw: bool,
    },
    /// Rewrites documents of an existing data set in durable batches until killed; prints
    /// `READY` after `ready_after` batches.
    CrashWriter {
        /// Engine.
        engine: EngineKind,
        /// Data directory.
        dir: PathBuf,
        /// Documents in the data set.
        docs: u64,
        /// Documents per transaction.
        batch: u64,
        /// Data seed.
        seed: u64,
        /// Revision of the documents written (changes their content).
        revision: u64,
        /// Batches to commit before `READY`.
        ready_after: u64,
    },
    /// Opens an existing database, reads `probe`, closes.
    Reopen {
        /// Engine.
        engine: EngineKind,
        /// Data directory.
        dir: PathBuf,
        /// A key that must exist.
        probe: String,
    },
}

/// What a child reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChildResult {
    /// The timed part: the batches of a load (without generating documents), or open plus
    /// the first read of a reopen.
    pub secs: f64,
    /// Time to close the database afterwards.
    pub close_secs: f64,
    /// Peak RSS of the child process (`VmHWM`), KiB.
    pub peak_rss_kib: u64,
    /// Serialized keys and values written, when asked for.
    pub raw_bytes: u64,
}

/// Runs a task in this process (the child side).
pub fn run_child(task_json: &str) -> Result<()> {
    let task: ChildTask = serde_json::from_str(task_json)?;
    let result = match task {
        ChildTask::Load {
            engine,
            dir,
            docs,
            batch,
            seed,
            measure_raw,
        } => {
            let store = engines::open(engine, &dir, Mode::Durable)?;
            let mut timed = Duration::ZERO;
            let mut raw_bytes = 0u64;
            let mut i = 0;
            while i < docs {
                let end = (i + batch).min(docs);
                let items: Vec<(String, serde_json::Value)> =
                    (i..end).map(|j| (key(j), document(seed, j, 0))).collect();
                if measure_raw {
                    for (k, v) in &items {
                        raw_bytes += (k.len() + serde_json::to_vec(v)?.len()) as u64;
                    }
                }
                let t = Instant::now();
                store.put_batch(items)?;
                timed += t.elapsed();
                i = end;
            }
            let t = Instant::now();
            store.close()?;
            ChildResult {
                secs: timed.as_secs_f64(),
                close_secs: t.elapsed().as_secs_f64(),
                peak_rss_kib: peak_rss_kib(),
                raw_bytes,
            }
        }
        ChildTask::CrashWriter {
            engine,
            dir,
            docs,
            batch,
            seed,
            revision,
            ready_after,
        } => {
            let store = engines::open(engine, &dir, Mode::Durable)?;
            let mut next = 0u64;
            // Bounded, in case the parent is gone: the parent kills long before this ends.
            for b in 0..ready_after.saturating_mul(20).max(1) {
                let items: Vec<(String, serde_json::Value)> = (0..batch)
                    .map(|_| {
                        let j = next % docs.max(1);
                        next += 1;
                        (key(j), document(seed, j, revision))
                    })
                    .collect();
                store.put_batch(items)?;
                if b + 1 == ready_after {
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "READY")?;
                    out.flush()?;
                }
            }
            store.close()?;
            ChildResult::default()
        }
        ChildTask::Reopen { engine, dir, probe } => {
            let t = Instant::now();
            let store = engines::open(engine, &dir, Mode::Durable)?;
            let found = store.reader()?.get(&probe)?;
            let secs = t.elapsed().as_secs_f64();
            if found.is_none() {
                return Err(format!("{}: {probe} missing after reopen", engine.name()).into());
            }
            let t = Instant::now();
            store.close()?;
            ChildResult {
                secs,
                close_secs: t.elapsed().as_secs_f64(),
                peak_rss_kib: peak_rss_kib(),
                raw_bytes: 0,
            }
        }
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "RESULT {}", serde_json::to_string(&result)?)?;
    out.flush()?;
    Ok(())
}

fn command(exe: &Path, task: &ChildTask) -> Result<Command> {
    let mut c = Command::new(exe);
    c.arg(CHILD_ARG).arg(serde_json::to_string(task)?);
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    Ok(c)
}

/// Runs a task in a child process to completion and returns its result.
pub fn run(exe: &Path, task: &ChildTask) -> Result<ChildResult> {
    let out = command(exe, task)?.output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("child {task:?} failed with {}", out.status).into());
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .ok_or_else(|| format!("child {task:?} printed no result"))?;
    Ok(serde_json::from_str(line)?)
}

/// Starts a crash writer, waits until it is `READY`, then kills it with SIGKILL while it is
/// in the middle of its next batch.
pub fn crash(exe: &Path, task: &ChildTask) -> Result<()> {
    let mut child = command(exe, task)?.spawn()?;
    let stdout = child.stdout.take().ok_or("child has no stdout")?;
    let mut ready = false;
    for line in BufReader::new(stdout).lines() {
        if line? == "READY" {
            ready = true;
            break;
        }
    }
    // `Child::kill` sends SIGKILL on Unix.
    let _ = child.kill();
    let status = child.wait()?;
    if !ready {
        return Err(format!("crash writer {task:?} ended before READY ({status})").into());
    }
    Ok(())
}

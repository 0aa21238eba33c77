//! Side-by-side benchmarks of AmberDB against SQLite, redb and fjall.
//!
//! One run measures every workload on every engine, interleaved (AmberDB, SQLite, redb, fjall,
//! AmberDB, SQLite, redb, fjall, ...) over several repetitions so that drift in the machine's state
//! (page cache, other load, disk firmware) lands on every engine alike, and reports the median,
//! the range and the ratio of AmberDB to each other engine. The workloads are those of the
//! benchmark issue; `docs/BENCHMARKS.md` has the results and the method.
//!
//! This crate measures; it never changes an engine's behaviour beyond the configuration stated
//! in each table's notes.

pub mod child;
pub mod engines;
pub mod gamestate;
pub mod machine;
pub mod report;
mod workloads;

use crate::engines::EngineKind;
use std::path::PathBuf;
use std::time::Instant;

pub use report::Report;
pub use workloads::WORKLOADS;

/// Errors of a benchmark run: anything that goes wrong aborts it with a message.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// Result of a benchmark step.
pub type Result<T> = std::result::Result<T, Error>;

/// How big a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// The numbers for `docs/BENCHMARKS.md` (under 20 minutes on 2 cores).
    Full,
    /// A smaller run for development (under 2 minutes on 2 cores).
    Quick,
    /// Seconds: only for the test that keeps the harness from rotting. Numbers are noise.
    Tiny,
}

/// The sizes of every workload.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// Repetitions of the cheap workloads (1, 2, 3, 5, 6).
    pub reps: usize,
    /// Repetitions of the workloads that load or reopen the whole data set (4, 7).
    pub heavy_reps: usize,
    /// Commits per repetition, workload 1.
    pub w1_commits: usize,
    /// Concurrent writers, workload 2.
    pub w2_writers: usize,
    /// Commits per writer per repetition, workload 2.
    pub w2_commits_per_writer: usize,
    /// Commits per repetition, workload 3.
    pub w3_commits: usize,
    /// Documents in the shared data set (workloads 4 to 8).
    pub dataset_docs: u64,
    /// Documents per bulk-load transaction.
    pub batch: u64,
    /// Point reads per thread per repetition, workload 5.
    pub reads_per_thread: usize,
    /// Scans of each kind per repetition, workload 6.
    pub scans: usize,
    /// Batches a crash writer commits before it is killed, workload 7.
    pub crash_batches: u64,
}

impl Scale {
    /// The sizes of this scale.
    pub fn sizes(self) -> Sizes {
        match self {
            Scale::Full => Sizes {
                reps: 5,
                heavy_reps: 2,
                w1_commits: 1000,
                w2_writers: 16,
                w2_commits_per_writer: 100,
                w3_commits: 20_000,
                dataset_docs: 1_000_000,
                batch: 1000,
                reads_per_thread: 200_000,
                scans: 20_000,
                crash_batches: 100,
            },
            Scale::Quick => Sizes {
                reps: 3,
                heavy_reps: 1,
                w1_commits: 200,
                w2_writers: 16,
                w2_commits_per_writer: 30,
                w3_commits: 3000,
                dataset_docs: 100_000,
                batch: 1000,
                reads_per_thread: 100_000,
                scans: 5000,
                crash_batches: 20,
            },
            Scale::Tiny => Sizes {
                reps: 1,
                heavy_reps: 1,
                w1_commits: 5,
                w2_writers: 16,
                w2_commits_per_writer: 2,
                w3_commits: 20,
                dataset_docs: 500,
                batch: 100,
                reads_per_thread: 200,
                scans: 20,
                crash_batches: 2,
            },
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Scale::Full => "full",
            Scale::Quick => "quick",
            Scale::Tiny => "tiny",
        }
    }
}

/// A benchmark run's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Scale (also chooses `sizes` by default).
    pub scale: Scale,
    /// Workload sizes.
    pub sizes: Sizes,
    /// Seed of the documents and the random keys.
    pub seed: u64,
    /// Workload numbers to run; empty means all.
    pub only: Vec<u8>,
    /// Parent of the run's temporary directory (its filesystem is the one measured).
    pub dir: PathBuf,
    /// The bench binary, re-executed for child processes.
    pub exe: PathBuf,
    /// The command line, for the report.
    pub command: String,
    /// Engines to run; empty means all. AmberDB always runs (the ratios' numerator).
    pub engines: Vec<EngineKind>,
}

impl Config {
    /// A configuration of the given scale, with this binary as the child executable.
    pub fn new(scale: Scale) -> Result<Config> {
        Ok(Config {
            scale,
            sizes: scale.sizes(),
            seed: 0x00A3_BE9D_B000_0001,
            only: vec![],
            dir: std::env::temp_dir(),
            exe: std::env::current_exe()?,
            command: String::new(),
            engines: vec![],
        })
    }

    fn selected(&self, number: u8) -> bool {
        self.only.is_empty() || self.only.contains(&number)
    }

    /// The engines of this run, in [`EngineKind::ALL`] order.
    pub fn engines(&self) -> Vec<EngineKind> {
        EngineKind::ALL
            .into_iter()
            .filter(|e| {
                self.engines.is_empty() || *e == EngineKind::AmberDb || self.engines.contains(e)
            })
            .collect()
    }
}

/// Runs the selected workloads and returns the report. Progress goes to stderr.
pub fn run(cfg: &Config) -> Result<Report> {
    let started = Instant::now();
    std::fs::create_dir_all(&cfg.dir)?;
    let tmp = tempfile::Builder::new()
        .prefix("amberdb-bench-")
        .tempdir_in(&cfg.dir)?;
    let mut machine = machine::Machine::describe(tmp.path());
    let mut ctx = workloads::Ctx::new(cfg, tmp.path().to_owned(), started);
    let mut reports = vec![];
    for w in WORKLOADS {
        if cfg.selected(w.number) {
            ctx.progress(&format!("workload {} ({})", w.number, w.id));
            reports.push((w.run)(&mut ctx)?);
        }
    }
    machine.load_end = machine::loadavg();
    Ok(Report {
        command: cfg.command.clone(),
        scale: cfg.scale.name().into(),
        machine,
        elapsed_secs: started.elapsed().as_secs_f64(),
        workloads: reports,
    })
}

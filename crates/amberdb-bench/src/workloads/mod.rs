//! The eight workloads of the benchmark issue, and what they share.
//!
//! `commits` has the single-document commit workloads (1-3), `dataset` the ones that build,
//! crash and reopen the shared data set in child processes (4, 7, 8), `reads` the read
//! workloads over it (5, 6).

mod commits;
mod dataset;
mod reads;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::engines::EngineKind;
use crate::report::WorkloadReport;
use crate::{Config, Result};

pub(crate) use dataset::Dataset;

/// A workload: its number and id (for `--only`) and how to run it.
pub struct Workload {
    /// Number in the issue.
    pub number: u8,
    /// Short id.
    pub id: &'static str,
    pub(crate) run: fn(&mut Ctx<'_>) -> Result<WorkloadReport>,
}

/// Every workload, in order.
pub const WORKLOADS: [Workload; 8] = [
    Workload {
        number: 1,
        id: "durable-1",
        run: commits::durable_one,
    },
    Workload {
        number: 2,
        id: "durable-16",
        run: commits::durable_many,
    },
    Workload {
        number: 3,
        id: "buffered-1",
        run: commits::buffered_one,
    },
    Workload {
        number: 4,
        id: "bulk-load",
        run: dataset::bulk_load,
    },
    Workload {
        number: 5,
        id: "point-reads",
        run: reads::point_reads,
    },
    Workload {
        number: 6,
        id: "scans",
        run: reads::scans,
    },
    Workload {
        number: 7,
        id: "reopen",
        run: dataset::reopen,
    },
    Workload {
        number: 8,
        id: "footprint",
        run: dataset::footprint,
    },
];

/// State shared by the workloads of one run.
pub(crate) struct Ctx<'a> {
    pub cfg: &'a Config,
    base: PathBuf,
    started: Instant,
    counter: usize,
    /// The shared data set, once loaded.
    pub dataset: Option<Dataset>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(cfg: &'a Config, base: PathBuf, started: Instant) -> Self {
        Ctx {
            cfg,
            base,
            started,
            counter: 0,
            dataset: None,
        }
    }

    /// Prints a progress line to stderr.
    pub(crate) fn progress(&self, msg: &str) {
        eprintln!("[{:>7.1}s] {msg}", self.started.elapsed().as_secs_f64());
    }

    /// A new, empty directory inside the run's temporary directory.
    pub(crate) fn fresh_dir(&mut self, what: &str, engine: Option<EngineKind>) -> Result<PathBuf> {
        self.counter += 1;
        let name = match engine {
            Some(e) => format!("{:03}-{what}-{}", self.counter, e.arg()),
            None => format!("{:03}-{what}", self.counter),
        };
        let dir = self.base.join(name);
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }
}

/// Removes a directory the run no longer needs.
pub(crate) fn remove(dir: &Path) -> Result<()> {
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

/// The `p`-quantile (0..=1) of a set of durations, in milliseconds.
pub(crate) fn quantile_ms(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let idx = ((samples.len() as f64 - 1.0) * p).round().max(0.0) as usize;
    samples.get(idx).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

/// Operations per second.
pub(crate) fn per_sec(ops: usize, elapsed: Duration) -> f64 {
    ops as f64 / elapsed.as_secs_f64().max(1e-9)
}

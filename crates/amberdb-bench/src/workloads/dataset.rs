//! Workloads 4, 7 and 8: the shared data set, built in child processes.
//!
//! Each repetition of the bulk load (workload 4) builds the data set from scratch in a child
//! per engine, which reports its timed load, its close and its peak RSS; the directory of the
//! last repetition is kept as the data set of workloads 5 to 8. Workload 7 crashes a writer on
//! the data set with SIGKILL and times the reopen, then times a reopen after a clean close.
//! Workload 8 reports what the other two measured: disk bytes and peak RSS.

use std::path::PathBuf;

use super::{remove, Ctx};
use crate::child::{self, ChildResult, ChildTask};
use crate::engines::{config_notes, EngineKind, Mode};
use crate::gamestate::key;
use crate::machine::disk_usage;
use crate::report::{Metric, WorkloadReport};
use crate::Result;

const MIB: f64 = 1024.0 * 1024.0;
const RAW_DATA: &str = "raw data: keys + JSON values";

/// One engine's load of the data set.
#[derive(Debug, Clone)]
pub(crate) struct LoadSample {
    engine: EngineKind,
    result: ChildResult,
    disk_allocated: u64,
}

/// The loaded data set, one directory per engine, and what loading and reopening measured.
#[derive(Debug, Default)]
pub(crate) struct Dataset {
    pub dirs: Vec<(EngineKind, PathBuf)>,
    loads: Vec<LoadSample>,
    /// Peak RSS of the clean-reopen children, per engine.
    reopen_rss: Vec<(EngineKind, u64)>,
    /// Serialized keys and values of the data set.
    raw_bytes: u64,
}

impl Dataset {
    /// The data set directory of an engine.
    pub(crate) fn dir(&self, engine: EngineKind) -> Result<&PathBuf> {
        self.dirs
            .iter()
            .find(|(e, _)| *e == engine)
            .map(|(_, d)| d)
            .ok_or_else(|| format!("no data set for {}", engine.name()).into())
    }
}

/// Loads the data set `reps` times per engine, interleaved, keeping the last.
fn load(ctx: &mut Ctx<'_>, reps: usize) -> Result<Dataset> {
    let s = ctx.cfg.sizes.clone();
    let mut ds = Dataset::default();
    for rep in 0..reps {
        for engine in ctx.cfg.engines() {
            let dir = ctx.fresh_dir("dataset", Some(engine))?;
            let task = ChildTask::Load {
                engine,
                dir: dir.clone(),
                docs: s.dataset_docs,
                batch: s.batch,
                seed: ctx.cfg.seed,
                measure_raw: rep == 0 && engine == EngineKind::AmberDb,
            };
            let result = child::run(&ctx.cfg.exe, &task)?;
            if result.raw_bytes > 0 {
                ds.raw_bytes = result.raw_bytes;
            }
            let (disk_allocated, _) = disk_usage(&dir);
            ctx.progress(&format!(
                "  load {} rep {}: {:.1} s, close {:.1} s, {:.0} MiB on disk",
                engine.name(),
                rep + 1,
                result.secs,
                result.close_secs,
                disk_allocated as f64 / MIB
            ));
            ds.loads.push(LoadSample {
                engine,
                result,
                disk_allocated,
            });
            if rep + 1 == reps {
                ds.dirs.push((engine, dir));
            } else {
                remove(&dir)?;
            }
        }
    }
    Ok(ds)
}

/// The data set, loading it once (untimed for workload 4) if no bulk load has run.
fn ensure_dataset<'c>(ctx: &'c mut Ctx<'_>) -> Result<&'c mut Dataset> {
    if ctx.dataset.is_none() {
        ctx.progress("  loading the data set (not timed)");
        let ds = load(ctx, 1)?;
        ctx.dataset = Some(ds);
    }
    ctx.dataset.as_mut().ok_or_else(|| "no data set".into())
}

/// The data set for the read workloads.
pub(crate) fn dataset<'c>(ctx: &'c mut Ctx<'_>) -> Result<&'c Dataset> {
    Ok(ensure_dataset(ctx)?)
}

/// Workload 4: bulk load in durable batches.
pub(super) fn bulk_load(ctx: &mut Ctx<'_>) -> Result<WorkloadReport> {
    let s = ctx.cfg.sizes.clone();
    if let Some(old) = ctx.dataset.take() {
        for (_, d) in old.dirs {
            remove(&d)?;
        }
    }
    let ds = load(ctx, s.heavy_reps)?;
    let mut thr = Metric::new("load throughput", "docs/s", true);
    let mut close = Metric::new("close after load", "s", false);
    for l in &ds.loads {
        thr.add(
            l.engine.name(),
            false,
            s.dataset_docs as f64 / l.result.secs.max(1e-9),
        );
        close.add(l.engine.name(), false, l.result.close_secs);
    }
    ctx.dataset = Some(ds);
    let mut notes = vec![format!(
        "{} documents (~1 KiB each) in transactions of {}, each durable; every repetition in a \
         fresh directory, in a child process per engine; {} repetitions, interleaved. \
         Generating the documents is not timed; serializing them is.",
        s.dataset_docs, s.batch, s.heavy_reps
    )];
    notes.extend(config_notes(Mode::Durable));
    notes.push(
        "AmberDB's background checkpoints (every 128 MiB of log, default) run during the load \
         and are included. *close after load*: AmberDB writes a checkpoint of the whole state \
         on close, so the next open replays nothing."
            .into(),
    );
    Ok(WorkloadReport {
        number: 4,
        id: "bulk-load".into(),
        title: format!(
            "Bulk load: {} documents in batches of {} per transaction",
            s.dataset_docs, s.batch
        ),
        notes,
        metrics: vec![thr, close],
    })
}

/// Workload 7: reopen after SIGKILL and after a clean close.
pub(super) fn reopen(ctx: &mut Ctx<'_>) -> Result<WorkloadReport> {
    let s = ctx.cfg.sizes.clone();
    let (exe, seed) = (ctx.cfg.exe.clone(), ctx.cfg.seed);
    let dirs = ensure_dataset(ctx)?.dirs.clone();
    let mut killed = Metric::new("reopen after SIGKILL", "s", false);
    let mut clean = Metric::new("reopen after clean close", "s", false);
    let mut rss = vec![];
    for rep in 0..s.heavy_reps {
        for (engine, dir) in &dirs {
            let engine = *engine;
            child::crash(
                &exe,
                &ChildTask::CrashWriter {
                    engine,
                    dir: dir.clone(),
                    docs: s.dataset_docs,
                    batch: s.batch,
                    seed,
                    revision: rep as u64 + 1,
                    ready_after: s.crash_batches,
                },
            )?;
            let probe = key(s.dataset_docs.saturating_sub(1));
            let task = ChildTask::Reopen {
                engine,
                dir: dir.clone(),
                probe,
            };
            let after_kill = child::run(&exe, &task)?;
            let after_close = child::run(&exe, &task)?;
            ctx.progress(&format!(
                "  reopen {} rep {}: after SIGKILL {:.2} s, after clean close {:.2} s",
                engine.name(),
                rep + 1,
                after_kill.secs,
                after_close.secs
            ));
            killed.add(engine.name(), false, after_kill.secs);
            clean.add(engine.name(), false, after_close.secs);
            rss.push((engine, after_close.peak_rss_kib));
        }
    }
    if let Some(ds) = ctx.dataset.as_mut() {
        ds.reopen_rss = rss;
    }
    let notes = vec![
        format!(
            "The data set of workload 4 ({} documents, ~1 KiB each). *after SIGKILL*: a child \
             rewrites documents in durable transactions of {} and is killed with SIGKILL \
             during its next transaction after {} of them (about {} MiB of new data since the \
             last clean close); a new child times open + one point read. *after clean close*: \
             that child closes cleanly, and another times open + one point read. Each in a \
             fresh process, page cache warm. {} repetitions.",
            s.dataset_docs,
            s.batch,
            s.crash_batches,
            s.crash_batches * s.batch / 1024,
            s.heavy_reps
        ),
        "AmberDB loads its newest checkpoint (decompress, check the block CRCs and the body \
         SHA-256, rebuild the in-memory maps; per-document hashes are left to `verify`) and replays the log after it; SQLite and redb map their file and read lazily \
         (redb repairs its allocator state after an unclean shutdown)."
            .into(),
    ];
    Ok(WorkloadReport {
        number: 7,
        id: "reopen".into(),
        title: format!("Reopen time with {} documents", s.dataset_docs),
        notes,
        metrics: vec![killed, clean],
    })
}

/// Workload 8: disk bytes and peak RSS.
pub(super) fn footprint(ctx: &mut Ctx<'_>) -> Result<WorkloadReport> {
    let s = ctx.cfg.sizes.clone();
    let exe = ctx.cfg.exe.clone();
    let ds = ensure_dataset(ctx)?;
    if ds.reopen_rss.is_empty() {
        // Workload 7 did not run: one clean reopen per engine for the RSS after open.
        let probe = key(s.dataset_docs.saturating_sub(1));
        for (engine, dir) in ds.dirs.clone() {
            let r = child::run(
                &exe,
                &ChildTask::Reopen {
                    engine,
                    dir,
                    probe: probe.clone(),
                },
            )?;
            ds.reopen_rss.push((engine, r.peak_rss_kib));
        }
    }
    let mut disk = Metric::new("disk used", "MiB", false);
    let mut rss_load = Metric::new("peak RSS, load", "MiB", false);
    let mut rss_open = Metric::new("peak RSS, reopen + 1 read", "MiB", false);
    for l in &ds.loads {
        disk.add(l.engine.name(), false, l.disk_allocated as f64 / MIB);
        rss_load.add(
            l.engine.name(),
            false,
            l.result.peak_rss_kib as f64 / 1024.0,
        );
    }
    if ds.raw_bytes > 0 {
        disk.add(RAW_DATA, true, ds.raw_bytes as f64 / MIB);
    }
    for (engine, kib) in &ds.reopen_rss {
        rss_open.add(engine.name(), false, *kib as f64 / 1024.0);
    }
    let notes = vec![
        format!(
            "The data set of workload 4 ({} documents). *disk used*: allocated blocks of every \
             file in the engine's directory right after the load and a clean close.",
            s.dataset_docs
        ),
        "*peak RSS*: `VmHWM` of the child process that did the load (workload 4) or the clean \
         reopen (workload 7), one process per engine so engines never share a heap."
            .into(),
        "AmberDB keeps every live document in memory by design; SQLite and redb keep pages in \
         their caches and the OS page cache (not counted in RSS unless mapped and touched)."
            .into(),
    ];
    Ok(WorkloadReport {
        number: 8,
        id: "footprint".into(),
        title: "Disk bytes and peak memory (RSS)".into(),
        notes,
        metrics: vec![disk, rss_load, rss_open],
    })
}

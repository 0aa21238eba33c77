//! Workloads 1-3: single-document commits, durable with 1 and 16 writers, buffered with 1.
//!
//! The virtual disks this runs on change their fsync latency by 10× from one second to the
//! next (other tenants' flushes share the journal and the device queue), so whole-run
//! alternation (A, B, C, A, B, C) is not fine enough. Each repetition opens every engine (and
//! the raw-disk files) on an empty directory at once and alternates small blocks of commits
//! between them; an engine's time for the repetition is the sum of its blocks. Documents are
//! generated before the clock starts; opening and closing are not timed.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{per_sec, quantile_ms, remove, Ctx};
use crate::engines::{self, config_notes, EngineKind, Mode, Store};
use crate::gamestate::{document, key};
use crate::report::{Metric, WorkloadReport};
use crate::Result;

const RAW_APPEND: &str = "raw disk: append + fdatasync";
const RAW_OVERWRITE: &str = "raw disk: overwrite + fdatasync";

/// Commits per engine per block, single-writer workloads.
const BLOCK: usize = 50;
/// Commits per writer per engine per block, workload 2.
const BLOCK_PER_WRITER: usize = 10;

fn docs(seed: u64, first: u64, n: usize) -> Vec<(String, Value)> {
    (first..first + n as u64)
        .map(|i| (key(i), document(seed, i, 0)))
        .collect()
}

/// One engine's part of a repetition: its store, its pending documents and what it measured.
struct Lane {
    engine: EngineKind,
    store: Box<dyn Store>,
    dir: std::path::PathBuf,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

fn open_lanes(ctx: &mut Ctx<'_>, mode: Mode, what: &str) -> Result<Vec<Lane>> {
    let mut lanes = vec![];
    for engine in ctx.cfg.engines() {
        let dir = ctx.fresh_dir(what, Some(engine))?;
        let store = engines::open(engine, &dir, mode)?;
        lanes.push(Lane {
            engine,
            store,
            dir,
            elapsed: Duration::ZERO,
            latencies: vec![],
        });
    }
    Ok(lanes)
}

fn close_lanes(lanes: Vec<Lane>) -> Result<()> {
    for l in lanes {
        l.store.close()?;
        remove(&l.dir)?;
    }
    Ok(())
}

/// The raw-disk reference files: one appended to, one pre-written and overwritten.
struct RawFiles {
    dir: std::path::PathBuf,
    append: File,
    overwrite: File,
    append_time: Duration,
    overwrite_time: Duration,
}

impl RawFiles {
    fn open(dir: std::path::PathBuf, total_bytes: usize) -> Result<RawFiles> {
        let append = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("raw-append.log"))?;
        let mut overwrite = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(dir.join("raw-overwrite.log"))?;
        let zeros = vec![0u8; 1 << 20];
        let mut left = total_bytes;
        while left > 0 {
            let n = left.min(zeros.len());
            overwrite.write_all(zeros.get(..n).unwrap_or_default())?;
            left -= n;
        }
        overwrite.sync_all()?;
        overwrite.seek(SeekFrom::Start(0))?;
        append.sync_all()?;
        File::open(&dir)?.sync_all()?;
        Ok(RawFiles {
            dir,
            append,
            overwrite,
            append_time: Duration::ZERO,
            overwrite_time: Duration::ZERO,
        })
    }

    fn block(f: &mut File, payloads: &[Vec<u8>]) -> Result<Duration> {
        let t = Instant::now();
        for p in payloads {
            f.write_all(p)?;
            f.sync_data()?;
        }
        Ok(t.elapsed())
    }
}

fn payloads(items: &[(String, Value)]) -> Result<Vec<Vec<u8>>> {
    items
        .iter()
        .map(|(_, v)| Ok(serde_json::to_vec(v)?))
        .collect()
}

fn remove_raw(raw: RawFiles) -> Result<()> {
    let dir = raw.dir.clone();
    drop(raw);
    remove(Path::new(&dir))
}

/// Workloads 1 and 3: one writer; `with_raw` adds the raw-disk rows, `Buffered` mode ends
/// every block with a timed `sync`.
fn single_writer(
    ctx: &mut Ctx<'_>,
    mode: Mode,
    commits: usize,
    what: &str,
) -> Result<(Metric, Metric)> {
    let s = ctx.cfg.sizes.clone();
    let block = if mode == Mode::Buffered {
        20 * BLOCK
    } else {
        BLOCK
    }
    .min(commits)
    .max(1);
    let blocks = commits.div_ceil(block);
    let mut thr = Metric::new("throughput", "commits/s", true);
    let mut p99 = Metric::new("p99 latency", "ms", false);
    for rep in 0..s.reps {
        let mut lanes = open_lanes(ctx, mode, what)?;
        let mut raw = match mode {
            Mode::Durable => {
                let dir = ctx.fresh_dir(&format!("{what}-raw"), None)?;
                Some(RawFiles::open(dir, commits * 2048)?)
            }
            Mode::Buffered => None,
        };
        for b in 0..blocks {
            let first = (b * block) as u64;
            let n = block.min(commits - b * block);
            for lane in &mut lanes {
                let items = docs(ctx.cfg.seed, first, n);
                let t = Instant::now();
                for (k, v) in items {
                    let t0 = Instant::now();
                    lane.store.put(&k, v)?;
                    lane.latencies.push(t0.elapsed());
                }
                if mode == Mode::Buffered {
                    lane.store.sync()?;
                }
                lane.elapsed += t.elapsed();
            }
            if let Some(raw) = raw.as_mut() {
                let p = payloads(&docs(ctx.cfg.seed, first, n))?;
                raw.append_time += RawFiles::block(&mut raw.append, &p)?;
                raw.overwrite_time += RawFiles::block(&mut raw.overwrite, &p)?;
            }
        }
        for lane in &mut lanes {
            thr.add(lane.engine.name(), false, per_sec(commits, lane.elapsed));
            p99.add(
                lane.engine.name(),
                false,
                quantile_ms(&mut lane.latencies, 0.99),
            );
        }
        if let Some(raw) = raw {
            thr.add(RAW_APPEND, true, per_sec(commits, raw.append_time));
            thr.add(RAW_OVERWRITE, true, per_sec(commits, raw.overwrite_time));
            remove_raw(raw)?;
        }
        close_lanes(lanes)?;
        ctx.progress(&format!("  rep {}/{}", rep + 1, s.reps));
    }
    Ok((thr, p99))
}

/// Workload 1: durable single-document commits, one writer.
pub(super) fn durable_one(ctx: &mut Ctx<'_>) -> Result<WorkloadReport> {
    let s = ctx.cfg.sizes.clone();
    let (thr, p99) = single_writer(ctx, Mode::Durable, s.w1_commits, "w1")?;
    let mut notes = vec![format!(
        "{} commits of one new ~1 KiB document per engine per repetition, {} repetitions; \
         within a repetition the engines take turns in blocks of {BLOCK} commits.",
        s.w1_commits, s.reps
    )];
    notes.extend(config_notes(Mode::Durable));
    notes.push(format!(
        "*{RAW_APPEND}*: `write` + `fdatasync` of the same JSON bytes to a growing file, the \
         physical limit of one writer appending to a log. *{RAW_OVERWRITE}*: the same over a \
         file already written and synced, so `fdatasync` has no file size or extent change \
         to journal."
    ));
    Ok(WorkloadReport {
        number: 1,
        id: "durable-1".into(),
        title: "Durable single-document commits, 1 writer".into(),
        notes,
        metrics: vec![thr, p99],
    })
}

/// One block of workload 2 on one engine: every writer commits its documents; returns the
/// wall time from the common start to the last writer's end.
fn concurrent_block(
    store: &dyn Store,
    work: Vec<Vec<(String, Value)>>,
    latencies: &mut Vec<Duration>,
) -> Result<Duration> {
    let barrier = Barrier::new(work.len() + 1);
    std::thread::scope(|scope| -> Result<Duration> {
        let handles: Vec<_> = work
            .into_iter()
            .map(|items| {
                let barrier = &barrier;
                scope.spawn(move || -> Result<Vec<Duration>> {
                    let mut lat = Vec::with_capacity(items.len());
                    barrier.wait();
                    for (k, v) in items {
                        let t0 = Instant::now();
                        store.put(&k, v)?;
                        lat.push(t0.elapsed());
                    }
                    Ok(lat)
                })
            })
            .collect();
        barrier.wait();
        let t = Instant::now();
        for h in handles {
            latencies.extend(h.join().map_err(|_| "writer thread panicked")??);
        }
        Ok(t.elapsed())
    })
}

/// Workload 2: durable single-document commits from concurrent writer threads.
pub(super) fn durable_many(ctx: &mut Ctx<'_>) -> Result<WorkloadReport> {
    let s = ctx.cfg.sizes.clone();
    let writers = s.w2_writers;
    let per = s.w2_commits_per_writer;
    let total = writers * per;
    let block = BLOCK_PER_WRITER.min(per).max(1);
    let blocks = per.div_ceil(block);
    let mut thr = Metric::new("throughput", "commits/s", true);
    let mut p99 = Metric::new("p99 latency", "ms", false);
    let mut cpf = Metric::new("commits per fsync", "commits", true);
    for rep in 0..s.reps {
        let mut lanes = open_lanes(ctx, Mode::Durable, "w2")?;
        let raw_dir = ctx.fresh_dir("w2-raw", None)?;
        let mut raw = RawFiles::open(raw_dir, 0)?;
        for b in 0..blocks {
            let n = block.min(per - b * block);
            for lane in &mut lanes {
                let work: Vec<Vec<(String, Value)>> = (0..writers)
                    .map(|w| docs(ctx.cfg.seed, (w * per + b * block) as u64, n))
                    .collect();
                lane.elapsed += concurrent_block(&*lane.store, work, &mut lane.latencies)?;
            }
            let p = payloads(&docs(ctx.cfg.seed, (b * block) as u64, n))?;
            raw.append_time += RawFiles::block(&mut raw.append, &p)?;
        }
        for lane in &mut lanes {
            thr.add(lane.engine.name(), false, per_sec(total, lane.elapsed));
            p99.add(
                lane.engine.name(),
                false,
                quantile_ms(&mut lane.latencies, 0.99),
            );
            if let Some(c) = lane.store.commits_per_fsync() {
                cpf.add(lane.engine.name(), false, c);
            }
        }
        thr.add(RAW_APPEND, true, per_sec(blocks * block, raw.append_time));
        remove_raw(raw)?;
        close_lanes(lanes)?;
        ctx.progress(&format!("  rep {}/{}", rep + 1, s.reps));
    }
    let mut notes = vec![format!(
        "{writers} threads × {per} commits of one new ~1 KiB document each, per engine per \
         repetition; {} repetitions. Within a repetition the engines take turns in blocks \
         where each thread commits {block}, all threads started together; throughput is \
         commits over the wall time of the blocks.",
        s.reps
    )];
    notes.extend(config_notes(Mode::Durable));
    notes.push(
        "SQLite and redb have one writer at a time and no group commit: every commit is its own \
         fsync. AmberDB's committer writes and fdatasyncs every queued commit together."
            .into(),
    );
    notes.push(format!(
        "*{RAW_APPEND}*: one writer, one fdatasync per commit (what any engine without group \
         commit is bounded by), in turn with the engines."
    ));
    Ok(WorkloadReport {
        number: 2,
        id: "durable-16".into(),
        title: format!("Durable single-document commits, {writers} concurrent writers"),
        notes,
        metrics: vec![thr, p99, cpf],
    })
}

/// Workload 3: buffered single-document commits, one writer.
pub(super) fn buffered_one(ctx: &mut Ctx<'_>) -> Result<WorkloadReport> {
    let s = ctx.cfg.sizes.clone();
    let (thr, p99) = single_writer(ctx, Mode::Buffered, s.w3_commits, "w3")?;
    let mut notes = vec![format!(
        "{} commits of one new ~1 KiB document per engine per repetition, {} repetitions; \
         the engines take turns in blocks of {} commits, each block ending with one call that \
         makes everything durable (timed).",
        s.w3_commits,
        s.reps,
        (20 * BLOCK).min(s.w3_commits)
    )];
    notes.extend(config_notes(Mode::Buffered));
    Ok(WorkloadReport {
        number: 3,
        id: "buffered-1".into(),
        title: "Buffered single-document commits, 1 writer".into(),
        notes,
        metrics: vec![thr, p99],
    })
}

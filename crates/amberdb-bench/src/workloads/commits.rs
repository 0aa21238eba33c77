//! Workloads 1-3: single-document commits, durable with 1 and 16 writers, buffered with 1.
//!
//! Every repetition of every engine starts from an empty database in a fresh directory; each
//! commit writes a new document. Documents are generated before the clock starts. Opening and
//! closing are not timed.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{per_sec, quantile_ms, remove, Ctx};
use crate::engines::{self, config_notes, EngineKind, Mode};
use crate::gamestate::{document, key};
use crate::rawdisk;
use crate::report::{Metric, WorkloadReport};
use crate::Result;

const RAW_APPEND: &str = "raw disk: append + fdatasync";
const RAW_OVERWRITE: &str = "raw disk: overwrite + fdatasync";

fn docs(seed: u64, first: u64, n: usize) -> Vec<(String, Value)> {
    (first..first + n as u64)
        .map(|i| (key(i), document(seed, i, 0)))
        .collect()
}

/// One writer committing `n` documents: (elapsed, per-commit latencies). With `sync_at_end`
/// the final `sync` is inside the timed region.
fn one_writer(
    ctx: &mut Ctx<'_>,
    engine: EngineKind,
    mode: Mode,
    n: usize,
    what: &str,
) -> Result<(Duration, Vec<Duration>, Option<f64>)> {
    let dir = ctx.fresh_dir(what, Some(engine))?;
    let store = engines::open(engine, &dir, mode)?;
    let items = docs(ctx.cfg.seed, 0, n);
    let mut lat = Vec::with_capacity(n);
    let t = Instant::now();
    for (k, v) in items {
        let t0 = Instant::now();
        store.put(&k, v)?;
        lat.push(t0.elapsed());
    }
    if mode == Mode::Buffered {
        store.sync()?;
    }
    let elapsed = t.elapsed();
    let cpf = store.commits_per_fsync();
    store.close()?;
    remove(&dir)?;
    Ok((elapsed, lat, cpf))
}

fn raw_payloads(seed: u64, n: usize) -> Result<Vec<Vec<u8>>> {
    (0..n as u64)
        .map(|i| Ok(serde_json::to_vec(&document(seed, i, 0))?))
        .collect()
}

/// Workload 1: durable single-document commits, one writer.
pub(super) fn durable_one(ctx: &mut Ctx<'_>) -> Result<WorkloadReport> {
    let s = ctx.cfg.sizes.clone();
    let mut thr = Metric::new("throughput", "commits/s", true);
    let mut p99 = Metric::new("p99 latency", "ms", false);
    for rep in 0..s.reps {
        for engine in EngineKind::ALL {
            let (el, mut lat, _) = one_writer(ctx, engine, Mode::Durable, s.w1_commits, "w1")?;
            thr.add(engine.name(), false, per_sec(s.w1_commits, el));
            p99.add(engine.name(), false, quantile_ms(&mut lat, 0.99));
        }
        let payloads = raw_payloads(ctx.cfg.seed, s.w1_commits)?;
        let dir = ctx.fresh_dir("w1-raw", None)?;
        let el = rawdisk::append(&dir, &payloads)?;
        thr.add(RAW_APPEND, true, per_sec(s.w1_commits, el));
        let el = rawdisk::overwrite(&dir, &payloads)?;
        thr.add(RAW_OVERWRITE, true, per_sec(s.w1_commits, el));
        remove(&dir)?;
        ctx.progress(&format!("  rep {}/{}", rep + 1, s.reps));
    }
    let mut notes = vec![format!(
        "{} commits of one new ~1 KiB document per repetition, {} repetitions, interleaved.",
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

/// Workload 2: durable single-document commits from concurrent writer threads.
pub(super) fn durable_many(ctx: &mut Ctx<'_>) -> Result<WorkloadReport> {
    let s = ctx.cfg.sizes.clone();
    let writers = s.w2_writers;
    let per = s.w2_commits_per_writer;
    let total = writers * per;
    let mut thr = Metric::new("throughput", "commits/s", true);
    let mut p99 = Metric::new("p99 latency", "ms", false);
    let mut cpf = Metric::new("commits per fsync", "commits", true);
    for rep in 0..s.reps {
        for engine in EngineKind::ALL {
            let dir = ctx.fresh_dir("w2", Some(engine))?;
            let store = engines::open(engine, &dir, Mode::Durable)?;
            let seed = ctx.cfg.seed;
            let work: Vec<Vec<(String, Value)>> = (0..writers)
                .map(|w| docs(seed, (w * per) as u64, per))
                .collect();
            let barrier = Barrier::new(writers + 1);
            let store_ref = &*store;
            let (elapsed, lat) = std::thread::scope(|scope| -> Result<_> {
                let handles: Vec<_> = work
                    .into_iter()
                    .map(|items| {
                        let barrier = &barrier;
                        scope.spawn(move || -> Result<Vec<Duration>> {
                            let mut lat = Vec::with_capacity(items.len());
                            barrier.wait();
                            for (k, v) in items {
                                let t0 = Instant::now();
                                store_ref.put(&k, v)?;
                                lat.push(t0.elapsed());
                            }
                            Ok(lat)
                        })
                    })
                    .collect();
                barrier.wait();
                let t = Instant::now();
                let mut all = Vec::with_capacity(total);
                for h in handles {
                    all.extend(h.join().map_err(|_| "writer thread panicked")??);
                }
                Ok((t.elapsed(), all))
            })?;
            let mut lat = lat;
            thr.add(engine.name(), false, per_sec(total, elapsed));
            p99.add(engine.name(), false, quantile_ms(&mut lat, 0.99));
            if let Some(c) = store.commits_per_fsync() {
                cpf.add(engine.name(), false, c);
            }
            store.close()?;
            remove(&dir)?;
        }
        let payloads = raw_payloads(ctx.cfg.seed, s.w1_commits)?;
        let dir = ctx.fresh_dir("w2-raw", None)?;
        let el = rawdisk::append(&dir, &payloads)?;
        thr.add(RAW_APPEND, true, per_sec(s.w1_commits, el));
        remove(&dir)?;
        ctx.progress(&format!("  rep {}/{}", rep + 1, s.reps));
    }
    let mut notes = vec![format!(
        "{writers} threads × {per} commits of one new ~1 KiB document each per repetition, \
         started together; throughput is total commits over wall time; {} repetitions, \
         interleaved.",
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
         commit is bounded by)."
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
    let mut thr = Metric::new("throughput", "commits/s", true);
    let mut p99 = Metric::new("p99 latency", "ms", false);
    for rep in 0..s.reps {
        for engine in EngineKind::ALL {
            let (el, mut lat, _) = one_writer(ctx, engine, Mode::Buffered, s.w3_commits, "w3")?;
            thr.add(engine.name(), false, per_sec(s.w3_commits, el));
            p99.add(engine.name(), false, quantile_ms(&mut lat, 0.99));
        }
        ctx.progress(&format!("  rep {}/{}", rep + 1, s.reps));
    }
    let mut notes = vec![format!(
        "{} commits of one new ~1 KiB document per repetition, then one call that makes \
         everything durable (inside the timed region); {} repetitions, interleaved.",
        s.w3_commits, s.reps
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

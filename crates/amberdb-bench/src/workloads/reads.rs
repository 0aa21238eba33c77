//! Workloads 5 and 6: point reads and scans over the shared data set.
//!
//! All three engines are open at once on their copy of the data set, so the repetitions can
//! be interleaved; keys are drawn uniformly at random (seeded) before the clock starts.

use std::sync::Barrier;
use std::time::Instant;

use rand::{Rng, SeedableRng};

use super::{dataset::dataset, per_sec, Ctx};
use crate::engines::{self, EngineKind, Mode, Reader, Store};
use crate::gamestate::key;
use crate::report::{Metric, WorkloadReport};
use crate::Result;

fn open_all(ctx: &mut Ctx<'_>) -> Result<Vec<(EngineKind, Box<dyn Store>)>> {
    let engines = ctx.cfg.engines();
    let ds = dataset(ctx)?;
    let mut out = vec![];
    for engine in engines {
        out.push((
            engine,
            engines::open(engine, ds.dir(engine)?, Mode::Durable)?,
        ));
    }
    Ok(out)
}

fn close_all(stores: Vec<(EngineKind, Box<dyn Store>)>) -> Result<()> {
    for (_, s) in stores {
        s.close()?;
    }
    Ok(())
}

fn random_keys(seed: u64, n: usize, docs: u64) -> Vec<String> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| key(rng.random_range(0..docs.max(1))))
        .collect()
}

fn read_all(reader: &mut dyn Reader, keys: &[String], engine: EngineKind) -> Result<usize> {
    let mut bytes = 0;
    for k in keys {
        bytes += reader
            .get(k)?
            .ok_or_else(|| format!("{}: {k} missing", engine.name()))?;
    }
    Ok(bytes)
}

const READ_NOTES: &str = "SQLite: one connection per reader thread, cached prepared `SELECT`, \
     `mmap_size` 8 GiB (the whole file mapped). redb: a read transaction per operation. \
     AmberDB: `Db::get`/`Db::list` on the latest published view. Every operation sees the \
     latest committed state and touches the value bytes.";

/// Workload 5: random point reads with 1 and 2 threads.
pub(super) fn point_reads(ctx: &mut Ctx<'_>) -> Result<WorkloadReport> {
    let s = ctx.cfg.sizes.clone();
    let stores = open_all(ctx)?;
    let keys: Vec<Vec<String>> = (0..2)
        .map(|t| random_keys(ctx.cfg.seed ^ (t + 1), s.reads_per_thread, s.dataset_docs))
        .collect();
    let mut one = Metric::new("1 thread", "reads/s", true);
    let mut two = Metric::new("2 threads", "reads/s", true);
    for rep in 0..s.reps {
        for (engine, store) in &stores {
            let engine = *engine;
            let mut reader = store.reader()?;
            let first = keys.first().ok_or("no keys")?;
            let t = Instant::now();
            read_all(&mut *reader, first, engine)?;
            one.add(engine.name(), false, per_sec(first.len(), t.elapsed()));
            drop(reader);

            let barrier = Barrier::new(keys.len() + 1);
            let t = std::thread::scope(|scope| -> Result<_> {
                let handles: Vec<_> = keys
                    .iter()
                    .map(|ks| {
                        let mut reader = store.reader()?;
                        let barrier = &barrier;
                        Ok(scope.spawn(move || {
                            barrier.wait();
                            read_all(&mut *reader, ks, engine)
                        }))
                    })
                    .collect::<Result<_>>()?;
                barrier.wait();
                let t = Instant::now();
                for h in handles {
                    h.join().map_err(|_| "reader thread panicked")??;
                }
                Ok(t.elapsed())
            })?;
            two.add(engine.name(), false, per_sec(2 * s.reads_per_thread, t));
        }
        ctx.progress(&format!("  rep {}/{}", rep + 1, s.reps));
    }
    close_all(stores)?;
    Ok(WorkloadReport {
        number: 5,
        id: "point-reads".into(),
        title: format!("Random point reads over {} documents", s.dataset_docs),
        notes: vec![
            format!(
                "{} uniformly random keys per thread per repetition (the same keys for every \
                 engine), after the data set of workload 4 was reopened; {} repetitions, \
                 interleaved. 2 threads: total reads over wall time.",
                s.reads_per_thread, s.reps
            ),
            READ_NOTES.into(),
        ],
        metrics: vec![one, two],
    })
}

/// Workload 6: prefix scans and range scans of 100 documents.
pub(super) fn scans(ctx: &mut Ctx<'_>) -> Result<WorkloadReport> {
    let s = ctx.cfg.sizes.clone();
    let stores = open_all(ctx)?;
    let groups = (s.dataset_docs / 100).max(1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(ctx.cfg.seed ^ 0x5CA9);
    let prefixes: Vec<String> = (0..s.scans)
        .map(|_| format!("p{:05}", rng.random_range(0..groups)))
        .collect();
    let starts: Vec<String> = (0..s.scans)
        .map(|_| key(rng.random_range(0..s.dataset_docs.saturating_sub(100).max(1))))
        .collect();
    let mut prefix = Metric::new("prefix scan", "scans/s", true);
    let mut range = Metric::new("range scan", "scans/s", true);
    let expect = if s.dataset_docs >= 100 { 100 } else { 0 };
    for rep in 0..s.reps {
        for (engine, store) in &stores {
            let mut reader = store.reader()?;
            let t = Instant::now();
            for p in &prefixes {
                let (n, _) = reader.prefix(p, 100)?;
                if expect > 0 && n != expect {
                    return Err(format!("{}: prefix {p} gave {n} documents", engine.name()).into());
                }
            }
            prefix.add(engine.name(), false, per_sec(prefixes.len(), t.elapsed()));
            let t = Instant::now();
            for k in &starts {
                let (n, _) = reader.after(k, 100)?;
                if expect > 0 && n != expect {
                    return Err(
                        format!("{}: range after {k} gave {n} documents", engine.name()).into(),
                    );
                }
            }
            range.add(engine.name(), false, per_sec(starts.len(), t.elapsed()));
        }
        ctx.progress(&format!("  rep {}/{}", rep + 1, s.reps));
    }
    close_all(stores)?;
    Ok(WorkloadReport {
        number: 6,
        id: "scans".into(),
        title: "Prefix and range scans of 100 documents".into(),
        notes: vec![
            format!(
                "{} scans of each kind per repetition, 1 thread, over the data set of workload \
                 4; {} repetitions, interleaved. *prefix scan*: the 100 keys `p{{5 digits}}*` \
                 (AmberDB `ListOptions::prefix`, SQLite `key >= ?2 AND key < ?3`, redb a \
                 range); *range scan*: the 100 keys after a random key (`start_after`).",
                s.scans, s.reps
            ),
            READ_NOTES.into(),
        ],
        metrics: vec![prefix, range],
    })
}

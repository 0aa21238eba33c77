//! `revert-bench`: `Db::revert` of 10,000 documents (issue 10). Loads N documents (~200-byte
//! values), overwrites every one, then times a dry run and the revert of the collection to
//! the LSN before the overwrite (one transaction of N writes, each read back from the
//! retained log), and an undo of a commit that touched all N. Median of `--runs` fresh
//! databases, each in its own temporary directory.
//!
//! `cargo run --release -p amberdb-bench --bin revert-bench -- --docs 10000 --runs 5`

use std::time::{Duration, Instant};

use amberdb::revert::At;
use amberdb::{Db, Options, RevertOptions, Scope, Transaction, UndoOptions};
use clap::Parser;
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Documents in the collection (all of them changed after the target).
    #[arg(long, default_value_t = 10_000)]
    docs: usize,
    /// Fresh databases to measure; the median is printed.
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

fn load(db: &Db, n: usize, round: u32) -> u64 {
    let mut lsn = 0;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut tx = Transaction::new();
        for i in chunk {
            tx.put(
                "players",
                &format!("p{i:06}"),
                json!({"round": round, "inventory": ["sword", "shield", "potion"], "gold": i, "pad": "x".repeat(120)}),
            );
        }
        lsn = db.commit(&tx).expect("load").lsn;
    }
    lsn
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn main() {
    let a = Args::parse();
    let (mut dry, mut real, mut undo) = (vec![], vec![], vec![]);
    for _ in 0..a.runs.max(1) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open_with(dir.path(), Options::default()).expect("open");
        let good = load(&db, a.docs, 1);
        load(&db, a.docs, 2);
        let scope = Scope::Collection {
            collection: "players".into(),
        };
        let t = Instant::now();
        let r = db
            .revert(&scope, At::Lsn(good), RevertOptions { dry_run: true })
            .expect("dry run");
        dry.push(t.elapsed());
        assert_eq!(r.changed.len(), a.docs);
        let t = Instant::now();
        let r = db
            .revert(&scope, At::Lsn(good), RevertOptions::default())
            .expect("revert");
        real.push(t.elapsed());
        assert_eq!(r.changed.len(), a.docs);
        let t = Instant::now();
        let u = db
            .undo(r.commit_lsn.expect("committed"), UndoOptions::default())
            .expect("undo");
        undo.push(t.elapsed());
        assert_eq!(u.changed.len(), a.docs);
        db.close().expect("close");
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "revert of {} documents, median of {} runs: dry run {:.1} ms, revert (one sync commit) {:.1} ms, undo of that revert {:.1} ms",
        a.docs,
        a.runs,
        ms(median(dry)),
        ms(median(real)),
        ms(median(undo))
    );
}

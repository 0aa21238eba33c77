//! `schema-bench`: the costs of schemas and migrations (issue 11), measured side by side in
//! one run on one machine:
//!
//! 1. read overhead of a lazy upgrade through 3 declarative steps (documents stored at v1,
//!    the spec at v4) against a plain read of the same documents stored at the current
//!    version, both through `Db::get_as`, and `Db::get` (no spec work at all);
//! 2. write overhead of JSON Schema validation: buffered single-document writes into a
//!    collection whose current version has a JSON Schema, against the same writes into a
//!    collection without a spec;
//! 3. a batch migration (`Db::migrate`) of `--migrate-docs` documents: documents/s and the
//!    process's peak RSS before and after.
//!
//! `cargo run --release -p amberdb-bench --bin schema-bench -- --docs 100000 --migrate-docs 1000000`

use std::time::{Duration, Instant};

use amberdb::schema::MigrateOptions;
use amberdb::spec::CollectionSpec;
use amberdb::{Db, Options, Transaction};
use amberdb_bench::machine::peak_rss_kib;
use clap::Parser;
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    /// Documents for the read and write comparisons.
    #[arg(long, default_value_t = 100_000)]
    docs: usize,
    /// Random reads per read variant.
    #[arg(long, default_value_t = 200_000)]
    reads: usize,
    /// Documents in the batch migration.
    #[arg(long, default_value_t = 200_000)]
    migrate_docs: usize,
    /// Where the temporary databases go (default: the system's temp directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

/// A v1 player: ~150 bytes of JSON.
fn player(i: usize) -> Value {
    json!({"name": format!("player-{i}"), "class": "warrior", "gold": i % 10_000,
           "inventory": ["sword", "shield", "potion"], "pad": "x".repeat(40)})
}

/// The same player as v4 stores it (the 3 steps below applied).
fn player_v4(i: usize) -> Value {
    json!({"name": format!("player-{i}"), "class": 1, "coins": i % 10_000,
           "inventory": ["sword", "shield", "potion"], "pad": "x".repeat(40), "level": 1})
}

fn spec(json: Value) -> CollectionSpec {
    serde_json::from_value(json).expect("spec")
}

/// v1 -> v2 renames gold, v2 -> v3 converts the class, v3 -> v4 adds a level.
fn v4_spec() -> CollectionSpec {
    spec(json!({"schema_version": 4,
        "versions": {"1": {}, "2": {}, "3": {}, "4": {}},
        "migrations": [
            {"from": 1, "to": 2, "up": [{"op": "rename", "path": "/gold", "to": "coins"}],
             "down": [{"op": "rename", "path": "/coins", "to": "gold"}]},
            {"from": 2, "to": 3, "up": [{"op": "convert", "path": "/class", "mapping": [["warrior", 1], ["mage", 2]]}],
             "down": [{"op": "convert", "path": "/class", "mapping": [[1, "warrior"], [2, "mage"]]}]},
            {"from": 3, "to": 4, "up": [{"op": "set_default", "path": "/level", "value": 1}],
             "down": [{"op": "remove", "path": "/level"}]}]}))
}

fn load(db: &Db, collection: &str, n: usize, value: impl Fn(usize) -> Value) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut tx = Transaction::new();
        for &i in chunk {
            tx.put(collection, &format!("p{i:08}"), value(i));
        }
        db.commit(&tx).expect("load");
    }
}

/// A cheap deterministic key sequence (xorshift), the same for every variant.
fn keys(n: usize, count: usize) -> Vec<String> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("p{:08}", x % n as u64)
        })
        .collect()
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn main() {
    let a = Args::parse();
    let base = a.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(&base).expect("tempdir");
    let db = Db::open_with(
        dir.path(),
        Options {
            durability: amberdb::buffered(Duration::from_millis(10)),
            ..Options::default()
        },
    )
    .expect("open");

    // 1. Reads. "old" is stored at v1 under a v4 spec (3 steps on every read); "cur" holds
    // the same documents stored at v4 under the same spec.
    let v1 = spec(json!({"schema_version": 1, "versions": {"1": {}}}));
    db.set_spec("old", &v1).expect("spec");
    load(&db, "old", a.docs, player);
    db.set_spec("old", &v4_spec()).expect("spec");
    db.set_spec("cur", &v4_spec()).expect("spec");
    load(&db, "cur", a.docs, player_v4);
    let ks = keys(a.docs, a.reads);
    assert_eq!(
        db.get_as("old", &ks[0], None)
            .expect("read")
            .map(|d| d.doc.meta.schema_version),
        Some(4)
    );
    let time = |f: &dyn Fn(&str)| {
        let t = Instant::now();
        for k in &ks {
            f(k);
        }
        t.elapsed()
    };
    let plain = time(&|k| {
        std::hint::black_box(db.get("cur", k).expect("present"));
    });
    let same = time(&|k| {
        std::hint::black_box(db.get_as("cur", k, None).expect("read").expect("present"));
    });
    let lazy = time(&|k| {
        std::hint::black_box(db.get_as("old", k, None).expect("read").expect("present"));
    });

    // 2. Writes with and without a JSON Schema.
    let schema = spec(json!({"schema_version": 1, "versions": {"1": {"schema": {
        "type": "object",
        "required": ["name", "class", "gold", "inventory"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 64},
            "class": {"enum": ["warrior", "mage", "rogue"]},
            "gold": {"type": "integer", "minimum": 0},
            "inventory": {"type": "array", "items": {"type": "string"}, "maxItems": 100},
            "pad": {"type": "string"}},
        "additionalProperties": false}}}}));
    db.set_spec("validated", &schema).expect("spec");
    let write = |collection: &str| {
        let t = Instant::now();
        for i in 0..a.docs {
            db.put(collection, &format!("p{i:08}"), player(i))
                .expect("put");
        }
        t.elapsed()
    };
    let unvalidated = write("unvalidated");
    let validated = write("validated");
    db.close().expect("close");

    // 3. Batch migration, in a fresh database so the RSS is the migration's.
    let mdir = tempfile::tempdir_in(&base).expect("tempdir");
    let db = Db::open_with(mdir.path(), Options::default()).expect("open");
    db.set_spec("big", &v1).expect("spec");
    load(&db, "big", a.migrate_docs, player);
    db.set_spec("big", &v4_spec()).expect("spec");
    let rss_before = peak_rss_kib();
    let t = Instant::now();
    let report = db
        .migrate(
            "big",
            MigrateOptions {
                to: 4,
                dry_run: false,
            },
        )
        .expect("migrate");
    let took = t.elapsed();
    let rss_after = peak_rss_kib();
    assert_eq!(report.failure_count, 0);
    assert_eq!(report.would_change, a.migrate_docs as u64);
    db.close().expect("close");

    let per = |d: Duration, n: usize| d.as_secs_f64() * 1e6 / n as f64;
    println!("| measurement | result | ratio |");
    println!("| --- | --- | --- |");
    println!(
        "| `Db::get` (no spec work), {} random reads of {} docs | {:.0} reads/s ({:.2} µs) | 1.00x |",
        a.reads,
        a.docs,
        rate(a.reads, plain),
        per(plain, a.reads)
    );
    println!(
        "| `Db::get_as`, stored at the current version | {:.0} reads/s ({:.2} µs) | {:.2}x |",
        rate(a.reads, same),
        per(same, a.reads),
        plain.as_secs_f64() / same.as_secs_f64()
    );
    println!(
        "| `Db::get_as`, lazy upgrade v1 -> v4 (3 steps) | {:.0} reads/s ({:.2} µs) | {:.2}x |",
        rate(a.reads, lazy),
        per(lazy, a.reads),
        plain.as_secs_f64() / lazy.as_secs_f64()
    );
    println!(
        "| buffered puts, no spec ({} docs) | {:.0} writes/s | 1.00x |",
        a.docs,
        rate(a.docs, unvalidated)
    );
    println!(
        "| buffered puts, JSON Schema validated | {:.0} writes/s | {:.2}x |",
        rate(a.docs, validated),
        unvalidated.as_secs_f64() / validated.as_secs_f64()
    );
    println!(
        "| batch migration v1 -> v4 of {} docs (one commit, sync) | {:.0} docs/s ({:.1} s); peak RSS {} MiB before, {} MiB after | |",
        a.migrate_docs,
        rate(a.migrate_docs, took),
        took.as_secs_f64(),
        rss_before / 1024,
        rss_after / 1024
    );
}

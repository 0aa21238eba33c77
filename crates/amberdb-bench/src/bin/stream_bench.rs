//! `stream-bench`: streams (issue 13) against SQLite inserting the same rows, side by side in
//! one run on one machine, and the memory a stream costs per entry:
//!
//! 1. appends of one entry per durable commit (`Db::append`; SQLite: one `INSERT` per
//!    transaction, WAL, `synchronous=FULL`);
//! 2. appends of `--batch` entries per durable commit (SQLite: that many `INSERT`s of a
//!    prepared statement per transaction);
//! 3. reading every entry back in pages of 10,000 (`Db::read_stream` by sequence number;
//!    SQLite: `SELECT … WHERE seq >= ? ORDER BY seq LIMIT 10000` on the primary key), values as
//!    bytes in both;
//! 4. the resident memory of a process that opens a database holding one stream of
//!    `--rss-entries` entries (measured in a child process: `VmRSS` after open minus before),
//!    reported per million entries and checked against `--rss-bound-bytes` per entry: the
//!    bench exits 1 when the bound is exceeded.
//!
//! Entries are small JSON objects (~60 bytes), as a chat line or a game event.
//!
//! `cargo run --release -p amberdb-bench --bin stream-bench -- --rss-entries 10000000`

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use amberdb::{Db, Options, StreamFrom};
use clap::Parser;
use rusqlite::{params, Connection};
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    /// Entries appended one per durable commit.
    #[arg(long, default_value_t = 2_000)]
    single: u64,
    /// Entries appended in batches (and then read back).
    #[arg(long, default_value_t = 1_000_000)]
    batched: u64,
    /// Entries per batch.
    #[arg(long, default_value_t = 1_000)]
    batch: u64,
    /// Entries of the stream whose memory is measured.
    #[arg(long, default_value_t = 1_000_000)]
    rss_entries: u64,
    /// Most bytes of resident memory per entry the open stream may take (checked from a
    /// million entries on).
    #[arg(long, default_value_t = 64)]
    rss_bound_bytes: u64,
    /// Where the temporary databases go (default: the system's temp directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Internal: open the database in this directory, print `VmRSS` before and after (KiB).
    #[arg(long, hide = true)]
    rss_child: Option<PathBuf>,
}

fn entry(i: u64) -> Value {
    json!({"i": i, "who": "player-7", "line": "gg, rematch?", "t": 1_800_000_000u64 + i})
}

fn options() -> Options {
    Options {
        // The log is not history here: a checkpoint drops the segments it covers, so the
        // stream's values live in its files only, as in a long-running database.
        history_retention: Duration::ZERO,
        ..Options::default()
    }
}

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn sqlite(path: &Path) -> Connection {
    let conn = Connection::open(path).expect("sqlite open");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("sync");
    conn.execute_batch(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, value BLOB NOT NULL);",
    )
    .expect("create");
    conn
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn sqlite_insert(conn: &mut Connection, from: u64, n: u64) {
    let tx = conn.transaction().expect("begin");
    {
        let mut st = tx
            .prepare_cached("INSERT INTO events (seq, ts, value) VALUES (?1, ?2, ?3)")
            .expect("prepare");
        let ts = now_us();
        for i in from..from + n {
            let v = serde_json::to_vec(&entry(i)).expect("json");
            st.execute(params![i as i64, ts, v]).expect("insert");
        }
    }
    tx.commit().expect("commit");
}

fn amber_append(db: &Db, from: u64, n: u64) {
    let values: Vec<Value> = (from..from + n).map(entry).collect();
    db.append("events", &values, None).expect("append");
}

/// Entries/s of appending `total` entries `per` at a time.
fn rate(total: u64, per: u64, mut f: impl FnMut(u64, u64)) -> f64 {
    let t = Instant::now();
    let mut i = 1;
    while i <= total {
        let n = per.min(total - i + 1);
        f(i, n);
        i += n;
    }
    total as f64 / t.elapsed().as_secs_f64()
}

fn amber_read_all(db: &Db) -> (u64, f64) {
    let t = Instant::now();
    let (mut from, mut n, mut bytes) = (1, 0u64, 0usize);
    loop {
        let page = db
            .read_stream("events", StreamFrom::Seq(from), 10_000)
            .expect("read");
        if page.entries.is_empty() {
            break;
        }
        n += page.entries.len() as u64;
        bytes += page.entries.iter().map(|e| e.value.len()).sum::<usize>();
        from = page.next_seq;
    }
    assert!(bytes > 0);
    (n, n as f64 / t.elapsed().as_secs_f64())
}

fn sqlite_read_all(conn: &Connection) -> (u64, f64) {
    let t = Instant::now();
    let mut st = conn
        .prepare("SELECT seq, ts, value FROM events WHERE seq >= ?1 ORDER BY seq LIMIT 10000")
        .expect("prepare");
    let (mut from, mut n, mut bytes) = (1i64, 0u64, 0usize);
    loop {
        let mut rows = st.query(params![from]).expect("query");
        let mut got = 0;
        while let Some(r) = rows.next().expect("row") {
            let seq: i64 = r.get(0).expect("seq");
            let _ts: i64 = r.get(1).expect("ts");
            let v: Vec<u8> = r.get(2).expect("value");
            bytes += v.len();
            from = seq + 1;
            got += 1;
        }
        if got == 0 {
            break;
        }
        n += got;
    }
    assert!(bytes > 0);
    (n, n as f64 / t.elapsed().as_secs_f64())
}

fn rss_child(dir: &Path) -> ExitCode {
    let before = vm_rss_kib();
    let t = Instant::now();
    let db = Db::open_with(dir, options()).expect("open");
    let open_s = t.elapsed().as_secs_f64();
    let after = vm_rss_kib();
    let entries = db.stream("events").map_or(0, |s| s.entries);
    let replayed = db.recovery_report().commits_replayed;
    let peak = amberdb_bench::machine::peak_rss_kib();
    println!("{before} {after} {entries} {open_s} {replayed} {peak}");
    drop(db);
    ExitCode::SUCCESS
}

/// Runs this program's `--rss-child` on `dir`: [VmRSS before, after (KiB), entries, open
/// seconds, commits replayed, peak VmHWM (KiB)].
fn open_in_child(dir: &Path) -> Option<[f64; 6]> {
    let out = Command::new(std::env::current_exe().ok()?)
        .arg("--rss-child")
        .arg(dir)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<f64> = text
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let got: Option<[f64; 6]> = f.try_into().ok();
    if got.is_none() {
        eprintln!(
            "the memory child failed: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    got
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(dir) = &args.rss_child {
        return rss_child(dir);
    }
    let root = match &args.dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("temp dir");
    println!(
        "stream-bench: {} single, {} batched ({} per commit), RSS of {} entries; load {}",
        args.single,
        args.batched,
        args.batch,
        args.rss_entries,
        amberdb_bench::machine::loadavg()
    );

    // 1. One entry per durable commit.
    let db = Db::open_with(root.path().join("single"), options()).expect("open");
    let amber_single = rate(args.single, 1, |i, n| amber_append(&db, i, n));
    drop(db);
    let mut conn = sqlite(&root.path().join("single.sqlite"));
    let sqlite_single = rate(args.single, 1, |i, n| sqlite_insert(&mut conn, i, n));
    drop(conn);

    // 2. Batches, then 3. read them all back.
    let db = Db::open_with(root.path().join("batched"), options()).expect("open");
    let amber_batched = rate(args.batched, args.batch, |i, n| amber_append(&db, i, n));
    db.checkpoint().expect("checkpoint");
    let (n, amber_read) = amber_read_all(&db);
    assert_eq!(n, args.batched);
    drop(db);
    let mut conn = sqlite(&root.path().join("batched.sqlite"));
    let sqlite_batched = rate(args.batched, args.batch, |i, n| {
        sqlite_insert(&mut conn, i, n)
    });
    let (n, sqlite_read) = sqlite_read_all(&conn);
    assert_eq!(n, args.batched);
    drop(conn);

    println!();
    println!("| measurement | AmberDB entries/s | SQLite rows/s | AmberDB / SQLite |");
    println!("|---|---|---|---|");
    for (what, a, s) in [
        (
            "append, 1 entry per durable commit",
            amber_single,
            sqlite_single,
        ),
        (
            &*format!("append, {} entries per durable commit", args.batch),
            amber_batched,
            sqlite_batched,
        ),
        ("read every entry, pages of 10,000", amber_read, sqlite_read),
    ] {
        println!("| {what} | {a:.0} | {s:.0} | {:.2}x |", a / s);
    }

    // 4. Memory of an open stream of `rss_entries` entries, in a fresh process.
    let dir = root.path().join("rss");
    let db = Db::open_with(&dir, options()).expect("open");
    let t = Instant::now();
    rate(args.rss_entries, 10_000, |i, n| amber_append(&db, i, n));
    let build_s = t.elapsed().as_secs_f64();
    db.close().expect("close");
    // The same database with no stream: the fixed cost of an open database.
    let empty = root.path().join("rss-empty");
    Db::open_with(&empty, options())
        .and_then(|db| db.close())
        .expect("empty database");
    let (Some(base), Some(full)) = (open_in_child(&empty), open_in_child(&dir)) else {
        return ExitCode::FAILURE;
    };
    let [_, base_after, _, _, _, _] = base;
    let [before, after, entries, open_s, replayed, peak] = full;
    assert_eq!(entries as u64, args.rss_entries);
    let (disk, _) = amberdb_bench::machine::disk_usage(&dir);
    let per_entry = (after - base_after) * 1024.0 / entries;
    println!();
    println!(
        "open stream of {entries:.0} entries (built in {build_s:.1} s, {:.0} MiB on disk): \
         VmRSS {before:.0} KiB before open, {after:.0} KiB after ({open_s:.2} s, {replayed} \
         commits replayed; peak {peak:.0} KiB), {base_after:.0} KiB after opening the same \
         database empty: \
         {per_entry:.1} bytes per entry, {:.1} MiB per million entries (bound {} bytes per entry)",
        disk as f64 / (1 << 20) as f64,
        per_entry * 1e6 / (1 << 20) as f64,
        args.rss_bound_bytes
    );
    // Below a million entries the fixed costs of an open database (a few hundred KiB that
    // vary between runs) dominate the difference; the bound is checked from there.
    if entries >= 1e6 && per_entry > args.rss_bound_bytes as f64 {
        eprintln!(
            "FAILED: {per_entry:.1} bytes per entry is over the bound of {}",
            args.rss_bound_bytes
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

//! `feed-bench`: history, as-of reads and the change feed (issue 10), in one run.
//!
//! a) engine: `Db::history` (one full page of 1,000 versions, with and without values) and
//!    `Db::get_at` at random LSNs within those versions, for a log with only that document and
//!    for a log with `--noise` other commits between every two of its versions (the walk must
//!    cost the versions walked, not the log size);
//! b) commit -> SSE delivery latency through a real `amberdb serve` child: time from sending a
//!    sync PUT to the SSE `change` event of its LSN arriving at a reader (and the PUT's own
//!    response time, which includes the fsync);
//! c) events/s delivered to 1 and to 100 SSE subscribers during a burst of buffered PUTs;
//! d) sync PUTs/s from `--writers` concurrent writers with 0 and with 100 idle SSE
//!    subscribers (on a collection that gets no writes), alternated `--rounds` times.
//!
//! `cargo build --release -p amberdb-cli && cargo run --release -p amberdb-bench --bin feed-bench`

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

use amberdb::history::{At, HistoryOptions};
use amberdb::{buffered, Db, Options, Transaction};
use clap::Parser;
use rand::Rng;
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Versions of the one document whose history is read.
    #[arg(long, default_value_t = 1000)]
    versions: usize,
    /// Other commits between two versions of that document, per engine case (comma list).
    #[arg(long, default_value = "0,20", value_delimiter = ',')]
    noise: Vec<usize>,
    /// Samples of each `history` case.
    #[arg(long, default_value_t = 300)]
    history_samples: usize,
    /// Samples of `get_at`.
    #[arg(long, default_value_t = 3000)]
    asof_samples: usize,
    /// Sequential sync PUTs timed to their SSE event.
    #[arg(long, default_value_t = 500)]
    feed_samples: usize,
    /// Buffered PUTs of one events/s burst.
    #[arg(long, default_value_t = 3000)]
    burst: usize,
    /// SSE subscribers of the big burst, and idle subscribers of the throughput case.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Concurrent HTTP writers (bursts and throughput).
    #[arg(long, default_value_t = 8)]
    writers: usize,
    /// Seconds of one throughput phase.
    #[arg(long, default_value_t = 10)]
    phase_secs: u64,
    /// Throughput rounds, each one phase without and one with the idle subscribers.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// The `amberdb` binary (default: next to this one).
    #[arg(long)]
    amberdb: Option<PathBuf>,
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    let m = d.as_secs_f64() * 1000.0;
    if m < 1.0 {
        format!("{:.0} µs", m * 1000.0)
    } else {
        format!("{m:.2} ms")
    }
}

struct Row(String, String, String, String);

fn lat_row(name: &str, v: &mut [Duration], note: &str) -> Row {
    Row(
        name.into(),
        ms(pct(v, 0.5)),
        ms(pct(v, 0.99)),
        format!("{note} (n={})", v.len()),
    )
}

fn engine(a: &Args, noise: usize, rows: &mut Vec<Row>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open_with(dir.path(), Options::default()).expect("open");
    let fast = buffered(Duration::from_millis(50));
    let mut lsns = Vec::with_capacity(a.versions);
    for v in 0..a.versions {
        let mut tx = Transaction::new();
        tx.durability(fast);
        tx.put("hist", "doc", json!({"v": v, "pad": "x".repeat(150)}));
        lsns.push(db.commit(&tx).expect("commit").lsn);
        for n in 0..noise {
            let mut tx = Transaction::new();
            tx.durability(fast);
            tx.put(
                "noise",
                &format!("n{}", (v * noise + n) % 5000),
                json!({"n": n, "pad": "y".repeat(150)}),
            );
            db.commit(&tx).expect("noise");
        }
    }
    db.sync().expect("sync");
    let log_commits = db.view().lsn();
    for values in [false, true] {
        let mut t = vec![];
        for _ in 0..a.history_samples {
            let s = Instant::now();
            let p = db
                .history(
                    "hist",
                    "doc",
                    HistoryOptions {
                        before_lsn: None,
                        limit: a.versions.min(amberdb::history::MAX_HISTORY_LIMIT),
                        values,
                    },
                )
                .expect("history");
            t.push(s.elapsed());
            assert_eq!(p.versions.len(), a.versions.min(1000));
        }
        rows.push(lat_row(
            &format!(
                "`history`, {} versions, values={values}, log of {log_commits} commits",
                a.versions
            ),
            &mut t,
            "engine, one page",
        ));
    }
    let mut rng = rand::rng();
    let (first, last) = (lsns[0], *lsns.last().expect("versions"));
    let mut t = vec![];
    for _ in 0..a.asof_samples {
        let at = rng.random_range(first..=last);
        let s = Instant::now();
        let d = db.get_at("hist", "doc", At::Lsn(at)).expect("get_at");
        t.push(s.elapsed());
        assert!(d.is_some());
    }
    rows.push(lat_row(
        &format!("`get_at` random LSN in the versions, log of {log_commits} commits"),
        &mut t,
        "engine",
    ));
    db.close().expect("close");
}

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(bin: &PathBuf, data: &std::path::Path) -> Server {
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data);
    for (k, _) in std::env::vars() {
        if k.starts_with("AMBERDB_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn amberdb serve (build it: cargo build --release -p amberdb-cli)");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(first)) = lines.next() {
            let _ = tx.send(first);
        }
        for _ in lines {}
    });
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("amberdb serve did not print its address");
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http"))
        .expect("URL in the first line")
        .trim_end_matches('/')
        .to_owned();
    Server { child, url }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// A sync or buffered PUT; returns the commit's LSN.
fn put(agent: &ureq::Agent, url: &str, coll: &str, key: &str, durability: &str) -> u64 {
    let body = json!({"hp": 20, "pad": "z".repeat(100)}).to_string();
    let mut resp = agent
        .put(format!("{url}/v1/collections/{coll}/docs/{key}"))
        .header("content-type", "application/json")
        .header("amber-durability", durability)
        .send(body.as_bytes())
        .expect("PUT");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().expect("PUT body");
    assert!(status == 200 || status == 201, "PUT {status}: {text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("PUT json");
    v["lsn"].as_u64().expect("lsn")
}

/// One SSE subscriber on `coll` (since=now): a thread that parses the stream by hand and
/// sends `(lsn, arrival)` of every `change` event to `out`. `ready` is set once the
/// response headers arrived (the subscription exists from then on).
fn subscribe(url: &str, coll: &str, out: mpsc::Sender<(u64, Instant)>, ready: mpsc::Sender<()>) {
    let u = format!("{url}/v1/changes?collection={coll}&since=now&heartbeat_ms=300000");
    std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let resp = agent
            .get(&u)
            .header("accept", "text/event-stream")
            .call()
            .expect("GET /v1/changes");
        assert_eq!(resp.status().as_u16(), 200, "changes status");
        let _ = ready.send(());
        let mut r = BufReader::new(resp.into_body().into_reader());
        let (mut id, mut event) = (None::<u64>, String::new());
        let mut line = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let l = line.trim_end_matches(['\r', '\n']);
            if l.is_empty() {
                if event == "change" {
                    if let Some(lsn) = id {
                        if out.send((lsn, Instant::now())).is_err() {
                            return;
                        }
                    }
                }
                id = None;
                event.clear();
            } else if let Some(v) = l.strip_prefix("id:") {
                id = v.trim().parse().ok();
            } else if let Some(v) = l.strip_prefix("event:") {
                event = v.trim().to_owned();
            }
        }
    });
}

fn subscribers(url: &str, coll: &str, n: usize) -> Vec<mpsc::Receiver<(u64, Instant)>> {
    let (rtx, rrx) = mpsc::channel();
    let mut rxs = vec![];
    for _ in 0..n {
        let (tx, rx) = mpsc::channel();
        subscribe(url, coll, tx, rtx.clone());
        rxs.push(rx);
    }
    for _ in 0..n {
        rrx.recv_timeout(Duration::from_secs(30))
            .expect("subscriber connected");
    }
    rxs
}

fn feed_latency(a: &Args, url: &str, rows: &mut Vec<Row>) {
    let ag = agent();
    let rx = subscribers(url, "lat", 1).pop().expect("one");
    // Warm-up: the stream is live once an event arrives.
    let w = put(&ag, url, "lat", "warm", "sync");
    while rx
        .recv_timeout(Duration::from_secs(10))
        .expect("warm-up event")
        .0
        < w
    {}
    let (mut feed, mut put_t) = (vec![], vec![]);
    for i in 0..a.feed_samples {
        let t0 = Instant::now();
        let lsn = put(&ag, url, "lat", &format!("k{}", i % 100), "sync");
        put_t.push(t0.elapsed());
        loop {
            let (l, at) = rx.recv_timeout(Duration::from_secs(10)).expect("event");
            if l == lsn {
                feed.push(at.duration_since(t0));
                break;
            }
        }
    }
    rows.push(lat_row(
        "sync PUT response (client send → 200)",
        &mut put_t,
        "HTTP, includes fsync",
    ));
    rows.push(lat_row(
        "commit → SSE event (client PUT send → event at reader)",
        &mut feed,
        "HTTP, 1 subscriber, includes fsync",
    ));
}

/// `writers` threads PUT until `stop`; counts commits.
fn writers(
    url: &str,
    coll: &str,
    n: usize,
    durability: &'static str,
    budget: Option<usize>,
    dur: Option<Duration>,
) -> (u64, Duration) {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(n + 1));
    let mut hs = vec![];
    for w in 0..n {
        let (url, coll, done, stop, start) = (
            url.to_owned(),
            coll.to_owned(),
            done.clone(),
            stop.clone(),
            start.clone(),
        );
        hs.push(std::thread::spawn(move || {
            let ag = agent();
            start.wait();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Some(b) = budget {
                    if done.fetch_add(1, Ordering::Relaxed) >= b as u64 {
                        done.fetch_sub(1, Ordering::Relaxed);
                        break;
                    }
                }
                put(&ag, &url, &coll, &format!("w{w}-{}", i % 500), durability);
                if budget.is_none() {
                    done.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        }));
    }
    start.wait();
    let t = Instant::now();
    if let Some(d) = dur {
        std::thread::sleep(d);
        stop.store(true, Ordering::Relaxed);
    }
    for h in hs {
        h.join().expect("writer");
    }
    (done.load(Ordering::Relaxed), t.elapsed())
}

fn burst(a: &Args, url: &str, subs: usize, rows: &mut Vec<Row>) {
    let coll = format!("burst{subs}");
    let rxs = subscribers(url, &coll, subs);
    // Warm-up event so every stream is live.
    let w = put(&agent(), url, &coll, "warm", "sync");
    for rx in &rxs {
        while rx.recv_timeout(Duration::from_secs(10)).expect("warm-up").0 < w {}
    }
    let t0 = Instant::now();
    let (n, wt) = writers(url, &coll, a.writers, "buffered", Some(a.burst), None);
    let mut per_sub = vec![];
    let mut lag = vec![];
    let write_end = t0 + wt;
    for rx in &rxs {
        let mut got = 0u64;
        let mut last = t0;
        while got < n {
            let (_, at) = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("burst event");
            got += 1;
            last = at;
        }
        per_sub.push(last.duration_since(t0));
        lag.push(last.saturating_duration_since(write_end));
    }
    let worst = *per_sub.iter().max().expect("subs");
    let total_rate = (n as f64 * subs as f64) / worst.as_secs_f64();
    let mut rates: Vec<f64> = per_sub.iter().map(|d| n as f64 / d.as_secs_f64()).collect();
    rates.sort_by(|x, y| x.total_cmp(y));
    rows.push(Row(
        format!("events/s, {subs} subscriber(s), {n} buffered PUTs from {} writers", a.writers),
        format!("{total_rate:.0} total"),
        format!(
            "{:.0} per subscriber (median), slowest {:.0}",
            rates[rates.len() / 2],
            rates[0]
        ),
        format!(
            "writes took {:.2} s ({:.0} PUT/s); last event {} after the last PUT answer (slowest subscriber)",
            wt.as_secs_f64(),
            n as f64 / wt.as_secs_f64(),
            ms(pct(&mut lag, 1.0))
        ),
    ));
}

fn main() {
    let a = Args::parse();
    let bin = a.amberdb.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .expect("current exe")
            .with_file_name("amberdb")
    });
    let mut rows = vec![];
    let t_all = Instant::now();
    for &noise in &a.noise {
        engine(&a, noise, &mut rows);
        eprintln!("engine noise={noise} done at {:.0?}", t_all.elapsed());
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = serve(&bin, dir.path());
    feed_latency(&a, &srv.url, &mut rows);
    eprintln!("feed latency done at {:.0?}", t_all.elapsed());
    burst(&a, &srv.url, 1, &mut rows);
    burst(&a, &srv.url, a.subscribers, &mut rows);
    eprintln!("bursts done at {:.0?}", t_all.elapsed());
    drop(srv);

    // d) throughput: each phase on a fresh server (killing it ends its subscribers), so
    // idle streams of one phase cannot leak into the next.
    let phase = Duration::from_secs(a.phase_secs);
    let (mut without, mut with) = (vec![], vec![]);
    for r in 0..a.rounds {
        for subs in [0, a.subscribers] {
            let dir = tempfile::tempdir().expect("tempdir");
            let srv = serve(&bin, dir.path());
            let _idle = subscribers(&srv.url, "idle", subs);
            // Warm-up (connections, first segment).
            writers(
                &srv.url,
                "tp",
                a.writers,
                "sync",
                None,
                Some(Duration::from_secs(1)),
            );
            let (n, t) = writers(&srv.url, "tp", a.writers, "sync", None, Some(phase));
            let rate = n as f64 / t.as_secs_f64();
            if subs == 0 {
                without.push(rate);
            } else {
                with.push(rate);
            }
            eprintln!("round {r}: {rate:.0} sync PUT/s with {subs} idle subscribers");
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (m0, m1) = (mean(&without), mean(&with));
    rows.push(Row(
        format!("sync PUT/s, {} writers, 0 subscribers", a.writers),
        format!("{m0:.0}"),
        String::new(),
        format!(
            "mean of {} × {} s: {:?}",
            a.rounds,
            a.phase_secs,
            without.iter().map(|x| x.round()).collect::<Vec<_>>()
        ),
    ));
    rows.push(Row(
        format!(
            "sync PUT/s, {} writers, {} idle SSE subscribers",
            a.writers, a.subscribers
        ),
        format!("{m1:.0}"),
        String::new(),
        format!(
            "mean of {} × {} s: {:?}",
            a.rounds,
            a.phase_secs,
            with.iter().map(|x| x.round()).collect::<Vec<_>>()
        ),
    ));
    rows.push(Row(
        "ratio with / without idle subscribers".into(),
        format!("{:.3}", m1 / m0),
        String::new(),
        format!(
            "bound: ≥ 0.90 ({})",
            if m1 / m0 >= 0.9 { "met" } else { "NOT met" }
        ),
    ));

    println!("| measurement | p50 / value | p99 / detail | notes |");
    println!("| --- | --- | --- | --- |");
    for Row(a, b, c, d) in rows {
        println!("| {a} | {b} | {c} | {d} |");
    }
    eprintln!("total {:.0?}", t_all.elapsed());
}

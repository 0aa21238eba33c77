//! The crash test through HTTP: the real `amberdb serve` binary, concurrent clients writing
//! with sync durability (single PUTs and two-document transactions), SIGKILL at a random
//! moment, restart, and check: every write that got a 2xx is present with its value, and every
//! transaction is visible whole or not at all. 24 rounds on one data directory.

#![allow(clippy::unwrap_used)]

mod serve_support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::Rng;
use serve_support::{agent, send, Served};

const ROUNDS: usize = 24;
const WRITERS: usize = 4;

#[derive(Default)]
struct Acked {
    puts: Vec<(String, u64)>,
    txns: Vec<(String, String, u64)>,
}

/// What one writer saw in a round: acknowledged writes, attempted transactions, and whether the
/// kill cut one of its requests.
type WriterResult = (Acked, Vec<(String, String)>, bool);

fn export(url: &str) -> HashMap<String, serde_json::Value> {
    let (status, body) = send(
        &agent(),
        "GET",
        &format!("{url}/v1/collections/crash/export"),
        None,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    body.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["key"].as_str().unwrap().to_owned(), v["value"].clone())
        })
        .collect()
}

#[test]
fn every_acknowledged_write_survives_sigkill_at_random_moments() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut rng = rand::rng();
    let mut acked = Acked::default();
    let mut attempted_txns: Vec<(String, String)> = vec![];
    let mut total_kills_mid_write = 0;

    for round in 0..=ROUNDS {
        let served = Served::start(&data, &[], &[]);
        let url = served.url.clone();

        // Check everything acknowledged so far.
        let docs = export(&url);
        for (key, i) in &acked.puts {
            let v = docs
                .get(key)
                .unwrap_or_else(|| panic!("round {round}: acknowledged {key} lost"));
            assert_eq!(v["i"], *i, "round {round}: {key} has the wrong value");
        }
        for (a, b, i) in &acked.txns {
            assert!(
                docs.get(a).is_some_and(|v| v["i"] == *i)
                    && docs.get(b).is_some_and(|v| v["i"] == *i),
                "round {round}: acknowledged transaction {a}+{b} lost"
            );
        }
        for (a, b) in &attempted_txns {
            assert_eq!(
                docs.contains_key(a),
                docs.contains_key(b),
                "round {round}: transaction {a}+{b} is half applied"
            );
        }
        if round == ROUNDS {
            assert!(
                served.terminate().success(),
                "clean shutdown after the last round"
            );
            break;
        }

        let stop = AtomicBool::new(false);
        let kill_after = Duration::from_millis(rng.random_range(30..350));
        let results: Vec<WriterResult> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..WRITERS)
                .map(|w| {
                    let (url, stop) = (&url, &stop);
                    scope.spawn(move || {
                        let agent = agent();
                        let mut mine = Acked::default();
                        let mut tried = vec![];
                        let mut cut_mid_request = false;
                        for i in 0u64.. {
                            if stop.load(Ordering::SeqCst) {
                                break;
                            }
                            let value = format!("{{\"w\": {w}, \"i\": {i}}}");
                            let outcome = if w % 2 == 0 {
                                let key = format!("r{round}-w{w}-{i}");
                                send(&agent, "PUT", &format!("{url}/v1/collections/crash/docs/{key}"), Some(&value)).map(|(s, body)| {
                                    if s == 201 {
                                        mine.puts.push((key, i));
                                    } else {
                                        panic!("unexpected {s}: {body}");
                                    }
                                })
                            } else {
                                let (a, b) = (format!("r{round}-w{w}-{i}-a"), format!("r{round}-w{w}-{i}-b"));
                                tried.push((a.clone(), b.clone()));
                                let txn = format!(
                                    r#"{{"ops": [{{"op": "create", "collection": "crash", "key": "{a}", "value": {value}}}, {{"op": "create", "collection": "crash", "key": "{b}", "value": {value}}}]}}"#
                                );
                                send(&agent, "POST", &format!("{url}/v1/txn"), Some(&txn)).map(|(s, body)| {
                                    if s == 200 {
                                        mine.txns.push((a, b, i));
                                    } else {
                                        panic!("unexpected {s}: {body}");
                                    }
                                })
                            };
                            if outcome.is_err() {
                                cut_mid_request = true;
                                break;
                            }
                        }
                        (mine, tried, cut_mid_request)
                    })
                })
                .collect();
            std::thread::sleep(kill_after);
            served.kill();
            stop.store(true, Ordering::SeqCst);
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (mine, tried, cut) in results {
            acked.puts.extend(mine.puts);
            acked.txns.extend(mine.txns);
            attempted_txns.extend(tried);
            total_kills_mid_write += usize::from(cut);
        }
    }
    assert!(
        acked.puts.len() + acked.txns.len() > ROUNDS * 5,
        "too few acknowledged writes to mean anything: {}",
        acked.puts.len() + acked.txns.len()
    );
    assert!(
        total_kills_mid_write > ROUNDS,
        "the kills should land while requests are in flight ({total_kills_mid_write})"
    );
    eprintln!("{} puts and {} transactions acknowledged across {ROUNDS} kills; {total_kills_mid_write} requests cut", acked.puts.len(), acked.txns.len());

    let (code, out, err) =
        serve_support::amberdb(&["verify", "--data", data.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "verify after the crashes: {out}{err}");
}

//! Streams through the real `amberdb serve` binary under SIGKILL: two clients race to append
//! to one stream with `expected_seq` (each reads the last sequence number, appends with it,
//! retries on 409), a third appends batches together with a document in one transaction
//! (`POST /v1/txn`, op `append`), and the server is killed at a random moment. After each
//! restart: the raced stream is gap-free from 1; every acknowledged append is at exactly the
//! sequence number its 200 named, with its value; no two acknowledgements name one sequence
//! number (exactly one client wins each race); no value appears twice (an append that got a
//! 409 appended nothing); every batch is there whole, at its acknowledged place, or not at
//! all, and its document is there exactly when its entries are. 16 rounds on one directory.

#![allow(clippy::unwrap_used)]

mod serve_support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::Rng;
use serde_json::{json, Value};
use serve_support::{agent, send, Served};

const ROUNDS: usize = 16;

/// Every entry of `stream` as (seq, value); empty when the stream does not exist.
fn entries(url: &str, stream: &str) -> Vec<(u64, Value)> {
    let a = agent();
    let mut out = vec![];
    let mut from = 1;
    loop {
        let (status, body) = send(
            &a,
            "GET",
            &format!("{url}/v1/streams/{stream}?from_seq={from}&limit=10000"),
            None,
        )
        .unwrap();
        if status == 404 {
            return out;
        }
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let page = v["entries"].as_array().unwrap();
        if page.is_empty() {
            return out;
        }
        for e in page {
            out.push((e["seq"].as_u64().unwrap(), e["value"].clone()));
        }
        from = v["next_seq"].as_u64().unwrap();
    }
}

fn last_seq(agent: &ureq::Agent, url: &str) -> Result<u64, ureq::Error> {
    let (status, body) = send(agent, "GET", &format!("{url}/v1/streams/race"), None)?;
    if status == 404 {
        return Ok(0);
    }
    assert_eq!(status, 200, "{body}");
    Ok(serde_json::from_str::<Value>(&body).unwrap()["last_seq"]
        .as_u64()
        .unwrap())
}

/// What the clients saw in one round.
#[derive(Default)]
struct Seen {
    /// Raced appends acknowledged: (seq, value).
    raced: Vec<(u64, Value)>,
    /// Raced appends that got a 409.
    refused: u64,
    /// Batches acknowledged: (tag, first_seq, values).
    batches: Vec<(String, u64, Vec<Value>)>,
    /// Every batch attempted: (tag, values).
    tried: Vec<(String, Vec<Value>)>,
    /// Requests the kill cut.
    cut: u64,
}

fn racer(url: &str, round: usize, w: u64, stop: &AtomicBool) -> Seen {
    let agent = agent();
    let mut seen = Seen::default();
    for i in 0u64.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let value = json!({"round": round, "w": w, "i": i});
        // Retry this value until it is appended (or the server dies).
        loop {
            let Ok(last) = last_seq(&agent, url) else {
                seen.cut += 1;
                return seen;
            };
            let r = send(
                &agent,
                "POST",
                &format!("{url}/v1/streams/race/append?expected_seq={last}"),
                Some(&value.to_string()),
            );
            match r {
                Ok((200, body)) => {
                    let v: Value = serde_json::from_str(&body).unwrap();
                    assert_eq!(v["first_seq"].as_u64(), Some(last + 1), "{body}");
                    seen.raced.push((last + 1, value.clone()));
                    break;
                }
                Ok((409, _)) => seen.refused += 1,
                Ok((s, body)) => panic!("unexpected {s}: {body}"),
                Err(_) => {
                    seen.cut += 1;
                    return seen;
                }
            }
        }
    }
    seen
}

fn batcher(url: &str, round: usize, stop: &AtomicBool) -> Seen {
    let agent = agent();
    let mut seen = Seen::default();
    for i in 0u64.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let tag = format!("r{round}-b{i}");
        let values: Vec<Value> = (0..(i % 7) + 1)
            .map(|k| json!({"tag": tag, "k": k}))
            .collect();
        seen.tried.push((tag.clone(), values.clone()));
        let txn = json!({"ops": [
            {"op": "append", "stream": "batches", "values": values},
            {"op": "put", "collection": "batch_docs", "key": tag, "value": {"n": values.len()}},
        ]});
        match send(
            &agent,
            "POST",
            &format!("{url}/v1/txn"),
            Some(&txn.to_string()),
        ) {
            Ok((200, body)) => {
                let v: Value = serde_json::from_str(&body).unwrap();
                let last = v["results"][0]["version"].as_u64().unwrap();
                seen.batches
                    .push((tag, last + 1 - values.len() as u64, values));
            }
            Ok((s, body)) => panic!("unexpected {s}: {body}"),
            Err(_) => {
                seen.cut += 1;
                return seen;
            }
        }
    }
    seen
}

fn check(url: &str, round: usize, acked: &Seen) {
    let race = entries(url, "race");
    for (n, (seq, _)) in race.iter().enumerate() {
        assert_eq!(
            *seq,
            n as u64 + 1,
            "round {round}: the raced stream has a gap"
        );
    }
    let mut values = HashSet::new();
    for (_, v) in &race {
        assert!(
            values.insert(v.to_string()),
            "round {round}: {v} appended twice"
        );
    }
    let mut seqs = HashSet::new();
    for (seq, v) in &acked.raced {
        assert!(
            seqs.insert(*seq),
            "round {round}: two clients won the race for {seq}"
        );
        let at = race.get(*seq as usize - 1).map(|e| &e.1);
        assert_eq!(
            at,
            Some(v),
            "round {round}: acknowledged entry {seq} lost or changed"
        );
    }

    let batches = entries(url, "batches");
    for (n, (seq, _)) in batches.iter().enumerate() {
        assert_eq!(
            *seq,
            n as u64 + 1,
            "round {round}: the batch stream has a gap"
        );
    }
    let mut by_tag: HashMap<String, Vec<(u64, Value)>> = HashMap::new();
    for (seq, v) in &batches {
        by_tag
            .entry(v["tag"].as_str().unwrap().to_owned())
            .or_default()
            .push((*seq, v.clone()));
    }
    for (tag, first, values) in &acked.batches {
        let got = by_tag
            .get(tag)
            .unwrap_or_else(|| panic!("round {round}: batch {tag} lost"));
        let want: Vec<(u64, Value)> = values
            .iter()
            .enumerate()
            .map(|(k, v)| (first + k as u64, v.clone()))
            .collect();
        assert_eq!(got, &want, "round {round}: batch {tag}");
    }
    let a = agent();
    for (tag, values) in &acked.tried {
        let got = by_tag.get(tag).map_or(0, Vec::len);
        assert!(
            got == 0 || got == values.len(),
            "round {round}: batch {tag} is half there ({got} of {})",
            values.len()
        );
        let (status, _) = send(
            &a,
            "GET",
            &format!("{url}/v1/collections/batch_docs/docs/{tag}"),
            None,
        )
        .unwrap();
        assert_eq!(
            status == 200,
            got > 0,
            "round {round}: batch {tag}'s document and entries disagree"
        );
    }
}

#[test]
fn raced_and_batched_stream_appends_survive_sigkill_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut rng = rand::rng();
    let mut acked = Seen::default();
    for round in 0..=ROUNDS {
        let served = Served::start(&data, &[], &[]);
        let url = served.url.clone();
        check(&url, round, &acked);
        if round == ROUNDS {
            assert!(
                served.terminate().success(),
                "clean shutdown after the last round"
            );
            break;
        }
        let stop = AtomicBool::new(false);
        let kill_after = Duration::from_millis(rng.random_range(50..400));
        let seen: Vec<Seen> = std::thread::scope(|scope| {
            let (url, stop) = (&url, &stop);
            let handles = vec![
                scope.spawn(move || racer(url, round, 0, stop)),
                scope.spawn(move || racer(url, round, 1, stop)),
                scope.spawn(move || batcher(url, round, stop)),
            ];
            std::thread::sleep(kill_after);
            served.kill();
            stop.store(true, Ordering::SeqCst);
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for s in seen {
            acked.raced.extend(s.raced);
            acked.refused += s.refused;
            acked.batches.extend(s.batches);
            acked.tried.extend(s.tried);
            acked.cut += s.cut;
        }
    }
    assert!(
        acked.raced.len() > ROUNDS * 5,
        "too few raced appends: {}",
        acked.raced.len()
    );
    assert!(acked.refused > 0, "the clients never raced (no 409)");
    assert!(
        acked.batches.len() > ROUNDS * 2,
        "too few batches: {}",
        acked.batches.len()
    );
    assert!(
        acked.cut > ROUNDS as u64,
        "the kills should cut requests in flight ({})",
        acked.cut
    );
    eprintln!(
        "{} raced appends acknowledged ({} refused with 409), {} batches, {} requests cut, {ROUNDS} kills",
        acked.raced.len(),
        acked.refused,
        acked.batches.len(),
        acked.cut
    );
    let (code, out, err) =
        serve_support::amberdb(&["verify", "--data", data.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "verify after the crashes: {out}{err}");
}

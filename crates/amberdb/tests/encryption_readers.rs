//! Issue 12: the log's readers other than recovery work over encrypted segments: the change
//! feed (from the start, across sealed segments and the active one, after a reopen) and
//! history / as-of reads, with the same answers as over the same workload unencrypted; and
//! without the key the directory refuses to open instead of feeding records without
//! operations.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::Path;
use std::time::Duration;

use amberdb::crypto::{Key, Keyring};
use amberdb::history::{At, HistoryOptions};
use amberdb::{Db, Error, Filter, Options};
use serde_json::json;

fn keyring() -> Keyring {
    let mut b = [0u8; 32];
    for (i, x) in b.iter_mut().enumerate() {
        *x = (i as u8).wrapping_mul(89) ^ 0xc3;
    }
    Keyring::single(Key::from_bytes(b))
}

fn opts(keys: Option<Keyring>) -> Options {
    Options {
        encryption: keys,
        segment_size: 2048,
        history_retention: Duration::from_secs(24 * 3600),
        checkpoint_interval: None,
        ..Options::default()
    }
}

/// What the readers answer: every change of the feed from LSN 0 (LSN, collection, key,
/// value), the history of c/k1 (LSN, version, op) and c/k1 as of every LSN.
type Answers = (
    Vec<(u64, String, String, Option<serde_json::Value>)>,
    Vec<(u64, u64, String)>,
    Vec<Option<serde_json::Value>>,
);

fn answers(db: &Db) -> Answers {
    let mut sub = db
        .subscribe(
            0,
            Filter {
                values: true,
                ..Filter::default()
            },
        )
        .unwrap();
    let mut feed = vec![];
    while let Some(ch) = sub.try_next().unwrap() {
        for d in ch.docs {
            let value = d
                .value
                .as_ref()
                .map(|v| serde_json::from_slice::<serde_json::Value>(v).unwrap());
            feed.push((ch.lsn, d.collection.to_string(), d.key.to_string(), value));
        }
    }
    let history = db
        .history("c", "k1", HistoryOptions::default())
        .unwrap()
        .versions
        .iter()
        .map(|v| (v.lsn, v.version, v.op.to_string()))
        .collect();
    let as_of = (1..=db.view().lsn())
        .map(|lsn| {
            db.get_at("c", "k1", At::Lsn(lsn))
                .unwrap()
                .map(|d| d.json().unwrap())
        })
        .collect();
    (feed, history, as_of)
}

fn workload(data: &Path, keys: Option<Keyring>) -> (Answers, Answers) {
    let db = Db::open_with(data, opts(keys.clone())).unwrap();
    for i in 0..60u32 {
        db.put(
            "c",
            &format!("k{}", i % 4),
            json!({ "i": i, "pad": "r".repeat(90) }),
        )
        .unwrap();
        if i % 17 == 0 {
            db.delete("c", "k1").unwrap();
        }
    }
    let live = answers(&db);
    db.close().unwrap();
    let db = Db::open_with(data, opts(keys)).unwrap();
    let reopened = answers(&db);
    db.close().unwrap();
    (live, reopened)
}

#[test]
fn the_change_feed_history_and_as_of_reads_over_encrypted_segments_match_unencrypted() {
    let tmp = tempfile::tempdir().unwrap();
    let (plain_live, plain_reopened) = workload(&tmp.path().join("plain"), None);
    let (enc_live, enc_reopened) = workload(&tmp.path().join("enc"), Some(keyring()));
    assert!(plain_live.0.len() > 60, "{}", plain_live.0.len());
    assert!(plain_live.0.iter().all(|c| c.3.is_some() || c.2 == "k1"));
    assert_eq!(enc_live, plain_live, "live");
    assert_eq!(enc_reopened, plain_reopened, "after a reopen");
    assert_eq!(enc_reopened.1, enc_live.1, "history survives the reopen");
    let segments = std::fs::read_dir(tmp.path().join("enc").join(amberdb::LOG_DIR))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "log")
        })
        .count();
    assert!(
        segments >= 3,
        "the readers crossed several segments ({segments})"
    );
}

#[test]
fn without_the_key_the_readers_are_never_fed_records_without_operations() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("enc");
    workload(&data, Some(keyring()));
    match Db::open_with(&data, opts(None)) {
        Err(Error::KeyMissing { key_id, .. }) => {
            assert_eq!(key_id, keyring().primary().id().get())
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}

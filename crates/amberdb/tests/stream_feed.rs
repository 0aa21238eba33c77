//! Tailing streams through the change feed (issue 13): `Filter::stream` delivers every
//! append, trim, delete and retention change of the streams it names, in LSN order, with the
//! entries' values when asked, and a consumer that resumes after its cursor (from memory or,
//! after a reopen, from the log) sees every entry exactly once.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use amberdb::feed::{Change, Filter, StreamChangeKind};
use amberdb::{Db, Options, Retention, StreamFrom, Transaction};
use proptest::prelude::*;
use serde_json::{json, Value};

fn opts() -> Options {
    Options {
        stream_segment_bytes: 512,
        checkpoint_interval: None,
        ttl_reap_interval: None,
        // Kept log: a replay from LSN 0 must still find every commit.
        history_retention: Duration::from_secs(86_400),
        ..Options::default()
    }
}

fn drain(sub: &mut amberdb::feed::Subscription) -> Vec<Change> {
    let mut out = vec![];
    while let Some(c) = sub.try_next().unwrap() {
        out.push(c);
    }
    out
}

/// `(seq, value)` of every entry appended to `stream` that the changes carry, in order.
fn entries(changes: &[Change], stream: &str) -> Vec<(u64, Value)> {
    let mut out = vec![];
    for c in changes {
        for s in &c.streams {
            if s.op == StreamChangeKind::Append && &*s.stream == stream {
                let values = s.values.as_ref().expect("values asked for");
                assert_eq!(values.len() as u64, s.count);
                for (i, v) in values.iter().enumerate() {
                    out.push((s.first_seq + i as u64, serde_json::from_slice(v).unwrap()));
                }
            }
        }
    }
    out
}

fn stored(db: &Db, stream: &str) -> Vec<(u64, Value)> {
    let page = db.read_stream(stream, StreamFrom::Seq(1), 10_000).unwrap();
    page.entries
        .iter()
        .map(|e| (e.seq, e.json().unwrap()))
        .collect()
}

#[test]
fn a_stream_tail_delivers_appends_trims_retention_and_delete_in_order_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(dir.path(), opts()).unwrap();
    let mut sub = db
        .subscribe(0, Filter::all().stream("chat.*").with_values(true))
        .unwrap();
    let mut docs_only = db.subscribe(0, Filter::all()).unwrap();
    db.append("chat.room1", &[json!("hi")], None).unwrap();
    db.append(
        "chat.room1",
        &[json!({"n": 2}), json!([3]), json!(null)],
        Some(1),
    )
    .unwrap();
    db.append("audit", &[json!("not named")], None).unwrap();
    db.put("players", "a", json!({"hp": 1})).unwrap();
    let mut t = Transaction::new();
    t.append("chat.room2", vec![json!("both")], None);
    t.put("players", "b", json!({"hp": 2}));
    db.commit(&t).unwrap();
    db.set_stream_retention(
        "chat.room1",
        Retention {
            max_entries: Some(2),
            max_age_s: None,
        },
    )
    .unwrap();
    db.trim_stream("chat.room2", 2).unwrap();
    db.delete_stream("chat.room2").unwrap();
    db.sync().unwrap();

    let changes = drain(&mut sub);
    assert!(
        changes.iter().all(|c| c.docs.is_empty()),
        "naming only streams delivers no document"
    );
    let ops: Vec<(String, StreamChangeKind, u64, u64)> = changes
        .iter()
        .flat_map(|c| &c.streams)
        .map(|s| (s.stream.to_string(), s.op, s.first_seq, s.count))
        .collect();
    use StreamChangeKind::*;
    assert_eq!(
        ops,
        vec![
            ("chat.room1".into(), Append, 1, 1),
            ("chat.room1".into(), Append, 2, 3),
            ("chat.room2".into(), Append, 1, 1),
            ("chat.room1".into(), Configure, 0, 0),
            ("chat.room1".into(), Trim, 3, 0),
            ("chat.room2".into(), Trim, 2, 0),
            ("chat.room2".into(), Delete, 0, 0),
        ]
    );
    let configure = changes
        .iter()
        .flat_map(|c| &c.streams)
        .find(|s| s.op == Configure)
        .unwrap();
    assert_eq!(
        (configure.max_entries, configure.max_age_s),
        (Some(2), None)
    );
    let lsns: Vec<u64> = changes.iter().map(|c| c.lsn).collect();
    assert!(lsns.windows(2).all(|w| w[0] < w[1]), "LSN order: {lsns:?}");
    let room1 = entries(&changes, "chat.room1");
    assert_eq!(
        room1,
        vec![
            (1, json!("hi")),
            (2, json!({"n": 2})),
            (3, json!([3])),
            (4, json!(null))
        ]
    );
    assert_eq!(stored(&db, "chat.room1"), room1[2..].to_vec());
    assert_eq!(sub.high_water_lsn(), db.durable_lsn());

    let doc_changes = drain(&mut docs_only);
    assert!(
        doc_changes.iter().all(|c| c.streams.is_empty()),
        "a filter naming no stream gets no stream change"
    );
    let keys: Vec<String> = doc_changes
        .iter()
        .flat_map(|c| &c.docs)
        .map(|d| d.key.to_string())
        .collect();
    assert_eq!(keys, vec!["a", "b"]);

    let mut both = db
        .subscribe(
            0,
            Filter::all()
                .stream("chat.room2")
                .collection("players")
                .prefix("b"),
        )
        .unwrap();
    let first = both.try_next().unwrap().unwrap();
    assert_eq!(
        (first.docs.len(), first.streams.len()),
        (1, 1),
        "the transaction's append and document arrive in one change"
    );
    assert_eq!(first.streams[0].values, None, "no values unless asked");
    db.close().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("AMBERDB_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(12),
        ..ProptestConfig::default()
    })]

    /// A consumer that stops after any number of changes and resumes after its cursor, from
    /// memory or (after a reopen) from the log, sees every entry of the stream exactly once
    /// and in order, equal to what the stream holds.
    #[test]
    fn a_stream_tail_resumed_after_its_cursor_sees_every_entry_exactly_once(
        batches in proptest::collection::vec(1usize..6, 1..40),
        noise in proptest::collection::vec(any::<bool>(), 40),
        stop_after in 0usize..40,
        reopen in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open_with(dir.path(), opts()).unwrap();
        let mut n = 0u64;
        for (i, size) in batches.iter().enumerate() {
            let values: Vec<Value> = (0..*size).map(|_| { n += 1; json!({"n": n}) }).collect();
            db.append("chat", &values, None).unwrap();
            if noise[i] {
                db.put("players", &format!("k{i}"), json!(i)).unwrap();
                db.append("other", &[json!(i)], None).unwrap();
            }
        }
        db.sync().unwrap();
        let filter = Filter::all().stream("chat").with_values(true);
        let mut sub = db.subscribe(0, filter.clone()).unwrap();
        let mut seen = vec![];
        let mut cursor = 0;
        for _ in 0..stop_after.min(batches.len()) {
            let c = sub.try_next().unwrap().unwrap();
            cursor = c.lsn;
            seen.push(c);
        }
        drop(sub);
        if reopen {
            db.close().unwrap();
            db = Db::open_with(dir.path(), opts()).unwrap();
        }
        let mut sub = db.subscribe(cursor, filter).unwrap();
        seen.extend(drain(&mut sub));
        let got = entries(&seen, "chat");
        let want: Vec<(u64, Value)> = (1..=n).map(|i| (i, json!({"n": i}))).collect();
        prop_assert_eq!(&got, &want);
        prop_assert_eq!(stored(&db, "chat"), want);
        db.close().unwrap();
    }
}

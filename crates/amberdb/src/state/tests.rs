//! Versions, tombstones and their checkpoint round trip, through prepare and apply together.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::*;
use crate::error::{Error, Result};
use crate::txn::{Op, Transaction};
use serde_json::json;

/// Prepares `txn` as the next commit at time `ts` and applies it; returns the versions.
fn commit(state: &mut State, txn: &Transaction, ts: u64) -> Result<Vec<u64>> {
    let ops = encode_transaction(txn, 1 << 20)?;
    let p = state.prepare(&ops, state.lsn + 1, ts, 1 << 20, Default::default())?;
    if !p.record.ops.is_empty() {
        state.apply(&p.record);
    }
    Ok(p.results.iter().map(|r| r.version).collect())
}

fn put(key: &str) -> Transaction {
    let mut t = Transaction::new();
    t.put("c", key, json!({"k": key}));
    t
}

fn delete(key: &str) -> Transaction {
    let mut t = Transaction::new();
    t.delete("c", key);
    t
}

fn version(state: &State, key: &str) -> u64 {
    state.get("c", key).map_or(0, |d| d.meta.version)
}

#[test]
fn recreated_document_continues_after_its_tombstone() {
    let mut s = State::default();
    for ts in 1..=3 {
        commit(&mut s, &put("k"), ts).unwrap();
    }
    commit(&mut s, &delete("k"), 4).unwrap();
    let tomb = s.collections["c"].tombstones["k"];
    assert_eq!((tomb.lsn, tomb.deleted_at, tomb.last_version), (4, 4, 3));
    assert_eq!(commit(&mut s, &put("k"), 5).unwrap(), vec![4]);
    // The re-created document still links to the delete.
    assert_eq!(s.get("c", "k").unwrap().meta.lsn, 5);
    assert_eq!(s.tombstone_count(), 0);
    // An `if_version` taken from the first document cannot match the new one.
    let mut stale = put("k");
    if let Op::Write(w) = &mut stale.ops[0] {
        w.if_version = Some(1);
    }
    assert!(matches!(commit(&mut s, &stale, 6), Err(Error::Conflict(_))));
}

#[test]
fn recreate_links_prev_lsn_to_the_delete() {
    let mut s = State::default();
    commit(&mut s, &put("k"), 1).unwrap();
    commit(&mut s, &delete("k"), 2).unwrap();
    let ops = encode_transaction(&put("k"), 1 << 20).unwrap();
    let p = s.prepare(&ops, 3, 3, 1 << 20, Default::default()).unwrap();
    assert_eq!(p.record.ops[0].prev_lsn, 2);
    assert_eq!(p.record.ops[0].doc.as_ref().unwrap().version, 2);
}

#[test]
fn delete_and_recreate_inside_one_transaction_never_repeats_a_version() {
    let mut s = State::default();
    commit(&mut s, &put("k"), 1).unwrap();
    let mut t = Transaction::new();
    t.put("c", "k", json!(1));
    t.delete("c", "k");
    t.put("c", "k", json!(2));
    assert_eq!(commit(&mut s, &t, 2).unwrap(), vec![2, 0, 3]);
    assert_eq!(version(&s, "k"), 3);
}

#[test]
fn pruned_tombstone_leaves_a_floor_above_every_version_of_the_key() {
    let mut s = State {
        tombstone_retention_us: 10,
        ..State::default()
    };
    for ts in 1..=5 {
        commit(&mut s, &put("old"), ts).unwrap();
    }
    commit(&mut s, &put("fresh-before"), 6).unwrap();
    commit(&mut s, &delete("old"), 7).unwrap();
    // Deleted at 7: kept while commits are within 10 us of it...
    commit(&mut s, &put("other"), 17).unwrap();
    assert_eq!(s.tombstone_count(), 1);
    // ...and pruned by the first commit more than 10 us later.
    commit(&mut s, &put("other"), 18).unwrap();
    assert_eq!(s.tombstone_count(), 0);
    assert_eq!(s.collections["c"].version_floor, 5);
    assert_eq!(commit(&mut s, &put("old"), 19).unwrap(), vec![6]);
    // A key that never existed cannot be told from a pruned one: it starts above the
    // floor too; collections without pruning still start at 1.
    assert_eq!(commit(&mut s, &put("new"), 20).unwrap(), vec![6]);
    let mut t = Transaction::new();
    t.put("d", "new", json!({}));
    assert_eq!(commit(&mut s, &t, 21).unwrap(), vec![1]);
}

/// Why a pruned key continues above a floor and not at its create LSN: one transaction
/// that writes a key several times takes its version past the commit's LSN, so "version
/// <= LSN" does not hold and a document re-created at its LSN could reach an old version.
#[test]
fn recreate_after_pruning_stays_above_versions_that_outran_their_lsn() {
    let mut s = State::empty(0);
    let mut t = Transaction::new();
    for _ in 0..5 {
        t.put("c", "k", json!(1));
    }
    assert_eq!(commit(&mut s, &t, 1).unwrap(), vec![1, 2, 3, 4, 5]);
    assert_eq!((s.lsn, version(&s, "k")), (1, 5));
    commit(&mut s, &delete("k"), 2).unwrap();
    commit(&mut s, &put("other"), 3).unwrap();
    assert!(s.collections["c"].tombstones.is_empty(), "pruned");
    // At LSN 4 a create-LSN rule would give 4 and the next write 5, the old version.
    assert_eq!(commit(&mut s, &put("k"), 4).unwrap(), vec![6]);
    assert_eq!(commit(&mut s, &put("k"), 5).unwrap(), vec![7]);
}

#[test]
fn tombstones_of_a_unique_key_workload_stay_bounded() {
    let mut s = State {
        tombstone_retention_us: 100,
        ..State::default()
    };
    for i in 0..5_000u64 {
        let key = format!("session-{i}");
        commit(&mut s, &put(&key), 2 * i + 1).unwrap();
        commit(&mut s, &delete(&key), 2 * i + 2).unwrap();
        // Deletes are 2 us apart, so at most 100 / 2 of them are inside the window.
        assert!(
            s.tombstone_count() <= 51,
            "{} tombstones",
            s.tombstone_count()
        );
    }
    assert_eq!(
        s.tombstone_count(),
        s.collections["c"].tombstones.len() as u64
    );
}

#[test]
fn replaying_the_records_reproduces_pruning_exactly() {
    let mut live = State {
        tombstone_retention_us: 3,
        ..State::default()
    };
    let mut records = vec![];
    for i in 0..200u64 {
        let key = format!("k{}", i % 7);
        let txn = if i % 3 == 2 { delete(&key) } else { put(&key) };
        let ops = encode_transaction(&txn, 1 << 20).unwrap();
        let p = live
            .prepare(&ops, live.lsn + 1, i + 1, 1 << 20, Default::default())
            .unwrap();
        if !p.record.ops.is_empty() {
            live.apply(&p.record);
            records.push(p.record);
        }
    }
    let mut replayed = State {
        tombstone_retention_us: 3,
        ..State::default()
    };
    for r in &records {
        replayed.apply(r);
    }
    assert_eq!(replayed, live);
}

#[test]
fn checkpoint_round_trips_tombstones_floors_and_retention() {
    let mut s = State {
        tombstone_retention_us: 5,
        ..State::default()
    };
    for ts in 1..=3 {
        commit(&mut s, &put("a"), ts).unwrap();
    }
    commit(&mut s, &delete("a"), 4).unwrap();
    commit(&mut s, &put("b"), 20).unwrap(); // prunes "a": floor 3
    commit(&mut s, &delete("b"), 21).unwrap(); // a kept tombstone
    assert_eq!(s.tombstone_count(), 1);
    for level in [0, 1] {
        let mut bytes = vec![];
        crate::checkpoint::encode_to(&s, level, &mut bytes).unwrap();
        let d = crate::checkpoint::decode(&bytes);
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        assert_eq!(d.header.unwrap().format_version, 2);
        assert_eq!(d.state, s);
    }
}

/// The checkpoint format-1 encoder as it was before format 2 (one uncompressed block),
/// kept here so the old decoder path stays tested.
fn encode_v1(state: &State) -> Vec<u8> {
    use crate::codec::{put_str16, PutLe};
    use sha2::Digest;
    let mut raw = vec![];
    let mut entries = 0u64;
    for (name, c) in state.collections.iter() {
        raw.put_u8(1);
        put_str16(&mut raw, name);
        entries += 1;
        for (key, doc) in c.docs.iter() {
            raw.put_u8(2);
            put_str16(&mut raw, name);
            put_str16(&mut raw, key);
            raw.put_u64(doc.meta.version);
            raw.put_u32(doc.meta.schema_version);
            raw.put_u64(doc.meta.created_at);
            raw.put_u64(doc.meta.updated_at);
            raw.put_u64(doc.meta.lsn);
            raw.extend_from_slice(&doc.meta.sha256);
            raw.put_u32(doc.value.len() as u32);
            raw.extend_from_slice(&doc.value);
            entries += 1;
        }
        for (key, t) in c.tombstones.iter() {
            raw.put_u8(3);
            put_str16(&mut raw, name);
            put_str16(&mut raw, key);
            raw.put_u64(t.lsn);
            entries += 1;
        }
    }
    let mut b = vec![];
    b.extend_from_slice(b"AMBRCKPT");
    b.put_u32(1);
    b.put_u32(0);
    b.put_u64(state.lsn);
    b.put_u64(state.commit_ts);
    b.put_u64(state.doc_count());
    b.put_u64(entries);
    b.put_u32(0);
    b.put_u32(0);
    b.put_u32(0);
    let crc = crc32c::crc32c(&b);
    b.put_u32(crc);
    let mut block = vec![];
    block.put_u32(raw.len() as u32);
    block.put_u32(raw.len() as u32);
    block.put_u32(crc32c::crc32c(&raw));
    block.extend_from_slice(&raw);
    b.extend_from_slice(&block);
    b.put_u64(block.len() as u64);
    b.extend_from_slice(&sha2::Sha256::digest(&block));
    b.extend_from_slice(b"AMBRCEND");
    b
}

#[test]
fn format_1_checkpoint_reads_with_the_same_versions_and_bounded_tombstones() {
    let mut s = State::default();
    for ts in 1..=4 {
        commit(&mut s, &put("gone"), ts).unwrap();
    }
    commit(&mut s, &put("live"), 5).unwrap();
    commit(&mut s, &delete("gone"), 6).unwrap();
    let d = crate::checkpoint::decode(&encode_v1(&s));
    assert!(d.problems.is_empty(), "{:?}", d.problems);
    assert_eq!(d.header.unwrap().format_version, 1);
    let mut old = d.state;
    assert_eq!(old.get("c", "live"), s.get("c", "live"));
    assert_eq!(old.doc_count(), 1);
    // Format 1 kept only the delete's LSN: it bounds the deleted versions (4 < 6).
    let t = old.collections["c"].tombstones["gone"];
    assert_eq!((t.lsn, t.last_version, t.deleted_at), (6, 6, 6));
    assert_eq!(commit(&mut old, &put("gone"), 7).unwrap(), vec![7]);
}

/// `insert_doc` keeps the expiry index exact from the document its insert replaces (issue
/// 14: one walk of the hash index): a new expiry moves the entry, the same one keeps it
/// once, none removes it.
#[test]
fn replacing_a_document_moves_its_expiry_entry_exactly() {
    let mut c = Collection::default();
    let doc = |expires_at: Option<u64>| Document {
        key: "k".into(),
        value: Arc::from(&b"1"[..]),
        meta: crate::document::DocMeta {
            version: 1,
            schema_version: 1,
            created_at: 1,
            updated_at: 1,
            lsn: 1,
            expires_at,
            sha256: [0; 32],
        },
    };
    let expiring = |c: &Collection| c.expired_at(u64::MAX).cloned().collect::<Vec<_>>();
    c.insert_doc(doc(Some(10)));
    assert_eq!(expiring(&c), vec![(10, "k".into())]);
    c.insert_doc(doc(Some(20)));
    assert_eq!(expiring(&c), vec![(20, "k".into())]);
    c.insert_doc(doc(Some(20)));
    assert_eq!(expiring(&c), vec![(20, "k".into())]);
    c.insert_doc(doc(None));
    assert!(expiring(&c).is_empty());
    c.insert_doc(doc(Some(5)));
    assert_eq!(expiring(&c), vec![(5, "k".into())]);
    assert_eq!(c.docs.len(), 1);
}

/// A checkpoint's documents are added to a collection in bulk when they come sorted into an
/// empty collection, and one by one otherwise; both give the collection that inserting them
/// one by one gives: the same documents, index and expiry entries, later duplicates winning.
#[test]
fn extending_a_collection_matches_inserting_its_documents_one_by_one() {
    let doc = |key: &str, version: u64| Document {
        key: key.into(),
        value: Arc::from(format!("{version}").as_bytes()),
        meta: crate::document::DocMeta {
            version,
            schema_version: 1,
            created_at: 1,
            updated_at: 1,
            lsn: version,
            expires_at: version.is_multiple_of(3).then_some(100 + version),
            sha256: [0; 32],
        },
    };
    let sorted: Vec<(&str, u64)> = (0..200u64)
        .map(|i| {
            (
                Box::leak(format!("k{i:03}").into_boxed_str()) as &str,
                i + 1,
            )
        })
        .collect();
    let mut shuffled = sorted.clone();
    shuffled.reverse();
    let mut duplicated = sorted.clone();
    duplicated.extend([("k005", 900), ("k150", 903)]);
    for (case, first, then) in [
        ("sorted, into an empty collection", vec![], sorted.clone()),
        ("unsorted", vec![], shuffled),
        ("with duplicates", vec![], duplicated),
        (
            "into a collection that has documents",
            vec![("k007", 77), ("zz", 5)],
            sorted,
        ),
    ] {
        let mut extended = Collection::default();
        let mut inserted = Collection::default();
        for (k, v) in &first {
            extended.insert_doc(doc(k, *v));
            inserted.insert_doc(doc(k, *v));
        }
        extended.extend_docs(
            then.iter()
                .map(|(k, v)| HashedDoc::new(doc(k, *v)))
                .collect(),
        );
        for (k, v) in &then {
            inserted.insert_doc(doc(k, *v));
        }
        assert!(extended == inserted, "{case}: the collections differ");
        for (k, _) in then.iter().chain(&first) {
            assert_eq!(
                extended.get_doc(k).map(|d| d.meta.version),
                inserted.get_doc(k).map(|d| d.meta.version),
                "{case}: {k}"
            );
        }
        let expiring = |c: &Collection| c.expired_at(u64::MAX).cloned().collect::<Vec<_>>();
        assert_eq!(expiring(&extended), expiring(&inserted), "{case}");
    }
}

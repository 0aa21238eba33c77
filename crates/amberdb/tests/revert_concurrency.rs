//! What a revert or undo guarantees when a write lands between its plan and its commit, shown
//! deterministically: the revert's before-commit hook (`revert::set_before_commit_hook`, per
//! thread) lands the write at exactly that point, no sleeps. Every write of a revert carries
//! the version it planned from, so the concurrent write makes its commit fail; it is planned
//! again once from a fresh view (so it accounts for the write), and refused with a conflict
//! naming the document if a write lands again. An undo planned again sees the document
//! written since the undone commit and is refused. And the limit on documents one revert or
//! undo may write (`limits::MAX_REVERT_DOCS`) is refused before any work.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::cell::Cell;
use std::rc::Rc;

use amberdb::history::HistoryOptions;
use amberdb::revert::{set_before_commit_hook, At};
use amberdb::{Db, Error, RevertOptions, Scope, Transaction, UndoOptions};
use serde_json::json;

fn p1() -> Scope {
    Scope::Key {
        collection: "players".into(),
        key: "p1".into(),
    }
}

/// p1 is `{"gold": 10}` at LSN 1 and `{"gold": 0}` at LSN 2.
fn two_versions(dir: &std::path::Path) -> Db {
    let db = Db::open(dir).unwrap();
    db.put("players", "p1", json!({"gold": 10})).unwrap();
    db.put("players", "p1", json!({"gold": 0})).unwrap();
    db
}

fn gold(db: &Db) -> serde_json::Value {
    db.get("players", "p1").unwrap().json().unwrap()["gold"].clone()
}

#[test]
fn a_write_landing_between_a_reverts_plan_and_commit_is_accounted_for_not_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let db = two_versions(tmp.path());
    let calls = Rc::new(Cell::new(0));
    let (d, c) = (db.clone(), calls.clone());
    set_before_commit_hook(Some(Box::new(move || {
        c.set(c.get() + 1);
        if c.get() == 1 {
            d.put("players", "p1", json!({"gold": 5})).unwrap(); // v3, LSN 3
        }
    })));
    let r = db
        .revert(&p1(), At::Lsn(1), RevertOptions::default())
        .unwrap();
    set_before_commit_hook(None);
    // Planned twice: the first commit failed on the write, the second planned from it.
    assert_eq!(calls.get(), 2);
    assert_eq!(r.commit_lsn, Some(4));
    assert_eq!(
        (r.changed[0].version_before, r.changed[0].version_after),
        (3, 4)
    );
    assert_eq!(gold(&db), json!(10));
    // The concurrent write is in the history, right before the revert.
    let h = db
        .history("players", "p1", HistoryOptions::default())
        .unwrap();
    let versions: Vec<(u64, u64)> = h.versions.iter().map(|v| (v.version, v.lsn)).collect();
    assert_eq!(versions, vec![(4, 4), (3, 3), (2, 2), (1, 1)]);
}

#[test]
fn a_revert_whose_retry_meets_another_write_is_refused_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let db = two_versions(tmp.path());
    let (d, n) = (db.clone(), Rc::new(Cell::new(0)));
    let n2 = n.clone();
    set_before_commit_hook(Some(Box::new(move || {
        n2.set(n2.get() + 1);
        d.put("players", "p1", json!({"gold": 100 + n2.get()}))
            .unwrap();
    })));
    let r = db.revert(&p1(), At::Lsn(1), RevertOptions::default());
    set_before_commit_hook(None);
    let Err(Error::Conflict(conflicts)) = r else {
        panic!("expected a conflict, got {r:?}");
    };
    assert_eq!(n.get(), 2);
    assert_eq!(
        (
            conflicts[0].key.as_str(),
            conflicts[0].expected,
            conflicts[0].actual
        ),
        ("p1", 3, 4)
    );
    // Only the two concurrent writes committed; the last one stands.
    assert_eq!(db.view().lsn(), 4);
    assert_eq!(gold(&db), json!(102));
}

#[test]
fn an_undo_whose_document_is_written_before_its_commit_is_refused_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let db = two_versions(tmp.path());
    let d = db.clone();
    let once = Rc::new(Cell::new(false));
    let o = once.clone();
    set_before_commit_hook(Some(Box::new(move || {
        if !o.replace(true) {
            d.put("players", "p1", json!({"gold": 7})).unwrap(); // LSN 3
        }
    })));
    let r = db.undo(2, UndoOptions::default());
    let Err(Error::Conflict(conflicts)) = r else {
        set_before_commit_hook(None);
        panic!("expected a conflict, got {r:?}");
    };
    assert_eq!((conflicts[0].expected, conflicts[0].actual), (2, 3));
    assert_eq!(gold(&db), json!(7));
    // Forced, it undoes over the write (which stays in the history).
    let r = db
        .undo(
            2,
            UndoOptions {
                force: true,
                ..UndoOptions::default()
            },
        )
        .unwrap();
    set_before_commit_hook(None);
    assert_eq!(r.commit_lsn, Some(4));
    assert_eq!(gold(&db), json!(10));
}

#[test]
fn a_revert_or_undo_of_more_documents_than_the_limit_is_refused_before_writing() {
    let limit = amberdb::limits::MAX_REVERT_DOCS;
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path()).unwrap();
    let mut tx = Transaction::new();
    for i in 0..=limit {
        tx.put("many", &format!("k{i}"), json!(i));
    }
    let done = db.commit(&tx).unwrap();
    let all = Scope::Collection {
        collection: "many".into(),
    };
    let r = db.revert(&all, At::Lsn(0), RevertOptions { dry_run: true });
    assert!(
        matches!(&r, Err(Error::InvalidArgument(m)) if m.contains(&limit.to_string())),
        "{r:?}"
    );
    let u = db.undo(done.lsn, UndoOptions::default());
    assert!(
        matches!(&u, Err(Error::InvalidArgument(m)) if m.contains(&limit.to_string())),
        "{u:?}"
    );
    assert_eq!(db.view().lsn(), done.lsn);
    // Exactly the limit is within it (written by commits of 1,000 documents: a revert
    // finds each document's write in its commit by a scan of that commit's operations).
    for chunk in 0..limit / 1000 {
        let mut tx = Transaction::new();
        for i in chunk * 1000..(chunk + 1) * 1000 {
            tx.put("exact", &format!("k{i}"), json!(i));
        }
        db.commit(&tx).unwrap();
    }
    let exact = Scope::Collection {
        collection: "exact".into(),
    };
    let r = db
        .revert(&exact, At::Lsn(done.lsn), RevertOptions { dry_run: true })
        .unwrap();
    assert_eq!(r.changed.len(), limit);
}

//! Property: random blob writes, deletes, checkpoints, backups, prunes and garbage
//! collections never lose a blob that is needed. After every step each live blob reads back
//! exactly, and every blob write still in the retained log (the history window) has its
//! file; at the end every backup the repository kept restores, by id, to exactly the blobs
//! the database had when it was taken (its files in the repository, checked by SHA-256).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use amberdb::backup::{restore, NoProgress};
use amberdb::blob::metadata_collection;
use amberdb::{BackupRepo, BlobUpload, Db, Error, Filter, Options, RestoreTarget, RetentionPolicy};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Step {
    Put(u8, u8),
    Delete(u8),
    Checkpoint,
    Backup,
    Prune(u32),
    Gc,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (0u8..4, 0u8..6).prop_map(|(k, c)| Step::Put(k, c)),
        2 => (0u8..4).prop_map(Step::Delete),
        2 => Just(Step::Checkpoint),
        2 => Just(Step::Backup),
        1 => (1u32..3).prop_map(Step::Prune),
        3 => Just(Step::Gc),
    ]
}

fn content(c: u8) -> Vec<u8> {
    (0..(1000 + c as usize * 3001))
        .map(|i| (i as u8) ^ c.wrapping_mul(37))
        .collect()
}

fn read(db: &Db, k: &str) -> Option<Vec<u8>> {
    let info = db.blob("b", k)?;
    let mut v = vec![];
    db.open_blob(&info)
        .unwrap_or_else(|e| panic!("blob {k} is live but unreadable: {e}"))
        .read_to_end(&mut v)
        .unwrap();
    Some(v)
}

/// Content hashes of every blob write still in the data directory's log.
fn retained_writes(db: &Db) -> Vec<String> {
    let filter = Filter::all()
        .collection(metadata_collection("b"))
        .with_values(true);
    let mut sub = match db.subscribe(0, filter.clone()) {
        Err(Error::HistoryLost { retained_from_lsn }) => {
            db.subscribe(retained_from_lsn - 1, filter).unwrap()
        }
        other => other.unwrap(),
    };
    let mut out = vec![];
    while let Some(c) = sub.try_next().unwrap() {
        for d in c.docs {
            if let Some(v) = d.value {
                let v: serde_json::Value = serde_json::from_slice(&v).unwrap();
                out.push(v["sha256"].as_str().unwrap().to_owned());
            }
        }
    }
    out
}

fn run(steps: Vec<Step>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let opts = Options {
        segment_size: 2048,
        history_retention: Duration::ZERO,
        checkpoint_interval: None,
        ttl_reap_interval: None,
        ..Options::default()
    };
    let db = Db::open_with(&data, opts).unwrap();
    let repo = BackupRepo::open_or_init(dir.path().join("repo")).unwrap();
    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut at_backup: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    for s in &steps {
        match s {
            Step::Put(k, c) => {
                let key = format!("k{k}");
                let b = content(*c);
                db.put_blob("b", &key, &mut &b[..], &BlobUpload::default(), None)
                    .unwrap();
                model.insert(key, b);
            }
            Step::Delete(k) => {
                let key = format!("k{k}");
                db.delete_blob("b", &key).unwrap();
                model.remove(&key);
            }
            Step::Checkpoint => {
                db.checkpoint().unwrap();
            }
            Step::Backup => {
                let m = db.backup(&repo).unwrap();
                at_backup.insert(m.id, model.clone());
            }
            Step::Prune(n) => {
                let policy = RetentionPolicy {
                    keep_last: Some(*n),
                    ..RetentionPolicy::default()
                };
                repo.prune(&policy, None, false).unwrap();
            }
            Step::Gc => {
                db.gc_blobs().unwrap();
            }
        }
        for (k, want) in &model {
            assert_eq!(read(&db, k).as_ref(), Some(want), "after {s:?}: {k}");
        }
        for sha in retained_writes(&db) {
            let path = data.join("blobs").join(&sha[..2]).join(&sha);
            assert!(
                path.is_file(),
                "after {s:?}: a blob write in the log lost its file {sha}"
            );
        }
    }
    let kept: Vec<String> = repo.list().unwrap().into_iter().map(|m| m.id).collect();
    for id in kept {
        let want = &at_backup[&id];
        let out = dir.path().join(format!("restore-{id}"));
        restore(
            &repo,
            &RestoreTarget::Backup(id.clone()),
            false,
            &out,
            &NoProgress,
        )
        .unwrap_or_else(|e| panic!("kept backup {id} does not restore: {e}"));
        let r = Db::open(&out).unwrap();
        let (list, _) = r.list_blobs("b", &amberdb::ListOptions::default()).unwrap();
        assert_eq!(list.len(), want.len(), "backup {id}");
        for (k, b) in want {
            assert_eq!(read(&r, k).as_ref(), Some(b), "backup {id}: {k}");
        }
        r.close().unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn gc_and_prune_never_remove_a_blob_that_the_state_the_log_or_a_kept_backup_needs(
        steps in proptest::collection::vec(step(), 1..30)
    ) {
        run(steps);
    }
}

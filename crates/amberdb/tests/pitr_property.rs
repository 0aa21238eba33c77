//! Point-in-time recovery against a model: random transactions with known commit times,
//! backups at random points (some from separate "processes", i.e. close and reopen between),
//! then restores to many random LSNs and times. Each restored database must equal the model's
//! state at that point exactly.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use amberdb::backup::{restore_with, NoProgress};
use amberdb::{BackupRepo, Db, Options, RestoreTarget, Transaction};
use proptest::prelude::*;
use serde_json::json;

type Model = BTreeMap<(String, String), (serde_json::Value, u64)>;

#[derive(Debug, Clone)]
enum Step {
    Put(u8, u8, u16),
    Delete(u8, u8),
    Backup,
    /// Close (with or without a checkpoint) and reopen, as a separate process would.
    Reopen(bool),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u8..2, 0u8..6, any::<u16>()).prop_map(|(c, k, v)| Step::Put(c, k, v)),
        2 => (0u8..2, 0u8..6).prop_map(|(c, k)| Step::Delete(c, k)),
        1 => Just(Step::Backup),
        1 => any::<bool>().prop_map(Step::Reopen),
    ]
}

fn opts(checkpoint_on_close: bool) -> Options {
    // Tiny segments so commits spread over many sealed, archived segments.
    Options {
        segment_size: 600,
        checkpoint_on_close,
        ..Default::default()
    }
}

fn db_state(db: &Db) -> Model {
    let view = db.view();
    view.iter_all()
        .map(|(c, d)| {
            (
                (c.to_string(), d.key.to_string()),
                (d.json().unwrap(), d.meta.version),
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]

    #[test]
    fn restores_to_any_lsn_or_time_equal_the_model(steps in prop::collection::vec(step(), 10..60), picks in prop::collection::vec(any::<u64>(), 12)) {
        restores_equal_the_model(&steps, &picks, None)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]

    /// Issue 12: the same with the database, its backups, its archive and every restore
    /// encrypted.
    #[test]
    fn with_encryption_on_restores_to_any_lsn_or_time_equal_the_model(steps in prop::collection::vec(step(), 10..60), picks in prop::collection::vec(any::<u64>(), 12)) {
        let ring = amberdb::crypto::Keyring::single(amberdb::crypto::Key::from_bytes([0x17; 32]));
        restores_equal_the_model(&steps, &picks, Some(ring))?;
    }
}

fn restores_equal_the_model(
    steps: &[Step],
    picks: &[u64],
    keys: Option<amberdb::crypto::Keyring>,
) -> Result<(), TestCaseError> {
    let opts = |checkpoint_on_close| Options {
        encryption: keys.clone(),
        ..opts(checkpoint_on_close)
    };
    let reopen = || Options {
        encryption: keys.clone(),
        ..Options::default()
    };
    {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let repo_dir = tmp.path().join("repo");
        let repo = BackupRepo::open_or_init(&repo_dir).unwrap();
        let mut db = Db::open_with(&data, opts(false)).unwrap();
        let mut model: Model = BTreeMap::new();
        // The last version of every key, deleted or not: a re-created document continues after it.
        let mut last_version: BTreeMap<(String, String), u64> = BTreeMap::new();
        // Model state after each LSN, and each LSN's commit time.
        let mut history: Vec<(u64, u64, Model)> = vec![];
        let mut backup_lsns = vec![];
        let cols = ["players", "parties"];
        db.backup(&repo).unwrap();
        backup_lsns.push(0);
        for s in steps {
            match s {
                Step::Put(c, k, v) => {
                    let (c, k) = (cols[*c as usize].to_string(), format!("k{k}"));
                    let value = json!({"v": v, "pad": "x".repeat((*v % 64) as usize)});
                    let mut tx = Transaction::new();
                    tx.put(&c, &k, value.clone());
                    let done = db.commit(&tx).unwrap();
                    let last = last_version.entry((c.clone(), k.clone())).or_default();
                    *last += 1;
                    model.insert((c, k), (value, *last));
                    history.push((done.lsn, done.commit_ts, model.clone()));
                }
                Step::Delete(c, k) => {
                    let (c, k) = (cols[*c as usize].to_string(), format!("k{k}"));
                    let done = db.delete(&c, &k).unwrap();
                    if model.remove(&(c, k)).is_some() {
                        history.push((done.lsn, done.commit_ts, model.clone()));
                    }
                }
                Step::Backup => {
                    let m = db.backup(&repo).unwrap();
                    prop_assert_eq!(m.lsn, history.last().map_or(0, |h| h.0));
                    backup_lsns.push(m.lsn);
                }
                Step::Reopen(checkpoint) => {
                    db.close().unwrap();
                    db = Db::open_with(&data, opts(*checkpoint)).unwrap();
                }
            }
            prop_assert_eq!(&db_state(&db), &model);
        }
        // The final backup archives the rest of the log.
        db.backup(&repo).unwrap();
        db.close().unwrap();
        let Some(last) = history.last().map(|h| h.0) else {
            return Ok(());
        };
        let at = |lsn: u64| {
            history
                .iter()
                .rev()
                .find(|h| h.0 <= lsn)
                .map(|h| h.2.clone())
                .unwrap_or_default()
        };
        for (i, pick) in picks.iter().enumerate() {
            let into = tmp.path().join(format!("restore-{i}"));
            let (target, expected, exclusive) = match pick % 3 {
                0 => {
                    let lsn = pick % (last + 1);
                    (RestoreTarget::Lsn(lsn), at(lsn), false)
                }
                1 => {
                    let lsn = 1 + pick % last;
                    (RestoreTarget::Lsn(lsn), at(lsn - 1), true)
                }
                _ => {
                    let idx = (*pick as usize / 3) % history.len();
                    let h = &history[idx];
                    let before = if idx == 0 {
                        BTreeMap::new()
                    } else {
                        history[idx - 1].2.clone()
                    };
                    match (pick / 7) % 3 {
                        // Exactly at a commit, inclusive: that commit is in.
                        0 => (RestoreTarget::Time(h.1), h.2.clone(), false),
                        // Exactly at a commit, exclusive: that commit is out.
                        1 => (RestoreTarget::Time(h.1), before, true),
                        // Just before the next commit: everything up to this one.
                        _ => {
                            let t = history.get(idx + 1).map_or(h.1 + 1_000_000, |n| n.1 - 1);
                            (RestoreTarget::Time(t), h.2.clone(), false)
                        }
                    }
                }
            };
            // Time targets after the last commit are unprovable and must fail loudly.
            let report = restore_with(&repo, &target, exclusive, &into, &NoProgress, keys.as_ref());
            let report = match (&target, report) {
                (RestoreTarget::Time(t), Err(e))
                    if *t >= history.last().unwrap().1 && !exclusive =>
                {
                    prop_assert!(e.to_string().contains("archive ends"), "{e}");
                    prop_assert!(!into.exists());
                    continue;
                }
                (_, r) => r.unwrap(),
            };
            prop_assert!(report.verified);
            let restored = Db::open_with(&into, reopen()).unwrap();
            prop_assert_eq!(
                &db_state(&restored),
                &expected,
                "target {} from backup {}",
                target,
                report.backup_id
            );
            restored.close().unwrap();
        }
        let latest = tmp.path().join("latest");
        restore_with(
            &repo,
            &RestoreTarget::Latest,
            false,
            &latest,
            &NoProgress,
            keys.as_ref(),
        )
        .unwrap();
        let restored = Db::open_with(&latest, reopen()).unwrap();
        prop_assert_eq!(&db_state(&restored), &model);
    }
    Ok(())
}

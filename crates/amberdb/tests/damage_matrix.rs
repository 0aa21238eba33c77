//! Damage matrix: for the data directory and the backup repository, every file kind truncated,
//! deleted, byte-flipped and swapped with the same file of another database, and each outcome
//! asserted: opened with exactly the acknowledged state (what was damaged was not needed, or a
//! torn tail was cut), refused naming the file (and the offset where there is one), or
//! recovered automatically with an exact report. Runtime is bounded: one small database per
//! side, copied for each case.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use amberdb::backup::{restore, NoProgress};
use amberdb::log::segment::list_segments;
use amberdb::{
    verify_dir, BackupRepo, Db, Error, Options, RecoveryMode, RestoreTarget, CHECKPOINT_DIR,
    LOG_DIR,
};
use serde_json::json;

mod support;
use support::copy_dir;

type Model = BTreeMap<(String, String), serde_json::Value>;

fn opts() -> Options {
    Options {
        // Eight commits per segment (a frame of this workload is 144 bytes in log format
        // 4), so the active segment holds LSNs 33..=40 and a flip in its middle has valid,
        // synced frames after it.
        segment_size: 1200,
        checkpoint_on_close: false,
        checkpoint_interval: None,
        // No history window: checkpoints release the oldest segments, as the matrix expects.
        history_retention: std::time::Duration::ZERO,
        ..Options::default()
    }
}

fn state_of(db: &Db) -> Model {
    db.view()
        .iter_all()
        .map(|(c, d)| ((c.to_string(), d.key.to_string()), d.json().unwrap()))
        .collect()
}

/// A data directory and its repository: 40 commits, backups at LSN 10 and 25, checkpoints
/// at LSN 20 and 30, small segments. `salt` changes every value (another database with the
/// same shape and LSNs).
fn build(root: &Path, salt: u64) -> Model {
    let (data, repo_dir) = (root.join("d"), root.join("r"));
    let repo = BackupRepo::open_or_init(&repo_dir).unwrap();
    let db = Db::open_with(&data, opts()).unwrap();
    for i in 1..=40u64 {
        db.put("kv", &format!("k{}", i % 13), json!({"i": i, "salt": salt}))
            .unwrap();
        match i {
            10 | 25 => {
                db.backup(&repo).unwrap();
            }
            20 | 30 => {
                db.checkpoint().unwrap();
            }
            _ => {}
        }
    }
    let model = state_of(&db);
    db.close().unwrap();
    model
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Damage {
    Truncate,
    Delete,
    Flip,
    Swap,
}

const DAMAGES: [Damage; 4] = [Damage::Truncate, Damage::Delete, Damage::Flip, Damage::Swap];

fn apply(damage: Damage, file: &Path, other: &Path) {
    match damage {
        Damage::Truncate => {
            let len = fs::metadata(file).unwrap().len();
            fs::OpenOptions::new()
                .write(true)
                .open(file)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
        }
        Damage::Delete => fs::remove_file(file).unwrap(),
        Damage::Flip => {
            let mut b = fs::read(file).unwrap();
            let at = b.len() / 2;
            b[at] ^= 0x10;
            fs::write(file, b).unwrap();
        }
        Damage::Swap => {
            fs::copy(other, file).unwrap();
        }
    }
}

/// What happened when the damaged directory was opened.
#[derive(Debug)]
enum Outcome {
    /// Opened with this state.
    Opened(Model, Box<amberdb::RecoveryReport>),
    /// Refused naming this file, at this offset.
    Refused(PathBuf, u64, String),
}

fn open(data: &Path, o: Options) -> Outcome {
    match Db::open_with(data, o) {
        Ok(db) => {
            let s = state_of(&db);
            let r = db.recovery_report().clone();
            db.close().unwrap();
            Outcome::Opened(s, Box::new(r))
        }
        Err(Error::Damaged(d)) => Outcome::Refused(d.file, d.offset, d.detail),
        Err(e) => panic!("{}: not a Damaged error: {e}", data.display()),
    }
}

struct World {
    _tmp: tempfile::TempDir,
    mine: PathBuf,
    other: PathBuf,
    model: Model,
}

fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let (mine, other) = (tmp.path().join("mine"), tmp.path().join("other"));
    let model = build(&mine, 1);
    build(&other, 2);
    World {
        _tmp: tmp,
        mine,
        other,
        model,
    }
}

/// Copies the world into a fresh case directory; returns (data, repo, case root).
fn case(w: &World, name: &str) -> (PathBuf, PathBuf) {
    let root = w.mine.parent().unwrap().join("cases").join(name);
    copy_dir(&w.mine, &root);
    (root.join("d"), root.join("r"))
}

/// The files of the data directory, by kind (relative paths).
fn data_files(data: &Path) -> Vec<(&'static str, PathBuf)> {
    let segs = list_segments(&data.join(LOG_DIR)).unwrap();
    let ckpts = amberdb::checkpoint::list_checkpoints(&data.join(CHECKPOINT_DIR)).unwrap();
    let rel = |p: &Path| p.strip_prefix(data).unwrap().to_owned();
    let sealed = &segs[segs.len() - 2].1;
    vec![
        ("active segment", rel(&segs.last().unwrap().1)),
        ("newest sealed segment", rel(sealed)),
        ("oldest sealed segment", rel(&segs[0].1)),
        ("seal", rel(&sealed.with_extension("seal"))),
        ("newest checkpoint", rel(&ckpts[0].1)),
        ("older checkpoint", rel(&ckpts[1].1)),
        ("slot file", PathBuf::from("archive.json")),
        ("log head", PathBuf::from("log/HEAD")),
        (
            "identity record",
            PathBuf::from(amberdb::identity::IDENTITY_FILE),
        ),
    ]
}

/// What open (in the default, refusing mode) must do with one damaged file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Open with exactly the acknowledged state (the file was not needed, or is rebuilt);
    /// `verify` (run first, on the damaged copy) names the file when `verify_names` is set.
    Same { verify_names: bool },
    /// Fall back to the older checkpoint (quarantining the damaged one), same state.
    Fallback,
    /// The last segment's tail is cut as a torn tail (a truncation at a frame boundary
    /// cannot be told from an interrupted write); verify calls it a torn tail too.
    Cut,
    /// Refuse, naming the damaged file itself (at a nonzero offset when `offset` is set).
    Refused { offset: bool },
    /// Refuse, naming the next segment: the chain has a gap where the file was.
    RefusedGap,
}

fn expect(kind: &str, damage: Damage) -> Expect {
    use Damage::*;
    use Expect::*;
    match (kind, damage) {
        ("active segment", Truncate) => Cut,
        ("active segment", Delete) => Refused { offset: false },
        ("active segment", Flip) => Refused { offset: true },
        // Another database's file with the same name, LSNs and valid checksums: its ids in
        // the segment header (log format 3) tell it apart.
        ("active segment", Swap) => Refused { offset: false },
        ("newest sealed segment", Truncate | Flip) => Refused { offset: true },
        ("newest sealed segment", Delete) => RefusedGap,
        ("newest sealed segment", Swap) => Refused { offset: false },
        // Before the newest checkpoint: history only; open does not need it, verify reports it.
        ("oldest sealed segment", Truncate | Flip | Delete | Swap) => Same { verify_names: true },
        ("seal", _) => Same { verify_names: true },
        ("newest checkpoint", Truncate | Flip) => Fallback,
        ("newest checkpoint", Delete) => Same {
            verify_names: false,
        },
        // A checkpoint of another database is not used, like a damaged one.
        ("newest checkpoint", Swap) => Fallback,
        ("older checkpoint", Truncate | Flip) => Same { verify_names: true },
        ("older checkpoint", Delete) => Same {
            verify_names: false,
        },
        ("older checkpoint", Swap) => Same { verify_names: true },
        ("slot file", Truncate | Flip) => Refused { offset: false },
        // A deleted slot file silently detaches the repository: the data is intact.
        ("slot file", Delete) => Same {
            verify_names: false,
        },
        // Another database's slot: the data is intact, verify names the slot (its database
        // id), and archiving into that repository is refused (it belongs to the other one).
        ("slot file", Swap) => Same { verify_names: true },
        ("log head", Truncate | Flip) => Refused { offset: false },
        // The head only names an LSN: without it the checkpoint rule still applies; another
        // database's head with the same LSN is the same bytes.
        ("log head", Delete | Swap) => Same {
            verify_names: false,
        },
        // A damaged, missing or foreign identity record: the ids in the files cannot be
        // checked against anything, so open refuses naming the record.
        ("identity record", _) => Refused { offset: false },
        _ => unreachable!("{kind} {damage:?}"),
    }
}

#[test]
fn every_data_directory_file_kind_under_every_damage() {
    let w = world();
    let files = data_files(&w.mine.join("d"));
    let mut checked = 0;
    for (kind, rel) in &files {
        for damage in DAMAGES {
            let name = format!("{}-{damage:?}", kind.replace(' ', "_"));
            let what = format!("{kind} {damage:?}");
            let (data, repo) = case(&w, &name);
            let file = data.join(rel);
            apply(damage, &file, &w.other.join("d").join(rel));
            let verify = verify_dir(&data).unwrap();
            // A segment and its seal vouch for each other: either may be named.
            // A deleted file can only be named by its directory ("log starts at LSN ...").
            let names_file = verify.problems.iter().any(|p| {
                p.file == file
                    || (damage == Damage::Delete && Some(p.file.as_path()) == file.parent())
                    || (file.extension().is_some_and(|e| e == "log" || e == "seal")
                        && (p.file == file.with_extension("seal")
                            || p.file == file.with_extension("log")))
            });
            let refuse = open(&data, opts());
            let exp = expect(kind, damage);
            match (exp, &refuse) {
                (Expect::Same { verify_names }, Outcome::Opened(s, r)) => {
                    assert_eq!(*s, w.model, "{what}");
                    assert_eq!(r.lsn, 40, "{what}");
                    assert!(
                        r.torn_tail.is_none() && r.quarantined.is_empty(),
                        "{what}: {r:?}"
                    );
                    assert!(!verify_names || names_file, "{what}: {:?}", verify.problems);
                }
                (Expect::Fallback, Outcome::Opened(s, r)) => {
                    assert_eq!(*s, w.model, "{what}");
                    assert_eq!(r.checkpoint_lsn, 20, "{what}");
                    assert_eq!(r.quarantined.len(), 1, "{what}");
                    assert_eq!(r.quarantined[0].0, file, "{what}");
                    assert!(names_file, "{what}: {:?}", verify.problems);
                }
                (Expect::Cut, Outcome::Opened(_, r)) => {
                    let t = r.torn_tail.as_ref().unwrap();
                    assert_eq!(t.file, file, "{what}");
                    assert!(r.lsn < 40 && r.lsn >= 34, "{what}: {r:?}");
                    assert_eq!(verify.torn_tail.as_ref().map(|t| t.offset), Some(t.offset));
                    assert!(verify.problems.is_empty(), "{what}: {:?}", verify.problems);
                }
                (Expect::Refused { offset }, Outcome::Refused(f, o, _)) => {
                    assert_eq!(f, &file, "{what}");
                    assert!(!offset || *o > 0, "{what}: offset {o}");
                    assert!(
                        verify
                            .problems
                            .iter()
                            .any(|p| p.file == file && (!offset || p.offset == Some(*o))),
                        "{what}: {:?}",
                        verify.problems
                    );
                }
                (Expect::RefusedGap, Outcome::Refused(f, _, d)) => {
                    assert_eq!(f.parent(), file.parent(), "{what}");
                    assert!(d.contains("a gap"), "{what}: {d}");
                    assert!(!verify.problems.is_empty(), "{what}");
                }
                (e, o) => panic!("{what}: expected {e:?}, got {o:?}"),
            }
            // Automatic recovery: either the exact state with nothing lost, or a state that is
            // exactly the acknowledged prefix with the rest named as lost; or a refusal
            // naming a file.
            // On a fresh copy with the same damage (the refusing open may have cut a tail).
            let _ = repo;
            let (data, repo) = case(&w, &format!("{name}-auto"));
            apply(damage, &data.join(rel), &w.other.join("d").join(rel));
            let auto = open(
                &data,
                Options {
                    recovery: RecoveryMode::Auto { repo },
                    ..opts()
                },
            );
            match auto {
                Outcome::Opened(s, r) => {
                    let lost = r.auto.as_ref().and_then(|a| a.lost);
                    if r.lsn == 40 {
                        assert_eq!(s, w.model, "{what}");
                        assert_eq!(lost, None, "{what}");
                    } else if r.torn_tail.is_none() {
                        assert_eq!(lost, Some((r.lsn + 1, 40)), "{what}: {r:?}");
                    }
                    if exp == (Expect::Refused { offset: false }) && kind == &"slot file" {
                        assert!(r.slots_rebuilt.is_some(), "{what}");
                    }
                }
                // Automatic recovery refuses what it cannot measure (a missing newest segment),
                // and a directory whose identity record is unusable: it would not know which
                // database's files to recover.
                Outcome::Refused(f, _, d) => {
                    let identity = *kind == "identity record"
                        && f == data.join(amberdb::identity::IDENTITY_FILE);
                    assert!(
                        f.starts_with(&data)
                            && (d.contains("cannot name what was lost") || identity),
                        "{what}: {d}"
                    );
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, files.len() * DAMAGES.len());
}

/// The state right after LSN `lsn` of `build(_, 1)`.
fn model_at(lsn: u64) -> Model {
    (1..=lsn)
        .map(|i| {
            (
                ("kv".to_string(), format!("k{}", i % 13)),
                json!({"i": i, "salt": 1}),
            )
        })
        .collect()
}

#[test]
fn every_repository_file_kind_under_every_damage() {
    let w = world();
    let repo_dir = w.mine.join("r");
    let repo = BackupRepo::open(&repo_dir).unwrap();
    let newest = repo
        .list()
        .unwrap()
        .into_iter()
        .max_by_key(|b| b.lsn)
        .unwrap();
    let last_wal = repo
        .archived_segments()
        .unwrap()
        .into_iter()
        .last()
        .unwrap();
    assert_eq!((newest.lsn, last_wal.last_lsn), (25, 25));
    let other_repo = BackupRepo::open(w.other.join("r")).unwrap();
    let other_last_wal = other_repo
        .archived_segments()
        .unwrap()
        .into_iter()
        .last()
        .unwrap();
    let history = |r: &BackupRepo| {
        let t = r.histories().unwrap().last().unwrap().timeline;
        PathBuf::from(format!("wal/{t}.history"))
    };
    // Archived files are named by first LSN and timeline: the other database's file of the
    // same kind has the other timeline in its name.
    let swaps = [
        (last_wal.data_file(), other_last_wal.data_file()),
        (last_wal.seal_file(), other_last_wal.seal_file()),
        (last_wal.meta_file(), other_last_wal.meta_file()),
        (
            history(&repo).to_string_lossy().into_owned(),
            history(&other_repo).to_string_lossy().into_owned(),
        ),
    ];
    let files = [
        ("config", PathBuf::from("config.json")),
        (
            "manifest",
            Path::new("backups").join(&newest.id).join("manifest.json"),
        ),
        (
            "snapshot",
            Path::new("backups")
                .join(&newest.id)
                .join("snapshot.ckpt.zst"),
        ),
        ("archived segment", PathBuf::from(last_wal.data_file())),
        ("archived seal", PathBuf::from(last_wal.seal_file())),
        (
            "archived segment description",
            PathBuf::from(last_wal.meta_file()),
        ),
        ("timeline history", history(&repo)),
    ];
    let other_newest = other_repo
        .list()
        .unwrap()
        .into_iter()
        .max_by_key(|b| b.lsn)
        .unwrap();
    let mut cases = 0;
    for (kind, rel) in &files {
        for damage in DAMAGES {
            let what = format!("repository {kind} {damage:?}");
            let (_, repo_dir) = case(&w, &format!("repo-{}-{damage:?}", kind.replace(' ', "_")));
            let mut other_rel = rel.to_string_lossy().replace(&newest.id, &other_newest.id);
            for (mine, theirs) in &swaps {
                if other_rel == *mine {
                    other_rel = theirs.clone();
                }
            }
            let other = w.other.join("r").join(other_rel);
            apply(damage, &repo_dir.join(rel), &other);
            // The damage is visible: the repository does not open, or verify names a problem.
            let repo = match BackupRepo::open(&repo_dir) {
                Ok(r) => r,
                Err(e) => {
                    assert!(*kind == "config", "{what}: {e}");
                    cases += 1;
                    continue;
                }
            };
            let report = repo.verify(None, true, &NoProgress);
            let visible = match &report {
                Ok(r) => !r.problems.is_empty() || !r.gaps.is_empty(),
                Err(_) => true,
            };
            // A restore gives exactly a state that existed, or fails.
            let into = repo_dir.parent().unwrap().join("restored");
            match restore(&repo, &RestoreTarget::Latest, false, &into, &NoProgress) {
                Ok(r) => {
                    let db = Db::open(&into).unwrap();
                    assert_eq!(state_of(&db), model_at(r.lsn), "{what}");
                    db.close().unwrap();
                    assert!(
                        r.lsn == 25 || visible,
                        "{what}: restored LSN {} silently",
                        r.lsn
                    );
                    if !visible {
                        // Only harmless for a file restore does not need at LSN 25.
                        assert!(
                            invisible_but_harmless(kind, damage),
                            "{what}: damage not visible to verify"
                        );
                    }
                }
                Err(e) => assert!(visible, "{what}: restore failed ({e}) but verify is clean"),
            }
            cases += 1;
        }
    }
    assert_eq!(cases, files.len() * DAMAGES.len());
}

/// Damage that neither verify nor restore --latest notices today, and why that is accepted
/// here. Each is a known gap with an owner, not a silent pass.
fn invisible_but_harmless(kind: &str, damage: Damage) -> bool {
    matches!(
        (kind, damage),
        // Another repository's config: the id differs but nothing cross-checks it yet
        // (identity, issue 8 item 5).
        ("config", Damage::Swap)
        // The newest backup holds LSN 25 itself; an archived segment whose description is
        // gone is skipped by listing. Verify must report an orphaned segment (issue 8 item 13,
        // backup): until then, restore --latest is still exact.
        | ("archived segment description", Damage::Delete)
    )
}

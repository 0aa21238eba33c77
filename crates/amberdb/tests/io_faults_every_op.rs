//! Faults on the file-system operations beyond writes and syncs: unreadable files (EIO on
//! read), and the order of creations and directory fsyncs, seen through injectors installed
//! with `amberdb::io::install` over a test's directory.

#![allow(clippy::unwrap_used)]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use amberdb::io::{install, Fault, FaultInjector, IoOp};
use amberdb::{
    BackupRepo, Db, Error, Options, RecoveryMode, CHECKPOINT_DIR, LOG_DIR, QUARANTINE_DIR,
};
use serde_json::json;

const EIO: i32 = 5;

/// Fails every read of one file with EIO while armed.
struct UnreadableFile {
    path: PathBuf,
    armed: AtomicBool,
}

impl UnreadableFile {
    fn new(path: PathBuf) -> Arc<Self> {
        Arc::new(UnreadableFile {
            path,
            armed: AtomicBool::new(true),
        })
    }
}

impl FaultInjector for UnreadableFile {
    fn on_io(&self, op: IoOp<'_>) -> Fault {
        match op {
            IoOp::Read { path } if path == self.path && self.armed.load(Ordering::SeqCst) => {
                Fault::Fail(io::Error::from_raw_os_error(EIO))
            }
            _ => Fault::Proceed,
        }
    }
}

fn opts() -> Options {
    Options {
        segment_size: 1024,
        checkpoint_on_close: false,
        checkpoint_interval: None,
        ..Options::default()
    }
}

fn put_n(db: &Db, from: u32, to: u32) {
    for i in from..to {
        db.put(
            "c",
            &format!("k{}", i % 7),
            json!({"i": i, "pad": "y".repeat(60)}),
        )
        .unwrap();
    }
}

fn checkpoints(data: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(data.join(CHECKPOINT_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ckpt"))
        .collect();
    v.sort();
    v
}

#[test]
fn an_unreadable_newest_checkpoint_is_skipped_for_the_older_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let db = Db::open_with(&data, opts()).unwrap();
    put_n(&db, 0, 20);
    db.checkpoint().unwrap();
    put_n(&db, 20, 40);
    db.checkpoint().unwrap();
    put_n(&db, 40, 45);
    let last = db.view().lsn();
    let expected = db.get("c", "k3").unwrap().json().unwrap();
    db.close().unwrap();
    let ckpts = checkpoints(&data);
    assert_eq!(ckpts.len(), 2, "{ckpts:?}");
    let newest = ckpts[1].clone();

    let injector = UnreadableFile::new(newest.clone());
    let _scope = install(tmp.path(), injector.clone());
    let db = Db::open_with(&data, opts())
        .unwrap_or_else(|e| panic!("an unreadable checkpoint must be skipped, not fatal: {e}"));
    assert_eq!(db.view().lsn(), last, "nothing lost by falling back");
    assert_eq!(db.get("c", "k3").unwrap().json().unwrap(), expected);
    let report = db.recovery_report().clone();
    assert_eq!(report.checkpoint.as_deref(), Some(ckpts[0].as_path()));
    assert_eq!(report.quarantined.len(), 1, "{report:?}");
    assert_eq!(report.quarantined[0].0, newest);
    assert!(report.quarantined[0]
        .1
        .starts_with(data.join(QUARANTINE_DIR)));
    db.close().unwrap();
}

#[test]
fn an_unreadable_segment_is_damage_at_offset_zero_and_automatic_recovery_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, repo_dir) = (tmp.path().join("data"), tmp.path().join("repo"));
    let repo = BackupRepo::open_or_init(&repo_dir).unwrap();
    let db = Db::open_with(&data, opts()).unwrap();
    put_n(&db, 0, 30);
    let backup = db.backup(&repo).unwrap();
    put_n(&db, 30, 35);
    let active = std::fs::read_dir(data.join(LOG_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .max()
        .unwrap();
    db.close().unwrap();

    let injector = UnreadableFile::new(active.clone());
    let _scope = install(tmp.path(), injector.clone());
    match Db::open_with(&data, opts()) {
        Err(Error::Damaged(d)) => {
            assert_eq!(d.file, active);
            assert_eq!(d.offset, 0);
            assert!(d.detail.contains("unreadable"), "{}", d.detail);
            assert!(d.detail.contains("os error 5"), "{}", d.detail);
        }
        Err(e) => panic!("an unreadable segment must be reported as damage, got: {e}"),
        Ok(_) => panic!("opened although the active segment cannot be read"),
    }
    let db = Db::open_with(
        &data,
        Options {
            recovery: RecoveryMode::Auto {
                repo: repo_dir.clone(),
            },
            ..opts()
        },
    )
    .unwrap_or_else(|e| panic!("automatic recovery must run for an unreadable segment: {e}"));
    let auto = db
        .recovery_report()
        .auto
        .clone()
        .expect("auto recovery ran");
    assert!(auto.lsn >= backup.lsn, "{auto:?}");
    assert!(
        auto.quarantined_files
            .iter()
            .any(|p| p.file_name() == active.file_name()),
        "{auto:?}"
    );
    db.close().unwrap();
}

/// Records every mutation under a directory, in order.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl FaultInjector for Recorder {
    fn on_io(&self, _op: IoOp<'_>) -> Fault {
        Fault::Proceed
    }

    fn after_io(&self, op: IoOp<'_>, done: bool) {
        if done && op.is_mutation() {
            let text = match op {
                IoOp::CreateDir { path } => format!("mkdir {}", path.display()),
                IoOp::SyncDir { path } => format!("dirsync {}", path.display()),
                IoOp::Sync { path } => format!("fsync {}", path.display()),
                other => format!("{} {}", other.kind(), other.path().display()),
            };
            self.0.lock().unwrap().push(text);
        }
    }
}

#[test]
fn the_first_commit_is_acknowledged_only_after_the_new_directories_were_made_durable() {
    let tmp = tempfile::tempdir().unwrap();
    let parent = tmp.path().join("parent");
    std::fs::create_dir(&parent).unwrap();
    let data = parent.join("data");
    let recorder = Arc::new(Recorder::default());
    let _scope = install(&parent, recorder.clone());
    let db = Db::open_with(&data, opts()).unwrap();
    db.put("c", "k", json!(1)).unwrap();
    let ops = recorder.0.lock().unwrap().clone();
    let pos = |what: &str| {
        ops.iter()
            .position(|o| o == what)
            .unwrap_or_else(|| panic!("{what:?} never happened: {ops:#?}"))
    };
    let last_sync = ops
        .iter()
        .rposition(|o| o.starts_with("fsync ") && o.ends_with(".log"))
        .unwrap();
    let d = data.display();
    // The data directory's own name is durable in its parent.
    assert!(pos(&format!("mkdir {d}")) < pos(&format!("dirsync {}", parent.display())));
    // log/ and checkpoints/ are durable in the data directory.
    for sub in [LOG_DIR, CHECKPOINT_DIR] {
        let made = pos(&format!("mkdir {d}/{sub}"));
        let synced = ops
            .iter()
            .enumerate()
            .skip(made)
            .position(|(_, o)| o == &format!("dirsync {d}"));
        assert!(
            synced.is_some(),
            "{sub}/ created but {d} never synced after: {ops:#?}"
        );
    }
    // And all of it before the commit's own fsync returned (the acknowledgement).
    assert!(pos(&format!("dirsync {}", parent.display())) < last_sync);
    assert!(
        pos(&format!("dirsync {d}/{LOG_DIR}")) < last_sync,
        "{ops:#?}"
    );
    db.close().unwrap();
}

#[test]
fn a_backup_directory_is_durable_in_the_repository_before_the_backup_is_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, repo_dir) = (tmp.path().join("data"), tmp.path().join("repo"));
    let db = Db::open_with(&data, opts()).unwrap();
    put_n(&db, 0, 5);
    let recorder = Arc::new(Recorder::default());
    let _scope = install(tmp.path(), recorder.clone());
    let repo = BackupRepo::open_or_init(&repo_dir).unwrap();
    let m = db.backup(&repo).unwrap();
    let ops = recorder.0.lock().unwrap().clone();
    let pos = |what: String| {
        ops.iter()
            .position(|o| *o == what)
            .unwrap_or_else(|| panic!("{what:?} never happened: {ops:#?}"))
    };
    let r = repo_dir.display();
    assert!(pos(format!("mkdir {r}")) < pos(format!("dirsync {}", tmp.path().display())));
    let backups = ops
        .iter()
        .find(|o| o.starts_with("mkdir ") && o.contains(&m.id))
        .unwrap_or_else(|| panic!("no directory for backup {}: {ops:#?}", m.id))
        .trim_start_matches("mkdir ")
        .to_owned();
    let parent = Path::new(&backups).parent().unwrap().display().to_string();
    let made = pos(format!("mkdir {backups}"));
    assert!(
        ops.iter()
            .skip(made)
            .any(|o| *o == format!("dirsync {parent}")),
        "{backups} created but {parent} never synced after: {ops:#?}"
    );
    db.close().unwrap();
}

/// Modes of everything under `dir` (relative path, mode bits).
fn modes(dir: &Path) -> Vec<(PathBuf, u32, bool)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let md = std::fs::symlink_metadata(&p).unwrap();
        out.push((p.clone(), md.permissions().mode() & 0o777, md.is_dir()));
        if md.is_dir() {
            out.extend(modes(&p));
        }
    }
    out
}

/// Runs in a child process with umask 022 (see the test below): creates a database, a
/// repository with a backup, and a restore, then checks every mode.
fn check_modes_in_child(group: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let (data, repo_dir, restored) = (
        tmp.path().join("data"),
        tmp.path().join("repo"),
        tmp.path().join("restored"),
    );
    let db = Db::open_with(
        &data,
        Options {
            group_access: group,
            ..opts()
        },
    )
    .unwrap();
    put_n(&db, 0, 30);
    db.checkpoint().unwrap();
    let repo = BackupRepo::open_or_init(&repo_dir).unwrap();
    db.backup(&repo).unwrap();
    db.close().unwrap();
    amberdb::backup::restore(
        &repo,
        &amberdb::RestoreTarget::Latest,
        false,
        &restored,
        &amberdb::backup::NoProgress,
    )
    .unwrap();
    let (file_mode, dir_mode) = if group {
        (0o640, 0o750)
    } else {
        (0o600, 0o700)
    };
    let all = modes(tmp.path());
    assert!(all.len() > 10, "{all:?}");
    for (path, mode, is_dir) in all {
        let want = if is_dir { dir_mode } else { file_mode };
        assert_eq!(
            mode,
            want,
            "{} has mode {mode:o}, want {want:o}",
            path.display()
        );
    }
}

#[test]
fn files_are_0600_and_directories_0700_under_umask_022_and_0640_0750_with_group_access() {
    if let Ok(which) = std::env::var("AMBERDB_MODES_CHILD") {
        check_modes_in_child(which == "group");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    for which in ["owner", "group"] {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("umask 022 && exec \"$0\" --exact --nocapture files_are_0600_and_directories_0700_under_umask_022_and_0640_0750_with_group_access")
            .arg(&exe)
            .env("AMBERDB_MODES_CHILD", which)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{which}: {text}");
        assert!(
            text.contains("1 passed"),
            "{which}: the child ran the check: {text}"
        );
    }
}

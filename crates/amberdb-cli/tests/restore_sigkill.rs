//! A restore killed with SIGKILL at random moments never leaves a half-restored directory
//! that opens as a database: the target either does not exist or is complete and verified.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use amberdb::{BackupRepo, Db, Options};
use rand::Rng;
use serde_json::json;

fn amberdb() -> Command {
    Command::new(env!("CARGO_BIN_EXE_amberdb"))
}

fn build_repo(tmp: &Path) -> (std::path::PathBuf, usize) {
    let repo_dir = tmp.join("repo");
    let repo = BackupRepo::open_or_init(&repo_dir).unwrap();
    let db = Db::open_with(
        tmp.join("data"),
        Options {
            segment_size: 256 << 10,
            ..Default::default()
        },
    )
    .unwrap();
    let pad = "x".repeat(900);
    for chunk in 0..40 {
        let mut tx = amberdb::Transaction::new();
        for i in 0..500 {
            tx.put(
                "players",
                &format!("p{chunk}-{i}"),
                json!({"chunk": chunk, "i": i, "pad": pad}),
            );
        }
        db.commit(&tx).unwrap();
        if chunk == 20 {
            db.backup(&repo).unwrap();
        }
    }
    db.backup(&repo).unwrap();
    db.close().unwrap();
    (repo_dir, 40 * 500)
}

#[test]
fn restore_killed_at_random_moments_leaves_nothing_that_opens_half_restored() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, docs) = build_repo(tmp.path());
    // How long one restore takes here, to spread the kills over it.
    let t0 = Instant::now();
    let status = amberdb()
        .args(["restore", "--repo"])
        .arg(&repo)
        .args(["--latest", "--into"])
        .arg(tmp.path().join("timing"))
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let full = t0.elapsed();
    let mut rng = rand::rng();
    let (mut complete, mut absent) = (0, 0);
    for round in 0..20 {
        let into = tmp.path().join(format!("r{round}"));
        let mut child = amberdb()
            .args(["restore", "--repo"])
            .arg(&repo)
            .args(["--latest", "--into"])
            .arg(&into)
            .stderr(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let at = full.mul_f64(rng.random_range(0.05..1.1));
        std::thread::sleep(at.min(Duration::from_secs(30)));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        if into.exists() {
            let db = Db::open(&into).unwrap();
            assert_eq!(
                db.count("players"),
                docs as u64,
                "round {round}: a restored directory must be complete"
            );
            db.close().unwrap();
            assert!(amberdb::verify_dir(&into).unwrap().is_clean());
            complete += 1;
        } else {
            absent += 1;
        }
        // Any leftover work directory must refuse to open (it carries the marker) or be whole.
        for entry in std::fs::read_dir(tmp.path()).unwrap() {
            let p = entry.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with(&format!(".r{round}.restoring")) {
                // Killed between creating the work directory and writing its marker: an
                // empty directory, holding no state at all (nothing to open half restored).
                // Anything in it must carry the marker or be whole.
                if std::fs::read_dir(&p).unwrap().next().is_none() {
                    std::fs::remove_dir(&p).unwrap();
                    continue;
                }
                match Db::open(&p) {
                    Err(e) => assert!(e.to_string().contains("interrupted restore"), "{e}"),
                    Ok(db) => {
                        assert_eq!(db.count("players"), docs as u64);
                        db.close().unwrap();
                    }
                }
                std::fs::remove_dir_all(&p).unwrap();
            }
        }
    }
    eprintln!("kills: {complete} after completion, {absent} before");
    assert_eq!(complete + absent, 20);
}

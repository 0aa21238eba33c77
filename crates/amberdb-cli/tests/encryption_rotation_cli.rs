//! Issue 12: `amberdb key rotate` through the real binary. After it, `amberdb stats` and
//! `amberdb key status` list only the new key id, and the directory opens and verifies with
//! the new key alone; a rotation killed with SIGKILL at any moment loses nothing and
//! finishes when run again.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use amberdb::crypto::{Key, Keyring};
use amberdb::{Db, Options};
use rand::{Rng, SeedableRng};
use serde_json::json;

fn amberdb(args: &[&str], cwd: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_amberdb"));
    c.args(args)
        .current_dir(cwd)
        .env_remove("AMBERDB_ENCRYPTION_KEY")
        .env_remove("AMBERDB_DATA");
    c
}

fn ok(args: &[&str], cwd: &Path) -> serde_json::Value {
    let out: Output = amberdb(args, cwd).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn key_bytes(n: u8) -> Vec<u8> {
    (0..32u8)
        .map(|i| i.wrapping_mul(41).wrapping_add(n.wrapping_mul(97)) ^ 0xa7)
        .collect()
}

fn key(n: u8) -> Key {
    Key::parse(&key_bytes(n), "test").unwrap()
}

fn ring(keys: &[u8]) -> Keyring {
    Keyring::new(keys.iter().map(|k| key(*k)).collect()).unwrap()
}

type State = BTreeMap<(String, String), serde_json::Value>;

fn state_of(db: &Db) -> State {
    db.view()
        .iter_all()
        .map(|(c, d)| ((c.to_string(), d.key.to_string()), d.json().unwrap()))
        .collect()
}

/// A data directory under key 1 with `segments`-ish sealed segments and two checkpoints, and
/// the key files `k1`, `k2` in `dir`.
fn setup(dir: &Path, commits: usize) -> State {
    std::fs::write(dir.join("k1"), key_bytes(1)).unwrap();
    std::fs::write(dir.join("k2"), key_bytes(2)).unwrap();
    let db = Db::open_with(
        dir.join("data"),
        Options {
            encryption: Some(ring(&[1])),
            segment_size: 4096,
            history_retention: Duration::from_secs(24 * 3600),
            checkpoint_interval: None,
            ..Options::default()
        },
    )
    .unwrap();
    for i in 0..commits {
        db.put(
            "c",
            &format!("k{}", i % 50),
            json!({ "i": i, "pad": "z".repeat(200) }),
        )
        .unwrap();
        if i == commits / 2 {
            db.checkpoint().unwrap();
        }
    }
    let s = state_of(&db);
    db.close().unwrap();
    s
}

fn in_use(v: &serde_json::Value) -> Vec<String> {
    v["key_ids_in_use"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}

/// With key 2 alone: the state is `want`, verify passes with contents checked, and stats
/// and key status list only key 2.
fn check_new_key_only(dir: &Path, want: &State, ctx: &str) {
    let id2 = key(2).id().to_string();
    let stats = ok(&["stats", "--data", "data", "--key-file", "k2"], dir);
    assert_eq!(in_use(&stats), vec![id2.clone()], "{ctx}");
    let status = ok(&["key", "status", "--data", "data"], dir);
    let ids: Vec<&str> = status["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![id2.as_str()], "{ctx}");
    let out = amberdb(&["verify", "--data", "data", "--key-file", "k2"], dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{ctx}: verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let db = Db::open_with(dir.join("data"), Options::default().encryption(ring(&[2]))).unwrap();
    assert_eq!(&state_of(&db), want, "{ctx}");
    db.close().unwrap();
}

#[test]
fn key_rotate_re_seals_the_directory_and_stats_and_key_status_list_only_the_new_key() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let want = setup(d, 200);
    let before = ok(&["stats", "--data", "data", "--key-file", "k1"], d);
    assert_eq!(in_use(&before), vec![key(1).id().to_string()]);
    let report = ok(
        &[
            "key",
            "rotate",
            "--data",
            "data",
            "--new-key",
            "k2",
            "--key-file",
            "k1",
            "--json",
        ],
        d,
    );
    assert_eq!(report["key_id"], key(2).id().to_string());
    assert!(
        report["segments_rewritten"].as_u64().unwrap() >= 5,
        "{report}"
    );
    assert_eq!(in_use(&report), vec![key(2).id().to_string()]);
    check_new_key_only(d, &want, "after rotate");
    // Running it again (same files) has nothing left to do.
    let again = ok(
        &[
            "key",
            "rotate",
            "--data",
            "data",
            "--new-key",
            "k2",
            "--key-file",
            "k1",
            "--json",
        ],
        d,
    );
    assert_eq!(again["segments_rewritten"], 0);
    // Without the old key the rotation cannot start on a directory that still needs it.
    let tmp2 = tempfile::tempdir().unwrap();
    setup(tmp2.path(), 20);
    let out = amberdb(
        &["key", "rotate", "--data", "data", "--new-key", "k2"],
        tmp2.path(),
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&key(1).id().to_string()), "{err}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

#[test]
fn a_key_rotation_killed_with_sigkill_at_any_moment_finishes_when_run_again() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    std::fs::create_dir_all(&base).unwrap();
    let want = setup(&base, 1500);
    let args = [
        "key",
        "rotate",
        "--data",
        "data",
        "--new-key",
        "k2",
        "--key-file",
        "k1",
        "--json",
    ];
    // How long a whole rotation takes here, so the kills spread over it.
    let timed = tmp.path().join("timed");
    copy_dir(&base, &timed);
    let started = Instant::now();
    ok(&args, &timed);
    let full = started.elapsed();
    let seed: u64 = rand::random();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let rounds = 12;
    let mut mid_rotation = 0;
    for round in 0..rounds {
        let dir = tmp.path().join(format!("round{round}"));
        copy_dir(&base, &dir);
        let mut child = amberdb(&args, &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let delay = full.mul_f64(rng.random_range(0.0..1.1));
        std::thread::sleep(delay);
        let finished = child.try_wait().unwrap().is_some();
        child.kill().ok(); // SIGKILL
        child.wait().unwrap();
        let ctx = format!("round {round} (seed {seed}), killed after {delay:?}");
        // Nothing lost, with the keyring the rotation ran with.
        let db = Db::open_with(
            dir.join("data"),
            Options::default().encryption(ring(&[2, 1])),
        )
        .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert_eq!(state_of(&db), want, "{ctx}");
        let still_old = db.key_ids_in_use().unwrap().len() > 1;
        db.close().unwrap();
        if still_old && !finished {
            mid_rotation += 1;
        }
        // Running it again finishes it.
        ok(&args, &dir);
        check_new_key_only(&dir, &want, &ctx);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    eprintln!("{rounds} kills, {mid_rotation} left old-key files behind (rotation took {full:?})");
    assert!(
        mid_rotation > 0,
        "no kill landed during the rewrite (seed {seed})"
    );
}

//! The CLI's stable exit codes, driven through the real binary on a data directory:
//! 0 ok, 1 error, 2 usage, 3 not found, each failure with a message on stderr; and the lock
//! error a second process gets while the directory is open ("in use by pid N").

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use amberdb::log::segment::{list_segments, scan};
use amberdb::{Db, LOG_DIR};

fn amberdb() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_amberdb"));
    for var in ["AMBERDB_DATA", "AMBERDB_URL", "AMBERDB_TOKEN"] {
        c.env_remove(var);
    }
    c
}

fn run(data: &Path, args: &[&str]) -> Output {
    let (cmd, rest) = args.split_first().unwrap();
    amberdb()
        .arg(cmd)
        .arg("--data")
        .arg(data)
        .args(rest)
        .output()
        .unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

#[test]
fn put_get_list_delete_and_verify_exit_0_with_json_output() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let put = run(
        &data,
        &["put", "players", "alice", r#"{"hp": 20, "name": "Alice"}"#],
    );
    assert_eq!(code(&put), 0, "{}", stderr(&put));
    let env = json(&put);
    assert_eq!(
        (env["key"].as_str(), env["version"].as_u64()),
        (Some("alice"), Some(1))
    );
    assert_eq!(env["value"], serde_json::json!({"hp": 20, "name": "Alice"}));
    for field in [
        "schema_version",
        "created_at",
        "updated_at",
        "lsn",
        "sha256",
    ] {
        assert!(!env[field].is_null(), "envelope has {field}: {env}");
    }

    // The value from stdin, with a matching --if-version.
    let mut child = amberdb()
        .args(["put", "--data"])
        .arg(&data)
        .args(["players", "alice", "-", "--if-version", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"hp": 21}"#)
        .unwrap();
    let put2 = child.wait_with_output().unwrap();
    assert_eq!(code(&put2), 0, "{}", stderr(&put2));
    assert_eq!(json(&put2)["version"], 2);

    let get = run(&data, &["get", "players", "alice"]);
    assert_eq!(code(&get), 0, "{}", stderr(&get));
    assert_eq!(
        (
            json(&get)["value"]["hp"].as_u64(),
            json(&get)["version"].as_u64()
        ),
        (Some(21), Some(2))
    );
    let value_only = run(&data, &["get", "players", "alice", "--value-only"]);
    assert_eq!(json(&value_only), serde_json::json!({"hp": 21}));

    assert_eq!(code(&run(&data, &["put", "players", "bob", "{}"])), 0);
    let list = run(&data, &["list", "players", "--limit", "1"]);
    assert_eq!(code(&list), 0, "{}", stderr(&list));
    let page = json(&list);
    assert_eq!(page["documents"].as_array().unwrap().len(), 1);
    assert_eq!(page["next"], "alice");

    let del = run(&data, &["delete", "players", "alice"]);
    assert_eq!(code(&del), 0, "{}", stderr(&del));
    assert_eq!(json(&del)["deleted"], true);

    let verify = run(&data, &["verify"]);
    assert_eq!(code(&verify), 0, "{}{}", stdout(&verify), stderr(&verify));
    assert!(stdout(&verify).contains("ok"), "{}", stdout(&verify));
    let verify_json = run(&data, &["verify", "--json"]);
    assert_eq!(code(&verify_json), 0);
    assert_eq!(json(&verify_json)["problems"], serde_json::json!([]));
}

#[test]
fn missing_documents_exit_3_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert_eq!(code(&run(&data, &["put", "players", "alice", "{}"])), 0);
    for args in [
        &["get", "players", "nobody"][..],
        &["get", "empty", "x"],
        &["delete", "players", "nobody"],
    ] {
        let o = run(&data, args);
        assert_eq!(code(&o), 3, "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("not found"), "{args:?}: {}", stderr(&o));
        assert!(
            o.stdout.is_empty(),
            "{args:?}: nothing on stdout: {}",
            stdout(&o)
        );
    }
    // Deleting twice: the second one finds nothing.
    assert_eq!(code(&run(&data, &["delete", "players", "alice"])), 0);
    assert_eq!(code(&run(&data, &["delete", "players", "alice"])), 3);
}

#[test]
fn usage_errors_exit_2_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("bad collection name", vec!["put", "Bad Name", "k", "{}"]),
        ("bad collection name on get", vec!["get", "Players!", "k"]),
        ("empty key", vec!["get", "players", ""]),
        (
            "value is not JSON",
            vec!["put", "players", "k", "{not json"],
        ),
        ("missing key argument", vec!["get", "players"]),
        ("unknown flag", vec!["list", "players", "--no-such-flag"]),
        (
            "not a number",
            vec!["put", "players", "k", "{}", "--if-version", "abc"],
        ),
    ];
    for (what, args) in cases {
        let o = run(&data, &args);
        assert_eq!(code(&o), 2, "{what}: {args:?}: {}", stderr(&o));
        assert!(!stderr(&o).trim().is_empty(), "{what}: a message on stderr");
    }
    let o = amberdb().arg("no-such-command").output().unwrap();
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let o = amberdb().args(["get", "players", "k"]).output().unwrap();
    assert_eq!(code(&o), 2, "no --data: {}", stderr(&o));
}

#[test]
fn conflicts_and_damage_exit_1_with_the_details() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert_eq!(code(&run(&data, &["put", "players", "alice", "{}"])), 0);

    let o = run(
        &data,
        &["put", "players", "alice", "{}", "--if-version", "5"],
    );
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("players/alice") && err.contains("expected version 5, actual 1"),
        "{err}"
    );
    let o = run(&data, &["delete", "players", "alice", "--if-version", "3"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_eq!(
        json(&run(&data, &["get", "players", "alice"]))["version"],
        1,
        "nothing changed"
    );

    let o = run(&dir.path().join("no-such-dir"), &["verify"]);
    assert_eq!(code(&o), 1, "verify of a missing directory: {}", stderr(&o));

    // A flipped byte in the middle of the log: verify lists it with file and offset, exits 1;
    // commands that open the directory refuse with exit 1 and name it too.
    for i in 0..5 {
        assert_eq!(
            code(&run(&data, &["put", "players", &format!("p{i}"), "{}"])),
            0
        );
    }
    let segment = list_segments(&data.join(LOG_DIR)).unwrap().pop().unwrap().1;
    let mut bytes = std::fs::read(&segment).unwrap();
    let mut frames = vec![];
    scan(&bytes, |_, off| frames.push(off)).unwrap();
    let damaged_at = frames[2];
    bytes[damaged_at as usize + 30] ^= 0x10;
    std::fs::write(&segment, &bytes).unwrap();
    let o = run(&data, &["verify"]);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    let expected = format!("PROBLEM {}:{damaged_at}:", segment.display());
    assert!(
        stdout(&o).contains(&expected),
        "verify names {expected}: {}",
        stdout(&o)
    );
    let o = run(&data, &["verify", "--json"]);
    assert_eq!(code(&o), 1);
    assert_eq!(json(&o)["problems"][0]["offset"], damaged_at);
    let o = run(&data, &["get", "players", "alice"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&segment.display().to_string()),
        "{}",
        stderr(&o)
    );
}

#[test]
fn second_process_on_an_open_directory_gets_in_use_by_pid() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    // This test process holds the directory through the library.
    let db = Db::open(&data).unwrap();
    for args in [
        &["get", "players", "alice"][..],
        &["put", "players", "alice", "{}"],
        &["list", "players"],
    ] {
        let o = run(&data, args);
        assert_eq!(code(&o), 1, "{args:?}: {}", stderr(&o));
        let expected = format!("in use by pid {}", std::process::id());
        assert!(stderr(&o).contains(&expected), "{args:?}: {}", stderr(&o));
    }
    db.close().unwrap();
    assert_eq!(
        code(&run(&data, &["put", "players", "alice", "{}"])),
        0,
        "free again after close"
    );

    // Another amberdb process holds it.
    let mut holder = amberdb()
        .args(["bench", "write", "--data"])
        .arg(&data)
        .args(["--writers", "1", "--txns", "100000000", "--print-acks"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acks = BufReader::new(holder.stdout.take().unwrap());
    let mut first = String::new();
    acks.read_line(&mut first).unwrap();
    assert!(
        first.starts_with("acked "),
        "the holder is writing: {first:?}"
    );
    let o = run(&data, &["get", "players", "alice"]);
    holder.kill().unwrap();
    holder.wait().unwrap();
    drop(acks);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let expected = format!("in use by pid {}", holder.id());
    assert!(stderr(&o).contains(&expected), "{}", stderr(&o));
}

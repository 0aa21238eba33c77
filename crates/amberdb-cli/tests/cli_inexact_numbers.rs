//! `amberdb put` and `amberdb txn` read JSON text from an argument or stdin: a number that
//! would be stored changed (issue 9 item 7) is refused with exit 2 and a message naming its
//! JSON Pointer, as the server refuses it with 400 `inexact_number`; nothing is written.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn amberdb(data: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let (cmd, rest) = args.split_first().unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_amberdb"));
    for var in ["AMBERDB_DATA", "AMBERDB_URL", "AMBERDB_TOKEN"] {
        c.env_remove(var);
    }
    c.arg(cmd).arg("--data").arg(data).args(rest);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn put_and_txn_refuse_numbers_that_cannot_be_stored_exactly_with_exit_2_naming_the_pointer() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ok = amberdb(
        &data,
        &["put", "c", "k", r#"{"n": 1, "f": 1.5e-300}"#],
        None,
    );
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));

    let bad = amberdb(
        &data,
        &["put", "c", "k", r#"{"n": 123456789012345678901234567890}"#],
        None,
    );
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    let msg = stderr(&bad);
    assert!(
        msg.contains("/n") && msg.contains("1.2345678901234568e+29"),
        "{msg}"
    );

    let bad = amberdb(&data, &["put", "c", "k", "-"], Some(r#"{"n": [1.0e-400]}"#));
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("/n/0"), "{}", stderr(&bad));

    let tx =
        r#"{"ops": [{"op": "put", "collection": "c", "key": "k", "value": 18446744073709551616}]}"#;
    let bad = amberdb(&data, &["txn", tx], None);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("/ops/0/value"), "{}", stderr(&bad));

    let get = amberdb(&data, &["get", "c", "k", "--value-only"], None);
    assert_eq!(get.status.code(), Some(0), "{}", stderr(&get));
    let stored: serde_json::Value = serde_json::from_slice(&get.stdout).unwrap();
    assert_eq!(stored, serde_json::json!({"f": 1.5e-300, "n": 1}));
}

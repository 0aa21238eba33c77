//! `amberdb get|put|delete|list|txn --url` against a running `amberdb serve`, with tokens from
//! `amberdb token create`, and the same exit codes as with --data.

#![allow(clippy::unwrap_used)]

mod serve_support;

use serve_support::{amberdb, Served};

#[test]
fn document_commands_work_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(&dir.path().join("data"), &[], &[]);
    let url = served.url.as_str();
    let env = [("AMBERDB_URL", url)];

    let (code, out, err) = amberdb(&["put", "players", "alice/1", r#"{"hp": 20}"#], &env);
    assert_eq!(code, 0, "{err}");
    let env_json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(env_json["key"], "alice/1");
    assert_eq!(env_json["version"], 1);

    let (code, _, err) = amberdb(
        &[
            "put",
            "--url",
            url,
            "players",
            "alice/1",
            "{}",
            "--if-version",
            "7",
        ],
        &[],
    );
    assert_eq!(code, 1, "a failed If-Match is an error");
    assert!(
        err.contains("precondition_failed") && err.contains("hint:"),
        "{err}"
    );
    let (code, _, _) = amberdb(
        &[
            "put",
            "players",
            "alice/1",
            r#"{"hp": 21}"#,
            "--if-version",
            "1",
            "--durability",
            "buffered",
        ],
        &env,
    );
    assert_eq!(code, 0);
    let (code, _, _) = amberdb(&["put", "players", "bob", "1", "--if-version", "0"], &env);
    assert_eq!(code, 0);

    let (code, out, _) = amberdb(&["get", "players", "alice/1", "--value-only"], &env);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap(),
        serde_json::json!({"hp": 21})
    );
    let (code, _, err) = amberdb(&["get", "players", "nobody"], &env);
    assert_eq!(code, 3, "{err}");

    let (code, out, _) = amberdb(&["list", "players", "--limit", "1"], &env);
    assert_eq!(code, 0);
    let page: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(page["documents"][0]["key"], "alice/1");
    assert_eq!(page["next"], "alice/1");
    let (_, out, _) = amberdb(&["list", "players", "--start-after", "alice/1"], &env);
    let page: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(page["documents"][0]["key"], "bob");

    let txn = r#"{"ops": [{"op": "check", "collection": "players", "key": "bob", "version": 1}, {"op": "delete", "collection": "players", "key": "bob"}]}"#;
    let (code, out, err) = amberdb(&["txn", txn], &env);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["results"][1]["written"],
        true
    );
    let (code, _, err) = amberdb(&["txn", txn], &env);
    assert_eq!(code, 1);
    assert!(
        err.contains("conflict:") && err.contains("\"op_index\":0"),
        "{err}"
    );
    let (code, _, _) = amberdb(&["txn", "{\"ops\": [{\"op\": \"nope\"}]}"], &env);
    assert_eq!(code, 2);

    let (code, _, _) = amberdb(&["delete", "players", "alice/1"], &env);
    assert_eq!(code, 0);
    let (code, _, _) = amberdb(&["delete", "players", "alice/1"], &env);
    assert_eq!(code, 3);

    // --data and --url together is a usage error; the data directory is locked by the server.
    let data = dir.path().join("data");
    let (code, _, err) = amberdb(
        &["get", "--data", data.to_str().unwrap(), "players", "x"],
        &env,
    );
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = amberdb(
        &["get", "--data", data.to_str().unwrap(), "players", "x"],
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("--url"),
        "the lock error points at client mode: {err}"
    );
    assert!(served.terminate().success());

    // The same commands work directly on the directory once the server is gone.
    let (code, out, _) = amberdb(
        &[
            "txn",
            "--data",
            data.to_str().unwrap(),
            r#"{"ops": [{"op": "put", "collection": "c", "key": "k", "value": 1}]}"#,
        ],
        &[],
    );
    assert_eq!(code, 0);
    assert!(out.contains("\"lsn\""));
}

#[test]
fn tokens_from_token_create_authenticate_cli_clients() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = amberdb(
        &[
            "token",
            "create",
            "--name",
            "game",
            "--scope",
            "read:players*",
            "--scope",
            "write:players*",
        ],
        &[],
    );
    assert_eq!(code, 0);
    let token = out
        .lines()
        .find(|l| l.starts_with("amb_"))
        .unwrap()
        .to_owned();
    let entry = &out[out.find("[[auth.tokens]]").unwrap()..];
    let config = dir.path().join("amberdb.toml");
    std::fs::write(&config, entry).unwrap();
    let (code, _, err) = amberdb(&["token", "create", "--name", "x", "--scope", "root"], &[]);
    assert_eq!(code, 2, "{err}");

    let served = Served::start(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
        &[],
    );
    let url = served.url.as_str();
    let (code, _, err) = amberdb(&["put", "--url", url, "players", "a", "1"], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("unauthorized") && err.contains("AMBERDB_TOKEN"),
        "{err}"
    );
    let with_token = [("AMBERDB_URL", url), ("AMBERDB_TOKEN", token.as_str())];
    let (code, _, err) = amberdb(&["put", "players", "a", "1"], &with_token);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = amberdb(&["put", "chat", "a", "1"], &with_token);
    assert_eq!(code, 1);
    assert!(err.contains("forbidden"), "{err}");
    assert!(served.terminate().success());
}

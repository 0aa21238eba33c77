//! `amberdb spec get|set` (JSON and TOML files) and `amberdb migrate` (dry run, real run,
//! failures), against `--data` and through a running `amberdb serve` (`--url`), with the same
//! answers and exit codes both ways.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod serve_support;

use serde_json::{json, Value};
use serve_support::{amberdb, Served};

const V1_TOML: &str = r#"
schema_version = 1
[versions.1.schema]
type = "object"
required = ["name"]
"#;

const V2_JSON: &str = r#"{"schema_version": 2,
  "versions": {"1": {"schema": {"type": "object", "required": ["name"]}},
               "2": {"schema": {"type": "object", "required": ["name", "inventory"]}}},
  "migrations": [{"from": 1, "to": 2,
                  "up":   [{"op": "set_default", "path": "/inventory", "value": []}],
                  "down": [{"op": "remove", "path": "/inventory"}]}]}"#;

fn run(cmd: &[&str], target: &[&str], rest: &[&str]) -> (i32, String, String) {
    let mut a: Vec<&str> = cmd.to_vec();
    a.extend_from_slice(target);
    a.extend_from_slice(rest);
    amberdb(&a, &[])
}

fn check(target: &[&str], files: &std::path::Path) {
    let v1 = files.join("v1.toml");
    std::fs::write(&v1, V1_TOML).unwrap();
    let v2 = files.join("v2.json");
    std::fs::write(&v2, V2_JSON).unwrap();

    let (code, _, err) = run(&["put"], target, &["players", "p1", r#"{"name": "ann"}"#]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(&["spec", "set"], target, &["players", v1.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["schema_version"],
        1,
        "{out}"
    );
    let (code, _, err) = run(&["put"], target, &["players", "p2", r#"{"name": "bob"}"#]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&["spec", "set"], target, &["players", v2.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");

    // get as JSON, and as TOML that sets back to the same spec.
    let (code, out, err) = run(&["spec", "get"], target, &["players"]);
    assert_eq!(code, 0, "{err}");
    let spec: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(spec["schema_version"], 2, "{spec}");
    assert_eq!(
        spec["migrations"][0]["up"][0]["op"], "set_default",
        "{spec}"
    );
    let (code, toml_out, err) = run(&["spec", "get"], target, &["players", "--toml"]);
    assert_eq!(code, 0, "{err}");
    assert!(toml_out.contains("schema_version = 2"), "{toml_out}");
    let back = files.join("back.toml");
    std::fs::write(&back, &toml_out).unwrap();
    let (code, out, err) = run(
        &["spec", "set"],
        target,
        &["players", back.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    let again: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (&again["versions"], &again["migrations"]),
        (&spec["versions"], &spec["migrations"]),
        "the TOML form round-trips"
    );

    // Before any migration: p1 is stored at version 1 and read at the current version 2
    // (upgraded on read), or at version 1 as an old client asks; the same both ways.
    let (code, out, err) = run(&["get"], target, &["players", "p1"]);
    assert_eq!(code, 0, "{err}");
    let env: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            &env["value"],
            &env["schema_version"],
            &env["stored_schema_version"]
        ),
        (
            &json!({"name": "ann", "inventory": []}),
            &json!(2),
            &json!(1)
        ),
        "{env}"
    );
    let (code, out, err) = run(
        &["get"],
        target,
        &["players", "p1", "--schema-version", "1", "--value-only"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!({"name": "ann"})
    );
    let (code, _, err) = run(
        &["get"],
        target,
        &["players", "p1", "--schema-version", "9"],
    );
    assert!(
        code == 2 && err.contains("schema version 9 is not defined"),
        "an undefined version: {code} {err}"
    );

    // A dry run reports and writes nothing; the real run writes one commit.
    let (code, out, err) = run(
        &["migrate"],
        target,
        &["players", "--to", "2", "--dry-run", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let dry: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            dry["documents"].clone(),
            dry["would_change"].clone(),
            dry["lsn"].clone()
        ),
        (json!(2), json!(2), json!(null)),
        "{dry}"
    );
    assert_eq!(dry["round_trip_failure_count"], 0, "{dry}");
    let (code, out, err) = run(&["migrate"], target, &["players", "--to", "2"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("written in one commit at LSN"), "{out}");
    assert!(
        err.contains("migrating players to schema version 2"),
        "{err}"
    );
    let (code, out, err) = run(&["get"], target, &["players", "p1"]);
    assert_eq!(code, 0, "{err}");
    let env: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        env["value"],
        json!({"name": "ann", "inventory": []}),
        "{env}"
    );
    assert_eq!(env["schema_version"], 2, "{env}");

    // Changing the applied migration is refused without --force.
    let changed = files.join("changed.json");
    std::fs::write(
        &changed,
        V2_JSON.replace(r#""value": []"#, r#""value": ["torch"]"#),
    )
    .unwrap();
    let (code, _, err) = run(
        &["spec", "set"],
        target,
        &["players", changed.to_str().unwrap()],
    );
    // A refused spec exits 2 on a data directory as through a server (its 400).
    assert!(
        code == 2 && err.contains("has been applied"),
        "an applied migration changed: {code} {err}"
    );
    let (code, out, err) = run(
        &["spec", "set"],
        target,
        &["players", changed.to_str().unwrap(), "--force"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("forced"), "{out}");

    // A migration with a failing document: exit 1, the failure named, nothing written.
    let v3 = files.join("v3.json");
    std::fs::write(
        &v3,
        r#"{"schema_version": 3, "versions": {"1": {}, "2": {}, "3": {}},
            "migrations": [{"from": 1, "to": 2, "up": [{"op": "set_default", "path": "/inventory", "value": ["torch"]}], "down": [{"op": "remove", "path": "/inventory"}]},
                           {"from": 2, "to": 3, "up": [{"op": "jq", "filter": "if .name == \"bob\" then error(\"no bobs\") else . end"}]}]}"#,
    )
    .unwrap();
    let (code, _, err) = run(
        &["spec", "set"],
        target,
        &["players", v3.to_str().unwrap(), "--force"],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(&["migrate"], target, &["players", "--to", "3"]);
    assert_eq!(code, 1, "{out} {err}");
    assert!(
        out.contains("failed: p2") && out.contains("no bobs"),
        "{out}"
    );
    assert!(err.contains("nothing was written"), "{err}");
    let (_, out, _) = run(&["get"], target, &["players", "p1"]);
    let env: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(env["lsn"], again_lsn(target), "{env}");

    // Bad input: a file that does not parse, a version 0, a missing file.
    let bad = files.join("bad.toml");
    std::fs::write(&bad, "schema_version = = 2").unwrap();
    assert_eq!(
        run(
            &["spec", "set"],
            target,
            &["players", bad.to_str().unwrap()]
        )
        .0,
        2
    );
    assert_eq!(run(&["migrate"], target, &["players", "--to", "0"]).0, 2);
    assert_eq!(
        run(
            &["spec", "set"],
            target,
            &["players", "/nonexistent/spec.json"]
        )
        .0,
        2
    );
}

/// The LSN the migration to version 2 wrote p1 at (the last migration record's).
fn again_lsn(target: &[&str]) -> Value {
    let (code, out, err) = run(
        &["history"],
        target,
        &["players", "p1", "--json", "--limit", "1"],
    );
    assert_eq!(code, 0, "{err}");
    let page: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(page["versions"][0]["op"], "migration", "{page}");
    page["versions"][0]["lsn"].clone()
}

#[test]
fn spec_and_migrate_work_against_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("db");
    check(&["--data", data.to_str().unwrap()], dir.path());
}

#[test]
fn spec_and_migrate_work_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(&dir.path().join("data"), &[], &[]);
    let url = served.url.clone();
    check(&["--url", &url], dir.path());
}

#[test]
fn spec_and_migrate_help_teach_the_file_shape_and_the_rollback() {
    let (code, out, _) = amberdb(&["spec", "set", "--help"], &[]);
    assert_eq!(code, 0);
    assert!(
        out.contains("[[migrations]]") && out.contains("--force"),
        "{out}"
    );
    let (_, out, _) = amberdb(&["migrate", "--help"], &[]);
    assert!(
        out.contains("--dry-run") && out.contains("amberdb revert"),
        "{out}"
    );
}

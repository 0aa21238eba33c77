//! Reads across schema versions and batch migrations over HTTP (issue 11): documents stored
//! at an older version are returned at the collection's current one (migrated on read, not
//! persisted; `?meta=true` shows `stored_schema_version`); `Amber-Accept-Schema: N` or
//! `?schema_version=N` asks for an older version through the `down` chain, or 406
//! `no_down_migration`; listings, exports, history and as-of reads honour the same request;
//! `POST .../migrate` (dry run and real) and `GET .../migrations`.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use common::TestServer;
use serde_json::{json, Value};

const V1: &str = r#"{"schema_version": 1,
  "versions": {"1": {"schema": {"type": "object", "required": ["name"]}}}}"#;

const V2: &str = r#"{"schema_version": 2,
  "versions": {"1": {"schema": {"type": "object", "required": ["name"]}},
               "2": {"schema": {"type": "object", "required": ["name", "inventory"]}}},
  "migrations": [{"from": 1, "to": 2,
                  "up":   [{"op": "set_default", "path": "/inventory", "value": []}],
                  "down": [{"op": "remove", "path": "/inventory"}]}]}"#;

/// A server whose `players` collection holds `p1` and `p2` stored at version 1, with the
/// spec then moved to version 2 (so both are upgraded on read).
fn server_with_v1_documents() -> TestServer {
    let s = TestServer::start(|_| {});
    assert_eq!(s.put_json("/v1/collections/players/spec", V1).status, 200);
    for (k, name) in [("p1", "ann"), ("p2", "bob")] {
        let r = s.put_json(
            &format!("/v1/collections/players/docs/{k}"),
            &json!({ "name": name }).to_string(),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let r = s.put_json("/v1/collections/players/spec", V2);
    assert_eq!(r.status, 200, "{}", r.body);
    s
}

fn get_with(s: &TestServer, path: &str, headers: &[(&str, &str)]) -> common::Resp {
    s.req("GET", path, headers, None)
}

#[test]
fn a_document_stored_at_an_older_version_is_read_at_the_current_one_and_says_so() {
    let s = server_with_v1_documents();
    let r = s.get("/v1/collections/players/docs/p1");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"name": "ann", "inventory": []}));
    assert_eq!(r.header("amber-schema-version"), Some("2"));
    assert_eq!(
        r.header("etag"),
        Some("\"1\""),
        "the version is the stored one"
    );
    assert!(
        r.header("vary")
            .is_some_and(|v| v.contains("amber-accept-schema")),
        "{:?}",
        r.headers
    );

    // A 304 carries the headers the 200 would: the version a read returns.
    let nm = get_with(
        &s,
        "/v1/collections/players/docs/p1",
        &[("if-none-match", "\"1\"")],
    );
    assert_eq!(nm.status, 304);
    assert_eq!(
        nm.header("amber-schema-version"),
        Some("2"),
        "{:?}",
        nm.headers
    );

    let m = s.get("/v1/collections/players/docs/p1?meta=true").json();
    assert_eq!(m["schema_version"], 2, "{m}");
    assert_eq!(m["stored_schema_version"], 1, "{m}");
    assert_eq!(m["value"], json!({"name": "ann", "inventory": []}));

    // Not persisted: the stored document is still at version 1 (a read at 1 is as stored).
    let old = get_with(
        &s,
        "/v1/collections/players/docs/p1?meta=true",
        &[("amber-accept-schema", "1")],
    )
    .json();
    assert_eq!(old["schema_version"], 1, "{old}");
    assert_eq!(old["stored_schema_version"], 1, "{old}");
    assert_eq!(old["value"], json!({"name": "ann"}));
}

#[test]
fn an_old_reader_gets_the_down_migrated_document_by_header_or_query() {
    let s = server_with_v1_documents();
    let r = s.put_json(
        "/v1/collections/players/docs/p3",
        r#"{"name": "cy", "inventory": ["sword"]}"#,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let by_header = get_with(
        &s,
        "/v1/collections/players/docs/p3",
        &[("amber-accept-schema", "1")],
    );
    assert_eq!(by_header.status, 200, "{}", by_header.body);
    assert_eq!(by_header.json(), json!({"name": "cy"}));
    assert_eq!(by_header.header("amber-schema-version"), Some("1"));
    let by_query = s.get("/v1/collections/players/docs/p3?schema_version=1");
    assert_eq!(by_query.json(), json!({"name": "cy"}));

    // Bad requests: both forms disagreeing, a version the spec does not define, zero.
    let both = get_with(
        &s,
        "/v1/collections/players/docs/p3?schema_version=2",
        &[("amber-accept-schema", "1")],
    );
    assert_eq!(both.status, 400, "{}", both.body);
    for bad in ["9", "0", "x"] {
        let r = get_with(
            &s,
            "/v1/collections/players/docs/p3",
            &[("amber-accept-schema", bad)],
        );
        assert_eq!(r.status, 400, "Amber-Accept-Schema: {bad}: {}", r.body);
    }
    assert_eq!(
        s.get("/v1/collections/players/docs/p3?schema_version=0")
            .status,
        400
    );
}

#[test]
fn without_a_down_step_an_older_version_is_406_naming_the_missing_step() {
    let s = TestServer::start(|_| {});
    let spec = V2.replace(
        r#",
                  "down": [{"op": "remove", "path": "/inventory"}]"#,
        "",
    );
    assert!(!spec.contains("down"));
    assert_eq!(
        s.put_json("/v1/collections/players/spec", &spec).status,
        200
    );
    let r = s.put_json(
        "/v1/collections/players/docs/p1",
        r#"{"name": "ann", "inventory": []}"#,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = s.get("/v1/collections/players/docs/p1?schema_version=1");
    assert_eq!(r.status, 406, "{}", r.body);
    assert_eq!(r.code(), "no_down_migration");
    let d = &r.json()["error"]["details"];
    assert_eq!(
        d["missing"],
        json!({"from": 1, "to": 2}),
        "the migration without down: {d}"
    );
    let list = s.get("/v1/collections/players/docs?schema_version=1");
    assert_eq!(list.status, 406, "{}", list.body);
    // The current version needs no down step.
    assert_eq!(s.get("/v1/collections/players/docs/p1").status, 200);
}

#[test]
fn listing_export_history_and_as_of_honour_the_version_asked_for() {
    let s = server_with_v1_documents();
    let lsn: u64 = s
        .get("/v1/collections/players/docs/p1")
        .header("amber-lsn")
        .unwrap()
        .parse()
        .unwrap();

    let values = |docs: &Value| -> Vec<Value> {
        docs.as_array()
            .unwrap()
            .iter()
            .map(|d| d["value"].clone())
            .collect()
    };
    let list = s.get("/v1/collections/players/docs").json();
    assert_eq!(
        values(&list["documents"]),
        vec![
            json!({"name": "ann", "inventory": []}),
            json!({"name": "bob", "inventory": []})
        ]
    );
    assert_eq!(list["documents"][0]["stored_schema_version"], 1);
    let list1 = get_with(
        &s,
        "/v1/collections/players/docs",
        &[("amber-accept-schema", "1")],
    )
    .json();
    assert_eq!(
        values(&list1["documents"]),
        vec![json!({"name": "ann"}), json!({"name": "bob"})]
    );

    let export = s.get("/v1/collections/players/export");
    assert_eq!(export.status, 200);
    let lines: Vec<Value> = export
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l["schema_version"] == 2
        && l["stored_schema_version"] == 1
        && l["value"]["inventory"] == json!([])));

    let h = s.get("/v1/collections/players/docs/p1/history").json();
    let v = &h["versions"][0];
    assert_eq!(v["schema_version"], 2, "{h}");
    assert_eq!(v["stored_schema_version"], 1, "{h}");
    assert_eq!(v["value"], json!({"name": "ann", "inventory": []}), "{h}");
    let h1 = s
        .get("/v1/collections/players/docs/p1/history?schema_version=1")
        .json();
    assert_eq!(h1["versions"][0]["value"], json!({"name": "ann"}), "{h1}");

    let at = s.get(&format!("/v1/collections/players/docs/p1?as_of_lsn={lsn}"));
    assert_eq!(at.status, 200, "{}", at.body);
    assert_eq!(at.json(), json!({"name": "ann", "inventory": []}));
    assert_eq!(at.header("amber-schema-version"), Some("2"));
    let at_list = s
        .get(&format!(
            "/v1/collections/players/docs?as_of_lsn={lsn}&schema_version=1"
        ))
        .json();
    assert_eq!(values(&at_list["documents"]), vec![json!({"name": "ann"})]);
}

#[test]
fn a_dry_run_reports_and_a_real_migration_writes_one_commit_listed_in_migrations() {
    let s = server_with_v1_documents();
    let post = |body: &str| {
        s.req(
            "POST",
            "/v1/collections/players/migrate",
            &[("content-type", "application/json")],
            Some(body.as_bytes()),
        )
    };
    let dry = post(r#"{"to": 2, "dry_run": true}"#);
    assert_eq!(dry.status, 200, "{}", dry.body);
    let d = dry.json();
    assert_eq!(d["dry_run"], true, "{d}");
    assert_eq!(d["documents"], 2, "{d}");
    assert_eq!(d["by_stored_version"], json!({"1": 2}), "{d}");
    assert_eq!(d["would_change"], 2, "{d}");
    assert_eq!(d["lsn"], Value::Null, "{d}");
    assert_eq!(d["round_trip_checked"], true, "{d}");
    assert_eq!(d["round_trip_failure_count"], 0, "{d}");
    let still = s.get("/v1/collections/players/docs/p1?meta=true").json();
    assert_eq!(
        still["stored_schema_version"], 1,
        "a dry run writes nothing"
    );
    assert_eq!(
        s.get("/v1/collections/players/migrations").json()["migrations"],
        json!([])
    );

    let real = post(r#"{"to": 2}"#);
    assert_eq!(real.status, 200, "{}", real.body);
    let lsn = real.json()["lsn"].as_u64().expect("written");
    for k in ["p1", "p2"] {
        let m = s
            .get(&format!("/v1/collections/players/docs/{k}?meta=true"))
            .json();
        assert_eq!(m["stored_schema_version"], 2, "{m}");
        assert_eq!(m["lsn"], lsn, "every document in the one commit: {m}");
    }
    let list = s.get("/v1/collections/players/migrations").json();
    let applied = list["migrations"].as_array().unwrap();
    assert_eq!(applied.len(), 1, "{list}");
    // `from` is the spec's version before (already 2: the documents were upgraded lazily);
    // the stored versions and the checksum of the 1 -> 2 migration they went through are
    // recorded too.
    assert_eq!(
        (
            applied[0]["from"].clone(),
            applied[0]["to"].clone(),
            applied[0]["lsn"].clone(),
            applied[0]["rewritten"].clone(),
            applied[0]["by_stored_version"].clone()
        ),
        (json!(2), json!(2), json!(lsn), json!(2), json!({"1": 2})),
        "{list}"
    );
    assert_eq!(
        applied[0]["checksums"].as_array().map(Vec::len),
        Some(1),
        "the checksum of the migration applied: {list}"
    );
    let log = s
        .get(&format!("/v1/log?from_lsn={lsn}&to_lsn={lsn}"))
        .json();
    assert_eq!(log["commits"][0]["reason"], "migration", "{log}");
}

#[test]
fn a_migration_that_fails_on_some_documents_is_422_and_writes_nothing() {
    let s = server_with_v1_documents();
    let r = s.put_json(
        "/v1/collections/players/docs/bad",
        r#"{"name": "bad", "inventory": []}"#,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let v3 = r#"{"schema_version": 3,
      "versions": {"1": {}, "2": {}, "3": {}},
      "migrations": [{"from": 1, "to": 2,
                      "up":   [{"op": "set_default", "path": "/inventory", "value": []}],
                      "down": [{"op": "remove", "path": "/inventory"}]},
                     {"from": 2, "to": 3,
                      "up": [{"op": "jq", "filter": "if .name == \"bad\" then error(\"refused\") else . + {level: 1} end"}]}]}"#;
    let r = s.put_json("/v1/collections/players/spec", v3);
    assert_eq!(r.status, 200, "{}", r.body);
    let before = s.get("/v1/collections/players/docs/p1?meta=true").json();

    let r = s.req(
        "POST",
        "/v1/collections/players/migrate",
        &[("content-type", "application/json")],
        Some(br#"{"to": 3}"#),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.code(), "migration_failed");
    let report = &r.json()["error"]["details"]["report"];
    assert_eq!(report["failure_count"], 1, "{report}");
    assert_eq!(report["failures"][0]["key"], "bad", "{report}");
    assert_eq!(report["lsn"], Value::Null, "{report}");
    let after = s.get("/v1/collections/players/docs/p1?meta=true").json();
    assert_eq!(
        (
            before["lsn"].clone(),
            before["stored_schema_version"].clone()
        ),
        (after["lsn"].clone(), after["stored_schema_version"].clone()),
        "nothing was written"
    );
    assert_eq!(
        s.get("/v1/collections/players/migrations").json()["migrations"],
        json!([])
    );

    // Bad requests.
    for (body, ct, status) in [
        (r#"{"to": 0}"#, "application/json", 400),
        (r#"{"to": 9}"#, "application/json", 400),
        (r#"{"too": 3}"#, "application/json", 400),
        (r#"{"to": 3}"#, "text/plain", 415),
    ] {
        let r = s.req(
            "POST",
            "/v1/collections/players/migrate",
            &[("content-type", ct)],
            Some(body.as_bytes()),
        );
        assert_eq!(r.status, status, "{body} {ct}: {}", r.body);
    }
    let r = s.req(
        "POST",
        "/v1/collections/unmanaged/migrate",
        &[("content-type", "application/json")],
        Some(br#"{"to": 1}"#),
    );
    assert_eq!(r.status, 400, "a collection without versions: {}", r.body);
}

#[test]
fn the_change_feed_presents_values_at_the_version_asked_for() {
    let s = server_with_v1_documents();
    let r = s.put_json(
        "/v1/collections/players/docs/p3",
        r#"{"name": "cy", "inventory": ["sword"]}"#,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let values = |q: &str| -> Vec<(String, Value, Value, Value)> {
        let r = s.get(&format!("/v1/changes?since=0&values=true&{q}"));
        assert_eq!(r.status, 200, "{q}: {}", r.body);
        r.json()["changes"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["docs"].as_array().unwrap().clone())
            .filter(|d| d["collection"] == "players")
            .map(|d| {
                (
                    d["key"].as_str().unwrap().to_owned(),
                    d["value"].clone(),
                    d["schema_version"].clone(),
                    d["stored_schema_version"].clone(),
                )
            })
            .collect()
    };
    // As stored without the parameter.
    let stored = values("collection=players");
    assert_eq!(
        stored,
        vec![
            ("p1".into(), json!({"name": "ann"}), json!(1), Value::Null),
            ("p2".into(), json!({"name": "bob"}), json!(1), Value::Null),
            (
                "p3".into(),
                json!({"name": "cy", "inventory": ["sword"]}),
                json!(2),
                Value::Null
            ),
        ]
    );
    assert_eq!(
        values("collection=players&schema_version=1"),
        vec![
            ("p1".into(), json!({"name": "ann"}), json!(1), json!(1)),
            ("p2".into(), json!({"name": "bob"}), json!(1), json!(1)),
            ("p3".into(), json!({"name": "cy"}), json!(1), json!(2)),
        ]
    );
    assert_eq!(
        values("collection=players&schema_version=2")[0],
        (
            "p1".into(),
            json!({"name": "ann", "inventory": []}),
            json!(2),
            json!(1)
        )
    );
    for q in [
        "schema_version=1",
        "collection=play*&schema_version=1",
        "collection=players&collection=other&schema_version=1",
        "collection=players&schema_version=0",
        "collection=players&schema_version=9",
    ] {
        let r = s.get(&format!("/v1/changes?since=0&{q}"));
        assert_eq!(r.status, 400, "{q}: {}", r.body);
    }
}

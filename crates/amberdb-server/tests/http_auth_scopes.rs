//! Bearer tokens and scopes: 401 without a valid token, 403 outside the token's scopes,
//! collection globs, admin, and public probes.

#![allow(clippy::unwrap_used)]

mod common;

use common::{call, token, TestServer};

struct Tokens {
    reader: String,
    writer: String,
    admin: String,
}

fn start() -> (TestServer, Tokens) {
    let (reader, r) = token("reader", &["read:players*"]);
    let (writer, w) = token("writer", &["read:players*", "write:players*"]);
    let (admin, a) = token("ops", &["admin"]);
    let s = TestServer::start(move |c| c.tokens = vec![r, w, a]);
    (
        s,
        Tokens {
            reader,
            writer,
            admin,
        },
    )
}

#[test]
fn requests_without_a_valid_token_are_401() {
    let (s, _) = start();
    for (method, path) in [
        ("GET", "/v1/collections"),
        ("GET", "/v1/collections/players/docs/a"),
        ("POST", "/v1/txn"),
        ("GET", "/metrics"),
        ("GET", "/v1/admin/status"),
    ] {
        let r = s.req(method, path, &[], None);
        assert_eq!(r.status, 401, "{method} {path}: {}", r.body);
        assert_eq!(r.code(), "unauthorized");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"amberdb\"")
        );
    }
    let r = call(&s, "amb_0000", "GET", "/v1/collections", None);
    assert_eq!(r.status, 401);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not valid"));
    let r = s.req(
        "GET",
        "/v1/collections",
        &[("authorization", "Basic dXNlcjpwYXNz")],
        None,
    );
    assert_eq!(r.status, 401);
    // Probes and the API description stay public.
    for path in ["/healthz", "/readyz", "/openapi.json"] {
        assert_eq!(s.get(path).status, 200, "{path}");
    }
}

#[test]
fn scopes_limit_collections_and_operations() {
    let (s, t) = start();
    // writer: read+write players*, nothing else.
    assert_eq!(
        call(
            &s,
            &t.writer,
            "PUT",
            "/v1/collections/players/docs/a",
            Some("1")
        )
        .status,
        201
    );
    assert_eq!(
        call(
            &s,
            &t.writer,
            "PUT",
            "/v1/collections/players.eu/docs/a",
            Some("1")
        )
        .status,
        201
    );
    let r = call(
        &s,
        &t.writer,
        "PUT",
        "/v1/collections/chat/docs/a",
        Some("1"),
    );
    assert_eq!(r.status, 403);
    assert_eq!(r.code(), "forbidden");
    assert_eq!(
        call(
            &s,
            &t.admin,
            "PUT",
            "/v1/collections/chat/docs/a",
            Some("1")
        )
        .status,
        201
    );

    // reader: GET only, players* only.
    assert_eq!(
        call(&s, &t.reader, "GET", "/v1/collections/players/docs/a", None).status,
        200
    );
    assert_eq!(
        call(&s, &t.reader, "GET", "/v1/collections/players/docs", None).status,
        200
    );
    assert_eq!(
        call(&s, &t.reader, "GET", "/v1/collections/players/export", None).status,
        200
    );
    assert_eq!(
        call(&s, &t.reader, "GET", "/v1/collections/chat/docs/a", None).status,
        403
    );
    assert_eq!(
        call(&s, &t.reader, "GET", "/v1/collections/chat/export", None).status,
        403
    );
    assert_eq!(
        call(&s, &t.reader, "GET", "/v1/collections/chat", None).status,
        403
    );
    assert_eq!(
        call(
            &s,
            &t.reader,
            "PUT",
            "/v1/collections/players/docs/a",
            Some("2")
        )
        .status,
        403
    );
    assert_eq!(
        call(
            &s,
            &t.reader,
            "DELETE",
            "/v1/collections/players/docs/a",
            None
        )
        .status,
        403
    );
    let patch = s.req(
        "PATCH",
        "/v1/collections/players/docs/a",
        &[
            ("authorization", &format!("Bearer {}", t.reader)),
            ("content-type", "application/merge-patch+json"),
        ],
        Some(b"{}"),
    );
    assert_eq!(patch.status, 403);
    // Listing collections shows only readable ones.
    let names: Vec<String> = call(&s, &t.reader, "GET", "/v1/collections", None).json()
        ["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["players", "players.eu"]);

    // Transactions need write on every written collection and read on every checked one.
    let txn = r#"{"ops": [{"op": "put", "collection": "players", "key": "b", "value": 1}, {"op": "put", "collection": "chat", "key": "b", "value": 1}]}"#;
    let r = call(&s, &t.writer, "POST", "/v1/txn", Some(txn));
    assert_eq!(r.status, 403);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("ops[1]"),
        "{}",
        r.body
    );
    assert_eq!(
        call(&s, &t.writer, "GET", "/v1/collections/players/docs/b", None).status,
        404
    );
    let check = r#"{"ops": [{"op": "check", "collection": "players", "key": "a", "version": 1}]}"#;
    assert_eq!(
        call(&s, &t.reader, "POST", "/v1/txn", Some(check)).status,
        200
    );

    // Admin endpoints and metrics need admin.
    for (m, p) in [
        ("GET", "/v1/admin/status"),
        ("POST", "/v1/admin/checkpoint"),
        ("POST", "/v1/admin/verify"),
        ("GET", "/metrics"),
    ] {
        assert_eq!(call(&s, &t.writer, m, p, None).status, 403, "{m} {p}");
        assert_eq!(call(&s, &t.admin, m, p, None).status, 200, "{m} {p}");
    }
}

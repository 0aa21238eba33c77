//! Issue 12: the server's `encryption.key_file` and `AMBERDB_ENCRYPTION_KEY`.
#![allow(clippy::unwrap_used)]

mod common;

use amberdb_server::Config;
use common::{any_file_contains, TestServer};

fn key_bytes() -> Vec<u8> {
    (0..32u8).map(|i| i.wrapping_mul(91) ^ 0x33).collect()
}

fn load(env: Vec<(String, String)>, flags: &[(&str, &str)]) -> Result<Config, String> {
    let flags: Vec<(String, String)> = flags
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::load(None, env, &flags).map_err(|e| e.to_string())
}

#[test]
fn the_key_comes_from_encryption_key_file_or_the_environment_and_a_bad_one_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("key");
    std::fs::write(&file, key_bytes()).unwrap();
    let id = amberdb::crypto::Key::from_bytes(key_bytes().try_into().unwrap()).id();
    let c = load(vec![], &[("encryption.key_file", file.to_str().unwrap())]).unwrap();
    assert_eq!(c.engine_options().encryption.unwrap().key_ids(), vec![id]);
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(key_bytes());
    let env = vec![("AMBERDB_ENCRYPTION_KEY".to_string(), b64)];
    let c = load(env, &[]).unwrap();
    assert_eq!(c.encryption.unwrap().key_ids(), vec![id]);
    assert!(load(vec![], &[]).unwrap().encryption.is_none());
    std::fs::write(&file, b"hunter2\n").unwrap();
    let e = load(vec![], &[("encryption.key_file", file.to_str().unwrap())]).unwrap_err();
    assert!(e.contains("encryption.key_file"), "{e}");
    let env = vec![(
        "AMBERDB_ENCRYPTION_KEY".to_string(),
        "not base64!".to_string(),
    )];
    let e = load(env, &[]).unwrap_err();
    assert!(e.contains("AMBERDB_ENCRYPTION_KEY"), "{e}");
}

#[test]
fn a_server_with_a_key_file_writes_only_ciphertext_and_without_it_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("key");
    std::fs::write(&file, key_bytes()).unwrap();
    let data = tmp.path().join("data");
    let set_key = |c: &mut Config| {
        *c = Config::load(
            None,
            vec![],
            &[
                ("listen".into(), "127.0.0.1:0".into()),
                ("data".into(), data.display().to_string()),
                ("encryption.key_file".into(), file.display().to_string()),
            ],
        )
        .unwrap();
    };
    let s = TestServer::start_in(&data, set_key);
    let r = s.put_json(
        "/v1/collections/players/docs/alice",
        r#"{"email":"MARKER-server-secret"}"#,
    );
    assert!(r.status < 300, "{}", r.body);
    assert!(s
        .get("/v1/collections/players/docs/alice")
        .body
        .contains("MARKER-server-secret"));
    s.stop().unwrap();
    assert!(!any_file_contains(&data, "MARKER-server-secret"));
    // Without the key: the start fails naming the key id, and nothing is touched.
    let config = common::test_config(&data);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = match rt.block_on(amberdb_server::Server::bind(config)) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("started without the key"),
    };
    assert!(err.contains("not damage"), "{err}");
}

#[test]
fn backups_through_the_admin_api_are_sealed_and_verify_reads_them_with_the_servers_key() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("key");
    std::fs::write(&file, key_bytes()).unwrap();
    let (data, repo) = (tmp.path().join("data"), tmp.path().join("repo"));
    let s = TestServer::start_in(&data, |c: &mut Config| {
        *c = Config::load(
            None,
            vec![],
            &[
                ("listen".into(), "127.0.0.1:0".into()),
                ("data".into(), data.display().to_string()),
                ("backup.repo".into(), repo.display().to_string()),
                ("encryption.key_file".into(), file.display().to_string()),
            ],
        )
        .unwrap();
    });
    for i in 0..5 {
        let r = s.put_json(
            &format!("/v1/collections/players/docs/p{i}"),
            r#"{"email":"MARKER-admin-backup"}"#,
        );
        assert!(r.status < 300, "{}", r.body);
    }
    let r = s.req("POST", "/v1/admin/backups", &[], None);
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let v = s.req(
        "POST",
        &format!("/v1/admin/backups/{id}/verify?read_data=true"),
        &[],
        None,
    );
    assert_eq!(v.status, 200, "{}", v.body);
    assert_eq!(v.json()["clean"], true, "{}", v.body);
    // 5 in the snapshot and 5 in the archived segment: every one opened and hash-checked.
    assert_eq!(v.json()["documents_checked"], 10, "{}", v.body);
    s.stop().unwrap();
    assert!(!any_file_contains(&repo, "MARKER-admin-backup"));
}

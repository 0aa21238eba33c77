//! Issue 12: `--key-file` (and `AMBERDB_ENCRYPTION_KEY`) on the commands that open a data
//! directory or a repository, through the real binary.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str], cwd: &Path, env_key: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_amberdb"));
    c.args(args)
        .current_dir(cwd)
        .env_remove("AMBERDB_ENCRYPTION_KEY");
    if let Some(k) = env_key {
        c.env("AMBERDB_ENCRYPTION_KEY", k);
    }
    c.output().unwrap()
}

fn ok(args: &[&str], cwd: &Path) -> String {
    let out = run(args, cwd, None);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn any_file_contains(root: &Path, needle: &str) -> bool {
    std::fs::read_dir(root).unwrap().any(|e| {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            any_file_contains(&e.path(), needle)
        } else {
            let mut b = std::fs::read(e.path()).unwrap();
            if e.path().extension().is_some_and(|x| x == "zst") {
                b.extend(zstd::decode_all(&b[..]).unwrap_or_default());
            }
            contains(&b, needle)
        }
    })
}

#[test]
fn every_command_takes_key_file_and_without_it_refuses_naming_the_key_id() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let key: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37) ^ 0x9c).collect();
    std::fs::write(d.join("k"), &key).unwrap();
    let secret = "MARKER-cli-secret";
    fn with<'a>(args: &[&'a str]) -> Vec<&'a str> {
        [args, &["--key-file", "k"][..]].concat()
    }
    ok(
        &with(&[
            "put",
            "--data",
            "db",
            "c",
            "a",
            &format!(r#"{{"s": "{secret}"}}"#),
        ]),
        d,
    );
    ok(
        &with(&["backup", "create", "--data", "db", "--repo", "repo"]),
        d,
    );
    ok(&with(&["put", "--data", "db", "c", "b", r#"{"v": 2}"#]), d);
    ok(&with(&["checkpoint", "--data", "db"]), d);
    assert!(ok(&with(&["get", "--data", "db", "c", "a"]), d).contains(secret));
    ok(&with(&["stats", "--data", "db"]), d);
    for src in [["--data", "db"], ["--repo", "repo"]] {
        let log = ok(&with(&[&["log", "--json"][..], &src[..]].concat()), d);
        assert!(
            log.contains(r#""ops":[{"collection":"c","key":"#),
            "{src:?}: {log}"
        );
    }
    ok(&with(&["verify", "--data", "db"]), d);
    let v = ok(
        &with(&["backup", "verify", "--repo", "repo", "--read-data"]),
        d,
    );
    assert!(v.contains("encryption key ids needed"), "{v}");
    ok(
        &with(&[
            "restore", "--repo", "repo", "--latest", "--into", "restored",
        ]),
        d,
    );
    assert!(ok(&with(&["get", "--data", "restored", "c", "a"]), d).contains(secret));
    for dir in ["db", "repo", "restored"] {
        assert!(
            !any_file_contains(&d.join(dir), secret),
            "plaintext in {dir}"
        );
    }

    // Without the key: a refusal naming the key id, not damage.
    let id = amberdb::crypto::Key::from_bytes(key.clone().try_into().unwrap())
        .id()
        .to_string();
    for args in [
        &["get", "--data", "db", "c", "a"][..],
        &["stats", "--data", "db"],
        &["log", "--data", "db"],
        &["restore", "--repo", "repo", "--latest", "--into", "r2"],
    ] {
        let out = run(args, d, None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded without the key");
        assert!(
            err.contains(&id) && err.contains("not damage"),
            "{args:?}: {err}"
        );
    }
    assert!(!d.join("r2").exists());
    // Verify without the key checks structure and says so.
    let out = run(&["verify", "--data", "db"], d, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("contents not"));

    // The environment variable holds the base64 key.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&key);
    let out = run(&["get", "--data", "db", "c", "b"], d, Some(&b64));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn key_id_and_key_status_name_the_keys_a_directory_and_a_repository_need() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let old: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(13) ^ 0xe1).collect();
    let new: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(29) ^ 0x17).collect();
    std::fs::write(d.join("old"), &old).unwrap();
    std::fs::write(d.join("new"), &new).unwrap();
    let id = |k: &[u8]| {
        amberdb::crypto::Key::from_bytes(k.try_into().unwrap())
            .id()
            .to_string()
    };
    assert_eq!(ok(&["key", "id", "--key-file", "old"], d).trim(), id(&old));
    ok(
        &["put", "--data", "db", "c", "a", "1", "--key-file", "old"],
        d,
    );
    ok(
        &[
            "backup",
            "create",
            "--data",
            "db",
            "--repo",
            "r",
            "--key-file",
            "old",
        ],
        d,
    );
    let status = |d: &Path| -> serde_json::Value {
        serde_json::from_str(&ok(&["key", "status", "--data", "db", "--repo", "r"], d)).unwrap()
    };
    let s = status(d);
    let data_ids: Vec<&str> = s["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key_id"].as_str().unwrap())
        .collect();
    assert_eq!(data_ids, vec![id(&old).as_str()]);
    assert_eq!(s["repo_backups"], serde_json::json!([id(&old)]));
    // The new key first: new files are sealed with it, the old one is still needed.
    let both = ["--key-file", "new", "--key-file", "old"];
    ok(
        &[&["put", "--data", "db", "c", "b", "2"][..], &both[..]].concat(),
        d,
    );
    let s = status(d);
    let mut data_ids: Vec<String> = s["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key_id"].as_str().unwrap().to_owned())
        .collect();
    data_ids.sort();
    let mut want = vec![id(&old), id(&new)];
    want.sort();
    assert_eq!(data_ids, want);
}

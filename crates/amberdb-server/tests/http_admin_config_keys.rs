//! Engine options set through the server's configuration reach the engine, seen by what it
//! does: `engine.tombstone_retention_s` decides whether a deleted key's tombstone survives
//! the next commit, `engine.group_access` decides the modes of the files the server creates.
//!
//! One test in its own binary: the file mode is process-wide and only ever turned on, so the
//! owner-only default is checked first, then group access.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use amberdb_server::Config;
use common::TestServer;

fn config(data: &Path, extra: &[(&str, &str)]) -> Config {
    let mut flags = vec![
        ("listen".to_string(), "127.0.0.1:0".to_string()),
        ("data".to_string(), data.display().to_string()),
    ];
    flags.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::load(None, vec![], &flags).unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Writes, deletes and writes again through the server, stops it, and returns the modes of
/// the data directory and of its newest log segment, and the tombstones the database kept.
fn run(data: &Path, config: Config) -> (u32, u32, u64) {
    let s = TestServer::start_in(data, move |c| *c = config);
    let doc = "/v1/collections/players/docs/";
    assert_eq!(s.put_json(&format!("{doc}gone"), "{}").status, 201);
    assert_eq!(
        s.req("DELETE", &format!("{doc}gone"), &[], None).status,
        200
    );
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert_eq!(s.put_json(&format!("{doc}kept"), "{}").status, 201);
    s.stop().unwrap();
    let segment = std::fs::read_dir(data.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .max()
        .unwrap();
    let modes = (mode(data), mode(&segment));
    let db = amberdb::Db::open_with(
        data,
        amberdb::Options {
            create_if_missing: false,
            checkpoint_on_close: false,
            ..Default::default()
        },
    )
    .unwrap();
    let tombstones = db
        .stats()
        .collections
        .iter()
        .find(|c| c.name == "players")
        .map_or(0, |c| c.tombstones);
    db.close().unwrap();
    (modes.0, modes.1, tombstones)
}

#[test]
fn tombstone_retention_and_group_access_set_in_the_config_reach_the_engine() {
    let tmp = tempfile::tempdir().unwrap();
    let defaults = tmp.path().join("defaults");
    let c = config(&defaults, &[]);
    assert_eq!(c.tombstone_retention, std::time::Duration::from_secs(3600));
    assert!(!c.group_access);
    assert_eq!(run(&defaults, c), (0o700, 0o600, 1));

    let set = tmp.path().join("set");
    let c = config(
        &set,
        &[
            ("engine.tombstone_retention_s", "0"),
            // Tombstones live at least as long as the history window (72 h by default).
            ("history.retention", "0"),
            ("engine.group_access", "true"),
        ],
    );
    // The delete's tombstone is pruned by the next commit; files are group-readable.
    assert_eq!(run(&set, c), (0o750, 0o640, 0));
}

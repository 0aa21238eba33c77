//! `stream-bench` at a small scale, in the default test run: its comparison table is
//! produced, and an open stream of a million entries stays within the memory bound the bench
//! checks (`--rss-bound-bytes`, 64 bytes per entry; docs/BENCHMARKS.md "Streams"). The bench
//! exits 1 over the bound, so a change that kept values (or a larger index) in memory fails
//! here.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn stream_bench_compares_with_sqlite_and_a_million_entries_stay_within_the_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stream-bench"))
        .args([
            "--single",
            "20",
            "--batched",
            "5000",
            "--rss-entries",
            "1000000",
        ])
        .arg("--dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for row in [
        "| append, 1 entry per durable commit |",
        "| append, 1000 entries per durable commit |",
        "| read every entry, pages of 10,000 |",
    ] {
        assert!(stdout.contains(row), "missing {row:?} in:\n{stdout}");
    }
    assert!(
        stdout.contains("open stream of 1000000 entries"),
        "{stdout}"
    );
}

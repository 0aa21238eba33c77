//! Runs the whole harness (every workload, every engine, the child processes for loading,
//! SIGKILL and reopen) at tiny sizes, so the bench crate cannot rot. Nothing here is timed:
//! it checks that every table is there and complete, never what the numbers are.

use amberdb_bench::{run, Config, Scale};

#[test]
fn tiny_run_produces_every_table() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = Config::new(Scale::Tiny).expect("config");
    cfg.dir = dir.path().to_owned();
    cfg.exe = env!("CARGO_BIN_EXE_amberdb-bench").into();
    cfg.command = "test".into();
    let report = run(&cfg).expect("tiny run");

    let numbers: Vec<u8> = report.workloads.iter().map(|w| w.number).collect();
    assert_eq!(numbers, (1..=8).collect::<Vec<_>>());
    for w in &report.workloads {
        assert!(
            !w.metrics.is_empty(),
            "workload {} has no metrics",
            w.number
        );
        for m in &w.metrics {
            let amber = m
                .row("AmberDB")
                .unwrap_or_else(|| panic!("{}: no AmberDB row", m.name));
            assert!(!amber.samples.is_empty());
            if m.name != "commits per fsync" {
                for engine in ["SQLite", "redb"] {
                    assert!(
                        m.row(engine).is_some(),
                        "{} / {}: no {engine} row",
                        w.id,
                        m.name
                    );
                }
            }
            for r in &m.rows {
                assert!(
                    r.samples.iter().all(|v| v.is_finite() && *v >= 0.0),
                    "{}: {r:?}",
                    m.name
                );
            }
        }
    }
    let md = report.markdown();
    for needle in [
        "raw disk: append + fdatasync",
        "reopen after SIGKILL",
        "peak RSS",
        "Targets",
    ] {
        assert!(md.contains(needle), "markdown lacks {needle:?}");
    }
    let json = serde_json::to_string(&report).expect("json");
    let back: amberdb_bench::Report = serde_json::from_str(&json).expect("round trip");
    assert_eq!(back.workloads.len(), 8);
    // Everything the run created lives under its own temporary directory, removed at the end.
    assert_eq!(std::fs::read_dir(dir.path()).expect("read dir").count(), 0);
}

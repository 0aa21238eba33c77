//! Fault injection: writes and fsyncs of the commit log fail in the middle of a stream of
//! commits from several threads, as a failing disk or a full one makes them fail: an I/O error,
//! a torn write that stores only part of the buffer, a failed fsync, and ENOSPC (once, or on
//! every write from then on). Countdowns land the fault on commit frames, segment headers,
//! seals and directory syncs alike.
//!
//! Every time: the database is poisoned with `Error::Poisoned` naming the cause, every later
//! write (and sync and checkpoint) fails, reads keep working and still show everything that
//! was acknowledged; after a reopen without the injector nothing acknowledged is lost, no
//! transaction is partly visible, `verify` is clean, and writes work again.
//!
//! A failing checkpoint write is different: the log still holds every commit, so it fails
//! the checkpoint only, leaves no temp file behind, and does not poison the database.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amberdb::io::{Fault, FaultInjector, Faults, IoOp};
use amberdb::{verify_dir, Db, Durability, Error, Options, Transaction, CHECKPOINT_DIR, LOG_DIR};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

const ENOSPC: i32 = 28;
const COLL: &str = "saves";
const WRITERS: usize = 4;
const KEYS_PER_WRITER: u64 = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A write fails without touching the file.
    WriteFails,
    /// A write stores part of its buffer, then fails.
    TornWrite,
    /// An fsync (of a segment or of the log directory) fails.
    FsyncFails,
    /// The disk is full: this write and every later one fail with ENOSPC.
    DiskFull,
    /// The disk fills up in the middle of a write: part of it lands, then ENOSPC, for good.
    DiskFullMidWrite,
}

impl Kind {
    fn error(self) -> io::Error {
        match self {
            Kind::WriteFails => io::Error::other("injected write failure"),
            Kind::TornWrite => io::Error::other("injected torn write"),
            Kind::FsyncFails => io::Error::other("injected fsync failure"),
            Kind::DiskFull | Kind::DiskFullMidWrite => io::Error::from_raw_os_error(ENOSPC),
        }
    }

    /// Text the poison cause must contain.
    fn cause_text(self) -> String {
        self.error().to_string()
    }
}

/// Fails the `countdown`-th eligible operation under `scope` once armed (and every later one
/// for a full disk).
struct Injector {
    scope: PathBuf,
    kind: Kind,
    armed: AtomicBool,
    countdown: AtomicI64,
    fired: AtomicU64,
    fired_on: Mutex<Vec<String>>,
    torn_seed: u64,
}

impl FaultInjector for Injector {
    fn on_io(&self, op: IoOp<'_>) -> Fault {
        let (path, len) = match op {
            IoOp::Write { path, len, .. } => (path, Some(len)),
            IoOp::Sync { path } | IoOp::SyncDir { path } => (path, None),
            _ => return Fault::Proceed,
        };
        if !self.armed.load(Ordering::SeqCst) || !path.starts_with(&self.scope) {
            return Fault::Proceed;
        }
        // The commit path only: the checkpointer's cleanup also fsyncs the log directory,
        // and a fault there fails that checkpoint without poisoning anything (the tests of
        // checkpoint faults below cover it). Counting those operations would land some
        // countdowns off the commit path, depending on when checkpoints happen to run.
        if std::thread::current().name() == Some("amberdb-checkpointer") {
            return Fault::Proceed;
        }
        let eligible = match self.kind {
            Kind::FsyncFails => len.is_none(),
            _ => len.is_some(),
        };
        if !eligible || self.countdown.fetch_sub(1, Ordering::SeqCst) > 0 {
            return Fault::Proceed;
        }
        let sticky = matches!(self.kind, Kind::DiskFull | Kind::DiskFullMidWrite);
        if self.fired.fetch_add(1, Ordering::SeqCst) > 0 && !sticky {
            return Fault::Proceed;
        }
        self.fired_on.lock().unwrap().push(format!("{op}"));
        match (self.kind, len) {
            (Kind::TornWrite | Kind::DiskFullMidWrite, Some(len)) => Fault::Partial {
                written: (self.torn_seed as usize) % len.max(1),
                error: self.kind.error(),
            },
            _ => Fault::Fail(self.kind.error()),
        }
    }
}

/// The acknowledged transactions: base key -> (version, seq) of the latest ack.
type Acks = BTreeMap<String, (u64, u64)>;

/// Every acknowledged transaction is present (at its version or a later one), and every
/// transaction is whole: the three documents written together have the same version and seq.
fn check_acked_and_whole(db: &Db, acks: &Acks, ctx: &str) {
    for (key, (version, seq)) in acks {
        let doc = db
            .get(COLL, key)
            .unwrap_or_else(|| panic!("{ctx}: acknowledged {key} v{version} is missing"));
        assert!(
            doc.meta.version >= *version,
            "{ctx}: {key} is at v{} but v{version} was acknowledged",
            doc.meta.version
        );
        if doc.meta.version == *version {
            assert_eq!(
                doc.json().unwrap()["seq"],
                json!(seq),
                "{ctx}: {key} v{version}"
            );
        }
    }
    let view = db.view();
    let page = view.list(COLL, &Default::default());
    assert_eq!(page.docs.len() % 3, 0, "{ctx}: documents come in threes");
    for d in page.docs.iter().filter(|d| !d.key.contains("-m")) {
        for m in ["m1", "m2"] {
            let other = view
                .get(COLL, &format!("{}-{m}", d.key))
                .unwrap_or_else(|| panic!("{ctx}: {}-{m} missing", d.key));
            assert_eq!(
                other.meta.version, d.meta.version,
                "{ctx}: {} is partly visible",
                d.key
            );
            assert_eq!(
                other.json().unwrap()["seq"],
                d.json().unwrap()["seq"],
                "{ctx}: {} is partly visible",
                d.key
            );
        }
    }
}

struct Outcome {
    acks: Acks,
    errors: Vec<Error>,
}

/// Writers commit three-document transactions until one fails; each then checks that a
/// later commit fails too.
fn write_until_failure(db: &Db, seq_base: u64) -> Outcome {
    let acks = Arc::new(Mutex::new(Acks::new()));
    let errors = Arc::new(Mutex::new(vec![]));
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let (acks, errors) = (acks.clone(), errors.clone());
            s.spawn(move || {
                for i in 0..5_000u64 {
                    let key = format!("w{w}-{}", i % KEYS_PER_WRITER);
                    let seq = seq_base + i;
                    let value = json!({"w": w, "seq": seq, "pad": "p".repeat((i % 50) as usize)});
                    let mut tx = Transaction::new();
                    tx.put(COLL, &key, value.clone());
                    tx.put(COLL, &format!("{key}-m1"), value.clone());
                    tx.put(COLL, &format!("{key}-m2"), value);
                    // One writer debounces: buffered acks must survive a process that lives on.
                    if w == WRITERS - 1 {
                        tx.durability(Durability::Buffered {
                            max_delay: Duration::from_millis(2),
                        });
                    }
                    match db.commit(&tx) {
                        Ok(c) => {
                            acks.lock()
                                .unwrap()
                                .insert(key, (c.results[0].version, seq));
                        }
                        Err(e) => {
                            let mut errors = errors.lock().unwrap();
                            errors.push(e);
                            errors.push(
                                db.commit(&tx)
                                    .expect_err("a write after the failure must fail"),
                            );
                            return;
                        }
                    }
                }
            });
        }
    });
    let acks = Arc::try_unwrap(acks).unwrap().into_inner().unwrap();
    let errors = Arc::try_unwrap(errors).unwrap().into_inner().unwrap();
    Outcome { acks, errors }
}

fn options(faults: Faults, segment_size: u64) -> Options {
    Options {
        faults,
        segment_size,
        checkpoint_on_close: false,
        checkpoint_log_bytes: 64 << 10,
        ..Options::default()
    }
}

fn scenario(kind: Kind, countdown: i64, segment_size: u64, torn_seed: u64) {
    let ctx = format!("{kind:?} after {countdown} ops, segments of {segment_size} bytes");
    let dir = tempfile::tempdir().unwrap();
    let injector = Arc::new(Injector {
        scope: dir.path().join(LOG_DIR),
        kind,
        armed: AtomicBool::new(false),
        countdown: AtomicI64::new(countdown),
        fired: AtomicU64::new(0),
        fired_on: Mutex::new(vec![]),
        torn_seed,
    });
    let db = Db::open_with(
        dir.path(),
        options(Faults::new(injector.clone()), segment_size),
    )
    .unwrap();
    // Acknowledged before the disk goes bad.
    let warmup = write_until_failure_n(&db, 5);
    injector.armed.store(true, Ordering::SeqCst);
    let mut out = write_until_failure(&db, 1_000_000);
    for (k, v) in warmup {
        out.acks.entry(k).or_insert(v);
    }
    let fired_on = injector.fired_on.lock().unwrap().clone();
    assert!(!fired_on.is_empty(), "{ctx}: the fault never fired");
    let ctx = format!("{ctx}, first fault on {}", fired_on[0]);

    // Poisoned, with the cause, for everyone.
    let cause = db
        .poisoned()
        .unwrap_or_else(|| panic!("{ctx}: not poisoned"));
    assert!(
        cause.contains(&kind.cause_text()),
        "{ctx}: cause {cause:?} does not mention the failure"
    );
    assert_eq!(
        out.errors.len(),
        2 * WRITERS,
        "{ctx}: every writer saw the failure: {:?}",
        out.errors
    );
    for (i, e) in out.errors.iter().enumerate() {
        match e {
            Error::Poisoned { cause } => {
                assert!(cause.contains(&kind.cause_text()), "{ctx}: {cause}")
            }
            // Only a writer's first error (its commit was in the failed batch) may say the
            // outcome is unknown; its retry must be refused as poisoned.
            Error::CommitOutcomeUnknown { cause, .. } if i % 2 == 0 => {
                assert!(cause.contains(&kind.cause_text()), "{ctx}: {cause}");
                assert!(e.to_string().contains("re-read"), "{ctx}: {e}");
            }
            other => panic!("{ctx}: expected Error::Poisoned, got {other}"),
        }
        assert!(
            e.to_string().contains("reopen"),
            "{ctx}: the message says what to do: {e}"
        );
    }
    assert!(
        matches!(
            db.put("other", "later", json!(1)),
            Err(Error::Poisoned { .. })
        ),
        "{ctx}: later writes fail"
    );
    assert!(
        matches!(db.sync(), Err(Error::Poisoned { .. })),
        "{ctx}: sync fails"
    );
    assert!(
        matches!(db.checkpoint(), Err(Error::Poisoned { .. })),
        "{ctx}: checkpoint fails"
    );
    assert_eq!(db.stats().poisoned.as_deref(), Some(cause.as_str()));
    // Reads keep working, and show every acknowledged transaction, whole.
    check_acked_and_whole(&db, &out.acks, &format!("{ctx}, poisoned reads"));
    let published = db.view().lsn();
    let _ = db.close();

    // Nothing acknowledged is lost after a reopen without the injector.
    let report = verify_dir(dir.path()).unwrap();
    assert!(
        report.is_clean(),
        "{ctx}: verify after the failure: {:?}",
        report.problems
    );
    let db = Db::open_with(dir.path(), options(Faults::default(), segment_size))
        .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
    assert!(
        db.view().lsn() >= published,
        "{ctx}: reopened at {} < published {published}",
        db.view().lsn()
    );
    check_acked_and_whole(&db, &out.acks, &format!("{ctx}, after reopen"));
    assert!(db.verify().unwrap().is_clean(), "{ctx}");
    let c = db
        .put("other", "after-reopen", json!({"ok": true}))
        .unwrap_or_else(|e| panic!("{ctx}: {e}"));
    db.close().unwrap();
    let db = Db::open_with(dir.path(), options(Faults::default(), segment_size)).unwrap();
    assert_eq!(
        db.get("other", "after-reopen").map(|d| d.meta.lsn),
        Some(c.lsn),
        "{ctx}"
    );
    check_acked_and_whole(&db, &out.acks, &format!("{ctx}, second reopen"));
    db.close().unwrap();
}

/// `n` transactions per writer with no fault armed.
fn write_until_failure_n(db: &Db, n: u64) -> Acks {
    let mut acks = Acks::new();
    for w in 0..WRITERS {
        for i in 0..n {
            let key = format!("w{w}-{}", i % KEYS_PER_WRITER);
            let value = json!({"w": w, "seq": i});
            let mut tx = Transaction::new();
            tx.put(COLL, &key, value.clone());
            tx.put(COLL, &format!("{key}-m1"), value.clone());
            tx.put(COLL, &format!("{key}-m2"), value);
            let c = db.commit(&tx).unwrap();
            acks.insert(key, (c.results[0].version, i));
        }
    }
    acks
}

fn run_kind(kind: Kind, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    for round in 0..8 {
        // Early faults hit the first frames or the first roll; late ones land mid-stream.
        let countdown = match round {
            0 => 0,
            1 => 1,
            _ => rng.random_range(2..400),
        };
        let segment_size = [400, 2048, 64 << 20][round % 3];
        scenario(kind, countdown, segment_size, rng.random());
    }
}

#[test]
fn failed_log_writes_poison_the_database_and_lose_nothing_acknowledged() {
    run_kind(Kind::WriteFails, 1);
}

#[test]
fn torn_log_writes_poison_the_database_and_lose_nothing_acknowledged() {
    run_kind(Kind::TornWrite, 2);
}

#[test]
fn failed_fsyncs_poison_the_database_and_lose_nothing_acknowledged() {
    run_kind(Kind::FsyncFails, 3);
}

#[test]
fn full_disk_poisons_the_database_and_loses_nothing_acknowledged() {
    run_kind(Kind::DiskFull, 4);
}

#[test]
fn disk_filling_up_mid_write_poisons_the_database_and_loses_nothing_acknowledged() {
    run_kind(Kind::DiskFullMidWrite, 5);
}

/// Fails every write and sync of checkpoint files.
struct FullCheckpointDir(PathBuf, AtomicBool);

impl FaultInjector for FullCheckpointDir {
    fn on_io(&self, op: IoOp<'_>) -> Fault {
        let path: &Path = match op {
            IoOp::Write { path, .. } | IoOp::Sync { path } | IoOp::SyncDir { path } => path,
            _ => return Fault::Proceed,
        };
        if self.1.load(Ordering::SeqCst) && path.starts_with(&self.0) {
            return Fault::Partial {
                written: 10,
                error: io::Error::from_raw_os_error(ENOSPC),
            };
        }
        Fault::Proceed
    }
}

#[test]
fn full_disk_during_a_checkpoint_fails_only_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt_dir = dir.path().join(CHECKPOINT_DIR);
    let injector = Arc::new(FullCheckpointDir(ckpt_dir.clone(), AtomicBool::new(false)));
    let opts = Options {
        checkpoint_on_close: true,
        ..options(Faults::new(injector.clone()), 2048)
    };
    let db = Db::open_with(dir.path(), opts).unwrap();
    let mut acks = write_until_failure_n(&db, 10);
    db.checkpoint().unwrap();
    injector.1.store(true, Ordering::SeqCst);
    acks.extend(write_until_failure_n(&db, 20));
    let err = db
        .checkpoint()
        .expect_err("the checkpoint cannot be written");
    assert!(err.to_string().contains("os error 28"), "{err}");
    assert_eq!(
        db.poisoned(),
        None,
        "a failed checkpoint does not poison: the log has every commit"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&ckpt_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "only the earlier checkpoint, no temp file: {leftovers:?}"
    );
    let c = db.put("other", "still-writable", json!({})).unwrap();
    assert!(
        db.close().is_err(),
        "the checkpoint on close fails too, and says so"
    );

    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.view().lsn(), c.lsn);
    assert!(
        db.recovery_report().commits_replayed > 0,
        "recovered from the older checkpoint and the log"
    );
    check_acked_and_whole(&db, &acks, "after a failed checkpoint");
    assert!(db.verify().unwrap().is_clean());
    db.close().unwrap();
}

/// Fails the `countdown`-th operation of one kind (`IoOp::kind`) anywhere under a directory,
/// once (or on every later one of that kind, like a full disk).
struct OpFault {
    kind: &'static str,
    errno: i32,
    sticky: bool,
    armed: AtomicBool,
    countdown: AtomicI64,
    fired_on: Mutex<Vec<String>>,
}

impl FaultInjector for OpFault {
    fn on_io(&self, op: IoOp<'_>) -> Fault {
        if op.kind() != self.kind || !self.armed.load(Ordering::SeqCst) {
            return Fault::Proceed;
        }
        if self.countdown.fetch_sub(1, Ordering::SeqCst) > 0 {
            return Fault::Proceed;
        }
        let mut fired = self.fired_on.lock().unwrap();
        if !fired.is_empty() && !self.sticky {
            return Fault::Proceed;
        }
        fired.push(op.to_string());
        Fault::Fail(io::Error::from_raw_os_error(self.errno))
    }
}

/// Text every error caused by a failed operation of `kind` must contain.
fn op_text(kind: &str) -> &'static str {
    match kind {
        "create" => "create of",
        "open" => "open of",
        "write" => "write of",
        "fsync" => "fsync of",
        "dir-fsync" => "fsync of directory",
        "rename" => "rename of",
        "remove" => "removal of",
        "remove-dir" => "removal of directory",
        "create-dir" => "creation of directory",
        "truncate" => "truncation of",
        "read" => "read of",
        "read-dir" => "listing of directory",
        other => panic!("unknown kind {other}"),
    }
}

/// Writers and a checkpointer run while one operation of `kind` fails. Whatever it hits
/// (a commit, a segment roll, a seal, a checkpoint, the removal of old files), every error
/// anyone sees names the failed operation, a poisoned database refuses writes, and after a
/// reopen without the fault nothing acknowledged is lost and `verify` is clean.
fn every_op_scenario(kind: &'static str, errno: i32, countdown: i64, segment_size: u64) -> bool {
    let sticky = errno == ENOSPC;
    let ctx = format!("{kind} fails with errno {errno} after {countdown}, segments {segment_size}");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fault = Arc::new(OpFault {
        kind,
        errno,
        sticky,
        armed: AtomicBool::new(false),
        countdown: AtomicI64::new(countdown),
        fired_on: Mutex::new(vec![]),
    });
    let _scope = amberdb::io::install(dir.path(), fault.clone());
    let opts = Options {
        checkpoint_log_bytes: u64::MAX,
        checkpoint_interval: None,
        ..options(Faults::default(), segment_size)
    };
    let db = Db::open_with(&data, opts.clone()).unwrap();
    let mut acks = write_until_failure_n(&db, 3);
    db.checkpoint().unwrap();
    fault.armed.store(true, Ordering::SeqCst);
    let errors: Mutex<Vec<String>> = Mutex::new(vec![]);
    let done = AtomicBool::new(false);
    let writer_acks = Mutex::new(Acks::new());
    std::thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (db, errors, writer_acks) = (&db, &errors, &writer_acks);
                s.spawn(move || {
                    for i in 0..60u64 {
                        let key = format!("w{w}-{}", i % KEYS_PER_WRITER);
                        let seq = 1000 + i;
                        let value =
                            json!({"w": w, "seq": seq, "pad": "q".repeat((i % 40) as usize)});
                        let mut tx = Transaction::new();
                        tx.put(COLL, &key, value.clone());
                        tx.put(COLL, &format!("{key}-m1"), value.clone());
                        tx.put(COLL, &format!("{key}-m2"), value);
                        match db.commit(&tx) {
                            Ok(c) => {
                                writer_acks
                                    .lock()
                                    .unwrap()
                                    .insert(key, (c.results[0].version, seq));
                            }
                            Err(e) => {
                                errors.lock().unwrap().push(format!("commit: {e}"));
                                return;
                            }
                        }
                    }
                })
            })
            .collect();
        let (db, errors, done) = (&db, &errors, &done);
        let checkpointer = s.spawn(move || {
            while !done.load(Ordering::SeqCst) {
                if let Err(e) = db.checkpoint() {
                    if !matches!(e, Error::Poisoned { .. }) {
                        errors.lock().unwrap().push(format!("checkpoint: {e}"));
                    }
                }
                std::thread::sleep(Duration::from_millis(3));
            }
        });
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::SeqCst);
        checkpointer.join().unwrap();
    });
    for (k, v) in writer_acks.into_inner().unwrap() {
        acks.insert(k, v);
    }
    let fired_on = fault.fired_on.lock().unwrap().clone();
    let errors = errors.into_inner().unwrap();
    let fired = !fired_on.is_empty();
    if fired {
        let ctx = format!("{ctx}, fired on {}", fired_on[0]);
        let text = op_text(kind);
        assert!(
            !errors.is_empty() || db.poisoned().is_some(),
            "{ctx}: nobody was told"
        );
        for e in &errors {
            assert!(
                e.contains(text),
                "{ctx}: the error does not name the failed operation ({text:?}): {e}"
            );
        }
        if let Some(cause) = db.poisoned() {
            assert!(
                cause.contains(text),
                "{ctx}: the poison cause does not name the operation: {cause}"
            );
            assert!(
                matches!(
                    db.put("other", "later", json!(1)),
                    Err(Error::Poisoned { .. })
                ),
                "{ctx}: a poisoned database refuses writes"
            );
        }
        check_acked_and_whole(&db, &acks, &format!("{ctx}, before reopen"));
    }
    let _ = db.close();
    fault.armed.store(false, Ordering::SeqCst);
    let ctx = format!("{ctx}, fired on {fired_on:?}, errors {errors:?}");
    let db = Db::open_with(&data, opts)
        .unwrap_or_else(|e| panic!("{ctx}: reopen without the fault failed: {e}"));
    check_acked_and_whole(&db, &acks, &format!("{ctx}, after reopen"));
    let report = db.verify().unwrap();
    assert!(report.is_clean(), "{ctx}: verify: {:?}", report.problems);
    db.put("other", "after", json!(1))
        .unwrap_or_else(|e| panic!("{ctx}: {e}"));
    db.close().unwrap();
    fired
}

fn every_op_kind(kinds: &[&'static str], seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    for &kind in kinds {
        let mut fired = 0;
        for round in 0..6 {
            let countdown = match round {
                0 => 0,
                1 => 1,
                _ => rng.random_range(2..30),
            };
            let errno = if round % 2 == 0 { 5 } else { ENOSPC };
            let segment_size = [400, 2048, 64 << 20][round % 3];
            fired += u32::from(every_op_scenario(kind, errno, countdown, segment_size));
        }
        assert!(fired > 0, "{kind}: the fault never fired in any round");
    }
}

#[test]
fn a_fault_on_any_operation_kind_under_writers_is_reported_by_name_and_loses_nothing() {
    every_op_kind(
        &[
            "write",
            "fsync",
            "dir-fsync",
            "create",
            "open",
            "rename",
            "read-dir",
        ],
        17,
    );
}

/// Found by the test above: a failed removal of an old segment inside `remove_unneeded`
/// (`?` inside `sealed.drain(..)`) empties the in-memory list of sealed segments; the segment
/// stays behind and after a reopen `verify` reports "gap in the log: previous segment ends at
/// LSN 12, this one starts at 248" (issue 8 item 7; fixed by computing removals without
/// draining the list, `log/retention.rs`).
#[test]
fn a_failed_removal_of_an_old_segment_is_reported_and_loses_nothing() {
    every_op_kind(&["remove"], 18);
}

/// A fault while opening (creating the directories, reading checkpoints and segments,
/// cutting a torn tail, sealing, listing): the open fails with an error naming the operation
/// (or succeeds when the fault hit nothing it needs), and a later open without the fault
/// loses nothing.
#[test]
fn a_fault_while_opening_is_reported_by_name_and_loses_nothing() {
    for kind in [
        "create-dir",
        "dir-fsync",
        "create",
        "open",
        "write",
        "fsync",
        "rename",
        "read",
        "read-dir",
        "truncate",
    ] {
        let mut fired = 0;
        for countdown in 0..4 {
            let dir = tempfile::tempdir().unwrap();
            let data = dir.path().join("data");
            let opts = options(Faults::default(), 600);
            let fault = Arc::new(OpFault {
                kind,
                errno: if countdown % 2 == 0 { 5 } else { ENOSPC },
                sticky: false,
                armed: AtomicBool::new(countdown <= 1),
                countdown: AtomicI64::new(countdown % 2),
                fired_on: Mutex::new(vec![]),
            });
            let _scope = amberdb::io::install(dir.path(), fault.clone());
            // Rounds 0 and 1 fail while creating a new database; 2 and 3 while reopening one
            // with two checkpoints, sealed segments and a torn tail to cut.
            let acks = match Db::open_with(&data, opts.clone()) {
                Ok(db) => {
                    fault.armed.store(false, Ordering::SeqCst);
                    let acks = write_until_failure_n(&db, 4);
                    db.checkpoint().unwrap();
                    let more = write_until_failure_n(&db, 2);
                    db.close().unwrap();
                    let mut acks = acks;
                    acks.extend(more);
                    acks
                }
                Err(e) => {
                    let text = op_text(kind);
                    assert!(e.to_string().contains(text), "{kind}: {e}");
                    Acks::new()
                }
            };
            if countdown > 1 {
                let active = std::fs::read_dir(data.join(LOG_DIR))
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .filter(|p| p.extension().is_some_and(|e| e == "log"))
                    .max()
                    .unwrap();
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&active)
                    .unwrap();
                std::io::Write::write_all(&mut f, &[0xAB; 7]).unwrap();
                fault.armed.store(true, Ordering::SeqCst);
                match Db::open_with(&data, opts.clone()) {
                    Ok(db) => {
                        fault.armed.store(false, Ordering::SeqCst);
                        let _ = db.close();
                    }
                    Err(e) => {
                        let text = op_text(kind);
                        assert!(e.to_string().contains(text), "{kind} at open: {e}");
                    }
                }
            }
            fired += u32::from(!fault.fired_on.lock().unwrap().is_empty());
            fault.armed.store(false, Ordering::SeqCst);
            let db = Db::open_with(&data, opts)
                .unwrap_or_else(|e| panic!("{kind}: reopen without the fault failed: {e}"));
            check_acked_and_whole(&db, &acks, &format!("{kind} round {countdown}"));
            assert!(db.verify().unwrap().is_clean(), "{kind} round {countdown}");
            db.close().unwrap();
        }
        assert!(fired > 0, "{kind}: the fault never fired");
    }
}

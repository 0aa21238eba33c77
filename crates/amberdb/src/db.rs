//! `Db`: the public handle. Opens (lock, recovery), owns the committer (run by the writers,
//! with a timer thread) and the checkpointer thread, routes writes to the committer and reads
//! to the published view, and closes.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::backup::{BackupBook, BackupStatus, Slot, RESTORE_MARKER};
use crate::checkpoint::{self, list_checkpoints};
use crate::clock::CommitClock;
use crate::committer::{CommitQueue, Committer, Msg, Reply};
use crate::document::{now_micros, Document};
use crate::engine_state::{CheckpointSignal, Counters, Shared};
use crate::error::{Error, IoContext, Result};
use crate::feed::events::EventKind;
use crate::io::sync_dir;
use crate::lock::DirLock;
use crate::log::retention::{remove_segment, SegmentRetention};
use crate::log::{CommitLog, SealedList, SealedSegment};
use crate::options::{Options, RecoveryMode};
use crate::recovery::{recover, RecoveryReport, CHECKPOINT_DIR, LOG_DIR};
use crate::state::{encode_transaction, CollectionInfo, ListOptions, Page, ReadView};
use crate::txn::{CommitMeta, Committed, Durability, Transaction};
use crate::verify::{Problem, VerifyReport};

/// An open AmberDB database. Cheap to clone; all clones share one engine. The database closes
/// when [`Db::close`] is called or the last clone is dropped.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    dir: PathBuf,
    opts: Options,
    shared: Arc<Shared>,
    /// The committer, run by whichever writer finds it free (`committer.rs`).
    queue: Arc<CommitQueue>,
    /// The committer's timer thread (buffered deadlines).
    committer: Mutex<Option<JoinHandle<()>>>,
    /// Background threads: checkpointer, archiver, backup scheduler.
    workers: Mutex<Vec<JoinHandle<()>>>,
    /// Serializes checkpoints (background and explicit) and log cleanup.
    ckpt_lock: Mutex<CheckpointBook>,
    sealed: SealedList,
    lock: Mutex<Option<DirLock>>,
    recovery: RecoveryReport,
    /// Database id, timeline and history (`DATA/identity.json`), fixed while open.
    identity: crate::identity::Identity,
    /// Slots, archive serialization and backup status (`backup::BackupBook`).
    backups: BackupBook,
    /// Point reads of the retained log (history, as-of).
    reader: Arc<crate::log::reader::LogReader>,
    /// TTL reaper counters (`ttl.rs`).
    reaper: crate::ttl::ReaperStats,
    /// Key rotation: one at a time, and its status (`crypto::rotate`).
    rotation: crate::crypto::rotate::RotationBook,
    /// Blob files, uploads and staging records (`blob/`).
    blobs: crate::blob::BlobStore,
    /// Stream files (`stream/files.rs`), shared with the committer.
    streams: Arc<crate::stream::files::StreamFiles>,
}

#[derive(Debug, Default)]
struct CheckpointBook {
    last_lsn: Option<u64>,
    last_at: Option<Instant>,
}

/// Result of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpointInfo {
    /// The checkpoint file.
    pub path: PathBuf,
    /// LSN it covers.
    pub lsn: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// Whether a new file was written (false when the newest checkpoint was already current).
    pub written: bool,
    /// Log segments removed because no kept checkpoint needs them any more.
    pub segments_removed: u64,
}

/// Engine statistics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// LSN of the newest published commit.
    pub lsn: u64,
    /// Highest LSN known to be on stable storage.
    pub durable_lsn: u64,
    /// Commits written since open.
    pub commits: u64,
    /// Log fsyncs since open.
    pub fsyncs: u64,
    /// Commits made durable per fsync (group commit factor).
    pub commits_per_fsync: f64,
    /// Write batches since open.
    pub batches: u64,
    /// Log segments on disk.
    pub log_segments: u64,
    /// Bytes of log on disk.
    pub log_bytes: u64,
    /// Checkpoints on disk.
    pub checkpoints: u64,
    /// Bytes of checkpoints on disk.
    pub checkpoint_bytes: u64,
    /// LSN of the newest checkpoint.
    pub last_checkpoint_lsn: Option<u64>,
    /// Collections and their document counts.
    pub collections: Vec<CollectionInfo>,
    /// Why the database is poisoned, if it is.
    pub poisoned: Option<String>,
    /// Repositories this directory keeps its log for, and how far each archive reaches.
    pub archive_slots: Vec<Slot>,
    /// Bytes of sealed log kept only because an attached repository has not archived it yet.
    pub log_retained_for_archive_bytes: u64,
    /// The latest backup and any backup error.
    pub backup: BackupStatus,
    /// The history window (`Options::history_retention`, `history_max_bytes`).
    pub history: crate::history::HistoryWindow,
    /// Documents expired (invisible) but not yet deleted by the TTL reaper.
    pub ttl_expired_pending: u64,
    /// Documents the TTL reaper deleted since open.
    pub ttl_reaped: u64,
    /// Encryption key ids (8 hex digits) the data directory's log segments and checkpoints
    /// are sealed with, sorted: a key not listed can be destroyed (backups aside: `amberdb
    /// backup verify` lists a repository's). Empty when unencrypted.
    pub key_ids_in_use: Vec<String>,
    /// The running or last key rotation since open (`Db::rotate_keys`), if any.
    pub key_rotation: Option<crate::crypto::RotationStatus>,
    /// Commits change-feed subscriptions took from memory since open (they kept up).
    pub feed_commits_from_memory: u64,
    /// Commits change-feed subscriptions read from the log files since open (replays from
    /// an old cursor, and subscribers that fell behind the newest 8,192 commits).
    pub feed_commits_from_log: u64,
}

impl Db {
    /// Opens (creating if needed) the database in `dir` with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<Db> {
        Db::open_with(dir, Options::default())
    }

    /// Opens (creating if needed) the database in `dir`.
    pub fn open_with(dir: impl AsRef<Path>, opts: Options) -> Result<Db> {
        let dir = dir.as_ref().to_owned();
        check_limits(&opts)?;
        if !opts.create_if_missing && !dir.join(LOG_DIR).is_dir() {
            return Err(Error::InvalidArgument(format!(
                "no database at {}; `amberdb serve --data` or a write creates one",
                dir.display()
            )));
        }
        if opts.group_access {
            crate::io::set_group_access(true);
        }
        crate::io::create_dir_all(&dir, &opts.faults)
            .context(|| format!("creating {}", dir.display()))?;
        let lock = DirLock::acquire(&dir)?;
        if dir.join(RESTORE_MARKER).exists() {
            return Err(Error::InvalidArgument(format!(
                "{} is an interrupted restore, not a database; delete it and run the restore again",
                dir.display()
            )));
        }
        let started = Instant::now();
        let retention = crate::state::tombstone_retention_us(&opts);
        // A key rotation a crash interrupted is completed (or undone) first: until then a
        // segment may not match its seal (`crypto::rotate`).
        crate::crypto::rotate::finish_interrupted(&dir, &opts.faults)?;
        // A missing or wrong key is refused before recovery looks at any file, so it never
        // reads as damage and automatic recovery never quarantines because of it.
        crate::crypto::check_dir_keys(&dir, opts.encryption.as_ref())?;
        let recovered = recover(&dir, &opts.faults, retention, opts.encryption.as_ref());
        let mut rec = match (recovered, &opts.recovery) {
            (Ok(rec), _) => rec,
            (Err(Error::Damaged(damage)), RecoveryMode::Auto { repo }) => {
                crate::backup::auto_recover(&dir, repo, &damage, &opts)?
            }
            (Err(e), _) => return Err(e),
        };
        // Replay after a checkpoint pruned tombstones with the retention it recorded (what
        // the writer of those commits used); commits from now on use this handle's.
        rec.state.tombstone_retention_us = retention;
        let slots = crate::backup::load_slots_on_open(&dir, &opts, &rec.identity, &mut rec.report)?;
        let lsn = rec.state.lsn;
        tracing::info!(
            dir = %dir.display(),
            lsn,
            checkpoint_lsn = rec.report.checkpoint_lsn,
            replayed = rec.report.commits_replayed,
            ms = started.elapsed().as_millis() as u64,
            "opened database"
        );
        let blobs =
            crate::blob::BlobStore::open(&dir, opts.faults.clone(), opts.encryption.clone())?;
        let sealed: SealedList = Arc::new(Mutex::new(rec.sealed));
        let streams = Arc::new(rec.streams.with_segment_bytes(opts.stream_segment_bytes));
        let log = CommitLog::open(
            &dir.join(LOG_DIR),
            rec.active,
            lsn + 1,
            opts.segment_size,
            opts.faults.clone(),
            sealed.clone(),
            rec.identity.ids(),
            opts.encryption.clone(),
        )
        .context(|| format!("opening the commit log in {}", dir.join(LOG_DIR).display()))?;
        let reader = Arc::new(crate::log::reader::LogReader::new(
            &dir.join(LOG_DIR),
            opts.encryption.clone(),
            sealed.clone(),
            log.active_index(),
        ));
        let shared = Arc::new(Shared {
            view: ArcSwap::from_pointee(rec.state.clone()),
            poisoned: Mutex::new(None),
            counters: Counters::default(),
            ckpt: Mutex::new(CheckpointSignal::default()),
            ckpt_wake: Condvar::new(),
            checkpoint_log_bytes: opts.checkpoint_log_bytes,
            clock: Mutex::new(CommitClock::new(opts.clock.clone(), rec.state.commit_ts)),
            feed: crate::feed::DurableWatch::new(lsn),
            recent: crate::feed::recent::RecentCommits::default(),
            events: opts.on_event.clone(),
        });
        shared.counters.durable_lsn.store(lsn, Ordering::Release);
        let committer = Committer {
            log,
            shared: shared.clone(),
            max_doc_bytes: opts.max_doc_bytes,
            native_steps: opts.native_steps.clone(),
            max_txn_bytes: opts.max_txn_bytes,
            max_batch: opts.max_batch.max(1),
            next_lsn: lsn + 1,
            last_ts: rec.state.commit_ts,
            written_lsn: lsn,
            durable_lsn: lsn,
            sync_deadline: None,
            fsync_estimate: Duration::ZERO,
            streams: streams.clone(),
        };
        let queue = Arc::new(CommitQueue::new(committer));
        let timer = queue.clone();
        let committer = std::thread::Builder::new()
            .name("amberdb-committer".into())
            .spawn(move || timer.run_timer())
            .context(|| "starting the committer thread".into())?;
        let checkpoint_lsn = rec
            .report
            .checkpoint
            .as_ref()
            .map(|_| rec.report.checkpoint_lsn);
        let inner = Arc::new(Inner {
            dir,
            opts,
            shared,
            queue,
            committer: Mutex::new(Some(committer)),
            workers: Mutex::new(vec![]),
            ckpt_lock: Mutex::new(CheckpointBook {
                last_lsn: checkpoint_lsn,
                last_at: Some(Instant::now()),
            }),
            sealed,
            lock: Mutex::new(Some(lock)),
            recovery: rec.report,
            identity: rec.identity,
            backups: BackupBook::new(slots),
            reader,
            reaper: crate::ttl::ReaperStats::default(),
            rotation: Default::default(),
            blobs,
            streams,
        });
        let db = Db { inner };
        let weak = Arc::downgrade(&db.inner);
        db.spawn_worker("amberdb-checkpointer", move || checkpoint_loop(weak))?;
        if db.inner.opts.archive_to.is_some() {
            let weak = Arc::downgrade(&db.inner);
            db.spawn_worker("amberdb-archiver", move || {
                crate::backup::archive_loop(weak)
            })?;
        }
        if db.inner.opts.ttl_reap_interval.is_some() {
            let weak = Arc::downgrade(&db.inner);
            db.spawn_worker("amberdb-ttl-reaper", move || crate::ttl::reap_loop(weak))?;
        }
        if db.inner.opts.blob_gc_interval.is_some() {
            let weak = Arc::downgrade(&db.inner);
            db.spawn_worker("amberdb-blob-gc", move || {
                crate::blob::gc::collect_loop(weak)
            })?;
        }
        if db.inner.opts.backup_schedule.is_some() {
            let weak = Arc::downgrade(&db.inner);
            db.spawn_worker("amberdb-backups", move || {
                crate::backup::schedule_loop(weak)
            })?;
        }
        (db.inner.shared).emit(EventKind::StorageInitialized, db.recovery_report());
        Ok(db)
    }

    fn spawn_worker(&self, name: &str, f: impl FnOnce() + Send + 'static) -> Result<()> {
        let (guard, thread) = (self.inner.shared.clone(), name.to_owned());
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || guard.run_guarded(&thread, f))
            .context(|| format!("starting the {name} thread"))?;
        if let Ok(mut w) = self.inner.workers.lock() {
            w.push(handle);
        }
        Ok(())
    }

    /// Rebuilds a handle from the engine, for background threads holding a weak reference.
    pub(crate) fn from_inner(inner: Arc<Inner>) -> Db {
        Db { inner }
    }

    /// Sleeps up to `d`, waking early on shutdown; returns false when shutting down. For
    /// background threads, which hold only a weak reference: the sleep does not keep the
    /// database open, so dropping the last user handle closes it (and releases the
    /// directory lock) at once instead of after the sleep.
    pub(crate) fn idle_weak(inner: &std::sync::Weak<Inner>, d: Duration) -> bool {
        let Some(shared) = inner.upgrade().map(|i| i.shared.clone()) else {
            return false;
        };
        idle_on(&shared, d)
    }

    /// A background worker's loop: sleeps the interval `interval_of` reads from the options
    /// (returning at shutdown, or when it is `None`), then runs `pass` on a handle unless the
    /// database is poisoned. The handle is dropped before the next sleep, so close-on-drop
    /// can happen while the worker waits.
    pub(crate) fn every(
        inner: std::sync::Weak<Inner>,
        interval_of: fn(&Options) -> Option<Duration>,
        pass: fn(&Db),
    ) {
        loop {
            let Some(interval) = inner.upgrade().and_then(|i| interval_of(&i.opts)) else {
                return;
            };
            if !Db::idle_weak(&inner, interval) {
                return;
            }
            let Some(db) = inner.upgrade().map(Db::from_inner) else {
                return;
            };
            if db.poisoned().is_none() {
                pass(&db);
            }
            drop(db);
        }
    }

    pub(crate) fn shared_state(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    pub(crate) fn stream_files(&self) -> &crate::stream::files::StreamFiles {
        &self.inner.streams
    }

    pub(crate) fn options(&self) -> &Options {
        &self.inner.opts
    }

    /// Seals the active log segment so every commit so far can be archived.
    pub(crate) fn roll(&self) -> Result<u64> {
        self.inner.call(|reply| Msg::Roll { reply })
    }

    /// The sealed segments still in the data directory.
    pub(crate) fn sealed_segments(&self) -> Vec<SealedSegment> {
        self.inner
            .sealed
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    pub(crate) fn log_reader(&self) -> &crate::log::reader::LogReader {
        &self.inner.reader
    }

    /// Now by the commit clock (what commit times and the history window are measured in).
    pub(crate) fn commit_clock_now(&self) -> u64 {
        match self.inner.shared.clock.lock() {
            Ok(mut clock) => clock.now(),
            Err(_) => now_micros(),
        }
    }

    pub(crate) fn blob_store(&self) -> &crate::blob::BlobStore {
        &self.inner.blobs
    }

    /// Runs `f` while no checkpoint or log cleanup runs (no segment is removed meanwhile).
    pub(crate) fn without_log_cleanup<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        let _guard = self.inner.ckpt_lock.lock().map_err(|_| Error::Closed)?;
        Ok(f())
    }

    pub(crate) fn backup_book(&self) -> &BackupBook {
        &self.inner.backups
    }

    /// The database id, the current timeline and its history.
    pub fn identity(&self) -> &crate::identity::Identity {
        &self.inner.identity
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// What recovery did when this database was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.recovery
    }

    /// Commits a transaction: all of its operations or none. Returns once the commit is as
    /// durable as its durability asks and visible to readers.
    pub fn commit(&self, txn: &Transaction) -> Result<Committed> {
        self.commit_with(txn, CommitMeta::default())
    }

    /// Commits a transaction whose commit record says why it was made (`meta`): the one
    /// write path of reverts, undos, live restores, the TTL reaper and batch migrations.
    pub(crate) fn commit_with(&self, txn: &Transaction, meta: CommitMeta) -> Result<Committed> {
        if let Some(e) = self.inner.shared.poisoned_error() {
            return Err(e);
        }
        if txn.has_blobs() {
            return self.commit_with_blobs(txn, meta);
        }
        let ops = encode_transaction(txn, self.inner.opts.max_doc_bytes)?;
        let durability = txn.durability.unwrap_or(self.inner.opts.durability);
        self.commit_encoded(ops, durability, meta)
    }

    /// Commits operations already encoded (the TTL reaper's deletes, collection specs).
    pub(crate) fn commit_encoded(
        &self,
        ops: Vec<crate::state::EncodedOp>,
        durability: Durability,
        meta: CommitMeta,
    ) -> Result<Committed> {
        self.commit_prebuilt(ops, vec![], durability, meta)
    }

    /// [`Db::commit_encoded`] with rewrites of existing documents already built from a read
    /// view (`prebuilt`, logged first): each is applied only if its document still has the
    /// LSN and version the view saw, else the whole commit is a conflict. A batch migration
    /// builds its million rewrites this way, without the per-operation bookkeeping of a
    /// transaction (docs/SCHEMAS.md, "Batch migration").
    pub(crate) fn commit_prebuilt(
        &self,
        ops: Vec<crate::state::EncodedOp>,
        prebuilt: Vec<crate::log::record::LoggedOp>,
        durability: Durability,
        meta: CommitMeta,
    ) -> Result<Committed> {
        if let Some(e) = self.inner.shared.poisoned_error() {
            return Err(e);
        }
        self.inner.call(|reply| Msg::Commit {
            ops,
            prebuilt,
            durability,
            meta,
            reply,
        })
    }

    /// [`Db::commit`] for async code: no thread waits for the commit. The transaction is
    /// checked and encoded now, on the caller's thread (so a large one is better committed
    /// with [`Db::commit`] from a blocking pool); the committer's batch takes it like any
    /// other, and the returned future resolves with the same outcome [`Db::commit`] would
    /// return, once the commit is as durable as its durability asks and visible to readers.
    /// Dropping the future does not withdraw the commit. Transactions with blob operations
    /// are refused with `InvalidArgument` (their staging writes files: use [`Db::commit`]).
    pub fn commit_async(&self, txn: &Transaction) -> PendingCommit {
        PendingCommit {
            state: match self.submit(txn) {
                Ok(rx) => Pending::Queued(rx),
                Err(e) => Pending::Done(Some(Err(e))),
            },
            shared: self.inner.shared.clone(),
        }
    }

    /// The part of [`Db::commit_async`] done before it returns: checks, encoding, queueing.
    fn submit(
        &self,
        txn: &Transaction,
    ) -> Result<futures_channel::oneshot::Receiver<Result<Committed>>> {
        if let Some(e) = self.inner.shared.poisoned_error() {
            return Err(e);
        }
        if txn.has_blobs() {
            return Err(Error::InvalidArgument(
                "a transaction with blob operations commits with Db::commit, not \
                 Db::commit_async"
                    .into(),
            ));
        }
        let ops = encode_transaction(txn, self.inner.opts.max_doc_bytes)?;
        let (reply, rx) = futures_channel::oneshot::channel();
        let msg = Msg::Commit {
            ops,
            prebuilt: vec![],
            durability: txn.durability.unwrap_or(self.inner.opts.durability),
            meta: CommitMeta::default(),
            reply: Reply::Task(reply),
        };
        match self.inner.queue.submit(msg) {
            Some(Ok(())) => Ok(rx),
            Some(Err(e)) => Err(e),
            None => Err(gone_after_panic(&self.inner.shared)),
        }
    }

    /// Shorthand for a transaction with a single `put`.
    pub fn put(&self, collection: &str, key: &str, value: serde_json::Value) -> Result<Committed> {
        let mut t = Transaction::new();
        t.put(collection, key, value);
        self.commit(&t)
    }

    /// Shorthand for a transaction with a single `delete`.
    pub fn delete(&self, collection: &str, key: &str) -> Result<Committed> {
        let mut t = Transaction::new();
        t.delete(collection, key);
        self.commit(&t)
    }

    /// Makes every commit so far durable (for `Buffered` commits); returns the durable LSN.
    pub fn sync(&self) -> Result<u64> {
        self.inner.call(|reply| Msg::Sync { reply })
    }

    /// A consistent snapshot of the whole database; never blocks writers.
    pub fn view(&self) -> ReadView {
        let state = self.inner.shared.view.load_full();
        // Reads happen at the clock's now, never before the view's last commit: a document
        // that a commit saw expired stays expired for every later read.
        let now = self.inner.opts.clock.wall_micros().max(state.commit_ts);
        ReadView { state, now }
    }

    /// One document from the latest view (`None` when missing or expired).
    pub fn get(&self, collection: &str, key: &str) -> Option<Document> {
        self.view().get(collection, key)
    }

    /// The spec of `collection` (the default spec when none was set).
    pub fn spec(&self, collection: &str) -> Result<crate::spec::CollectionSpec> {
        crate::document::validate_collection(collection)?;
        Ok(crate::spec::read(&self.view().state, collection))
    }

    /// Stores the spec of `collection` in a logged commit (so the log, point-in-time restore
    /// and backups carry it); later writes to the collection follow it.
    pub fn set_spec(
        &self,
        collection: &str,
        spec: &crate::spec::CollectionSpec,
    ) -> Result<Committed> {
        self.set_spec_with(collection, spec, crate::spec::SetSpecOptions::default())
    }

    /// [`Db::set_spec`] with options (`force` to change a migration that has been applied).
    /// The spec is validated first and refused with the exact reason; a concurrent spec
    /// change of the same collection makes this one conflict rather than be lost.
    pub fn set_spec_with(
        &self,
        collection: &str,
        spec: &crate::spec::CollectionSpec,
        opts: crate::spec::SetSpecOptions,
    ) -> Result<Committed> {
        crate::document::validate_collection(collection)?;
        let natives = &self.inner.opts.native_steps;
        crate::schema::CompiledSpec::compile_with(spec, &|n| natives.contains(n))?;
        let state = self.view().state;
        let current = crate::spec::read(&state, collection);
        let version = crate::spec::stored(&state, collection).map_or(0, |d| d.meta.version);
        let op = crate::spec::write_op(collection, spec, &current, version, opts)?;
        self.commit_encoded(vec![op], self.inner.opts.durability, CommitMeta::default())
    }

    /// A reader presenting documents of `collection` at schema version `want` (`None`: the
    /// collection's current version), under the spec in `view`. Documents stored at another
    /// version are migrated on read (not persisted); a version the spec does not define is
    /// refused, and a document with no down path fails with `Error::NoDownMigration`.
    pub fn schema_reader(
        &self,
        view: &ReadView,
        collection: &str,
        want: Option<u32>,
    ) -> Result<crate::schema::Reader> {
        crate::document::validate_collection(collection)?;
        let spec = crate::schema::compiled(&view.state, collection)?;
        crate::schema::Reader::new(collection, spec, self.inner.opts.native_steps.clone(), want)
    }

    /// One document from the latest view at schema version `want` (`None`: the current
    /// one), migrated on read; see [`Db::schema_reader`].
    pub fn get_as(
        &self,
        collection: &str,
        key: &str,
        want: Option<u32>,
    ) -> Result<Option<crate::schema::VersionedDoc>> {
        let view = self.view();
        let reader = self.schema_reader(&view, collection, want)?;
        view.get(collection, key)
            .map(|d| reader.present(d))
            .transpose()
    }

    pub(crate) fn reaper_stats(&self) -> &crate::ttl::ReaperStats {
        &self.inner.reaper
    }

    /// A page of documents from the latest view.
    pub fn list(&self, collection: &str, opts: &ListOptions) -> Page {
        self.view().list(collection, opts)
    }

    /// Live documents in a collection.
    pub fn count(&self, collection: &str) -> u64 {
        self.view().count(collection)
    }

    /// Why the database is poisoned, if it is.
    pub fn poisoned(&self) -> Option<String> {
        self.inner.shared.poisoned()
    }

    /// Writes a checkpoint of the current state now (if anything changed since the last one),
    /// then removes checkpoints and log segments that are no longer needed.
    pub fn checkpoint(&self) -> Result<CheckpointInfo> {
        self.inner.checkpoint()
    }

    /// Verifies every file of the data directory and every document in memory.
    pub fn verify(&self) -> Result<VerifyReport> {
        let _ = self.sync();
        // Hold off checkpoint cleanup so files do not vanish mid-verify.
        let _guard = self.inner.ckpt_lock.lock().map_err(|_| Error::Closed)?;
        let mut report =
            crate::verify::verify_dir_with(&self.inner.dir, self.inner.opts.encryption.as_ref())?;
        let view = self.view();
        for (coll, doc) in view.iter_all() {
            report.documents_checked += 1;
            if crate::codec::sha256(&doc.value) != doc.meta.sha256 {
                report.problems.push(Problem {
                    file: PathBuf::from("<memory>"),
                    offset: None,
                    detail: format!(
                        "document {coll}/{} in memory does not match its SHA-256",
                        doc.key
                    ),
                });
            }
        }
        for sha in crate::blob::referenced(&view.state) {
            let path = self.inner.blobs.path_of(&sha);
            if !path.is_file() {
                report.problems.push(Problem {
                    file: path,
                    offset: None,
                    detail: format!(
                        "blob {} is named by a document but its file is missing",
                        hex::encode(sha)
                    ),
                });
            }
        }
        self.inner.shared.emit(EventKind::DataValidated, &report);
        Ok(report)
    }

    /// Statistics: LSNs, commit and fsync counters, sizes on disk, collections.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.shared.counters;
        let fsyncs = c.fsyncs.load(Ordering::Relaxed);
        let synced = c.synced_commits.load(Ordering::Relaxed);
        let (log_segments, log_bytes) = dir_usage(&self.inner.dir.join(LOG_DIR), ".log");
        let (checkpoints, checkpoint_bytes) =
            dir_usage(&self.inner.dir.join(CHECKPOINT_DIR), ".ckpt");
        let view = self.view();
        Stats {
            lsn: view.lsn(),
            durable_lsn: c.durable_lsn.load(Ordering::Acquire),
            commits: c.commits.load(Ordering::Relaxed),
            fsyncs,
            commits_per_fsync: if fsyncs == 0 {
                0.0
            } else {
                synced as f64 / fsyncs as f64
            },
            batches: c.batches.load(Ordering::Relaxed),
            log_segments,
            log_bytes,
            checkpoints,
            checkpoint_bytes,
            last_checkpoint_lsn: self.inner.ckpt_lock.lock().ok().and_then(|b| b.last_lsn),
            collections: view.collections(),
            poisoned: self.poisoned(),
            archive_slots: self.inner.backups.slots(),
            log_retained_for_archive_bytes: self
                .inner
                .backups
                .retained_for_archive(&self.sealed_segments()),
            backup: self.backup_status(),
            history: self.history_window().unwrap_or_default(),
            ttl_expired_pending: view.expired_pending(),
            ttl_reaped: self.inner.reaper.reaped.load(Ordering::Relaxed),
            key_ids_in_use: self.key_ids_in_use().unwrap_or_default(),
            key_rotation: self.inner.rotation.status(),
            feed_commits_from_memory: c.feed_from_memory.load(Ordering::Relaxed),
            feed_commits_from_log: c.feed_from_log.load(Ordering::Relaxed),
        }
    }

    /// The encryption key ids (8 hex digits, sorted) the data directory's log segments,
    /// checkpoints and blob files are sealed with; empty when unencrypted.
    pub fn key_ids_in_use(&self) -> Result<Vec<String>> {
        let mut ids: std::collections::BTreeSet<crate::crypto::KeyId> =
            crate::crypto::dir::log_and_checkpoint_key_ids(&self.inner.dir)?
                .into_iter()
                .map(|(id, _)| id)
                .collect();
        ids.extend(self.blob_store().key_ids()?);
        Ok(ids.iter().map(ToString::to_string).collect())
    }

    /// Retires every key but the keyring's first: a fresh checkpoint, then every checkpoint
    /// and sealed log segment still sealed with another key is re-sealed with the first
    /// (durably, crash-safe: `crypto::rotate`), reporting progress. Afterwards
    /// [`Db::key_ids_in_use`] lists only the first key. Run it again to finish one that was
    /// interrupted. Backups are not touched (they keep the key they were written with).
    pub fn rotate_keys(
        &self,
        progress: &dyn crate::backup::Progress,
    ) -> Result<crate::crypto::RotationReport> {
        crate::crypto::rotate::rotate_keys(self, progress, false)
    }

    /// Closes the database: finishes queued commits, syncs, writes a checkpoint (unless
    /// disabled), stops the background thread and releases the directory lock. Other clones
    /// of this handle get `Error::Closed` afterwards.
    pub fn close(self) -> Result<()> {
        self.inner.shutdown()
    }
}

impl crate::crypto::rotate::RotationHost for Db {
    fn data_dir(&self) -> &Path {
        &self.inner.dir
    }
    fn keyring(&self) -> Option<&crate::crypto::Keyring> {
        self.inner.opts.encryption.as_ref()
    }
    fn faults(&self) -> &crate::io::Faults {
        &self.inner.opts.faults
    }
    fn rotation_book(&self) -> &crate::crypto::rotate::RotationBook {
        &self.inner.rotation
    }
    fn fresh_checkpoint(&self) -> Result<()> {
        self.checkpoint().map(|_| ())
    }
    fn with_files_held(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        // Checkpoint lock first, then the archive's: nothing takes them the other way round.
        let _ckpt = self.inner.ckpt_lock.lock().map_err(|_| Error::Closed)?;
        let _archive = self.archive_lock();
        f()
    }
    fn sealed(&self) -> Vec<SealedSegment> {
        let mut s = self.sealed_segments();
        s.sort_by_key(|s| s.seal.first_lsn);
        s
    }
    fn replace_seal(&self, first_lsn: u64, seal: crate::log::segment::Seal) {
        if let Ok(mut sealed) = self.inner.sealed.lock() {
            for s in sealed.iter_mut().filter(|s| s.seal.first_lsn == first_lsn) {
                s.seal = seal;
            }
        }
    }
    fn identity_ids(&self) -> crate::identity::FileIds {
        self.inner.identity.ids()
    }
    fn compression_level(&self) -> i32 {
        self.inner.opts.checkpoint_compression_level
    }
    fn emit(&self, details: serde_json::Value) {
        self.inner.shared.emit(EventKind::KeyRotation, details);
    }
    fn blob_store(&self) -> &crate::blob::BlobStore {
        Db::blob_store(self)
    }
    fn reseal_streams(
        &self,
        keys: &crate::crypto::Keyring,
        to: Option<&crate::crypto::Keyring>,
    ) -> Result<(u64, u64)> {
        self.inner.streams.reseal(keys, to)
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.inner.dir)
            .field("lsn", &self.view().lsn())
            .finish()
    }
}

fn idle_on(shared: &Shared, d: Duration) -> bool {
    let Ok(s) = shared.ckpt.lock() else {
        return false;
    };
    if s.shutdown {
        return false;
    }
    match shared.ckpt_wake.wait_timeout_while(s, d, |s| !s.shutdown) {
        Ok((s, _)) => !s.shutdown,
        Err(_) => false,
    }
}

fn dir_usage(dir: &Path, suffix: &str) -> (u64, u64) {
    let Ok(entries) = crate::io::read_dir(dir, &crate::io::Faults::none()) else {
        return (0, 0);
    };
    entries
        .iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(suffix) && !n.starts_with('.'))
        })
        .fold((0, 0), |(n, b), p| {
            (
                n + 1,
                b + std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
            )
        })
}

/// A commit queued by [`Db::commit_async`]: a future of its outcome.
#[must_use = "the commit is queued either way; the future tells its outcome"]
pub struct PendingCommit {
    state: Pending,
    shared: Arc<Shared>,
}

enum Pending {
    /// Refused before it was queued (taken by the first poll that sees it).
    Done(Option<Result<Committed>>),
    Queued(futures_channel::oneshot::Receiver<Result<Committed>>),
}

impl std::fmt::Debug for PendingCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.state {
            Pending::Done(_) => "PendingCommit(refused)",
            Pending::Queued(_) => "PendingCommit(queued)",
        })
    }
}

impl std::future::Future for PendingCommit {
    type Output = Result<Committed>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<Committed>> {
        use std::task::Poll;
        let this = &mut *self;
        match &mut this.state {
            Pending::Done(outcome) => Poll::Ready(outcome.take().unwrap_or(Err(Error::Closed))),
            Pending::Queued(rx) => match std::pin::Pin::new(rx).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(outcome)) => Poll::Ready(outcome),
                // The committer dropped the reply: only a panic does that.
                Poll::Ready(Err(_)) => Poll::Ready(Err(gone_after_panic(&this.shared))),
            },
        }
    }
}

/// The error for a task's commit the committer dropped without a reply (a panic). The
/// reply is dropped while the panic unwinds, before the leader's guard records the cause,
/// so the cause may not be known yet; a task cannot wait for it.
fn gone_after_panic(shared: &Shared) -> Error {
    shared.poisoned_error().unwrap_or_else(|| Error::Poisoned {
        cause: "the committer thread panicked while committing this transaction".into(),
    })
}

impl Inner {
    /// Sends the committer the message `msg` builds around its reply channel and returns
    /// the reply; this thread does the committer's work unless another thread is doing it
    /// (`CommitQueue::call`).
    fn call<T>(&self, msg: impl FnOnce(Reply<T>) -> Msg) -> Result<T> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.queue
            .call(msg(Reply::Thread(reply)), &rx)
            .unwrap_or_else(|| Err(self.gone_error()))
    }

    /// The error for a request the committer dropped without a reply. After a panic that is
    /// `Poisoned`, not `Closed` (which reads as a normal shutdown). The reply is dropped while
    /// the panic unwinds, before the leader's guard poisons, so wait for the poison.
    fn gone_error(&self) -> Error {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let finished = self
                .committer
                .lock()
                .map(|h| h.as_ref().is_none_or(|h| h.is_finished()))
                .unwrap_or(true);
            if finished || Instant::now() >= deadline {
                return self.shared.poisoned_error().unwrap_or(Error::Closed);
            }
            if let Some(e) = self.shared.poisoned_error() {
                return e;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn checkpoint(&self) -> Result<CheckpointInfo> {
        let mut book = self.ckpt_lock.lock().map_err(|_| Error::Closed)?;
        if let Some(e) = self.shared.poisoned_error() {
            return Err(e);
        }
        // A checkpoint must never be ahead of the durable log, or a power loss could leave
        // a checkpoint whose LSNs the log reuses. Take the view first, then sync: every
        // published commit has been written, so the sync covers the view.
        let state = self.shared.view.load_full();
        let durable = self.call(|reply| Msg::Sync { reply })?;
        self.checkpoint_locked(&mut book, state, durable)
    }

    /// Writes a checkpoint of `state`, which must not be ahead of `durable`.
    fn checkpoint_locked(
        &self,
        book: &mut CheckpointBook,
        state: Arc<crate::state::State>,
        durable: u64,
    ) -> Result<CheckpointInfo> {
        if state.lsn > durable {
            return Err(Error::InvalidArgument(format!(
                "refusing to checkpoint LSN {} ahead of the durable log ({durable})",
                state.lsn
            )));
        }
        let ckpt_dir = self.dir.join(CHECKPOINT_DIR);
        let started = Instant::now();
        let bytes_before = self.shared.ckpt.lock().map(|s| s.bytes_since).unwrap_or(0);
        let (path, bytes, written) = if book.last_lsn == Some(state.lsn) {
            let path = ckpt_dir.join(checkpoint::checkpoint_file_name(state.lsn));
            let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            (path, bytes, false)
        } else {
            // The checkpoint records each stream's watermark: the bytes below it must be
            // durable first. A failed fsync is never retried (it may have dropped pages).
            if let Err(e) = self.streams.sync() {
                let cause = format!("syncing stream files before a checkpoint failed: {e}");
                self.shared.poison(cause.clone());
                return Err(Error::Poisoned { cause });
            }
            let (path, bytes) = checkpoint::write(
                &ckpt_dir,
                &state,
                self.identity.ids(),
                self.opts.checkpoint_compression_level,
                self.opts.encryption.as_ref(),
                &self.opts.faults,
            )
            .context(|| format!("writing checkpoint {} in {}", state.lsn, ckpt_dir.display()))?;
            tracing::info!(
                lsn = state.lsn,
                bytes,
                ms = started.elapsed().as_millis() as u64,
                "wrote checkpoint"
            );
            (path, bytes, true)
        };
        book.last_lsn = Some(state.lsn);
        book.last_at = Some(Instant::now());
        if let Ok(mut s) = self.shared.ckpt.lock() {
            s.bytes_since = s.bytes_since.saturating_sub(bytes_before);
        }
        let segments_removed = self.remove_unneeded()?;
        self.streams.collect(&state)?;
        let info = CheckpointInfo {
            path,
            lsn: state.lsn,
            bytes,
            written,
            segments_removed,
        };
        self.shared.emit(EventKind::Checkpoint, &info);
        Ok(info)
    }

    /// Removes the checkpoints `checkpoint::retention` does not keep and the sealed segments
    /// `log::retention` says no kept checkpoint, the retention window or an attached
    /// repository needs. A segment leaves the sealed list only once it is gone from disk, so a
    /// failed removal never makes the list forget segments still to be archived.
    fn remove_unneeded(&self) -> Result<u64> {
        let ckpt_dir = self.dir.join(CHECKPOINT_DIR);
        let log_dir = self.dir.join(LOG_DIR);
        let ckpts =
            list_checkpoints(&ckpt_dir).context(|| format!("listing {}", ckpt_dir.display()))?;
        let (_, old_ckpts) = checkpoint::retention::split(&ckpts);
        for (_, path) in old_ckpts {
            crate::io::remove_file(path, &self.opts.faults)
                .context(|| format!("removing {}", path.display()))?;
        }
        if !old_ckpts.is_empty() {
            // The removals of old checkpoints must be durable before the segments they need
            // are removed: otherwise a power cut can bring back a checkpoint without its log.
            sync_dir(&ckpt_dir, &self.opts.faults)
                .context(|| format!("syncing {}", ckpt_dir.display()))?;
        }
        let Some(oldest_kept) = checkpoint::retention::oldest_kept_lsn(&ckpts) else {
            return Ok(0);
        };
        // Age by the commit clock, which stamped the segments: a wall-clock step must not
        // stop cleanup (or make it remove too much).
        let now = match self.shared.clock.lock() {
            Ok(mut clock) => clock.now(),
            Err(_) => now_micros(),
        };
        let rules = SegmentRetention {
            oldest_checkpoint_lsn: oldest_kept,
            horizon_us: now.saturating_sub(
                u64::try_from(self.opts.history_retention.as_micros()).unwrap_or(u64::MAX),
            ),
            archived_through: self.backups.min_archived()?,
            max_bytes: self.opts.history_max_bytes,
            active_bytes: self.reader.extent_active_bytes(),
        };
        let mut removed = 0;
        let mut sealed = self.sealed.lock().map_err(|_| Error::Closed)?;
        let mut result = Ok(());
        for seg in rules.removable_segments(&sealed) {
            if let Err(e) = remove_segment(&log_dir, &seg, &self.opts.faults) {
                result = Err(Error::io(format!("removing {}", seg.path.display()), e));
                break;
            }
            sealed.retain(|s| s.seal.first_lsn != seg.seal.first_lsn);
            removed += 1;
        }
        let still_sealed = sealed.clone();
        drop(sealed);
        self.backups
            .warn_if_archive_lags(&still_sealed, self.opts.max_retained_log_bytes);
        if removed > 0 || !old_ckpts.is_empty() {
            sync_dir(&log_dir, &self.opts.faults)
                .context(|| format!("syncing {}", log_dir.display()))?;
            sync_dir(&ckpt_dir, &self.opts.faults)
                .context(|| format!("syncing {}", ckpt_dir.display()))?;
        }
        result.map(|()| removed)
    }

    fn shutdown(&self) -> Result<()> {
        if !self.queue.close() {
            return Ok(());
        }
        if let Ok(mut s) = self.shared.ckpt.lock() {
            s.shutdown = true;
            self.shared.ckpt_wake.notify_all();
        }
        let workers: Vec<_> = self
            .workers
            .lock()
            .map(|mut w| w.drain(..).collect())
            .unwrap_or_default();
        for h in workers {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
        let (reply, rx) = mpsc::sync_channel(1);
        let stopped = self.queue.call_shutdown(
            Msg::Shutdown {
                reply: Reply::Thread(reply),
            },
            &rx,
        );
        self.queue.stop_timer();
        if let Some(h) = self.committer.lock().ok().and_then(|mut h| h.take()) {
            let _ = h.join();
        }
        self.shared.feed.close();
        let mut result = stopped.unwrap_or(Err(Error::Closed));
        if result.is_ok() && self.opts.checkpoint_on_close && self.shared.poisoned().is_none() {
            let durable = self.shared.counters.durable_lsn.load(Ordering::Acquire);
            let state = self.shared.view.load_full();
            let mut book = self.ckpt_lock.lock().map_err(|_| Error::Closed)?;
            if let Err(e) = self.checkpoint_locked(&mut book, state, durable) {
                tracing::error!(error = %e, "checkpoint on close failed; the log still holds every commit");
                result = Err(e);
            }
        }
        if let Ok(mut l) = self.lock.lock() {
            l.take();
        }
        result
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(error = %e, dir = %self.dir.display(), "error while closing database");
        }
    }
}

/// The background checkpointer: wakes on log volume, on the interval, or on shutdown.
fn checkpoint_loop(inner: std::sync::Weak<Inner>) {
    loop {
        let Some(db) = inner.upgrade() else { return };
        let interval = db.opts.checkpoint_interval;
        let due = {
            let Ok(mut s) = db.shared.ckpt.lock() else {
                return;
            };
            let wait = interval
                .unwrap_or(Duration::from_secs(3600))
                .min(Duration::from_secs(1));
            if !s.shutdown && s.bytes_since < db.shared.checkpoint_log_bytes {
                s = match db.shared.ckpt_wake.wait_timeout(s, wait) {
                    Ok((s, _)) => s,
                    Err(_) => return,
                };
            }
            if s.shutdown {
                return;
            }
            let by_bytes = s.bytes_since >= db.shared.checkpoint_log_bytes;
            let by_time = s.bytes_since > 0
                && interval.is_some_and(|i| {
                    db.ckpt_lock
                        .try_lock()
                        .ok()
                        .and_then(|b| b.last_at)
                        .is_none_or(|at| at.elapsed() >= i)
                });
            by_bytes || by_time
        };
        if due && db.shared.poisoned().is_none() {
            if let Err(e) = db.checkpoint() {
                tracing::error!(error = %e, "background checkpoint failed");
                (db.shared).emit(
                    EventKind::ErrorOccurred,
                    serde_json::json!({"during": "checkpoint", "error": e.to_string()}),
                );
            }
        }
        // Drop the strong reference before sleeping again so close-on-drop can happen.
        drop(db);
    }
}

/// Refuses options that would let a writer produce what no decoder accepts.
fn check_limits(opts: &Options) -> Result<()> {
    use crate::limits::{MAX_DOC_BYTES, MAX_PAYLOAD_LEN};
    if opts.max_blob_bytes > crate::limits::MAX_BLOB_BYTES {
        return Err(Error::InvalidArgument(format!(
            "max_blob_bytes {} is over the engine's limit of {} bytes",
            opts.max_blob_bytes,
            crate::limits::MAX_BLOB_BYTES
        )));
    }
    if opts.max_doc_bytes > MAX_DOC_BYTES {
        return Err(Error::InvalidArgument(format!(
            "max_doc_bytes {} is over the engine's limit of {MAX_DOC_BYTES} bytes",
            opts.max_doc_bytes
        )));
    }
    if opts.max_txn_bytes > MAX_PAYLOAD_LEN {
        return Err(Error::InvalidArgument(format!(
            "max_txn_bytes {} is over the largest commit frame, {MAX_PAYLOAD_LEN} bytes",
            opts.max_txn_bytes
        )));
    }
    Ok(())
}

/// Durability shorthand: `Buffered` with the given delay.
pub fn buffered(max_delay: Duration) -> Durability {
    Durability::Buffered { max_delay }
}

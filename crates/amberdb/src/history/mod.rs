//! History and as-of reads over the retained log (the history window).
//!
//! Every logged write names its document's previous LSN (`prev_lsn`), so a document's
//! versions form a chain from its live version (or its tombstone) back through the log. The
//! walks here follow that chain with point reads (`log::reader`), so they cost the versions
//! walked, never the size of the log.
//!
//! The window: commits with LSN `>= retained_from_lsn` are history. It starts at the first
//! commit still on disk, and never earlier than the first commit inside
//! `Options::history_retention` (segments kept longer for a checkpoint or a repository are
//! not history: the tombstones that link a re-created key to its delete last only as long
//! as the retention). A point before it answers [`Error::HistoryLost`], and so does a point
//! inside it whose version was written before the window and has been replaced since (its
//! value is no longer in the log).
//!
//! A delete is shown as its own entry in a history: `op` `delete` (or `ttl` for the reaper),
//! `deleted: true`, no value, no checksum, and `version` the version it deleted (a delete
//! does not take a version number of its own; the next write continues after it).

use std::sync::Arc;

use serde::Serialize;

use crate::document::{validate_collection, validate_key, Document};
use crate::error::{Damage, Error, Result};
use crate::log::reader::{CommitCache, ReadError};
use crate::log::record::{CommitReason, CommitRecord, LoggedOp};
use crate::state::{ListOptions, Page, ReadView, State};
use crate::Db;

/// Most versions one history page returns.
pub const MAX_HISTORY_LIMIT: usize = 1000;
/// Versions per page when the caller does not say.
pub const DEFAULT_HISTORY_LIMIT: usize = 100;

/// A point in the history: a commit's LSN, or a time (the last commit at or before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// The state right after the commit with this LSN (0: before the first commit).
    Lsn(u64),
    /// The state after the last commit with commit time `<=` this (microseconds since the
    /// Unix epoch).
    Time(u64),
}

/// Which versions [`Db::history`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryOptions {
    /// Only versions with an LSN strictly below this (the resume cursor: a page's `next`).
    pub before_lsn: Option<u64>,
    /// At most this many versions; 0 means [`DEFAULT_HISTORY_LIMIT`], more than
    /// [`MAX_HISTORY_LIMIT`] is refused.
    pub limit: usize,
    /// Include each version's value.
    pub values: bool,
}

impl Default for HistoryOptions {
    fn default() -> Self {
        HistoryOptions {
            before_lsn: None,
            limit: 0,
            values: true,
        }
    }
}

/// One version of a document (or its deletion) in its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Version {
    /// The document's version after this change; for a delete, the version it deleted.
    pub version: u64,
    /// LSN of the commit.
    pub lsn: u64,
    /// Commit time, microseconds since the Unix epoch.
    pub commit_ts: u64,
    /// What made it: the commit's reason when it is not an ordinary write (`ttl`, `revert`,
    /// `undo`, `migration`, `restore`), else the operation (`create`, `put`, `replace`,
    /// `patch`, `delete`).
    pub op: &'static str,
    /// True for a delete (then there is no value, schema version or checksum).
    pub deleted: bool,
    /// Schema version of the value.
    pub schema_version: Option<u32>,
    /// SHA-256 of the value.
    #[serde(serialize_with = "hex_opt")]
    pub sha256: Option<[u8; 32]>,
    /// When this version expires, microseconds since the Unix epoch.
    pub expires_at: Option<u64>,
    /// Creation time of the document this version belongs to.
    pub created_at: Option<u64>,
    /// The value (canonical JSON), when asked for.
    #[serde(skip)]
    pub value: Option<Arc<[u8]>>,
}

fn hex_opt<S: serde::Serializer>(
    v: &Option<[u8; 32]>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match v {
        Some(h) => s.serialize_str(&hex::encode(h)),
        None => s.serialize_none(),
    }
}

/// One page of a document's history, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// The versions, newest first.
    pub versions: Vec<Version>,
    /// Pass as `before_lsn` for the next page; `None` when the window holds no older one.
    pub next: Option<u64>,
    /// Where the window starts: older versions are no longer kept.
    pub retained_from_lsn: u64,
}

/// The history window, as `Db::stats` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HistoryWindow {
    /// The oldest LSN history and as-of reads answer for.
    pub retained_from_lsn: u64,
    /// Commit time of that commit (microseconds), `None` when the log holds no commit.
    pub retained_from_time: Option<u64>,
    /// Bytes of log on disk (the window's size, against `history_max_bytes`).
    pub retained_bytes: u64,
    /// First LSN of the log on disk (`retained_from_lsn` or earlier).
    pub log_from_lsn: Option<u64>,
}

fn lost(retained_from_lsn: u64) -> Error {
    Error::HistoryLost { retained_from_lsn }
}

fn chain_broken(lsn: u64, collection: &str, key: &str) -> Error {
    Error::Damaged(Damage {
        file: crate::recovery::LOG_DIR.into(),
        offset: 0,
        detail: format!(
            "commit LSN {lsn} does not touch {collection}/{key}, yet a later version names it as previous"
        ),
        hint: "Run `amberdb verify` for a full report".into(),
    })
}

/// The operation name of `op` in commit `rec`.
fn op_name(rec: &CommitRecord, op: &LoggedOp) -> &'static str {
    match rec.reason {
        CommitReason::Write => op.op.as_str(),
        other => other.as_str(),
    }
}

fn find_op<'r>(rec: &'r CommitRecord, collection: &str, key: &str) -> Option<&'r LoggedOp> {
    rec.ops
        .iter()
        .find(|o| &*o.collection == collection && &*o.key == key)
}

/// A point read's failure as the engine's error: before the window is `HistoryLost`.
pub(crate) fn read_error(e: ReadError, window: u64) -> Error {
    match e {
        ReadError::NotRetained => lost(window),
        ReadError::Io(detail) => Error::Damaged(Damage {
            file: crate::recovery::LOG_DIR.into(),
            offset: 0,
            detail,
            hint: "Run `amberdb verify` for a full report".into(),
        }),
    }
}

/// The commit `lsn` through one operation's cache of decoded commits.
pub(crate) fn cached_commit(
    cache: &mut CommitCache<'_>,
    lsn: u64,
    window: u64,
) -> Result<Arc<CommitRecord>> {
    cache.get(lsn).map_err(|e| read_error(e, window))
}

/// The newest LSN of `collection`/`key` in `state`: its live version's or its tombstone's.
fn head_lsn(state: &State, collection: &str, key: &str) -> Option<u64> {
    let coll = state.collections.get(collection)?;
    coll.get_doc(key)
        .map(|d| d.meta.lsn)
        .or_else(|| coll.tombstones.get(key).map(|t| t.lsn))
}

impl Db {
    fn read_commit(&self, lsn: u64, window: u64) -> Result<CommitRecord> {
        self.log_reader()
            .read(lsn)
            .map_err(|e| read_error(e, window))
    }

    /// Diagnostics of the log's point reader since open: (frames decoded by history and
    /// as-of reads, segment indexes rebuilt because their `.idx` was missing or bad).
    pub fn log_read_counters(&self) -> (u64, u64) {
        let r = self.log_reader();
        (r.frames_decoded(), r.indexes_rebuilt())
    }

    /// The history window now: where it starts, and the log's size.
    pub fn history_window(&self) -> Result<HistoryWindow> {
        let view = self.view();
        let (log_from, bytes) = self.log_reader().extent();
        let retention =
            u64::try_from(self.options().history_retention.as_micros()).unwrap_or(u64::MAX);
        let horizon = self.commit_clock_now().saturating_sub(retention);
        // First commit inside the time window: one after the last commit before it.
        let by_time = match horizon.checked_sub(1) {
            Some(t) => self
                .log_reader()
                .lsn_at_time(t)
                .map_err(|_| lost(view.lsn()))?
                .map_or(0, |l| l + 1),
            None => 0,
        };
        let physical = log_from.unwrap_or(view.lsn() + 1);
        // The newest state is always known, even when the window holds no commit.
        let from = physical.max(by_time).min(view.lsn()).max(1);
        let time = if from <= view.lsn() {
            self.log_reader().commit_ts(from).ok()
        } else {
            None
        };
        Ok(HistoryWindow {
            retained_from_lsn: from,
            retained_from_time: time,
            retained_bytes: bytes,
            log_from_lsn: log_from,
        })
    }

    /// The versions of `collection`/`key` in the history window, newest first, a page at a
    /// time (see the module docs for how a delete is shown). A key with no version in the
    /// window has an empty history.
    pub fn history(
        &self,
        collection: &str,
        key: &str,
        opts: HistoryOptions,
    ) -> Result<HistoryPage> {
        validate_collection(collection)?;
        validate_key(key)?;
        if opts.limit > MAX_HISTORY_LIMIT {
            return Err(Error::InvalidArgument(format!(
                "limit {} is over the maximum of {MAX_HISTORY_LIMIT}",
                opts.limit
            )));
        }
        let limit = if opts.limit == 0 {
            DEFAULT_HISTORY_LIMIT
        } else {
            opts.limit
        };
        let view = self.view();
        let window = self.history_window()?.retained_from_lsn;
        let mut page = HistoryPage {
            versions: vec![],
            next: None,
            retained_from_lsn: window,
        };
        let tombstone = view
            .state
            .collections
            .get(collection)
            .and_then(|c| c.tombstones.get(key).copied());
        let mut cur = head_lsn(&view.state, collection, key).unwrap_or(0);
        let before = opts.before_lsn.unwrap_or(u64::MAX);
        // The record of `cur`, when already read (a delete reads its predecessor early).
        let mut ahead: Option<CommitRecord> = None;
        while cur != 0 && cur >= window {
            let rec = match ahead.take() {
                Some(r) if r.lsn == cur => r,
                _ => self.read_commit(cur, window)?,
            };
            let op =
                find_op(&rec, collection, key).ok_or_else(|| chain_broken(cur, collection, key))?;
            let prev = op.prev_lsn;
            if cur < before {
                if page.versions.len() == limit {
                    page.next = page.versions.last().map(|v| v.lsn);
                    break;
                }
                let version = match &op.doc {
                    Some(d) => Version {
                        version: d.version,
                        lsn: rec.lsn,
                        commit_ts: rec.commit_ts,
                        op: op_name(&rec, op),
                        deleted: false,
                        schema_version: Some(d.schema_version),
                        sha256: Some(d.sha256),
                        expires_at: d.expires_at,
                        created_at: Some(d.created_at),
                        value: opts.values.then(|| d.value.clone()),
                    },
                    None => {
                        // The version deleted is the previous write's.
                        let deleted = if prev != 0 && prev >= window {
                            let p = self.read_commit(prev, window)?;
                            let v = find_op(&p, collection, key)
                                .and_then(|o| o.doc.as_ref())
                                .map(|d| d.version);
                            ahead = Some(p);
                            v
                        } else {
                            None
                        };
                        let from_tombstone =
                            tombstone.filter(|t| t.lsn == cur).map(|t| t.last_version);
                        Version {
                            version: deleted.or(from_tombstone).unwrap_or(0),
                            lsn: rec.lsn,
                            commit_ts: rec.commit_ts,
                            op: op_name(&rec, op),
                            deleted: true,
                            schema_version: None,
                            sha256: None,
                            expires_at: None,
                            created_at: None,
                            value: None,
                        }
                    }
                };
                page.versions.push(version);
            }
            cur = prev;
        }
        Ok(page)
    }

    /// Resolves `at` to an LSN of `view`: a time to the last commit at or before it.
    fn resolve(&self, view: &ReadView, at: At, window: u64) -> Result<u64> {
        match at {
            At::Lsn(n) if n > view.lsn() => Err(Error::InvalidArgument(format!(
                "LSN {n} has not been committed yet (the newest is {})",
                view.lsn()
            ))),
            At::Lsn(n) => Ok(n),
            At::Time(t) if t >= view.commit_ts() => Ok(view.lsn()),
            At::Time(t) => match self.log_reader().lsn_at_time(t) {
                Ok(Some(l)) => Ok(l.min(view.lsn())),
                Ok(None) | Err(ReadError::NotRetained) => Err(lost(window)),
                Err(ReadError::Io(detail)) => Err(Error::Damaged(Damage {
                    file: crate::recovery::LOG_DIR.into(),
                    offset: 0,
                    detail,
                    hint: "Run `amberdb verify` for a full report".into(),
                })),
            },
        }
    }

    /// The point `at` as an LSN (a time resolves to the last commit at or before it), checked
    /// against the history window.
    pub fn resolve_at(&self, at: At) -> Result<u64> {
        let view = self.view();
        let window = self.history_window()?.retained_from_lsn;
        let lsn = self.resolve(&view, at, window)?;
        if lsn < window && lsn < view.lsn() {
            return Err(lost(window));
        }
        Ok(lsn)
    }

    /// The point `at` checked against the history window, read on `view`: its LSN and the
    /// commit time of that commit (0 before the first commit).
    pub(crate) fn point_on(&self, view: &ReadView, at: At) -> Result<(u64, u64)> {
        let window = self.history_window()?.retained_from_lsn;
        let lsn = self.resolve(view, at, window)?;
        if lsn < window && lsn < view.lsn() {
            return Err(lost(window));
        }
        let ts = match lsn {
            0 => 0,
            l if l == view.lsn() => view.state.commit_ts,
            l => self.read_commit(l, window)?.commit_ts,
        };
        Ok((lsn, ts))
    }

    /// `collection`/`key` exactly as it was right after commit `at` (inclusive); `None` when
    /// it did not exist then. [`Error::HistoryLost`] before the window.
    pub fn get_at(&self, collection: &str, key: &str, at: At) -> Result<Option<Document>> {
        validate_collection(collection)?;
        validate_key(key)?;
        let view = self.view();
        let window = self.history_window()?.retained_from_lsn;
        let lsn = self.resolve(&view, at, window)?;
        if lsn < window && lsn < view.lsn() {
            return Err(lost(window));
        }
        let mut cache = CommitCache::new(self.log_reader());
        match doc_at(&mut cache, &view, collection, key, lsn, window)? {
            // Only a document with an expiry needs the point's time.
            Some(d) if d.meta.expires_at.is_some() => {
                let now = self.point_time(&view, at, lsn, window)?;
                Ok(Some(d).filter(|d| d.meta.is_live_at(now)))
            }
            other => Ok(other),
        }
    }

    /// The time of the point `at` (resolved to `lsn`): the time asked for, or the commit
    /// time of the commit named. A document whose expiry is at or before it was already
    /// invisible then (TTL), so as-of reads leave it out.
    fn point_time(&self, view: &ReadView, at: At, lsn: u64, window: u64) -> Result<u64> {
        Ok(match at {
            At::Time(t) => t,
            At::Lsn(_) if lsn == 0 => 0,
            At::Lsn(_) if lsn == view.lsn() => view.state.commit_ts,
            At::Lsn(_) => self.read_commit(lsn, window)?.commit_ts,
        })
    }

    /// One page of `collection` as it was right after commit `at`, like [`Db::list`]:
    /// documents touched after the point are walked back, every other one is the current
    /// value.
    pub fn list_at(&self, collection: &str, opts: &ListOptions, at: At) -> Result<(u64, Page)> {
        validate_collection(collection)?;
        let view = self.view();
        let window = self.history_window()?.retained_from_lsn;
        let lsn = self.resolve(&view, at, window)?;
        if lsn < window && lsn < view.lsn() {
            return Err(lost(window));
        }
        // The point's time, read once when a document with an expiry needs it.
        let mut now: Option<u64> = None;
        // Documents changed by the same commits since the point decode each commit once.
        let mut cache = CommitCache::new(self.log_reader());
        let mut page = Page {
            docs: vec![],
            next: None,
        };
        let Some(coll) = view.state.collections.get(collection) else {
            return Ok((lsn, page));
        };
        // Every key with a document or a tombstone in range, in key order.
        let prefix = opts.prefix.as_deref().unwrap_or("");
        let lower = match opts.start_after.as_deref() {
            Some(after) if after >= prefix => std::ops::Bound::Excluded(after),
            _ => std::ops::Bound::Included(prefix),
        };
        let range = (lower, std::ops::Bound::Unbounded);
        let mut docs = coll.docs.range::<_, str>(range).peekable();
        let mut tombs = coll.tombstones.range::<_, str>(range).peekable();
        let limit = if opts.limit == 0 {
            usize::MAX
        } else {
            opts.limit
        };
        loop {
            let key: Arc<str> = match (docs.peek(), tombs.peek()) {
                (Some((d, _)), Some((t, _))) => {
                    if d <= t {
                        (*d).clone()
                    } else {
                        (*t).clone()
                    }
                }
                (Some((d, _)), None) => (*d).clone(),
                (None, Some((t, _))) => (*t).clone(),
                (None, None) => break,
            };
            if docs.peek().is_some_and(|(d, _)| **d == key) {
                docs.next();
            }
            if tombs.peek().is_some_and(|(t, _)| **t == key) {
                tombs.next();
            }
            if !key.starts_with(prefix) || opts.end_before.as_deref().is_some_and(|e| &*key >= e) {
                break;
            }
            let Some(doc) = doc_at(&mut cache, &view, collection, &key, lsn, window)? else {
                continue;
            };
            if doc.meta.expires_at.is_some() {
                let t = match now {
                    Some(t) => t,
                    None => *now.insert(self.point_time(&view, at, lsn, window)?),
                };
                if !doc.meta.is_live_at(t) {
                    continue;
                }
            }
            if page.docs.len() == limit {
                page.next = page.docs.last().map(|d: &Document| d.key.to_string());
                break;
            }
            page.docs.push(doc);
        }
        Ok((lsn, page))
    }
}

/// `collection`/`key` as it was right after commit `lsn` in `view`'s history: the live
/// version when it is not newer than `lsn`, else the chain walked back through `cache` (the
/// operation's decoded commits; history, as-of reads and revert share this one walk). The
/// caller checks `lsn` against the window (`window` is its start, for the error).
pub(crate) fn doc_at(
    cache: &mut CommitCache<'_>,
    view: &ReadView,
    collection: &str,
    key: &str,
    lsn: u64,
    window: u64,
) -> Result<Option<Document>> {
    let state = &view.state;
    let Some(coll) = state.collections.get(collection) else {
        return Ok(None);
    };
    if let Some(doc) = coll.get_doc(key) {
        if doc.meta.lsn <= lsn {
            return Ok(Some(doc.clone()));
        }
    } else if coll.tombstones.get(key).is_none_or(|t| t.lsn <= lsn) {
        return Ok(None);
    }
    let mut cur = head_lsn(state, collection, key).unwrap_or(0);
    while cur > lsn {
        let rec = cached_commit(cache, cur, window)?;
        let op =
            find_op(&rec, collection, key).ok_or_else(|| chain_broken(cur, collection, key))?;
        cur = op.prev_lsn;
    }
    if cur == 0 {
        return Ok(None);
    }
    let rec = cached_commit(cache, cur, window)?;
    let op = find_op(&rec, collection, key).ok_or_else(|| chain_broken(cur, collection, key))?;
    Ok(op.document(&rec))
}

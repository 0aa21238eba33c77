//! Revert, undo and live restore: new, logged transactions that put documents back to an
//! earlier state. Nothing is ever rewritten; a revert is one more commit (reason `revert`,
//! `undo` or `restore`, with the LSN it refers to) and can itself be reverted or undone.
//!
//! What this module owns: choosing which documents a revert or undo must write, the
//! optimistic checks that make a concurrent write fail it instead of being overwritten, and
//! the report. What it must never do: write outside one transaction, or touch the log other
//! than through `Db::commit_with`. Reading old versions goes through [`past`], the smallest
//! point reader of the retained log this module needs.

use serde::Serialize;

use crate::db::Db;
use crate::document::{DocMeta, Document};
use crate::error::{Conflict, ConflictReason, Error, Result};
use crate::log::record::CommitReason;
use crate::state::ReadView;
use crate::txn::{CommitMeta, Expiry, Transaction};

pub(crate) mod past;

pub use crate::history::At;

/// Which documents a revert considers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One document.
    Key {
        /// Its collection.
        collection: String,
        /// Its key.
        key: String,
    },
    /// The documents of a collection whose keys start with `prefix`.
    Prefix {
        /// The collection.
        collection: String,
        /// The key prefix.
        prefix: String,
    },
    /// A whole collection.
    Collection {
        /// The collection.
        collection: String,
    },
    /// Every collection.
    All,
}

impl Scope {
    /// The collection the scope is limited to, `None` for the whole database.
    pub fn collection(&self) -> Option<&str> {
        match self {
            Scope::Key { collection, .. }
            | Scope::Prefix { collection, .. }
            | Scope::Collection { collection } => Some(collection),
            Scope::All => None,
        }
    }
}

/// Options of [`Db::revert`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RevertOptions {
    /// Compute and return the report without committing anything.
    pub dry_run: bool,
}

/// Options of [`Db::undo`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UndoOptions {
    /// Compute and return the report without committing anything.
    pub dry_run: bool,
    /// Undo even documents written again after the commit (their later changes are lost
    /// from the current state; they stay in the history).
    pub force: bool,
}

/// What happened to one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// It existed and was given its earlier value.
    Restored,
    /// It existed and did not exist at the target: deleted.
    Deleted,
    /// It did not exist and did at the target: created again with the earlier value.
    Recreated,
}

/// One document a revert, undo or restore changed (or, in a dry run, would change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changed {
    /// Collection of the document.
    pub collection: String,
    /// Key of the document.
    pub key: String,
    /// Its version before (0 = did not exist).
    pub version_before: u64,
    /// Its version after (0 = deleted); in a dry run, the version it would get.
    pub version_after: u64,
    /// What was done.
    pub action: Action,
}

/// What a revert, undo or live restore did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevertReport {
    /// The LSN the documents were put back to (for an undo: the undone commit).
    pub target_lsn: u64,
    /// The commit that did it; `None` for a dry run or when nothing had to change.
    pub commit_lsn: Option<u64>,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Every document changed, in (collection, key) order.
    pub changed: Vec<Changed>,
}

/// One document to write back: its current state and the state to give it.
struct Plan {
    collection: String,
    key: String,
    current: Option<Document>,
    /// The highest version the key ever had (for the version a re-creation gets).
    last_version: u64,
    target: Option<Document>,
}

impl Db {
    /// Puts every document in `scope` back to its state at `at`: each one that differs (in
    /// value or schema version) is written back, or deleted if it did not exist then, in one
    /// transaction logged with reason `revert` and the target LSN. Every write carries the
    /// document's current version as `if_version`, so a concurrent write makes it fail
    /// (retried once from a fresh view, then `Error::Conflict`). A revert of nothing commits
    /// nothing and returns an empty list.
    pub fn revert(&self, scope: &Scope, at: At, opts: RevertOptions) -> Result<RevertReport> {
        self.revert_with(scope, at, opts, CommitReason::Revert)
    }

    /// Makes the whole live database equal to its state at `at` (inside the history window)
    /// as one transaction logged with reason `restore`.
    /// Emits a `backup_restored` system event (`Options::on_event`) unless it is a dry run:
    /// `{"mode": "live", "target_lsn", "commit_lsn", "changed"}` (a count).
    pub fn restore_live(&self, at: At, opts: RevertOptions) -> Result<RevertReport> {
        let report = self.revert_with(&Scope::All, at, opts, CommitReason::Restore)?;
        if !report.dry_run {
            self.shared_state().emit(
                crate::feed::events::EventKind::BackupRestored,
                serde_json::json!({
                    "mode": "live",
                    "target_lsn": report.target_lsn,
                    "commit_lsn": report.commit_lsn,
                    "changed": report.changed.len(),
                }),
            );
        }
        Ok(report)
    }

    fn revert_with(
        &self,
        scope: &Scope,
        at: At,
        opts: RevertOptions,
        reason: CommitReason,
    ) -> Result<RevertReport> {
        if let Some(c) = scope.collection() {
            crate::document::validate_collection(c)?;
        }
        if let Scope::Key { key, .. } = scope {
            crate::document::validate_key(key)?;
        }
        let mut attempt = 0;
        loop {
            let view = self.view();
            let target = past::resolve(self, &view, at)?;
            let plans = revert_plan(self, &view, scope, at, target)?;
            match self.write_plans(&view, plans, target, opts.dry_run, reason) {
                Err(Error::Conflict(_)) if attempt == 0 => attempt += 1,
                r => return r,
            }
        }
    }

    /// Undoes the commit `lsn`: each document it touched goes back to its state just before
    /// it (its previous version, or absent), in one transaction logged with reason `undo` and
    /// target `lsn`. Refused with `Error::Conflict` naming every such document (expected: the
    /// version the commit left, actual: the current one) when any was written since, unless
    /// `opts.force`.
    pub fn undo(&self, lsn: u64, opts: UndoOptions) -> Result<RevertReport> {
        let mut attempt = 0;
        loop {
            let view = self.view();
            let plans = undo_plan(self, &view, lsn, opts.force)?;
            match self.write_plans(&view, plans, lsn, opts.dry_run, CommitReason::Undo) {
                Err(Error::Conflict(_)) if attempt == 0 => attempt += 1,
                r => return r,
            }
        }
    }

    /// The documents (collection, key) commit `lsn` touched, in commit order: what an undo
    /// of it would consider (the server checks the caller's scopes on them first).
    pub fn commit_documents(&self, lsn: u64) -> Result<Vec<(String, String)>> {
        let newest = self.view().lsn();
        if lsn == 0 || lsn > newest {
            return Err(Error::InvalidArgument(format!(
                "there is no commit with LSN {lsn} (the newest is {newest})"
            )));
        }
        let record = past::Reader::new(self).commit(lsn)?;
        Ok(record
            .ops
            .iter()
            .map(|o| (o.collection.to_string(), o.key.to_string()))
            .collect())
    }

    /// Commits (or, for a dry run, only reports) the writes of `plans` in one transaction.
    fn write_plans(
        &self,
        view: &ReadView,
        plans: Vec<Plan>,
        target_lsn: u64,
        dry_run: bool,
        reason: CommitReason,
    ) -> Result<RevertReport> {
        let now = view.now;
        let mut txn = Transaction::new();
        let mut changed = Vec::with_capacity(plans.len());
        for p in &plans {
            let before = p.current.as_ref().map_or(0, |d| d.meta.version);
            let (action, after) = match (&p.current, &p.target) {
                (Some(_), None) => {
                    txn.delete(&p.collection, &p.key).if_version(before);
                    (Action::Deleted, 0)
                }
                (cur, Some(t)) => {
                    let value: serde_json::Value = t.json()?;
                    let w = txn
                        .put(&p.collection, &p.key, value)
                        .if_version(before)
                        .schema_version(t.meta.schema_version.max(1));
                    // Never the collection's default TTL counted from now.
                    match restored_expiry(t, now) {
                        Expiry::At(at) => w.expires_at(at),
                        Expiry::Ttl(ttl) => w.ttl(ttl),
                        Expiry::Never | Expiry::Unset => w.never_expires(),
                    };
                    match cur {
                        Some(_) => (Action::Restored, before + 1),
                        None => (Action::Recreated, p.last_version + 1),
                    }
                }
                (None, None) => continue,
            };
            changed.push(Changed {
                collection: p.collection.clone(),
                key: p.key.clone(),
                version_before: before,
                version_after: after,
                action,
            });
        }
        if dry_run || txn.is_empty() {
            return Ok(RevertReport {
                target_lsn,
                commit_lsn: None,
                dry_run,
                changed,
            });
        }
        // The soonest expiry given back: planned at the view's now, it may have passed by
        // the commit's time (the commit then refuses it as already expired).
        let soonest = plans
            .iter()
            .filter_map(|p| p.target.as_ref().and_then(|t| t.meta.expires_at))
            .filter(|at| *at > now)
            .min();
        run_before_commit_hook();
        let committed = match self.commit_with(&txn, CommitMeta { reason, target_lsn }) {
            // Planned again from a fresh view, which sees that document expired (the retry
            // of a conflict).
            Err(Error::InvalidArgument(_))
                if soonest.is_some_and(|at| at <= self.commit_clock_now()) =>
            {
                return Err(Error::Conflict(vec![]));
            }
            r => r?,
        };
        for (c, r) in changed.iter_mut().zip(&committed.results) {
            c.version_after = r.version;
        }
        Ok(RevertReport {
            target_lsn,
            commit_lsn: Some(committed.lsn),
            dry_run,
            changed,
        })
    }
}

thread_local! {
    static BEFORE_COMMIT: std::cell::RefCell<Option<Box<dyn FnMut()>>> =
        const { std::cell::RefCell::new(None) };
}

/// Sets (or clears) a hook that every revert, undo and live restore on this thread calls
/// after planning its writes and before committing them: tests land a concurrent write there
/// to prove it is never overwritten. Not for production use.
#[doc(hidden)]
pub fn set_before_commit_hook(hook: Option<Box<dyn FnMut()>>) {
    BEFORE_COMMIT.with(|h| *h.borrow_mut() = hook);
}

fn run_before_commit_hook() {
    // Taken out while it runs, so it may itself revert (and not recurse).
    if let Some(mut hook) = BEFORE_COMMIT.with(|h| h.borrow_mut().take()) {
        hook();
        BEFORE_COMMIT.with(|h| {
            let mut slot = h.borrow_mut();
            if slot.is_none() {
                *slot = Some(hook);
            }
        });
    }
}

/// The documents of `scope` that differ from their state at `target`, in (collection, key)
/// order. Candidates are the documents and tombstones whose last change is after the target,
/// and the stored documents that expired after its time (nothing else can differ), so the
/// log is read only for documents that changed.
fn revert_plan(db: &Db, view: &ReadView, scope: &Scope, at: At, target: u64) -> Result<Vec<Plan>> {
    let limit = crate::limits::MAX_REVERT_DOCS;
    let state = &view.state;
    let mut reader = past::Reader::new(db);
    // The time of the point: a version that had expired by then was already gone at the
    // target (as `Db::get_at` sees it).
    let point = match at {
        At::Time(t) => t.min(view.now),
        At::Lsn(_) if target == 0 => 0,
        At::Lsn(_) if target == view.lsn() => view.state.commit_ts,
        At::Lsn(_) => reader.commit_ts(target)?,
    };
    let mut candidates: Vec<(String, String)> = vec![];
    let mut push = |c: &str, k: &str| -> Result<()> {
        if candidates.len() >= limit {
            return Err(Error::InvalidArgument(format!(
                "the revert would consider more than {limit} documents changed since LSN \
                 {target}; narrow the scope (a collection or key prefix) or restore from a \
                 backup into a new directory"
            )));
        }
        candidates.push((c.to_owned(), k.to_owned()));
        Ok(())
    };
    for (name, coll) in state.collections.iter() {
        if scope.collection().is_some_and(|c| c != &**name) {
            continue;
        }
        let in_scope = |key: &str| match scope {
            Scope::Key { key: k, .. } => key == k,
            Scope::Prefix { prefix, .. } => key.starts_with(prefix.as_str()),
            Scope::Collection { .. } | Scope::All => true,
        };
        // Stored documents that expired after the point (not reaped yet) differ from their
        // state at the target even when unchanged since: they were live then.
        if let Scope::Key { key, .. } = scope {
            let expired_since = coll.get_doc(key).is_some_and(|d| {
                d.expired_at(view.now) && d.meta.expires_at.is_some_and(|e| e > point)
            });
            if expired_since {
                push(name, key)?;
            }
        } else {
            for (_, k) in coll
                .expired_at(view.now)
                .skip_while(|(exp, _)| *exp <= point)
            {
                if in_scope(k) {
                    push(name, k)?;
                }
            }
        }
        match scope {
            Scope::Key { key, .. } => {
                let changed = coll.get_doc(key).map(|d| d.meta.lsn > target);
                let deleted = coll.tombstones.get(key.as_str()).map(|t| t.lsn > target);
                if changed.or(deleted).unwrap_or(false) {
                    push(name, key)?;
                }
            }
            _ => {
                let prefix = match scope {
                    Scope::Prefix { prefix, .. } => prefix.as_str(),
                    _ => "",
                };
                for (k, d) in coll.docs.range::<_, str>((
                    std::ops::Bound::Included(prefix),
                    std::ops::Bound::Unbounded,
                )) {
                    if !in_scope(k) {
                        break;
                    }
                    if d.meta.lsn > target {
                        push(name, k)?;
                    }
                }
                for (k, t) in coll.tombstones.range::<_, str>((
                    std::ops::Bound::Included(prefix),
                    std::ops::Bound::Unbounded,
                )) {
                    if !in_scope(k) {
                        break;
                    }
                    if t.lsn > target {
                        push(name, k)?;
                    }
                }
            }
        }
    }
    candidates.sort();
    candidates.dedup();
    let mut plans = Vec::with_capacity(candidates.len());
    for (c, k) in candidates {
        let current = view.get(&c, &k);
        let then = reader
            .doc_at(view, &c, &k, target)?
            .filter(|d| d.meta.is_live_at(point));
        if same(current.as_ref(), then.as_ref(), view.now) {
            continue;
        }
        let last_version = last_version(view, &c, &k);
        plans.push(Plan {
            collection: c,
            key: k,
            current,
            last_version,
            target: then,
        });
    }
    Ok(plans)
}

/// The documents commit `lsn` touched, each with the state it had just before the commit.
fn undo_plan(db: &Db, view: &ReadView, lsn: u64, force: bool) -> Result<Vec<Plan>> {
    if lsn == 0 || lsn > view.lsn() {
        return Err(Error::InvalidArgument(format!(
            "there is no commit with LSN {lsn} to undo (the newest is {})",
            view.lsn()
        )));
    }
    let mut reader = past::Reader::new(db);
    let record = reader.commit(lsn)?;
    if record.ops.len() > crate::limits::MAX_REVERT_DOCS {
        return Err(Error::InvalidArgument(format!(
            "commit {lsn} touched {} documents, over the limit of {} one undo may write",
            record.ops.len(),
            crate::limits::MAX_REVERT_DOCS
        )));
    }
    let state = &view.state;
    let mut conflicts = vec![];
    let mut plans = vec![];
    for (i, op) in record.ops.iter().enumerate() {
        let current = view.get(&op.collection, &op.key);
        let coll = state.collections.get(&op.collection);
        // The last logged change of the key: its stored document's write (also when that
        // has expired since: the reaper has not logged its end yet) or its delete.
        let last_change = match coll.and_then(|c| c.get_doc(&op.key)) {
            Some(d) => d.meta.lsn,
            None => coll
                .and_then(|c| c.tombstones.get(&op.key))
                .map_or(0, |t| t.lsn),
        };
        if last_change != lsn && !force {
            conflicts.push(Conflict {
                op_index: i,
                collection: op.collection.to_string(),
                key: op.key.to_string(),
                expected: op.doc.as_ref().map_or(0, |d| d.version),
                actual: current.as_ref().map_or(0, |d| d.meta.version),
                reason: ConflictReason::VersionMismatch,
            });
            continue;
        }
        // Just before the commit: a version that had expired by its time was already gone.
        let before = if op.prev_lsn == 0 {
            None
        } else {
            reader
                .written_by(op.prev_lsn, &op.collection, &op.key)?
                .filter(|d| d.meta.is_live_at(record.commit_ts))
        };
        if same(current.as_ref(), before.as_ref(), view.now) {
            continue;
        }
        plans.push(Plan {
            collection: op.collection.to_string(),
            key: op.key.to_string(),
            last_version: last_version(view, &op.collection, &op.key),
            current,
            target: before,
        });
    }
    if !conflicts.is_empty() {
        return Err(Error::Conflict(conflicts));
    }
    plans.sort_by(|a, b| (&a.collection, &a.key).cmp(&(&b.collection, &b.key)));
    Ok(plans)
}

/// Whether writing `then` back at `now` would leave `current` as it is: both absent, or the
/// same value bytes and schema version, and `current` already has the expiry the write would
/// give (`restored_expiry`, not `then`'s own, which may have passed).
fn same(current: Option<&Document>, then: Option<&Document>, now: u64) -> bool {
    match (current, then) {
        (None, None) => true,
        (Some(cur), Some(then)) => {
            let given = match restored_expiry(then, now) {
                Expiry::At(at) => Some(at),
                Expiry::Ttl(ttl) => {
                    Some(now.saturating_add(u64::try_from(ttl.as_micros()).unwrap_or(u64::MAX)))
                }
                Expiry::Never | Expiry::Unset => None,
            };
            cur.meta.sha256 == then.meta.sha256
                && cur.meta.schema_version == then.meta.schema_version
                && cur.meta.expires_at == given
        }
        _ => false,
    }
}

/// The expiry a revert or undo gives back to `then`, a version live at its target, when
/// writing at `now`: the `expires_at` it had, exactly, while that is still ahead; once it has
/// passed (the document expired since, and the reaper may have deleted it), the TTL its write
/// gave it (`expires_at - updated_at`), counted again from the revert's commit. So a reverted
/// document is live again, as at the target, and still expires by itself: a revert never
/// writes an already expired document, nor makes an expiring one live forever.
fn restored_expiry(then: &Document, now: u64) -> Expiry {
    match then.meta.expires_at {
        None => Expiry::Never,
        Some(at) if at > now => Expiry::At(at),
        Some(at) => Expiry::Ttl(std::time::Duration::from_micros(
            at.saturating_sub(then.meta.updated_at).max(1),
        )),
    }
}

/// The highest version `key` ever had (what a new document of it continues after).
fn last_version(view: &ReadView, collection: &str, key: &str) -> u64 {
    let Some(coll) = view.state.collections.get(collection) else {
        return 0;
    };
    match coll.get_doc(key) {
        Some(d) => d.meta.version,
        None => coll.tombstones.get(key).map_or(coll.version_floor, |t| {
            t.last_version.max(coll.version_floor)
        }),
    }
}

/// A document as a commit wrote it.
pub(crate) fn document_of(
    key: &str,
    lsn: u64,
    commit_ts: u64,
    d: &crate::log::record::WrittenDoc,
) -> Document {
    Document {
        key: key.into(),
        value: d.value.clone(),
        meta: DocMeta {
            version: d.version,
            schema_version: d.schema_version,
            created_at: d.created_at,
            updated_at: commit_ts,
            lsn,
            expires_at: d.expires_at,
            sha256: d.sha256,
        },
    }
}

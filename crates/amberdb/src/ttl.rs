//! The TTL reaper: deletes expired documents in ordinary logged transactions.
//!
//! Expiry itself needs no reaper: a document whose `expires_at` is at or before the reader's
//! now is invisible at once to every read (`DocMeta::is_live_at`). The reaper only frees what
//! expired documents hold, and makes their end visible where a deletion is expected: the log,
//! the change feed and history show a delete with commit reason `ttl` (and a revert inside the
//! history window can bring the document back).
//!
//! One pass ([`crate::Db::reap_expired`]) takes the expired documents of the current view,
//! soonest expired first, at most `Options::ttl_reap_batch` of them, and commits one
//! transaction of reaper deletes (`EncodedKind::Reap`): each removes its document only if it
//! still has the version the pass saw and is still expired at the commit's time, so a write
//! that refreshed it meanwhile wins and the delete is a no-op, never a conflict.
//! The background thread runs a pass every `Options::ttl_reap_interval` (rate limit: at most
//! one batch per interval); with `None` only explicit calls reap (tests with a
//! `ManualClock` call `reap_expired` to run a pass deterministically).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Weak;

use serde::Serialize;

use crate::db::{Db, Inner};
use crate::error::Result;
use crate::log::record::CommitReason;
use crate::state::{EncodedKind, EncodedOp};
use crate::txn::{CommitMeta, Expiry};

/// What one reaper pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReapReport {
    /// Expired documents the pass found (at most the batch size).
    pub candidates: u64,
    /// Documents it deleted (fewer than `candidates` when some were written meanwhile).
    pub reaped: u64,
    /// LSN of its commit, `None` when it committed nothing.
    pub lsn: Option<u64>,
}

/// Reaper counters, kept for the life of the handle.
#[derive(Debug, Default)]
pub(crate) struct ReaperStats {
    pub reaped: AtomicU64,
    pub passes: AtomicU64,
}

impl Db {
    /// Runs one reaper pass now: deletes up to `Options::ttl_reap_batch` expired documents in
    /// one logged transaction with commit reason `ttl`. Returns what it did.
    pub fn reap_expired(&self) -> Result<ReapReport> {
        let view = self.view();
        let batch = self.options().ttl_reap_batch.max(1);
        let mut ops = vec![];
        'outer: for (name, coll) in view.state.collections.iter() {
            for (_, key) in coll.expired_at(view.now) {
                if ops.len() >= batch {
                    break 'outer;
                }
                let Some(doc) = coll.get_doc(key) else {
                    continue;
                };
                ops.push(EncodedOp {
                    collection: name.clone(),
                    key: key.clone(),
                    kind: EncodedKind::Reap(doc.meta.version),
                    if_version: None,
                    schema_version: None,
                    expiry: Expiry::Unset,
                });
            }
        }
        let mut report = ReapReport {
            candidates: ops.len() as u64,
            ..ReapReport::default()
        };
        let stats = self.reaper_stats();
        stats.passes.fetch_add(1, Ordering::Relaxed);
        if ops.is_empty() {
            return Ok(report);
        }
        let committed = self.commit_encoded(
            ops,
            self.options().durability,
            CommitMeta {
                reason: CommitReason::Ttl,
                target_lsn: 0,
            },
        )?;
        report.reaped = committed.results.iter().filter(|r| r.written).count() as u64;
        if report.reaped > 0 {
            report.lsn = Some(committed.lsn);
        }
        stats.reaped.fetch_add(report.reaped, Ordering::Relaxed);
        Ok(report)
    }
}

/// The background reaper: a pass every `Options::ttl_reap_interval` until shutdown.
pub(crate) fn reap_loop(inner: Weak<Inner>) {
    Db::every(
        inner,
        |o| o.ttl_reap_interval,
        |db| {
            if let Err(e) = db.reap_expired() {
                tracing::warn!(error = %e, "TTL reaper pass failed");
            }
        },
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use std::time::Duration;

    use serde_json::json;

    use crate::state::{encode_transaction, EncodedKind, EncodedOp, State};
    use crate::txn::{CommitMeta, Expiry, Transaction};

    fn commit(state: &mut State, txn: &Transaction, ts: u64) {
        let ops = encode_transaction(txn, 1 << 20).unwrap();
        let p = state
            .prepare(&ops, state.lsn + 1, ts, 1 << 20, CommitMeta::default())
            .unwrap();
        state.apply(&p.record);
    }

    fn reap(key: &str, version: u64) -> EncodedOp {
        EncodedOp {
            collection: "c".into(),
            key: key.into(),
            kind: EncodedKind::Reap(version),
            if_version: None,
            schema_version: None,
            expiry: Expiry::Unset,
        }
    }

    /// A pass saw `k` expired at version 1; before its commit, a write refreshed `k` (version
    /// 2, live again). The reaper's delete names version 1, so it leaves `k` alone and the
    /// pass's other delete still goes through: no conflict aborts the batch.
    #[test]
    fn a_refresh_between_a_reaper_pass_and_its_commit_wins() {
        let mut s = State::default();
        let mut t = Transaction::new();
        t.put("c", "k", json!(1)).ttl(Duration::from_secs(1));
        t.put("c", "j", json!(1)).ttl(Duration::from_secs(1));
        commit(&mut s, &t, 1_000_000);
        // Both expired at 2 s; `k` is written again at 3 s (a create over an expired one).
        let mut t = Transaction::new();
        t.create("c", "k", json!(2)).ttl(Duration::from_secs(60));
        commit(&mut s, &t, 3_000_000);
        let p = s
            .prepare(
                &[reap("k", 1), reap("j", 1)],
                s.lsn + 1,
                4_000_000,
                1 << 20,
                CommitMeta::default(),
            )
            .unwrap();
        assert!(
            !p.results[0].written,
            "the refreshed document is not reaped"
        );
        assert!(p.results[1].written);
        let keys: Vec<_> = p.record.ops.iter().map(|o| o.key.to_string()).collect();
        assert_eq!(keys, ["j"]);
        // A reaper delete of a document that is not expired at the commit's time is a no-op
        // too, whatever version it names.
        let p = s
            .prepare(
                &[reap("k", 2)],
                s.lsn + 1,
                4_000_000,
                1 << 20,
                CommitMeta::default(),
            )
            .unwrap();
        assert!(!p.results[0].written);
        assert!(p.record.ops.is_empty());
    }

    /// A reaper delete removes only the version its pass saw expired: when the document was
    /// rewritten meanwhile (here with a short TTL that has run out too by the reaper's
    /// commit), the delete is a no-op and the next pass judges the new version, so what the
    /// log and feed show as reaped is exactly what a pass saw.
    #[test]
    fn a_reaper_delete_removes_only_the_version_its_pass_saw() {
        let mut s = State::default();
        let mut t = Transaction::new();
        t.put("c", "k", json!(1)).ttl(Duration::from_secs(1));
        commit(&mut s, &t, 1_000_000);
        // The pass sees version 1 expired at 2 s; version 2 is written at 3 s with 1 s TTL.
        let mut t = Transaction::new();
        t.put("c", "k", json!(2)).ttl(Duration::from_secs(1));
        commit(&mut s, &t, 3_000_000);
        let p = s
            .prepare(
                &[reap("k", 1)],
                s.lsn + 1,
                5_000_000,
                1 << 20,
                CommitMeta::default(),
            )
            .unwrap();
        assert!(
            !p.results[0].written,
            "version 2 is not the one the pass saw"
        );
        assert!(p.record.ops.is_empty());
        let p = s
            .prepare(
                &[reap("k", 2)],
                s.lsn + 1,
                5_000_000,
                1 << 20,
                CommitMeta::default(),
            )
            .unwrap();
        assert!(p.results[0].written);
    }
}

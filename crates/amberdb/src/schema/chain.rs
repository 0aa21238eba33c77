//! Up and down chains: the path of migrations between two schema versions, and running a
//! document along it.
//!
//! The up path from `a` to `b` is the shortest sequence of migrations (fewest hops, ties to
//! the lowest `(from, to)`) whose `from`s and `to`s chain `a` to `b`. The down path from `b`
//! to `a` is the same path run backwards through each migration's `down`; a migration on it
//! without a `down` makes the down path missing, and the error names that migration.

use std::collections::{BTreeMap, VecDeque};

use serde_json::Value;

use super::steps::Runner;
use super::CompiledSpec;
use crate::error::Error;
use crate::spec::CollectionSpec;

/// The up path from `from` to `to` (`from < to`), as `(from, to)` pairs; empty when equal.
pub(crate) fn up_path(spec: &CollectionSpec, from: u32, to: u32) -> Option<Vec<(u32, u32)>> {
    if from == to {
        return Some(vec![]);
    }
    let mut edges: Vec<(u32, u32)> = spec.migrations.iter().map(|m| (m.from, m.to)).collect();
    edges.sort_unstable();
    let mut prev: BTreeMap<u32, (u32, u32)> = BTreeMap::new();
    let mut queue = VecDeque::from([from]);
    while let Some(v) = queue.pop_front() {
        if v == to {
            break;
        }
        for &(f, t) in edges.iter().filter(|(f, t)| *f == v && *t <= to) {
            if t != from && !prev.contains_key(&t) {
                prev.insert(t, (f, t));
                queue.push_back(t);
            }
        }
    }
    let mut path = vec![];
    let mut at = to;
    while at != from {
        let edge = *prev.get(&at)?;
        path.push(edge);
        at = edge.0;
    }
    path.reverse();
    Some(path)
}

/// Why a document could not be moved between versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChainError {
    /// No up path.
    NoPath { from: u32, to: u32 },
    /// The down path needs this migration's `down`, which it does not have.
    NoDown {
        from: u32,
        to: u32,
        missing: (u32, u32),
    },
    /// A step failed.
    Step {
        from: u32,
        to: u32,
        migration: (u32, u32),
        direction: &'static str,
        index: usize,
        message: String,
    },
}

impl ChainError {
    /// The engine error for this failure on `collection/key`.
    pub(crate) fn into_error(self, collection: &str, key: &str) -> Error {
        match self {
            ChainError::NoPath { from, to } => Error::MigrationFailed {
                collection: collection.into(),
                key: key.into(),
                from,
                to,
                message: format!("no up migration path from version {from} to {to}"),
            },
            ChainError::NoDown { from, to, missing } => Error::NoDownMigration {
                collection: collection.into(),
                from,
                to,
                missing_from: missing.0,
                missing_to: missing.1,
            },
            ChainError::Step {
                from,
                to,
                migration,
                direction,
                index,
                message,
            } => Error::MigrationFailed {
                collection: collection.into(),
                key: key.into(),
                from,
                to,
                message: format!(
                    "migration {} -> {} {direction} step {index}: {message}",
                    migration.0, migration.1
                ),
            },
        }
    }
}

/// The migrations and directions that take a document from `from` to `to`.
pub(crate) fn plan(
    spec: &CompiledSpec,
    from: u32,
    to: u32,
) -> Result<Vec<(&crate::spec::Migration, bool)>, ChainError> {
    let (lo, hi) = (from.min(to), from.max(to));
    let path = up_path(&spec.spec, lo, hi).ok_or(ChainError::NoPath { from: lo, to: hi })?;
    let mut out = vec![];
    for (f, t) in path {
        let m = spec
            .migration(f, t)
            .ok_or(ChainError::NoPath { from: f, to: t })?;
        out.push(m);
    }
    if from <= to {
        return Ok(out.into_iter().map(|m| (m, true)).collect());
    }
    let mut down = vec![];
    for m in out.into_iter().rev() {
        if m.down.is_none() {
            return Err(ChainError::NoDown {
                from,
                to,
                missing: (m.from, m.to),
            });
        }
        down.push((m, false));
    }
    Ok(down)
}

/// `doc` (at version `from`) moved to version `to` through the up or down chain.
pub(crate) fn convert(
    spec: &CompiledSpec,
    run: &dyn Runner,
    mut doc: Value,
    from: u32,
    to: u32,
) -> Result<Value, ChainError> {
    for (m, up) in plan(spec, from, to)? {
        let (steps, direction) = if up {
            (m.up.as_slice(), "up")
        } else {
            (m.down.as_deref().unwrap_or_default(), "down")
        };
        for (index, s) in steps.iter().enumerate() {
            s.apply(&mut doc, run).map_err(|message| ChainError::Step {
                from,
                to,
                migration: (m.from, m.to),
                direction,
                index,
                message,
            })?;
        }
    }
    Ok(doc)
}

//! Collection specs: what a collection says about its documents, stored in the database
//! itself so the log, point-in-time restore and backups carry it like any document.
//!
//! A spec is one JSON document in the reserved collection [`SPEC_COLLECTION`], keyed by the
//! collection's name. The name starts with `.`, which `validate_collection` refuses for
//! users, so no user write, read or listing reaches it, and collection listings hide it.
//! Writing a spec is an ordinary logged commit (reason `write`), so history, the change feed
//! and reverts see it as well.
//!
//! A spec holds `default_ttl_s` and the schema model: the collection's current
//! `schema_version`, per version an optional JSON Schema, and migrations between versions
//! (declarative steps, see [`crate::schema`]). A spec without `schema_version` leaves the
//! collection unmanaged: writes keep the `schema_version` they declare and nothing is
//! validated. Unknown fields are kept when read, so a newer spec written by a later version
//! survives a round trip through this one.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::state::{EncodedKind, EncodedOp, EncodedValue, State};
use crate::txn::Expiry;

/// The reserved collection holding one spec document per collection.
pub const SPEC_COLLECTION: &str = ".spec";

/// What a collection says about its documents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CollectionSpec {
    /// The version documents are stored and returned at; `None` for an unmanaged collection
    /// (no validation, no migrations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<u32>,
    /// Per schema version (contiguous from 1) what a document at that version looks like.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub versions: BTreeMap<u32, VersionSpec>,
    /// Migrations between versions, each `from` a lower `to` a higher version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub migrations: Vec<Migration>,
    /// Changes of applied migrations that were forced (`force`), oldest first. Kept by the
    /// engine: a new spec inherits the stored spec's list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forced: Vec<ForcedChange>,
    /// Writes that set no expiry of their own expire this many seconds after their commit
    /// (positive, at most `limits::MAX_TTL`); `None` for no default.
    #[serde(default)]
    pub default_ttl_s: Option<u64>,
    /// Fields this version does not know (written by a later version), kept as they are.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// One schema version of a collection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionSpec {
    /// A JSON Schema (draft 2020-12) every document stored at this version must satisfy;
    /// `None` accepts any document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
    /// Fields this version does not know, kept as they are.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// A migration from one schema version to a higher one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Migration {
    /// The version it reads.
    pub from: u32,
    /// The version it produces (higher than `from`).
    pub to: u32,
    /// Steps that turn a document at `from` into one at `to`.
    pub up: Vec<crate::schema::Step>,
    /// Steps that turn a document at `to` back into one at `from`; without them, readers and
    /// writers at `from` cannot see documents stored at `to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<Vec<crate::schema::Step>>,
    /// SHA-256 (hex) of the canonical JSON of `{from, to, up, down}`; set by the engine when
    /// the spec is stored (a value sent by a client is replaced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

impl Migration {
    /// The checksum of this migration's definition (`from`, `to`, `up`, `down`).
    pub fn compute_checksum(&self) -> String {
        let def = serde_json::json!({
            "from": self.from, "to": self.to, "up": self.up, "down": self.down,
        });
        hex::encode(crate::codec::sha256(&crate::document::canonical_json(&def)))
    }
}

/// A forced change of a migration that had been applied (recorded in the spec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForcedChange {
    /// The migration's `from`.
    pub from: u32,
    /// The migration's `to`.
    pub to: u32,
    /// Checksum of the definition that had been applied.
    pub old_checksum: String,
    /// Checksum of the new definition; `None` when the migration was removed.
    pub new_checksum: Option<String>,
    /// The stored spec's schema version when it was forced.
    pub at_schema_version: u32,
}

/// How a spec is stored ([`crate::Db::set_spec_with`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetSpecOptions {
    /// Allow changing or removing a migration that has been applied (one whose `to` is at or
    /// below the stored spec's `schema_version`); the change is recorded in `forced`.
    pub force: bool,
}

impl CollectionSpec {
    /// Checks the spec on its own: the default TTL's range and the schema model (versions
    /// contiguous from 1, every older version reaching the current one through `up`, every
    /// JSON Schema compiling under draft 2020-12, every step well-formed, the size limits).
    /// The error says exactly what is wrong.
    pub fn validate(&self) -> Result<()> {
        if let Some(s) = self.default_ttl_s {
            if s == 0 || s > crate::limits::MAX_TTL.as_secs() {
                return Err(Error::InvalidArgument(format!(
                    "default_ttl_s must be between 1 and {} (got {s})",
                    crate::limits::MAX_TTL.as_secs()
                )));
            }
        }
        crate::schema::CompiledSpec::compile(self).map(|_| ())
    }

    /// Whether the collection is schema-managed (has a `schema_version`).
    pub fn is_managed(&self) -> bool {
        self.schema_version.is_some()
    }

    /// Fills in each migration's checksum and checks the change from `stored` (the spec in
    /// force): a migration that has been applied (its `to` at or below the stored
    /// `schema_version`) may not change or disappear unless `force`, which records it.
    fn prepare_from(&mut self, stored: &CollectionSpec, opts: SetSpecOptions) -> Result<()> {
        for m in &mut self.migrations {
            m.checksum = Some(m.compute_checksum());
        }
        let mut forced = stored.forced.clone();
        let applied_up_to = stored.schema_version.unwrap_or(0);
        for old in &stored.migrations {
            if old.to > applied_up_to {
                continue;
            }
            let old_sum = old
                .checksum
                .clone()
                .unwrap_or_else(|| old.compute_checksum());
            let new = self
                .migrations
                .iter()
                .find(|m| m.from == old.from && m.to == old.to);
            let new_sum = new.and_then(|m| m.checksum.clone());
            if new_sum.as_deref() == Some(old_sum.as_str()) {
                continue;
            }
            if !opts.force {
                return Err(Error::InvalidArgument(format!(
                    "migration {} -> {} has been applied (the spec is at version {applied_up_to}) \
                     and would be {}; its checksum is {old_sum}. Add a new migration instead, \
                     or set force to record the change",
                    old.from,
                    old.to,
                    if new.is_some() { "changed" } else { "removed" }
                )));
            }
            forced.push(ForcedChange {
                from: old.from,
                to: old.to,
                old_checksum: old_sum,
                new_checksum: new_sum,
                at_schema_version: applied_up_to,
            });
        }
        self.forced = forced;
        Ok(())
    }
}

/// The spec of `collection` stored in `state` (the default spec when none is stored).
pub(crate) fn read(state: &State, collection: &str) -> CollectionSpec {
    state
        .get(SPEC_COLLECTION, collection)
        .and_then(|d| serde_json::from_slice(&d.value).ok())
        .unwrap_or_default()
}

/// The default TTL of `collection` in `state`, for `State::prepare`.
pub(crate) fn default_ttl(state: &State, collection: &str) -> Option<Duration> {
    if crate::state::is_system_collection(collection) {
        return None;
    }
    read(state, collection)
        .default_ttl_s
        .map(Duration::from_secs)
}

/// The stored spec document of `collection` (`None` when none was set).
pub(crate) fn stored<'a>(
    state: &'a State,
    collection: &str,
) -> Option<&'a crate::document::Document> {
    state.get(SPEC_COLLECTION, collection)
}

/// The operation that stores `spec` for `collection`, checked against `current` (the spec in
/// force) for changed applied migrations. The op's `if_version` is the current spec
/// document's version, so a concurrent spec change makes it conflict instead of losing one.
pub(crate) fn write_op(
    collection: &str,
    spec: &CollectionSpec,
    current: &CollectionSpec,
    current_version: u64,
    opts: SetSpecOptions,
) -> Result<EncodedOp> {
    crate::document::validate_collection(collection)?;
    let mut spec = spec.clone();
    spec.prepare_from(current, opts)?;
    let value = serde_json::to_value(&spec).map_err(|e| Error::InvalidValue(e.to_string()))?;
    let size = crate::document::canonical_json(&value).len();
    if size > crate::limits::MAX_SPEC_BYTES {
        return Err(Error::InvalidArgument(format!(
            "the spec is {size} bytes, over the limit of {} bytes",
            crate::limits::MAX_SPEC_BYTES
        )));
    }
    spec.validate()?;
    Ok(EncodedOp {
        collection: SPEC_COLLECTION.into(),
        key: collection.into(),
        kind: EncodedKind::Put(EncodedValue::new(&value)),
        if_version: Some(current_version),
        schema_version: None,
        expiry: Expiry::Never,
    })
}

//! Collection specs: what a collection says about its documents, stored in the database
//! itself so the log, point-in-time restore and backups carry it like any document.
//!
//! A spec is one JSON document in the reserved collection [`SPEC_COLLECTION`], keyed by the
//! collection's name. The name starts with `.`, which `validate_collection` refuses for
//! users, so no user write, read or listing reaches it, and collection listings hide it.
//! Writing a spec is an ordinary logged commit (reason `write`), so history, the change feed
//! and reverts see it as well.
//!
//! Today a spec holds only `default_ttl_s`; the schema issue extends the same document
//! (schema versions, JSON Schemas, migrations): unknown fields are kept when read, so a
//! newer spec written by a later version survives a round trip through this one.

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
    /// Writes that set no expiry of their own expire this many seconds after their commit
    /// (positive, at most `limits::MAX_TTL`); `None` for no default.
    #[serde(default)]
    pub default_ttl_s: Option<u64>,
    /// Fields this version does not know (written by a later version), kept as they are.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl CollectionSpec {
    /// Refuses a default TTL of 0 or above `limits::MAX_TTL`.
    pub fn validate(&self) -> Result<()> {
        if let Some(s) = self.default_ttl_s {
            if s == 0 || s > crate::limits::MAX_TTL.as_secs() {
                return Err(Error::InvalidArgument(format!(
                    "default_ttl_s must be between 1 and {} (got {s})",
                    crate::limits::MAX_TTL.as_secs()
                )));
            }
        }
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

/// The operation that stores `spec` for `collection`.
pub(crate) fn write_op(collection: &str, spec: &CollectionSpec) -> Result<EncodedOp> {
    crate::document::validate_collection(collection)?;
    spec.validate()?;
    let value = serde_json::to_value(spec).map_err(|e| Error::InvalidValue(e.to_string()))?;
    Ok(EncodedOp {
        collection: SPEC_COLLECTION.into(),
        key: collection.into(),
        kind: EncodedKind::Put(EncodedValue::new(&value)),
        if_version: None,
        schema_version: None,
        expiry: Expiry::Never,
    })
}

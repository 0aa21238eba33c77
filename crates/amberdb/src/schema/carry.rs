//! The rule that lets an old client write without destroying what it does not know.
//!
//! A client at version `d` writes a document stored at version `s`, while the collection is
//! at version `c`. The client saw `before = convert(stored, s -> d)` and wants `after` (its
//! whole new value, or `before` with its patch applied). Both are carried up to `c`, and the
//! difference between them, a JSON Patch computed at version `c`, is what the client
//! changed; it is applied to the stored document at `c`. Fields that exist only in later
//! versions are in neither carried value, so the patch never mentions them and they survive
//! (Cambria's lenses and Protobuf's unknown fields, with the up chain as the lens). A patch
//! that no longer applies (the stored document's structure differs where the client
//! changed it) fails the write with `Error::MigrationFailed`; nothing is guessed.

use serde_json::Value;

use super::chain::{convert, ChainError};
use super::steps::Runner;
use super::CompiledSpec;
use crate::error::{Error, Result};

/// The value to store at the current version for a write by a client at `declared`.
/// `stored` is the document as the transaction sees it (value and stored version), `None`
/// when absent; `after` is what the client wants at its version (for a patch: the patched
/// view, computed by the caller from `view`).
pub(crate) fn carry(
    spec: &CompiledSpec,
    run: &dyn Runner,
    collection: &str,
    key: &str,
    stored: Option<(&Value, u32)>,
    declared: u32,
    after: Value,
) -> Result<Value> {
    let current = spec.current.unwrap_or(declared);
    let fail = |e: ChainError| e.into_error(collection, key);
    let Some((stored, s)) = stored else {
        return convert(spec, run, after, declared, current).map_err(fail);
    };
    if declared == current {
        return Ok(after);
    }
    let before = view(spec, run, collection, key, stored, s, declared)?;
    let old_c = convert(spec, run, before, declared, current).map_err(fail)?;
    let new_c = convert(spec, run, after, declared, current).map_err(fail)?;
    let mut doc = convert(spec, run, stored.clone(), s, current).map_err(fail)?;
    let change = json_patch::diff(&old_c, &new_c);
    json_patch::patch(&mut doc, &change).map_err(|e| Error::MigrationFailed {
        collection: collection.into(),
        key: key.into(),
        from: declared,
        to: current,
        message: format!(
            "the change of a client at version {declared} cannot be carried to the stored \
             document at version {current}: {e}"
        ),
    })?;
    Ok(doc)
}

/// The stored document (at `s`) as a client at version `at` sees it.
pub(crate) fn view(
    spec: &CompiledSpec,
    run: &dyn Runner,
    collection: &str,
    key: &str,
    stored: &Value,
    s: u32,
    at: u32,
) -> Result<Value> {
    convert(spec, run, stored.clone(), s, at).map_err(|e| e.into_error(collection, key))
}

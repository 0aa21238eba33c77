//! Reads across schema versions: a document stored at one version presented at the version
//! the reader asks for (the collection's current one by default), upgraded or downgraded
//! lazily and never persisted.

use std::sync::Arc;

use super::{CompiledSpec, NativeSteps};
use crate::document::Document;
use crate::error::{Error, Result};

/// A document as a reader at a schema version sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedDoc {
    /// The document: its value at the returned version, and `meta.schema_version` that
    /// version; the other metadata (version, timestamps, LSN) is the stored document's, and
    /// `meta.sha256` covers the stored bytes.
    pub doc: Document,
    /// The version the document is stored at.
    pub stored_schema_version: u32,
}

/// Presents documents of one collection at one schema version.
#[derive(Debug, Clone)]
pub struct Reader {
    collection: String,
    spec: Arc<CompiledSpec>,
    natives: NativeSteps,
    target: Option<u32>,
}

impl Reader {
    /// A reader of `collection` under `spec` at version `want` (`None`: the current one).
    /// Refuses a version the spec does not define.
    pub(crate) fn new(
        collection: &str,
        spec: Arc<CompiledSpec>,
        natives: NativeSteps,
        want: Option<u32>,
    ) -> Result<Reader> {
        let target = match (spec.current, want) {
            (None, _) => None,
            (Some(c), None) => Some(c),
            (Some(_), Some(w)) if w == 0 || w > spec.max_version => {
                return Err(Error::InvalidArgument(format!(
                    "schema version {w} is not defined for collection {collection} \
                     (versions 1 to {})",
                    spec.max_version
                )))
            }
            (Some(_), Some(w)) => Some(w),
        };
        Ok(Reader {
            collection: collection.to_owned(),
            spec,
            natives,
            target,
        })
    }

    /// The version documents are returned at (`None` in an unmanaged collection: as stored).
    pub fn target(&self) -> Option<u32> {
        self.target
    }

    /// `doc` at the reader's version.
    pub fn present(&self, doc: Document) -> Result<VersionedDoc> {
        let stored = doc.meta.schema_version;
        let mut doc = doc;
        if let Some((value, version)) = self.present_value(&doc.key, &doc.value, stored)? {
            if let Some(value) = value {
                doc.value = value.into();
            }
            doc.meta.schema_version = version;
        }
        Ok(VersionedDoc {
            doc,
            stored_schema_version: stored,
        })
    }

    /// The stored value `value` of `key`, stored at schema version `stored`, at the reader's
    /// version: `None` in an unmanaged collection (as stored), else the version returned and
    /// the migrated canonical bytes (`None` when the value is returned as stored).
    pub fn present_value(
        &self,
        key: &str,
        value: &[u8],
        stored: u32,
    ) -> Result<Option<(Option<Vec<u8>>, u32)>> {
        let Some(target) = self.target else {
            return Ok(None);
        };
        let from = stored.max(1);
        if from == target {
            return Ok(Some((None, target)));
        }
        let parsed: serde_json::Value = serde_json::from_slice(value)
            .map_err(|e| Error::InvalidValue(format!("stored value does not parse: {e}")))?;
        let out = super::chain::convert(&self.spec, &self.natives, parsed, from, target)
            .map_err(|e| e.into_error(&self.collection, key))?;
        Ok(Some((Some(crate::document::canonical_json(&out)), target)))
    }
}

impl VersionedDoc {
    /// The JSON envelope of `?meta=true`: [`Document::envelope_raw`] plus
    /// `stored_schema_version`.
    pub fn envelope_raw(&self, collection: &str) -> Box<serde_json::value::RawValue> {
        self.doc
            .envelope_with(collection, Some(self.stored_schema_version))
    }
}

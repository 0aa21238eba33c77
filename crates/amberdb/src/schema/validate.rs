//! A collection spec compiled for use: its structure checked, its JSON Schemas compiled
//! (draft 2020-12, the `jsonschema` crate), and the cache that keeps compiled specs keyed by
//! the SHA-256 of the stored spec document, so the committer compiles a spec once and never
//! per write.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::limits::{MAX_MIGRATION_STEPS, MAX_SCHEMA_ERRORS, MAX_SCHEMA_VERSION};
use crate::spec::{CollectionSpec, Migration};

/// One way a document fails its schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaError {
    /// JSON Pointer to the offending part of the document.
    pub instance_path: String,
    /// JSON Pointer to the schema keyword that failed.
    pub schema_path: String,
    /// What is wrong.
    pub message: String,
}

/// A spec ready to validate and migrate documents.
pub struct CompiledSpec {
    /// The spec it was compiled from.
    pub spec: CollectionSpec,
    /// The current schema version (`None`: unmanaged).
    pub current: Option<u32>,
    /// Highest defined version.
    pub max_version: u32,
    validators: BTreeMap<u32, jsonschema::Validator>,
}

impl std::fmt::Debug for CompiledSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledSpec")
            .field("current", &self.current)
            .field("max_version", &self.max_version)
            .finish_non_exhaustive()
    }
}

fn refuse(msg: String) -> Error {
    Error::InvalidArgument(format!("invalid spec: {msg}"))
}

impl CompiledSpec {
    /// Checks and compiles `spec`; native steps are accepted by name (the caller checks them
    /// against its registry).
    pub fn compile(spec: &CollectionSpec) -> Result<CompiledSpec> {
        Self::compile_with(spec, &|_| true)
    }

    /// Checks and compiles `spec`, refusing native steps `known_native` does not know.
    pub(crate) fn compile_with(
        spec: &CollectionSpec,
        known_native: &dyn Fn(&str) -> bool,
    ) -> Result<CompiledSpec> {
        let max_version = spec.versions.keys().next_back().copied().unwrap_or(0);
        let Some(current) = spec.schema_version else {
            if !spec.versions.is_empty() || !spec.migrations.is_empty() {
                return Err(refuse(
                    "versions and migrations need a schema_version (the current version)".into(),
                ));
            }
            return Ok(CompiledSpec {
                spec: spec.clone(),
                current: None,
                max_version: 0,
                validators: BTreeMap::new(),
            });
        };
        if current == 0 || current > MAX_SCHEMA_VERSION {
            return Err(refuse(format!(
                "schema_version must be between 1 and {MAX_SCHEMA_VERSION} (got {current})"
            )));
        }
        if max_version > MAX_SCHEMA_VERSION {
            return Err(refuse(format!(
                "version {max_version} is above the limit of {MAX_SCHEMA_VERSION}"
            )));
        }
        // Versions run 1..=max with no gap, and include the current one.
        for v in 1..=max_version.max(current) {
            if !spec.versions.contains_key(&v) {
                return Err(refuse(format!(
                    "versions must run contiguously from 1: version {v} is missing{}",
                    if v == current {
                        " (it is the schema_version)"
                    } else {
                        ""
                    }
                )));
            }
        }
        let max_version = max_version.max(current);
        let mut seen = std::collections::BTreeSet::new();
        for m in &spec.migrations {
            check_migration(m, max_version, known_native)?;
            if !seen.insert((m.from, m.to)) {
                return Err(refuse(format!(
                    "migration {} -> {} is defined twice",
                    m.from, m.to
                )));
            }
        }
        // Every older version reaches the current one (and every version the maximum, so a
        // batch migration to any defined version has a path).
        for v in 1..current {
            if super::chain::up_path(spec, v, current).is_none() {
                return Err(refuse(format!(
                    "version {v} cannot reach the current version {current} through up \
                     migrations"
                )));
            }
        }
        let mut validators = BTreeMap::new();
        for (v, vs) in &spec.versions {
            if let Some(schema) = &vs.schema {
                let validator = jsonschema::draft202012::new(schema).map_err(|e| {
                    refuse(format!(
                        "the schema of version {v} does not compile (draft 2020-12): {e} at {}",
                        e.schema_path()
                    ))
                })?;
                validators.insert(*v, validator);
            }
        }
        Ok(CompiledSpec {
            spec: spec.clone(),
            current: Some(current),
            max_version,
            validators,
        })
    }

    /// Every way `doc` fails the schema of `version` (at most `limits::MAX_SCHEMA_ERRORS`),
    /// and how many there are in all; empty when it passes or the version has no schema.
    pub fn validate(&self, version: u32, doc: &Value) -> (Vec<SchemaError>, usize) {
        let Some(v) = self.validators.get(&version) else {
            return (vec![], 0);
        };
        // The common case, a valid document, takes the validator's fast path (no error
        // objects, no paths built); only a refused document pays for the full report.
        if v.is_valid(doc) {
            return (vec![], 0);
        }
        let mut errors = vec![];
        let mut total = 0;
        for e in v.iter_errors(doc) {
            total += 1;
            if errors.len() < MAX_SCHEMA_ERRORS {
                errors.push(SchemaError {
                    instance_path: e.instance_path().to_string(),
                    schema_path: e.schema_path().to_string(),
                    message: e.to_string(),
                });
            }
        }
        (errors, total)
    }

    /// [`CompiledSpec::validate`] as a result: `Error::SchemaValidation` naming the document.
    pub fn check(&self, collection: &str, key: &str, version: u32, doc: &Value) -> Result<()> {
        let (errors, total) = self.validate(version, doc);
        if total == 0 {
            return Ok(());
        }
        Err(Error::SchemaValidation {
            collection: collection.to_owned(),
            key: key.to_owned(),
            schema_version: version,
            errors,
            total,
        })
    }

    /// The migration `from -> to`.
    pub(crate) fn migration(&self, from: u32, to: u32) -> Option<&Migration> {
        self.spec
            .migrations
            .iter()
            .find(|m| m.from == from && m.to == to)
    }
}

fn check_migration(
    m: &Migration,
    max_version: u32,
    known_native: &dyn Fn(&str) -> bool,
) -> Result<()> {
    let name = format!("migration {} -> {}", m.from, m.to);
    if m.from == 0 || m.to <= m.from {
        return Err(refuse(format!(
            "{name}: from must be a version and to a higher one"
        )));
    }
    if m.to > max_version {
        return Err(refuse(format!(
            "{name}: version {} is not defined in versions",
            m.to
        )));
    }
    for (dir, steps) in [("up", Some(&m.up)), ("down", m.down.as_ref())] {
        let Some(steps) = steps else { continue };
        if count(steps) > MAX_MIGRATION_STEPS {
            return Err(refuse(format!(
                "{name}: {dir} has {} steps, over the limit of {MAX_MIGRATION_STEPS}",
                count(steps)
            )));
        }
        for (i, s) in steps.iter().enumerate() {
            s.check(known_native)
                .map_err(|e| refuse(format!("{name}: {dir} step {i}: {e}")))?;
        }
    }
    Ok(())
}

fn count(steps: &[super::Step]) -> usize {
    fn one(s: &super::Step) -> usize {
        match s {
            super::Step::Map { step, .. } => 1 + one(step),
            _ => 1,
        }
    }
    steps.iter().map(one).sum()
}

/// Most compiled specs kept; the cache is emptied when it would hold more.
const CACHE_ENTRIES: usize = 256;

type Cache = Mutex<HashMap<[u8; 32], Arc<CompiledSpec>>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The compiled spec of `collection` in `state` (an unmanaged one when none is stored or the
/// stored spec does not parse), compiled once per stored spec document.
pub(crate) fn compiled(state: &crate::state::State, collection: &str) -> Result<Arc<CompiledSpec>> {
    let Some(doc) = crate::spec::stored(state, collection) else {
        return Ok(unmanaged());
    };
    if let Some(c) = cache()
        .lock()
        .ok()
        .and_then(|c| c.get(&doc.meta.sha256).cloned())
    {
        return Ok(c);
    }
    let spec: CollectionSpec = serde_json::from_slice(&doc.value).unwrap_or_default();
    let c = Arc::new(CompiledSpec::compile(&spec)?);
    if let Ok(mut cache) = cache().lock() {
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(doc.meta.sha256, c.clone());
    }
    Ok(c)
}

fn unmanaged() -> Arc<CompiledSpec> {
    static UNMANAGED: OnceLock<Arc<CompiledSpec>> = OnceLock::new();
    UNMANAGED
        .get_or_init(|| {
            Arc::new(CompiledSpec {
                spec: CollectionSpec::default(),
                current: None,
                max_version: 0,
                validators: BTreeMap::new(),
            })
        })
        .clone()
}

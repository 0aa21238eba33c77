//! Batch migration: every document of a collection moved to one schema version, checked in
//! a dry run or written with the spec's new version in one atomic logged commit (reason
//! `migration`), and the record of applied migrations (the reserved collection
//! [`MIGRATIONS_COLLECTION`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::chain::{convert, plan};
use crate::error::{Error, Result};
use crate::log::record::{LoggedOp, OpKind, WrittenDoc};
use crate::state::{EncodedKind, EncodedOp, EncodedValue};
use crate::txn::Expiry;

/// The reserved collection holding one record per applied batch migration, keyed
/// `{collection}/{sequence:08}`.
pub const MIGRATIONS_COLLECTION: &str = ".migrations";

/// Bytes one put adds to a commit frame besides its value, collection and key: 78 in log
/// format 5 (lengths, versions, timestamps, expiry, SHA-256; `CommitRecord::encoded_len`),
/// rounded up. (The checkpoint-entry bound `limits::MAX_ENTRY_OVERHEAD`, 4 KiB, refused a
/// million small documents, whose real frame is a quarter of the limit.) The commit itself
/// still refuses a frame over `limits::MAX_PAYLOAD_LEN`, writing nothing.
const OP_FIXED_BYTES: usize = 128;

/// Most failure and round-trip samples a dry run lists.
pub const MAX_DRY_RUN_SAMPLES: usize = 20;

/// What to migrate to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrateOptions {
    /// The target schema version.
    pub to: u32,
    /// Only check and report; write nothing.
    pub dry_run: bool,
}

/// One document that could not be migrated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationFailure {
    /// The document's key.
    pub key: String,
    /// Why.
    pub error: String,
}

/// What a batch migration found (and did).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationReport {
    /// The collection.
    pub collection: String,
    /// The spec's current version before.
    pub from: u32,
    /// The target version.
    pub to: u32,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Live documents considered.
    pub documents: u64,
    /// Live documents per stored schema version.
    pub by_stored_version: BTreeMap<u32, u64>,
    /// Documents whose stored value or version would change (are rewritten).
    pub would_change: u64,
    /// Documents that fail (a step, or the target version's schema); a dry run lists at
    /// most [`MAX_DRY_RUN_SAMPLES`], a real run all of them.
    pub failures: Vec<MigrationFailure>,
    /// How many documents fail in all.
    pub failure_count: u64,
    /// Canonical JSON bytes of the documents before.
    pub bytes_before: u64,
    /// Canonical JSON bytes after (of the documents that migrate).
    pub bytes_after: u64,
    /// Whether every migration on the way has a `down` (so the round trip was checked).
    pub round_trip_checked: bool,
    /// Keys whose `down(up(doc))` differs from the document (at most
    /// [`MAX_DRY_RUN_SAMPLES`]).
    pub round_trip_failures: Vec<String>,
    /// How many documents fail the round trip.
    pub round_trip_failure_count: u64,
    /// The commit's LSN when the migration was written; `None` for a dry run or a refused one.
    pub lsn: Option<u64>,
}

/// An applied batch migration, as `Db::migrations` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedMigration {
    /// The spec's version before.
    pub from: u32,
    /// The version the collection was migrated to.
    pub to: u32,
    /// The commit's LSN (filled from the record's metadata).
    #[serde(default)]
    pub lsn: u64,
    /// The commit's time, microseconds since the Unix epoch (from the record's metadata).
    #[serde(default)]
    pub committed_at: u64,
    /// Documents considered.
    pub documents: u64,
    /// Documents rewritten.
    pub rewritten: u64,
    /// Checksums of the migrations on the path, in order: every migration between the
    /// lowest and the highest version involved (the spec's version before, the target, and
    /// the stored version of every document rewritten).
    pub checksums: Vec<String>,
    /// Live documents per stored schema version before the migration (absent in records
    /// written before this field existed).
    #[serde(default)]
    pub by_stored_version: BTreeMap<u32, u64>,
}

impl crate::Db {
    /// Migrates every live document of `collection` to `opts.to` (see docs/SCHEMAS.md): a
    /// dry run reports; a real run writes the rewritten documents, the spec at the new
    /// version and the migration record in one commit with reason `migration`, or nothing
    /// when any document fails (the report then lists every failure and `lsn` is `None`).
    /// A collection whose rewrite does not fit one commit frame is refused.
    pub fn migrate(&self, collection: &str, opts: MigrateOptions) -> Result<MigrationReport> {
        crate::document::validate_collection(collection)?;
        let view = self.view();
        let spec = super::compiled(&view.state, collection)?;
        let Some(from) = spec.current else {
            return Err(Error::InvalidArgument(format!(
                "collection {collection} has no schema_version: set a spec with versions first"
            )));
        };
        let to = opts.to;
        if to == 0 || to > spec.max_version {
            return Err(Error::InvalidArgument(format!(
                "schema version {to} is not defined for collection {collection} (versions 1 to {})",
                spec.max_version
            )));
        }
        let natives = &self.options().native_steps;
        let mut report = MigrationReport {
            collection: collection.to_owned(),
            from,
            to,
            dry_run: opts.dry_run,
            documents: 0,
            by_stored_version: BTreeMap::new(),
            would_change: 0,
            failures: vec![],
            failure_count: 0,
            bytes_before: 0,
            bytes_after: 0,
            round_trip_checked: true,
            round_trip_failures: vec![],
            round_trip_failure_count: 0,
            lsn: None,
        };
        let mut rewrites = vec![];
        let mut payload = 0usize;
        let max_doc_bytes = self.options().max_doc_bytes;
        let coll: std::sync::Arc<str> = collection.into();
        let limit = self
            .options()
            .max_txn_bytes
            .min(crate::limits::MAX_PAYLOAD_LEN);
        let docs = view
            .state
            .collections
            .get(collection)
            .map(|c| c.docs.clone())
            .unwrap_or_default();
        if !opts.dry_run {
            rewrites.reserve_exact(docs.len());
        }
        for doc in docs.values().filter(|d| d.meta.is_live_at(view.now())) {
            let stored = doc.meta.schema_version.max(1);
            report.documents += 1;
            *report.by_stored_version.entry(stored).or_default() += 1;
            report.bytes_before += doc.value.len() as u64;
            let fail = |report: &mut MigrationReport, error: String| {
                report.failure_count += 1;
                if !opts.dry_run || report.failures.len() < MAX_DRY_RUN_SAMPLES {
                    report.failures.push(MigrationFailure {
                        key: doc.key.to_string(),
                        error,
                    });
                }
            };
            let value: serde_json::Value = match serde_json::from_slice(&doc.value) {
                Ok(v) => v,
                Err(e) => {
                    fail(&mut report, format!("stored value does not parse: {e}"));
                    continue;
                }
            };
            let out = match convert(&spec, natives, value.clone(), stored, to) {
                Ok(v) => v,
                Err(e) => {
                    fail(&mut report, e.into_error(collection, &doc.key).to_string());
                    continue;
                }
            };
            if let Err(e) = spec.check(collection, &doc.key, to, &out) {
                fail(&mut report, e.to_string());
                continue;
            }
            if opts.dry_run && stored < to {
                match convert(&spec, natives, out.clone(), to, stored) {
                    Ok(back) if back == value => {}
                    Ok(_) => round_trip_failed(&mut report, &doc.key),
                    Err(super::chain::ChainError::NoDown { .. }) => {
                        report.round_trip_checked = false
                    }
                    Err(_) => round_trip_failed(&mut report, &doc.key),
                }
            }
            let encoded = EncodedValue::new(&out);
            drop((value, out));
            if encoded.bytes.len() > max_doc_bytes {
                let size = encoded.bytes.len();
                fail(
                    &mut report,
                    format!(
                        "migrated to version {to} it is {size} bytes, over the \
                         {max_doc_bytes}-byte document limit"
                    ),
                );
                continue;
            }
            report.bytes_after += encoded.bytes.len() as u64;
            if stored == to && encoded.sha256 == doc.meta.sha256 {
                continue;
            }
            report.would_change += 1;
            if opts.dry_run || report.failure_count > 0 {
                continue;
            }
            payload += encoded.bytes.len() + collection.len() + doc.key.len() + OP_FIXED_BYTES;
            if payload > limit {
                return Err(Error::InvalidArgument(format!(
                    "migrating collection {collection} rewrites more than {limit} bytes, the \
                     largest commit: it cannot be done in one atomic commit (see \
                     docs/SCHEMAS.md, batch migration of large collections)"
                )));
            }
            // The rewrite as it is logged, built here from the view: the committer only
            // checks that the document is still the one seen (its LSN and version), so a
            // concurrent write makes the whole migration conflict rather than be lost.
            rewrites.push(LoggedOp {
                collection: coll.clone(),
                key: doc.key.clone(),
                prev_lsn: doc.meta.lsn,
                op: OpKind::Put,
                doc: Some(WrittenDoc {
                    version: doc.meta.version + 1,
                    schema_version: to,
                    created_at: doc.meta.created_at,
                    expires_at: doc.meta.expires_at,
                    sha256: encoded.sha256,
                    value: encoded.bytes,
                }),
            });
        }
        if opts.dry_run || report.failure_count > 0 {
            return Ok(report);
        }
        let (lo, hi) = rewrites
            .iter()
            .filter_map(|op| docs.get(&op.key))
            .map(|d| d.meta.schema_version.max(1))
            .fold((from.min(to), from.max(to)), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
        let checksums = path_checksums(&spec, lo, hi);
        let mut new_spec = spec.spec.clone();
        new_spec.schema_version = Some(to);
        let spec_version =
            crate::spec::stored(&view.state, collection).map_or(0, |d| d.meta.version);
        let mut ops = vec![crate::spec::write_op(
            collection,
            &new_spec,
            &spec.spec,
            spec_version,
            crate::spec::SetSpecOptions::default(),
        )?];
        let seq = view
            .state
            .collections
            .get(MIGRATIONS_COLLECTION)
            .map_or(0, |c| {
                c.docs
                    .keys()
                    .filter(|k| k.starts_with(&format!("{collection}/")))
                    .count()
            })
            + 1;
        let record = AppliedMigration {
            from,
            to,
            lsn: 0,
            committed_at: 0,
            documents: report.documents,
            rewritten: report.would_change,
            checksums,
            by_stored_version: report.by_stored_version.clone(),
        };
        let record =
            serde_json::to_value(&record).map_err(|e| Error::InvalidValue(e.to_string()))?;
        ops.push(EncodedOp {
            collection: MIGRATIONS_COLLECTION.into(),
            key: format!("{collection}/{seq:08}").into(),
            kind: EncodedKind::Create(EncodedValue::new(&record)),
            if_version: None,
            schema_version: None,
            expiry: Expiry::Never,
        });
        let committed = self.commit_prebuilt(
            ops,
            rewrites,
            crate::Durability::Sync,
            crate::txn::CommitMeta {
                reason: crate::log::record::CommitReason::Migration,
                target_lsn: 0,
            },
        )?;
        report.lsn = Some(committed.lsn);
        Ok(report)
    }

    /// The batch migrations applied to `collection`, oldest first.
    pub fn migrations(&self, collection: &str) -> Result<Vec<AppliedMigration>> {
        crate::document::validate_collection(collection)?;
        let view = self.view();
        let prefix = format!("{collection}/");
        let Some(c) = view.state.collections.get(MIGRATIONS_COLLECTION) else {
            return Ok(vec![]);
        };
        Ok(c.docs
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(_, d)| {
                let mut m: AppliedMigration = serde_json::from_slice(&d.value).ok()?;
                m.lsn = d.meta.lsn;
                m.committed_at = d.meta.updated_at;
                Some(m)
            })
            .collect())
    }
}

fn round_trip_failed(report: &mut MigrationReport, key: &str) {
    report.round_trip_failure_count += 1;
    if report.round_trip_failures.len() < MAX_DRY_RUN_SAMPLES {
        report.round_trip_failures.push(key.to_owned());
    }
}

fn path_checksums(spec: &super::CompiledSpec, lo: u32, hi: u32) -> Vec<String> {
    plan(spec, lo, hi)
        .map(|p| {
            p.into_iter()
                .map(|(m, _)| m.checksum.clone().unwrap_or_else(|| m.compute_checksum()))
                .collect()
        })
        .unwrap_or_default()
}

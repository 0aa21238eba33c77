//! Preparing a transaction: validating and encoding its operations in the writer's thread
//! ([`encode_transaction`]), then evaluating them against the latest [`State`] in the committer
//! ([`State::prepare`]): preconditions, versions that never repeat, patches, and the commit
//! record to log with each operation's result. Nothing here changes a `State`; applying the
//! record is `State::apply`'s job.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::State;
use crate::document::{validate_collection, validate_key};
use crate::error::{Conflict, ConflictReason, Error, Result};
use crate::log::record::{CommitRecord, LoggedOp, OpKind, WrittenDoc};
use crate::txn::{CommitMeta, Expiry, Op, OpResult, Patch, Transaction, WriteKind};

/// A value already encoded by the writer's thread: canonical JSON and its SHA-256.
#[derive(Debug, Clone)]
pub(crate) struct EncodedValue {
    pub bytes: Arc<[u8]>,
    pub sha256: [u8; 32],
}

impl EncodedValue {
    pub(crate) fn new(value: &serde_json::Value) -> Self {
        let bytes = crate::document::canonical_json(value);
        let sha256 = crate::codec::sha256(&bytes);
        EncodedValue {
            bytes: bytes.into(),
            sha256,
        }
    }
}

/// A transaction operation after validation and encoding, ready for the committer.
#[derive(Debug, Clone)]
pub(crate) enum EncodedKind {
    Put(EncodedValue),
    Create(EncodedValue),
    Replace(EncodedValue),
    Patch(Patch),
    Delete,
    Check(u64),
    /// The TTL reaper's delete: removes the stored document only if it still has this
    /// version and has expired at the commit's time; otherwise (refreshed, rewritten, already
    /// gone) a no-op, never a conflict, so a concurrent write always wins over the reaper.
    Reap(u64),
    /// Stream ops (issue 13): `collection` is the stream, `key` is empty.
    /// Appends encoded entries (canonical JSON), optionally only at `expected_seq`.
    Append {
        values: Vec<Arc<[u8]>>,
        expected_seq: Option<u64>,
    },
    /// Removes every entry before this sequence number.
    StreamTrim(u64),
    /// Applies the stream's retention at the commit's time.
    StreamRetain,
    /// Sets the stream's retention.
    StreamConfigure(crate::stream::Retention),
    /// Deletes the stream.
    StreamDelete,
}

impl EncodedOp {
    /// A stream op on `stream` (already validated by the caller).
    pub(crate) fn stream(stream: &str, kind: EncodedKind) -> EncodedOp {
        EncodedOp {
            collection: stream.into(),
            key: "".into(),
            kind,
            if_version: None,
            schema_version: None,
            expiry: Expiry::Unset,
        }
    }
}

/// Validates and encodes the entries of an append, in the caller's thread.
pub(crate) fn encode_append(stream: &str, values: &[serde_json::Value]) -> Result<Vec<Arc<[u8]>>> {
    validate_collection(stream)?;
    if values.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "an append to stream {stream} needs at least one entry"
        )));
    }
    if values.len() > crate::limits::MAX_APPEND_ENTRIES {
        return Err(Error::InvalidArgument(format!(
            "an append may add at most {} entries, {} were given",
            crate::limits::MAX_APPEND_ENTRIES,
            values.len()
        )));
    }
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let key = format!("#{i}");
            crate::patch::check_depth(stream, &key, v)?;
            let bytes = crate::document::canonical_json(v);
            if bytes.len() > crate::limits::MAX_STREAM_ENTRY_BYTES {
                return Err(Error::TooLarge {
                    collection: stream.to_owned(),
                    key,
                    size: bytes.len(),
                    limit: crate::limits::MAX_STREAM_ENTRY_BYTES,
                });
            }
            Ok(Arc::from(bytes))
        })
        .collect()
}

#[derive(Debug, Clone)]
pub(crate) struct EncodedOp {
    pub collection: Arc<str>,
    pub key: Arc<str>,
    pub kind: EncodedKind,
    pub if_version: Option<u64>,
    /// Declared schema version; `None` keeps the document's (patches) or uses 1 (new values).
    pub schema_version: Option<u32>,
    /// What the write says about the document's expiry (checked against `limits::MAX_TTL`).
    pub expiry: Expiry,
}

/// Validates names and sizes and encodes values, in the caller's thread, so the committer
/// only does what needs the latest state.
pub(crate) fn encode_transaction(
    txn: &Transaction,
    max_doc_bytes: usize,
) -> Result<Vec<EncodedOp>> {
    encode_transaction_with(txn, max_doc_bytes, &mut |_| {
        Err(Error::InvalidArgument(
            "blob operations are committed through Db::commit".into(),
        ))
    })
}

/// [`encode_transaction`], with blob writes encoded by `blob` (`crate::blob::encode_write`,
/// which resolves staging ids against the data directory's blob store).
pub(crate) fn encode_transaction_with(
    txn: &Transaction,
    max_doc_bytes: usize,
    blob: &mut dyn FnMut(&crate::blob::BlobWrite) -> Result<EncodedOp>,
) -> Result<Vec<EncodedOp>> {
    let mut out = Vec::with_capacity(txn.ops.len());
    for op in &txn.ops {
        let (collection, key) = match op {
            Op::Blob(w) => {
                out.push(blob(w)?);
                continue;
            }
            Op::Write(w) => (&w.collection, &w.key),
            Op::Check {
                collection, key, ..
            } => (collection, key),
            Op::Append {
                stream,
                values,
                expected_seq,
            } => {
                let values = encode_append(stream, values)?;
                let kind = EncodedKind::Append {
                    values,
                    expected_seq: *expected_seq,
                };
                out.push(EncodedOp::stream(stream, kind));
                continue;
            }
        };
        validate_collection(collection)?;
        validate_key(key)?;
        let encode = |v: &serde_json::Value| {
            // Depth first: encoding recurses, and a hostile value may be arbitrarily deep.
            crate::patch::check_depth(collection, key, v)?;
            let e = EncodedValue::new(v);
            if e.bytes.len() > max_doc_bytes {
                return Err(Error::TooLarge {
                    collection: collection.clone(),
                    key: key.clone(),
                    size: e.bytes.len(),
                    limit: max_doc_bytes,
                });
            }
            Ok(e)
        };
        let (kind, if_version, schema_version, expiry) = match op {
            Op::Write(w) => {
                let kind = match &w.kind {
                    WriteKind::Put(v) => EncodedKind::Put(encode(v)?),
                    WriteKind::Create(v) => EncodedKind::Create(encode(v)?),
                    WriteKind::Replace(v) => EncodedKind::Replace(encode(v)?),
                    WriteKind::Patch(p) => {
                        match p {
                            Patch::Json(ops) => {
                                crate::patch::check_json_patch(collection, key, ops)?
                            }
                            Patch::Merge(m) => crate::patch::check_depth(collection, key, m)?,
                        }
                        EncodedKind::Patch(p.clone())
                    }
                    WriteKind::Delete => EncodedKind::Delete,
                };
                check_expiry(w.expiry)?;
                (kind, w.if_version, w.schema_version, w.expiry)
            }
            Op::Check { version, .. } => (EncodedKind::Check(*version), None, None, Expiry::Unset),
            Op::Blob(_) => unreachable!("blob ops were encoded above"),
            Op::Append { .. } => continue, // encoded above
        };
        if schema_version == Some(0) {
            return Err(Error::InvalidValue(
                "schema_version must be a positive integer".into(),
            ));
        }
        out.push(EncodedOp {
            collection: collection.as_str().into(),
            key: key.as_str().into(),
            kind,
            if_version,
            schema_version,
            expiry,
        });
    }
    Ok(out)
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Refuses a TTL that is zero or longer than `limits::MAX_TTL` before any work is done (an
/// absolute `expires_at` is checked against the commit time in `State::prepare`).
fn check_expiry(expiry: Expiry) -> Result<()> {
    if let Expiry::Ttl(d) = expiry {
        if d.is_zero() {
            return Err(Error::InvalidArgument(
                "a TTL must be positive (a document that expires at once could never be read)"
                    .into(),
            ));
        }
        if d > crate::limits::MAX_TTL {
            return Err(Error::InvalidArgument(format!(
                "a TTL of {} s is longer than the limit of {} s",
                d.as_secs(),
                crate::limits::MAX_TTL.as_secs()
            )));
        }
    }
    Ok(())
}

/// The expiry a write at commit time `ts` gives its document: what the write says, else the
/// collection's default TTL, else (patches only) the document's current expiry.
fn resolve_expiry(
    expiry: Expiry,
    ts: u64,
    default_ttl: Option<std::time::Duration>,
    current: Option<u64>,
    is_patch: bool,
) -> Result<Option<u64>> {
    let max = micros(crate::limits::MAX_TTL);
    Ok(match expiry {
        Expiry::Ttl(d) => Some(ts.saturating_add(micros(d))),
        Expiry::At(at) => {
            if at <= ts {
                return Err(Error::InvalidArgument(format!(
                    "expires_at {} is not after the commit time {}: a document that is \
                     already expired cannot be written",
                    crate::document::format_micros(at),
                    crate::document::format_micros(ts)
                )));
            }
            if at - ts > max {
                return Err(Error::InvalidArgument(format!(
                    "expires_at {} is more than {} s after the commit time",
                    crate::document::format_micros(at),
                    crate::limits::MAX_TTL.as_secs()
                )));
            }
            Some(at)
        }
        Expiry::Never => None,
        Expiry::Unset => match default_ttl {
            Some(d) => Some(ts.saturating_add(micros(d))),
            None if is_patch => current,
            None => None,
        },
    })
}

/// A document as the transaction being prepared sees it.
#[derive(Clone)]
struct Current {
    /// 0 when absent.
    version: u64,
    value: Option<EncodedValue>,
    created_at: u64,
    schema_version: u32,
    /// When the document expires (set as each write says, `resolve_expiry`).
    expires_at: Option<u64>,
    /// The kind of the last write of the document in this transaction.
    op: OpKind,
    /// LSN of the last committed write or delete, for the record's prev_lsn.
    prev_lsn: u64,
    /// While absent: the highest version the key ever had, so a new document continues
    /// after it (a version never repeats, so an `if_version` can never match a different
    /// document).
    last_version: u64,
    touched: bool,
}

/// The result of preparing a transaction: the record to log and per-op results.
pub(crate) struct Prepared {
    pub record: CommitRecord,
    pub results: Vec<OpResult>,
}

impl State {
    /// The document as a transaction committed at `now` sees it: an expired document counts
    /// as missing, but a new write of its key continues after its version and links to it.
    fn current(&self, collection: &str, key: &str, now: u64) -> Current {
        let coll = self.collections.get(collection);
        let stored = coll.and_then(|c| c.get_doc(key));
        if let Some(d) = stored.filter(|d| d.expired_at(now)) {
            return Current {
                version: 0,
                value: None,
                created_at: 0,
                schema_version: 0,
                expires_at: None,
                op: OpKind::Delete,
                prev_lsn: d.meta.lsn,
                last_version: d.meta.version,
                touched: false,
            };
        }
        match stored {
            Some(d) => Current {
                version: d.meta.version,
                value: Some(EncodedValue {
                    bytes: d.value.clone(),
                    sha256: d.meta.sha256,
                }),
                created_at: d.meta.created_at,
                schema_version: d.meta.schema_version,
                expires_at: d.meta.expires_at,
                op: OpKind::Put,
                prev_lsn: d.meta.lsn,
                last_version: d.meta.version,
                touched: false,
            },
            None => Current {
                version: 0,
                value: None,
                created_at: 0,
                schema_version: 0,
                expires_at: None,
                op: OpKind::Delete,
                prev_lsn: coll
                    .and_then(|c| c.tombstones.get(key))
                    .map_or(0, |t| t.lsn),
                last_version: coll.map_or(0, |c| c.last_version(key)),
                touched: false,
            },
        }
    }

    /// Checks rewrites built outside the committer from an older view (`Db::commit_prebuilt`):
    /// each must rewrite a document that is still the one the view saw, with the same LSN
    /// (`prev_lsn`) and the version just below the new one, and not expired at `ts`. Every
    /// one that is not is a `VersionMismatch` conflict (its index in `ops`); any means
    /// nothing is applied.
    pub(crate) fn check_prebuilt(&self, ops: &[LoggedOp], ts: u64) -> Result<()> {
        let mut conflicts = vec![];
        for (i, op) in ops.iter().enumerate() {
            let stored = self
                .collections
                .get(&*op.collection)
                .and_then(|c| c.get_doc(&op.key))
                .filter(|d| !d.expired_at(ts));
            let expected = op.doc.as_ref().map_or(0, |d| d.version.saturating_sub(1));
            let same = stored.is_some_and(|d| {
                op.doc.is_some() && d.meta.lsn == op.prev_lsn && d.meta.version == expected
            });
            if !same {
                conflicts.push(Conflict {
                    op_index: i,
                    collection: op.collection.to_string(),
                    key: op.key.to_string(),
                    expected,
                    actual: stored.map_or(0, |d| d.meta.version),
                    reason: ConflictReason::VersionMismatch,
                });
            }
        }
        if conflicts.is_empty() {
            Ok(())
        } else {
            Err(Error::Conflict(conflicts))
        }
    }

    /// Evaluates a transaction against this state as commit `lsn` at time `ts`, logged with
    /// `meta`'s reason and target. Operations see the effects of earlier operations of the
    /// same transaction. Every failed precondition is collected; any failure means nothing is
    /// applied.
    #[cfg(test)]
    pub(crate) fn prepare(
        &self,
        ops: &[EncodedOp],
        lsn: u64,
        ts: u64,
        max_doc_bytes: usize,
        meta: CommitMeta,
    ) -> Result<Prepared> {
        let natives = crate::schema::NativeSteps::default();
        self.prepare_with(ops, lsn, ts, max_doc_bytes, meta, &natives)
    }

    /// [`State::prepare`] with this process's native migration steps. In a schema-managed
    /// collection (its spec has a `schema_version`), an ordinary write (reason `write`) is
    /// upgraded from the version it declares to the current one (an old client's change is
    /// carried onto the stored document, `schema::carry`), validated against the current
    /// version's JSON Schema, and stored at the current version. Reverts, restores and batch
    /// migrations store exactly what they are given.
    pub(crate) fn prepare_with(
        &self,
        ops: &[EncodedOp],
        lsn: u64,
        ts: u64,
        max_doc_bytes: usize,
        meta: CommitMeta,
        natives: &crate::schema::NativeSteps,
    ) -> Result<Prepared> {
        // Each collection's compiled spec, looked up once per transaction (ordinary writes).
        let mut specs: BTreeMap<Arc<str>, Option<Arc<crate::schema::CompiledSpec>>> =
            BTreeMap::new();
        let mut scratch: BTreeMap<(Arc<str>, Arc<str>), Current> = BTreeMap::new();
        let mut order: Vec<(Arc<str>, Arc<str>)> = vec![];
        let mut results = Vec::with_capacity(ops.len());
        let mut conflicts = vec![];
        // Each collection's default TTL, read from its spec once per transaction.
        let mut default_ttls: BTreeMap<Arc<str>, Option<std::time::Duration>> = BTreeMap::new();
        let mut streams = crate::stream::StreamTxn::default();
        for (i, op) in ops.iter().enumerate() {
            if let Some(r) = self.prepare_stream_op(&mut streams, op, i, &mut conflicts) {
                results.push(r);
                continue;
            }
            let id = (op.collection.clone(), op.key.clone());
            let cur = scratch
                .entry(id.clone())
                .or_insert_with(|| self.current(&op.collection, &op.key, ts));
            let conflict = |expected, reason| Conflict {
                op_index: i,
                collection: op.collection.to_string(),
                key: op.key.to_string(),
                expected,
                actual: cur.version,
                reason,
            };
            if let EncodedKind::Reap(v) = op.kind {
                let reap = !cur.touched
                    && cur.value.is_none()
                    && self
                        .get(&op.collection, &op.key)
                        .is_some_and(|d| d.meta.version == v && d.expired_at(ts));
                if reap {
                    cur.op = OpKind::Delete;
                    cur.touched = true;
                    order.push(id);
                }
                results.push(result(op, 0, reap, 0, None));
                continue;
            }
            if let Some(v) = op.if_version.or(match op.kind {
                EncodedKind::Check(v) => Some(v),
                _ => None,
            }) {
                if cur.version != v {
                    conflicts.push(conflict(v, ConflictReason::VersionMismatch));
                    continue;
                }
            }
            let managed = if meta.reason == crate::log::record::CommitReason::Write
                && !crate::state::is_system_collection(&op.collection)
            {
                match specs.entry(op.collection.clone()) {
                    std::collections::btree_map::Entry::Occupied(e) => e.get().clone(),
                    std::collections::btree_map::Entry::Vacant(e) => {
                        let c = crate::schema::compiled(self, &op.collection)?;
                        e.insert(c.current.is_some().then_some(c)).clone()
                    }
                }
            } else {
                None
            };
            let new_value = match &op.kind {
                EncodedKind::Check(_) => {
                    let schema = if cur.value.is_some() {
                        cur.schema_version
                    } else {
                        0
                    };
                    results.push(result(op, cur.version, false, schema, cur.expires_at));
                    continue;
                }
                EncodedKind::Delete => {
                    let existed = cur.value.is_some();
                    if existed {
                        cur.value = None;
                        cur.last_version = cur.version;
                        cur.version = 0;
                        cur.expires_at = None;
                        cur.op = OpKind::Delete;
                        // First write to this document in the transaction: remember its place
                        // (a flag, not a search of `order`, so big batches stay linear).
                        if !cur.touched {
                            order.push(id);
                        }
                        cur.touched = true;
                    }
                    results.push(result(op, 0, existed, 0, None));
                    continue;
                }
                // Handled above; never reaches here.
                EncodedKind::Reap(_)
                | EncodedKind::Append { .. }
                | EncodedKind::StreamTrim(_)
                | EncodedKind::StreamRetain
                | EncodedKind::StreamConfigure(_)
                | EncodedKind::StreamDelete => continue,
                EncodedKind::Put(v) => v.clone(),
                EncodedKind::Create(v) => {
                    if cur.value.is_some() {
                        conflicts.push(conflict(0, ConflictReason::AlreadyExists));
                        continue;
                    }
                    v.clone()
                }
                EncodedKind::Replace(v) => {
                    if cur.value.is_none() {
                        conflicts.push(conflict(1, ConflictReason::Missing));
                        continue;
                    }
                    v.clone()
                }
                EncodedKind::Patch(p) => {
                    let Some(existing) = &cur.value else {
                        conflicts.push(conflict(1, ConflictReason::Missing));
                        continue;
                    };
                    if managed.is_some() {
                        // Applied to the client's view of the document below.
                        existing.clone()
                    } else {
                        let mut doc: serde_json::Value = serde_json::from_slice(&existing.bytes)
                            .map_err(|e| {
                                Error::InvalidValue(format!("stored value does not parse: {e}"))
                            })?;
                        match p {
                            Patch::Merge(m) => json_patch::merge(&mut doc, m),
                            // Bounded: refused as soon as it grows past the size or depth limit.
                            Patch::Json(ops) => crate::patch::apply_json_patch(
                                &mut doc,
                                ops,
                                &op.collection,
                                &op.key,
                                existing.bytes.len(),
                                max_doc_bytes,
                            )?,
                        }
                        crate::patch::check_depth(&op.collection, &op.key, &doc)?;
                        let v = EncodedValue::new(&doc);
                        if v.bytes.len() > max_doc_bytes {
                            return Err(Error::TooLarge {
                                collection: op.collection.to_string(),
                                key: op.key.to_string(),
                                size: v.bytes.len(),
                                limit: max_doc_bytes,
                            });
                        }
                        v
                    }
                }
            };
            let (new_value, managed_version) = match &managed {
                Some(spec) => {
                    let (v, version) = managed_write(spec, natives, op, cur, max_doc_bytes)?;
                    (v, Some(version))
                }
                None => (new_value, None),
            };
            let is_patch = matches!(op.kind, EncodedKind::Patch(_));
            cur.op = match op.kind {
                EncodedKind::Create(_) => OpKind::Create,
                EncodedKind::Replace(_) => OpKind::Replace,
                EncodedKind::Patch(_) => OpKind::Patch,
                _ => OpKind::Put,
            };
            let default_ttl = *default_ttls
                .entry(op.collection.clone())
                .or_insert_with(|| crate::spec::default_ttl(self, &op.collection));
            cur.expires_at = resolve_expiry(op.expiry, ts, default_ttl, cur.expires_at, is_patch)?;
            if cur.value.is_none() {
                cur.created_at = ts;
                cur.version = cur.last_version;
            }
            // A patch edits the stored value, so it keeps its schema version unless the
            // writer declares one; a whole new value without a declaration is version 1.
            cur.schema_version = match (managed_version, op.schema_version) {
                (Some(v), _) => v,
                (None, Some(v)) => v,
                (None, None) if is_patch => cur.schema_version.max(1),
                (None, None) => 1,
            };
            cur.value = Some(new_value);
            cur.version += 1;
            if !cur.touched {
                order.push(id);
            }
            cur.touched = true;
            results.push(result(
                op,
                cur.version,
                true,
                cur.schema_version,
                cur.expires_at,
            ));
        }
        if !conflicts.is_empty() {
            return Err(Error::Conflict(conflicts));
        }
        let stream_ops = streams.finish(&self.streams, ts)?;
        let ops = order
            .into_iter()
            .filter_map(|id| {
                let cur = scratch.get(&id)?;
                // A document created and deleted inside the same transaction that did not
                // exist before leaves nothing to log.
                if cur.value.is_none() && self.get(&id.0, &id.1).is_none() {
                    return None;
                }
                Some(LoggedOp {
                    collection: id.0,
                    key: id.1,
                    prev_lsn: cur.prev_lsn,
                    op: if cur.value.is_some() {
                        cur.op
                    } else {
                        OpKind::Delete
                    },
                    doc: cur.value.as_ref().map(|v| WrittenDoc {
                        version: cur.version,
                        schema_version: cur.schema_version,
                        created_at: cur.created_at,
                        expires_at: cur.expires_at,
                        sha256: v.sha256,
                        value: v.bytes.clone(),
                    }),
                })
            })
            .collect();
        Ok(Prepared {
            record: CommitRecord {
                lsn,
                commit_ts: ts,
                reason: meta.reason,
                target_lsn: meta.target_lsn,
                ops,
                streams: stream_ops,
            },
            results,
        })
    }

    /// Evaluates a stream op of a transaction; `None` for document ops. A failed
    /// `expected_seq` is collected as a conflict like a failed `if_version`.
    fn prepare_stream_op(
        &self,
        streams: &mut crate::stream::StreamTxn,
        op: &EncodedOp,
        i: usize,
        conflicts: &mut Vec<Conflict>,
    ) -> Option<OpResult> {
        let s = &op.collection;
        let (last_seq, written) = match &op.kind {
            EncodedKind::Append {
                values,
                expected_seq,
            } => match streams.append(&self.streams, s, values, *expected_seq, i) {
                Ok(last) => (last, !values.is_empty()),
                Err(c) => {
                    conflicts.push(c);
                    (0, false)
                }
            },
            EncodedKind::StreamTrim(seq) => {
                streams.trim(&self.streams, s, *seq);
                (0, true)
            }
            EncodedKind::StreamRetain => {
                streams.retain(&self.streams, s);
                (0, true)
            }
            EncodedKind::StreamConfigure(r) => {
                streams.configure(&self.streams, s, *r);
                (0, true)
            }
            EncodedKind::StreamDelete => (0, streams.delete(&self.streams, s)),
            _ => return None,
        };
        // For appends `version` is the stream's last sequence number after the op.
        Some(result(op, last_seq, written, 0, None))
    }
}

/// The value and schema version an ordinary write stores in a schema-managed collection:
/// the client's value (or its patch applied to its view of the document) carried from the
/// version it declares to the current one, then validated there.
fn managed_write(
    spec: &crate::schema::CompiledSpec,
    natives: &crate::schema::NativeSteps,
    op: &EncodedOp,
    cur: &Current,
    max_doc_bytes: usize,
) -> Result<(EncodedValue, u32)> {
    let current = spec.current.unwrap_or(1);
    let declared = op.schema_version.unwrap_or(current);
    if declared > current {
        return Err(Error::InvalidValue(format!(
            "schema_version {declared} is above collection {}'s current version {current}: \
             migrate the collection first",
            op.collection
        )));
    }
    let parse = |bytes: &[u8]| -> Result<serde_json::Value> {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::InvalidValue(format!("stored value does not parse: {e}")))
    };
    let stored = match &cur.value {
        Some(v) => Some((parse(&v.bytes)?, cur.schema_version.max(1))),
        None => None,
    };
    let (c, k) = (&*op.collection, &*op.key);
    let after = match &op.kind {
        EncodedKind::Put(v) | EncodedKind::Create(v) | EncodedKind::Replace(v) => parse(&v.bytes)?,
        EncodedKind::Patch(p) => {
            let Some((doc, s)) = &stored else {
                return Err(Error::InvalidValue(
                    "a patch needs a stored document".into(),
                ));
            };
            let mut view = crate::schema::carry::view(spec, natives, c, k, doc, *s, declared)?;
            let len = crate::document::canonical_json(&view).len();
            match p {
                Patch::Merge(m) => json_patch::merge(&mut view, m),
                Patch::Json(ops) => {
                    crate::patch::apply_json_patch(&mut view, ops, c, k, len, max_doc_bytes)?
                }
            }
            view
        }
        _ => return Err(Error::InvalidValue("not a write".into())),
    };
    let stored_ref = stored.as_ref().map(|(v, s)| (v, *s));
    let doc = crate::schema::carry::carry(spec, natives, c, k, stored_ref, declared, after)?;
    crate::patch::check_depth(c, k, &doc)?;
    spec.check(c, k, current, &doc)?;
    let v = EncodedValue::new(&doc);
    if v.bytes.len() > max_doc_bytes {
        return Err(Error::TooLarge {
            collection: c.to_string(),
            key: k.to_string(),
            size: v.bytes.len(),
            limit: max_doc_bytes,
        });
    }
    Ok((v, current))
}

fn result(
    op: &EncodedOp,
    version: u64,
    written: bool,
    schema_version: u32,
    expires_at: Option<u64>,
) -> OpResult {
    OpResult {
        schema_version,
        expires_at,
        collection: op.collection.to_string(),
        key: op.key.to_string(),
        version,
        written,
    }
}

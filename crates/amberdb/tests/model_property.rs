//! Model-based property test: random transactions (every op kind, `if_version`, failing
//! preconditions, several ops on one key) and random close/reopen cycles (with a checkpoint on
//! close, without one so the log is replayed, and with explicit checkpoints) run against the
//! engine and against a plain `BTreeMap` model. After every step the engine's whole state
//! (values, versions, schema versions, LSNs, timestamps, counts, collections) must equal the
//! model, and every failed transaction must fail the way the model says (a conflict names the
//! document, the expected and the actual version) and change nothing. A key's version never
//! repeats, also across delete, re-create and reopen, with tombstones kept or pruned at once.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use amberdb::{
    Committed, Conflict, ConflictReason, Db, Durability, Error, ListOptions, OpResult, Options,
    Patch, Transaction,
};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const COLLECTIONS: [&str; 2] = ["players", "game.states-v2"];
const KEYS: [&str; 4] = ["k0", "k1", "k2", "ключ-🎲"];
const FIELDS: [&str; 4] = ["n", "s", "x", "y"];

// ---------------------------------------------------------------------------------------------
// What the test generates.

/// A version a precondition asks for, resolved against the model just before the commit.
#[derive(Debug, Clone, Copy)]
enum Ver {
    /// The document's current version (the precondition holds unless an earlier op of the same
    /// transaction changed it).
    Current,
    /// One more than the current version (always stale).
    Ahead,
    /// A fixed version (0 = must not exist).
    Literal(u64),
}

#[derive(Debug, Clone)]
enum JsonPatchOp {
    Add(usize, Value),
    Remove(usize),
    Replace(usize, Value),
    Test(usize, Value),
}

#[derive(Debug, Clone)]
enum Kind {
    Put(Value),
    Create(Value),
    Replace(Value),
    Merge(Value),
    JsonPatch(Vec<JsonPatchOp>),
    Delete,
    Check(Ver),
}

#[derive(Debug, Clone)]
struct OpSpec {
    coll: usize,
    key: usize,
    kind: Kind,
    if_version: Option<Ver>,
    schema_version: Option<u32>,
}

#[derive(Debug, Clone)]
struct OpenOpts {
    segment_size: u64,
    checkpoint_log_bytes: u64,
    compression: i32,
    buffered: bool,
    /// Whether closing this handle writes a checkpoint (if not, the next open replays the log).
    checkpoint_on_close: bool,
}

#[derive(Debug, Clone)]
enum Step {
    Commit(Vec<OpSpec>),
    /// Close (with or without the checkpoint on close, as the open handle was told) and
    /// reopen with new options.
    Reopen(OpenOpts),
    Checkpoint,
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-1000i64..1000).prop_map(Value::from),
        "[a-z ]{0,8}".prop_map(Value::String),
    ]
}

fn any_json() -> BoxedStrategy<Value> {
    leaf()
        .prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(0..FIELDS.len(), inner, 0..4).prop_map(|m| {
                    Value::Object(
                        m.into_iter()
                            .map(|(k, v)| (FIELDS[k].to_string(), v))
                            .collect(),
                    )
                }),
            ]
        })
        .boxed()
}

/// Mostly objects over the shared field names, so patches have something to work on.
fn doc_value() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => prop::collection::btree_map(0..FIELDS.len(), any_json(), 0..4).prop_map(|m| {
            Value::Object(m.into_iter().map(|(k, v)| (FIELDS[k].to_string(), v)).collect())
        }),
        1 => any_json(),
    ]
    .boxed()
}

fn merge_patch() -> BoxedStrategy<Value> {
    prop_oneof![
        5 => prop::collection::btree_map(0..FIELDS.len(), prop_oneof![1 => Just(Value::Null), 2 => any_json()], 0..4)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (FIELDS[k].to_string(), v)).collect())),
        1 => any_json(),
    ]
    .boxed()
}

fn json_patch_op() -> impl Strategy<Value = JsonPatchOp> {
    let f = 0..FIELDS.len();
    prop_oneof![
        (f.clone(), any_json()).prop_map(|(f, v)| JsonPatchOp::Add(f, v)),
        f.clone().prop_map(JsonPatchOp::Remove),
        (f.clone(), any_json()).prop_map(|(f, v)| JsonPatchOp::Replace(f, v)),
        (f, leaf()).prop_map(|(f, v)| JsonPatchOp::Test(f, v)),
    ]
}

fn ver() -> impl Strategy<Value = Ver> {
    prop_oneof![
        6 => Just(Ver::Current),
        1 => Just(Ver::Ahead),
        1 => (0u64..4).prop_map(Ver::Literal),
    ]
}

fn op_spec() -> impl Strategy<Value = OpSpec> {
    let kind = prop_oneof![
        4 => doc_value().prop_map(Kind::Put),
        1 => doc_value().prop_map(Kind::Create),
        2 => doc_value().prop_map(Kind::Replace),
        2 => merge_patch().prop_map(Kind::Merge),
        2 => prop::collection::vec(json_patch_op(), 1..4).prop_map(Kind::JsonPatch),
        2 => Just(Kind::Delete),
        1 => ver().prop_map(Kind::Check),
    ];
    (
        0..COLLECTIONS.len(),
        // Keys are skewed towards k0 so transactions often touch one key several times.
        prop_oneof![3 => Just(0usize), 2 => 1..KEYS.len()],
        kind,
        prop::option::weighted(0.3, ver()),
        prop::option::weighted(0.2, 1u32..4),
    )
        .prop_map(|(coll, key, kind, if_version, schema_version)| OpSpec {
            coll,
            key,
            kind,
            if_version,
            schema_version,
        })
}

fn open_opts() -> impl Strategy<Value = OpenOpts> {
    (
        prop_oneof![Just(300u64), Just(2048), Just(64 << 20)],
        prop_oneof![Just(4096u64), Just(128 << 20)],
        prop_oneof![Just(0), Just(1)],
        // Mostly buffered: durability does not change what the model sees, and fsyncs would
        // dominate the run time.
        prop::bool::weighted(0.75),
        any::<bool>(),
    )
        .prop_map(
            |(segment_size, checkpoint_log_bytes, compression, buffered, checkpoint_on_close)| {
                OpenOpts {
                    segment_size,
                    checkpoint_log_bytes,
                    compression,
                    buffered,
                    checkpoint_on_close,
                }
            },
        )
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        20 => prop_oneof![1 => Just(vec![]), 12 => prop::collection::vec(op_spec(), 1..5)].prop_map(Step::Commit),
        2 => open_opts().prop_map(Step::Reopen),
        1 => Just(Step::Checkpoint),
    ]
}

// ---------------------------------------------------------------------------------------------
// The model.

#[derive(Debug, Clone, PartialEq)]
struct ModelDoc {
    value: Value,
    version: u64,
    schema_version: u32,
    created_at: u64,
    updated_at: u64,
    lsn: u64,
}

#[derive(Debug, Default, Clone)]
struct Model {
    docs: BTreeMap<(usize, usize), ModelDoc>,
    /// Deleted keys: LSN of the delete and the version the document had.
    tombstones: BTreeMap<(usize, usize), (u64, u64)>,
    /// Per collection, the highest version of a pruned tombstone.
    floors: BTreeMap<usize, u64>,
    /// Whether tombstones are pruned by the next commit (`tombstone_retention` zero).
    prune: bool,
    /// The highest version each key ever had: a new version must exceed it.
    highest: BTreeMap<(usize, usize), u64>,
    /// Collections that ever had a logged write (the engine keeps a collection once created).
    collections: BTreeSet<usize>,
    lsn: u64,
    commit_ts: u64,
}

#[derive(Debug, PartialEq)]
enum ModelError {
    Conflict(Vec<Conflict>),
    PatchFailed { collection: String, key: String },
}

/// The model's view of one document while a transaction is evaluated.
#[derive(Debug, Clone)]
struct Cur {
    version: u64,
    value: Option<Value>,
    schema_version: u32,
    /// True once the transaction (re)created the document, so it gets a new creation time.
    recreated: bool,
    /// While absent: the highest version the key had; a re-created document continues after.
    last_version: u64,
}

/// RFC 7396, written from the RFC, independent of the engine's patch library.
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else {
        unreachable!()
    };
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// RFC 6902 for top-level member paths: every op needs an object root.
fn json_patch(doc: &Value, ops: &[JsonPatchOp]) -> Option<Value> {
    let mut doc = doc.clone();
    let obj = doc.as_object_mut()?;
    for op in ops {
        match op {
            JsonPatchOp::Add(f, v) => {
                obj.insert(FIELDS[*f].into(), v.clone());
            }
            JsonPatchOp::Remove(f) => {
                obj.remove(FIELDS[*f])?;
            }
            JsonPatchOp::Replace(f, v) => *obj.get_mut(FIELDS[*f])? = v.clone(),
            JsonPatchOp::Test(f, v) => {
                if obj.get(FIELDS[*f]) != Some(v) {
                    return None;
                }
            }
        }
    }
    Some(doc)
}

fn json_patch_value(ops: &[JsonPatchOp]) -> json_patch::Patch {
    let ops: Vec<Value> = ops
        .iter()
        .map(|op| match op {
            JsonPatchOp::Add(f, v) => {
                json!({"op": "add", "path": format!("/{}", FIELDS[*f]), "value": v})
            }
            JsonPatchOp::Remove(f) => json!({"op": "remove", "path": format!("/{}", FIELDS[*f])}),
            JsonPatchOp::Replace(f, v) => {
                json!({"op": "replace", "path": format!("/{}", FIELDS[*f]), "value": v})
            }
            JsonPatchOp::Test(f, v) => {
                json!({"op": "test", "path": format!("/{}", FIELDS[*f]), "value": v})
            }
        })
        .collect();
    serde_json::from_value(Value::Array(ops)).unwrap()
}

/// What the model expects from a commit: per-op results and the writes to log, or an error.
struct Expected {
    results: Vec<(u64, bool)>,
    /// Final state of every document the commit logs, in first-touch order.
    writes: Vec<((usize, usize), Cur)>,
}

impl Model {
    fn version(&self, id: (usize, usize)) -> u64 {
        self.docs.get(&id).map_or(0, |d| d.version)
    }

    fn resolve(&self, id: (usize, usize), v: Ver) -> u64 {
        match v {
            Ver::Current => self.version(id),
            Ver::Ahead => self.version(id) + 1,
            Ver::Literal(n) => n,
        }
    }

    /// Evaluates a transaction the way the design describes: ops see earlier ops of the same
    /// transaction; every failed precondition is collected; a failed patch aborts at once.
    fn evaluate(
        &self,
        ops: &[OpSpec],
        resolved: &[(Option<u64>, Option<u64>)],
    ) -> Result<Expected, ModelError> {
        let mut scratch: BTreeMap<(usize, usize), Cur> = BTreeMap::new();
        let mut order = vec![];
        let mut results = vec![];
        let mut conflicts = vec![];
        for (i, (op, (if_version, check))) in ops.iter().zip(resolved).enumerate() {
            let id = (op.coll, op.key);
            let cur = scratch
                .entry(id)
                .or_insert_with(|| match self.docs.get(&id) {
                    Some(d) => Cur {
                        version: d.version,
                        value: Some(d.value.clone()),
                        schema_version: d.schema_version,
                        recreated: false,
                        last_version: d.version,
                    },
                    None => Cur {
                        version: 0,
                        value: None,
                        schema_version: 0,
                        recreated: false,
                        last_version: self
                            .tombstones
                            .get(&id)
                            .map_or(0, |t| t.1)
                            .max(self.floors.get(&id.0).copied().unwrap_or(0)),
                    },
                });
            let conflict = |expected, actual, reason| Conflict {
                op_index: i,
                collection: COLLECTIONS[op.coll].to_string(),
                key: KEYS[op.key].to_string(),
                expected,
                actual,
                reason,
            };
            if let Some(v) = if_version.or(*check) {
                if cur.version != v {
                    conflicts.push(conflict(v, cur.version, ConflictReason::VersionMismatch));
                    continue;
                }
            }
            let new_value = match &op.kind {
                Kind::Check(_) => {
                    results.push((cur.version, false));
                    continue;
                }
                Kind::Delete => {
                    let existed = cur.value.is_some();
                    if existed {
                        cur.value = None;
                        cur.last_version = cur.version;
                        cur.version = 0;
                        if !order.contains(&id) {
                            order.push(id);
                        }
                    }
                    results.push((0, existed));
                    continue;
                }
                Kind::Put(v) => v.clone(),
                Kind::Create(v) => {
                    if cur.value.is_some() {
                        conflicts.push(conflict(0, cur.version, ConflictReason::AlreadyExists));
                        continue;
                    }
                    v.clone()
                }
                Kind::Replace(v) | Kind::Merge(v) if cur.value.is_none() => {
                    let _ = v;
                    conflicts.push(conflict(1, cur.version, ConflictReason::Missing));
                    continue;
                }
                Kind::JsonPatch(_) if cur.value.is_none() => {
                    conflicts.push(conflict(1, cur.version, ConflictReason::Missing));
                    continue;
                }
                Kind::Replace(v) => v.clone(),
                Kind::Merge(p) => {
                    let mut doc = cur.value.clone().unwrap();
                    merge(&mut doc, p);
                    doc
                }
                Kind::JsonPatch(p) => match json_patch(cur.value.as_ref().unwrap(), p) {
                    Some(doc) => doc,
                    None => {
                        return Err(ModelError::PatchFailed {
                            collection: COLLECTIONS[op.coll].to_string(),
                            key: KEYS[op.key].to_string(),
                        })
                    }
                },
            };
            if cur.value.is_none() {
                cur.recreated = true;
                cur.version = cur.last_version;
            }
            cur.value = Some(new_value);
            cur.version += 1;
            // A patch keeps the stored schema version unless the writer declares one; a whole
            // new value without a declaration is version 1.
            let is_patch = matches!(op.kind, Kind::Merge(_) | Kind::JsonPatch(_));
            cur.schema_version = match op.schema_version {
                Some(v) => v,
                None if is_patch => cur.schema_version.max(1),
                None => 1,
            };
            results.push((cur.version, true));
            if !order.contains(&id) {
                order.push(id);
            }
        }
        if !conflicts.is_empty() {
            return Err(ModelError::Conflict(conflicts));
        }
        let writes = order
            .into_iter()
            .filter_map(|id| {
                let cur = scratch.remove(&id)?;
                // Created and deleted inside the transaction: nothing to log.
                (cur.value.is_some() || self.docs.contains_key(&id)).then_some((id, cur))
            })
            .collect();
        Ok(Expected { results, writes })
    }

    fn apply(&mut self, writes: Vec<((usize, usize), Cur)>, lsn: u64, ts: u64) {
        for (id, cur) in writes {
            self.collections.insert(id.0);
            match cur.value {
                None => {
                    let gone = self.docs.remove(&id).unwrap();
                    self.tombstones.insert(id, (lsn, gone.version));
                }
                Some(value) => {
                    let created_at = match self.docs.get(&id) {
                        Some(d) if !cur.recreated => d.created_at,
                        _ => ts,
                    };
                    let doc = ModelDoc {
                        value,
                        version: cur.version,
                        schema_version: cur.schema_version,
                        created_at,
                        updated_at: ts,
                        lsn,
                    };
                    self.tombstones.remove(&id);
                    self.highest.insert(id, cur.version);
                    self.docs.insert(id, doc);
                }
            }
        }
        if self.prune {
            // Retention zero: a commit prunes the tombstones of every earlier commit.
            let floors = &mut self.floors;
            self.tombstones.retain(|id, (deleted, version)| {
                let keep = *deleted == lsn;
                if !keep {
                    let f = floors.entry(id.0).or_default();
                    *f = (*f).max(*version);
                }
                keep
            });
        }
        self.lsn = lsn;
        self.commit_ts = ts;
    }
}

// ---------------------------------------------------------------------------------------------
// Running steps against the engine.

fn options(o: &OpenOpts, prune: bool) -> Options {
    Options {
        tombstone_retention: if prune {
            Duration::ZERO
        } else {
            Options::default().tombstone_retention
        },
        // Tombstones are kept at least as long as the history window: pruning at once needs
        // no window.
        history_retention: if prune {
            Duration::ZERO
        } else {
            Options::default().history_retention
        },
        segment_size: o.segment_size,
        checkpoint_log_bytes: o.checkpoint_log_bytes,
        checkpoint_compression_level: o.compression,
        checkpoint_on_close: o.checkpoint_on_close,
        durability: if o.buffered {
            Durability::Buffered {
                max_delay: Duration::from_millis(5),
            }
        } else {
            Durability::Sync
        },
        ..Options::default()
    }
}

fn build(ops: &[OpSpec], resolved: &[(Option<u64>, Option<u64>)]) -> Transaction {
    let mut tx = Transaction::new();
    for (op, (if_version, check)) in ops.iter().zip(resolved) {
        let (c, k) = (COLLECTIONS[op.coll], KEYS[op.key]);
        let w = match &op.kind {
            Kind::Check(_) => {
                tx.check(c, k, check.unwrap());
                continue;
            }
            Kind::Put(v) => tx.put(c, k, v.clone()),
            Kind::Create(v) => tx.create(c, k, v.clone()),
            Kind::Replace(v) => tx.replace(c, k, v.clone()),
            Kind::Merge(p) => tx.patch(c, k, Patch::Merge(p.clone())),
            Kind::JsonPatch(p) => tx.patch(c, k, Patch::Json(json_patch_value(p))),
            Kind::Delete => tx.delete(c, k),
        };
        if let Some(v) = if_version {
            w.if_version(*v);
        }
        if let Some(s) = op.schema_version {
            w.schema_version(s);
        }
    }
    tx
}

fn commit_step(db: &Db, model: &mut Model, ops: &[OpSpec]) -> Result<(), TestCaseError> {
    let resolved: Vec<_> = ops
        .iter()
        .map(|op| {
            let id = (op.coll, op.key);
            let check = match op.kind {
                Kind::Check(v) => Some(model.resolve(id, v)),
                _ => None,
            };
            // A check carries its version itself; `if_version` belongs to writes.
            let if_version = if check.is_some() {
                None
            } else {
                op.if_version.map(|v| model.resolve(id, v))
            };
            (if_version, check)
        })
        .collect();
    let expected = model.evaluate(ops, &resolved);
    let got = db.commit(&build(ops, &resolved));
    match (expected, got) {
        (
            Ok(exp),
            Ok(Committed {
                lsn,
                commit_ts,
                results,
            }),
        ) => {
            let want: Vec<OpResult> = ops
                .iter()
                .zip(&exp.results)
                .zip(&results)
                .map(|((op, (version, written)), got)| OpResult {
                    collection: COLLECTIONS[op.coll].to_string(),
                    key: KEYS[op.key].to_string(),
                    version: *version,
                    written: *written,
                    // The model does not track schema versions (pinned in the server's tests).
                    schema_version: got.schema_version,
                    // No TTL writes in this model (tests/ttl.rs has its own).
                    expires_at: None,
                })
                .collect();
            prop_assert_eq!(results, want, "per-op results");
            if exp.writes.is_empty() {
                prop_assert_eq!(
                    (lsn, commit_ts),
                    (model.lsn, model.commit_ts),
                    "a commit that writes nothing takes no LSN"
                );
            } else {
                prop_assert_eq!(lsn, model.lsn + 1, "LSNs are gap-free");
                prop_assert!(
                    commit_ts > model.commit_ts,
                    "commit times increase: {} after {}",
                    commit_ts,
                    model.commit_ts
                );
                for (id, _) in exp.writes.iter().filter(|(_, c)| c.value.is_some()) {
                    let got = db.get(COLLECTIONS[id.0], KEYS[id.1]).unwrap().meta.version;
                    let before = model.highest.get(id).copied().unwrap_or(0);
                    prop_assert!(
                        got > before,
                        "{:?} got version {} but already had {}",
                        id,
                        got,
                        before
                    );
                }
                model.apply(exp.writes, lsn, commit_ts);
            }
        }
        (Err(ModelError::Conflict(want)), Err(Error::Conflict(got))) => {
            prop_assert_eq!(
                got,
                want,
                "conflicts must name document, expected and actual version"
            );
        }
        (
            Err(ModelError::PatchFailed { collection, key }),
            Err(Error::PatchFailed {
                collection: c,
                key: k,
                ..
            }),
        ) => {
            prop_assert_eq!((c, k), (collection, key));
        }
        (want, got) => {
            let want = want.map(|e| e.results);
            return Err(TestCaseError::fail(format!(
                "model says {want:?}, engine says {got:?}"
            )));
        }
    }
    Ok(())
}

/// The whole engine state must equal the model.
fn assert_same(db: &Db, model: &Model) -> Result<(), TestCaseError> {
    let view = db.view();
    prop_assert_eq!(view.lsn(), model.lsn);
    prop_assert_eq!(view.commit_ts(), model.commit_ts);
    let names: Vec<String> = view
        .collections()
        .into_iter()
        .map(|c| format!("{}={}/{}", c.name, c.documents, c.tombstones))
        .collect();
    let mut want_names: Vec<String> = model
        .collections
        .iter()
        .map(|c| {
            format!(
                "{}={}/{}",
                COLLECTIONS[*c],
                model.docs.keys().filter(|(mc, _)| mc == c).count(),
                model.tombstones.keys().filter(|(mc, _)| mc == c).count()
            )
        })
        .collect();
    want_names.sort();
    prop_assert_eq!(names, want_names, "collections, documents and tombstones");
    for (ci, coll) in COLLECTIONS.iter().enumerate() {
        let listed = view.list(coll, &ListOptions::default());
        prop_assert_eq!(listed.next, None);
        let mut want_keys: Vec<&str> = model
            .docs
            .keys()
            .filter(|(c, _)| *c == ci)
            .map(|(_, k)| KEYS[*k])
            .collect();
        want_keys.sort();
        let got_keys: Vec<&str> = listed.docs.iter().map(|d| &*d.key).collect();
        prop_assert_eq!(got_keys, want_keys, "keys listed in {}", coll);
        prop_assert_eq!(db.count(coll), listed.docs.len() as u64);
        for (ki, key) in KEYS.iter().enumerate() {
            let got = db.get(coll, key);
            match (model.docs.get(&(ci, ki)), got) {
                (None, None) => {}
                (Some(m), Some(d)) => {
                    let got = ModelDoc {
                        value: d.json().unwrap(),
                        version: d.meta.version,
                        schema_version: d.meta.schema_version,
                        created_at: d.meta.created_at,
                        updated_at: d.meta.updated_at,
                        lsn: d.meta.lsn,
                    };
                    prop_assert_eq!(&got, m, "{}/{}", coll, key);
                    prop_assert_eq!(
                        &*d.value,
                        &*amberdb::canonical_json(&m.value),
                        "stored bytes are canonical"
                    );
                }
                (m, d) => {
                    return Err(TestCaseError::fail(format!(
                        "{coll}/{key}: model {m:?}, engine {d:?}"
                    )))
                }
            }
        }
    }
    Ok(())
}

fn run(steps: Vec<Step>, first: OpenOpts, prune: bool) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = first;
    let mut db = Db::open_with(dir.path(), options(&opts, prune)).unwrap();
    let mut model = Model {
        prune,
        ..Model::default()
    };
    for step in steps {
        match step {
            Step::Commit(ops) => commit_step(&db, &mut model, &ops)?,
            Step::Checkpoint => {
                let info = db.checkpoint().unwrap();
                prop_assert_eq!(info.lsn, model.lsn);
            }
            Step::Reopen(next) => {
                let checkpointed = opts.checkpoint_on_close;
                db.close().unwrap();
                opts = next;
                db = Db::open_with(dir.path(), options(&opts, prune)).unwrap();
                let report = db.recovery_report().clone();
                prop_assert_eq!(report.lsn, model.lsn);
                prop_assert_eq!(report.torn_tail, None);
                prop_assert!(report.quarantined.is_empty());
                prop_assert_eq!(report.commits_replayed, report.lsn - report.checkpoint_lsn);
                if checkpointed {
                    prop_assert_eq!(
                        report.commits_replayed,
                        0,
                        "close wrote a checkpoint, so nothing is replayed"
                    );
                }
                let verified = db.verify().unwrap();
                prop_assert!(
                    verified.is_clean(),
                    "verify after reopen: {:?}",
                    verified.problems
                );
            }
        }
        assert_same(&db, &model)?;
    }
    db.close().unwrap();
    let db = Db::open_with(dir.path(), options(&opts, prune)).unwrap();
    assert_same(&db, &model)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 800, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_transactions_and_reopens_match_a_btreemap_model(
        steps in prop::collection::vec(step(), 1..60),
        first in open_opts(),
        prune in any::<bool>(),
    ) {
        run(steps, first, prune)?;
    }
}

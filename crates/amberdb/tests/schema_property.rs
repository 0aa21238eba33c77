//! Property tests over random chains of declarative steps with their inverse `down`s:
//! `down(up(d)) == d`; a lazily upgraded read equals the document written through the up
//! chain; and an old client's write at every older version keeps what only later versions
//! know, for PUT, PATCH and transactions.
#![allow(clippy::unwrap_used)]

use amberdb::spec::CollectionSpec;
use amberdb::{Db, Patch, Transaction};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// A random chain: per migration 1 to 3 step choices `(kind, pick)`.
fn chains() -> impl Strategy<Value = Vec<Vec<(u8, u8)>>> {
    prop::collection::vec(prop::collection::vec((0u8..6, any::<u8>()), 1..4), 1..5)
}

fn small_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-1000i64..1000).prop_map(Value::from),
        "[a-z]{0,6}".prop_map(Value::from),
        prop::collection::vec((-5i64..5).prop_map(Value::from), 0..3).prop_map(Value::from),
    ]
}

/// A random v1 document: optional fields `a`, `b`, `c` and a boolean `flag`.
fn v1_docs() -> impl Strategy<Value = Value> {
    (
        prop::option::of(small_value()),
        prop::option::of(small_value()),
        prop::option::of(small_value()),
        any::<bool>(),
    )
        .prop_map(|(a, b, c, flag)| {
            let mut m = Map::new();
            for (k, v) in [("a", a), ("b", b), ("c", c)] {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            m.insert("flag".into(), flag.into());
            Value::Object(m)
        })
}

/// Builds the spec (current version = last) from step choices; every up step has an exact
/// inverse in `down`, given the tracked field names.
fn build(chain: &[Vec<(u8, u8)>]) -> CollectionSpec {
    let mut fields: Vec<String> = vec!["a".into(), "b".into(), "c".into(), "flag".into()];
    // The field holding the flag and whether it is a boolean now (else 0/1).
    let mut flag: Option<(String, bool)> = Some(("flag".into(), true));
    let mut fresh = 0;
    let mut migrations = vec![];
    for (i, steps) in chain.iter().enumerate() {
        let mut up = vec![];
        let mut down: Vec<Vec<Value>> = vec![];
        for &(kind, pick) in steps {
            fresh += 1;
            let f = fields[pick as usize % fields.len()].clone();
            match kind {
                0 => {
                    let to = format!("r{fresh}");
                    up.push(json!({"op": "rename", "path": format!("/{f}"), "to": to}));
                    down.push(vec![
                        json!({"op": "rename", "path": format!("/{to}"), "to": f}),
                    ]);
                    if let Some((name, _)) = flag.as_mut().filter(|(n, _)| *n == f) {
                        *name = to.clone();
                    }
                    fields.retain(|x| *x != f);
                    fields.push(to);
                }
                1 => {
                    let n = format!("n{fresh}");
                    up.push(json!({"op": "set_default", "path": format!("/{n}"), "value": pick}));
                    down.push(vec![json!({"op": "remove", "path": format!("/{n}")})]);
                    fields.push(n);
                }
                2 => {
                    up.push(json!({"op": "wrap", "path": format!("/{f}")}));
                    down.push(vec![json!({"op": "unwrap", "path": format!("/{f}")})]);
                    if flag.as_ref().is_some_and(|(n, _)| *n == f) {
                        flag = None;
                    }
                }
                3 => {
                    let o = format!("o{fresh}");
                    up.push(json!({"op": "plunge", "path": format!("/{f}"), "into": o}));
                    down.push(vec![
                        json!({"op": "hoist", "path": format!("/{o}/{f}")}),
                        json!({"op": "remove", "path": format!("/{o}")}),
                    ]);
                    if flag.as_ref().is_some_and(|(n, _)| *n == f) {
                        flag = None;
                    }
                    fields.retain(|x| *x != f);
                    fields.push(o);
                }
                4 => match flag.as_mut() {
                    Some((name, is_bool)) => {
                        let (t, u) = if *is_bool {
                            (
                                json!([[true, 1], [false, 0]]),
                                json!([[1, true], [0, false]]),
                            )
                        } else {
                            (
                                json!([[1, true], [0, false]]),
                                json!([[true, 1], [false, 0]]),
                            )
                        };
                        let path = format!("/{name}");
                        up.push(json!({"op": "convert", "path": path, "mapping": t}));
                        down.push(vec![json!({"op": "convert", "path": path, "mapping": u})]);
                        *is_bool = !*is_bool;
                    }
                    None => {
                        up.push(json!({"op": "remove", "path": "/never-there"}));
                        down.push(vec![]);
                    }
                },
                _ => {
                    let c = format!("c{fresh}");
                    up.push(
                        json!({"op": "copy", "from": format!("/{f}"), "path": format!("/{c}")}),
                    );
                    down.push(vec![json!({"op": "remove", "path": format!("/{c}")})]);
                    fields.push(c);
                }
            }
        }
        // The down of a migration undoes its steps in reverse order.
        let down: Vec<Value> = down.into_iter().rev().flatten().collect();
        migrations.push(json!({"from": i + 1, "to": i + 2, "up": up, "down": down}));
    }
    let n = chain.len() + 1;
    let versions: Map<String, Value> = (1..=n).map(|v| (v.to_string(), json!({}))).collect();
    serde_json::from_value(json!({
        "schema_version": n, "versions": versions, "migrations": migrations}))
    .unwrap()
}

fn value_of(d: &amberdb::Document) -> Value {
    serde_json::from_slice(&d.value).unwrap()
}

/// A new client's new value for a field, of the same shape (a later `wrap` stays unwrappable).
fn tweak(v: &mut Value, name: &str) {
    match v {
        Value::Array(a) if a.len() == 1 => tweak(&mut a[0], name),
        _ => *v = json!(format!("new-{name}")),
    }
}

fn with_version(spec: &CollectionSpec, v: u32) -> CollectionSpec {
    let mut s = spec.clone();
    s.schema_version = Some(v);
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn down_of_up_is_the_identity_and_a_lazy_read_equals_the_upgraded_write(
        chain in chains(), docs in prop::collection::vec(v1_docs(), 1..4),
    ) {
        let spec = build(&chain);
        let top = spec.schema_version.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        // Stored at v1 while the collection is at v1, then the spec moves to the top: reads
        // upgrade lazily.
        db.set_spec("lazy", &with_version(&spec, 1)).unwrap();
        db.set_spec("eager", &spec).unwrap();
        for (i, d) in docs.iter().enumerate() {
            let key = format!("k{i}");
            db.put("lazy", &key, d.clone()).unwrap();
            let mut tx = Transaction::new();
            tx.put("eager", &key, d.clone()).schema_version(1);
            db.commit(&tx).unwrap();
        }
        db.set_spec("lazy", &spec).unwrap();
        for (i, d) in docs.iter().enumerate() {
            let key = format!("k{i}");
            let lazy = db.get_as("lazy", &key, None).unwrap().unwrap();
            prop_assert_eq!(lazy.stored_schema_version, 1);
            prop_assert_eq!(lazy.doc.meta.schema_version, top);
            let eager = db.get("eager", &key).unwrap();
            prop_assert_eq!(eager.meta.schema_version, top);
            prop_assert_eq!(value_of(&lazy.doc), value_of(&eager));
            // down(up(d)) == d, at every older version against the stored v1 document.
            let back = db.get_as("eager", &key, Some(1)).unwrap().unwrap();
            prop_assert_eq!(&value_of(&back.doc), d);
            for v in 1..=top {
                let from_lazy = db.get_as("lazy", &key, Some(v)).unwrap().unwrap();
                let from_eager = db.get_as("eager", &key, Some(v)).unwrap().unwrap();
                prop_assert_eq!(value_of(&from_lazy.doc), value_of(&from_eager.doc));
            }
        }
        db.close().unwrap();
    }

    #[test]
    fn old_client_writes_at_every_older_version_keep_later_only_fields(
        chain in chains(), d in v1_docs(), how in 0u8..3,
    ) {
        let spec = build(&chain);
        let top = spec.schema_version.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        db.set_spec("p", &spec).unwrap();
        for k in 1..top {
            // A new client writes the document with every field it knows set to new values.
            let mut tx = Transaction::new();
            tx.put("p", "x", d.clone()).schema_version(1);
            db.commit(&tx).unwrap();
            let mut newer = value_of(&db.get("p", "x").unwrap());
            for (name, v) in newer.as_object_mut().unwrap() {
                if name.starts_with('n') {
                    tweak(v, name);
                }
            }
            db.put("p", "x", newer.clone()).unwrap();
            // An old client at k adds a field of its own.
            let view = value_of(&db.get_as("p", "x", Some(k)).unwrap().unwrap().doc);
            let mut mine = view.clone();
            mine["zz"] = json!(k);
            let mut tx = Transaction::new();
            match how {
                0 => { tx.put("p", "x", mine).schema_version(k); }
                1 => { tx.patch("p", "x", Patch::Merge(json!({"zz": k}))).schema_version(k); }
                _ => {
                    tx.check("p", "x", db.get("p", "x").unwrap().meta.version);
                    tx.put("p", "x", mine).schema_version(k);
                    tx.patch("p", "x", Patch::Merge(json!({"zz2": k}))).schema_version(k);
                }
            }
            db.commit(&tx).unwrap();
            let mut expected = newer;
            expected["zz"] = json!(k);
            if how == 2 {
                expected["zz2"] = json!(k);
            }
            let stored = db.get("p", "x").unwrap();
            prop_assert_eq!(stored.meta.schema_version, top);
            prop_assert_eq!(value_of(&stored), expected, "client at version {}", k);
        }
        db.close().unwrap();
    }
}

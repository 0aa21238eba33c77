//! Bounded patch application and the shape checks every written value passes.
//!
//! A JSON Patch is tiny on the wire and can be huge in effect: fourteen `copy` ops from `""`
//! double a document fourteen times. So a patch is applied one operation at a time, and before
//! each operation the growth it causes is measured (the size of the value it adds, replaces or
//! copies) and the depth it reaches is bounded; the patch is refused as soon as the values it
//! inserts total more than `max_doc_bytes` or a value would sit deeper than
//! [`MAX_DEPTH`](crate::limits::MAX_DEPTH). The memory a patch can take is therefore bounded by
//! about twice `max_doc_bytes`, whatever the patch says, and so is the work it does in the
//! committer. The result is then checked exactly (size and depth) like any other value.
//!
//! Depth is checked with recursion that stops at the limit, so a hostile value (an embedder can
//! build one a million levels deep) never overflows the stack here.

use std::io;

use json_patch::PatchOperation;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::limits::{MAX_DEPTH, MAX_PATCH_OPS};

/// The JSON Pointer (RFC 6901) of the first array or object nested deeper than `max` levels,
/// or `None` when the value fits. Recursion never goes deeper than `max + 1` levels.
pub(crate) fn too_deep(value: &Value, max: usize) -> Option<String> {
    fn walk(v: &Value, depth: usize, max: usize, path: &mut Vec<String>) -> bool {
        let children: Box<dyn Iterator<Item = (String, &Value)>> = match v {
            Value::Array(a) => Box::new(a.iter().enumerate().map(|(i, x)| (i.to_string(), x))),
            Value::Object(o) => Box::new(o.iter().map(|(k, x)| (k.clone(), x))),
            _ => return false,
        };
        if depth + 1 > max {
            return true;
        }
        for (token, child) in children {
            path.push(token);
            if walk(child, depth + 1, max, path) {
                return true;
            }
            path.pop();
        }
        false
    }
    let mut path = vec![];
    walk(value, 0, max, &mut path).then(|| pointer(&path))
}

/// Nesting depth of `value`, exact up to `cap`, and `cap + 1` for anything deeper.
fn depth_capped(value: &Value, cap: usize) -> usize {
    fn walk(v: &Value, cap: usize) -> usize {
        let inner = match v {
            Value::Array(a) if cap > 0 => a.iter().map(|x| walk(x, cap - 1)).max().unwrap_or(0),
            Value::Object(o) if cap > 0 => o.values().map(|x| walk(x, cap - 1)).max().unwrap_or(0),
            Value::Array(_) | Value::Object(_) => 0,
            _ => return 0,
        };
        inner + 1
    }
    walk(value, cap).min(cap + 1)
}

fn pointer(tokens: &[String]) -> String {
    if tokens.is_empty() {
        return "\"\" (the whole value)".into();
    }
    tokens
        .iter()
        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// Refuses a value nested deeper than [`MAX_DEPTH`], naming where.
pub(crate) fn check_depth(collection: &str, key: &str, value: &Value) -> Result<()> {
    match too_deep(value, MAX_DEPTH) {
        None => Ok(()),
        Some(at) => Err(depth_error(collection, key, &at)),
    }
}

fn depth_error(collection: &str, key: &str, at: &str) -> Error {
    Error::InvalidValue(format!(
        "{collection}/{key}: the value nests arrays and objects deeper than {MAX_DEPTH} levels (at {at})"
    ))
}

/// Checks what can be checked of a JSON Patch before the current value is known: the number
/// of operations and the depth of the values it carries.
pub(crate) fn check_json_patch(collection: &str, key: &str, ops: &[PatchOperation]) -> Result<()> {
    if ops.len() > MAX_PATCH_OPS {
        return Err(Error::InvalidValue(format!(
            "the JSON Patch of {collection}/{key} has {} operations, over the limit of {MAX_PATCH_OPS}",
            ops.len()
        )));
    }
    for op in ops {
        let value = match op {
            PatchOperation::Add(o) => &o.value,
            PatchOperation::Replace(o) => &o.value,
            PatchOperation::Test(o) => &o.value,
            _ => continue,
        };
        check_depth(collection, key, value)?;
    }
    Ok(())
}

/// Length of the compact JSON encoding of `value` (its depth must already be bounded).
fn encoded_len(value: &Value) -> usize {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing a `Value` to a counter cannot fail.
    let _ = serde_json::to_writer(&mut c, value);
    c.0
}

/// Applies an RFC 6902 patch to `doc` one operation at a time, refusing it as soon as the
/// values it inserts total more than `max_bytes` or a value would nest deeper than
/// [`MAX_DEPTH`]. On error `doc` is left part-patched: callers apply to a scratch copy.
pub(crate) fn apply_json_patch(
    doc: &mut Value,
    ops: &[PatchOperation],
    collection: &str,
    key: &str,
    initial_len: usize,
    max_bytes: usize,
) -> Result<()> {
    check_json_patch(collection, key, ops)?;
    // An upper bound of the document's depth as ops apply (the stored value parsed, so it is
    // at most serde_json's 128; every insertion below is bounded by MAX_DEPTH).
    let mut doc_depth = depth_capped(doc, MAX_DEPTH.max(128));
    let mut inserted: usize = 0;
    for (i, op) in ops.iter().enumerate() {
        // (depth the inserted value reaches, bytes it inserts), when the op inserts anything.
        let growth = match op {
            PatchOperation::Add(o) => Some((
                o.path.count() + depth_capped(&o.value, MAX_DEPTH),
                encoded_len(&o.value) + o.path.as_str().len(),
            )),
            PatchOperation::Replace(o) => Some((
                o.path.count() + depth_capped(&o.value, MAX_DEPTH),
                encoded_len(&o.value),
            )),
            PatchOperation::Copy(o) => doc.pointer(o.from.as_str()).map(|src| {
                (
                    o.path.count() + depth_capped(src, MAX_DEPTH),
                    encoded_len(src) + o.path.as_str().len(),
                )
            }),
            PatchOperation::Move(o) => {
                // A move inserts nothing new; only its depth can grow. Bound it cheaply, and
                // measure the moved value (counted as work) only when the bound is too high.
                let bound = (o.path.count() + doc_depth).saturating_sub(o.from.count());
                if bound <= MAX_DEPTH {
                    doc_depth = doc_depth.max(bound);
                    None
                } else {
                    doc.pointer(o.from.as_str()).map(|src| {
                        (
                            o.path.count() + depth_capped(src, MAX_DEPTH),
                            encoded_len(src),
                        )
                    })
                }
            }
            PatchOperation::Remove(_) | PatchOperation::Test(_) => None,
        };
        if let Some((depth, bytes)) = growth {
            if depth > MAX_DEPTH {
                let at = format!("operation {i}, path {:?}", op_path(op));
                return Err(depth_error(collection, key, &at));
            }
            doc_depth = doc_depth.max(depth);
            inserted = inserted.saturating_add(bytes);
            if inserted > max_bytes {
                return Err(Error::TooLarge {
                    collection: collection.into(),
                    key: key.into(),
                    size: initial_len.saturating_add(inserted),
                    limit: max_bytes,
                });
            }
        }
        json_patch::patch_unsafe(doc, std::slice::from_ref(op)).map_err(|mut e| {
            e.operation = i;
            Error::PatchFailed {
                collection: collection.into(),
                key: key.into(),
                message: e.to_string(),
            }
        })?;
    }
    Ok(())
}

fn op_path(op: &PatchOperation) -> &str {
    match op {
        PatchOperation::Add(o) => o.path.as_str(),
        PatchOperation::Remove(o) => o.path.as_str(),
        PatchOperation::Replace(o) => o.path.as_str(),
        PatchOperation::Move(o) => o.path.as_str(),
        PatchOperation::Copy(o) => o.path.as_str(),
        PatchOperation::Test(o) => o.path.as_str(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(levels: usize) -> Value {
        let mut v = json!(1);
        for _ in 0..levels {
            v = json!([v]);
        }
        v
    }

    fn ops(v: Value) -> Vec<PatchOperation> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn depth_is_counted_in_containers_and_names_the_spot() {
        assert_eq!(too_deep(&json!(1), 0), None);
        assert_eq!(too_deep(&nested(MAX_DEPTH), MAX_DEPTH), None);
        let at = too_deep(&json!({"a/b": nested(3)}), 3).unwrap();
        assert_eq!(at, "/a~1b/0/0");
        assert_eq!(depth_capped(&nested(7), 100), 7);
        assert_eq!(depth_capped(&nested(7), 3), 4);
    }

    #[test]
    fn doubling_copies_are_refused_once_they_insert_more_than_the_limit() {
        // The amplification: every `copy` of "" doubles the document.
        let mut doc = json!({"pad": "x".repeat(1000)});
        let mut list = vec![];
        for i in 0..40 {
            list.push(json!({"op": "copy", "from": "", "path": format!("/c{i}")}));
        }
        let max = 1 << 20;
        let err = apply_json_patch(&mut doc, &ops(json!(list)), "c", "k", 1010, max).unwrap_err();
        assert!(
            matches!(err, Error::TooLarge { limit, .. } if limit == max),
            "{err}"
        );
        // Refused before the op that would pass the bound ran: the document stayed small.
        assert!(encoded_len(&doc) <= 2 * max, "{}", encoded_len(&doc));
    }

    #[test]
    fn copies_that_nest_past_the_depth_limit_are_refused() {
        // Each copy of "" into a member nests the whole document one level deeper.
        let mut doc = json!({});
        let list: Vec<Value> = (0..MAX_DEPTH + 5)
            .map(|_| json!({"op": "copy", "from": "", "path": "/a"}))
            .collect();
        let err = apply_json_patch(&mut doc, &ops(json!(list)), "c", "k", 2, 16 << 20).unwrap_err();
        assert!(err.to_string().contains("deeper than 100 levels"), "{err}");
        assert!(too_deep(&doc, MAX_DEPTH).is_none());
    }

    fn objects(levels: usize) -> Value {
        let mut v = json!({});
        for _ in 1..levels {
            v = json!({ "a": v });
        }
        v
    }

    #[test]
    fn moves_into_deep_places_are_measured_not_guessed() {
        // The cheap bound (target depth + whole document depth) says 121 levels; the moved
        // value is one level deep, so the result is 62 levels and the move is allowed.
        let mut doc = json!({"deep": objects(60), "wide": [1, 2, 3]});
        let to = format!("/deep{}/w", "/a".repeat(59));
        let p = ops(json!([{"op": "move", "from": "/wide", "path": to}]));
        apply_json_patch(&mut doc, &p, "c", "k", 0, 1 << 20).unwrap();
        assert_eq!(doc.pointer(&to), Some(&json!([1, 2, 3])));
        // Moving a 60-level value there would nest 121 levels: refused.
        let mut doc = json!({"deep": objects(60), "b": objects(60)});
        let to = format!("/deep{}/b", "/a".repeat(59));
        let p = ops(json!([{"op": "move", "from": "/b", "path": to}]));
        let err = apply_json_patch(&mut doc, &p, "c", "k", 0, 1 << 20).unwrap_err();
        assert!(err.to_string().contains("deeper than"), "{err}");
    }

    #[test]
    fn too_many_operations_are_refused_before_any_applies() {
        let mut doc = json!({"n": 0});
        let list: Vec<Value> = (0..=MAX_PATCH_OPS)
            .map(|_| json!({"op": "replace", "path": "/n", "value": 1}))
            .collect();
        let err = apply_json_patch(&mut doc, &ops(json!(list)), "c", "k", 7, 16 << 20).unwrap_err();
        assert!(err.to_string().contains("operations"), "{err}");
        assert_eq!(doc, json!({"n": 0}));
    }

    #[test]
    fn failed_operations_name_their_index() {
        let mut doc = json!({"n": 0});
        let p = ops(json!([
            {"op": "replace", "path": "/n", "value": 1},
            {"op": "test", "path": "/n", "value": 5}
        ]));
        let err = apply_json_patch(&mut doc, &p, "c", "k", 7, 1 << 20).unwrap_err();
        assert!(err.to_string().contains("operation '/1'"), "{err}");
    }
}

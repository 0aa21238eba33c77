//! The declarative migration steps: what each does to a document, and the check that a step
//! is well-formed. Paths are JSON Pointers (RFC 6901) as in JSON Patch.
//!
//! Steps are tolerant of what is absent (a `remove`, `rename` or `move` of a missing field
//! does nothing), so a migration applies to every document of a version even when optional
//! fields are missing; they fail on what contradicts them (a `set` below a scalar, a
//! `convert` of a value its table does not know), and the failure names the step.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One step of a migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Sets `path` to `value` (creating missing parent objects).
    Set {
        /// Where.
        path: String,
        /// What.
        value: Value,
    },
    /// Sets `path` to `value` when it is absent (creating missing parent objects).
    SetDefault {
        /// Where.
        path: String,
        /// What.
        value: Value,
    },
    /// Removes `path` when present.
    Remove {
        /// What.
        path: String,
    },
    /// Renames the field at `path` to `to` in the same object, when present.
    Rename {
        /// The field.
        path: String,
        /// Its new name (a key, not a pointer).
        to: String,
    },
    /// Copies `from` to `path`, when `from` is present.
    Copy {
        /// The source.
        from: String,
        /// The destination (missing parent objects are created).
        path: String,
    },
    /// Moves `from` to `path`, when `from` is present.
    Move {
        /// The source.
        from: String,
        /// The destination (missing parent objects are created).
        path: String,
    },
    /// Wraps the value at `path` into a one-element array (no `key`) or a one-field object
    /// (`key`), when present.
    Wrap {
        /// The value.
        path: String,
        /// The field name of the object to wrap into; `None` wraps into an array.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// The inverse of `wrap`: replaces a one-element array (no `key`) or the object at `path`
    /// by its element or its field `key`, when present.
    Unwrap {
        /// The value.
        path: String,
        /// The field to take out of the object; `None` unwraps a one-element array.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// Moves the field at `path` up one level: `/meta/title` becomes `/title`.
    Hoist {
        /// The field.
        path: String,
    },
    /// Moves the field at `path` into its sibling object `into` (created when missing):
    /// `/title` with `into: "meta"` becomes `/meta/title`. The inverse of `hoist`.
    Plunge {
        /// The field.
        path: String,
        /// The sibling object's name.
        into: String,
    },
    /// Applies `step` to every element of the array at `path` (inner paths are relative to
    /// the element: `""` is the element itself), when present.
    Map {
        /// The array.
        path: String,
        /// The step for each element.
        step: Box<Step>,
    },
    /// Maps the value at `path` through a table of `[from, to]` pairs, when present; a value
    /// the table does not list takes `default`, or fails the step when there is none.
    Convert {
        /// The value.
        path: String,
        /// Pairs `[from, to]`.
        mapping: Vec<(Value, Value)>,
        /// The value for unlisted values.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        default: Option<Value>,
    },
    /// Runs a jq filter (the `jaq` implementation, sandboxed: no I/O, bounded time and
    /// output) on the whole document; it must produce exactly one value.
    Jq {
        /// The jq program.
        filter: String,
    },
    /// Calls a Rust function registered with [`crate::Options::native_steps`] under `name`
    /// (embedded use); a process that has none registered under that name fails the step.
    Native {
        /// The registered name.
        name: String,
    },
}

/// Parses a JSON Pointer into its unescaped tokens.
pub(crate) fn tokens(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Ok(vec![]);
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!(
            "path {path:?} is not a JSON Pointer (it must start with /)"
        ));
    };
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn child<'a>(v: &'a mut Value, token: &str) -> Option<&'a mut Value> {
    match v {
        Value::Object(m) => m.get_mut(token),
        Value::Array(a) => token.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
        _ => None,
    }
}

fn get_mut<'a>(doc: &'a mut Value, toks: &[String]) -> Option<&'a mut Value> {
    toks.iter().try_fold(doc, |v, t| child(v, t))
}

/// Splits `path` into the parent's tokens and the last token (the root has none).
fn split(path: &str) -> Result<(Vec<String>, String), String> {
    let mut toks = tokens(path)?;
    let last = toks
        .pop()
        .ok_or_else(|| "this step needs a path below the document root".to_string())?;
    Ok((toks, last))
}

/// Takes the value at `path` out of `doc` (`None` when absent).
fn take(doc: &mut Value, path: &str) -> Result<Option<Value>, String> {
    let (parent, last) = split(path)?;
    Ok(match get_mut(doc, &parent) {
        Some(Value::Object(m)) => m.remove(&last),
        Some(Value::Array(a)) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => Some(a.remove(i)),
            _ => None,
        },
        _ => None,
    })
}

/// Puts `value` at `path`, creating missing parent objects; `only_if_absent` keeps a present
/// value. Fails when a parent is a scalar.
fn put(doc: &mut Value, path: &str, value: Value, only_if_absent: bool) -> Result<(), String> {
    if path.is_empty() {
        if !only_if_absent {
            *doc = value;
        }
        return Ok(());
    }
    let (parent, last) = split(path)?;
    let mut cur = doc;
    for t in &parent {
        cur = match cur {
            Value::Object(m) => m
                .entry(t.clone())
                .or_insert_with(|| Value::Object(Default::default())),
            Value::Array(a) => {
                let len = a.len();
                t.parse::<usize>()
                    .ok()
                    .and_then(|i| a.get_mut(i))
                    .ok_or_else(|| format!("{path}: index {t} is outside an array of {len}"))?
            }
            other => return Err(format!("{path}: {t:?} is below a {}", kind(other))),
        };
    }
    match cur {
        Value::Object(m) => {
            if !(only_if_absent && m.contains_key(&last)) {
                m.insert(last, value);
            }
            Ok(())
        }
        Value::Array(a) => {
            let len = a.len();
            match last.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(slot) => {
                    if !only_if_absent {
                        *slot = value;
                    }
                    Ok(())
                }
                _ if last == "-" || last == len.to_string() => {
                    a.push(value);
                    Ok(())
                }
                _ => Err(format!("{path}: index {last} is outside an array of {len}")),
            }
        }
        other => Err(format!(
            "{path}: the parent is a {}, not an object",
            kind(other)
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The parent pointer of `path` and its last token, re-escaped.
fn parent_and_name(path: &str) -> Result<(String, String), String> {
    let (parent, last) = split(path)?;
    Ok((join(&parent), last))
}

fn join(toks: &[String]) -> String {
    toks.iter()
        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// How a step reaches what it cannot do itself (jq, registered Rust functions).
pub(crate) trait Runner {
    /// Runs a jq filter on `doc`.
    fn jq(&self, filter: &str, doc: Value) -> Result<Value, String>;
    /// Runs the native step `name` on `doc`.
    fn native(&self, name: &str, doc: Value) -> Result<Value, String>;
}

impl Step {
    /// Applies the step to `doc`.
    pub(crate) fn apply(&self, doc: &mut Value, run: &dyn Runner) -> Result<(), String> {
        match self {
            Step::Set { path, value } => put(doc, path, value.clone(), false),
            Step::SetDefault { path, value } => put(doc, path, value.clone(), true),
            Step::Remove { path } => take(doc, path).map(|_| ()),
            Step::Rename { path, to } => {
                let (parent, _) = parent_and_name(path)?;
                match take(doc, path)? {
                    Some(v) => put(
                        doc,
                        &format!("{parent}{}", join(std::slice::from_ref(to))),
                        v,
                        false,
                    ),
                    None => Ok(()),
                }
            }
            Step::Copy { from, path } => {
                let v = get_mut(doc, &tokens(from)?).map(|v| v.clone());
                match v {
                    Some(v) => put(doc, path, v, false),
                    None => Ok(()),
                }
            }
            Step::Move { from, path } => match take(doc, from)? {
                Some(v) => put(doc, path, v, false),
                None => Ok(()),
            },
            Step::Wrap { path, key } => {
                let Some(v) = get_mut(doc, &tokens(path)?) else {
                    return Ok(());
                };
                let inner = v.take();
                *v = match key {
                    None => Value::Array(vec![inner]),
                    Some(k) => Value::Object([(k.clone(), inner)].into_iter().collect()),
                };
                Ok(())
            }
            Step::Unwrap { path, key } => {
                let Some(v) = get_mut(doc, &tokens(path)?) else {
                    return Ok(());
                };
                let inner = match (key, v.take()) {
                    (None, Value::Array(mut a)) if a.len() == 1 => a.pop().unwrap_or_default(),
                    (Some(k), Value::Object(mut m)) => m.remove(k).unwrap_or_default(),
                    (None, other) => {
                        let e = format!("{path}: expected a one-element array, found {other}");
                        *v = other;
                        return Err(e);
                    }
                    (Some(k), other) => {
                        let e = format!("{path}: expected an object with {k:?}, found {other}");
                        *v = other;
                        return Err(e);
                    }
                };
                *v = inner;
                Ok(())
            }
            Step::Hoist { path } => {
                let (parent, name) = split(path)?;
                if parent.is_empty() {
                    return Err(format!("{path}: a top-level field cannot be hoisted"));
                }
                let mut grand = parent;
                grand.pop();
                grand.push(name);
                match take(doc, path)? {
                    Some(v) => put(doc, &join(&grand), v, false),
                    None => Ok(()),
                }
            }
            Step::Plunge { path, into } => {
                let (parent, name) = split(path)?;
                match take(doc, path)? {
                    Some(v) => {
                        let mut dest = parent;
                        dest.push(into.clone());
                        dest.push(name);
                        put(doc, &join(&dest), v, false)
                    }
                    None => Ok(()),
                }
            }
            Step::Map { path, step } => match get_mut(doc, &tokens(path)?) {
                Some(Value::Array(a)) => {
                    for (i, e) in a.iter_mut().enumerate() {
                        step.apply(e, run).map_err(|m| format!("{path}/{i}: {m}"))?;
                    }
                    Ok(())
                }
                None => Ok(()),
                Some(other) => Err(format!(
                    "{path}: map needs an array, found a {}",
                    kind(other)
                )),
            },
            Step::Convert {
                path,
                mapping,
                default,
            } => {
                let Some(v) = get_mut(doc, &tokens(path)?) else {
                    return Ok(());
                };
                match mapping.iter().find(|(from, _)| from == v) {
                    Some((_, to)) => *v = to.clone(),
                    None => match default {
                        Some(d) => *v = d.clone(),
                        None => return Err(format!("{path}: {v} is not in the conversion table")),
                    },
                }
                Ok(())
            }
            Step::Jq { filter } => {
                *doc = run.jq(filter, doc.take())?;
                Ok(())
            }
            Step::Native { name } => {
                *doc = run.native(name, doc.take())?;
                Ok(())
            }
        }
    }

    /// Checks that the step is well-formed (its paths parse, its bounds hold, its jq filter
    /// compiles); `known_native` says whether a native name is registered.
    pub(crate) fn check(&self, known_native: &dyn Fn(&str) -> bool) -> Result<(), String> {
        let need_below_root = |p: &str| split(p).map(|_| ());
        match self {
            Step::Set { path, .. } | Step::SetDefault { path, .. } => tokens(path).map(|_| ()),
            Step::Remove { path } | Step::Wrap { path, .. } | Step::Unwrap { path, .. } => {
                tokens(path).map(|_| ())
            }
            Step::Rename { path, to } | Step::Plunge { path, into: to } => {
                need_below_root(path)?;
                if to.is_empty() {
                    return Err("the new name is empty".into());
                }
                Ok(())
            }
            Step::Hoist { path } => {
                let (parent, _) = split(path)?;
                if parent.is_empty() {
                    return Err(format!("{path}: a top-level field cannot be hoisted"));
                }
                Ok(())
            }
            Step::Copy { from, path } | Step::Move { from, path } => {
                need_below_root(from)?;
                tokens(path).map(|_| ())
            }
            Step::Map { path, step } => {
                tokens(path)?;
                step.check(known_native)
            }
            Step::Convert { path, .. } => tokens(path).map(|_| ()),
            Step::Jq { filter } => super::jq::check(filter),
            Step::Native { name } => {
                if known_native(name) {
                    Ok(())
                } else {
                    Err(format!(
                        "native step {name:?} is not registered in this process \
                         (Options::native_steps)"
                    ))
                }
            }
        }
    }
}

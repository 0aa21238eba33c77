//! The `jq` migration step, run by `jaq` (a pure-Rust jq) in a sandbox.
//!
//! What the sandbox guarantees: no I/O (module loading is off, there is no input stream
//! and no global variable, and a filter naming `input`, `env`, `$ENV`, `now`, `debug`,
//! `stderr` or `halt` anywhere in its code is refused: string contents are data, their
//! `\(...)` interpolations and comments are code); a filter no longer than
//! `limits::MAX_JQ_FILTER_BYTES`; no `def` (so no recursion of its own) and none of jq's
//! unbounded generators (`range`, `repeat`, `recurse` with arguments, `while`, `until`,
//! `combinations`); exactly one output no larger than the document limit; and a wall-clock
//! bound (`limits::MAX_JQ_TIME`) after which the document's migration fails. The filter runs
//! on a helper thread so the caller can stop waiting; safe Rust cannot preempt that thread,
//! so a filter that the static checks let through and that runs long keeps its thread busy
//! until it ends (see docs/SCHEMAS.md).

use std::sync::mpsc;

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{data, unwrap_valr, Compiler, Ctx, Vars};
use jaq_json::Val;
use serde_json::Value;

use crate::limits::{MAX_JQ_FILTER_BYTES, MAX_JQ_TIME};

/// Names a filter may not call: jq's I/O, environment, clock and unbounded generators.
const DENIED: &[&str] = &[
    "input",
    "inputs",
    "env",
    "$ENV",
    "now",
    "debug",
    "stderr",
    "halt",
    "halt_error",
    "input_filename",
    "$__loc__",
    "range",
    "repeat",
    "while",
    "until",
    "combinations",
    "debug_empty",
    "stderr_empty",
];

/// Checks the static rules and that the filter compiles.
pub(crate) fn check(filter: &str) -> Result<(), String> {
    if filter.len() > MAX_JQ_FILTER_BYTES {
        return Err(format!(
            "the jq filter is {} bytes, over the limit of {MAX_JQ_FILTER_BYTES}",
            filter.len()
        ));
    }
    for word in words(filter) {
        if word == "def" {
            return Err("jq filters may not define functions (def)".into());
        }
        if DENIED.contains(&word) {
            return Err(format!("jq filters may not use {word} (sandboxed)"));
        }
        if word == "recurse" && recurse_has_args(filter) {
            return Err("jq filters may use recurse only without arguments".into());
        }
    }
    compile_and_run(filter, None).map(|_| ())
}

/// Identifier-like words of a filter's code (with a leading `$` for variables). The
/// contents of string literals are data and are skipped, except their interpolations
/// (`"\(...)"`), which are code and are scanned like the rest (nested strings included).
/// Comments are scanned too: no comment syntax hides a forbidden name.
fn words(filter: &str) -> Vec<&str> {
    /// Where the scanner is: in code (with the open parentheses of this level), or
    /// inside a string literal.
    enum At {
        Code(usize),
        Str,
    }
    let mut out = vec![];
    let bytes = filter.as_bytes();
    let mut stack = vec![At::Code(0)];
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        match stack.last_mut() {
            Some(At::Str) => match c {
                b'\\' if bytes.get(i + 1) == Some(&b'(') => {
                    stack.push(At::Code(0));
                    i += 2;
                    continue;
                }
                b'\\' => i += 1,
                b'"' => {
                    stack.pop();
                }
                _ => {}
            },
            Some(At::Code(depth)) => match c {
                b'"' => stack.push(At::Str),
                b'(' => *depth += 1,
                b')' if *depth > 0 => *depth -= 1,
                // The `)` that closes an interpolation goes back into its string; at the
                // top level an unmatched `)` is left for the parser to refuse.
                b')' if stack.len() > 1 => {
                    stack.pop();
                }
                _ if c.is_ascii_alphabetic() || c == b'_' || c == b'$' => {
                    let start = i;
                    i += 1;
                    while bytes
                        .get(i)
                        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
                    {
                        i += 1;
                    }
                    out.extend(filter.get(start..i));
                    continue;
                }
                _ => {}
            },
            None => break,
        }
        i += 1;
    }
    out
}

fn recurse_has_args(filter: &str) -> bool {
    filter.match_indices("recurse").any(|(i, w)| {
        filter
            .get(i + w.len()..)
            .is_some_and(|rest| rest.trim_start().starts_with('('))
    })
}

/// Compiles `filter` and, with a document, runs it to exactly one output.
fn compile_and_run(filter: &str, doc: Option<Value>) -> Result<Option<Value>, String> {
    let program = File {
        code: filter,
        path: (),
    };
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs());
    // All of jaq's functions are linked (its definitions need them); the word check in
    // `check` keeps a filter from calling the ones with effects.
    let funs = jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs());
    let loader = Loader::new(defs);
    let arena = Arena::default();
    let modules = loader
        .load(&arena, program)
        .map_err(|errs| format!("the jq filter does not parse: {errs:?}"))?;
    let compiled = Compiler::default()
        .with_funs(funs)
        .compile(modules)
        .map_err(|errs| format!("the jq filter does not compile: {errs:?}"))?;
    let Some(doc) = doc else {
        return Ok(None);
    };
    let input: Val = serde_json::from_value(doc).map_err(|e| format!("jq input: {e}"))?;
    let ctx = Ctx::<data::JustLut<Val>>::new(&compiled.lut, Vars::new([]));
    let mut out = compiled.id.run((ctx, input)).map(unwrap_valr);
    let first = match out.next() {
        Some(Ok(v)) => v,
        Some(Err(e)) => return Err(format!("jq error: {e}")),
        None => return Err("the jq filter produced no value (it must produce one)".into()),
    };
    if out.next().is_some() {
        return Err("the jq filter produced more than one value (it must produce one)".into());
    }
    let text = first.to_string();
    if text.len() > crate::limits::MAX_DOC_BYTES {
        return Err(format!(
            "the jq filter's output is {} bytes, over the limit of {}",
            text.len(),
            crate::limits::MAX_DOC_BYTES
        ));
    }
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| format!("the jq filter's output is not JSON: {e}"))
}

/// Runs a checked `filter` on `doc` within `limits::MAX_JQ_TIME`.
pub(crate) fn run(filter: &str, doc: Value) -> Result<Value, String> {
    let (tx, rx) = mpsc::sync_channel(1);
    let filter = filter.to_owned();
    std::thread::Builder::new()
        .name("amberdb-jq".into())
        .spawn(move || {
            let _ = tx.send(compile_and_run(&filter, Some(doc)));
        })
        .map_err(|e| format!("cannot start the jq sandbox thread: {e}"))?;
    match rx.recv_timeout(MAX_JQ_TIME) {
        Ok(r) => r.and_then(|v| v.ok_or_else(|| "the jq filter produced nothing".into())),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
            "the jq filter ran longer than {} ms",
            MAX_JQ_TIME.as_millis()
        )),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err("the jq filter panicked".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jq_runs_and_rejects_what_the_sandbox_forbids() {
        let out = run(".name |= ascii_upcase", serde_json::json!({"name": "ann"})).unwrap();
        assert_eq!(out, serde_json::json!({"name": "ANN"}));
        assert!(check("def f: f; f").unwrap_err().contains("def"));
        assert!(check("[range(1e9)]").unwrap_err().contains("range"));
        assert!(check("$ENV").unwrap_err().contains("$ENV"));
        assert!(check("env").is_err());
        assert!(check("input").is_err());
        assert!(check(".a |").unwrap_err().contains("parse"));
        assert!(
            check(r#"."range""#).is_ok(),
            "a word inside a string is data"
        );
        assert!(
            check(r#""\(env)""#).unwrap_err().contains("env"),
            "an interpolation is code"
        );
        assert!(
            check(r#""a \"b\" \(.x | "\(input)")""#)
                .unwrap_err()
                .contains("input"),
            "escaped quotes and nested interpolations are followed"
        );
        assert!(
            check(r#""\\(env)""#).is_ok(),
            "an escaped backslash is data"
        );
        assert!(run(".[]", serde_json::json!([1, 2]))
            .unwrap_err()
            .contains("more than one"));
        assert!(run("empty", serde_json::json!(1))
            .unwrap_err()
            .contains("no value"));
        assert!(run(r#"error("boom")"#, serde_json::json!(1))
            .unwrap_err()
            .contains("boom"));
    }
}

//! The number-exactness rule of `amberdb::json_numbers` against an independent reference:
//! for random JSON number literals, a number is accepted exactly when the value serde_json
//! stores for it, printed by serde_json and read back as an arbitrary-precision decimal
//! (`bigdecimal`), equals the literal read as a decimal. Plus: every number serde_json itself
//! prints is accepted, pointers name the offender wherever it sits, and no input panics.
//! Cases: 2000 per property (`AMBERDB_NUMBER_CASES` for more).

#![allow(clippy::unwrap_used)]

use std::str::FromStr;

use amberdb::json_numbers::{self, check, is_exact};
use bigdecimal::BigDecimal;
use proptest::prelude::*;
use serde_json::{json, Value};

fn cases() -> u32 {
    std::env::var("AMBERDB_NUMBER_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// The reference: parse → print → parse as a decimal, compared with the literal's decimal
/// value. A literal serde_json refuses (beyond f64's range) is not storable.
fn reference_exact(literal: &str) -> bool {
    match serde_json::from_str::<serde_json::Number>(literal) {
        Err(_) => false,
        Ok(stored) => {
            BigDecimal::from_str(&stored.to_string()).unwrap()
                == BigDecimal::from_str(literal).unwrap()
        }
    }
}

/// JSON number literals, weighted towards the places where exactness changes: integers at the
/// i64/u64 edges, floats with 15 to 20 significant digits, exponents near f64's range ends,
/// trailing zeros, and what serde_json prints for random f64s (shifted by a digit or not).
fn literal() -> impl Strategy<Value = String> {
    let re = |r: &str| proptest::string::string_regex(r).unwrap();
    prop_oneof![
        re("-?(0|[1-9][0-9]{0,21})"),
        re("-?(18446744073709551[0-9]{3}|922337203685477[0-9]{4})"),
        re("-?(0|[1-9][0-9]{0,4})\\.[0-9]{1,20}"),
        re("-?[1-9](\\.[0-9]{0,19}[1-9])?[eE][+-]?(30[0-9]|31[0-9]|32[0-9]|33[0-9]|[0-9]{1,2})"),
        re("-?[1-9][0-9]{0,40}(\\.[0-9]{1,40})?([eE][+-]?[0-9]{1,4})?"),
        re("-?0(\\.0{1,30})?([eE][+-]?[0-9]{1,17})?"), // bigdecimal keeps exponents in i64
        re("-?[1-9][0-9]{0,16}0{1,25}(\\.0{1,5})?"),
        (any::<f64>(), 0..4u8, 0..10u8).prop_filter_map("finite", |(x, how, d)| {
            if !x.is_finite() {
                return None;
            }
            let s = serde_json::to_string(&x).unwrap();
            let (mantissa, exp) = match s.split_once('e') {
                Some((m, e)) => (m.to_owned(), format!("e{e}")),
                None => (s.clone(), String::new()),
            };
            let m = if mantissa.contains('.') {
                mantissa
            } else {
                format!("{mantissa}.0")
            };
            Some(match how {
                0 => s,
                1 => format!("{m}{d}{exp}"), // one more digit: exact only if d == 0
                2 => format!("{m}00{exp}"),  // trailing zeros: same value
                _ => format!("{m}000000000000000000000{d}{exp}"),
            })
        }),
    ]
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn accepted_iff_the_stored_value_prints_back_to_the_same_decimal(lit in literal()) {
        let accepted = is_exact(&lit);
        prop_assert_eq!(accepted, reference_exact(&lit), "literal {}", lit);
        // The scanner agrees with the single-number check, inside a document too.
        prop_assert_eq!(check(lit.as_bytes()).is_ok(), accepted);
        let doc = format!(r#"{{"a":[true,{{"b":{lit}}}]}}"#);
        match check(doc.as_bytes()) {
            Ok(()) => prop_assert!(accepted, "{} accepted in a document", lit),
            Err(e) => {
                prop_assert!(!accepted, "{} refused in a document", lit);
                prop_assert_eq!(e.pointer, "/a/1/b");
            }
        }
    }

    #[test]
    fn every_number_serde_json_prints_is_accepted(x in any::<f64>(), i in any::<i64>(), u in any::<u64>()) {
        if x.is_finite() {
            let s = serde_json::to_string(&x).unwrap();
            prop_assert!(is_exact(&s), "serde_json printed {} for {:?}", s, x);
        }
        prop_assert!(is_exact(&i.to_string()));
        prop_assert!(is_exact(&u.to_string()));
    }

    #[test]
    fn the_pointer_names_the_inexact_number_wherever_it_sits(
        (doc, path) in document_with_marker(),
        bad in prop_oneof![Just("1e-400"), Just("18446744073709551616"), Just("-1e999"), Just("0.10000000000000000001")],
    ) {
        let text = serde_json::to_string(&doc).unwrap().replace(r#""\u0000MARK""#, bad);
        let e = check(text.as_bytes()).unwrap_err();
        prop_assert_eq!(&e.pointer, &path, "in {}", text);
        // The pointer finds the marker in the document it was built from.
        prop_assert_eq!(doc.pointer(&path), Some(&json!("\u{0}MARK")));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = check(&bytes);
    }
}

/// A random JSON document with the string `"\0MARK"` at one place, and that place's pointer.
/// Keys include `/`, `~`, quotes, escapes and non-ASCII, so pointer escaping is exercised.
fn document_with_marker() -> impl Strategy<Value = (Value, String)> {
    let key = proptest::string::string_regex("[a-z/~\"\\\\é\u{1F600} ]{0,6}").unwrap();
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        proptest::string::string_regex("[a-z0-9 \"\\\\\\[\\]{}:,]{0,8}")
            .unwrap()
            .prop_map(Value::from),
    ];
    let filler = leaf.prop_recursive(3, 16, 4, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map(
                proptest::string::string_regex("[a-z]{1,3}").unwrap(),
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    // A chain of up to 6 containers from the root to the marker, each with filler siblings.
    let step = (
        any::<bool>(),
        key,
        proptest::collection::vec(filler, 0..3),
        any::<prop::sample::Index>(),
    );
    proptest::collection::vec(step, 0..6).prop_map(|steps| {
        let mut value = json!("\u{0}MARK");
        let mut path: Vec<String> = Vec::new();
        for (is_array, key, siblings, at) in steps.into_iter().rev() {
            if is_array {
                let mut items = siblings;
                let i = at.index(items.len() + 1);
                items.insert(i, value);
                value = Value::from(items);
                path.push(i.to_string());
            } else {
                let mut map = serde_json::Map::new();
                for (n, s) in siblings.into_iter().enumerate() {
                    map.insert(format!("{key}{n}sib"), s);
                }
                map.insert(key.clone(), value);
                value = Value::Object(map);
                path.push(key.replace('~', "~0").replace('/', "~1"));
            }
        }
        let pointer: String = path.iter().rev().map(|p| format!("/{p}")).collect();
        (value, pointer)
    })
}

#[test]
fn the_issues_three_examples_are_refused() {
    for (lit, stored) in [
        (
            "123456789012345678901234567890",
            Some("1.2345678901234568e+29"),
        ),
        ("18446744073709551616", Some("1.8446744073709552e+19")),
        ("1.0e-400", Some("0.0")),
    ] {
        let e = check(lit.as_bytes()).unwrap_err();
        assert_eq!(e.stored.as_deref(), stored, "{lit}");
        assert!(!reference_exact(lit), "{lit}");
    }
    let _: json_numbers::InexactNumber = check(b"1e-400").unwrap_err();
}

//! Numbers a client sends that JSON parsing would store changed: found in the raw request text,
//! named by JSON Pointer, so that writers refuse them instead of storing something else.
//!
//! serde_json (built without `arbitrary_precision`) keeps a JSON number as a `u64`, an `i64` or
//! an `f64`. `123456789012345678901234567890` becomes `1.2345678901234568e+29`,
//! `18446744073709551616` becomes `1.8446744073709552e+19`, `1.0e-400` becomes `0.0`, all without
//! an error. Once parsed, the original digits are gone, so the check reads the text.
//!
//! **The rule.** A number is *exact* when the value serde_json stores for it, printed the way
//! serde_json prints it (integers as digits, floats in the shortest form that parses back to
//! the same `f64`), has the same *decimal value* as the number sent. Values are compared, not
//! strings: sign, digits without leading or trailing zeros, and the power of ten. So
//!
//! - exact: every integer in `i64` or `u64` range; `0.1` (stored as the `f64` nearest 0.1,
//!   printed `0.1`); `1e3` and `1000.0` (printed `1000.0`); `1.50`; `1.5e-300`; `5e-324` (the
//!   smallest subnormal); `1e20` (printed `1e+20`); `-0` and `-0.0` (stored as `-0.0`: a zero,
//!   whose sign is kept);
//! - inexact: integers beyond both ranges that an `f64` does not hold digit for digit
//!   (`18446744073709551616`), more significant digits than the stored `f64` prints back
//!   (`0.10000000000000000001`), values that underflow to zero from non-zero digits
//!   (`1e-400`), and values beyond `f64`'s range (`1e400`, which serde_json refuses anyway).
//!
//! The workspace builds serde_json with `float_roundtrip` (correctly rounded parsing): without
//! it, about a third of the floats serde_json prints parse back one unit in the last place
//! off (`1.5e-300` was stored as `1.4999999999999998e-300`), so this rule would refuse
//! numbers that other programs printed from an `f64`, and a patch would move the untouched
//! floats of the document it rewrites.
//!
//! The scanner never allocates for a document without an inexact number (the path is kept as
//! byte ranges of the text), never goes deeper than serde_json's own nesting limit, and does
//! not judge malformed JSON: it stops there and leaves the error to the parser.

use std::fmt;

/// The deepest nesting the scanner follows: serde_json's parser limit. A deeper text is
/// refused by the parser, so scanning further would find nothing that could be stored.
const MAX_SCAN_DEPTH: usize = 128;

/// The most bytes of a number kept in an error (a number may be megabytes of digits).
const MAX_LITERAL_SHOWN: usize = 64;

/// A number that cannot be stored exactly, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InexactNumber {
    /// RFC 6901 JSON Pointer of the number in the checked text (`""` for a bare number).
    pub pointer: String,
    /// The number as sent, cut to its first 64 bytes when longer (then ending in `...`).
    pub literal: String,
    /// What would be stored, printed as serde_json prints it; `None` when the number is
    /// beyond `f64`'s range and cannot be stored at all.
    pub stored: Option<String>,
}

impl fmt::Display for InexactNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.pointer.is_empty() {
            "the number".to_owned()
        } else {
            format!("the number at {}", self.pointer)
        };
        match &self.stored {
            Some(s) => write!(
                f,
                "{at} ({}) cannot be stored exactly: it would be stored as {s}",
                self.literal
            ),
            None => write!(
                f,
                "{at} ({}) is outside the range of a 64-bit float and cannot be stored",
                self.literal
            ),
        }?;
        f.write_str(
            "; numbers are kept as 64-bit integers or floats (send larger or more precise numbers as strings)",
        )
    }
}

impl std::error::Error for InexactNumber {}

/// Finds the first number (in document order) of the JSON `text` that cannot be stored
/// exactly. `Ok` when there is none, and also when `text` is not well-formed JSON or nests
/// deeper than the parser allows: the parser's error is the one to report then.
pub fn check(text: &[u8]) -> Result<(), InexactNumber> {
    Scanner {
        text,
        pos: 0,
        path: Vec::new(),
    }
    .run()
}

/// True when `literal`, one JSON number, is stored by serde_json with its decimal value
/// unchanged (the rule of this module). A string that is not a JSON number is not judged
/// (`true`): it is the parser's to refuse.
pub fn is_exact(literal: &str) -> bool {
    stored_if_inexact(literal.as_bytes()).is_none()
}

/// One level of the path to the current position.
enum Frame {
    /// Inside an array, at element `index`.
    Array { index: usize },
    /// Inside an object: the current member's key as a byte range of the raw string between
    /// its quotes (escapes not decoded), and whether the next string is a key.
    Object {
        key: Option<(usize, usize)>,
        want_key: bool,
    },
}

struct Scanner<'a> {
    text: &'a [u8],
    pos: usize,
    path: Vec<Frame>,
}

impl Scanner<'_> {
    fn run(mut self) -> Result<(), InexactNumber> {
        while let Some(&b) = self.text.get(self.pos) {
            match b {
                b' ' | b'\t' | b'\n' | b'\r' | b':' => self.pos += 1,
                b'{' | b'[' => {
                    if self.path.len() >= MAX_SCAN_DEPTH {
                        return Ok(());
                    }
                    self.path.push(if b == b'{' {
                        Frame::Object {
                            key: None,
                            want_key: true,
                        }
                    } else {
                        Frame::Array { index: 0 }
                    });
                    self.pos += 1;
                }
                b'}' | b']' => {
                    self.path.pop();
                    self.pos += 1;
                }
                b',' => {
                    match self.path.last_mut() {
                        Some(Frame::Array { index }) => *index += 1,
                        Some(Frame::Object { key, want_key }) => {
                            *key = None;
                            *want_key = true;
                        }
                        None => return Ok(()),
                    }
                    self.pos += 1;
                }
                b'"' => {
                    let start = self.pos + 1;
                    let Some(end) = self.string_end(start) else {
                        return Ok(());
                    };
                    if let Some(Frame::Object { key, want_key }) = self.path.last_mut() {
                        if *want_key {
                            *key = Some((start, end));
                            *want_key = false;
                        }
                    }
                    self.pos = end + 1;
                }
                b'-' | b'0'..=b'9' => {
                    let start = self.pos;
                    while self.text.get(self.pos).is_some_and(|c| {
                        matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                    }) {
                        self.pos += 1;
                    }
                    let token = self.text.get(start..self.pos).unwrap_or_default();
                    if let Some(stored) = stored_if_inexact(token) {
                        return Err(InexactNumber {
                            pointer: self.pointer(),
                            literal: shown(token),
                            stored,
                        });
                    }
                }
                b'a'..=b'z' => self.pos += 1, // true, false, null
                _ => return Ok(()),
            }
        }
        Ok(())
    }

    /// The index of the closing quote of the string whose content starts at `start`.
    fn string_end(&self, start: usize) -> Option<usize> {
        let mut i = start;
        loop {
            match self.text.get(i)? {
                b'"' => return Some(i),
                b'\\' => i += 2,
                _ => i += 1,
            }
        }
    }

    /// The JSON Pointer of the current position (built only for an error).
    fn pointer(&self) -> String {
        let mut out = String::new();
        for frame in &self.path {
            out.push('/');
            match frame {
                Frame::Array { index } => out.push_str(&index.to_string()),
                Frame::Object { key, .. } => {
                    let raw = key
                        .and_then(|(s, e)| self.text.get(s.saturating_sub(1)..e + 1))
                        .unwrap_or_default();
                    let name = serde_json::from_slice::<String>(raw).unwrap_or_else(|_| {
                        String::from_utf8_lossy(
                            raw.get(1..raw.len().saturating_sub(1)).unwrap_or_default(),
                        )
                        .into_owned()
                    });
                    out.push_str(&name.replace('~', "~0").replace('/', "~1"));
                }
            }
        }
        out
    }
}

fn shown(token: &[u8]) -> String {
    let text = String::from_utf8_lossy(token);
    if text.len() <= MAX_LITERAL_SHOWN {
        text.into_owned()
    } else {
        let cut: String = text.chars().take(MAX_LITERAL_SHOWN).collect();
        format!("{cut}... ({} bytes)", token.len())
    }
}

/// `None` when `token` is exact (or not a JSON number at all); otherwise what serde_json
/// stores for it, printed (`Some(None)` when it cannot store it).
fn stored_if_inexact(token: &[u8]) -> Option<Option<String>> {
    let sent = Decimal::parse(token)?;
    // Fast path: an integer of at most 18 digits fits i64 and u64 and is stored as written.
    if sent.integer_digits <= 18 && !sent.has_fraction_or_exponent {
        return None;
    }
    if sent.round_trips_through_f64() {
        return None;
    }
    let text = std::str::from_utf8(token).ok()?;
    let Ok(value) = serde_json::from_str::<serde_json::Number>(text) else {
        // A valid JSON number serde_json refuses: beyond f64's range.
        return Some(None);
    };
    let printed = value.to_string();
    match Decimal::parse(printed.as_bytes()) {
        Some(stored) if stored.same_value(&sent) => None,
        _ => Some(Some(printed)),
    }
}

/// A JSON number's decimal value: `(-1)^negative × digits × 10^exponent`, with `digits`
/// free of leading and trailing zeros (empty for zero).
struct Decimal<'a> {
    negative: bool,
    /// The significant digits, as two slices of the text (integer part, then fraction) from
    /// which leading and trailing zeros are skipped when compared.
    int: &'a [u8],
    frac: &'a [u8],
    exponent: i64,
    integer_digits: usize,
    has_fraction_or_exponent: bool,
}

impl<'a> Decimal<'a> {
    /// Parses a JSON number (RFC 8259 grammar); `None` for anything else.
    fn parse(token: &'a [u8]) -> Option<Decimal<'a>> {
        let (negative, rest) = match token.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, token),
        };
        let int_len = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        let (int, mut rest) = rest.split_at(int_len);
        if int.is_empty() || (int.len() > 1 && int.first() == Some(&b'0')) {
            return None;
        }
        let mut frac: &[u8] = &[];
        let mut has_fraction_or_exponent = false;
        if let Some((b'.', after)) = rest.split_first() {
            let n = after.iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 {
                return None;
            }
            (frac, rest) = after.split_at(n);
            has_fraction_or_exponent = true;
        }
        let mut exponent: i64 = 0;
        if let Some((b'e' | b'E', after)) = rest.split_first() {
            let (exp_negative, digits) = match after.split_first() {
                Some((b'-', d)) => (true, d),
                Some((b'+', d)) => (false, d),
                _ => (false, after),
            };
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            // Saturates far beyond any exponent an f64 prints (|e| <= 324), so a huge
            // exponent never compares equal to a stored value's.
            const CAP: i64 = 1 << 60;
            for d in digits {
                exponent = (exponent * 10 + i64::from(d - b'0')).min(CAP);
            }
            if exp_negative {
                exponent = -exponent;
            }
            rest = &[];
            has_fraction_or_exponent = true;
        }
        if !rest.is_empty() {
            return None;
        }
        Some(Decimal {
            negative,
            int,
            frac,
            exponent,
            integer_digits: int.len(),
            has_fraction_or_exponent,
        })
    }

    /// True when the number is known to survive parsing to the nearest `f64` and printing in
    /// shortest form: zero, or at most 15 significant digits (`f64` keeps 15 decimal digits:
    /// two such decimals never share a float, so the shortest string naming the float is the
    /// one sent) with a magnitude in `[1e-307, 1e308)` (normal floats). Saves the parse and
    /// print for the numbers most documents hold. Sound only because serde_json parses
    /// correctly rounded (`float_roundtrip`; pinned by a test below).
    fn round_trips_through_f64(&self) -> bool {
        let digits = || self.int.iter().chain(self.frac);
        let Some(first) = digits().position(|&c| c != b'0') else {
            return true; // zero
        };
        let last = digits()
            .enumerate()
            .filter(|(_, &c)| c != b'0')
            .last()
            .map_or(first, |(i, _)| i);
        let significant = last - first + 1;
        // The power of ten of the leading significant digit.
        let leading = self.int.len() as i64 - 1 - first as i64 + self.exponent;
        significant <= 15 && (-307..=307).contains(&leading)
    }

    /// The significant digits (without leading and trailing zeros) and the power of ten of
    /// their last digit.
    fn normalized(&self) -> (Vec<u8>, i64) {
        let all: Vec<u8> = self.int.iter().chain(self.frac).copied().collect();
        let lead = all.iter().take_while(|&&c| c == b'0').count();
        let trail = all.iter().rev().take_while(|&&c| c == b'0').count();
        if lead == all.len() {
            return (Vec::new(), 0);
        }
        let digits = all
            .get(lead..all.len() - trail)
            .unwrap_or_default()
            .to_vec();
        // Lengths are bounded by the text (< 2^60), so this stays in range.
        let exponent = self.exponent - self.frac.len() as i64 + trail as i64;
        (digits, exponent)
    }

    fn same_value(&self, other: &Decimal<'_>) -> bool {
        let (a, ea) = self.normalized();
        let (b, eb) = other.normalized();
        if a.is_empty() || b.is_empty() {
            // Zero equals zero whatever its sign (`-0.0` is stored as `-0.0`).
            return a.is_empty() && b.is_empty();
        }
        self.negative == other.negative && a == b && ea == eb
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn inexact(text: &str) -> InexactNumber {
        check(text.as_bytes()).expect_err(text)
    }

    #[test]
    fn an_integer_beyond_u64_with_30_digits_is_refused() {
        let e = inexact("123456789012345678901234567890");
        assert_eq!(e.pointer, "");
        assert_eq!(e.stored.as_deref(), Some("1.2345678901234568e+29"));
    }

    #[test]
    fn two_to_the_64_is_refused_though_an_f64_holds_it() {
        // 2^64 is an f64 exactly, but serde_json prints it as 1.8446744073709552e+19, whose
        // decimal value is not 18446744073709551616.
        let e = inexact(r#"{"a":[0,18446744073709551616]}"#);
        assert_eq!(e.pointer, "/a/1");
        assert_eq!(e.stored.as_deref(), Some("1.8446744073709552e+19"));
        assert!(check(b"18446744073709551615").is_ok());
        assert!(check(b"-9223372036854775808").is_ok());
        assert!(check(b"-9223372036854775809").is_err());
    }

    #[test]
    fn a_number_that_underflows_to_zero_is_refused() {
        let e = inexact(r#"{"x":{"y":1.0e-400}}"#);
        assert_eq!(e.pointer, "/x/y");
        assert_eq!(e.stored.as_deref(), Some("0.0"));
    }

    #[test]
    fn numbers_past_f64_range_are_refused_with_no_stored_form() {
        let e = inexact("[1e400]");
        assert_eq!((e.pointer.as_str(), e.stored), ("/0", None));
        assert!(inexact("-1.7976931348623159e308").stored.is_none());
        assert!(check(b"1.7976931348623157e308").is_ok());
    }

    #[test]
    fn digits_beyond_f64_precision_are_refused() {
        let e = inexact("0.10000000000000000001");
        assert_eq!(e.stored.as_deref(), Some("0.1"));
        assert!(check(b"3.141592653589793238462643383279").is_err());
    }

    #[test]
    fn the_decided_cases_are_exact() {
        for ok in [
            "0.1",
            "1e3",
            "1E+3",
            "1000.0",
            "1.50",
            "-0",
            "-0.0",
            "0e999999999999999999999",
            "1.5e-300",
            "5e-324",
            "2.2250738585072014e-308",
            "1e20",
            "100000000000000000000",
            "0.30000000000000004",
            "-1.25e-7",
        ] {
            assert!(is_exact(ok), "{ok} should be exact");
            assert!(check(ok.as_bytes()).is_ok(), "{ok}");
        }
    }

    #[test]
    fn serde_json_parses_floats_correctly_rounded() {
        // The fast path of `round_trips_through_f64` (and the rule's promise that every float
        // serde_json prints is accepted back) needs the workspace's `float_roundtrip` feature.
        for s in [
            "1.5e-300",
            "-1.8218816927580057e+294",
            "9.119958200968686e-110",
        ] {
            let n: serde_json::Number = serde_json::from_str(s).unwrap();
            assert_eq!(
                n.to_string(),
                s,
                "serde_json is built without float_roundtrip"
            );
        }
    }

    #[test]
    fn pointers_decode_escapes_and_escape_tilde_and_slash() {
        let e = inexact(r#"{"a/b":{"c~d":1,"e\"f":[1e-999]}}"#);
        assert_eq!(e.pointer, "/a~1b/e\"f/0");
        let e =
            inexact(r#"{"k":"a string with 1e-999 and \" and [","n":{"\u00e9":[[], {}, 1e999]}}"#);
        assert_eq!(e.pointer, "/n/é/2");
    }

    #[test]
    fn the_first_offender_in_document_order_is_named() {
        let e = inexact(r#"[1, 2, {"a": 1e-400, "b": 1e400}]"#);
        assert_eq!(e.pointer, "/2/a");
    }

    #[test]
    fn long_literals_are_cut_in_the_error() {
        let digits = "9".repeat(10_000);
        let e = inexact(&digits);
        assert!(e.literal.len() < 100, "{}", e.literal);
        assert!(e.literal.ends_with("(10000 bytes)"), "{}", e.literal);
        assert!(e.stored.is_none(), "10^10000 is beyond f64's range");
        assert!(e.to_string().contains("outside the range"), "{e}");
        let e = inexact(&format!("0.{}", "1".repeat(10_000)));
        assert!(e.to_string().contains("cannot be stored exactly"), "{e}");
    }

    #[test]
    fn malformed_or_too_deep_text_is_left_to_the_parser() {
        for text in [
            "",
            "{",
            "[1e999",
            "01",
            "1.",
            "-",
            "1e",
            "--1",
            "\"unterminated 1e999",
            "@1e999",
        ] {
            let _ = check(text.as_bytes()); // must not panic
        }
        assert!(
            check(b"01e999").is_ok(),
            "not a JSON number: the parser's to refuse"
        );
        let deep = format!("{}1e999{}", "[".repeat(200), "]".repeat(200));
        assert!(check(deep.as_bytes()).is_ok());
        let shallow = format!("{}1e999{}", "[".repeat(100), "]".repeat(100));
        assert!(check(shallow.as_bytes()).is_err());
    }
}

//! Every size the engine or a client controls, in one place, so that writers and readers
//! enforce the same numbers.

// ---- Value shape and JSON Patch bounds (documents; the server engineer's block) ----
//
// Enforced on the result of every write path (put, create, replace, merge patch, JSON Patch,
// transaction ops) before anything is logged, so a stored value is always one that every
// reader (serde_json's parser, the CLI, the HTTP envelope) can parse back.

/// Deepest nesting of arrays and objects in a stored value: `[]` and `{}` are depth 1, a
/// scalar is depth 0. Below serde_json's parser limit (128) with room for the envelopes that
/// carry a value (`{"ops":[{"value": ...}]}` of a transaction request), so any value that can
/// be stored can be sent in every request that writes one and parsed back on every read.
pub const MAX_DEPTH: usize = 100;

/// Most operations in one RFC 6902 JSON Patch.
pub const MAX_PATCH_OPS: usize = 1000;

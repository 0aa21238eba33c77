//! Refusing request bodies whose numbers would be stored changed (API.md, "Numbers"): the
//! HTTP face of [`amberdb::json_numbers`]. Every body that can carry a document value (PUT,
//! both kinds of PATCH, `POST /v1/txn`) passes here before it is parsed.

use crate::error::ApiError;

/// 400 `inexact_number` naming the JSON Pointer (in the request body) of the first number
/// that cannot be stored exactly; `details` has the pointer, the number as sent (cut when
/// long) and what it would have been stored as (`null`: beyond a 64-bit float's range).
pub(crate) fn refuse_inexact(body: &[u8]) -> Result<(), ApiError> {
    amberdb::json_numbers::check(body).map_err(|e| {
        ApiError::bad_request("inexact_number", format!("request body: {e}")).details(
            serde_json::json!({"pointer": e.pointer, "number": e.literal, "stored": e.stored}),
        )
    })
}

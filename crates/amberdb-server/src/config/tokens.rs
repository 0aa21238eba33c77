//! Bearer tokens from `[[auth.tokens]]`: name, SHA-256 of the token (never the token) and
//! scopes, each checked with the exact key of what is wrong.

use std::collections::HashSet;

use super::{ConfigError, Origin};
use crate::auth::{Scope, TokenEntry};

pub(super) fn read_tokens(
    v: &toml::Value,
    origin: &Origin,
    out: &mut Vec<TokenEntry>,
) -> Result<(), ConfigError> {
    let toml::Value::Array(items) = v else {
        return Err(ConfigError::new(
            "auth.tokens",
            origin,
            "expected an array of tables ([[auth.tokens]])",
        ));
    };
    let mut names = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let key = |field: &str| format!("auth.tokens[{i}].{field}");
        let toml::Value::Table(t) = item else {
            return Err(ConfigError::new(
                format!("auth.tokens[{i}]"),
                origin,
                "expected a table with name, sha256 and scopes",
            ));
        };
        if let Some(unknown) = t
            .keys()
            .find(|k| !["name", "sha256", "scopes"].contains(&k.as_str()))
        {
            return Err(ConfigError::new(
                key(unknown),
                origin,
                "unknown key (a token has name, sha256 and scopes)",
            ));
        }
        let name = match t.get("name") {
            Some(toml::Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(ConfigError::new(
                    key("name"),
                    origin,
                    "required: a non-empty string",
                ))
            }
        };
        if !names.insert(name.clone()) {
            return Err(ConfigError::new(
                key("name"),
                origin,
                format!("duplicate token name {name:?}"),
            ));
        }
        let sha256 = match t.get("sha256") {
            Some(toml::Value::String(s)) => crate::auth::parse_hash(s).ok_or_else(|| {
                ConfigError::new(
                    key("sha256"),
                    origin,
                    "must be 64 hex digits (the SHA-256 that `amberdb token create` prints)",
                )
            })?,
            _ => {
                return Err(ConfigError::new(
                    key("sha256"),
                    origin,
                    "required: the token's SHA-256 in hex (never the token itself)",
                ))
            }
        };
        let scopes = match t.get("scopes") {
            Some(toml::Value::Array(a)) if !a.is_empty() => a
                .iter()
                .map(|s| match s {
                    toml::Value::String(s) => s
                        .parse::<Scope>()
                        .map_err(|e| ConfigError::new(key("scopes"), origin, e)),
                    _ => Err(ConfigError::new(
                        key("scopes"),
                        origin,
                        "every scope is a string such as \"read:players*\"",
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(ConfigError::new(
                key("scopes"),
                origin,
                "required: a non-empty list such as [\"read:*\", \"write:players*\", \"admin\"]",
            )),
        };
        out.push(TokenEntry {
            name,
            sha256,
            scopes,
        });
    }
    Ok(())
}

//! Bearer tokens and scopes.
//!
//! The configuration holds only the SHA-256 of each token, so a leaked config file does not
//! leak a credential. A request's `Authorization: Bearer <token>` is hashed and looked up; the
//! matching entry's scopes decide what it may do:
//!
//! - `read:<glob>`: read documents of collections whose name matches the glob;
//! - `write:<glob>`: write (put, patch, delete, transaction writes) in matching collections;
//! - `admin`: everything, including `/v1/admin/*` and `/metrics`.
//!
//! Globs use `*` (any run of characters) and `?` (one character). With no tokens configured,
//! authentication is off and every request may do everything (the server then refuses to
//! listen beyond loopback unless told otherwise).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rand::RngCore;
use sha2::{Digest, Sha256};

/// One permission of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Read collections matching the glob.
    Read(String),
    /// Write collections matching the glob.
    Write(String),
    /// Everything.
    Admin,
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let check = |glob: &str| -> Result<String, String> {
            let ok = !glob.is_empty()
                && glob.len() <= 64
                && glob.bytes().all(|c| {
                    c.is_ascii_lowercase()
                        || c.is_ascii_digit()
                        || matches!(c, b'_' | b'.' | b'-' | b'*' | b'?')
                });
            if ok {
                Ok(glob.to_owned())
            } else {
                Err(format!("scope {s:?}: the collection pattern must be 1-64 characters of a-z, 0-9, _, ., -, * and ?"))
            }
        };
        match s.split_once(':') {
            None if s == "admin" => Ok(Scope::Admin),
            Some(("read", glob)) => Ok(Scope::Read(check(glob)?)),
            Some(("write", glob)) => Ok(Scope::Write(check(glob)?)),
            _ => Err(format!(
                "scope {s:?} is not one of read:<collection glob>, write:<collection glob>, admin"
            )),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Read(g) => write!(f, "read:{g}"),
            Scope::Write(g) => write!(f, "write:{g}"),
            Scope::Admin => f.write_str("admin"),
        }
    }
}

/// A configured token: its name (for logs), the SHA-256 of its secret, and its scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    /// Name shown in logs and errors, never secret.
    pub name: String,
    /// SHA-256 of the token string.
    pub sha256: [u8; 32],
    /// What it may do.
    pub scopes: Vec<Scope>,
}

/// Who is making a request, and what they may do.
#[derive(Debug, Clone)]
pub enum Principal {
    /// Authentication is off: everything is allowed.
    Anyone,
    /// A configured token.
    Token(Arc<TokenEntry>),
}

impl Principal {
    fn allows(&self, f: impl Fn(&Scope) -> bool) -> bool {
        match self {
            Principal::Anyone => true,
            Principal::Token(t) => t.scopes.iter().any(|s| *s == Scope::Admin || f(s)),
        }
    }

    /// May read documents of `collection`.
    pub fn can_read(&self, collection: &str) -> bool {
        self.allows(|s| matches!(s, Scope::Read(g) if glob_match(g, collection)))
    }

    /// May write documents of `collection`.
    pub fn can_write(&self, collection: &str) -> bool {
        self.allows(|s| matches!(s, Scope::Write(g) if glob_match(g, collection)))
    }

    /// May use the admin endpoints and `/metrics`.
    pub fn is_admin(&self) -> bool {
        self.allows(|_| false)
    }

    /// The token's name, for error messages.
    pub fn name(&self) -> &str {
        match self {
            Principal::Anyone => "anonymous",
            Principal::Token(t) => &t.name,
        }
    }
}

/// Matches `name` against a glob of `*` and `?`.
pub fn glob_match(glob: &str, name: &str) -> bool {
    // One matcher for scopes and change-feed filters.
    amberdb::feed::glob_match(glob, name)
}

/// SHA-256 of a token string.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Parses 64 hex digits.
pub fn parse_hash(hex_digits: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(hex_digits.trim()).ok()?;
    bytes.try_into().ok()
}

/// A new random token (`amb_` and 64 hex digits: 256 bits) and its SHA-256 in hex.
pub fn new_token() -> (String, String) {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = format!("amb_{}", hex::encode(secret));
    let hash = hex::encode(hash_token(&token));
    (token, hash)
}

/// The TOML entry to paste into `amberdb.toml` for a token.
pub fn config_entry(name: &str, sha256_hex: &str, scopes: &[Scope]) -> String {
    let scopes: Vec<String> = scopes
        .iter()
        .map(|s| format!("{:?}", s.to_string()))
        .collect();
    format!(
        "[[auth.tokens]]\nname = {name:?}\nsha256 = \"{sha256_hex}\"\nscopes = [{}]\n",
        scopes.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_shell_patterns() {
        assert!(glob_match("*", "players"));
        assert!(glob_match("players*", "players"));
        assert!(glob_match("players*", "players.eu"));
        assert!(!glob_match("players*", "party"));
        assert!(glob_match("p?rty", "party"));
        assert!(glob_match("*.eu", "players.eu"));
        assert!(!glob_match("*.eu", "players.us"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(!glob_match("players", "players2"));
    }

    #[test]
    fn scopes_parse_and_grant_what_they_say() {
        let t = TokenEntry {
            name: "t".into(),
            sha256: [0; 32],
            scopes: vec![
                "read:*".parse().expect("scope"),
                "write:players*".parse().expect("scope"),
            ],
        };
        let p = Principal::Token(Arc::new(t));
        assert!(p.can_read("anything"));
        assert!(p.can_write("players"));
        assert!(!p.can_write("chat"));
        assert!(!p.is_admin());
        let admin = Principal::Token(Arc::new(TokenEntry {
            name: "a".into(),
            sha256: [0; 32],
            scopes: vec![Scope::Admin],
        }));
        assert!(admin.can_write("chat") && admin.is_admin());
        assert!("delete:*".parse::<Scope>().is_err());
        assert!("read:".parse::<Scope>().is_err());
        assert!("read:Players".parse::<Scope>().is_err());
    }

    #[test]
    fn new_tokens_hash_to_what_config_stores() {
        let (token, hash) = new_token();
        assert!(token.starts_with("amb_") && token.len() == 68);
        assert_eq!(parse_hash(&hash), Some(hash_token(&token)));
        let entry = config_entry("game", &hash, &[Scope::Admin]);
        assert!(entry.contains("scopes = [\"admin\"]"), "{entry}");
    }
}

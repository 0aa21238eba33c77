//! Keys, key ids and the keyring.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Bytes of a key: AES-256.
pub const KEY_LEN: usize = 32;

/// The environment variable a key can come from (base64 of 32 bytes).
pub const ENCRYPTION_KEY_ENV: &str = "AMBERDB_ENCRYPTION_KEY";

/// The label the key id is derived with (HMAC-SHA256 message).
const KEY_ID_LABEL: &[u8] = b"amberdb key id v1";

/// A key's id: derived from the key by HMAC, never the key itself; never 0 (0 is
/// "unencrypted" in file headers). Printed as 8 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(u32);

impl KeyId {
    /// The id as stored in a `u32 key_id` header field.
    pub fn get(self) -> u32 {
        self.0
    }

    /// An id read from a header; `None` for 0 (unencrypted).
    pub fn from_u32(v: u32) -> Option<KeyId> {
        (v != 0).then_some(KeyId(v))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// A 256-bit encryption key. Its bytes are zeroized on drop and never printed.
#[derive(Clone)]
pub struct Key {
    bytes: Zeroizing<[u8; KEY_LEN]>,
    id: KeyId,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key {{ id: {} }}", self.id)
    }
}

fn bad(origin: &str, reason: impl Into<String>) -> Error {
    Error::InvalidEncryptionKey {
        origin: origin.to_string(),
        reason: reason.into(),
    }
}

const HOW_TO_MAKE: &str = "make one with `head -c 32 /dev/urandom > KEYFILE` (raw) or \
                           `openssl rand -base64 32 > KEYFILE` (base64)";

impl Key {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Key {
        let bytes = Zeroizing::new(bytes);
        let id = derive_id(&bytes);
        Key { bytes, id }
    }

    /// This key's id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    /// Parses the contents of a key file: exactly 32 raw bytes, or the base64 (standard
    /// alphabet, padded) of 32 bytes, with optional whitespace around it. `origin` names
    /// where the bytes came from, for the error.
    ///
    /// 32 bytes that are all printable ASCII are refused: a random key is that with chance
    /// about 10^-14, a passphrase or a truncated text file almost always is.
    pub fn parse(contents: &[u8], origin: &str) -> Result<Key> {
        if contents.len() == KEY_LEN {
            if contents.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
                return Err(bad(
                    origin,
                    format!(
                        "32 bytes of printable text, which looks like a passphrase, not a \
                         random key; {HOW_TO_MAKE}"
                    ),
                ));
            }
            let mut raw = Zeroizing::new([0u8; KEY_LEN]);
            raw.copy_from_slice(contents);
            return Ok(Key::from_bytes(*raw));
        }
        let text = std::str::from_utf8(contents).map_err(|_| {
            bad(
                origin,
                format!(
                    "{} bytes that are neither a raw 32-byte key nor base64 text; {HOW_TO_MAKE}",
                    contents.len()
                ),
            )
        })?;
        Key::parse_base64(text, origin)
    }

    /// Parses base64 (standard alphabet, padded) of 32 bytes, with optional whitespace around.
    pub fn parse_base64(text: &str, origin: &str) -> Result<Key> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(bad(origin, format!("empty; {HOW_TO_MAKE}")));
        }
        if trimmed.len() == 2 * KEY_LEN && trimmed.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(
                origin,
                format!(
                    "64 hex digits; keys are read as raw bytes or base64, not hex \
                     (convert with `xxd -r -p KEYFILE | base64`); {HOW_TO_MAKE}"
                ),
            ));
        }
        let decoded = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(trimmed)
                .map_err(|e| {
                    bad(
                        origin,
                        format!("not base64 ({e}) and not a raw 32-byte key; {HOW_TO_MAKE}"),
                    )
                })?,
        );
        if decoded.len() != KEY_LEN {
            return Err(bad(
                origin,
                format!(
                    "base64 of {} bytes, a key is {KEY_LEN} bytes; {HOW_TO_MAKE}",
                    decoded.len()
                ),
            ));
        }
        let mut raw = Zeroizing::new([0u8; KEY_LEN]);
        raw.copy_from_slice(&decoded);
        Ok(Key::from_bytes(*raw))
    }

    /// Reads a key file (see [`Key::parse`]).
    pub fn from_file(path: &Path) -> Result<Key> {
        let origin = format!("key file {}", path.display());
        let contents = Zeroizing::new(
            std::fs::read(path).map_err(|e| bad(&origin, format!("cannot be read: {e}")))?,
        );
        Key::parse(&contents, &origin)
    }

    /// The key in `AMBERDB_ENCRYPTION_KEY` (base64), `None` when the variable is not set.
    pub fn from_env() -> Result<Option<Key>> {
        Key::from_env_var(ENCRYPTION_KEY_ENV)
    }

    /// The key in environment variable `name` (base64), `None` when it is not set.
    pub fn from_env_var(name: &str) -> Result<Option<Key>> {
        let origin = format!("environment variable {name}");
        match std::env::var_os(name) {
            None => Ok(None),
            Some(v) => {
                let v = Zeroizing::new(
                    v.into_string()
                        .map_err(|_| bad(&origin, "not UTF-8 (it must hold base64)"))?,
                );
                Key::parse_base64(&v, &origin).map(Some)
            }
        }
    }
}

fn derive_id(key: &[u8; KEY_LEN]) -> KeyId {
    let mac_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let tag = ring::hmac::sign(&mac_key, KEY_ID_LABEL);
    tag.as_ref()
        .chunks_exact(4)
        .filter_map(|c| <[u8; 4]>::try_from(c).ok())
        .map(u32::from_le_bytes)
        .find(|v| *v != 0)
        // Eight zero words of HMAC output: chance 2^-256. Any fixed non-zero id would do.
        .map_or(KeyId(1), KeyId)
}

/// Keys in order: the first seals, every one opens what was sealed with it.
#[derive(Clone, Debug)]
pub struct Keyring {
    keys: Vec<Key>,
}

impl Keyring {
    /// A keyring; `keys[0]` seals. Refuses an empty list and two keys with one id (the same
    /// key twice, or a 2^-32 id collision: either way units could not be told apart).
    pub fn new(keys: Vec<Key>) -> Result<Keyring> {
        if keys.is_empty() {
            return Err(Error::InvalidArgument(
                "an encryption keyring needs at least one key".into(),
            ));
        }
        for (i, k) in keys.iter().enumerate() {
            if keys.iter().skip(i + 1).any(|o| o.id == k.id) {
                return Err(Error::InvalidArgument(format!(
                    "encryption key id {} appears twice in the keyring (the same key given twice?)",
                    k.id
                )));
            }
        }
        Ok(Keyring { keys })
    }

    /// A keyring of one key.
    pub fn single(key: Key) -> Keyring {
        Keyring { keys: vec![key] }
    }

    /// The key that seals.
    pub fn primary(&self) -> &Key {
        // `new` and `single` never build an empty keyring.
        self.keys.first().expect("a keyring holds at least one key")
    }

    /// Ids of every key, the sealing key first.
    pub fn key_ids(&self) -> Vec<KeyId> {
        self.keys.iter().map(|k| k.id).collect()
    }

    /// The key with this id.
    pub fn get(&self, id: KeyId) -> Option<&Key> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// The key with this id, or [`Error::KeyMissing`] naming it and the ids the keyring has.
    pub(crate) fn require(&self, id: KeyId, unit: &dyn fmt::Display) -> Result<&Key> {
        self.get(id).ok_or_else(|| Error::KeyMissing {
            key_id: id.get(),
            unit: unit.to_string(),
            available: self
                .keys
                .iter()
                .map(|k| k.id.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

/// The ids of the keys `keys` holds, comma-separated, for [`Error::KeyMissing`]'s `available`
/// (a sentence when there is no keyring).
pub(crate) fn describe_keys(keys: Option<&Keyring>) -> String {
    keys.map_or_else(
        || "no keys: encryption was not configured".into(),
        |k| {
            k.key_ids()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        },
    )
}

//! Unit ids, per-file keys, and the sealed-unit envelope.

use std::fmt;

use ring::aead::{self, Aad, LessSafeKey, Nonce, Tag, UnboundKey};
use ring::hkdf;

use super::key::{Key, KeyId, Keyring};
use crate::error::{Error, Result};

/// Bytes of the authentication tag.
pub const TAG_LEN: usize = 16;
/// The envelope format this version writes and reads.
pub const ENVELOPE_VERSION: u8 = 1;
/// Bytes before the ciphertext: version (1) and key id (4).
pub const ENVELOPE_HEADER_LEN: usize = 5;
/// Bytes a sealed unit has beyond its plaintext.
pub const ENVELOPE_OVERHEAD: usize = ENVELOPE_HEADER_LEN + TAG_LEN;

/// HKDF salt of the per-file keys.
const FILE_KEY_SALT: &[u8] = b"amberdb file key v1";

/// What kind of file a unit belongs to. Codes are stored in key derivation and associated
/// data: a code is never reused for another kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A commit log segment (`log/<first lsn>.log`); units are frame payloads by offset.
    LogSegment,
    /// A checkpoint (`checkpoints/<lsn>.ckpt`); units are blocks by index.
    Checkpoint,
    /// A backup snapshot file; units are chunks by index.
    BackupSnapshot,
    /// An archived segment in a backup repository (`wal/`); units are chunks by index.
    ArchivedSegment,
    /// A blob file (`blobs/<ab>/<sha256>`, in a data directory or a repository); units are
    /// 64 KiB pieces of the blob by index, and a trailer naming its content (`blob::sealed`).
    Blob,
    /// A stream file (`streams/<created lsn>-<name>/<base>.stream`); units are entries by
    /// byte offset.
    StreamFile,
}

impl FileKind {
    /// The stored code.
    pub fn code(self) -> u8 {
        match self {
            FileKind::LogSegment => 1,
            FileKind::Checkpoint => 2,
            FileKind::BackupSnapshot => 3,
            FileKind::ArchivedSegment => 4,
            FileKind::Blob => 5,
            FileKind::StreamFile => 6,
        }
    }

    fn name(self) -> &'static str {
        match self {
            FileKind::LogSegment => "log segment",
            FileKind::Checkpoint => "checkpoint",
            FileKind::BackupSnapshot => "backup snapshot",
            FileKind::ArchivedSegment => "archived segment",
            FileKind::Blob => "blob file",
            FileKind::StreamFile => "stream file",
        }
    }
}

/// The identity of a file whose units are sealed: it selects the file key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    /// The file's kind.
    pub kind: FileKind,
    /// The database id (opaque 16 bytes, from the file format).
    pub database_id: [u8; 16],
    /// The timeline id (opaque 16 bytes: the engine's u64 timeline, little-endian, padded
    /// with zeros): new for every history.
    pub timeline_id: [u8; 16],
    /// The segment's first LSN, or the checkpoint's LSN.
    pub file_lsn: u64,
    /// Random bytes from the file's header, drawn when the file is created: two files never
    /// share a file key, whatever LSNs and offsets repeat (a re-created segment, a checkpoint
    /// rewritten at the same LSN). See the module documentation.
    pub salt: [u8; 16],
}

/// Bytes of an encoded [`FileId`].
const FILE_ID_LEN: usize = 1 + 16 + 16 + 8 + 16;
/// Bytes of an encoded [`UnitId`].
const UNIT_ID_LEN: usize = FILE_ID_LEN + 8;
/// Bytes of the associated data: envelope header and unit id.
const AAD_LEN: usize = ENVELOPE_HEADER_LEN + UNIT_ID_LEN;

impl FileId {
    fn encode(&self) -> [u8; FILE_ID_LEN] {
        let mut out = [0u8; FILE_ID_LEN];
        let mut w = Writer(&mut out, 0);
        w.put(&[self.kind.code()]);
        w.put(&self.database_id);
        w.put(&self.timeline_id);
        w.put(&self.file_lsn.to_le_bytes());
        w.put(&self.salt);
        out
    }

    /// A fresh salt from the operating system's generator (`ring::rand::SystemRandom`). A
    /// failing generator is an error: a salt must never be predictable or repeated.
    pub fn new_salt() -> Result<[u8; 16]> {
        use ring::rand::SecureRandom;
        let mut salt = [0u8; 16];
        ring::rand::SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| Error::InvalidArgument("the OS random generator failed".into()))?;
        Ok(salt)
    }
}

/// One sealed unit's identity: its file and its index in the file (byte offset or block
/// number). Used as associated data and, through the file key and the nonce, to make every
/// (key, nonce) pair unique; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnitId {
    /// The file.
    pub file: FileId,
    /// Offset or block index inside the file.
    pub index: u64,
}

impl UnitId {
    /// A unit id from its parts, with a zero salt (tests and fuzzing; files use
    /// [`FileId`] with their header's salt).
    pub fn new(
        kind: FileKind,
        database_id: [u8; 16],
        timeline_id: [u8; 16],
        file_lsn: u64,
        index: u64,
    ) -> UnitId {
        UnitId {
            file: FileId {
                kind,
                database_id,
                timeline_id,
                file_lsn,
                salt: [0; 16],
            },
            index,
        }
    }

    fn encode(&self) -> [u8; UNIT_ID_LEN] {
        let mut out = [0u8; UNIT_ID_LEN];
        let mut w = Writer(&mut out, 0);
        w.put(&self.file.encode());
        w.put(&self.index.to_le_bytes());
        out
    }
}

impl fmt::Display for UnitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:020} unit {} (database {}, timeline {})",
            self.file.kind.name(),
            self.file.file_lsn,
            self.index,
            hex::encode(self.file.database_id),
            hex::encode(self.file.timeline_id.get(..8).unwrap_or_default())
        )
    }
}

/// Fills a fixed array front to back; the callers' lengths are constants that add up.
struct Writer<'a>(&'a mut [u8], usize);

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.1 + bytes.len();
        if let Some(dst) = self.0.get_mut(self.1..end) {
            dst.copy_from_slice(bytes);
        }
        self.1 = end;
    }
}

fn nonce(index: u64) -> Nonce {
    let mut n = [0u8; aead::NONCE_LEN];
    let mut w = Writer(&mut n, 0);
    w.put(&index.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

fn aad(key_id: KeyId, unit: &UnitId) -> [u8; AAD_LEN] {
    let mut out = [0u8; AAD_LEN];
    let mut w = Writer(&mut out, 0);
    w.put(&[ENVELOPE_VERSION]);
    w.put(&key_id.get().to_le_bytes());
    w.put(&unit.encode());
    out
}

/// A parsed sealed unit: `version u8 | key_id u32 LE | ciphertext | tag [16]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The key that sealed it.
    pub key_id: KeyId,
    /// The ciphertext, as long as the plaintext.
    pub ciphertext: &'a [u8],
    /// The authentication tag.
    pub tag: [u8; TAG_LEN],
}

impl<'a> Envelope<'a> {
    /// Splits a sealed unit into its parts, checking only its structure (length, version,
    /// non-zero key id): [`Error::Unauthentic`] with key id 0 when it is malformed.
    pub fn parse(sealed: &'a [u8], unit: &UnitId) -> Result<Envelope<'a>> {
        let malformed = |detail: String| Error::Unauthentic {
            key_id: 0,
            unit: unit.to_string(),
            detail,
        };
        if sealed.len() < ENVELOPE_OVERHEAD {
            return Err(malformed(format!(
                "sealed unit is {} bytes, shorter than the {ENVELOPE_OVERHEAD}-byte envelope",
                sealed.len()
            )));
        }
        let (header, rest) = sealed
            .split_at_checked(ENVELOPE_HEADER_LEN)
            .ok_or_else(|| malformed("truncated envelope header".into()))?;
        let (ciphertext, tag) = rest
            .split_at_checked(rest.len() - TAG_LEN)
            .ok_or_else(|| malformed("truncated tag".into()))?;
        let (version, id) = header
            .split_first()
            .ok_or_else(|| malformed("truncated envelope header".into()))?;
        if *version != ENVELOPE_VERSION {
            return Err(malformed(format!(
                "envelope version {version}, this build reads {ENVELOPE_VERSION}"
            )));
        }
        let id = <[u8; 4]>::try_from(id)
            .map(u32::from_le_bytes)
            .map_err(|_| malformed("truncated key id".into()))?;
        let key_id =
            KeyId::from_u32(id).ok_or_else(|| malformed("envelope names key id 0".into()))?;
        let tag = <[u8; TAG_LEN]>::try_from(tag).map_err(|_| malformed("truncated tag".into()))?;
        Ok(Envelope {
            key_id,
            ciphertext,
            tag,
        })
    }
}

/// Seals and opens the units of one file under one key, with the file key derived once.
pub struct FileCipher {
    file: FileId,
    key_id: KeyId,
    aead: LessSafeKey,
}

impl fmt::Debug for FileCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileCipher")
            .field("file", &self.file)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl FileCipher {
    fn new(key: &Key, file: &FileId) -> Result<FileCipher> {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, FILE_KEY_SALT);
        let prk = salt.extract(key.bytes());
        let info = file.encode();
        let info: [&[u8]; 1] = [&info];
        let okm = prk
            .expand(&info, &aead::AES_256_GCM)
            .map_err(|_| Error::InvalidArgument("file key derivation failed".into()))?;
        Ok(FileCipher {
            file: *file,
            key_id: key.id(),
            aead: LessSafeKey::new(UnboundKey::from(okm)),
        })
    }

    /// The key this cipher seals with.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    fn unit(&self, index: u64) -> UnitId {
        UnitId {
            file: self.file,
            index,
        }
    }

    /// Seals the unit at `index` of this file: the envelope, `ENVELOPE_OVERHEAD` bytes longer
    /// than `plaintext`. Each index must be sealed at most once per file (module docs).
    pub fn seal(&self, index: u64, plaintext: &[u8]) -> Result<Vec<u8>> {
        let unit = self.unit(index);
        let mut out = Vec::with_capacity(plaintext.len() + ENVELOPE_OVERHEAD);
        out.push(ENVELOPE_VERSION);
        out.extend_from_slice(&self.key_id.get().to_le_bytes());
        out.extend_from_slice(plaintext);
        let body = out
            .get_mut(ENVELOPE_HEADER_LEN..)
            .ok_or_else(|| Error::InvalidArgument("envelope header missing".into()))?;
        let tag = self
            .aead
            .seal_in_place_separate_tag(nonce(index), Aad::from(aad(self.key_id, &unit)), body)
            .map_err(|_| {
                Error::InvalidArgument(format!(
                    "{unit}: {} bytes is too large to seal as one unit",
                    plaintext.len()
                ))
            })?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Opens the unit at `index` of this file. [`Error::Unauthentic`] when it was sealed with
    /// another key than this cipher's, or does not authenticate.
    pub fn open(&self, index: u64, sealed: &[u8]) -> Result<Vec<u8>> {
        let unit = self.unit(index);
        let env = Envelope::parse(sealed, &unit)?;
        if env.key_id != self.key_id {
            return Err(Error::Unauthentic {
                key_id: env.key_id.get(),
                unit: unit.to_string(),
                detail: format!(
                    "sealed with key id {}, in a file opened with key id {}",
                    env.key_id, self.key_id
                ),
            });
        }
        self.open_envelope(&unit, &env)
    }

    fn open_envelope(&self, unit: &UnitId, env: &Envelope<'_>) -> Result<Vec<u8>> {
        let mut buf = env.ciphertext.to_vec();
        self.aead
            .open_in_place_separate_tag(
                nonce(unit.index),
                Aad::from(aad(env.key_id, unit)),
                Tag::from(env.tag),
                &mut buf,
                0..,
            )
            .map_err(|_| Error::Unauthentic {
                key_id: env.key_id.get(),
                unit: unit.to_string(),
                detail: "the tag does not match: the bytes are damaged, or were sealed for \
                         another unit (file, offset, kind, database or timeline)"
                    .into(),
            })?;
        Ok(buf)
    }
}

impl Keyring {
    /// A cipher for the units of `file` under the sealing key (for writers).
    pub fn file_cipher(&self, file: &FileId) -> Result<FileCipher> {
        FileCipher::new(self.primary(), file)
    }

    /// A cipher for the units of `file` under the key with `key_id` (for readers of a file
    /// whose header names its key id); [`Error::KeyMissing`] when the keyring lacks it.
    pub fn file_cipher_for(&self, file: &FileId, key_id: KeyId) -> Result<FileCipher> {
        let unit = UnitId {
            file: *file,
            index: 0,
        };
        FileCipher::new(self.require(key_id, &unit)?, file)
    }

    /// Seals one unit with the sealing key (deriving the file key: prefer a [`FileCipher`]
    /// for many units of one file).
    pub fn seal(&self, unit: &UnitId, plaintext: &[u8]) -> Result<Vec<u8>> {
        self.file_cipher(&unit.file)?.seal(unit.index, plaintext)
    }

    /// Opens one unit with the key its envelope names: [`Error::KeyMissing`] when the keyring
    /// lacks that key, [`Error::Unauthentic`] when the envelope is malformed or does not
    /// authenticate as `unit`.
    pub fn open(&self, unit: &UnitId, sealed: &[u8]) -> Result<Vec<u8>> {
        let env = Envelope::parse(sealed, unit)?;
        let key = self.require(env.key_id, unit)?;
        FileCipher::new(key, &unit.file)?.open_envelope(unit, &env)
    }
}

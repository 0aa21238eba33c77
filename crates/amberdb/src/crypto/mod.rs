//! Encryption at rest: keys, key ids, a keyring, and sealing of file units (issue 12).
//!
//! The formats call it: log segments seal each commit frame's payload (`log::sealed`), checkpoints
//! (and so backup snapshots) seal each block; archived segments are copies of sealed
//! segments. Each hands it a [`FileId`] (from the file's header) and the unit's index.
//! `docs/FORMAT.md`, "Encryption", has the bytes; `docs/ENCRYPTION.md` the design.
//!
//! # Algorithm
//!
//! AES-256-GCM through `ring` (already in the dependency tree through `rustls`), chosen by
//! measurement on the target machine (`cargo run --release -p amberdb-bench --bin
//! aead-bench`, numbers in `docs/BENCHMARKS.md`): on CPUs with AES-NI and carry-less
//! multiply it seals about 3 GB/s per core, 3–12× ahead of ChaCha20-Poly1305 and of
//! RustCrypto's `aes-gcm`. `aws-lc-rs` measured another 1.5–2× faster, but at `ring`'s speed
//! sealing is already ~0.3% of a durable commit, and `aws-lc-rs` adds a C library build. The
//! reasoning is in `docs/ENCRYPTION.md`.
//!
//! # Keys and key ids
//!
//! A [`Key`] is 32 bytes from a key file (raw 32 bytes, or base64 of 32 bytes with optional
//! surrounding whitespace) or from `AMBERDB_ENCRYPTION_KEY` (base64). Anything else is
//! refused with [`Error::InvalidEncryptionKey`]. The bytes are zeroized on drop
//! (`zeroize::Zeroizing`); `ring`'s own expanded key schedules are not (it offers no way).
//!
//! Its [`KeyId`] is the first non-zero little-endian `u32` of
//! `HMAC-SHA256(key, "amberdb key id v1")`: a one-way function of the key, so the id reveals
//! nothing about it, and it fits the existing `u32 key_id` header fields (0 stays
//! "unencrypted"). 32 bits is an identifier, not a check: two keys of one keyring with the same
//! id are refused, and a wrong key that happens to share the id of the right one (chance
//! 2^-32) gives [`Error::Unauthentic`] instead of [`Error::KeyMissing`].
//!
//! # Per-file keys and nonces, unique by construction
//!
//! A unit is named by a [`UnitId`]: the [`FileId`] of its file (file kind, database id,
//! timeline id, the file's first LSN or checkpoint LSN) and its index in the file (a byte
//! offset or a block number). Sealing never uses the master key directly:
//!
//! - the file key is `HKDF-SHA256(salt = "amberdb file key v1", ikm = master key,
//!   info = kind ‖ database id ‖ timeline id ‖ file LSN ‖ file salt)`, one AES-256 key per
//!   file; the file salt is 16 random bytes drawn when the file is created and stored in its
//!   header ([`FileId::new_salt`]);
//! - the 96-bit nonce is `index (u64 LE) ‖ 0u32`;
//! - the associated data is the envelope's version and key id followed by the whole
//!   [`UnitId`], so a unit moved to another file, another offset, another kind or another
//!   timeline fails authentication even before the different file key would make it fail.
//!
//! A (file key, nonce) pair is therefore used twice only if the same (kind, database,
//! timeline, file LSN, salt, index) is sealed twice with different bytes. The only random
//! input is the per-file salt; nonces are counters that cannot wrap. Why that never happens:
//!
//! - **Within one history** a file is written once at each index: log segments are
//!   append-only and a frame's offset is never rewritten; a checkpoint is written once per LSN.
//! - **Crashes**: a torn tail that open cuts may leave sealed bytes on the disk at offsets
//!   the next commits would take, a checkpoint may be rewritten at the same LSN, a segment
//!   whose creation was lost in a power cut may be re-created at the same first LSN. The
//!   engine settles this (the decision and its argument are in `docs/ENCRYPTION.md`,
//!   "Nonces"): every file gets a fresh random salt, which is part of its file key, so a
//!   re-created or rewritten file never shares a file key with an earlier one; and with
//!   encryption on, open never resumes appending to an existing segment (it seals it and
//!   starts a new one), so cut offsets are never sealed again under their file key.
//! - **Restores and lossy recovery** reuse LSNs on purpose: the new history's commits get the
//!   LSNs of the lost ones. Every such history gets a new random 128-bit timeline id (h/ident,
//!   issue 8 item 5), which is part of every file key, so the reused LSNs and offsets seal
//!   under different keys. Two timelines collide with chance 2^-128 per pair.
//! - **Another database** has another database id, hence other file keys, even with the same
//!   master key and the same LSNs: its segment copied in fails authentication.
//!
//! # Errors
//!
//! [`Keyring::open`] returns [`Error::KeyMissing`] (naming the key id the unit needs) when no
//! key in the keyring has the envelope's key id, and [`Error::Unauthentic`] when the key is
//! there but the envelope does not authenticate (damaged bytes, a unit moved from elsewhere, a
//! malformed envelope). Callers decide what each means for their file (damage, torn tail,
//! refusal to open); this layer never maps them.

pub(crate) mod dir;
mod key;
pub(crate) mod rotate;
mod seal;

#[cfg(test)]
mod tests;

pub use dir::{check_dir_keys, key_ids_in_dir};
pub(crate) use key::describe_keys;
pub use key::{Key, KeyId, Keyring, ENCRYPTION_KEY_ENV, KEY_LEN};
pub use rotate::{decrypt_dir, encrypt_dir, RotationReport, RotationStatus};
pub use seal::{
    Envelope, FileCipher, FileId, FileKind, UnitId, ENVELOPE_HEADER_LEN, ENVELOPE_OVERHEAD,
    ENVELOPE_VERSION, TAG_LEN,
};

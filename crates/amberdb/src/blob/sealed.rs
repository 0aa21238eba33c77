//! The sealed blob file (issue 12): a blob's bytes, encrypted in fixed units, as it lies in a
//! data directory's `blobs/` and, byte for byte, in a backup repository's.
//!
//! ```text
//! header   magic "AMBRBLOB" | format u8 = 1 | 3 zero bytes | key_id u32 LE
//!          | unit u32 LE = 65536 | salt [16] | crc32c u32 LE of the 36 bytes before   (40 bytes)
//! units    unit i (i = 0, 1, …): the envelope of plaintext bytes [i·65536, (i+1)·65536) of
//!          the blob (the last one shorter, none for an empty blob)        (+21 bytes each)
//! trailer  the envelope, at index 2^64-1, of sha256 [32] ‖ size u64 LE of the plaintext
//!                                                                                 (61 bytes)
//! ```
//!
//! Every envelope is sealed by the file's [`FileCipher`]: kind [`FileKind::Blob`], zero
//! database and timeline ids, file LSN 0 and the header's random salt, so the file key is
//! the file's own. Blob files are content-addressed and shared by every history and every
//! backup of a database (a restore copies them as they are), so no database or timeline may
//! enter the key; the salt does what those do for segments: units cannot move between two
//! blob files (other file key), nor within one (the index is the nonce and in the associated
//! data). The trailer binds the file to its content: a reader checks that it names the
//! SHA-256 the file is named by (and the metadata document holds) and the size the file's
//! length implies, so a blob file renamed to another blob's name, truncated by whole units or
//! grown fails authentication instead of serving other bytes. The writer cannot seal the
//! content hash into the header (it is known only at the end of the upload, and the upload is
//! never on disk in plaintext); a reader opens the trailer first.
//!
//! Nonces are unique by construction: every file draws a fresh salt, and a file is written
//! once, front to back, never appended to or patched (a rotation writes a new file, with a new
//! salt, and renames it over the old).
//!
//! A plaintext blob file (encryption off, or written before it was turned on) is the blob's
//! bytes and nothing else. With the metadata's size the two forms are told apart by length
//! alone (a sealed file is always longer than its content); without it (verify, rotation) a
//! file is sealed when its header decodes and its length is one a sealed file can have, and
//! plaintext otherwise (a plaintext blob crafted to look sealed is recognised by its hash).

use std::io::{Read, Seek, SeekFrom, Write};

use sha2::{Digest, Sha256};

use crate::crypto::{
    Envelope, FileCipher, FileId, FileKind, KeyId, Keyring, UnitId, ENVELOPE_OVERHEAD,
};
use crate::error::{Error, Result};

/// First bytes of a sealed blob file.
pub const MAGIC: [u8; 8] = *b"AMBRBLOB";
/// The sealed blob format this version writes and reads.
pub const FORMAT: u8 = 1;
/// Bytes of the header.
pub const HEADER_LEN: usize = 40;
/// Plaintext bytes per unit.
pub const UNIT: usize = 64 << 10;
/// Index of the trailer's envelope (never a unit's: a blob would need 2^80 bytes).
const TRAILER_INDEX: u64 = u64::MAX;
/// Plaintext bytes of the trailer: SHA-256 and size.
const TRAILER_PLAIN: usize = 32 + 8;
/// Bytes of the sealed trailer.
const TRAILER_LEN: u64 = (TRAILER_PLAIN + ENVELOPE_OVERHEAD) as u64;
/// Bytes of a whole sealed unit.
const SEALED_UNIT: u64 = (UNIT + ENVELOPE_OVERHEAD) as u64;

/// A sealed blob file's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobHeader {
    /// The key the units and trailer are sealed with.
    pub key_id: KeyId,
    /// The file's random salt (part of its file key).
    pub salt: [u8; 16],
}

impl BlobHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        let fields: [&[u8]; 6] = [
            &MAGIC,
            &[FORMAT, 0, 0, 0],
            &self.key_id.get().to_le_bytes(),
            &(UNIT as u32).to_le_bytes(),
            &self.salt,
            &[],
        ];
        let mut at = 0;
        for f in fields {
            if let Some(dst) = b.get_mut(at..at + f.len()) {
                dst.copy_from_slice(f);
            }
            at += f.len();
        }
        let crc = crc32c::crc32c(b.get(..at).unwrap_or_default());
        if let Some(dst) = b.get_mut(at..) {
            dst.copy_from_slice(&crc.to_le_bytes());
        }
        b
    }

    /// Decodes a header; the reason when `b` is not one this build reads.
    pub fn decode(b: &[u8]) -> std::result::Result<BlobHeader, String> {
        let b = b
            .get(..HEADER_LEN)
            .ok_or_else(|| format!("shorter than the {HEADER_LEN}-byte sealed blob header"))?;
        if b.get(..8) != Some(&MAGIC[..]) {
            return Err("no sealed blob magic".into());
        }
        let word = |at: usize| {
            b.get(at..at + 4)
                .and_then(|s| <[u8; 4]>::try_from(s).ok())
                .map_or(0, u32::from_le_bytes)
        };
        if crc32c::crc32c(b.get(..36).unwrap_or_default()) != word(36) {
            return Err("header CRC mismatch".into());
        }
        if b.get(8..12) != Some(&[FORMAT, 0, 0, 0][..]) {
            return Err(format!(
                "sealed blob format {}, this build reads {FORMAT}",
                b.get(8).copied().unwrap_or(0)
            ));
        }
        if word(16) != UNIT as u32 {
            return Err(format!("unit size {}, this build reads {UNIT}", word(16)));
        }
        let key_id = KeyId::from_u32(word(12)).ok_or("header names key id 0")?;
        let mut salt = [0u8; 16];
        salt.copy_from_slice(b.get(20..36).unwrap_or(&[0; 16]));
        Ok(BlobHeader { key_id, salt })
    }

    fn file_id(&self) -> FileId {
        file_id(self.salt)
    }
}

fn file_id(salt: [u8; 16]) -> FileId {
    FileId {
        kind: FileKind::Blob,
        database_id: [0; 16],
        timeline_id: [0; 16],
        file_lsn: 0,
        salt,
    }
}

/// Length of the sealed file of a blob of `size` bytes.
pub fn sealed_len(size: u64) -> u64 {
    HEADER_LEN as u64 + size + size.div_ceil(UNIT as u64) * ENVELOPE_OVERHEAD as u64 + TRAILER_LEN
}

/// The blob size a sealed file of `len` bytes holds; `None` when no size gives that length.
pub fn size_from_len(len: u64) -> Option<u64> {
    let body = len.checked_sub(HEADER_LEN as u64 + TRAILER_LEN)?;
    let (full, rem) = (body / SEALED_UNIT, body % SEALED_UNIT);
    let last = match rem {
        0 => 0,
        r => r.checked_sub(ENVELOPE_OVERHEAD as u64).filter(|n| *n > 0)?,
    };
    Some(full * UNIT as u64 + last)
}

/// Where unit `index` starts in the file, and its sealed length, for a blob of `size` bytes.
fn unit_span(index: u64, size: u64) -> (u64, usize) {
    let start = index * UNIT as u64;
    let plain = size.saturating_sub(start).min(UNIT as u64) as usize;
    (
        HEADER_LEN as u64 + index * SEALED_UNIT,
        plain + ENVELOPE_OVERHEAD,
    )
}

/// Says which file a crypto error is about (the unit ids of blob files carry no name).
fn in_file(e: Error, file: &str, index: u64) -> Error {
    let unit = if index == TRAILER_INDEX {
        format!("{file} trailer")
    } else {
        format!("{file} unit {index}")
    };
    match e {
        Error::Unauthentic { key_id, detail, .. } => Error::Unauthentic {
            key_id,
            unit,
            detail,
        },
        Error::KeyMissing {
            key_id, available, ..
        } => Error::KeyMissing {
            key_id,
            unit: file.to_owned(),
            available,
        },
        e => e,
    }
}

fn unauthentic(key_id: KeyId, file: &str, detail: String) -> Error {
    Error::Unauthentic {
        key_id: key_id.get(),
        unit: file.to_owned(),
        detail,
    }
}

/// Writes a blob sealed, streaming: one unit of plaintext in memory, whatever the blob's size.
pub struct SealedWriter<W: Write> {
    out: W,
    cipher: FileCipher,
    buf: Vec<u8>,
    index: u64,
    size: u64,
    hash: Sha256,
}

impl<W: Write> std::fmt::Debug for SealedWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedWriter({} bytes)", self.size)
    }
}

impl<W: Write> SealedWriter<W> {
    /// Starts a sealed blob file in `out` (writes its header), sealed with `keys`' first key.
    pub fn new(mut out: W, keys: &Keyring) -> Result<SealedWriter<W>> {
        let header = BlobHeader {
            key_id: keys.primary().id(),
            salt: FileId::new_salt()?,
        };
        let cipher = keys.file_cipher(&header.file_id())?;
        out.write_all(&header.encode())
            .map_err(|e| Error::io("writing a sealed blob header", e))?;
        Ok(SealedWriter {
            out,
            cipher,
            buf: Vec::with_capacity(UNIT),
            index: 0,
            size: 0,
            hash: Sha256::new(),
        })
    }

    /// Appends plaintext.
    pub fn write(&mut self, mut data: &[u8]) -> Result<()> {
        self.hash.update(data);
        self.size += data.len() as u64;
        while !data.is_empty() {
            let take = (UNIT - self.buf.len()).min(data.len());
            let (now, rest) = data.split_at(take);
            self.buf.extend_from_slice(now);
            data = rest;
            if self.buf.len() == UNIT {
                self.flush_unit()?;
            }
        }
        Ok(())
    }

    fn flush_unit(&mut self) -> Result<()> {
        let sealed = self.cipher.seal(self.index, &self.buf)?;
        self.out
            .write_all(&sealed)
            .map_err(|e| Error::io("writing a sealed blob unit", e))?;
        self.buf.clear();
        self.index += 1;
        Ok(())
    }

    /// Seals the last unit and the trailer (naming the SHA-256 of everything written) and
    /// returns the output, the plaintext's SHA-256 and size. The caller syncs.
    pub fn finish(mut self) -> Result<(W, [u8; 32], u64)> {
        if !self.buf.is_empty() {
            self.flush_unit()?;
        }
        let sha: [u8; 32] = self.hash.clone().finalize().into();
        let mut trailer = [0u8; TRAILER_PLAIN];
        let (h, n) = trailer.split_at_mut(32);
        h.copy_from_slice(&sha);
        n.copy_from_slice(&self.size.to_le_bytes());
        let sealed = self.cipher.seal(TRAILER_INDEX, &trailer)?;
        self.out
            .write_all(&sealed)
            .map_err(|e| Error::io("writing a sealed blob trailer", e))?;
        Ok((self.out, sha, self.size))
    }
}

/// Opens the trailer of a sealed file: its cipher, and the blob's SHA-256 and size, checked
/// against the file's length.
fn open_trailer(
    header: &BlobHeader,
    sealed_trailer: &[u8],
    len: u64,
    keys: &Keyring,
    file: &str,
) -> Result<(FileCipher, [u8; 32], u64)> {
    let cipher = keys
        .file_cipher_for(&header.file_id(), header.key_id)
        .map_err(|e| in_file(e, file, 0))?;
    let plain = cipher
        .open(TRAILER_INDEX, sealed_trailer)
        .map_err(|e| in_file(e, file, TRAILER_INDEX))?;
    let sha = plain
        .get(..32)
        .and_then(|s| <[u8; 32]>::try_from(s).ok())
        .ok_or_else(|| unauthentic(header.key_id, file, "short trailer".into()))?;
    let size = plain
        .get(32..40)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| unauthentic(header.key_id, file, "short trailer".into()))?;
    if sealed_len(size) != len {
        return Err(unauthentic(
            header.key_id,
            file,
            format!(
                "the trailer says {size} bytes, which seal to {} bytes, but the file has {len}: \
                 units were cut or added",
                sealed_len(size)
            ),
        ));
    }
    Ok((cipher, sha, size))
}

/// Random access to a sealed blob's plaintext: decrypts (and authenticates) one unit at a
/// time, the unit holding the read position.
pub struct SealedReader<R: Read + Seek> {
    inner: R,
    name: String,
    cipher: FileCipher,
    size: u64,
    pos: u64,
    unit: Option<(u64, Vec<u8>)>,
}

impl<R: Read + Seek> std::fmt::Debug for SealedReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedReader({}, {} bytes)", self.name, self.size)
    }
}

impl<R: Read + Seek> SealedReader<R> {
    /// Opens the sealed file `inner` (of `len` bytes, called `name` in errors) as the blob
    /// with content hash `sha256`: [`Error::KeyMissing`] when `keys` lacks its key (or is
    /// `None`), [`Error::Unauthentic`] when its trailer does not authenticate or names other
    /// content.
    pub fn open(
        mut inner: R,
        len: u64,
        keys: Option<&Keyring>,
        sha256: &[u8; 32],
        name: &str,
    ) -> Result<SealedReader<R>> {
        let io_err = |e| Error::io(format!("reading {name}"), e);
        let mut head = [0u8; HEADER_LEN];
        inner.seek(SeekFrom::Start(0)).map_err(io_err)?;
        inner.read_exact(&mut head).map_err(io_err)?;
        let header = BlobHeader::decode(&head).map_err(|why| Error::Unauthentic {
            key_id: 0,
            unit: name.to_owned(),
            detail: format!("not a sealed blob file: {why}"),
        })?;
        let mut trailer = vec![0u8; TRAILER_LEN as usize];
        let at = len
            .checked_sub(TRAILER_LEN)
            .filter(|a| *a >= HEADER_LEN as u64)
            .ok_or_else(|| unauthentic(header.key_id, name, "too short for a trailer".into()))?;
        inner.seek(SeekFrom::Start(at)).map_err(io_err)?;
        inner.read_exact(&mut trailer).map_err(io_err)?;
        let keys = keys.ok_or_else(|| Error::KeyMissing {
            key_id: header.key_id.get(),
            unit: name.to_owned(),
            available: "no keys: encryption was not configured".into(),
        })?;
        let (cipher, sha, size) = open_trailer(&header, &trailer, len, keys, name)?;
        if &sha != sha256 {
            return Err(unauthentic(
                header.key_id,
                name,
                format!(
                    "sealed for blob {}, not {}: the file was moved or copied from another blob",
                    hex::encode(sha),
                    hex::encode(sha256)
                ),
            ));
        }
        Ok(SealedReader {
            inner,
            name: name.to_owned(),
            cipher,
            size,
            pos: 0,
            unit: None,
        })
    }

    /// The blob's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn load(&mut self, index: u64) -> std::io::Result<()> {
        if self.unit.as_ref().is_some_and(|(i, _)| *i == index) {
            return Ok(());
        }
        let (at, len) = unit_span(index, self.size);
        let mut sealed = vec![0u8; len];
        self.inner.seek(SeekFrom::Start(at))?;
        self.inner.read_exact(&mut sealed)?;
        let plain = self.cipher.open(index, &sealed).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                in_file(e, &self.name, index),
            )
        })?;
        self.unit = Some((index, plain));
        Ok(())
    }
}

impl<R: Read + Seek> Read for SealedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let index = self.pos / UNIT as u64;
        self.load(index)?;
        let off = (self.pos - index * UNIT as u64) as usize;
        let unit = self.unit.as_ref().map_or(&[][..], |(_, u)| u.as_slice());
        let avail = unit.get(off..).unwrap_or_default();
        let n = avail.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), avail.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for SealedReader<R> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let to = match pos {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let to = to.ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start of the blob",
            )
        })?;
        self.pos = to;
        Ok(to)
    }
}

/// What [`read_sealed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedContent {
    /// The key it is sealed with.
    pub key_id: KeyId,
    /// The blob's SHA-256 and size, when its contents were opened (a key was given) and
    /// hash to what the trailer names; `None` when only its structure was checked.
    pub content: Option<([u8; 32], u64)>,
}

/// Reads a whole sealed blob file front to back from `r` (`len` bytes, `name` in errors),
/// handing each unit's plaintext to `sink` in order. With `keys`, every unit and the trailer
/// are authenticated and the plaintext must hash to what the trailer names
/// ([`Error::KeyMissing`] when `keys` lacks the file's key); without, only the structure is
/// checked (header, length, each envelope's version and key id) and `sink` is not called.
/// The sink sees a unit's plaintext before later units are checked: write it somewhere a
/// failure can discard.
pub fn read_sealed(
    r: &mut dyn Read,
    len: u64,
    keys: Option<&Keyring>,
    name: &str,
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<SealedContent> {
    let io_err = |e| Error::io(format!("reading {name}"), e);
    let mut head = [0u8; HEADER_LEN];
    r.read_exact(&mut head).map_err(io_err)?;
    let header = BlobHeader::decode(&head).map_err(|why| Error::Unauthentic {
        key_id: 0,
        unit: name.to_owned(),
        detail: format!("not a sealed blob file: {why}"),
    })?;
    let size = size_from_len(len).ok_or_else(|| {
        unauthentic(
            header.key_id,
            name,
            format!("{len} bytes is no length a sealed blob file can have: it was cut or grown"),
        )
    })?;
    let cipher = match keys {
        Some(k) => Some(
            k.file_cipher_for(&header.file_id(), header.key_id)
                .map_err(|e| in_file(e, name, 0))?,
        ),
        None => None,
    };
    let mut hash = Sha256::new();
    let mut sealed = vec![0u8; UNIT + ENVELOPE_OVERHEAD];
    for index in 0..size.div_ceil(UNIT as u64) {
        let (_, n) = unit_span(index, size);
        let unit = sealed.get_mut(..n).unwrap_or_default();
        r.read_exact(unit).map_err(io_err)?;
        match &cipher {
            Some(c) => {
                let plain = c.open(index, unit).map_err(|e| in_file(e, name, index))?;
                hash.update(&plain);
                sink(&plain)?;
            }
            None => {
                let id = UnitId {
                    file: header.file_id(),
                    index,
                };
                let env = Envelope::parse(unit, &id).map_err(|e| in_file(e, name, index))?;
                if env.key_id != header.key_id {
                    return Err(unauthentic(
                        env.key_id,
                        &format!("{name} unit {index}"),
                        format!(
                            "sealed with key id {}, in a file whose header names {}",
                            env.key_id, header.key_id
                        ),
                    ));
                }
            }
        }
    }
    let mut trailer = vec![0u8; TRAILER_LEN as usize];
    r.read_exact(&mut trailer).map_err(io_err)?;
    let Some(keys) = keys else {
        return Ok(SealedContent {
            key_id: header.key_id,
            content: None,
        });
    };
    let (_, sha, trailer_size) = open_trailer(&header, &trailer, len, keys, name)?;
    let got: [u8; 32] = hash.finalize().into();
    if got != sha || trailer_size != size {
        return Err(unauthentic(
            header.key_id,
            name,
            "the units decrypt to other bytes than the trailer names".into(),
        ));
    }
    Ok(SealedContent {
        key_id: header.key_id,
        content: Some((sha, size)),
    })
}

/// The header of the file at the start of `head` when it may be a sealed blob file of `len`
/// bytes (header decodes, length is one a sealed file can have).
pub fn sniff(head: &[u8], len: u64) -> Option<BlobHeader> {
    size_from_len(len)?;
    BlobHeader::decode(head).ok()
}

/// What a blob file on disk is, as [`check_file`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileForm {
    /// Plaintext: the blob's bytes, `size` of them, hashing to the file's name.
    Plain {
        /// Its length.
        size: u64,
    },
    /// Sealed; contents checked when a key for it was given.
    Sealed(SealedContent),
}

/// Checks the blob file at `path`, named by content hash `sha256`: a plaintext file must hash
/// to its name; a sealed one must have a sound structure and, when `keys` holds its key,
/// authenticate and name `sha256` in its trailer. The reason when it does not.
pub(crate) fn check_file(
    path: &std::path::Path,
    sha256: &[u8; 32],
    keys: Option<&Keyring>,
    faults: &crate::io::Faults,
) -> Result<FileForm> {
    let name = path.display().to_string();
    let open =
        || crate::io::open_read(path, faults).map_err(|e| Error::io(format!("opening {name}"), e));
    let mut f = open()?;
    let len = f
        .len()
        .map_err(|e| Error::io(format!("reading {name}"), e))?;
    let mut head = Vec::with_capacity(HEADER_LEN);
    (&mut f)
        .take(HEADER_LEN as u64)
        .read_to_end(&mut head)
        .map_err(|e| Error::io(format!("reading {name}"), e))?;
    let sealed = match sniff(&head, len) {
        None => None,
        Some(header) => {
            let usable = keys.filter(|k| k.get(header.key_id).is_some());
            let mut f = open()?;
            let got = read_sealed(&mut f, len, usable, &name, &mut |_| Ok(()));
            match got {
                Ok(c) if c.content.is_some_and(|(s, _)| &s != sha256) => Some(Err(unauthentic(
                    c.key_id,
                    &name,
                    "sealed for another blob than its name says".into(),
                ))),
                other => Some(other),
            }
        }
    };
    match sealed {
        Some(Ok(c)) => return Ok(FileForm::Sealed(c)),
        Some(Err(e @ Error::Io { .. })) => return Err(e),
        // A plaintext blob whose bytes happen to look sealed is told by its hash.
        Some(Err(e)) => {
            return match crate::blob::hash_file(path, faults) {
                Ok((got, size)) if &got == sha256 => Ok(FileForm::Plain { size }),
                _ => Err(e),
            }
        }
        None => {}
    }
    let (got, size) = crate::blob::hash_file(path, faults)
        .map_err(|e| Error::io(format!("reading {name}"), e))?;
    if &got != sha256 {
        return Err(Error::InvalidValue(format!(
            "{name} hashes to {}, not to its name",
            hex::encode(got)
        )));
    }
    Ok(FileForm::Plain { size })
}

/// The key id of every sealed blob file under `root` (a `blobs/` directory), each with one
/// file sealed with it. Reads each file's header only.
pub(crate) fn key_ids_of_files(root: &std::path::Path) -> Result<Vec<(KeyId, std::path::PathBuf)>> {
    let faults = crate::io::Faults::none();
    let mut out: Vec<(KeyId, std::path::PathBuf)> = vec![];
    for (_, path) in crate::blob::list_blob_files(root, &faults)? {
        if let Some(h) = header_of(&path, &faults) {
            if !out.iter().any(|(k, _)| *k == h.key_id) {
                out.push((h.key_id, path));
            }
        }
    }
    Ok(out)
}

/// The header of the blob file at `path` when it is sealed; `None` when it is plaintext (or
/// unreadable: verify reports that).
pub(crate) fn header_of(path: &std::path::Path, faults: &crate::io::Faults) -> Option<BlobHeader> {
    let f = crate::io::open_read(path, faults).ok()?;
    let len = f.len().ok()?;
    let mut head = Vec::with_capacity(HEADER_LEN);
    f.take(HEADER_LEN as u64).read_to_end(&mut head).ok()?;
    sniff(&head, len)
}

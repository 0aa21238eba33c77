//! The log archive (`REPO/wal/`) and the slots that make a data directory keep its log until
//! every attached repository has it.
//!
//! A slot (one per repository, in `DATA/archive.json`) records how far that repository's
//! archive reaches. The data directory never removes a sealed segment past the lowest slot,
//! so point-in-time recovery between any two backups works even when every command is a
//! separate process. Archiving is idempotent: a segment already archived with the same bytes
//! is skipped, one archived with different bytes under the same LSNs is an error.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{sha256_hex, BackupRepo, Progress};
use crate::error::{Damage, Error, IoContext, Result};
use crate::io::{write_atomic, Faults};
use crate::log::segment::Seal;
use crate::log::{read_file, SealedSegment};

/// File in the data directory that lists attached repositories.
pub const SLOTS_FILE: &str = "archive.json";

/// One repository a data directory has been backed up to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    /// The repository's id.
    pub repository_id: String,
    /// Where it is.
    pub path: PathBuf,
    /// Every commit up to this LSN is in the repository's archive.
    pub archived_through_lsn: u64,
}

/// The slots of a data directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slots {
    /// Attached repositories.
    pub repos: Vec<Slot>,
}

impl Slots {
    /// Reads `DATA/archive.json` (no file = no slots).
    pub fn load(data: &Path) -> Result<Slots> {
        let path = data.join(SLOTS_FILE);
        match read_file(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::Damaged(Damage {
                    file: path.clone(),
                    offset: 0,
                    detail: format!("slot file does not parse: {e}"),
                    hint: "it lists the backup repositories this directory archives to; fix or remove it and run `amberdb backup create` again".into(),
                })
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Slots::default()),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    pub(crate) fn save(&self, data: &Path, faults: &Faults) -> Result<()> {
        let path = data.join(SLOTS_FILE);
        let bytes =
            serde_json::to_vec_pretty(self).map_err(|e| Error::InvalidValue(e.to_string()))?;
        write_atomic(&path, &bytes, faults).context(|| format!("writing {}", path.display()))
    }

    /// The lowest archived LSN over all slots; segments past it must be kept.
    pub fn min_archived(&self) -> Option<u64> {
        self.repos.iter().map(|s| s.archived_through_lsn).min()
    }

    /// Adds a slot for `repo` if it has none.
    pub(crate) fn attach(&mut self, repo: &BackupRepo) -> bool {
        if self.repos.iter().any(|s| s.repository_id == repo.id()) {
            return false;
        }
        let path = repo
            .path()
            .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned()))
            .unwrap_or_default();
        self.repos.push(Slot {
            repository_id: repo.id().to_owned(),
            path,
            archived_through_lsn: 0,
        });
        true
    }
}

/// An archived segment's description (`wal/<first lsn>.json`, written after its data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedSegment {
    /// First LSN.
    pub first_lsn: u64,
    /// Last LSN.
    pub last_lsn: u64,
    /// Commit time of the last commit, microseconds.
    pub last_commit_ts_us: u64,
    /// Segment size.
    pub plain_size: u64,
    /// SHA-256 of the segment (equal to its seal's).
    pub plain_sha256: String,
    /// Size of the compressed file.
    pub stored_size: u64,
    /// SHA-256 of the compressed file.
    pub stored_sha256: String,
}

impl ArchivedSegment {
    pub(crate) fn data_name(first: u64) -> String {
        format!("wal/{first:020}.log.zst")
    }
    pub(crate) fn seal_name(first: u64) -> String {
        format!("wal/{first:020}.seal")
    }
    pub(crate) fn meta_name(first: u64) -> String {
        format!("wal/{first:020}.json")
    }
}

impl BackupRepo {
    /// Every archived segment, by first LSN.
    pub fn archived_segments(&self) -> Result<Vec<ArchivedSegment>> {
        let mut out = vec![];
        for name in self
            .storage()
            .list("wal")
            .map_err(|e| self.err(format!("listing wal/: {e}")))?
        {
            if let Some(stem) = name.strip_suffix(".json") {
                let bytes = self
                    .storage()
                    .read(&format!("wal/{name}"))
                    .map_err(|e| self.err(format!("reading wal/{name}: {e}")))?;
                let seg: ArchivedSegment = serde_json::from_slice(&bytes)
                    .map_err(|e| self.err(format!("wal/{name} is damaged: {e}")))?;
                if stem.parse::<u64>().ok() != Some(seg.first_lsn) {
                    return Err(self.err(format!(
                        "wal/{name} describes a segment starting at LSN {}",
                        seg.first_lsn
                    )));
                }
                out.push(seg);
            }
        }
        out.sort_by_key(|s| s.first_lsn);
        Ok(out)
    }

    /// Reads and checks one archived segment: stored hash, decompression, plain hash, seal.
    pub(crate) fn read_segment(&self, seg: &ArchivedSegment) -> Result<Vec<u8>> {
        let name = ArchivedSegment::data_name(seg.first_lsn);
        let stored = self
            .storage()
            .read(&name)
            .map_err(|e| self.err(format!("reading {name}: {e}")))?;
        if sha256_hex(&stored) != seg.stored_sha256 {
            return Err(self.err(format!("{name} does not match its stored SHA-256")));
        }
        // Never decompress past the declared size (a zstd bomb would otherwise be expanded
        // into memory whole, or abort on a failed allocation).
        let plain = decompress_bounded(&stored, seg.plain_size)
            .map_err(|e| self.err(format!("{name} does not decompress: {e}")))?;
        if sha256_hex(&plain) != seg.plain_sha256 || plain.len() as u64 != seg.plain_size {
            return Err(self.err(format!(
                "{name} decompresses to bytes that do not match its SHA-256"
            )));
        }
        Ok(plain)
    }

    /// Refuses a segment whose LSNs overlap an archived segment that starts at another LSN.
    /// Within one history segment boundaries never move, so such an overlap is another
    /// history (a directory recovered with loss, whose new commits reuse LSNs, or another
    /// database); archiving it would stitch two histories together.
    fn refuse_overlap(&self, seg: &SealedSegment) -> Result<()> {
        let (first, last) = (seg.seal.first_lsn, seg.seal.last_lsn);
        let firsts: Vec<u64> = self
            .storage()
            .list("wal")
            .map_err(|e| self.err(format!("listing wal/: {e}")))?
            .iter()
            .filter_map(|n| n.strip_suffix(".json")?.parse().ok())
            .collect();
        let conflict = |other_first: u64, other_last: u64| {
            self.err(format!(
                "{} (LSNs {first}..={last}) overlaps archived segment {} (LSNs \
                 {other_first}..={other_last}): they belong to different histories (another \
                 database, or a timeline after a recovery or restore); back up to a new \
                 repository",
                seg.path.display(),
                ArchivedSegment::meta_name(other_first)
            ))
        };
        if let Some(&f) = firsts.iter().find(|&&f| f > first && f <= last) {
            return Err(conflict(f, f));
        }
        if let Some(&prev) = firsts.iter().filter(|&&f| f < first).max() {
            let name = ArchivedSegment::meta_name(prev);
            let bytes = self
                .storage()
                .read(&name)
                .map_err(|e| self.err(format!("reading {name}: {e}")))?;
            let p: ArchivedSegment = serde_json::from_slice(&bytes)
                .map_err(|e| self.err(format!("{name} is damaged: {e}")))?;
            if p.last_lsn >= first {
                return Err(conflict(p.first_lsn, p.last_lsn));
            }
        }
        Ok(())
    }

    /// Archives one sealed segment of a data directory (idempotent).
    pub(crate) fn archive_segment(
        &self,
        seg: &SealedSegment,
        level: i32,
        progress: &dyn Progress,
    ) -> Result<ArchivedSegment> {
        let meta_name = ArchivedSegment::meta_name(seg.seal.first_lsn);
        let plain_sha = hex::encode(seg.seal.sha256);
        if self.storage().exists(&meta_name) {
            let bytes = self
                .storage()
                .read(&meta_name)
                .map_err(|e| self.err(format!("reading {meta_name}: {e}")))?;
            let existing: ArchivedSegment = serde_json::from_slice(&bytes)
                .map_err(|e| self.err(format!("{meta_name} is damaged: {e}")))?;
            if existing.plain_sha256 != plain_sha {
                return Err(self.err(format!(
                    "{meta_name} holds different commits for LSNs {}..={} than {}: this repository belongs to another database or timeline; back up to a new repository",
                    seg.seal.first_lsn, seg.seal.last_lsn, seg.path.display()
                )));
            }
            return Ok(existing);
        }
        self.refuse_overlap(seg)?;
        let bytes = read_file(&seg.path).context(|| format!("reading {}", seg.path.display()))?;
        if bytes.len() as u64 != seg.seal.length || crate::codec::sha256(&bytes) != seg.seal.sha256
        {
            return Err(Error::Damaged(Damage {
                file: seg.path.clone(),
                offset: 0,
                detail: "sealed segment does not match its seal; refusing to archive damaged log".into(),
                hint: "run `amberdb verify` on the data directory; see \"Damaged data directory\" in docs/OPERATIONS.md".into(),
            }));
        }
        progress.begin(
            &format!("archiving segment {}", seg.seal.first_lsn),
            Some(bytes.len() as u64),
        );
        let stored =
            zstd::bulk::compress(&bytes, level).context(|| "compressing a log segment".into())?;
        let put = |name: &str, data: &[u8]| {
            self.storage()
                .write_atomic(name, data)
                .map_err(|e| self.err(format!("writing {name}: {e}")))
        };
        put(&ArchivedSegment::data_name(seg.seal.first_lsn), &stored)?;
        put(
            &ArchivedSegment::seal_name(seg.seal.first_lsn),
            &seg.seal.encode(),
        )?;
        let archived = ArchivedSegment {
            first_lsn: seg.seal.first_lsn,
            last_lsn: seg.seal.last_lsn,
            last_commit_ts_us: seg.seal.last_commit_ts,
            plain_size: bytes.len() as u64,
            plain_sha256: plain_sha,
            stored_size: stored.len() as u64,
            stored_sha256: sha256_hex(&stored),
        };
        put(
            &meta_name,
            &serde_json::to_vec_pretty(&archived).map_err(|e| self.err(e.to_string()))?,
        )?;
        progress.advance(bytes.len() as u64);
        progress.end();
        Ok(archived)
    }

    /// Reads an archived seal.
    pub(crate) fn read_seal(&self, first: u64) -> Result<Seal> {
        let name = ArchivedSegment::seal_name(first);
        let bytes = self
            .storage()
            .read(&name)
            .map_err(|e| self.err(format!("reading {name}: {e}")))?;
        Seal::decode(&bytes).map_err(|e| self.err(format!("{name}: {e}")))
    }
}

/// Decompresses `stored`, refusing output longer than `plain_size`; memory grows with the
/// bytes actually produced, and a failed allocation is an error, not an abort.
fn decompress_bounded(stored: &[u8], plain_size: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut decoder = zstd::stream::Decoder::new(stored)?.take(plain_size.saturating_add(1));
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = decoder.read(&mut chunk)?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() as u64 + n as u64 > plain_size {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("decompresses to more than its declared {plain_size} bytes"),
            ));
        }
        out.try_reserve(n)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::OutOfMemory, e.to_string()))?;
        out.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

//! The log archive (`REPO/wal/`) and the slots that make a data directory keep its log until
//! every attached repository has it.
//!
//! Identity: a repository belongs to one database, the one whose timeline histories
//! (`wal/<timeline>.history`) it holds; archiving a segment of another database, or into a
//! repository of another database, is refused. Archived segments are named by first LSN and
//! timeline, so the segments of a new timeline (after a restore is swapped in, or a recovery
//! that lost commits) sit beside the old timeline's, and restore picks them by history.
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
use crate::identity::{DatabaseId, FileIds, Identity, TimelineId};
use crate::io::{write_atomic, Faults};
use crate::log::segment::{Seal, SegmentHeader};
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
    /// The database whose log this slot keeps (absent in slot files written before ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_id: Option<DatabaseId>,
    /// The timeline `archived_through_lsn` is of: after a new timeline starts, the slot
    /// counts only the commits the new history shares with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<TimelineId>,
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

    /// Makes every slot count for the timeline of `identity`: a slot of an earlier timeline
    /// of its history keeps only the LSNs up to where the history left that timeline (later
    /// ones are another history's), and one of an unknown timeline starts again at 0. Returns
    /// true when a slot changed.
    pub(crate) fn follow_timeline(&mut self, identity: &Identity) -> bool {
        let mut changed = false;
        for s in &mut self.repos {
            let ids = FileIds {
                database_id: s.database_id.unwrap_or(identity.database_id),
                timeline: s
                    .timeline
                    .or(identity.history.first().map(|e| e.timeline))
                    .unwrap_or(identity.timeline),
            };
            if s.database_id == Some(identity.database_id) && s.timeline == Some(identity.timeline)
            {
                continue;
            }
            let through = match identity.range_of(ids.timeline) {
                Some(r) if ids.database_id == identity.database_id => {
                    r.hi.map_or(s.archived_through_lsn, |hi| s.archived_through_lsn.min(hi))
                }
                _ => 0,
            };
            s.archived_through_lsn = through;
            s.database_id = Some(identity.database_id);
            s.timeline = Some(identity.timeline);
            changed = true;
        }
        changed
    }

    /// Adds a slot for `repo` if it has none.
    pub(crate) fn attach(&mut self, repo: &BackupRepo, ids: Option<FileIds>) -> bool {
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
            database_id: ids.map(|i| i.database_id),
            timeline: ids.map(|i| i.timeline),
        });
        true
    }
}

/// An archived segment's description (`wal/<first lsn>-<timeline>.json`, written after its
/// data; `wal/<first lsn>.json` when archived before ids existed).
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
    /// The database it belongs to (absent when archived before ids existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_id: Option<DatabaseId>,
    /// The timeline it was written on (absent when archived before ids existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<TimelineId>,
}

/// `wal/<first lsn>` or `wal/<first lsn>-<timeline>`: the name of an archived segment's
/// files without their extension.
fn stem(first: u64, timeline: Option<TimelineId>) -> String {
    match timeline {
        Some(t) => format!("wal/{first:020}-{t}"),
        None => format!("wal/{first:020}"),
    }
}

/// Parses the stem of a `wal/` description file name (without `wal/` and `.json`).
fn parse_stem(stem: &str) -> Option<(u64, Option<TimelineId>)> {
    match stem.split_once('-') {
        None if stem.len() == 20 => Some((stem.parse().ok()?, None)),
        Some((first, tl)) if first.len() == 20 => Some((
            first.parse().ok()?,
            Some(TimelineId::try_from(tl.to_owned()).ok()?),
        )),
        _ => None,
    }
}

/// File name of the copy of a timeline's history in a repository.
pub(crate) fn history_name(timeline: TimelineId) -> String {
    format!("wal/{timeline}.history")
}

impl ArchivedSegment {
    /// The ids it carries, when it was archived with them.
    pub fn ids(&self) -> Option<FileIds> {
        Some(FileIds {
            database_id: self.database_id?,
            timeline: self.timeline?,
        })
    }
    /// The compressed segment's file name in the repository.
    pub fn data_file(&self) -> String {
        format!("{}.log.zst", stem(self.first_lsn, self.timeline))
    }
    /// The seal's file name in the repository.
    pub fn seal_file(&self) -> String {
        format!("{}.seal", stem(self.first_lsn, self.timeline))
    }
    /// The description's file name in the repository.
    pub fn meta_file(&self) -> String {
        format!("{}.json", stem(self.first_lsn, self.timeline))
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
                if parse_stem(stem) != Some((seg.first_lsn, seg.timeline)) {
                    return Err(self.err(format!(
                        "wal/{name} describes a segment starting at LSN {} of timeline {}",
                        seg.first_lsn,
                        seg.timeline.map_or("(none)".into(), |t| t.to_string())
                    )));
                }
                out.push(seg);
            }
        }
        out.sort_by_key(|s| (s.first_lsn, s.timeline));
        Ok(out)
    }

    /// Every timeline history in the repository (`wal/<timeline>.history`).
    pub fn histories(&self) -> Result<Vec<Identity>> {
        let mut out = vec![];
        for name in self
            .storage()
            .list("wal")
            .map_err(|e| self.err(format!("listing wal/: {e}")))?
        {
            let Some(tl) = name.strip_suffix(".history") else {
                continue;
            };
            let path = format!("wal/{name}");
            let bytes = self
                .storage()
                .read(&path)
                .map_err(|e| self.err(format!("reading {path}: {e}")))?;
            let h = Identity::decode(&bytes).map_err(|e| self.err(format!("{path}: {e}")))?;
            if h.timeline.to_string() != tl {
                return Err(self.err(format!(
                    "{path} holds the history of timeline {}",
                    h.timeline
                )));
            }
            out.push(h);
        }
        out.sort_by_key(|h| h.history.last().map(|e| e.created_at_us));
        Ok(out)
    }

    /// The database this repository belongs to: the one of its timeline histories.
    pub fn database_id(&self) -> Result<Option<DatabaseId>> {
        Ok(self.histories()?.first().map(|h| h.database_id))
    }

    /// Records the history of `identity`'s timeline in the repository (if not there yet),
    /// refusing a repository that belongs to another database.
    pub(crate) fn record_history(&self, identity: &Identity) -> Result<()> {
        if let Some(theirs) = self.database_id()? {
            if theirs != identity.database_id {
                return Err(self.err(format!(
                    "this repository belongs to database {theirs}, but this is database {}: \
                     back up to a repository of its own",
                    identity.database_id
                )));
            }
        }
        let name = history_name(identity.timeline);
        if !self.storage().exists(&name) {
            self.storage()
                .write_atomic(&name, &identity.encode())
                .map_err(|e| self.err(format!("writing {name}: {e}")))?;
        }
        Ok(())
    }

    /// Reads and checks one archived segment: stored hash, decompression, plain hash, seal.
    pub(crate) fn read_segment(&self, seg: &ArchivedSegment) -> Result<Vec<u8>> {
        let name = seg.data_file();
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

    /// Refuses a segment whose LSNs overlap an archived segment of its timeline that starts
    /// at another LSN (for the first timeline of a history, also one archived before ids
    /// existed). Within one history segment boundaries never move, so such an overlap is
    /// another history; archiving it would stitch two histories together.
    fn refuse_overlap(
        &self,
        seg: &SealedSegment,
        timeline: TimelineId,
        first_timeline: bool,
    ) -> Result<()> {
        let (first, last) = (seg.seal.first_lsn, seg.seal.last_lsn);
        let firsts: Vec<(u64, Option<TimelineId>)> = self
            .storage()
            .list("wal")
            .map_err(|e| self.err(format!("listing wal/: {e}")))?
            .iter()
            .filter_map(|n| parse_stem(n.strip_suffix(".json")?))
            .filter(|(_, t)| *t == Some(timeline) || (t.is_none() && first_timeline))
            .collect();
        let conflict = |name: String, other_first: u64, other_last: u64| {
            self.err(format!(
                "{} (LSNs {first}..={last}) overlaps archived segment {name} (LSNs \
                 {other_first}..={other_last}) of the same timeline: they belong to different \
                 histories; back up to a new repository",
                seg.path.display(),
            ))
        };
        if let Some(&(f, t)) = firsts.iter().find(|(f, _)| *f > first && *f <= last) {
            return Err(conflict(format!("{}.json", stem(f, t)), f, f));
        }
        if let Some(&(prev, t)) = firsts.iter().filter(|(f, _)| *f < first).max() {
            let name = format!("{}.json", stem(prev, t));
            let bytes = self
                .storage()
                .read(&name)
                .map_err(|e| self.err(format!("reading {name}: {e}")))?;
            let p: ArchivedSegment = serde_json::from_slice(&bytes)
                .map_err(|e| self.err(format!("{name} is damaged: {e}")))?;
            if p.last_lsn >= first {
                return Err(conflict(name, p.first_lsn, p.last_lsn));
            }
        }
        Ok(())
    }

    /// Reads an existing description, if there is one.
    fn existing(&self, name: &str) -> Result<Option<ArchivedSegment>> {
        if !self.storage().exists(name) {
            return Ok(None);
        }
        let bytes = self
            .storage()
            .read(name)
            .map_err(|e| self.err(format!("reading {name}: {e}")))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| self.err(format!("{name} is damaged: {e}")))
    }

    /// Archives one sealed segment of the data directory whose identity is `identity`
    /// (idempotent). A segment of another database or history is refused as damage of the
    /// data directory; a repository of another database is refused.
    pub(crate) fn archive_segment(
        &self,
        seg: &SealedSegment,
        identity: &Identity,
        level: i32,
        progress: &dyn Progress,
    ) -> Result<ArchivedSegment> {
        let bytes = read_file(&seg.path).context(|| format!("reading {}", seg.path.display()))?;
        let not_ours = |detail: String| {
            Error::Damaged(Damage {
                file: seg.path.clone(),
                offset: 0,
                detail,
                hint: "run `amberdb verify` on the data directory; see \"Damaged data directory\" in docs/OPERATIONS.md".into(),
            })
        };
        if bytes.len() as u64 != seg.seal.length || crate::codec::sha256(&bytes) != seg.seal.sha256
        {
            return Err(not_ours(
                "sealed segment does not match its seal; refusing to archive damaged log".into(),
            ));
        }
        let header = SegmentHeader::decode(&bytes).map_err(&not_ours)?;
        let root = identity
            .history
            .first()
            .map_or(identity.timeline, |e| e.timeline);
        // A segment written before ids existed belongs to the first timeline.
        let ids = header.ids.unwrap_or(FileIds {
            database_id: identity.database_id,
            timeline: root,
        });
        if let Some(why) = identity.refuses(ids, header.first_lsn) {
            return Err(not_ours(format!(
                "segment of another history ({ids}; this directory is {}): {why}; refusing to \
                 archive it",
                identity.ids()
            )));
        }
        self.record_history(identity)?;
        let plain_sha = hex::encode(seg.seal.sha256);
        let first = seg.seal.first_lsn;
        let mut names = vec![format!("{}.json", stem(first, Some(ids.timeline)))];
        if ids.timeline == root {
            names.push(format!("{}.json", stem(first, None)));
        }
        for meta_name in &names {
            if let Some(existing) = self.existing(meta_name)? {
                // A segment re-sealed by a key rotation has new bytes for the same commits:
                // the archive keeps the copy it has, under the key id it was written with.
                let resealed = existing.plain_sha256 != plain_sha
                    && self.read_segment(&existing).is_ok_and(|archived| {
                        crate::crypto::rotate::same_segment_resealed(&archived, &bytes)
                    });
                if existing.plain_sha256 != plain_sha && !resealed {
                    return Err(self.err(format!(
                        "{meta_name} holds different commits for LSNs {}..={} than {}: this repository belongs to another database or timeline; back up to a new repository",
                        seg.seal.first_lsn, seg.seal.last_lsn, seg.path.display()
                    )));
                }
                return Ok(existing);
            }
        }
        self.refuse_overlap(seg, ids.timeline, ids.timeline == root)?;
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
        let archived = ArchivedSegment {
            first_lsn: seg.seal.first_lsn,
            last_lsn: seg.seal.last_lsn,
            last_commit_ts_us: seg.seal.last_commit_ts,
            plain_size: bytes.len() as u64,
            plain_sha256: plain_sha,
            stored_size: stored.len() as u64,
            stored_sha256: sha256_hex(&stored),
            database_id: Some(ids.database_id),
            timeline: Some(ids.timeline),
        };
        put(&archived.data_file(), &stored)?;
        put(&archived.seal_file(), &seg.seal.encode())?;
        put(
            &archived.meta_file(),
            &serde_json::to_vec_pretty(&archived).map_err(|e| self.err(e.to_string()))?,
        )?;
        progress.advance(bytes.len() as u64);
        progress.end();
        Ok(archived)
    }

    /// Reads an archived seal.
    pub(crate) fn read_seal(&self, seg: &ArchivedSegment) -> Result<Seal> {
        let name = seg.seal_file();
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn slot(through: u64, ids: Option<FileIds>) -> Slot {
        Slot {
            repository_id: "r".into(),
            path: PathBuf::from("/r"),
            archived_through_lsn: through,
            database_id: ids.map(|i| i.database_id),
            timeline: ids.map(|i| i.timeline),
        }
    }

    #[test]
    fn slots_of_an_earlier_timeline_count_only_the_lsns_the_new_history_shares() {
        let t1 = Identity::create("create");
        let t2 = t1.branch(20, "automatic recovery lost LSNs 21..=40");
        let other = Identity::create("create");
        let mut slots = Slots {
            repos: vec![
                // Archived through 25 on the old timeline: 21..=25 of the new one are not.
                slot(25, Some(t1.ids())),
                // Below the branch: all of it is shared.
                slot(12, Some(t1.ids())),
                // Written before ids: the first timeline's.
                slot(25, None),
                // Another database's slot: nothing of this history is archived there.
                slot(25, Some(other.ids())),
                // Already the current timeline's.
                slot(30, Some(t2.ids())),
            ],
        };
        assert!(slots.follow_timeline(&t2));
        let through: Vec<u64> = slots.repos.iter().map(|s| s.archived_through_lsn).collect();
        assert_eq!(through, vec![20, 12, 20, 0, 30]);
        assert!(slots.repos.iter().all(|s| s.timeline == Some(t2.timeline)));
        assert!(!slots.follow_timeline(&t2), "idempotent");
    }
}

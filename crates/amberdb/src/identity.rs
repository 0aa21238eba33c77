//! Database and timeline identity: which database a file belongs to, and which history.
//!
//! Every data directory has a **database id** (random, 128 bits, made when the database is
//! created; a restore of database X is still X, as PostgreSQL's system identifier survives a
//! base-backup restore) and a **timeline id** (random, 64 bits, new on create, on every
//! restore and on every automatic recovery that loses commits). A timeline's **history** is
//! its ancestry: each timeline with its parent and the *branch LSN*, the last commit it
//! shares with its parent (its own commits start at branch LSN + 1), like PostgreSQL's
//! `.history` files. The record lives in `DATA/identity.json` and is copied into a
//! repository as `wal/<timeline>.history` when the directory first archives or backs up there.
//!
//! Segment headers (log format 3), checkpoints (format 3), backup manifests, archived
//! segment descriptions and slots carry the ids; log replay (`log/replay.rs`) refuses a
//! segment of another database or of a timeline outside the history, and replays a parent's
//! segments only up to the branch LSN. Byte layout: `docs/FORMAT.md`, "Identity".
//!
//! This module never decides what to do about a mismatch; it only answers what belongs.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Damage, Error, IoContext, Result};
use crate::io::{write_atomic, Faults};

/// File in the data directory holding the database id, the timeline and its history.
pub const IDENTITY_FILE: &str = "identity.json";
/// Version of the identity record (and of `wal/<timeline>.history`).
pub const IDENTITY_FORMAT_VERSION: u32 = 1;

/// The id of a database: random, 128 bits, kept by restores.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DatabaseId(pub [u8; 16]);

/// The id of a timeline (one history of a database): random, 64 bits, never 0.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimelineId(pub u64);

impl fmt::Display for DatabaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}
impl fmt::Debug for DatabaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseId({self})")
    }
}
impl fmt::Display for TimelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}
impl fmt::Debug for TimelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TimelineId({self})")
    }
}
impl From<DatabaseId> for String {
    fn from(id: DatabaseId) -> String {
        id.to_string()
    }
}
impl From<TimelineId> for String {
    fn from(id: TimelineId) -> String {
        id.to_string()
    }
}
impl TryFrom<String> for DatabaseId {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        let mut b = [0u8; 16];
        hex::decode_to_slice(&s, &mut b).map_err(|_| format!("{s:?} is not a database id"))?;
        Ok(DatabaseId(b))
    }
}
impl TryFrom<String> for TimelineId {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        match u64::from_str_radix(&s, 16) {
            Ok(n) if n != 0 && s.len() == 16 => Ok(TimelineId(n)),
            _ => Err(format!("{s:?} is not a timeline id")),
        }
    }
}

/// Unpredictable bytes from the operating system's generator (`getrandom` through `ring`).
/// Should that ever fail, SipHash outputs under the standard library's OS-seeded keys, plus
/// time, process id and a counter, through SHA-256: still unique per call.
fn random_bytes() -> [u8; 32] {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 32];
    if ring::rand::SystemRandom::new().fill(&mut b).is_ok() {
        return b;
    }
    mixed_bytes()
}

fn mixed_bytes() -> [u8; 32] {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut seed = Vec::with_capacity(64);
    for i in 0..4u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(n ^ (i << 56));
        seed.extend_from_slice(&h.finish().to_le_bytes());
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    seed.extend_from_slice(&nanos.to_le_bytes());
    seed.extend_from_slice(&std::process::id().to_le_bytes());
    seed.extend_from_slice(&n.to_le_bytes());
    crate::codec::sha256(&seed)
}

impl DatabaseId {
    /// A new random id.
    pub fn random() -> Self {
        let r = random_bytes();
        let mut b = [0u8; 16];
        b.copy_from_slice(r.get(..16).unwrap_or(&[1; 16]));
        DatabaseId(b)
    }
}

impl TimelineId {
    /// A new random id (never 0).
    pub fn random() -> Self {
        let r = random_bytes();
        let n = r
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map_or(1, u64::from_le_bytes);
        TimelineId(n.max(1))
    }
}

/// The ids a file carries: its database and the timeline it was written on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIds {
    /// The database.
    pub database_id: DatabaseId,
    /// The timeline.
    pub timeline: TimelineId,
}

impl fmt::Display for FileIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "database {} timeline {}",
            self.database_id, self.timeline
        )
    }
}

/// One timeline of a history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// The timeline.
    pub timeline: TimelineId,
    /// The timeline it branched from (`None` for the first one).
    pub parent: Option<TimelineId>,
    /// The last LSN it shares with its parent (0 for the first one); its own commits start
    /// at this LSN + 1.
    pub branch_lsn: u64,
    /// When it was made, microseconds since the epoch.
    pub created_at_us: u64,
    /// Why: `create`, `restore ...`, `automatic recovery ...`, `assigned on upgrade`.
    pub reason: String,
}

/// A database's identity and the history of its current timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Record version.
    pub format_version: u32,
    /// The database.
    pub database_id: DatabaseId,
    /// The current timeline (the last entry of `history`).
    pub timeline: TimelineId,
    /// Ancestry of the current timeline, oldest first, ending with it.
    pub history: Vec<TimelineEntry>,
}

/// The identity record as stored: the record and a CRC32C of its compact JSON, so a flipped
/// hex digit (which would still parse) is damage rather than another id.
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    identity: Identity,
    crc32c: String,
}

/// Where an ancestry leaves one timeline: its LSN range `(lo, hi]` (`hi` open at the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineRange {
    /// The timeline.
    pub timeline: TimelineId,
    /// Its branch LSN: its own commits are above it.
    pub lo: u64,
    /// The last of its commits in the history (`None`: the current timeline, open-ended).
    pub hi: Option<u64>,
}

impl Identity {
    /// A new database: new ids, one timeline.
    pub fn create(reason: &str) -> Self {
        let timeline = TimelineId::random();
        Identity {
            format_version: IDENTITY_FORMAT_VERSION,
            database_id: DatabaseId::random(),
            timeline,
            history: vec![TimelineEntry {
                timeline,
                parent: None,
                branch_lsn: 0,
                created_at_us: crate::document::now_micros(),
                reason: reason.into(),
            }],
        }
    }

    /// A new timeline branching from this one after `branch_lsn` (same database).
    pub fn branch(&self, branch_lsn: u64, reason: &str) -> Self {
        let mut history = self.history.clone();
        // A branch below an earlier branch point leaves the later timelines out of the
        // ancestry: they hold no commit at or below it.
        while history.len() > 1 && history.last().is_some_and(|e| e.branch_lsn > branch_lsn) {
            history.pop();
        }
        let timeline = TimelineId::random();
        history.push(TimelineEntry {
            timeline,
            parent: history.last().map(|e| e.timeline),
            branch_lsn,
            created_at_us: crate::document::now_micros(),
            reason: reason.into(),
        });
        Identity {
            format_version: IDENTITY_FORMAT_VERSION,
            database_id: self.database_id,
            timeline,
            history,
        }
    }

    /// The ids files of the current timeline carry.
    pub fn ids(&self) -> FileIds {
        FileIds {
            database_id: self.database_id,
            timeline: self.timeline,
        }
    }

    /// The LSN range each timeline of the ancestry contributes, oldest first.
    pub fn ranges(&self) -> Vec<TimelineRange> {
        let mut out: Vec<TimelineRange> = vec![];
        for (i, e) in self.history.iter().enumerate() {
            out.push(TimelineRange {
                timeline: e.timeline,
                lo: e.branch_lsn,
                hi: self.history.get(i + 1).map(|n| n.branch_lsn),
            });
        }
        out
    }

    /// The range of `timeline` in this ancestry, if it is part of it.
    pub fn range_of(&self, timeline: TimelineId) -> Option<TimelineRange> {
        self.ranges().into_iter().find(|r| r.timeline == timeline)
    }

    /// The timeline whose commit `lsn` is in this ancestry.
    pub fn timeline_at(&self, lsn: u64) -> Option<TimelineId> {
        self.ranges()
            .into_iter()
            .rfind(|r| r.lo < lsn || r.lo == 0)
            .map(|r| r.timeline)
    }

    /// Why a file with `ids` holding commits up to `lsn` (a checkpoint, or a segment's first
    /// LSN) does not belong to this history, if it does not.
    pub fn refuses(&self, ids: FileIds, lsn: u64) -> Option<String> {
        if ids.database_id != self.database_id {
            return Some(format!(
                "it belongs to database {}, but this is database {}",
                ids.database_id, self.database_id
            ));
        }
        match self.range_of(ids.timeline) {
            None => Some(format!(
                "it was written on timeline {}, which is not in the history of timeline {} \
                 (timelines {}) of database {}: another history of this database",
                ids.timeline,
                self.timeline,
                self.history
                    .iter()
                    .map(|e| e.timeline.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                self.database_id
            )),
            Some(TimelineRange { hi: Some(hi), .. }) if lsn > hi => Some(format!(
                "it holds LSN {lsn} of timeline {}, but this history left that timeline after \
                 LSN {hi} (timeline {} branched there): those commits were undone",
                ids.timeline, self.timeline
            )),
            _ => None,
        }
    }

    /// Encodes the record (also the content of `wal/<timeline>.history`).
    pub fn encode(&self) -> Vec<u8> {
        let body = serde_json::to_vec(self).unwrap_or_default();
        let stored = Stored {
            identity: self.clone(),
            crc32c: format!("{:08x}", crc32c::crc32c(&body)),
        };
        serde_json::to_vec_pretty(&stored).unwrap_or_default()
    }

    /// Decodes and checks a record.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Self, String> {
        let stored: Stored =
            serde_json::from_slice(bytes).map_err(|e| format!("does not parse: {e}"))?;
        let body = serde_json::to_vec(&stored.identity).map_err(|e| e.to_string())?;
        if format!("{:08x}", crc32c::crc32c(&body)) != stored.crc32c {
            return Err("fails its CRC32C".into());
        }
        let id = stored.identity;
        if id.format_version == 0 || id.format_version > IDENTITY_FORMAT_VERSION {
            return Err(format!(
                "format version {} is not supported (this build reads up to {IDENTITY_FORMAT_VERSION})",
                id.format_version
            ));
        }
        let chained = id.history.first().is_some_and(|e| e.parent.is_none())
            && id.history.windows(2).all(|w| match w {
                [a, b] => b.parent == Some(a.timeline) && b.branch_lsn >= a.branch_lsn,
                _ => true,
            })
            && id.history.last().map(|e| e.timeline) == Some(id.timeline);
        if !chained {
            return Err("its timeline history is not a chain ending at its timeline".into());
        }
        Ok(id)
    }

    /// Reads `DATA/identity.json` (`None` when there is none).
    pub fn load(data: &Path) -> Result<Option<Identity>> {
        let path = data.join(IDENTITY_FILE);
        match crate::io::read(&path, &Faults::none()) {
            Ok(bytes) => Identity::decode(&bytes).map(Some).map_err(|e| {
                Error::Damaged(Damage {
                    file: path.clone(),
                    offset: 0,
                    detail: format!("identity record {e}"),
                    hint: "it names this database and its timeline; copy the newest \
                           `wal/<timeline>.history` of a repository this directory archives to \
                           over it, or see \"Damaged data directory\" in docs/OPERATIONS.md"
                        .into(),
                })
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Writes `DATA/identity.json` (temp file, fsync, rename, directory fsync).
    pub(crate) fn save(&self, data: &Path, faults: &Faults) -> Result<()> {
        let path = data.join(IDENTITY_FILE);
        write_atomic(&path, &self.encode(), faults)
            .context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_a_flipped_digit_is_damage() {
        let id = Identity::create("create")
            .branch(10, "restore")
            .branch(20, "x");
        let bytes = id.encode();
        assert_eq!(Identity::decode(&bytes).unwrap(), id);
        let text = String::from_utf8(bytes).unwrap();
        let digit = id.database_id.to_string();
        let flipped_digit = if digit.starts_with('0') { "1" } else { "0" };
        let bad = text.replacen(&digit[..1], flipped_digit, 1);
        assert!(Identity::decode(bad.as_bytes()).is_err());
    }

    #[test]
    fn ranges_follow_the_branch_points() {
        let root = Identity::create("create");
        let child = root.branch(10, "restore");
        let r = child.ranges();
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].lo, r[0].hi), (0, Some(10)));
        assert_eq!((r[1].lo, r[1].hi), (10, None));
        assert_eq!(child.timeline_at(10), Some(root.timeline));
        assert_eq!(child.timeline_at(11), Some(child.timeline));
        assert!(child.refuses(root.ids(), 10).is_none());
        assert!(child.refuses(root.ids(), 11).unwrap().contains("undone"));
        // Branching below an earlier branch point drops the timelines above it.
        let again = child.branch(5, "restore");
        assert_eq!(again.history.len(), 2);
        assert_eq!(again.history[0].timeline, root.timeline);
        assert!(again.refuses(child.ids(), 6).is_some());
    }
}

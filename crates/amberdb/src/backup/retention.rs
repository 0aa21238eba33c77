//! Retention with restic's semantics: `keep_last`, `keep_hourly`, `keep_daily`, `keep_weekly`,
//! `keep_monthly`, `keep_within`. Rules are OR-ed; each bucketed rule walks backups newest
//! first and keeps the newest backup of each of its N most recent periods that contain a
//! backup; calendar periods are UTC (ISO weeks); `keep_within` is measured back from the
//! newest backup. The newest backup is always kept, and every kept backup lists why.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::BackupManifest;
use crate::error::{Error, Result};

/// A retention policy. At least one rule must be set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    /// Keep the N newest backups.
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the N newest hours that have one.
    pub keep_hourly: Option<u32>,
    /// ... days.
    pub keep_daily: Option<u32>,
    /// ... ISO weeks.
    pub keep_weekly: Option<u32>,
    /// ... months.
    pub keep_monthly: Option<u32>,
    /// Keep every backup taken within this long before the newest backup.
    #[serde(with = "humantime_secs", default)]
    pub keep_within: Option<Duration>,
}

mod humantime_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        d.map(|d| d.as_secs()).serialize(s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_secs))
    }
}

/// The decision for one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PruneEntry {
    /// Backup id.
    pub id: String,
    /// Backup time, RFC 3339.
    pub created_at: String,
    /// LSN.
    pub lsn: u64,
    /// Rules that keep it (empty = removed).
    pub reasons: Vec<String>,
}

/// What `prune` keeps and removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrunePlan {
    /// Kept backups, newest first, each with its reasons.
    pub keep: Vec<PruneEntry>,
    /// Removed backups, newest first.
    pub remove: Vec<PruneEntry>,
    /// Archived segments removed (first LSNs), because no kept backup or the PITR window
    /// needs them.
    pub remove_segments: Vec<u64>,
    /// Incomplete backups (no manifest) removed because their writer is gone (interrupted
    /// by a crash, a kill or a power cut).
    pub remove_incomplete: Vec<String>,
    /// Incomplete backups left alone because they are still being written.
    pub in_progress: Vec<String>,
}

impl RetentionPolicy {
    /// True when no rule is set.
    pub fn is_empty(&self) -> bool {
        self.keep_last.is_none()
            && self.keep_hourly.is_none()
            && self.keep_daily.is_none()
            && self.keep_weekly.is_none()
            && self.keep_monthly.is_none()
            && self.keep_within.is_none()
    }

    /// Decides, for backups in any order, which to keep and why. Refuses an empty policy.
    pub fn apply(&self, backups: &[BackupManifest]) -> Result<Vec<PruneEntry>> {
        if self.is_empty() {
            return Err(Error::InvalidArgument(
                "refusing to prune with an empty policy (it would remove every backup but the newest); set at least one --keep-* rule".into(),
            ));
        }
        let mut sorted: Vec<&BackupManifest> = backups.iter().collect();
        sorted
            .sort_by(|a, b| (b.created_at_us, b.lsn, &b.id).cmp(&(a.created_at_us, a.lsn, &a.id)));
        let mut entries: Vec<PruneEntry> = sorted
            .iter()
            .map(|b| PruneEntry {
                id: b.id.clone(),
                created_at: b.created_at.clone(),
                lsn: b.lsn,
                reasons: vec![],
            })
            .collect();
        if let Some(first) = entries.first_mut() {
            first.reasons.push("newest".into());
        }
        if let Some(n) = self.keep_last {
            for e in entries.iter_mut().take(n as usize) {
                e.reasons.push("last".into());
            }
        }
        type Bucket = fn(u64) -> i64;
        let buckets: [(&str, Option<u32>, Bucket); 4] = [
            ("hourly", self.keep_hourly, |us| (us / 3_600_000_000) as i64),
            ("daily", self.keep_daily, |us| (us / 86_400_000_000) as i64),
            ("weekly", self.keep_weekly, iso_week),
            ("monthly", self.keep_monthly, month),
        ];
        for (name, n, bucket) in buckets {
            let Some(n) = n else { continue };
            let mut seen = BTreeSet::new();
            for (e, b) in entries.iter_mut().zip(&sorted) {
                if seen.len() >= n as usize {
                    break;
                }
                if seen.insert(bucket(b.created_at_us)) {
                    e.reasons.push(name.into());
                }
            }
        }
        if let (Some(within), Some(newest)) = (self.keep_within, sorted.first()) {
            let from = newest
                .created_at_us
                .saturating_sub(within.as_micros() as u64);
            for (e, b) in entries.iter_mut().zip(&sorted) {
                if b.created_at_us >= from {
                    e.reasons.push("within".into());
                }
            }
        }
        Ok(entries)
    }
}

/// Monday-based ISO week number since the epoch (1970-01-01 was a Thursday).
fn iso_week(us: u64) -> i64 {
    let days = (us / 86_400_000_000) as i64;
    (days + 3).div_euclid(7)
}

/// Months since the epoch, UTC.
fn month(us: u64) -> i64 {
    let t = crate::document::format_micros(us);
    let y: i64 = t.get(0..4).and_then(|s| s.parse().ok()).unwrap_or(0);
    let m: i64 = t.get(5..7).and_then(|s| s.parse().ok()).unwrap_or(0);
    y * 12 + m
}

impl super::BackupRepo {
    /// Applies `policy` (and keeps the backup that the PITR window needs), then removes the
    /// backups it does not keep and the archived segments that no kept backup's chain needs.
    /// With `dry_run`, only returns the plan.
    pub fn prune(
        &self,
        policy: &RetentionPolicy,
        pitr_window: Option<Duration>,
        dry_run: bool,
    ) -> Result<PrunePlan> {
        let backups = self.list()?;
        let mut entries = policy.apply(&backups)?;
        if let Some(window) = pitr_window {
            // The newest backup taken before the window opens is the base for its oldest targets.
            let from = crate::document::now_micros().saturating_sub(window.as_micros() as u64);
            let base = backups
                .iter()
                .filter(|b| b.commit_ts_us <= from)
                .max_by_key(|b| (b.lsn, b.created_at_us));
            if let Some(base) = base {
                if let Some(e) = entries.iter_mut().find(|e| e.id == base.id) {
                    e.reasons.push("pitr_window".into());
                }
            }
        }
        let (keep, remove): (Vec<_>, Vec<_>) =
            entries.into_iter().partition(|e| !e.reasons.is_empty());
        let oldest_kept = keep.iter().map(|e| e.lsn).min().unwrap_or(0);
        let remove_segments: Vec<u64> = self
            .archived_segments()?
            .iter()
            .filter(|s| s.last_lsn <= oldest_kept)
            .map(|s| s.first_lsn)
            .collect();
        let (remove_incomplete, in_progress) = self.interrupted_backups(dry_run)?;
        let plan = PrunePlan {
            keep,
            remove,
            remove_segments,
            remove_incomplete,
            in_progress,
        };
        if dry_run {
            return Ok(plan);
        }
        for e in &plan.remove {
            // Every id here came from a manifest that `list` checked; check again right before
            // deleting, so no path built from a manifest can ever leave `backups/`.
            self.check_backup_id(&e.id)?;
            // Manifest first: an interrupted prune leaves an incomplete backup, never a
            // complete-looking one with missing files.
            let dir = format!("backups/{}", e.id);
            self.storage()
                .remove(&format!("{dir}/{}", super::MANIFEST_FILE))
                .map_err(|err| self.err(format!("removing {dir}: {err}")))?;
            self.storage()
                .remove_dir(&dir)
                .map_err(|err| self.err(format!("removing {dir}: {err}")))?;
        }
        // Every timeline's segments that end at or below the oldest kept backup.
        let remove: Vec<super::ArchivedSegment> = self
            .archived_segments()?
            .into_iter()
            .filter(|s| s.last_lsn <= oldest_kept && plan.remove_segments.contains(&s.first_lsn))
            .collect();
        for seg in &remove {
            for name in [seg.meta_file(), seg.data_file(), seg.seal_file()] {
                if self.storage().exists(&name) {
                    self.storage()
                        .remove(&name)
                        .map_err(|err| self.err(format!("removing {name}: {err}")))?;
                }
            }
        }
        let kept: Vec<BackupManifest> = backups
            .into_iter()
            .filter(|b| plan.keep.iter().any(|k| k.id == b.id))
            .collect();
        let blobs_removed = crate::blob::prune_repo(self, &kept, &self.archived_segments()?)?;
        tracing::info!(
            blobs_removed,
            incomplete_removed = plan.remove_incomplete.len(),
            kept = plan.keep.len(),
            removed = plan.remove.len(),
            segments = plan.remove_segments.len(),
            "pruned repository"
        );
        Ok(plan)
    }
}

impl super::BackupRepo {
    /// Backups without a manifest, split into those whose writer is gone (removed here
    /// unless `dry_run`) and those still being written (their writer holds the lock).
    fn interrupted_backups(&self, dry_run: bool) -> Result<(Vec<String>, Vec<String>)> {
        let (mut gone, mut running) = (vec![], vec![]);
        for e in self.entries()? {
            if e.status != super::BackupState::Incomplete {
                continue;
            }
            self.check_backup_id(&e.id)?;
            let dir = format!("backups/{}", e.id);
            let lock_name = format!("{dir}/{}", super::BACKUP_LOCK);
            if dry_run && !self.storage().exists(&lock_name) {
                gone.push(e.id);
                continue;
            }
            let guard = self
                .storage()
                .try_lock(&lock_name)
                .map_err(|err| self.err(format!("locking {lock_name}: {err}")))?;
            let Some(guard) = guard else {
                running.push(e.id);
                continue;
            };
            // Still no manifest now that we hold the lock: nobody can be writing it.
            if !dry_run
                && !self
                    .storage()
                    .exists(&format!("{dir}/{}", super::MANIFEST_FILE))
            {
                self.storage()
                    .remove_dir(&dir)
                    .map_err(|err| self.err(format!("removing {dir}: {err}")))?;
                tracing::info!(backup = %e.id, "removed an interrupted backup");
            }
            drop(guard);
            gone.push(e.id);
        }
        Ok((gone, running))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000_000;
    const DAY: u64 = 24 * HOUR;
    /// 2026-11-02T00:00:00Z, a Monday.
    const MONDAY: u64 = 1_793_577_600_000_000;

    fn backup(i: usize, at: u64) -> BackupManifest {
        BackupManifest {
            format_version: 1,
            id: format!("b{i:02}"),
            repository_id: "r".into(),
            created_at: crate::document::format_micros(at),
            created_at_us: at,
            lsn: i as u64,
            commit_ts_us: at,
            commit_time: String::new(),
            documents: Default::default(),
            schema_versions: Default::default(),
            spec_checksums: Default::default(),
            engine_version: String::new(),
            compression: "zstd".into(),
            compression_level: 3,
            key_id: None,
            archived_through_lsn: None,
            database_id: None,
            timeline: None,
            files: vec![],
            blobs: vec![],
        }
    }

    fn kept(policy: &RetentionPolicy, times: &[u64]) -> Vec<(String, Vec<String>)> {
        let backups: Vec<_> = times
            .iter()
            .enumerate()
            .map(|(i, t)| backup(i, *t))
            .collect();
        policy
            .apply(&backups)
            .expect("policy applies")
            .into_iter()
            .filter(|e| !e.reasons.is_empty())
            .map(|e| (e.id, e.reasons))
            .collect()
    }

    fn ids(k: &[(String, Vec<String>)]) -> Vec<&str> {
        k.iter().map(|(id, _)| id.as_str()).collect()
    }

    #[test]
    fn monday_constant_is_a_monday() {
        assert_eq!(
            crate::document::format_micros(MONDAY),
            "2026-11-02T00:00:00.000000Z"
        );
        assert_eq!(iso_week(MONDAY), iso_week(MONDAY + 6 * DAY + 23 * HOUR));
        assert_ne!(iso_week(MONDAY), iso_week(MONDAY - 1));
    }

    #[test]
    fn keep_last_only_keeps_the_n_newest() {
        let times: Vec<u64> = (0..5).map(|i| MONDAY + i * HOUR).collect();
        let k = kept(
            &RetentionPolicy {
                keep_last: Some(2),
                ..Default::default()
            },
            &times,
        );
        assert_eq!(ids(&k), ["b04", "b03"]);
        assert_eq!(k[0].1, ["newest", "last"]);
        assert_eq!(k[1].1, ["last"]);
    }

    #[test]
    fn daily_and_weekly_overlap_keep_newest_per_period_with_both_reasons() {
        // Two backups a day for 10 days.
        let times: Vec<u64> = (0..10)
            .flat_map(|d| [MONDAY + d * DAY + HOUR, MONDAY + d * DAY + 20 * HOUR])
            .collect();
        let k = kept(
            &RetentionPolicy {
                keep_daily: Some(3),
                keep_weekly: Some(2),
                ..Default::default()
            },
            &times,
        );
        // Daily: newest of days 9, 8, 7 (b19, b17, b15). Weekly: newest of week 2 (day 9 = b19)
        // and of week 1 (day 6 = b13).
        assert_eq!(ids(&k), ["b19", "b17", "b15", "b13"]);
        assert_eq!(k[0].1, ["newest", "daily", "weekly"]);
        assert_eq!(k[3].1, ["weekly"]);
    }

    #[test]
    fn keep_within_is_measured_from_the_newest_backup() {
        // Old backups, then nothing for a month: keep_within counts back from the newest.
        let times = [MONDAY, MONDAY + DAY, MONDAY + 2 * DAY, MONDAY + 40 * DAY];
        let k = kept(
            &RetentionPolicy {
                keep_within: Some(Duration::from_secs(39 * 86_400)),
                ..Default::default()
            },
            &times,
        );
        assert_eq!(ids(&k), ["b03", "b02", "b01"]);
    }

    #[test]
    fn sparse_days_count_only_days_that_have_backups() {
        // Backups on days 0, 5 and 20 only: keep_daily 3 keeps all three, not just the last 3 calendar days.
        let times = [MONDAY, MONDAY + 5 * DAY, MONDAY + 20 * DAY];
        let k = kept(
            &RetentionPolicy {
                keep_daily: Some(3),
                ..Default::default()
            },
            &times,
        );
        assert_eq!(ids(&k), ["b02", "b01", "b00"]);
    }

    #[test]
    fn empty_policy_is_refused() {
        let err = RetentionPolicy::default()
            .apply(&[backup(0, MONDAY)])
            .expect_err("refused");
        assert!(err.to_string().contains("empty policy"), "{err}");
    }

    #[test]
    fn newest_is_always_kept() {
        let times = [MONDAY, MONDAY + HOUR];
        let k = kept(
            &RetentionPolicy {
                keep_monthly: Some(0),
                ..Default::default()
            },
            &times,
        );
        assert_eq!(ids(&k), ["b01"]);
        assert_eq!(k[0].1, ["newest"]);
    }

    #[test]
    fn monthly_buckets_follow_calendar_months() {
        // Nov 2, Nov 29, Dec 1: two months.
        let times = [MONDAY, MONDAY + 27 * DAY, MONDAY + 29 * DAY];
        let k = kept(
            &RetentionPolicy {
                keep_monthly: Some(5),
                ..Default::default()
            },
            &times,
        );
        assert_eq!(ids(&k), ["b02", "b01"]);
    }
}

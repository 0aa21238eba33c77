//! Time: the injectable [`Clock`] the engine reads, and the commit clock built on it.
//!
//! [`Clock`] is where the engine gets wall time and monotonic time from. `Options::clock`
//! defaults to [`SystemClock`]; tests inject a [`ManualClock`] and move it with
//! [`ManualClock::set`] / [`ManualClock::advance`], so commit timestamps, TTL expiry and log
//! aging are exact and no test sleeps for time to pass.
//!
//! The commit clock ([`CommitClock`]) turns wall time into commit timestamps. They must never
//! decrease (point-in-time targets and seals depend on it), but the wall clock can step
//! either way. Clamping with `max(wall, last + 1)` freezes time after a forward step: one
//! commit stamped far in the future makes every later commit `last + 1` (a microsecond
//! apart) until the wall clock catches up, and log cleanup by age, which compares those
//! stamps with the wall clock, stops for as long.
//!
//! This clock stays monotonic without freezing. It follows the wall clock while they agree,
//! and otherwise moves at a rate bounded by the monotonic clock:
//! - wall clock ahead (a forward step or a correction): follow it at once when it is at most
//!   [`MAX_STEP`] ahead, otherwise chase it at double speed (so a short-lived wrong step
//!   moves commit time only a little, and a real correction is caught up with);
//! - wall clock behind (a backward step, or the undoing of a forward one): advance at half
//!   the monotonic rate, so the wall clock catches up after twice the difference.
//!
//! A [`ManualClock`] moves its wall and monotonic readings together, so a test that steps it
//! forward by an hour sees commits stamped an hour later at once.
//!
//! Log cleanup measures age with this clock too ([`CommitClock::now`]), so it compares like
//! with like and keeps running whatever the wall clock does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Where the engine reads time from. Implementations must be cheap and thread-safe.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Wall-clock time, microseconds since the Unix epoch (may step either way).
    fn wall_micros(&self) -> u64;
    /// Monotonic time since an arbitrary fixed origin (never decreases).
    fn monotonic(&self) -> Duration;
}

/// The operating system's clocks: `SystemTime` and `Instant`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn wall_micros(&self) -> u64 {
        crate::document::now_micros()
    }

    fn monotonic(&self) -> Duration {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        ORIGIN.get_or_init(Instant::now).elapsed()
    }
}

/// A clock that moves only when told: for tests of TTL, history by time and log aging.
/// Clones share the same time. Wall and monotonic time move together; [`ManualClock::set`]
/// to an earlier time steps the wall clock back and leaves monotonic time where it is.
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

#[derive(Debug)]
struct ManualInner {
    wall: AtomicU64,
    monotonic: AtomicU64,
}

impl ManualClock {
    /// A clock showing `wall_micros` (microseconds since the Unix epoch).
    pub fn new(wall_micros: u64) -> Self {
        ManualClock {
            inner: Arc::new(ManualInner {
                wall: AtomicU64::new(wall_micros),
                monotonic: AtomicU64::new(0),
            }),
        }
    }

    /// Sets the wall clock; monotonic time advances by the step when it is forward.
    pub fn set(&self, wall_micros: u64) {
        let old = self.inner.wall.swap(wall_micros, Ordering::SeqCst);
        let forward = wall_micros.saturating_sub(old);
        self.inner.monotonic.fetch_add(forward, Ordering::SeqCst);
    }

    /// Moves both clocks forward by `by`.
    pub fn advance(&self, by: Duration) {
        let us = micros(by);
        self.inner.wall.fetch_add(us, Ordering::SeqCst);
        self.inner.monotonic.fetch_add(us, Ordering::SeqCst);
    }

    /// The current wall time.
    pub fn now_micros(&self) -> u64 {
        self.inner.wall.load(Ordering::SeqCst)
    }
}

impl Clock for ManualClock {
    fn wall_micros(&self) -> u64 {
        self.now_micros()
    }

    fn monotonic(&self) -> Duration {
        Duration::from_micros(self.inner.monotonic.load(Ordering::SeqCst))
    }
}

/// Largest step forward the clock takes at once to follow the wall clock.
pub(crate) const MAX_STEP: Duration = Duration::from_secs(1);

/// The engine's clock, in microseconds since the Unix epoch.
#[derive(Debug)]
pub(crate) struct CommitClock {
    /// Where time comes from.
    source: Arc<dyn Clock>,
    /// The last reading (or commit timestamp handed out), and when (monotonic) it was taken.
    last: u64,
    last_at: Duration,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl CommitClock {
    /// A clock reading `source` that continues after `last_commit_ts` (the newest commit on
    /// disk).
    pub(crate) fn new(source: Arc<dyn Clock>, last_commit_ts: u64) -> Self {
        let (wall, at) = (source.wall_micros(), source.monotonic());
        Self::new_at(source, last_commit_ts, wall, at)
    }

    fn new_at(source: Arc<dyn Clock>, last_commit_ts: u64, wall: u64, at: Duration) -> Self {
        // Reopening starts from the wall clock, or from the last commit when the wall clock
        // is behind it (then the rules below let the wall clock catch up).
        CommitClock {
            source,
            last: wall.max(last_commit_ts),
            last_at: at,
        }
    }

    /// The current engine time (for aging the log); never decreases.
    pub(crate) fn now(&mut self) -> u64 {
        let (wall, at) = (self.source.wall_micros(), self.source.monotonic());
        self.read(wall, at)
    }

    /// The timestamp for the next commit: the current engine time, and strictly after
    /// `prev_commit_ts`.
    pub(crate) fn commit_ts(&mut self, prev_commit_ts: u64) -> u64 {
        let (wall, at) = (self.source.wall_micros(), self.source.monotonic());
        self.commit_ts_at(prev_commit_ts, wall, at)
    }

    fn commit_ts_at(&mut self, prev_commit_ts: u64, wall: u64, at: Duration) -> u64 {
        let ts = self.read(wall, at).max(prev_commit_ts.saturating_add(1));
        self.last = ts;
        ts
    }

    fn read(&mut self, wall: u64, at: Duration) -> u64 {
        let elapsed = micros(at.saturating_sub(self.last_at));
        let now = if wall >= self.last {
            if wall - self.last <= micros(MAX_STEP) {
                wall
            } else {
                wall.min(self.last.saturating_add(elapsed.saturating_mul(2)))
            }
        } else {
            self.last.saturating_add(elapsed / 2)
        };
        // Keep the fractional progress of the slow and fast rates: only move the reference
        // point when the reading moved.
        if now != self.last {
            self.last = now;
            self.last_at = at;
        }
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000;
    const T0: u64 = 1_700_000_000 * SEC;

    /// Commits every 10 ms of monotonic time for `secs`, with the wall clock given by `wall`
    /// (seconds since the start -> wall time); returns the timestamps.
    fn run(
        clock: &mut CommitClock,
        start: Duration,
        secs: u64,
        wall: impl Fn(u64) -> u64,
    ) -> Vec<u64> {
        let mut out = vec![];
        let mut prev = 0;
        for step in 0..secs * 100 {
            let at = start + Duration::from_millis(step * 10);
            let w = wall(step * 10 * 1000);
            prev = clock.commit_ts_at(prev, w, at);
            out.push(prev);
        }
        out
    }

    #[test]
    fn follows_a_steady_wall_clock() {
        let start = Duration::ZERO;
        let mut c = CommitClock::new_at(Arc::new(SystemClock), 0, T0, start);
        let ts = run(&mut c, start, 2, |us| T0 + us);
        assert_eq!(ts.first(), Some(&T0));
        assert_eq!(ts.last(), Some(&(T0 + 1_990_000)));
    }

    /// Issue 8 item 17: the wall clock jumps 50 years ahead for one second, then back.
    /// Timestamps stay strictly increasing, move only a little during the jump, and keep
    /// advancing with real time afterwards (the old `max(now, last + 1)` clamp froze them at
    /// one microsecond per commit for 50 years), so log aging keeps working.
    #[test]
    fn a_forward_clock_step_neither_freezes_nor_runs_away() {
        let start = Duration::ZERO;
        let mut c = CommitClock::new_at(Arc::new(SystemClock), 0, T0, start);
        let jump = 50 * 365 * 86_400 * SEC;
        let ts = run(&mut c, start, 20, |us| {
            if (SEC..2 * SEC).contains(&us) {
                T0 + us + jump
            } else {
                T0 + us
            }
        });
        assert!(ts.windows(2).all(|w| w[0] < w[1]), "strictly increasing");
        let after_jump = ts[200];
        assert!(
            after_jump < T0 + 2 * SEC + 4 * SEC,
            "the jump moved time only a little"
        );
        // The last 10 s of monotonic time moved commit time by seconds, not microseconds.
        let moved = ts[1999] - ts[1000];
        assert!(moved >= 4 * SEC, "moved {moved} us in 10 s");
        // And the engine converges back to the wall clock.
        let end = T0 + 19_990_000;
        assert!(ts[1999] <= end + 4 * SEC, "{} vs wall {end}", ts[1999]);
        // Aging the log reads the same clock: it advances too.
        let mut c2 = CommitClock::new_at(Arc::new(SystemClock), after_jump, T0 + 2 * SEC, start);
        let later = c2.read(T0 + 12 * SEC, start + Duration::from_secs(10));
        assert!(later >= after_jump + 5 * SEC);
    }

    #[test]
    fn a_backward_step_is_absorbed_at_half_speed() {
        let start = Duration::ZERO;
        let mut c = CommitClock::new_at(Arc::new(SystemClock), 0, T0, start);
        let ts = run(&mut c, start, 10, |us| {
            if us < SEC {
                T0 + us
            } else {
                T0 + us - 3 * SEC
            }
        });
        assert!(ts.windows(2).all(|w| w[0] < w[1]));
        // At 5 s, still ahead of the wall clock, having moved at half speed.
        assert!(
            (T0 + 2_900_000..T0 + 3_100_000).contains(&ts[499]),
            "{}",
            ts[499]
        );
        // Three seconds behind at 1 s: caught up by 9 s, then following the wall clock.
        let wall_end = T0 + 9_990_000 - 3 * SEC;
        assert!(
            ts[999].abs_diff(wall_end) <= 20_000,
            "converged: {}",
            ts[999]
        );
    }

    /// A manual clock drives commit timestamps exactly: a step forward of an hour is taken
    /// at once (wall and monotonic time move together), and timestamps stay increasing.
    #[test]
    fn a_manual_clock_stamps_commits_with_its_time() {
        let manual = ManualClock::new(T0);
        let mut c = CommitClock::new(Arc::new(manual.clone()), 0);
        assert_eq!(c.commit_ts(0), T0);
        manual.advance(Duration::from_secs(3600));
        assert_eq!(c.commit_ts(T0), T0 + 3600 * SEC);
        // Two commits at the same manual instant are a microsecond apart.
        assert_eq!(c.commit_ts(T0 + 3600 * SEC), T0 + 3600 * SEC + 1);
        manual.set(T0 + 7200 * SEC);
        assert_eq!(c.now(), T0 + 7200 * SEC);
    }

    #[test]
    fn reopening_after_a_commit_in_the_future_continues_after_it() {
        let start = Duration::ZERO;
        let future = T0 + 3_600 * SEC;
        let mut c = CommitClock::new_at(Arc::new(SystemClock), future, T0, start);
        let a = c.commit_ts_at(future, T0, start);
        let b = c.commit_ts_at(a, T0 + SEC, start + Duration::from_secs(1));
        assert!(a > future && b >= a + SEC / 2 - 1, "{a} {b}");
    }
}

//! Prometheus metrics in the text exposition format (version 0.0.4).
//!
//! Request counters and latency histograms are kept here, labelled by route template (never by
//! raw path, so keys cannot explode the series count), method and status. Engine figures
//! (commits, fsyncs, log bytes, documents per collection) are read from `Db::stats` at scrape
//! time, so they cost nothing between scrapes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<(String, String), Histogram>,
}

/// The server's own counters.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    /// Records one finished request.
    pub fn observe(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let Ok(mut m) = self.inner.lock() else { return };
        *m.requests
            .entry((route.to_owned(), method.to_owned(), status))
            .or_default() += 1;
        let h = m
            .latency
            .entry((route.to_owned(), method.to_owned()))
            .or_default();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                if let Some(c) = h.counts.get_mut(i) {
                    *c += 1;
                }
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    /// Renders every metric, engine figures included.
    pub fn render(&self, stats: &amberdb::Stats, uptime: Duration) -> String {
        let mut out = String::with_capacity(4096);
        let (requests, latency) = match self.inner.lock() {
            Ok(m) => (m.requests.clone(), m.latency.clone()),
            Err(_) => (BTreeMap::new(), BTreeMap::new()),
        };
        let _ = writeln!(out, "# HELP amberdb_http_requests_total HTTP requests by route template, method and status.");
        let _ = writeln!(out, "# TYPE amberdb_http_requests_total counter");
        for ((route, method, status), n) in &requests {
            let _ = writeln!(out, "amberdb_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}", escape(route));
        }
        let _ = writeln!(out, "# HELP amberdb_http_request_duration_seconds HTTP request latency by route template and method.");
        let _ = writeln!(
            out,
            "# TYPE amberdb_http_request_duration_seconds histogram"
        );
        for ((route, method), h) in &latency {
            let labels = format!("route=\"{}\",method=\"{method}\"", escape(route));
            for (le, c) in BUCKETS.iter().zip(h.counts.iter()) {
                let _ = writeln!(
                    out,
                    "amberdb_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {c}"
                );
            }
            let _ = writeln!(
                out,
                "amberdb_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "amberdb_http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "amberdb_http_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        let mut gauge = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        };
        gauge(
            "amberdb_commits_total",
            "counter",
            "Commits written since the database was opened.",
            stats.commits.to_string(),
        );
        gauge(
            "amberdb_fsyncs_total",
            "counter",
            "Log fsyncs since the database was opened.",
            stats.fsyncs.to_string(),
        );
        gauge(
            "amberdb_commits_per_fsync",
            "gauge",
            "Commits made durable per fsync (group commit factor).",
            stats.commits_per_fsync.to_string(),
        );
        gauge(
            "amberdb_lsn",
            "gauge",
            "LSN of the newest published commit.",
            stats.lsn.to_string(),
        );
        gauge(
            "amberdb_durable_lsn",
            "gauge",
            "Highest LSN on stable storage.",
            stats.durable_lsn.to_string(),
        );
        gauge(
            "amberdb_log_bytes",
            "gauge",
            "Bytes of commit log on disk.",
            stats.log_bytes.to_string(),
        );
        gauge(
            "amberdb_log_segments",
            "gauge",
            "Commit log segments on disk.",
            stats.log_segments.to_string(),
        );
        gauge(
            "amberdb_checkpoint_bytes",
            "gauge",
            "Bytes of checkpoints on disk.",
            stats.checkpoint_bytes.to_string(),
        );
        gauge(
            "amberdb_poisoned",
            "gauge",
            "1 when the database refuses writes after an I/O failure.",
            u8::from(stats.poisoned.is_some()).to_string(),
        );
        gauge(
            "amberdb_log_lines_dropped_total",
            "counter",
            "Log lines dropped because the log sink (stderr) was failing or not keeping up.",
            crate::logging::dropped_lines().to_string(),
        );
        if let Some(at) = stats.backup.last_backup_at_us {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(0);
            gauge(
                "amberdb_last_backup_age_seconds",
                "gauge",
                "Seconds since the last successful backup this server took.",
                format!("{:.3}", now.saturating_sub(at) as f64 / 1e6),
            );
        }
        gauge(
            "amberdb_backup_failures_total",
            "counter",
            "Scheduled backup, archive or prune attempts that failed since start.",
            stats.backup.failures.to_string(),
        );
        gauge(
            "amberdb_uptime_seconds",
            "gauge",
            "Seconds since the server started.",
            uptime.as_secs().to_string(),
        );
        let _ = writeln!(
            out,
            "# HELP amberdb_feed_commits_read_total Commits change-feed subscriptions took from \
             memory (kept up) or read from the log files (replays, laggards)."
        );
        let _ = writeln!(out, "# TYPE amberdb_feed_commits_read_total counter");
        let _ = writeln!(
            out,
            "amberdb_feed_commits_read_total{{source=\"memory\"}} {}",
            stats.feed_commits_from_memory
        );
        let _ = writeln!(
            out,
            "amberdb_feed_commits_read_total{{source=\"log\"}} {}",
            stats.feed_commits_from_log
        );
        let _ = writeln!(
            out,
            "# HELP amberdb_documents Live documents per collection."
        );
        let _ = writeln!(out, "# TYPE amberdb_documents gauge");
        for c in &stats.collections {
            let _ = writeln!(
                out,
                "amberdb_documents{{collection=\"{}\"}} {}",
                escape(&c.name),
                c.documents
            );
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative() {
        let m = Metrics::default();
        m.observe("/v1/x", "GET", 200, Duration::from_micros(300));
        m.observe("/v1/x", "GET", 404, Duration::from_millis(30));
        let dir = tempfile::tempdir().expect("tempdir");
        let db = amberdb::Db::open(dir.path()).expect("open");
        db.put("players", "a", serde_json::json!(1)).expect("put");
        let stats = db.stats();
        let text = m.render(&stats, Duration::from_secs(1));
        assert!(
            text.contains(
                "amberdb_http_requests_total{route=\"/v1/x\",method=\"GET\",status=\"404\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("le=\"0.0005\"} 1"), "{text}");
        assert!(text.contains("le=\"0.05\"} 2"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 2"), "{text}");
        assert!(
            text.contains("amberdb_documents{collection=\"players\"} 1"),
            "{text}"
        );
    }
}

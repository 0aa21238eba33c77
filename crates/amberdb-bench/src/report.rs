//! Results: samples per engine and metric, their summary, and the markdown and JSON output.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::machine::Machine;

/// One engine's (or reference's) samples of one metric, one per repetition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// Engine or reference name.
    pub name: String,
    /// A reference row (raw disk, raw data size), not an engine.
    pub reference: bool,
    /// One value per repetition.
    pub samples: Vec<f64>,
}

impl Row {
    /// The median sample (mean of the middle two for an even count).
    pub fn median(&self) -> f64 {
        let mut s = self.samples.clone();
        s.sort_by(f64::total_cmp);
        match s.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => s.get(n / 2).copied().unwrap_or(f64::NAN),
            n => {
                let a = s.get(n / 2 - 1).copied().unwrap_or(f64::NAN);
                let b = s.get(n / 2).copied().unwrap_or(f64::NAN);
                (a + b) / 2.0
            }
        }
    }

    /// Smallest sample.
    pub fn min(&self) -> f64 {
        self.samples.iter().copied().fold(f64::INFINITY, f64::min)
    }

    /// Largest sample.
    pub fn max(&self) -> f64 {
        self.samples
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
    }
}

/// One measured quantity of a workload, for every engine.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metric {
    /// What is measured.
    pub name: String,
    /// Unit of the samples.
    pub unit: String,
    /// Whether a larger number is better (throughput) or worse (time, bytes).
    pub higher_is_better: bool,
    /// The engines' and references' rows.
    pub rows: Vec<Row>,
}

impl Metric {
    /// An empty metric.
    pub fn new(name: &str, unit: &str, higher_is_better: bool) -> Metric {
        Metric {
            name: name.into(),
            unit: unit.into(),
            higher_is_better,
            rows: vec![],
        }
    }

    /// Adds a sample to the named row, creating it on first use.
    pub fn add(&mut self, name: &str, reference: bool, value: f64) {
        match self.rows.iter_mut().find(|r| r.name == name) {
            Some(r) => r.samples.push(value),
            None => self.rows.push(Row {
                name: name.into(),
                reference,
                samples: vec![value],
            }),
        }
    }

    /// The row of this name.
    pub fn row(&self, name: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.name == name)
    }

    /// Median of AmberDB divided by median of `other` (the ratio column).
    pub fn ratio(&self, other: &str) -> Option<f64> {
        let a = self.row("AmberDB")?.median();
        let b = self.row(other)?.median();
        (b != 0.0 && a.is_finite() && b.is_finite()).then(|| a / b)
    }
}

/// One workload's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkloadReport {
    /// Workload number (1..=8, as in the issue).
    pub number: u8,
    /// Short id used by `--only`.
    pub id: String,
    /// Title.
    pub title: String,
    /// Sizes and configurations, printed under the table.
    pub notes: Vec<String>,
    /// The measured metrics.
    pub metrics: Vec<Metric>,
}

/// A whole run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The exact command line.
    pub command: String,
    /// Scale of the run (full, quick, tiny).
    pub scale: String,
    /// Where and on what it ran.
    pub machine: Machine,
    /// Wall time of the whole run, seconds.
    pub elapsed_secs: f64,
    /// Results per workload.
    pub workloads: Vec<WorkloadReport>,
}

/// Formats a number with about four significant digits and thousands separators.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let a = v.abs();
    if a >= 1000.0 {
        let s = format!("{:.0}", v.abs());
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if v < 0.0 {
            out.insert(0, '-');
        }
        out
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn fmt_ratio(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}×")
    } else {
        format!("{r:.2}×")
    }
}

impl WorkloadReport {
    /// The workload's markdown section: a table (metric, engine, median, min–max, unit,
    /// ratio AmberDB/engine) and its notes.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "### {}. {}\n", self.number, self.title);
        let _ = writeln!(
            s,
            "| metric | engine | median | min–max | unit | AmberDB / engine |"
        );
        let _ = writeln!(s, "|---|---|---:|---:|---|---:|");
        for m in &self.metrics {
            let better = if m.higher_is_better {
                "higher is better"
            } else {
                "lower is better"
            };
            for (i, r) in m.rows.iter().enumerate() {
                let metric = if i == 0 {
                    format!("{} ({better})", m.name)
                } else {
                    String::new()
                };
                let name = if r.reference {
                    format!("*{}*", r.name)
                } else {
                    r.name.clone()
                };
                let ratio = if r.name == "AmberDB" {
                    "—".to_string()
                } else {
                    m.ratio(&r.name).map_or("n/a".into(), fmt_ratio)
                };
                let range = if r.samples.len() > 1 {
                    format!("{}–{}", fmt_num(r.min()), fmt_num(r.max()))
                } else {
                    "(1 run)".into()
                };
                let _ = writeln!(
                    s,
                    "| {metric} | {name} | {} | {range} | {} | {ratio} |",
                    fmt_num(r.median()),
                    m.unit
                );
            }
        }
        if !self.notes.is_empty() {
            s.push('\n');
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s
    }

    /// The metric of this name.
    pub fn metric(&self, name: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.name == name)
    }
}

/// The row name of AmberDB with encryption at rest.
const ENCRYPTED: &str = "AmberDB (encrypted)";

/// A target of the issue and whether this run met it.
#[derive(Debug, Clone)]
pub struct Target {
    /// What is required.
    pub what: String,
    /// The measured ratio, if the workload ran.
    pub measured: Option<f64>,
    /// The required ratio.
    pub required: f64,
}

impl Report {
    fn workload(&self, number: u8) -> Option<&WorkloadReport> {
        self.workloads.iter().find(|w| w.number == number)
    }

    /// The performance targets, checked against this run's medians.
    pub fn targets(&self) -> Vec<Target> {
        let ratio = |w: u8, metric: &str, other: &str| {
            self.workload(w)
                .and_then(|w| w.metric(metric))
                .and_then(|m| m.ratio(other))
        };
        vec![
            Target {
                what: "16 durable writers: AmberDB ≥ 2× SQLite commits/s".into(),
                measured: ratio(2, "throughput", "SQLite"),
                required: 2.0,
            },
            Target {
                what: "16 durable writers: AmberDB ≥ redb commits/s".into(),
                measured: ratio(2, "throughput", "redb"),
                required: 1.0,
            },
            Target {
                what: "point reads, 1 thread: AmberDB ≥ 5× SQLite".into(),
                measured: ratio(5, "1 thread", "SQLite"),
                required: 5.0,
            },
            Target {
                what: "point reads, 2 threads: AmberDB ≥ 5× SQLite".into(),
                measured: ratio(5, "2 threads", "SQLite"),
                required: 5.0,
            },
            Target {
                what: "1 durable writer: AmberDB within 1.25× of raw append+fdatasync".into(),
                measured: ratio(1, "throughput", "raw disk: append + fdatasync"),
                required: 1.0 / 1.25,
            },
            // Encryption at rest (issue 12): encrypted / plain, so these read "speed kept".
            Target {
                what: "1 durable writer: encrypted ≥ 0.95× plain AmberDB commits/s".into(),
                measured: ratio(1, "throughput", ENCRYPTED).map(|r| 1.0 / r),
                required: 0.95,
            },
            Target {
                what: "16 durable writers: encrypted ≥ 0.95× plain AmberDB commits/s".into(),
                measured: ratio(2, "throughput", ENCRYPTED).map(|r| 1.0 / r),
                required: 0.95,
            },
            Target {
                what: "reopen after clean close: encrypted ≥ 0.8× plain AmberDB speed".into(),
                // Times: plain / encrypted is the encrypted reopen's speed relative to plain.
                measured: ratio(7, "reopen after clean close", ENCRYPTED),
                required: 0.8,
            },
        ]
    }

    /// The whole run as markdown: machine, command, a table per workload, targets.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let m = &self.machine;
        let _ = writeln!(s, "## Results ({} run)\n", self.scale);
        let _ = writeln!(s, "Command: `{}`\n", self.command);
        let _ = writeln!(
            s,
            "Machine: {} cores ({}), {} memory, {} filesystem on {} (`df -T`), Linux {}. \
             Load average at start {}, at end {}. Run took {:.0} s.\n",
            m.cores,
            m.cpu_model,
            m.memory,
            m.filesystem,
            m.device,
            m.kernel,
            m.load_start,
            m.load_end,
            self.elapsed_secs
        );
        for w in &self.workloads {
            s.push_str(&w.markdown());
            s.push('\n');
        }
        let targets = self.targets();
        if targets.iter().any(|t| t.measured.is_some()) {
            let _ = writeln!(s, "### Targets\n");
            let _ = writeln!(s, "| target | AmberDB / other (median) | met |");
            let _ = writeln!(s, "|---|---:|---|");
            for t in targets {
                let Some(r) = t.measured else { continue };
                let met = if r >= t.required { "yes" } else { "**no**" };
                let _ = writeln!(s, "| {} | {} | {met} |", t.what, fmt_ratio(r));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_formatting() {
        let r = Row {
            name: "x".into(),
            reference: false,
            samples: vec![3.0, 1.0, 2.0, 10.0],
        };
        assert_eq!(r.median(), 2.5);
        assert_eq!(r.min(), 1.0);
        assert_eq!(r.max(), 10.0);
        assert_eq!(fmt_num(1_234_567.4), "1,234,567");
        assert_eq!(fmt_num(999.6), "1000");
        assert_eq!(fmt_num(12.345), "12.3");
        assert_eq!(fmt_num(0.01234), "0.012");
    }
}

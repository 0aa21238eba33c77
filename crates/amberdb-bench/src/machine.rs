//! What the run ran on: cores, CPU, memory, filesystem, kernel, load. Linux `/proc` and `df`.

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

/// The machine description printed with every table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    /// Logical cores available to this process.
    pub cores: usize,
    /// `model name` from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// `MemTotal` from `/proc/meminfo`, in GiB.
    pub memory: String,
    /// Filesystem type of the benchmark directory (`df -T`).
    pub filesystem: String,
    /// Device of the benchmark directory (`df -T`).
    pub device: String,
    /// Kernel release.
    pub kernel: String,
    /// `/proc/loadavg` (1, 5, 15 minutes) when the run started.
    pub load_start: String,
    /// `/proc/loadavg` when the run ended.
    pub load_end: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

impl Machine {
    /// Describes this machine and the filesystem holding `dir`.
    pub fn describe(dir: &Path) -> Machine {
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']))
            })
            .unwrap_or("unknown")
            .trim()
            .to_string();
        let memory = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or("unknown".into(), |kib| {
                format!("{:.1} GiB", kib / (1024.0 * 1024.0))
            });
        let df = Command::new("df")
            .arg("-T")
            .arg(dir)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let fields: Vec<&str> = df.lines().nth(1).unwrap_or("").split_whitespace().collect();
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            memory,
            filesystem: fields.get(1).unwrap_or(&"unknown").to_string(),
            device: fields.first().unwrap_or(&"unknown").to_string(),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            load_start: loadavg(),
            load_end: String::new(),
        }
    }
}

/// Peak resident set size of this process so far (`VmHWM`), in KiB.
pub fn peak_rss_kib() -> u64 {
    read("/proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Bytes a directory tree occupies on disk (allocated blocks) and its files' total length.
pub fn disk_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut allocated = 0;
    let mut apparent = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                allocated += m.blocks() * 512;
                apparent += m.len();
            }
        }
    }
    (allocated, apparent)
}

//! The raw-disk reference: what one writer can get from this disk with no database at all.
//!
//! `append` is a loop of `write` + `fdatasync` of the same bytes a durable single-document
//! commit stores, to a file that grows, like a log. `overwrite` writes the same bytes over a
//! file that was already written and synced, so `fdatasync` has no size or extent change to
//! journal (what a recycled, pre-written log segment or SQLite's reused WAL gets).

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::Result;

/// Appends each payload and `fdatasync`s after each; returns the elapsed time.
pub fn append(dir: &Path, payloads: &[Vec<u8>]) -> Result<Duration> {
    let path = dir.join("raw-append.log");
    let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
    f.sync_all()?;
    File::open(dir)?.sync_all()?;
    let t = Instant::now();
    for p in payloads {
        f.write_all(p)?;
        f.sync_data()?;
    }
    Ok(t.elapsed())
}

/// Writes each payload sequentially over a pre-written, synced file and `fdatasync`s after
/// each; returns the elapsed time (the pre-writing is not timed).
pub fn overwrite(dir: &Path, payloads: &[Vec<u8>]) -> Result<Duration> {
    let path = dir.join("raw-overwrite.log");
    let total: usize = payloads.iter().map(Vec::len).sum();
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    let zeros = vec![0u8; 1 << 20];
    let mut left = total;
    while left > 0 {
        let n = left.min(zeros.len());
        f.write_all(zeros.get(..n).unwrap_or_default())?;
        left -= n;
    }
    f.sync_all()?;
    File::open(dir)?.sync_all()?;
    f.seek(SeekFrom::Start(0))?;
    let t = Instant::now();
    for p in payloads {
        f.write_all(p)?;
        f.sync_data()?;
    }
    Ok(t.elapsed())
}

//! Blob upload and download throughput against a raw file copy on the same disk.
//!
//! `blob-bench [--mib N] [--runs R] [--dir PATH]`: writes a file of N MiB of random bytes,
//! then per run: copies it with plain `std::fs` (read, write, fsync: the floor any durable
//! store pays), uploads it with `Db::put_blob` (stream, SHA-256, temp file, fsync, rename,
//! directory fsyncs, one logged commit), and downloads it with `Db::open_blob` into a new file
//! (also fsynced), then the same upload and download with encryption at rest on (blob files
//! sealed in 64 KiB AES-256-GCM units). Prints MB/s of each and the ratio to the raw copy,
//! and the sealed figures as ratios to the plaintext ones, best of R runs.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use amberdb::{BlobUpload, Db};
use clap::Parser;
use rand::RngCore;

#[derive(Parser)]
struct Args {
    /// Size of the blob in MiB.
    #[arg(long, default_value_t = 256)]
    mib: usize,
    /// Runs; the best of each is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Directory on the disk to measure (default: a temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn raw_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut src = std::fs::File::open(from)?;
    let mut dst = std::fs::File::create(to)?;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        dst.write_all(&buf[..n])?;
    }
    dst.sync_all()
}

fn mbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / secs
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = Args::parse();
    let tmp = tempfile::tempdir_in(a.dir.clone().unwrap_or_else(std::env::temp_dir))?;
    let src = tmp.path().join("source.bin");
    {
        let mut f = std::fs::File::create(&src)?;
        let mut chunk = vec![0u8; 1 << 20];
        for _ in 0..a.mib {
            rand::rng().fill_bytes(&mut chunk);
            f.write_all(&chunk)?;
        }
        f.sync_all()?;
    }
    let bytes = (a.mib as u64) << 20;
    let mut copy = f64::MAX;
    // (upload, download) seconds, plaintext and sealed.
    let mut best = [(f64::MAX, f64::MAX); 2];
    for run in 0..a.runs {
        let t = Instant::now();
        raw_copy(&src, &tmp.path().join(format!("copy{run}.bin")))?;
        copy = copy.min(t.elapsed().as_secs_f64());
        let _ = std::fs::remove_file(tmp.path().join(format!("copy{run}.bin")));
        for (sealed, slot) in best.iter_mut().enumerate() {
            let data = tmp.path().join(format!("db{run}-{sealed}"));
            let opts = amberdb::Options {
                encryption: (sealed == 1).then(amberdb_bench::engines::bench_keyring),
                ..amberdb::Options::default()
            };
            let db = Db::open_with(&data, opts)?;
            let t = Instant::now();
            let mut f = std::fs::File::open(&src)?;
            let (_, info) = db.put_blob("bench", "blob", &mut f, &BlobUpload::default(), None)?;
            slot.0 = slot.0.min(t.elapsed().as_secs_f64());

            let t = Instant::now();
            let mut r = db.open_blob(&info)?;
            let down = tmp.path().join(format!("down{run}.bin"));
            let mut out = std::fs::File::create(&down)?;
            std::io::copy(&mut r, &mut out)?;
            out.sync_all()?;
            slot.1 = slot.1.min(t.elapsed().as_secs_f64());
            db.close()?;
            let _ = std::fs::remove_file(&down);
            let _ = std::fs::remove_dir_all(&data);
        }
    }
    let [(up, down), (sealed_up, sealed_down)] = best;
    let c = mbps(bytes, copy);
    println!("blob of {} MiB, best of {} runs", a.mib, a.runs);
    println!("raw file copy (read+write+fsync): {c:8.1} MB/s  1.00x");
    println!(
        "upload   (Db::put_blob)         : {:8.1} MB/s  {:.2}x",
        mbps(bytes, up),
        mbps(bytes, up) / c
    );
    println!(
        "download (Db::open_blob to file): {:8.1} MB/s  {:.2}x",
        mbps(bytes, down),
        mbps(bytes, down) / c
    );
    println!(
        "upload, sealed                  : {:8.1} MB/s  {:.2}x  ({:.2}x of plaintext upload)",
        mbps(bytes, sealed_up),
        mbps(bytes, sealed_up) / c,
        up / sealed_up
    );
    println!(
        "download, sealed                : {:8.1} MB/s  {:.2}x  ({:.2}x of plaintext download)",
        mbps(bytes, sealed_down),
        mbps(bytes, sealed_down) / c,
        down / sealed_down
    );
    Ok(())
}

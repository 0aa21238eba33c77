//! `amberdb blob put|get|rm|ls|gc`: binary blobs, in a data directory or through a server, with
//! a progress bar on large transfers (both directions stream; nothing is held whole).

use std::io::{Read, Write};
use std::path::PathBuf;

use amberdb::backup::Progress;
use amberdb::{BlobUpload, ListOptions};

use super::{print_json, Target, TargetArgs};
use crate::client::segment;
use crate::exit::{CliError, CliResult, ERROR, NOT_FOUND};
use crate::progress::CliProgress;

/// Transfers at least this large show a progress bar.
const PROGRESS_FROM: u64 = 8 << 20;

#[derive(clap::Subcommand, Debug)]
pub enum Blob {
    /// Upload a file (or stdin) as a blob; prints its metadata.
    #[command(
        after_help = "Examples:\n  amberdb blob put --data ./db cards alice.png ./alice.png --content-type image/png\n  cat replay.bin | amberdb blob put --url http://127.0.0.1:7070 replays m42 -"
    )]
    Put(PutArgs),
    /// Download a blob to a file (or stdout).
    Get(GetArgs),
    /// Delete a blob (exit 3 when it did not exist).
    Rm(KeyArgs),
    /// List a collection's blobs with their metadata.
    Ls(LsArgs),
    /// Remove blob files nothing needs any more; prints what it kept and removed.
    #[command(
        long_about = "Remove blob files nothing needs any more; prints what it kept and removed.\n\nA blob file is kept while a live blob, a blob write still in the data directory's log (the history window: history, as-of reads, revert and undo need those versions) or a staged upload younger than an hour names it. Backups keep their own copies in the backup repository. A server (and any open database) also runs this every blobs.gc_interval_s (default 600 s).",
        after_help = "Examples:\n  amberdb blob gc --data ./db\n  amberdb blob gc --url http://127.0.0.1:7070 --token $ADMIN_TOKEN"
    )]
    Gc(GcArgs),
}

#[derive(clap::Args, Debug)]
pub struct GcArgs {
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(clap::Args, Debug)]
pub struct PutArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Collection name.
    pub collection: String,
    /// Blob key.
    pub key: String,
    /// The file to upload; `-` reads stdin.
    pub file: PathBuf,
    /// Content type stored with the blob (default application/octet-stream).
    #[arg(long)]
    pub content_type: Option<String>,
    /// Only if the blob is at this version (0 = must not exist).
    #[arg(long, value_name = "N")]
    pub if_version: Option<u64>,
}

#[derive(clap::Args, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Collection name.
    pub collection: String,
    /// Blob key.
    pub key: String,
    /// Write here instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct KeyArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Collection name.
    pub collection: String,
    /// Blob key.
    pub key: String,
}

#[derive(clap::Args, Debug)]
pub struct LsArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Collection name.
    pub collection: String,
    /// Only keys starting with this prefix.
    #[arg(long)]
    pub prefix: Option<String>,
    /// At most this many (default 100).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

/// Counts bytes through a reader or writer into a progress bar.
struct Counted<'a, T> {
    inner: T,
    progress: &'a dyn Progress,
}

impl<T: Read> Read for Counted<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

impl<T: Write> Write for Counted<'_, T> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn progress_for(size: Option<u64>) -> CliProgress {
    CliProgress::new(size.is_none_or(|s| s < PROGRESS_FROM))
}

fn blob_path(collection: &str, key: &str) -> String {
    format!(
        "/v1/collections/{}/blobs/{}",
        segment(collection),
        segment(key)
    )
}

fn info_json(b: &amberdb::BlobInfo) -> serde_json::Value {
    serde_json::json!({
        "key": b.key, "sha256": b.sha256_hex(), "size": b.size, "content_type": b.content_type,
        "version": b.version, "lsn": b.lsn,
        "created_at": amberdb::format_micros(b.created_at),
        "updated_at": amberdb::format_micros(b.updated_at),
    })
}

pub fn run(b: Blob) -> CliResult {
    match b {
        Blob::Put(a) => put(a),
        Blob::Get(a) => get(a),
        Blob::Rm(a) => rm(a),
        Blob::Ls(a) => ls(a),
        Blob::Gc(a) => gc(a),
    }
}

fn put(a: PutArgs) -> CliResult {
    let stdin = a.file.as_os_str() == "-";
    let size = if stdin {
        None
    } else {
        std::fs::metadata(&a.file).ok().map(|m| m.len())
    };
    let mut source: Box<dyn Read> = if stdin {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(
            std::fs::File::open(&a.file)
                .map_err(|e| CliError::usage(format!("cannot read {}: {e}", a.file.display())))?,
        )
    };
    let progress = progress_for(size);
    progress.begin(&format!("uploading {}/{}", a.collection, a.key), size);
    let mut body = Counted {
        inner: &mut source,
        progress: &progress,
    };
    match a.target.open()? {
        Target::Local(db) => {
            let upload = BlobUpload {
                content_type: a.content_type.clone(),
                expected_sha256: None,
            };
            let (_, info) = db.put_blob(&a.collection, &a.key, &mut body, &upload, a.if_version)?;
            progress.end();
            print_json(&info_json(&info));
            db.close()?;
        }
        Target::Remote(client) => {
            amberdb::validate_collection(&a.collection)?;
            amberdb::validate_key(&a.key)?;
            let mut headers = vec![(
                "content-type",
                a.content_type
                    .clone()
                    .unwrap_or_else(|| "application/octet-stream".into()),
            )];
            match a.if_version {
                Some(0) => headers.push(("if-none-match", "*".to_string())),
                Some(v) => headers.push(("if-match", format!("\"{v}\""))),
                None => {}
            }
            let r = client.send_reader(
                "PUT",
                &blob_path(&a.collection, &a.key),
                &headers,
                &mut body,
            )?;
            progress.end();
            print_json(&crate::client::check(r)?.json()?);
        }
    }
    Ok(())
}

fn get(a: GetArgs) -> CliResult {
    let mut out: Box<dyn Write> = match &a.output {
        Some(p) => Box::new(
            std::fs::File::create(p)
                .map_err(|e| CliError::usage(format!("cannot write {}: {e}", p.display())))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let not_found = || CliError::new(NOT_FOUND, format!("no blob {}/{}", a.collection, a.key));
    match a.target.open_existing()? {
        Target::Local(db) => {
            let info = db.blob(&a.collection, &a.key).ok_or_else(not_found)?;
            let progress = progress_for(Some(info.size));
            progress.begin(
                &format!("downloading {}/{}", a.collection, a.key),
                Some(info.size),
            );
            let mut r = db.open_blob(&info)?;
            let mut w = Counted {
                inner: &mut out,
                progress: &progress,
            };
            std::io::copy(&mut r, &mut w)
                .map_err(|e| CliError::new(ERROR, format!("copying the blob: {e}")))?;
            progress.end();
            db.close()?;
        }
        Target::Remote(client) => {
            amberdb::validate_collection(&a.collection)?;
            amberdb::validate_key(&a.key)?;
            let progress = CliProgress::new(a.output.is_none());
            client.download(&blob_path(&a.collection, &a.key), &mut out, &progress)?;
        }
    }
    out.flush()
        .map_err(|e| CliError::new(ERROR, format!("writing the blob: {e}")))?;
    Ok(())
}

fn rm(a: KeyArgs) -> CliResult {
    let deleted = match a.target.open()? {
        Target::Local(db) => {
            let c = db.delete_blob(&a.collection, &a.key)?;
            db.close()?;
            c.results.first().is_some_and(|r| r.written)
        }
        Target::Remote(client) => {
            amberdb::validate_collection(&a.collection)?;
            amberdb::validate_key(&a.key)?;
            let r = client.call("DELETE", &blob_path(&a.collection, &a.key), &[], None)?;
            r.json()?["deleted"].as_bool().unwrap_or(false)
        }
    };
    if !deleted {
        return Err(CliError::new(
            NOT_FOUND,
            format!("no blob {}/{}", a.collection, a.key),
        ));
    }
    Ok(())
}

fn ls(a: LsArgs) -> CliResult {
    match a.target.open_existing()? {
        Target::Local(db) => {
            let opts = ListOptions {
                prefix: a.prefix.clone(),
                limit: a.limit,
                ..ListOptions::default()
            };
            let (blobs, next) = db.list_blobs(&a.collection, &opts)?;
            print_json(&serde_json::json!({
                "blobs": blobs.iter().map(info_json).collect::<Vec<_>>(),
                "next": next,
            }));
            db.close()?;
        }
        Target::Remote(client) => {
            amberdb::validate_collection(&a.collection)?;
            let mut path = format!(
                "/v1/collections/{}/blobs?limit={}",
                segment(&a.collection),
                a.limit
            );
            if let Some(p) = &a.prefix {
                path.push_str(&format!("&prefix={}", segment(p)));
            }
            print_json(&client.call("GET", &path, &[], None)?.json()?);
        }
    }
    Ok(())
}

fn gc(a: GcArgs) -> CliResult {
    match a.target.open_existing()? {
        Target::Local(db) => {
            let r = db.gc_blobs()?;
            db.close()?;
            print_json(&serde_json::to_value(&r).unwrap_or_default());
        }
        Target::Remote(client) => {
            let r = client.call("POST", "/v1/admin/blobs/gc", &[], None)?;
            print_json(&r.json()?);
        }
    }
    Ok(())
}

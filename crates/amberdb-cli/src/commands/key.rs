//! `amberdb key id|status|rotate` (issue 12): which key a key file is, which key ids a data
//! directory and a repository still need (so an old key is destroyed only when nothing does),
//! and retiring old keys by re-sealing a data directory with a new one.

use std::path::PathBuf;

use super::{print_json, KeyArgs};
use crate::exit::{CliError, CliResult};

#[derive(clap::Subcommand, Debug)]
pub enum Key {
    /// Print the key id of each --key-file (or of AMBERDB_ENCRYPTION_KEY): the 8 hex digits
    /// errors and headers name. Reveals nothing about the key.
    Id(IdArgs),
    /// List the key ids the files of a data directory (and, with --repo, the backups of a
    /// repository) are sealed with. Reads headers and manifests only: no key is needed.
    Status(StatusArgs),
    /// Re-seal a data directory (offline: no server may have it open) with --new-key: every
    /// checkpoint and log segment sealed with another key is rewritten, durably and
    /// crash-safe (run it again to finish an interrupted one). Give the keys the files are
    /// sealed with now as --key-file. Backups keep the key they were written with.
    Rotate(RotateArgs),
    /// Turn encryption on for an existing data directory (offline): every checkpoint and log
    /// segment is re-sealed with --key-file (the first, if repeated). Crash-safe; run it again
    /// to finish an interrupted one. Backups taken before stay plaintext.
    Encrypt(DirKeyArgs),
    /// Turn encryption off for a data directory (offline): every checkpoint and log segment
    /// is written plaintext; afterwards it opens without a key. Crash-safe; run it again to
    /// finish an interrupted one. Backups keep their key.
    Decrypt(DirKeyArgs),
}

#[derive(clap::Args, Debug)]
pub struct DirKeyArgs {
    /// The data directory.
    #[arg(long, env = "AMBERDB_DATA", value_name = "DIR")]
    pub data: PathBuf,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Print the report as JSON only (no progress lines).
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct RotateArgs {
    /// The data directory.
    #[arg(long, env = "AMBERDB_DATA", value_name = "DIR")]
    pub data: PathBuf,
    /// The key to seal everything with from now on (32 raw bytes or their base64).
    #[arg(long, value_name = "FILE")]
    pub new_key: PathBuf,
    /// The keys the directory is sealed with now (repeatable).
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Print the report as JSON only (no progress lines).
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct IdArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The data directory.
    #[arg(long, env = "AMBERDB_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// A backup repository (its backups' manifests name their key ids; archived segments'
    /// key ids are listed by `amberdb backup verify --read-data`).
    #[arg(long, env = "AMBERDB_REPO", value_name = "DIR")]
    pub repo: Option<PathBuf>,
}

/// The keyring of a rotation: the new key first, then the old ones (the new key given again
/// as an old one is left out, so re-running a finished rotation with the same files works).
fn rotation_keyring(a: &RotateArgs) -> Result<amberdb::crypto::Keyring, CliError> {
    let new = amberdb::crypto::Key::from_file(&a.new_key)?;
    let mut keys = vec![new.clone()];
    if let Some(old) = a.keys.keyring()? {
        for id in old.key_ids() {
            if let Some(k) = old.get(id).filter(|_| id != new.id()) {
                keys.push(k.clone());
            }
        }
    }
    Ok(amberdb::crypto::Keyring::new(keys)?)
}

fn rotate(a: RotateArgs) -> CliResult {
    let ring = rotation_keyring(&a)?;
    let db = amberdb::Db::open_with(
        &a.data,
        amberdb::Options {
            encryption: Some(ring),
            ..super::existing_only()
        },
    )?;
    let progress = crate::progress::CliProgress::new(a.json);
    let report = db.rotate_keys(&progress);
    let closed = db.close();
    let report = report?;
    closed?;
    print_report(&report, a.json);
    Ok(())
}

fn print_report(report: &amberdb::crypto::RotationReport, json: bool) {
    if !json {
        eprintln!(
            "re-sealed {} checkpoint(s), {} log segment(s) and {} blob file(s) as {}; the data \
             directory now needs key id(s): {}",
            report.checkpoints_rewritten,
            report.segments_rewritten,
            report.blobs_rewritten,
            report.key_id,
            if report.key_ids_in_use.is_empty() {
                "none".to_owned()
            } else {
                report.key_ids_in_use.join(", ")
            }
        );
    }
    print_json(&serde_json::to_value(report).unwrap_or_default());
}

fn encrypt_or_decrypt(a: DirKeyArgs, encrypt: bool) -> CliResult {
    let Some(ring) = a.keys.keyring()? else {
        return Err(CliError::usage(
            "give the key: --key-file FILE (or AMBERDB_ENCRYPTION_KEY)",
        ));
    };
    let progress = crate::progress::CliProgress::new(a.json);
    let report = if encrypt {
        amberdb::crypto::encrypt_dir(&a.data, ring, &progress)?
    } else {
        amberdb::crypto::decrypt_dir(&a.data, ring, &progress)?
    };
    print_report(&report, a.json);
    Ok(())
}

pub fn run(k: Key) -> CliResult {
    match k {
        Key::Rotate(a) => rotate(a),
        Key::Encrypt(a) => encrypt_or_decrypt(a, true),
        Key::Decrypt(a) => encrypt_or_decrypt(a, false),
        Key::Id(a) => {
            let Some(ring) = a.keys.keyring()? else {
                return Err(CliError::usage(
                    "give a key: --key-file FILE (or AMBERDB_ENCRYPTION_KEY)",
                ));
            };
            for id in ring.key_ids() {
                println!("{id}");
            }
            Ok(())
        }
        Key::Status(a) => {
            if a.data.is_none() && a.repo.is_none() {
                return Err(CliError::usage(
                    "say what to look at: --data DIR and/or --repo DIR",
                ));
            }
            let mut out = serde_json::Map::new();
            if let Some(d) = &a.data {
                let ids = amberdb::crypto::key_ids_in_dir(d)?;
                out.insert(
                    "data".into(),
                    serde_json::json!(ids
                        .iter()
                        .map(|(id, file)| serde_json::json!({
                            "key_id": id.to_string(),
                            "example_file": file.display().to_string(),
                        }))
                        .collect::<Vec<_>>()),
                );
            }
            if let Some(r) = &a.repo {
                let repo = amberdb::BackupRepo::open(r)?;
                let mut ids: Vec<String> = repo
                    .list()?
                    .iter()
                    .filter_map(|m| m.key_id)
                    .map(|k| format!("{k:08x}"))
                    .collect();
                ids.sort();
                ids.dedup();
                out.insert("repo_backups".into(), serde_json::json!(ids));
            }
            print_json(&serde_json::Value::Object(out));
            Ok(())
        }
    }
}

//! `amberdb key id|status` (issue 12): which key a key file is, and which key ids a data
//! directory and a repository still need (so an old key is destroyed only when nothing does).

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

pub fn run(k: Key) -> CliResult {
    match k {
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

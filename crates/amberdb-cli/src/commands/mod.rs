//! One module per `amberdb` command, plus the argument pieces they share.

pub mod backup;
pub mod bench;
pub mod blob;
pub mod checkpoint;
pub mod delete;
pub mod get;
pub mod history;
pub mod key;
pub mod list;
pub mod log;
pub mod migrate;
pub mod put;
pub mod restore;
pub mod revert;
pub mod serve;
pub mod spec;
pub mod stats;
pub mod token;
pub mod txn;
pub mod verify;

use std::io::Read;
use std::path::PathBuf;

use amberdb::{Db, Durability};

use crate::exit::CliError;

/// `--data DIR`, shared by every command that opens a data directory.
#[derive(clap::Args, Debug, Clone)]
pub struct DataArgs {
    /// The data directory.
    #[arg(long, env = "AMBERDB_DATA", value_name = "DIR")]
    pub data: PathBuf,
    #[command(flatten)]
    pub keys: KeyArgs,
}

impl DataArgs {
    /// Opens the database in `--data`; a directory that is not one (missing, a backup
    /// repository, anything else) is an error and is never written into.
    pub fn open(&self) -> Result<Db, CliError> {
        Ok(Db::open_with(
            &self.data,
            self.keys.options(existing_only())?,
        )?)
    }
}

/// `--key-file FILE` (issue 12): the keys of an encrypted data directory or repository.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KeyArgs {
    /// Encryption key file: 32 raw bytes, or their base64. Repeat it for a keyring: the
    /// first key encrypts new files, every one decrypts. Without it, the base64 key in
    /// AMBERDB_ENCRYPTION_KEY is used when set.
    #[arg(long = "key-file", value_name = "FILE")]
    pub key_files: Vec<PathBuf>,
}

impl KeyArgs {
    /// The keyring given, `None` for an unencrypted database.
    pub fn keyring(&self) -> Result<Option<amberdb::crypto::Keyring>, CliError> {
        let mut keys = self
            .key_files
            .iter()
            .map(|p| amberdb::crypto::Key::from_file(p))
            .collect::<amberdb::Result<Vec<_>>>()?;
        if keys.is_empty() {
            if let Some(k) = amberdb::crypto::Key::from_env()? {
                keys.push(k);
            }
        }
        if keys.is_empty() {
            return Ok(None);
        }
        Ok(Some(amberdb::crypto::Keyring::new(keys)?))
    }

    /// `opts` with the keyring given.
    pub fn options(&self, opts: amberdb::Options) -> Result<amberdb::Options, CliError> {
        Ok(amberdb::Options {
            encryption: self.keyring()?,
            ..opts
        })
    }
}

/// Engine options for commands that work on an existing database only.
pub fn existing_only() -> amberdb::Options {
    amberdb::Options {
        create_if_missing: false,
        ..Default::default()
    }
}

/// Where a document command works: directly on a data directory (`--data`), or through a
/// running server (`--url`, with `--token` when it needs one).
#[derive(clap::Args, Debug, Clone)]
pub struct TargetArgs {
    /// The data directory (opened directly; fails while a server has it open).
    #[arg(long, env = "AMBERDB_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// A running server, e.g. http://127.0.0.1:7070.
    #[arg(long, env = "AMBERDB_URL", value_name = "URL")]
    pub url: Option<String>,
    /// Bearer token for --url.
    #[arg(
        long,
        env = "AMBERDB_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    #[command(flatten)]
    pub keys: KeyArgs,
}

/// An opened target.
pub enum Target {
    /// A data directory.
    Local(Db),
    /// A server.
    Remote(crate::client::Client),
}

impl TargetArgs {
    pub fn open(&self) -> Result<Target, CliError> {
        self.open_with(amberdb::Options::default())
    }

    /// Like [`TargetArgs::open`] for read-only commands: a data directory that is not a
    /// database is an error, never created.
    pub fn open_existing(&self) -> Result<Target, CliError> {
        self.open_with(existing_only())
    }

    fn open_with(&self, opts: amberdb::Options) -> Result<Target, CliError> {
        match (&self.data, &self.url) {
            (Some(_), Some(_)) => Err(CliError::usage("both a data directory (--data / AMBERDB_DATA) and a server (--url / AMBERDB_URL) are set; use one")),
            (Some(d), None) => Ok(Target::Local(Db::open_with(d, self.keys.options(opts)?)?)),
            (None, Some(u)) => Ok(Target::Remote(crate::client::Client::new(u, self.token.clone())?)),
            (None, None) => Err(CliError::usage("say where the data is: --data DIR (or AMBERDB_DATA), or --url URL of a running server (or AMBERDB_URL)")),
        }
    }
}

/// Durability choice on the command line.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurabilityArg {
    /// Acknowledge after fdatasync (survives power loss).
    Sync,
    /// Acknowledge after the OS write; fsync within 10 ms (survives a process crash).
    Buffered,
}

impl DurabilityArg {
    /// The value of the `Amber-Durability` header.
    pub fn header(self) -> &'static str {
        match self {
            DurabilityArg::Sync => "sync",
            DurabilityArg::Buffered => "buffered",
        }
    }

    pub fn to_durability(self) -> Durability {
        match self {
            DurabilityArg::Sync => Durability::Sync,
            DurabilityArg::Buffered => amberdb::buffered(std::time::Duration::from_millis(10)),
        }
    }
}

/// Parses a JSON value from an argument, or from stdin when it is `-` or absent.
pub fn read_json(arg: Option<&str>) -> Result<serde_json::Value, CliError> {
    let text = match arg {
        Some(s) if s != "-" => s.to_owned(),
        _ => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        }
    };
    amberdb::json_numbers::check(text.as_bytes()).map_err(|e| CliError::usage(e.to_string()))?;
    serde_json::from_str(&text)
        .map_err(|e| CliError::usage(format!("value is not valid JSON: {e}")))
}

/// Prints a JSON value on stdout, pretty when `pretty`.
pub fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

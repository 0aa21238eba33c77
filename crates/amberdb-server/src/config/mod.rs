//! Server configuration: built-in defaults, overridden by `amberdb.toml`, overridden by
//! `AMBERDB_*` environment variables, overridden by command-line flags.
//!
//! Every option is declared once in [`OPTIONS`] (key, default, meaning); the file, the
//! environment and the flags are all read through that table, so an unknown key or a bad
//! value is refused with the exact key, where it came from and why. `docs/CONFIG.md` documents
//! the same table (a test keeps the two in step).

mod load;
mod table;
mod tokens;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::TokenEntry;

pub use load::MAX_CONFIG_FILE_BYTES;
pub use table::{parse_bytes, OptionSpec, OPTIONS};

/// Where a configured value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// The config file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A command-line flag.
    Flag,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("the default"),
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::Env(v) => write!(f, "environment variable {v}"),
            Origin::Flag => f.write_str("the command line"),
        }
    }
}

/// A configuration that was refused: which key, where it was set, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config `{key}` (from {origin}): {reason}")]
pub struct ConfigError {
    /// The dotted key (`limits.body_bytes`), or the file when the file itself is unreadable.
    pub key: String,
    /// Where the bad value came from.
    pub origin: Origin,
    /// Why it was refused.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, origin: &Origin, reason: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            origin: origin.clone(),
            reason: reason.into(),
        }
    }
}

/// Durability of writes that do not choose one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultDurability {
    /// Acknowledged after fsync.
    Sync,
    /// Acknowledged after the OS write, fsynced within `buffered_max_delay`.
    Buffered,
}

/// Certificate and key files for HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// The server's configuration, after defaults, file, environment and flags were combined and
/// checked. `Config::default()` is what `amberdb serve` with no arguments uses.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The data directory.
    pub data: PathBuf,
    /// Allow a non-loopback address without tokens.
    pub insecure_no_auth: bool,
    /// HTTPS certificate and key, if any.
    pub tls: Option<TlsFiles>,
    /// Largest request body in bytes.
    pub body_limit: usize,
    /// Largest document value in bytes.
    pub max_doc_bytes: usize,
    /// Largest blob upload in bytes (`limits.blob_bytes`).
    pub blob_limit: u64,
    /// Deadline for one request.
    pub request_timeout: Duration,
    /// Time a connection has to deliver a request header (also the idle keep-alive timeout).
    pub header_read_timeout: Duration,
    /// Most open client connections.
    pub max_connections: usize,
    /// Most API requests handled at once.
    pub concurrency: usize,
    /// Durability of writes without an `Amber-Durability` header.
    pub durability: DefaultDurability,
    /// `max_delay` of buffered writes.
    pub buffered_max_delay: Duration,
    /// Time-based checkpoint interval (`None`: off).
    pub checkpoint_interval: Option<Duration>,
    /// Log bytes that trigger a checkpoint.
    pub checkpoint_log_bytes: u64,
    /// Log segment size.
    pub segment_size: u64,
    /// How long tombstones of deleted keys are kept.
    pub tombstone_retention: Duration,
    /// The history window's time bound (`history.retention`).
    pub history_retention: Duration,
    /// The history window's size bound (`history.max_bytes`).
    pub history_max_bytes: u64,
    /// How often the TTL reaper runs (`ttl.reap_interval`; `None`: no background reaper).
    pub ttl_reap_interval: Option<Duration>,
    /// Most documents one reaper pass deletes (`ttl.reap_batch`).
    pub ttl_reap_batch: usize,
    /// How often the blob collector runs (`blobs.gc_interval_s`; `None`: only on request).
    pub blob_gc_interval: Option<Duration>,
    /// Created files and directories get group read access (0640/0750).
    pub group_access: bool,
    /// How long a graceful shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// Backup repository (archiving, admin endpoints, auto recovery).
    pub backup_repo: Option<PathBuf>,
    /// Scheduled backup interval (`None`: no schedule).
    pub backup_interval: Option<Duration>,
    /// Retention applied after each scheduled backup (`None`: keep all).
    pub retention: Option<amberdb::RetentionPolicy>,
    /// Point-in-time window pruning must preserve.
    pub pitr_window: Option<Duration>,
    /// Seal-and-archive timeout for the active segment.
    pub archive_timeout: Option<Duration>,
    /// Recover automatically from `backup_repo` instead of refusing to start.
    pub recovery_auto: bool,
    /// Bearer tokens (`[[auth.tokens]]`); empty means authentication is off.
    pub tokens: Vec<TokenEntry>,
    /// Encryption at rest (`encryption.key_file` or `AMBERDB_ENCRYPTION_KEY`); `None`: off.
    pub encryption: Option<amberdb::crypto::Keyring>,
}

impl Default for Config {
    fn default() -> Self {
        // The defaults are valid by construction (a unit test parses them), so this only
        // falls back to the same values written out if that ever stops being true.
        match Config::load(None, std::iter::empty(), &[]) {
            Ok(c) => c,
            Err(e) => panic!("built-in config defaults are invalid: {e}"),
        }
    }
}

impl Config {
    /// The engine options this configuration asks for.
    pub fn engine_options(&self) -> amberdb::Options {
        amberdb::Options {
            durability: match self.durability {
                DefaultDurability::Sync => amberdb::Durability::Sync,
                DefaultDurability::Buffered => amberdb::buffered(self.buffered_max_delay),
            },
            max_doc_bytes: self.max_doc_bytes,
            max_blob_bytes: self.blob_limit,
            segment_size: self.segment_size,
            checkpoint_log_bytes: self.checkpoint_log_bytes,
            checkpoint_interval: self.checkpoint_interval,
            archive_to: self.backup_repo.clone(),
            archive_timeout: self.archive_timeout,
            backup_schedule: match (&self.backup_repo, self.backup_interval) {
                (Some(repo), Some(interval)) => Some(amberdb::backup::BackupSchedule {
                    repo: repo.clone(),
                    interval,
                    retention: self.retention.clone(),
                    pitr_window: self.pitr_window,
                }),
                _ => None,
            },
            recovery: match (&self.backup_repo, self.recovery_auto) {
                (Some(repo), true) => amberdb::RecoveryMode::Auto { repo: repo.clone() },
                _ => amberdb::RecoveryMode::Refuse,
            },
            tombstone_retention: self.tombstone_retention,
            history_retention: self.history_retention,
            history_max_bytes: self.history_max_bytes,
            ttl_reap_interval: self.ttl_reap_interval,
            ttl_reap_batch: self.ttl_reap_batch,
            blob_gc_interval: self.blob_gc_interval,
            group_access: self.group_access,
            encryption: self.encryption.clone(),
            ..amberdb::Options::default()
        }
    }

    /// True when requests need a bearer token.
    pub fn auth_enabled(&self) -> bool {
        !self.tokens.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn flags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = Config::load(None, vec![], &[]).expect("defaults");
        assert_eq!(c.listen, "127.0.0.1:7070".parse().expect("addr"));
        assert_eq!(c.data, PathBuf::from("./amberdb-data"));
        assert_eq!(c.body_limit, 32 << 20);
        assert_eq!(c.durability, DefaultDurability::Sync);
        assert!(c.tls.is_none() && c.tokens.is_empty());
    }

    #[test]
    fn flags_beat_env_beat_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("amberdb.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:1000\"\ndata = \"/from-file\"\n[limits]\nconcurrency = 7\n",
        )
        .expect("write");
        let env = vec![
            ("AMBERDB_LISTEN".to_string(), "127.0.0.1:2000".to_string()),
            ("AMBERDB_DATA".to_string(), "/from-env".to_string()),
        ];
        let c = Config::load(
            Some(&file),
            env.clone(),
            &flags(&[("listen", "127.0.0.1:3000")]),
        )
        .expect("load");
        assert_eq!(c.listen.port(), 3000);
        assert_eq!(c.data, PathBuf::from("/from-env"));
        assert_eq!(c.concurrency, 7);
        let c = Config::load(Some(&file), vec![], &[]).expect("load");
        assert_eq!(c.listen.port(), 1000);
    }

    #[test]
    fn bad_values_name_the_key_the_origin_and_the_reason() {
        let e = Config::load(
            None,
            vec![("AMBERDB_LIMITS_BODY_BYTES".into(), "lots".into())],
            &[],
        )
        .expect_err("bad");
        assert_eq!(e.key, "limits.body_bytes");
        assert_eq!(e.origin, Origin::Env("AMBERDB_LIMITS_BODY_BYTES".into()));
        assert!(e.reason.contains("lots"), "{e}");

        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("amberdb.toml");
        std::fs::write(&file, "[limits]\nconcurency = 3\n").expect("write");
        let e = Config::load(Some(&file), vec![], &[]).expect_err("typo");
        assert_eq!(e.key, "limits.concurency");
        assert!(e.to_string().contains("unknown key"), "{e}");

        let e =
            Config::load(None, vec![], &flags(&[("limits.concurrency", "0")])).expect_err("range");
        assert!(e.reason.contains("out of range"), "{e}");

        let e = Config::load(None, vec![], &flags(&[("tls.cert", "/c.pem")])).expect_err("tls");
        assert_eq!(e.key, "tls.key");

        let e =
            Config::load(None, vec![], &flags(&[("listen", "0.0.0.0:7070")])).expect_err("exposed");
        assert_eq!(e.key, "listen");
        assert!(e.reason.contains("--insecure-no-auth"), "{e}");
        Config::load(
            None,
            vec![],
            &flags(&[("listen", "0.0.0.0:7070"), ("insecure_no_auth", "true")]),
        )
        .expect("explicitly insecure");
    }

    #[test]
    fn tokens_are_read_from_the_file_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("amberdb.toml");
        let hash = "ab".repeat(32);
        std::fs::write(&file, format!("listen = \"0.0.0.0:7070\"\n[[auth.tokens]]\nname = \"game\"\nsha256 = \"{hash}\"\nscopes = [\"read:players*\", \"admin\"]\n")).expect("write");
        let c = Config::load(Some(&file), vec![], &[])
            .expect("tokens make a public address acceptable");
        assert_eq!(c.tokens.len(), 1);
        std::fs::write(
            &file,
            "[[auth.tokens]]\nname = \"game\"\nsha256 = \"xyz\"\nscopes = [\"read:*\"]\n",
        )
        .expect("write");
        assert_eq!(
            Config::load(Some(&file), vec![], &[])
                .expect_err("bad hash")
                .key,
            "auth.tokens[0].sha256"
        );
        std::fs::write(
            &file,
            format!(
                "[[auth.tokens]]\nname = \"game\"\nsha256 = \"{hash}\"\nscopes = [\"delete:*\"]\n"
            ),
        )
        .expect("write");
        assert_eq!(
            Config::load(Some(&file), vec![], &[])
                .expect_err("bad scope")
                .key,
            "auth.tokens[0].scopes"
        );
    }

    #[test]
    fn config_files_must_be_regular_and_small() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = Config::load(Some(dir.path()), vec![], &[]).expect_err("a directory");
        assert!(e.reason.contains("not a regular file"), "{e}");
        let big = dir.path().join("big.toml");
        let mut text = String::from("# padding\n");
        while (text.len() as u64) <= MAX_CONFIG_FILE_BYTES {
            text.push_str(&"#".repeat(1023));
            text.push('\n');
        }
        std::fs::write(&big, text).expect("write");
        let e = Config::load(Some(&big), vec![], &[]).expect_err("too big");
        assert!(e.reason.contains("larger than"), "{e}");
        // Last (it reads forever without the fix): `--config /dev/zero` took 8 GB in 5 s.
        let e = Config::load(Some(Path::new("/dev/zero")), vec![], &[]).expect_err("/dev/zero");
        assert!(e.reason.contains("not a regular file"), "{e}");
    }

    #[test]
    fn byte_sizes_accept_units() {
        assert_eq!(parse_bytes("32MiB"), Ok(32 << 20));
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("2 GiB"), Ok(2 << 30));
        assert!(parse_bytes("12 parsecs").is_err());
    }

    #[test]
    fn every_option_is_documented_in_config_md_with_its_default() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/CONFIG.md"))
                .expect("docs/CONFIG.md");
        let example = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../amberdb.example.toml"
        ))
        .expect("amberdb.example.toml");
        for o in OPTIONS {
            let row = doc
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", o.key)))
                .unwrap_or_else(|| panic!("{} missing from docs/CONFIG.md", o.key));
            let default = if o.default.is_empty() {
                "(unset)".to_string()
            } else {
                format!("`{}`", o.default)
            };
            assert!(
                row.contains(&default),
                "docs/CONFIG.md row for {} does not show default {default}: {row}",
                o.key
            );
            assert!(
                row.contains(&o.env_var()),
                "docs/CONFIG.md row for {} does not name {}",
                o.key,
                o.env_var()
            );
            let leaf = o.key.rsplit('.').next().unwrap_or(o.key);
            assert!(
                example.contains(leaf),
                "amberdb.example.toml does not mention {}",
                o.key
            );
        }
        let example_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../amberdb.example.toml");
        let c = Config::load(Some(Path::new(example_path)), vec![], &[])
            .expect("amberdb.example.toml is valid");
        assert_eq!(
            c.listen,
            Config::default().listen,
            "the example shows the defaults"
        );
    }
}

//! Server configuration: built-in defaults, overridden by `amberdb.toml`, overridden by
//! `AMBERDB_*` environment variables, overridden by command-line flags.
//!
//! Every option is declared once in [`OPTIONS`] (key, default, meaning); the file, the
//! environment and the flags are all read through that table, so an unknown key or a bad
//! value is refused with the exact key, where it came from and why. `docs/CONFIG.md` documents
//! the same table (a test keeps the two in step).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::auth::{Scope, TokenEntry};

/// One configuration option: its dotted key (`limits.body_bytes`), its default as written in a
/// config file, and what it means.
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    /// Dotted key as used in `amberdb.toml` (`section.name`) and in `--set key=value`.
    pub key: &'static str,
    /// The default, as it would be written in the file (empty: unset).
    pub default: &'static str,
    /// One line on what it does.
    pub doc: &'static str,
    kind: Kind,
}

impl OptionSpec {
    /// The environment variable that sets this option: `AMBERDB_` + the key in upper case
    /// with dots replaced by underscores.
    pub fn env_var(&self) -> String {
        format!(
            "AMBERDB_{}",
            self.key.to_ascii_uppercase().replace('.', "_")
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Addr,
    Path,
    OptPath,
    Bool,
    /// A positive integer in `min..=max`.
    Int {
        min: u64,
        max: u64,
    },
    /// A byte count: an integer or a string like `"32MiB"`.
    Bytes {
        min: u64,
        max: u64,
    },
    Durability,
    /// One of a few words, checked where the option is read.
    Word,
}

const MAX_U32: u64 = u32::MAX as u64;

/// Every option the server reads, in the order `docs/CONFIG.md` lists them.
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec { key: "listen", default: "127.0.0.1:7070", doc: "Address and port to listen on. Anything but a loopback address needs auth.tokens (or insecure_no_auth).", kind: Kind::Addr },
    OptionSpec { key: "data", default: "./amberdb-data", doc: "The data directory (created if missing, locked while the server runs).", kind: Kind::Path },
    OptionSpec { key: "insecure_no_auth", default: "false", doc: "Allow a non-loopback listen address without any token. Everyone who can reach the port can read and write everything.", kind: Kind::Bool },
    OptionSpec { key: "tls.cert", default: "", doc: "PEM certificate chain; with tls.key, serve HTTPS (rustls) instead of HTTP.", kind: Kind::OptPath },
    OptionSpec { key: "tls.key", default: "", doc: "PEM private key for tls.cert.", kind: Kind::OptPath },
    OptionSpec { key: "limits.body_bytes", default: "32MiB", doc: "Largest request body; larger requests get 413 payload_too_large.", kind: Kind::Bytes { min: 1024, max: 1 << 32 } },
    OptionSpec { key: "limits.max_doc_bytes", default: "16MiB", doc: "Largest document value (canonical JSON, at most 256MiB); larger values get 413 document_too_large.", kind: Kind::Bytes { min: 16, max: 256 << 20 } },
    OptionSpec { key: "limits.request_timeout_ms", default: "30000", doc: "A request still unanswered after this long gets 503 timeout (a write may still commit; re-read it).", kind: Kind::Int { min: 1, max: MAX_U32 } },
    OptionSpec { key: "limits.header_read_timeout_ms", default: "30000", doc: "A connection must deliver a whole request header within this long of the server starting to wait for one: a silent new connection, a half-sent header or an idle keep-alive connection is closed after it.", kind: Kind::Int { min: 100, max: MAX_U32 } },
    OptionSpec { key: "limits.max_connections", default: "4096", doc: "Most open client connections; one more is closed at once. Capped below the open-file limit so the engine always has descriptors for its own files.", kind: Kind::Int { min: 1, max: 1_000_000 } },
    OptionSpec { key: "limits.concurrency", default: "1024", doc: "Most API requests handled at once; more wait (within the request timeout). Probes and /metrics are not limited.", kind: Kind::Int { min: 1, max: 1_000_000 } },
    OptionSpec { key: "durability.default", default: "sync", doc: "Durability of writes without an Amber-Durability header: sync (acknowledged after fsync) or buffered.", kind: Kind::Durability },
    OptionSpec { key: "durability.buffered_max_delay_ms", default: "10", doc: "For buffered writes: longest time before they are fsynced.", kind: Kind::Int { min: 1, max: 60_000 } },
    OptionSpec { key: "engine.checkpoint_interval_s", default: "300", doc: "Write a checkpoint this often when anything changed; 0 disables time-based checkpoints.", kind: Kind::Int { min: 0, max: MAX_U32 } },
    OptionSpec { key: "engine.checkpoint_log_bytes", default: "128MiB", doc: "Write a checkpoint after this much log.", kind: Kind::Bytes { min: 4096, max: u64::MAX } },
    OptionSpec { key: "engine.segment_size", default: "64MiB", doc: "Seal a log segment and start a new one at this size.", kind: Kind::Bytes { min: 4096, max: 1 << 40 } },
    OptionSpec { key: "backup.repo", default: "", doc: "Backup repository directory (created if missing). Enables continuous log archiving to it, the /v1/admin/backups endpoints, and recovery.mode = auto.", kind: Kind::OptPath },
    OptionSpec { key: "backup.interval_s", default: "0", doc: "Take a backup into backup.repo this often (seconds); 0 = no schedule. Failures are logged and shown in /v1/admin/status, never fatal.", kind: Kind::Int { min: 0, max: MAX_U32 } },
    OptionSpec { key: "backup.keep_last", default: "0", doc: "Retention after each scheduled backup: keep the N newest (0 = rule off). Rules are OR-ed; with none set every backup is kept.", kind: Kind::Int { min: 0, max: MAX_U32 } },
    OptionSpec { key: "backup.keep_hourly", default: "0", doc: "Retention: the newest backup of each of the N newest hours that have one (0 = off).", kind: Kind::Int { min: 0, max: MAX_U32 } },
    OptionSpec { key: "backup.keep_daily", default: "0", doc: "Retention: ... of each of the N newest days (UTC).", kind: Kind::Int { min: 0, max: MAX_U32 } },
    OptionSpec { key: "backup.keep_weekly", default: "0", doc: "Retention: ... of each of the N newest ISO weeks.", kind: Kind::Int { min: 0, max: MAX_U32 } },
    OptionSpec { key: "backup.keep_monthly", default: "0", doc: "Retention: ... of each of the N newest months.", kind: Kind::Int { min: 0, max: MAX_U32 } },
    OptionSpec { key: "backup.keep_within_s", default: "0", doc: "Retention: every backup within this many seconds of the newest (0 = off).", kind: Kind::Int { min: 0, max: u64::MAX } },
    OptionSpec { key: "backup.pitr_window_s", default: "0", doc: "Pruning keeps what point-in-time restore to any moment in this many seconds needs (0 = off).", kind: Kind::Int { min: 0, max: u64::MAX } },
    OptionSpec { key: "backup.archive_timeout_s", default: "60", doc: "With backup.repo: seal and archive the active log segment once its oldest unarchived commit is this old (0 = only when full).", kind: Kind::Int { min: 0, max: MAX_U32 } },
    OptionSpec { key: "recovery.mode", default: "refuse", doc: "On damage beyond a torn tail: refuse to start (naming file and offset), or auto: quarantine the damaged files and rebuild from local data or backup.repo, logging a report.", kind: Kind::Word },
    OptionSpec { key: "shutdown.grace_ms", default: "30000", doc: "On SIGINT/SIGTERM, how long in-flight requests may take to finish before connections are closed.", kind: Kind::Int { min: 0, max: MAX_U32 } },
];

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
    fn new(key: impl Into<String>, origin: &Origin, reason: impl Into<String>) -> Self {
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
    /// Combines defaults < `file` < `env` < `flags` and checks the result.
    ///
    /// `env` is usually `std::env::vars()`; only `AMBERDB_<KEY>` variables named in
    /// [`OPTIONS`] are read. `flags` are `(dotted key, value)` pairs as given on the command line.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let mut raw: BTreeMap<&'static str, (String, Origin)> = OPTIONS
            .iter()
            .map(|o| (o.key, (o.default.to_owned(), Origin::Default)))
            .collect();
        let mut tokens = vec![];
        if let Some(path) = file {
            let origin = Origin::File(path.to_owned());
            let text = read_config_file(path)
                .map_err(|reason| ConfigError::new(path.display().to_string(), &origin, reason))?;
            let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
                ConfigError::new(
                    "(file)",
                    &origin,
                    format!("not valid TOML: {}", e.message()),
                )
            })?;
            read_table(&table, "", &origin, &mut raw, &mut tokens)?;
        }
        let env: BTreeMap<String, String> = env.into_iter().collect();
        for o in OPTIONS {
            let var = o.env_var();
            if let Some(v) = env.get(&var) {
                raw.insert(o.key, (v.clone(), Origin::Env(var)));
            }
        }
        for (k, v) in flags {
            let Some(o) = OPTIONS.iter().find(|o| o.key == k) else {
                return Err(ConfigError::new(
                    k.clone(),
                    &Origin::Flag,
                    unknown_key_reason(k),
                ));
            };
            raw.insert(o.key, (v.clone(), Origin::Flag));
        }
        build(&raw, tokens)
    }

    /// The engine options this configuration asks for.
    pub fn engine_options(&self) -> amberdb::Options {
        amberdb::Options {
            durability: match self.durability {
                DefaultDurability::Sync => amberdb::Durability::Sync,
                DefaultDurability::Buffered => amberdb::buffered(self.buffered_max_delay),
            },
            max_doc_bytes: self.max_doc_bytes,
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
            ..amberdb::Options::default()
        }
    }

    /// True when requests need a bearer token.
    pub fn auth_enabled(&self) -> bool {
        !self.tokens.is_empty()
    }
}

fn unknown_key_reason(key: &str) -> String {
    let close: Vec<&str> = OPTIONS
        .iter()
        .map(|o| o.key)
        .filter(|k| {
            k.rsplit('.').next() == key.rsplit('.').next()
                || k.starts_with(key)
                || key.starts_with(*k)
        })
        .collect();
    if close.is_empty() {
        "unknown key (docs/CONFIG.md lists every option)".into()
    } else {
        format!("unknown key; did you mean {}?", close.join(" or "))
    }
}

fn read_table(
    table: &toml::Table,
    prefix: &str,
    origin: &Origin,
    raw: &mut BTreeMap<&'static str, (String, Origin)>,
    tokens: &mut Vec<TokenEntry>,
) -> Result<(), ConfigError> {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if key == "auth.tokens" {
            read_tokens(v, origin, tokens)?;
            continue;
        }
        match v {
            toml::Value::Table(t)
                if prefix.is_empty()
                    && [
                        "tls",
                        "limits",
                        "durability",
                        "engine",
                        "backup",
                        "recovery",
                        "shutdown",
                        "auth",
                    ]
                    .contains(&k.as_str()) =>
            {
                read_table(t, &key, origin, raw, tokens)?;
            }
            _ => {
                let Some(o) = OPTIONS.iter().find(|o| o.key == key) else {
                    return Err(ConfigError::new(
                        key.clone(),
                        origin,
                        unknown_key_reason(&key),
                    ));
                };
                let s = match v {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    other => {
                        return Err(ConfigError::new(
                            key,
                            origin,
                            format!("expected a single value, found {}", other.type_str()),
                        ))
                    }
                };
                raw.insert(o.key, (s, origin.clone()));
            }
        }
    }
    Ok(())
}

fn read_tokens(
    v: &toml::Value,
    origin: &Origin,
    out: &mut Vec<TokenEntry>,
) -> Result<(), ConfigError> {
    let toml::Value::Array(items) = v else {
        return Err(ConfigError::new(
            "auth.tokens",
            origin,
            "expected an array of tables ([[auth.tokens]])",
        ));
    };
    let mut names = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let key = |field: &str| format!("auth.tokens[{i}].{field}");
        let toml::Value::Table(t) = item else {
            return Err(ConfigError::new(
                format!("auth.tokens[{i}]"),
                origin,
                "expected a table with name, sha256 and scopes",
            ));
        };
        if let Some(unknown) = t
            .keys()
            .find(|k| !["name", "sha256", "scopes"].contains(&k.as_str()))
        {
            return Err(ConfigError::new(
                key(unknown),
                origin,
                "unknown key (a token has name, sha256 and scopes)",
            ));
        }
        let name = match t.get("name") {
            Some(toml::Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(ConfigError::new(
                    key("name"),
                    origin,
                    "required: a non-empty string",
                ))
            }
        };
        if !names.insert(name.clone()) {
            return Err(ConfigError::new(
                key("name"),
                origin,
                format!("duplicate token name {name:?}"),
            ));
        }
        let sha256 = match t.get("sha256") {
            Some(toml::Value::String(s)) => crate::auth::parse_hash(s).ok_or_else(|| {
                ConfigError::new(
                    key("sha256"),
                    origin,
                    "must be 64 hex digits (the SHA-256 that `amberdb token create` prints)",
                )
            })?,
            _ => {
                return Err(ConfigError::new(
                    key("sha256"),
                    origin,
                    "required: the token's SHA-256 in hex (never the token itself)",
                ))
            }
        };
        let scopes = match t.get("scopes") {
            Some(toml::Value::Array(a)) if !a.is_empty() => a
                .iter()
                .map(|s| match s {
                    toml::Value::String(s) => s
                        .parse::<Scope>()
                        .map_err(|e| ConfigError::new(key("scopes"), origin, e)),
                    _ => Err(ConfigError::new(
                        key("scopes"),
                        origin,
                        "every scope is a string such as \"read:players*\"",
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(ConfigError::new(
                key("scopes"),
                origin,
                "required: a non-empty list such as [\"read:*\", \"write:players*\", \"admin\"]",
            )),
        };
        out.push(TokenEntry {
            name,
            sha256,
            scopes,
        });
    }
    Ok(())
}

fn build(
    raw: &BTreeMap<&'static str, (String, Origin)>,
    tokens: Vec<TokenEntry>,
) -> Result<Config, ConfigError> {
    let get = |key: &str| -> Result<(&str, &Origin, Kind), ConfigError> {
        let o = OPTIONS
            .iter()
            .find(|o| o.key == key)
            .ok_or_else(|| ConfigError::new(key, &Origin::Default, "not an option"))?;
        let (v, origin) = raw
            .get(key)
            .ok_or_else(|| ConfigError::new(key, &Origin::Default, "missing"))?;
        Ok((v.as_str(), origin, o.kind))
    };
    let int = |key: &str| -> Result<u64, ConfigError> {
        let (v, origin, kind) = get(key)?;
        parse_int(v, kind).map_err(|r| ConfigError::new(key, origin, r))
    };
    let boolean = |key: &str| -> Result<bool, ConfigError> {
        let (v, origin, _) = get(key)?;
        match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" | "" => Ok(false),
            _ => Err(ConfigError::new(
                key,
                origin,
                format!("expected true or false, got {v:?}"),
            )),
        }
    };
    let opt_path = |key: &str| -> Result<Option<PathBuf>, ConfigError> {
        let (v, _, _) = get(key)?;
        Ok((!v.is_empty()).then(|| PathBuf::from(v)))
    };

    let (listen_raw, listen_origin, _) = get("listen")?;
    let listen: SocketAddr = listen_raw.parse().map_err(|_| {
        ConfigError::new(
            "listen",
            listen_origin,
            format!("{listen_raw:?} is not an address:port such as 127.0.0.1:7070 or [::1]:7070"),
        )
    })?;
    let (data_raw, data_origin, _) = get("data")?;
    if data_raw.is_empty() {
        return Err(ConfigError::new("data", data_origin, "must not be empty"));
    }
    let (dur_raw, dur_origin, _) = get("durability.default")?;
    let durability = match dur_raw.to_ascii_lowercase().as_str() {
        "sync" => DefaultDurability::Sync,
        "buffered" => DefaultDurability::Buffered,
        _ => {
            return Err(ConfigError::new(
                "durability.default",
                dur_origin,
                format!("expected sync or buffered, got {dur_raw:?}"),
            ))
        }
    };
    let tls = match (opt_path("tls.cert")?, opt_path("tls.key")?) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::new(
                "tls.key",
                &get("tls.cert")?.1.clone(),
                "required when tls.cert is set",
            ))
        }
        (None, Some(_)) => {
            return Err(ConfigError::new(
                "tls.cert",
                &get("tls.key")?.1.clone(),
                "required when tls.key is set",
            ))
        }
    };
    let insecure_no_auth = boolean("insecure_no_auth")?;
    let checkpoint_s = int("engine.checkpoint_interval_s")?;
    let backup_repo = opt_path("backup.repo")?;
    let secs = |key: &str| -> Result<Option<Duration>, ConfigError> {
        Ok(Some(int(key)?).filter(|s| *s > 0).map(Duration::from_secs))
    };
    let count = |key: &str| -> Result<Option<u32>, ConfigError> {
        Ok(Some(int(key)? as u32).filter(|n| *n > 0))
    };
    let retention = amberdb::RetentionPolicy {
        keep_last: count("backup.keep_last")?,
        keep_hourly: count("backup.keep_hourly")?,
        keep_daily: count("backup.keep_daily")?,
        keep_weekly: count("backup.keep_weekly")?,
        keep_monthly: count("backup.keep_monthly")?,
        keep_within: secs("backup.keep_within_s")?,
    };
    let backup_interval = secs("backup.interval_s")?;
    if backup_repo.is_none() {
        for key in ["backup.interval_s", "recovery.mode"] {
            let (v, origin, _) = get(key)?;
            let set = match key {
                "recovery.mode" => v.eq_ignore_ascii_case("auto"),
                _ => backup_interval.is_some(),
            };
            if set {
                return Err(ConfigError::new(
                    key,
                    origin,
                    "needs backup.repo (the repository to back up to or recover from)",
                ));
            }
        }
    }
    let (mode_raw, mode_origin, _) = get("recovery.mode")?;
    let recovery_auto = match mode_raw.to_ascii_lowercase().as_str() {
        "refuse" | "" => false,
        "auto" => true,
        _ => {
            return Err(ConfigError::new(
                "recovery.mode",
                mode_origin,
                format!("expected refuse or auto, got {mode_raw:?}"),
            ))
        }
    };
    let config = Config {
        listen,
        data: PathBuf::from(data_raw),
        insecure_no_auth,
        tls,
        body_limit: int("limits.body_bytes")? as usize,
        max_doc_bytes: int("limits.max_doc_bytes")? as usize,
        request_timeout: Duration::from_millis(int("limits.request_timeout_ms")?),
        header_read_timeout: Duration::from_millis(int("limits.header_read_timeout_ms")?),
        max_connections: int("limits.max_connections")? as usize,
        concurrency: int("limits.concurrency")? as usize,
        durability,
        buffered_max_delay: Duration::from_millis(int("durability.buffered_max_delay_ms")?),
        checkpoint_interval: (checkpoint_s > 0).then(|| Duration::from_secs(checkpoint_s)),
        checkpoint_log_bytes: int("engine.checkpoint_log_bytes")?,
        segment_size: int("engine.segment_size")?,
        shutdown_grace: Duration::from_millis(int("shutdown.grace_ms")?),
        tokens,
        backup_interval,
        retention: (!retention.is_empty()).then_some(retention),
        pitr_window: secs("backup.pitr_window_s")?,
        archive_timeout: secs("backup.archive_timeout_s")?,
        recovery_auto,
        backup_repo,
    };
    if !config.listen.ip().is_loopback() && config.tokens.is_empty() && !config.insecure_no_auth {
        return Err(ConfigError::new(
            "listen",
            listen_origin,
            format!(
                "{} is not a loopback address and no auth.tokens are configured; create one with `amberdb token create`, or pass --insecure-no-auth to serve everyone without authentication",
                config.listen
            ),
        ));
    }
    Ok(config)
}

/// Largest config file read: far more than any real configuration (the example is 3 KB), and
/// small enough that `--config /dev/zero` or a huge file cannot take the server's memory.
pub const MAX_CONFIG_FILE_BYTES: u64 = 1 << 20;

/// Reads a config file: a regular file (symlinks followed) of at most
/// [`MAX_CONFIG_FILE_BYTES`], as UTF-8. A device, FIFO or directory is refused before any read.
fn read_config_file(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read the config file: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read the config file: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file; --config takes a TOML file".into());
    }
    let mut text = String::new();
    // One byte over the limit tells a file that grew after the size check.
    file.take(MAX_CONFIG_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read the config file: {e}"))?;
    if text.len() as u64 > MAX_CONFIG_FILE_BYTES {
        return Err(format!(
            "larger than {MAX_CONFIG_FILE_BYTES} bytes; this is not a config file"
        ));
    }
    Ok(text)
}

fn parse_int(v: &str, kind: Kind) -> Result<u64, String> {
    let (n, min, max) = match kind {
        Kind::Int { min, max } => {
            let n: u64 = v
                .trim()
                .parse()
                .map_err(|_| format!("expected a whole number, got {v:?}"))?;
            (n, min, max)
        }
        Kind::Bytes { min, max } => (parse_bytes(v)?, min, max),
        _ => return Err("not a number option".into()),
    };
    if n < min || n > max {
        return Err(format!("{n} is out of range {min}..={max}"));
    }
    Ok(n)
}

/// Parses `1048576`, `512KiB`, `32MiB`, `1GiB` (also KB/MB/GB as powers of 1000).
pub fn parse_bytes(v: &str) -> Result<u64, String> {
    let s = v.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("expected a byte count such as 1048576 or \"32MiB\", got {v:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return Err(format!("unknown unit in {v:?} (use B, KiB, MiB or GiB)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{v:?} is too large"))
}

#[cfg(test)]
mod tests {
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

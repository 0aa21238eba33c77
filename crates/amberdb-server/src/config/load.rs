//! Loading: built-in defaults, overridden by `amberdb.toml`, overridden by `AMBERDB_*`
//! environment variables, overridden by command-line flags, then checked into a [`Config`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::table::{parse_int, unknown_key_reason, Kind, OPTIONS};
use super::tokens::read_tokens;
use super::{Config, ConfigError, DefaultDurability, Origin, TlsFiles};
use crate::auth::TokenEntry;

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
        // The key itself (base64), used when encryption.key_file is unset; never a config key.
        let env_key = env.get(amberdb::crypto::ENCRYPTION_KEY_ENV).cloned();
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
        build(&raw, tokens, env_key)
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
                        "encryption",
                        "limits",
                        "durability",
                        "engine",
                        "history",
                        "ttl",
                        "blobs",
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

fn build(
    raw: &BTreeMap<&'static str, (String, Origin)>,
    tokens: Vec<TokenEntry>,
    env_key: Option<String>,
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
    let encryption = match (opt_path("encryption.key_file")?, env_key) {
        (Some(path), _) => {
            let origin = get("encryption.key_file")?.1.clone();
            let key = amberdb::crypto::Key::from_file(&path)
                .map_err(|e| ConfigError::new("encryption.key_file", &origin, e.to_string()))?;
            Some(amberdb::crypto::Keyring::single(key))
        }
        (None, Some(text)) => {
            let var = amberdb::crypto::ENCRYPTION_KEY_ENV;
            let origin = Origin::Env(var.to_owned());
            let key =
                amberdb::crypto::Key::parse_base64(&text, &format!("environment variable {var}"))
                    .map_err(|e| ConfigError::new(var, &origin, e.to_string()))?;
            Some(amberdb::crypto::Keyring::single(key))
        }
        (None, None) => None,
    };
    // Key rotation: the old key only reads (the keyring's first key seals).
    let encryption = match (encryption, opt_path("encryption.old_key_file")?) {
        (ring, None) => ring,
        (None, Some(_)) => {
            return Err(ConfigError::new(
                "encryption.old_key_file",
                &get("encryption.old_key_file")?.1.clone(),
                "needs encryption.key_file (or AMBERDB_ENCRYPTION_KEY): the new key that seals",
            ))
        }
        (Some(ring), Some(path)) => {
            let origin = get("encryption.old_key_file")?.1.clone();
            let bad = |e: amberdb::Error| {
                ConfigError::new("encryption.old_key_file", &origin, e.to_string())
            };
            let old = amberdb::crypto::Key::from_file(&path).map_err(bad)?;
            Some(amberdb::crypto::Keyring::new(vec![ring.primary().clone(), old]).map_err(bad)?)
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
        blob_limit: int("limits.blob_bytes")?,
        request_timeout: Duration::from_millis(int("limits.request_timeout_ms")?),
        header_read_timeout: Duration::from_millis(int("limits.header_read_timeout_ms")?),
        max_connections: int("limits.max_connections")? as usize,
        concurrency: int("limits.concurrency")? as usize,
        durability,
        buffered_max_delay: Duration::from_millis(int("durability.buffered_max_delay_ms")?),
        checkpoint_interval: (checkpoint_s > 0).then(|| Duration::from_secs(checkpoint_s)),
        checkpoint_log_bytes: int("engine.checkpoint_log_bytes")?,
        segment_size: int("engine.segment_size")?,
        tombstone_retention: Duration::from_secs(int("engine.tombstone_retention_s")?),
        history_retention: Duration::from_secs(int("history.retention")?),
        history_max_bytes: int("history.max_bytes")?,
        ttl_reap_interval: match int("ttl.reap_interval")? {
            0 => None,
            s => Some(Duration::from_secs(s)),
        },
        ttl_reap_batch: int("ttl.reap_batch")? as usize,
        blob_gc_interval: match int("blobs.gc_interval_s")? {
            0 => None,
            s => Some(Duration::from_secs(s)),
        },
        group_access: boolean("engine.group_access")?,
        shutdown_grace: Duration::from_millis(int("shutdown.grace_ms")?),
        tokens,
        backup_interval,
        retention: (!retention.is_empty()).then_some(retention),
        pitr_window: secs("backup.pitr_window_s")?,
        archive_timeout: secs("backup.archive_timeout_s")?,
        recovery_auto,
        backup_repo,
        encryption,
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

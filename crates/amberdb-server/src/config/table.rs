//! The option table: every key the server reads, its default, its meaning and the kind of
//! value it takes, and the parsers of those kinds. `docs/CONFIG.md` documents the same table
//! (a test keeps the two in step); loading (`load.rs`) reads every source through it.

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
    pub(crate) kind: Kind,
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
pub(crate) enum Kind {
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
    OptionSpec { key: "encryption.key_file", default: "", doc: "Encryption at rest: a key file (32 raw bytes or their base64). Log, checkpoints, backups and archive are sealed with it (AES-256-GCM). Without it, the base64 key in AMBERDB_ENCRYPTION_KEY is used when set.", kind: Kind::OptPath },
    OptionSpec { key: "encryption.old_key_file", default: "", doc: "Key rotation: the previous key file (32 raw bytes or their base64), used only to read files still sealed with it; encryption.key_file seals. Start the rewrite with POST /v1/admin/keys/rotate, and remove this option (and destroy the old key) once status key_ids_in_use no longer lists its id.", kind: Kind::OptPath },
    OptionSpec { key: "limits.body_bytes", default: "32MiB", doc: "Largest request body; larger requests get 413 payload_too_large.", kind: Kind::Bytes { min: 1024, max: 1 << 32 } },
    OptionSpec { key: "limits.blob_bytes", default: "1GiB", doc: "Largest blob upload (counted while it streams, at most 64GiB); larger uploads get 413 blob_too_large and nothing is stored. Blob bodies are not bounded by limits.body_bytes.", kind: Kind::Bytes { min: 1, max: 64 << 30 } },
    OptionSpec { key: "limits.max_doc_bytes", default: "16MiB", doc: "Largest document value (canonical JSON, at most 256MiB); larger values get 413 document_too_large.", kind: Kind::Bytes { min: 16, max: 256 << 20 } },
    OptionSpec { key: "limits.request_timeout_ms", default: "30000", doc: "A request still unanswered after this long gets 503 timeout (a write may still commit; re-read it).", kind: Kind::Int { min: 1, max: MAX_U32 } },
    OptionSpec { key: "limits.header_read_timeout_ms", default: "30000", doc: "A connection must deliver a whole request header within this long of the server starting to wait for one: a silent new connection, a half-sent header or an idle keep-alive connection is closed after it.", kind: Kind::Int { min: 100, max: MAX_U32 } },
    OptionSpec { key: "limits.max_connections", default: "4096", doc: "Most open client connections; one more is closed at once. Capped below the open-file limit so the engine always has descriptors for its own files.", kind: Kind::Int { min: 1, max: 100_000 } },
    OptionSpec { key: "limits.concurrency", default: "1024", doc: "Most API requests handled at once; more wait (within the request timeout). Probes and /metrics are not limited.", kind: Kind::Int { min: 1, max: 100_000 } },
    OptionSpec { key: "durability.default", default: "sync", doc: "Durability of writes without an Amber-Durability header: sync (acknowledged after fsync) or buffered.", kind: Kind::Durability },
    OptionSpec { key: "durability.buffered_max_delay_ms", default: "10", doc: "For buffered writes: longest time before they are fsynced.", kind: Kind::Int { min: 1, max: 60_000 } },
    OptionSpec { key: "engine.checkpoint_interval_s", default: "300", doc: "Write a checkpoint this often when anything changed; 0 disables time-based checkpoints.", kind: Kind::Int { min: 0, max: MAX_U32 } },
    OptionSpec { key: "engine.checkpoint_log_bytes", default: "128MiB", doc: "Write a checkpoint after this much log.", kind: Kind::Bytes { min: 4096, max: u64::MAX } },
    OptionSpec { key: "engine.segment_size", default: "64MiB", doc: "Seal a log segment and start a new one at this size.", kind: Kind::Bytes { min: 4096, max: 1 << 40 } },
    OptionSpec { key: "engine.tombstone_retention_s", default: "3600", doc: "Keep the tombstone of a deleted key at least this long (commit time; and at least as long as the engine keeps log): while it exists, a re-created document's history links to the delete. Versions never repeat either way.", kind: Kind::Int { min: 0, max: MAX_U32 } },
    OptionSpec { key: "history.retention", default: "259200", doc: "The history window, in seconds (default 72 h): log segments are kept at least this long after their last commit, even when no checkpoint needs them, for history, as-of reads and /v1/log. Older points answer 410 history_lost.", kind: Kind::Int { min: 0, max: u64::MAX } },
    OptionSpec { key: "history.max_bytes", default: "4GiB", doc: "The history window's size bound: once the log on disk exceeds this, its oldest segments go even inside history.retention (never one a checkpoint or backup.repo still needs).", kind: Kind::Bytes { min: 0, max: u64::MAX } },
    OptionSpec { key: "ttl.reap_interval", default: "1", doc: "The TTL reaper deletes expired documents (a logged transaction with reason ttl) this often, in seconds; 0 runs no background reaper. Expired documents are invisible at once either way.", kind: Kind::Int { min: 0, max: MAX_U32 } },
    OptionSpec { key: "ttl.reap_batch", default: "1000", doc: "Most expired documents one reaper pass deletes (one transaction): with ttl.reap_interval, the reaper's rate limit.", kind: Kind::Int { min: 1, max: 100_000 } },
    OptionSpec { key: "blobs.gc_interval_s", default: "600", doc: "The blob collector removes blob files that no live blob, no blob write still in the data directory's log and no staged upload younger than an hour names, this often (seconds); 0 runs it only on POST /v1/admin/blobs/gc or amberdb blob gc.", kind: Kind::Int { min: 0, max: MAX_U32 } },
    OptionSpec { key: "engine.group_access", default: "false", doc: "Files and directories the server creates (data directory, backup repository, quarantine) get group read access, 0640/0750, instead of owner-only 0600/0700. The umask can only narrow either.", kind: Kind::Bool },
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

pub(crate) fn unknown_key_reason(key: &str) -> String {
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

pub(crate) fn parse_int(v: &str, kind: Kind) -> Result<u64, String> {
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

//! `amberdb serve`: run the HTTP server until SIGINT or SIGTERM.

use std::io::Write;
use std::path::PathBuf;

use amberdb_server::{Config, Server, StartError};

use super::DurabilityArg;
use crate::exit::{CliError, CliResult, ERROR, USAGE};

#[derive(clap::Args, Debug)]
#[command(
    after_help = r#"Configuration, strongest first: flags, AMBERDB_* environment variables, the config file,
built-in defaults. Every option has a dotted key (docs/CONFIG.md lists them all with their
defaults); --set KEY=VALUE sets any of them, and AMBERDB_<KEY> (upper case, dots as
underscores) does the same from the environment, e.g. AMBERDB_LIMITS_BODY_BYTES=64MiB.
Without --config, ./amberdb.toml is read when it exists.

Without auth.tokens the server only listens on loopback addresses, unless
--insecure-no-auth is given. SIGINT or SIGTERM drains in-flight requests, syncs, writes a
checkpoint and exits 0; a second signal exits at once (status 130; acknowledged writes are
safe in the log either way).

Examples:
  amberdb serve                                   127.0.0.1:7070, data in ./amberdb-data
  amberdb serve --listen 0.0.0.0:7070 --config /etc/amberdb.toml
  amberdb serve --data /var/lib/amberdb --set limits.request_timeout_ms=5000
  amberdb serve --tls-cert cert.pem --tls-key key.pem"#
)]
pub struct Args {
    /// Config file (TOML); default ./amberdb.toml if it exists.
    #[arg(long, env = "AMBERDB_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7070] (config key: listen).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Data directory [default: ./amberdb-data] (config key: data).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Allow a non-loopback listen address without tokens: anyone who can reach it can do anything.
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// PEM certificate chain: serve HTTPS (needs --tls-key).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Encryption key file, 32 raw bytes or base64 (encryption.key_file).
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Largest request body, e.g. 32MiB (limits.body_bytes).
    #[arg(long, value_name = "BYTES")]
    pub body_limit: Option<String>,
    /// Request deadline in milliseconds (limits.request_timeout_ms).
    #[arg(long, value_name = "MS")]
    pub request_timeout_ms: Option<u64>,
    /// Most API requests handled at once (limits.concurrency).
    #[arg(long, value_name = "N")]
    pub concurrency: Option<u64>,
    /// Durability of writes without an Amber-Durability header (durability.default).
    #[arg(long, value_enum)]
    pub durability: Option<DurabilityArg>,
    /// Set any config option: --set limits.concurrency=256 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Check the configuration, print the effective values and exit.
    #[arg(long)]
    pub check_config: bool,
}

impl Args {
    fn flags(&self) -> Result<Vec<(String, String)>, CliError> {
        let mut f = vec![];
        for kv in &self.set {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| CliError::usage(format!("--set {kv:?}: expected KEY=VALUE")))?;
            f.push((k.trim().to_owned(), v.to_owned()));
        }
        let mut push = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                f.push((k.to_owned(), v));
            }
        };
        push("listen", self.listen.clone());
        push("data", self.data.as_ref().map(|p| p.display().to_string()));
        push(
            "insecure_no_auth",
            self.insecure_no_auth.then(|| "true".to_owned()),
        );
        push(
            "tls.cert",
            self.tls_cert.as_ref().map(|p| p.display().to_string()),
        );
        push(
            "tls.key",
            self.tls_key.as_ref().map(|p| p.display().to_string()),
        );
        push(
            "encryption.key_file",
            self.key_file.as_ref().map(|p| p.display().to_string()),
        );
        push("limits.body_bytes", self.body_limit.clone());
        push(
            "limits.request_timeout_ms",
            self.request_timeout_ms.map(|v| v.to_string()),
        );
        push(
            "limits.concurrency",
            self.concurrency.map(|v| v.to_string()),
        );
        push(
            "durability.default",
            self.durability.map(|d| d.header().to_owned()),
        );
        Ok(f)
    }
}

pub fn run(a: Args) -> CliResult {
    let file = a.config.clone().or_else(|| {
        let default = PathBuf::from("amberdb.toml");
        default.is_file().then_some(default)
    });
    let config = Config::load(file.as_deref(), std::env::vars(), &a.flags()?).map_err(|e| {
        CliError::new(USAGE, e.to_string())
            .hint("docs/CONFIG.md lists every option, its default and its environment variable")
    })?;
    if a.check_config {
        println!(
            "config ok: listen {} data {} tls {} tokens {}",
            config.listen,
            config.data.display(),
            config.tls.is_some(),
            config.tokens.len()
        );
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("amberdb-http")
        .build()
        .map_err(|e| CliError::new(ERROR, format!("starting the async runtime: {e}")))?;
    runtime.block_on(async move {
        let data = config.data.clone();
        let server = Server::bind(config).await.map_err(start_error)?;
        let scheme = if server.is_tls() { "https" } else { "http" };
        // One line on stdout with the bound address (port 0 picks one): scripts wait for it.
        println!(
            "amberdb: serving {scheme}://{} (data {})",
            server.local_addr(),
            data.display()
        );
        let _ = std::io::stdout().flush();
        server
            .run(amberdb_server::shutdown_signal())
            .await
            .map_err(start_error)?;
        println!("amberdb: stopped cleanly");
        Ok(())
    })
}

fn start_error(e: StartError) -> CliError {
    let hint = match &e {
        StartError::Open {
            source: amberdb::Error::Locked { .. },
            ..
        } => Some(
            "another amberdb process has this data directory open; stop it or use another --data",
        ),
        StartError::Bind { .. } => Some("the port may be in use; choose another with --listen"),
        StartError::Tls(_) => Some("check --tls-cert / --tls-key (PEM files)"),
        _ => None,
    };
    let code = if matches!(e, StartError::Config(_)) {
        USAGE
    } else {
        ERROR
    };
    let err = CliError::new(code, e.to_string());
    match hint {
        Some(h) => err.hint(h),
        None => err,
    }
}

//! `amberdb`: the operations CLI. Each command lives in its own file under `commands/`; this
//! file only parses arguments, sets up logging and turns errors into exit codes:
//! 0 ok, 1 error, 2 usage, 3 not found.

mod client;
mod commands;
mod exit;
mod progress;

use clap::{Parser, Subcommand};

use exit::CliError;

/// jemalloc instead of the system allocator: glibc malloc slowed a bulk load 2.6x on a heap of
/// millions of small, long-lived allocations (`docs/BENCHMARKS.md`, "Bulk load").
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// AmberDB: a durable, versioned document store for game and app state.
///
/// Every command that takes --data works directly on a data directory (the directory is
/// locked while a command or a server has it open); get, put, delete, list and txn also take
/// --url (AMBERDB_URL) to work through a running `amberdb serve`, with --token
/// (AMBERDB_TOKEN). Output is JSON where a program may read it; errors go to stderr with a hint.
#[derive(Parser)]
#[command(name = "amberdb", version, about, long_about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr: text (colour only on a terminal, never with NO_COLOR set) or json
    /// (one object per line, for log shippers).
    #[arg(long, global = true, env = "AMBERDB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Store a document (create or overwrite); prints its envelope.
    Put(commands::put::Args),
    /// Print a document's envelope (exit 3 when missing).
    Get(commands::get::Args),
    /// A document's versions (and deletes) in the history window, newest first.
    History(commands::history::Args),
    /// Delete a document (exit 3 when it did not exist).
    Delete(commands::delete::Args),
    /// List a collection's documents in key order, one page at a time.
    List(commands::list::Args),
    /// Commit an atomic batch of operations (JSON, as POST /v1/txn takes it).
    Txn(commands::txn::Args),
    /// Run the HTTP/JSON server (127.0.0.1:7070, data in ./amberdb-data by default).
    Serve(commands::serve::Args),
    /// Bearer tokens for the server.
    #[command(subcommand)]
    Token(commands::token::Token),
    /// Check every checksum in a data directory (safe while it is in use).
    Verify(commands::verify::Args),
    /// Write a checkpoint now and remove log segments no checkpoint needs.
    Checkpoint(commands::checkpoint::Args),
    /// Show LSNs, sizes, collections and commit/fsync counters.
    Stats(commands::stats::Args),
    /// Built-in load generators.
    #[command(subcommand)]
    Bench(commands::bench::Bench),
    /// Backups: create, list, verify, prune, detach.
    #[command(subcommand)]
    Backup(commands::backup::Backup),
    /// Binary blobs: put, get, rm, ls.
    #[command(subcommand)]
    Blob(commands::blob::Blob),
    /// Restore a backup, a point in time or an LSN into a new directory.
    Restore(commands::restore::Args),
    /// List commits with time, LSN and what they touched (to pick a restore point).
    Log(commands::log::Args),
    /// Encryption keys: a key file's id, the key ids a directory or repository needs.
    #[command(subcommand)]
    Key(commands::key::Key),
    /// Put documents back to their state at a time or LSN, as one new logged transaction.
    Revert(commands::revert::Args),
    /// Undo one commit: its documents go back to their state just before it.
    Undo(commands::revert::UndoArgs),
    /// A collection's spec (schema versions, JSON Schemas, migrations): get, or set from a
    /// JSON or TOML file.
    #[command(subcommand)]
    Spec(commands::spec::SpecCommand),
    /// Move every document of a collection to one schema version (one atomic commit), or
    /// --dry-run to check.
    Migrate(commands::migrate::Args),
}

fn main() {
    let cli = Cli::parse();
    // The server logs what it does (start, drain, close) by default; other commands only warn.
    let default_log = if matches!(cli.command, Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("AMBERDB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log));
    // Lines go through a bounded queue to stderr: a failing or blocked stderr drops (and
    // counts) lines, it never panics or stalls a request.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(amberdb_server::logging::Sink);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => {
            use std::io::IsTerminal as _;
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder.with_ansi(colour).init()
        }
    }
    let result = match cli.command {
        Command::Put(a) => commands::put::run(a),
        Command::Get(a) => commands::get::run(a),
        Command::History(a) => commands::history::run(a),
        Command::Delete(a) => commands::delete::run(a),
        Command::List(a) => commands::list::run(a),
        Command::Txn(a) => commands::txn::run(a),
        Command::Serve(a) => commands::serve::run(a),
        Command::Token(t) => commands::token::run(t),
        Command::Verify(a) => commands::verify::run(a),
        Command::Checkpoint(a) => commands::checkpoint::run(a),
        Command::Stats(a) => commands::stats::run(a),
        Command::Bench(b) => commands::bench::run(b),
        Command::Backup(b) => commands::backup::run(b),
        Command::Restore(a) => commands::restore::run(a),
        Command::Blob(b) => commands::blob::run(b),
        Command::Log(a) => commands::log::run(a),
        Command::Key(k) => commands::key::run(k),
        Command::Revert(a) => commands::revert::run(a),
        Command::Undo(a) => commands::revert::run_undo(a),
        Command::Spec(c) => commands::spec::run(c),
        Command::Migrate(a) => commands::migrate::run(a),
    };
    let code = match result {
        Ok(()) => 0,
        Err(e) => e.report(),
    };
    amberdb_server::logging::flush(std::time::Duration::from_secs(2));
    if code != 0 {
        std::process::exit(code);
    }
}

#[allow(dead_code)]
fn _assert_error_type(_: CliError) {}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}

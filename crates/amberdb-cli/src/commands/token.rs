//! `amberdb token create`: make a bearer token for the server.

use amberdb_server::auth::{config_entry, new_token, Scope};

use crate::exit::{CliError, CliResult};

#[derive(clap::Subcommand, Debug)]
pub enum Token {
    /// Create a token: prints it once, and the `[[auth.tokens]]` entry for amberdb.toml.
    Create(CreateArgs),
}

#[derive(clap::Args, Debug)]
#[command(after_help = r#"Scopes:
  read:<glob>    read documents of matching collections (GET, list, export, txn check)
  write:<glob>   write documents of matching collections (PUT, PATCH, DELETE, txn writes)
  admin          everything, including /v1/admin/* and /metrics
Globs match collection names with * and ?: "players*", "*.eu", "*".

The server stores only the SHA-256 of the token, so the token itself is shown once: keep it
in your secret store, paste the printed entry into amberdb.toml, and restart the server.

Example:
  amberdb token create --name game-server --scope read:players* --scope write:players*"#)]
pub struct CreateArgs {
    /// A name for logs and error messages (not secret).
    #[arg(long)]
    pub name: String,
    /// A scope; repeat for several.
    #[arg(long = "scope", value_name = "SCOPE", required = true)]
    pub scopes: Vec<String>,
    /// Print {"name", "token", "sha256", "scopes"} as JSON instead.
    #[arg(long)]
    pub json: bool,
}

pub fn run(t: Token) -> CliResult {
    match t {
        Token::Create(a) => create(a),
    }
}

fn create(a: CreateArgs) -> CliResult {
    if a.name.trim().is_empty() {
        return Err(CliError::usage("--name must not be empty"));
    }
    let scopes = a
        .scopes
        .iter()
        .map(|s| s.parse::<Scope>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(CliError::usage)?;
    let (token, sha256) = new_token();
    if a.json {
        let scopes: Vec<String> = scopes.iter().map(ToString::to_string).collect();
        super::print_json(
            &serde_json::json!({"name": a.name, "token": token, "sha256": sha256, "scopes": scopes}),
        );
    } else {
        println!("token (shown once; give it to the client as AMBERDB_TOKEN or an Authorization: Bearer header):");
        println!("{token}");
        println!();
        println!("add this to amberdb.toml and restart the server:");
        print!("{}", config_entry(&a.name, &sha256, &scopes));
    }
    Ok(())
}

//! `amberdb spec get|set`: a collection's spec (schema versions, JSON Schemas, migrations,
//! default TTL; docs/SCHEMAS.md), read or stored from a JSON or TOML file, on a data
//! directory or through a server.

use std::path::PathBuf;

use serde_json::Value;

use super::{print_json, Target, TargetArgs};
use crate::client::segment;
use crate::exit::{CliError, CliResult};

/// Spec commands.
#[derive(clap::Subcommand, Debug)]
pub enum SpecCommand {
    /// Print a collection's spec as JSON (or TOML with --toml).
    Get(GetArgs),
    /// Store a collection's spec from a JSON or TOML file (validated first; refused with the
    /// exact reason). Top-level fields the file leaves out keep what is stored.
    #[command(after_help = "The file has the shape of PUT /v1/collections/{c}/spec \
(docs/SCHEMAS.md), as JSON or, for a .toml file, TOML:

  schema_version = 2
  [versions.1.schema]
  type = \"object\"
  required = [\"name\"]
  [versions.2.schema]
  type = \"object\"
  required = [\"name\", \"inventory\"]
  [[migrations]]
  from = 1
  to = 2
  up = [{ op = \"set_default\", path = \"/inventory\", value = [] }]
  down = [{ op = \"remove\", path = \"/inventory\" }]

  amberdb spec set --data ./db players players.toml
  amberdb spec set --url http://127.0.0.1:7070 players players.json
  amberdb spec get --data ./db players

Changing a migration that a batch migration has applied is refused unless --force (the force is
recorded in the spec's `forced`). Then move the stored documents with `amberdb migrate`, or let
reads upgrade them lazily.

Exit status: 0 stored; 1 failed (I/O, the server unreachable); 2 bad arguments, a file that
does not parse, or a spec refused (a version gap, a JSON Schema that does not compile, an
applied migration changed without --force), on a data directory as through a server.")]
    Set(SetArgs),
}

/// `spec get`.
#[derive(clap::Args, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Collection name.
    pub collection: String,
    /// Print TOML instead of JSON (a spec without nulls; `default_ttl_s = null` is left out).
    #[arg(long)]
    pub toml: bool,
}

/// `spec set`.
#[derive(clap::Args, Debug)]
pub struct SetArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Collection name.
    pub collection: String,
    /// The spec file: `.toml` is read as TOML, anything else as JSON; `-` reads JSON from
    /// stdin.
    pub file: PathBuf,
    /// Allow changing or removing a migration that has been applied (recorded).
    #[arg(long)]
    pub force: bool,
}

pub fn run(c: SpecCommand) -> CliResult {
    match c {
        SpecCommand::Get(a) => get(a),
        SpecCommand::Set(a) => set(a),
    }
}

fn spec_path(collection: &str) -> String {
    format!("/v1/collections/{}/spec", segment(collection))
}

fn get(a: GetArgs) -> CliResult {
    amberdb::validate_collection(&a.collection)?;
    let spec = match a.target.open_existing()? {
        Target::Local(db) => {
            let spec = db.spec(&a.collection);
            db.close()?;
            serde_json::to_value(spec?).map_err(|e| CliError::new(1, e.to_string()))?
        }
        Target::Remote(client) => {
            crate::client::check(client.send("GET", &spec_path(&a.collection), &[], None)?)?
                .json()?
        }
    };
    print_spec(&spec, a.toml)
}

fn print_spec(spec: &Value, toml: bool) -> CliResult {
    if !toml {
        print_json(spec);
        return Ok(());
    }
    let mut v = spec.clone();
    if let Some(o) = v.as_object_mut() {
        o.retain(|_, x| !x.is_null());
    }
    let text = toml::to_string_pretty(&v)
        .map_err(|e| CliError::new(1, format!("the spec has no TOML form: {e}")))?;
    print!("{text}");
    Ok(())
}

/// The spec in `file` as JSON: TOML for a `.toml` file, JSON otherwise (`-`: stdin).
fn read_spec(file: &std::path::Path) -> Result<Value, CliError> {
    let is_toml = file.extension().is_some_and(|e| e == "toml");
    let text = if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        s
    } else {
        if std::fs::metadata(file).map(|m| m.len()).unwrap_or(0)
            > amberdb::limits::MAX_SPEC_BYTES as u64
        {
            return Err(CliError::usage(format!(
                "{} is larger than a spec may be ({} bytes)",
                file.display(),
                amberdb::limits::MAX_SPEC_BYTES
            )));
        }
        std::fs::read_to_string(file)
            .map_err(|e| CliError::usage(format!("cannot read {}: {e}", file.display())))?
    };
    let v: Value = if is_toml {
        toml::from_str(&text)
            .map_err(|e| CliError::usage(format!("{} is not valid TOML: {e}", file.display())))?
    } else {
        amberdb::json_numbers::check(text.as_bytes())
            .map_err(|e| CliError::usage(e.to_string()))?;
        serde_json::from_str(&text)
            .map_err(|e| CliError::usage(format!("{} is not valid JSON: {e}", file.display())))?
    };
    if !v.is_object() {
        return Err(CliError::usage(format!(
            "{}: a spec is an object ({{\"schema_version\": ..., \"versions\": ..., \"migrations\": ...}})",
            file.display()
        )));
    }
    Ok(v)
}

fn set(a: SetArgs) -> CliResult {
    amberdb::validate_collection(&a.collection)?;
    let new = read_spec(&a.file)?;
    let stored = match a.target.open_existing()? {
        Target::Local(db) => {
            let r = (|| -> Result<Value, CliError> {
                // Fields the file leaves out keep what is stored (as PUT .../spec does).
                let mut merged = serde_json::to_value(db.spec(&a.collection)?)
                    .map_err(|e| CliError::new(1, e.to_string()))?;
                if let (Some(m), Some(n)) = (merged.as_object_mut(), new.as_object()) {
                    for (k, v) in n {
                        if k != "forced" {
                            m.insert(k.clone(), v.clone());
                        }
                    }
                }
                let spec: amberdb::spec::CollectionSpec = serde_json::from_value(merged)
                    .map_err(|e| CliError::usage(format!("invalid spec: {e}")))?;
                // A refused spec (a gap, a schema that does not compile, an applied
                // migration changed without --force) is `InvalidArgument`: exit 2, as its
                // 400 is through a server.
                db.set_spec_with(
                    &a.collection,
                    &spec,
                    amberdb::spec::SetSpecOptions { force: a.force },
                )
                .map_err(crate::exit::input_error)?;
                serde_json::to_value(db.spec(&a.collection)?)
                    .map_err(|e| CliError::new(1, e.to_string()))
            })();
            db.close()?;
            r?
        }
        Target::Remote(client) => {
            let path = format!(
                "{}{}",
                spec_path(&a.collection),
                if a.force { "?force=true" } else { "" }
            );
            let body = serde_json::to_vec(&new).map_err(|e| CliError::new(1, e.to_string()))?;
            crate::client::check(client.send(
                "PUT",
                &path,
                &[("content-type", "application/json".into())],
                Some(body),
            )?)?
            .json()?
        }
    };
    print_json(&stored);
    Ok(())
}

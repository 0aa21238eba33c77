//! Schemas and migrations: the declarative steps ([`steps`]), the sandboxed jq step
//! ([`jq`]), compiled specs and their cache ([`validate`]), up and down chains ([`chain`]),
//! the rule for old clients' writes ([`carry`]) and reads at a version ([`Reader`]), and batch migrations (`Db::migrate`). The spec document itself is
//! [`crate::spec`]'s; the committer calls in here to validate and upgrade writes.
//! See docs/SCHEMAS.md.

pub(crate) mod carry;
pub(crate) mod chain;
mod jq;
mod migrate;
mod read;
mod steps;
mod validate;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

pub use migrate::{
    AppliedMigration, MigrateOptions, MigrationFailure, MigrationReport, MAX_DRY_RUN_SAMPLES,
    MIGRATIONS_COLLECTION,
};
pub use read::{Reader, VersionedDoc};
pub(crate) use steps::Runner;
pub use steps::Step;
pub(crate) use validate::compiled;
pub use validate::{CompiledSpec, SchemaError};

/// A Rust function used as a migration step (`{"op": "native", "name": ...}`).
pub type NativeFn = dyn Fn(Value) -> std::result::Result<Value, String> + Send + Sync;

/// The Rust migration steps an embedded user registers ([`crate::Options::native_steps`]).
///
/// They coexist with stored data steps: a spec names a native step by `name` like any other
/// step, so the spec (stored in the database, carried by backups and PITR) still says where
/// Rust code runs; this process supplies the code. A spec naming a step this process does
/// not have is refused by `Db::set_spec`, and a document whose migration needs it (opened by
/// another process without it) fails that migration with the step's name.
#[derive(Clone, Default)]
pub struct NativeSteps(Arc<BTreeMap<String, Arc<NativeFn>>>);

impl NativeSteps {
    /// Registers `f` under `name` (replacing an earlier one).
    pub fn register(
        &mut self,
        name: &str,
        f: impl Fn(Value) -> std::result::Result<Value, String> + Send + Sync + 'static,
    ) -> &mut Self {
        Arc::make_mut(&mut self.0).insert(name.to_owned(), Arc::new(f));
        self
    }

    /// Whether a step is registered under `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

impl std::fmt::Debug for NativeSteps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Runner for NativeSteps {
    fn jq(&self, filter: &str, doc: Value) -> std::result::Result<Value, String> {
        jq::run(filter, doc)
    }

    fn native(&self, name: &str, doc: Value) -> std::result::Result<Value, String> {
        match self.0.get(name) {
            Some(f) => f(doc),
            None => Err(format!(
                "native step {name:?} is not registered in this process"
            )),
        }
    }
}

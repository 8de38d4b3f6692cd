//! `scopable-host db copy --to URL`: moving an installation from its SQLite file to a
//! PostgreSQL server, every account's rows and stored keys in one transaction.

use crate::output::{print_json, print_line};
use scopable_sandbox::display::safe;
use scopable_store::copy::{self, CopyError, MasterKeys};
use scopable_store::location::is_postgres_url;
use scopable_store::vault::{MASTER_KEY_ENV, Vault, VaultError};
use scopable_store::{DEFAULT_ACCOUNT, Db, Location};
use scopable_sync::app::{AppError, Exit};
use serde_json::json;

/// One `db` subcommand.
#[derive(Debug, clap::Subcommand)]
pub enum DbCommand {
    /// Copy every account's data from the SQLite file (--db) into an empty PostgreSQL
    /// database, in one transaction; stored keys are re-encrypted under SCOPABLE_VAULT_KEY.
    Copy {
        /// The PostgreSQL database to copy into (it must be empty):
        /// postgres://user:password@host:port/database.
        #[arg(long, value_name = "URL")]
        to: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `db` subcommand on the database `db_path` (`--db`).
pub fn db_command(db_path: &Location, command: DbCommand) -> Result<(), AppError> {
    match command {
        DbCommand::Copy { to, json } => copy_command(db_path, &to, json),
    }
}

/// `db copy --to URL [--json]`: the SQLite file `source` (only read) into the empty
/// PostgreSQL database `to`, with one line per table and its rows.
fn copy_command(source: &Location, to: &str, json: bool) -> Result<(), AppError> {
    if source.is_postgres() {
        return Err(AppError::new(
            Exit::Usage,
            format!(
                "db copy copies a SQLite file, and --db names the PostgreSQL database {}; give --db the SQLite file to copy",
                safe(&source.shown())
            ),
        ));
    }
    if !is_postgres_url(to) {
        return Err(AppError::new(
            Exit::Usage,
            "--to must be the PostgreSQL database to copy into: postgres://user:password@host:port/database",
        ));
    }
    let target =
        Location::parse(to).map_err(|e| AppError::new(Exit::Usage, format!("--to: {e}")))?;
    // A server has no key file: its master key is the environment's, or the copy cannot
    // re-encrypt the stored keys for it.
    let target_key = Vault::open(&target, false)?.ok_or(VaultError::KeyRequired)?;
    let from = Db::open_read_only(source, DEFAULT_ACCOUNT)?;
    let source_key = copy::source_master_key(&from)
        .map_err(copy_error)?
        .ok_or(VaultError::KeyRequired)?;
    let mut into = Db::open(&target, DEFAULT_ACCOUNT)?;
    let keys = MasterKeys {
        source: &source_key,
        target: &target_key,
    };
    let copied = copy::copy(&from, &mut into, Some(keys)).map_err(copy_error)?;
    let (from_shown, to_shown) = (source.shown(), target.shown());
    if json {
        let tables: serde_json::Map<String, serde_json::Value> = copied
            .tables
            .iter()
            .map(|(name, rows)| (name.clone(), json!(rows)))
            .collect();
        print_json(&json!({
            "from": from_shown,
            "to": to_shown,
            "tables": tables,
            "rows": copied.rows(),
            "keys_resealed": copied.keys_resealed,
        }));
        return Ok(());
    }
    let width = copied
        .tables
        .iter()
        .map(|(name, _)| name.len())
        .max()
        .unwrap_or(0);
    for (name, rows) in &copied.tables {
        print_line(format_args!("{:<width$}  {rows}", safe(name)));
    }
    print_line(format_args!(
        "Copied {} rows from {} into {}; {} stored key(s) re-encrypted under {MASTER_KEY_ENV}.",
        copied.rows(),
        safe(&from_shown),
        safe(&to_shown),
        copied.keys_resealed
    ));
    Ok(())
}

/// A refused or failed copy as the command line's exit status: bad data (a target in use,
/// schemas or keys that do not fit) is 6, as for `vault rotate`.
fn copy_error(e: CopyError) -> AppError {
    match e {
        CopyError::Db(e) => e.into(),
        CopyError::Vault(e) => e.into(),
        e @ (CopyError::SourceNotSqlite { .. } | CopyError::TargetNotPostgres { .. }) => {
            AppError::new(Exit::Usage, e.to_string())
        }
        e => AppError::new(Exit::BadInput, e.to_string()),
    }
}

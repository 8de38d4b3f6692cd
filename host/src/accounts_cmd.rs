//! `scopable-host accounts ...` and `vault rotate`: the operator's commands for tenants,
//! their tokens and feature flags, and the master key.

use crate::output::{print_json, print_line};
use scopable_sandbox::display::safe;
use scopable_store::accounts::{self, Role};
use scopable_store::{DEFAULT_ACCOUNT, Db, Location};
use scopable_sync::app::{AppError, Exit};
use serde_json::json;

/// One `accounts` subcommand.
#[derive(Debug, clap::Subcommand)]
pub enum AccountsCommand {
    /// Create an account, with every feature disabled.
    Add {
        /// The account id: lowercase letters, digits and dashes, at most 63.
        id: String,
        /// A name for people.
        #[arg(long)]
        name: Option<String>,
    },
    /// Make a token for an account and print it (shown once; only its hash is kept).
    Token {
        /// The account.
        id: String,
        /// What the token may do.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List an account's tokens.
    Tokens {
        /// The account.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// End a token and its sessions at once.
    Revoke {
        /// The token's id (`tok_...`).
        token_id: String,
    },
    /// Switch a feature on for an account.
    Enable {
        /// The account.
        id: String,
        /// The feature (`itglue`).
        feature: String,
    },
    /// Switch a feature off for an account.
    Disable {
        /// The account.
        id: String,
        /// The feature (`itglue`).
        feature: String,
    },
    /// List the accounts.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete an account and all of its data (records, links, key, tokens, audit).
    Remove {
        /// The account.
        id: String,
    },
}

/// A role, as named on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    /// Reads and changes everything of the account.
    Admin,
    /// Reads only.
    Viewer,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Admin => Role::Admin,
            RoleArg::Viewer => Role::Viewer,
        }
    }
}

/// The features an account can have.
const FEATURES: &[&str] = &[accounts::ITGLUE];

fn store_error(e: impl std::fmt::Display) -> AppError {
    AppError::new(Exit::BadInput, e.to_string())
}

fn known_account(db: &Db, id: &str) -> Result<accounts::Account, AppError> {
    accounts::get(db, id).map_err(store_error)?.ok_or_else(|| {
        AppError::new(
            Exit::BadInput,
            format!(
                "no account {:?}; list them with `scopable-host accounts list`",
                safe(id)
            ),
        )
    })
}

/// Runs one `accounts` subcommand as `actor`.
pub fn accounts_command(
    db_path: &Location,
    command: AccountsCommand,
    actor: &str,
) -> Result<(), AppError> {
    let db = Db::open(db_path, DEFAULT_ACCOUNT)?;
    match command {
        AccountsCommand::Add { id, name } => {
            let account = accounts::add(&db, &id, name.as_deref(), actor).map_err(store_error)?;
            print_line(format_args!(
                "Added account {} with every feature disabled; enable one with `scopable-host accounts enable {} itglue`.",
                safe(&account.id),
                safe(&account.id)
            ));
        }
        AccountsCommand::Token { id, role, json } => {
            known_account(&db, &id)?;
            let role: Role = role.into();
            let made = accounts::create_token(&db, &id, role, actor).map_err(store_error)?;
            if json {
                print_json(&json!({
                    "account": id,
                    "role": role.as_str(),
                    "token_id": made.token_id,
                    "token": made.token,
                }));
            } else {
                print_line(format_args!("{}", made.token));
            }
        }
        AccountsCommand::Tokens { id, json } => {
            known_account(&db, &id)?;
            let tokens = accounts::tokens(&db, &id).map_err(store_error)?;
            if json {
                print_json(&serde_json::to_value(&tokens).unwrap_or_else(|_| json!([])));
                return Ok(());
            }
            if tokens.is_empty() {
                print_line(format_args!(
                    "No tokens; make one with `scopable-host accounts token {} --role admin`.",
                    safe(&id)
                ));
            }
            for t in &tokens {
                print_line(format_args!(
                    "{}  {:<6}  made {} by {}{}",
                    safe(&t.token_id),
                    t.role.as_str(),
                    safe(&t.created_at),
                    safe(&t.created_by),
                    match &t.revoked_at {
                        Some(at) => format!("  revoked {}", safe(at)),
                        None => String::new(),
                    }
                ));
            }
        }
        AccountsCommand::Revoke { token_id } => {
            if !accounts::revoke(&db, &token_id, actor).map_err(store_error)? {
                return Err(AppError::new(
                    Exit::BadInput,
                    format!(
                        "no live token {:?}; list them with `scopable-host accounts tokens ACCOUNT`",
                        safe(&token_id)
                    ),
                ));
            }
            print_line(format_args!(
                "Revoked {}: it and its sessions no longer work.",
                safe(&token_id)
            ));
        }
        AccountsCommand::Enable { id, feature } | AccountsCommand::Disable { id, feature }
            if !FEATURES.contains(&feature.as_str()) =>
        {
            let _ = id;
            return Err(AppError::new(
                Exit::Usage,
                format!(
                    "no feature {:?}; the features are: {}",
                    safe(&feature),
                    FEATURES.join(", ")
                ),
            ));
        }
        AccountsCommand::Enable { id, feature } => {
            known_account(&db, &id)?;
            accounts::set_feature(&db, &id, &feature, true, actor).map_err(store_error)?;
            print_line(format_args!(
                "Enabled {} for account {}.",
                safe(&feature),
                safe(&id)
            ));
        }
        AccountsCommand::Disable { id, feature } => {
            known_account(&db, &id)?;
            accounts::set_feature(&db, &id, &feature, false, actor).map_err(store_error)?;
            print_line(format_args!(
                "Disabled {} for account {}.",
                safe(&feature),
                safe(&id)
            ));
        }
        AccountsCommand::List { json } => {
            let all = accounts::list(&db).map_err(store_error)?;
            if json {
                print_json(&serde_json::to_value(&all).unwrap_or_else(|_| json!([])));
                return Ok(());
            }
            if all.is_empty() {
                print_line(format_args!(
                    "No accounts yet; add one with `scopable-host accounts add ID`."
                ));
            }
            for a in &all {
                print_line(format_args!(
                    "{:<24} {:<32} features: {}",
                    safe(&a.id),
                    safe(a.name.as_deref().unwrap_or("")),
                    if a.features.is_empty() {
                        "none".to_string()
                    } else {
                        a.features.join(", ")
                    }
                ));
            }
        }
        AccountsCommand::Remove { id } => {
            if !accounts::remove(&db, &id, actor).map_err(store_error)? {
                return Err(AppError::new(
                    Exit::BadInput,
                    format!("no account {:?}", safe(&id)),
                ));
            }
            print_line(format_args!(
                "Removed account {} and all of its data.",
                safe(&id)
            ));
        }
    }
    Ok(())
}

/// The variable holding the new master key when the current one is in the environment.
pub const NEW_MASTER_KEY_ENV: &str = "SCOPABLE_NEW_VAULT_KEY";

/// `vault rotate`: every stored key of every account re-encrypted under a new master key in
/// one transaction. With the key in a file, the new key is written beside it first, the keys
/// are re-sealed, then the new file replaces the old; with the key in `SCOPABLE_VAULT_KEY`,
/// the new key comes from `SCOPABLE_NEW_VAULT_KEY` (the operator keeps both).
pub fn vault_rotate(db_path: &Location) -> Result<(), AppError> {
    use scopable_store::vault::{self, MASTER_KEY_ENV, Vault};
    let db = Db::open(db_path, DEFAULT_ACCOUNT)?;
    let old = scopable_store::connections::open_vault(&db, false)?.ok_or_else(|| {
        AppError::new(
            Exit::BadInput,
            format!(
                "no master key to rotate from: set {MASTER_KEY_ENV} or keep {} beside the database",
                db_path
                    .file()
                    .map(|f| vault::key_file_for(f).display().to_string())
                    .unwrap_or_default()
            ),
        )
    })?;
    let rotate = |new: &Vault| {
        scopable_store::connections::rotate(&db, &old, new)
            .map_err(|e| AppError::new(Exit::BadInput, e.to_string()))
    };
    if std::env::var_os(MASTER_KEY_ENV).is_some() {
        let given = std::env::var(NEW_MASTER_KEY_ENV).map_err(|_| {
            AppError::new(
                Exit::Usage,
                format!("the master key is in {MASTER_KEY_ENV}: put the new one (base64 of 32 random bytes) in {NEW_MASTER_KEY_ENV} and run this again"),
            )
        })?;
        let new = Vault::from_base64(&given, NEW_MASTER_KEY_ENV)?;
        let count = rotate(&new)?;
        print_line(format_args!(
            "Re-encrypted {count} stored key(s) under the new master key. Set {MASTER_KEY_ENV} to the value of {NEW_MASTER_KEY_ENV} from now on."
        ));
        return Ok(());
    }
    // Without the key in the environment the database is a file (a PostgreSQL database
    // needs the environment's key, checked above).
    let Some(file) = db_path.file() else {
        return Err(AppError::new(
            Exit::Usage,
            vault::VaultError::KeyRequired.to_string(),
        ));
    };
    let key_file = vault::key_file_for(file);
    let mut pending = key_file.as_os_str().to_owned();
    pending.push(".new");
    let pending = std::path::PathBuf::from(pending);
    let new = Vault::generate();
    new.write_key_file(&pending)?;
    let count = match rotate(&new) {
        Ok(count) => count,
        Err(e) => {
            let _ = std::fs::remove_file(&pending);
            return Err(e);
        }
    };
    std::fs::rename(&pending, &key_file).map_err(|e| {
        AppError::new(
            Exit::Failure,
            format!(
                "the stored keys are re-encrypted under the new master key in {}, but it could not replace {} ({e}); move it there by hand",
                pending.display(),
                key_file.display()
            ),
        )
    })?;
    print_line(format_args!(
        "Re-encrypted {count} stored key(s) under a new master key, now in {}.",
        key_file.display()
    ));
    Ok(())
}

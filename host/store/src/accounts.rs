//! Accounts (Scopable tenants) and their features; the tokens that act for an account and the
//! sessions a token signs in; and each account's events, the state changes that are neither a
//! decision nor a sync run.
//!
//! Operator-level functions (managing accounts and tokens, authenticating) take explicit ids
//! and are not limited by the handle's account; each says so. The others act for the handle's
//! account only.

use crate::db::{self, DbError, now_ms};
use crate::handle::Db;
use crate::vault::random_hex;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// The feature that gives an account the IT Glue integration (named after its connector).
pub const ITGLUE: &str = "itglue";

/// Every table holding an account's rows, with the column naming the account, in the order
/// [`remove`] deletes them (a configuration before its client).
const ACCOUNT_TABLES: &[(&str, &str)] = &[
    ("configurations", "account"),
    ("clients", "account"),
    ("connections", "account"),
    ("links", "account"),
    ("decisions", "account"),
    ("unplaced", "account"),
    ("source_records", "account"),
    ("sync_runs", "account"),
    ("audit", "account"),
    ("kv", "account"),
    ("request_budget", "account"),
    ("decision_log", "account"),
    ("sessions", "account"),
    ("tokens", "account"),
    ("events", "account"),
    ("schedules", "account"),
    ("account_features", "account"),
    ("accounts", "id"),
];

/// How long an authentication may go without updating its token's `last_used_at`.
const LAST_USED_EVERY: Duration = Duration::from_secs(60);

/// Whether `id` is a usable account id: 1 to 63 lowercase ASCII letters, digits and dashes,
/// not starting with a dash (`[a-z0-9][a-z0-9-]{0,62}`).
pub fn valid_account_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0] != b'-'
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// An account or token operation that cannot be done, phrased for the operator.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The id is not a usable account id.
    #[error(
        "{id:?} is not a valid account id; use 1 to 63 lowercase letters, digits and dashes, starting with a letter or digit"
    )]
    InvalidId {
        /// The id given.
        id: String,
    },
    /// An account with this id already exists.
    #[error(
        "the account {id:?} already exists; choose another id, or list them with `scopable-host accounts list`"
    )]
    Exists {
        /// The id given.
        id: String,
    },
    /// No account has this id.
    #[error(
        "there is no account {id:?}; list them with `scopable-host accounts list`, or create it with `scopable-host accounts add {id}`"
    )]
    NotFound {
        /// The id given.
        id: String,
    },
    /// The feature name is not usable.
    #[error(
        "{feature:?} is not a feature name; features are named like connectors, for example `{ITGLUE}`"
    )]
    InvalidFeature {
        /// The name given.
        feature: String,
    },
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<rusqlite::Error> for AccountError {
    fn from(e: rusqlite::Error) -> AccountError {
        AccountError::Db(e.into())
    }
}

/// An account, with the features enabled for it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Account {
    /// Its id.
    pub id: String,
    /// Its display name, if it has one.
    pub name: Option<String>,
    /// When it was created.
    pub created_at: String,
    /// The features enabled for it, by name.
    pub features: Vec<String>,
}

/// Creates the account `id` (named `name`), with every feature disabled and a vault binding
/// of its own, recorded as an event of `actor` in it. Operator-level: `db`'s account does not
/// limit it. Refused when the id is invalid or taken.
pub fn add(db: &Db, id: &str, name: Option<&str>, actor: &str) -> Result<Account, AccountError> {
    if !valid_account_id(id) {
        return Err(AccountError::InvalidId { id: id.to_string() });
    }
    let tx =
        rusqlite::Transaction::new_unchecked(db.conn(), rusqlite::TransactionBehavior::Immediate)?;
    if account_exists(&tx, id)? {
        return Err(AccountError::Exists { id: id.to_string() });
    }
    let created_at = insert_account(&tx, id, name, actor)?;
    tx.commit()?;
    Ok(Account {
        id: id.to_string(),
        name: name.map(str::to_string),
        created_at,
        features: Vec::new(),
    })
}

/// Creates the handle's account if it does not exist yet, with [`ITGLUE`] enabled, recorded as
/// events of `actor`: the command line's account (by default `default`) is created on first
/// use, so a single admin's use needs no set-up. Returns whether it was created.
pub fn ensure_for_cli(db: &Db, actor: &str) -> Result<bool, AccountError> {
    let id = db.account();
    if !valid_account_id(id) {
        return Err(AccountError::InvalidId { id: id.to_string() });
    }
    if account_exists(db.conn(), id)? {
        return Ok(false);
    }
    let tx =
        rusqlite::Transaction::new_unchecked(db.conn(), rusqlite::TransactionBehavior::Immediate)?;
    // Another process may have created it since the look above.
    if account_exists(&tx, id)? {
        return Ok(false);
    }
    let created_at = insert_account(&tx, id, None, actor)?;
    tx.execute(
        "INSERT INTO account_features (account, feature, enabled_at) VALUES (?1, ?2, ?3)",
        params![id, ITGLUE, created_at],
    )?;
    insert_event(&tx, id, actor, "feature-enabled", Some(ITGLUE), None)?;
    tx.commit()?;
    Ok(true)
}

fn account_exists(conn: &Connection, id: &str) -> rusqlite::Result<bool> {
    Ok(conn
        .query_row("SELECT 1 FROM accounts WHERE id = ?1", [id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Inserts an account row with a new vault binding, and its creation event; returns when.
fn insert_account(
    conn: &Connection,
    id: &str,
    name: Option<&str>,
    actor: &str,
) -> rusqlite::Result<String> {
    let created_at = db::now();
    conn.execute(
        "INSERT INTO accounts (id, name, created_at, vault_binding) VALUES (?1, ?2, ?3, ?4)",
        params![id, name, created_at, random_hex(16)],
    )?;
    insert_event(conn, id, actor, "account-created", None, name)?;
    Ok(created_at)
}

/// The account `id`, if it exists. Operator-level.
pub fn get(db: &Db, id: &str) -> Result<Option<Account>, DbError> {
    Ok(list_where(db.conn(), Some(id))?.into_iter().next())
}

/// Every account, by id. Operator-level.
pub fn list(db: &Db) -> Result<Vec<Account>, DbError> {
    Ok(list_where(db.conn(), None)?)
}

fn list_where(conn: &Connection, id: Option<&str>) -> rusqlite::Result<Vec<Account>> {
    let mut stmt = conn.prepare(
        "SELECT a.id, a.name, a.created_at,
                (SELECT coalesce(json_group_array(feature), '[]')
                 FROM (SELECT feature FROM account_features f WHERE f.account = a.id
                       ORDER BY feature))
         FROM accounts a WHERE ?1 IS NULL OR a.id = ?1 ORDER BY a.id",
    )?;
    let rows = stmt.query_map([id], |r| {
        let features: String = r.get(3)?;
        Ok(Account {
            id: r.get(0)?,
            name: r.get(1)?,
            created_at: r.get(2)?,
            features: serde_json::from_str(&features).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    3,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?,
        })
    })?;
    rows.collect()
}

/// Deletes the account `id` and every row of it in every table (records, connection and key,
/// links, decisions, runs, audit, storage, budget, tokens, sessions, events, schedules), in
/// one transaction. Operator-level; `actor` is logged. Returns whether there was anything of
/// it.
pub fn remove(db: &Db, id: &str, actor: &str) -> Result<bool, AccountError> {
    let tx =
        rusqlite::Transaction::new_unchecked(db.conn(), rusqlite::TransactionBehavior::Immediate)?;
    let mut deleted = 0;
    for (table, column) in ACCOUNT_TABLES {
        deleted += tx.execute(&format!("DELETE FROM {table} WHERE {column} = ?1"), [id])?;
    }
    tx.commit()?;
    if deleted > 0 {
        tracing::info!(account = id, actor, rows = deleted, "account removed");
    }
    Ok(deleted > 0)
}

/// Enables or disables `feature` for the account `id`, recorded as an event of `actor` in it
/// when it changes. Operator-level. Returns whether it changed.
pub fn set_feature(
    db: &Db,
    id: &str,
    feature: &str,
    enabled: bool,
    actor: &str,
) -> Result<bool, AccountError> {
    if !valid_account_id(feature) {
        return Err(AccountError::InvalidFeature {
            feature: feature.to_string(),
        });
    }
    let tx =
        rusqlite::Transaction::new_unchecked(db.conn(), rusqlite::TransactionBehavior::Immediate)?;
    if !account_exists(&tx, id)? {
        return Err(AccountError::NotFound { id: id.to_string() });
    }
    let changed = if enabled {
        tx.execute(
            "INSERT OR IGNORE INTO account_features (account, feature, enabled_at)
             VALUES (?1, ?2, ?3)",
            params![id, feature, db::now()],
        )?
    } else {
        tx.execute(
            "DELETE FROM account_features WHERE account = ?1 AND feature = ?2",
            params![id, feature],
        )?
    } > 0;
    if changed {
        let action = if enabled {
            "feature-enabled"
        } else {
            "feature-disabled"
        };
        insert_event(&tx, id, actor, action, Some(feature), None)?;
    }
    tx.commit()?;
    Ok(changed)
}

/// Whether `feature` is enabled for the handle's account (never, for an account that does not
/// exist).
pub fn feature_enabled(db: &Db, feature: &str) -> Result<bool, DbError> {
    Ok(db
        .conn()
        .query_row(
            "SELECT 1 FROM account_features WHERE account = ?1 AND feature = ?2",
            params![db.account(), feature],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// What a token may do in its account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything: test, connect, sync, link, ignore, reset, import, disconnect, schedule.
    Admin,
    /// Reading only: status, links, unplaced, ignored, activity, search.
    Viewer,
}

impl Role {
    /// Its name: `admin` or `viewer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }

    /// The role named `name` (`admin` or `viewer`).
    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

/// A token just created: shown once, never stored (only a SHA-256 of its secret is).
#[derive(Clone, PartialEq, Eq)]
pub struct NewToken {
    /// Its id (`tok_` and 12 hex digits), which names it in lists, actors and `revoke`.
    pub token_id: String,
    /// The token itself: `scopable_`, its id, `_`, and its secret (64 hex digits).
    pub token: String,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("token_id", &self.token_id)
            .finish_non_exhaustive()
    }
}

/// A token as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenInfo {
    /// Its id.
    pub token_id: String,
    /// Its account.
    pub account: String,
    /// Its role.
    pub role: Role,
    /// When it was created.
    pub created_at: String,
    /// Who created it.
    pub created_by: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
    /// When it was last used (updated at most once a minute), if ever.
    pub last_used_at: Option<String>,
}

/// Who a request acts as: a token's account and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The account it acts for.
    pub account: String,
    /// What it may do.
    pub role: Role,
    /// The token, which names the actor (`token:<token_id>`).
    pub token_id: String,
}

/// The prefix of every token.
const TOKEN_PREFIX: &str = "scopable_";
/// The prefix of every token id.
const TOKEN_ID_PREFIX: &str = "tok_";

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn is_lower_hex(text: &str, len: usize) -> bool {
    text.len() == len
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A token's (id, secret), when it has the form [`create_token`] gives.
fn parse_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let id_len = TOKEN_ID_PREFIX.len() + 12;
    let (id, secret) = (rest.get(..id_len)?, rest.get(id_len..)?);
    let secret = secret.strip_prefix('_')?;
    let well_formed = id
        .strip_prefix(TOKEN_ID_PREFIX)
        .is_some_and(|hex| is_lower_hex(hex, 12))
        && is_lower_hex(secret, 64);
    well_formed.then_some((id, secret))
}

/// Creates a token of `role` for the account `id`, recorded as an event of `actor` in it.
/// Operator-level. Only a SHA-256 of the token's secret is stored.
pub fn create_token(
    db: &Db,
    account: &str,
    role: Role,
    actor: &str,
) -> Result<NewToken, AccountError> {
    let tx =
        rusqlite::Transaction::new_unchecked(db.conn(), rusqlite::TransactionBehavior::Immediate)?;
    if !account_exists(&tx, account)? {
        return Err(AccountError::NotFound {
            id: account.to_string(),
        });
    }
    let token_id = format!("{TOKEN_ID_PREFIX}{}", random_hex(6));
    let secret = random_hex(32);
    tx.execute(
        "INSERT INTO tokens (id, account, role, secret_sha256, created_at, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            token_id,
            account,
            role.as_str(),
            sha256(&secret).as_slice(),
            db::now(),
            actor
        ],
    )?;
    insert_event(
        &tx,
        account,
        actor,
        "token-created",
        None,
        Some(&format!("{token_id} ({})", role.as_str())),
    )?;
    tx.commit()?;
    Ok(NewToken {
        token: format!("{TOKEN_PREFIX}{token_id}_{secret}"),
        token_id,
    })
}

/// The tokens of the account `id`, oldest first. Operator-level.
pub fn tokens(db: &Db, account: &str) -> Result<Vec<TokenInfo>, AccountError> {
    if !account_exists(db.conn(), account)? {
        return Err(AccountError::NotFound {
            id: account.to_string(),
        });
    }
    let mut stmt = db.conn().prepare(
        "SELECT id, account, role, created_at, created_by, revoked_at, last_used_at FROM tokens
         WHERE account = ?1 ORDER BY created_at, id",
    )?;
    let rows = stmt.query_map([account], |r| {
        let role: String = r.get(2)?;
        Ok(TokenInfo {
            token_id: r.get(0)?,
            account: r.get(1)?,
            role: Role::parse(&role).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(
                    2,
                    rusqlite::types::Type::Text,
                    format!("unknown role {role:?}").into(),
                )
            })?,
            created_at: r.get(3)?,
            created_by: r.get(4)?,
            revoked_at: r.get(5)?,
            last_used_at: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Revokes the token `token_id` and ends its sessions at once, recorded as an event of
/// `actor` in its account. Operator-level. Returns whether a token in use was revoked (`false`
/// for an unknown or already revoked one).
pub fn revoke(db: &Db, token_id: &str, actor: &str) -> Result<bool, DbError> {
    let tx =
        rusqlite::Transaction::new_unchecked(db.conn(), rusqlite::TransactionBehavior::Immediate)?;
    let account: Option<String> = tx
        .query_row(
            "SELECT account FROM tokens WHERE id = ?1 AND revoked_at IS NULL",
            [token_id],
            |r| r.get(0),
        )
        .optional()?;
    let Some(account) = account else {
        return Ok(false);
    };
    tx.execute(
        "UPDATE tokens SET revoked_at = ?3 WHERE account = ?1 AND id = ?2",
        params![account, token_id, db::now()],
    )?;
    tx.execute(
        "DELETE FROM sessions WHERE account = ?1 AND token_id = ?2",
        params![account, token_id],
    )?;
    insert_event(&tx, &account, actor, "token-revoked", None, Some(token_id))?;
    tx.commit()?;
    Ok(true)
}

/// Who `token` acts as, or `None` when it is malformed, unknown, wrong or revoked.
/// Operator-level: the token says which account it is of. The secret is compared in constant
/// time; the token's `last_used_at` is updated at most once a minute.
pub fn authenticate(db: &Db, token: &str) -> Result<Option<Principal>, DbError> {
    let Some((token_id, secret)) = parse_token(token) else {
        return Ok(None);
    };
    let row: Option<(String, String, Vec<u8>, Option<String>)> = db
        .conn()
        .query_row(
            "SELECT account, role, secret_sha256, revoked_at FROM tokens WHERE id = ?1",
            [token_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((account, role, stored, revoked_at)) = row else {
        return Ok(None);
    };
    let matches: bool = sha256(secret).as_slice().ct_eq(&stored).into();
    let Some(role) = Role::parse(&role) else {
        return Ok(None);
    };
    if !matches || revoked_at.is_some() {
        return Ok(None);
    }
    let now = std::time::SystemTime::now();
    let cutoff = humantime::format_rfc3339_seconds(now - LAST_USED_EVERY).to_string();
    let touched = db.conn().execute(
        "UPDATE tokens SET last_used_at = ?3
         WHERE account = ?1 AND id = ?2 AND (last_used_at IS NULL OR last_used_at <= ?4)",
        params![
            account,
            token_id,
            humantime::format_rfc3339_seconds(now).to_string(),
            cutoff
        ],
    );
    if let Err(e) = touched {
        // Signing in does not depend on this bookkeeping.
        tracing::warn!("cannot record when token {token_id} was last used: {e}");
    }
    Ok(Some(Principal {
        account,
        role,
        token_id: token_id.to_string(),
    }))
}

/// Signs `principal` in for `ttl`: returns the session's secret (64 hex digits; only its
/// SHA-256 is stored). Expired sessions of the account are deleted on the way.
pub fn create_session(db: &Db, principal: &Principal, ttl: Duration) -> Result<String, DbError> {
    let secret = random_hex(32);
    let now = now_ms();
    let expires = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
    let tx = db.conn().unchecked_transaction()?;
    tx.execute(
        "DELETE FROM sessions WHERE account = ?1 AND expires_at_ms <= ?2",
        params![principal.account, now],
    )?;
    tx.execute(
        "INSERT INTO sessions (id_sha256, token_id, account, created_at, expires_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            sha256(&secret).as_slice(),
            principal.token_id,
            principal.account,
            db::now(),
            expires
        ],
    )?;
    tx.commit()?;
    Ok(secret)
}

/// Who the session with `secret` acts as, or `None` when it is unknown, expired, or its token
/// was revoked. Operator-level: the session says which account it is of.
pub fn session(db: &Db, secret: &str) -> Result<Option<Principal>, DbError> {
    if !is_lower_hex(secret, 64) {
        return Ok(None);
    }
    let row: Option<(String, String, String)> = db
        .conn()
        .query_row(
            "SELECT s.account, t.role, s.token_id FROM sessions s
             JOIN tokens t ON t.id = s.token_id AND t.account = s.account
             WHERE s.id_sha256 = ?1 AND s.expires_at_ms > ?2 AND t.revoked_at IS NULL",
            params![sha256(secret).as_slice(), now_ms()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    Ok(row.and_then(|(account, role, token_id)| {
        Some(Principal {
            account,
            role: Role::parse(&role)?,
            token_id,
        })
    }))
}

/// Ends the session with `secret` (signing out). Returns whether there was one.
pub fn end_session(db: &Db, secret: &str) -> Result<bool, DbError> {
    Ok(db.conn().execute(
        "DELETE FROM sessions WHERE id_sha256 = ?1",
        [sha256(secret).as_slice()],
    )? > 0)
}

/// One event of an account: a state change that is neither a decision nor a sync run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Event {
    /// Its row id (increasing).
    pub id: i64,
    /// When it happened.
    pub at: String,
    /// Who did it: `cli:<user>` or `token:<token_id>`.
    pub actor: String,
    /// What happened, for example `connect`, `import`, `schedule-set`, `token-created`,
    /// `token-revoked`, `feature-enabled`.
    pub action: String,
    /// The connector concerned, if one is.
    pub connector: Option<String>,
    /// More about it (never a secret).
    pub detail: Option<String>,
}

/// Records an event of `account` (inside the caller's transaction); returns its id.
pub(crate) fn insert_event(
    conn: &Connection,
    account: &str,
    actor: &str,
    action: &str,
    connector: Option<&str>,
    detail: Option<&str>,
) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO events (account, at, actor, action, connector, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![account, db::now(), actor, action, connector, detail],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Records an event of the handle's account (see [`Event`] for the fields); returns its id.
pub fn record_event(
    db: &Db,
    actor: &str,
    action: &str,
    connector: Option<&str>,
    detail: Option<&str>,
) -> Result<i64, DbError> {
    Ok(insert_event(
        db.conn(),
        db.account(),
        actor,
        action,
        connector,
        detail,
    )?)
}

/// The handle's account's newest `limit` events, newest first.
pub fn events(db: &Db, limit: usize) -> Result<Vec<Event>, DbError> {
    let mut stmt = db.conn().prepare(
        "SELECT id, at, actor, action, connector, detail FROM events
         WHERE account = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(
        params![db.account(), i64::try_from(limit).unwrap_or(i64::MAX)],
        |r| {
            Ok(Event {
                id: r.get(0)?,
                at: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                connector: r.get(4)?,
                detail: r.get(5)?,
            })
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &tempfile::TempDir, account: &str) -> Db {
        Db::open(&dir.path().join("accounts.db"), account).unwrap()
    }

    fn count(db: &Db, sql: &str) -> i64 {
        db.conn().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn account_ids_are_lowercase_letters_digits_and_dashes() {
        for good in ["default", "a", "0", "acme-msp", "a-", &"x".repeat(63)] {
            assert!(valid_account_id(good), "{good}");
        }
        for bad in ["", "-a", "Acme", "a_b", "a b", "é", "a/b", &"x".repeat(64)] {
            assert!(!valid_account_id(bad), "{bad}");
        }
    }

    #[test]
    fn accounts_are_added_listed_and_refused_twice() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir, "default");
        let acme = add(&db, "acme", Some("Acme MSP"), "cli:op").unwrap();
        assert_eq!(
            (acme.id.as_str(), acme.name.as_deref(), acme.features.len()),
            ("acme", Some("Acme MSP"), 0)
        );
        assert!(matches!(
            add(&db, "acme", None, "cli:op"),
            Err(AccountError::Exists { .. })
        ));
        assert!(matches!(
            add(&db, "Bad_Id", None, "cli:op"),
            Err(AccountError::InvalidId { .. })
        ));
        add(&db, "beta", None, "cli:op").unwrap();
        let ids: Vec<String> = list(&db).unwrap().into_iter().map(|a| a.id).collect();
        assert_eq!(ids, ["acme", "beta"]);
        assert_eq!(get(&db, "acme").unwrap(), Some(acme));
        assert_eq!(get(&db, "nobody").unwrap(), None);
        // Each account has a vault binding of its own.
        assert_eq!(
            count(&db, "SELECT count(DISTINCT vault_binding) FROM accounts"),
            2
        );
        // The creation is the new account's event, not the handle's.
        let acme_db = open(&dir, "acme");
        let events = events(&acme_db, 10).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0].action.as_str(), events[0].actor.as_str()),
            ("account-created", "cli:op")
        );
        assert!(super::events(&db, 10).unwrap().is_empty());
    }

    #[test]
    fn the_command_line_s_account_is_created_on_first_use_with_itglue() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir, crate::DEFAULT_ACCOUNT);
        assert!(!feature_enabled(&db, ITGLUE).unwrap());
        assert!(ensure_for_cli(&db, "cli:alice").unwrap());
        assert!(!ensure_for_cli(&db, "cli:alice").unwrap(), "created twice");
        assert!(feature_enabled(&db, ITGLUE).unwrap());
        assert_eq!(
            get(&db, crate::DEFAULT_ACCOUNT).unwrap().unwrap().features,
            [ITGLUE]
        );
        assert!(crate::connections::account_id(&db).is_ok());
        // An invalid handle account is refused, not created.
        let bad = open(&dir, "Not Valid");
        assert!(matches!(
            ensure_for_cli(&bad, "cli:alice"),
            Err(AccountError::InvalidId { .. })
        ));
        assert_eq!(count(&db, "SELECT count(*) FROM accounts"), 1);
    }

    #[test]
    fn features_are_enabled_and_disabled_per_account() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir, "default");
        add(&db, "acme", None, "cli:op").unwrap();
        add(&db, "beta", None, "cli:op").unwrap();
        let acme = open(&dir, "acme");
        let beta = open(&dir, "beta");
        assert!(set_feature(&db, "acme", ITGLUE, true, "cli:op").unwrap());
        assert!(
            !set_feature(&db, "acme", ITGLUE, true, "cli:op").unwrap(),
            "no change"
        );
        assert!(feature_enabled(&acme, ITGLUE).unwrap());
        assert!(!feature_enabled(&beta, ITGLUE).unwrap());
        assert!(set_feature(&db, "acme", ITGLUE, false, "cli:op").unwrap());
        assert!(!feature_enabled(&acme, ITGLUE).unwrap());
        assert!(matches!(
            set_feature(&db, "nobody", ITGLUE, true, "cli:op"),
            Err(AccountError::NotFound { .. })
        ));
        assert!(matches!(
            set_feature(&db, "acme", "no such feature", true, "cli:op"),
            Err(AccountError::InvalidFeature { .. })
        ));
        let actions: Vec<String> = events(&acme, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(
            actions,
            ["feature-disabled", "feature-enabled", "account-created"]
        );
    }

    #[test]
    fn a_token_authenticates_and_only_its_hash_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir, "default");
        add(&db, "acme", None, "cli:op").unwrap();
        let new = create_token(&db, "acme", Role::Viewer, "cli:op").unwrap();
        assert!(new.token_id.starts_with("tok_") && new.token_id.len() == 16);
        assert!(
            new.token
                .starts_with(&format!("scopable_{}_", new.token_id))
        );
        assert_eq!(new.token.len(), "scopable_".len() + 16 + 1 + 64);
        assert!(
            !format!("{new:?}").contains(&new.token),
            "Debug shows the token"
        );
        let principal = authenticate(&db, &new.token).unwrap().unwrap();
        assert_eq!(
            principal,
            Principal {
                account: "acme".into(),
                role: Role::Viewer,
                token_id: new.token_id.clone(),
            }
        );
        // Only the secret's SHA-256 is kept.
        let secret = &new.token[new.token.len() - 64..];
        let stored: Vec<u8> = db
            .conn()
            .query_row("SELECT secret_sha256 FROM tokens", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, Sha256::digest(secret.as_bytes()).as_slice());
        let leaked = count(
            &db,
            &format!(
                "SELECT count(*) FROM tokens WHERE instr(id || role || created_by, '{secret}') > 0"
            ),
        );
        assert_eq!(leaked, 0);
        // An unknown account gets no token.
        assert!(matches!(
            create_token(&db, "nobody", Role::Admin, "cli:op"),
            Err(AccountError::NotFound { .. })
        ));
        let listed = tokens(&db, "acme").unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (
                listed[0].role,
                listed[0].created_by.as_str(),
                listed[0].revoked_at.as_deref()
            ),
            (Role::Viewer, "cli:op", None)
        );
        assert!(listed[0].last_used_at.is_some(), "the use was recorded");
    }

    #[test]
    fn a_wrong_secret_with_a_right_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir, "default");
        add(&db, "acme", None, "cli:op").unwrap();
        let new = create_token(&db, "acme", Role::Admin, "cli:op").unwrap();
        let mut wrong = new.token.clone();
        let last = wrong.pop().unwrap();
        wrong.push(if last == '0' { '1' } else { '0' });
        assert_eq!(authenticate(&db, &wrong).unwrap(), None);
        let other = create_token(&db, "acme", Role::Admin, "cli:op").unwrap();
        // Another token's secret under this id.
        let swapped = format!(
            "scopable_{}_{}",
            new.token_id,
            &other.token[other.token.len() - 64..]
        );
        assert_eq!(authenticate(&db, &swapped).unwrap(), None);
        for malformed in [
            "",
            "scopable_",
            &new.token[..new.token.len() - 1],
            &new.token.to_uppercase(),
            &format!("{}0", new.token),
            &new.token.replace("scopable_", "other_"),
        ] {
            assert_eq!(authenticate(&db, malformed).unwrap(), None, "{malformed}");
        }
        assert!(authenticate(&db, &new.token).unwrap().is_some());
    }

    #[test]
    fn last_use_is_recorded_at_most_once_a_minute() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir, "default");
        add(&db, "acme", None, "cli:op").unwrap();
        let new = create_token(&db, "acme", Role::Admin, "cli:op").unwrap();
        let last_used = || -> Option<String> {
            db.conn()
                .query_row("SELECT last_used_at FROM tokens", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(last_used(), None);
        authenticate(&db, &new.token).unwrap().unwrap();
        let first = last_used().unwrap();
        // A use long ago is replaced; a recent one is not.
        db.conn()
            .execute(
                "UPDATE tokens SET last_used_at = '2001-01-01T00:00:00Z'",
                [],
            )
            .unwrap();
        authenticate(&db, &new.token).unwrap().unwrap();
        let second = last_used().unwrap();
        assert_ne!(second, "2001-01-01T00:00:00Z");
        assert!(second >= first, "{second} < {first}");
        let recent = db::now();
        db.conn()
            .execute("UPDATE tokens SET last_used_at = ?1", [&recent])
            .unwrap();
        let changes_before = db.conn().total_changes();
        authenticate(&db, &new.token).unwrap().unwrap();
        assert_eq!(last_used().unwrap(), recent);
        assert_eq!(
            db.conn().total_changes(),
            changes_before,
            "a write within the minute"
        );
    }

    #[test]
    fn a_revoked_token_and_its_sessions_stop_working_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir, "default");
        add(&db, "acme", None, "cli:op").unwrap();
        let new = create_token(&db, "acme", Role::Admin, "cli:op").unwrap();
        let keep = create_token(&db, "acme", Role::Admin, "cli:op").unwrap();
        let principal = authenticate(&db, &new.token).unwrap().unwrap();
        let kept_principal = authenticate(&db, &keep.token).unwrap().unwrap();
        let session_secret = create_session(&db, &principal, Duration::from_secs(3600)).unwrap();
        let other_session =
            create_session(&db, &kept_principal, Duration::from_secs(3600)).unwrap();
        assert_eq!(session(&db, &session_secret).unwrap(), Some(principal));
        assert!(revoke(&db, &new.token_id, "cli:op").unwrap());
        assert_eq!(authenticate(&db, &new.token).unwrap(), None);
        assert_eq!(session(&db, &session_secret).unwrap(), None);
        assert_eq!(
            count(
                &db,
                &format!(
                    "SELECT count(*) FROM sessions WHERE token_id = '{}'",
                    new.token_id
                )
            ),
            0,
            "its sessions are deleted"
        );
        // Revoking again, or an unknown token, changes nothing.
        assert!(!revoke(&db, &new.token_id, "cli:op").unwrap());
        assert!(!revoke(&db, "tok_000000000000", "cli:op").unwrap());
        // The other token and its session still work.
        assert!(authenticate(&db, &keep.token).unwrap().is_some());
        assert_eq!(session(&db, &other_session).unwrap(), Some(kept_principal));
        let listed = tokens(&db, "acme").unwrap();
        let revoked = listed.iter().find(|t| t.token_id == new.token_id).unwrap();
        assert!(revoked.revoked_at.is_some());
        let acme = open(&dir, "acme");
        let revoked_event = events(&acme, 1).unwrap();
        assert_eq!(
            (
                revoked_event[0].action.as_str(),
                revoked_event[0].detail.as_deref()
            ),
            ("token-revoked", Some(new.token_id.as_str()))
        );
    }

    #[test]
    fn sessions_expire_and_end() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir, "default");
        add(&db, "acme", None, "cli:op").unwrap();
        let new = create_token(&db, "acme", Role::Viewer, "cli:op").unwrap();
        let principal = authenticate(&db, &new.token).unwrap().unwrap();
        let secret = create_session(&db, &principal, Duration::from_secs(3600)).unwrap();
        assert!(is_lower_hex(&secret, 64));
        // Only the session secret's SHA-256 is stored.
        let stored: Vec<u8> = db
            .conn()
            .query_row("SELECT id_sha256 FROM sessions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, Sha256::digest(secret.as_bytes()).as_slice());
        assert_eq!(session(&db, &secret).unwrap(), Some(principal.clone()));
        assert_eq!(session(&db, &random_hex(32)).unwrap(), None);
        assert_eq!(session(&db, "not hex").unwrap(), None);
        assert!(end_session(&db, &secret).unwrap());
        assert_eq!(session(&db, &secret).unwrap(), None);
        assert!(!end_session(&db, &secret).unwrap());
        // An expired one no longer works, and is deleted by the next sign-in.
        let expired = create_session(&db, &principal, Duration::ZERO).unwrap();
        assert_eq!(session(&db, &expired).unwrap(), None);
        create_session(&db, &principal, Duration::from_secs(60)).unwrap();
        assert_eq!(count(&db, "SELECT count(*) FROM sessions"), 1);
    }

    #[test]
    fn events_are_listed_newest_first_for_their_account() {
        let dir = tempfile::tempdir().unwrap();
        let a = open(&dir, "a");
        let b = open(&dir, "b");
        record_event(
            &a,
            "cli:alice",
            "connect",
            Some("itglue"),
            Some("region us"),
        )
        .unwrap();
        record_event(&a, "token:tok_1", "import", None, Some("3 clients")).unwrap();
        record_event(&b, "cli:bob", "disconnect", Some("itglue"), None).unwrap();
        let listed = events(&a, 10).unwrap();
        let seen: Vec<(&str, &str, Option<&str>)> = listed
            .iter()
            .map(|e| (e.action.as_str(), e.actor.as_str(), e.connector.as_deref()))
            .collect();
        assert_eq!(
            seen,
            [
                ("import", "token:tok_1", None),
                ("connect", "cli:alice", Some("itglue"))
            ]
        );
        assert!(listed[0].id > listed[1].id);
        assert_eq!(events(&a, 1).unwrap().len(), 1);
        assert_eq!(events(&b, 10).unwrap().len(), 1);
    }

    #[test]
    fn removing_an_account_deletes_all_of_it_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.db");
        let fill = |account: &str| {
            let db = Db::open(&path, account).unwrap();
            ensure_for_cli(&db, "cli:op").unwrap();
            crate::records::import_clients(&db, &[("c1", "Acme")]).unwrap();
            crate::records::import_configurations(
                &db,
                &[crate::records::ImportedConfiguration {
                    id: "k1",
                    client_id: "c1",
                    name: "pc",
                    hostname: None,
                    serial_number: None,
                    mac_addresses: vec![],
                }],
            )
            .unwrap();
            crate::review::link_by_hand(&db, "itglue", "organization", "1", "c1", None, "cli:op")
                .unwrap();
            crate::runs::set_schedule(&db, "itglue", Some(Duration::from_secs(3600)), "cli:op")
                .unwrap();
            let token = create_token(&db, account, Role::Admin, "cli:op").unwrap();
            let principal = authenticate(&db, &token.token).unwrap().unwrap();
            create_session(&db, &principal, Duration::from_secs(60)).unwrap();
            let shared = crate::shared::Shared::open(&path, account).unwrap();
            crate::kv::KvTable::new(&shared, "itglue")
                .set("k", b"v", 10, 100)
                .unwrap();
            crate::budget::BudgetTable::new(&shared, "itglue")
                .try_take(10, Duration::from_secs(60), 1)
                .unwrap();
            db
        };
        let gone = fill("gone");
        let kept = fill("kept");
        let rows_of = |account: &str| -> Vec<(String, i64)> {
            ACCOUNT_TABLES
                .iter()
                .map(|(table, column)| {
                    let n = count(
                        &kept,
                        &format!("SELECT count(*) FROM {table} WHERE {column} = '{account}'"),
                    );
                    (table.to_string(), n)
                })
                .collect()
        };
        let kept_before = rows_of("kept");
        assert!(rows_of("gone").iter().filter(|(_, n)| *n > 0).count() >= 12);
        assert!(remove(&kept, "gone", "cli:op").unwrap());
        assert!(
            rows_of("gone").iter().all(|(_, n)| *n == 0),
            "{:?}",
            rows_of("gone")
        );
        assert_eq!(rows_of("kept"), kept_before, "the other account changed");
        assert!(get(&gone, "gone").unwrap().is_none());
        assert!(!remove(&kept, "gone", "cli:op").unwrap());
        assert_eq!(crate::views::link_count(&kept, "itglue").unwrap(), 1);
    }

    /// [`remove`] knows every table an account has rows in.
    #[test]
    fn every_table_of_an_account_is_removed_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir, "default");
        let mut stmt = db
            .conn()
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'meta' ORDER BY name")
            .unwrap();
        let mut tables: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut known: Vec<String> = ACCOUNT_TABLES.iter().map(|(t, _)| t.to_string()).collect();
        tables.sort();
        known.sort();
        assert_eq!(tables, known);
    }
}

//! Accounts (Scopable tenants) and their features; the tokens that act for an account and the
//! sessions a token signs in; and each account's events, the state changes that are neither a
//! decision nor a sync run.
//!
//! Operator-level functions (managing accounts and tokens, authenticating) take explicit ids
//! and are not limited by the handle's account; each says so. The others act for the handle's
//! account only.

use crate::db::{self, DbError, now_ms};
use crate::handle::Db;
use crate::sql::{Row, Sql, Value};
use crate::values;
use crate::vault::random_hex;
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
    ("sync_staged", "account"),
    ("sync_planned", "account"),
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

/// The lock that writers of the account `id` (its creation, features, tokens and removal)
/// hold on PostgreSQL, so that each one's check and write happen as if alone.
fn account_lock(id: &str) -> String {
    format!("account/{id}")
}

/// A transaction on the connection of a handle borrowed shared (the operator functions take
/// `&Db`): `BEGIN` ... `COMMIT` on the handle's own connection, so that it never waits for a
/// second connection of a pool. SQLite's begins `IMMEDIATE` (it holds the database's write
/// lock from the start, as [`Db::begin`] does); on PostgreSQL, writers of the same thing
/// serialize with [`HandleTx::lock`]. Rolled back when dropped uncommitted.
pub(crate) struct HandleTx<'a> {
    db: &'a Db,
    open: bool,
}

impl<'a> HandleTx<'a> {
    /// Begins a transaction on `db`'s connection.
    pub(crate) fn begin(db: &'a Db) -> Result<HandleTx<'a>, DbError> {
        let begin = if db.is_postgres() {
            "BEGIN"
        } else {
            "BEGIN IMMEDIATE"
        };
        db.sql().execute(begin, &[])?;
        Ok(HandleTx { db, open: true })
    }

    /// Waits for, and holds until the transaction ends, the lock named `key` (PostgreSQL); on
    /// SQLite the transaction already holds the only write lock.
    pub(crate) fn lock(&self, key: &str) -> Result<(), DbError> {
        if self.db.is_postgres() {
            self.db.sql().execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(?1, 0))",
                &values![key],
            )?;
        }
        Ok(())
    }

    /// Commits (a failed commit is rolled back when the transaction is dropped).
    pub(crate) fn commit(mut self) -> Result<(), DbError> {
        self.db.sql().execute("COMMIT", &[])?;
        self.open = false;
        Ok(())
    }
}

impl Drop for HandleTx<'_> {
    fn drop(&mut self) {
        if self.open
            && let Err(e) = self.db.sql().execute("ROLLBACK", &[])
        {
            tracing::warn!("cannot roll back a transaction: {e}");
        }
    }
}

impl Sql for HandleTx<'_> {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        self.db.sql().execute(sql, params)
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        self.db.sql().query(sql, params)
    }

    fn clock_ms(&self) -> Result<i64, DbError> {
        self.db.sql().clock_ms()
    }
}

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
    let tx = HandleTx::begin(db)?;
    tx.lock(&account_lock(id))?;
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
    if account_exists(db.sql(), id)? {
        return Ok(false);
    }
    let tx = HandleTx::begin(db)?;
    tx.lock(&account_lock(id))?;
    // Another process may have created it since the look above.
    if account_exists(&tx, id)? {
        return Ok(false);
    }
    let created_at = insert_account(&tx, id, None, actor)?;
    tx.execute(
        "INSERT INTO account_features (account, feature, enabled_at) VALUES (?1, ?2, ?3)",
        &values![id, ITGLUE, &created_at],
    )?;
    insert_event(&tx, id, actor, "feature-enabled", Some(ITGLUE), None)?;
    tx.commit()?;
    Ok(true)
}

fn account_exists(sql: &dyn Sql, id: &str) -> Result<bool, DbError> {
    Ok(sql
        .query_opt("SELECT 1 FROM accounts WHERE id = ?1", &values![id])?
        .is_some())
}

/// Inserts an account row with a new vault binding, and its creation event; returns when.
fn insert_account(
    sql: &dyn Sql,
    id: &str,
    name: Option<&str>,
    actor: &str,
) -> Result<String, DbError> {
    let created_at = db::now();
    sql.execute(
        "INSERT INTO accounts (id, name, created_at, vault_binding) VALUES (?1, ?2, ?3, ?4)",
        &values![id, name, &created_at, random_hex(16)],
    )?;
    insert_event(sql, id, actor, "account-created", None, name)?;
    Ok(created_at)
}

/// The account `id`, if it exists. Operator-level.
pub fn get(db: &Db, id: &str) -> Result<Option<Account>, DbError> {
    Ok(list_where(db.sql(), Some(id))?.into_iter().next())
}

/// Every account, by id. Operator-level.
pub fn list(db: &Db) -> Result<Vec<Account>, DbError> {
    list_where(db.sql(), None)
}

fn list_where(sql: &dyn Sql, id: Option<&str>) -> Result<Vec<Account>, DbError> {
    // One row per feature (one with none for an account without any), grouped here.
    let rows = sql.query(
        "SELECT a.id, a.name, a.created_at, f.feature
         FROM accounts a LEFT JOIN account_features f ON f.account = a.id
         WHERE CAST(?1 AS TEXT) IS NULL OR a.id = ?1
         ORDER BY a.id, f.feature",
        &values![id],
    )?;
    let mut accounts: Vec<Account> = Vec::new();
    for row in rows {
        let id = row.text(0)?;
        if accounts.last().is_none_or(|a| a.id != id) {
            accounts.push(Account {
                id,
                name: row.opt_text(1)?,
                created_at: row.text(2)?,
                features: Vec::new(),
            });
        }
        if let (Some(feature), Some(account)) = (row.opt_text(3)?, accounts.last_mut()) {
            account.features.push(feature);
        }
    }
    Ok(accounts)
}

/// Deletes the account `id` and every row of it in every table (records, connection and key,
/// links, decisions, runs, audit, storage, budget, tokens, sessions, events, schedules), in
/// one transaction. Operator-level; `actor` is logged. Returns whether there was anything of
/// it.
pub fn remove(db: &Db, id: &str, actor: &str) -> Result<bool, AccountError> {
    let tx = HandleTx::begin(db)?;
    tx.lock(&account_lock(id))?;
    let mut deleted = 0;
    for (table, column) in ACCOUNT_TABLES {
        deleted += tx.execute(
            &format!("DELETE FROM {table} WHERE {column} = ?1"),
            &values![id],
        )?;
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
    let tx = HandleTx::begin(db)?;
    tx.lock(&account_lock(id))?;
    if !account_exists(&tx, id)? {
        return Err(AccountError::NotFound { id: id.to_string() });
    }
    let changed = if enabled {
        tx.execute(
            "INSERT INTO account_features (account, feature, enabled_at) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
            &values![id, feature, db::now()],
        )?
    } else {
        tx.execute(
            "DELETE FROM account_features WHERE account = ?1 AND feature = ?2",
            &values![id, feature],
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
        .sql()
        .query_opt(
            "SELECT 1 FROM account_features WHERE account = ?1 AND feature = ?2",
            &values![db.account(), feature],
        )?
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
    let tx = HandleTx::begin(db)?;
    tx.lock(&account_lock(account))?;
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
        &values![
            &token_id,
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
    if !account_exists(db.sql(), account)? {
        return Err(AccountError::NotFound {
            id: account.to_string(),
        });
    }
    let rows = db.sql().query(
        "SELECT id, account, role, created_at, created_by, revoked_at, last_used_at FROM tokens
         WHERE account = ?1 ORDER BY created_at, id",
        &values![account],
    )?;
    let mut tokens = Vec::with_capacity(rows.len());
    for r in rows {
        let role = r.text(2)?;
        tokens.push(TokenInfo {
            token_id: r.text(0)?,
            account: r.text(1)?,
            role: Role::parse(&role)
                .ok_or_else(|| DbError::Sql(format!("a token has the unknown role {role:?}")))?,
            created_at: r.text(3)?,
            created_by: r.text(4)?,
            revoked_at: r.opt_text(5)?,
            last_used_at: r.opt_text(6)?,
        });
    }
    Ok(tokens)
}

/// Revokes the token `token_id` and ends its sessions at once, recorded as an event of
/// `actor` in its account. Operator-level. Returns whether a token in use was revoked (`false`
/// for an unknown or already revoked one).
pub fn revoke(db: &Db, token_id: &str, actor: &str) -> Result<bool, DbError> {
    let tx = HandleTx::begin(db)?;
    let Some(row) = tx.query_opt(
        "SELECT account FROM tokens WHERE id = ?1 AND revoked_at IS NULL",
        &values![token_id],
    )?
    else {
        return Ok(false);
    };
    let account = row.text(0)?;
    // The account's lock, taken once the account is known (as `remove` takes it, so that the
    // two never wait for each other's rows); the update checks again that the token is still
    // there and not revoked, since another revocation or the account's removal may have been
    // committed after the look above.
    tx.lock(&account_lock(&account))?;
    let revoked = tx.execute(
        "UPDATE tokens SET revoked_at = ?3 WHERE account = ?1 AND id = ?2 AND revoked_at IS NULL",
        &values![&account, token_id, db::now()],
    )?;
    if revoked == 0 {
        return Ok(false);
    }
    tx.execute(
        "DELETE FROM sessions WHERE account = ?1 AND token_id = ?2",
        &values![&account, token_id],
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
    let Some(row) = db.sql().query_opt(
        "SELECT account, role, secret_sha256, revoked_at FROM tokens WHERE id = ?1",
        &values![token_id],
    )?
    else {
        return Ok(None);
    };
    let (account, role, stored, revoked_at) =
        (row.text(0)?, row.text(1)?, row.blob(2)?, row.opt_text(3)?);
    let matches: bool = sha256(secret).as_slice().ct_eq(&stored).into();
    let Some(role) = Role::parse(&role) else {
        return Ok(None);
    };
    if !matches || revoked_at.is_some() {
        return Ok(None);
    }
    let now = std::time::SystemTime::now();
    let cutoff = humantime::format_rfc3339_seconds(now - LAST_USED_EVERY).to_string();
    let touched = db.sql().execute(
        "UPDATE tokens SET last_used_at = ?3
         WHERE account = ?1 AND id = ?2 AND (last_used_at IS NULL OR last_used_at <= ?4)",
        &values![
            &account,
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
    let tx = HandleTx::begin(db)?;
    // After the account's removal or the token's revocation (which hold this lock), no
    // session is made for either: none is left behind.
    tx.lock(&account_lock(&principal.account))?;
    tx.execute(
        "DELETE FROM sessions WHERE account = ?1 AND expires_at_ms <= ?2",
        &values![&principal.account, now],
    )?;
    let made = tx.execute(
        "INSERT INTO sessions (id_sha256, token_id, account, created_at, expires_at_ms)
         SELECT ?1, ?2, ?3, ?4, ?5
         WHERE EXISTS (SELECT 1 FROM tokens
                       WHERE id = ?2 AND account = ?3 AND revoked_at IS NULL)",
        &values![
            sha256(&secret).as_slice(),
            &principal.token_id,
            &principal.account,
            db::now(),
            expires
        ],
    )?;
    if made == 0 {
        return Err(DbError::NoAccount {
            account: principal.account.clone(),
        });
    }
    tx.commit()?;
    Ok(secret)
}

/// Who the session with `secret` acts as, or `None` when it is unknown, expired, or its token
/// was revoked. Operator-level: the session says which account it is of.
pub fn session(db: &Db, secret: &str) -> Result<Option<Principal>, DbError> {
    if !is_lower_hex(secret, 64) {
        return Ok(None);
    }
    let Some(row) = db.sql().query_opt(
        "SELECT s.account, t.role, s.token_id FROM sessions s
         JOIN tokens t ON t.id = s.token_id AND t.account = s.account
         WHERE s.id_sha256 = ?1 AND s.expires_at_ms > ?2 AND t.revoked_at IS NULL",
        &values![sha256(secret).as_slice(), now_ms()],
    )?
    else {
        return Ok(None);
    };
    let Some(role) = Role::parse(&row.text(1)?) else {
        return Ok(None);
    };
    Ok(Some(Principal {
        account: row.text(0)?,
        role,
        token_id: row.text(2)?,
    }))
}

/// Ends the session with `secret` (signing out). Returns whether there was one.
pub fn end_session(db: &Db, secret: &str) -> Result<bool, DbError> {
    Ok(db.sql().execute(
        "DELETE FROM sessions WHERE id_sha256 = ?1",
        &values![sha256(secret).as_slice()],
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
    sql: &dyn Sql,
    account: &str,
    actor: &str,
    action: &str,
    connector: Option<&str>,
    detail: Option<&str>,
) -> Result<i64, DbError> {
    sql.query_one(
        "INSERT INTO events (account, at, actor, action, connector, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
        &values![account, db::now(), actor, action, connector, detail],
    )?
    .int(0)
}

/// Records an event of the handle's account (see [`Event`] for the fields); returns its id.
pub fn record_event(
    db: &Db,
    actor: &str,
    action: &str,
    connector: Option<&str>,
    detail: Option<&str>,
) -> Result<i64, DbError> {
    insert_event(db.sql(), db.account(), actor, action, connector, detail)
}

/// The handle's account's newest `limit` events, newest first.
pub fn events(db: &Db, limit: usize) -> Result<Vec<Event>, DbError> {
    let rows = db.sql().query(
        "SELECT id, at, actor, action, connector, detail FROM events
         WHERE account = ?1 ORDER BY id DESC LIMIT ?2",
        &values![db.account(), i64::try_from(limit).unwrap_or(i64::MAX)],
    )?;
    rows.into_iter()
        .map(|r| {
            Ok(Event {
                id: r.int(0)?,
                at: r.text(1)?,
                actor: r.text(2)?,
                action: r.text(3)?,
                connector: r.opt_text(4)?,
                detail: r.opt_text(5)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TestDb, databases};
    use std::sync::Barrier;

    fn count(db: &Db, sql: &str) -> i64 {
        db.sql().query_one(sql, &[]).unwrap().int(0).unwrap()
    }

    /// Runs `f` at once on `n` handles of `t` (replicas, or processes), each in a thread of
    /// its own; returns what each returned.
    fn at_once<T: Send>(t: &TestDb, n: usize, f: impl Fn(usize, &Db) -> T + Sync) -> Vec<T> {
        let handles: Vec<Db> = (0..n).map(|_| t.open("default")).collect();
        let start = Barrier::new(n);
        std::thread::scope(|s| {
            let running: Vec<_> = handles
                .into_iter()
                .enumerate()
                .map(|(i, db)| {
                    let (start, f) = (&start, &f);
                    s.spawn(move || {
                        start.wait();
                        f(i, &db)
                    })
                })
                .collect();
            running.into_iter().map(|r| r.join().unwrap()).collect()
        })
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
        for t in databases("accounts_added") {
            let db = t.open("default");
            let acme = add(&db, "acme", Some("Acme MSP"), "cli:op").unwrap();
            assert_eq!(
                (acme.id.as_str(), acme.name.as_deref(), acme.features.len()),
                ("acme", Some("Acme MSP"), 0),
                "{}",
                t.name
            );
            assert!(
                matches!(
                    add(&db, "acme", None, "cli:op"),
                    Err(AccountError::Exists { .. })
                ),
                "{}",
                t.name
            );
            assert!(
                matches!(
                    add(&db, "Bad_Id", None, "cli:op"),
                    Err(AccountError::InvalidId { .. })
                ),
                "{}",
                t.name
            );
            add(&db, "beta", None, "cli:op").unwrap();
            let ids: Vec<String> = list(&db).unwrap().into_iter().map(|a| a.id).collect();
            assert_eq!(ids, ["acme", "beta"], "{}", t.name);
            assert_eq!(get(&db, "acme").unwrap(), Some(acme), "{}", t.name);
            assert_eq!(get(&db, "nobody").unwrap(), None, "{}", t.name);
            // Each account has a vault binding of its own.
            assert_eq!(
                count(&db, "SELECT count(DISTINCT vault_binding) FROM accounts"),
                2,
                "{}",
                t.name
            );
            // The creation is the new account's event, not the handle's.
            let acme_db = t.open("acme");
            let events = events(&acme_db, 10).unwrap();
            assert_eq!(events.len(), 1, "{}", t.name);
            assert_eq!(
                (events[0].action.as_str(), events[0].actor.as_str()),
                ("account-created", "cli:op"),
                "{}",
                t.name
            );
            assert!(super::events(&db, 10).unwrap().is_empty(), "{}", t.name);
        }
    }

    #[test]
    fn accounts_are_listed_with_their_features_in_order() {
        for t in databases("accounts_listed") {
            let db = t.open("default");
            add(&db, "zeta", None, "cli:op").unwrap();
            add(&db, "acme", None, "cli:op").unwrap();
            add(&db, "beta", Some("B"), "cli:op").unwrap();
            for feature in ["itglue", "hudu", "a-first"] {
                set_feature(&db, "acme", feature, true, "cli:op").unwrap();
            }
            set_feature(&db, "zeta", "hudu", true, "cli:op").unwrap();
            let listed: Vec<(String, Vec<String>)> = list(&db)
                .unwrap()
                .into_iter()
                .map(|a| (a.id, a.features))
                .collect();
            let expected: Vec<(String, Vec<String>)> = vec![
                (
                    "acme".into(),
                    vec!["a-first".into(), "hudu".into(), "itglue".into()],
                ),
                ("beta".into(), vec![]),
                ("zeta".into(), vec!["hudu".into()]),
            ];
            assert_eq!(listed, expected, "{}", t.name);
            let beta = get(&db, "beta").unwrap().unwrap();
            assert_eq!(
                (beta.name.as_deref(), beta.features.len()),
                (Some("B"), 0),
                "{}",
                t.name
            );
            assert_eq!(
                get(&db, "acme").unwrap().unwrap().features,
                ["a-first", "hudu", "itglue"],
                "{}",
                t.name
            );
        }
    }

    #[test]
    fn the_command_line_s_account_is_created_on_first_use_with_itglue() {
        for t in databases("accounts_cli") {
            let db = t.open(crate::DEFAULT_ACCOUNT);
            assert!(!feature_enabled(&db, ITGLUE).unwrap(), "{}", t.name);
            assert!(ensure_for_cli(&db, "cli:alice").unwrap(), "{}", t.name);
            assert!(
                !ensure_for_cli(&db, "cli:alice").unwrap(),
                "{}: created twice",
                t.name
            );
            assert!(feature_enabled(&db, ITGLUE).unwrap(), "{}", t.name);
            assert_eq!(
                get(&db, crate::DEFAULT_ACCOUNT).unwrap().unwrap().features,
                [ITGLUE],
                "{}",
                t.name
            );
            assert!(crate::connections::account_id(&db).is_ok(), "{}", t.name);
            // An invalid handle account is refused, not created.
            let bad = t.open("Not Valid");
            assert!(
                matches!(
                    ensure_for_cli(&bad, "cli:alice"),
                    Err(AccountError::InvalidId { .. })
                ),
                "{}",
                t.name
            );
            assert_eq!(count(&db, "SELECT count(*) FROM accounts"), 1, "{}", t.name);
        }
    }

    #[test]
    fn features_are_enabled_and_disabled_per_account() {
        for t in databases("accounts_features") {
            let db = t.open("default");
            add(&db, "acme", None, "cli:op").unwrap();
            add(&db, "beta", None, "cli:op").unwrap();
            let acme = t.open("acme");
            let beta = t.open("beta");
            assert!(
                set_feature(&db, "acme", ITGLUE, true, "cli:op").unwrap(),
                "{}",
                t.name
            );
            assert!(
                !set_feature(&db, "acme", ITGLUE, true, "cli:op").unwrap(),
                "{}: no change",
                t.name
            );
            assert!(feature_enabled(&acme, ITGLUE).unwrap(), "{}", t.name);
            assert!(!feature_enabled(&beta, ITGLUE).unwrap(), "{}", t.name);
            assert!(
                set_feature(&db, "acme", ITGLUE, false, "cli:op").unwrap(),
                "{}",
                t.name
            );
            assert!(!feature_enabled(&acme, ITGLUE).unwrap(), "{}", t.name);
            assert!(
                matches!(
                    set_feature(&db, "nobody", ITGLUE, true, "cli:op"),
                    Err(AccountError::NotFound { .. })
                ),
                "{}",
                t.name
            );
            assert!(
                matches!(
                    set_feature(&db, "acme", "no such feature", true, "cli:op"),
                    Err(AccountError::InvalidFeature { .. })
                ),
                "{}",
                t.name
            );
            let actions: Vec<String> = events(&acme, 10)
                .unwrap()
                .into_iter()
                .map(|e| e.action)
                .collect();
            assert_eq!(
                actions,
                ["feature-disabled", "feature-enabled", "account-created"],
                "{}",
                t.name
            );
        }
    }

    #[test]
    fn a_token_authenticates_and_only_its_hash_is_stored() {
        for t in databases("accounts_token") {
            let db = t.open("default");
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
                },
                "{}",
                t.name
            );
            // Only the secret's SHA-256 is kept, as bytes.
            let secret = &new.token[new.token.len() - 64..];
            let stored = db
                .sql()
                .query_one("SELECT secret_sha256 FROM tokens", &[])
                .unwrap()
                .blob(0)
                .unwrap();
            assert_eq!(
                stored,
                Sha256::digest(secret.as_bytes()).as_slice(),
                "{}",
                t.name
            );
            let leaked = count(
                &db,
                &format!(
                    "SELECT count(*) FROM tokens WHERE id || role || created_by LIKE '%{secret}%'"
                ),
            );
            assert_eq!(leaked, 0, "{}", t.name);
            // An unknown account gets no token.
            assert!(
                matches!(
                    create_token(&db, "nobody", Role::Admin, "cli:op"),
                    Err(AccountError::NotFound { .. })
                ),
                "{}",
                t.name
            );
            let listed = tokens(&db, "acme").unwrap();
            assert_eq!(listed.len(), 1, "{}", t.name);
            assert_eq!(
                (
                    listed[0].role,
                    listed[0].created_by.as_str(),
                    listed[0].revoked_at.as_deref()
                ),
                (Role::Viewer, "cli:op", None),
                "{}",
                t.name
            );
            assert!(
                listed[0].last_used_at.is_some(),
                "{}: the use was recorded",
                t.name
            );
            assert!(
                matches!(tokens(&db, "nobody"), Err(AccountError::NotFound { .. })),
                "{}",
                t.name
            );
        }
    }

    #[test]
    fn a_wrong_secret_with_a_right_id_is_refused() {
        for t in databases("accounts_wrong") {
            let db = t.open("default");
            add(&db, "acme", None, "cli:op").unwrap();
            let new = create_token(&db, "acme", Role::Admin, "cli:op").unwrap();
            let mut wrong = new.token.clone();
            let last = wrong.pop().unwrap();
            wrong.push(if last == '0' { '1' } else { '0' });
            assert_eq!(authenticate(&db, &wrong).unwrap(), None, "{}", t.name);
            let other = create_token(&db, "acme", Role::Admin, "cli:op").unwrap();
            // Another token's secret under this id.
            let swapped = format!(
                "scopable_{}_{}",
                new.token_id,
                &other.token[other.token.len() - 64..]
            );
            assert_eq!(authenticate(&db, &swapped).unwrap(), None, "{}", t.name);
            for malformed in [
                "",
                "scopable_",
                &new.token[..new.token.len() - 1],
                &new.token.to_uppercase(),
                &format!("{}0", new.token),
                &new.token.replace("scopable_", "other_"),
            ] {
                assert_eq!(
                    authenticate(&db, malformed).unwrap(),
                    None,
                    "{}: {malformed}",
                    t.name
                );
            }
            assert!(
                authenticate(&db, &new.token).unwrap().is_some(),
                "{}",
                t.name
            );
        }
    }

    #[test]
    fn last_use_is_recorded_at_most_once_a_minute() {
        for t in databases("accounts_last_use") {
            let db = t.open("default");
            add(&db, "acme", None, "cli:op").unwrap();
            let new = create_token(&db, "acme", Role::Admin, "cli:op").unwrap();
            let last_used = || -> Option<String> {
                db.sql()
                    .query_one("SELECT last_used_at FROM tokens", &[])
                    .unwrap()
                    .opt_text(0)
                    .unwrap()
            };
            // What changes whenever the row is written, even with the same values: SQLite's
            // count of the connection's changes, PostgreSQL's row version.
            let writes = || -> i64 {
                if db.is_postgres() {
                    count(&db, "SELECT CAST(CAST(xmin AS TEXT) AS BIGINT) FROM tokens")
                } else {
                    count(&db, "SELECT total_changes()")
                }
            };
            assert_eq!(last_used(), None, "{}", t.name);
            authenticate(&db, &new.token).unwrap().unwrap();
            let first = last_used().unwrap();
            // A use long ago is replaced; a recent one is not.
            db.sql()
                .execute(
                    "UPDATE tokens SET last_used_at = '2001-01-01T00:00:00Z'",
                    &[],
                )
                .unwrap();
            authenticate(&db, &new.token).unwrap().unwrap();
            let second = last_used().unwrap();
            assert_ne!(second, "2001-01-01T00:00:00Z", "{}", t.name);
            assert!(second >= first, "{}: {second} < {first}", t.name);
            let recent = db::now();
            db.sql()
                .execute("UPDATE tokens SET last_used_at = ?1", &values![&recent])
                .unwrap();
            let before = writes();
            authenticate(&db, &new.token).unwrap().unwrap();
            assert_eq!(last_used().unwrap(), recent, "{}", t.name);
            assert_eq!(writes(), before, "{}: a write within the minute", t.name);
        }
    }

    #[test]
    fn a_revoked_token_and_its_sessions_stop_working_at_once() {
        for t in databases("accounts_revoked") {
            let db = t.open("default");
            add(&db, "acme", None, "cli:op").unwrap();
            let new = create_token(&db, "acme", Role::Admin, "cli:op").unwrap();
            let keep = create_token(&db, "acme", Role::Admin, "cli:op").unwrap();
            let principal = authenticate(&db, &new.token).unwrap().unwrap();
            let kept_principal = authenticate(&db, &keep.token).unwrap().unwrap();
            let session_secret =
                create_session(&db, &principal, Duration::from_secs(3600)).unwrap();
            let other_session =
                create_session(&db, &kept_principal, Duration::from_secs(3600)).unwrap();
            assert_eq!(
                session(&db, &session_secret).unwrap(),
                Some(principal),
                "{}",
                t.name
            );
            assert!(revoke(&db, &new.token_id, "cli:op").unwrap(), "{}", t.name);
            assert_eq!(authenticate(&db, &new.token).unwrap(), None, "{}", t.name);
            assert_eq!(session(&db, &session_secret).unwrap(), None, "{}", t.name);
            assert_eq!(
                count(
                    &db,
                    &format!(
                        "SELECT count(*) FROM sessions WHERE token_id = '{}'",
                        new.token_id
                    )
                ),
                0,
                "{}: its sessions are deleted",
                t.name
            );
            // Revoking again, or an unknown token, changes nothing.
            assert!(!revoke(&db, &new.token_id, "cli:op").unwrap(), "{}", t.name);
            assert!(
                !revoke(&db, "tok_000000000000", "cli:op").unwrap(),
                "{}",
                t.name
            );
            // The other token and its session still work.
            assert!(
                authenticate(&db, &keep.token).unwrap().is_some(),
                "{}",
                t.name
            );
            assert_eq!(
                session(&db, &other_session).unwrap(),
                Some(kept_principal),
                "{}",
                t.name
            );
            let listed = tokens(&db, "acme").unwrap();
            let revoked = listed.iter().find(|t| t.token_id == new.token_id).unwrap();
            assert!(revoked.revoked_at.is_some(), "{}", t.name);
            let acme = t.open("acme");
            let revoked_event = events(&acme, 1).unwrap();
            assert_eq!(
                (
                    revoked_event[0].action.as_str(),
                    revoked_event[0].detail.as_deref()
                ),
                ("token-revoked", Some(new.token_id.as_str())),
                "{}",
                t.name
            );
            assert_eq!(
                count(
                    &db,
                    "SELECT count(*) FROM events WHERE action = 'token-revoked'"
                ),
                1,
                "{}: revoked once",
                t.name
            );
        }
    }

    #[test]
    fn sessions_expire_and_end() {
        for t in databases("accounts_sessions") {
            let db = t.open("default");
            add(&db, "acme", None, "cli:op").unwrap();
            let new = create_token(&db, "acme", Role::Viewer, "cli:op").unwrap();
            let principal = authenticate(&db, &new.token).unwrap().unwrap();
            let secret = create_session(&db, &principal, Duration::from_secs(3600)).unwrap();
            assert!(is_lower_hex(&secret, 64), "{}", t.name);
            // Only the session secret's SHA-256 is stored, as bytes.
            let stored = db
                .sql()
                .query_one("SELECT id_sha256 FROM sessions", &[])
                .unwrap()
                .blob(0)
                .unwrap();
            assert_eq!(
                stored,
                Sha256::digest(secret.as_bytes()).as_slice(),
                "{}",
                t.name
            );
            assert_eq!(
                session(&db, &secret).unwrap(),
                Some(principal.clone()),
                "{}",
                t.name
            );
            assert_eq!(session(&db, &random_hex(32)).unwrap(), None, "{}", t.name);
            assert_eq!(session(&db, "not hex").unwrap(), None, "{}", t.name);
            assert!(end_session(&db, &secret).unwrap(), "{}", t.name);
            assert_eq!(session(&db, &secret).unwrap(), None, "{}", t.name);
            assert!(!end_session(&db, &secret).unwrap(), "{}", t.name);
            // An expired one no longer works, and is deleted by the next sign-in.
            let expired = create_session(&db, &principal, Duration::ZERO).unwrap();
            assert_eq!(session(&db, &expired).unwrap(), None, "{}", t.name);
            create_session(&db, &principal, Duration::from_secs(60)).unwrap();
            assert_eq!(count(&db, "SELECT count(*) FROM sessions"), 1, "{}", t.name);
            // A token revoked, or an account removed, since it authenticated gets no session.
            assert!(revoke(&db, &principal.token_id, "cli:op").unwrap());
            assert!(
                create_session(&db, &principal, Duration::from_secs(60)).is_err(),
                "{}",
                t.name
            );
            assert_eq!(count(&db, "SELECT count(*) FROM sessions"), 0, "{}", t.name);
        }
    }

    #[test]
    fn events_are_listed_newest_first_for_their_account() {
        for t in databases("accounts_events") {
            let a = t.open("a");
            let b = t.open("b");
            let first = record_event(
                &a,
                "cli:alice",
                "connect",
                Some("itglue"),
                Some("region us"),
            )
            .unwrap();
            let second =
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
                ],
                "{}",
                t.name
            );
            // The ids returned are the rows' ids.
            assert_eq!((listed[0].id, listed[1].id), (second, first), "{}", t.name);
            assert!(listed[0].id > listed[1].id, "{}", t.name);
            assert_eq!(listed[1].detail.as_deref(), Some("region us"), "{}", t.name);
            assert_eq!(events(&a, 1).unwrap().len(), 1, "{}", t.name);
            assert_eq!(events(&b, 10).unwrap().len(), 1, "{}", t.name);
        }
    }

    /// Gives `account` a row in every table of [`ACCOUNT_TABLES`]: through this module and
    /// [`crate::connections`] where they write, by hand elsewhere.
    fn fill(t: &TestDb, account: &str) -> Db {
        let db = t.open(account);
        ensure_for_cli(&db, "cli:op").unwrap();
        let token = create_token(&db, account, Role::Admin, "cli:op").unwrap();
        let principal = authenticate(&db, &token.token).unwrap().unwrap();
        create_session(&db, &principal, Duration::from_secs(60)).unwrap();
        crate::connections::save_connection(
            &db,
            "itglue",
            &crate::connections::StoredConnection {
                region: "us".into(),
                endpoint: "https://api.itglue.com".into(),
                key_nonce: vec![1; 24],
                key_ciphertext: vec![2; 40],
                verified_at: db::now(),
            },
        )
        .unwrap();
        for insert in [
            "INSERT INTO clients (account, id, name) VALUES (?1, 'c1', 'Acme')",
            "INSERT INTO configurations (account, id, client_id, name) VALUES (?1, 'k1', 'c1', 'pc')",
            "INSERT INTO links (account, connector, kind, source_id, scopable_id, source, evidence,
                                linked_at)
             VALUES (?1, 'itglue', 'organization', '1', 'c1', 'manual', 'by hand', 't')",
            "INSERT INTO decisions (account, connector, kind, source_id, action, scopable_id,
                                    decided_at)
             VALUES (?1, 'itglue', 'organization', '1', 'link', 'c1', 't')",
            "INSERT INTO unplaced (account, connector, kind, source_id, name, reason, candidates,
                                   suggestions)
             VALUES (?1, 'itglue', 'organization', '2', 'Beta', 'no match', '[]', '[]')",
            "INSERT INTO source_records (account, connector, kind, source_id, name)
             VALUES (?1, 'itglue', 'organization', '1', 'Acme')",
            "INSERT INTO sync_staged (account, run_id, attempt, source_id, slot, client, page,
                                      seq, name)
             VALUES (?1, 1, 1, '1', 0, '', 1, 1, 'Acme')",
            "INSERT INTO sync_planned (account, run_id, attempt, op, source_id)
             VALUES (?1, 1, 1, 'unplaced', '1')",
            "INSERT INTO sync_runs (account, connector, kind, dry_run, started_at, status)
             VALUES (?1, 'itglue', 'organizations', 0, 't', 'succeeded')",
            "INSERT INTO audit (account, at, connector, component_sha256, capability, method, host,
                                path, decision)
             VALUES (?1, 't', 'itglue', 'd1', 'http', 'GET', 'h', '/', 'allowed')",
            "INSERT INTO request_budget (account, connector, at_ms) VALUES (?1, 'itglue', 1)",
            "INSERT INTO decision_log (account, at, connector, action, record_kind, source_id,
                                       scopable_id, actor)
             VALUES (?1, 't', 'itglue', 'link', 'organization', '1', 'c1', 'cli:op')",
            "INSERT INTO schedules (account, connector, every_secs, next_at_ms, set_by)
             VALUES (?1, 'itglue', 3600, 1, 'cli:op')",
        ] {
            db.sql().execute(insert, &values![account]).unwrap();
        }
        db.sql()
            .execute(
                "INSERT INTO kv (account, connector, key, value) VALUES (?1, 'itglue', 'k', ?2)",
                &values![account, &b"v"[..]],
            )
            .unwrap();
        db
    }

    #[test]
    fn removing_an_account_deletes_all_of_it_and_nothing_else() {
        for t in databases("accounts_remove") {
            let gone = fill(&t, "gone");
            let kept = fill(&t, "kept");
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
            assert!(
                rows_of("gone").iter().all(|(_, n)| *n > 0),
                "{}: {:?}",
                t.name,
                rows_of("gone")
            );
            assert!(remove(&kept, "gone", "cli:op").unwrap(), "{}", t.name);
            assert!(
                rows_of("gone").iter().all(|(_, n)| *n == 0),
                "{}: {:?}",
                t.name,
                rows_of("gone")
            );
            assert_eq!(
                rows_of("kept"),
                kept_before,
                "{}: the other account changed",
                t.name
            );
            assert!(get(&gone, "gone").unwrap().is_none(), "{}", t.name);
            assert!(!remove(&kept, "gone", "cli:op").unwrap(), "{}", t.name);
            assert!(get(&kept, "kept").unwrap().is_some(), "{}", t.name);
        }
    }

    /// A removal that fails part-way leaves the account whole: it is one transaction.
    #[test]
    fn a_removal_that_fails_changes_nothing() {
        for t in databases("accounts_remove_fails") {
            let db = fill(&t, "acme");
            let before = count(&db, "SELECT count(*) FROM tokens WHERE account = 'acme'");
            // A trigger refusing to delete events stands for any failure late in the removal,
            // after the rows of the tables before `events` (tokens among them) were deleted.
            let blocker: &[&str] = if db.is_postgres() {
                &[
                    "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql
                     AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$",
                    "CREATE TRIGGER refuse BEFORE DELETE ON events
                     FOR EACH ROW EXECUTE FUNCTION refuse()",
                ]
            } else {
                &["CREATE TRIGGER refuse BEFORE DELETE ON events
                   BEGIN SELECT RAISE(ABORT, 'refused'); END"]
            };
            for statement in blocker {
                db.sql().execute(statement, &[]).unwrap();
            }
            assert!(remove(&db, "acme", "cli:op").is_err(), "{}", t.name);
            assert_eq!(
                count(&db, "SELECT count(*) FROM tokens WHERE account = 'acme'"),
                before,
                "{}: tokens deleted by a failed removal",
                t.name
            );
            assert!(get(&db, "acme").unwrap().is_some(), "{}", t.name);
            assert_eq!(
                count(
                    &db,
                    "SELECT count(*) FROM configurations WHERE account = 'acme'"
                ),
                1,
                "{}",
                t.name
            );
            // The handle is usable after the rollback.
            assert!(feature_enabled(&db, ITGLUE).unwrap(), "{}", t.name);
        }
    }

    /// [`remove`] knows every table an account has rows in.
    #[test]
    fn every_table_of_an_account_is_removed_with_it() {
        for t in databases("accounts_tables") {
            let db = t.open("default");
            let sql = if db.is_postgres() {
                "SELECT CAST(tablename AS TEXT) FROM pg_tables
                 WHERE schemaname = 'public' AND tablename NOT IN ('meta', 'schema_version')"
            } else {
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'meta'"
            };
            let mut tables: Vec<String> = db
                .sql()
                .query(sql, &[])
                .unwrap()
                .iter()
                .map(|r| r.text(0).unwrap())
                .collect();
            let mut known: Vec<String> =
                ACCOUNT_TABLES.iter().map(|(t, _)| t.to_string()).collect();
            tables.sort();
            known.sort();
            assert_eq!(tables, known, "{}", t.name);
        }
    }

    #[test]
    fn replicas_adding_one_account_at_once_create_it_once() {
        for t in databases("accounts_race_add") {
            let added = at_once(&t, 6, |_, db| add(db, "acme", None, "cli:op"));
            let won = added.iter().filter(|r| r.is_ok()).count();
            let refused = added
                .iter()
                .filter(|r| matches!(r, Err(AccountError::Exists { .. })))
                .count();
            assert_eq!((won, refused), (1, 5), "{}: {added:?}", t.name);
            let db = t.open("default");
            assert_eq!(
                count(
                    &db,
                    "SELECT count(*) FROM events WHERE action = 'account-created'"
                ),
                1,
                "{}",
                t.name
            );
            // The command line's first use, by several processes at once.
            let created = at_once(&t, 6, |_, db| ensure_for_cli(db, "cli:op").unwrap());
            assert_eq!(
                created.iter().filter(|c| **c).count(),
                1,
                "{}: {created:?}",
                t.name
            );
            assert_eq!(
                count(
                    &db,
                    "SELECT count(*) FROM events WHERE account = 'default'
                     AND action IN ('account-created', 'feature-enabled')"
                ),
                2,
                "{}",
                t.name
            );
        }
    }

    #[test]
    fn replicas_changing_a_feature_at_once_change_it_once() {
        for t in databases("accounts_race_feature") {
            let db = t.open("default");
            add(&db, "acme", None, "cli:op").unwrap();
            let changed = at_once(&t, 6, |_, db| {
                set_feature(db, "acme", ITGLUE, true, "cli:op").unwrap()
            });
            assert_eq!(
                changed.iter().filter(|c| **c).count(),
                1,
                "{}: {changed:?}",
                t.name
            );
            let changed = at_once(&t, 6, |_, db| {
                set_feature(db, "acme", ITGLUE, false, "cli:op").unwrap()
            });
            assert_eq!(
                changed.iter().filter(|c| **c).count(),
                1,
                "{}: {changed:?}",
                t.name
            );
            assert_eq!(
                count(
                    &db,
                    "SELECT count(*) FROM events WHERE action LIKE 'feature-%'"
                ),
                2,
                "{}",
                t.name
            );
        }
    }

    #[test]
    fn replicas_revoking_one_token_at_once_revoke_it_once() {
        for t in databases("accounts_race_revoke") {
            let db = t.open("default");
            add(&db, "acme", None, "cli:op").unwrap();
            let new = create_token(&db, "acme", Role::Admin, "cli:op").unwrap();
            let revoked = at_once(&t, 6, |_, db| revoke(db, &new.token_id, "cli:op").unwrap());
            assert_eq!(
                revoked.iter().filter(|r| **r).count(),
                1,
                "{}: {revoked:?}",
                t.name
            );
            assert_eq!(
                count(
                    &db,
                    "SELECT count(*) FROM events WHERE action = 'token-revoked'"
                ),
                1,
                "{}",
                t.name
            );
        }
    }

    /// Tokens, features and revocations racing the removal of their account leave nothing of
    /// it behind: each waits for the removal, or the removal waits for it.
    #[test]
    fn writes_racing_an_account_s_removal_leave_nothing_of_it() {
        for t in databases("accounts_race_remove") {
            let db = t.open("default");
            for round in 0..5 {
                add(&db, "acme", None, "cli:op").unwrap();
                let token = create_token(&db, "acme", Role::Admin, "cli:op").unwrap();
                at_once(&t, 4, |i, db| match i {
                    0 => {
                        assert!(remove(db, "acme", "cli:op").unwrap());
                    }
                    1 => {
                        for _ in 0..5 {
                            match create_token(db, "acme", Role::Viewer, "cli:op") {
                                Ok(_) | Err(AccountError::NotFound { .. }) => {}
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                    2 => {
                        for _ in 0..5 {
                            match set_feature(db, "acme", ITGLUE, true, "cli:op") {
                                Ok(_) | Err(AccountError::NotFound { .. }) => {}
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                    _ => {
                        revoke(db, &token.token_id, "cli:op").unwrap();
                    }
                });
                for table in ["tokens", "account_features", "events"] {
                    assert_eq!(
                        count(
                            &db,
                            &format!("SELECT count(*) FROM {table} WHERE account = 'acme'")
                        ),
                        0,
                        "{}: round {round}, {table} kept rows of a removed account",
                        t.name
                    );
                }
            }
        }
    }
}

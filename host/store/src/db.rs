//! The embedded SQLite database: one file holding every Scopable account's records,
//! connections, links, decisions, sync runs, audit records and connector storage, each row
//! keyed by its account.

use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The schema version this build writes (`PRAGMA user_version`): the number of
/// [`MIGRATIONS`].
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The schema's history: migration `n` (counting from 1) takes a database from version `n - 1`
/// to version `n`. A database is brought up to date in place by running the migrations past its
/// version, in order, in one transaction. Append new migrations; never edit one that shipped.
pub const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    SCHEMA_V1,
    // 2: a sync run holds a lease (unix milliseconds) while it works, renewed by its process;
    // a `running` run whose lease has passed was interrupted.
    "ALTER TABLE sync_runs ADD COLUMN lease_until INTEGER;
     CREATE INDEX IF NOT EXISTS sync_runs_running ON sync_runs(connector, kind, status);",
    // 3: every decision (link, ignore, reset, disconnect) is logged with its actor; and each
    // received record keeps every identifier the matcher reads, so that it can be placed again
    // without the network (`identifiers_kept` is 0 on rows written before, until the next sync).
    MIGRATION_V3,
    // 4: tables and columns named for no one connector: the records a connector received are
    // `source_records`, and a record's id in its source is `source_id` everywhere.
    "ALTER TABLE itglue_records RENAME TO source_records;
     ALTER TABLE source_records RENAME COLUMN itglue_id TO source_id;
     ALTER TABLE links RENAME COLUMN itglue_id TO source_id;
     ALTER TABLE decisions RENAME COLUMN itglue_id TO source_id;
     ALTER TABLE unplaced RENAME COLUMN itglue_id TO source_id;",
    // 5: accounts. Every table is keyed by account (existing rows become the account
    // `default`); accounts, their features, tokens, sessions, events and schedules; a run may
    // wait `queued`, and records who asked for it and its progress.
    MIGRATION_V5,
    // 6: how each request travelled: a `new` or `reused` connection, and the proxy if any.
    "ALTER TABLE audit ADD COLUMN connection TEXT;",
    // 7: which claim of a queued run holds it (the fencing token of a run taken over by
    // another replica after its holder's lease lapsed); 0 for a run started directly.
    "ALTER TABLE sync_runs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;",
    // 8: a sync's working rows: the records of a run as their pages arrive, and what its plan
    // decided for each, so that a sync never holds the whole listing in memory.
    MIGRATION_V8,
];

/// The staging tables (`staging.rs`), keyed by the run and the claim (`attempt`) that wrote
/// them. `client` is the client the record's organization is linked to (`''` when none, and
/// for organizations), so that a client's records are read back together; `slot` is 0 for a
/// record with an id and numbers the records without one.
pub(crate) const MIGRATION_V8: &str = "
CREATE TABLE sync_staged (
    account TEXT NOT NULL, run_id INTEGER NOT NULL, attempt INTEGER NOT NULL,
    source_id TEXT NOT NULL, slot INTEGER NOT NULL, client TEXT NOT NULL,
    page INTEGER NOT NULL, seq INTEGER NOT NULL, detail TEXT,
    name TEXT NOT NULL, organization_id TEXT, short_name TEXT, type_name TEXT,
    status_name TEXT, hostname TEXT, primary_ip TEXT, serial_number TEXT,
    mac_addresses TEXT NOT NULL DEFAULT '[]', archived INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (account, run_id, attempt, source_id, slot)
);
CREATE INDEX sync_staged_client ON sync_staged(account, run_id, attempt, client, page, seq);
CREATE TABLE sync_planned (
    account TEXT NOT NULL, run_id INTEGER NOT NULL, attempt INTEGER NOT NULL,
    op TEXT NOT NULL CHECK (op IN ('add', 'remove', 'kept', 'unplaced')),
    source_id TEXT NOT NULL, name TEXT, scopable_id TEXT, evidence TEXT, reason TEXT,
    candidates TEXT, suggestions TEXT, why TEXT, gone INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (account, run_id, attempt, op, source_id)
);
";

const MIGRATION_V5: &str = r#"
-- The binding of the account `default`: the id every stored key was sealed under until now.
INSERT OR IGNORE INTO meta (key, value) VALUES ('account_id', lower(hex(randomblob(16))));

CREATE TABLE accounts (
    id            TEXT NOT NULL PRIMARY KEY,
    name          TEXT,
    created_at    TEXT NOT NULL,
    vault_binding TEXT NOT NULL
);
CREATE TABLE account_features (
    account    TEXT NOT NULL,
    feature    TEXT NOT NULL,
    enabled_at TEXT NOT NULL,
    PRIMARY KEY (account, feature)
);
-- A database that holds data was one admin's: it becomes the account `default`, with the
-- integration it used enabled, and its stored key still decrypts. An empty one has no account
-- until someone uses one.
INSERT INTO accounts (id, name, created_at, vault_binding)
SELECT 'default', NULL, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'),
       (SELECT value FROM meta WHERE key = 'account_id')
WHERE EXISTS (SELECT 1 FROM clients) OR EXISTS (SELECT 1 FROM configurations)
   OR EXISTS (SELECT 1 FROM connections) OR EXISTS (SELECT 1 FROM links)
   OR EXISTS (SELECT 1 FROM sync_runs);
INSERT INTO account_features (account, feature, enabled_at)
SELECT id, 'itglue', created_at FROM accounts WHERE id = 'default';

-- Each table is rebuilt with `account` first in its keys (no default: a write that forgets
-- the account fails instead of landing in one), its rows copied into `default`.
CREATE TABLE clients_v5 (
    account TEXT NOT NULL,
    id      TEXT NOT NULL,
    name    TEXT NOT NULL,
    PRIMARY KEY (account, id)
);
INSERT INTO clients_v5 (account, id, name) SELECT 'default', id, name FROM clients;
CREATE TABLE configurations_v5 (
    account       TEXT NOT NULL,
    id            TEXT NOT NULL,
    client_id     TEXT NOT NULL,
    name          TEXT NOT NULL,
    hostname      TEXT,
    serial_number TEXT,
    mac_addresses TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (account, id),
    FOREIGN KEY (account, client_id) REFERENCES clients_v5 (account, id)
);
INSERT INTO configurations_v5 (account, id, client_id, name, hostname, serial_number, mac_addresses)
SELECT 'default', id, client_id, name, hostname, serial_number, mac_addresses FROM configurations;
-- The child first, so that no table refers to the old `clients` when it goes; renaming
-- `clients_v5` then renames the reference to it.
DROP TABLE configurations;
DROP TABLE clients;
ALTER TABLE clients_v5 RENAME TO clients;
ALTER TABLE configurations_v5 RENAME TO configurations;
CREATE INDEX configurations_client ON configurations(account, client_id);

CREATE TABLE connections_v5 (
    account        TEXT NOT NULL,
    connector      TEXT NOT NULL,
    region         TEXT NOT NULL,
    endpoint       TEXT NOT NULL,
    key_nonce      BLOB NOT NULL,
    key_ciphertext BLOB NOT NULL,
    verified_at    TEXT NOT NULL,
    connected_at   TEXT NOT NULL,
    PRIMARY KEY (account, connector)
);
INSERT INTO connections_v5 (account, connector, region, endpoint, key_nonce, key_ciphertext,
    verified_at, connected_at)
SELECT 'default', connector, region, endpoint, key_nonce, key_ciphertext, verified_at,
    connected_at
FROM connections;
DROP TABLE connections;
ALTER TABLE connections_v5 RENAME TO connections;

CREATE TABLE links_v5 (
    account     TEXT NOT NULL,
    connector   TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('organization', 'configuration')),
    source_id   TEXT NOT NULL,
    scopable_id TEXT NOT NULL,
    source      TEXT NOT NULL CHECK (source IN ('auto', 'manual')),
    evidence    TEXT NOT NULL,
    linked_at   TEXT NOT NULL,
    PRIMARY KEY (account, connector, kind, source_id)
);
INSERT INTO links_v5 (account, connector, kind, source_id, scopable_id, source, evidence, linked_at)
SELECT 'default', connector, kind, source_id, scopable_id, source, evidence, linked_at FROM links;
DROP TABLE links;
ALTER TABLE links_v5 RENAME TO links;
-- Who holds a target (links are one to one).
CREATE INDEX links_target ON links(account, connector, kind, scopable_id);

CREATE TABLE decisions_v5 (
    account     TEXT NOT NULL,
    connector   TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('organization', 'configuration')),
    source_id   TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('link', 'ignore')),
    scopable_id TEXT,
    decided_at  TEXT NOT NULL,
    PRIMARY KEY (account, connector, kind, source_id)
);
INSERT INTO decisions_v5 (account, connector, kind, source_id, action, scopable_id, decided_at)
SELECT 'default', connector, kind, source_id, action, scopable_id, decided_at FROM decisions;
DROP TABLE decisions;
ALTER TABLE decisions_v5 RENAME TO decisions;

CREATE TABLE unplaced_v5 (
    account     TEXT NOT NULL,
    connector   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    source_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    candidates  TEXT NOT NULL,
    suggestions TEXT NOT NULL,
    PRIMARY KEY (account, connector, kind, source_id)
);
INSERT INTO unplaced_v5 (account, connector, kind, source_id, name, reason, candidates, suggestions)
SELECT 'default', connector, kind, source_id, name, reason, candidates, suggestions FROM unplaced;
DROP TABLE unplaced;
ALTER TABLE unplaced_v5 RENAME TO unplaced;

CREATE TABLE source_records_v5 (
    account          TEXT NOT NULL,
    connector        TEXT NOT NULL,
    kind             TEXT NOT NULL,
    source_id        TEXT NOT NULL,
    name             TEXT NOT NULL,
    organization_id  TEXT,
    short_name       TEXT,
    type_name        TEXT,
    status_name      TEXT,
    hostname         TEXT,
    primary_ip       TEXT,
    serial_number    TEXT,
    mac_addresses    TEXT NOT NULL DEFAULT '[]',
    archived         INTEGER NOT NULL DEFAULT 0,
    identifiers_kept INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (account, connector, kind, source_id)
);
INSERT INTO source_records_v5 (account, connector, kind, source_id, name, organization_id,
    short_name, type_name, status_name, hostname, primary_ip, serial_number, mac_addresses,
    archived, identifiers_kept)
SELECT 'default', connector, kind, source_id, name, organization_id, short_name, type_name,
    status_name, hostname, primary_ip, serial_number, mac_addresses, archived, identifiers_kept
FROM source_records;
DROP TABLE source_records;
ALTER TABLE source_records_v5 RENAME TO source_records;

-- `started_at` is when a `queued` run was queued, and when it started once it runs.
CREATE TABLE sync_runs_v5 (
    id            INTEGER PRIMARY KEY,
    account       TEXT NOT NULL,
    connector     TEXT NOT NULL,
    kind          TEXT NOT NULL,
    dry_run       INTEGER NOT NULL,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    status        TEXT NOT NULL,
    fetched       INTEGER NOT NULL DEFAULT 0,
    linked        INTEGER NOT NULL DEFAULT 0,
    skipped       INTEGER NOT NULL DEFAULT 0,
    errored       INTEGER NOT NULL DEFAULT 0,
    new_links     INTEGER NOT NULL DEFAULT 0,
    removed_links INTEGER NOT NULL DEFAULT 0,
    requests      INTEGER NOT NULL DEFAULT 0,
    error         TEXT,
    lease_until   INTEGER,
    actor         TEXT,
    pages_done    INTEGER NOT NULL DEFAULT 0,
    pages_total   INTEGER
);
INSERT INTO sync_runs_v5 (id, account, connector, kind, dry_run, started_at, finished_at, status,
    fetched, linked, skipped, errored, new_links, removed_links, requests, error, lease_until)
SELECT id, 'default', connector, kind, dry_run, started_at, finished_at, status, fetched, linked,
    skipped, errored, new_links, removed_links, requests, error, lease_until
FROM sync_runs;
DROP TABLE sync_runs;
ALTER TABLE sync_runs_v5 RENAME TO sync_runs;
CREATE INDEX sync_runs_running ON sync_runs(account, connector, kind, status);
-- The queue a worker pool takes runs from, every account's, oldest first.
CREATE INDEX sync_runs_queued ON sync_runs(id) WHERE status = 'queued';

CREATE TABLE audit_v5 (
    id               INTEGER PRIMARY KEY,
    account          TEXT NOT NULL,
    at               TEXT NOT NULL,
    connector        TEXT NOT NULL,
    component_sha256 TEXT NOT NULL,
    capability       TEXT NOT NULL,
    method           TEXT NOT NULL,
    host             TEXT NOT NULL,
    path             TEXT NOT NULL,
    decision         TEXT NOT NULL,
    rule             TEXT,
    status           INTEGER,
    bytes            INTEGER NOT NULL DEFAULT 0,
    duration_ms      INTEGER NOT NULL DEFAULT 0,
    detail           TEXT
);
INSERT INTO audit_v5 (id, account, at, connector, component_sha256, capability, method, host,
    path, decision, rule, status, bytes, duration_ms, detail)
SELECT id, 'default', at, connector, component_sha256, capability, method, host, path, decision,
    rule, status, bytes, duration_ms, detail
FROM audit;
DROP TABLE audit;
ALTER TABLE audit_v5 RENAME TO audit;
CREATE INDEX audit_connector ON audit(account, connector, id);
-- Retention deletes by age, whatever the account.
CREATE INDEX audit_at ON audit(at);

CREATE TABLE kv_v5 (
    account   TEXT NOT NULL,
    connector TEXT NOT NULL,
    key       TEXT NOT NULL,
    value     BLOB NOT NULL,
    PRIMARY KEY (account, connector, key)
);
INSERT INTO kv_v5 (account, connector, key, value) SELECT 'default', connector, key, value FROM kv;
DROP TABLE kv;
ALTER TABLE kv_v5 RENAME TO kv;

CREATE TABLE request_budget_v5 (
    account   TEXT NOT NULL,
    connector TEXT NOT NULL,
    at_ms     INTEGER NOT NULL
);
INSERT INTO request_budget_v5 (account, connector, at_ms)
SELECT 'default', connector, at_ms FROM request_budget;
DROP TABLE request_budget;
ALTER TABLE request_budget_v5 RENAME TO request_budget;
CREATE INDEX request_budget_at ON request_budget(account, connector, at_ms);

CREATE TABLE decision_log_v5 (
    id          INTEGER PRIMARY KEY,
    account     TEXT NOT NULL,
    at          TEXT NOT NULL,
    connector   TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('link', 'ignore', 'reset', 'disconnect')),
    record_kind TEXT CHECK (record_kind IN ('organization', 'configuration')),
    source_id   TEXT,
    scopable_id TEXT,
    actor       TEXT NOT NULL
);
INSERT INTO decision_log_v5 (id, account, at, connector, action, record_kind, source_id,
    scopable_id, actor)
SELECT id, 'default', at, connector, action, record_kind, source_id, scopable_id, actor
FROM decision_log;
DROP TABLE decision_log;
ALTER TABLE decision_log_v5 RENAME TO decision_log;
CREATE INDEX decision_log_record ON decision_log(account, connector, record_kind, source_id);

CREATE TABLE tokens (
    id            TEXT NOT NULL PRIMARY KEY,
    account       TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'viewer')),
    secret_sha256 BLOB NOT NULL,
    created_at    TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    revoked_at    TEXT,
    last_used_at  TEXT
);
CREATE INDEX tokens_account ON tokens(account);
CREATE TABLE sessions (
    id_sha256     BLOB NOT NULL PRIMARY KEY,
    token_id      TEXT NOT NULL,
    account       TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
CREATE INDEX sessions_token ON sessions(token_id);
CREATE INDEX sessions_account ON sessions(account);
CREATE TABLE events (
    id        INTEGER PRIMARY KEY,
    account   TEXT NOT NULL,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    connector TEXT,
    detail    TEXT
);
CREATE INDEX events_account ON events(account, id);
CREATE TABLE schedules (
    account    TEXT NOT NULL,
    connector  TEXT NOT NULL,
    every_secs INTEGER NOT NULL,
    next_at_ms INTEGER NOT NULL,
    set_by     TEXT NOT NULL,
    PRIMARY KEY (account, connector)
);
"#;

const MIGRATION_V3: &str = r#"
CREATE TABLE IF NOT EXISTS decision_log (
    id          INTEGER PRIMARY KEY,
    at          TEXT NOT NULL,
    connector   TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('link', 'ignore', 'reset', 'disconnect')),
    record_kind TEXT CHECK (record_kind IN ('organization', 'configuration')),
    source_id   TEXT,
    scopable_id TEXT,
    actor       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decision_log_record ON decision_log(connector, record_kind, source_id);
ALTER TABLE itglue_records ADD COLUMN short_name TEXT;
ALTER TABLE itglue_records ADD COLUMN type_name TEXT;
ALTER TABLE itglue_records ADD COLUMN status_name TEXT;
ALTER TABLE itglue_records ADD COLUMN hostname TEXT;
ALTER TABLE itglue_records ADD COLUMN primary_ip TEXT;
ALTER TABLE itglue_records ADD COLUMN serial_number TEXT;
ALTER TABLE itglue_records ADD COLUMN mac_addresses TEXT NOT NULL DEFAULT '[]';
ALTER TABLE itglue_records ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
ALTER TABLE itglue_records ADD COLUMN identifiers_kept INTEGER NOT NULL DEFAULT 0;
"#;

/// A database problem, phrased for the admin.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The file is not a SQLite database, or is damaged.
    #[error(
        "{path} is not a usable Scopable database ({detail}); point --db at the right file or move this one aside"
    )]
    NotADatabase {
        /// The database path.
        path: String,
        /// What SQLite said.
        detail: String,
    },
    /// The file was written by a newer version of this program.
    #[error(
        "{path} uses schema version {found}, newer than this program understands ({SCHEMA_VERSION}); upgrade scopable-host"
    )]
    NewerSchema {
        /// The database path.
        path: String,
        /// The version found.
        found: i64,
    },
    /// A command that only reads found no database at the path (it never creates one).
    #[error(
        "there is no database at {path}; point --db (or SCOPABLE_DB) at your Scopable database, or create this one with `scopable-host --db {path} import clients FILE.csv`"
    )]
    Missing {
        /// The database path.
        path: String,
    },
    /// The path names a directory.
    #[error(
        "{path} is a directory, not a database file; give --db (or SCOPABLE_DB) the file's path, for example {path}/scopable.db"
    )]
    IsDirectory {
        /// The database path.
        path: String,
    },
    /// The file could not be opened (permissions, a missing folder, a read-only disk).
    #[error(
        "cannot open the database {path} ({detail}); check that the file and its folder exist and that this user may use them, or point --db (or SCOPABLE_DB) elsewhere"
    )]
    CannotOpen {
        /// The database path.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// The file can be read but not written by this user, and the command changes it.
    #[error(
        "{path} is read-only for this user, and this command changes the database; run it as the database's owner, or use a command that only reads (status, links, unplaced, ignored, activity, search)"
    )]
    ReadOnly {
        /// The database path.
        path: String,
    },
    /// The handle's account does not exist (yet) in this database.
    #[error(
        "there is no account {account:?} in this database; create it with `scopable-host accounts add {account}`"
    )]
    NoAccount {
        /// The account asked for.
        account: String,
    },
    /// A run that was to be claimed is not waiting in the queue (another worker took it, it
    /// ended, or it is not the handle's account's).
    #[error("sync run {id} is not queued; it was taken by another worker or has ended")]
    NotQueued {
        /// The run's id.
        id: i64,
    },
    /// Any other SQLite error.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Any other error of the database (PostgreSQL's, or a value of an unexpected type).
    #[error("database error: {0}")]
    Sql(String),
    /// A thread panicked while holding the database connection.
    #[error(
        "the database connection was left unusable by a failed operation; run the command again"
    )]
    Poisoned,
}

const SCHEMA_V1: &str = r#"
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS clients (
    id   TEXT PRIMARY KEY,
    name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS configurations (
    id            TEXT PRIMARY KEY,
    client_id     TEXT NOT NULL REFERENCES clients(id),
    name          TEXT NOT NULL,
    hostname      TEXT,
    serial_number TEXT,
    mac_addresses TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS configurations_client ON configurations(client_id);
CREATE TABLE IF NOT EXISTS connections (
    connector      TEXT PRIMARY KEY,
    region         TEXT NOT NULL,
    endpoint       TEXT NOT NULL,
    key_nonce      BLOB NOT NULL,
    key_ciphertext BLOB NOT NULL,
    verified_at    TEXT NOT NULL,
    connected_at   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS links (
    connector   TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('organization', 'configuration')),
    itglue_id   TEXT NOT NULL,
    scopable_id TEXT NOT NULL,
    source      TEXT NOT NULL CHECK (source IN ('auto', 'manual')),
    evidence    TEXT NOT NULL,
    linked_at   TEXT NOT NULL,
    PRIMARY KEY (connector, kind, itglue_id)
);
CREATE TABLE IF NOT EXISTS decisions (
    connector   TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('organization', 'configuration')),
    itglue_id   TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('link', 'ignore')),
    scopable_id TEXT,
    decided_at  TEXT NOT NULL,
    PRIMARY KEY (connector, kind, itglue_id)
);
CREATE TABLE IF NOT EXISTS unplaced (
    connector   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    itglue_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    candidates  TEXT NOT NULL,
    suggestions TEXT NOT NULL,
    PRIMARY KEY (connector, kind, itglue_id)
);
CREATE TABLE IF NOT EXISTS itglue_records (
    connector       TEXT NOT NULL,
    kind            TEXT NOT NULL,
    itglue_id       TEXT NOT NULL,
    name            TEXT NOT NULL,
    organization_id TEXT,
    PRIMARY KEY (connector, kind, itglue_id)
);
CREATE TABLE IF NOT EXISTS sync_runs (
    id            INTEGER PRIMARY KEY,
    connector     TEXT NOT NULL,
    kind          TEXT NOT NULL,
    dry_run       INTEGER NOT NULL,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    status        TEXT NOT NULL,
    fetched       INTEGER NOT NULL DEFAULT 0,
    linked        INTEGER NOT NULL DEFAULT 0,
    skipped       INTEGER NOT NULL DEFAULT 0,
    errored       INTEGER NOT NULL DEFAULT 0,
    new_links     INTEGER NOT NULL DEFAULT 0,
    removed_links INTEGER NOT NULL DEFAULT 0,
    requests      INTEGER NOT NULL DEFAULT 0,
    error         TEXT
);
CREATE TABLE IF NOT EXISTS audit (
    id               INTEGER PRIMARY KEY,
    at               TEXT NOT NULL,
    connector        TEXT NOT NULL,
    component_sha256 TEXT NOT NULL,
    capability       TEXT NOT NULL,
    method           TEXT NOT NULL,
    host             TEXT NOT NULL,
    path             TEXT NOT NULL,
    decision         TEXT NOT NULL,
    rule             TEXT,
    status           INTEGER,
    bytes            INTEGER NOT NULL DEFAULT 0,
    duration_ms      INTEGER NOT NULL DEFAULT 0,
    detail           TEXT
);
CREATE TABLE IF NOT EXISTS kv (
    connector TEXT NOT NULL,
    key       TEXT NOT NULL,
    value     BLOB NOT NULL,
    PRIMARY KEY (connector, key)
);
CREATE TABLE IF NOT EXISTS request_budget (
    connector TEXT NOT NULL,
    at_ms     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS request_budget_at ON request_budget(connector, at_ms);
"#;

/// Opens (creating if needed) the database at `path`, checks it, and brings the schema up to
/// date. WAL mode, so the audit writer and the main flow can work side by side.
pub fn open(path: &Path) -> Result<Connection, DbError> {
    let created = !path.exists();
    if path.is_dir() {
        return Err(DbError::IsDirectory {
            path: path.display().to_string(),
        });
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| DbError::CannotOpen {
        path: path.display().to_string(),
        detail: e.to_string(),
    })?;
    let not_db = |e: rusqlite::Error| DbError::NotADatabase {
        path: path.display().to_string(),
        detail: e.to_string(),
    };
    conn.busy_timeout(Duration::from_secs(10))?;
    // SQLite falls back to reading a file this user may not write: say so, rather than fail
    // on the first write with a puzzling message.
    if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
        return Err(DbError::ReadOnly {
            path: path.display().to_string(),
        });
    }
    // Links and audit records are the account's business: owner-only, like the key file. A
    // file this user owns that others can read (made by hand, or by an earlier version) is
    // tightened as well; SQLite gives the -wal and -shm files the database file's mode, and
    // existing ones are tightened with it.
    make_private(path, created);
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(not_db)?;
    if version > SCHEMA_VERSION {
        return Err(DbError::NewerSchema {
            path: path.display().to_string(),
            found: version,
        });
    }
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(not_db)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    if version < SCHEMA_VERSION {
        // A SQLite file with tables but no schema version belongs to something else.
        let tables: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )?;
        if version == 0 && tables > 0 {
            return Err(DbError::NotADatabase {
                path: path.display().to_string(),
                detail: "it is a SQLite database of another program".into(),
            });
        }
        migrate(&conn)?;
    }
    // Opening an existing database writes nothing (and so never waits for a writer); the
    // binding of the account `default` (`meta.account_id`) is written by migration 5.
    Ok(conn)
}

/// Runs the migrations past the database's version in one write transaction. The version is
/// read again inside it: another process may have migrated the file meanwhile.
fn migrate(conn: &Connection) -> Result<(), DbError> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (n, migration) in MIGRATIONS.iter().enumerate() {
            let target = n as i64 + 1;
            if target > version {
                conn.execute_batch(migration)?;
                conn.execute_batch(&format!("PRAGMA user_version = {target}"))?;
            }
        }
        conn.execute_batch("COMMIT")
    })();
    if result.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    Ok(result?)
}

/// Opens the database at `path` for reading only, for the commands that only read (`status`,
/// `links`, `unplaced`, `activity`, ...). It never creates, migrates or writes the file:
///
/// - no file at `path`: [`DbError::Missing`]; a directory: [`DbError::IsDirectory`];
/// - a file this user may read but not write (an auditor's copy, mode 0444, in a folder they
///   cannot write) is read as it is; SQLite would need to create the `-shm` file beside it,
///   so when that is impossible and no `-wal` file holds changes, the file is read as
///   immutable;
/// - a file of an older schema is read through an upgraded copy in memory: the file keeps
///   its version, and the next command that writes upgrades it;
/// - a newer schema, a file of another program, an empty or damaged file: refused as
///   [`open`] refuses them.
pub fn open_read_only(path: &Path) -> Result<Connection, DbError> {
    let shown = || path.display().to_string();
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Absolute: a relative default (`./scopable.db`) depends on the folder it ran in.
            let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
            return Err(DbError::Missing {
                path: absolute.display().to_string(),
            });
        }
        Err(e) => {
            return Err(DbError::CannotOpen {
                path: shown(),
                detail: e.to_string(),
            });
        }
        Ok(meta) if meta.is_dir() => return Err(DbError::IsDirectory { path: shown() }),
        Ok(_) => {}
    }
    let not_db = |e: rusqlite::Error| DbError::NotADatabase {
        path: shown(),
        detail: e.to_string(),
    };
    let (conn, uri, version) = match read_only_connection(path, false) {
        Ok(opened) => opened,
        Err(e) if cannot_open(&e) && !wal_holds_changes(path) => {
            read_only_connection(path, true).map_err(|e| open_failure(path, e))?
        }
        Err(e) => return Err(open_failure(path, e)),
    };
    if version > SCHEMA_VERSION {
        return Err(DbError::NewerSchema {
            path: shown(),
            found: version,
        });
    }
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .map_err(not_db)?;
    if version == 0 {
        return Err(DbError::NotADatabase {
            path: shown(),
            detail: if tables > 0 {
                "it is a SQLite database of another program".into()
            } else {
                "it is empty".into()
            },
        });
    }
    if version < SCHEMA_VERSION {
        drop(conn);
        return upgraded_copy(&uri, version).map_err(|e| match e {
            DbError::Sqlite(e) => not_db(e),
            other => other,
        });
    }
    Ok(conn)
}

/// A read-only connection to `path` (as immutable if asked), its URI and schema version.
fn read_only_connection(
    path: &Path,
    immutable: bool,
) -> rusqlite::Result<(Connection, String, i64)> {
    let uri = read_only_uri(path, immutable);
    let conn = Connection::open_with_flags(
        &uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // The first read: it needs the WAL index when the file is in WAL mode.
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    Ok((conn, uri, version))
}

/// `file:PATH?mode=ro`, the path percent-encoded.
fn read_only_uri(path: &Path, immutable: bool) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/._-~".contains(&b) {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?mode=ro");
    if immutable {
        uri.push_str("&immutable=1");
    }
    uri
}

/// Whether SQLite could not open a file (for a read-only WAL database: its `-shm` file).
fn cannot_open(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly)
    )
}

/// Whether a `-wal` file beside the database holds changes not yet in the file itself.
fn wal_holds_changes(path: &Path) -> bool {
    std::fs::metadata(format!("{}-wal", path.display())).is_ok_and(|m| m.len() > 0)
}

/// A failed read-only open, phrased for the admin.
fn open_failure(path: &Path, e: rusqlite::Error) -> DbError {
    let shown = path.display().to_string();
    if !cannot_open(&e) {
        return DbError::NotADatabase {
            path: shown,
            detail: e.to_string(),
        };
    }
    let detail = if wal_holds_changes(path) {
        "its -wal file holds recent changes, and this user cannot create the -shm file beside it to read them; ask the owner to run any command on it once, or copy the file with its -wal file".to_string()
    } else {
        e.to_string()
    };
    DbError::CannotOpen {
        path: shown,
        detail,
    }
}

/// An in-memory copy of the database at `uri` (schema version `version`, older than this
/// program's), brought up to date. The copy's schema comes from this program's own
/// [`MIGRATIONS`] up to `version`, never from the file (whose schema text could hold any SQL),
/// and each of those tables' rows is copied column by column; a file whose tables do not fit
/// is refused. Then the remaining migrations run on the copy.
fn upgraded_copy(uri: &str, version: i64) -> Result<Connection, DbError> {
    let copy = Connection::open_in_memory()?;
    let known = usize::try_from(version).unwrap_or(0).min(MIGRATIONS.len());
    for migration in &MIGRATIONS[..known] {
        copy.execute_batch(migration)?;
    }
    let tables: Vec<String> = {
        let mut stmt = copy.prepare(
            "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    copy.execute("ATTACH DATABASE ?1 AS old", [uri])?;
    for table in &tables {
        let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
        let columns: Vec<String> = {
            let mut stmt = copy.prepare(&format!("PRAGMA main.table_info({})", quote(table)))?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(1))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let list = columns
            .iter()
            .map(|c| quote(c))
            .collect::<Vec<_>>()
            .join(", ");
        copy.execute_batch(&format!(
            "INSERT INTO main.{t} ({list}) SELECT {list} FROM old.{t}",
            t = quote(table)
        ))?;
    }
    copy.execute_batch("DETACH DATABASE old")?;
    copy.pragma_update(None, "user_version", version)?;
    migrate(&copy)?;
    Ok(copy)
}

/// Makes the database file (and its `-wal` and `-shm` files) owner-only when this user owns
/// it. A file someone else owns (an auditor's read-only copy) is left as it is.
fn make_private(path: &Path, created: bool) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let uid = process_uid();
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        let ours = created || uid.is_some_and(|uid| meta.uid() == uid);
        if meta.is_file() && ours && meta.permissions().mode() & 0o077 != 0 {
            let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600));
        }
    }
}

/// This process's user id, read from `/proc/self` (no `libc` call needed).
fn process_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// The database path: `--db`, else `$SCOPABLE_DB`, else `./scopable.db`.
pub fn resolve_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("SCOPABLE_DB").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("scopable.db"))
}

/// The current time as RFC 3339 UTC with second precision.
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Now, in unix milliseconds (the unit of leases, schedules and session expiries).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One audit record: a single use of a capability.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditRecord {
    /// When it happened.
    pub at: String,
    /// The connector's name.
    pub connector: String,
    /// The component's sha256.
    pub component_sha256: String,
    /// `http` or `storage`.
    pub capability: String,
    /// HTTP method, or the storage operation.
    pub method: String,
    /// The host asked for (empty for storage).
    pub host: String,
    /// The path without its query (or the storage key).
    pub path: String,
    /// `allowed` or `denied`.
    pub decision: String,
    /// The rule that denied it, or that failed it (e.g. `max-response-bytes`).
    pub rule: Option<String>,
    /// The HTTP status received.
    pub status: Option<u16>,
    /// Response bytes received (or value bytes stored).
    pub bytes: u64,
    /// Time taken, in milliseconds.
    pub duration_ms: u64,
    /// Extra detail (never the credential).
    pub detail: Option<String>,
    /// How an HTTP request travelled: `new` or `reused` connection, `via proxy
    /// http://host:port` when a proxy carried it. `None` for storage and refused requests.
    pub connection: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::{OptionalExtension, params};

    #[test]
    fn a_version_1_database_upgrades_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(&format!("{SCHEMA_V1} PRAGMA user_version = 1;"))
                .unwrap();
            conn.execute(
                "INSERT INTO sync_runs (connector, kind, dry_run, started_at, status)
                 VALUES ('itglue', 'organization', 0, '2024-01-01T00:00:00Z', 'ok')",
                [],
            )
            .unwrap();
        }
        let conn = open(&path).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        const { assert!(SCHEMA_VERSION >= 2) };
        let (status, lease): (String, Option<i64>) = conn
            .query_row("SELECT status, lease_until FROM sync_runs", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(
            (status.as_str(), lease),
            ("ok", None),
            "the old run is kept"
        );
        drop(conn);
        // Opening again changes nothing, and a newer file is still refused.
        drop(open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
            .unwrap();
        assert!(matches!(open(&path), Err(DbError::NewerSchema { .. })));
    }

    #[test]
    fn a_version_2_database_upgrades_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(&format!(
                "{} {} PRAGMA user_version = 2;",
                MIGRATIONS[0], MIGRATIONS[1]
            ))
            .unwrap();
            conn.execute_batch(
                "INSERT INTO itglue_records (connector, kind, itglue_id, name, organization_id)
                     VALUES ('itglue', 'configuration', '7', 'PC 7', '1');
                 INSERT INTO decisions (connector, kind, itglue_id, action, scopable_id, decided_at)
                     VALUES ('itglue', 'configuration', '7', 'ignore', NULL, '2024-01-01T00:00:00Z');",
            )
            .unwrap();
        }
        let conn = open(&path).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        const { assert!(SCHEMA_VERSION >= 4) };
        // The record and the decision are kept (under the connector-neutral names of
        // migration 4); the record is marked as lacking identifiers
        // until the next sync stores them.
        let (name, org, macs, archived, kept): (String, String, String, bool, bool) = conn
            .query_row(
                "SELECT name, organization_id, mac_addresses, archived, identifiers_kept
                 FROM source_records WHERE source_id = '7'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!(
            (name.as_str(), org.as_str(), macs.as_str(), archived, kept),
            ("PC 7", "1", "[]", false, false)
        );
        let action: String = conn
            .query_row(
                "SELECT action FROM decisions WHERE source_id = '7'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(action, "ignore");
        // The decisions log exists, empty, and takes a decision with its actor.
        let logged: i64 = conn
            .query_row("SELECT count(*) FROM decision_log", [], |r| r.get(0))
            .unwrap();
        assert_eq!(logged, 0);
        conn.execute(
            "INSERT INTO decision_log (account, at, connector, action, record_kind, source_id, scopable_id, actor)
             VALUES ('default', '2024-01-02T00:00:00Z', 'itglue', 'disconnect', NULL, NULL, NULL, 'cli:alice')",
            [],
        )
        .unwrap();
        // An action the log does not know is refused.
        assert!(
            conn.execute(
                "INSERT INTO decision_log (account, at, connector, action, actor) VALUES ('default', 't', 'itglue', 'guess', 'cli:a')",
                [],
            )
            .is_err()
        );
        drop(conn);
        // Opening again changes nothing.
        let conn = open(&path).unwrap();
        let logged: i64 = conn
            .query_row("SELECT count(*) FROM decision_log", [], |r| r.get(0))
            .unwrap();
        assert_eq!(logged, 1);
    }

    /// The tables that hold an account's rows (every table but `meta` and `accounts`).
    const KEYED: [&str; 12] = [
        "clients",
        "configurations",
        "connections",
        "links",
        "decisions",
        "unplaced",
        "source_records",
        "sync_runs",
        "audit",
        "kv",
        "request_budget",
        "decision_log",
    ];

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// A database at schema version 4 with a row in every table, its key sealed under the
    /// binding `acct-v4`.
    fn version_4_database(path: &Path, key: &crate::vault::Vault) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(&format!(
            "{} {} {} {} PRAGMA user_version = 4;",
            MIGRATIONS[0], MIGRATIONS[1], MIGRATIONS[2], MIGRATIONS[3]
        ))
        .unwrap();
        conn.execute_batch(
            "INSERT INTO meta (key, value) VALUES ('account_id', 'acct-v4');
             INSERT INTO clients (id, name) VALUES ('c1', 'Acme'), ('c2', 'Beta');
             INSERT INTO configurations (id, client_id, name, mac_addresses)
                 VALUES ('k1', 'c1', 'pc', '[]');
             INSERT INTO links VALUES ('itglue', 'organization', '1001', 'c1', 'auto', '[\"name\"]', '2024-01-01T00:00:00Z');
             INSERT INTO decisions (connector, kind, source_id, action, scopable_id, decided_at)
                 VALUES ('itglue', 'organization', '1003', 'ignore', NULL, '2024-01-01T00:00:00Z');
             INSERT INTO unplaced VALUES ('itglue', 'organization', '1002', 'Gamma', 'no-match', '[]', '[]');
             INSERT INTO source_records (connector, kind, source_id, name, identifiers_kept)
                 VALUES ('itglue', 'organization', '1001', 'Acme', 1);
             INSERT INTO sync_runs (id, connector, kind, dry_run, started_at, finished_at, status, fetched)
                 VALUES (7, 'itglue', 'organization', 0, '2024-01-01T00:00:00Z', '2024-01-01T00:00:05Z', 'ok', 3);
             INSERT INTO audit (id, at, connector, component_sha256, capability, method, host, path, decision)
                 VALUES (9, '2024-01-01T00:00:01Z', 'itglue', 'd1', 'http', 'GET', 'h', '/organizations', 'allowed');
             INSERT INTO kv (connector, key, value) VALUES ('itglue', 'cursor', x'01');
             INSERT INTO request_budget (connector, at_ms) VALUES ('itglue', 1000);
             INSERT INTO decision_log (id, at, connector, action, record_kind, source_id, actor)
                 VALUES (3, '2024-01-01T00:00:00Z', 'itglue', 'ignore', 'organization', '1003', 'cli:alice');",
        )
        .unwrap();
        let binding = crate::vault::Binding {
            account: "acct-v4",
            connector: "itglue",
            region: "us",
            endpoint: "https://api.itglue.com",
        };
        let (nonce, ciphertext) = key.seal("the-api-key", binding);
        conn.execute(
            "INSERT INTO connections VALUES ('itglue', 'us', 'https://api.itglue.com', ?1, ?2, 't', 't')",
            params![nonce, ciphertext],
        )
        .unwrap();
    }

    #[test]
    fn a_version_4_database_upgrades_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v4.db");
        let vault = crate::vault::Vault::generate();
        version_4_database(&path, &vault);
        let before: Vec<i64> = {
            let conn = Connection::open(&path).unwrap();
            KEYED
                .iter()
                .map(|t| count(&conn, &format!("SELECT count(*) FROM {t}")))
                .collect()
        };
        assert!(before.iter().all(|&n| n > 0), "{before:?}");
        // Read first: through an upgraded copy, the file unchanged.
        let bytes = std::fs::read(&path).unwrap();
        let copy = open_read_only(&path).unwrap();
        assert_eq!(
            count(
                &copy,
                "SELECT count(*) FROM clients WHERE account = 'default'"
            ),
            2
        );
        drop(copy);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "a read changed the file"
        );

        let conn = open(&path).unwrap();
        assert_eq!(count(&conn, "PRAGMA user_version"), SCHEMA_VERSION);
        const { assert!(SCHEMA_VERSION >= 5) };
        // Every row is kept, in the account `default`.
        for (table, n) in KEYED.iter().zip(&before) {
            let kept = count(&conn, &format!("SELECT count(*) FROM {table}"));
            let default = count(
                &conn,
                &format!("SELECT count(*) FROM {table} WHERE account = 'default'"),
            );
            assert_eq!((kept, default), (*n, *n), "{table}");
        }
        // Row ids are kept (the decisions log, runs and audit are listed by them).
        assert_eq!(count(&conn, "SELECT id FROM sync_runs"), 7);
        assert_eq!(count(&conn, "SELECT id FROM audit"), 9);
        assert_eq!(count(&conn, "SELECT id FROM decision_log"), 3);
        // The account `default` exists with itglue enabled, bound as its keys always were.
        let (binding, features): (String, String) = conn
            .query_row(
                "SELECT vault_binding, (SELECT group_concat(feature) FROM account_features
                                         WHERE account = 'default')
                 FROM accounts WHERE id = 'default'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((binding.as_str(), features.as_str()), ("acct-v4", "itglue"));
        assert_eq!(count(&conn, "SELECT count(*) FROM accounts"), 1);
        // The account leads every key: another account may reuse the same ids.
        conn.execute_batch(
            "INSERT INTO clients (account, id, name) VALUES ('b', 'c1', 'Other');
             INSERT INTO links (account, connector, kind, source_id, scopable_id, source, evidence, linked_at)
                 VALUES ('b', 'itglue', 'organization', '1001', 'c1', 'auto', '[]', 't');
             INSERT INTO kv (account, connector, key, value) VALUES ('b', 'itglue', 'cursor', x'02');",
        )
        .unwrap();
        // A configuration's client is of its own account.
        assert!(
            conn.execute(
                "INSERT INTO configurations (account, id, client_id, name) VALUES ('b', 'k9', 'c2', 'pc')",
                [],
            )
            .is_err()
        );
        assert_eq!(
            count(&conn, "SELECT count(*) FROM pragma_foreign_key_check"),
            0
        );
        // Without an account, nothing is written.
        assert!(
            conn.execute("INSERT INTO clients (id, name) VALUES ('c3', 'x')", [])
                .is_err()
        );
        drop(conn);
        // The stored key still decrypts, through the account's binding.
        let db = crate::Db::open(&path, crate::DEFAULT_ACCOUNT).unwrap();
        let stored = crate::connections::connection(&db, "itglue")
            .unwrap()
            .unwrap();
        let binding = crate::connections::account_id(&db).unwrap();
        let key = vault
            .open_secret(
                &stored.key_nonce,
                &stored.key_ciphertext,
                crate::vault::Binding {
                    account: &binding,
                    connector: "itglue",
                    region: &stored.region,
                    endpoint: &stored.endpoint,
                },
            )
            .unwrap();
        assert_eq!(key, "the-api-key");
        // Opening again changes nothing.
        drop(db);
        let conn = open(&path).unwrap();
        assert_eq!(count(&conn, "SELECT count(*) FROM accounts"), 1);
        assert_eq!(count(&conn, "SELECT count(*) FROM clients"), 3);
    }

    /// The database the command line left at schema 4 (`tests/fixtures/schema-v4`, with its key
    /// file) upgrades with every row in `default`, and its stored key still decrypts.
    #[test]
    fn the_released_schema_4_database_upgrades_and_its_key_still_decrypts() {
        use std::os::unix::fs::PermissionsExt;
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/schema-v4");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scopable.db");
        std::fs::copy(fixture.join("scopable.db"), &path).unwrap();
        let key_file = crate::vault::key_file_for(&path);
        std::fs::copy(fixture.join("scopable.db.key"), &key_file).unwrap();
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let before: Vec<i64> = {
            let conn = Connection::open(&path).unwrap();
            assert_eq!(count(&conn, "PRAGMA user_version"), 4);
            KEYED
                .iter()
                .map(|t| count(&conn, &format!("SELECT count(*) FROM {t}")))
                .collect()
        };
        assert_eq!(before[3], 38, "the fixture's links");
        let db = crate::Db::open(&path, crate::DEFAULT_ACCOUNT).unwrap();
        let upgraded = Connection::open(&path).unwrap();
        for (table, n) in KEYED.iter().zip(&before) {
            let default = count(
                &upgraded,
                &format!("SELECT count(*) FROM {table} WHERE account = 'default'"),
            );
            let all = count(&upgraded, &format!("SELECT count(*) FROM {table}"));
            assert_eq!((all, default), (*n, *n), "{table}");
        }
        assert_eq!(crate::views::link_count(&db, "itglue").unwrap(), 38);
        assert!(crate::accounts::feature_enabled(&db, crate::accounts::ITGLUE).unwrap());
        let vault = crate::vault::Vault::open(&path, false).unwrap().unwrap();
        let stored = crate::connections::connection(&db, "itglue")
            .unwrap()
            .unwrap();
        let binding = crate::connections::account_id(&db).unwrap();
        let key = vault
            .open_secret(
                &stored.key_nonce,
                &stored.key_ciphertext,
                crate::vault::Binding {
                    account: &binding,
                    connector: "itglue",
                    region: &stored.region,
                    endpoint: &stored.endpoint,
                },
            )
            .unwrap();
        assert_eq!(key, "sim-key-us");
    }

    #[test]
    fn an_empty_database_gets_no_account_until_one_is_used() {
        let dir = tempfile::tempdir().unwrap();
        // A fresh one.
        let conn = open(&dir.path().join("new.db")).unwrap();
        assert_eq!(count(&conn, "SELECT count(*) FROM accounts"), 0);
        // An older one without data (decisions alone are not an admin's data).
        let path = dir.path().join("empty-v4.db");
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(&format!(
                "{} {} {} {} PRAGMA user_version = 4;
                 INSERT INTO decisions (connector, kind, source_id, action, decided_at)
                     VALUES ('itglue', 'organization', '1', 'ignore', 't');",
                MIGRATIONS[0], MIGRATIONS[1], MIGRATIONS[2], MIGRATIONS[3]
            ))
            .unwrap();
        }
        let conn = open(&path).unwrap();
        assert_eq!(count(&conn, "SELECT count(*) FROM accounts"), 0);
        assert_eq!(
            count(
                &conn,
                "SELECT count(*) FROM decisions WHERE account = 'default'"
            ),
            1
        );
        let db = crate::Db::open(&path, crate::DEFAULT_ACCOUNT).unwrap();
        assert!(matches!(
            crate::connections::account_id(&db),
            Err(DbError::NoAccount { .. })
        ));
    }

    /// Every table but `meta` names the account of each row, first in its primary key, and
    /// every index leads with it unless it serves every account on purpose.
    #[test]
    fn every_table_is_keyed_by_account() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("k.db")).unwrap();
        let tables: Vec<String> = {
            let mut stmt = conn
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'meta'")
                .unwrap();
            stmt.query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        assert!(tables.len() >= KEYED.len() + 6, "{tables:?}");
        let first_key = |table: &str| -> Option<String> {
            conn.query_row(
                &format!("SELECT name FROM pragma_table_info('{table}') WHERE pk = 1"),
                [],
                |r| r.get(0),
            )
            .optional()
            .unwrap()
        };
        for table in &tables {
            let column = if table == "accounts" { "id" } else { "account" };
            let has: i64 = count(
                &conn,
                &format!(
                    "SELECT count(*) FROM pragma_table_info('{table}') WHERE name = '{column}' AND \"notnull\" = 1"
                ),
            );
            assert_eq!(has, 1, "{table} has no {column} column");
            let pk = first_key(table);
            // Tables keyed by a row id (or a token's or session's own id) are looked up by
            // account through an index instead.
            let by_row = [
                "sync_runs",
                "audit",
                "decision_log",
                "events",
                "tokens",
                "sessions",
            ];
            if !by_row.contains(&table.as_str()) && table != "request_budget" {
                assert_eq!(pk.as_deref(), Some(column), "{table}'s primary key");
            }
        }
        // Indexes: the account first, but for the few that serve every account.
        let every_account = ["audit_at", "sync_runs_queued", "sessions_token"];
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
            .unwrap();
        let indexes: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(indexes.len() >= 8, "{indexes:?}");
        for index in indexes {
            let first: String = conn
                .query_row(
                    &format!("SELECT name FROM pragma_index_info('{index}') WHERE seqno = 0"),
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            if !every_account.contains(&index.as_str()) {
                assert_eq!(first, "account", "index {index}");
            }
        }
    }

    #[test]
    fn a_fresh_database_gets_every_migration() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("new.db")).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        conn.query_row("SELECT lease_until FROM sync_runs LIMIT 1", [], |_| Ok(()))
            .optional()
            .unwrap();
    }

    #[test]
    fn an_old_file_s_schema_text_is_never_executed() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("crafted.db");
        let side = dir.path().join("side.db");
        {
            let conn = Connection::open(&old).unwrap();
            conn.execute_batch(&format!(
                "{SCHEMA_V1} PRAGMA user_version = 1;
                 INSERT INTO clients (id, name) VALUES ('c1', 'Acme');"
            ))
            .unwrap();
            // SQLite reads a schema entry up to its first statement and ignores the rest.
            conn.execute_batch("PRAGMA writable_schema = ON;").unwrap();
            conn.execute(
                "UPDATE sqlite_master SET sql = sql || ?1 WHERE name = 'clients'",
                [format!(
                    "; ATTACH '{}' AS p; CREATE TABLE p.x(y)",
                    side.display()
                )],
            )
            .unwrap();
        }
        // Read (the entry's first statement is the table) or refused as malformed, depending
        // on how strictly this SQLite parses schema entries; never run.
        match open_read_only(&old) {
            Ok(conn) => {
                let name: String = conn
                    .query_row("SELECT name FROM clients", [], |r| r.get(0))
                    .unwrap();
                assert_eq!(name, "Acme");
            }
            Err(e) => assert!(matches!(e, DbError::NotADatabase { .. }), "{e}"),
        }
        assert!(!side.exists(), "SQL from the file's schema was run");
    }

    #[test]
    fn reading_only_never_creates_migrates_or_writes() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.db");
        assert!(matches!(
            open_read_only(&missing),
            Err(DbError::Missing { .. })
        ));
        assert!(!missing.exists());
        assert!(matches!(
            open_read_only(dir.path()),
            Err(DbError::IsDirectory { .. })
        ));
        assert!(matches!(open(dir.path()), Err(DbError::IsDirectory { .. })));
        // An older schema is read through an upgraded copy; the file keeps its version.
        let old = dir.path().join("v1.db");
        {
            let conn = Connection::open(&old).unwrap();
            conn.execute_batch(&format!(
                "{SCHEMA_V1} PRAGMA user_version = 1;
                 INSERT INTO clients (id, name) VALUES ('c1', 'Acme');"
            ))
            .unwrap();
        }
        let bytes = std::fs::read(&old).unwrap();
        let conn = open_read_only(&old).unwrap();
        let (name, no_lease): (String, i64) = conn
            .query_row(
                "SELECT (SELECT name FROM clients), (SELECT max(lease_until) IS NULL FROM sync_runs)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(
            (name.as_str(), no_lease),
            ("Acme", 1),
            "migration 2's column is there"
        );
        let copy_version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(copy_version, SCHEMA_VERSION);
        drop(conn);
        assert_eq!(std::fs::read(&old).unwrap(), bytes, "the file changed");
        // A current one is read in place, and refuses writes.
        let current = dir.path().join("current.db");
        drop(open(&current).unwrap());
        let conn = open_read_only(&current).unwrap();
        assert!(
            conn.execute("INSERT INTO clients (id, name) VALUES ('x', 'y')", [])
                .is_err()
        );
        // Newer, foreign and empty files are refused.
        Connection::open(&current)
            .unwrap()
            .execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
            .unwrap();
        assert!(matches!(
            open_read_only(&current),
            Err(DbError::NewerSchema { .. })
        ));
        let empty = dir.path().join("empty.db");
        std::fs::write(&empty, b"").unwrap();
        assert!(matches!(
            open_read_only(&empty),
            Err(DbError::NotADatabase { .. })
        ));
        assert_eq!(std::fs::read(&empty).unwrap(), b"");
    }

    #[test]
    fn database_files_are_made_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        // A new file.
        let fresh = dir.path().join("fresh.db");
        drop(open(&fresh).unwrap());
        assert_eq!(mode(&fresh), 0o600);
        // An existing file readable by everyone, as an earlier version left it.
        let old = dir.path().join("old.db");
        drop(open(&old).unwrap());
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        let conn = open(&old).unwrap();
        let wal = PathBuf::from(format!("{}-wal", old.display()));
        assert_eq!(mode(&old), 0o600);
        if wal.exists() {
            assert_eq!(mode(&wal) & 0o077, 0, "the -wal file");
        }
        drop(conn);
    }
}

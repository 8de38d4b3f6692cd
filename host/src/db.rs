//! The embedded SQLite database: one file per Scopable account, holding the Scopable records,
//! the connection, links, decisions, sync runs, audit records and connector storage.

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
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
];

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
    /// Any other SQLite error.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
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
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let not_db = |e: rusqlite::Error| DbError::NotADatabase {
        path: path.display().to_string(),
        detail: e.to_string(),
    };
    conn.busy_timeout(Duration::from_secs(10))?;
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
    // Opening an existing database writes nothing (and so never waits for a writer).
    let has_account: bool = conn
        .query_row(
            "SELECT 1 FROM meta WHERE key = 'account_id'",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if !has_account {
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('account_id', ?1)",
            params![crate::vault::random_hex(16)],
        )?;
    }
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

/// This database's account id (binds vault ciphertexts to it).
pub fn account_id(conn: &Connection) -> Result<String, DbError> {
    Ok(
        conn.query_row("SELECT value FROM meta WHERE key = 'account_id'", [], |r| {
            r.get(0)
        })?,
    )
}

/// The current time as RFC 3339 UTC with second precision.
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// A stored connection (the key stays encrypted).
#[derive(Debug, Clone)]
pub struct StoredConnection {
    /// The region name.
    pub region: String,
    /// The base URL used.
    pub endpoint: String,
    /// The vault nonce.
    pub key_nonce: Vec<u8>,
    /// The encrypted key.
    pub key_ciphertext: Vec<u8>,
    /// When the key last passed a test.
    pub verified_at: String,
}

/// Reads a connector's stored connection.
pub fn connection(conn: &Connection, connector: &str) -> Result<Option<StoredConnection>, DbError> {
    Ok(conn
        .query_row(
            "SELECT region, endpoint, key_nonce, key_ciphertext, verified_at
             FROM connections WHERE connector = ?1",
            params![connector],
            |r| {
                Ok(StoredConnection {
                    region: r.get(0)?,
                    endpoint: r.get(1)?,
                    key_nonce: r.get(2)?,
                    key_ciphertext: r.get(3)?,
                    verified_at: r.get(4)?,
                })
            },
        )
        .optional()?)
}

/// Stores (replacing) a connector's connection.
pub fn save_connection(
    conn: &Connection,
    connector: &str,
    c: &StoredConnection,
) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO connections (connector, region, endpoint, key_nonce, key_ciphertext, verified_at, connected_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
         ON CONFLICT (connector) DO UPDATE SET region = ?2, endpoint = ?3, key_nonce = ?4,
             key_ciphertext = ?5, verified_at = ?6, connected_at = ?6",
        params![connector, c.region, c.endpoint, c.key_nonce, c.key_ciphertext, c.verified_at],
    )?;
    Ok(())
}

/// Records that the stored key passed a test just now.
pub fn touch_verified(conn: &Connection, connector: &str) -> Result<(), DbError> {
    conn.execute(
        "UPDATE connections SET verified_at = ?2 WHERE connector = ?1",
        params![connector, now()],
    )?;
    Ok(())
}

/// Deletes a connector's connection and key; links stay. Returns whether there was one.
pub fn delete_connection(conn: &Connection, connector: &str) -> Result<bool, DbError> {
    Ok(conn.execute(
        "DELETE FROM connections WHERE connector = ?1",
        params![connector],
    )? > 0)
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
}

/// Appends one audit record.
pub fn insert_audit(conn: &Connection, a: &AuditRecord) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO audit (at, connector, component_sha256, capability, method, host, path,
                            decision, rule, status, bytes, duration_ms, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            a.at,
            a.connector,
            a.component_sha256,
            a.capability,
            a.method,
            a.host,
            a.path,
            a.decision,
            a.rule,
            a.status,
            a.bytes as i64,
            a.duration_ms as i64,
            a.detail
        ],
    )?;
    Ok(())
}

/// The newest audit records of a connector, newest first.
pub fn audit_records(
    conn: &Connection,
    connector: &str,
    limit: usize,
) -> Result<Vec<(i64, AuditRecord)>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT id, at, connector, component_sha256, capability, method, host, path, decision,
                rule, status, bytes, duration_ms, detail
         FROM audit WHERE connector = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![connector, limit as i64], |r| {
        Ok((
            r.get(0)?,
            AuditRecord {
                at: r.get(1)?,
                connector: r.get(2)?,
                component_sha256: r.get(3)?,
                capability: r.get(4)?,
                method: r.get(5)?,
                host: r.get(6)?,
                path: r.get(7)?,
                decision: r.get(8)?,
                rule: r.get(9)?,
                status: r.get(10)?,
                bytes: r.get::<_, i64>(11)? as u64,
                duration_ms: r.get::<_, i64>(12)? as u64,
                detail: r.get(13)?,
            },
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

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

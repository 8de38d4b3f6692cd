//! The PostgreSQL side of the store: a pool of connections (tokio-postgres under
//! deadpool-postgres), statements through [`Sql`], and the schema's migrations, applied once
//! however many replicas start together (a session advisory lock serializes them).
//!
//! The store's functions are synchronous, like SQLite's. A PostgreSQL connection is driven by
//! a task on one process-wide runtime ([`db_runtime`]); a statement is a message to it, waited
//! for on the calling thread ([`block`]), as a SQLite call blocks the calling thread.

use crate::db::DbError;
use crate::sql::{Row, Sql, Value, postgres_placeholders};
use std::sync::OnceLock;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

/// The key of the advisory lock held while migrating.
const MIGRATION_LOCK: i64 = 0x5C0_9AB1E;

/// The schema, one migration per entry, each applied once in its own transaction.
/// `schema_version` holds how many were applied.
pub const MIGRATIONS: &[&str] = &[
    PG_SCHEMA_V1,
    // 2 (SQLite's 7): which claim of a queued run holds it, the fencing token of a run taken
    // over after its holder's lease lapsed.
    "ALTER TABLE sync_runs ADD COLUMN attempt BIGINT NOT NULL DEFAULT 0;",
    // 3 (SQLite's 8): a sync's working rows (`staging.rs`).
    PG_MIGRATION_V3,
];

/// SQLite's migration 8 (`db::MIGRATION_V8`), in this schema's types.
const PG_MIGRATION_V3: &str = r#"
CREATE TABLE sync_staged (
    account TEXT COLLATE "C" NOT NULL, run_id BIGINT NOT NULL, attempt BIGINT NOT NULL,
    source_id TEXT COLLATE "C" NOT NULL, slot BIGINT NOT NULL, client TEXT COLLATE "C" NOT NULL,
    page BIGINT NOT NULL, seq BIGINT NOT NULL, detail TEXT COLLATE "C",
    name TEXT COLLATE "C" NOT NULL, organization_id TEXT COLLATE "C", short_name TEXT COLLATE "C",
    type_name TEXT COLLATE "C", status_name TEXT COLLATE "C", hostname TEXT COLLATE "C",
    primary_ip TEXT COLLATE "C", serial_number TEXT COLLATE "C",
    mac_addresses TEXT COLLATE "C" NOT NULL DEFAULT '[]', archived BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account, run_id, attempt, source_id, slot)
);
CREATE INDEX sync_staged_client ON sync_staged(account, run_id, attempt, client, page, seq);
CREATE TABLE sync_planned (
    account TEXT COLLATE "C" NOT NULL, run_id BIGINT NOT NULL, attempt BIGINT NOT NULL,
    op TEXT COLLATE "C" NOT NULL CHECK (op IN ('add', 'remove', 'kept', 'unplaced')),
    source_id TEXT COLLATE "C" NOT NULL, name TEXT COLLATE "C", scopable_id TEXT COLLATE "C",
    evidence TEXT COLLATE "C", reason TEXT COLLATE "C", candidates TEXT COLLATE "C",
    suggestions TEXT COLLATE "C", why TEXT COLLATE "C", gone BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account, run_id, attempt, op, source_id)
);
"#;

/// The schema as it stands at SQLite's version 6: every integer is `BIGINT` (flags included),
/// bytes are `BYTEA`, generated ids are identities, and text compares and sorts by code point
/// (`COLLATE "C"`), as SQLite's does, whatever the server's locale.
const PG_SCHEMA_V1: &str = r#"
CREATE TABLE meta (key TEXT COLLATE "C" PRIMARY KEY, value TEXT COLLATE "C" NOT NULL);
CREATE TABLE accounts (
    id TEXT COLLATE "C" NOT NULL PRIMARY KEY, name TEXT COLLATE "C", created_at TEXT COLLATE "C" NOT NULL,
    vault_binding TEXT COLLATE "C" NOT NULL
);
CREATE TABLE account_features (
    account TEXT COLLATE "C" NOT NULL, feature TEXT COLLATE "C" NOT NULL, enabled_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (account, feature)
);
CREATE TABLE clients (
    account TEXT COLLATE "C" NOT NULL, id TEXT COLLATE "C" NOT NULL, name TEXT COLLATE "C" NOT NULL, PRIMARY KEY (account, id)
);
CREATE TABLE configurations (
    account TEXT COLLATE "C" NOT NULL, id TEXT COLLATE "C" NOT NULL, client_id TEXT COLLATE "C" NOT NULL, name TEXT COLLATE "C" NOT NULL,
    hostname TEXT COLLATE "C", serial_number TEXT COLLATE "C", mac_addresses TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    PRIMARY KEY (account, id),
    FOREIGN KEY (account, client_id) REFERENCES clients (account, id)
);
CREATE INDEX configurations_client ON configurations(account, client_id);
CREATE TABLE connections (
    account TEXT COLLATE "C" NOT NULL, connector TEXT COLLATE "C" NOT NULL, region TEXT COLLATE "C" NOT NULL,
    endpoint TEXT COLLATE "C" NOT NULL, key_nonce BYTEA NOT NULL, key_ciphertext BYTEA NOT NULL,
    verified_at TEXT COLLATE "C" NOT NULL, connected_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (account, connector)
);
CREATE TABLE links (
    account TEXT COLLATE "C" NOT NULL, connector TEXT COLLATE "C" NOT NULL,
    kind TEXT COLLATE "C" NOT NULL CHECK (kind IN ('organization', 'configuration')),
    source_id TEXT COLLATE "C" NOT NULL, scopable_id TEXT COLLATE "C" NOT NULL,
    source TEXT COLLATE "C" NOT NULL CHECK (source IN ('auto', 'manual')),
    evidence TEXT COLLATE "C" NOT NULL, linked_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (account, connector, kind, source_id)
);
CREATE INDEX links_target ON links(account, connector, kind, scopable_id);
CREATE TABLE decisions (
    account TEXT COLLATE "C" NOT NULL, connector TEXT COLLATE "C" NOT NULL,
    kind TEXT COLLATE "C" NOT NULL CHECK (kind IN ('organization', 'configuration')),
    source_id TEXT COLLATE "C" NOT NULL, action TEXT COLLATE "C" NOT NULL CHECK (action IN ('link', 'ignore')),
    scopable_id TEXT COLLATE "C", decided_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (account, connector, kind, source_id)
);
CREATE TABLE unplaced (
    account TEXT COLLATE "C" NOT NULL, connector TEXT COLLATE "C" NOT NULL, kind TEXT COLLATE "C" NOT NULL,
    source_id TEXT COLLATE "C" NOT NULL, name TEXT COLLATE "C" NOT NULL, reason TEXT COLLATE "C" NOT NULL,
    candidates TEXT COLLATE "C" NOT NULL, suggestions TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (account, connector, kind, source_id)
);
CREATE TABLE source_records (
    account TEXT COLLATE "C" NOT NULL, connector TEXT COLLATE "C" NOT NULL, kind TEXT COLLATE "C" NOT NULL,
    source_id TEXT COLLATE "C" NOT NULL, name TEXT COLLATE "C" NOT NULL, organization_id TEXT COLLATE "C", short_name TEXT COLLATE "C",
    type_name TEXT COLLATE "C", status_name TEXT COLLATE "C", hostname TEXT COLLATE "C", primary_ip TEXT COLLATE "C", serial_number TEXT COLLATE "C",
    mac_addresses TEXT COLLATE "C" NOT NULL DEFAULT '[]', archived BIGINT NOT NULL DEFAULT 0,
    identifiers_kept BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account, connector, kind, source_id)
);
CREATE TABLE sync_runs (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    account TEXT COLLATE "C" NOT NULL, connector TEXT COLLATE "C" NOT NULL, kind TEXT COLLATE "C" NOT NULL,
    dry_run BIGINT NOT NULL, started_at TEXT COLLATE "C" NOT NULL, finished_at TEXT COLLATE "C",
    status TEXT COLLATE "C" NOT NULL, fetched BIGINT NOT NULL DEFAULT 0, linked BIGINT NOT NULL DEFAULT 0,
    skipped BIGINT NOT NULL DEFAULT 0, errored BIGINT NOT NULL DEFAULT 0,
    new_links BIGINT NOT NULL DEFAULT 0, removed_links BIGINT NOT NULL DEFAULT 0,
    requests BIGINT NOT NULL DEFAULT 0, error TEXT COLLATE "C", lease_until BIGINT, actor TEXT COLLATE "C",
    pages_done BIGINT NOT NULL DEFAULT 0, pages_total BIGINT
);
CREATE INDEX sync_runs_running ON sync_runs(account, connector, kind, status);
CREATE INDEX sync_runs_queued ON sync_runs(id) WHERE status = 'queued';
CREATE TABLE audit (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    account TEXT COLLATE "C" NOT NULL, at TEXT COLLATE "C" NOT NULL, connector TEXT COLLATE "C" NOT NULL,
    component_sha256 TEXT COLLATE "C" NOT NULL, capability TEXT COLLATE "C" NOT NULL, method TEXT COLLATE "C" NOT NULL,
    host TEXT COLLATE "C" NOT NULL, path TEXT COLLATE "C" NOT NULL, decision TEXT COLLATE "C" NOT NULL, rule TEXT COLLATE "C",
    status BIGINT, bytes BIGINT NOT NULL DEFAULT 0, duration_ms BIGINT NOT NULL DEFAULT 0,
    detail TEXT COLLATE "C", connection TEXT COLLATE "C"
);
CREATE INDEX audit_connector ON audit(account, connector, id);
CREATE INDEX audit_at ON audit(at);
CREATE TABLE kv (
    account TEXT COLLATE "C" NOT NULL, connector TEXT COLLATE "C" NOT NULL, key TEXT COLLATE "C" NOT NULL, value BYTEA NOT NULL,
    PRIMARY KEY (account, connector, key)
);
CREATE TABLE request_budget (
    account TEXT COLLATE "C" NOT NULL, connector TEXT COLLATE "C" NOT NULL, at_ms BIGINT NOT NULL
);
CREATE INDEX request_budget_at ON request_budget(account, connector, at_ms);
CREATE TABLE decision_log (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    account TEXT COLLATE "C" NOT NULL, at TEXT COLLATE "C" NOT NULL, connector TEXT COLLATE "C" NOT NULL,
    action TEXT COLLATE "C" NOT NULL CHECK (action IN ('link', 'ignore', 'reset', 'disconnect')),
    record_kind TEXT COLLATE "C" CHECK (record_kind IN ('organization', 'configuration')),
    source_id TEXT COLLATE "C", scopable_id TEXT COLLATE "C", actor TEXT COLLATE "C" NOT NULL
);
CREATE INDEX decision_log_record ON decision_log(account, connector, record_kind, source_id);
CREATE TABLE tokens (
    id TEXT COLLATE "C" NOT NULL PRIMARY KEY, account TEXT COLLATE "C" NOT NULL,
    role TEXT COLLATE "C" NOT NULL CHECK (role IN ('admin', 'viewer')), secret_sha256 BYTEA NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL, created_by TEXT COLLATE "C" NOT NULL, revoked_at TEXT COLLATE "C", last_used_at TEXT COLLATE "C"
);
CREATE INDEX tokens_account ON tokens(account);
CREATE TABLE sessions (
    id_sha256 BYTEA NOT NULL PRIMARY KEY, token_id TEXT COLLATE "C" NOT NULL, account TEXT COLLATE "C" NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL, expires_at_ms BIGINT NOT NULL
);
CREATE INDEX sessions_token ON sessions(token_id);
CREATE INDEX sessions_account ON sessions(account);
CREATE TABLE events (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    account TEXT COLLATE "C" NOT NULL, at TEXT COLLATE "C" NOT NULL, actor TEXT COLLATE "C" NOT NULL, action TEXT COLLATE "C" NOT NULL,
    connector TEXT COLLATE "C", detail TEXT COLLATE "C"
);
CREATE INDEX events_account ON events(account, id);
CREATE TABLE schedules (
    account TEXT COLLATE "C" NOT NULL, connector TEXT COLLATE "C" NOT NULL, every_secs BIGINT NOT NULL,
    next_at_ms BIGINT NOT NULL, set_by TEXT COLLATE "C" NOT NULL, PRIMARY KEY (account, connector)
);
"#;

/// The runtime that drives every PostgreSQL connection of the process (one thread).
pub(crate) fn db_runtime() -> &'static tokio::runtime::Handle {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("scopable-db")
                .enable_all()
                .build()
                // Creating a runtime fails only when threads or the reactor cannot be made,
                // the process's resources: no database can be reached then.
                .unwrap_or_else(|e| panic!("cannot start the database runtime: {e}"))
        })
        .handle()
}

/// Waits on this thread for `f`, which talks to connections driven by [`db_runtime`].
pub(crate) fn block<F: std::future::Future>(f: F) -> F::Output {
    let _inside = db_runtime().enter();
    futures_executor::block_on(f)
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => v.to_sql(ty, out),
            Value::Real(v) => v.to_sql(ty, out),
            Value::Text(v) => v.to_sql(ty, out),
            Value::Blob(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as ToSql>::accepts(ty)
            || <f64 as ToSql>::accepts(ty)
            || <String as ToSql>::accepts(ty)
            || <Vec<u8> as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> DbError {
        // The server's own message (`db_error`) says the most; the URL is never in it.
        match e.as_db_error() {
            Some(db) => DbError::Sql(format!(
                "PostgreSQL: {} ({})",
                db.message(),
                db.code().code()
            )),
            None => DbError::Sql(format!("PostgreSQL: {e}")),
        }
    }
}

/// A PostgreSQL row as the store's [`Row`].
fn row(r: &tokio_postgres::Row) -> Result<Row, DbError> {
    let mut values = Vec::with_capacity(r.len());
    for (i, column) in r.columns().iter().enumerate() {
        let ty = column.type_();
        let v = if *ty == Type::INT8 {
            r.try_get::<_, Option<i64>>(i)?.map(Value::Int)
        } else if *ty == Type::INT4 {
            r.try_get::<_, Option<i32>>(i)?
                .map(|v| Value::Int(v.into()))
        } else if *ty == Type::INT2 {
            r.try_get::<_, Option<i16>>(i)?
                .map(|v| Value::Int(v.into()))
        } else if *ty == Type::BOOL {
            r.try_get::<_, Option<bool>>(i)?
                .map(|v| Value::Int(v.into()))
        } else if *ty == Type::FLOAT8 {
            r.try_get::<_, Option<f64>>(i)?.map(Value::Real)
        } else if *ty == Type::BYTEA {
            r.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob)
        } else if [Type::TEXT, Type::VARCHAR, Type::NAME, Type::BPCHAR].contains(ty) {
            r.try_get::<_, Option<String>>(i)?.map(Value::Text)
        } else {
            return Err(DbError::Sql(format!(
                "column {} has the type {ty}, which the store does not read",
                column.name()
            )));
        };
        values.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(values))
}

fn params(values: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

/// A database on a PostgreSQL server: a pool of connections, migrated on first use.
#[derive(Clone)]
pub struct Postgres {
    pool: deadpool_postgres::Pool,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold a password.
        f.debug_struct("Postgres").finish_non_exhaustive()
    }
}

impl Postgres {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/database`), with at most
    /// `max_connections` at once, and migrates the schema (once, whatever other replica is
    /// migrating it at the same time).
    pub fn connect(url: &str, max_connections: usize) -> Result<Postgres, DbError> {
        let config = url
            .parse::<tokio_postgres::Config>()
            .map_err(|_| DbError::Sql("the PostgreSQL URL could not be parsed: give it as postgres://user:password@host:port/database".into()))?;
        let manager = deadpool_postgres::Manager::from_config(
            config,
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(max_connections.max(1))
            // A pool that stays exhausted, or a server that does not answer, is an error
            // after this long, not a wait without end.
            .wait_timeout(Some(std::time::Duration::from_secs(30)))
            .create_timeout(Some(std::time::Duration::from_secs(10)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| DbError::Sql(format!("PostgreSQL pool: {e}")))?;
        let db = Postgres { pool };
        db.migrate()?;
        Ok(db)
    }

    /// A connection from the pool.
    pub fn conn(&self) -> Result<PgConn, DbError> {
        let client = block(self.pool.get()).map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => DbError::from(e),
            other => DbError::Sql(format!("PostgreSQL pool: {other}")),
        })?;
        Ok(PgConn { client })
    }

    /// Applies the migrations not applied yet, holding the migration lock.
    fn migrate(&self) -> Result<(), DbError> {
        let mut conn = self.conn()?;
        conn.execute("SELECT pg_advisory_lock(?1)", &[Value::Int(MIGRATION_LOCK)])?;
        let migrated = conn.migrate_locked();
        let unlocked = conn.execute(
            "SELECT pg_advisory_unlock(?1)",
            &[Value::Int(MIGRATION_LOCK)],
        );
        migrated.and(unlocked.map(|_| ()))
    }

    /// How many migrations the database has.
    pub fn schema_version(&self) -> Result<i64, DbError> {
        self.conn()?
            .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])?
            .int(0)
    }
}

/// One pooled PostgreSQL connection (given back to the pool when dropped).
pub struct PgConn {
    client: deadpool_postgres::Object,
}

impl PgConn {
    fn migrate_locked(&mut self) -> Result<(), DbError> {
        self.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)",
            &[],
        )?;
        let done = self
            .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])?
            .int(0)?;
        for (n, migration) in MIGRATIONS.iter().enumerate().skip(done as usize) {
            self.transaction(|tx| {
                block(tx.0.batch_execute(migration))?;
                tx.execute(
                    "INSERT INTO schema_version (version) VALUES (?1)",
                    &[Value::Int(n as i64 + 1)],
                )?;
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Runs `f` in one transaction, committed when it returns `Ok`, rolled back otherwise.
    pub fn transaction<R>(
        &mut self,
        f: impl FnOnce(&mut PgTx<'_>) -> Result<R, DbError>,
    ) -> Result<R, DbError> {
        let mut tx = self.begin()?;
        let out = f(&mut tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Begins a transaction, rolled back when dropped uncommitted.
    pub fn begin(&mut self) -> Result<PgTx<'_>, DbError> {
        Ok(PgTx(block(self.client.transaction())?))
    }
}

impl Sql for PgConn {
    fn execute(&self, sql: &str, values: &[Value]) -> Result<u64, DbError> {
        let sql = postgres_placeholders(sql);
        Ok(block(self.client.execute(sql.as_str(), &params(values)))?)
    }

    fn query(&self, sql: &str, values: &[Value]) -> Result<Vec<Row>, DbError> {
        let sql = postgres_placeholders(sql);
        block(self.client.query(sql.as_str(), &params(values)))?
            .iter()
            .map(row)
            .collect()
    }

    fn clock_ms(&self) -> Result<i64, DbError> {
        server_clock_ms(self)
    }
}

/// A transaction on a [`PgConn`].
pub struct PgTx<'a>(deadpool_postgres::Transaction<'a>);

impl PgTx<'_> {
    /// Commits.
    pub fn commit(self) -> Result<(), DbError> {
        Ok(block(self.0.commit())?)
    }

    /// Holds, until the transaction ends, the lock named `key`: writers of the same thing
    /// (a run's connector and kind, a budget) wait for each other, other writers do not.
    pub fn lock(&self, key: &str) -> Result<(), DbError> {
        self.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(?1, 0))",
            &[Value::Text(key.to_string())],
        )?;
        Ok(())
    }
}

impl Sql for PgTx<'_> {
    fn execute(&self, sql: &str, values: &[Value]) -> Result<u64, DbError> {
        let sql = postgres_placeholders(sql);
        Ok(block(self.0.execute(sql.as_str(), &params(values)))?)
    }

    fn query(&self, sql: &str, values: &[Value]) -> Result<Vec<Row>, DbError> {
        let sql = postgres_placeholders(sql);
        block(self.0.query(sql.as_str(), &params(values)))?
            .iter()
            .map(row)
            .collect()
    }

    fn clock_ms(&self) -> Result<i64, DbError> {
        server_clock_ms(self)
    }
}

/// The server's clock now, in unix milliseconds (`clock_timestamp`, not the transaction's
/// start: a transaction that waited for a lock reads the time after the wait).
fn server_clock_ms(sql: &dyn Sql) -> Result<i64, DbError> {
    sql.query_one(
        "SELECT CAST(floor(extract(epoch FROM clock_timestamp()) * 1000) AS BIGINT)",
        &[],
    )?
    .int(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_starting_together_migrate_once() {
        let url = crate::testing::fresh_database("migrate");
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || Postgres::connect(&url, 2).map(|db| db.schema_version()))
            })
            .collect();
        for h in handles {
            let version = h.join().unwrap().unwrap().unwrap();
            assert_eq!(version, MIGRATIONS.len() as i64);
        }
        let db = Postgres::connect(&url, 2).unwrap();
        let rows = db
            .conn()
            .unwrap()
            .query("SELECT version FROM schema_version ORDER BY version", &[])
            .unwrap();
        // Each migration recorded once, whoever applied it.
        assert_eq!(rows.len(), MIGRATIONS.len());
    }

    #[test]
    fn values_round_trip_with_their_types() {
        let url = crate::testing::fresh_database("values");
        let db = Postgres::connect(&url, 1).unwrap();
        let conn = db.conn().unwrap();
        conn.execute(
            "INSERT INTO kv (account, connector, key, value) VALUES (?1, ?2, ?3, ?4)",
            &crate::values!["a", "itglue", "k'?1", &b"\x00\xff"[..]],
        )
        .unwrap();
        let row = conn
            .query_one(
                "SELECT key, value, length(value), NULL FROM kv WHERE account = ?1",
                &crate::values!["a"],
            )
            .unwrap();
        assert_eq!(row.text(0).unwrap(), "k'?1");
        assert_eq!(row.blob(1).unwrap(), vec![0, 255]);
        assert_eq!(row.int(2).unwrap(), 2);
        assert_eq!(row.opt_text(3).unwrap(), None);
    }
}

//! [`Db`]: an open database, scoped to one account. Every operation of the store goes through
//! a handle, so every operation knows its account from the start.

use crate::db::{self, DbError};
use crate::location::Location;
use crate::pg::{PgConn, PgTx, Postgres};
use crate::sql::{Row, Sql, Value};
use rusqlite::Connection;

/// The account a single-account installation (the command line) uses.
pub const DEFAULT_ACCOUNT: &str = "default";

/// An open database, scoped to one account.
pub struct Db {
    conn: Conn,
    location: Location,
    account: String,
}

/// The connection of a [`Db`]: a SQLite file's, or one of a PostgreSQL pool's.
enum Conn {
    Sqlite(Connection),
    Postgres(PgConn, Postgres),
}

/// A transaction on a [`Db`], rolled back when dropped uncommitted. SQLite's is `BEGIN
/// IMMEDIATE` (it holds the database's write lock from the start); on PostgreSQL, writers of
/// the same thing serialize with [`Tx::lock`].
pub(crate) enum Tx<'a> {
    Sqlite(rusqlite::Transaction<'a>),
    Postgres(PgTx<'a>),
}

impl Tx<'_> {
    /// Waits for, and holds until the transaction ends, the lock named `key` (PostgreSQL); on
    /// SQLite the transaction already holds the only write lock.
    pub(crate) fn lock(&self, key: &str) -> Result<(), DbError> {
        match self {
            Tx::Sqlite(_) => Ok(()),
            Tx::Postgres(tx) => tx.lock(key),
        }
    }

    /// Commits.
    pub(crate) fn commit(self) -> Result<(), DbError> {
        match self {
            Tx::Sqlite(tx) => Ok(tx.commit()?),
            Tx::Postgres(tx) => tx.commit(),
        }
    }
}

impl Sql for Tx<'_> {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        match self {
            Tx::Sqlite(tx) => tx.execute(sql, params),
            Tx::Postgres(tx) => tx.execute(sql, params),
        }
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        match self {
            Tx::Sqlite(tx) => Sql::query(tx, sql, params),
            Tx::Postgres(tx) => tx.query(sql, params),
        }
    }

    fn clock_ms(&self) -> Result<i64, DbError> {
        match self {
            Tx::Sqlite(tx) => tx.clock_ms(),
            Tx::Postgres(tx) => tx.clock_ms(),
        }
    }
}

impl Db {
    /// Opens (creating and migrating when needed) the database at `at` for `account`: a
    /// SQLite file, or a connection of a PostgreSQL server's pool (held until dropped).
    pub fn open(at: impl Into<Location>, account: &str) -> Result<Db, DbError> {
        let location = at.into();
        let conn = match &location {
            Location::File(path) => Conn::Sqlite(db::open(path)?),
            Location::Postgres(server) => {
                let pool = server.pool()?;
                Conn::Postgres(pool.conn()?, pool)
            }
        };
        Ok(Db {
            conn,
            location,
            account: account.to_string(),
        })
    }

    /// Opens the database at `at` for reading only, for `account`: a SQLite file is never
    /// created, migrated or written ([`db::open_read_only`]); a PostgreSQL database is
    /// opened as by [`Db::open`] (the server keeps it; the schema is brought up to date).
    pub fn open_read_only(at: impl Into<Location>, account: &str) -> Result<Db, DbError> {
        let location = at.into();
        match &location {
            Location::File(path) => Ok(Db {
                conn: Conn::Sqlite(db::open_read_only(path)?),
                location,
                account: account.to_string(),
            }),
            Location::Postgres(_) => Db::open(location, account),
        }
    }

    /// A handle on a PostgreSQL database (one connection of its pool, held until dropped)
    /// for `account`, for the store's tests (which make their own pools).
    #[cfg(test)]
    pub(crate) fn open_postgres(db: &Postgres, account: &str) -> Result<Db, DbError> {
        Ok(Db {
            conn: Conn::Postgres(db.conn()?, db.clone()),
            location: Location::File("postgres".into()),
            account: account.to_string(),
        })
    }

    /// Whether the database is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.conn, Conn::Postgres(..))
    }

    /// Statements outside a transaction, on either database.
    pub(crate) fn sql(&self) -> &dyn Sql {
        match &self.conn {
            Conn::Sqlite(c) => c,
            Conn::Postgres(c, _) => c,
        }
    }

    /// Another handle on the same database and account, with its own connection (for a
    /// thread of its own: a lease's heartbeat, say).
    pub fn sibling(&self) -> Result<Db, DbError> {
        match &self.conn {
            Conn::Sqlite(_) => Db::open(&self.location, &self.account),
            Conn::Postgres(_, pool) => Ok(Db {
                conn: Conn::Postgres(pool.conn()?, pool.clone()),
                location: self.location.clone(),
                account: self.account.clone(),
            }),
        }
    }

    /// Begins a transaction ([`Tx`]).
    pub(crate) fn begin(&mut self) -> Result<Tx<'_>, DbError> {
        Ok(match &mut self.conn {
            Conn::Sqlite(c) => {
                Tx::Sqlite(c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?)
            }
            Conn::Postgres(c, _) => Tx::Postgres(c.begin()?),
        })
    }

    /// Begins a transaction on a sync's working tables (`staging.rs`): on SQLite a
    /// deferred one, so that writing the connection's own `TEMP` tables never takes the
    /// shared file's write lock; on PostgreSQL as [`Db::begin`].
    pub(crate) fn begin_working(&mut self) -> Result<Tx<'_>, DbError> {
        Ok(match &mut self.conn {
            Conn::Sqlite(c) => {
                Tx::Sqlite(c.transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)?)
            }
            Conn::Postgres(c, _) => Tx::Postgres(c.begin()?),
        })
    }

    /// Where the database is.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The account every operation on this handle acts for.
    pub fn account(&self) -> &str {
        &self.account
    }
}

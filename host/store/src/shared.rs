//! [`Shared`]: one connection shared between threads, scoped to an account (the audit writer,
//! the key-value table and the request budget write through it beside the main flow's
//! [`crate::Db`]).

use crate::db::{self, DbError};
use crate::location::Location;
use crate::pg::Postgres;
use crate::sql::Sql;
use rusqlite::Connection;
use std::sync::{Arc, Mutex};

/// A connection shared between threads, each use holding its lock, scoped to one account
/// like [`crate::Db`]: what is written through it is that account's. On PostgreSQL it is a
/// pool, each use taking a connection of its own.
#[derive(Clone)]
pub struct Shared {
    pub(crate) kept: Kept,
    pub(crate) account: Arc<str>,
}

/// Where a [`Shared`] writes.
#[derive(Clone)]
pub(crate) enum Kept {
    /// A SQLite connection, one user at a time.
    Sqlite(Arc<Mutex<Connection>>),
    /// A PostgreSQL pool, shared by every replica using the server.
    Postgres(Postgres),
}

impl Shared {
    /// Opens (creating and migrating when needed) the database at `at` for `account`.
    pub fn open(at: impl Into<Location>, account: &str) -> Result<Shared, DbError> {
        match at.into() {
            Location::File(path) => Ok(Shared::from_connection(db::open(&path)?, account)),
            Location::Postgres(server) => Ok(Shared::postgres(&server.pool()?, account)),
        }
    }

    /// Opens the database at `at` for reading only, for `account`. It is never used to
    /// write, and SQLite opens the file lazily, so it costs nothing unused.
    pub fn open_read_only(at: impl Into<Location>, account: &str) -> Result<Shared, DbError> {
        let path = match at.into() {
            Location::File(path) => path,
            Location::Postgres(server) => return Ok(Shared::postgres(&server.pool()?, account)),
        };
        let conn = Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(DbError::from)?;
        Ok(Shared::from_connection(conn, account))
    }

    /// The database on a PostgreSQL server (its pool, already migrated) for `account`.
    pub fn postgres(db: &Postgres, account: &str) -> Shared {
        Shared {
            kept: Kept::Postgres(db.clone()),
            account: account.into(),
        }
    }

    /// A shared connection over `conn` for `account`.
    pub(crate) fn from_connection(conn: Connection, account: &str) -> Shared {
        Shared {
            kept: Kept::Sqlite(Arc::new(Mutex::new(conn))),
            account: account.into(),
        }
    }

    /// The account every write through this connection is for.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The account, for the tables that keep it beside their connection.
    pub(crate) fn account_arc(&self) -> Arc<str> {
        self.account.clone()
    }

    /// Runs `f`'s statements outside a transaction, holding the connection meanwhile.
    pub(crate) fn run<R, E: From<DbError>>(
        &self,
        f: impl FnOnce(&dyn Sql) -> Result<R, E>,
    ) -> Result<R, E> {
        match &self.kept {
            Kept::Sqlite(conn) => {
                let conn = conn.lock().map_err(|_| DbError::Poisoned)?;
                f(&*conn)
            }
            Kept::Postgres(db) => f(&db.conn()?),
        }
    }

    /// Runs `f` in one transaction, committed when it returns `Ok`, rolled back otherwise.
    /// SQLite's holds the write lock from the start (`BEGIN IMMEDIATE`: a read that later
    /// needs to write is never refused halfway); on PostgreSQL it first takes the lock named
    /// `lock`, if any, so that replicas checking and writing the same thing take turns.
    pub(crate) fn transaction<R, E: From<DbError>>(
        &self,
        lock: Option<&str>,
        f: impl FnOnce(&dyn Sql) -> Result<R, E>,
    ) -> Result<R, E> {
        match &self.kept {
            Kept::Sqlite(conn) => {
                let mut conn = conn.lock().map_err(|_| DbError::Poisoned)?;
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(DbError::from)?;
                let out = f(&tx)?;
                tx.commit().map_err(DbError::from)?;
                Ok(out)
            }
            Kept::Postgres(db) => {
                let mut conn = db.conn()?;
                let tx = conn.begin()?;
                if let Some(key) = lock {
                    tx.lock(key)?;
                }
                let out = f(&tx)?;
                tx.commit()?;
                Ok(out)
            }
        }
    }
}

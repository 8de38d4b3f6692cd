//! [`Shared`]: one connection shared between threads, scoped to an account (the audit writer,
//! the key-value table and the request budget write through it beside the main flow's
//! [`crate::Db`]).

use crate::db::{self, DbError};
use rusqlite::Connection;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A connection shared between threads, each use holding its lock, scoped to one account
/// like [`crate::Db`]: what is written through it is that account's.
#[derive(Clone)]
pub struct Shared {
    pub(crate) conn: Arc<Mutex<Connection>>,
    pub(crate) account: Arc<str>,
}

impl Shared {
    /// Opens (creating and migrating when needed) the database at `path` ([`db::open`]) for
    /// `account`.
    pub fn open(path: &Path, account: &str) -> Result<Shared, DbError> {
        Ok(Shared::from_connection(db::open(path)?, account))
    }

    /// Opens the database at `path` for reading only, for `account`. It is never used to
    /// write, and SQLite opens the file lazily, so it costs nothing unused.
    pub fn open_read_only(path: &Path, account: &str) -> Result<Shared, DbError> {
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(DbError::from)?;
        Ok(Shared::from_connection(conn, account))
    }

    /// A shared connection over `conn` for `account`.
    pub(crate) fn from_connection(conn: Connection, account: &str) -> Shared {
        Shared {
            conn: Arc::new(Mutex::new(conn)),
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
}

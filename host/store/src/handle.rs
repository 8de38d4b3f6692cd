//! [`Db`]: an open database, scoped to one account. Every operation of the store goes through
//! a handle, so every operation knows its account from the start.

use crate::db::{self, DbError};
use rusqlite::Connection;
use std::path::{Path, PathBuf};

/// The account a single-account installation (the command line) uses.
pub const DEFAULT_ACCOUNT: &str = "default";

/// An open database, scoped to one account.
pub struct Db {
    conn: Connection,
    path: PathBuf,
    account: String,
}

impl Db {
    /// Opens (creating and migrating when needed) the database at `path` for `account`.
    pub fn open(path: &Path, account: &str) -> Result<Db, DbError> {
        Ok(Db {
            conn: db::open(path)?,
            path: path.to_path_buf(),
            account: account.to_string(),
        })
    }

    /// Opens the database at `path` for reading only ([`db::open_read_only`]: never created,
    /// migrated or written) for `account`.
    pub fn open_read_only(path: &Path, account: &str) -> Result<Db, DbError> {
        Ok(Db {
            conn: db::open_read_only(path)?,
            path: path.to_path_buf(),
            account: account.to_string(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The account every operation on this handle acts for.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The connection, for the store's own modules.
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The connection, mutably (transactions), for the store's own modules.
    pub(crate) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

//! [`Shared`]: one connection shared between threads (the audit writer, the key-value table
//! and the request budget write through it beside the main flow's [`crate::Db`]).

use crate::db::{self, DbError};
use rusqlite::Connection;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A connection shared between threads, each use holding its lock.
#[derive(Clone)]
pub struct Shared(pub(crate) Arc<Mutex<Connection>>);

impl Shared {
    /// Opens (creating and migrating when needed) the database at `path` ([`db::open`]).
    pub fn open(path: &Path) -> Result<Shared, DbError> {
        Ok(Shared(Arc::new(Mutex::new(db::open(path)?))))
    }

    /// Opens the database at `path` for reading only. It is never used to write, and SQLite
    /// opens the file lazily, so it costs nothing unused.
    pub fn open_read_only(path: &Path) -> Result<Shared, DbError> {
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(DbError::from)?;
        Ok(Shared(Arc::new(Mutex::new(conn))))
    }
}

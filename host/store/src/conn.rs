//! [`AsConnection`]: what a read or write of the store accepts, a [`crate::Db`] handle or a
//! bare connection (the store's own transactions).

use rusqlite::Connection;

/// What reaches the database: the account-scoped [`Db`], or a bare connection
/// ([`db::open`], [`db::open_read_only`]) of a caller that opens its own. Rows are those of
/// the handle's account.
pub trait AsConnection {
    /// The connection.
    fn connection(&self) -> &Connection;
}

impl AsConnection for Connection {
    fn connection(&self) -> &Connection {
        self
    }
}

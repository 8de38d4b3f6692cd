//! Connections: each connector's region, endpoint and encrypted key (sealed by the vault,
//! bound to the account id read here).

use crate::db::{DbError, now};
use crate::handle::Db;
use rusqlite::{Connection, OptionalExtension, params};

/// This database's account id (binds vault ciphertexts to it).
pub fn account_id(conn: &Db) -> Result<String, DbError> {
    let conn = conn.conn();
    Ok(
        conn.query_row("SELECT value FROM meta WHERE key = 'account_id'", [], |r| {
            r.get(0)
        })?,
    )
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
pub fn connection(conn: &Db, connector: &str) -> Result<Option<StoredConnection>, DbError> {
    let conn = conn.conn();
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
pub fn save_connection(conn: &Db, connector: &str, c: &StoredConnection) -> Result<(), DbError> {
    let conn = conn.conn();
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
pub fn touch_verified(conn: &Db, connector: &str) -> Result<(), DbError> {
    let conn = conn.conn();
    conn.execute(
        "UPDATE connections SET verified_at = ?2 WHERE connector = ?1",
        params![connector, now()],
    )?;
    Ok(())
}

/// Deletes a connector's connection and key; links stay. Returns whether there was one.
pub(crate) fn delete_connection(conn: &Connection, connector: &str) -> Result<bool, DbError> {
    Ok(conn.execute(
        "DELETE FROM connections WHERE connector = ?1",
        params![connector],
    )? > 0)
}

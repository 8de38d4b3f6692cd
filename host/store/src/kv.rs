//! Connector key-value data: one namespace per account and connector, with quotas checked and
//! written in one transaction.

use crate::db::DbError;
use crate::shared::Shared;
use rusqlite::{Connection, OptionalExtension, params};
use std::sync::{Arc, Mutex};

/// Why a key-value operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// Storing would pass a quota; the message says which.
    #[error("{0}")]
    Quota(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<rusqlite::Error> for KvError {
    fn from(e: rusqlite::Error) -> KvError {
        KvError::Db(e.into())
    }
}

/// One connector's namespace of one account in the database.
#[derive(Clone)]
pub struct KvTable {
    conn: Arc<Mutex<Connection>>,
    account: Arc<str>,
    connector: Arc<str>,
}

impl KvTable {
    /// The namespace of `connector` in `conn`, for `conn`'s account.
    pub fn new(conn: &Shared, connector: &str) -> KvTable {
        KvTable {
            conn: conn.conn.clone(),
            account: conn.account_arc(),
            connector: connector.into(),
        }
    }

    fn with_conn<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, KvError>,
    ) -> Result<R, KvError> {
        let conn = self.conn.lock().map_err(|_| DbError::Poisoned)?;
        f(&conn)
    }

    /// The value under `key`, if any.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.with_conn(|c| {
            Ok(c.query_row(
                "SELECT value FROM kv WHERE account = ?1 AND connector = ?2 AND key = ?3",
                params![&*self.account, &*self.connector, key],
                |r| r.get(0),
            )
            .optional()?)
        })
    }

    /// Stores `value` under `key` unless the namespace would then hold more than `max_keys`
    /// keys or more than `max_total` bytes of keys and values.
    pub fn set(
        &self,
        key: &str,
        value: &[u8],
        max_keys: u64,
        max_total: u64,
    ) -> Result<(), KvError> {
        self.with_conn(|conn| {
            // Check and write in one transaction, so concurrent writers cannot both fit. It
            // takes the write lock first: a read transaction that later needs to write is
            // refused at once (not waited for) when another connection is writing.
            let c = rusqlite::Transaction::new_unchecked(
                conn,
                rusqlite::TransactionBehavior::Immediate,
            )?;
            let (count, total, existing): (u64, u64, Option<u64>) = c.query_row(
                "SELECT count(*), coalesce(sum(length(CAST(key AS BLOB)) + length(value)), 0),
                        (SELECT length(CAST(key AS BLOB)) + length(value) FROM kv
                          WHERE account = ?1 AND connector = ?2 AND key = ?3)
                 FROM kv WHERE account = ?1 AND connector = ?2",
                params![&*self.account, &*self.connector, key],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)? as u64,
                        r.get::<_, i64>(1)? as u64,
                        r.get::<_, Option<i64>>(2)?.map(|v| v as u64),
                    ))
                },
            )?;
            if existing.is_none() && count >= max_keys {
                return Err(KvError::Quota(format!(
                    "already {count} keys (storage_max_keys)"
                )));
            }
            let new_total = total - existing.unwrap_or(0) + (key.len() + value.len()) as u64;
            if new_total > max_total {
                return Err(KvError::Quota(format!(
                    "{new_total} bytes would exceed storage_max_total_bytes ({max_total})"
                )));
            }
            c.execute(
                "INSERT INTO kv (account, connector, key, value) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (account, connector, key) DO UPDATE SET value = ?4",
                params![&*self.account, &*self.connector, key, value],
            )?;
            c.commit()?;
            Ok(())
        })
    }

    /// Removes `key`; a missing key is not an error.
    pub fn delete(&self, key: &str) -> Result<(), KvError> {
        self.with_conn(|c| {
            c.execute(
                "DELETE FROM kv WHERE account = ?1 AND connector = ?2 AND key = ?3",
                params![&*self.account, &*self.connector, key],
            )?;
            Ok(())
        })
    }

    /// Every key, sorted.
    pub fn keys(&self) -> Result<Vec<String>, KvError> {
        self.with_conn(|c| {
            let mut stmt =
                c.prepare("SELECT key FROM kv WHERE account = ?1 AND connector = ?2 ORDER BY key")?;
            let rows = stmt.query_map(params![&*self.account, &*self.connector], |r| r.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }
}

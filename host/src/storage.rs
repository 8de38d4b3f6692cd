//! The storage capability: a key-value namespace per connector in the host's database, with
//! limits on value size, key count and total bytes. Every use is audited.

use crate::audit::{AuditSink, Event};
use crate::bindings::scopable::integration::storage::StorageError;
use crate::manifest::Limits;
use rusqlite::{Connection, OptionalExtension, params};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 256;

/// A connector's namespace in the database.
#[derive(Clone)]
pub struct StorageHandle {
    conn: Option<Arc<Mutex<Connection>>>,
    connector: String,
    max_value: u64,
    max_keys: u64,
    max_total: u64,
    audit: AuditSink,
}

impl StorageHandle {
    /// A namespace for `connector` in `conn`, under the manifest's limits.
    pub fn new(
        conn: Option<Arc<Mutex<Connection>>>,
        connector: &str,
        limits: &Limits,
        audit: AuditSink,
    ) -> StorageHandle {
        StorageHandle {
            conn,
            connector: connector.to_string(),
            max_value: limits.storage_max_value_bytes,
            max_keys: limits.storage_max_keys,
            max_total: limits.storage_max_total_bytes,
            audit,
        }
    }

    fn with_conn<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StorageError>,
    ) -> Result<R, StorageError> {
        let Some(conn) = &self.conn else {
            return Err(StorageError::Unavailable(
                "storage is not available in this run".into(),
            ));
        };
        let conn = conn
            .lock()
            .map_err(|_| StorageError::Unavailable("storage connection poisoned".into()))?;
        f(&conn)
    }

    fn audited<R>(
        &self,
        op: &str,
        key: &str,
        bytes: u64,
        f: impl FnOnce() -> Result<R, StorageError>,
    ) -> Result<R, StorageError> {
        let started = Instant::now();
        let result = f();
        let rule = match &result {
            Ok(_) => None,
            Err(StorageError::TooLarge(_)) => Some("storage-max-value-bytes"),
            Err(StorageError::QuotaExceeded(_)) => Some("storage-quota"),
            Err(StorageError::InvalidKey(_)) => Some("storage-key"),
            Err(StorageError::Unavailable(_)) => Some("storage-unavailable"),
        };
        self.audit.record(Event {
            capability: "storage",
            method: op.to_string(),
            path: key.chars().take(MAX_KEY_BYTES).collect(),
            allowed: rule.is_none(),
            rule: rule.map(str::to_string),
            bytes,
            duration_ms: started.elapsed().as_millis() as u64,
            ..Event::default()
        });
        result
    }

    /// Reads a value.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.audited("get", key, 0, || {
            check_key(key)?;
            self.with_conn(|c| {
                c.query_row(
                    "SELECT value FROM kv WHERE connector = ?1 AND key = ?2",
                    params![self.connector, key],
                    |r| r.get(0),
                )
                .optional()
                .map_err(unavailable)
            })
        })
    }

    /// Writes a value, within the value-size, key-count and total-size limits.
    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.audited("set", key, value.len() as u64, || {
            check_key(key)?;
            if value.len() as u64 > self.max_value {
                return Err(StorageError::TooLarge(format!(
                    "{} bytes is over storage_max_value_bytes ({})",
                    value.len(),
                    self.max_value
                )));
            }
            self.with_conn(|conn| {
                // Check and write in one transaction, so concurrent writers cannot both fit.
                let c = conn.unchecked_transaction().map_err(unavailable)?;
                let (count, total, existing): (u64, u64, Option<u64>) = c
                    .query_row(
                        "SELECT count(*), coalesce(sum(length(CAST(key AS BLOB)) + length(value)), 0),
                                (SELECT length(CAST(key AS BLOB)) + length(value) FROM kv WHERE connector = ?1 AND key = ?2)
                         FROM kv WHERE connector = ?1",
                        params![self.connector, key],
                        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64, r.get::<_, Option<i64>>(2)?.map(|v| v as u64))),
                    )
                    .map_err(unavailable)?;
                if existing.is_none() && count >= self.max_keys {
                    return Err(StorageError::QuotaExceeded(format!(
                        "already {count} keys (storage_max_keys)"
                    )));
                }
                let new_total = total - existing.unwrap_or(0) + (key.len() + value.len()) as u64;
                if new_total > self.max_total {
                    return Err(StorageError::QuotaExceeded(format!(
                        "{new_total} bytes would exceed storage_max_total_bytes ({})",
                        self.max_total
                    )));
                }
                c.execute(
                    "INSERT INTO kv (connector, key, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT (connector, key) DO UPDATE SET value = ?3",
                    params![self.connector, key, value],
                )
                .map_err(unavailable)?;
                c.commit().map_err(unavailable)
            })
        })
    }

    /// Removes a key.
    pub fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.audited("delete", key, 0, || {
            check_key(key)?;
            self.with_conn(|c| {
                c.execute(
                    "DELETE FROM kv WHERE connector = ?1 AND key = ?2",
                    params![self.connector, key],
                )
                .map(|_| ())
                .map_err(unavailable)
            })
        })
    }

    /// Every key, sorted.
    pub fn keys(&self) -> Result<Vec<String>, StorageError> {
        self.audited("keys", "", 0, || {
            self.with_conn(|c| {
                let mut stmt = c
                    .prepare("SELECT key FROM kv WHERE connector = ?1 ORDER BY key")
                    .map_err(unavailable)?;
                let rows = stmt
                    .query_map(params![self.connector], |r| r.get(0))
                    .map_err(unavailable)?;
                rows.collect::<Result<_, _>>().map_err(unavailable)
            })
        })
    }
}

fn check_key(key: &str) -> Result<(), StorageError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(StorageError::InvalidKey(format!(
            "keys must be 1..={MAX_KEY_BYTES} bytes"
        )));
    }
    Ok(())
}

fn unavailable(e: rusqlite::Error) -> StorageError {
    StorageError::Unavailable(e.to_string())
}

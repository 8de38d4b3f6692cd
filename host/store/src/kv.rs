//! Connector key-value data: one namespace per account and connector, with quotas checked and
//! written in one transaction.

use crate::db::DbError;
use crate::shared::Shared;
use crate::values;

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
    shared: Shared,
    connector: String,
}

impl KvTable {
    /// The namespace of `connector` in `conn`, for `conn`'s account.
    pub fn new(conn: &Shared, connector: &str) -> KvTable {
        KvTable {
            shared: conn.clone(),
            connector: connector.to_string(),
        }
    }

    fn account(&self) -> &str {
        self.shared.account()
    }

    /// The value under `key`, if any.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.shared.run(|c| {
            let row = c.query_opt(
                "SELECT value FROM kv WHERE account = ?1 AND connector = ?2 AND key = ?3",
                &values![self.account(), &self.connector, key],
            )?;
            Ok(row.map(|r| r.blob(0)).transpose()?)
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
        // Check and write in one transaction, so concurrent writers cannot both fit: SQLite's
        // holds the write lock from the start, and on PostgreSQL writers of the namespace
        // (whatever replica) take its lock first.
        let lock = format!("kv/{}/{}", self.account(), self.connector);
        self.shared.transaction(Some(&lock), |c| {
            let row = c.query_one(
                "SELECT count(*),
                        CAST(coalesce(sum(octet_length(key) + octet_length(value)), 0) AS BIGINT),
                        (SELECT CAST(octet_length(key) + octet_length(value) AS BIGINT) FROM kv
                          WHERE account = ?1 AND connector = ?2 AND key = ?3)
                 FROM kv WHERE account = ?1 AND connector = ?2",
                &values![self.account(), &self.connector, key],
            )?;
            let count = row.int(0)? as u64;
            let total = row.int(1)? as u64;
            let existing = row.opt_int(2)?.map(|v| v as u64);
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
                 ON CONFLICT (account, connector, key) DO UPDATE SET value = excluded.value",
                &values![self.account(), &self.connector, key, value],
            )?;
            Ok(())
        })
    }

    /// Removes `key`; a missing key is not an error.
    pub fn delete(&self, key: &str) -> Result<(), KvError> {
        self.shared.run(|c| {
            c.execute(
                "DELETE FROM kv WHERE account = ?1 AND connector = ?2 AND key = ?3",
                &values![self.account(), &self.connector, key],
            )?;
            Ok(())
        })
    }

    /// Every key, sorted.
    pub fn keys(&self) -> Result<Vec<String>, KvError> {
        self.shared.run(|c| {
            let rows = c.query(
                "SELECT key FROM kv WHERE account = ?1 AND connector = ?2 ORDER BY key",
                &values![self.account(), &self.connector],
            )?;
            Ok(rows.iter().map(|r| r.text(0)).collect::<Result<_, _>>()?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TestDb, databases};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A new shared connection (another process, or replica) on `t` for `account`.
    fn shared(t: &TestDb, account: &str) -> Shared {
        match (t.path(), t.postgres()) {
            (Some(path), _) => Shared::open(&path, account).unwrap(),
            (None, Some(pg)) => Shared::postgres(pg, account),
            (None, None) => unreachable!("a test database is one or the other"),
        }
    }

    #[test]
    fn values_round_trip_and_keys_sort_within_one_namespace() {
        for t in databases("kv_round_trip") {
            let kv = KvTable::new(&shared(&t, "a"), "itglue");
            assert_eq!(kv.get("cursor").unwrap(), None, "{}", t.name);
            kv.set("cursor", b"\x00page-2\xff", 10, 1000).unwrap();
            kv.set("B", b"", 10, 1000).unwrap();
            kv.set("a", b"1", 10, 1000).unwrap();
            // Another process sees it.
            let other = KvTable::new(&shared(&t, "a"), "itglue");
            assert_eq!(
                other.get("cursor").unwrap().as_deref(),
                Some(&b"\x00page-2\xff"[..]),
                "{}",
                t.name
            );
            // Sorted by code point, as SQLite sorts.
            assert_eq!(other.keys().unwrap(), ["B", "a", "cursor"], "{}", t.name);
            // Replacing keeps one key.
            other.set("cursor", b"page-3", 10, 1000).unwrap();
            assert_eq!(kv.get("cursor").unwrap().as_deref(), Some(&b"page-3"[..]));
            assert_eq!(kv.keys().unwrap().len(), 3, "{}", t.name);
            // Another connector, and another account, have their own namespaces.
            assert!(
                KvTable::new(&shared(&t, "a"), "other")
                    .keys()
                    .unwrap()
                    .is_empty()
            );
            let elsewhere = KvTable::new(&shared(&t, "b"), "itglue");
            assert_eq!(elsewhere.get("cursor").unwrap(), None, "{}", t.name);
            elsewhere.set("cursor", b"x", 10, 1000).unwrap();
            assert_eq!(kv.get("cursor").unwrap().as_deref(), Some(&b"page-3"[..]));
            kv.delete("cursor").unwrap();
            kv.delete("missing").unwrap();
            assert_eq!(kv.keys().unwrap(), ["B", "a"], "{}", t.name);
            assert_eq!(elsewhere.keys().unwrap(), ["cursor"], "{}", t.name);
        }
    }

    #[test]
    fn quotas_count_keys_and_bytes_of_the_namespace() {
        for t in databases("kv_quotas") {
            let kv = KvTable::new(&shared(&t, "a"), "itglue");
            // Two keys at most, 20 bytes of keys and values at most ("é" is two bytes).
            kv.set("k1", b"12345678", 2, 20).unwrap();
            kv.set("é", b"123456", 2, 20).unwrap();
            let err = kv.set("k3", b"", 2, 20).unwrap_err();
            assert!(
                matches!(&err, KvError::Quota(m) if m.contains("storage_max_keys")),
                "{}: {err}",
                t.name
            );
            // Replacing a key is not a new key; its old size no longer counts.
            kv.set("k1", b"123456789a", 2, 20).unwrap();
            let err = kv.set("k1", b"123456789ab", 2, 20).unwrap_err();
            assert!(
                matches!(&err, KvError::Quota(m) if m.contains("21 bytes")),
                "{}: {err}",
                t.name
            );
            // A refused write changed nothing.
            assert_eq!(
                kv.get("k1").unwrap().as_deref(),
                Some(&b"123456789a"[..]),
                "{}",
                t.name
            );
            // Another connector's quota is its own.
            KvTable::new(&shared(&t, "a"), "other")
                .set("k3", b"", 2, 20)
                .unwrap();
        }
    }

    #[test]
    fn writers_at_once_never_exceed_the_key_quota() {
        for t in databases("kv_race") {
            // Three processes (replicas), three threads each, 30 new keys for 10 places.
            let tables: Vec<KvTable> = (0..3)
                .map(|_| KvTable::new(&shared(&t, "a"), "itglue"))
                .collect();
            let stored = AtomicU32::new(0);
            std::thread::scope(|s| {
                for (r, table) in tables.iter().enumerate() {
                    for n in 0..3 {
                        let stored = &stored;
                        s.spawn(move || {
                            for i in 0..10 {
                                match table.set(&format!("{r}/{n}/{i}"), b"v", 10, 1000) {
                                    Ok(()) => {
                                        stored.fetch_add(1, Ordering::SeqCst);
                                    }
                                    Err(KvError::Quota(_)) => {}
                                    Err(e) => panic!("{e}"),
                                }
                            }
                        });
                    }
                }
            });
            assert_eq!(stored.load(Ordering::SeqCst), 10, "{}", t.name);
            assert_eq!(tables[0].keys().unwrap().len(), 10, "{}", t.name);
        }
    }
}

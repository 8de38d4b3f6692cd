//! The storage capability: a key-value namespace per connector in the host's database, with
//! limits on value size, key count and total bytes. Every use is audited.
//!
//! The SQLite work of each operation runs on tokio's blocking pool (`spawn_blocking`), never on
//! the async threads that drive the calls. A handle made for one call ([`StorageHandle::for_call`])
//! counts that call's refusals, and refuses everything to `match`.

use crate::audit::{AuditSink, Event};
use crate::bindings::scopable::integration::storage::StorageError;
use crate::capabilities::CallReport;
use crate::manifest::Limits;
use crate::policy::{Denial, Rule};
use rusqlite::{Connection, OptionalExtension, params};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 256;

/// Most storage operations one export call may make (each is audited, so this also bounds the
/// audit rows one call can write). The next one is refused (rule `storage-ops`) and fails the
/// call.
pub const MAX_STORAGE_OPS_PER_CALL: u32 = 1000;

/// The audit rule of a storage operation refused because the export is `match`.
pub const NO_STORAGE_IN_MATCH: &str = "no-storage-in-match";

/// A connector's namespace in the database.
#[derive(Clone)]
pub struct StorageHandle {
    conn: Option<Arc<Mutex<Connection>>>,
    connector: Arc<str>,
    max_value: u64,
    max_keys: u64,
    max_total: u64,
    audit: AuditSink,
    call: Option<CallScope>,
}

/// The call a handle serves.
#[derive(Clone)]
struct CallScope {
    /// Where the call's refusals are counted.
    report: Arc<Mutex<CallReport>>,
    /// False for `match`: every operation is refused.
    allowed: bool,
    /// Operations asked for so far in this call.
    ops: Arc<std::sync::atomic::AtomicU32>,
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
            connector: connector.into(),
            max_value: limits.storage_max_value_bytes,
            max_keys: limits.storage_max_keys,
            max_total: limits.storage_max_total_bytes,
            audit,
            call: None,
        }
    }

    /// The same namespace for one export call: its refusals are counted in `report` (past
    /// [`crate::capabilities::MAX_DENIALS_PER_CALL`] they are no longer audited one by one),
    /// and with `allowed` false (`match`, which receives Scopable's records) every operation is
    /// refused with `unavailable`, audited under [`NO_STORAGE_IN_MATCH`], and fails the call.
    pub fn for_call(&self, report: Arc<Mutex<CallReport>>, allowed: bool) -> StorageHandle {
        StorageHandle {
            call: Some(CallScope {
                report,
                allowed,
                ops: Default::default(),
            }),
            ..self.clone()
        }
    }

    /// Where this handle's records go.
    pub fn audit(&self) -> &AuditSink {
        &self.audit
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

    /// Counts a refused operation against the call and audits it under its rule (past the
    /// call's refusal limit it is only counted).
    fn deny(
        &self,
        scope: &CallScope,
        op: &'static str,
        path: String,
        bytes: u64,
        started: Instant,
        denial: Denial,
    ) {
        let rule = denial.rule.name().to_string();
        let detail = denial.message.clone();
        if refuse(&scope.report, Some(denial)) {
            self.audit.record(Event {
                capability: "storage",
                method: op.to_string(),
                path,
                allowed: false,
                rule: Some(rule),
                bytes,
                duration_ms: started.elapsed().as_millis() as u64,
                detail: Some(detail),
                ..Event::default()
            });
        }
    }

    /// Runs `f` on the blocking pool when this export may use storage, audits the outcome,
    /// and counts a refusal against the call.
    async fn audited<R: Send + 'static>(
        &self,
        op: &'static str,
        key: &str,
        bytes: u64,
        f: impl FnOnce(&StorageHandle) -> Result<R, StorageError> + Send + 'static,
    ) -> Result<R, StorageError> {
        let started = Instant::now();
        let path: String = key.chars().take(MAX_KEY_BYTES).collect();
        if let Some(scope) = self.call.as_ref().filter(|s| !s.allowed) {
            let denial = Denial {
                rule: Rule::NoStorage,
                message: format!(
                    "`match` may not use storage (it tried `{op}`): it receives Scopable's records, which must not reach a later call"
                ),
            };
            self.deny(scope, op, path, bytes, started, denial);
            return Err(StorageError::Unavailable(
                "storage is not available to `match`".into(),
            ));
        }
        if let Some(scope) = &self.call {
            let n = scope.ops.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if n > MAX_STORAGE_OPS_PER_CALL {
                let denial = Denial {
                    rule: Rule::StorageOps,
                    message: format!(
                        "this call already made {MAX_STORAGE_OPS_PER_CALL} storage operations; keep state small and read it once per call"
                    ),
                };
                self.deny(scope, op, path, bytes, started, denial);
                return Err(StorageError::QuotaExceeded(format!(
                    "more than {MAX_STORAGE_OPS_PER_CALL} storage operations in one call"
                )));
            }
        }
        let this = self.clone();
        let result = tokio::task::spawn_blocking(move || f(&this))
            .await
            .unwrap_or_else(|e| {
                Err(StorageError::Unavailable(format!(
                    "the storage operation did not finish: {e}"
                )))
            });
        let rule = match &result {
            Ok(_) => None,
            Err(StorageError::TooLarge(_)) => Some("storage-max-value-bytes"),
            Err(StorageError::QuotaExceeded(_)) => Some("storage-quota"),
            Err(StorageError::InvalidKey(_)) => Some("storage-key"),
            Err(StorageError::Unavailable(_)) => Some("storage-unavailable"),
        };
        // The database failing under a storage call is the host's failure, not the API's or
        // the connector's (a database-less run answers `unavailable` by design).
        if let (Some(scope), Err(StorageError::Unavailable(why)), Some(_)) =
            (&self.call, &result, &self.conn)
            && let Ok(mut r) = scope.report.lock()
            && r.host_failure.is_none()
        {
            r.host_failure = Some(format!(
                "the connector's storage in the database failed: {why}"
            ));
        }
        let recorded = match (&self.call, rule) {
            (Some(scope), Some(_)) => refuse(&scope.report, None),
            _ => true,
        };
        if recorded {
            self.audit.record(Event {
                capability: "storage",
                method: op.to_string(),
                path,
                allowed: rule.is_none(),
                rule: rule.map(str::to_string),
                bytes,
                duration_ms: started.elapsed().as_millis() as u64,
                ..Event::default()
            });
        }
        result
    }

    /// Reads a value.
    pub async fn get(&self, key: String) -> Result<Option<Vec<u8>>, StorageError> {
        self.audited("get", &key.clone(), 0, move |s| s.get_now(&key))
            .await
    }

    /// Writes a value, within the value-size, key-count and total-size limits.
    pub async fn set(&self, key: String, value: Vec<u8>) -> Result<(), StorageError> {
        let bytes = value.len() as u64;
        self.audited("set", &key.clone(), bytes, move |s| s.set_now(&key, &value))
            .await
    }

    /// Removes a key.
    pub async fn delete(&self, key: String) -> Result<(), StorageError> {
        self.audited("delete", &key.clone(), 0, move |s| s.delete_now(&key))
            .await
    }

    /// Every key, sorted.
    pub async fn keys(&self) -> Result<Vec<String>, StorageError> {
        self.audited("keys", "", 0, |s| s.keys_now()).await
    }

    fn get_now(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        check_key(key)?;
        self.with_conn(|c| {
            c.query_row(
                "SELECT value FROM kv WHERE connector = ?1 AND key = ?2",
                params![&*self.connector, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(unavailable)
        })
    }

    fn set_now(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        check_key(key)?;
        if value.len() as u64 > self.max_value {
            return Err(StorageError::TooLarge(format!(
                "{} bytes is over storage_max_value_bytes ({})",
                value.len(),
                self.max_value
            )));
        }
        self.with_conn(|conn| {
            // Check and write in one transaction, so concurrent writers cannot both fit. It
            // takes the write lock first: a read transaction that later needs to write is
            // refused at once (not waited for) when another connection is writing.
            let c = rusqlite::Transaction::new_unchecked(
                conn,
                rusqlite::TransactionBehavior::Immediate,
            )
            .map_err(unavailable)?;
            let (count, total, existing): (u64, u64, Option<u64>) = c
                .query_row(
                    "SELECT count(*), coalesce(sum(length(CAST(key AS BLOB)) + length(value)), 0),
                            (SELECT length(CAST(key AS BLOB)) + length(value) FROM kv WHERE connector = ?1 AND key = ?2)
                     FROM kv WHERE connector = ?1",
                    params![&*self.connector, key],
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
                params![&*self.connector, key, value],
            )
            .map_err(unavailable)?;
            c.commit().map_err(unavailable)
        })
    }

    fn delete_now(&self, key: &str) -> Result<(), StorageError> {
        check_key(key)?;
        self.with_conn(|c| {
            c.execute(
                "DELETE FROM kv WHERE connector = ?1 AND key = ?2",
                params![&*self.connector, key],
            )
            .map(|_| ())
            .map_err(unavailable)
        })
    }

    fn keys_now(&self) -> Result<Vec<String>, StorageError> {
        self.with_conn(|c| {
            let mut stmt = c
                .prepare("SELECT key FROM kv WHERE connector = ?1 ORDER BY key")
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![&*self.connector], |r| r.get(0))
                .map_err(unavailable)?;
            rows.collect::<Result<_, _>>().map_err(unavailable)
        })
    }
}

/// Counts a refusal against the call; whether it gets its own audit row.
fn refuse(report: &Mutex<CallReport>, denial: Option<Denial>) -> bool {
    report
        .lock()
        .map(|mut r| r.refuse("storage", denial))
        .unwrap_or(true)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::MAX_DENIALS_PER_CALL;
    use std::time::Duration;

    struct Fixture {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        audit: AuditSink,
        handle: StorageHandle,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let conn = Arc::new(Mutex::new(crate::db::open(&path).unwrap()));
        let audit = AuditSink::new(conn.clone(), "itglue", "d1");
        let limits = Limits {
            storage_max_value_bytes: 8,
            ..Limits::default()
        };
        let handle = StorageHandle::new(Some(conn), "itglue", &limits, audit.clone());
        Fixture {
            _dir: dir,
            path,
            audit,
            handle,
        }
    }

    impl Fixture {
        /// (method, decision, rule) of every storage audit row, oldest first.
        fn rows(&self) -> Vec<(String, String, Option<String>)> {
            self.audit.flush();
            let c = crate::db::open(&self.path).unwrap();
            let mut stmt = c
                .prepare("SELECT method, decision, rule FROM audit ORDER BY id")
                .unwrap();
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        }

        fn kv_rows(&self) -> i64 {
            let c = crate::db::open(&self.path).unwrap();
            c.query_row("SELECT count(*) FROM kv", [], |r| r.get(0))
                .unwrap()
        }
    }

    /// While another connection holds the write lock, a storage write waits on the blocking
    /// pool: a timer on the same single-threaded runtime still fires on time.
    #[tokio::test(flavor = "current_thread")]
    async fn storage_waiting_on_a_locked_database_does_not_block_the_runtime() {
        let f = fixture();
        let holder = crate::db::open(&f.path).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let handle = f.handle.clone();
        let writing = tokio::spawn(async move { handle.set("k".into(), b"v".to_vec()).await });
        let started = Instant::now();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_secs(2),
            "a 50 ms timer took {elapsed:?}: storage blocked the runtime"
        );
        assert!(
            !writing.is_finished(),
            "the write did not wait for the lock"
        );
        holder.execute_batch("COMMIT").unwrap();
        writing.await.unwrap().unwrap();
        assert_eq!(f.handle.get("k".into()).await.unwrap(), Some(b"v".to_vec()));
    }

    /// A handle made for `match` refuses every operation with `unavailable`, writes nothing,
    /// audits each refusal under its rule and records it as the call's denial.
    #[tokio::test(flavor = "current_thread")]
    async fn match_gets_no_storage() {
        let f = fixture();
        f.handle.set("earlier".into(), b"x".to_vec()).await.unwrap();
        let report = Arc::new(Mutex::new(CallReport::default()));
        let matching = f.handle.for_call(report.clone(), false);
        let unavailable = |r: Result<_, StorageError>| {
            assert!(matches!(r, Err(StorageError::Unavailable(_))), "{r:?}");
        };
        unavailable(matching.set("client".into(), b"Acme".to_vec()).await);
        unavailable(matching.get("earlier".into()).await.map(|_| ()));
        unavailable(matching.keys().await.map(|_| ()));
        unavailable(matching.delete("earlier".into()).await);
        assert_eq!(f.kv_rows(), 1, "only the earlier value is stored");
        let report = report.lock().unwrap().clone();
        assert_eq!(report.denials.len(), 4);
        assert!(report.denials.iter().all(|d| d.rule == Rule::NoStorage));
        assert!(report.denials[0].to_string().contains(NO_STORAGE_IN_MATCH));
        let rows = f.rows();
        let refused: Vec<_> = rows.iter().filter(|r| r.1 == "denied").collect();
        let methods: Vec<&str> = refused.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(methods, ["set", "get", "keys", "delete"]);
        assert!(
            refused
                .iter()
                .all(|r| r.2.as_deref() == Some(NO_STORAGE_IN_MATCH)),
            "{rows:?}"
        );
        // Another export of the same connector still has its storage.
        let fetching = f
            .handle
            .for_call(Arc::new(Mutex::new(CallReport::default())), true);
        assert_eq!(
            fetching.get("earlier".into()).await.unwrap(),
            Some(b"x".to_vec())
        );
    }

    /// Past the limit, refusals are counted for the call but no longer audited one by one.
    #[tokio::test(flavor = "current_thread")]
    async fn refusals_past_the_limit_are_counted_not_audited() {
        let f = fixture();
        let report = Arc::new(Mutex::new(CallReport::default()));
        let call = f.handle.for_call(report.clone(), true);
        let tries = MAX_DENIALS_PER_CALL + 5;
        for _ in 0..tries {
            let r = call.set("k".into(), vec![0; 9]).await;
            assert!(matches!(r, Err(StorageError::TooLarge(_))), "{r:?}");
        }
        let report = report.lock().unwrap().clone();
        assert!(report.over_denial_limit());
        assert_eq!(report.refused, tries);
        assert_eq!(report.unrecorded, [("storage", 5)]);
        // Limits are not rules: they do not become the call's denial.
        assert!(report.denials.is_empty());
        let rows = f.rows();
        assert_eq!(rows.len() as u32, MAX_DENIALS_PER_CALL, "{rows:?}");
        assert_eq!(f.kv_rows(), 0);
    }

    /// A handle on its own connection to `f`'s database, under `limits`.
    fn handle_with(f: &Fixture, limits: &Limits) -> StorageHandle {
        let conn = Arc::new(Mutex::new(crate::db::open(&f.path).unwrap()));
        StorageHandle::new(Some(conn), "itglue", limits, f.audit.clone())
    }

    /// Bytes stored: every key's UTF-8 bytes plus every value's.
    fn stored_bytes(f: &Fixture) -> i64 {
        let c = crate::db::open(&f.path).unwrap();
        c.query_row(
            "SELECT coalesce(sum(length(CAST(key AS BLOB)) + length(value)), 0) FROM kv",
            [],
            |r| r.get(0),
        )
        .unwrap()
    }

    /// Keys and values together stay within `storage_max_total_bytes`, keys counted in UTF-8
    /// bytes (not characters): the write that would go over is refused (`quota-exceeded`, rule
    /// `storage-quota`) and stores nothing, and replacing a value counts its new size only.
    #[tokio::test(flavor = "current_thread")]
    async fn the_total_is_bounded_in_bytes_multi_byte_keys_included() {
        let f = fixture();
        let limits = Limits {
            storage_max_value_bytes: 64,
            storage_max_total_bytes: 100,
            ..Limits::default()
        };
        let h = handle_with(&f, &limits);
        // 10 characters, 20 bytes, and 30 bytes of value: 50.
        let wide = "é".repeat(10);
        h.set(wide.clone(), vec![1; 30]).await.unwrap();
        // 5 characters, 10 bytes, and 40: 100, the limit exactly.
        h.set("ü".repeat(5), vec![2; 40]).await.unwrap();
        assert_eq!(stored_bytes(&f), 100);
        // Counted in characters this would fit (86 of 100); in bytes it is 101.
        let over = h.set("x".into(), Vec::new()).await;
        match over {
            Err(StorageError::QuotaExceeded(why)) => {
                assert!(why.contains("storage_max_total_bytes"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(h.get("x".into()).await.unwrap(), None);
        assert_eq!(stored_bytes(&f), 100);
        // Replacing a value counts the new value, not both.
        h.set(wide.clone(), vec![3; 10]).await.unwrap();
        assert_eq!(stored_bytes(&f), 80);
        assert!(matches!(
            h.set("x".into(), vec![4; 20]).await,
            Err(StorageError::QuotaExceeded(_))
        ));
        h.set("x".into(), vec![4; 19]).await.unwrap();
        assert_eq!(stored_bytes(&f), 100);
        // Growing a value past the total is refused too, and keeps the old value.
        assert!(matches!(
            h.set(wide.clone(), vec![5; 11]).await,
            Err(StorageError::QuotaExceeded(_))
        ));
        assert_eq!(h.get(wide).await.unwrap(), Some(vec![3; 10]));
        let refused: Vec<_> = f
            .rows()
            .into_iter()
            .filter(|r| r.1 == "denied")
            .map(|r| (r.0, r.2))
            .collect();
        let quota = Some("storage-quota".to_string());
        assert_eq!(
            refused,
            [
                ("set".to_string(), quota.clone()),
                ("set".to_string(), quota.clone()),
                ("set".to_string(), quota)
            ]
        );
    }

    /// Keys must be 1 to 256 bytes (UTF-8 bytes, not characters): any other is refused with
    /// `invalid-key` by every operation (rule `storage-key`) and nothing is stored.
    #[tokio::test(flavor = "current_thread")]
    async fn keys_outside_one_to_256_bytes_are_invalid() {
        let f = fixture();
        let h = &f.handle;
        let longest = "k".repeat(MAX_KEY_BYTES);
        let wide = "é".repeat(MAX_KEY_BYTES / 2); // 128 characters, 256 bytes
        h.set(longest.clone(), b"v".to_vec()).await.unwrap();
        h.set(wide.clone(), b"v".to_vec()).await.unwrap();
        let invalid = |r: Result<(), StorageError>| match r {
            Err(StorageError::InvalidKey(why)) => assert!(why.contains("1..=256 bytes"), "{why}"),
            other => panic!("{other:?}"),
        };
        // 129 characters are 258 bytes.
        for key in [
            String::new(),
            "k".repeat(MAX_KEY_BYTES + 1),
            "é".repeat(129),
        ] {
            invalid(h.set(key.clone(), b"v".to_vec()).await);
            invalid(h.get(key.clone()).await.map(|_| ()));
            invalid(h.delete(key).await);
        }
        assert_eq!(f.kv_rows(), 2);
        let rows = f.rows();
        let refused: Vec<_> = rows.iter().filter(|r| r.1 == "denied").collect();
        assert_eq!(refused.len(), 9, "{rows:?}");
        assert!(
            refused
                .iter()
                .all(|r| r.2.as_deref() == Some("storage-key")),
            "{rows:?}"
        );
        assert_eq!(h.get(longest).await.unwrap(), Some(b"v".to_vec()));
        assert_eq!(h.get(wide).await.unwrap(), Some(b"v".to_vec()));
    }

    /// Writers on separate connections (two processes, say) racing for the last bytes never
    /// go over the total together: the check and the write are one transaction.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_never_exceed_the_total() {
        let f = fixture();
        let limits = Limits {
            storage_max_total_bytes: 100,
            ..Limits::default()
        };
        let writers = [handle_with(&f, &limits), handle_with(&f, &limits)];
        let mut tasks = Vec::new();
        for i in 0..40 {
            let h = writers[i % 2].clone();
            // A 2-byte key and 10 bytes of value: 8 of them fit.
            tasks.push(tokio::spawn(async move {
                h.set(format!("{i:02}"), vec![0; 10]).await
            }));
        }
        let mut stored = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => stored += 1,
                Err(StorageError::QuotaExceeded(_)) => {}
                Err(other) => panic!("{other:?}"),
            }
        }
        assert_eq!(stored, 8);
        assert_eq!(f.kv_rows(), 8);
        assert_eq!(stored_bytes(&f), 96);
    }
}

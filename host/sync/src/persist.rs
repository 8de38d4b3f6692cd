//! Where the sandbox's events and data are kept: the store's audit writer, key-value table and
//! request-budget table, behind the sandbox's small traits ([`AuditLog`], [`KvStore`],
//! [`RequestBudget`]).

use scopable_sandbox::audit::{AuditLog, AuditSink, Event};
use scopable_sandbox::budget::{Budget, RequestBudget};
use scopable_sandbox::storage::{KvFailure, KvStore, StorageHandle};
use scopable_sandbox::{CallContext, LoadedConnector};
use scopable_store::audit::AuditWriter;
use scopable_store::budget::BudgetTable;
use scopable_store::db::{self, AuditRecord};
use scopable_store::kv::{KvError, KvTable};
use scopable_store::shared::Shared;
use std::sync::Arc;
use std::time::Duration;

/// Audit events written to the store's audit table.
pub struct StoreAudit(pub AuditWriter);

impl AuditLog for StoreAudit {
    fn write(&self, connector: &str, digest: &str, e: Event) {
        let decision = if e.allowed { "allowed" } else { "denied" };
        // Counted for the runtime's /metrics (a no-op without an exporter).
        metrics::counter!(
            "scopable_outbound_requests_total",
            "connector" => connector.to_string(),
            "capability" => e.capability.to_string(),
            "decision" => decision,
        )
        .increment(1);
        if e.connection
            .as_deref()
            .is_some_and(|c| c.starts_with("new"))
        {
            metrics::counter!(
                "scopable_outbound_connections_total",
                "connector" => connector.to_string(),
            )
            .increment(1);
        }
        self.0.write(AuditRecord {
            at: db::now(),
            connector: connector.to_string(),
            component_sha256: digest.to_string(),
            capability: e.capability.to_string(),
            method: e.method,
            host: e.host,
            path: e.path,
            decision: decision.to_string(),
            rule: e.rule,
            status: e.status,
            bytes: e.bytes,
            duration_ms: e.duration_ms,
            detail: e.detail,
            connection: e.connection,
        });
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// A connector's storage kept in the store's key-value table.
pub struct StoreKv(pub KvTable);

fn kv_failure(e: KvError) -> KvFailure {
    match e {
        KvError::Quota(m) => KvFailure::QuotaExceeded(m),
        KvError::Db(e) => KvFailure::Unavailable(e.to_string()),
    }
}

impl KvStore for StoreKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvFailure> {
        self.0.get(key).map_err(kv_failure)
    }

    fn set(&self, key: &str, value: &[u8], max_keys: u64, max_total: u64) -> Result<(), KvFailure> {
        self.0
            .set(key, value, max_keys, max_total)
            .map_err(kv_failure)
    }

    fn delete(&self, key: &str) -> Result<(), KvFailure> {
        self.0.delete(key).map_err(kv_failure)
    }

    fn keys(&self) -> Result<Vec<String>, KvFailure> {
        self.0.keys().map_err(kv_failure)
    }
}

/// A request budget kept in the store's budget table.
pub struct StoreBudget(pub BudgetTable);

impl RequestBudget for StoreBudget {
    fn try_take(
        &self,
        limit: u32,
        window: Duration,
        at_ms: i64,
    ) -> Result<Option<Duration>, String> {
        self.0
            .try_take(limit, window, at_ms)
            .map_err(|e| e.to_string())
    }
}

/// An audit sink for `connector` writing to `conn`.
pub fn audit_sink(conn: &Shared, connector: &str, digest: &str) -> AuditSink {
    AuditSink::new(
        Arc::new(StoreAudit(AuditWriter::new(conn))),
        connector,
        digest,
    )
}

/// Gives `ctx` the store behind `conn`: audit rows, the connector's storage and its shared
/// request budget.
pub fn attach(ctx: &mut CallContext, connector: &LoadedConnector, conn: &Shared) {
    let manifest = &connector.manifest;
    let limits = &manifest.limits;
    ctx.audit = audit_sink(conn, &manifest.name, &connector.digest);
    ctx.storage = StorageHandle::new(
        Some(Arc::new(StoreKv(KvTable::new(conn, &manifest.name)))),
        limits,
        ctx.audit.clone(),
    );
    ctx.budget = Some(Budget::new(
        Arc::new(StoreBudget(BudgetTable::new(conn, &manifest.name))),
        limits.budget_requests,
        Duration::from_secs(limits.budget_window_secs),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use scopable_sandbox::bindings::scopable::integration::storage::StorageError;
    use scopable_sandbox::manifest::Limits;
    use scopable_sandbox::policy::Rule;
    use scopable_sandbox::report::{CallReport, MAX_DENIALS_PER_CALL};
    use scopable_sandbox::storage::{MAX_KEY_BYTES, NO_STORAGE_IN_MATCH};
    use std::sync::Mutex;
    use std::time::Instant;

    struct Fixture {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        audit: AuditSink,
        handle: StorageHandle,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let conn = Shared::open(&path, scopable_store::DEFAULT_ACCOUNT).unwrap();
        let audit = audit_sink(&conn, "itglue", "d1");
        let limits = Limits {
            storage_max_value_bytes: 8,
            ..Limits::default()
        };
        let kv: Arc<dyn KvStore> = Arc::new(StoreKv(KvTable::new(&conn, "itglue")));
        let handle = StorageHandle::new(Some(kv), &limits, audit.clone());
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
            let c = scopable_store::db::open(&self.path).unwrap();
            let mut stmt = c
                .prepare("SELECT method, decision, rule FROM audit ORDER BY id")
                .unwrap();
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        }

        fn kv_rows(&self) -> i64 {
            let c = scopable_store::db::open(&self.path).unwrap();
            c.query_row("SELECT count(*) FROM kv", [], |r| r.get(0))
                .unwrap()
        }
    }

    /// While another connection holds the write lock, a storage write waits on the blocking
    /// pool: a timer on the same single-threaded runtime still fires on time.
    #[tokio::test(flavor = "current_thread")]
    async fn storage_waiting_on_a_locked_database_does_not_block_the_runtime() {
        let f = fixture();
        let holder = scopable_store::db::open(&f.path).unwrap();
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
        let conn = Shared::open(&f.path, scopable_store::DEFAULT_ACCOUNT).unwrap();
        let kv: Arc<dyn KvStore> = Arc::new(StoreKv(KvTable::new(&conn, "itglue")));
        StorageHandle::new(Some(kv), limits, f.audit.clone())
    }

    /// Bytes stored: every key's UTF-8 bytes plus every value's.
    fn stored_bytes(f: &Fixture) -> i64 {
        let c = scopable_store::db::open(&f.path).unwrap();
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

    /// While another connection holds the database's write lock, `acquire` waits on the
    /// blocking pool: a timer on the same single-threaded runtime still fires on time.
    #[tokio::test(flavor = "current_thread")]
    async fn a_budget_waiting_on_a_locked_database_does_not_block_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let holder = scopable_store::db::open(&path).unwrap();
        let table = BudgetTable::new(
            &Shared::open(&path, scopable_store::DEFAULT_ACCOUNT).unwrap(),
            "itglue",
        );
        let budget = Budget::new(Arc::new(StoreBudget(table)), 3, Duration::from_secs(10));
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let acquiring = tokio::spawn(async move { budget.acquire().await });
        let started = std::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_secs(2),
            "a 50 ms timer took {elapsed:?}: the budget blocked the runtime"
        );
        assert!(
            !acquiring.is_finished(),
            "the budget did not wait for the lock"
        );
        holder.execute_batch("COMMIT").unwrap();
        acquiring.await.unwrap().unwrap();
        let taken: i64 = holder
            .query_row("SELECT count(*) FROM request_budget", [], |r| r.get(0))
            .unwrap();
        assert_eq!(taken, 1);
    }
}

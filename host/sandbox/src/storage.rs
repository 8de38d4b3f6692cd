//! The storage capability: a key-value namespace per connector, with limits on value size, key
//! count and total bytes. Every use is audited.
//!
//! The values are kept by a [`KvStore`] given by whoever runs the sandbox (the host's store
//! keeps them in its database). Each operation runs on tokio's blocking pool
//! (`spawn_blocking`), never on the async threads that drive the calls. A handle made for one call ([`StorageHandle::for_call`])
//! counts that call's refusals, and refuses everything to `match`.

use crate::audit::{AuditSink, Event};
use crate::bindings::scopable::integration::storage::StorageError;
use crate::manifest::Limits;
use crate::policy::{Denial, Rule};
use crate::report::CallReport;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 256;

/// Most storage operations one export call may make (each is audited, so this also bounds the
/// audit rows one call can write). The next one is refused (rule `storage-ops`) and fails the
/// call.
pub const MAX_STORAGE_OPS_PER_CALL: u32 = 1000;

pub use crate::policy::NO_STORAGE_IN_MATCH;

/// Where a connector's values are kept: one namespace, already chosen (connector, account).
/// Calls may block (a database); the sandbox makes them on the blocking pool.
pub trait KvStore: Send + Sync {
    /// The value under `key`, if any.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvFailure>;
    /// Stores `value` under `key`, unless the namespace would then hold more than `max_keys`
    /// keys or more than `max_total_bytes` bytes of keys and values (checked and written
    /// atomically, so concurrent writers cannot both fit).
    fn set(
        &self,
        key: &str,
        value: &[u8],
        max_keys: u64,
        max_total_bytes: u64,
    ) -> Result<(), KvFailure>;
    /// Removes `key` (a missing key is not an error).
    fn delete(&self, key: &str) -> Result<(), KvFailure>;
    /// Every key, sorted.
    fn keys(&self) -> Result<Vec<String>, KvFailure>;
}

/// Why a [`KvStore`] call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvFailure {
    /// Storing would pass a quota (the message says which).
    QuotaExceeded(String),
    /// The store failed (the message says how).
    Unavailable(String),
}

impl From<KvFailure> for StorageError {
    fn from(e: KvFailure) -> StorageError {
        match e {
            KvFailure::QuotaExceeded(m) => StorageError::QuotaExceeded(m),
            KvFailure::Unavailable(m) => StorageError::Unavailable(m),
        }
    }
}

/// A connector's namespace.
#[derive(Clone)]
pub struct StorageHandle {
    kv: Option<Arc<dyn KvStore>>,
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
    /// The namespace kept in `kv` (`None`: no storage in this run, every operation answers
    /// `unavailable`), under the manifest's limits.
    pub fn new(kv: Option<Arc<dyn KvStore>>, limits: &Limits, audit: AuditSink) -> StorageHandle {
        StorageHandle {
            kv,
            max_value: limits.storage_max_value_bytes,
            max_keys: limits.storage_max_keys,
            max_total: limits.storage_max_total_bytes,
            audit,
            call: None,
        }
    }

    /// The same namespace for one export call: its refusals are counted in `report` (past
    /// [`crate::report::MAX_DENIALS_PER_CALL`] they are no longer audited one by one),
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
            (&self.call, &result, &self.kv)
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

    fn kv(&self) -> Result<&dyn KvStore, StorageError> {
        self.kv
            .as_deref()
            .ok_or_else(|| StorageError::Unavailable("storage is not available in this run".into()))
    }

    fn get_now(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        check_key(key)?;
        Ok(self.kv()?.get(key)?)
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
        Ok(self.kv()?.set(key, value, self.max_keys, self.max_total)?)
    }

    fn delete_now(&self, key: &str) -> Result<(), StorageError> {
        check_key(key)?;
        Ok(self.kv()?.delete(key)?)
    }

    fn keys_now(&self) -> Result<Vec<String>, StorageError> {
        Ok(self.kv()?.keys()?)
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

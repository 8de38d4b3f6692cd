//! The audit sink: one record per capability use, written through one shared SQLite
//! connection. Records never hold the credential.

use crate::db::{self, AuditRecord};
use rusqlite::Connection;
use std::sync::{Arc, Mutex};

/// Where capability uses are recorded, with the connector's name and component digest.
#[derive(Clone)]
pub struct AuditSink {
    conn: Option<Arc<Mutex<Connection>>>,
    connector: String,
    digest: String,
}

/// The varying part of an audit record.
#[derive(Debug, Clone, Default)]
pub struct Event {
    /// `http` or `storage`.
    pub capability: &'static str,
    /// HTTP method or storage operation.
    pub method: String,
    /// Host (HTTP only).
    pub host: String,
    /// Path without query, or storage key.
    pub path: String,
    /// Whether the policy allowed it.
    pub allowed: bool,
    /// The rule that denied or failed it.
    pub rule: Option<String>,
    /// HTTP status.
    pub status: Option<u16>,
    /// Bytes received or stored.
    pub bytes: u64,
    /// Duration in milliseconds.
    pub duration_ms: u64,
    /// Extra detail.
    pub detail: Option<String>,
}

impl AuditSink {
    /// A sink writing to `conn`.
    pub fn new(conn: Arc<Mutex<Connection>>, connector: &str, digest: &str) -> AuditSink {
        AuditSink {
            conn: Some(conn),
            connector: connector.to_string(),
            digest: digest.to_string(),
        }
    }

    /// A sink that only emits tracing events (for runs without a database, such as the
    /// benchmark's direct calls).
    pub fn discard(connector: &str, digest: &str) -> AuditSink {
        AuditSink {
            conn: None,
            connector: connector.to_string(),
            digest: digest.to_string(),
        }
    }

    /// Records one event (and emits it as a tracing event).
    pub fn record(&self, e: Event) {
        let decision = if e.allowed { "allowed" } else { "denied" };
        tracing::info!(
            target: "scopable::audit",
            connector = %self.connector,
            capability = e.capability,
            method = %e.method,
            host = %e.host,
            path = %e.path,
            decision,
            rule = e.rule.as_deref().unwrap_or(""),
            status = e.status.unwrap_or(0),
            bytes = e.bytes,
            duration_ms = e.duration_ms,
            "capability use"
        );
        let Some(conn) = &self.conn else { return };
        let record = AuditRecord {
            at: db::now(),
            connector: self.connector.clone(),
            component_sha256: self.digest.clone(),
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
        };
        let result = match conn.lock() {
            Ok(c) => db::insert_audit(&c, &record).map_err(|e| e.to_string()),
            Err(_) => Err("audit connection poisoned".to_string()),
        };
        if let Err(e) = result {
            tracing::error!("could not write an audit record: {e}");
        }
    }
}

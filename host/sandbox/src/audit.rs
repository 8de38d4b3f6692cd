//! The audit sink: one event per capability use (an HTTP request, a storage operation),
//! allowed or refused, with the rule that decided. Events never hold the credential.
//!
//! The sandbox persists nothing: events go to an [`AuditLog`] given by whoever runs the
//! sandbox (the host's store writes them to its audit table), and are also emitted as
//! tracing events.

use std::sync::Arc;

/// Where a sink's events are kept. `write` must return quickly (queue the event; do not wait
/// for a database), since it is called from the async threads that run the calls.
pub trait AuditLog: Send + Sync {
    /// Keeps one event of `connector` (whose component has the sha256 `digest`). The event's
    /// text fields are already cut to [`MAX_FIELD_BYTES`].
    fn write(&self, connector: &str, digest: &str, event: Event);
    /// Waits until every event written so far is kept.
    fn flush(&self);
}

/// Where capability uses are recorded, with the connector's name and component digest.
#[derive(Clone)]
pub struct AuditSink {
    log: Option<Arc<dyn AuditLog>>,
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
    /// How an HTTP request travelled: `new` or `reused` connection, with `via proxy
    /// http://host:port` when a proxy carried it (never its credentials).
    pub connection: Option<String>,
}

impl AuditSink {
    /// A sink for `connector` (component sha256 `digest`) keeping its events in `log`.
    pub fn new(log: Arc<dyn AuditLog>, connector: &str, digest: &str) -> AuditSink {
        AuditSink {
            log: Some(log),
            connector: connector.to_string(),
            digest: digest.to_string(),
        }
    }

    /// A sink that only emits tracing events (for runs without a database, such as the
    /// benchmark's direct calls).
    pub fn discard(connector: &str, digest: &str) -> AuditSink {
        AuditSink {
            log: None,
            connector: connector.to_string(),
            digest: digest.to_string(),
        }
    }

    /// Records one event (and emits it as a tracing event). Returns at once: the row is
    /// written by the sink's writer thread.
    pub fn record(&self, e: Event) {
        let decision = if e.allowed { "allowed" } else { "denied" };
        tracing::info!(
            target: "scopable::audit",
            connector = %self.connector,
            capability = e.capability,
            method = %crate::display::safe(&e.method),
            host = %crate::display::safe(&e.host),
            path = %crate::display::safe(&e.path),
            decision,
            rule = e.rule.as_deref().unwrap_or(""),
            status = e.status.unwrap_or(0),
            bytes = e.bytes,
            duration_ms = e.duration_ms,
            connection = e.connection.as_deref().unwrap_or(""),
            "capability use"
        );
        let Some(log) = &self.log else { return };
        // What a component or a server wrote is kept exactly, up to a bound per field.
        let e = Event {
            method: bounded(e.method),
            host: bounded(e.host),
            path: bounded(e.path),
            detail: e.detail.map(bounded),
            ..e
        };
        log.write(&self.connector, &self.digest, e);
    }

    /// Waits until every event recorded so far is stored. Blocks: call it outside async code
    /// (or from `spawn_blocking`), for instance before reading the audit table back.
    pub fn flush(&self) {
        if let Some(log) = &self.log {
            log.flush();
        }
    }
}

/// Longest text kept in one audit field, in bytes: a detail quoting a 10 MiB error or path is
/// cut (on a character boundary), so one call cannot fill the table with a few rows.
pub const MAX_FIELD_BYTES: usize = 4096;

/// `s` cut to [`MAX_FIELD_BYTES`] (with a trailing `…` when cut): for outside text kept in
/// the database (audit fields, a failed run's error).
pub fn bounded(mut s: String) -> String {
    if s.len() > MAX_FIELD_BYTES {
        let mut end = MAX_FIELD_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

//! Lines for the admin while work goes on (a retry and when it comes): passed to a sink the
//! caller sets, never printed here.

use scopable_sandbox::sandbox::{CallError, wit_types as types};
use std::sync::Arc;

/// Where lines for the admin (retry notices) go.
pub type NoticeSink = Arc<dyn Fn(&str) + Send + Sync>;

static NOTICES: std::sync::Mutex<Option<NoticeSink>> = std::sync::Mutex::new(None);

/// Sets where lines for the admin go (the command line prints them on stderr, above its
/// progress line). Unset, they are logged at level `warn`.
pub fn set_notice_sink(sink: Option<NoticeSink>) {
    if let Ok(mut current) = NOTICES.lock() {
        *current = sink;
    }
}

/// Passes one line for the admin to the notice sink (see [`set_notice_sink`]).
pub fn notice(line: &str) {
    let sink = NOTICES.lock().ok().and_then(|sink| sink.clone());
    match sink {
        Some(sink) => sink(line),
        None => tracing::warn!("{line}"),
    }
}

/// The line shown before a retry: what failed (`subject`, e.g. `page 3`), what the service
/// answered (the connector's words, made safe and bounded), when the next try is and which
/// attempt it will be: "page 3: IT Glue answered HTTP 503 for /organizations (Service
/// Unavailable); retrying in 4.0 s (attempt 2 of 5)".
pub fn retry_notice(
    subject: &str,
    e: &CallError,
    attempt: u32,
    max_attempts: u32,
    wait: std::time::Duration,
) -> String {
    let said = match e {
        CallError::Guest(types::Error::RateLimited(r)) => r.detail.clone(),
        CallError::Guest(types::Error::Unavailable(d)) => d.clone(),
        CallError::Guest(types::Error::BadResponse(d)) => format!("an unreadable answer: {d}"),
        other => other.to_string(),
    };
    let wait = if wait < std::time::Duration::from_secs(1) {
        format!("{} ms", wait.as_millis())
    } else if wait < std::time::Duration::from_secs(10) {
        format!("{:.1} s", wait.as_secs_f64())
    } else {
        format!("{} s", wait.as_secs_f64().round())
    };
    format!(
        "{}: {}; retrying in {wait} (attempt {} of {max_attempts})",
        scopable_sandbox::display::safe(subject),
        scopable_sandbox::display::safe_within(&said, 300),
        attempt + 1
    )
}

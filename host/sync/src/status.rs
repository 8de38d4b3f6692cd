//! What the command line's `status` and `activity` show and the runtime's API answers, built
//! in one place so that both say the same.

use crate::app::AppError;
use scopable_store::Db;
use serde_json::{Value, json};

/// What `status --json` prints: the connection, `"database"` (the database read), and each
/// kind's last sync ([`crate::sync::last_run_summary`]: `"status"` `"running"`, `"ok"` or
/// `"failed"`, and `"last_ok"` with the counts of the last sync that succeeded).
pub fn status_json(db: &Db, connector: &str, database: &str) -> Result<Value, AppError> {
    let stored = scopable_store::connections::connection(db, connector)?;
    let summary = |kind: &str| crate::sync::last_run_summary(db, connector, kind);
    Ok(json!({
        "connected": stored.is_some(),
        "region": stored.as_ref().map(|c| c.region.clone()),
        "endpoint": stored.as_ref().map(|c| c.endpoint.clone()),
        "verified_at": stored.as_ref().map(|c| c.verified_at.clone()),
        "proxy": stored.as_ref().and_then(|c| proxy_for(&c.endpoint)),
        "database": database,
        "organization": summary("organization")?,
        "configuration": summary("configuration")?,
        "running": running(db, connector)?,
        "schedule": scopable_store::runs::schedule(db, connector)?
            .map(|s| json!({"every": period_text(s.every), "set_by": s.set_by})),
    }))
}

/// The proxy (`http://host:port`, never its credentials) requests to `endpoint` go through,
/// by `HTTPS_PROXY` and `NO_PROXY`; `None` when they go directly (or the settings are unusable:
/// the next call says why).
pub fn proxy_for(endpoint: &str) -> Option<String> {
    let network = scopable_sandbox::net::Network::shared().ok()?;
    let url = endpoint.parse().ok()?;
    network.proxy_for(&url).map(|p| p.to_string())
}

/// The run of each kind queued or running now (its id), or null.
fn running(db: &Db, connector: &str) -> Result<Value, AppError> {
    let mut found = serde_json::Map::new();
    for kind in ["organization", "configuration"] {
        found.insert(kind.to_string(), Value::Null);
    }
    let now = scopable_store::runs::now_ms();
    for run in scopable_store::runs::recent_runs(db, connector, 20)? {
        let live = run.status == "queued" || run.holds_lease(now);
        if live && found.get(&run.kind).is_some_and(Value::is_null) {
            found.insert(run.kind.clone(), json!(run.id));
        }
    }
    Ok(Value::Object(found))
}

/// A period as people write it and the API takes it back: `90s`, `15m`, `6h`, `2d`.
pub fn period_text(d: std::time::Duration) -> String {
    let s = d.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if s >= size && s.is_multiple_of(size) {
            return format!("{}{unit}", s / size);
        }
    }
    format!("{s}s")
}

/// The newest `limit` entries of a connector's activity, newest first, as `activity --json`
/// lists them: requests (`"kind": "request"`, the audit record's fields), sync runs
/// (`"kind": "sync"`), decisions (`{"at", "kind": "decision", "action", "record_kind",
/// "source_id", "scopable_id", "actor"}`) and the account's other changes (`{"at", "kind":
/// "event", "action", "actor", "connector", "detail"}`: connect, import, schedule, tokens,
/// features).
pub fn activity(db: &Db, connector: &str, limit: usize) -> Result<Vec<Value>, AppError> {
    // (at, source order, row id, entry): entries of one second keep their own order.
    let mut entries: Vec<(String, u8, i64, Value)> = Vec::new();
    for (id, a) in scopable_store::audit::audit_records(db, connector, limit)? {
        let mut v = serde_json::to_value(&a).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut v {
            map.insert("kind".into(), json!("request"));
        }
        entries.push((a.at.clone(), 0, id, v));
    }
    for (id, run) in crate::sync::recent_runs(db, connector, limit)? {
        let at = run["started_at"].as_str().unwrap_or("").to_string();
        let mut v = run;
        if let Value::Object(map) = &mut v {
            let kind = map.remove("kind").unwrap_or(Value::Null);
            map.insert("sync_kind".into(), kind);
            map.insert("kind".into(), json!("sync"));
            map.insert("at".into(), json!(at.clone()));
        }
        entries.push((at, 0, id, v));
    }
    for (id, d) in scopable_store::review::logged_decisions(db, connector, limit)? {
        let mut v = serde_json::to_value(&d).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut v {
            map.insert("kind".into(), json!("decision"));
        }
        entries.push((d.at.clone(), 1, id, v));
    }
    for e in scopable_store::accounts::events(db, limit)? {
        if e.connector.as_deref().is_some_and(|c| c != connector) {
            continue;
        }
        entries.push((
            e.at.clone(),
            1,
            e.id,
            json!({
                "at": e.at,
                "kind": "event",
                "action": e.action,
                "actor": e.actor,
                "connector": e.connector,
                "detail": e.detail,
            }),
        ));
    }
    // Newest first; ties (same second) keep insertion order newest first.
    entries.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(b.2.cmp(&a.2)));
    entries.truncate(limit);
    Ok(entries.into_iter().map(|e| e.3).collect())
}

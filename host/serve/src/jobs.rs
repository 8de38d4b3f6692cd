//! Syncs as jobs: a request queues a run (a row, `queued`) and is answered at once; a bounded
//! pool of workers claims queued runs oldest first and runs them under the run's lease. An
//! account has at most one run of a kind queued or running, so no account can crowd out the
//! others. Due schedules queue organizations, and configurations once organizations are done.

use crate::auth::Caller;
use crate::auth::integration;
use crate::error::ApiError;
use crate::request::{kind_of, parse};
use crate::state::State;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State as Extract};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use scopable_store::runs::{self, Queued, RunRow};
use scopable_sync::kinds::RecordKind;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The actor of runs a schedule queued.
pub const SCHEDULE_ACTOR: &str = "schedule";

/// A run as the API shows it: the command line's run JSON
/// ([`scopable_sync::sync::run_json`]) with its id, its progress and who asked for it.
pub fn run_json(r: &RunRow) -> Value {
    let mut run = scopable_sync::sync::run_json(r);
    run["id"] = json!(r.id);
    run["progress"] = json!({"pages_done": r.pages_done, "pages_total": r.pages_total});
    run["actor"] = json!(r.actor);
    // More than 1 when another replica took the run over and ran it again.
    run["attempt"] = json!(r.attempt);
    run
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncBody {
    kind: String,
    #[serde(default)]
    dry_run: bool,
}

/// Queues a run of `kind` for `account`; `Err` with the run under way when one of that kind
/// is queued or running.
pub async fn queue(
    state: &State,
    account: &str,
    kind: RecordKind,
    dry_run: bool,
    actor: String,
) -> Result<Result<i64, i64>, ApiError> {
    let connector = state.connector_name().to_string();
    let queued = state
        .blocking_db(Some(account.to_string()), move |db| {
            Ok(runs::queue(db, &connector, kind.as_str(), dry_run, &actor)?)
        })
        .await?;
    match queued {
        Queued::Queued(id) => {
            metrics::counter!("scopable_sync_runs_queued_total").increment(1);
            state.jobs.wake.notify_one();
            Ok(Ok(id))
        }
        Queued::Busy(id) => Ok(Err(id)),
    }
}

/// `POST .../syncs`.
pub async fn queue_sync(
    caller: Caller,
    Extract(state): Extract<Arc<State>>,
    Path(connector): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    integration(&state, &caller, &connector).await?;
    caller.require_admin()?;
    let body: SyncBody = parse(&body)?;
    // A kind in the body is bad input (422), unlike one in the path (404).
    let kind = kind_of(&body.kind)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad-input", e.message))?;
    match queue(&state, &caller.account, kind, body.dry_run, caller.actor()).await? {
        Ok(id) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({"id": id, "kind": kind.as_str(), "status": "queued"})),
        )
            .into_response()),
        Err(id) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "sync-running",
            format!(
                "A sync of {}s is already queued or running for this account (run {id}); wait for it to finish",
                kind.as_str()
            ),
        )),
    }
}

/// One run of the caller's account, or 404.
async fn run_of(state: &State, caller: &Caller, id: i64) -> Result<RunRow, ApiError> {
    state
        .blocking_db(Some(caller.account.clone()), move |db| {
            Ok(runs::run(db, id)?)
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("No sync run {id} in this account")))
}

/// `GET .../syncs/{id}`.
pub async fn sync_run(
    caller: Caller,
    Extract(state): Extract<Arc<State>>,
    Path((connector, id)): Path<(String, i64)>,
) -> Result<Json<Value>, ApiError> {
    integration(&state, &caller, &connector).await?;
    Ok(Json(run_json(&run_of(&state, &caller, id).await?)))
}

/// How often the events stream looks at the run.
const EVENTS_EVERY: Duration = Duration::from_millis(500);

/// How long an events stream lasts at most; the page then asks again.
const EVENTS_FOR: Duration = Duration::from_secs(600);

/// `GET .../syncs/{id}/events`: `text/event-stream`, one `data:` event with the run each time
/// it changes, ending after it finished. It reads the run's row, so it follows a run whatever
/// process works on it.
pub async fn sync_events(
    caller: Caller,
    Extract(state): Extract<Arc<State>>,
    Path((connector, id)): Path<(String, i64)>,
) -> Result<Response, ApiError> {
    integration(&state, &caller, &connector).await?;
    let first = run_of(&state, &caller, id).await?;
    let Ok(permit) = state.streams.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "Too many progress streams are open; read the run with GET .../syncs/{id} instead",
        ));
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let account = caller.account.clone();
    tokio::spawn(async move {
        // Held for as long as the stream lasts.
        let _permit = permit;
        let started = tokio::time::Instant::now();
        let mut last = Value::Null;
        let mut row = Some(first);
        loop {
            if let Some(r) = &row {
                let now = run_json(r);
                if now != last {
                    let event = format!("data: {now}\n\n");
                    if tx.send(Ok(Bytes::from(event))).await.is_err() {
                        return;
                    }
                    last = now;
                }
                if r.status != "queued" && r.status != "running" {
                    return;
                }
            }
            if started.elapsed() > EVENTS_FOR
                || tx.is_closed()
                || state.jobs.draining.load(Ordering::SeqCst)
            {
                return;
            }
            tokio::time::sleep(EVENTS_EVERY).await;
            let account = account.clone();
            row = state
                .blocking_db(Some(account), move |db| Ok(runs::run(db, id)?))
                .await
                .ok()
                .flatten();
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// How often idle workers look for queued runs and due schedules even without a wake-up
/// (runs queued by another process).
const POLL: Duration = Duration::from_millis(1000);

/// Starts `workers` workers and the scheduler; they stop once [`Jobs::draining`] is set and
/// the run in hand (if any) has finished.
pub fn start(state: Arc<State>, workers: usize) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles: Vec<tokio::task::JoinHandle<()>> = (0..workers.max(1))
        .map(|n| tokio::spawn(worker(state.clone(), n)))
        .collect();
    handles.push(tokio::spawn(scheduler(state)));
    handles
}

async fn worker(state: Arc<State>, n: usize) {
    loop {
        if state.jobs.draining.load(Ordering::SeqCst) {
            return;
        }
        match claim_one(&state).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => tracing::error!(worker = n, "cannot claim a queued sync: {}", e.message),
        }
        tokio::select! {
            _ = state.jobs.wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Claims the oldest queued run this process can take and runs it; whether there was one.
async fn claim_one(state: &Arc<State>) -> Result<bool, ApiError> {
    let connector = state.connector_name().to_string();
    let queued = state
        .blocking_db(None, move |db| Ok(runs::queued(db)?))
        .await?;
    metrics::gauge!("scopable_sync_queue_depth").set(queued.len() as f64);
    for (account, id, run_connector, kind) in queued {
        if run_connector != connector || state.jobs.draining.load(Ordering::SeqCst) {
            continue;
        }
        let Some(kind) = scopable_sync::describe::record_kind(&kind) else {
            continue;
        };
        state.jobs.busy.fetch_add(1, Ordering::SeqCst);
        let outcome = run_claimed(state, &account, id, kind).await;
        state.jobs.busy.fetch_sub(1, Ordering::SeqCst);
        match outcome {
            Ok(true) => return Ok(true),
            Ok(false) => continue,
            Err(e) => {
                tracing::error!(account = %account, run = id, "sync run failed to start: {}", e.message);
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Claims run `id` of `account` and runs it to its end; false when another worker (or
/// process) claimed it first.
async fn run_claimed(
    state: &Arc<State>,
    account: &str,
    id: i64,
    kind: RecordKind,
) -> Result<bool, ApiError> {
    let started = std::time::Instant::now();
    // An account that lost the feature since it queued runs nothing: the run ends failed.
    if !state
        .feature_enabled(account, state.connector_name())
        .await?
    {
        fail_queued(state, account, id, crate::error::NOT_AVAILABLE).await?;
        return Ok(true);
    }
    let opened = state
        .blocking_app(account, move |app| {
            let rt = match scopable_sync::app::runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    // Before the claim: end the run, so that the queue moves on.
                    runs::fail_queued(&app.db, id, &e.message)?;
                    return Ok(Err(e));
                }
            };
            let mut last_written = std::time::Instant::now() - Duration::from_secs(1);
            let path = app.location.clone();
            let account = app.db.account().to_string();
            let mut progress = move |run: runs::Held, done: u32, total: Option<u32>| {
                // At most a few writes a second, and always the last page.
                if last_written.elapsed() >= Duration::from_millis(200) || Some(done) == total {
                    last_written = std::time::Instant::now();
                    if let Ok(db) = scopable_store::Db::open(&path, &account) {
                        let _ = runs::set_progress(&db, run, done, total);
                    }
                }
            };
            Ok(scopable_sync::sync::sync_queued(
                app,
                &rt,
                id,
                kind,
                &mut progress,
            ))
        })
        .await;
    // A failure to open the database comes before the claim and leaves the run queued: end
    // it, so that the queue moves on. A failure once claimed is recorded by the run itself
    // (and a run taken over by another replica meanwhile is that replica's: not ended here).
    let outcome: Result<Option<_>, String> = match opened {
        Ok(outcome) => outcome.map_err(|e| e.message),
        Err(e) => {
            fail_queued(state, account, id, &e.message).await?;
            Err(e.message)
        }
    };
    let status = match &outcome {
        Ok(Some(_)) => "ok",
        Ok(None) => return Ok(false),
        Err(_) => "failed",
    };
    metrics::counter!("scopable_sync_runs_total", "kind" => kind.as_str(), "status" => status)
        .increment(1);
    tracing::info!(account = %account, run = id, kind = kind.as_str(), status, "sync run finished");
    metrics::histogram!("scopable_sync_run_seconds", "kind" => kind.as_str())
        .record(started.elapsed().as_secs_f64());
    // A scheduled organizations sync is followed by configurations.
    let scheduled = state
        .blocking_db(Some(account.to_string()), move |db| Ok(runs::run(db, id)?))
        .await?
        .is_some_and(|r| r.actor.as_deref() == Some(SCHEDULE_ACTOR));
    if scheduled && kind == RecordKind::Organization && status == "ok" {
        // Busy means configurations are already queued or running: nothing to add.
        let _ = queue(
            state,
            account,
            RecordKind::Configuration,
            false,
            SCHEDULE_ACTOR.to_string(),
        )
        .await?;
    }
    if let Err(message) = outcome {
        tracing::info!(account = %account, run = id, "sync run failed: {message}");
    }
    Ok(true)
}

/// Ends queued run `id` of `account` as failed with `error`, if it is still queued.
async fn fail_queued(state: &State, account: &str, id: i64, error: &str) -> Result<(), ApiError> {
    let error = error.to_string();
    state
        .blocking_db(Some(account.to_string()), move |db| {
            runs::fail_queued(db, id, &error)?;
            Ok(())
        })
        .await
}

/// Every [`POLL`]: queues organizations for every due schedule of an account with the
/// feature, takes runs whose process stopped renewing their lease back to the queue (or ends
/// them failed: [`runs::sweep_interrupted`]), and lets the rate limiters forget idle keys.
async fn scheduler(state: Arc<State>) {
    loop {
        if state.jobs.draining.load(Ordering::SeqCst) {
            return;
        }
        match state
            .blocking_db(None, |db| Ok(runs::sweep_interrupted(db)?))
            .await
        {
            Ok((requeued, _)) if requeued > 0 => {
                // A replica (this one or another) stopped renewing a run's lease: run it
                // again from the start.
                tracing::warn!(
                    "{requeued} sync run(s) whose process stopped renewing the lease went back to the queue"
                );
                metrics::counter!("scopable_sync_runs_taken_over_total").increment(requeued as u64);
                state.jobs.wake.notify_waiters();
            }
            Ok(_) => {}
            Err(e) => tracing::error!("cannot sweep interrupted runs: {}", e.message),
        }
        state.limits.forget_idle();
        let due = state
            .blocking_db(None, |db| Ok(runs::due_schedules(db, runs::now_ms())?))
            .await;
        match due {
            Ok(due) => {
                for (account, connector) in due {
                    if connector != state.connector_name() {
                        continue;
                    }
                    let enabled = state
                        .feature_enabled(&account, &connector)
                        .await
                        .unwrap_or(false);
                    if !enabled {
                        continue;
                    }
                    if let Err(e) = queue(
                        &state,
                        &account,
                        RecordKind::Organization,
                        false,
                        SCHEDULE_ACTOR.to_string(),
                    )
                    .await
                    {
                        tracing::error!(account = %account, "cannot queue a scheduled sync: {}", e.message);
                    }
                }
            }
            Err(e) => tracing::error!("cannot read the schedules: {}", e.message),
        }
        tokio::time::sleep(POLL).await;
    }
}

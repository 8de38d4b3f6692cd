//! The JSON API under `/api/v1`: sign-in, the integration's status, test and connect, syncs
//! as jobs, the review lists and decisions, the schedule, imports and search. Every answer is
//! built by the same code as the command line's (`scopable_sync::status`, `describe`,
//! `decide`, `search`, `import`), so both show the same names, reasons and search.

use crate::auth::{self, Caller, SESSION_TTL, cookie_name, integration};
use crate::error::ApiError;
use crate::request::{
    ListQuery, MAX_CSV_BODY, MAX_JSON_BODY, MAX_LIMIT, has_content_type, kind_of, paged, parse,
    values,
};
use crate::state::State;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, OriginalUri, Path, Query, State as Extract};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use scopable_sandbox::policy::BaseUrl;
use scopable_store::accounts;
use scopable_sync::app::{App, AppError};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

type Shared = Arc<State>;

/// The API's routes.
pub fn routes() -> Router<Shared> {
    let integration = Router::new()
        .route("/", get(status))
        .route("/test", post(test))
        .route("/connect", post(connect))
        .route("/connection", axum::routing::delete(disconnect))
        .route("/syncs", post(crate::jobs::queue_sync))
        .route("/syncs/{id}", get(crate::jobs::sync_run))
        .route("/syncs/{id}/events", get(crate::jobs::sync_events))
        .route("/links", get(links))
        .route("/unplaced", get(unplaced))
        .route("/ignored", get(ignored))
        .route("/decisions/{kind}/{source_id}", put(decide).delete(reset))
        .route("/activity", get(activity))
        .route("/schedule", put(set_schedule).get(schedule));
    Router::new()
        .route("/session", get(session).post(sign_in).delete(sign_out))
        .nest("/integrations/{connector}", integration)
        .route(
            "/clients",
            get(search_clients)
                .post(import_clients)
                .layer(DefaultBodyLimit::max(MAX_CSV_BODY)),
        )
        .route(
            "/configurations",
            get(search_configurations)
                .post(import_configurations)
                .layer(DefaultBodyLimit::max(MAX_CSV_BODY)),
        )
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
}

// ---- session ----------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    token: String,
}

async fn session(caller: Caller, Extract(state): Extract<Shared>) -> Result<Json<Value>, ApiError> {
    let account = caller.account.clone();
    let found = state
        .blocking_db(Some(account.clone()), move |db| {
            Ok(accounts::get(db, &account)?)
        })
        .await?;
    let (name, features) = match found {
        Some(a) => (a.name, a.features),
        None => (None, Vec::new()),
    };
    Ok(Json(json!({
        "account": caller.account,
        "account_name": name,
        "role": caller.role.as_str(),
        "token_id": caller.token_id,
        "features": features,
    })))
}

async fn sign_in(
    Extract(state): Extract<Shared>,
    parts: Parts,
    body: Bytes,
) -> Result<Response, ApiError> {
    state.limits.sign_in(auth::client_address(&parts))?;
    // JSON only: a form on another origin cannot send it without the browser asking first.
    if !has_content_type(&parts.headers, "application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad-input",
            "Sign in with a JSON body, {\"token\": \"...\"}, sent as Content-Type: application/json",
        ));
    }
    let SignIn { token } = parse(&body)?;
    let secret = state
        .blocking_db(None, move |db| {
            let Some(principal) = accounts::authenticate(db, token.trim())? else {
                return Ok(None);
            };
            Ok(Some(accounts::create_session(db, &principal, SESSION_TTL)?))
        })
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "That token is unknown or revoked; ask the operator for a new one",
            )
        })?;
    let cookie = format!(
        "{}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        cookie_name(state.secure_cookie),
        SESSION_TTL.as_secs(),
        if state.secure_cookie { "; Secure" } else { "" }
    );
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(ApiError::internal)?,
    );
    Ok(response)
}

async fn sign_out(Extract(state): Extract<Shared>, parts: Parts) -> Result<Response, ApiError> {
    state.limits.address(auth::client_address(&parts))?;
    if let Some(secret) = auth::session_cookie(&parts, cookie_name(state.secure_cookie)) {
        auth::require_requested_with(&parts)?;
        state
            .blocking_db(None, move |db| Ok(accounts::end_session(db, &secret)?))
            .await?;
    }
    let cookie = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        cookie_name(state.secure_cookie),
        if state.secure_cookie { "; Secure" } else { "" }
    );
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(ApiError::internal)?,
    );
    Ok(response)
}

// ---- status, test, connect ----------------------------------------------------------------

/// The status of the caller's account (the command line's `status --json`, plus the runs
/// under way and the schedule).
pub async fn status_of(state: &State, account: &str) -> Result<Value, ApiError> {
    let database = state.database_shown.clone();
    state
        .blocking_app(account, move |app| {
            scopable_sync::status::status_json(&app.db, app.name(), &database)
        })
        .await
}

async fn status(
    caller: Caller,
    Extract(state): Extract<Shared>,
    Path(connector): Path<String>,
) -> Result<Json<Value>, ApiError> {
    integration(&state, &caller, &connector).await?;
    Ok(Json(status_of(&state, &caller.account).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    region: String,
    api_key: String,
    #[serde(default)]
    endpoint: Option<String>,
}

/// Where a tested or connected key goes: the operator's endpoint when one is set (a tenant's
/// other endpoint is refused), else the region's URL.
fn target(state: &State, body: &KeyBody) -> Result<BaseUrl, ApiError> {
    if !state.connector.manifest.regions.contains_key(&body.region) {
        let known: Vec<&str> = state
            .connector
            .manifest
            .regions
            .keys()
            .map(String::as_str)
            .collect();
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad-input",
            format!(
                "No region {:?}: use one of {}",
                scopable_sandbox::display::safe(&body.region),
                known.join(", ")
            ),
        ));
    }
    let asked = match &body.endpoint {
        Some(url) => Some(BaseUrl::parse_endpoint(url).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "endpoint-not-allowed",
                format!("endpoint {e}"),
            )
        })?),
        None => None,
    };
    match (&state.endpoint, asked) {
        (Some(operator), Some(asked)) if &asked != operator => Err(endpoint_not_allowed()),
        (None, Some(_)) => Err(endpoint_not_allowed()),
        (Some(operator), _) => Ok(operator.clone()),
        (None, None) => {
            let url = state
                .connector
                .manifest
                .region_url(&body.region)
                .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad-input", e))?;
            BaseUrl::parse(url).map_err(ApiError::internal)
        }
    }
}

fn endpoint_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "endpoint-not-allowed",
        "This server only sends keys to the operator's endpoint for this integration; leave endpoint null",
    )
}

/// Tests the key of `body`; with `connect`, stores it when the test passes.
async fn test_or_connect(
    state: &Shared,
    caller: &Caller,
    body: KeyBody,
    connect: bool,
) -> Result<Value, ApiError> {
    let base = target(state, &body)?;
    let key = scopable_sync::app::clean_key(&body.api_key)
        .map_err(|e| ApiError::from_app(e, state.service()))?;
    let region = body.region.clone();
    let actor = caller.actor();
    state
        .blocking_app(&caller.account, move |app| {
            let rt = scopable_sync::app::runtime()?;
            let started = std::time::Instant::now();
            let verified =
                scopable_sync::connection::test_key(app, &rt, &region, &base, &key, None)?;
            // A test that outlived the request's deadline was answered 504: store nothing the
            // admin was told failed.
            if connect && started.elapsed() >= crate::request::STORE_DEADLINE {
                return Err(AppError::new(
                    scopable_sync::app::Exit::Unavailable,
                    "The test took too long to finish; nothing was stored. Try again",
                ));
            }
            if connect {
                scopable_sync::connection::store_key(app, &region, &base, &key, &actor)?;
            }
            Ok(json!({
                "verified": true,
                "detail": verified.detail,
                "total_organizations": verified.total_organizations,
            }))
        })
        .await
}

async fn test(
    caller: Caller,
    Extract(state): Extract<Shared>,
    Path(connector): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    integration(&state, &caller, &connector).await?;
    caller.require_admin()?;
    let body: KeyBody = parse(&body)?;
    Ok(Json(test_or_connect(&state, &caller, body, false).await?))
}

async fn connect(
    caller: Caller,
    Extract(state): Extract<Shared>,
    Path(connector): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    integration(&state, &caller, &connector).await?;
    caller.require_admin()?;
    let body: KeyBody = parse(&body)?;
    test_or_connect(&state, &caller, body, true).await?;
    Ok(Json(status_of(&state, &caller.account).await?))
}

async fn disconnect(
    caller: Caller,
    Extract(state): Extract<Shared>,
    Path(connector): Path<String>,
) -> Result<StatusCode, ApiError> {
    integration(&state, &caller, &connector).await?;
    caller.require_admin()?;
    let actor = caller.actor();
    state
        .blocking_app(&caller.account, move |app| {
            scopable_store::review::disconnect(&app.db, app.name(), &actor)?;
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- review lists and decisions -----------------------------------------------------------

fn keep_kind(items: Vec<Value>, kind: Option<&str>) -> Result<Vec<Value>, ApiError> {
    let Some(kind) = kind else { return Ok(items) };
    let kind = kind_of(kind)?.as_str();
    Ok(items.into_iter().filter(|v| v["kind"] == kind).collect())
}

/// A review list of the caller's account (`read` builds it, as the command line's `--json`
/// does), filtered by `kind` and paged.
async fn review_list(
    caller: Caller,
    state: Shared,
    connector: String,
    query: ListQuery,
    uri: Uri,
    read: fn(&App) -> Result<Vec<Value>, AppError>,
) -> Result<Response, ApiError> {
    integration(&state, &caller, &connector).await?;
    let rows = state
        .blocking_app(&caller.account, move |app| read(app))
        .await?;
    paged(keep_kind(rows, query.kind.as_deref())?, &query, &uri)
}

/// A serializable list as JSON values, for [`review_list`].
fn json_rows<T: serde::Serialize>(rows: &[T]) -> Result<Vec<Value>, AppError> {
    values(rows).map_err(|e| AppError::new(scopable_sync::app::Exit::Failure, e.message))
}

async fn links(
    caller: Caller,
    Extract(state): Extract<Shared>,
    Path(connector): Path<String>,
    Query(query): Query<ListQuery>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, ApiError> {
    review_list(caller, state, connector, query, uri, |app| {
        json_rows(&scopable_sync::describe::links(&app.db, app.name())?)
    })
    .await
}

async fn unplaced(
    caller: Caller,
    Extract(state): Extract<Shared>,
    Path(connector): Path<String>,
    Query(query): Query<ListQuery>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, ApiError> {
    review_list(caller, state, connector, query, uri, |app| {
        let service = app.connector.manifest.service();
        json_rows(&scopable_sync::describe::unplaced(
            &app.db,
            app.name(),
            service,
        )?)
    })
    .await
}

async fn ignored(
    caller: Caller,
    Extract(state): Extract<Shared>,
    Path(connector): Path<String>,
    Query(query): Query<ListQuery>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, ApiError> {
    review_list(caller, state, connector, query, uri, |app| {
        json_rows(&scopable_sync::decide::ignored_records(
            &app.db,
            app.name(),
        )?)
    })
    .await
}

async fn activity(
    caller: Caller,
    Extract(state): Extract<Shared>,
    Path(connector): Path<String>,
    Query(query): Query<ListQuery>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, ApiError> {
    integration(&state, &caller, &connector).await?;
    let limit = query.limit.unwrap_or(200).min(MAX_LIMIT);
    let skip = query.start()?;
    let rows = state
        .blocking_app(&caller.account, move |app| {
            scopable_sync::status::activity(&app.db, app.name(), skip + limit + 1)
        })
        .await?;
    paged(
        rows,
        &ListQuery {
            limit: Some(limit.max(1)),
            ..query
        },
        &uri,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Decision {
    link: Option<String>,
    #[serde(default)]
    take: bool,
    #[serde(default)]
    ignore: bool,
}

async fn decide(
    caller: Caller,
    Extract(state): Extract<Shared>,
    Path((connector, kind, source_id)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    integration(&state, &caller, &connector).await?;
    caller.require_admin()?;
    let kind = kind_of(&kind)?;
    let decision: Decision = parse(&body)?;
    let actor = caller.actor();
    match (decision.link, decision.ignore) {
        (Some(target), false) => {
            let take = decision.take;
            let linked = state
                .blocking_app(&caller.account, move |app| {
                    scopable_sync::decide::link(
                        app,
                        kind,
                        &source_id,
                        scopable_sync::decide::LinkTarget::Id(&target),
                        &actor,
                        &mut |taking| {
                            if take {
                                return Ok(());
                            }
                            Err(AppError::new(
                                scopable_sync::app::Exit::BadInput,
                                format!(
                                    "{} is linked automatically to {}; nothing changed. Send \"take\": true to move it (that record is then listed as unplaced)",
                                    taking.target_named(),
                                    taking.holder_named()
                                ),
                            )
                            .with_code(scopable_sync::decide::TARGET_TAKEN))
                        },
                    )
                    .map(|linked| (source_id, linked))
                })
                .await?;
            let (source_id, linked) = linked;
            Ok(Json(json!({
                "action": "link",
                "record_kind": kind.as_str(),
                "source_id": source_id,
                "name": linked.name,
                "scopable_id": linked.target,
                "scopable_name": linked.target_name,
                "took_from": linked.took.map(|(id, name)| json!({"source_id": id, "name": name})),
            })))
        }
        (None, true) => {
            let ignored = state
                .blocking_app(&caller.account, move |app| {
                    scopable_sync::decide::ignore(app, kind, &source_id, &actor)
                        .map(|i| (source_id, i))
                })
                .await?;
            let (source_id, ignored) = ignored;
            Ok(Json(json!({
                "action": "ignore",
                "record_kind": kind.as_str(),
                "source_id": source_id,
                "name": ignored.name,
                "unlinked": ignored.unlinked,
            })))
        }
        _ => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad-input",
            "Send {\"link\": \"SCOPABLE_ID\", \"take\": false} or {\"ignore\": true}",
        )),
    }
}

async fn reset(
    caller: Caller,
    Extract(state): Extract<Shared>,
    Path((connector, kind, source_id)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    integration(&state, &caller, &connector).await?;
    caller.require_admin()?;
    let kind = kind_of(&kind)?;
    let actor = caller.actor();
    state
        .blocking_app(&caller.account, move |app| {
            scopable_sync::decide::reset(app, kind, &source_id, &actor)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- schedule -------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleBody {
    every: Option<String>,
}

/// The shortest schedule period.
pub const MIN_PERIOD: std::time::Duration = std::time::Duration::from_secs(60);

async fn schedule(
    caller: Caller,
    Extract(state): Extract<Shared>,
    Path(connector): Path<String>,
) -> Result<Json<Value>, ApiError> {
    integration(&state, &caller, &connector).await?;
    let name = connector.clone();
    let every = state
        .blocking_db(Some(caller.account.clone()), move |db| {
            Ok(scopable_store::runs::schedule(db, &name)?)
        })
        .await?;
    Ok(Json(schedule_json(every.map(|s| s.every))))
}

fn schedule_json(every: Option<std::time::Duration>) -> Value {
    json!({"every": every.map(scopable_sync::status::period_text)})
}

/// Parses `30m`, `6h`, `1d` (and combinations such as `1h30m`).
pub fn parse_period(text: &str) -> Result<std::time::Duration, ApiError> {
    let bad = || {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad-input",
            format!(
                "every must be a period such as \"30m\", \"6h\" or \"1d\" (at least {}), or null",
                scopable_sync::status::period_text(MIN_PERIOD)
            ),
        )
    };
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let size = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(size)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() || total == 0 {
        return Err(bad());
    }
    let period = std::time::Duration::from_secs(total);
    if period < MIN_PERIOD || period > std::time::Duration::from_secs(366 * 86_400) {
        return Err(bad());
    }
    Ok(period)
}

async fn set_schedule(
    caller: Caller,
    Extract(state): Extract<Shared>,
    Path(connector): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    integration(&state, &caller, &connector).await?;
    caller.require_admin()?;
    let ScheduleBody { every } = parse(&body)?;
    let every = every.as_deref().map(parse_period).transpose()?;
    let actor = caller.actor();
    let name = connector.clone();
    state
        .blocking_db(Some(caller.account.clone()), move |db| {
            scopable_store::runs::set_schedule(db, &name, every, &actor)?;
            Ok(())
        })
        .await?;
    Ok(Json(schedule_json(every)))
}

// ---- imports and search ---------------------------------------------------------------------

async fn import(
    caller: Caller,
    state: Shared,
    headers: &HeaderMap,
    body: Bytes,
    clients: bool,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    if !has_content_type(headers, "text/csv") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad-input",
            "Send the file as Content-Type: text/csv, in the command line's import format",
        ));
    }
    let actor = caller.actor();
    let service = state.service().to_string();
    let imported = state
        .blocking_db(Some(caller.account.clone()), move |db| {
            let what = if clients { "clients" } else { "configurations" };
            let imported = if clients {
                scopable_sync::import::clients_from(db, &body, "the upload")
            } else {
                scopable_sync::import::configurations_from(db, &body, "the upload")
            }
            .map_err(|e| ApiError::from_app(e, &service))?;
            accounts::record_event(
                db,
                &actor,
                &format!("import {what}"),
                None,
                Some(&imported.to_string()),
            )?;
            Ok(json!({
                "imported": imported.total,
                "new": imported.added,
                "updated": imported.total - imported.added,
                "warnings": imported.warnings,
            }))
        })
        .await?;
    Ok(Json(imported))
}

async fn import_clients(
    caller: Caller,
    Extract(state): Extract<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    import(caller, state, &headers, body, true).await
}

async fn import_configurations(
    caller: Caller,
    Extract(state): Extract<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    import(caller, state, &headers, body, false).await
}

async fn search(
    caller: Caller,
    state: Shared,
    query: ListQuery,
    uri: Uri,
    kind: scopable_sync::search::SearchKind,
) -> Result<Response, ApiError> {
    let q = query.q.clone().unwrap_or_default();
    let limit = query.limit.unwrap_or(20).clamp(1, MAX_LIMIT);
    let skip = query.start()?;
    let hits = state
        .blocking_db(Some(caller.account.clone()), move |db| {
            let found = scopable_sync::search::search(db, kind, &q, None, Some(skip + limit + 1))
                .map_err(|e| {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad-input", e.to_string())
            })?;
            values(&found.hits)
        })
        .await?;
    paged(
        hits,
        &ListQuery {
            limit: Some(limit),
            ..query
        },
        &uri,
    )
}

async fn search_clients(
    caller: Caller,
    Extract(state): Extract<Shared>,
    Query(query): Query<ListQuery>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, ApiError> {
    search(
        caller,
        state,
        query,
        uri,
        scopable_sync::search::SearchKind::Client,
    )
    .await
}

async fn search_configurations(
    caller: Caller,
    Extract(state): Extract<Shared>,
    Query(query): Query<ListQuery>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, ApiError> {
    search(
        caller,
        state,
        query,
        uri,
        scopable_sync::search::SearchKind::Configuration,
    )
    .await
}

//! The integration runtime (`scopable-host serve`): the JSON API of many accounts, the
//! Integrations page, health, readiness and Prometheus metrics, and syncs run as jobs by a
//! bounded worker pool, on one SQLite database.
#![deny(missing_docs)]

pub mod api;
pub mod auth;
pub mod error;
pub mod jobs;
pub mod limits;
pub mod page;
pub mod request;
pub mod state;

use axum::Router;
use axum::extract::State as Extract;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use scopable_sandbox::policy::BaseUrl;
use scopable_sandbox::sandbox::LoadedConnector;
use state::State;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tower_http::set_header::SetResponseHeaderLayer;

/// What the operator chose for `serve`.
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// How many syncs run at once.
    pub workers: usize,
    /// Where the database is.
    pub location: scopable_store::Location,
    /// How status names the database.
    pub database_shown: String,
    /// The connector, loaded.
    pub connector: Arc<LoadedConnector>,
    /// `--endpoint` for that connector.
    pub endpoint: Option<BaseUrl>,
    /// `--public-url`.
    pub public_url: Option<String>,
    /// Requests a second per token (and twice that per client address).
    pub requests_per_second: u32,
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}; pick another --listen address")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The metrics recorder could not be installed.
    #[error("cannot start the metrics exporter: {0}")]
    Metrics(String),
    /// The server failed.
    #[error("the server stopped: {0}")]
    Serve(std::io::Error),
    /// The database could not be opened.
    #[error("{0}")]
    Database(#[from] scopable_store::db::DbError),
    /// The vault's master key is missing or not the database's.
    #[error("{0}")]
    Vault(#[from] scopable_store::vault::VaultError),
}

/// The longest any API request may take (a test or connect with its retries included).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Builds the application: routes, limits, headers and request logs.
pub fn router(state: Arc<State>) -> Router {
    use tower_http::timeout::TimeoutLayer;
    let api = api::routes().layer(SetResponseHeaderLayer::overriding(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    ));
    Router::new()
        .nest("/api/v1", api)
        .merge(page::routes())
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .fallback(|| async { error::ApiError::not_found("No such page or API path") })
        .with_state(state)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(page::CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("DENY"),
        ))
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn(request_log))
}

/// Gives every failed API answer the API's error shape, also those made before a handler
/// ran (a body over its limit, a bad query string, a wrong method, a timeout).
async fn json_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let api = request.uri().path().starts_with("/api/");
    let response = next.run(request).await;
    let status = response.status();
    let json = request::has_content_type(response.headers(), "application/json");
    if !api || json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    // The framework's own short sentence ("length limit exceeded", ...), kept as the detail.
    let said = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let (code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ("too-large", "The body is over this request's limit"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method-not-allowed", "This path does not take that method")
        }
        StatusCode::GATEWAY_TIMEOUT | StatusCode::REQUEST_TIMEOUT => (
            "timeout",
            "The request took too long and was stopped; try again",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("bad-input", "This request takes another content type")
        }
        s if s.is_client_error() => ("bad-request", "The request is not one this API takes"),
        _ => ("internal", "The server failed to do that; try again"),
    };
    let mut e = error::ApiError::new(status, code, message);
    if !said.is_empty() {
        e.hints = vec![scopable_sandbox::display::error_line(&said).into_owned()];
    }
    // The answer's own headers stay (`Allow`, the security headers); only the body changes.
    let mut converted = e.into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            converted.headers_mut().insert(name.clone(), value.clone());
        }
    }
    // A body refused as too large was not read to its end, so the connection cannot carry
    // another request: the client is told so, rather than finding it closed on its next one.
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        converted
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    converted
}

/// One log line per request: method, path (never the query, which can hold names), status
/// and time. Headers and bodies (tokens, keys) are never logged.
async fn request_log(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    metrics::counter!("scopable_http_requests_total", "status" => status.to_string()).increment(1);
    tracing::info!(
        target: "scopable::http",
        method = %method,
        path = %scopable_sandbox::display::safe(&path),
        status,
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

async fn readyz(Extract(state): Extract<Arc<State>>) -> impl IntoResponse {
    match state.blocking_db(None, |_| Ok(())).await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the database does not answer\n",
        )
            .into_response(),
    }
}

async fn metrics_text(Extract(state): Extract<Arc<State>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// Runs the server until SIGTERM or Ctrl-C: then it stops taking requests and work, lets the
/// syncs in hand finish (their apply is one transaction: nothing is left half-applied), and
/// returns. `on_ready` is called with the bound address once requests are taken.
pub async fn run(config: Config, on_ready: impl FnOnce(SocketAddr)) -> Result<(), ServeError> {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| ServeError::Metrics(e.to_string()))?;
    // Opening once migrates the database before any request. On PostgreSQL the master key
    // must be given and must be the one the database's keys are sealed with: a replica with
    // another refuses to start rather than fail each sync.
    let db = scopable_store::Db::open(&config.location, scopable_store::DEFAULT_ACCOUNT)?;
    if config.location.is_postgres() {
        scopable_store::connections::open_vault(&db, false)?;
    }
    drop(db);
    let secure_cookie = config
        .public_url
        .as_deref()
        .is_some_and(|u| u.to_ascii_lowercase().starts_with("https://"));
    let state = Arc::new(State {
        location: config.location,
        database_shown: config.database_shown,
        connector: config.connector,
        endpoint: config.endpoint,
        secure_cookie,
        limits: limits::Limits::new(config.requests_per_second),
        jobs: Arc::new(state::Jobs::new()),
        streams: Arc::new(tokio::sync::Semaphore::new(state::MAX_STREAMS)),
        metrics,
    });
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
    let bound = listener.local_addr().map_err(ServeError::Serve)?;
    tracing::info!(target: "scopable::serve", "listening on http://{bound}");
    on_ready(bound);
    let workers = jobs::start(state.clone(), config.workers);
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal(state.clone()))
        .await;
    state.jobs.draining.store(true, Ordering::SeqCst);
    state.jobs.wake.notify_waiters();
    for worker in workers {
        let _ = worker.await;
    }
    served.map_err(ServeError::Serve)
}

async fn shutdown_signal(state: Arc<State>) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!(target: "scopable::serve", "stopping: no new requests or syncs; letting running syncs finish");
    // Workers claim nothing more and progress streams end, while requests drain.
    state.jobs.draining.store(true, Ordering::SeqCst);
    state.jobs.wake.notify_waiters();
}

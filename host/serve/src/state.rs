//! What every request shares: the database, the loaded connector, the operator's settings,
//! the rate limits, the job queue and the metrics.

use crate::error::ApiError;
use crate::limits::Limits;
use scopable_sandbox::policy::BaseUrl;
use scopable_sandbox::sandbox::LoadedConnector;
use scopable_store::{DEFAULT_ACCOUNT, Db, Location};
use scopable_sync::app::{App, AppError};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use tokio::sync::Notify;

/// The most progress streams open at once, over every account.
pub const MAX_STREAMS: usize = 256;

/// The shared state of the server.
pub struct State {
    /// Where the database is.
    pub location: Location,
    /// How status names the database.
    pub database_shown: String,
    /// The connector this server runs, loaded once.
    pub connector: Arc<LoadedConnector>,
    /// The operator's `--endpoint` for that connector: every account's calls go there.
    pub endpoint: Option<BaseUrl>,
    /// Whether the session cookie is `Secure` (an https `--public-url`).
    pub secure_cookie: bool,
    /// The rate limits.
    pub limits: Limits,
    /// The sync jobs.
    pub jobs: Arc<Jobs>,
    /// Permits for open progress streams (at most [`MAX_STREAMS`] at once).
    pub streams: Arc<tokio::sync::Semaphore>,
    /// The Prometheus exporter's handle.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

impl State {
    /// The connector's name (`itglue`).
    pub fn connector_name(&self) -> &str {
        &self.connector.manifest.name
    }

    /// The connector's service, as people name it (`IT Glue`).
    pub fn service(&self) -> &str {
        self.connector.manifest.service()
    }

    /// Runs `f` on a blocking thread with the database opened for `account` (the operator's
    /// view when `None`: lookups that are not one account's, such as tokens).
    pub async fn blocking_db<T, F>(&self, account: Option<String>, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db) -> Result<T, ApiError> + Send + 'static,
    {
        let path = self.location.clone();
        tokio::task::spawn_blocking(move || {
            let account = account.unwrap_or_else(|| DEFAULT_ACCOUNT.to_string());
            let mut db = Db::open(&path, &account)?;
            f(&mut db)
        })
        .await
        .map_err(ApiError::internal)?
    }

    /// Whether `account` has the feature `feature` (a connector's name) switched on.
    pub async fn feature_enabled(&self, account: &str, feature: &str) -> Result<bool, ApiError> {
        let feature = feature.to_string();
        self.blocking_db(Some(account.to_string()), move |db| {
            Ok(scopable_store::accounts::feature_enabled(db, &feature)?)
        })
        .await
    }

    /// Runs `f` on a blocking thread with the application (the database and the connector)
    /// opened for `account`; a failure is mapped by [`ApiError::from_app`].
    pub async fn blocking_app<T, F>(&self, account: &str, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut App) -> Result<T, AppError> + Send + 'static,
    {
        let path = self.location.clone();
        let connector = self.connector.clone();
        let account = account.to_string();
        let service = self.service().to_string();
        tokio::task::spawn_blocking(move || {
            let mut app = App::with_connector(&path, &account, connector)?;
            f(&mut app)
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::from_app(e, &service))
    }
}

/// The job queue's shared state.
pub struct Jobs {
    /// Wakes an idle worker when a run is queued.
    pub wake: Notify,
    /// Set when the server stops: workers claim nothing more.
    pub draining: AtomicBool,
    /// Runs being worked on by this process.
    pub busy: AtomicUsize,
}

impl Jobs {
    /// An empty queue.
    pub fn new() -> Jobs {
        Jobs {
            wake: Notify::new(),
            draining: AtomicBool::new(false),
            busy: AtomicUsize::new(0),
        }
    }
}

impl Default for Jobs {
    fn default() -> Jobs {
        Jobs::new()
    }
}

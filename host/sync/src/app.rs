//! The application layer shared by the command line and embedders: opens the database, loads
//! the connector, builds each call's context (policy, credential, audit, storage), and maps
//! every failure to an exit status and a message that says what to do.

use scopable_sandbox::manifest::Manifest;
use scopable_sandbox::policy::BaseUrl;
use scopable_sandbox::sandbox::{
    CallContext, CallError, LoadError, LoadedConnector, Sandbox, wit_types as types,
};
use scopable_store::Db;
use scopable_store::Location;
use scopable_store::db::DbError;
use scopable_store::shared::Shared;
use scopable_store::vault::VaultError;
use std::path::PathBuf;
use std::sync::Arc;

/// Exit statuses of the command line (a stable contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// Any other failure, among them the host's own (its database, its disk) and a sync of
    /// the same kind already running.
    Failure = 1,
    /// Bad usage.
    Usage = 2,
    /// The API rejected the key (401/403).
    Unauthorized = 3,
    /// The API stayed unavailable after retries (network, 5xx, 429), or a sync did not finish
    /// within `sync_timeout_secs`.
    Unavailable = 4,
    /// The connector failed: a trap, its CPU, memory or `call_timeout_ms` limit (time waiting
    /// for the request budget not counted), a denied request, an unreadable response, or a
    /// definite refusal from the API (3xx/4xx), none of them retried except the unreadable
    /// response.
    ConnectorFailed = 5,
    /// Bad input data (import files, ids, vault, database file).
    BadInput = 6,
}

/// A failure on its way to the command line: an exit status and one line for the admin.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    /// The exit status.
    pub exit: Exit,
    /// What happened and what to do.
    pub message: String,
    /// A finer class than the exit status, when a caller tells some failures apart (the API's
    /// error codes: `not-found`, `target-taken`, ...).
    pub code: Option<&'static str>,
}

impl AppError {
    /// A failure with a given exit status.
    pub fn new(exit: Exit, message: impl Into<String>) -> AppError {
        AppError {
            exit,
            message: message.into(),
            code: None,
        }
    }

    /// The same failure, with a finer class ([`AppError::code`]).
    pub fn with_code(mut self, code: &'static str) -> AppError {
        self.code = Some(code);
        self
    }
}

/// The async runtime export calls run on (two worker threads: a sync's concurrency is
/// bounded by its manifest, not by threads).
pub fn runtime() -> Result<tokio::runtime::Runtime, AppError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            AppError::new(
                Exit::Failure,
                format!("cannot start the async runtime: {e}"),
            )
        })
}

impl From<DbError> for AppError {
    fn from(e: DbError) -> AppError {
        let exit = match e {
            DbError::NotADatabase { .. }
            | DbError::NewerSchema { .. }
            | DbError::Missing { .. }
            | DbError::IsDirectory { .. }
            | DbError::CannotOpen { .. }
            | DbError::ReadOnly { .. }
            | DbError::NoAccount { .. } => Exit::BadInput,
            DbError::Sqlite(_)
            | DbError::Sql(_)
            | DbError::Poisoned
            | DbError::NotQueued { .. } => Exit::Failure,
        };
        // The host's own database: a server answers it as its failure, not the caller's input.
        AppError::new(exit, e.to_string()).with_code(DATABASE)
    }
}

/// The code of a failure of the host's own database ([`AppError::code`]).
pub const DATABASE: &str = "database";

impl From<VaultError> for AppError {
    fn from(e: VaultError) -> AppError {
        match e {
            VaultError::Db(e) => e.into(),
            // The operator's settings: set the variable and start again.
            VaultError::KeyRequired => AppError::new(Exit::Usage, e.to_string()),
            e => AppError::new(Exit::BadInput, e.to_string()),
        }
    }
}

impl From<LoadError> for AppError {
    fn from(e: LoadError) -> AppError {
        match e {
            // The environment's network settings, not the connector, are at fault.
            LoadError::Network(e) => AppError::new(Exit::Usage, e.to_string()).with_code(NETWORK),
            e => AppError::new(Exit::ConnectorFailed, format!("connector refused: {e}")),
        }
    }
}

/// The code of network settings that cannot be used (`SSL_CERT_FILE`, `HTTPS_PROXY`).
pub const NETWORK: &str = "network-settings";
/// The code of a server certificate that was not trusted.
pub const CERTIFICATE: &str = "certificate";
/// The code of a proxy that refused the tunnel.
pub const PROXY: &str = "proxy";

/// Which connector to run.
#[derive(Debug, Clone)]
pub enum ConnectorSource {
    /// A connector shipped inside the program: its component and manifest (already pinned
    /// to the component's sha256).
    Embedded {
        /// The component.
        component: &'static [u8],
        /// Its manifest.
        manifest: Box<Manifest>,
    },
    /// A component file and its manifest.
    File {
        /// The component.
        component: PathBuf,
        /// Its manifest (must pin the component's sha256).
        manifest: PathBuf,
    },
}

/// Reads a connector's component bytes and manifest.
pub fn read_connector(source: &ConnectorSource) -> Result<(Vec<u8>, Manifest), AppError> {
    match source {
        ConnectorSource::Embedded {
            component,
            manifest,
        } => Ok((component.to_vec(), (**manifest).clone())),
        ConnectorSource::File {
            component,
            manifest,
        } => {
            let manifest = Manifest::from_file(manifest)
                .map_err(|e| AppError::new(Exit::BadInput, e.to_string()))?;
            let bytes = std::fs::read(component).map_err(|e| {
                AppError::new(
                    Exit::BadInput,
                    format!("cannot read component {}: {e}", component.display()),
                )
            })?;
            Ok((bytes, manifest))
        }
    }
}

/// Loads a connector: reads it ([`read_connector`]), compiles it in the sandbox (through the
/// compile cache) and checks it against its manifest's pin.
pub fn load_connector(source: &ConnectorSource) -> Result<Arc<LoadedConnector>, AppError> {
    let (bytes, manifest) = read_connector(source)?;
    let sandbox = Sandbox::new(scopable_sandbox::sandbox::default_cache_dir())
        .map_err(|e| AppError::new(Exit::Failure, format!("cannot start the sandbox: {e:#}")))?;
    let pinned = manifest.sha256.clone();
    Ok(Arc::new(sandbox.load(
        &bytes,
        manifest,
        pinned.as_deref(),
    )?))
}

/// An open database plus a loaded connector.
pub struct App {
    /// Where the database is.
    pub location: Location,
    /// The database, scoped to the account the app acts for.
    pub db: Db,
    /// A second connection used by the audit sink and the storage capability.
    capability_conn: Shared,
    /// The loaded connector.
    pub connector: Arc<LoadedConnector>,
}

impl App {
    /// Opens the database at `at` for `account` and loads the connector.
    pub fn open(at: &Location, account: &str, source: &ConnectorSource) -> Result<App, AppError> {
        App::with_connector(at, account, load_connector(source)?)
    }

    /// Opens the database at `at` for `account` for reading only
    /// ([`scopable_store::db::open_read_only`]: never created, migrated or written) and loads
    /// the connector, for the commands that only read. Its call contexts cannot record
    /// anything: a read-only app makes no export calls.
    pub fn open_read_only(
        at: &Location,
        account: &str,
        source: &ConnectorSource,
    ) -> Result<App, AppError> {
        let conn = Db::open_read_only(at, account)?;
        // Never used to write; opened lazily by SQLite, so it costs nothing unused.
        let capability_conn = Shared::open_read_only(at, conn.account())?;
        Ok(App {
            location: at.clone(),
            db: conn,
            capability_conn,
            connector: load_connector(source)?,
        })
    }

    /// Opens the database at `at` for `account` with a connector already loaded (a
    /// server loads it once and opens an app per request).
    pub fn with_connector(
        at: &Location,
        account: &str,
        connector: Arc<LoadedConnector>,
    ) -> Result<App, AppError> {
        let conn = Db::open(at, account)?;
        let capability_conn = Shared::open(at, conn.account())?;
        Ok(App {
            location: at.clone(),
            db: conn,
            capability_conn,
            connector,
        })
    }

    /// The connector's name.
    pub fn name(&self) -> &str {
        &self.connector.manifest.name
    }

    /// The base URL for a region or an explicit endpoint.
    pub fn base_url(&self, region: &str, endpoint: Option<&str>) -> Result<BaseUrl, AppError> {
        match endpoint {
            Some(url) => BaseUrl::parse_endpoint(url)
                .map_err(|e| AppError::new(Exit::Usage, format!("--endpoint {e}"))),
            None => {
                let url = self
                    .connector
                    .manifest
                    .region_url(region)
                    .map_err(|e| AppError::new(Exit::Usage, e))?;
                BaseUrl::parse(url).map_err(|e| AppError::new(Exit::Failure, e))
            }
        }
    }

    /// The context for export calls against `base` with `key`.
    pub fn call_context(&self, base: BaseUrl, key: &str) -> Result<CallContext, AppError> {
        database_context(&self.connector, &self.capability_conn, base, key)
    }

    /// Decrypts the stored connection's key (bound to its account, connector, region and
    /// endpoint).
    pub fn stored_key(
        &self,
        stored: &scopable_store::connections::StoredConnection,
    ) -> Result<String, AppError> {
        let vault = scopable_store::connections::open_vault(&self.db, false)?.ok_or_else(|| {
            AppError::new(
                Exit::BadInput,
                format!(
                    "the stored key cannot be read: no vault key ({} or {}); reconnect with `connect`",
                    scopable_store::vault::MASTER_KEY_ENV,
                    self.location
                        .file()
                        .map(|f| scopable_store::vault::key_file_for(f).display().to_string())
                        .unwrap_or_default()
                ),
            )
        })?;
        let account = scopable_store::connections::account_id(&self.db)?;
        Ok(vault.open_secret(
            &stored.key_nonce,
            &stored.key_ciphertext,
            scopable_store::vault::Binding {
                account: &account,
                connector: self.name(),
                region: &stored.region,
                endpoint: &stored.endpoint,
            },
        )?)
    }

    /// Calls `test` with retries.
    pub async fn test(&self, ctx: &CallContext) -> Result<types::Verified, CallError> {
        let limits = &self.connector.manifest.limits;
        crate::retry::with_retries(
            limits,
            || self.connector.test(ctx),
            |e, attempt, wait| {
                crate::notice::notice(&crate::notice::retry_notice(
                    "test",
                    e,
                    attempt,
                    limits.max_attempts,
                    wait,
                ));
            },
        )
        .await
    }
}

/// The context for export calls of `connector` against `base` with `key`, backed by a
/// database: audit records and storage go there, and pacing is shared through it. A sync and a
/// conformance run (`check`, on a temporary database) build their contexts here, so what one
/// sees is what the other sees.
pub fn database_context(
    connector: &LoadedConnector,
    capability_conn: &Shared,
    base: BaseUrl,
    key: &str,
) -> Result<CallContext, AppError> {
    let mut ctx = CallContext::standalone(connector, base, key)
        .map_err(|e| AppError::new(Exit::BadInput, e))?;
    crate::persist::attach(&mut ctx, connector, capability_conn);
    let limits = &connector.manifest.limits;
    ctx.in_flight = Some(Arc::new(tokio::sync::Semaphore::new(
        limits.concurrency as usize,
    )));
    Ok(ctx)
}

/// Validates a key as typed or piped: trimmed, non-empty, one line of visible characters.
pub fn clean_key(raw: &str) -> Result<String, AppError> {
    let key = raw.trim();
    if key.is_empty() {
        return Err(AppError::new(
            Exit::BadInput,
            "the API key is empty; paste the key again",
        ));
    }
    if key.chars().any(|c| c.is_control()) {
        return Err(AppError::new(
            Exit::BadInput,
            "the API key contains a line break or control character; paste it again as one line",
        ));
    }
    if !key.is_ascii() {
        return Err(AppError::new(
            Exit::BadInput,
            "the API key contains non-ASCII characters; copy it again",
        ));
    }
    Ok(key.to_string())
}

/// Maps a failed export call to an exit status and a message. `verified_before` is when the
/// stored connection last passed a test (it makes a revoked key the likeliest cause of a 401,
/// for services that revoke idle keys).
pub fn call_failure(
    e: &CallError,
    manifest: &scopable_sandbox::manifest::Manifest,
    region: &str,
    base: &BaseUrl,
    verified_before: Option<&str>,
) -> AppError {
    let service = manifest.service();
    match e {
        CallError::Guest(types::Error::Unauthorized(detail)) => {
            // The connector's first sentence says what the API answered; the hints are ours.
            let detail = detail
                .split(". ")
                .next()
                .unwrap_or(detail)
                .trim_end_matches('.');
            let region_hint = format!(
                "check that region {region} ({}) matches your {service} account: a key from another region is rejected the same way",
                base.host
            );
            let idle = manifest.credential.idle_revocation_days;
            let message = match (verified_before, idle) {
                (Some(at), Some(days)) => format!(
                    "That key didn't work ({detail}). It was verified on {at}: {service} revokes keys unused for {days} days, so generate a fresh key and reconnect; otherwise re-copy the key (watch for spaces), {region_hint}, and check {service}'s IP access control."
                ),
                (_, idle) => format!(
                    "That key didn't work ({detail}). Re-copy the key (watch for spaces at either end), {region_hint}{}; {service}'s IP access control can also refuse this machine.",
                    idle.map(|d| format!("; keys idle for {d} days are revoked"))
                        .unwrap_or_default()
                ),
            };
            AppError::new(Exit::Unauthorized, message)
        }
        CallError::Guest(types::Error::RateLimited(_) | types::Error::Unavailable(_)) => {
            AppError::new(
                Exit::Unavailable,
                format!("{service} is unavailable after retries: {e}. Try again later."),
            )
        }
        CallError::Guest(types::Error::NotFound(_)) => AppError::new(
            Exit::Failure,
            format!("{e}. Check --region or --endpoint ({}).", base.to_url()),
        ),
        CallError::Host(_) => AppError::new(
            Exit::Failure,
            format!(
                "{e}. This is the host's failure, not {service}'s: check the database file and the disk, then run it again."
            ),
        ),
        CallError::Certificate {
            problem, bundle, ..
        } => {
            let trusted = match bundle {
                Some(file) => format!(
                    " (SSL_CERT_FILE names {file}, which does not hold the certificate authority that signed it either)"
                ),
                None => String::new(),
            };
            let todo = if problem.starts_with("wrong name") {
                format!(
                    "Check --region or --endpoint ({}); if a firewall or proxy on this network inspects TLS, set SSL_CERT_FILE to a PEM file holding its CA certificate",
                    base.to_url()
                )
            } else {
                "If a firewall or proxy on this network inspects TLS, set SSL_CERT_FILE to a PEM file holding its CA certificate and run it again".to_string()
            };
            AppError::new(
                Exit::ConnectorFailed,
                format!("{service}'s {e}{trusted}. {todo}. Not retried: the same certificate would be refused again."),
            )
            .with_code(CERTIFICATE)
        }
        CallError::Proxy { .. } => AppError::new(
            Exit::ConnectorFailed,
            format!("{e}. The proxy comes from HTTPS_PROXY; NO_PROXY lists hosts reached directly. Not retried."),
        )
        .with_code(PROXY),
        CallError::Rejected { status, .. } => AppError::new(
            Exit::ConnectorFailed,
            format!(
                "{e}. {service} answered HTTP {status} to the connector's request; check --region or --endpoint ({}), and the connector's version.",
                base.to_url()
            ),
        ),
        _ => AppError::new(Exit::ConnectorFailed, format!("{e}")),
    }
}

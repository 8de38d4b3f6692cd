//! `scopable-host serve`: the integration runtime on this machine's database.

use crate::output::print_line;
use scopable_sandbox::policy::BaseUrl;
use scopable_sync::app::{AppError, ConnectorSource, Exit};
use std::net::SocketAddr;

/// What `serve` was given.
pub struct ServeArgs {
    /// `--listen`.
    pub listen: SocketAddr,
    /// `--workers`.
    pub workers: usize,
    /// `--endpoint CONNECTOR=URL`, each.
    pub endpoints: Vec<String>,
    /// `--public-url`.
    pub public_url: Option<String>,
    /// `--requests-per-second`.
    pub requests_per_second: u32,
}

/// Runs the server until SIGTERM or Ctrl-C.
pub fn serve_command(
    db_path: &scopable_store::Location,
    source: &ConnectorSource,
    args: ServeArgs,
) -> Result<(), AppError> {
    let connector = scopable_sync::app::load_connector(source)?;
    let name = connector.manifest.name.clone();
    let mut endpoint = None;
    for given in &args.endpoints {
        let Some((which, url)) = given.split_once('=') else {
            return Err(AppError::new(
                Exit::Usage,
                format!(
                    "--endpoint takes CONNECTOR=URL (for example {name}=https://proxy.example), not {given:?}"
                ),
            ));
        };
        if which != name {
            return Err(AppError::new(
                Exit::Usage,
                format!("--endpoint names connector {which:?}, but this server runs {name:?}"),
            ));
        }
        endpoint = Some(
            BaseUrl::parse_endpoint(url)
                .map_err(|e| AppError::new(Exit::Usage, format!("--endpoint {e}")))?,
        );
    }
    if let Some(url) = &args.public_url {
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("https://") || lower.starts_with("http://")) {
            return Err(AppError::new(
                Exit::Usage,
                format!("--public-url must be an http or https URL, not {url:?}"),
            ));
        }
    }
    // A bad lease setting is refused before any run is claimed (it would fail each one).
    scopable_sync::sync::lease_length()?;
    db_path.size_pool_for(args.workers);
    let config = scopable_serve::Config {
        listen: args.listen,
        workers: args.workers,
        location: db_path.clone(),
        database_shown: db_path.shown(),
        connector,
        endpoint,
        public_url: args.public_url,
        requests_per_second: args.requests_per_second,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            AppError::new(
                Exit::Failure,
                format!("cannot start the async runtime: {e}"),
            )
        })?;
    rt.block_on(scopable_serve::run(config, |addr| {
        print_line(format_args!("listening on http://{addr}"));
    }))
    .map_err(|e| match e {
        // The exit class of the database or the vault key that stopped it (a key missing
        // from the environment is the operator's usage: 2).
        scopable_serve::ServeError::Database(e) => AppError::from(e),
        scopable_serve::ServeError::Vault(e) => AppError::from(e),
        e => AppError::new(Exit::Failure, e.to_string()),
    })
}

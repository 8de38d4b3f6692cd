//! [`Location`]: where the database is, a SQLite file or a PostgreSQL server, as `--db` (or
//! `$SCOPABLE_DB`) names it. A server's URL may hold a password: it is kept here and given
//! to the driver only; everything shown ([`Location::shown`], `Debug`) leaves it out.

use crate::db::DbError;
use crate::pg::Postgres;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The most connections one process opens to a PostgreSQL server, unless
/// [`Location::size_pool_for`] says otherwise.
pub const MAX_CONNECTIONS: usize = 16;

/// Where the database is.
#[derive(Clone)]
pub enum Location {
    /// A SQLite file.
    File(PathBuf),
    /// A PostgreSQL database, reached through one pool per process.
    Postgres(Arc<Server>),
}

/// A PostgreSQL database named by URL, connected (and migrated) on first use.
pub struct Server {
    url: String,
    shown: String,
    pool: Mutex<Option<Postgres>>,
    max_connections: std::sync::atomic::AtomicUsize,
}

impl Server {
    /// The pool, connecting and migrating on first use. A failed connection is tried again
    /// at the next use.
    pub fn pool(&self) -> Result<Postgres, DbError> {
        let mut pool = self.pool.lock().map_err(|_| DbError::Poisoned)?;
        if let Some(pool) = pool.as_ref() {
            return Ok(pool.clone());
        }
        let size = self
            .max_connections
            .load(std::sync::atomic::Ordering::Relaxed);
        let connected = Postgres::connect(&self.url, size).map_err(|e| {
            DbError::Sql(format!(
                "cannot use the PostgreSQL database {}: {e}",
                self.shown
            ))
        })?;
        *pool = Some(connected.clone());
        Ok(connected)
    }

    /// The URL itself, password included: for the driver only.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Whether `text` names a PostgreSQL server rather than a file.
pub fn is_postgres_url(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

impl Location {
    /// `--db`'s value: a `postgres://` (or `postgresql://`) URL, else a file path.
    pub fn parse(text: impl Into<PathBuf>) -> Result<Location, DbError> {
        let path: PathBuf = text.into();
        let Some(given) = path.to_str().filter(|t| is_postgres_url(t)) else {
            return Ok(Location::File(path));
        };
        // The driver knows the scheme in lowercase only.
        let rest = given.split_once("://").map(|(_, rest)| rest).unwrap_or("");
        let url = format!("postgresql://{rest}");
        let url = url.as_str();
        // Parsed now, so that a malformed URL is refused before anything runs.
        let config = url.parse::<tokio_postgres::Config>().map_err(|_| {
            DbError::Sql(
                "the PostgreSQL URL could not be parsed: give it as postgres://user:password@host:port/database".into(),
            )
        })?;
        Ok(Location::Postgres(Arc::new(Server {
            url: url.to_string(),
            shown: shown_url(&config),
            pool: Mutex::new(None),
            max_connections: std::sync::atomic::AtomicUsize::new(MAX_CONNECTIONS),
        })))
    }

    /// Sizes a PostgreSQL pool (before its first use) for `workers` syncs at once: each
    /// holds three connections while it runs (its own, the one it stages on, and its lease's
    /// heartbeat), and requests, the sweep and progress writes need some beside them. Nothing
    /// for a file.
    pub fn size_pool_for(&self, workers: usize) {
        if let Location::Postgres(server) = self {
            server.max_connections.store(
                MAX_CONNECTIONS.max(workers.saturating_mul(3).saturating_add(8)),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    }

    /// `--db` if given, else `$SCOPABLE_DB`, else `./scopable.db`.
    pub fn resolve(flag: Option<PathBuf>) -> Result<Location, DbError> {
        Location::parse(crate::db::resolve_path(flag))
    }

    /// The file, for SQLite.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Location::File(path) => Some(path),
            Location::Postgres(_) => None,
        }
    }

    /// The server, for PostgreSQL.
    pub fn server(&self) -> Option<&Server> {
        match self {
            Location::File(_) => None,
            Location::Postgres(server) => Some(server),
        }
    }

    /// Whether this is a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Location::Postgres(_))
    }

    /// How messages and `status` name the database: a file's absolute path, or the URL
    /// without its password (`postgres://user@host:port/database`).
    pub fn shown(&self) -> String {
        match self {
            Location::File(path) => std::path::absolute(path)
                .unwrap_or_else(|_| path.clone())
                .display()
                .to_string(),
            Location::Postgres(server) => server.shown.clone(),
        }
    }
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL itself: it may hold a password.
        f.debug_tuple("Location").field(&self.shown()).finish()
    }
}

impl From<&Path> for Location {
    fn from(path: &Path) -> Location {
        Location::File(path.to_path_buf())
    }
}

impl From<&PathBuf> for Location {
    fn from(path: &PathBuf) -> Location {
        Location::File(path.clone())
    }
}

impl From<PathBuf> for Location {
    fn from(path: PathBuf) -> Location {
        Location::File(path)
    }
}

impl From<&Location> for Location {
    fn from(at: &Location) -> Location {
        at.clone()
    }
}

/// `postgres://user@host:port/database` from a parsed URL: no password, ever.
fn shown_url(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config
        .get_ports()
        .first()
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    let database = config.get_dbname().unwrap_or("");
    format!("postgres://{user}{host}{port}/{database}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_shown_without_its_password() {
        let at = Location::parse("postgres://scopable:s3cr%40t@db.example:5433/runtime").unwrap();
        assert!(at.is_postgres());
        assert_eq!(at.shown(), "postgres://scopable@db.example:5433/runtime");
        assert!(!format!("{at:?}").contains("s3cr"), "{at:?}");
        assert!(at.server().unwrap().url().contains("s3cr"));
    }

    #[test]
    fn anything_else_is_a_file_and_a_bad_url_is_refused() {
        let at = Location::parse("postgres.db").unwrap();
        assert_eq!(at.file(), Some(Path::new("postgres.db")));
        assert!(Location::parse("POSTGRESQL://u@h/d").unwrap().is_postgres());
        let err = Location::parse("postgres://u:pw@h:notaport/d").unwrap_err();
        assert!(!err.to_string().contains("pw"), "{err}");
        assert!(
            err.to_string().contains("postgres://user:password@host"),
            "{err}"
        );
    }
}

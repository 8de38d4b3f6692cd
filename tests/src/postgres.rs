//! The throwaway PostgreSQL server of the tests and benchmarks (`scripts/postgres.sh` starts
//! it and names it in `SCOPABLE_TEST_POSTGRES`), reached through Debian's `psql`.

use std::process::Command;

/// The variable naming the server: `postgres://user@127.0.0.1:PORT/postgres`.
pub const SERVER_ENV: &str = "SCOPABLE_TEST_POSTGRES";

/// The server's URL from [`SERVER_ENV`].
///
/// # Panics
/// When it is not set (run `./scripts/test.sh`, which starts the server).
pub fn server() -> String {
    std::env::var(SERVER_ENV).unwrap_or_else(|_| {
        panic!("{SERVER_ENV} is not set: run ./scripts/test.sh, which starts a throwaway PostgreSQL server")
    })
}

/// Runs `sql` on the database `url` (`psql -At`); what it printed, trimmed.
///
/// # Panics
/// When `psql` cannot run or the statement fails.
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
        .output()
        .expect("run psql (Debian's postgresql-client)");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A new, empty database on the server `server` named after `name`, this process and the
/// time; its URL. Left behind: the server is thrown away at the end.
pub fn fresh_database(server: &str, name: &str) -> String {
    let unique = format!(
        "{name}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    psql(server, &format!("CREATE DATABASE {unique}"));
    let (base, _) = server
        .rsplit_once('/')
        .expect("a database part in the server's URL");
    format!("{base}/{unique}")
}

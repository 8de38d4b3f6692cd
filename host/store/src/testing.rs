//! Test databases: a fresh SQLite file and a fresh database on the throwaway PostgreSQL
//! cluster that `scripts/test.sh` starts (`SCOPABLE_TEST_POSTGRES`), so that each store
//! function is tested on both.
use crate::handle::Db;
use crate::pg::{Postgres, block, db_runtime};

/// One database a test runs on, SQLite or PostgreSQL, fresh and empty: open as many
/// handles (processes, replicas) on it as the test needs.
pub struct TestDb {
    /// `sqlite` or `postgres`, for assertion messages.
    pub name: &'static str,
    dir: Option<tempfile::TempDir>,
    postgres: Option<Postgres>,
}

impl TestDb {
    /// A new handle on this database for `account`.
    pub fn open(&self, account: &str) -> Db {
        match (&self.dir, &self.postgres) {
            (Some(dir), _) => Db::open(dir.path().join("test.db"), account).unwrap(),
            (None, Some(pg)) => Db::open_postgres(pg, account).unwrap(),
            (None, None) => unreachable!("a test database is one or the other"),
        }
    }

    /// The PostgreSQL pool, when this is PostgreSQL.
    pub fn postgres(&self) -> Option<&Postgres> {
        self.postgres.as_ref()
    }

    /// The SQLite file, when this is SQLite.
    pub fn path(&self) -> Option<std::path::PathBuf> {
        self.dir.as_ref().map(|d| d.path().join("test.db"))
    }
}

/// A fresh SQLite database and a fresh PostgreSQL database (on the test cluster): a
/// test of a store function runs on each.
pub fn databases(name: &str) -> Vec<TestDb> {
    let url = fresh_database(name);
    vec![
        TestDb {
            name: "sqlite",
            dir: Some(tempfile::tempdir().unwrap()),
            postgres: None,
        },
        TestDb {
            name: "postgres",
            dir: None,
            postgres: Some(Postgres::connect(&url, 8).unwrap()),
        },
    ]
}

/// A new, empty database on the test cluster, its URL (left behind: the cluster is thrown
/// away at the end of the run).
pub fn fresh_database(name: &str) -> String {
    let url = std::env::var("SCOPABLE_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!(
            "SCOPABLE_TEST_POSTGRES is not set: run ./scripts/test.sh, which starts a throwaway PostgreSQL cluster for the store's tests"
        )
    });
    let unique = format!(
        "{name}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let (client, connection) = block(tokio_postgres::connect(&url, tokio_postgres::NoTls))
        .unwrap_or_else(|e| panic!("cannot reach the test cluster: {e}"));
    db_runtime().spawn(connection);
    block(client.batch_execute(&format!("CREATE DATABASE {unique}")))
        .unwrap_or_else(|e| panic!("cannot create a test database: {e}"));
    match url.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{unique}"),
        None => panic!("SCOPABLE_TEST_POSTGRES has no database part"),
    }
}

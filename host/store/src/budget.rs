//! The request budget table: a sliding window of reservations per account and connector,
//! shared by every call, every concurrent instance and every consecutive process using the
//! database.

use crate::db::DbError;
use crate::pg::Postgres;
use crate::shared::Shared;
use crate::sql::Sql;
use crate::values;
use rusqlite::Connection;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One connector's reservations of one account in the database.
#[derive(Clone)]
pub struct BudgetTable {
    kept: Kept,
    account: Arc<str>,
    connector: String,
}

/// Where the reservations are kept.
#[derive(Clone)]
enum Kept {
    Sqlite(Arc<Mutex<Connection>>),
    Postgres(Postgres),
}

impl BudgetTable {
    /// The reservations of `connector` in `conn`, for `conn`'s account.
    pub fn new(conn: &Shared, connector: &str) -> BudgetTable {
        BudgetTable {
            kept: match &conn.kept {
                crate::shared::Kept::Sqlite(c) => Kept::Sqlite(c.clone()),
                crate::shared::Kept::Postgres(db) => Kept::Postgres(db.clone()),
            },
            account: conn.account_arc(),
            connector: connector.to_string(),
        }
    }

    /// The reservations of `account`'s `connector` on a PostgreSQL server, shared by every
    /// replica using it.
    pub fn postgres(db: &Postgres, account: &str, connector: &str) -> BudgetTable {
        BudgetTable {
            kept: Kept::Postgres(db.clone()),
            account: account.into(),
            connector: connector.to_string(),
        }
    }

    /// Reserves one request at `at_ms` if fewer than `limit` were reserved in the `window`
    /// before it (returns `None`), else returns how long to wait before the oldest
    /// reservation leaves the window. Blocks on the database: call it off the async threads.
    /// Takers are serialized: SQLite's write lock, or on PostgreSQL a transaction lock of the
    /// (account, connector) pair, so that replicas never together exceed `limit`.
    pub fn try_take(
        &self,
        limit: u32,
        window: Duration,
        at_ms: i64,
    ) -> Result<Option<Duration>, DbError> {
        match &self.kept {
            Kept::Sqlite(conn) => {
                let mut conn = conn.lock().map_err(|_| DbError::Poisoned)?;
                let tx =
                    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let wait = self.take_on(&tx, limit, window, at_ms)?;
                tx.commit()?;
                Ok(wait)
            }
            Kept::Postgres(db) => db.conn()?.transaction(|tx| {
                tx.lock(&format!("budget/{}/{}", self.account, self.connector))?;
                self.take_on(tx, limit, window, at_ms)
            }),
        }
    }

    /// [`BudgetTable::try_take`] inside a transaction that holds the pair's lock.
    fn take_on(
        &self,
        tx: &dyn Sql,
        limit: u32,
        window: Duration,
        at_ms: i64,
    ) -> Result<Option<Duration>, DbError> {
        let window_ms = window.as_millis() as i64;
        let since = at_ms - window_ms;
        let (account, connector) = (&*self.account, self.connector.as_str());
        tx.execute(
            "DELETE FROM request_budget WHERE account = ?1 AND connector = ?2 AND at_ms <= ?3",
            &values![account, connector, since],
        )?;
        let row = tx.query_one(
            "SELECT count(*), min(at_ms) FROM request_budget WHERE account = ?1 AND connector = ?2",
            &values![account, connector],
        )?;
        let (used, oldest) = (row.int(0)?, row.opt_int(1)?);
        if used < i64::from(limit) {
            tx.execute(
                "INSERT INTO request_budget (account, connector, at_ms) VALUES (?1, ?2, ?3)",
                &values![account, connector, at_ms],
            )?;
            return Ok(None);
        }
        let free_at = oldest.unwrap_or(at_ms) + window_ms;
        Ok(Some(Duration::from_millis((free_at - at_ms).max(1) as u64)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tables of `account`'s `connector`: each call a new connection (another process).
    type Open = Box<dyn Fn(&str, &str) -> BudgetTable>;

    fn sqlite() -> (tempfile::TempDir, Open) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let open: Open = Box::new(move |account: &str, connector: &str| {
            BudgetTable::new(&Shared::open(&path, account).unwrap(), connector)
        });
        (dir, open)
    }

    fn postgres() -> Open {
        let url = crate::testing::fresh_database("budget");
        Box::new(move |account: &str, connector: &str| {
            BudgetTable::postgres(&Postgres::connect(&url, 2).unwrap(), account, connector)
        })
    }

    #[test]
    fn a_window_holds_at_most_limit_requests_across_processes() {
        let (_dir, open) = sqlite();
        window_holds_at_most_limit(&open);
    }

    #[test]
    fn a_window_holds_at_most_limit_requests_across_replicas_on_postgres() {
        window_holds_at_most_limit(&postgres());
    }

    #[test]
    fn replicas_taking_at_once_never_exceed_the_limit_on_postgres() {
        let open = postgres();
        let tables: Vec<BudgetTable> = (0..3).map(|_| open("a", "itglue")).collect();
        let granted = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            for table in &tables {
                for _ in 0..3 {
                    s.spawn(|| {
                        for _ in 0..20 {
                            let taken = table.try_take(25, Duration::from_secs(60), 1_000).unwrap();
                            if taken.is_none() {
                                granted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            }
                        }
                    });
                }
            }
        });
        // 180 attempts by three replicas, nine threads at once: exactly the limit granted.
        assert_eq!(granted.load(std::sync::atomic::Ordering::SeqCst), 25);
    }

    fn window_holds_at_most_limit(open: &Open) {
        let w = Duration::from_secs(10);
        // Two tables over the same database stand for two processes.
        let a = open("a", "itglue");
        let b = open("a", "itglue");
        let t = 1_000_000;
        assert_eq!(a.try_take(3, w, t).unwrap(), None);
        assert_eq!(b.try_take(3, w, t + 1).unwrap(), None);
        assert_eq!(a.try_take(3, w, t + 2).unwrap(), None);
        // Full: the wait is until the oldest leaves the window.
        assert_eq!(
            b.try_take(3, w, t + 5).unwrap(),
            Some(Duration::from_millis(10_000 - 5))
        );
        // Another connector has its own budget.
        let other = open("a", "other");
        assert_eq!(other.try_take(3, w, t + 5).unwrap(), None);
        // And so has another account.
        let elsewhere = open("b", "itglue");
        assert_eq!(elsewhere.try_take(3, w, t + 5).unwrap(), None);
        // Once the first request leaves the window, one more fits, and only one.
        assert_eq!(a.try_take(3, w, t + 10_000).unwrap(), None);
        assert!(b.try_take(3, w, t + 10_000).unwrap().is_some());
    }
}

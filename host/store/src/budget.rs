//! The request budget table: a sliding window of reservations per account and connector,
//! shared by every call, every concurrent instance and every consecutive process using the
//! database.

use crate::db::DbError;
use crate::shared::Shared;
use rusqlite::{Connection, params};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One connector's reservations of one account in the database.
#[derive(Clone)]
pub struct BudgetTable {
    conn: Arc<Mutex<Connection>>,
    account: Arc<str>,
    connector: String,
}

impl BudgetTable {
    /// The reservations of `connector` in `conn`, for `conn`'s account.
    pub fn new(conn: &Shared, connector: &str) -> BudgetTable {
        BudgetTable {
            conn: conn.conn.clone(),
            account: conn.account_arc(),
            connector: connector.to_string(),
        }
    }

    /// Reserves one request at `at_ms` if fewer than `limit` were reserved in the `window`
    /// before it (returns `None`), else returns how long to wait before the oldest
    /// reservation leaves the window. Blocks on the database: call it off the async threads.
    pub fn try_take(
        &self,
        limit: u32,
        window: Duration,
        at_ms: i64,
    ) -> Result<Option<Duration>, DbError> {
        let mut conn = self.conn.lock().map_err(|_| DbError::Poisoned)?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let window_ms = window.as_millis() as i64;
        let since = at_ms - window_ms;
        tx.execute(
            "DELETE FROM request_budget WHERE account = ?1 AND connector = ?2 AND at_ms <= ?3",
            params![&*self.account, self.connector, since],
        )?;
        let (used, oldest): (i64, Option<i64>) = tx.query_row(
            "SELECT count(*), min(at_ms) FROM request_budget WHERE account = ?1 AND connector = ?2",
            params![&*self.account, self.connector],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let wait = if used < i64::from(limit) {
            tx.execute(
                "INSERT INTO request_budget (account, connector, at_ms) VALUES (?1, ?2, ?3)",
                params![&*self.account, self.connector, at_ms],
            )?;
            None
        } else {
            let free_at = oldest.unwrap_or(at_ms) + window_ms;
            Some(Duration::from_millis((free_at - at_ms).max(1) as u64))
        };
        tx.commit()?;
        Ok(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_holds_at_most_limit_requests_across_processes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let open = || Shared::open(&path, "a").unwrap();
        let w = Duration::from_secs(10);
        // Two tables over the same file stand for two processes.
        let a = BudgetTable::new(&open(), "itglue");
        let b = BudgetTable::new(&open(), "itglue");
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
        let other = BudgetTable::new(&open(), "other");
        assert_eq!(other.try_take(3, w, t + 5).unwrap(), None);
        // And so has another account.
        let elsewhere = BudgetTable::new(&Shared::open(&path, "b").unwrap(), "itglue");
        assert_eq!(elsewhere.try_take(3, w, t + 5).unwrap(), None);
        // Once the first request leaves the window, one more fits, and only one.
        assert_eq!(a.try_take(3, w, t + 10_000).unwrap(), None);
        assert!(b.try_take(3, w, t + 10_000).unwrap().is_some());
    }
}

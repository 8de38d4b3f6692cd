//! Pacing: a sliding-window request budget per connector, kept in the database so that every
//! call, every concurrent instance and every consecutive process share it. IT Glue allows 3000
//! requests per 5 minutes; the default budget (2800 per 300 s) stays under it.

use rusqlite::{Connection, params};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A connector's request budget.
#[derive(Clone)]
pub struct Budget {
    conn: Arc<Mutex<Connection>>,
    connector: String,
    limit: u32,
    window: Duration,
}

/// A budget that cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[error("the request budget in the database failed: {0}")]
pub struct BudgetError(String);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Budget {
    /// `limit` requests per `window` for `connector`.
    pub fn new(
        conn: Arc<Mutex<Connection>>,
        connector: &str,
        limit: u32,
        window: Duration,
    ) -> Budget {
        Budget {
            conn,
            connector: connector.to_string(),
            limit,
            window,
        }
    }

    /// Reserves one request if the window has room (returns `None`), else returns how long to
    /// wait before the oldest reservation leaves the window.
    pub fn try_take(&self, at_ms: i64) -> Result<Option<Duration>, BudgetError> {
        let err = |e: rusqlite::Error| BudgetError(e.to_string());
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| BudgetError("connection poisoned".into()))?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let window_ms = self.window.as_millis() as i64;
        let since = at_ms - window_ms;
        tx.execute(
            "DELETE FROM request_budget WHERE connector = ?1 AND at_ms <= ?2",
            params![self.connector, since],
        )
        .map_err(err)?;
        let (used, oldest): (i64, Option<i64>) = tx
            .query_row(
                "SELECT count(*), min(at_ms) FROM request_budget WHERE connector = ?1",
                params![self.connector],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(err)?;
        let wait = if used < i64::from(self.limit) {
            tx.execute(
                "INSERT INTO request_budget (connector, at_ms) VALUES (?1, ?2)",
                params![self.connector, at_ms],
            )
            .map_err(err)?;
            None
        } else {
            let free_at = oldest.unwrap_or(at_ms) + window_ms;
            Some(Duration::from_millis((free_at - at_ms).max(1) as u64))
        };
        tx.commit().map_err(err)?;
        Ok(wait)
    }

    /// Waits until one request fits in the budget, and reserves it. The database work (a
    /// write transaction that may wait up to the connection's busy timeout) runs on tokio's
    /// blocking pool, so the async threads stay free meanwhile.
    pub async fn acquire(&self) -> Result<(), BudgetError> {
        loop {
            let budget = self.clone();
            let taken = tokio::task::spawn_blocking(move || budget.try_take(now_ms()))
                .await
                .map_err(|e| BudgetError(format!("the budget check did not finish: {e}")))?;
            match taken? {
                None => return Ok(()),
                Some(wait) => {
                    tracing::info!(
                        "request budget of {} per {:?} reached; waiting {wait:?}",
                        self.limit,
                        self.window
                    );
                    tokio::time::sleep(wait.min(Duration::from_secs(5))).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_holds_at_most_limit_requests_across_processes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let open = || Arc::new(Mutex::new(crate::db::open(&path).unwrap()));
        // Two budgets over the same file stand for two processes.
        let a = Budget::new(open(), "itglue", 3, Duration::from_secs(10));
        let b = Budget::new(open(), "itglue", 3, Duration::from_secs(10));
        let t = 1_000_000;
        assert_eq!(a.try_take(t).unwrap(), None);
        assert_eq!(b.try_take(t + 1).unwrap(), None);
        assert_eq!(a.try_take(t + 2).unwrap(), None);
        // Full: the wait is until the oldest leaves the window.
        assert_eq!(
            b.try_take(t + 5).unwrap(),
            Some(Duration::from_millis(10_000 - 5))
        );
        // Another connector has its own budget.
        let other = Budget::new(open(), "other", 3, Duration::from_secs(10));
        assert_eq!(other.try_take(t + 5).unwrap(), None);
        // Once the first request leaves the window, one more fits, and only one.
        assert_eq!(a.try_take(t + 10_000).unwrap(), None);
        assert!(b.try_take(t + 10_000).unwrap().is_some());
    }

    /// While another connection holds the database's write lock, `acquire` waits on the
    /// blocking pool: a timer on the same single-threaded runtime still fires on time.
    #[tokio::test(flavor = "current_thread")]
    async fn a_budget_waiting_on_a_locked_database_does_not_block_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let holder = crate::db::open(&path).unwrap();
        let budget = Budget::new(
            Arc::new(Mutex::new(crate::db::open(&path).unwrap())),
            "itglue",
            3,
            Duration::from_secs(10),
        );
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let acquiring = tokio::spawn(async move { budget.acquire().await });
        let started = std::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_secs(2),
            "a 50 ms timer took {elapsed:?}: the budget blocked the runtime"
        );
        assert!(
            !acquiring.is_finished(),
            "the budget did not wait for the lock"
        );
        holder.execute_batch("COMMIT").unwrap();
        acquiring.await.unwrap().unwrap();
        let taken: i64 = holder
            .query_row("SELECT count(*) FROM request_budget", [], |r| r.get(0))
            .unwrap();
        assert_eq!(taken, 1);
    }
}

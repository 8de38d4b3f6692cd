//! Pacing: a sliding-window request budget per connector. The window's reservations are
//! kept by a [`RequestBudget`] given by whoever runs the sandbox (the host's store keeps them
//! in its database, so every call, every concurrent instance and every consecutive process
//! share them). The defaults come from the manifest (see `Limits`).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where a budget's reservations are kept.
pub trait RequestBudget: Send + Sync {
    /// Reserves one request at `at_ms` (milliseconds since the epoch) if fewer than `limit`
    /// were reserved in the `window` before it (returns `None`), else returns how long to wait.
    /// May block (a database): it is called off the async threads.
    fn try_take(
        &self,
        limit: u32,
        window: Duration,
        at_ms: i64,
    ) -> Result<Option<Duration>, String>;
}

/// A connector's request budget.
#[derive(Clone)]
pub struct Budget {
    store: Arc<dyn RequestBudget>,
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
    /// `limit` requests per `window`, reserved in `store`.
    pub fn new(store: Arc<dyn RequestBudget>, limit: u32, window: Duration) -> Budget {
        Budget {
            store,
            limit,
            window,
        }
    }

    /// Reserves one request if the window has room (returns `None`), else returns how long to
    /// wait before the oldest reservation leaves the window.
    pub fn try_take(&self, at_ms: i64) -> Result<Option<Duration>, BudgetError> {
        self.store
            .try_take(self.limit, self.window, at_ms)
            .map_err(BudgetError)
    }

    /// Waits until one request fits in the budget, and reserves it. The reservation (which
    /// may wait for a database) runs on tokio's blocking pool, so the async threads stay free
    /// meanwhile.
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

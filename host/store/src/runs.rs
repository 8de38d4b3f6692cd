//! Sync runs (`sync_runs`): starting one under the lease of its connector and kind, renewing
//! the lease, recording its end, and reading the last and recent runs. Rows are those of the
//! handle's account.

use crate::db::{self, DbError};
use crate::handle::Db;
use rusqlite::{Connection, OptionalExtension, params};
use std::time::Duration;

/// Now, in unix milliseconds (the unit of `sync_runs.lease_until`).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The counts a run records.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RunCounts {
    /// Records received.
    pub fetched: u64,
    /// Records linked after the sync.
    pub linked: u64,
    /// Records left unlinked (unplaced or ignored).
    pub skipped: u64,
    /// Records the connector could not read.
    pub errored: u64,
    /// Links added.
    pub new_links: u64,
    /// Automatic links removed.
    pub removed_links: u64,
    /// HTTP requests made, retries included.
    pub requests: u64,
}

/// A run that holds the lease of its connector and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Its row id.
    pub id: i64,
    /// When it started.
    pub started_at: String,
}

/// A run of the same connector and kind still holding its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveRun {
    /// Its row id.
    pub id: i64,
    /// When it started.
    pub started_at: String,
    /// Whether it is a dry run.
    pub dry_run: bool,
    /// How long its lease still lasts.
    pub left: Duration,
}

/// What starting a run found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// The run started and holds the lease.
    Started(Run),
    /// Another run of this connector and kind is running; nothing was started.
    Running(LiveRun),
}

/// Starts a run, holding the lease of this connector and kind for `lease`. A `running` run
/// whose lease has passed was interrupted (its process died) and is marked so; a live one is
/// returned as [`Start::Running`], and nothing else is written.
pub fn start(
    db: &mut Db,
    connector: &str,
    kind: &str,
    dry_run: bool,
    lease: Duration,
) -> Result<Start, DbError> {
    let tx = db
        .conn_mut()
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let now = now_ms();
    tx.execute(
        "UPDATE sync_runs SET status = 'failed',
                error = 'interrupted before it finished (its process stopped renewing its lease); nothing was applied',
                finished_at = coalesce(finished_at, started_at), lease_until = NULL
         WHERE connector = ?1 AND status = 'running' AND (lease_until IS NULL OR lease_until < ?2)",
        params![connector, now],
    )?;
    let live: Option<(i64, String, i64, bool)> = tx
        .query_row(
            "SELECT id, started_at, lease_until, dry_run FROM sync_runs
             WHERE connector = ?1 AND kind = ?2 AND status = 'running' ORDER BY id LIMIT 1",
            params![connector, kind],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    if let Some((id, started_at, lease_until, dry)) = live {
        // The expired runs marked above stay marked.
        tx.commit()?;
        let left = Duration::from_millis((lease_until - now).max(0) as u64);
        return Ok(Start::Running(LiveRun {
            id,
            started_at,
            dry_run: dry,
            left,
        }));
    }
    let started_at = db::now();
    tx.execute(
        "INSERT INTO sync_runs (connector, kind, dry_run, started_at, status, lease_until)
         VALUES (?1, ?2, ?3, ?4, 'running', ?5)",
        params![
            connector,
            kind,
            dry_run,
            started_at,
            now + lease.as_millis() as i64
        ],
    )?;
    let id = tx.last_insert_rowid();
    tx.commit()?;
    Ok(Start::Started(Run { id, started_at }))
}

/// Renews a run's lease every third of its length from its own thread and connection, until
/// dropped. When the run is no longer `running` (it finished, or another process found the
/// lease lapsed and took over) it stops; applying then refuses to write.
pub struct Heartbeat {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    /// Starts renewing the lease of run `run_id` in `db`'s database, `lease` at a time.
    pub fn start(db: &Db, run_id: i64, lease: Duration) -> Heartbeat {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let path = db.path().to_path_buf();
        let spawned = std::thread::Builder::new()
            .name("sync-lease".into())
            .spawn(move || {
                let conn = match Connection::open(&path) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!("cannot renew the sync's lease: {e}");
                        return;
                    }
                };
                if let Err(e) = conn.busy_timeout(Duration::from_secs(10)) {
                    tracing::warn!("sync lease: {e}");
                }
                let every = lease / 3;
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(every)
                {
                    let renewed = conn.execute(
                        "UPDATE sync_runs SET lease_until = ?2 WHERE id = ?1 AND status = 'running'",
                        params![run_id, now_ms() + lease.as_millis() as i64],
                    );
                    match renewed {
                        Ok(0) => return,
                        Ok(_) => {}
                        // Tried again at the next beat; the lease outlasts two missed ones.
                        Err(e) => tracing::warn!("cannot renew the sync's lease: {e}"),
                    }
                }
            });
        let thread = spawned
            .map_err(|e| tracing::error!("cannot start the sync's lease renewal: {e}"))
            .ok();
        Heartbeat {
            stop: Some(stop),
            thread,
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Records a run's end, unless it is no longer this process's to record (another process
/// marked it interrupted after its lease lapsed). `error` is stored as given.
pub fn finish(
    db: &Db,
    run_id: i64,
    status: &str,
    c: &RunCounts,
    error: Option<String>,
) -> Result<(), DbError> {
    finish_on(db.conn(), run_id, status, c, error)
}

/// [`finish`] on a connection (inside a transaction).
pub(crate) fn finish_on(
    conn: &Connection,
    run_id: i64,
    status: &str,
    c: &RunCounts,
    error: Option<String>,
) -> Result<(), DbError> {
    conn.execute(
        "UPDATE sync_runs SET finished_at = ?2, status = ?3, fetched = ?4, linked = ?5, skipped = ?6,
                errored = ?7, new_links = ?8, removed_links = ?9, requests = ?10, error = ?11,
                lease_until = NULL
         WHERE id = ?1 AND status = 'running'",
        params![
            run_id,
            db::now(),
            status,
            c.fetched as i64,
            c.linked as i64,
            c.skipped as i64,
            c.errored as i64,
            c.new_links as i64,
            c.removed_links as i64,
            c.requests as i64,
            error
        ],
    )?;
    Ok(())
}

/// When run `run_id` finished (`None` while it has not).
pub fn finished_at(db: &Db, run_id: i64) -> Result<Option<String>, DbError> {
    Ok(db.conn().query_row(
        "SELECT finished_at FROM sync_runs WHERE id = ?1",
        [run_id],
        |r| r.get::<_, Option<String>>(0),
    )?)
}

/// One stored run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    /// Its row id.
    pub id: i64,
    /// The record kind.
    pub kind: String,
    /// Records received.
    pub fetched: i64,
    /// Records linked after it.
    pub linked: i64,
    /// Records left unlinked.
    pub skipped: i64,
    /// Records the connector could not read.
    pub errored: i64,
    /// Links added.
    pub new_links: i64,
    /// Automatic links removed.
    pub removed_links: i64,
    /// HTTP requests made.
    pub requests: i64,
    /// Whether it was a dry run.
    pub dry_run: bool,
    /// When it started.
    pub started_at: String,
    /// When it finished.
    pub finished_at: Option<String>,
    /// `running`, `ok` or `failed`.
    pub status: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Until when its lease lasts (unix milliseconds), while it runs.
    pub lease_until: Option<i64>,
}

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: r.get("id")?,
        kind: r.get("kind")?,
        fetched: r.get("fetched")?,
        linked: r.get("linked")?,
        skipped: r.get("skipped")?,
        errored: r.get("errored")?,
        new_links: r.get("new_links")?,
        removed_links: r.get("removed_links")?,
        requests: r.get("requests")?,
        dry_run: r.get("dry_run")?,
        started_at: r.get("started_at")?,
        finished_at: r.get("finished_at")?,
        status: r.get("status")?,
        error: r.get("error")?,
        lease_until: r.get("lease_until")?,
    })
}

/// The last non-dry-run run of a kind, if any.
pub fn last_run(db: &Db, connector: &str, kind: &str) -> Result<Option<RunRow>, DbError> {
    Ok(db
        .conn()
        .query_row(
            "SELECT * FROM sync_runs
             WHERE connector = ?1 AND kind = ?2 AND dry_run = 0 ORDER BY id DESC LIMIT 1",
            params![connector, kind],
            run_row,
        )
        .optional()?)
}

/// The newest non-dry-run run of a kind that succeeded, if any.
pub fn last_ok_run(db: &Db, connector: &str, kind: &str) -> Result<Option<RunRow>, DbError> {
    Ok(db
        .conn()
        .query_row(
            "SELECT * FROM sync_runs WHERE connector = ?1 AND kind = ?2 AND dry_run = 0 AND status = 'ok'
             ORDER BY id DESC LIMIT 1",
            params![connector, kind],
            run_row,
        )
        .optional()?)
}

/// Recent runs (all kinds), newest first.
pub fn recent_runs(db: &Db, connector: &str, limit: usize) -> Result<Vec<RunRow>, DbError> {
    let mut stmt = db
        .conn()
        .prepare("SELECT * FROM sync_runs WHERE connector = ?1 ORDER BY id DESC LIMIT ?2")?;
    let rows = stmt.query_map(params![connector, limit as i64], run_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

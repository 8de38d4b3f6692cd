//! Sync runs (`sync_runs`): queueing one, starting or claiming it under the lease of its
//! connector and kind, renewing the lease, recording its progress and end, and reading runs;
//! and the schedules that queue them. Rows are those of the handle's account, except where a
//! function says it serves every account (a worker pool's).

use crate::db::{self, DbError};
use crate::handle::Db;
use rusqlite::{Connection, OptionalExtension, params};
use std::time::Duration;

pub use crate::db::now_ms;

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

/// What starting (or claiming) a run found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// The run started and holds the lease.
    Started(Run),
    /// Another run of this connector and kind is running; nothing was started.
    Running(LiveRun),
}

/// What queueing a run found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// The run was queued, under this id.
    Queued(i64),
    /// A run of this connector and kind is already queued, or running with a live lease: its
    /// id. Nothing was queued.
    Busy(i64),
}

/// The message of a run found `running` after its lease passed.
const INTERRUPTED: &str =
    "interrupted before it finished (its process stopped renewing its lease); nothing was applied";

/// Marks the `running` runs of `account`'s `connector` whose lease has passed as failed
/// (their process died).
fn mark_interrupted(
    conn: &Connection,
    account: &str,
    connector: &str,
    now: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE sync_runs SET status = 'failed', error = ?4,
                finished_at = coalesce(finished_at, started_at), lease_until = NULL
         WHERE account = ?1 AND connector = ?2 AND status = 'running'
           AND (lease_until IS NULL OR lease_until < ?3)",
        params![account, connector, now, INTERRUPTED],
    )?;
    Ok(())
}

/// Marks every `running` run of every account whose lease has lapsed (its process died) as
/// failed, interrupted, so that no reader waits on it. An operator-level sweep: `db`'s account
/// does not limit it. Returns how many were marked.
pub fn sweep_interrupted(db: &Db) -> Result<usize, DbError> {
    Ok(db.conn().execute(
        "UPDATE sync_runs SET status = 'failed', error = ?2,
                finished_at = coalesce(finished_at, started_at), lease_until = NULL
         WHERE status = 'running' AND (lease_until IS NULL OR lease_until < ?1)",
        params![now_ms(), INTERRUPTED],
    )?)
}

/// Ends the handle's account's queued run `id` as failed with `error`, when it could not be
/// claimed at all (the account lost the feature, or the host could not start it). Returns
/// whether it was still queued.
pub fn fail_queued(db: &Db, id: i64, error: &str) -> Result<bool, DbError> {
    Ok(db.conn().execute(
        "UPDATE sync_runs SET status = 'failed', error = ?3, finished_at = ?4, lease_until = NULL
         WHERE account = ?1 AND id = ?2 AND status = 'queued'",
        params![db.account(), id, error, db::now()],
    )? > 0)
}

/// The oldest run of `account`'s `connector` and `kind` that is `running` (after
/// [`mark_interrupted`], its lease is live), other than `except`.
fn live_run(
    conn: &Connection,
    account: &str,
    connector: &str,
    kind: &str,
    except: Option<i64>,
    now: i64,
) -> rusqlite::Result<Option<LiveRun>> {
    conn.query_row(
        "SELECT id, started_at, lease_until, dry_run FROM sync_runs
         WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND status = 'running'
           AND id IS NOT ?4
         ORDER BY id LIMIT 1",
        params![account, connector, kind, except],
        |r| {
            let lease_until: i64 = r.get(2)?;
            Ok(LiveRun {
                id: r.get(0)?,
                started_at: r.get(1)?,
                dry_run: r.get(3)?,
                left: Duration::from_millis((lease_until - now).max(0) as u64),
            })
        },
    )
    .optional()
}

/// Starts a run of the handle's account, holding the lease of this connector and kind for
/// `lease`, for `actor` (`cli:<user>`, `token:<id>`; `None` when not known). A `running` run
/// whose lease has passed was interrupted (its process died) and is marked so; a live one is
/// returned as [`Start::Running`], and nothing else is written.
pub fn start(
    db: &mut Db,
    connector: &str,
    kind: &str,
    dry_run: bool,
    lease: Duration,
    actor: Option<&str>,
) -> Result<Start, DbError> {
    let account = db.account().to_string();
    let tx = db
        .conn_mut()
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let now = now_ms();
    mark_interrupted(&tx, &account, connector, now)?;
    if let Some(live) = live_run(&tx, &account, connector, kind, None, now)? {
        // The expired runs marked above stay marked.
        tx.commit()?;
        return Ok(Start::Running(live));
    }
    let started_at = db::now();
    tx.execute(
        "INSERT INTO sync_runs (account, connector, kind, dry_run, started_at, status, lease_until,
                               actor)
         VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6, ?7)",
        params![
            account,
            connector,
            kind,
            dry_run,
            started_at,
            now + lease.as_millis() as i64,
            actor
        ],
    )?;
    let id = tx.last_insert_rowid();
    tx.commit()?;
    Ok(Start::Started(Run { id, started_at }))
}

/// Queues a run of the handle's account for a worker to [`claim`], asked for by `actor`,
/// unless a run of this connector and kind is already queued or running (with a live lease):
/// then [`Queued::Busy`] with its id, and nothing is queued. Runs found `running` after their
/// lease passed are marked interrupted, as [`start`] does.
pub fn queue(
    db: &mut Db,
    connector: &str,
    kind: &str,
    dry_run: bool,
    actor: &str,
) -> Result<Queued, DbError> {
    let account = db.account().to_string();
    let tx = db
        .conn_mut()
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let now = now_ms();
    mark_interrupted(&tx, &account, connector, now)?;
    let busy: Option<i64> = tx
        .query_row(
            "SELECT id FROM sync_runs
             WHERE account = ?1 AND connector = ?2 AND kind = ?3
               AND status IN ('queued', 'running')
             ORDER BY id LIMIT 1",
            params![account, connector, kind],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = busy {
        tx.commit()?;
        return Ok(Queued::Busy(id));
    }
    tx.execute(
        "INSERT INTO sync_runs (account, connector, kind, dry_run, started_at, status, actor)
         VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6)",
        params![account, connector, kind, dry_run, db::now(), actor],
    )?;
    let id = tx.last_insert_rowid();
    tx.commit()?;
    Ok(Queued::Queued(id))
}

/// Turns the handle's account's queued run `id` into a running one holding the lease of its
/// connector and kind for `lease` (its `started_at` becomes now). The checks of [`start`]
/// apply: another run of that connector and kind running with a live lease is returned as
/// [`Start::Running`] and this one stays queued. A run that is not queued (another worker
/// claimed it, it ended, or it is not this account's) is [`DbError::NotQueued`].
pub fn claim(db: &mut Db, id: i64, lease: Duration) -> Result<Start, DbError> {
    let account = db.account().to_string();
    let tx = db
        .conn_mut()
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let queued: Option<(String, String)> = tx
        .query_row(
            "SELECT connector, kind FROM sync_runs
             WHERE account = ?1 AND id = ?2 AND status = 'queued'",
            params![account, id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((connector, kind)) = queued else {
        return Err(DbError::NotQueued { id });
    };
    let now = now_ms();
    mark_interrupted(&tx, &account, &connector, now)?;
    if let Some(live) = live_run(&tx, &account, &connector, &kind, Some(id), now)? {
        tx.commit()?;
        return Ok(Start::Running(live));
    }
    let started_at = db::now();
    tx.execute(
        "UPDATE sync_runs SET status = 'running', started_at = ?3, lease_until = ?4
         WHERE account = ?1 AND id = ?2",
        params![account, id, started_at, now + lease.as_millis() as i64],
    )?;
    tx.commit()?;
    Ok(Start::Started(Run { id, started_at }))
}

/// Records how far the handle's account's running run `id` got: pages fetched, of how many
/// when known.
pub fn set_progress(
    db: &Db,
    id: i64,
    pages_done: u32,
    pages_total: Option<u32>,
) -> Result<(), DbError> {
    db.conn().execute(
        "UPDATE sync_runs SET pages_done = ?3, pages_total = ?4
         WHERE account = ?1 AND id = ?2 AND status = 'running'",
        params![db.account(), id, pages_done, pages_total],
    )?;
    Ok(())
}

/// The queued runs of every account, oldest first: (account, id, connector, kind). For a
/// worker pool, which claims each with a handle of its account; `db`'s account does not limit
/// it.
pub fn queued(db: &Db) -> Result<Vec<(String, i64, String, String)>, DbError> {
    let mut stmt = db.conn().prepare(
        "SELECT account, id, connector, kind FROM sync_runs WHERE status = 'queued' ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Renews a run's lease every third of its length from its own thread and connection, until
/// dropped. When the run is no longer `running` (it finished, or another process found the
/// lease lapsed and took over) it stops; applying then refuses to write.
pub struct Heartbeat {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    /// Starts renewing the lease of run `run_id` of `db`'s account, `lease` at a time.
    pub fn start(db: &Db, run_id: i64, lease: Duration) -> Heartbeat {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let path = db.path().to_path_buf();
        let account = db.account().to_string();
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
                        "UPDATE sync_runs SET lease_until = ?3
                         WHERE account = ?1 AND id = ?2 AND status = 'running'",
                        params![account, run_id, now_ms() + lease.as_millis() as i64],
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
    finish_on(db.conn(), db.account(), run_id, status, c, error)
}

/// [`finish`] on a connection (inside a transaction), for `account`'s run.
pub(crate) fn finish_on(
    conn: &Connection,
    account: &str,
    run_id: i64,
    status: &str,
    c: &RunCounts,
    error: Option<String>,
) -> Result<(), DbError> {
    conn.execute(
        "UPDATE sync_runs SET finished_at = ?3, status = ?4, fetched = ?5, linked = ?6,
                skipped = ?7, errored = ?8, new_links = ?9, removed_links = ?10, requests = ?11,
                error = ?12, lease_until = NULL
         WHERE account = ?1 AND id = ?2 AND status = 'running'",
        params![
            account,
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

/// When the handle's account's run `run_id` finished (`None` while it has not).
pub fn finished_at(db: &Db, run_id: i64) -> Result<Option<String>, DbError> {
    Ok(db.conn().query_row(
        "SELECT finished_at FROM sync_runs WHERE account = ?1 AND id = ?2",
        params![db.account(), run_id],
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
    /// When it started (while `queued`: when it was queued).
    pub started_at: String,
    /// When it finished.
    pub finished_at: Option<String>,
    /// `queued`, `running`, `ok` or `failed`.
    pub status: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Until when its lease lasts (unix milliseconds), while it runs.
    pub lease_until: Option<i64>,
    /// Who asked for it (`cli:<user>`, `token:<id>`); `None` when not known (among them runs
    /// recorded before runs kept it).
    pub actor: Option<String>,
    /// Pages fetched so far.
    pub pages_done: i64,
    /// Pages to fetch in all, once known.
    pub pages_total: Option<i64>,
}

impl RunRow {
    /// Whether a `running` run still holds its lease at `now_ms`: its process renews it. A
    /// `running` run without a live lease was interrupted (its process died).
    pub fn holds_lease(&self, now_ms: i64) -> bool {
        self.status == "running" && self.lease_until.is_some_and(|until| until >= now_ms)
    }
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
        actor: r.get("actor")?,
        pages_done: r.get("pages_done")?,
        pages_total: r.get("pages_total")?,
    })
}

/// The handle's account's run `id`, if it has one.
pub fn run(db: &Db, id: i64) -> Result<Option<RunRow>, DbError> {
    Ok(db
        .conn()
        .query_row(
            "SELECT * FROM sync_runs WHERE account = ?1 AND id = ?2",
            params![db.account(), id],
            run_row,
        )
        .optional()?)
}

/// The last non-dry-run run of a kind, if any.
pub fn last_run(db: &Db, connector: &str, kind: &str) -> Result<Option<RunRow>, DbError> {
    Ok(db
        .conn()
        .query_row(
            "SELECT * FROM sync_runs
             WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND dry_run = 0
             ORDER BY id DESC LIMIT 1",
            params![db.account(), connector, kind],
            run_row,
        )
        .optional()?)
}

/// The newest non-dry-run run of a kind that succeeded, if any.
pub fn last_ok_run(db: &Db, connector: &str, kind: &str) -> Result<Option<RunRow>, DbError> {
    Ok(db
        .conn()
        .query_row(
            "SELECT * FROM sync_runs
             WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND dry_run = 0 AND status = 'ok'
             ORDER BY id DESC LIMIT 1",
            params![db.account(), connector, kind],
            run_row,
        )
        .optional()?)
}

/// Recent runs (all kinds), newest first.
pub fn recent_runs(db: &Db, connector: &str, limit: usize) -> Result<Vec<RunRow>, DbError> {
    let mut stmt = db.conn().prepare(
        "SELECT * FROM sync_runs WHERE account = ?1 AND connector = ?2 ORDER BY id DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![db.account(), connector, limit as i64], run_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A connector's sync schedule: a due schedule syncs organizations, then configurations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The connector.
    pub connector: String,
    /// How often it fires.
    pub every: Duration,
    /// When it fires next (unix milliseconds).
    pub next_at_ms: i64,
    /// Who set it.
    pub set_by: String,
}

fn schedule_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Schedule> {
    Ok(Schedule {
        connector: r.get(0)?,
        every: Duration::from_secs(r.get::<_, i64>(1)?.max(1) as u64),
        next_at_ms: r.get(2)?,
        set_by: r.get(3)?,
    })
}

/// Sets (`Some`, in whole seconds, one at least; the first firing one period from now) or
/// removes (`None`) the handle's account's schedule of `connector`, recorded as an event of
/// `actor` in the same transaction. Returns the schedule now in force.
pub fn set_schedule(
    db: &Db,
    connector: &str,
    every: Option<Duration>,
    actor: &str,
) -> Result<Option<Schedule>, DbError> {
    let account = db.account();
    let tx =
        rusqlite::Transaction::new_unchecked(db.conn(), rusqlite::TransactionBehavior::Immediate)?;
    let schedule = match every {
        Some(every) => {
            let secs = every.as_secs().clamp(1, i64::MAX as u64 / 1000) as i64;
            let next_at_ms = now_ms().saturating_add(secs * 1000);
            tx.execute(
                "INSERT INTO schedules (account, connector, every_secs, next_at_ms, set_by)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (account, connector) DO UPDATE SET every_secs = ?3, next_at_ms = ?4,
                     set_by = ?5",
                params![account, connector, secs, next_at_ms, actor],
            )?;
            crate::accounts::insert_event(
                &tx,
                account,
                actor,
                "schedule-set",
                Some(connector),
                Some(&format!("every {secs} s")),
            )?;
            Some(Schedule {
                connector: connector.to_string(),
                every: Duration::from_secs(secs as u64),
                next_at_ms,
                set_by: actor.to_string(),
            })
        }
        None => {
            let removed = tx.execute(
                "DELETE FROM schedules WHERE account = ?1 AND connector = ?2",
                params![account, connector],
            )?;
            if removed > 0 {
                crate::accounts::insert_event(
                    &tx,
                    account,
                    actor,
                    "schedule-removed",
                    Some(connector),
                    None,
                )?;
            }
            None
        }
    };
    tx.commit()?;
    Ok(schedule)
}

/// The handle's account's schedule of `connector`, if one is set.
pub fn schedule(db: &Db, connector: &str) -> Result<Option<Schedule>, DbError> {
    Ok(db
        .conn()
        .query_row(
            "SELECT connector, every_secs, next_at_ms, set_by FROM schedules
             WHERE account = ?1 AND connector = ?2",
            params![db.account(), connector],
            schedule_row,
        )
        .optional()?)
}

/// The schedules of every account due at `now_ms`: (account, connector), oldest due first.
/// In the same transaction, each one's next firing moves past `now_ms` by whole periods, so a
/// schedule fires once per period however often this is called (and once, not once per
/// missed period, after the host was stopped). For a worker pool; `db`'s account does not
/// limit it.
pub fn due_schedules(db: &Db, now_ms: i64) -> Result<Vec<(String, String)>, DbError> {
    let tx =
        rusqlite::Transaction::new_unchecked(db.conn(), rusqlite::TransactionBehavior::Immediate)?;
    let due: Vec<(String, String, i64, i64)> = {
        let mut stmt = tx.prepare(
            "SELECT account, connector, every_secs, next_at_ms FROM schedules
             WHERE next_at_ms <= ?1 ORDER BY next_at_ms, account, connector",
        )?;
        let rows = stmt.query_map([now_ms], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        rows.collect::<Result<_, _>>()?
    };
    for (account, connector, every_secs, next_at_ms) in &due {
        let period = (*every_secs).max(1).saturating_mul(1000);
        let missed = (now_ms - next_at_ms) / period;
        let next = next_at_ms.saturating_add((missed + 1).saturating_mul(period));
        tx.execute(
            "UPDATE schedules SET next_at_ms = ?3 WHERE account = ?1 AND connector = ?2",
            params![account, connector, next],
        )?;
    }
    tx.commit()?;
    Ok(due
        .into_iter()
        .map(|(account, connector, _, _)| (account, connector))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(60);

    fn open(dir: &tempfile::TempDir, account: &str) -> Db {
        Db::open(&dir.path().join("runs.db"), account).unwrap()
    }

    #[test]
    fn a_started_run_keeps_its_actor_and_blocks_another() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = open(&dir, "a");
        let Start::Started(run) = start(
            &mut db,
            "itglue",
            "organization",
            false,
            LEASE,
            Some("cli:alice"),
        )
        .unwrap() else {
            panic!("not started");
        };
        let Start::Running(live) =
            start(&mut db, "itglue", "organization", true, LEASE, None).unwrap()
        else {
            panic!("started twice");
        };
        assert_eq!(live.id, run.id);
        assert!(live.left > Duration::from_secs(50));
        let row = super::run(&db, run.id).unwrap().unwrap();
        assert_eq!(
            (row.status.as_str(), row.actor.as_deref(), row.pages_done),
            ("running", Some("cli:alice"), 0)
        );
        // Another kind is free.
        assert!(matches!(
            start(&mut db, "itglue", "configuration", false, LEASE, None).unwrap(),
            Start::Started(_)
        ));
    }

    #[test]
    fn queue_returns_busy_while_one_is_queued_or_running() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = open(&dir, "a");
        let Queued::Queued(id) =
            queue(&mut db, "itglue", "organization", false, "token:t1").unwrap()
        else {
            panic!("not queued");
        };
        assert_eq!(
            queue(&mut db, "itglue", "organization", true, "token:t2").unwrap(),
            Queued::Busy(id)
        );
        let row = super::run(&db, id).unwrap().unwrap();
        assert_eq!(
            (row.status.as_str(), row.actor.as_deref(), row.lease_until),
            ("queued", Some("token:t1"), None)
        );
        // Another kind, or another account, is not busy.
        assert!(matches!(
            queue(&mut db, "itglue", "configuration", false, "token:t1").unwrap(),
            Queued::Queued(_)
        ));
        let mut other = open(&dir, "b");
        assert!(matches!(
            queue(&mut other, "itglue", "organization", false, "token:t3").unwrap(),
            Queued::Queued(_)
        ));
        // Running, it is still busy; once it ends, a new one queues.
        assert!(matches!(
            claim(&mut db, id, LEASE).unwrap(),
            Start::Started(_)
        ));
        assert_eq!(
            queue(&mut db, "itglue", "organization", false, "token:t2").unwrap(),
            Queued::Busy(id)
        );
        finish(&db, id, "ok", &RunCounts::default(), None).unwrap();
        assert!(matches!(
            queue(&mut db, "itglue", "organization", false, "token:t2").unwrap(),
            Queued::Queued(n) if n != id
        ));
    }

    #[test]
    fn a_run_whose_lease_lapsed_does_not_keep_the_queue_busy() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = open(&dir, "a");
        let Start::Started(run) =
            start(&mut db, "itglue", "organization", false, LEASE, None).unwrap()
        else {
            panic!("not started");
        };
        db.conn()
            .execute(
                "UPDATE sync_runs SET lease_until = 1 WHERE id = ?1",
                [run.id],
            )
            .unwrap();
        assert!(matches!(
            queue(&mut db, "itglue", "organization", false, "token:t1").unwrap(),
            Queued::Queued(_)
        ));
        let row = super::run(&db, run.id).unwrap().unwrap();
        assert_eq!(row.status, "failed");
        assert!(row.error.unwrap().contains("interrupted"));
    }

    #[test]
    fn claiming_turns_a_queued_run_into_a_running_one_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = open(&dir, "a");
        let Queued::Queued(id) =
            queue(&mut db, "itglue", "organization", true, "token:t1").unwrap()
        else {
            panic!("not queued");
        };
        // Not another account's to claim.
        let mut other = open(&dir, "b");
        assert!(matches!(
            claim(&mut other, id, LEASE),
            Err(DbError::NotQueued { .. })
        ));
        // While a command-line run of that kind holds the lease, it waits in the queue.
        let Start::Started(cli) = start(
            &mut db,
            "itglue",
            "organization",
            false,
            LEASE,
            Some("cli:alice"),
        )
        .unwrap() else {
            panic!("the command line's run did not start");
        };
        let Start::Running(live) = claim(&mut db, id, LEASE).unwrap() else {
            panic!("claimed beside a live run");
        };
        assert_eq!(live.id, cli.id);
        assert_eq!(super::run(&db, id).unwrap().unwrap().status, "queued");
        finish(&db, cli.id, "ok", &RunCounts::default(), None).unwrap();
        let Start::Started(run) = claim(&mut db, id, LEASE).unwrap() else {
            panic!("not claimed");
        };
        assert_eq!(run.id, id);
        let row = super::run(&db, id).unwrap().unwrap();
        assert_eq!((row.status.as_str(), row.dry_run), ("running", true));
        assert!(row.lease_until.is_some_and(|t| t > now_ms()));
        // Claimed once only.
        assert!(matches!(
            claim(&mut db, id, LEASE),
            Err(DbError::NotQueued { .. })
        ));
        // Its progress is recorded while it runs.
        set_progress(&db, id, 2, Some(5)).unwrap();
        let row = super::run(&db, id).unwrap().unwrap();
        assert_eq!((row.pages_done, row.pages_total), (2, Some(5)));
        set_progress(&other, id, 4, None).unwrap();
        assert_eq!(
            super::run(&db, id).unwrap().unwrap().pages_done,
            2,
            "b changed a's run"
        );
    }

    #[test]
    fn the_queue_of_every_account_is_listed_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = open(&dir, "a");
        let mut b = open(&dir, "b");
        let ids: Vec<i64> = [
            queue(&mut a, "itglue", "organization", false, "token:1").unwrap(),
            queue(&mut b, "itglue", "configuration", false, "token:2").unwrap(),
            queue(&mut a, "itglue", "configuration", false, "token:1").unwrap(),
        ]
        .into_iter()
        .map(|q| match q {
            Queued::Queued(id) => id,
            Queued::Busy(id) => panic!("busy: {id}"),
        })
        .collect();
        claim(&mut a, ids[2], LEASE).unwrap();
        assert_eq!(
            queued(&a).unwrap(),
            [
                (
                    "a".to_string(),
                    ids[0],
                    "itglue".to_string(),
                    "organization".to_string()
                ),
                (
                    "b".to_string(),
                    ids[1],
                    "itglue".to_string(),
                    "configuration".to_string()
                ),
            ]
        );
    }

    #[test]
    fn schedules_are_set_read_and_removed_per_account() {
        let dir = tempfile::tempdir().unwrap();
        let a = open(&dir, "a");
        let b = open(&dir, "b");
        let before = now_ms();
        let set = set_schedule(
            &a,
            "itglue",
            Some(Duration::from_secs(6 * 3600)),
            "token:t1",
        )
        .unwrap()
        .unwrap();
        assert_eq!(set.every, Duration::from_secs(6 * 3600));
        assert!(set.next_at_ms >= before + 6 * 3600 * 1000);
        assert_eq!(schedule(&a, "itglue").unwrap(), Some(set));
        assert_eq!(schedule(&b, "itglue").unwrap(), None);
        assert_eq!(set_schedule(&b, "itglue", None, "token:t2").unwrap(), None);
        assert!(
            schedule(&a, "itglue").unwrap().is_some(),
            "b removed a's schedule"
        );
        assert_eq!(set_schedule(&a, "itglue", None, "token:t1").unwrap(), None);
        assert_eq!(schedule(&a, "itglue").unwrap(), None);
        let actions: Vec<String> = crate::accounts::events(&a, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(actions, ["schedule-removed", "schedule-set"]);
    }

    #[test]
    fn a_queued_run_that_cannot_start_is_failed_and_a_lapsed_one_is_swept() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = open(&dir, "a");
        let b = open(&dir, "b");
        let Queued::Queued(id) = queue(&mut a, "itglue", "organization", false, "token:t").unwrap()
        else {
            panic!("queued")
        };
        // Another account cannot end it.
        assert!(!fail_queued(&b, id, "no").unwrap());
        assert!(fail_queued(&a, id, "not available").unwrap());
        let run = run(&a, id).unwrap().unwrap();
        assert_eq!(run.status, "failed");
        assert_eq!(run.error.as_deref(), Some("not available"));
        assert!(!fail_queued(&a, id, "again").unwrap(), "only a queued run");
        // A running run whose lease lapsed is swept, in any account.
        let Start::Started(live) = start(
            &mut a,
            "itglue",
            "configuration",
            false,
            Duration::from_millis(1),
            None,
        )
        .unwrap() else {
            panic!("started")
        };
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(sweep_interrupted(&b).unwrap(), 1);
        assert_eq!(super::run(&a, live.id).unwrap().unwrap().status, "failed");
        assert_eq!(sweep_interrupted(&b).unwrap(), 0);
    }

    #[test]
    fn due_schedules_fire_once_per_period_even_if_called_twice() {
        let dir = tempfile::tempdir().unwrap();
        let a = open(&dir, "a");
        let b = open(&dir, "b");
        let hour = Duration::from_secs(3600);
        let first = set_schedule(&a, "itglue", Some(hour), "token:t1")
            .unwrap()
            .unwrap()
            .next_at_ms;
        set_schedule(&b, "itglue", Some(hour * 2), "token:t2").unwrap();
        assert!(
            due_schedules(&a, first - 1).unwrap().is_empty(),
            "due early"
        );
        let due = due_schedules(&a, first).unwrap();
        assert_eq!(due, [("a".to_string(), "itglue".to_string())]);
        // Called again (by another replica, say) within the period: nothing.
        assert!(due_schedules(&b, first + 1).unwrap().is_empty());
        let next = schedule(&a, "itglue").unwrap().unwrap().next_at_ms;
        assert_eq!(next, first + 3_600_000);
        // After a long stop it fires once, and its next firing keeps its phase.
        let much_later = first + 10 * 3_600_000 + 5;
        let due = due_schedules(&a, much_later).unwrap();
        assert_eq!(due.len(), 2, "{due:?}");
        assert!(due_schedules(&a, much_later).unwrap().is_empty());
        assert_eq!(
            schedule(&a, "itglue").unwrap().unwrap().next_at_ms,
            first + 11 * 3_600_000
        );
    }
}

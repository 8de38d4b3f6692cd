//! Sync runs (`sync_runs`): queueing one, starting or claiming it under the lease of its
//! connector and kind, renewing the lease, recording its progress and end, and reading runs;
//! and the schedules that queue them. Rows are those of the handle's account, except where a
//! function says it serves every account (a worker pool's).
//!
//! Every function runs on SQLite and on PostgreSQL. Checking and writing a lease happen in one
//! transaction: SQLite's holds the write lock from the start, and on PostgreSQL each one first
//! takes the lock of the run's account, connector and kind, so that replicas doing the same
//! check wait for each other.

use crate::db::{self, DbError};
use crate::handle::Db;
use crate::sql::{Row, Sql};
use crate::values;
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
    /// Which claim of a queued run this is (1 for the first worker to claim it, 2 for the
    /// one that took it over after the first's lease lapsed, ...); 0 for a run started
    /// directly ([`start`]).
    pub attempt: i64,
}

impl Run {
    /// The run as its holder names it when it renews, applies or ends it.
    pub fn held(&self) -> Held {
        Held {
            id: self.id,
            attempt: self.attempt,
        }
    }
}

/// A run as held by one process: its id, and which claim of it this is, the fencing token.
/// A process whose lease lapsed while another took the run over holds an older attempt: its
/// renewals, its apply and its end change nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The run's row id.
    pub id: i64,
    /// The claim ([`Run::attempt`]).
    pub attempt: i64,
}

/// How many times a queued run is claimed before a lapse ends it failed: a run whose every
/// claim dies (a sync that crashes its process) does not go round the replicas for ever.
pub const MAX_ATTEMPTS: i64 = 3;

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

/// How the message of a run interrupted on each of its claims starts.
const INTERRUPTED_PREFIX: &str = "interrupted";

/// The lock (PostgreSQL's; SQLite's write lock stands for it) that starting, queueing and
/// claiming a run of `account`'s `connector` and `kind` hold while they check and write.
fn run_lock(account: &str, connector: &str, kind: &str) -> String {
    format!("run/{account}/{connector}/{kind}")
}

/// Deals with the `running` runs of `account`'s `connector` whose lease has passed (their
/// process died, or stopped renewing): see [`rescue_lapsed`].
fn mark_interrupted(tx: &dyn Sql, account: &str, connector: &str, now: i64) -> Result<(), DbError> {
    rescue_lapsed(tx, Some((account, connector)), now)?;
    Ok(())
}

/// The `running` runs (of `scope`'s account and connector, or of every account) whose lease
/// passed before `now`. A queued run a worker claimed goes back to the queue, to be run again
/// from the start by whichever replica claims it next (its old holder applies nothing: its
/// attempt is no longer the run's), unless it was claimed [`MAX_ATTEMPTS`] times; that one,
/// and a run started directly (the command line's, whose process is gone), end failed,
/// interrupted. Returns (taken back to the queue, ended).
fn rescue_lapsed(
    sql: &dyn Sql,
    scope: Option<(&str, &str)>,
    now: i64,
) -> Result<(usize, usize), DbError> {
    let (account, connector) = scope.unzip();
    let lapsed = "status = 'running' AND (lease_until IS NULL OR lease_until < ?1)
                  AND (CAST(?2 AS TEXT) IS NULL
                       OR (account = CAST(?2 AS TEXT) AND connector = CAST(?3 AS TEXT)))";
    let requeued = sql.execute(
        &format!(
            "UPDATE sync_runs SET status = 'queued', lease_until = NULL, pages_done = 0,
                    pages_total = NULL
             WHERE {lapsed} AND attempt BETWEEN 1 AND ?4"
        ),
        &values![now, account, connector, MAX_ATTEMPTS - 1],
    )?;
    let ended = sql.execute(
        &format!(
            "UPDATE sync_runs SET status = 'failed',
                    error = CASE WHEN attempt = 0 THEN ?4 ELSE ?5 END,
                    finished_at = coalesce(finished_at, started_at), lease_until = NULL
             WHERE {lapsed}"
        ),
        &values![
            now,
            account,
            connector,
            INTERRUPTED,
            format!("{INTERRUPTED_PREFIX} {MAX_ATTEMPTS} times (each process running it stopped renewing its lease); nothing was applied")
        ],
    )?;
    Ok((requeued as usize, ended as usize))
}

/// Takes every `running` run of every account whose lease has lapsed back to the queue, or
/// ends it failed ([`rescue_lapsed`]), so that another replica runs it and no reader waits
/// on a dead one. An operator-level sweep: `db`'s account does not limit it. Returns (taken
/// back to the queue, ended).
pub fn sweep_interrupted(db: &Db) -> Result<(usize, usize), DbError> {
    rescue_lapsed(db.sql(), None, db.sql().clock_ms()?)
}

/// Ends the handle's account's queued run `id` as failed with `error`, when it could not be
/// claimed at all (the account lost the feature, or the host could not start it). Returns
/// whether it was still queued.
pub fn fail_queued(db: &Db, id: i64, error: &str) -> Result<bool, DbError> {
    Ok(db.sql().execute(
        "UPDATE sync_runs SET status = 'failed', error = ?3, finished_at = ?4, lease_until = NULL
         WHERE account = ?1 AND id = ?2 AND status = 'queued'",
        &values![db.account(), id, error, db::now()],
    )? > 0)
}

/// The oldest run of `account`'s `connector` and `kind` that is `running` (after
/// [`mark_interrupted`], its lease is live), other than `except`.
fn live_run(
    tx: &dyn Sql,
    account: &str,
    connector: &str,
    kind: &str,
    except: Option<i64>,
    now: i64,
) -> Result<Option<LiveRun>, DbError> {
    let Some(row) = tx.query_opt(
        "SELECT id, started_at, lease_until, dry_run FROM sync_runs
         WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND status = 'running'
           AND id IS DISTINCT FROM ?4
         ORDER BY id LIMIT 1",
        &values![account, connector, kind, except],
    )?
    else {
        return Ok(None);
    };
    Ok(Some(LiveRun {
        id: row.int(0)?,
        started_at: row.text(1)?,
        dry_run: row.int(3)? != 0,
        left: Duration::from_millis((row.int(2)? - now).max(0) as u64),
    }))
}

/// Unix milliseconds `lease` after `now`.
fn lease_end(now: i64, lease: Duration) -> i64 {
    now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX))
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
    let tx = db.begin()?;
    tx.lock(&run_lock(&account, connector, kind))?;
    // After the lock: waiting for it may have taken a while.
    let now = tx.clock_ms()?;
    mark_interrupted(&tx, &account, connector, now)?;
    if let Some(live) = live_run(&tx, &account, connector, kind, None, now)? {
        // The expired runs marked above stay marked.
        tx.commit()?;
        return Ok(Start::Running(live));
    }
    let started_at = db::now();
    let id = tx
        .query_one(
            "INSERT INTO sync_runs (account, connector, kind, dry_run, started_at, status,
                                   lease_until, actor)
             VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6, ?7)
             RETURNING id",
            &values![
                &account,
                connector,
                kind,
                dry_run,
                &started_at,
                lease_end(now, lease),
                actor
            ],
        )?
        .int(0)?;
    tx.commit()?;
    Ok(Start::Started(Run {
        id,
        started_at,
        attempt: 0,
    }))
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
    let tx = db.begin()?;
    tx.lock(&run_lock(&account, connector, kind))?;
    let now = tx.clock_ms()?;
    mark_interrupted(&tx, &account, connector, now)?;
    let busy = tx.query_opt(
        "SELECT id FROM sync_runs
         WHERE account = ?1 AND connector = ?2 AND kind = ?3
           AND status IN ('queued', 'running')
         ORDER BY id LIMIT 1",
        &values![&account, connector, kind],
    )?;
    if let Some(row) = busy {
        let id = row.int(0)?;
        tx.commit()?;
        return Ok(Queued::Busy(id));
    }
    let id = tx
        .query_one(
            "INSERT INTO sync_runs (account, connector, kind, dry_run, started_at, status, actor)
             VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6)
             RETURNING id",
            &values![&account, connector, kind, dry_run, db::now(), actor],
        )?
        .int(0)?;
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
    let tx = db.begin()?;
    let queued = |tx: &dyn Sql| -> Result<Option<(String, String)>, DbError> {
        tx.query_opt(
            "SELECT connector, kind FROM sync_runs
             WHERE account = ?1 AND id = ?2 AND status = 'queued'",
            &values![&account, id],
        )?
        .map(|r| Ok((r.text(0)?, r.text(1)?)))
        .transpose()
    };
    // The lock is the run's connector and kind's, so they are read first; whether it is still
    // queued is known only once the lock is held (another worker may have claimed it while
    // this one waited).
    let Some((connector, kind)) = queued(&tx)? else {
        return Err(DbError::NotQueued { id });
    };
    tx.lock(&run_lock(&account, &connector, &kind))?;
    if queued(&tx)?.is_none() {
        return Err(DbError::NotQueued { id });
    }
    let now = tx.clock_ms()?;
    mark_interrupted(&tx, &account, &connector, now)?;
    if let Some(live) = live_run(&tx, &account, &connector, &kind, Some(id), now)? {
        tx.commit()?;
        return Ok(Start::Running(live));
    }
    let started_at = db::now();
    let claimed = tx.query_opt(
        "UPDATE sync_runs SET status = 'running', started_at = ?3, lease_until = ?4,
                attempt = attempt + 1
         WHERE account = ?1 AND id = ?2 AND status = 'queued'
         RETURNING attempt",
        &values![&account, id, &started_at, lease_end(now, lease)],
    )?;
    let Some(claimed) = claimed else {
        return Err(DbError::NotQueued { id });
    };
    let attempt = claimed.int(0)?;
    tx.commit()?;
    Ok(Start::Started(Run {
        id,
        started_at,
        attempt,
    }))
}

/// Records how far the handle's account's running run `id` got: pages fetched, of how many
/// when known.
pub fn set_progress(
    db: &Db,
    run: Held,
    pages_done: u32,
    pages_total: Option<u32>,
) -> Result<(), DbError> {
    db.sql().execute(
        "UPDATE sync_runs SET pages_done = ?3, pages_total = ?4
         WHERE account = ?1 AND id = ?2 AND attempt = ?5 AND status = 'running'",
        &values![db.account(), run.id, pages_done, pages_total, run.attempt],
    )?;
    Ok(())
}

/// The queued runs of every account, oldest first: (account, id, connector, kind). For a
/// worker pool, which claims each with a handle of its account; `db`'s account does not limit
/// it.
pub fn queued(db: &Db) -> Result<Vec<(String, i64, String, String)>, DbError> {
    db.sql()
        .query(
            "SELECT account, id, connector, kind FROM sync_runs WHERE status = 'queued'
             ORDER BY id",
            &[],
        )?
        .iter()
        .map(|r| Ok((r.text(0)?, r.int(1)?, r.text(2)?, r.text(3)?)))
        .collect()
}

/// Renews a run's lease every third of its length from its own thread and connection, until
/// dropped. When the run is no longer `running` (it finished, or another process found the
/// lease lapsed and took over) it stops; applying then refuses to write.
pub struct Heartbeat {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    /// Starts renewing the lease of `run` of `db`'s account, `lease` at a time, on a handle
    /// of its own ([`Db::sibling`]).
    pub fn start(db: &Db, run: Held, lease: Duration) -> Heartbeat {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let own = db
            .sibling()
            .map_err(|e| tracing::error!("cannot renew the sync's lease: {e}"))
            .ok();
        let thread = own.and_then(|own| {
            std::thread::Builder::new()
                .name("sync-lease".into())
                .spawn(move || renew_until_stopped(&own, run, lease, &stopped))
                .map_err(|e| tracing::error!("cannot start the sync's lease renewal: {e}"))
                .ok()
        });
        Heartbeat {
            stop: Some(stop),
            thread,
        }
    }
}

/// The [`Heartbeat`]'s thread: renews every third of `lease` until told to stop (or the
/// sender is dropped) or the run is no longer `running`.
fn renew_until_stopped(
    db: &Db,
    run: Held,
    lease: Duration,
    stopped: &std::sync::mpsc::Receiver<()>,
) {
    let every = lease / 3;
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
        let renewed = db.sql().clock_ms().and_then(|now| {
            db.sql().execute(
                "UPDATE sync_runs SET lease_until = ?3
             WHERE account = ?1 AND id = ?2 AND attempt = ?4 AND status = 'running'",
                &values![db.account(), run.id, lease_end(now, lease), run.attempt],
            )
        });
        match renewed {
            Ok(0) => return,
            Ok(_) => {}
            // Tried again at the next beat; the lease outlasts two missed ones.
            Err(e) => tracing::warn!("cannot renew the sync's lease: {e}"),
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
///
/// One statement whose condition is checked on the row as it stands when written (on
/// PostgreSQL, after waiting for any transaction changing it): a run marked interrupted is
/// never recorded as ended by its old holder, whatever runs at the same time.
pub fn finish(
    db: &Db,
    run: Held,
    status: &str,
    c: &RunCounts,
    error: Option<String>,
) -> Result<(), DbError> {
    record_end(db.sql(), db.account(), run, status, c, error)?;
    Ok(())
}

/// [`finish`] inside a transaction (the apply's), for `account`'s run; the fencing check of
/// the transaction's writes: a run that is no longer `running` (another process marked it
/// interrupted after its lease lapsed) is an error, so that the transaction is not committed.
pub(crate) fn finish_on(
    tx: &dyn Sql,
    account: &str,
    run: Held,
    status: &str,
    c: &RunCounts,
    error: Option<String>,
) -> Result<(), DbError> {
    if record_end(tx, account, run, status, c, error)? {
        Ok(())
    } else {
        Err(DbError::Sql(format!(
            "sync run {} no longer holds its lease (another process took it over or marked it interrupted); its end was not recorded",
            run.id
        )))
    }
}

/// Writes a run's end if it is still `running`; returns whether it was.
fn record_end(
    sql: &dyn Sql,
    account: &str,
    run: Held,
    status: &str,
    c: &RunCounts,
    error: Option<String>,
) -> Result<bool, DbError> {
    let changed = sql.execute(
        "UPDATE sync_runs SET finished_at = ?3, status = ?4, fetched = ?5, linked = ?6,
                skipped = ?7, errored = ?8, new_links = ?9, removed_links = ?10, requests = ?11,
                error = ?12, lease_until = NULL
         WHERE account = ?1 AND id = ?2 AND attempt = ?13 AND status = 'running'",
        &values![
            account,
            run.id,
            db::now(),
            status,
            c.fetched as i64,
            c.linked as i64,
            c.skipped as i64,
            c.errored as i64,
            c.new_links as i64,
            c.removed_links as i64,
            c.requests as i64,
            error,
            run.attempt
        ],
    )?;
    Ok(changed > 0)
}

/// When the handle's account's run `run_id` finished (`None` while it has not). A run the
/// account does not have is an error.
pub fn finished_at(db: &Db, run_id: i64) -> Result<Option<String>, DbError> {
    db.sql()
        .query_opt(
            "SELECT finished_at FROM sync_runs WHERE account = ?1 AND id = ?2",
            &values![db.account(), run_id],
        )?
        .ok_or_else(|| DbError::Sql(format!("no sync run {run_id}")))?
        .opt_text(0)
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
    /// How many times a worker claimed it ([`Run::attempt`]): more than 1 when another
    /// replica took it over.
    pub attempt: i64,
}

impl RunRow {
    /// Whether a `running` run still holds its lease at `now_ms`: its process renews it. A
    /// `running` run without a live lease was interrupted (its process died).
    pub fn holds_lease(&self, now_ms: i64) -> bool {
        self.status == "running" && self.lease_until.is_some_and(|until| until >= now_ms)
    }
}

/// The columns [`run_row`] reads, in its order.
const RUN_COLUMNS: &str = "id, kind, fetched, linked, skipped, errored, new_links, removed_links,
    requests, dry_run, started_at, finished_at, status, error, lease_until, actor, pages_done,
    pages_total, attempt";

fn run_row(r: &Row) -> Result<RunRow, DbError> {
    Ok(RunRow {
        id: r.int(0)?,
        kind: r.text(1)?,
        fetched: r.int(2)?,
        linked: r.int(3)?,
        skipped: r.int(4)?,
        errored: r.int(5)?,
        new_links: r.int(6)?,
        removed_links: r.int(7)?,
        requests: r.int(8)?,
        dry_run: r.int(9)? != 0,
        started_at: r.text(10)?,
        finished_at: r.opt_text(11)?,
        status: r.text(12)?,
        error: r.opt_text(13)?,
        lease_until: r.opt_int(14)?,
        actor: r.opt_text(15)?,
        pages_done: r.int(16)?,
        pages_total: r.opt_int(17)?,
        attempt: r.int(18)?,
    })
}

/// The handle's account's run `id`, if it has one.
pub fn run(db: &Db, id: i64) -> Result<Option<RunRow>, DbError> {
    db.sql()
        .query_opt(
            &format!("SELECT {RUN_COLUMNS} FROM sync_runs WHERE account = ?1 AND id = ?2"),
            &values![db.account(), id],
        )?
        .as_ref()
        .map(run_row)
        .transpose()
}

/// The last non-dry-run run of a kind, if any.
pub fn last_run(db: &Db, connector: &str, kind: &str) -> Result<Option<RunRow>, DbError> {
    db.sql()
        .query_opt(
            &format!(
                "SELECT {RUN_COLUMNS} FROM sync_runs
                 WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND dry_run = 0
                 ORDER BY id DESC LIMIT 1"
            ),
            &values![db.account(), connector, kind],
        )?
        .as_ref()
        .map(run_row)
        .transpose()
}

/// The newest non-dry-run run of a kind that succeeded, if any.
pub fn last_ok_run(db: &Db, connector: &str, kind: &str) -> Result<Option<RunRow>, DbError> {
    db.sql()
        .query_opt(
            &format!(
                "SELECT {RUN_COLUMNS} FROM sync_runs
                 WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND dry_run = 0
                   AND status = 'ok'
                 ORDER BY id DESC LIMIT 1"
            ),
            &values![db.account(), connector, kind],
        )?
        .as_ref()
        .map(run_row)
        .transpose()
}

/// Recent runs (all kinds), newest first.
pub fn recent_runs(db: &Db, connector: &str, limit: usize) -> Result<Vec<RunRow>, DbError> {
    db.sql()
        .query(
            &format!(
                "SELECT {RUN_COLUMNS} FROM sync_runs WHERE account = ?1 AND connector = ?2
                 ORDER BY id DESC LIMIT ?3"
            ),
            &values![
                db.account(),
                connector,
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
        )?
        .iter()
        .map(run_row)
        .collect()
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

fn schedule_row(r: &Row) -> Result<Schedule, DbError> {
    Ok(Schedule {
        connector: r.text(0)?,
        every: Duration::from_secs(r.int(1)?.max(1) as u64),
        next_at_ms: r.int(2)?,
        set_by: r.text(3)?,
    })
}

/// Sets (`Some`, in whole seconds, one at least; the first firing one period from now) or
/// removes (`None`) the handle's account's schedule of `connector`, recorded as an event of
/// `actor` in the same transaction. Returns the schedule now in force. The transaction runs
/// on a handle of its own ([`Db::sibling`]), holding the schedule's lock on PostgreSQL.
pub fn set_schedule(
    db: &Db,
    connector: &str,
    every: Option<Duration>,
    actor: &str,
) -> Result<Option<Schedule>, DbError> {
    let account = db.account();
    let mut own = db.sibling()?;
    let tx = own.begin()?;
    tx.lock(&format!("schedule/{account}/{connector}"))?;
    let schedule = match every {
        Some(every) => {
            let secs = every.as_secs().clamp(1, i64::MAX as u64 / 1000) as i64;
            let next_at_ms = now_ms().saturating_add(secs * 1000);
            tx.execute(
                "INSERT INTO schedules (account, connector, every_secs, next_at_ms, set_by)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (account, connector) DO UPDATE SET every_secs = excluded.every_secs,
                     next_at_ms = excluded.next_at_ms, set_by = excluded.set_by",
                &values![account, connector, secs, next_at_ms, actor],
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
                &values![account, connector],
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
    db.sql()
        .query_opt(
            "SELECT connector, every_secs, next_at_ms, set_by FROM schedules
             WHERE account = ?1 AND connector = ?2",
            &values![db.account(), connector],
        )?
        .as_ref()
        .map(schedule_row)
        .transpose()
}

/// The schedules of every account due at `now_ms`: (account, connector), oldest due first.
/// Each one's next firing moves past `now_ms` by whole periods, so a schedule fires once per
/// period however often, and by however many replicas at once, this is called (and once, not
/// once per missed period, after the host was stopped). For a worker pool; `db`'s account does
/// not limit it.
pub fn due_schedules(db: &Db, now_ms: i64) -> Result<Vec<(String, String)>, DbError> {
    let due = db.sql().query(
        "SELECT account, connector, every_secs, next_at_ms FROM schedules
         WHERE next_at_ms <= ?1 ORDER BY next_at_ms, account, connector",
        &values![now_ms],
    )?;
    let mut fired = Vec::with_capacity(due.len());
    for row in &due {
        let (account, connector) = (row.text(0)?, row.text(1)?);
        let (every_secs, next_at_ms) = (row.int(2)?, row.int(3)?);
        let period = every_secs.max(1).saturating_mul(1000);
        let missed = (now_ms - next_at_ms) / period;
        let next = next_at_ms.saturating_add((missed + 1).saturating_mul(period));
        // Moved only from the firing read above: of callers reading the same one, the first
        // to move it fires it; a schedule changed or removed meanwhile does not fire.
        let moved = db.sql().execute(
            "UPDATE schedules SET next_at_ms = ?3
             WHERE account = ?1 AND connector = ?2 AND next_at_ms = ?4 AND every_secs = ?5",
            &values![&account, &connector, next, next_at_ms, every_secs],
        )?;
        if moved > 0 {
            fired.push((account, connector));
        }
    }
    Ok(fired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::databases;
    use std::collections::{BTreeMap, BTreeSet};

    /// Run `id` as its current holder names it.
    fn held(db: &Db, id: i64) -> Held {
        let attempt = run(db, id).unwrap().unwrap().attempt;
        Held { id, attempt }
    }
    use std::sync::{Barrier, Mutex};

    const LEASE: Duration = Duration::from_secs(60);

    /// The actions of `db`'s account's events, newest first.
    fn event_actions(db: &Db) -> Vec<String> {
        db.sql()
            .query(
                "SELECT action FROM events WHERE account = ?1 ORDER BY id DESC",
                &values![db.account()],
            )
            .unwrap()
            .iter()
            .map(|r| r.text(0).unwrap())
            .collect()
    }

    #[test]
    fn a_started_run_keeps_its_actor_and_blocks_another() {
        for t in databases("runs_start") {
            let mut db = t.open("a");
            let Start::Started(run) = start(
                &mut db,
                "itglue",
                "organization",
                false,
                LEASE,
                Some("cli:alice"),
            )
            .unwrap() else {
                panic!("{}: not started", t.name);
            };
            let Start::Running(live) =
                start(&mut db, "itglue", "organization", true, LEASE, None).unwrap()
            else {
                panic!("{}: started twice", t.name);
            };
            assert_eq!(live.id, run.id, "{}", t.name);
            assert!(!live.dry_run, "{}", t.name);
            assert!(live.left > Duration::from_secs(50), "{}", t.name);
            let row = super::run(&db, run.id).unwrap().unwrap();
            assert_eq!(
                (row.status.as_str(), row.actor.as_deref(), row.pages_done),
                ("running", Some("cli:alice"), 0),
                "{}",
                t.name
            );
            assert_eq!(row.started_at, run.started_at, "{}", t.name);
            // Another kind is free.
            assert!(
                matches!(
                    start(&mut db, "itglue", "configuration", false, LEASE, None).unwrap(),
                    Start::Started(_)
                ),
                "{}",
                t.name
            );
        }
    }

    #[test]
    fn queue_returns_busy_while_one_is_queued_or_running() {
        for t in databases("runs_queue") {
            let mut db = t.open("a");
            let Queued::Queued(id) =
                queue(&mut db, "itglue", "organization", false, "token:t1").unwrap()
            else {
                panic!("{}: not queued", t.name);
            };
            assert_eq!(
                queue(&mut db, "itglue", "organization", true, "token:t2").unwrap(),
                Queued::Busy(id),
                "{}",
                t.name
            );
            let row = super::run(&db, id).unwrap().unwrap();
            assert_eq!(
                (row.status.as_str(), row.actor.as_deref(), row.lease_until),
                ("queued", Some("token:t1"), None),
                "{}",
                t.name
            );
            // Another kind, or another account, is not busy.
            assert!(
                matches!(
                    queue(&mut db, "itglue", "configuration", false, "token:t1").unwrap(),
                    Queued::Queued(_)
                ),
                "{}",
                t.name
            );
            let mut other = t.open("b");
            assert!(
                matches!(
                    queue(&mut other, "itglue", "organization", false, "token:t3").unwrap(),
                    Queued::Queued(_)
                ),
                "{}",
                t.name
            );
            // Running, it is still busy; once it ends, a new one queues.
            assert!(
                matches!(claim(&mut db, id, LEASE).unwrap(), Start::Started(_)),
                "{}",
                t.name
            );
            assert_eq!(
                queue(&mut db, "itglue", "organization", false, "token:t2").unwrap(),
                Queued::Busy(id),
                "{}",
                t.name
            );
            finish(&db, held(&db, id), "ok", &RunCounts::default(), None).unwrap();
            assert!(
                matches!(
                    queue(&mut db, "itglue", "organization", false, "token:t2").unwrap(),
                    Queued::Queued(n) if n != id
                ),
                "{}",
                t.name
            );
        }
    }

    #[test]
    fn a_run_whose_lease_lapsed_does_not_keep_the_queue_busy() {
        for t in databases("runs_lapsed") {
            let mut db = t.open("a");
            let Start::Started(run) =
                start(&mut db, "itglue", "organization", false, LEASE, None).unwrap()
            else {
                panic!("{}: not started", t.name);
            };
            db.sql()
                .execute(
                    "UPDATE sync_runs SET lease_until = 1 WHERE id = ?1",
                    &values![run.id],
                )
                .unwrap();
            assert!(
                matches!(
                    queue(&mut db, "itglue", "organization", false, "token:t1").unwrap(),
                    Queued::Queued(_)
                ),
                "{}",
                t.name
            );
            let row = super::run(&db, run.id).unwrap().unwrap();
            assert_eq!(row.status, "failed", "{}", t.name);
            assert!(row.error.unwrap().contains("interrupted"), "{}", t.name);
            assert_eq!(row.finished_at.as_deref(), Some(run.started_at.as_str()));
        }
    }

    #[test]
    fn a_run_taken_over_is_not_finished_by_its_old_holder() {
        for t in databases("runs_fence") {
            let mut old = t.open("a");
            let mut new = t.open("a");
            let Start::Started(run) =
                start(&mut old, "itglue", "organization", false, LEASE, None).unwrap()
            else {
                panic!("{}: not started", t.name);
            };
            // Its process stalls past its lease; another one takes the kind over.
            old.sql()
                .execute(
                    "UPDATE sync_runs SET lease_until = 1 WHERE id = ?1",
                    &values![run.id],
                )
                .unwrap();
            let Start::Started(taken) =
                start(&mut new, "itglue", "organization", false, LEASE, None).unwrap()
            else {
                panic!("{}: not taken over", t.name);
            };
            let counts = RunCounts {
                fetched: 9,
                ..RunCounts::default()
            };
            // The old holder's end is not recorded...
            finish(&old, run.held(), "ok", &counts, None).unwrap();
            let row = super::run(&old, run.id).unwrap().unwrap();
            assert_eq!(
                (row.status.as_str(), row.fetched),
                ("failed", 0),
                "{}",
                t.name
            );
            assert!(row.error.unwrap().contains("interrupted"), "{}", t.name);
            // ...and inside a transaction it is an error, so the transaction is not committed.
            let tx = old.begin().unwrap();
            let fenced = finish_on(&tx, "a", run.held(), "ok", &counts, None);
            assert!(
                fenced.is_err_and(|e| e.to_string().contains("no longer holds its lease")),
                "{}",
                t.name
            );
            drop(tx);
            // The run holding the lease finishes, inside a transaction as an apply does.
            let tx = new.begin().unwrap();
            finish_on(&tx, "a", taken.held(), "ok", &counts, None).unwrap();
            tx.commit().unwrap();
            let row = super::run(&new, taken.id).unwrap().unwrap();
            assert_eq!(
                (row.status.as_str(), row.fetched, row.lease_until),
                ("ok", 9, None),
                "{}",
                t.name
            );
            assert_eq!(
                finished_at(&new, taken.id).unwrap(),
                row.finished_at,
                "{}",
                t.name
            );
            assert!(row.finished_at.is_some(), "{}", t.name);
            // Another account's handle records nothing on it.
            let b = t.open("b");
            finish(&b, taken.held(), "failed", &RunCounts::default(), None).unwrap();
            assert_eq!(super::run(&new, taken.id).unwrap().unwrap().status, "ok");
            assert!(finished_at(&b, taken.id).is_err(), "{}", t.name);
        }
    }

    #[test]
    fn a_lapsed_claim_goes_back_to_the_queue_and_its_old_holder_changes_nothing() {
        for t in databases("runs_rescue") {
            let mut first = t.open("a");
            let mut second = t.open("a");
            let Queued::Queued(id) =
                queue(&mut first, "itglue", "organization", false, "token:t").unwrap()
            else {
                panic!("{}: queued", t.name)
            };
            let lapse = |db: &Db| {
                db.sql()
                    .execute(
                        "UPDATE sync_runs SET lease_until = 1 WHERE id = ?1",
                        &values![id],
                    )
                    .unwrap();
            };
            let Start::Started(old) = claim(&mut first, id, LEASE).unwrap() else {
                panic!("{}: claimed", t.name)
            };
            assert_eq!(old.attempt, 1, "{}", t.name);
            set_progress(&first, old.held(), 3, Some(9)).unwrap();
            // The first holder's process stalls past its lease; a sweep takes the run back.
            lapse(&first);
            assert_eq!(sweep_interrupted(&second).unwrap(), (1, 0), "{}", t.name);
            let row = run(&second, id).unwrap().unwrap();
            assert_eq!(
                (row.status.as_str(), row.pages_done, row.lease_until),
                ("queued", 0, None),
                "{}",
                t.name
            );
            // Queueing the kind again finds it: one run, not two.
            assert_eq!(
                queue(&mut second, "itglue", "organization", false, "token:t").unwrap(),
                Queued::Busy(id),
                "{}",
                t.name
            );
            let Start::Started(new) = claim(&mut second, id, LEASE).unwrap() else {
                panic!("{}: claimed again", t.name)
            };
            assert_eq!((new.id, new.attempt), (id, 2), "{}", t.name);
            // The old holder wakes up: its progress, its end and its apply's fencing check
            // change nothing.
            set_progress(&first, old.held(), 8, Some(9)).unwrap();
            finish(&first, old.held(), "failed", &RunCounts::default(), None).unwrap();
            {
                let tx = first.begin().unwrap();
                assert!(
                    finish_on(&tx, "a", old.held(), "ok", &RunCounts::default(), None).is_err(),
                    "{}",
                    t.name
                );
            }
            let row = run(&second, id).unwrap().unwrap();
            assert_eq!(
                (row.status.as_str(), row.pages_done, row.attempt),
                ("running", 0, 2),
                "{}",
                t.name
            );
            finish(&second, new.held(), "ok", &RunCounts::default(), None).unwrap();
            assert_eq!(run(&first, id).unwrap().unwrap().status, "ok", "{}", t.name);
        }
    }

    #[test]
    fn a_run_whose_every_claim_lapses_ends_failed() {
        for t in databases("runs_rescue_limit") {
            let mut db = t.open("a");
            let Queued::Queued(id) =
                queue(&mut db, "itglue", "configuration", false, "schedule").unwrap()
            else {
                panic!("{}: queued", t.name)
            };
            for attempt in 1..=MAX_ATTEMPTS {
                let Start::Started(run) = claim(&mut db, id, LEASE).unwrap() else {
                    panic!("{}: claim {attempt}", t.name)
                };
                assert_eq!(run.attempt, attempt, "{}", t.name);
                db.sql()
                    .execute(
                        "UPDATE sync_runs SET lease_until = 1 WHERE id = ?1",
                        &values![id],
                    )
                    .unwrap();
                let swept = sweep_interrupted(&db).unwrap();
                let expected = if attempt < MAX_ATTEMPTS {
                    (1, 0)
                } else {
                    (0, 1)
                };
                assert_eq!(swept, expected, "{}: claim {attempt}", t.name);
            }
            let row = run(&db, id).unwrap().unwrap();
            assert_eq!(row.status, "failed", "{}", t.name);
            assert!(
                row.error.as_deref().is_some_and(|e| e.contains("3 times")),
                "{}: {:?}",
                t.name,
                row.error
            );
        }
    }

    #[test]
    fn claiming_turns_a_queued_run_into_a_running_one_once() {
        for t in databases("runs_claim") {
            let mut db = t.open("a");
            let Queued::Queued(id) =
                queue(&mut db, "itglue", "organization", true, "token:t1").unwrap()
            else {
                panic!("{}: not queued", t.name);
            };
            // Not another account's to claim.
            let mut other = t.open("b");
            assert!(
                matches!(claim(&mut other, id, LEASE), Err(DbError::NotQueued { .. })),
                "{}",
                t.name
            );
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
                panic!("{}: the command line's run did not start", t.name);
            };
            let Start::Running(live) = claim(&mut db, id, LEASE).unwrap() else {
                panic!("{}: claimed beside a live run", t.name);
            };
            assert_eq!(live.id, cli.id, "{}", t.name);
            assert_eq!(super::run(&db, id).unwrap().unwrap().status, "queued");
            finish(&db, cli.held(), "ok", &RunCounts::default(), None).unwrap();
            let Start::Started(run) = claim(&mut db, id, LEASE).unwrap() else {
                panic!("{}: not claimed", t.name);
            };
            assert_eq!(run.id, id, "{}", t.name);
            let row = super::run(&db, id).unwrap().unwrap();
            assert_eq!(
                (row.status.as_str(), row.dry_run),
                ("running", true),
                "{}",
                t.name
            );
            assert!(row.lease_until.is_some_and(|t| t > now_ms()), "{}", t.name);
            // Claimed once only.
            assert!(
                matches!(claim(&mut db, id, LEASE), Err(DbError::NotQueued { .. })),
                "{}",
                t.name
            );
            // Its progress is recorded while it runs.
            set_progress(&db, held(&db, id), 2, Some(5)).unwrap();
            let row = super::run(&db, id).unwrap().unwrap();
            assert_eq!(
                (row.pages_done, row.pages_total),
                (2, Some(5)),
                "{}",
                t.name
            );
            set_progress(&other, held(&db, id), 4, None).unwrap();
            assert_eq!(
                super::run(&db, id).unwrap().unwrap().pages_done,
                2,
                "{}: b changed a's run",
                t.name
            );
        }
    }

    #[test]
    fn the_queue_of_every_account_is_listed_oldest_first() {
        for t in databases("runs_queued") {
            let mut a = t.open("a");
            let mut b = t.open("b");
            let ids: Vec<i64> = [
                queue(&mut a, "itglue", "organization", false, "token:1").unwrap(),
                queue(&mut b, "itglue", "configuration", false, "token:2").unwrap(),
                queue(&mut a, "itglue", "configuration", false, "token:1").unwrap(),
            ]
            .into_iter()
            .map(|q| match q {
                Queued::Queued(id) => id,
                Queued::Busy(id) => panic!("{}: busy: {id}", t.name),
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
                ],
                "{}",
                t.name
            );
        }
    }

    #[test]
    fn runs_are_read_back_newest_first_and_by_outcome() {
        for t in databases("runs_reads") {
            let mut db = t.open("a");
            let started = |db: &mut Db, kind: &str, dry_run: bool| match start(
                db, "itglue", kind, dry_run, LEASE, None,
            )
            .unwrap()
            {
                Start::Started(run) => run.id,
                Start::Running(live) => panic!("{}: running: {}", t.name, live.id),
            };
            let ok = started(&mut db, "organization", false);
            finish(&db, held(&db, ok), "ok", &RunCounts::default(), None).unwrap();
            let failed = started(&mut db, "organization", false);
            finish(
                &db,
                held(&db, failed),
                "failed",
                &RunCounts::default(),
                Some("no".into()),
            )
            .unwrap();
            let dry = started(&mut db, "organization", true);
            finish(&db, held(&db, dry), "ok", &RunCounts::default(), None).unwrap();
            let config = started(&mut db, "configuration", false);
            let last = last_run(&db, "itglue", "organization").unwrap().unwrap();
            assert_eq!(
                (last.id, last.status.as_str(), last.error.as_deref()),
                (failed, "failed", Some("no")),
                "{}: the dry run counts as the last",
                t.name
            );
            let last_ok = last_ok_run(&db, "itglue", "organization").unwrap().unwrap();
            assert_eq!(last_ok.id, ok, "{}", t.name);
            assert_eq!(last_run(&db, "other", "organization").unwrap(), None);
            let recent: Vec<i64> = recent_runs(&db, "itglue", 3)
                .unwrap()
                .iter()
                .map(|r| r.id)
                .collect();
            assert_eq!(recent, [config, dry, failed], "{}", t.name);
            let running = super::run(&db, config).unwrap().unwrap();
            assert!(running.holds_lease(now_ms()), "{}", t.name);
            assert_eq!(finished_at(&db, config).unwrap(), None, "{}", t.name);
            // Another account reads none of them.
            let b = t.open("b");
            assert!(recent_runs(&b, "itglue", 10).unwrap().is_empty());
            assert_eq!(last_ok_run(&b, "itglue", "organization").unwrap(), None);
        }
    }

    #[test]
    fn the_heartbeat_renews_the_lease_until_the_run_ends() {
        for t in databases("runs_heartbeat") {
            let mut db = t.open("a");
            let lease = Duration::from_millis(600);
            let Start::Started(run) =
                start(&mut db, "itglue", "organization", false, lease, None).unwrap()
            else {
                panic!("{}: not started", t.name);
            };
            let lease_until = |db: &Db| super::run(db, run.id).unwrap().unwrap().lease_until;
            let first = lease_until(&db).unwrap();
            let heartbeat = Heartbeat::start(&db, run.held(), lease);
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while lease_until(&db).is_some_and(|until| until <= first) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{}: never renewed",
                    t.name
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            finish(&db, run.held(), "ok", &RunCounts::default(), None).unwrap();
            // Beats after the end renew nothing.
            std::thread::sleep(lease);
            drop(heartbeat);
            let row = super::run(&db, run.id).unwrap().unwrap();
            assert_eq!(
                (row.status.as_str(), row.lease_until),
                ("ok", None),
                "{}",
                t.name
            );
        }
    }

    #[test]
    fn schedules_are_set_read_and_removed_per_account() {
        for t in databases("runs_schedules") {
            let a = t.open("a");
            let b = t.open("b");
            let before = now_ms();
            let set = set_schedule(
                &a,
                "itglue",
                Some(Duration::from_secs(6 * 3600)),
                "token:t1",
            )
            .unwrap()
            .unwrap();
            assert_eq!(set.every, Duration::from_secs(6 * 3600), "{}", t.name);
            assert!(set.next_at_ms >= before + 6 * 3600 * 1000, "{}", t.name);
            assert_eq!(schedule(&a, "itglue").unwrap(), Some(set), "{}", t.name);
            assert_eq!(schedule(&b, "itglue").unwrap(), None, "{}", t.name);
            // Set again, it changes in place.
            let again = set_schedule(&a, "itglue", Some(Duration::from_secs(60)), "token:t3")
                .unwrap()
                .unwrap();
            assert_eq!(schedule(&a, "itglue").unwrap(), Some(again), "{}", t.name);
            assert_eq!(set_schedule(&b, "itglue", None, "token:t2").unwrap(), None);
            assert!(
                schedule(&a, "itglue").unwrap().is_some(),
                "{}: b removed a's schedule",
                t.name
            );
            assert_eq!(set_schedule(&a, "itglue", None, "token:t1").unwrap(), None);
            assert_eq!(schedule(&a, "itglue").unwrap(), None, "{}", t.name);
            assert_eq!(
                event_actions(&a),
                ["schedule-removed", "schedule-set", "schedule-set"],
                "{}",
                t.name
            );
            assert!(event_actions(&b).is_empty(), "{}", t.name);
        }
    }

    #[test]
    fn a_queued_run_that_cannot_start_is_failed_and_a_lapsed_one_is_swept() {
        for t in databases("runs_sweep") {
            let mut a = t.open("a");
            let b = t.open("b");
            let Queued::Queued(id) =
                queue(&mut a, "itglue", "organization", false, "token:t").unwrap()
            else {
                panic!("{}: queued", t.name)
            };
            // Another account cannot end it.
            assert!(!fail_queued(&b, id, "no").unwrap(), "{}", t.name);
            assert!(fail_queued(&a, id, "not available").unwrap(), "{}", t.name);
            let run = run(&a, id).unwrap().unwrap();
            assert_eq!(run.status, "failed", "{}", t.name);
            assert_eq!(run.error.as_deref(), Some("not available"), "{}", t.name);
            assert!(
                !fail_queued(&a, id, "again").unwrap(),
                "{}: only a queued run",
                t.name
            );
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
                panic!("{}: started", t.name)
            };
            std::thread::sleep(Duration::from_millis(5));
            assert_eq!(sweep_interrupted(&b).unwrap(), (0, 1), "{}", t.name);
            assert_eq!(super::run(&a, live.id).unwrap().unwrap().status, "failed");
            assert_eq!(sweep_interrupted(&b).unwrap(), (0, 0), "{}", t.name);
        }
    }

    #[test]
    fn due_schedules_fire_once_per_period_even_if_called_twice() {
        for t in databases("runs_due") {
            let a = t.open("a");
            let b = t.open("b");
            let hour = Duration::from_secs(3600);
            let first = set_schedule(&a, "itglue", Some(hour), "token:t1")
                .unwrap()
                .unwrap()
                .next_at_ms;
            set_schedule(&b, "itglue", Some(hour * 2), "token:t2").unwrap();
            assert!(
                due_schedules(&a, first - 1).unwrap().is_empty(),
                "{}: due early",
                t.name
            );
            let due = due_schedules(&a, first).unwrap();
            assert_eq!(due, [("a".to_string(), "itglue".to_string())], "{}", t.name);
            // Called again (by another replica, say) within the period: nothing.
            assert!(
                due_schedules(&b, first + 1).unwrap().is_empty(),
                "{}",
                t.name
            );
            let next = schedule(&a, "itglue").unwrap().unwrap().next_at_ms;
            assert_eq!(next, first + 3_600_000, "{}", t.name);
            // After a long stop it fires once, and its next firing keeps its phase.
            let much_later = first + 10 * 3_600_000 + 5;
            let due = due_schedules(&a, much_later).unwrap();
            assert_eq!(due.len(), 2, "{}: {due:?}", t.name);
            assert!(
                due_schedules(&a, much_later).unwrap().is_empty(),
                "{}",
                t.name
            );
            assert_eq!(
                schedule(&a, "itglue").unwrap().unwrap().next_at_ms,
                first + 11 * 3_600_000,
                "{}",
                t.name
            );
        }
    }

    /// The PostgreSQL test database, fresh (the SQLite one is skipped: one process's
    /// connections are serialized by its write lock, tested above).
    fn postgres(name: &str) -> crate::testing::TestDb {
        databases(name)
            .into_iter()
            .find(|t| t.postgres().is_some())
            .unwrap()
    }

    const KINDS: [&str; 3] = ["organization", "configuration", "contact"];

    /// How many of `account`'s `itglue` runs of each kind are queued or running.
    fn busy_per_kind(db: &Db) -> Result<BTreeMap<String, i64>, DbError> {
        db.sql()
            .query(
                "SELECT kind, count(*) FROM sync_runs
                 WHERE account = ?1 AND connector = 'itglue' AND status IN ('queued', 'running')
                 GROUP BY kind",
                &values![db.account()],
            )?
            .iter()
            .map(|r| Ok((r.text(0)?, r.int(1)?)))
            .collect()
    }

    /// What went wrong in the threads of a test: kept, not panicked on, so that a thread that
    /// fails still meets the others at their barriers; asserted empty once all are done.
    #[derive(Default)]
    struct Failures(Mutex<Vec<String>>);

    impl Failures {
        fn note(&self, what: impl std::fmt::Display) {
            self.0.lock().unwrap().push(what.to_string());
        }

        fn keep<T>(&self, result: Result<T, DbError>) -> Option<T> {
            result.map_err(|e| self.note(e)).ok()
        }

        fn assert_none(self) {
            let failures = self.0.into_inner().unwrap();
            assert!(failures.is_empty(), "{failures:#?}");
        }
    }

    #[test]
    fn replicas_queueing_and_claiming_at_once_claim_each_run_once_on_postgres() {
        let t = postgres("runs_replicas_claim");
        let (replicas, rounds) = (4, 8);
        let barrier = Barrier::new(replicas);
        let claimed = Mutex::new(Vec::new());
        let failures = Failures::default();
        std::thread::scope(|s| {
            for _ in 0..replicas {
                let mut db = t.open("a");
                let (barrier, claimed, failures) = (&barrier, &claimed, &failures);
                s.spawn(move || {
                    for _ in 0..rounds {
                        barrier.wait();
                        for kind in KINDS {
                            failures.keep(queue(&mut db, "itglue", kind, false, "token:t"));
                        }
                        // Every replica queueing at once never leaves two queued or running
                        // runs of a kind.
                        for (kind, n) in failures.keep(busy_per_kind(&db)).unwrap_or_default() {
                            if n > 1 {
                                failures.note(format!("{n} queued or running of {kind}"));
                            }
                        }
                        barrier.wait();
                        for (_, id, _, _) in failures.keep(queued(&db)).unwrap_or_default() {
                            match claim(&mut db, id, LEASE) {
                                Ok(Start::Started(run)) => {
                                    claimed.lock().unwrap().push(run.id);
                                    failures.keep(finish(
                                        &db,
                                        run.held(),
                                        "ok",
                                        &RunCounts::default(),
                                        None,
                                    ));
                                }
                                Ok(Start::Running(_)) | Err(DbError::NotQueued { .. }) => {}
                                Err(e) => failures.note(e),
                            }
                        }
                    }
                });
            }
        });
        failures.assert_none();
        let claimed = claimed.into_inner().unwrap();
        let unique: BTreeSet<i64> = claimed.iter().copied().collect();
        assert_eq!(unique.len(), claimed.len(), "a run was claimed twice");
        // Every run queued was claimed (and finished) by exactly one replica: each round
        // queues one of each kind, whoever queues it.
        let db = t.open("a");
        let rows = db
            .sql()
            .query("SELECT id, status FROM sync_runs ORDER BY id", &[])
            .unwrap();
        let all: BTreeSet<i64> = rows.iter().map(|r| r.int(0).unwrap()).collect();
        assert_eq!(all, unique);
        assert!(rows.iter().all(|r| r.text(1).unwrap() == "ok"));
        assert_eq!(unique.len(), rounds * KINDS.len());
    }

    #[test]
    fn replicas_starting_at_once_start_one_run_on_postgres() {
        let t = postgres("runs_replicas_start");
        let replicas = 6;
        let barrier = Barrier::new(replicas);
        let started = Mutex::new(Vec::new());
        let failures = Failures::default();
        std::thread::scope(|s| {
            for _ in 0..replicas {
                let mut db = t.open("a");
                let (barrier, started, failures) = (&barrier, &started, &failures);
                s.spawn(move || {
                    for kind in KINDS {
                        barrier.wait();
                        let outcome = start(&mut db, "itglue", kind, false, LEASE, None);
                        if let Some(Start::Started(run)) = failures.keep(outcome) {
                            started.lock().unwrap().push((kind, run.id));
                        }
                    }
                });
            }
        });
        failures.assert_none();
        let started = started.into_inner().unwrap();
        let kinds: BTreeSet<&str> = started.iter().map(|(kind, _)| *kind).collect();
        assert_eq!(started.len(), KINDS.len(), "{started:?}");
        assert_eq!(kinds.len(), KINDS.len(), "{started:?}");
        let busy = busy_per_kind(&t.open("a")).unwrap();
        assert!(busy.values().all(|n| *n == 1), "{busy:?}");
    }

    #[test]
    fn replicas_finishing_and_taking_over_a_lapsed_run_at_once_agree_on_postgres() {
        let t = postgres("runs_replicas_fence");
        for round in 0..10 {
            let mut holder = t.open("a");
            let Start::Started(run) =
                start(&mut holder, "itglue", "organization", false, LEASE, None).unwrap()
            else {
                panic!("round {round}: not started");
            };
            // Its process stalled past its lease, and ends the run as three replicas look
            // for the kind to take over.
            holder
                .sql()
                .execute(
                    "UPDATE sync_runs SET lease_until = 1 WHERE id = ?1",
                    &values![run.id],
                )
                .unwrap();
            let barrier = Barrier::new(4);
            let recorded = Mutex::new(None);
            let seen_interrupted = std::sync::atomic::AtomicBool::new(false);
            let taken = Mutex::new(Vec::new());
            let failures = Failures::default();
            std::thread::scope(|s| {
                let (barrier, recorded, failures) = (&barrier, &recorded, &failures);
                let (seen_interrupted, taken) = (&seen_interrupted, &taken);
                let holder = &mut holder;
                let held = run.held();
                s.spawn(move || {
                    barrier.wait();
                    let Some(tx) = failures.keep(holder.begin()) else {
                        return;
                    };
                    let ended = finish_on(&tx, "a", held, "ok", &RunCounts::default(), None);
                    let ended = ended.is_ok() && failures.keep(tx.commit()).is_some();
                    *recorded.lock().unwrap() = Some(ended);
                });
                for _ in 0..3 {
                    let mut db = t.open("a");
                    s.spawn(move || {
                        barrier.wait();
                        let outcome = start(&mut db, "itglue", "organization", false, LEASE, None);
                        let Some(Start::Started(new)) = failures.keep(outcome) else {
                            return;
                        };
                        taken.lock().unwrap().push(new.id);
                        // What the taker saw of the old run once it held the kind.
                        let old = failures.keep(super::run(&db, run.id)).flatten();
                        if old.is_some_and(|old| old.status == "failed") {
                            seen_interrupted.store(true, std::sync::atomic::Ordering::SeqCst);
                        }
                    });
                }
            });
            failures.assert_none();
            let row = super::run(&holder, run.id).unwrap().unwrap();
            // The old run ended one way only: recorded by its holder, or marked interrupted
            // (then its holder's end was refused), never first one and then the other.
            let recorded = recorded.into_inner().unwrap().unwrap();
            let seen_interrupted = seen_interrupted.into_inner();
            if recorded {
                assert_eq!(
                    (row.status.as_str(), row.error, seen_interrupted),
                    ("ok", None, false),
                    "round {round}"
                );
            } else {
                assert_eq!(row.status, "failed", "round {round}");
                assert!(row.error.unwrap().contains("interrupted"), "round {round}");
            }
            // The takers never overlapped: one took the kind, the others found it running.
            let taken = taken.into_inner().unwrap();
            assert_eq!(taken.len(), 1, "round {round}");
            finish(
                &holder,
                held(&holder, taken[0]),
                "ok",
                &RunCounts::default(),
                None,
            )
            .unwrap();
            assert!(busy_per_kind(&holder).unwrap().is_empty(), "round {round}");
        }
    }

    #[test]
    fn replicas_asking_for_due_schedules_at_once_fire_each_once_on_postgres() {
        let t = postgres("runs_replicas_due");
        let accounts: Vec<String> = (0..10).map(|i| format!("acct{i}")).collect();
        let mut first = 0;
        for account in &accounts {
            let every = Some(Duration::from_secs(60));
            let set = set_schedule(&t.open(account), "itglue", every, "op").unwrap();
            first = set.unwrap().next_at_ms.max(first);
        }
        let replicas = 4;
        let barrier = Barrier::new(replicas);
        let fired = Mutex::new(Vec::new());
        let failures = Failures::default();
        std::thread::scope(|s| {
            for _ in 0..replicas {
                let db = t.open("acct0");
                let (barrier, fired, failures) = (&barrier, &fired, &failures);
                s.spawn(move || {
                    // Two periods, each asked for twice by every replica.
                    for now in [first, first + 1, first + 60_000, first + 60_001] {
                        barrier.wait();
                        let due = failures.keep(due_schedules(&db, now)).unwrap_or_default();
                        fired.lock().unwrap().extend(due);
                    }
                });
            }
        });
        failures.assert_none();
        let mut per_account: BTreeMap<String, usize> = BTreeMap::new();
        for (account, _) in fired.into_inner().unwrap() {
            *per_account.entry(account).or_default() += 1;
        }
        assert_eq!(per_account.len(), accounts.len(), "{per_account:?}");
        assert!(
            per_account.values().all(|n| *n == 2),
            "not once per period: {per_account:?}"
        );
    }

    #[test]
    fn replicas_removing_a_schedule_at_once_record_one_removal_on_postgres() {
        let t = postgres("runs_replicas_schedule");
        let a = t.open("a");
        set_schedule(&a, "itglue", Some(Duration::from_secs(60)), "op").unwrap();
        let barrier = Barrier::new(5);
        let failures = Failures::default();
        std::thread::scope(|s| {
            for i in 0..5 {
                let db = t.open("a");
                let (barrier, failures) = (&barrier, &failures);
                s.spawn(move || {
                    barrier.wait();
                    failures.keep(set_schedule(&db, "itglue", None, &format!("token:{i}")));
                });
            }
        });
        failures.assert_none();
        assert_eq!(schedule(&a, "itglue").unwrap(), None);
        assert_eq!(event_actions(&a), ["schedule-removed", "schedule-set"]);
    }
}

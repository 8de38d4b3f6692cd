//! The audit table's writer: one row per capability use, of the account of the connection it
//! writes through. Rows never hold the credential.
//!
//! `AuditWriter::write` never touches the database: it puts the row on a bounded queue read by
//! one writer thread per writer, which writes them in batches (one transaction each). A
//! database that is busy (another SQLite process holding its write lock, waited for up to the
//! connection's busy timeout, or a PostgreSQL server slow to answer) therefore delays only
//! that thread, never the async threads that run the calls. The queue is drained and the
//! thread joined when the last handle to the writer is dropped; `AuditWriter::flush` waits
//! until everything written so far is stored. When the writer opens, it deletes rows older
//! than the retention period (see [`Retention`]).

use crate::db::{self, AuditRecord, DbError};
use crate::handle::Db;
use crate::shared::Shared;
use crate::sql::Sql;
use crate::values;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// Records waiting for the writer at most. When the queue is full, `record` waits for room
/// (records are never dropped).
pub const QUEUE_CAPACITY: usize = 4096;
/// Most records written in one transaction.
const BATCH: usize = 512;
/// How often a long-lived writer deletes expired rows again.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// The environment variable that sets the retention, in days.
pub const RETENTION_ENV: &str = "SCOPABLE_AUDIT_RETENTION_DAYS";
/// Days audit rows are kept by default.
pub const DEFAULT_RETENTION_DAYS: u64 = 90;
/// The longest retention accepted, in days (100 years).
pub const MAX_RETENTION_DAYS: u64 = 36_500;

/// How long audit rows are kept: rows older than this are deleted when a sink opens, and every
/// hour while it stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    days: u64,
}

/// A retention setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error(
    "{RETENTION_ENV}={value:?} is not a number of days from 1 to {MAX_RETENTION_DAYS}; set it to a whole number of days (default {DEFAULT_RETENTION_DAYS})"
)]
pub struct RetentionError {
    value: String,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            days: DEFAULT_RETENTION_DAYS,
        }
    }
}

impl Retention {
    /// Rows are kept `days` days (1 to [`MAX_RETENTION_DAYS`]).
    pub fn of_days(days: u64) -> Result<Retention, RetentionError> {
        if (1..=MAX_RETENTION_DAYS).contains(&days) {
            Ok(Retention { days })
        } else {
            Err(RetentionError {
                value: days.to_string(),
            })
        }
    }

    /// Parses a setting such as `30`.
    pub fn parse(value: &str) -> Result<Retention, RetentionError> {
        let err = || RetentionError {
            value: value.chars().take(64).collect(),
        };
        let days = value.trim().parse::<u64>().map_err(|_| err())?;
        Retention::of_days(days).map_err(|_| err())
    }

    /// The retention set by [`RETENTION_ENV`], else the default.
    pub fn from_env() -> Result<Retention, RetentionError> {
        match std::env::var(RETENTION_ENV) {
            Ok(value) => Retention::parse(&value),
            Err(std::env::VarError::NotPresent) => Ok(Retention::default()),
            Err(std::env::VarError::NotUnicode(_)) => Err(RetentionError {
                value: "(not UTF-8)".into(),
            }),
        }
    }

    /// The oldest `at` kept now, in the column's format.
    fn cutoff(self) -> String {
        let age = Duration::from_secs(self.days * 24 * 3600);
        let at = SystemTime::now()
            .checked_sub(age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        humantime::format_rfc3339_seconds(at).to_string()
    }
}

/// Deletes the audit rows older than `retention`, of every account (the retention is the
/// operator's, not a tenant's), on either database (the schema indexes `at`); returns how
/// many went.
pub fn prune(conn: &dyn Sql, retention: Retention) -> Result<usize, db::DbError> {
    let deleted = conn.execute(
        "DELETE FROM audit WHERE at < ?1",
        &values![retention.cutoff()],
    )?;
    Ok(deleted as usize)
}

/// Where audit rows go: a queue and the thread that writes it. Cheap to clone; the thread
/// stops (after writing what is queued) when the last clone is dropped.
#[derive(Clone)]
pub struct AuditWriter {
    writer: Arc<Writer>,
}

enum Message {
    Record(Box<AuditRecord>),
    /// Answered once every record queued before it is written.
    Flush(SyncSender<()>),
}

/// The writer thread and the sending end of its queue; dropping it (with the last sink)
/// closes the queue, lets the thread write what is left, and joins it.
struct Writer {
    queue: Option<SyncSender<Message>>,
    thread: Option<JoinHandle<()>>,
    /// The database and the account every row is written for, written directly when the
    /// thread could not start or has stopped.
    shared: Shared,
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!(
                "the audit writer stopped abnormally; some audit records may be missing"
            );
        }
    }
}

impl AuditWriter {
    /// A writer to `conn`, for its account, keeping rows as long as [`RETENTION_ENV`] says (by
    /// default [`DEFAULT_RETENTION_DAYS`]). An unusable value is reported, and then no row is
    /// deleted: a setting meant to keep rows longer must not lose them.
    pub fn new(conn: &Shared) -> AuditWriter {
        let retention = Retention::from_env()
            .map_err(|e| tracing::error!("{e}; no audit records were deleted"))
            .ok();
        AuditWriter::open(conn, retention)
    }

    /// A writer to `conn`, for its account, that first deletes rows older than `retention`.
    pub fn with_retention(conn: &Shared, retention: Retention) -> AuditWriter {
        AuditWriter::open(conn, Some(retention))
    }

    fn open(shared: &Shared, retention: Option<Retention>) -> AuditWriter {
        let (queue, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_loop(&thread_shared, &rx, retention));
        let (queue, thread) = match thread {
            Ok(thread) => (Some(queue), Some(thread)),
            Err(e) => {
                tracing::error!(
                    "cannot start the audit writer ({e}); audit records are written as they come"
                );
                (None, None)
            }
        };
        AuditWriter {
            writer: Arc::new(Writer {
                queue,
                thread,
                shared: shared.clone(),
            }),
        }
    }

    /// Queues one row. Returns at once unless the queue is full (then it waits for room:
    /// rows are never dropped).
    pub fn write(&self, record: AuditRecord) {
        let writer = &self.writer;
        let Some(queue) = &writer.queue else {
            write_batch(&writer.shared, std::slice::from_ref(&record));
            return;
        };
        let message = Message::Record(Box::new(record));
        let unsent = match queue.try_send(message) {
            Ok(()) => return,
            Err(TrySendError::Full(message)) => {
                tracing::warn!("the audit queue is full; waiting for the writer");
                // On a multi-threaded runtime, tell it this thread is about to block, so its
                // other tasks move on; elsewhere (a plain thread) blocking is fine.
                let in_runtime = tokio::runtime::Handle::try_current().is_ok_and(|h| {
                    h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
                });
                if in_runtime {
                    tokio::task::block_in_place(|| queue.send(message))
                        .err()
                        .map(|e| e.0)
                } else {
                    queue.send(message).err().map(|e| e.0)
                }
            }
            Err(TrySendError::Disconnected(message)) => Some(message),
        };
        if let Some(Message::Record(record)) = unsent {
            // The writer is gone (it panicked): write this one here rather than lose it.
            write_batch(&writer.shared, std::slice::from_ref(&*record));
        }
    }

    /// Waits until every row queued so far is written. Blocks: call it outside async code
    /// (or from `spawn_blocking`), for instance before reading the audit table back.
    pub fn flush(&self) {
        let Some(queue) = self.writer.queue.as_ref() else {
            return;
        };
        let (done, wait) = mpsc::sync_channel(1);
        if queue.send(Message::Flush(done)).is_ok() {
            let _ = wait.recv();
        }
    }
}

/// The writer thread: prunes, then writes what arrives in batches until the queue closes.
fn write_loop(shared: &Shared, rx: &Receiver<Message>, retention: Option<Retention>) {
    let mut pruned = prune_now(shared, retention);
    let mut batch: Vec<AuditRecord> = Vec::new();
    let mut waiting: Vec<SyncSender<()>> = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Record(record) => batch.push(*record),
                Message::Flush(done) => waiting.push(done),
            }
            next = if batch.len() < BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        write_batch(shared, &batch);
        batch.clear();
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
        if pruned.elapsed() >= PRUNE_EVERY {
            pruned = prune_now(shared, retention);
        }
    }
}

fn prune_now(shared: &Shared, retention: Option<Retention>) -> Instant {
    let Some(retention) = retention else {
        return Instant::now();
    };
    match shared.run(|c| prune(c, retention)) {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            "deleted {n} audit records older than {} days",
            retention.days
        ),
        Err(e) => tracing::error!("could not delete expired audit records: {e}"),
    }
    Instant::now()
}

/// Writes records of `shared`'s account in one transaction (best effort: a failure is
/// logged).
fn write_batch(shared: &Shared, records: &[AuditRecord]) {
    if records.is_empty() {
        return;
    }
    // A busy database (another process writing longer than the busy timeout) is tried again
    // a few times before the batch is given up, loudly.
    let mut last_error = String::new();
    for attempt in 0..WRITE_ATTEMPTS {
        match try_write_batch(shared, records) {
            Ok(()) => return,
            Err(e) => last_error = e.to_string(),
        }
        if attempt + 1 < WRITE_ATTEMPTS {
            std::thread::sleep(Duration::from_millis(200 << attempt));
        }
    }
    tracing::error!(
        "could not write {} audit records after {WRITE_ATTEMPTS} attempts: {last_error}",
        records.len()
    );
}

/// Attempts to write one batch of audit records.
const WRITE_ATTEMPTS: u32 = 5;

fn try_write_batch(shared: &Shared, records: &[AuditRecord]) -> Result<(), DbError> {
    // Appends only: nothing is checked, so no lock is needed beside the transaction's.
    shared.transaction(None, |tx| {
        for record in records {
            insert_audit(tx, shared.account(), record)?;
        }
        Ok(())
    })
}

/// The newest audit records of a connector of the handle's account, newest first.
pub fn audit_records(
    db: &Db,
    connector: &str,
    limit: usize,
) -> Result<Vec<(i64, AuditRecord)>, DbError> {
    let rows = db.sql().query(
        "SELECT id, at, connector, component_sha256, capability, method, host, path, decision,
                rule, status, bytes, duration_ms, detail, connection
         FROM audit WHERE account = ?1 AND connector = ?2 ORDER BY id DESC LIMIT ?3",
        &values![
            db.account(),
            connector,
            i64::try_from(limit).unwrap_or(i64::MAX)
        ],
    )?;
    rows.iter()
        .map(|r| {
            let status = r
                .opt_int(10)?
                .map(|s| {
                    u16::try_from(s).map_err(|_| {
                        DbError::Sql(format!("audit status {s} is not an HTTP status"))
                    })
                })
                .transpose()?;
            Ok((
                r.int(0)?,
                AuditRecord {
                    at: r.text(1)?,
                    connector: r.text(2)?,
                    component_sha256: r.text(3)?,
                    capability: r.text(4)?,
                    method: r.text(5)?,
                    host: r.text(6)?,
                    path: r.text(7)?,
                    decision: r.text(8)?,
                    rule: r.opt_text(9)?,
                    status,
                    bytes: r.int(11)? as u64,
                    duration_ms: r.int(12)? as u64,
                    detail: r.opt_text(13)?,
                    connection: r.opt_text(14)?,
                },
            ))
        })
        .collect()
}

/// Appends one audit record of `account`, on either database.
pub fn insert_audit(
    conn: &dyn crate::sql::Sql,
    account: &str,
    a: &db::AuditRecord,
) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO audit (account, at, connector, component_sha256, capability, method, host,
                            path, decision, rule, status, bytes, duration_ms, detail,
                            connection)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        &crate::values![
            account,
            &a.at,
            &a.connector,
            &a.component_sha256,
            &a.capability,
            &a.method,
            &a.host,
            &a.path,
            &a.decision,
            a.rule.as_deref(),
            a.status.map(i64::from),
            a.bytes as i64,
            a.duration_ms as i64,
            a.detail.as_deref(),
            a.connection.as_deref()
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::Kept;
    use crate::testing::{TestDb, databases};
    use rusqlite::Connection;
    use std::sync::Mutex;

    fn open(dir: &tempfile::TempDir) -> Arc<Mutex<Connection>> {
        Arc::new(Mutex::new(db::open(&dir.path().join("a.db")).unwrap()))
    }

    /// A shared connection over this SQLite connection.
    fn shared(conn: &Arc<Mutex<Connection>>) -> Shared {
        Shared {
            kept: Kept::Sqlite(conn.clone()),
            account: crate::DEFAULT_ACCOUNT.into(),
        }
    }

    /// A new shared connection (another process, or replica) on `t` for `account`.
    fn shared_on(t: &TestDb, account: &str) -> Shared {
        match (t.path(), t.postgres()) {
            (Some(path), _) => Shared::open(&path, account).unwrap(),
            (None, Some(pg)) => Shared::postgres(pg, account),
            (None, None) => unreachable!("a test database is one or the other"),
        }
    }

    fn event(path: &str) -> AuditRecord {
        AuditRecord {
            at: db::now(),
            connector: "itglue".into(),
            component_sha256: "d1".into(),
            capability: "http".into(),
            method: "GET".into(),
            host: "127.0.0.1".into(),
            path: path.into(),
            decision: "allowed".into(),
            rule: None,
            status: None,
            bytes: 0,
            duration_ms: 0,
            connection: None,
            detail: None,
        }
    }

    /// Every audit row, of every account, oldest first.
    fn rows(sql: &dyn Sql) -> Vec<(String, String)> {
        sql.query("SELECT at, path FROM audit ORDER BY id", &[])
            .unwrap()
            .iter()
            .map(|r| (r.text(0).unwrap(), r.text(1).unwrap()))
            .collect()
    }

    fn sqlite_rows(conn: &Mutex<Connection>) -> Vec<(String, String)> {
        rows(&*conn.lock().unwrap())
    }

    /// While another connection holds the write lock (SQLite's, or PostgreSQL's lock of the
    /// table), `record` on a single-threaded runtime returns at once (the writer thread waits
    /// instead), and the row is written once the lock is released.
    #[test]
    fn record_does_not_wait_for_a_locked_database() {
        for t in databases("audit_locked") {
            let conn = shared_on(&t, "a");
            let holder = t.open("other");
            if t.postgres().is_some() {
                holder.sql().execute("BEGIN", &[]).unwrap();
                holder
                    .sql()
                    .execute("LOCK TABLE audit IN EXCLUSIVE MODE", &[])
                    .unwrap();
            } else {
                holder.sql().execute("BEGIN IMMEDIATE", &[]).unwrap();
            }
            let sink = AuditWriter::with_retention(&conn, Retention::default());
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let elapsed = rt.block_on(async {
                let started = Instant::now();
                sink.write(event("/organizations"));
                tokio::time::sleep(Duration::from_millis(20)).await;
                started.elapsed()
            });
            assert!(
                elapsed < Duration::from_secs(2),
                "{}: record blocked the async thread for {elapsed:?}",
                t.name
            );
            // Not written yet: the writer waits for the lock.
            std::thread::sleep(Duration::from_millis(100));
            assert!(rows(t.open("a").sql()).is_empty(), "{}", t.name);
            holder.sql().execute("COMMIT", &[]).unwrap();
            sink.flush();
            let written = rows(holder.sql());
            assert_eq!(written.len(), 1, "{}: {written:?}", t.name);
            assert_eq!(written[0].1, "/organizations", "{}", t.name);
        }
    }

    /// A SQLite database busy for longer than the connection's busy timeout delays a batch;
    /// it is written once the database is free again, not lost.
    #[test]
    fn a_batch_is_retried_while_the_database_stays_busy() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir);
        conn.lock()
            .unwrap()
            .busy_timeout(Duration::from_millis(50))
            .unwrap();
        let holder = db::open(&dir.path().join("a.db")).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let sink = AuditWriter::with_retention(&shared(&conn), Retention::default());
        sink.write(event("/organizations"));
        // Longer than the busy timeout and the first back-off.
        std::thread::sleep(Duration::from_millis(400));
        holder.execute_batch("COMMIT").unwrap();
        sink.flush();
        let written = sqlite_rows(&conn);
        assert_eq!(written.len(), 1, "{written:?}");
    }

    /// Dropping the last handle writes everything still queued before it returns.
    #[test]
    fn the_last_handle_dropped_writes_every_record() {
        for t in databases("audit_drop") {
            let sink = AuditWriter::with_retention(&shared_on(&t, "a"), Retention::default());
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    let sink = sink.clone();
                    std::thread::spawn(move || {
                        for i in 0..2500 {
                            sink.write(event(&format!("/t{t}/{i}")));
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            drop(sink);
            assert_eq!(rows(t.open("a").sql()).len(), 10_000, "{}", t.name);
        }
    }

    /// Rows older than the retention are deleted when a sink opens, whatever their account;
    /// newer rows stay.
    #[test]
    fn rows_past_the_retention_are_deleted_when_a_sink_opens() {
        for t in databases("audit_retention") {
            let db = t.open("a");
            let day = 24 * 3600;
            let ago = |secs: u64| {
                humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(secs))
                    .to_string()
            };
            for (at, path, account) in [
                ("2001-01-01T00:00:00Z".to_string(), "/ancient", "a"),
                (ago(91 * day), "/91-days", "b"),
                (ago(89 * day), "/89-days", "a"),
                (ago(2 * day), "/2-days", "b"),
                (ago(3600), "/1-hour", "a"),
            ] {
                let record = AuditRecord {
                    at,
                    path: path.into(),
                    status: Some(200),
                    ..event("")
                };
                insert_audit(db.sql(), account, &record).unwrap();
            }
            let paths = || -> Vec<String> { rows(db.sql()).into_iter().map(|(_, p)| p).collect() };
            // The default: 90 days.
            let sink = AuditWriter::with_retention(&shared_on(&t, "a"), Retention::default());
            sink.flush();
            drop(sink);
            assert_eq!(paths(), ["/89-days", "/2-days", "/1-hour"], "{}", t.name);
            // A shorter setting.
            let sink =
                AuditWriter::with_retention(&shared_on(&t, "a"), Retention::parse("1").unwrap());
            sink.write(event("/now"));
            drop(sink);
            assert_eq!(paths(), ["/1-hour", "/now"], "{}", t.name);
        }
    }

    /// A connector's records read back whole, newest first, at most `limit`, and only the
    /// handle's account's.
    #[test]
    fn audit_records_are_the_connector_s_newest_of_the_account() {
        for t in databases("audit_read") {
            let full = AuditRecord {
                rule: Some("max-response-bytes".into()),
                status: Some(502),
                bytes: 1 << 40,
                duration_ms: 1234,
                detail: Some("component error: timeout".into()),
                connection: Some("via proxy http://proxy:3128".into()),
                ..event("/first")
            };
            let sink = AuditWriter::with_retention(&shared_on(&t, "a"), Retention::default());
            sink.write(full.clone());
            sink.write(event("/second"));
            sink.write(AuditRecord {
                connector: "other".into(),
                ..event("/other-connector")
            });
            sink.write(event("/third"));
            drop(sink);
            let sink = AuditWriter::with_retention(&shared_on(&t, "b"), Retention::default());
            sink.write(event("/b"));
            drop(sink);

            let db = t.open("a");
            let read = audit_records(&db, "itglue", 10).unwrap();
            let paths: Vec<&str> = read.iter().map(|(_, r)| r.path.as_str()).collect();
            assert_eq!(paths, ["/third", "/second", "/first"], "{}", t.name);
            assert!(read[0].0 > read[1].0 && read[1].0 > read[2].0, "{}", t.name);
            let first = &read[2].1;
            assert_eq!(
                serde_json::to_value(first).unwrap(),
                serde_json::to_value(&full).unwrap(),
                "{}",
                t.name
            );
            let newest = audit_records(&db, "itglue", 2).unwrap();
            assert_eq!(newest.len(), 2, "{}", t.name);
            assert_eq!(newest[0].1.path, "/third", "{}", t.name);
            let b = audit_records(&t.open("b"), "itglue", 10).unwrap();
            assert_eq!(b.len(), 1, "{}", t.name);
            assert_eq!(b[0].1.path, "/b", "{}", t.name);
        }
    }

    #[test]
    fn retention_settings_are_whole_days_within_bounds() {
        assert_eq!(Retention::default(), Retention::of_days(90).unwrap());
        assert_eq!(
            Retention::parse(" 30 ").unwrap(),
            Retention::of_days(30).unwrap()
        );
        for bad in [
            "0",
            "-1",
            "abc",
            "1.5",
            "",
            "36501",
            "99999999999999999999999",
        ] {
            let err = Retention::parse(bad).unwrap_err().to_string();
            assert!(err.contains(RETENTION_ENV), "{err}");
            assert!(err.contains("whole number of days"), "{err}");
        }
    }
}

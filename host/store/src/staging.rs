//! A sync's working rows, so that it never holds a whole listing, or a whole plan, in memory.
//!
//! - `sync_staged`: every record of a run as its page arrives, each page in one short
//!   transaction (never one held for the whole fetch, which would stop other writers, the
//!   lease's renewals included). A record listed twice keeps the copy of the lowest
//!   page, as a listing read in page order would. Configurations carry the client their
//!   organization is linked to, so that a client's records are read back together.
//! - `sync_planned`: what the checked plan decided for each record (a link added, removed or
//!   kept, an unplaced row), batch by batch.
//!
//! The apply (`sync_apply::apply_staged`) then writes the result from these rows in
//! one transaction. Rows are keyed by the run and its claim ([`Held`]): a process whose lease
//! lapsed while another took its run over writes rows nobody reads, cleared by [`clear_stale`].

use crate::db::DbError;
use crate::handle::Db;
use crate::runs::Held;
use crate::sql::{self, Row, Value};
use crate::values;
use serde_json::json;
use std::collections::{BTreeMap, HashSet};

/// A record as the host keeps it (`source_records`): its name, its organization
/// (configurations), and every other field the connector gave, the identifiers the matcher
/// reads among them, so that it can be placed again without the network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeenRecord {
    /// Its name.
    pub name: String,
    /// Its organization (configurations).
    pub organization_id: Option<String>,
    /// Its short name (organizations).
    pub short_name: Option<String>,
    /// Its type.
    pub type_name: Option<String>,
    /// Its status (organizations).
    pub status_name: Option<String>,
    /// Its hostname (configurations).
    pub hostname: Option<String>,
    /// Its primary IP (configurations).
    pub primary_ip: Option<String>,
    /// Its serial number (configurations).
    pub serial_number: Option<String>,
    /// Its MAC addresses (configurations).
    pub mac_addresses: Vec<String>,
    /// Whether it is archived (configurations).
    pub archived: bool,
}

/// The columns of `sync_staged` a staged row writes, in order.
const STAGED_COLUMNS: &str = "INSERT INTO sync_staged (account, run_id, attempt, source_id, slot,
    client, page, seq, detail, name, organization_id, short_name, type_name, status_name,
    hostname, primary_ip, serial_number, mac_addresses, archived)";

/// The record columns read back, in [`seen_at`]'s order.
const RECORD_COLUMNS: &str = "name, organization_id, short_name, type_name, status_name, hostname,
    primary_ip, serial_number, mac_addresses, archived";

/// A record as received on a page, staged with the client its organization is linked to
/// (`""` when none, and for organizations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Its id at the source.
    pub source_id: String,
    /// The client its organization is linked to, or `""`.
    pub client: String,
    /// Its fields.
    pub record: SeenRecord,
}

/// A record the connector could not read: its id when it had a usable one, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// Its id, when usable.
    pub source_id: Option<String>,
    /// Why it could not be read.
    pub detail: String,
}

/// What the plan decided for one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    /// A new automatic link.
    Add {
        /// Source id.
        source_id: String,
        /// The record's name, as received.
        name: String,
        /// The Scopable id.
        scopable_id: String,
        /// The evidence, as a JSON list of names.
        evidence: String,
    },
    /// An automatic link removed.
    Remove {
        /// Source id.
        source_id: String,
        /// The record's name, when it was received.
        name: Option<String>,
        /// The Scopable id it pointed to.
        scopable_id: String,
        /// Why.
        why: String,
        /// Whether the record is no longer placed at all (gone from the source, or decided by
        /// hand), listed after the others in a change report.
        gone: bool,
    },
    /// An automatic link kept, with its evidence refreshed.
    Kept {
        /// Source id.
        source_id: String,
        /// The Scopable id.
        scopable_id: String,
        /// The evidence, as a JSON list of names.
        evidence: String,
    },
    /// An `unplaced` row.
    Unplaced {
        /// Source id.
        source_id: String,
        /// The record's name (for an unreadable record, why it could not be read).
        name: String,
        /// The reason's name.
        reason: String,
        /// Candidates, as JSON.
        candidates: String,
        /// Suggestions, as JSON.
        suggestions: String,
    },
}

impl Planned {
    fn key(&self) -> (&'static str, &str) {
        match self {
            Planned::Add { source_id, .. } => ("add", source_id),
            Planned::Remove { source_id, .. } => ("remove", source_id),
            Planned::Kept { source_id, .. } => ("kept", source_id),
            Planned::Unplaced { source_id, .. } => ("unplaced", source_id),
        }
    }

    fn row(&self, account: &str, run: Held) -> [Value; 13] {
        let (op, source_id) = self.key();
        let none = None::<&str>;
        let (name, scopable_id, evidence, reason, candidates, suggestions, why, gone) = match self {
            Planned::Add {
                name,
                scopable_id,
                evidence,
                ..
            } => (
                Some(name.as_str()),
                Some(scopable_id.as_str()),
                Some(evidence.as_str()),
                none,
                none,
                none,
                none,
                false,
            ),
            Planned::Remove {
                name,
                scopable_id,
                why,
                gone,
                ..
            } => (
                name.as_deref(),
                Some(scopable_id.as_str()),
                none,
                none,
                none,
                none,
                Some(why.as_str()),
                *gone,
            ),
            Planned::Kept {
                scopable_id,
                evidence,
                ..
            } => (
                none,
                Some(scopable_id.as_str()),
                Some(evidence.as_str()),
                none,
                none,
                none,
                none,
                false,
            ),
            Planned::Unplaced {
                name,
                reason,
                candidates,
                suggestions,
                ..
            } => (
                Some(name.as_str()),
                none,
                none,
                Some(reason.as_str()),
                Some(candidates.as_str()),
                Some(suggestions.as_str()),
                none,
                false,
            ),
        };
        values![
            account,
            run.id,
            run.attempt,
            op,
            source_id,
            name,
            scopable_id,
            evidence,
            reason,
            candidates,
            suggestions,
            why,
            gone
        ]
    }
}

/// A connection to stage a sync on: another handle on the same database and account. On
/// SQLite its working tables are the connection's own (`TEMP` tables, which hide the shared
/// ones): staging writes nothing to the shared file, in transactions that do not take its
/// write lock ([`Db::begin_working`]), and leaves nothing behind when the process dies; the
/// apply runs on the same connection. On PostgreSQL they are the shared tables.
pub fn working_connection(db: &Db) -> Result<Db, DbError> {
    let own = db.sibling()?;
    if !own.is_postgres() {
        for statement in crate::db::MIGRATION_V8.split(';') {
            let statement = statement.trim();
            if statement.is_empty() {
                continue;
            }
            // The index is made once the pages are in ([`index_staged`]): one sort, instead
            // of a random insertion per record into an index larger than the cache.
            if statement.starts_with("CREATE INDEX") {
                continue;
            }
            let temporary = statement.replacen("CREATE TABLE ", "CREATE TEMP TABLE ", 1);
            own.sql().execute(&temporary, &[])?;
        }
    }
    Ok(own)
}

/// Makes the index records are read back by, once every page is staged, on a connection of
/// [`working_connection`] (on PostgreSQL the shared tables have it already).
pub fn index_staged(db: &Db) -> Result<(), DbError> {
    if !db.is_postgres() {
        db.sql().execute(
            "CREATE INDEX IF NOT EXISTS temp.sync_staged_client
             ON sync_staged(account, run_id, attempt, client, page, seq)",
            &[],
        )?;
    }
    Ok(())
}

/// Deletes the working rows of runs that are no longer running as the claim that wrote them
/// (finished, failed, taken over), for the handle's account.
pub fn clear_stale(db: &Db) -> Result<u64, DbError> {
    let mut cleared = 0;
    for table in ["sync_staged", "sync_planned"] {
        cleared += db.sql().execute(
            &format!(
                "DELETE FROM {table} WHERE account = ?1 AND NOT EXISTS (
                     SELECT 1 FROM sync_runs r WHERE r.account = ?1 AND r.id = {table}.run_id
                       AND r.attempt = {table}.attempt AND r.status = 'running')"
            ),
            &values![db.account()],
        )?;
    }
    Ok(cleared)
}

/// Deletes the working rows of `run`'s claim, never another claim's: a process whose lease
/// lapsed while another took the run over must not delete the rows its successor stages.
pub fn clear(db: &Db, run: Held) -> Result<(), DbError> {
    for table in ["sync_staged", "sync_planned"] {
        db.sql().execute(
            &format!("DELETE FROM {table} WHERE account = ?1 AND run_id = ?2 AND attempt = ?3"),
            &values![db.account(), run.id, run.attempt],
        )?;
    }
    Ok(())
}

/// Stages one page, in one transaction: its records, then its unreadable records (a record
/// listed twice on one page keeps its first copy; across pages, the lowest page's).
pub fn stage_page(
    db: &mut Db,
    run: Held,
    page: u32,
    records: Vec<Received>,
    unreadable: Vec<Unreadable>,
) -> Result<(), DbError> {
    stage(db, run, page, records, unreadable, false).map(drop)
}

/// What staging a page under watch found ([`stage_page_watched`]).
#[derive(Debug, Default)]
pub struct StagedPage {
    /// The page's readable records as it staged them: the first copy of each id on the page.
    pub kept: Vec<Received>,
    /// The ids of the page (readable or not) that an earlier page had staged already, each
    /// with the client of the copy staged then: whichever copy is kept, what was read of
    /// either client may no longer be what is staged.
    pub clashes: Vec<(String, String)>,
}

/// [`stage_page`], also telling what it staged and which ids earlier pages had staged, for a
/// caller that works on the records before the listing ends.
pub fn stage_page_watched(
    db: &mut Db,
    run: Held,
    page: u32,
    records: Vec<Received>,
    unreadable: Vec<Unreadable>,
) -> Result<StagedPage, DbError> {
    stage(db, run, page, records, unreadable, true)
}

fn stage(
    db: &mut Db,
    run: Held,
    page: u32,
    records: Vec<Received>,
    unreadable: Vec<Unreadable>,
    watch: bool,
) -> Result<StagedPage, DbError> {
    let account = db.account().to_string();
    let mut taken: HashSet<String> = HashSet::with_capacity(records.len());
    let mut rows: Vec<[Value; 19]> = Vec::with_capacity(records.len() + unreadable.len());
    let mut staged = StagedPage::default();
    let mut seq: i64 = 0;
    for r in records {
        seq += 1;
        if !taken.insert(r.source_id.clone()) {
            continue;
        }
        let s = &r.record;
        rows.push(values![
            account.as_str(),
            run.id,
            run.attempt,
            r.source_id.as_str(),
            0i64,
            r.client.as_str(),
            page,
            seq,
            None::<String>,
            s.name.as_str(),
            s.organization_id.clone(),
            s.short_name.clone(),
            s.type_name.clone(),
            s.status_name.clone(),
            s.hostname.clone(),
            s.primary_ip.clone(),
            s.serial_number.clone(),
            json!(s.mac_addresses).to_string(),
            s.archived
        ]);
        if watch {
            staged.kept.push(r);
        }
    }
    for bad in unreadable {
        seq += 1;
        // Ids of unreadable records share the records' key; the others are numbered.
        let (source_id, slot) = match bad.source_id {
            Some(id) => {
                if !taken.insert(id.clone()) {
                    continue;
                }
                (id, 0)
            }
            None => (String::new(), (i64::from(page) << 24) | seq),
        };
        rows.push(values![
            account.as_str(),
            run.id,
            run.attempt,
            source_id,
            slot,
            "",
            page,
            seq,
            Some(bad.detail),
            "",
            None::<String>,
            None::<String>,
            None::<String>,
            None::<String>,
            None::<String>,
            None::<String>,
            None::<String>,
            "[]",
            false
        ]);
    }
    let tx = db.begin_working()?;
    if watch && !taken.is_empty() {
        let ids: Vec<&str> = taken.iter().map(String::as_str).collect();
        for row in sql::query_in(
            &tx,
            "SELECT source_id, client FROM sync_staged
             WHERE account = ?1 AND run_id = ?2 AND attempt = ?3 AND slot = 0 AND source_id",
            &values![account.as_str(), run.id, run.attempt],
            &ids,
            "",
        )? {
            staged.clashes.push((row.text(0)?, row.text(1)?));
        }
    }
    sql::insert_many(
        &tx,
        STAGED_COLUMNS,
        "ON CONFLICT (account, run_id, attempt, source_id, slot) DO UPDATE SET
             client = excluded.client, page = excluded.page, seq = excluded.seq,
             detail = excluded.detail, name = excluded.name,
             organization_id = excluded.organization_id, short_name = excluded.short_name,
             type_name = excluded.type_name, status_name = excluded.status_name,
             hostname = excluded.hostname, primary_ip = excluded.primary_ip,
             serial_number = excluded.serial_number, mac_addresses = excluded.mac_addresses,
             archived = excluded.archived
         WHERE excluded.page < sync_staged.page",
        19,
        rows,
    )?;
    tx.commit()?;
    Ok(staged)
}

/// Takes back what was planned for the records staged under `clients` and for the records
/// `ids`: the plan of a batch matched before its clients' records were all in, to be planned
/// again. Returns the planned rows removed.
pub fn unplan(db: &mut Db, run: Held, clients: &[&str], ids: &[&str]) -> Result<u64, DbError> {
    let account = db.account().to_string();
    let of_run = values![account.as_str(), run.id, run.attempt];
    let tx = db.begin_working()?;
    let mut removed = sql::execute_in(
        &tx,
        "DELETE FROM sync_planned
         WHERE account = ?1 AND run_id = ?2 AND attempt = ?3 AND source_id IN (
             SELECT source_id FROM sync_staged
             WHERE account = ?1 AND run_id = ?2 AND attempt = ?3 AND slot = 0 AND client",
        &of_run,
        clients,
        ")",
    )?;
    removed += sql::execute_in(
        &tx,
        "DELETE FROM sync_planned WHERE account = ?1 AND run_id = ?2 AND attempt = ?3
           AND source_id",
        &of_run,
        ids,
        "",
    )?;
    tx.commit()?;
    Ok(removed)
}

/// How many distinct records `run` staged: (readable, unreadable).
pub fn staged_count(db: &Db, run: Held) -> Result<(u64, u64), DbError> {
    let row = db.sql().query_one(
        "SELECT coalesce(sum(CASE WHEN detail IS NULL THEN 1 ELSE 0 END), 0),
                coalesce(sum(CASE WHEN detail IS NULL THEN 0 ELSE 1 END), 0)
         FROM sync_staged WHERE account = ?1 AND run_id = ?2 AND attempt = ?3",
        &values![db.account(), run.id, run.attempt],
    )?;
    let count = |i| u64::try_from(row.int(i)?).map_err(|_| DbError::Sql("a negative count".into()));
    Ok((count(0)?, count(1)?))
}

/// How many readable records `run` staged under each client (`""`: none), by client.
pub fn client_sizes(db: &Db, run: Held) -> Result<Vec<(String, u64)>, DbError> {
    db.sql()
        .query(
            "SELECT client, count(*) FROM sync_staged
             WHERE account = ?1 AND run_id = ?2 AND attempt = ?3 AND detail IS NULL
             GROUP BY client ORDER BY client",
            &values![db.account(), run.id, run.attempt],
        )?
        .iter()
        .map(|r| Ok((r.text(0)?, u64::try_from(r.int(1)?).unwrap_or(0))))
        .collect()
}

/// Where a read of staged records stopped: the last (page, position) read.
pub type Cursor = (i64, i64);

/// Records read back, each with its id.
pub type Records = Vec<(String, SeenRecord)>;

/// The readable records of `run` under the clients from `first` to `last` (in the database's
/// order), by client and then in the order received.
pub fn read_clients(db: &Db, run: Held, first: &str, last: &str) -> Result<Records, DbError> {
    db.sql()
        .query(
            &format!(
                "SELECT source_id, {RECORD_COLUMNS} FROM sync_staged
                 WHERE account = ?1 AND run_id = ?2 AND attempt = ?3 AND client >= ?4
                   AND client <= ?5 AND detail IS NULL
                 ORDER BY client, page, seq"
            ),
            &values![db.account(), run.id, run.attempt, first, last],
        )?
        .iter()
        .map(|r| Ok((r.text(0)?, seen_at(r, 1)?)))
        .collect()
}

/// At most `limit` readable records of `run` under `client`, in the order received, after
/// `after`; with the cursor to continue from.
pub fn read_client(
    db: &Db,
    run: Held,
    client: &str,
    after: Option<Cursor>,
    limit: usize,
) -> Result<(Records, Option<Cursor>), DbError> {
    let (page, seq) = after.unwrap_or((i64::MIN, i64::MIN));
    let rows = db.sql().query(
        &format!(
            "SELECT source_id, {RECORD_COLUMNS}, page, seq FROM sync_staged
             WHERE account = ?1 AND run_id = ?2 AND attempt = ?3 AND client = ?4
               AND detail IS NULL AND (page > ?5 OR (page = ?5 AND seq > ?6))
             ORDER BY page, seq LIMIT ?7"
        ),
        &values![
            db.account(),
            run.id,
            run.attempt,
            client,
            page,
            seq,
            i64::try_from(limit).unwrap_or(i64::MAX)
        ],
    )?;
    let cursor = match rows.last() {
        Some(r) => Some((r.int(11)?, r.int(12)?)),
        None => after,
    };
    let records = rows
        .iter()
        .map(|r| Ok((r.text(0)?, seen_at(r, 1)?)))
        .collect::<Result<_, DbError>>()?;
    Ok((records, cursor))
}

/// The record whose columns start at `at` ([`RECORD_COLUMNS`]).
fn seen_at(r: &Row, at: usize) -> Result<SeenRecord, DbError> {
    Ok(SeenRecord {
        name: r.text(at)?,
        organization_id: r.opt_text(at + 1)?,
        short_name: r.opt_text(at + 2)?,
        type_name: r.opt_text(at + 3)?,
        status_name: r.opt_text(at + 4)?,
        hostname: r.opt_text(at + 5)?,
        primary_ip: r.opt_text(at + 6)?,
        serial_number: r.opt_text(at + 7)?,
        mac_addresses: serde_json::from_str(&r.text(at + 8)?)
            .map_err(|e| DbError::Sql(format!("a staged MAC list does not parse: {e}")))?,
        archived: r.int(at + 9)? != 0,
    })
}

/// Stages what the plan decided for a batch of records, in one transaction. A record given
/// twice the same kind of row keeps the last.
pub fn stage_planned(db: &mut Db, run: Held, planned: &[Planned]) -> Result<(), DbError> {
    let account = db.account().to_string();
    let mut last: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (n, p) in planned.iter().enumerate() {
        last.insert(p.key(), n);
    }
    let rows = last.values().map(|&n| planned[n].row(&account, run));
    let tx = db.begin_working()?;
    sql::insert_many(
        &tx,
        "INSERT INTO sync_planned (account, run_id, attempt, op, source_id, name, scopable_id,
                                   evidence, reason, candidates, suggestions, why, gone)",
        "ON CONFLICT (account, run_id, attempt, op, source_id) DO UPDATE SET
             name = excluded.name, scopable_id = excluded.scopable_id,
             evidence = excluded.evidence, reason = excluded.reason,
             candidates = excluded.candidates, suggestions = excluded.suggestions,
             why = excluded.why, gone = excluded.gone",
        13,
        rows,
    )?;
    tx.commit()
}

/// Plans the removal of every automatic link of `kind` whose record `run` did not receive
/// readable ("the record no longer exists at the source"); returns how many.
pub fn plan_gone(db: &Db, run: Held, connector: &str, kind: &str) -> Result<u64, DbError> {
    db.sql().execute(
        "INSERT INTO sync_planned (account, run_id, attempt, op, source_id, scopable_id, why, gone)
         SELECT l.account, ?4, ?5, 'remove', l.source_id, l.scopable_id,
                'the record no longer exists at the source', 1
         FROM links l
         WHERE l.account = ?1 AND l.connector = ?2 AND l.kind = ?3 AND l.source = 'auto'
           AND NOT EXISTS (
               SELECT 1 FROM sync_staged s
               WHERE s.account = ?1 AND s.run_id = ?4 AND s.attempt = ?5
                 AND s.source_id = l.source_id AND s.slot = 0 AND s.detail IS NULL)",
        &values![db.account(), connector, kind, run.id, run.attempt],
    )
}

/// Most unreadable records without an id numbered per read.
const ANONYMOUS_BATCH: i64 = 1_000;

/// Plans an `invalid-record` row for every unreadable record of `run`: under its id, or under
/// a placeholder (`(no id #n)`, numbered in the order received) that no record of the listing
/// holds. Returns how many.
pub fn plan_unreadable(db: &mut Db, run: Held) -> Result<u64, DbError> {
    let account = db.account().to_string();
    let fixed = values![account.as_str(), run.id, run.attempt];
    let mut count = db.sql().execute(
        "INSERT INTO sync_planned (account, run_id, attempt, op, source_id, name, reason,
                                   candidates, suggestions)
         SELECT account, run_id, attempt, 'unplaced', source_id, detail, 'invalid-record',
                '[]', '[]'
         FROM sync_staged
         WHERE account = ?1 AND run_id = ?2 AND attempt = ?3 AND slot = 0
           AND detail IS NOT NULL",
        &fixed,
    )?;
    let mut placeholders = 0u64;
    let mut after = 0i64;
    loop {
        let rows = db.sql().query(
            "SELECT slot, detail FROM sync_staged
             WHERE account = ?1 AND run_id = ?2 AND attempt = ?3 AND source_id = ''
               AND slot > ?4
             ORDER BY slot LIMIT ?5",
            &values![
                account.as_str(),
                run.id,
                run.attempt,
                after,
                ANONYMOUS_BATCH
            ],
        )?;
        let Some(last) = rows.last() else { break };
        after = last.int(0)?;
        let mut planned = Vec::with_capacity(rows.len());
        for r in &rows {
            let source_id = loop {
                placeholders += 1;
                let candidate = format!("(no id #{placeholders})");
                let taken = db
                    .sql()
                    .query_opt(
                        "SELECT 1 FROM sync_staged WHERE account = ?1 AND run_id = ?2
                           AND attempt = ?3 AND source_id = ?4 AND slot = 0",
                        &values![account.as_str(), run.id, run.attempt, candidate.as_str()],
                    )?
                    .is_some();
                if !taken {
                    break candidate;
                }
            };
            planned.push(Planned::Unplaced {
                source_id,
                name: r.opt_text(1)?.unwrap_or_default(),
                reason: "invalid-record".into(),
                candidates: "[]".into(),
                suggestions: "[]".into(),
            });
        }
        count += planned.len() as u64;
        stage_planned(db, run, &planned)?;
    }
    Ok(count)
}

/// The links the plan of `run` adds and removes: its change report.
pub fn planned_changes(db: &Db, run: Held) -> Result<Vec<Planned>, DbError> {
    db.sql()
        .query(
            "SELECT op, source_id, name, scopable_id, evidence, why, gone FROM sync_planned
             WHERE account = ?1 AND run_id = ?2 AND attempt = ?3 AND op IN ('add', 'remove')",
            &values![db.account(), run.id, run.attempt],
        )?
        .iter()
        .map(|r| {
            Ok(if r.text(0)? == "add" {
                Planned::Add {
                    source_id: r.text(1)?,
                    name: r.opt_text(2)?.unwrap_or_default(),
                    scopable_id: r.text(3)?,
                    evidence: r.opt_text(4)?.unwrap_or_default(),
                }
            } else {
                Planned::Remove {
                    source_id: r.text(1)?,
                    name: r.opt_text(2)?,
                    scopable_id: r.text(3)?,
                    why: r.opt_text(5)?.unwrap_or_default(),
                    gone: r.int(6)? != 0,
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::databases;

    /// A `running` run of `db`'s account holding its lease for another minute, as `attempt`.
    fn live_run(db: &Db, attempt: i64) -> Held {
        let id = db
            .sql()
            .query_one(
                "INSERT INTO sync_runs (account, connector, kind, dry_run, started_at, status,
                                        lease_until, attempt)
                 VALUES (?1, 'itglue', 'configuration', 0, 't', 'running', ?2, ?3) RETURNING id",
                &values![db.account(), crate::db::now_ms() + 60_000, attempt],
            )
            .unwrap()
            .int(0)
            .unwrap();
        Held { id, attempt }
    }

    fn received(id: &str, client: &str, name: &str) -> Received {
        Received {
            source_id: id.into(),
            client: client.into(),
            record: SeenRecord {
                name: name.into(),
                mac_addresses: vec!["00:11:22:33:44:55".into()],
                ..SeenRecord::default()
            },
        }
    }

    fn unreadable(id: Option<&str>, detail: &str) -> Unreadable {
        Unreadable {
            source_id: id.map(str::to_string),
            detail: detail.into(),
        }
    }

    fn names(records: &Records) -> Vec<(&str, &str)> {
        records
            .iter()
            .map(|(id, s)| (id.as_str(), s.name.as_str()))
            .collect()
    }

    /// Pages arrive in any order; a record listed twice keeps the copy a listing read in page
    /// order would keep (the lowest page's, the first on a page, a record before an unreadable
    /// record of the same id), and records read back in the order received, by client.
    #[test]
    fn a_record_listed_twice_keeps_the_copy_of_the_lowest_page() {
        for t in databases("staging_order") {
            let mut db = t.open("acct");
            let run = live_run(&db, 1);
            stage_page(
                &mut db,
                run,
                3,
                vec![
                    received("5", "c2", "five on 3"),
                    received("1", "c1", "one on 3"),
                ],
                vec![unreadable(Some("7"), "bad on 3")],
            )
            .unwrap();
            stage_page(
                &mut db,
                run,
                2,
                vec![
                    received("1", "c1", "one on 2"),
                    received("1", "c1", "one again on 2"),
                    received("7", "c1", "seven on 2"),
                ],
                vec![
                    unreadable(Some("1"), "bad one on 2"),
                    unreadable(None, "no id"),
                ],
            )
            .unwrap();
            stage_page(
                &mut db,
                run,
                4,
                vec![received("1", "c1", "one on 4")],
                vec![],
            )
            .unwrap();
            assert_eq!(staged_count(&db, run).unwrap(), (3, 1), "{}", t.name);
            let all = read_clients(&db, run, "c1", "c2").unwrap();
            assert_eq!(
                names(&all),
                [("1", "one on 2"), ("7", "seven on 2"), ("5", "five on 3")],
                "{}",
                t.name
            );
            assert_eq!(all[0].1.mac_addresses, ["00:11:22:33:44:55"], "{}", t.name);
            assert_eq!(
                client_sizes(&db, run).unwrap(),
                [("c1".to_string(), 2), ("c2".to_string(), 1)],
                "{}",
                t.name
            );
            // Read in pieces by a cursor: every record once, in order.
            let (first, after) = read_client(&db, run, "c1", None, 1).unwrap();
            let (second, after) = read_client(&db, run, "c1", after, 1).unwrap();
            let (none, _) = read_client(&db, run, "c1", after, 1).unwrap();
            assert_eq!(
                (names(&first), names(&second), none.len()),
                (vec![("1", "one on 2")], vec![("7", "seven on 2")], 0),
                "{}",
                t.name
            );
            // Another claim's rows are its own.
            let other = Held {
                id: run.id,
                attempt: 2,
            };
            assert_eq!(staged_count(&db, other).unwrap(), (0, 0), "{}", t.name);
        }
    }

    /// Records without an id get placeholders, numbered in the order received, that no
    /// record of the listing holds (readable or not).
    #[test]
    fn placeholders_for_id_less_records_never_collide_with_real_ids() {
        for t in databases("staging_placeholders") {
            let mut db = t.open("acct");
            let run = live_run(&db, 1);
            stage_page(
                &mut db,
                run,
                1,
                vec![received("(no id #1)", "", "named like a placeholder")],
                vec![
                    unreadable(None, "no id"),
                    unreadable(Some("(no id #2)"), "bad name"),
                ],
            )
            .unwrap();
            stage_page(
                &mut db,
                run,
                2,
                vec![],
                vec![unreadable(None, "no id either")],
            )
            .unwrap();
            assert_eq!(plan_unreadable(&mut db, run).unwrap(), 3, "{}", t.name);
            let rows = db
                .sql()
                .query(
                    "SELECT source_id, name, reason FROM sync_planned
                     WHERE run_id = ?1 AND op = 'unplaced' ORDER BY source_id",
                    &values![run.id],
                )
                .unwrap();
            let rows: Vec<(String, String, String)> = rows
                .iter()
                .map(|r| (r.text(0).unwrap(), r.text(1).unwrap(), r.text(2).unwrap()))
                .collect();
            let row = |id: &str, name: &str| {
                (
                    id.to_string(),
                    name.to_string(),
                    "invalid-record".to_string(),
                )
            };
            assert_eq!(
                rows,
                [
                    row("(no id #2)", "bad name"),
                    row("(no id #3)", "no id"),
                    row("(no id #4)", "no id either"),
                ],
                "{}",
                t.name
            );
        }
    }

    /// The working rows of a run that ended, or of an earlier claim of a run taken over, go;
    /// those of the live claim stay, whoever clears.
    #[test]
    fn only_the_working_rows_of_live_claims_stay() {
        for t in databases("staging_stale") {
            let mut db = t.open("acct");
            let live = live_run(&db, 2);
            let ended = live_run(&db, 1);
            db.sql()
                .execute(
                    "UPDATE sync_runs SET status = 'ok' WHERE id = ?1",
                    &values![ended.id],
                )
                .unwrap();
            let earlier = Held {
                id: live.id,
                attempt: 1,
            };
            for run in [live, ended, earlier] {
                stage_page(&mut db, run, 1, vec![received("1", "", "one")], vec![]).unwrap();
                stage_planned(
                    &mut db,
                    run,
                    &[Planned::Kept {
                        source_id: "1".into(),
                        scopable_id: "c1".into(),
                        evidence: "[]".into(),
                    }],
                )
                .unwrap();
            }
            // The lapsed claim, ending, clears its own rows and never its successor's.
            clear(&db, earlier).unwrap();
            assert_eq!(staged_count(&db, earlier).unwrap(), (0, 0), "{}", t.name);
            assert_eq!(staged_count(&db, live).unwrap(), (1, 0), "{}", t.name);
            // The ended run's rows go; the live claim's stay.
            assert_eq!(clear_stale(&db).unwrap(), 2, "{}", t.name);
            assert_eq!(staged_count(&db, ended).unwrap(), (0, 0), "{}", t.name);
            assert_eq!(staged_count(&db, live).unwrap(), (1, 0), "{}", t.name);
            clear(&db, live).unwrap();
            let left = db
                .sql()
                .query_one(
                    "SELECT (SELECT count(*) FROM sync_staged) + (SELECT count(*) FROM sync_planned)",
                    &[],
                )
                .unwrap()
                .int(0)
                .unwrap();
            assert_eq!(left, 0, "{}", t.name);
        }
    }
}

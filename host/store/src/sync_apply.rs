//! What a sync reads before planning (stored records, decisions, links, the basis its plan
//! rests on) and the one transaction that applies a planned sync, or refreshes the `unplaced`
//! rows of a local re-match. Rows are those of the handle's account.

use crate::db::{self, DbError};
use crate::handle::{Db, Tx};
use crate::runs::{self, Held, RunCounts};
use crate::sql::{self, Sql};
#[cfg(test)]
use crate::staging::{self, Planned};
use crate::values;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};

pub use crate::staging::SeenRecord;

/// One (unplaced) row: (source id, name, reason, candidates JSON, suggestions JSON).
pub type UnplacedRow = (String, String, String, String, String);

/// The stored records of a kind, each with whether it keeps every field (rows written before
/// the schema kept them, or whose MAC list cannot be read, do not, until the next sync).
pub fn stored_records(
    db: &Db,
    connector: &str,
    kind: &str,
) -> Result<BTreeMap<String, (SeenRecord, bool)>, DbError> {
    stored_records_on(db.sql(), db.account(), connector, kind)
}

fn stored_records_on(
    sql: &dyn Sql,
    account: &str,
    connector: &str,
    kind: &str,
) -> Result<BTreeMap<String, (SeenRecord, bool)>, DbError> {
    let rows = sql.query(
        "SELECT source_id, name, organization_id, short_name, type_name, status_name, hostname,
                primary_ip, serial_number, mac_addresses, archived, identifiers_kept
         FROM source_records WHERE account = ?1 AND connector = ?2 AND kind = ?3",
        &values![account, connector, kind],
    )?;
    let mut records = BTreeMap::new();
    for r in rows {
        let macs: Option<Vec<String>> = serde_json::from_str(&r.text(9)?).ok();
        let kept = r.int(11)? != 0 && macs.is_some();
        let seen = SeenRecord {
            name: r.text(1)?,
            organization_id: r.opt_text(2)?,
            short_name: r.opt_text(3)?,
            type_name: r.opt_text(4)?,
            status_name: r.opt_text(5)?,
            hostname: r.opt_text(6)?,
            primary_ip: r.opt_text(7)?,
            serial_number: r.opt_text(8)?,
            mac_addresses: macs.unwrap_or_default(),
            archived: r.int(10)? != 0,
        };
        records.insert(r.text(0)?, (seen, kept));
    }
    Ok(records)
}

/// What a sync's decisions rest on: every manual decision and every organization link. If it
/// changes while the sync fetches, the plan is stale and is not applied.
pub fn basis(db: &Db, connector: &str) -> Result<String, DbError> {
    basis_on(db.sql(), db.account(), connector)
}

fn basis_on(sql: &dyn Sql, account: &str, connector: &str) -> Result<String, DbError> {
    let rows = sql.query(
        "SELECT 'd', kind, source_id, action, coalesce(scopable_id, '') FROM decisions
         WHERE account = ?1 AND connector = ?2
         UNION ALL
         SELECT 'l', kind, source_id, source, scopable_id FROM links
         WHERE account = ?1 AND connector = ?2 AND kind = 'organization'
         ORDER BY 1, 2, 3",
        &values![account, connector],
    )?;
    let lines = rows
        .iter()
        .map(|r| {
            Ok(format!(
                "{}|{}|{}|{}|{}",
                r.text(0)?,
                r.text(1)?,
                r.text(2)?,
                r.text(3)?,
                r.text(4)?
            ))
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    Ok(lines.join("\n"))
}

/// The manual decisions of a kind, by source id: (source id, action, Scopable id).
pub fn decisions(
    db: &Db,
    connector: &str,
    kind: &str,
) -> Result<Vec<(String, String, Option<String>)>, DbError> {
    db.sql()
        .query(
            "SELECT source_id, action, scopable_id FROM decisions
             WHERE account = ?1 AND connector = ?2 AND kind = ?3 ORDER BY source_id",
            &values![db.account(), connector, kind],
        )?
        .iter()
        .map(|r| Ok((r.text(0)?, r.text(1)?, r.opt_text(2)?)))
        .collect()
}

/// Automatic links of a kind: source id -> scopable id.
pub fn auto_links(
    db: &Db,
    connector: &str,
    kind: &str,
) -> Result<HashMap<String, String>, DbError> {
    pairs(
        db.sql(),
        "SELECT source_id, scopable_id FROM links
         WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND source = 'auto'",
        db.account(),
        connector,
        kind,
    )
}

/// The automatic links of a kind held by the records `ids`: source id -> (scopable id,
/// evidence JSON).
pub fn auto_links_of(
    db: &Db,
    connector: &str,
    kind: &str,
    ids: &[&str],
) -> Result<HashMap<String, (String, String)>, DbError> {
    sql::query_in(
        db.sql(),
        "SELECT source_id, scopable_id, evidence FROM links
         WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND source = 'auto' AND source_id",
        &values![db.account(), connector, kind],
        ids,
        "",
    )?
    .iter()
    .map(|r| Ok((r.text(0)?, (r.text(1)?, r.text(2)?))))
    .collect()
}

/// The stored names of the automatically linked records of a kind: source id -> name.
pub fn auto_linked_names(
    db: &Db,
    connector: &str,
    kind: &str,
) -> Result<HashMap<String, String>, DbError> {
    pairs(
        db.sql(),
        "SELECT r.source_id, r.name FROM source_records r
         JOIN links l ON l.account = r.account AND l.connector = r.connector
              AND l.kind = r.kind AND l.source_id = r.source_id
         WHERE r.account = ?1 AND r.connector = ?2 AND r.kind = ?3 AND l.source = 'auto'",
        db.account(),
        connector,
        kind,
    )
}

/// The two text columns of `query`'s rows (on account, connector and kind), as a map.
fn pairs(
    sql: &dyn Sql,
    query: &str,
    account: &str,
    connector: &str,
    kind: &str,
) -> Result<HashMap<String, String>, DbError> {
    sql.query(query, &values![account, connector, kind])?
        .iter()
        .map(|r| Ok((r.text(0)?, r.text(1)?)))
        .collect()
}

/// One link change of a planned sync.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkChange<'a> {
    /// Remove the automatic link of this source id.
    Remove {
        /// source id.
        source_id: &'a str,
    },
    /// Add an automatic link.
    Add {
        /// source id.
        source_id: &'a str,
        /// Scopable id.
        scopable_id: &'a str,
        /// Evidence names.
        evidence: &'a [String],
    },
}

/// The rows a planned sync writes (a plan held in memory, as the tests write them).
#[cfg(test)]
#[derive(Debug, Clone)]
pub struct PlannedSync<'a> {
    /// The run applying it (it must still hold its lease, as this attempt).
    pub run: Held,
    /// [`basis`] when the sync started.
    pub basis: &'a str,
    /// Links removed and added, in this order.
    pub changes: Vec<LinkChange<'a>>,
    /// Links to keep with refreshed evidence: (source id, scopable id, evidence JSON).
    pub kept: &'a [(String, String, String)],
    /// The kind's `unplaced` rows, replacing the stored ones.
    pub unplaced: &'a [UnplacedRow],
    /// Every record received, replacing the stored ones.
    pub seen: &'a BTreeMap<String, SeenRecord>,
    /// The run's counts.
    pub counts: RunCounts,
}

/// What applying a planned sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Everything was written and the run recorded as `ok`.
    Done {
        /// How many rows of links, unplaced rows and stored records were written (inserted,
        /// changed or deleted): none when everything was as the plan found it.
        written: u64,
    },
    /// The run no longer holds its lease; nothing was written.
    LeaseLost,
    /// Manual decisions or organization links changed since the plan; nothing was written.
    BasisChanged,
}

/// Applies a planned sync held in memory: stages its rows ([`crate::staging`]) and applies them
/// ([`apply_staged`]), in one transaction that records the run as `ok`.
#[cfg(test)]
pub fn apply(
    db: &mut Db,
    connector: &str,
    kind: &str,
    plan: &PlannedSync<'_>,
) -> Result<Applied, DbError> {
    let run = plan.run;
    let received = plan.seen.iter().map(|(id, s)| staging::Received {
        source_id: id.clone(),
        client: String::new(),
        record: s.clone(),
    });
    staging::stage_page(db, run, 1, received.collect(), Vec::new())?;
    let mut planned: Vec<Planned> = Vec::new();
    for change in &plan.changes {
        planned.push(match change {
            LinkChange::Remove { source_id } => Planned::Remove {
                source_id: source_id.to_string(),
                name: None,
                scopable_id: String::new(),
                why: String::new(),
                gone: false,
            },
            LinkChange::Add {
                source_id,
                scopable_id,
                evidence,
            } => Planned::Add {
                source_id: source_id.to_string(),
                name: String::new(),
                scopable_id: scopable_id.to_string(),
                evidence: json!(evidence).to_string(),
            },
        });
    }
    for (source_id, scopable_id, evidence) in plan.kept {
        planned.push(Planned::Kept {
            source_id: source_id.clone(),
            scopable_id: scopable_id.clone(),
            evidence: evidence.clone(),
        });
    }
    for (source_id, name, reason, candidates, suggestions) in plan.unplaced {
        planned.push(Planned::Unplaced {
            source_id: source_id.clone(),
            name: name.clone(),
            reason: reason.clone(),
            candidates: candidates.clone(),
            suggestions: suggestions.clone(),
        });
    }
    staging::stage_planned(db, run, &planned)?;
    let applied = apply_staged(db, connector, kind, run, plan.basis, &plan.counts);
    staging::clear(db, run)?;
    applied
}

/// Applies the staged rows of `run` ([`crate::staging`]: the records it received and what its
/// plan decided) in one transaction, and records the run as `ok` in it. Only rows that change
/// are written: a sync that finds everything as it was changes no link, unplaced row or
/// stored record.
///
/// Applies of one connector, and decisions about it, wait for each other (on PostgreSQL,
/// transaction locks; on SQLite, the write lock), so that each apply checks the basis with
/// the others' writes in sight.
pub fn apply_staged(
    db: &mut Db,
    connector: &str,
    kind: &str,
    run: Held,
    basis: &str,
    counts: &RunCounts,
) -> Result<Applied, DbError> {
    let account = db.account().to_string();
    let account = account.as_str();
    let tx = db.begin()?;
    lock_connector(&tx, account, connector)?;
    // Only the holder of the lease writes: a run whose lease lapsed may have been taken over.
    if !hold_lease(&tx, account, run)? {
        return Ok(Applied::LeaseLost);
    }
    if basis_on(&tx, account, connector)? != basis {
        return Ok(Applied::BasisChanged);
    }
    let now = db::now();
    let of_run = values![account, connector, kind, run.id, run.attempt];
    let mut written = 0;
    // Removals first: a record whose link moves is removed, then added again.
    written += tx.execute(
        "DELETE FROM links
         WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND source = 'auto'
           AND source_id IN (SELECT source_id FROM sync_planned
                             WHERE account = ?1 AND run_id = ?4 AND attempt = ?5
                               AND op = 'remove')",
        &of_run,
    )?;
    written += tx.execute(
        "INSERT INTO links (account, connector, kind, source_id, scopable_id, evidence,
                            linked_at, source)
         SELECT account, CAST(?2 AS TEXT), CAST(?3 AS TEXT), source_id, scopable_id, evidence,
                CAST(?6 AS TEXT), 'auto'
         FROM sync_planned
         WHERE account = ?1 AND run_id = ?4 AND attempt = ?5 AND op = 'add'",
        &values![account, connector, kind, run.id, run.attempt, now.as_str()],
    )?;
    // Driven by the kept rows (few: only links whose evidence changed are planned), each
    // finding its link by key, rather than by a pass over every link of the kind.
    written += tx.execute(
        "UPDATE links SET evidence = p.evidence
         FROM (SELECT source_id, scopable_id, evidence FROM sync_planned
               WHERE account = ?1 AND run_id = ?4 AND attempt = ?5 AND op = 'kept') AS p
         WHERE links.account = ?1 AND links.connector = ?2 AND links.kind = ?3
           AND links.source = 'auto' AND links.source_id = p.source_id
           AND links.scopable_id = p.scopable_id AND links.evidence <> p.evidence",
        &of_run,
    )?;
    // The kind's unplaced rows become the plan's: those that differ go, the new ones come.
    written += tx.execute(
        "DELETE FROM unplaced
         WHERE account = ?1 AND connector = ?2 AND kind = ?3
           AND NOT EXISTS (
             SELECT 1 FROM sync_planned p
             WHERE p.account = ?1 AND p.run_id = ?4 AND p.attempt = ?5 AND p.op = 'unplaced'
               AND p.source_id = unplaced.source_id AND p.name = unplaced.name
               AND p.reason = unplaced.reason AND p.candidates = unplaced.candidates
               AND p.suggestions = unplaced.suggestions)",
        &of_run,
    )?;
    written += tx.execute(
        "INSERT INTO unplaced (account, connector, kind, source_id, name, reason, candidates,
                               suggestions)
         SELECT account, CAST(?2 AS TEXT), CAST(?3 AS TEXT), source_id, name, reason,
                candidates, suggestions
         FROM sync_planned p
         WHERE p.account = ?1 AND p.run_id = ?4 AND p.attempt = ?5 AND p.op = 'unplaced'
           AND NOT EXISTS (
             SELECT 1 FROM unplaced u
             WHERE u.account = ?1 AND u.connector = ?2 AND u.kind = ?3
               AND u.source_id = p.source_id)",
        &of_run,
    )?;
    // The stored records become those received: the gone go, the changed are written.
    written += tx.execute(
        "DELETE FROM source_records
         WHERE account = ?1 AND connector = ?2 AND kind = ?3
           AND NOT EXISTS (
             SELECT 1 FROM sync_staged s
             WHERE s.account = ?1 AND s.run_id = ?4 AND s.attempt = ?5 AND s.slot = 0
               AND s.detail IS NULL AND s.source_id = source_records.source_id)",
        &of_run,
    )?;
    written += tx.execute(
        "INSERT INTO source_records (account, connector, kind, source_id, name,
             organization_id, short_name, type_name, status_name, hostname, primary_ip,
             serial_number, mac_addresses, archived, identifiers_kept)
         SELECT s.account, CAST(?2 AS TEXT), CAST(?3 AS TEXT), s.source_id, s.name,
             s.organization_id, s.short_name, s.type_name, s.status_name, s.hostname,
             s.primary_ip, s.serial_number, s.mac_addresses, s.archived, 1
         FROM sync_staged s
         WHERE s.account = ?1 AND s.run_id = ?4 AND s.attempt = ?5 AND s.slot = 0
           AND s.detail IS NULL
           AND NOT EXISTS (
             SELECT 1 FROM source_records r
             WHERE r.account = ?1 AND r.connector = ?2 AND r.kind = ?3
               AND r.source_id = s.source_id AND r.identifiers_kept = 1
               AND r.name = s.name
               AND r.organization_id IS NOT DISTINCT FROM s.organization_id
               AND r.short_name IS NOT DISTINCT FROM s.short_name
               AND r.type_name IS NOT DISTINCT FROM s.type_name
               AND r.status_name IS NOT DISTINCT FROM s.status_name
               AND r.hostname IS NOT DISTINCT FROM s.hostname
               AND r.primary_ip IS NOT DISTINCT FROM s.primary_ip
               AND r.serial_number IS NOT DISTINCT FROM s.serial_number
               AND r.mac_addresses = s.mac_addresses AND r.archived = s.archived)
         ON CONFLICT (account, connector, kind, source_id) DO UPDATE SET
             name = excluded.name, organization_id = excluded.organization_id,
             short_name = excluded.short_name, type_name = excluded.type_name,
             status_name = excluded.status_name, hostname = excluded.hostname,
             primary_ip = excluded.primary_ip, serial_number = excluded.serial_number,
             mac_addresses = excluded.mac_addresses, archived = excluded.archived,
             identifiers_kept = excluded.identifiers_kept",
        &of_run,
    )?;
    runs::finish_on(&tx, account, run, "ok", counts, None)?;
    tx.commit()?;
    Ok(Applied::Done { written })
}

/// The lock (PostgreSQL; on SQLite a transaction already holds the only write lock) taken
/// first by every change of what a sync's plan rests on: an apply or a re-match of
/// `account`'s `connector`, and a decision about one of its records (`review`), so that
/// neither another apply nor a decision changes the basis between an apply's check and its
/// commit.
pub(crate) fn basis_lock(account: &str, connector: &str) -> String {
    format!("apply/{account}/{connector}")
}

fn lock_connector(tx: &Tx<'_>, account: &str, connector: &str) -> Result<(), DbError> {
    tx.lock(&basis_lock(account, connector))
}

/// Whether `account`'s `run` is `running`, as this attempt, with a lease that has not passed:
/// the fencing token of an apply. Checked by writing the row (unchanged), so that on PostgreSQL the row
/// stays locked until the transaction ends: a replica that finds the lease lapsed and marks
/// the run interrupted waits, then finds it finished, and cannot mark it in between.
fn hold_lease(tx: &dyn Sql, account: &str, run: Held) -> Result<bool, DbError> {
    let held = tx.execute(
        "UPDATE sync_runs SET lease_until = lease_until
         WHERE account = ?1 AND id = ?2 AND attempt = ?4 AND status = 'running'
           AND lease_until >= ?3",
        &values![account, run.id, tx.clock_ms()?, run.attempt],
    )?;
    Ok(held > 0)
}

/// Writes `unplaced` rows: (source id, name, reason, candidates JSON, suggestions JSON).
fn insert_unplaced(
    tx: &dyn Sql,
    account: &str,
    connector: &str,
    kind: &str,
    rows: &[UnplacedRow],
) -> Result<(), DbError> {
    // A record listed twice keeps its last row, as one statement per row would.
    let mut last: BTreeMap<&str, usize> = BTreeMap::new();
    for (n, row) in rows.iter().enumerate() {
        last.insert(row.0.as_str(), n);
    }
    let rows = last.values().map(|&n| {
        let (id, name, reason, candidates, suggestions) = &rows[n];
        values![
            account,
            connector,
            kind,
            id,
            name,
            reason,
            candidates,
            suggestions
        ]
    });
    sql::insert_many(
        tx,
        "INSERT INTO unplaced (account, connector, kind, source_id, name, reason, candidates,
                               suggestions)",
        "ON CONFLICT (account, connector, kind, source_id) DO UPDATE SET
             name = excluded.name, reason = excluded.reason,
             candidates = excluded.candidates, suggestions = excluded.suggestions",
        8,
        rows,
    )?;
    Ok(())
}

/// What the local re-match rests on: the decisions, the organization links, the links of the
/// kind and the last sync that applied.
pub fn rematch_basis(db: &Db, connector: &str, kind: &str) -> Result<String, DbError> {
    rematch_basis_on(db.sql(), db.account(), connector, kind)
}

fn rematch_basis_on(
    sql: &dyn Sql,
    account: &str,
    connector: &str,
    kind: &str,
) -> Result<String, DbError> {
    let links = sql
        .query(
            "SELECT source_id, scopable_id, source FROM links
             WHERE account = ?1 AND connector = ?2 AND kind = ?3 ORDER BY source_id",
            &values![account, connector, kind],
        )?
        .iter()
        .map(|r| Ok(format!("{}>{}>{}", r.text(0)?, r.text(1)?, r.text(2)?)))
        .collect::<Result<Vec<_>, DbError>>()?
        .join("|");
    let last_run = sql
        .query_one(
            "SELECT max(id) FROM sync_runs
             WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND status = 'ok'
               AND dry_run = 0",
            &values![account, connector, kind],
        )?
        .opt_int(0)?;
    Ok(format!(
        "{}\n{links}\n{}",
        basis_on(sql, account, connector)?,
        last_run.unwrap_or(0)
    ))
}

/// What refreshing a re-match's rows did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rematch {
    /// The rows were written; the link added at once, if one was: (source id, Scopable id).
    Done(Option<(String, String)>),
    /// [`rematch_basis`] changed since `started`; nothing was written.
    Changed,
}

/// In one transaction, unless [`rematch_basis`] is no longer `started`: replaces the `unplaced`
/// rows of the stored records of a kind with `unplaced`, and adds each automatic link of
/// `relink` (source id, Scopable id, evidence names) whose record and target no link holds.
/// It waits for, and is waited for by, the connector's applies ([`apply`]) and decisions. The
/// transaction runs on a connection of its own ([`Db::sibling`]).
pub fn apply_rematch(
    db: &Db,
    connector: &str,
    kind: &str,
    started: &str,
    unplaced: &[UnplacedRow],
    relink: &[(&str, &str, &[String])],
) -> Result<Rematch, DbError> {
    let account = db.account();
    let mut own = db.sibling()?;
    let tx = own.begin()?;
    lock_connector(&tx, account, connector)?;
    if rematch_basis_on(&tx, account, connector, kind)? != started {
        return Ok(Rematch::Changed);
    }
    tx.execute(
        "DELETE FROM unplaced WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND source_id IN
             (SELECT source_id FROM source_records
              WHERE account = ?1 AND connector = ?2 AND kind = ?3)",
        &values![account, connector, kind],
    )?;
    insert_unplaced(&tx, account, connector, kind, unplaced)?;
    let mut relinked = None;
    for (source_id, scopable_id, evidence) in relink {
        let added = tx.execute(
            "INSERT INTO links (account, connector, kind, source_id, scopable_id, source, evidence,
                                linked_at)
             SELECT ?1, ?2, ?3, ?4, ?5, 'auto', CAST(?6 AS TEXT), CAST(?7 AS TEXT)
             WHERE NOT EXISTS (SELECT 1 FROM links WHERE account = ?1 AND connector = ?2
                               AND kind = ?3 AND (source_id = ?4 OR scopable_id = ?5))",
            &values![
                account,
                connector,
                kind,
                *source_id,
                *scopable_id,
                json!(evidence).to_string(),
                db::now()
            ],
        )?;
        if added > 0 {
            relinked = Some((source_id.to_string(), scopable_id.to_string()));
        }
    }
    tx.commit()?;
    Ok(Rematch::Done(relinked))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::databases;
    use std::sync::Barrier;

    const C: &str = "itglue";
    const ORG: &str = "organization";

    /// A run of `db`'s account, written as the runs' functions would.
    fn insert_run(db: &Db, kind: &str, status: &str, lease_until: Option<i64>) -> i64 {
        db.sql()
            .query_one(
                "INSERT INTO sync_runs (account, connector, kind, dry_run, started_at, status,
                                        lease_until)
                 VALUES (?1, ?2, ?3, 0, '2024-01-01T00:00:00Z', ?4, ?5) RETURNING id",
                &values![db.account(), C, kind, status, lease_until],
            )
            .unwrap()
            .int(0)
            .unwrap()
    }

    /// A `running` run holding its lease for another minute.
    fn live_run(db: &Db) -> i64 {
        insert_run(db, ORG, "running", Some(db::now_ms() + 60_000))
    }

    fn insert_link(db: &Db, kind: &str, source_id: &str, scopable_id: &str, source: &str) {
        db.sql()
            .execute(
                "INSERT INTO links (account, connector, kind, source_id, scopable_id, source,
                                    evidence, linked_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, '[\"old\"]', 'then')",
                &values![db.account(), C, kind, source_id, scopable_id, source],
            )
            .unwrap();
    }

    /// Every link of `db`'s account: (kind, source id, Scopable id, source, evidence).
    fn links(db: &Db) -> Vec<(String, String, String, String, String)> {
        db.sql()
            .query(
                "SELECT kind, source_id, scopable_id, source, evidence FROM links
                 WHERE account = ?1 ORDER BY kind, source_id",
                &values![db.account()],
            )
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r.text(0).unwrap(),
                    r.text(1).unwrap(),
                    r.text(2).unwrap(),
                    r.text(3).unwrap(),
                    r.text(4).unwrap(),
                )
            })
            .collect()
    }

    /// The unplaced rows of `db`'s account: (kind, source id, reason).
    fn unplaced(db: &Db) -> Vec<(String, String, String)> {
        db.sql()
            .query(
                "SELECT kind, source_id, reason FROM unplaced WHERE account = ?1
                 ORDER BY kind, source_id",
                &values![db.account()],
            )
            .unwrap()
            .iter()
            .map(|r| (r.text(0).unwrap(), r.text(1).unwrap(), r.text(2).unwrap()))
            .collect()
    }

    fn insert_unplaced_row(db: &Db, kind: &str, source_id: &str) {
        db.sql()
            .execute(
                "INSERT INTO unplaced (account, connector, kind, source_id, name, reason,
                                       candidates, suggestions)
                 VALUES (?1, ?2, ?3, ?4, 'n', 'stale', '[]', '[]')",
                &values![db.account(), C, kind, source_id],
            )
            .unwrap();
    }

    /// A run's (status, lease, fetched, whether it has finished).
    fn run_row(db: &Db, id: i64) -> (String, Option<i64>, i64, bool) {
        let r = db
            .sql()
            .query_one(
                "SELECT status, lease_until, fetched, finished_at FROM sync_runs WHERE id = ?1",
                &values![id],
            )
            .unwrap();
        (
            r.text(0).unwrap(),
            r.opt_int(1).unwrap(),
            r.int(2).unwrap(),
            r.opt_text(3).unwrap().is_some(),
        )
    }

    fn named(name: &str) -> SeenRecord {
        SeenRecord {
            name: name.into(),
            ..SeenRecord::default()
        }
    }

    fn counts(fetched: u64) -> RunCounts {
        RunCounts {
            fetched,
            ..RunCounts::default()
        }
    }

    fn owned(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn a_planned_sync_replaces_the_kind_s_rows_and_ends_the_run() {
        for t in databases("apply_writes") {
            let mut db = t.open("acct");
            insert_link(&db, ORG, "1", "c1", "auto");
            insert_link(&db, ORG, "3", "c3", "auto");
            insert_link(&db, ORG, "5", "c5", "manual");
            insert_unplaced_row(&db, ORG, "9");
            insert_unplaced_row(&db, "configuration", "x");
            db.sql()
                .execute(
                    "INSERT INTO decisions (account, connector, kind, source_id, action,
                                            decided_at)
                     VALUES ('acct', ?1, ?2, '7', 'ignore', 'then')",
                    &values![C, ORG],
                )
                .unwrap();
            // A record the connector no longer returns, stored by an earlier sync.
            db.sql()
                .execute(
                    "INSERT INTO source_records (account, connector, kind, source_id, name,
                                                 identifiers_kept)
                     VALUES ('acct', ?1, ?2, '1', 'Gone', 1)",
                    &values![C, ORG],
                )
                .unwrap();
            let started = basis(&db, C).unwrap();
            let run = live_run(&db);

            let seen = BTreeMap::from([
                (
                    "2".to_string(),
                    SeenRecord {
                        short_name: Some("T".into()),
                        ..named("Two")
                    },
                ),
                ("3".to_string(), named("Three")),
                (
                    "4".to_string(),
                    SeenRecord {
                        organization_id: Some("1".into()),
                        hostname: Some("pc".into()),
                        mac_addresses: vec!["00:11:22:33:44:55".into()],
                        archived: true,
                        ..named("Four")
                    },
                ),
            ]);
            let evidence = vec!["name".to_string()];
            let kept = [(
                "3".to_string(),
                "c3".to_string(),
                "[\"short_name\"]".to_string(),
            )];
            let rows: Vec<UnplacedRow> = vec![(
                "4".into(),
                "Four".into(),
                "no match".into(),
                "[]".into(),
                "[]".into(),
            )];
            let plan = PlannedSync {
                run: Held {
                    id: run,
                    attempt: 0,
                },
                basis: &started,
                changes: vec![
                    LinkChange::Remove { source_id: "1" },
                    LinkChange::Add {
                        source_id: "2",
                        scopable_id: "c2",
                        evidence: &evidence,
                    },
                ],
                kept: &kept,
                unplaced: &rows,
                seen: &seen,
                counts: counts(3),
            };
            assert_eq!(
                apply(&mut db, C, ORG, &plan).unwrap(),
                Applied::Done { written: 9 },
                "{}",
                t.name
            );

            let all = links(&db);
            let summary: Vec<_> = all
                .iter()
                .map(|(_, s, c, src, e)| (s.as_str(), c.as_str(), src.as_str(), e.as_str()))
                .collect();
            assert_eq!(
                summary,
                [
                    ("2", "c2", "auto", "[\"name\"]"),
                    ("3", "c3", "auto", "[\"short_name\"]"),
                    ("5", "c5", "manual", "[\"old\"]")
                ],
                "{}",
                t.name
            );
            assert_eq!(
                auto_links(&db, C, ORG).unwrap(),
                owned(&[("2", "c2"), ("3", "c3")]),
                "{}",
                t.name
            );
            assert_eq!(
                auto_linked_names(&db, C, ORG).unwrap(),
                owned(&[("2", "Two"), ("3", "Three")]),
                "{}",
                t.name
            );
            // The kind's unplaced rows are replaced; another kind's stay.
            assert_eq!(
                unplaced(&db),
                [
                    ("configuration".into(), "x".into(), "stale".into()),
                    (ORG.into(), "4".into(), "no match".into())
                ],
                "{}",
                t.name
            );
            let stored = stored_records(&db, C, ORG).unwrap();
            assert_eq!(
                stored.keys().map(String::as_str).collect::<Vec<_>>(),
                ["2", "3", "4"],
                "{}",
                t.name
            );
            for (id, s) in &seen {
                assert_eq!(stored[id], (s.clone(), true), "{}: {id}", t.name);
            }
            assert_eq!(
                run_row(&db, run),
                ("ok".into(), None, 3, true),
                "{}",
                t.name
            );
            assert_eq!(
                decisions(&db, C, ORG).unwrap(),
                [("7".to_string(), "ignore".to_string(), None)],
                "{}",
                t.name
            );
            // The organization links changed, and so did the basis.
            assert_ne!(basis(&db, C).unwrap(), started, "{}", t.name);
            assert!(
                rematch_basis(&db, C, ORG)
                    .unwrap()
                    .ends_with(&format!("\n{run}")),
                "{}",
                t.name
            );
            // A run is applied once: it has ended.
            let again = PlannedSync {
                basis: &basis(&db, C).unwrap(),
                ..plan.clone()
            };
            assert_eq!(
                apply(&mut db, C, ORG, &again).unwrap(),
                Applied::LeaseLost,
                "{}",
                t.name
            );
            // The next sync finding everything as it is writes no row: its links are kept
            // with the same evidence, its unplaced rows and stored records are the same.
            let next = live_run(&db);
            let kept = [
                ("2".to_string(), "c2".to_string(), "[\"name\"]".to_string()),
                (
                    "3".to_string(),
                    "c3".to_string(),
                    "[\"short_name\"]".to_string(),
                ),
            ];
            let unchanged = PlannedSync {
                run: Held {
                    id: next,
                    attempt: 0,
                },
                basis: &basis(&db, C).unwrap(),
                changes: Vec::new(),
                kept: &kept,
                ..plan.clone()
            };
            let before = (
                links(&db),
                unplaced(&db),
                stored_records(&db, C, ORG).unwrap(),
            );
            assert_eq!(
                apply(&mut db, C, ORG, &unchanged).unwrap(),
                Applied::Done { written: 0 },
                "{}",
                t.name
            );
            let after = (
                links(&db),
                unplaced(&db),
                stored_records(&db, C, ORG).unwrap(),
            );
            assert_eq!(after, before, "{}", t.name);
            assert_eq!(run_row(&db, next).0, "ok", "{}", t.name);
        }
    }

    #[test]
    fn a_run_that_no_longer_holds_its_lease_applies_nothing() {
        for t in databases("apply_lease") {
            let mut db = t.open("acct");
            let other = t.open("other");
            let now = db::now_ms();
            let lapsed = insert_run(&db, ORG, "running", Some(now - 1));
            let no_lease = insert_run(&db, ORG, "running", None);
            let interrupted = insert_run(&db, ORG, "failed", None);
            let queued = insert_run(&db, ORG, "queued", None);
            let elsewhere = insert_run(&other, ORG, "running", Some(now + 60_000));
            // A live run another replica took over (its second claim): this one's holder
            // (the first claim) lost it.
            let superseded = live_run(&db);
            db.sql()
                .execute(
                    "UPDATE sync_runs SET attempt = 2 WHERE id = ?1",
                    &values![superseded],
                )
                .unwrap();
            let started = basis(&db, C).unwrap();
            let evidence = vec!["name".to_string()];
            let seen = BTreeMap::from([("2".to_string(), named("Two"))]);
            let plan = |run_id| PlannedSync {
                run: Held {
                    id: run_id,
                    attempt: 0,
                },
                basis: &started,
                changes: vec![LinkChange::Add {
                    source_id: "2",
                    scopable_id: "c2",
                    evidence: &evidence,
                }],
                kept: &[],
                unplaced: &[],
                seen: &seen,
                counts: counts(1),
            };
            let mut stale = plan(superseded);
            stale.run.attempt = 1;
            assert_eq!(
                apply(&mut db, C, ORG, &stale).unwrap(),
                Applied::LeaseLost,
                "{}: an earlier claim",
                t.name
            );
            db.sql()
                .execute(
                    "UPDATE sync_runs SET status = 'failed' WHERE id = ?1",
                    &values![superseded],
                )
                .unwrap();
            for run in [lapsed, no_lease, interrupted, queued, elsewhere, 999_999] {
                assert_eq!(
                    apply(&mut db, C, ORG, &plan(run)).unwrap(),
                    Applied::LeaseLost,
                    "{}: run {run}",
                    t.name
                );
            }
            assert!(links(&db).is_empty(), "{}", t.name);
            assert!(
                stored_records(&db, C, ORG).unwrap().is_empty(),
                "{}",
                t.name
            );
            assert_eq!(
                run_row(&db, lapsed),
                ("running".into(), Some(now - 1), 0, false),
                "{}",
                t.name
            );
            assert_eq!(run_row(&db, elsewhere).0, "running", "{}", t.name);
            // The replica that took the run over holds a lease of its own, and applies.
            let taken_over = live_run(&db);
            assert!(
                matches!(
                    apply(&mut db, C, ORG, &plan(taken_over)).unwrap(),
                    Applied::Done { .. }
                ),
                "{}",
                t.name
            );
            assert_eq!(links(&db).len(), 1, "{}", t.name);
        }
    }

    #[test]
    fn a_run_marked_interrupted_while_it_applies_applies_nothing() {
        for t in databases("apply_fenced") {
            let mut db = t.open("acct");
            let mut sweeper = t.open("acct");
            let run = live_run(&db);
            let started = basis(&db, C).unwrap();
            let evidence = vec!["name".to_string()];
            let seen = BTreeMap::new();
            let plan = PlannedSync {
                run: Held {
                    id: run,
                    attempt: 0,
                },
                basis: &started,
                changes: vec![LinkChange::Add {
                    source_id: "2",
                    scopable_id: "c2",
                    evidence: &evidence,
                }],
                kept: &[],
                unplaced: &[],
                seen: &seen,
                counts: counts(1),
            };
            // Another replica is marking the run interrupted, and has not committed yet.
            let marking = sweeper.begin().unwrap();
            marking
                .execute(
                    "UPDATE sync_runs SET status = 'failed', lease_until = NULL
                     WHERE id = ?1 AND status = 'running'",
                    &values![run],
                )
                .unwrap();
            let applied = std::thread::scope(|s| {
                let applying = s.spawn(|| apply(&mut db, C, ORG, &plan));
                std::thread::sleep(std::time::Duration::from_millis(300));
                marking.commit().unwrap();
                applying.join().unwrap()
            });
            assert_eq!(applied.unwrap(), Applied::LeaseLost, "{}", t.name);
            assert!(links(&db).is_empty(), "{}", t.name);
            assert_eq!(run_row(&db, run).0, "failed", "{}", t.name);
        }
    }

    #[test]
    fn a_decision_being_made_while_a_sync_applies_is_in_sight_of_its_basis_check() {
        for t in databases("apply_decision") {
            let mut db = t.open("acct");
            let mut reviewer = t.open("acct");
            let run = live_run(&db);
            let started = basis(&db, C).unwrap();
            let evidence = vec!["name".to_string()];
            let seen = BTreeMap::new();
            let plan = PlannedSync {
                run: Held {
                    id: run,
                    attempt: 0,
                },
                basis: &started,
                changes: vec![LinkChange::Add {
                    source_id: "2",
                    scopable_id: "c2",
                    evidence: &evidence,
                }],
                kept: &[],
                unplaced: &[],
                seen: &seen,
                counts: counts(1),
            };
            // A decision about the record, made as `review` makes one, not committed yet.
            let deciding = reviewer.begin().unwrap();
            deciding.lock(&basis_lock("acct", C)).unwrap();
            deciding
                .execute(
                    "INSERT INTO decisions (account, connector, kind, source_id, action,
                                            decided_at)
                     VALUES ('acct', ?1, ?2, '2', 'ignore', 'then')",
                    &values![C, ORG],
                )
                .unwrap();
            let applied = std::thread::scope(|s| {
                let applying = s.spawn(|| apply(&mut db, C, ORG, &plan));
                std::thread::sleep(std::time::Duration::from_millis(300));
                deciding.commit().unwrap();
                applying.join().unwrap()
            });
            // The sync waited for the decision, and does not link the ignored record.
            assert_eq!(applied.unwrap(), Applied::BasisChanged, "{}", t.name);
            assert!(links(&db).is_empty(), "{}", t.name);
            assert_eq!(run_row(&db, run).0, "running", "{}", t.name);
        }
    }

    #[test]
    fn a_plan_whose_decisions_or_organization_links_changed_applies_nothing() {
        for t in databases("apply_basis") {
            let mut db = t.open("acct");
            let started = basis(&db, C).unwrap();
            // Links of configurations are not part of it.
            insert_link(&db, "configuration", "k", "x", "manual");
            assert_eq!(basis(&db, C).unwrap(), started, "{}", t.name);
            let run = live_run(&db);
            let seen = BTreeMap::from([("2".to_string(), named("Two"))]);
            let plan = PlannedSync {
                run: Held {
                    id: run,
                    attempt: 0,
                },
                basis: &started,
                changes: vec![LinkChange::Remove { source_id: "1" }],
                kept: &[],
                unplaced: &[],
                seen: &seen,
                counts: counts(1),
            };
            insert_link(&db, ORG, "1", "c1", "manual");
            assert_eq!(
                apply(&mut db, C, ORG, &plan).unwrap(),
                Applied::BasisChanged,
                "{}",
                t.name
            );
            db.sql()
                .execute("DELETE FROM links WHERE kind = ?1", &values![ORG])
                .unwrap();
            db.sql()
                .execute(
                    "INSERT INTO decisions (account, connector, kind, source_id, action,
                                            scopable_id, decided_at)
                     VALUES ('acct', ?1, 'configuration', '5', 'link', 'k5', 'then')",
                    &values![C],
                )
                .unwrap();
            assert_eq!(
                apply(&mut db, C, ORG, &plan).unwrap(),
                Applied::BasisChanged,
                "{}",
                t.name
            );
            // Nothing was written, and the run still holds its lease.
            assert!(
                stored_records(&db, C, ORG).unwrap().is_empty(),
                "{}",
                t.name
            );
            assert_eq!(run_row(&db, run).0, "running", "{}", t.name);
            assert!(run_row(&db, run).1.is_some(), "{}", t.name);
        }
    }

    #[test]
    fn replicas_applying_at_once_never_both_win() {
        for t in databases("apply_replicas") {
            let first = t.open("acct");
            let started = basis(&first, C).unwrap();
            let evidence = vec!["name".to_string()];
            let seen = BTreeMap::new();
            let sources: Vec<String> = (0..4).map(|i| format!("{}", 10 + i)).collect();
            let targets: Vec<String> = (0..4).map(|i| format!("c{}", 10 + i)).collect();
            let plan = |run_id, i: usize| PlannedSync {
                run: Held {
                    id: run_id,
                    attempt: 0,
                },
                basis: &started,
                changes: vec![LinkChange::Add {
                    source_id: &sources[i],
                    scopable_id: &targets[i],
                    evidence: &evidence,
                }],
                kept: &[],
                unplaced: &[],
                seen: &seen,
                counts: counts(1),
            };
            // `same`: every replica applies the plan of replica 0 (one run is planned once).
            let race = |runs: Vec<i64>, same: bool| -> Vec<Applied> {
                let handles: Vec<Db> = runs.iter().map(|_| t.open("acct")).collect();
                let start = Barrier::new(handles.len());
                std::thread::scope(|s| {
                    let running: Vec<_> = handles
                        .into_iter()
                        .zip(runs)
                        .enumerate()
                        .map(|(i, (mut db, run))| {
                            let (start, plan) = (&start, &plan);
                            s.spawn(move || {
                                start.wait();
                                let i = if same { 0 } else { i };
                                apply(&mut db, C, ORG, &plan(run, i)).unwrap()
                            })
                        })
                        .collect();
                    running.into_iter().map(|h| h.join().unwrap()).collect()
                })
            };
            let count =
                |outcomes: &[Applied], which| outcomes.iter().filter(|a| **a == which).count();
            let done = |outcomes: &[Applied]| {
                outcomes
                    .iter()
                    .filter(|a| matches!(a, Applied::Done { .. }))
                    .count()
            };

            // One run, applied by four replicas at once: once.
            let run = live_run(&first);
            let outcomes = race(vec![run; 4], true);
            assert_eq!(done(&outcomes), 1, "{}: {outcomes:?}", t.name);
            assert_eq!(
                count(&outcomes, Applied::LeaseLost),
                3,
                "{}: {outcomes:?}",
                t.name
            );
            assert_eq!(links(&first).len(), 1, "{}", t.name);

            // Four runs planned on one basis: the first to apply changes it for the others.
            first
                .sql()
                .execute("DELETE FROM links WHERE account = 'acct'", &[])
                .unwrap();
            let runs: Vec<i64> = (0..4).map(|_| live_run(&first)).collect();
            let outcomes = race(runs, false);
            assert_eq!(done(&outcomes), 1, "{}: {outcomes:?}", t.name);
            assert_eq!(
                count(&outcomes, Applied::BasisChanged),
                3,
                "{}: {outcomes:?}",
                t.name
            );
            assert_eq!(links(&first).len(), 1, "{}", t.name);
        }
    }

    #[test]
    fn a_rematch_refreshes_stored_records_rows_unless_its_basis_changed() {
        for t in databases("rematch") {
            let db = t.open("acct");
            for id in ["4", "6"] {
                db.sql()
                    .execute(
                        "INSERT INTO source_records (account, connector, kind, source_id, name,
                                                     identifiers_kept)
                         VALUES ('acct', ?1, ?2, ?3, 'n', 1)",
                        &values![C, ORG, id],
                    )
                    .unwrap();
                insert_unplaced_row(&db, ORG, id);
            }
            // A row of a record not stored stays as the last sync left it.
            insert_unplaced_row(&db, ORG, "8");
            let started = rematch_basis(&db, C, ORG).unwrap();
            let rows: Vec<UnplacedRow> = vec![(
                "6".into(),
                "Six".into(),
                "ambiguous".into(),
                "[]".into(),
                "[]".into(),
            )];
            let evidence = vec!["name".to_string()];
            let relink: [(&str, &str, &[String]); 1] = [("4", "c4", &evidence)];
            assert_eq!(
                apply_rematch(&db, C, ORG, &started, &rows, &relink).unwrap(),
                Rematch::Done(Some(("4".into(), "c4".into()))),
                "{}",
                t.name
            );
            assert_eq!(
                unplaced(&db),
                [
                    (ORG.into(), "6".into(), "ambiguous".into()),
                    (ORG.into(), "8".into(), "stale".into())
                ],
                "{}",
                t.name
            );
            assert_eq!(
                auto_links(&db, C, ORG).unwrap(),
                owned(&[("4", "c4")]),
                "{}",
                t.name
            );
            // The link changed the basis: the same re-match is refused.
            assert_eq!(
                apply_rematch(&db, C, ORG, &started, &[], &[]).unwrap(),
                Rematch::Changed,
                "{}",
                t.name
            );
            assert_eq!(unplaced(&db).len(), 2, "{}", t.name);
            // A target some link holds is not linked again.
            let now = rematch_basis(&db, C, ORG).unwrap();
            let taken: [(&str, &str, &[String]); 1] = [("6", "c4", &evidence)];
            assert_eq!(
                apply_rematch(&db, C, ORG, &now, &[], &taken).unwrap(),
                Rematch::Done(None),
                "{}",
                t.name
            );
            assert_eq!(unplaced(&db).len(), 1, "{}", t.name);
            // A sync that applied since changes it too.
            insert_run(&db, ORG, "ok", None);
            assert_ne!(rematch_basis(&db, C, ORG).unwrap(), now, "{}", t.name);
        }
    }

    #[test]
    fn replicas_rematching_at_once_never_both_win() {
        for t in databases("rematch_replicas") {
            let started = rematch_basis(&t.open("acct"), C, ORG).unwrap();
            let evidence = vec!["name".to_string()];
            let sources: Vec<String> = (0..4).map(|i| format!("{}", 10 + i)).collect();
            let targets: Vec<String> = (0..4).map(|i| format!("c{}", 10 + i)).collect();
            let handles: Vec<Db> = (0..4).map(|_| t.open("acct")).collect();
            let start = Barrier::new(handles.len());
            let outcomes: Vec<Rematch> = std::thread::scope(|s| {
                let running: Vec<_> = handles
                    .into_iter()
                    .enumerate()
                    .map(|(i, db)| {
                        let (start, started) = (&start, &started);
                        let relink: [(&str, &str, &[String]); 1] =
                            [(&sources[i], &targets[i], &evidence)];
                        s.spawn(move || {
                            start.wait();
                            apply_rematch(&db, C, ORG, started, &[], &relink).unwrap()
                        })
                    })
                    .collect();
                running.into_iter().map(|h| h.join().unwrap()).collect()
            });
            // The first re-match's link changes the basis of the others.
            let done = outcomes
                .iter()
                .filter(|r| matches!(r, Rematch::Done(Some(_))))
                .count();
            let changed = outcomes.iter().filter(|r| **r == Rematch::Changed).count();
            assert_eq!((done, changed), (1, 3), "{}: {outcomes:?}", t.name);
            assert_eq!(links(&t.open("acct")).len(), 1, "{}", t.name);
        }
    }
}

//! What a sync reads before planning (stored records, decisions, links, the basis its plan
//! rests on) and the one transaction that applies a planned sync, or refreshes the `unplaced`
//! rows of a local re-match. Rows are those of the handle's account.

use crate::db::{self, DbError};
use crate::handle::Db;
use crate::runs::{self, RunCounts};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};

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

/// One (unplaced) row: (source id, name, reason, candidates JSON, suggestions JSON).
pub type UnplacedRow = (String, String, String, String, String);

/// The stored records of a kind, each with whether it keeps every field (rows written before
/// the schema kept them, or whose MAC list cannot be read, do not, until the next sync).
pub fn stored_records(
    db: &Db,
    connector: &str,
    kind: &str,
) -> Result<BTreeMap<String, (SeenRecord, bool)>, DbError> {
    Ok(stored_records_on(db.conn(), db.account(), connector, kind)?)
}

fn stored_records_on(
    conn: &Connection,
    account: &str,
    connector: &str,
    kind: &str,
) -> rusqlite::Result<BTreeMap<String, (SeenRecord, bool)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT source_id, name, organization_id, short_name, type_name, status_name, hostname,
                primary_ip, serial_number, mac_addresses, archived, identifiers_kept
         FROM source_records WHERE account = ?1 AND connector = ?2 AND kind = ?3",
    )?;
    let rows = stmt.query_map(params![account, connector, kind], |r| {
        let macs: Option<Vec<String>> = serde_json::from_str(&r.get::<_, String>(9)?).ok();
        let kept = r.get::<_, bool>(11)? && macs.is_some();
        let seen = SeenRecord {
            name: r.get(1)?,
            organization_id: r.get(2)?,
            short_name: r.get(3)?,
            type_name: r.get(4)?,
            status_name: r.get(5)?,
            hostname: r.get(6)?,
            primary_ip: r.get(7)?,
            serial_number: r.get(8)?,
            mac_addresses: macs.unwrap_or_default(),
            archived: r.get(10)?,
        };
        Ok((r.get::<_, String>(0)?, (seen, kept)))
    })?;
    rows.collect()
}

/// What a sync's decisions rest on: every manual decision and every organization link. If it
/// changes while the sync fetches, the plan is stale and is not applied.
pub fn basis(db: &Db, connector: &str) -> Result<String, DbError> {
    Ok(basis_on(db.conn(), db.account(), connector)?)
}

fn basis_on(conn: &Connection, account: &str, connector: &str) -> rusqlite::Result<String> {
    let mut stmt = conn.prepare(
        "SELECT 'd', kind, source_id, action, coalesce(scopable_id, '') FROM decisions
         WHERE account = ?1 AND connector = ?2
         UNION ALL
         SELECT 'l', kind, source_id, source, scopable_id FROM links
         WHERE account = ?1 AND connector = ?2 AND kind = 'organization'
         ORDER BY 1, 2, 3",
    )?;
    let rows = stmt.query_map(params![account, connector], |r| {
        Ok(format!(
            "{}|{}|{}|{}|{}",
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?.join("\n"))
}

/// The manual decisions of a kind, by source id: (source id, action, Scopable id).
pub fn decisions(
    db: &Db,
    connector: &str,
    kind: &str,
) -> Result<Vec<(String, String, Option<String>)>, DbError> {
    let mut stmt = db.conn().prepare(
        "SELECT source_id, action, scopable_id FROM decisions
         WHERE account = ?1 AND connector = ?2 AND kind = ?3 ORDER BY source_id",
    )?;
    let rows = stmt.query_map(params![db.account(), connector, kind], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Automatic links of a kind: source id -> scopable id.
pub fn auto_links(
    db: &Db,
    connector: &str,
    kind: &str,
) -> Result<HashMap<String, String>, DbError> {
    let mut stmt = db.conn().prepare(
        "SELECT source_id, scopable_id FROM links
         WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND source = 'auto'",
    )?;
    let rows = stmt.query_map(params![db.account(), connector, kind], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The stored names of the automatically linked records of a kind: source id -> name.
pub fn auto_linked_names(
    db: &Db,
    connector: &str,
    kind: &str,
) -> Result<HashMap<String, String>, DbError> {
    let mut stmt = db.conn().prepare(
        "SELECT r.source_id, r.name FROM source_records r
         JOIN links l ON l.account = r.account AND l.connector = r.connector
              AND l.kind = r.kind AND l.source_id = r.source_id
         WHERE r.account = ?1 AND r.connector = ?2 AND r.kind = ?3 AND l.source = 'auto'",
    )?;
    let rows = stmt.query_map(params![db.account(), connector, kind], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One link change of a planned sync.
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

/// The rows a planned sync writes.
#[derive(Debug, Clone)]
pub struct PlannedSync<'a> {
    /// The run applying it (it must still hold its lease).
    pub run_id: i64,
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
    Done,
    /// The run no longer holds its lease; nothing was written.
    LeaseLost,
    /// Manual decisions or organization links changed since the plan; nothing was written.
    BasisChanged,
}

/// Applies a planned sync in one transaction, and records the run as `ok` in it.
pub fn apply(
    db: &mut Db,
    connector: &str,
    kind: &str,
    plan: &PlannedSync<'_>,
) -> Result<Applied, DbError> {
    let run_id = plan.run_id;
    let account = db.account().to_string();
    let account = account.as_str();
    let tx = db
        .conn_mut()
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // Only the holder of the lease writes: a run whose lease lapsed may have been taken over.
    let (status, lease_until): (String, Option<i64>) = tx
        .query_row(
            "SELECT status, lease_until FROM sync_runs WHERE account = ?1 AND id = ?2",
            params![account, run_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .unwrap_or_default();
    if status != "running" || lease_until.is_none_or(|t| t < runs::now_ms()) {
        return Ok(Applied::LeaseLost);
    }
    if basis_on(&tx, account, connector)? != plan.basis {
        return Ok(Applied::BasisChanged);
    }
    let now = db::now();
    // What is stored now, so that only rows that change are written.
    let mut stored_evidence: HashMap<String, String> = HashMap::new();
    {
        let mut stmt = tx.prepare(
            "SELECT source_id, evidence FROM links
             WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND source = 'auto'",
        )?;
        for row in stmt.query_map(params![account, connector, kind], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })? {
            let (id, evidence) = row?;
            stored_evidence.insert(id, evidence);
        }
    }
    let stored_records = stored_records_on(&tx, account, connector, kind)?;
    for change in &plan.changes {
        match change {
            LinkChange::Remove { source_id } => {
                tx.prepare_cached(
                    "DELETE FROM links
                     WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND source_id = ?4
                       AND source = 'auto'",
                )?
                .execute(params![account, connector, kind, source_id])?;
            }
            LinkChange::Add {
                source_id,
                scopable_id,
                evidence,
            } => {
                tx.prepare_cached(
                    "INSERT INTO links (account, connector, kind, source_id, scopable_id, source,
                                        evidence, linked_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'auto', ?6, ?7)",
                )?
                .execute(params![
                    account,
                    connector,
                    kind,
                    source_id,
                    scopable_id,
                    json!(evidence).to_string(),
                    now
                ])?;
            }
        }
    }
    for (source_id, scopable_id, evidence) in plan.kept {
        if stored_evidence.get(source_id) == Some(evidence) {
            continue;
        }
        tx.prepare_cached(
            "UPDATE links SET evidence = ?6
             WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND source_id = ?4
               AND scopable_id = ?5 AND source = 'auto'",
        )?
        .execute(params![
            account,
            connector,
            kind,
            source_id,
            scopable_id,
            evidence
        ])?;
    }
    tx.execute(
        "DELETE FROM unplaced WHERE account = ?1 AND connector = ?2 AND kind = ?3",
        params![account, connector, kind],
    )?;
    insert_unplaced(&tx, account, connector, kind, plan.unplaced)?;
    for id in stored_records.keys() {
        if !plan.seen.contains_key(id) {
            tx.prepare_cached(
                "DELETE FROM source_records
                 WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND source_id = ?4",
            )?
            .execute(params![account, connector, kind, id])?;
        }
    }
    for (id, s) in plan.seen {
        let unchanged = stored_records
            .get(id)
            .is_some_and(|(stored, kept)| *kept && stored == s);
        if unchanged {
            continue;
        }
        tx.prepare_cached(
            "INSERT OR REPLACE INTO source_records (account, connector, kind, source_id, name,
                 organization_id, short_name, type_name, status_name, hostname, primary_ip,
                 serial_number, mac_addresses, archived, identifiers_kept)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 1)",
        )?
        .execute(params![
            account,
            connector,
            kind,
            id,
            s.name,
            s.organization_id,
            s.short_name,
            s.type_name,
            s.status_name,
            s.hostname,
            s.primary_ip,
            s.serial_number,
            json!(s.mac_addresses).to_string(),
            s.archived
        ])?;
    }
    runs::finish_on(&tx, account, run_id, "ok", &plan.counts, None)?;
    tx.commit()?;
    Ok(Applied::Done)
}

/// Writes `unplaced` rows: (source id, name, reason, candidates JSON, suggestions JSON).
fn insert_unplaced(
    tx: &Connection,
    account: &str,
    connector: &str,
    kind: &str,
    rows: &[UnplacedRow],
) -> rusqlite::Result<()> {
    for (id, name, reason, candidates, suggestions) in rows {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO unplaced (account, connector, kind, source_id, name, reason,
                                              candidates, suggestions)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            account,
            connector,
            kind,
            id,
            name,
            reason,
            candidates,
            suggestions
        ])?;
    }
    Ok(())
}

/// What the local re-match rests on: the decisions, the organization links, the links of the
/// kind and the last sync that applied.
pub fn rematch_basis(db: &Db, connector: &str, kind: &str) -> Result<String, DbError> {
    Ok(rematch_basis_on(db.conn(), db.account(), connector, kind)?)
}

fn rematch_basis_on(
    conn: &Connection,
    account: &str,
    connector: &str,
    kind: &str,
) -> rusqlite::Result<String> {
    let links: String = conn.query_row(
        "SELECT coalesce(group_concat(source_id || '>' || scopable_id || '>' || source, '|'), '')
         FROM (SELECT source_id, scopable_id, source FROM links
               WHERE account = ?1 AND connector = ?2 AND kind = ?3 ORDER BY source_id)",
        params![account, connector, kind],
        |r| r.get(0),
    )?;
    let last_run: Option<i64> = conn.query_row(
        "SELECT max(id) FROM sync_runs
         WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND status = 'ok' AND dry_run = 0",
        params![account, connector, kind],
        |r| r.get(0),
    )?;
    Ok(format!(
        "{}\n{links}\n{}",
        basis_on(conn, account, connector)?,
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
pub fn apply_rematch(
    db: &Db,
    connector: &str,
    kind: &str,
    started: &str,
    unplaced: &[UnplacedRow],
    relink: &[(&str, &str, &[String])],
) -> Result<Rematch, DbError> {
    let account = db.account();
    let tx =
        rusqlite::Transaction::new_unchecked(db.conn(), rusqlite::TransactionBehavior::Immediate)?;
    if rematch_basis_on(&tx, account, connector, kind)? != started {
        return Ok(Rematch::Changed);
    }
    tx.execute(
        "DELETE FROM unplaced WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND source_id IN
             (SELECT source_id FROM source_records
              WHERE account = ?1 AND connector = ?2 AND kind = ?3)",
        params![account, connector, kind],
    )?;
    insert_unplaced(&tx, account, connector, kind, unplaced)?;
    let mut relinked = None;
    for (source_id, scopable_id, evidence) in relink {
        let added = tx.execute(
            "INSERT INTO links (account, connector, kind, source_id, scopable_id, source, evidence,
                                linked_at)
             SELECT ?1, ?2, ?3, ?4, ?5, 'auto', ?6, ?7
             WHERE NOT EXISTS (SELECT 1 FROM links WHERE account = ?1 AND connector = ?2
                               AND kind = ?3 AND (source_id = ?4 OR scopable_id = ?5))",
            params![
                account,
                connector,
                kind,
                source_id,
                scopable_id,
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

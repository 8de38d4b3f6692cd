//! The reads behind what an admin reviews: the names of records on both sides, the
//! identifiers the matcher reads, the stored links, the records that could not be placed, and
//! where a configuration's organization stands. Rows come back as stored; ordering them and
//! putting them into words is the caller's. Every row read is the handle's account's.

use crate::Db;
use crate::db::DbError;
use crate::records::stored_macs;
use rusqlite::{OptionalExtension, params};

/// The name of a Scopable client; `None` when there is no such client.
pub fn client_name(db: &Db, id: &str) -> Result<Option<String>, DbError> {
    Ok(db
        .conn()
        .prepare_cached("SELECT name FROM clients WHERE account = ?1 AND id = ?2")?
        .query_row([db.account(), id], |r| r.get(0))
        .optional()?)
}

/// The name of a Scopable configuration; `None` when there is no such configuration.
pub fn configuration_name(db: &Db, id: &str) -> Result<Option<String>, DbError> {
    Ok(db
        .conn()
        .prepare_cached("SELECT name FROM configurations WHERE account = ?1 AND id = ?2")?
        .query_row([db.account(), id], |r| r.get(0))
        .optional()?)
}

/// The name of an source record of `kind` (`organization` or `configuration`) as last
/// received, or `None` when none is stored.
pub fn source_name(
    db: &Db,
    connector: &str,
    kind: &str,
    id: &str,
) -> Result<Option<String>, DbError> {
    Ok(db
        .conn()
        .prepare_cached(
            "SELECT name FROM source_records
             WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND source_id = ?4",
        )?
        .query_row(params![db.account(), connector, kind, id], |r| r.get(0))
        .optional()?)
}

/// The identifiers a configuration carries that the matcher reads, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identifiers {
    /// Its serial number.
    pub serial_number: Option<String>,
    /// Its MAC addresses.
    pub mac_addresses: Vec<String>,
    /// Its hostname.
    pub hostname: Option<String>,
}

/// A Scopable configuration's identifiers, or `None` when there is no such configuration.
pub fn scopable_identifiers(db: &Db, id: &str) -> Result<Option<Identifiers>, DbError> {
    Ok(db
        .conn()
        .prepare_cached(
            "SELECT serial_number, mac_addresses, hostname FROM configurations
             WHERE account = ?1 AND id = ?2",
        )?
        .query_row([db.account(), id], |r| {
            Ok(Identifiers {
                serial_number: r.get(0)?,
                mac_addresses: stored_macs(&r.get::<_, String>(1)?, 1)?,
                hostname: r.get(2)?,
            })
        })
        .optional()?)
}

/// An source configuration's identifiers as last received, or `None` when they are not
/// stored (the record is unknown, or was stored before the host kept identifiers).
pub fn source_identifiers(
    db: &Db,
    connector: &str,
    id: &str,
) -> Result<Option<Identifiers>, DbError> {
    let row: Option<(Option<String>, String, Option<String>, bool)> = db
        .conn()
        .prepare_cached(
            "SELECT serial_number, mac_addresses, hostname, identifiers_kept FROM source_records
             WHERE account = ?1 AND connector = ?2 AND kind = 'configuration' AND source_id = ?3",
        )?
        .query_row(params![db.account(), connector, id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    Ok(row.and_then(|(serial_number, macs, hostname, kept)| {
        let mac_addresses = serde_json::from_str(&macs).ok()?;
        kept.then_some(Identifiers {
            serial_number,
            mac_addresses,
            hostname,
        })
    }))
}

/// One stored link, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRow {
    /// `organization` or `configuration`.
    pub kind: String,
    /// The source id.
    pub source_id: String,
    /// The Scopable id.
    pub scopable_id: String,
    /// `auto` or `manual`.
    pub source: String,
    /// The evidence names, as stored (a JSON list).
    pub evidence: String,
    /// When it was made.
    pub linked_at: String,
}

/// Every link of a connector, in no particular order.
pub fn links(db: &Db, connector: &str) -> Result<Vec<LinkRow>, DbError> {
    let mut stmt = db.conn().prepare(
        "SELECT kind, source_id, scopable_id, source, evidence, linked_at FROM links
         WHERE account = ?1 AND connector = ?2",
    )?;
    let rows = stmt
        .query_map([db.account(), connector], |r| {
            Ok(LinkRow {
                kind: r.get(0)?,
                source_id: r.get(1)?,
                scopable_id: r.get(2)?,
                source: r.get(3)?,
                evidence: r.get(4)?,
                linked_at: r.get(5)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// How many links a connector has.
pub fn link_count(db: &Db, connector: &str) -> Result<i64, DbError> {
    Ok(db.conn().query_row(
        "SELECT count(*) FROM links WHERE account = ?1 AND connector = ?2",
        [db.account(), connector],
        |r| r.get(0),
    )?)
}

/// One record that could not be placed, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnplacedRow {
    /// `organization` or `configuration`.
    pub kind: String,
    /// The source id.
    pub source_id: String,
    /// The source record's name (for an unreadable record, what was wrong with it).
    pub name: String,
    /// The reason, as `matching.md` names it.
    pub reason: String,
    /// The Scopable ids in play (a JSON list).
    pub candidates: String,
    /// Near misses (a JSON list).
    pub suggestions: String,
}

/// Every record of a connector that could not be placed and has no manual decision and no
/// link, in no particular order.
pub fn unplaced(db: &Db, connector: &str) -> Result<Vec<UnplacedRow>, DbError> {
    let mut stmt = db.conn().prepare(
        "SELECT u.kind, u.source_id, u.name, u.reason, u.candidates, u.suggestions FROM unplaced u
         WHERE u.account = ?1 AND u.connector = ?2
           AND NOT EXISTS (SELECT 1 FROM decisions d
                           WHERE d.account = u.account AND d.connector = u.connector
                             AND d.kind = u.kind AND d.source_id = u.source_id)
           AND NOT EXISTS (SELECT 1 FROM links l
                           WHERE l.account = u.account AND l.connector = u.connector
                             AND l.kind = u.kind AND l.source_id = u.source_id)",
    )?;
    let rows = stmt
        .query_map([db.account(), connector], |r| {
            Ok(UnplacedRow {
                kind: r.get(0)?,
                source_id: r.get(1)?,
                name: r.get(2)?,
                reason: r.get(3)?,
                candidates: r.get(4)?,
                suggestions: r.get(5)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The source organization id a stored source configuration names, if any.
pub fn configuration_organization(
    db: &Db,
    connector: &str,
    source_id: &str,
) -> Result<Option<String>, DbError> {
    Ok(db
        .conn()
        .prepare_cached(
            "SELECT organization_id FROM source_records
             WHERE account = ?1 AND connector = ?2 AND kind = 'configuration' AND source_id = ?3",
        )?
        .query_row(params![db.account(), connector, source_id], |r| r.get(0))
        .optional()?
        .flatten())
}

/// The Scopable client an source organization is linked to, if any (`None` for no
/// organization).
pub fn organization_link(
    db: &Db,
    connector: &str,
    organization: Option<&str>,
) -> Result<Option<String>, DbError> {
    Ok(db
        .conn()
        .prepare_cached(
            "SELECT scopable_id FROM links
             WHERE account = ?1 AND connector = ?2 AND kind = 'organization' AND source_id = ?3",
        )?
        .query_row(params![db.account(), connector, organization], |r| r.get(0))
        .optional()?)
}

/// Whether an admin ignored an source organization.
pub fn organization_ignored(db: &Db, connector: &str, organization: &str) -> Result<bool, DbError> {
    Ok(db
        .conn()
        .prepare_cached(
            "SELECT 1 FROM decisions
             WHERE account = ?1 AND connector = ?2 AND kind = 'organization' AND source_id = ?3
               AND action = 'ignore'",
        )?
        .query_row(params![db.account(), connector, organization], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Why an source organization could not be placed, when it is listed as unplaced.
pub fn organization_unplaced_reason(
    db: &Db,
    connector: &str,
    organization: &str,
) -> Result<Option<String>, DbError> {
    Ok(db
        .conn()
        .prepare_cached(
            "SELECT reason FROM unplaced
             WHERE account = ?1 AND connector = ?2 AND kind = 'organization' AND source_id = ?3",
        )?
        .query_row(params![db.account(), connector, organization], |r| r.get(0))
        .optional()?)
}

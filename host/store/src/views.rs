//! The reads behind what an admin reviews: the names of records on both sides, the
//! identifiers the matcher reads, the stored links, the records that could not be placed, and
//! where a configuration's organization stands. Rows come back as stored; ordering them and
//! putting them into words is the caller's. Every row read is the handle's account's.
//! Every read runs on SQLite and on PostgreSQL alike.

use crate::Db;
use crate::db::DbError;
use crate::records::stored_macs;
use crate::values;

/// The name of a Scopable client; `None` when there is no such client.
pub fn client_name(db: &Db, id: &str) -> Result<Option<String>, DbError> {
    db.sql()
        .query_opt(
            "SELECT name FROM clients WHERE account = ?1 AND id = ?2",
            &values![db.account(), id],
        )?
        .map(|r| r.text(0))
        .transpose()
}

/// The name of a Scopable configuration; `None` when there is no such configuration.
pub fn configuration_name(db: &Db, id: &str) -> Result<Option<String>, DbError> {
    db.sql()
        .query_opt(
            "SELECT name FROM configurations WHERE account = ?1 AND id = ?2",
            &values![db.account(), id],
        )?
        .map(|r| r.text(0))
        .transpose()
}

/// The name of an source record of `kind` (`organization` or `configuration`) as last
/// received, or `None` when none is stored.
pub fn source_name(
    db: &Db,
    connector: &str,
    kind: &str,
    id: &str,
) -> Result<Option<String>, DbError> {
    db.sql()
        .query_opt(
            "SELECT name FROM source_records
             WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND source_id = ?4",
            &values![db.account(), connector, kind, id],
        )?
        .map(|r| r.text(0))
        .transpose()
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
    let Some(r) = db.sql().query_opt(
        "SELECT serial_number, mac_addresses, hostname FROM configurations
         WHERE account = ?1 AND id = ?2",
        &values![db.account(), id],
    )?
    else {
        return Ok(None);
    };
    Ok(Some(Identifiers {
        serial_number: r.opt_text(0)?,
        mac_addresses: stored_macs(&r.text(1)?, 1)?,
        hostname: r.opt_text(2)?,
    }))
}

/// An source configuration's identifiers as last received, or `None` when they are not
/// stored (the record is unknown, or was stored before the host kept identifiers).
pub fn source_identifiers(
    db: &Db,
    connector: &str,
    id: &str,
) -> Result<Option<Identifiers>, DbError> {
    let Some(r) = db.sql().query_opt(
        "SELECT serial_number, mac_addresses, hostname, identifiers_kept FROM source_records
         WHERE account = ?1 AND connector = ?2 AND kind = 'configuration' AND source_id = ?3",
        &values![db.account(), connector, id],
    )?
    else {
        return Ok(None);
    };
    let (serial_number, macs, hostname, kept) =
        (r.opt_text(0)?, r.text(1)?, r.opt_text(2)?, r.int(3)? != 0);
    let Ok(mac_addresses) = serde_json::from_str(&macs) else {
        return Ok(None);
    };
    Ok(kept.then_some(Identifiers {
        serial_number,
        mac_addresses,
        hostname,
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

/// Every link of a connector, by kind and source id (as text).
pub fn links(db: &Db, connector: &str) -> Result<Vec<LinkRow>, DbError> {
    db.sql()
        .query(
            "SELECT kind, source_id, scopable_id, source, evidence, linked_at FROM links
             WHERE account = ?1 AND connector = ?2
             ORDER BY kind, source_id",
            &values![db.account(), connector],
        )?
        .iter()
        .map(|r| {
            Ok(LinkRow {
                kind: r.text(0)?,
                source_id: r.text(1)?,
                scopable_id: r.text(2)?,
                source: r.text(3)?,
                evidence: r.text(4)?,
                linked_at: r.text(5)?,
            })
        })
        .collect()
}

/// How many links a connector has.
pub fn link_count(db: &Db, connector: &str) -> Result<i64, DbError> {
    db.sql()
        .query_one(
            "SELECT count(*) FROM links WHERE account = ?1 AND connector = ?2",
            &values![db.account(), connector],
        )?
        .int(0)
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
/// link, by kind and source id (as text).
pub fn unplaced(db: &Db, connector: &str) -> Result<Vec<UnplacedRow>, DbError> {
    db.sql()
        .query(
            "SELECT u.kind, u.source_id, u.name, u.reason, u.candidates, u.suggestions
             FROM unplaced u
             WHERE u.account = ?1 AND u.connector = ?2
               AND NOT EXISTS (SELECT 1 FROM decisions d
                               WHERE d.account = u.account AND d.connector = u.connector
                                 AND d.kind = u.kind AND d.source_id = u.source_id)
               AND NOT EXISTS (SELECT 1 FROM links l
                               WHERE l.account = u.account AND l.connector = u.connector
                                 AND l.kind = u.kind AND l.source_id = u.source_id)
             ORDER BY u.kind, u.source_id",
            &values![db.account(), connector],
        )?
        .iter()
        .map(|r| {
            Ok(UnplacedRow {
                kind: r.text(0)?,
                source_id: r.text(1)?,
                name: r.text(2)?,
                reason: r.text(3)?,
                candidates: r.text(4)?,
                suggestions: r.text(5)?,
            })
        })
        .collect()
}

/// The source organization id a stored source configuration names, if any.
pub fn configuration_organization(
    db: &Db,
    connector: &str,
    source_id: &str,
) -> Result<Option<String>, DbError> {
    Ok(db
        .sql()
        .query_opt(
            "SELECT organization_id FROM source_records
             WHERE account = ?1 AND connector = ?2 AND kind = 'configuration' AND source_id = ?3",
            &values![db.account(), connector, source_id],
        )?
        .map(|r| r.opt_text(0))
        .transpose()?
        .flatten())
}

/// The Scopable client an source organization is linked to, if any (`None` for no
/// organization).
pub fn organization_link(
    db: &Db,
    connector: &str,
    organization: Option<&str>,
) -> Result<Option<String>, DbError> {
    let Some(organization) = organization else {
        return Ok(None);
    };
    db.sql()
        .query_opt(
            "SELECT scopable_id FROM links
             WHERE account = ?1 AND connector = ?2 AND kind = 'organization' AND source_id = ?3",
            &values![db.account(), connector, organization],
        )?
        .map(|r| r.text(0))
        .transpose()
}

/// Whether an admin ignored an source organization.
pub fn organization_ignored(db: &Db, connector: &str, organization: &str) -> Result<bool, DbError> {
    Ok(db
        .sql()
        .query_opt(
            "SELECT 1 FROM decisions
             WHERE account = ?1 AND connector = ?2 AND kind = 'organization' AND source_id = ?3
               AND action = 'ignore'",
            &values![db.account(), connector, organization],
        )?
        .is_some())
}

/// Why an source organization could not be placed, when it is listed as unplaced.
pub fn organization_unplaced_reason(
    db: &Db,
    connector: &str,
    organization: &str,
) -> Result<Option<String>, DbError> {
    db.sql()
        .query_opt(
            "SELECT reason FROM unplaced
             WHERE account = ?1 AND connector = ?2 AND kind = 'organization' AND source_id = ?3",
            &values![db.account(), connector, organization],
        )?
        .map(|r| r.text(0))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::databases;

    fn run(db: &Db, sql: &str) {
        db.sql().execute(sql, &values![db.account()]).unwrap();
    }

    /// A client with a configuration; source records (one without identifiers kept, one with
    /// MACs that do not read); links of both kinds; unplaced records, one decided, one linked.
    fn fill(db: &Db) {
        run(
            db,
            "INSERT INTO clients (account, id, name) VALUES (?1, 'c1', 'Acme')",
        );
        run(
            db,
            "INSERT INTO configurations (account, id, client_id, name, hostname, serial_number,
                                         mac_addresses)
             VALUES (?1, 'k1', 'c1', 'pc', 'pc.acme', NULL, '[\"aa:bb:cc:dd:ee:ff\"]')",
        );
        run(
            db,
            "INSERT INTO source_records (account, connector, kind, source_id, name,
                                         organization_id, hostname, serial_number,
                                         mac_addresses, identifiers_kept)
             VALUES (?1, 'itglue', 'organization', '1001', 'Acme Inc', NULL, NULL, NULL, '[]', 0),
                    (?1, 'itglue', 'configuration', '9', 'PC', '1001', 'pc', 'SN9', '[\"m\"]', 1),
                    (?1, 'itglue', 'configuration', '10', 'Old', NULL, NULL, NULL, '[]', 0),
                    (?1, 'itglue', 'configuration', '11', 'Bad', '1001', NULL, NULL, 'x', 1)",
        );
        run(
            db,
            "INSERT INTO links (account, connector, kind, source_id, scopable_id, source,
                                evidence, linked_at)
             VALUES (?1, 'itglue', 'organization', '1001', 'c1', 'auto', '[\"name\"]', 't1'),
                    (?1, 'itglue', 'configuration', '9', 'k1', 'manual', '[\"manual\"]', 't2'),
                    (?1, 'itglue', 'configuration', '10', 'k2', 'auto', '[]', 't3')",
        );
        run(
            db,
            "INSERT INTO decisions (account, connector, kind, source_id, action, scopable_id,
                                    decided_at)
             VALUES (?1, 'itglue', 'organization', '2002', 'ignore', NULL, 't4')",
        );
        run(
            db,
            "INSERT INTO unplaced (account, connector, kind, source_id, name, reason,
                                   candidates, suggestions)
             VALUES (?1, 'itglue', 'organization', '2002', 'Ignored', 'no-match', '[]', '[]'),
                    (?1, 'itglue', 'organization', '2003', 'Beta', 'multiple-clients',
                     '[\"c1\",\"c2\"]', '[]'),
                    (?1, 'itglue', 'configuration', '9', 'Linked', 'no-match', '[]', '[]'),
                    (?1, 'itglue', 'configuration', '12', 'Lost', 'no-match', '[]', '[\"k1\"]')",
        );
    }

    #[test]
    fn names_and_identifiers_read_as_stored() {
        for t in databases("views_names") {
            let db = t.open("a");
            fill(&db);
            let n = t.name;
            assert_eq!(
                client_name(&db, "c1").unwrap().as_deref(),
                Some("Acme"),
                "{n}"
            );
            assert_eq!(client_name(&db, "c2").unwrap(), None, "{n}");
            assert_eq!(
                configuration_name(&db, "k1").unwrap().as_deref(),
                Some("pc")
            );
            assert_eq!(configuration_name(&db, "K1").unwrap(), None, "{n}");
            assert_eq!(
                source_name(&db, "itglue", "configuration", "9")
                    .unwrap()
                    .as_deref(),
                Some("PC"),
                "{n}"
            );
            assert_eq!(
                source_name(&db, "itglue", "organization", "9").unwrap(),
                None
            );
            assert_eq!(
                scopable_identifiers(&db, "k1").unwrap(),
                Some(Identifiers {
                    serial_number: None,
                    mac_addresses: vec!["aa:bb:cc:dd:ee:ff".into()],
                    hostname: Some("pc.acme".into()),
                }),
                "{n}"
            );
            assert_eq!(scopable_identifiers(&db, "k2").unwrap(), None, "{n}");
            assert_eq!(
                source_identifiers(&db, "itglue", "9").unwrap(),
                Some(Identifiers {
                    serial_number: Some("SN9".into()),
                    mac_addresses: vec!["m".into()],
                    hostname: Some("pc".into()),
                }),
                "{n}"
            );
            // Not kept, unreadable, or unknown: none.
            assert_eq!(
                source_identifiers(&db, "itglue", "10").unwrap(),
                None,
                "{n}"
            );
            assert_eq!(
                source_identifiers(&db, "itglue", "11").unwrap(),
                None,
                "{n}"
            );
            assert_eq!(
                source_identifiers(&db, "itglue", "1001").unwrap(),
                None,
                "{n}"
            );
            // Another account reads none of it.
            let other = t.open("b");
            assert_eq!(client_name(&other, "c1").unwrap(), None, "{n}");
            assert_eq!(
                source_identifiers(&other, "itglue", "9").unwrap(),
                None,
                "{n}"
            );
        }
    }

    #[test]
    fn links_unplaced_and_organizations_read_as_stored() {
        let mut read = Vec::new();
        for t in databases("views_links") {
            let db = t.open("a");
            fill(&db);
            let n = t.name;
            let links = links(&db, "itglue").unwrap();
            let keys: Vec<(&str, &str)> = links
                .iter()
                .map(|l| (l.kind.as_str(), l.source_id.as_str()))
                .collect();
            assert_eq!(
                keys,
                [
                    ("configuration", "10"),
                    ("configuration", "9"),
                    ("organization", "1001")
                ],
                "{n}"
            );
            assert_eq!(
                links[1],
                LinkRow {
                    kind: "configuration".into(),
                    source_id: "9".into(),
                    scopable_id: "k1".into(),
                    source: "manual".into(),
                    evidence: "[\"manual\"]".into(),
                    linked_at: "t2".into(),
                },
                "{n}"
            );
            assert_eq!(link_count(&db, "itglue").unwrap(), 3, "{n}");
            assert_eq!(link_count(&db, "other").unwrap(), 0, "{n}");
            // Neither the decided record nor the linked one is listed.
            let unplaced = unplaced(&db, "itglue").unwrap();
            let keys: Vec<(&str, &str, &str)> = unplaced
                .iter()
                .map(|u| (u.kind.as_str(), u.source_id.as_str(), u.reason.as_str()))
                .collect();
            assert_eq!(
                keys,
                [
                    ("configuration", "12", "no-match"),
                    ("organization", "2003", "multiple-clients")
                ],
                "{n}"
            );
            assert_eq!(unplaced[1].candidates, "[\"c1\",\"c2\"]", "{n}");
            assert_eq!(unplaced[0].suggestions, "[\"k1\"]", "{n}");
            assert_eq!(
                configuration_organization(&db, "itglue", "9")
                    .unwrap()
                    .as_deref(),
                Some("1001"),
                "{n}"
            );
            assert_eq!(
                configuration_organization(&db, "itglue", "10").unwrap(),
                None
            );
            assert_eq!(
                configuration_organization(&db, "itglue", "99").unwrap(),
                None
            );
            assert_eq!(
                organization_link(&db, "itglue", Some("1001"))
                    .unwrap()
                    .as_deref(),
                Some("c1"),
                "{n}"
            );
            assert_eq!(organization_link(&db, "itglue", None).unwrap(), None, "{n}");
            assert_eq!(
                organization_link(&db, "itglue", Some("2003")).unwrap(),
                None
            );
            assert!(organization_ignored(&db, "itglue", "2002").unwrap(), "{n}");
            assert!(!organization_ignored(&db, "itglue", "2003").unwrap(), "{n}");
            assert_eq!(
                organization_unplaced_reason(&db, "itglue", "2003")
                    .unwrap()
                    .as_deref(),
                Some("multiple-clients"),
                "{n}"
            );
            assert_eq!(
                organization_unplaced_reason(&db, "itglue", "1001").unwrap(),
                None
            );
            let other = t.open("b");
            assert!(
                crate::views::links(&other, "itglue").unwrap().is_empty(),
                "{n}"
            );
            assert!(
                crate::views::unplaced(&other, "itglue").unwrap().is_empty(),
                "{n}"
            );
            read.push((links, unplaced));
        }
        assert_eq!(read[0], read[1], "SQLite and PostgreSQL read the same");
    }
}

//! Scopable's records (clients and configurations): the reads a sync feeds to the connector,
//! and the writes of a CSV import, all or nothing. Rows are those of the handle's account.

use crate::db::DbError;
use crate::handle::Db;
use rusqlite::params;
use std::collections::{HashMap, HashSet};

/// The MAC addresses `import` stored as a JSON list (in result column `column`). Anything else
/// is an error naming the fix, never an empty list that would silently drop evidence.
pub fn stored_macs(text: &str, column: usize) -> rusqlite::Result<Vec<String>> {
    serde_json::from_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Text,
            format!(
                "the stored MAC addresses are not a JSON list of strings ({e}); re-import configurations"
            )
            .into(),
        )
    })
}

/// Every Scopable client: (id, name), by id.
pub fn clients(db: &Db) -> Result<Vec<(String, String)>, DbError> {
    let mut stmt = db
        .conn()
        .prepare("SELECT id, name FROM clients WHERE account = ?1 ORDER BY id")?;
    let rows = stmt.query_map([db.account()], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every organization link (automatic or manual): (organization, client), by organization.
pub fn organization_links(db: &Db, connector: &str) -> Result<Vec<(String, String)>, DbError> {
    let mut stmt = db.conn().prepare(
        "SELECT source_id, scopable_id FROM links
         WHERE account = ?1 AND connector = ?2 AND kind = 'organization' ORDER BY source_id",
    )?;
    let rows = stmt.query_map(params![db.account(), connector], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A Scopable configuration as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configuration {
    /// Its id.
    pub id: String,
    /// Its client.
    pub client_id: String,
    /// Its name.
    pub name: String,
    /// Its hostname.
    pub hostname: Option<String>,
    /// Its serial number.
    pub serial_number: Option<String>,
    /// Its MAC addresses.
    pub mac_addresses: Vec<String>,
}

/// The Scopable configurations of the given clients, by id.
pub fn configurations_of(db: &Db, clients: &HashSet<&str>) -> Result<Vec<Configuration>, DbError> {
    let mut stmt = db.conn().prepare(
        "SELECT id, client_id, name, hostname, serial_number, mac_addresses FROM configurations
         WHERE account = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([db.account()], |r| {
        let macs: String = r.get(5)?;
        Ok(Configuration {
            id: r.get(0)?,
            client_id: r.get(1)?,
            name: r.get(2)?,
            hostname: r.get(3)?,
            serial_number: r.get(4)?,
            mac_addresses: stored_macs(&macs, 5)?,
        })
    })?;
    let mut out = Vec::new();
    for row in rows {
        let row = row?;
        if clients.contains(row.client_id.as_str()) {
            out.push(row);
        }
    }
    Ok(out)
}

/// Writes imported clients, (id, name) each, in one transaction, updating existing ids;
/// returns how many did not exist before.
pub fn import_clients(db: &Db, rows: &[(&str, &str)]) -> Result<usize, DbError> {
    let tx = db.conn().unchecked_transaction()?;
    let mut added = 0;
    for (id, name) in rows {
        let existed = tx.execute(
            "UPDATE clients SET name = ?3 WHERE account = ?1 AND id = ?2",
            params![db.account(), id, name],
        )? > 0;
        if !existed {
            tx.execute(
                "INSERT INTO clients (account, id, name) VALUES (?1, ?2, ?3)",
                params![db.account(), id, name],
            )?;
            added += 1;
        }
    }
    tx.commit()?;
    Ok(added)
}

/// The id of every client.
pub fn client_ids(db: &Db) -> Result<HashSet<String>, DbError> {
    let mut clients = HashSet::new();
    let mut stmt = db
        .conn()
        .prepare("SELECT id FROM clients WHERE account = ?1")?;
    for id in stmt.query_map([db.account()], |r| r.get::<_, String>(0))? {
        clients.insert(id?);
    }
    Ok(clients)
}

/// The configurations linked by hand: configuration id -> its client.
pub fn manually_linked_configurations(db: &Db) -> Result<HashMap<String, String>, DbError> {
    let mut manual_targets = HashMap::new();
    let mut stmt = db.conn().prepare(
        "SELECT c.id, c.client_id FROM configurations c JOIN links l
         ON l.account = c.account AND l.kind = 'configuration' AND l.source = 'manual'
            AND l.scopable_id = c.id
         WHERE c.account = ?1",
    )?;
    for row in stmt.query_map([db.account()], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })? {
        let (id, client) = row?;
        manual_targets.insert(id, client);
    }
    Ok(manual_targets)
}

/// An imported configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedConfiguration<'a> {
    /// Its id.
    pub id: &'a str,
    /// Its client.
    pub client_id: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its hostname.
    pub hostname: Option<&'a str>,
    /// Its serial number.
    pub serial_number: Option<&'a str>,
    /// Its MAC addresses (stored as a JSON list).
    pub mac_addresses: Vec<String>,
}

/// Writes imported configurations in one transaction, updating existing ids; returns how many
/// did not exist before.
pub fn import_configurations(
    db: &Db,
    rows: &[ImportedConfiguration<'_>],
) -> Result<usize, DbError> {
    let tx = db.conn().unchecked_transaction()?;
    let mut added = 0;
    for c in rows {
        let macs = serde_json::json!(c.mac_addresses).to_string();
        let updated = tx.execute(
            "UPDATE configurations SET client_id = ?3, name = ?4, hostname = ?5, serial_number = ?6,
                    mac_addresses = ?7
             WHERE account = ?1 AND id = ?2",
            params![
                db.account(),
                c.id,
                c.client_id,
                c.name,
                c.hostname,
                c.serial_number,
                macs
            ],
        )? > 0;
        if !updated {
            tx.execute(
                "INSERT INTO configurations (account, id, client_id, name, hostname, serial_number,
                                             mac_addresses)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    db.account(),
                    c.id,
                    c.client_id,
                    c.name,
                    c.hostname,
                    c.serial_number,
                    macs
                ],
            )?;
            added += 1;
        }
    }
    tx.commit()?;
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_stored_macs_are_an_error_not_an_empty_list() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("m.db"), crate::DEFAULT_ACCOUNT).unwrap();
        db.conn()
            .execute_batch(
                "INSERT INTO clients (account, id, name) VALUES ('default', 'c1', 'Acme');
                 INSERT INTO configurations (account, id, client_id, name, mac_addresses)
                     VALUES ('default', 'k1', 'c1', 'pc', '[\"00:11:22:33:44:55\"]');",
            )
            .unwrap();
        let clients: HashSet<&str> = ["c1"].into_iter().collect();
        let ok = configurations_of(&db, &clients).unwrap();
        assert_eq!(ok[0].mac_addresses, vec!["00:11:22:33:44:55".to_string()]);
        db.conn()
            .execute(
                "UPDATE configurations SET mac_addresses = 'not json' WHERE id = 'k1'",
                [],
            )
            .unwrap();
        let err = configurations_of(&db, &clients).unwrap_err().to_string();
        assert!(err.contains("MAC addresses"), "{err}");
    }
}

//! Scopable's records (clients and configurations): the reads a sync feeds to the connector,
//! and the writes of a CSV import, all or nothing. Rows are those of the handle's account.

use crate::db::DbError;
use crate::handle::Db;
use crate::sql::Sql;
use crate::values;
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
    db.sql()
        .query(
            "SELECT id, name FROM clients WHERE account = ?1 ORDER BY id",
            &values![db.account()],
        )?
        .iter()
        .map(|r| Ok((r.text(0)?, r.text(1)?)))
        .collect()
}

/// Every organization link (automatic or manual): (organization, client), by organization.
pub fn organization_links(db: &Db, connector: &str) -> Result<Vec<(String, String)>, DbError> {
    db.sql()
        .query(
            "SELECT source_id, scopable_id FROM links
             WHERE account = ?1 AND connector = ?2 AND kind = 'organization' ORDER BY source_id",
            &values![db.account(), connector],
        )?
        .iter()
        .map(|r| Ok((r.text(0)?, r.text(1)?)))
        .collect()
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
    let rows = db.sql().query(
        &format!(
            "SELECT {CONFIGURATION_COLUMNS} FROM configurations WHERE account = ?1 ORDER BY id"
        ),
        &values![db.account()],
    )?;
    let mut out = Vec::new();
    for r in rows {
        let client_id = r.text(1)?;
        if !clients.contains(client_id.as_str()) {
            continue;
        }
        out.push(configuration_at(&r)?);
    }
    Ok(out)
}

/// The configuration of a row of [`CONFIGURATION_COLUMNS`].
fn configuration_at(r: &crate::sql::Row) -> Result<Configuration, DbError> {
    Ok(Configuration {
        id: r.text(0)?,
        client_id: r.text(1)?,
        name: r.text(2)?,
        hostname: r.opt_text(3)?,
        serial_number: r.opt_text(4)?,
        mac_addresses: stored_macs(&r.text(5)?, 5)?,
    })
}

/// The columns [`configuration_at`] reads, in its order.
const CONFIGURATION_COLUMNS: &str = "id, client_id, name, hostname, serial_number, mac_addresses";

/// How many configurations each client has: client id -> count.
pub fn configuration_counts(db: &Db) -> Result<std::collections::HashMap<String, u64>, DbError> {
    db.sql()
        .query(
            "SELECT client_id, count(*) FROM configurations WHERE account = ?1 GROUP BY client_id",
            &values![db.account()],
        )?
        .iter()
        .map(|r| Ok((r.text(0)?, u64::try_from(r.int(1)?).unwrap_or(0))))
        .collect()
}

/// The configurations of `clients` (in the database's order), by client and then by id.
pub fn configurations_of_clients(db: &Db, clients: &[&str]) -> Result<Vec<Configuration>, DbError> {
    // Each statement's rows come by client; the clients are in order, so all of them are.
    crate::sql::query_in(
        db.sql(),
        &format!(
            "SELECT {CONFIGURATION_COLUMNS} FROM configurations WHERE account = ?1 AND client_id"
        ),
        &values![db.account()],
        clients,
        "ORDER BY client_id, id",
    )?
    .iter()
    .map(configuration_at)
    .collect()
}

/// Writes imported clients, (id, name) each, in one transaction, updating existing ids;
/// returns how many did not exist before. Imports of an account wait for each other (on
/// PostgreSQL, a transaction lock; on SQLite, the write lock); the transaction runs on a
/// connection of its own ([`Db::sibling`]).
pub fn import_clients(db: &Db, rows: &[(&str, &str)]) -> Result<usize, DbError> {
    let account = db.account();
    let mut own = db.sibling()?;
    let tx = own.begin()?;
    tx.lock(&import_lock(account))?;
    let mut added = 0;
    for &(id, name) in rows {
        let existed = tx.execute(
            "UPDATE clients SET name = ?3 WHERE account = ?1 AND id = ?2",
            &values![account, id, name],
        )? > 0;
        if !existed {
            tx.execute(
                "INSERT INTO clients (account, id, name) VALUES (?1, ?2, ?3)",
                &values![account, id, name],
            )?;
            added += 1;
        }
    }
    tx.commit()?;
    Ok(added)
}

/// The lock the imports of `account`'s clients and configurations take first: each finds
/// which ids exist with the other imports' rows in sight.
fn import_lock(account: &str) -> String {
    format!("records/{account}")
}

/// The id of every client.
pub fn client_ids(db: &Db) -> Result<HashSet<String>, DbError> {
    db.sql()
        .query(
            "SELECT id FROM clients WHERE account = ?1",
            &values![db.account()],
        )?
        .iter()
        .map(|r| r.text(0))
        .collect()
}

/// The configurations linked by hand: configuration id -> its client.
pub fn manually_linked_configurations(db: &Db) -> Result<HashMap<String, String>, DbError> {
    db.sql()
        .query(
            "SELECT c.id, c.client_id FROM configurations c JOIN links l
             ON l.account = c.account AND l.kind = 'configuration' AND l.source = 'manual'
                AND l.scopable_id = c.id
             WHERE c.account = ?1",
            &values![db.account()],
        )?
        .iter()
        .map(|r| Ok((r.text(0)?, r.text(1)?)))
        .collect()
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
/// did not exist before. Waits for the account's other imports, as [`import_clients`] does.
pub fn import_configurations(
    db: &Db,
    rows: &[ImportedConfiguration<'_>],
) -> Result<usize, DbError> {
    let account = db.account();
    let mut own = db.sibling()?;
    let tx = own.begin()?;
    tx.lock(&import_lock(account))?;
    let mut added = 0;
    for c in rows {
        let macs = serde_json::json!(c.mac_addresses).to_string();
        let updated = tx.execute(
            "UPDATE configurations SET client_id = ?3, name = ?4, hostname = ?5, serial_number = ?6,
                    mac_addresses = ?7
             WHERE account = ?1 AND id = ?2",
            &values![
                account,
                c.id,
                c.client_id,
                c.name,
                c.hostname,
                c.serial_number,
                &macs
            ],
        )? > 0;
        if !updated {
            tx.execute(
                "INSERT INTO configurations (account, id, client_id, name, hostname, serial_number,
                                             mac_addresses)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                &values![
                    account,
                    c.id,
                    c.client_id,
                    c.name,
                    c.hostname,
                    c.serial_number,
                    &macs
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
    use crate::testing::databases;

    fn configuration<'a>(
        id: &'a str,
        client_id: &'a str,
        macs: &[&str],
    ) -> ImportedConfiguration<'a> {
        ImportedConfiguration {
            id,
            client_id,
            name: "pc",
            hostname: Some("pc-1"),
            serial_number: None,
            mac_addresses: macs.iter().map(|m| m.to_string()).collect(),
        }
    }

    #[test]
    fn malformed_stored_macs_are_an_error_not_an_empty_list() {
        for t in databases("records_macs") {
            let db = t.open(crate::DEFAULT_ACCOUNT);
            db.sql()
                .execute(
                    "INSERT INTO clients (account, id, name) VALUES ('default', 'c1', 'Acme')",
                    &[],
                )
                .unwrap();
            db.sql()
                .execute(
                    "INSERT INTO configurations (account, id, client_id, name, mac_addresses)
                     VALUES ('default', 'k1', 'c1', 'pc', '[\"00:11:22:33:44:55\"]')",
                    &[],
                )
                .unwrap();
            let clients: HashSet<&str> = ["c1"].into_iter().collect();
            let ok = configurations_of(&db, &clients).unwrap();
            assert_eq!(
                ok[0].mac_addresses,
                vec!["00:11:22:33:44:55".to_string()],
                "{}",
                t.name
            );
            db.sql()
                .execute(
                    "UPDATE configurations SET mac_addresses = 'not json' WHERE id = 'k1'",
                    &[],
                )
                .unwrap();
            let err = configurations_of(&db, &clients).unwrap_err().to_string();
            assert!(err.contains("MAC addresses"), "{}: {err}", t.name);
        }
    }

    #[test]
    fn imports_add_new_ids_update_existing_ones_and_read_back_per_account() {
        for t in databases("records_import") {
            let a = t.open("a");
            let b = t.open("b");
            assert_eq!(
                import_clients(&a, &[("c2", "Beta"), ("c1", "Acme")]).unwrap(),
                2,
                "{}",
                t.name
            );
            // An existing id is renamed, not added again.
            assert_eq!(
                import_clients(&a, &[("c1", "Acme Inc"), ("c3", "Gamma")]).unwrap(),
                1,
                "{}",
                t.name
            );
            assert_eq!(
                clients(&a).unwrap(),
                [
                    ("c1".to_string(), "Acme Inc".to_string()),
                    ("c2".to_string(), "Beta".to_string()),
                    ("c3".to_string(), "Gamma".to_string())
                ],
                "{}",
                t.name
            );
            assert_eq!(client_ids(&a).unwrap().len(), 3, "{}", t.name);
            // Another account has its own clients, under the same ids.
            assert_eq!(import_clients(&b, &[("c1", "Other")]).unwrap(), 1);
            assert_eq!(
                clients(&b).unwrap(),
                [("c1".to_string(), "Other".to_string())],
                "{}",
                t.name
            );

            let added = import_configurations(
                &a,
                &[
                    configuration("k2", "c2", &[]),
                    configuration("k1", "c1", &["00:11:22:33:44:55", "66:77:88:99:aa:bb"]),
                ],
            )
            .unwrap();
            assert_eq!(added, 2, "{}", t.name);
            // Moving one to another client updates it.
            let moved = import_configurations(&a, &[configuration("k2", "c3", &["aa"])]).unwrap();
            assert_eq!(moved, 0, "{}", t.name);
            let of: HashSet<&str> = ["c1", "c3"].into_iter().collect();
            let read = configurations_of(&a, &of).unwrap();
            assert_eq!(
                read,
                [
                    Configuration {
                        id: "k1".into(),
                        client_id: "c1".into(),
                        name: "pc".into(),
                        hostname: Some("pc-1".into()),
                        serial_number: None,
                        mac_addresses: vec!["00:11:22:33:44:55".into(), "66:77:88:99:aa:bb".into()],
                    },
                    Configuration {
                        id: "k2".into(),
                        client_id: "c3".into(),
                        name: "pc".into(),
                        hostname: Some("pc-1".into()),
                        serial_number: None,
                        mac_addresses: vec!["aa".into()],
                    }
                ],
                "{}",
                t.name
            );
            // Only the clients asked for.
            let only: HashSet<&str> = ["c1"].into_iter().collect();
            assert_eq!(configurations_of(&a, &only).unwrap().len(), 1, "{}", t.name);
            assert!(configurations_of(&b, &of).unwrap().is_empty(), "{}", t.name);

            // Links as a sync or a reviewer writes them.
            for (kind, source_id, scopable_id, source) in [
                ("organization", "1002", "c2", "auto"),
                ("organization", "1001", "c1", "manual"),
                ("configuration", "2001", "k1", "manual"),
                ("configuration", "2002", "k2", "auto"),
            ] {
                a.sql()
                    .execute(
                        "INSERT INTO links (account, connector, kind, source_id, scopable_id,
                                            source, evidence, linked_at)
                         VALUES ('a', 'itglue', ?1, ?2, ?3, ?4, '[]', 'now')",
                        &values![kind, source_id, scopable_id, source],
                    )
                    .unwrap();
            }
            assert_eq!(
                organization_links(&a, "itglue").unwrap(),
                [
                    ("1001".to_string(), "c1".to_string()),
                    ("1002".to_string(), "c2".to_string())
                ],
                "{}",
                t.name
            );
            assert!(organization_links(&a, "other").unwrap().is_empty());
            assert!(organization_links(&b, "itglue").unwrap().is_empty());
            let manual = manually_linked_configurations(&a).unwrap();
            assert_eq!(
                manual,
                HashMap::from([("k1".to_string(), "c1".to_string())]),
                "{}",
                t.name
            );
            assert!(manually_linked_configurations(&b).unwrap().is_empty());
        }
    }

    #[test]
    fn an_import_that_fails_writes_nothing() {
        for t in databases("records_all_or_nothing") {
            let db = t.open("a");
            import_clients(&db, &[("c1", "Acme")]).unwrap();
            // The second configuration's client does not exist: the first is not kept either.
            let err = import_configurations(
                &db,
                &[
                    configuration("k1", "c1", &[]),
                    configuration("k2", "nope", &[]),
                ],
            );
            assert!(err.is_err(), "{}", t.name);
            let all: HashSet<&str> = ["c1", "nope"].into_iter().collect();
            assert!(
                configurations_of(&db, &all).unwrap().is_empty(),
                "{}",
                t.name
            );
            // The handle is still usable, and a good import goes through.
            assert_eq!(
                import_configurations(&db, &[configuration("k1", "c1", &[])]).unwrap(),
                1,
                "{}",
                t.name
            );
        }
    }

    #[test]
    fn replicas_importing_at_once_add_each_client_once() {
        for t in databases("records_replicas") {
            let ids: Vec<String> = (0..20).map(|i| format!("c{i:02}")).collect();
            let rows: Vec<(&str, &str)> = ids.iter().map(|id| (id.as_str(), "Client")).collect();
            let handles: Vec<Db> = (0..4).map(|_| t.open("a")).collect();
            let start = std::sync::Barrier::new(handles.len());
            let added: Vec<usize> = std::thread::scope(|s| {
                let running: Vec<_> = handles
                    .into_iter()
                    .map(|db| {
                        let (rows, start) = (&rows, &start);
                        s.spawn(move || {
                            start.wait();
                            import_clients(&db, rows).unwrap()
                        })
                    })
                    .collect();
                running.into_iter().map(|h| h.join().unwrap()).collect()
            });
            // Every replica's import succeeded, and together they added each id once.
            assert_eq!(
                added.iter().sum::<usize>(),
                ids.len(),
                "{}: {added:?}",
                t.name
            );
            assert_eq!(
                client_ids(&t.open("a")).unwrap().len(),
                ids.len(),
                "{}",
                t.name
            );
        }
    }
}

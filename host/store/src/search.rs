//! The reads a search over Scopable's records needs: every client, and the configurations
//! (all, or one client's) with their client's name. Rows are those of the handle's account.
//! Matching is the caller's, on the values as stored: nothing here compares text beyond ids,
//! so a search finds the same on SQLite and on PostgreSQL.

use crate::db::DbError;
use crate::handle::Db;
use crate::records::stored_macs;
use crate::values;

/// Every client: (id, name), by id (as text).
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

/// A configuration as a search reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configuration {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its client's id.
    pub client_id: String,
    /// Its client's name (empty when the client is missing).
    pub client_name: String,
    /// Its hostname.
    pub hostname: Option<String>,
    /// Its serial number.
    pub serial_number: Option<String>,
    /// Its MAC addresses.
    pub mac_addresses: Vec<String>,
}

/// The configurations, all or only those of `within_client`, by id (as text).
pub fn configurations(db: &Db, within_client: Option<&str>) -> Result<Vec<Configuration>, DbError> {
    db.sql()
        .query(
            "SELECT c.id, c.name, c.client_id, coalesce(k.name, ''), c.hostname, c.serial_number,
                    c.mac_addresses
             FROM configurations c
             LEFT JOIN clients k ON k.account = c.account AND k.id = c.client_id
             WHERE c.account = ?1 AND (CAST(?2 AS TEXT) IS NULL OR c.client_id = ?2)
             ORDER BY c.id",
            &values![db.account(), within_client],
        )?
        .iter()
        .map(|r| {
            Ok(Configuration {
                id: r.text(0)?,
                name: r.text(1)?,
                client_id: r.text(2)?,
                client_name: r.text(3)?,
                hostname: r.opt_text(4)?,
                serial_number: r.opt_text(5)?,
                mac_addresses: stored_macs(&r.text(6)?, 6)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::databases;

    /// Clients and configurations whose ids sort differently as text and as numbers, whose
    /// names differ only in case or carry accents, some identifiers missing; and a row of
    /// another account.
    fn fill(db: &Db) {
        let sql = db.sql();
        for (id, name) in [
            ("9", "acme"),
            ("10", "ACME"),
            ("B", "Érable"),
            ("a", "érable"),
        ] {
            sql.execute(
                "INSERT INTO clients (account, id, name) VALUES (?1, ?2, ?3)",
                &values![db.account(), id, name],
            )
            .unwrap();
        }
        sql.execute(
            "INSERT INTO clients (account, id, name) VALUES ('other', 'x', 'Acme')",
            &[],
        )
        .unwrap();
        let configurations = [
            ("k2", "9", "PC-1", Some("pc-1.ACME.local"), None, "[]"),
            (
                "k10",
                "9",
                "pc-1",
                None,
                Some("SN-1"),
                r#"["AA:BB:CC:DD:EE:FF"]"#,
            ),
            ("K1", "B", "Poste é", Some("poste"), Some("sn-1"), "[]"),
            ("k1", "10", "laptop", None, None, r#"["aa-bb-cc-dd-ee-ff"]"#),
        ];
        for (id, client, name, hostname, serial, macs) in configurations {
            sql.execute(
                "INSERT INTO configurations (account, id, client_id, name, hostname,
                                             serial_number, mac_addresses)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                &values![db.account(), id, client, name, hostname, serial, macs],
            )
            .unwrap();
        }
    }

    #[test]
    fn both_databases_read_the_same_records_in_the_same_order() {
        let mut read = Vec::new();
        for t in databases("search_reads") {
            let db = t.open("a");
            fill(&db);
            let every_client = clients(&db).unwrap();
            assert_eq!(
                every_client,
                [
                    ("10", "ACME"),
                    ("9", "acme"),
                    ("B", "Érable"),
                    ("a", "érable")
                ]
                .map(|(id, name)| (id.to_string(), name.to_string())),
                "{}: every client of the account, by id as text",
                t.name
            );
            let all = configurations(&db, None).unwrap();
            let ids: Vec<&str> = all.iter().map(|c| c.id.as_str()).collect();
            assert_eq!(ids, ["K1", "k1", "k10", "k2"], "{}", t.name);
            assert_eq!(
                all[2],
                Configuration {
                    id: "k10".into(),
                    name: "pc-1".into(),
                    client_id: "9".into(),
                    client_name: "acme".into(),
                    hostname: None,
                    serial_number: Some("SN-1".into()),
                    mac_addresses: vec!["AA:BB:CC:DD:EE:FF".into()],
                },
                "{}",
                t.name
            );
            let within = configurations(&db, Some("9")).unwrap();
            let ids: Vec<&str> = within.iter().map(|c| c.id.as_str()).collect();
            assert_eq!(ids, ["k10", "k2"], "{}", t.name);
            // Client ids are compared exactly: no case folding.
            assert!(
                configurations(&db, Some("b")).unwrap().is_empty(),
                "{}",
                t.name
            );
            assert!(configurations(&db, Some("unknown")).unwrap().is_empty());
            assert!(clients(&t.open("b")).unwrap().is_empty(), "{}", t.name);
            read.push((every_client, all, within));
        }
        assert_eq!(read.len(), 2);
        assert_eq!(read[0], read[1], "SQLite and PostgreSQL read the same");
    }

    #[test]
    fn malformed_stored_macs_are_an_error() {
        for t in databases("search_macs") {
            let db = t.open("a");
            fill(&db);
            db.sql()
                .execute(
                    "UPDATE configurations SET mac_addresses = 'AA:BB' WHERE id = 'k2'",
                    &[],
                )
                .unwrap();
            let e = configurations(&db, None).unwrap_err().to_string();
            assert!(e.contains("re-import configurations"), "{}: {e}", t.name);
        }
    }
}

//! Reads of the Scopable records and links that a sync feeds to the connector.

use rusqlite::{Connection, params};
use scopable_sandbox::sandbox::wit_types as types;
use std::collections::HashSet;

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

/// Every Scopable client.
pub fn clients(conn: &Connection) -> rusqlite::Result<Vec<types::Client>> {
    let mut stmt = conn.prepare("SELECT id, name FROM clients ORDER BY id")?;
    let rows = stmt.query_map([], |r| {
        Ok(types::Client {
            id: r.get(0)?,
            name: r.get(1)?,
        })
    })?;
    rows.collect()
}

/// Every organization link (automatic or manual): organization -> client.
pub fn organization_links(
    conn: &Connection,
    connector: &str,
) -> rusqlite::Result<Vec<types::Pair>> {
    let mut stmt = conn.prepare(
        "SELECT itglue_id, scopable_id FROM links WHERE connector = ?1 AND kind = 'organization' ORDER BY itglue_id",
    )?;
    let rows = stmt.query_map(params![connector], |r| {
        Ok(types::Pair {
            source_id: r.get(0)?,
            scopable_id: r.get(1)?,
        })
    })?;
    rows.collect()
}

/// The Scopable configurations of the given clients.
pub fn configurations_of(
    conn: &Connection,
    clients: &HashSet<&str>,
) -> rusqlite::Result<Vec<types::ScopableConfiguration>> {
    let mut stmt = conn.prepare(
        "SELECT id, client_id, name, hostname, serial_number, mac_addresses FROM configurations ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        let macs: String = r.get(5)?;
        Ok(types::ScopableConfiguration {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_stored_macs_are_an_error_not_an_empty_list() {
        let dir = tempfile::tempdir().unwrap();
        let conn = scopable_store::db::open(&dir.path().join("m.db")).unwrap();
        conn.execute_batch(
            "INSERT INTO clients (id, name) VALUES ('c1', 'Acme');
             INSERT INTO configurations (id, client_id, name, mac_addresses)
                 VALUES ('k1', 'c1', 'pc', '[\"00:11:22:33:44:55\"]');",
        )
        .unwrap();
        let clients: HashSet<&str> = ["c1"].into_iter().collect();
        let ok = configurations_of(&conn, &clients).unwrap();
        assert_eq!(ok[0].mac_addresses, vec!["00:11:22:33:44:55".to_string()]);
        conn.execute(
            "UPDATE configurations SET mac_addresses = 'not json' WHERE id = 'k1'",
            [],
        )
        .unwrap();
        let err = configurations_of(&conn, &clients).unwrap_err().to_string();
        assert!(err.contains("MAC addresses"), "{err}");
    }
}

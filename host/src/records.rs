//! Reads of the Scopable records and links that a sync feeds to the connector.

use crate::sandbox::wit_types as types;
use rusqlite::{Connection, params};
use std::collections::HashSet;

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
            itglue_id: r.get(0)?,
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
            mac_addresses: serde_json::from_str(&macs).unwrap_or_default(),
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

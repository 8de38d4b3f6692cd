//! The reads a search over Scopable's records needs: every client, and the configurations
//! (all, or one client's) with their client's name. Rows are those of the handle's account.

use crate::db::DbError;
use crate::handle::Db;
use crate::records::stored_macs;
use rusqlite::params;

/// Every client: (id, name), in no particular order.
pub fn clients(db: &Db) -> Result<Vec<(String, String)>, DbError> {
    let mut stmt = db
        .conn()
        .prepare("SELECT id, name FROM clients WHERE account = ?1")?;
    let rows = stmt.query_map([db.account()], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
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

/// The configurations, all or only those of `within_client`, in no particular order.
pub fn configurations(db: &Db, within_client: Option<&str>) -> Result<Vec<Configuration>, DbError> {
    let mut stmt = db.conn().prepare(
        "SELECT c.id, c.name, c.client_id, coalesce(k.name, ''), c.hostname, c.serial_number,
                c.mac_addresses
         FROM configurations c LEFT JOIN clients k ON k.account = c.account AND k.id = c.client_id
         WHERE c.account = ?1 AND (?2 IS NULL OR c.client_id = ?2)",
    )?;
    let rows = stmt.query_map(params![db.account(), within_client], |r| {
        let macs: String = r.get(6)?;
        Ok(Configuration {
            id: r.get(0)?,
            name: r.get(1)?,
            client_id: r.get(2)?,
            client_name: r.get(3)?,
            hostname: r.get(4)?,
            serial_number: r.get(5)?,
            mac_addresses: stored_macs(&macs, 6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

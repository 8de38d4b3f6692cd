//! Reads of the Scopable records and links that a sync feeds to the connector.

use scopable_sandbox::sandbox::wit_types as types;
use scopable_store::Db;
use scopable_store::db::DbError;
use std::collections::HashSet;

/// Every Scopable client.
pub fn clients(db: &Db) -> Result<Vec<types::Client>, DbError> {
    Ok(scopable_store::records::clients(db)?
        .into_iter()
        .map(|(id, name)| types::Client { id, name })
        .collect())
}

/// Every organization link (automatic or manual): organization -> client.
pub fn organization_links(db: &Db, connector: &str) -> Result<Vec<types::Pair>, DbError> {
    Ok(scopable_store::records::organization_links(db, connector)?
        .into_iter()
        .map(|(source_id, scopable_id)| types::Pair {
            source_id,
            scopable_id,
        })
        .collect())
}

/// The Scopable configurations of the given clients.
pub fn configurations_of(
    db: &Db,
    clients: &HashSet<&str>,
) -> Result<Vec<types::ScopableConfiguration>, DbError> {
    Ok(scopable_store::records::configurations_of(db, clients)?
        .into_iter()
        .map(scopable)
        .collect())
}

/// A stored Scopable configuration, as the connector sees it.
fn scopable(c: scopable_store::records::Configuration) -> types::ScopableConfiguration {
    types::ScopableConfiguration {
        id: c.id,
        client_id: c.client_id,
        name: c.name,
        hostname: c.hostname,
        serial_number: c.serial_number,
        mac_addresses: c.mac_addresses,
    }
}

/// The Scopable configurations of `clients` (in the database's order), by client and then
/// by id.
pub fn configurations_of_clients(
    db: &Db,
    clients: &[&str],
) -> Result<Vec<types::ScopableConfiguration>, DbError> {
    Ok(
        scopable_store::records::configurations_of_clients(db, clients)?
            .into_iter()
            .map(scopable)
            .collect(),
    )
}

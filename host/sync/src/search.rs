//! Search over the Scopable records (clients and configurations), so that an admin can find
//! the record to link by hand without knowing its id.
//!
//! Every value is compared the way the matcher compares it (the shared `scopable-normalize`
//! crate): names with the organization-name normalization, hostnames on their first DNS label,
//! serial numbers trimmed and uppercased, MAC addresses as 12 hex digits. Placeholder serials
//! and MACs (`To Be Filled By O.E.M.`, `00:00:00:00:00:00`) are no identifiers, so they never
//! match. A record whose normalized value equals the query's comes first; then the records
//! whose value contains it (MACs match whole only: part of a MAC is not a MAC). Within each
//! group the order is by name, then id, so the same query always lists the same way.
//!
//! Nothing here prints: the command line (`search`, `link --find`) formats the hits, every
//! value through [`scopable_sandbox::display`], and an API can serialize the same [`Hit`]s.

use crate::kinds::id_order;
use scopable_normalize::{normalize_hostname, normalize_mac, normalize_name, normalize_serial};
use scopable_store::Db;
use scopable_store::db::DbError;
use serde::Serialize;
use std::cmp::Ordering;

/// The largest number of hits one search returns.
pub const MAX_LIMIT: usize = 10_000;

/// Which Scopable records to search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchKind {
    /// Clients, by name.
    Client,
    /// Configurations, by name, hostname, serial number and MAC address.
    Configuration,
}

impl SearchKind {
    /// The singular name used in JSON (`client`, `configuration`).
    pub fn as_str(self) -> &'static str {
        match self {
            SearchKind::Client => "client",
            SearchKind::Configuration => "configuration",
        }
    }

    /// The plural, for sentences (`clients`, `configurations`).
    pub fn plural(self) -> &'static str {
        match self {
            SearchKind::Client => "clients",
            SearchKind::Configuration => "configurations",
        }
    }
}

/// Which of a record's values matched the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Field {
    /// The record's name.
    Name,
    /// A configuration's hostname (its first DNS label).
    Hostname,
    /// A configuration's serial number.
    Serial,
    /// One of a configuration's MAC addresses.
    Mac,
}

impl Field {
    /// The field's name in JSON and in the command line's output.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Name => "name",
            Field::Hostname => "hostname",
            Field::Serial => "serial",
            Field::Mac => "mac",
        }
    }
}

/// One record found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hit {
    /// `client` or `configuration`.
    pub kind: SearchKind,
    /// The Scopable id (what `link` takes).
    pub id: String,
    /// The record's name, as imported.
    pub name: String,
    /// A configuration's client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The name of a configuration's client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// The value that matched (the best one, when several did).
    pub matched: Field,
    /// Whether the normalized value equals the query's (else it contains it).
    pub exact: bool,
    /// The matched value as imported (the name, hostname, serial or MAC), for people.
    #[serde(skip)]
    pub matched_value: String,
}

/// What a search found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The hits, best first, at most the limit asked for.
    pub hits: Vec<Hit>,
    /// How many records matched in all (more than `hits.len()` when the limit cut the list).
    pub total: usize,
}

/// Why a search could not run.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// Nothing is left of the query once normalized (empty, or only punctuation and spaces).
    #[error(
        "the query {query:?} has nothing to search for once normalized; give part of a name{}",
        if *.kind == SearchKind::Configuration { ", a hostname, a serial number or a MAC address" } else { "" }
    )]
    EmptyQuery {
        /// What was searched.
        kind: SearchKind,
        /// The query as given.
        query: String,
    },
    /// The database could not be read.
    #[error(transparent)]
    Sqlite(#[from] DbError),
}

impl From<SearchError> for crate::app::AppError {
    fn from(e: SearchError) -> crate::app::AppError {
        use crate::app::{AppError, Exit};
        match e {
            SearchError::EmptyQuery { .. } => AppError::new(Exit::BadInput, e.to_string()),
            SearchError::Sqlite(e) => AppError::from(e),
        }
    }
}

/// The query, normalized once for each kind of value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Query {
    name: Option<String>,
    hostname: Option<String>,
    serial: Option<String>,
    mac: Option<String>,
}

impl Query {
    fn new(kind: SearchKind, raw: &str) -> Query {
        let name = Some(normalize_name(raw)).filter(|n| !n.is_empty());
        match kind {
            SearchKind::Client => Query {
                name,
                hostname: None,
                serial: None,
                mac: None,
            },
            SearchKind::Configuration => Query {
                name,
                hostname: normalize_hostname(raw),
                serial: normalize_serial(raw),
                mac: normalize_mac(raw),
            },
        }
    }

    fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.hostname.is_none()
            && self.serial.is_none()
            && self.mac.is_none()
    }
}

/// How well one normalized value matches: `Some(true)` equal, `Some(false)` contains.
fn compare(value: Option<&str>, query: Option<&str>) -> Option<bool> {
    let (value, query) = (value?, query?);
    if value == query {
        Some(true)
    } else if value.contains(query) {
        Some(false)
    } else {
        None
    }
}

/// One record's values, raw and as the matcher sees them.
struct Record {
    id: String,
    name: String,
    client: Option<(String, String)>,
    hostname: Option<String>,
    serial: Option<String>,
    macs: Vec<String>,
}

impl Record {
    /// The record's best match, if any: an exact match before a partial one, and among equals
    /// the name, then the hostname, the serial, a MAC.
    fn best_match(&self, query: &Query) -> Option<(bool, Field, String)> {
        let mut candidates: Vec<(bool, Field, String)> = Vec::new();
        let normalized_name = normalize_name(&self.name);
        if let Some(exact) = compare(Some(&normalized_name), query.name.as_deref()) {
            candidates.push((exact, Field::Name, self.name.clone()));
        }
        if let Some(raw) = &self.hostname {
            let host = normalize_hostname(raw);
            if let Some(exact) = compare(host.as_deref(), query.hostname.as_deref()) {
                candidates.push((exact, Field::Hostname, raw.clone()));
            }
        }
        if let Some(raw) = &self.serial {
            let serial = normalize_serial(raw);
            if let Some(exact) = compare(serial.as_deref(), query.serial.as_deref()) {
                candidates.push((exact, Field::Serial, raw.clone()));
            }
        }
        if let Some(wanted) = &query.mac
            && let Some(raw) = self
                .macs
                .iter()
                .find(|m| normalize_mac(m).as_deref() == Some(wanted.as_str()))
        {
            candidates.push((true, Field::Mac, raw.clone()));
        }
        // Exact first (`true` sorts after `false`, hence the reversal), then the field order.
        candidates
            .into_iter()
            .min_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)))
    }
}

/// Searches the Scopable records of `kind` for `query`, best first, returning at most `limit`
/// hits (`None`: every hit, up to [`MAX_LIMIT`]) and how many matched in all. `within_client`
/// keeps only the configurations of that client (it has no effect on clients).
pub fn search(
    conn: &Db,
    kind: SearchKind,
    query: &str,
    within_client: Option<&str>,
    limit: Option<usize>,
) -> Result<Found, SearchError> {
    let normalized = Query::new(kind, query);
    if normalized.is_empty() {
        return Err(SearchError::EmptyQuery {
            kind,
            query: query.to_string(),
        });
    }
    let records = match kind {
        SearchKind::Client => clients(conn)?,
        SearchKind::Configuration => configurations(conn, within_client)?,
    };
    let mut hits: Vec<(String, Hit)> = records
        .into_iter()
        .filter_map(|record| {
            let (exact, matched, matched_value) = record.best_match(&normalized)?;
            let (client_id, client_name) = match record.client {
                Some((id, name)) => (Some(id), Some(name)),
                None => (None, None),
            };
            let sort_name = normalize_name(&record.name);
            let hit = Hit {
                kind,
                id: record.id,
                name: record.name,
                client_id,
                client_name,
                matched,
                exact,
                matched_value,
            };
            Some((sort_name, hit))
        })
        .collect();
    hits.sort_by(|(name_a, a), (name_b, b)| rank(a, name_a, b, name_b));
    let total = hits.len();
    let limit = limit.unwrap_or(MAX_LIMIT).min(MAX_LIMIT);
    let hits = hits.into_iter().take(limit).map(|(_, hit)| hit).collect();
    Ok(Found { hits, total })
}

/// Exact matches first; then by normalized name, the name as imported, and the id.
fn rank(a: &Hit, name_a: &str, b: &Hit, name_b: &str) -> Ordering {
    b.exact
        .cmp(&a.exact)
        .then_with(|| name_a.cmp(name_b))
        .then_with(|| a.name.cmp(&b.name))
        .then_with(|| id_order(&a.id, &b.id))
}

fn clients(conn: &Db) -> Result<Vec<Record>, DbError> {
    Ok(scopable_store::search::clients(conn)?
        .into_iter()
        .map(|(id, name)| Record {
            id,
            name,
            client: None,
            hostname: None,
            serial: None,
            macs: Vec::new(),
        })
        .collect())
}

fn configurations(conn: &Db, within_client: Option<&str>) -> Result<Vec<Record>, DbError> {
    Ok(scopable_store::search::configurations(conn, within_client)?
        .into_iter()
        .map(|c| Record {
            id: c.id,
            name: c.name,
            client: Some((c.client_id, c.client_name)),
            hostname: c.hostname,
            serial: c.serial_number,
            macs: c.mac_addresses,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    /// A database holding a few clients and configurations.
    fn database() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let db = Db::open(&path, scopable_store::DEFAULT_ACCOUNT).unwrap();
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "INSERT INTO clients (account, id, name) VALUES ('default', 'c3', 'Acme Holdings'),
                 ('default', 'c1', 'ACME, Inc.'), ('default', 'c2', 'Globex'),
                 ('default', 'c10', 'acme inc'), ('default', 'c4', 'Tyrell Systems');
             INSERT INTO configurations
                 (account, id, client_id, name, hostname, serial_number, mac_addresses) VALUES
                 ('default', 's1', 'c4', 'Domain controller', 'TY-DC01.corp.local', NULL, '[]'),
                 ('default', 's2', 'c4', 'File server', 'TY-FS01', ' cz2841ab7q', '[\"3C-52-82-1A-9F-01\"]'),
                 ('default', 's3', 'c4', 'Reception', NULL, 'To Be Filled By O.E.M.',
                  '[\"00:00:00:00:00:00\", \"3c52.821a.9f04\"]'),
                 ('default', 's4', 'c2', 'TY-DC01 spare', 'spare', 'CZ2841AB7Q-2', '[]'),
                 ('default', 's5', 'c4', 'Old DC', 'ty-dc01-old', NULL, '[]');",
            )
            .unwrap();
        (dir, db)
    }

    fn ids(found: &Found) -> Vec<(&str, &str, bool)> {
        found
            .hits
            .iter()
            .map(|h| (h.id.as_str(), h.matched.as_str(), h.exact))
            .collect()
    }

    #[test]
    fn exact_name_matches_come_first_then_partial_ones_in_a_stable_order() {
        let (_dir, db) = database();
        let found = search(&db, SearchKind::Client, "acme inc", None, None).unwrap();
        // `ACME, Inc.` and `acme inc` both normalize to the query; ties go by name, then id.
        assert_eq!(
            ids(&found),
            vec![("c1", "name", true), ("c10", "name", true)]
        );
        let found = search(&db, SearchKind::Client, "  A.C.M.E ", None, None).unwrap();
        assert_eq!(
            ids(&found),
            vec![
                ("c3", "name", false),
                ("c1", "name", false),
                ("c10", "name", false)
            ],
            "partial matches sorted by normalized name (acme holdings < acme inc), then id"
        );
        assert_eq!(found.total, 3);
        let again = search(&db, SearchKind::Client, "acme", None, None).unwrap();
        assert_eq!(again, found, "the same query lists the same way");
    }

    #[test]
    fn a_limit_cuts_the_list_but_counts_everything() {
        let (_dir, db) = database();
        let found = search(&db, SearchKind::Client, "acme", None, Some(1)).unwrap();
        assert_eq!(ids(&found), vec![("c3", "name", false)]);
        assert_eq!(found.total, 3);
    }

    #[test]
    fn configurations_match_on_each_identifier_as_the_matcher_normalizes_it() {
        let (_dir, db) = database();
        let search = |q: &str| search(&db, SearchKind::Configuration, q, None, None).unwrap();
        // Hostname: first DNS label, any case. `ty-dc01-old` contains the label, and the name
        // `TY-DC01 spare` contains the query: both after the exact hit, by name.
        let found = search("TY-DC01");
        assert_eq!(found.hits[0].id, "s1");
        assert_eq!(found.hits[0].matched, Field::Hostname);
        assert!(found.hits[0].exact);
        assert_eq!(found.hits[0].matched_value, "TY-DC01.corp.local");
        assert_eq!(found.hits[0].client_id.as_deref(), Some("c4"));
        assert_eq!(found.hits[0].client_name.as_deref(), Some("Tyrell Systems"));
        assert_eq!(
            ids(&found)[1..],
            [("s5", "hostname", false), ("s4", "name", false)]
        );
        assert_eq!(
            ids(&search("ty-dc01.example.org")),
            vec![("s1", "hostname", true), ("s5", "hostname", false)],
            "only the first label of a queried hostname counts"
        );
        // Serial: trimmed and uppercased on both sides.
        let found = search("CZ2841AB7Q ");
        assert_eq!(
            ids(&found),
            vec![("s2", "serial", true), ("s4", "serial", false)]
        );
        // MAC: any separator; the placeholder beside it on s3 never matches.
        assert_eq!(ids(&search("3c:52:82:1a:9f:04")), vec![("s3", "mac", true)]);
        assert_eq!(ids(&search("3C52821A9F01")), vec![("s2", "mac", true)]);
        assert!(search("00-00-00-00-00-00").hits.is_empty());
        assert!(search("to be filled by OEM").hits.is_empty());
        // Names with the organization-name normalization.
        assert_eq!(ids(&search("file-server")), vec![("s2", "name", true)]);
    }

    #[test]
    fn a_search_can_stay_within_one_client() {
        let (_dir, db) = database();
        let found = search(&db, SearchKind::Configuration, "dc01", Some("c2"), None).unwrap();
        assert_eq!(ids(&found), vec![("s4", "name", false)]);
    }

    #[test]
    fn a_query_with_nothing_to_search_for_is_refused() {
        let (_dir, db) = database();
        for query in ["", "  ", " - . ' "] {
            let err = search(&db, SearchKind::Client, query, None, None).unwrap_err();
            assert!(
                matches!(err, SearchError::EmptyQuery { .. }),
                "{query:?}: {err}"
            );
        }
    }

    #[test]
    fn hits_serialize_in_the_documented_shape() {
        let (_dir, db) = database();
        let found = search(&db, SearchKind::Configuration, "TY-FS01", None, None).unwrap();
        assert_eq!(
            serde_json::to_value(&found.hits).unwrap(),
            serde_json::json!([{"kind": "configuration", "id": "s2", "name": "File server",
                "client_id": "c4", "client_name": "Tyrell Systems", "matched": "hostname",
                "exact": true}])
        );
        let found = search(&db, SearchKind::Client, "globex", None, None).unwrap();
        assert_eq!(
            serde_json::to_value(&found.hits).unwrap(),
            serde_json::json!([{"kind": "client", "id": "c2", "name": "Globex",
                "matched": "name", "exact": true}])
        );
    }
}

//! `match-exfil`: a connector that tries to carry Scopable's data out through storage. Its
//! `match` writes the name of every client it receives to storage (and reads back a key an
//! earlier `match` would have written); its `fetch-orgs` reads whatever storage holds and sends
//! it to the API in a declared query parameter (`filter[name]`) before it fetches. Its `test`
//! works. The host must refuse storage to `match`, so nothing `match` received reaches the API.

use crate::net;
use crate::storage;
use crate::types::{
    Endpoint, Error, MatchInput, Organization, OrganizationPage, Outcome, PageInfo, Placement,
    Reason, Unplaced, Verified,
};

pub fn verified() -> Verified {
    Verified {
        detail: "match-exfil: verified".to_string(),
        total_organizations: Some(2),
    }
}

/// Sends what storage holds to the API, then answers two organizations.
pub fn organizations(endpoint: &Endpoint) -> Result<OrganizationPage, Error> {
    let mut found = Vec::new();
    if let Ok(keys) = storage::keys() {
        for key in keys {
            if let Ok(Some(value)) = storage::get(&key) {
                found.push(String::from_utf8_lossy(&value).into_owned());
            }
        }
    }
    let mut url = format!(
        "{}/organizations?page[size]={}",
        endpoint.base_url, endpoint.page_size
    );
    if !found.is_empty() {
        url.push_str("&filter[name]=");
        url.push_str(&encode(&found.join(",")));
    }
    let outcome = net::get(&url);
    if outcome.refused() {
        return Err(Error::Denied(outcome.to_string()));
    }
    let org = |id: &str, name: &str| Organization {
        id: id.to_string(),
        name: name.to_string(),
        short_name: None,
        type_name: None,
        status_name: None,
    };
    Ok(OrganizationPage {
        records: vec![org("1", "Acme"), org("2", "Beta")],
        unreadable: Vec::new(),
        info: PageInfo {
            next_page: None,
            total_pages: Some(1),
            total_count: Some(2),
        },
    })
}

/// Writes every client's name to storage, then leaves every organization unplaced.
pub fn place(input: &MatchInput) -> Vec<Placement> {
    let MatchInput::Organizations(m) = input else {
        return Vec::new();
    };
    let _ = storage::get("client-0");
    for (i, client) in m.clients.iter().enumerate() {
        let _ = storage::set(&format!("client-{i}"), client.name.as_bytes());
    }
    let _ = storage::keys();
    m.organizations
        .iter()
        .map(|o| Placement {
            source_id: o.id.clone(),
            outcome: Outcome::Unplaced(Unplaced {
                reason: Reason::NoMatch,
                candidates: Vec::new(),
                suggestions: Vec::new(),
            }),
        })
        .collect()
}

/// Percent-encodes everything but unreserved characters.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

//! `bad-match`: a connector whose data exports are plausible but whose `match` misbehaves.
//! It proposes linking every organization to a client that does not exist, and, when a client
//! is named `network`, first tries to send a request from inside `match`. The host must refuse
//! both and apply nothing.

use crate::net;
use crate::types::{
    Evidence, Link, MatchInput, Organization, OrganizationPage, Outcome, PageInfo, Placement,
    Verified,
};

pub fn verified() -> Verified {
    Verified {
        detail: "bad-match: verified".to_string(),
        total_organizations: Some(2),
    }
}

pub fn organizations() -> OrganizationPage {
    let org = |id: &str, name: &str| Organization {
        id: id.to_string(),
        name: name.to_string(),
        short_name: None,
        type_name: None,
        status_name: None,
    };
    OrganizationPage {
        records: vec![org("1", "Acme"), org("2", "Beta")],
        unreadable: Vec::new(),
        info: PageInfo {
            next_page: None,
            total_pages: Some(1),
            total_count: Some(2),
        },
    }
}

pub fn place(input: &MatchInput) -> Vec<Placement> {
    let MatchInput::Organizations(m) = input else {
        return Vec::new();
    };
    if m.clients.iter().any(|c| c.name == "network") {
        // A pure function has no business on the network; the outcome does not matter here.
        let _ = net::get("http://127.0.0.1:9/organizations");
    }
    m.organizations
        .iter()
        .map(|o| Placement {
            source_id: o.id.clone(),
            outcome: Outcome::Linked(Link {
                scopable_id: "ghost".to_string(),
                evidence: vec![Evidence::Name],
            }),
        })
        .collect()
}

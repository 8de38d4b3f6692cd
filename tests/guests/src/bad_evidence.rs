//! `bad-evidence`: placements the host should not believe. What `match` proposes depends on
//! the client names it is given, so one component covers each case:
//! - a client named `hostname-on-org`: an organization linked on hostname evidence;
//! - a client named `many-candidates`: an organization left unplaced with 100,000 candidates
//!   and as many suggestions;
//! - otherwise organization `1` is linked on its name to the client named `Acme` (honest), and
//!   configuration `501` (which carries no serial number) is linked on serial evidence to the
//!   first Scopable configuration of that client.

use crate::types::{
    Configuration, ConfigurationPage, Evidence, Link, MatchInput, Organization, OrganizationPage,
    Outcome, PageInfo, Placement, Reason, Unplaced, Verified,
};

/// How many candidates (and suggestions) the `many-candidates` case proposes.
pub const MANY: usize = 100_000;

pub fn verified() -> Verified {
    Verified {
        detail: "bad-evidence: verified".to_string(),
        total_organizations: Some(1),
    }
}

fn info(count: u64) -> PageInfo {
    PageInfo {
        next_page: None,
        total_pages: Some(1),
        total_count: Some(count),
    }
}

pub fn organizations() -> OrganizationPage {
    OrganizationPage {
        records: vec![Organization {
            id: "1".to_string(),
            name: "Acme".to_string(),
            short_name: None,
            type_name: None,
            status_name: None,
        }],
        unreadable: Vec::new(),
        info: info(1),
    }
}

pub fn configurations() -> ConfigurationPage {
    ConfigurationPage {
        records: vec![Configuration {
            id: "501".to_string(),
            organization_id: "1".to_string(),
            name: "server".to_string(),
            hostname: Some("srv01".to_string()),
            primary_ip: None,
            serial_number: None,
            mac_addresses: Vec::new(),
            type_name: None,
            archived: false,
        }],
        unreadable: Vec::new(),
        info: info(1),
    }
}

fn linked(id: &str, target: &str, evidence: Evidence) -> Placement {
    Placement {
        source_id: id.to_string(),
        outcome: Outcome::Linked(Link {
            scopable_id: target.to_string(),
            evidence: vec![evidence],
        }),
    }
}

pub fn place(input: &MatchInput) -> Vec<Placement> {
    match input {
        MatchInput::Organizations(m) => {
            let named = |name: &str| m.clients.iter().find(|c| c.name == name);
            if let Some(client) = named("hostname-on-org") {
                return vec![linked("1", &client.id, Evidence::Hostname)];
            }
            if named("many-candidates").is_some() {
                let ids: Vec<String> = (0..MANY).map(|i| format!("c{i}")).collect();
                return vec![Placement {
                    source_id: "1".to_string(),
                    outcome: Outcome::Unplaced(Unplaced {
                        reason: Reason::MultipleClients,
                        candidates: ids.clone(),
                        suggestions: ids,
                    }),
                }];
            }
            match named("Acme") {
                Some(client) => vec![linked("1", &client.id, Evidence::Name)],
                None => Vec::new(),
            }
        }
        MatchInput::Configurations(m) => match m.scopable_configurations.first() {
            Some(target) => vec![linked("501", &target.id, Evidence::Serial)],
            None => Vec::new(),
        },
    }
}

//! `terminal-escape`: text made to act on the admin's terminal. Every string it hands the host
//! carries [`PAYLOAD`]: `ESC[8m` (hide what follows), `ESC]0;...BEL` (set the window title),
//! a newline and a forged `error:` line, a carriage return, a C1 control sequence introducer
//! (U+009B) and bidirectional controls (U+202E, U+2066). The host must show all of it inert
//! and bounded, and keep the exact values in `--json`.
//!
//! - `test` fails with a [`HUGE`]-byte error detail made of the payload, unless the base URL
//!   holds `/verified`: then it passes, with the payload in its detail (so `connect` works).
//! - `fetch-orgs` stores a key holding the payload's escapes, then returns the organizations
//!   of [`organizations`] (ids with a newline and a forged row, ESC, C1, bidi; a name with the
//!   payload and [`LONG`] more characters). With `/fail` in the base URL it fails instead, with
//!   a [`FAIL_BYTES`]-byte detail, so the run's stored error holds the payload.
//! - `match` links the organizations named `Acme` and `Beta` to the clients of those names
//!   (on honest name evidence), and leaves every other one unplaced, with candidates and
//!   suggestions that hold the payload (one of them [`LONG`] characters long).

use crate::storage;
use crate::types::{
    Endpoint, Error, Evidence, Link, MatchInput, Organization, OrganizationPage, Outcome, PageInfo,
    Placement, Reason, Unplaced, Verified,
};

/// The escapes every string carries.
pub const PAYLOAD: &str =
    "\u{1b}[8m\u{1b}]0;owned\u{7}\nerror: forged line\r\u{9b}2J\u{202e}txet desrever\u{2066}\u{7f}";
/// The size of `test`'s error detail: 10 MiB.
pub const HUGE: usize = 10 << 20;
/// The size of `fetch-orgs`' error detail with `/fail`.
pub const FAIL_BYTES: usize = 64 << 10;
/// How many plain characters follow the payload in the long name and the long candidate.
pub const LONG: usize = 5000;
/// The storage key written by `fetch-orgs`.
pub const STORAGE_KEY: &str =
    "\u{1b}[8mkey\n2099-01-01T00:00:00Z  http GET forged.example/row\u{9b}\u{202e}";

/// The payload repeated to at least `bytes` bytes.
fn repeated(bytes: usize) -> String {
    PAYLOAD.repeat(bytes / PAYLOAD.len() + 1)
}

pub fn run(endpoint: &Endpoint) -> Result<Verified, Error> {
    if endpoint.base_url.contains("/verified") {
        return Ok(Verified {
            detail: format!("Verified{PAYLOAD}"),
            total_organizations: None,
        });
    }
    Err(Error::BadResponse(repeated(HUGE)))
}

/// The organizations of every page (there is one).
pub fn organizations_list() -> Vec<Organization> {
    let org = |id: String, name: String| Organization {
        id,
        name,
        short_name: None,
        type_name: None,
        status_name: None,
    };
    vec![
        org("1".into(), "Acme".into()),
        org("2\n  999999  forged row".into(), format!("two{PAYLOAD}")),
        org("\u{1b}[8m3".into(), "three".into()),
        org("4\u{9b}".into(), "four".into()),
        org(format!("5{PAYLOAD}"), "five".into()),
        org("6".into(), format!("six{PAYLOAD}{}", "N".repeat(LONG))),
        org("7\u{202e}".into(), "Beta".into()),
    ]
}

/// Page `page` of the listing: every page is the first and last.
pub fn organizations(endpoint: &Endpoint, page: u32) -> Result<OrganizationPage, Error> {
    if endpoint.base_url.contains("/fail") || page != 1 {
        return Err(Error::BadResponse(repeated(FAIL_BYTES)));
    }
    // Whether the host accepts it or not, the attempt is on record with the key as its path.
    let _ = storage::set(STORAGE_KEY, b"1");
    let records = organizations_list();
    let count = records.len() as u64;
    Ok(OrganizationPage {
        records,
        unreadable: Vec::new(),
        info: PageInfo {
            next_page: None,
            total_pages: Some(1),
            total_count: Some(count),
        },
    })
}

/// The candidates of every unplaced organization.
pub fn candidates() -> Vec<String> {
    vec![
        format!("c{PAYLOAD}"),
        format!("d{PAYLOAD}{}", "C".repeat(LONG)),
    ]
}

/// The suggestions of every unplaced organization.
pub fn suggestions() -> Vec<String> {
    vec![format!("s\n  888888  forged suggestion{PAYLOAD}")]
}

pub fn place(input: &MatchInput) -> Vec<Placement> {
    let MatchInput::Organizations(m) = input else {
        return Vec::new();
    };
    let mut placements: Vec<Placement> = m
        .organizations
        .iter()
        .map(|o| {
            let client = m
                .clients
                .iter()
                .find(|c| (o.name == "Acme" || o.name == "Beta") && c.name == o.name);
            let outcome = match client {
                Some(c) => Outcome::Linked(Link {
                    scopable_id: c.id.clone(),
                    evidence: vec![Evidence::Name],
                }),
                None => Outcome::Unplaced(Unplaced {
                    reason: Reason::MultipleClients,
                    candidates: candidates(),
                    suggestions: suggestions(),
                }),
            };
            Placement {
                source_id: o.id.clone(),
                outcome,
            }
        })
        .collect();
    placements.sort_by(|a, b| a.source_id.cmp(&b.source_id));
    placements
}

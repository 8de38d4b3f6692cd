//! `header-echo`: reads every response header it is given, hoping a server (or a proxy)
//! echoed the credential back in `x-api-key`, `authorization` or `set-cookie`, and keeps what
//! it found in storage, where a later call could send it anywhere the manifest allows.

use crate::net::{self, Outcome};
use crate::report;
use crate::storage;
use crate::types::{Endpoint, Error, Verified};
use waki::Client;

/// The response headers that would carry the credential back.
pub const CARRIERS: [&str; 3] = ["x-api-key", "authorization", "set-cookie"];

pub fn run(endpoint: &Endpoint) -> Result<Verified, Error> {
    let url = format!("{}/organizations?page[size]=1", endpoint.base_url);
    let response = match net::send_raw(Client::new().get(&url)) {
        Ok(response) => response,
        Err(outcome @ Outcome::Denied) => return report::denied(outcome.to_string()),
        Err(outcome) => return Err(Error::Unavailable(outcome.to_string())),
    };
    let status = response.status_code();
    let names: Vec<String> = response
        .headers()
        .keys()
        .map(|name| name.as_str().to_string())
        .collect();
    let caught: Vec<&str> = CARRIERS
        .iter()
        .copied()
        .filter(|carrier| names.iter().any(|n| n == carrier))
        .collect();
    for carrier in &caught {
        if let Some(value) = response.header(*carrier) {
            let _ = storage::set(&format!("caught-{carrier}"), value.as_bytes());
        }
    }
    let detail = format!("status={status} caught={}", caught.join(","));
    if caught.is_empty() {
        report::denied(detail)
    } else {
        report::got_through(detail)
    }
}

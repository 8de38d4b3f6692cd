//! `smuggle-key`: requests that set the credential header, `authorization` or `cookie`
//! themselves, one header per request.

use waki::Client;

use crate::types::{Endpoint, Error, Verified};
use crate::{net, report};

/// The headers tried, one request each.
pub const HEADERS: [(&str, &str); 3] = [
    ("x-api-key", "stolen"),
    ("authorization", "Bearer x"),
    ("cookie", "a=b"),
];

pub fn run(endpoint: &Endpoint) -> Result<Verified, Error> {
    let url = format!("{}/organizations", endpoint.base_url);
    let attempts: Vec<_> = HEADERS
        .iter()
        .map(|(name, value)| {
            let outcome = net::send(Client::new().get(&url).header(*name, *value));
            (name.to_string(), outcome)
        })
        .collect();
    report::attempts(&attempts)
}

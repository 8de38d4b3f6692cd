//! `header-override`: declared GETs that carry headers some servers and proxies read as a
//! different method or path (`x-http-method-override: DELETE`, `x-original-url`,
//! `x-rewrite-url`). The guest swallows every refusal and reports success, so only the host can
//! make the call fail.

use waki::Client;

use crate::net;
use crate::report;
use crate::types::{Endpoint, Error, Verified};

/// The headers tried, one request each.
pub const HEADERS: [(&str, &str); 3] = [
    ("x-http-method-override", "DELETE"),
    ("x-original-url", "/passwords"),
    ("x-rewrite-url", "/passwords"),
];

pub fn run(endpoint: &Endpoint) -> Result<Verified, Error> {
    let url = format!("{}/organizations", endpoint.base_url);
    let outcomes: Vec<String> = HEADERS
        .iter()
        .map(|(name, value)| {
            let outcome = net::send(Client::new().get(&url).header(*name, *value));
            format!("{name}: {outcome}")
        })
        .collect();
    // Swallowed: whatever happened, the guest claims success.
    report::got_through(format!("swallowed; {}", outcomes.join("; ")))
}

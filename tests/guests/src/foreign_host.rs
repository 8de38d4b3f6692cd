//! `foreign-host`: GETs to a host other than the endpoint's, by name and by address on the
//! same port.

use crate::types::{Endpoint, Error, Verified};
use crate::{net, report};

pub fn run(endpoint: &Endpoint) -> Result<Verified, Error> {
    let port = net::port_of(&endpoint.base_url).unwrap_or(80);
    let urls = [
        "http://example.invalid/organizations".to_string(),
        format!("http://127.0.0.2:{port}/organizations"),
    ];
    let attempts: Vec<_> = urls
        .into_iter()
        .map(|u| {
            let o = net::get(&u);
            (u, o)
        })
        .collect();
    report::attempts(&attempts)
}

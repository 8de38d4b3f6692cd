//! `flood`: many more requests in one call than the host allows.

use crate::types::{Endpoint, Error, Verified};
use crate::{net, report};

/// How many requests are tried.
pub const REQUESTS: usize = 500;

pub fn run(endpoint: &Endpoint) -> Result<Verified, Error> {
    let url = format!("{}/organizations?page[size]=1", endpoint.base_url);
    let (mut sent, mut denied) = (0usize, 0usize);
    let mut first_denial = None;
    for i in 0..REQUESTS {
        let outcome = net::get(&url);
        if outcome.refused() {
            denied += 1;
            first_denial.get_or_insert(i);
        } else {
            sent += 1;
        }
    }
    let first = first_denial.map_or_else(|| "none".to_string(), |i| i.to_string());
    let detail = format!("sent={sent} denied={denied} first_denied={first}");
    if denied == 0 {
        report::got_through(detail)
    } else {
        report::denied(detail)
    }
}

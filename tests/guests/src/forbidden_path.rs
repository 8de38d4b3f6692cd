//! `forbidden-path`: paths outside the declared ones, plainly and through `..`, `//` and
//! percent-encoded slashes.

use crate::types::{Endpoint, Error, Verified};
use crate::{net, report};

/// The paths tried, appended to the base URL.
pub const PATHS: [&str; 6] = [
    "/passwords",
    "/organizations/1/relationships/passwords",
    "/configurations/..%2Fpasswords",
    "/organizations/../passwords",
    "//organizations",
    "/organizations%2F..%2Fpasswords",
];

pub fn run(endpoint: &Endpoint) -> Result<Verified, Error> {
    let attempts: Vec<_> = PATHS
        .iter()
        .map(|path| {
            let outcome = net::get(&format!("{}{path}", endpoint.base_url));
            (path.to_string(), outcome)
        })
        .collect();
    report::attempts(&attempts)
}

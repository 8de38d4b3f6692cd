//! `semicolon-query`: a declared key whose value carries `;debug=1`, which servers that split
//! queries on `;` read as an undeclared key.

use crate::types::{Endpoint, Error, Verified};
use crate::{net, report};

pub fn run(endpoint: &Endpoint) -> Result<Verified, Error> {
    let url = format!("{}/organizations?page[size]=1;debug=1", endpoint.base_url);
    report::attempts(&[(";debug=1".to_string(), net::get(&url))])
}

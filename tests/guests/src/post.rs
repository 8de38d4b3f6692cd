//! `post`: a POST with a small body to a declared path. Only GET is allowed.

use waki::Client;

use crate::types::{Endpoint, Error, Verified};
use crate::{net, report};

pub fn run(endpoint: &Endpoint) -> Result<Verified, Error> {
    let url = format!("{}/organizations", endpoint.base_url);
    let request = Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body(br#"{"data":{"type":"organizations","attributes":{"name":"x"}}}"#.to_vec());
    report::attempts(&[("POST /organizations".to_string(), net::send(request))])
}

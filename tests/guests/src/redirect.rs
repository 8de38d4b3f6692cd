//! `redirect`: a declared request the test server answers with a redirect to another host.
//! The host must hand the 3xx back instead of following it.

use crate::net::{self, Outcome};
use crate::report;
use crate::types::{Endpoint, Error, Verified};

pub fn run(endpoint: &Endpoint) -> Result<Verified, Error> {
    let url = format!("{}/organizations?page[size]=1", endpoint.base_url);
    match net::get(&url) {
        // Whatever came back is reported, so the host test can check it is the 302 itself.
        answered @ Outcome::Answered { .. } => report::got_through(answered.to_string()),
        refused if refused.refused() => report::denied(refused.to_string()),
        failed => Err(Error::Unavailable(failed.to_string())),
    }
}

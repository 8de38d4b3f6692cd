//! `huge-response`: reads a whole answer into memory while the test server sends far more
//! than the host's maximum response size.

use crate::net::{self, Outcome};
use crate::report;
use crate::types::{Endpoint, Error, Verified};

/// How much to ask for per read.
const CHUNK: u64 = 1 << 20;

pub fn run(endpoint: &Endpoint) -> Result<Verified, Error> {
    let url = format!("{}/organizations?page[size]=1", endpoint.base_url);
    let response = match net::send_raw(waki::Client::new().get(&url)) {
        Ok(response) => response,
        Err(outcome @ (Outcome::Denied | Outcome::ForbiddenHeader)) => {
            return report::denied(outcome.to_string());
        }
        Err(outcome) => return Err(Error::Unavailable(outcome.to_string())),
    };
    let status = response.status_code();
    let mut body = Vec::new();
    loop {
        match response.chunk(CHUNK) {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            // The body ended cleanly: report how much arrived; the host test compares it with
            // its limit (a host that truncates quietly also lands here).
            Ok(None) => {
                return report::got_through(format!("status={status} bytes={}", body.len()));
            }
            Err(e) => {
                return Err(Error::BadResponse(format!(
                    "status={status} bytes={} read failed: {e}",
                    body.len()
                )));
            }
        }
    }
}

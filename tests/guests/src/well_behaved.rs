//! `well-behaved`: the control. One declared request, exactly as a connector would make it,
//! so a host test can prove the harness lets good requests through.

use crate::log::{self, Level};
use crate::net::{self, Outcome};
use crate::report;
use crate::types::{Endpoint, Error, RateLimited, Verified};

pub fn run(endpoint: &Endpoint) -> Result<Verified, Error> {
    let url = format!(
        "{}/organizations?page[size]=1&page[number]=1",
        endpoint.base_url
    );
    let outcome = net::get(&url);
    log::emit(Level::Info, &format!("well-behaved: {outcome}"));
    let detail = outcome.to_string();
    match outcome {
        Outcome::Answered { status, .. } => match status {
            200..=299 => report::got_through(detail),
            401 | 403 => Err(Error::Unauthorized(detail)),
            404 => Err(Error::NotFound(detail)),
            429 => Err(Error::RateLimited(RateLimited {
                retry_after_seconds: None,
                detail,
            })),
            500..=599 => Err(Error::Unavailable(detail)),
            _ => Err(Error::BadResponse(detail)),
        },
        refused if refused.refused() => report::denied(detail),
        _ => Err(Error::Unavailable(detail)),
    }
}

//! `two-faced`: a connector that behaves only when it thinks it is being watched. When its
//! storage is unavailable (as it would be in a conformance run without a database) it makes
//! the declared request; when storage works (as in a real sync) its `test` asks for
//! `/passwords` instead. A conformance run must see what a sync sees.

use crate::storage::{self, StorageError};
use crate::types::{Endpoint, Error, Verified};
use crate::{net, report};

pub fn run(endpoint: &Endpoint) -> Result<Verified, Error> {
    let watched = matches!(storage::get("seen"), Err(StorageError::Unavailable(_)));
    let path = if watched {
        "/organizations?page[size]=1"
    } else {
        "/passwords"
    };
    let outcome = net::get(&format!("{}{path}", endpoint.base_url));
    match outcome {
        net::Outcome::Answered { status, .. } if (200..300).contains(&status) => {
            report::got_through(outcome.to_string())
        }
        net::Outcome::Answered { .. } => Err(Error::Unavailable(outcome.to_string())),
        refused if refused.refused() => report::denied(refused.to_string()),
        other => Err(Error::Unavailable(other.to_string())),
    }
}

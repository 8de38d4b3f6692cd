//! `get-body`: GETs of a declared path that carry a body, once with its length declared
//! (`content-length`) and once streamed without one. Connectors are read-only: no request may
//! carry a body.

use waki::Client;

use crate::log::{self, Level};
use crate::types::{Endpoint, Error, Verified};
use crate::{net, report};

/// The body each request tries to send.
pub const BODY: &[u8] = br#"{"data":{"type":"organizations","attributes":{"name":"get-body"}}}"#;

pub fn run(endpoint: &Endpoint) -> Result<Verified, Error> {
    let url = format!("{}/organizations?page[size]=1", endpoint.base_url);
    let declared = Client::new()
        .get(&url)
        .header("content-length", BODY.len().to_string())
        .body(BODY.to_vec());
    let streamed = Client::new().get(&url).body(BODY.to_vec());
    let attempts = [
        ("declared".to_string(), net::send(declared)),
        ("streamed".to_string(), net::send(streamed)),
    ];
    // The call's error names the host's first refusal; the log says what the component saw.
    for (label, outcome) in &attempts {
        log::emit(Level::Info, &format!("get-body {label}: {outcome}"));
    }
    report::attempts(&attempts)
}

//! `broad-manifest`: behaves exactly like `well-behaved` (one declared GET, the status
//! reported). The attack is in its manifests, which ask for more than a connector should get
//! (the API root, wildcards, private or metadata addresses, a framing header for the key,
//! limits of 0 or beyond their ceilings): the host must refuse those, and warn about grants that
//! are merely broad.

use crate::log::{self, Level};
use crate::types::{Endpoint, Error, Verified};

pub fn run(endpoint: &Endpoint) -> Result<Verified, Error> {
    log::emit(Level::Info, "broad-manifest: one declared request");
    crate::well_behaved::run(endpoint)
}

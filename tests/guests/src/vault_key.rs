//! `vault-key`: behaves exactly like `well-behaved` (one declared GET, the status reported).
//! The attack is in its manifest, which names the host's vault master-key variable as the
//! place to read its API key from: the host must refuse the manifest before anything runs.

use crate::log::{self, Level};
use crate::types::{Endpoint, Error, Verified};

pub fn run(endpoint: &Endpoint) -> Result<Verified, Error> {
    log::emit(Level::Info, "vault-key: one declared request");
    crate::well_behaved::run(endpoint)
}

//! `filesystem`: reads a file, so the component imports `wasi:filesystem`. The host must
//! refuse to load it; `test` never runs in a correct host.

use crate::report;
use crate::types::{Endpoint, Error, Verified};

pub fn run(_endpoint: &Endpoint) -> Result<Verified, Error> {
    match std::fs::read_to_string("/etc/passwd") {
        Ok(text) => report::got_through(format!("read bytes={}", text.len())),
        Err(e) => report::denied(format!("filesystem: {e}")),
    }
}

//! `storage-loop`: reads one key over and over. Each read is allowed and audited, so without a
//! bound on operations per call it would fill the audit table until the call's clock ran out.

use crate::report;
use crate::storage;
use crate::types::{Endpoint, Error, Verified};

/// How many reads are tried.
pub const READS: usize = 100_000;

pub fn run(_endpoint: &Endpoint) -> Result<Verified, Error> {
    let mut done = 0usize;
    let mut stopped = None;
    for _ in 0..READS {
        match storage::get("k") {
            Ok(_) => done += 1,
            Err(e) => {
                stopped = Some(format!("{e:?}"));
                break;
            }
        }
    }
    let detail = format!(
        "reads={done} stopped={}",
        stopped.as_deref().unwrap_or("no")
    );
    if stopped.is_none() {
        report::got_through(detail)
    } else {
        report::denied(detail)
    }
}

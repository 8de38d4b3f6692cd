//! `storage-flood`: one value far over the size limit, then small keys until the quota stops
//! them.

use crate::report;
use crate::storage::{self, StorageError};
use crate::types::{Endpoint, Error, Verified};

/// The size of the oversized value.
pub const BIG: usize = 10 << 20;
/// How many small keys are tried at most.
pub const KEYS: usize = 100_001;

pub fn run(_endpoint: &Endpoint) -> Result<Verified, Error> {
    let big = storage::set("big", &vec![0x5a; BIG]);
    let value = [0x61u8; 64];
    let mut stored = 0usize;
    let mut stopped = None;
    for i in 0..KEYS {
        match storage::set(&format!("k{i}"), &value) {
            Ok(()) => stored += 1,
            Err(e) => {
                stopped = Some(e);
                break;
            }
        }
    }
    let detail = format!(
        "big={} stored={stored} stopped_by={}",
        big.as_ref().map_or_else(kind, |()| "stored".to_string()),
        stopped.as_ref().map_or_else(|| "none".to_string(), kind),
    );
    if big.is_ok() || stopped.is_none() {
        report::got_through(detail)
    } else {
        report::denied(detail)
    }
}

/// The error's case name, as in the WIT (`too-large`, `quota-exceeded`, ...).
fn kind(e: &StorageError) -> String {
    match e {
        StorageError::TooLarge(_) => "too-large",
        StorageError::QuotaExceeded(_) => "quota-exceeded",
        StorageError::InvalidKey(_) => "invalid-key",
        StorageError::Unavailable(_) => "unavailable",
    }
    .to_string()
}

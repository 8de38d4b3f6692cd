//! `spin`: burns CPU forever. Only the host's epoch deadline can stop it.

use crate::types::{Endpoint, Error, Verified};

pub fn run(_endpoint: &Endpoint) -> Result<Verified, Error> {
    let mut counter = 0u64;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

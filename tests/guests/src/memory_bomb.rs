//! `memory-bomb`: allocates and touches 16 MiB blocks until allocation fails, which aborts
//! (a trap). Only the host's memory limit keeps it from taking the machine's memory.

use crate::types::{Endpoint, Error, Verified};

/// The size of each block.
const BLOCK: usize = 16 << 20;
/// Touch one byte per 4 KiB page so the memory is really used, not just reserved.
const PAGE: usize = 4 << 10;

pub fn run(_endpoint: &Endpoint) -> Result<Verified, Error> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; BLOCK];
        for i in (0..BLOCK).step_by(PAGE) {
            block[i] = 1;
        }
        hoard.push(std::hint::black_box(block));
    }
}

//! `stdout-flood`: writes 64 MiB to stdout and then to stderr, a line at a time. The host must
//! keep only a bounded amount of it.
//!
//! Writes go through `writeln!` on the locked streams (what `println!` does) so that a host
//! that closes the stream is reported instead of panicking.

use std::io::Write;

use crate::report;
use crate::types::{Endpoint, Error, Verified};

/// How much is written to each stream.
pub const TOTAL: usize = 64 << 20;
/// The length of each line, newline included.
const LINE: usize = 1024;

pub fn run(_endpoint: &Endpoint) -> Result<Verified, Error> {
    let line = "x".repeat(LINE - 1);
    let stdout = flood(&mut std::io::stdout().lock(), &line);
    let stderr = flood(&mut std::io::stderr().lock(), &line);
    let detail = format!("stdout={} stderr={}", describe(&stdout), describe(&stderr));
    match (stdout, stderr) {
        (Ok(_), Ok(_)) => report::got_through(detail),
        _ => Err(Error::Unavailable(detail)),
    }
}

/// Writes `TOTAL` bytes of lines; returns the bytes written, or those written before the
/// error and the error.
fn flood(out: &mut impl Write, line: &str) -> Result<usize, (usize, std::io::Error)> {
    let mut written = 0;
    while written < TOTAL {
        writeln!(out, "{line}").map_err(|e| (written, e))?;
        written += LINE;
    }
    out.flush().map_err(|e| (written, e))?;
    Ok(written)
}

fn describe(result: &Result<usize, (usize, std::io::Error)>) -> String {
    match result {
        Ok(n) => n.to_string(),
        Err((n, e)) => format!("{n}(failed: {e})"),
    }
}

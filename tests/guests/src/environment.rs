//! `environment`: reads everything the host process might hand a component without a
//! capability: environment variables, command-line arguments and stdin. A component gets none
//! of them.

use std::io::Read;

use crate::report;
use crate::types::{Endpoint, Error, Verified};

pub fn run(_endpoint: &Endpoint) -> Result<Verified, Error> {
    let vars: Vec<(String, String)> = std::env::vars().collect();
    let args: Vec<String> = std::env::args().collect();
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let mut detail = format!(
        "vars={} args={} stdin={}",
        vars.len(),
        args.len(),
        stdin.len()
    );
    if let Err(e) = read {
        detail.push_str(&format!(" stdin_error={e}"));
    }
    // Whatever was seen is reported whole, so that a host test can look for the values.
    for (name, value) in &vars {
        detail.push_str(&format!(" var:{name}={value}"));
    }
    for arg in &args {
        detail.push_str(&format!(" arg:{arg}"));
    }
    if !stdin.is_empty() {
        detail.push_str(&format!(" stdin:{}", String::from_utf8_lossy(&stdin)));
    }
    if vars.is_empty() && args.is_empty() && stdin.is_empty() {
        report::denied(detail)
    } else {
        report::got_through(detail)
    }
}

//! `sockets`: opens a TCP connection, so the component imports `wasi:sockets`. The host must
//! refuse to load it; `test` never runs in a correct host.

use crate::report;
use crate::types::{Endpoint, Error, Verified};

pub fn run(_endpoint: &Endpoint) -> Result<Verified, Error> {
    match std::net::TcpStream::connect("127.0.0.1:1") {
        Ok(_) => report::got_through("connected"),
        Err(e) => report::denied(format!("sockets: {e}")),
    }
}

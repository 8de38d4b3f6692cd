//! A local IT Glue API simulator for the end-to-end tests, the demo and the benchmark: regions,
//! keys, paging, filters, fault injection and a request log, over `std::net` in plain text or
//! TLS; with a test certificate authority and a `CONNECT` proxy for the HTTPS tests.
#![deny(missing_docs)]

mod api;
#[cfg(test)]
mod contract;
mod data;
/// The example Docuvault connector's tiny simulator (`examples/docuvault/simulator.rs`).
#[path = "../../examples/docuvault/simulator.rs"]
pub mod example_sim;
mod fault;
/// The hostile test components (built by `build.rs`): their paths and `foreach_hostile!`.
pub mod guests;
mod http;
/// The tests' throwaway PostgreSQL server, through `psql`.
pub mod postgres;
/// A tiny HTTP `CONNECT` proxy on 127.0.0.1, for tests of a client's proxy support.
pub mod proxy;
mod server;
/// A certificate authority made at test time, and the server certificates it signs.
pub mod tls;

pub use api::{AuthStyle, FAKE_PASSWORD};
pub use data::{
    CLIENTS_CSV_HEADER, CONFIGURATIONS_CSV_HEADER, Config, Dataset, Interface, Org,
    generated_dataset, generated_scopable_csv, sample_dataset, sample_scopable_csv,
};
pub use fault::{Fault, FaultRule, When};
pub use proxy::{ConnectProxy, ProxyRequest};
pub use server::{LoggedRequest, MAX_CONNECTIONS, MAX_LOGGED_REQUESTS, SimConfig, Simulator};
pub use tls::{SimTls, TestCa, Validity};

#[cfg(test)]
mod tests;

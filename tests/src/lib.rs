//! A local IT Glue API simulator for the end-to-end tests, the demo and the benchmark: regions,
//! keys, paging, filters, fault injection and a request log, over plain `std::net`.
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
mod server;

pub use api::{AuthStyle, FAKE_PASSWORD};
pub use data::{
    CLIENTS_CSV_HEADER, CONFIGURATIONS_CSV_HEADER, Config, Dataset, Interface, Org,
    generated_dataset, generated_scopable_csv, sample_dataset, sample_scopable_csv,
};
pub use fault::{Fault, FaultRule, When};
pub use server::{LoggedRequest, MAX_CONNECTIONS, MAX_LOGGED_REQUESTS, SimConfig, Simulator};

#[cfg(test)]
mod tests;

//! The IT Glue connector: a WebAssembly component implementing the `scopable:integration`
//! world. It knows IT Glue's URLs, JSON:API pages, error classes and the matching rules.
//!
//! This file is only the binding layer; the logic lives in plain functions in the modules so
//! that it is unit-tested natively.

mod api;
mod direct;
mod jsonapi;
mod matching;
mod prune;

#[cfg(test)]
mod fuzz;

/// The code generated from the WIT world: the contract's types and the `Guest` trait.
// The generated glue passes flattened records as many arguments; that is not ours to change.
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "integration",
        // Equality on the records lets the unit tests compare whole results.
        additional_derives: [PartialEq, Eq],
    });
}

use bindings::Guest;
use bindings::scopable::integration::types::{
    ConfigurationPage, Endpoint, Error, MatchInput, OrganizationPage, Placement, Verified,
};

/// The contract's records, for native callers (benchmarks comparing wasm with native).
pub use bindings::scopable::integration::types;

/// The matching rules as a plain function: what the `match` export runs.
pub fn place(input: &MatchInput) -> Vec<Placement> {
    matching::place(input)
}

/// The component's implementation of the `integration` world's exports.
struct Connector;

impl Guest for Connector {
    fn test(endpoint: Endpoint) -> Result<Verified, Error> {
        api::test(&endpoint)
    }

    fn fetch_orgs(endpoint: Endpoint, page: u32) -> Result<OrganizationPage, Error> {
        api::fetch_organizations(&endpoint, page)
    }

    fn fetch_configs(endpoint: Endpoint, page: u32) -> Result<ConfigurationPage, Error> {
        api::fetch_configurations(&endpoint, page)
    }

    fn match_(input: MatchInput) -> Vec<Placement> {
        let placements = place(&input);
        discard(input);
        placements
    }
}

/// Leaves `value` to the host, which discards the whole instance when the call returns: every
/// export call runs in a fresh instance (`docs/connector-guide.md`), so freeing a page's or an
/// input's many small allocations one by one would be work for nothing. Natively (unit tests,
/// benchmarks calling [`place`] in a loop) it is an ordinary drop.
fn discard<T>(value: T) {
    if cfg!(target_family = "wasm") {
        std::mem::forget(value);
    } else {
        drop(value);
    }
}

bindings::export!(Connector with_types_in bindings);

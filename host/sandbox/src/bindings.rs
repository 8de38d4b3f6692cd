//! Host-side bindings for the `scopable:integration` world, one module per contract version
//! the host runs: [`v0_2`] (the current contract, `wit/integration.wit`) and [`v0_1`] (the
//! frozen release, `wit/since_v0.1.0/`). The host works in 0.2's types; a 0.1 component's
//! records are converted at the boundary ([`crate::contract`]).
//!
//! The contract's `match` export cannot be generated as a Rust field (it is a keyword), so the
//! host binds a world with every other export and reaches `match` by name
//! (see `LoadedConnector::match_records`). The records come from the contract's own `types`
//! interface, so both sides share one definition.
//!
//! Storage imports are async and trappable (see `capabilities`); log is a plain call.

/// Contract 0.2.0 (current, unreleased).
pub mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../../wit",
        inline: "
            package scopable:host;

            world connector {
                import scopable:integration/storage@0.2.0;
                import scopable:integration/log@0.2.0;
                use scopable:integration/types@0.2.0.{endpoint, error, verified, organization-page, configuration-page, match-input, placement};
                export test: func(endpoint: endpoint) -> result<verified, error>;
                export fetch-orgs: func(endpoint: endpoint, page: u32) -> result<organization-page, error>;
                export fetch-configs: func(endpoint: endpoint, page: u32) -> result<configuration-page, error>;
            }
        ",
        world: "scopable:host/connector",
        exports: { default: async },
        // Storage does its database work off the async threads (`spawn_blocking`), and may
        // stop a call that keeps going after too many refusals.
        imports: { "scopable:integration/storage": async | trappable },
    });
}

/// Contract 0.1.0 (released and frozen).
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../../wit/since_v0.1.0",
        inline: "
            package scopable:host;

            world connector {
                import scopable:integration/storage@0.1.0;
                import scopable:integration/log@0.1.0;
                use scopable:integration/types@0.1.0.{endpoint, error, verified, organization-page, configuration-page, match-input, placement};
                export test: func(endpoint: endpoint) -> result<verified, error>;
                export fetch-orgs: func(endpoint: endpoint, page: u32) -> result<organization-page, error>;
                export fetch-configs: func(endpoint: endpoint, page: u32) -> result<configuration-page, error>;
            }
        ",
        world: "scopable:host/connector",
        exports: { default: async },
        imports: { "scopable:integration/storage": async | trappable },
    });
}

pub use v0_2::*;

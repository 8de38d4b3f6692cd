//! Host-side bindings for the `scopable:integration` world.
//!
//! The contract's `match` export cannot be generated as a Rust field (it is a keyword), so the
//! host binds a world with every other export and reaches `match` by name
//! (see `LoadedConnector::match_records`). The records come from the contract's own `types`
//! interface, so both sides share one definition.
//!
//! Storage imports are async and trappable (see `capabilities`); log is a plain call.

wasmtime::component::bindgen!({
    path: "../wit",
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
    // Storage does its database work off the async threads (`spawn_blocking`), and may stop a
    // call that keeps going after too many refusals.
    imports: { "scopable:integration/storage": async | trappable },
});

//! Hostile components for the host's sandbox tests: each cargo feature builds one component
//! whose `test` export tries one thing the host must stop (`tests/build.rs` builds them all).
//!
//! How a guest reports: `test` returns `Ok(verified)` only when the hostile action got past
//! the host (a request the host did not refuse, a write that was accepted), and an error
//! describing what happened otherwise, usually `denied`. Details are `key=value` words so a
//! host test can assert on them (`status=302`, `denied=500`). Guests that must be stopped by a
//! trap (`spin`, `memory-bomb`) never return, and guests that import a refused interface
//! (`filesystem`, `sockets`) must never be instantiated at all.
//!
//! With no feature the crate still compiles (natively too, for clippy and `cargo test`), and
//! `test` says that no behaviour was selected. With several features the first in `test`'s
//! order wins; the build only ever selects one.

mod bindings {
    // The generated code is not ours to lint (an 11-field record constructor, for one).
    #![allow(clippy::too_many_arguments)]
    wit_bindgen::generate!({ path: "../../wit", world: "integration" });
}

use bindings::Guest;
pub use bindings::scopable::integration::{log, storage, types};
use types::{
    ConfigurationPage, Endpoint, Error, MatchInput, OrganizationPage, Placement, Verified,
};

pub mod net;
pub mod report;

#[cfg(feature = "bad-evidence")]
mod bad_evidence;
#[cfg(feature = "bad-match")]
mod bad_match;
#[cfg(feature = "broad-manifest")]
mod broad_manifest;
#[cfg(feature = "environment")]
mod environment;
#[cfg(feature = "filesystem")]
mod filesystem;
#[cfg(feature = "flood")]
mod flood;
#[cfg(feature = "forbidden-path")]
mod forbidden_path;
#[cfg(feature = "foreign-host")]
mod foreign_host;
#[cfg(feature = "get-body")]
mod get_body;
#[cfg(feature = "header-echo")]
mod header_echo;
#[cfg(feature = "header-override")]
mod header_override;
#[cfg(feature = "huge-response")]
mod huge_response;
#[cfg(feature = "log-flood")]
mod log_flood;
#[cfg(feature = "match-exfil")]
mod match_exfil;
#[cfg(feature = "memory-bomb")]
mod memory_bomb;
#[cfg(feature = "page-flood")]
mod page_flood;
#[cfg(feature = "post")]
mod post;
#[cfg(feature = "redirect")]
mod redirect;
#[cfg(feature = "semicolon-query")]
mod semicolon_query;
#[cfg(feature = "smuggle-key")]
mod smuggle_key;
#[cfg(feature = "sockets")]
mod sockets;
#[cfg(feature = "spin")]
mod spin;
#[cfg(feature = "stdout-flood")]
mod stdout_flood;
#[cfg(feature = "storage-flood")]
mod storage_flood;
#[cfg(feature = "storage-loop")]
mod storage_loop;
#[cfg(feature = "terminal-escape")]
mod terminal_escape;
#[cfg(feature = "two-faced")]
mod two_faced;
#[cfg(feature = "undeclared-query")]
mod undeclared_query;
#[cfg(feature = "vault-key")]
mod vault_key;
// Also the behaviour of the components whose attack is their manifest.
#[cfg(any(
    feature = "well-behaved",
    feature = "vault-key",
    feature = "broad-manifest"
))]
mod well_behaved;

/// The component: `test` runs the selected behaviour; the other exports refuse politely.
struct Component;

impl Guest for Component {
    // With a feature selected, the fallback below is unreachable by design.
    #[allow(unreachable_code)]
    fn test(endpoint: Endpoint) -> Result<Verified, Error> {
        #[cfg(feature = "post")]
        return post::run(&endpoint);
        #[cfg(feature = "foreign-host")]
        return foreign_host::run(&endpoint);
        #[cfg(feature = "forbidden-path")]
        return forbidden_path::run(&endpoint);
        #[cfg(feature = "undeclared-query")]
        return undeclared_query::run(&endpoint);
        #[cfg(feature = "smuggle-key")]
        return smuggle_key::run(&endpoint);
        #[cfg(feature = "redirect")]
        return redirect::run(&endpoint);
        #[cfg(feature = "flood")]
        return flood::run(&endpoint);
        #[cfg(feature = "spin")]
        return spin::run(&endpoint);
        #[cfg(feature = "memory-bomb")]
        return memory_bomb::run(&endpoint);
        #[cfg(feature = "huge-response")]
        return huge_response::run(&endpoint);
        #[cfg(feature = "stdout-flood")]
        return stdout_flood::run(&endpoint);
        #[cfg(feature = "storage-flood")]
        return storage_flood::run(&endpoint);
        #[cfg(feature = "filesystem")]
        return filesystem::run(&endpoint);
        #[cfg(feature = "sockets")]
        return sockets::run(&endpoint);
        #[cfg(feature = "well-behaved")]
        return well_behaved::run(&endpoint);
        #[cfg(feature = "bad-match")]
        return Ok(bad_match::verified());
        #[cfg(feature = "match-exfil")]
        return Ok(match_exfil::verified());
        #[cfg(feature = "header-override")]
        return header_override::run(&endpoint);
        #[cfg(feature = "header-echo")]
        return header_echo::run(&endpoint);
        #[cfg(feature = "storage-loop")]
        return storage_loop::run(&endpoint);
        #[cfg(feature = "semicolon-query")]
        return semicolon_query::run(&endpoint);
        #[cfg(feature = "page-flood")]
        return Ok(page_flood::verified());
        #[cfg(feature = "bad-evidence")]
        return Ok(bad_evidence::verified());
        #[cfg(feature = "two-faced")]
        return two_faced::run(&endpoint);
        #[cfg(feature = "terminal-escape")]
        return terminal_escape::run(&endpoint);
        #[cfg(feature = "vault-key")]
        return vault_key::run(&endpoint);
        #[cfg(feature = "broad-manifest")]
        return broad_manifest::run(&endpoint);
        #[cfg(feature = "get-body")]
        return get_body::run(&endpoint);
        #[cfg(feature = "environment")]
        return environment::run(&endpoint);
        #[cfg(feature = "log-flood")]
        return log_flood::run(&endpoint);
        let _ = endpoint;
        Err(Error::BadResponse(
            "no hostile behaviour selected: build hostile-guests with one feature".to_string(),
        ))
    }

    // With `bad-match` selected, the fallback below is unreachable by design.
    #[allow(unreachable_code)]
    fn fetch_orgs(endpoint: Endpoint, page: u32) -> Result<OrganizationPage, Error> {
        #[cfg(feature = "bad-match")]
        return Ok(bad_match::organizations());
        #[cfg(feature = "match-exfil")]
        return match_exfil::organizations(&endpoint);
        #[cfg(feature = "page-flood")]
        return Ok(page_flood::organizations(&endpoint, page));
        #[cfg(feature = "bad-evidence")]
        return Ok(bad_evidence::organizations());
        #[cfg(feature = "terminal-escape")]
        return terminal_escape::organizations(&endpoint, page);
        let _ = (endpoint, page);
        Err(report::only_test())
    }

    // With a feature that pages configurations, the fallback below is unreachable by design.
    #[allow(unreachable_code)]
    fn fetch_configs(_endpoint: Endpoint, _page: u32) -> Result<ConfigurationPage, Error> {
        #[cfg(feature = "bad-evidence")]
        return Ok(bad_evidence::configurations());
        Err(report::only_test())
    }

    #[allow(unreachable_code)]
    fn match_(input: MatchInput) -> Vec<Placement> {
        #[cfg(feature = "bad-match")]
        return bad_match::place(&input);
        #[cfg(feature = "match-exfil")]
        return match_exfil::place(&input);
        #[cfg(feature = "bad-evidence")]
        return bad_evidence::place(&input);
        #[cfg(feature = "terminal-escape")]
        return terminal_escape::place(&input);
        let _ = input;
        Vec::new()
    }
}

bindings::export!(Component with_types_in bindings);

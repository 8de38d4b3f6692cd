//! The sandbox: loads connector components (WebAssembly, WASI Preview 2), grants them exactly
//! the capabilities their manifest declares, and runs their exports within limits.
//!
//! It holds the engine and compile cache ([`sandbox`]), the import allow-list and the
//! capabilities a guest gets ([`capabilities`]), the manifest and its limits ([`manifest`]),
//! the outbound gate where every request's rules are checked ([`outbound`], [`policy`]),
//! storage ([`storage`]), pacing ([`budget`]) and audit ([`audit`]). It persists nothing itself:
//! audit events, connector storage and the request budget reach whatever keeps them through
//! the small traits [`audit::AuditLog`], [`storage::KvStore`] and [`budget::RequestBudget`].
#![deny(missing_docs)]

pub mod audit;
#[allow(missing_docs)]
pub mod bindings;
pub mod budget;
pub mod capabilities;
pub mod contract;
pub mod display;
pub mod manifest;
pub mod net;
pub mod outbound;
pub mod policy;
pub mod report;
pub mod sandbox;
pub mod storage;
pub mod url;

pub use sandbox::{CallContext, CallError, LoadError, LoadedConnector, Sandbox, sha256_hex};

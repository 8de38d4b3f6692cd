//! Syncing through a sandboxed connector: paging with retries and pacing ([`fetch`],
//! [`retry`]), planning (the component proposes, the host disposes) and applying through the
//! store ([`sync`]), the review of what could not be placed ([`describe`], [`search`]), and
//! the connector's self-check ([`check`]).
#![deny(missing_docs)]

pub mod app;
pub mod check;
pub mod connection;
pub mod decide;
pub mod describe;
pub mod fetch;
pub mod import;
pub mod kinds;
pub mod notice;
pub mod persist;
pub mod records;
pub mod retry;
pub mod search;
mod speculate;
pub mod status;
pub mod sync;

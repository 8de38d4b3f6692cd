//! The Scopable connector host: loads sandboxed connector components (WebAssembly, WASI
//! Preview 2), grants them exactly the capabilities their manifest declares, and applies what
//! they find to the embedded database.
#![deny(missing_docs)]

pub mod app;
pub mod audit;
#[allow(missing_docs)]
pub mod bindings;
pub mod budget;
pub mod builtin;
pub mod capabilities;
pub mod check;
pub mod cli;
pub mod db;
pub mod describe;
pub mod display;
pub mod fetch;
pub mod import;
pub mod inspect;
pub mod manifest;
pub mod outbound;
pub mod pin;
pub mod policy;
pub mod records;
pub mod retry;
pub mod review;
pub mod sandbox;
pub mod search;
pub mod storage;
pub mod sync;
pub mod vault;

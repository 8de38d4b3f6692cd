//! Everything the Scopable host persists, in one place: Scopable's records, connections and
//! their encrypted keys, links, decisions, runs, the audit table, the request budget and
//! connector key-value data. SQLite, with numbered migrations ([`db`]).
#![deny(missing_docs)]

pub mod audit;
pub mod budget;
pub mod db;
pub mod handle;
pub mod kv;
pub mod vault;

pub use handle::{DEFAULT_ACCOUNT, Db};

//! Everything the Scopable host persists, in one place, keyed by account: accounts, their
//! tokens, sessions and events, Scopable's records, connections and their encrypted keys,
//! links, decisions, runs and schedules, the audit table, the request budget and connector
//! key-value data. SQLite ([`db`]) or PostgreSQL ([`pg`]), each with numbered migrations, behind
//! one interface ([`Db`], [`Location`]).
#![deny(missing_docs)]

pub mod accounts;
pub mod audit;
pub mod budget;
pub mod connections;
pub mod copy;
pub mod db;
pub mod handle;
#[cfg(test)]
mod isolation;
pub mod kv;
pub mod location;
pub mod pg;
pub mod records;
pub mod review;
pub mod runs;
pub mod search;
pub mod shared;
pub mod sql;
pub mod staging;
pub mod sync_apply;
#[cfg(test)]
mod testing;
pub mod vault;
pub mod views;

pub use handle::{DEFAULT_ACCOUNT, Db};
pub use location::Location;

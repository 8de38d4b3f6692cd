//! End-to-end tests: the real `scopable-host` binary, the real connector components, a real
//! IT Glue simulator on 127.0.0.1 and a real SQLite file, in one test binary.

mod util;

mod accounts;
mod admin;
mod browser;
mod claims;
mod confinement;
mod connect;
mod contract;
mod db_copy;
mod decisions;
mod example;
mod faults;
mod hostile;
mod hostile_host;
mod manifest_trust;
mod network;
mod project;
mod replicas;
mod review;
mod runs;
mod search;
mod serve;
mod serve_util;
mod streaming;
mod sync;
mod terminal;

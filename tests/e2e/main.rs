//! End-to-end tests: the real `scopable-host` binary, the real connector components, a real
//! IT Glue simulator on 127.0.0.1 and a real SQLite file, in one test binary.

mod util;

mod confinement;
mod connect;
mod example;
mod faults;
mod hostile;
mod hostile_host;
mod manifest_trust;
mod project;
mod runs;
mod sync;
mod terminal;

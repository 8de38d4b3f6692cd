//! `scopable-host`: the command line over the host's crates (sandbox, store, sync, serve). It parses
//! arguments, reads keys and prompts, and prints human or JSON output; nothing imports it.

mod accounts_cmd;
mod check_cmd;
mod cli;
mod db_cmd;
mod inspect;
mod output;
mod pin;
mod review;
mod serve_cmd;
mod sync_cmd;

fn main() -> std::process::ExitCode {
    cli::main()
}

//! `scopable-host`: the command line over the host's crates (sandbox, store, sync). It parses
//! arguments, reads keys and prompts, and prints human or JSON output; nothing imports it.

mod check_cmd;
mod cli;
mod inspect;
mod output;
mod pin;
mod review;
mod sync_cmd;

fn main() -> std::process::ExitCode {
    cli::main()
}

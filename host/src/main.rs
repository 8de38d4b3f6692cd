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

/// mimalloc instead of the system allocator: a large sync builds and drops maps of hundreds of
/// thousands of small strings, where glibc's allocator spends its time consolidating.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}

//! `scopable-host`: the command line over the `scopable_host` library.

fn main() -> std::process::ExitCode {
    scopable_host::cli::main()
}

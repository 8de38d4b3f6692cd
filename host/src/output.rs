//! How the command line writes its results: one line at a time on stdout, ending quietly when
//! the reader has gone; and the async runtime export calls run on.

use scopable_sandbox::display;
use scopable_sync::app::{AppError, Exit};
use serde_json::Value;

/// Prints a JSON value on stdout: exact values, with the characters a terminal would act on
/// that JSON allows raw (C1 and bidirectional controls, line separators) written as `\uXXXX`
/// escapes ([`display::json_text`]). A reader that went away ends the process quietly
/// ([`print_line`]).
pub fn print_json(value: &Value) {
    print_line(format_args!("{}", display::json_text(value)));
}

/// Writes one line on stdout. When the reader has gone (`scopable-host ... | head -1`), the
/// rest of the output is not wanted: the process ends at once, quietly, with status 0 (the
/// command's changes, if any, were made before it printed). Any other write failure (a full
/// disk) ends it with status 1 and one line on stderr.
pub fn print_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(line)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(e) = written {
        stdout_failed(&e);
    }
}

/// Ends the process after a failed write to stdout: quietly (status 0) when the reader has
/// gone, else with status 1 and one line on stderr.
fn stdout_failed(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: cannot write the output: {e}");
    std::process::exit(Exit::Failure as i32);
}

/// The async runtime the command line runs export calls on.
pub fn runtime() -> Result<tokio::runtime::Runtime, AppError> {
    scopable_sync::app::runtime()
}

/// Sends lines for the admin (retry notices) to stderr, one line each; stdout carries the
/// command's result.
pub fn notices_to_stderr() {
    scopable_sync::notice::set_notice_sink(Some(std::sync::Arc::new(|line: &str| {
        eprintln!("{line}")
    })));
}

//! `log-flood`: emits far more log lines than the host keeps, each far longer than a line the
//! host keeps, full of terminal escapes and line breaks. The component cannot tell what the
//! host kept (logging never fails), so it reports what it sent and the host test judges from
//! the host's own output.

use crate::log::{self, Level};
use crate::report;
use crate::types::{Endpoint, Error, Verified};

/// How many lines are emitted.
pub const LINES: usize = 5000;
/// How many characters each line holds.
pub const CHARS: usize = 5000;

pub fn run(_endpoint: &Endpoint) -> Result<Verified, Error> {
    // Escapes that would recolour, hide or rewrite the terminal, and a forged log line.
    let hostile = "\x1b[31m\x1b]0;pwned\x07\r\nERROR forged line\x1b[8m\u{202e}\u{9b}";
    let mut emitted = 0usize;
    for i in 0..LINES {
        let mut line = format!("flood {i:05} {hostile}");
        let short = CHARS.saturating_sub(line.chars().count());
        line.extend(std::iter::repeat_n('x', short));
        log::emit(Level::Info, &line);
        emitted += 1;
    }
    report::got_through(format!("emitted={emitted} chars={CHARS}"))
}

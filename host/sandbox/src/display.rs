//! Text from outside (a component, the API, a manifest, the database) made safe for a
//! person's terminal, and JSON made safe for one.
//!
//! For people, [`safe`] replaces every character a terminal could act on (C0 controls,
//! newline, tab and carriage return included, ESC, DEL, C1 controls U+0080-U+009F, the line
//! and paragraph separators U+2028/U+2029, and the bidirectional controls U+061C, U+200E,
//! U+200F, U+202A-U+202E and U+2066-U+2069) with a visible escape in Rust's notation, `\u{1b}`,
//! and keeps at most [`MAX_CHARS`] characters, ending a cut value with `…`. An escape is never
//! cut in half. A literal backslash is left as it is: the text form is for reading, and the
//! exact value is what `--json` prints.
//!
//! For `--json`, [`json_text`] keeps every value exact but writes DEL, C1, bidirectional and
//! separator characters as `\uXXXX` escapes (serde_json escapes C0 controls itself and leaves
//! these raw).

use std::borrow::Cow;
use std::fmt::Write as _;

/// The most characters one value from outside takes on a line, ellipsis included.
pub const MAX_CHARS: usize = 512;

/// The most characters of the `error: ...` line after its prefix. The message is the host's
/// words around values from outside; when it is longer, its middle is cut so that both what
/// failed (the start) and what to do (the end) stay visible.
pub const ERROR_MAX_CHARS: usize = 1024;

/// What ends (or, in [`safe_around`], replaces the middle of) a value that was cut.
pub const ELLIPSIS: char = '…';

/// Whether `c` must not reach a terminal as it is: a C0 or C1 control, DEL, a line or
/// paragraph separator, or a bidirectional control.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// How many characters `c` takes once made safe.
fn width(c: char) -> usize {
    if is_unsafe(c) {
        // `\u{`, the hex digits (at least one), `}`
        let digits = (32 - (c as u32).leading_zeros()).div_ceil(4).max(1);
        4 + digits as usize
    } else {
        1
    }
}

fn push_safe(out: &mut String, c: char) {
    if is_unsafe(c) {
        let _ = write!(out, "\\u{{{:x}}}", c as u32);
    } else {
        out.push(c);
    }
}

/// Whether `s`, made safe, takes at most `max` characters (reads no further than needed).
fn fits(s: &str, max: usize) -> bool {
    let mut used = 0usize;
    for c in s.chars() {
        used += width(c);
        if used > max {
            return false;
        }
    }
    true
}

/// `s` fit for a terminal: unsafe characters escaped, at most [`MAX_CHARS`] characters.
pub fn safe(s: &str) -> Cow<'_, str> {
    safe_within(s, MAX_CHARS)
}

/// `s` fit for a terminal: unsafe characters escaped, at most `max` characters (the last one
/// `…` when `s` was cut).
pub fn safe_within(s: &str, max: usize) -> Cow<'_, str> {
    let clean = !s.chars().any(is_unsafe);
    if fits(s, max) {
        if clean {
            return Cow::Borrowed(s);
        }
        let mut out = String::with_capacity(s.len() + 8);
        s.chars().for_each(|c| push_safe(&mut out, c));
        return Cow::Owned(out);
    }
    if max == 0 {
        return Cow::Borrowed("");
    }
    let budget = max - 1;
    let mut out = String::new();
    let mut used = 0usize;
    for c in s.chars() {
        let w = width(c);
        if used + w > budget {
            break;
        }
        used += w;
        push_safe(&mut out, c);
    }
    out.push(ELLIPSIS);
    Cow::Owned(out)
}

/// Like [`safe_within`], but a cut takes out the middle: about two thirds of `max` from the
/// start, `…`, and the rest from the end.
pub fn safe_around(s: &str, max: usize) -> Cow<'_, str> {
    if fits(s, max) || max < 3 {
        return safe_within(s, max);
    }
    let budget = max - 1;
    let head_budget = budget * 2 / 3;
    let tail_budget = budget - head_budget;
    let mut head = String::new();
    let mut used = 0usize;
    let mut head_end = 0usize;
    for (i, c) in s.char_indices() {
        let w = width(c);
        if used + w > head_budget {
            break;
        }
        used += w;
        head_end = i + c.len_utf8();
        push_safe(&mut head, c);
    }
    let mut tail: Vec<char> = Vec::new();
    let mut used = 0usize;
    for (i, c) in s.char_indices().rev() {
        let w = width(c);
        if i < head_end || used + w > tail_budget {
            break;
        }
        used += w;
        tail.push(c);
    }
    let mut out = head;
    out.push(ELLIPSIS);
    tail.iter().rev().for_each(|c| push_safe(&mut out, *c));
    Cow::Owned(out)
}

/// The `error: ...` message: one line, unsafe characters escaped, at most
/// [`ERROR_MAX_CHARS`] characters with its middle cut when longer.
pub fn error_line(message: &str) -> Cow<'_, str> {
    safe_around(message, ERROR_MAX_CHARS)
}

/// Whether `--json` writes `c` as a `\uXXXX` escape although JSON allows it raw: DEL, C1
/// controls, line and paragraph separators and bidirectional controls.
fn json_escaped(c: char) -> bool {
    (c as u32) >= 0x7f && is_unsafe(c)
}

/// Escapes, in serialized JSON, the characters of [`json_escaped`] (they can only occur
/// inside strings, where `\uXXXX` means the same character).
pub fn escape_json_text(text: &str) -> Cow<'_, str> {
    if !text.chars().any(json_escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if json_escaped(c) {
            // Every such character is in the Basic Multilingual Plane: one escape.
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `value` as pretty JSON with the characters of [`escape_json_text`] escaped.
pub fn json_text(value: &serde_json::Value) -> String {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into());
    escape_json_text(&text).into_owned()
}

/// `n` and the noun that goes with it: `count(1, "request", "requests")` is `1 request`,
/// `count(0, ..)` and `count(2, ..)` take the plural.
pub fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NASTY: &str = "a\u{1b}[8mb\u{1b}]0;title\u{7}\nforged\r\t\u{7f}\u{9b}31m\u{202e}rtl\u{2066}\u{2069}\u{200f}\u{61c}\u{2028}\u{2029}z";

    fn assert_terminal_safe(s: &str) {
        assert!(!s.chars().any(is_unsafe), "{s:?}");
    }

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        assert!(matches!(
            safe("Acme Ltd. — Zürich"),
            Cow::Borrowed("Acme Ltd. — Zürich")
        ));
        assert!(matches!(
            escape_json_text("{\"a\": \"b\"}"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn controls_and_bidi_become_visible_escapes() {
        let out = safe(NASTY);
        assert_terminal_safe(&out);
        assert_eq!(
            out,
            "a\\u{1b}[8mb\\u{1b}]0;title\\u{7}\\u{a}forged\\u{d}\\u{9}\\u{7f}\\u{9b}31m\\u{202e}rtl\\u{2066}\\u{2069}\\u{200f}\\u{61c}\\u{2028}\\u{2029}z"
        );
        assert_eq!(out.lines().count(), 1);
    }

    #[test]
    fn long_values_are_cut_with_an_ellipsis() {
        let exact = "x".repeat(MAX_CHARS);
        assert_eq!(safe(&exact), exact);
        let long = "x".repeat(10 << 20);
        let out = safe(&long);
        assert_eq!(out.chars().count(), MAX_CHARS);
        assert!(out.ends_with(ELLIPSIS));
        // An escape is never cut in half.
        let escapes = "\u{1b}".repeat(1000);
        let out = safe(&escapes);
        assert!(out.chars().count() <= MAX_CHARS);
        assert!(out.ends_with("}…"), "{out}");
        assert_eq!(safe_within("abc", 0), "");
        assert_eq!(safe_within("abcd", 3), "ab…");
    }

    #[test]
    fn the_error_line_keeps_its_start_and_end() {
        let message = format!(
            "the API is unavailable: {}\n{}. Try again later.",
            "\u{1b}[8m".repeat(1 << 20),
            "y".repeat(10 << 20)
        );
        let out = error_line(&message);
        assert_terminal_safe(&out);
        assert!(out.chars().count() <= ERROR_MAX_CHARS);
        assert!(
            out.starts_with("the API is unavailable: \\u{1b}[8m"),
            "{out}"
        );
        assert!(out.ends_with("yyy. Try again later."), "{out}");
        assert!(out.contains(ELLIPSIS));
        assert_eq!(error_line("short"), "short");
    }

    #[test]
    fn json_keeps_the_value_and_escapes_what_terminals_act_on() {
        let value = json!({"name": NASTY, "list": ["\u{85}", "\u{2028}"], "n": 1});
        let text = json_text(&value);
        assert!(!text.chars().any(|c| is_unsafe(c) && c != '\n'), "{text}");
        assert!(
            text.contains("\\u009b") && text.contains("\\u202e"),
            "{text}"
        );
        let back: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(back, value);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(
            std::env::var("FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(500)
        ))]

        /// Whatever the input, the output holds no unsafe character, stays within its
        /// bound, and is the input unchanged when the input was safe and short.
        #[test]
        fn output_is_always_safe_and_bounded(
            s in "(\\PC|[\\x00-\\x1f\\x7f\\u{80}-\\u{9f}\\u{202a}-\\u{202e}\\u{2066}-\\u{2069}]){0,700}",
            max in 0usize..600,
        ) {
            for out in [safe_within(&s, max), safe_around(&s, max)] {
                proptest::prop_assert!(!out.chars().any(is_unsafe), "{:?}", out);
                proptest::prop_assert!(out.chars().count() <= max, "{} > {max}", out.chars().count());
                if !s.chars().any(is_unsafe) && s.chars().count() <= max {
                    proptest::prop_assert_eq!(out.as_ref(), s.as_str());
                }
            }
        }

        /// Any string round-trips through `--json` exactly, with no raw C1 or bidi control.
        #[test]
        fn json_round_trips(s in "(\\PC|[\\x00-\\x1f\\x7f\\u{80}-\\u{9f}\\u{2028}\\u{2029}\\u{202a}-\\u{202e}\\u{2066}-\\u{2069}]){0,200}") {
            let value = serde_json::json!({"v": s, "list": [s.clone()]});
            let text = json_text(&value);
            proptest::prop_assert!(!text.chars().any(|c| is_unsafe(c) && c != '\n'), "{:?}", text);
            let back: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
            proptest::prop_assert_eq!(back, value);
        }
    }
}

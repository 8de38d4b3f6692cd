//! Normalization of the identifiers Scopable's matchers compare: organization and client names,
//! serial numbers, MAC addresses and hostnames, with the placeholder lists that keep junk values
//! from ever counting as evidence.
//!
//! One crate for the rules, so that every side that compares these values agrees: the IT Glue
//! connector's `match` (compiled to WebAssembly), the example Docuvault connector, and the host's
//! `search`, which finds Scopable records the way the matcher would see them. A sibling
//! connector depends on it rather than copying the rules.
//!
//! ```
//! use scopable_normalize::{normalize_hostname, normalize_mac, normalize_name, normalize_serial};
//!
//! assert_eq!(normalize_name("Acme, Inc."), "acme inc");
//! assert_eq!(normalize_hostname("TY-DC01.corp.local").as_deref(), Some("ty-dc01"));
//! assert_eq!(normalize_serial(" cz2841ab7q").as_deref(), Some("CZ2841AB7Q"));
//! assert_eq!(normalize_mac("3C-52-82-1A-9F-01").as_deref(), Some("3c52821a9f01"));
//! // Placeholders prove nothing.
//! assert_eq!(normalize_serial("To Be Filled By O.E.M."), None);
//! assert_eq!(normalize_mac("00:00:00:00:00:00"), None);
//! ```
#![deny(missing_docs)]

use std::net::{Ipv4Addr, Ipv6Addr};

use unicode_normalization::UnicodeNormalization;
use unicode_properties::general_category::{
    GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory,
};

/// Apostrophes are dropped rather than turned into spaces, so `O’Brien` stays one word.
/// U+02BC is a modifier letter, not punctuation, but people type it as an apostrophe.
const APOSTROPHES: [char; 3] = ['\'', '\u{2019}', '\u{02BC}'];

/// Full stops are dropped so that initials collapse (`A.C.M.E.` -> `acme`). NFKC has already
/// folded the full-width and small forms into `.`; these are the other scripts' full stops.
const FULL_STOPS: [char; 7] = [
    '.', '\u{0589}', '\u{06D4}', '\u{1362}', '\u{166E}', '\u{1803}', '\u{3002}',
];

/// Legal-form words removed from the end of a name when looking for suggestions.
const LEGAL_SUFFIXES: [&str; 16] = [
    "inc",
    "incorporated",
    "llc",
    "ltd",
    "limited",
    "gmbh",
    "corp",
    "corporation",
    "co",
    "company",
    "plc",
    "pty",
    "sa",
    "ag",
    "bv",
    "oy",
];

/// Serial numbers that BIOSes and imaging tools write when nobody set a real one, compared
/// after trimming and uppercasing.
const PLACEHOLDER_SERIALS: [&str; 20] = [
    "TO BE FILLED BY O.E.M.",
    "DEFAULT STRING",
    "SYSTEM SERIAL NUMBER",
    "NOT SPECIFIED",
    "NONE",
    "N/A",
    "NA",
    "UNKNOWN",
    "UNKNOW",
    "INVALID",
    "EVAL",
    "OEM_SERIAL",
    "SYSTEMSERIALNUMB",
    "SERIAL NUMBER XXXXXX",
    "CHASSIS SERIAL NUMBER",
    "0123456789",
    "123456789",
    "1234567890",
    "-1",
    "",
];

/// MAC addresses shared by many unrelated machines (all-zero, broadcast, Windows virtual and
/// RAS adapters, VMware host-side adapters, VirtualBox host-only), in the normalized form.
/// Multicast addresses are rejected separately.
const PLACEHOLDER_MACS: [&str; 16] = [
    "000000000000",
    "ffffffffffff",
    "feffffffffff",
    "02004e435049",
    "204153594eff",
    "33506f453030",
    "505054503030",
    "005056c00001",
    "005056c00002",
    "005056c00003",
    "005056c00004",
    "005056c00005",
    "005056c00006",
    "005056c00007",
    "005056c00008",
    "0a0027000000",
];

/// Normalizes an organization or client name for exact comparison: NFKC; format characters
/// (Cf) dropped; full Unicode lowercase, then NFKC again; apostrophes and full stops dropped and
/// every other punctuation character (P*) made a space; white space collapsed and trimmed.
///
/// The steps are repeated until the result no longer changes: dropping a punctuation mark can
/// leave, say, a combining accent next to a letter, which the next NFKC pass composes. For
/// ordinary names the first pass is already the fixed point; the repetition only makes the
/// function idempotent on odd input, so a stored normalized name always normalizes to itself.
pub fn normalize_name(raw: &str) -> String {
    if raw.is_ascii() {
        return normalize_ascii_name(raw);
    }
    normalize_any_name(raw)
}

/// [`normalize_name`] of any text: the passes repeated up to their fixed point.
fn normalize_any_name(raw: &str) -> String {
    let mut current = normalize_name_once(raw);
    // A handful of passes always suffices in practice; the bound keeps hostile input cheap.
    for _ in 0..8 {
        let next = normalize_name_once(&current);
        if next == current {
            break;
        }
        current = next;
    }
    current
}

/// [`normalize_name`] of ASCII text, the usual case, in one pass over its bytes. NFKC leaves
/// ASCII as it is, no ASCII character is a format character, and lowercasing ASCII only lowers
/// its letters, so steps 1 to 3 come down to that; what is left after steps 4 and 5 is
/// lowercase ASCII without punctuation or repeated spaces, which the passes leave as it is.
/// `ascii_names_normalize_as_any_text_does` checks it against [`normalize_any_name`].
fn normalize_ascii_name(raw: &str) -> String {
    without_punctuation(raw.chars().map(|c| c.to_ascii_lowercase()), raw.len())
}

fn normalize_name_once(raw: &str) -> String {
    // 1 and 2: compatibility forms folded, then invisible format characters removed.
    let folded: String = raw
        .nfkc()
        .filter(|c| c.general_category() != GeneralCategory::Format)
        .collect();
    // 3: full Unicode lowercase (may expand one char into several), then NFKC again.
    let lowered: String = folded.chars().flat_map(char::to_lowercase).collect();
    let lowered: String = lowered.nfkc().collect();
    without_punctuation(lowered.chars(), lowered.len())
}

/// Steps 4 and 5 of [`normalize_name`]: punctuation removed or turned into spaces, white
/// space collapsed and trimmed. `len` is the text's length in bytes, the most it can keep.
fn without_punctuation(chars: impl Iterator<Item = char>, len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut pending_space = false;
    for c in chars {
        let c = if APOSTROPHES.contains(&c) || FULL_STOPS.contains(&c) {
            continue;
        } else if c.general_category_group() == GeneralCategoryGroup::Punctuation {
            ' '
        } else {
            c
        };
        if c.is_whitespace() {
            pending_space = true;
            continue;
        }
        if pending_space && !out.is_empty() {
            out.push(' ');
        }
        pending_space = false;
        out.push(c);
    }
    out
}

/// The key used for suggestions: a normalized name without a leading "the" and without legal
/// suffixes at its end (`acme pty ltd` -> `acme`). `None` when nothing would be left, so that a
/// client called "The Company" is not suggested for every other bare legal form.
pub fn suggestion_key(normalized: &str) -> Option<String> {
    let mut words: Vec<&str> = normalized.split(' ').filter(|w| !w.is_empty()).collect();
    if words.first() == Some(&"the") {
        words.remove(0);
    }
    while let Some(last) = words.last() {
        if LEGAL_SUFFIXES.contains(last) {
            words.pop();
        } else {
            break;
        }
    }
    if words.is_empty() {
        None
    } else {
        Some(words.join(" "))
    }
}

/// A serial number ready for comparison (trimmed, uppercased), or `None` when it is a
/// placeholder that many machines share and so proves nothing.
pub fn normalize_serial(raw: &str) -> Option<String> {
    let serial = uppercase(raw.trim());
    if is_placeholder_serial(&serial) {
        None
    } else {
        Some(serial)
    }
}

fn is_placeholder_serial(serial: &str) -> bool {
    let mut chars = serial.chars();
    let Some(first) = chars.next() else {
        return true;
    };
    let one_repeated_char = chars.clone().all(|c| c == first);
    let too_short = serial.chars().count() < 4;
    too_short || one_repeated_char || PLACEHOLDER_SERIALS.contains(&serial)
}

/// A MAC address as 12 lowercase hex digits, or `None` when the text does not hold exactly 12
/// hex digits, or holds a placeholder or multicast address.
///
/// Everything but ASCII hex digits is dropped first, so any separator style (`aa:bb`, `aa-bb`,
/// `aabb.ccdd`) compares equal.
pub fn normalize_mac(raw: &str) -> Option<String> {
    let mut hex = String::with_capacity(12);
    for c in raw.chars().filter(char::is_ascii_hexdigit) {
        if hex.len() == 12 {
            return None;
        }
        hex.push(c.to_ascii_lowercase());
    }
    if hex.len() != 12 {
        return None;
    }
    let first_byte = u8::from_str_radix(&hex[..2], 16).ok()?;
    // The lowest bit of the first byte marks a group address: never one device.
    let multicast = first_byte & 1 == 1;
    if multicast || PLACEHOLDER_MACS.contains(&hex.as_str()) {
        None
    } else {
        Some(hex)
    }
}

/// The first DNS label of a hostname, lowercased (`ty-dc01.corp.local` -> `ty-dc01`), or `None`
/// when the hostname is empty or is an IP address (a shared DHCP address proves nothing).
pub fn normalize_hostname(raw: &str) -> Option<String> {
    if raw.is_ascii() {
        return normalize_ascii_hostname(raw);
    }
    normalize_any_hostname(raw)
}

/// [`normalize_hostname`] of ASCII text, the usual case: only the first label is copied and
/// lowered, and the address parsers run only on text that could be an address. Lowering ASCII
/// changes no digit, dot, colon, bracket or percent sign, and both parsers read hex digits in
/// either case, so the address check gives the same answer before lowering as after.
/// `ascii_hostnames_normalize_as_any_text_does` checks it against [`normalize_any_hostname`].
fn normalize_ascii_hostname(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    let name = trimmed.strip_suffix('.').unwrap_or(trimmed);
    if name.is_empty() || looks_like_ip(name) {
        return None;
    }
    let label = name.split('.').next().unwrap_or_default().trim();
    (!label.is_empty()).then(|| label.to_ascii_lowercase())
}

/// [`normalize_hostname`] of any text.
fn normalize_any_hostname(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    let lowered = lowercase(trimmed);
    let name = lowered.strip_suffix('.').unwrap_or(&lowered);
    if name.is_empty() || looks_like_ip(name) {
        return None;
    }
    let label = name.split('.').next().unwrap_or_default().trim();
    if label.is_empty() {
        None
    } else {
        Some(label.to_string())
    }
}

/// Full Unicode uppercase.
fn uppercase(text: &str) -> String {
    case_mapped(text, str::to_ascii_uppercase, char::to_uppercase)
}

/// Full Unicode lowercase.
fn lowercase(text: &str) -> String {
    case_mapped(text, str::to_ascii_lowercase, char::to_lowercase)
}

/// `text` with every character mapped by `map` (which may give several); ASCII text, the
/// usual case, by `ascii`, without looking a character up.
fn case_mapped<I: Iterator<Item = char>>(
    text: &str,
    ascii: fn(&str) -> String,
    map: fn(char) -> I,
) -> String {
    if text.is_ascii() {
        ascii(text)
    } else {
        text.chars().flat_map(map).collect()
    }
}

fn looks_like_ip(name: &str) -> bool {
    let unbracketed = name
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(name);
    // An IPv6 zone (`fe80::1%eth0`) is not part of the address.
    let without_zone = unbracketed.split('%').next().unwrap_or_default();
    // Each parser only on text it could accept: an IPv4 address is digits and dots, an IPv6
    // address always holds a colon. Most hostnames are neither, and skip both.
    let digits_and_dots = |text: &str| text.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if digits_and_dots(without_zone) && without_zone.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    if without_zone.contains(':') && without_zone.parse::<Ipv6Addr>().is_ok() {
        return true;
    }
    // A truncated dotted address (`10.0.1`) is no hostname either: its first label would be a
    // bare number shared by every machine on the network.
    name.contains('.') && digits_and_dots(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_follow_the_documented_examples() {
        assert_eq!(normalize_name("Acme, Inc."), "acme inc");
        assert_eq!(normalize_name("A.C.M.E."), "acme");
        assert_eq!(normalize_name("O’Brien"), "obrien");
        assert_eq!(normalize_name("O'Brien"), "obrien");
        assert_eq!(normalize_name("Oʼbrien"), "obrien");
        assert_eq!(normalize_name("Smith-Jones"), "smith jones");
    }

    #[test]
    fn nfkc_folds_full_width_letters_no_break_spaces_and_ligatures() {
        assert_eq!(normalize_name("ＡＣＭＥ　Ｌｔｄ"), "acme ltd");
        assert_eq!(normalize_name("Acme\u{00A0}Corp"), "acme corp");
        assert_eq!(normalize_name("Acme\u{202F}Corp"), "acme corp");
        assert_eq!(normalize_name("ﬁrst ﬂoor"), "first floor");
        assert_eq!(normalize_name("Ⅻ Labs"), "xii labs");
    }

    #[test]
    fn format_characters_vanish_without_leaving_a_space() {
        assert_eq!(normalize_name("Ac\u{200B}me"), "acme");
        assert_eq!(normalize_name("\u{FEFF}Acme"), "acme");
        assert_eq!(normalize_name("Ac\u{00AD}me"), "acme");
        assert_eq!(normalize_name("Ac\u{200D}me\u{200C}"), "acme");
        assert_eq!(normalize_name("\u{2060}Acme\u{2060}"), "acme");
    }

    #[test]
    fn lowercase_is_full_unicode() {
        assert_eq!(normalize_name("ÄRZTE GMBH"), "ärzte gmbh");
        assert_eq!(normalize_name("ΣΟΦΙΑ"), normalize_name("σοφια"));
        assert_eq!(normalize_name("İstanbul"), "i\u{307}stanbul");
    }

    #[test]
    fn punctuation_is_unicode_wide_but_symbols_stay() {
        assert_eq!(normalize_name("Acme — North"), "acme north");
        assert_eq!(normalize_name("«Acme»"), "acme");
        assert_eq!(normalize_name("Acme (UK)"), "acme uk");
        assert_eq!(normalize_name("Smith & Jones"), "smith jones");
        assert_eq!(normalize_name("Acme+"), "acme+");
        assert_eq!(normalize_name("Acme。Group"), "acmegroup");
        assert_eq!(normalize_name("Acme‘s"), "acme s");
    }

    #[test]
    fn white_space_is_collapsed_and_trimmed() {
        assert_eq!(normalize_name("  Acme \t\n  Ltd  "), "acme ltd");
        assert_eq!(normalize_name("Acme\u{2003}\u{2029}Ltd"), "acme ltd");
        assert_eq!(normalize_name(" - . ' "), "");
        assert_eq!(normalize_name(""), "");
    }

    #[test]
    fn suggestion_keys_drop_legal_forms_and_a_leading_the() {
        assert_eq!(suggestion_key("acme inc").as_deref(), Some("acme"));
        assert_eq!(suggestion_key("acme incorporated").as_deref(), Some("acme"));
        assert_eq!(suggestion_key("the acme company").as_deref(), Some("acme"));
        assert_eq!(suggestion_key("acme pty ltd").as_deref(), Some("acme"));
        for suffix in LEGAL_SUFFIXES {
            let name = format!("acme {suffix}");
            assert_eq!(suggestion_key(&name).as_deref(), Some("acme"), "{name}");
        }
        // Only a trailing legal form is removed, never one inside the name.
        assert_eq!(
            suggestion_key("co op foods").as_deref(),
            Some("co op foods")
        );
        assert_eq!(suggestion_key("theatre co").as_deref(), Some("theatre"));
        assert_eq!(suggestion_key("the company"), None);
        assert_eq!(suggestion_key(""), None);
    }

    #[test]
    fn serials_are_trimmed_and_uppercased() {
        assert_eq!(
            normalize_serial("  abc123xyz ").as_deref(),
            Some("ABC123XYZ")
        );
        assert_eq!(
            normalize_serial("5CG1234ABC").as_deref(),
            Some("5CG1234ABC")
        );
    }

    #[test]
    fn every_placeholder_serial_is_rejected_in_any_case() {
        let listed = [
            "",
            "To Be Filled By O.E.M.",
            "Default string",
            "System Serial Number",
            "Not Specified",
            "None",
            "N/A",
            "NA",
            "Unknown",
            "Unknow",
            "INVALID",
            "EVAL",
            "OEM_Serial",
            "SystemSerialNumb",
            "Serial Number xxxxxx",
            "Chassis Serial Number",
            "0123456789",
            "123456789",
            "1234567890",
            "-1",
        ];
        for serial in listed {
            assert_eq!(normalize_serial(serial), None, "{serial:?}");
            assert_eq!(normalize_serial(&serial.to_lowercase()), None, "{serial:?}");
            assert_eq!(
                normalize_serial(&format!("  {serial}\t")),
                None,
                "{serial:?}"
            );
        }
        for serial in [
            "0000000",
            "1111",
            "xxxxxxxxxxx",
            "XXXXxxxx",
            "ab",
            "abc",
            "   ",
        ] {
            assert_eq!(normalize_serial(serial), None, "{serial:?}");
        }
        assert_eq!(normalize_serial("abcd").as_deref(), Some("ABCD"));
        assert_eq!(normalize_serial("0000001").as_deref(), Some("0000001"));
    }

    #[test]
    fn macs_keep_hex_digits_only_and_need_exactly_twelve() {
        let expected = Some("001a2b3c4d5e".to_string());
        assert_eq!(normalize_mac("00:1A:2B:3C:4D:5E"), expected);
        assert_eq!(normalize_mac("00-1a-2b-3c-4d-5e"), expected);
        assert_eq!(normalize_mac("001a.2b3c.4d5e"), expected);
        assert_eq!(normalize_mac(" 001A2B3C4D5E "), expected);
        // The IT Glue documentation's own example is not valid hex.
        assert_eq!(normalize_mac("18-5E-0F-ED-99-9J"), None);
        assert_eq!(normalize_mac("00:1a:2b:3c:4d"), None);
        assert_eq!(normalize_mac("00:1a:2b:3c:4d:5e:6f"), None);
        assert_eq!(normalize_mac(""), None);
    }

    #[test]
    fn every_placeholder_mac_is_rejected() {
        let listed = [
            "00:00:00:00:00:00",
            "ff:ff:ff:ff:ff:ff",
            "FE:FF:FF:FF:FF:FF",
            "02:00:4e:43:50:49",
            "20:41:53:59:4e:ff",
            "33:50:6f:45:30:30",
            "50:50:54:50:30:30",
            "00:50:56:c0:00:01",
            "00:50:56:c0:00:02",
            "00:50:56:c0:00:03",
            "00:50:56:c0:00:04",
            "00:50:56:c0:00:05",
            "00:50:56:c0:00:06",
            "00:50:56:c0:00:07",
            "00:50:56:c0:00:08",
            "0a:00:27:00:00:00",
        ];
        for mac in listed {
            assert_eq!(normalize_mac(mac), None, "{mac}");
            assert_eq!(normalize_mac(&mac.to_uppercase()), None, "{mac}");
        }
        // Just outside the VMware host-side range, a real adapter.
        assert!(normalize_mac("00:50:56:c0:00:09").is_some());
        assert!(normalize_mac("00:50:56:c0:00:00").is_some());
    }

    #[test]
    fn multicast_macs_are_rejected() {
        assert_eq!(normalize_mac("01:00:5e:00:00:fb"), None);
        assert_eq!(normalize_mac("33:33:00:00:00:01"), None);
        assert_eq!(normalize_mac("03:00:00:00:00:01"), None);
        // Locally administered but unicast: a real (if virtual) device.
        assert!(normalize_mac("02:42:ac:11:00:02").is_some());
    }

    #[test]
    fn hostnames_compare_on_their_first_label() {
        assert_eq!(
            normalize_hostname("ty-dc01.corp.local"),
            normalize_hostname("TY-DC01")
        );
        assert_eq!(
            normalize_hostname(" TY-DC01.corp.local. ").as_deref(),
            Some("ty-dc01")
        );
        assert_eq!(normalize_hostname("ty-dc01.").as_deref(), Some("ty-dc01"));
        assert_ne!(
            normalize_hostname("ty-ws02"),
            normalize_hostname("ty-ws02-old")
        );
    }

    #[test]
    fn empty_hostnames_and_ip_addresses_are_not_evidence() {
        for raw in [
            "",
            "   ",
            ".",
            ".corp.local",
            "10.0.0.12",
            "192.168.1.20.",
            "10.0.1",
            "::1",
            "fe80::1ff:fe23:4567:890a",
            "FE80::1%eth0",
            "[2001:db8::1]",
        ] {
            assert_eq!(normalize_hostname(raw), None, "{raw:?}");
        }
        assert_eq!(
            normalize_hostname("host1.10.example").as_deref(),
            Some("host1")
        );
    }

    proptest! {
        #[test]
        fn name_normalization_is_idempotent(raw in "\\PC{0,24}") {
            let once = normalize_name(&raw);
            prop_assert_eq!(normalize_name(&once), once);
        }

        #[test]
        fn name_normalization_is_idempotent_on_tricky_characters(
            raw in proptest::collection::vec(
                proptest::sample::select(vec![
                    'a', 'A', 'é', '\u{301}', '.', '\'', '’', 'ʼ', '-', ' ', '\u{A0}', '\u{200B}',
                    'ﬁ', 'Ａ', 'İ', 'ß', 'Σ', '\u{1D2C}', '。', '\u{FEFF}', '\u{3000}', '&',
                ]),
                0..16,
            )
        ) {
            let raw: String = raw.into_iter().collect();
            let once = normalize_name(&raw);
            prop_assert_eq!(normalize_name(&once), once.clone());
            prop_assert!(!once.starts_with(' ') && !once.ends_with(' ') && !once.contains("  "));
        }

        /// The ASCII fast paths give what the general rules give.
        #[test]
        fn ascii_names_normalize_as_any_text_does(
            raw in "[\\x00-\\x7f]{0,32}|[ -~]{0,32}|[ A-Za-z.,'&()-]{0,32}",
        ) {
            prop_assert_eq!(normalize_name(&raw), normalize_any_name(&raw));
            let upper: String = raw.chars().flat_map(char::to_uppercase).collect();
            prop_assert_eq!(uppercase(&raw), upper);
            let lower: String = raw.chars().flat_map(char::to_lowercase).collect();
            prop_assert_eq!(lowercase(&raw), lower);
        }

        /// The ASCII path for hostnames gives what the general rules give, on hostnames,
        /// addresses (bracketed, with zones, in either case), truncated addresses and noise.
        #[test]
        fn ascii_hostnames_normalize_as_any_text_does(
            raw in "[\\x00-\\x7f]{0,24}|[ 0-9.:%\\[\\]a-fA-F]{0,24}|[ 0-9.]{0,16}|[ a-zA-Z0-9.-]{0,24}",
        ) {
            prop_assert_eq!(normalize_hostname(&raw), normalize_any_hostname(&raw));
        }

        /// The parsers are skipped only on text they could not accept.
        #[test]
        fn address_checks_skip_only_what_cannot_be_an_address(
            raw in "[0-9.:%\\[\\]a-fA-F]{0,24}|[0-9.]{0,16}|[0-9a-f:]{0,40}|::ffff:[0-9.]{0,15}",
        ) {
            let unbracketed = raw
                .strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .unwrap_or(&raw);
            let without_zone = unbracketed.split('%').next().unwrap_or_default();
            let parsed = without_zone.parse::<Ipv4Addr>().is_ok()
                || without_zone.parse::<Ipv6Addr>().is_ok()
                || (raw.contains('.') && raw.chars().all(|c| c.is_ascii_digit() || c == '.'));
            prop_assert_eq!(looks_like_ip(&raw), parsed);
        }

        #[test]
        fn serial_and_mac_normalization_are_idempotent(raw in "\\PC{0,20}") {
            if let Some(serial) = normalize_serial(&raw) {
                prop_assert_eq!(normalize_serial(&serial), Some(serial.clone()));
            }
            if let Some(mac) = normalize_mac(&raw) {
                prop_assert_eq!(mac.len(), 12);
                prop_assert_eq!(normalize_mac(&mac), Some(mac.clone()));
            }
        }
    }
}

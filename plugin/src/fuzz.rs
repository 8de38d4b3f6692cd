//! Fuzzing with proptest: arbitrary bytes and JSON through everything that reads outside
//! data (answers, JSON:API pages, identifiers). The property is "never panics, and the result
//! is well formed". `FUZZ_CASES` raises the case count for longer runs.

use crate::api::read_answer;
use crate::jsonapi::{parse_configuration_page, parse_organization_page};
use proptest::prelude::*;
use scopable_normalize::{normalize_hostname, normalize_mac, normalize_name, normalize_serial};
use serde_json::{Value, json};

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// Arbitrary JSON, biased toward JSON:API shapes so the parser goes deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        Just(json!("configuration-interfaces")),
        Just(json!("organizations")),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("data".to_string()),
                        Just("meta".to_string()),
                        Just("included".to_string()),
                        Just("attributes".to_string()),
                        Just("id".to_string()),
                        Just("type".to_string()),
                        Just("name".to_string()),
                        Just("next-page".to_string()),
                        Just("total-count".to_string()),
                        Just("total-pages".to_string()),
                        Just("current-page".to_string()),
                        Just("organization-id".to_string()),
                        Just("mac-address".to_string()),
                        Just("configuration-id".to_string()),
                        Just("relationships".to_string()),
                        Just("archived".to_string()),
                        "[a-z-]{1,12}",
                    ],
                    inner
                ),
                0..8
            )
            .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn pages_never_panic_and_stay_consistent(doc in json_value(), page in 0u32..5) {
        if let Ok(p) = parse_organization_page(&doc, page) {
            for r in &p.records {
                prop_assert!(!r.id.is_empty());
            }
            if let Some(next) = p.info.next_page {
                prop_assert!(next > page.max(1) - 1, "next page {next} after {page}");
            }
        }
        if let Ok(p) = parse_configuration_page(&doc, page) {
            for r in &p.records {
                prop_assert!(!r.id.is_empty());
                prop_assert!(!r.organization_id.is_empty());
            }
        }
    }

    #[test]
    fn answers_never_panic(status in 100u16..600, body in prop::collection::vec(any::<u8>(), 0..300), retry in proptest::option::of(".{0,12}")) {
        let result = read_answer(status, retry.as_deref(), &body, "/organizations");
        if !(200..300).contains(&status) {
            prop_assert!(result.is_err());
        }
    }

    #[test]
    fn identifiers_never_panic(s in "\\PC{0,64}|.{0,64}") {
        let name = normalize_name(&s);
        prop_assert_eq!(normalize_name(&name), name.clone());
        if let Some(mac) = normalize_mac(&s) {
            prop_assert_eq!(mac.len(), 12);
            prop_assert!(mac.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        }
        if let Some(serial) = normalize_serial(&s) {
            prop_assert!(serial.chars().count() >= 4);
        }
        if let Some(host) = normalize_hostname(&s) {
            prop_assert!(!host.is_empty() && !host.contains('.'));
        }
    }
}

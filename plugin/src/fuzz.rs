//! Fuzzing with proptest: arbitrary bytes and JSON through everything that reads outside
//! data (answers, JSON:API pages, identifiers). The property is "never panics, and the result
//! is well formed". `FUZZ_CASES` raises the case count for longer runs.

use crate::api::read_answer;
use crate::direct::configuration_page;
use crate::jsonapi::{
    error_summary, parse_configuration_page, parse_organization_page, read_document,
};
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

/// A JSON:API page whose records, interfaces and paging carry arbitrary values under the keys
/// the connector reads, beside keys it does not read.
fn page_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("name".to_string()),
        Just("short-name".to_string()),
        Just("organization-type-name".to_string()),
        Just("organization-status-name".to_string()),
        Just("organization-id".to_string()),
        Just("archived".to_string()),
        Just("mac-address".to_string()),
        Just("hostname".to_string()),
        Just("primary-ip".to_string()),
        Just("serial-number".to_string()),
        Just("configuration-type-name".to_string()),
        Just("configuration-id".to_string()),
        "[a-z-]{1,12}",
    ];
    let scalar = prop_oneof![
        3 => "[ -~]{0,12}".prop_map(Value::String),
        1 => any::<u32>().prop_map(|n| json!(n)),
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => json_value(),
    ];
    let attributes = prop::collection::vec((key, scalar.clone()), 0..10)
        .prop_map(|pairs| Value::Object(pairs.into_iter().collect()));
    let id = prop_oneof![
        4 => (1u32..6).prop_map(|n| json!(n.to_string())),
        1 => scalar.clone(),
    ];
    let listed_as = prop_oneof![
        Just("configuration-interfaces"),
        Just("configuration_interfaces"),
        Just("interfaces"),
    ];
    let record = (
        id.clone(),
        attributes.clone(),
        prop::collection::vec(id.clone(), 0..3),
        listed_as,
        scalar.clone(),
    )
        .prop_map(|(id, attributes, interfaces, listed_as, other)| {
            let refs: Vec<Value> = interfaces.into_iter().map(|id| json!({"id": id})).collect();
            json!({"id": id, "type": "configurations", "attributes": attributes,
                   "relationships": {listed_as: {"data": refs}}, "other": other})
        });
    let interface = (
        id.clone(),
        id,
        attributes,
        prop_oneof![
            Just("configuration-interfaces"),
            Just("configuration_interfaces"),
            Just("other")
        ],
    )
        .prop_map(|(id, owner, mut attributes, kind)| {
            // Most interfaces carry a MAC, so that the ways of finding their configuration
            // decide something; the owner is named by an attribute or a relationship.
            let by_attribute = matches!(&owner, Value::String(o) if o.as_str() < "3");
            if let (Value::Object(fields), Value::String(id)) = (&mut attributes, &id) {
                fields
                    .entry("mac-address")
                    .or_insert_with(|| json!(format!("02:00:00:00:00:0{id}")));
                if by_attribute {
                    fields.insert("configuration-id".into(), owner.clone());
                }
            }
            let relationships = if by_attribute {
                json!({})
            } else {
                json!({"configuration": {"data": {"id": owner}}})
            };
            json!({"id": id, "type": kind, "attributes": attributes,
                   "relationships": relationships})
        });
    let item = prop_oneof![4 => record, 1 => json_value()];
    let top_key = prop_oneof![
        Just("errors".to_string()),
        Just("message".to_string()),
        Just("error".to_string()),
        Just("detail".to_string()),
        Just("jsonapi".to_string()),
    ];
    let said = prop_oneof![
        scalar.clone(),
        scalar.prop_map(|title| json!([{"title": title, "detail": "d"}])),
    ];
    (
        prop::collection::vec(item, 0..6),
        prop::collection::vec(interface, 0..6),
        json_value(),
        json_value(),
        prop::collection::vec((top_key, said), 0..3),
    )
        .prop_map(|(data, included, meta, next, others)| {
            let mut doc = json!({"data": data, "included": included, "meta": meta,
                                 "links": {"next": next}});
            if let Value::Object(fields) = &mut doc {
                fields.extend(others);
            }
            doc
        })
}

/// A page of the usual shape: every record readable, text where text is expected, ids as
/// text or numbers, interfaces tied to configurations by attribute or by relationship (and
/// some entries of `included` that are not interfaces), and paging that moves forward.
fn usual_page() -> impl Strategy<Value = Value> {
    let id = prop_oneof![
        3 => "[1-9][0-9]{0,2}".prop_map(Value::String),
        1 => (1u32..1000).prop_map(|n| json!(n)),
    ];
    let text = prop_oneof![
        3 => "[ -~]{0,12}".prop_map(Value::String),
        1 => Just(Value::Null),
    ];
    let attribute = prop_oneof![
        Just("name"),
        Just("hostname"),
        Just("primary-ip"),
        Just("serial-number"),
        Just("mac-address"),
        Just("configuration-type-name"),
        Just("notes"),
    ];
    let record = (
        id.clone(),
        id.clone(),
        prop::collection::vec((attribute, text.clone()), 0..6),
        proptest::option::of(any::<bool>()),
        prop::collection::vec(id.clone(), 0..3),
        prop_oneof![
            Just("configuration-interfaces"),
            Just("configuration_interfaces")
        ],
    )
        .prop_map(|(id, organization, texts, archived, listed, listed_as)| {
            let mut attributes = serde_json::Map::new();
            attributes.insert("organization-id".into(), organization);
            for (key, value) in texts {
                attributes.insert(key.into(), value);
            }
            if let Some(archived) = archived {
                attributes.insert("archived".into(), json!(archived));
            }
            let refs: Vec<Value> = listed
                .into_iter()
                .map(|id| json!({"type": "configuration-interfaces", "id": id}))
                .collect();
            json!({"id": id, "type": "configurations", "attributes": attributes,
                   "relationships": {listed_as: {"data": refs}}})
        });
    let interface = (
        id.clone(),
        id,
        text,
        any::<bool>(),
        prop_oneof![
            Just("configuration-interfaces"),
            Just("configuration_interfaces"),
            Just("locations")
        ],
    )
        .prop_map(|(id, owner, mac, by_attribute, kind)| {
            if by_attribute {
                json!({"type": kind, "id": id,
                       "attributes": {"mac-address": mac, "configuration-id": owner}})
            } else {
                json!({"type": kind, "id": id, "attributes": {"mac-address": mac},
                       "relationships": {"configuration": {"data": {"id": owner}}}})
            }
        });
    let meta = prop_oneof![
        Just(Value::Null),
        Just(json!({"current-page": 1, "next-page": null, "total-count": 3})),
        Just(json!({"current-page": 1, "total-pages": 4})),
    ];
    (
        prop::collection::vec(record, 0..8),
        prop::collection::vec(interface, 0..10),
        meta,
    )
        .prop_map(
            |(data, included, meta)| json!({"data": data, "included": included, "meta": meta}),
        )
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

    /// Reading only the keys the connector looks at gives what reading the whole document
    /// gives: pages, their records and unreadable records, paging and error summaries.
    #[test]
    fn pruned_pages_read_as_whole_ones(doc in prop_oneof![page_value(), json_value()], page in 0u32..3) {
        let body = serde_json::to_vec(&doc).expect("a Value serializes");
        let whole: Value = serde_json::from_slice(&body).expect("its own JSON reads back");
        let pruned = read_document(&body).expect("well-formed JSON reads pruned");
        prop_assert_eq!(parse_organization_page(&pruned, page), parse_organization_page(&whole, page));
        prop_assert_eq!(parse_configuration_page(&pruned, page), parse_configuration_page(&whole, page));
        prop_assert_eq!(error_summary(&pruned), error_summary(&whole));
    }

    /// Whenever the direct reader reads a page, it reads what the general reader reads of the
    /// whole document; and it reads every page of the usual shape.
    #[test]
    fn direct_pages_read_as_whole_ones(
        (doc, usual) in prop_oneof![
            page_value().prop_map(|doc| (doc, false)),
            json_value().prop_map(|doc| (doc, false)),
            usual_page().prop_map(|doc| (doc, true)),
        ],
        page in 1u32..3,
    ) {
        let body = serde_json::to_vec(&doc).expect("a Value serializes");
        let whole: Value = serde_json::from_slice(&body).expect("its own JSON reads back");
        let direct = configuration_page(&body, page);
        prop_assert!(direct.is_some() || !usual, "a usual page was not read directly: {doc}");
        if let Some(direct) = direct {
            prop_assert_eq!(Ok(direct), parse_configuration_page(&whole, page));
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

//! Reading the usual configuration page straight into the contract's records.
//!
//! Nearly every page IT Glue sends has the same shape: a `data` list of configurations with
//! an id, text attributes and an organization id, the interfaces in `included`, and the
//! paging `meta`. [`configuration_page`] reads that shape with typed readers: each kept
//! string is copied once, from the body into the record, and no `serde_json::Value` is built
//! for a record or an interface. Anything else (a record the general reader would report as
//! unreadable, a value of another type, a repeated key, an object written as a list) makes it
//! give up, and the page is read by `jsonapi` from the pruned document instead, so every
//! message about a bad page comes from one place.
//!
//! When it does read a page, it reads what `jsonapi::parse_configuration_page` reads
//! (`fuzz::direct_pages_read_as_whole_ones`). Like the pruned reading, it only checks that the
//! values it skips are well-formed JSON; it skips more of them (attributes of other kinds of
//! records, and everything but the ids under a record's relationships), so a number out of
//! range or a lone surrogate escape there does not fail the page.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;

use crate::bindings::scopable::integration::types::{Configuration, ConfigurationPage};
use crate::jsonapi::{InterfaceIndex, is_blank_id, is_interface_type, page_info};

/// Reads `body` as a page of the usual shape, or `None` when it is not one and must be read
/// by the general reader.
pub fn configuration_page(body: &[u8], requested_page: u32) -> Option<ConfigurationPage> {
    let Object(Document {
        data,
        included,
        meta,
        links,
    }) = serde_json::from_slice(body).ok()?;
    let info = page_info(meta.as_ref(), links.as_ref(), requested_page).ok()?;
    let mut interfaces = InterfaceIndex::default();
    for Object(item) in included.iter().flatten() {
        let (Some(Kind(true)), Some(Object(attributes))) = (&item.kind, &item.attributes) else {
            continue;
        };
        let Some(mac) = &attributes.mac_address else {
            continue;
        };
        let tie = item
            .relationships
            .as_ref()
            .and_then(|Object(r)| r.configuration.as_ref())
            .and_then(|Object(tie)| tie.data.as_ref())
            .and_then(|Object(reference)| reference.id.clone());
        interfaces.add(
            mac,
            item.id.clone().map(|Id(id)| id),
            attributes.configuration_id.clone().map(|Id(id)| id),
            tie.map(|Id(id)| id),
        );
    }
    let records = data
        .into_iter()
        .map(|Object(record)| {
            let Id(id) = record.id;
            let Object(attributes) = record.attributes;
            let listed = record
                .relationships
                .map(|Object(r)| [r.dashed, r.underscored])
                .into_iter()
                .flatten()
                .flatten()
                .flat_map(|Object(listed)| listed.data.into_iter().flatten().flatten())
                .filter_map(|Object(reference)| reference.id.map(|Id(id)| id));
            let mac_addresses = interfaces.macs_for(&id, attributes.mac_address.as_deref(), listed);
            Configuration {
                organization_id: attributes.organization_id.0,
                name: attributes.name.unwrap_or_default(),
                hostname: attributes.hostname,
                primary_ip: attributes.primary_ip,
                serial_number: attributes.serial_number,
                mac_addresses,
                type_name: attributes.configuration_type_name,
                archived: attributes.archived.unwrap_or(false),
                id,
            }
        })
        .collect();
    Some(ConfigurationPage {
        records,
        unreadable: Vec::new(),
        info,
    })
}

/// The document: only `data` is required.
#[derive(Deserialize)]
struct Document {
    data: Vec<Object<Record>>,
    included: Option<Vec<Object<Included>>>,
    meta: Option<Value>,
    links: Option<Value>,
}

/// A configuration in `data`.
#[derive(Deserialize)]
struct Record {
    id: Id,
    attributes: Object<Attributes>,
    relationships: Option<Object<Relationships>>,
}

/// A configuration's attributes. A missing or null organization id makes the record
/// unreadable, which is the general reader's to report.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Attributes {
    organization_id: Id,
    archived: Option<bool>,
    mac_address: Option<String>,
    name: Option<String>,
    hostname: Option<String>,
    primary_ip: Option<String>,
    serial_number: Option<String>,
    configuration_type_name: Option<String>,
}

/// The interfaces a configuration lists, under either spelling of their type.
#[derive(Deserialize)]
struct Relationships {
    #[serde(rename = "configuration-interfaces")]
    dashed: Option<Object<Listed>>,
    #[serde(rename = "configuration_interfaces")]
    underscored: Option<Object<Listed>>,
}

/// A to-many relationship.
#[derive(Deserialize)]
struct Listed {
    data: Option<Vec<Option<Object<Reference>>>>,
}

/// A reference to another record: only its id is read.
#[derive(Deserialize)]
struct Reference {
    id: Option<Id>,
}

/// An entry of `included`: an interface, or a record of another kind that is skipped.
#[derive(Deserialize)]
struct Included {
    #[serde(rename = "type")]
    kind: Option<Kind>,
    id: Option<Id>,
    attributes: Option<Object<InterfaceAttributes>>,
    relationships: Option<Object<InterfaceRelationships>>,
}

/// What an interface says of itself.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct InterfaceAttributes {
    mac_address: Option<String>,
    configuration_id: Option<Id>,
}

/// An interface's tie to its configuration, when it is not an attribute.
#[derive(Deserialize)]
struct InterfaceRelationships {
    configuration: Option<Object<Tie>>,
}

/// A to-one relationship.
#[derive(Deserialize)]
struct Tie {
    data: Option<Object<Reference>>,
}

/// A JSON object read as `T`. serde's derived readers also take a list of the fields in
/// order, which the general reader calls unreadable: this one takes only an object.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(reader: D) -> Result<Self, D::Error> {
        struct Fields<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for Fields<T> {
            type Value = T;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }

        reader.deserialize_map(Fields(PhantomData)).map(Object)
    }
}

/// An id as the general reader accepts it (`jsonapi::as_id`): text that is not blank, or a
/// whole number, written in decimal. Anything else is left to the general reader.
#[derive(Clone)]
struct Id(String);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(reader: D) -> Result<Self, D::Error> {
        struct IdVisitor;

        impl Visitor<'_> for IdVisitor {
            type Value = Id;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an id: text or a whole number")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Id, E> {
                if is_blank_id(text) {
                    return Err(E::custom("a blank id"));
                }
                Ok(Id(text.to_string()))
            }

            fn visit_u64<E>(self, number: u64) -> Result<Id, E> {
                Ok(Id(number.to_string()))
            }

            fn visit_i64<E>(self, number: i64) -> Result<Id, E> {
                Ok(Id(number.to_string()))
            }
        }

        reader.deserialize_any(IdVisitor)
    }
}

/// Whether an `included` entry is an interface, read from its `type` without keeping it.
struct Kind(bool);

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(reader: D) -> Result<Self, D::Error> {
        struct KindVisitor;

        impl Visitor<'_> for KindVisitor {
            type Value = Kind;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a type name")
            }

            fn visit_str<E>(self, kind: &str) -> Result<Kind, E> {
                Ok(Kind(is_interface_type(kind)))
            }
        }

        reader.deserialize_str(KindVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonapi::{parse_configuration_page, read_document};
    use serde_json::json;

    /// Both readings of one body: the direct one, and the general one of the pruned document.
    fn both(doc: &Value) -> (Option<ConfigurationPage>, ConfigurationPage) {
        let body = serde_json::to_vec(doc).expect("a Value serializes");
        let pruned = read_document(&body).expect("well-formed");
        let general = parse_configuration_page(&pruned, 1).expect("the page reads");
        (configuration_page(&body, 1), general)
    }

    #[test]
    fn the_usual_page_is_read_directly_as_the_general_reader_reads_it() {
        let doc = json!({
            "data": [
                {"id": "1", "type": "configurations", "attributes": {
                    "organization-id": 7, "name": "DC01", "hostname": "dc01",
                    "primary-ip": "10.0.0.5", "mac-address": "AA:AA:AA:AA:AA:01",
                    "serial-number": "SN-1", "configuration-type-name": "Server",
                    "archived": false, "notes": {"long": ["ignored", 1e300]},
                    "created-at": "2024-01-01"},
                 "relationships": {"configuration-interfaces": {"data": [
                     {"type": "configuration-interfaces", "id": "903"}, null]}}},
                {"id": 2, "attributes": {"organization-id": "-3", "name": null,
                    "archived": true, "hostname": "caf\u{e9} \"quoted\""}},
            ],
            "included": [
                {"type": "configuration-interfaces", "id": "900",
                 "attributes": {"configuration-id": 1, "mac-address": "aa-aa-aa-aa-aa-02"}},
                {"type": "configuration_interfaces", "id": "901",
                 "attributes": {"mac-address": "AA:AA:AA:AA:AA:03"},
                 "relationships": {"configuration": {"data": {"id": "2"}}}},
                {"type": "configuration-interfaces", "id": 903,
                 "attributes": {"mac-address": "BB:BB:BB:BB:BB:01"}},
                {"type": "locations", "id": "9",
                 "attributes": {"configuration-id": "1", "mac-address": "CC:CC:CC:CC:CC:01"}},
            ],
            "meta": {"current-page": 1, "next-page": 2, "total-pages": 2, "total-count": 4},
            "links": {"next": "https://api.itglue.com/configurations?page=2"}
        });
        let (direct, general) = both(&doc);
        let direct = direct.expect("the usual shape is read directly");
        assert_eq!(direct, general);
        assert_eq!(direct.records.len(), 2);
        assert_eq!(
            direct.records[0].mac_addresses,
            [
                "AA:AA:AA:AA:AA:01",
                "aa-aa-aa-aa-aa-02",
                "BB:BB:BB:BB:BB:01"
            ]
        );
        assert_eq!(direct.records[1].organization_id, "-3");
        assert_eq!(direct.info.next_page, Some(2));
    }

    #[test]
    fn anything_the_general_reader_reports_is_left_to_it() {
        let good = json!({"id": "1", "attributes": {"organization-id": "7"}});
        let pages = [
            // Unreadable records: each is reported with its reason by the general reader.
            json!({"data": [good, {"id": " ", "attributes": {"organization-id": "7"}}]}),
            json!({"data": [good, {"id": "2", "attributes": {}}]}),
            json!({"data": [good, {"id": "2", "attributes": {"organization-id": null}}]}),
            json!({"data": [good, {"id": "2", "attributes": {"organization-id": 1.5}}]}),
            json!({"data": [good, {"id": "2", "attributes": {"organization-id": "7", "archived": "no"}}]}),
            json!({"data": [good, {"id": "2", "attributes": {"organization-id": "7", "name": 5}}]}),
            json!({"data": [good, {"id": "2", "attributes": [{"organization-id": "7"}]}]}),
            json!({"data": [good, ["2", {"organization-id": "7"}]]}),
            json!({"data": [good, null]}),
            // A relationship or an interface of another shape than usual.
            json!({"data": [{"id": "1", "attributes": {"organization-id": "7"},
                   "relationships": {"configuration-interfaces": {"data": [{"id": {}}]}}}]}),
            json!({"data": [good], "included": [{"type": "configuration-interfaces",
                   "id": "9", "attributes": {"mac-address": 12}}]}),
        ];
        for doc in pages {
            let (direct, general) = both(&doc);
            assert!(direct.is_none(), "{doc}");
            assert!(
                general.unreadable.len() + general.records.len() >= 1,
                "{doc}"
            );
        }
        // Pages that cannot be read at all, and paging that does not move forward.
        for body in [
            br#"{"data": {"id": "1"}}"#.as_slice(),
            br#"{"errors": [{"title": "Unauthorized"}]}"#,
            br#"[{"data": []}]"#,
            br#"{"data": [], "data": []}"#,
            br#"{"data": [], "meta": {"current-page": 2, "next-page": 1}}"#,
            br#"{"data": []} trailing"#,
            br#"{"data": [{"id": "1", "attributes": {"organization-id": "7"}}"#,
        ] {
            assert!(configuration_page(body, 1).is_none(), "{body:?}");
        }
    }

    #[test]
    fn a_repeated_key_is_left_to_the_general_reader() {
        // serde_json keeps the last of a repeated key; the typed readers refuse it.
        let body = br#"{"data": [{"id": "1", "id": "2", "attributes": {"organization-id": "7"}}]}"#;
        assert!(configuration_page(body, 1).is_none());
        let general = parse_configuration_page(&read_document(body).expect("well-formed"), 1);
        assert_eq!(general.expect("reads").records[0].id, "2");
    }

    #[test]
    fn what_it_skips_is_only_checked_for_well_formed_json() {
        let body = b"{\"data\": [{\"id\": \"1\", \"attributes\": {\"organization-id\": \"7\", \
            \"short-name\": 1e400, \"name\": \"A\"}}], \"errors\": \"caf\xe9\"}";
        let page = configuration_page(body, 1).expect("the part read is usual");
        assert_eq!(page.records[0].name, "A");
        // The general reading keeps those values and fails on them.
        assert!(read_document(body).is_err());
        // Broken JSON anywhere still fails the direct reading.
        let broken = br#"{"data": [], "notes": [1, }"#;
        assert!(configuration_page(broken, 1).is_none());
    }
}

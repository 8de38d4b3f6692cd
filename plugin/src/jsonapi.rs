//! Reading IT Glue's JSON:API pages into the contract's page records: the paging `meta`, the
//! records that can be read, and the ones that cannot (kept apart, with a reason).

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::api::snippet;
use crate::bindings::scopable::integration::types::{
    Configuration, ConfigurationPage, Error, Organization, OrganizationPage, PageInfo,
    UnreadableRecord,
};
use crate::prune::{Shape, read_pruned};

/// The JSON:API type of an interface in `included`. IT Glue documents the dashed form; the
/// underscored one is what the `include` parameter is spelled with, and some answers use it.
const INTERFACE_TYPES: [&str; 2] = ["configuration-interfaces", "configuration_interfaces"];

/// What the connector reads of an answer: [`read_document`] keeps these keys and skips the
/// rest. Every key the functions below look at must be named here; the property test
/// `fuzz::pruned_pages_read_as_whole_ones` fails when one is missing.
const DOCUMENT: Shape = Shape::Object(&[
    ("data", Shape::List(&RECORD)),
    ("included", Shape::List(&INCLUDED)),
    ("meta", Shape::All),
    ("links", Shape::All),
    ("errors", Shape::All),
    ("message", Shape::All),
    ("error", Shape::All),
    ("detail", Shape::All),
]);

/// An organization or configuration in `data`.
const RECORD: Shape = Shape::Object(&[
    ("id", Shape::All),
    (
        "attributes",
        Shape::Object(&[
            ("name", Shape::All),
            ("short-name", Shape::All),
            ("organization-type-name", Shape::All),
            ("organization-status-name", Shape::All),
            ("organization-id", Shape::All),
            ("archived", Shape::All),
            ("mac-address", Shape::All),
            ("hostname", Shape::All),
            ("primary-ip", Shape::All),
            ("serial-number", Shape::All),
            ("configuration-type-name", Shape::All),
        ]),
    ),
    (
        "relationships",
        Shape::Object(&[
            (INTERFACE_TYPES[0], Shape::All),
            (INTERFACE_TYPES[1], Shape::All),
        ]),
    ),
]);

/// An interface (or anything else) in `included`.
const INCLUDED: Shape = Shape::Object(&[
    ("type", Shape::All),
    ("id", Shape::All),
    (
        "attributes",
        Shape::Object(&[
            ("mac-address", Shape::All),
            ("configuration-id", Shape::All),
        ]),
    ),
    (
        "relationships",
        Shape::Object(&[("configuration", Shape::All)]),
    ),
]);

/// Reads an answer's body as JSON, keeping only what the page readers below look at
/// ([`DOCUMENT`]). The whole body must still be well-formed JSON.
pub fn read_document(body: &[u8]) -> Result<Value, serde_json::Error> {
    read_pruned(body, &DOCUMENT)
}

/// Reads one page of `GET /organizations`. `requested_page` stands in for `meta.current-page`
/// when the API leaves it out.
pub fn parse_organization_page(
    doc: &Value,
    requested_page: u32,
) -> Result<OrganizationPage, Error> {
    let data = data_list(doc)?;
    let info = parse_page_info(doc, requested_page)?;
    let mut records = Vec::with_capacity(data.len());
    let mut unreadable = Vec::new();
    for item in data {
        match read_organization(item) {
            Ok(org) => records.push(org),
            Err(bad) => unreadable.push(bad),
        }
    }
    Ok(OrganizationPage {
        records,
        unreadable,
        info,
    })
}

/// Reads one page of `GET /configurations?include=configuration_interfaces`, gathering each
/// configuration's MAC addresses from its own attribute and from its interfaces in `included`.
pub fn parse_configuration_page(
    doc: &Value,
    requested_page: u32,
) -> Result<ConfigurationPage, Error> {
    let data = data_list(doc)?;
    let info = parse_page_info(doc, requested_page)?;
    let interfaces = InterfaceIndex::build(doc.get("included"));
    let mut records = Vec::with_capacity(data.len());
    let mut unreadable = Vec::new();
    for item in data {
        match read_configuration(item, &interfaces) {
            Ok(config) => records.push(config),
            Err(bad) => unreadable.push(bad),
        }
    }
    Ok(ConfigurationPage {
        records,
        unreadable,
        info,
    })
}

/// The `data` list of a collection answer. Anything else means the page cannot be read at all,
/// which must fail the run rather than look like an empty page.
fn data_list(doc: &Value) -> Result<&Vec<Value>, Error> {
    let Some(object) = doc.as_object() else {
        return Err(Error::BadResponse(format!(
            "IT Glue answered JSON that is {} instead of a JSON:API document",
            kind(doc)
        )));
    };
    match object.get("data") {
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(Error::BadResponse(format!(
            "IT Glue answered a JSON:API document whose `data` is {} instead of a list",
            kind(other)
        ))),
        None => match error_summary(doc) {
            Some(summary) => Err(Error::BadResponse(format!(
                "IT Glue answered errors instead of data: {summary}"
            ))),
            None => Err(Error::BadResponse(
                "IT Glue answered JSON without a `data` list".to_string(),
            )),
        },
    }
}

/// What an error document says, from either the JSON:API shape
/// (`{"errors":[{"status":401,"title":"Unauthorized","detail":"..."}]}`) or the bare one seen
/// in the wild (`{"message":"Forbidden"}`). `None` when it says nothing readable.
pub fn error_summary(doc: &Value) -> Option<String> {
    let object = doc.as_object()?;
    let mut parts: Vec<String> = Vec::new();
    if let Some(Value::Array(errors)) = object.get("errors") {
        for error in errors.iter().take(3) {
            let text = match error {
                Value::String(text) => text.trim().to_string(),
                Value::Object(fields) => {
                    let title = text_field(fields, "title");
                    let detail = text_field(fields, "detail");
                    match (title, detail) {
                        (Some(t), Some(d)) if t != d => format!("{t}: {d}"),
                        (Some(t), _) => t,
                        (None, Some(d)) => d,
                        (None, None) => String::new(),
                    }
                }
                _ => String::new(),
            };
            if !text.is_empty() {
                parts.push(text);
            }
        }
    }
    for key in ["message", "error", "detail"] {
        if let Some(text) = text_field(object, key) {
            parts.push(text);
        }
    }
    if parts.is_empty() {
        None
    } else {
        Some(snippet(&parts.join("; "), 160))
    }
}

fn text_field(fields: &Map<String, Value>, key: &str) -> Option<String> {
    match fields.get(key) {
        Some(Value::String(text)) if !text.trim().is_empty() => Some(text.trim().to_string()),
        _ => None,
    }
}

/// Reads the paging `meta`.
///
/// `next-page` is trusted when present (null ends the listing). When it is missing or
/// unreadable, a `links.next` or a `total-pages` beyond the current page means there is a next
/// page: a listing that stopped early would silently lose records. A next page that does not
/// come after the current one would make the host ask forever, so it is refused.
pub fn parse_page_info(doc: &Value, requested_page: u32) -> Result<PageInfo, Error> {
    page_info(doc.get("meta"), doc.get("links"), requested_page)
}

/// [`parse_page_info`] from a document's `meta` and `links`, however the document was read.
pub fn page_info(
    meta: Option<&Value>,
    links: Option<&Value>,
    requested_page: u32,
) -> Result<PageInfo, Error> {
    let meta = meta.and_then(Value::as_object);
    let field = |key: &str| meta.and_then(|m| m.get(key));
    let current = field("current-page")
        .and_then(as_page)
        .unwrap_or(requested_page);
    let total_pages = field("total-pages").and_then(as_page);
    let total_count = field("total-count").and_then(as_count);

    let declared_next = match field("next-page") {
        Some(Value::Null) => Some(None),
        Some(value) => as_page(value).map(Some),
        None => None,
    };
    let next_page = match declared_next {
        Some(next) => next,
        None => {
            let has_next_link = links
                .and_then(|links| links.get("next"))
                .is_some_and(|next| match next {
                    Value::String(url) => !url.trim().is_empty(),
                    Value::Null => false,
                    _ => true,
                });
            let more_pages = total_pages.is_some_and(|total| current < total);
            if has_next_link || more_pages {
                Some(current.checked_add(1).ok_or_else(|| {
                    Error::BadResponse("IT Glue reported a page number out of range".to_string())
                })?)
            } else {
                None
            }
        }
    };
    if let Some(next) = next_page
        && next <= current
    {
        return Err(Error::BadResponse(format!(
            "IT Glue said the page after page {current} is page {next}"
        )));
    }
    Ok(PageInfo {
        next_page,
        total_pages,
        total_count,
    })
}

/// A non-negative whole number, sent as a JSON number or as numeric text.
fn as_count(value: &Value) -> Option<u64> {
    match value {
        Value::Number(number) => number.as_u64().or_else(|| {
            number
                .as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < u64::MAX as f64)
                .map(|f| f as u64)
        }),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

fn as_page(value: &Value) -> Option<u32> {
    as_count(value).and_then(|n| u32::try_from(n).ok())
}

/// An id as the contract carries it: JSON:API sends text, but a whole number is accepted too.
/// Blank text and anything else (fractions, objects) is no usable id.
fn as_id(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !is_blank_id(text) => Some(text.clone()),
        Value::Number(number) if number.is_u64() || number.is_i64() => Some(number.to_string()),
        _ => None,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The parts of a record every kind shares: its id and its attributes.
struct RecordFields<'a> {
    id: String,
    attributes: &'a Map<String, Value>,
}

fn record_fields<'a>(item: &'a Value, what: &str) -> Result<RecordFields<'a>, UnreadableRecord> {
    let Some(object) = item.as_object() else {
        return Err(UnreadableRecord {
            id: None,
            detail: format!("{what} record is {} instead of an object", kind(item)),
        });
    };
    let raw_id = object.get("id");
    let Some(id) = raw_id.and_then(as_id) else {
        let received = raw_id
            .filter(|v| !v.is_null())
            .map(|v| snippet(&v.to_string(), 64));
        let received = received.filter(|v| !v.trim_matches('"').trim().is_empty());
        return Err(UnreadableRecord {
            id: received,
            detail: format!("{what} record has no usable id"),
        });
    };
    match object.get("attributes") {
        Some(Value::Object(attributes)) => Ok(RecordFields { id, attributes }),
        other => Err(UnreadableRecord {
            id: Some(id.clone()),
            detail: format!(
                "{what} {id} has {} instead of an attributes object",
                other.map_or("nothing", kind)
            ),
        }),
    }
}

/// Reads an optional text attribute; null and a missing key both mean "not recorded".
fn optional_text(attributes: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match attributes.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(format!("`{key}` is {} instead of text", kind(other))),
    }
}

fn read_organization(item: &Value) -> Result<Organization, UnreadableRecord> {
    let fields = record_fields(item, "organization")?;
    let id = fields.id;
    let attributes = fields.attributes;
    let read = || -> Result<Organization, String> {
        Ok(Organization {
            id: id.clone(),
            // A missing name reads as empty, which the matcher reports as `empty-name`.
            name: optional_text(attributes, "name")?.unwrap_or_default(),
            short_name: optional_text(attributes, "short-name")?,
            type_name: optional_text(attributes, "organization-type-name")?,
            status_name: optional_text(attributes, "organization-status-name")?,
        })
    };
    read().map_err(|detail| UnreadableRecord {
        id: Some(id.clone()),
        detail: format!("organization {id}: {detail}"),
    })
}

fn read_configuration(
    item: &Value,
    interfaces: &InterfaceIndex<'_>,
) -> Result<Configuration, UnreadableRecord> {
    let fields = record_fields(item, "configuration")?;
    let id = fields.id;
    let attributes = fields.attributes;
    let read = || -> Result<Configuration, String> {
        let organization_id = match attributes.get("organization-id") {
            None | Some(Value::Null) => return Err("no `organization-id`".to_string()),
            Some(value) => as_id(value)
                .ok_or_else(|| format!("`organization-id` is {} instead of an id", kind(value)))?,
        };
        let archived = match attributes.get("archived") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(archived)) => *archived,
            Some(other) => {
                return Err(format!(
                    "`archived` is {} instead of true or false",
                    kind(other)
                ));
            }
        };
        let own_mac = optional_text(attributes, "mac-address")?;
        Ok(Configuration {
            id: id.clone(),
            organization_id,
            name: optional_text(attributes, "name")?.unwrap_or_default(),
            hostname: optional_text(attributes, "hostname")?,
            primary_ip: optional_text(attributes, "primary-ip")?,
            serial_number: optional_text(attributes, "serial-number")?,
            mac_addresses: interfaces.macs_for(&id, own_mac.as_deref(), listed_interfaces(item)),
            type_name: optional_text(attributes, "configuration-type-name")?,
            archived,
        })
    };
    read().map_err(|detail| UnreadableRecord {
        id: Some(id.clone()),
        detail: format!("configuration {id}: {detail}"),
    })
}

/// The interfaces of one page's `included` array, indexed both ways an answer can tie an
/// interface to its configuration, so a page costs one pass however many interfaces it has.
/// Both page readers (this module's and [`crate::direct`]) fill and read it the same way.
#[derive(Default)]
pub struct InterfaceIndex<'a> {
    /// Configuration id -> MACs of the interfaces that name it, in `included` order.
    by_configuration: HashMap<String, Vec<&'a str>>,
    /// Interface id -> its MAC, for configurations that list their interfaces instead.
    by_interface: HashMap<String, &'a str>,
}

impl<'a> InterfaceIndex<'a> {
    fn build(included: Option<&'a Value>) -> Self {
        let mut index = InterfaceIndex::default();
        let Some(Value::Array(items)) = included else {
            return index;
        };
        for item in items {
            let is_interface = item
                .get("type")
                .and_then(Value::as_str)
                .is_some_and(is_interface_type);
            let mac = item
                .get("attributes")
                .and_then(|a| a.get("mac-address"))
                .and_then(Value::as_str);
            let (true, Some(mac)) = (is_interface, mac) else {
                continue;
            };
            index.add(
                mac,
                item.get("id").and_then(as_id),
                item.get("attributes")
                    .and_then(|a| a.get("configuration-id"))
                    .and_then(as_id),
                item.pointer("/relationships/configuration/data/id")
                    .and_then(as_id),
            );
        }
        index
    }

    /// Adds one interface of `included` with its MAC, its own id and the configuration it
    /// names by attribute and by relationship. An interface without a usable MAC adds
    /// nothing; it is not an error.
    pub fn add(
        &mut self,
        mac: &'a str,
        interface_id: Option<String>,
        from_attribute: Option<String>,
        from_relationship: Option<String>,
    ) {
        if mac.trim().is_empty() {
            return;
        }
        if let Some(interface_id) = interface_id {
            self.by_interface.entry(interface_id).or_insert(mac);
        }
        let repeated = from_relationship.is_some() && from_relationship == from_attribute;
        let owners = from_attribute
            .into_iter()
            .chain(from_relationship.filter(|_| !repeated));
        for owner in owners {
            self.by_configuration.entry(owner).or_default().push(mac);
        }
    }

    /// Every raw MAC of a configuration: its own attribute first, then the interfaces that
    /// name it, then the interfaces it lists (`listed`: their ids, in order). Identical
    /// strings are listed once (the primary interface mirrors `mac-address`); differently
    /// written forms of one address are left for the matcher's normalization.
    pub fn macs_for(
        &self,
        config_id: &str,
        own: Option<&str>,
        listed: impl IntoIterator<Item = String>,
    ) -> Vec<String> {
        let mut macs: Vec<String> = Vec::new();
        let mut add = |mac: &str| {
            // A configuration has a few MACs at most: a scan costs less than a set.
            if !mac.trim().is_empty() && !macs.iter().any(|seen| seen == mac) {
                macs.push(mac.to_string());
            }
        };
        if let Some(own) = own {
            add(own);
        }
        for mac in self.by_configuration.get(config_id).into_iter().flatten() {
            add(mac);
        }
        for id in listed {
            if let Some(mac) = self.by_interface.get(&id) {
                add(mac);
            }
        }
        macs
    }
}

/// Whether text given as an id is blank (empty or white space only): no id at all.
pub fn is_blank_id(text: &str) -> bool {
    text.trim().is_empty()
}

/// Whether an `included` entry's `type` is an interface's.
pub fn is_interface_type(kind: &str) -> bool {
    INTERFACE_TYPES.contains(&kind)
}

/// The interface ids a configuration record lists under its relationships, in order.
fn listed_interfaces(record: &Value) -> impl Iterator<Item = String> + '_ {
    INTERFACE_TYPES.into_iter().flat_map(move |key| {
        record
            .get("relationships")
            .and_then(|r| r.get(key))
            .and_then(|r| r.get("data"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|reference| reference.get("id").and_then(as_id))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn orgs(doc: Value) -> OrganizationPage {
        match parse_organization_page(&doc, 1) {
            Ok(page) => page,
            Err(e) => panic!("page should read: {e:?}"),
        }
    }

    fn configs(doc: Value) -> ConfigurationPage {
        match parse_configuration_page(&doc, 1) {
            Ok(page) => page,
            Err(e) => panic!("page should read: {e:?}"),
        }
    }

    fn info(meta: Value) -> PageInfo {
        match parse_page_info(&json!({"data": [], "meta": meta}), 1) {
            Ok(info) => info,
            Err(e) => panic!("meta should read: {e:?}"),
        }
    }

    #[test]
    fn organizations_are_read_with_string_or_number_ids() {
        let page = orgs(json!({
            "data": [
                {"id": "12", "type": "organizations", "attributes": {
                    "name": "Acme, Inc.", "short-name": "ACME",
                    "organization-type-name": "Customer", "organization-status-name": "Active"}},
                {"id": 13, "type": "organizations", "attributes": {
                    "name": "Tyrell", "short-name": null}},
            ],
            "meta": {"current-page": 1, "next-page": null, "total-pages": 1, "total-count": 2}
        }));
        assert_eq!(page.unreadable, vec![]);
        assert_eq!(
            page.records,
            vec![
                Organization {
                    id: "12".into(),
                    name: "Acme, Inc.".into(),
                    short_name: Some("ACME".into()),
                    type_name: Some("Customer".into()),
                    status_name: Some("Active".into()),
                },
                Organization {
                    id: "13".into(),
                    name: "Tyrell".into(),
                    short_name: None,
                    type_name: None,
                    status_name: None,
                },
            ]
        );
        assert_eq!(
            page.info,
            PageInfo {
                next_page: None,
                total_pages: Some(1),
                total_count: Some(2)
            }
        );
    }

    #[test]
    fn meta_numbers_may_be_numeric_text() {
        let read = info(
            json!({"current-page": "2", "next-page": "3", "total-pages": "5",
            "total-count": " 4321 "}),
        );
        assert_eq!(
            read,
            PageInfo {
                next_page: Some(3),
                total_pages: Some(5),
                total_count: Some(4321)
            }
        );
        assert_eq!(info(json!({"next-page": 2.0})).next_page, Some(2));
    }

    #[test]
    fn missing_meta_means_unknown_totals_and_no_next_page() {
        assert_eq!(
            info(json!({})),
            PageInfo {
                next_page: None,
                total_pages: None,
                total_count: None
            }
        );
        let no_meta = parse_page_info(&json!({"data": []}), 4);
        assert_eq!(no_meta.ok().and_then(|i| i.next_page), None);
    }

    #[test]
    fn a_missing_next_page_is_derived_from_links_or_total_pages() {
        let doc = json!({"data": [], "meta": {"current-page": 4},
            "links": {"next": "https://api.itglue.com/organizations?page[number]=5"}});
        assert_eq!(
            parse_page_info(&doc, 4).ok().and_then(|i| i.next_page),
            Some(5)
        );
        // Without current-page, the requested page stands in for it.
        let doc = json!({"data": [], "links": {"next": "…"}});
        assert_eq!(
            parse_page_info(&doc, 7).ok().and_then(|i| i.next_page),
            Some(8)
        );
        let doc = json!({"data": [], "links": {"next": null}});
        assert_eq!(
            parse_page_info(&doc, 7).ok().and_then(|i| i.next_page),
            None
        );
        assert_eq!(
            info(json!({"current-page": 2, "total-pages": 3})).next_page,
            Some(3)
        );
        assert_eq!(
            info(json!({"current-page": 3, "total-pages": 3})).next_page,
            None
        );
        // An explicit null wins over a stray link: IT Glue says it is the last page.
        let doc = json!({"data": [], "meta": {"next-page": null}, "links": {"next": "x"}});
        assert_eq!(
            parse_page_info(&doc, 1).ok().and_then(|i| i.next_page),
            None
        );
    }

    #[test]
    fn a_next_page_that_does_not_move_forward_is_refused() {
        for meta in [
            json!({"current-page": 3, "next-page": 3}),
            json!({"current-page": 3, "next-page": 1}),
            json!({"next-page": 0}),
        ] {
            let doc = json!({"data": [], "meta": meta});
            assert!(
                matches!(parse_page_info(&doc, 1), Err(Error::BadResponse(_))),
                "{doc}"
            );
        }
    }

    #[test]
    fn records_without_a_usable_id_are_unreadable() {
        let page = orgs(json!({"data": [
            {"attributes": {"name": "No id"}},
            {"id": null, "attributes": {"name": "Null id"}},
            {"id": "  ", "attributes": {"name": "Blank id"}},
            {"id": 1.5, "attributes": {"name": "Fractional id"}},
            {"id": {"n": 1}, "attributes": {"name": "Object id"}},
            "not a record",
            {"id": "9", "attributes": {"name": "Fine"}},
        ]}));
        assert_eq!(page.records.len(), 1);
        assert_eq!(page.records[0].id, "9");
        let ids: Vec<Option<&str>> = page.unreadable.iter().map(|u| u.id.as_deref()).collect();
        assert_eq!(
            ids,
            vec![None, None, None, Some("1.5"), Some("{\"n\":1}"), None]
        );
        assert!(page.unreadable.iter().all(|u| !u.detail.is_empty()));
        assert!(
            page.unreadable[5]
                .detail
                .contains("text instead of an object")
        );
    }

    #[test]
    fn records_with_wrong_attribute_types_are_unreadable() {
        let page = orgs(json!({"data": [
            {"id": "1", "attributes": {"name": 42}},
            {"id": "2", "attributes": {"name": "Ok", "short-name": true}},
            {"id": "3"},
            {"id": "4", "attributes": ["name"]},
            {"id": "5", "attributes": {"name": null}},
        ]}));
        let unreadable: Vec<(&str, &str)> = page
            .unreadable
            .iter()
            .map(|u| (u.id.as_deref().unwrap_or("-"), u.detail.as_str()))
            .collect();
        assert_eq!(unreadable.len(), 4, "{unreadable:?}");
        assert!(
            unreadable[0].1.contains("`name` is a number"),
            "{unreadable:?}"
        );
        assert!(
            unreadable[1].1.contains("`short-name` is a boolean"),
            "{unreadable:?}"
        );
        assert_eq!(
            unreadable.iter().map(|u| u.0).collect::<Vec<_>>(),
            vec!["1", "2", "3", "4"]
        );
        // A null name is no name: readable, and the matcher reports it as empty.
        assert_eq!(page.records.len(), 1);
        assert_eq!(page.records[0].name, "");
    }

    #[test]
    fn a_page_without_a_data_list_cannot_be_read() {
        for doc in [
            json!([]),
            json!("data"),
            json!({"data": null}),
            json!({"data": {"id": "1"}}),
            json!({"meta": {}}),
        ] {
            assert!(
                matches!(parse_organization_page(&doc, 1), Err(Error::BadResponse(_))),
                "{doc}"
            );
        }
        let errors = json!({"errors": [{"status": 500, "title": "Internal Server Error"}]});
        assert!(matches!(
            parse_configuration_page(&errors, 1),
            Err(Error::BadResponse(d)) if d.contains("Internal Server Error")
        ));
    }

    #[test]
    fn error_documents_of_both_shapes_are_summarized() {
        assert_eq!(
            error_summary(&json!({"errors": [{"status": 401, "title": "Unauthorized",
                "detail": "Unauthorized resource access"}]})),
            Some("Unauthorized: Unauthorized resource access".to_string())
        );
        assert_eq!(
            error_summary(&json!({"message": "Forbidden"})),
            Some("Forbidden".to_string())
        );
        assert_eq!(
            error_summary(&json!({"errors": ["bad key", {"title": "Nope", "detail": "Nope"}]})),
            Some("bad key; Nope".to_string())
        );
        assert_eq!(error_summary(&json!({"errors": []})), None);
        assert_eq!(error_summary(&json!(["x"])), None);
    }

    fn configuration(id: &str, attributes: Value) -> Value {
        json!({"id": id, "type": "configurations", "attributes": attributes})
    }

    #[test]
    fn configurations_are_read_with_every_field() {
        let page = configs(json!({
            "data": [configuration("100", json!({
                "organization-id": 12, "name": "DC01", "hostname": "ty-dc01.corp.local",
                "primary-ip": "10.0.0.5", "mac-address": "00:11:22:33:44:55",
                "serial-number": "ABC1234", "configuration-type-name": "Managed Server",
                "archived": true}))],
            "meta": {"current-page": 1, "next-page": 2, "total-pages": 2, "total-count": 3}
        }));
        assert_eq!(page.unreadable, vec![]);
        assert_eq!(
            page.records,
            vec![Configuration {
                id: "100".into(),
                organization_id: "12".into(),
                name: "DC01".into(),
                hostname: Some("ty-dc01.corp.local".into()),
                primary_ip: Some("10.0.0.5".into()),
                serial_number: Some("ABC1234".into()),
                mac_addresses: vec!["00:11:22:33:44:55".into()],
                type_name: Some("Managed Server".into()),
                archived: true,
            }]
        );
        assert_eq!(page.info.next_page, Some(2));
    }

    #[test]
    fn configuration_fields_are_checked() {
        let page = configs(json!({"data": [
            configuration("1", json!({"organization-id": "7", "name": "no archived flag"})),
            configuration("2", json!({"name": "no organization"})),
            configuration("3", json!({"organization-id": "7", "archived": "yes"})),
            configuration("4", json!({"organization-id": "7", "serial-number": 12345})),
            configuration("5", json!({"organization-id": [7]})),
            configuration("6", json!({"organization-id": "7", "mac-address": {"a": 1}})),
        ]}));
        assert_eq!(page.records.len(), 1);
        assert!(!page.records[0].archived);
        assert_eq!(page.records[0].organization_id, "7");
        let details: Vec<&str> = page.unreadable.iter().map(|u| u.detail.as_str()).collect();
        assert_eq!(details.len(), 5);
        assert!(details[0].contains("organization-id"), "{details:?}");
        assert!(details[1].contains("archived"), "{details:?}");
        assert!(details[2].contains("serial-number"), "{details:?}");
        assert!(details[3].contains("organization-id"), "{details:?}");
        assert!(details[4].contains("mac-address"), "{details:?}");
    }

    #[test]
    fn interface_macs_come_from_included_by_every_kind_of_tie() {
        let page = configs(json!({
            "data": [
                configuration("1", json!({"organization-id": "7",
                    "mac-address": "AA:AA:AA:AA:AA:01"})),
                {"id": "2", "type": "configurations",
                 "attributes": {"organization-id": "7", "mac-address": null},
                 "relationships": {"configuration-interfaces": {"data": [
                     {"type": "configuration-interfaces", "id": "903"}]}}},
                configuration("3", json!({"organization-id": "7"})),
            ],
            "included": [
                {"type": "configuration-interfaces", "id": "900",
                 "attributes": {"configuration-id": 1, "mac-address": "AA:AA:AA:AA:AA:01"}},
                {"type": "configuration-interfaces", "id": "901",
                 "attributes": {"configuration-id": "1", "mac-address": "aa-aa-aa-aa-aa-02"}},
                {"type": "configuration_interfaces", "id": "902",
                 "attributes": {"mac-address": "AA:AA:AA:AA:AA:03"},
                 "relationships": {"configuration": {"data": {"type": "configurations", "id": "1"}}}},
                {"type": "configuration-interfaces", "id": 903,
                 "attributes": {"mac-address": "BB:BB:BB:BB:BB:01"}},
                {"type": "configuration-interfaces", "id": "904",
                 "attributes": {"configuration-id": "1", "mac-address": null}},
                {"type": "locations", "id": "905",
                 "attributes": {"configuration-id": "3", "mac-address": "CC:CC:CC:CC:CC:01"}},
            ]
        }));
        assert_eq!(page.unreadable, vec![]);
        let macs: Vec<Vec<String>> = page
            .records
            .iter()
            .map(|r| r.mac_addresses.clone())
            .collect();
        assert_eq!(
            macs,
            vec![
                vec![
                    "AA:AA:AA:AA:AA:01".to_string(),
                    "aa-aa-aa-aa-aa-02".to_string(),
                    "AA:AA:AA:AA:AA:03".to_string(),
                ],
                vec!["BB:BB:BB:BB:BB:01".to_string()],
                vec![],
            ]
        );
    }
}

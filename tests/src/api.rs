//! The IT Glue API itself: regions, authentication, routing, paging, filters, sorting and the
//! JSON:API documents for organizations and configurations.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::{Value, json};

use crate::data::{Config, Dataset, Org, updated_at};
use crate::http::{Request, Response, parse_query, percent_decode};

/// Region path prefixes; the root serves the first.
pub(crate) const REGIONS: [&str; 3] = ["us", "eu", "au"];
/// Default `page[size]`.
pub(crate) const DEFAULT_PAGE_SIZE: u64 = 50;
/// Largest `page[size]`; larger values are clamped.
pub(crate) const MAX_PAGE_SIZE: u64 = 1000;

/// The password every fake secret carries, so a test can search output and logs for it.
pub const FAKE_PASSWORD: &str = "sim-secret-must-never-be-read";

/// How the simulator answers a request without a valid key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthStyle {
    /// `401` with `{"errors":[{"status":"401","title":"Unauthorized",...}]}`.
    #[default]
    JsonApi401,
    /// `403` with `{"message":"Forbidden"}`, not JSON:API shaped.
    PlainForbidden,
}

/// A data set sorted and indexed for serving.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    data: Dataset,
    org_names: HashMap<u64, String>,
}

impl Prepared {
    pub fn new(mut data: Dataset) -> Prepared {
        data.organizations.sort_by_key(|o| o.id);
        data.configurations.sort_by_key(|c| c.id);
        let org_names = data
            .organizations
            .iter()
            .map(|o| (o.id, o.name.clone()))
            .collect();
        Prepared { data, org_names }
    }
}

/// Splits `/eu/organizations` into `("eu", "/organizations")`; paths without a region prefix
/// belong to the first region.
pub(crate) fn split_region(path: &str) -> (&'static str, &str) {
    for region in REGIONS {
        if let Some(rest) = path.strip_prefix('/').and_then(|p| p.strip_prefix(region))
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return (region, rest);
        }
    }
    (REGIONS[0], path)
}

/// The decoded `page[number]` of a query, 1 when absent or unreadable (for fault rules).
pub(crate) fn page_number_of(query: &str) -> u64 {
    parse_query(query)
        .into_iter()
        .rev()
        .find(|(k, _)| k == "page[number]")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(1)
}

/// What a request is answered from.
pub(crate) struct Ctx<'a> {
    pub keys: &'a BTreeMap<String, String>,
    pub auth: AuthStyle,
    pub data: &'a Prepared,
    /// `http://127.0.0.1:PORT`, for `links`.
    pub base_url: &'a str,
    /// Added to `total-count` (a fault).
    pub shift_total: i64,
}

/// Answers one request.
pub(crate) fn respond(req: &Request, ctx: &Ctx<'_>) -> Response {
    let (region, rest) = split_region(&req.path);
    let mut keys = req.header_values("x-api-key");
    let authorized = match (ctx.keys.get(region), keys.next(), keys.next()) {
        (Some(expected), Some(given), None) => !expected.is_empty() && given == expected,
        _ => false,
    };
    if !authorized {
        return match ctx.auth {
            AuthStyle::JsonApi401 => {
                Response::error(401, "Unauthorized", "Unauthorized resource access")
            }
            AuthStyle::PlainForbidden => Response {
                status: 403,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: br#"{"message":"Forbidden"}"#.to_vec(),
            },
        };
    }

    let segments: Vec<&str> = rest.strip_prefix('/').unwrap_or(rest).split('/').collect();
    let known = matches!(
        segments.as_slice(),
        ["organizations" | "configurations" | "passwords"]
            | ["organizations" | "configurations", _]
            | ["organizations", _, "relationships", "passwords"]
    );
    if !known {
        return Response::error(404, "Not Found", "The requested resource does not exist");
    }
    if req.method != "GET" {
        let mut resp = Response::error(
            405,
            "Method Not Allowed",
            &format!("{} is not allowed on this resource", req.method),
        );
        resp.headers.push(("Allow".into(), "GET".into()));
        return resp;
    }

    let query = Query::parse(&req.query);
    let self_url = format!("{}{}", ctx.base_url, req.path);
    let result = match segments.as_slice() {
        ["organizations"] => index_organizations(&query, ctx, &self_url, &req.query),
        ["configurations"] => index_configurations(&query, ctx, &self_url, &req.query),
        ["organizations", id] => show_organization(id, ctx),
        ["configurations", id] => show_configuration(id, &query, ctx),
        ["passwords"] | ["organizations", _, "relationships", "passwords"] => Ok(passwords()),
        _ => Err(Response::error(
            404,
            "Not Found",
            "The requested resource does not exist",
        )),
    };
    result.unwrap_or_else(|resp| resp)
}

/// The query parameters the simulator understands, decoded (last occurrence wins).
struct Query {
    params: BTreeMap<String, String>,
}

impl Query {
    fn parse(raw: &str) -> Query {
        Query {
            params: parse_query(raw).into_iter().collect(),
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    fn includes_interfaces(&self) -> bool {
        self.get("include")
            .is_some_and(|v| v.split(',').any(|i| i.trim() == "configuration_interfaces"))
    }
}

fn bad_request(detail: &str) -> Response {
    Response::error(400, "Bad Request", detail)
}

/// Parses `page[size]` / `page[number]`: digits only; sizes above the maximum clamp.
fn paging(query: &Query) -> Result<(u64, u64), Response> {
    let size = match query.get("page[size]") {
        None => DEFAULT_PAGE_SIZE,
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
            v.parse::<u64>().unwrap_or(u64::MAX).min(MAX_PAGE_SIZE)
        }
        Some(_) => return Err(bad_request("page[size] must be a positive integer")),
    };
    if size == 0 {
        return Err(bad_request("page[size] must be a positive integer"));
    }
    let number = match query.get("page[number]") {
        None => 1,
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n >= 1 => n,
            _ => return Err(bad_request("page[number] must be a positive integer")),
        },
    };
    Ok((size, number))
}

/// Splits a filter value on commas not escaped as `\,`, unescaping them.
fn filter_values(value: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&',') => {
                chars.next();
                if let Some(last) = out.last_mut() {
                    last.push(',');
                }
            }
            ',' => out.push(String::new()),
            c => {
                if let Some(last) = out.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    out
}

fn id_list(name: &str, value: &str) -> Result<Vec<u64>, Response> {
    filter_values(value)
        .iter()
        .map(|v| v.trim().parse::<u64>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad_request(&format!("filter[{name}] must be a list of ids")))
}

/// The filters one index request applies.
#[derive(Default)]
struct Filters {
    ids: Option<Vec<u64>>,
    organization_ids: Option<Vec<u64>>,
    archived: Option<bool>,
    name: Option<String>,
    /// Echoed in `meta.filters`.
    echo: serde_json::Map<String, Value>,
}

impl Filters {
    fn parse(query: &Query, configurations: bool) -> Result<Filters, Response> {
        let mut f = Filters::default();
        if let Some(v) = query.get("filter[id]") {
            f.ids = Some(id_list("id", v)?);
            f.echo.insert("id".into(), json!(v));
        }
        if let Some(v) = query.get("filter[name]") {
            f.name = Some(filter_values(v).join(","));
            f.echo.insert("name".into(), json!(v));
        }
        if configurations {
            if let Some(v) = query.get("filter[organization_id]") {
                f.organization_ids = Some(id_list("organization_id", v)?);
                f.echo.insert("organization_id".into(), json!(v));
            }
            if let Some(v) = query.get("filter[archived]") {
                f.archived = Some(match v {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(bad_request("filter[archived] must be true, false, 1 or 0")),
                });
                f.echo.insert("archived".into(), json!(v));
            }
        }
        Ok(f)
    }

    /// Whether no filter was asked for.
    fn is_empty(&self) -> bool {
        self.ids.is_none()
            && self.organization_ids.is_none()
            && self.archived.is_none()
            && self.name.is_none()
    }

    /// Whether a record with these readable fields passes; `None` means the field could not be
    /// read (raw records), which never excludes a record.
    fn keeps(
        &self,
        id: Option<u64>,
        organization_id: Option<u64>,
        archived: Option<bool>,
        name: Option<&str>,
    ) -> bool {
        let pass = |wanted: &Option<Vec<u64>>, got: Option<u64>| match (wanted, got) {
            (Some(list), Some(v)) => list.contains(&v),
            _ => true,
        };
        pass(&self.ids, id)
            && pass(&self.organization_ids, organization_id)
            && match (self.archived, archived) {
                (Some(want), Some(got)) => want == got,
                _ => true,
            }
            && match (&self.name, name) {
                (Some(want), Some(got)) => want == got,
                _ => true,
            }
    }
}

/// Numeric value of a raw record field given as a number or a numeric string.
fn raw_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn raw_keeps(f: &Filters, raw: &Value) -> bool {
    let attrs = &raw["attributes"];
    f.keeps(
        raw_u64(&raw["id"]),
        raw_u64(&attrs["organization-id"]),
        attrs["archived"].as_bool(),
        attrs["name"].as_str(),
    )
}

/// Sort order of an index.
#[derive(Clone, Copy, PartialEq)]
enum Sort {
    Id,
    IdDesc,
    Name,
    NameDesc,
}

fn sort_of(query: &Query) -> Result<Sort, Response> {
    match query.get("sort") {
        None | Some("id") | Some("updated_at") | Some("created_at") => Ok(Sort::Id),
        Some("-id") | Some("-updated_at") | Some("-created_at") => Ok(Sort::IdDesc),
        Some("name") => Ok(Sort::Name),
        Some("-name") => Ok(Sort::NameDesc),
        Some(other) => Err(bad_request(&format!("unsupported sort: {other}"))),
    }
}

/// The typed records an index lists, in the order it lists them.
enum Listed<'a, T> {
    /// All of them, in id order: no filter and the id sort. Every page of a large data set
    /// would otherwise cost a pass over the whole set.
    All(&'a [T]),
    /// Those the filters keep, sorted.
    Kept(Vec<&'a T>),
}

impl<'a, T> Listed<'a, T> {
    fn new(
        all: &'a [T],
        filters: &Filters,
        sort: Sort,
        keeps: impl Fn(&T) -> bool,
        name: impl Fn(&T) -> &str,
    ) -> Self {
        if filters.is_empty() && matches!(sort, Sort::Id) {
            return Listed::All(all);
        }
        let mut kept: Vec<&T> = all.iter().filter(|t| keeps(t)).collect();
        sort_records(&mut kept, sort, name);
        Listed::Kept(kept)
    }

    fn len(&self) -> usize {
        match self {
            Listed::All(all) => all.len(),
            Listed::Kept(kept) => kept.len(),
        }
    }

    fn get(&self, i: usize) -> Option<&'a T> {
        match self {
            Listed::All(all) => all.get(i),
            Listed::Kept(kept) => kept.get(i).copied(),
        }
    }
}

fn sort_records<T>(records: &mut [&T], sort: Sort, name: impl Fn(&T) -> &str) {
    // Records arrive in id order; the sorts are stable so ties stay in id order.
    match sort {
        Sort::Id => {}
        Sort::IdDesc => records.reverse(),
        Sort::Name => records.sort_by(|a, b| name(a).cmp(name(b))),
        Sort::NameDesc => records.sort_by(|a, b| name(b).cmp(name(a))),
    }
}

/// The page `number` of `count` records of `size`, as an index range.
fn page_range(count: usize, size: u64, number: u64) -> std::ops::Range<usize> {
    let start = (number - 1).saturating_mul(size).min(count as u64) as usize;
    let end = (start as u64).saturating_add(size).min(count as u64) as usize;
    start..end
}

/// `meta` and `links` of an index page.
fn meta_and_links(
    count: usize,
    size: u64,
    number: u64,
    filters: &Filters,
    ctx: &Ctx<'_>,
    self_url: &str,
    raw_query: &str,
) -> (Value, Value) {
    let count = count as u64;
    let total_pages = count.div_ceil(size);
    let next = (number < total_pages).then_some(number + 1);
    let prev = (number > 1).then(|| number - 1);
    let reported = if ctx.shift_total >= 0 {
        count.saturating_add(ctx.shift_total.unsigned_abs())
    } else {
        count.saturating_sub(ctx.shift_total.unsigned_abs())
    };
    let meta = json!({
        "current-page": number,
        "next-page": next,
        "prev-page": prev,
        "total-pages": total_pages,
        "total-count": reported,
        "filters": Value::Object(filters.echo.clone()),
    });
    // Keep every parameter but paging, in the order and encoding the client used.
    let kept: Vec<&str> = raw_query
        .split('&')
        .filter(|p| {
            let key = percent_decode(p.split('=').next().unwrap_or(""));
            !p.is_empty() && !key.starts_with("page[")
        })
        .collect();
    let url = |page: u64| {
        let mut q = kept.join("&");
        if !q.is_empty() {
            q.push('&');
        }
        format!("{self_url}?{q}page%5Bnumber%5D={page}&page%5Bsize%5D={size}")
    };
    let mut links = serde_json::Map::new();
    links.insert("self".into(), json!(url(number)));
    if let Some(n) = next {
        links.insert("next".into(), json!(url(n)));
    }
    links.insert("last".into(), json!(url(total_pages.max(1))));
    (meta, Value::Object(links))
}

// Documents are serialized straight from borrowed structs: a 1000-record page is rendered
// several times faster than through `serde_json::Value`, which matters for benchmarks.

/// A JSON:API resource object.
#[derive(Serialize)]
struct Resource<A> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    attributes: A,
    #[serde(skip_serializing_if = "Option::is_none")]
    relationships: Option<Relationships>,
}

/// A resource identifier (`{"id","type"}`).
#[derive(Serialize)]
struct Identifier {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct Relationships {
    #[serde(rename = "configuration-interfaces")]
    interfaces: RelationshipData,
}

#[derive(Serialize)]
struct RelationshipData {
    data: Vec<Identifier>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct OrgAttributes<'a> {
    name: &'a str,
    short_name: &'a str,
    organization_type_name: &'a str,
    organization_status_name: &'a str,
    primary: bool,
    parent_id: Option<u64>,
    updated_at: String,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ConfigAttributes<'a> {
    organization_id: u64,
    organization_name: &'a str,
    name: &'a str,
    hostname: Option<&'a str>,
    primary_ip: Option<&'a str>,
    mac_address: Option<&'a str>,
    serial_number: Option<&'a str>,
    asset_tag: Option<&'a str>,
    configuration_type_name: &'a str,
    configuration_status_name: &'a str,
    archived: bool,
    updated_at: String,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct InterfaceAttributes<'a> {
    configuration_id: u64,
    name: String,
    ip_address: Option<&'a str>,
    mac_address: Option<&'a str>,
    primary: bool,
}

/// A served record: typed, or raw JSON given verbatim.
#[derive(Serialize)]
#[serde(untagged)]
enum Item<'a, A> {
    Typed(Resource<A>),
    Raw(&'a Value),
}

/// A JSON:API document.
#[derive(Serialize)]
struct Document<D, I> {
    data: D,
    #[serde(skip_serializing_if = "Option::is_none")]
    included: Option<Vec<I>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    links: Option<Value>,
}

fn org_resource(o: &Org) -> Resource<OrgAttributes<'_>> {
    Resource {
        id: o.id.to_string(),
        kind: "organizations",
        attributes: OrgAttributes {
            name: &o.name,
            short_name: &o.short_name,
            organization_type_name: &o.type_name,
            organization_status_name: &o.status_name,
            primary: o.primary,
            parent_id: o.parent_id,
            updated_at: updated_at(o.id),
        },
        relationships: None,
    }
}

fn config_resource<'a>(
    c: &'a Config,
    org_names: &'a HashMap<u64, String>,
    with_interfaces: bool,
) -> Resource<ConfigAttributes<'a>> {
    let relationships = with_interfaces.then(|| Relationships {
        interfaces: RelationshipData {
            data: c
                .interfaces
                .iter()
                .map(|i| Identifier {
                    id: i.id.to_string(),
                    kind: "configuration-interfaces",
                })
                .collect(),
        },
    });
    Resource {
        id: c.id.to_string(),
        kind: "configurations",
        attributes: ConfigAttributes {
            organization_id: c.organization_id,
            organization_name: org_names.get(&c.organization_id).map_or("", String::as_str),
            name: &c.name,
            hostname: c.hostname.as_deref(),
            primary_ip: c.primary_ip.as_deref(),
            mac_address: c.mac_address.as_deref(),
            serial_number: c.serial_number.as_deref(),
            asset_tag: c.asset_tag.as_deref(),
            configuration_type_name: &c.type_name,
            configuration_status_name: &c.status_name,
            archived: c.archived,
            updated_at: updated_at(c.id),
        },
        relationships,
    }
}

fn interface_resources(c: &Config) -> impl Iterator<Item = Resource<InterfaceAttributes<'_>>> {
    c.interfaces.iter().enumerate().map(move |(n, i)| Resource {
        id: i.id.to_string(),
        kind: "configuration-interfaces",
        attributes: InterfaceAttributes {
            configuration_id: c.id,
            name: if i.primary {
                "Ethernet".to_string()
            } else {
                format!("Ethernet {}", n + 1)
            },
            ip_address: i.ip_address.as_deref(),
            mac_address: i.mac_address.as_deref(),
            primary: i.primary,
        },
        relationships: None,
    })
}

/// The `included` type of documents that never include anything.
type NoIncluded = Resource<InterfaceAttributes<'static>>;

fn index_organizations(
    query: &Query,
    ctx: &Ctx<'_>,
    self_url: &str,
    raw_query: &str,
) -> Result<Response, Response> {
    let (size, number) = paging(query)?;
    let sort = sort_of(query)?;
    let filters = Filters::parse(query, false)?;
    let ds = &ctx.data.data;
    let typed = Listed::new(
        &ds.organizations,
        &filters,
        sort,
        |o| filters.keeps(Some(o.id), None, None, Some(&o.name)),
        |o| &o.name,
    );
    let raw: Vec<&Value> = ds
        .raw_organizations
        .iter()
        .filter(|r| raw_keeps(&filters, r))
        .collect();
    let count = typed.len() + raw.len();
    let data: Vec<Item<'_, _>> = page_range(count, size, number)
        .map(|i| match typed.get(i) {
            Some(o) => Item::Typed(org_resource(o)),
            None => Item::Raw(raw[i - typed.len()]),
        })
        .collect();
    let (meta, links) = meta_and_links(count, size, number, &filters, ctx, self_url, raw_query);
    Ok(Response::json(
        200,
        &Document::<_, NoIncluded> {
            data,
            included: None,
            meta: Some(meta),
            links: Some(links),
        },
    ))
}

fn index_configurations(
    query: &Query,
    ctx: &Ctx<'_>,
    self_url: &str,
    raw_query: &str,
) -> Result<Response, Response> {
    let (size, number) = paging(query)?;
    let sort = sort_of(query)?;
    let filters = Filters::parse(query, true)?;
    let with_interfaces = query.includes_interfaces();
    let ds = &ctx.data.data;
    let typed = Listed::new(
        &ds.configurations,
        &filters,
        sort,
        |c| {
            filters.keeps(
                Some(c.id),
                Some(c.organization_id),
                Some(c.archived),
                Some(&c.name),
            )
        },
        |c| &c.name,
    );
    let raw: Vec<&Value> = ds
        .raw_configurations
        .iter()
        .filter(|r| raw_keeps(&filters, r))
        .collect();
    let count = typed.len() + raw.len();
    let range = page_range(count, size, number);
    let mut data = Vec::with_capacity(range.len());
    let mut included = Vec::new();
    for i in range {
        match typed.get(i) {
            Some(c) => {
                data.push(Item::Typed(config_resource(
                    c,
                    &ctx.data.org_names,
                    with_interfaces,
                )));
                if with_interfaces {
                    included.extend(interface_resources(c));
                }
            }
            None => data.push(Item::Raw(raw[i - typed.len()])),
        }
    }
    let (meta, links) = meta_and_links(count, size, number, &filters, ctx, self_url, raw_query);
    Ok(Response::json(
        200,
        &Document {
            data,
            included: with_interfaces.then_some(included),
            meta: Some(meta),
            links: Some(links),
        },
    ))
}

fn not_found() -> Response {
    Response::error(404, "Record Not Found", "The record could not be found")
}

fn raw_with_id<'a>(raw: &'a [Value], id: &str) -> Option<&'a Value> {
    raw.iter().find(|r| match &r["id"] {
        Value::String(s) => s == id,
        Value::Number(n) => n.to_string() == id,
        _ => false,
    })
}

fn show_organization(id: &str, ctx: &Ctx<'_>) -> Result<Response, Response> {
    let ds = &ctx.data.data;
    let typed = id
        .parse::<u64>()
        .ok()
        .and_then(|n| ds.organizations.iter().find(|o| o.id == n));
    let data = match typed {
        Some(o) => Item::Typed(org_resource(o)),
        None => Item::Raw(raw_with_id(&ds.raw_organizations, id).ok_or_else(not_found)?),
    };
    Ok(Response::json(
        200,
        &Document::<_, NoIncluded> {
            data,
            included: None,
            meta: None,
            links: None,
        },
    ))
}

fn show_configuration(id: &str, query: &Query, ctx: &Ctx<'_>) -> Result<Response, Response> {
    let ds = &ctx.data.data;
    let with_interfaces = query.includes_interfaces();
    let typed = id
        .parse::<u64>()
        .ok()
        .and_then(|n| ds.configurations.iter().find(|c| c.id == n));
    let (data, included) = match typed {
        Some(c) => (
            Item::Typed(config_resource(c, &ctx.data.org_names, with_interfaces)),
            with_interfaces.then(|| interface_resources(c).collect()),
        ),
        None => (
            Item::Raw(raw_with_id(&ds.raw_configurations, id).ok_or_else(not_found)?),
            None,
        ),
    };
    Ok(Response::json(
        200,
        &Document {
            data,
            included,
            meta: None,
            links: None,
        },
    ))
}

/// Fake secrets: a host that lets a request reach them has failed.
fn passwords() -> Response {
    let data: Vec<Value> = [
        ("9000001", "Domain administrator"),
        ("9000002", "Firewall admin"),
    ]
    .iter()
    .map(|(id, name)| {
        json!({
            "id": id,
            "type": "passwords",
            "attributes": {"name": name, "username": "administrator", "password": FAKE_PASSWORD},
        })
    })
    .collect();
    Response::json(
        200,
        &json!({"data": data, "meta": {"current-page": 1, "next-page": null, "prev-page": null,
            "total-pages": 1, "total-count": 2, "filters": {}}, "links": {}}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_prefixes_split() {
        assert_eq!(split_region("/eu/organizations"), ("eu", "/organizations"));
        assert_eq!(split_region("/au"), ("au", ""));
        assert_eq!(split_region("/organizations"), ("us", "/organizations"));
        assert_eq!(split_region("/europe/x"), ("us", "/europe/x"));
    }

    #[test]
    fn filter_values_honour_escaped_commas() {
        assert_eq!(filter_values("1,2"), vec!["1", "2"]);
        assert_eq!(filter_values(r"Acme\, Inc.,B"), vec!["Acme, Inc.", "B"]);
    }

    #[test]
    fn page_ranges() {
        assert_eq!(page_range(120, 50, 1), 0..50);
        assert_eq!(page_range(120, 50, 3), 100..120);
        assert_eq!(page_range(120, 50, 4), 120..120);
        assert_eq!(page_range(120, 50, u64::MAX), 120..120);
    }

    #[test]
    fn page_number_of_reads_encoded_keys() {
        assert_eq!(page_number_of("page%5Bnumber%5D=3&sort=id"), 3);
        assert_eq!(page_number_of("sort=id"), 1);
    }
}

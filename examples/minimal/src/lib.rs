//! Example Docs: a minimal `scopable:integration` connector.

mod bindings {
    // The generated glue passes flattened records as many arguments.
    #![allow(clippy::too_many_arguments)]
    wit_bindgen::generate!({ path: "wit", world: "integration" });
}

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use bindings::Guest;
use bindings::scopable::integration::log::{self, Level};
use bindings::scopable::integration::types::{
    Configuration, ConfigurationMatch, ConfigurationPage, Endpoint, Error, Evidence, Link,
    MatchInput, Organization, OrganizationMatch, OrganizationPage, Outcome, PageInfo, Pair,
    Placement, RateLimited, Reason, Unplaced, UnreadableRecord, Verified,
};
use serde_json::Value;
use waki::ErrorCode;

struct Connector;

impl Guest for Connector {
    fn test(endpoint: Endpoint) -> Result<Verified, Error> {
        let doc = get_json(&format!("{}/companies?page=1&per_page=1", base(&endpoint)))?;
        // Read the page, not just the status: a sign-in page can come with 200.
        let (_, _, info) = read_page(&doc, 1, read_organization)?;
        Ok(Verified {
            detail: match info.total_count {
                Some(n) => format!("Verified: {n} companies visible"),
                None => "Verified: the key works".to_string(),
            },
            total_organizations: info.total_count,
        })
    }

    fn fetch_orgs(endpoint: Endpoint, page: u32) -> Result<OrganizationPage, Error> {
        let doc = get_json(&list_url(&endpoint, "/companies", page))?;
        let (records, unreadable, info) = read_page(&doc, page, read_organization)?;
        log::emit(
            Level::Debug,
            &format!("page {page}: {} companies", records.len()),
        );
        Ok(OrganizationPage {
            records,
            unreadable,
            info,
        })
    }

    fn fetch_configs(endpoint: Endpoint, page: u32) -> Result<ConfigurationPage, Error> {
        let doc = get_json(&list_url(&endpoint, "/assets", page))?;
        let (records, unreadable, info) = read_page(&doc, page, read_configuration)?;
        Ok(ConfigurationPage {
            records,
            unreadable,
            info,
        })
    }

    // `match` is a Rust keyword; wit-bindgen names the method `match_`.
    fn match_(input: MatchInput) -> Vec<Placement> {
        let mut placements = match &input {
            MatchInput::Organizations(m) => place_organizations(m),
            MatchInput::Configurations(m) => place_configurations(m),
        };
        placements.sort_by(|a, b| compare_ids(&a.source_id, &b.source_id));
        placements
    }
}

bindings::export!(Connector with_types_in bindings);

// ---- HTTP ------------------------------------------------------------------------------------

fn base(endpoint: &Endpoint) -> &str {
    endpoint.base_url.trim_end_matches('/')
}

/// Sorted by id so that pages stay stable while the host fetches them concurrently.
fn list_url(endpoint: &Endpoint, path: &str, page: u32) -> String {
    format!(
        "{}{path}?page={}&per_page={}&sort=id",
        base(endpoint),
        page.max(1),
        endpoint.page_size
    )
}

/// The only I/O. It sets no credential header: the host adds the key after its policy check.
fn get_json(url: &str) -> Result<Value, Error> {
    let response = waki::Client::new()
        .get(url)
        .header("accept", "application/json")
        .send()
        .map_err(|e| match e.downcast_ref::<ErrorCode>() {
            Some(ErrorCode::HttpRequestDenied) => {
                Error::Denied("the host refused the request: it is outside the manifest".into())
            }
            Some(ErrorCode::HttpResponseBodySize(_)) => {
                Error::BadResponse("the answer is larger than the host allows".into())
            }
            _ => Error::Unavailable(format!("could not reach the API: {e:#}")),
        })?;
    let status = response.status_code();
    let retry_after = response
        .header("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok());
    let body = response
        .body()
        .map_err(|e| Error::Unavailable(format!("the answer was cut off: {e:#}")))?;
    // Quote only the start of a body, on one line.
    let said: String = String::from_utf8_lossy(&body)
        .chars()
        .filter(|c| !c.is_control())
        .take(80)
        .collect();
    match status {
        200..=299 => serde_json::from_slice(&body)
            .map_err(|_| Error::BadResponse(format!("the answer is not JSON: {said}"))),
        401 | 403 => Err(Error::Unauthorized(format!(
            "The API rejected the key (HTTP {status}: {said})."
        ))),
        404 => Err(Error::NotFound(format!("HTTP 404 ({said})"))),
        429 => Err(Error::RateLimited(RateLimited {
            retry_after_seconds: retry_after,
            detail: format!("HTTP 429 ({said})"),
        })),
        500..=599 => Err(Error::Unavailable(format!("HTTP {status} ({said})"))),
        _ => Err(Error::BadResponse(format!("HTTP {status} ({said})"))),
    }
}

// ---- Pages -----------------------------------------------------------------------------------

type Parts<T> = (Vec<T>, Vec<UnreadableRecord>, PageInfo);

fn read_page<T>(
    doc: &Value,
    page: u32,
    read: fn(&Value) -> Result<T, UnreadableRecord>,
) -> Result<Parts<T>, Error> {
    let Some(items) = doc.get("data").and_then(Value::as_array) else {
        return Err(Error::BadResponse("the answer has no `data` list".into()));
    };
    let meta = |key: &str| {
        doc.get("meta")
            .and_then(|m| m.get(key))
            .and_then(Value::as_u64)
    };
    let info = PageInfo {
        // A next page that does not move forward would make the host ask forever.
        next_page: meta("next_page")
            .and_then(|n| u32::try_from(n).ok())
            .filter(|&n| n > page),
        total_pages: meta("total_pages").and_then(|n| u32::try_from(n).ok()),
        total_count: meta("total"),
    };
    let (mut records, mut unreadable) = (Vec::new(), Vec::new());
    for item in items {
        match read(item) {
            Ok(record) => records.push(record),
            Err(bad) => unreadable.push(bad),
        }
    }
    Ok((records, unreadable, info))
}

fn id_value(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => n.as_u64().map(|n| n.to_string()),
        _ => None,
    }
}

fn text(item: &Value, key: &str) -> Option<String> {
    let s = item.get(key)?.as_str()?.trim();
    (!s.is_empty()).then(|| s.to_string())
}

fn unreadable(item: &Value, detail: &str) -> UnreadableRecord {
    UnreadableRecord {
        id: item.get("id").and_then(id_value),
        detail: detail.to_string(),
    }
}

fn read_organization(item: &Value) -> Result<Organization, UnreadableRecord> {
    let id = item
        .get("id")
        .and_then(id_value)
        .ok_or_else(|| unreadable(item, "no usable id"))?;
    let name = item
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| unreadable(item, "no name"))?;
    Ok(Organization {
        id,
        name: name.to_string(),
        short_name: text(item, "short_name"),
        type_name: text(item, "type"),
        status_name: text(item, "status"),
    })
}

fn read_configuration(item: &Value) -> Result<Configuration, UnreadableRecord> {
    let id = item
        .get("id")
        .and_then(id_value)
        .ok_or_else(|| unreadable(item, "no usable id"))?;
    let organization_id = item
        .get("company_id")
        .and_then(id_value)
        .ok_or_else(|| unreadable(item, "no company id"))?;
    let mac_addresses = item
        .get("macs")
        .and_then(Value::as_array)
        .map(|macs| {
            macs.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Ok(Configuration {
        id,
        organization_id,
        name: text(item, "name").unwrap_or_default(),
        hostname: text(item, "hostname"),
        primary_ip: text(item, "ip"),
        serial_number: text(item, "serial"),
        mac_addresses,
        type_name: text(item, "type"),
        archived: item
            .get("archived")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

// ---- Matching --------------------------------------------------------------------------------
// BTreeMap/BTreeSet only: guest HashMaps are randomly seeded, their order must never leak.

/// The contract's order: numerically when both ids are whole numbers, numbers first, else text.
fn compare_ids(a: &str, b: &str) -> Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y).then_with(|| a.cmp(b)),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

fn linked(id: &str, target: &str, evidence: Evidence) -> Placement {
    Placement {
        source_id: id.to_string(),
        outcome: Outcome::Linked(Link {
            scopable_id: target.to_string(),
            evidence: vec![evidence],
        }),
    }
}

fn unplaced(id: &str, reason: Reason, mut candidates: Vec<String>) -> Placement {
    candidates.sort_by(|a, b| compare_ids(a, b));
    candidates.dedup();
    Placement {
        source_id: id.to_string(),
        outcome: Outcome::Unplaced(Unplaced {
            reason,
            candidates,
            suggestions: Vec::new(),
        }),
    }
}

/// Records that must not be placed: ignored or manually linked.
fn decided<'a>(ignored: &'a [String], manual: &'a [Pair]) -> BTreeSet<&'a str> {
    let ignored = ignored.iter().map(String::as_str);
    ignored
        .chain(manual.iter().map(|p| p.source_id.as_str()))
        .collect()
}

/// Targets held by a manual link: never candidates for anything else.
fn held(manual: &[Pair]) -> BTreeSet<&str> {
    manual.iter().map(|p| p.scopable_id.as_str()).collect()
}

/// Names compare as the shared matching rules normalize them (`scopable-normalize`): the
/// host checks every link's evidence against the same rules, and refuses a whole result that
/// links on anything else.
fn name_key(name: &str) -> String {
    scopable_normalize::normalize_name(name)
}

fn place_organizations(m: &OrganizationMatch) -> Vec<Placement> {
    let decided = decided(&m.ignored, &m.manual_links);
    let held = held(&m.manual_links);
    let mut clients: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for client in &m.clients {
        clients
            .entry(name_key(&client.name))
            .or_default()
            .push(client.id.clone());
    }
    // Every organization counts for uniqueness, decided ones included.
    let mut per_name: BTreeMap<String, usize> = BTreeMap::new();
    for org in &m.organizations {
        *per_name.entry(name_key(&org.name)).or_default() += 1;
    }
    let mut out = Vec::new();
    for org in m
        .organizations
        .iter()
        .filter(|o| !decided.contains(o.id.as_str()))
    {
        let key = name_key(&org.name);
        let candidates = clients.get(&key).cloned().unwrap_or_default();
        out.push(match candidates.as_slice() {
            _ if key.is_empty() => unplaced(&org.id, Reason::EmptyName, Vec::new()),
            [] => unplaced(&org.id, Reason::NoMatch, Vec::new()),
            [_, _, ..] => unplaced(&org.id, Reason::MultipleClients, candidates.clone()),
            [client] if per_name[&key] > 1 => {
                unplaced(&org.id, Reason::MultipleOrganizations, vec![client.clone()])
            }
            [client] if held.contains(client.as_str()) => {
                unplaced(&org.id, Reason::TargetTaken, vec![client.clone()])
            }
            [client] => linked(&org.id, client, Evidence::Name),
        });
    }
    out
}

/// A serial as the shared rules normalize it; a placeholder ("To Be Filled By O.E.M.") proves
/// nothing and becomes empty.
fn serial_key(raw: &str) -> String {
    scopable_normalize::normalize_serial(raw).unwrap_or_default()
}

/// What a configuration links to, or why it stays unplaced and its candidates.
type Decision<'a> = Result<&'a str, (Reason, Vec<String>)>;

fn place_configurations(m: &ConfigurationMatch) -> Vec<Placement> {
    let decided = decided(&m.ignored, &m.manual_links);
    let held = held(&m.manual_links);
    let parent: BTreeMap<&str, &str> = m
        .parents
        .iter()
        .map(|p| (p.source_id.as_str(), p.scopable_id.as_str()))
        .collect();
    // (client, serial) -> Scopable configurations carrying it.
    let mut by_serial: BTreeMap<(&str, String), Vec<&str>> = BTreeMap::new();
    for s in &m.scopable_configurations {
        if let Some(serial) = s
            .serial_number
            .as_deref()
            .map(serial_key)
            .filter(|k| !k.is_empty())
        {
            by_serial
                .entry((s.client_id.as_str(), serial))
                .or_default()
                .push(s.id.as_str());
        }
    }
    // First what each record would link to, then refuse targets that two records want.
    let mut wanted: BTreeMap<&str, usize> = BTreeMap::new();
    let mut decisions: Vec<(&Configuration, Decision)> = Vec::new();
    for config in m
        .configurations
        .iter()
        .filter(|c| !decided.contains(c.id.as_str()))
    {
        let decision = if config.archived {
            Err((Reason::Archived, Vec::new()))
        } else if let Some(&client) = parent.get(config.organization_id.as_str()) {
            let serial = config
                .serial_number
                .as_deref()
                .map(serial_key)
                .unwrap_or_default();
            let hits: &[&str] = match by_serial.get(&(client, serial.clone())) {
                Some(hits) if !serial.is_empty() => hits.as_slice(),
                _ => &[],
            };
            match hits {
                [] => Err((Reason::NoMatch, Vec::new())),
                [one] if held.contains(one) => Err((Reason::TargetTaken, vec![one.to_string()])),
                [one] => Ok(*one),
                several => Err((
                    Reason::MultipleConfigurations,
                    several.iter().map(|s| s.to_string()).collect(),
                )),
            }
        } else {
            Err((Reason::ParentUnplaced, Vec::new()))
        };
        if let Ok(target) = decision {
            *wanted.entry(target).or_default() += 1;
        }
        decisions.push((config, decision));
    }
    decisions
        .into_iter()
        .map(|(config, decision)| match decision {
            Ok(target) if wanted[target] > 1 => {
                unplaced(&config.id, Reason::TargetTaken, vec![target.to_string()])
            }
            Ok(target) => linked(&config.id, target, Evidence::Serial),
            Err((reason, candidates)) => unplaced(&config.id, reason, candidates),
        })
        .collect()
}

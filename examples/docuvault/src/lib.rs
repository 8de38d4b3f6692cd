//! An example connector for Docuvault, a small documentation API, built against the same
//! `scopable:integration` world as the IT Glue connector in `plugin/`.
//!
//! Docuvault differs from IT Glue wherever the contract should not care: plain JSON lists
//! (`{"items": [...], "next": 6, "total": 8}`) instead of JSON:API, an offset cursor instead of
//! page numbers, a bearer token instead of an API-key header (the host adds it; the manifest
//! says `header = "authorization"`, `prefix = "Bearer "`), and its own field names.

/// The code generated from the WIT world: the contract's types and the `Guest` trait.
mod bindings {
    // The generated glue passes flattened records as many arguments; that is not ours to change.
    #![allow(clippy::too_many_arguments)]
    wit_bindgen::generate!({ path: "../../wit", world: "integration" });
}

use bindings::Guest;
use bindings::scopable::integration::types::{
    Configuration, ConfigurationMatch, ConfigurationPage, Endpoint, Error, Evidence, Link,
    MatchInput, Organization, OrganizationMatch, OrganizationPage, Outcome, PageInfo, Pair,
    Placement, RateLimited, Reason, Unplaced, UnreadableRecord, Verified,
};
// Names and serials compare exactly as the IT Glue connector compares them: one set of rules.
use scopable_normalize::{normalize_name, normalize_serial};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The listing of companies (organizations), declared in `manifest.toml`.
const COMPANIES: &str = "/api/v2/companies";
/// The listing of every device (configuration) of the account, declared in `manifest.toml`.
const DEVICES: &str = "/api/v2/devices";
/// Docuvault's largest page.
const MAX_LIMIT: u32 = 100;

/// The component's implementation of the `integration` world's exports.
struct Connector;

impl Guest for Connector {
    fn test(mut endpoint: Endpoint) -> Result<Verified, Error> {
        // One company proves the token; reading the page also catches a sign-in page (200).
        endpoint.page_size = 1;
        let (_, _, info) = fetch_page(&endpoint, COMPANIES, 1, |_| Some(()))?;
        let shown = info.total_count.map_or("?".into(), |n| n.to_string());
        Ok(Verified {
            detail: format!("Verified: {shown} companies visible"),
            total_organizations: info.total_count,
        })
    }

    fn fetch_orgs(endpoint: Endpoint, page: u32) -> Result<OrganizationPage, Error> {
        let (records, unreadable, info) = fetch_page(&endpoint, COMPANIES, page, |item| {
            Some(Organization {
                id: text(item, "uid")?,
                name: text(item, "title")?,
                short_name: None,
                type_name: None,
                status_name: None,
            })
        })?;
        Ok(OrganizationPage {
            records,
            unreadable,
            info,
        })
    }

    fn fetch_configs(endpoint: Endpoint, page: u32) -> Result<ConfigurationPage, Error> {
        let (records, unreadable, info) = fetch_page(&endpoint, DEVICES, page, |item| {
            let macs = item["macs"].as_array().into_iter().flatten();
            Some(Configuration {
                id: text(item, "uid")?,
                organization_id: text(item, "company_uid")?,
                name: text(item, "label").unwrap_or_default(),
                hostname: text(item, "host"),
                primary_ip: text(item, "ip"),
                serial_number: text(item, "serial"),
                mac_addresses: macs.filter_map(|m| Some(m.as_str()?.into())).collect(),
                type_name: text(item, "kind"),
                archived: item["retired"].as_bool() == Some(true),
            })
        })?;
        Ok(ConfigurationPage {
            records,
            unreadable,
            info,
        })
    }

    fn match_(input: MatchInput) -> Vec<Placement> {
        match &input {
            MatchInput::Organizations(orgs) => place_organizations(orgs),
            MatchInput::Configurations(configs) => place_configurations(configs),
        }
    }
}

bindings::export!(Connector with_types_in bindings);

/// Page `page` (from 1) of a listing: page numbers map to offsets, `next` to the next page.
/// `read` turns one item into a record, or `None` when the item cannot be read.
fn fetch_page<T>(
    e: &Endpoint,
    path: &str,
    page: u32,
    read: fn(&Value) -> Option<T>,
) -> Result<(Vec<T>, Vec<UnreadableRecord>, PageInfo), Error> {
    let (limit, page) = (e.page_size.clamp(1, MAX_LIMIT), page.max(1));
    let cursor = u64::from(page - 1) * u64::from(limit);
    // Sorted by uid, so that offsets stay stable while the host walks the pages.
    let base = e.base_url.trim_end_matches('/');
    let url = format!("{base}{path}?order=uid&cursor={cursor}&limit={limit}");
    let list = get_json(&url)?;
    let bad = |what: &str| Error::BadResponse(format!("Docuvault's {path} page {page} {what}"));
    let items = list["items"].as_array();
    let items = items.ok_or_else(|| bad("has no `items` list"))?;
    let next = Some(&list["next"]).filter(|next| !next.is_null());
    let next = next.map(|n| n.as_u64().ok_or_else(|| bad("has a non-numeric `next`")));
    let next = next.transpose()?;
    // The host asks for pages by number, several at once: a cursor that does not continue
    // right after this page would make pages skip or repeat records.
    if next.is_some_and(|next| next != cursor + u64::from(limit)) {
        return Err(bad("has a `next` cursor that does not follow it"));
    }
    let total = list["total"].as_u64();
    let (mut records, mut unreadable) = (Vec::new(), Vec::new());
    for item in items {
        match read(item) {
            Some(record) => records.push(record),
            None => unreadable.push(UnreadableRecord {
                id: text(item, "uid"),
                detail: "no text uid, title or company_uid".to_string(),
            }),
        }
    }
    let pages = total.map(|t| u32::try_from(t.div_ceil(limit.into()).max(1)).unwrap_or(u32::MAX));
    let info = PageInfo {
        next_page: next.map(|_| page + 1),
        total_pages: pages,
        total_count: total,
    };
    Ok((records, unreadable, info))
}

/// A string field of a JSON object.
fn text(item: &Value, key: &str) -> Option<String> {
    item.get(key)?.as_str().map(str::to_string)
}

/// GETs `url` and returns its JSON, or the classified error. The only I/O in the connector; it
/// never sets a credential: the host adds the token after checking the request.
fn get_json(url: &str) -> Result<Value, Error> {
    let client = waki::Client::new();
    let request = client.get(url).header("accept", "application/json");
    // The host's refusal (the request is outside the manifest) is told apart from the network.
    let response = request.send().map_err(|e| match e.downcast_ref() {
        Some(waki::ErrorCode::HttpRequestDenied) => Error::Denied(short(&format!("{e:#}"))),
        _ => Error::Unavailable(short(&format!("could not reach Docuvault: {e:#}"))),
    })?;
    let status = response.status_code();
    let retry_after = response.header("retry-after").and_then(|v| v.to_str().ok());
    let retry_after_seconds = retry_after.and_then(|v| v.trim().parse::<u32>().ok());
    let body = response.body();
    let body =
        body.map_err(|e| Error::Unavailable(short(&format!("reading the answer: {e:#}"))))?;
    let said = short(&String::from_utf8_lossy(&body));
    let detail = format!("Docuvault answered HTTP {status} ({said})");
    Err(match status {
        200..=299 => {
            return serde_json::from_slice(&body)
                .map_err(|e| Error::BadResponse(format!("{detail}: {e}")));
        }
        401 | 403 => Error::Unauthorized(detail),
        404 => Error::NotFound(detail),
        429 => Error::RateLimited(RateLimited {
            retry_after_seconds,
            detail,
        }),
        500..=599 => Error::Unavailable(detail),
        _ => Error::BadResponse(detail),
    })
}

/// Text made safe for an error detail: one line (no control characters) of 80 characters.
fn short(text: &str) -> String {
    let line = text.chars().map(|c| if c.is_control() { ' ' } else { c });
    line.take(80).collect()
}

/// The sort key of an id: whole numbers first, numerically, then other ids as text.
fn id_key(id: &str) -> ((u8, u64), &str) {
    (id.parse().map_or((1, 0), |n| (0, n)), id)
}

/// Ids sorted with [`id_key`], each once.
fn sorted<'a>(ids: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let ids: BTreeSet<_> = ids.into_iter().map(id_key).collect();
    ids.into_iter().map(|(_, id)| id.to_string()).collect()
}

fn unplaced(reason: Reason, candidates: Vec<String>) -> Outcome {
    let suggestions = Vec::new();
    Outcome::Unplaced(Unplaced {
        reason,
        candidates,
        suggestions,
    })
}

/// Organizations link to the one client of the same name, when it is unique on both sides.
fn place_organizations(input: &OrganizationMatch) -> Vec<Placement> {
    let mut clients: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for client in &input.clients {
        let key = normalize_name(&client.name);
        clients.entry(key).or_default().push(&client.id);
    }
    let wants = input.organizations.iter().rev().map(|org| {
        let key = normalize_name(&org.name);
        let hits = sorted(clients.get(&key).into_iter().flatten().copied());
        let want = (!key.is_empty()).then_some(hits).ok_or(Reason::EmptyName);
        (org.id.as_str(), want)
    });
    resolve(wants, &input.manual_links, &input.ignored, Evidence::Name)
}

/// Configurations link on an equal usable serial, inside the client of their organization.
fn place_configurations(input: &ConfigurationMatch) -> Vec<Placement> {
    let pairs = input.parents.iter();
    let parent: BTreeMap<&str, &str> = pairs.map(|p| (&*p.source_id, &*p.scopable_id)).collect();
    let mut by_serial: BTreeMap<(&str, String), Vec<&str>> = BTreeMap::new();
    for s in &input.scopable_configurations {
        if let Some(serial) = s.serial_number.as_deref().and_then(normalize_serial) {
            let key = (s.client_id.as_str(), serial);
            by_serial.entry(key).or_default().push(&s.id);
        }
    }
    let wants = input.configurations.iter().rev().map(|c| {
        let client = parent.get(c.organization_id.as_str()).copied();
        let serial = c.serial_number.as_deref().and_then(normalize_serial);
        let hits = client.zip(serial).and_then(|key| by_serial.get(&key));
        let want = match client {
            _ if c.archived => Err(Reason::Archived),
            None => Err(Reason::ParentUnplaced),
            Some(_) => Ok(sorted(hits.into_iter().flatten().copied())),
        };
        (c.id.as_str(), want)
    });
    resolve(wants, &input.manual_links, &input.ignored, Evidence::Serial)
}

/// Places each record neither linked by hand nor ignored, sorted by id; `wants` come in reverse,
/// so the first record of an id wins. A target wanted by several records goes to none of them.
fn resolve<'a>(
    wants: impl Iterator<Item = (&'a str, Result<Vec<String>, Reason>)>,
    manual: &[Pair],
    ignored: &[String],
    evidence: Evidence,
) -> Vec<Placement> {
    let wants: BTreeMap<_, _> = wants.map(|(id, want)| (id_key(id), want)).collect();
    let (several, contested) = match evidence {
        Evidence::Name => (Reason::MultipleClients, Reason::MultipleOrganizations),
        _ => (Reason::MultipleConfigurations, Reason::TargetTaken),
    };
    let taken: BTreeSet<&str> = manual.iter().map(|p| p.scopable_id.as_str()).collect();
    let mut decided: BTreeSet<&str> = manual.iter().map(|p| p.source_id.as_str()).collect();
    decided.extend(ignored.iter().map(String::as_str));
    let mut wanted: BTreeMap<&str, usize> = BTreeMap::new();
    let sole_targets = wants.values().flatten().filter(|hits| hits.len() == 1);
    for target in sole_targets.flatten() {
        *wanted.entry(target).or_default() += 1;
    }
    let undecided = wants.iter().filter(|((_, id), _)| !decided.contains(id));
    let place = |((_, id), want): (&(_, &str), &Result<Vec<String>, Reason>)| {
        let outcome = match want.as_deref() {
            Err(reason) => unplaced(*reason, Vec::new()),
            Ok([]) => unplaced(Reason::NoMatch, Vec::new()),
            Ok(hits @ [_, _, ..]) => unplaced(several, hits.to_vec()),
            Ok([t]) if wanted[t.as_str()] > 1 => unplaced(contested, vec![t.clone()]),
            Ok([t]) if taken.contains(t.as_str()) => unplaced(Reason::TargetTaken, vec![t.clone()]),
            Ok([t]) => Outcome::Linked(Link {
                scopable_id: t.clone(),
                evidence: vec![evidence],
            }),
        };
        let source_id = id.to_string();
        Placement { source_id, outcome }
    };
    undecided.map(place).collect()
}

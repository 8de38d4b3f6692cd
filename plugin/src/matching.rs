//! The matching rules: organizations onto clients by normalized name, and
//! configurations onto Scopable configurations by serial, MAC and hostname. Exact and unique
//! evidence only; everything else is returned unplaced with its reason and candidates.
//!
//! Every index is a hash map keyed by a normalized value, so the work grows linearly with the
//! input. Hash maps are randomly seeded in the guest, so nothing is ever emitted in map order:
//! results are built in input order and sorted by id before they leave.

use std::cmp::Ordering;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use crate::bindings::scopable::integration::types::{
    Configuration, ConfigurationMatch, Evidence, Link, MatchInput, Organization, OrganizationMatch,
    Outcome, Placement, Reason, ScopableConfiguration, Unplaced,
};
use scopable_normalize::{
    normalize_hostname, normalize_mac, normalize_name, normalize_serial, suggestion_key,
};

/// Places every record of `input` that is neither ignored nor manually linked, sorted by
/// IT Glue id. Pure and deterministic: the same input, in any order, gives the same output.
pub fn place(input: &MatchInput) -> Vec<Placement> {
    let mut placements = match input {
        MatchInput::Organizations(orgs) => place_organizations(orgs),
        MatchInput::Configurations(configs) => place_configurations(configs),
    };
    placements.sort_by(|a, b| compare_ids(&a.source_id, &b.source_id));
    placements
}

/// The order of ids in every list the matcher returns: numerically when both are whole
/// numbers, numbers before other ids, otherwise as text. Equal numbers written differently
/// (`7`, `07`) fall back to text so that the order stays total.
pub fn compare_ids(a: &str, b: &str) -> Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y).then_with(|| a.cmp(b)),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

/// Ids sorted with [`compare_ids`], each once.
fn sorted_ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut ids: Vec<&str> = ids.into_iter().collect();
    ids.sort_by(|a, b| compare_ids(a, b));
    ids.dedup();
    ids.into_iter().map(str::to_string).collect()
}

fn unplaced(reason: Reason, candidates: Vec<String>, suggestions: Vec<String>) -> Outcome {
    Outcome::Unplaced(Unplaced {
        reason,
        candidates,
        suggestions,
    })
}

/// The first record of each id, in input order. A repeated id is the same record sent twice
/// (paging overlap) or a broken listing; either way one record gets one placement, and keeping
/// the first makes the choice independent of anything but the input itself.
fn first_of_each_id<T>(records: &[T], id: impl Fn(&T) -> &str) -> Vec<&T> {
    let mut seen: HashSet<&str> = HashSet::with_capacity(records.len());
    records.iter().filter(|r| seen.insert(id(r))).collect()
}

// ---------------------------------------------------------------------------------------------
// Organizations -> clients
// ---------------------------------------------------------------------------------------------

fn place_organizations(input: &OrganizationMatch) -> Vec<Placement> {
    let ignored: HashSet<&str> = input.ignored.iter().map(String::as_str).collect();
    let manual: HashSet<&str> = input
        .manual_links
        .iter()
        .map(|pair| pair.source_id.as_str())
        .collect();
    let manual_targets: HashSet<&str> = input
        .manual_links
        .iter()
        .map(|pair| pair.scopable_id.as_str())
        .collect();

    // Every client counts for uniqueness, manually linked ones included: a name two clients
    // share cannot pick one, whoever holds them.
    let mut clients_by_name: HashMap<String, Vec<&str>> = HashMap::new();
    let mut clients_by_key: HashMap<String, Vec<&str>> = HashMap::new();
    for client in first_of_each_id(&input.clients, |c| &c.id) {
        let name = normalize_name(&client.name);
        if name.is_empty() {
            continue;
        }
        if let Some(key) = suggestion_key(&name) {
            clients_by_key.entry(key).or_default().push(&client.id);
        }
        clients_by_name.entry(name).or_default().push(&client.id);
    }

    // Every organization received counts for uniqueness too, ignored and manually linked ones
    // included: a duplicate in IT Glue stays ambiguous whatever was decided about its twin, and
    // a person resolves it with a manual link.
    let organizations: Vec<(&Organization, String)> =
        first_of_each_id(&input.organizations, |o| &o.id)
            .into_iter()
            .map(|org| (org, normalize_name(&org.name)))
            .collect();
    let mut organizations_per_name: HashMap<&str, usize> = HashMap::new();
    for (_, name) in &organizations {
        *organizations_per_name.entry(name.as_str()).or_default() += 1;
    }

    let mut placements = Vec::new();
    for (org, name) in &organizations {
        if ignored.contains(org.id.as_str()) || manual.contains(org.id.as_str()) {
            continue;
        }
        let clients = clients_by_name.get(name).map_or(&[][..], Vec::as_slice);
        let outcome = if name.is_empty() {
            unplaced(Reason::EmptyName, Vec::new(), Vec::new())
        } else {
            match clients {
                [] => {
                    let suggestions = suggestion_key(name)
                        .and_then(|key| clients_by_key.get(&key))
                        .map(|ids| sorted_ids(ids.iter().copied()))
                        .unwrap_or_default();
                    unplaced(Reason::NoMatch, Vec::new(), suggestions)
                }
                [client] => {
                    let candidates = vec![client.to_string()];
                    if organizations_per_name
                        .get(name.as_str())
                        .copied()
                        .unwrap_or(0)
                        > 1
                    {
                        unplaced(Reason::MultipleOrganizations, candidates, Vec::new())
                    } else if manual_targets.contains(client) {
                        unplaced(Reason::TargetTaken, candidates, Vec::new())
                    } else {
                        Outcome::Linked(Link {
                            scopable_id: client.to_string(),
                            evidence: vec![Evidence::Name],
                        })
                    }
                }
                several => unplaced(
                    Reason::MultipleClients,
                    sorted_ids(several.iter().copied()),
                    Vec::new(),
                ),
            }
        };
        placements.push(Placement {
            source_id: org.id.clone(),
            outcome,
        });
    }
    placements
}

// ---------------------------------------------------------------------------------------------
// Configurations -> configurations
// ---------------------------------------------------------------------------------------------

/// A Scopable configuration with its identifiers normalized once.
struct Target<'a> {
    id: &'a str,
    /// Its serial, when usable (not a placeholder, not shared inside its client).
    serial: Option<&'a str>,
    /// Its usable MACs (each carried by no other configuration of its client).
    macs: Vec<&'a str>,
    hostname: Option<&'a str>,
    /// Held by a manual link: never linked automatically, never taken by anyone.
    manually_held: bool,
}

/// A Scopable configuration's identifiers, normalized: what the index and the targets borrow.
struct Normalized {
    serial: Option<String>,
    macs: Vec<String>,
    hostname: Option<String>,
}

/// The Scopable configurations (indexes into the targets) that carry one value inside one
/// client, in input order: the first, then any others. A value carried once, the usual case,
/// needs no allocation of its own.
struct Carriers {
    first: usize,
    others: Vec<usize>,
}

impl Carriers {
    fn count(&self) -> usize {
        1 + self.others.len()
    }

    fn all(&self) -> Vec<usize> {
        std::iter::once(self.first)
            .chain(self.others.iter().copied())
            .collect()
    }
}

/// A client's id and a normalized value: every search stays inside the client the
/// organization is linked to.
type Key<'a> = (&'a str, &'a str);

/// One kind of identifier's lookups. Its keys come from Scopable's own records (IT Glue's
/// values are only looked up), so a fast hasher serves; SipHash took a fifth of the matching.
type Lookup<'a> = HashMap<Key<'a>, Carriers, foldhash::fast::RandomState>;

/// Lookups from a client and a normalized value to the Scopable configurations carrying it:
/// one flat map per kind of identifier.
struct Index<'a> {
    serial: Lookup<'a>,
    mac: Lookup<'a>,
    hostname: Lookup<'a>,
}

impl<'a> Index<'a> {
    /// Empty lookups sized for `normalized`'s identifiers, so that building them never
    /// rehashes (growing the maps one doubling at a time took a tenth of the matching in wasm).
    fn sized_for(normalized: &[Normalized]) -> Index<'a> {
        let lookup = |n: usize| Lookup::with_capacity_and_hasher(n, Default::default());
        let count = |has: fn(&Normalized) -> usize| normalized.iter().map(has).sum::<usize>();
        Index {
            serial: lookup(count(|n| usize::from(n.serial.is_some()))),
            mac: lookup(count(|n| n.macs.len())),
            hostname: lookup(count(|n| usize::from(n.hostname.is_some()))),
        }
    }

    fn add(map: &mut Lookup<'a>, key: Key<'a>, target: usize) {
        match map.entry(key) {
            Entry::Occupied(carriers) => carriers.into_mut().others.push(target),
            Entry::Vacant(slot) => {
                slot.insert(Carriers {
                    first: target,
                    others: Vec::new(),
                });
            }
        }
    }
}

/// How many configurations carry `value` in `client`.
fn count(map: &Lookup<'_>, client: &str, value: &str) -> usize {
    map.get(&(client, value)).map_or(0, Carriers::count)
}

/// The first configuration carrying `value` in `client`.
fn first(map: &Lookup<'_>, client: &str, value: &str) -> Option<usize> {
    map.get(&(client, value)).map(|c| c.first)
}

/// What one IT Glue configuration asks for before the one-to-one check.
enum Decision {
    /// It would be linked to this target (an index into the targets) with this evidence.
    Wants(usize, Vec<Evidence>),
    /// It stays unplaced.
    Unplaced(Reason, Vec<usize>),
}

fn place_configurations(input: &ConfigurationMatch) -> Vec<Placement> {
    let ignored: HashSet<&str> = input.ignored.iter().map(String::as_str).collect();
    let manual: HashSet<&str> = input
        .manual_links
        .iter()
        .map(|pair| pair.source_id.as_str())
        .collect();
    let manual_targets: HashSet<&str> = input
        .manual_links
        .iter()
        .map(|pair| pair.scopable_id.as_str())
        .collect();

    // An organization listed with two different clients is not linked to exactly one.
    let mut parents: HashMap<&str, Option<&str>> = HashMap::with_capacity(input.parents.len());
    for pair in &input.parents {
        parents
            .entry(pair.source_id.as_str())
            .and_modify(|client| {
                if *client != Some(pair.scopable_id.as_str()) {
                    *client = None;
                }
            })
            .or_insert(Some(pair.scopable_id.as_str()));
    }

    let scopable: Vec<&ScopableConfiguration> =
        first_of_each_id(&input.scopable_configurations, |c| &c.id);
    let normalized: Vec<Normalized> = scopable
        .iter()
        .map(|config| Normalized {
            serial: config.serial_number.as_deref().and_then(normalize_serial),
            macs: normalized_macs(&config.mac_addresses),
            hostname: config.hostname.as_deref().and_then(normalize_hostname),
        })
        .collect();
    let mut index = Index::sized_for(&normalized);
    for (i, (config, ids)) in scopable.iter().zip(&normalized).enumerate() {
        let client = config.client_id.as_str();
        if let Some(serial) = &ids.serial {
            Index::add(&mut index.serial, (client, serial), i);
        }
        for mac in &ids.macs {
            Index::add(&mut index.mac, (client, mac), i);
        }
        if let Some(hostname) = &ids.hostname {
            Index::add(&mut index.hostname, (client, hostname), i);
        }
    }
    let targets: Vec<Target> = scopable
        .iter()
        .zip(&normalized)
        .map(|(config, ids)| {
            let client = config.client_id.as_str();
            Target {
                id: &config.id,
                serial: ids
                    .serial
                    .as_deref()
                    .filter(|s| count(&index.serial, client, s) == 1),
                macs: ids
                    .macs
                    .iter()
                    .map(String::as_str)
                    .filter(|m| count(&index.mac, client, m) == 1)
                    .collect(),
                hostname: ids.hostname.as_deref(),
                manually_held: manual_targets.contains(config.id.as_str()),
            }
        })
        .collect();

    let mut decisions: Vec<(&Configuration, Decision)> = Vec::new();
    for config in first_of_each_id(&input.configurations, |c| &c.id) {
        if ignored.contains(config.id.as_str()) || manual.contains(config.id.as_str()) {
            continue;
        }
        let decision = decide_configuration(config, &parents, &index, &targets);
        decisions.push((config, decision));
    }

    // One to one: a target wanted by two IT Glue configurations goes to neither.
    let mut wanted = vec![0u32; targets.len()];
    for (_, decision) in &decisions {
        if let Decision::Wants(target, _) = decision {
            wanted[*target] += 1;
        }
    }
    decisions
        .into_iter()
        .map(|(config, decision)| {
            let outcome = match decision {
                Decision::Wants(target, _) if wanted[target] > 1 => unplaced(
                    Reason::TargetTaken,
                    vec![targets[target].id.to_string()],
                    Vec::new(),
                ),
                Decision::Wants(target, evidence) => Outcome::Linked(Link {
                    scopable_id: targets[target].id.to_string(),
                    evidence,
                }),
                Decision::Unplaced(reason, candidates) => unplaced(
                    reason,
                    sorted_ids(candidates.iter().map(|&i| targets[i].id)),
                    Vec::new(),
                ),
            };
            Placement {
                source_id: config.id.clone(),
                outcome,
            }
        })
        .collect()
}

/// The valid, non-placeholder MACs of a list, each once, in a stable order.
fn normalized_macs(raw: &[String]) -> Vec<String> {
    let mut macs: Vec<String> = raw.iter().filter_map(|m| normalize_mac(m)).collect();
    macs.sort();
    macs.dedup();
    macs
}

/// The rules for one IT Glue configuration, before the one-to-one check: archived, then the
/// parent, then strong candidates (a usable serial or MAC), then hostname candidates, then
/// `no-match`.
///
/// `archived` is decided before the parent: it is a fact about the record itself, and an
/// archived configuration would not link even once its organization is placed, so reporting
/// `parent-unplaced` would send the admin to fix something that changes nothing.
///
/// A target held by a manual link is never linked, but the evidence that points at it still
/// counts: when the only Scopable configuration carrying the evidence is manually held, the
/// result is `target-taken` naming it, and it still makes a second candidate ambiguous. So a
/// configuration whose serial names a manually linked device is never linked elsewhere on a
/// weaker hostname match. This reading only ever links less.
fn decide_configuration(
    config: &Configuration,
    parents: &HashMap<&str, Option<&str>>,
    index: &Index<'_>,
    targets: &[Target<'_>],
) -> Decision {
    if config.archived {
        return Decision::Unplaced(Reason::Archived, Vec::new());
    }
    let Some(&Some(client)) = parents.get(config.organization_id.as_str()) else {
        return Decision::Unplaced(Reason::ParentUnplaced, Vec::new());
    };

    // This side's identifiers, usable only when the client's Scopable side does not share them.
    let serial = config
        .serial_number
        .as_deref()
        .and_then(normalize_serial)
        .filter(|s| count(&index.serial, client, s) < 2);
    let macs: Vec<String> = normalized_macs(&config.mac_addresses)
        .into_iter()
        .filter(|m| count(&index.mac, client, m) < 2)
        .collect();
    let hostname = config.hostname.as_deref().and_then(normalize_hostname);

    let serial_hit = serial
        .as_deref()
        .and_then(|s| first(&index.serial, client, s));
    // The candidates in the order found, each once (a handful at most: a linear search).
    let mut strong: Vec<usize> = serial_hit.into_iter().collect();
    for mac in &macs {
        if let Some(hit) = first(&index.mac, client, mac)
            && !strong.contains(&hit)
        {
            strong.push(hit);
        }
    }
    let shares_a_mac = |target: &Target| macs.iter().any(|m| target.macs.contains(&m.as_str()));

    let serials_differ = |target: &Target| match (serial.as_deref(), target.serial) {
        (Some(ours), Some(theirs)) => ours != theirs,
        _ => false,
    };

    match strong.as_slice() {
        [target] => {
            let t = &targets[*target];
            if serials_differ(t) {
                return Decision::Unplaced(Reason::Conflict, vec![*target]);
            }
            if t.manually_held {
                return Decision::Unplaced(Reason::TargetTaken, vec![*target]);
            }
            let mut evidence = Vec::new();
            if serial.is_some() && serial.as_deref() == t.serial {
                evidence.push(Evidence::Serial);
            }
            if shares_a_mac(t) {
                evidence.push(Evidence::Mac);
            }
            if hostname.is_some() && hostname.as_deref() == t.hostname {
                evidence.push(Evidence::Hostname);
            }
            return Decision::Wants(*target, evidence);
        }
        [] => {}
        several => {
            let serial_elsewhere_than_a_mac =
                serial_hit.is_some_and(|s| several.iter().any(|&hit| hit != s));
            let reason = if serial_elsewhere_than_a_mac {
                Reason::Conflict
            } else {
                Reason::MultipleConfigurations
            };
            return Decision::Unplaced(reason, several.to_vec());
        }
    }

    // No strong candidate: the hostname alone, if nothing contradicts it.
    let Some(hostname) = hostname else {
        return Decision::Unplaced(Reason::NoMatch, Vec::new());
    };
    match index.hostname.get(&(client, hostname.as_str())) {
        None => Decision::Unplaced(Reason::NoMatch, Vec::new()),
        Some(Carriers { first, others }) if others.is_empty() => {
            let t = &targets[*first];
            let macs_disagree = !macs.is_empty() && !t.macs.is_empty() && !shares_a_mac(t);
            if serials_differ(t) || macs_disagree {
                Decision::Unplaced(Reason::Conflict, vec![*first])
            } else if t.manually_held {
                Decision::Unplaced(Reason::TargetTaken, vec![*first])
            } else {
                Decision::Wants(*first, vec![Evidence::Hostname])
            }
        }
        Some(several) => Decision::Unplaced(Reason::MultipleConfigurations, several.all()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::scopable::integration::types::{Client, Pair};
    use proptest::prelude::*;

    // --- builders -----------------------------------------------------------------------------

    fn org(id: &str, name: &str) -> Organization {
        Organization {
            id: id.into(),
            name: name.into(),
            short_name: None,
            type_name: None,
            status_name: None,
        }
    }

    fn client(id: &str, name: &str) -> Client {
        Client {
            id: id.into(),
            name: name.into(),
        }
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<Pair> {
        list.iter()
            .map(|(itglue, scopable)| Pair {
                source_id: itglue.to_string(),
                scopable_id: scopable.to_string(),
            })
            .collect()
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn place_orgs(
        organizations: Vec<Organization>,
        clients: Vec<Client>,
        manual: &[(&str, &str)],
        ignored: &[&str],
    ) -> Vec<Placement> {
        place(&MatchInput::Organizations(OrganizationMatch {
            organizations,
            clients,
            manual_links: pairs(manual),
            ignored: strings(ignored),
        }))
    }

    fn outcome<'a>(placements: &'a [Placement], id: &str) -> &'a Outcome {
        match placements.iter().find(|p| p.source_id == id) {
            Some(p) => &p.outcome,
            None => panic!("no placement for {id} in {placements:?}"),
        }
    }

    fn linked(scopable_id: &str, evidence: &[Evidence]) -> Outcome {
        Outcome::Linked(Link {
            scopable_id: scopable_id.into(),
            evidence: evidence.to_vec(),
        })
    }

    fn left(reason: Reason, candidates: &[&str]) -> Outcome {
        unplaced(reason, strings(candidates), Vec::new())
    }

    /// An IT Glue configuration of organization `org`, with no identifiers yet.
    fn itg(id: &str, org: &str) -> Configuration {
        Configuration {
            id: id.into(),
            organization_id: org.into(),
            name: format!("device {id}"),
            hostname: None,
            primary_ip: None,
            serial_number: None,
            mac_addresses: Vec::new(),
            type_name: None,
            archived: false,
        }
    }

    /// A Scopable configuration of client `client`, with no identifiers yet.
    fn scp(id: &str, client: &str) -> ScopableConfiguration {
        ScopableConfiguration {
            id: id.into(),
            client_id: client.into(),
            name: format!("device {id}"),
            hostname: None,
            serial_number: None,
            mac_addresses: Vec::new(),
        }
    }

    trait Identify {
        fn serial(self, serial: &str) -> Self;
        fn macs(self, macs: &[&str]) -> Self;
        fn host(self, hostname: &str) -> Self;
    }

    impl Identify for Configuration {
        fn serial(mut self, serial: &str) -> Self {
            self.serial_number = Some(serial.into());
            self
        }
        fn macs(mut self, macs: &[&str]) -> Self {
            self.mac_addresses = strings(macs);
            self
        }
        fn host(mut self, hostname: &str) -> Self {
            self.hostname = Some(hostname.into());
            self
        }
    }

    impl Identify for ScopableConfiguration {
        fn serial(mut self, serial: &str) -> Self {
            self.serial_number = Some(serial.into());
            self
        }
        fn macs(mut self, macs: &[&str]) -> Self {
            self.mac_addresses = strings(macs);
            self
        }
        fn host(mut self, hostname: &str) -> Self {
            self.hostname = Some(hostname.into());
            self
        }
    }

    struct Configs {
        configurations: Vec<Configuration>,
        scopable: Vec<ScopableConfiguration>,
        parents: Vec<Pair>,
        manual: Vec<Pair>,
        ignored: Vec<String>,
    }

    /// Organization `o1` is linked to client `c1` unless a test says otherwise.
    fn configs(
        configurations: Vec<Configuration>,
        scopable: Vec<ScopableConfiguration>,
    ) -> Configs {
        Configs {
            configurations,
            scopable,
            parents: pairs(&[("o1", "c1")]),
            manual: Vec::new(),
            ignored: Vec::new(),
        }
    }

    impl Configs {
        fn place(self) -> Vec<Placement> {
            place(&MatchInput::Configurations(ConfigurationMatch {
                configurations: self.configurations,
                scopable_configurations: self.scopable,
                parents: self.parents,
                manual_links: self.manual,
                ignored: self.ignored,
            }))
        }
    }

    fn place_one(itglue: Configuration, scopable: Vec<ScopableConfiguration>) -> Outcome {
        let id = itglue.id.clone();
        let placements = configs(vec![itglue], scopable).place();
        assert_eq!(placements.len(), 1, "{placements:?}");
        outcome(&placements, &id).clone()
    }

    // --- ids ----------------------------------------------------------------------------------

    #[test]
    fn ids_sort_numerically_then_as_text() {
        let mut ids = vec!["b", "10", "9", "a", "010", "100", "x1"];
        ids.sort_by(|a, b| compare_ids(a, b));
        assert_eq!(ids, vec!["9", "010", "10", "100", "a", "b", "x1"]);
        assert_eq!(sorted_ids(["3", "1", "3", "2"]), strings(&["1", "2", "3"]));
    }

    // --- organizations ------------------------------------------------------------------------

    #[test]
    fn an_organization_links_on_its_normalized_name() {
        let placements = place_orgs(
            vec![org("1", "Acme, Inc."), org("2", "O’Brien Plumbing")],
            vec![client("c1", "ACME INC"), client("c2", "OBrien Plumbing")],
            &[],
            &[],
        );
        assert_eq!(outcome(&placements, "1"), &linked("c1", &[Evidence::Name]));
        assert_eq!(outcome(&placements, "2"), &linked("c2", &[Evidence::Name]));
    }

    #[test]
    fn unicode_variants_of_a_name_link() {
        let placements = place_orgs(
            vec![
                org("1", "Ｔｙｒｅｌｌ\u{00A0}Corp"),
                org("2", "Wa\u{200B}yne Enterprises"),
                org("3", "Oﬃce Supplies"),
            ],
            vec![
                client("c1", "tyrell corp"),
                client("c2", "Wayne Enterprises"),
                client("c3", "Office Supplies"),
            ],
            &[],
            &[],
        );
        assert_eq!(outcome(&placements, "1"), &linked("c1", &[Evidence::Name]));
        assert_eq!(outcome(&placements, "2"), &linked("c2", &[Evidence::Name]));
        assert_eq!(outcome(&placements, "3"), &linked("c3", &[Evidence::Name]));
    }

    #[test]
    fn an_empty_normalized_name_never_matches() {
        let placements = place_orgs(
            vec![org("1", ""), org("2", " .,- "), org("3", "\u{200B}")],
            vec![client("c1", ""), client("c2", "...")],
            &[],
            &[],
        );
        for id in ["1", "2", "3"] {
            assert_eq!(outcome(&placements, id), &left(Reason::EmptyName, &[]));
        }
    }

    #[test]
    fn no_client_is_no_match_with_empty_candidates_even_for_shared_names() {
        let placements = place_orgs(
            vec![org("1", "Initech"), org("2", "INITECH")],
            vec![client("c1", "Initrode")],
            &[],
            &[],
        );
        assert_eq!(outcome(&placements, "1"), &left(Reason::NoMatch, &[]));
        assert_eq!(outcome(&placements, "2"), &left(Reason::NoMatch, &[]));
    }

    #[test]
    fn no_match_suggests_clients_that_differ_only_by_legal_form() {
        let placements = place_orgs(
            vec![org("1", "Acme Inc"), org("2", "Globex")],
            vec![
                client("c3", "The Acme Company Ltd."),
                client("c1", "Acme Incorporated"),
                client("c2", "Acme Industries"),
                client("c4", "Globex Corporation"),
                client("c5", "Acme"),
            ],
            &[],
            &[],
        );
        assert_eq!(
            outcome(&placements, "1"),
            &unplaced(Reason::NoMatch, Vec::new(), strings(&["c1", "c3", "c5"]))
        );
        assert_eq!(
            outcome(&placements, "2"),
            &unplaced(Reason::NoMatch, Vec::new(), strings(&["c4"]))
        );
    }

    #[test]
    fn suggestions_are_only_for_no_match() {
        let placements = place_orgs(
            vec![org("1", "Acme"), org("2", "Umbrella")],
            vec![
                client("c1", "Acme"),
                client("c2", "Acme Ltd"),
                client("c3", "Umbrella"),
                client("c4", "umbrella!"),
                client("c5", "Umbrella Corp"),
            ],
            &[],
            &[],
        );
        assert_eq!(outcome(&placements, "1"), &linked("c1", &[Evidence::Name]));
        assert_eq!(
            outcome(&placements, "2"),
            &left(Reason::MultipleClients, &["c3", "c4"])
        );
    }

    #[test]
    fn two_clients_with_one_normalized_name_are_multiple_clients() {
        let placements = place_orgs(
            vec![org("1", "Smith-Jones")],
            vec![
                client("10", "Smith Jones"),
                client("9", "smith  jones"),
                client("11", "x"),
            ],
            &[],
            &[],
        );
        assert_eq!(
            outcome(&placements, "1"),
            &left(Reason::MultipleClients, &["9", "10"])
        );
    }

    #[test]
    fn a_manually_linked_client_still_counts_for_uniqueness() {
        let placements = place_orgs(
            vec![org("1", "Acme"), org("2", "Other")],
            vec![client("c1", "Acme"), client("c2", "ACME")],
            &[("2", "c1")],
            &[],
        );
        assert_eq!(
            outcome(&placements, "1"),
            &left(Reason::MultipleClients, &["c1", "c2"])
        );
    }

    #[test]
    fn organizations_sharing_a_name_are_all_multiple_organizations() {
        let placements = place_orgs(
            vec![org("1", "Acme"), org("2", "A.C.M.E."), org("3", "Beta")],
            vec![client("c1", "acme"), client("c2", "Beta")],
            &[],
            &[],
        );
        assert_eq!(
            outcome(&placements, "1"),
            &left(Reason::MultipleOrganizations, &["c1"])
        );
        assert_eq!(
            outcome(&placements, "2"),
            &left(Reason::MultipleOrganizations, &["c1"])
        );
        assert_eq!(outcome(&placements, "3"), &linked("c2", &[Evidence::Name]));
    }

    #[test]
    fn ignored_and_manually_linked_twins_still_make_a_name_ambiguous() {
        let placements = place_orgs(
            vec![
                org("1", "Acme"),
                org("2", "Acme"),
                org("3", "Beta"),
                org("4", "Beta"),
            ],
            vec![client("c1", "Acme"), client("c2", "Beta")],
            &[("4", "c9")],
            &["2"],
        );
        assert_eq!(placements.len(), 2);
        assert_eq!(
            outcome(&placements, "1"),
            &left(Reason::MultipleOrganizations, &["c1"])
        );
        assert_eq!(
            outcome(&placements, "3"),
            &left(Reason::MultipleOrganizations, &["c2"])
        );
    }

    #[test]
    fn a_client_held_by_another_manual_link_is_target_taken() {
        let placements = place_orgs(
            vec![org("1", "Acme"), org("2", "Acme Holdings")],
            vec![client("c1", "Acme")],
            &[("2", "c1")],
            &[],
        );
        assert_eq!(placements.len(), 1);
        assert_eq!(
            outcome(&placements, "1"),
            &left(Reason::TargetTaken, &["c1"])
        );
    }

    #[test]
    fn ignored_and_manually_linked_organizations_are_not_placed() {
        let placements = place_orgs(
            vec![org("1", "Acme"), org("2", "Beta"), org("3", "Gamma")],
            vec![
                client("c1", "Acme"),
                client("c2", "Beta"),
                client("c3", "Gamma"),
            ],
            &[("1", "c2")],
            &["3"],
        );
        let ids: Vec<&str> = placements.iter().map(|p| p.source_id.as_str()).collect();
        assert_eq!(ids, vec!["2"]);
        // Organization 1 holds c2 by hand, so 2 cannot take it.
        assert_eq!(
            outcome(&placements, "2"),
            &left(Reason::TargetTaken, &["c2"])
        );
    }

    #[test]
    fn placements_are_sorted_by_id_and_a_repeated_id_keeps_its_first_record() {
        let placements = place_orgs(
            vec![
                org("b", "Beta"),
                org("10", "Ten"),
                org("9", "Nine"),
                org("a", "Alpha"),
                org("9", "Acme"),
            ],
            vec![client("c1", "Acme"), client("c9", "Nine")],
            &[],
            &[],
        );
        let ids: Vec<&str> = placements.iter().map(|p| p.source_id.as_str()).collect();
        assert_eq!(ids, vec!["9", "10", "a", "b"]);
        assert_eq!(outcome(&placements, "9"), &linked("c9", &[Evidence::Name]));
    }

    #[test]
    fn a_repeated_client_id_counts_once() {
        let placements = place_orgs(
            vec![org("1", "Acme")],
            vec![client("c1", "Acme"), client("c1", "Acme")],
            &[],
            &[],
        );
        assert_eq!(outcome(&placements, "1"), &linked("c1", &[Evidence::Name]));
    }

    // --- configurations: links ------------------------------------------------------------------

    #[test]
    fn a_unique_serial_links() {
        let out = place_one(
            itg("1", "o1").serial(" abc12345 "),
            vec![
                scp("s1", "c1").serial("ABC12345"),
                scp("s2", "c1").serial("XYZ98765"),
            ],
        );
        assert_eq!(out, linked("s1", &[Evidence::Serial]));
    }

    #[test]
    fn a_unique_mac_links_whatever_its_notation() {
        let out = place_one(
            itg("1", "o1").macs(&["18-5E-0F-ED-99-9J", "00-1A-2B-3C-4D-5E"]),
            vec![scp("s1", "c1").macs(&["aa:bb:cc:dd:ee:00", "001a.2b3c.4d5e"])],
        );
        assert_eq!(out, linked("s1", &[Evidence::Mac]));
    }

    #[test]
    fn evidence_lists_every_identifier_that_agrees_in_enum_order() {
        let out = place_one(
            itg("1", "o1")
                .host("TY-DC01")
                .macs(&["00:1a:2b:3c:4d:5e"])
                .serial("SN-0001"),
            vec![
                scp("s1", "c1")
                    .serial("sn-0001")
                    .macs(&["00:1A:2B:3C:4D:5E"])
                    .host("ty-dc01.corp.local"),
            ],
        );
        assert_eq!(
            out,
            linked("s1", &[Evidence::Serial, Evidence::Mac, Evidence::Hostname])
        );
        // A hostname that differs does not stop a strong link; it is just not evidence.
        let out = place_one(
            itg("1", "o1").serial("SN-0001").host("old-name"),
            vec![scp("s1", "c1").serial("SN-0001").host("new-name")],
        );
        assert_eq!(out, linked("s1", &[Evidence::Serial]));
    }

    #[test]
    fn a_unique_hostname_links_on_its_first_label() {
        let out = place_one(
            itg("1", "o1").host("ty-dc01.corp.local"),
            vec![
                scp("s1", "c1").host("TY-DC01"),
                scp("s2", "c1").host("ty-dc02"),
            ],
        );
        assert_eq!(out, linked("s1", &[Evidence::Hostname]));
    }

    #[test]
    fn similar_hostnames_never_link() {
        let out = place_one(
            itg("1", "o1").host("ty-ws02"),
            vec![scp("s1", "c1").host("ty-ws02-old")],
        );
        assert_eq!(out, left(Reason::NoMatch, &[]));
        let out = place_one(
            itg("1", "o1").host("ty-ws02-old"),
            vec![scp("s1", "c1").host("ty-ws02")],
        );
        assert_eq!(out, left(Reason::NoMatch, &[]));
    }

    #[test]
    fn ip_addresses_and_display_names_are_not_hostnames() {
        let out = place_one(
            itg("1", "o1").host("10.0.0.5"),
            vec![scp("s1", "c1").host("10.0.0.5")],
        );
        assert_eq!(out, left(Reason::NoMatch, &[]));
        let mut named = itg("2", "o1");
        named.name = "TY-DC01".into();
        let mut scopable = scp("s1", "c1").host("ty-dc01");
        scopable.name = "TY-DC01".into();
        assert_eq!(place_one(named, vec![scopable]), left(Reason::NoMatch, &[]));
    }

    #[test]
    fn a_hostname_link_survives_missing_identifiers_on_one_side() {
        let out = place_one(
            itg("1", "o1")
                .host("srv1")
                .serial("AAA111")
                .macs(&["00:11:22:33:44:55"]),
            vec![scp("s1", "c1").host("SRV1")],
        );
        assert_eq!(out, linked("s1", &[Evidence::Hostname]));
    }

    // --- configurations: unplaced ---------------------------------------------------------------

    #[test]
    fn a_strong_match_with_a_different_serial_is_a_conflict() {
        let out = place_one(
            itg("1", "o1")
                .serial("SERIAL-A")
                .macs(&["00:11:22:33:44:55"]),
            vec![
                scp("s1", "c1")
                    .serial("SERIAL-B")
                    .macs(&["00-11-22-33-44-55"]),
            ],
        );
        assert_eq!(out, left(Reason::Conflict, &["s1"]));
    }

    #[test]
    fn a_serial_and_a_mac_pointing_apart_are_a_conflict() {
        let out = place_one(
            itg("1", "o1")
                .serial("SERIAL-A")
                .macs(&["00:11:22:33:44:55"]),
            vec![
                scp("s2", "c1").macs(&["00:11:22:33:44:55"]),
                scp("s1", "c1").serial("SERIAL-A"),
            ],
        );
        assert_eq!(out, left(Reason::Conflict, &["s1", "s2"]));
    }

    #[test]
    fn macs_pointing_at_several_configurations_are_multiple_configurations() {
        let out = place_one(
            itg("1", "o1").macs(&["00:11:22:33:44:55", "00:11:22:33:44:66"]),
            vec![
                scp("s1", "c1").macs(&["00:11:22:33:44:55"]),
                scp("s2", "c1").macs(&["00:11:22:33:44:66"]),
            ],
        );
        assert_eq!(out, left(Reason::MultipleConfigurations, &["s1", "s2"]));
    }

    #[test]
    fn a_hostname_contradicted_by_serial_or_macs_is_a_conflict() {
        let out = place_one(
            itg("1", "o1").host("srv1").serial("SERIAL-A"),
            vec![scp("s1", "c1").host("srv1").serial("SERIAL-B")],
        );
        assert_eq!(out, left(Reason::Conflict, &["s1"]));
        let out = place_one(
            itg("1", "o1").host("srv1").macs(&["00:11:22:33:44:55"]),
            vec![scp("s1", "c1").host("srv1").macs(&["00:11:22:33:44:66"])],
        );
        assert_eq!(out, left(Reason::Conflict, &["s1"]));
    }

    #[test]
    fn several_hostname_candidates_are_multiple_configurations() {
        let out = place_one(
            itg("1", "o1").host("srv1"),
            vec![
                scp("s2", "c1").host("SRV1.example.com"),
                scp("s1", "c1").host("srv1"),
            ],
        );
        assert_eq!(out, left(Reason::MultipleConfigurations, &["s1", "s2"]));
    }

    #[test]
    fn nothing_in_common_is_no_match_with_empty_candidates() {
        let out = place_one(
            itg("1", "o1").serial("SERIAL-A").host("srv1"),
            vec![scp("s1", "c1").serial("SERIAL-B").host("srv2")],
        );
        assert_eq!(out, left(Reason::NoMatch, &[]));
        assert_eq!(
            place_one(itg("1", "o1"), vec![scp("s1", "c1")]),
            left(Reason::NoMatch, &[])
        );
    }

    #[test]
    fn a_value_shared_by_two_scopable_configurations_is_not_usable() {
        // The shared serial cannot pick one, and does not contradict the hostname either.
        let out = place_one(
            itg("1", "o1").serial("SHARED-1").host("srv1"),
            vec![
                scp("s1", "c1").serial("SHARED-1").host("srv1"),
                scp("s2", "c1").serial("shared-1"),
            ],
        );
        assert_eq!(out, linked("s1", &[Evidence::Hostname]));
        let out = place_one(
            itg("1", "o1").macs(&["00:11:22:33:44:55"]),
            vec![
                scp("s1", "c1").macs(&["00:11:22:33:44:55"]),
                scp("s2", "c1").macs(&["00-11-22-33-44-55"]),
            ],
        );
        assert_eq!(out, left(Reason::NoMatch, &[]));
    }

    #[test]
    fn a_value_shared_with_another_client_stays_usable() {
        let placements = Configs {
            parents: pairs(&[("o1", "c1"), ("o2", "c2")]),
            ..configs(
                vec![itg("1", "o1").serial("SN-1")],
                vec![
                    scp("s1", "c1").serial("SN-1"),
                    scp("s2", "c2").serial("SN-1"),
                ],
            )
        }
        .place();
        assert_eq!(
            outcome(&placements, "1"),
            &linked("s1", &[Evidence::Serial])
        );
    }

    #[test]
    fn only_the_parent_clients_configurations_are_considered() {
        let placements = Configs {
            parents: pairs(&[("o1", "c1"), ("o2", "c2")]),
            ..configs(
                vec![itg("1", "o1").serial("SN-1").host("srv1")],
                vec![scp("s2", "c2").serial("SN-1").host("srv1")],
            )
        }
        .place();
        assert_eq!(outcome(&placements, "1"), &left(Reason::NoMatch, &[]));
    }

    #[test]
    fn an_unlinked_or_doubly_linked_organization_is_parent_unplaced() {
        let placements = Configs {
            parents: pairs(&[
                ("o1", "c1"),
                ("o2", "c1"),
                ("o2", "c2"),
                ("o3", "c1"),
                ("o3", "c1"),
            ]),
            ..configs(
                vec![
                    itg("1", "o9").serial("SN-1"),
                    itg("2", "o2").serial("SN-2"),
                    itg("3", "o3").serial("SN-3"),
                ],
                vec![
                    scp("s1", "c1").serial("SN-1"),
                    scp("s2", "c1").serial("SN-2"),
                    scp("s3", "c1").serial("SN-3"),
                ],
            )
        }
        .place();
        assert_eq!(
            outcome(&placements, "1"),
            &left(Reason::ParentUnplaced, &[])
        );
        assert_eq!(
            outcome(&placements, "2"),
            &left(Reason::ParentUnplaced, &[])
        );
        // The same pair listed twice is still exactly one client.
        assert_eq!(
            outcome(&placements, "3"),
            &linked("s3", &[Evidence::Serial])
        );
    }

    #[test]
    fn archived_configurations_are_never_linked_and_say_so_first() {
        let mut archived = itg("1", "o1").serial("SN-1");
        archived.archived = true;
        let mut orphan = itg("2", "o9").serial("SN-2");
        orphan.archived = true;
        let placements =
            configs(vec![archived, orphan], vec![scp("s1", "c1").serial("SN-1")]).place();
        assert_eq!(outcome(&placements, "1"), &left(Reason::Archived, &[]));
        assert_eq!(outcome(&placements, "2"), &left(Reason::Archived, &[]));
    }

    #[test]
    fn two_configurations_wanting_one_target_both_stay_unlinked() {
        let placements = configs(
            vec![
                itg("1", "o1").serial("SN-1"),
                itg("2", "o1").host("srv1"),
                itg("3", "o1").serial("SN-3"),
            ],
            vec![
                scp("s1", "c1").serial("SN-1").host("srv1"),
                scp("s3", "c1").serial("SN-3"),
            ],
        )
        .place();
        assert_eq!(
            outcome(&placements, "1"),
            &left(Reason::TargetTaken, &["s1"])
        );
        assert_eq!(
            outcome(&placements, "2"),
            &left(Reason::TargetTaken, &["s1"])
        );
        assert_eq!(
            outcome(&placements, "3"),
            &linked("s3", &[Evidence::Serial])
        );
    }

    #[test]
    fn a_manually_held_target_is_never_linked_again() {
        let placements = Configs {
            manual: pairs(&[("9", "s1")]),
            ..configs(
                vec![itg("1", "o1").serial("SN-1"), itg("2", "o1").host("srv1")],
                vec![scp("s1", "c1").serial("SN-1").host("srv1")],
            )
        }
        .place();
        assert_eq!(
            outcome(&placements, "1"),
            &left(Reason::TargetTaken, &["s1"])
        );
        assert_eq!(
            outcome(&placements, "2"),
            &left(Reason::TargetTaken, &["s1"])
        );
    }

    #[test]
    fn a_serial_on_a_manually_held_target_is_not_traded_for_a_hostname() {
        let placements = Configs {
            manual: pairs(&[("9", "s1")]),
            ..configs(
                vec![itg("1", "o1").serial("SN-1").host("srv1")],
                vec![scp("s1", "c1").serial("SN-1"), scp("s2", "c1").host("srv1")],
            )
        }
        .place();
        assert_eq!(
            outcome(&placements, "1"),
            &left(Reason::TargetTaken, &["s1"])
        );
    }

    #[test]
    fn ignored_and_manually_linked_configurations_are_not_placed() {
        let placements = Configs {
            manual: pairs(&[("1", "s2")]),
            ignored: strings(&["2"]),
            ..configs(
                vec![
                    itg("1", "o1").serial("SN-1"),
                    itg("2", "o1").serial("SN-2"),
                    itg("3", "o1").serial("SN-3"),
                ],
                vec![
                    scp("s1", "c1").serial("SN-1"),
                    scp("s2", "c1").serial("SN-2"),
                    scp("s3", "c1").serial("SN-3"),
                ],
            )
        }
        .place();
        let ids: Vec<&str> = placements.iter().map(|p| p.source_id.as_str()).collect();
        assert_eq!(ids, vec!["3"]);
    }

    #[test]
    fn a_repeated_configuration_id_keeps_its_first_record() {
        let placements = configs(
            vec![itg("1", "o1").serial("SN-1"), itg("1", "o1").serial("SN-2")],
            vec![
                scp("s1", "c1").serial("SN-1"),
                scp("s2", "c1").serial("SN-2"),
            ],
        )
        .place();
        assert_eq!(placements.len(), 1);
        assert_eq!(
            outcome(&placements, "1"),
            &linked("s1", &[Evidence::Serial])
        );
    }

    #[test]
    fn placeholder_serials_never_link() {
        for placeholder in [
            "To Be Filled By O.E.M.",
            "Default string",
            "0000000",
            "N/A",
            "abc",
        ] {
            let out = place_one(
                itg("1", "o1").serial(placeholder),
                vec![scp("s1", "c1").serial(placeholder)],
            );
            assert_eq!(out, left(Reason::NoMatch, &[]), "{placeholder}");
            // Nor do they contradict a hostname.
            let out = place_one(
                itg("1", "o1").serial(placeholder).host("srv1"),
                vec![scp("s1", "c1").serial("REAL-SERIAL").host("srv1")],
            );
            assert_eq!(out, linked("s1", &[Evidence::Hostname]), "{placeholder}");
        }
    }

    #[test]
    fn placeholder_macs_never_link() {
        for placeholder in [
            "00:00:00:00:00:00",
            "FF:FF:FF:FF:FF:FF",
            "02:00:4E:43:50:49",
            "00:50:56:C0:00:08",
            "0a:00:27:00:00:00",
            "01:00:5e:00:00:fb",
        ] {
            let out = place_one(
                itg("1", "o1").macs(&[placeholder]),
                vec![scp("s1", "c1").macs(&[placeholder])],
            );
            assert_eq!(out, left(Reason::NoMatch, &[]), "{placeholder}");
        }
    }

    // --- properties ---------------------------------------------------------------------------

    /// Names drawn from a small pool of spellings, so that collisions are frequent.
    fn name() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "Acme",
            "ACME",
            "A.C.M.E.",
            "Acme Inc",
            "acme, inc.",
            "Beta",
            "beta ",
            "Gamma-Ray",
            "gamma ray",
            "O'Brien",
            "OBrien",
            "",
            "...",
            "Ｂｅｔａ",
            "Delta Ltd",
        ])
        .prop_map(str::to_string)
    }

    fn org_input() -> impl Strategy<Value = OrganizationMatch> {
        // Ids are unique (a repeated id keeps its first record, which is order-dependent by
        // design and tested on its own).
        let orgs = prop::collection::vec(name(), 0..10);
        let clients = prop::collection::vec(name(), 0..8);
        let manual = prop::collection::vec((0u8..12, 0u8..8), 0..3);
        let ignored = prop::collection::vec(0u8..12, 0..3);
        (orgs, clients, manual, ignored).prop_map(|(orgs, clients, manual, ignored)| {
            OrganizationMatch {
                organizations: orgs
                    .iter()
                    .enumerate()
                    .map(|(i, n)| org(&i.to_string(), n))
                    .collect(),
                clients: clients
                    .iter()
                    .enumerate()
                    .map(|(i, n)| client(&format!("c{i}"), n))
                    .collect(),
                manual_links: manual
                    .iter()
                    .map(|(o, c)| Pair {
                        source_id: o.to_string(),
                        scopable_id: format!("c{c}"),
                    })
                    .collect(),
                ignored: ignored.iter().map(u8::to_string).collect(),
            }
        })
    }

    fn serial() -> impl Strategy<Value = Option<String>> {
        prop::option::of(
            prop::sample::select(vec![
                "SN-1",
                "sn-1",
                "SN-2",
                "SN-3",
                "N/A",
                "0000",
                "Default string",
            ])
            .prop_map(str::to_string),
        )
    }

    fn macs() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(
            prop::sample::select(vec![
                "00:11:22:33:44:01",
                "00-11-22-33-44-01",
                "00:11:22:33:44:02",
                "00:11:22:33:44:03",
                "00:00:00:00:00:00",
                "02:00:4e:43:50:49",
            ])
            .prop_map(str::to_string),
            0..3,
        )
    }

    fn hostname() -> impl Strategy<Value = Option<String>> {
        prop::option::of(
            prop::sample::select(vec![
                "srv1",
                "SRV1.corp.local",
                "srv2",
                "srv2-old",
                "10.0.0.1",
            ])
            .prop_map(str::to_string),
        )
    }

    fn config_input() -> impl Strategy<Value = ConfigurationMatch> {
        let itglue = prop::collection::vec(
            (
                0u8..3,
                serial(),
                macs(),
                hostname(),
                prop::bool::weighted(0.1),
            ),
            0..8,
        );
        let scopable = prop::collection::vec((0u8..3, serial(), macs(), hostname()), 0..8);
        let manual = prop::collection::vec((0u8..10, 0u8..10), 0..2);
        let ignored = prop::collection::vec(0u8..10, 0..2);
        (itglue, scopable, manual, ignored).prop_map(|(itglue, scopable, manual, ignored)| {
            ConfigurationMatch {
                configurations: itglue
                    .into_iter()
                    .enumerate()
                    .map(
                        |(id, (org, serial, macs, hostname, archived))| Configuration {
                            serial_number: serial,
                            mac_addresses: macs,
                            hostname,
                            archived,
                            ..itg(&id.to_string(), &format!("o{org}"))
                        },
                    )
                    .collect(),
                scopable_configurations: scopable
                    .into_iter()
                    .enumerate()
                    .map(
                        |(id, (client, serial, macs, hostname))| ScopableConfiguration {
                            serial_number: serial,
                            mac_addresses: macs,
                            hostname,
                            ..scp(&format!("s{id}"), &format!("c{client}"))
                        },
                    )
                    .collect(),
                // o2 has no client: its configurations are parent-unplaced.
                parents: pairs(&[("o0", "c0"), ("o1", "c1")]),
                manual_links: manual
                    .iter()
                    .map(|(i, s)| Pair {
                        source_id: i.to_string(),
                        scopable_id: format!("s{s}"),
                    })
                    .collect(),
                ignored: ignored.iter().map(u8::to_string).collect(),
            }
        })
    }

    proptest! {
        #[test]
        fn clients_sharing_a_normalized_name_are_never_linked(input in org_input()) {
            // A repeated client id is one client, read from its first record.
            let mut per_name: HashMap<String, HashSet<&str>> = HashMap::new();
            for c in first_of_each_id(&input.clients, |c| &c.id) {
                per_name.entry(normalize_name(&c.name)).or_default().insert(&c.id);
            }
            let placements = place(&MatchInput::Organizations(input.clone()));
            for p in &placements {
                if let Outcome::Linked(link) = &p.outcome {
                    let holder = input.clients.iter().find(|c| c.id == link.scopable_id);
                    let holder = holder.map(|c| normalize_name(&c.name)).unwrap_or_default();
                    prop_assert_eq!(per_name[&holder].len(), 1, "{:?}", p);
                    prop_assert!(!holder.is_empty());
                }
            }
        }

        #[test]
        fn shuffling_organizations_never_changes_the_placements(
            (input, orgs, clients) in org_input().prop_flat_map(|input| {
                let orgs = Just(input.organizations.clone()).prop_shuffle();
                let clients = Just(input.clients.clone()).prop_shuffle();
                (Just(input), orgs, clients)
            })
        ) {
            let before = place(&MatchInput::Organizations(input.clone()));
            let shuffled = OrganizationMatch { organizations: orgs, clients, ..input };
            prop_assert_eq!(before, place(&MatchInput::Organizations(shuffled)));
        }

        #[test]
        fn shuffling_configurations_never_changes_the_placements(
            (input, itglue, scopable) in config_input().prop_flat_map(|input| {
                let itglue = Just(input.configurations.clone()).prop_shuffle();
                let scopable = Just(input.scopable_configurations.clone()).prop_shuffle();
                (Just(input), itglue, scopable)
            })
        ) {
            let before = place(&MatchInput::Configurations(input.clone()));
            let shuffled = ConfigurationMatch {
                configurations: itglue,
                scopable_configurations: scopable,
                ..input
            };
            prop_assert_eq!(before, place(&MatchInput::Configurations(shuffled)));
        }

        #[test]
        fn every_link_is_unique_and_inside_the_parent_client(input in config_input()) {
            let placements = place(&MatchInput::Configurations(input.clone()));
            let mut taken = HashSet::new();
            for p in &placements {
                if let Outcome::Linked(link) = &p.outcome {
                    prop_assert!(taken.insert(link.scopable_id.clone()), "{:?}", placements);
                    prop_assert!(!link.evidence.is_empty());
                    let config = input.configurations.iter().find(|c| c.id == p.source_id);
                    let target = input.scopable_configurations.iter().find(|s| s.id == link.scopable_id);
                    let (Some(config), Some(target)) = (config, target) else {
                        return Err(TestCaseError::fail("link names unknown records"));
                    };
                    prop_assert!(!config.archived);
                    prop_assert_eq!(
                        format!("c{}", &config.organization_id[1..]),
                        target.client_id.clone()
                    );
                    prop_assert!(!input.manual_links.iter().any(|m| m.scopable_id == target.id));
                }
            }
            let ids: Vec<&str> = placements.iter().map(|p| p.source_id.as_str()).collect();
            let mut sorted = ids.clone();
            sorted.sort_by(|a, b| compare_ids(a, b));
            sorted.dedup();
            prop_assert_eq!(ids, sorted);
        }

        #[test]
        fn placeholder_identifiers_never_produce_a_link(
            itglue in prop::collection::vec((0u8..6, 0usize..PLACEHOLDER_SERIALS_FOR_TESTS.len(), 0usize..PLACEHOLDER_MACS_FOR_TESTS.len()), 1..6),
            scopable in prop::collection::vec((0u8..6, 0usize..PLACEHOLDER_SERIALS_FOR_TESTS.len(), 0usize..PLACEHOLDER_MACS_FOR_TESTS.len()), 1..6),
        ) {
            let configurations = itglue
                .iter()
                .map(|&(id, s, m)| itg(&id.to_string(), "o1")
                    .serial(PLACEHOLDER_SERIALS_FOR_TESTS[s])
                    .macs(&[PLACEHOLDER_MACS_FOR_TESTS[m]]))
                .collect();
            let scopable = scopable
                .iter()
                .map(|&(id, s, m)| scp(&format!("s{id}"), "c1")
                    .serial(PLACEHOLDER_SERIALS_FOR_TESTS[s])
                    .macs(&[PLACEHOLDER_MACS_FOR_TESTS[m]]))
                .collect();
            let placements = configs(configurations, scopable).place();
            prop_assert!(!placements.is_empty());
            for p in &placements {
                prop_assert!(!matches!(p.outcome, Outcome::Linked(_)), "{:?}", p);
            }
        }
    }

    /// Placeholders in the spellings people and tools actually write.
    const PLACEHOLDER_SERIALS_FOR_TESTS: [&str; 12] = [
        "To Be Filled By O.E.M.",
        "Default String",
        "system serial number",
        "None",
        "N/A",
        "Unknown",
        "OEM_Serial",
        "0123456789",
        "-1",
        "00000000",
        "xxxxxxxxxxx",
        "ab",
    ];

    const PLACEHOLDER_MACS_FOR_TESTS: [&str; 10] = [
        "00:00:00:00:00:00",
        "ff-ff-ff-ff-ff-ff",
        "FE:FF:FF:FF:FF:FF",
        "02:00:4e:43:50:49",
        "20:41:53:59:4e:ff",
        "33:50:6f:45:30:30",
        "50:50:54:50:30:30",
        "00:50:56:C0:00:01",
        "0a:00:27:00:00:00",
        "01:00:5e:7f:ff:fa",
    ];
}

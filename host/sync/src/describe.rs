//! Names and plain words for what an admin reviews.
//!
//! The one place that turns stored ids and reason codes into what a person reads: the
//! plain-word label of each reason a record could not be placed, a sentence saying why and
//! what to do next, the commands that resolve it, the names of the records on both sides, and
//! for configurations the identifiers that agreed or clashed. Nothing here prints: the command
//! line formats these values (every one through [`scopable_sandbox::display`]), and a page or an API can
//! serialize the same ones.

use crate::kinds::RecordKind;
use crate::kinds::id_order;
use scopable_store::Db;
use scopable_store::db::DbError;
use scopable_store::views;
use serde::Serialize;

/// One reason a record could not be placed, explained for a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Explanation {
    /// The reason as `unplaced` lists it (`multiple-clients`).
    pub reason: &'static str,
    /// Plain words, short enough for a badge ("matches multiple clients"); `{service}` as in
    /// `sentence` (see [`Explanation::label_for`]).
    pub label: &'static str,
    /// One sentence, starting in lower case so it reads after the label and a colon: why the
    /// record was left unlinked, and what to do next. `{service}` stands for the connector's
    /// service (its manifest's display name): show it with [`Explanation::sentence_for`].
    pub sentence: &'static str,
    /// What resolves it, in the order to try.
    pub steps: &'static [Step],
}

/// `text` with `{service}` replaced by the connector's service name.
fn for_service(text: &str, service: &str) -> String {
    text.replace("{service}", service)
}

impl Explanation {
    /// The label, naming `service` (the connector's display name).
    pub fn label_for(&self, service: &str) -> String {
        for_service(self.label, service)
    }

    /// The sentence, naming `service` (the connector's display name).
    pub fn sentence_for(&self, service: &str) -> String {
        for_service(self.sentence, service)
    }
}

/// Something a person can do about an unplaced record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Find the right Scopable record by name or identifier.
    Search,
    /// Link the record by hand.
    Link,
    /// Link the configuration's organization by hand.
    LinkOrganization,
    /// Never link the record, and stop listing it.
    Ignore,
    /// Sync this kind again, once what was wrong has been put right.
    SyncAgain,
}

/// A command that resolves an unplaced record, with what it is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Command {
    /// What it does, in plain words ("link it by hand").
    pub purpose: &'static str,
    /// The command line; what is not known yet is a placeholder in capitals (`CLIENT_ID`).
    pub command: String,
}

use Step::{Ignore, Link, LinkOrganization, Search, SyncAgain};

/// Why organizations are left unplaced (`matching.md`), explained.
pub const ORGANIZATION_REASONS: &[Explanation] = &[
    Explanation {
        reason: "no-match",
        label: "no match",
        sentence: "no Scopable client has this name; align the names (rename the Scopable client or the {service} organization so they line up) and sync again, or link it by hand",
        steps: &[Search, Link, Ignore, SyncAgain],
    },
    Explanation {
        reason: "multiple-clients",
        label: "matches multiple clients",
        sentence: "two of your clients normalize to the same name, so Scopable won't guess which one to use; rename one so the names are distinct and sync again, or link it by hand",
        steps: &[Link, Ignore, SyncAgain],
    },
    Explanation {
        reason: "multiple-organizations",
        label: "matches multiple organizations",
        sentence: "another {service} organization normalizes to the same name, so Scopable won't guess which one is this client; rename one of them in {service} and sync again, or link the right one by hand",
        steps: &[Link, Ignore, SyncAgain],
    },
    Explanation {
        reason: "target-taken",
        label: "match already taken",
        sentence: "its client is already linked by hand to another organization; link this one by hand to the right client, or ignore it",
        steps: &[Search, Link, Ignore],
    },
    Explanation {
        reason: "empty-name",
        label: "no name",
        sentence: "its name is empty (or only invisible characters), so there is nothing to match; name it in {service} and sync again, link it by hand, or ignore it",
        steps: &[Search, Link, Ignore, SyncAgain],
    },
    Explanation {
        reason: "invalid-record",
        label: "couldn't be read",
        sentence: "{service} sent this record in a form Scopable couldn't read, so it was counted as errored; check it in {service} and sync again",
        steps: &[SyncAgain],
    },
];

/// Why configurations are left unplaced (`matching.md`), explained.
pub const CONFIGURATION_REASONS: &[Explanation] = &[
    Explanation {
        reason: "parent-unplaced",
        label: "organization not placed",
        sentence: "a configuration only links after its {service} organization is matched to exactly one client; resolve the organization first, then sync configurations again",
        steps: &[LinkOrganization, SyncAgain, Ignore],
    },
    Explanation {
        reason: "no-match",
        label: "no match",
        sentence: "none of the client's configurations shares its serial number, MAC address or hostname; record one of them on both sides and sync again, or link it by hand",
        steps: &[Search, Link, Ignore, SyncAgain],
    },
    Explanation {
        reason: "multiple-configurations",
        label: "matches multiple configurations",
        sentence: "two or more of the client's configurations carry the same identifier, so Scopable won't guess which one to use; remove or correct the duplicate and sync again, or link it by hand",
        steps: &[Link, Ignore, SyncAgain],
    },
    Explanation {
        reason: "conflict",
        label: "identifiers disagree",
        sentence: "its identifiers point different ways (for example, the same hostname but different serial numbers), so Scopable won't guess; correct the wrong one and sync again, or link it by hand",
        steps: &[Link, Ignore, SyncAgain],
    },
    Explanation {
        reason: "target-taken",
        label: "match already taken",
        sentence: "another {service} configuration matches the same Scopable configuration, or it is linked by hand to another one; link the right one by hand, and ignore the other",
        steps: &[Link, Ignore],
    },
    Explanation {
        reason: "archived",
        label: "archived in {service}",
        sentence: "it is archived in {service}, and archived configurations are never linked; ignore it to take it off this list, or unarchive it in {service} and sync again",
        steps: &[Ignore, SyncAgain],
    },
    Explanation {
        reason: "invalid-record",
        label: "couldn't be read",
        sentence: "{service} sent this record in a form Scopable couldn't read, so it was counted as errored; check it in {service} and sync again",
        steps: &[SyncAgain],
    },
];

/// The reasons a record of `kind` can be left unplaced, explained.
pub fn reasons(kind: RecordKind) -> &'static [Explanation] {
    match kind {
        RecordKind::Organization => ORGANIZATION_REASONS,
        RecordKind::Configuration => CONFIGURATION_REASONS,
    }
}

/// The explanation of `reason` for a record of `kind`, or `None` for a reason this program
/// does not know.
pub fn explain(kind: RecordKind, reason: &str) -> Option<&'static Explanation> {
    reasons(kind).iter().find(|e| e.reason == reason)
}

/// The plain-word label of `reason` ("matches multiple clients"), the same for both kinds,
/// naming `service` where it says where a record is; a reason this program does not know is
/// its own label.
pub fn reason_label(reason: &str, service: &str) -> String {
    ORGANIZATION_REASONS
        .iter()
        .chain(CONFIGURATION_REASONS)
        .find(|e| e.reason == reason)
        .map_or(reason.to_string(), |e| e.label_for(service))
}

/// `label: sentence` for a record of `kind` left unplaced for `reason`, naming `service`.
pub fn reason_text(kind: RecordKind, reason: &str, service: &str) -> String {
    match explain(kind, reason) {
        Some(e) => format!("{}: {}", e.label_for(service), e.sentence_for(service)),
        None => {
            format!("{reason}: link it by hand, or ignore it; sync again once the records line up")
        }
    }
}

/// The title of the list of records of `kind` that could not be placed.
pub fn couldnt_place_title(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::Organization => "Organizations we couldn't place",
        RecordKind::Configuration => "Configurations we couldn't place",
    }
}

/// The commands that resolve a record of `kind` left unplaced for `reason`, for the connector
/// named `connector`. `record` is its id and `organization` the id of its organization
/// (configurations); each is a placeholder when `None`. A reason this program does not know
/// gets the commands every record has: link by hand, ignore.
pub fn resolving_commands(
    connector: &str,
    kind: RecordKind,
    reason: &str,
    record: Option<&str>,
    organization: Option<&str>,
) -> Vec<Command> {
    let steps: &[Step] = match explain(kind, reason) {
        Some(e) => e.steps,
        None => &[Link, Ignore],
    };
    let id = record.unwrap_or("ID");
    let k = kind.as_str();
    let (plural, target) = match kind {
        RecordKind::Organization => ("organizations", "CLIENT_ID"),
        RecordKind::Configuration => ("configurations", "CONFIGURATION_ID"),
    };
    steps
        .iter()
        .map(|step| match step {
            Search => Command {
                purpose: match kind {
                    RecordKind::Organization => "find the right client",
                    RecordKind::Configuration => "find the right configuration",
                },
                command: match kind {
                    RecordKind::Organization => "scopable-host search clients NAME".to_string(),
                    RecordKind::Configuration => {
                        "scopable-host search configurations NAME_HOSTNAME_SERIAL_OR_MAC"
                            .to_string()
                    }
                },
            },
            Link => Command {
                purpose: "link it by hand",
                command: format!("scopable-host {connector} link {k} {id} {target}"),
            },
            LinkOrganization => Command {
                purpose: "link its organization by hand",
                command: format!(
                    "scopable-host {connector} link organization {} CLIENT_ID",
                    organization.unwrap_or("ORGANIZATION_ID")
                ),
            },
            Ignore => Command {
                purpose: "never link it",
                command: format!("scopable-host {connector} ignore {k} {id}"),
            },
            SyncAgain => Command {
                purpose: "sync again",
                command: format!("scopable-host {connector} sync {plural}"),
            },
        })
        .collect()
}

/// The record kind a stored `kind` column names.
pub fn record_kind(stored: &str) -> Option<RecordKind> {
    match stored {
        "organization" => Some(RecordKind::Organization),
        "configuration" => Some(RecordKind::Configuration),
        _ => None,
    }
}

/// The name of a Scopable record: a client for `organization`, a configuration for
/// `configuration`; `None` when there is no such record.
pub fn scopable_name(db: &Db, kind: RecordKind, id: &str) -> Result<Option<String>, DbError> {
    match kind {
        RecordKind::Organization => views::client_name(db, id),
        RecordKind::Configuration => views::configuration_name(db, id),
    }
}

/// The names of Scopable records, in the order of `ids` (`None` for an id with no record).
pub fn scopable_names(
    db: &Db,
    kind: RecordKind,
    ids: &[String],
) -> Result<Vec<Option<String>>, DbError> {
    ids.iter().map(|id| scopable_name(db, kind, id)).collect()
}

/// The name of an source record as last received, or `None` when none is stored.
pub fn source_name(
    db: &Db,
    connector: &str,
    kind: RecordKind,
    id: &str,
) -> Result<Option<String>, DbError> {
    views::source_name(db, connector, kind.as_str(), id)
}

/// The identifiers a configuration carries that the matcher reads, as stored.
pub use scopable_store::views::Identifiers;

/// A Scopable configuration's identifiers, or `None` when there is no such configuration.
pub fn scopable_identifiers(db: &Db, id: &str) -> Result<Option<Identifiers>, DbError> {
    views::scopable_identifiers(db, id)
}

/// An source configuration's identifiers as last received, or `None` when they are not
/// stored (the record is unknown, or was stored before the host kept identifiers).
pub fn source_identifiers(
    db: &Db,
    connector: &str,
    id: &str,
) -> Result<Option<Identifiers>, DbError> {
    views::source_identifiers(db, connector, id)
}

/// An identifier the matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The serial number.
    Serial,
    /// A MAC address.
    Mac,
    /// The hostname's first DNS label.
    Hostname,
}

impl Field {
    /// Its name, as in a link's evidence.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Serial => "serial",
            Field::Mac => "mac",
            Field::Hostname => "hostname",
        }
    }
}

/// What one identifier says about two configurations, in the form the matcher compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clue {
    /// Both carry this value.
    Agrees {
        /// Which identifier.
        field: Field,
        /// The value (a MAC as `aa:bb:cc:dd:ee:ff`).
        value: String,
    },
    /// Both carry a usable value, and the values differ.
    Differs {
        /// Which identifier.
        field: Field,
        /// The source's value.
        source: String,
        /// The Scopable side's value.
        scopable: String,
    },
}

impl Clue {
    /// `serial ABC123`, or `serial ABC123 in IT Glue but XYZ789 in Scopable` (`service` names
    /// the source, the connector's display name). The values come from outside: make the text
    /// safe before showing it.
    pub fn words(&self, service: &str) -> String {
        match self {
            Clue::Agrees { field, value } => format!("{} {value}", field.as_str()),
            Clue::Differs {
                field,
                source,
                scopable,
            } => format!(
                "{} {source} in {service} but {scopable} in Scopable",
                field.as_str()
            ),
        }
    }
}

/// A MAC's 12 hex digits as `aa:bb:cc:dd:ee:ff`.
fn colon_mac(hex: &str) -> String {
    let chars: Vec<char> = hex.chars().collect();
    chars
        .chunks(2)
        .map(|pair| pair.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(":")
}

fn usable_macs(macs: &[String]) -> Vec<String> {
    let mut out: Vec<String> = macs
        .iter()
        .filter_map(|m| scopable_normalize::normalize_mac(m))
        .collect();
    out.dedup();
    out
}

/// What the identifiers of an source configuration and a Scopable one say, normalized as the
/// matcher normalizes them (placeholders are no evidence and never shown as agreeing): every
/// serial, MAC and hostname they share, and a serial (or a set of MACs) on which they
/// disagree. In the order serial, MAC, hostname.
pub fn compare(source: &Identifiers, scopable: &Identifiers) -> Vec<Clue> {
    use scopable_normalize::{normalize_hostname, normalize_serial};
    let mut clues = Vec::new();
    let serial = |i: &Identifiers| i.serial_number.as_deref().and_then(normalize_serial);
    match (serial(source), serial(scopable)) {
        (Some(a), Some(b)) if a == b => clues.push(Clue::Agrees {
            field: Field::Serial,
            value: a,
        }),
        (Some(a), Some(b)) => clues.push(Clue::Differs {
            field: Field::Serial,
            source: a,
            scopable: b,
        }),
        _ => {}
    }
    let (ours, theirs) = (
        usable_macs(&source.mac_addresses),
        usable_macs(&scopable.mac_addresses),
    );
    let shared: Vec<&String> = ours.iter().filter(|m| theirs.contains(m)).collect();
    if shared.is_empty()
        && let (Some(a), Some(b)) = (ours.first(), theirs.first())
    {
        clues.push(Clue::Differs {
            field: Field::Mac,
            source: colon_mac(a),
            scopable: colon_mac(b),
        });
    }
    for mac in shared {
        clues.push(Clue::Agrees {
            field: Field::Mac,
            value: colon_mac(mac),
        });
    }
    let host = |i: &Identifiers| i.hostname.as_deref().and_then(normalize_hostname);
    if let (Some(a), Some(b)) = (host(source), host(scopable))
        && a == b
    {
        clues.push(Clue::Agrees {
            field: Field::Hostname,
            value: a,
        });
    }
    clues
}

/// The values behind a configuration link's `evidence` (`serial`, `mac`, `hostname`): what
/// both sides share for each, from the stored records. When the source side is not known (or
/// no longer agrees, in a dry run), the Scopable side's value stands for it: a MAC only when
/// the Scopable record has exactly one.
pub fn evidence_values(
    evidence: &[String],
    source: Option<&Identifiers>,
    scopable: &Identifiers,
) -> Vec<Clue> {
    use scopable_normalize::{normalize_hostname, normalize_serial};
    let agreeing: Vec<Clue> = source
        .map(|i| compare(i, scopable))
        .unwrap_or_default()
        .into_iter()
        .filter(|c| matches!(c, Clue::Agrees { .. }))
        .collect();
    let mut out = Vec::new();
    for field in [Field::Serial, Field::Mac, Field::Hostname] {
        if !evidence.iter().any(|e| e == field.as_str()) {
            continue;
        }
        let found: Vec<&Clue> = agreeing
            .iter()
            .filter(|c| matches!(c, Clue::Agrees { field: f, .. } if *f == field))
            .collect();
        if !found.is_empty() {
            out.extend(found.into_iter().cloned());
            continue;
        }
        let fallback = match field {
            Field::Serial => scopable.serial_number.as_deref().and_then(normalize_serial),
            Field::Hostname => scopable.hostname.as_deref().and_then(normalize_hostname),
            Field::Mac => match usable_macs(&scopable.mac_addresses).as_slice() {
                [only] => Some(colon_mac(only)),
                _ => None,
            },
        };
        if let Some(value) = fallback {
            out.push(Clue::Agrees { field, value });
        }
    }
    out
}

/// One link, with the names on both sides, as `links` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LinkView {
    /// `organization` or `configuration`.
    pub kind: String,
    /// The record's id in its source, under the name scripts of the IT Glue connector read.
    pub itglue_id: String,
    /// The record's id in its source.
    pub source_id: String,
    /// The source record's name, as last received (`None` when not stored).
    pub name: Option<String>,
    /// The Scopable id.
    pub scopable_id: String,
    /// The Scopable record's name (`None` when the record is gone).
    pub scopable_name: Option<String>,
    /// `auto` or `manual`.
    pub source: String,
    /// The evidence names, as stored.
    pub evidence: serde_json::Value,
    /// When it was made.
    pub linked_at: String,
    /// For configurations, the values behind the evidence.
    #[serde(skip)]
    pub evidence_values: Vec<Clue>,
}

/// Every link of a connector with names and, for configurations, the evidence values; ordered
/// organizations first, then by id.
pub fn links(db: &Db, connector: &str) -> Result<Vec<LinkView>, DbError> {
    let mut rows = views::links(db, connector)?;
    rows.sort_by(|a, b| {
        b.kind
            .cmp(&a.kind)
            .then_with(|| id_order(&a.source_id, &b.source_id))
    });
    let mut out = Vec::with_capacity(rows.len());
    for views::LinkRow {
        kind,
        source_id,
        scopable_id,
        source,
        evidence,
        linked_at,
    } in rows
    {
        let evidence: serde_json::Value =
            serde_json::from_str(&evidence).unwrap_or_else(|_| serde_json::json!([]));
        let (name, scopable_name, evidence_values) = match record_kind(&kind) {
            Some(k) => {
                let values = if k == RecordKind::Configuration {
                    let names: Vec<String> = evidence
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|e| e.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    match scopable_identifiers(db, &scopable_id)? {
                        Some(target) => {
                            let source = source_identifiers(db, connector, &source_id)?;
                            evidence_values(&names, source.as_ref(), &target)
                        }
                        None => Vec::new(),
                    }
                } else {
                    Vec::new()
                };
                (
                    source_name(db, connector, k, &source_id)?,
                    scopable_name(db, k, &scopable_id)?,
                    values,
                )
            }
            None => (None, None, Vec::new()),
        };
        out.push(LinkView {
            itglue_id: source_id.clone(),
            kind,
            source_id,
            name,
            scopable_id,
            scopable_name,
            source,
            evidence,
            linked_at,
            evidence_values,
        });
    }
    Ok(out)
}

/// Where a configuration's organization stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParentState {
    /// Linked to this client (a sync of configurations has not run since).
    Linked {
        /// The client's id.
        client_id: String,
        /// The client's name.
        client_name: Option<String>,
    },
    /// Could not be placed, for this reason.
    Unplaced {
        /// The reason, as `unplaced` lists it.
        reason: String,
    },
    /// Ignored by an admin.
    Ignored,
    /// Not known (organizations were not synced, or it is gone from the source).
    Unknown,
}

/// A configuration's organization, as an unplaced configuration names it.
#[derive(Debug, Clone, Serialize)]
pub struct Parent {
    /// The organization's source id.
    pub organization_id: Option<String>,
    /// Its name, as last received.
    pub organization_name: Option<String>,
    /// Where it stands.
    #[serde(skip)]
    pub state: ParentState,
}

/// One record that could not be placed, with names, as `unplaced` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct UnplacedView {
    /// `organization` or `configuration`.
    pub kind: String,
    /// The record's id in its source, under the name scripts of the IT Glue connector read.
    pub itglue_id: String,
    /// The record's id in its source.
    pub source_id: String,
    /// The source record's name (for an unreadable record, what was wrong with it).
    pub name: String,
    /// Always `None`: an unplaced record has no Scopable record.
    pub scopable_name: Option<String>,
    /// The reason, as `matching.md` names it.
    pub reason: String,
    /// The reason in plain words.
    pub reason_label: String,
    /// The label, a colon, and the sentence: why, and what to do next.
    pub reason_text: String,
    /// The Scopable ids in play.
    pub candidates: Vec<String>,
    /// Their names, in the same order (`None` for an id with no record).
    pub candidate_names: Vec<Option<String>>,
    /// Near misses (organizations).
    pub suggestions: Vec<String>,
    /// Their names, in the same order (`None` for an id with no record).
    pub suggestion_names: Vec<Option<String>>,
    /// For configurations, its organization.
    #[serde(flatten)]
    pub parent: Option<Parent>,
    /// For configurations, what the identifiers say about each candidate (same order).
    #[serde(skip)]
    pub candidate_clues: Vec<Vec<Clue>>,
}

fn parent_of(db: &Db, connector: &str, source_id: &str) -> Result<Parent, DbError> {
    let organization_id = views::configuration_organization(db, connector, source_id)?;
    let Some(org) = organization_id else {
        return Ok(Parent {
            organization_id: None,
            organization_name: None,
            state: ParentState::Unknown,
        });
    };
    let organization_name = source_name(db, connector, RecordKind::Organization, &org)?;
    let linked = views::organization_link(db, connector, Some(&org))?;
    let ignored = views::organization_ignored(db, connector, &org)?;
    let reason = views::organization_unplaced_reason(db, connector, &org)?;
    let state = match (linked, ignored, reason) {
        (Some(client_id), _, _) => ParentState::Linked {
            client_name: scopable_name(db, RecordKind::Organization, &client_id)?,
            client_id,
        },
        (None, true, _) => ParentState::Ignored,
        (None, false, Some(reason)) => ParentState::Unplaced { reason },
        (None, false, None) => ParentState::Unknown,
    };
    Ok(Parent {
        organization_id: Some(org),
        organization_name,
        state,
    })
}

/// Every record of a connector that could not be placed and has no manual decision, with names,
/// reasons in plain words and, for configurations, the organization and what the identifiers
/// say about each candidate; ordered organizations first, then by id.
pub fn unplaced(db: &Db, connector: &str, service: &str) -> Result<Vec<UnplacedView>, DbError> {
    let mut rows = views::unplaced(db, connector)?;
    rows.sort_by(|a, b| {
        b.kind
            .cmp(&a.kind)
            .then_with(|| id_order(&a.source_id, &b.source_id))
    });
    let list = |text: &str| -> Vec<String> { serde_json::from_str(text).unwrap_or_default() };
    let mut out = Vec::with_capacity(rows.len());
    for views::UnplacedRow {
        kind,
        source_id,
        name,
        reason,
        candidates,
        suggestions,
    } in rows
    {
        let candidates = list(&candidates);
        let suggestions = list(&suggestions);
        let k = record_kind(&kind);
        let names = |ids: &[String]| match k {
            Some(k) => scopable_names(db, k, ids),
            None => Ok(vec![None; ids.len()]),
        };
        let candidate_names = names(&candidates)?;
        let suggestion_names = names(&suggestions)?;
        let (parent, candidate_clues) = if k == Some(RecordKind::Configuration) {
            let source = source_identifiers(db, connector, &source_id)?;
            let mut clues = Vec::with_capacity(candidates.len());
            for candidate in &candidates {
                let target = scopable_identifiers(db, candidate)?;
                clues.push(match (&source, target) {
                    (Some(source), Some(target)) => compare(source, &target),
                    _ => Vec::new(),
                });
            }
            (Some(parent_of(db, connector, &source_id)?), clues)
        } else {
            (None, Vec::new())
        };
        let (reason_label, reason_text) = match k {
            Some(k) => (
                reason_label(&reason, service),
                reason_text(k, &reason, service),
            ),
            None => (reason.clone(), reason.clone()),
        };
        out.push(UnplacedView {
            itglue_id: source_id.clone(),
            kind,
            source_id,
            name,
            scopable_name: None,
            reason,
            reason_label,
            reason_text,
            candidates,
            candidate_names,
            suggestions,
            suggestion_names,
            parent,
            candidate_clues,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::reason_name;
    use scopable_sandbox::sandbox::wit_types::Reason;

    /// The reasons `matching.md` lists for each kind.
    const MATCHING_ORGANIZATIONS: &[&str] = &[
        "no-match",
        "multiple-clients",
        "multiple-organizations",
        "target-taken",
        "empty-name",
        "invalid-record",
    ];
    const MATCHING_CONFIGURATIONS: &[&str] = &[
        "parent-unplaced",
        "no-match",
        "multiple-configurations",
        "conflict",
        "target-taken",
        "archived",
        "invalid-record",
    ];

    #[test]
    fn every_reason_of_each_kind_has_a_label_a_sentence_and_a_way_out() {
        for (kind, expected) in [
            (RecordKind::Organization, MATCHING_ORGANIZATIONS),
            (RecordKind::Configuration, MATCHING_CONFIGURATIONS),
        ] {
            let listed: Vec<&str> = reasons(kind).iter().map(|e| e.reason).collect();
            assert_eq!(listed, expected, "{kind:?}");
            for reason in expected {
                let e = explain(kind, reason).expect("explained");
                assert!(!e.label.is_empty() && e.label != *reason, "{reason}");
                // A sentence that reads after "label: ", in plain words, with a next step.
                assert!(e.sentence.len() > 40, "{reason}: {}", e.sentence);
                assert!(!e.sentence.ends_with('.'), "{reason}");
                if reason.contains('-') {
                    assert!(
                        !e.sentence.contains(*reason),
                        "{reason}: the code, not words"
                    );
                }
                assert!(
                    ["sync again", "link", "ignore", "sync configurations again"]
                        .iter()
                        .any(|step| e.sentence.contains(step)),
                    "{reason}: no next step in {:?}",
                    e.sentence
                );
                let commands = resolving_commands("itglue", kind, reason, Some("42"), None);
                assert!(!commands.is_empty(), "{reason}");
                assert!(
                    commands
                        .iter()
                        .all(|c| c.command.starts_with("scopable-host ")),
                    "{commands:?}"
                );
                assert_eq!(
                    reason_text(kind, reason, "Docuvault"),
                    format!(
                        "{}: {}",
                        e.label_for("Docuvault"),
                        e.sentence_for("Docuvault")
                    )
                );
                // Every service name in the words is the connector's own.
                let text = reason_text(kind, reason, "Docuvault");
                assert!(!text.contains("IT Glue") && !text.contains('{'), "{text}");
            }
        }
        // Every reason the contract can carry has words.
        for r in [
            Reason::NoMatch,
            Reason::MultipleClients,
            Reason::MultipleOrganizations,
            Reason::TargetTaken,
            Reason::EmptyName,
            Reason::InvalidRecord,
            Reason::ParentUnplaced,
            Reason::MultipleConfigurations,
            Reason::Conflict,
            Reason::Archived,
        ] {
            let code = reason_name(r);
            assert_ne!(reason_label(code, "IT Glue"), code, "{code} has no label");
        }
    }

    #[test]
    fn labels_use_the_guides_words() {
        // The setup guide's badge, and its words for an unmatched organization.
        assert_eq!(
            reason_label("multiple-clients", "IT Glue"),
            "matches multiple clients"
        );
        assert_eq!(reason_label("no-match", "IT Glue"), "no match");
        assert_eq!(
            reason_label("archived", "Docuvault"),
            "archived in Docuvault"
        );
        let e = explain(RecordKind::Organization, "multiple-clients").unwrap();
        assert!(
            e.sentence
                .starts_with("two of your clients normalize to the same name"),
            "{}",
            e.sentence
        );
        assert!(e.sentence.contains("link it by hand"));
        let e = explain(RecordKind::Organization, "no-match").unwrap();
        assert!(e.sentence.contains("align the names"), "{}", e.sentence);
        let e = explain(RecordKind::Configuration, "parent-unplaced").unwrap();
        assert!(
            e.sentence.contains("matched to exactly one client"),
            "{}",
            e.sentence
        );
        assert_eq!(
            couldnt_place_title(RecordKind::Organization),
            "Organizations we couldn't place"
        );
        // A reason this program does not know is shown as it is.
        assert_eq!(reason_label("something-new", "IT Glue"), "something-new");
    }

    #[test]
    fn commands_name_the_record_or_a_placeholder() {
        let org = RecordKind::Organization;
        let commands: Vec<String> =
            resolving_commands("itglue", org, "multiple-clients", Some("3100109"), None)
                .into_iter()
                .map(|c| c.command)
                .collect();
        assert_eq!(
            commands,
            [
                "scopable-host itglue link organization 3100109 CLIENT_ID",
                "scopable-host itglue ignore organization 3100109",
                "scopable-host itglue sync organizations",
            ]
        );
        let commands: Vec<String> = resolving_commands("itglue", org, "no-match", None, None)
            .into_iter()
            .map(|c| c.command)
            .collect();
        assert_eq!(commands[0], "scopable-host search clients NAME");
        assert_eq!(
            commands[1],
            "scopable-host itglue link organization ID CLIENT_ID"
        );
        let config = RecordKind::Configuration;
        let commands: Vec<String> = resolving_commands(
            "itglue",
            config,
            "parent-unplaced",
            Some("8200901"),
            Some("3100109"),
        )
        .into_iter()
        .map(|c| c.command)
        .collect();
        assert_eq!(
            commands,
            [
                "scopable-host itglue link organization 3100109 CLIENT_ID",
                "scopable-host itglue sync configurations",
                "scopable-host itglue ignore configuration 8200901",
            ]
        );
        // Unknown reasons still offer linking and ignoring.
        assert_eq!(
            resolving_commands("itglue", config, "new-reason", None, None).len(),
            2
        );
    }

    fn ids(serial: Option<&str>, macs: &[&str], hostname: Option<&str>) -> Identifiers {
        Identifiers {
            serial_number: serial.map(str::to_string),
            mac_addresses: macs.iter().map(|m| m.to_string()).collect(),
            hostname: hostname.map(str::to_string),
        }
    }

    #[test]
    fn clues_compare_as_the_matcher_normalizes() {
        let itglue = ids(
            Some("CZ2841AB7Q"),
            &["3C-52-82-1A-9F-01", "00:00:00:00:00:00"],
            Some("ty-fs01.corp.local"),
        );
        let scopable = ids(
            Some(" cz2841ab7q"),
            &["3c52.821a.9f01", "00-00-00-00-00-00"],
            Some("TY-FS01"),
        );
        let shown: Vec<String> = compare(&itglue, &scopable)
            .iter()
            .map(|c| c.words("IT Glue"))
            .collect();
        // The placeholder MAC both carry is not shown as agreeing.
        assert_eq!(
            shown,
            [
                "serial CZ2841AB7Q",
                "mac 3c:52:82:1a:9f:01",
                "hostname ty-fs01"
            ]
        );
        // Different usable serials clash; a placeholder serial neither agrees nor clashes.
        let clash = compare(
            &ids(Some("MXQ1234567"), &[], Some("ty-srv03")),
            &ids(Some("MXQ7654321"), &[], Some("TY-SRV03")),
        );
        assert_eq!(
            clash.iter().map(|c| c.words("IT Glue")).collect::<Vec<_>>(),
            [
                "serial MXQ1234567 in IT Glue but MXQ7654321 in Scopable",
                "hostname ty-srv03"
            ]
        );
        // The source is named by the connector's display name.
        assert_eq!(
            clash[0].words("Docuvault"),
            "serial MXQ1234567 in Docuvault but MXQ7654321 in Scopable"
        );
        assert!(
            compare(
                &ids(Some("To Be Filled By O.E.M."), &[], None),
                &ids(Some("To Be Filled By O.E.M."), &[], None)
            )
            .is_empty()
        );
    }

    #[test]
    fn evidence_values_show_what_linked_with_a_fallback_to_the_scopable_side() {
        let evidence = vec!["serial".to_string(), "mac".to_string()];
        let itglue = ids(Some("pc1xyz89"), &["8c:16:45:aa:01:02"], Some("laptop"));
        let scopable = ids(Some("PC1XYZ89"), &["8C:16:45:AA:01:02"], Some("laptop"));
        let shown: Vec<String> = evidence_values(&evidence, Some(&itglue), &scopable)
            .iter()
            .map(|c| c.words("IT Glue"))
            .collect();
        // Only the evidence the link rests on, though the hostnames agree too.
        assert_eq!(shown, ["serial PC1XYZ89", "mac 8c:16:45:aa:01:02"]);
        let shown: Vec<String> = evidence_values(&evidence, None, &scopable)
            .iter()
            .map(|c| c.words("IT Glue"))
            .collect();
        assert_eq!(shown, ["serial PC1XYZ89", "mac 8c:16:45:aa:01:02"]);
        // Two Scopable MACs and no source side: which one matched is not known.
        let two = ids(None, &["b8:ca:3a:01:02:03", "b8:ca:3a:01:02:04"], None);
        assert!(evidence_values(&["mac".to_string()], None, &two).is_empty());
    }

    #[test]
    fn names_and_views_come_from_the_stored_records() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path().join("d.db"), scopable_store::DEFAULT_ACCOUNT).unwrap();
        // Rows written as a sync would leave them, straight into the file.
        rusqlite::Connection::open(db.location().file().unwrap()).unwrap().execute_batch(
            r#"INSERT INTO clients (account, id, name) VALUES ('default', '109', 'Adventure Works'), ('default', '110', 'Adventure-Works');
               INSERT INTO source_records (account, connector, kind, source_id, name) VALUES
                   ('default', 'itglue', 'organization', '7', 'Adventure Works');
               INSERT INTO source_records (account, connector, kind, source_id, name, organization_id) VALUES
                   ('default', 'itglue', 'configuration', '70', 'AW-SRV01', '7');
               INSERT INTO unplaced (account, connector, kind, source_id, name, reason, candidates, suggestions) VALUES
                   ('default', 'itglue', 'organization', '7', 'Adventure Works', 'multiple-clients', '["109","110","999"]', '[]'),
                   ('default', 'itglue', 'configuration', '70', 'AW-SRV01', 'parent-unplaced', '[]', '[]');"#,
        )
        .unwrap();
        let rows = unplaced(&db, "itglue", "IT Glue").unwrap();
        assert_eq!(rows.len(), 2);
        let org = &rows[0];
        assert_eq!(org.reason_label, "matches multiple clients");
        assert_eq!(
            org.candidate_names,
            [
                Some("Adventure Works".to_string()),
                Some("Adventure-Works".to_string()),
                None
            ]
        );
        let json = serde_json::to_value(org).unwrap();
        assert_eq!(json["source_id"], "7");
        assert!(json["scopable_name"].is_null());
        assert!(json.get("organization_id").is_none(), "{json}");
        let config = &rows[1];
        let parent = config.parent.as_ref().unwrap();
        assert_eq!(parent.organization_name.as_deref(), Some("Adventure Works"));
        assert_eq!(
            parent.state,
            ParentState::Unplaced {
                reason: "multiple-clients".into()
            }
        );
        let json = serde_json::to_value(config).unwrap();
        assert_eq!(json["organization_id"], "7");
        assert_eq!(json["organization_name"], "Adventure Works");
        assert_eq!(
            scopable_name(&db, RecordKind::Organization, "110").unwrap(),
            Some("Adventure-Works".into())
        );
        assert_eq!(
            source_name(&db, "itglue", RecordKind::Organization, "8").unwrap(),
            None
        );
    }
}

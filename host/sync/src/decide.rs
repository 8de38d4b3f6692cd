//! Decisions by hand on a source record: link it (or change its match), ignore it, or reset
//! it. The command line and the runtime's API both decide through here, so both check, refuse
//! and explain the same way; neither a sync nor a rematch ever changes a manual decision.

use crate::app::{App, AppError, Exit};
use crate::kinds::RecordKind;
use crate::search::SearchKind;
use crate::sync::id_order;
use scopable_store::Db;
use scopable_store::review::{self as store, IgnoredRecord};
use scopable_store::views;

/// The code of a refusal because another record holds the target automatically (the API
/// answers it with 409).
pub const TARGET_TAKEN: &str = "target-taken";

/// What a manual link links a record to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkTarget<'a> {
    /// A Scopable id, as given.
    Id(&'a str),
    /// The one Scopable record a search finds ([`crate::search::search`]); for a
    /// configuration, within the client its organization is linked to.
    Find(&'a str),
}

/// A target that a manual link would take from the record automatically linked to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taking {
    /// The kind of both records.
    pub kind: RecordKind,
    /// The record being linked.
    pub source_id: String,
    /// Its name in the source.
    pub name: String,
    /// The Scopable target.
    pub target: String,
    /// The target's name, when known.
    pub target_name: Option<String>,
    /// The record that holds the target automatically.
    pub holder: String,
    /// Its name, when known.
    pub holder_name: Option<String>,
}

impl Taking {
    /// The target as a person reads it: `id (name)`.
    pub fn target_named(&self) -> String {
        named(&self.target, self.target_name.as_deref())
    }

    /// The holder as a person reads it: `kind id (name)`.
    pub fn holder_named(&self) -> String {
        format!(
            "{} {}",
            self.kind.as_str(),
            named(&self.holder, self.holder_name.as_deref())
        )
    }
}

/// What a manual link did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linked {
    /// The record's name in the source.
    pub name: String,
    /// The Scopable target.
    pub target: String,
    /// The target's name, when known.
    pub target_name: Option<String>,
    /// The record the target was taken from, and its name.
    pub took: Option<(String, String)>,
}

/// What ignoring a record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    /// The record's name in the source.
    pub name: String,
    /// Whether its link was removed.
    pub unlinked: bool,
}

/// Where a reset record stands once the stored records were placed again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placed {
    /// Linked again automatically, to this target.
    Relinked(String),
    /// Listed again as unplaced, for this reason.
    Unplaced(String),
    /// It matches this target; the next sync links it.
    WouldLink(String),
    /// Not placed again now; the next sync places it.
    Later,
}

/// `id (name)`, or the id alone when the name is unknown or empty.
pub fn named(id: &str, name: Option<&str>) -> String {
    match name.filter(|n| !n.is_empty()) {
        Some(name) => format!("{id} ({name})"),
        None => id.to_string(),
    }
}

/// `text` quoted for a POSIX shell, so that a hint can be pasted as it is.
fn shell_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The record's name and organization, or a refusal naming the unknown id.
fn source_record(
    app: &App,
    kind: RecordKind,
    id: &str,
) -> Result<(String, Option<String>), AppError> {
    store::source_record(&app.db, app.name(), kind.as_str(), id)?.ok_or_else(|| {
        AppError::new(
            Exit::BadInput,
            format!(
                "{} {} {id:?} is not known; run `sync {}s` first, or check the id",
                app.connector.manifest.service(),
                kind.as_str(),
                kind.as_str()
            ),
        )
        .with_code("not-found")
    })
}

/// Refuses to move or drop an organization's link while configurations under it are linked
/// by hand to another client's records (a sync never changes manual links, so they would stay
/// crossed).
fn guard_organization_change(
    app: &App,
    organization: &str,
    new_client: Option<&str>,
) -> Result<(), AppError> {
    let stranded: Vec<(String, String, String)> =
        store::manual_configurations_under(&app.db, app.name(), organization)?
            .into_iter()
            .filter(|(_, _, client)| Some(client.as_str()) != new_client)
            .collect();
    if let Some((config, target, _)) = stranded.first() {
        return Err(AppError::new(
            Exit::BadInput,
            format!(
                "organization {organization} has {} configuration(s) linked by hand to its current client's records (first: {config} -> {target}); reset them first: scopable-host {} reset configuration {config}",
                stranded.len(),
                app.name()
            ),
        ));
    }
    Ok(())
}

/// Links `source_id` by hand to a Scopable record (or changes its match), as `actor`. When the
/// target is linked automatically to another record, `confirm` decides whether to take it
/// (an `Err` refuses, and nothing changes). Afterwards the stored records are placed again
/// ([`rematch_after_decision`]) so that the unplaced list shows the change at once.
pub fn link(
    app: &App,
    kind: RecordKind,
    source_id: &str,
    target: LinkTarget<'_>,
    actor: &str,
    confirm: &mut dyn FnMut(&Taking) -> Result<(), AppError>,
) -> Result<Linked, AppError> {
    let (name, organization_id) = source_record(app, kind, source_id)?;
    let found;
    let scopable_id = match target {
        LinkTarget::Id(id) => id,
        LinkTarget::Find(query) => {
            found = find_target(app, kind, source_id, organization_id.as_deref(), query)?;
            found.as_str()
        }
    };
    match kind {
        RecordKind::Organization => {
            if !store::client_exists(&app.db, scopable_id)? {
                return Err(AppError::new(
                    Exit::BadInput,
                    format!("client {scopable_id:?} does not exist"),
                )
                .with_code("not-found"));
            }
            guard_organization_change(app, source_id, Some(scopable_id))?;
        }
        RecordKind::Configuration => {
            let Some(target_client) = store::configuration_client(&app.db, scopable_id)? else {
                return Err(AppError::new(
                    Exit::BadInput,
                    format!("configuration {scopable_id:?} does not exist"),
                )
                .with_code("not-found"));
            };
            match views::organization_link(&app.db, app.name(), organization_id.as_deref())? {
                None => {
                    return Err(AppError::new(
                        Exit::BadInput,
                        format!(
                            "configuration {source_id}'s organization ({}) is not linked to a client; link the organization first",
                            organization_id.unwrap_or_default()
                        ),
                    ));
                }
                Some(client) if client != target_client => {
                    return Err(AppError::new(
                        Exit::BadInput,
                        format!(
                            "configuration {scopable_id} belongs to client {target_client}, but {} configuration {source_id}'s organization is linked to client {client}",
                            app.connector.manifest.service()
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
    }
    let holder = store::link_holder(&app.db, app.name(), kind.as_str(), scopable_id, source_id)?;
    if let Some((other, source)) = &holder
        && source == "manual"
    {
        return Err(AppError::new(
            Exit::BadInput,
            format!(
                "{scopable_id} is already linked by hand to {} {} {other}; reset that one first",
                app.connector.manifest.service(),
                kind.as_str()
            ),
        )
        .with_code("linked-by-hand"));
    }
    let target_name = crate::describe::scopable_name(&app.db, kind, scopable_id)?;
    let loser = match &holder {
        Some((other, _)) => {
            if kind == RecordKind::Organization {
                // Its configurations linked by hand would be left under no client.
                guard_organization_change(app, other, None)?;
            }
            let other_name = crate::describe::source_name(&app.db, app.name(), kind, other)?;
            confirm(&Taking {
                kind,
                source_id: source_id.to_string(),
                name: name.clone(),
                target: scopable_id.to_string(),
                target_name: target_name.clone(),
                holder: other.clone(),
                holder_name: other_name.clone(),
            })?;
            Some((other.clone(), other_name.unwrap_or_default()))
        }
        None => None,
    };
    // The answer may have taken a while: write only if the target's holder is still the one
    // the admin agreed to take it from (a sync may have applied meanwhile).
    let linked = store::link_by_hand(
        &app.db,
        app.name(),
        kind.as_str(),
        source_id,
        scopable_id,
        loser
            .as_ref()
            .map(|(other, other_name)| (other.as_str(), other_name.as_str())),
        actor,
    )?;
    if !linked {
        return Err(AppError::new(
            Exit::Failure,
            "the links changed while this link was being made (a sync ran?); nothing was changed: try again",
        )
        .with_code("conflict"));
    }
    // The records that matched the target now find it taken: list them at once.
    rematch_after_decision(app, kind, None);
    Ok(Linked {
        name,
        target: scopable_id.to_string(),
        target_name,
        took: loser,
    })
}

/// How many of the records a `--find` query found are named when it finds several.
const FIND_NAMED: usize = 5;

/// The one record `query` finds for a link by search, or a refusal (bad input) that lists
/// what it found, or says it found nothing.
fn find_target(
    app: &App,
    kind: RecordKind,
    source_id: &str,
    organization_id: Option<&str>,
    query: &str,
) -> Result<String, AppError> {
    let (search_kind, within) = match kind {
        RecordKind::Organization => (SearchKind::Client, None),
        RecordKind::Configuration => {
            let client = views::organization_link(&app.db, app.name(), organization_id)?;
            let Some(client) = client else {
                return Err(AppError::new(
                    Exit::BadInput,
                    format!(
                        "configuration {source_id}'s organization ({}) is not linked to a client, so there is no client to search in; link the organization first",
                        organization_id.unwrap_or_default()
                    ),
                ));
            };
            (SearchKind::Configuration, Some(client))
        }
    };
    let found = crate::search::search(
        &app.db,
        search_kind,
        query,
        within.as_deref(),
        Some(FIND_NAMED),
    )?;
    let plural = search_kind.plural();
    let place = match &within {
        Some(client) => format!(
            " of client {}",
            named(
                client,
                crate::describe::scopable_name(&app.db, RecordKind::Organization, client)?
                    .as_deref()
            )
        ),
        None => String::new(),
    };
    let search_hint = format!("scopable-host search {plural} {}", shell_quoted(query));
    match found.hits.as_slice() {
        [one] if found.total == 1 => Ok(one.id.clone()),
        [] => Err(AppError::new(
            Exit::BadInput,
            format!(
                "no {}{place} matches {query:?}; nothing changed. Look for the right one with `{search_hint}`",
                search_kind.as_str()
            ),
        )),
        hits => {
            let mut listed: Vec<String> =
                hits.iter().map(|h| named(&h.id, Some(&h.name))).collect();
            if found.total > hits.len() {
                listed.push(format!("and {} more", found.total - hits.len()));
            }
            Err(AppError::new(
                Exit::BadInput,
                format!(
                    "{query:?} finds {} {plural}{place}, not one: {}; nothing changed. Give the id instead (scopable-host {} link {} {source_id} ID), or a query that finds only one",
                    found.total,
                    listed.join(", "),
                    app.name(),
                    kind.as_str()
                ),
            ))
        }
    }
}

/// Ignores `source_id` as `actor`: it is never linked, and no longer listed as unplaced.
pub fn ignore(
    app: &App,
    kind: RecordKind,
    source_id: &str,
    actor: &str,
) -> Result<Ignored, AppError> {
    let (name, _) = source_record(app, kind, source_id)?;
    if kind == RecordKind::Organization {
        guard_organization_change(app, source_id, None)?;
    }
    let unlinked = store::ignore(&app.db, app.name(), kind.as_str(), source_id, actor)?;
    Ok(Ignored {
        name,
        unlinked: unlinked > 0,
    })
}

/// Drops the manual decision (link or ignore) on `source_id` as `actor`, then places the
/// stored records again and says where the record now stands.
pub fn reset(
    app: &App,
    kind: RecordKind,
    source_id: &str,
    actor: &str,
) -> Result<Placed, AppError> {
    // An automatic link has no decision to drop: say so before anything else is checked.
    let decided = store::has_decision(&app.db, app.name(), kind.as_str(), source_id)?;
    let auto_target = store::auto_link_target(&app.db, app.name(), kind.as_str(), source_id)?;
    if let (false, Some(target)) = (decided, auto_target) {
        return Err(AppError::new(
            Exit::BadInput,
            format!(
                "{} {source_id} is linked automatically (to {target}), not by hand, so there is nothing to reset; to stop it linking use `ignore`: scopable-host {} ignore {} {source_id}",
                kind.as_str(),
                app.name(),
                kind.as_str()
            ),
        ));
    }
    if kind == RecordKind::Organization {
        guard_organization_change(app, source_id, None)?;
    }
    let removed = store::reset(&app.db, app.name(), kind.as_str(), source_id, actor)?;
    if removed == 0 {
        return Err(AppError::new(
            Exit::BadInput,
            format!(
                "{} {} {source_id} has no manual decision to reset",
                app.connector.manifest.service(),
                kind.as_str()
            ),
        )
        .with_code("not-found"));
    }
    let Some(r) = rematch_after_decision(app, kind, Some(source_id)) else {
        return Ok(Placed::Later);
    };
    if let Some((_, target)) = r.relinked.as_ref().filter(|(id, _)| id == source_id) {
        return Ok(Placed::Relinked(target.clone()));
    }
    if let Some((_, reason)) = r.unplaced.iter().find(|(id, _)| id == source_id) {
        return Ok(Placed::Unplaced(reason.clone()));
    }
    if let Some((_, target)) = r.would_link.iter().find(|(id, _)| id == source_id) {
        return Ok(Placed::WouldLink(target.clone()));
    }
    Ok(Placed::Later)
}

/// Places the stored records of `kind` again after a decision, without the network
/// ([`crate::sync::rematch_stored`]), so that the unplaced list shows at once what the
/// decision changed; after an organization's decision, its configurations too (their parent
/// may have changed). The decision is already made: when the records cannot be placed again
/// now, a notice ([`crate::notice`]) says why, and the next sync places them. Returns what
/// became of `kind`'s records.
pub fn rematch_after_decision(
    app: &App,
    kind: RecordKind,
    relink: Option<&str>,
) -> Option<crate::sync::Rematched> {
    let rt = match crate::app::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            not_refreshed(&e);
            return None;
        }
    };
    let rematched = rematch_kind(app, &rt, kind, relink);
    if kind == RecordKind::Organization {
        rematch_kind(app, &rt, RecordKind::Configuration, None);
    }
    rematched
}

/// The notice when the unplaced list could not be refreshed after a decision.
fn not_refreshed(e: &AppError) {
    crate::notice::notice(&format!(
        "warning: the decision is saved, but `unplaced` could not be refreshed ({}); the next sync refreshes it",
        scopable_sandbox::display::error_line(&e.message)
    ));
}

/// One kind of [`rematch_after_decision`].
fn rematch_kind(
    app: &App,
    rt: &tokio::runtime::Runtime,
    kind: RecordKind,
    relink: Option<&str>,
) -> Option<crate::sync::Rematched> {
    match crate::sync::rematch_stored(app, rt, kind, relink) {
        Ok(Ok(rematched)) => Some(rematched),
        Ok(Err(crate::sync::NotRematched::NothingStored(_))) => None,
        Ok(Err(why)) => {
            crate::notice::notice(&format!("note: `unplaced` is not refreshed: {why}"));
            None
        }
        Err(e) => {
            not_refreshed(&e);
            None
        }
    }
}

/// Every ignored record of a connector, organizations first, by id.
pub fn ignored_records(db: &Db, connector: &str) -> Result<Vec<IgnoredRecord>, AppError> {
    let mut rows = store::ignored_records(db, connector)?;
    rows.sort_by(|a, b| {
        b.kind
            .cmp(&a.kind)
            .then_with(|| id_order(&a.source_id, &b.source_id))
    });
    Ok(rows)
}

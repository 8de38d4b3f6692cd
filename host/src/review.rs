//! The review workflow: list links and what could not be placed, link by hand (or change a
//! match), ignore, and reset. Manual decisions are never changed by a sync.

use crate::output::print_json;
use scopable_sandbox::display::{safe, safe_within};
use scopable_store::Db;
use scopable_store::review::{self as store, IgnoredRecord};
use scopable_store::views;
use scopable_sync::app::{App, AppError, Exit};
use scopable_sync::kinds::RecordKind;
use scopable_sync::search::SearchKind;
use scopable_sync::sync::id_order;
use serde_json::{Value, json};

/// Longest user name kept in an actor; a longer one is replaced by the user id.
const MAX_USER_NAME: usize = 64;

/// The actor of a command-line decision: `cli:<user>`, the user from `$USER` or `$LOGNAME`
/// when it is short and has no control characters or spaces, else `cli:uid:<uid>`.
pub fn cli_actor() -> String {
    actor_from(
        std::env::var("USER").ok().as_deref(),
        std::env::var("LOGNAME").ok().as_deref(),
        process_uid(),
    )
}

/// [`cli_actor`] from given values (testable without touching the environment).
fn actor_from(user: Option<&str>, logname: Option<&str>, uid: Option<u32>) -> String {
    let usable = |name: &&str| {
        !name.is_empty()
            && name.chars().count() <= MAX_USER_NAME
            && !name
                .chars()
                .any(|c| c.is_whitespace() || scopable_sandbox::display::is_unsafe(c))
    };
    match user.filter(usable).or(logname.filter(usable)) {
        Some(name) => format!("cli:{name}"),
        None => match uid {
            Some(uid) => format!("cli:uid:{uid}"),
            None => "cli:unknown".to_string(),
        },
    }
}

/// This process's user id, read from `/proc/self`.
fn process_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// `value` as JSON for `--json`.
fn to_json(value: impl serde::Serialize) -> Result<Value, AppError> {
    serde_json::to_value(value)
        .map_err(|e| AppError::new(Exit::Failure, format!("cannot write the list as JSON: {e}")))
}

/// The width of a name in a column, in characters.
const NAME_IN_LIST: usize = 48;

/// A name for a line of text: safe, bounded, and a word when there is none.
fn shown_name(name: Option<&str>) -> std::borrow::Cow<'_, str> {
    match name {
        Some(name) => safe_within(name, NAME_COLUMN),
        None => std::borrow::Cow::Borrowed("(unknown)"),
    }
}

/// `links [--json]`: both sides' names and, for configurations, the values behind the
/// evidence.
pub fn links_command(app: &App, json_out: bool) -> Result<(), AppError> {
    let rows = scopable_sync::describe::links(&app.db, app.name())?;
    if json_out {
        print_json(&to_json(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!(
            "No links yet. Run `scopable-host {} sync organizations`.",
            safe(app.name())
        );
    }
    for link in &rows {
        let evidence = if link.evidence_values.is_empty() {
            let names: Vec<&str> = link
                .evidence
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            names.join(",")
        } else {
            let service = app.connector.manifest.service();
            let values: Vec<String> = link
                .evidence_values
                .iter()
                .map(|c| c.words(service))
                .collect();
            values.join(", ")
        };
        let target = match scopable_sync::describe::record_kind(&link.kind) {
            Some(RecordKind::Organization) => "client",
            _ => "configuration",
        };
        // Ids, names and identifiers come from the API, a component or a CSV file: every value
        // is shown safe and bounded (`--json` is exact).
        println!(
            "{:<13} {:>10} {:<32} -> {target} {} {:<32} {:<6} {} {}",
            safe(&link.kind),
            safe(&link.source_id),
            shown_name(link.name.as_deref()),
            safe(&link.scopable_id),
            shown_name(link.scopable_name.as_deref()),
            safe(&link.source),
            safe(&link.linked_at),
            safe(&evidence)
        );
    }
    Ok(())
}

/// `id name` of each Scopable record in a list, with what its identifiers say when known; one
/// safe, bounded value.
fn named_list(
    ids: &[String],
    names: &[Option<String>],
    clues: &[Vec<scopable_sync::describe::Clue>],
    service: &str,
) -> String {
    let items: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let mut item = safe_within(id, NAME_IN_LIST).into_owned();
            if let Some(Some(name)) = names.get(i) {
                item.push(' ');
                item.push_str(&safe_within(name, NAME_IN_LIST));
            }
            if let Some(clues) = clues.get(i).filter(|c| !c.is_empty()) {
                let clues: Vec<String> = clues.iter().map(|c| c.words(service)).collect();
                item.push_str(&format!(" ({})", safe_within(&clues.join(", "), 200)));
            }
            item
        })
        .collect();
    safe(&items.join(", ")).into_owned()
}

/// What a configuration's organization needs, for a `parent-unplaced` row.
fn parent_words(parent: &scopable_sync::describe::Parent, service: &str) -> String {
    use scopable_sync::describe::ParentState;
    let organization = match (&parent.organization_id, &parent.organization_name) {
        (Some(id), Some(name)) => format!(
            "organization {} {}",
            safe_within(id, NAME_IN_LIST),
            safe_within(name, NAME_IN_LIST)
        ),
        (Some(id), None) => format!("organization {}", safe_within(id, NAME_IN_LIST)),
        (None, _) => "its organization".to_string(),
    };
    let state = match &parent.state {
        ParentState::Unplaced { reason } => safe_within(
            &scopable_sync::describe::reason_label(reason, service),
            NAME_IN_LIST,
        )
        .into_owned(),
        ParentState::Ignored => "ignored".to_string(),
        ParentState::Linked {
            client_id,
            client_name,
        } => format!(
            "now linked to client {} {}; sync configurations again",
            safe_within(client_id, NAME_IN_LIST),
            shown_name(client_name.as_deref())
        ),
        ParentState::Unknown => "not synced yet".to_string(),
    };
    format!("{organization}: {state}")
}

/// `unplaced [--json]`: names on both sides, each reason in plain words, and once per reason
/// present, what it means and the commands that resolve it.
pub fn unplaced_command(app: &App, json_out: bool) -> Result<(), AppError> {
    let rows =
        scopable_sync::describe::unplaced(&app.db, app.name(), app.connector.manifest.service())?;
    if json_out {
        print_json(&to_json(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("Nothing left to place.");
        return Ok(());
    }
    let mut current = "";
    let mut present: Vec<(RecordKind, &str)> = Vec::new();
    for row in &rows {
        let kind = scopable_sync::describe::record_kind(&row.kind);
        if row.kind != current {
            current = &row.kind;
            match kind {
                Some(k) => println!("{}:", scopable_sync::describe::couldnt_place_title(k)),
                None => println!("{}:", safe(&row.kind)),
            }
        }
        if let Some(k) = kind
            && !present.contains(&(k, row.reason.as_str()))
        {
            present.push((k, &row.reason));
        }
        // Ids, names, candidates and suggestions come from the API, the component or a CSV
        // file: each is shown safe and bounded, so none can forge a row or act on the terminal.
        let mut line = format!(
            "  {:>10}  {:<32}  {} ({})",
            safe(&row.source_id),
            safe_within(&row.name, NAME_COLUMN),
            safe(&row.reason_label),
            safe(&row.reason)
        );
        if row.reason == "parent-unplaced"
            && let Some(parent) = &row.parent
        {
            line.push_str(&format!(
                "; {}",
                parent_words(parent, app.connector.manifest.service())
            ));
        }
        if !row.candidates.is_empty() {
            line.push_str(&format!(
                "; candidates: {}",
                named_list(
                    &row.candidates,
                    &row.candidate_names,
                    &row.candidate_clues,
                    app.connector.manifest.service(),
                )
            ));
        }
        if !row.suggestions.is_empty() {
            line.push_str(&format!(
                "; suggested: {}",
                named_list(
                    &row.suggestions,
                    &row.suggestion_names,
                    &[],
                    app.connector.manifest.service(),
                )
            ));
        }
        println!("{line}");
    }
    println!();
    println!("What to do:");
    for kind in [RecordKind::Organization, RecordKind::Configuration] {
        for explanation in scopable_sync::describe::reasons(kind) {
            if !present.contains(&(kind, explanation.reason)) {
                continue;
            }
            let service = app.connector.manifest.service();
            println!(
                "  {}: {}:",
                explanation.label_for(service),
                explanation.sentence_for(service)
            );
            let commands = scopable_sync::describe::resolving_commands(
                app.name(),
                kind,
                explanation.reason,
                None,
                None,
            );
            for command in commands {
                println!("      {}", safe(&command.command));
            }
        }
    }
    Ok(())
}

/// The width of the name column of `unplaced`, in characters.
const NAME_COLUMN: usize = 32;
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
    })
}

/// Configurations linked by hand under an organization: (source id, target, target's client).
fn manual_configurations_under(
    app: &App,
    organization: &str,
) -> Result<Vec<(String, String, String)>, AppError> {
    Ok(store::manual_configurations_under(
        &app.db,
        app.name(),
        organization,
    )?)
}

/// Refuses to move or drop an organization's link while configurations under it are linked
/// by hand to another client's records (a sync never changes manual links, so they would stay
/// crossed).
fn guard_organization_change(
    app: &App,
    organization: &str,
    new_client: Option<&str>,
) -> Result<(), AppError> {
    let stranded: Vec<(String, String, String)> = manual_configurations_under(app, organization)?
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

/// `link organization|configuration SOURCE_ID SCOPABLE_ID`: a manual link (or a change of match).
pub fn link_command(
    app: &App,
    kind: RecordKind,
    source_id: &str,
    target: LinkTarget<'_>,
    take: bool,
) -> Result<(), AppError> {
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
            let exists = store::client_exists(&app.db, scopable_id)?;
            if !exists {
                return Err(AppError::new(
                    Exit::BadInput,
                    format!("client {scopable_id:?} does not exist"),
                ));
            }
            guard_organization_change(app, source_id, Some(scopable_id))?;
        }
        RecordKind::Configuration => {
            let target_client = store::configuration_client(&app.db, scopable_id)?;
            let Some(target_client) = target_client else {
                return Err(AppError::new(
                    Exit::BadInput,
                    format!("configuration {scopable_id:?} does not exist"),
                ));
            };
            let parent_client =
                views::organization_link(&app.db, app.name(), organization_id.as_deref())?;
            match parent_client {
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
        ));
    }
    let target_name = scopable_sync::describe::scopable_name(&app.db, kind, scopable_id)?;
    let loser = match &holder {
        Some((other, _)) => {
            if kind == RecordKind::Organization {
                // Its configurations linked by hand would be left under no client.
                guard_organization_change(app, other, None)?;
            }
            let other_name =
                scopable_sync::describe::source_name(&app.db, app.name(), kind, other)?;
            let taking = Taking {
                kind,
                source_id,
                name: &name,
                target: scopable_id,
                target_name: target_name.as_deref(),
                holder: other,
                holder_name: other_name.as_deref(),
            };
            confirm_take(&taking, take)?;
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
        &cli_actor(),
    )?;
    if !linked {
        return Err(AppError::new(
            Exit::Failure,
            "the links changed while this link was being made (a sync ran?); nothing was changed: run the command again",
        ));
    }
    // The records that matched the target now find it taken: list them at once.
    rematch_after_decision(app, kind, None);
    let target = named(scopable_id, target_name.as_deref());
    println!(
        "Linked {} {} ({}) to {} by hand; syncs will not change it.",
        kind.as_str(),
        safe(source_id),
        safe(&name),
        safe(&target)
    );
    if let Some((other, other_name)) = loser {
        println!(
            "Took {} from {} {} ({}): its automatic link was removed, and it is listed again as unplaced (target-taken).",
            safe(&target),
            kind.as_str(),
            safe(&other),
            safe(&other_name)
        );
    }
    Ok(())
}

/// What `link` links a record to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkTarget<'a> {
    /// A Scopable id, as given.
    Id(&'a str),
    /// The one Scopable record a search finds ([`scopable_sync::search::search`]); for a
    /// configuration, within the client its organization is linked to.
    Find(&'a str),
}

/// How many of the records a `--find` query found are named when it finds several.
const FIND_NAMED: usize = 5;

/// The one record `query` finds for `link --find`, or a refusal (exit 6) that lists what it
/// found, or says it found nothing.
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
    let found = scopable_sync::search::search(
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
                scopable_sync::describe::scopable_name(&app.db, RecordKind::Organization, client)?
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

/// `id (name)`, or the id alone when the name is unknown or empty.
fn named(id: &str, name: Option<&str>) -> String {
    match name.filter(|n| !n.is_empty()) {
        Some(name) => format!("{id} ({name})"),
        None => id.to_string(),
    }
}

/// `text` quoted for a POSIX shell, so that a hint can be pasted as it is.
fn shell_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A target that `link` would take from the record automatically linked to it.
struct Taking<'a> {
    kind: RecordKind,
    source_id: &'a str,
    name: &'a str,
    target: &'a str,
    target_name: Option<&'a str>,
    holder: &'a str,
    holder_name: Option<&'a str>,
}

/// Asks before a target is taken from the record automatically linked to it: with `--take`,
/// yes; on a terminal (stdin and stderr), the admin's answer on stderr; otherwise no, with a
/// message saying which record holds it and to add `--take`. Refusing changes nothing.
fn confirm_take(taking: &Taking<'_>, take: bool) -> Result<(), AppError> {
    use std::io::{BufRead, IsTerminal, Read, Write};
    if take {
        return Ok(());
    }
    let target = named(taking.target, taking.target_name);
    let holder = format!(
        "{} {}",
        taking.kind.as_str(),
        named(taking.holder, taking.holder_name)
    );
    let stdin = std::io::stdin();
    if stdin.is_terminal() && std::io::stderr().is_terminal() {
        let mut stderr = std::io::stderr().lock();
        // Names come from the API and imported files: shown safe.
        let _ = write!(
            stderr,
            "Take {} from {}? [y/N] ",
            safe(&target),
            safe(&holder)
        );
        let _ = stderr.flush();
        drop(stderr);
        let mut answer = String::new();
        let read = stdin.lock().take(256).read_line(&mut answer);
        let yes = read.is_ok() && matches!(answer.trim().to_lowercase().as_str(), "y" | "yes");
        if yes {
            return Ok(());
        }
        return Err(AppError::new(
            Exit::BadInput,
            format!("not taken: {target} stays linked to {holder}; nothing changed"),
        ));
    }
    Err(AppError::new(
        Exit::BadInput,
        format!(
            "{target} is linked automatically to {holder}; nothing changed. To move it to {} {}, add --take: {} {} is then listed as unplaced (target-taken)",
            taking.kind.as_str(),
            named(taking.source_id, Some(taking.name)),
            taking.kind.as_str(),
            taking.holder,
        ),
    ))
}

/// `ignore organization|configuration SOURCE_ID`.
pub fn ignore_command(app: &App, kind: RecordKind, source_id: &str) -> Result<(), AppError> {
    let (name, _) = source_record(app, kind, source_id)?;
    if kind == RecordKind::Organization {
        guard_organization_change(app, source_id, None)?;
    }
    let unlinked = store::ignore(&app.db, app.name(), kind.as_str(), source_id, &cli_actor())?;
    println!(
        "Ignoring {} {} ({}): it will never be linked{}.",
        kind.as_str(),
        safe(source_id),
        safe(&name),
        if unlinked > 0 {
            "; its link was removed"
        } else {
            ""
        }
    );
    Ok(())
}

/// `reset organization|configuration SOURCE_ID`.
pub fn reset_command(app: &App, kind: RecordKind, source_id: &str) -> Result<(), AppError> {
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
    let removed = store::reset(&app.db, app.name(), kind.as_str(), source_id, &cli_actor())?;
    if removed == 0 {
        return Err(AppError::new(
            Exit::BadInput,
            format!(
                "{} {} {source_id} has no manual decision to reset",
                app.connector.manifest.service(),
                kind.as_str()
            ),
        ));
    }
    let rematched = rematch_after_decision(app, kind, Some(source_id));
    // A target as a person reads it: its id and, when known, its name.
    let target_named = |target: &str| {
        let name = scopable_sync::describe::scopable_name(&app.db, kind, target)
            .ok()
            .flatten()
            .map(|n| format!(" ({})", safe_within(&n, NAME_COLUMN)))
            .unwrap_or_default();
        format!("{}{name}", safe(target))
    };
    let placed = rematched.as_ref().and_then(|r| {
        if let Some((_, target)) = r.relinked.as_ref().filter(|(id, _)| id == source_id) {
            return Some(format!(
                "it is linked again automatically to {}",
                target_named(target)
            ));
        }
        r.unplaced
            .iter()
            .find(|(id, _)| id == source_id)
            .map(|(_, reason)| {
                format!(
                    "it is listed again with what could not be placed: {}",
                    safe(&scopable_sync::describe::reason_label(
                        reason,
                        app.connector.manifest.service()
                    ))
                )
            })
            .or_else(|| {
                r.would_link
                    .iter()
                    .find(|(id, _)| id == source_id)
                    .map(|(_, target)| {
                        format!(
                            "it matches {}; the next sync links it",
                            target_named(target)
                        )
                    })
            })
    });
    println!(
        "Reset {} {}: {}.",
        kind.as_str(),
        safe(source_id),
        placed.unwrap_or_else(|| "the next sync places it automatically".to_string())
    );
    Ok(())
}

/// Places the stored records of `kind` again after a decision, without the network
/// ([`scopable_sync::sync::rematch_stored`]), so that `unplaced` shows at once what the decision
/// changed; after an organization's decision, its configurations too (their parent may have
/// changed). The decision is already made: when the records cannot be placed again now, a
/// line on stderr says why, and the next sync places them. Returns what became of `kind`'s
/// records.
pub fn rematch_after_decision(
    app: &App,
    kind: RecordKind,
    relink: Option<&str>,
) -> Option<scopable_sync::sync::Rematched> {
    let rt = match crate::output::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!(
                "warning: the decision is saved, but `unplaced` could not be refreshed ({}); the next sync refreshes it",
                scopable_sandbox::display::error_line(&e.message)
            );
            return None;
        }
    };
    let rematched = rematch_kind(app, &rt, kind, relink);
    if kind == RecordKind::Organization {
        rematch_kind(app, &rt, RecordKind::Configuration, None);
    }
    rematched
}

/// One kind of [`rematch_after_decision`].
fn rematch_kind(
    app: &App,
    rt: &tokio::runtime::Runtime,
    kind: RecordKind,
    relink: Option<&str>,
) -> Option<scopable_sync::sync::Rematched> {
    match scopable_sync::sync::rematch_stored(app, rt, kind, relink) {
        Ok(Ok(rematched)) => Some(rematched),
        Ok(Err(scopable_sync::sync::NotRematched::NothingStored(_))) => None,
        Ok(Err(why)) => {
            eprintln!("note: `unplaced` is not refreshed: {why}");
            None
        }
        Err(e) => {
            eprintln!(
                "warning: the decision is saved, but `unplaced` could not be refreshed ({}); the next sync refreshes it",
                scopable_sandbox::display::error_line(&e.message)
            );
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

/// `ignored [--json]`: every ignored record, with its name, and when and by whom.
pub fn ignored_command(app: &App, json_out: bool) -> Result<(), AppError> {
    let rows = ignored_records(&app.db, app.name())?;
    if json_out {
        print_json(&serde_json::to_value(&rows).unwrap_or_else(|_| json!([])));
        return Ok(());
    }
    if rows.is_empty() {
        println!("Nothing is ignored.");
        return Ok(());
    }
    let mut current = "";
    for row in &rows {
        if row.kind != current {
            current = &row.kind;
            println!(
                "{}:",
                if current == "organization" {
                    "Ignored organizations"
                } else {
                    "Ignored configurations"
                }
            );
        }
        // Ids and names come from the API, actors from the environment of whoever decided:
        // each is shown safe and bounded.
        println!(
            "  {:>10}  {:<32}  ignored {} by {}",
            safe(&row.source_id),
            safe_within(
                row.name.as_deref().unwrap_or("(not in the last sync)"),
                NAME_COLUMN
            ),
            safe(&row.decided_at),
            safe(row.actor.as_deref().unwrap_or("an earlier version"))
        );
    }
    println!(
        "Place one again: scopable-host {} reset organization|configuration SOURCE_ID",
        safe(app.name())
    );
    Ok(())
}

#[cfg(test)]
mod decision_tests {
    use super::*;

    #[test]
    fn the_actor_is_the_user_when_the_name_is_fit_to_show() {
        assert_eq!(
            actor_from(Some("alice"), Some("bob"), Some(1000)),
            "cli:alice"
        );
        assert_eq!(actor_from(None, Some("bob"), Some(1000)), "cli:bob");
        // Control characters, spaces, bidirectional controls, empty or over-long names are
        // not taken: the next source is.
        for bad in [
            "ev\u{1b}[31mil",
            "two words",
            "a\u{202e}b",
            "",
            &"x".repeat(65),
        ] {
            assert_eq!(
                actor_from(Some(bad), Some("bob"), Some(7)),
                "cli:bob",
                "{bad:?}"
            );
            assert_eq!(actor_from(Some(bad), None, Some(7)), "cli:uid:7", "{bad:?}");
        }
        assert_eq!(actor_from(Some(&"x".repeat(64)), None, None).len(), 68);
        assert_eq!(actor_from(None, None, None), "cli:unknown");
    }
}

//! The review workflow: list links and what could not be placed, link by hand (or change a
//! match), ignore, and reset. Manual decisions are never changed by a sync.

use crate::output::print_json;
use scopable_sandbox::display::{safe, safe_within};
use scopable_sync::app::{App, AppError, Exit};
pub use scopable_sync::decide::LinkTarget;
use scopable_sync::decide::{self, Placed, Taking, named};
use scopable_sync::kinds::RecordKind;
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
/// `link organization|configuration SOURCE_ID SCOPABLE_ID`: a manual link (or a change of
/// match), asking before a target is taken from another record ([`confirm_take`]).
pub fn link_command(
    app: &App,
    kind: RecordKind,
    source_id: &str,
    target: LinkTarget<'_>,
    take: bool,
) -> Result<(), AppError> {
    let linked = decide::link(app, kind, source_id, target, &cli_actor(), &mut |taking| {
        confirm_take(taking, take)
    })?;
    let target = named(&linked.target, linked.target_name.as_deref());
    println!(
        "Linked {} {} ({}) to {} by hand; syncs will not change it.",
        kind.as_str(),
        safe(source_id),
        safe(&linked.name),
        safe(&target)
    );
    if let Some((other, other_name)) = linked.took {
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

/// Asks before a target is taken from the record automatically linked to it: with `--take`,
/// yes; on a terminal (stdin and stderr), the admin's answer on stderr; otherwise no, with a
/// message saying which record holds it and to add `--take`. Refusing changes nothing.
fn confirm_take(taking: &Taking, take: bool) -> Result<(), AppError> {
    use std::io::{BufRead, IsTerminal, Read, Write};
    if take {
        return Ok(());
    }
    let target = taking.target_named();
    let holder = taking.holder_named();
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
            named(&taking.source_id, Some(&taking.name)),
            taking.kind.as_str(),
            taking.holder,
        ),
    )
    .with_code(decide::TARGET_TAKEN))
}

/// `ignore organization|configuration SOURCE_ID`.
pub fn ignore_command(app: &App, kind: RecordKind, source_id: &str) -> Result<(), AppError> {
    let ignored = decide::ignore(app, kind, source_id, &cli_actor())?;
    println!(
        "Ignoring {} {} ({}): it will never be linked{}.",
        kind.as_str(),
        safe(source_id),
        safe(&ignored.name),
        if ignored.unlinked {
            "; its link was removed"
        } else {
            ""
        }
    );
    Ok(())
}

/// `reset organization|configuration SOURCE_ID`.
pub fn reset_command(app: &App, kind: RecordKind, source_id: &str) -> Result<(), AppError> {
    let placed = decide::reset(app, kind, source_id, &cli_actor())?;
    // A target as a person reads it: its id and, when known, its name.
    let target_named = |target: &str| {
        let name = scopable_sync::describe::scopable_name(&app.db, kind, target)
            .ok()
            .flatten()
            .map(|n| format!(" ({})", safe_within(&n, NAME_COLUMN)))
            .unwrap_or_default();
        format!("{}{name}", safe(target))
    };
    let placed = match placed {
        Placed::Relinked(target) => format!(
            "it is linked again automatically to {}",
            target_named(&target)
        ),
        Placed::Unplaced(reason) => format!(
            "it is listed again with what could not be placed: {}",
            safe(&scopable_sync::describe::reason_label(
                &reason,
                app.connector.manifest.service()
            ))
        ),
        Placed::WouldLink(target) => format!(
            "it matches {}; the next sync links it",
            target_named(&target)
        ),
        Placed::Later => "the next sync places it automatically".to_string(),
    };
    println!("Reset {} {}: {placed}.", kind.as_str(), safe(source_id));
    Ok(())
}

/// `ignored [--json]`: every ignored record, with its name, and when and by whom.
pub fn ignored_command(app: &App, json_out: bool) -> Result<(), AppError> {
    let rows = decide::ignored_records(&app.db, app.name())?;
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

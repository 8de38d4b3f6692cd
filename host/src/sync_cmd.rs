//! `sync`: runs a sync with a progress line, then prints its changes and counts (or JSON).

use crate::output::print_json;
use scopable_sync::app::{App, AppError};
use scopable_sync::notice;
use scopable_sync::sync::{Change, RecordKind, auto_linked_names, sync};

/// The most characters of a name on a change line.
const CHANGE_NAME: usize = 48;
use serde_json::json;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

/// The progress line's look: a bar once page 1 told how many pages there are, a count of
/// pages when the listing is followed page by page, and before page 1 arrives only a spinner
/// (never `0/0`).
fn progress_style(total: Option<u32>, pages_done: u32) -> indicatif::ProgressStyle {
    let template = match (total, pages_done) {
        (Some(_), _) => "{msg} [{bar:30}] {pos}/{len} pages ({elapsed})",
        (None, 0) => "{msg} {spinner} fetching page 1 ({elapsed})",
        (None, _) => "{msg} {spinner} {pos} pages so far ({elapsed})",
    };
    indicatif::ProgressStyle::with_template(template)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn progress_bar(show: bool, label: &'static str) -> Option<indicatif::ProgressBar> {
    if !show {
        return None;
    }
    let bar = indicatif::ProgressBar::no_length();
    bar.set_style(progress_style(None, 0));
    bar.set_message(label);
    bar.enable_steady_tick(Duration::from_millis(200));
    Some(bar)
}

/// Shows `done` pages (of `total`, when known) on the progress line.
fn show_progress_on(bar: &indicatif::ProgressBar, done: u32, total: Option<u32>) {
    let length = total.map(u64::from);
    if bar.length() != length || bar.position() == 0 {
        bar.set_style(progress_style(total, done));
        if let Some(length) = length {
            bar.set_length(length);
        }
    }
    bar.set_position(u64::from(done));
}

/// `CONNECTOR sync organizations|configurations [--dry-run] [--json]`.
pub fn sync_command(
    app: &mut App,
    rt: &tokio::runtime::Runtime,
    kind: RecordKind,
    dry_run: bool,
    json_out: bool,
) -> Result<(), AppError> {
    let show_progress = !json_out && std::io::stderr().is_terminal();
    let bar = progress_bar(show_progress, kind.as_str());
    // Notices (retries) go above it.
    if let Some(bar) = &bar {
        let bar = bar.clone();
        notice::set_notice_sink(Some(std::sync::Arc::new(move |line: &str| {
            bar.suspend(|| eprintln!("{line}"))
        })));
    }
    let mut on_progress = |done: u32, total: Option<u32>| {
        if let Some(bar) = &bar {
            show_progress_on(bar, done, total);
        }
    };
    // The names of automatically linked records, read before the sync: a record gone from the
    // source is no longer stored after it, and a removed link still names it.
    let names_before = if json_out {
        HashMap::new()
    } else {
        auto_linked_names(&app.db, app.name(), kind)?
    };
    let synced = sync(
        app,
        rt,
        kind,
        dry_run,
        !json_out,
        &crate::review::cli_actor(),
        &mut on_progress,
    );
    crate::output::notices_to_stderr();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let (counts, changes, started_at, finished_at) = synced?;
    if json_out {
        print_json(&json!({
            "kind": kind.as_str(),
            "fetched": counts.fetched,
            "linked": counts.linked,
            "skipped": counts.skipped,
            "errored": counts.errored,
            "new_links": counts.new_links,
            "removed_links": counts.removed_links,
            "requests": counts.requests,
            "dry_run": dry_run,
            "started_at": started_at,
            "finished_at": finished_at,
        }));
        return Ok(());
    }
    let plural = match kind {
        RecordKind::Organization => "organizations",
        RecordKind::Configuration => "configurations",
    };
    let target = match kind {
        RecordKind::Organization => "client",
        RecordKind::Configuration => "configuration",
    };
    // Ids, names and identifiers come from the API, the component or a CSV file: shown safe
    // and bounded (`--json` is exact).
    use scopable_sandbox::display::{safe, safe_within};
    let shown = |name: Option<String>| match name {
        Some(name) => safe_within(&name, CHANGE_NAME).into_owned(),
        None => "(unknown)".to_string(),
    };
    for change in &changes {
        match change {
            Change::Add {
                source_id,
                name,
                scopable_id,
                evidence,
            } => {
                let mut shown_evidence = evidence.join(", ");
                if kind == RecordKind::Configuration
                    && let Some(target) =
                        scopable_sync::describe::scopable_identifiers(&app.db, scopable_id)?
                {
                    let source = scopable_sync::describe::source_identifiers(
                        &app.db,
                        app.name(),
                        source_id,
                    )?;
                    let values = scopable_sync::describe::evidence_values(
                        evidence,
                        source.as_ref(),
                        &target,
                    );
                    if !values.is_empty() {
                        let service = app.connector.manifest.service();
                        let values: Vec<String> = values.iter().map(|c| c.words(service)).collect();
                        shown_evidence = values.join(", ");
                    }
                }
                let scopable_name =
                    scopable_sync::describe::scopable_name(&app.db, kind, scopable_id)?;
                println!(
                    "  + {} -> {target} {} ({}): {} -> {}",
                    safe(source_id),
                    safe(scopable_id),
                    safe(&shown_evidence),
                    shown(name.clone()),
                    shown(scopable_name)
                )
            }
            Change::Remove {
                source_id,
                name,
                scopable_id,
                why,
            } => {
                let name = name
                    .clone()
                    .or_else(|| names_before.get(source_id).cloned());
                let scopable_name =
                    scopable_sync::describe::scopable_name(&app.db, kind, scopable_id)?;
                println!(
                    "  - {} -x {target} {} ({}): {} -x {}",
                    safe(source_id),
                    safe(scopable_id),
                    safe(why),
                    shown(name),
                    shown(scopable_name)
                )
            }
        }
    }
    let verb = if dry_run {
        "Dry run (nothing changed)"
    } else {
        "Synced"
    };
    use scopable_sandbox::display::count;
    println!(
        "{verb}: {} fetched: {} linked, {} skipped, {} errored; {}, {} removed; {}.",
        count(counts.fetched, kind.as_str(), plural),
        counts.linked,
        counts.skipped,
        counts.errored,
        count(counts.new_links, "new link", "new links"),
        counts.removed_links,
        count(counts.requests, "request", "requests")
    );
    if counts.skipped + counts.errored > 0 {
        println!(
            "See what could not be placed: scopable-host {} unplaced",
            app.name()
        );
    }
    Ok(())
}

//! The review workflow: list links and what could not be placed, link by hand (or change a
//! match), ignore, and reset. Manual decisions are never changed by a sync.

use crate::app::{App, AppError, Exit};
use crate::cli::{RecordKind, print_json};
use crate::db;
use crate::display::{safe, safe_within};
use crate::sync::id_order;
use rusqlite::{OptionalExtension, params};
use serde_json::{Value, json};

fn parse_list(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| json!([]))
}

/// `links [--json]`.
pub fn links_command(app: &App, json_out: bool) -> Result<(), AppError> {
    let mut stmt = app.conn.prepare(
        "SELECT kind, itglue_id, scopable_id, source, evidence, linked_at FROM links WHERE connector = ?1",
    )?;
    let mut rows: Vec<(String, String, String, String, String, String)> = stmt
        .query_map([app.name()], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    rows.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| id_order(&a.1, &b.1)));
    if json_out {
        let list: Vec<Value> = rows
            .iter()
            .map(|(kind, it, sc, source, evidence, at)| {
                json!({"kind": kind, "itglue_id": it, "scopable_id": sc, "source": source,
                       "evidence": parse_list(evidence), "linked_at": at})
            })
            .collect();
        print_json(&Value::Array(list));
        return Ok(());
    }
    if rows.is_empty() {
        println!(
            "No links yet. Run `scopable-host {} sync organizations`.",
            app.name()
        );
    }
    for (kind, it, sc, source, evidence, at) in &rows {
        let evidence: Vec<String> = serde_json::from_str(evidence).unwrap_or_default();
        // Ids come from the API; every value is shown safe and bounded (`--json` is exact).
        println!(
            "{:<13} {:>10} -> {:<10} {:<6} {:<22} {}",
            safe(kind),
            safe(it),
            safe(sc),
            safe(source),
            safe(&evidence.join(",")),
            safe(at)
        );
    }
    Ok(())
}

/// `unplaced [--json]`.
pub fn unplaced_command(app: &App, json_out: bool) -> Result<(), AppError> {
    let mut stmt = app.conn.prepare(
        "SELECT u.kind, u.itglue_id, u.name, u.reason, u.candidates, u.suggestions FROM unplaced u
         WHERE u.connector = ?1
           AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.connector = u.connector AND d.kind = u.kind AND d.itglue_id = u.itglue_id)
           AND NOT EXISTS (SELECT 1 FROM links l WHERE l.connector = u.connector AND l.kind = u.kind AND l.itglue_id = u.itglue_id)",
    )?;
    let mut rows: Vec<(String, String, String, String, String, String)> = stmt
        .query_map([app.name()], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    rows.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| id_order(&a.1, &b.1)));
    if json_out {
        let list: Vec<Value> = rows
            .iter()
            .map(|(kind, id, name, reason, c, s)| {
                json!({"kind": kind, "itglue_id": id, "name": name, "reason": reason,
                       "candidates": parse_list(c), "suggestions": parse_list(s)})
            })
            .collect();
        print_json(&Value::Array(list));
        return Ok(());
    }
    if rows.is_empty() {
        println!("Nothing left to place.");
        return Ok(());
    }
    let mut current = "";
    for (kind, id, name, reason, c, s) in &rows {
        if kind != current {
            current = kind;
            let title = if kind == "organization" {
                "Organizations we couldn't place"
            } else {
                "Configurations we couldn't place"
            };
            println!("{title}:");
        }
        let candidates: Vec<String> = serde_json::from_str(c).unwrap_or_default();
        let suggestions: Vec<String> = serde_json::from_str(s).unwrap_or_default();
        // Ids, names, candidates and suggestions come from the API or the component: each is
        // shown safe and bounded, so none can forge a row or act on the terminal.
        let mut line = format!(
            "  {:>10}  {:<32}  {}",
            safe(id),
            safe_within(name, NAME_COLUMN),
            safe(reason)
        );
        if !candidates.is_empty() {
            line.push_str(&format!("  candidates: {}", safe(&candidates.join(", "))));
        }
        if !suggestions.is_empty() {
            line.push_str(&format!("  suggested: {}", safe(&suggestions.join(", "))));
        }
        println!("{line}");
    }
    println!(
        "Link by hand: scopable-host {} link organization|configuration ITGLUE_ID SCOPABLE_ID",
        app.name()
    );
    Ok(())
}

/// The width of the name column of `unplaced`, in characters.
const NAME_COLUMN: usize = 32;

fn itglue_record(
    app: &App,
    kind: RecordKind,
    id: &str,
) -> Result<(String, Option<String>), AppError> {
    app.conn
        .query_row(
            "SELECT name, organization_id FROM itglue_records WHERE connector = ?1 AND kind = ?2 AND itglue_id = ?3",
            params![app.name(), kind.as_str(), id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .ok_or_else(|| {
            AppError::new(
                Exit::BadInput,
                format!(
                    "IT Glue {} {id:?} is not known; run `sync {}s` first, or check the id",
                    kind.as_str(),
                    kind.as_str()
                ),
            )
        })
}

/// Configurations linked by hand under an organization: (IT Glue id, target, target's client).
fn manual_configurations_under(
    app: &App,
    organization: &str,
) -> Result<Vec<(String, String, String)>, AppError> {
    let mut stmt = app.conn.prepare(
        "SELECT l.itglue_id, l.scopable_id, c.client_id FROM links l
         JOIN itglue_records r ON r.connector = l.connector AND r.kind = 'configuration' AND r.itglue_id = l.itglue_id
         JOIN configurations c ON c.id = l.scopable_id
         WHERE l.connector = ?1 AND l.kind = 'configuration' AND l.source = 'manual' AND r.organization_id = ?2
         ORDER BY l.itglue_id",
    )?;
    let rows = stmt.query_map(params![app.name(), organization], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
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

/// `link organization|configuration ITGLUE_ID SCOPABLE_ID`: a manual link (or a change of match).
pub fn link_command(
    app: &App,
    kind: RecordKind,
    itglue_id: &str,
    scopable_id: &str,
) -> Result<(), AppError> {
    let (name, organization_id) = itglue_record(app, kind, itglue_id)?;
    match kind {
        RecordKind::Organization => {
            let exists: bool = app
                .conn
                .query_row("SELECT 1 FROM clients WHERE id = ?1", [scopable_id], |_| {
                    Ok(true)
                })
                .optional()?
                .is_some();
            if !exists {
                return Err(AppError::new(
                    Exit::BadInput,
                    format!("client {scopable_id:?} does not exist"),
                ));
            }
            guard_organization_change(app, itglue_id, Some(scopable_id))?;
        }
        RecordKind::Configuration => {
            let target_client: Option<String> = app
                .conn
                .query_row(
                    "SELECT client_id FROM configurations WHERE id = ?1",
                    [scopable_id],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(target_client) = target_client else {
                return Err(AppError::new(
                    Exit::BadInput,
                    format!("configuration {scopable_id:?} does not exist"),
                ));
            };
            let parent_client: Option<String> = app
                .conn
                .query_row(
                    "SELECT scopable_id FROM links WHERE connector = ?1 AND kind = 'organization' AND itglue_id = ?2",
                    params![app.name(), organization_id],
                    |r| r.get(0),
                )
                .optional()?;
            match parent_client {
                None => {
                    return Err(AppError::new(
                        Exit::BadInput,
                        format!(
                            "configuration {itglue_id}'s organization ({}) is not linked to a client; link the organization first",
                            organization_id.unwrap_or_default()
                        ),
                    ));
                }
                Some(client) if client != target_client => {
                    return Err(AppError::new(
                        Exit::BadInput,
                        format!(
                            "configuration {scopable_id} belongs to client {target_client}, but IT Glue configuration {itglue_id}'s organization is linked to client {client}"
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
    }
    let holder: Option<(String, String)> = app
        .conn
        .query_row(
            "SELECT itglue_id, source FROM links WHERE connector = ?1 AND kind = ?2 AND scopable_id = ?3 AND itglue_id != ?4",
            params![app.name(), kind.as_str(), scopable_id, itglue_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((other, source)) = &holder
        && source == "manual"
    {
        return Err(AppError::new(
            Exit::BadInput,
            format!(
                "{scopable_id} is already linked by hand to IT Glue {} {other}; reset that one first",
                kind.as_str()
            ),
        ));
    }
    let tx = app.conn.unchecked_transaction()?;
    let now = db::now();
    if let Some((other, _)) = &holder {
        // One to one: the automatic link that held this target gives way to the manual one.
        tx.execute(
            "DELETE FROM links WHERE connector = ?1 AND kind = ?2 AND itglue_id = ?3 AND source = 'auto'",
            params![app.name(), kind.as_str(), other],
        )?;
    }
    tx.execute(
        "INSERT OR REPLACE INTO decisions (connector, kind, itglue_id, action, scopable_id, decided_at)
         VALUES (?1, ?2, ?3, 'link', ?4, ?5)",
        params![app.name(), kind.as_str(), itglue_id, scopable_id, now],
    )?;
    tx.execute(
        "INSERT OR REPLACE INTO links (connector, kind, itglue_id, scopable_id, source, evidence, linked_at)
         VALUES (?1, ?2, ?3, ?4, 'manual', '[\"manual\"]', ?5)",
        params![app.name(), kind.as_str(), itglue_id, scopable_id, now],
    )?;
    tx.commit()?;
    println!(
        "Linked {} {} ({}) to {} by hand; syncs will not change it.",
        kind.as_str(),
        safe(itglue_id),
        safe(&name),
        safe(scopable_id)
    );
    if let Some((other, _)) = holder {
        println!(
            "The automatic link of {} to {} was removed.",
            safe(&other),
            safe(scopable_id)
        );
    }
    Ok(())
}

/// `ignore organization|configuration ITGLUE_ID`.
pub fn ignore_command(app: &App, kind: RecordKind, itglue_id: &str) -> Result<(), AppError> {
    let (name, _) = itglue_record(app, kind, itglue_id)?;
    if kind == RecordKind::Organization {
        guard_organization_change(app, itglue_id, None)?;
    }
    let tx = app.conn.unchecked_transaction()?;
    tx.execute(
        "INSERT OR REPLACE INTO decisions (connector, kind, itglue_id, action, scopable_id, decided_at)
         VALUES (?1, ?2, ?3, 'ignore', NULL, ?4)",
        params![app.name(), kind.as_str(), itglue_id, db::now()],
    )?;
    let unlinked = tx.execute(
        "DELETE FROM links WHERE connector = ?1 AND kind = ?2 AND itglue_id = ?3",
        params![app.name(), kind.as_str(), itglue_id],
    )?;
    tx.commit()?;
    println!(
        "Ignoring {} {} ({}): it will never be linked{}.",
        kind.as_str(),
        safe(itglue_id),
        safe(&name),
        if unlinked > 0 {
            "; its link was removed"
        } else {
            ""
        }
    );
    Ok(())
}

/// `reset organization|configuration ITGLUE_ID`.
pub fn reset_command(app: &App, kind: RecordKind, itglue_id: &str) -> Result<(), AppError> {
    if kind == RecordKind::Organization {
        guard_organization_change(app, itglue_id, None)?;
    }
    let tx = app.conn.unchecked_transaction()?;
    let removed = tx.execute(
        "DELETE FROM decisions WHERE connector = ?1 AND kind = ?2 AND itglue_id = ?3",
        params![app.name(), kind.as_str(), itglue_id],
    )?;
    tx.execute(
        "DELETE FROM links WHERE connector = ?1 AND kind = ?2 AND itglue_id = ?3 AND source = 'manual'",
        params![app.name(), kind.as_str(), itglue_id],
    )?;
    tx.commit()?;
    if removed == 0 {
        return Err(AppError::new(
            Exit::BadInput,
            format!(
                "IT Glue {} {itglue_id} has no manual decision to reset",
                kind.as_str()
            ),
        ));
    }
    println!(
        "Reset {} {}: the next sync places it automatically.",
        kind.as_str(),
        safe(itglue_id)
    );
    Ok(())
}

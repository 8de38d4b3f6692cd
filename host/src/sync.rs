//! Sync: fetch every record, ask the connector to place them, check every proposal against
//! the database (the component proposes, the host disposes), and apply the result in one
//! transaction. Manual decisions are never changed; stale automatic links are removed.

use crate::app::{App, AppError, Exit};
use crate::cli::{RecordKind, print_json};
use crate::db;
use crate::fetch::{self, Listing};
use crate::sandbox::{CallContext, wit_types as types};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The counts of one sync, as printed with `--json`.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq, Eq)]
pub struct SyncCounts {
    /// Records received.
    pub fetched: u64,
    /// Records linked after the sync.
    pub linked: u64,
    /// Records left unlinked (unplaced or ignored).
    pub skipped: u64,
    /// Records the connector could not read.
    pub errored: u64,
    /// Links added.
    pub new_links: u64,
    /// Automatic links removed.
    pub removed_links: u64,
    /// HTTP requests made, retries included.
    pub requests: u64,
}

/// One link change a sync makes (or would make, in a dry run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new automatic link.
    Add {
        /// IT Glue id.
        itglue_id: String,
        /// Scopable id.
        scopable_id: String,
        /// Evidence names.
        evidence: Vec<String>,
    },
    /// An automatic link removed.
    Remove {
        /// IT Glue id.
        itglue_id: String,
        /// The Scopable id it pointed to.
        scopable_id: String,
        /// Why.
        why: String,
    },
}

/// A record as the host keeps it for review: its name and, for configurations, organization.
struct Seen {
    name: String,
    organization_id: Option<String>,
}

/// What a sync's decisions rest on: every manual decision and every organization link. If it
/// changes while the sync fetches, the plan is stale and is not applied.
fn basis(conn: &Connection, connector: &str) -> rusqlite::Result<String> {
    let mut stmt = conn.prepare(
        "SELECT 'd', kind, itglue_id, action, coalesce(scopable_id, '') FROM decisions WHERE connector = ?1
         UNION ALL
         SELECT 'l', kind, itglue_id, source, scopable_id FROM links WHERE connector = ?1 AND kind = 'organization'
         ORDER BY 1, 2, 3",
    )?;
    let rows = stmt.query_map(params![connector], |r| {
        Ok(format!(
            "{}|{}|{}|{}|{}",
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?.join("\n"))
}

/// The outcome of matching, checked and ready to apply.
struct Plan {
    counts: SyncCounts,
    changes: Vec<Change>,
    /// Links to keep with refreshed evidence: (itglue id, scopable id, evidence JSON).
    kept: Vec<(String, String, String)>,
    /// (itglue id, name, reason, candidates JSON, suggestions JSON).
    unplaced: Vec<(String, String, String, String, String)>,
    seen: BTreeMap<String, Seen>,
    /// [`basis`] when the sync started.
    basis: String,
}

struct Decisions {
    manual: Vec<types::Pair>,
    ignored: Vec<String>,
}

impl Decisions {
    /// How many manually linked records are among those received.
    fn linked_among(&self, seen: &BTreeMap<String, Seen>) -> u64 {
        self.manual
            .iter()
            .filter(|p| seen.contains_key(&p.itglue_id))
            .count() as u64
    }
}

fn decisions(conn: &Connection, connector: &str, kind: &str) -> Result<Decisions, AppError> {
    let mut stmt = conn.prepare(
        "SELECT itglue_id, action, scopable_id FROM decisions WHERE connector = ?1 AND kind = ?2 ORDER BY itglue_id",
    )?;
    let mut d = Decisions {
        manual: Vec::new(),
        ignored: Vec::new(),
    };
    let rows = stmt.query_map(params![connector, kind], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
        ))
    })?;
    for row in rows {
        match row? {
            (id, action, Some(target)) if action == "link" => d.manual.push(types::Pair {
                itglue_id: id,
                scopable_id: target,
            }),
            (id, _, _) => d.ignored.push(id),
        }
    }
    Ok(d)
}

/// Automatic links of a kind: itglue id -> scopable id.
fn auto_links(
    conn: &Connection,
    connector: &str,
    kind: &str,
) -> Result<HashMap<String, String>, AppError> {
    let mut stmt = conn.prepare(
        "SELECT itglue_id, scopable_id FROM links WHERE connector = ?1 AND kind = ?2 AND source = 'auto'",
    )?;
    let rows = stmt.query_map(params![connector, kind], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn evidence_name(e: types::Evidence) -> &'static str {
    match e {
        types::Evidence::Name => "name",
        types::Evidence::Serial => "serial",
        types::Evidence::Mac => "mac",
        types::Evidence::Hostname => "hostname",
    }
}

/// The reason's name as listed by `unplaced`.
pub fn reason_name(r: types::Reason) -> &'static str {
    use types::Reason as R;
    match r {
        R::NoMatch => "no-match",
        R::MultipleClients => "multiple-clients",
        R::MultipleOrganizations => "multiple-organizations",
        R::TargetTaken => "target-taken",
        R::EmptyName => "empty-name",
        R::InvalidRecord => "invalid-record",
        R::ParentUnplaced => "parent-unplaced",
        R::MultipleConfigurations => "multiple-configurations",
        R::Conflict => "conflict",
        R::Archived => "archived",
    }
}

/// Checks the connector's placements and computes the changes.
///
/// `valid_target(itglue_id, scopable_id)` says whether a proposed link may exist at all.
#[allow(clippy::too_many_arguments)]
fn plan(
    placements: Vec<types::Placement>,
    seen: BTreeMap<String, Seen>,
    unreadable: &[types::UnreadableRecord],
    decided: &Decisions,
    existing_auto: &HashMap<String, String>,
    manual_linked_fetched: u64,
    valid_target: impl Fn(&str, &str) -> Result<(), String>,
) -> Result<Plan, AppError> {
    let decided_ids: HashSet<&str> = decided
        .manual
        .iter()
        .map(|p| p.itglue_id.as_str())
        .chain(decided.ignored.iter().map(String::as_str))
        .collect();
    let mut placed: HashMap<String, types::Outcome> = HashMap::new();
    let mut taken: HashMap<String, String> = HashMap::new();
    // Targets of manual links are never taken automatically.
    let manual_targets: HashMap<&str, &str> = decided
        .manual
        .iter()
        .map(|p| (p.scopable_id.as_str(), p.itglue_id.as_str()))
        .collect();
    for p in placements {
        let misbehaving = |what: String| {
            AppError::new(
                Exit::ConnectorFailed,
                format!("the connector proposed {what}; nothing was applied"),
            )
        };
        if !seen.contains_key(&p.itglue_id) {
            return Err(misbehaving(format!(
                "a placement for unknown record {:?}",
                p.itglue_id
            )));
        }
        if decided_ids.contains(p.itglue_id.as_str()) {
            return Err(misbehaving(format!(
                "a placement for record {} which has a manual decision",
                p.itglue_id
            )));
        }
        if let types::Outcome::Linked(link) = &p.outcome {
            valid_target(&p.itglue_id, &link.scopable_id).map_err(misbehaving)?;
            if let Some(holder) = manual_targets.get(link.scopable_id.as_str()) {
                return Err(misbehaving(format!(
                    "linking {} to {}, which is linked by hand to {holder}",
                    p.itglue_id, link.scopable_id
                )));
            }
            if let Some(other) = taken.insert(link.scopable_id.clone(), p.itglue_id.clone()) {
                return Err(misbehaving(format!(
                    "linking both {other} and {} to {}",
                    p.itglue_id, link.scopable_id
                )));
            }
        }
        if placed.insert(p.itglue_id.clone(), p.outcome).is_some() {
            return Err(misbehaving(format!(
                "two placements for record {}",
                p.itglue_id
            )));
        }
    }
    let undecided = seen
        .keys()
        .filter(|id| !decided_ids.contains(id.as_str()))
        .count();
    if placed.len() != undecided {
        return Err(AppError::new(
            Exit::ConnectorFailed,
            format!(
                "the connector placed {} of {undecided} records; nothing was applied",
                placed.len()
            ),
        ));
    }

    let mut counts = SyncCounts {
        fetched: (seen.len() + unreadable.len()) as u64,
        errored: unreadable.len() as u64,
        ..SyncCounts::default()
    };
    let mut changes = Vec::new();
    let mut kept = Vec::new();
    let mut unplaced = Vec::new();
    let mut linked = manual_linked_fetched;
    let mut ids: Vec<&String> = placed.keys().collect();
    ids.sort_by_cached_key(|id| id_key(id));
    for id in ids {
        let name = seen
            .get(id.as_str())
            .map(|s| s.name.clone())
            .unwrap_or_default();
        match &placed[id.as_str()] {
            types::Outcome::Linked(link) => {
                linked += 1;
                let evidence: Vec<String> = link
                    .evidence
                    .iter()
                    .map(|e| evidence_name(*e).to_string())
                    .collect();
                match existing_auto.get(id.as_str()) {
                    Some(old) if *old == link.scopable_id => {
                        kept.push((id.clone(), old.clone(), json!(evidence).to_string()));
                    }
                    Some(old) => {
                        changes.push(Change::Remove {
                            itglue_id: id.clone(),
                            scopable_id: old.clone(),
                            why: format!("the evidence now points at {}", link.scopable_id),
                        });
                        changes.push(Change::Add {
                            itglue_id: id.clone(),
                            scopable_id: link.scopable_id.clone(),
                            evidence,
                        });
                    }
                    None => changes.push(Change::Add {
                        itglue_id: id.clone(),
                        scopable_id: link.scopable_id.clone(),
                        evidence,
                    }),
                }
            }
            types::Outcome::Unplaced(u) => {
                if let Some(old) = existing_auto.get(id.as_str()) {
                    changes.push(Change::Remove {
                        itglue_id: id.clone(),
                        scopable_id: old.clone(),
                        why: format!("now {}", reason_name(u.reason)),
                    });
                }
                unplaced.push((
                    id.clone(),
                    name,
                    reason_name(u.reason).to_string(),
                    json!(u.candidates).to_string(),
                    json!(u.suggestions).to_string(),
                ));
            }
        }
    }
    // Automatic links whose record is gone from the API, or is now decided by hand.
    let mut gone: Vec<(&String, &String)> = existing_auto
        .iter()
        .filter(|(id, _)| !placed.contains_key(id.as_str()))
        .collect();
    gone.sort_by(|a, b| id_order(a.0, b.0));
    for (id, old) in gone {
        let why = if seen.contains_key(id.as_str()) {
            "a manual decision replaced it"
        } else {
            "the record no longer exists at the source"
        };
        changes.push(Change::Remove {
            itglue_id: id.clone(),
            scopable_id: old.clone(),
            why: why.into(),
        });
    }
    for (n, bad) in unreadable.iter().enumerate() {
        // Records without an id still get their own row.
        let id = bad
            .id
            .clone()
            .unwrap_or_else(|| format!("(no id #{})", n + 1));
        unplaced.push((
            id,
            bad.detail.clone(),
            "invalid-record".into(),
            "[]".into(),
            "[]".into(),
        ));
    }
    counts.linked = linked;
    counts.skipped = counts.fetched - counts.linked - counts.errored;
    counts.new_links = changes
        .iter()
        .filter(|c| matches!(c, Change::Add { .. }))
        .count() as u64;
    counts.removed_links = changes
        .iter()
        .filter(|c| matches!(c, Change::Remove { .. }))
        .count() as u64;
    Ok(Plan {
        counts,
        changes,
        kept,
        unplaced,
        seen,
        basis: String::new(),
    })
}

/// A sort key giving [`id_order`]'s order, computed once per id.
pub fn id_key(id: &str) -> (u8, u64, String) {
    match id.parse::<u64>() {
        Ok(n) => (0, n, String::new()),
        Err(_) => (1, 0, id.to_string()),
    }
}

/// Orders ids numerically when both are numbers, else as text.
pub fn id_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        _ => a.cmp(b),
    }
}

fn apply(
    conn: &mut Connection,
    connector: &str,
    kind: &str,
    plan: &Plan,
    run_id: i64,
) -> Result<(), AppError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if basis(&tx, connector)? != plan.basis {
        return Err(AppError::new(
            Exit::Failure,
            "manual decisions or organization links changed while the sync ran; nothing was applied: run the sync again",
        ));
    }
    let now = db::now();
    // What is stored now, so that only rows that change are written.
    let mut stored_evidence: HashMap<String, String> = HashMap::new();
    {
        let mut stmt = tx.prepare(
            "SELECT itglue_id, evidence FROM links WHERE connector = ?1 AND kind = ?2 AND source = 'auto'",
        )?;
        for row in stmt.query_map(params![connector, kind], |r| Ok((r.get(0)?, r.get(1)?)))? {
            let (id, evidence) = row?;
            stored_evidence.insert(id, evidence);
        }
    }
    let mut stored_records: HashMap<String, (String, Option<String>)> = HashMap::new();
    {
        let mut stmt = tx.prepare(
            "SELECT itglue_id, name, organization_id FROM itglue_records WHERE connector = ?1 AND kind = ?2",
        )?;
        for row in stmt.query_map(params![connector, kind], |r| {
            Ok((r.get(0)?, (r.get(1)?, r.get(2)?)))
        })? {
            let (id, record) = row?;
            stored_records.insert(id, record);
        }
    }
    for change in &plan.changes {
        match change {
            Change::Remove { itglue_id, .. } => {
                tx.prepare_cached(
                    "DELETE FROM links WHERE connector = ?1 AND kind = ?2 AND itglue_id = ?3 AND source = 'auto'",
                )?
                .execute(params![connector, kind, itglue_id])?;
            }
            Change::Add {
                itglue_id,
                scopable_id,
                evidence,
            } => {
                tx.prepare_cached(
                    "INSERT INTO links (connector, kind, itglue_id, scopable_id, source, evidence, linked_at)
                     VALUES (?1, ?2, ?3, ?4, 'auto', ?5, ?6)",
                )?
                .execute(params![connector, kind, itglue_id, scopable_id, json!(evidence).to_string(), now])?;
            }
        }
    }
    for (itglue_id, scopable_id, evidence) in &plan.kept {
        if stored_evidence.get(itglue_id) == Some(evidence) {
            continue;
        }
        tx.prepare_cached(
            "UPDATE links SET evidence = ?5 WHERE connector = ?1 AND kind = ?2 AND itglue_id = ?3 AND scopable_id = ?4 AND source = 'auto'",
        )?
        .execute(params![connector, kind, itglue_id, scopable_id, evidence])?;
    }
    tx.execute(
        "DELETE FROM unplaced WHERE connector = ?1 AND kind = ?2",
        params![connector, kind],
    )?;
    for (id, name, reason, candidates, suggestions) in &plan.unplaced {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO unplaced (connector, kind, itglue_id, name, reason, candidates, suggestions)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![connector, kind, id, name, reason, candidates, suggestions])?;
    }
    for id in stored_records.keys() {
        if !plan.seen.contains_key(id) {
            tx.prepare_cached(
                "DELETE FROM itglue_records WHERE connector = ?1 AND kind = ?2 AND itglue_id = ?3",
            )?
            .execute(params![connector, kind, id])?;
        }
    }
    for (id, s) in &plan.seen {
        let unchanged = stored_records
            .get(id)
            .is_some_and(|(name, org)| *name == s.name && *org == s.organization_id);
        if unchanged {
            continue;
        }
        tx.prepare_cached(
            "INSERT OR REPLACE INTO itglue_records (connector, kind, itglue_id, name, organization_id)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![connector, kind, id, s.name, s.organization_id])?;
    }
    finish_run(&tx, run_id, "ok", &plan.counts, None)?;
    tx.commit()?;
    Ok(())
}

fn start_run(
    conn: &Connection,
    connector: &str,
    kind: &str,
    dry_run: bool,
) -> Result<i64, AppError> {
    // A run still marked running was interrupted (the process died): say so.
    conn.execute(
        "UPDATE sync_runs SET status = 'failed', error = 'interrupted before it finished; nothing was applied',
                finished_at = coalesce(finished_at, started_at)
         WHERE connector = ?1 AND status = 'running'",
        params![connector],
    )?;
    conn.execute(
        "INSERT INTO sync_runs (connector, kind, dry_run, started_at, status) VALUES (?1, ?2, ?3, ?4, 'running')",
        params![connector, kind, dry_run, db::now()],
    )?;
    Ok(conn.last_insert_rowid())
}

fn finish_run(
    conn: &Connection,
    run_id: i64,
    status: &str,
    c: &SyncCounts,
    error: Option<&str>,
) -> Result<(), AppError> {
    conn.execute(
        "UPDATE sync_runs SET finished_at = ?2, status = ?3, fetched = ?4, linked = ?5, skipped = ?6,
                errored = ?7, new_links = ?8, removed_links = ?9, requests = ?10, error = ?11
         WHERE id = ?1",
        params![
            run_id,
            db::now(),
            status,
            c.fetched as i64,
            c.linked as i64,
            c.skipped as i64,
            c.errored as i64,
            c.new_links as i64,
            c.removed_links as i64,
            c.requests as i64,
            error
        ],
    )?;
    Ok(())
}

fn run_json(r: &rusqlite::Row<'_>) -> rusqlite::Result<Value> {
    Ok(json!({
        "kind": r.get::<_, String>("kind")?,
        "fetched": r.get::<_, i64>("fetched")?,
        "linked": r.get::<_, i64>("linked")?,
        "skipped": r.get::<_, i64>("skipped")?,
        "errored": r.get::<_, i64>("errored")?,
        "new_links": r.get::<_, i64>("new_links")?,
        "removed_links": r.get::<_, i64>("removed_links")?,
        "requests": r.get::<_, i64>("requests")?,
        "dry_run": r.get::<_, bool>("dry_run")?,
        "started_at": r.get::<_, String>("started_at")?,
        "finished_at": r.get::<_, Option<String>>("finished_at")?,
        "status": r.get::<_, String>("status")?,
        "error": r.get::<_, Option<String>>("error")?,
    }))
}

/// The last (non-dry-run) sync of a kind as a status summary, or null.
pub fn last_run_summary(conn: &Connection, connector: &str, kind: &str) -> Result<Value, AppError> {
    let v = conn
        .query_row(
            "SELECT * FROM sync_runs WHERE connector = ?1 AND kind = ?2 AND dry_run = 0 AND status != 'running'
             ORDER BY id DESC LIMIT 1",
            params![connector, kind],
            run_json,
        )
        .optional()?;
    Ok(v.unwrap_or(Value::Null))
}

/// Recent sync runs (all kinds), newest first, with their row ids.
pub fn recent_runs(
    conn: &Connection,
    connector: &str,
    limit: usize,
) -> Result<Vec<(i64, Value)>, AppError> {
    let mut stmt =
        conn.prepare("SELECT * FROM sync_runs WHERE connector = ?1 ORDER BY id DESC LIMIT ?2")?;
    let rows = stmt.query_map(params![connector, limit as i64], |r| {
        Ok((r.get("id")?, run_json(r)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The stored connection's call context, region and base URL.
fn stored_context(
    app: &App,
) -> Result<(CallContext, String, crate::policy::BaseUrl, String), AppError> {
    let stored = db::connection(&app.conn, app.name())?.ok_or_else(|| {
        AppError::new(
            Exit::Usage,
            format!(
                "not connected; run `scopable-host {} connect --region us|eu|au` first",
                app.name()
            ),
        )
    })?;
    let key = app.stored_key(&stored)?;
    let base = crate::policy::BaseUrl::parse_endpoint(&stored.endpoint)
        .map_err(|e| AppError::new(Exit::BadInput, format!("stored endpoint: {e}")))?;
    let ctx = app.call_context(base.clone(), &key)?;
    Ok((ctx, stored.region, base, stored.verified_at))
}

fn progress_bar(show: bool, label: &'static str) -> Option<indicatif::ProgressBar> {
    if !show {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} pages ({elapsed})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(label);
    Some(bar)
}

/// Runs a sync of one kind and returns its counts and changes. Records a failed run when it
/// fails after starting.
pub fn sync(
    app: &mut App,
    rt: &tokio::runtime::Runtime,
    kind: RecordKind,
    dry_run: bool,
    show_progress: bool,
) -> Result<(SyncCounts, Vec<Change>, String, String), AppError> {
    let (ctx, region, base, verified_at) = stored_context(app)?;
    let connector = app.name().to_string();
    let run_id = start_run(&app.conn, &connector, kind.as_str(), dry_run)?;
    let started_at: String = app.conn.query_row(
        "SELECT started_at FROM sync_runs WHERE id = ?1",
        [run_id],
        |r| r.get(0),
    )?;
    let timeout = Duration::from_secs(app.connector.manifest.limits.sync_timeout_secs);
    let bar = progress_bar(show_progress, kind.as_str());
    let on_progress = |done: u32, total: Option<u32>| {
        if let Some(bar) = &bar {
            if let Some(total) = total {
                bar.set_length(u64::from(total));
            }
            bar.set_position(u64::from(done));
        }
    };
    let result = rt.block_on(async {
        match tokio::time::timeout(timeout, compute(app, &ctx, kind, on_progress)).await {
            Ok(r) => r,
            Err(_) => Err(Failure::App(AppError::new(
                Exit::Unavailable,
                format!(
                    "the sync did not finish within {} s (sync_timeout_secs); nothing was applied",
                    timeout.as_secs()
                ),
            ))),
        }
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let requests = ctx.requests.load(Ordering::Relaxed);
    let outcome = result.map_err(|f| match f {
        Failure::App(e) => e,
        Failure::Fetch(e) => e.into_app_error(app, &region, &base, Some(&verified_at)),
    });
    match outcome {
        Ok(mut plan) => {
            plan.counts.requests = requests;
            if dry_run {
                finish_run(&app.conn, run_id, "ok", &plan.counts, None)?;
            } else {
                apply(&mut app.conn, &connector, kind.as_str(), &plan, run_id)?;
            }
            let finished_at: String = app.conn.query_row(
                "SELECT finished_at FROM sync_runs WHERE id = ?1",
                [run_id],
                |r| r.get(0),
            )?;
            Ok((plan.counts, plan.changes, started_at, finished_at))
        }
        Err(e) => {
            let counts = SyncCounts {
                requests,
                ..SyncCounts::default()
            };
            finish_run(&app.conn, run_id, "failed", &counts, Some(&e.message))?;
            Err(e)
        }
    }
}

enum Failure {
    App(AppError),
    Fetch(fetch::FetchError),
}

impl From<AppError> for Failure {
    fn from(e: AppError) -> Failure {
        Failure::App(e)
    }
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Failure {
        Failure::App(e.into())
    }
}

async fn compute(
    app: &App,
    ctx: &CallContext,
    kind: RecordKind,
    progress: impl FnMut(u32, Option<u32>),
) -> Result<Plan, Failure> {
    let connector = app.name();
    let started_basis = basis(&app.conn, connector)?;
    let decided = decisions(&app.conn, connector, kind.as_str())?;
    let existing = auto_links(&app.conn, connector, kind.as_str())?;
    let call_failed = |e| Failure::Fetch(fetch::FetchError::Call(e));
    let planned = match kind {
        RecordKind::Organization => {
            let listing: Listing<types::Organization> =
                fetch::fetch_all::<types::OrganizationPage>(app, ctx, progress)
                    .await
                    .map_err(Failure::Fetch)?;
            let clients = crate::records::clients(&app.conn)?;
            let client_ids: HashSet<String> = clients.iter().map(|c| c.id.clone()).collect();
            let seen: BTreeMap<String, Seen> = listing
                .records
                .iter()
                .map(|o| {
                    (
                        o.id.clone(),
                        Seen {
                            name: o.name.clone(),
                            organization_id: None,
                        },
                    )
                })
                .collect();
            let manual_fetched = decided.linked_among(&seen);
            let input = types::MatchInput::Organizations(types::OrganizationMatch {
                organizations: listing.records,
                clients,
                manual_links: decided.manual.clone(),
                ignored: decided.ignored.clone(),
            });
            let placements = app
                .connector
                .match_records(ctx, input)
                .await
                .map_err(call_failed)?;
            Ok(plan(
                placements,
                seen,
                &listing.unreadable,
                &decided,
                &existing,
                manual_fetched,
                |_, client| {
                    if client_ids.contains(client) {
                        Ok(())
                    } else {
                        Err(format!("a link to client {client:?}, which does not exist"))
                    }
                },
            )?)
        }
        RecordKind::Configuration => {
            let listing: Listing<types::Configuration> =
                fetch::fetch_all::<types::ConfigurationPage>(app, ctx, progress)
                    .await
                    .map_err(Failure::Fetch)?;
            // Each linked organization (auto or manual) has exactly one client.
            let parents: Vec<types::Pair> =
                crate::records::organization_links(&app.conn, connector)?;
            let parent_of: HashMap<String, String> = parents
                .iter()
                .map(|p| (p.itglue_id.clone(), p.scopable_id.clone()))
                .collect();
            let parent_clients: HashSet<&str> = parent_of.values().map(String::as_str).collect();
            let scopable = crate::records::configurations_of(&app.conn, &parent_clients)?;
            let client_of: HashMap<String, String> = scopable
                .iter()
                .map(|c| (c.id.clone(), c.client_id.clone()))
                .collect();
            let seen: BTreeMap<String, Seen> = listing
                .records
                .iter()
                .map(|c| {
                    (
                        c.id.clone(),
                        Seen {
                            name: c.name.clone(),
                            organization_id: Some(c.organization_id.clone()),
                        },
                    )
                })
                .collect();
            let archived: HashSet<String> = listing
                .records
                .iter()
                .filter(|c| c.archived)
                .map(|c| c.id.clone())
                .collect();
            let org_of: HashMap<String, String> = listing
                .records
                .iter()
                .map(|c| (c.id.clone(), c.organization_id.clone()))
                .collect();
            let manual_fetched = decided.linked_among(&seen);
            let placements = match_configurations_in_batches(
                app,
                ctx,
                listing.records,
                scopable,
                &parents,
                &decided,
            )
            .await
            .map_err(call_failed)?;
            Ok(plan(
                placements,
                seen,
                &listing.unreadable,
                &decided,
                &existing,
                manual_fetched,
                |id, target| {
                    if archived.contains(id) {
                        return Err(format!("a link for archived configuration {id}"));
                    }
                    let expected = org_of.get(id).and_then(|org| parent_of.get(org));
                    match (expected, client_of.get(target)) {
                        (_, None) => Err(format!(
                            "a link to configuration {target:?}, which does not exist under a linked client"
                        )),
                        (Some(want), Some(got)) if want == got => Ok(()),
                        _ => Err(format!(
                            "a link from configuration {id} to {target:?}, outside the client its organization is linked to"
                        )),
                    }
                },
            )?)
        }
    };
    planned.map(|mut p: Plan| {
        p.basis = started_basis;
        p
    })
}

/// Most records (IT Glue plus Scopable configurations) handed to one `match` call. Matching
/// is exact within a client, so batches of whole clients give the same placements as one call,
/// in bounded guest memory.
const MATCH_BATCH: usize = 10_000;

type Group = (Vec<types::Configuration>, Vec<types::ScopableConfiguration>);

/// Places configurations in batches of whole clients.
async fn match_configurations_in_batches(
    app: &App,
    ctx: &CallContext,
    configurations: Vec<types::Configuration>,
    scopable: Vec<types::ScopableConfiguration>,
    parents: &[types::Pair],
    decided: &Decisions,
) -> Result<Vec<types::Placement>, crate::sandbox::CallError> {
    let client_of_org: HashMap<&str, &str> = parents
        .iter()
        .map(|p| (p.itglue_id.as_str(), p.scopable_id.as_str()))
        .collect();
    // Group by the parent's client; configurations without a linked parent share one group.
    let mut groups: BTreeMap<Option<String>, Group> = BTreeMap::new();
    for c in configurations {
        let client = client_of_org
            .get(c.organization_id.as_str())
            .map(|s| s.to_string());
        groups.entry(client).or_default().0.push(c);
    }
    for s in scopable {
        if let Some(group) = groups.get_mut(&Some(s.client_id.clone())) {
            group.1.push(s);
        }
    }
    let mut placements = Vec::new();
    let mut batch: Vec<(Option<String>, Group)> = Vec::new();
    let mut batch_size = 0;
    let mut groups = groups.into_iter().peekable();
    while let Some(group) = groups.next() {
        batch_size += group.1.0.len() + group.1.1.len();
        batch.push(group);
        if batch_size < MATCH_BATCH && groups.peek().is_some() {
            continue;
        }
        let clients: HashSet<String> = batch.iter().filter_map(|(c, _)| c.clone()).collect();
        let (mut configurations, mut scopable) = (Vec::new(), Vec::new());
        for (_, (c, s)) in batch.drain(..) {
            configurations.extend(c);
            scopable.extend(s);
        }
        let ids: HashSet<&str> = configurations.iter().map(|c| c.id.as_str()).collect();
        let targets: HashSet<&str> = scopable.iter().map(|s| s.id.as_str()).collect();
        let manual_links = decided
            .manual
            .iter()
            .filter(|p| {
                ids.contains(p.itglue_id.as_str()) || targets.contains(p.scopable_id.as_str())
            })
            .cloned()
            .collect();
        let ignored = decided
            .ignored
            .iter()
            .filter(|i| ids.contains(i.as_str()))
            .cloned()
            .collect();
        let parents = parents
            .iter()
            .filter(|p| clients.contains(&p.scopable_id))
            .cloned()
            .collect();
        let input = types::MatchInput::Configurations(types::ConfigurationMatch {
            configurations,
            scopable_configurations: scopable,
            parents,
            manual_links,
            ignored,
        });
        placements.extend(app.connector.match_records(ctx, input).await?);
        batch_size = 0;
    }
    Ok(placements)
}

/// `itglue sync organizations|configurations [--dry-run] [--json]`.
pub fn sync_command(
    app: &mut App,
    rt: &tokio::runtime::Runtime,
    kind: RecordKind,
    dry_run: bool,
    json_out: bool,
) -> Result<(), AppError> {
    let show_progress = !json_out && std::io::stderr().is_terminal();
    let (counts, changes, started_at, finished_at) = sync(app, rt, kind, dry_run, show_progress)?;
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
    for change in &changes {
        match change {
            Change::Add {
                itglue_id,
                scopable_id,
                evidence,
            } => {
                println!(
                    "  + {itglue_id} -> {target} {scopable_id} ({})",
                    evidence.join(", ")
                )
            }
            Change::Remove {
                itglue_id,
                scopable_id,
                why,
            } => {
                println!("  - {itglue_id} -x {target} {scopable_id} ({why})")
            }
        }
    }
    let verb = if dry_run {
        "Dry run (nothing changed)"
    } else {
        "Synced"
    };
    println!(
        "{verb}: {} {plural} fetched: {} linked, {} skipped, {} errored; {} new links, {} removed; {} requests.",
        counts.fetched,
        counts.linked,
        counts.skipped,
        counts.errored,
        counts.new_links,
        counts.removed_links,
        counts.requests
    );
    if counts.skipped + counts.errored > 0 {
        println!(
            "See what could not be placed: scopable-host {} unplaced",
            app.name()
        );
    }
    Ok(())
}

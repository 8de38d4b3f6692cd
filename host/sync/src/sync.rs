//! Sync: fetch every record, ask the connector to place them, check every proposal against
//! the database (the component proposes, the host disposes), and apply the result in one
//! transaction. Manual decisions are never changed; stale automatic links are removed.

use crate::app::{App, AppError, Exit};
use crate::fetch;
pub use crate::kinds::{RecordKind, id_key, id_order, reason_name};
use crate::speculate::{self, Speculation};
use scopable_sandbox::sandbox::{CallContext, wit_types as types};
use scopable_store::Db;
use scopable_store::db::{self, DbError};
use scopable_store::runs::{self, RunCounts, RunRow};
use scopable_store::staging::{self, Planned, Received};
use scopable_store::sync_apply::{self, SeenRecord};
use serde_json::{Value, json};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The counts of one sync, as printed with `--json` and recorded with its run.
pub type SyncCounts = RunCounts;

/// One link change a sync makes (or would make, in a dry run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new automatic link.
    Add {
        /// source id.
        source_id: String,
        /// The source record's name, as received in this sync.
        name: Option<String>,
        /// Scopable id.
        scopable_id: String,
        /// Evidence names.
        evidence: Vec<String>,
    },
    /// An automatic link removed.
    Remove {
        /// source id.
        source_id: String,
        /// The source record's name, when it was received in this sync (`None` when the
        /// record is gone from the source).
        name: Option<String>,
        /// The Scopable id it pointed to.
        scopable_id: String,
        /// Why.
        why: String,
    },
}

/// A record as the host keeps it ([`SeenRecord`]: `source_records`), so that it can be
/// placed again without the network.
type Seen = SeenRecord;

/// An organization as the host keeps it, with its id.
fn seen_organization(o: types::Organization) -> (String, Seen) {
    let seen = Seen {
        name: o.name,
        short_name: o.short_name,
        type_name: o.type_name,
        status_name: o.status_name,
        ..Seen::default()
    };
    (o.id, seen)
}

/// A configuration as the host keeps it, with its id.
fn seen_configuration(c: types::Configuration) -> (String, Seen) {
    let seen = Seen {
        name: c.name,
        organization_id: Some(c.organization_id),
        type_name: c.type_name,
        hostname: c.hostname,
        primary_ip: c.primary_ip,
        serial_number: c.serial_number,
        mac_addresses: c.mac_addresses,
        archived: c.archived,
        ..Seen::default()
    };
    (c.id, seen)
}

/// The organization as the connector gave it.
fn organization_of(id: &str, s: &Seen) -> types::Organization {
    types::Organization {
        id: id.to_string(),
        name: s.name.clone(),
        short_name: s.short_name.clone(),
        type_name: s.type_name.clone(),
        status_name: s.status_name.clone(),
    }
}

/// The configuration as the connector gave it.
fn configuration_of(id: &str, s: &Seen) -> types::Configuration {
    types::Configuration {
        id: id.to_string(),
        organization_id: s.organization_id.clone().unwrap_or_default(),
        name: s.name.clone(),
        hostname: s.hostname.clone(),
        primary_ip: s.primary_ip.clone(),
        serial_number: s.serial_number.clone(),
        mac_addresses: s.mac_addresses.clone(),
        type_name: s.type_name.clone(),
        archived: s.archived,
    }
}

/// The outcome of matching a batch of records, checked and ready to apply.
#[derive(Default)]
struct Plan {
    /// Its counts (of the batch's records: `errored` is left to the caller).
    counts: SyncCounts,
    /// The link changes: those of placed records, then (from `gone_from` on) the removals of
    /// records no longer placed automatically.
    changes: Vec<Change>,
    /// Where the removals of records no longer placed start in `changes`.
    gone_from: usize,
    /// Links to keep with refreshed evidence: (source id, scopable id, evidence JSON).
    kept: Vec<(String, String, String)>,
    /// (source id, name, reason, candidates JSON, suggestions JSON).
    unplaced: Vec<(String, String, String, String, String)>,
}

impl Plan {
    /// Adds a later batch's plan to this one. A merged plan is read (`rematch_stored`), never
    /// staged: its `gone_from` no longer separates the removals of records no longer placed.
    fn merge(&mut self, other: Plan) {
        add_counts(&mut self.counts, &other.counts);
        self.changes.extend(other.changes);
        self.gone_from = self.changes.len();
        self.kept.extend(other.kept);
        self.unplaced.extend(other.unplaced);
    }

    /// Its rows for the staging tables.
    fn staged(self) -> Vec<Planned> {
        let mut rows =
            Vec::with_capacity(self.changes.len() + self.kept.len() + self.unplaced.len());
        for (n, change) in self.changes.into_iter().enumerate() {
            rows.push(match change {
                Change::Add {
                    source_id,
                    name,
                    scopable_id,
                    evidence,
                } => Planned::Add {
                    source_id,
                    name: name.unwrap_or_default(),
                    scopable_id,
                    evidence: json!(evidence).to_string(),
                },
                Change::Remove {
                    source_id,
                    name,
                    scopable_id,
                    why,
                } => Planned::Remove {
                    source_id,
                    name,
                    scopable_id,
                    why,
                    gone: n >= self.gone_from,
                },
            });
        }
        for (source_id, scopable_id, evidence) in self.kept {
            rows.push(Planned::Kept {
                source_id,
                scopable_id,
                evidence,
            });
        }
        for (source_id, name, reason, candidates, suggestions) in self.unplaced {
            rows.push(Planned::Unplaced {
                source_id,
                name,
                reason,
                candidates,
                suggestions,
            });
        }
        rows
    }
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
            .filter(|p| seen.contains_key(&p.source_id))
            .count() as u64
    }
}

fn decisions(db: &Db, connector: &str, kind: &str) -> Result<Decisions, AppError> {
    let mut d = Decisions {
        manual: Vec::new(),
        ignored: Vec::new(),
    };
    for row in sync_apply::decisions(db, connector, kind)? {
        match row {
            (id, action, Some(target)) if action == "link" => d.manual.push(types::Pair {
                source_id: id,
                scopable_id: target,
            }),
            (id, _, _) => d.ignored.push(id),
        }
    }
    Ok(d)
}

/// Automatic links of a kind: source id -> scopable id.
fn auto_links(db: &Db, connector: &str, kind: &str) -> Result<HashMap<String, String>, AppError> {
    Ok(sync_apply::auto_links(db, connector, kind)?)
}

fn evidence_name(e: types::Evidence) -> &'static str {
    match e {
        types::Evidence::Name => "name",
        types::Evidence::Serial => "serial",
        types::Evidence::Mac => "mac",
        types::Evidence::Hostname => "hostname",
    }
}

/// Checks the connector's placements and computes the changes.
///
/// `valid_target(source_id, link)` says whether a proposed link (its target and evidence) may
/// exist at all.
#[allow(clippy::too_many_arguments)]
fn plan(
    placements: Vec<types::Placement>,
    seen: &BTreeMap<String, Seen>,
    decided: &Decisions,
    existing_auto: &HashMap<String, String>,
    manual_linked_fetched: u64,
    service: &str,
    valid_target: impl Fn(&str, &types::Link) -> Result<(), String>,
) -> Result<Plan, AppError> {
    let decided_ids: HashSet<&str> = decided
        .manual
        .iter()
        .map(|p| p.source_id.as_str())
        .chain(decided.ignored.iter().map(String::as_str))
        .collect();
    let mut placed: HashMap<String, types::Outcome> = HashMap::new();
    let mut taken: HashMap<String, String> = HashMap::new();
    // Targets of manual links are never taken automatically.
    let manual_targets: HashMap<&str, &str> = decided
        .manual
        .iter()
        .map(|p| (p.scopable_id.as_str(), p.source_id.as_str()))
        .collect();
    for p in placements {
        let misbehaving = |what: String| {
            AppError::new(
                Exit::ConnectorFailed,
                format!("the connector proposed {what}; nothing was applied"),
            )
        };
        if !seen.contains_key(&p.source_id) {
            return Err(misbehaving(format!(
                "a placement for unknown record {:?}",
                p.source_id
            )));
        }
        if decided_ids.contains(p.source_id.as_str()) {
            return Err(misbehaving(format!(
                "a placement for record {} which has a manual decision",
                p.source_id
            )));
        }
        if let types::Outcome::Linked(link) = &p.outcome {
            valid_target(&p.source_id, link).map_err(misbehaving)?;
            if let Some(holder) = manual_targets.get(link.scopable_id.as_str()) {
                return Err(misbehaving(format!(
                    "linking {} to {}, which is linked by hand to {holder}",
                    p.source_id, link.scopable_id
                )));
            }
            if let Some(other) = taken.insert(link.scopable_id.clone(), p.source_id.clone()) {
                return Err(misbehaving(format!(
                    "linking both {other} and {} to {}",
                    p.source_id, link.scopable_id
                )));
            }
        }
        if let types::Outcome::Unplaced(u) = &p.outcome
            && (u.candidates.len() > MAX_CANDIDATES || u.suggestions.len() > MAX_CANDIDATES)
        {
            return Err(misbehaving(format!(
                "{} candidates and {} suggestions for record {} (at most {MAX_CANDIDATES} each)",
                u.candidates.len(),
                u.suggestions.len(),
                p.source_id
            )));
        }
        if placed.insert(p.source_id.clone(), p.outcome).is_some() {
            return Err(misbehaving(format!(
                "two placements for record {}",
                p.source_id
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
        fetched: seen.len() as u64,
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
                            source_id: id.clone(),
                            name: Some(name.clone()),
                            scopable_id: old.clone(),
                            why: format!("the evidence now points at {}", link.scopable_id),
                        });
                        changes.push(Change::Add {
                            source_id: id.clone(),
                            name: Some(name),
                            scopable_id: link.scopable_id.clone(),
                            evidence,
                        });
                    }
                    None => changes.push(Change::Add {
                        source_id: id.clone(),
                        name: Some(name),
                        scopable_id: link.scopable_id.clone(),
                        evidence,
                    }),
                }
            }
            types::Outcome::Unplaced(u) => {
                if let Some(old) = existing_auto.get(id.as_str()) {
                    changes.push(Change::Remove {
                        source_id: id.clone(),
                        name: Some(name.clone()),
                        scopable_id: old.clone(),
                        why: format!(
                            "now {}",
                            crate::describe::reason_label(reason_name(u.reason), service)
                        ),
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
    let gone_from = changes.len();
    for (id, old) in gone {
        let why = if seen.contains_key(id.as_str()) {
            "a manual decision replaced it"
        } else {
            "the record no longer exists at the source"
        };
        changes.push(Change::Remove {
            source_id: id.clone(),
            name: seen.get(id.as_str()).map(|s| s.name.clone()),
            scopable_id: old.clone(),
            why: why.into(),
        });
    }
    counts.linked = linked;
    counts.skipped = counts.fetched - counts.linked;
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
        gone_from,
        kept,
        unplaced,
    })
}

/// Most candidates, and most suggestions, one unplaced record may carry.
pub const MAX_CANDIDATES: usize = 100;

/// The identifiers a record carries, normalized as the matching rules normalize them
/// (`scopable_normalize`), for checking a link's evidence. Placeholders and unusable values
/// are absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Carries {
    /// The normalized name, when it is not empty.
    pub name: Option<String>,
    /// The normalized serial number, when usable.
    pub serial: Option<String>,
    /// The usable MAC addresses, normalized.
    pub macs: Vec<String>,
    /// The first DNS label of the hostname, when usable.
    pub hostname: Option<String>,
}

/// A configuration, on either side, as far as its identifiers go.
pub trait Device {
    /// Its name, serial number, MAC addresses and hostname, as received or imported.
    fn identifiers(&self) -> (&str, Option<&str>, &[String], Option<&str>);
}

impl Device for types::Configuration {
    fn identifiers(&self) -> (&str, Option<&str>, &[String], Option<&str>) {
        let (serial, host) = (self.serial_number.as_deref(), self.hostname.as_deref());
        (&self.name, serial, &self.mac_addresses, host)
    }
}

impl Device for types::ScopableConfiguration {
    fn identifiers(&self) -> (&str, Option<&str>, &[String], Option<&str>) {
        let (serial, host) = (self.serial_number.as_deref(), self.hostname.as_deref());
        (&self.name, serial, &self.mac_addresses, host)
    }
}

impl Carries {
    /// What a configuration (received or Scopable's) carries as evidence. A configuration
    /// never links on its name ([`check_evidence`] refuses it), so its name is left out: not
    /// normalizing it saves most of the work for a large listing.
    pub fn of_device(device: &impl Device) -> Carries {
        let (_, serial, macs, hostname) = device.identifiers();
        Carries::of("", serial, macs, hostname)
    }

    /// What a record with these fields carries.
    pub fn of(
        name: &str,
        serial: Option<&str>,
        macs: &[String],
        hostname: Option<&str>,
    ) -> Carries {
        use scopable_normalize as n;
        let name = n::normalize_name(name);
        let mut macs: Vec<String> = macs.iter().filter_map(|m| n::normalize_mac(m)).collect();
        macs.sort();
        macs.dedup();
        Carries {
            name: (!name.is_empty()).then_some(name),
            serial: serial.and_then(n::normalize_serial),
            macs,
            hostname: hostname.and_then(n::normalize_hostname),
        }
    }
}

/// Checks a link's evidence against the record kind and both records: an organization links
/// on its name only; a configuration on its serial, MAC or hostname; each piece of evidence
/// must hold on the records themselves (equal normalized names, serials or first hostname
/// labels, a MAC in common; placeholders never count); no evidence twice, and at least one.
pub fn check_evidence(
    kind: RecordKind,
    evidence: &[types::Evidence],
    source: &Carries,
    target: &Carries,
) -> Result<(), String> {
    use types::Evidence as E;
    if evidence.is_empty() {
        return Err("a link without evidence".into());
    }
    for (i, e) in evidence.iter().enumerate() {
        let name = evidence_name(*e);
        if evidence[..i].contains(e) {
            return Err(format!("evidence {name} twice"));
        }
        let allowed = match kind {
            RecordKind::Organization => *e == E::Name,
            RecordKind::Configuration => *e != E::Name,
        };
        if !allowed {
            return Err(format!(
                "evidence {name}, which never links {} records",
                kind.as_str()
            ));
        }
        let same = |a: &Option<String>, b: &Option<String>| a.is_some() && a == b;
        let holds = match e {
            E::Name => same(&source.name, &target.name),
            E::Serial => same(&source.serial, &target.serial),
            E::Hostname => same(&source.hostname, &target.hostname),
            E::Mac => source
                .macs
                .iter()
                .any(|m| target.macs.binary_search(m).is_ok()),
        };
        if !holds {
            return Err(format!(
                "evidence {name}, which the records do not agree on"
            ));
        }
    }
    Ok(())
}

/// Applies the staged plan of `run` ([`sync_apply::apply_staged`]).
fn apply(
    db: &mut Db,
    connector: &str,
    kind: &str,
    run: runs::Held,
    basis: &str,
    counts: &SyncCounts,
) -> Result<(), AppError> {
    let started = std::time::Instant::now();
    match sync_apply::apply_staged(db, connector, kind, run, basis, counts)? {
        sync_apply::Applied::Done { written } => {
            let elapsed_ms = started.elapsed().as_millis() as u64;
            tracing::debug!(run = run.id, written, elapsed_ms, "sync applied");
            Ok(())
        }
        sync_apply::Applied::LeaseLost => Err(AppError::new(
            Exit::Failure,
            "this sync lost its lease (it stopped renewing it long enough for another sync to take over); nothing was applied: run the sync again",
        )),
        sync_apply::Applied::BasisChanged => Err(AppError::new(
            Exit::Failure,
            "manual decisions or organization links changed while the sync ran; nothing was applied: run the sync again",
        )),
    }
}

/// How long a run's lease lasts unless its process renews it, by default.
const DEFAULT_LEASE: Duration = Duration::from_secs(20);

/// The environment variable that sets the lease, in seconds (1 to 3600): short leases let a
/// test see a killed run expire.
pub const LEASE_ENV: &str = "SCOPABLE_LEASE_SECS";

/// The lease length: [`LEASE_ENV`], else [`DEFAULT_LEASE`]; a usage error when the variable
/// is not a number of seconds from 1 to 3600.
pub fn lease_length() -> Result<Duration, AppError> {
    let Some(raw) = std::env::var_os(LEASE_ENV) else {
        return Ok(DEFAULT_LEASE);
    };
    match raw.to_str().and_then(|v| v.trim().parse::<u64>().ok()) {
        Some(secs @ 1..=3600) => Ok(Duration::from_secs(secs)),
        _ => Err(AppError::new(
            Exit::Usage,
            format!(
                "{LEASE_ENV} must be a whole number of seconds from 1 to 3600; unset it for the default ({} s)",
                DEFAULT_LEASE.as_secs()
            ),
        )),
    }
}

/// Starts a run, holding the lease of this connector and kind for `lease`. A `running` run
/// whose lease has passed was interrupted (its process died) and is marked so; a live one
/// means a sync of this kind is already running: exit 1, and nothing is written.
fn start_run(
    db: &mut Db,
    connector: &str,
    kind: &str,
    dry_run: bool,
    lease: Duration,
    actor: &str,
) -> Result<runs::Run, AppError> {
    match runs::start(db, connector, kind, dry_run, lease, Some(actor))? {
        runs::Start::Started(run) => Ok(run),
        runs::Start::Running(live) => Err(AppError::new(
            Exit::Failure,
            format!(
                "a {}sync of {kind}s is already running (run {}, started {}); this one changed nothing. Wait for it to finish and run this one again; if its process died, it stops blocking when its lease expires (in {} s at most).",
                if live.dry_run { "dry-run " } else { "" },
                live.id,
                live.started_at,
                live.left.as_secs() + 1
            ),
        )),
    }
}

/// Records a run's end, unless it is no longer this process's to record (another process
/// marked it interrupted after its lease lapsed).
fn finish_run(
    db: &Db,
    run: runs::Held,
    status: &str,
    c: &SyncCounts,
    error: Option<&str>,
) -> Result<(), AppError> {
    runs::finish(
        db,
        run,
        status,
        c,
        error.map(|e| scopable_sandbox::audit::bounded(e.to_string())),
    )?;
    Ok(())
}

/// A run's counts, times, status and error as JSON (status, activity and the runtime's run
/// answers build on it).
pub fn run_json(r: &RunRow) -> Value {
    json!({
        "kind": r.kind,
        "fetched": r.fetched,
        "linked": r.linked,
        "skipped": r.skipped,
        "errored": r.errored,
        "new_links": r.new_links,
        "removed_links": r.removed_links,
        "requests": r.requests,
        "dry_run": r.dry_run,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "status": r.status,
        "error": r.error,
    })
}

/// The last (non-dry-run) sync of a kind as a status summary, or null before the first.
///
/// The summary is that run's counts, times, `status` and `error`: `"running"` while a process
/// holds its lease (its counts are still zero), `"failed"` with its error when it failed or was
/// interrupted (a `running` run whose lease lapsed: its process died), else `"ok"`. `"last_ok"`
/// holds the counts and times of the newest run that succeeded (the same run when the last one
/// did), or null, so that a failed or running sync never hides the last good counts.
pub fn last_run_summary(conn: &Db, connector: &str, kind: &str) -> Result<Value, AppError> {
    let Some(last) = runs::last_run(conn, connector, kind)? else {
        return Ok(Value::Null);
    };
    let mut summary = run_json(&last);
    if last.status == "running" && !last.holds_lease(runs::now_ms()) {
        // What the next sync will record; a reader does not write it.
        summary["status"] = json!("failed");
        summary["error"] = json!(
            "interrupted before it finished (its process stopped renewing its lease); nothing was applied"
        );
    }
    let last_ok = runs::last_ok_run(conn, connector, kind)?
        .map(|r| run_json(&r))
        .map(|mut ok| {
            if let Value::Object(map) = &mut ok {
                for key in ["kind", "dry_run", "status", "error"] {
                    map.remove(key);
                }
            }
            ok
        });
    summary["last_ok"] = last_ok.unwrap_or(Value::Null);
    Ok(summary)
}

/// Recent sync runs (all kinds), newest first, with their row ids.
pub fn recent_runs(
    conn: &Db,
    connector: &str,
    limit: usize,
) -> Result<Vec<(i64, Value)>, AppError> {
    Ok(runs::recent_runs(conn, connector, limit)?
        .iter()
        .map(|r| (r.id, run_json(r)))
        .collect())
}

/// The stored connection's call context, region and base URL.
fn stored_context(
    app: &App,
) -> Result<
    (
        CallContext,
        String,
        scopable_sandbox::policy::BaseUrl,
        String,
    ),
    AppError,
> {
    let stored =
        scopable_store::connections::connection(&app.db, app.name())?.ok_or_else(|| {
            AppError::new(
                Exit::Usage,
                format!(
                    "not connected; run `scopable-host {} connect --region us|eu|au` first",
                    app.name()
                ),
            )
        })?;
    let key = app.stored_key(&stored)?;
    let base = scopable_sandbox::policy::BaseUrl::parse_endpoint(&stored.endpoint)
        .map_err(|e| AppError::new(Exit::BadInput, format!("stored endpoint: {e}")))?;
    let ctx = app.call_context(base.clone(), &key)?;
    Ok((ctx, stored.region, base, stored.verified_at))
}

/// Runs a sync of one kind as `actor` and returns its counts and changes, holding the lease
/// of its connector and kind from start to end (a sync of that kind already running: exit 1,
/// and nothing is changed). Every run that started records its end: `ok`, or `failed` with
/// the error, whatever failed (the connector, the API, the timeout, the apply transaction).
pub fn sync(
    app: &mut App,
    rt: &tokio::runtime::Runtime,
    kind: RecordKind,
    dry_run: bool,
    report: bool,
    actor: &str,
    progress: &mut dyn FnMut(u32, Option<u32>),
) -> Result<(SyncCounts, Vec<Change>, String, String), AppError> {
    let (ctx, region, base, verified_at) = stored_context(app)?;
    let connector = app.name().to_string();
    let lease = lease_length()?;
    match_batch()?;
    let run = start_run(
        &mut app.db,
        &connector,
        kind.as_str(),
        dry_run,
        lease,
        actor,
    )?;
    sync_under_lease(
        app,
        rt,
        kind,
        dry_run,
        report,
        run,
        lease,
        progress,
        Some((ctx, region, base, verified_at)),
    )
}

/// What a finished sync returns: its counts, its changes, and when it started and finished.
pub type Synced = (SyncCounts, Vec<Change>, String, String);

/// Runs the queued run `run_id` of the app's account (its kind and dry-run flag as queued),
/// as a worker of the runtime does: claims it under the lease, then syncs as [`sync`] does.
/// `Ok(None)` when the run could not be claimed (another worker took it, or a run of that
/// kind is still running: it stays queued). Every claimed run records its end, a failure to
/// read the stored connection included.
pub fn sync_queued(
    app: &mut App,
    rt: &tokio::runtime::Runtime,
    run_id: i64,
    kind: RecordKind,
    progress: &mut dyn FnMut(runs::Held, u32, Option<u32>),
) -> Result<Option<Synced>, AppError> {
    // Read before the claim: once claimed, nothing may fail before the heartbeat runs. A
    // failure here ends the run, which would otherwise wait in the queue for ever.
    let before = lease_length().and_then(|lease| {
        match_batch()?;
        let dry_run = runs::run(&app.db, run_id)?.is_some_and(|r| r.dry_run);
        Ok((lease, dry_run))
    });
    let (lease, dry_run) = match before {
        Ok(read) => read,
        Err(e) => {
            runs::fail_queued(&app.db, run_id, &e.message)?;
            return Err(e);
        }
    };
    let run = match runs::claim(&mut app.db, run_id, lease) {
        Ok(runs::Start::Started(run)) => run,
        Ok(runs::Start::Running(_)) | Err(DbError::NotQueued { .. }) => return Ok(None),
        // Left queued: the next look at the queue tries it again.
        Err(e) => return Err(e.into()),
    };
    let held = run.held();
    let mut progress = |done, total| progress(held, done, total);
    sync_under_lease(
        app,
        rt,
        kind,
        dry_run,
        false,
        run,
        lease,
        &mut progress,
        None,
    )
    .map(Some)
}

/// The stored connection's context for a started run; `given` when the caller read it
/// before starting.
type Context = (
    CallContext,
    String,
    scopable_sandbox::policy::BaseUrl,
    String,
);

/// [`sync`] and [`sync_queued`] once their run holds the lease.
#[allow(clippy::too_many_arguments)]
fn sync_under_lease(
    app: &mut App,
    rt: &tokio::runtime::Runtime,
    kind: RecordKind,
    dry_run: bool,
    report: bool,
    run: runs::Run,
    lease: Duration,
    progress: &mut dyn FnMut(u32, Option<u32>),
    given: Option<Context>,
) -> Result<(SyncCounts, Vec<Change>, String, String), AppError> {
    let heartbeat = runs::Heartbeat::start(&app.db, run.held(), lease);
    let context = match given {
        Some(context) => Ok(context),
        None => stored_context(app),
    };
    let (ctx, region, base, verified_at) = match context {
        Ok(context) => context,
        Err(e) => {
            if let Err(recording) = finish_run(
                &app.db,
                run.held(),
                "failed",
                &SyncCounts::default(),
                Some(&e.message),
            ) {
                tracing::error!("cannot record the failed run: {recording}");
            }
            drop(heartbeat);
            return Err(e);
        }
    };
    let result =
        run_sync(app, rt, &ctx, kind, dry_run, report, progress, run.held()).map_err(|f| match f {
            Failure::App(e) => e,
            Failure::Fetch(e) => e.into_app_error(app, &region, &base, Some(&verified_at)),
        });
    let outcome = match result {
        Ok((counts, changes)) => runs::finished_at(&app.db, run.id)
            .map(|finished_at| {
                let finished_at = finished_at.unwrap_or_else(db::now);
                (counts, changes, run.started_at, finished_at)
            })
            .map_err(AppError::from),
        Err(e) => {
            let counts = SyncCounts {
                requests: ctx.requests.load(Ordering::Relaxed),
                ..SyncCounts::default()
            };
            if let Err(recording) =
                finish_run(&app.db, run.held(), "failed", &counts, Some(&e.message))
            {
                // The run is marked interrupted once its lease lapses.
                tracing::error!("cannot record the failed run: {recording}");
            }
            Err(e)
        }
    };
    // After the apply transaction ended: the renewal may be waiting for it.
    drop(heartbeat);
    outcome
}

/// The part of [`sync`] that runs under the lease: fetch, match, check, apply. Its working
/// rows ([`staging`]) are cleared whatever happened.
#[allow(clippy::too_many_arguments)]
fn run_sync(
    app: &mut App,
    rt: &tokio::runtime::Runtime,
    ctx: &CallContext,
    kind: RecordKind,
    dry_run: bool,
    report: bool,
    progress: &mut dyn FnMut(u32, Option<u32>),
    run: runs::Held,
) -> Result<(SyncCounts, Vec<Change>), Failure> {
    // Its own connection: the pages are staged in transactions of their own.
    let mut staging_db = staging::working_connection(&app.db)?;
    let staging_db = &mut staging_db;
    let staged = || -> Result<(SyncCounts, Vec<Change>), Failure> {
        let connector = app.name().to_string();
        let timeout = Duration::from_secs(app.connector.manifest.limits.sync_timeout_secs);
        let result = rt.block_on(async {
            match tokio::time::timeout(timeout, compute(app, ctx, kind, progress, run, staging_db))
                .await
            {
                Ok(r) => r,
                // The whole sync's wall clock, API waits and pacing included: a service too slow
                // for the listing (the connector's own time is bounded per call, exit 5).
                Err(_) => Err(Failure::App(AppError::new(
                    Exit::Unavailable,
                    format!(
                        "the sync did not finish within {} s (sync_timeout_secs, the whole sync's wall clock, waits for the API and the request budget included); nothing was applied. Try again later, or raise sync_timeout_secs for a listing this large",
                        timeout.as_secs()
                    ),
                ))),
            }
        });
        let (mut counts, basis) = result?;
        counts.requests = ctx.requests.load(Ordering::Relaxed);
        let changes = if report {
            change_report(staging_db, run)?
        } else {
            Vec::new()
        };
        if dry_run {
            finish_run(&app.db, run, "ok", &counts, None)?;
        } else {
            // On the staging connection: on SQLite, the working tables are its own.
            apply(staging_db, &connector, kind.as_str(), run, &basis, &counts)?;
        }
        Ok((counts, changes))
    };
    let result = staged();
    // On SQLite the working tables are this connection's own `TEMP` tables, dropped with it
    // below: deleting their rows one by one first would be work for nothing.
    if staging_db.is_postgres()
        && let Err(e) = staging::clear(staging_db, run)
    {
        tracing::warn!("cannot clear the working rows of sync run {}: {e}", run.id);
    }
    result
}

/// The links the staged plan of `run` adds and removes, in the order a report lists them:
/// those of placed records by id (a moved link's removal before its addition), then the
/// removals of records no longer placed, by id.
fn change_report(db: &Db, run: runs::Held) -> Result<Vec<Change>, DbError> {
    let mut planned = staging::planned_changes(db, run)?;
    planned.sort_by_cached_key(|p| match p {
        Planned::Remove {
            source_id, gone, ..
        } => (*gone, id_key(source_id), 0),
        Planned::Add { source_id, .. } => (false, id_key(source_id), 1),
        Planned::Kept { source_id, .. } | Planned::Unplaced { source_id, .. } => {
            (true, id_key(source_id), 2)
        }
    });
    Ok(planned
        .into_iter()
        .filter_map(|p| match p {
            Planned::Add {
                source_id,
                name,
                scopable_id,
                evidence,
            } => Some(Change::Add {
                source_id,
                name: Some(name),
                scopable_id,
                evidence: serde_json::from_str(&evidence).unwrap_or_default(),
            }),
            Planned::Remove {
                source_id,
                name,
                scopable_id,
                why,
                ..
            } => Some(Change::Remove {
                source_id,
                name,
                scopable_id,
                why,
            }),
            Planned::Kept { .. } | Planned::Unplaced { .. } => None,
        })
        .collect())
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

impl From<DbError> for Failure {
    fn from(e: DbError) -> Failure {
        Failure::App(e.into())
    }
}

/// Fetches every page of a listing ([`fetch::fetch_pages`]) and stages each as it arrives
/// ([`staging::stage_page`]), its records made into what the host keeps by `received`.
async fn fetch_staged<P: fetch::Page>(
    app: &App,
    ctx: &CallContext,
    (last_pages, progress): (Option<u32>, impl FnMut(u32, Option<u32>)),
    run: runs::Held,
    db: &mut Db,
    received: impl Fn(P::Record) -> Received,
) -> Result<fetch::Fetched, fetch::FetchError> {
    fetch::fetch_pages::<P>(
        app,
        ctx,
        last_pages,
        progress,
        |page, records, unreadable| {
            let records = records.into_iter().map(&received).collect();
            staging::stage_page(db, run, page, records, unreadable_rows(unreadable)).map_err(|e| {
                fetch::FetchError::Host(format!("page {page} could not be stored: {e}"))
            })
        },
    )
    .await
}

/// Most configurations held waiting for their client to be ready ([`speculate`]): four
/// batches, and never fewer than this many.
const EARLY_HELD: usize = 40_000;

/// Fetches configurations as [`fetch_staged`] does and, meanwhile, matches the clients whose
/// records stopped coming, staging their plans ([`speculate`]). Returns what the fetch added
/// up to and what was matched early.
async fn fetch_and_match_early(
    app: &App,
    ctx: &CallContext,
    (last_pages, progress): (Option<u32>, impl FnMut(u32, Option<u32>)),
    run: runs::Held,
    staging_db: &mut Db,
    parents: &[types::Pair],
    decided: &Decisions,
) -> Result<(fetch::Fetched, speculate::Outcome), Failure> {
    let limit = match_batch()?;
    let parent_of: HashMap<&str, &str> = parents
        .iter()
        .map(|p| (p.source_id.as_str(), p.scopable_id.as_str()))
        .collect();
    let scopable = scopable_store::records::configuration_counts(&app.db)?;
    let state = RefCell::new(Speculation::new(
        limit,
        limit.saturating_mul(4).max(EARLY_HELD),
        scopable,
    ));
    let db = RefCell::new(staging_db);
    let arrived = tokio::sync::Notify::new();
    let done = std::cell::Cell::new(false);
    let fetching = async {
        let fetched = fetch::fetch_pages::<types::ConfigurationPage>(
            app,
            ctx,
            last_pages,
            progress,
            |page, records, unreadable| {
                let records = records
                    .into_iter()
                    .map(|c| {
                        let client = parent_of
                            .get(c.organization_id.as_str())
                            .map_or_else(String::new, |c| c.to_string());
                        let (source_id, record) = seen_configuration(c);
                        Received {
                            source_id,
                            client,
                            record,
                        }
                    })
                    .collect();
                let staged = staging::stage_page_watched(
                    &mut db.borrow_mut(),
                    run,
                    page,
                    records,
                    unreadable_rows(unreadable),
                )
                .map_err(|e| {
                    fetch::FetchError::Host(format!("page {page} could not be stored: {e}"))
                })?;
                state.borrow_mut().observe(page, staged);
                arrived.notify_one();
                Ok(())
            },
        )
        .await;
        done.set(true);
        arrived.notify_one();
        fetched.map_err(Failure::Fetch)
    };
    let matching = async {
        loop {
            let ready = state.borrow_mut().take_ready();
            let Some(ready) = ready else {
                if done.get() {
                    return Ok::<(), Failure>(());
                }
                arrived.notified().await;
                continue;
            };
            let clients: Vec<&str> = ready.clients.iter().map(String::as_str).collect();
            let scopable = crate::records::configurations_of_clients(&app.db, &clients)?;
            let plan =
                plan_configurations_batch(app, ctx, ready.records, scopable, parents, decided)
                    .await?;
            let counts = stage_plan(&mut db.borrow_mut(), run, plan)?;
            state.borrow_mut().matched(ready.batch, counts);
        }
    };
    let (fetched, ()) = tokio::try_join!(fetching, matching)?;
    let outcome = state.into_inner().finish();
    tracing::debug!(
        run = run.id,
        batches = outcome.batches.0,
        standing = outcome.batches.1,
        "configurations matched while the pages arrived"
    );
    Ok((fetched, outcome))
}

/// A task stopped when its handle is dropped unawaited: a match running on its own task while
/// the sync it serves failed.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Unreadable records as staged.
fn unreadable_rows(unreadable: Vec<types::UnreadableRecord>) -> Vec<staging::Unreadable> {
    unreadable
        .into_iter()
        .map(|u| staging::Unreadable {
            source_id: u.id,
            detail: u.detail,
        })
        .collect()
}

/// Fetches the listing into the staging tables as its pages arrive, then matches and checks
/// it batch by batch, staging each batch's plan, and plans the removals of links whose
/// record is gone and the rows of unreadable records. Returns the counts (but `requests`)
/// and the basis the plan rests on.
async fn compute(
    app: &App,
    ctx: &CallContext,
    kind: RecordKind,
    progress: impl FnMut(u32, Option<u32>),
    run: runs::Held,
    staging_db: &mut Db,
) -> Result<(SyncCounts, String), Failure> {
    let started = std::time::Instant::now();
    let connector = app.name();
    let basis = sync_apply::basis(&app.db, connector)?;
    let decided = decisions(&app.db, connector, kind.as_str())?;
    // Read once, for staging and for planning: they are part of the basis, so if they change
    // meanwhile nothing is applied.
    let parents = match kind {
        RecordKind::Organization => Vec::new(),
        RecordKind::Configuration => crate::records::organization_links(&app.db, connector)?,
    };
    staging::clear_stale(staging_db)?;
    let paging = (last_pages(app, kind)?, progress);
    let mut early = None;
    let fetched = match kind {
        RecordKind::Organization => {
            fetch_staged::<types::OrganizationPage>(app, ctx, paging, run, staging_db, |o| {
                let (source_id, record) = seen_organization(o);
                Received {
                    source_id,
                    client: String::new(),
                    record,
                }
            })
            .await
        }
        RecordKind::Configuration => {
            let (fetched, outcome) =
                fetch_and_match_early(app, ctx, paging, run, staging_db, &parents, &decided)
                    .await?;
            early = Some(outcome);
            Ok(fetched)
        }
    }
    .map_err(Failure::Fetch)?;
    let phase = |name: &str| {
        let elapsed_ms = started.elapsed().as_millis() as u64;
        tracing::debug!(run = run.id, phase = name, elapsed_ms, "sync phase");
    };
    staging::index_staged(staging_db)?;
    phase("fetched and staged");
    let (readable, unreadable) = staging::staged_count(staging_db, run)?;
    fetched
        .check_received(readable + unreadable)
        .map_err(Failure::Fetch)?;
    // The run keeps the page count the listing reported: the next sync asks for that many
    // pages at once ([`last_pages`]). Only a hint: a sync does not fail for want of it.
    if let Err(e) = runs::set_progress(&app.db, run, fetched.pages, fetched.total_pages) {
        tracing::warn!(run = run.id, error = %e, "the run's page count was not kept");
    }
    let mut counts = match kind {
        RecordKind::Organization => {
            let (records, _) = staging::read_client(staging_db, run, "", None, usize::MAX)?;
            // The links of records received: those of records gone are planned below.
            let ids: Vec<&str> = records.iter().map(|(id, _)| id.as_str()).collect();
            let existing = sync_apply::auto_links_of(&app.db, connector, kind.as_str(), &ids)?
                .into_iter()
                .map(|(id, (target, _))| (id, target))
                .collect();
            let plan = plan_organizations(app, ctx, records, &decided, &existing).await?;
            stage_plan(staging_db, run, plan)?
        }
        RecordKind::Configuration => {
            let early = early.unwrap_or_default();
            plan_staged_configurations(app, ctx, run, staging_db, &parents, &decided, early).await?
        }
    };
    phase("matched and planned");
    counts.removed_links += staging::plan_gone(staging_db, run, connector, kind.as_str())?;
    counts.errored = staging::plan_unreadable(staging_db, run)?;
    counts.fetched += counts.errored;
    phase("planned the gone and the unreadable");
    Ok((counts, basis))
}

/// How many pages the listing of `kind` reported when it was last read (by the newest
/// successful sync that was not a dry run), if it reported a count: the pages
/// [`fetch::fetch_pages`] asks for along with page 1.
fn last_pages(app: &App, kind: RecordKind) -> Result<Option<u32>, DbError> {
    Ok(runs::last_ok_run(&app.db, app.name(), kind.as_str())?
        .and_then(|run| run.pages_total)
        .and_then(|pages| u32::try_from(pages).ok()))
}

/// Stages a batch's plan; returns its counts.
fn stage_plan(db: &mut Db, run: runs::Held, plan: Plan) -> Result<SyncCounts, DbError> {
    let counts = plan.counts.clone();
    staging::stage_planned(db, run, &plan.staged())?;
    Ok(counts)
}

/// Adds a batch's counts to the sync's.
fn add_counts(total: &mut SyncCounts, batch: &SyncCounts) {
    total.fetched += batch.fetched;
    total.linked += batch.linked;
    total.skipped += batch.skipped;
    total.new_links += batch.new_links;
    total.removed_links += batch.removed_links;
}

/// Places organizations (received, or stored) onto clients and checks every placement:
/// one call, as names are matched across the whole account.
async fn plan_organizations(
    app: &App,
    ctx: &CallContext,
    records: Vec<(String, Seen)>,
    decided: &Decisions,
    existing: &HashMap<String, String>,
) -> Result<Plan, Failure> {
    let call_failed = |e| Failure::Fetch(fetch::FetchError::Call(e));
    let clients = crate::records::clients(&app.db)?;
    let client_carries: HashMap<String, Carries> = clients
        .iter()
        .map(|c| (c.id.clone(), Carries::of(&c.name, None, &[], None)))
        .collect();
    let org_carries: HashMap<String, Carries> = records
        .iter()
        .map(|(id, s)| (id.clone(), Carries::of(&s.name, None, &[], None)))
        .collect();
    let organizations = records
        .iter()
        .map(|(id, s)| organization_of(id, s))
        .collect();
    let seen: BTreeMap<String, Seen> = records.into_iter().collect();
    let manual_fetched = decided.linked_among(&seen);
    let input = types::MatchInput::Organizations(types::OrganizationMatch {
        organizations,
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
        &seen,
        decided,
        existing,
        manual_fetched,
        app.connector.manifest.service(),
        |id, link| {
            let client = &link.scopable_id;
            let Some(target) = client_carries.get(client) else {
                return Err(format!("a link to client {client:?}, which does not exist"));
            };
            let source = org_carries.get(id).cloned().unwrap_or_default();
            check_evidence(RecordKind::Organization, &link.evidence, &source, target)
                .map_err(|e| format!("a link from organization {id} to {client} with {e}"))
        },
    )?)
}

/// Splits clients, in order, into batches of whole clients: a batch takes clients until it
/// holds at least `limit` records (so one large client may take it past), the last batch what
/// is left. `sizes`: each client's records, source and Scopable. Returns each batch's clients.
fn client_batches(sizes: &[u64], limit: usize) -> Vec<std::ops::Range<usize>> {
    let mut batches = Vec::new();
    let (mut start, mut size) = (0, 0u64);
    for (i, n) in sizes.iter().enumerate() {
        size += n;
        if size >= limit as u64 || i + 1 == sizes.len() {
            batches.push(start..i + 1);
            (start, size) = (i + 1, 0);
        }
    }
    batches
}

/// Places the staged configurations of `run` in batches read back from the staging table
/// ([`MATCH_BATCH`] records at most, but whole clients), staging each batch's plan; returns
/// the counts. Configurations under no linked organization come first, in batches of their
/// own (nothing can link them); then the clients, in the database's order.
async fn plan_staged_configurations(
    app: &App,
    ctx: &CallContext,
    run: runs::Held,
    db: &mut Db,
    parents: &[types::Pair],
    decided: &Decisions,
    early: speculate::Outcome,
) -> Result<SyncCounts, Failure> {
    let limit = match_batch()?;
    // The plans of void early batches are taken back; those that stand are kept.
    if !early.void_clients.is_empty() || !early.listed_twice.is_empty() {
        let clients: Vec<&str> = early.void_clients.iter().map(String::as_str).collect();
        let ids: Vec<&str> = early.listed_twice.iter().map(String::as_str).collect();
        staging::unplan(db, run, &clients, &ids)?;
    }
    let mut counts = SyncCounts::default();
    for batch in &early.counts {
        add_counts(&mut counts, batch);
    }
    let sizes = staging::client_sizes(db, run)?;
    let (unlinked, linked): (Vec<_>, Vec<_>) = sizes
        .iter()
        .filter(|(c, _)| !early.matched.contains(c))
        .partition(|(c, _)| c.is_empty());
    if !unlinked.is_empty() {
        let mut after = None;
        loop {
            let (records, next) = staging::read_client(db, run, "", after, limit)?;
            if records.is_empty() {
                break;
            }
            after = next;
            let plan =
                plan_configurations_batch(app, ctx, records, Vec::new(), parents, decided).await?;
            add_counts(&mut counts, &stage_plan(db, run, plan)?);
        }
    }
    let scopable_sizes = scopable_store::records::configuration_counts(&app.db)?;
    let sizes: Vec<u64> = linked
        .iter()
        .map(|(client, n)| n + scopable_sizes.get(client.as_str()).copied().unwrap_or(0))
        .collect();
    // One batch is read while the one before it is matched on a task of its own: at most two
    // batches are held, the one being matched and the next (a slot is taken before reading).
    let db = RefCell::new(db);
    let (next, mut batches) = tokio::sync::mpsc::channel(1);
    let reading = async {
        // Owned here: the matching side ends once the last batch is taken and this is gone.
        let next = next;
        for batch in client_batches(&sizes, limit) {
            let clients: Vec<&str> = linked[batch].iter().map(|(c, _)| c.as_str()).collect();
            let (Some(first), Some(last)) = (clients.first().copied(), clients.last().copied())
            else {
                continue;
            };
            let Ok(slot) = next.reserve().await else {
                // The matching side stopped on an error, which the join reports.
                break;
            };
            let reading = std::time::Instant::now();
            let records = if early.matched.is_empty() {
                // Every staged client in the range is in the batch.
                staging::read_clients(&db.borrow(), run, first, last)?
            } else {
                // Clients matched early lie between them.
                let mut records = Vec::new();
                for client in &clients {
                    let db = db.borrow();
                    records.extend(staging::read_client(&db, run, client, None, usize::MAX)?.0);
                }
                records
            };
            let scopable = crate::records::configurations_of_clients(&app.db, &clients)?;
            let read_ms = reading.elapsed().as_millis() as u64;
            slot.send((records, scopable, read_ms));
        }
        Ok::<(), Failure>(())
    };
    let matching = async {
        let mut counts = SyncCounts::default();
        while let Some((records, scopable, read_ms)) = batches.recv().await {
            let plan =
                plan_configurations_batch(app, ctx, records, scopable, parents, decided).await?;
            let staging_plan = std::time::Instant::now();
            add_counts(&mut counts, &stage_plan(&mut db.borrow_mut(), run, plan)?);
            let stage_ms = staging_plan.elapsed().as_millis() as u64;
            tracing::debug!(
                read_ms,
                stage_ms,
                "configurations batch read and its plan staged"
            );
        }
        Ok::<SyncCounts, Failure>(counts)
    };
    let ((), late) = tokio::try_join!(reading, matching)?;
    add_counts(&mut counts, &late);
    Ok(counts)
}

/// Places configurations held in memory (the stored ones, placed again), in the batches
/// [`plan_staged_configurations`] would make, and checks every placement.
async fn plan_configurations(
    app: &App,
    ctx: &CallContext,
    records: Vec<(String, Seen)>,
    decided: &Decisions,
) -> Result<Plan, Failure> {
    let connector = app.name();
    let parents = crate::records::organization_links(&app.db, connector)?;
    let client_of_org: HashMap<&str, &str> = parents
        .iter()
        .map(|p| (p.source_id.as_str(), p.scopable_id.as_str()))
        .collect();
    let limit = match_batch()?;
    // By client ("": none), each in the order received.
    let mut groups: BTreeMap<String, Vec<(String, Seen)>> = BTreeMap::new();
    for (id, s) in records {
        let client = s
            .organization_id
            .as_deref()
            .and_then(|org| client_of_org.get(org))
            .map_or_else(String::new, |c| c.to_string());
        groups.entry(client).or_default().push((id, s));
    }
    let clients: HashSet<&str> = groups.keys().map(String::as_str).collect();
    let mut scopable: BTreeMap<String, Vec<types::ScopableConfiguration>> = BTreeMap::new();
    for c in crate::records::configurations_of(&app.db, &clients)? {
        scopable.entry(c.client_id.clone()).or_default().push(c);
    }
    let mut plan = Plan::default();
    // Configurations under no linked organization first, in chunks (nothing links them).
    let mut unlinked = groups.remove("").unwrap_or_default().into_iter().peekable();
    while unlinked.peek().is_some() {
        let chunk: Vec<_> = unlinked.by_ref().take(limit).collect();
        let placed =
            plan_configurations_batch(app, ctx, chunk, Vec::new(), &parents, decided).await?;
        plan.merge(placed);
    }
    // Then each client with its Scopable configurations, in batches of whole clients.
    let mut linked: Vec<_> = groups
        .into_iter()
        .map(|(client, records)| (records, scopable.remove(&client).unwrap_or_default()))
        .collect();
    let sizes: Vec<u64> = linked
        .iter()
        .map(|(records, targets)| (records.len() + targets.len()) as u64)
        .collect();
    for batch in client_batches(&sizes, limit) {
        let (mut records, mut targets) = (Vec::new(), Vec::new());
        for (r, t) in linked[batch].iter_mut() {
            records.append(r);
            targets.append(t);
        }
        let placed =
            plan_configurations_batch(app, ctx, records, targets, &parents, decided).await?;
        plan.merge(placed);
    }
    Ok(plan)
}

/// Places one batch of configurations (whole clients, or configurations under no linked
/// organization) onto the Scopable configurations of their clients, and checks every
/// placement.
async fn plan_configurations_batch(
    app: &App,
    ctx: &CallContext,
    records: Vec<(String, Seen)>,
    scopable: Vec<types::ScopableConfiguration>,
    parents: &[types::Pair],
    decided: &Decisions,
) -> Result<Plan, Failure> {
    let preparing = std::time::Instant::now();
    let call_failed = |e| Failure::Fetch(fetch::FetchError::Call(e));
    // In the order received, for the connector.
    let configurations: Vec<types::Configuration> = records
        .iter()
        .map(|(id, s)| configuration_of(id, s))
        .collect();
    let seen: BTreeMap<String, Seen> = records.into_iter().collect();
    let ids: Vec<&str> = seen.keys().map(String::as_str).collect();
    let linked = sync_apply::auto_links_of(&app.db, app.name(), "configuration", &ids)?;
    let existing: HashMap<String, String> = linked
        .iter()
        .map(|(id, (target, _))| (id.clone(), target.clone()))
        .collect();
    // Each linked organization (auto or manual) has exactly one client.
    let parent_of: HashMap<&str, &str> = parents
        .iter()
        .map(|p| (p.source_id.as_str(), p.scopable_id.as_str()))
        .collect();
    // Source id -> (what it carries, its organization, archived).
    let sources: HashMap<&str, (Carries, &str, bool)> = seen
        .iter()
        .map(|(id, s)| {
            let carries = Carries::of(
                "",
                s.serial_number.as_deref(),
                &s.mac_addresses,
                s.hostname.as_deref(),
            );
            let org = s.organization_id.as_deref().unwrap_or_default();
            (id.as_str(), (carries, org, s.archived))
        })
        .collect();
    let clients: HashSet<&str> = sources
        .values()
        .filter_map(|(_, org, _)| parent_of.get(org).copied())
        .collect();
    // Target id -> (its client, what it carries).
    let targets: HashMap<String, (String, Carries)> = scopable
        .iter()
        .map(|c| (c.id.clone(), (c.client_id.clone(), Carries::of_device(c))))
        .collect();
    let manual_links = decided
        .manual
        .iter()
        .filter(|p| seen.contains_key(&p.source_id) || targets.contains_key(&p.scopable_id))
        .cloned()
        .collect();
    let ignored = decided
        .ignored
        .iter()
        .filter(|i| seen.contains_key(*i))
        .cloned()
        .collect();
    let batch_parents = parents
        .iter()
        .filter(|p| clients.contains(p.scopable_id.as_str()))
        .cloned()
        .collect();
    let input = types::MatchInput::Configurations(types::ConfigurationMatch {
        configurations,
        scopable_configurations: scopable,
        parents: batch_parents,
        manual_links,
        ignored,
    });
    let matching = std::time::Instant::now();
    // On a task of its own: while a batch is matched early, the pages that arrive meanwhile
    // are staged on this one. A sync that fails meanwhile stops it.
    let (connector, call) = (app.connector.clone(), ctx.clone());
    let mut task = AbortOnDrop(tokio::spawn(async move {
        connector.match_records(&call, input).await
    }));
    let placements = (&mut task.0)
        .await
        .map_err(|e| AppError::new(Exit::Failure, format!("a match task failed: {e}")))?
        .map_err(call_failed)?;
    let match_ms = matching.elapsed().as_millis() as u64;
    let prepare_ms = (matching - preparing).as_millis() as u64;
    tracing::debug!(
        records = seen.len(),
        prepare_ms,
        match_ms,
        "configurations matched"
    );
    let checking = std::time::Instant::now();
    let manual_fetched = decided.linked_among(&seen);
    let mut plan = plan(
        placements,
        &seen,
        decided,
        &existing,
        manual_fetched,
        app.connector.manifest.service(),
        |id, link| {
            let target = link.scopable_id.as_str();
            let Some((source, org, archived)) = sources.get(id) else {
                return Err(format!("a placement for unknown record {id:?}"));
            };
            if *archived {
                return Err(format!("a link for archived configuration {id}"));
            }
            let Some((got, dest)) = targets.get(target) else {
                return Err(format!(
                    "a link to configuration {target:?}, which does not exist under a linked client"
                ));
            };
            match parent_of.get(org) {
                Some(want) if want == got => {}
                _ => {
                    return Err(format!(
                        "a link from configuration {id} to {target:?}, outside the client its organization is linked to"
                    ));
                }
            }
            check_evidence(RecordKind::Configuration, &link.evidence, source, dest)
                .map_err(|e| format!("a link from configuration {id} to {target} with {e}"))
        },
    )?;
    // Links whose evidence is as stored need no row.
    plan.kept
        .retain(|(id, _, evidence)| linked.get(id).is_none_or(|(_, stored)| stored != evidence));
    let check_ms = checking.elapsed().as_millis() as u64;
    tracing::debug!(check_ms, "configurations checked and planned");
    Ok(plan)
}

/// What placing the stored records again found: the records it could not place, with their
/// reasons, and those it would link at the next sync (it links nothing itself).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rematched {
    /// (source id, reason) of each record listed as unplaced.
    pub unplaced: Vec<(String, String)>,
    /// (source id, Scopable id) of each record the next sync would link automatically.
    pub would_link: Vec<(String, String)>,
    /// (source id, Scopable id) of the record handed back to automatic matching, when it was
    /// linked again at once.
    pub relinked: Option<(String, String)>,
}

/// Why the stored records were not placed again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotRematched {
    /// No record of the kind was received yet.
    #[error("no {0} was received yet; run a sync")]
    NothingStored(&'static str),
    /// Some stored records lack identifiers (kept from before this version).
    #[error("the stored {0}s predate this version and lack identifiers; the next sync lists them")]
    IdentifiersMissing(&'static str),
    /// A sync, or another decision, changed what the placement rests on meanwhile.
    #[error(
        "a sync or another decision changed the records meanwhile; `unplaced` shows its result"
    )]
    Changed,
}

/// Places the stored records of a kind again, as a sync would but without fetching: the
/// component's `match` (no network, no storage) over the records the last sync received and
/// kept, the Scopable records, and the manual decisions and organization links as they are now.
/// It refreshes that kind's `unplaced` rows. Links change only by a sync or by hand, with one
/// exception: `relink`, the record a `reset` handed back to automatic matching, is linked at
/// once when the checked plan links it to a target no link holds. Rows of records the
/// connector could not read stay as the last sync left them.
pub fn rematch_stored(
    app: &App,
    rt: &tokio::runtime::Runtime,
    kind: RecordKind,
    relink: Option<&str>,
) -> Result<Result<Rematched, NotRematched>, AppError> {
    let connector = app.name();
    let started = sync_apply::rematch_basis(&app.db, connector, kind.as_str())?;
    let stored = sync_apply::stored_records(&app.db, connector, kind.as_str())?;
    if stored.is_empty() {
        return Ok(Err(NotRematched::NothingStored(kind.as_str())));
    }
    if stored.values().any(|(_, kept)| !kept) {
        return Ok(Err(NotRematched::IdentifiersMissing(kind.as_str())));
    }
    let decided = decisions(&app.db, connector, kind.as_str())?;
    let ctx = local_context(app)?;
    let records: Vec<(String, Seen)> = stored
        .into_iter()
        .map(|(id, (seen, _))| (id, seen))
        .collect();
    let planned = rt.block_on(async {
        match kind {
            RecordKind::Organization => {
                let existing = auto_links(&app.db, connector, kind.as_str())?;
                plan_organizations(app, &ctx, records, &decided, &existing).await
            }
            RecordKind::Configuration => plan_configurations(app, &ctx, records, &decided).await,
        }
    });
    let plan = planned.map_err(|f| match f {
        Failure::App(e) => e,
        Failure::Fetch(e) => AppError::new(
            Exit::ConnectorFailed,
            format!("the connector's match failed: {e}"),
        ),
    })?;
    // The record handed back to automatic matching (`reset`) is linked at once when the
    // checked plan links it to a target nobody holds: what the next sync would do, from the
    // identifiers it last received. Every other record waits for a sync.
    let relink: Vec<(&str, &str, &[String])> = plan
        .changes
        .iter()
        .filter_map(|change| match change {
            Change::Add {
                source_id,
                scopable_id,
                evidence,
                ..
            } if relink == Some(source_id.as_str()) => Some((
                source_id.as_str(),
                scopable_id.as_str(),
                evidence.as_slice(),
            )),
            _ => None,
        })
        .collect();
    let relinked = match sync_apply::apply_rematch(
        &app.db,
        connector,
        kind.as_str(),
        &started,
        &plan.unplaced,
        &relink,
    )? {
        sync_apply::Rematch::Done(relinked) => relinked,
        sync_apply::Rematch::Changed => return Ok(Err(NotRematched::Changed)),
    };
    let mut would_link: Vec<(String, String)> = plan
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::Add {
                source_id,
                scopable_id,
                ..
            } => Some((source_id.clone(), scopable_id.clone())),
            Change::Remove { .. } => None,
        })
        .collect();
    would_link.sort_by(|a, b| id_order(&a.0, &b.0));
    Ok(Ok(Rematched {
        unplaced: plan
            .unplaced
            .iter()
            .map(|(id, _, reason, _, _)| (id.clone(), reason.clone()))
            .collect(),
        would_link,
        relinked,
    }))
}

/// A context for a call without the network: `match` sends no request, so it needs neither
/// the stored key nor a reachable endpoint. It still records, in the audit, any request the
/// component tries (every one is denied).
fn local_context(app: &App) -> Result<CallContext, AppError> {
    let base = match scopable_store::connections::connection(&app.db, app.name())? {
        Some(stored) => scopable_sandbox::policy::BaseUrl::parse_endpoint(&stored.endpoint)
            .map_err(|e| AppError::new(Exit::BadInput, format!("stored endpoint: {e}")))?,
        None => {
            let region = app.connector.manifest.default_region.clone();
            app.base_url(&region, None)?
        }
    };
    app.call_context(base, "")
}

/// Most records (source plus Scopable configurations) handed to one `match` call, unless
/// [`MATCH_BATCH_ENV`] says otherwise. Matching is exact within a client, so batches of whole
/// clients give the same placements as one call, in bounded memory (a client larger than a
/// batch is still matched whole).
const MATCH_BATCH: usize = 10_000;

/// The environment variable that sets the most records per `match` call (1 to 1,000,000).
pub const MATCH_BATCH_ENV: &str = "SCOPABLE_MATCH_BATCH";

/// The most records per `match` call: [`MATCH_BATCH`], or [`MATCH_BATCH_ENV`].
fn match_batch() -> Result<usize, AppError> {
    let Some(raw) = std::env::var_os(MATCH_BATCH_ENV) else {
        return Ok(MATCH_BATCH);
    };
    match raw.to_str().and_then(|v| v.trim().parse::<usize>().ok()) {
        Some(n @ 1..=1_000_000) => Ok(n),
        _ => Err(AppError::new(
            Exit::Usage,
            format!(
                "{MATCH_BATCH_ENV} must be a number of records from 1 to 1000000; unset it for the default ({MATCH_BATCH})"
            ),
        )),
    }
}

/// The stored names of the automatically linked records of a kind: source id -> name.
pub fn auto_linked_names(
    conn: &Db,
    connector: &str,
    kind: RecordKind,
) -> Result<HashMap<String, String>, DbError> {
    sync_apply::auto_linked_names(conn, connector, kind.as_str())
}

#[cfg(test)]
mod plan_tests {
    use super::*;

    fn seen(ids: &[&str]) -> BTreeMap<String, Seen> {
        ids.iter()
            .map(|id| {
                (
                    id.to_string(),
                    Seen {
                        name: format!("name {id}"),
                        ..Seen::default()
                    },
                )
            })
            .collect()
    }

    fn no_decisions() -> Decisions {
        Decisions {
            manual: Vec::new(),
            ignored: Vec::new(),
        }
    }

    fn unplaced(id: &str, candidates: usize, suggestions: usize) -> types::Placement {
        types::Placement {
            source_id: id.to_string(),
            outcome: types::Outcome::Unplaced(types::Unplaced {
                reason: types::Reason::MultipleClients,
                candidates: (0..candidates).map(|i| format!("c{i}")).collect(),
                suggestions: (0..suggestions).map(|i| format!("c{i}")).collect(),
            }),
        }
    }

    fn run(placements: Vec<types::Placement>, ids: &[&str]) -> Result<Plan, AppError> {
        plan(
            placements,
            &seen(ids),
            &no_decisions(),
            &HashMap::new(),
            0,
            "IT Glue",
            |_, _| Ok(()),
        )
    }

    fn link(id: &str, target: &str) -> types::Placement {
        types::Placement {
            source_id: id.to_string(),
            outcome: types::Outcome::Linked(types::Link {
                scopable_id: target.to_string(),
                evidence: vec![types::Evidence::Name],
            }),
        }
    }

    /// Every proposal the host must not believe fails the whole result, naming the problem.
    #[test]
    fn misbehaving_placements_are_refused() {
        let decided = Decisions {
            manual: vec![types::Pair {
                source_id: "3".into(),
                scopable_id: "c3".into(),
            }],
            ignored: vec!["4".into()],
        };
        let attempt = |placements: Vec<types::Placement>| {
            plan(
                placements,
                &seen(&["1", "2", "3", "4"]),
                &decided,
                &HashMap::new(),
                1,
                "IT Glue",
                |_, link| {
                    if link.scopable_id == "ghost" {
                        Err("a link to client \"ghost\", which does not exist".into())
                    } else {
                        Ok(())
                    }
                },
            )
        };
        let cases: Vec<(Vec<types::Placement>, &str)> = vec![
            (
                vec![link("1", "c1"), link("2", "c2"), link("9", "c9")],
                "unknown record",
            ),
            (
                vec![link("1", "c1"), link("2", "c2"), link("3", "c1")],
                "manual decision",
            ),
            (
                vec![link("1", "c1"), link("2", "c2"), link("4", "c4")],
                "manual decision",
            ),
            (vec![link("1", "c1"), link("2", "c3")], "linked by hand"),
            (vec![link("1", "c1"), link("2", "c1")], "linking both"),
            (vec![link("1", "c1"), link("1", "c2")], "two placements"),
            (vec![link("1", "c1")], "placed 1 of 2"),
            (vec![link("1", "c1"), link("2", "ghost")], "does not exist"),
        ];
        for (placements, needle) in cases {
            let err = attempt(placements).err().expect("refused");
            assert_eq!(err.exit, Exit::ConnectorFailed, "{}", err.message);
            assert!(err.message.contains(needle), "{needle}: {}", err.message);
            assert!(
                err.message.contains("nothing was applied"),
                "{}",
                err.message
            );
        }
        assert!(attempt(vec![link("1", "c1"), link("2", "c2")]).is_ok());
    }

    /// Clients go into a batch until it holds the limit (one large client takes it past);
    /// the last batch holds what is left.
    #[test]
    fn batches_take_whole_clients_up_to_the_limit() {
        assert_eq!(
            client_batches(&[3, 3, 5, 1, 10, 2], 6),
            [0..2, 2..4, 4..5, 5..6]
        );
        assert_eq!(
            client_batches(&[1, 1], 10),
            vec![std::ops::Range { start: 0, end: 2 }]
        );
        assert!(client_batches(&[], 10).is_empty());
    }

    #[test]
    fn candidates_and_suggestions_are_bounded() {
        assert!(run(vec![unplaced("1", 100, 100)], &["1"]).is_ok());
        for (c, s) in [(101, 0), (0, 101), (100_000, 100_000)] {
            let err = run(vec![unplaced("1", c, s)], &["1"]).err().unwrap();
            assert_eq!(err.exit, Exit::ConnectorFailed);
            assert!(err.message.contains("at most 100"), "{}", err.message);
        }
    }

    #[test]
    fn evidence_must_fit_the_kind_and_hold_on_the_records() {
        use types::Evidence as E;
        let macs = |m: &[&str]| m.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let org = RecordKind::Organization;
        let config = RecordKind::Configuration;
        let acme = Carries::of("Acme, Inc.", None, &[], None);
        let acme_again = Carries::of("ACME Inc", None, &[], None);
        let beta = Carries::of("Beta", None, &[], None);
        assert!(check_evidence(org, &[E::Name], &acme, &acme_again).is_ok());
        let err = check_evidence(org, &[E::Name], &acme, &beta).unwrap_err();
        assert!(err.contains("do not agree"), "{err}");
        let pc = Carries::of(
            "pc",
            Some(" abc123x "),
            &macs(&["00:11:22:33:44:55"]),
            Some("ty-dc01.corp.local"),
        );
        let same_pc = Carries::of(
            "other name",
            Some("ABC123X"),
            &macs(&["00-11-22-33-44-55", "00:11:22:33:44:66"]),
            Some("TY-DC01"),
        );
        for e in [E::Hostname, E::Mac, E::Serial] {
            let err = check_evidence(org, &[e], &pc, &same_pc).unwrap_err();
            assert!(err.contains("never links organization"), "{err}");
        }
        assert!(check_evidence(config, &[E::Name], &pc, &same_pc).is_err());
        assert!(check_evidence(config, &[E::Serial, E::Mac, E::Hostname], &pc, &same_pc).is_ok());
        assert!(check_evidence(config, &[], &pc, &same_pc).is_err());
        assert!(check_evidence(config, &[E::Mac, E::Mac], &pc, &same_pc).is_err());
        // Values that differ, one side without the identifier, and placeholders.
        let other = Carries::of(
            "pc",
            Some("ZZZ999"),
            &macs(&["aa:bb:cc:dd:ee:02"]),
            Some("srv"),
        );
        for e in [E::Serial, E::Mac, E::Hostname] {
            let err = check_evidence(config, &[e], &pc, &other).unwrap_err();
            assert!(err.contains("do not agree"), "{err}");
        }
        let bare = Carries::of("pc", None, &[], None);
        assert!(check_evidence(config, &[E::Serial], &bare, &bare).is_err());
        let oem = Carries::of(
            "pc",
            Some("To Be Filled By O.E.M."),
            &macs(&["00:00:00:00:00:00"]),
            None,
        );
        assert!(check_evidence(config, &[E::Serial], &oem, &oem).is_err());
        assert!(check_evidence(config, &[E::Mac], &oem, &oem).is_err());
    }
}

//! `check COMPONENT --manifest M [--endpoint URL]`: a conformance run for connector authors.
//! Loads the component like the host does, then runs the standard scenario: error
//! classification against a built-in loopback server that fails on purpose, `match`
//! determinism on shuffled input, and (with `--endpoint` and a key) `test` plus paging to
//! completion. Prints a pass/fail table.

use crate::app::{AppError, ConnectorSource, Exit, read_connector};
use crate::fetch::{Page, PageGuard};
use scopable_sandbox::policy::BaseUrl;
use scopable_sandbox::sandbox::{
    CallContext, CallError, LoadedConnector, Sandbox, wit_types as types,
};
use scopable_store::shared::Shared;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// One row of the table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    /// What was checked.
    pub check: String,
    /// `pass`, `fail` or `skip`.
    pub result: &'static str,
    /// What was seen.
    pub detail: String,
}

fn row(check: impl Into<String>, ok: bool, detail: impl Into<String>) -> Row {
    Row {
        check: check.into(),
        result: if ok { "pass" } else { "fail" },
        detail: detail.into(),
    }
}

fn skip(check: impl Into<String>, detail: impl Into<String>) -> Row {
    Row {
        check: check.into(),
        result: "skip",
        detail: detail.into(),
    }
}

/// A loopback server answering every request with one canned response.
struct CannedServer {
    url: String,
    stop: Arc<AtomicBool>,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
    addr: std::net::SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CannedServer {
    fn start(response: String) -> std::io::Result<CannedServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&head)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                if let Ok(mut s) = seen2.lock() {
                    s.push(line);
                }
                let _ = stream.write_all(response.as_bytes());
            }
        });
        Ok(CannedServer {
            url: format!("http://{addr}"),
            stop,
            seen,
            addr,
            thread: Some(thread),
        })
    }
}

impl Drop for CannedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = std::net::TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn canned(status: &str, extra: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A temporary database for one conformance run: the component gets real storage, audit and
/// pacing, exactly as in a sync, so a component that behaves only when its storage is missing
/// is seen as it really is. Deleted when dropped.
pub struct CheckStore {
    dir: PathBuf,
    conn: Shared,
}

impl CheckStore {
    /// Creates the database in a new owner-only folder under the system's temporary folder.
    pub fn new() -> Result<CheckStore, AppError> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = std::env::temp_dir().join(format!(
            "scopable-check-{}",
            scopable_store::vault::random_hex(8)
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| {
                AppError::new(
                    Exit::Failure,
                    format!(
                        "cannot create a temporary database in {}: {e}",
                        dir.display()
                    ),
                )
            })?;
        let conn = Shared::open(dir.join("check.db"), scopable_store::DEFAULT_ACCOUNT)?;
        Ok(CheckStore { dir, conn })
    }
}

impl Drop for CheckStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn context(
    connector: &LoadedConnector,
    store: &CheckStore,
    base: BaseUrl,
    key: &str,
) -> Result<CallContext, AppError> {
    crate::app::database_context(connector, &store.conn, base, key)
}

fn error_name(e: &CallError) -> String {
    match e {
        CallError::Guest(types::Error::Unauthorized(_)) => "unauthorized".into(),
        CallError::Guest(types::Error::NotFound(_)) => "not-found".into(),
        CallError::Guest(types::Error::RateLimited(r)) => match r.retry_after_seconds {
            Some(s) => format!("rate-limited (retry after {s} s)"),
            None => "rate-limited".into(),
        },
        CallError::Guest(types::Error::Unavailable(_)) => "unavailable".into(),
        CallError::Guest(types::Error::BadResponse(_)) => "bad-response".into(),
        CallError::Guest(types::Error::Denied(_)) => "denied".into(),
        CallError::Rejected { status, error } => format!(
            "{} (HTTP {status}, not retried)",
            error_name(&CallError::Guest(error.clone()))
        ),
        other => format!("host error: {other}"),
    }
}

async fn error_classification(
    connector: &LoadedConnector,
    store: &CheckStore,
    rows: &mut Vec<Row>,
) {
    let cases: [(&str, String, &str); 6] = [
        (
            "401",
            canned(
                "401 Unauthorized",
                "",
                "application/json",
                r#"{"errors":[{"status":"401","title":"Unauthorized"}]}"#,
            ),
            "unauthorized",
        ),
        (
            "403",
            canned(
                "403 Forbidden",
                "",
                "application/json",
                r#"{"message":"Forbidden"}"#,
            ),
            "unauthorized",
        ),
        (
            "429 with Retry-After",
            canned(
                "429 Too Many Requests",
                "retry-after: 7\r\n",
                "application/json",
                "{}",
            ),
            "rate-limited (retry after 7 s)",
        ),
        (
            "503",
            canned(
                "503 Service Unavailable",
                "",
                "text/html",
                "<html><body>down</body></html>",
            ),
            "unavailable",
        ),
        (
            "200 with an HTML body",
            canned(
                "200 OK",
                "",
                "text/html",
                "<html><body>proxy login</body></html>",
            ),
            "bad-response",
        ),
        (
            "200 with an empty body",
            canned("200 OK", "", "application/json", ""),
            "bad-response",
        ),
    ];
    for (label, response, expected) in cases {
        let name = format!("error: {label} -> {expected}");
        let server = match CannedServer::start(response) {
            Ok(s) => s,
            Err(e) => {
                rows.push(row(
                    name,
                    false,
                    format!("cannot start the local server: {e}"),
                ));
                continue;
            }
        };
        let base = match BaseUrl::parse_endpoint(&server.url) {
            Ok(b) => b,
            Err(e) => {
                rows.push(row(name, false, e));
                continue;
            }
        };
        let ctx = match context(connector, store, base, "check-key") {
            Ok(c) => c,
            Err(e) => {
                rows.push(row(name, false, e.message));
                continue;
            }
        };
        let got = match connector.test(&ctx).await {
            Ok(_) => "success".to_string(),
            Err(e) => error_name(&e),
        };
        let gets_only = server
            .seen
            .lock()
            .map(|s| s.iter().all(|l| l.starts_with("GET ")))
            .unwrap_or(false);
        let ok = got == expected && gets_only;
        rows.push(row(
            name,
            ok,
            if gets_only {
                format!("got {got}")
            } else {
                "a request other than GET".into()
            },
        ));
    }
}

fn synthetic_organizations(n: usize) -> (Vec<types::Organization>, Vec<types::Client>) {
    let orgs = (1..=n)
        .map(|i| types::Organization {
            id: i.to_string(),
            // Every seventh name repeats an earlier one, so ambiguity is in play too.
            name: if i % 7 == 0 {
                format!("Company {}", i - 1)
            } else {
                format!("Company {i}")
            },
            short_name: None,
            type_name: None,
            status_name: None,
        })
        .collect();
    let clients = (1..=n)
        .filter(|i| i % 3 != 0)
        .map(|i| types::Client {
            id: format!("c{i}"),
            name: if i % 11 == 0 {
                "Company 1".to_string()
            } else {
                format!("company {i}")
            },
        })
        .collect();
    (orgs, clients)
}

fn sorted_by_id(placements: &[types::Placement]) -> bool {
    placements.windows(2).all(|w| {
        crate::kinds::id_order(&w[0].source_id, &w[1].source_id) != std::cmp::Ordering::Greater
    })
}

fn same(a: &[types::Placement], b: &[types::Placement]) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

async fn match_determinism(
    connector: &LoadedConnector,
    store: &CheckStore,
    fetched: Option<Vec<types::Organization>>,
    rows: &mut Vec<Row>,
) {
    let Ok(ctx) = context(
        connector,
        store,
        BaseUrl {
            scheme: "https".into(),
            host: "invalid.test".into(),
            port: 443,
            prefix: String::new(),
        },
        "check-key",
    ) else {
        rows.push(row(
            "match determinism",
            false,
            "cannot build a call context",
        ));
        return;
    };
    let (orgs, clients) = match fetched {
        Some(orgs) if !orgs.is_empty() => {
            let clients = orgs
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 2 == 0)
                .map(|(i, o)| types::Client {
                    id: format!("c{i}"),
                    name: o.name.clone(),
                })
                .collect();
            (orgs, clients)
        }
        _ => synthetic_organizations(200),
    };
    let input = |orgs: Vec<types::Organization>, clients: Vec<types::Client>| {
        types::MatchInput::Organizations(types::OrganizationMatch {
            organizations: orgs,
            clients,
            manual_links: Vec::new(),
            ignored: Vec::new(),
        })
    };
    let mut shuffled_orgs = orgs.clone();
    let mut shuffled_clients = clients.clone();
    // A fixed, thorough reordering: reverse, then interleave halves.
    shuffled_orgs.reverse();
    shuffled_clients.reverse();
    let half = shuffled_orgs.len() / 2;
    shuffled_orgs.rotate_left(half);
    let first = connector
        .match_records(&ctx, input(orgs.clone(), clients.clone()))
        .await;
    let second = connector
        .match_records(&ctx, input(shuffled_orgs, shuffled_clients))
        .await;
    let name = "match: organizations, shuffled input gives the same placements";
    match (first, second) {
        (Ok(a), Ok(b)) => {
            let ids: HashSet<&str> = a.iter().map(|p| p.source_id.as_str()).collect();
            let complete = ids.len() == orgs.len() && a.len() == orgs.len();
            let ok = same(&a, &b) && sorted_by_id(&a) && complete;
            let detail = format!(
                "{} placements, {}, {}, {}",
                a.len(),
                if same(&a, &b) {
                    "identical"
                } else {
                    "DIFFERENT"
                },
                if sorted_by_id(&a) {
                    "sorted by id"
                } else {
                    "NOT sorted by id"
                },
                if complete {
                    "one per record"
                } else {
                    "NOT one per record"
                }
            );
            rows.push(row(name, ok, detail));
            rows.push(placements_accepted(&orgs, &clients, &a));
        }
        (Err(e), _) | (_, Err(e)) => rows.push(row(name, false, e.to_string())),
    }
}

/// Whether a sync would accept these placements: each link to a client that exists, on
/// evidence an organization link may have and both records carry, and bounded candidate and
/// suggestion lists (`sync::plan`'s rules).
fn placements_accepted(
    orgs: &[types::Organization],
    clients: &[types::Client],
    placements: &[types::Placement],
) -> Row {
    use crate::kinds::RecordKind;
    use crate::sync::{Carries, MAX_CANDIDATES, check_evidence};
    let name = "match: a sync accepts every placement";
    let carries = |name: &str| Carries::of(name, None, &[], None);
    let org_names: std::collections::HashMap<&str, &str> = orgs
        .iter()
        .map(|o| (o.id.as_str(), o.name.as_str()))
        .collect();
    let client_names: std::collections::HashMap<&str, &str> = clients
        .iter()
        .map(|c| (c.id.as_str(), c.name.as_str()))
        .collect();
    for p in placements {
        let problem = match &p.outcome {
            types::Outcome::Linked(link) => match client_names.get(link.scopable_id.as_str()) {
                None => Some(format!(
                    "a link to client {:?}, which does not exist",
                    link.scopable_id
                )),
                Some(client) => {
                    let source =
                        carries(org_names.get(p.source_id.as_str()).copied().unwrap_or(""));
                    check_evidence(
                        RecordKind::Organization,
                        &link.evidence,
                        &source,
                        &carries(client),
                    )
                    .err()
                }
            },
            types::Outcome::Unplaced(u)
                if u.candidates.len() > MAX_CANDIDATES || u.suggestions.len() > MAX_CANDIDATES =>
            {
                Some(format!(
                    "{} candidates and {} suggestions (at most {MAX_CANDIDATES} each)",
                    u.candidates.len(),
                    u.suggestions.len()
                ))
            }
            types::Outcome::Unplaced(_) => None,
        };
        if let Some(problem) = problem {
            return row(name, false, format!("record {}: {problem}", p.source_id));
        }
    }
    row(
        name,
        true,
        format!("{} placements checked", placements.len()),
    )
}

async fn paging<P, F, Fut>(label: &str, fetch: F, rows: &mut Vec<Row>) -> Option<Vec<P>>
where
    F: Fn(u32) -> Fut,
    Fut: Future<Output = Result<(Vec<P>, usize, types::PageInfo, Vec<String>), String>>,
{
    let name = format!("paging: {label} to completion");
    let mut page = 1;
    let mut records = Vec::new();
    let mut ids = HashSet::new();
    let mut unreadable = 0;
    let mut total = None;
    let mut pages = 0;
    loop {
        match fetch(page).await {
            Ok((recs, bad, info, page_ids)) => {
                pages += 1;
                unreadable += bad;
                total = total.or(info.total_count);
                for id in page_ids {
                    ids.insert(id);
                }
                records.extend(recs);
                match info.next_page {
                    Some(next) if next > page && pages < 10_000 => page = next,
                    Some(next) => {
                        rows.push(row(
                            name,
                            false,
                            format!("page {page} points to page {next}: paging would not end"),
                        ));
                        return None;
                    }
                    None => break,
                }
            }
            Err(e) => {
                rows.push(row(name, false, format!("page {page}: {e}")));
                return None;
            }
        }
    }
    let received = (ids.len() + unreadable) as u64;
    let ok = total.is_none_or(|t| t == received);
    rows.push(row(
        name,
        ok,
        format!(
            "{pages} pages, {} distinct records, {unreadable} unreadable, total reported {}",
            ids.len(),
            total.map_or("none".into(), |t| t.to_string())
        ),
    ));
    Some(records)
}

/// Runs the scenario and returns the rows.
pub async fn run(
    connector: &LoadedConnector,
    store: &CheckStore,
    endpoint: Option<(BaseUrl, String)>,
) -> Vec<Row> {
    let mut rows = vec![row(
        "load: digest, imports, exports, link",
        true,
        format!(
            "sha256 {}, {} imports granted",
            connector.digest,
            connector.imports.len()
        ),
    )];
    error_classification(connector, store, &mut rows).await;
    let mut fetched = None;
    match endpoint {
        None => {
            rows.push(skip(
                "test against the endpoint",
                format!(
                    "give --endpoint URL and the key in {}",
                    connector.manifest.key_env()
                ),
            ));
            rows.push(skip(
                "paging to completion",
                "give --endpoint URL and the key",
            ));
        }
        Some((base, key)) => match context(connector, store, base, &key) {
            Err(e) => rows.push(row("test against the endpoint", false, e.message)),
            Ok(ctx) => {
                match connector.test(&ctx).await {
                    Ok(v) => rows.push(row("test against the endpoint", true, v.detail)),
                    Err(e) => rows.push(row("test against the endpoint", false, e.to_string())),
                }
                // Each page passes the sync's own checks (page size, text, ids, listing).
                let limits = &connector.manifest.limits;
                let (org_guard, config_guard) = (PageGuard::new(limits), PageGuard::new(limits));
                fetched = paging(
                    "organizations",
                    |page| {
                        let ctx = ctx.clone();
                        let guard = &org_guard;
                        async move {
                            let p = connector
                                .fetch_orgs(&ctx, page)
                                .await
                                .map_err(|e| e.to_string())?;
                            let (records, unreadable, info) = guard
                                .admit::<types::OrganizationPage>(page, p.into_parts())
                                .map_err(|e| e.to_string())?;
                            let ids = records.iter().map(|r| r.id.clone()).collect();
                            Ok((records, unreadable.len(), info, ids))
                        }
                    },
                    &mut rows,
                )
                .await;
                paging(
                    "configurations",
                    |page| {
                        let ctx = ctx.clone();
                        let guard = &config_guard;
                        async move {
                            let p = connector
                                .fetch_configs(&ctx, page)
                                .await
                                .map_err(|e| e.to_string())?;
                            let (records, unreadable, info) = guard
                                .admit::<types::ConfigurationPage>(page, p.into_parts())
                                .map_err(|e| e.to_string())?;
                            let ids = records.iter().map(|r| r.id.clone()).collect();
                            Ok((records, unreadable.len(), info, ids))
                        }
                    },
                    &mut rows,
                )
                .await;
            }
        },
    }
    match_determinism(connector, store, fetched, &mut rows).await;
    rows
}

/// The checks of a connector (`component` with `manifest`), against the built-in simulated
/// answers and, with `endpoint`, a live service (its key read from the manifest's variable):
/// every row, and the manifest's warnings (accepted, but broader than most connectors need).
pub fn check_component(
    component: &Path,
    manifest: &Path,
    endpoint: Option<&str>,
) -> Result<(Vec<Row>, Vec<String>), AppError> {
    let (bytes, manifest) = read_connector(&ConnectorSource::File {
        component: component.to_path_buf(),
        manifest: manifest.to_path_buf(),
    })?;
    let sandbox = Sandbox::new(None).map_err(|e| AppError::new(Exit::Failure, format!("{e:#}")))?;
    let pinned = manifest.sha256.clone();
    // Accepted, but broader than a read-only connector usually needs: shown beside the table.
    let warnings = manifest.warnings();
    let loaded = sandbox.load(&bytes, manifest, pinned.as_deref());
    let rows = match loaded {
        Err(e) => vec![row(
            "load: digest, imports, exports, link",
            false,
            e.to_string(),
        )],
        Ok(connector) => {
            let target = match endpoint {
                None => None,
                Some(url) => {
                    let base = BaseUrl::parse_endpoint(url)
                        .map_err(|e| AppError::new(Exit::Usage, format!("--endpoint {e}")))?;
                    let env = connector.manifest.key_env();
                    let key = std::env::var(&env).map_err(|_| {
                        AppError::new(Exit::Usage, format!("--endpoint needs the key in {env}"))
                    })?;
                    Some((base, crate::app::clean_key(&key)?))
                }
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| AppError::new(Exit::Failure, e.to_string()))?;
            let store = CheckStore::new()?;
            rt.block_on(run(&connector, &store, target))
        }
    };
    Ok((rows, warnings))
}

#[cfg(test)]
mod placement_tests {
    use super::*;

    fn org(id: &str, name: &str) -> types::Organization {
        types::Organization {
            id: id.into(),
            name: name.into(),
            short_name: None,
            type_name: None,
            status_name: None,
        }
    }

    fn linked(id: &str, target: &str, evidence: types::Evidence) -> types::Placement {
        types::Placement {
            source_id: id.into(),
            outcome: types::Outcome::Linked(types::Link {
                scopable_id: target.into(),
                evidence: vec![evidence],
            }),
        }
    }

    #[test]
    fn check_refuses_what_a_sync_would_refuse() {
        let orgs = [org("1", "Acme")];
        let clients = [types::Client {
            id: "c1".into(),
            name: "Acme".into(),
        }];
        let honest =
            placements_accepted(&orgs, &clients, &[linked("1", "c1", types::Evidence::Name)]);
        assert_eq!(honest.result, "pass", "{}", honest.detail);
        let hostname = placements_accepted(
            &orgs,
            &clients,
            &[linked("1", "c1", types::Evidence::Hostname)],
        );
        assert_eq!(hostname.result, "fail");
        assert!(hostname.detail.contains("hostname"), "{}", hostname.detail);
        let ghost = placements_accepted(
            &orgs,
            &clients,
            &[linked("1", "ghost", types::Evidence::Name)],
        );
        assert_eq!(ghost.result, "fail");
        let many: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
        let flooded = placements_accepted(
            &orgs,
            &clients,
            &[types::Placement {
                source_id: "1".into(),
                outcome: types::Outcome::Unplaced(types::Unplaced {
                    reason: types::Reason::MultipleClients,
                    candidates: many,
                    suggestions: Vec::new(),
                }),
            }],
        );
        assert_eq!(flooded.result, "fail");
        assert!(
            flooded.detail.contains("101 candidates"),
            "{}",
            flooded.detail
        );
    }
}

//! A bad day at IT Glue and bad input at every door: retries that give the same links as a
//! clean run, partial listings that fail instead of linking, a SIGKILL mid-sync, unreadable
//! records, and damaged database files.

use crate::util::{Env, US_KEY, assert_counts_add_up};
use itglue_sim::{Config, Dataset, Fault, FaultRule, Org, SimConfig, When};
use serde_json::json;
use std::time::{Duration, Instant};

/// A data set of `n` organizations (two pages of 1000 when n > 1000), half with a client.
fn big_env(n: u64) -> Env {
    let orgs: Vec<Org> = (1..=n)
        .map(|i| Org::new(i, &format!("Customer {i}")))
        .collect();
    let configs: Vec<Config> = (1..=n)
        .step_by(2)
        .map(|i| Config::new(10_000 + i, i, &format!("PC {i}")).with_serial(&format!("SN-{i:06}")))
        .collect();
    let env = Env::with(SimConfig::with_dataset(Dataset {
        organizations: orgs,
        configurations: configs,
        ..Dataset::default()
    }));
    env.connect();
    let mut clients = String::from("id,name\n");
    let mut cfgs = String::from("id,client_id,name,hostname,serial_number,mac_address\n");
    for i in (1..=n).step_by(2) {
        clients.push_str(&format!("c{i},Customer {i}\n"));
        cfgs.push_str(&format!("s{i},c{i},PC,,SN-{i:06},\n"));
    }
    env.import(&clients, &cfgs);
    env
}

/// Runs a sync through the built-in component with fast retries.
fn fast_sync(env: &Env, kind: &str) -> crate::util::Run {
    env.run_itglue_with(
        "max_attempts = 8\nretry_base_ms = 5\nretry_max_ms = 50",
        &["sync", kind, "--json"],
    )
}

fn link_table(env: &Env) -> Vec<(String, String, String)> {
    let mut stmt = env
        .sqlite()
        .prepare("SELECT kind, source_id, scopable_id FROM links ORDER BY kind, source_id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    stmt.sort();
    stmt
}

#[test]
fn a_flaky_api_gives_the_same_links_as_a_clean_run() {
    let clean = big_env(1500);
    assert_counts_add_up(&fast_sync(&clean, "organizations").json());
    assert_counts_add_up(&fast_sync(&clean, "configurations").json());
    let expected = link_table(&clean);
    assert!(expected.len() > 1000);

    let flaky = big_env(1500);
    flaky
        .sim
        .add_fault(FaultRule::new(When::EveryNth(3), Fault::unavailable()));
    flaky.sim.add_fault(FaultRule::new(
        When::EveryNth(5),
        Fault::Html { status: 502 },
    ));
    flaky
        .sim
        .add_fault(FaultRule::new(When::EveryNth(7), Fault::rate_limited()));
    flaky.sim.add_fault(FaultRule::new(
        When::EveryNth(11),
        Fault::rate_limited_retry_after("0"),
    ));
    flaky
        .sim
        .add_fault(FaultRule::new(When::EveryNth(13), Fault::Truncated));
    flaky
        .sim
        .add_fault(FaultRule::new(When::EveryNth(17), Fault::Reset));
    let orgs = fast_sync(&flaky, "organizations").json();
    let configs = fast_sync(&flaky, "configurations").json();
    assert_counts_add_up(&orgs);
    assert_counts_add_up(&configs);
    let requests = orgs["requests"].as_u64().unwrap() + configs["requests"].as_u64().unwrap();
    assert!(
        requests > 3,
        "three pages, and the retries are counted: {orgs} {configs}"
    );
    assert_eq!(
        flaky
            .sim
            .requests()
            .iter()
            .filter(|r| r.status != 200)
            .count() as u64,
        requests - 3
    );
    assert_eq!(link_table(&flaky), expected);
}

#[test]
fn a_partial_listing_fails_and_links_nothing() {
    let env = big_env(1500);
    env.sim.add_fault(FaultRule::always(Fault::ShiftTotal(1)));
    let run = fast_sync(&env, "organizations");
    run.fails(4, "nothing was linked");
    assert!(run.stdout.is_empty());
    assert!(link_table(&env).is_empty());
    let status = env.run(&["itglue", "status", "--json"]).json();
    assert_eq!(status["organization"]["status"], "failed");

    // A total that changes between pages fails the same way.
    env.sim.clear_faults();
    env.sim
        .add_fault(FaultRule::new(When::Page(2), Fault::ShiftTotal(-3)));
    fast_sync(&env, "organizations").fails(4, "changed while paging");
    assert!(link_table(&env).is_empty());

    // An API that stays down fails after bounded retries, naming the page.
    env.sim.clear_faults();
    env.sim
        .add_fault(FaultRule::new(When::Page(2), Fault::gateway_timeout()));
    fast_sync(&env, "organizations").fails(4, "page 2");
    assert!(link_table(&env).is_empty());
}

#[test]
fn unreadable_records_are_errored_not_fatal() {
    let mut ds = Dataset {
        organizations: vec![Org::new(1, "Acme"), Org::new(2, "Beta")],
        ..Dataset::default()
    };
    ds.raw_organizations = vec![
        json!({"type": "organizations", "attributes": {"name": "No id"}}),
        json!({"type": "organizations", "attributes": {"name": "No id either"}}),
        json!({"id": "77", "type": "organizations", "attributes": {"name": 12345}}),
        json!({"id": "78", "type": "organizations", "attributes": {"name": "x".repeat(100_000)}}),
        json!({"id": "79", "type": "organizations", "attributes": {"name": "Ctrl\u{7}\u{1b}[31mName"}}),
    ];
    let env = Env::with(SimConfig::with_dataset(ds));
    env.connect();
    env.import(
        "id,name\nc1,Acme\n",
        "id,client_id,name,hostname,serial_number,mac_address\n",
    );
    let s = env.sync("organizations");
    assert_counts_add_up(&s);
    assert_eq!(s["fetched"], 7);
    assert_eq!(s["errored"], 3);
    assert_eq!(s["linked"], 1);
    let unplaced = env.run(&["itglue", "unplaced", "--json"]).json();
    let invalid = unplaced
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["reason"] == "invalid-record")
        .count();
    assert_eq!(invalid, 3, "each unreadable record is listed: {unplaced}");
    // The human list stays one line per record, whatever the names hold.
    let human = env.run(&["itglue", "unplaced"]);
    assert!(
        !human.ok().contains('\u{1b}'),
        "control characters reach the terminal"
    );
}

#[test]
fn sigkill_mid_sync_keeps_the_database_and_the_previous_links() {
    let env = big_env(2500);
    fast_sync(&env, "organizations").json();
    let before = link_table(&env);
    assert_eq!(before.len(), 1250);

    // Slow the pages down and kill the process while it is fetching.
    env.sim
        .add_fault(FaultRule::always(Fault::Latency(Duration::from_millis(
            400,
        ))));
    env.sim.clear_requests();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_scopable-host"))
        .arg("--db")
        .arg(env.db())
        .args(["itglue", "sync", "organizations", "--json"])
        .env("SCOPABLE_CACHE_DIR", crate::util::cache_dir())
        // A short lease, so the killed run stops blocking soon.
        .env("SCOPABLE_LEASE_SECS", "6")
        .env_remove("ITGLUE_API_KEY")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once page 1 arrived and was staged (the later pages are being asked for).
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.sim.requests().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    env.sim.clear_faults();

    let integrity: String = env
        .sqlite()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    // The pages it staged were its connection's own: nothing of them is left in the file.
    let left: i64 = env
        .sqlite()
        .query_row(
            "SELECT (SELECT count(*) FROM sync_staged) + (SELECT count(*) FROM sync_planned)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
    assert_eq!(link_table(&env), before, "the previous links are intact");
    // Its lease still holds for a few seconds: a sync now is refused and changes nothing.
    fast_sync(&env, "organizations").fails(1, "already running");
    // Once the lease has expired, the next sync completes normally and records the
    // interrupted one.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut again = fast_sync(&env, "organizations");
    while again.code == 1 && again.stderr.contains("already running") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        again = fast_sync(&env, "organizations");
    }
    let again = again.json();
    assert_eq!(
        (again["new_links"].as_u64(), again["removed_links"].as_u64()),
        (Some(0), Some(0))
    );
    let interrupted: i64 = env
        .sqlite()
        .query_row(
            "SELECT count(*) FROM sync_runs WHERE status = 'failed' AND error LIKE 'interrupted%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(interrupted, 1);
}

#[test]
fn damaged_or_foreign_database_files_are_refused_clearly() {
    let env = Env::new();
    env.write(
        "scopable.db",
        b"this is not a database at all, just text that is long enough....",
    );
    env.run(&["itglue", "status"])
        .fails(6, "not a usable Scopable database");

    let env = Env::new();
    {
        let conn = rusqlite::Connection::open(env.db()).unwrap();
        conn.execute_batch("CREATE TABLE invoices (id INTEGER); INSERT INTO invoices VALUES (1);")
            .unwrap();
    }
    env.run(&["itglue", "status"]).fails(6, "another program");

    let env = Env::new();
    // A command that writes creates the database (one that only reads never does).
    env.run(&["itglue", "disconnect"]).ok();
    {
        let conn = rusqlite::Connection::open(env.db()).unwrap();
        conn.execute_batch("PRAGMA user_version = 99;").unwrap();
    }
    env.run(&["itglue", "status"])
        .fails(6, "newer than this program");
    env.run_key(US_KEY, &["itglue", "test", "--endpoint", &env.endpoint()])
        .fails(6, "newer");
}

#[test]
fn a_stalled_server_gives_a_clear_error_within_the_bound() {
    let env = Env::new();
    env.connect();
    env.sim
        .add_fault(FaultRule::always(Fault::StallAfterHeaders(
            Duration::from_secs(30),
        )));
    let run = env.run_itglue_with("max_attempts = 2\nretry_base_ms = 5\nbetween_bytes_timeout_ms = 300\nfirst_byte_timeout_ms = 300", &["sync",
        "organizations",
        "--json",]);
    run.fails(4, "unavailable");
    assert!(run.stdout.is_empty());
    assert_eq!(
        env.sim.requests().len(),
        1 + 2,
        "connect, then two attempts"
    );
}

#[test]
fn a_page_that_is_not_json_fails_the_run_after_retries() {
    let env = big_env(1500);
    env.sim.add_fault(FaultRule::new(
        When::Page(2),
        Fault::Status {
            status: 200,
            retry_after: None,
            body: "{\"data\": [ {\"id\": \"1\", \"attributes\": ".into(),
        },
    ));
    let run = fast_sync(&env, "organizations");
    run.fails(5, "page 2");
    assert!(run.stderr.contains("unreadable"), "{}", run.stderr);
    assert!(link_table(&env).is_empty());
    let attempts = env
        .sim
        .requests()
        .iter()
        .filter(|r| r.query.contains("page%5Bnumber%5D=2"))
        .count();
    assert_eq!(attempts, 8, "bounded retries (max_attempts = 8)");
}

#[test]
fn duplicate_ids_across_pages_are_a_partial_list() {
    // Page size 2: ids 1,2 | 2,3 -- a record was served twice, so one was never seen.
    let orgs = vec![
        Org::new(1, "A"),
        Org::new(2, "B"),
        Org::new(2, "B"),
        Org::new(3, "C"),
    ];
    let env = Env::with(SimConfig::with_dataset(Dataset {
        organizations: orgs,
        ..Dataset::default()
    }));
    env.connect();
    env.import(
        "id,name\nc1,A\n",
        "id,client_id,name,hostname,serial_number,mac_address\n",
    );
    let run = env.run_itglue_with(
        "page_size = 2\nmax_attempts = 1",
        &["sync", "organizations", "--json"],
    );
    run.fails(4, "partial list");
    assert!(link_table(&env).is_empty());
}

#[test]
fn a_server_that_never_answers_times_out_on_the_first_byte() {
    let env = Env::new();
    env.connect();
    env.sim
        .add_fault(FaultRule::always(Fault::Stall(Duration::from_secs(30))));
    let run = env.run_itglue_with(
        "max_attempts = 1\nfirst_byte_timeout_ms = 300",
        &["sync", "organizations"],
    );
    run.fails(4, "unavailable");
    // The host's first-byte timeout ended the request, not the server closing it after 30 s.
    assert!(
        run.stderr.contains("did not answer in time"),
        "{}",
        run.stderr
    );
    let status = env.run(&["itglue", "status", "--json"]).json();
    assert_eq!(status["organization"]["status"], "failed");
}

/// Pages of 2, four requests at once, no retry.
const PAGED: &str = "page_size = 2\nconcurrency = 4\nmax_attempts = 1";

/// Organizations 1 to `n`, each named `Customer <id>`.
fn customers(n: u64) -> Dataset {
    Dataset {
        organizations: (1..=n)
            .map(|i| Org::new(i, &format!("Customer {i}")))
            .collect(),
        ..Dataset::default()
    }
}

/// `orgs` organizations, each with a client of its name (so each links by name), connected.
fn paged_env(orgs: u64) -> Env {
    let env = Env::with(SimConfig::with_dataset(customers(orgs)));
    env.connect();
    let clients: String = (1..=orgs).map(|i| format!("c{i},Customer {i}\n")).collect();
    env.import(
        &format!("id,name\n{clients}"),
        "id,client_id,name,hostname,serial_number,mac_address\n",
    );
    env
}

/// `sync organizations --json` under `limits`.
fn sync_organizations(env: &Env, limits: &str) -> crate::util::Run {
    env.run_itglue_with(limits, &["sync", "organizations", "--json"])
}

/// Requests for page `n` of the organizations.
fn organization_page(n: u64) -> When {
    When::PathPrefix("/organizations".into()).and(When::Page(n))
}

/// A `200` answer with this body.
fn answered_with(body: serde_json::Value) -> Fault {
    Fault::Status {
        status: 200,
        retry_after: None,
        body: body.to_string(),
    }
}

/// An organization as the API lists it.
fn organization_json(id: u64) -> serde_json::Value {
    json!({"id": id.to_string(), "type": "organizations",
           "attributes": {"name": format!("Customer {id}")}})
}

/// The audit rows of organization requests.
fn organization_audit_rows(env: &Env) -> i64 {
    env.sqlite()
        .query_row(
            "SELECT count(*) FROM audit WHERE path = '/organizations'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

/// The page numbers of the organization requests the simulator saw, sorted.
fn organization_pages(env: &Env) -> Vec<u64> {
    let mut pages: Vec<u64> = env
        .sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/organizations"))
        .filter_map(|r| {
            let (_, rest) = r.query.split_once("page%5Bnumber%5D=")?;
            rest.split('&').next()?.parse().ok()
        })
        .collect();
    pages.sort_unstable();
    pages
}

/// Syncs organizations while page 1 fails after 1.5 s (whatever was asked for with it is in
/// the simulator's log by then): the sync fails, and the pages it asked for are returned.
/// The simulator's faults and latency are cleared before and after.
fn pages_asked_while_page_1_fails(env: &Env) -> Vec<u64> {
    env.sim.clear_faults();
    env.sim.set_latency(Duration::from_millis(1500));
    env.sim
        .add_fault(FaultRule::new(organization_page(1), Fault::status(503)));
    env.sim.clear_requests();
    sync_organizations(env, PAGED).fails(4, "unavailable");
    env.sim.clear_faults();
    env.sim.set_latency(Duration::ZERO);
    organization_pages(env)
}

/// A listing read before is read with one round trip less: the pages it had last time (as
/// many as may be in flight at once) are asked for along with page 1. The first sync, with no
/// listing read before, asks for page 1 alone. Page 1 fails here, slowly, so what was asked
/// with it is in the simulator's log, and the failed re-sync changes no link.
#[test]
fn a_listing_read_before_is_asked_for_with_the_pages_it_had() {
    let env = paged_env(7);
    assert_eq!(
        pages_asked_while_page_1_fails(&env),
        [1],
        "nothing read before: page 1 alone"
    );

    let synced = sync_organizations(&env, PAGED);
    assert_eq!(synced.json()["linked"], 7, "{}", synced.stderr);
    let links = link_table(&env);

    assert_eq!(
        pages_asked_while_page_1_fails(&env),
        [1, 2, 3, 4],
        "four pages last time"
    );
    assert_eq!(link_table(&env), links);
}

/// A page asked for ahead that the listing no longer has is dropped unread, however it
/// answers: a failure does not fail the sync, and records on it are never taken (here they
/// would not add up to page 1's total, and the sync would fail as a partial list). A failed
/// one waiting for its retry when page 1 tells is not retried (the retry would come 3 s
/// later at the earliest). Every request made is counted and audited. The sync gives what
/// a sync of the shorter listing gives.
#[test]
fn pages_asked_for_ahead_beyond_the_listing_are_dropped_unread() {
    let env = paged_env(7);
    let synced = sync_organizations(&env, PAGED);
    assert_eq!(synced.json()["linked"], 7, "{}", synced.stderr);

    env.sim.set_dataset(customers(4));
    env.sim
        .add_fault(FaultRule::new(organization_page(3), Fault::status(500)));
    let stray = json!({
        "data": [organization_json(5)],
        "meta": {"current-page": 4, "next-page": null, "prev-page": 3,
                 "total-pages": 4, "total-count": 7},
    });
    env.sim
        .add_fault(FaultRule::new(organization_page(4), answered_with(stray)));
    // Page 1 answers last: what was asked with it has answered by then, and page 3 waits
    // for its retry.
    env.sim.add_fault(FaultRule::new(
        organization_page(1),
        Fault::Latency(Duration::from_millis(500)),
    ));
    env.sim.clear_requests();
    let retrying = "page_size = 2\nconcurrency = 4\nmax_attempts = 3\nretry_base_ms = 6000\nretry_max_ms = 6000";
    let audited_before = organization_audit_rows(&env);
    let resync = sync_organizations(&env, retrying);
    let counts = resync.json();
    assert_eq!(organization_pages(&env), [1, 2, 3, 4]);
    assert_eq!(counts["fetched"], 4, "{}", resync.stderr);
    assert_eq!(
        counts["requests"], 4,
        "the pages dropped were still requests"
    );
    assert_eq!(organization_audit_rows(&env) - audited_before, 4);
    assert_eq!(counts["removed_links"], 3);

    let fresh = paged_env(4);
    let expected = sync_organizations(&fresh, PAGED);
    assert_eq!(expected.json()["linked"], 4);
    assert_eq!(link_table(&env), link_table(&fresh));
}

/// A listing whose page 1 gives no page count (paged by `next-page` alone) is never asked
/// for ahead: the sync after it asks for page 1 alone, as the first did.
#[test]
fn a_listing_without_a_page_count_is_never_asked_for_ahead() {
    let env = paged_env(7);
    let first_page = json!({
        "data": [organization_json(1), organization_json(2)],
        "meta": {"current-page": 1, "next-page": 2, "prev-page": null, "total-count": 7},
    });
    env.sim.add_fault(FaultRule::new(
        organization_page(1),
        answered_with(first_page),
    ));
    let synced = sync_organizations(&env, PAGED);
    assert_eq!(synced.json()["linked"], 7, "{}", synced.stderr);

    assert_eq!(pages_asked_while_page_1_fails(&env), [1]);
}

/// When page 1 no longer reports a page count, nothing asked with it is used, whatever it
/// holds: the listing is followed by `next-page`, and page 2 asked for again.
#[test]
fn pages_asked_for_ahead_are_dropped_when_page_1_gives_no_count() {
    let env = paged_env(7);
    let synced = sync_organizations(&env, PAGED);
    assert_eq!(synced.json()["linked"], 7, "{}", synced.stderr);

    env.sim.set_dataset(customers(4));
    let page = |number: u64, data: [u64; 2], next: u64| {
        let body = json!({
            "data": data.map(organization_json),
            "meta": {"current-page": number, "next-page": next, "total-count": 4},
        });
        env.sim.add_fault(FaultRule::new(
            organization_page(number),
            answered_with(body),
        ));
    };
    page(1, [1, 2], 2);
    page(3, [5, 6], 4);
    env.sim.clear_requests();
    let resync = sync_organizations(&env, PAGED);
    let counts = resync.json();
    assert_eq!(organization_pages(&env), [1, 2, 2, 3, 4]);
    assert_eq!(counts["fetched"], 4, "{}", resync.stderr);
    assert_eq!(counts["removed_links"], 3);
    assert_eq!(counts["requests"], 5);
    let linked: Vec<String> = link_table(&env).into_iter().map(|(_, id, _)| id).collect();
    assert_eq!(linked, ["1", "2", "3", "4"]);
}

//! Hostile components against the host's own checks: the header allow-list, `;` in queries,
//! pages and listings the host will not hold, placements it will not believe, a guest that
//! never yields, and a conformance run that sees what a sync sees.

use crate::hostile::{
    Hostile, KEY, assert_audit_clean, assert_host_keeps_serving, assert_no_key_in_output,
    assert_refused, audit, env, http_rows, manifest_text,
};
use crate::util::{Env, Run};
use itglue_sim::{Dataset, Fault, FaultRule, Org, SimConfig, guests};
use serde_json::json;
use std::time::{Duration, Instant};

/// A hostile component under the standard hostile manifest with some `[limits]` lines
/// replaced (or added) by `limits`.
fn hostile_with<'a>(env: &'a Env, label: &str, wasm: &'static str, limits: &str) -> Hostile<'a> {
    let h = Hostile::new(env, label, wasm);
    let replaced: Vec<&str> = limits
        .lines()
        .filter_map(|l| l.split('=').next())
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .collect();
    let mut text = String::new();
    for line in manifest_text(&h.sha256, crate::hostile::CPU_MS).lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        if !replaced.contains(&key) {
            text.push_str(line);
            text.push('\n');
        }
    }
    text.push_str(limits);
    text.push('\n');
    std::fs::write(&h.manifest, text).expect("write manifest");
    h
}

/// Connects the hostile component to the simulator (its `test` needs no network).
fn connect(h: &Hostile<'_>) {
    let endpoint = h.env.sim.base_url();
    h.run_with(KEY, &["connect", "--endpoint", &endpoint], &[])
        .ok();
}

/// The number of rows in a table.
fn rows(env: &Env, table: &str) -> i64 {
    env.sqlite()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .expect("count")
}

/// The status and error of the newest sync run.
fn last_run(env: &Env) -> (String, String) {
    env.sqlite()
        .query_row(
            "SELECT status, coalesce(error, '') FROM sync_runs ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("a sync run")
}

#[test]
pub(crate) fn header_override() {
    let env = env();
    let h = Hostile::new(&env, "header-override", guests::HEADER_OVERRIDE);
    let run = h.test();
    // The guest swallowed every refusal and claimed success: the host fails the call anyway.
    assert_refused(&run, 5, "denied by rule header");
    assert!(
        run.stderr.contains("x-http-method-override"),
        "{}",
        run.stderr
    );
    assert_no_key_in_output(&run, KEY);

    let rows = audit(&env);
    assert_audit_clean(&rows, &h, KEY);
    let http = http_rows(&rows);
    assert_eq!(http.len(), 3, "one audit row per refused request: {http:?}");
    for row in &http {
        assert!(row.denied() && row.rule() == "header", "{row:?}");
        assert_eq!(row.method, "GET");
        assert_eq!(row.path, "/organizations");
    }
    let details: Vec<&str> = http
        .iter()
        .map(|r| r.detail.as_deref().unwrap_or(""))
        .collect();
    for name in ["x-http-method-override", "x-original-url", "x-rewrite-url"] {
        assert!(
            details.iter().any(|d| d.contains(name)),
            "{name}: {details:?}"
        );
    }
    assert_eq!(env.sim.request_count(), 0, "{:?}", env.sim.requests());
    assert_host_keeps_serving(&env);
}

#[test]
pub(crate) fn semicolon_query() {
    let env = env();
    let h = Hostile::new(&env, "semicolon-query", guests::SEMICOLON_QUERY);
    let run = h.test();
    assert_refused(&run, 5, "denied by rule query");
    assert!(run.stderr.contains("';'"), "{}", run.stderr);

    let rows = audit(&env);
    assert_audit_clean(&rows, &h, KEY);
    let http = http_rows(&rows);
    assert_eq!(http.len(), 1, "{http:?}");
    assert!(http[0].denied() && http[0].rule() == "query", "{http:?}");
    assert_eq!(env.sim.request_count(), 0, "{:?}", env.sim.requests());
    assert_host_keeps_serving(&env);
}

#[test]
pub(crate) fn page_flood() {
    // A page of 100,000 records when pages of 7 were asked for.
    let env = env();
    env.import(
        "id,name\nc1,Org 1\n",
        "id,client_id,name,hostname,serial_number,mac_address\n",
    );
    let h = hostile_with(&env, "page-flood", guests::PAGE_FLOOD, "page_size = 7");
    connect(&h);
    let run = h.run_with(KEY, &["sync", "organizations"], &[]);
    assert_refused(&run, 5, "100000 records for page 1");
    assert!(run.stderr.contains("page_size"), "{}", run.stderr);
    assert_eq!(rows(&env, "links"), 0);
    let (status, error) = last_run(&env);
    assert_eq!(status, "failed");
    assert!(error.contains("page_size"), "{error}");

    // Nine names of 1 MiB each: more text than the responses of one call may carry.
    let env = crate::hostile::env();
    env.import(
        "id,name\nc1,Org 1\n",
        "id,client_id,name,hostname,serial_number,mac_address\n",
    );
    let h = hostile_with(&env, "page-flood", guests::PAGE_FLOOD, "page_size = 9");
    connect(&h);
    let run = h.run_with(KEY, &["sync", "organizations"], &[]);
    assert_refused(&run, 5, "bytes of text");
    assert!(run.stderr.contains("max_response_bytes"), "{}", run.stderr);
    assert_eq!(rows(&env, "links"), 0);
    assert_eq!(last_run(&env).0, "failed");

    // `check` pages the same component under the same checks, and fails it.
    let manifest = h.manifest.to_str().expect("utf-8 path");
    let endpoint = env.sim.base_url();
    let check = env.run_full(
        &[
            "check",
            h.wasm,
            "--manifest",
            manifest,
            "--endpoint",
            &endpoint,
            "--json",
        ],
        &[(crate::hostile::KEY_ENV, KEY)],
        None,
    );
    assert_eq!(
        check.code, 5,
        "stdout: {}\nstderr: {}",
        check.stdout, check.stderr
    );
    let report: serde_json::Value = serde_json::from_str(&check.stdout).expect("check --json");
    let paging = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|r| r["check"] == "paging: organizations to completion")
        .expect("the paging row")
        .clone();
    assert_eq!(paging["result"], "fail", "{paging}");
    assert!(
        paging["detail"]
            .as_str()
            .unwrap_or("")
            .contains("bytes of text"),
        "{paging}"
    );

    // Full pages forever, with no totals: the bound on the whole listing stops it.
    let env = crate::hostile::env();
    env.import(
        "id,name\nc1,Org 1\n",
        "id,client_id,name,hostname,serial_number,mac_address\n",
    );
    let h = hostile_with(
        &env,
        "page-flood",
        guests::PAGE_FLOOD,
        "page_size = 10\nmax_listing_records = 50",
    );
    connect(&h);
    let run = h.run_with(KEY, &["sync", "organizations"], &[]);
    assert_refused(&run, 5, "max_listing_records");
    assert!(
        run.stderr.contains("more than 50 records"),
        "{}",
        run.stderr
    );
    assert_eq!(rows(&env, "links"), 0);
    assert_eq!(rows(&env, "unplaced"), 0);
    let (status, _) = last_run(&env);
    assert_eq!(status, "failed");
    assert_host_keeps_serving(&env);
}

#[test]
pub(crate) fn bad_evidence() {
    const CONFIGS: &str =
        "id,client_id,name,hostname,serial_number,mac_address\nk1,c1,server,srv01,,\n";
    // An organization linked on hostname evidence.
    let env = env();
    env.import("id,name\nc1,hostname-on-org\n", CONFIGS);
    let h = Hostile::new(&env, "bad-evidence", guests::BAD_EVIDENCE);
    connect(&h);
    let run = h.run_with(KEY, &["sync", "organizations"], &[]);
    assert_refused(
        &run,
        5,
        "evidence hostname, which never links organization records",
    );
    assert_eq!(rows(&env, "links"), 0);
    assert_eq!(last_run(&env).0, "failed");

    // 100,000 candidates and suggestions.
    let env = crate::hostile::env();
    env.import("id,name\nc1,many-candidates\n", CONFIGS);
    let h = Hostile::new(&env, "bad-evidence", guests::BAD_EVIDENCE);
    connect(&h);
    let run = h.run_with(KEY, &["sync", "organizations"], &[]);
    assert_refused(&run, 5, "100000 candidates and 100000 suggestions");
    assert_eq!(rows(&env, "unplaced"), 0);

    // An honest organization link, then a configuration linked on a serial number that
    // neither record carries.
    let env = crate::hostile::env();
    env.import("id,name\nc1,Acme\n", CONFIGS);
    let h = Hostile::new(&env, "bad-evidence", guests::BAD_EVIDENCE);
    connect(&h);
    let organizations = h.run_with(KEY, &["sync", "organizations", "--json"], &[]);
    assert_eq!(
        organizations.json()["linked"],
        1,
        "{}",
        organizations.stdout
    );
    let run = h.run_with(KEY, &["sync", "configurations"], &[]);
    assert_refused(
        &run,
        5,
        "evidence serial, which the records do not agree on",
    );
    let configuration_links: i64 = env
        .sqlite()
        .query_row(
            "SELECT count(*) FROM links WHERE kind = 'configuration'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(configuration_links, 0);
    assert_eq!(last_run(&env).0, "failed");
}

/// A guest that spins without ever waiting on I/O is stopped by the call's wall clock even
/// when its CPU limit is far away: the epoch callback yields, so the host's timers fire.
#[test]
fn spin_is_stopped_by_the_call_timeout() {
    let env = env();
    let h = hostile_with(
        &env,
        "spin",
        guests::SPIN,
        "cpu_ms = 600000\ncall_timeout_ms = 1500",
    );
    let started = Instant::now();
    let run = h.test();
    let took = started.elapsed();
    assert_refused(&run, 5, "did not finish within 1.5 s");
    assert!(run.stderr.contains("call_timeout_ms"), "{}", run.stderr);
    // Far from the 600 s of CPU the manifest allows (a loose bound: this is not a timing test).
    assert!(took < Duration::from_secs(120), "took {took:?}");
    assert_host_keeps_serving(&env);
}

#[test]
pub(crate) fn two_faced() {
    let env = env();
    let h = Hostile::new(&env, "two-faced", guests::TWO_FACED);
    // In a real run, with storage, it asks for /passwords.
    let run = h.test();
    assert_refused(&run, 5, "denied by rule path");
    assert!(run.stderr.contains("/passwords"), "{}", run.stderr);

    // `check` gives it a real (temporary) store, so it sees the same component.
    env.sim.clear_requests();
    let manifest = h.manifest.to_str().expect("utf-8 path");
    let endpoint = env.sim.base_url();
    let check = env.run_full(
        &[
            "check",
            h.wasm,
            "--manifest",
            manifest,
            "--endpoint",
            &endpoint,
            "--json",
        ],
        &[(crate::hostile::KEY_ENV, KEY)],
        None,
    );
    assert_eq!(
        check.code, 5,
        "stdout: {}\nstderr: {}",
        check.stdout, check.stderr
    );
    let report: serde_json::Value = serde_json::from_str(&check.stdout).expect("check --json");
    assert_eq!(report["passed"], false);
    let test_row = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|r| r["check"] == "test against the endpoint")
        .expect("the test row")
        .clone();
    assert_eq!(test_row["result"], "fail", "{test_row}");
    assert!(
        test_row["detail"]
            .as_str()
            .unwrap_or("")
            .contains("/passwords"),
        "{test_row}"
    );
    assert!(
        env.sim.requests().iter().all(|r| r.path != "/passwords"),
        "{:?}",
        env.sim.requests()
    );
    assert_no_key_in_output(&check, KEY);
}

/// Ids are checked when a page is read: an id with a line break, an overlong id, and a
/// configuration whose organization id is empty each become an `invalid-record` row, and
/// the output keeps one line per record.
#[test]
fn ids_are_validated_when_a_page_is_read() {
    let long = "9".repeat(300);
    let ds = Dataset {
        organizations: vec![Org::new(1, "Acme")],
        raw_organizations: vec![
            json!({"id": "2\nforged 3 -> c1", "type": "organizations", "attributes": {"name": "Newline"}}),
            json!({"id": long, "type": "organizations", "attributes": {"name": "Long"}}),
        ],
        ..Dataset::default()
    };
    let env = Env::with(SimConfig::with_dataset(ds));
    env.connect();
    env.import(
        "id,name\nc1,Acme\n",
        "id,client_id,name,hostname,serial_number,mac_address\n",
    );
    let summary = env.sync("organizations");
    assert_eq!(summary["fetched"], 3, "{summary}");
    assert_eq!(summary["errored"], 2, "{summary}");
    assert_eq!(summary["linked"], 1, "{summary}");
    let unplaced = env.run(&["itglue", "unplaced", "--json"]).json();
    let invalid: Vec<&serde_json::Value> = unplaced
        .as_array()
        .expect("a list")
        .iter()
        .filter(|u| u["reason"] == "invalid-record")
        .collect();
    assert_eq!(invalid.len(), 2, "{unplaced}");
    assert!(
        invalid
            .iter()
            .any(|u| u["itglue_id"] == "2\nforged 3 -> c1"),
        "the id is kept for the admin: {unplaced}"
    );
    assert!(
        invalid
            .iter()
            .all(|u| u["itglue_id"].as_str().is_some_and(|id| id.len() <= 255)),
        "{unplaced}"
    );
    let links = env.run(&["itglue", "links", "--json"]).json();
    assert_eq!(links.as_array().map(Vec::len), Some(1), "{links}");
    let human: Run = env.run(&["itglue", "unplaced"]);
    assert!(
        !human
            .ok()
            .lines()
            .any(|l| l.trim_start().starts_with("forged")),
        "a line break in an id forged a row: {}",
        human.stdout
    );
}

/// A server (or proxy) that echoes the credential in response headers: the component never
/// sees those headers, so it cannot read the key, store it or send it on.
#[test]
pub(crate) fn header_echo() {
    let env = env();
    env.sim.add_fault(FaultRule::always(Fault::EchoCredential));
    let h = Hostile::new(&env, "header-echo", guests::HEADER_ECHO);
    let run = h.test();
    // The guest reports what it caught: nothing.
    run.fails(5, "status=200 caught=");
    assert!(
        !run.stderr.contains("caught=x")
            && !run.stderr.contains("caught=a")
            && !run.stderr.contains("caught=s"),
        "{}",
        run.stderr
    );
    assert_no_key_in_output(&run, KEY);
    let requests = env.sim.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].status, 200);
    let stored: i64 = env
        .sqlite()
        .query_row(
            "SELECT count(*) FROM kv WHERE key LIKE 'caught-%'",
            [],
            |r| r.get(0),
        )
        .expect("kv");
    assert_eq!(
        stored, 0,
        "the component stored a header that carries the key"
    );
    for row in audit(&env) {
        assert!(!row.text().contains(KEY), "{row:?}");
    }
}

/// Allowed storage operations are bounded per call too (each is audited): the 1001st is
/// refused and fails the call, so one call cannot fill the audit table.
#[test]
pub(crate) fn storage_loop() {
    let env = env();
    let h = Hostile::new(&env, "storage-loop", guests::STORAGE_LOOP);
    let run = h.test();
    assert_refused(&run, 5, "denied by rule storage-ops");
    let rows = audit(&env);
    assert_audit_clean(&rows, &h, KEY);
    let storage: Vec<_> = rows.iter().filter(|r| r.capability == "storage").collect();
    let allowed = storage.iter().filter(|r| !r.denied()).count();
    assert_eq!(
        allowed, 1000,
        "one row per allowed operation, up to the bound"
    );
    assert!(
        storage
            .iter()
            .any(|r| r.denied() && r.rule() == "storage-ops"),
        "{:?}",
        storage.last()
    );
    assert!(storage.len() <= 1002, "{} storage rows", storage.len());
    assert_host_keeps_serving(&env);
}

/// The database failing under a storage call is the host's failure: exit 1, not the API's
/// (exit 4, after retries) nor the connector's.
#[test]
fn a_storage_failure_is_the_hosts() {
    let env = env();
    let h = Hostile::new(&env, "storage-flood", guests::STORAGE_FLOOD);
    // The database exists (an import made it); its storage table is gone.
    env.import(
        "id,name\nc1,Acme\n",
        "id,client_id,name,hostname,serial_number,mac_address\n",
    );
    env.sqlite()
        .execute_batch("DROP TABLE kv")
        .expect("drop kv");
    let run = h.test();
    run.fails(1, "storage in the database failed");
    assert_eq!(env.sim.request_count(), 0);
}

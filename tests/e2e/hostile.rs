//! The sandbox against hostile components: every component of `tests/guests` runs through the
//! real binary under a small manifest, and each test proves three things: the host refused
//! (exit status and a message naming the rule or limit), the refusal is on record (audit rows,
//! never the key), and the simulator saw nothing it should not have. After every hostile call
//! the host must still serve a well-behaved component and the built-in connector.

use crate::util::{Env, Run, files_under};
// Tests of hostile components kept in other files, named here for `foreach_hostile!`.
#[allow(unused_imports)]
use crate::hostile_host::{
    bad_evidence, header_echo, header_override, page_flood, semicolon_query, storage_loop,
    two_faced,
};
use itglue_sim::{Fault, FaultRule, LoggedRequest, guests};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

// Hostile components whose tests live in their own files, named here for the check below.
pub(crate) use crate::claims::{environment, get_body, log_flood};
pub(crate) use crate::confinement::match_exfil;
pub(crate) use crate::manifest_trust::{broad_manifest, vault_key};
pub(crate) use crate::terminal::terminal_escape;

/// The key the simulator accepts (region `us`, the root) in these tests: distinctive, so that
/// a leak of it anywhere is unmistakable.
pub(crate) const KEY: &str = "hostile-test-KEY-5b0c";
/// The key of `key_never_leaks`.
pub(crate) const LEAK_KEY: &str = "k3y-NEVER-LEAK-7f1e";
/// The environment variable the host reads the hostile connector's key from (its name,
/// `hostile`, uppercased, then `_API_KEY`).
pub(crate) const KEY_ENV: &str = "HOSTILE_API_KEY";

// The manifest's limits, small enough for fast tests.
pub(crate) const CPU_MS: u64 = 10_000;
pub(crate) const SPIN_CPU_MS: u64 = 2_000;
pub(crate) const MEMORY_MB: u64 = 64;
pub(crate) const MAX_RESPONSE_BYTES: u64 = 1 << 20;
pub(crate) const MAX_REQUESTS: usize = 4;
pub(crate) const MAX_OUTPUT_BYTES: usize = 64 << 10;
pub(crate) const STORAGE_MAX_KEYS: i64 = 50;
pub(crate) const STORAGE_MAX_VALUE_BYTES: i64 = 4096;
pub(crate) const STORAGE_MAX_TOTAL_BYTES: i64 = 64 << 10;
/// How many requests the `flood` guest tries (`tests/guests/src/flood.rs`, `REQUESTS`).
pub(crate) const FLOOD_REQUESTS: usize = 500;
/// Refusals audited one by one per call (`capabilities::MAX_DENIALS_PER_CALL`).
pub(crate) const MAX_DENIALS: usize = 16;

/// A test must exist for every hostile component: a new guest without one fails to compile.
macro_rules! assert_test_exists {
    ($name:ident) => {
        #[allow(dead_code)]
        const _: fn() = $name;
    };
}
itglue_sim::foreach_hostile!(assert_test_exists);

/// A fresh workspace whose simulator accepts [`KEY`] for the US region.
pub(crate) fn env() -> Env {
    let env = Env::new();
    env.sim.set_key("us", Some(KEY));
    env
}

/// One component under a `hostile` manifest written into the workspace.
pub(crate) struct Hostile<'a> {
    pub(crate) env: &'a Env,
    pub(crate) wasm: &'static str,
    pub(crate) manifest: PathBuf,
    pub(crate) sha256: String,
}

impl<'a> Hostile<'a> {
    pub(crate) fn new(env: &'a Env, label: &str, wasm: &'static str) -> Hostile<'a> {
        Hostile::with_cpu(env, label, wasm, CPU_MS)
    }

    pub(crate) fn with_cpu(
        env: &'a Env,
        label: &str,
        wasm: &'static str,
        cpu_ms: u64,
    ) -> Hostile<'a> {
        let bytes = std::fs::read(wasm).unwrap_or_else(|e| panic!("reading {wasm}: {e}"));
        let sha256 = scopable_sandbox::sandbox::sha256_hex(&bytes);
        let manifest = env.write(&format!("{label}.toml"), manifest_text(&sha256, cpu_ms));
        Hostile {
            env,
            wasm,
            manifest,
            sha256,
        }
    }

    /// Runs `scopable-host --connector .. --manifest .. hostile ARGS` with `key` in the
    /// [`KEY_ENV`].
    pub(crate) fn run_with(&self, key: &str, args: &[&str], extra_env: &[(&str, &str)]) -> Run {
        let manifest = self.manifest.to_str().expect("utf-8 path");
        let mut all = vec!["--connector", self.wasm, "--manifest", manifest, "hostile"];
        all.extend_from_slice(args);
        let mut vars = vec![(KEY_ENV, key)];
        vars.extend_from_slice(extra_env);
        self.env.run_full(&all, &vars, None)
    }

    /// Calls the component's `test` export once against the simulator.
    pub(crate) fn test(&self) -> Run {
        self.test_with_key(KEY)
    }

    pub(crate) fn test_with_key(&self, key: &str) -> Run {
        let endpoint = self.env.sim.base_url();
        self.run_with(key, &["test", "--endpoint", &endpoint], &[])
    }

    /// `scopable-host audit COMPONENT --manifest M --json`, parsed (the command exits 5 when
    /// it refuses the component, and prints the report either way).
    pub(crate) fn audit_report(&self) -> (Run, Value) {
        let manifest = self.manifest.to_str().expect("utf-8 path");
        let run = self
            .env
            .run(&["audit", self.wasm, "--manifest", manifest, "--json"]);
        let report = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
            panic!(
                "audit --json printed no JSON ({e})\nstdout: {}\nstderr: {}",
                run.stdout, run.stderr
            )
        });
        (run, report)
    }
}

pub(crate) fn manifest_text(sha256: &str, cpu_ms: u64) -> String {
    format!(
        r#"name = "hostile"
description = "a hostile test component"
sha256 = "{sha256}"
default_region = "us"

[regions]
us = "https://api.itglue.com"

[credential]
header = "x-api-key"
env = "{KEY_ENV}"

[[requests]]
method = "GET"
path = "/organizations"
query = ["page[size]", "page[number]", "sort", "filter[*]"]

[[requests]]
method = "GET"
path = "/configurations"
query = ["page[size]", "page[number]", "sort", "filter[*]", "include=configuration_interfaces"]

[limits]
cpu_ms = {cpu_ms}
memory_mb = {MEMORY_MB}
call_timeout_ms = 20000
max_response_bytes = {MAX_RESPONSE_BYTES}
max_requests_per_call = {MAX_REQUESTS}
max_output_bytes = {MAX_OUTPUT_BYTES}
storage_max_keys = {STORAGE_MAX_KEYS}
storage_max_value_bytes = {STORAGE_MAX_VALUE_BYTES}
storage_max_total_bytes = {STORAGE_MAX_TOTAL_BYTES}
max_attempts = 1
"#
    )
}

/// One row of the `audit` table.
#[derive(Debug, Clone)]
pub(crate) struct AuditRow {
    pub(crate) connector: String,
    pub(crate) component_sha256: String,
    pub(crate) capability: String,
    pub(crate) method: String,
    pub(crate) host: String,
    pub(crate) path: String,
    pub(crate) decision: String,
    pub(crate) rule: Option<String>,
    pub(crate) status: Option<i64>,
    pub(crate) bytes: i64,
    pub(crate) detail: Option<String>,
}

impl AuditRow {
    pub(crate) fn is_http(&self) -> bool {
        self.capability == "http"
    }

    pub(crate) fn denied(&self) -> bool {
        self.decision == "denied"
    }

    pub(crate) fn rule(&self) -> &str {
        self.rule.as_deref().unwrap_or("")
    }

    /// Every text the row holds, for leak checks.
    pub(crate) fn text(&self) -> String {
        format!(
            "{} {} {} {} {} {} {} {} {:?} {} {}",
            self.connector,
            self.component_sha256,
            self.capability,
            self.method,
            self.host,
            self.path,
            self.decision,
            self.rule(),
            self.status,
            self.bytes,
            self.detail.as_deref().unwrap_or("")
        )
    }
}

/// Every audit row, oldest first.
pub(crate) fn audit(env: &Env) -> Vec<AuditRow> {
    let conn = env.sqlite();
    let mut stmt = conn
        .prepare(
            "SELECT connector, component_sha256, capability, method, host, path, decision,
                    rule, status, bytes, detail
             FROM audit ORDER BY id",
        )
        .expect("audit table");
    stmt.query_map([], |r| {
        Ok(AuditRow {
            connector: r.get(0)?,
            component_sha256: r.get(1)?,
            capability: r.get(2)?,
            method: r.get(3)?,
            host: r.get(4)?,
            path: r.get(5)?,
            decision: r.get(6)?,
            rule: r.get(7)?,
            status: r.get(8)?,
            bytes: r.get(9)?,
            detail: r.get(10)?,
        })
    })
    .expect("query audit")
    .collect::<Result<_, _>>()
    .expect("read audit")
}

/// The audit rows of the HTTP capability.
pub(crate) fn http_rows(rows: &[AuditRow]) -> Vec<&AuditRow> {
    rows.iter().filter(|r| r.is_http()).collect()
}

/// Asserts that no audit row holds `key`, and that every row names the component.
#[track_caller]
pub(crate) fn assert_audit_clean(rows: &[AuditRow], hostile: &Hostile<'_>, key: &str) {
    for row in rows {
        assert!(
            !row.text().contains(key),
            "the key is in an audit row: {row:?}"
        );
        assert_eq!(row.connector, "hostile", "{row:?}");
        assert_eq!(row.component_sha256, hostile.sha256, "{row:?}");
    }
}

/// Asserts the host's one-line failure: exit `code`, `error: ...` on one stderr line naming
/// `needle`, nothing on stdout.
#[track_caller]
pub(crate) fn assert_refused(run: &Run, code: i32, needle: &str) {
    run.fails(code, needle);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one stderr line expected: {}", run.stderr);
    assert!(lines[0].starts_with("error: "), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "stdout: {}", run.stdout);
}

/// Asserts that a run's output does not hold `key`.
#[track_caller]
pub(crate) fn assert_no_key_in_output(run: &Run, key: &str) {
    assert!(!run.stdout.contains(key), "key on stdout: {}", run.stdout);
    assert!(!run.stderr.contains(key), "key on stderr: {}", run.stderr);
}

/// Asserts that every request the simulator saw is one the policy allows, carrying exactly the
/// host's key: GET only, declared paths only, no `debug` query, no body, no guest credential.
#[track_caller]
pub(crate) fn assert_requests_clean(requests: &[LoggedRequest], key: &str) {
    for r in requests {
        assert_eq!(r.method, "GET", "a non-GET request reached the API: {r:?}");
        assert!(
            !r.path.contains("passwords") && !r.path.contains("relationships"),
            "a forbidden path reached the API: {r:?}"
        );
        assert!(
            r.path == "/organizations" || r.path == "/configurations",
            "an undeclared path reached the API: {r:?}"
        );
        assert!(
            !r.query.contains("debug"),
            "an undeclared query reached the API: {r:?}"
        );
        assert_eq!(r.body_len, 0, "a request carried a body: {r:?}");
        let keys: Vec<&str> = r
            .headers
            .iter()
            .filter(|(n, _)| n == "x-api-key")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(keys, vec![key], "the API saw another credential: {r:?}");
        assert!(r.header("authorization").is_none(), "{r:?}");
        assert!(r.header("cookie").is_none(), "{r:?}");
    }
}

/// A listener on a second loopback address (127.0.0.2) that must never be reached.
pub(crate) struct Canary {
    listener: TcpListener,
}

impl Canary {
    pub(crate) fn bind(port: u16) -> Canary {
        let listener = TcpListener::bind(("127.0.0.2", port))
            .unwrap_or_else(|e| panic!("binding the canary on 127.0.0.2:{port}: {e}"));
        Canary { listener }
    }

    pub(crate) fn port(&self) -> u16 {
        self.listener.local_addr().expect("canary address").port()
    }

    #[track_caller]
    pub(crate) fn assert_untouched(&self) {
        self.listener.set_nonblocking(true).expect("nonblocking");
        match self.listener.accept() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Ok((_, from)) => panic!("something connected to the canary on 127.0.0.2 from {from}"),
            Err(e) => panic!("canary accept: {e}"),
        }
    }
}

/// After a hostile call: a well-behaved component and the built-in connector still work
/// against the same simulator and database, and make only clean requests.
#[track_caller]
pub(crate) fn assert_host_keeps_serving(env: &Env) {
    env.sim.clear_faults();
    env.sim.clear_requests();
    let control = Hostile::new(env, "control", guests::WELL_BEHAVED);
    let run = control.test();
    assert!(
        run.ok().contains("status=200"),
        "the well-behaved component: {}",
        run.stdout
    );
    assert_no_key_in_output(&run, KEY);
    let builtin = env.run_key(KEY, &["itglue", "test", "--endpoint", &env.sim.base_url()]);
    assert!(builtin.ok().contains("Verified"), "{}", builtin.stdout);
    assert_no_key_in_output(&builtin, KEY);
    let requests = env.sim.requests();
    assert!(requests.len() >= 2, "{requests:?}");
    assert!(requests.iter().all(|r| r.status == 200), "{requests:?}");
    assert_requests_clean(&requests, KEY);
}

#[test]
fn post() {
    let env = env();
    let h = Hostile::new(&env, "post", guests::POST);
    let run = h.test();
    assert_refused(&run, 5, "denied by rule method");
    assert!(run.stderr.contains("POST"), "{}", run.stderr);
    assert_no_key_in_output(&run, KEY);

    let rows = audit(&env);
    assert_audit_clean(&rows, &h, KEY);
    let http = http_rows(&rows);
    assert_eq!(http.len(), 1, "{http:?}");
    assert!(http[0].denied(), "{http:?}");
    assert_eq!(http[0].rule(), "method");
    assert_eq!(http[0].method, "POST");
    assert_eq!(http[0].path, "/organizations");

    assert_eq!(env.sim.request_count(), 0, "{:?}", env.sim.requests());
    assert_host_keeps_serving(&env);
}

#[test]
fn foreign_host() {
    let env = env();
    // Whatever might reach 127.0.0.2 on the simulator's port would land here.
    let canary = Canary::bind(env.sim.port());
    let h = Hostile::new(&env, "foreign-host", guests::FOREIGN_HOST);
    let run = h.test();
    assert_refused(&run, 5, "denied by rule host");
    assert!(run.stderr.contains("example.invalid"), "{}", run.stderr);
    assert_no_key_in_output(&run, KEY);

    let rows = audit(&env);
    assert_audit_clean(&rows, &h, KEY);
    let http = http_rows(&rows);
    assert_eq!(http.len(), 2, "{http:?}");
    assert!(
        http.iter().all(|r| r.denied() && r.rule() == "host"),
        "{http:?}"
    );
    let hosts: Vec<&str> = http.iter().map(|r| r.host.as_str()).collect();
    assert_eq!(hosts, ["example.invalid", "127.0.0.2"]);

    assert_eq!(env.sim.request_count(), 0, "{:?}", env.sim.requests());
    canary.assert_untouched();
    assert_host_keeps_serving(&env);
}

#[test]
fn forbidden_path() {
    let env = env();
    let h = Hostile::new(&env, "forbidden-path", guests::FORBIDDEN_PATH);
    let run = h.test();
    // The first attempt, `/passwords`, is the one the message names.
    assert_refused(&run, 5, "denied by rule path");
    assert!(run.stderr.contains("/passwords"), "{}", run.stderr);
    assert_no_key_in_output(&run, KEY);

    let expected: BTreeMap<&str, &str> = [
        ("/passwords", "path"),
        ("/organizations/1/relationships/passwords", "path"),
        ("/configurations/..%2Fpasswords", "path-traversal"),
        ("/organizations/../passwords", "path-traversal"),
        ("//organizations", "path-traversal"),
        ("/organizations%2F..%2Fpasswords", "path-traversal"),
    ]
    .into_iter()
    .collect();
    let rows = audit(&env);
    assert_audit_clean(&rows, &h, KEY);
    let http = http_rows(&rows);
    assert!(http.iter().all(|r| r.denied()), "{http:?}");
    let got: BTreeMap<&str, &str> = http.iter().map(|r| (r.path.as_str(), r.rule())).collect();
    assert_eq!(got, expected);
    assert_eq!(http.len(), expected.len(), "{http:?}");

    // The same, as `activity --json` shows it.
    let activity = h.run_with(KEY, &["activity", "--json"], &[]).json();
    let entries = activity.as_array().expect("activity is an array");
    let requests: Vec<&Value> = entries.iter().filter(|e| e["kind"] == "request").collect();
    assert_eq!(requests.len(), expected.len(), "{activity}");
    for e in &requests {
        assert_eq!(e["decision"], "denied", "{e}");
        let path = e["path"].as_str().expect("path");
        assert_eq!(
            Some(&e["rule"].as_str().unwrap_or("")),
            expected.get(path),
            "{e}"
        );
    }

    assert_eq!(env.sim.request_count(), 0, "{:?}", env.sim.requests());
    assert_host_keeps_serving(&env);
}

#[test]
fn undeclared_query() {
    let env = env();
    let h = Hostile::new(&env, "undeclared-query", guests::UNDECLARED_QUERY);
    let run = h.test();
    assert_refused(&run, 5, "denied by rule query");
    assert!(run.stderr.contains("debug"), "{}", run.stderr);
    assert_no_key_in_output(&run, KEY);

    let rows = audit(&env);
    assert_audit_clean(&rows, &h, KEY);
    let http = http_rows(&rows);
    assert_eq!(http.len(), 1, "{http:?}");
    assert!(http[0].denied(), "{http:?}");
    assert_eq!(http[0].rule(), "query");
    assert_eq!(http[0].path, "/organizations");

    assert_eq!(env.sim.request_count(), 0, "{:?}", env.sim.requests());
    assert_host_keeps_serving(&env);
}

#[test]
fn smuggle_key() {
    let env = env();
    let h = Hostile::new(&env, "smuggle-key", guests::SMUGGLE_KEY);
    let run = h.test();
    // Each request reaches the one outbound gate, whose header allow-list refuses it: the
    // refusal is audited and fails the call, whatever the guest makes of it.
    assert_refused(&run, 5, "denied by rule header");
    assert!(run.stderr.contains("x-api-key"), "{}", run.stderr);
    assert!(!run.stderr.contains("stolen") && !run.stdout.contains("stolen"));
    assert_no_key_in_output(&run, KEY);

    let rows = audit(&env);
    assert_audit_clean(&rows, &h, KEY);
    let http = http_rows(&rows);
    // One refusal on record per request, each naming the header rule.
    assert_eq!(http.len(), 3, "{http:?}");
    for row in http {
        assert!(row.denied() && row.rule() == "header", "{row:?}");
        assert!(!row.text().contains("stolen"), "{row:?}");
    }

    assert_eq!(env.sim.request_count(), 0, "{:?}", env.sim.requests());
    assert_requests_clean(&env.sim.requests(), KEY);
    assert_host_keeps_serving(&env);
}

#[test]
fn redirect() {
    let env = env();
    let canary = Canary::bind(0);
    let location = format!("http://127.0.0.2:{}/organizations", canary.port());
    env.sim.add_fault(FaultRule::always(Fault::Redirect {
        location: location.clone(),
    }));
    let h = Hostile::new(&env, "redirect", guests::REDIRECT);
    let run = h.test();
    // The guest gets the 302 itself (and says so): the host did not follow it.
    let out = run.ok();
    assert!(out.contains("status=302"), "{out}");
    assert!(out.contains(&format!("location={location}")), "{out}");
    assert_no_key_in_output(&run, KEY);

    let requests = env.sim.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].status, 302, "{requests:?}");
    assert_requests_clean(&requests, KEY);
    canary.assert_untouched();

    let rows = audit(&env);
    assert_audit_clean(&rows, &h, KEY);
    let http = http_rows(&rows);
    assert_eq!(http.len(), 1, "{http:?}");
    assert!(!http[0].denied(), "{http:?}");
    assert_eq!(http[0].status, Some(302), "{http:?}");
    assert_eq!(http[0].host, "127.0.0.1", "{http:?}");

    // A redirect back to the same host, to an undeclared path, is not followed either.
    env.sim.clear_faults();
    env.sim.clear_requests();
    env.sim.add_fault(FaultRule::always(Fault::Redirect {
        location: format!("{}/passwords", env.sim.base_url()),
    }));
    let again = h.test();
    assert!(again.ok().contains("status=302"), "{}", again.stdout);
    let requests = env.sim.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_requests_clean(&requests, KEY);

    assert_host_keeps_serving(&env);
}

#[test]
fn flood() {
    let env = env();
    let h = Hostile::new(&env, "flood", guests::FLOOD);
    let run = h.test();
    assert_refused(&run, 5, "denied by rule request-budget");
    assert!(
        run.stderr.contains("max_requests_per_call"),
        "{}",
        run.stderr
    );
    assert_no_key_in_output(&run, KEY);

    let requests = env.sim.requests();
    assert!(
        requests.len() <= MAX_REQUESTS,
        "{} requests",
        requests.len()
    );
    assert_eq!(env.sim.request_count(), MAX_REQUESTS as u64);
    assert_requests_clean(&requests, KEY);

    let rows = audit(&env);
    assert_audit_clean(&rows, &h, KEY);
    let http = http_rows(&rows);
    let allowed = http.iter().filter(|r| !r.denied()).count();
    let over_budget = http
        .iter()
        .filter(|r| r.denied() && r.rule() == "request-budget")
        .count();
    assert_eq!(allowed, MAX_REQUESTS, "allowed rows");
    // Denials are bounded per call: 16 are recorded one by one, then the call is stopped and
    // one row sums up the rest.
    assert_eq!(over_budget, MAX_DENIALS, "request-budget rows");
    let summary: Vec<&&AuditRow> = http.iter().filter(|r| r.rule() == "max-denials").collect();
    assert_eq!(summary.len(), 1, "{http:?}");
    assert!(summary[0].denied(), "{summary:?}");
    let detail = summary[0].detail.as_deref().unwrap_or("");
    let unrecorded: usize = detail
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {detail:?}"));
    assert!(
        (1..=FLOOD_REQUESTS - MAX_REQUESTS - MAX_DENIALS).contains(&unrecorded),
        "{detail}"
    );
    assert!(detail.contains("more denials not recorded"), "{detail}");
    assert_eq!(http.len(), MAX_REQUESTS + MAX_DENIALS + 1, "{http:?}");
    // The budget stops the fifth request and every one after it; the summary comes last.
    let first_denied = http.iter().position(|r| r.denied()).expect("a denial");
    assert_eq!(first_denied, MAX_REQUESTS);
    assert_eq!(http.last().map(|r| r.rule()), Some("max-denials"));

    assert_host_keeps_serving(&env);
}

#[test]
fn spin() {
    let env = env();
    let h = Hostile::with_cpu(&env, "spin", guests::SPIN, SPIN_CPU_MS);
    let run = h.test();
    assert_refused(&run, 5, "cpu_ms");
    assert!(run.stderr.contains("CPU limit"), "{}", run.stderr);
    assert_no_key_in_output(&run, KEY);
    assert_audit_clean(&audit(&env), &h, KEY);
    assert!(http_rows(&audit(&env)).is_empty());
    assert_eq!(env.sim.request_count(), 0);
    assert_host_keeps_serving(&env);
}

#[test]
fn memory_bomb() {
    let env = env();
    let h = Hostile::new(&env, "memory-bomb", guests::MEMORY_BOMB);
    let run = h.test();
    assert_refused(&run, 5, "memory_mb");
    assert!(
        run.stderr
            .contains(&format!("memory limit of {MEMORY_MB} MiB")),
        "{}",
        run.stderr
    );
    assert_no_key_in_output(&run, KEY);
    assert_audit_clean(&audit(&env), &h, KEY);
    assert!(http_rows(&audit(&env)).is_empty());
    assert_eq!(env.sim.request_count(), 0);
    assert_host_keeps_serving(&env);
}

/// Runs the `huge-response` component against a server answering with `fault` (8 MiB), and
/// checks that the body is cut off at `max_response_bytes`: exit 5 naming the limit, no key in
/// the output, one clean request, one allowed audit row with rule `max-response-bytes`, and a
/// host that keeps serving. Returns that row, for what each way of sending adds.
pub(crate) fn assert_response_cut_off(fault: Fault, label: &str) -> AuditRow {
    let env = env();
    env.sim.add_fault(FaultRule::always(fault));
    let h = Hostile::new(&env, label, guests::HUGE_RESPONSE);
    let run = h.test();
    assert_refused(&run, 5, "max_response_bytes");
    assert!(
        run.stderr.contains(&MAX_RESPONSE_BYTES.to_string()),
        "{}",
        run.stderr
    );
    assert_no_key_in_output(&run, KEY);

    let requests = env.sim.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_requests_clean(&requests, KEY);

    let rows = audit(&env);
    assert_audit_clean(&rows, &h, KEY);
    let http = http_rows(&rows);
    assert_eq!(http.len(), 1, "{http:?}");
    let row = http[0].clone();
    assert!(!row.denied(), "the request did leave: {row:?}");
    assert_eq!(row.rule(), "max-response-bytes", "{row:?}");
    assert_host_keeps_serving(&env);
    row
}

#[test]
fn huge_response() {
    let row = assert_response_cut_off(
        Fault::Huge {
            bytes: 8 * 1024 * 1024,
        },
        "huge-response",
    );
    assert!(
        (0..=MAX_RESPONSE_BYTES as i64).contains(&row.bytes),
        "more than the limit was taken in: {row:?}"
    );
}

/// The part of `stdout_flood` that holds today: the flood is cut off at the cap, the run
/// finishes and fails, and the output does not reach the admin's terminal.
#[test]
fn stdout_flood_stays_bounded() {
    let env = env();
    let h = Hostile::new(&env, "stdout-flood", guests::STDOUT_FLOOD);
    let run = h.test();
    assert_ne!(run.code, 0, "the flood went through: {}", run.stdout);
    assert!(
        run.stdout.len() + run.stderr.len() < MAX_OUTPUT_BYTES,
        "the host printed {} + {} bytes",
        run.stdout.len(),
        run.stderr.len()
    );
    // Either the host names the limit, or the guest's own account (passed through in the
    // message) shows each stream stopped within its half of the cap.
    if !run.stderr.contains("max_output_bytes") {
        let half = MAX_OUTPUT_BYTES / 2;
        for stream in ["stdout", "stderr"] {
            let written = written_before_failure(&run.stderr, stream).unwrap_or_else(|| {
                panic!(
                    "neither max_output_bytes nor {stream}=N(failed: ...) in: {}",
                    run.stderr
                )
            });
            assert!(
                written <= half,
                "{stream} took {written} bytes: {}",
                run.stderr
            );
        }
    }
    assert_no_key_in_output(&run, KEY);
    assert_eq!(env.sim.request_count(), 0);
    assert_host_keeps_serving(&env);
}

/// `stdout=32768(failed: ...)` -> 32768.
fn written_before_failure(text: &str, stream: &str) -> Option<usize> {
    let start = text.find(&format!("{stream}="))? + stream.len() + 1;
    let rest = &text[start..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    rest[digits.len()..]
        .starts_with("(failed")
        .then(|| digits.parse().ok())
        .flatten()
}

#[test]
fn stdout_flood() {
    let env = env();
    let h = Hostile::new(&env, "stdout-flood", guests::STDOUT_FLOOD);
    let run = h.test();
    // A connector that floods its output hit a limit: exit 5, naming the limit.
    assert_refused(&run, 5, "max_output_bytes");
    assert!(
        run.stdout.len() + run.stderr.len() < MAX_OUTPUT_BYTES,
        "the host printed {} + {} bytes",
        run.stdout.len(),
        run.stderr.len()
    );
    assert_no_key_in_output(&run, KEY);
    assert_eq!(env.sim.request_count(), 0);
    assert_host_keeps_serving(&env);
}

#[test]
fn storage_flood() {
    let env = env();
    let h = Hostile::new(&env, "storage-flood", guests::STORAGE_FLOOD);
    let run = h.test();
    assert_refused(&run, 5, "big=too-large");
    assert!(
        run.stderr.contains("stopped_by=quota-exceeded"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("stored={STORAGE_MAX_KEYS} ")),
        "{}",
        run.stderr
    );
    assert_no_key_in_output(&run, KEY);

    let rows = audit(&env);
    assert_audit_clean(&rows, &h, KEY);
    assert!(http_rows(&rows).is_empty(), "{rows:?}");
    let storage: Vec<&AuditRow> = rows.iter().filter(|r| r.capability == "storage").collect();
    let too_large: Vec<&&AuditRow> = storage
        .iter()
        .filter(|r| r.denied() && r.rule() == "storage-max-value-bytes")
        .collect();
    assert_eq!(too_large.len(), 1, "{too_large:?}");
    assert_eq!(too_large[0].path, "big");
    assert_eq!(too_large[0].method, "set");
    let quota = storage
        .iter()
        .filter(|r| r.denied() && r.rule() == "storage-quota")
        .count();
    assert_eq!(quota, 1, "the first refused key stops the guest");
    let stored = storage
        .iter()
        .filter(|r| !r.denied() && r.method == "set")
        .count();
    assert_eq!(stored as i64, STORAGE_MAX_KEYS);

    let conn = env.sqlite();
    let (keys, total, big): (i64, i64, i64) = conn
        .query_row(
            "SELECT count(*), coalesce(sum(length(key) + length(value)), 0),
                    coalesce(sum(key = 'big'), 0)
             FROM kv WHERE connector = 'hostile'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("kv");
    assert!(keys <= STORAGE_MAX_KEYS, "{keys} keys stored");
    assert_eq!(keys, STORAGE_MAX_KEYS);
    assert!(total <= STORAGE_MAX_TOTAL_BYTES, "{total} bytes stored");
    assert_eq!(big, 0, "the oversized value was stored");
    let largest: i64 = conn
        .query_row("SELECT coalesce(max(length(value)), 0) FROM kv", [], |r| {
            r.get(0)
        })
        .expect("kv");
    assert!(largest <= STORAGE_MAX_VALUE_BYTES, "{largest}");

    assert_eq!(env.sim.request_count(), 0);
    assert_host_keeps_serving(&env);
}

/// The CPU limit is not spent while the guest waits on the network: a well-behaved call whose
/// answer takes longer than `cpu_ms` (but well within `call_timeout_ms`) succeeds.
#[test]
fn cpu_limit_is_not_spent_waiting_on_the_network() {
    let env = env();
    env.sim
        .add_fault(FaultRule::always(Fault::Latency(Duration::from_millis(
            SPIN_CPU_MS + 1_500,
        ))));
    let h = Hostile::with_cpu(&env, "slow", guests::WELL_BEHAVED, SPIN_CPU_MS);
    let run = h.test();
    assert!(run.ok().contains("status=200"), "{}", run.stdout);
    assert_eq!(env.sim.request_count(), 1);
    assert_requests_clean(&env.sim.requests(), KEY);
}

/// Asserts that `scopable-host audit` refuses the component and lists `family` imports as not
/// granted, and that the imports it grants are none of the refused families.
#[track_caller]
fn assert_audit_refuses(h: &Hostile<'_>, family: &str) {
    let (run, report) = h.audit_report();
    assert_eq!(run.code, 5, "stderr: {}", run.stderr);
    assert_eq!(report["accepted"], false, "{report}");
    assert_eq!(report["sha256"], h.sha256.as_str());
    let imports = report["imports"].as_array().expect("imports");
    let refused: Vec<&str> = imports
        .iter()
        .filter(|i| i["allowed"] == false)
        .map(|i| i["name"].as_str().expect("name"))
        .collect();
    assert!(
        refused.iter().any(|n| n.starts_with(family)),
        "no {family} import refused: {report}"
    );
    for import in imports {
        let name = import["name"].as_str().expect("name");
        let dangerous = name.starts_with("wasi:filesystem") || name.starts_with("wasi:sockets");
        assert_eq!(import["allowed"], !dangerous, "{import}");
    }
    let reasons = report["reasons"].to_string();
    assert!(reasons.contains(family), "{reasons}");
}

#[test]
fn filesystem() {
    let env = env();
    let h = Hostile::new(&env, "filesystem", guests::FILESYSTEM);
    let run = h.test();
    assert_refused(&run, 5, "wasi:filesystem/");
    assert!(run.stderr.contains("connector refused"), "{}", run.stderr);
    assert_no_key_in_output(&run, KEY);
    assert_audit_refuses(&h, "wasi:filesystem");
    assert!(
        audit(&env).is_empty(),
        "a refused component left audit records"
    );
    assert_eq!(env.sim.request_count(), 0);
    assert_host_keeps_serving(&env);
}

#[test]
fn sockets() {
    let env = env();
    let h = Hostile::new(&env, "sockets", guests::SOCKETS);
    let run = h.test();
    assert_eq!(run.code, 5, "stderr: {}", run.stderr);
    assert!(
        run.stderr.contains("wasi:sockets/") || run.stderr.contains("wasi:filesystem/"),
        "no refused import named: {}",
        run.stderr
    );
    assert_refused(&run, 5, "connector refused");
    assert_no_key_in_output(&run, KEY);
    assert_audit_refuses(&h, "wasi:sockets");
    assert!(
        audit(&env).is_empty(),
        "a refused component left audit records"
    );
    assert_eq!(env.sim.request_count(), 0);
    assert_host_keeps_serving(&env);
}

#[test]
fn well_behaved() {
    let env = env();
    let h = Hostile::new(&env, "well-behaved", guests::WELL_BEHAVED);
    let run = h.test();
    assert!(run.ok().contains("status=200"), "{}", run.stdout);
    assert_no_key_in_output(&run, KEY);

    let requests = env.sim.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].status, 200);
    assert_requests_clean(&requests, KEY);

    let rows = audit(&env);
    assert_audit_clean(&rows, &h, KEY);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert!(row.is_http() && !row.denied(), "{row:?}");
    assert_eq!(row.rule, None, "{row:?}");
    assert_eq!(row.method, "GET");
    assert_eq!(row.host, "127.0.0.1");
    assert_eq!(
        row.path, "/organizations",
        "the path is recorded without its query"
    );
    assert_eq!(row.status, Some(200));
    assert!(row.bytes > 0, "{row:?}");

    // `audit` accepts it, and shows the credential as the host's, not the component's.
    let (audit_run, report) = h.audit_report();
    assert_eq!(audit_run.code, 0, "{}", audit_run.stderr);
    assert_eq!(report["accepted"], true, "{report}");
    assert_eq!(
        report["manifest"]["credential"]["visible_to_component"],
        false
    );

    assert_host_keeps_serving(&env);
}

#[test]
fn key_never_leaks() {
    let env = Env::new();
    env.sim.set_key("us", Some(LEAK_KEY));
    let base = env.sim.base_url();
    let mut runs: Vec<Run> = Vec::new();

    let components: [(&str, &'static str); 10] = [
        ("post", guests::POST),
        ("smuggle-key", guests::SMUGGLE_KEY),
        ("forbidden-path", guests::FORBIDDEN_PATH),
        ("undeclared-query", guests::UNDECLARED_QUERY),
        ("flood", guests::FLOOD),
        ("stdout-flood", guests::STDOUT_FLOOD),
        ("storage-flood", guests::STORAGE_FLOOD),
        ("redirect", guests::REDIRECT),
        ("huge-response", guests::HUGE_RESPONSE),
        ("well-behaved", guests::WELL_BEHAVED),
    ];
    let mut last = None;
    for (label, wasm) in components {
        env.sim.clear_faults();
        match label {
            "redirect" => env.sim.add_fault(FaultRule::always(Fault::Redirect {
                location: format!("{base}/organizations"),
            })),
            "huge-response" => env.sim.add_fault(FaultRule::always(Fault::Huge {
                bytes: 4 * 1024 * 1024,
            })),
            _ => {}
        }
        let h = Hostile::new(&env, label, wasm);
        runs.push(h.test_with_key(LEAK_KEY));
        last = Some(h);
    }
    env.sim.clear_faults();
    let well_behaved = last.expect("components ran");
    // With every log line on, too.
    let debug = [("SCOPABLE_LOG", "trace")];
    runs.push(well_behaved.run_with(LEAK_KEY, &["test", "--endpoint", &base], &debug));
    runs.push(well_behaved.run_with(LEAK_KEY, &["activity", "--json"], &[]));
    runs.push(well_behaved.run_with(LEAK_KEY, &["activity"], &[]));

    // The built-in connector: connect (the key is stored, encrypted), test the stored
    // connection, and every read-out.
    let connect = env.run_key(
        LEAK_KEY,
        &["itglue", "connect", "--region", "us", "--endpoint", &base],
    );
    connect.ok();
    runs.push(connect);
    let stored = env.run_full(&["itglue", "test"], &[("SCOPABLE_LOG", "trace")], None);
    assert!(stored.ok().contains("Verified"), "{}", stored.stdout);
    runs.push(stored);
    for args in [
        &["itglue", "test", "--endpoint", base.as_str()][..],
        &["itglue", "activity", "--json"],
        &["itglue", "activity"],
        &["itglue", "status", "--json"],
        &["itglue", "status"],
    ] {
        let run = env.run(args);
        run.ok();
        runs.push(run);
    }
    let status = env.run(&["itglue", "status", "--json"]).json();
    assert_eq!(status["connected"], true, "{status}");

    // The key was really used: every request carried it, so its absence below means something.
    let requests = env.sim.requests();
    assert!(
        requests.iter().filter(|r| r.status == 200).count() >= 3,
        "{requests:?}"
    );
    assert_requests_clean(&requests, LEAK_KEY);

    for run in &runs {
        assert_no_key_in_output(run, LEAK_KEY);
    }
    for row in audit(&env) {
        assert!(!row.text().contains(LEAK_KEY), "{row:?}");
    }

    // No file in the workspace holds it: database, WAL, vault key file, manifests. (The
    // connections above are closed, so everything is on disk.)
    let needles = [
        LEAK_KEY.as_bytes().to_vec(),
        LEAK_KEY.to_ascii_lowercase().into_bytes(),
        LEAK_KEY.bytes().rev().collect::<Vec<u8>>(),
    ];
    let files = files_under(env.dir.path());
    let names: Vec<String> = files
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n == "scopable.db"), "{names:?}");
    assert!(names.iter().any(|n| n == "scopable.db.key"), "{names:?}");
    for file in &files {
        let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for needle in &needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                "the key is in {}",
                file.display()
            );
        }
    }
    // Nor is any of it written in the shared compiled-component cache.
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("component-cache");
    for file in files_under(&cache) {
        let Ok(bytes) = std::fs::read(&file) else {
            continue; // a temporary file renamed away by a concurrent test
        };
        assert!(
            !bytes
                .windows(LEAK_KEY.len())
                .any(|w| w == LEAK_KEY.as_bytes()),
            "the key is in {}",
            file.display()
        );
    }
}

/// A component whose `match` proposes links to records that do not exist, or uses the
/// network: the host refuses the whole result and changes no link.
#[test]
fn bad_match() {
    let env = env();
    let h = Hostile::new(&env, "bad-match", guests::BAD_MATCH);
    h.run_with(
        KEY,
        &[
            "connect",
            "--region",
            "us",
            "--endpoint",
            &env.sim.base_url(),
        ],
        &[],
    )
    .ok();
    env.import(
        "id,name\nc1,Acme\n",
        "id,client_id,name,hostname,serial_number,mac_address\n",
    );
    let run = h.run_with(KEY, &["sync", "organizations", "--json"], &[]);
    assert_refused(&run, 5, "client \"ghost\", which does not exist");
    assert!(run.stderr.contains("nothing was applied"), "{}", run.stderr);
    assert!(run.stdout.is_empty());
    let links: i64 = env
        .sqlite()
        .query_row("SELECT count(*) FROM links", [], |r| r.get(0))
        .unwrap();
    assert_eq!(links, 0);
    let clients: i64 = env
        .sqlite()
        .query_row("SELECT count(*) FROM clients", [], |r| r.get(0))
        .unwrap();
    assert_eq!(clients, 1, "no client was created");
    let status = h.run_with(KEY, &["status", "--json"], &[]).json();
    assert_eq!(status["organization"]["status"], "failed");

    // `match` may not use the network at all.
    env.import(
        "id,name\nc1,Acme\nc2,network\n",
        "id,client_id,name,hostname,serial_number,mac_address\n",
    );
    let run = h.run_with(KEY, &["sync", "organizations", "--json"], &[]);
    assert_refused(&run, 5, "no-network");
    let denied: i64 = env
        .sqlite()
        .query_row(
            "SELECT count(*) FROM audit WHERE decision = 'denied' AND rule = 'no-network'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(denied, 1);
    // Its data exports answer from memory, and `match` was stopped: the API saw nothing.
    assert!(env.sim.requests().is_empty(), "{:?}", env.sim.requests());
}

/// `check` fails a hostile component with a clear table and exit 5.
#[test]
fn check_fails_a_hostile_component() {
    let env = env();
    let h = Hostile::new(&env, "post", guests::POST);
    let manifest = h.manifest.to_str().expect("utf-8 path");
    let run = env.run(&["check", h.wasm, "--manifest", manifest]);
    assert_eq!(
        run.code, 5,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    assert!(run.stdout.contains("FAIL"), "{}", run.stdout);
    assert!(
        run.stdout.contains("error: 401 -> unauthorized"),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("failed"), "{}", run.stderr);
    // A component the host refuses fails at load, in the table too.
    let fs = Hostile::new(&env, "filesystem", guests::FILESYSTEM);
    let run = env.run(&[
        "check",
        fs.wasm,
        "--manifest",
        fs.manifest.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(run.code, 5);
    let report: Value = serde_json::from_str(&run.stdout).expect("json table");
    assert_eq!(report["passed"], false);
    assert!(
        report["checks"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("wasi:filesystem"),
        "{report}"
    );
}

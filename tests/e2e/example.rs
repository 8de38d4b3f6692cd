//! The example Docuvault connector (`examples/docuvault`) through the real binary, against its
//! own tiny simulator: a documentation API shaped nothing like IT Glue (plain JSON lists,
//! offset cursors, a bearer token) runs under the same WIT world, host, policy and commands.

use crate::util::{Env, Run, assert_counts_add_up};
use itglue_sim::example_sim::{CLIENTS_CSV, CONFIGURATIONS_CSV, Seen, Simulator};
use itglue_sim::guests::EXAMPLE_CONNECTOR;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The token the simulator accepts: distinctive, so that a leak would be unmistakable.
const TOKEN: &str = "dv-token-3c9a71";
/// The variable the host reads the token from (`<NAME>_API_KEY`).
const TOKEN_ENV: &str = "DOCUVAULT_API_KEY";
/// The example's own manifest, as shipped (no `sha256`: the tests pin a copy).
const MANIFEST: &str = include_str!("../../examples/docuvault/manifest.toml");
/// The paths the manifest declares.
const DECLARED: [&str; 2] = ["/api/v2/companies", "/api/v2/devices"];

/// A workspace (database, files) with a Docuvault simulator and a pinned manifest.
struct Docuvault {
    env: Env,
    sim: Simulator,
    manifest: PathBuf,
}

impl Docuvault {
    /// The shipped manifest with pages of 3 (so that listings take several pages) and quick
    /// retries.
    fn new() -> Docuvault {
        let limits = [
            ("page_size", "3"),
            ("max_attempts", "3"),
            ("retry_base_ms", "10"),
            ("retry_max_ms", "200"),
        ];
        Docuvault::with_manifest(&override_lines(MANIFEST, &limits))
    }

    fn with_manifest(text: &str) -> Docuvault {
        let env = Env::new();
        let bytes = std::fs::read(EXAMPLE_CONNECTOR)
            .unwrap_or_else(|e| panic!("reading {EXAMPLE_CONNECTOR}: {e}"));
        let sha256 = scopable_sandbox::sandbox::sha256_hex(&bytes);
        let manifest = env.write("docuvault.toml", format!("sha256 = \"{sha256}\"\n{text}"));
        Docuvault {
            sim: Simulator::start(TOKEN).expect("docuvault simulator"),
            env,
            manifest,
        }
    }

    fn manifest(&self) -> &str {
        self.manifest.to_str().expect("utf-8 path")
    }

    /// `scopable-host --connector .. --manifest .. docuvault ARGS`, with `token` (if any) in
    /// [`TOKEN_ENV`].
    fn run(&self, token: Option<&str>, args: &[&str]) -> Run {
        let mut all = vec![
            "--connector",
            EXAMPLE_CONNECTOR,
            "--manifest",
            self.manifest(),
            "docuvault",
        ];
        all.extend_from_slice(args);
        let vars: Vec<(&str, &str)> = token.map(|t| (TOKEN_ENV, t)).into_iter().collect();
        self.env.run_full(&all, &vars, None)
    }

    /// `docuvault test --endpoint SIM` with `token`.
    fn test(&self, token: &str) -> Run {
        self.run(Some(token), &["test", "--endpoint", &self.sim.base_url()])
    }

    /// `docuvault sync KIND --json`, parsed.
    fn sync(&self, kind: &str) -> Value {
        self.run(None, &["sync", kind, "--json"]).json()
    }

    /// `docuvault links --json` of `kind`: Docuvault id -> (Scopable id, evidence).
    fn links(&self, kind: &str) -> BTreeMap<String, (String, Value)> {
        let links = self.run(None, &["links", "--json"]).json();
        let rows = links.as_array().expect("links is a list").iter();
        rows.filter(|l| l["kind"] == kind)
            .map(|l| {
                let id = l["itglue_id"].as_str().unwrap_or_default().to_string();
                let target = l["scopable_id"].as_str().unwrap_or_default().to_string();
                (id, (target, l["evidence"].clone()))
            })
            .collect()
    }

    /// `docuvault unplaced --json` of `kind`: Docuvault id -> (reason, candidates).
    fn unplaced(&self, kind: &str) -> BTreeMap<String, (String, Value)> {
        let unplaced = self.run(None, &["unplaced", "--json"]).json();
        let rows = unplaced.as_array().expect("unplaced is a list").iter();
        rows.filter(|u| u["kind"] == kind)
            .map(|u| {
                let id = u["itglue_id"].as_str().unwrap_or_default().to_string();
                let reason = u["reason"].as_str().unwrap_or_default().to_string();
                (id, (reason, u["candidates"].clone()))
            })
            .collect()
    }
}

/// `text` with each `key = ...` line of `values` replaced.
fn override_lines(text: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        match values.iter().find(|(k, _)| *k == key) {
            Some((k, v)) => out.push_str(&format!("{k} = {v}\n")),
            None => out.push_str(&format!("{line}\n")),
        }
    }
    out
}

/// Asserts that every request was a GET of a declared path with declared query keys only, and
/// carried `Bearer <token>`.
#[track_caller]
fn assert_declared_gets(seen: &[Seen], token: &str) {
    assert!(!seen.is_empty(), "the simulator saw no request");
    for request in seen {
        assert_eq!(request.method, "GET", "{request:?}");
        assert!(DECLARED.contains(&request.path.as_str()), "{request:?}");
        for pair in request.query.split('&') {
            let key = pair.split('=').next().unwrap_or("");
            assert!(["order", "cursor", "limit"].contains(&key), "{request:?}");
        }
        assert!(request.query.starts_with("order=uid&"), "{request:?}");
        assert_eq!(
            request.authorization.as_deref(),
            Some(format!("Bearer {token}").as_str()),
            "{request:?}"
        );
    }
}

/// A sync summary's fetched, linked, skipped and errored counts.
fn counts(summary: &Value) -> [u64; 4] {
    ["fetched", "linked", "skipped", "errored"].map(|k| summary[k].as_u64().unwrap_or(u64::MAX))
}

fn strings(list: &[&str]) -> Value {
    Value::from(list.to_vec())
}

#[test]
fn the_example_connector_tests_connects_and_syncs() {
    let dv = Docuvault::new();
    let ok = dv.test(TOKEN);
    assert!(
        ok.ok().contains("Verified: 8 companies visible"),
        "{}",
        ok.stdout
    );
    // One small request: the first company only.
    let seen = dv.sim.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].query, "order=uid&cursor=0&limit=1");

    dv.run(Some(TOKEN), &["connect", "--endpoint", &dv.sim.base_url()])
        .ok();
    dv.env.import(CLIENTS_CSV, CONFIGURATIONS_CSV);

    let orgs = dv.sync("organizations");
    assert_counts_add_up(&orgs);
    assert_eq!(counts(&orgs), [8, 2, 5, 1], "{orgs}");
    // 8 companies in pages of 3.
    assert_eq!(orgs["requests"], 3, "{orgs}");
    let links = dv.links("organization");
    assert_eq!(links["c-1"], ("s-1".to_string(), strings(&["name"])));
    assert_eq!(links["c-2"], ("s-2".to_string(), strings(&["name"])));
    assert_eq!(links.len(), 2, "{links:?}");
    let unplaced = dv.unplaced("organization");
    let expect = |reason: &str, candidates: &[&str]| (reason.to_string(), strings(candidates));
    assert_eq!(unplaced["c-3"], expect("multiple-clients", &["s-3", "s-4"]));
    assert_eq!(unplaced["c-4"], expect("no-match", &[]));
    assert_eq!(unplaced["c-5"], expect("multiple-organizations", &["s-5"]));
    assert_eq!(unplaced["c-6"], expect("multiple-organizations", &["s-5"]));
    assert_eq!(unplaced["c-7"], expect("empty-name", &[]));
    assert_eq!(unplaced["(no id #1)"], expect("invalid-record", &[]));

    let configs = dv.sync("configurations");
    assert_counts_add_up(&configs);
    assert_eq!(counts(&configs), [10, 3, 6, 1], "{configs}");
    assert_eq!(configs["requests"], 4, "{configs}");
    let links = dv.links("configuration");
    assert_eq!(links["d-01"], ("k-1".to_string(), strings(&["serial"])));
    assert_eq!(links["d-02"], ("k-2".to_string(), strings(&["serial"])));
    assert_eq!(links["d-04"], ("k-3".to_string(), strings(&["serial"])));
    assert_eq!(links.len(), 3, "{links:?}");
    let unplaced = dv.unplaced("configuration");
    assert_eq!(unplaced["d-03"], expect("no-match", &[]));
    assert_eq!(unplaced["d-05"], expect("parent-unplaced", &[]));
    assert_eq!(unplaced["d-06"], expect("archived", &[]));
    assert_eq!(unplaced["d-07"], expect("no-match", &[]));
    assert_eq!(unplaced["d-08"], expect("invalid-record", &[]));
    assert_eq!(unplaced["d-09"], expect("target-taken", &["k-4"]));
    assert_eq!(unplaced["d-10"], expect("target-taken", &["k-4"]));

    // A second sync settles: nothing new, nothing removed.
    for kind in ["organizations", "configurations"] {
        let again = dv.sync(kind);
        assert_eq!(again["new_links"], 0, "{again}");
        assert_eq!(again["removed_links"], 0, "{again}");
    }

    let seen = dv.sim.requests();
    assert_declared_gets(&seen, TOKEN);
    // Page numbers became offsets: every page starts at a multiple of the page size.
    for request in &seen[2..] {
        let cursor = request
            .query
            .split('&')
            .find_map(|p| p.strip_prefix("cursor="));
        let cursor: usize = cursor.and_then(|c| c.parse().ok()).expect("a cursor");
        assert!(
            cursor.is_multiple_of(3) && request.query.ends_with("&limit=3"),
            "{request:?}"
        );
    }
}

#[test]
fn errors_map_to_the_hosts_exit_statuses() {
    let dv = Docuvault::new();
    dv.test("not-the-token").fails(3, "HTTP 401");
    dv.sim.fail_next(401, 1);
    dv.test(TOKEN).fails(3, "HTTP 401");
    dv.sim.fail_next(403, 1);
    dv.test(TOKEN).fails(3, "HTTP 403");

    // Rate limited once: the host waits (Retry-After, capped by retry_max_ms) and retries.
    let before = dv.sim.requests().len();
    dv.sim.fail_next(429, 1);
    assert!(dv.test(TOKEN).ok().contains("Verified"));
    assert_eq!(dv.sim.requests().len(), before + 2);

    // Unavailable on every attempt (max_attempts = 3): exit 4.
    let before = dv.sim.requests().len();
    dv.sim.fail_next(503, 3);
    dv.test(TOKEN).fails(4, "HTTP 503");
    assert_eq!(dv.sim.requests().len(), before + 3);

    // A wrong base path is a 404, told apart from a bad token.
    let wrong_base = format!("{}/v9", dv.sim.base_url());
    dv.run(Some(TOKEN), &["test", "--endpoint", &wrong_base])
        .fails(1, "HTTP 404");
    let seen = dv.sim.requests();
    assert!(seen.iter().all(|r| r.method == "GET"), "{seen:?}");
}

#[test]
fn a_request_outside_the_manifest_is_denied_before_it_leaves() {
    // The same component under a manifest that does not declare the companies listing.
    let manifest = MANIFEST.replacen("path = \"/api/v2/companies\"", "path = \"/api/v2/x\"", 1);
    let dv = Docuvault::with_manifest(&manifest);
    let denied = dv.test(TOKEN);
    denied.fails(5, "GET /api/v2/companies is not declared");
    assert!(dv.sim.requests().is_empty(), "{:?}", dv.sim.requests());
}

#[test]
fn audit_and_check_accept_the_example() {
    let dv = Docuvault::new();
    let audit = dv.env.run(&[
        "audit",
        EXAMPLE_CONNECTOR,
        "--manifest",
        dv.manifest(),
        "--json",
    ]);
    let report = audit.json();
    assert_eq!(report["accepted"], true, "{report}");
    assert_eq!(report["manifest"]["name"], "docuvault");
    assert_eq!(report["manifest"]["credential"]["header"], "authorization");
    assert_eq!(report["manifest"]["credential"]["prefix"], "Bearer ");
    assert_eq!(
        report["manifest"]["credential"]["source"],
        format!("environment variable {TOKEN_ENV}, or standard input")
    );
    assert_eq!(report["warnings"], serde_json::json!([]), "{report}");
    for export in ["test", "fetch-orgs", "fetch-configs", "match"] {
        let exports = report["exports"].as_array().expect("exports");
        assert!(exports.iter().any(|e| e == export), "{report}");
    }

    let check = dv.env.run_full(
        &[
            "check",
            EXAMPLE_CONNECTOR,
            "--manifest",
            dv.manifest(),
            "--endpoint",
            &dv.sim.base_url(),
            "--json",
        ],
        &[(TOKEN_ENV, TOKEN)],
        None,
    );
    let table = check.json();
    assert_eq!(table["passed"], true, "{table}");
    let rows = table["checks"].as_array().expect("checks");
    assert!(rows.iter().all(|r| r["result"] == "pass"), "{table}");
    assert_declared_gets(&dv.sim.requests(), TOKEN);
}

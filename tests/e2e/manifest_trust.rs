//! What a manifest may ask for. The host, not the manifest, decides where a connector's key
//! comes from (`<NAME>_API_KEY`); a manifest that asks for what is never right (the API root,
//! wildcards, private, loopback or metadata addresses, a framing header for the key, limits of
//! 0 or beyond their ceilings) is refused by `audit`, `test`, `connect` and `check` alike; one
//! that is merely broad is accepted, with warnings in `audit` and `check`.

use crate::util::{Env, Run, files_under};
use itglue_sim::guests;
use serde_json::Value;
use std::path::PathBuf;

/// The key the simulator accepts in these tests.
const KEY: &str = "manifest-trust-KEY-41c7";
/// A vault master key (base64 of 32 bytes): distinctive, so that a leak is unmistakable.
const VAULT_KEY: &str = "dmF1bHQtbWFzdGVyLUtFWS1uZXZlci1sZWFrLTlkMmU=";
/// What `VAULT_KEY` decodes to.
const VAULT_KEY_BYTES: &str = "vault-master-KEY-never-leak-9d2e";
/// The host's own secret variable, which a manifest once could name as the key's source.
const VAULT_ENV: &str = "SCOPABLE_VAULT_KEY";
/// Where the host reads the `hostile` connector's key from.
const KEY_ENV: &str = "HOSTILE_API_KEY";

/// A manifest like the hostile tests' (connector `hostile`), pinned to `wasm`; `edit` changes
/// its text.
fn manifest_text(wasm: &str, edit: impl Fn(String) -> String) -> String {
    let bytes = std::fs::read(wasm).unwrap_or_else(|e| panic!("reading {wasm}: {e}"));
    let sha256 = scopable_sandbox::sandbox::sha256_hex(&bytes);
    edit(format!(
        r#"name = "hostile"
description = "a test component"
sha256 = "{sha256}"
default_region = "us"

[regions]
us = "https://api.itglue.com"

[credential]
header = "x-api-key"

[[requests]]
method = "GET"
path = "/organizations"
query = ["page[size]", "page[number]", "sort"]

[limits]
cpu_ms = 10000
memory_mb = 64
call_timeout_ms = 20000
max_attempts = 1
"#
    ))
}

/// One component under one manifest written into the workspace.
struct Case<'a> {
    env: &'a Env,
    wasm: &'static str,
    manifest: PathBuf,
}

impl<'a> Case<'a> {
    fn new(env: &'a Env, label: &str, wasm: &'static str, text: String) -> Case<'a> {
        let manifest = env.write(&format!("{label}.toml"), text);
        Case {
            env,
            wasm,
            manifest,
        }
    }

    fn manifest(&self) -> &str {
        self.manifest.to_str().expect("utf-8 path")
    }

    /// `scopable-host --connector .. --manifest .. NAME ARGS` with `vars` set.
    fn run(&self, name: &str, args: &[&str], vars: &[(&str, &str)]) -> Run {
        let mut all = vec![
            "--connector",
            self.wasm,
            "--manifest",
            self.manifest(),
            name,
        ];
        all.extend_from_slice(args);
        self.env.run_full(&all, vars, None)
    }

    /// `NAME test --endpoint SIM`.
    fn test(&self, name: &str, vars: &[(&str, &str)]) -> Run {
        let endpoint = self.env.sim.base_url();
        self.run(name, &["test", "--endpoint", &endpoint], vars)
    }

    /// `NAME connect --region us --endpoint SIM`.
    fn connect(&self, name: &str, vars: &[(&str, &str)]) -> Run {
        let endpoint = self.env.sim.base_url();
        self.run(
            name,
            &["connect", "--region", "us", "--endpoint", &endpoint],
            vars,
        )
    }

    /// `audit COMPONENT --manifest M [--json]`.
    fn audit(&self, json: bool) -> Run {
        let mut args = vec!["audit", self.wasm, "--manifest", self.manifest()];
        if json {
            args.push("--json");
        }
        self.env.run(&args)
    }

    /// `audit --json`, parsed (it prints its report whether it accepts or refuses).
    fn audit_report(&self) -> (Run, Value) {
        let run = self.audit(true);
        let report = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
            panic!(
                "audit --json printed no JSON ({e})\nstdout: {}\nstderr: {}",
                run.stdout, run.stderr
            )
        });
        (run, report)
    }

    /// `check COMPONENT --manifest M ARGS`.
    fn check(&self, args: &[&str], vars: &[(&str, &str)]) -> Run {
        let mut all = vec!["check", self.wasm, "--manifest", self.manifest()];
        all.extend_from_slice(args);
        self.env.run_full(&all, vars, None)
    }
}

/// A workspace whose simulator accepts [`KEY`] for the US region.
fn env() -> Env {
    let env = Env::new();
    env.sim.set_key("us", Some(KEY));
    env
}

/// Asserts a one-line refusal: exit `code`, `error: ...` naming every needle, nothing on stdout.
#[track_caller]
fn assert_refused(run: &Run, code: i32, needles: &[&str]) {
    for needle in needles {
        run.fails(code, needle);
    }
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "stdout: {}", run.stdout);
}

/// Asserts that `audit --json` refuses with exit 5, `accepted: false`, a reason naming every
/// needle, and the manifest's surface still shown.
#[track_caller]
fn assert_audit_refuses(case: &Case<'_>, needles: &[&str]) -> Value {
    let (run, report) = case.audit_report();
    assert_eq!(run.code, 5, "stderr: {}", run.stderr);
    assert_eq!(report["accepted"], false, "{report}");
    let reasons: Vec<&str> = report["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .map(|r| r.as_str().expect("a reason is text"))
        .collect();
    let reasons = reasons.join("\n");
    for needle in needles {
        assert!(reasons.contains(needle), "no {needle:?} in {reasons}");
    }
    assert!(report["manifest"].is_object(), "{report}");
    report
}

/// Asserts that nothing ran: no request reached the simulator and no audit row was written.
#[track_caller]
fn assert_nothing_ran(env: &Env) {
    assert_eq!(env.sim.request_count(), 0, "{:?}", env.sim.requests());
    if env.db().exists() {
        let rows: i64 = env
            .sqlite()
            .query_row("SELECT count(*) FROM audit", [], |r| r.get(0))
            .unwrap_or(0);
        assert_eq!(rows, 0, "a refused manifest left audit rows");
    }
}

/// A manifest that names the host's vault master-key variable as its key's source is refused
/// by every command, before anything runs; the master key reaches no output, request or file.
/// With a valid manifest, the host reads `HOSTILE_API_KEY` only, whatever else is set.
#[test]
pub fn vault_key() {
    let env = env();
    let vault = [(VAULT_ENV, VAULT_KEY)];
    let mut runs: Vec<Run> = Vec::new();

    let case = Case::new(
        &env,
        "vault-key",
        guests::VAULT_KEY,
        manifest_text(guests::VAULT_KEY, |t| {
            t.replace(
                "header = \"x-api-key\"",
                &format!("header = \"x-api-key\"\nenv = \"{VAULT_ENV}\""),
            )
        }),
    );
    let rule = format!("[credential] env \"{VAULT_ENV}\" is refused");
    let must_be = format!("from {KEY_ENV} only");
    for run in [
        case.test("hostile", &vault),
        case.connect("hostile", &vault),
    ] {
        assert_refused(&run, 6, &[&rule, &must_be]);
        runs.push(run);
    }
    let check = case.check(&["--endpoint", &env.sim.base_url()], &vault);
    assert_refused(&check, 6, &[&rule]);
    runs.push(check);
    // `audit` reads the manifest, shows what it asks for, and refuses it.
    let report = assert_audit_refuses(&case, &[&rule, &must_be]);
    assert_eq!(
        report["manifest"]["credential"]["source"],
        format!("environment variable {KEY_ENV}, or standard input"),
        "{report}"
    );
    let text = case.audit(false);
    assert_eq!(text.code, 5, "{}", text.stderr);
    assert!(
        text.stdout.contains("Verdict:   REFUSED"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains(&rule), "{}", text.stdout);
    runs.push(text);
    assert_nothing_ran(&env);

    // The host's own prefix cannot be a connector's name either.
    let named = Case::new(
        &env,
        "scopable-x",
        guests::VAULT_KEY,
        manifest_text(guests::VAULT_KEY, |t| {
            t.replace("name = \"hostile\"", "name = \"scopable-x\"")
        }),
    );
    let run = named.test("scopable-x", &[("SCOPABLE_X_API_KEY", KEY)]);
    assert_refused(&run, 6, &["name \"scopable-x\" is reserved", "SCOPABLE_"]);
    runs.push(run);
    assert_audit_refuses(&named, &["name \"scopable-x\" is reserved"]);
    assert_nothing_ran(&env);

    // A valid manifest, with only the master key in the environment: no key was given.
    let valid = Case::new(
        &env,
        "valid",
        guests::VAULT_KEY,
        manifest_text(guests::VAULT_KEY, |t| t),
    );
    for run in [
        valid.test("hostile", &vault),
        valid.connect("hostile", &vault),
    ] {
        assert_refused(&run, 2, &["no API key given", &format!("set {KEY_ENV}")]);
        runs.push(run);
    }
    assert_nothing_ran(&env);
    let (audit, report) = valid.audit_report();
    assert_eq!(audit.code, 0, "{}", audit.stderr);
    assert_eq!(report["accepted"], true, "{report}");
    assert_eq!(
        report["manifest"]["credential"]["source"],
        format!("environment variable {KEY_ENV}, or standard input")
    );
    let text = valid.audit(false);
    assert!(
        text.ok()
            .contains(&format!("Key from:   environment variable {KEY_ENV}")),
        "{}",
        text.stdout
    );
    runs.push(text);

    // The same component, given its key where the host reads it, runs.
    let ok = valid.test("hostile", &[(KEY_ENV, KEY), (VAULT_ENV, VAULT_KEY)]);
    assert!(ok.ok().contains("status=200"), "{}", ok.stdout);
    runs.push(ok);
    let requests = env.sim.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].header("x-api-key"), Some(KEY), "{requests:?}");

    // The master key is nowhere: output, requests, files in the workspace.
    for run in &runs {
        for needle in [VAULT_KEY, VAULT_KEY_BYTES] {
            assert!(!run.stdout.contains(needle), "stdout: {}", run.stdout);
            assert!(!run.stderr.contains(needle), "stderr: {}", run.stderr);
        }
    }
    for r in &requests {
        let seen = format!("{r:?}");
        assert!(
            !seen.contains(VAULT_KEY) && !seen.contains(VAULT_KEY_BYTES),
            "{seen}"
        );
    }
    for file in files_under(env.dir.path()) {
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for needle in [VAULT_KEY, VAULT_KEY_BYTES] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "the master key is in {}",
                file.display()
            );
        }
    }
}

/// Never-right manifests are refused by `audit` (exit 5, the reason naming the rule) and by
/// `test` (exit 6), before anything runs; a merely broad one is accepted and runs, with its
/// warnings listed by `audit` and `check`.
#[test]
pub fn broad_manifest() {
    let env = env();
    let wasm = guests::BROAD_MANIFEST;
    let region = |url: &'static str| move |t: String| t.replace("https://api.itglue.com", url);
    let path = |p: &'static str| {
        move |t: String| t.replace("path = \"/organizations\"", &format!("path = {p:?}"))
    };
    let header = |h: &'static str| {
        move |t: String| t.replace("header = \"x-api-key\"", &format!("header = {h:?}"))
    };
    let limit =
        |line: &'static str| move |t: String| t.replace("[limits]", &format!("[limits]\n{line}"));
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "root",
            manifest_text(wasm, path("/")),
            "is the root of the API",
        ),
        (
            "wildcard-path",
            manifest_text(wasm, path("/organizations/*")),
            "wildcard or glob character",
        ),
        (
            "wildcard-host",
            manifest_text(wasm, region("https://*.itglue.com")),
            "has a wildcard",
        ),
        (
            "metadata-ip",
            manifest_text(wasm, region("https://169.254.169.254")),
            "link-local range (169.254.0.0/16",
        ),
        (
            "link-local-v6",
            manifest_text(wasm, region("https://[fe80::1]")),
            "link-local range (fe80::/10)",
        ),
        (
            "private",
            manifest_text(wasm, region("https://10.0.0.1")),
            "private range",
        ),
        (
            "loopback",
            manifest_text(wasm, region("https://127.0.0.1")),
            "loopback",
        ),
        (
            "localhost",
            manifest_text(wasm, region("https://localhost")),
            "single-label name",
        ),
        (
            "metadata-name",
            manifest_text(wasm, region("https://metadata.google.internal")),
            "local or internal name",
        ),
        (
            "host-header",
            manifest_text(wasm, header("host")),
            "credential.header \"host\" is never right",
        ),
        (
            "cookie-header",
            manifest_text(wasm, header("cookie")),
            "credential.header \"cookie\" is never right",
        ),
        (
            "zero-limit",
            manifest_text(wasm, limit("max_requests_per_call = 0")),
            "[limits] max_requests_per_call = 0 is out of range: allowed 1..=1000",
        ),
        (
            "u64-max",
            manifest_text(wasm, |t| {
                t.replace("cpu_ms = 10000", "cpu_ms = 18446744073709551615")
            }),
            "[limits] cpu_ms = 18446744073709551615 is out of range: allowed 1..=600000",
        ),
        (
            "huge-limit",
            manifest_text(wasm, limit("max_response_bytes = 9223372036854775807")),
            "[limits] max_response_bytes = 9223372036854775807 is out of range",
        ),
    ];
    for (label, text, needle) in cases {
        let case = Case::new(&env, label, wasm, text);
        assert_audit_refuses(&case, &[needle]);
        let run = case.test("hostile", &[(KEY_ENV, KEY)]);
        assert_refused(&run, 6, &[needle]);
        assert_nothing_ran(&env);
    }
    // Merely broad: accepted, runs, and every warning is listed.
    let broad = Case::new(
        &env,
        "broad",
        wasm,
        manifest_text(wasm, |t| {
            t.replace("\"sort\"]", "\"sort\", \"filter[*]\"]")
                .replace(
                    "[limits]",
                    "[[requests]]\nmethod = \"GET\"\npath = \"/graphql\"\n\n[limits]\nmax_requests_per_call = 17\nbudget_requests = 5000",
                )
        }),
    );
    let expected = [
        "query rule filter[*] (GET /organizations) lets any key filter[...] through with any value",
        "request path \"/graphql\" looks like an API root or a catch-all endpoint",
        "[limits] max_requests_per_call = 17: more than 16 requests per export call",
        "[limits] budget_requests = 5000 per budget_window_secs = 300: more than 3000 requests per 300 s",
    ];
    let assert_warnings = |warnings: &Value| {
        let warnings: Vec<&str> = warnings
            .as_array()
            .unwrap_or_else(|| panic!("no warnings array: {warnings}"))
            .iter()
            .map(|w| w.as_str().expect("a warning is text"))
            .collect();
        assert_eq!(warnings.len(), expected.len(), "{warnings:#?}");
        for (warning, needle) in warnings.iter().zip(expected) {
            assert!(warning.contains(needle), "{warning:?} lacks {needle:?}");
        }
    };
    let (audit, report) = broad.audit_report();
    assert_eq!(audit.code, 0, "{}", audit.stderr);
    assert_eq!(report["accepted"], true, "{report}");
    assert_warnings(&report["warnings"]);
    let text = broad.audit(false);
    let out = text.ok();
    assert!(out.contains("Warnings:\n  - query rule filter[*]"), "{out}");
    for needle in expected {
        assert!(out.contains(needle), "{out}");
    }
    assert!(out.contains("Verdict:   accepted"), "{out}");

    let run = broad.test("hostile", &[(KEY_ENV, KEY)]);
    assert!(run.ok().contains("status=200"), "{}", run.stdout);
    assert_eq!(env.sim.request_count(), 1);

    let check = broad.check(&["--json"], &[]);
    let table: Value = serde_json::from_str(&check.stdout)
        .unwrap_or_else(|e| panic!("check --json ({e}): {}\n{}", check.stdout, check.stderr));
    assert_warnings(&table["warnings"]);
    let check = broad.check(&[], &[]);
    assert!(
        check.stdout.contains("Manifest warnings (accepted"),
        "{}",
        check.stdout
    );
    for needle in expected {
        assert!(check.stdout.contains(needle), "{}", check.stdout);
    }
    // A narrow manifest has none.
    let narrow = Case::new(&env, "narrow", wasm, manifest_text(wasm, |t| t));
    let (_, report) = narrow.audit_report();
    assert_eq!(report["accepted"], true, "{report}");
    assert_eq!(report["warnings"], serde_json::json!([]), "{report}");
}

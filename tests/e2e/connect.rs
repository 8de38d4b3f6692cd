//! `itglue test`, `connect`, `status`, `activity`, `disconnect`: keys, regions, the vault and
//! the exit statuses scripts rely on.

use crate::util::{EU_KEY, Env, US_KEY};
use itglue_sim::{AuthStyle, Fault, FaultRule, When};

#[test]
fn right_key_verifies_wrong_key_exits_3() {
    let env = Env::new();
    let ok = env.run_key(US_KEY, &["itglue", "test", "--endpoint", &env.endpoint()]);
    assert!(ok.ok().contains("Verified"), "{}", ok.stdout);
    assert!(ok.stdout.contains("organizations visible"), "{}", ok.stdout);
    let json = env
        .run_key(
            US_KEY,
            &["itglue", "test", "--endpoint", &env.endpoint(), "--json"],
        )
        .json();
    assert_eq!(json["verified"], true);
    let sample = itglue_sim::sample_dataset();
    let total = sample.organizations.len() + sample.raw_organizations.len();
    assert_eq!(json["total_organizations"], total as u64);
    assert_eq!(json["region"], "us");

    let bad = env.run_key(
        "not-the-key",
        &["itglue", "test", "--endpoint", &env.endpoint()],
    );
    bad.fails(3, "That key didn't work");
    assert!(bad.stderr.contains("region"), "{}", bad.stderr);
    assert!(bad.stderr.contains("90 days"), "{}", bad.stderr);
    assert_eq!(bad.stderr.lines().count(), 1, "one line: {}", bad.stderr);
    assert!(bad.stdout.is_empty());
}

#[test]
fn key_with_surrounding_spaces_works_from_stdin_and_env() {
    let env = Env::new();
    let piped = env.run_full(
        &["itglue", "test", "--endpoint", &env.endpoint()],
        &[],
        Some(&format!("  {US_KEY} \n")),
    );
    assert!(piped.ok().contains("Verified"));
    let spaced = env.run_key(
        &format!("\t{US_KEY}  "),
        &["itglue", "test", "--endpoint", &env.endpoint()],
    );
    assert!(spaced.ok().contains("Verified"));
    // The simulator only ever saw the trimmed key.
    for r in env.sim.requests() {
        assert_eq!(r.header("x-api-key"), Some(US_KEY));
    }
}

#[test]
fn a_key_from_another_region_looks_like_a_bad_key() {
    let env = Env::new();
    let eu = env.sim.region_url("eu");
    env.run_key(
        EU_KEY,
        &["itglue", "test", "--region", "eu", "--endpoint", &eu],
    )
    .ok();
    let wrong = env.run_key(
        US_KEY,
        &["itglue", "test", "--region", "eu", "--endpoint", &eu],
    );
    wrong.fails(3, "That key didn't work");
    assert!(wrong.stderr.contains("region eu"), "{}", wrong.stderr);

    env.sim.set_auth_style(AuthStyle::PlainForbidden);
    let forbidden = env.run_key("nope", &["itglue", "test", "--endpoint", &env.endpoint()]);
    forbidden.fails(3, "That key didn't work");
}

#[test]
fn bad_keys_are_refused_before_any_request() {
    let env = Env::new();
    env.run_key("   ", &["itglue", "test", "--endpoint", &env.endpoint()])
        .fails(6, "empty");
    env.run_key(
        "abc\ndef",
        &["itglue", "test", "--endpoint", &env.endpoint()],
    )
    .fails(6, "line break");
    env.run_key("clé", &["itglue", "test", "--endpoint", &env.endpoint()])
        .fails(6, "non-ASCII");
    env.run(&["itglue", "test", "--endpoint", &env.endpoint()])
        .fails(2, "no API key given");
    assert!(env.sim.requests().is_empty(), "{:?}", env.sim.requests());
}

#[test]
fn plain_http_is_only_for_loopback() {
    let env = Env::new();
    env.run_key(
        US_KEY,
        &["itglue", "test", "--endpoint", "http://10.1.2.3:8080"],
    )
    .fails(2, "loopback");
    env.run_key(US_KEY, &["itglue", "test", "--region", "mars"])
        .fails(2, "unknown region");
}

#[test]
fn connect_stores_nothing_unless_the_test_passes() {
    let env = Env::new();
    env.run_key(
        "wrong",
        &[
            "itglue",
            "connect",
            "--region",
            "us",
            "--endpoint",
            &env.endpoint(),
        ],
    )
    .fails(3, "That key didn't work");
    let status = env.run(&["itglue", "status", "--json"]).json();
    assert_eq!(status["connected"], false);
    assert!(
        status["region"].is_null()
            && status["endpoint"].is_null()
            && status["verified_at"].is_null()
    );
    assert!(status["organization"].is_null() && status["configuration"].is_null());
    let rows: i64 = env
        .sqlite()
        .query_row("SELECT count(*) FROM connections", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0);
}

#[test]
fn connect_then_test_the_stored_connection_then_disconnect() {
    let env = Env::new();
    let out = env.run_key(
        US_KEY,
        &[
            "itglue",
            "connect",
            "--region",
            "us",
            "--endpoint",
            &env.endpoint(),
        ],
    );
    assert!(out.ok().contains("Connected"), "{}", out.stdout);
    let status = env.run(&["itglue", "status", "--json"]).json();
    assert_eq!(status["connected"], true);
    assert_eq!(status["region"], "us");
    assert_eq!(status["endpoint"], env.endpoint());
    assert!(
        status["verified_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );

    // No key given: the stored one is used.
    env.sim.clear_requests();
    assert!(env.run(&["itglue", "test"]).ok().contains("Verified"));
    assert_eq!(env.sim.requests().len(), 1);
    assert_eq!(env.sim.requests()[0].header("x-api-key"), Some(US_KEY));

    // The key file is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(env.path("scopable.db.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    assert!(
        env.run(&["itglue", "disconnect"])
            .ok()
            .contains("Disconnected")
    );
    assert_eq!(
        env.run(&["itglue", "status", "--json"]).json()["connected"],
        false
    );
    env.run(&["itglue", "test"]).fails(2, "no API key given");
}

#[test]
fn a_key_that_worked_before_leads_with_revocation() {
    let env = Env::new();
    env.connect();
    env.sim.set_key("us", Some("rotated"));
    let run = env.run(&["itglue", "test"]);
    run.fails(3, "That key didn't work");
    let revoked = run.stderr.find("90 days").expect("revocation hint");
    let recopy = run.stderr.find("re-copy").expect("re-copy hint");
    assert!(revoked < recopy, "revocation first: {}", run.stderr);
    assert!(run.stderr.contains("verified on"), "{}", run.stderr);
}

#[test]
fn a_wrong_vault_key_is_a_clear_error() {
    let env = Env::new();
    env.connect();
    let other = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let run = env.run_full(&["itglue", "test"], &[("SCOPABLE_VAULT_KEY", other)], None);
    run.fails(6, "cannot be decrypted");
    let run = env.run_full(
        &["itglue", "test"],
        &[("SCOPABLE_VAULT_KEY", "short")],
        None,
    );
    run.fails(6, "not base64 of 32 bytes");
    assert_eq!(
        env.sim.requests().len(),
        1,
        "only the connect request went out"
    );
}

#[test]
fn server_errors_are_retried_then_reported_as_unavailable() {
    let env = Env::new();
    env.sim.add_fault(FaultRule::next(1, Fault::unavailable()));
    let run = env.run_key(US_KEY, &["itglue", "test", "--endpoint", &env.endpoint()]);
    assert!(run.ok().contains("Verified"));
    assert_eq!(env.sim.requests().len(), 2, "one failure, one retry");

    env.sim
        .add_fault(FaultRule::new(When::Always, Fault::Html { status: 502 }));
    let (wasm, manifest) = env.itglue_with_limits("max_attempts = 3\nretry_base_ms = 10");
    let run = env.run_full(
        &[
            "--connector",
            &wasm,
            "--manifest",
            &manifest,
            "itglue",
            "test",
            "--endpoint",
            &env.endpoint(),
        ],
        &[("ITGLUE_API_KEY", US_KEY)],
        None,
    );
    run.fails(4, "unavailable");
}

#[test]
fn activity_lists_requests_and_never_the_key() {
    let env = Env::new();
    env.connect();
    let activity = env.run(&["itglue", "activity", "--json"]).json();
    // The newest request (the account's creation and the connection are events beside it).
    let first = activity
        .as_array()
        .expect("array")
        .iter()
        .find(|e| e["kind"] == "request")
        .expect("a request");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/organizations");
    assert_eq!(first["decision"], "allowed");
    assert_eq!(first["status"], 200);
    assert!(
        first["component_sha256"]
            .as_str()
            .is_some_and(|s| s.len() == 64)
    );
    assert!(first["at"].as_str().is_some());
    let text = env.run(&["itglue", "activity"]).ok().to_string();
    assert!(
        text.contains("GET") && text.contains("/organizations"),
        "{text}"
    );
    assert!(!activity.to_string().contains(US_KEY));
}

#[test]
fn audit_prints_the_surface_of_the_builtin_connector() {
    let env = Env::new();
    let (wasm, _) = env.itglue_with_limits("");
    let report = env.run(&["audit", &wasm, "--json"]).json();
    assert_eq!(report["accepted"], true, "{report}");
    let imports: Vec<&str> = report["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert!(
        imports
            .iter()
            .any(|i| i.starts_with("wasi:http/outgoing-handler@0.2")),
        "{imports:?}"
    );
    for i in &imports {
        assert!(
            [
                "wasi:http/",
                "wasi:io/",
                "wasi:clocks/",
                "wasi:random/",
                "wasi:cli/",
                "scopable:integration/"
            ]
            .iter()
            .any(|p| i.starts_with(p)),
            "unexpected import {i}"
        );
        assert!(!i.contains("filesystem") && !i.contains("sockets"), "{i}");
    }
    assert_eq!(
        report["manifest"]["hosts"]["eu"],
        "https://api.eu.itglue.com"
    );
    assert_eq!(report["manifest"]["credential"]["header"], "x-api-key");
    let text = env.run(&["audit", &wasm]).ok().to_string();
    assert!(
        text.contains("Verdict:   accepted") && text.contains("GET /organizations"),
        "{text}"
    );
}

#[test]
fn check_passes_on_the_itglue_connector() {
    let env = Env::new();
    let (wasm, manifest) = env.itglue_with_limits("");
    let run = env.run_key(
        US_KEY,
        &[
            "check",
            &wasm,
            "--manifest",
            &manifest,
            "--endpoint",
            &env.endpoint(),
            "--json",
        ],
    );
    let report = run.json();
    assert_eq!(report["passed"], true, "{report}");
    let checks = report["checks"].as_array().unwrap();
    assert!(checks.len() >= 10, "{report}");
    assert!(checks.iter().all(|c| c["result"] == "pass"), "{report}");
    let names: Vec<&str> = checks
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    for expected in [
        "error: 401",
        "error: 429",
        "error: 503",
        "paging: organizations",
        "paging: configurations",
        "match:",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(expected)),
            "{expected} missing: {names:?}"
        );
    }
    // Offline: the endpoint checks are skipped, the rest still pass.
    let table = env.run(&["check", &wasm, "--manifest", &manifest]);
    assert!(table.ok().contains("SKIP"), "{}", table.stdout);
    assert!(table.stdout.contains("0 failed"), "{}", table.stdout);
}

#[test]
fn the_stored_key_only_goes_where_it_was_connected() {
    let env = Env::new();
    env.connect();
    env.sim.clear_requests();
    let eu = env.sim.region_url("eu");
    let run = env.run(&["itglue", "test", "--endpoint", &eu]);
    run.fails(2, "only sent to");
    env.run(&["itglue", "test", "--region", "eu"])
        .fails(2, "only sent to");
    assert!(env.sim.requests().is_empty(), "{:?}", env.sim.requests());
    // Naming the connected endpoint again is fine.
    assert!(
        env.run(&["itglue", "test", "--endpoint", &env.endpoint()])
            .ok()
            .contains("Verified")
    );
}

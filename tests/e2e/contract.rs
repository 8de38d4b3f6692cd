//! Contract versions through the real binary: the IT Glue connector as built from the frozen
//! contract 0.1.0 (`tests/fixtures/itglue-0.1.0.wasm`) runs every command and gets the same
//! results as the built-in 0.2 connector, and a component of a contract version the host does
//! not run is refused by name before any request.

use crate::util::{Env, Run, US_KEY, assert_counts_add_up};
use serde_json::Value;

/// The IT Glue connector as built from contract 0.1.0, kept unchanged.
const FIXTURE: &[u8] = include_bytes!("../fixtures/itglue-0.1.0.wasm");
/// Its digest, as recorded in `tests/fixtures/README.md`.
const FIXTURE_SHA256: &str = "a72a010b0e2daf378dd7d158cd21dc244bd89d2a65cafac61e9b90ba8ebde675";

/// Which component runs the `itglue` commands.
enum Connector {
    /// The built-in (0.2) component.
    Builtin,
    /// `--connector WASM --manifest TOML`.
    File { wasm: String, manifest: String },
}

/// Writes `bytes` and the IT Glue manifest pinned to their digest into the workspace; returns
/// their paths.
fn pinned(env: &Env, name: &str, bytes: &[u8]) -> (String, String) {
    let wasm = env.write(&format!("{name}.wasm"), bytes);
    let sha256 = scopable_sandbox::sandbox::sha256_hex(bytes);
    let manifest = env.write(
        &format!("{name}.toml"),
        format!(
            "sha256 = \"{sha256}\"\n{}",
            scopable_builtin::ITGLUE_MANIFEST
        ),
    );
    (
        wasm.to_string_lossy().into_owned(),
        manifest.to_string_lossy().into_owned(),
    )
}

/// `scopable-host [--connector W --manifest M] itglue ARGS`, with `key` (if any) in
/// `ITGLUE_API_KEY`.
fn itglue(env: &Env, connector: &Connector, key: Option<&str>, args: &[&str]) -> Run {
    let mut all: Vec<&str> = Vec::new();
    if let Connector::File { wasm, manifest } = connector {
        all.extend_from_slice(&["--connector", wasm, "--manifest", manifest]);
    }
    all.push("itglue");
    all.extend_from_slice(args);
    let vars: Vec<(&str, &str)> = key.map(|k| ("ITGLUE_API_KEY", k)).into_iter().collect();
    env.run_full(&all, &vars, None)
}

/// The names of a component's imports, from `audit --json`.
fn imports(report: &Value) -> Vec<String> {
    let list = report["imports"].as_array().expect("imports is a list");
    list.iter()
        .filter_map(|i| i["name"].as_str().map(str::to_string))
        .collect()
}

/// Everything a connector's run leaves behind that does not depend on the clock.
#[derive(Debug, PartialEq)]
struct Outcome {
    /// `test --json`'s verdict and organization count.
    verified: (Value, Value),
    /// The organizations and configurations sync summaries, without their times.
    summaries: [Value; 2],
    /// `links --json`, without `linked_at`.
    links: Vec<Value>,
    /// `unplaced --json`.
    unplaced: Value,
    /// Every request the simulator saw: method, path, query, status.
    requests: Vec<(String, String, String, u16)>,
}

/// `value` (an object) without the keys in `drop`.
fn without(value: &Value, drop: &[&str]) -> Value {
    let mut value = value.clone();
    if let Some(map) = value.as_object_mut() {
        for key in drop {
            map.remove(*key);
        }
    }
    value
}

/// Tests, connects, imports the sample records and syncs both kinds with `connector` against
/// a fresh simulator holding the sample data and a fresh database; asserts that every request
/// was made by the component of digest `sha256`.
fn run_everything(sha256: &str, connector: impl Fn(&Env) -> Connector) -> Outcome {
    let env = Env::new();
    let connector = connector(&env);
    let endpoint = env.endpoint();
    let test = itglue(
        &env,
        &connector,
        Some(US_KEY),
        &["test", "--endpoint", &endpoint, "--json"],
    )
    .json();
    let connect = itglue(
        &env,
        &connector,
        Some(US_KEY),
        &["connect", "--region", "us", "--endpoint", &endpoint],
    );
    assert!(connect.ok().contains("Connected"), "{}", connect.stdout);
    env.import_sample();
    let summaries = ["organizations", "configurations"].map(|kind| {
        let summary = itglue(&env, &connector, None, &["sync", kind, "--json"]).json();
        assert_counts_add_up(&summary);
        assert_eq!(summary["errored"], 0, "{summary}");
        without(&summary, &["started_at", "finished_at"])
    });
    let links = itglue(&env, &connector, None, &["links", "--json"]).json();
    let links = links.as_array().expect("links is a list");
    let unplaced = itglue(&env, &connector, None, &["unplaced", "--json"]).json();
    let activity = itglue(&env, &connector, None, &["activity", "--json"]).json();
    let made: Vec<&Value> = activity
        .as_array()
        .expect("activity is a list")
        .iter()
        .filter(|a| a["kind"] == "request")
        .map(|a| &a["component_sha256"])
        .collect();
    assert!(!made.is_empty(), "{activity}");
    assert!(made.iter().all(|d| *d == sha256), "{activity}");
    let requests = env.sim.requests().into_iter();
    Outcome {
        verified: (
            test["verified"].clone(),
            test["total_organizations"].clone(),
        ),
        summaries,
        links: links.iter().map(|l| without(l, &["linked_at"])).collect(),
        unplaced,
        requests: requests
            .map(|r| (r.method, r.path, r.query, r.status))
            .collect(),
    }
}

#[test]
fn a_frozen_0_1_component_tests_syncs_and_passes_check() {
    assert_eq!(
        scopable_sandbox::sandbox::sha256_hex(FIXTURE),
        FIXTURE_SHA256,
        "the 0.1.0 fixture changed"
    );
    let builtin = run_everything(scopable_builtin::ITGLUE_SHA256, |_| Connector::Builtin);
    let frozen = run_everything(FIXTURE_SHA256, |env| {
        let (wasm, manifest) = pinned(env, "itglue-0.1.0", FIXTURE);
        Connector::File { wasm, manifest }
    });

    assert_eq!(builtin.verified.0, true, "{builtin:?}");
    assert!(
        builtin.verified.1.as_u64().is_some_and(|n| n > 0),
        "{builtin:?}"
    );
    for summary in &builtin.summaries {
        let linked = summary["linked"].as_u64().unwrap_or(0);
        assert!(linked > 0, "nothing linked: {summary}");
        assert_eq!(summary["new_links"], summary["linked"], "{summary}");
    }
    assert_eq!(
        builtin.links.len() as u64,
        builtin
            .summaries
            .iter()
            .map(|s| s["linked"].as_u64().unwrap_or(0))
            .sum::<u64>()
    );
    // Same data, same database setup: the 0.1 component gets exactly what the 0.2 one gets.
    assert_eq!(frozen.verified, builtin.verified);
    assert_eq!(frozen.summaries, builtin.summaries);
    assert_eq!(frozen.links, builtin.links);
    assert_eq!(frozen.unplaced, builtin.unplaced);
    assert_eq!(frozen.requests, builtin.requests);

    // `check` passes it, offline and against the simulator.
    let env = Env::new();
    let (wasm, manifest) = pinned(&env, "itglue-0.1.0", FIXTURE);
    let offline = env.run(&["check", &wasm, "--manifest", &manifest]);
    assert!(offline.ok().contains("0 failed"), "{}", offline.stdout);
    let online = env.run_key(
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
    let table = online.json();
    assert_eq!(table["passed"], true, "{table}");
    let rows = table["checks"].as_array().expect("checks");
    assert!(rows.iter().all(|r| r["result"] == "pass"), "{table}");
    assert!(
        rows.iter().any(|r| r["check"]
            .as_str()
            .is_some_and(|c| c.starts_with("paging:"))),
        "{table}"
    );

    // `audit` names each component's contract: the version of its types import, and no
    // contract interface of the other version.
    let (builtin_wasm, builtin_manifest) = env.itglue_with_limits("");
    for (component, component_manifest, version, other) in [
        (&wasm, &manifest, "0.1.0", "@0.2."),
        (&builtin_wasm, &builtin_manifest, "0.2.0", "@0.1."),
    ] {
        let audit = env.run(&[
            "audit",
            component,
            "--manifest",
            component_manifest,
            "--json",
        ]);
        let report = audit.json();
        assert_eq!(report["accepted"], true, "{report}");
        assert_eq!(report["contract"], version, "{report}");
        let names = imports(&report);
        let types = format!("scopable:integration/types@{version}");
        assert!(names.contains(&types), "{names:?}");
        assert!(
            !names
                .iter()
                .any(|n| n.contains(other) && n.starts_with("scopable:integration/")),
            "{names:?}"
        );
    }
}

/// `bytes` with every `from` replaced by `to` (of the same length); also returns how many
/// were replaced.
fn replace_all(bytes: &[u8], from: &[u8], to: &[u8]) -> (Vec<u8>, usize) {
    assert_eq!(
        from.len(),
        to.len(),
        "a same-length edit keeps every offset"
    );
    let mut out = Vec::with_capacity(bytes.len());
    let mut count = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
            count += 1;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    (out, count)
}

#[test]
fn a_component_of_an_unknown_contract_version_is_refused_by_name() {
    // The 0.1.0 fixture with its contract imports renamed to 0.9.0: the same component,
    // still valid, built (by its imports) for a contract the host does not run.
    let mut bytes = FIXTURE.to_vec();
    let mut renamed = 0;
    for interface in ["types", "storage", "log"] {
        let from = format!("scopable:integration/{interface}@0.1.0");
        let to = format!("scopable:integration/{interface}@0.9.0");
        let (edited, count) = replace_all(&bytes, from.as_bytes(), to.as_bytes());
        bytes = edited;
        renamed += count;
    }
    assert!(renamed > 0, "the fixture names no 0.1.0 contract import");
    assert_ne!(bytes.as_slice(), FIXTURE);

    let env = Env::new();
    let (wasm, manifest) = pinned(&env, "itglue-0.9.0", &bytes);

    // wasmtime reads it as a component: audit lists the 0.9.0 import and refuses it by name.
    let audit = env.run(&["audit", &wasm, "--manifest", &manifest, "--json"]);
    assert_eq!(audit.code, 5, "{}\n{}", audit.stdout, audit.stderr);
    let report: Value = serde_json::from_str(&audit.stdout).expect("audit JSON");
    assert_eq!(report["accepted"], false, "{report}");
    assert_eq!(report["contract"], Value::Null, "{report}");
    assert!(
        report["reasons"]
            .to_string()
            .contains("it runs 0.1.0 and 0.2.0"),
        "{report}"
    );
    let names = imports(&report);
    assert!(
        names
            .iter()
            .any(|n| n == "scopable:integration/types@0.9.0"),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.contains("@0.1.0")),
        "the edit left a 0.1.0 import: {names:?}"
    );
    let reasons = report["reasons"].to_string();
    assert!(
        reasons.contains("scopable:integration/types@0.9.0"),
        "{report}"
    );
    assert!(
        !report["exports"].as_array().is_none_or(Vec::is_empty),
        "{report}"
    );

    // test and connect refuse to load it.
    let endpoint = env.endpoint();
    for command in [
        vec!["test", "--endpoint", endpoint.as_str()],
        vec!["connect", "--region", "us", "--endpoint", endpoint.as_str()],
    ] {
        let connector = Connector::File {
            wasm: wasm.clone(),
            manifest: manifest.clone(),
        };
        let refused = itglue(&env, &connector, Some(US_KEY), &command);
        refused.fails(5, "scopable:integration/types@0.9.0");
        // Refused by name, with the versions this host runs.
        assert!(
            refused.stderr.contains("it runs 0.1.0 and 0.2.0"),
            "{}",
            refused.stderr
        );
        assert!(refused.stdout.is_empty(), "{}", refused.stdout);
    }
    let status = itglue(&env, &Connector::Builtin, None, &["status", "--json"]).json();
    assert_eq!(status["connected"], false, "{status}");

    // check fails its load row, naming the version, and runs nothing else.
    let check = env.run_key(
        US_KEY,
        &[
            "check",
            &wasm,
            "--manifest",
            &manifest,
            "--endpoint",
            &endpoint,
            "--json",
        ],
    );
    assert_eq!(check.code, 5, "{}\n{}", check.stdout, check.stderr);
    let table: Value = serde_json::from_str(&check.stdout).expect("check JSON");
    assert_eq!(table["passed"], false, "{table}");
    let rows = table["checks"].as_array().expect("checks");
    assert_eq!(rows.len(), 1, "{table}");
    assert_eq!(rows[0]["result"], "fail", "{table}");
    assert!(
        rows[0]["check"]
            .as_str()
            .is_some_and(|c| c.starts_with("load:")),
        "{table}"
    );
    assert!(
        rows[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("scopable:integration/types@0.9.0")
                && d.contains("it runs 0.1.0 and 0.2.0")),
        "{table}"
    );

    assert!(env.sim.requests().is_empty(), "{:?}", env.sim.requests());
}

/// `match`'s input for `n` IT Glue configurations under 50 organizations, each with a Scopable
/// twin (same serial, MACs and hostname) in the organization's client.
fn fresh_instance_input(n: usize) -> scopable_sandbox::sandbox::wit_types::MatchInput {
    use scopable_sandbox::sandbox::wit_types as t;
    let mac = |i: usize, k: usize| {
        format!(
            "00:1a:{:02x}:{:02x}:{:02x}:{k:02x}",
            i >> 16 & 0xff,
            i >> 8 & 0xff,
            i & 0xff
        )
    };
    t::MatchInput::Configurations(t::ConfigurationMatch {
        configurations: (0..n)
            .map(|i| t::Configuration {
                id: format!("{}", 1_000_000 + i),
                organization_id: format!("{}", i % 50),
                name: format!("Workstation {i} of the front office"),
                hostname: Some(format!("ws-{i}.office.example")),
                primary_ip: Some(format!("10.0.{}.{}", i / 250 % 250, i % 250)),
                serial_number: Some(format!("SN-{i:08}")),
                mac_addresses: vec![mac(i, 1), mac(i, 2)],
                type_name: Some("Workstation".to_string()),
                archived: false,
            })
            .collect(),
        scopable_configurations: (0..n)
            .map(|i| t::ScopableConfiguration {
                id: format!("scp-{i}"),
                client_id: format!("client-{}", i % 50),
                name: format!("Workstation {i}"),
                hostname: Some(format!("ws-{i}")),
                serial_number: Some(format!("sn-{i:08}")),
                mac_addresses: vec![mac(i, 1), mac(i, 2)],
            })
            .collect(),
        parents: (0..50)
            .map(|o| t::Pair {
                source_id: o.to_string(),
                scopable_id: format!("client-{o}"),
            })
            .collect(),
        manual_links: Vec::new(),
        ignored: Vec::new(),
    })
}

/// Every export call runs in a fresh instance (`docs/connector-guide.md`): what one call leaves
/// allocated goes with it, which the built-in connector relies on (`discard` leaves each page
/// and `match`'s input allocated). Under a memory limit that one call with four times the
/// records exceeds, twenty calls one after the other all succeed and place every record.
#[test]
fn every_call_runs_in_a_fresh_instance_whatever_the_last_left_allocated() {
    use scopable_sandbox::manifest::Manifest;
    use scopable_sandbox::policy::BaseUrl;
    use scopable_sandbox::sandbox::{CallContext, Sandbox, wit_types as t};
    const RECORDS: usize = 6_000;
    let env = Env::new();
    let (_, manifest) = env.itglue_with_limits("memory_mb = 24");
    let text = std::fs::read_to_string(&manifest).expect("read the manifest");
    let manifest = Manifest::parse(&text, "test manifest").expect("manifest");
    let sandbox = Sandbox::new(None).expect("sandbox");
    let connector = sandbox
        .load(
            scopable_builtin::ITGLUE_WASM,
            manifest,
            Some(scopable_builtin::ITGLUE_SHA256),
        )
        .expect("load the built-in connector");
    let base = BaseUrl::parse("http://127.0.0.1:9").expect("base URL");
    let ctx = CallContext::standalone(&connector, base, US_KEY).expect("context");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    // The limit is real: four times the records in one call exceed it.
    let err = match rt.block_on(connector.match_records(&ctx, fresh_instance_input(4 * RECORDS))) {
        Ok(placements) => panic!(
            "{} placements: four times the records fit",
            placements.len()
        ),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("memory_mb"), "not the memory limit: {err}");

    // Twenty calls, one after the other: none sees what the ones before it left.
    for call in 1..=20 {
        let placements = rt
            .block_on(connector.match_records(&ctx, fresh_instance_input(RECORDS)))
            .unwrap_or_else(|e| panic!("call {call} failed: {e}"));
        let linked = placements
            .iter()
            .filter(|p| matches!(p.outcome, t::Outcome::Linked(_)))
            .count();
        assert_eq!(
            (placements.len(), linked),
            (RECORDS, RECORDS),
            "call {call}"
        );
    }
}

//! A sync that stages its pages and places them in batches gives exactly the result of the
//! sync that held the whole listing in memory: the same counts, links, unplaced rows and
//! change report, recorded in `tests/fixtures/streamed-sync.json` by the in-memory sync, on a
//! data set with every reason in it, pages of 7 arriving out of order, id-less and
//! unreadable records, manual decisions, and records gone or changed between two syncs.
//!
//! `SCOPABLE_REGENERATE_FIXTURES=1` writes the fixture instead of comparing with it.

use crate::util::Env;
use itglue_sim::{Dataset, Fault, FaultRule, SimConfig, When};
use serde_json::{Value, json};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/streamed-sync.json"
);

const TYRELL: u64 = 3_100_101;

/// Pages of 7, so the sample spans many pages and they arrive out of order.
const LIMITS: &str = "page_size = 7";

/// The sample with hostile and awkward configurations after it.
fn first_dataset() -> Dataset {
    let mut ds = itglue_sim::sample_dataset();
    ds.raw_configurations = vec![
        // No id, twice: each gets a placeholder.
        json!({"type": "configurations", "attributes": {"name": "No id", "organization-id": TYRELL}}),
        // A real record whose id looks like a placeholder: the placeholders go round it.
        json!({"id": "(no id #2)", "type": "configurations", "attributes": {
            "name": "Looks like a placeholder", "organization-id": TYRELL}}),
        json!({"type": "configurations", "attributes": {"name": "No id either", "organization-id": TYRELL}}),
        // Unreadable with an id: an empty organization id, a line break in the id.
        json!({"id": "8299001", "type": "configurations", "attributes": {
            "name": "No organization", "organization-id": ""}}),
        json!({"id": "8299002\nforged", "type": "configurations", "attributes": {
            "name": "Forged", "organization-id": TYRELL}}),
        // Under an organization IT Glue does not list.
        json!({"id": "8299003", "type": "configurations", "attributes": {
            "name": "Orphan", "organization-id": 9_999_999, "serial-number": "ORPHAN-1234"}}),
    ];
    ds
}

/// The second listing: one linked record gone, one linked record no longer matching.
fn second_dataset() -> Dataset {
    let mut ds = first_dataset();
    ds.configurations.retain(|c| c.id != 8_200_103);
    for c in &mut ds.configurations {
        if c.id == 8_200_104 {
            *c = itglue_sim::Config::new(8_200_104, TYRELL, "TY-WS05").with_mac("3c52.821a.0000");
        }
    }
    ds
}

/// Drops every key naming a time (`*_at`), which differs from run to run.
fn timeless(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| !k.ends_with("_at"))
                .map(|(k, v)| (k, timeless(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(timeless).collect()),
        other => other,
    }
}

/// Runs the scenario with `env` variables set on every command; returns what it saw.
fn scenario(vars: &[(&str, &str)]) -> Value {
    let env = Env::with(SimConfig::with_dataset(first_dataset()));
    env.connect();
    env.import_sample();
    let (wasm, manifest) = env.itglue_with_limits(LIMITS);
    let itglue = |args: &[&str]| {
        let mut all = vec!["--connector", &wasm, "--manifest", &manifest, "itglue"];
        all.extend_from_slice(args);
        env.run_full(&all, vars, None)
    };
    let mut seen = serde_json::Map::new();
    for kind in ["organizations", "configurations"] {
        let counts = itglue(&["sync", kind, "--json"]).json();
        seen.insert(format!("first {kind}"), timeless(counts));
    }
    seen.insert(
        "first links".into(),
        timeless(itglue(&["links", "--json"]).json()),
    );
    seen.insert(
        "first unplaced".into(),
        timeless(itglue(&["unplaced", "--json"]).json()),
    );
    // A linked record decided by hand, another ignored.
    itglue(&["ignore", "configuration", "8200102"]).ok();
    itglue(&["ignore", "configuration", "8200120"]).ok();
    env.sim.set_dataset(second_dataset());
    let dry = itglue(&["sync", "configurations", "--dry-run"]);
    seen.insert("dry run report".into(), json!(dry.ok()));
    let report = itglue(&["sync", "configurations"]);
    seen.insert("second report".into(), json!(report.ok()));
    let again = itglue(&["sync", "configurations", "--json"]).json();
    seen.insert("unchanged".into(), timeless(again));
    seen.insert(
        "second links".into(),
        timeless(itglue(&["links", "--json"]).json()),
    );
    seen.insert(
        "second unplaced".into(),
        timeless(itglue(&["unplaced", "--json"]).json()),
    );
    Value::Object(seen)
}

fn compare(vars: &[(&str, &str)]) {
    let got = scenario(vars);
    if std::env::var_os("SCOPABLE_REGENERATE_FIXTURES").is_some() {
        let text = serde_json::to_string_pretty(&got).expect("serialize");
        std::fs::write(FIXTURE, text + "\n").expect("write the fixture");
        return;
    }
    let want: Value = serde_json::from_str(&std::fs::read_to_string(FIXTURE).expect("fixture"))
        .expect("the fixture is JSON");
    let (want, got) = (want.as_object().unwrap(), got.as_object().unwrap());
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (key, expected) in want {
        assert_eq!(&got[key], expected, "{key} differs ({vars:?})");
    }
}

#[test]
fn a_streamed_sync_gives_the_in_memory_result() {
    compare(&[]);
}

/// Batches of 5 records split every client's neighbours apart, and the unlinked
/// configurations into several calls: still the same result.
#[test]
fn a_streamed_sync_in_small_batches_gives_the_same_result() {
    compare(&[("SCOPABLE_MATCH_BATCH", "5")]);
}

/// Clients are matched while later pages still arrive, as soon as their records stopped
/// coming; a record arriving later for a client matched already (here one wanting the same
/// Scopable server as a record matched early), or an id listed on two pages, voids that early
/// batch, and its clients are matched again after the last page. Matching early in batches
/// of one gives what matching after the last page gives.
#[test]
fn early_matching_is_undone_by_late_and_repeated_records() {
    let sample = itglue_sim::sample_dataset();
    let other_org = sample
        .configurations
        .iter()
        .map(|c| c.organization_id)
        .find(|&org| org != TYRELL)
        .expect("the sample has configurations of another organization");
    let mut ds = first_dataset();
    // After every typed configuration, so on the last pages.
    ds.raw_configurations.extend([
        // Late for Tyrell, with the serial of TY-FS01 (8200102, linked by serial otherwise):
        // both now want one Scopable server.
        json!({"id": "8299101", "type": "configurations", "attributes": {
            "name": "TY-FS01 twin", "organization-id": TYRELL, "serial-number": "CZ2841AB7Q"}}),
        // TY-DC01's id again, under another organization: the first page's copy stays.
        json!({"id": "8200101", "type": "configurations", "attributes": {
            "name": "Listed twice", "organization-id": other_org}}),
    ]);
    let run = |vars: &[(&str, &str)]| {
        let env = Env::with(SimConfig::with_dataset(ds.clone()));
        // The listing reports what arrives once the repeated id counts once.
        env.sim.add_fault(FaultRule::new(
            When::PathPrefix("/configurations".into()),
            Fault::ShiftTotal(-1),
        ));
        env.connect();
        env.import_sample();
        // One request at a time, each taking a while: the pages arrive in order, and the
        // clients of the first pages are ready before the last page comes.
        let (wasm, manifest) = env.itglue_with_limits("page_size = 7\nconcurrency = 1");
        let itglue = |args: &[&str]| {
            let mut all = vec!["--connector", &wasm, "--manifest", &manifest, "itglue"];
            all.extend_from_slice(args);
            env.run_full(&all, vars, None)
        };
        itglue(&["sync", "organizations", "--json"]).ok();
        env.sim.set_latency(std::time::Duration::from_millis(40));
        let sync = itglue(&["sync", "configurations", "--json"]);
        let seen = json!({
            "counts": timeless(sync.json()),
            "links": timeless(itglue(&["links", "--json"]).json()),
            "unplaced": timeless(itglue(&["unplaced", "--json"]).json()),
        });
        (seen, sync.stderr.clone())
    };
    let (after_the_end, _) = run(&[]);
    let (early, log) = run(&[
        ("SCOPABLE_MATCH_BATCH", "1"),
        ("SCOPABLE_LOG", "scopable_sync=debug"),
    ]);
    assert_eq!(early, after_the_end);
    // The late twin and TY-FS01 both stay unplaced: the early link of TY-FS01 was undone.
    let linked: Vec<&str> = after_the_end["links"]
        .as_array()
        .expect("links")
        .iter()
        .filter_map(|l| l["source_id"].as_str())
        .collect();
    assert!(!linked.contains(&"8200102"), "{linked:?}");
    assert!(!linked.contains(&"8299101"), "{linked:?}");
    // Batches were matched early, and some of them were void.
    let field = |name: &str| -> u64 {
        let line = log
            .lines()
            .find(|l| l.contains("configurations matched while the pages arrived"))
            .unwrap_or_else(|| panic!("no early matching logged:\n{log}"));
        let start = line.find(&format!("{name}=")).expect(name) + name.len() + 1;
        line[start..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .expect("a count")
    };
    let (batches, standing) = (field("batches"), field("standing"));
    assert!(
        standing > 0 && standing < batches,
        "{batches} batches, {standing} standing"
    );
}

/// A batch size outside 1 to 1,000,000 is refused before the sync starts: no request, no run.
#[test]
fn a_bad_batch_size_is_refused_before_the_sync_starts() {
    let env = Env::new();
    env.connect();
    env.import_sample();
    env.sim.clear_requests();
    for bad in ["0", "1000001", "many"] {
        env.run_full(
            &["itglue", "sync", "configurations", "--json"],
            &[("SCOPABLE_MATCH_BATCH", bad)],
            None,
        )
        .fails(
            2,
            "SCOPABLE_MATCH_BATCH must be a number of records from 1 to 1000000",
        );
    }
    assert!(env.sim.requests().is_empty(), "{:?}", env.sim.requests());
    let runs: i64 = env
        .sqlite()
        .query_row("SELECT count(*) FROM sync_runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(runs, 0);
}

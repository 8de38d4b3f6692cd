//! Syncs end to end: the guide's matching cases, manual decisions, dry runs, re-imports,
//! idempotence, counting, JSON shapes and the simulator's view of what was requested.

use crate::util::{Env, assert_counts_add_up};
use itglue_sim::{Config, Dataset, Org, SimConfig};
use serde_json::Value;
use std::collections::BTreeMap;

const CFG_HEADER: &str = "id,client_id,name,hostname,serial_number,mac_address\n";

fn env_with(orgs: Vec<Org>, configs: Vec<Config>) -> Env {
    let env = Env::with(SimConfig::with_dataset(Dataset {
        organizations: orgs,
        configurations: configs,
        ..Dataset::default()
    }));
    env.connect();
    env
}

/// itglue id -> (reason, candidates, suggestions) from `unplaced --json`.
fn unplaced(env: &Env, kind: &str) -> BTreeMap<String, (String, Vec<String>, Vec<String>)> {
    let list = env.run(&["itglue", "unplaced", "--json"]).json();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    list.as_array()
        .unwrap()
        .iter()
        .filter(|u| u["kind"] == kind)
        .map(|u| {
            (
                u["itglue_id"].as_str().unwrap().to_string(),
                (
                    u["reason"].as_str().unwrap().to_string(),
                    strings(&u["candidates"]),
                    strings(&u["suggestions"]),
                ),
            )
        })
        .collect()
}

/// itglue id -> (scopable id, source, evidence) from `links --json`.
fn links(env: &Env, kind: &str) -> BTreeMap<String, (String, String, Vec<String>)> {
    let list = env.run(&["itglue", "links", "--json"]).json();
    list.as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] == kind)
        .map(|l| {
            let evidence = l["evidence"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e.as_str().unwrap().to_string())
                .collect();
            (
                l["itglue_id"].as_str().unwrap().to_string(),
                (
                    l["scopable_id"].as_str().unwrap().to_string(),
                    l["source"].as_str().unwrap().to_string(),
                    evidence,
                ),
            )
        })
        .collect()
}

fn reason(u: &BTreeMap<String, (String, Vec<String>, Vec<String>)>, id: &str) -> String {
    u.get(id)
        .map(|r| r.0.clone())
        .unwrap_or_else(|| format!("<not listed: {u:?}>"))
}

#[test]
fn organizations_link_on_exact_normalized_names_only() {
    let orgs = vec![
        Org::new(1, "ACME, Inc."),
        Org::new(2, "ｔｙｒｅｌｌ ｓｙｓｔｅｍｓ"),
        Org::new(3, "North\u{200b}wind  Traders"),
        Org::new(4, "Blue\u{a0}Harbor Dental"),
        Org::new(5, "Adventure Works"),
        Org::new(6, "Coho Winery"),
        Org::new(7, "COHO WINERY"),
        Org::new(8, "Contoso LLC"),
        Org::new(9, ""),
        Org::new(10, "Fabrikam"),
    ];
    let env = env_with(orgs, vec![]);
    env.import(
        "id,name\nc1,Acme Inc\nc2,Tyrell Systems\nc3,Northwind Traders\nc4,Blue Harbor Dental\nc5,Adventure Works\nc6,adventure-works\nc7,Coho Winery\nc8,Contoso\n",
        CFG_HEADER,
    );
    let summary = env.sync("organizations");
    assert_counts_add_up(&summary);
    assert_eq!(summary["fetched"], 10);
    assert_eq!(summary["linked"], 4);
    assert_eq!(summary["new_links"], 4);
    let l = links(&env, "organization");
    for (it, client) in [("1", "c1"), ("2", "c2"), ("3", "c3"), ("4", "c4")] {
        assert_eq!(l[it].0, client, "{l:?}");
        assert_eq!(l[it].1, "auto");
        assert_eq!(l[it].2, vec!["name"]);
    }
    let u = unplaced(&env, "organization");
    assert_eq!(
        u["5"],
        (
            "multiple-clients".into(),
            vec!["c5".into(), "c6".into()],
            vec![]
        )
    );
    assert_eq!(reason(&u, "6"), "multiple-organizations");
    assert_eq!(u["7"].1, vec!["c7".to_string()]);
    assert_eq!(u["8"], ("no-match".into(), vec![], vec!["c8".into()]));
    assert_eq!(reason(&u, "9"), "empty-name");
    assert_eq!(u["10"], ("no-match".into(), vec![], vec![]));
    // Nothing was created: still eight clients.
    let clients: i64 = env
        .sqlite()
        .query_row("SELECT count(*) FROM clients", [], |r| r.get(0))
        .unwrap();
    assert_eq!(clients, 8);
}

fn tyrell_configs() -> Vec<Config> {
    vec![
        Config::new(101, 1, "DC").with_hostname("ty-dc01.corp.local"),
        Config::new(102, 1, "File server").with_serial(" cz2841ab7q"),
        Config::new(103, 1, "Reception").with_mac("3C-52-82-1A-9F-04"),
        Config::new(104, 1, "Laptop")
            .with_interface(Some("00:00:00:00:00:00"), None, true)
            .with_interface(Some("3c52.821a.9f05"), None, false),
        Config::new(105, 1, "Placeholder serial").with_serial("To Be Filled By O.E.M."),
        Config::new(106, 1, "Placeholder mac").with_mac("00:00:00:00:00:00"),
        Config::new(107, 1, "Conflict")
            .with_hostname("TY-SRV03")
            .with_serial("SERIAL-AAA1"),
        Config::new(108, 1, "NAS a").with_serial("NAS-SERIAL-1"),
        Config::new(109, 1, "NAS b").with_serial("NAS-SERIAL-1"),
        Config::new(110, 1, "Old workstation")
            .with_hostname("TY-WS09")
            .with_serial("WS09-SERIAL")
            .archived(),
        Config::new(111, 1, "By IP").with_hostname("10.0.0.15"),
        Config::new(112, 1, "Near miss").with_hostname("ty-ws02-old"),
        Config::new(113, 1, "Two MACs in one cell").with_mac("aa:bb:cc:00:11:22"),
        Config::new(201, 2, "Under an unmatched org").with_serial("ORPHAN-1234"),
    ]
}

const TYRELL_CSV: &str = "id,client_id,name,hostname,serial_number,mac_address
s1,c1,DC,TY-DC01,,
s2,c1,File server,,CZ2841AB7Q,
s3,c1,Reception,,,3c:52:82:1a:9f:04
s4,c1,Laptop,,,3C521A9F05ZZ 3c:52:82:1a:9f:05
s5,c1,Has OEM serial,,To Be Filled By O.E.M.,
s6,c1,Has zero mac,,,00-00-00-00-00-00
s7,c1,Conflict target,TY-SRV03,SERIAL-BBB2,
s8,c1,NAS,,NAS-SERIAL-1,
s10,c1,Workstation 9,TY-WS09,WS09-SERIAL,
s11,c1,By IP,10.0.0.15,,
s12,c1,Workstation 2,TY-WS02,,
s13,c1,Two MACs,,,de:ad:be:ef:00:01;aa:bb:cc:00:11:22
s20,c2,Orphan target,,ORPHAN-1234,
";

fn tyrell_env() -> Env {
    let env = env_with(
        vec![Org::new(1, "Tyrell Systems"), Org::new(2, "Unmatched Org")],
        tyrell_configs(),
    );
    env.import("id,name\nc1,Tyrell Systems\nc2,Somebody Else\n", TYRELL_CSV);
    env.sync("organizations");
    env
}

#[test]
fn configurations_link_on_serial_mac_and_hostname_evidence() {
    let env = tyrell_env();
    let summary = env.sync("configurations");
    assert_counts_add_up(&summary);
    assert_eq!(summary["fetched"], 14);
    let l = links(&env, "configuration");
    assert_eq!(
        l["101"],
        ("s1".into(), "auto".into(), vec!["hostname".into()])
    );
    assert_eq!(
        l["102"],
        ("s2".into(), "auto".into(), vec!["serial".into()])
    );
    assert_eq!(l["103"], ("s3".into(), "auto".into(), vec!["mac".into()]));
    assert_eq!(
        l["104"].0, "s4",
        "a MAC on a secondary interface, any separator"
    );
    assert_eq!(l["113"].0, "s13", "one of several MACs in a CSV cell");
    let u = unplaced(&env, "configuration");
    assert_eq!(
        reason(&u, "105"),
        "no-match",
        "placeholder serial is not evidence"
    );
    assert_eq!(
        reason(&u, "106"),
        "no-match",
        "placeholder MAC is not evidence"
    );
    assert_eq!(u["107"].0, "conflict");
    assert_eq!(u["107"].1, vec!["s7".to_string()]);
    assert_eq!(reason(&u, "108"), "target-taken");
    assert_eq!(reason(&u, "109"), "target-taken");
    assert_eq!(reason(&u, "110"), "archived");
    assert_eq!(
        reason(&u, "111"),
        "no-match",
        "an IP address is not a hostname"
    );
    assert_eq!(
        reason(&u, "112"),
        "no-match",
        "similar hostnames never link"
    );
    assert_eq!(u["201"], ("parent-unplaced".into(), vec![], vec![]));
    assert_eq!(l.len() as u64, summary["linked"].as_u64().unwrap());
    assert!(!l.contains_key("201"));
}

#[test]
fn a_second_sync_changes_nothing() {
    let env = tyrell_env();
    let first = env.sync("configurations");
    assert!(first["new_links"].as_u64().unwrap() > 0);
    let before = links(&env, "configuration");
    for kind in ["organizations", "configurations"] {
        let again = env.sync(kind);
        assert_eq!(again["new_links"], 0, "{again}");
        assert_eq!(again["removed_links"], 0, "{again}");
        assert_counts_add_up(&again);
    }
    assert_eq!(links(&env, "configuration"), before);
}

#[test]
fn manual_links_and_ignores_survive_syncs() {
    let env = tyrell_env();
    env.sync("configurations");
    // Link the conflicting one by hand; ignore the archived one; change a match by hand.
    assert!(
        env.run(&["itglue", "link", "configuration", "107", "s7"])
            .ok()
            .contains("by hand")
    );
    env.run(&["itglue", "ignore", "configuration", "110"]).ok();
    env.run(&["itglue", "link", "configuration", "111", "s11"])
        .ok();
    env.run(&["itglue", "link", "configuration", "101", "s12"])
        .ok();
    let again = env.sync("configurations");
    assert_counts_add_up(&again);
    let l = links(&env, "configuration");
    assert_eq!(
        l["107"],
        ("s7".into(), "manual".into(), vec!["manual".into()])
    );
    assert_eq!(l["101"].0, "s12", "a change of match by hand sticks");
    assert_eq!(l["101"].1, "manual");
    assert!(!l.contains_key("110"));
    let u = unplaced(&env, "configuration");
    assert!(!u.contains_key("110"), "ignored records are not listed");
    assert!(!u.contains_key("107"));
    // Reset hands the record back to automatic matching.
    env.run(&["itglue", "reset", "configuration", "101"]).ok();
    env.sync("configurations");
    assert_eq!(
        links(&env, "configuration")["101"],
        ("s1".into(), "auto".into(), vec!["hostname".into()])
    );
}

#[test]
fn link_refuses_what_does_not_exist_or_crosses_clients() {
    let env = tyrell_env();
    env.sync("configurations");
    env.run(&["itglue", "link", "organization", "1", "nope"])
        .fails(6, "does not exist");
    env.run(&["itglue", "link", "organization", "999", "c1"])
        .fails(6, "not known");
    env.run(&["itglue", "link", "configuration", "105", "s20"])
        .fails(6, "belongs to client c2");
    env.run(&["itglue", "link", "configuration", "201", "s20"])
        .fails(6, "not linked to a client");
    env.run(&["itglue", "reset", "configuration", "105"])
        .fails(6, "no manual decision");
    env.run(&["itglue", "link", "banana", "1", "c1"])
        .fails(2, "banana");
}

#[test]
fn a_dry_run_changes_nothing() {
    let env = tyrell_env();
    let before_links = links(&env, "organization");
    let dry = env
        .run(&["itglue", "sync", "configurations", "--dry-run", "--json"])
        .json();
    assert_eq!(dry["dry_run"], true);
    assert!(dry["new_links"].as_u64().unwrap() > 0);
    assert!(links(&env, "configuration").is_empty());
    assert_eq!(links(&env, "organization"), before_links);
    let human = env.run(&["itglue", "sync", "configurations", "--dry-run"]);
    assert!(
        human.ok().contains("Dry run (nothing changed)"),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("+ 102 -> configuration s2"),
        "{}",
        human.stdout
    );
    let real = env.sync("configurations");
    assert_eq!(real["new_links"], dry["new_links"]);
    assert_eq!(real["linked"], dry["linked"]);
}

#[test]
fn stale_automatic_links_are_removed_not_repointed() {
    let env = tyrell_env();
    env.sync("configurations");
    assert_eq!(links(&env, "configuration")["102"].0, "s2");
    // Re-import moves s2 to another client: its automatic link must go.
    env.import(
        "id,name\nc1,Tyrell Systems\nc2,Somebody Else\n",
        &TYRELL_CSV.replace("s2,c1,", "s2,c2,"),
    );
    let again = env.sync("configurations");
    assert_eq!(again["removed_links"], 1, "{again}");
    assert_eq!(again["new_links"], 0, "{again}");
    assert!(!links(&env, "configuration").contains_key("102"));

    // Renaming the organization in IT Glue removes its link and, with it, its configurations'.
    let mut ds = Dataset {
        organizations: vec![
            Org::new(1, "Tyrell Systems Renamed"),
            Org::new(2, "Unmatched Org"),
        ],
        configurations: tyrell_configs(),
        ..Dataset::default()
    };
    env.sim.set_dataset(ds.clone());
    let orgs = env.sync("organizations");
    assert_eq!(orgs["removed_links"], 1);
    let configs = env.sync("configurations");
    assert!(configs["removed_links"].as_u64().unwrap() >= 1);
    assert_eq!(configs["linked"], 0);
    assert!(links(&env, "configuration").is_empty());

    // A record deleted in IT Glue loses its automatic link.
    ds.organizations[0].name = "Tyrell Systems".into();
    env.sim.set_dataset(ds.clone());
    env.sync("organizations");
    ds.organizations.remove(0);
    env.sim.set_dataset(ds);
    let gone = env.sync("organizations");
    assert_eq!(gone["removed_links"], 1);
    assert!(links(&env, "organization").is_empty());
}

#[test]
fn json_shapes_are_exact() {
    let env = tyrell_env();
    let s = env.sync("configurations");
    let keys: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected = vec![
        "kind",
        "fetched",
        "linked",
        "skipped",
        "errored",
        "new_links",
        "removed_links",
        "requests",
        "dry_run",
        "started_at",
        "finished_at",
    ];
    expected.sort();
    let mut got = keys.clone();
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(s["kind"], "configuration");
    assert!(s["requests"].as_u64().unwrap() >= 1);
    let l = env.run(&["itglue", "links", "--json"]).json();
    let first = &l[0];
    let mut got: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    got.sort();
    // The product's keys, plus the runtime's additions (names, `source_id`).
    assert_eq!(
        got,
        vec![
            "evidence",
            "itglue_id",
            "kind",
            "linked_at",
            "name",
            "scopable_id",
            "scopable_name",
            "source",
            "source_id"
        ]
    );
    assert!(first["itglue_id"].is_string() && first["scopable_id"].is_string());
    let u = env.run(&["itglue", "unplaced", "--json"]).json();
    let mut got: Vec<&str> = u[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    got.sort();
    // The product's keys, plus the runtime's additions (names beside the ids, `source_id`)
    // and the reason in plain words.
    assert_eq!(
        got,
        vec![
            "candidate_names",
            "candidates",
            "itglue_id",
            "kind",
            "name",
            "reason",
            "reason_label",
            "reason_text",
            "scopable_name",
            "source_id",
            "suggestion_names",
            "suggestions"
        ]
    );
    let status = env.run(&["itglue", "status", "--json"]).json();
    assert_eq!(status["configuration"]["status"], "ok");
    assert!(status["configuration"]["error"].is_null());
    assert_eq!(status["configuration"]["linked"], s["linked"]);
    assert_eq!(status["organization"]["kind"], "organization");
    let activity = env.run(&["itglue", "activity", "--json"]).json();
    assert!(
        activity
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "sync")
    );
}

#[test]
fn the_simulator_only_ever_sees_declared_gets() {
    let env = tyrell_env();
    env.sync("configurations");
    env.run(&["itglue", "sync", "organizations", "--dry-run"])
        .ok();
    let requests = env.sim.requests();
    assert!(requests.len() >= 4);
    for r in requests {
        assert_eq!(r.method, "GET");
        assert!(
            r.path == "/organizations" || r.path == "/configurations",
            "{}",
            r.path
        );
        assert_eq!(r.body_len, 0);
        assert_eq!(r.header("x-api-key"), Some(crate::util::US_KEY));
        if r.path == "/configurations" {
            assert!(
                r.query.contains("include=configuration_interfaces"),
                "{}",
                r.query
            );
        }
    }
}

#[test]
fn sync_needs_a_connection_and_failures_are_recorded() {
    let env = Env::new();
    env.run(&["itglue", "sync", "organizations", "--json"])
        .fails(2, "not connected");
    env.connect();
    env.sim.set_key("us", Some("revoked"));
    let failed = env.run(&["itglue", "sync", "organizations", "--json"]);
    failed.fails(3, "That key didn't work");
    assert!(failed.stdout.is_empty(), "--json prints nothing on failure");
    let status = env.run(&["itglue", "status", "--json"]).json();
    assert_eq!(status["organization"]["status"], "failed");
    assert!(
        status["organization"]["error"]
            .as_str()
            .unwrap()
            .contains("That key didn't work")
    );
}

#[test]
fn several_pages_are_fetched_and_counted() {
    let orgs: Vec<Org> = (1..=2500)
        .map(|i| Org::new(i, &format!("Customer {i}")))
        .collect();
    let env = env_with(orgs, vec![]);
    let mut clients = String::from("id,name\n");
    for i in (1..=2500).step_by(2) {
        clients.push_str(&format!("c{i},Customer {i}\n"));
    }
    env.import(&clients, CFG_HEADER);
    env.sim.clear_requests();
    let s = env.sync("organizations");
    assert_counts_add_up(&s);
    assert_eq!(s["fetched"], 2500);
    assert_eq!(s["linked"], 1250);
    assert_eq!(s["requests"], 3, "2500 records at 1000 a page");
    let pages: Vec<String> = env
        .sim
        .requests()
        .iter()
        .filter(|r| r.path == "/organizations")
        .map(|r| r.query.clone())
        .collect();
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert!(
        pages
            .iter()
            .all(|q| q.contains("sort=id") && q.contains("page%5Bsize%5D=1000")),
        "{pages:?}"
    );
}

#[test]
fn the_sample_data_set_syncs_and_settles() {
    let env = Env::new();
    env.connect();
    env.import_sample();
    for kind in ["organizations", "configurations"] {
        let first = env.sync(kind);
        assert_counts_add_up(&first);
        assert!(first["linked"].as_u64().unwrap() > 0, "{first}");
        assert!(first["skipped"].as_u64().unwrap() > 0, "{first}");
        let second = env.sync(kind);
        assert_eq!(
            (
                second["new_links"].as_u64(),
                second["removed_links"].as_u64()
            ),
            (Some(0), Some(0))
        );
        assert_eq!(second["linked"], first["linked"]);
    }
    let human = env.run(&["itglue", "unplaced"]);
    assert!(
        human.ok().contains("Organizations we couldn't place"),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("multiple-clients"),
        "{}",
        human.stdout
    );
}

#[test]
fn concurrent_batched_syncs_equal_a_sequential_one() {
    // 300 organizations x 40 configurations: 12 configuration pages and two match batches.
    let run = |concurrency: u32| {
        let env = Env::with(SimConfig::with_dataset(itglue_sim::generated_dataset(
            300, 40,
        )));
        env.connect();
        let (clients, configurations) = itglue_sim::generated_scopable_csv(300, 40);
        env.import(&clients, &configurations);
        let limits = format!("concurrency = {concurrency}");
        let sync = |kind: &str| {
            env.run_itglue_with(&limits, &["sync", kind, "--json"])
                .json()
        };
        assert_eq!(sync("organizations")["linked"], 300);
        let configs = sync("configurations");
        assert_counts_add_up(&configs);
        assert_eq!(configs["fetched"], 12_000);
        assert_eq!(configs["requests"], 12);
        (configs["linked"].clone(), links(&env, "configuration"))
    };
    let (linked_seq, seq) = run(1);
    let (linked_par, par) = run(4);
    assert_eq!(linked_seq, 12_000);
    assert_eq!(linked_par, linked_seq);
    assert_eq!(par, seq);
}

#[test]
fn manual_configuration_links_pin_their_organization_and_target() {
    let env = tyrell_env();
    env.sync("configurations");
    env.run(&["itglue", "link", "configuration", "107", "s7"])
        .ok();
    // Moving, ignoring or resetting the organization would strand the manual link.
    env.run(&["itglue", "link", "organization", "1", "c2"])
        .fails(6, "reset them first");
    env.run(&["itglue", "ignore", "organization", "1"])
        .fails(6, "reset them first");
    // An automatic link has no decision to reset: said as such, before anything else.
    env.run(&["itglue", "reset", "organization", "1"])
        .fails(6, "is linked automatically");
    // Re-importing the target under another client is refused, naming the line.
    let moved = TYRELL_CSV.replace("s7,c1,", "s7,c2,");
    let f = env.write("moved.csv", moved);
    env.run(&["import", "configurations", f.to_str().unwrap()])
        .fails(6, "line 8: configuration \"s7\" is linked by hand");
    assert_eq!(
        links(&env, "configuration")["107"],
        ("s7".into(), "manual".into(), vec!["manual".into()])
    );
    // Once the configuration's manual link is reset, the organization can move.
    env.run(&["itglue", "reset", "configuration", "107"]).ok();
    env.run(&["itglue", "link", "organization", "1", "c2"]).ok();
    assert_eq!(links(&env, "organization")["1"].0, "c2");
}

#[test]
fn a_decision_made_during_a_sync_is_never_overruled() {
    let env = tyrell_env();
    env.sim
        .add_fault(itglue_sim::FaultRule::always(itglue_sim::Fault::Latency(
            std::time::Duration::from_millis(1500),
        )));
    env.sim.clear_requests();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_scopable-host"))
        .arg("--db")
        .arg(env.db())
        .args(["itglue", "sync", "organizations", "--json"])
        .env("SCOPABLE_CACHE_DIR", crate::util::cache_dir())
        .env_remove("ITGLUE_API_KEY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while env.sim.requests().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // While the sync waits on IT Glue, the admin ignores organization 1.
    env.run(&["itglue", "ignore", "organization", "1"]).ok();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("changed while the sync ran"));
    assert!(
        !links(&env, "organization").contains_key("1"),
        "the ignored organization stays unlinked"
    );
    // The refused apply ended its run: failed, with its error, at once (not left `running`
    // for the next sync to call interrupted).
    let run = |env: &Env| -> (String, Option<String>, Option<String>) {
        env.sqlite()
            .query_row(
                "SELECT status, error, finished_at FROM sync_runs WHERE kind = 'organization' ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap()
    };
    let (status, error, finished_at) = run(&env);
    assert_eq!(status, "failed");
    assert!(
        error
            .as_deref()
            .unwrap_or("")
            .contains("changed while the sync ran"),
        "{error:?}"
    );
    assert!(finished_at.is_some());
    let shown = env.run(&["itglue", "status", "--json"]).json();
    assert_eq!(shown["organization"]["status"], "failed", "{shown}");
    env.sim.clear_faults();
    let again = env.sync("organizations");
    assert_counts_add_up(&again);
    assert!(!links(&env, "organization").contains_key("1"));
    let failed_error: Option<String> = env
        .sqlite()
        .query_row(
            "SELECT error FROM sync_runs WHERE kind = 'organization' AND status = 'failed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        failed_error
            .as_deref()
            .unwrap_or("")
            .contains("changed while the sync ran"),
        "not relabelled: {failed_error:?}"
    );
}

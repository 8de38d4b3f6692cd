//! Decisions made visible: `ignored`, decision rows (with their actor) in `activity`, HTTP
//! statuses in text `activity`, re-matching the stored records at once after `reset` and
//! `link` (no sync in between), and an upgrade from a version-2 database.

use crate::util::{Env, Run};
use itglue_sim::{Config, Dataset, Org, SimConfig};
use serde_json::Value;
use std::collections::BTreeSet;

/// Organizations: 1001 links to c1 by name; 1002 has no client of its name (a suggestion: c2);
/// 1003 and 1004 share a name (multiple-organizations, candidate c3). Configurations under
/// 1001: 2001 links to s1 by MAC; 2002's hostname points at s2 but the serials differ
/// (conflict); 2003 carries no identifier (no-match). Under 1002, 2006's hostname points at
/// s6 (under c2) but the serials differ.
fn env() -> Env {
    let env = simulator();
    env.import(CLIENTS, CONFIGURATIONS);
    env
}

const CLIENTS: &str = "id,name\nc1,ACME Inc\nc2,Beta\nc3,Gamma\nc4,Spare Client\n";
const CONFIGURATIONS: &str = "id,client_id,name,hostname,serial_number,mac_address\n\
     s1,c1,Front desk PC,,,00-11-22-33-44-01\n\
     s2,c1,Back office PC,pc-2,SN-9999,\n\
     s6,c2,Beta PC,BETA-1,SN-6666,\n";

/// The simulator with the data set of [`env`], and no database yet.
fn simulator() -> Env {
    Env::with(SimConfig::with_dataset(Dataset {
        organizations: vec![
            Org::new(1001, "Acme Inc"),
            Org::new(1002, "Beta LLC"),
            Org::new(1003, "Gamma"),
            Org::new(1004, "Gamma."),
        ],
        configurations: vec![
            Config::new(2001, 1001, "Front desk").with_mac("00:11:22:33:44:01"),
            Config::new(2002, 1001, "Back office")
                .with_hostname("PC-2")
                .with_serial("SN-0002"),
            Config::new(2003, 1001, "Spare laptop"),
            Config::new(2006, 1002, "Beta PC")
                .with_hostname("beta-1")
                .with_serial("SN-0006"),
        ],
        ..Dataset::default()
    }))
}

/// Runs the binary as a given user (`$USER`).
fn as_user(env: &Env, user: &str, args: &[&str]) -> Run {
    env.run_full(args, &[("USER", user), ("LOGNAME", user)], None)
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

fn set(words: &[&str]) -> BTreeSet<String> {
    words.iter().map(|w| w.to_string()).collect()
}

fn unplaced(env: &Env) -> Vec<Value> {
    env.run(&["itglue", "unplaced", "--json"])
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn row<'a>(rows: &'a [Value], kind: &str, id: &str) -> Option<&'a Value> {
    rows.iter()
        .find(|r| r["kind"] == kind && r["itglue_id"] == id)
}

fn decisions(env: &Env) -> Vec<Value> {
    env.run(&["itglue", "activity", "--json"])
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["kind"] == "decision")
        .collect()
}

#[test]
fn ignored_lists_an_ignored_record_with_its_name_and_actor() {
    let env = env();
    env.connect();
    env.sync("organizations");
    assert_eq!(
        env.run(&["itglue", "ignored", "--json"]).json(),
        Value::Array(vec![])
    );
    assert!(
        env.run(&["itglue", "ignored"])
            .ok()
            .contains("Nothing is ignored")
    );

    as_user(&env, "alice", &["itglue", "ignore", "organization", "1002"]).ok();
    let list = env.run(&["itglue", "ignored", "--json"]).json();
    let list = list.as_array().expect("a list");
    assert_eq!(list.len(), 1, "{list:?}");
    let entry = &list[0];
    assert_eq!(
        keys(entry),
        set(&[
            "kind",
            "itglue_id",
            "source_id",
            "name",
            "decided_at",
            "actor"
        ])
    );
    assert_eq!(entry["kind"], "organization");
    assert_eq!(entry["itglue_id"], "1002");
    assert_eq!(entry["source_id"], "1002");
    assert_eq!(entry["name"], "Beta LLC");
    assert_eq!(entry["actor"], "cli:alice");
    assert!(
        entry["decided_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{entry}"
    );

    let text = env.run(&["itglue", "ignored"]);
    let out = text.ok();
    assert!(out.contains("Ignored organizations"), "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("1002"))
        .unwrap_or_else(|| panic!("no line for 1002: {out}"));
    assert!(line.contains("Beta LLC"), "{line}");
    assert!(line.contains("by cli:alice"), "{line}");
    assert!(out.contains("reset organization|configuration"), "{out}");
}

#[test]
fn activity_lists_every_decision_with_its_actor() {
    let env = env();
    env.connect();
    env.sync("organizations");
    as_user(
        &env,
        "alice",
        &["itglue", "link", "organization", "1002", "c4"],
    )
    .ok();
    // A user name that would act on a terminal is not taken: the next source is.
    env.run_full(
        &["itglue", "ignore", "organization", "1003"],
        &[("USER", "mal\u{1b}]0;pwned\u{7}"), ("LOGNAME", "bob")],
        None,
    )
    .ok();
    as_user(&env, "alice", &["itglue", "reset", "organization", "1002"]).ok();
    as_user(&env, "alice", &["itglue", "disconnect"]).ok();

    let rows = decisions(&env);
    let actions: Vec<&str> = rows
        .iter()
        .map(|r| r["action"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        actions,
        ["disconnect", "reset", "ignore", "link"],
        "{rows:?}"
    );
    let key_set = set(&[
        "at",
        "kind",
        "action",
        "record_kind",
        "source_id",
        "scopable_id",
        "actor",
    ]);
    for r in &rows {
        assert_eq!(keys(r), key_set, "{r}");
        assert!(r["at"].as_str().is_some_and(|t| t.ends_with('Z')), "{r}");
    }
    let (disconnect, reset, ignore, link) = (&rows[0], &rows[1], &rows[2], &rows[3]);
    assert_eq!(disconnect["record_kind"], Value::Null);
    assert_eq!(disconnect["source_id"], Value::Null);
    assert_eq!(disconnect["scopable_id"], Value::Null);
    assert_eq!(disconnect["actor"], "cli:alice");
    assert_eq!(
        (
            &reset["record_kind"],
            &reset["source_id"],
            &reset["scopable_id"],
            &reset["actor"]
        ),
        (
            &Value::from("organization"),
            &Value::from("1002"),
            &Value::from("c4"),
            &Value::from("cli:alice")
        ),
        "a reset names the link it dropped"
    );
    assert_eq!(
        (
            &ignore["record_kind"],
            &ignore["source_id"],
            &ignore["scopable_id"],
            &ignore["actor"]
        ),
        (
            &Value::from("organization"),
            &Value::from("1003"),
            &Value::Null,
            &Value::from("cli:bob")
        )
    );
    assert_eq!(
        (
            &link["record_kind"],
            &link["source_id"],
            &link["scopable_id"],
            &link["actor"]
        ),
        (
            &Value::from("organization"),
            &Value::from("1002"),
            &Value::from("c4"),
            &Value::from("cli:alice")
        )
    );

    // A decision that changed nothing is not one: a second disconnect, a reset of nothing.
    as_user(&env, "alice", &["itglue", "disconnect"]).ok();
    assert_eq!(decisions(&env).len(), 4);

    let text = env.run(&["itglue", "activity"]);
    let out = text.ok();
    let line = |needle: &str| {
        out.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}: {out}"))
            .to_string()
    };
    assert!(
        line("decision link").contains("organization 1002 -> c4  by cli:alice"),
        "{out}"
    );
    assert!(line("decision ignore").contains("organization 1003  by cli:bob"));
    assert!(line("decision reset").contains("organization 1002 (was linked to c4)"));
    assert!(line("decision disconnect").contains("by cli:alice"));
    assert!(!out.contains('\u{1b}'), "{out:?}");
}

#[test]
fn text_activity_shows_the_http_status_of_each_request() {
    let env = env();
    env.connect();
    env.sync("organizations");
    let out = env.run(&["itglue", "activity"]);
    let out = out.ok();
    let request = out
        .lines()
        .find(|l| l.contains("/organizations"))
        .unwrap_or_else(|| panic!("no request line: {out}"));
    assert!(request.contains("allowed HTTP 200"), "{request}");
}

#[test]
fn a_reset_record_is_listed_at_once_with_its_reason() {
    let env = env();
    env.connect();
    env.sync("organizations");
    env.sync("configurations");
    let before = unplaced(&env);
    let beta = row(&before, "organization", "1002")
        .expect("1002 unplaced")
        .clone();
    assert_eq!(beta["reason"], "no-match");
    assert_eq!(beta["suggestions"], serde_json::json!(["c2"]));
    let gamma = row(&before, "organization", "1003")
        .expect("1003 unplaced")
        .clone();
    assert_eq!(gamma["reason"], "multiple-organizations");
    let conflict = row(&before, "configuration", "2002")
        .expect("2002 unplaced")
        .clone();
    assert_eq!(conflict["reason"], "conflict");
    assert_eq!(conflict["candidates"], serde_json::json!(["s2"]));

    // Ignored, then synced: the sync drops their rows.
    for (kind, id) in [
        ("organization", "1002"),
        ("organization", "1003"),
        ("configuration", "2002"),
        ("configuration", "2001"),
    ] {
        env.run(&["itglue", "ignore", kind, id]).ok();
    }
    env.sync("organizations");
    env.sync("configurations");
    let stored: i64 = env
        .sqlite()
        .query_row(
            "SELECT count(*) FROM unplaced WHERE source_id IN ('1002', '1003', '2002')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, 0, "the sync keeps no row for ignored records");

    // Reset: listed again at once, no sync in between, with the reason the matcher gives.
    // Placing again takes no request, and no audit row (the component's `match` has neither
    // the network nor storage).
    let requests = env.sim.request_count();
    let audit_rows = || -> i64 {
        env.sqlite()
            .query_row("SELECT count(*) FROM audit", [], |r| r.get(0))
            .unwrap()
    };
    let audited = audit_rows();
    let out = env.run(&["itglue", "reset", "organization", "1002"]);
    assert!(out.ok().contains("listed again"), "{}", out.stdout);
    let now = unplaced(&env);
    let again = row(&now, "organization", "1002").expect("1002 listed at once");
    assert_eq!(again["reason"], "no-match");
    assert_eq!(again["suggestions"], serde_json::json!(["c2"]));
    assert_eq!(again["name"], "Beta LLC");
    env.run(&["itglue", "reset", "organization", "1003"]).ok();
    let now = unplaced(&env);
    let again = row(&now, "organization", "1003").expect("1003 listed at once");
    assert_eq!(again["reason"], "multiple-organizations");
    assert_eq!(again["candidates"], serde_json::json!(["c3"]));

    // Configurations are placed again from the identifiers kept: the serials, hostnames and
    // MACs the last sync received.
    env.run(&["itglue", "reset", "configuration", "2002"]).ok();
    let now = unplaced(&env);
    let again = row(&now, "configuration", "2002").expect("2002 listed at once");
    assert_eq!(again["reason"], "conflict");
    assert_eq!(again["candidates"], serde_json::json!(["s2"]));
    let out = env.run(&["itglue", "reset", "configuration", "2001"]);
    assert!(
        out.ok()
            .contains("it is linked again automatically to s1 (Front desk PC)"),
        "{}",
        out.stdout
    );
    assert!(row(&unplaced(&env), "configuration", "2001").is_none());
    assert_eq!(
        env.sim.request_count(),
        requests,
        "placing again asked IT Glue"
    );
    assert_eq!(audit_rows(), audited);
    // The reset record is back under automatic matching at once, as the next sync would have
    // it: an automatic link, which that sync keeps.
    let links = env.run(&["itglue", "links", "--json"]).json();
    let relinked: Vec<&serde_json::Value> = links
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["itglue_id"] == "2001")
        .collect();
    assert_eq!(relinked.len(), 1, "{links}");
    assert_eq!(relinked[0]["source"], "auto");
    assert_eq!(relinked[0]["scopable_id"], "s1");
    let synced = env.sync("configurations");
    assert_eq!(synced["new_links"], 0, "{synced}");
    assert_eq!(synced["removed_links"], 0, "{synced}");
}

#[test]
fn a_manual_link_lists_at_once_what_it_changed_for_the_others() {
    let env = env();
    env.connect();
    env.sync("organizations");
    env.sync("configurations");
    let before = unplaced(&env);
    let beta_pc = row(&before, "configuration", "2006").expect("2006 listed");
    assert_eq!(beta_pc["reason"], "parent-unplaced", "{beta_pc}");
    // Its organization is linked by hand: the configuration is placed again at once under
    // that client, where its hostname points at s6 but the serials differ.
    env.run(&["itglue", "link", "organization", "1002", "c2"])
        .ok();
    let now = unplaced(&env);
    let r = row(&now, "configuration", "2006").expect("2006 still listed");
    assert_eq!(r["reason"], "conflict", "{r}");
    assert_eq!(r["candidates"], serde_json::json!(["s6"]), "{r}");
    assert!(row(&now, "organization", "1002").is_none());
    // Reset: back to parent-unplaced, at once; and the organization is listed again.
    env.run(&["itglue", "reset", "organization", "1002"]).ok();
    let now = unplaced(&env);
    assert_eq!(
        row(&now, "configuration", "2006").unwrap()["reason"],
        "parent-unplaced"
    );
    assert_eq!(
        row(&now, "organization", "1002").unwrap()["reason"],
        "no-match"
    );
}

#[test]
fn a_version_2_database_upgrades_and_keeps_its_decisions() {
    let env = simulator();
    // A database as the previous schema (version 2) left it: a record received by a sync,
    // without the identifiers this version keeps, and an ignore made before decisions were
    // logged.
    {
        let conn = rusqlite::Connection::open(env.db()).unwrap();
        let migrations = scopable_store::db::MIGRATIONS;
        conn.execute_batch(&format!(
            "{} {} PRAGMA user_version = 2;",
            migrations[0], migrations[1]
        ))
        .unwrap();
        conn.execute_batch(
            "INSERT INTO itglue_records (connector, kind, itglue_id, name, organization_id)
                 VALUES ('itglue', 'organization', '1002', 'Beta LLC', NULL),
                        ('itglue', 'organization', '1003', 'Gamma', NULL);
             INSERT INTO decisions (connector, kind, itglue_id, action, scopable_id, decided_at)
                 VALUES ('itglue', 'organization', '1003', 'ignore', NULL, '2024-01-01T00:00:00Z');",
        )
        .unwrap();
    }
    // The clients are imported into it (a write: it upgrades the file).
    let version = || -> i64 {
        env.sqlite()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    };
    env.import(CLIENTS, CONFIGURATIONS);
    assert_eq!(version(), scopable_store::db::SCHEMA_VERSION);

    // The old ignore is listed, with its name, and no actor (it was not logged).
    let list = env.run(&["itglue", "ignored", "--json"]).json();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["itglue_id"], "1003");
    assert_eq!(list[0]["name"], "Gamma");
    assert_eq!(list[0]["decided_at"], "2024-01-01T00:00:00Z");
    assert_eq!(list[0]["actor"], Value::Null);

    // Decisions made now are logged; records stored without their identifiers are not placed
    // again locally (that would guess), and the admin is told the next sync lists them.
    let reset = as_user(&env, "alice", &["itglue", "reset", "organization", "1003"]);
    reset.ok();
    assert!(
        reset.stderr.contains("the next sync lists them"),
        "{}",
        reset.stderr
    );
    let rows = decisions(&env);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["action"], "reset");
    assert_eq!(rows[0]["actor"], "cli:alice");

    // The next sync keeps every identifier, and from then on a reset lists the record at once.
    env.connect();
    env.sync("organizations");
    let kept: i64 = env
        .sqlite()
        .query_row(
            "SELECT min(identifiers_kept) FROM source_records WHERE kind = 'organization'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kept, 1);
    env.run(&["itglue", "ignore", "organization", "1002"]).ok();
    env.sync("organizations");
    env.run(&["itglue", "reset", "organization", "1002"]).ok();
    assert_eq!(
        row(&unplaced(&env), "organization", "1002").expect("listed at once")["reason"],
        "no-match"
    );
}

//! Finding the right Scopable record and linking it safely: `search` (names, hostnames, serials
//! and MACs compared as the matcher compares them), `link --find` (only when exactly one record
//! matches) and taking a target from another record (`--take`, or a question on a terminal).

use crate::util::Env;
use itglue_sim::{Config, Dataset, Org, SimConfig};
use serde_json::{Value, json};
use std::collections::BTreeSet;

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

/// Clients with punctuation, case and a hostile name, and configurations with identifiers
/// written in their own spellings; no sync needed (search reads Scopable records only).
fn records_env() -> Env {
    let env = Env::new();
    env.import(
        "id,name\nc1,\"ACME, Inc.\"\nc2,Acme Holdings\nc3,O'Brien & Sons\nc4,Evil \u{202e}Corp\nc5,Tyrell Systems\n",
        &format!(
            "{CFG_HEADER}s1,c5,Domain controller,TY-DC01.corp.local,,\n\
             s2,c5,File server,TY-FS01, cz2841ab7q,3C-52-82-1A-9F-01\n\
             s3,c5,Reception,,To Be Filled By O.E.M.,00:00:00:00:00:00 3c52.821a.9f04\n\
             s4,c1,Spare DC,ty-dc01,,\n"
        ),
    );
    env
}

/// `search ... --json` as (id, matched, exact) triples, in order.
fn found(env: &Env, what: &str, query: &str) -> Vec<(String, String, bool)> {
    let list = env.run(&["search", what, query, "--json"]).json();
    list.as_array()
        .expect("search --json is a list")
        .iter()
        .map(|h| {
            (
                h["id"].as_str().unwrap().to_string(),
                h["matched"].as_str().unwrap().to_string(),
                h["exact"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn triple(id: &str, matched: &str, exact: bool) -> (String, String, bool) {
    (id.to_string(), matched.to_string(), exact)
}

#[test]
fn search_finds_clients_by_name_whatever_the_punctuation_and_case() {
    let env = records_env();
    assert_eq!(
        found(&env, "clients", "acme inc"),
        vec![triple("c1", "name", true)]
    );
    assert_eq!(
        found(&env, "clients", "A.C.M.E."),
        vec![triple("c2", "name", false), triple("c1", "name", false)],
        "partial matches, in a stable order (by normalized name)"
    );
    assert_eq!(
        found(&env, "clients", "OBRIEN SONS"),
        vec![triple("c3", "name", true)]
    );
    assert_eq!(
        found(&env, "clients", "o’brien"),
        vec![triple("c3", "name", false)],
        "a typographic apostrophe is dropped as the matcher drops it"
    );
    assert!(found(&env, "clients", "umbrella").is_empty());

    // The human form: ids first, ready to paste, and every name made safe.
    let out = env.run(&["search", "clients", "corp"]);
    let text = out.ok();
    assert!(text.contains("1 client matches \"corp\":"), "{text}");
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("c4 ")),
        "{text}"
    );
    assert!(
        !text.contains('\u{202e}'),
        "a raw bidirectional override reached the terminal"
    );
    assert!(text.contains("Evil \\u{202e}Corp"), "{text}");
    let out = env.run(&["search", "clients", "acme"]);
    let first = out.ok().lines().nth(1).unwrap_or_default().to_string();
    assert!(
        first.trim_start().starts_with("c2 ") && first.contains("Acme Holdings"),
        "{first}"
    );
    assert!(first.ends_with("name (partial)"), "{first}");
    let none = env.run(&["search", "clients", "umbrella"]);
    assert!(none.ok().contains("No clients match \"umbrella\"."));
    env.run(&["search", "clients", " - . "])
        .fails(6, "nothing to search for");
}

#[test]
fn search_finds_configurations_by_identifiers_in_other_spellings() {
    let env = records_env();
    // A hostname by its first label, in another case and with a domain.
    assert_eq!(
        found(&env, "configurations", "ty-dc01.example.org"),
        vec![
            triple("s1", "hostname", true),
            triple("s4", "hostname", true)
        ]
    );
    // A serial with other case and spaces.
    assert_eq!(
        found(&env, "configurations", "  CZ2841AB7Q "),
        vec![triple("s2", "serial", true)]
    );
    // A MAC with other separators; the placeholder MAC beside it is never an identifier.
    assert_eq!(
        found(&env, "configurations", "3C-52-82-1A-9F-04"),
        vec![triple("s3", "mac", true)]
    );
    assert_eq!(
        found(&env, "configurations", "3c52821a9f01"),
        vec![triple("s2", "mac", true)]
    );
    assert!(found(&env, "configurations", "00-00-00-00-00-00").is_empty());
    assert!(found(&env, "configurations", "to be filled by o.e.m.").is_empty());
    // The human form names the client and the value that matched.
    let out = env.run(&["search", "configurations", "3c:52:82:1a:9f:04"]);
    let line = out.ok().lines().nth(1).unwrap_or_default().to_string();
    assert!(line.trim_start().starts_with("s3 "), "{line}");
    assert!(line.contains("client c5 (Tyrell Systems)"), "{line}");
    assert!(line.ends_with("mac 3c52.821a.9f04"), "{line}");
}

#[test]
fn search_json_has_the_documented_shape_and_limit() {
    let env = records_env();
    let list = env
        .run(&["search", "configurations", "TY-FS01", "--json"])
        .json();
    assert_eq!(
        list,
        json!([{"kind": "configuration", "id": "s2", "name": "File server",
                "client_id": "c5", "client_name": "Tyrell Systems", "matched": "hostname",
                "exact": true}])
    );
    let list = env.run(&["search", "clients", "acme", "--json"]).json();
    let keys: BTreeSet<&str> = list[0]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["kind", "id", "name", "matched", "exact"])
    );
    assert_eq!(list[0]["kind"], "client");
    let limited = env
        .run(&["search", "clients", "acme", "--json", "--limit", "1"])
        .json();
    assert_eq!(limited.as_array().unwrap().len(), 1);
    assert_eq!(limited[0]["id"], "c2");
    let human = env.run(&["search", "clients", "acme", "--limit", "1"]);
    assert!(human.ok().contains("Showing 1 of 2"), "{}", human.stdout);
    env.run(&["search", "clients", "acme", "--limit", "0"])
        .fails(2, "--limit");
}

#[test]
fn search_never_creates_or_migrates_a_database() {
    let env = Env::new();
    env.run(&["search", "clients", "acme"])
        .fails(6, "there is no database");
    assert!(!env.db().exists(), "search created a database");

    // A database of the first schema version is read as it is, and stays at that version.
    let old = env.db();
    {
        let conn = rusqlite::Connection::open(&old).unwrap();
        conn.execute_batch(scopable_store::db::MIGRATIONS[0])
            .unwrap();
        conn.execute_batch(
            "PRAGMA user_version = 1; INSERT INTO clients (id, name) VALUES ('c1', 'Acme Inc');",
        )
        .unwrap();
    }
    let out = env.run(&["search", "clients", "ACME", "--json"]);
    assert_eq!(out.json()[0]["id"], "c1");
    let version: i64 = rusqlite::Connection::open(&old)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 1, "search migrated the database");
}

/// Every row of `links` and `unplaced`, as text, to compare before and after.
fn tables(env: &Env) -> (Vec<String>, Vec<String>) {
    let conn = env.sqlite();
    let rows = |sql: &str| -> Vec<String> {
        let mut stmt = conn.prepare(sql).unwrap();
        let count = stmt.column_count();
        stmt.query_map([], |r| {
            let mut cells = Vec::new();
            for i in 0..count {
                let v: rusqlite::types::Value = r.get(i)?;
                cells.push(format!("{v:?}"));
            }
            Ok(cells.join("|"))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    };
    (
        rows("SELECT * FROM links ORDER BY kind, source_id"),
        rows("SELECT * FROM unplaced ORDER BY kind, source_id"),
    )
}

/// itglue id -> (scopable id, source) of one kind, from `links --json`.
fn links(env: &Env, kind: &str) -> Vec<(String, String, String)> {
    let list = env.run(&["itglue", "links", "--json"]).json();
    list.as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] == kind)
        .map(|l| {
            (
                l["itglue_id"].as_str().unwrap().to_string(),
                l["scopable_id"].as_str().unwrap().to_string(),
                l["source"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn link(it: &str, sc: &str, source: &str) -> (String, String, String) {
    (it.to_string(), sc.to_string(), source.to_string())
}

/// The `unplaced --json` row of one record, if listed.
fn unplaced_row(env: &Env, kind: &str, id: &str) -> Option<Value> {
    let list = env.run(&["itglue", "unplaced", "--json"]).json();
    list.as_array()
        .unwrap()
        .iter()
        .find(|u| u["kind"] == kind && u["itglue_id"] == id)
        .cloned()
}

/// 1001 links to c1 automatically; 1010 and 1020 match no client; 501 (under 1001) matches
/// nothing, 502 links to s2 on its serial. c3 has a configuration with s1's hostname.
fn review_env() -> Env {
    let env = env_with(
        vec![
            Org::new(1001, "ACME, Inc."),
            Org::new(1010, "Acme Holdings"),
            Org::new(1020, "Globex Corporation"),
        ],
        vec![
            Config::new(501, 1001, "New DC").with_hostname("ty-dc01-new"),
            Config::new(502, 1001, "File server").with_serial("CZ2841AB7Q"),
        ],
    );
    env.import(
        "id,name\nc1,Acme Inc\nc2,Acme Holdings Group\nc3,Globex\n",
        &format!(
            "{CFG_HEADER}s1,c1,Domain controller,TY-DC01,,\n\
             s2,c1,File server,,cz2841ab7q,\n\
             s9,c3,Globex DC,TY-DC01.globex.local,,\n"
        ),
    );
    env.sync("organizations");
    env.sync("configurations");
    assert_eq!(
        links(&env, "organization"),
        vec![link("1001", "c1", "auto")]
    );
    assert_eq!(
        links(&env, "configuration"),
        vec![link("502", "s2", "auto")]
    );
    env
}

#[test]
fn link_find_links_only_when_the_query_finds_exactly_one_record() {
    let env = review_env();
    let before = tables(&env);
    // Nothing found: refused, nothing changed.
    env.run(&[
        "itglue",
        "link",
        "organization",
        "1010",
        "--find",
        "Umbrella",
    ])
    .fails(6, "no client matches \"Umbrella\"");
    // Several found: refused, each listed with its name.
    let several = env.run(&["itglue", "link", "organization", "1010", "--find", "acme"]);
    several.fails(6, "finds 2 clients");
    assert!(
        several.stderr.contains("c2 (Acme Holdings Group)")
            && several.stderr.contains("c1 (Acme Inc)"),
        "{}",
        several.stderr
    );
    assert_eq!(tables(&env), before, "a refused --find changed something");
    // An id and --find together is a usage error; so is neither.
    env.run(&[
        "itglue",
        "link",
        "organization",
        "1010",
        "c2",
        "--find",
        "x",
    ])
    .fails(2, "--find");
    env.run(&["itglue", "link", "organization", "1010"])
        .fails(2, "SCOPABLE_ID");
    // Exactly one: linked by hand.
    let one = env.run(&["itglue", "link", "organization", "1020", "--find", "GLOBEX"]);
    assert!(
        one.ok().contains("to c3 (Globex) by hand"),
        "{}",
        one.stdout
    );
    assert!(links(&env, "organization").contains(&link("1020", "c3", "manual")));

    // A configuration is searched for within its organization's client only: s9 (client c3)
    // has the same hostname as s1 but is not a candidate for 501 (organization 1001 -> c1).
    let both = found(&env, "configurations", "ty-dc01.corp.local");
    assert_eq!(both.len(), 2, "{both:?}");
    let one = env.run(&[
        "itglue",
        "link",
        "configuration",
        "501",
        "--find",
        "ty-dc01.corp.local",
    ]);
    assert!(
        one.ok().contains("to s1 (Domain controller)"),
        "{}",
        one.stdout
    );
    assert!(links(&env, "configuration").contains(&link("501", "s1", "manual")));
    env.run(&[
        "itglue",
        "link",
        "configuration",
        "501",
        "--find",
        "Globex DC",
    ])
    .fails(6, "no configuration of client c1 (Acme Inc) matches");
}

#[test]
fn taking_a_target_needs_take_and_lists_the_record_that_lost_it() {
    let env = review_env();
    let before = tables(&env);
    // Without a terminal and without --take: refused, naming the holder; nothing changed.
    let refused = env.run(&["itglue", "link", "organization", "1010", "c1"]);
    refused.fails(6, "organization 1001 (ACME, Inc.)");
    assert!(refused.stderr.contains("--take"), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("nothing changed"),
        "{}",
        refused.stderr
    );
    assert_eq!(tables(&env), before, "a refused take changed something");
    // The same through --find.
    env.run(&[
        "itglue",
        "link",
        "organization",
        "1010",
        "--find",
        "acme inc",
    ])
    .fails(6, "add --take");
    assert_eq!(tables(&env), before);

    // With --take: linked, and 1001 is listed again at once, with the target it lost.
    let taken = env.run(&["itglue", "link", "organization", "1010", "c1", "--take"]);
    let text = taken.ok();
    assert!(
        text.contains("Took c1 (Acme Inc) from organization 1001"),
        "{text}"
    );
    assert_eq!(
        links(&env, "organization"),
        vec![link("1010", "c1", "manual")]
    );
    let row = unplaced_row(&env, "organization", "1001").expect("1001 listed again");
    assert_eq!(row["reason"], "target-taken");
    assert_eq!(row["candidates"], json!(["c1"]));
    assert_eq!(row["name"], "ACME, Inc.");
    // The next sync agrees: the manual link holds the target.
    env.sync("organizations");
    let row = unplaced_row(&env, "organization", "1001").expect("still listed");
    assert_eq!(row["reason"], "target-taken");
    assert_eq!(
        links(&env, "organization"),
        vec![link("1010", "c1", "manual")]
    );
}

#[test]
fn taking_a_configuration_target_lists_the_configuration_that_lost_it() {
    let env = review_env();
    let before = tables(&env);
    env.run(&["itglue", "link", "configuration", "501", "s2"])
        .fails(6, "configuration 502 (File server)");
    assert_eq!(tables(&env), before);
    env.run(&["itglue", "link", "configuration", "501", "s2", "--take"])
        .ok();
    assert_eq!(
        links(&env, "configuration"),
        vec![link("501", "s2", "manual")]
    );
    let row = unplaced_row(&env, "configuration", "502").expect("502 listed again");
    assert_eq!(row["reason"], "target-taken");
    assert_eq!(row["candidates"], json!(["s2"]));
}

/// Runs `scopable-host --db DB ARGS` under a pseudo-terminal (`script`), typing `answer`.
fn on_a_terminal(env: &Env, args: &[&str], answer: &str) -> (i32, String) {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut command = vec![
        quote(env!("CARGO_BIN_EXE_scopable-host")),
        "--db".to_string(),
        quote(env.db().to_str().unwrap()),
    ];
    command.extend(args.iter().map(|a| quote(a)));
    let mut child = std::process::Command::new("script")
        .args(["-qec", &command.join(" "), "/dev/null"])
        .env_remove("ITGLUE_API_KEY")
        .env("SCOPABLE_CACHE_DIR", crate::util::cache_dir())
        .current_dir(env.dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run script");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(answer.as_bytes()).expect("type the answer");
    }
    let out = child.wait_with_output().expect("wait for script");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn on_a_terminal_taking_a_target_asks_first() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!(
            "`script` (util-linux) is needed to give the command a terminal: install util-linux"
        );
    }
    let env = review_env();
    let before = tables(&env);
    let (code, screen) = on_a_terminal(
        &env,
        &["itglue", "link", "organization", "1010", "c1"],
        "n\n",
    );
    assert!(
        screen.contains("Take c1 (Acme Inc) from organization 1001 (ACME, Inc.)? [y/N]"),
        "{screen}"
    );
    assert_eq!(code, 6, "{screen}");
    assert!(screen.contains("nothing changed"), "{screen}");
    assert_eq!(tables(&env), before, "a declined take changed something");

    let (code, screen) = on_a_terminal(
        &env,
        &["itglue", "link", "organization", "1010", "c1"],
        "y\n",
    );
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("Took c1 (Acme Inc)"), "{screen}");
    assert_eq!(
        links(&env, "organization"),
        vec![link("1010", "c1", "manual")]
    );
    assert_eq!(
        unplaced_row(&env, "organization", "1001").expect("listed")["reason"],
        "target-taken"
    );
}

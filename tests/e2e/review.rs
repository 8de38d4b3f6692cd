//! The review workflow as a person reads it: names on both sides, the identifiers behind a
//! configuration's link, reasons in plain words with the commands that resolve them; and the
//! setup guide's review story, from the first sync to every decision in `activity`.

use crate::util::{Env, Run};
use scopable_sync::describe;
use serde_json::Value;
use std::collections::BTreeSet;

/// The sample data set, imported, connected and synced (organizations, then configurations).
fn synced() -> Env {
    let env = Env::new();
    env.import_sample();
    env.connect();
    env.sync("organizations");
    env.sync("configurations");
    env
}

/// The one line of `text` that holds `needle`.
#[track_caller]
fn line_with<'a>(text: &'a str, needle: &str) -> &'a str {
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(needle)).collect();
    assert_eq!(
        lines.len(),
        1,
        "one line with {needle:?} expected in:\n{text}"
    );
    lines[0]
}

/// The one row of `unplaced` or `links` text about the record `id` (its first or second word).
#[track_caller]
fn record_line<'a>(text: &'a str, id: &str) -> &'a str {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.split_whitespace().take(2).any(|word| word == id))
        .collect();
    assert_eq!(lines.len(), 1, "one row for {id} expected in:\n{text}");
    lines[0]
}

/// The JSON row whose `itglue_id` is `id`.
#[track_caller]
fn row<'a>(list: &'a Value, id: &str) -> &'a Value {
    list.as_array()
        .and_then(|rows| rows.iter().find(|r| r["itglue_id"] == id))
        .unwrap_or_else(|| panic!("no row {id} in {list}"))
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

fn set<'a>(items: &[&'a str]) -> BTreeSet<&'a str> {
    items.iter().copied().collect()
}

#[test]
fn sync_lines_name_both_sides_and_the_identifiers_that_matched() {
    let env = Env::new();
    env.import_sample();
    env.connect();
    // A dry run before anything is stored names the records from the listing itself.
    let dry = env.run(&["itglue", "sync", "organizations", "--dry-run"]);
    line_with(
        dry.ok(),
        "+ 3100102 -> client 102 (name): Acme, Inc. -> ACME Inc",
    );
    let synced = env.run(&["itglue", "sync", "organizations"]);
    line_with(
        synced.ok(),
        "+ 3100102 -> client 102 (name): Acme, Inc. -> ACME Inc",
    );
    let configurations = env.run(&["itglue", "sync", "configurations"]);
    let text = configurations.ok();
    // Serial (case and white space differ), MAC (dashes vs colons) and hostname, as the
    // matcher compares them.
    line_with(
        text,
        "+ 8200102 -> configuration 5002 (serial CZ2841AB7Q, mac 3c:52:82:1a:9f:01, hostname ty-fs01): TY-FS01 -> File server",
    );
    // Only through the secondary (dock) interface.
    line_with(
        text,
        "+ 8200105 -> configuration 5005 (mac a4:bb:6d:44:55:66): TY-LAP07 -> Sales laptop",
    );
    // The DNS suffix is not compared.
    line_with(
        text,
        "+ 8200101 -> configuration 5001 (hostname ty-dc01): TY-DC01 -> Domain controller",
    );

    // A new client named like ACME's makes the organization ambiguous: the removed link names
    // both sides and says why in plain words.
    let clients = env.write("more-clients.csv", "id,name\n130,\"Acme, Inc\"\n");
    env.run(&["import", "clients", clients.to_str().expect("utf-8 path")])
        .ok();
    let resynced = env.run(&["itglue", "sync", "organizations"]);
    line_with(
        resynced.ok(),
        "- 3100102 -x client 102 (now matches multiple clients): Acme, Inc. -x ACME Inc",
    );
}

#[test]
fn links_show_names_and_evidence_values() {
    let env = synced();
    let text = env.run(&["itglue", "links"]);
    let text = text.ok();
    let acme = record_line(text, "3100102");
    assert!(
        acme.contains("Acme, Inc.") && acme.contains("-> client 102 ACME Inc"),
        "{acme}"
    );
    let laptop = record_line(text, "8200203");
    assert!(
        laptop.contains("ACME-LT-014")
            && laptop.contains("-> configuration 5103 Laptop 14")
            && laptop.ends_with("serial PC1XYZ89, mac 8c:16:45:aa:01:02"),
        "{laptop}"
    );
    // The Scopable cell holds two MACs; the one both sides carry is shown.
    let hyperv = record_line(text, "8200115");
    assert!(hyperv.ends_with("mac b8:ca:3a:01:02:04"), "{hyperv}");

    let links = env.run(&["itglue", "links", "--json"]).json();
    let all = links.as_array().expect("links is a list");
    assert!(!all.is_empty());
    for link in all {
        assert_eq!(
            keys(link),
            set(&[
                "kind",
                "itglue_id",
                "source_id",
                "name",
                "scopable_id",
                "scopable_name",
                "source",
                "evidence",
                "linked_at"
            ]),
            "{link}"
        );
        assert_eq!(link["source_id"], link["itglue_id"], "{link}");
        assert!(
            link["name"].is_string() && link["scopable_name"].is_string(),
            "{link}"
        );
    }
    let laptop = row(&links, "8200203");
    assert_eq!(laptop["name"], "ACME-LT-014");
    assert_eq!(laptop["scopable_name"], "Laptop 14");
    assert_eq!(laptop["evidence"], serde_json::json!(["serial", "mac"]));
    let fabrikam = row(&links, "3100105");
    assert_eq!(fabrikam["name"], "Ｆａｂｒｉｋａｍ Ｌｏｇｉｓｔｉｃｓ");
    assert_eq!(fabrikam["scopable_name"], "Fabrikam Logistics");
}

#[test]
fn unplaced_json_carries_names_beside_the_ids() {
    let env = synced();
    let list = env.run(&["itglue", "unplaced", "--json"]).json();
    let rows = list.as_array().expect("unplaced is a list");
    let base = [
        "kind",
        "itglue_id",
        "source_id",
        "name",
        "scopable_name",
        "reason",
        "reason_label",
        "reason_text",
        "candidates",
        "candidate_names",
        "suggestions",
        "suggestion_names",
    ];
    for r in rows {
        let mut expected = set(&base);
        if r["kind"] == "configuration" {
            expected.extend(["organization_id", "organization_name"]);
        }
        assert_eq!(keys(r), expected, "{r}");
        assert_eq!(r["source_id"], r["itglue_id"], "{r}");
        assert!(r["scopable_name"].is_null(), "{r}");
        for (ids, names) in [
            ("candidates", "candidate_names"),
            ("suggestions", "suggestion_names"),
        ] {
            assert_eq!(
                r[ids].as_array().map(Vec::len),
                r[names].as_array().map(Vec::len),
                "{r}"
            );
        }
        let kind = describe::record_kind(r["kind"].as_str().unwrap_or("")).expect("a kind");
        let reason = r["reason"].as_str().expect("a reason");
        assert_eq!(
            r["reason_label"],
            describe::reason_label(reason, "IT Glue"),
            "{r}"
        );
        assert_eq!(
            r["reason_text"],
            describe::reason_text(kind, reason, "IT Glue"),
            "{r}"
        );
    }
    let adventure = row(&list, "3100109");
    assert_eq!(adventure["candidates"], serde_json::json!(["109", "110"]));
    assert_eq!(
        adventure["candidate_names"],
        serde_json::json!(["Adventure Works", "Adventure-Works"])
    );
    assert_eq!(adventure["reason_label"], "matches multiple clients");
    assert!(
        adventure["reason_text"]
            .as_str()
            .is_some_and(|t| t.starts_with(
                "matches multiple clients: two of your clients normalize to the same name"
            )),
        "{adventure}"
    );
    let contoso = row(&list, "3100112");
    assert_eq!(contoso["suggestions"], serde_json::json!(["112"]));
    assert_eq!(contoso["suggestion_names"], serde_json::json!(["Contoso"]));
    let conflict = row(&list, "8200109");
    assert_eq!(
        conflict["candidate_names"],
        serde_json::json!(["App server", "Old app server"])
    );
    assert_eq!(conflict["organization_id"], "3100101");
    assert_eq!(conflict["organization_name"], "Tyrell Systems");
}

#[test]
fn unplaced_explains_each_reason_once_with_the_commands_that_resolve_it() {
    let env = synced();
    let run = env.run(&["itglue", "unplaced"]);
    let text = run.ok();
    let adventure = record_line(text, "3100109");
    assert!(
        adventure.contains("Adventure Works")
            && adventure.contains("matches multiple clients")
            && adventure.contains("candidates: 109 Adventure Works, 110 Adventure-Works"),
        "{adventure}"
    );
    let contoso = record_line(text, "3100112");
    assert!(
        contoso.contains("no match") && contoso.contains("suggested: 112 Contoso"),
        "{contoso}"
    );
    // What the identifiers say about each candidate: the serial points at one, the MAC at
    // another; or the hostname agrees but the serials differ.
    let split = record_line(text, "8200109");
    assert!(
        split.contains("identifiers disagree")
            && split.contains(
                "candidates: 5009 App server (serial 5CG7301XYZ), 5010 Old app server (mac 00:1a:2b:3c:4d:5e)"
            ),
        "{split}"
    );
    let clash = record_line(text, "8200110");
    assert!(
        clash.contains(
            "5011 SQL server (serial MXQ1234567 in IT Glue but MXQ7654321 in Scopable, hostname ty-srv03)"
        ),
        "{clash}"
    );

    // Once per reason present (per kind), its sentence and the commands that resolve it.
    let list = env.run(&["itglue", "unplaced", "--json"]).json();
    let mut present: BTreeSet<(String, String)> = BTreeSet::new();
    for r in list.as_array().expect("a list") {
        present.insert((
            r["kind"].as_str().unwrap_or("").to_string(),
            r["reason"].as_str().unwrap_or("").to_string(),
        ));
    }
    assert!(present.len() >= 9, "{present:?}");
    let guidance = text
        .split("\nWhat to do:\n")
        .nth(1)
        .expect("a What to do section");
    for (kind, reason) in &present {
        let kind = describe::record_kind(kind).expect("a kind");
        let e = describe::explain(kind, reason).expect("explained");
        let heading = format!(
            "  {}: {}:",
            e.label_for("IT Glue"),
            e.sentence_for("IT Glue")
        );
        assert_eq!(
            guidance.lines().filter(|l| *l == heading).count(),
            1,
            "{heading:?} once in:\n{guidance}"
        );
        let after: Vec<&str> = guidance
            .split(&format!("{heading}\n"))
            .nth(1)
            .unwrap_or("")
            .lines()
            .take_while(|l| l.starts_with("      "))
            .map(str::trim)
            .collect();
        let commands: Vec<String> =
            describe::resolving_commands("itglue", kind, reason, None, None)
                .into_iter()
                .map(|c| c.command)
                .collect();
        assert_eq!(after, commands, "{reason}");
    }
    // Ignoring is always among them, and the example the guide's voice sets.
    assert!(
        guidance.contains(
            "  matches multiple clients: two of your clients normalize to the same name, so Scopable won't guess which one to use; rename one so the names are distinct and sync again, or link it by hand:\n      scopable-host itglue link organization ID CLIENT_ID\n      scopable-host itglue ignore organization ID\n"
        ),
        "{guidance}"
    );
}

#[test]
fn a_parent_unplaced_row_names_its_parent_and_where_it_stands() {
    let env = synced();
    let text = env.run(&["itglue", "unplaced"]);
    let parent = |text: &str, id: &str| record_line(text, id).to_string();
    let text = text.ok();
    assert!(
        parent(text, "8200901").contains(
            "organization not placed (parent-unplaced); organization 3100109 Adventure Works: matches multiple clients"
        ),
        "{text}"
    );
    assert!(
        parent(text, "8201001")
            .contains("organization 3100110 Coho Winery: matches multiple organizations"),
        "{text}"
    );
    assert!(
        parent(text, "8201201").contains("organization 3100112 Contoso LLC: no match"),
        "{text}"
    );
    // Once its organization is ignored, the row says so; once linked, the row no longer
    // blames it.
    env.run(&["itglue", "ignore", "organization", "3100109"])
        .ok();
    env.run(&["itglue", "link", "organization", "3100112", "112"])
        .ok();
    let after = env.run(&["itglue", "unplaced"]);
    let after = after.ok();
    assert!(
        parent(after, "8200901").contains("organization 3100109 Adventure Works: ignored"),
        "{after}"
    );
    assert!(
        !after.contains("organization 3100112 Contoso LLC: no match"),
        "{after}"
    );
}

/// Runs `scopable-host ARGS`, asserts success and returns stdout.
fn ok(env: &Env, args: &[&str]) -> String {
    let run: Run = env.run(args);
    run.ok().to_string()
}

#[test]
fn the_guides_review_story() {
    // Connect, then run Sync organizations first.
    let env = Env::new();
    env.import_sample();
    env.connect();
    let organizations = ok(&env, &["itglue", "sync", "organizations"]);
    line_with(
        &organizations,
        "+ 3100122 -> client 117 (name): Wingtip Toys -> Wingtip Toys",
    );
    assert!(
        organizations.contains("See what could not be placed: scopable-host itglue unplaced"),
        "{organizations}"
    );
    ok(&env, &["itglue", "sync", "configurations"]);

    // Check "Organizations we couldn't place": names, reasons in plain words, what to do.
    let unplaced = ok(&env, &["itglue", "unplaced"]);
    assert!(
        unplaced.starts_with("Organizations we couldn't place:\n"),
        "{unplaced}"
    );
    assert!(
        unplaced.contains("Configurations we couldn't place:\n"),
        "{unplaced}"
    );
    let contoso = record_line(&unplaced, "3100112");
    assert!(
        contoso.contains("Contoso LLC") && contoso.contains("no match"),
        "{contoso}"
    );
    let bellwether = record_line(&unplaced, "3100116");
    assert!(bellwether.contains("Bellwether IT"), "{bellwether}");
    line_with(&unplaced, "organization 3100112 Contoso LLC: no match");
    assert!(
        unplaced.contains("      scopable-host search clients NAME\n"),
        "{unplaced}"
    );

    // Search for the right client by name: its id, ready to paste.
    let found = ok(&env, &["search", "clients", "CONTOSO"]);
    let hit = found
        .lines()
        .find(|l| l.trim_start().starts_with("112 "))
        .unwrap_or_else(|| panic!("no client 112 in:\n{found}"));
    assert!(hit.contains("Contoso"), "{hit}");

    // Link by hand: the organization leaves the list, and its configuration links at the next
    // sync, by its serial number.
    ok(&env, &["itglue", "link", "organization", "3100112", "112"]);
    let links = ok(&env, &["itglue", "links"]);
    let linked = record_line(&links, "3100112");
    assert!(
        linked.contains("Contoso LLC")
            && linked.contains("-> client 112 Contoso")
            && linked.contains("manual"),
        "{linked}"
    );
    let unplaced = ok(&env, &["itglue", "unplaced"]);
    assert!(
        !unplaced
            .lines()
            .any(|l| l.split_whitespace().next() == Some("3100112")),
        "{unplaced}"
    );
    let configurations = ok(&env, &["itglue", "sync", "configurations"]);
    line_with(
        &configurations,
        "+ 8201201 -> configuration 5303 (serial CTS99887): CONTOSO-NAS -> NAS",
    );

    // Ignore one: the MSP's own company has no client, and never will.
    let ignored = ok(&env, &["itglue", "ignore", "organization", "3100116"]);
    assert!(ignored.contains("Bellwether IT"), "{ignored}");
    let unplaced = ok(&env, &["itglue", "unplaced"]);
    assert!(!unplaced.contains("Bellwether IT"), "{unplaced}");
    let listed = ok(&env, &["itglue", "ignored"]);
    let row = record_line(&listed, "3100116");
    assert!(
        row.contains("Bellwether IT") && row.contains("by cli:"),
        "{row}"
    );

    // Reset one: the ignored organization is listed again at once, with its reason.
    ok(&env, &["itglue", "reset", "organization", "3100116"]);
    let unplaced = ok(&env, &["itglue", "unplaced"]);
    let back = record_line(&unplaced, "3100116");
    assert!(
        back.contains("Bellwether IT") && back.contains("no match"),
        "{back}"
    );
    let listed = ok(&env, &["itglue", "ignored"]);
    assert!(!listed.contains("3100116"), "{listed}");

    // Every decision is in the activity log, newest first, with who made it.
    let activity = ok(&env, &["itglue", "activity"]);
    let decisions: Vec<&str> = activity
        .lines()
        .filter(|l| l.contains("  decision "))
        .collect();
    assert_eq!(decisions.len(), 3, "{activity}");
    for (line, what) in decisions.iter().zip([
        "decision reset organization 3100116",
        "decision ignore organization 3100116",
        "decision link organization 3100112 -> 112",
    ]) {
        assert!(line.contains(what) && line.contains("by cli:"), "{line}");
    }
    let entries = env.run(&["itglue", "activity", "--json"]).json();
    let logged: Vec<(&str, &str)> = entries
        .as_array()
        .expect("a list")
        .iter()
        .filter(|e| e["kind"] == "decision")
        .map(|e| {
            (
                e["action"].as_str().unwrap_or(""),
                e["source_id"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        logged,
        [
            ("reset", "3100116"),
            ("ignore", "3100116"),
            ("link", "3100112")
        ]
    );
}

/// What a terminal would act on: C0 controls, DEL, C1 controls, line separators and
/// bidirectional controls.
fn acts_on_terminal(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

#[track_caller]
fn assert_inert(what: &str, text: &str) {
    for line in text.lines() {
        assert!(
            !line.chars().any(acts_on_terminal),
            "{what}: a raw control in {line:?}"
        );
        assert!(
            !line.trim_start().starts_with("forged"),
            "{what}: a forged line {line:?}"
        );
    }
}

#[test]
fn names_from_either_side_reach_the_terminal_inert_and_json_exact() {
    use itglue_sim::{Config, Dataset, Org, SimConfig};
    // IT Glue names with escapes and line breaks; client names (from a CSV file) with
    // bidirectional controls and a tab, which the import accepts and the matcher drops or
    // keeps as it normalizes.
    let device = "PC\u{1b}[8m\nforged row\u{9b}";
    let dataset = Dataset {
        organizations: vec![Org::new(1, "Acme"), Org::new(2, "Beta\u{202e}]0;owned one")],
        configurations: vec![Config::new(10, 1, device).with_serial("SER12345")],
        ..Dataset::default()
    };
    let env = Env::with(SimConfig::with_dataset(dataset));
    env.connect();
    let acme = "Ac\u{202e}me\u{2066}";
    env.import(
        &format!("id,name\nc1,{acme}\nc2,\"Beta]0;owned\tone\"\nc3,\"beta\u{200f}]0;owned\tone\"\n"),
        "id,client_id,name,hostname,serial_number,mac_address\nk1,c1,\"Desk\u{202e}top\",,ser12345,\n",
    );
    let organizations = env.run(&["itglue", "sync", "organizations"]);
    assert_inert("sync organizations", organizations.ok());
    assert!(
        organizations
            .stdout
            .contains("+ 1 -> client c1 (name): Acme -> Ac\\u{202e}me\\u{2066}"),
        "{}",
        organizations.stdout
    );
    let configurations = env.run(&["itglue", "sync", "configurations"]);
    assert_inert("sync configurations", configurations.ok());
    assert!(
        configurations.stdout.contains(
            "+ 10 -> configuration k1 (serial SER12345): PC\\u{1b}[8m\\u{a}forged row\\u{9b} -> Desk\\u{202e}top"
        ),
        "{}",
        configurations.stdout
    );
    let links = env.run(&["itglue", "links"]);
    assert_inert("links", links.ok());
    assert_eq!(links.stdout.lines().count(), 2, "{}", links.stdout);
    let unplaced = env.run(&["itglue", "unplaced"]);
    assert_inert("unplaced", unplaced.ok());
    let beta = record_line(&unplaced.stdout, "2");
    assert!(
        beta.contains("candidates: c2 Beta]0;owned\\u{9}one, c3 beta\\u{200f}]0;owned\\u{9}one"),
        "{beta}"
    );
    // `--json` keeps every name exactly.
    let links = env.run(&["itglue", "links", "--json"]).json();
    assert_eq!(row(&links, "10")["name"], device);
    assert_eq!(row(&links, "10")["scopable_name"], "Desk\u{202e}top");
    assert_eq!(row(&links, "1")["scopable_name"], acme);
    let list = env.run(&["itglue", "unplaced", "--json"]).json();
    assert_eq!(
        row(&list, "2")["candidate_names"],
        serde_json::json!(["Beta]0;owned\tone", "beta\u{200f}]0;owned\tone"])
    );
}

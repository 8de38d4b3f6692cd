//! Text from a component or the API never acts on the admin's terminal: the `terminal-escape`
//! component puts escape sequences, newlines, C1 and bidirectional controls, and very long
//! values into everything it hands the host, and every command that shows them prints them
//! inert and bounded, while `--json` keeps the exact values (with C1 and bidirectional
//! controls written as `\uXXXX`).

use crate::hostile::{
    CPU_MS, Hostile, KEY, assert_audit_clean, assert_host_keeps_serving, assert_no_key_in_output,
    audit, env, manifest_text,
};
use crate::util::Run;
use itglue_sim::guests;
use scopable_sandbox::display::{ERROR_MAX_CHARS, MAX_CHARS};
use serde_json::Value;

// What the component sends (as in `tests/guests/src/terminal_escape.rs`).
const PAYLOAD: &str =
    "\u{1b}[8m\u{1b}]0;owned\u{7}\nerror: forged line\r\u{9b}2J\u{202e}txet desrever\u{2066}\u{7f}";
const LONG: usize = 5000;
const STORAGE_KEY: &str =
    "\u{1b}[8mkey\n2099-01-01T00:00:00Z  http GET forged.example/row\u{9b}\u{202e}";
/// The payload as a terminal shows it: its first escape, made visible.
const SHOWN: &str = "\\u{1b}[8m";

fn nasty_ids() -> Vec<String> {
    vec![
        "2\n  999999  forged row".to_string(),
        "\u{1b}[8m3".to_string(),
        "4\u{9b}".to_string(),
        format!("5{PAYLOAD}"),
    ]
}

fn long_name() -> String {
    format!("six{PAYLOAD}{}", "N".repeat(LONG))
}

fn candidates() -> Vec<String> {
    vec![
        format!("c{PAYLOAD}"),
        format!("d{PAYLOAD}{}", "C".repeat(LONG)),
    ]
}

fn suggestions() -> Vec<String> {
    vec![format!("s\n  888888  forged suggestion{PAYLOAD}")]
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

/// The longest line a table row may take: a few values, each at most `MAX_CHARS`.
const MAX_LINE: usize = 4 * MAX_CHARS + 200;

/// Asserts that `text` (a command's stdout or stderr, read as lines) holds nothing a terminal
/// acts on, no forged line, no line over [`MAX_LINE`], and no run of a long value's filler
/// longer than one value's bound.
#[track_caller]
fn assert_inert(what: &str, text: &str) {
    for (n, line) in text.lines().enumerate() {
        if let Some(c) = line.chars().find(|c| acts_on_terminal(*c)) {
            panic!("{what}, line {}: raw {c:?} in {line:?}", n + 1);
        }
        let trimmed = line.trim_start();
        for forged in ["999999", "888888", "error: forged", "2099-01-01"] {
            assert!(
                !trimmed.starts_with(forged),
                "{what}: a forged line: {line:?}"
            );
        }
        assert!(
            line.chars().count() <= MAX_LINE,
            "{what}, line {}: {} characters",
            n + 1,
            line.chars().count()
        );
        for filler in ['N', 'C'] {
            let run = longest_run(line, filler);
            assert!(
                run < MAX_CHARS,
                "{what}, line {}: {run} {filler:?} from one value",
                n + 1
            );
        }
    }
    assert!(!text.contains('\r'), "{what}: a carriage return");
}

fn longest_run(line: &str, c: char) -> usize {
    let (mut best, mut now) = (0, 0);
    for x in line.chars() {
        now = if x == c { now + 1 } else { 0 };
        best = best.max(now);
    }
    best
}

/// Asserts a run's stdout and stderr are inert.
#[track_caller]
fn assert_run_inert(what: &str, run: &Run) {
    assert_inert(&format!("{what} (stdout)"), &run.stdout);
    assert_inert(&format!("{what} (stderr)"), &run.stderr);
}

/// Asserts the failure line: exit `code`, one bounded, inert `error: ` line on stderr that
/// shows the payload escaped, nothing on stdout.
#[track_caller]
fn assert_one_error_line(what: &str, run: &Run, code: i32) {
    assert_eq!(
        run.code,
        code,
        "{what}: stdout {:?}, stderr {} bytes",
        run.stdout,
        run.stderr.len()
    );
    assert!(run.stdout.is_empty(), "{what}: stdout {:?}", run.stdout);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: one stderr line expected, got {} ({} bytes)",
        lines.len(),
        run.stderr.len()
    );
    let line = lines[0];
    assert!(line.starts_with("error: "), "{what}: {line:?}");
    assert!(
        line.chars().count() <= "error: ".len() + ERROR_MAX_CHARS,
        "{what}: {} characters",
        line.chars().count()
    );
    assert!(
        !line.chars().any(acts_on_terminal),
        "{what}: raw control in {line:?}"
    );
    assert!(line.contains(SHOWN), "{what}: {line:?}");
}

/// Parses a `--json` run, after checking its text holds no raw character a terminal acts on
/// (besides the newlines of the pretty layout).
#[track_caller]
fn json_of(what: &str, run: &Run) -> Value {
    let text = run.ok();
    if let Some(c) = text.chars().find(|c| *c != '\n' && acts_on_terminal(*c)) {
        panic!("{what}: raw {c:?} in the JSON text");
    }
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: not JSON ({e})"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
pub(crate) fn terminal_escape() {
    let env = env();
    let h = Hostile::new(&env, "terminal-escape", guests::TERMINAL_ESCAPE);
    let base = env.sim.base_url();
    let run = |args: &[&str]| {
        let run = h.run_with(KEY, args, &[]);
        assert_no_key_in_output(&run, KEY);
        run
    };

    // A 10 MiB error detail full of escapes: one bounded, inert line.
    let failed = run(&["test", "--endpoint", &base]);
    assert_one_error_line("test", &failed, 5);

    // The verified detail, as `connect` and `test` print it, and exactly in `--json`.
    let verified = format!("{base}/verified");
    let connect = run(&["connect", "--region", "us", "--endpoint", &verified]);
    assert_run_inert("connect", &connect);
    assert!(
        connect.ok().contains(&format!("Verified{SHOWN}")),
        "{}",
        connect.stdout
    );
    let tested = run(&["test", "--endpoint", &verified]);
    assert_run_inert("test", &tested);
    assert!(tested.ok().contains(SHOWN), "{}", tested.stdout);
    let tested = json_of(
        "test --json",
        &run(&["test", "--endpoint", &verified, "--json"]),
    );
    assert_eq!(tested["detail"], format!("Verified{PAYLOAD}"));

    env.import(
        "id,name\nc1,Acme\nc2,Beta\n",
        "id,client_id,name,hostname,serial_number,mac_address\n",
    );
    let synced = run(&["sync", "organizations"]);
    assert_run_inert("sync", &synced);
    assert!(
        synced.ok().contains("+ 1 -> client c1"),
        "{}",
        synced.stdout
    );
    let summary = json_of("sync --json", &run(&["sync", "organizations", "--json"]));
    assert_eq!(summary["fetched"], 7, "{summary}");

    // `unplaced`: every id, name, candidate and suggestion inert and bounded; exact in JSON.
    let unplaced = run(&["unplaced"]);
    assert_run_inert("unplaced", &unplaced);
    assert!(unplaced.ok().contains(SHOWN), "{}", unplaced.stdout);
    let list = json_of("unplaced --json", &run(&["unplaced", "--json"]));
    let rows = list.as_array().expect("unplaced is an array");
    let ids: Vec<&str> = rows
        .iter()
        .filter_map(|r| r["itglue_id"].as_str())
        .collect();
    for id in nasty_ids() {
        // Placed by `match` or refused when the page was read: listed either way, exactly.
        assert!(ids.contains(&id.as_str()), "{id:?} not in {ids:?}");
    }
    let six = rows
        .iter()
        .find(|r| r["itglue_id"] == "6")
        .expect("organization 6 is unplaced");
    assert_eq!(six["name"], long_name());
    assert_eq!(strings(&six["candidates"]), candidates());
    assert_eq!(strings(&six["suggestions"]), suggestions());
    // Every unplaced row is one line of text: the heading and the rows, then, after a blank
    // line, what to do.
    let (listing, guidance) = unplaced
        .stdout
        .split_once("\n\n")
        .expect("the list, then what to do");
    assert_eq!(
        listing.lines().count(),
        rows.len() + 1,
        "{}",
        unplaced.stdout
    );
    assert!(guidance.starts_with("What to do:\n"), "{guidance}");

    // `links`: exact in JSON, inert in text.
    let links_text = run(&["links"]);
    assert_run_inert("links", &links_text);
    let links = json_of("links --json", &run(&["links", "--json"]));
    let links = links.as_array().expect("links is an array");
    let linked = |id: &str| {
        links
            .iter()
            .find(|l| l["itglue_id"] == id)
            .map(|l| l["scopable_id"].clone())
    };
    assert_eq!(linked("1"), Some(Value::from("c1")), "{links:?}");
    // An id with a bidirectional control is linked, or refused when the page was read.
    match linked("7\u{202e}") {
        Some(target) => {
            assert_eq!(target, "c2");
            assert!(
                links_text.stdout.contains("7\\u{202e}"),
                "{}",
                links_text.stdout
            );
        }
        None => assert!(ids.contains(&"7\u{202e}"), "{ids:?}"),
    }
    assert_eq!(links_text.stdout.lines().count(), links.len());

    // `activity`: the storage key the component chose is a path of the audit log.
    let activity = run(&["activity"]);
    assert_run_inert("activity", &activity);
    let entries = json_of("activity --json", &run(&["activity", "--json"]));
    let entries = entries.as_array().expect("activity is an array");
    assert!(
        entries
            .iter()
            .any(|e| e["capability"] == "storage" && e["path"] == STORAGE_KEY),
        "no storage row with the key: {entries:?}"
    );
    assert!(
        activity.stdout.contains("\\u{1b}[8mkey\\u{a}2099"),
        "{}",
        activity.stdout
    );
    assert_eq!(activity.stdout.lines().count(), entries.len());

    // A failed sync whose error quotes the component: the error line, and `status` replaying
    // the stored error, are inert and bounded; `status --json` keeps it exactly.
    run(&[
        "connect",
        "--region",
        "us",
        "--endpoint",
        &format!("{verified}/fail"),
    ])
    .ok();
    let failed = run(&["sync", "organizations"]);
    assert_one_error_line("failed sync", &failed, 5);
    let status = run(&["status"]);
    assert_run_inert("status", &status);
    let line = status
        .ok()
        .lines()
        .find(|l| l.starts_with("Organizations:"))
        .expect("an Organizations line");
    assert!(
        line.contains("(failed)") && line.contains(" Error: "),
        "{line}"
    );
    assert!(line.contains(SHOWN), "{line}");
    assert!(line.chars().count() <= MAX_CHARS + 200, "{line}");
    assert_eq!(status.stdout.lines().count(), 3, "{}", status.stdout);
    let status = json_of("status --json", &run(&["status", "--json"]));
    assert_eq!(status["organization"]["status"], "failed", "{status}");
    let error = status["organization"]["error"].as_str().expect("an error");
    assert!(error.contains(PAYLOAD), "the stored error lost the payload");

    // `audit`: a description that would hide the verdict is shown inert; exact in JSON.
    let description = format!("a hostile test component{PAYLOAD}");
    let toml_description = description
        .chars()
        .map(|c| {
            if c.is_control() || acts_on_terminal(c) {
                format!("\\u{:04X}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect::<String>();
    let original = manifest_text(&h.sha256, CPU_MS);
    let described = original.replace(
        "description = \"a hostile test component\"",
        &format!("description = \"{toml_description}\""),
    );
    assert_ne!(described, original, "the manifest's description line moved");
    std::fs::write(&h.manifest, described).expect("write the manifest");
    let manifest = h.manifest.to_str().expect("utf-8 path");
    let audited = env.run(&["audit", h.wasm, "--manifest", manifest]);
    assert_run_inert("audit", &audited);
    assert!(
        audited.stdout.lines().any(|l| l.starts_with("Verdict:")),
        "{}",
        audited.stdout
    );
    let manifest_line = audited
        .stdout
        .lines()
        .find(|l| l.starts_with("Manifest:"))
        .expect("a Manifest line");
    assert!(manifest_line.contains(SHOWN), "{manifest_line}");
    let audit_json = env.run(&["audit", h.wasm, "--manifest", manifest, "--json"]);
    let text = &audit_json.stdout;
    assert!(
        !text.chars().any(|c| c != '\n' && acts_on_terminal(c)),
        "raw control in audit --json"
    );
    let report: Value = serde_json::from_str(text).expect("audit --json");
    assert_eq!(report["manifest"]["description"], description);

    assert_audit_clean(&audit(&env), &h, KEY);
    assert_host_keeps_serving(&env);
}

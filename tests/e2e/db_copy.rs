//! `db copy`: a SQLite installation (records, a stored key, two syncs) copied into PostgreSQL,
//! where it carries on: same status, the stored key re-encrypted under `SCOPABLE_VAULT_KEY`
//! and still accepted, a re-sync that keeps every link; a second copy is refused.

use crate::util::{Env, Run, fresh_postgres};
use serde_json::Value;

/// The PostgreSQL database's master key (base64 of 32 bytes); the SQLite file's is in its key
/// file.
const TARGET_KEY: &str = "ZGItY29weSB0YXJnZXQgbWFzdGVyIGtleSwgMzIgYiE=";

/// In every URL given to the binary; never in anything it prints.
const PASSWORD: &str = "pw-not-shown";

/// A fresh database on the test cluster, its URL with a password (the cluster trusts
/// 127.0.0.1, so any password is accepted).
fn target_url(name: &str) -> String {
    let url = fresh_postgres(name);
    let with = url.replacen(
        "postgres://scopable@",
        &format!("postgres://scopable:{PASSWORD}@"),
        1,
    );
    assert_ne!(with, url, "the test cluster's URL changed shape: {url}");
    with
}

/// Runs the binary on the PostgreSQL database `url` with its master key.
fn on_postgres(env: &Env, url: &str, args: &[&str]) -> Run {
    let mut all = vec!["--db", url];
    all.extend_from_slice(args);
    env.run_full(&all, &[("SCOPABLE_VAULT_KEY", TARGET_KEY)], None)
}

/// `db copy --to url` from the environment's SQLite file, with the target's master key.
fn copy(env: &Env, url: &str, json: bool) -> Run {
    let mut args = vec!["db", "copy", "--to", url];
    if json {
        args.push("--json");
    }
    env.run_full(&args, &[("SCOPABLE_VAULT_KEY", TARGET_KEY)], None)
}

/// Every table of the database at `url` with a digest of all its rows.
fn contents(url: &str) -> String {
    let query = "SELECT table_name, (xpath('/row/c/text()', query_to_xml(format(
                    'SELECT md5(coalesce(string_agg(x::text, ''|'' ORDER BY x::text), '''')) AS c FROM %I x',
                    table_name), false, true, '')))[1]::text
                 FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1";
    itglue_sim::postgres::psql(url, query)
}

/// The number of links `itglue links --json` lists.
fn link_count(run: &Run) -> usize {
    run.json().as_array().expect("a list of links").len()
}

/// The row count `db copy` printed for `table`.
fn printed_rows(out: &str, table: &str) -> u64 {
    out.lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some(table)).then(|| words.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no line for {table}: {out}"))
}

/// A SQLite installation: the sample records, a connection (its key sealed under the key
/// file's master key), and a sync of each kind.
fn installation() -> Env {
    let env = Env::new();
    env.import_sample();
    env.connect();
    env.sync("organization");
    env.sync("configuration");
    env
}

#[test]
fn an_installation_copied_to_postgres_carries_on_there() {
    let env = installation();
    let links = link_count(&env.run(&["itglue", "links", "--json"]));
    assert!(links > 0);
    let status = env.run(&["itglue", "status", "--json"]).json();
    let key_file = std::fs::read_to_string(env.path("scopable.db.key")).expect("the key file");
    assert_ne!(key_file.trim(), TARGET_KEY);
    let url = target_url("copy");
    let mut runs = Vec::new();

    let copied = copy(&env, &url, false);
    let out = copied.ok().to_string();
    assert_eq!(printed_rows(&out, "links"), links as u64, "{out}");
    assert_eq!(printed_rows(&out, "sync_runs"), 2, "{out}");
    assert_eq!(printed_rows(&out, "connections"), 1, "{out}");
    assert!(printed_rows(&out, "audit") > 0, "{out}");
    assert!(
        out.contains("1 stored key(s) re-encrypted under SCOPABLE_VAULT_KEY"),
        "{out}"
    );
    runs.push(copied);

    // The same connection and last runs, on PostgreSQL.
    let moved = on_postgres(&env, &url, &["itglue", "status", "--json"]);
    let moved_status = moved.json();
    assert_eq!(moved_status["connected"], true);
    for field in [
        "region",
        "endpoint",
        "verified_at",
        "organization",
        "configuration",
    ] {
        assert_eq!(moved_status[field], status[field], "{field}");
    }
    assert_eq!(
        moved_status["database"],
        url.replace(&format!(":{PASSWORD}"), "")
    );
    runs.push(moved);

    // The stored key was re-encrypted under SCOPABLE_VAULT_KEY: the API accepts it again.
    let tested = on_postgres(&env, &url, &["itglue", "test", "--json"]);
    let verified = tested.json();
    assert_eq!(verified["verified"], true, "{verified}");
    assert_eq!(verified["stored_connection"], true, "{verified}");
    runs.push(tested);

    // A re-sync there keeps every link.
    for kind in ["organization", "configuration"] {
        let synced = on_postgres(&env, &url, &["itglue", "sync", kind, "--json"]);
        let summary: Value = synced.json();
        assert_eq!(summary["removed_links"], 0, "{kind}: {summary}");
        runs.push(synced);
    }
    let relinked = on_postgres(&env, &url, &["itglue", "links", "--json"]);
    assert_eq!(link_count(&relinked), links);
    runs.push(relinked);

    // A second copy into the same database is refused and changes nothing.
    let before = contents(&url);
    let again = copy(&env, &url, false);
    again.fails(6, "is not empty");
    assert_eq!(contents(&url), before);
    runs.push(again);

    for run in &runs {
        assert!(
            !run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD),
            "the password was shown: {run:?}"
        );
    }
}

#[test]
fn a_copy_prints_its_counts_as_json_and_refuses_what_it_cannot_do() {
    let env = installation();
    let links = link_count(&env.run(&["itglue", "links", "--json"]));
    let url = target_url("copy_json");

    // Without a master key for the server: refused before anything is read or written.
    let keyless = env.run(&["db", "copy", "--to", &url]);
    keyless.fails(2, "needs the vault master key in SCOPABLE_VAULT_KEY");
    // --to must be a server, --db a file.
    copy(&env, "elsewhere.db", false).fails(2, "--to must be the PostgreSQL database");
    on_postgres(&env, &url, &["db", "copy", "--to", &url])
        .fails(2, "give --db the SQLite file to copy");
    // A file that does not exist is not created.
    let missing = env.path("missing.db");
    env.run_full(
        &[
            "--db",
            missing.to_str().expect("a UTF-8 path"),
            "db",
            "copy",
            "--to",
            &url,
        ],
        &[("SCOPABLE_VAULT_KEY", TARGET_KEY)],
        None,
    )
    .fails(6, "there is no database at");
    assert!(!missing.exists());

    let copied = copy(&env, &url, true);
    let counts = copied.json();
    assert_eq!(counts["tables"]["links"], links as u64, "{counts}");
    assert_eq!(counts["tables"]["connections"], 1, "{counts}");
    assert_eq!(counts["keys_resealed"], 1, "{counts}");
    let total: u64 = counts["tables"]
        .as_object()
        .expect("an object of counts")
        .values()
        .map(|n| n.as_u64().expect("a count"))
        .sum();
    assert_eq!(counts["rows"], total, "{counts}");
    assert_eq!(counts["to"], url.replace(&format!(":{PASSWORD}"), ""));
    for run in [&keyless, &copied] {
        assert!(!run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD));
    }

    // The copy wrote the key-check value of its master key: another is refused.
    let other_key = "b3RoZXIgbWFzdGVyIGtleSBmb3IgdGhlIHNlcnZlciE=";
    env.run_full(
        &["--db", &url, "itglue", "test"],
        &[("SCOPABLE_VAULT_KEY", other_key)],
        None,
    )
    .fails(
        6,
        "is not the master key this database's keys are sealed with",
    );
}

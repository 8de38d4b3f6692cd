//! The admin's rough edges, end to end: which database a command read (and that reading never
//! creates, migrates or writes one), status while and after a sync, CSV files as spreadsheets
//! export them, a closed pipe, retries that say what they wait for, typos, plurals, the
//! progress line; and the connector guide's minimal connector and `pin`.

use crate::util::{Env, Run, cache_dir};
use itglue_sim::{Dataset, Fault, FaultRule, Org, SimConfig, When};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The commands that only read, each with and without `--json`.
const READS: [&[&str]; 8] = [
    &["itglue", "status"],
    &["itglue", "status", "--json"],
    &["itglue", "links"],
    &["itglue", "links", "--json"],
    &["itglue", "unplaced"],
    &["itglue", "unplaced", "--json"],
    &["itglue", "activity"],
    &["itglue", "activity", "--json"],
];

/// The sample data, connected and synced (organizations, then configurations).
fn synced() -> Env {
    let env = Env::new();
    env.import_sample();
    env.connect();
    env.sync("organizations");
    env.sync("configurations");
    env
}

/// The binary with the harness's environment (no key, no database variable) and `args`.
fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_scopable-host"));
    cmd.args(args);
    harness_env(&mut cmd);
    cmd
}

/// The harness's environment: no key, no database variable, the shared component cache.
fn harness_env(cmd: &mut Command) {
    cmd.env_remove("ITGLUE_API_KEY")
        .env_remove("SCOPABLE_VAULT_KEY")
        .env_remove("SCOPABLE_DB")
        .env_remove("SCOPABLE_LOG")
        .env_remove("SCOPABLE_LEASE_SECS")
        .env("SCOPABLE_CACHE_DIR", cache_dir())
        .stdin(Stdio::null());
}

fn finish(cmd: &mut Command) -> Run {
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run scopable-host");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn sha256(path: &Path) -> String {
    scopable_sandbox::sandbox::sha256_hex(&std::fs::read(path).expect("read"))
}

fn user_version(path: &Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

// 6. Which database?

#[test]
fn reading_commands_never_create_a_database_and_say_which_one_is_missing() {
    let env = Env::new();
    let db = env.db();
    for args in READS {
        let run = env.run(args);
        run.fails(6, "there is no database at ");
        assert!(
            run.stderr.contains(&db.display().to_string()),
            "{args:?}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("--db") && run.stderr.contains("SCOPABLE_DB"),
            "{}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
        assert!(!db.exists(), "{args:?} created {}", db.display());
    }
    // The default, `./scopable.db`, run from another folder: named by its absolute path.
    let elsewhere = env.path("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let run = finish(command(&["itglue", "status"]).current_dir(&elsewhere));
    run.fails(6, &elsewhere.join("scopable.db").display().to_string());
    assert!(!elsewhere.join("scopable.db").exists());
    // $SCOPABLE_DB names it the same way.
    let named = env.path("named.db");
    let run = finish(
        command(&["itglue", "links", "--json"])
            .env("SCOPABLE_DB", &named)
            .current_dir(env.dir.path()),
    );
    run.fails(6, &named.display().to_string());
    assert!(!named.exists());
}

#[test]
fn status_names_the_database_it_read() {
    let env = Env::new();
    env.import_sample();
    let status = env.run(&["itglue", "status", "--json"]).json();
    assert_eq!(
        status["database"],
        env.db().display().to_string(),
        "{status}"
    );
    assert_eq!(status["connected"], false);
    let text = env.run(&["itglue", "status"]);
    assert!(
        text.ok()
            .contains(&format!("database {}", env.db().display())),
        "{}",
        text.stdout
    );
    // A relative --db is shown as the absolute path it resolved to.
    let run = finish(
        command(&["--db", "scopable.db", "itglue", "status", "--json"]).current_dir(env.dir.path()),
    );
    assert_eq!(run.json()["database"], env.db().display().to_string());
}

#[test]
fn a_directory_or_an_unopenable_path_is_a_database_file_problem() {
    let env = Env::new();
    let folder = env.path("folder");
    std::fs::create_dir(&folder).unwrap();
    let clients = env.write("clients.csv", "id,name\nc1,Acme\n");
    let as_db = |args: &[&str]| {
        let mut all = vec!["--db", folder.to_str().unwrap()];
        all.extend_from_slice(args);
        finish(&mut command(&all))
    };
    for args in [
        &["itglue", "status"][..],
        &["itglue", "unplaced", "--json"],
        &["import", "clients", clients.to_str().unwrap()],
        &["itglue", "sync", "organizations"],
    ] {
        let run = as_db(args);
        run.fails(6, "is a directory, not a database file");
        assert!(
            run.stderr.contains(&folder.display().to_string()),
            "{}",
            run.stderr
        );
    }
    // A folder that does not exist, for a command that writes.
    let run = finish(&mut command(&[
        "--db",
        env.path("no/such/folder/scopable.db").to_str().unwrap(),
        "import",
        "clients",
        clients.to_str().unwrap(),
    ]));
    run.fails(6, "cannot open the database");
}

#[test]
fn an_older_database_is_read_as_it_is_and_upgraded_only_by_a_write() {
    let env = Env::new();
    {
        let conn = rusqlite::Connection::open(env.db()).unwrap();
        conn.execute_batch(scopable_store::db::MIGRATIONS[0])
            .unwrap();
        conn.execute_batch(
            "PRAGMA user_version = 1;
             INSERT INTO meta (key, value) VALUES ('account_id', 'abc');
             INSERT INTO clients (id, name) VALUES ('c1', 'Acme');
             INSERT INTO links VALUES ('itglue', 'organization', '1001', 'c1', 'auto', '[\"name\"]', '2024-01-01T00:00:00Z');
             INSERT INTO itglue_records VALUES ('itglue', 'organization', '1001', 'Acme', NULL);
             INSERT INTO sync_runs (connector, kind, dry_run, started_at, finished_at, status, fetched, linked, skipped)
                 VALUES ('itglue', 'organization', 0, '2024-01-01T00:00:00Z', '2024-01-01T00:00:05Z', 'ok', 3, 1, 2);",
        )
        .unwrap();
    }
    let before = sha256(&env.db());
    let links = env.run(&["itglue", "links", "--json"]).json();
    assert_eq!(links[0]["itglue_id"], "1001", "{links}");
    assert_eq!(links[0]["scopable_id"], "c1", "{links}");
    let status = env.run(&["itglue", "status", "--json"]).json();
    assert_eq!(status["organization"]["status"], "ok", "{status}");
    assert_eq!(status["organization"]["fetched"], 3, "{status}");
    env.run(&["itglue", "unplaced", "--json"]).json();
    env.run(&["itglue", "activity", "--json"]).json();
    assert_eq!(sha256(&env.db()), before, "a read changed the file");
    assert_eq!(user_version(&env.db()), 1);
    // The first command that writes upgrades it in place.
    let clients = env.write("more.csv", "id,name\nc2,Beta\n");
    env.run(&["import", "clients", clients.to_str().unwrap()])
        .ok();
    assert_eq!(user_version(&env.db()), scopable_store::db::SCHEMA_VERSION);
    let links = env.run(&["itglue", "links", "--json"]).json();
    assert_eq!(links.as_array().map(Vec::len), Some(1), "{links}");
}

#[test]
fn an_auditor_reads_a_read_only_copy_and_cannot_change_it() {
    let env = synced();
    let owner: Vec<Value> = [
        &["itglue", "links", "--json"][..],
        &["itglue", "unplaced", "--json"],
    ]
    .iter()
    .map(|args| env.run(args).json())
    .collect();
    // The auditor's copy: a file (0444) in a folder (0555) they may read but not write; as
    // root, the auditor is another user (root may write anything).
    let folder = env.path("audit");
    std::fs::create_dir(&folder).unwrap();
    let copy = folder.join("scopable.db");
    // A consistent copy, as `sqlite3 scopable.db ".backup copy.db"` makes one, in WAL mode
    // like the original (reading it needs a `-shm` file the auditor cannot create).
    env.sqlite()
        .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
        .unwrap();
    {
        let conn = rusqlite::Connection::open(&copy).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }
    assert!(!PathBuf::from(format!("{}-wal", copy.display())).exists());
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o555)).unwrap();
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let auditor_cache = env.path("auditor-cache");
    std::fs::create_dir(&auditor_cache).unwrap();
    let before = sha256(&copy);
    let as_auditor = |args: &[&str]| {
        let mut all = vec!["--db", copy.to_str().unwrap()];
        all.extend_from_slice(args);
        let mut cmd = command(&all);
        cmd.current_dir(&folder)
            .env("SCOPABLE_CACHE_DIR", &auditor_cache);
        if is_root() {
            use std::os::unix::process::CommandExt;
            cmd.uid(65534).gid(65534);
        }
        finish(&mut cmd)
    };
    if is_root() {
        std::os::unix::fs::chown(&auditor_cache, Some(65534), Some(65534)).unwrap();
    }
    assert_eq!(as_auditor(&["itglue", "links", "--json"]).json(), owner[0]);
    assert_eq!(
        as_auditor(&["itglue", "unplaced", "--json"]).json(),
        owner[1]
    );
    let status = as_auditor(&["itglue", "status", "--json"]).json();
    assert_eq!(status["database"], copy.display().to_string());
    assert_eq!(status["connected"], true, "{status}");
    assert_eq!(status["organization"]["status"], "ok", "{status}");
    as_auditor(&["itglue", "activity"]).ok();
    // A command that changes the database says the file is read-only for this user.
    let id = owner[0][0]["itglue_id"].as_str().unwrap().to_string();
    as_auditor(&["itglue", "ignore", "organization", &id]).fails(6, "read-only for this user");
    let clients = env.write("c.csv", "id,name\nc9,Other\n");
    as_auditor(&["import", "clients", clients.to_str().unwrap()])
        .fails(6, "read-only for this user");
    assert_eq!(sha256(&copy), before, "the auditor's copy changed");
    let left: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["scopable.db"], "files beside the copy: {left:?}");
}

// 7. Status tells the truth while and after a sync.

/// `n` organizations, connected, each with its client.
fn orgs_env(n: u64) -> Env {
    let env = Env::with(SimConfig::with_dataset(Dataset {
        organizations: (1..=n)
            .map(|i| Org::new(i, &format!("Customer {i}")))
            .collect(),
        ..Dataset::default()
    }));
    env.connect();
    let mut clients = String::from("id,name\n");
    for i in 1..=n {
        clients.push_str(&format!("c{i},Customer {i}\n"));
    }
    env.import(
        &clients,
        "id,client_id,name,hostname,serial_number,mac_address\n",
    );
    env
}

fn spawn(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> std::process::Child {
    let db = env.db();
    let mut all = vec!["--db", db.to_str().unwrap()];
    all.extend_from_slice(args);
    let mut cmd = command(&all);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn a sync")
}

#[test]
fn status_shows_a_running_sync_and_keeps_the_last_good_counts() {
    let env = orgs_env(3);
    let good = env.sync("organizations");
    assert_eq!(good["linked"], 3, "{good}");

    // While a sync runs (another process, holding its lease).
    env.sim
        .add_fault(FaultRule::always(Fault::Latency(Duration::from_secs(3))));
    env.sim.clear_requests();
    let child = spawn(&env, &["itglue", "sync", "organizations", "--json"], &[]);
    env.wait_for_a_request();
    let status = env.run(&["itglue", "status", "--json"]).json();
    let org = &status["organization"];
    assert_eq!(org["status"], "running", "{status}");
    assert!(org["error"].is_null(), "{status}");
    assert!(org["finished_at"].is_null(), "{status}");
    for key in ["fetched", "linked", "skipped", "errored", "finished_at"] {
        assert_eq!(org["last_ok"][key], good[key], "{key}: {status}");
    }
    let text = env.run(&["itglue", "status"]);
    let line = text
        .ok()
        .lines()
        .find(|l| l.starts_with("Organizations:"))
        .unwrap()
        .to_string();
    assert!(line.contains("(running)"), "{line}");
    assert!(
        line.contains("Last good sync") && line.contains("3 linked"),
        "{line}"
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = env.run(&["itglue", "status", "--json"]).json();
    assert_eq!(ok["organization"]["status"], "ok", "{ok}");
    assert_eq!(
        ok["organization"]["last_ok"]["started_at"],
        ok["organization"]["started_at"]
    );

    // After a failed sync: its error, and the last good counts beside it.
    env.sim.clear_faults();
    env.sim.add_fault(FaultRule::always(Fault::unavailable()));
    env.run_itglue_with(
        "max_attempts = 2\nretry_base_ms = 5\nretry_max_ms = 5",
        &["sync", "organizations", "--json"],
    )
    .fails(4, "unavailable");
    let status = env.run(&["itglue", "status", "--json"]).json();
    let org = &status["organization"];
    assert_eq!(org["status"], "failed", "{status}");
    assert!(
        org["error"].as_str().unwrap_or("").contains("503"),
        "{status}"
    );
    assert_eq!(
        org["linked"], 0,
        "the failed run's own counts keep their meaning"
    );
    assert_eq!(org["last_ok"]["linked"], 3, "{status}");
    assert_eq!(org["last_ok"]["fetched"], 3, "{status}");
    assert!(status["configuration"].is_null(), "{status}");
    let line = env
        .run(&["itglue", "status"])
        .ok()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    assert!(line.starts_with("Organizations: last sync "), "{line}");
    assert!(line.contains("(failed). Error: "), "{line}");
    assert!(
        line.contains(": 3 fetched, 3 linked, 0 skipped, 0 errored."),
        "{line}"
    );
}

#[test]
fn a_sync_whose_process_died_shows_as_failed_without_a_write() {
    let env = orgs_env(2);
    env.sim
        .add_fault(FaultRule::always(Fault::Latency(Duration::from_secs(20))));
    env.sim.clear_requests();
    let mut child = spawn(
        &env,
        &["itglue", "sync", "organizations", "--json"],
        &[("SCOPABLE_LEASE_SECS", "1")],
    );
    env.wait_for_a_request();
    assert_eq!(
        env.run(&["itglue", "status", "--json"]).json()["organization"]["status"],
        "running"
    );
    child.kill().unwrap(); // SIGKILL: the run stays `running` until its lease lapses
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let status = env.run(&["itglue", "status", "--json"]).json();
    assert_eq!(status["organization"]["status"], "failed", "{status}");
    assert!(
        status["organization"]["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("interrupted"),
        "{status}"
    );
    assert!(status["organization"]["last_ok"].is_null(), "{status}");
    // The reader recorded nothing: the row is still as the killed process left it.
    let stored: String = env
        .sqlite()
        .query_row("SELECT status FROM sync_runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, "running");
}

// 8. CSV exports as people have them.

#[test]
fn csv_files_as_spreadsheets_export_them_import() {
    let env = Env::new();
    // Excel in a European locale: semicolons, headers in its own case and order, extra columns.
    let clients = env.write(
        "clients.csv",
        "\u{feff}Name;ID;Account manager\r\n\"Acme; Inc.\";c1;Ann\r\nBeta;c2;Bob\r\n",
    );
    let run = env.run(&["import", "clients", clients.to_str().unwrap()]);
    assert_eq!(run.ok(), "Imported 2 clients (2 new, 0 updated).\n");
    assert!(
        run.stderr
            .contains("line 1: ignoring the column `Account manager`"),
        "{}",
        run.stderr
    );
    // Tab-separated, reordered.
    let configurations = env.write(
        "configurations.tsv",
        "serial_number\tmac_address\tid\tclient_id\tname\thostname\nSN-1\taa:bb:cc:dd:ee:01\ts1\tc1\tDC\tdc01\n",
    );
    let run = env.run(&["import", "configurations", configurations.to_str().unwrap()]);
    assert_eq!(run.ok(), "Imported 1 configuration (1 new, 0 updated).\n");
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    let stored: (String, String, String) = env
        .sqlite()
        .query_row(
            "SELECT c.name, k.serial_number, k.hostname FROM configurations k JOIN clients c ON c.id = k.client_id",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(stored, ("Acme; Inc.".into(), "SN-1".into(), "dc01".into()));
    // An unclosed quote is named as such, with its line, and nothing changes.
    let broken = env.write("broken.csv", "id;name\nc3;Gamma\nc4;\"Delta\nc5;Epsilon\n");
    let run = env.run(&["import", "clients", broken.to_str().unwrap()]);
    run.fails(6, "line 3: a quoted field is not closed");
    assert!(
        run.stderr.contains("nothing was imported"),
        "{}",
        run.stderr
    );
    let count: i64 = env
        .sqlite()
        .query_row("SELECT count(*) FROM clients", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 2);
}

// 9. Rough edges.

#[test]
fn a_closed_pipe_ends_every_reading_command_quietly() {
    let env = synced();
    let db = env.db();
    for args in READS {
        let (reader, writer) = std::io::pipe().unwrap();
        // The reader is gone before the command writes a byte: `... | head -0`.
        drop(reader);
        let mut all = vec!["--db", db.to_str().unwrap()];
        all.extend_from_slice(args);
        let out = command(&all)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

#[test]
fn every_retry_says_what_failed_and_when_the_next_try_is() {
    let env = orgs_env(2);
    env.sim
        .add_fault(FaultRule::new(When::NextN(2), Fault::unavailable()));
    let run = env.run_itglue_with(
        "max_attempts = 4\nretry_base_ms = 20\nretry_max_ms = 40",
        &["sync", "organizations", "--json"],
    );
    let summary = run.json();
    assert_eq!(summary["linked"], 2);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "one line per retry: {}", run.stderr);
    for (line, attempt) in lines.iter().zip(["(attempt 2 of 4)", "(attempt 3 of 4)"]) {
        assert!(
            line.starts_with("page 1: IT Glue answered HTTP 503"),
            "{line}"
        );
        assert!(line.contains("; retrying in "), "{line}");
        assert!(line.ends_with(attempt), "{line}");
    }
    // `test` too.
    env.sim.add_fault(FaultRule::new(
        When::NextN(1),
        Fault::rate_limited_retry_after("1"),
    ));
    let (wasm, manifest) = env.itglue_with_limits("max_attempts = 2");
    let run = env.run_full(
        &[
            "--connector",
            &wasm,
            "--manifest",
            &manifest,
            "itglue",
            "test",
        ],
        &[],
        None,
    );
    run.ok();
    assert!(
        run.stderr
            .contains("test: IT Glue asked to slow down (HTTP 429")
            && run.stderr.contains("retrying in 1.0 s (attempt 2 of 2)"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_mistyped_command_gets_a_suggestion() {
    let env = Env::new();
    env.run(&["itglu", "status"])
        .fails(2, "unknown command \"itglu\"; did you mean \"itglue\"?");
    env.run(&["itlgue", "unplaced"])
        .fails(2, "did you mean \"itglue\"?");
    env.run(&["improt", "clients", "x.csv"])
        .fails(2, "did you mean \"import\"?");
    let far = env.run(&["docuvault", "status"]);
    far.fails(
        2,
        "unknown command \"docuvault\"; run another connector with --connector",
    );
    assert!(!far.stderr.contains("did you mean"), "{}", far.stderr);
    assert!(!env.db().exists());
}

#[test]
fn reset_of_an_automatic_link_says_it_is_automatic() {
    let env = synced();
    let links = env.run(&["itglue", "links", "--json"]).json();
    let auto = links
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["kind"] == "organization" && l["source"] == "auto")
        .expect("an automatic organization link");
    let id = auto["itglue_id"].as_str().unwrap();
    let run = env.run(&["itglue", "reset", "organization", id]);
    run.fails(6, &format!("organization {id} is linked automatically"));
    assert!(
        run.stderr.contains("to stop it linking use `ignore`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains(&format!("scopable-host itglue ignore organization {id}")),
        "{}",
        run.stderr
    );
    assert_eq!(env.run(&["itglue", "links", "--json"]).json(), links);
    // A record with no link and no decision still says there is nothing to reset.
    env.run(&["itglue", "reset", "organization", "424242"])
        .fails(6, "no manual decision to reset");
}

#[test]
fn one_of_a_thing_is_singular() {
    let env = Env::with(SimConfig::with_dataset(Dataset {
        organizations: vec![Org::new(1, "Acme")],
        ..Dataset::default()
    }));
    let clients = env.write("clients.csv", "id,name\nc1,Acme\n");
    assert_eq!(
        env.run(&["import", "clients", clients.to_str().unwrap()])
            .ok(),
        "Imported 1 client (1 new, 0 updated).\n"
    );
    env.connect();
    let out = env.run(&["itglue", "sync", "organizations"]);
    assert!(
        out.ok().contains(
            "Synced: 1 organization fetched: 1 linked, 0 skipped, 0 errored; 1 new link, 0 removed; 1 request."
        ),
        "{}",
        out.stdout
    );
}

#[test]
fn the_first_progress_frame_does_not_show_zero_of_zero() {
    if Command::new("script").arg("--version").output().is_err() {
        panic!("`script` (util-linux) is needed to give the sync a terminal: install util-linux");
    }
    let env = orgs_env(2);
    env.sim.add_fault(FaultRule::new(
        When::Page(1),
        Fault::Latency(Duration::from_millis(1500)),
    ));
    let shell = format!(
        "'{}' itglue sync organizations",
        env!("CARGO_BIN_EXE_scopable-host")
    );
    // A terminal for the sync's stderr: `script` runs it on a pseudo-terminal.
    let mut script = Command::new("script");
    script.args(["-q", "-e", "-c", &shell, "/dev/null"]);
    harness_env(&mut script);
    let run = finish(
        script
            .env("SCOPABLE_DB", env.db())
            .env("TERM", "xterm")
            .current_dir(env.dir.path()),
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("fetching page 1"),
        "no progress line before page 1: {:?}",
        run.stdout
    );
    assert!(!run.stdout.contains("0/0"), "{:?}", run.stdout);
    assert!(
        run.stdout.contains("Synced: 2 organizations fetched"),
        "{:?}",
        run.stdout
    );
}

// The connector guide.

/// The fenced code blocks of `lang` in the guide's section that starts with `heading`.
fn guide_blocks(heading: &str, lang: &str) -> Vec<String> {
    let guide = include_str!("../../docs/connector-guide.md");
    let start = guide
        .find(heading)
        .unwrap_or_else(|| panic!("the guide has no {heading:?}"));
    let section = &guide[start..];
    let end = section[heading.len()..]
        .find("\n## ")
        .map_or(section.len(), |i| i + heading.len());
    let mut blocks = Vec::new();
    let mut rest = &section[..end];
    let fence = format!("```{lang}\n");
    while let Some(i) = rest.find(&fence) {
        let body = &rest[i + fence.len()..];
        let close = body.find("```").expect("a closed code block");
        blocks.push(body[..close].to_string());
        rest = &body[close..];
    }
    blocks
}

#[test]
fn the_guides_minimal_connector_is_the_example_that_is_built_and_checked() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/minimal");
    let read = |p: &str| std::fs::read_to_string(example.join(p)).unwrap();
    let cargo = guide_blocks("## 5. A minimal connector", "toml");
    let rust = guide_blocks("## 5. A minimal connector", "rust");
    assert_eq!(
        cargo.first(),
        Some(&read("Cargo.toml")),
        "section 5's Cargo.toml"
    );
    assert_eq!(
        rust.first(),
        Some(&read("src/lib.rs")),
        "section 5's src/lib.rs"
    );
    let manifest = guide_blocks("## 3. The manifest", "toml");
    assert_eq!(
        manifest.last(),
        Some(&read("manifest.toml")),
        "section 3's manifest"
    );
    assert_eq!(
        read("wit/integration.wit"),
        include_str!("../../wit/integration.wit"),
        "the example's copy of the contract"
    );

    // The component built from it (tests/build.rs) is pinned, accepted and passes `check`.
    let env = Env::new();
    let manifest = env.write("exampledocs.toml", read("manifest.toml"));
    let component = itglue_sim::guests::MINIMAL_CONNECTOR;
    let pin = env.run(&["pin", component, "--manifest", manifest.to_str().unwrap()]);
    assert!(pin.ok().starts_with("Pinned "), "{}", pin.stdout);
    let audit = env.run(&[
        "audit",
        component,
        "--manifest",
        manifest.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(audit.json()["accepted"], true, "{}", audit.stdout);
    let check = env.run(&[
        "check",
        component,
        "--manifest",
        manifest.to_str().unwrap(),
        "--json",
    ]);
    let report = check.json();
    assert_eq!(report["passed"], true, "{report}");
}

#[test]
fn pin_rewrites_only_the_sha256_line_and_refuses_what_the_host_refuses() {
    let env = Env::new();
    let component = itglue_sim::guests::EXAMPLE_CONNECTOR;
    let shipped = include_str!("../../examples/docuvault/manifest.toml");
    let stale = format!(
        "# Docuvault, pinned by hand\nsha256 = \"{}\"  # update after every build\n{shipped}",
        "0".repeat(64)
    );
    let manifest = env.write("docuvault.toml", &stale);
    let manifest_arg = manifest.to_str().unwrap();
    let before_audit = env.run(&["audit", component, "--manifest", manifest_arg]);
    assert_eq!(
        before_audit.code, 5,
        "a stale pin is refused: {}",
        before_audit.stdout
    );
    let run = env.run(&["pin", component, "--manifest", manifest_arg]);
    let digest = scopable_sandbox::sandbox::sha256_hex(&std::fs::read(component).unwrap());
    assert_eq!(
        run.ok(),
        format!("Pinned {component} in {manifest_arg}: sha256 = \"{digest}\".\n")
    );
    let pinned = std::fs::read_to_string(&manifest).unwrap();
    assert_eq!(
        pinned,
        stale.replace(&"0".repeat(64), &digest),
        "only the pin changed"
    );
    env.run(&["audit", component, "--manifest", manifest_arg])
        .ok();
    // Again: nothing to do.
    let again = env.run(&["pin", component, "--manifest", manifest_arg]);
    assert!(again.ok().contains("nothing changed"), "{}", again.stdout);
    assert_eq!(std::fs::read_to_string(&manifest).unwrap(), pinned);
    // A component the host refuses (it imports the filesystem) is not pinned.
    let refused = env.run(&[
        "pin",
        itglue_sim::guests::FILESYSTEM,
        "--manifest",
        manifest_arg,
    ]);
    refused.fails(5, "the host would refuse");
    assert!(
        refused.stderr.contains("wasi:filesystem"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("the manifest is unchanged"),
        "{}",
        refused.stderr
    );
    assert_eq!(std::fs::read_to_string(&manifest).unwrap(), pinned);
    // No candidate file is left beside the manifest.
    let names: Vec<String> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".pin-"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
    // Without --manifest: usage.
    env.run(&["pin", component])
        .fails(2, "pin needs --manifest");
}

//! Sync runs end to end: every run records its end, one sync per kind at a time (a lease),
//! what is retried and what is not, whose failure is whose (exit status), and which clock each
//! timeout reads.

use crate::util::{Env, Run, assert_counts_add_up};
use itglue_sim::{Dataset, Fault, FaultRule, Org, SimConfig, When};
use std::time::{Duration, Instant};

/// `n` organizations, connected, with a client for each odd one.
fn orgs_env(n: u64) -> Env {
    let env = Env::with(SimConfig::with_dataset(Dataset {
        organizations: (1..=n)
            .map(|i| Org::new(i, &format!("Customer {i}")))
            .collect(),
        ..Dataset::default()
    }));
    env.connect();
    let mut clients = String::from("id,name\n");
    for i in (1..=n).step_by(2) {
        clients.push_str(&format!("c{i},Customer {i}\n"));
    }
    env.import(
        &clients,
        "id,client_id,name,hostname,serial_number,mac_address\n",
    );
    env
}

/// Runs `itglue ARGS` with the built-in component under `limits`, with extra environment.
fn run_with(env: &Env, limits: &str, args: &[&str], vars: &[(&str, &str)]) -> Run {
    let (wasm, manifest) = env.itglue_with_limits(limits);
    let mut all = vec![
        "--connector",
        wasm.as_str(),
        "--manifest",
        manifest.as_str(),
        "itglue",
    ];
    all.extend_from_slice(args);
    env.run_full(&all, vars, None)
}

/// Every sync run: (kind, status, error).
fn runs(env: &Env) -> Vec<(String, String, Option<String>)> {
    env.sqlite()
        .prepare("SELECT kind, status, error FROM sync_runs ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Requests the simulator received for `/organizations`.
fn org_requests(env: &Env) -> usize {
    env.sim
        .requests()
        .iter()
        .filter(|r| r.path == "/organizations")
        .count()
}

/// A `sync organizations --json` process, started now.
fn spawn_sync(env: &Env, vars: &[(&str, &str)]) -> std::process::Child {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_scopable-host"));
    cmd.arg("--db")
        .arg(env.db())
        .args(["itglue", "sync", "organizations", "--json"])
        .env("SCOPABLE_CACHE_DIR", crate::util::cache_dir())
        .env_remove("ITGLUE_API_KEY")
        .env_remove("SCOPABLE_LEASE_SECS")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

#[test]
fn two_syncs_of_one_kind_never_run_at_once() {
    let env = orgs_env(4);
    env.sim
        .add_fault(FaultRule::always(Fault::Latency(Duration::from_millis(
            1500,
        ))));
    env.sim.clear_requests();
    let first = spawn_sync(&env, &[]);
    env.wait_for_a_request();
    // The second is told, at once, and changes nothing: no run row, no request.
    let second = env.run(&["itglue", "sync", "organizations", "--json"]);
    second.fails(1, "already running");
    assert!(
        second.stderr.contains("run 1, started "),
        "{}",
        second.stderr
    );
    assert!(second.stdout.is_empty());
    assert_eq!(org_requests(&env), 1, "only the first sync's request");
    let first = first.wait_with_output().unwrap();
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(
        runs(&env),
        vec![("organization".into(), "ok".into(), None)],
        "one run, and it succeeded"
    );
    // Once it has finished, the next sync runs.
    env.sim.clear_faults();
    assert_counts_add_up(&env.sync("organizations"));
}

#[test]
fn a_run_whose_lease_expired_no_longer_blocks() {
    let env = orgs_env(4);
    env.sim
        .add_fault(FaultRule::always(Fault::Latency(Duration::from_secs(20))));
    env.sim.clear_requests();
    let mut child = spawn_sync(&env, &[("SCOPABLE_LEASE_SECS", "2")]);
    env.wait_for_a_request();
    child.kill().unwrap(); // SIGKILL: the run stays `running` with its lease
    child.wait().unwrap();
    env.sim.clear_faults();
    std::thread::sleep(Duration::from_millis(2500));
    assert_counts_add_up(&env.sync("organizations"));
    let all = runs(&env);
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0].1, "failed");
    assert!(
        all[0].2.as_deref().unwrap_or("").starts_with("interrupted"),
        "{all:?}"
    );
    assert_eq!(all[1].1, "ok");
    // A lease that is not a number of seconds is refused before anything starts.
    env.run_full(
        &["itglue", "sync", "organizations"],
        &[("SCOPABLE_LEASE_SECS", "0")],
        None,
    )
    .fails(2, "SCOPABLE_LEASE_SECS");
    assert_eq!(runs(&env).len(), 2);
}

#[test]
fn a_host_failure_is_the_hosts_and_is_not_retried() {
    let env = orgs_env(2);
    // The request budget lives in the database: make its table unusable.
    env.sqlite()
        .execute_batch("DROP TABLE request_budget;")
        .unwrap();
    env.sim.clear_requests();
    let limits = "max_attempts = 5\nretry_base_ms = 5\nretry_max_ms = 5";
    let log = [("SCOPABLE_LOG", "warn")];
    let sync = run_with(&env, limits, &["sync", "organizations", "--json"], &log);
    sync.fails(1, "request budget");
    assert!(
        sync.stderr.contains("the host's failure"),
        "{}",
        sync.stderr
    );
    assert!(
        !sync.stderr.contains("retrying"),
        "a host failure was retried: {}",
        sync.stderr
    );
    assert!(!sync.stderr.contains("unavailable"), "{}", sync.stderr);
    assert!(env.sim.requests().is_empty(), "nothing was sent");
    let all = runs(&env);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].1, "failed");
    assert!(
        all[0].2.as_deref().unwrap_or("").contains("request budget"),
        "{all:?}"
    );
    // `test` too.
    let test = run_with(&env, limits, &["test"], &log);
    test.fails(1, "request budget");
    assert!(!test.stderr.contains("retrying"), "{}", test.stderr);
}

#[test]
fn definite_refusals_are_tried_once() {
    for (label, fault) in [
        (
            "HTTP 400",
            Fault::Status {
                status: 400,
                retry_after: None,
                body: r#"{"errors":[{"status":"400","title":"Bad Request"}]}"#.into(),
            },
        ),
        (
            "HTTP 302",
            Fault::Redirect {
                location: "https://login.example.com/".into(),
            },
        ),
    ] {
        let env = orgs_env(2);
        env.sim.add_fault(FaultRule::new(
            When::PathPrefix("/organizations".into()),
            fault,
        ));
        env.sim.clear_requests();
        let started = Instant::now();
        // The default back-off (2 s, doubling, 5 attempts) would take 15 s or more.
        let sync = env.run(&["itglue", "sync", "organizations", "--json"]);
        sync.fails(5, label);
        assert!(sync.stderr.contains("not retried"), "{}", sync.stderr);
        assert_eq!(org_requests(&env), 1, "{label}: tried once");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{label}: {:?}",
            started.elapsed()
        );
        assert_eq!(runs(&env)[0].1, "failed");
    }
    // A proxy's HTML page can pass on the next attempt: still retried.
    let env = orgs_env(2);
    env.sim.add_fault(FaultRule::new(
        When::PathPrefix("/organizations".into()).times(1),
        Fault::Html { status: 200 },
    ));
    env.sim.clear_requests();
    let s = run_with(
        &env,
        "retry_base_ms = 5\nretry_max_ms = 5",
        &["sync", "organizations", "--json"],
        &[],
    )
    .json();
    assert_eq!(s["requests"], 2, "{s}");
}

#[test]
fn pacing_never_counts_against_a_call() {
    // One request per 2 s, three pages, and calls of 1.5 s: each page waits for the budget
    // longer than its call may take, and the waits are the host's, not the connector's.
    let env = orgs_env(3);
    env.sim.clear_requests();
    let started = Instant::now();
    let s = run_with(
        &env,
        "page_size = 1\nbudget_requests = 1\nbudget_window_secs = 2\ncall_timeout_ms = 1500\nmax_attempts = 1",
        &["sync", "organizations", "--json"],
        &[],
    )
    .json();
    assert_counts_add_up(&s);
    assert_eq!(s["fetched"], 3);
    assert_eq!(org_requests(&env), 3, "one request a page, none retried");
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "the budget paced the pages: {:?}",
        started.elapsed()
    );
}

#[test]
fn a_call_over_its_own_time_is_the_connectors_failure() {
    let env = orgs_env(2);
    env.sim
        .add_fault(FaultRule::always(Fault::Latency(Duration::from_secs(4))));
    env.sim.clear_requests();
    let run = run_with(
        &env,
        "call_timeout_ms = 1000",
        &["sync", "organizations", "--json"],
        &[],
    );
    run.fails(5, "call_timeout_ms");
    assert!(
        run.stderr.contains("did not finish within 1 s"),
        "{}",
        run.stderr
    );
    assert_eq!(org_requests(&env), 1, "a timeout is not retried");
    assert_eq!(runs(&env)[0].1, "failed");
}

#[test]
fn a_sync_over_its_wall_clock_is_unavailable() {
    let env = orgs_env(2);
    env.sim
        .add_fault(FaultRule::always(Fault::Latency(Duration::from_secs(4))));
    let run = run_with(
        &env,
        "sync_timeout_secs = 1",
        &["sync", "organizations", "--json"],
        &[],
    );
    run.fails(4, "sync_timeout_secs");
    let all = runs(&env);
    assert_eq!(all[0].1, "failed");
    assert!(
        all[0]
            .2
            .as_deref()
            .unwrap_or("")
            .contains("sync_timeout_secs"),
        "{all:?}"
    );
}

//! Replicas of the runtime sharing one PostgreSQL database: many accounts' runs each done
//! once across three replicas, a replica killed mid-sync whose run another finishes, and
//! replicas starting together against an empty database.

use crate::serve_util::Server;
use crate::util::{Env, Run, fresh_postgres};
use itglue_sim::postgres::psql;
use itglue_sim::{SimConfig, generated_dataset, generated_scopable_csv};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A master key (base64 of 32 bytes) every replica of a test shares.
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Runs the command line on the PostgreSQL database `url` with the shared master key.
fn cli(env: &Env, url: &str, args: &[&str]) -> Run {
    let mut all = vec!["--db", url];
    all.extend_from_slice(args);
    env.run_full(&all, &[("SCOPABLE_VAULT_KEY", KEY)], None)
}

/// Starts a replica of `serve` on `url`, pointed at `env`'s simulator.
fn replica(env: &Env, url: &str, workers: &str, vars: &[(&str, &str)]) -> Server {
    let endpoint = format!("itglue={}", env.endpoint());
    let args = [
        "--db",
        url,
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--endpoint",
        &endpoint,
        "--workers",
        workers,
    ];
    let mut all_vars = vec![("SCOPABLE_VAULT_KEY", KEY)];
    all_vars.extend_from_slice(vars);
    Server::start_with(env, &args, &all_vars)
}

/// Adds account `id` with the feature on; its admin token.
fn account(env: &Env, url: &str, id: &str) -> String {
    cli(env, url, &["accounts", "add", id]).ok();
    cli(env, url, &["accounts", "enable", id, "itglue"]).ok();
    let token = cli(env, url, &["accounts", "token", id, "--role", "admin"])
        .ok()
        .trim()
        .to_string();
    assert!(token.starts_with("scopable_tok_"), "{token}");
    token
}

/// Imports `clients` and `configurations` (CSV) through `server` and connects the simulator's
/// key, for `token`'s account.
fn set_up(server: &Server, token: &str, clients: &str, configurations: &str) {
    for (path, csv) in [
        ("/api/v1/clients", clients),
        ("/api/v1/configurations", configurations),
    ] {
        server
            .send(
                "POST",
                path,
                Some(token),
                &[],
                Some(("text/csv", csv.as_bytes().to_vec())),
            )
            .expect(200);
    }
    crate::serve_util::connect(server, token);
}

/// Queues a sync of `kind`; its run id.
fn queue(server: &Server, token: &str, kind: &str) -> i64 {
    server
        .json(
            "POST",
            "/api/v1/integrations/itglue/syncs",
            token,
            &json!({"kind": kind}),
        )
        .expect(202)
        .json()["id"]
        .as_i64()
        .expect("run id")
}

fn run(server: &Server, token: &str, id: i64) -> Value {
    server
        .get(&format!("/api/v1/integrations/itglue/syncs/{id}"), token)
        .expect(200)
        .json()
}

#[test]
fn three_replicas_sync_many_accounts_with_every_run_done_once() {
    let env = Env::with(SimConfig {
        latency: Duration::from_millis(20),
        ..SimConfig::with_dataset(generated_dataset(20, 10))
    });
    let url = fresh_postgres("replicas_many");
    let (clients, configurations) = generated_scopable_csv(20, 10);
    let accounts: Vec<(String, String)> = (0..9)
        .map(|n| {
            let id = format!("msp-{n}");
            let token = account(&env, &url, &id);
            (id, token)
        })
        .collect();
    let replicas: Vec<Server> = (0..3).map(|_| replica(&env, &url, "2", &[])).collect();
    for (n, (_, token)) in accounts.iter().enumerate() {
        set_up(&replicas[n % 3], token, &clients, &configurations);
    }
    let before = env.sim.requests().len();
    for kind in ["organization", "configuration"] {
        // Every account's sync is asked of one replica; any replica's worker may run it.
        let ids: Vec<(usize, i64)> = accounts
            .iter()
            .enumerate()
            .map(|(n, (_, token))| (n, queue(&replicas[n % 3], token, kind)))
            .collect();
        for (n, id) in ids {
            let done = replicas[(n + 1) % 3].wait_for_run(&accounts[n].1, id);
            assert_eq!(done["status"], "ok", "{}: {done}", accounts[n].0);
        }
    }
    // Every run ran once: one row per account and kind, claimed once, and the simulator saw
    // exactly the requests the runs counted (a run done twice would have sent its pages
    // twice).
    let rows = psql(
        &url,
        "SELECT account || ' ' || kind || ' ' || status || ' ' || attempt || ' ' || requests
         FROM sync_runs ORDER BY account, kind",
    );
    let rows: Vec<Vec<String>> = rows
        .lines()
        .map(|l| l.split(' ').map(str::to_string).collect())
        .collect();
    assert_eq!(rows.len(), accounts.len() * 2, "{rows:?}");
    let mut counted = 0;
    for row in &rows {
        assert_eq!((row[2].as_str(), row[3].as_str()), ("ok", "1"), "{row:?}");
        counted += row[4].parse::<usize>().unwrap();
    }
    assert_eq!(env.sim.requests().len() - before, counted);
    // Each account has the same links: the same data, matched the same way.
    let links: BTreeMap<String, String> = accounts
        .iter()
        .map(|(id, _)| {
            let count = psql(
                &url,
                &format!("SELECT count(*) FROM links WHERE account = '{id}'"),
            );
            (id.clone(), count)
        })
        .collect();
    let first = links.values().next().unwrap().clone();
    assert!(first.parse::<u64>().unwrap() > 200, "{links:?}");
    assert!(links.values().all(|c| *c == first), "{links:?}");
    // The work was shared: more than one replica ran syncs.
    let working = replicas
        .iter()
        .filter(|r| r.logs().contains("sync run finished"))
        .count();
    assert!(working >= 2, "only {working} replica(s) ran syncs");
}

#[test]
fn a_replica_killed_mid_sync_loses_its_run_to_another_that_applies_it_once() {
    // Slow pages: the sync is still fetching when its replica is killed.
    let env = Env::with(SimConfig {
        latency: Duration::from_millis(2000),
        ..SimConfig::with_dataset(generated_dataset(10, 400))
    });
    let url = fresh_postgres("replicas_kill");
    let (clients, configurations) = generated_scopable_csv(10, 400);
    let acme = account(&env, &url, "acme");
    let beta = account(&env, &url, "beta");
    let first = replica(&env, &url, "1", &[]);
    for token in [&acme, &beta] {
        set_up(&first, token, &clients, &configurations);
        let id = queue(&first, token, "organization");
        assert_eq!(first.wait_for_run(token, id)["status"], "ok");
    }
    let id = queue(&first, &acme, "configuration");
    // Killed once it holds the run and has fetched a page.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = run(&first, &acme, id);
        if now["status"] == "running" && now["progress"]["pages_done"].as_u64() >= Some(1) {
            break;
        }
        assert!(Instant::now() < deadline, "the sync never got going: {now}");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(first); // SIGKILL
    let killed_at = Instant::now();
    let configuration_links = "SELECT count(*) FROM links
                               WHERE account = 'acme' AND kind = 'configuration'";
    assert_eq!(psql(&url, configuration_links), "0", "nothing half-applied");
    // Its staged pages are in the shared tables, under its claim.
    let staged = "SELECT count(*) FROM sync_staged WHERE account = 'acme'";
    assert_ne!(psql(&url, staged), "0", "the first claim staged its pages");
    let second = replica(&env, &url, "2", &[]);
    // Taken over (the default lease is 20 s and a replica looks every second) and run
    // again from the start.
    let mut taken_over = None;
    while taken_over.is_none() {
        let now = run(&second, &acme, id);
        if now["attempt"].as_i64() == Some(2) || now["status"] == "ok" {
            taken_over = Some(killed_at.elapsed());
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "not taken over within 30 s: {now}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let done = second.wait_for_run(&acme, id);
    assert_eq!(done["status"], "ok", "{done}");
    assert_eq!(done["attempt"], 2, "{done}");
    let metrics = second
        .send("GET", "/metrics", None, &[], None)
        .expect(200)
        .body;
    assert!(
        metrics.contains("scopable_sync_runs_taken_over_total 1"),
        "{metrics}"
    );
    // One run of the kind, applied once, by its second claim.
    assert_eq!(
        psql(
            &url,
            "SELECT count(*) || ' ' || min(status) || ' ' || min(attempt) FROM sync_runs
             WHERE account = 'acme' AND kind = 'configuration'"
        ),
        "1 ok 2"
    );
    // No working row is left: neither the first claim's nor the second's.
    assert_eq!(
        psql(
            &url,
            "SELECT (SELECT count(*) FROM sync_staged) + (SELECT count(*) FROM sync_planned)"
        ),
        "0"
    );
    // Exactly what a sync never interrupted gives: the same data in another account.
    let other = second.sync(&beta, "configuration");
    assert_eq!(other["status"], "ok", "{other}");
    for field in ["fetched", "linked", "skipped", "errored", "new_links"] {
        assert_eq!(done[field], other[field], "{field}: {done} vs {other}");
    }
    assert!(done["linked"].as_u64() > Some(1000), "{done}");
    assert_eq!(
        psql(&url, configuration_links),
        psql(
            &url,
            "SELECT count(*) FROM links WHERE account = 'beta' AND kind = 'configuration'"
        )
    );
}

#[test]
fn replicas_starting_together_on_an_empty_database_migrate_it_once() {
    let env = Env::new();
    let url = fresh_postgres("replicas_start");
    let replicas: Vec<Server> = std::thread::scope(|s| {
        let started: Vec<_> = (0..2)
            .map(|_| s.spawn(|| replica(&env, &url, "1", &[])))
            .collect();
        started.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &replicas {
        r.send("GET", "/readyz", None, &[], None).expect(200);
    }
    // One row per migration, once, and one key-check value.
    assert_eq!(
        psql(
            &url,
            "SELECT count(*) || ' ' || count(DISTINCT version) FROM schema_version"
        ),
        format!("{0} {0}", scopable_store::pg::MIGRATIONS.len())
    );
    assert_eq!(
        psql(
            &url,
            "SELECT count(*) FROM meta WHERE key = 'vault_key_check'"
        ),
        "1"
    );
    // A replica with another master key, or none, does not start.
    let other_key = "HyAeHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";
    let wrong = env.run_full(
        &["--db", &url, "serve", "--listen", "127.0.0.1:0"],
        &[("SCOPABLE_VAULT_KEY", other_key)],
        None,
    );
    wrong.fails(6, "SCOPABLE_VAULT_KEY is not the master key this database");
    let none = env.run_full(
        &["--db", &url, "serve", "--listen", "127.0.0.1:0"],
        &[],
        None,
    );
    none.fails(2, "needs the vault master key in SCOPABLE_VAULT_KEY");
    // The URL's password is never shown.
    let with_password = url.replacen("scopable@", "scopable:hunter2-not-shown@", 1);
    let status = env.run_full(
        &["--db", &with_password, "itglue", "status", "--json"],
        &[("SCOPABLE_VAULT_KEY", KEY)],
        None,
    );
    let shown = status.json()["database"].as_str().unwrap().to_string();
    assert!(
        shown.starts_with("postgres://scopable@127.0.0.1:"),
        "{shown}"
    );
    assert!(!status.stdout.contains("hunter2") && !status.stderr.contains("hunter2"));
}

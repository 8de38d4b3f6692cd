//! Replicas sharing the work: `BENCH_ACCOUNTS` accounts (default 50), each with
//! `BENCH_ORGS` x `BENCH_CONFIGS_PER_ORG` configurations (default 40 x 50 = 2,000), synced
//! (organizations, then configurations) by 1, 2 and 3 replicas of `scopable-host serve`
//! (`BENCH_REPLICAS`, default `1,2,3`), each with `--workers 2`, on one PostgreSQL database,
//! against the simulator at `BENCH_LATENCY_MS` per answer (default 100). For each count it
//! reports the wall time of every sync, runs per minute, how many runs each replica did, and
//! the most requests one account reserved in any window of its request budget (which every
//! replica shares through the database), against that budget.
//!
//! It needs a PostgreSQL server: `scripts/bench-replicas.sh` starts a throwaway one and runs
//! it (`SCOPABLE_TEST_POSTGRES` names the server; each count gets a new database on it).
//! Figures in `BENCHMARKS.md`.

use itglue_sim::postgres::{fresh_database, psql};
use itglue_sim::{SimConfig, Simulator, generated_dataset, generated_scopable_csv};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "client.rs"]
mod client;

use client::Client;

const BIN: &str = env!("CARGO_BIN_EXE_scopable-host");

/// The master key every replica shares.
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// The built-in connector's request budget (`plugin/manifest.toml`): requests per window.
const BUDGET: (u64, u64) = (2800, 300);

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cli(url: &str, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["--db", url])
        .args(args)
        .env("SCOPABLE_VAULT_KEY", KEY)
        .output()
        .expect("run scopable-host");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Replica {
    child: Child,
    api: Client,
    logs: Arc<Mutex<String>>,
}

impl Replica {
    fn start(url: &str, endpoint: &str) -> Replica {
        let mut child = Command::new(BIN)
            .args(["--db", url])
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--endpoint",
                &format!("itglue={endpoint}"),
                "--workers",
                "2",
                "--requests-per-second",
                "100000",
            ])
            .env("SCOPABLE_VAULT_KEY", KEY)
            .env("SCOPABLE_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve");
        let logs = Arc::new(Mutex::new(String::new()));
        let sink = logs.clone();
        let mut stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut first)
            .expect("serve's first line");
        let base = first.trim().trim_start_matches("listening on ").to_string();
        assert!(base.starts_with("http://127.0.0.1:"), "serve: {first:?}");
        Replica {
            child,
            api: Client::new(&base),
            logs,
        }
    }

    /// Runs this replica finished.
    fn finished(&self) -> usize {
        self.logs
            .lock()
            .unwrap()
            .matches("sync run finished")
            .count()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one replica count did.
struct Outcome {
    replicas: usize,
    organizations: Duration,
    configurations: Duration,
    failed: usize,
    per_replica: Vec<usize>,
    max_in_window: u64,
    taken_over: u64,
}

fn main() {
    let accounts = setting("BENCH_ACCOUNTS", 50) as usize;
    let orgs = setting("BENCH_ORGS", 40) as usize;
    let per_org = setting("BENCH_CONFIGS_PER_ORG", 50) as usize;
    let latency = setting("BENCH_LATENCY_MS", 100);
    let counts: Vec<usize> = std::env::var("BENCH_REPLICAS")
        .unwrap_or_else(|_| "1,2,3".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let server = std::env::var("SCOPABLE_TEST_POSTGRES").unwrap_or_else(|_| {
        eprintln!(
            "SCOPABLE_TEST_POSTGRES is not set: run scripts/bench-replicas.sh, which starts a throwaway PostgreSQL server"
        );
        std::process::exit(2)
    });
    let sim = Simulator::start(SimConfig {
        latency: Duration::from_millis(latency),
        keep_alive: true,
        ..SimConfig::with_dataset(generated_dataset(orgs, per_org))
    })
    .expect("simulator");
    let (clients, configurations) = generated_scopable_csv(orgs, per_org);
    let mut outcomes = Vec::new();
    for &n in &counts {
        let url = fresh_database(&server, &format!("bench_replicas_{n}"));
        let tokens: Vec<String> = (0..accounts)
            .map(|a| {
                let id = format!("msp-{a:03}");
                cli(&url, &["accounts", "add", &id]);
                cli(&url, &["accounts", "enable", &id, "itglue"]);
                cli(&url, &["accounts", "token", &id, "--role", "admin"])
                    .trim()
                    .to_string()
            })
            .collect();
        let replicas: Vec<Replica> = (0..n)
            .map(|_| Replica::start(&url, &sim.base_url()))
            .collect();
        for (a, token) in tokens.iter().enumerate() {
            replicas[a % n].api.set_up(token, &clients, &configurations);
        }
        let mut took = Vec::new();
        let mut failed = 0;
        for kind in ["organization", "configuration"] {
            let started = Instant::now();
            let ids: Vec<(usize, i64)> = tokens
                .iter()
                .enumerate()
                .map(|(a, token)| {
                    let (status, body) = replicas[a % n].api.send(
                        "POST",
                        "/api/v1/integrations/itglue/syncs",
                        token,
                        Some(("application/json", json!({"kind": kind}).to_string())),
                    );
                    assert_eq!(status, 202, "{body}");
                    let run: Value = serde_json::from_str(&body).expect("run");
                    (a, run["id"].as_i64().expect("id"))
                })
                .collect();
            for (a, id) in ids {
                loop {
                    let (_, body) = replicas[a % n].api.send(
                        "GET",
                        &format!("/api/v1/integrations/itglue/syncs/{id}"),
                        &tokens[a],
                        None,
                    );
                    let run: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    if run["status"] == "ok" || run["status"] == "failed" {
                        failed += usize::from(run["status"] == "failed");
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(25));
                }
            }
            took.push(started.elapsed());
        }
        // The budget as the database kept it: the most reservations of one account in any
        // window, whichever replica made them.
        let max_in_window = psql(
            &url,
            &format!(
                "SELECT coalesce(max(c), 0) FROM (
                   SELECT count(*) OVER (PARTITION BY account, connector ORDER BY at_ms
                          RANGE BETWEEN {} PRECEDING AND CURRENT ROW) AS c
                   FROM request_budget) w",
                BUDGET.1 * 1000 - 1
            ),
        )
        .parse()
        .unwrap_or(u64::MAX);
        let taken_over = psql(&url, "SELECT count(*) FROM sync_runs WHERE attempt > 1")
            .parse()
            .unwrap_or(u64::MAX);
        outcomes.push(Outcome {
            replicas: n,
            organizations: took[0],
            configurations: took[1],
            failed,
            per_replica: replicas.iter().map(Replica::finished).collect(),
            max_in_window,
            taken_over,
        });
    }
    println!(
        "replicas: {accounts} accounts x {} configurations ({orgs} organizations), simulator latency {latency} ms, --workers 2 per replica, PostgreSQL",
        orgs * per_org
    );
    println!(
        "| Replicas | Organizations | Configurations | Total | Runs per minute | Runs per replica | Failed | Taken over | Most requests of one account in {} s (budget {}) |",
        BUDGET.1, BUDGET.0
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let one = outcomes
        .first()
        .map(|o| (o.organizations + o.configurations).as_secs_f64());
    for o in &outcomes {
        let total = (o.organizations + o.configurations).as_secs_f64();
        let speedup = one.map(|t| t / total).unwrap_or(1.0);
        println!(
            "| {} | {:.1} s | {:.1} s | {:.1} s ({:.2}x) | {:.0} | {:?} | {} | {} | {} ({}) |",
            o.replicas,
            o.organizations.as_secs_f64(),
            o.configurations.as_secs_f64(),
            total,
            speedup,
            (accounts * 2) as f64 / (total / 60.0),
            o.per_replica,
            o.failed,
            o.taken_over,
            o.max_in_window,
            if o.max_in_window <= BUDGET.0 {
                "within"
            } else {
                "EXCEEDED"
            }
        );
    }
}

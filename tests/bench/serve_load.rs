//! The runtime under load: `BENCH_ACCOUNTS` accounts (default 50) on one `scopable-host
//! serve`, `BENCH_READERS` concurrent API readers (default 200) asking for status, links and
//! unplaced records while every account syncs organizations and then configurations against
//! the simulator (`BENCH_LATENCY_MS` per answer, default 20). It reports read throughput,
//! p50/p99/max latency, errors, the syncs' wall time and the server's peak RSS (`VmHWM`).
//!
//! Run it with `cargo bench -p scopable-host --bench serve_load`; figures in `BENCHMARKS.md`.

use itglue_sim::{SimConfig, Simulator, sample_scopable_csv};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "client.rs"]
mod client;

use client::Client;

const BIN: &str = env!("CARGO_BIN_EXE_scopable-host");

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cli(db: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("--db")
        .arg(db)
        .args(args)
        .env_remove("SCOPABLE_VAULT_KEY")
        .output()
        .expect("run scopable-host");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let accounts = setting("BENCH_ACCOUNTS", 50) as usize;
    let readers = setting("BENCH_READERS", 200) as usize;
    let latency = setting("BENCH_LATENCY_MS", 20);
    let workers = setting("BENCH_WORKERS", 4);
    let sim = Simulator::start(SimConfig {
        latency: Duration::from_millis(latency),
        ..SimConfig::default()
    })
    .expect("simulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("load.db");
    let mut tokens = Vec::new();
    for n in 0..accounts {
        let id = format!("msp-{n:03}");
        cli(&db, &["accounts", "add", &id]);
        cli(&db, &["accounts", "enable", &id, "itglue"]);
        tokens.push(
            cli(&db, &["accounts", "token", &id, "--role", "admin"])
                .trim()
                .to_string(),
        );
    }
    let mut server = Command::new(BIN)
        .arg("--db")
        .arg(&db)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--endpoint",
            &format!("itglue={}", sim.base_url()),
            "--workers",
            &workers.to_string(),
            "--requests-per-second",
            "100000",
        ])
        .env("SCOPABLE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let mut first = String::new();
    BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("serve's first line");
    let base = first.trim().trim_start_matches("listening on ").to_string();
    let client = Arc::new(Client::new(&base));
    let (clients, configurations) = sample_scopable_csv();
    for token in &tokens {
        client.set_up(token, &clients, &configurations);
    }
    // Readers: status, links and unplaced of every account in turn, until the syncs end.
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::<u64>::new()));
    let errors = Arc::new(AtomicU64::new(0));
    let reads_started = Instant::now();
    let handles: Vec<_> = (0..readers)
        .map(|r| {
            let (client, stop, latencies, errors, tokens) = (
                client.clone(),
                stop.clone(),
                latencies.clone(),
                errors.clone(),
                tokens.clone(),
            );
            std::thread::spawn(move || {
                let paths = ["", "/links", "/unplaced"];
                let mut mine = Vec::new();
                let mut n = r;
                while !stop.load(Ordering::Relaxed) {
                    let token = &tokens[n % tokens.len()];
                    let path = format!("/api/v1/integrations/itglue{}", paths[n % paths.len()]);
                    let started = Instant::now();
                    let (status, _) = client.send("GET", &path, token, None);
                    mine.push(started.elapsed().as_micros() as u64);
                    if status != 200 {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    n += 1;
                }
                latencies.lock().unwrap().extend(mine);
            })
        })
        .collect();
    // Every account syncs organizations, then configurations.
    let syncs_started = Instant::now();
    let mut failed_syncs = 0;
    for kind in ["organization", "configuration"] {
        let mut ids = Vec::new();
        for token in &tokens {
            let (status, body) = client.send(
                "POST",
                "/api/v1/integrations/itglue/syncs",
                token,
                Some(("application/json", json!({"kind": kind}).to_string())),
            );
            assert_eq!(status, 202, "{body}");
            let run: Value = serde_json::from_str(&body).expect("run");
            ids.push((token.clone(), run["id"].as_i64().expect("id")));
        }
        for (token, id) in ids {
            loop {
                let (_, body) = client.send(
                    "GET",
                    &format!("/api/v1/integrations/itglue/syncs/{id}"),
                    &token,
                    None,
                );
                let run: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                if run["status"] == "ok" || run["status"] == "failed" {
                    if run["status"] == "failed" {
                        failed_syncs += 1;
                    }
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    let syncs_took = syncs_started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    let reading = reads_started.elapsed();
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", server.id())).unwrap_or_default();
    let peak_rss = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .map(|l| l.trim_start_matches("VmHWM:").trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let _ = server.kill();
    let _ = server.wait();
    let mut all = latencies.lock().unwrap().clone();
    all.sort_unstable();
    println!(
        "serve load: {accounts} accounts, {readers} readers, {workers} workers, simulator latency {latency} ms"
    );
    println!(
        "  syncs: {} runs in {:.1} s ({} failed)",
        accounts * 2,
        syncs_took.as_secs_f64(),
        failed_syncs
    );
    println!(
        "  reads: {} in {:.1} s = {:.0} /s; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; errors {}",
        all.len(),
        reading.as_secs_f64(),
        all.len() as f64 / reading.as_secs_f64(),
        percentile(&all, 0.50) as f64 / 1000.0,
        percentile(&all, 0.99) as f64 / 1000.0,
        all.last().copied().unwrap_or(0) as f64 / 1000.0,
        errors.load(Ordering::Relaxed)
    );
    println!("  server peak RSS (VmHWM): {peak_rss}");
}

//! The performance benchmark: a full sync of a large IT Glue account against the simulator,
//! the transfer floor for the same pages, component compile / cache / instantiate times, and
//! the matching rules in wasm against the same code compiled natively.
//!
//! Run it with `cargo bench -p scopable-host --bench sync`. Sizes can be changed for a quick
//! run: `BENCH_ORGS`, `BENCH_CONFIGS_PER_ORG`, `BENCH_LATENCY_MS`, `BENCH_INSTANTIATE_RUNS`,
//! `BENCH_MATCH_RUNS`; `BENCH_SYNC_ONLY=1` runs only the syncs and the transfer floor (for
//! 1,000,000 configurations: `BENCH_ORGS=10000 BENCH_CONFIGS_PER_ORG=100`). The figures are recorded in `BENCHMARKS.md`.
//!
//! Peak RSS of a sync is taken from `wait4`'s `ru_maxrss`, through a small helper process
//! (this binary re-executed): on Linux a child's `ru_maxrss` also counts the high-water mark
//! of the process that spawned it, so it is only exact when that process is small. The helper
//! also polls `VmHWM` while the sync runs, as a cross-check.

use itglue_sim::{Dataset, SimConfig, Simulator, generated_dataset, generated_scopable_csv};
use scopable_builtin::ITGLUE_MANIFEST;
use scopable_builtin::{ITGLUE_SHA256, ITGLUE_WASM, itglue_manifest};
use scopable_sandbox::manifest::Manifest;
use scopable_sandbox::policy::BaseUrl;
use scopable_sandbox::sandbox::{CallContext, LoadedConnector, Sandbox, wit_types};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The key the simulator accepts for the root (`us`) region.
const KEY: &str = "sim-key-us";
/// Records (IT Glue plus Scopable configurations) per `match` call in `sync configurations`
/// (`MATCH_BATCH` in `host/sync/src/sync.rs`), mirrored for the host-batch figures.
const HOST_MATCH_BATCH: usize = 10_000;
/// Set on the helper process: the file it writes its measurement to.
const HELPER_ENV: &str = "SCOPABLE_BENCH_MEASURE_TO";

fn main() {
    if let Some(out) = std::env::var_os(HELPER_ENV) {
        helper_main(Path::new(&out));
    }
    let s = Settings::from_env();
    let shipped = itglue_manifest().expect("the built-in manifest parses");
    let page_size = shipped.limits.page_size as usize;
    let concurrency = shipped.limits.concurrency as usize;
    let configs_total = s.orgs * s.configs_per_org;
    let org_pages = s.orgs.div_ceil(page_size).max(1);
    let config_pages = configs_total.div_ceil(page_size).max(1);
    println!(
        "scopable-host sync benchmark: {} organizations x {} configurations = {} configurations, \
         {} ms latency per request, page size {page_size}, {concurrency} pages at a time",
        s.orgs,
        s.configs_per_org,
        configs_total,
        s.latency.as_millis()
    );

    let started = Instant::now();
    let dataset = generated_dataset(s.orgs, s.configs_per_org);
    let (clients_csv, configs_csv) = generated_scopable_csv(s.orgs, s.configs_per_org);
    let sim = Simulator::start(SimConfig {
        latency: s.latency,
        dataset: dataset.clone(),
        ..SimConfig::default()
    })
    .expect("start the simulator on 127.0.0.1");
    println!(
        "data set generated and simulator started at {} in {:.1} s",
        sim.base_url(),
        started.elapsed().as_secs_f64()
    );

    let work = tempfile::tempdir().expect("create a temporary directory");
    let mut report = Report::default();

    // 1. The full sync through the real binary.
    println!(
        "\n[1/5] full sync through {}",
        env!("CARGO_BIN_EXE_scopable-host")
    );
    let ws = Workspace::new(work.path(), &sim);
    ws.prepare(&clients_csv, &configs_csv);
    sim.clear_requests();
    let before = sim.request_count();
    let orgs = ws.sync("organizations");
    let configs = ws.sync("configurations");
    let sim_requests = sim.request_count() - before;
    let sync_log: Vec<String> = sim
        .requests()
        .iter()
        .map(|r| format!("{}?{}", r.path, r.query))
        .collect();
    for run in [&orgs, &configs] {
        println!("  {}", run.describe());
    }
    let resync = ws.sync("configurations");
    println!("  re-sync, nothing changed: {}", resync.describe());

    // 2. The transfer floor: the same pages with a plain client, no parsing.
    println!("\n[2/5] transfer floor (plain HTTP/1.1 client, {concurrency} at a time)");
    let org_urls: Vec<String> = (1..=org_pages)
        .map(|n| format!("/organizations?page%5Bsize%5D={page_size}&page%5Bnumber%5D={n}&sort=id"))
        .collect();
    let config_urls: Vec<String> = (1..=config_pages)
        .map(|n| {
            format!(
                "/configurations?page%5Bsize%5D={page_size}&page%5Bnumber%5D={n}&sort=id\
                 &include=configuration_interfaces"
            )
        })
        .collect();
    let all_urls: Vec<String> = org_urls.iter().chain(&config_urls).cloned().collect();
    let same_pages = {
        let mut a = sync_log.clone();
        let mut b = all_urls.clone();
        a.sort();
        b.sort();
        a == b
    };
    let (floor, floor_bytes) = fetch_pool(sim.addr(), &all_urls, concurrency);
    // Shaped like the sync: each listing's page 1 alone (it gives the page count), then the
    // rest of that listing.
    let shaped: Vec<Duration> = [&org_urls, &config_urls]
        .into_iter()
        .map(|urls| {
            let t = Instant::now();
            fetch_pool(sim.addr(), &urls[..1], 1);
            fetch_pool(sim.addr(), &urls[1..], concurrency);
            t.elapsed()
        })
        .collect();
    let shaped_floor: Duration = shaped.iter().sum();
    println!(
        "  {} pages, {:.1} MB in {:.2} s (all pages in one pool); {:.2} s shaped like the sync",
        all_urls.len(),
        floor_bytes as f64 / 1e6,
        floor.as_secs_f64(),
        shaped_floor.as_secs_f64()
    );
    println!(
        "  the sync requested {}",
        if same_pages {
            "exactly these pages".to_string()
        } else {
            format!(
                "{} requests that differ from these {} pages (see the simulator log)",
                sync_log.len(),
                all_urls.len()
            )
        }
    );

    let cpu_per_thousand = |run: &SyncRun| {
        let thousands = (run.fetched.unwrap_or(configs_total as u64) as f64 / 1000.0).max(1.0);
        run.cpu.as_secs_f64() * 1e3 / thousands
    };
    if s.sync_only {
        // The sizes past 100,000: the syncs and their floor only (the matching comparison
        // below holds the whole data set several times over).
        let full_sync = orgs.wall + configs.wall;
        println!("\n[sync only] results");
        println!(
            "  full sync {:.2} s = {:.2}x the floor ({:.2} s); configurations {:.2} s, {:.1} ms CPU per 1,000 (whole process), peak RSS {:.1} MiB; requests {}; re-sync {:.2} s = {:.2}x the floor, {:.1} ms CPU per 1,000, peak RSS {:.1} MiB",
            full_sync.as_secs_f64(),
            full_sync.as_secs_f64() / floor.as_secs_f64(),
            floor.as_secs_f64(),
            configs.wall.as_secs_f64(),
            cpu_per_thousand(&configs),
            configs.peak_kib as f64 / 1024.0,
            orgs.requests.unwrap_or(0) + configs.requests.unwrap_or(0),
            resync.wall.as_secs_f64(),
            resync.wall.as_secs_f64() / shaped[1].as_secs_f64(),
            cpu_per_thousand(&resync),
            resync.peak_kib as f64 / 1024.0,
        );
        return;
    }

    // 3. Compile, load from the cache, instantiate.
    println!("\n[3/5] component compile / load from cache / instantiate");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("start a tokio runtime");
    let cache = work.path().join("bench-cache");
    let t = Instant::now();
    let sandbox = Sandbox::new(Some(cache.clone())).expect("create the sandbox");
    let engine_time = t.elapsed();
    let t = Instant::now();
    let compiled = sandbox
        .load(ITGLUE_WASM, shipped.clone(), Some(ITGLUE_SHA256))
        .expect("compile the built-in connector");
    let compile_time = t.elapsed();
    assert!(
        !compiled.from_cache,
        "a fresh cache directory was not empty"
    );
    let sandbox2 = Sandbox::new(Some(cache)).expect("create a second sandbox");
    let t = Instant::now();
    let cached = sandbox2
        .load(ITGLUE_WASM, shipped.clone(), Some(ITGLUE_SHA256))
        .expect("load the connector from the cache");
    let cache_time = t.elapsed();
    assert!(cached.from_cache, "the second load did not use the cache");
    let ctx = context(&cached, &sim.base_url());
    let instantiate = rt.block_on(async {
        for _ in 0..10 {
            cached.instantiate_only(&ctx).await.expect("instantiate");
        }
        let mut times = Vec::with_capacity(s.instantiate_runs);
        for _ in 0..s.instantiate_runs {
            let t = Instant::now();
            cached.instantiate_only(&ctx).await.expect("instantiate");
            times.push(t.elapsed());
        }
        Stats::of(times)
    });
    println!(
        "  engine + linker {}, compile {}, load from cache {}, instantiate {} (median of {}; min {}, p90 {})",
        ms(engine_time),
        ms(compile_time),
        ms(cache_time),
        us(instantiate.median),
        s.instantiate_runs,
        us(instantiate.min),
        us(instantiate.p90)
    );
    drop(compiled);

    // 4. Matching: wasm against native.
    println!("\n[4/5] matching {configs_total} configurations: wasm against native");
    let data = MatchData::new(&dataset, &clients_csv, &configs_csv);
    let everything = [data.everything()];

    // One call with the shipped limits first: does the whole data set fit?
    let full_input = wasm_input(&data, &everything[0]);
    let shipped_limits = rt.block_on(cached.match_records(&ctx, full_input.clone()));
    let shipped_outcome = match &shipped_limits {
        Ok(p) => format!("ok ({} placements)", p.len()),
        Err(e) => format!("FAILED: {e}"),
    };
    println!(
        "  one call with the shipped limits (memory_mb = {}, cpu_ms = {}): {shipped_outcome}",
        shipped.limits.memory_mb, shipped.limits.cpu_ms
    );
    // The smallest memory limit (among these) the whole data set fits in.
    let probes = [32, 64, 128, 192, 256, 512, 1024, 2048, 4096];
    let mut fits_in = None;
    for memory_mb in probes {
        let loaded = sandbox2
            .load(ITGLUE_WASM, bench_manifest(memory_mb), Some(ITGLUE_SHA256))
            .expect("load the connector with other limits");
        if rt
            .block_on(loaded.match_records(&ctx, full_input.clone()))
            .is_ok()
        {
            fits_in = Some(memory_mb);
            break;
        }
    }
    drop(full_input);
    println!(
        "  smallest memory_mb (of {probes:?}) that fits one call: {}",
        fits_in.map_or("none".to_string(), |m| m.to_string())
    );
    let roomy = sandbox2
        .load(ITGLUE_WASM, bench_manifest(4096), Some(ITGLUE_SHA256))
        .expect("load the connector with raised limits");

    let host_batches = data.host_batches(HOST_MATCH_BATCH);
    let org_batches = data.organization_batches();
    let modes: [(&str, &[Batch], &LoadedConnector); 3] = [
        ("one call", &everything, &roomy),
        ("host batches", &host_batches, &cached),
        ("per organization", &org_batches, &cached),
    ];
    let mut matched = Vec::new();
    for (name, batches, connector) in modes {
        let m = match_mode(&rt, &ctx, connector, &data, batches, s.match_runs);
        println!(
            "  {name} ({} call{}): wasm {} (median of {}; min {}), native {} (min {}); \
             {} of {configs_total} linked; wasm and native {}",
            batches.len(),
            if batches.len() == 1 { "" } else { "s" },
            ms(m.wasm.median),
            s.match_runs,
            ms(m.wasm.min),
            ms(m.native.median),
            ms(m.native.min),
            m.linked,
            if m.agree { "agree" } else { "DISAGREE" }
        );
        matched.push((name, batches.len(), m));
    }

    // 5. The table.
    println!("\n[5/5] results");
    let full_sync = orgs.wall + configs.wall;
    let requests = orgs.requests.unwrap_or(0) + configs.requests.unwrap_or(0);
    let pages = (org_pages + config_pages) as u64;
    let peak = orgs.peak_kib.max(configs.peak_kib).max(resync.peak_kib);
    let polled = orgs
        .polled_kib
        .max(configs.polled_kib)
        .max(resync.polled_kib);
    let ratio = full_sync.as_secs_f64() / floor.as_secs_f64();
    let syncs_ok = orgs.ok() && configs.ok();
    report.row(
        "full sync (organizations + configurations)",
        format!(
            "{:.2} s ({:.2} + {:.2})",
            full_sync.as_secs_f64(),
            orgs.wall.as_secs_f64(),
            configs.wall.as_secs_f64()
        ),
        "",
        Verdict::Info(if syncs_ok { "ok" } else { "FAILED" }),
    );
    report.row(
        "re-sync of configurations, nothing changed",
        format!("{:.2} s", resync.wall.as_secs_f64()),
        "",
        Verdict::Info(if resync.ok() { "ok" } else { "FAILED" }),
    );
    report.row(
        "transfer floor (same pages, 4 at a time)",
        format!(
            "{:.2} s ({:.2} s shaped like the sync)",
            floor.as_secs_f64(),
            shaped_floor.as_secs_f64()
        ),
        "",
        Verdict::Info(""),
    );
    if let Some(p) = &configs.phases {
        report.row(
            "sync configurations: fetching / its pages' floor",
            format!(
                "{:.2} s / {:.2} s = {:.2}x",
                p.fetching.as_secs_f64(),
                shaped[1].as_secs_f64(),
                p.fetching.as_secs_f64() / shaped[1].as_secs_f64()
            ),
            "",
            Verdict::Info(""),
        );
        report.row(
            "sync configurations: after the last response",
            format!(
                "{:.2} s (parse the last pages, match, check, write, exit)",
                p.after_last_response.as_secs_f64()
            ),
            "",
            Verdict::Info(""),
        );
    }
    report.row(
        "full sync / transfer floor",
        format!(
            "{ratio:.2}x ({:.2}x of the floor shaped like the sync)",
            full_sync.as_secs_f64() / shaped_floor.as_secs_f64()
        ),
        "<= 1.2x",
        Verdict::check(syncs_ok && ratio <= 1.2),
    );
    report.row(
        "requests (from the sync's --json)",
        format!(
            "{requests} ({} + {}); simulator saw {sim_requests}",
            orgs.requests.unwrap_or(0),
            configs.requests.unwrap_or(0)
        ),
        &format!("{pages} (pages)"),
        Verdict::check(syncs_ok && requests <= pages && sim_requests <= pages),
    );
    report.row(
        "CPU per 1,000 configurations (whole `sync configurations` process)",
        format!(
            "{:.1} ms ({:.1} ms on the re-sync)",
            cpu_per_thousand(&configs),
            cpu_per_thousand(&resync)
        ),
        "<= 10 ms",
        Verdict::check(configs.ok() && cpu_per_thousand(&configs) <= 10.0),
    );
    report.row(
        "peak RSS of a sync process (all three)",
        format!(
            "{:.1} MiB (VmHWM polled: {:.1} MiB)",
            peak as f64 / 1024.0,
            polled as f64 / 1024.0
        ),
        "< 300 MiB",
        Verdict::check(peak > 0 && peak < 300 * 1024),
    );
    report.row("component compile", ms(compile_time), "", Verdict::Info(""));
    report.row(
        "component load from cache",
        ms(cache_time),
        "",
        Verdict::Info(""),
    );
    report.row(
        "instantiate from an InstancePre (median)",
        us(instantiate.median),
        "< 1 ms",
        Verdict::check(instantiate.median < Duration::from_millis(1)),
    );
    for (name, calls, m) in &matched {
        let ratio = m.wasm.median.as_secs_f64() / m.native.median.as_secs_f64();
        let per_100k = m.wasm.median.as_secs_f64() * 100_000.0 / configs_total as f64;
        report.row(
            &format!(
                "match, {name} ({calls} call{}): wasm / native",
                if *calls == 1 { "" } else { "s" }
            ),
            format!(
                "{} / {} = {ratio:.2}x",
                ms(m.wasm.median),
                ms(m.native.median)
            ),
            "<= 1.5x",
            Verdict::check(m.agree && ratio <= 1.5),
        );
        report.row(
            &format!(
                "match, {name}: 100,000 configurations in wasm{}",
                if configs_total == 100_000 {
                    String::new()
                } else {
                    format!(" (scaled from {configs_total})")
                }
            ),
            format!("{per_100k:.2} s"),
            "< 1 s",
            Verdict::check(m.agree && per_100k < 1.0),
        );
    }
    report.row(
        "match, one call, shipped limits",
        shipped_outcome.clone(),
        "works",
        Verdict::check(shipped_limits.is_ok()),
    );
    report.row(
        "smallest memory_mb for one call (probed)",
        fits_in.map_or("none".to_string(), |m| m.to_string()),
        &format!("<= {} (shipped)", shipped.limits.memory_mb),
        Verdict::check(fits_in.is_some_and(|m| m <= shipped.limits.memory_mb)),
    );
    report.print();
    println!(
        "\nbenchmark finished in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Sizes and repetitions, from the environment.
struct Settings {
    orgs: usize,
    configs_per_org: usize,
    latency: Duration,
    instantiate_runs: usize,
    match_runs: usize,
    /// Only the syncs and the transfer floor (`BENCH_SYNC_ONLY=1`), for the large sizes.
    sync_only: bool,
}

impl Settings {
    fn from_env() -> Settings {
        Settings {
            orgs: env_number("BENCH_ORGS", 2000).max(1) as usize,
            configs_per_org: env_number("BENCH_CONFIGS_PER_ORG", 50).max(1) as usize,
            latency: Duration::from_millis(env_number("BENCH_LATENCY_MS", 100)),
            instantiate_runs: env_number("BENCH_INSTANTIATE_RUNS", 200).max(1) as usize,
            match_runs: env_number("BENCH_MATCH_RUNS", 7).max(1) as usize,
            sync_only: env_number("BENCH_SYNC_ONLY", 0) != 0,
        }
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {v:?}")),
        Err(_) => default,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// Median, minimum and 90th percentile of some timings.
struct Stats {
    median: Duration,
    min: Duration,
    p90: Duration,
}

impl Stats {
    fn of(mut times: Vec<Duration>) -> Stats {
        times.sort();
        let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        Stats {
            median: at(0.5),
            min: at(0.0),
            p90: at(0.9),
        }
    }
}

enum Verdict {
    Pass,
    Miss,
    Info(&'static str),
}

impl Verdict {
    fn check(ok: bool) -> Verdict {
        if ok { Verdict::Pass } else { Verdict::Miss }
    }
}

/// The final table.
#[derive(Default)]
struct Report {
    rows: Vec<[String; 4]>,
}

impl Report {
    fn row(&mut self, figure: &str, value: impl Into<String>, target: &str, verdict: Verdict) {
        let verdict = match verdict {
            Verdict::Pass => "PASS",
            Verdict::Miss => "MISS",
            Verdict::Info(s) => s,
        };
        self.rows.push([
            figure.to_string(),
            value.into(),
            target.to_string(),
            verdict.to_string(),
        ]);
    }

    fn print(&self) {
        let header = ["figure", "value", "target", "verdict"];
        let mut widths = header.map(|h| h.chars().count());
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: [&str; 4]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
                .collect();
            println!("| {} |", padded.join(" | "));
        };
        line(header);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        println!("|-{}-|", rule.join("-|-"));
        for row in &self.rows {
            line([&row[0], &row[1], &row[2], &row[3]]);
        }
    }
}

/// A database, a cache directory and the simulator, driven through the real binary.
struct Workspace {
    dir: PathBuf,
    endpoint: String,
}

impl Workspace {
    fn new(dir: &Path, sim: &Simulator) -> Workspace {
        Workspace {
            dir: dir.to_path_buf(),
            endpoint: sim.base_url(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_scopable-host"));
        cmd.arg("--db")
            .arg(self.dir.join("scopable.db"))
            .args(args)
            .env_remove("ITGLUE_API_KEY")
            .env_remove("SCOPABLE_VAULT_KEY")
            .env_remove("SCOPABLE_DB")
            .env_remove("SCOPABLE_LOG")
            .env_remove(HELPER_ENV)
            .env("SCOPABLE_CACHE_DIR", self.dir.join("cache"))
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs a command to completion and insists that it succeeds.
    fn run_ok(&self, mut cmd: Command) {
        let out = cmd.output().expect("run scopable-host");
        assert!(
            out.status.success(),
            "scopable-host failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Imports the Scopable records and connects (compiling the component into the cache).
    fn prepare(&self, clients_csv: &str, configs_csv: &str) {
        let t = Instant::now();
        let clients = self.dir.join("clients.csv");
        let configs = self.dir.join("configurations.csv");
        std::fs::write(&clients, clients_csv).expect("write clients.csv");
        std::fs::write(&configs, configs_csv).expect("write configurations.csv");
        let path = |p: &Path| p.to_str().expect("a UTF-8 temporary path").to_string();
        self.run_ok(self.command(&["import", "clients", &path(&clients)]));
        self.run_ok(self.command(&["import", "configurations", &path(&configs)]));
        let mut connect = self.command(&[
            "itglue",
            "connect",
            "--region",
            "us",
            "--endpoint",
            &self.endpoint,
        ]);
        connect.env("ITGLUE_API_KEY", KEY);
        self.run_ok(connect);
        println!(
            "  imported, connected and compiled into the cache in {:.1} s (not timed below)",
            t.elapsed().as_secs_f64()
        );
    }

    /// Runs `itglue sync KIND --json` under the measuring helper.
    /// Runs `itglue sync KIND --json` under the measuring helper, with the audit log on stderr
    /// (one line per request) to tell the fetching from what follows it.
    fn sync(&self, kind: &str) -> SyncRun {
        let mut target = self.command(&["itglue", "sync", kind, "--json"]);
        target.env("SCOPABLE_LOG", "scopable::audit=info");
        let measured = measure(target, &self.dir.join(format!("measure-{kind}")));
        let summary: Option<Value> = serde_json::from_str(&measured.stdout).ok();
        let field = |k: &str| summary.as_ref().and_then(|v| v[k].as_u64());
        SyncRun {
            phases: Phases::from_audit_log(&measured.stderr, measured.started, measured.wall),
            kind: kind.to_string(),
            code: measured.code,
            stderr: measured.stderr,
            wall: measured.wall,
            cpu: measured.cpu,
            peak_kib: measured.peak_kib,
            polled_kib: measured.polled_kib,
            requests: field("requests"),
            fetched: field("fetched"),
            linked: field("linked"),
        }
    }
}

/// One measured sync.
struct SyncRun {
    phases: Option<Phases>,
    kind: String,
    code: i32,
    stderr: String,
    wall: Duration,
    cpu: Duration,
    peak_kib: u64,
    polled_kib: u64,
    requests: Option<u64>,
    fetched: Option<u64>,
    linked: Option<u64>,
}

impl SyncRun {
    fn ok(&self) -> bool {
        self.code == 0
    }

    fn describe(&self) -> String {
        if !self.ok() {
            return format!(
                "sync {} FAILED (exit {}) after {:.2} s: {}",
                self.kind,
                self.code,
                self.wall.as_secs_f64(),
                self.stderr.trim()
            );
        }
        let n = |v: Option<u64>| v.map_or("?".to_string(), |n| n.to_string());
        let phases = self.phases.as_ref().map_or(String::new(), |p| {
            format!(
                "\n    {:.2} s to the first request, {:.2} s fetching, {:.2} s after the last response",
                p.to_first_request.as_secs_f64(),
                p.fetching.as_secs_f64(),
                p.after_last_response.as_secs_f64()
            )
        });
        format!(
            "sync {}: {:.2} s wall, {:.2} s CPU, peak RSS {:.1} MiB, {} fetched, {} linked, {} requests{phases}",
            self.kind,
            self.wall.as_secs_f64(),
            self.cpu.as_secs_f64(),
            self.peak_kib as f64 / 1024.0,
            n(self.fetched),
            n(self.linked),
            n(self.requests)
        )
    }
}

/// Where a sync's wall time went, from the audit log's timestamps: each request is logged when
/// its response body is complete, with its duration.
struct Phases {
    /// Process start, component load, database reads, up to the first request.
    to_first_request: Duration,
    /// From the first request to the last complete response.
    fetching: Duration,
    /// Parsing the last page, matching, checking, writing the database, exiting.
    after_last_response: Duration,
}

impl Phases {
    fn from_audit_log(stderr: &str, started: SystemTime, wall: Duration) -> Option<Phases> {
        let mut first_start: Option<SystemTime> = None;
        let mut last_end: Option<SystemTime> = None;
        for line in stderr.lines().map(strip_ansi) {
            if !line.contains("capability use") || !line.contains("http") {
                continue;
            }
            let at = line.split_whitespace().next().and_then(parse_rfc3339)?;
            let took = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("duration_ms="))
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis)?;
            let start = at.checked_sub(took)?;
            first_start = Some(first_start.map_or(start, |f| f.min(start)));
            last_end = Some(last_end.map_or(at, |l| l.max(at)));
        }
        let (first, last) = (first_start?, last_end?);
        let end = started + wall;
        Some(Phases {
            to_first_request: first.duration_since(started).unwrap_or_default(),
            fetching: last.duration_since(first).unwrap_or_default(),
            after_last_response: end.duration_since(last).unwrap_or_default(),
        })
    }
}

/// The text without ANSI escape sequences.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip to the end of the sequence (a letter).
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac]Z`.
fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<u64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    let nanos: u64 = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take(9).collect();
        digits.parse::<u64>().ok()? * 10u64.pow(9 - digits.len() as u32)
    };
    Some(
        UNIX_EPOCH
            + Duration::from_secs(days * 86_400 + hh * 3600 + mm * 60 + ss)
            + Duration::from_nanos(nanos),
    )
}

/// What the helper measured of one command.
struct Measured {
    started: SystemTime,
    code: i32,
    stdout: String,
    stderr: String,
    wall: Duration,
    cpu: Duration,
    peak_kib: u64,
    polled_kib: u64,
}

/// Runs `target` through this binary in helper mode and collects its measurement.
fn measure(target: Command, out: &Path) -> Measured {
    let _ = std::fs::remove_file(out);
    let mut cmd = Command::new(std::env::current_exe().expect("the benchmark's own path"));
    cmd.arg(target.get_program()).args(target.get_args());
    if let Some(dir) = target.get_current_dir() {
        cmd.current_dir(dir);
    }
    for (k, v) in target.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.env(HELPER_ENV, out).stdin(Stdio::null());
    let output = cmd.output().expect("run the measuring helper");
    let text = std::fs::read_to_string(out).expect("the helper wrote its measurement");
    let f: Vec<u64> = text
        .split_whitespace()
        .map(|n| n.parse().expect("the helper writes numbers"))
        .collect();
    assert_eq!(f.len(), 7, "helper measurement: {text}");
    Measured {
        started: UNIX_EPOCH + Duration::from_nanos(f[6]),
        code: f[5] as i32,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        wall: Duration::from_nanos(f[2]),
        cpu: Duration::from_micros(f[3] + f[4]),
        peak_kib: f[0],
        polled_kib: f[1],
    }
}

/// Helper mode: runs the command given as arguments (stdio inherited), waits for it with
/// `wait4`, and writes `maxrss_kib polled_hwm_kib wall_ns user_us system_us exit_code
/// start_unix_ns`.
fn helper_main(out: &Path) -> ! {
    let mut args = std::env::args_os().skip(1);
    let program = args.next().expect("helper mode needs a command");
    let started_at = SystemTime::now();
    let started = Instant::now();
    let child = Command::new(program)
        .args(args)
        .env_remove(HELPER_ENV)
        .spawn()
        .expect("spawn the measured command");
    let pid = child.id();
    let done = Arc::new(AtomicBool::new(false));
    let polled = Arc::new(AtomicU64::new(0));
    let poller = {
        let (done, polled) = (done.clone(), polled.clone());
        std::thread::spawn(move || {
            let status = format!("/proc/{pid}/status");
            while !done.load(Ordering::SeqCst) {
                if let Some(kib) = std::fs::read_to_string(&status)
                    .ok()
                    .and_then(|s| vm_hwm_kib(&s))
                {
                    polled.fetch_max(kib, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let usage = wait_for(pid);
    let wall = started.elapsed();
    done.store(true, Ordering::SeqCst);
    poller.join().expect("the VmHWM poller");
    std::fs::write(
        out,
        format!(
            "{} {} {} {} {} {} {}\n",
            usage.maxrss_kib,
            polled.load(Ordering::SeqCst),
            wall.as_nanos(),
            usage.user_us,
            usage.system_us,
            usage.exit_code,
            started_at
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        ),
    )
    .expect("write the measurement");
    std::process::exit(if usage.exit_code == 0 { 0 } else { 1 });
}

fn vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

struct Usage {
    maxrss_kib: u64,
    user_us: u64,
    system_us: u64,
    exit_code: u64,
}

/// `struct rusage` on 64-bit Linux: two `timeval`s, then fourteen `long`s.
#[repr(C)]
#[derive(Default)]
struct Rusage {
    utime: [i64; 2],
    stime: [i64; 2],
    maxrss: i64,
    rest: [i64; 13],
}

unsafe extern "C" {
    fn wait4(pid: i32, status: *mut i32, options: i32, rusage: *mut Rusage) -> i32;
}

/// Waits for child `pid` and returns its resource usage and exit code (128 + signal when
/// killed).
fn wait_for(pid: u32) -> Usage {
    let pid = i32::try_from(pid).expect("a pid fits in i32");
    let mut status = 0i32;
    let mut usage = Rusage::default();
    loop {
        // SAFETY: `status` and `usage` are live, writable and of the layout wait4 expects.
        let r = unsafe { wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        assert!(
            err.kind() == std::io::ErrorKind::Interrupted,
            "wait4: {err}"
        );
    }
    let exit_code = if status & 0x7f == 0 {
        ((status >> 8) & 0xff) as u64
    } else {
        128 + (status & 0x7f) as u64
    };
    let micros = |tv: [i64; 2]| (tv[0].max(0) as u64) * 1_000_000 + tv[1].max(0) as u64;
    Usage {
        maxrss_kib: usage.maxrss.max(0) as u64,
        user_us: micros(usage.utime),
        system_us: micros(usage.stime),
        exit_code,
    }
}

/// Fetches `urls` from the simulator, `workers` at a time, reading every body fully.
/// Returns the elapsed time and the bytes received.
fn fetch_pool(addr: SocketAddr, urls: &[String], workers: usize) -> (Duration, u64) {
    let next = AtomicUsize::new(0);
    let bytes = AtomicU64::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..workers.min(urls.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(url) = urls.get(i) else { break };
                    bytes.fetch_add(get(addr, url), Ordering::SeqCst);
                }
            });
        }
    });
    (t.elapsed(), bytes.load(Ordering::SeqCst))
}

/// One GET on a fresh connection (the simulator closes after each answer); the body is read
/// to the end and its length checked against `Content-Length`, nothing else.
fn get(addr: SocketAddr, path_and_query: &str) -> u64 {
    let mut stream = TcpStream::connect(addr).expect("connect to the simulator");
    let _ = stream.set_nodelay(true);
    write!(
        stream,
        "GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/vnd.api+json\r\n\
         x-api-key: {KEY}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut response = Vec::with_capacity(4 << 20);
    stream
        .read_to_end(&mut response)
        .expect("read the response");
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head")
        + 4;
    let head = String::from_utf8_lossy(&response[..head_end]).to_ascii_lowercase();
    assert!(
        head.starts_with("http/1.1 200"),
        "{path_and_query}: {}",
        head.lines().next().unwrap_or("")
    );
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a Content-Length header");
    assert_eq!(response.len() - head_end, length, "{path_and_query}: body");
    response.len() as u64
}

/// A manifest for the built-in component with room for the whole data set in one call.
fn bench_manifest(memory_mb: u64) -> Manifest {
    let text: Vec<String> = ITGLUE_MANIFEST
        .lines()
        .map(|line| match line.split('=').next().unwrap_or("").trim() {
            "memory_mb" => format!("memory_mb = {memory_mb}"),
            "cpu_ms" => "cpu_ms = 600000".to_string(),
            "call_timeout_ms" => "call_timeout_ms = 600000".to_string(),
            _ => line.to_string(),
        })
        .collect();
    let mut manifest =
        Manifest::parse(&text.join("\n"), "benchmark manifest").expect("a valid manifest");
    manifest.sha256 = Some(ITGLUE_SHA256.to_string());
    manifest
}

/// A call context for in-process calls: the simulator as endpoint, nothing recorded.
fn context(connector: &LoadedConnector, endpoint: &str) -> CallContext {
    let base = BaseUrl::parse_endpoint(endpoint).expect("a loopback endpoint");
    CallContext::standalone(connector, base, KEY).expect("a valid credential")
}

/// An IT Glue configuration as the connector would hand it to the host.
struct Cfg {
    id: String,
    organization_id: String,
    name: String,
    hostname: Option<String>,
    primary_ip: Option<String>,
    serial_number: Option<String>,
    mac_addresses: Vec<String>,
    type_name: Option<String>,
    archived: bool,
}

/// A Scopable configuration as the host reads it from its database.
struct ScopableCfg {
    id: String,
    client_id: String,
    name: String,
    hostname: Option<String>,
    serial_number: Option<String>,
    mac_addresses: Vec<String>,
}

/// What one `match` call carries: indexes into [`MatchData`].
#[derive(Default, Clone)]
struct Batch {
    parents: Vec<usize>,
    configs: Vec<usize>,
    scopable: Vec<usize>,
}

/// Everything a configuration match needs, in a form both bindings are built from.
struct MatchData {
    configs: Vec<Cfg>,
    scopable: Vec<ScopableCfg>,
    /// (organization id, client id): every organization linked to its client, as after the
    /// organization sync.
    parents: Vec<(String, String)>,
}

impl MatchData {
    fn new(dataset: &Dataset, clients_csv: &str, configs_csv: &str) -> MatchData {
        let rows = |csv: &str| -> Vec<Vec<String>> {
            csv.lines()
                .skip(1)
                .map(|l| l.split(',').map(str::to_string).collect())
                .collect()
        };
        // The generated names are unique, so the name finds an organization's client.
        let client_by_name: HashMap<String, String> = rows(clients_csv)
            .into_iter()
            .map(|r| (r[1].clone(), r[0].clone()))
            .collect();
        let parents = dataset
            .organizations
            .iter()
            .map(|o| {
                let client = client_by_name
                    .get(&o.name)
                    .expect("every generated organization has a client");
                (o.id.to_string(), client.clone())
            })
            .collect();
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let scopable = rows(configs_csv)
            .into_iter()
            .map(|r| ScopableCfg {
                id: r[0].clone(),
                client_id: r[1].clone(),
                name: r[2].clone(),
                hostname: opt(&r[3]),
                serial_number: opt(&r[4]),
                mac_addresses: scopable_sync::import::split_macs(&r[5]),
            })
            .collect();
        let configs = dataset
            .configurations
            .iter()
            .map(|c| {
                let mut macs: Vec<String> = Vec::new();
                for mac in c
                    .mac_address
                    .iter()
                    .chain(c.interfaces.iter().filter_map(|i| i.mac_address.as_ref()))
                {
                    if !macs.contains(mac) {
                        macs.push(mac.clone());
                    }
                }
                Cfg {
                    id: c.id.to_string(),
                    organization_id: c.organization_id.to_string(),
                    name: c.name.clone(),
                    hostname: c.hostname.clone(),
                    primary_ip: c.primary_ip.clone(),
                    serial_number: c.serial_number.clone(),
                    mac_addresses: macs,
                    type_name: opt(&c.type_name),
                    archived: c.archived,
                }
            })
            .collect();
        MatchData {
            configs,
            scopable,
            parents,
        }
    }

    /// Everything in one call.
    fn everything(&self) -> Batch {
        Batch {
            parents: (0..self.parents.len()).collect(),
            configs: (0..self.configs.len()).collect(),
            scopable: (0..self.scopable.len()).collect(),
        }
    }

    /// Every client's group: its parent organizations, their configurations and the client's
    /// Scopable configurations, in client id order (configurations without a linked parent
    /// first, in a group of their own).
    fn client_groups(&self) -> Vec<Batch> {
        let client_of_org: HashMap<&str, &str> = self
            .parents
            .iter()
            .map(|(org, client)| (org.as_str(), client.as_str()))
            .collect();
        let mut groups: BTreeMap<Option<&str>, Batch> = BTreeMap::new();
        for (i, c) in self.configs.iter().enumerate() {
            let client = client_of_org.get(c.organization_id.as_str()).copied();
            groups.entry(client).or_default().configs.push(i);
        }
        for (i, c) in self.scopable.iter().enumerate() {
            if let Some(group) = groups.get_mut(&Some(c.client_id.as_str())) {
                group.scopable.push(i);
            }
        }
        for (i, (_, client)) in self.parents.iter().enumerate() {
            if let Some(group) = groups.get_mut(&Some(client.as_str())) {
                group.parents.push(i);
            }
        }
        groups.into_values().collect()
    }

    /// One call per client (here, per organization).
    fn organization_batches(&self) -> Vec<Batch> {
        self.client_groups()
    }

    /// Whole clients gathered until a call holds at least `limit` records (IT Glue plus
    /// Scopable configurations), the way `sync configurations` batches its `match` calls.
    fn host_batches(&self, limit: usize) -> Vec<Batch> {
        let mut batches = Vec::new();
        let mut current = Batch::default();
        let groups = self.client_groups();
        let count = groups.len();
        for (n, group) in groups.into_iter().enumerate() {
            current.parents.extend(group.parents);
            current.configs.extend(group.configs);
            current.scopable.extend(group.scopable);
            if current.configs.len() + current.scopable.len() >= limit || n + 1 == count {
                batches.push(std::mem::take(&mut current));
            }
        }
        batches
    }
}

/// The timings of one way of batching the match.
struct Matched {
    wasm: Stats,
    native: Stats,
    linked: usize,
    /// Wasm and native gave the same placements (count, links and evidence counts).
    agree: bool,
}

/// Matches `batches` one call after the other, `runs` times in wasm and natively.
fn match_mode(
    rt: &tokio::runtime::Runtime,
    ctx: &CallContext,
    connector: &LoadedConnector,
    data: &MatchData,
    batches: &[Batch],
    runs: usize,
) -> Matched {
    let wasm_inputs: Vec<wit_types::MatchInput> =
        batches.iter().map(|b| wasm_input(data, b)).collect();
    let native_inputs: Vec<scopable_itglue::types::MatchInput> =
        batches.iter().map(|b| native_input(data, b)).collect();
    // Wasm and native runs alternate, so that a slower moment of the machine weighs on both.
    let mut wasm_times = Vec::with_capacity(runs);
    let mut wasm_summaries = Vec::new();
    let mut native_times = Vec::with_capacity(runs);
    let mut native_summaries = Vec::new();
    for _ in 0..runs {
        let inputs = wasm_inputs.clone();
        let t = Instant::now();
        let results = rt.block_on(async {
            let mut results = Vec::with_capacity(inputs.len());
            for input in inputs {
                let placements = connector
                    .match_records(ctx, input)
                    .await
                    .unwrap_or_else(|e| panic!("match in wasm failed: {e}"));
                results.push(placements);
            }
            results
        });
        wasm_times.push(t.elapsed());
        wasm_summaries = results.iter().map(|p| wasm_summary_of(p)).collect();
        drop(results);

        let t = Instant::now();
        let results: Vec<_> = native_inputs.iter().map(scopable_itglue::place).collect();
        native_times.push(t.elapsed());
        native_summaries = results.iter().map(|p| native_summary_of(p)).collect();
    }
    Matched {
        wasm: Stats::of(wasm_times),
        native: Stats::of(native_times),
        linked: native_summaries.iter().map(|s| s.linked).sum(),
        agree: wasm_summaries == native_summaries,
    }
}

/// What a match result comes to, comparable across the two bindings.
#[derive(Debug, PartialEq, Eq)]
struct Summary {
    placements: usize,
    linked: usize,
    /// FNV-1a over every linked pair and its evidence count, in order.
    digest: u64,
}

/// Builds a configuration match input for one binding of the contract's types from a batch,
/// and summarizes its result.
macro_rules! binding {
    ($input:ident, $summary:ident, $($types:ident)::+) => {
        fn $input(d: &MatchData, b: &Batch) -> $($types)::+::MatchInput {
            use $($types)::+ as t;
            t::MatchInput::Configurations(t::ConfigurationMatch {
                configurations: b
                    .configs
                    .iter()
                    .map(|&i| {
                        let c = &d.configs[i];
                        t::Configuration {
                            id: c.id.clone(),
                            organization_id: c.organization_id.clone(),
                            name: c.name.clone(),
                            hostname: c.hostname.clone(),
                            primary_ip: c.primary_ip.clone(),
                            serial_number: c.serial_number.clone(),
                            mac_addresses: c.mac_addresses.clone(),
                            type_name: c.type_name.clone(),
                            archived: c.archived,
                        }
                    })
                    .collect(),
                scopable_configurations: b
                    .scopable
                    .iter()
                    .map(|&i| {
                        let c = &d.scopable[i];
                        t::ScopableConfiguration {
                            id: c.id.clone(),
                            client_id: c.client_id.clone(),
                            name: c.name.clone(),
                            hostname: c.hostname.clone(),
                            serial_number: c.serial_number.clone(),
                            mac_addresses: c.mac_addresses.clone(),
                        }
                    })
                    .collect(),
                parents: b
                    .parents
                    .iter()
                    .map(|&i| t::Pair {
                        source_id: d.parents[i].0.clone(),
                        scopable_id: d.parents[i].1.clone(),
                    })
                    .collect(),
                manual_links: Vec::new(),
                ignored: Vec::new(),
            })
        }

        fn $summary(placements: &[$($types)::+::Placement]) -> Summary {
            use $($types)::+ as t;
            let mut digest: u64 = 0xcbf2_9ce4_8422_2325;
            let mut eat = |bytes: &[u8]| {
                for b in bytes {
                    digest = (digest ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
                }
            };
            let mut linked = 0;
            for p in placements {
                if let t::Outcome::Linked(link) = &p.outcome {
                    linked += 1;
                    eat(p.source_id.as_bytes());
                    eat(b"=");
                    eat(link.scopable_id.as_bytes());
                    eat(&[link.evidence.len() as u8]);
                }
            }
            Summary {
                placements: placements.len(),
                linked,
                digest,
            }
        }
    };
}

binding!(
    wasm_input,
    wasm_summary_of,
    scopable_sandbox::sandbox::wit_types
);
binding!(native_input, native_summary_of, scopable_itglue::types);

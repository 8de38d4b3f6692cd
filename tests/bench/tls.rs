//! Syncs over TLS with a private certificate authority: the host's pooled client reusing its
//! keep-alive connections ("after"), the same syncs when every request needs a new connection
//! ("before", as the host's client did before it pooled connections), and the floor for the
//! same pages over four reused TLS connections.
//!
//! Run it with `cargo bench -p scopable-host --bench tls`. Sizes can be changed for a quick
//! run: `BENCH_ORGS`, `BENCH_CONFIGS_PER_ORG`, `BENCH_LATENCY_MS` (before every answer),
//! `BENCH_CONNECT_MS` (before each new connection is read: the handshake round trips of a
//! real network). The figures are recorded in `BENCHMARKS.md`.

use itglue_sim::{
    SimConfig, Simulator, TestCa, Validity, generated_dataset, generated_scopable_csv,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use scopable_builtin::itglue_manifest;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The key the simulator accepts for the root (`us`) region.
const KEY: &str = "sim-key-us";
/// The environment variables that choose trust roots and proxies: each run of the binary
/// gets `SSL_CERT_FILE` set and the others removed.
const PROXY_VARS: [&str; 6] = [
    "HTTPS_PROXY",
    "https_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];
/// How long the floor's client waits for a response before giving up.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

fn main() {
    let s = Settings::from_env();
    let shipped = itglue_manifest().expect("the built-in manifest parses");
    let page_size = shipped.limits.page_size as usize;
    let concurrency = shipped.limits.concurrency as usize;
    let configs_total = s.orgs * s.configs_per_org;
    let org_pages = s.orgs.div_ceil(page_size).max(1);
    let config_pages = configs_total.div_ceil(page_size).max(1);
    let pages = org_pages + config_pages;
    println!(
        "scopable-host TLS benchmark: {} organizations x {} configurations = {configs_total} \
         configurations, {} ms latency per request, {} ms per new connection, page size \
         {page_size}, {concurrency} requests at a time",
        s.orgs,
        s.configs_per_org,
        s.latency.as_millis(),
        s.connect_delay.as_millis()
    );

    let started = Instant::now();
    let dataset = generated_dataset(s.orgs, s.configs_per_org);
    let (clients_csv, configs_csv) = generated_scopable_csv(s.orgs, s.configs_per_org);
    let ca = TestCa::new("Benchmark CA");
    let server_tls = ca.server(&["127.0.0.1"], Validity::Current);
    let start_sim = |keep_alive: bool| {
        Simulator::start(SimConfig {
            tls: Some(server_tls.clone()),
            keep_alive,
            latency: s.latency,
            connect_delay: s.connect_delay,
            dataset: dataset.clone(),
            ..SimConfig::default()
        })
        .expect("start the simulator on 127.0.0.1")
    };
    let reusing = start_sim(true);
    println!(
        "data set generated and TLS simulator (keep-alive) started at {} in {:.1} s",
        reusing.base_url(),
        started.elapsed().as_secs_f64()
    );

    let work = tempfile::tempdir().expect("create a temporary directory");
    let ca_pem = ca.cert_pem();
    let ca_file = work.path().join("benchmark-ca.pem");
    std::fs::write(&ca_file, &ca_pem).expect("write the CA certificate");

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

    // 1. After: the pooled client, the simulator keeping connections alive.
    println!("\n[1/4] after: syncs over TLS, the simulator keeping connections alive");
    let after = Workspace::new(&work.path().join("after"), &reusing, &ca_file).run_syncs(
        &clients_csv,
        &configs_csv,
        &all_urls,
    );
    after.describe();

    // 2. Before: every request on a new connection (`Connection: close` on every answer).
    println!("\n[2/4] before: the same syncs, the simulator closing after every answer");
    let closing = start_sim(false);
    let before = Workspace::new(&work.path().join("before"), &closing, &ca_file).run_syncs(
        &clients_csv,
        &configs_csv,
        &all_urls,
    );
    before.describe();
    drop(closing);

    // 3. The floor: the same pages over `concurrency` reused TLS connections, shaped like the
    // sync (each listing's page 1 alone, then the rest; a new set of connections per listing,
    // as each sync is its own process).
    println!(
        "\n[3/4] floor: the same pages, {concurrency} worker threads each holding one keep-alive \
         TLS connection"
    );
    let client = client_config(&ca_pem);
    let connections_before = reusing.connections();
    let requests_before = reusing.request_count();
    let floor: Vec<Fetched> = [&org_urls, &config_urls]
        .into_iter()
        .map(|urls| fetch_listing(reusing.addr(), &client, urls, concurrency))
        .collect();
    let floor_wall: Duration = floor.iter().map(|f| f.elapsed).sum();
    let floor_opened: u64 = floor.iter().map(|f| f.opened).sum();
    let floor_requests = (reusing.request_count() - requests_before) as usize;
    let floor_connections = reusing.connections() - connections_before;
    let floor_bytes: u64 = floor.iter().map(|f| f.bytes).sum();
    println!(
        "  {} pages, {:.1} MB in {:.2} s ({:.2} + {:.2}); {floor_opened} connections opened \
         (the simulator accepted {floor_connections}), {floor_requests} requests",
        all_urls.len(),
        floor_bytes as f64 / 1e6,
        floor_wall.as_secs_f64(),
        floor[0].elapsed.as_secs_f64(),
        floor[1].elapsed.as_secs_f64()
    );
    let expected = (pages as f64 / concurrency as f64) * s.latency.as_secs_f64()
        + concurrency as f64 * s.connect_delay.as_secs_f64();
    println!(
        "  expected: {pages} pages / {concurrency} x {} ms + {concurrency} x {} ms = {expected:.2} s",
        s.latency.as_millis(),
        s.connect_delay.as_millis()
    );

    // 4. The table.
    println!("\n[4/4] results");
    let mut report = Report::new([
        "figure",
        "before (new connection per request)",
        "after (connections reused)",
        "floor (4 reused connections)",
        "check",
    ]);
    let both_ok = before.ok() && after.ok();
    report.row([
        "sync organizations + sync configurations, wall".to_string(),
        before.wall_text(),
        after.wall_text(),
        format!(
            "{:.2} s ({:.2} + {:.2})",
            floor_wall.as_secs_f64(),
            floor[0].elapsed.as_secs_f64(),
            floor[1].elapsed.as_secs_f64()
        ),
        format!(
            "syncs {}; expected floor {expected:.2} s",
            if both_ok { "ok" } else { "FAILED" }
        ),
    ]);
    let after_bound = 2 * concurrency as u64;
    report.row([
        "connections opened (simulator)".to_string(),
        before.connections_text(),
        after.connections_text(),
        format!(
            "{floor_connections} ({} + {})",
            floor[0].opened, floor[1].opened
        ),
        format!(
            "after <= {after_bound}, before = requests: {}",
            verdict(
                after.connections() <= after_bound && before.connections() == before.requests()
            )
        ),
    ]);
    report.row([
        "connections in the audit rows (new / reused)".to_string(),
        before.audit_text(),
        after.audit_text(),
        String::new(),
        format!(
            "new = opened: {}",
            verdict(before.audit_matches() && after.audit_matches())
        ),
    ]);
    report.row([
        "requests (simulator; the sync's --json)".to_string(),
        before.requests_text(),
        after.requests_text(),
        floor_requests.to_string(),
        format!(
            "= {pages} pages, same pages: {}",
            verdict(
                before.requests() == pages as u64
                    && after.requests() == pages as u64
                    && floor_requests == pages
                    && before.same_pages
                    && after.same_pages
            )
        ),
    ]);
    report.row([
        "sync configurations: fetching (audit log)".to_string(),
        before.fetching_text(),
        after.fetching_text(),
        format!("{:.2} s", floor[1].elapsed.as_secs_f64()),
        String::new(),
    ]);
    report.row([
        "sync configurations: after the last response".to_string(),
        before.after_last_text(),
        after.after_last_text(),
        String::new(),
        "parse the last pages, match, write, exit".to_string(),
    ]);
    let ratio = |run: &Run| run.wall().as_secs_f64() / floor_wall.as_secs_f64();
    report.row([
        "wall / floor".to_string(),
        format!("{:.2}x", ratio(&before)),
        format!("{:.2}x", ratio(&after)),
        "1.00x".to_string(),
        format!(
            "before / after = {:.2}x",
            before.wall().as_secs_f64() / after.wall().as_secs_f64()
        ),
    ]);
    report.print();
    println!(
        "\nbenchmark finished in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

/// Sizes and delays, from the environment.
struct Settings {
    orgs: usize,
    configs_per_org: usize,
    latency: Duration,
    connect_delay: Duration,
}

impl Settings {
    fn from_env() -> Settings {
        Settings {
            orgs: env_number("BENCH_ORGS", 2000).max(1) as usize,
            configs_per_org: env_number("BENCH_CONFIGS_PER_ORG", 50).max(1) as usize,
            latency: Duration::from_millis(env_number("BENCH_LATENCY_MS", 100)),
            connect_delay: Duration::from_millis(env_number("BENCH_CONNECT_MS", 200)),
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

/// A table with a header row, printed with padded columns.
struct Report<const N: usize> {
    header: [&'static str; N],
    rows: Vec<[String; N]>,
}

impl<const N: usize> Report<N> {
    fn new(header: [&'static str; N]) -> Report<N> {
        Report {
            header,
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: [String; N]) {
        self.rows.push(cells);
    }

    fn print(&self) {
        let mut widths = self.header.map(|h| h.chars().count());
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let padded: Vec<String> = cells
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
                .collect();
            println!("| {} |", padded.join(" | "));
        };
        line(self.header.to_vec());
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        println!("|-{}-|", rule.join("-|-"));
        for row in &self.rows {
            line(row.iter().map(String::as_str).collect());
        }
    }
}

/// A database and a cache directory, and the simulator the binary talks to over TLS.
struct Workspace<'a> {
    dir: PathBuf,
    sim: &'a Simulator,
    ca_file: PathBuf,
}

impl<'a> Workspace<'a> {
    fn new(dir: &Path, sim: &'a Simulator, ca_file: &Path) -> Workspace<'a> {
        std::fs::create_dir_all(dir).expect("create the workspace directory");
        Workspace {
            dir: dir.to_path_buf(),
            sim,
            ca_file: ca_file.to_path_buf(),
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
            .env("SSL_CERT_FILE", &self.ca_file)
            .env("SCOPABLE_CACHE_DIR", self.dir.join("cache"))
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        for var in PROXY_VARS {
            cmd.env_remove(var);
        }
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

    /// Imports the Scopable records and connects (compiling the component into the cache),
    /// then times `sync organizations` and `sync configurations`.
    fn run_syncs(&self, clients_csv: &str, configs_csv: &str, pages: &[String]) -> Run {
        let t = Instant::now();
        let clients = self.dir.join("clients.csv");
        let configs = self.dir.join("configurations.csv");
        std::fs::write(&clients, clients_csv).expect("write clients.csv");
        std::fs::write(&configs, configs_csv).expect("write configurations.csv");
        let path = |p: &Path| p.to_str().expect("a UTF-8 temporary path").to_string();
        self.run_ok(self.command(&["import", "clients", &path(&clients)]));
        self.run_ok(self.command(&["import", "configurations", &path(&configs)]));
        let endpoint = self.sim.base_url();
        let mut connect = self.command(&[
            "itglue",
            "connect",
            "--region",
            "us",
            "--endpoint",
            &endpoint,
        ]);
        connect.env("ITGLUE_API_KEY", KEY);
        self.run_ok(connect);
        println!(
            "  imported, connected and compiled into the cache in {:.1} s (not timed)",
            t.elapsed().as_secs_f64()
        );
        self.sim.clear_requests();
        let orgs = self.sync("organizations");
        let configs = self.sync("configurations");
        let mut asked: Vec<String> = self
            .sim
            .requests()
            .iter()
            .map(|r| format!("{}?{}", r.path, r.query))
            .collect();
        let mut expected = pages.to_vec();
        asked.sort();
        expected.sort();
        Run {
            same_pages: asked == expected,
            asked: asked.len(),
            syncs: [orgs, configs],
        }
    }

    /// Runs `itglue sync KIND --json` with the audit log on stderr, and counts what the
    /// simulator saw meanwhile.
    fn sync(&self, kind: &str) -> Sync {
        let mut cmd = self.command(&["itglue", "sync", kind, "--json"]);
        cmd.env("SCOPABLE_LOG", "scopable::audit=info");
        let connections = self.sim.connections();
        let requests = self.sim.request_count();
        let started = SystemTime::now();
        let t = Instant::now();
        let out = cmd.output().expect("run scopable-host");
        let wall = t.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let summary: Option<Value> = serde_json::from_str(&stdout).ok();
        let (audit_new, audit_reused) = audit_connections(&stderr);
        Sync {
            phases: Phases::from_audit_log(&stderr, started, wall),
            kind: kind.to_string(),
            ok: out.status.success(),
            stderr,
            wall,
            connections: self.sim.connections() - connections,
            requests: self.sim.request_count() - requests,
            reported_requests: summary.as_ref().and_then(|v| v["requests"].as_u64()),
            linked: summary.as_ref().and_then(|v| v["linked"].as_u64()),
            audit_new,
            audit_reused,
        }
    }
}

/// Counts the audit lines of HTTP requests by their `connection` field: `(new, reused)`.
fn audit_connections(stderr: &str) -> (u64, u64) {
    let (mut new, mut reused) = (0, 0);
    for line in stderr.lines() {
        if !line.contains("capability use") {
            continue;
        }
        let connection = line.split_whitespace().map(strip_ansi).find_map(|w| {
            w.strip_prefix("connection=")
                .map(|v| v.trim_matches('"').to_string())
        });
        match connection.as_deref() {
            Some("new") => new += 1,
            Some("reused") => reused += 1,
            _ => {}
        }
    }
    (new, reused)
}

/// The text without ANSI escape sequences.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
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

/// One timed sync.
struct Sync {
    phases: Option<Phases>,
    kind: String,
    ok: bool,
    stderr: String,
    wall: Duration,
    /// Connections the simulator accepted while it ran.
    connections: u64,
    /// Requests the simulator received while it ran.
    requests: u64,
    /// `requests` from the sync's `--json`.
    reported_requests: Option<u64>,
    linked: Option<u64>,
    /// Audit rows whose request went on a new connection.
    audit_new: u64,
    /// Audit rows whose request went on a connection that had carried an earlier one.
    audit_reused: u64,
}

/// The two syncs of one workspace.
struct Run {
    syncs: [Sync; 2],
    /// The simulator's log holds exactly the floor's pages.
    same_pages: bool,
    /// Requests in the simulator's log.
    asked: usize,
}

impl Run {
    fn ok(&self) -> bool {
        self.syncs.iter().all(|s| s.ok)
    }

    fn wall(&self) -> Duration {
        self.syncs.iter().map(|s| s.wall).sum()
    }

    fn connections(&self) -> u64 {
        self.syncs.iter().map(|s| s.connections).sum()
    }

    fn requests(&self) -> u64 {
        self.syncs.iter().map(|s| s.requests).sum()
    }

    /// The audit rows' `new` connections are the connections the simulator accepted.
    fn audit_matches(&self) -> bool {
        self.syncs
            .iter()
            .all(|s| s.audit_new == s.connections && s.audit_new + s.audit_reused == s.requests)
    }

    fn wall_text(&self) -> String {
        let [o, c] = &self.syncs;
        format!(
            "{:.2} s ({:.2} + {:.2})",
            self.wall().as_secs_f64(),
            o.wall.as_secs_f64(),
            c.wall.as_secs_f64()
        )
    }

    fn connections_text(&self) -> String {
        let [o, c] = &self.syncs;
        format!(
            "{} ({} + {})",
            self.connections(),
            o.connections,
            c.connections
        )
    }

    fn audit_text(&self) -> String {
        let [o, c] = &self.syncs;
        format!(
            "{} / {}",
            o.audit_new + c.audit_new,
            o.audit_reused + c.audit_reused
        )
    }

    fn requests_text(&self) -> String {
        let [o, c] = &self.syncs;
        let n = |v: Option<u64>| v.map_or("?".to_string(), |n| n.to_string());
        format!(
            "{} ({} + {}); {}",
            self.requests(),
            o.requests,
            c.requests,
            n(o.reported_requests
                .zip(c.reported_requests)
                .map(|(a, b)| a + b))
        )
    }

    /// `sync configurations`' fetching time, as text.
    fn fetching_text(&self) -> String {
        self.syncs[1].phases.as_ref().map_or("?".to_string(), |p| {
            format!("{:.2} s", p.fetching.as_secs_f64())
        })
    }

    /// `sync configurations`' time after its last response, as text.
    fn after_last_text(&self) -> String {
        self.syncs[1].phases.as_ref().map_or("?".to_string(), |p| {
            format!("{:.2} s", p.after_last_response.as_secs_f64())
        })
    }

    fn describe(&self) {
        for s in &self.syncs {
            if !s.ok {
                println!(
                    "  sync {} FAILED after {:.2} s: {}",
                    s.kind,
                    s.wall.as_secs_f64(),
                    s.stderr.trim()
                );
                continue;
            }
            let n = |v: Option<u64>| v.map_or("?".to_string(), |n| n.to_string());
            println!(
                "  sync {}: {:.2} s wall, {} requests ({} in its --json), {} connections \
                 opened; audit rows {} new, {} reused; {} linked",
                s.kind,
                s.wall.as_secs_f64(),
                s.requests,
                n(s.reported_requests),
                s.connections,
                s.audit_new,
                s.audit_reused,
                n(s.linked)
            );
            if let Some(p) = &s.phases {
                println!(
                    "    {:.2} s to the first request, {:.2} s fetching, {:.2} s after the last \
                     response",
                    p.to_first_request.as_secs_f64(),
                    p.fetching.as_secs_f64(),
                    p.after_last_response.as_secs_f64()
                );
            }
        }
        println!(
            "  the syncs requested {}",
            if self.same_pages {
                "exactly the floor's pages".to_string()
            } else {
                format!(
                    "{} pages that differ from the floor's (see the simulator log)",
                    self.asked
                )
            }
        );
    }
}

/// A rustls client trusting only the certificates of `ca_pem`, offering HTTP/1.1.
fn client_config(ca_pem: &str) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(der.expect("a PEM certificate"))
            .expect("a usable CA certificate");
    }
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// One keep-alive TLS connection, its reads buffered.
struct Conn {
    stream: BufReader<StreamOwned<ClientConnection, TcpStream>>,
}

impl Conn {
    /// Connects; the TLS handshake happens with the first request.
    fn open(addr: SocketAddr, config: &Arc<ClientConfig>) -> Conn {
        let tcp = TcpStream::connect(addr).expect("connect to the simulator");
        let _ = tcp.set_nodelay(true);
        tcp.set_read_timeout(Some(READ_TIMEOUT))
            .expect("set a read timeout");
        let conn = ClientConnection::new(Arc::clone(config), ServerName::from(addr.ip()))
            .expect("a TLS client connection");
        Conn {
            stream: BufReader::with_capacity(64 << 10, StreamOwned::new(conn, tcp)),
        }
    }

    /// One GET; the body is read by its `Content-Length`, nothing else. Returns the bytes
    /// received and whether the connection may carry another request.
    fn get(&mut self, addr: SocketAddr, path_and_query: &str) -> (u64, bool) {
        let tls = self.stream.get_mut();
        write!(
            tls,
            "GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/vnd.api+json\r\n\
             x-api-key: {KEY}\r\n\r\n"
        )
        .expect("send the request");
        tls.flush().expect("send the request");
        let mut head = String::new();
        let mut received = 0;
        loop {
            let mut line = String::new();
            let n = self
                .stream
                .read_line(&mut line)
                .expect("read the response head");
            assert!(n > 0, "{path_and_query}: the connection closed mid-head");
            received += n;
            if line == "\r\n" {
                break;
            }
            head.push_str(&line.to_ascii_lowercase());
        }
        assert!(
            head.starts_with("http/1.1 200"),
            "{path_and_query}: {}",
            head.lines().next().unwrap_or("")
        );
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
        };
        let length: usize = header("content-length:")
            .and_then(|v| v.parse().ok())
            .expect("a Content-Length header");
        let mut body = vec![0; length];
        self.stream
            .read_exact(&mut body)
            .expect("read the response body");
        let keep = header("connection:").is_none_or(|v| v != "close");
        ((received + length) as u64, keep)
    }
}

/// What fetching one listing took.
struct Fetched {
    elapsed: Duration,
    bytes: u64,
    /// TLS connections opened.
    opened: u64,
}

/// Fetches a listing like the sync does: page 1 alone on a new connection, then the other
/// pages by up to `workers` threads, each holding one keep-alive connection (the first takes
/// over page 1's connection, the others open their own).
fn fetch_listing(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    urls: &[String],
    workers: usize,
) -> Fetched {
    let t = Instant::now();
    let opened = AtomicU64::new(1);
    let mut first = Conn::open(addr, config);
    let (bytes, keep) = first.get(addr, &urls[0]);
    let bytes = AtomicU64::new(bytes);
    let idle = Mutex::new(if keep { vec![first] } else { Vec::new() });
    let rest = &urls[1..];
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..workers.min(rest.len()) {
            s.spawn(|| {
                let mut conn = idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(url) = rest.get(i) else { break };
                    let mut c = conn.take().unwrap_or_else(|| {
                        opened.fetch_add(1, Ordering::SeqCst);
                        Conn::open(addr, config)
                    });
                    let (n, keep) = c.get(addr, url);
                    bytes.fetch_add(n, Ordering::SeqCst);
                    if keep {
                        conn = Some(c);
                    }
                }
            });
        }
    });
    Fetched {
        elapsed: t.elapsed(),
        bytes: bytes.load(Ordering::SeqCst),
        opened: opened.load(Ordering::SeqCst),
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

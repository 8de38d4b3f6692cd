//! The harness: a temporary database, a simulator, and a way to run the binary.

use itglue_sim::{SimConfig, Simulator};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use tempfile::TempDir;

/// The US key the simulator accepts.
pub const US_KEY: &str = "sim-key-us";
/// The EU key the simulator accepts.
pub const EU_KEY: &str = "sim-key-eu";

/// What one run of the binary produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        &self.stdout
    }

    /// Asserts success and parses stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    /// Asserts a failure with `code` whose stderr contains `needle`.
    #[track_caller]
    pub fn fails(&self, code: i32, needle: &str) {
        assert_eq!(
            self.code, code,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}: {}",
            self.stderr
        );
    }
}

/// The environment variables that choose trust roots and proxies.
pub const NETWORK_VARS: [&str; 7] = [
    "SSL_CERT_FILE",
    "HTTPS_PROXY",
    "https_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// A temporary workspace: database, simulator, files.
pub struct Env {
    pub dir: TempDir,
    pub sim: Simulator,
}

/// The compiled-component cache shared by every test (compiling once is enough).
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("component-cache")
}

impl Env {
    /// Waits until the simulator has received a request (a sync holds its lease by then).
    pub fn wait_for_a_request(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.sim.requests().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(
            !self.sim.requests().is_empty(),
            "the sync never reached the API"
        );
    }

    /// A simulator with the sample data and a fresh database.
    pub fn new() -> Env {
        Env::with(SimConfig::default())
    }

    /// A simulator with this configuration and a fresh database.
    pub fn with(config: SimConfig) -> Env {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
            sim: Simulator::start(config).expect("simulator"),
        }
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("scopable.db")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a file in the workspace.
    pub fn write(&self, name: &str, body: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, body).expect("write");
        p
    }

    /// Runs the binary with `--db` set, no key in the environment and empty stdin.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_full(args, &[], None)
    }

    /// Runs with `ITGLUE_API_KEY` set.
    pub fn run_key(&self, key: &str, args: &[&str]) -> Run {
        self.run_full(args, &[("ITGLUE_API_KEY", key)], None)
    }

    /// Runs with environment variables and optional stdin.
    pub fn run_full(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_scopable-host"));
        // A test that names its own database (a PostgreSQL URL) gives `--db` itself.
        if !args.contains(&"--db") {
            cmd.arg("--db").arg(self.db());
        }
        cmd.args(args);
        cmd.env_remove("ITGLUE_API_KEY")
            .env_remove("SCOPABLE_VAULT_KEY")
            .env_remove("SCOPABLE_DB")
            .env_remove("SCOPABLE_LOG")
            .env("SCOPABLE_CACHE_DIR", cache_dir())
            .current_dir(self.dir.path());
        // The network settings come from each test alone, never from the machine's.
        for var in NETWORK_VARS {
            cmd.env_remove(var);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn scopable-host");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(input.as_bytes()).expect("write stdin");
        }
        let out = child.wait_with_output().expect("wait");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The simulator's US endpoint.
    pub fn endpoint(&self) -> String {
        self.sim.base_url()
    }

    /// Connects with the US key.
    pub fn connect(&self) {
        self.connect_account("default");
    }

    /// Connects `account` with the US key.
    pub fn connect_account(&self, account: &str) {
        self.run_key(
            US_KEY,
            &[
                "--account",
                account,
                "itglue",
                "connect",
                "--region",
                "us",
                "--endpoint",
                &self.endpoint(),
            ],
        )
        .ok();
    }

    /// Imports the sample Scopable records that go with the sample data set.
    pub fn import_sample(&self) {
        let (clients, configurations) = itglue_sim::sample_scopable_csv();
        self.import(&clients, &configurations);
    }

    /// Imports clients and configurations from CSV text.
    pub fn import(&self, clients: &str, configurations: &str) {
        let c = self.write("clients.csv", clients);
        let k = self.write("configurations.csv", configurations);
        self.run(&["import", "clients", c.to_str().unwrap()]).ok();
        self.run(&["import", "configurations", k.to_str().unwrap()])
            .ok();
    }

    /// Runs a sync with `--json` and returns its summary.
    pub fn sync(&self, kind: &str) -> Value {
        self.run(&["itglue", "sync", kind, "--json"]).json()
    }

    /// Writes the built-in IT Glue component and its manifest (pinned, with `limits` replacing
    /// the matching lines) into the workspace; returns their paths.
    pub fn itglue_with_limits(&self, limits: &str) -> (String, String) {
        let wasm = self.write("itglue.wasm", scopable_builtin::ITGLUE_WASM);
        let mut manifest = String::new();
        let overridden: Vec<&str> = limits
            .lines()
            .filter_map(|l| l.split('=').next())
            .map(str::trim)
            .collect();
        for line in scopable_builtin::ITGLUE_MANIFEST.lines() {
            let key = line.split('=').next().unwrap_or("").trim();
            if !overridden.contains(&key) {
                manifest.push_str(line);
                manifest.push('\n');
            }
            if line.trim() == "[limits]" {
                manifest.push_str(limits);
                manifest.push('\n');
            }
        }
        let manifest = format!(
            "sha256 = \"{}\"\n{manifest}",
            scopable_builtin::ITGLUE_SHA256
        );
        let path = self.write("itglue.toml", manifest);
        (
            wasm.to_string_lossy().into_owned(),
            path.to_string_lossy().into_owned(),
        )
    }

    /// Runs `itglue ARGS` with the built-in component under a manifest whose `[limits]` lines
    /// are replaced by `limits`.
    pub fn run_itglue_with(&self, limits: &str, args: &[&str]) -> Run {
        let (wasm, manifest) = self.itglue_with_limits(limits);
        let mut all = vec![
            "--connector",
            wasm.as_str(),
            "--manifest",
            manifest.as_str(),
            "itglue",
        ];
        all.extend_from_slice(args);
        self.run(&all)
    }

    /// A read-only connection to the database.
    pub fn sqlite(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.db()).expect("open db")
    }
}

/// Asserts the counting rule of every sync summary.
#[track_caller]
pub fn assert_counts_add_up(summary: &Value) {
    let n = |k: &str| {
        summary[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} missing in {summary}"))
    };
    assert_eq!(
        n("linked") + n("skipped") + n("errored"),
        n("fetched"),
        "{summary}"
    );
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A new, empty database on the throwaway PostgreSQL cluster that `scripts/test.sh` starts
/// (`SCOPABLE_TEST_POSTGRES`): its URL. Left behind; the cluster is removed at the end.
pub fn fresh_postgres(name: &str) -> String {
    itglue_sim::postgres::fresh_database(&itglue_sim::postgres::server(), name)
}

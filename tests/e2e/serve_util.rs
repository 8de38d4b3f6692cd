//! The runtime under test: `scopable-host serve` as a process on 127.0.0.1, accounts and
//! tokens made by the command line, and a small HTTP client.

use crate::util::{Env, cache_dir};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An answer of the server.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The error code of an error answer.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Asserts the status, showing the body when it differs.
    pub fn expect(self, status: u16) -> Answer {
        assert_eq!(self.status, status, "{}", self.body);
        self
    }
}

/// A running `serve`.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// What it wrote on stderr (its logs), gathered as it runs.
    pub logs: Arc<Mutex<String>>,
    agent: ureq::Agent,
}

/// Runs the binary's command line on `env`'s database (an operator's command).
pub fn cli(env: &Env, args: &[&str]) -> crate::util::Run {
    env.run(args)
}

impl Server {
    /// Starts `serve` on `env`'s database, pointed at `env`'s simulator, with `extra` options.
    pub fn start(env: &Env, extra: &[&str]) -> Server {
        let endpoint = format!("itglue={}", env.endpoint());
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--endpoint", &endpoint];
        if !extra.contains(&"--workers") {
            args.extend_from_slice(&["--workers", "2"]);
        }
        args.extend_from_slice(extra);
        Server::start_with(env, &args, &[])
    }

    /// Starts the binary with `args` (which must run `serve`) and environment `vars`.
    pub fn start_with(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_scopable-host"));
        // A replica of a PostgreSQL database gives `--db` itself.
        if !args.contains(&"--db") {
            cmd.arg("--db").arg(env.db());
        }
        cmd.args(args);
        cmd.env_remove("ITGLUE_API_KEY")
            .env_remove("SCOPABLE_VAULT_KEY")
            .env_remove("SCOPABLE_DB")
            .env("SCOPABLE_LOG", "info")
            .env("SCOPABLE_CACHE_DIR", cache_dir())
            .current_dir(env.path(""))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for var in crate::util::NETWORK_VARS {
            cmd.env_remove(var);
        }
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn serve");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(String::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            let mut stderr = stderr;
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut lines = BufReader::new(stdout);
        let mut first = String::new();
        lines.read_line(&mut first).expect("serve's first line");
        let base = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("serve did not start: {first:?} {}", logs.lock().unwrap()))
            .to_string();
        assert!(base.starts_with("http://127.0.0.1:"), "{base}");
        let agent = ureq::Agent::new_with_config(
            ureq::config::Config::builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(120)))
                .build(),
        );
        Server {
            child,
            base,
            logs,
            agent,
        }
    }

    /// Sends a request; `auth` is a bearer token.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<(&str, Vec<u8>)>,
    ) -> Answer {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(token) = auth {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let bytes = match body {
            Some((content_type, bytes)) => {
                request = request.header("Content-Type", content_type);
                bytes
            }
            None => Vec::new(),
        };
        let request = request.body(bytes).expect("request");
        let mut response = self.agent.run(request).expect("the server answers");
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .unwrap_or_default();
        Answer {
            status,
            headers,
            body,
        }
    }

    /// GET with a token.
    pub fn get(&self, path: &str, token: &str) -> Answer {
        self.send("GET", path, Some(token), &[], None)
    }

    /// A JSON request with a token.
    pub fn json(&self, method: &str, path: &str, token: &str, body: &Value) -> Answer {
        self.send(
            method,
            path,
            Some(token),
            &[],
            Some(("application/json", body.to_string().into_bytes())),
        )
    }

    /// DELETE with a token.
    pub fn delete(&self, path: &str, token: &str) -> Answer {
        self.send("DELETE", path, Some(token), &[], None)
    }

    /// Queues a sync and waits for its end; returns the finished run.
    pub fn sync(&self, token: &str, kind: &str) -> Value {
        let queued = self
            .json(
                "POST",
                "/api/v1/integrations/itglue/syncs",
                token,
                &serde_json::json!({"kind": kind}),
            )
            .expect(202)
            .json();
        assert_eq!(queued["status"], "queued");
        self.wait_for_run(token, queued["id"].as_i64().expect("run id"))
    }

    /// Waits (at most two minutes) until run `id` has finished; returns it.
    pub fn wait_for_run(&self, token: &str, id: i64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let run = self
                .get(&format!("/api/v1/integrations/itglue/syncs/{id}"), token)
                .expect(200)
                .json();
            if run["status"] == "ok" || run["status"] == "failed" {
                return run;
            }
            assert!(Instant::now() < deadline, "run {id} did not finish: {run}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends SIGTERM and waits for the process; returns its exit code.
    pub fn stop(mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().expect("wait for serve");
        status.code()
    }

    /// Everything it logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Adds account `id` with the itglue feature on, and returns an admin token and a viewer
/// token for it.
pub fn account(env: &Env, id: &str) -> (String, String) {
    cli(
        env,
        &["accounts", "add", id, "--name", &format!("{id} MSP")],
    )
    .ok();
    cli(env, &["accounts", "enable", id, "itglue"]).ok();
    (token(env, id, "admin"), token(env, id, "viewer"))
}

/// A new token of `role` for account `id`.
pub fn token(env: &Env, id: &str, role: &str) -> String {
    let out = cli(env, &["accounts", "token", id, "--role", role]);
    let token = out.ok().trim().to_string();
    assert!(token.starts_with("scopable_tok_"), "{token}");
    token
}

/// The sample clients and configurations as CSV.
pub fn sample_csv() -> (String, String) {
    itglue_sim::sample_scopable_csv()
}

/// Imports the sample records into the account of `token` through the API.
pub fn import_sample(server: &Server, token: &str) {
    let (clients, configurations) = sample_csv();
    for (path, csv) in [
        ("/api/v1/clients", clients),
        ("/api/v1/configurations", configurations),
    ] {
        let answer = server
            .send(
                "POST",
                path,
                Some(token),
                &[],
                Some(("text/csv", csv.into_bytes())),
            )
            .expect(200);
        assert!(
            answer.json()["imported"].as_u64().unwrap_or(0) > 0,
            "{}",
            answer.body
        );
    }
}

/// Tests and connects the US key of the simulator for `token`'s account.
pub fn connect(server: &Server, token: &str) {
    let body =
        serde_json::json!({"region": "us", "api_key": crate::util::US_KEY, "endpoint": null});
    server
        .json("POST", "/api/v1/integrations/itglue/test", token, &body)
        .expect(200);
    server
        .json("POST", "/api/v1/integrations/itglue/connect", token, &body)
        .expect(200);
}

/// A server for account `acme` (its admin token), with the sample records imported and the
/// simulator's key connected.
pub fn connected(env: &Env, extra: &[&str]) -> (Server, String) {
    let (admin, _) = account(env, "acme");
    let server = Server::start(env, extra);
    import_sample(&server, &admin);
    connect(&server, &admin);
    (server, admin)
}

//! Real networks: the simulator over TLS with a private certificate authority, connection
//! reuse, refused certificates, and a `CONNECT` proxy (`HTTPS_PROXY`, `NO_PROXY`).

use crate::util::{Env, Run, US_KEY};
use itglue_sim::{ConnectProxy, SimConfig, TestCa, Validity, generated_dataset};
use serde_json::Value;
use std::path::PathBuf;

/// The generated data set: ten pages of configurations (page size 1,000).
const ORGS: usize = 50;
const CONFIGS_PER_ORG: usize = 200;

/// Requests the shipped connector has in flight at most (`[limits] concurrency`).
fn concurrency() -> u64 {
    scopable_builtin::itglue_manifest()
        .expect("the built-in manifest parses")
        .limits
        .concurrency as u64
}

/// A simulator serving TLS with a certificate for `names` from `ca`, keeping connections
/// alive, with the generated data set (enough configurations for several pages).
fn tls_env(ca: &TestCa, names: &[&str], validity: Validity) -> Env {
    Env::with(SimConfig {
        tls: Some(ca.server(names, validity)),
        keep_alive: true,
        dataset: generated_dataset(ORGS, CONFIGS_PER_ORG),
        ..SimConfig::default()
    })
}

/// Writes the CA's certificate where `SSL_CERT_FILE` can name it.
fn ca_file(env: &Env, ca: &TestCa) -> PathBuf {
    env.write("private-ca.pem", ca.cert_pem())
}

/// Runs with the key and the given network settings.
fn run_net(env: &Env, vars: &[(&str, &str)], args: &[&str]) -> Run {
    let mut all = vec![("ITGLUE_API_KEY", US_KEY)];
    all.extend_from_slice(vars);
    env.run_full(args, &all, None)
}

/// The audit rows of the HTTP requests, newest first.
fn requests(env: &Env) -> Vec<Value> {
    let activity = env
        .run(&["itglue", "activity", "--limit", "1000", "--json"])
        .json();
    activity
        .as_array()
        .expect("activity is a list")
        .iter()
        .filter(|e| e["kind"] == "request")
        .cloned()
        .collect()
}

#[test]
fn a_sync_over_tls_with_a_private_ca_reuses_its_connections() {
    let ca = TestCa::new("Firewall inspection CA");
    let env = tls_env(&ca, &["127.0.0.1"], Validity::Current);
    assert!(env.endpoint().starts_with("https://127.0.0.1:"));
    let pem = ca_file(&env, &ca);
    let trust = [("SSL_CERT_FILE", pem.to_str().unwrap())];
    let endpoint = env.endpoint();
    run_net(
        &env,
        &trust,
        &[
            "itglue",
            "connect",
            "--region",
            "us",
            "--endpoint",
            &endpoint,
        ],
    )
    .ok();
    let (clients, configurations) = itglue_sim::generated_scopable_csv(ORGS, CONFIGS_PER_ORG);
    env.import(&clients, &configurations);

    for kind in ["organizations", "configurations"] {
        let before_connections = env.sim.connections();
        let before_requests = env.sim.request_count();
        let summary = run_net(&env, &trust, &["itglue", "sync", kind, "--json"]).json();
        assert_eq!(summary["errored"], 0, "{summary}");
        assert!(summary["linked"].as_u64().unwrap() > 0, "{summary}");
        let opened = env.sim.connections() - before_connections;
        let sent = env.sim.request_count() - before_requests;
        assert!(
            opened <= concurrency() + 2,
            "sync {kind}: {sent} requests opened {opened} connections"
        );
        if kind == "configurations" {
            assert!(
                sent >= 2 * opened,
                "sync {kind}: {sent} requests over {opened} connections"
            );
        }
    }
    // Every allowed request's audit row says how it travelled: the first on each connection
    // the simulator accepted is `new`, every other one `reused`.
    let rows = requests(&env);
    let allowed: Vec<&Value> = rows.iter().filter(|r| r["decision"] == "allowed").collect();
    assert!(!allowed.is_empty());
    let reused = allowed
        .iter()
        .filter(|r| r["connection"] == "reused")
        .count();
    let new = allowed.iter().filter(|r| r["connection"] == "new").count();
    assert_eq!(reused + new, allowed.len(), "{allowed:?}");
    assert_eq!(
        new as u64,
        env.sim.connections(),
        "{reused} reused, {new} new"
    );
    assert_eq!((reused + new) as u64, env.sim.request_count());
    assert!(reused > 0);
    let text = env.run(&["itglue", "activity", "--limit", "5"]);
    assert!(text.ok().contains("reused"), "{}", text.stdout);
}

/// `itglue test` against a TLS simulator, with these network settings.
fn test_over_tls(env: &Env, vars: &[(&str, &str)]) -> Run {
    let endpoint = env.endpoint();
    run_net(env, vars, &["itglue", "test", "--endpoint", &endpoint])
}

#[test]
fn an_unknown_ca_fails_at_once_with_what_to_do() {
    let ca = TestCa::new("Firewall inspection CA");
    let env = tls_env(&ca, &["127.0.0.1"], Validity::Current);
    let run = test_over_tls(&env, &[]);
    run.fails(5, "certificate");
    assert!(run.stderr.contains("unknown issuer"), "{}", run.stderr);
    assert!(run.stderr.contains("SSL_CERT_FILE"), "{}", run.stderr);
    assert!(!run.stderr.contains("unavailable"), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    // Not retried: one connection, refused at the handshake; no request reached the API.
    assert_eq!(env.sim.connections(), 1);
    assert_eq!(env.sim.request_count(), 0);

    // A bundle that holds another CA names itself as not holding the issuer.
    let other = TestCa::new("Some other CA");
    let pem = ca_file(&env, &other);
    let run = test_over_tls(&env, &[("SSL_CERT_FILE", pem.to_str().unwrap())]);
    run.fails(5, "unknown issuer");
    assert!(run.stderr.contains("private-ca.pem"), "{}", run.stderr);

    // Through the runtime's error shape too: `--json` prints nothing on stdout.
    let json = run_net(
        &env,
        &[],
        &["itglue", "test", "--endpoint", &env.endpoint(), "--json"],
    );
    assert_eq!(json.code, 5);
    assert!(json.stdout.is_empty(), "{}", json.stdout);
}

#[test]
fn an_expired_certificate_and_a_wrong_name_are_each_named() {
    let ca = TestCa::new("Firewall inspection CA");
    let expired = tls_env(&ca, &["127.0.0.1"], Validity::Expired);
    let pem = ca_file(&expired, &ca);
    let trust = [("SSL_CERT_FILE", pem.to_str().unwrap())];
    let run = test_over_tls(&expired, &trust);
    run.fails(5, "certificate has expired");
    assert_eq!(expired.sim.connections(), 1, "not retried");

    let wrong = tls_env(&ca, &["api.itglue.example"], Validity::Current);
    let pem = ca_file(&wrong, &ca);
    let run = test_over_tls(&wrong, &[("SSL_CERT_FILE", pem.to_str().unwrap())]);
    run.fails(5, "wrong name");
    assert!(run.stderr.contains("--endpoint"), "{}", run.stderr);
    assert_eq!(wrong.sim.connections(), 1, "not retried");
}

#[test]
fn unusable_network_settings_are_refused_before_anything_is_sent() {
    let ca = TestCa::new("Firewall inspection CA");
    let env = tls_env(&ca, &["127.0.0.1"], Validity::Current);
    let missing = env.path("no-such-bundle.pem");
    let run = test_over_tls(&env, &[("SSL_CERT_FILE", missing.to_str().unwrap())]);
    run.fails(2, "SSL_CERT_FILE names");
    assert!(run.stderr.contains("no-such-bundle.pem"), "{}", run.stderr);
    let run = test_over_tls(
        &env,
        &[("HTTPS_PROXY", "https://someone:pr0xy-secret@127.0.0.1:9")],
    );
    run.fails(2, "HTTPS_PROXY is set but");
    assert!(!run.stderr.contains("pr0xy-secret"), "{}", run.stderr);
    assert_eq!(env.sim.connections(), 0);
}

#[test]
fn https_proxy_carries_the_sync_and_no_proxy_skips_it() {
    let ca = TestCa::new("Firewall inspection CA");
    let env = tls_env(&ca, &["127.0.0.1"], Validity::Current);
    let proxy =
        ConnectProxy::start(Some(("msp".into(), "pr0xy-secret".into()))).expect("start the proxy");
    let pem = ca_file(&env, &ca);
    let with_credentials = proxy.url().replace("http://", "http://msp:pr0xy-secret@");
    let vars = [
        ("SSL_CERT_FILE", pem.to_str().unwrap()),
        ("HTTPS_PROXY", with_credentials.as_str()),
    ];
    let endpoint = env.endpoint();
    let connect = run_net(
        &env,
        &vars,
        &[
            "itglue",
            "connect",
            "--region",
            "us",
            "--endpoint",
            &endpoint,
        ],
    );
    connect.ok();
    let (clients, configurations) = itglue_sim::generated_scopable_csv(ORGS, CONFIGS_PER_ORG);
    env.import(&clients, &configurations);
    let summary = run_net(&env, &vars, &["itglue", "sync", "organizations", "--json"]).json();
    assert!(summary["linked"].as_u64().unwrap() > 0, "{summary}");
    let tunnels = proxy.tunnels();
    assert!(tunnels >= 2, "connect and sync each tunnelled: {tunnels}");
    assert_eq!(
        tunnels,
        env.sim.connections(),
        "every connection was tunnelled"
    );
    let target = format!("127.0.0.1:{}", env.sim.port());
    assert!(
        proxy
            .requests()
            .iter()
            .all(|r| r.target == target && r.authorized && r.status == 200),
        "{:?}",
        proxy.requests()
    );

    // `status` and the audit rows say a proxy carries the requests, never its credentials.
    let shown = proxy.url();
    let status = run_net(&env, &vars, &["itglue", "status", "--json"]).json();
    assert_eq!(status["proxy"], shown.as_str(), "{status}");
    let text = run_net(&env, &vars, &["itglue", "status"]);
    assert!(
        text.ok().contains(&format!("proxy {shown}")),
        "{}",
        text.stdout
    );
    let rows = requests(&env);
    assert!(
        rows.iter()
            .filter(|r| r["decision"] == "allowed")
            .all(|r| r["connection"]
                .as_str()
                .unwrap_or("")
                .ends_with(&format!("via proxy {shown}"))),
        "{rows:?}"
    );
    for out in [&connect, &text] {
        assert!(!out.stdout.contains("pr0xy-secret") && !out.stderr.contains("pr0xy-secret"));
    }
    for file in [env.db(), env.path("scopable.db-wal")] {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&bytes).contains("pr0xy-secret"));
    }

    // NO_PROXY names the API's host: the proxy sees nothing more.
    let direct = [
        ("SSL_CERT_FILE", pem.to_str().unwrap()),
        ("HTTPS_PROXY", with_credentials.as_str()),
        ("NO_PROXY", "127.0.0.1"),
    ];
    let summary = run_net(
        &env,
        &direct,
        &["itglue", "sync", "configurations", "--json"],
    )
    .json();
    assert_eq!(summary["errored"], 0, "{summary}");
    assert_eq!(proxy.tunnels(), tunnels, "NO_PROXY was not honoured");
    let status = run_net(&env, &direct, &["itglue", "status", "--json"]).json();
    assert_eq!(status["proxy"], Value::Null);
}

#[test]
fn a_proxy_that_wants_other_credentials_is_named_and_not_retried() {
    let ca = TestCa::new("Firewall inspection CA");
    let env = tls_env(&ca, &["127.0.0.1"], Validity::Current);
    let proxy =
        ConnectProxy::start(Some(("msp".into(), "right-secret".into()))).expect("start the proxy");
    let pem = ca_file(&env, &ca);
    let wrong = proxy.url().replace("http://", "http://msp:wr0ng-secret@");
    let run = test_over_tls(
        &env,
        &[
            ("SSL_CERT_FILE", pem.to_str().unwrap()),
            ("HTTPS_PROXY", wrong.as_str()),
        ],
    );
    run.fails(5, &format!("the proxy {}", proxy.url()));
    assert!(run.stderr.contains("407"), "{}", run.stderr);
    assert!(!run.stderr.contains("wr0ng-secret"), "{}", run.stderr);
    assert_eq!(proxy.requests().len(), 1, "not retried");
    assert_eq!(env.sim.connections(), 0);
}

#[test]
fn the_runtime_names_a_certificate_failure_and_shows_its_proxy() {
    use crate::serve_util::{Server, account, import_sample};
    let ca = TestCa::new("Firewall inspection CA");
    let env = tls_env(&ca, &["127.0.0.1"], Validity::Current);
    let (admin, _) = account(&env, "acme");
    let endpoint = format!("itglue={}", env.endpoint());
    let args = ["serve", "--listen", "127.0.0.1:0", "--endpoint", &endpoint];
    let body = serde_json::json!({"region": "us", "api_key": US_KEY, "endpoint": null});

    // No trust for the private CA: a gateway failure with its own code, not "unavailable".
    let server = Server::start_with(&env, &args, &[]);
    let refused = server
        .json("POST", "/api/v1/integrations/itglue/test", &admin, &body)
        .expect(502);
    assert_eq!(refused.code(), "certificate", "{}", refused.body);
    assert!(refused.body.contains("unknown issuer"), "{}", refused.body);
    assert!(refused.body.contains("SSL_CERT_FILE"), "{}", refused.body);
    assert_eq!(env.sim.request_count(), 0);
    server.stop();
    let refused_connections = env.sim.connections();

    // Trusted, through the proxy: the status says so, without the password.
    let proxy =
        ConnectProxy::start(Some(("msp".into(), "pr0xy-secret".into()))).expect("start the proxy");
    let pem = ca_file(&env, &ca);
    let with_credentials = proxy.url().replace("http://", "http://msp:pr0xy-secret@");
    let server = Server::start_with(
        &env,
        &args,
        &[
            ("SSL_CERT_FILE", pem.to_str().unwrap()),
            ("HTTPS_PROXY", with_credentials.as_str()),
        ],
    );
    import_sample(&server, &admin);
    for step in ["test", "connect"] {
        server
            .json(
                "POST",
                &format!("/api/v1/integrations/itglue/{step}"),
                &admin,
                &body,
            )
            .expect(200);
    }
    let status = server
        .get("/api/v1/integrations/itglue", &admin)
        .expect(200);
    assert_eq!(
        status.json()["proxy"],
        proxy.url().as_str(),
        "{}",
        status.body
    );
    // The server's one pool: test and connect shared the tunnelled connection.
    assert!(proxy.tunnels() >= 1);
    assert_eq!(
        proxy.tunnels(),
        env.sim.connections() - refused_connections,
        "every connection was tunnelled"
    );
    assert!(!status.body.contains("pr0xy-secret"));
    assert!(!server.logs().contains("pr0xy-secret"));
}

/// Runs `itglue ARGS` with the built-in component under these `[limits]` and network settings.
fn run_with_limits(env: &Env, limits: &str, vars: &[(&str, &str)], args: &[&str]) -> Run {
    let (wasm, manifest) = env.itglue_with_limits(limits);
    let mut all = vec![
        "--connector",
        wasm.as_str(),
        "--manifest",
        manifest.as_str(),
        "itglue",
    ];
    all.extend_from_slice(args);
    run_net(env, vars, &all)
}

#[test]
fn the_first_byte_timeout_counts_from_the_request_not_the_handshake() {
    let ca = TestCa::new("Firewall inspection CA");
    let env = Env::with(SimConfig {
        tls: Some(ca.server(&["127.0.0.1"], Validity::Current)),
        keep_alive: true,
        // Each new connection's handshake takes a second; the answer itself is immediate.
        connect_delay: std::time::Duration::from_millis(1000),
        ..SimConfig::default()
    });
    let pem = ca_file(&env, &ca);
    let endpoint = env.endpoint();
    let run = run_with_limits(
        &env,
        "first_byte_timeout_ms = 500\nmax_attempts = 1",
        &[("SSL_CERT_FILE", pem.to_str().unwrap())],
        &["test", "--endpoint", &endpoint],
    );
    assert!(run.ok().contains("Verified"), "{}", run.stdout);
    assert_eq!(env.sim.connections(), 1);
}

#[test]
fn a_proxy_that_cannot_reach_the_api_is_retried_like_the_api() {
    let ca = TestCa::new("Firewall inspection CA");
    let env = tls_env(&ca, &["127.0.0.1"], Validity::Current);
    let proxy = ConnectProxy::start(None).expect("start the proxy");
    let pem = ca_file(&env, &ca);
    // Nothing listens on the port the proxy is asked for: it answers 502.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let endpoint = format!("https://127.0.0.1:{port}");
    let url = proxy.url();
    let run = run_with_limits(
        &env,
        "max_attempts = 3\nretry_base_ms = 10\nretry_max_ms = 20",
        &[
            ("SSL_CERT_FILE", pem.to_str().unwrap()),
            ("HTTPS_PROXY", url.as_str()),
        ],
        &["test", "--endpoint", &endpoint],
    );
    run.fails(4, "unavailable after retries");
    let asked = proxy.requests();
    assert_eq!(asked.len(), 3, "{asked:?}");
    assert!(asked.iter().all(|r| r.status == 502), "{asked:?}");
}

#[test]
fn the_runtime_reuses_connections_across_jobs_and_accounts() {
    use crate::serve_util::{Server, account, import_sample};
    let ca = TestCa::new("Firewall inspection CA");
    let env = tls_env(&ca, &["127.0.0.1"], Validity::Current);
    let pem = ca_file(&env, &ca);
    let endpoint = format!("itglue={}", env.endpoint());
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--endpoint",
        &endpoint,
        "--workers",
        "2",
    ];
    let tokens: Vec<String> = ["acme", "globex"]
        .iter()
        .map(|id| account(&env, id).0)
        .collect();
    let server = Server::start_with(&env, &args, &[("SSL_CERT_FILE", pem.to_str().unwrap())]);
    let body = serde_json::json!({"region": "us", "api_key": US_KEY, "endpoint": null});
    for token in &tokens {
        import_sample(&server, token);
        server
            .json("POST", "/api/v1/integrations/itglue/connect", token, &body)
            .expect(200);
    }
    // Two rounds of both accounts' syncs at once, each job on its own runtime.
    let mut opened_by_round = Vec::new();
    for _ in 0..2 {
        let before = env.sim.connections();
        for kind in ["organization", "configuration"] {
            let ids: Vec<i64> = tokens
                .iter()
                .map(|token| {
                    server
                        .json(
                            "POST",
                            "/api/v1/integrations/itglue/syncs",
                            token,
                            &serde_json::json!({"kind": kind}),
                        )
                        .expect(202)
                        .json()["id"]
                        .as_i64()
                        .unwrap()
                })
                .collect();
            for (token, id) in tokens.iter().zip(ids) {
                let run = server.wait_for_run(token, id);
                assert_eq!(run["status"], "ok", "{run}");
            }
        }
        opened_by_round.push(env.sim.connections() - before);
    }
    // Each configuration sync asks for 10 pages, 4 at a time: jobs that each had their own
    // connections would open 20 over the two rounds. Shared ones number what two workers
    // have in flight at once (8), however the rounds' jobs overlap, plus the few a request
    // opens when it comes just before the connection it could use is free again: the first
    // round's connections outlived the jobs that opened them and served the later ones.
    assert!(opened_by_round[0] > 0);
    let opened: u64 = opened_by_round.iter().sum();
    assert!(opened < 2 * 2 * concurrency(), "{opened_by_round:?}");
}

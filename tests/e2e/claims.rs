//! Claims of `docs/security.md` that need a test of their own: the digest pin, the
//! compiled-component cache, the request-body rule, the empty environment, the log bounds, the
//! streamed response size and the connect and first-byte timeouts. Each runs the real binary
//! on a real component against the simulator (or a listener) on 127.0.0.1.

use crate::hostile::{
    CPU_MS, Hostile, KEY, KEY_ENV, MAX_RESPONSE_BYTES, assert_audit_clean,
    assert_host_keeps_serving, assert_no_key_in_output, assert_refused, assert_requests_clean,
    assert_response_cut_off, audit, env, http_rows, manifest_text,
};
use crate::util::{Env, Run, files_under};
use itglue_sim::{Fault, FaultRule, guests};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A compiled-component cache of the test's own, empty, inside its workspace.
fn fresh_cache(env: &Env) -> PathBuf {
    env.path("component-cache")
}

/// `scopable-host --connector .. --manifest .. hostile test --endpoint SIM` with `cache` as the
/// compiled-component cache.
fn test_with_cache(h: &Hostile<'_>, cache: &Path) -> Run {
    let endpoint = h.env.sim.base_url();
    let cache = cache.to_str().expect("utf-8 path");
    h.run_with(
        KEY,
        &["test", "--endpoint", &endpoint],
        &[("SCOPABLE_CACHE_DIR", cache)],
    )
}

/// `label`'s component under the hostile manifest with `extra` appended to its `[limits]`.
fn with_limits<'a>(env: &'a Env, label: &str, wasm: &'static str, extra: &str) -> Hostile<'a> {
    let mut h = Hostile::new(env, label, wasm);
    let text = format!("{}{extra}\n", manifest_text(&h.sha256, CPU_MS));
    h.manifest = env.write(&format!("{label}.toml"), text);
    h
}

/// The files of the cache, by name.
fn cached_files(cache: &Path) -> Vec<String> {
    let mut names: Vec<String> = files_under(cache)
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A component whose digest differs from the manifest's `sha256`, or whose manifest pins none,
/// is refused before it is compiled: exit 5 naming the digest, nothing sent, nothing audited,
/// nothing stored, nothing in the compiled-component cache. The same component under its
/// right pin runs and is cached, so the empty cache above means something.
#[test]
fn digest_pin_refuses_a_different_or_missing_sha256() {
    let env = env();
    let cache = fresh_cache(&env);
    let mut h = Hostile::new(&env, "pinned", guests::WELL_BEHAVED);
    let right = h.sha256.clone();
    let right_manifest = h.manifest.clone();

    let other_component = std::fs::read(guests::POST).expect("post component");
    let other = scopable_sandbox::sandbox::sha256_hex(&other_component);
    let mut one_digit_off = right.clone();
    let last = if right.ends_with('0') { "1" } else { "0" };
    one_digit_off.replace_range(right.len() - 1.., last);
    for (label, wrong) in [
        ("another component's", &other),
        ("one digit off", &one_digit_off),
    ] {
        assert_ne!(wrong, &right);
        h.manifest = env.write("wrong-pin.toml", manifest_text(wrong, CPU_MS));
        let run = test_with_cache(&h, &cache);
        assert_refused(&run, 5, "does not match the manifest's sha256");
        assert!(run.stderr.contains("connector refused"), "{}", run.stderr);
        assert!(run.stderr.contains(&right), "{label}: {}", run.stderr);
        assert!(
            run.stderr.contains(wrong.as_str()),
            "{label}: {}",
            run.stderr
        );
        assert_no_key_in_output(&run, KEY);
        // `connect` refuses it the same way, and stores nothing.
        let manifest = h.manifest.to_str().expect("utf-8 path");
        let connect = env.run_full(
            &[
                "--connector",
                h.wasm,
                "--manifest",
                manifest,
                "hostile",
                "connect",
                "--region",
                "us",
                "--endpoint",
                &env.sim.base_url(),
            ],
            &[
                (KEY_ENV, KEY),
                ("SCOPABLE_CACHE_DIR", cache.to_str().expect("utf-8 path")),
            ],
            None,
        );
        assert_refused(&connect, 5, "does not match the manifest's sha256");
    }

    // No `sha256` at all: the message gives the line to add.
    let pinned_line = format!("sha256 = \"{right}\"\n");
    let unpinned = manifest_text(&right, CPU_MS).replace(&pinned_line, "");
    assert!(!unpinned.contains("sha256"), "{unpinned}");
    h.manifest = env.write("unpinned.toml", unpinned);
    let run = test_with_cache(&h, &cache);
    assert_refused(&run, 5, "the manifest has no sha256");
    assert!(
        run.stderr.contains(&format!("sha256 = \\\"{right}\\\""))
            || run.stderr.contains(&format!("sha256 = \"{right}\"")),
        "the message does not give the line to add: {}",
        run.stderr
    );
    assert_no_key_in_output(&run, KEY);

    assert_eq!(env.sim.request_count(), 0, "{:?}", env.sim.requests());
    assert!(audit(&env).is_empty(), "{:?}", audit(&env));
    let stored: i64 = env
        .sqlite()
        .query_row("SELECT count(*) FROM connections", [], |r| r.get(0))
        .expect("connections");
    assert_eq!(stored, 0, "a refused component's connection was stored");
    assert_eq!(
        cached_files(&cache),
        Vec::<String>::new(),
        "a refused component was cached"
    );

    // The right pin: it runs, and is cached under its digest.
    h.manifest = right_manifest;
    let run = test_with_cache(&h, &cache);
    assert!(run.ok().contains("status=200"), "{}", run.stdout);
    let files = cached_files(&cache);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].starts_with(&right), "{files:?}");
    assert!(files[0].ends_with(".cwasm"), "{files:?}");
}

/// A component refused at load for what it imports (`filesystem`, `sockets`) is compiled, but
/// never written to the compiled-component cache: a later load compiles it again and refuses
/// it again. An accepted component in the same cache is written there.
#[test]
fn a_refused_component_leaves_nothing_in_the_cache() {
    let env = env();
    let cache = fresh_cache(&env);
    let filesystem = Hostile::new(&env, "filesystem", guests::FILESYSTEM);
    let sockets = Hostile::new(&env, "sockets", guests::SOCKETS);
    for h in [&filesystem, &sockets] {
        let run = test_with_cache(h, &cache);
        assert_refused(&run, 5, "connector refused");
        assert_eq!(
            cached_files(&cache),
            Vec::<String>::new(),
            "a refused component was cached"
        );
    }

    let control = Hostile::new(&env, "control", guests::WELL_BEHAVED);
    let run = test_with_cache(&control, &cache);
    assert!(run.ok().contains("status=200"), "{}", run.stdout);
    let files = cached_files(&cache);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].starts_with(&control.sha256), "{files:?}");

    // Refused again (not loaded from anywhere), and still not cached.
    let run = test_with_cache(&filesystem, &cache);
    assert_refused(&run, 5, "wasi:filesystem/");
    assert_eq!(cached_files(&cache), files);
    // The cache directory is the owner's only.
    let mode = std::fs::metadata(&cache)
        .expect("cache dir")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "cache directory mode {mode:o}");
    assert_eq!(env.sim.request_count(), 1, "{:?}", env.sim.requests());
    assert_host_keeps_serving(&env);
}

/// `get-body`: GETs of a declared path that carry a body, with a declared length and streamed
/// without one. Both are refused before anything reaches the API: the first by rule `body`,
/// the second at its first data frame.
#[test]
pub(crate) fn get_body() {
    let env = env();
    let h = Hostile::new(&env, "get-body", guests::GET_BODY);
    let endpoint = env.sim.base_url();
    let run = h.run_with(
        KEY,
        &["test", "--endpoint", &endpoint],
        &[("SCOPABLE_LOG", "info")],
    );
    run.fails(5, "denied by rule body");
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    let last = run.stderr.lines().last().unwrap_or("");
    assert!(last.starts_with("error: "), "{}", run.stderr);
    assert!(last.contains("may not carry a body"), "{}", run.stderr);
    assert_no_key_in_output(&run, KEY);
    // The component was told of both refusals (`denied`, or its body stream closed on it),
    // as its log lines say.
    for attempt in ["declared", "streamed"] {
        let told = [": denied", ": body refused"]
            .iter()
            .any(|o| run.stderr.contains(&format!("get-body {attempt}{o}")));
        assert!(told, "{attempt}: {}", run.stderr);
    }

    let requests = env.sim.requests();
    assert!(requests.is_empty(), "the API saw {requests:?}");
    assert_eq!(env.sim.request_count(), 0);

    let rows = audit(&env);
    assert_audit_clean(&rows, &h, KEY);
    let http = http_rows(&rows);
    assert_eq!(http.len(), 2, "{http:?}");
    for row in &http {
        assert!(row.denied() && row.rule() == "body", "{row:?}");
        assert_eq!(row.method, "GET", "{row:?}");
        assert_eq!(row.path, "/organizations", "{row:?}");
    }
    assert_host_keeps_serving(&env);
}

/// `environment`: a component sees no environment variable, no argument and no stdin, however
/// much the host process has of each.
#[test]
pub(crate) fn environment() {
    let env = env();
    let h = Hostile::new(&env, "environment", guests::ENVIRONMENT);
    let manifest = h.manifest.to_str().expect("utf-8 path");
    let endpoint = env.sim.base_url();
    let vault_key = "5ca1ab1e".repeat(8);
    let home = env.path("home-9c1d");
    let home = home.to_str().expect("utf-8 path");
    let secrets = [
        ("SCOPABLE_VAULT_KEY", vault_key.as_str()),
        ("HOME", home),
        ("CLAIMS_CANARY", "canary-value-4e7a"),
    ];
    let mut vars = vec![(KEY_ENV, KEY)];
    vars.extend_from_slice(&secrets);
    let stdin = "stdin-secret-81b2\n";
    let run = env.run_full(
        &[
            "--connector",
            h.wasm,
            "--manifest",
            manifest,
            "hostile",
            "test",
            "--endpoint",
            &endpoint,
        ],
        &vars,
        Some(stdin),
    );
    // The component reports what it saw as a denial when it saw nothing.
    assert_refused(&run, 5, "vars=0 args=0 stdin=0");
    assert!(!run.stderr.contains("stdin_error"), "{}", run.stderr);
    for (name, value) in secrets.iter().chain([(KEY_ENV, KEY)].iter()) {
        for text in [&run.stdout, &run.stderr] {
            assert!(
                !text.contains(value),
                "{name}'s value reached the component: {text}"
            );
        }
    }
    assert!(!run.stderr.contains("stdin-secret"), "{}", run.stderr);
    assert!(!run.stderr.contains("var:") && !run.stderr.contains("arg:"));
    assert_eq!(env.sim.request_count(), 0);
    assert!(audit(&env).is_empty(), "{:?}", audit(&env));
    assert_host_keeps_serving(&env);
}

/// Lines the host writes for the connector's `log` import (tracing target `connector`).
fn connector_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains(" connector:"))
        .collect()
}

/// `log-flood`: 5000 lines of 5000 characters full of escapes reach the host's log as at most
/// 1000 lines (and one warning), each bounded and inert.
#[test]
pub(crate) fn log_flood() {
    let env = env();
    let h = Hostile::new(&env, "log-flood", guests::LOG_FLOOD);
    let endpoint = env.sim.base_url();
    let run = h.run_with(
        KEY,
        &["test", "--endpoint", &endpoint],
        &[("SCOPABLE_LOG", "info")],
    );
    assert!(run.ok().contains("emitted=5000"), "{}", run.stdout);
    let lines = connector_lines(&run.stderr);
    let flood: Vec<&&str> = lines.iter().filter(|l| l.contains("flood ")).collect();
    let warnings: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("log line limit reached"))
        .collect();
    assert_eq!(flood.len(), 1000, "connector lines kept");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    // The first 1000 lines, in order: nothing later slipped in.
    assert!(flood[0].contains("flood 00000"), "{}", flood[0]);
    assert!(flood[999].contains("flood 00999"), "{}", flood[999]);
    assert!(!run.stderr.contains("flood 01000"));
    // No line is much longer than the 1000 characters kept of a message (the log's own prefix
    // is the rest), and no escape reached the terminal raw.
    let longest = run
        .stderr
        .lines()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0);
    assert!(longest <= 1100, "a line of {longest} characters");
    assert!(!run.stderr.contains('\x1b'), "a raw ESC reached stderr");
    assert!(!run.stderr.contains('\x07'), "a raw BEL reached stderr");
    assert!(!run.stderr.contains('\r'), "a raw CR reached stderr");
    assert!(!run.stderr.contains('\u{202e}'), "a raw RLO reached stderr");
    assert!(!run.stderr.contains('\u{9b}'), "a raw CSI reached stderr");
    // The forged line break stayed inside its line.
    assert!(
        !run.stderr.lines().any(|l| l.starts_with("ERROR forged")),
        "a forged line"
    );
    // Everything the host printed: 1000 kept lines, the warning, a few lines of its own.
    let total = run.stderr.lines().count();
    assert!(total <= 1000 + 1 + 20, "{total} lines on stderr");
    assert_no_key_in_output(&run, KEY);
    assert_eq!(env.sim.request_count(), 0);
    assert_host_keeps_serving(&env);
}

/// A response with no `Content-Length` (chunked) larger than `max_response_bytes` is cut off
/// as it streams: exit 5 naming the limit, one audit row with rule `max-response-bytes`.
#[test]
fn a_streamed_response_over_max_response_bytes_is_cut_off() {
    let row = assert_response_cut_off(
        Fault::HugeChunked {
            bytes: 8 * 1024 * 1024,
        },
        "huge-chunked",
    );
    assert_eq!(
        row.detail.as_deref(),
        Some("body over the limit"),
        "{row:?}"
    );
    // Counted as it streamed: past the limit by at most one read, far from the 8 MiB sent.
    let limit = MAX_RESPONSE_BYTES as i64;
    assert!(
        row.bytes > limit && row.bytes <= limit + (1 << 20),
        "bytes counted: {row:?}"
    );
}

/// A server that takes the request and never answers is given up on after
/// `first_byte_timeout_ms`, well before `call_timeout_ms` or the server's own close.
#[test]
fn first_byte_timeout_ms_bounds_a_server_that_never_answers() {
    let env = env();
    env.sim
        .add_fault(FaultRule::always(Fault::Stall(Duration::from_secs(60))));
    let h = with_limits(
        &env,
        "first-byte",
        guests::WELL_BEHAVED,
        "first_byte_timeout_ms = 500",
    );
    let started = Instant::now();
    let run = h.test();
    let took = started.elapsed();
    // The component gets the timeout as a failed request: `unavailable`, exit 4.
    run.fails(4, "ConnectionReadTimeout");
    assert!(!run.stderr.contains("call_timeout_ms"), "{}", run.stderr);
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(took >= Duration::from_millis(500), "took {took:?}");
    // The request did reach the server (this is not a connect failure).
    let requests = env.sim.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_requests_clean(&requests, KEY);
    let rows = audit(&env);
    let http = http_rows(&rows);
    assert_eq!(http.len(), 1, "{http:?}");
    assert!(
        http[0]
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("ConnectionReadTimeout"),
        "{http:?}"
    );
    assert_host_keeps_serving(&env);
}

/// A loopback listener whose accept queue is full: the kernel drops further connection
/// attempts (their SYNs go unanswered), so a client waits until its own connect timeout.
struct NeverAccepts {
    listener: TcpListener,
    _queued: Vec<TcpStream>,
}

impl NeverAccepts {
    fn bind() -> NeverAccepts {
        use std::os::fd::AsRawFd;
        unsafe extern "C" {
            fn listen(fd: i32, backlog: i32) -> i32;
        }
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        // SAFETY: `listen` on a socket this listener owns; it only changes the backlog.
        let rc = unsafe { listen(listener.as_raw_fd(), 0) };
        assert_eq!(rc, 0, "listen: {}", std::io::Error::last_os_error());
        let addr = listener.local_addr().expect("address");
        let mut queued = Vec::new();
        // Fill the queue until a connection attempt goes unanswered.
        for _ in 0..16 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(stream) => queued.push(stream),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return NeverAccepts {
                        listener,
                        _queued: queued,
                    };
                }
                Err(e) => panic!("connecting to fill the accept queue: {e}"),
            }
        }
        panic!(
            "the accept queue of {addr} did not fill after {} connections",
            queued.len()
        );
    }

    fn addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("address")
    }
}

/// A connection that is never accepted is given up on after `connect_timeout_ms`, well
/// before `call_timeout_ms`.
#[test]
fn connect_timeout_ms_bounds_a_connection_never_accepted() {
    let env = env();
    let silent = NeverAccepts::bind();
    let h = with_limits(
        &env,
        "connect",
        guests::WELL_BEHAVED,
        "connect_timeout_ms = 500",
    );
    let endpoint = format!("http://{}", silent.addr());
    let started = Instant::now();
    let run = h.run_with(KEY, &["test", "--endpoint", &endpoint], &[]);
    let took = started.elapsed();
    run.fails(4, "ConnectionTimeout");
    assert!(!run.stderr.contains("call_timeout_ms"), "{}", run.stderr);
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(took >= Duration::from_millis(500), "took {took:?}");
    let rows = audit(&env);
    let http = http_rows(&rows);
    assert_eq!(http.len(), 1, "{http:?}");
    assert!(!http[0].denied(), "{http:?}");
    assert_eq!(http[0].status, None, "{http:?}");
    assert!(
        http[0]
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("ConnectionTimeout"),
        "{http:?}"
    );
    assert_eq!(env.sim.request_count(), 0);
}

/// A server that echoes the key in an error body: the connector quotes the body in its error
/// detail, and the host takes the key out before the detail is shown or stored.
#[test]
fn an_echoed_key_is_redacted_from_error_details() {
    let env = Env::new();
    let body = format!(
        r#"{{"errors":[{{"status":"404","title":"Not Found","detail":"no account for key {}"}}]}}"#,
        crate::util::US_KEY
    );
    env.sim.add_fault(FaultRule::always(Fault::Status {
        status: 404,
        retry_after: None,
        body,
    }));
    let run = env.run_key(
        crate::util::US_KEY,
        &["itglue", "test", "--endpoint", &env.endpoint()],
    );
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("<redacted>"), "{}", run.stderr);
    assert!(
        !run.stderr.contains(crate::util::US_KEY) && !run.stdout.contains(crate::util::US_KEY),
        "the echoed key was shown: {}",
        run.stderr
    );
    assert_eq!(
        env.sim.requests().len(),
        1,
        "a definite answer is not retried"
    );
}

/// An edited `connections.endpoint` makes the stored key undecryptable (it is bound to the
/// endpoint it was connected to): nothing is sent anywhere.
#[test]
fn an_edited_stored_endpoint_sends_the_key_nowhere() {
    let env = Env::new();
    env.connect();
    let other = Env::new();
    env.sqlite()
        .execute("UPDATE connections SET endpoint = ?1", [other.endpoint()])
        .expect("edit the endpoint");
    env.sim.clear_requests();
    let run = env.run(&["itglue", "test"]);
    run.fails(6, "cannot be decrypted");
    assert_eq!(
        other.sim.requests().len(),
        0,
        "the key went to the edited endpoint"
    );
    assert_eq!(env.sim.requests().len(), 0);
    let sync = env.run(&["itglue", "sync", "organizations"]);
    assert_eq!(sync.code, 6, "{}", sync.stderr);
    assert_eq!(other.sim.requests().len(), 0);
}

//! `match` gets no storage (so Scopable's records cannot reach a later call that has the
//! network), and the audit table stays bounded in time.

use crate::hostile::{
    Hostile, KEY, assert_audit_clean, assert_host_keeps_serving, assert_refused,
    assert_requests_clean, audit, env,
};
use itglue_sim::guests;

/// A client name that must never leave the host: no spaces or symbols, so it reads the same
/// percent-encoded or not.
const CANARY: &str = "ZyxwvExfilCanary7731";

/// Storage operations `match-exfil`'s `match` tries per call: one `get`, a `set` per client
/// (three clients), one `keys`.
const MATCH_STORAGE_TRIES: [&str; 5] = ["get", "set", "set", "set", "keys"];

/// `match` writes the client names it receives to storage, and the next `fetch-orgs` puts
/// what storage holds into a declared query parameter. Every storage call from `match` is
/// refused (`unavailable`, audited as `no-storage-in-match`) and fails the sync (exit 5,
/// nothing applied), so over two syncs the API never sees a client name and storage never
/// holds one.
#[test]
pub fn match_exfil() {
    let env = env();
    let h = Hostile::new(&env, "match-exfil", guests::MATCH_EXFIL);
    h.run_with(
        KEY,
        &[
            "connect",
            "--region",
            "us",
            "--endpoint",
            &env.sim.base_url(),
        ],
        &[],
    )
    .ok();
    env.import(
        &format!("id,name\nc1,{CANARY}\nc2,{CANARY}Two\nc3,Acme\n"),
        "id,client_id,name,hostname,serial_number,mac_address\n",
    );

    for _ in 0..2 {
        let run = h.run_with(KEY, &["sync", "organizations", "--json"], &[]);
        assert_refused(&run, 5, "no-storage-in-match");
        assert!(
            run.stderr.contains("`match` may not use storage"),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains(CANARY), "{}", run.stderr);
    }
    let status = h.run_with(KEY, &["status", "--json"], &[]).json();
    assert_eq!(status["organization"]["status"], "failed", "{status}");

    // The API was asked for organizations (once per sync) and never saw a client name.
    let requests = env.sim.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_requests_clean(&requests, KEY);
    for r in &requests {
        let seen = format!("{} {} {:?}", r.path, r.query, r.headers).to_lowercase();
        assert!(
            !seen.contains(&CANARY.to_lowercase()),
            "a client name reached the API: {r:?}"
        );
        assert!(
            !r.query.contains("filter"),
            "storage carried something: {r:?}"
        );
    }

    // Every storage call `match` made is on record as refused, with its rule.
    let rows = audit(&env);
    assert_audit_clean(&rows, &h, KEY);
    for row in &rows {
        assert!(!row.text().contains(CANARY), "{row:?}");
    }
    let refused: Vec<&str> = rows
        .iter()
        .filter(|r| r.capability == "storage" && r.denied())
        .map(|r| {
            assert_eq!(r.rule(), "no-storage-in-match", "{r:?}");
            r.method.as_str()
        })
        .collect();
    let expected: Vec<&str> = MATCH_STORAGE_TRIES.repeat(2);
    assert_eq!(refused, expected);
    // `fetch-orgs` keeps its storage (it found it empty).
    assert!(
        rows.iter()
            .any(|r| r.capability == "storage" && !r.denied() && r.method == "keys"),
        "{rows:?}"
    );

    // Nothing reached storage, and nothing was applied.
    let conn = env.sqlite();
    let kv: i64 = conn
        .query_row("SELECT count(*) FROM kv", [], |r| r.get(0))
        .expect("kv");
    assert_eq!(kv, 0);
    let links: i64 = conn
        .query_row("SELECT count(*) FROM links", [], |r| r.get(0))
        .expect("links");
    assert_eq!(links, 0);

    assert_host_keeps_serving(&env);
}

/// Audit rows older than `SCOPABLE_AUDIT_RETENTION_DAYS` are deleted when a command opens the
/// audit log; newer rows stay. An unusable setting is reported and deletes nothing.
#[test]
fn audit_rows_past_the_retention_are_deleted() {
    let env = env();
    let h = Hostile::new(&env, "well-behaved", guests::WELL_BEHAVED);
    let endpoint = env.sim.base_url();
    h.test().ok();
    let insert = |path: &str, age: &str| {
        env.sqlite()
            .execute(
                "INSERT INTO audit (account, at, connector, component_sha256, capability, method,
                                    host, path, decision)
                 VALUES ('default', strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?2), 'hostile', 'd0', 'http',
                         'GET', '127.0.0.1', ?1, 'allowed')",
                rusqlite::params![path, age],
            )
            .expect("insert");
    };
    insert("/ten-days-old", "-10 days");
    insert("/four-months-old", "-120 days");
    insert("/one-hour-old", "-1 hours");
    let paths = || -> Vec<String> { audit(&env).into_iter().map(|r| r.path).collect() };

    // An unusable setting: said so on stderr, and nothing is deleted.
    let run = h.run_with(
        KEY,
        &["test", "--endpoint", &endpoint],
        &[("SCOPABLE_AUDIT_RETENTION_DAYS", "a year")],
    );
    assert!(run.ok().contains("status=200"), "{}", run.stdout);
    assert!(
        run.stderr.contains("SCOPABLE_AUDIT_RETENTION_DAYS")
            && run.stderr.contains("no audit records were deleted"),
        "{}",
        run.stderr
    );
    assert_eq!(paths().len(), 5, "{:?}", paths());

    // The default keeps 90 days.
    h.test().ok();
    let kept = paths();
    assert!(!kept.iter().any(|p| p == "/four-months-old"), "{kept:?}");
    assert!(kept.iter().any(|p| p == "/ten-days-old"), "{kept:?}");

    // A week.
    let run = h.run_with(
        KEY,
        &["test", "--endpoint", &endpoint],
        &[("SCOPABLE_AUDIT_RETENTION_DAYS", "7")],
    );
    assert!(run.ok().contains("status=200"), "{}", run.stdout);
    let kept = paths();
    assert!(!kept.iter().any(|p| p == "/ten-days-old"), "{kept:?}");
    assert!(kept.iter().any(|p| p == "/one-hour-old"), "{kept:?}");
    // The rows of the four `test` runs, each one request, stay.
    assert_eq!(
        kept.iter().filter(|p| *p == "/organizations").count(),
        4,
        "{kept:?}"
    );
}

/// A `match` that keeps calling storage after its refusals is stopped at the limit: 16
/// refusals are audited one by one, the next one stops the call (it traps, so the guest's
/// remaining calls never happen) and one row sums it up.
#[test]
fn match_exfil_is_stopped_after_sixteen_refusals() {
    let env = env();
    let h = Hostile::new(&env, "match-exfil", guests::MATCH_EXFIL);
    h.run_with(KEY, &["connect", "--endpoint", &env.sim.base_url()], &[])
        .ok();
    let clients: String = (0..40).map(|i| format!("c{i},{CANARY}{i}\n")).collect();
    env.import(
        &format!("id,name\n{clients}"),
        "id,client_id,name,hostname,serial_number,mac_address\n",
    );
    let run = h.run_with(KEY, &["sync", "organizations", "--json"], &[]);
    assert_refused(&run, 5, "no-storage-in-match");

    let rows = audit(&env);
    assert_audit_clean(&rows, &h, KEY);
    let storage: Vec<_> = rows
        .iter()
        .filter(|r| r.capability == "storage" && r.denied())
        .collect();
    let methods: Vec<&str> = storage.iter().map(|r| r.method.as_str()).collect();
    // One `get`, then `set`s: the sixteenth refusal is the last recorded.
    let mut expected = vec!["get"];
    expected.extend(["set"; 15]);
    expected.push("");
    assert_eq!(methods, expected, "{storage:?}");
    let summary = storage.last().expect("a summary row");
    assert_eq!(summary.rule(), "max-denials", "{summary:?}");
    assert_eq!(
        summary.detail.as_deref(),
        Some("1 more denials not recorded: the call was stopped after 16"),
        "{summary:?}"
    );
    let kv: i64 = env
        .sqlite()
        .query_row("SELECT count(*) FROM kv", [], |r| r.get(0))
        .expect("kv");
    assert_eq!(kv, 0);
    assert!(
        env.sim
            .requests()
            .iter()
            .all(|r| !r.query.contains("filter")),
        "{:?}",
        env.sim.requests()
    );
}

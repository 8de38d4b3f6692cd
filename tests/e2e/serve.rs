//! The runtime over HTTP: the guide's flow through the API, accounts kept apart, roles, the
//! feature flag, sessions and their header, bad bodies, concurrent syncs, paging, health,
//! and the key never shown.

use crate::serve_util::{Server, account, cli, connect, connected, import_sample, token};
use crate::util::{Env, US_KEY};
use serde_json::{Value, json};

const ITGLUE: &str = "/api/v1/integrations/itglue";

#[test]
fn the_guide_flow_through_the_api() {
    let env = Env::new();
    let (admin, _) = account(&env, "acme");
    let server = Server::start(&env, &[]);
    import_sample(&server, &admin);
    // A wrong key: "That key didn't work", with the guide's hints, and nothing stored.
    let wrong = server
        .json(
            "POST",
            &format!("{ITGLUE}/test"),
            &admin,
            &json!({"region": "us", "api_key": "not-the-key", "endpoint": null}),
        )
        .expect(422);
    let error = &wrong.json()["error"];
    assert_eq!(error["code"], "key-rejected");
    assert_eq!(error["message"], "That key didn't work");
    let hints = error["hints"].to_string();
    assert!(hints.contains("trailing spaces"), "{hints}");
    assert!(hints.contains("90 days"), "{hints}");
    let refused = server
        .json(
            "POST",
            &format!("{ITGLUE}/connect"),
            &admin,
            &json!({"region": "us", "api_key": "not-the-key", "endpoint": null}),
        )
        .expect(422);
    assert_eq!(refused.code(), "key-rejected");
    let status = server.get(ITGLUE, &admin).expect(200).json();
    assert_eq!(status["connected"], false, "{status}");
    // The right key: verified, then connected.
    let tested = server
        .json(
            "POST",
            &format!("{ITGLUE}/test"),
            &admin,
            &json!({"region": "us", "api_key": US_KEY, "endpoint": null}),
        )
        .expect(200)
        .json();
    assert_eq!(tested["verified"], true);
    assert_eq!(tested["total_organizations"], 33);
    let connected = server
        .json(
            "POST",
            &format!("{ITGLUE}/connect"),
            &admin,
            &json!({"region": "us", "api_key": US_KEY, "endpoint": null}),
        )
        .expect(200)
        .json();
    assert_eq!(connected["connected"], true);
    assert_eq!(connected["region"], "us");
    // Sync organizations, then configurations: counts as the command line counts them.
    let organizations = server.sync(&admin, "organization");
    assert_eq!(organizations["status"], "ok", "{organizations}");
    assert_eq!(organizations["fetched"], 33);
    assert_eq!(organizations["linked"], 20);
    assert!(
        organizations["progress"]["pages_done"]
            .as_u64()
            .unwrap_or(0)
            >= 1
    );
    let configurations = server.sync(&admin, "configuration");
    assert_eq!(configurations["status"], "ok", "{configurations}");
    assert_eq!(configurations["fetched"], 35);
    let status = server.get(ITGLUE, &admin).expect(200).json();
    assert_eq!(status["organization"]["linked"], 20, "{status}");
    assert_eq!(status["configuration"]["status"], "ok", "{status}");
    // The couldn't-place list, in plain words and by name.
    let unplaced = server
        .get(&format!("{ITGLUE}/unplaced?kind=organization"), &admin)
        .expect(200)
        .json();
    let adventure = unplaced
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["source_id"] == "3100109")
        .cloned()
        .expect("Adventure Works is unplaced");
    assert_eq!(adventure["reason_label"], "matches multiple clients");
    assert_eq!(
        adventure["candidate_names"],
        json!(["Adventure Works", "Adventure-Works"])
    );
    assert_eq!(adventure["itglue_id"], "3100109");
    // Link it by hand, found with the search.
    let found = server
        .get("/api/v1/clients?q=adventure", &admin)
        .expect(200)
        .json();
    let client = found[0]["id"].as_str().expect("a client").to_string();
    let decided = server
        .json(
            "PUT",
            &format!("{ITGLUE}/decisions/organization/3100109"),
            &admin,
            &json!({"link": client, "take": false}),
        )
        .expect(200)
        .json();
    assert_eq!(decided["scopable_id"], json!(client));
    let unplaced = server
        .get(&format!("{ITGLUE}/unplaced?kind=organization"), &admin)
        .expect(200)
        .json();
    assert!(
        !unplaced
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["source_id"] == "3100109"),
        "{unplaced}"
    );
    let links = server
        .get(&format!("{ITGLUE}/links"), &admin)
        .expect(200)
        .json();
    let manual = links
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["source_id"] == "3100109")
        .expect("the manual link");
    assert_eq!(manual["source"], "manual");
    // Every change names its actor.
    let activity = server
        .get(&format!("{ITGLUE}/activity?limit=50"), &admin)
        .expect(200)
        .json();
    let token_id = admin.split('_').take(3).collect::<Vec<_>>()[1..].join("_");
    let decision = activity
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "decision")
        .expect("the decision in activity");
    assert_eq!(decision["actor"], json!(format!("token:{token_id}")));
    assert_eq!(decision["action"], "link");
    // Ignore and reset go the same way.
    server
        .json(
            "PUT",
            &format!("{ITGLUE}/decisions/organization/3100112"),
            &admin,
            &json!({"ignore": true}),
        )
        .expect(200);
    let ignored = server
        .get(&format!("{ITGLUE}/ignored"), &admin)
        .expect(200)
        .json();
    assert!(
        ignored
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["source_id"] == "3100112")
    );
    server
        .delete(&format!("{ITGLUE}/decisions/organization/3100112"), &admin)
        .expect(204);
    // Disconnect: the key is gone, links stay.
    server
        .delete(&format!("{ITGLUE}/connection"), &admin)
        .expect(204);
    let status = server.get(ITGLUE, &admin).expect(200).json();
    assert_eq!(status["connected"], false);
    let links_after = server
        .get(&format!("{ITGLUE}/links"), &admin)
        .expect(200)
        .json();
    assert_eq!(
        links_after.as_array().unwrap().len(),
        links.as_array().unwrap().len()
    );
    // The key appears in no answer and no log line.
    assert!(!server.logs().contains(US_KEY), "the key is in the logs");
    for path in [
        ITGLUE.to_string(),
        format!("{ITGLUE}/activity?limit=1000"),
        "/".into(),
        "/assets/app.js".into(),
        "/metrics".into(),
    ] {
        let answer = server.get(&path, &admin);
        assert!(!answer.body.contains(US_KEY), "the key is in {path}");
        assert!(answer.headers.iter().all(|(_, v)| !v.contains(US_KEY)));
    }
    assert!(!server.logs().contains(&admin), "a token is in the logs");
}

#[test]
fn two_accounts_on_one_server_share_nothing() {
    let env = Env::new();
    let (a, _) = account(&env, "alpha");
    let (b, _) = account(&env, "bravo");
    let server = Server::start(&env, &[]);
    import_sample(&server, &a);
    connect(&server, &a);
    let run = server.sync(&a, "organization");
    assert_eq!(run["status"], "ok");
    let run_id = run["id"].as_i64().unwrap();
    // Bravo sees none of it, through every door.
    let status = server.get(ITGLUE, &b).expect(200).json();
    assert_eq!(status["connected"], false, "{status}");
    assert_eq!(status["organization"], Value::Null);
    server
        .get(&format!("{ITGLUE}/syncs/{run_id}"), &b)
        .expect(404);
    for list in ["links", "unplaced", "ignored"] {
        let items = server
            .get(&format!("{ITGLUE}/{list}"), &b)
            .expect(200)
            .json();
        assert_eq!(items, json!([]), "{list}");
    }
    // Bravo's activity is bravo's own: its account and tokens being made, nothing of alpha's.
    let activity = server
        .get(&format!("{ITGLUE}/activity"), &b)
        .expect(200)
        .json();
    for entry in activity.as_array().unwrap() {
        assert_eq!(entry["kind"], "event", "{entry}");
        assert!(!entry.to_string().contains("alpha"), "{entry}");
    }
    assert_eq!(
        server.get("/api/v1/clients?q=acme", &b).expect(200).json(),
        json!([])
    );
    let decided = server.json(
        "PUT",
        &format!("{ITGLUE}/decisions/organization/3100109"),
        &b,
        &json!({"ignore": true}),
    );
    assert_eq!(decided.status, 404, "{}", decided.body);
    // Bravo cannot sync with alpha's key: it has none.
    let queued = server.json(
        "POST",
        &format!("{ITGLUE}/syncs"),
        &b,
        &json!({"kind": "organization"}),
    );
    assert_eq!(queued.status, 202);
    let run = server.wait_for_run(&b, queued.json()["id"].as_i64().unwrap());
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["error"]
            .as_str()
            .unwrap_or("")
            .contains("not connected"),
        "{run}"
    );
    // Alpha's data is untouched by all of this.
    let links = server
        .get(&format!("{ITGLUE}/links"), &a)
        .expect(200)
        .json();
    assert_eq!(links.as_array().unwrap().len(), 20);
    assert_eq!(server.get(ITGLUE, &a).expect(200).json()["connected"], true);
}

#[test]
fn viewers_read_and_nothing_else_and_no_credentials_is_401() {
    let env = Env::new();
    let (admin, viewer) = account(&env, "acme");
    let server = Server::start(&env, &[]);
    import_sample(&server, &admin);
    connect(&server, &admin);
    server.sync(&admin, "organization");
    for path in ["", "/links", "/unplaced", "/ignored", "/activity"] {
        server.get(&format!("{ITGLUE}{path}"), &viewer).expect(200);
    }
    server.get("/api/v1/clients?q=acme", &viewer).expect(200);
    let key = json!({"region": "us", "api_key": US_KEY, "endpoint": null});
    for (method, path, body) in [
        ("POST", format!("{ITGLUE}/test"), key.clone()),
        ("POST", format!("{ITGLUE}/connect"), key.clone()),
        (
            "POST",
            format!("{ITGLUE}/syncs"),
            json!({"kind": "organization"}),
        ),
        (
            "PUT",
            format!("{ITGLUE}/decisions/organization/3100109"),
            json!({"ignore": true}),
        ),
        ("PUT", format!("{ITGLUE}/schedule"), json!({"every": "6h"})),
    ] {
        let answer = server.json(method, &path, &viewer, &body);
        assert_eq!(answer.status, 403, "{method} {path}: {}", answer.body);
        assert_eq!(answer.code(), "forbidden");
    }
    for (method, path) in [
        ("DELETE", format!("{ITGLUE}/connection")),
        ("DELETE", format!("{ITGLUE}/decisions/organization/3100109")),
    ] {
        let answer = server.send(method, &path, Some(&viewer), &[], None);
        assert_eq!(answer.status, 403, "{method} {path}");
    }
    let csv = server.send(
        "POST",
        "/api/v1/clients",
        Some(&viewer),
        &[],
        Some(("text/csv", b"id,name\n1,x\n".to_vec())),
    );
    assert_eq!(csv.status, 403);
    // Still connected: nothing a viewer asked for happened.
    assert_eq!(
        server.get(ITGLUE, &admin).expect(200).json()["connected"],
        true
    );
    // No credentials, a made-up token, a revoked token.
    let none = server.send("GET", ITGLUE, None, &[], None);
    assert_eq!(none.status, 401);
    assert_eq!(none.code(), "unauthenticated");
    server
        .get(ITGLUE, "scopable_tok_000000000000_00")
        .expect(401);
    let tokens = cli(&env, &["accounts", "tokens", "acme", "--json"]).json();
    let viewer_id = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["role"] == "viewer")
        .unwrap()["token_id"]
        .as_str()
        .unwrap()
        .to_string();
    cli(&env, &["accounts", "revoke", &viewer_id]).ok();
    server.get(ITGLUE, &viewer).expect(401);
}

#[test]
fn an_account_without_the_feature_is_told_so() {
    let env = Env::new();
    cli(&env, &["accounts", "add", "late"]).ok();
    let admin = token(&env, "late", "admin");
    let server = Server::start(&env, &[]);
    for path in ["", "/links", "/unplaced", "/activity"] {
        let answer = server.get(&format!("{ITGLUE}{path}"), &admin).expect(403);
        assert_eq!(answer.code(), "not-available");
        assert_eq!(
            answer.json()["error"]["message"],
            "The IT Glue integration is not available for your account"
        );
    }
    let queued = server.json(
        "POST",
        &format!("{ITGLUE}/syncs"),
        &admin,
        &json!({"kind": "organization"}),
    );
    assert_eq!(queued.status, 403);
    cli(&env, &["accounts", "enable", "late", "itglue"]).ok();
    server.get(ITGLUE, &admin).expect(200);
    cli(&env, &["accounts", "disable", "late", "itglue"]).ok();
    server.get(ITGLUE, &admin).expect(403);
}

#[test]
fn the_session_cookie_needs_the_header_and_is_strict() {
    let env = Env::new();
    let (admin, _) = account(&env, "acme");
    let server = Server::start(&env, &[]);
    let signed = server.json("POST", "/api/v1/session", "", &json!({"token": admin}));
    // (The empty bearer is ignored by the sign-in route.)
    let signed = if signed.status == 204 {
        signed
    } else {
        server
            .send(
                "POST",
                "/api/v1/session",
                None,
                &[],
                Some((
                    "application/json",
                    json!({"token": admin}).to_string().into_bytes(),
                )),
            )
            .expect(204)
    };
    let cookie = signed.header("set-cookie").expect("a cookie").to_string();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains("Secure"), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_string();
    let without = server.send("GET", ITGLUE, None, &[("Cookie", &pair)], None);
    assert_eq!(without.status, 403);
    assert_eq!(without.code(), "missing-header");
    let posted = server.send(
        "POST",
        &format!("{ITGLUE}/syncs"),
        None,
        &[("Cookie", &pair)],
        Some(("application/json", br#"{"kind":"organization"}"#.to_vec())),
    );
    assert_eq!(posted.status, 403, "a cross-site form post is refused");
    let with = server.send(
        "GET",
        ITGLUE,
        None,
        &[("Cookie", &pair), ("X-Requested-With", "scopable")],
        None,
    );
    assert_eq!(with.status, 200, "{}", with.body);
    let me = server
        .send(
            "GET",
            "/api/v1/session",
            None,
            &[("Cookie", &pair), ("X-Requested-With", "scopable")],
            None,
        )
        .expect(200)
        .json();
    assert_eq!(me["account"], "acme");
    assert_eq!(me["role"], "admin");
    // A form on another origin can neither sign in nor sign out.
    let form = server.send(
        "POST",
        "/api/v1/session",
        None,
        &[],
        Some((
            "application/x-www-form-urlencoded",
            format!("token={admin}").into_bytes(),
        )),
    );
    assert_eq!(form.status, 415, "{}", form.body);
    let sign_out = server.send(
        "DELETE",
        "/api/v1/session",
        None,
        &[("Cookie", &pair)],
        None,
    );
    assert_eq!(sign_out.status, 403);
    assert_eq!(sign_out.code(), "missing-header");
    // Signing out ends the session.
    server
        .send(
            "DELETE",
            "/api/v1/session",
            None,
            &[("Cookie", &pair), ("X-Requested-With", "scopable")],
            None,
        )
        .expect(204);
    let after = server.send(
        "GET",
        ITGLUE,
        None,
        &[("Cookie", &pair), ("X-Requested-With", "scopable")],
        None,
    );
    assert_eq!(after.status, 401);
    drop(server);
    // Behind https, the cookie is Secure.
    let server = Server::start(&env, &["--public-url", "https://scopable.example"]);
    let signed = server
        .send(
            "POST",
            "/api/v1/session",
            None,
            &[],
            Some((
                "application/json",
                json!({"token": admin}).to_string().into_bytes(),
            )),
        )
        .expect(204);
    let cookie = signed.header("set-cookie").unwrap().to_string();
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(
        cookie.starts_with("__Host-scopable_session="),
        "a sibling subdomain cannot plant it: {cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    server
        .send(
            "GET",
            ITGLUE,
            None,
            &[("Cookie", &pair), ("X-Requested-With", "scopable")],
            None,
        )
        .expect(200);
    // The plain name is not the session there.
    let planted = pair.replacen("__Host-scopable_session", "scopable_session", 1);
    let answer = server.send(
        "GET",
        ITGLUE,
        None,
        &[("Cookie", &planted), ("X-Requested-With", "scopable")],
        None,
    );
    assert_eq!(answer.status, 401);
}

#[test]
fn bad_bodies_and_paths_are_refused_in_the_error_shape() {
    let env = Env::new();
    let (admin, _) = account(&env, "acme");
    let server = Server::start(&env, &[]);
    let send = |method: &str, path: &str, body: &str| {
        server.send(
            method,
            path,
            Some(&admin),
            &[],
            Some(("application/json", body.as_bytes().to_vec())),
        )
    };
    let syncs = format!("{ITGLUE}/syncs");
    for (body, status) in [
        ("{", 422),
        ("[]", 422),
        (r#"{"kind": "passwords"}"#, 422),
        (r#"{"kind": "organization", "extra": 1}"#, 422),
    ] {
        let answer = send("POST", &syncs, body);
        assert_eq!(answer.status, status, "{body}: {}", answer.body);
        assert!(
            answer.json()["error"]["message"].is_string(),
            "{}",
            answer.body
        );
    }
    let empty = send("POST", &syncs, "");
    assert_eq!(empty.status, 400);
    let huge = format!(
        r#"{{"kind": "organization", "pad": "{}"}}"#,
        "x".repeat(200_000)
    );
    let too_large = send("POST", &syncs, &huge);
    assert_eq!(too_large.status, 413);
    assert_eq!(
        too_large.code(),
        "too-large",
        "every failure has the error shape"
    );
    // Its body was not read to the end: the connection is not offered for another request.
    assert_eq!(too_large.header("connection"), Some("close"));
    let wrong_method = server.send("PATCH", ITGLUE, Some(&admin), &[], None);
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.code(), "method-not-allowed");
    let bad_query = server.get(&format!("{ITGLUE}/links?limit=many"), &admin);
    assert_eq!(bad_query.status, 400);
    assert_eq!(bad_query.code(), "bad-request");
    // A tenant cannot point the host anywhere but the operator's endpoint.
    let elsewhere = send(
        "POST",
        &format!("{ITGLUE}/test"),
        &json!({"region": "us", "api_key": US_KEY, "endpoint": "http://127.0.0.1:9"}).to_string(),
    );
    assert_eq!(elsewhere.status, 422);
    assert_eq!(elsewhere.code(), "endpoint-not-allowed");
    let region = send(
        "POST",
        &format!("{ITGLUE}/test"),
        &json!({"region": "mars", "api_key": US_KEY}).to_string(),
    );
    assert_eq!(region.status, 422);
    assert_eq!(
        server.get(&format!("{ITGLUE}/syncs/999"), &admin).status,
        404
    );
    assert_eq!(server.get("/api/v1/integrations/other", &admin).status, 404);
    let bad_csv = server.send(
        "POST",
        "/api/v1/clients",
        Some(&admin),
        &[],
        Some(("text/csv", b"id,name\n1,Good\n1,\"unclosed\n".to_vec())),
    );
    assert_eq!(bad_csv.status, 422, "{}", bad_csv.body);
    assert!(
        bad_csv.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line"),
        "{}",
        bad_csv.body
    );
    assert_eq!(
        server
            .get("/api/v1/clients?q=good", &admin)
            .expect(200)
            .json(),
        json!([])
    );
    let schedule = send("PUT", &format!("{ITGLUE}/schedule"), r#"{"every": "5s"}"#);
    assert_eq!(schedule.status, 422);
    let schedule = send("PUT", &format!("{ITGLUE}/schedule"), r#"{"every": "6h"}"#);
    assert_eq!(schedule.status, 200);
    assert_eq!(schedule.json()["every"], "6h");
}

#[test]
fn concurrent_sync_requests_queue_one_run() {
    // Slow answers: the first run is still queued or running when the last request arrives
    // (a sync of the sample that ended between two requests would rightly let a second one
    // queue).
    let env = Env::with(itglue_sim::SimConfig {
        latency: std::time::Duration::from_secs(2),
        ..itglue_sim::SimConfig::default()
    });
    let (server, admin) = connected(&env, &[]);
    let answers: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    server
                        .json(
                            "POST",
                            &format!("{ITGLUE}/syncs"),
                            &admin,
                            &json!({"kind": "organization"}),
                        )
                        .status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        answers.iter().filter(|s| **s == 202).count(),
        1,
        "{answers:?}"
    );
    assert_eq!(
        answers.iter().filter(|s| **s == 409).count(),
        5,
        "{answers:?}"
    );
}

#[test]
fn lists_are_paged_with_a_next_link() {
    let env = Env::new();
    let (server, admin) = connected(&env, &[]);
    server.sync(&admin, "organization");
    let mut seen = Vec::new();
    let mut path = format!("{ITGLUE}/links?limit=7");
    loop {
        let answer = server.get(&path, &admin).expect(200);
        let page = answer.json();
        assert!(page.as_array().unwrap().len() <= 7);
        seen.extend(
            page.as_array()
                .unwrap()
                .iter()
                .map(|l| l["source_id"].clone()),
        );
        match answer.header("link") {
            Some(link) => {
                assert!(link.ends_with("rel=\"next\""), "{link}");
                path = link[1..link.find('>').unwrap()].to_string();
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 20);
    let all = server
        .get(&format!("{ITGLUE}/links"), &admin)
        .expect(200)
        .json();
    let all: Vec<Value> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["source_id"].clone())
        .collect();
    assert_eq!(seen, all);
    assert_eq!(
        server
            .get(&format!("{ITGLUE}/links?limit=0"), &admin)
            .status,
        400
    );
    assert_eq!(
        server
            .get(&format!("{ITGLUE}/links?limit=10001"), &admin)
            .status,
        400
    );
}

#[test]
fn health_readiness_and_metrics() {
    let env = Env::new();
    let (admin, _) = account(&env, "acme");
    let server = Server::start(&env, &[]);
    // Every answer, the page's and the API's, carries the security headers.
    for path in ["/", "/assets/app.js", ITGLUE] {
        let answer = server.send("GET", path, Some(&admin), &[], None);
        let csp = answer.header("content-security-policy").unwrap_or("");
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(answer.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(
            answer.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(
            answer.header("referrer-policy"),
            Some("no-referrer"),
            "{path}"
        );
        // The API's answers, and only they, must never be stored by a cache.
        let no_store = answer.header("cache-control") == Some("no-store");
        assert_eq!(no_store, path.starts_with("/api/"), "{path}");
    }
    let health = server.send("GET", "/healthz", None, &[], None).expect(200);
    assert_eq!(health.body.trim(), "ok");
    server.send("GET", "/readyz", None, &[], None).expect(200);
    import_sample(&server, &admin);
    connect(&server, &admin);
    server.sync(&admin, "organization");
    let metrics = server
        .send("GET", "/metrics", None, &[], None)
        .expect(200)
        .body;
    assert!(metrics.contains("scopable_sync_runs_total"), "{metrics}");
    assert!(metrics.contains("status=\"ok\""), "{metrics}");
    assert!(
        metrics.contains("scopable_outbound_requests_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("scopable_outbound_connections_total{connector=\"itglue\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("scopable_sync_queue_depth"), "{metrics}");
}

#[test]
fn sigterm_lets_a_running_sync_finish() {
    let env = Env::with(itglue_sim::SimConfig {
        latency: std::time::Duration::from_millis(1500),
        ..Default::default()
    });
    let (server, admin) = connected(&env, &[]);
    let queued = server
        .json(
            "POST",
            &format!("{ITGLUE}/syncs"),
            &admin,
            &json!({"kind": "organization"}),
        )
        .expect(202)
        .json();
    let id = queued["id"].as_i64().unwrap();
    // Wait until a worker holds it, then stop the server.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let run = server.get(&format!("{ITGLUE}/syncs/{id}"), &admin).json();
        if run["status"] == "running" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{run}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let code = server.stop();
    assert_eq!(code, Some(0));
    let status = cli(&env, &["--account", "acme", "itglue", "status", "--json"]).json();
    assert_eq!(status["organization"]["status"], "ok", "{status}");
    assert_eq!(status["organization"]["linked"], 20, "{status}");
}

#[test]
fn the_api_is_rate_limited_per_token_with_retry_after() {
    let env = Env::new();
    let (admin, viewer) = account(&env, "acme");
    let server = Server::start(&env, &["--requests-per-second", "1"]);
    let answers: Vec<crate::serve_util::Answer> =
        (0..8).map(|_| server.get(ITGLUE, &admin)).collect();
    let limited = answers
        .iter()
        .find(|a| a.status == 429)
        .expect("a burst past the limit is refused");
    assert_eq!(limited.code(), "rate-limited");
    assert_eq!(limited.header("retry-after"), Some("1"));
    assert!(answers[0].status == 200, "{}", answers[0].body);
    // The allowance comes back with time.
    std::thread::sleep(std::time::Duration::from_secs(3));
    server.get(ITGLUE, &viewer).expect(200);
}

#[test]
fn a_due_schedule_syncs_organizations_then_configurations_once() {
    let env = Env::new();
    let (server, admin) = connected(&env, &[]);
    let set = server
        .json(
            "PUT",
            &format!("{ITGLUE}/schedule"),
            &admin,
            &json!({"every": "6h"}),
        )
        .expect(200)
        .json();
    assert_eq!(set["every"], "6h");
    let status = server.get(ITGLUE, &admin).expect(200).json();
    assert_eq!(status["schedule"]["every"], "6h", "{status}");
    // Make it due now (as six hours passing would).
    env.sqlite()
        .execute(
            "UPDATE schedules SET next_at_ms = 0 WHERE account = 'acme'",
            [],
        )
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let runs = loop {
        let runs: Vec<(String, String, Option<String>)> = env
            .sqlite()
            .prepare("SELECT kind, status, actor FROM sync_runs WHERE account = 'acme' ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        if runs.len() == 2 && runs.iter().all(|(_, s, _)| s == "ok") {
            break runs;
        }
        assert!(std::time::Instant::now() < deadline, "{runs:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(runs[0].0, "organization");
    assert_eq!(runs[1].0, "configuration");
    assert!(
        runs.iter()
            .all(|(_, _, actor)| actor.as_deref() == Some("schedule")),
        "{runs:?}"
    );
    // Fired once: the next time is ahead, and nothing else was queued.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let count: i64 = env
        .sqlite()
        .query_row(
            "SELECT count(*) FROM sync_runs WHERE account = 'acme'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(count, 2);
    let next: i64 = env
        .sqlite()
        .query_row(
            "SELECT next_at_ms FROM schedules WHERE account = 'acme'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        next > now && next <= now + 6 * 3600 * 1000,
        "the next firing is within the next period"
    );
}

#[test]
fn an_upload_over_the_limit_is_refused_and_nothing_is_imported() {
    let env = Env::new();
    let (admin, _) = account(&env, "acme");
    let server = Server::start(&env, &[]);
    // 33 MiB of rows, past the 32 MiB bound of an upload.
    let mut csv = String::from("id,name\n");
    let row = format!("c,{}\n", "x".repeat(1000));
    while csv.len() <= 33 * 1024 * 1024 {
        csv.push_str(&row);
    }
    let answer = server.send(
        "POST",
        "/api/v1/clients",
        Some(&admin),
        &[],
        Some(("text/csv", csv.into_bytes())),
    );
    assert_eq!(
        answer.status,
        413,
        "{}",
        &answer.body[..answer.body.len().min(300)]
    );
    assert_eq!(answer.code(), "too-large");
    let found = server.get("/api/v1/clients?q=c", &admin).expect(200).json();
    assert_eq!(found, json!([]));
}

#[test]
fn queued_runs_are_taken_in_turn_and_a_lost_feature_runs_nothing() {
    let env = Env::with(itglue_sim::SimConfig {
        latency: std::time::Duration::from_millis(700),
        ..Default::default()
    });
    let (a, _) = account(&env, "alpha");
    let (b, _) = account(&env, "bravo");
    let server = Server::start(&env, &["--workers", "1"]);
    for token in [&a, &b] {
        import_sample(&server, token);
        connect(&server, token);
    }
    let post = |token: &str, kind: &str| {
        server
            .json(
                "POST",
                &format!("{ITGLUE}/syncs"),
                token,
                &json!({"kind": kind}),
            )
            .expect(202)
            .json()["id"]
            .as_i64()
            .unwrap()
    };
    // One worker: alpha's organizations run first; bravo's run and alpha's configurations wait
    // in the order they were asked for.
    let a_org = post(&a, "organization");
    let b_org = post(&b, "organization");
    let a_conf = post(&a, "configuration");
    cli(&env, &["accounts", "disable", "bravo", "itglue"]).ok();
    let a_org = server.wait_for_run(&a, a_org);
    let a_conf = server.wait_for_run(&a, a_conf);
    assert_eq!(a_org["status"], "ok", "{a_org}");
    assert_eq!(a_conf["status"], "ok", "{a_conf}");
    let (b_status, b_error, b_finished): (String, Option<String>, Option<String>) = env
        .sqlite()
        .query_row(
            "SELECT status, error, finished_at FROM sync_runs WHERE account = 'bravo' AND id = ?1",
            [b_org],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(b_status, "failed");
    assert_eq!(
        b_error.as_deref(),
        Some("The IT Glue integration is not available for your account")
    );
    // Bravo's request was answered before alpha's later one started: no account waits on
    // another's queue.
    assert!(
        b_finished.as_deref().unwrap() <= a_conf["started_at"].as_str().unwrap(),
        "bravo {b_finished:?}, alpha's configurations {a_conf}"
    );
    let requests = env.sim.requests();
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.path == "/organizations")
            .count(),
        // alpha's and bravo's tests and connects, and alpha's sync: bravo's queued run sent
        // nothing.
        5,
        "{:?}",
        requests.iter().map(|r| r.path.clone()).collect::<Vec<_>>()
    );
}

//! Tests that start the simulator and talk to it over TCP with a minimal client.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::*;

const US: &str = "sim-key-us";
const EU: &str = "sim-key-eu";

/// A response as read off the wire.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

fn parse_reply(raw: &[u8]) -> Reply {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of head");
    let head = std::str::from_utf8(&raw[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.to_string(), v.trim().to_string())
        })
        .collect();
    Reply {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    }
}

fn connect(sim: &Simulator) -> TcpStream {
    let s = TcpStream::connect(sim.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Sends raw bytes and reads until the server closes.
fn send_raw(sim: &Simulator, raw: &[u8]) -> Vec<u8> {
    let mut s = connect(sim);
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

fn request(sim: &Simulator, method: &str, target: &str, key: Option<&str>) -> Reply {
    let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: {}\r\n", sim.addr());
    if let Some(k) = key {
        raw.push_str(&format!("x-api-key: {k}\r\n"));
    }
    raw.push_str("\r\n");
    parse_reply(&send_raw(sim, raw.as_bytes()))
}

fn get(sim: &Simulator, target: &str) -> Reply {
    request(sim, "GET", target, Some(US))
}

fn start() -> Simulator {
    Simulator::start(SimConfig::default()).unwrap()
}

fn ids(doc: &Value) -> Vec<String> {
    doc["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn paging_meta_links_and_last_page() {
    let sim = start();
    let total = sample_dataset().organizations.len() as u64;
    let pages = total.div_ceil(10);

    let first = get(&sim, "/organizations?page[size]=10&page[number]=1&sort=id");
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("content-type"),
        Some("application/vnd.api+json")
    );
    assert_eq!(first.header("connection"), Some("close"));
    assert_eq!(
        first.header("content-length"),
        Some(first.body.len().to_string().as_str())
    );
    let doc = first.json();
    assert_eq!(doc["data"].as_array().unwrap().len(), 10);
    assert_eq!(doc["meta"]["current-page"], 1);
    assert_eq!(doc["meta"]["next-page"], 2);
    assert_eq!(doc["meta"]["prev-page"], Value::Null);
    assert_eq!(doc["meta"]["total-pages"], pages);
    assert_eq!(doc["meta"]["total-count"], total);
    let next = doc["links"]["next"].as_str().unwrap();
    assert!(next.starts_with(&sim.base_url()), "{next}");
    assert!(
        next.contains("sort=id") && next.contains("page%5Bnumber%5D=2"),
        "{next}"
    );

    let last = get(
        &sim,
        &format!("/organizations?page[size]=10&page[number]={pages}"),
    )
    .json();
    assert_eq!(last["meta"]["next-page"], Value::Null);
    assert_eq!(last["meta"]["prev-page"], pages - 1);
    assert_eq!(
        last["data"].as_array().unwrap().len() as u64,
        total - 10 * (pages - 1)
    );
    assert!(last["links"].get("next").is_none());

    let beyond = get(
        &sim,
        &format!("/organizations?page[size]=10&page[number]={}", pages + 1),
    );
    let beyond = beyond.json();
    assert_eq!(beyond["data"], Value::Array(vec![]));
    assert_eq!(beyond["meta"]["next-page"], Value::Null);
    assert_eq!(beyond["meta"]["total-count"], total);

    // Pages are disjoint and, together, the whole listing in id order.
    let mut all = Vec::new();
    for n in 1..=pages {
        all.extend(ids(&get(
            &sim,
            &format!("/organizations?page[size]=10&page[number]={n}"),
        )
        .json()));
    }
    let mut expected: Vec<u64> = sample_dataset()
        .organizations
        .iter()
        .map(|o| o.id)
        .collect();
    expected.sort();
    let expected: Vec<String> = expected.iter().map(u64::to_string).collect();
    assert_eq!(all, expected);
}

#[test]
fn page_size_default_clamp_and_encoded_keys() {
    let sim = Simulator::start(SimConfig::with_dataset(generated_dataset(3, 400))).unwrap();
    let default = get(&sim, "/configurations").json();
    assert_eq!(default["data"].as_array().unwrap().len(), 50);
    assert_eq!(default["meta"]["total-pages"], 24);

    let clamped = get(&sim, "/configurations?page%5Bsize%5D=5000").json();
    assert_eq!(clamped["data"].as_array().unwrap().len(), 1000);
    assert_eq!(clamped["meta"]["total-pages"], 2);
    assert_eq!(clamped["meta"]["total-count"], 1200);

    let second = get(
        &sim,
        "/configurations?page%5Bsize%5D=1000&page%5Bnumber%5D=2",
    )
    .json();
    assert_eq!(second["data"].as_array().unwrap().len(), 200);
    assert_eq!(second["meta"]["next-page"], Value::Null);

    assert_eq!(get(&sim, "/configurations?page[size]=0").status, 400);
    assert_eq!(get(&sim, "/configurations?page[number]=0").status, 400);
    assert_eq!(get(&sim, "/configurations?page[size]=ten").status, 400);
}

#[test]
fn filters_and_sort() {
    let sim = start();
    let tyrell = get(
        &sim,
        "/configurations?filter[organization_id]=3100101&page[size]=1000",
    )
    .json();
    let data = tyrell["data"].as_array().unwrap();
    assert!(data.len() > 20);
    assert!(
        data.iter()
            .all(|c| c["attributes"]["organization-id"] == 3_100_101)
    );
    assert_eq!(tyrell["meta"]["filters"]["organization_id"], "3100101");

    let archived = get(&sim, "/configurations?filter%5Barchived%5D=true").json();
    assert_eq!(ids(&archived), vec!["8200113"]);
    let active = get(&sim, "/configurations?filter[archived]=0&page[size]=1000").json();
    assert_eq!(
        active["meta"]["total-count"].as_u64().unwrap() + 1,
        sample_dataset().configurations.len() as u64
    );
    assert_eq!(
        get(&sim, "/configurations?filter[archived]=maybe").status,
        400
    );

    let two = get(&sim, "/organizations?filter[id]=3100102,3100101").json();
    assert_eq!(ids(&two), vec!["3100101", "3100102"]);
    let one = get(&sim, "/configurations?filter[id]=8200105").json();
    assert_eq!(ids(&one), vec!["8200105"]);

    let desc = get(&sim, "/organizations?sort=-id&page[size]=2").json();
    assert_eq!(ids(&desc), vec!["3100133", "3100132"]);
    let by_name = get(&sim, "/organizations?filter[name]=Acme%5C%2C+Inc.").json();
    assert_eq!(ids(&by_name), vec!["3100102"]);
}

#[test]
fn record_shapes_follow_it_glue() {
    let sim = start();
    let org = get(&sim, "/organizations/3100129").json();
    assert_eq!(org["data"]["id"], "3100129");
    assert_eq!(org["data"]["type"], "organizations");
    let a = &org["data"]["attributes"];
    assert_eq!(a["name"], "Relecloud");
    assert_eq!(a["parent-id"], 3_100_125);
    assert_eq!(a["organization-type-name"], "Customer");
    assert_eq!(a["primary"], false);
    assert!(a["updated-at"].as_str().unwrap().ends_with('Z'));

    let cfg = get(&sim, "/configurations/8200102").json();
    let a = &cfg["data"]["attributes"];
    assert_eq!(a["organization-id"], 3_100_101);
    assert_eq!(a["organization-name"], "Tyrell Systems");
    assert_eq!(a["serial-number"], "CZ2841AB7Q");
    assert_eq!(a["mac-address"], "3c:52:82:1a:9f:01");
    assert_eq!(a["hostname"], "ty-fs01");
    assert_eq!(a["archived"], false);
    assert_eq!(a["asset-tag"], "TYR-0042");

    let missing = get(&sim, "/configurations/42");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["errors"][0]["status"], "404");
    assert_eq!(get(&sim, "/organizations/abc").status, 404);
}

#[test]
fn include_configuration_interfaces() {
    let sim = start();
    let with = get(
        &sim,
        "/configurations?filter[id]=8200105,8200107&include=configuration_interfaces",
    )
    .json();
    let included = with["included"].as_array().unwrap();
    assert_eq!(included.len(), 2, "only the laptop has interfaces");
    assert!(
        included
            .iter()
            .all(|i| i["type"] == "configuration-interfaces"
                && i["attributes"]["configuration-id"] == 8_200_105)
    );
    let macs: Vec<&str> = included
        .iter()
        .map(|i| i["attributes"]["mac-address"].as_str().unwrap())
        .collect();
    assert_eq!(macs, vec!["a4:bb:6d:11:22:33", "a4:bb:6d:44:55:66"]);
    assert_eq!(included[0]["attributes"]["primary"], true);
    assert_eq!(included[1]["attributes"]["primary"], false);
    let rel = &with["data"][0]["relationships"]["configuration-interfaces"]["data"];
    assert_eq!(rel.as_array().unwrap().len(), 2);
    assert_eq!(rel[0]["id"], included[0]["id"]);
    assert_eq!(
        with["data"][1]["relationships"]["configuration-interfaces"]["data"],
        Value::Array(vec![])
    );

    let without = get(&sim, "/configurations?filter[id]=8200105").json();
    assert!(without.get("included").is_none());
    assert!(without["data"][0].get("relationships").is_none());
}

#[test]
fn each_region_accepts_only_its_own_key() {
    let sim = start();
    assert_eq!(sim.region_url("eu"), format!("{}/eu", sim.base_url()));
    assert_eq!(request(&sim, "GET", "/organizations", Some(US)).status, 200);
    assert_eq!(
        request(&sim, "GET", "/us/organizations", Some(US)).status,
        200
    );
    assert_eq!(
        request(&sim, "GET", "/eu/organizations", Some(EU)).status,
        200
    );
    assert_eq!(
        request(&sim, "GET", "/au/organizations", Some("sim-key-au")).status,
        200
    );

    let bad = request(&sim, "GET", "/eu/organizations", Some("not-a-key"));
    let wrong_region = request(&sim, "GET", "/eu/organizations", Some(US));
    let missing = request(&sim, "GET", "/eu/organizations", None);
    let eu_on_root = request(&sim, "GET", "/organizations", Some(EU));
    for r in [&bad, &wrong_region, &missing, &eu_on_root] {
        assert_eq!(r.status, 401);
        assert_eq!(r.body, bad.body, "a wrong region must look like a bad key");
    }
    assert_eq!(
        bad.json(),
        serde_json::json!({"errors":[{"status":"401","title":"Unauthorized","detail":"Unauthorized resource access"}]})
    );

    // A revoked key fails from the next request on.
    sim.set_key("us", None);
    assert_eq!(request(&sim, "GET", "/organizations", Some(US)).status, 401);
    sim.set_key("us", Some("rotated"));
    assert_eq!(
        request(&sim, "GET", "/organizations", Some("rotated")).status,
        200
    );
}

#[test]
fn plain_forbidden_auth_style() {
    let config = SimConfig {
        auth_error_style: AuthStyle::PlainForbidden,
        ..SimConfig::default()
    };
    let sim = Simulator::start(config).unwrap();
    let r = request(&sim, "GET", "/au/configurations", Some(US));
    assert_eq!(r.status, 403);
    assert_eq!(r.body, br#"{"message":"Forbidden"}"#);
    assert_eq!(
        request(&sim, "GET", "/configurations", Some(US)).status,
        200
    );
}

#[test]
fn unknown_paths_methods_and_password_endpoints() {
    let sim = start();
    assert_eq!(get(&sim, "/flexible_assets").status, 404);
    assert_eq!(
        get(&sim, "/organizations/1/relationships/contacts").status,
        404
    );

    let body = "{\"data\":{}}";
    let raw = format!(
        "POST /organizations HTTP/1.1\r\nx-api-key: {US}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let post = parse_reply(&send_raw(&sim, raw.as_bytes()));
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET"));
    assert_eq!(post.json()["errors"][0]["status"], "405");

    let secrets = get(&sim, "/passwords");
    assert_eq!(secrets.status, 200);
    assert!(String::from_utf8_lossy(&secrets.body).contains(FAKE_PASSWORD));
    let related = get(&sim, "/organizations/3100101/relationships/passwords");
    assert!(String::from_utf8_lossy(&related.body).contains(FAKE_PASSWORD));

    let log = sim.requests();
    let post_entry = log.iter().find(|r| r.method == "POST").unwrap();
    assert_eq!(post_entry.body_len, body.len());
    assert_eq!(post_entry.status, 405);
    assert!(
        log.iter()
            .any(|r| r.path == "/passwords" && r.status == 200)
    );
    assert!(
        log.iter()
            .any(|r| r.path == "/organizations/3100101/relationships/passwords")
    );
}

#[test]
fn chunked_request_bodies_are_counted() {
    let sim = start();
    let raw = format!(
        "PUT /configurations/8200101 HTTP/1.1\r\nx-api-key: {US}\r\n\
         Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n"
    );
    assert_eq!(parse_reply(&send_raw(&sim, raw.as_bytes())).status, 405);
    let log = sim.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].body_len, 8);
}

#[test]
fn request_log_records_everything() {
    let sim = start();
    let raw = format!(
        "GET /eu/configurations?page%5Bsize%5D=2&sort=id HTTP/1.1\r\nX-Api-Key: {EU}\r\n\
         User-Agent: test\r\n\r\n"
    );
    assert_eq!(parse_reply(&send_raw(&sim, raw.as_bytes())).status, 200);
    assert_eq!(
        request(&sim, "GET", "/organizations", Some("bad")).status,
        401
    );
    let garbage = parse_reply(&send_raw(&sim, b"NOT AN HTTP REQUEST\r\n\r\n"));
    assert_eq!(garbage.status, 400);

    let log = sim.requests();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].method, "GET");
    assert_eq!(log[0].path, "/eu/configurations");
    assert_eq!(log[0].query, "page%5Bsize%5D=2&sort=id");
    assert_eq!(log[0].header("x-api-key"), Some(EU));
    assert!(
        log[0]
            .headers
            .iter()
            .any(|(n, v)| n == "user-agent" && v == "test")
    );
    assert_eq!(log[0].status, 200);
    assert_eq!(log[0].body_len, 0);
    assert_eq!(log[1].status, 401);
    assert_eq!(log[2].status, 400);
    assert_eq!(sim.request_count(), 3);

    sim.clear_requests();
    assert!(sim.requests().is_empty());
    assert_eq!(sim.request_count(), 3);
}

#[test]
fn oversized_and_malformed_heads_are_refused() {
    let sim = start();
    let big = format!(
        "GET /organizations HTTP/1.1\r\nx-filler: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    let reply = parse_reply(&send_raw(&sim, big.as_bytes()));
    assert_eq!(reply.status, 431);
    let bad_header = parse_reply(&send_raw(
        &sim,
        b"GET /organizations HTTP/1.1\r\nno colon here\r\n\r\n",
    ));
    assert_eq!(bad_header.status, 400);
    let bad_length = parse_reply(&send_raw(
        &sim,
        b"GET /organizations HTTP/1.1\r\nContent-Length: many\r\n\r\n",
    ));
    assert_eq!(bad_length.status, 400);
    // The server survives all of it.
    assert_eq!(get(&sim, "/organizations").status, 200);
    assert_eq!(sim.requests().len(), 4);
}

#[test]
fn set_dataset_applies_to_the_next_request() {
    let sim = start();
    let mut ds = sample_dataset();
    let org = ds
        .organizations
        .iter_mut()
        .find(|o| o.id == 3_100_101)
        .unwrap();
    org.name = "Tyrell Corporation".into();
    let cfg = ds
        .configurations
        .iter_mut()
        .find(|c| c.id == 8_200_102)
        .unwrap();
    cfg.organization_id = 3_100_102;
    ds.configurations.retain(|c| c.id != 8_200_101);
    sim.set_dataset(ds);

    assert_eq!(
        get(&sim, "/organizations/3100101").json()["data"]["attributes"]["name"],
        "Tyrell Corporation"
    );
    let moved = get(&sim, "/configurations/8200102").json();
    assert_eq!(moved["data"]["attributes"]["organization-id"], 3_100_102);
    assert_eq!(
        moved["data"]["attributes"]["organization-name"],
        "Acme, Inc."
    );
    assert_eq!(get(&sim, "/configurations/8200101").status, 404);
}

#[test]
fn raw_records_are_served_verbatim_and_counted() {
    let mut ds = Dataset {
        organizations: vec![Org::new(2, "Second"), Org::new(1, "First")],
        ..Dataset::default()
    };
    ds.raw_organizations
        .push(serde_json::json!({"id": null, "type": "organizations"}));
    ds.raw_organizations
        .push(serde_json::json!({"id": "77", "type": "organizations", "attributes": {"name": 5}}));
    let sim = Simulator::start(SimConfig::with_dataset(ds)).unwrap();
    let doc = get(&sim, "/organizations?page[size]=3").json();
    assert_eq!(doc["meta"]["total-count"], 4);
    assert_eq!(doc["meta"]["total-pages"], 2);
    assert_eq!(doc["data"][0]["id"], "1");
    assert_eq!(doc["data"][2]["id"], Value::Null);
    let page2 = get(&sim, "/organizations?page[size]=3&page[number]=2").json();
    assert_eq!(page2["data"][0]["attributes"]["name"], 5);
    assert_eq!(get(&sim, "/organizations/77").json()["data"]["id"], "77");
}

fn with_fault(fault: Fault) -> Simulator {
    let sim = start();
    sim.add_fault(FaultRule::always(fault));
    sim
}

#[test]
fn status_faults_carry_retry_after_and_json_bodies() {
    let sim = start();
    sim.add_fault(FaultRule::next(1, Fault::rate_limited_retry_after("3")));
    sim.add_fault(FaultRule::next(1, Fault::rate_limited()));
    sim.add_fault(FaultRule::next(1, Fault::gateway_timeout()));
    let first = get(&sim, "/organizations");
    assert_eq!(first.status, 429);
    assert_eq!(first.header("retry-after"), Some("3"));
    assert_eq!(first.json()["errors"][0]["status"], "429");
    let second = get(&sim, "/organizations");
    assert_eq!(second.status, 429);
    assert_eq!(second.header("retry-after"), None);
    let third = get(&sim, "/organizations");
    assert_eq!(third.status, 504);
    assert_eq!(
        third.header("content-type"),
        Some("application/vnd.api+json")
    );
    assert_eq!(get(&sim, "/organizations").status, 200);
    let statuses: Vec<u16> = sim.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 429, 504, 200]);

    for (fault, code) in [
        (Fault::internal_error(), 500),
        (Fault::bad_gateway(), 502),
        (Fault::unavailable(), 503),
    ] {
        sim.clear_faults();
        sim.add_fault(FaultRule::always(fault));
        let r = get(&sim, "/configurations");
        assert_eq!(r.status, code);
        assert_eq!(r.json()["errors"][0]["status"], code.to_string());
    }
}

#[test]
fn html_empty_and_redirect_faults() {
    let sim = with_fault(Fault::Html { status: 502 });
    let html = get(&sim, "/organizations");
    assert_eq!(html.status, 502);
    assert_eq!(html.header("content-type"), Some("text/html"));
    assert!(String::from_utf8_lossy(&html.body).contains("<h1>502 Bad Gateway</h1>"));

    sim.clear_faults();
    sim.add_fault(FaultRule::always(Fault::EmptyBody { status: 500 }));
    let empty = get(&sim, "/organizations");
    assert_eq!(empty.status, 500);
    assert!(empty.body.is_empty());
    assert_eq!(empty.header("content-length"), Some("0"));

    sim.clear_faults();
    sim.add_fault(FaultRule::always(Fault::Redirect {
        location: "http://example.invalid/organizations".into(),
    }));
    let redirect = get(&sim, "/organizations");
    assert_eq!(redirect.status, 302);
    assert_eq!(
        redirect.header("location"),
        Some("http://example.invalid/organizations")
    );
}

#[test]
fn stall_sends_nothing_until_it_closes() {
    let sim = with_fault(Fault::Stall(Duration::from_millis(800)));
    let mut s = connect(&sim);
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s.write_all(format!("GET /organizations HTTP/1.1\r\nx-api-key: {US}\r\n\r\n").as_bytes())
        .unwrap();
    let mut buf = [0u8; 64];
    let err = s.read(&mut buf).unwrap_err();
    assert!(matches!(
        err.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut
    ));
    // After the stall the connection closes with nothing sent.
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = Instant::now();
    assert_eq!(s.read(&mut buf).unwrap(), 0);
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert_eq!(sim.requests()[0].status, 0);
}

#[test]
fn stall_after_headers_sends_the_head_only() {
    let sim = with_fault(Fault::StallAfterHeaders(Duration::from_secs(5)));
    let mut s = connect(&sim);
    s.write_all(format!("GET /organizations HTTP/1.1\r\nx-api-key: {US}\r\n\r\n").as_bytes())
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let reply = parse_reply(&got);
    assert_eq!(reply.status, 200);
    let length: usize = reply.header("content-length").unwrap().parse().unwrap();
    assert!(length > 100);
    assert!(reply.body.is_empty());
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let err = s.read(&mut buf).unwrap_err();
    assert!(matches!(
        err.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut
    ));
}

#[test]
fn truncated_body_is_shorter_than_content_length() {
    let sim = with_fault(Fault::Truncated);
    let reply = parse_reply(&send_raw(
        &sim,
        format!("GET /organizations HTTP/1.1\r\nx-api-key: {US}\r\n\r\n").as_bytes(),
    ));
    assert_eq!(reply.status, 200);
    let length: usize = reply.header("content-length").unwrap().parse().unwrap();
    assert!(reply.body.len() < length, "{} < {length}", reply.body.len());
    assert!(serde_json::from_slice::<Value>(&reply.body).is_err());
}

#[test]
fn reset_closes_without_a_response() {
    let sim = with_fault(Fault::Reset);
    let mut s = connect(&sim);
    s.write_all(format!("GET /organizations HTTP/1.1\r\nx-api-key: {US}\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = Vec::new();
    let result = s.read_to_end(&mut out);
    assert!(out.is_empty());
    #[cfg(target_os = "linux")]
    assert_eq!(result.unwrap_err().kind(), ErrorKind::ConnectionReset);
    #[cfg(not(target_os = "linux"))]
    let _ = result;
    assert_eq!(sim.requests()[0].status, 0);
}

#[test]
fn huge_body_has_the_exact_size_and_parses() {
    let sim = with_fault(Fault::Huge { bytes: 3_000_000 });
    let reply = parse_reply(&send_raw(
        &sim,
        format!("GET /organizations HTTP/1.1\r\nx-api-key: {US}\r\n\r\n").as_bytes(),
    ));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), 3_000_000);
    assert_eq!(reply.header("content-length"), Some("3000000"));
    let doc = reply.json();
    assert_eq!(doc["data"][0]["type"], "organizations");
    assert_eq!(doc["meta"]["next-page"], Value::Null);
}

#[test]
fn huge_chunked_body_has_no_length_and_the_exact_size() {
    let sim = with_fault(Fault::HugeChunked { bytes: 3_000_000 });
    let reply = parse_reply(&send_raw(
        &sim,
        format!("GET /organizations HTTP/1.1\r\nx-api-key: {US}\r\n\r\n").as_bytes(),
    ));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-length"), None);
    assert_eq!(reply.header("transfer-encoding"), Some("chunked"));
    // Undo the chunked framing: `SIZE\r\nDATA\r\n` ... `0\r\n\r\n`.
    let mut body = Vec::new();
    let mut rest = reply.body.as_slice();
    loop {
        let line = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..line]).unwrap(), 16).unwrap();
        rest = &rest[line + 2..];
        if size == 0 {
            assert_eq!(rest, b"\r\n");
            break;
        }
        body.extend_from_slice(&rest[..size]);
        assert_eq!(&rest[size..size + 2], b"\r\n");
        rest = &rest[size + 2..];
    }
    assert_eq!(body.len(), 3_000_000);
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["data"][0]["type"], "organizations");
}

#[test]
fn latency_fault_and_config_latency_delay_answers() {
    let sim = with_fault(Fault::Latency(Duration::from_millis(400)));
    let start = Instant::now();
    assert_eq!(get(&sim, "/organizations").status, 200);
    assert!(start.elapsed() >= Duration::from_millis(400));

    let config = SimConfig {
        latency: Duration::from_millis(300),
        ..SimConfig::default()
    };
    let slow = Simulator::start(config).unwrap();
    let start = Instant::now();
    assert_eq!(get(&slow, "/organizations").status, 200);
    assert!(start.elapsed() >= Duration::from_millis(300));
    slow.set_latency(Duration::ZERO);
}

#[test]
fn shift_total_misreports_only_the_count() {
    let sim = start();
    sim.add_fault(FaultRule::new(
        When::PathPrefix("/configurations".into()).and(When::Page(2)),
        Fault::ShiftTotal(5),
    ));
    let total = sample_dataset().configurations.len() as u64;
    let eu = get(&sim, "/eu/configurations?page[size]=10&page[number]=2");
    assert_eq!(
        eu.status, 401,
        "faults that answer normally still check the key"
    );
    let p1 = get(&sim, "/configurations?page[size]=10").json();
    let p2 = get(&sim, "/configurations?page[size]=10&page[number]=2").json();
    assert_eq!(p1["meta"]["total-count"], total);
    assert_eq!(p2["meta"]["total-count"], total + 5);
    assert_eq!(p2["meta"]["total-pages"], p1["meta"]["total-pages"]);
    assert_eq!(p2["data"].as_array().unwrap().len(), 10);
}

#[test]
fn every_nth_and_times_rules() {
    let sim = start();
    sim.add_fault(FaultRule::new(
        When::PathPrefix("/organizations".into()).times(2),
        Fault::unavailable(),
    ));
    sim.add_fault(FaultRule::new(When::EveryNth(3), Fault::internal_error()));
    let statuses: Vec<u16> = (0..7)
        .map(|_| get(&sim, "/eu/organizations").status)
        .collect();
    // EU requests with the US key: normal answers are 401. Requests 1-2 hit the first rule,
    // 3 and 6 the second (it counts every request).
    assert_eq!(statuses, vec![503, 503, 500, 401, 401, 500, 401]);
    let remaining = sim.faults();
    assert!(matches!(
        remaining[0].when,
        When::Times { remaining: 0, .. }
    ));
    sim.clear_faults();
    assert!(sim.faults().is_empty());
}

#[test]
fn concurrent_requests_are_all_served() {
    let sim = Simulator::start(SimConfig::with_dataset(generated_dataset(10, 50))).unwrap();
    let sim = std::sync::Arc::new(sim);
    let handles: Vec<_> = (1..=20)
        .map(|n| {
            let sim = std::sync::Arc::clone(&sim);
            std::thread::spawn(move || {
                let page = (n % 5) + 1;
                let r = get(
                    &sim,
                    &format!("/configurations?page[size]=100&page[number]={page}"),
                );
                (r.status, r.json()["data"].as_array().unwrap().len())
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), (200, 100));
    }
    assert_eq!(sim.requests().len(), 20);
}

#[test]
fn drop_stops_the_server_even_with_a_stalled_client() {
    let sim = with_fault(Fault::Stall(Duration::from_secs(60)));
    let addr = sim.addr();
    let mut s = connect(&sim);
    s.write_all(b"GET /organizations HTTP/1.1\r\n\r\n").unwrap();
    // Let the server pick the request up, then drop it mid-stall.
    let deadline = Instant::now() + Duration::from_secs(5);
    while sim.requests().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let start = Instant::now();
    drop(sim);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}

#[test]
fn echo_credential_sends_the_key_back_in_headers() {
    let sim = start();
    sim.add_fault(FaultRule::always(Fault::EchoCredential));
    let reply = get(&sim, "/organizations");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-api-key"), Some(US));
    assert_eq!(
        reply.header("set-cookie"),
        Some(format!("session={US}").as_str())
    );
    assert!(
        reply
            .header("authorization")
            .is_some_and(|v| v.ends_with(US))
    );
}

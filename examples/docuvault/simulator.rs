//! A tiny local Docuvault API for the example connector's end-to-end test and for trying the
//! connector by hand: a few companies and devices in plain JSON lists with offset cursors
//! (`GET /api/v2/companies|devices?cursor=N&limit=M`), a bearer token, forced failures and a
//! log of every request. Plain `std::net` on 127.0.0.1 only: one thread and one request per
//! connection, every answer with `Connection: close`.

use serde_json::{Value, json};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The Scopable clients (`import clients`) that go with the simulator's companies: `Acme Corp`
/// and `Globex` match one company each, `Initech` is two clients, `Stark Industries` is the
/// name of two companies, and `Umbrella` (a company) has no client.
pub const CLIENTS_CSV: &str = "id,name
s-1,Acme Corp
s-2,Globex
s-3,Initech
s-4,Initech
s-5,Stark Industries
";

/// The Scopable configurations (`import configurations`) that go with the simulator's devices.
pub const CONFIGURATIONS_CSV: &str = "id,client_id,name,hostname,serial_number,mac_address
k-1,s-1,DC,acme-dc01,abc123,00:11:22:33:44:55
k-2,s-1,File server,acme-fs01,XYZ-9001,
k-3,s-2,Gateway,globex-gw,GLX-0001,
k-4,s-1,Twin,acme-twin,TWIN-77,
k-5,s-5,Stark box,stark-01,UMB-1234,
";

/// The largest `limit` the simulator accepts, as the real API.
pub const MAX_LIMIT: usize = 100;

/// One request the simulator received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The method, for example `GET`.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string as sent (without `?`).
    pub query: String,
    /// The `authorization` header, when one was sent.
    pub authorization: Option<String>,
}

#[derive(Default)]
struct State {
    forced: VecDeque<u16>,
    seen: Vec<Seen>,
}

/// A running simulator. It stops accepting connections when dropped.
pub struct Simulator {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl Simulator {
    /// Starts a simulator on a free port of 127.0.0.1 that accepts `Bearer <token>`.
    pub fn start(token: &str) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, stopping, token) = (state.clone(), stop.clone(), token.to_string());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (state, token) = (shared.clone(), token.clone());
                std::thread::spawn(move || serve(stream, &token, &state));
            }
        });
        Ok(Simulator { addr, state, stop })
    }

    /// The base URL to give the connector (`--endpoint`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers the next `times` requests with `status` (401, 429 with `Retry-After: 1`, 503,
    /// ...) whatever they ask.
    pub fn fail_next(&self, status: u16, times: usize) {
        lock(&self.state)
            .forced
            .extend(std::iter::repeat_n(status, times));
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Seen> {
        lock(&self.state).seen.clone()
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads one request (the request line and headers; GETs have no body) and answers it.
fn serve(stream: TcpStream, token: &str, state: &Mutex<State>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut words = line.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut authorization = None;
    let mut header = String::new();
    while reader.read_line(&mut header).unwrap_or(0) > 0 && !header.trim().is_empty() {
        if let Some((name, value)) = header.split_once(':')
            && name.trim().eq_ignore_ascii_case("authorization")
        {
            authorization = Some(value.trim().to_string());
        }
        header.clear();
    }
    let seen = Seen {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        authorization,
    };
    let forced = {
        let mut state = lock(state);
        state.seen.push(seen.clone());
        state.forced.pop_front()
    };
    let (status, body) = match forced {
        Some(status) => (status, json!({"error": "failure forced by the test"})),
        None => answer(&seen, token),
    };
    let body = body.to_string();
    let retry_after = if status == 429 {
        "Retry-After: 1\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         {retry_after}Connection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    let mut out = &stream;
    let _ = out
        .write_all(head.as_bytes())
        .and_then(|()| out.write_all(body.as_bytes()));
    let _ = out.flush();
}

/// The answer to a request that is not forced to fail.
fn answer(request: &Seen, token: &str) -> (u16, Value) {
    let error = |status: u16, message: &str| (status, json!({ "error": message }));
    if request.method != "GET" {
        return error(405, "only GET is supported");
    }
    if request.authorization.as_deref() != Some(&format!("Bearer {token}")) {
        return error(401, "missing or invalid bearer token");
    }
    let items = match request.path.as_str() {
        "/api/v2/companies" => companies(),
        "/api/v2/devices" => devices(),
        _ => return error(404, "no such resource"),
    };
    let param = |key: &str| {
        let pairs = request
            .query
            .split('&')
            .filter_map(|pair| pair.split_once('='));
        pairs
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v.parse::<usize>())
            .next_back()
    };
    let (Ok(cursor), Ok(limit)) = (
        param("cursor").unwrap_or(Ok(0)),
        param("limit").unwrap_or(Ok(25)),
    ) else {
        return error(400, "cursor and limit must be whole numbers");
    };
    if !(1..=MAX_LIMIT).contains(&limit) {
        return error(400, "limit must be between 1 and 100");
    }
    let page: Vec<&Value> = items.iter().skip(cursor).take(limit).collect();
    let next = (cursor + limit < items.len()).then_some(cursor + limit);
    (
        200,
        json!({ "items": page, "next": next, "total": items.len() }),
    )
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// The companies, sorted by uid; the last one has no uid and cannot be read.
fn companies() -> Vec<Value> {
    vec![
        json!({"uid": "c-1", "title": "Acme Corp"}),
        json!({"uid": "c-2", "title": "globex"}),
        json!({"uid": "c-3", "title": "Initech"}),
        json!({"uid": "c-4", "title": "Umbrella"}),
        json!({"uid": "c-5", "title": "Stark Industries"}),
        json!({"uid": "c-6", "title": "stark  industries"}),
        json!({"uid": "c-7", "title": "   "}),
        json!({"title": "Nameless Ltd"}),
    ]
}

/// The devices of every company, sorted by uid.
fn devices() -> Vec<Value> {
    let device = |uid: &str, company: &str, label: &str, serial: Value| {
        json!({"uid": uid, "company_uid": company, "label": label, "serial": serial,
               "host": label.to_lowercase().replace(' ', "-"), "macs": [], "retired": false})
    };
    let mut dc = device("d-01", "c-1", "DC", json!("ABC123"));
    dc["macs"] = json!(["00:11:22:33:44:55"]);
    dc["ip"] = json!("10.0.0.10");
    let mut old = device("d-06", "c-2", "Old gateway", json!("GLX-0001"));
    old["retired"] = json!(true);
    vec![
        dc,
        device("d-02", "c-1", "File server", json!("xyz-9001")),
        device("d-03", "c-1", "Laptop", Value::Null),
        device("d-04", "c-2", "Gateway", json!("GLX-0001")),
        device("d-05", "c-4", "Umbrella NAS", json!("UMB-1234")),
        old,
        device("d-07", "c-1", "Printer", json!("0000")),
        json!({"uid": "d-08", "label": "Broken: no company"}),
        device("d-09", "c-1", "Twin A", json!("TWIN-77")),
        device("d-10", "c-1", "Twin B", json!("twin-77")),
    ]
}

//! The simulator's server: binds loopback, serves each connection on its own thread (bounded),
//! logs every request, applies fault rules, and shuts down cleanly on drop.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{self, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::api::{self, AuthStyle, Ctx, Prepared};
use crate::data::{Dataset, sample_dataset};
use crate::fault::{self, Fault, FaultRule, Installed};
use crate::http::{self, ReadError, Request, Response};

/// Connections served at once; further ones wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 64;
/// Requests kept in the log; older ones are dropped first.
pub const MAX_LOGGED_REQUESTS: usize = 200_000;
/// How long a write may block on a client that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How to start a [`Simulator`].
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Accepted API key per region (`us`, `eu`, `au`); the unprefixed root is `us`. A region
    /// without a key rejects every request.
    pub keys: BTreeMap<String, String>,
    /// How a missing or wrong key is answered.
    pub auth_error_style: AuthStyle,
    /// Delay before every answer (for benchmarks).
    pub latency: Duration,
    /// The data served at start; replace it later with [`Simulator::set_dataset`].
    pub dataset: Dataset,
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
}

impl Default for SimConfig {
    /// Keys `sim-key-us`, `sim-key-eu`, `sim-key-au`; JSON:API 401s; no latency; the sample
    /// data set; any free port.
    fn default() -> SimConfig {
        SimConfig {
            keys: api::REGIONS
                .iter()
                .map(|r| (r.to_string(), format!("sim-key-{r}")))
                .collect(),
            auth_error_style: AuthStyle::default(),
            latency: Duration::ZERO,
            dataset: sample_dataset(),
            port: 0,
        }
    }
}

impl SimConfig {
    /// The default configuration serving `dataset`.
    pub fn with_dataset(dataset: Dataset) -> SimConfig {
        SimConfig {
            dataset,
            ..SimConfig::default()
        }
    }
}

/// One request as the simulator received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// Method (empty when the request line could not be read).
    pub method: String,
    /// Path without the query, as sent (region prefix included).
    pub path: String,
    /// Raw query string, without `?`.
    pub query: String,
    /// Headers in order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Request body bytes received (or announced, for a body refused as too large).
    pub body_len: usize,
    /// Status sent; 0 when no status line was sent (stall, reset).
    pub status: u16,
}

impl LoggedRequest {
    /// The first value of a header (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// State shared by the simulator handle and its threads.
struct Shared {
    stop: AtomicBool,
    base_url: String,
    keys: RwLock<BTreeMap<String, String>>,
    auth: RwLock<AuthStyle>,
    latency: RwLock<Duration>,
    data: RwLock<Arc<Prepared>>,
    log: Mutex<VecDeque<LoggedRequest>>,
    faults: Mutex<Vec<Installed>>,
    received: AtomicU64,
    /// Open connections, so stopping can shut them down; and their count, to bound them.
    conns: Mutex<HashMap<u64, TcpStream>>,
    conns_changed: Condvar,
}

/// Locks a mutex, recovering it if a thread panicked while holding it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T: Clone>(l: &RwLock<T>) -> T {
    l.read().unwrap_or_else(|e| e.into_inner()).clone()
}

fn write<T>(l: &RwLock<T>, value: T) {
    *l.write().unwrap_or_else(|e| e.into_inner()) = value;
}

/// A running IT Glue API simulator on 127.0.0.1. Dropping it stops the server and waits for
/// its threads.
pub struct Simulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// Binds 127.0.0.1 on `config.port` and starts serving on background threads.
    pub fn start(config: SimConfig) -> io::Result<Simulator> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, config.port))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            base_url: format!("http://{addr}"),
            keys: RwLock::new(config.keys),
            auth: RwLock::new(config.auth_error_style),
            latency: RwLock::new(config.latency),
            data: RwLock::new(Arc::new(Prepared::new(config.dataset))),
            log: Mutex::new(VecDeque::new()),
            faults: Mutex::new(Vec::new()),
            received: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
            conns_changed: Condvar::new(),
        });
        let accept = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("itglue-sim-accept".into())
                .spawn(move || accept_loop(listener, shared))?
        };
        Ok(Simulator {
            shared,
            addr,
            accept: Some(accept),
        })
    }

    /// `http://127.0.0.1:PORT`: the root, which serves the `us` region.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// `http://127.0.0.1:PORT/<region>`.
    pub fn region_url(&self, region: &str) -> String {
        format!("{}/{region}", self.shared.base_url)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Replaces the data served from the next request on.
    pub fn set_dataset(&self, dataset: Dataset) {
        write(&self.shared.data, Arc::new(Prepared::new(dataset)));
    }

    /// Sets (or, with `None`, removes: a revoked key) the key accepted for a region.
    pub fn set_key(&self, region: &str, key: Option<&str>) {
        let mut keys = self.shared.keys.write().unwrap_or_else(|e| e.into_inner());
        match key {
            Some(k) => keys.insert(region.to_string(), k.to_string()),
            None => keys.remove(region),
        };
    }

    /// The key accepted for a region, if any.
    pub fn key(&self, region: &str) -> Option<String> {
        read(&self.shared.keys).get(region).cloned()
    }

    /// Changes how a missing or wrong key is answered.
    pub fn set_auth_style(&self, style: AuthStyle) {
        write(&self.shared.auth, style);
    }

    /// Changes the delay before every answer.
    pub fn set_latency(&self, latency: Duration) {
        write(&self.shared.latency, latency);
    }

    /// The requests received so far (at most [`MAX_LOGGED_REQUESTS`], oldest first).
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.shared.log).iter().cloned().collect()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        lock(&self.shared.log).clear();
    }

    /// Requests received since start, including those no longer in the log.
    pub fn request_count(&self) -> u64 {
        self.shared.received.load(Ordering::SeqCst)
    }

    /// Adds a fault rule after the existing ones.
    pub fn add_fault(&self, rule: FaultRule) {
        lock(&self.shared.faults).push(Installed { rule, seen: 0 });
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// The installed rules, with their counters as spent so far.
    pub fn faults(&self) -> Vec<FaultRule> {
        lock(&self.shared.faults)
            .iter()
            .map(|i| i.rule.clone())
            .collect()
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Unblock connection threads waiting on a slow client.
        for stream in lock(&self.shared.conns).values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        self.shared.conns_changed.notify_all();
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(handle) = self.accept.take() {
            let _ = handle.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    let mut next_id = 0u64;
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = conn else {
            // Out of descriptors or similar: back off instead of spinning.
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        // Wait for a free slot.
        {
            let mut conns = lock(&shared.conns);
            while conns.len() >= MAX_CONNECTIONS && !shared.stop.load(Ordering::SeqCst) {
                conns = shared
                    .conns_changed
                    .wait_timeout(conns, Duration::from_millis(100))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            if shared.stop.load(Ordering::SeqCst) {
                break;
            }
            let Ok(clone) = stream.try_clone() else {
                continue;
            };
            next_id += 1;
            conns.insert(next_id, clone);
        }
        let id = next_id;
        let worker_shared = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name("itglue-sim-conn".into())
            .spawn(move || {
                serve_connection(stream, &worker_shared);
                lock(&worker_shared.conns).remove(&id);
                worker_shared.conns_changed.notify_all();
            });
        match spawned {
            Ok(handle) => workers.push(handle),
            Err(_) => {
                lock(&shared.conns).remove(&id);
            }
        }
        workers.retain(|w| !w.is_finished());
    }
    for w in workers {
        let _ = w.join();
    }
}

/// Sleeps for `d`, waking early when the server stops. False when it stopped.
fn pause(d: Duration, stop: &AtomicBool) -> bool {
    let end = Instant::now() + d;
    loop {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

fn log_request(shared: &Shared, req: &Request, status: u16) {
    let mut log = lock(&shared.log);
    if log.len() >= MAX_LOGGED_REQUESTS {
        log.pop_front();
    }
    log.push_back(LoggedRequest {
        method: req.method.clone(),
        path: req.path.clone(),
        query: req.query.clone(),
        headers: req.headers.clone(),
        body_len: req.body_len,
        status,
    });
}

/// The normal answer to a request.
fn normal_response(shared: &Shared, req: &Request, shift_total: i64) -> Response {
    let keys = read(&shared.keys);
    let data = read(&shared.data);
    let ctx = Ctx {
        keys: &keys,
        auth: read(&shared.auth),
        data: &data,
        base_url: &shared.base_url,
        shift_total,
    };
    api::respond(req, &ctx)
}

fn serve_connection(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let req = match http::read_request(&mut stream, &shared.stop) {
        Ok(req) => req,
        Err(ReadError::Gone) => return,
        Err(ReadError::Bad {
            status,
            detail,
            partial,
        }) => {
            shared.received.fetch_add(1, Ordering::SeqCst);
            let resp = Response::error(status, http::reason(status), &detail);
            log_request(shared, &partial, status);
            let _ = resp.write_to(&mut stream);
            finish(stream);
            return;
        }
    };
    shared.received.fetch_add(1, Ordering::SeqCst);

    let (_, rel_path) = api::split_region(&req.path);
    let page = api::page_number_of(&req.query);
    let fault = fault::choose(
        &mut lock(&shared.faults),
        &req.method,
        &req.path,
        rel_path,
        page,
    );
    let latency = read(&shared.latency);

    match fault {
        None => answer(
            stream,
            shared,
            &req,
            normal_response(shared, &req, 0),
            latency,
        ),
        Some(Fault::Latency(extra)) => answer(
            stream,
            shared,
            &req,
            normal_response(shared, &req, 0),
            latency + extra,
        ),
        Some(Fault::EchoCredential) => {
            let mut resp = normal_response(shared, &req, 0);
            let key = req
                .header_values("x-api-key")
                .next()
                .unwrap_or("")
                .to_string();
            resp.headers.push(("X-Api-Key".into(), key.clone()));
            resp.headers
                .push(("Authorization".into(), format!("Bearer {key}")));
            resp.headers
                .push(("Set-Cookie".into(), format!("session={key}")));
            answer(stream, shared, &req, resp, latency);
        }
        Some(Fault::ShiftTotal(shift)) => answer(
            stream,
            shared,
            &req,
            normal_response(shared, &req, shift),
            latency,
        ),
        Some(Fault::Status {
            status,
            retry_after,
            body,
        }) => {
            let mut headers = Vec::new();
            if !body.is_empty() {
                let kind = if body.trim_start().starts_with('{') {
                    http::JSON_API
                } else {
                    "text/plain; charset=utf-8"
                };
                headers.push(("Content-Type".to_string(), kind.to_string()));
            }
            if let Some(after) = retry_after {
                headers.push(("Retry-After".to_string(), after));
            }
            let resp = Response {
                status,
                headers,
                body: body.into_bytes(),
            };
            answer(stream, shared, &req, resp, latency);
        }
        Some(Fault::Html { status }) => {
            let reason = http::reason(status);
            let body = format!(
                "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n\
                 <center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n\
                 </body>\r\n</html>\r\n"
            );
            let resp = Response {
                status,
                headers: vec![("Content-Type".into(), "text/html".into())],
                body: body.into_bytes(),
            };
            answer(stream, shared, &req, resp, latency);
        }
        Some(Fault::EmptyBody { status }) => {
            let resp = Response {
                status,
                headers: Vec::new(),
                body: Vec::new(),
            };
            answer(stream, shared, &req, resp, latency);
        }
        Some(Fault::Redirect { location }) => {
            let resp = Response {
                status: 302,
                headers: vec![
                    ("Location".into(), location),
                    ("Content-Type".into(), "text/html".into()),
                ],
                body: b"<html><body>You are being redirected.</body></html>".to_vec(),
            };
            answer(stream, shared, &req, resp, latency);
        }
        Some(Fault::Stall(d)) => {
            log_request(shared, &req, 0);
            if pause(latency + d, &shared.stop) {
                finish(stream);
            }
        }
        Some(Fault::StallAfterHeaders(d)) => {
            let resp = normal_response(shared, &req, 0);
            log_request(shared, &req, resp.status);
            if !pause(latency, &shared.stop) {
                return;
            }
            let _ = stream.write_all(&resp.head(resp.body.len()));
            let _ = stream.flush();
            if pause(d, &shared.stop) {
                finish(stream);
            }
        }
        Some(Fault::Truncated) => {
            let resp = normal_response(shared, &req, 0);
            log_request(shared, &req, resp.status);
            if !pause(latency, &shared.stop) {
                return;
            }
            let mut bytes = resp.head(resp.body.len());
            bytes.extend_from_slice(&resp.body[..resp.body.len() / 2]);
            let _ = stream.write_all(&bytes);
            let _ = stream.flush();
            finish(stream);
        }
        Some(Fault::Reset) => {
            log_request(shared, &req, 0);
            if pause(latency, &shared.stop) {
                reset(stream);
            }
        }
        Some(Fault::Huge { bytes }) => {
            log_request(shared, &req, 200);
            if pause(latency, &shared.stop) {
                send_huge(stream, shared, bytes, false);
            }
        }
        Some(Fault::HugeChunked { bytes }) => {
            log_request(shared, &req, 200);
            if pause(latency, &shared.stop) {
                send_huge(stream, shared, bytes, true);
            }
        }
    }
}

/// Logs, waits out the latency, writes the response and closes.
fn answer(
    mut stream: TcpStream,
    shared: &Shared,
    req: &Request,
    resp: Response,
    latency: Duration,
) {
    log_request(shared, req, resp.status);
    if !pause(latency, &shared.stop) {
        return;
    }
    let _ = resp.write_to(&mut stream);
    finish(stream);
}

/// Closes the connection after a response: half-close, then briefly drain whatever the client
/// still sends so that the close is not turned into a reset that could clobber the response.
fn finish(mut stream: TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        match io::Read::read(&mut stream, &mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// Streams a valid JSON:API document of (at least) `bytes` bytes: with its `Content-Length`,
/// or `chunked` without one.
fn send_huge(mut stream: TcpStream, shared: &Shared, bytes: usize, chunked: bool) {
    let prefix = br#"{"data":[{"id":"1","type":"organizations","attributes":{"name":"Huge response","padding":""#;
    let suffix = br#""}}],"meta":{"current-page":1,"next-page":null,"prev-page":null,"total-pages":1,"total-count":1,"filters":{}},"links":{}}"#;
    let padding = bytes.saturating_sub(prefix.len() + suffix.len());
    let total = prefix.len() + padding + suffix.len();
    let head = if chunked {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            http::JSON_API
        )
        .into_bytes()
    } else {
        Response {
            status: 200,
            headers: vec![("Content-Type".into(), http::JSON_API.into())],
            body: Vec::new(),
        }
        .head(total)
    };
    // One piece of the body, framed as a chunk when chunked.
    let send = |stream: &mut TcpStream, data: &[u8]| -> io::Result<()> {
        if chunked {
            stream.write_all(format!("{:x}\r\n", data.len()).as_bytes())?;
            stream.write_all(data)?;
            stream.write_all(b"\r\n")
        } else {
            stream.write_all(data)
        }
    };
    if stream.write_all(&head).is_err() || send(&mut stream, prefix).is_err() {
        return;
    }
    let chunk = vec![b'x'; 64 * 1024];
    let mut left = padding;
    while left > 0 {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let n = left.min(chunk.len());
        if send(&mut stream, &chunk[..n]).is_err() {
            // The client stopped reading (a response size limit): that is its right.
            return;
        }
        left -= n;
    }
    let end: &[u8] = if chunked { b"0\r\n\r\n" } else { b"" };
    if send(&mut stream, suffix).is_ok() && stream.write_all(end).is_ok() {
        let _ = stream.flush();
        finish(stream);
    }
}

/// Closes the connection with a TCP reset where the platform allows it, otherwise plainly.
fn reset(stream: TcpStream) {
    #[cfg(target_os = "linux")]
    linger_zero(&stream);
    drop(stream);
}

/// Sets `SO_LINGER` to zero, so closing the socket sends RST instead of FIN.
#[cfg(target_os = "linux")]
fn linger_zero(stream: &TcpStream) {
    use std::os::fd::AsRawFd;

    #[repr(C)]
    struct Linger {
        l_onoff: i32,
        l_linger: i32,
    }
    const SOL_SOCKET: i32 = 1;
    const SO_LINGER: i32 = 13;
    unsafe extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, value: *const Linger, len: u32) -> i32;
    }
    let value = Linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `fd` is an open socket owned by `stream` for the duration of the call, and
    // `value` points at a live `struct linger` whose size is passed alongside it.
    let _ = unsafe {
        setsockopt(
            stream.as_raw_fd(),
            SOL_SOCKET,
            SO_LINGER,
            &value,
            std::mem::size_of::<Linger>() as u32,
        )
    };
}

//! The simulator's server: binds loopback, serves each connection on its own thread (bounded),
//! in plain text or TLS, one request or (keep-alive) many per connection; logs every request,
//! applies fault rules, and shuts down cleanly on drop.

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
use crate::http::{self, Conn, ReadError, Request, Response};
use crate::tls::SimTls;

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
    /// Serve TLS with this certificate chain and key instead of plain HTTP; the base URL is
    /// then `https://`. ALPN offers `http/1.1` only.
    pub tls: Option<SimTls>,
    /// Serve requests one after another on a connection (HTTP/1.1 persistent connections)
    /// until the client closes it, asks for `Connection: close`, stays idle 30 s, or a fault
    /// needs the connection closed. Off: one request per connection, `Connection: close`.
    pub keep_alive: bool,
    /// How long each new connection waits before reading anything (before the TLS handshake):
    /// the handshake round trips of a real network.
    pub connect_delay: Duration,
}

impl Default for SimConfig {
    /// Keys `sim-key-us`, `sim-key-eu`, `sim-key-au`; JSON:API 401s; no latency; the sample
    /// data set; any free port; plain HTTP, one request per connection, no connect delay.
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
            tls: None,
            keep_alive: false,
            connect_delay: Duration::ZERO,
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
    /// TLS settings, when serving TLS.
    tls: Option<Arc<rustls::ServerConfig>>,
    keep_alive: bool,
    connect_delay: RwLock<Duration>,
    /// Connections accepted since start.
    accepted: AtomicU64,
    /// TLS handshakes that failed.
    tls_failures: AtomicU64,
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
    /// Binds 127.0.0.1 on `config.port` and starts serving on background threads. Fails
    /// with `InvalidInput` when `config.tls` holds an unusable certificate or key.
    pub fn start(config: SimConfig) -> io::Result<Simulator> {
        let tls = config.tls.as_ref().map(server_config).transpose()?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, config.port))?;
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            base_url: format!("{scheme}://{addr}"),
            keys: RwLock::new(config.keys),
            auth: RwLock::new(config.auth_error_style),
            latency: RwLock::new(config.latency),
            data: RwLock::new(Arc::new(Prepared::new(config.dataset))),
            log: Mutex::new(VecDeque::new()),
            faults: Mutex::new(Vec::new()),
            received: AtomicU64::new(0),
            tls,
            keep_alive: config.keep_alive,
            connect_delay: RwLock::new(config.connect_delay),
            accepted: AtomicU64::new(0),
            tls_failures: AtomicU64::new(0),
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

    /// `http://127.0.0.1:PORT` (`https://` when serving TLS): the root, which serves the `us`
    /// region.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// `http://127.0.0.1:PORT/<region>` (`https://` when serving TLS).
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

    /// Connections accepted since start, including those whose TLS handshake failed.
    pub fn connections(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// TLS handshakes that failed since start (a client refusing the certificate, a plain
    /// HTTP client, a client closing mid-handshake).
    pub fn tls_failures(&self) -> u64 {
        self.shared.tls_failures.load(Ordering::SeqCst)
    }

    /// Changes the delay before each new connection is read, from the next connection on.
    pub fn set_connect_delay(&self, delay: Duration) {
        write(&self.shared.connect_delay, delay);
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

/// The rustls server settings for a certificate chain and key in PEM.
fn server_config(tls: &SimTls) -> io::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let invalid = |what: &str, e: &dyn std::fmt::Display| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {e}"))
    };
    let chain = CertificateDer::pem_slice_iter(tls.cert_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("certificate chain", &e))?;
    if chain.is_empty() {
        return Err(invalid("certificate chain", &"no certificate in the PEM"));
    }
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes())
        .map_err(|e| invalid("private key", &e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| invalid("TLS versions", &e))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| invalid("certificate and key", &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
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
        shared.accepted.fetch_add(1, Ordering::SeqCst);
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

/// What becomes of a connection after one request.
enum After {
    /// Read the next request on it.
    KeepAlive,
    /// Close it gracefully (see [`finish`]).
    Close,
    /// Close it with a TCP reset.
    Reset,
    /// Let it go as it is: the server is stopping or the client is gone.
    Drop,
}

/// Why a TLS handshake did not complete.
enum HandshakeEnd {
    Stopped,
    Failed,
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let _ = stream.set_nodelay(true);
    if !pause(read(&shared.connect_delay), &shared.stop) {
        return;
    }
    let mut conn = match &shared.tls {
        None => Conn::Plain(stream),
        Some(config) => match handshake(stream, config, &shared.stop) {
            Ok(tls) => Conn::Tls(Box::new(tls)),
            Err(HandshakeEnd::Stopped) => return,
            Err(HandshakeEnd::Failed) => {
                shared.tls_failures.fetch_add(1, Ordering::SeqCst);
                return;
            }
        },
    };
    loop {
        match serve_request(&mut conn, shared) {
            After::KeepAlive => {}
            After::Close => return finish(conn),
            After::Reset => return reset(conn),
            After::Drop => return,
        }
    }
}

/// Runs the server side of a TLS handshake, polling the stop flag while the client is silent.
fn handshake(
    stream: TcpStream,
    config: &Arc<rustls::ServerConfig>,
    stop: &AtomicBool,
) -> Result<rustls::StreamOwned<rustls::ServerConnection, TcpStream>, HandshakeEnd> {
    let _ = stream.set_read_timeout(Some(http::POLL));
    let server =
        rustls::ServerConnection::new(Arc::clone(config)).map_err(|_| HandshakeEnd::Failed)?;
    let mut tls = rustls::StreamOwned::new(server, stream);
    let deadline = Instant::now() + http::IDLE_LIMIT;
    while tls.conn.is_handshaking() {
        if stop.load(Ordering::SeqCst) {
            return Err(HandshakeEnd::Stopped);
        }
        if Instant::now() > deadline {
            return Err(HandshakeEnd::Failed);
        }
        match tls.conn.complete_io(&mut tls.sock) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            // Stopping shuts the socket down under the handshake.
            Err(_) if stop.load(Ordering::SeqCst) => return Err(HandshakeEnd::Stopped),
            // A refused certificate (the client's alert), a peer that is not speaking TLS,
            // or a peer that closed mid-handshake; rustls has already sent its alert.
            Err(_) => return Err(HandshakeEnd::Failed),
        }
    }
    Ok(tls)
}

/// Reads one request and answers it.
fn serve_request(conn: &mut Conn, shared: &Shared) -> After {
    let req = match http::read_request(conn, &shared.stop) {
        Ok(req) => req,
        Err(ReadError::Gone) => return After::Drop,
        Err(ReadError::Bad {
            status,
            detail,
            partial,
        }) => {
            shared.received.fetch_add(1, Ordering::SeqCst);
            let resp = Response::error(status, http::reason(status), &detail);
            log_request(shared, &partial, status);
            // The framing of whatever follows is unknown: never keep this connection.
            let _ = resp.write_to(conn, false);
            return After::Close;
        }
    };
    shared.received.fetch_add(1, Ordering::SeqCst);
    let keep_alive = shared.keep_alive && req.keeps_alive();

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
            conn,
            shared,
            &req,
            normal_response(shared, &req, 0),
            latency,
            keep_alive,
        ),
        Some(Fault::Latency(extra)) => answer(
            conn,
            shared,
            &req,
            normal_response(shared, &req, 0),
            latency + extra,
            keep_alive,
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
            answer(conn, shared, &req, resp, latency, keep_alive)
        }
        Some(Fault::ShiftTotal(shift)) => answer(
            conn,
            shared,
            &req,
            normal_response(shared, &req, shift),
            latency,
            keep_alive,
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
            answer(conn, shared, &req, resp, latency, keep_alive)
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
            answer(conn, shared, &req, resp, latency, keep_alive)
        }
        Some(Fault::EmptyBody { status }) => {
            let resp = Response {
                status,
                headers: Vec::new(),
                body: Vec::new(),
            };
            answer(conn, shared, &req, resp, latency, keep_alive)
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
            answer(conn, shared, &req, resp, latency, keep_alive)
        }
        // The faults below break or abandon the answer: the connection always closes.
        Some(Fault::Stall(d)) => {
            log_request(shared, &req, 0);
            if pause(latency + d, &shared.stop) {
                After::Close
            } else {
                After::Drop
            }
        }
        Some(Fault::StallAfterHeaders(d)) => {
            let resp = normal_response(shared, &req, 0);
            log_request(shared, &req, resp.status);
            if !pause(latency, &shared.stop) {
                return After::Drop;
            }
            let _ = conn.write_all(&resp.head(resp.body.len(), false));
            let _ = conn.flush();
            if pause(d, &shared.stop) {
                After::Close
            } else {
                After::Drop
            }
        }
        Some(Fault::Truncated) => {
            let resp = normal_response(shared, &req, 0);
            log_request(shared, &req, resp.status);
            if !pause(latency, &shared.stop) {
                return After::Drop;
            }
            let mut bytes = resp.head(resp.body.len(), false);
            bytes.extend_from_slice(&resp.body[..resp.body.len() / 2]);
            let _ = conn.write_all(&bytes);
            let _ = conn.flush();
            After::Close
        }
        Some(Fault::Reset) => {
            log_request(shared, &req, 0);
            if pause(latency, &shared.stop) {
                After::Reset
            } else {
                After::Drop
            }
        }
        Some(Fault::Huge { bytes }) => {
            log_request(shared, &req, 200);
            if pause(latency, &shared.stop) {
                send_huge(conn, shared, bytes, false)
            } else {
                After::Drop
            }
        }
        Some(Fault::HugeChunked { bytes }) => {
            log_request(shared, &req, 200);
            if pause(latency, &shared.stop) {
                send_huge(conn, shared, bytes, true)
            } else {
                After::Drop
            }
        }
    }
}

/// Logs, waits out the latency and writes the response; the connection stays open when
/// `keep_alive` says so and the write went through.
fn answer(
    conn: &mut Conn,
    shared: &Shared,
    req: &Request,
    resp: Response,
    latency: Duration,
    keep_alive: bool,
) -> After {
    log_request(shared, req, resp.status);
    if !pause(latency, &shared.stop) {
        return After::Drop;
    }
    match resp.write_to(conn, keep_alive) {
        Ok(()) if keep_alive => After::KeepAlive,
        _ => After::Close,
    }
}

/// Closes the connection after a response: `close_notify` under TLS, half-close, then briefly
/// drain whatever the client still sends so that the close is not turned into a reset that
/// could clobber the response.
fn finish(mut conn: Conn) {
    conn.close_notify();
    let mut tcp = conn.tcp();
    let _ = tcp.shutdown(Shutdown::Write);
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        match io::Read::read(&mut tcp, &mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// Streams a valid JSON:API document of (at least) `bytes` bytes: with its `Content-Length`,
/// or `chunked` without one.
fn send_huge(conn: &mut Conn, shared: &Shared, bytes: usize, chunked: bool) -> After {
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
        .head(total, false)
    };
    // One piece of the body, framed as a chunk when chunked.
    let send = |stream: &mut Conn, data: &[u8]| -> io::Result<()> {
        if chunked {
            stream.write_all(format!("{:x}\r\n", data.len()).as_bytes())?;
            stream.write_all(data)?;
            stream.write_all(b"\r\n")
        } else {
            stream.write_all(data)
        }
    };
    if conn.write_all(&head).is_err() || send(conn, prefix).is_err() {
        return After::Drop;
    }
    let chunk = vec![b'x'; 64 * 1024];
    let mut left = padding;
    while left > 0 {
        if shared.stop.load(Ordering::SeqCst) {
            return After::Drop;
        }
        let n = left.min(chunk.len());
        if send(conn, &chunk[..n]).is_err() {
            // The client stopped reading (a response size limit): that is its right.
            return After::Drop;
        }
        left -= n;
    }
    let end: &[u8] = if chunked { b"0\r\n\r\n" } else { b"" };
    if send(conn, suffix).is_ok() && conn.write_all(end).is_ok() && conn.flush().is_ok() {
        After::Close
    } else {
        After::Drop
    }
}

/// Closes the connection with a TCP reset where the platform allows it, otherwise plainly.
fn reset(conn: Conn) {
    #[cfg(target_os = "linux")]
    linger_zero(conn.tcp());
    drop(conn);
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

#[cfg(test)]
mod tests {
    use std::io::Read;

    use rustls::pki_types::ServerName;
    use rustls::pki_types::pem::PemObject;
    use rustls::{CertificateError, ClientConfig, ClientConnection, RootCertStore, StreamOwned};

    use super::*;
    use crate::fault::When;
    use crate::tls::{TestCa, Validity};

    /// A response read off the wire.
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
    }

    /// Reads one response framed by its `Content-Length`, leaving the stream after it.
    fn read_reply(stream: &mut impl Read) -> Reply {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let mut lines = head.trim_end().split("\r\n");
        let status = lines.next().unwrap().split(' ').nth(1).unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.to_string(), v.trim().to_string())
            })
            .collect();
        let mut reply = Reply {
            status: status.parse().unwrap(),
            headers,
            body: Vec::new(),
        };
        let length: usize = reply.header("content-length").unwrap().parse().unwrap();
        reply.body = vec![0; length];
        stream.read_exact(&mut reply.body).unwrap();
        reply
    }

    fn get(path: &str, extra: &str) -> Vec<u8> {
        format!("GET {path} HTTP/1.1\r\nHost: sim\r\nx-api-key: sim-key-us\r\n{extra}\r\n")
            .into_bytes()
    }

    /// A rustls client trusting only `ca`, offering h2 and http/1.1.
    fn client_config(ca: &TestCa) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        let der =
            rustls::pki_types::CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap();
        roots.add(der).unwrap();
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }

    fn tls_connect(sim: &Simulator, ca: &TestCa) -> StreamOwned<ClientConnection, TcpStream> {
        let tcp = TcpStream::connect(sim.addr()).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let conn = ClientConnection::new(client_config(ca), name).unwrap();
        StreamOwned::new(conn, tcp)
    }

    fn tls_sim(ca: &TestCa, validity: Validity, keep_alive: bool) -> Simulator {
        Simulator::start(SimConfig {
            tls: Some(ca.server(&["127.0.0.1", "localhost"], validity)),
            keep_alive,
            ..SimConfig::default()
        })
        .unwrap()
    }

    /// Waits until `f` holds, for at most five seconds.
    fn eventually(f: impl Fn() -> bool) -> bool {
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        f()
    }

    #[test]
    fn tls_keep_alive_serves_requests_on_one_connection_until_close() {
        let ca = TestCa::new("Simulator test CA");
        let sim = tls_sim(&ca, Validity::Current, true);
        assert!(sim.base_url().starts_with("https://127.0.0.1:"));
        let mut tls = tls_connect(&sim, &ca);

        for _ in 0..2 {
            tls.write_all(&get("/organizations", "")).unwrap();
            let reply = read_reply(&mut tls);
            assert_eq!(reply.status, 200);
            assert_eq!(reply.header("connection"), Some("keep-alive"));
            let doc: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
            assert!(doc["data"].as_array().is_some_and(|d| !d.is_empty()));
        }
        assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));

        // Asking to close: the answer says so, then the server ends the TLS session cleanly.
        tls.write_all(&get("/organizations", "Connection: close\r\n"))
            .unwrap();
        let reply = read_reply(&mut tls);
        assert_eq!(reply.header("connection"), Some("close"));
        let mut rest = Vec::new();
        tls.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());

        assert_eq!(sim.connections(), 1);
        assert_eq!(sim.tls_failures(), 0);
        let logged = sim.requests();
        assert_eq!(logged.len(), 3);
        assert!(
            logged
                .iter()
                .all(|r| r.path == "/organizations" && r.status == 200)
        );
    }

    #[test]
    fn plain_keep_alive_reuses_the_connection_and_faults_still_close_it() {
        let sim = Simulator::start(SimConfig {
            keep_alive: true,
            ..SimConfig::default()
        })
        .unwrap();
        sim.add_fault(FaultRule::new(
            When::PathPrefix("/configurations".into()),
            Fault::Truncated,
        ));
        let mut tcp = TcpStream::connect(sim.addr()).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        for _ in 0..2 {
            tcp.write_all(&get("/organizations", "")).unwrap();
            let reply = read_reply(&mut tcp);
            assert_eq!(reply.status, 200);
            assert_eq!(reply.header("connection"), Some("keep-alive"));
        }
        tcp.write_all(&get("/configurations", "")).unwrap();
        let mut rest = Vec::new();
        tcp.read_to_end(&mut rest).unwrap();
        let text = String::from_utf8_lossy(&rest);
        assert!(text.contains("Connection: close"), "{text}");
        assert_eq!(sim.connections(), 1);
        assert_eq!(sim.request_count(), 3);
    }

    #[test]
    fn without_keep_alive_every_answer_closes() {
        let sim = Simulator::start(SimConfig::default()).unwrap();
        let mut tcp = TcpStream::connect(sim.addr()).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        tcp.write_all(&get("/organizations", "")).unwrap();
        let reply = read_reply(&mut tcp);
        assert_eq!(reply.header("connection"), Some("close"));
        let mut rest = Vec::new();
        tcp.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }

    #[test]
    fn an_expired_certificate_is_refused_and_counted() {
        let ca = TestCa::new("Simulator test CA");
        let sim = tls_sim(&ca, Validity::Expired, false);
        let mut tls = tls_connect(&sim, &ca);
        let err = tls.write_all(&get("/organizations", "")).and_then(|()| {
            let mut buf = [0u8; 1];
            tls.read(&mut buf).map(|_| ())
        });
        let err = err.unwrap_err();
        let inner = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
            .unwrap_or_else(|| panic!("not a TLS error: {err}"));
        assert!(
            matches!(
                inner,
                rustls::Error::InvalidCertificate(
                    CertificateError::Expired | CertificateError::ExpiredContext { .. }
                )
            ),
            "{inner:?}"
        );
        assert!(eventually(|| sim.tls_failures() == 1));
        assert_eq!(sim.connections(), 1);
        assert_eq!(sim.request_count(), 0);
    }

    #[test]
    fn a_certificate_from_another_ca_is_refused() {
        let ca = TestCa::new("Simulator test CA");
        let other = TestCa::new("Another CA");
        let sim = tls_sim(&other, Validity::Current, false);
        let mut tls = tls_connect(&sim, &ca);
        let err = tls.write_all(&get("/organizations", "")).and_then(|()| {
            let mut buf = [0u8; 1];
            tls.read(&mut buf).map(|_| ())
        });
        let err = err.unwrap_err();
        let inner = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>());
        assert!(
            matches!(
                inner,
                Some(rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer
                ))
            ),
            "{err:?}"
        );
        assert!(eventually(|| sim.tls_failures() == 1));
    }

    #[test]
    fn connect_delay_holds_back_the_first_answer() {
        let delay = Duration::from_millis(400);
        let sim = Simulator::start(SimConfig {
            connect_delay: delay,
            ..SimConfig::default()
        })
        .unwrap();
        let started = Instant::now();
        let mut tcp = TcpStream::connect(sim.addr()).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        tcp.write_all(&get("/organizations", "")).unwrap();
        let reply = read_reply(&mut tcp);
        assert_eq!(reply.status, 200);
        assert!(started.elapsed() >= delay, "{:?}", started.elapsed());
    }

    #[test]
    fn an_unusable_certificate_is_refused_at_start() {
        let err = Simulator::start(SimConfig {
            tls: Some(SimTls {
                cert_chain_pem: String::new(),
                key_pem: String::new(),
            }),
            ..SimConfig::default()
        })
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}

//! A tiny HTTP `CONNECT` proxy on 127.0.0.1 for tests: it tunnels to loopback targets only,
//! can require Basic credentials, and records every request it was asked.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::http;

/// Largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// How long a client may stay silent while sending its request head.
const IDLE_LIMIT: Duration = Duration::from_secs(30);
/// Read timeout while reading the head, so that the stop flag is noticed.
const POLL: Duration = Duration::from_millis(100);
/// How long connecting to the target may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One request as the proxy received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRequest {
    /// The request target as sent (`host:port` for a `CONNECT`); empty when unreadable.
    pub target: String,
    /// Whether the request carried the credentials the proxy requires (always true when it
    /// requires none).
    pub authorized: bool,
    /// The status answered: 200 for a tunnel.
    pub status: u16,
}

/// State shared by the proxy handle and its threads.
struct Shared {
    stop: AtomicBool,
    credentials: Option<(String, String)>,
    tunnels: AtomicU64,
    requests: Mutex<Vec<ProxyRequest>>,
    /// Open sockets (both ends of each tunnel), so that stopping can shut them down.
    sockets: Mutex<HashMap<u64, TcpStream>>,
    next_id: AtomicU64,
}

/// Locks a mutex, recovering it if a thread panicked while holding it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Keeps a handle on `stream` so that stopping can shut it down. None when it cannot be
    /// cloned.
    fn register(&self, stream: &TcpStream) -> Option<u64> {
        let clone = stream.try_clone().ok()?;
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        lock(&self.sockets).insert(id, clone);
        // Stopping may have swept the sockets just before this one was added.
        if self.stop.load(Ordering::SeqCst) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        Some(id)
    }

    fn unregister(&self, id: u64) {
        lock(&self.sockets).remove(&id);
    }

    fn record(&self, target: &str, authorized: bool, status: u16) {
        lock(&self.requests).push(ProxyRequest {
            target: target.to_string(),
            authorized,
            status,
        });
    }
}

/// A running `CONNECT` proxy on 127.0.0.1. Dropping it stops it, closes its tunnels and waits
/// for its threads.
pub struct ConnectProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ConnectProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectProxy")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl ConnectProxy {
    /// Binds a free port on 127.0.0.1 and starts serving. With `credentials` (user,
    /// password), every request must carry them as `Proxy-Authorization: Basic`.
    pub fn start(credentials: Option<(String, String)>) -> io::Result<ConnectProxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            credentials,
            tunnels: AtomicU64::new(0),
            requests: Mutex::new(Vec::new()),
            sockets: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        });
        let accept = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("connect-proxy-accept".into())
                .spawn(move || accept_loop(listener, shared))?
        };
        Ok(ConnectProxy {
            shared,
            addr,
            accept: Some(accept),
        })
    }

    /// `http://127.0.0.1:PORT`, for `HTTPS_PROXY`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Tunnels opened since start.
    pub fn tunnels(&self) -> u64 {
        self.shared.tunnels.load(Ordering::SeqCst)
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<ProxyRequest> {
        lock(&self.shared.requests).clone()
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for stream in lock(&self.shared.sockets).values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(handle) = self.accept.take() {
            let _ = handle.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = conn else {
            // Out of descriptors or similar: back off instead of spinning.
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        let Some(id) = shared.register(&stream) else {
            continue;
        };
        let worker_shared = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name("connect-proxy-conn".into())
            .spawn(move || {
                serve(stream, &worker_shared);
                worker_shared.unregister(id);
            });
        match spawned {
            Ok(handle) => workers.push(handle),
            Err(_) => shared.unregister(id),
        }
        workers.retain(|w| !w.is_finished());
    }
    for w in workers {
        let _ = w.join();
    }
}

/// Why no request head could be read.
enum HeadError {
    TooLarge,
    Gone,
}

/// Reads up to the end of the request head. Returns the head and the bytes read past it.
fn read_head(stream: &mut TcpStream, stop: &AtomicBool) -> Result<(String, Vec<u8>), HeadError> {
    let _ = stream.set_read_timeout(Some(POLL));
    let deadline = Instant::now() + IDLE_LIMIT;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok((String::from_utf8_lossy(&buf).into_owned(), rest));
        }
        if buf.len() > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
            return Err(HeadError::Gone);
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(HeadError::Gone),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return Err(HeadError::Gone),
        }
    }
}

/// Whether `value` (a `Proxy-Authorization` header) carries `user:password` as Basic.
fn basic_matches(value: &str, (user, password): &(String, String)) -> bool {
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    STANDARD
        .decode(token.trim())
        .is_ok_and(|decoded| decoded == format!("{user}:{password}").as_bytes())
}

/// The port of a `CONNECT` target when its host is loopback (`127.0.0.1` or `localhost`);
/// `Err(status)` otherwise: 400 for a malformed target, 403 for another host.
fn loopback_port(target: &str) -> Result<u16, u16> {
    let (host, port) = target.rsplit_once(':').ok_or(400u16)?;
    let port = port.parse::<u16>().map_err(|_| 400u16)?;
    if host == "127.0.0.1" || host.eq_ignore_ascii_case("localhost") {
        Ok(port)
    } else {
        Err(403)
    }
}

fn serve(mut client: TcpStream, shared: &Shared) {
    let _ = client.set_nodelay(true);
    let (head, early) = match read_head(&mut client, &shared.stop) {
        Ok(read) => read,
        Err(HeadError::Gone) => return,
        Err(HeadError::TooLarge) => {
            shared.record("", false, 431);
            return refuse(client, 431);
        }
    };
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let headers: Vec<(&str, &str)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim(), v.trim()))
        .collect();
    let parts: Vec<&str> = request_line.split(' ').collect();
    let (method, target) = match parts.as_slice() {
        [method, target, _version] => (*method, *target),
        _ => ("", ""),
    };
    let authorized = match &shared.credentials {
        None => true,
        Some(credentials) => headers.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case("proxy-authorization") && basic_matches(v, credentials)
        }),
    };

    let status = if method != "CONNECT" {
        405
    } else if !authorized {
        407
    } else {
        match loopback_port(target) {
            Err(status) => status,
            Ok(port) => {
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                    Ok(upstream) => {
                        shared.record(target, authorized, 200);
                        shared.tunnels.fetch_add(1, Ordering::SeqCst);
                        return tunnel(client, upstream, &early, shared);
                    }
                    Err(_) => 502,
                }
            }
        }
    };
    shared.record(target, authorized, status);
    refuse(client, status);
}

/// Answers `status` and closes: half-close, then briefly drain what the client still sends,
/// so that the close does not turn into a reset that could clobber the answer.
fn refuse(mut client: TcpStream, status: u16) {
    let mut answer = format!("HTTP/1.1 {status} {}\r\n", http::reason(status));
    if status == 407 {
        answer.push_str("Proxy-Authenticate: Basic realm=\"test\"\r\n");
    }
    answer.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = client.write_all(answer.as_bytes());
    let _ = client.shutdown(Shutdown::Write);
    let _ = client.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        match client.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// Confirms the tunnel and pipes bytes both ways until both sides are done. `early` holds
/// bytes the client sent right after its request head.
fn tunnel(mut client: TcpStream, mut upstream: TcpStream, early: &[u8], shared: &Shared) {
    let Some(id) = shared.register(&upstream) else {
        return;
    };
    let _ = upstream.set_nodelay(true);
    let ready = client
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .and_then(|()| upstream.write_all(early))
        .and_then(|()| client.set_read_timeout(None));
    let clones = client
        .try_clone()
        .and_then(|c| Ok((c, upstream.try_clone()?)));
    if let (Ok(()), Ok((client_in, upstream_out))) = (ready, clones) {
        let outbound = thread::Builder::new()
            .name("connect-proxy-pipe".into())
            .spawn(move || pipe(client_in, upstream_out));
        match outbound {
            Ok(handle) => {
                pipe(upstream, client);
                let _ = handle.join();
            }
            Err(_) => {
                let _ = client.shutdown(Shutdown::Both);
                let _ = upstream.shutdown(Shutdown::Both);
            }
        }
    }
    shared.unregister(id);
}

/// Copies `from` into `to` until `from` ends, then passes the end on (half-close); on an error
/// both sockets are shut down so that the other direction ends too.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    match io::copy(&mut from, &mut to) {
        Ok(_) => {
            let _ = to.shutdown(Shutdown::Write);
        }
        Err(_) => {
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SimConfig, Simulator};

    /// Sends a request head to the proxy and reads its answer head, byte by byte so that
    /// nothing of a tunnel is consumed. Returns the connection and the head.
    fn ask(proxy: &ConnectProxy, head: &str) -> (TcpStream, String) {
        let mut tcp = TcpStream::connect(proxy.addr()).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        tcp.write_all(head.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let mut byte = [0u8; 1];
        while !answer.ends_with(b"\r\n\r\n") {
            tcp.read_exact(&mut byte).unwrap();
            answer.push(byte[0]);
        }
        (tcp, String::from_utf8(answer).unwrap())
    }

    fn connect_head(target: &str, auth: Option<(&str, &str)>) -> String {
        let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some((user, password)) = auth {
            let token = STANDARD.encode(format!("{user}:{password}"));
            head.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
        }
        head.push_str("\r\n");
        head
    }

    fn credentials() -> Option<(String, String)> {
        Some(("proxy-user".to_string(), "proxy-pass".to_string()))
    }

    #[test]
    fn tunnels_a_request_to_a_loopback_simulator() {
        let sim = Simulator::start(SimConfig::default()).unwrap();
        let proxy = ConnectProxy::start(credentials()).unwrap();
        assert_eq!(proxy.url(), format!("http://{}", proxy.addr()));
        let target = format!("127.0.0.1:{}", sim.port());
        let (mut tcp, answer) = ask(
            &proxy,
            &connect_head(&target, Some(("proxy-user", "proxy-pass"))),
        );
        assert_eq!(answer, "HTTP/1.1 200 Connection Established\r\n\r\n");

        tcp.write_all(b"GET /organizations HTTP/1.1\r\nHost: sim\r\nx-api-key: sim-key-us\r\n\r\n")
            .unwrap();
        let mut reply = Vec::new();
        tcp.read_to_end(&mut reply).unwrap();
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(reply.contains("\"organizations\""), "{reply}");

        assert_eq!(proxy.tunnels(), 1);
        assert_eq!(
            proxy.requests(),
            vec![ProxyRequest {
                target,
                authorized: true,
                status: 200,
            }]
        );
        assert_eq!(sim.request_count(), 1);
        assert_eq!(sim.connections(), 1);
    }

    #[test]
    fn refuses_a_target_that_is_not_loopback() {
        let proxy = ConnectProxy::start(None).unwrap();
        let (_tcp, answer) = ask(&proxy, &connect_head("example.com:443", None));
        assert!(answer.starts_with("HTTP/1.1 403 "), "{answer}");
        assert_eq!(proxy.tunnels(), 0);
        assert_eq!(
            proxy.requests(),
            vec![ProxyRequest {
                target: "example.com:443".into(),
                authorized: true,
                status: 403,
            }]
        );
    }

    #[test]
    fn refuses_missing_or_wrong_credentials_with_407() {
        let sim = Simulator::start(SimConfig::default()).unwrap();
        let proxy = ConnectProxy::start(credentials()).unwrap();
        let target = format!("127.0.0.1:{}", sim.port());
        for auth in [None, Some(("proxy-user", "wrong"))] {
            let (_tcp, answer) = ask(&proxy, &connect_head(&target, auth));
            assert!(
                answer.starts_with("HTTP/1.1 407 Proxy Authentication Required\r\n"),
                "{answer}"
            );
            assert!(
                answer.contains("Proxy-Authenticate: Basic realm=\"test\"\r\n"),
                "{answer}"
            );
        }
        assert_eq!(proxy.tunnels(), 0);
        let requests = proxy.requests();
        assert_eq!(requests.len(), 2);
        assert!(requests.iter().all(|r| !r.authorized && r.status == 407));
        assert_eq!(sim.connections(), 0);
    }

    #[test]
    fn refuses_anything_but_connect_with_405() {
        let proxy = ConnectProxy::start(None).unwrap();
        let (_tcp, answer) = ask(
            &proxy,
            "GET http://127.0.0.1:1/organizations HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        );
        assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
        assert_eq!(proxy.tunnels(), 0);
        assert_eq!(proxy.requests()[0].status, 405);
    }
}

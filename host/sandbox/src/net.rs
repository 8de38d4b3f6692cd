//! The host's HTTP client, behind the one outbound gate ([`crate::outbound::Outbound`]): a
//! pool of keep-alive connections per loaded connector, one TLS configuration for the
//! process, the trust roots (bundled, plus the bundle `SSL_CERT_FILE` names) and the proxy
//! (`HTTPS_PROXY`, `NO_PROXY`, through an HTTP `CONNECT` tunnel).
//!
//! Nothing here decides whether a request may leave: the policy has checked it before it
//! reaches [`HttpClient::send`]. The proxy is chosen by the request's own (checked) URL, and
//! the TLS session runs end to end with the API through the tunnel, so the proxy sees only
//! the host name and port.

use bytes::Bytes;
use http::Uri;
use http::uri::Scheme;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

/// Idle connections kept per host in one pool: above the most requests a connector has in
/// flight (`concurrency`, at most 16), so a sync's connections are all kept between pages.
pub const MAX_IDLE_PER_HOST: usize = 16;
/// How long an idle connection is kept before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The environment variable naming extra trusted CA certificates (PEM), as curl and OpenSSL
/// read it.
pub const CERT_FILE_VAR: &str = "SSL_CERT_FILE";

/// A network setting the host was given that it cannot use. The messages never hold a proxy
/// URL (it may carry a password).
#[derive(Debug, Clone, thiserror::Error)]
pub enum NetworkError {
    /// `SSL_CERT_FILE` names a file that cannot be read.
    #[error(
        "SSL_CERT_FILE names {path}, which could not be read ({reason}); point it at a PEM file holding the CA certificates to trust, or unset it"
    )]
    CertFileUnreadable {
        /// The file named.
        path: PathBuf,
        /// Why it could not be read.
        reason: String,
    },
    /// `SSL_CERT_FILE` names a file that holds no usable certificate.
    #[error(
        "SSL_CERT_FILE names {path}, which holds no usable PEM certificate ({reason}); it must hold `-----BEGIN CERTIFICATE-----` blocks"
    )]
    CertFileEmpty {
        /// The file named.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A proxy variable holds something that is not a usable proxy URL.
    #[error(
        "{var} is set but is not a proxy this host can use ({reason}); give it as http://[user:password@]host:port"
    )]
    BadProxy {
        /// The variable (`HTTPS_PROXY` or `https_proxy`).
        var: &'static str,
        /// What is wrong (never the value itself).
        reason: &'static str,
    },
}

/// Where the network settings come from: the environment ([`NetworkSettings::from_env`]), or
/// given directly (tests).
#[derive(Debug, Clone, Default)]
pub struct NetworkSettings {
    /// A PEM bundle of CA certificates trusted besides the bundled roots.
    pub cert_file: Option<PathBuf>,
    /// The proxy for `https://` destinations, and the variable it came from.
    pub https_proxy: Option<(&'static str, String)>,
    /// Hosts reached directly (curl's `NO_PROXY` rules).
    pub no_proxy: Option<String>,
}

impl NetworkSettings {
    /// `SSL_CERT_FILE`, `HTTPS_PROXY` (or `https_proxy`) and `NO_PROXY` (or `no_proxy`);
    /// empty values count as unset.
    pub fn from_env() -> NetworkSettings {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        NetworkSettings {
            cert_file: std::env::var_os(CERT_FILE_VAR)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            https_proxy: var("HTTPS_PROXY")
                .map(|v| ("HTTPS_PROXY", v))
                .or_else(|| var("https_proxy").map(|v| ("https_proxy", v))),
            no_proxy: var("NO_PROXY").or_else(|| var("no_proxy")),
        }
    }
}

/// The proxy in use for `https://` destinations.
struct Proxy {
    matcher: Matcher,
    /// `http://host:port`: how the proxy is shown (never its credentials).
    shown: Arc<str>,
}

/// The process's network settings, shared by every pool: one TLS configuration (bundled
/// roots plus `SSL_CERT_FILE`) and the proxy.
pub struct Network {
    tls: Arc<rustls::ClientConfig>,
    cert_file: Option<PathBuf>,
    proxy: Option<Proxy>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("cert_file", &self.cert_file)
            .field("proxy", &self.proxy.as_ref().map(|p| &p.shown))
            .finish_non_exhaustive()
    }
}

impl Network {
    /// Builds the settings: reads and checks the CA bundle and the proxy URL.
    pub fn new(settings: NetworkSettings) -> Result<Network, NetworkError> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = &settings.cert_file {
            for cert in read_cert_file(path)? {
                roots.add(cert).map_err(|e| NetworkError::CertFileEmpty {
                    path: path.clone(),
                    reason: format!("a certificate could not be used: {e}"),
                })?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| NetworkError::CertFileEmpty {
                path: PathBuf::new(),
                reason: format!("no TLS version available: {e}"),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let proxy = match settings.https_proxy {
            None => None,
            Some((var, value)) => Some(proxy(var, &value, settings.no_proxy.as_deref())?),
        };
        Ok(Network {
            tls: Arc::new(tls),
            cert_file: settings.cert_file,
            proxy,
        })
    }

    /// The settings from the environment, read and checked once for the process.
    pub fn shared() -> Result<Arc<Network>, NetworkError> {
        static SHARED: OnceLock<Result<Arc<Network>, NetworkError>> = OnceLock::new();
        SHARED
            .get_or_init(|| Network::new(NetworkSettings::from_env()).map(Arc::new))
            .clone()
    }

    /// The proxy a request to `url` goes through (`http://host:port`, no credentials), or
    /// `None` when it goes directly.
    pub fn proxy_for(&self, url: &Uri) -> Option<Arc<str>> {
        if url.scheme() != Some(&Scheme::HTTPS) {
            return None;
        }
        let proxy = self.proxy.as_ref()?;
        proxy.matcher.intercept(url).map(|_| proxy.shown.clone())
    }

    /// The CA bundle trusted besides the bundled roots, if any.
    pub fn cert_file(&self) -> Option<&Path> {
        self.cert_file.as_deref()
    }
}

/// Reads every certificate of a PEM bundle.
fn read_cert_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, NetworkError> {
    let bytes = std::fs::read(path).map_err(|e| NetworkError::CertFileUnreadable {
        path: path.to_path_buf(),
        reason: e.kind().to_string(),
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| NetworkError::CertFileEmpty {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(NetworkError::CertFileEmpty {
            path: path.to_path_buf(),
            reason: "no certificate found".into(),
        });
    }
    Ok(certs)
}

/// Checks a proxy URL and builds its matcher. The value is never echoed: it may hold a
/// password.
fn proxy(var: &'static str, value: &str, no_proxy: Option<&str>) -> Result<Proxy, NetworkError> {
    let bad = |reason| NetworkError::BadProxy { var, reason };
    let value = value.trim();
    let full = if value.contains("://") {
        value.to_string()
    } else {
        format!("http://{value}")
    };
    let uri: Uri = full.parse().map_err(|_| bad("it is not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(bad(
                "a proxy reached over TLS is not supported; the tunnel to the API is TLS end to end either way",
            ));
        }
        _ => return Err(bad("only http:// proxies are supported")),
    }
    let authority = uri.authority().ok_or_else(|| bad("it names no host"))?;
    let host_port = authority
        .as_str()
        .rsplit_once('@')
        .map_or(authority.as_str(), |(_, hp)| hp);
    if host_port.is_empty() || host_port.starts_with(':') {
        return Err(bad("it names no host"));
    }
    let shown: Arc<str> = if authority.port().is_some() {
        format!("http://{host_port}").into()
    } else {
        format!("http://{host_port}:80").into()
    };
    let matcher = Matcher::builder()
        .https(full.as_str())
        .no(no_proxy.unwrap_or(""))
        .build();
    // The matcher drops what it cannot parse: make sure it takes this one.
    let probe = Matcher::builder().https(full.as_str()).build();
    if probe
        .intercept(&Uri::from_static("https://scopable.invalid/"))
        .is_none()
    {
        return Err(bad("it could not be parsed as a proxy URL"));
    }
    Ok(Proxy { matcher, shown })
}

/// What a connection is: told to each response that used it.
#[derive(Clone)]
struct ConnInfo {
    /// Set until the connection's first response takes it.
    fresh: Arc<AtomicBool>,
    /// The proxy the connection goes through.
    via: Option<Arc<str>>,
}

/// How a request reached the server, for its audit row: a `new` or `reused` connection,
/// with the proxy it goes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionUse {
    /// Whether the connection had carried an earlier request.
    pub reused: bool,
    /// The proxy (`http://host:port`), if any.
    pub via: Option<Arc<str>>,
}

impl std::fmt::Display for ConnectionUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.reused { "reused" } else { "new" })?;
        if let Some(via) = &self.via {
            write!(f, " via proxy {via}")?;
        }
        Ok(())
    }
}

/// Why a connection could not be made, as the connector saw it.
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("connecting took longer than {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Tcp(Box<dyn std::error::Error + Send + Sync>),
    #[error("the proxy {via}: {error}")]
    Proxy { via: Arc<str>, error: TunnelError },
    #[error("the host name {0:?} cannot be used for TLS")]
    Name(String),
    #[error("TLS: {0}")]
    Tls(rustls::Error),
    #[error("TLS handshake: {0}")]
    Handshake(std::io::Error),
}

/// A failure the host can name better than the component can, recorded in the call's report
/// so that the call fails with it (not retried): a certificate that was not trusted, or a
/// proxy that refused the tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionFailure {
    /// The server's certificate was refused: `problem` says why, in plain words.
    Certificate {
        /// The host whose certificate it was.
        host: String,
        /// Unknown issuer, expired, wrong name...
        problem: String,
    },
    /// The proxy refused or failed the tunnel.
    Proxy {
        /// The proxy (`http://host:port`).
        via: String,
        /// What it answered.
        problem: String,
    },
}

/// Makes one connection for the pool: TCP (directly, or a `CONNECT` tunnel through the
/// proxy), then TLS for `https://`, all within the connect timeout.
#[derive(Clone)]
struct Connector {
    network: Arc<Network>,
    tcp: HttpConnector,
    timeout: Duration,
    opened: Arc<AtomicU64>,
}

type Connecting = Pin<Box<dyn Future<Output = Result<Stream, ConnectError>> + Send>>;

impl tower_service::Service<Uri> for Connector {
    type Response = Stream;
    type Error = ConnectError;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Connecting {
        let this = self.clone();
        Box::pin(async move {
            let timeout = this.timeout;
            tokio::time::timeout(timeout, this.connect(dst))
                .await
                .unwrap_or(Err(ConnectError::Timeout(timeout)))
        })
    }
}

impl Connector {
    async fn connect(self, dst: Uri) -> Result<Stream, ConnectError> {
        use tower_service::Service;
        let https = dst.scheme() == Some(&Scheme::HTTPS);
        let proxy = self
            .network
            .proxy
            .as_ref()
            .filter(|_| https)
            .and_then(|p| Some((p.matcher.intercept(&dst)?, p.shown.clone())));
        let (tcp, via) = match proxy {
            Some((intercept, shown)) => {
                let proxied = |error| ConnectError::Proxy {
                    via: shown.clone(),
                    error,
                };
                let mut tcp = self.tcp.clone();
                let stream = tcp
                    .call(intercept.uri().clone())
                    .await
                    .map_err(|e| proxied(TunnelError::Connect(Box::new(e))))?;
                let stream = tunnel(stream.into_inner(), &dst, intercept.basic_auth())
                    .await
                    .map_err(proxied)?;
                (TokioIo::new(stream), Some(shown))
            }
            None => {
                let mut tcp = self.tcp.clone();
                let stream = tcp
                    .call(dst.clone())
                    .await
                    .map_err(|e| ConnectError::Tcp(Box::new(e)))?;
                (stream, None)
            }
        };
        let tcp = tcp.into_inner();
        self.opened.fetch_add(1, Ordering::Relaxed);
        let info = ConnInfo {
            fresh: Arc::new(AtomicBool::new(true)),
            via,
        };
        if !https {
            return Ok(Stream {
                io: TokioIo::new(Io::Plain(tcp)),
                h2: false,
                info,
            });
        }
        let host = dst.host().unwrap_or("");
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| ConnectError::Name(host.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(self.network.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| {
                match e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                {
                    Some(tls) => ConnectError::Tls(tls.clone()),
                    None => ConnectError::Handshake(e),
                }
            })?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok(Stream {
            io: TokioIo::new(Io::Tls(Box::new(tls))),
            h2,
            info,
        })
    }
}

/// Why a `CONNECT` tunnel through the proxy did not open.
#[derive(Debug, thiserror::Error)]
enum TunnelError {
    #[error("it could not be reached: {0}")]
    Connect(Box<dyn std::error::Error + Send + Sync>),
    #[error("the connection to it failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("it closed the connection before answering")]
    Closed,
    #[error("its answer was not HTTP")]
    Garbled,
    #[error("it answered {0}")]
    Status(u16),
}

/// Largest proxy answer head read.
const MAX_TUNNEL_HEAD: usize = 8 * 1024;

/// Asks the proxy on `stream` for a tunnel to `dst`'s host and port (`CONNECT host:port`),
/// with `auth` as `Proxy-Authorization`; the stream then carries the tunnel.
async fn tunnel(
    mut stream: TcpStream,
    dst: &Uri,
    auth: Option<&http::HeaderValue>,
) -> Result<TcpStream, TunnelError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = dst.host().unwrap_or("");
    let port = dst.port_u16().unwrap_or(443);
    let mut head =
        format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n").into_bytes();
    if let Some(auth) = auth {
        head.extend_from_slice(b"Proxy-Authorization: ");
        head.extend_from_slice(auth.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    stream.write_all(&head).await?;
    // Read the answer a byte at a time: nothing after its head may be taken from the stream,
    // which then belongs to TLS.
    let mut answer = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") && !answer.ends_with(b"\n\n") {
        if answer.len() >= MAX_TUNNEL_HEAD {
            return Err(TunnelError::Garbled);
        }
        if stream.read(&mut byte).await? == 0 {
            return Err(TunnelError::Closed);
        }
        answer.push(byte[0]);
    }
    let status = std::str::from_utf8(&answer)
        .ok()
        .and_then(|text| text.lines().next())
        .filter(|line| line.starts_with("HTTP/1."))
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or(TunnelError::Garbled)?;
    match status {
        200..=299 => Ok(stream),
        other => Err(TunnelError::Status(other)),
    }
}

/// A connection's byte stream: plain TCP (loopback only, the manifest's rule), or TLS.
enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One pooled connection, as hyper sees it.
struct Stream {
    io: TokioIo<Io>,
    h2: bool,
    info: ConnInfo,
}

impl hyper::rt::Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        let connected = Connected::new().extra(self.info.clone());
        if self.h2 {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

/// The body every request is sent with (connectors are read-only).
type Empty = http_body_util::Empty<Bytes>;

/// A pool of keep-alive connections, HTTP/1.1 or HTTP/2 as the server offers, shared by every
/// call made with one loaded connector. Cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<Connector, Empty>,
    opened: Arc<AtomicU64>,
    network: Arc<Network>,
    connect_timeout: Duration,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("opened", &self.opened())
            .field("network", &self.network)
            .finish_non_exhaustive()
    }
}

/// A response as the outbound gate receives it, with how it travelled.
pub struct Sent {
    /// The response; its body fails with `ConnectionReadTimeout` when the server stays silent
    /// longer than the between-bytes timeout.
    pub response: http::Response<WasiBody>,
    /// The connection it came over.
    pub connection: Option<ConnectionUse>,
}

/// A request that got no response.
pub struct SendFailure {
    /// What the component is told.
    pub error: HttpError,
    /// What the host can say better, when it can.
    pub failure: Option<ConnectionFailure>,
    /// The proxy the request went through, if any.
    pub via: Option<Arc<str>>,
    /// The cause, for the audit row.
    pub detail: String,
}

impl HttpClient {
    /// A pool using `network`, giving each new connection `connect_timeout` (TCP, proxy
    /// tunnel and TLS handshake together).
    pub fn new(network: Arc<Network>, connect_timeout: Duration) -> HttpClient {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        let opened = Arc::new(AtomicU64::new(0));
        let connector = Connector {
            network: network.clone(),
            tcp,
            timeout: connect_timeout,
            opened: opened.clone(),
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        HttpClient {
            client,
            opened,
            network,
            connect_timeout,
        }
    }

    /// Connections this pool has opened so far.
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// The network settings in use.
    pub fn network(&self) -> &Arc<Network> {
        &self.network
    }

    /// Sends a request (already checked by the policy, its body empty) over a pooled
    /// connection. `options` bound the wait for the connection (`connect_timeout`, applied
    /// when the pool was made), for the response head (`first_byte_timeout`) and between
    /// body frames (`between_bytes_timeout`).
    pub async fn send(
        &self,
        request: http::Request<Empty>,
        options: RequestOptions,
    ) -> Result<Sent, SendFailure> {
        let via = self.network.proxy_for(request.uri());
        let host = request.uri().host().unwrap_or("").to_string();
        let first_byte = options
            .first_byte_timeout
            .unwrap_or(Duration::from_secs(600));
        // The connector bounds connecting; this bounds the whole wait for the head.
        let wait = first_byte + self.connect_timeout;
        let response = match tokio::time::timeout(wait, self.client.request(request)).await {
            Err(_) => {
                return Err(SendFailure {
                    error: HttpError::ConnectionReadTimeout,
                    failure: None,
                    via,
                    detail: format!("no response within {wait:?}"),
                });
            }
            Ok(Err(e)) => return Err(classify(&e, &host, via)),
            Ok(Ok(response)) => response,
        };
        let connection = response
            .extensions()
            .get::<ConnInfo>()
            .map(|info| ConnectionUse {
                reused: !info.fresh.swap(false, Ordering::Relaxed),
                via: info.via.clone(),
            });
        let between = options
            .between_bytes_timeout
            .unwrap_or(Duration::from_secs(600))
            .max(Duration::from_nanos(1));
        let response = response.map(|incoming| {
            let mut timeout = tokio::time::interval(between);
            timeout.reset();
            TimedBody { incoming, timeout }.boxed_unsync()
        });
        Ok(Sent {
            response,
            connection,
        })
    }
}

/// Turns a client failure into what the component is told and what the host can say.
fn classify(
    e: &hyper_util::client::legacy::Error,
    host: &str,
    via: Option<Arc<str>>,
) -> SendFailure {
    let detail = error_chain(e);
    let mut failure = None;
    let error = match find::<ConnectError>(e) {
        Some(ConnectError::Timeout(_)) => HttpError::ConnectionTimeout,
        Some(ConnectError::Tcp(inner)) => tcp_error(inner.as_ref()),
        Some(ConnectError::Name(_)) => HttpError::HttpRequestUriInvalid,
        Some(ConnectError::Handshake(_)) => HttpError::TlsProtocolError,
        Some(ConnectError::Proxy { via, error }) => match error {
            TunnelError::Connect(inner) => tcp_error(inner.as_ref()),
            TunnelError::Io(_) | TunnelError::Closed => HttpError::ConnectionTerminated,
            TunnelError::Status(407) => {
                failure = Some(ConnectionFailure::Proxy {
                    via: via.to_string(),
                    problem: "it asks for a user name and password (407 Proxy Authentication Required); put them in the proxy URL as http://user:password@host:port".into(),
                });
                HttpError::ConnectionRefused
            }
            other => {
                failure = Some(ConnectionFailure::Proxy {
                    via: via.to_string(),
                    problem: format!(
                        "it refused the tunnel ({other}); check the proxy's rules for this host, or add the host to NO_PROXY"
                    ),
                });
                HttpError::ConnectionRefused
            }
        },
        Some(ConnectError::Tls(tls)) => match certificate_problem(tls) {
            Some(problem) => {
                failure = Some(ConnectionFailure::Certificate {
                    host: host.to_string(),
                    problem,
                });
                HttpError::TlsCertificateError
            }
            None => match tls {
                rustls::Error::AlertReceived(alert) => HttpError::TlsAlertReceived {
                    alert_id: Some(u8::from(*alert)),
                    alert_message: Some(format!("{alert:?}")),
                },
                _ => HttpError::TlsProtocolError,
            },
        },
        None => match find::<hyper::Error>(e) {
            Some(h) if h.is_timeout() => HttpError::HttpResponseTimeout,
            Some(h) if h.is_incomplete_message() => HttpError::HttpResponseIncomplete,
            Some(h) if h.is_closed() || h.is_canceled() => HttpError::ConnectionTerminated,
            _ if find::<std::io::Error>(e).is_some() => HttpError::ConnectionTerminated,
            _ => HttpError::HttpProtocolError,
        },
    };
    SendFailure {
        error,
        failure,
        via,
        detail,
    }
}

/// A certificate refusal in plain words, or `None` when the TLS failure is not about the
/// certificate.
fn certificate_problem(e: &rustls::Error) -> Option<String> {
    use rustls::CertificateError as C;
    let rustls::Error::InvalidCertificate(cert) = e else {
        return None;
    };
    Some(match cert {
        C::UnknownIssuer => {
            "unknown issuer: it was signed by a certificate authority this machine does not trust"
                .into()
        }
        C::Expired | C::ExpiredContext { .. } => "the certificate has expired".into(),
        C::NotValidYet | C::NotValidYetContext { .. } => {
            "the certificate is not valid yet (check this machine's clock)".into()
        }
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "wrong name: the certificate is not valid for this host name".into()
        }
        C::Revoked => "the certificate has been revoked".into(),
        other => format!("the certificate was refused ({other:?})"),
    })
}

/// What a TCP connect failure tells the component.
fn tcp_error(e: &(dyn std::error::Error + 'static)) -> HttpError {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => HttpError::ConnectionRefused,
                std::io::ErrorKind::TimedOut => HttpError::ConnectionTimeout,
                _ => HttpError::DestinationUnavailable,
            };
        }
        if err.to_string().contains("dns error") {
            return HttpError::DnsError {
                rcode: Some("address not resolved".into()),
                info_code: None,
            };
        }
        cur = err.source();
    }
    HttpError::DestinationUnavailable
}

/// The first error of type `T` in `e`'s chain of sources.
fn find<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        cur = err.source();
    }
    None
}

/// `e` and its sources, joined: for the audit row (never holds a proxy's credentials: the
/// proxy is only ever shown as `http://host:port`).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// A response body that fails when the server stays silent longer than the between-bytes
/// timeout.
struct TimedBody {
    incoming: hyper::body::Incoming,
    timeout: tokio::time::Interval,
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(if e.is_timeout() {
                HttpError::HttpResponseTimeout
            } else if e.is_incomplete_message() {
                HttpError::HttpResponseIncomplete
            } else {
                HttpError::Hyper(e)
            }))),
            Poll::Ready(Some(Ok(frame))) => {
                self.timeout.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => match self.timeout.poll_tick(cx) {
                Poll::Ready(_) => Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_proxy(value: &str, no_proxy: Option<&str>) -> Result<Network, NetworkError> {
        Network::new(NetworkSettings {
            cert_file: None,
            https_proxy: Some(("HTTPS_PROXY", value.to_string())),
            no_proxy: no_proxy.map(str::to_string),
        })
    }

    fn url(s: &'static str) -> Uri {
        Uri::from_static(s)
    }

    #[test]
    fn the_proxy_is_shown_without_its_credentials_and_only_for_https() {
        let network = with_proxy("http://user:s3cret@127.0.0.1:3128", None).unwrap();
        assert_eq!(
            network
                .proxy_for(&url("https://api.itglue.com/organizations"))
                .as_deref(),
            Some("http://127.0.0.1:3128")
        );
        // Plain http destinations (loopback only) never go through it.
        assert_eq!(network.proxy_for(&url("http://127.0.0.1:9/")), None);
        assert!(!format!("{network:?}").contains("s3cret"));
        let bare = with_proxy("proxy.example:8080", None).unwrap();
        assert_eq!(
            bare.proxy_for(&url("https://api.itglue.com/")).as_deref(),
            Some("http://proxy.example:8080")
        );
    }

    #[test]
    fn no_proxy_hosts_are_reached_directly() {
        let network = with_proxy("http://127.0.0.1:3128", Some("itglue.com, 10.0.0.0/8")).unwrap();
        assert_eq!(network.proxy_for(&url("https://api.itglue.com/")), None);
        assert_eq!(network.proxy_for(&url("https://10.1.2.3/")), None);
        assert!(
            network
                .proxy_for(&url("https://api.example.com/"))
                .is_some()
        );
    }

    #[test]
    fn unusable_proxies_are_refused_without_echoing_them() {
        for value in [
            "https://user:s3cret@proxy.example:443",
            "socks5://user:s3cret@h:1",
            "http://user:s3cret@/",
        ] {
            let e = with_proxy(value, None).unwrap_err();
            let message = e.to_string();
            assert!(message.starts_with("HTTPS_PROXY is set but"), "{message}");
            assert!(!message.contains("s3cret"), "{message}");
        }
    }

    #[test]
    fn a_cert_file_that_cannot_be_used_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let settings = |path: PathBuf| NetworkSettings {
            cert_file: Some(path),
            ..NetworkSettings::default()
        };
        let missing = dir.path().join("missing.pem");
        let e = Network::new(settings(missing.clone())).unwrap_err();
        assert!(matches!(e, NetworkError::CertFileUnreadable { .. }), "{e}");
        assert!(e.to_string().contains("missing.pem"), "{e}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let e = Network::new(settings(junk)).unwrap_err();
        assert!(matches!(e, NetworkError::CertFileEmpty { .. }), "{e}");
        assert!(e.to_string().contains("BEGIN CERTIFICATE"), "{e}");
    }

    #[test]
    fn connection_use_reads_as_the_audit_row_says() {
        let new = ConnectionUse {
            reused: false,
            via: None,
        };
        assert_eq!(new.to_string(), "new");
        let reused = ConnectionUse {
            reused: true,
            via: Some("http://127.0.0.1:3128".into()),
        };
        assert_eq!(reused.to_string(), "reused via proxy http://127.0.0.1:3128");
    }

    #[test]
    fn certificate_refusals_are_named_in_plain_words() {
        use rustls::CertificateError as C;
        let named = |c: C| certificate_problem(&rustls::Error::InvalidCertificate(c)).unwrap();
        assert!(named(C::UnknownIssuer).starts_with("unknown issuer"));
        assert!(named(C::Expired).contains("expired"));
        assert!(named(C::NotValidForName).starts_with("wrong name"));
        assert_eq!(certificate_problem(&rustls::Error::DecryptError), None);
    }
}

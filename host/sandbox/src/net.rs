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
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
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
/// given directly (tests). Its `Debug` never shows the proxy URL (it may hold a password).
#[derive(Clone, Default)]
pub struct NetworkSettings {
    /// A PEM bundle of CA certificates trusted besides the bundled roots.
    pub cert_file: Option<PathBuf>,
    /// The proxy for `https://` destinations, and the variable it came from.
    pub https_proxy: Option<(&'static str, String)>,
    /// Hosts reached directly (curl's `NO_PROXY` rules).
    pub no_proxy: Option<String>,
}

impl std::fmt::Debug for NetworkSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkSettings")
            .field("cert_file", &self.cert_file)
            .field(
                "https_proxy",
                &self.https_proxy.as_ref().map(|(var, _)| var),
            )
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
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
    // User info must be percent-encoded: an `@`, `/`, `?` or `#` in it would move where the
    // host is read from, and the password could then be shown as the proxy's address.
    let rest = full
        .split_once("://")
        .map_or(full.as_str(), |(_, rest)| rest);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority_text, after) = rest.split_at(authority_end);
    if after.contains('@') || authority_text.matches('@').count() > 1 {
        return Err(bad(
            "its user name or password holds `@`, `/`, `?` or `#`: percent-encode them (`%40`, `%2F`, `%3F`, `%23`)",
        ));
    }
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

/// What a connection is.
#[derive(Clone)]
struct ConnInfo {
    /// Its number in its pool (1 for the first opened).
    id: u64,
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
        /// The `SSL_CERT_FILE` bundle in use, when the issuer was unknown to it too.
        bundle: Option<String>,
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

impl Connector {
    /// A new connection to `dst`, within `timeout`.
    async fn connect_within(&self, dst: &Uri, timeout: Duration) -> Result<Stream, ConnectError> {
        tokio::time::timeout(timeout, self.connect(dst.clone()))
            .await
            .unwrap_or(Err(ConnectError::Timeout(timeout)))
    }

    async fn connect(&self, dst: Uri) -> Result<Stream, ConnectError> {
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
        let info = ConnInfo {
            id: self.opened.fetch_add(1, Ordering::Relaxed) + 1,
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

/// The body every request is sent with (connectors are read-only).
type Empty = http_body_util::Empty<Bytes>;

/// A pool of keep-alive connections, HTTP/1.1 or HTTP/2 as the server offers, shared by every
/// call made with one loaded connector. Cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    inner: Arc<Pool>,
}

/// The connections of one [`HttpClient`], by scheme, host and port.
struct Pool {
    connector: Connector,
    idle: std::sync::Mutex<std::collections::HashMap<String, Vec<Idle>>>,
}

/// A connection in the pool: free (HTTP/1.1 once its last response was read), or shared
/// (HTTP/2, any number of requests at once).
struct Idle {
    sender: Sender,
    info: ConnInfo,
    since: std::time::Instant,
}

/// The sending half of a connection; its other half runs on its own task.
enum Sender {
    Http1(hyper::client::conn::http1::SendRequest<Empty>),
    Http2(hyper::client::conn::http2::SendRequest<Empty>),
}

impl Sender {
    /// Another handle on an HTTP/2 connection (requests multiplex over it); `None` for
    /// HTTP/1.1, which carries one request at a time.
    fn share(&self) -> Option<Sender> {
        match self {
            Sender::Http1(_) => None,
            Sender::Http2(s) => Some(Sender::Http2(s.clone())),
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Sender::Http1(s) => s.is_closed(),
            Sender::Http2(s) => s.is_closed(),
        }
    }

    fn is_ready(&self) -> bool {
        match self {
            Sender::Http1(s) => s.is_ready(),
            Sender::Http2(s) => s.is_ready(),
        }
    }

    /// Sends `request` (its URI absolute); when it could not even be written (the connection
    /// had closed), gives it back, as it was given, so that it can go on another connection.
    async fn send(
        &mut self,
        request: http::Request<Empty>,
    ) -> Result<http::Response<hyper::body::Incoming>, (hyper::Error, Option<http::Request<Empty>>)>
    {
        let absolute = request.uri().clone();
        let sent = match self {
            Sender::Http1(s) => s.try_send_request(origin_form(request)).await,
            Sender::Http2(s) => s.try_send_request(request).await,
        };
        sent.map_err(|mut e| {
            let unsent = e.take_message().map(|mut request| {
                *request.uri_mut() = absolute;
                request
            });
            (e.into_error(), unsent)
        })
    }
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("opened", &self.opened())
            .field("network", &self.inner.connector.network)
            .finish_non_exhaustive()
    }
}

/// A response as the outbound gate receives it, with how it travelled.
pub struct Sent {
    /// The response; its body fails with `ConnectionReadTimeout` when the server stays silent
    /// longer than the between-bytes timeout.
    pub response: http::Response<WasiBody>,
    /// The connection it came over.
    pub connection: ConnectionUse,
}

/// A request that got no response.
pub struct SendFailure {
    /// What the component is told.
    pub error: HttpError,
    /// What the host can say better, when it can.
    pub failure: Option<ConnectionFailure>,
    /// The proxy the request went through, if any.
    pub via: Option<Arc<str>>,
    /// The connection the request was sent on; `None` when none could be made.
    pub connection: Option<ConnectionUse>,
    /// The cause, for the audit row: the code the component got, then what happened.
    pub detail: String,
}

/// Why a request got no response, and on which connection.
struct Failure {
    failed: Failed,
    connection: Option<ConnectionUse>,
}

/// Why a request got no response.
enum Failed {
    /// No connection could be made.
    Connect(ConnectError),
    /// The HTTP handshake on a new connection failed.
    Handshake(hyper::Error),
    /// The task opening the connection failed.
    Task(String),
    /// The request failed on its connection.
    Http(hyper::Error),
    /// No response head within the first-byte timeout.
    FirstByte(Duration),
}

impl HttpClient {
    /// A pool using `network`, giving each new connection `connect_timeout` (TCP, proxy
    /// tunnel and TLS handshake together).
    pub fn new(network: Arc<Network>, connect_timeout: Duration) -> HttpClient {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        let inner = Arc::new(Pool {
            connector: Connector {
                network,
                tcp,
                timeout: connect_timeout,
                opened: Arc::new(AtomicU64::new(0)),
            },
            idle: Default::default(),
        });
        // Idle connections are closed once past the idle timeout, used again or not.
        let pool = Arc::downgrade(&inner);
        network_runtime().spawn(async move {
            loop {
                tokio::time::sleep(IDLE_TIMEOUT / 3).await;
                match pool.upgrade() {
                    Some(pool) => pool.purge(),
                    None => break,
                }
            }
        });
        HttpClient { inner }
    }

    /// Connections this pool has opened so far.
    pub fn opened(&self) -> u64 {
        self.inner.connector.opened.load(Ordering::Relaxed)
    }

    /// The network settings in use.
    pub fn network(&self) -> &Arc<Network> {
        &self.inner.connector.network
    }

    /// Sends a request (already checked by the policy, its body empty) over a pooled
    /// connection, or a new one. `connect_timeout` (given to [`HttpClient::new`]) bounds
    /// making a connection; `options`' `first_byte_timeout` bounds the wait for the response
    /// head once the request is sent, and `between_bytes_timeout` the silences within the
    /// body.
    pub async fn send(
        &self,
        request: http::Request<Empty>,
        options: RequestOptions,
    ) -> Result<Sent, SendFailure> {
        let via = self.network().proxy_for(request.uri());
        let host = request.uri().host().unwrap_or("").to_string();
        let first_byte = options
            .first_byte_timeout
            .unwrap_or(Duration::from_secs(600));
        // The component may shorten the connect timeout, never lengthen it.
        let connect = options
            .connect_timeout
            .map_or(self.inner.connector.timeout, |t| {
                t.min(self.inner.connector.timeout)
            });
        let response = self
            .inner
            .exchange(request, connect, first_byte)
            .await
            .map_err(|failure| classify(failure, &host, via, self.network()))?;
        let (response, connection) = response;
        let between = options
            .between_bytes_timeout
            .unwrap_or(Duration::from_secs(600))
            .max(Duration::from_nanos(1));
        let response = response.map(|incoming| {
            TimedBody {
                incoming,
                between,
                timeout: None,
            }
            .boxed_unsync()
        });
        Ok(Sent {
            response,
            connection,
        })
    }
}

/// The pool's key for a URL: scheme, host and port.
fn pool_key(uri: &Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("");
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    format!("{scheme}://{}:{port}", uri.host().unwrap_or(""))
}

impl Pool {
    /// One request and its response head: on a pooled connection when one is free (and again
    /// on a new one if that connection turns out to have closed before the request was
    /// written), else on a new connection.
    async fn exchange(
        &self,
        mut request: http::Request<Empty>,
        connect: Duration,
        first_byte: Duration,
    ) -> Result<(http::Response<hyper::body::Incoming>, ConnectionUse), Failure> {
        let key = pool_key(request.uri());
        if let Some(mut idle) = self.checkout(&key) {
            let used = ConnectionUse {
                reused: true,
                via: idle.info.via.clone(),
            };
            let failed = |failed| Failure {
                failed,
                connection: Some(used.clone()),
            };
            match self.on(&mut idle.sender, request, first_byte).await {
                Ok(response) => {
                    self.checkin(&key, idle);
                    return Ok((response, used));
                }
                // Closed while idle: nothing was written, so it may go on a new connection.
                Err(Err((_, Some(unsent)))) => request = unsent,
                Err(Err((e, None))) => return Err(failed(Failed::Http(e))),
                Err(Ok(f)) => return Err(failed(f)),
            }
        }
        let (mut sender, info) = self.open(request.uri().clone(), connect).await?;
        let used = ConnectionUse {
            reused: false,
            via: info.via.clone(),
        };
        if let Some(shared) = sender.share() {
            // Shared at once: later requests multiplex over it while this one runs.
            self.checkin(
                &key,
                Idle {
                    sender: shared,
                    info: info.clone(),
                    since: std::time::Instant::now(),
                },
            );
        }
        let failed = |failed| Failure {
            failed,
            connection: Some(used.clone()),
        };
        match self.on(&mut sender, request, first_byte).await {
            Ok(response) => {
                if matches!(sender, Sender::Http1(_)) {
                    self.checkin(
                        &key,
                        Idle {
                            sender,
                            info,
                            since: std::time::Instant::now(),
                        },
                    );
                }
                Ok((response, used))
            }
            Err(Ok(f)) => Err(failed(f)),
            Err(Err((e, _))) => Err(failed(Failed::Http(e))),
        }
    }

    /// Opens a connection to `dst` and starts driving it. Both happen on the network runtime
    /// ([`network_runtime`]), which outlives every caller's: a pooled connection must not die
    /// with the job (and its runtime) that happened to open it.
    async fn open(&self, dst: Uri, connect: Duration) -> Result<(Sender, ConnInfo), Failure> {
        let connector = self.connector.clone();
        let opening = network_runtime().spawn(async move {
            let stream = connector
                .connect_within(&dst, connect)
                .await
                .map_err(Failed::Connect)?;
            let info = stream.info.clone();
            let sender = if stream.h2 {
                let (sender, connection) =
                    hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                        .timer(TokioTimer::new())
                        .handshake(stream)
                        .await
                        .map_err(Failed::Handshake)?;
                tokio::spawn(connection);
                Sender::Http2(sender)
            } else {
                let (sender, connection) = hyper::client::conn::http1::handshake(stream)
                    .await
                    .map_err(Failed::Handshake)?;
                tokio::spawn(connection);
                Sender::Http1(sender)
            };
            Ok::<_, Failed>((sender, info))
        });
        match opening.await {
            Ok(Ok(opened)) => Ok(opened),
            Ok(Err(failed)) => Err(Failure {
                failed,
                connection: None,
            }),
            Err(e) => Err(Failure {
                failed: Failed::Task(e.to_string()),
                connection: None,
            }),
        }
    }

    /// Sends on one connection, bounded by the first-byte timeout.
    async fn on(
        &self,
        sender: &mut Sender,
        request: http::Request<Empty>,
        first_byte: Duration,
    ) -> Result<
        http::Response<hyper::body::Incoming>,
        Result<Failed, (hyper::Error, Option<http::Request<Empty>>)>,
    > {
        match tokio::time::timeout(first_byte, sender.send(request)).await {
            Err(_) => Err(Ok(Failed::FirstByte(first_byte))),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(Err(e)),
        }
    }

    /// A free connection for `key`, if one is kept. Connections closed or idle past
    /// [`IDLE_TIMEOUT`] are dropped on the way (of every host: closing them).
    fn checkout(&self, key: &str) -> Option<Idle> {
        self.purge();
        let mut idle = self.idle.lock().ok()?;
        let kept = idle.get_mut(key)?;
        let at = kept.iter().rposition(|c| c.sender.is_ready())?;
        match kept[at].sender.share() {
            // HTTP/2 stays in the pool for others to share.
            Some(sender) => Some(Idle {
                sender,
                info: kept[at].info.clone(),
                since: kept[at].since,
            }),
            None => Some(kept.swap_remove(at)),
        }
    }

    /// Drops the connections that closed or stayed idle past [`IDLE_TIMEOUT`] (which closes
    /// them).
    fn purge(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.retain(|_, kept| {
                kept.retain(|c| !c.sender.is_closed() && c.since.elapsed() < IDLE_TIMEOUT);
                !kept.is_empty()
            });
        }
    }

    /// Keeps a connection for later requests (an HTTP/1.1 one is free once its response has
    /// been read), up to [`MAX_IDLE_PER_HOST`] per host.
    fn checkin(&self, key: &str, mut connection: Idle) {
        if matches!(connection.sender, Sender::Http2(_)) {
            // Already shared in the pool.
            if let Ok(mut idle) = self.idle.lock() {
                let kept = idle.entry(key.to_string()).or_default();
                let full = kept.len() >= MAX_IDLE_PER_HOST;
                match kept.iter_mut().find(|c| c.info.id == connection.info.id) {
                    // Used just now: idle from now on.
                    Some(shared) => shared.since = std::time::Instant::now(),
                    None if !full => kept.push(connection),
                    None => {}
                }
            }
            return;
        }
        connection.since = std::time::Instant::now();
        if let Ok(mut idle) = self.idle.lock() {
            let kept = idle.entry(key.to_string()).or_default();
            if kept.len() < MAX_IDLE_PER_HOST {
                kept.push(connection);
            }
        }
    }
}

/// An HTTP/1.1 request names only its path and query on the wire; the host goes in `Host`.
fn origin_form(mut request: http::Request<Empty>) -> http::Request<Empty> {
    if !request.headers().contains_key(http::header::HOST)
        && let Some(authority) = request.uri().authority()
        && let Ok(value) = http::HeaderValue::from_str(authority.as_str())
    {
        request.headers_mut().insert(http::header::HOST, value);
    }
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    if let Ok(uri) = path.parse() {
        *request.uri_mut() = uri;
    }
    request
}

/// Turns a failure into what the component is told and what the host can say.
fn classify(
    Failure { failed, connection }: Failure,
    host: &str,
    via: Option<Arc<str>>,
    network: &Network,
) -> SendFailure {
    let mut failure = None;
    let (error, cause) = match failed {
        Failed::Task(e) => (
            HttpError::InternalError(Some("the connection task failed".into())),
            e,
        ),
        Failed::FirstByte(after) => (
            HttpError::ConnectionReadTimeout,
            format!("no response head within {} ms", after.as_millis()),
        ),
        Failed::Handshake(e) => (HttpError::HttpProtocolError, error_chain(&e)),
        Failed::Http(e) => {
            let error = if e.is_timeout() {
                HttpError::HttpResponseTimeout
            } else if e.is_incomplete_message() {
                HttpError::HttpResponseIncomplete
            } else if e.is_closed() || e.is_canceled() {
                HttpError::ConnectionTerminated
            } else if e.is_parse() || e.is_parse_status() {
                HttpError::HttpProtocolError
            } else {
                HttpError::ConnectionTerminated
            };
            (error, error_chain(&e))
        }
        Failed::Connect(e) => {
            let error = match &e {
                ConnectError::Timeout(_) => HttpError::ConnectionTimeout,
                ConnectError::Tcp(inner) => tcp_error(inner.as_ref()),
                ConnectError::Name(_) => HttpError::HttpRequestUriInvalid,
                ConnectError::Handshake(_) => HttpError::TlsProtocolError,
                ConnectError::Proxy { via, error } => match error {
                    TunnelError::Connect(inner) => tcp_error(inner.as_ref()),
                    TunnelError::Io(_) | TunnelError::Closed => HttpError::ConnectionTerminated,
                    TunnelError::Status(407) => {
                        failure = Some(ConnectionFailure::Proxy {
                            via: via.to_string(),
                            problem: "it asks for a user name and password (407 Proxy Authentication Required); put them in the proxy URL as http://user:password@host:port (percent-encoded)".into(),
                        });
                        HttpError::ConnectionRefused
                    }
                    // The proxy could not reach the API, or not in time: as if the API were
                    // unreachable, retried.
                    TunnelError::Status(502 | 503) => HttpError::DestinationUnavailable,
                    TunnelError::Status(504) => HttpError::ConnectionTimeout,
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
                ConnectError::Tls(tls) => match certificate_problem(tls) {
                    Some(problem) => {
                        // Name the bundle in use when it lacks the issuer.
                        let bundle = matches!(
                            tls,
                            rustls::Error::InvalidCertificate(
                                rustls::CertificateError::UnknownIssuer
                            )
                        )
                        .then(|| network.cert_file().map(|p| p.display().to_string()))
                        .flatten();
                        failure = Some(ConnectionFailure::Certificate {
                            host: host.to_string(),
                            problem,
                            bundle,
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
            };
            (error, error_chain(&e))
        }
    };
    SendFailure {
        detail: format!("{error:?} ({cause})"),
        error,
        failure,
        via,
        connection,
    }
}

/// The runtime that opens and drives every pooled connection: one thread, for the life of
/// the process, so that connections outlive the jobs (and their runtimes) that opened them.
/// Requests and their bodies are read from any runtime through hyper's channels.
fn network_runtime() -> &'static tokio::runtime::Handle {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("scopable-net")
                .enable_all()
                .build()
                // Creating a runtime fails only when threads or the reactor cannot be made,
                // the process's resources: nothing can be sent then.
                .unwrap_or_else(|e| panic!("cannot start the network runtime: {e}"))
        })
        .handle()
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
/// timeout, counted from the first read (a body read late, its connection shared with others,
/// is not charged for the wait before it).
struct TimedBody {
    incoming: hyper::body::Incoming,
    between: Duration,
    timeout: Option<tokio::time::Interval>,
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
                if let Some(timeout) = &mut self.timeout {
                    timeout.reset();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                let between = self.between;
                let timeout = self.timeout.get_or_insert_with(|| {
                    let mut timeout = tokio::time::interval(between);
                    timeout.reset();
                    timeout
                });
                match timeout.poll_tick(cx) {
                    Poll::Ready(_) => Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout))),
                    Poll::Pending => Poll::Pending,
                }
            }
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
            "http://user:s3cr@t@proxy.example:3128",
            "http://user:s3cret#x@proxy.example:3128",
            "http://user:s3c/ret@proxy.example:3128",
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
    fn settings_never_show_the_proxy_url() {
        let settings = NetworkSettings {
            https_proxy: Some(("HTTPS_PROXY", "http://u:s3cret@proxy:3128".into())),
            ..NetworkSettings::default()
        };
        let shown = format!("{settings:?}");
        assert!(
            shown.contains("HTTPS_PROXY") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn a_request_a_closed_connection_did_not_take_comes_back_whole() {
        let (client, _server) = tokio::io::duplex(1024);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(client))
            .await
            .unwrap();
        // The connection is gone before the request is written.
        drop(connection);
        let mut sender = Sender::Http1(sender);
        let url = "https://api.example.test:8443/organizations?page%5Bnumber%5D=2";
        let request = http::Request::get(url).body(Empty::new()).unwrap();
        let (_, unsent) = sender.send(request).await.err().unwrap();
        let unsent = unsent.expect("the request comes back");
        assert_eq!(unsent.uri().to_string(), url);
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

#[cfg(test)]
mod http2 {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
    use std::sync::atomic::AtomicUsize;

    /// A CA and a server certificate for 127.0.0.1 it signed: (CA PEM, server chain, key).
    fn certificates() -> (
        String,
        Vec<CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ) {
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let mut leaf = CertificateParams::default();
        leaf.subject_alt_names = vec![SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())];
        let leaf_key = KeyPair::generate().unwrap();
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
        (ca_cert.pem(), vec![leaf_cert.der().clone()], key)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http2_is_used_when_the_server_offers_it_and_one_connection_carries_every_request() {
        let (ca_pem, chain, key) = certificates();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca_pem).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        server.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(
                        |request: http::Request<hyper::body::Incoming>| async move {
                            let body = format!("{:?} {}", request.version(), request.uri().path());
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(Bytes::from(body)),
                            ))
                        },
                    );
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });

        let network = Network::new(NetworkSettings {
            cert_file: Some(ca_file),
            ..NetworkSettings::default()
        })
        .unwrap();
        let client = HttpClient::new(Arc::new(network), Duration::from_secs(5));
        let get = |n: usize| {
            let client = client.clone();
            async move {
                let request = http::Request::get(format!("https://127.0.0.1:{port}/page/{n}"))
                    .body(Empty::new())
                    .unwrap();
                let sent = client
                    .send(request, RequestOptions::default())
                    .await
                    .ok()
                    .unwrap();
                let version = sent.response.version();
                let body = sent
                    .response
                    .into_body()
                    .collect()
                    .await
                    .ok()
                    .unwrap()
                    .to_bytes();
                (
                    version,
                    String::from_utf8_lossy(&body).into_owned(),
                    sent.connection,
                )
            }
        };
        let (version, body, first) = get(0).await;
        assert_eq!(version, http::Version::HTTP_2);
        assert_eq!(body, "HTTP/2.0 /page/0");
        assert!(!first.reused);
        let many: Vec<_> = (1..=8).map(|n| tokio::spawn(get(n))).collect();
        for (n, task) in many.into_iter().enumerate() {
            let (version, body, used) = task.await.unwrap();
            assert_eq!(version, http::Version::HTTP_2);
            assert_eq!(body, format!("HTTP/2.0 /page/{}", n + 1));
            assert!(used.reused, "request {} opened a connection", n + 1);
        }
        // Eight requests at once, multiplexed over the one connection.
        assert_eq!(client.opened(), 1);
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }
}

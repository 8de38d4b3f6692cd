//! A minimal HTTP/1.1 server side over `std::net`, in plain text or TLS: read one request
//! (bounded), write one response. The server decides whether the connection then stays open.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Largest request head (request line and headers) accepted.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Largest request body read; a larger one is refused with 413.
pub(crate) const MAX_BODY: usize = 16 * 1024 * 1024;
/// How long a client may stay silent while sending a request.
pub(crate) const IDLE_LIMIT: Duration = Duration::from_secs(30);
/// Read timeout on the socket, so that blocked reads notice the stop flag.
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// One accepted connection, in plain text or TLS.
pub(crate) enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl Conn {
    /// The socket underneath, for timeouts, shutdown and the linger-zero reset.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &s.sock,
        }
    }

    /// Sends TLS `close_notify` (nothing in plain text), so that the client can tell a
    /// finished answer from a truncated one.
    pub fn close_notify(&mut self) {
        if let Conn::Tls(s) = self {
            s.conn.send_close_notify();
            let _ = s.flush();
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// A parsed request. Fields stay empty when the request was too broken to fill them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
}

impl Request {
    /// Whether the client allows the connection to stay open after the answer: HTTP/1.1
    /// unless it says `Connection: close`, HTTP/1.0 only when it says `keep-alive`.
    pub fn keeps_alive(&self) -> bool {
        let has = |token: &str| {
            self.header_values("connection")
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        if self.version == "HTTP/1.1" {
            !has("close")
        } else {
            has("keep-alive")
        }
    }

    /// Values of the header `name` (lowercase), in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why no complete request could be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The peer closed or went silent before sending a byte, or the server is stopping.
    Gone,
    /// The bytes received are not an acceptable request: answer with this status.
    Bad {
        status: u16,
        detail: String,
        partial: Box<Request>,
    },
}

/// Buffered reading of one request from a stream with a short read timeout, so that the
/// server's stop flag is noticed while a client is silent.
struct Reader<'a> {
    stream: &'a mut Conn,
    stop: &'a AtomicBool,
    buf: Vec<u8>,
    pos: usize,
}

enum Fill {
    Data,
    Eof,
    Gone,
}

impl Reader<'_> {
    /// Reads more bytes into the buffer.
    fn fill(&mut self) -> Fill {
        let mut chunk = [0u8; 16 * 1024];
        let deadline = Instant::now() + IDLE_LIMIT;
        loop {
            if self.stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                return Fill::Gone;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Fill::Eof,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Fill::Data;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue;
                }
                Err(_) => return Fill::Gone,
            }
        }
    }

    fn available(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Consumes `n` body bytes (discarding them). False when the peer went away first.
    fn skip(&mut self, mut n: usize) -> bool {
        loop {
            let take = n.min(self.available());
            self.pos += take;
            n -= take;
            if self.pos == self.buf.len() {
                self.buf.clear();
                self.pos = 0;
            }
            if n == 0 {
                return true;
            }
            if !matches!(self.fill(), Fill::Data) {
                return false;
            }
        }
    }

    /// Reads one CRLF- (or LF-) terminated line of at most `limit` bytes.
    fn line(&mut self, limit: usize) -> Option<String> {
        loop {
            if let Some(i) = self.buf[self.pos..].iter().position(|&b| b == b'\n') {
                let raw = &self.buf[self.pos..self.pos + i];
                let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
                let line = String::from_utf8_lossy(raw).into_owned();
                self.pos += i + 1;
                return Some(line);
            }
            if self.available() > limit || !matches!(self.fill(), Fill::Data) {
                return None;
            }
        }
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn bad(status: u16, detail: &str, partial: &Request) -> ReadError {
    ReadError::Bad {
        status,
        detail: detail.to_string(),
        partial: Box::new(partial.clone()),
    }
}

/// Reads one request, including its body (counted, then discarded).
pub(crate) fn read_request(stream: &mut Conn, stop: &AtomicBool) -> Result<Request, ReadError> {
    // A short timeout turns a blocking read into a poll of the stop flag. Through TLS the
    // timeout surfaces from the socket as `WouldBlock`; rustls keeps its state, so a retry
    // carries on where the read stopped.
    let _ = stream.tcp().set_read_timeout(Some(POLL));
    let mut reader = Reader {
        stream,
        stop,
        buf: Vec::with_capacity(4096),
        pos: 0,
    };
    let mut req = Request::default();

    // Head: wait for the blank line, bounded.
    let head_end = loop {
        if let Some(end) = find_head_end(&reader.buf) {
            break end;
        }
        if reader.buf.len() > MAX_HEAD {
            return Err(bad(431, "request head larger than 64 KiB", &req));
        }
        match reader.fill() {
            Fill::Data => {}
            Fill::Eof | Fill::Gone if reader.buf.is_empty() => return Err(ReadError::Gone),
            Fill::Eof | Fill::Gone => return Err(bad(400, "incomplete request head", &req)),
        }
    };
    if head_end > MAX_HEAD {
        return Err(bad(431, "request head larger than 64 KiB", &req));
    }
    let head = String::from_utf8_lossy(&reader.buf[..head_end]).into_owned();
    reader.pos = head_end;

    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    // Tolerate blank lines before the request line, as RFC 9112 allows.
    let request_line = lines.by_ref().find(|l| !l.is_empty()).unwrap_or("");
    let parts: Vec<&str> = request_line.split(' ').collect();
    let [method, target, version] = parts.as_slice() else {
        return Err(bad(400, "malformed request line", &req));
    };
    if !is_token(method) {
        return Err(bad(400, "malformed method", &req));
    }
    req.method = method.to_string();
    if !target.starts_with('/') {
        return Err(bad(400, "request target must be a path", &req));
    }
    match target.split_once('?') {
        Some((path, query)) => {
            req.path = path.to_string();
            req.query = query.to_string();
        }
        None => req.path = target.to_string(),
    }
    if !matches!(*version, "HTTP/1.1" | "HTTP/1.0") {
        return Err(bad(505, "only HTTP/1.0 and HTTP/1.1 are supported", &req));
    }
    req.version = version.to_string();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            return Err(bad(400, "folded header lines are not accepted", &req));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad(400, "malformed header line", &req));
        };
        if !is_token(name) {
            return Err(bad(400, "malformed header name", &req));
        }
        req.headers.push((
            name.to_ascii_lowercase(),
            value.trim_matches([' ', '\t']).to_string(),
        ));
    }

    // Body.
    let chunked = req
        .header_values("transfer-encoding")
        .any(|v| v.to_ascii_lowercase().contains("chunked"));
    let lengths: Vec<&str> = req.header_values("content-length").collect();
    if chunked && !lengths.is_empty() {
        return Err(bad(400, "both Content-Length and chunked encoding", &req));
    }
    let expects_continue = req
        .header_values("expect")
        .any(|v| v.eq_ignore_ascii_case("100-continue"));
    if chunked {
        if expects_continue {
            send_continue(reader.stream);
        }
        return read_chunked(&mut reader, req);
    }
    let length = match lengths.as_slice() {
        [] => 0,
        [first, rest @ ..] if rest.iter().all(|v| v == first) => match first.parse::<usize>() {
            Ok(n) => n,
            Err(_) => return Err(bad(400, "invalid Content-Length", &req)),
        },
        _ => return Err(bad(400, "conflicting Content-Length headers", &req)),
    };
    if length > MAX_BODY {
        req.body_len = length;
        return Err(bad(413, "request body too large", &req));
    }
    if length > 0 && expects_continue && reader.available() == 0 {
        send_continue(reader.stream);
    }
    if !reader.skip(length) {
        req.body_len = length;
        return Err(bad(400, "request body shorter than Content-Length", &req));
    }
    req.body_len = length;
    Ok(req)
}

/// Tells a client that waits for it to send its body.
fn send_continue(stream: &mut Conn) {
    let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    let _ = stream.flush();
}

fn read_chunked(reader: &mut Reader<'_>, mut req: Request) -> Result<Request, ReadError> {
    loop {
        let Some(size_line) = reader.line(1024) else {
            return Err(bad(400, "malformed chunk size", &req));
        };
        let size_hex = size_line.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_hex, 16) else {
            return Err(bad(400, "malformed chunk size", &req));
        };
        if size == 0 {
            // Trailers, up to the blank line.
            loop {
                match reader.line(MAX_HEAD) {
                    Some(l) if l.is_empty() => return Ok(req),
                    Some(_) => {}
                    None => return Err(bad(400, "malformed chunk trailer", &req)),
                }
            }
        }
        req.body_len = req.body_len.saturating_add(size);
        if req.body_len > MAX_BODY {
            return Err(bad(413, "request body too large", &req));
        }
        if !reader.skip(size) {
            return Err(bad(400, "truncated chunk", &req));
        }
        match reader.line(2) {
            Some(l) if l.is_empty() => {}
            _ => return Err(bad(400, "chunk not followed by CRLF", &req)),
        }
    }
}

/// End of the request head (just after the blank line), if the buffer holds it.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A complete response to write.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Content type of every JSON:API answer.
pub(crate) const JSON_API: &str = "application/vnd.api+json";

impl Response {
    /// A JSON:API response.
    pub fn json<T: serde::Serialize + ?Sized>(status: u16, value: &T) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), JSON_API.into())],
            body: serde_json::to_vec(value).unwrap_or_default(),
        }
    }

    /// A JSON:API error document with one error.
    pub fn error(status: u16, title: &str, detail: &str) -> Response {
        Response::json(
            status,
            &serde_json::json!({"errors": [{
                "status": status.to_string(),
                "title": title,
                "detail": detail,
            }]}),
        )
    }

    /// The status line and headers, with `Content-Length: content_length` and
    /// `Connection: keep-alive` or `Connection: close`.
    pub fn head(&self, content_length: usize, keep_alive: bool) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let connection = if keep_alive { "keep-alive" } else { "close" };
        head.push_str(&format!(
            "Content-Length: {content_length}\r\nConnection: {connection}\r\n\r\n"
        ));
        head.into_bytes()
    }

    /// Writes the whole response.
    pub fn write_to(&self, stream: &mut Conn, keep_alive: bool) -> io::Result<()> {
        let mut bytes = self.head(self.body.len(), keep_alive);
        bytes.extend_from_slice(&self.body);
        stream.write_all(&bytes)?;
        stream.flush()
    }
}

/// The reason phrase for a status code.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        413 => "Content Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
}

/// Percent-decodes a query component (`+` is a space). Invalid escapes are kept as written.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < bytes.len()
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit() =>
            {
                out.push(hex_value(bytes[i + 1]) << 4 | hex_value(bytes[i + 2]));
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        b'A'..=b'F' => digit - b'A' + 10,
        _ => 0,
    }
}

/// Splits a raw query string into decoded `(key, value)` pairs, in order.
pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(pair), String::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_keys_decode_literal_and_encoded_brackets() {
        let q = parse_query("page%5Bsize%5D=10&page[number]=2&filter%5Bname%5D=Acme+Inc%2C&x");
        assert_eq!(
            q,
            vec![
                ("page[size]".to_string(), "10".to_string()),
                ("page[number]".to_string(), "2".to_string()),
                ("filter[name]".to_string(), "Acme Inc,".to_string()),
                ("x".to_string(), String::new()),
            ]
        );
    }

    #[test]
    fn invalid_percent_escapes_are_kept() {
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%41%e2%80%99"), "A\u{2019}");
    }

    #[test]
    fn head_end_accepts_crlf_and_lf() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\nbody"), Some(16));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }
}

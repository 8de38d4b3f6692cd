//! The outbound HTTP policy: one pure function, [`OutboundPolicy::check`], that every request
//! a connector makes passes before anything else touches it. Deny by default.

use crate::manifest::{Manifest, RequestShape};
pub use crate::url::BaseUrl;
use http::{HeaderMap, Method, Uri};
use std::fmt;

/// The only headers a connector may set on a request (lowercase): what a GET needs. Everything
/// else (method overrides, `x-original-url`, forwarding headers, hop-by-hop headers) is refused
/// by the header rule; the credential is added by the host.
pub const GUEST_HEADERS: &[&str] = &[
    "accept",
    "accept-language",
    "user-agent",
    "if-none-match",
    "if-modified-since",
];

/// The audit rule of a storage operation refused because the export is `match`.
pub const NO_STORAGE_IN_MATCH: &str = "no-storage-in-match";

/// Which rule refused a request. Recorded in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Only `GET` is allowed.
    Method,
    /// The scheme differs from the base URL's.
    Scheme,
    /// The host differs from the base URL's.
    Host,
    /// The port differs from the base URL's.
    Port,
    /// `..`, `.`, `//`, a backslash or a percent-encoded separator or dot in the path.
    Traversal,
    /// The path is not one the manifest declares.
    Path,
    /// A query key the request shape does not declare, or a pinned value that differs.
    Query,
    /// The guest set a header outside [`GUEST_HEADERS`] (the credential, `authorization` and
    /// `cookie` included).
    Header,
    /// The export call already made its maximum number of requests.
    Budget,
    /// The request carries a body (connectors are read-only).
    Body,
    /// The export may not use the network at all (`match` is a pure function).
    NoNetwork,
    /// `match` may not use storage (it would carry Scopable's records to a later call).
    NoStorage,
    /// The export call already made its maximum number of storage operations.
    StorageOps,
}

impl Rule {
    /// The rule's stable name, as stored in audit records.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Method => "method",
            Rule::Scheme => "scheme",
            Rule::Host => "host",
            Rule::Port => "port",
            Rule::Traversal => "path-traversal",
            Rule::Path => "path",
            Rule::Query => "query",
            Rule::Header => "header",
            Rule::Budget => "request-budget",
            Rule::Body => "body",
            Rule::NoNetwork => "no-network",
            Rule::NoStorage => NO_STORAGE_IN_MATCH,
            Rule::StorageOps => "storage-ops",
        }
    }
}

/// A refused request: the rule and a message saying what would have to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The rule that refused it.
    pub rule: Rule,
    /// What was refused and which manifest setting would allow it.
    pub message: String,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "denied by rule {}: {}", self.rule.name(), self.message)
    }
}

#[derive(Debug, Clone)]
enum QueryRule {
    Any(String),
    Pinned(String, String),
    Prefix(String),
}

impl QueryRule {
    fn parse(text: &str) -> QueryRule {
        if let Some(prefix) = text.strip_suffix("[*]") {
            QueryRule::Prefix(format!("{prefix}["))
        } else if let Some((k, v)) = text.split_once('=') {
            QueryRule::Pinned(k.to_string(), v.to_string())
        } else {
            QueryRule::Any(text.to_string())
        }
    }

    fn allows(&self, key: &str, value: &str) -> bool {
        match self {
            QueryRule::Any(k) => k == key,
            QueryRule::Pinned(k, v) => k == key && v == value,
            QueryRule::Prefix(p) => key.starts_with(p.as_str()) && key.ends_with(']'),
        }
    }
}

#[derive(Debug, Clone)]
struct Shape {
    path: String,
    query: Vec<QueryRule>,
}

/// The outbound HTTP policy for one connector and one base URL.
#[derive(Debug, Clone)]
pub struct OutboundPolicy {
    base: BaseUrl,
    shapes: Vec<Shape>,
    credential_header: String,
    max_requests: u32,
}

impl OutboundPolicy {
    /// Builds the policy from a manifest and the base URL chosen for this run.
    pub fn new(manifest: &Manifest, base: BaseUrl) -> OutboundPolicy {
        OutboundPolicy {
            base,
            shapes: manifest.requests.iter().map(shape).collect(),
            credential_header: manifest.credential.header.to_ascii_lowercase(),
            max_requests: manifest.limits.max_requests_per_call,
        }
    }

    /// The base URL requests must go to.
    pub fn base(&self) -> &BaseUrl {
        &self.base
    }

    /// Checks one request. `already_sent` is how many requests this export call has made.
    /// Returns the denial for the first rule that fails, in a fixed order: budget, method,
    /// scheme, host, port, headers, traversal, path, query.
    pub fn check(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        already_sent: u32,
    ) -> Result<(), Denial> {
        let deny = |rule, message: String| Err(Denial { rule, message });
        if already_sent >= self.max_requests {
            return deny(
                Rule::Budget,
                format!(
                    "this call already made {already_sent} requests; raise [limits] max_requests_per_call to allow more"
                ),
            );
        }
        if method != Method::GET {
            return deny(
                Rule::Method,
                format!("{method} is not allowed: connectors are read-only (GET only)"),
            );
        }
        let scheme = uri.scheme_str().unwrap_or("").to_ascii_lowercase();
        if scheme != self.base.scheme {
            return deny(
                Rule::Scheme,
                format!(
                    "scheme {scheme:?} differs from the base URL's {}",
                    self.base.scheme
                ),
            );
        }
        let Some(authority) = uri.authority() else {
            return deny(Rule::Host, "the request has no host".into());
        };
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if authority.as_str().contains('@') || host != self.base.host {
            return deny(
                Rule::Host,
                format!(
                    "host {host:?} is not the configured API host {:?}; only the manifest's region URLs (or --endpoint) are reachable",
                    self.base.host
                ),
            );
        }
        let default_port = if scheme == "https" { 443 } else { 80 };
        let port = authority.port_u16().unwrap_or(default_port);
        if port != self.base.port {
            return deny(
                Rule::Port,
                format!("port {port} differs from the base URL's {}", self.base.port),
            );
        }
        for name in headers.keys() {
            let name = name.as_str();
            if name == self.credential_header || name == "authorization" || name == "cookie" {
                return deny(
                    Rule::Header,
                    format!(
                        "the connector may not set {name:?}: the host adds the credential itself"
                    ),
                );
            }
            if name == "host" {
                // The host sets `host` from the URL's authority; a second value, or another
                // one, is the guest's.
                let mut values = headers.get_all(http::header::HOST).iter();
                let single = values
                    .next()
                    .is_some_and(|v| v.as_bytes() == authority.as_str().as_bytes())
                    && values.next().is_none();
                if single {
                    continue;
                }
                return deny(
                    Rule::Header,
                    "the connector may not set \"host\": the host sets it from the URL".into(),
                );
            }
            // Whether a body is declared is the body rule's to judge.
            let body_header = name == "content-length" || name == "transfer-encoding";
            if !body_header && !GUEST_HEADERS.contains(&name) {
                return deny(
                    Rule::Header,
                    format!(
                        "the connector may not set {name:?}: a GET carries only {}",
                        GUEST_HEADERS.join(", ")
                    ),
                );
            }
        }
        let path = uri.path();
        if has_traversal(path) {
            return deny(
                Rule::Traversal,
                format!("path {path:?} contains '..', '.', '//', '\\' or an encoded separator"),
            );
        }
        let Some(rest) = strip_prefix_segments(path, &self.base.prefix) else {
            return deny(
                Rule::Path,
                format!(
                    "path {path:?} is outside the base URL's prefix {:?}",
                    self.base.prefix
                ),
            );
        };
        let Some(shape) = self.shapes.iter().find(|s| s.path == rest) else {
            return deny(
                Rule::Path,
                format!(
                    "GET {rest} is not declared; the manifest's [[requests]] list the allowed paths"
                ),
            );
        };
        let query = uri.query().unwrap_or("");
        if query.contains(';') {
            // Some servers split a query on ';' as well as '&': `page[size]=1;debug=1` would
            // smuggle an undeclared key past a check that splits on '&' only.
            return deny(
                Rule::Query,
                format!("query {query:?} contains ';', which may separate keys; encode it as %3B"),
            );
        }
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let (Some(key), Some(value)) = (percent_decode(raw_key), percent_decode(raw_value))
            else {
                return deny(
                    Rule::Query,
                    format!("query {pair:?} is not valid percent-encoding"),
                );
            };
            if !shape.query.iter().any(|q| q.allows(&key, &value)) {
                return deny(
                    Rule::Query,
                    format!("query key {key:?} (value {value:?}) is not declared for GET {rest}"),
                );
            }
        }
        Ok(())
    }
}

fn shape(r: &RequestShape) -> Shape {
    Shape {
        path: r.path.trim_end_matches('/').to_string(),
        query: r.query.iter().map(|q| QueryRule::parse(q)).collect(),
    }
}

/// True when a raw request path could mean something other than its plain segments.
fn has_traversal(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    path.contains("//")
        || path.contains('\\')
        || lower.contains("%2f")
        || lower.contains("%5c")
        || lower.contains("%2e")
        || lower.contains("%00")
        || path.split('/').any(|s| s == "." || s == "..")
}

/// Strips `prefix` from `path` on a whole-segment boundary.
fn strip_prefix_segments<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(prefix)?;
    if rest.is_empty() || rest.starts_with('/') {
        Some(rest.trim_end_matches('/'))
    } else {
        None
    }
}

/// Decodes `%XX` escapes (and `+` as a space); `None` for invalid escapes or UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    /// The IT Glue connector's manifest, a realistic fixture.
    const ITGLUE_MANIFEST: &str = include_str!("../../../plugin/manifest.toml");

    fn policy(base: &str) -> OutboundPolicy {
        let m = Manifest::parse(ITGLUE_MANIFEST, "builtin").unwrap();
        OutboundPolicy::new(&m, BaseUrl::parse_endpoint(base).unwrap())
    }

    fn check(p: &OutboundPolicy, method: Method, url: &str) -> Result<(), Rule> {
        let uri: Uri = url.parse().unwrap();
        p.check(&method, &uri, &HeaderMap::new(), 0)
            .map_err(|d| d.rule)
    }

    #[test]
    fn allows_declared_requests() {
        let p = policy("https://api.itglue.com");
        assert_eq!(
            check(
                &p,
                Method::GET,
                "https://api.itglue.com/organizations?page[size]=1000&page[number]=2&sort=id"
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &p,
                Method::GET,
                "https://api.itglue.com/configurations?page%5Bsize%5D=5&include=configuration_interfaces&filter%5Barchived%5D=false"
            ),
            Ok(())
        );
        assert_eq!(
            check(&p, Method::GET, "https://API.ITGLUE.COM:443/organizations"),
            Ok(())
        );
    }

    #[test]
    fn denies_everything_else() {
        let p = policy("https://api.itglue.com");
        let cases = [
            (
                Method::POST,
                "https://api.itglue.com/organizations",
                Rule::Method,
            ),
            (
                Method::DELETE,
                "https://api.itglue.com/organizations",
                Rule::Method,
            ),
            (
                Method::GET,
                "http://api.itglue.com/organizations",
                Rule::Scheme,
            ),
            (
                Method::GET,
                "https://api.eu.itglue.com/organizations",
                Rule::Host,
            ),
            (
                Method::GET,
                "https://api.itglue.com.evil.test/organizations",
                Rule::Host,
            ),
            (
                Method::GET,
                "https://user@api.itglue.com/organizations",
                Rule::Host,
            ),
            (
                Method::GET,
                "https://api.itglue.com:8443/organizations",
                Rule::Port,
            ),
            (Method::GET, "https://api.itglue.com/passwords", Rule::Path),
            (
                Method::GET,
                "https://api.itglue.com/organizations/1/relationships/passwords",
                Rule::Path,
            ),
            (
                Method::GET,
                "https://api.itglue.com/organizations/1",
                Rule::Path,
            ),
            (
                Method::GET,
                "https://api.itglue.com/organizationsX",
                Rule::Path,
            ),
            (
                Method::GET,
                "https://api.itglue.com/configurations/..%2Fpasswords",
                Rule::Traversal,
            ),
            (
                Method::GET,
                "https://api.itglue.com/organizations/../passwords",
                Rule::Traversal,
            ),
            (
                Method::GET,
                "https://api.itglue.com//organizations",
                Rule::Traversal,
            ),
            (
                Method::GET,
                "https://api.itglue.com/organizations/%2e%2e/passwords",
                Rule::Traversal,
            ),
            (
                Method::GET,
                "https://api.itglue.com/organizations%5C..%5Cpasswords",
                Rule::Traversal,
            ),
            (
                Method::GET,
                "https://api.itglue.com/organizations?debug=1",
                Rule::Query,
            ),
            (
                Method::GET,
                "https://api.itglue.com/organizations?include=passwords",
                Rule::Query,
            ),
            (
                Method::GET,
                "https://api.itglue.com/configurations?include=passwords",
                Rule::Query,
            ),
            (
                Method::GET,
                "https://api.itglue.com/organizations?filter=x",
                Rule::Query,
            ),
            (
                Method::GET,
                "https://api.itglue.com/organizations?page%ZZ=1",
                Rule::Query,
            ),
            (
                Method::GET,
                "https://api.itglue.com/organizations?page[size]=1;debug=1",
                Rule::Query,
            ),
            (
                Method::GET,
                "https://api.itglue.com/organizations?sort=id&;debug=1",
                Rule::Query,
            ),
        ];
        for (method, url, rule) in cases {
            assert_eq!(check(&p, method.clone(), url), Err(rule), "{method} {url}");
        }
    }

    #[test]
    fn prefix_is_matched_on_whole_segments() {
        let p = policy("http://127.0.0.1:8080/eu");
        assert_eq!(
            check(&p, Method::GET, "http://127.0.0.1:8080/eu/organizations"),
            Ok(())
        );
        assert_eq!(
            check(&p, Method::GET, "http://127.0.0.1:8080/organizations"),
            Err(Rule::Path)
        );
        assert_eq!(
            check(
                &p,
                Method::GET,
                "http://127.0.0.1:8080/europe/organizations"
            ),
            Err(Rule::Path)
        );
        assert_eq!(
            check(&p, Method::GET, "http://127.0.0.2:8080/eu/organizations"),
            Err(Rule::Host)
        );
    }

    #[test]
    fn denies_credential_headers_and_budget() {
        let p = policy("https://api.itglue.com");
        let uri: Uri = "https://api.itglue.com/organizations".parse().unwrap();
        for name in ["x-api-key", "authorization", "cookie"] {
            let mut headers = HeaderMap::new();
            headers.insert(http::HeaderName::from_static(name), "x".parse().unwrap());
            let err = p.check(&Method::GET, &uri, &headers, 0).unwrap_err();
            assert_eq!(err.rule, Rule::Header, "{name}");
        }
        for name in [
            "x-http-method-override",
            "x-original-url",
            "x-rewrite-url",
            "x-forwarded-for",
            "host",
            "connection",
            "range",
            "keep-alive",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                "DELETE".parse().unwrap(),
            );
            let err = p.check(&Method::GET, &uri, &headers, 0).unwrap_err();
            assert_eq!(err.rule, Rule::Header, "{name}");
            if name != "host" {
                assert!(err.message.contains("accept"), "{}", err.message);
            }
        }
        let mut headers = HeaderMap::new();
        for name in GUEST_HEADERS {
            headers.insert(http::HeaderName::from_static(name), "x".parse().unwrap());
        }
        headers.insert(http::header::CONTENT_LENGTH, "0".parse().unwrap());
        headers.insert(http::header::HOST, "api.itglue.com".parse().unwrap());
        assert_eq!(p.check(&Method::GET, &uri, &headers, 0), Ok(()));
        // A second `host`, or another one, is the guest's.
        headers.append(http::header::HOST, "evil.test".parse().unwrap());
        let err = p.check(&Method::GET, &uri, &headers, 0).unwrap_err();
        assert_eq!(err.rule, Rule::Header);
        let err = p
            .check(&Method::GET, &uri, &HeaderMap::new(), 4)
            .unwrap_err();
        assert_eq!(err.rule, Rule::Budget);
        assert!(err.message.contains("max_requests_per_call"));
    }

    #[test]
    fn endpoints_need_https_unless_loopback() {
        assert!(BaseUrl::parse_endpoint("http://127.0.0.1:9/x").is_ok());
        assert!(BaseUrl::parse_endpoint("http://[::1]:9").is_ok());
        assert!(BaseUrl::parse_endpoint("http://localhost:9").is_ok());
        let err = BaseUrl::parse_endpoint("http://10.0.0.1:9").unwrap_err();
        assert!(err.contains("loopback"), "{err}");
        assert!(BaseUrl::parse_endpoint("ftp://127.0.0.1").is_err());
        assert!(BaseUrl::parse_endpoint("https://a@b.test").is_err());
        assert!(BaseUrl::parse_endpoint("https://b.test/x/../y").is_err());
        assert_eq!(
            BaseUrl::parse_endpoint("http://127.0.0.1:8080/eu/")
                .unwrap()
                .to_url(),
            "http://127.0.0.1:8080/eu"
        );
        assert_eq!(
            BaseUrl::parse("https://api.itglue.com").unwrap().to_url(),
            "https://api.itglue.com"
        );
    }
}

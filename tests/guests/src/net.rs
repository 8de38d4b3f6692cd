//! Outbound requests through waki, and how their outcome is classified: refused by the host's
//! policy (`HttpRequestDenied`, a forbidden header) or not.

use std::fmt;

use waki::bindings::wasi::http::types::HeaderError;
use waki::bindings::wasi::io::streams::StreamError;
use waki::{Client, ErrorCode, RequestBuilder, Response};

/// What became of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The request left and an answer came back; the body was read to the end.
    Answered {
        /// The HTTP status.
        status: u16,
        /// The `location` header, when the answer had one.
        location: Option<String>,
        /// How many body bytes were read.
        bytes: usize,
    },
    /// The host refused the request (`HttpRequestDenied`).
    Denied,
    /// The host refused a header the guest set (`HeaderError::Forbidden`).
    ForbiddenHeader,
    /// The request body could not be written: a host that refused a request with a body may
    /// close its stream instead of answering `HttpRequestDenied`.
    BodyRefused(String),
    /// Anything else (a DNS or connection error, an unreadable URL, a failed body read).
    /// The host's policy did not refuse it, so it counts as having got through.
    Failed(String),
}

impl Outcome {
    /// Whether the host's policy stopped the request before it left.
    pub fn refused(&self) -> bool {
        matches!(
            self,
            Outcome::Denied | Outcome::ForbiddenHeader | Outcome::BodyRefused(_)
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Answered {
                status,
                location,
                bytes,
            } => {
                write!(f, "status={status} bytes={bytes}")?;
                if let Some(location) = location {
                    write!(f, " location={location}")?;
                }
                Ok(())
            }
            Outcome::Denied => f.write_str("denied"),
            Outcome::ForbiddenHeader => f.write_str("forbidden header"),
            Outcome::BodyRefused(why) => write!(f, "body refused ({why})"),
            Outcome::Failed(why) => write!(f, "failed ({why})"),
        }
    }
}

/// Classifies an error from waki (an `anyhow::Error`, seen through its `Deref`).
pub fn classify(err: &(dyn std::error::Error + 'static)) -> Outcome {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(code) = e.downcast_ref::<ErrorCode>() {
            return match code {
                ErrorCode::HttpRequestDenied => Outcome::Denied,
                other => Outcome::Failed(format!("{other:?}")),
            };
        }
        if let Some(header) = e.downcast_ref::<HeaderError>() {
            return match header {
                HeaderError::Forbidden => Outcome::ForbiddenHeader,
                other => Outcome::Failed(format!("header {other:?}")),
            };
        }
        if let Some(stream) = e.downcast_ref::<StreamError>() {
            return Outcome::BodyRefused(format!("{stream:?}"));
        }
        current = e.source();
    }
    Outcome::Failed(err.to_string())
}

/// Sends the request and returns the response without reading its body, or the outcome that
/// stopped it.
pub fn send_raw(request: RequestBuilder) -> Result<Response, Outcome> {
    request.send().map_err(|e| classify(&*e))
}

/// Sends the request and reads the whole answer.
pub fn send(request: RequestBuilder) -> Outcome {
    let response = match send_raw(request) {
        Ok(response) => response,
        Err(outcome) => return outcome,
    };
    let status = response.status_code();
    let location = response
        .header("location")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    match response.body() {
        Ok(body) => Outcome::Answered {
            status,
            location,
            bytes: body.len(),
        },
        Err(e) => Outcome::Failed(format!("status={status}, body read failed: {e}")),
    }
}

/// A plain GET of `url`, with no header of the guest's own.
pub fn get(url: &str) -> Outcome {
    send(Client::new().get(url))
}

/// The port of a base URL such as `http://127.0.0.1:8080/prefix`: the explicit one, else the
/// scheme's default.
pub fn port_of(base_url: &str) -> Option<u16> {
    let (scheme, rest) = base_url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit('@').next()?;
    // An IPv6 literal keeps its colons inside the brackets.
    let after_host = match host_port.rfind(']') {
        Some(end) => &host_port[end + 1..],
        None => host_port,
    };
    match after_host.rsplit_once(':') {
        Some((_, port)) => port.parse().ok(),
        None => match scheme.to_ascii_lowercase().as_str() {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_of_reads_explicit_and_default_ports() {
        assert_eq!(port_of("http://127.0.0.1:8080"), Some(8080));
        assert_eq!(port_of("http://127.0.0.1:8080/prefix"), Some(8080));
        assert_eq!(port_of("https://api.itglue.com"), Some(443));
        assert_eq!(port_of("http://localhost/x:9"), Some(80));
        assert_eq!(port_of("http://[::1]:9000/p"), Some(9000));
        assert_eq!(port_of("http://[::1]"), Some(80));
        assert_eq!(port_of("no-scheme"), None);
    }

    #[test]
    fn hostile_url_shapes_are_sent_as_written() {
        // The guests rely on waki passing these through untouched, for the host to judge.
        for url in [
            "http://127.0.0.1:8080/organizations?page[size]=1&debug=1",
            "http://127.0.0.1:8080/organizations?page[size]=1&page[number]=1",
            "http://127.0.0.1:8080/configurations/..%2Fpasswords",
            "http://127.0.0.1:8080/organizations/../passwords",
            "http://127.0.0.1:8080//organizations",
            "http://127.0.0.1:8080/organizations%2F..%2Fpasswords",
            "http://example.invalid/organizations",
        ] {
            let request = Client::new().get(url).build();
            let request = request.unwrap_or_else(|e| panic!("{url}: {e}"));
            let rest = url.trim_start_matches("http://");
            let path = &rest[rest.find('/').unwrap_or(rest.len())..];
            let path = path.split('?').next().unwrap_or_default();
            assert_eq!(request.path(), path, "{url}");
            if url.contains('?') {
                assert_eq!(
                    request.query().get("page[size]").map(String::as_str),
                    Some("1")
                );
            }
        }
    }

    #[test]
    fn refusals_are_recognised() {
        assert_eq!(classify(&ErrorCode::HttpRequestDenied), Outcome::Denied);
        assert_eq!(classify(&HeaderError::Forbidden), Outcome::ForbiddenHeader);
        assert!(!classify(&ErrorCode::DnsTimeout).refused());
        assert!(classify(&StreamError::Closed).refused());
    }
}

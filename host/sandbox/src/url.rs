//! Base URLs: what the outbound policy compares a request with (scheme, host, port, path
//! prefix), parsed once from a manifest's region or an explicit endpoint.

use http::Uri;
use std::net::IpAddr;

/// A base URL split into what the policy compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// `http` or `https`.
    pub scheme: String,
    /// Lowercase host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Explicit or default port.
    pub port: u16,
    /// Path prefix without a trailing slash (empty for none).
    pub prefix: String,
}

impl BaseUrl {
    /// Parses `scheme://host[:port][/prefix]`; no query, fragment or user info.
    pub fn parse(url: &str) -> Result<BaseUrl, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("{url:?} is not a valid URL: {e}"))?;
        let scheme = uri
            .scheme_str()
            .ok_or_else(|| format!("{url:?} needs a scheme (https://...)"))?
            .to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "https" => 443,
            "http" => 80,
            other => return Err(format!("{url:?}: scheme {other} is not http or https")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{url:?} needs a host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("{url:?} must not carry user info"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if host.is_empty() {
            return Err(format!("{url:?} needs a host"));
        }
        if uri.query().is_some() {
            return Err(format!("{url:?} must not carry a query"));
        }
        let path = uri.path();
        if path.contains("//") || path.contains('%') || path.contains('\\') {
            return Err(format!("{url:?}: the path prefix must be plain segments"));
        }
        if path.split('/').any(|s| s == "." || s == "..") {
            return Err(format!(
                "{url:?}: the path prefix must not contain '.' or '..'"
            ));
        }
        Ok(BaseUrl {
            scheme,
            host,
            port: authority.port_u16().unwrap_or(default_port),
            prefix: path.trim_end_matches('/').to_string(),
        })
    }

    /// Parses an admin-supplied `--endpoint`: https anywhere, plain http only on loopback.
    pub fn parse_endpoint(url: &str) -> Result<BaseUrl, String> {
        let base = BaseUrl::parse(url)?;
        if base.scheme == "http" && !base.is_loopback() {
            return Err(format!(
                "{url:?}: plain http is only accepted for a loopback address (127.0.0.1, ::1, localhost); use https"
            ));
        }
        Ok(base)
    }

    /// True for `localhost`, 127.0.0.0/8 and ::1.
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self
                .host
                .parse::<IpAddr>()
                .map(|ip| ip.is_loopback())
                .unwrap_or(false)
    }

    /// The URL as text, without a trailing slash.
    pub fn to_url(&self) -> String {
        let default = if self.scheme == "https" { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            format!("{}://{}{}", self.scheme, host, self.prefix)
        } else {
            format!("{}://{}:{}{}", self.scheme, host, self.port, self.prefix)
        }
    }
}

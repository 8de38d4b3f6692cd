//! Connector manifests: what a connector declares it needs (base URLs, credential placement,
//! request shapes, limits), parsed from TOML and validated before anything is loaded.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The built-in IT Glue connector's manifest (its digest is pinned at build time).
pub const ITGLUE_MANIFEST: &str = include_str!("../../plugin/manifest.toml");

/// A manifest that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read manifest {path}: {source}")]
    Io {
        /// The manifest path.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown keys.
    #[error("manifest {path} is not valid: {message}")]
    Parse {
        /// The manifest path.
        path: String,
        /// What the parser said.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("manifest {path}: {message}")]
    Invalid {
        /// The manifest path.
        path: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// A validated connector manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The connector's name, used on the command line (`scopable-host NAME test`).
    pub name: String,
    /// One line saying what the connector reads.
    #[serde(default)]
    pub description: String,
    /// The service's name as people know it (`IT Glue`), used in messages; defaults to `name`.
    #[serde(default)]
    pub display_name: Option<String>,
    /// The sha256 of the component (hex). Required for components loaded from a file; a
    /// component whose digest differs is refused.
    #[serde(default)]
    pub sha256: Option<String>,
    /// The region used when none is chosen.
    pub default_region: String,
    /// Base URL per region (`https://...`, no path or a path prefix).
    pub regions: BTreeMap<String, String>,
    /// Where the credential goes.
    pub credential: Credential,
    /// The only requests the connector may make.
    pub requests: Vec<RequestShape>,
    /// Resource limits for each export call.
    #[serde(default)]
    pub limits: Limits,
}

/// Where the host puts the credential on each allowed request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// The header name, for example `x-api-key`.
    pub header: String,
    /// A prefix for the header value, for example `Bearer `.
    #[serde(default)]
    pub prefix: String,
    /// The environment variable the command line reads the key from.
    pub env: String,
    /// Days after which the service revokes an unused key, if it does (IT Glue: 90). Makes a
    /// rejected key that worked before point at revocation first.
    #[serde(default)]
    pub idle_revocation_days: Option<u32>,
}

/// One request shape the connector may make.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestShape {
    /// The HTTP method; only `GET` is accepted.
    pub method: String,
    /// The exact path, after the base URL's own path prefix (for example `/organizations`).
    pub path: String,
    /// Allowed query keys: `key` (any value), `key=value` (that value only), or `prefix[*]`
    /// (any key of the form `prefix[...]`).
    #[serde(default)]
    pub query: Vec<String>,
}

/// Per-call resource limits. Every field has a documented default.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Records per page requested from the API (1..=1000).
    pub page_size: u32,
    /// Guest linear memory, in MiB.
    pub memory_mb: u64,
    /// Guest running time per export call, in milliseconds (time spent waiting on the network
    /// does not count); checked every epoch tick, and the call traps when it is spent.
    pub cpu_ms: u64,
    /// Wall-clock time per export call, including time spent waiting on the network.
    pub call_timeout_ms: u64,
    /// TCP/TLS connect timeout per request.
    pub connect_timeout_ms: u64,
    /// Time to the first byte of a response.
    pub first_byte_timeout_ms: u64,
    /// Time allowed between two chunks of a response body.
    pub between_bytes_timeout_ms: u64,
    /// Largest response body accepted, in bytes.
    pub max_response_bytes: u64,
    /// Requests one export call may make.
    pub max_requests_per_call: u32,
    /// Bytes of stdout plus stderr captured per call; writing more fails the call.
    pub max_output_bytes: u64,
    /// Largest value the storage capability accepts.
    pub storage_max_value_bytes: u64,
    /// Most keys the storage capability holds for this connector.
    pub storage_max_keys: u64,
    /// Most bytes (keys plus values) the storage capability holds for this connector.
    pub storage_max_total_bytes: u64,
    /// Attempts per page when the API is rate limited or unavailable (1 = no retry).
    pub max_attempts: u32,
    /// First back-off delay when no `Retry-After` is given, in milliseconds (doubles, with
    /// jitter, up to `retry_max_ms`).
    pub retry_base_ms: u64,
    /// Longest single back-off delay, in milliseconds.
    pub retry_max_ms: u64,
    /// Requests allowed per pacing window (all processes sharing the database).
    pub budget_requests: u32,
    /// The pacing window, in seconds.
    pub budget_window_secs: u64,
    /// HTTP requests in flight at once after the first page; twice as many fetch calls run,
    /// so that parsing one page overlaps fetching the next.
    pub concurrency: u32,
    /// Wall-clock time for a whole sync, in seconds.
    pub sync_timeout_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            page_size: 1000,
            memory_mb: 256,
            cpu_ms: 20_000,
            call_timeout_ms: 120_000,
            connect_timeout_ms: 10_000,
            first_byte_timeout_ms: 90_000,
            between_bytes_timeout_ms: 30_000,
            max_response_bytes: 32 * 1024 * 1024,
            max_requests_per_call: 4,
            max_output_bytes: 64 * 1024,
            storage_max_value_bytes: 64 * 1024,
            storage_max_keys: 1024,
            storage_max_total_bytes: 4 * 1024 * 1024,
            max_attempts: 5,
            retry_base_ms: 2_000,
            retry_max_ms: 60_000,
            budget_requests: 2_800,
            budget_window_secs: 300,
            concurrency: 4,
            sync_timeout_secs: 3_600,
        }
    }
}

impl Manifest {
    /// Reads and validates a manifest file.
    pub fn from_file(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Manifest::parse(&text, &path.display().to_string())
    }

    /// Parses and validates manifest text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Manifest, ManifestError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| ManifestError::Parse {
            path: origin.to_string(),
            message: e.message().to_string(),
        })?;
        manifest.validate(origin)?;
        Ok(manifest)
    }

    fn validate(&self, origin: &str) -> Result<(), ManifestError> {
        let invalid = |message: String| ManifestError::Invalid {
            path: origin.to_string(),
            message,
        };
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(invalid(format!(
                "name {:?} must be lowercase letters, digits and '-'",
                self.name
            )));
        }
        if ["import", "audit", "check", "help"].contains(&self.name.as_str()) {
            return Err(invalid(format!(
                "name {:?} is a host command; choose another",
                self.name
            )));
        }
        if let Some(digest) = &self.sha256
            && (digest.len() != 64 || !digest.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(invalid("sha256 must be 64 hex digits".into()));
        }
        if !self.regions.contains_key(&self.default_region) {
            return Err(invalid(format!(
                "default_region {:?} is not listed under [regions]",
                self.default_region
            )));
        }
        for (region, url) in &self.regions {
            crate::policy::BaseUrl::parse(url)
                .map_err(|e| invalid(format!("region {region}: {e}")))?;
            if !url.starts_with("https://") {
                return Err(invalid(format!(
                    "region {region}: base URLs must use https (plain http is only accepted for a loopback --endpoint)"
                )));
            }
        }
        let header = self.credential.header.to_ascii_lowercase();
        if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
            return Err(invalid(format!(
                "credential.header {:?} is not a valid header name",
                self.credential.header
            )));
        }
        if self.requests.is_empty() {
            return Err(invalid("declare at least one [[requests]] entry".into()));
        }
        for shape in &self.requests {
            if shape.method != "GET" {
                return Err(invalid(format!(
                    "request {} {}: only GET is allowed (connectors are read-only)",
                    shape.method, shape.path
                )));
            }
            if !shape.path.starts_with('/')
                || shape.path.contains("//")
                || shape.path.contains('%')
                || shape.path.contains('?')
                || shape.path.split('/').any(|s| s == "." || s == "..")
            {
                return Err(invalid(format!(
                    "request path {:?} must be an absolute path without '..', '//', '%' or a query",
                    shape.path
                )));
            }
        }
        let l = &self.limits;
        let checks: [(&str, bool); 8] = [
            (
                "page_size must be 1..=1000",
                (1..=1000).contains(&l.page_size),
            ),
            (
                "memory_mb must be 1..=4096",
                (1..=4096).contains(&l.memory_mb),
            ),
            ("cpu_ms must be at least 1", l.cpu_ms >= 1),
            ("call_timeout_ms must be at least 1", l.call_timeout_ms >= 1),
            (
                "max_requests_per_call must be at least 1",
                l.max_requests_per_call >= 1,
            ),
            (
                "max_attempts must be 1..=20",
                (1..=20).contains(&l.max_attempts),
            ),
            (
                "concurrency must be 1..=32",
                (1..=32).contains(&l.concurrency),
            ),
            (
                "budget_requests and budget_window_secs must be at least 1",
                l.budget_requests >= 1 && l.budget_window_secs >= 1,
            ),
        ];
        for (message, ok) in checks {
            if !ok {
                return Err(invalid(format!("[limits] {message}")));
            }
        }
        Ok(())
    }

    /// The service's name for messages.
    pub fn service(&self) -> &str {
        self.display_name.as_deref().unwrap_or(&self.name)
    }

    /// The base URL of a region, or an error listing the regions there are.
    pub fn region_url(&self, region: &str) -> Result<&str, String> {
        self.regions.get(region).map(String::as_str).ok_or_else(|| {
            format!(
                "unknown region {region:?}; choose one of: {}",
                self.regions.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_manifest_is_valid() {
        let m = Manifest::parse(ITGLUE_MANIFEST, "builtin").unwrap();
        assert_eq!(m.name, "itglue");
        assert_eq!(m.region_url("eu").unwrap(), "https://api.eu.itglue.com");
        assert_eq!(m.credential.header, "x-api-key");
        assert!(m.requests.iter().all(|r| r.method == "GET"));
        assert_eq!(m.limits.page_size, 1000);
        assert!(m.region_url("mars").unwrap_err().contains("au, eu, us"));
    }

    #[test]
    fn rejects_writes_and_odd_paths() {
        let base = ITGLUE_MANIFEST.replacen("method = \"GET\"", "method = \"POST\"", 1);
        let err = Manifest::parse(&base, "m").unwrap_err().to_string();
        assert!(err.contains("only GET"), "{err}");
        let base = ITGLUE_MANIFEST.replacen("/organizations\"", "/a/../organizations\"", 1);
        let err = Manifest::parse(&base, "m").unwrap_err().to_string();
        assert!(err.contains("without '..'"), "{err}");
    }

    #[test]
    fn rejects_unknown_keys_and_bad_limits() {
        let text = format!("{ITGLUE_MANIFEST}\nsurprise = 1\n");
        assert!(matches!(
            Manifest::parse(&text, "m"),
            Err(ManifestError::Parse { .. })
        ));
        let text = ITGLUE_MANIFEST.replace("page_size = 1000", "page_size = 5000");
        let err = Manifest::parse(&text, "m").unwrap_err().to_string();
        assert!(err.contains("page_size"), "{err}");
    }

    #[test]
    fn rejects_plain_http_regions() {
        let text = ITGLUE_MANIFEST.replace("https://api.eu.itglue.com", "http://api.eu.itglue.com");
        let err = Manifest::parse(&text, "m").unwrap_err().to_string();
        assert!(err.contains("must use https"), "{err}");
    }
}

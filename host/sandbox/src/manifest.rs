//! Connector manifests: what a connector declares it needs (base URLs, credential placement,
//! request shapes, limits), parsed from TOML and validated before anything is loaded.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::RangeInclusive;
use std::path::Path;

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
    /// The environment variable the command line reads the key from. Optional, and only ever
    /// the host's choice: when present it must be exactly [`Manifest::key_env`] (a manifest
    /// cannot point the host at another variable, such as one of the host's own secrets).
    #[serde(default)]
    pub env: Option<String>,
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
    /// Most records one listing (all pages of organizations, or of configurations) may hold;
    /// past it the sync fails and changes nothing.
    pub max_listing_records: u64,
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
            max_listing_records: 2_000_000,
        }
    }
}

/// One mebibyte, for the limits' ranges.
const MIB: u64 = 1024 * 1024;

/// How many request shapes a manifest may declare before `warnings` mentions it.
const MANY_SHAPES: usize = 8;

/// Requests per call above which `warnings` mentions `max_requests_per_call`.
const MANY_REQUESTS_PER_CALL: u32 = 16;

/// The pacing above which `warnings` mentions the budget: 3000 requests per 300 s.
const BROAD_BUDGET: (u64, u64) = (3_000, 300);

/// Credential headers that are never right, beyond wasmtime-wasi-http's
/// `DEFAULT_FORBIDDEN_HEADERS`: headers that frame the request or the connection, that proxies
/// or servers read for themselves, or that change what a request means.
const NEVER_CREDENTIAL_HEADERS: &[&str] = &[
    "host",
    "cookie",
    "set-cookie",
    "content-length",
    "content-type",
    "content-encoding",
    "content-range",
    "range",
    "transfer-encoding",
    "te",
    "trailer",
    "expect",
    "connection",
    "keep-alive",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "proxy-connection",
    "http2-settings",
    "forwarded",
    "via",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
];

/// Characters a request path may not hold: wildcards and glob syntax (paths are matched
/// exactly, so these would only mislead a reviewer).
const PATH_WILDCARDS: &[char] = &['*', '[', ']', '{', '}', '!'];

/// Single-segment paths that look like an API root or an endpoint that reaches many resources.
const CATCH_ALL_SEGMENTS: &[&str] = &[
    "api", "apis", "rest", "graphql", "gql", "rpc", "jsonrpc", "xmlrpc", "soap", "odata", "query",
    "search", "batch", "bulk", "proxy", "gateway", "export", "all", "any", "raw",
];

/// Name suffixes that resolve on a local or private network, never to a public service.
const LOCAL_SUFFIXES: &[&str] = &[
    "localhost",
    "local",
    "localdomain",
    "internal",
    "intranet",
    "lan",
    "home",
    "corp",
    "home.arpa",
];

impl Limits {
    /// Every limit by its manifest key, with its value and the range a manifest may set
    /// (`docs/security.md` section 3 gives the reason for each ceiling).
    pub fn ranges(&self) -> [(&'static str, u64, RangeInclusive<u64>); 21] {
        [
            ("page_size", self.page_size.into(), 1..=1000),
            ("memory_mb", self.memory_mb, 1..=4096),
            ("cpu_ms", self.cpu_ms, 1..=600_000),
            ("call_timeout_ms", self.call_timeout_ms, 1..=1_800_000),
            ("connect_timeout_ms", self.connect_timeout_ms, 1..=120_000),
            (
                "first_byte_timeout_ms",
                self.first_byte_timeout_ms,
                1..=600_000,
            ),
            (
                "between_bytes_timeout_ms",
                self.between_bytes_timeout_ms,
                1..=600_000,
            ),
            ("max_response_bytes", self.max_response_bytes, 1..=256 * MIB),
            (
                "max_requests_per_call",
                self.max_requests_per_call.into(),
                1..=1000,
            ),
            ("max_output_bytes", self.max_output_bytes, 1..=16 * MIB),
            (
                "storage_max_value_bytes",
                self.storage_max_value_bytes,
                1..=16 * MIB,
            ),
            ("storage_max_keys", self.storage_max_keys, 1..=100_000),
            (
                "storage_max_total_bytes",
                self.storage_max_total_bytes,
                1..=256 * MIB,
            ),
            ("max_attempts", self.max_attempts.into(), 1..=20),
            ("retry_base_ms", self.retry_base_ms, 1..=60_000),
            ("retry_max_ms", self.retry_max_ms, 1..=600_000),
            ("budget_requests", self.budget_requests.into(), 1..=100_000),
            ("budget_window_secs", self.budget_window_secs, 1..=86_400),
            ("concurrency", self.concurrency.into(), 1..=32),
            ("sync_timeout_secs", self.sync_timeout_secs, 1..=86_400),
            (
                "max_listing_records",
                self.max_listing_records,
                1..=10_000_000,
            ),
        ]
    }
}

impl Manifest {
    /// Reads and validates a manifest file.
    pub fn from_file(path: &Path) -> Result<Manifest, ManifestError> {
        let manifest = Manifest::read_unvalidated(path)?;
        manifest.validate(&path.display().to_string())?;
        Ok(manifest)
    }

    /// Reads a manifest file without validating it: for `audit`, which reports what a refused
    /// manifest asks for and every reason it is refused ([`Manifest::problems`]). Anything
    /// that runs a connector uses [`Manifest::from_file`].
    pub fn read_unvalidated(path: &Path) -> Result<Manifest, ManifestError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
            path: origin.clone(),
            source,
        })?;
        Manifest::parse_unvalidated(&text, &origin)
    }

    /// Parses and validates manifest text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Manifest, ManifestError> {
        let manifest = Manifest::parse_unvalidated(text, origin)?;
        manifest.validate(origin)?;
        Ok(manifest)
    }

    fn parse_unvalidated(text: &str, origin: &str) -> Result<Manifest, ManifestError> {
        toml::from_str(text).map_err(|e| ManifestError::Parse {
            path: origin.to_string(),
            message: parse_message(text, &e),
        })
    }

    fn validate(&self, origin: &str) -> Result<(), ManifestError> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ManifestError::Invalid {
                path: origin.to_string(),
                message: problems.join("; "),
            })
        }
    }

    /// The environment variable the command line reads this connector's key from: the name
    /// uppercased, `-` as `_`, then `_API_KEY` (`itglue` reads `ITGLUE_API_KEY`). The host
    /// decides it; a manifest's `[credential] env` may only restate it.
    pub fn key_env(&self) -> String {
        format!(
            "{}_API_KEY",
            self.name.to_ascii_uppercase().replace('-', "_")
        )
    }

    /// Every reason the host refuses this manifest, each naming the setting and the rule;
    /// empty when the manifest is accepted.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        self.name_problems(&mut problems);
        if let Some(digest) = &self.sha256
            && (digest.len() != 64 || !digest.chars().all(|c| c.is_ascii_hexdigit()))
        {
            problems.push("sha256 must be 64 hex digits".into());
        }
        if !self.regions.contains_key(&self.default_region) {
            problems.push(format!(
                "default_region {:?} is not listed under [regions]",
                self.default_region
            ));
        }
        for (region, url) in &self.regions {
            if let Some(problem) = region_problem(url) {
                problems.push(format!("region {region}: {problem}"));
            }
        }
        // Shown to people in prompts and messages: printable, one short line.
        if let Some(display_name) = &self.display_name
            && (display_name.trim().is_empty()
                || display_name.chars().count() > 64
                || display_name.chars().any(crate::display::is_unsafe))
        {
            problems.push(
                "display_name must be 1 to 64 characters without control or bidirectional formatting characters".into(),
            );
        }
        for region in self.regions.keys() {
            if region.is_empty()
                || region.len() > 32
                || !region
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                problems.push(format!(
                    "region name {:?} must be 1 to 32 letters, digits, '-' or '_'",
                    crate::display::safe(region)
                ));
            }
        }
        self.credential_problems(&mut problems);
        if self.requests.is_empty() {
            problems.push("declare at least one [[requests]] entry".into());
        }
        for shape in &self.requests {
            shape_problems(shape, &mut problems);
        }
        for (name, value, range) in self.limits.ranges() {
            if !range.contains(&value) {
                problems.push(format!(
                    "[limits] {name} = {value} is out of range: allowed {}..={}",
                    range.start(),
                    range.end()
                ));
            }
        }
        problems
    }

    fn name_problems(&self, problems: &mut Vec<String>) {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            problems.push(format!(
                "name {:?} must be lowercase letters, digits and '-'",
                self.name
            ));
        } else if ["import", "audit", "check", "pin", "search", "help"]
            .contains(&self.name.as_str())
        {
            problems.push(format!(
                "name {:?} is a host command; choose another",
                self.name
            ));
        } else if self.name.starts_with("scopable") {
            problems.push(format!(
                "name {:?} is reserved: a connector's key is read from <NAME>_API_KEY, and \
                 SCOPABLE_* variables are the host's own; choose a name that does not start \
                 with \"scopable\"",
                self.name
            ));
        }
    }

    fn credential_problems(&self, problems: &mut Vec<String>) {
        let credential = &self.credential;
        let header = credential.header.to_ascii_lowercase();
        match http::HeaderName::from_bytes(header.as_bytes()) {
            Err(_) => problems.push(format!(
                "credential.header {:?} is not a valid header name",
                credential.header
            )),
            Ok(name) => {
                if wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS.contains(&name)
                    || NEVER_CREDENTIAL_HEADERS.contains(&name.as_str())
                {
                    problems.push(format!(
                        "credential.header {:?} is never right for a key: it frames the request \
                         or the connection, or a proxy or server reads it for itself; use the \
                         header the service documents for its key (x-api-key, authorization, ...)",
                        credential.header
                    ));
                }
            }
        }
        if http::HeaderValue::from_str(&credential.prefix).is_err() {
            problems.push(format!(
                "credential.prefix {:?} must be visible ASCII text (a header value)",
                credential.prefix
            ));
        }
        let expected = self.key_env();
        if let Some(env) = &credential.env
            && *env != expected
            && !problems.iter().any(|p| p.starts_with("name "))
        {
            problems.push(format!(
                "[credential] env {env:?} is refused: the host reads this connector's key from \
                 {expected} only (its name uppercased, '-' as '_', then _API_KEY), never from a \
                 variable a manifest names; write env = \"{expected}\" or leave env out"
            ));
        }
    }

    /// What the host accepts but a reviewer should look at twice: grants broader than a
    /// read-only connector usually needs. `audit` and `check` print them; they refuse nothing.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        // Prefix rules, once per rule text, naming the shapes that declare it.
        let mut prefix_rules: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for shape in &self.requests {
            for rule in &shape.query {
                if rule.ends_with("[*]") {
                    prefix_rules
                        .entry(rule.as_str())
                        .or_default()
                        .push(format!("{} {}", shape.method, shape.path));
                }
            }
        }
        for (rule, shapes) in prefix_rules {
            let prefix = rule.trim_end_matches("[*]");
            warnings.push(format!(
                "query rule {rule} ({}) lets any key {prefix}[...] through with any value: data \
                 can leave in it; declare the exact keys if the service allows",
                shapes.join(", ")
            ));
        }
        if self.requests.len() > MANY_SHAPES {
            warnings.push(format!(
                "{} request shapes: more than {MANY_SHAPES} is unusual for a connector that reads \
                 two listings; declare only what it reads",
                self.requests.len()
            ));
        }
        for shape in &self.requests {
            let segment = shape.path.trim_matches('/');
            let versioned = segment.len() > 1
                && segment.starts_with('v')
                && segment[1..].chars().all(|c| c.is_ascii_digit());
            if !segment.contains('/')
                && (versioned
                    || CATCH_ALL_SEGMENTS.contains(&segment.to_ascii_lowercase().as_str()))
            {
                warnings.push(format!(
                    "request path {:?} looks like an API root or a catch-all endpoint (query, \
                     batch, proxy): one shape there may reach many resources",
                    shape.path
                ));
            }
        }
        let l = &self.limits;
        for (name, value, range) in l.ranges() {
            // The page size's ceiling is the API's own maximum, not a grant.
            if name != "page_size"
                && range.contains(&value)
                && u128::from(value) * 10 >= u128::from(*range.end()) * 9
            {
                warnings.push(format!(
                    "[limits] {name} = {value} is within 10% of its ceiling ({})",
                    range.end()
                ));
            }
        }
        if l.max_requests_per_call > MANY_REQUESTS_PER_CALL {
            warnings.push(format!(
                "[limits] max_requests_per_call = {}: more than {MANY_REQUESTS_PER_CALL} requests \
                 per export call (one page usually needs one)",
                l.max_requests_per_call
            ));
        }
        let (requests, window) = BROAD_BUDGET;
        if u128::from(l.budget_requests) * u128::from(window)
            > u128::from(requests) * u128::from(l.budget_window_secs)
        {
            warnings.push(format!(
                "[limits] budget_requests = {} per budget_window_secs = {}: more than {requests} \
                 requests per {window} s",
                l.budget_requests, l.budget_window_secs
            ));
        }
        warnings
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

/// A TOML error in one line, naming the line it is on (so that a value too large for its
/// key, which TOML or the key's type cannot hold, still names the key).
fn parse_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim();
    let Some(span) = e.span() else {
        return message.to_string();
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line_no = before.matches('\n').count() + 1;
    let line: String = text
        .lines()
        .nth(line_no - 1)
        .unwrap_or("")
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(120)
        .collect();
    format!("line {line_no} ({line}): {message}")
}

/// Why a region's base URL is refused, if it is.
fn region_problem(url: &str) -> Option<String> {
    if url.contains('*') {
        return Some(format!(
            "{url:?} has a wildcard: a region names exactly one host"
        ));
    }
    let base = match crate::url::BaseUrl::parse(url) {
        Ok(base) => base,
        Err(e) => return Some(e),
    };
    if base.scheme != "https" {
        return Some(
            "base URLs must use https (plain http is only accepted for a loopback --endpoint)"
                .into(),
        );
    }
    host_problem(&base.host).map(|what| {
        format!(
            "host {:?} is {what}; a region must name the service's public host (a local test \
             server is given by the admin with --endpoint)",
            base.host
        )
    })
}

/// Why a region's host is never right (`host` is lowercase, IPv6 without brackets).
fn host_problem(host: &str) -> Option<String> {
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() {
        return Some("empty".into());
    }
    if let Ok(ip) = name.parse::<IpAddr>() {
        return ip_problem(ip).map(|range| format!("an IP address in {range}"));
    }
    if name.contains(PATH_WILDCARDS) {
        return Some("a wildcard".into());
    }
    let labels: Vec<&str> = name.split('.').collect();
    let valid_label = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if name.len() > 253 || !labels.iter().all(valid_label) {
        return Some("not a valid host name (letters, digits, '-' and '.')".into());
    }
    let last = labels.last().copied().unwrap_or("");
    if last.chars().all(|c| c.is_ascii_digit()) || last.starts_with("0x") {
        return Some(
            "an IP address in another spelling (a numeric last label: resolvers read 127.1 or \
             2130706433 as addresses)"
                .into(),
        );
    }
    if labels.len() == 1 {
        return Some(
            "a single-label name (localhost, metadata, ...), which resolves on the local network"
                .into(),
        );
    }
    if LOCAL_SUFFIXES
        .iter()
        .any(|s| name == *s || name.ends_with(&format!(".{s}")))
    {
        return Some(
            "a local or internal name (.localhost, .local, .internal such as \
             metadata.google.internal, ...)"
                .into(),
        );
    }
    None
}

/// The range that makes an IP literal never right for a region, if any.
fn ip_problem(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => ipv4_problem(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let embedded =
                Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
            if v6.is_loopback() {
                Some("loopback (::1)")
            } else if v6.is_unspecified() {
                Some("the unspecified address (::)")
            } else if let Some(v4) = v6.to_ipv4_mapped() {
                ipv4_problem(v4)
            } else if s[..6] == [0; 6] {
                Some("the deprecated IPv4-compatible range (::/96)")
            } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                ipv4_problem(embedded)
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("the link-local range (fe80::/10)")
            } else if s[0] & 0xffc0 == 0xfec0 {
                Some("the site-local range (fec0::/10)")
            } else if s[0] & 0xfe00 == 0xfc00 {
                Some("a private range (fc00::/7)")
            } else if s[0] & 0xff00 == 0xff00 {
                Some("the multicast range (ff00::/8)")
            } else {
                None
            }
        }
    }
}

fn ipv4_problem(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback (127.0.0.0/8)")
    } else if ip.is_link_local() {
        Some(
            "the link-local range (169.254.0.0/16, where cloud metadata services answer on 169.254.169.254)",
        )
    } else if ip.is_private() {
        Some("a private range (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16)")
    } else if ip.is_unspecified() || a == 0 {
        Some("the unspecified range (0.0.0.0/8)")
    } else if a == 100 && (64..128).contains(&b) {
        Some("the shared address range (100.64.0.0/10)")
    } else if ip.is_broadcast() || ip.is_multicast() || a >= 240 {
        Some("the multicast, reserved or broadcast range (224.0.0.0/3)")
    } else {
        None
    }
}

/// Why one request shape is refused, if it is.
fn shape_problems(shape: &RequestShape, problems: &mut Vec<String>) {
    if shape.method != "GET" {
        problems.push(format!(
            "request {} {}: only GET is allowed (connectors are read-only)",
            shape.method, shape.path
        ));
    }
    let path = &shape.path;
    if path.contains(PATH_WILDCARDS) {
        problems.push(format!(
            "request path {path:?} has a wildcard or glob character ('*', '[', '{{', '!'): \
             paths are matched exactly; declare each path"
        ));
    } else if !path.starts_with('/')
        || path.contains("//")
        || path.contains('%')
        || path.contains('?')
        || path.contains('\\')
        || path.contains('#')
        || path.split('/').any(|s| s == "." || s == "..")
        || !path.chars().all(|c| c.is_ascii_graphic())
    {
        problems.push(format!(
            "request path {path:?} must be an absolute path without '..', '//', '%' or a query"
        ));
    } else if path.trim_end_matches('/').is_empty() {
        problems.push(format!(
            "request path {path:?} is the root of the API: declare the exact paths the \
             connector reads"
        ));
    }
    for rule in &shape.query {
        let key = rule.split_once('=').map_or(rule.as_str(), |(k, _)| k);
        let prefix = rule.strip_suffix("[*]");
        let bad = if rule.is_empty() || key.is_empty() {
            Some("is empty")
        } else if prefix == Some("") {
            Some("accepts every bracketed key: give a prefix, as in filter[*]")
        } else if prefix.unwrap_or(rule).contains(['*', '?', '{', '}']) {
            Some("has a wildcard: only a trailing [*] (prefix[*]) is a pattern")
        } else if rule
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '&' || c == ';' || c == '#')
        {
            Some("holds a space, a control character, '&', ';' or '#'")
        } else {
            None
        };
        if let Some(bad) = bad {
            problems.push(format!(
                "request {} {}: query rule {rule:?} {bad}",
                shape.method, path
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The IT Glue connector's manifest, a realistic fixture.
    const ITGLUE_MANIFEST: &str = include_str!("../../../plugin/manifest.toml");

    /// The Docuvault example's manifest, as shipped.
    const DOCUVAULT_MANIFEST: &str = include_str!("../../../examples/docuvault/manifest.toml");

    /// A small valid manifest with `extra` appended (after its one request shape).
    fn minimal(extra: &str) -> String {
        format!(
            r#"name = "demo-docs"
default_region = "us"

[regions]
us = "https://api.example.com/v1"

[credential]
header = "x-api-key"

[[requests]]
method = "GET"
path = "/things"
query = ["page", "order=id"]
{extra}
"#
        )
    }

    /// The refusal of `text`, which must be refused.
    #[track_caller]
    fn refusal(text: &str) -> String {
        match Manifest::parse(text, "m.toml") {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn builtin_manifest_is_valid() {
        let m = Manifest::parse(ITGLUE_MANIFEST, "builtin").unwrap();
        assert_eq!(m.name, "itglue");
        assert_eq!(m.key_env(), "ITGLUE_API_KEY");
        // The shipped file states every limit, at its default.
        assert_eq!(m.limits, Limits::default());
        assert_eq!(m.limits.max_listing_records, 2_000_000);
        // Its only warning: the filter[*] rule of both listings.
        assert_eq!(
            m.warnings(),
            vec![
                "query rule filter[*] (GET /organizations, GET /configurations) lets any key \
                 filter[...] through with any value: data can leave in it; declare the exact \
                 keys if the service allows"
                    .to_string()
            ]
        );
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

    #[test]
    fn docuvault_manifest_is_valid_without_warnings() {
        let m = Manifest::parse(DOCUVAULT_MANIFEST, "docuvault").unwrap();
        assert_eq!(m.key_env(), "DOCUVAULT_API_KEY");
        assert_eq!(m.credential.env.as_deref(), Some("DOCUVAULT_API_KEY"));
        assert_eq!(m.warnings(), Vec::<String>::new());
    }

    #[test]
    fn the_key_variable_is_the_hosts_choice() {
        // Derived from the name; `env` is optional and may only restate it.
        let m = Manifest::parse(&minimal(""), "m").unwrap();
        assert_eq!(m.key_env(), "DEMO_DOCS_API_KEY");
        assert_eq!(m.credential.env, None);
        assert_eq!(m.warnings(), Vec::<String>::new());
        let restated = minimal("").replace(
            "header = \"x-api-key\"",
            "header = \"x-api-key\"\nenv = \"DEMO_DOCS_API_KEY\"",
        );
        Manifest::parse(&restated, "m").unwrap();
        for other in [
            "SCOPABLE_VAULT_KEY",
            "SCOPABLE_DB",
            "AWS_SECRET_ACCESS_KEY",
            "demo_docs_api_key",
            "DEMO-DOCS_API_KEY",
            "",
        ] {
            let text = minimal("").replace(
                "header = \"x-api-key\"",
                &format!("header = \"x-api-key\"\nenv = {other:?}"),
            );
            let err = refusal(&text);
            assert!(err.contains("[credential] env"), "{err}");
            assert!(
                err.contains("from DEMO_DOCS_API_KEY only"),
                "the message names the variable it must be: {err}"
            );
        }
        // The host's own variables are SCOPABLE_*: no connector may be named so.
        for name in ["scopable", "scopable-x", "scopable-vault", "scopablex"] {
            let err = refusal(&minimal("").replace("demo-docs", name));
            assert!(err.contains("is reserved"), "{name}: {err}");
            assert!(err.contains("SCOPABLE_"), "{name}: {err}");
        }
        Manifest::parse(&minimal("").replace("demo-docs", "my-scopable"), "m").unwrap();
        // The command line's own commands are not connector names.
        for name in ["import", "audit", "check", "pin", "search", "help"] {
            let err = refusal(&minimal("").replace("demo-docs", name));
            assert!(err.contains("is a host command"), "{name}: {err}");
        }
    }

    #[test]
    fn every_limit_has_a_floor_and_a_ceiling() {
        let ranges = Limits::default().ranges();
        assert_eq!(ranges.len(), 21);
        for (name, default, range) in ranges {
            assert!(
                range.contains(&default),
                "{name}: default {default} out of {range:?}"
            );
            assert!(*range.start() >= 1, "{name}: 0 must be refused");
            // 0, one past the ceiling, the largest TOML integer and u64::MAX: each refused, by name.
            let too_big = range.end() + 1;
            for value in [
                "0".to_string(),
                too_big.to_string(),
                i64::MAX.to_string(),
                u64::MAX.to_string(),
            ] {
                let err = refusal(&minimal(&format!("[limits]\n{name} = {value}")));
                assert!(err.contains(name), "{name} = {value}: {err}");
            }
            let err = refusal(&minimal(&format!("[limits]\n{name} = {too_big}")));
            assert!(
                err.contains(&format!(
                    "[limits] {name} = {too_big} is out of range: allowed {}..={}",
                    range.start(),
                    range.end()
                )),
                "{err}"
            );
            // The ceiling itself is accepted.
            let at_ceiling = minimal(&format!("[limits]\n{name} = {}", range.end()));
            Manifest::parse(&at_ceiling, "m").unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn over_broad_manifests_are_refused_naming_the_rule() {
        let region = |url: &str| minimal("").replace("https://api.example.com/v1", url);
        let path = |p: &str| minimal("").replace("path = \"/things\"", &format!("path = {p:?}"));
        let header =
            |h: &str| minimal("").replace("header = \"x-api-key\"", &format!("header = {h:?}"));
        let query = |q: &str| minimal("").replace("\"order=id\"", &format!("{q:?}"));
        let cases: Vec<(String, &str)> = vec![
            (path("/"), "is the root of the API"),
            (path("/organizations/*"), "wildcard or glob character"),
            (path("/*"), "wildcard or glob character"),
            (path("/org[1-9]"), "wildcard or glob character"),
            (path("/{a,b}"), "wildcard or glob character"),
            (path("/things?all=1"), "without '..', '//', '%' or a query"),
            (region("https://*.example.com"), "has a wildcard"),
            (region("https://*"), "has a wildcard"),
            (region("https://169.254.169.254"), "169.254.169.254"),
            (region("https://169.254.10.1/v1"), "link-local"),
            (region("https://[fe80::1]"), "link-local range (fe80::/10)"),
            (region("https://[::ffff:169.254.169.254]"), "link-local"),
            (region("https://[64:ff9b::a9fe:a9fe]"), "link-local"),
            (region("https://127.0.0.1:8443"), "loopback"),
            (region("https://[::1]"), "loopback"),
            (region("https://10.1.2.3"), "private range"),
            (region("https://172.16.0.1"), "private range"),
            (region("https://172.31.255.254"), "private range"),
            (region("https://192.168.1.1"), "private range"),
            (region("https://[fd12::1]"), "private range (fc00::/7)"),
            (region("https://0.0.0.0"), "unspecified"),
            (region("https://[::]"), "unspecified"),
            (region("https://100.100.100.200"), "shared address range"),
            (region("https://localhost"), "single-label name"),
            (region("https://localhost.:8443"), "single-label name"),
            (region("https://metadata"), "single-label name"),
            (region("https://metadata.google.internal"), "internal"),
            (region("https://api.localhost"), "local or internal name"),
            (region("https://printer.local"), "local or internal name"),
            (region("https://127.1"), "another spelling"),
            (region("https://2130706433"), "another spelling"),
            (region("https://0x7f.0.0.1"), "another spelling"),
            (region("https://a_b.example.com"), "not a valid host name"),
            (region("http://api.example.com"), "must use https"),
            (query("*"), "has a wildcard"),
            (query("order=*"), "has a wildcard"),
            (query("[*]"), "accepts every bracketed key"),
            (query(""), "is empty"),
            (query("a&b"), "'&'"),
        ];
        let mut headers: Vec<String> = [
            "host",
            "Host",
            "cookie",
            "content-length",
            "transfer-encoding",
            "connection",
            "te",
            "upgrade",
            "proxy-authorization",
            "x-http-method-override",
        ]
        .iter()
        .map(|h| h.to_string())
        .collect();
        headers.extend(
            wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS
                .iter()
                .map(|h| h.as_str().to_string()),
        );
        let mut all = cases;
        for h in &headers {
            all.push((header(h), "is never right for a key"));
        }
        for (text, needle) in &all {
            let err = refusal(text);
            assert!(err.contains(needle), "expected {needle:?} in: {err}");
        }
        // Public hosts, IPv6 included, stay allowed.
        for url in [
            "https://api.example.com",
            "https://API.Example.com:8443/v2",
            "https://203.0.113.7",
            "https://[2001:db8::1]",
            "https://eu.docs.example.",
        ] {
            Manifest::parse(&region(url), "m").unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let text = minimal("[limits]\ncpu_ms = 0\n")
            .replace("https://api.example.com/v1", "https://169.254.169.254")
            .replace("header = \"x-api-key\"", "header = \"cookie\"");
        let m = Manifest::parse_unvalidated(&text, "m").unwrap();
        let problems = m.problems();
        assert_eq!(problems.len(), 3, "{problems:?}");
        let err = refusal(&text);
        for needle in ["169.254.169.254", "\"cookie\"", "cpu_ms"] {
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn broad_grants_warn_but_are_accepted() {
        let mut text = minimal(
            "[limits]\ncpu_ms = 590000\nmax_requests_per_call = 17\nbudget_requests = 3001\nbudget_window_secs = 300\n",
        )
        .replace("\"order=id\"", "\"order=id\", \"filter[*]\"");
        for i in 0..8 {
            text.push_str(&format!(
                "\n[[requests]]\nmethod = \"GET\"\npath = \"/things{i}\"\n"
            ));
        }
        text = text.replace("path = \"/things0\"", "path = \"/graphql\"");
        let m = Manifest::parse(&text, "m").unwrap();
        let warnings = m.warnings();
        let expected = [
            "query rule filter[*] (GET /things) lets any key filter[...] through",
            "9 request shapes: more than 8",
            "request path \"/graphql\" looks like an API root or a catch-all endpoint",
            "[limits] cpu_ms = 590000 is within 10% of its ceiling (600000)",
            "[limits] max_requests_per_call = 17: more than 16 requests",
            "[limits] budget_requests = 3001 per budget_window_secs = 300: more than 3000",
        ];
        for needle in expected {
            assert!(
                warnings.iter().any(|w| w.contains(needle)),
                "no warning {needle:?} in {warnings:#?}"
            );
        }
        assert_eq!(warnings.len(), expected.len(), "{warnings:#?}");
        // The same budget over a longer window is not broad; /v1 alone is an API root.
        let narrow = minimal("[limits]\nbudget_requests = 3000\nbudget_window_secs = 300\n");
        assert!(Manifest::parse(&narrow, "m").unwrap().warnings().is_empty());
        let root = minimal("").replace("path = \"/things\"", "path = \"/v1\"");
        assert_eq!(Manifest::parse(&root, "m").unwrap().warnings().len(), 1);
    }

    #[test]
    fn parse_errors_name_the_line() {
        let err = refusal(&minimal("[limits]\nmax_attempts = 5000000000\n"));
        assert!(err.contains("max_attempts = 5000000000"), "{err}");
        assert!(err.contains("line "), "{err}");
    }

    #[test]
    fn names_shown_to_people_are_printable() {
        for bad in [
            "",
            "   ",
            "IT\u{1b}[8mGlue",
            "IT Glue\u{202e}",
            &"x".repeat(65),
        ] {
            let text = ITGLUE_MANIFEST.replace(
                "display_name = \"IT Glue\"",
                &format!("display_name = {}", serde_json::to_string(bad).unwrap()),
            );
            let err = Manifest::parse(&text, "m").unwrap_err().to_string();
            assert!(err.contains("display_name"), "{bad:?}: {err}");
        }
        let text = ITGLUE_MANIFEST.replace("eu = ", "\"e\\nu\" = ");
        let err = Manifest::parse(&text, "m").unwrap_err().to_string();
        assert!(err.contains("region name"), "{err}");
    }
}

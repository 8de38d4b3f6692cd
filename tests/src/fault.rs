//! Fault injection: rules that pick which requests misbehave, and the misbehaviours a client of
//! IT Glue must survive (errors, rate limits, proxies, stalls, truncation, resets, huge bodies).

use std::time::Duration;

/// Which requests a [`FaultRule`] applies to. Counters (`NextN`, `times`) are spent only when
/// their whole rule applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// Every request.
    Always,
    /// The next `n` requests (that reach this rule).
    NextN(u64),
    /// Every `n`th request received since the rule was added (the nth, 2nth...), counting
    /// every well-formed request the simulator receives, whichever rule answers it (a request
    /// refused as malformed is never faulted and not counted). `n == 0` never matches.
    EveryNth(u64),
    /// Requests whose path, with or without its region prefix (`/eu`), starts with this.
    PathPrefix(String),
    /// Requests for page `n` (`page[number]`, 1 when absent).
    Page(u64),
    /// Requests with this method (case-sensitive, e.g. `POST`).
    Method(String),
    /// Requests matching every condition.
    All(Vec<When>),
    /// The first `remaining` requests matching `when`.
    Times {
        /// The condition.
        when: Box<When>,
        /// How many more matching requests the rule applies to.
        remaining: u64,
    },
}

impl When {
    /// Limits this condition to its first `n` matching requests.
    pub fn times(self, n: u64) -> When {
        When::Times {
            when: Box::new(self),
            remaining: n,
        }
    }

    /// Both this condition and `other`.
    pub fn and(self, other: When) -> When {
        match self {
            When::All(mut all) => {
                all.push(other);
                When::All(all)
            }
            first => When::All(vec![first, other]),
        }
    }

    /// Whether the request matches, without spending any counter.
    pub(crate) fn test(&self, req: &FaultInput<'_>) -> bool {
        match self {
            When::Always => true,
            When::NextN(n) => *n > 0,
            When::EveryNth(n) => *n > 0 && req.seen.is_multiple_of(*n),
            When::PathPrefix(prefix) => {
                req.path.starts_with(prefix.as_str()) || req.rel_path.starts_with(prefix.as_str())
            }
            When::Page(n) => req.page == *n,
            When::Method(m) => req.method == m,
            When::All(all) => all.iter().all(|w| w.test(req)),
            When::Times { when, remaining } => *remaining > 0 && when.test(req),
        }
    }

    /// Spends the counters of a condition that matched.
    pub(crate) fn consume(&mut self) {
        match self {
            When::NextN(n) => *n = n.saturating_sub(1),
            When::All(all) => all.iter_mut().for_each(When::consume),
            When::Times { when, remaining } => {
                *remaining = remaining.saturating_sub(1);
                when.consume();
            }
            When::Always | When::EveryNth(_) | When::PathPrefix(_) | When::Page(_) => {}
            When::Method(_) => {}
        }
    }
}

/// What the simulator knows about a request when choosing a fault.
#[derive(Debug)]
pub(crate) struct FaultInput<'a> {
    /// Requests received since the rule was added, this one included.
    pub seen: u64,
    pub method: &'a str,
    pub path: &'a str,
    pub rel_path: &'a str,
    pub page: u64,
}

/// A misbehaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status, optional `Retry-After` and body (JSON bodies are sent as
    /// `application/vnd.api+json`, others as `text/plain`).
    Status {
        /// Status code.
        status: u16,
        /// `Retry-After` header value, sent as given.
        retry_after: Option<String>,
        /// Body, sent as given.
        body: String,
    },
    /// An HTML error page, as a proxy or load balancer would send.
    Html {
        /// Status code.
        status: u16,
    },
    /// A status with an empty body (`Content-Length: 0`, no content type).
    EmptyBody {
        /// Status code.
        status: u16,
    },
    /// Read the request, send nothing for this long, then close.
    Stall(Duration),
    /// Send the normal status line and headers (with `Content-Length`), then nothing for this
    /// long, then close.
    StallAfterHeaders(Duration),
    /// Send the normal headers and half the body, then close: fewer bytes than
    /// `Content-Length` says.
    Truncated,
    /// Close the connection right after reading the request, without a response (a TCP reset
    /// where the platform allows it).
    Reset,
    /// `302 Found` to this location.
    Redirect {
        /// The `Location` header.
        location: String,
    },
    /// A `200` JSON:API document of exactly `bytes` bytes (or the smallest such document when
    /// `bytes` is smaller), streamed in chunks; the padding is a long string attribute.
    Huge {
        /// Body size in bytes.
        bytes: usize,
    },
    /// Wait this long, then answer normally.
    Latency(Duration),
    /// Answer normally, but report `total-count` off by this much (never below zero).
    ShiftTotal(i64),
    /// Answer normally, echoing the request's `x-api-key` back in the response headers
    /// (`x-api-key`, `authorization`, `set-cookie`), as a misconfigured proxy might.
    EchoCredential,
    /// The document of [`Fault::Huge`], sent with `Transfer-Encoding: chunked` and no
    /// `Content-Length`: its size shows only as it arrives.
    HugeChunked {
        /// Body size in bytes.
        bytes: usize,
    },
}

fn json_error(status: u16, title: &str, detail: &str) -> String {
    serde_json::json!({"errors": [{"status": status.to_string(), "title": title, "detail": detail}]})
        .to_string()
}

impl Fault {
    /// A status with an IT Glue-style JSON:API error body.
    pub fn status(status: u16) -> Fault {
        let (title, detail) = match status {
            400 => ("Bad Request", "The request could not be processed"),
            404 => ("Record Not Found", "The record could not be found"),
            429 => ("Too Many Requests", "Rate limit exceeded, try again later"),
            500 => ("Internal Server Error", "Something went wrong"),
            502 => (
                "Bad Gateway",
                "The upstream server returned an invalid response",
            ),
            503 => (
                "Service Unavailable",
                "The service is temporarily unavailable",
            ),
            504 => (
                "Gateway Timeout",
                "The request took too long; use a smaller page size",
            ),
            _ => (crate::http::reason(status), "Simulated error"),
        };
        Fault::Status {
            status,
            retry_after: None,
            body: json_error(status, title, detail),
        }
    }

    /// `429 Too Many Requests` without `Retry-After` (IT Glue documents none).
    pub fn rate_limited() -> Fault {
        Fault::status(429)
    }

    /// `429 Too Many Requests` with `Retry-After: retry_after` (e.g. `"2"`).
    pub fn rate_limited_retry_after(retry_after: &str) -> Fault {
        match Fault::status(429) {
            Fault::Status { status, body, .. } => Fault::Status {
                status,
                retry_after: Some(retry_after.to_string()),
                body,
            },
            other => other,
        }
    }

    /// `500 Internal Server Error`.
    pub fn internal_error() -> Fault {
        Fault::status(500)
    }

    /// `502 Bad Gateway`.
    pub fn bad_gateway() -> Fault {
        Fault::status(502)
    }

    /// `503 Service Unavailable`.
    pub fn unavailable() -> Fault {
        Fault::status(503)
    }

    /// `504 Gateway Timeout`, as IT Glue answers a page that took too long.
    pub fn gateway_timeout() -> Fault {
        Fault::status(504)
    }
}

/// A fault and the requests it applies to. Rules are checked in the order added; the first
/// that matches answers the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    /// Which requests.
    pub when: When,
    /// What happens to them.
    pub fault: Fault,
}

impl FaultRule {
    /// A rule.
    pub fn new(when: When, fault: Fault) -> FaultRule {
        FaultRule { when, fault }
    }

    /// The fault on every request.
    pub fn always(fault: Fault) -> FaultRule {
        FaultRule::new(When::Always, fault)
    }

    /// The fault on the next `n` requests.
    pub fn next(n: u64, fault: Fault) -> FaultRule {
        FaultRule::new(When::NextN(n), fault)
    }
}

/// An installed rule and the number of requests received since it was added.
#[derive(Debug)]
pub(crate) struct Installed {
    pub rule: FaultRule,
    pub seen: u64,
}

/// Counts the request for every rule, then returns the first matching rule's fault and spends
/// its counters.
pub(crate) fn choose(
    rules: &mut [Installed],
    method: &str,
    path: &str,
    rel_path: &str,
    page: u64,
) -> Option<Fault> {
    for r in rules.iter_mut() {
        r.seen += 1;
    }
    for r in rules.iter_mut() {
        let input = FaultInput {
            seen: r.seen,
            method,
            path,
            rel_path,
            page,
        };
        if r.rule.when.test(&input) {
            r.rule.when.consume();
            return Some(r.rule.fault.clone());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn install(rules: Vec<FaultRule>) -> Vec<Installed> {
        rules
            .into_iter()
            .map(|rule| Installed { rule, seen: 0 })
            .collect()
    }

    fn pick(rules: &mut [Installed], path: &str, page: u64) -> Option<Fault> {
        choose(rules, "GET", path, path, page)
    }

    #[test]
    fn next_n_is_spent() {
        let mut rules = install(vec![FaultRule::next(2, Fault::internal_error())]);
        assert!(pick(&mut rules, "/organizations", 1).is_some());
        assert!(pick(&mut rules, "/organizations", 1).is_some());
        assert!(pick(&mut rules, "/organizations", 1).is_none());
    }

    #[test]
    fn every_nth_counts_all_requests_and_first_rule_wins() {
        let mut rules = install(vec![
            FaultRule::new(When::PathPrefix("/passwords".into()), Fault::Reset),
            FaultRule::new(When::EveryNth(3), Fault::unavailable()),
        ]);
        let got: Vec<bool> = [
            "/passwords",
            "/organizations",
            "/organizations",
            "/x",
            "/y",
            "/z",
        ]
        .iter()
        .map(|p| matches!(pick(&mut rules, p, 1), Some(Fault::Status { .. })))
        .collect();
        // Request 3 and 6 get the 503; request 1 was answered by the first rule but counted.
        assert_eq!(got, vec![false, false, true, false, false, true]);
    }

    #[test]
    fn times_and_page_combine() {
        let when = When::PathPrefix("/configurations".into())
            .and(When::Page(2))
            .times(1);
        let mut rules = install(vec![FaultRule::new(when, Fault::gateway_timeout())]);
        assert!(pick(&mut rules, "/configurations", 1).is_none());
        assert!(pick(&mut rules, "/organizations", 2).is_none());
        assert!(pick(&mut rules, "/configurations", 2).is_some());
        assert!(pick(&mut rules, "/configurations", 2).is_none());
    }

    #[test]
    fn retry_after_helper_sets_header_and_json_body() {
        let Fault::Status {
            status,
            retry_after,
            body,
        } = Fault::rate_limited_retry_after("7")
        else {
            panic!("not a status fault");
        };
        assert_eq!(status, 429);
        assert_eq!(retry_after.as_deref(), Some("7"));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["errors"][0]["status"], "429");
    }
}

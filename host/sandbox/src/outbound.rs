//! The outbound HTTP capability: every request a connector makes goes through
//! [`Outbound::send_request`], which applies the policy first, then adds the credential,
//! sends with bounded timeouts, and meters the response body against its size limit.

use crate::audit::{AuditSink, Event};
use crate::manifest::Limits;
use crate::policy::{Denial, OutboundPolicy, Rule};
use crate::report::CallReport;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use wasmtime_wasi_http::{
    DEFAULT_FORBIDDEN_HEADERS, Error as HttpError, RequestOptions, WasiHttpHooks,
};

/// What one export call gets from the host: its outbound policy, credential and sinks.
#[derive(Clone)]
pub struct CallContext {
    /// The outbound policy (base URL and declared requests).
    pub policy: Arc<OutboundPolicy>,
    /// The credential header value (prefix included); never given to the guest.
    pub credential: Arc<Credential>,
    /// Where audit records go.
    pub audit: crate::audit::AuditSink,
    /// The connector's storage.
    pub storage: crate::storage::StorageHandle,
    /// Requests sent so far with this context (all calls, retries included).
    pub requests: Arc<std::sync::atomic::AtomicU64>,
    /// The shared request budget, when pacing applies: every request that passed the policy
    /// waits for room in it (`Outbound::send_request`).
    pub budget: Option<crate::budget::Budget>,
    /// Bounds the HTTP requests in flight across every call made with this context (each
    /// request holds a permit until its body is read). `None`: no bound beyond the call's own.
    pub in_flight: Option<Arc<tokio::sync::Semaphore>>,
}

/// The credential the host adds to allowed requests. Its `Debug` never shows the value.
pub struct Credential {
    header: HeaderName,
    value: HeaderValue,
    prefix_len: usize,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({}: <redacted>)", self.header)
    }
}

impl Credential {
    /// Builds the header from the manifest's header name, prefix and the key. Fails (without
    /// echoing the key) when the key is not a valid header value.
    pub fn new(header: &str, prefix: &str, key: &str) -> Result<Credential, String> {
        let header = HeaderName::from_bytes(header.to_ascii_lowercase().as_bytes())
            .map_err(|_| format!("{header:?} is not a valid header name"))?;
        let mut value = HeaderValue::from_str(&format!("{prefix}{key}"))
            .map_err(|_| "the key contains characters that cannot be sent in a header (control characters or non-ASCII); paste it again".to_string())?;
        value.set_sensitive(true);
        Ok(Credential {
            header,
            value,
            prefix_len: prefix.len(),
        })
    }

    /// `text` with the key replaced by `<redacted>`: connector output and error details are
    /// shown to the admin and stored, and a server may echo the key back.
    pub fn redact(&self, text: &str) -> String {
        let key = self
            .value
            .to_str()
            .ok()
            .and_then(|full| full.get(self.prefix_len..))
            .unwrap_or("");
        if key.len() < 4 || !text.contains(key) {
            return text.to_string();
        }
        text.replace(key, "<redacted>")
    }

    /// The header name.
    pub fn header(&self) -> &HeaderName {
        &self.header
    }
}

/// The per-call outbound hooks, kept in the store state.
pub struct Outbound {
    policy: Arc<OutboundPolicy>,
    credential: Arc<Credential>,
    audit: AuditSink,
    report: Arc<Mutex<CallReport>>,
    sent: Arc<AtomicU64>,
    network: bool,
    in_flight: Option<Arc<tokio::sync::Semaphore>>,
    budget: Option<crate::budget::Budget>,
    timeouts: RequestOptions,
    max_response_bytes: u64,
    client: crate::net::HttpClient,
}

impl Outbound {
    /// Hooks for one export call made with `ctx`, sending through `client`'s pool;
    /// `network: false` refuses every request.
    pub fn new(
        ctx: &CallContext,
        report: Arc<Mutex<CallReport>>,
        network: bool,
        limits: &Limits,
        client: crate::net::HttpClient,
    ) -> Outbound {
        Outbound {
            client,
            policy: ctx.policy.clone(),
            credential: ctx.credential.clone(),
            audit: ctx.audit.clone(),
            report,
            sent: ctx.requests.clone(),
            network,
            in_flight: ctx.in_flight.clone(),
            budget: ctx.budget.clone(),
            timeouts: RequestOptions {
                connect_timeout: Some(Duration::from_millis(limits.connect_timeout_ms)),
                first_byte_timeout: Some(Duration::from_millis(limits.first_byte_timeout_ms)),
                between_bytes_timeout: Some(Duration::from_millis(limits.between_bytes_timeout_ms)),
            },
            max_response_bytes: limits.max_response_bytes,
        }
    }

    fn requests_sent(&self) -> u32 {
        self.report.lock().map(|r| r.requests).unwrap_or(u32::MAX)
    }

    /// Records a refused request: audited, and counted against the call. Past
    /// [`crate::report::MAX_DENIALS_PER_CALL`] refusals it is only counted (the call is
    /// stopped at the next epoch tick and one row sums up the rest).
    fn deny(&self, event: Event, denial: Denial) {
        record_denial(&self.report, &self.audit, event, denial);
    }
}

/// [`Outbound::deny`], for the parts of a request checked after `send_request` returned.
fn record_denial(report: &Mutex<CallReport>, audit: &AuditSink, event: Event, denial: Denial) {
    let rule = denial.rule.name().to_string();
    let detail = denial.message.clone();
    let recorded = report
        .lock()
        .map(|mut r| r.refuse(event.capability, Some(denial)))
        .unwrap_or(true);
    if recorded {
        audit.record(Event {
            allowed: false,
            rule: Some(rule),
            detail: Some(detail),
            ..event
        });
    }
}

/// The guest's timeouts may only tighten the host's.
fn tighter(guest: Option<Duration>, host: Option<Duration>) -> Option<Duration> {
    match (guest, host) {
        (Some(g), Some(h)) => Some(g.min(h)),
        (g, h) => h.or(g),
    }
}

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for Outbound {
    /// Nothing is refused while the guest builds a request: a refusal there leaves no audit
    /// row and can be swallowed. Every header the guest sets reaches [`OutboundPolicy::check`]
    /// (an allow-list), which refuses, audits and fails the call. Hop-by-hop headers are taken
    /// out of responses in `send_request` instead.
    fn forbidden_header_filter(&mut self) -> wasmtime_wasi_http::ForbiddenHeaderFilter {
        Arc::new(|_: &HeaderName| false)
    }

    fn send_request(
        &mut self,
        mut request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> ResponseFuture {
        let event = Event {
            capability: "http",
            method: request.method().to_string(),
            host: request.uri().host().unwrap_or("").to_string(),
            path: request.uri().path().to_string(),
            ..Event::default()
        };
        // The policy sees the request exactly as the guest built it, before anything else.
        let checked = if self.network {
            self.policy.check(
                request.method(),
                request.uri(),
                request.headers(),
                self.requests_sent(),
            )
        } else {
            Err(Denial {
                rule: Rule::NoNetwork,
                message: "this export may not use the network (`match` is a pure function)".into(),
            })
        };
        let checked = checked.and_then(|()| {
            // Every `content-length` value must be `0` (a second value could declare a body).
            let declared = request
                .headers()
                .get_all(http::header::CONTENT_LENGTH)
                .iter()
                .any(|v| v.as_bytes() != b"0");
            if declared
                || request
                    .headers()
                    .contains_key(http::header::TRANSFER_ENCODING)
            {
                Err(Denial {
                    rule: Rule::Body,
                    message: "requests may not carry a body (connectors are read-only)".into(),
                })
            } else {
                Ok(())
            }
        });
        if let Err(denial) = checked {
            tracing::warn!(
                method = %crate::display::safe(&event.method),
                host = %crate::display::safe(&event.host),
                path = %crate::display::safe(&event.path),
                rule = denial.rule.name(),
                "request denied"
            );
            self.deny(event, denial);
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        if let Ok(mut r) = self.report.lock() {
            r.requests += 1;
        }
        self.sent.fetch_add(1, Ordering::Relaxed);
        request.headers_mut().insert(
            self.credential.header.clone(),
            self.credential.value.clone(),
        );
        // The body is read to its end before anything is sent (a guest may write it after
        // handing the request over, as waki does); the request goes out with an empty one.
        let (parts, guest_body) = request.into_parts();
        let guest = options.unwrap_or_default();
        let options = RequestOptions {
            connect_timeout: tighter(guest.connect_timeout, self.timeouts.connect_timeout),
            first_byte_timeout: tighter(guest.first_byte_timeout, self.timeouts.first_byte_timeout),
            between_bytes_timeout: tighter(
                guest.between_bytes_timeout,
                self.timeouts.between_bytes_timeout,
            ),
        };
        let audit = self.audit.clone();
        let report = self.report.clone();
        let credential_header = self.credential.header().clone();
        let max = self.max_response_bytes;
        let in_flight = self.in_flight.clone();
        let budget = self.budget.clone();
        let client = self.client.clone();
        Box::new(async move {
            if let Err(denial) = read_empty_body(guest_body).await {
                tracing::warn!(
                    method = %crate::display::safe(&event.method),
                    host = %crate::display::safe(&event.host),
                    path = %crate::display::safe(&event.path),
                    rule = denial.rule.name(),
                    "request denied"
                );
                record_denial(&report, &audit, event, denial);
                return Err(HttpError::HttpRequestDenied);
            }
            let request = http::Request::from_parts(parts, http_body_util::Empty::new());
            // Pacing: every request that passed the policy waits for room in the shared budget,
            // then (held until the body is read, or dropped) for one of the `concurrency`
            // places in flight: the API sees at most that many requests at once, while more
            // calls may be parsing what they received. The wait is the host's: it is kept
            // out of the call's `call_timeout_ms` (`CallReport::pacing`), and a failure here
            // is the host's too (`CallReport::host_failure`), not the API's.
            let paced = Paced::begin(&report);
            if let Some(budget) = budget
                && let Err(e) = budget.acquire().await
            {
                return Err(host_failure(&report, e.to_string()));
            }
            let permit = match in_flight {
                Some(s) => match s.acquire_owned().await {
                    Ok(p) => Some(p),
                    Err(_) => {
                        return Err(host_failure(&report, "the request limiter closed".into()));
                    }
                },
                None => None,
            };
            drop(paced);
            let started = Instant::now();
            let sent = match client.send(request, options).await {
                Ok(sent) => sent,
                Err(failed) => {
                    if let Ok(mut r) = report.lock() {
                        r.last_status = None;
                        if let Some(failure) = failed.failure {
                            r.connection_failure.get_or_insert(failure);
                        }
                    }
                    audit.record(Event {
                        allowed: true,
                        duration_ms: started.elapsed().as_millis() as u64,
                        detail: Some(failed.detail),
                        connection: failed.connection.map(|c| c.to_string()),
                        ..event
                    });
                    return Err(failed.error);
                }
            };
            let response = sent.response;
            let event = Event {
                connection: Some(sent.connection.to_string()),
                ..event
            };
            let status = response.status().as_u16();
            if let Ok(mut r) = report.lock() {
                r.last_status = Some(status);
            }
            let declared = response
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let event = Event {
                allowed: true,
                status: Some(status),
                ..event
            };
            if declared.is_some_and(|n| n > max) {
                if let Ok(mut r) = report.lock() {
                    r.response_too_large = Some(max);
                }
                audit.record(Event {
                    rule: Some("max-response-bytes".into()),
                    duration_ms: started.elapsed().as_millis() as u64,
                    detail: Some(format!(
                        "content-length {} over the limit",
                        declared.unwrap_or(0)
                    )),
                    ..event
                });
                return Err(HttpError::HttpResponseBodySize(declared));
            }
            let (mut parts, body) = response.into_parts();
            scrub(&mut parts.headers, &credential_header);
            let metered = MeteredBody {
                credential_header,
                inner: body.boxed_unsync(),
                seen: 0,
                max,
                pending: Some(Pending {
                    audit,
                    report,
                    event,
                    started,
                    _permit: permit,
                }),
            };
            // The pool drives its connections itself: nothing is left for the caller to await.
            Ok((
                http::Response::from_parts(parts, metered.boxed_unsync()),
                Box::new(async { Ok(()) })
                    as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }
}

/// Records a failure of the host's own (its database, its limiter) in the call's report, so
/// that the call fails as the host's whatever the guest makes of the error it gets.
fn host_failure(report: &Mutex<CallReport>, message: String) -> HttpError {
    tracing::error!("{message}");
    if let Ok(mut r) = report.lock() {
        r.host_failure.get_or_insert(message);
    }
    HttpError::InternalError(Some("the host failed".into()))
}

/// A request's wait for the host's pacing, ended when dropped (also when the request is).
struct Paced<'a>(&'a Mutex<CallReport>);

impl<'a> Paced<'a> {
    fn begin(report: &'a Mutex<CallReport>) -> Paced<'a> {
        if let Ok(mut r) = report.lock() {
            r.pacing.begin();
        }
        Paced(report)
    }
}

impl Drop for Paced<'_> {
    fn drop(&mut self) {
        if let Ok(mut r) = self.0.lock() {
            r.pacing.end();
        }
    }
}

/// Reads a request body to its end: `Ok` when it ends holding no data and no trailers, else
/// the denial (rule `body`). Nothing of the request has been sent yet.
async fn read_empty_body(mut body: wasmtime_wasi_http::WasiBody) -> Result<(), Denial> {
    let refused = |message: String| Denial {
        rule: Rule::Body,
        message,
    };
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) if frame.data_ref().is_some_and(|d| d.is_empty()) => {}
            Ok(_) => {
                return Err(refused(
                    "requests may not carry a body (connectors are read-only)".into(),
                ));
            }
            Err(e) => {
                return Err(refused(format!(
                    "the request's body did not end cleanly ({e}); requests may not carry a body (connectors are read-only)"
                )));
            }
        }
    }
    Ok(())
}

/// The audit record to write once the body is finished (or dropped).
struct Pending {
    audit: AuditSink,
    report: Arc<Mutex<CallReport>>,
    event: Event,
    started: Instant,
    /// The request's place among those in flight, given back when the body is done.
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Takes out of a response's headers (or trailers) what the component must never see:
/// hop-by-hop headers (the connection's business), and anything that could carry a credential
/// back (the credential header a server might echo, `authorization`, `cookie`, `set-cookie`).
fn scrub(headers: &mut http::HeaderMap, credential: &HeaderName) {
    for name in &DEFAULT_FORBIDDEN_HEADERS {
        headers.remove(name);
    }
    headers.remove(credential);
    for name in [
        http::header::AUTHORIZATION,
        http::header::COOKIE,
        http::header::SET_COOKIE,
    ] {
        headers.remove(name);
    }
}

/// A response body that counts bytes, fails past the limit, scrubs trailers, and audits when
/// done.
struct MeteredBody {
    credential_header: HeaderName,
    inner: wasmtime_wasi_http::WasiBody,
    seen: u64,
    max: u64,
    pending: Option<Pending>,
}

impl MeteredBody {
    fn finish(&mut self, rule: Option<&str>, detail: Option<String>) {
        if let Some(p) = self.pending.take() {
            if rule == Some("max-response-bytes")
                && let Ok(mut r) = p.report.lock()
            {
                r.response_too_large = Some(self.max);
            }
            p.audit.record(Event {
                bytes: self.seen,
                duration_ms: p.started.elapsed().as_millis() as u64,
                rule: rule.map(str::to_string),
                detail,
                ..p.event
            });
        }
    }
}

impl Body for MeteredBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(mut frame))) => {
                if let Some(trailers) = frame.trailers_mut() {
                    scrub(trailers, &this.credential_header);
                }
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    if this.seen > this.max {
                        this.finish(
                            Some("max-response-bytes"),
                            Some("body over the limit".into()),
                        );
                        return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(
                            this.max,
                        )))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish(None, Some(format!("body error: {e:?}")));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.finish(None, None);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        if self.pending.is_some() {
            self.finish(None, Some("body not read to the end".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_redact_the_key_and_hide_it_from_debug() {
        let c = Credential::new("Authorization", "Bearer ", "s3cr3t-key").unwrap();
        assert_eq!(c.header().as_str(), "authorization");
        assert_eq!(
            c.redact("server said: bad key s3cr3t-key!"),
            "server said: bad key <redacted>!"
        );
        assert_eq!(c.redact("nothing here"), "nothing here");
        assert!(!format!("{c:?}").contains("s3cr3t"));
        assert!(Credential::new("x-api-key", "", "bad\nkey").is_err());
    }
}

//! IT Glue over HTTP: the URLs the connector asks for, the one kind of request it makes (a GET
//! through the host's `wasi:http`), and the classification of every answer into `error`.

use serde_json::Value;
use waki::ErrorCode;

use crate::bindings::scopable::integration::types::{
    ConfigurationPage, Endpoint, Error, OrganizationPage, RateLimited, Verified,
};
use crate::{direct, jsonapi};

/// The media type IT Glue answers with; asking for it keeps proxies from sending HTML.
const ACCEPT: &str = "application/vnd.api+json";

/// IT Glue's largest page. A manifest asking for more would get an error or a silently
/// smaller page, either of which breaks paging.
const MAX_PAGE_SIZE: u32 = 1000;

/// The listing of organizations: page `page` of `page-size` records, sorted by id so that
/// pages stay stable while the host walks them.
pub fn organizations_url(endpoint: &Endpoint, page: u32) -> String {
    list_url(endpoint, "/organizations", page, "")
}

/// The listing of every configuration of the account, with each one's interfaces in
/// `included` so that all MAC addresses come without a request per configuration.
pub fn configurations_url(endpoint: &Endpoint, page: u32) -> String {
    list_url(
        endpoint,
        "/configurations",
        page,
        "&include=configuration_interfaces",
    )
}

/// The smallest request that proves the key and the region: one organization.
pub fn test_url(endpoint: &Endpoint) -> String {
    format!(
        "{}/organizations?page%5Bsize%5D=1&page%5Bnumber%5D=1",
        base(endpoint)
    )
}

/// Brackets are percent-encoded (`page%5Bsize%5D`) as RFC 3986 asks of query text; the host
/// decodes the keys before checking them against the manifest.
fn list_url(endpoint: &Endpoint, path: &str, page: u32, extra: &str) -> String {
    let size = endpoint.page_size.clamp(1, MAX_PAGE_SIZE);
    // Pages are numbered from 1; IT Glue treats 0 as 1 anyway, so ask for what it will send.
    let page = page.max(1);
    format!(
        "{}{path}?page%5Bsize%5D={size}&page%5Bnumber%5D={page}&sort=id{extra}",
        base(endpoint)
    )
}

fn base(endpoint: &Endpoint) -> &str {
    endpoint.base_url.trim_end_matches('/')
}

/// Proves the credential with one small request and reports how many organizations it sees.
pub fn test(endpoint: &Endpoint) -> Result<Verified, Error> {
    let doc = get_json(&test_url(endpoint), "/organizations")?;
    // Reading the page, not just the status, catches a sign-in page answered with 200.
    let page = jsonapi::parse_organization_page(&doc, 1)?;
    Ok(verified(page.info.total_count))
}

/// One page of organizations.
pub fn fetch_organizations(endpoint: &Endpoint, page: u32) -> Result<OrganizationPage, Error> {
    let doc = get_json(&organizations_url(endpoint, page), "/organizations")?;
    let read = jsonapi::parse_organization_page(&doc, page.max(1));
    crate::discard(doc);
    read
}

/// One page of configurations, each with all of its MAC addresses.
pub fn fetch_configurations(endpoint: &Endpoint, page: u32) -> Result<ConfigurationPage, Error> {
    let answer = get(&configurations_url(endpoint, page), "/configurations")?;
    let read = configuration_answer(&answer, page.max(1));
    crate::discard(answer);
    read
}

/// Reads an answer to a configuration listing: a page of the usual shape straight into its
/// records ([`direct`]), anything else through the general reader, which also describes what
/// is wrong with it.
pub fn configuration_answer(answer: &Answer, page: u32) -> Result<ConfigurationPage, Error> {
    if answer.is_success()
        && let Some(read) = direct::configuration_page(&answer.body, page)
    {
        return Ok(read);
    }
    let doc = answer.json("/configurations")?;
    let read = jsonapi::parse_configuration_page(&doc, page);
    crate::discard(doc);
    read
}

/// The `verified` answer for a successful test.
pub fn verified(total_organizations: Option<u64>) -> Verified {
    let detail = match total_organizations {
        Some(1) => "Verified: 1 organization visible".to_string(),
        Some(n) => format!("Verified: {n} organizations visible"),
        None => "Verified: the key works (IT Glue did not say how many organizations it sees)"
            .to_string(),
    };
    Verified {
        detail,
        total_organizations,
    }
}

/// An answer as received: its status, its `Retry-After` and its body.
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The `Retry-After` header, when it was text.
    pub retry_after: Option<String>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl Answer {
    /// Whether the status is a success (2xx).
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The answer's JSON document, or the error its status and body show ([`read_answer`]).
    pub fn json(&self, path: &str) -> Result<Value, Error> {
        read_answer(self.status, self.retry_after.as_deref(), &self.body, path)
    }
}

/// GETs `url` and returns its JSON body, or the classified error. `path` names the listing in
/// error details; the full URL is left out because it only repeats what the host logs.
fn get_json(url: &str, path: &str) -> Result<Value, Error> {
    get(url, path)?.json(path)
}

/// GETs `url` and returns the answer, or the classified failure to get one.
///
/// This is the only function that performs I/O. It sets no credential header: the host adds the
/// key after checking the request against its policy, so the key never enters the component.
fn get(url: &str, path: &str) -> Result<Answer, Error> {
    let request = || waki::Client::new().get(url).header("accept", ACCEPT);
    if let Err(e) = request().build() {
        return Err(Error::Denied(format!(
            "the request URL for {path} is not valid ({}); check the endpoint URL",
            snippet(&e.to_string(), 80)
        )));
    }
    let response = request()
        .send()
        .map_err(|e| transport_error(e.downcast_ref::<ErrorCode>(), &format!("{e:#}"), path))?;
    let status = response.status_code();
    let retry_after = response
        .header("retry-after")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let body = response.body().map_err(|e| {
        Error::Unavailable(format!(
            "the connection failed while reading IT Glue's answer for {path} (or the answer \
             was larger than the host allows): {}",
            snippet(&format!("{e:#}"), 120)
        ))
    })?;
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}

/// Classifies a failure to get any answer. `code` is the `wasi:http` error when the failure
/// came from the host; `text` is the full error text, searched as a fallback because the
/// host's refusal is what matters most to tell apart from a network problem.
pub fn transport_error(code: Option<&ErrorCode>, text: &str, path: &str) -> Error {
    let Some(code) = code else {
        if text.contains("HttpRequestDenied") {
            return denied(path);
        }
        return Error::Unavailable(format!(
            "could not reach IT Glue for {path}: {}",
            snippet(text, 120)
        ));
    };
    use ErrorCode as E;
    match code {
        E::HttpRequestDenied => denied(path),
        // The request broke a rule before it left: the host or the HTTP stack refused it.
        E::HttpRequestUriInvalid
        | E::HttpRequestUriTooLong
        | E::HttpRequestMethodInvalid
        | E::HttpRequestLengthRequired
        | E::HttpRequestBodySize(_)
        | E::HttpRequestHeaderSectionSize(_)
        | E::HttpRequestHeaderSize(_)
        | E::HttpRequestTrailerSectionSize(_)
        | E::HttpRequestTrailerSize(_) => Error::Denied(format!(
            "the request for {path} was refused before it was sent ({})",
            snippet(&format!("{code:?}"), 80)
        )),
        // An answer arrived but cannot be read; asking again would get the same answer.
        E::HttpResponseHeaderSectionSize(_)
        | E::HttpResponseHeaderSize(_)
        | E::HttpResponseBodySize(_)
        | E::HttpResponseTrailerSectionSize(_)
        | E::HttpResponseTrailerSize(_)
        | E::HttpResponseTransferCoding(_)
        | E::HttpResponseContentCoding(_)
        | E::HttpUpgradeFailed
        | E::HttpProtocolError
        | E::LoopDetected => Error::BadResponse(format!(
            "IT Glue's answer for {path} could not be read ({}); if it was too large, \
             lower the page size",
            snippet(&format!("{code:?}"), 80)
        )),
        E::DnsTimeout | E::DnsError(_) | E::DestinationNotFound => Error::Unavailable(format!(
            "could not resolve IT Glue's host name for {path}; check the network and the region"
        )),
        E::ConnectionRefused => {
            Error::Unavailable(format!("IT Glue refused the connection for {path}"))
        }
        E::ConnectionTimeout => {
            Error::Unavailable(format!("connecting to IT Glue timed out for {path}"))
        }
        E::ConnectionReadTimeout | E::HttpResponseTimeout => Error::Unavailable(format!(
            "IT Glue did not answer in time for {path}; large pages can time out, a smaller \
             page size helps"
        )),
        E::ConnectionTerminated | E::HttpResponseIncomplete => Error::Unavailable(format!(
            "the connection to IT Glue was cut while fetching {path}"
        )),
        E::TlsProtocolError | E::TlsCertificateError | E::TlsAlertReceived(_) => {
            Error::Unavailable(format!(
                "the secure connection to IT Glue failed for {path} ({})",
                snippet(&format!("{code:?}"), 80)
            ))
        }
        _ => Error::Unavailable(format!(
            "could not reach IT Glue for {path} ({})",
            snippet(&format!("{code:?}"), 120)
        )),
    }
}

fn denied(path: &str) -> Error {
    Error::Denied(format!(
        "the host refused the request for {path} (HttpRequestDenied): it is outside what the \
         connector's manifest allows"
    ))
}

/// Turns a received answer into its JSON document, or the error its status and body show.
/// Pure, so that every class of answer is tested natively.
pub fn read_answer(
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
    path: &str,
) -> Result<Value, Error> {
    if (200..300).contains(&status) {
        return parse_json(body);
    }
    let said = body_summary(body);
    Err(match status {
        401 | 403 => Error::Unauthorized(format!(
            "IT Glue rejected the API key (HTTP {status}: {said}). The key may be wrong, \
             revoked (IT Glue revokes keys unused for 90 days) or paused, or it belongs to \
             another region: a key works only on its own region's host (US, EU or AU). \
             IT Glue's IP access control can also refuse this address."
        )),
        404 => Error::NotFound(format!(
            "IT Glue answered 404 Not Found for {path} ({said}); the region or endpoint URL \
             is probably wrong"
        )),
        429 => Error::RateLimited(RateLimited {
            retry_after_seconds: retry_after.and_then(retry_after_seconds),
            detail: format!("IT Glue asked to slow down (HTTP 429: {said})"),
        }),
        500..=599 => Error::Unavailable(format!(
            "IT Glue answered HTTP {status} for {path} ({said}){}",
            if status == 504 {
                "; large pages can time out, a smaller page size helps"
            } else {
                ""
            }
        )),
        _ => Error::BadResponse(format!(
            "IT Glue answered HTTP {status} for {path} ({said})"
        )),
    })
}

/// `Retry-After` in seconds. The HTTP-date form is not used by IT Glue and is left to the
/// host's own back-off.
pub fn retry_after_seconds(header: &str) -> Option<u32> {
    let seconds: u64 = header.trim().parse().ok()?;
    Some(u32::try_from(seconds).unwrap_or(u32::MAX))
}

/// Reads a successful answer's body as JSON. The detail quotes only the start of the body:
/// enough to recognise a proxy page, never a whole document in a log line.
///
/// Only what the connector reads is kept ([`jsonapi::read_document`]). A body that starts like
/// a JSON document is read at once; it is looked at as text only to describe a failure.
pub fn parse_json(body: &[u8]) -> Result<Value, Error> {
    let first = body.iter().copied().find(|b| !b.is_ascii_whitespace());
    if !matches!(first, Some(b'{' | b'[')) {
        let text = String::from_utf8_lossy(body);
        if text.trim().is_empty() {
            return Err(Error::BadResponse(
                "IT Glue answered with an empty body".to_string(),
            ));
        }
        if looks_like_html(&text) {
            return Err(Error::BadResponse(format!(
                "IT Glue answered an HTML page instead of JSON (a proxy or sign-in page?): {}",
                snippet(&text, 80)
            )));
        }
    }
    jsonapi::read_document(body).map_err(|e| {
        let what = if e.is_eof() {
            "truncated JSON"
        } else {
            "not JSON"
        };
        Error::BadResponse(format!(
            "IT Glue's answer is {what}: {}",
            snippet(&String::from_utf8_lossy(body), 80)
        ))
    })
}

fn looks_like_html(text: &str) -> bool {
    // JSON never starts with `<`; a proxy, a sign-in page or an error page does.
    text.trim_start().starts_with('<')
}

/// What an error answer's body says, for the detail string: the message of either JSON error
/// shape, "an HTML page", "an empty body", or the start of whatever else it was.
pub fn body_summary(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if text.trim().is_empty() {
        return "empty body".to_string();
    }
    if looks_like_html(&text) {
        return match html_title(&text) {
            Some(title) => format!("an HTML page titled \"{title}\""),
            None => "an HTML page".to_string(),
        };
    }
    if let Ok(doc) = serde_json::from_slice::<Value>(body)
        && let Some(summary) = jsonapi::error_summary(&doc)
    {
        return summary;
    }
    snippet(&text, 80)
}

fn html_title(html: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    let start = lower.find("<title")?;
    let open_end = start + lower[start..].find('>')? + 1;
    let close = open_end + lower[open_end..].find("</title")?;
    let title = snippet(html.get(open_end..close)?, 60);
    (!title.is_empty()).then_some(title)
}

/// Text made safe and short for a one-line detail: control characters and runs of white space
/// become one space, and at most `max_chars` characters are kept.
pub fn snippet(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    let mut count = 0;
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_whitespace() || c.is_control() {
            pending_space = !out.is_empty();
            continue;
        }
        if count >= max_chars {
            out.push('…');
            return out;
        }
        if pending_space {
            out.push(' ');
            count += 1;
            pending_space = false;
        }
        out.push(c);
        count += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(base_url: &str, page_size: u32) -> Endpoint {
        Endpoint {
            base_url: base_url.to_string(),
            page_size,
        }
    }

    #[test]
    fn listing_urls_are_sorted_by_id_and_paged() {
        let us = endpoint("https://api.itglue.com", 1000);
        assert_eq!(
            organizations_url(&us, 3),
            "https://api.itglue.com/organizations?page%5Bsize%5D=1000&page%5Bnumber%5D=3&sort=id"
        );
        assert_eq!(
            configurations_url(&us, 1),
            "https://api.itglue.com/configurations?page%5Bsize%5D=1000&page%5Bnumber%5D=1\
             &sort=id&include=configuration_interfaces"
        );
        assert_eq!(
            test_url(&us),
            "https://api.itglue.com/organizations?page%5Bsize%5D=1&page%5Bnumber%5D=1"
        );
    }

    #[test]
    fn urls_keep_a_path_prefix_and_bound_the_page() {
        let local = endpoint("http://127.0.0.1:8080/prefix/", 0);
        assert_eq!(
            organizations_url(&local, 0),
            "http://127.0.0.1:8080/prefix/organizations?page%5Bsize%5D=1&page%5Bnumber%5D=1&sort=id"
        );
        let greedy = endpoint("https://api.eu.itglue.com", 5000);
        assert!(organizations_url(&greedy, 2).contains("page%5Bsize%5D=1000&"));
    }

    #[test]
    fn only_the_accept_header_is_ever_set() {
        // The host adds the key; a connector that set any credential header itself would be
        // refused, so the request code must set exactly one header.
        let source = include_str!("api.rs");
        let code = source.split("#[cfg(test)]").next().unwrap_or_default();
        // Reading the answer's `retry-after` is the only other use of a header.
        let code = code.replace(".header(\"retry-after\")", "");
        assert_eq!(code.matches(".header(").count(), 1);
        assert!(code.contains(".header(\"accept\", ACCEPT)"));
        assert_eq!(ACCEPT, "application/vnd.api+json");
    }

    #[test]
    fn a_successful_answer_is_its_json() {
        let doc = read_answer(200, None, br#"{"data":[],"meta":{"total-count":0}}"#, "/x");
        assert_eq!(
            doc.ok().and_then(|d| d["meta"]["total-count"].as_u64()),
            Some(0)
        );
    }

    fn bad_response_detail(result: Result<Value, Error>) -> String {
        match result {
            Err(Error::BadResponse(detail)) => detail,
            other => panic!("expected bad-response, got {other:?}"),
        }
    }

    #[test]
    fn unreadable_successful_answers_are_bad_responses() {
        let empty = bad_response_detail(read_answer(200, None, b"", "/organizations"));
        assert!(empty.contains("empty"), "{empty}");
        let blank = bad_response_detail(read_answer(200, None, b" \n ", "/organizations"));
        assert!(blank.contains("empty"), "{blank}");
        let html = bad_response_detail(read_answer(
            200,
            None,
            b"<!DOCTYPE html><html><head><title>Sign in</title></head></html>",
            "/organizations",
        ));
        assert!(html.contains("HTML"), "{html}");
        let text = bad_response_detail(read_answer(200, None, b"upstream says hi", "/x"));
        assert!(
            text.contains("not JSON") && text.contains("upstream says hi"),
            "{text}"
        );
        let truncated = bad_response_detail(read_answer(200, None, br#"{"data":[{"id":"1""#, "/x"));
        assert!(truncated.contains("truncated"), "{truncated}");
    }

    #[test]
    fn details_quote_only_the_start_of_a_body() {
        let mut body = "x".repeat(70);
        body.push_str(&"SECRET-TAIL ".repeat(500));
        let detail = bad_response_detail(read_answer(200, None, body.as_bytes(), "/x"));
        assert!(!detail.contains("SECRET-TAIL SECRET-TAIL"), "{detail}");
        assert!(detail.chars().count() < 150, "{detail}");
        let control = bad_response_detail(read_answer(200, None, b"bad\x1b[31m\r\nline", "/x"));
        assert!(
            !control.contains('\x1b') && !control.contains('\n'),
            "{control}"
        );
    }

    fn unauthorized_detail(status: u16, body: &[u8]) -> String {
        match read_answer(status, None, body, "/organizations") {
            Err(Error::Unauthorized(detail)) => detail,
            other => panic!("expected unauthorized, got {other:?}"),
        }
    }

    #[test]
    fn a_rejected_key_names_every_likely_cause() {
        let detail = unauthorized_detail(
            401,
            br#"{"errors":[{"status":401,"title":"Unauthorized","detail":"Unauthorized resource access"}]}"#,
        );
        assert!(
            detail.contains("Unauthorized: Unauthorized resource access"),
            "{detail}"
        );
        for cause in ["wrong", "revoked", "90 days", "region", "IP access control"] {
            assert!(detail.contains(cause), "{cause} missing from {detail}");
        }
        let forbidden = unauthorized_detail(403, br#"{"message":"Forbidden"}"#);
        assert!(forbidden.contains("HTTP 403: Forbidden"), "{forbidden}");
        assert!(forbidden.contains("region"), "{forbidden}");
    }

    #[test]
    fn html_and_empty_error_bodies_are_described() {
        let html = unauthorized_detail(
            403,
            b"<html><head><title>403 Forbidden</title></head><body>nginx</body></html>",
        );
        assert!(
            html.contains("an HTML page titled \"403 Forbidden\""),
            "{html}"
        );
        let empty = unauthorized_detail(401, b"");
        assert!(empty.contains("empty body"), "{empty}");
    }

    #[test]
    fn statuses_map_to_their_error_class() {
        assert!(matches!(
            read_answer(404, None, br#"{"errors":[{"title":"Not Found"}]}"#, "/organizations"),
            Err(Error::NotFound(d)) if d.contains("Not Found") && d.contains("/organizations")
        ));
        for status in [500, 502, 503] {
            assert!(
                matches!(
                    read_answer(status, None, b"", "/x"),
                    Err(Error::Unavailable(_))
                ),
                "{status}"
            );
        }
        assert!(matches!(
            read_answer(504, None, b"<html>Gateway Timeout</html>", "/configurations"),
            Err(Error::Unavailable(d)) if d.contains("smaller page size")
        ));
        for status in [100, 301, 302, 400, 409, 422] {
            assert!(
                matches!(
                    read_answer(status, None, b"{}", "/x"),
                    Err(Error::BadResponse(_))
                ),
                "{status}"
            );
        }
    }

    #[test]
    fn rate_limits_carry_retry_after_when_it_is_seconds() {
        let retry = |header: Option<&str>| match read_answer(429, header, b"", "/x") {
            Err(Error::RateLimited(limited)) => limited.retry_after_seconds,
            other => panic!("expected rate-limited, got {other:?}"),
        };
        assert_eq!(retry(Some("30")), Some(30));
        assert_eq!(retry(Some(" 7 ")), Some(7));
        assert_eq!(retry(None), None);
        assert_eq!(retry(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(retry(Some("-1")), None);
        assert_eq!(retry(Some("1.5")), None);
        assert_eq!(retry(Some("99999999999")), Some(u32::MAX));
    }

    #[test]
    fn the_hosts_refusal_is_told_apart_from_network_failures() {
        let denied = transport_error(Some(&ErrorCode::HttpRequestDenied), "", "/passwords");
        assert!(matches!(denied, Error::Denied(d) if d.contains("HttpRequestDenied")));
        let by_text = transport_error(None, "ErrorCode::HttpRequestDenied", "/x");
        assert!(matches!(by_text, Error::Denied(_)));
        assert!(matches!(
            transport_error(Some(&ErrorCode::HttpRequestUriInvalid), "", "/x"),
            Error::Denied(_)
        ));
        for code in [
            ErrorCode::ConnectionTimeout,
            ErrorCode::ConnectionRefused,
            ErrorCode::ConnectionTerminated,
            ErrorCode::ConnectionReadTimeout,
            ErrorCode::HttpResponseTimeout,
            ErrorCode::HttpResponseIncomplete,
            ErrorCode::DnsTimeout,
            ErrorCode::TlsCertificateError,
            ErrorCode::InternalError(Some("reset".to_string())),
        ] {
            let error = transport_error(Some(&code), "", "/organizations");
            assert!(
                matches!(&error, Error::Unavailable(d) if d.contains("/organizations")),
                "{code:?} gave {error:?}"
            );
        }
        assert!(matches!(
            transport_error(Some(&ErrorCode::HttpResponseBodySize(Some(1 << 30))), "", "/x"),
            Error::BadResponse(d) if d.contains("page size")
        ));
        assert!(matches!(
            transport_error(None, "connection reset by peer", "/x"),
            Error::Unavailable(d) if d.contains("connection reset by peer")
        ));
    }

    #[test]
    fn verified_says_how_many_organizations_are_visible() {
        assert_eq!(
            verified(Some(42)).detail,
            "Verified: 42 organizations visible"
        );
        assert_eq!(verified(Some(1)).detail, "Verified: 1 organization visible");
        assert_eq!(verified(Some(42)).total_organizations, Some(42));
        assert_eq!(verified(None).total_organizations, None);
        assert!(verified(None).detail.starts_with("Verified"));
    }

    #[test]
    fn snippets_are_single_line_and_bounded() {
        assert_eq!(snippet("  a\n\tb  c ", 80), "a b c");
        assert_eq!(snippet("abcdef", 3), "abc…");
        assert_eq!(snippet("abc", 3), "abc");
        assert_eq!(snippet("\u{0}\u{7}", 10), "");
    }
}

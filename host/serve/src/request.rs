//! What every handler does with a request: parse its JSON body into the API's error shape,
//! read a record kind, and page a list answer (`limit`, `after`, `Link: rel="next"`).

use crate::error::ApiError;
use axum::Json;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use scopable_sync::kinds::RecordKind;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// How long a connect's test may take for its key to be stored: less than the request's
/// timeout (`REQUEST_TIMEOUT`, 120 s), so that no key is stored after the admin was told the
/// request failed.
pub const STORE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(100);

/// The most items a list answer holds.
pub const MAX_LIMIT: usize = 10_000;

/// The largest JSON body accepted.
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// The largest CSV upload accepted.
pub const MAX_CSV_BODY: usize = 32 * 1024 * 1024;

/// Parses a JSON body into `T`, refusing unknown fields and bad shapes with 400/422 in the
/// API's error shape.
pub fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("The request needs a JSON body"));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad-input",
            format!("The JSON body is not what this request takes: {e}"),
        )
    })
}

/// Which kind a list or decision is about.
pub fn kind_of(word: &str) -> Result<RecordKind, ApiError> {
    match word {
        "organization" | "organizations" => Ok(RecordKind::Organization),
        "configuration" | "configurations" => Ok(RecordKind::Configuration),
        other => Err(ApiError::not_found(format!(
            "No record kind {:?}: use organization or configuration",
            scopable_sandbox::display::safe(other)
        ))),
    }
}

/// `limit` and `after` of a list, and a kind filter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// How many items at most (1 to [`MAX_LIMIT`]).
    pub limit: Option<usize>,
    /// The cursor from the previous page's `Link` header.
    pub after: Option<String>,
    /// organization or configuration.
    pub kind: Option<String>,
    /// A search query.
    pub q: Option<String>,
}

impl ListQuery {
    /// Where the page starts: the position the `after` cursor names (0 without one).
    pub fn start(&self) -> Result<usize, ApiError> {
        match &self.after {
            None => Ok(0),
            Some(cursor) => cursor
                .parse::<usize>()
                .map_err(|_| ApiError::bad_request("after must be the cursor of a Link header")),
        }
    }
}

/// Whether `headers` declare a body of the media type `prefix` (`application/json`,
/// `text/csv`), parameters such as `charset` allowed.
pub fn has_content_type(headers: &HeaderMap, prefix: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(prefix.as_bytes()))
}

/// One page of `items`: at most `limit` (default and ceiling [`MAX_LIMIT`]) after the cursor,
/// with `Link: <...>; rel="next"` when there is more.
pub fn paged(items: Vec<Value>, query: &ListQuery, uri: &Uri) -> Result<Response, ApiError> {
    let limit = query.limit.unwrap_or(MAX_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_LIMIT}"
        )));
    }
    let start = query.start()?;
    let total = items.len();
    let page: Vec<Value> = items.into_iter().skip(start).take(limit).collect();
    let next = start + page.len();
    let mut response = Json(Value::Array(page)).into_response();
    if next < total {
        let mut pairs: Vec<String> = uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with("after=") && !p.starts_with("limit="))
            .map(str::to_string)
            .collect();
        pairs.push(format!("limit={limit}"));
        pairs.push(format!("after={next}"));
        let link = format!("<{}?{}>; rel=\"next\"", uri.path(), pairs.join("&"));
        if let Ok(value) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    Ok(response)
}

/// Values of a serializable list.
pub fn values<T: serde::Serialize>(items: &[T]) -> Result<Vec<Value>, ApiError> {
    items
        .iter()
        .map(|i| serde_json::to_value(i).map_err(ApiError::internal))
        .collect()
}

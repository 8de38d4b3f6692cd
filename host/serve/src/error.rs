//! The API's one error shape, `{"error": {"code", "message", "hints"}}`, and the one rule that
//! maps a failure to a status: the same classes as the command line's exit statuses.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use scopable_sync::app::{AppError, Exit};
use serde_json::json;

/// A failed API request: its status, a stable code, a message that says what happened and
/// what to do, and hints.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable code (`not-available`, `key-rejected`, ...).
    pub code: &'static str,
    /// One sentence for a person.
    pub message: String,
    /// What to try.
    pub hints: Vec<String>,
    /// Seconds to wait before trying again (429), sent as `Retry-After`.
    pub retry_after: Option<u64>,
}

/// The message of an account without the feature, in the setup guide's words.
pub const NOT_AVAILABLE: &str = "The IT Glue integration is not available for your account";

impl ApiError {
    /// An error with no hints.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            hints: Vec::new(),
            retry_after: None,
        }
    }

    /// The same error with hints.
    pub fn with_hints(mut self, hints: Vec<String>) -> ApiError {
        self.hints = hints;
        self
    }

    /// 400 `bad-request`.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad-request", message)
    }

    /// 404 `not-found`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not-found", message)
    }

    /// 401 `unauthenticated`.
    pub fn unauthenticated() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Sign in first: send `Authorization: Bearer TOKEN`, or sign in on the page",
        )
    }

    /// 403 `forbidden`: a viewer asked for what only an admin may do.
    pub fn admin_only() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Only an admin of this account can do that; a viewer may only read",
        )
    }

    /// 403 `not-available`: the account lacks the feature.
    pub fn not_available() -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "not-available", NOT_AVAILABLE).with_hints(vec![
            "This integration is in gradual rollout; contact your administrator or Scopable for access.".into(),
        ])
    }

    /// 500 `internal`, for the host's own failures (its database, its disk). The detail is
    /// logged, never sent.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!("internal error: {detail}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "The server failed to do that; try again, and tell the operator if it keeps failing",
        )
    }

    /// Maps a failure of the shared application layer, by its code first and then by its
    /// exit status: unavailable (exit 4) is 503, the connector failed (exit 5) 502, a rejected
    /// key (exit 3) 422, bad input (exit 6) 422 (404 for an unknown id), already running 409.
    pub fn from_app(e: AppError, service: &str) -> ApiError {
        let message = scopable_sandbox::display::error_line(&e.message).into_owned();
        match e.code {
            // The server's database failing is the server's failure; its path is not sent.
            Some(scopable_sync::app::DATABASE) => return ApiError::internal(message),
            Some("not-found") => return ApiError::not_found(message),
            Some(scopable_sync::decide::TARGET_TAKEN) => {
                return ApiError::new(StatusCode::CONFLICT, "target-taken", message);
            }
            // The server's TLS certificate, or the operator's proxy: a gateway failure with a
            // code of its own, so that a script can tell it from the connector's.
            Some(code @ (scopable_sync::app::CERTIFICATE | scopable_sync::app::PROXY)) => {
                return ApiError::new(StatusCode::BAD_GATEWAY, code, message);
            }
            Some("linked-by-hand") | Some("conflict") => {
                return ApiError::new(StatusCode::CONFLICT, e.code.unwrap_or("conflict"), message);
            }
            _ => {}
        }
        match e.exit {
            Exit::Unauthorized => key_rejected(service, message),
            Exit::Unavailable => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
            Exit::ConnectorFailed => {
                ApiError::new(StatusCode::BAD_GATEWAY, "connector-failed", message)
            }
            Exit::BadInput => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad-input", message),
            Exit::Usage => ApiError::bad_request(message),
            Exit::Failure | Exit::Ok => ApiError::internal(message),
        }
    }
}

/// 422 `key-rejected`: "That key didn't work", the guide's hints, and the connector's detail.
pub fn key_rejected(service: &str, detail: String) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "key-rejected",
        "That key didn't work",
    )
    .with_hints(vec![
        "The API key is wrong or the region doesn't match. Re-copy the key (watch for trailing spaces) and confirm you selected the region that matches your account.".into(),
        format!("A key from one region won't validate against another region's host: pick the region matching your {service} instance."),
        format!("{service} automatically revokes API keys after 90 days of inactivity: if a key that worked before stopped, generate a fresh key and reconnect."),
        detail,
    ])
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({"error": {"code": self.code, "message": self.message, "hints": self.hints}});
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<scopable_store::db::DbError> for ApiError {
    fn from(e: scopable_store::db::DbError) -> ApiError {
        ApiError::internal(e)
    }
}

//! Who is asking: a bearer token, or the page's session cookie with the `X-Requested-With`
//! header (so that a page on another origin cannot act for a signed-in admin); their role;
//! and whether their account has the feature asked for. Rate limits are counted here ([`crate::limits`]).

use crate::error::ApiError;
use crate::state::State;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use scopable_store::accounts::{self, Role};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The session cookie's name over plain HTTP (a local or test server).
pub const SESSION_COOKIE: &str = "scopable_session";

/// The session cookie's name behind https (`--public-url https://...`): the `__Host-` prefix
/// makes browsers refuse it unless it is `Secure`, for this host only and for path `/`, so a
/// sibling subdomain cannot plant its own session.
pub const SECURE_SESSION_COOKIE: &str = "__Host-scopable_session";

/// The session cookie's name for a server whose cookie is `Secure` or not.
pub fn cookie_name(secure: bool) -> &'static str {
    if secure {
        SECURE_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    }
}

/// The header a cookie-authenticated request must carry, and its value.
pub const REQUESTED_WITH: (&str, &str) = ("x-requested-with", "scopable");

/// How long a session lasts.
pub const SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// A signed-in caller: the account it acts for, its role, its token, and how it proved it.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The account.
    pub account: String,
    /// Admin or viewer.
    pub role: Role,
    /// The token (or the token behind the session).
    pub token_id: String,
}

impl Caller {
    /// The actor recorded for this caller's changes: `token:<token_id>`.
    pub fn actor(&self) -> String {
        format!("token:{}", self.token_id)
    }

    /// Refuses a viewer (403): only an admin changes anything.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Admin => Ok(()),
            Role::Viewer => Err(ApiError::admin_only()),
        }
    }
}

/// The client's address, from the connection.
pub fn client_address(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// The session cookie's value, if the request carries one (under `name`).
pub fn session_cookie(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(found, _)| *found == name)
        .map(|(_, value)| value.to_string())
}

/// Refuses a cookie-authenticated request without `X-Requested-With: scopable` (403): a page
/// on another origin cannot send it without the browser asking this server first.
pub fn require_requested_with(parts: &Parts) -> Result<(), ApiError> {
    let sent = parts
        .headers
        .get(REQUESTED_WITH.0)
        .and_then(|v| v.to_str().ok());
    if sent == Some(REQUESTED_WITH.1) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "missing-header",
        "A request signed in by the session cookie must send `X-Requested-With: scopable`",
    ))
}

/// The bearer token, if the request carries one.
fn bearer(parts: &Parts) -> Result<Option<String>, ApiError> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().unwrap_or("");
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim().to_string()))
        }
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "The Authorization header must be `Bearer TOKEN`",
        )),
    }
}

impl FromRequestParts<Arc<State>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<State>) -> Result<Caller, ApiError> {
        state.limits.address(client_address(parts))?;
        let caller = match bearer(parts)? {
            Some(token) => {
                let found = state
                    .blocking_db(None, move |db| Ok(accounts::authenticate(db, &token)?))
                    .await?;
                found.ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "unauthenticated",
                        "That token is unknown or revoked; ask the operator for a new one",
                    )
                })?
            }
            None => {
                let Some(secret) = session_cookie(parts, cookie_name(state.secure_cookie)) else {
                    return Err(ApiError::unauthenticated());
                };
                require_requested_with(parts)?;
                let found = state
                    .blocking_db(None, move |db| Ok(accounts::session(db, &secret)?))
                    .await?;
                found.ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "unauthenticated",
                        "Your session has ended; sign in again",
                    )
                })?
            }
        };
        state.limits.token(&caller.token_id)?;
        Ok(Caller {
            account: caller.account,
            role: caller.role,
            token_id: caller.token_id,
        })
    }
}

/// Checks that `connector` is the one this server runs and that the caller's account has
/// the feature (403 `not-available` otherwise).
pub async fn integration(state: &State, caller: &Caller, connector: &str) -> Result<(), ApiError> {
    if connector != state.connector_name() {
        return Err(ApiError::not_found(format!(
            "No integration named {:?}",
            scopable_sandbox::display::safe(connector)
        )));
    }
    if state.feature_enabled(&caller.account, connector).await? {
        Ok(())
    } else {
        Err(ApiError::not_available())
    }
}

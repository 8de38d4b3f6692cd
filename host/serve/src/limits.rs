//! The API's rate limits: per token, per client address, and for sign-in attempts (429 with
//! `Retry-After` past them).

use crate::error::ApiError;
use axum::http::StatusCode;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;

/// The rate limits of the API: per token, and per client address (sign-in included).
pub struct Limits {
    per_token: DefaultKeyedRateLimiter<String>,
    per_address: DefaultKeyedRateLimiter<IpAddr>,
    sign_in: DefaultKeyedRateLimiter<IpAddr>,
}

impl Limits {
    /// `per_second` requests a second per token and per address (bursts of twice that), and
    /// a tenth of it (at least 1) for sign-in attempts per address.
    pub fn new(per_second: u32) -> Limits {
        let quota = |n: u32| {
            let n = NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN);
            Quota::per_second(n)
                .allow_burst(n.saturating_mul(NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN)))
        };
        Limits {
            per_token: RateLimiter::keyed(quota(per_second)),
            per_address: RateLimiter::keyed(quota(per_second.saturating_mul(2))),
            sign_in: RateLimiter::keyed(quota(per_second / 10)),
        }
    }

    /// Counts a request from `address`; 429 past the limit.
    pub fn address(&self, address: IpAddr) -> Result<(), ApiError> {
        self.per_address.check_key(&address).map_err(|_| too_many())
    }

    /// Counts a sign-in attempt from `address`; 429 past the limit.
    pub fn sign_in(&self, address: IpAddr) -> Result<(), ApiError> {
        self.sign_in.check_key(&address).map_err(|_| too_many())
    }

    /// Forgets the keys whose allowance is full again, so that the limiters hold only the
    /// callers of the last moments (called every second by the scheduler).
    pub fn forget_idle(&self) {
        self.per_token.retain_recent();
        self.per_address.retain_recent();
        self.sign_in.retain_recent();
        self.per_token.shrink_to_fit();
        self.per_address.shrink_to_fit();
        self.sign_in.shrink_to_fit();
    }

    /// Counts a request with `token_id`; 429 past the limit.
    pub fn token(&self, token_id: &str) -> Result<(), ApiError> {
        self.per_token
            .check_key(&token_id.to_string())
            .map_err(|_| too_many())
    }
}

/// 429 with `Retry-After`.
fn too_many() -> ApiError {
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate-limited",
        "Too many requests; wait a moment and try again",
    );
    e.retry_after = Some(1);
    e
}

//! Retries owned by the host: a rate-limited or unavailable API is retried with jittered
//! exponential back-off (or its `Retry-After`), a bounded number of times.

use scopable_sandbox::bindings::scopable::integration::types;
use scopable_sandbox::manifest::Limits;
use scopable_sandbox::sandbox::CallError;
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// Whether a failed call may succeed if tried again: only the connector's own error classes
/// that can change on retry. `bad-response` is among them on purpose: HTML, empty and
/// truncated bodies come from proxies and overloaded servers (with a 2xx or 5xx status), and
/// pass. A definite answer (a redirect or a client error, [`scopable_sandbox::sandbox::final_status`]) is
/// [`CallError::Rejected`] instead, and a failure of the host's own is [`CallError::Host`]:
/// neither is retried, and neither are denials, traps, limits or timeouts.
pub fn retryable(e: &CallError) -> bool {
    matches!(e, CallError::Guest(g) if would_retry(g))
}

pub use scopable_sandbox::sandbox::would_retry;

/// How long to wait before attempt `attempt + 1` (`attempt` counts from 1).
pub fn delay(limits: &Limits, e: &CallError, attempt: u32) -> Duration {
    let max = Duration::from_millis(limits.retry_max_ms);
    if let CallError::Guest(types::Error::RateLimited(r)) = e
        && let Some(secs) = r.retry_after_seconds
    {
        return Duration::from_secs(u64::from(secs)).min(max);
    }
    let base = limits.retry_base_ms as f64 * 2f64.powi(attempt.saturating_sub(1).min(16) as i32);
    // Full jitter between half and all of the exponential step, so parallel callers spread out.
    let jitter = 0.5 + (random_u32() as f64 / u32::MAX as f64) * 0.5;
    Duration::from_millis((base * jitter) as u64).min(max)
}

/// A random number for jitter. Not a secret: std's per-process randomly keyed hasher is
/// enough, and keeps the vault's cryptographic generator for keys and nonces alone.
fn random_u32() -> u32 {
    (RandomState::new().hash_one(std::time::Instant::now()) >> 32) as u32
}

/// Runs `call` until it succeeds, fails with a non-retryable error, or runs out of attempts.
/// `on_retry` hears about each failure that will be retried and the wait before it.
pub async fn with_retries<T, F, Fut>(
    limits: &Limits,
    call: F,
    on_retry: impl FnMut(&CallError, u32, Duration),
) -> Result<T, CallError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    with_retries_until(limits, call, on_retry, std::future::pending()).await
}

/// [`with_retries`], which stops retrying once `give_up` completes: a failure after that, or
/// one waiting for its retry when it does, is returned as it is. An attempt under way is never
/// cut short, so every request made ends (and is audited) as any other.
pub async fn with_retries_until<T, F, Fut>(
    limits: &Limits,
    mut call: F,
    mut on_retry: impl FnMut(&CallError, u32, Duration),
    give_up: impl Future<Output = ()>,
) -> Result<T, CallError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    let mut give_up = std::pin::pin!(give_up);
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if retryable(&e) && attempt < limits.max_attempts => {
                let wait = delay(limits, &e, attempt);
                on_retry(&e, attempt, wait);
                tokio::select! {
                    biased;
                    () = &mut give_up => return Err(e),
                    () = tokio::time::sleep(wait) => {}
                }
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            retry_base_ms: 1000,
            retry_max_ms: 8000,
            ..Limits::default()
        }
    }

    #[test]
    fn honours_retry_after_up_to_the_cap() {
        let e = |s| {
            CallError::Guest(types::Error::RateLimited(types::RateLimited {
                retry_after_seconds: Some(s),
                detail: String::new(),
            }))
        };
        assert_eq!(delay(&limits(), &e(3), 1), Duration::from_secs(3));
        assert_eq!(delay(&limits(), &e(600), 1), Duration::from_secs(8));
    }

    #[test]
    fn backs_off_exponentially_with_jitter() {
        let e = CallError::Guest(types::Error::Unavailable("503".into()));
        for attempt in 1..=3u32 {
            let step = 1000u64 << (attempt - 1);
            let d = delay(&limits(), &e, attempt).as_millis() as u64;
            assert!(d >= step / 2 && d <= step, "attempt {attempt}: {d}");
        }
        assert!(delay(&limits(), &e, 10) <= Duration::from_secs(8));
    }

    #[test]
    fn only_transient_errors_are_retried() {
        assert!(retryable(&CallError::Guest(types::Error::Unavailable(
            String::new()
        ))));
        assert!(!retryable(&CallError::Guest(types::Error::Unauthorized(
            String::new()
        ))));
        assert!(!retryable(&CallError::Denied(String::new())));
        // A proxy's HTML or truncated page passes; the same request's 400 or 302 does not.
        assert!(retryable(&CallError::Guest(types::Error::BadResponse(
            String::new()
        ))));
        assert!(!retryable(&CallError::Rejected {
            status: 400,
            error: types::Error::BadResponse(String::new()),
        }));
        // The host's own failures are not the API's.
        assert!(!retryable(&CallError::Host(String::new())));
        assert!(!retryable(&CallError::Timeout {
            export: "test",
            seconds: 1.0,
        }));
    }

    #[test]
    fn only_redirects_and_client_errors_are_final() {
        use scopable_sandbox::sandbox::final_status;
        for status in [300, 301, 302, 307, 400, 405, 409, 410, 422, 451] {
            assert!(final_status(status), "{status}");
        }
        for status in [200, 204, 401, 403, 404, 408, 425, 429, 500, 502, 503, 504] {
            assert!(!final_status(status), "{status}");
        }
    }

    /// Once told to give up, a failure waiting for its retry is returned, mid-wait.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_retry_given_up_on_is_not_made() {
        let mut calls = 0;
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let started = tokio::time::Instant::now();
        let limits = limits();
        let (r, ()): (Result<(), _>, ()) = tokio::join!(
            with_retries_until(
                &limits,
                || {
                    calls += 1;
                    async { Err(CallError::Guest(types::Error::Unavailable("down".into()))) }
                },
                |_, _, _| {},
                async move {
                    let _ = stopped.wait_for(|s| *s).await;
                },
            ),
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = stop.send(true);
            },
        );
        assert!(r.is_err());
        assert_eq!(calls, 1);
        // The first retry would have come at 500 ms at the earliest.
        assert!(started.elapsed() < Duration::from_millis(500));
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn gives_up_after_max_attempts() {
        let l = Limits {
            max_attempts: 3,
            ..limits()
        };
        let mut calls = 0;
        let mut retries = Vec::new();
        let r: Result<(), _> = with_retries(
            &l,
            || {
                calls += 1;
                async { Err(CallError::Guest(types::Error::Unavailable("down".into()))) }
            },
            |_, attempt, _| retries.push(attempt),
        )
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 3);
        assert_eq!(retries, vec![1, 2]);
    }
}

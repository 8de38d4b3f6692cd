//! What happened during one export call: requests, refusals (and the limit on them), pacing
//! waits and the failures the host noticed. Shared by the hooks of every capability and read
//! by the sandbox when the call ends.

use crate::policy::Denial;
use std::time::{Duration, Instant};

/// What happened during one export call, shared with the hooks (and read after a timeout).
#[derive(Debug, Clone, Default)]
pub struct CallReport {
    /// Requests that passed the policy.
    pub requests: u32,
    /// Uses the host refused by rule (requests the policy refused, storage used by `match`),
    /// in order: the first [`MAX_DENIALS_PER_CALL`] refusals of the call at most.
    pub denials: Vec<Denial>,
    /// Every refused capability use of the call (by rule, or storage over its limits).
    pub refused: u32,
    /// Refusals past [`MAX_DENIALS_PER_CALL`], by capability: not audited one by one, they
    /// stop the call and are summed up in one audit row each when the call ends.
    pub unrecorded: Vec<(&'static str, u32)>,
    /// Set when a response went over `max_response_bytes` (the limit).
    pub response_too_large: Option<u64>,
    /// Set when the guest asked for more memory than allowed.
    pub memory_exceeded: bool,
    /// Set when the guest's output went over its limit.
    pub output_exceeded: bool,
    /// Set when the guest ran longer than its CPU limit.
    pub cpu_exceeded: bool,
    /// Set when a step the host owns failed (the request budget's database, for instance): the
    /// call fails as the host's, whatever the guest made of it.
    pub host_failure: Option<String>,
    /// Set when a connection failed in a way the host can name (a certificate that was not
    /// trusted, a proxy that refused the tunnel): the call fails with it, not retried.
    pub connection_failure: Option<crate::net::ConnectionFailure>,
    /// The HTTP status of the last response received (`None` once a request failed without
    /// one): tells a retry whether the API's answer can change.
    pub last_status: Option<u16>,
    /// Time spent waiting for the host's pacing, which never counts against `call_timeout_ms`.
    pub pacing: Pacing,
}

/// Most refused capability uses one call may make: each is audited; the next one is not, and
/// stops the call (its error is the first refusal).
pub const MAX_DENIALS_PER_CALL: u32 = 16;

/// The audit rule of the row that sums up the refusals past [`MAX_DENIALS_PER_CALL`].
pub const MAX_DENIALS_RULE: &str = "max-denials";

impl CallReport {
    /// Counts a refused use of `capability` (with the rule's denial, if a rule refused it);
    /// returns whether it gets its own audit row. Past [`MAX_DENIALS_PER_CALL`] it does not,
    /// and the call is to be stopped ([`CallReport::over_denial_limit`]).
    pub fn refuse(&mut self, capability: &'static str, denial: Option<Denial>) -> bool {
        self.refused = self.refused.saturating_add(1);
        if self.refused <= MAX_DENIALS_PER_CALL {
            self.denials.extend(denial);
            return true;
        }
        match self.unrecorded.iter_mut().find(|(c, _)| *c == capability) {
            Some((_, n)) => *n = n.saturating_add(1),
            None => self.unrecorded.push((capability, 1)),
        }
        false
    }

    /// Whether the call went past [`MAX_DENIALS_PER_CALL`] refusals and must stop.
    pub fn over_denial_limit(&self) -> bool {
        self.refused > MAX_DENIALS_PER_CALL
    }

    /// Why a call stopped for too many refusals was stopped.
    pub fn denial_limit_reason(&self) -> String {
        format!(
            "more than {MAX_DENIALS_PER_CALL} refused capability uses in one call; the call was stopped"
        )
    }
}

/// The trap that stops a call past [`MAX_DENIALS_PER_CALL`] refusals.
#[derive(Debug, thiserror::Error)]
#[error("more than {MAX_DENIALS_PER_CALL} refused capability uses in one call")]
pub struct TooManyDenials;

/// The time one call's requests spent waiting for the host's pacing (the request budget, the
/// bound on requests in flight). Overlapping waits count once.
#[derive(Debug, Clone, Default)]
pub struct Pacing {
    /// Requests waiting now.
    waiting: u32,
    /// When the current stretch of waiting began.
    since: Option<Instant>,
    /// Finished stretches.
    total: Duration,
}

impl Pacing {
    /// A request starts waiting.
    pub fn begin(&mut self) {
        if self.waiting == 0 {
            self.since = Some(Instant::now());
        }
        self.waiting += 1;
    }

    /// A request stops waiting.
    pub fn end(&mut self) {
        self.waiting = self.waiting.saturating_sub(1);
        if self.waiting == 0
            && let Some(since) = self.since.take()
        {
            self.total += since.elapsed();
        }
    }

    /// Whether a request is waiting now.
    pub fn is_waiting(&self) -> bool {
        self.waiting > 0
    }

    /// Time spent waiting so far, the stretch in progress included.
    pub fn waited(&self) -> Duration {
        self.total + self.since.map(|s| s.elapsed()).unwrap_or_default()
    }
}

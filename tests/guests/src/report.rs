//! How a hostile guest turns what happened into the `test` result: `Ok` only when something
//! got past the host.

use crate::net::Outcome;
use crate::types::{Error, Verified};

/// The hostile action got through: the host test should fail on this.
pub fn got_through(detail: impl Into<String>) -> Result<Verified, Error> {
    Ok(Verified {
        detail: detail.into(),
        total_organizations: None,
    })
}

/// The host stopped the hostile action.
pub fn denied(detail: impl Into<String>) -> Result<Verified, Error> {
    Err(Error::Denied(detail.into()))
}

/// The error every export except `test` returns.
pub fn only_test() -> Error {
    Error::BadResponse("this test component only implements `test`".to_string())
}

/// Sums up labelled attempts: `Ok` when any was not refused by the host, else `denied`.
/// One attempt reads as its outcome (`denied`, `forbidden header`, `status=200 bytes=12`);
/// several as `label: outcome` parts joined by `; `, after a count such as
/// `got_through=1 of=6`.
pub fn attempts(attempts: &[(String, Outcome)]) -> Result<Verified, Error> {
    let through = attempts.iter().filter(|(_, o)| !o.refused()).count();
    let detail = match attempts {
        [(_, only)] => only.to_string(),
        _ => {
            let parts: Vec<String> = attempts
                .iter()
                .map(|(label, outcome)| format!("{label}: {outcome}"))
                .collect();
            format!(
                "got_through={through} of={}; {}",
                attempts.len(),
                parts.join("; ")
            )
        }
    };
    if through > 0 {
        got_through(detail)
    } else {
        denied(detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_refusal_reads_as_its_outcome() {
        let result = attempts(&[("x".to_string(), Outcome::ForbiddenHeader)]);
        assert!(matches!(result, Err(Error::Denied(d)) if d == "forbidden header"));
    }

    #[test]
    fn any_attempt_not_refused_is_reported_as_ok() {
        let result = attempts(&[
            ("a".to_string(), Outcome::Denied),
            ("b".to_string(), Outcome::Failed("DnsError".to_string())),
        ]);
        let detail = result.expect("one attempt got through").detail;
        assert!(detail.starts_with("got_through=1 of=2; a: denied; b: failed"));
    }
}

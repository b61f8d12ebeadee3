//! Why a verifier refused a request, in plain words, for the rejected-requests
//! log ([`crate::ingest::rejects`]). A reason is worked out only after a
//! refusal ([`super::Verifier::explain`] walks the same steps as `verify`), so
//! it costs an accepted request nothing.
//!
//! Invariant: a reason never holds a secret nor a signature, computed or
//! received; it names headers, timestamps, URLs (with secret-looking query
//! values masked) and the config keys to look at.

use std::time::Duration;

use super::Request;

/// A refusal's reason: a stable code for machines and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// `missing_header`, `malformed_header`, `stale_timestamp`,
    /// `signature_mismatch`, `wrong_credentials`, `handshake_failed`, `unsigned_body`…
    pub code: &'static str,
    /// What happened and what to check.
    pub text: String,
}

impl Reason {
    /// A reason of `code` with `text`.
    pub fn new(code: &'static str, text: impl Into<String>) -> Self {
        Reason {
            code,
            text: text.into(),
        }
    }

    /// The signature (or credential) was read but did not match.
    pub fn mismatch(text: impl Into<String>) -> Self {
        Reason::new("signature_mismatch", text)
    }

    /// `header` (as the provider spells it) is absent.
    pub fn missing(header: &str, provider: &str) -> Self {
        Reason::new(
            "missing_header",
            format!("no `{header}` header: is this request from {provider}?"),
        )
    }

    /// `header` is present but is not what the provider sends.
    pub fn malformed(header: &str, expected: &str) -> Self {
        Reason::new(
            "malformed_header",
            format!("the `{header}` header could not be read: expected {expected}"),
        )
    }
}

/// The value of the signature header `name` parsed by `parse`, or why not:
/// missing, or present but unreadable (too long, not text, not `expected`).
pub fn header<T>(
    req: &Request<'_>,
    name: &str,
    shown: &str,
    provider: &str,
    expected: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, Reason> {
    if !req.headers.contains_key(name) {
        return Err(Reason::missing(shown, provider));
    }
    req.signature_header(name)
        .and_then(parse)
        .ok_or_else(|| Reason::malformed(shown, expected))
}

/// Why a timestamp `ts` is outside `tolerance` of `now`, or `None` when it is within.
pub fn stale(ts: i64, now: i64, tolerance: Duration) -> Option<Reason> {
    if super::within_tolerance(ts, now, tolerance) {
        return None;
    }
    let tol = tolerance.as_secs();
    let age = i128::from(now) - i128::from(ts);
    let text = if age > 0 {
        format!(
            "timestamp is {age} s old, more than the {tol} s tolerance: check the sender's clock, or this is a replay of an old request"
        )
    } else {
        format!(
            "timestamp is {} s in the future, more than the {tol} s tolerance: check the sender's clock",
            -age
        )
    };
    Some(Reason::new("stale_timestamp", text))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Req;
    use super::*;

    #[test]
    fn stale_says_how_old_and_the_tolerance() {
        let tol = Duration::from_secs(300);
        assert!(stale(1000, 1300, tol).is_none());
        let r = stale(1000, 1612, tol).unwrap();
        assert_eq!(r.code, "stale_timestamp");
        assert!(r.text.contains("612 s old"), "{}", r.text);
        assert!(r.text.contains("300 s tolerance"), "{}", r.text);
        let r = stale(2000, 1000, tol).unwrap();
        assert!(r.text.contains("1000 s in the future"), "{}", r.text);
    }

    #[test]
    fn header_tells_missing_from_malformed() {
        let r = Req::post("/in/s", b"");
        let got = header(&r.view(), "x-sig", "X-Sig", "Acme", "`v=<hex>`", |_| {
            Some(())
        });
        assert_eq!(got.unwrap_err().code, "missing_header");
        let r = Req::post("/in/s", b"").header("X-Sig", "junk");
        let got = header(&r.view(), "x-sig", "X-Sig", "Acme", "`v=<hex>`", |_| {
            None::<()>
        });
        let e = got.unwrap_err();
        assert_eq!(e.code, "malformed_header");
        assert!(e.text.contains("`v=<hex>`"));
    }
}

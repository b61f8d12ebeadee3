//! Slack: `X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:<ts>:<raw body>">` with
//! `X-Slack-Request-Timestamp: <ts>`, keyed with the app's signing secret; the
//! timestamp must be within `tolerance` (default 5 minutes) of now, either way.
//!
//! Slack's `url_verification` request (sent when an Events API URL is saved) is
//! answered here with its `challenge`, after the same signature check, and is
//! never stored or delivered.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use super::{
    any_mac_matches, decode_hex, parse_unix_seconds, raw_keys, reason, within_tolerance, Handshake,
    Key, Reason, Rejected, Request, Verifier,
};
use crate::config::{HmacAlgorithm, Secret};

/// The signature header.
pub const SIGNATURE: &str = "x-slack-signature";
/// The timestamp header.
pub const TIMESTAMP: &str = "x-slack-request-timestamp";

/// Parses `v0=<hex>` into the 32 signature bytes.
pub fn parse_signature(value: &str) -> Option<Vec<u8>> {
    let hex = value.trim().strip_prefix("v0=")?;
    if hex.len() != 64 {
        return None;
    }
    decode_hex(hex)
}

/// The challenge of a `url_verification` body, or `None` for any other body.
pub fn url_verification_challenge(body: &[u8]) -> Option<String> {
    // Cheap test first: most bodies are events, and parsing each twice is waste.
    if !body.windows(16).any(|w| w == b"url_verification") {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct Challenge {
        #[serde(rename = "type")]
        kind: String,
        challenge: String,
    }
    let c: Challenge = serde_json::from_slice(body).ok()?;
    (c.kind == "url_verification").then_some(c.challenge)
}

/// Checks Slack's request signature and answers `url_verification`.
pub struct Slack {
    keys: Vec<Key>,
    tolerance: Duration,
}

impl Slack {
    /// A verifier accepting signatures by any of `keys` made within `tolerance` of now.
    pub fn new(keys: Vec<Secret>, tolerance: Duration) -> Self {
        Slack {
            keys: raw_keys(&keys),
            tolerance,
        }
    }
}

impl Verifier for Slack {
    fn verify(&self, req: &Request<'_>) -> Result<(), Rejected> {
        let ts = req
            .signature_header(TIMESTAMP)
            .ok_or(Rejected::UNAUTHORIZED)?;
        let t = parse_unix_seconds(ts).ok_or(Rejected::UNAUTHORIZED)?;
        if !within_tolerance(t, req.now, self.tolerance) {
            return Err(Rejected::UNAUTHORIZED);
        }
        let sig = req
            .signature_header(SIGNATURE)
            .and_then(parse_signature)
            .ok_or(Rejected::UNAUTHORIZED)?;
        // Slack signs the timestamp text as sent (its SDKs do not re-render it).
        if any_mac_matches(
            HmacAlgorithm::Sha256,
            &self.keys,
            &[b"v0:", ts.as_bytes(), b":", req.body],
            &[sig],
        ) {
            Ok(())
        } else {
            Err(Rejected::UNAUTHORIZED)
        }
    }

    fn explain(&self, req: &Request<'_>) -> Reason {
        let ts = reason::header(
            req,
            TIMESTAMP,
            "X-Slack-Request-Timestamp",
            "Slack",
            "a Unix time in seconds",
            parse_unix_seconds,
        );
        let t = match ts {
            Ok(t) => t,
            Err(r) => return r,
        };
        if let Some(r) = reason::stale(t, req.now, self.tolerance) {
            return r;
        }
        if let Err(r) = reason::header(
            req,
            SIGNATURE,
            "X-Slack-Signature",
            "Slack",
            "`v0=<hex>`",
            parse_signature,
        ) {
            return r;
        }
        Reason::mismatch(
            "the `X-Slack-Signature` did not match `v0:{timestamp}:{body}` signed with the source's secret: \
             use the app's Signing Secret (Basic Information), not a bot token or the verification token",
        )
    }

    fn handshake(&self, req: &Request<'_>) -> Option<Result<Handshake, Rejected>> {
        let challenge = url_verification_challenge(req.body)?;
        Some(self.verify(req).map(|()| Handshake {
            status: StatusCode::OK,
            content_type: "text/plain; charset=utf-8",
            body: Bytes::from(challenge),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Req;
    use super::*;
    use proptest::prelude::*;

    /// python-slack-sdk `tests/slack_sdk/signature/test_signature_verifier.py`, which
    /// takes it from Slack's "Verifying requests from Slack" page: a slash command body.
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const TS: &str = "1531420618";
    const NOW: i64 = 1_531_420_618;
    const SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn slack(secrets: &[&str]) -> Slack {
        Slack::new(
            secrets.iter().map(|s| Secret::new(*s)).collect(),
            Duration::from_secs(300),
        )
    }

    fn req(body: &[u8], ts: &str, sig: &str, now: i64) -> Req {
        Req::post("/in/slack", body)
            .header("X-Slack-Request-Timestamp", ts)
            .header("X-Slack-Signature", sig)
            .at(now)
    }

    fn sign(secret: &str, ts: &str, body: &[u8]) -> String {
        let m = super::super::mac(
            HmacAlgorithm::Sha256,
            secret.as_bytes(),
            &[b"v0:", ts.as_bytes(), b":", body],
        );
        format!("v0={}", hex::encode(m))
    }

    #[test]
    fn slack_sdk_vector() {
        let v = slack(&[SECRET]);
        assert_eq!(v.verify(&req(BODY.as_bytes(), TS, SIG, NOW).view()), Ok(()));
        // test_is_valid_request_invalid_body: the body with "------" appended.
        let modified = format!("{BODY}------");
        assert!(v
            .verify(&req(modified.as_bytes(), TS, SIG, NOW).view())
            .is_err());
        // test_is_valid_request_expiration: the same request checked much later.
        assert!(v
            .verify(&req(BODY.as_bytes(), TS, SIG, 1_700_000_000).view())
            .is_err());
        // test_is_valid_none: a missing timestamp or signature.
        let no_ts = Req::post("/", BODY.as_bytes())
            .header("X-Slack-Signature", SIG)
            .at(NOW);
        assert!(v.verify(&no_ts.view()).is_err());
        let no_sig = Req::post("/", BODY.as_bytes())
            .header("X-Slack-Request-Timestamp", TS)
            .at(NOW);
        assert!(v.verify(&no_sig.view()).is_err());
        // Rotation: the right secret among others.
        assert_eq!(
            slack(&["old", SECRET]).verify(&req(BODY.as_bytes(), TS, SIG, NOW).view()),
            Ok(())
        );
        assert!(slack(&["old"])
            .verify(&req(BODY.as_bytes(), TS, SIG, NOW).view())
            .is_err());
    }

    #[test]
    fn tolerance_both_ways() {
        let v = slack(&[SECRET]);
        for (now, ok) in [
            (NOW + 300, true),
            (NOW - 300, true),
            (NOW + 301, false),
            (NOW - 301, false),
        ] {
            assert_eq!(
                v.verify(&req(BODY.as_bytes(), TS, SIG, now).view()).is_ok(),
                ok,
                "now = ts {:+}",
                now - NOW
            );
        }
    }

    #[test]
    fn malformed_headers() {
        let v = slack(&["k"]);
        let body = br#"{"type":"event_callback"}"#;
        let sig = sign("k", TS, body);
        let hexpart = &sig[3..];
        for (ts, s) in [
            (TS, hexpart.to_string()),
            (TS, format!("v1={hexpart}")),
            (TS, format!("v0={}", &hexpart[..60])),
            (TS, format!("v0={hexpart}{hexpart}")),
            (TS, "v0=".into()),
            (TS, String::new()),
            (TS, format!("v0={}", "0".repeat(10_000))),
            ("", sig.clone()),
            ("-1531420618", sig.clone()),
            ("1531420618.0", sig.clone()),
            (" 1531420618", sig.clone()),
            ("15314206180000000000000", sig.clone()),
        ] {
            assert!(
                v.verify(&req(body, ts, &s, NOW).view()).is_err(),
                "{ts:?} {s:?}"
            );
        }
        // The timestamp is part of what is signed.
        let other_ts = "1531420619";
        assert!(v.verify(&req(body, other_ts, &sig, NOW).view()).is_err());
    }

    #[test]
    fn empty_and_non_utf8_bodies() {
        let v = slack(&["k"]);
        assert_eq!(
            v.verify(&req(b"", TS, &sign("k", TS, b""), NOW).view()),
            Ok(())
        );
        let raw = b"payload=\xff\xfe";
        assert_eq!(
            v.verify(&req(raw, TS, &sign("k", TS, raw), NOW).view()),
            Ok(())
        );
        assert!(v
            .verify(&req(b"payload=\xff\xff", TS, &sign("k", TS, raw), NOW).view())
            .is_err());
    }

    #[test]
    fn url_verification_is_answered_after_the_signature_check() {
        // The example body of Slack's url_verification reference page.
        let body = br#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
        let v = slack(&["k"]);
        let good = req(body, TS, &sign("k", TS, body), NOW);
        let h = v.handshake(&good.view()).unwrap().unwrap();
        assert_eq!(h.status, StatusCode::OK);
        assert_eq!(
            &h.body[..],
            b"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
        );
        let forged = req(body, TS, &sign("other", TS, body), NOW);
        assert_eq!(
            v.handshake(&forged.view()),
            Some(Err(Rejected::UNAUTHORIZED))
        );
        let stale = req(body, TS, &sign("k", TS, body), NOW + 3600);
        assert_eq!(
            v.handshake(&stale.view()),
            Some(Err(Rejected::UNAUTHORIZED))
        );
        // Events are no handshake, even when they mention the word.
        let event =
            br#"{"type":"event_callback","event":{"type":"message","text":"url_verification"}}"#;
        assert!(v
            .handshake(&req(event, TS, &sign("k", TS, event), NOW).view())
            .is_none());
        assert!(v
            .handshake(&req(BODY.as_bytes(), TS, SIG, NOW).view())
            .is_none());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,200}", body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_signature(&s);
            let _ = url_verification_challenge(&body);
            let _ = url_verification_challenge(s.as_bytes());
        }
    }
}

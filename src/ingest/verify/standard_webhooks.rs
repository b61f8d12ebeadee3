//! Standard Webhooks (and Svix, which sends the same under `svix-` header names):
//! `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64> [v1,<base64>...]`,
//! each `v1` an HMAC-SHA256 of `"<id>.<timestamp>.<raw body>"` keyed with the
//! base64-decoded `whsec_` secret. Entries of other versions (`v1a` asymmetric,
//! future ones) are ignored. The timestamp must be within `tolerance` (default
//! 5 minutes) of now in either direction, as the specification requires.

use std::time::Duration;

use base64::Engine as _;

use super::{
    any_mac_matches, parse_unix_seconds, reason, within_tolerance, BuildError, Key, Reason,
    Rejected, Request, Verifier, B64_LENIENT,
};
use crate::config::{HmacAlgorithm, Secret};

/// Parses a `webhook-signature` value into the bytes of its `v1` entries (at most
/// one pass over the value; malformed entries are skipped, as they cannot match).
pub fn parse_signatures(value: &str) -> Vec<Vec<u8>> {
    value
        .split_ascii_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|b64| B64_LENIENT.decode(b64).ok())
        .filter(|sig| sig.len() == 32)
        .collect()
}

/// Checks Standard Webhooks (`webhook-*`) and Svix (`svix-*`) signatures.
pub struct StandardWebhooks {
    keys: Vec<Key>,
    tolerance: Duration,
}

impl StandardWebhooks {
    /// A verifier for any of `secrets` (`whsec_<base64>`, or plain base64).
    pub fn new(secrets: &[Secret], tolerance: Duration) -> Result<Self, BuildError> {
        let keys = secrets
            .iter()
            .map(|s| {
                crate::signing::decode_secret(s.expose())
                    .map(Key)
                    .ok_or(BuildError::StandardWebhooksSecret)
            })
            .collect::<Result<_, _>>()?;
        Ok(StandardWebhooks { keys, tolerance })
    }
}

/// A header under its standard name, else under Svix's.
/// No `webhook-{name}` nor `svix-{name}` header.
fn missing(name: &str) -> Reason {
    Reason::new(
        "missing_header",
        format!(
            "no `webhook-{name}` (or `svix-{name}`) header: is this request from a Standard Webhooks or Svix sender?"
        ),
    )
}

fn either<'a>(req: &'a Request<'_>, name: &str) -> Option<&'a str> {
    req.signature_header(&format!("webhook-{name}"))
        .or_else(|| req.signature_header(&format!("svix-{name}")))
}

impl Verifier for StandardWebhooks {
    fn verify(&self, req: &Request<'_>) -> Result<(), Rejected> {
        let id = either(req, "id")
            .filter(|id| !id.is_empty())
            .ok_or(Rejected::UNAUTHORIZED)?;
        let ts = either(req, "timestamp")
            .and_then(parse_unix_seconds)
            .ok_or(Rejected::UNAUTHORIZED)?;
        if !within_tolerance(ts, req.now, self.tolerance) {
            return Err(Rejected::UNAUTHORIZED);
        }
        let sigs = either(req, "signature")
            .map(parse_signatures)
            .unwrap_or_default();
        if sigs.is_empty() {
            return Err(Rejected::UNAUTHORIZED);
        }
        // The reference libraries sign the number as they print it.
        let ts = ts.to_string();
        if any_mac_matches(
            HmacAlgorithm::Sha256,
            &self.keys,
            &[id.as_bytes(), b".", ts.as_bytes(), b".", req.body],
            &sigs,
        ) {
            Ok(())
        } else {
            Err(Rejected::UNAUTHORIZED)
        }
    }

    fn explain(&self, req: &Request<'_>) -> Reason {
        if either(req, "id").filter(|id| !id.is_empty()).is_none() {
            return missing("id");
        }
        let Some(ts) = either(req, "timestamp") else {
            return missing("timestamp");
        };
        let Some(ts) = parse_unix_seconds(ts) else {
            return Reason::malformed("webhook-timestamp", "a Unix time in seconds");
        };
        if let Some(r) = reason::stale(ts, req.now, self.tolerance) {
            return r;
        }
        if either(req, "signature")
            .map(parse_signatures)
            .unwrap_or_default()
            .is_empty()
        {
            return match either(req, "signature") {
                None => missing("signature"),
                Some(_) => Reason::malformed("webhook-signature", "`v1,<base64>` entries"),
            };
        }
        Reason::mismatch(
            "no `v1` entry of `webhook-signature` matched `{id}.{timestamp}.{body}` signed with the source's secret: \
             use the endpoint's `whsec_…` secret, and check that nothing changes the body on the way",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Req;
    use super::*;
    use proptest::prelude::*;

    /// The vector of the standard-webhooks reference libraries
    /// (`libraries/python/tests/test_webhooks.py`, `test_sign_function`).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn sw(secrets: &[&str]) -> StandardWebhooks {
        let s: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
        StandardWebhooks::new(&s, Duration::from_secs(300)).unwrap()
    }

    fn req(prefix: &str, id: &str, ts: &str, sig: &str, body: &[u8], now: i64) -> Req {
        Req::post("/in/sw", body)
            .header(&format!("{prefix}-id"), id)
            .header(&format!("{prefix}-timestamp"), ts)
            .header(&format!("{prefix}-signature"), sig)
            .at(now)
    }

    fn ok(v: &StandardWebhooks, r: Req) -> bool {
        v.verify(&r.view()).is_ok()
    }

    #[test]
    fn reference_vector_with_both_header_names_and_secret_forms() {
        for secret in [SECRET, SECRET.trim_start_matches("whsec_")] {
            let v = sw(&[secret]);
            for prefix in ["webhook", "svix"] {
                assert!(ok(&v, req(prefix, ID, &TS.to_string(), SIG, BODY, TS)));
            }
        }
        // The reference tests' near miss: the last character changed.
        let v = sw(&[SECRET]);
        let near = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=";
        assert!(!ok(&v, req("webhook", ID, &TS.to_string(), near, BODY, TS)));
    }

    #[test]
    fn several_signatures_and_versions() {
        let v = sw(&[SECRET]);
        // test_multi_sig_payload_is_valid: wrong v1, a v2, the right one, another wrong v1.
        let multi = format!(
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {SIG} v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
        );
        assert!(ok(
            &v,
            req("webhook", ID, &TS.to_string(), &multi, BODY, TS)
        ));
        // Right signature under another version tag does not count.
        let v2 = SIG.replacen("v1,", "v2,", 1);
        assert!(!ok(&v, req("webhook", ID, &TS.to_string(), &v2, BODY, TS)));
        // Rotation on our side.
        let both = sw(&["whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", SECRET]);
        assert!(ok(
            &both,
            req("webhook", ID, &TS.to_string(), SIG, BODY, TS)
        ));
    }

    #[test]
    fn tolerance_both_ways() {
        let v = sw(&[SECRET]);
        let t = TS.to_string();
        assert!(ok(&v, req("webhook", ID, &t, SIG, BODY, TS + 300)));
        assert!(ok(&v, req("webhook", ID, &t, SIG, BODY, TS - 300)));
        // test_old_timestamp_fails / test_new_timestamp_fails.
        assert!(!ok(&v, req("webhook", ID, &t, SIG, BODY, TS + 301)));
        assert!(!ok(&v, req("webhook", ID, &t, SIG, BODY, TS - 301)));
    }

    #[test]
    fn negative_cases() {
        let v = sw(&[SECRET]);
        let t = TS.to_string();
        // Tampered body, other id, other timestamp, wrong secret.
        assert!(!ok(
            &v,
            req("webhook", ID, &t, SIG, br#"{"test": 2432232315}"#, TS)
        ));
        assert!(!ok(&v, req("webhook", "msg_other", &t, SIG, BODY, TS)));
        let t1 = (TS + 1).to_string();
        assert!(!ok(&v, req("webhook", ID, &t1, SIG, BODY, TS)));
        let other = sw(&["whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]);
        assert!(!ok(&other, req("webhook", ID, &t, SIG, BODY, TS)));
        // Missing headers (test_missing_id / timestamp / signature).
        for skip in ["id", "timestamp", "signature"] {
            let mut r = Req::post("/", BODY).at(TS);
            for (n, val) in [("id", ID), ("timestamp", t.as_str()), ("signature", SIG)] {
                if n != skip {
                    r = r.header(&format!("webhook-{n}"), val);
                }
            }
            assert!(!ok(&v, r), "without webhook-{skip}");
        }
        // Malformed timestamps (test_invalid_timestamp: "hello") and signatures.
        for ts in [
            "hello",
            "",
            "1614265330.0",
            "-1614265330",
            "99999999999999999999",
        ] {
            assert!(!ok(&v, req("webhook", ID, ts, SIG, BODY, TS)), "{ts:?}");
        }
        for sig in [
            "",
            "v1,",
            "v1",
            "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "v1,%%%%",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1O",
            &"v1,AAAA ".repeat(3000),
        ] {
            assert!(!ok(&v, req("webhook", ID, &t, sig, BODY, TS)), "{sig:?}");
        }
        assert!(!ok(&v, req("webhook", "", &t, SIG, BODY, TS)));
    }

    #[test]
    fn empty_and_non_utf8_bodies() {
        let key = crate::signing::decode_secret(SECRET).unwrap();
        let v = sw(&[SECRET]);
        let t = TS.to_string();
        for body in [&b""[..], &b"\xff\x00\xfe binary"[..]] {
            let sig = crate::signing::sign(&key, ID, TS, body);
            assert!(ok(&v, req("webhook", ID, &t, &sig, body, TS)));
            assert!(!ok(&v, req("webhook", ID, &t, &sig, b"x", TS)));
        }
    }

    #[test]
    fn bad_secrets_are_refused_at_build() {
        let s = [Secret::new("whsec_!!!")];
        assert!(StandardWebhooks::new(&s, Duration::from_secs(1)).is_err());
    }

    proptest! {
        #[test]
        fn parser_never_panics(s in "\\PC{0,300}") {
            let _ = parse_signatures(&s);
        }

        #[test]
        fn signatures_made_by_the_signer_verify(body in proptest::collection::vec(any::<u8>(), 0..300), id in "[a-zA-Z0-9_]{1,40}", skew in -300i64..=300) {
            let key = crate::signing::decode_secret(SECRET).unwrap();
            let sig = crate::signing::sign(&key, &id, TS, &body);
            prop_assert!(ok(&sw(&[SECRET]), req("webhook", &id, &TS.to_string(), &sig, &body, TS + skew)));
        }
    }
}

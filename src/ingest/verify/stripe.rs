//! Stripe: `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...][,v0=...]`,
//! each `v1` an HMAC-SHA256 of `"<t>.<raw body>"` keyed with the endpoint's signing
//! secret (the whole `whsec_...` string, as Stripe's SDKs use it). Stripe sends one
//! `v1` per active secret while an endpoint's secret is being rolled; any may match.
//! Other schemes (`v0`, test-mode extras) are ignored. The timestamp must be within
//! `tolerance` (default 5 minutes) of now, in either direction.

use std::time::Duration;

use super::{
    any_mac_matches, decode_hex, parse_unix_seconds, raw_keys, reason, within_tolerance, Key,
    Reason, Rejected, Request, Verifier,
};
use crate::config::{HmacAlgorithm, Secret};

/// The signature header.
pub const HEADER: &str = "stripe-signature";

/// A parsed `Stripe-Signature` header.
#[derive(Debug, PartialEq, Eq)]
pub struct SignatureHeader {
    /// `t`: when Stripe signed, in Unix seconds (the first `t` wins).
    pub timestamp: i64,
    /// Every well-formed `v1` signature (32 bytes each).
    pub v1: Vec<Vec<u8>>,
}

/// Parses a `Stripe-Signature` value; `None` without a valid `t` or any valid `v1`.
pub fn parse_header(value: &str) -> Option<SignatureHeader> {
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for item in value.split(',') {
        let Some((k, v)) = item.trim().split_once('=') else {
            continue;
        };
        match k {
            "t" if timestamp.is_none() => timestamp = Some(parse_unix_seconds(v)?),
            "v1" if v.len() == 64 => v1.extend(decode_hex(v)),
            _ => {}
        }
    }
    let timestamp = timestamp?;
    (!v1.is_empty()).then_some(SignatureHeader { timestamp, v1 })
}

/// Checks `Stripe-Signature`.
pub struct Stripe {
    keys: Vec<Key>,
    tolerance: Duration,
}

impl Stripe {
    /// A verifier accepting signatures by any of `keys` made within `tolerance` of now.
    pub fn new(keys: Vec<Secret>, tolerance: Duration) -> Self {
        Stripe {
            keys: raw_keys(&keys),
            tolerance,
        }
    }
}

impl Verifier for Stripe {
    fn verify(&self, req: &Request<'_>) -> Result<(), Rejected> {
        let h = req
            .signature_header(HEADER)
            .and_then(parse_header)
            .ok_or(Rejected::UNAUTHORIZED)?;
        if !within_tolerance(h.timestamp, req.now, self.tolerance) {
            return Err(Rejected::UNAUTHORIZED);
        }
        // Stripe's SDKs sign the number as they print it, so do the same.
        let t = h.timestamp.to_string();
        if any_mac_matches(
            HmacAlgorithm::Sha256,
            &self.keys,
            &[t.as_bytes(), b".", req.body],
            &h.v1,
        ) {
            Ok(())
        } else {
            Err(Rejected::UNAUTHORIZED)
        }
    }

    fn explain(&self, req: &Request<'_>) -> Reason {
        let shown = "Stripe-Signature";
        let h = match reason::header(
            req,
            HEADER,
            shown,
            "Stripe",
            "`t=<unix time>,v1=<hex>`",
            parse_header,
        ) {
            Ok(h) => h,
            Err(r) => return r,
        };
        if let Some(r) = reason::stale(h.timestamp, req.now, self.tolerance) {
            return r;
        }
        Reason::mismatch(
            "no `v1` signature in `Stripe-Signature` matched the body signed with the source's secret: \
             use the endpoint's signing secret (`whsec_…`, one per endpoint and per mode), \
             and check that nothing between Stripe and hookgate changes the body",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Req;
    use super::*;
    use proptest::prelude::*;

    /// stripe-python's test payload and secret (`tests/test_webhook.py`:
    /// `DUMMY_WEBHOOK_PAYLOAD`, `DUMMY_WEBHOOK_SECRET`).
    const PAYLOAD: &[u8] = b"{\n  \"id\": \"evt_test_webhook\",\n  \"object\": \"event\"\n}";
    const SECRET: &str = "whsec_test_secret";
    const T: i64 = 1_700_000_000;
    /// Made by stripe-python 16.1.0:
    /// `stripe.WebhookSignature.generate_signature_header(PAYLOAD, SECRET, timestamp=1700000000)`.
    const SDK_HEADER: &str =
        "t=1700000000,v1=4f1cd7feda9826e746b7d482c4badebb657398df1099e1046364f6196a230150";

    fn stripe(secrets: &[&str]) -> Stripe {
        Stripe::new(
            secrets.iter().map(|s| Secret::new(*s)).collect(),
            Duration::from_secs(300),
        )
    }

    fn check(v: &Stripe, body: &[u8], header: &str, now: i64) -> Result<(), Rejected> {
        v.verify(
            &Req::post("/in/stripe", body)
                .header("Stripe-Signature", header)
                .at(now)
                .view(),
        )
    }

    fn v1(secret: &str, t: i64, body: &[u8]) -> String {
        let m = super::super::mac(
            HmacAlgorithm::Sha256,
            secret.as_bytes(),
            &[t.to_string().as_bytes(), b".", body],
        );
        hex::encode(m)
    }

    #[test]
    fn explanations_tell_stale_from_mismatch() {
        let v = stripe(&[SECRET]);
        let req = |now: i64| {
            Req::post("/in/s", PAYLOAD)
                .header("Stripe-Signature", SDK_HEADER)
                .at(now)
        };
        let r = v.explain(&req(T + 612).view());
        assert_eq!(r.code, "stale_timestamp");
        assert!(
            r.text.contains("612 s old, more than the 300 s tolerance"),
            "{}",
            r.text
        );
        let other = stripe(&["whsec_other"]);
        let r = other.explain(&req(T).view());
        assert_eq!(r.code, "signature_mismatch");
        assert!(!r.text.contains("whsec_other") && !r.text.contains("4f1cd7fe"));
        let r = v.explain(
            &Req::post("/in/s", PAYLOAD)
                .header("Stripe-Signature", "v1=zz")
                .view(),
        );
        assert_eq!(r.code, "malformed_header");
    }

    #[test]
    fn a_header_made_by_stripes_sdk() {
        let v = stripe(&[SECRET]);
        assert_eq!(check(&v, PAYLOAD, SDK_HEADER, T), Ok(()));
        assert_eq!(check(&v, PAYLOAD, SDK_HEADER, T + 300), Ok(()));
        assert_eq!(check(&v, PAYLOAD, SDK_HEADER, T - 300), Ok(()));
        // Stale and future beyond the tolerance.
        assert!(check(&v, PAYLOAD, SDK_HEADER, T + 301).is_err());
        assert!(check(&v, PAYLOAD, SDK_HEADER, T - 301).is_err());
        // Tampered body, wrong secret.
        let mut tampered = PAYLOAD.to_vec();
        tampered[10] = b'X';
        assert!(check(&v, &tampered, SDK_HEADER, T).is_err());
        assert!(check(&stripe(&["whsec_other"]), PAYLOAD, SDK_HEADER, T).is_err());
        // The timestamp is signed: moving it breaks the signature.
        let moved = SDK_HEADER.replace("t=1700000000", "t=1700000001");
        assert!(check(&v, PAYLOAD, &moved, T).is_err());
    }

    #[test]
    fn several_v1_entries_and_other_schemes() {
        let v = stripe(&["whsec_new"]);
        let body = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
        let old = v1("whsec_old", T, body);
        let new = v1("whsec_new", T, body);
        // Stripe during a secret roll: one v1 per secret, plus a v0 we ignore.
        let h = format!("t={T},v1={old},v1={new},v0={new}");
        assert_eq!(check(&v, body, &h, T), Ok(()));
        let h = format!("t={T},v0={new},v1={old}");
        assert!(check(&v, body, &h, T).is_err(), "v0 is not a v1");
        // Rotation on our side: either configured secret.
        let both = stripe(&["whsec_old", "whsec_new"]);
        assert_eq!(check(&both, body, &format!("t={T},v1={old}"), T), Ok(()));
        // Order does not matter; spaces around items are tolerated.
        assert_eq!(check(&v, body, &format!("v1={new}, t={T}"), T), Ok(()));
    }

    #[test]
    fn malformed_headers() {
        let v = stripe(&["whsec_k"]);
        let body = b"{}";
        let s = v1("whsec_k", T, body);
        for bad in [
            String::new(),
            format!("v1={s}"),
            format!("t={T}"),
            format!("t=,v1={s}"),
            format!("t=-{T},v1={s}"),
            format!("t=+{T},v1={s}"),
            format!("t={T}.5,v1={s}"),
            format!("t=abc,v1={s}"),
            format!("t=99999999999999999999999,v1={s}"),
            format!("t={T},v1={}", &s[..63]),
            format!("t={T},v1={s}0"),
            format!("t={T},v1=zz{}", &s[2..]),
            format!("t={T};v1={s}"),
            format!("t={T},v1={s}").repeat(400),
            ",,,=,==".into(),
        ] {
            assert!(check(&v, body, &bad, T).is_err(), "{bad:?}");
        }
        assert!(v.verify(&Req::post("/", body).at(T).view()).is_err());
        // Non-ASCII bytes.
        let r = Req::post("/", body)
            .header_bytes("Stripe-Signature", b"t=1,v1=\xe9")
            .at(T);
        assert!(v.verify(&r.view()).is_err());
        // A second t does not override the first.
        let h = format!("t={T},t={},v1={s}", T + 1);
        assert_eq!(check(&v, body, &h, T), Ok(()));
    }

    #[test]
    fn empty_and_non_utf8_bodies() {
        let v = stripe(&["whsec_k"]);
        let h = format!("t={T},v1={}", v1("whsec_k", T, b""));
        assert_eq!(check(&v, b"", &h, T), Ok(()));
        assert!(check(&v, b" ", &h, T).is_err());
        let raw = b"\xc3\x28 invalid utf-8";
        let h = format!("t={T},v1={}", v1("whsec_k", T, raw));
        assert_eq!(check(&v, raw, &h, T), Ok(()));
    }

    #[test]
    fn tolerance_is_configurable() {
        let v = Stripe::new(vec![Secret::new(SECRET)], Duration::from_secs(10));
        assert_eq!(check(&v, PAYLOAD, SDK_HEADER, T + 10), Ok(()));
        assert!(check(&v, PAYLOAD, SDK_HEADER, T + 11).is_err());
    }

    proptest! {
        #[test]
        fn parser_never_panics(s in "\\PC{0,300}") {
            let _ = parse_header(&s);
        }

        #[test]
        fn parser_finds_what_was_written(t in 0i64..4_000_000_000, sigs in proptest::collection::vec(any::<[u8; 32]>(), 1..4)) {
            let mut h = format!("t={t}");
            for s in &sigs {
                h.push_str(&format!(",v1={}", hex::encode(s)));
            }
            let p = parse_header(&h).unwrap();
            prop_assert_eq!(p.timestamp, t);
            prop_assert_eq!(p.v1, sigs.iter().map(|s| s.to_vec()).collect::<Vec<_>>());
        }
    }
}

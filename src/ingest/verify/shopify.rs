//! Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the raw body>`, keyed
//! with the app's client secret (or the webhook signing key shown in the admin).

use super::{
    any_mac_matches, raw_keys, reason, Key, Reason, Rejected, Request, Verifier, B64_LENIENT,
};
use crate::config::{HmacAlgorithm, Secret};
use base64::Engine as _;

/// The signature header.
pub const HEADER: &str = "x-shopify-hmac-sha256";

/// Decodes the header into the 32 signature bytes; `None` when it is anything else.
pub fn parse_signature(value: &str) -> Option<Vec<u8>> {
    let sig = B64_LENIENT.decode(value.trim()).ok()?;
    (sig.len() == 32).then_some(sig)
}

/// Checks `X-Shopify-Hmac-Sha256`.
pub struct Shopify {
    keys: Vec<Key>,
}

impl Shopify {
    /// A verifier accepting a signature by any of `keys`.
    pub fn new(keys: Vec<Secret>) -> Self {
        Shopify {
            keys: raw_keys(&keys),
        }
    }
}

impl Verifier for Shopify {
    fn verify(&self, req: &Request<'_>) -> Result<(), Rejected> {
        let sig = req
            .signature_header(HEADER)
            .and_then(parse_signature)
            .ok_or(Rejected::UNAUTHORIZED)?;
        if any_mac_matches(HmacAlgorithm::Sha256, &self.keys, &[req.body], &[sig]) {
            Ok(())
        } else {
            Err(Rejected::UNAUTHORIZED)
        }
    }

    fn explain(&self, req: &Request<'_>) -> Reason {
        let shown = "X-Shopify-Hmac-Sha256";
        if let Err(r) = reason::header(
            req,
            HEADER,
            shown,
            "Shopify",
            "base64 of 32 bytes",
            parse_signature,
        ) {
            return r;
        }
        Reason::mismatch(format!(
            "the `{shown}` did not match the raw body signed with the source's secret: \
             use the app's client secret (or the store's webhook signing secret), and check that nothing changes the body"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Req;
    use super::*;
    use base64::engine::general_purpose::STANDARD as B64;
    use proptest::prelude::*;

    fn check(v: &Shopify, body: &[u8], sig: &str) -> Result<(), Rejected> {
        v.verify(
            &Req::post("/in/shop", body)
                .header("X-Shopify-Hmac-Sha256", sig)
                .header("X-Shopify-Topic", "orders/create")
                .view(),
        )
    }

    fn sign(secret: &str, body: &[u8]) -> String {
        B64.encode(super::super::mac(
            HmacAlgorithm::Sha256,
            secret.as_bytes(),
            &[body],
        ))
    }

    /// Shopify/shopify-app-js `packages/apps/shopify-api/lib/webhooks/__tests__/validate.test.ts`
    /// ("returns true for valid request"): `apiSecretKey` "test_secret_key" from
    /// `lib/__tests__/test-config.ts`, raw body `{"foo": "bar"}`.
    #[test]
    fn shopify_app_js_vector() {
        let v = Shopify::new(vec![Secret::new("test_secret_key")]);
        let sig = "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g=";
        assert_eq!(check(&v, br#"{"foo": "bar"}"#, sig), Ok(()));
        // Same JSON, other bytes.
        assert!(check(&v, br#"{"foo":"bar"}"#, sig).is_err());
        // "returns false on missing HMAC" / "on invalid HMAC" ('fake') / missing body.
        assert!(check(&v, br#"{"foo": "bar"}"#, "").is_err());
        assert!(check(&v, br#"{"foo": "bar"}"#, "fake").is_err());
        assert!(check(&v, b"", sig).is_err());
        assert!(v
            .verify(&Req::post("/", br#"{"foo": "bar"}"#).view())
            .is_err());
    }

    #[test]
    fn rotation_wrong_secret_and_malformed_headers() {
        let v = Shopify::new(vec![Secret::new("old"), Secret::new("new")]);
        let body = "{\"id\":820982911946154508,\"note\":\"caf\u{e9}\"}".as_bytes();
        assert_eq!(check(&v, body, &sign("old", body)), Ok(()));
        assert_eq!(check(&v, body, &sign("new", body)), Ok(()));
        assert!(check(&v, body, &sign("other", body)).is_err());
        let good = sign("new", body);
        // Without padding is the same signature; other alphabets and lengths are not.
        assert_eq!(check(&v, body, good.trim_end_matches('=')), Ok(()));
        for bad in [
            good.replace('+', "-").replace('/', "_") + "x",
            good[..good.len() - 4].to_string(),
            format!("{good}AAAA"),
            hex::encode(super::super::mac(HmacAlgorithm::Sha256, b"new", &[body])),
            "%%%%".into(),
            "A".repeat(50_000),
        ] {
            assert!(check(&v, body, &bad).is_err(), "{bad:?}");
        }
        let raw = b"\x80\x81 not utf-8";
        assert_eq!(check(&v, raw, &sign("old", raw)), Ok(()));
        assert!(check(&v, b"\x80\x81 not utf-9", &sign("old", raw)).is_err());
    }

    proptest! {
        #[test]
        fn parser_never_panics(s in "\\PC{0,200}") {
            let _ = parse_signature(&s);
        }
    }
}

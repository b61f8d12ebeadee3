//! Generic HMAC of the raw body, for senders without a verifier of their own
//! (respond.io, many CRMs and form tools): a configured `header` holds
//! `<prefix><signature>`, the signature being the HMAC (`algorithm`: sha1, sha256
//! or sha512) of the body keyed with the secret, written in `encoding` (hex or
//! base64). For example respond.io's `X-Webhook-Signature` is base64 HMAC-SHA256.
//!
//! There is no timestamp in such schemes, so nothing stops a replay of a captured
//! request; a dedup key on the message's own id is the defence.

use base64::Engine as _;
use http::HeaderName;

use super::{
    any_mac_matches, decode_hex, raw_keys, Key, Reason, Rejected, Request, Verifier, B64_LENIENT,
};
use crate::config::{HmacAlgorithm, Secret, SigEncoding};

/// The length of a digest in bytes.
fn digest_len(alg: HmacAlgorithm) -> usize {
    match alg {
        HmacAlgorithm::Sha1 => 20,
        HmacAlgorithm::Sha256 => 32,
        HmacAlgorithm::Sha512 => 64,
    }
}

/// Parses `<prefix><signature>`: the prefix (compared ignoring ASCII case, so
/// `SHA256=` matches `sha256=`) is required when configured; the rest must decode
/// in `encoding` to a digest of `alg`'s length.
pub fn parse_signature(
    value: &str,
    prefix: &str,
    encoding: SigEncoding,
    alg: HmacAlgorithm,
) -> Option<Vec<u8>> {
    let value = value.trim();
    let head = value.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let sig = value[prefix.len()..].trim();
    let bytes = match encoding {
        SigEncoding::Hex => decode_hex(sig)?,
        SigEncoding::Base64 => B64_LENIENT.decode(sig).ok()?,
    };
    (bytes.len() == digest_len(alg)).then_some(bytes)
}

/// A configurable HMAC-of-the-body check.
pub struct GenericHmac {
    keys: Vec<Key>,
    header: HeaderName,
    algorithm: HmacAlgorithm,
    encoding: SigEncoding,
    prefix: String,
}

impl GenericHmac {
    /// A verifier reading `header`, accepting a signature by any of `keys`.
    pub fn new(
        keys: Vec<Secret>,
        header: HeaderName,
        algorithm: HmacAlgorithm,
        encoding: SigEncoding,
        prefix: String,
    ) -> Self {
        GenericHmac {
            keys: raw_keys(&keys),
            header,
            algorithm,
            encoding,
            prefix,
        }
    }
}

impl Verifier for GenericHmac {
    fn verify(&self, req: &Request<'_>) -> Result<(), Rejected> {
        let sig = req
            .signature_header(self.header.as_str())
            .and_then(|v| parse_signature(v, &self.prefix, self.encoding, self.algorithm))
            .ok_or(Rejected::UNAUTHORIZED)?;
        if any_mac_matches(self.algorithm, &self.keys, &[req.body], &[sig]) {
            Ok(())
        } else {
            Err(Rejected::UNAUTHORIZED)
        }
    }

    fn explain(&self, req: &Request<'_>) -> Reason {
        let name = self.header.as_str();
        let parse = |v: &str| parse_signature(v, &self.prefix, self.encoding, self.algorithm);
        let expected = format!(
            "expected `{}` followed by the {:?} HMAC in {:?}",
            self.prefix, self.algorithm, self.encoding
        );
        if let Err(r) =
            super::reason::header(req, name, name, "the configured sender", &expected, parse)
        {
            return r;
        }
        Reason::mismatch(format!(
            "the `{name}` did not match the body signed ({:?}) with the source's secret: \
             check the secret, `algorithm`, `encoding` and `prefix`",
            self.algorithm
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Req;
    use super::*;
    use base64::engine::general_purpose::STANDARD as B64;
    use proptest::prelude::*;

    fn v(alg: HmacAlgorithm, enc: SigEncoding, prefix: &str) -> GenericHmac {
        GenericHmac::new(
            vec![Secret::new("key-one"), Secret::new("key-two")],
            HeaderName::from_static("x-signature"),
            alg,
            enc,
            prefix.into(),
        )
    }

    fn check(v: &GenericHmac, body: &[u8], sig: &str) -> bool {
        v.verify(&Req::post("/in/h", body).header("X-Signature", sig).view())
            .is_ok()
    }

    /// RFC 4231 test case 2 (key "Jefe", "what do ya want for nothing?") for each
    /// digest, and RFC 2202 test case 2 for SHA-1: the HMAC itself is right.
    #[test]
    fn rfc_vectors() {
        let data: &[&[u8]] = &[b"what do ya want for nothing?"];
        assert_eq!(
            hex::encode(super::super::mac(HmacAlgorithm::Sha1, b"Jefe", data)),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        assert_eq!(
            hex::encode(super::super::mac(HmacAlgorithm::Sha256, b"Jefe", data)),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex::encode(super::super::mac(HmacAlgorithm::Sha512, b"Jefe", data)),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        );
        let g = GenericHmac::new(
            vec![Secret::new("Jefe")],
            HeaderName::from_static("x-signature"),
            HmacAlgorithm::Sha256,
            SigEncoding::Hex,
            "sha256=".into(),
        );
        assert!(check(
            &g,
            data[0],
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        ));
    }

    #[test]
    fn every_algorithm_encoding_and_prefix() {
        let body = br#"{"event_type":"message.received","contact":{"id":12345}}"#;
        for alg in [
            HmacAlgorithm::Sha1,
            HmacAlgorithm::Sha256,
            HmacAlgorithm::Sha512,
        ] {
            for enc in [SigEncoding::Hex, SigEncoding::Base64] {
                for prefix in ["", "sha256=", "v1:"] {
                    let g = v(alg, enc, prefix);
                    let m = super::super::mac(alg, b"key-two", &[body]);
                    let text = match enc {
                        SigEncoding::Hex => hex::encode(&m),
                        SigEncoding::Base64 => B64.encode(&m),
                    };
                    assert!(check(&g, body, &format!("{prefix}{text}")));
                    assert!(!check(&g, b"{}", &format!("{prefix}{text}")), "tampered");
                    if !prefix.is_empty() {
                        assert!(!check(&g, body, &text), "the prefix is required");
                    }
                    let wrong = super::super::mac(alg, b"key-three", &[body]);
                    let wrong = match enc {
                        SigEncoding::Hex => hex::encode(&wrong),
                        SigEncoding::Base64 => B64.encode(&wrong),
                    };
                    assert!(!check(&g, body, &format!("{prefix}{wrong}")), "wrong key");
                }
            }
        }
    }

    /// respond.io: `X-Webhook-Signature` is the base64 HMAC-SHA256 of the raw body
    /// with the webhook's signing key.
    #[test]
    fn respond_io_recipe() {
        let g = GenericHmac::new(
            vec![Secret::new("respondio-signing-key")],
            HeaderName::from_static("x-webhook-signature"),
            HmacAlgorithm::Sha256,
            SigEncoding::Base64,
            String::new(),
        );
        let body = br#"{"event_type":"message.received","contact":{"id":12345},"message":{"message":{"type":"text","text":"hello"}}}"#;
        let sig = B64.encode(super::super::mac(
            HmacAlgorithm::Sha256,
            b"respondio-signing-key",
            &[body],
        ));
        let r = Req::post("/in/respondio", body).header("X-Webhook-Signature", &sig);
        assert_eq!(g.verify(&r.view()), Ok(()));
        let r = Req::post("/in/respondio", body).header("X-Signature", &sig);
        assert!(g.verify(&r.view()).is_err(), "the configured header only");
    }

    #[test]
    fn malformed_values() {
        let g = v(HmacAlgorithm::Sha256, SigEncoding::Hex, "sha256=");
        let body = b"x";
        let good = hex::encode(super::super::mac(
            HmacAlgorithm::Sha256,
            b"key-one",
            &[body],
        ));
        assert!(check(&g, body, &format!("SHA256={good}")), "prefix case");
        for bad in [
            String::new(),
            "sha256".into(),
            "sha256=".into(),
            format!("sha256={}", &good[..62]),
            format!("sha256={good}00"),
            format!("sha1={good}"),
            format!("sha256= {good}x"),
            format!("sha256={}", "ab".repeat(10_000)),
        ] {
            assert!(!check(&g, body, &bad), "{bad:?}");
        }
        assert!(g.verify(&Req::post("/", body).view()).is_err());
        let raw = b"\xfe\xff";
        let sig = hex::encode(super::super::mac(HmacAlgorithm::Sha256, b"key-one", &[raw]));
        assert!(check(&g, raw, &format!("sha256={sig}")));
        let empty = hex::encode(super::super::mac(HmacAlgorithm::Sha256, b"key-one", &[b""]));
        assert!(check(&g, b"", &format!("sha256={empty}")));
    }

    proptest! {
        #[test]
        fn parser_never_panics(s in "\\PC{0,200}", prefix in "\\PC{0,8}") {
            for enc in [SigEncoding::Hex, SigEncoding::Base64] {
                let _ = parse_signature(&s, &prefix, enc, HmacAlgorithm::Sha256);
            }
        }
    }
}

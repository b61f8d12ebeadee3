//! GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`, keyed
//! with the webhook's secret. The legacy SHA-1 `X-Hub-Signature` is not accepted:
//! GitHub sends both, and SHA-256 is the one it documents.

use super::{
    any_mac_matches, decode_hex, raw_keys, reason, Key, Reason, Rejected, Request, Verifier,
};
use crate::config::{HmacAlgorithm, Secret};

/// The header GitHub (and Meta) sign in.
pub const HEADER: &str = "x-hub-signature-256";

/// Parses `sha256=<hex>` into the 32 signature bytes; `None` when it is anything else.
pub fn parse_signature(value: &str) -> Option<Vec<u8>> {
    let (scheme, hex) = value.trim().split_once('=')?;
    if !scheme.eq_ignore_ascii_case("sha256") || hex.len() != 64 {
        return None;
    }
    decode_hex(hex)
}

/// Checks `X-Hub-Signature-256` over the raw body.
pub struct Github {
    keys: Vec<Key>,
}

impl Github {
    /// A verifier accepting a signature by any of `keys`.
    pub fn new(keys: Vec<Secret>) -> Self {
        Github {
            keys: raw_keys(&keys),
        }
    }
}

/// The check GitHub and Meta share: one `sha256=` signature of the raw body.
pub(super) fn verify_hub_signature(keys: &[Key], req: &Request<'_>) -> Result<(), Rejected> {
    let sig = req
        .signature_header(HEADER)
        .and_then(parse_signature)
        .ok_or(Rejected::UNAUTHORIZED)?;
    if any_mac_matches(HmacAlgorithm::Sha256, keys, &[req.body], &[sig]) {
        Ok(())
    } else {
        Err(Rejected::UNAUTHORIZED)
    }
}

/// Why [`verify_hub_signature`] refused `req` (`provider`: GitHub or Meta).
pub(super) fn explain_hub_signature(req: &Request<'_>, provider: &str) -> Reason {
    let shown = "X-Hub-Signature-256";
    if let Err(r) = reason::header(
        req,
        HEADER,
        shown,
        provider,
        "`sha256=<64 hex digits>`",
        parse_signature,
    ) {
        return r;
    }
    Reason::mismatch(format!(
        "the `{shown}` did not match the raw body signed with the source's secret: \
         use the secret set on the {provider} webhook (or app), and check that nothing changes the body on the way"
    ))
}

impl Verifier for Github {
    fn verify(&self, req: &Request<'_>) -> Result<(), Rejected> {
        verify_hub_signature(&self.keys, req)
    }

    fn explain(&self, req: &Request<'_>) -> Reason {
        explain_hub_signature(req, "GitHub")
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Req;
    use super::*;
    use proptest::prelude::*;

    fn github(secrets: &[&str]) -> Github {
        Github::new(secrets.iter().map(|s| Secret::new(*s)).collect())
    }

    fn check(v: &Github, body: &[u8], sig: &str) -> Result<(), Rejected> {
        v.verify(
            &Req::post("/in/gh", body)
                .header("X-Hub-Signature-256", sig)
                .view(),
        )
    }

    fn sign(secret: &str, body: &[u8]) -> String {
        let m = super::super::mac(HmacAlgorithm::Sha256, secret.as_bytes(), &[body]);
        format!("sha256={}", hex::encode(m))
    }

    /// GitHub's "Validating webhook deliveries" page, section "Testing the webhook
    /// payload validation": secret "It's a Secret to Everybody", payload "Hello, World!".
    #[test]
    fn github_docs_vector() {
        let v = github(&["It's a Secret to Everybody"]);
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(check(&v, b"Hello, World!", sig), Ok(()));
        assert_eq!(
            check(&v, b"Hello, World?", sig),
            Err(Rejected::UNAUTHORIZED)
        );
        assert_eq!(
            check(
                &v,
                b"Hello, World!",
                &sig.to_uppercase().replace("SHA256", "sha256")
            ),
            Ok(()),
            "hex in either case"
        );
    }

    /// octokit/webhooks-methods.js `test/sign.test.ts` and `test/verify.test.ts`:
    /// secret "mysecret" over `{"foo":"bar"}` (compact) and over the same object
    /// as GitHub sends it (2-space indent and a trailing newline); and secret
    /// "development" over payloads with escaped control characters (octokit/webhooks.js#71).
    #[test]
    fn octokit_vectors() {
        let v = github(&["mysecret"]);
        assert_eq!(
            check(
                &v,
                br#"{"foo":"bar"}"#,
                "sha256=4864d2759938a15468b5df9ade20bf161da9b4f737ea61794142f3484236bda3"
            ),
            Ok(())
        );
        let pretty = b"{\n  \"foo\": \"bar\"\n}\n";
        let sig = "sha256=e3eccac34c43c7dc1cbb905488b1b81347fcc700a7b025697a9d07862256023f";
        assert_eq!(check(&v, pretty, sig), Ok(()));
        // octokit's negative cases: a wrong digit, a non-signature, a wrong secret.
        assert!(check(
            &v,
            pretty,
            "sha256=xxxccac34c43c7dc1cbb905488b1b81347fcc700a7b025697a9d07862256023f"
        )
        .is_err());
        assert!(check(&v, pretty, "foo").is_err());
        assert!(check(&github(&["foo"]), pretty, sig).is_err());
        // verifyWithFallback: any of several secrets.
        assert_eq!(check(&github(&["foo", "mysecret"]), pretty, sig), Ok(()));

        let dev = github(&["development"]);
        let special = "{\n  \"foo\": \"Foo\\n\\u001B[34mbar: \u{2665}\u{2665}\u{2665}\u{2665}\u{2665}\u{2665}\u{2665}\u{2665}\\nthis-is-lost\\u001B[0m\\u001B[2K\"\n}\n";
        assert_eq!(
            check(
                &dev,
                special.as_bytes(),
                "sha256=9dacf9003316b09be07df56d86a2d0d6872e42a1e6c72c3bad9ff915a7c5603e"
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &dev,
                b"{\n  \"foo\": \"\\\\u001b\"\n}\n",
                "sha256=87316067e2011fae39998b18c46a14d83b3e7c3ffdd88fb2ee5afb7d11288e60"
            ),
            Ok(())
        );
    }

    #[test]
    fn negative_cases() {
        let v = github(&["s3cret"]);
        let body = br#"{"action":"opened"}"#;
        let good = sign("s3cret", body);
        assert_eq!(check(&v, body, &good), Ok(()));
        // Tampered body, wrong secret.
        assert!(check(&v, br#"{"action":"closed"}"#, &good).is_err());
        assert!(check(&v, body, &sign("other", body)).is_err());
        // Missing header, or the legacy SHA-1 header alone.
        assert!(v.verify(&Req::post("/", body).view()).is_err());
        let sha1 = super::super::mac(HmacAlgorithm::Sha1, b"s3cret", &[body]);
        assert!(v
            .verify(
                &Req::post("/", body)
                    .header("X-Hub-Signature", &format!("sha1={}", hex::encode(sha1)))
                    .view()
            )
            .is_err());
        // Malformed: no scheme, other scheme, short, odd, non-hex, empty.
        let hexpart = good.trim_start_matches("sha256=");
        for bad in [
            hexpart.to_string(),
            format!("sha1={hexpart}"),
            format!("sha256={}", &hexpart[..62]),
            format!("sha256={hexpart}0"),
            format!("sha256={}zz", &hexpart[..62]),
            "sha256=".into(),
            String::new(),
            format!("sha256={}", "a".repeat(100_000)),
        ] {
            assert!(check(&v, body, &bad).is_err(), "{bad:?}");
        }
        // Non-ASCII bytes in the header.
        assert!(v
            .verify(
                &Req::post("/", body)
                    .header_bytes("X-Hub-Signature-256", b"sha256=\xff\xfe")
                    .view()
            )
            .is_err());
    }

    #[test]
    fn empty_and_non_utf8_bodies_are_signed_bytes_like_any_other() {
        let v = github(&["s3cret"]);
        assert_eq!(check(&v, b"", &sign("s3cret", b"")), Ok(()));
        assert!(check(&v, b"", &sign("s3cret", b" ")).is_err());
        let raw = b"\xff\xfe\x00not utf-8\x80";
        assert_eq!(check(&v, raw, &sign("s3cret", raw)), Ok(()));
        assert!(check(&v, b"\xff\xfe\x00not utf-8\x81", &sign("s3cret", raw)).is_err());
    }

    proptest! {
        #[test]
        fn parser_never_panics(s in "\\PC{0,300}") {
            let _ = parse_signature(&s);
        }

        #[test]
        fn signatures_round_trip(key in "[ -~]{1,40}", body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let v = github(&[key.as_str()]);
            prop_assert_eq!(check(&v, &body, &sign(&key, &body)), Ok(()));
        }
    }
}

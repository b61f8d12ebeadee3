//! Meta (WhatsApp Cloud API, Messenger, Instagram): `X-Hub-Signature-256:
//! sha256=<hex>` over the raw body, keyed with the app secret; and the `GET`
//! subscription handshake (`hub.mode=subscribe&hub.verify_token=..&hub.challenge=..`),
//! answered here with the challenge when the token is right and 403 otherwise.
//!
//! The signature is over the bytes as received: Meta escapes non-ASCII text as
//! `\uXXXX` in its JSON, so re-serialising a parsed body would not match.

use bytes::Bytes;
use http::{Method, StatusCode};

use super::github::verify_hub_signature;
use super::{ct_eq, raw_keys, Handshake, Key, Reason, Rejected, Request, Verifier};
use crate::config::Secret;

/// Longest `hub.challenge` echoed back; Meta's are short numbers.
const MAX_CHALLENGE: usize = 1024;

/// What the query of a subscription handshake says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Subscribe {
    /// `hub.mode`
    pub mode: Option<String>,
    /// `hub.verify_token`
    pub verify_token: Option<String>,
    /// `hub.challenge`
    pub challenge: Option<String>,
}

/// Reads the `hub.*` parameters of a query string (the first of each wins);
/// `None` when there is no `hub.mode`, i.e. the request is no handshake.
pub fn parse_subscribe(query: &str) -> Option<Subscribe> {
    let mut s = Subscribe::default();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let slot = match &*k {
            "hub.mode" => &mut s.mode,
            "hub.verify_token" => &mut s.verify_token,
            "hub.challenge" => &mut s.challenge,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(v.into_owned());
        }
    }
    s.mode.is_some().then_some(s)
}

/// Checks Meta's signature and answers its subscription handshake.
pub struct Meta {
    keys: Vec<Key>,
    verify_token: Option<Secret>,
}

impl Meta {
    /// A verifier for an app with any of `keys` as its secret; `verify_token`
    /// answers the GET handshake (without one, every handshake gets 403).
    pub fn new(keys: Vec<Secret>, verify_token: Option<Secret>) -> Self {
        Meta {
            keys: raw_keys(&keys),
            verify_token,
        }
    }
}

impl Verifier for Meta {
    fn verify(&self, req: &Request<'_>) -> Result<(), Rejected> {
        verify_hub_signature(&self.keys, req)
    }

    fn explain(&self, req: &Request<'_>) -> Reason {
        if req.method == Method::GET {
            return Reason::new(
                "handshake_failed",
                "the subscription check failed: it needs `hub.mode=subscribe`, a `hub.challenge`, \
                 and a `hub.verify_token` equal to the source's `verify_token`",
            );
        }
        super::github::explain_hub_signature(req, "Meta")
    }

    fn handshake(&self, req: &Request<'_>) -> Option<Result<Handshake, Rejected>> {
        if req.method != Method::GET {
            return None;
        }
        let sub = parse_subscribe(req.uri.query()?)?;
        let token_ok = match (&self.verify_token, &sub.verify_token) {
            (Some(want), Some(got)) => ct_eq(want.expose().as_bytes(), got.as_bytes()),
            _ => false,
        };
        let challenge = sub.challenge.filter(|c| c.len() <= MAX_CHALLENGE);
        match (
            sub.mode.as_deref() == Some("subscribe") && token_ok,
            challenge,
        ) {
            (true, Some(challenge)) => Some(Ok(Handshake {
                status: StatusCode::OK,
                content_type: "text/plain; charset=utf-8",
                body: Bytes::from(challenge),
            })),
            _ => Some(Err(Rejected::FORBIDDEN)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Req;
    use super::*;
    use crate::config::HmacAlgorithm;
    use proptest::prelude::*;

    fn meta() -> Meta {
        Meta::new(
            vec![Secret::new("app-secret"), Secret::new("next-secret")],
            Some(Secret::new("my-verify-token")),
        )
    }

    fn sign(secret: &str, body: &[u8]) -> String {
        let m = super::super::mac(HmacAlgorithm::Sha256, secret.as_bytes(), &[body]);
        format!("sha256={}", hex::encode(m))
    }

    #[test]
    fn signed_posts_with_either_secret() {
        // Meta escapes non-ASCII as \uXXXX; the raw bytes are what is signed.
        let body = br#"{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"messages":[{"text":{"body":"caf\u00e9"}}]}}]}]}"#;
        for s in ["app-secret", "next-secret"] {
            let r = Req::post("/in/wa", body).header("X-Hub-Signature-256", &sign(s, body));
            assert_eq!(meta().verify(&r.view()), Ok(()));
            assert!(
                meta().handshake(&r.view()).is_none(),
                "a POST is no handshake"
            );
        }
        // The same JSON re-serialised (unescaped) is other bytes: refused.
        let reserialised = "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"changes\":[{\"value\":{\"messages\":[{\"text\":{\"body\":\"caf\u{e9}\"}}]}}]}]}";
        let r = Req::post("/in/wa", reserialised.as_bytes())
            .header("X-Hub-Signature-256", &sign("app-secret", body));
        assert_eq!(meta().verify(&r.view()), Err(Rejected::UNAUTHORIZED));
        for bad in ["", "sha256=", "sha1=abc", &"f".repeat(20_000)] {
            let r = Req::post("/in/wa", body).header("X-Hub-Signature-256", bad);
            assert_eq!(meta().verify(&r.view()), Err(Rejected::UNAUTHORIZED));
        }
        assert!(meta().verify(&Req::post("/in/wa", body).view()).is_err());
        let r = Req::post("/in/wa", body).header("X-Hub-Signature-256", &sign("wrong", body));
        assert!(meta().verify(&r.view()).is_err());
    }

    #[test]
    fn the_get_handshake() {
        let ok = Req::get(
            "/in/wa?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=my-verify-token",
        );
        let h = meta().handshake(&ok.view()).unwrap().unwrap();
        assert_eq!(h.status, StatusCode::OK);
        assert_eq!(&h.body[..], b"1158201444");

        for q in [
            "hub.mode=subscribe&hub.challenge=1&hub.verify_token=wrong",
            "hub.mode=subscribe&hub.challenge=1&hub.verify_token=my-verify-toke",
            "hub.mode=subscribe&hub.challenge=1",
            "hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=my-verify-token",
            "hub.mode=subscribe&hub.verify_token=my-verify-token",
        ] {
            let r = Req::get(&format!("/in/wa?{q}"));
            assert_eq!(
                meta().handshake(&r.view()),
                Some(Err(Rejected::FORBIDDEN)),
                "{q}"
            );
        }
        let long = format!(
            "/in/wa?hub.mode=subscribe&hub.verify_token=my-verify-token&hub.challenge={}",
            "9".repeat(MAX_CHALLENGE + 1)
        );
        assert_eq!(
            meta().handshake(&Req::get(&long).view()),
            Some(Err(Rejected::FORBIDDEN))
        );
        // Without a configured token every handshake is refused.
        let no_token = Meta::new(vec![Secret::new("s")], None);
        assert_eq!(
            no_token.handshake(&ok.view()),
            Some(Err(Rejected::FORBIDDEN))
        );
        // A GET without hub.mode is an ordinary (unsigned, so refused) request.
        assert!(meta().handshake(&Req::get("/in/wa?x=1").view()).is_none());
        assert!(meta().handshake(&Req::get("/in/wa").view()).is_none());
    }

    proptest! {
        #[test]
        fn query_parser_never_panics(q in "\\PC{0,200}") {
            let _ = parse_subscribe(&q);
        }
    }
}

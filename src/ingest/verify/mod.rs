//! Request verification: one module per provider, each a [`Verifier`] built from a
//! source's `verify` table, plus each provider's [`Preset`] (dedup key, event type,
//! answer).
//!
//! Invariants: secrets are compared in constant time and never logged or echoed;
//! a failed check says nothing about why to the client (401 with an empty body);
//! no input, however malformed, makes a verifier panic, and no header, however
//! long, costs more than one pass over at most [`MAX_SIGNATURE_HEADER`] bytes.
//!
//! The header parsers are public so the fuzz targets (`fuzz/`) can reach them.

pub mod github;
pub mod hmac;
pub mod meta;
pub mod reason;
pub mod shopify;
pub mod sign;
pub mod simple;
pub mod slack;
pub mod standard_webhooks;
pub mod stripe;
pub mod telegram;
pub mod twilio;

use std::time::Duration;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri};
use subtle::ConstantTimeEq;

use crate::config::{HmacAlgorithm, ResponseConfig, VerifyConfig, VerifyKind};
use crate::select::Selector;
pub use reason::Reason;

/// Longest signature header a verifier looks at. Real ones are well under 1 KiB
/// (a Stripe header with two secrets is about 200 bytes); anything longer is
/// refused before it is parsed, so a huge header costs nothing.
pub const MAX_SIGNATURE_HEADER: usize = 8 * 1024;

/// The replay window of timestamped schemes when `tolerance` is not set.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// What a verifier sees of a request.
pub struct Request<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URI as received (path and query).
    pub uri: &'a Uri,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The raw body.
    pub body: &'a [u8],
    /// Now, in seconds since the Unix epoch (injected so tests control time).
    pub now: i64,
}

impl Request<'_> {
    /// A header's value as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A signature header's value: the first one of that name, if present,
    /// visible ASCII and at most [`MAX_SIGNATURE_HEADER`] bytes long.
    pub fn signature_header(&self, name: &str) -> Option<&str> {
        let v = self.headers.get(name)?;
        if v.len() > MAX_SIGNATURE_HEADER {
            return None;
        }
        v.to_str().ok()
    }
}

/// A refused request: the status to answer (401, or 403 for a bad handshake token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected(pub StatusCode);

impl Rejected {
    /// 401 Unauthorized.
    pub const UNAUTHORIZED: Rejected = Rejected(StatusCode::UNAUTHORIZED);
    /// 403 Forbidden.
    pub const FORBIDDEN: Rejected = Rejected(StatusCode::FORBIDDEN);
}

/// An answer the gateway gives itself; the request is neither stored nor delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// Status (200).
    pub status: StatusCode,
    /// Content-Type of the body.
    pub content_type: &'static str,
    /// The body (a challenge echoed back).
    pub body: Bytes,
}

/// Checks that a request comes from the provider.
pub trait Verifier: Send + Sync {
    /// Whether the request is authentic.
    fn verify(&self, req: &Request<'_>) -> Result<(), Rejected>;

    /// A provider handshake to answer directly (Meta's GET challenge, Slack's
    /// `url_verification`), or `None` for an ordinary webhook. A handshake that
    /// must be signed is verified here too.
    fn handshake(&self, _req: &Request<'_>) -> Option<Result<Handshake, Rejected>> {
        None
    }

    /// Why `verify` (or `handshake`) refused `req`, in plain words. Called only
    /// after a refusal, so it may take its time; it never returns a secret.
    fn explain(&self, _req: &Request<'_>) -> Reason {
        Reason::mismatch("the signature did not match the source's secret")
    }
}

/// A provider's defaults, which the source config may override.
#[derive(Debug, Clone, Default)]
pub struct Preset {
    /// Dedup key selectors, tried in order; the first that finds a value wins.
    pub dedup: Vec<Selector>,
    /// Event type selectors, tried in order.
    pub event_type: Vec<Selector>,
    /// The answer to an accepted request.
    pub response: ResponseConfig,
}

fn sel(s: &str) -> Selector {
    s.parse().expect("preset selectors are valid")
}

/// The preset of a verifier type.
pub fn preset(kind: VerifyKind) -> Preset {
    use VerifyKind::*;
    match kind {
        Telegram => Preset {
            dedup: vec![sel("body:/update_id")],
            ..Preset::default()
        },
        Github => Preset {
            dedup: vec![sel("header:X-GitHub-Delivery")],
            event_type: vec![sel("header:X-GitHub-Event")],
            ..Preset::default()
        },
        Stripe => Preset {
            dedup: vec![sel("body:/id")],
            event_type: vec![sel("body:/type")],
            ..Preset::default()
        },
        Shopify => Preset {
            dedup: vec![sel("header:X-Shopify-Webhook-Id")],
            event_type: vec![sel("header:X-Shopify-Topic")],
            ..Preset::default()
        },
        Slack => Preset {
            dedup: vec![sel("body:/event_id")],
            // Events API first, then other JSON bodies, then slash commands (forms).
            event_type: vec![
                sel("body:/event/type"),
                sel("body:/type"),
                sel("form:command"),
            ],
            ..Preset::default()
        },
        StandardWebhooks => Preset {
            // Svix sends the same headers under its own `svix-` names.
            dedup: vec![sel("header:webhook-id"), sel("header:svix-id")],
            event_type: vec![sel("body:/type")],
            ..Preset::default()
        },
        Twilio => Preset {
            dedup: vec![
                sel("header:I-Twilio-Idempotency-Token"),
                sel("form:MessageSid"),
                sel("form:CallSid"),
            ],
            event_type: vec![sel("form:MessageStatus"), sel("form:CallStatus")],
            response: ResponseConfig {
                status: Some(200),
                content_type: Some("text/xml".into()),
                body: Some("<Response></Response>".into()),
            },
        },
        Meta => Preset {
            event_type: vec![sel("body:/object")],
            ..Preset::default()
        },
        Hmac | Basic | Bearer | Header => Preset::default(),
    }
}

/// Why a verifier could not be built from its (validated) `verify` table.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// No `secret` nor `secrets`.
    #[error("verify type `{0}` needs a secret")]
    NoSecret(&'static str),
    /// `header` is not a header name.
    #[error("`header` {0:?} is not a valid header name")]
    HeaderName(String),
    /// Twilio's `url` does not parse.
    #[error("twilio `url` {url:?} is not a valid URL: {source}")]
    TwilioUrl {
        /// The URL as given.
        url: String,
        /// Why.
        source: url::ParseError,
    },
    /// Twilio's `url` is not http(s) with a host.
    #[error("twilio `url` {0:?} must be an http(s) URL with a host")]
    TwilioNotHttp(String),
    /// Twilio's `url` has a query or fragment.
    #[error(
        "twilio `url` {0:?} must not have a query or fragment: the request's own query is appended"
    )]
    TwilioQuery(String),
    /// A standard-webhooks secret does not decode.
    #[error("a standard-webhooks secret is `whsec_` followed by base64")]
    StandardWebhooksSecret,
}

/// Builds the verifier of a `verify` table (already validated by `config`).
pub fn build(cfg: &VerifyConfig) -> Result<Box<dyn Verifier>, BuildError> {
    let keys = cfg.keys();
    if keys.is_empty() {
        return Err(BuildError::NoSecret(cfg.kind.as_str()));
    }
    let tolerance = cfg.tolerance.map_or(DEFAULT_TOLERANCE, |t| t.0);
    match cfg.kind {
        VerifyKind::Telegram => Ok(Box::new(telegram::Telegram::new(keys))),
        VerifyKind::Twilio => Ok(Box::new(twilio::Twilio::new(keys, cfg.url.as_deref())?)),
        VerifyKind::Stripe => Ok(Box::new(stripe::Stripe::new(keys, tolerance))),
        VerifyKind::Github => Ok(Box::new(github::Github::new(keys))),
        VerifyKind::Slack => Ok(Box::new(slack::Slack::new(keys, tolerance))),
        VerifyKind::Shopify => Ok(Box::new(shopify::Shopify::new(keys))),
        VerifyKind::Meta => Ok(Box::new(meta::Meta::new(keys, cfg.verify_token.clone()))),
        VerifyKind::StandardWebhooks => Ok(Box::new(standard_webhooks::StandardWebhooks::new(
            &keys, tolerance,
        )?)),
        VerifyKind::Hmac => {
            let name = cfg.header.as_deref().unwrap_or_default();
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| BuildError::HeaderName(name.to_string()))?;
            Ok(Box::new(hmac::GenericHmac::new(
                keys,
                name,
                cfg.algorithm.unwrap_or_default(),
                cfg.encoding.unwrap_or_default(),
                cfg.prefix.clone().unwrap_or_default(),
            )))
        }
        VerifyKind::Basic => Ok(Box::new(simple::Basic::new(keys))),
        VerifyKind::Bearer => Ok(Box::new(simple::Bearer::new(keys))),
        VerifyKind::Header => {
            let name = cfg.header.as_deref().unwrap_or_default();
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| BuildError::HeaderName(name.to_string()))?;
            Ok(Box::new(simple::HeaderEquals::new(name, keys)))
        }
    }
}

/// Constant-time equality of two byte strings (the length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Whether `candidate` equals any of `keys`, checking every key (constant time per key).
pub fn any_key_eq(keys: &[crate::config::Secret], candidate: &[u8]) -> bool {
    let mut ok = false;
    for k in keys {
        ok |= ct_eq(k.expose().as_bytes(), candidate);
    }
    ok
}

/// A key as HMAC uses it: the bytes of a configured secret. Its `Debug` hides it.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl Key {
    /// The key bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(***)")
    }
}

/// The UTF-8 bytes of each secret, as most providers use them as HMAC keys.
pub fn raw_keys(keys: &[crate::config::Secret]) -> Vec<Key> {
    keys.iter()
        .map(|k| Key(k.expose().as_bytes().to_vec()))
        .collect()
}

/// The HMAC of the concatenation of `parts` under `key`.
pub fn mac(alg: HmacAlgorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    use ::hmac::{Hmac, Mac};
    fn run<M: Mac + ::hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        // HMAC takes keys of any length, so this cannot fail.
        let mut m = <M as ::hmac::digest::KeyInit>::new_from_slice(key)
            .expect("HMAC accepts keys of any length");
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().to_vec()
    }
    match alg {
        HmacAlgorithm::Sha1 => run::<Hmac<sha1::Sha1>>(key, parts),
        HmacAlgorithm::Sha256 => run::<Hmac<sha2::Sha256>>(key, parts),
        HmacAlgorithm::Sha512 => run::<Hmac<sha2::Sha512>>(key, parts),
    }
}

/// Whether the HMAC of `parts` under any of `keys` equals any of `candidates`.
///
/// Every key and every candidate is checked, each comparison in constant time, so
/// the time taken says nothing about which key or entry came close.
pub fn any_mac_matches(
    alg: HmacAlgorithm,
    keys: &[Key],
    parts: &[&[u8]],
    candidates: &[Vec<u8>],
) -> bool {
    let mut ok = false;
    for k in keys {
        let expected = mac(alg, k.bytes(), parts);
        for c in candidates {
            ok |= ct_eq(&expected, c);
        }
    }
    ok
}

/// Parses a Unix timestamp in seconds: 1 to 18 ASCII digits, nothing else (no sign,
/// no fraction, no spaces), so it can never overflow and never means two things.
pub fn parse_unix_seconds(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Whether `ts` is at most `tolerance` away from `now`, in either direction.
pub fn within_tolerance(ts: i64, now: i64, tolerance: Duration) -> bool {
    let tol = i128::from(tolerance.as_secs().min(i64::MAX as u64) as i64);
    (i128::from(now) - i128::from(ts)).abs() <= tol
}

/// Standard base64 that accepts the padding present or left off (some senders strip
/// it), and nothing else: other alphabets, whitespace and stray bits are errors.
pub const B64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes hexadecimal in either case; `None` on anything else.
pub fn decode_hex(s: &str) -> Option<Vec<u8>> {
    hex::decode(s).ok()
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    /// Builds a request for a verifier test.
    pub struct Req {
        pub method: Method,
        pub uri: Uri,
        pub headers: HeaderMap,
        pub body: Vec<u8>,
        pub now: i64,
    }

    impl Req {
        pub fn post(uri: &str, body: &[u8]) -> Self {
            Req {
                method: Method::POST,
                uri: uri.parse().unwrap(),
                headers: HeaderMap::new(),
                body: body.to_vec(),
                now: 1_700_000_000,
            }
        }
        pub fn get(uri: &str) -> Self {
            Req {
                method: Method::GET,
                ..Req::post(uri, b"")
            }
        }
        pub fn at(mut self, now: i64) -> Self {
            self.now = now;
            self
        }
        pub fn header(self, k: &str, v: &str) -> Self {
            self.header_bytes(k, v.as_bytes())
        }
        /// Any bytes a header value may hold (also obs-text, which is not UTF-8).
        pub fn header_bytes(mut self, k: &str, v: &[u8]) -> Self {
            self.headers.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_bytes(v).unwrap(),
            );
            self
        }
        pub fn view(&self) -> Request<'_> {
            Request {
                method: &self.method,
                uri: &self.uri,
                headers: &self.headers,
                body: &self.body,
                now: self.now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::select::Inbound;

    fn cfg(kind: VerifyKind) -> VerifyConfig {
        VerifyConfig {
            kind,
            secret: Some(Secret::new(match kind {
                VerifyKind::StandardWebhooks => "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                VerifyKind::Basic => "user:pass",
                _ => "s3cret",
            })),
            secrets: Vec::new(),
            url: None,
            tolerance: None,
            header: matches!(kind, VerifyKind::Hmac | VerifyKind::Header)
                .then(|| "x-signature".to_string()),
            algorithm: None,
            encoding: None,
            prefix: None,
            verify_token: None,
        }
    }

    /// Every verifier explains a request without its header as a missing header,
    /// and no explanation, whatever the request holds, shows the secret.
    #[test]
    fn explanations_name_the_missing_header_and_never_the_secret() {
        for kind in ALL {
            let v = build(&cfg(kind)).unwrap();
            let empty =
                testutil::Req::post("/in/s", b"{}").header("content-type", "application/json");
            let r = v.explain(&empty.view());
            assert_eq!(r.code, "missing_header", "{kind:?}: {r:?}");
            let mut full = testutil::Req::post("/in/s?x=s3cret", b"s3cret")
                .header("host", "example.com")
                .header("authorization", "Bearer s3cret-not");
            for h in [
                "x-telegram-bot-api-secret-token",
                "x-twilio-signature",
                "stripe-signature",
                "x-hub-signature-256",
                "x-slack-request-timestamp",
                "x-slack-signature",
                "x-shopify-hmac-sha256",
                "webhook-id",
                "webhook-timestamp",
                "webhook-signature",
                "x-signature",
            ] {
                full = full.header(h, "s3cret");
            }
            for req in [&empty, &full] {
                let r = v.explain(&req.view());
                assert!(!r.text.contains("s3cret"), "{kind:?}: {r:?}");
                assert!(!r.text.is_empty() && !r.code.is_empty());
            }
        }
    }

    const ALL: [VerifyKind; 12] = VerifyKind::ALL;

    #[test]
    fn every_type_builds_and_refuses_an_unsigned_request() {
        let r = testutil::Req::post("/in/x", br#"{"id":1}"#);
        for kind in ALL {
            let v = build(&cfg(kind)).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            assert_eq!(v.verify(&r.view()), Err(Rejected::UNAUTHORIZED), "{kind:?}");
            assert!(v.handshake(&r.view()).is_none(), "{kind:?}");
        }
        let mut none = cfg(VerifyKind::Github);
        none.secret = None;
        assert!(build(&none).is_err());
    }

    /// The presets the provider issue lists, checked on representative requests.
    #[test]
    fn presets_select_what_the_providers_send() {
        let key = |kind: VerifyKind, headers: &[(&str, &str)], body: &[u8]| {
            let mut h = HeaderMap::new();
            for (k, v) in headers {
                h.insert(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            let p = preset(kind);
            let i = Inbound::new(&h, None, body);
            (
                p.dedup.iter().find_map(|s| i.select_key(s)),
                p.event_type.iter().find_map(|s| i.select_key(s)),
            )
        };
        assert_eq!(
            key(VerifyKind::Telegram, &[], br#"{"update_id":10000}"#).0,
            Some("10000".into())
        );
        assert_eq!(
            key(
                VerifyKind::Stripe,
                &[],
                br#"{"id":"evt_1","type":"charge.succeeded"}"#
            ),
            (Some("evt_1".into()), Some("charge.succeeded".into()))
        );
        assert_eq!(
            key(
                VerifyKind::Github,
                &[("X-GitHub-Delivery", "d-1"), ("X-GitHub-Event", "push")],
                b"{}"
            ),
            (Some("d-1".into()), Some("push".into()))
        );
        assert_eq!(
            key(
                VerifyKind::Shopify,
                &[
                    ("X-Shopify-Webhook-Id", "w-1"),
                    ("X-Shopify-Topic", "orders/create")
                ],
                b"{}"
            ),
            (Some("w-1".into()), Some("orders/create".into()))
        );
        assert_eq!(
            key(
                VerifyKind::Slack,
                &[],
                br#"{"type":"event_callback","event_id":"Ev1","event":{"type":"message"}}"#
            ),
            (Some("Ev1".into()), Some("message".into()))
        );
        assert_eq!(
            key(
                VerifyKind::Slack,
                &[("Content-Type", "application/x-www-form-urlencoded")],
                b"command=%2Fdeploy&text=now"
            ),
            (None, Some("/deploy".into()))
        );
        assert_eq!(
            key(
                VerifyKind::StandardWebhooks,
                &[("webhook-id", "msg_1")],
                br#"{"type":"a.b"}"#
            ),
            (Some("msg_1".into()), Some("a.b".into()))
        );
        assert_eq!(
            key(VerifyKind::StandardWebhooks, &[("svix-id", "msg_2")], b"{}").0,
            Some("msg_2".into())
        );
        let form = [("Content-Type", "application/x-www-form-urlencoded")];
        assert_eq!(
            key(
                VerifyKind::Twilio,
                &[form[0], ("I-Twilio-Idempotency-Token", "tok")],
                b"MessageSid=SM1&MessageStatus=delivered"
            ),
            (Some("tok".into()), Some("delivered".into()))
        );
        assert_eq!(
            key(VerifyKind::Twilio, &form, b"MessageSid=SM1").0,
            Some("SM1".into())
        );
        assert_eq!(
            key(VerifyKind::Twilio, &form, b"CallSid=CA1&CallStatus=ringing"),
            (Some("CA1".into()), Some("ringing".into()))
        );
        let twiml = preset(VerifyKind::Twilio).response;
        assert_eq!(twiml.content_type.as_deref(), Some("text/xml"));
        assert_eq!(twiml.body.as_deref(), Some("<Response></Response>"));
    }

    #[test]
    fn timestamps_and_tolerance() {
        assert_eq!(parse_unix_seconds("1700000000"), Some(1_700_000_000));
        assert_eq!(parse_unix_seconds("0"), Some(0));
        for bad in [
            "",
            "-1",
            "+1",
            "1.5",
            " 1",
            "1 ",
            "1e9",
            "9999999999999999999",
            "١٢",
        ] {
            assert_eq!(parse_unix_seconds(bad), None, "{bad:?}");
        }
        let five = Duration::from_secs(300);
        assert!(within_tolerance(100, 400, five));
        assert!(within_tolerance(700, 400, five));
        assert!(!within_tolerance(99, 400, five));
        assert!(!within_tolerance(701, 400, five));
        assert!(!within_tolerance(i64::MAX, i64::MIN, Duration::MAX));
        assert!(within_tolerance(i64::MAX, i64::MAX, Duration::ZERO));
    }
}

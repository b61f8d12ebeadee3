//! The other side of each verifier: an example request of a provider, signed
//! with a source's own secret exactly as that provider signs (the console's
//! **Send test webhook**). The payloads are the provider fixtures of the test
//! suite, compiled in; each send varies the id the provider's dedup key reads,
//! so a repeat is not taken for a duplicate.
//!
//! Signing uses the verifiers' own primitives ([`super::mac`],
//! [`crate::signing::sign`], [`super::twilio::canonical_params`]), and the tests
//! below run every signed example through the real verifier of its kind.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::Value;

use super::{mac, twilio};
use crate::config::{HmacAlgorithm, SigEncoding, VerifyConfig, VerifyKind};

/// An example request, signed.
#[derive(Debug, Clone)]
pub struct Example {
    /// The request's Content-Type.
    pub content_type: &'static str,
    /// Headers, the signature's among them.
    pub headers: Vec<(String, String)>,
    /// The exact bytes that were signed.
    pub body: Vec<u8>,
    /// What it is, as people read it: the provider and its event (`github push`).
    pub what: String,
}

/// Why no example can be signed for a source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsignable {
    /// The source has no secret.
    #[error("this source has no secret to sign with")]
    NoSecret,
    /// The configured secret cannot be used (a standard-webhooks secret that does not decode).
    #[error("this source's secret is not in a form its provider signs with")]
    BadSecret,
}

/// Fixture of each kind: (file text, the id to vary: `body:/ptr` or `header:Name`).
fn fixture(kind: VerifyKind) -> (&'static str, &'static str) {
    use VerifyKind::*;
    match kind {
        Telegram => (
            include_str!("../../../tests/fixtures/telegram-message.json"),
            "body:/update_id",
        ),
        Twilio => (
            include_str!("../../../tests/fixtures/twilio-sms-received.json"),
            "header:I-Twilio-Idempotency-Token",
        ),
        Stripe => (
            include_str!("../../../tests/fixtures/stripe-payment_intent.succeeded.json"),
            "body:/id",
        ),
        Github => (
            include_str!("../../../tests/fixtures/github-push.json"),
            "header:X-GitHub-Delivery",
        ),
        Slack => (
            include_str!("../../../tests/fixtures/slack-event_callback-message.json"),
            "body:/event_id",
        ),
        Shopify => (
            include_str!("../../../tests/fixtures/shopify-orders-create.json"),
            "header:X-Shopify-Webhook-Id",
        ),
        Meta => (
            include_str!("../../../tests/fixtures/whatsapp-message-text.json"),
            "body:/entry/0/id",
        ),
        StandardWebhooks => (
            include_str!("../../../tests/fixtures/standardwebhooks-contact.created.json"),
            "header:webhook-id",
        ),
        Hmac | Basic | Bearer | Header => (GENERIC, "body:/id"),
    }
}

/// The payload of the generic schemes (hmac, basic, bearer, header).
const GENERIC: &str = r#"{"content_type":"application/json","headers":{},"body":{"type":"hookgate.test","id":"","data":{"message":"A test webhook sent from the hookgate console."}}}"#;

/// The example of `cfg`'s provider, signed with its first secret, for a POST
/// to `url` (the full URL the request is sent to, for Twilio when the source
/// has no public `url`). `unique` goes into the id the dedup key reads; `now`
/// is in seconds.
pub fn example(
    cfg: &VerifyConfig,
    url: &str,
    unique: &str,
    now: i64,
) -> Result<Example, Unsignable> {
    let secret = cfg.keys().into_iter().next().ok_or(Unsignable::NoSecret)?;
    let secret = secret.expose();
    let (text, vary) = fixture(cfg.kind);
    let f: Value = serde_json::from_str(text).expect("embedded fixtures are JSON");
    let mut headers: Vec<(String, String)> = f["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default();
    let content_type = if f["content_type"] == "application/x-www-form-urlencoded" {
        "application/x-www-form-urlencoded"
    } else {
        "application/json"
    };
    let mut body_value = f["body"].clone();
    if let Some(name) = vary.strip_prefix("header:") {
        set_header(&mut headers, name, unique);
    } else if let Some(slot) = vary
        .strip_prefix("body:")
        .and_then(|p| body_value.pointer_mut(p))
    {
        *slot = if slot.is_number() {
            Value::from(u32::from_str_radix(unique.get(..8).unwrap_or(unique), 16).unwrap_or(1))
        } else {
            Value::from(unique)
        };
    }
    let body = match &body_value {
        Value::String(form) => vary_form(form, unique),
        v => v.to_string().into_bytes(),
    };
    let signed = signature_headers(cfg, secret, url, unique, now, &body)?;
    for (k, v) in signed {
        set_header(&mut headers, &k, &v);
    }
    let what = match (f["provider"].as_str(), f["event"].as_str()) {
        (Some(p), Some(e)) => format!("{p} {e}"),
        _ => "hookgate.test".to_string(),
    };
    Ok(Example {
        content_type,
        headers,
        body,
        what,
    })
}

/// A form body with its `MessageSid` (Twilio's dedup fallback) made unique.
fn vary_form(form: &str, unique: &str) -> Vec<u8> {
    let pairs = form_urlencoded::parse(form.as_bytes()).map(|(k, v)| {
        let v = if k == "MessageSid" || k == "SmsSid" {
            format!("SM{unique}")
        } else {
            v.into_owned()
        };
        (k.into_owned(), v)
    });
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
        .into_bytes()
}

fn set_header(headers: &mut Vec<(String, String)>, name: &str, value: &str) {
    headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    headers.push((name.to_string(), value.to_string()));
}

fn hex_mac(alg: HmacAlgorithm, key: &str, parts: &[&[u8]]) -> String {
    hex::encode(mac(alg, key.as_bytes(), parts))
}

/// The headers that authenticate `body` under `secret`, as the provider sends them.
fn signature_headers(
    cfg: &VerifyConfig,
    secret: &str,
    url: &str,
    unique: &str,
    now: i64,
    body: &[u8],
) -> Result<Vec<(String, String)>, Unsignable> {
    use HmacAlgorithm::{Sha1, Sha256};
    let ts = now.to_string();
    let h = |k: &str, v: String| (k.to_string(), v);
    Ok(match cfg.kind {
        VerifyKind::Telegram => vec![h("X-Telegram-Bot-Api-Secret-Token", secret.into())],
        VerifyKind::Github | VerifyKind::Meta => {
            vec![h(
                "X-Hub-Signature-256",
                format!("sha256={}", hex_mac(Sha256, secret, &[body])),
            )]
        }
        VerifyKind::Stripe => {
            let sig = hex_mac(Sha256, secret, &[ts.as_bytes(), b".", body]);
            vec![h("Stripe-Signature", format!("t={ts},v1={sig}"))]
        }
        VerifyKind::Slack => {
            let sig = hex_mac(Sha256, secret, &[b"v0:", ts.as_bytes(), b":", body]);
            vec![
                h("X-Slack-Request-Timestamp", ts),
                h("X-Slack-Signature", format!("v0={sig}")),
            ]
        }
        VerifyKind::Shopify => {
            vec![h(
                "X-Shopify-Hmac-Sha256",
                B64.encode(mac(Sha256, secret.as_bytes(), &[body])),
            )]
        }
        VerifyKind::StandardWebhooks => {
            let key = crate::signing::decode_secret(secret).ok_or(Unsignable::BadSecret)?;
            let id = format!("msg_{unique}");
            let sig = crate::signing::sign(&key, &id, now, body);
            vec![
                h("webhook-id", id),
                h("webhook-timestamp", ts),
                h("webhook-signature", sig),
            ]
        }
        VerifyKind::Twilio => {
            let base = cfg.url.as_deref().unwrap_or(url);
            let params = twilio::parse_form(body).unwrap_or_default();
            let signed = mac(
                Sha1,
                secret.as_bytes(),
                &[base.as_bytes(), &twilio::canonical_params(params)],
            );
            vec![h("X-Twilio-Signature", B64.encode(signed))]
        }
        VerifyKind::Hmac => {
            let alg = cfg.algorithm.unwrap_or_default();
            let raw = mac(alg, secret.as_bytes(), &[body]);
            let sig = match cfg.encoding.unwrap_or_default() {
                SigEncoding::Hex => hex::encode(raw),
                SigEncoding::Base64 => B64.encode(raw),
            };
            let prefix = cfg.prefix.clone().unwrap_or_default();
            vec![h(
                cfg.header.as_deref().unwrap_or_default(),
                format!("{prefix}{sig}"),
            )]
        }
        VerifyKind::Basic => vec![h("Authorization", format!("Basic {}", B64.encode(secret)))],
        VerifyKind::Bearer => vec![h("Authorization", format!("Bearer {secret}"))],
        VerifyKind::Header => vec![h(cfg.header.as_deref().unwrap_or_default(), secret.into())],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    const ALL: [VerifyKind; 12] = VerifyKind::ALL;

    fn cfg(kind: VerifyKind, secret: &str) -> VerifyConfig {
        let mut c: VerifyConfig =
            serde_json::from_value(serde_json::json!({"type": kind.as_str()}))
                .expect("a bare verify table");
        c.secret = Some(Secret::new(secret));
        if matches!(kind, VerifyKind::Hmac | VerifyKind::Header) {
            c.header = Some("X-Signature".into());
        }
        if kind == VerifyKind::Hmac {
            c.algorithm = Some(HmacAlgorithm::Sha512);
            c.encoding = Some(SigEncoding::Base64);
            c.prefix = Some("sha512=".into());
        }
        c
    }

    fn verdict(c: &VerifyConfig, ex: &Example, now: i64) -> Result<(), super::super::Rejected> {
        let verifier = super::super::build(c).expect("verifier builds");
        let mut headers = http::HeaderMap::new();
        for (k, v) in &ex.headers {
            headers.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                http::HeaderValue::from_str(v).expect("header value"),
            );
        }
        headers.insert("host", http::HeaderValue::from_static("127.0.0.1:8080"));
        let uri: http::Uri = "/in/src".parse().expect("uri");
        let req = super::super::Request {
            method: &http::Method::POST,
            uri: &uri,
            headers: &headers,
            body: &ex.body,
            now,
        };
        verifier.verify(&req)
    }

    #[test]
    fn every_signed_example_passes_its_verifier_and_fails_another_secret() {
        let now = 1_767_000_000;
        for kind in ALL {
            let secret = if kind == VerifyKind::StandardWebhooks {
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
            } else if kind == VerifyKind::Basic {
                "user:pass"
            } else {
                "s3cret"
            };
            let other = if kind == VerifyKind::StandardWebhooks {
                "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
            } else {
                "other:secret"
            };
            let ex = example(
                &cfg(kind, secret),
                "http://127.0.0.1:8080/in/src",
                "0123abcd4567ef89",
                now,
            )
            .expect("signable");
            assert_eq!(verdict(&cfg(kind, secret), &ex, now), Ok(()), "{kind:?}");
            assert!(
                verdict(&cfg(kind, other), &ex, now).is_err(),
                "{kind:?} with another secret"
            );
        }
    }

    #[test]
    fn each_send_varies_the_dedup_id_and_no_secret_is_said_plainly() {
        let c = cfg(VerifyKind::Stripe, "s3cret");
        let a = example(&c, "http://h/in/s", "aaaa0000", 1).expect("signable");
        let b = example(&c, "http://h/in/s", "bbbb1111", 1).expect("signable");
        assert_ne!(a.body, b.body);
        let mut none = c.clone();
        none.secret = None;
        assert_eq!(
            example(&none, "http://h/in/s", "x", 1).unwrap_err(),
            Unsignable::NoSecret
        );
        let tg = example(
            &cfg(VerifyKind::Telegram, "t"),
            "http://h/in/s",
            "00000010",
            1,
        )
        .expect("signable");
        let v: Value = serde_json::from_slice(&tg.body).expect("json");
        assert_eq!(v["update_id"], 16);
    }
}

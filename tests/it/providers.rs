//! Providers against the real binary: each provider's fixture requests, signed
//! here over the exact bytes sent, are accepted and delivered; tampered copies get
//! 401 with an empty body; handshakes are answered and never delivered; duplicates
//! are delivered once; rate limits, allow-lists and trusted proxies hold.
//!
//! The signatures are computed in this file with the `hmac` crate directly, not
//! with the gateway's own code, so a mistake there cannot cancel out here.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;

use crate::harness::*;

const TG: &str = "tg-secret-token";
const TWILIO: &str = "twilio-auth-token";
const TWILIO_URL: &str = "https://hooks.example.com/twilio";
const STRIPE: &str = "whsec_stripe_test_secret";
const GITHUB: &str = "github-webhook-secret";
const SLACK: &str = "slack-signing-secret";
const SHOPIFY: &str = "shopify-client-secret";
const META: &str = "meta-app-secret";
const META_TOKEN: &str = "meta-verify-token";
const SW: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const RESPONDIO: &str = "respondio-signing-key";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = Hmac::<sha1::Sha1>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

/// Twilio's scheme: URL, then each form pair `namevalue` sorted by name and value.
pub(crate) fn twilio_signature(token: &str, url: &str, form: &[u8]) -> String {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(form).into_owned().collect();
    pairs.sort();
    let mut s = url.to_string();
    for (k, v) in pairs {
        s.push_str(&k);
        s.push_str(&v);
    }
    B64.encode(hmac_sha1(token.as_bytes(), &[s.as_bytes()]))
}

/// The gateway config: one source per provider, all routed to the receiver.
fn providers_config(rx: &Receiver, extra_sources: &str) -> String {
    format!(
        r#"
[[sources]]
name = "telegram"
verify = {{ type = "telegram", secret = "{TG}" }}

[[sources]]
name = "twilio"
verify = {{ type = "twilio", secret = "{TWILIO}", url = "{TWILIO_URL}" }}

[[sources]]
name = "twilio-host"
verify = {{ type = "twilio", secret = "{TWILIO}" }}

[[sources]]
name = "stripe"
verify = {{ type = "stripe", secrets = ["whsec_old_secret", "{STRIPE}"] }}

[[sources]]
name = "github"
verify = {{ type = "github", secret = "{GITHUB}" }}

[[sources]]
name = "slack"
verify = {{ type = "slack", secret = "{SLACK}" }}

[[sources]]
name = "shopify"
verify = {{ type = "shopify", secret = "{SHOPIFY}" }}

[[sources]]
name = "meta"
verify = {{ type = "meta", secret = "{META}", verify_token = "{META_TOKEN}" }}

[[sources]]
name = "standard-webhooks"
verify = {{ type = "standard-webhooks", secret = "{SW}" }}

[[sources]]
name = "respondio"
verify = {{ type = "hmac", secret = "{RESPONDIO}", header = "X-Webhook-Signature", algorithm = "sha256", encoding = "base64" }}
{extra_sources}

[[destinations]]
name = "rx"
url = "{}"
timeout = "5s"
retry = {{ schedule = ["0s", "200ms", "1s"] }}

[[routes]]
source = "telegram"
to = "rx"
[[routes]]
source = "twilio"
to = "rx"
[[routes]]
source = "twilio-host"
to = "rx"
[[routes]]
source = "stripe"
to = "rx"
[[routes]]
source = "github"
to = "rx"
[[routes]]
source = "slack"
to = "rx"
[[routes]]
source = "shopify"
to = "rx"
[[routes]]
source = "meta"
to = "rx"
[[routes]]
source = "standard-webhooks"
to = "rx"
[[routes]]
source = "respondio"
to = "rx"
"#,
        rx.url("/hook")
    )
}

/// One request built from a fixture, ready to sign.
#[derive(Clone)]
struct Prepared {
    source: &'static str,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
}

/// Reads a fixture: its body serialised once (these bytes are signed and sent),
/// its headers, and its Content-Type; refreshes timestamps to now.
fn prepare(name: &str) -> (Value, Prepared) {
    let f = fixture(name);
    let body = match &f["body"] {
        Value::String(s) => s.clone().into_bytes(),
        v => serde_json::to_vec(v).unwrap(),
    };
    let mut headers: Vec<(String, String)> = f["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    for (k, v) in headers.iter_mut() {
        if k.eq_ignore_ascii_case("x-slack-request-timestamp")
            || k.eq_ignore_ascii_case("webhook-timestamp")
        {
            *v = now().to_string();
        }
    }
    headers.push((
        "Content-Type".into(),
        f["content_type"].as_str().unwrap().into(),
    ));
    let source = match f["provider"].as_str().unwrap() {
        "telegram" => "telegram",
        "twilio" => "twilio",
        "stripe" => "stripe",
        "github" => "github",
        "slack" => "slack",
        "shopify" => "shopify",
        "meta-whatsapp" => "meta",
        "standard-webhooks" => "standard-webhooks",
        "respond.io" => "respondio",
        other => panic!("no source for provider {other}"),
    };
    (
        f,
        Prepared {
            source,
            body,
            headers,
        },
    )
}

fn header<'a>(p: &'a Prepared, name: &str) -> Option<&'a str> {
    p.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The signature headers each provider would send for `p.body`.
fn sign(p: &Prepared, gw: &Gateway) -> Vec<(String, String)> {
    let b = &p.body[..];
    let t = now().to_string();
    match p.source {
        "telegram" => vec![("X-Telegram-Bot-Api-Secret-Token".into(), TG.into())],
        "twilio" => vec![(
            "X-Twilio-Signature".into(),
            twilio_signature(TWILIO, TWILIO_URL, b),
        )],
        "twilio-host" => {
            let url = format!("http://{}/in/twilio-host", gw.ingest);
            vec![(
                "X-Twilio-Signature".into(),
                twilio_signature(TWILIO, &url, b),
            )]
        }
        "stripe" => {
            let sig = hex::encode(hmac_sha256(STRIPE.as_bytes(), &[t.as_bytes(), b".", b]));
            vec![("Stripe-Signature".into(), format!("t={t},v1={sig}"))]
        }
        "github" => vec![(
            "X-Hub-Signature-256".into(),
            format!(
                "sha256={}",
                hex::encode(hmac_sha256(GITHUB.as_bytes(), &[b]))
            ),
        )],
        "meta" => vec![(
            "X-Hub-Signature-256".into(),
            format!("sha256={}", hex::encode(hmac_sha256(META.as_bytes(), &[b]))),
        )],
        "slack" => {
            let ts = header(p, "x-slack-request-timestamp").unwrap();
            let sig = hmac_sha256(SLACK.as_bytes(), &[b"v0:", ts.as_bytes(), b":", b]);
            vec![(
                "X-Slack-Signature".into(),
                format!("v0={}", hex::encode(sig)),
            )]
        }
        "shopify" => vec![(
            "X-Shopify-Hmac-Sha256".into(),
            B64.encode(hmac_sha256(SHOPIFY.as_bytes(), &[b])),
        )],
        "standard-webhooks" => {
            let key = B64.decode(SW.trim_start_matches("whsec_")).unwrap();
            let id = header(p, "webhook-id").unwrap();
            let ts = header(p, "webhook-timestamp").unwrap();
            let sig = hmac_sha256(&key, &[id.as_bytes(), b".", ts.as_bytes(), b".", b]);
            vec![(
                "webhook-signature".into(),
                format!("v1,{}", B64.encode(sig)),
            )]
        }
        "respondio" => vec![(
            "X-Webhook-Signature".into(),
            B64.encode(hmac_sha256(RESPONDIO.as_bytes(), &[b])),
        )],
        other => panic!("no signer for {other}"),
    }
}

async fn send(
    gw: &Gateway,
    p: &Prepared,
    body: &[u8],
    extra: &[(String, String)],
) -> reqwest::Response {
    let mut r = client().post(gw.ingest_url(p.source));
    for (k, v) in p.headers.iter().chain(extra) {
        r = r.header(k, v);
    }
    r.body(body.to_vec()).send().await.unwrap()
}

/// The dedup key each provider's preset takes, worked out from the fixture.
fn expected_dedup_key(f: &Value, p: &Prepared) -> Option<String> {
    let b = &f["body"];
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        v => Some(v.to_string()),
    };
    match p.source {
        "telegram" => text(&b["update_id"]),
        "stripe" => text(&b["id"]),
        "github" => header(p, "x-github-delivery").map(str::to_string),
        "shopify" => header(p, "x-shopify-webhook-id").map(str::to_string),
        "slack" => b.get("event_id").and_then(text),
        "standard-webhooks" => header(p, "webhook-id").map(str::to_string),
        "twilio" => header(p, "i-twilio-idempotency-token").map(str::to_string),
        _ => None,
    }
}

/// The event type each provider's preset takes, worked out from the fixture.
fn expected_event_type(f: &Value, p: &Prepared) -> Option<String> {
    let b = &f["body"];
    let s = |v: &Value| v.as_str().map(str::to_string);
    match p.source {
        "github" => header(p, "x-github-event").map(str::to_string),
        "stripe" | "standard-webhooks" => s(&b["type"]),
        "shopify" => header(p, "x-shopify-topic").map(str::to_string),
        "slack" if b.is_object() => s(&b["event"]["type"]).or_else(|| s(&b["type"])),
        "slack" => form_urlencoded::parse(b.as_str().unwrap().as_bytes())
            .find(|(k, _)| k == "command")
            .map(|(_, v)| v.into_owned()),
        "meta" => s(&b["object"]),
        "twilio" => form_urlencoded::parse(b.as_str().unwrap().as_bytes())
            .find(|(k, _)| k == "MessageStatus" || k == "CallStatus")
            .map(|(_, v)| v.into_owned()),
        _ => None,
    }
}

const FIXTURES: &[&str] = &[
    "telegram-message.json",
    "telegram-callback_query.json",
    "telegram-message-photo.json",
    "twilio-sms-received.json",
    "twilio-status-callback.json",
    "twilio-whatsapp-media.json",
    "stripe-payment_intent.succeeded.json",
    "stripe-checkout.session.completed.json",
    "github-issues-opened.json",
    "github-pull_request-opened.json",
    "github-push.json",
    "github-push-new-branch.json",
    "slack-event_callback-message.json",
    "slack-slash_command.json",
    "shopify-orders-create.json",
    "whatsapp-message-text.json",
    "whatsapp-message-status.json",
    "standardwebhooks-contact.created.json",
    "respondio-message.received.json",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_provider_fixture_is_accepted_signed_and_refused_tampered() {
    let rx = Receiver::start().await;
    let gw = Gateway::binary(&providers_config(&rx, "")).await;
    // What should arrive: message id -> (source, body, event type).
    let mut expected: HashMap<String, (String, Vec<u8>, Option<String>)> = HashMap::new();
    let mut first_of_key: HashMap<(String, String), String> = HashMap::new();

    for name in FIXTURES {
        let (f, p) = prepare(name);
        let sig = sign(&p, &gw);

        // Tampered body (one byte changed), same signature: 401, empty body.
        // Telegram's secret token does not cover the body, so there is nothing to
        // detect there.
        if p.source != "telegram" {
            let mut tampered = p.body.clone();
            let mid = tampered.len() / 2;
            tampered[mid] ^= 0x01;
            let r = send(&gw, &p, &tampered, &sig).await;
            assert_eq!(r.status(), 401, "{name}: tampered body");
            assert!(!r.headers().contains_key("hookgate-message-id"));
            assert!(
                r.bytes().await.unwrap().is_empty(),
                "{name}: 401 says nothing"
            );
        }

        // No signature at all: 401.
        let r = send(&gw, &p, &p.body, &[]).await;
        assert_eq!(r.status(), 401, "{name}: unsigned");

        // Signed with the wrong secret (the signature header mangled): 401.
        let wrong: Vec<(String, String)> = sig
            .iter()
            .map(|(k, v)| {
                let mut v = v.clone().into_bytes();
                // A digit is a different value in hex and in base64 alike.
                let last = v.len() - 2;
                v[last] = if v[last] == b'0' { b'1' } else { b'0' };
                (k.clone(), String::from_utf8(v).unwrap())
            })
            .collect();
        let r = send(&gw, &p, &p.body, &wrong).await;
        assert_eq!(r.status(), 401, "{name}: wrong signature");

        // Signed as the provider signs: accepted.
        let r = send(&gw, &p, &p.body, &sig).await;
        assert_eq!(r.status(), 200, "{name}: signed");
        let id = message_id(&r);
        let answer = r.text().await.unwrap();
        if p.source == "twilio" {
            assert_eq!(answer, "<Response></Response>");
        }
        match expected_dedup_key(&f, &p) {
            // Some fixtures share an id (both Stripe events, the GitHub deliveries,
            // the Twilio token, Telegram's update 10000): the preset dedups them.
            Some(k) if first_of_key.contains_key(&(p.source.into(), k.clone())) => {
                assert_eq!(
                    first_of_key[&(p.source.into(), k)],
                    id,
                    "{name}: a duplicate gets the first id"
                );
            }
            key => {
                if let Some(k) = key {
                    first_of_key.insert((p.source.into(), k), id.clone());
                }
                expected.insert(
                    id,
                    (p.source.into(), p.body.clone(), expected_event_type(&f, &p)),
                );
            }
        }
    }

    let got = rx.wait_for(expected.len(), Duration::from_secs(20)).await;
    for r in &got {
        let id = r.header("webhook-id").unwrap();
        let (source, body, event_type) = expected
            .get(id)
            .unwrap_or_else(|| panic!("unexpected delivery {id}"));
        assert_eq!(r.header("hookgate-source"), Some(source.as_str()));
        assert_eq!(&r.body[..], &body[..], "{source}: body byte-exact");
        assert_eq!(
            r.header("hookgate-event-type"),
            event_type.as_deref(),
            "{source}: event type"
        );
        // Telegram's token is a credential: it is not passed on.
        assert!(r.header("x-telegram-bot-api-secret-token").is_none());
    }
    // Every source's share: nothing more arrives (the admin API is the store's word).
    let mut per_source: HashMap<&str, usize> = HashMap::new();
    for (s, _, _) in expected.values() {
        *per_source.entry(s.as_str()).or_default() += 1;
    }
    for (source, n) in per_source {
        let (st, v) = gw
            .api_get(&format!("/api/v1/messages?source={source}&limit=100"))
            .await;
        assert_eq!(st, 200);
        assert_eq!(v["data"].as_array().unwrap().len(), n, "{source}");
    }
    gw.nothing_pending().await;
    assert_eq!(rx.count(), expected.len(), "each message delivered once");

    // No secret ever reaches the log.
    let log = gw.log();
    for s in [
        TG, TWILIO, STRIPE, GITHUB, SLACK, SHOPIFY, META, META_TOKEN, SW, RESPONDIO,
    ] {
        assert!(!log.contains(s), "a secret is in the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_and_future_timestamps_are_refused() {
    let rx = Receiver::start().await;
    let gw = Gateway::start(&providers_config(&rx, "")).await;
    for name in [
        "stripe-payment_intent.succeeded.json",
        "slack-event_callback-message.json",
        "standardwebhooks-contact.created.json",
    ] {
        for skew in [-400i64, 400] {
            let (_, mut p) = prepare(name);
            let t = (now() + skew).to_string();
            for (k, v) in p.headers.iter_mut() {
                if k.eq_ignore_ascii_case("x-slack-request-timestamp")
                    || k.eq_ignore_ascii_case("webhook-timestamp")
                {
                    *v = t.clone();
                }
            }
            let sig = if p.source == "stripe" {
                let s = hex::encode(hmac_sha256(
                    STRIPE.as_bytes(),
                    &[t.as_bytes(), b".", &p.body],
                ));
                vec![("Stripe-Signature".to_string(), format!("t={t},v1={s}"))]
            } else {
                sign(&p, &gw)
            };
            let r = send(&gw, &p, &p.body, &sig).await;
            assert_eq!(r.status(), 401, "{name} {skew:+}s");
        }
    }
    gw.nothing_pending().await;
    assert_eq!(rx.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twilio_answers_twiml_and_signs_the_public_url() {
    let rx = Receiver::start().await;
    let gw = Gateway::start(&providers_config(&rx, "")).await;
    let (_, p) = prepare("twilio-status-callback.json");

    // Behind a proxy: the configured public URL, plus the request's own query.
    let q = "?attempt=1";
    let url = format!("{TWILIO_URL}{q}");
    let sig = twilio_signature(TWILIO, &url, &p.body);
    let r = client()
        .post(format!("{}{q}", gw.ingest_url("twilio")))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", &sig)
        .body(p.body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/xml");
    assert!(r.headers().contains_key("hookgate-message-id"));
    assert_eq!(r.text().await.unwrap(), "<Response></Response>");
    // The same signature without the query it covered: 401.
    let r = client()
        .post(gw.ingest_url("twilio"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", &sig)
        .body(p.body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.bytes().await.unwrap().is_empty());

    // No `url`: the URL is rebuilt from Host, path and query (with the port, as sent).
    let mut host = p.clone();
    host.source = "twilio-host";
    host.headers
        .retain(|(k, _)| !k.eq_ignore_ascii_case("i-twilio-idempotency-token"));
    let r = send(&gw, &host, &host.body, &sign(&host, &gw)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "<Response></Response>");
    // Signed for another host: refused.
    let other = twilio_signature(
        TWILIO,
        "http://elsewhere.example/in/twilio-host",
        &host.body,
    );
    let r = send(
        &gw,
        &host,
        &host.body,
        &[("X-Twilio-Signature".into(), other)],
    )
    .await;
    assert_eq!(r.status(), 401);

    // WhatsApp through Twilio, JSON-free: repeated keys signed sorted.
    let body = b"MessageSid=SM1&MediaUrl0=https%3A%2F%2Fx%2Fb&MediaUrl0=https%3A%2F%2Fx%2Fa&From=whatsapp%3A%2B1";
    let r = client()
        .post(gw.ingest_url("twilio"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header(
            "X-Twilio-Signature",
            twilio_signature(TWILIO, TWILIO_URL, body),
        )
        .body(&body[..])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let got = rx.wait_for(3, Duration::from_secs(10)).await;
    assert!(got
        .iter()
        .all(|r| r.header("content-type") == Some("application/x-www-form-urlencoded")));
    gw.nothing_pending().await;
    assert_eq!(rx.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slack_url_verification_is_answered_and_never_delivered() {
    let rx = Receiver::start().await;
    let gw = Gateway::start(&providers_config(&rx, "")).await;
    let (f, p) = prepare("slack-url_verification.json");
    let challenge = f["body"]["challenge"].as_str().unwrap();

    // Unsigned or tampered: 401, no challenge echoed.
    let r = send(&gw, &p, &p.body, &[]).await;
    assert_eq!(r.status(), 401);
    assert!(r.bytes().await.unwrap().is_empty());
    let sig = sign(&p, &gw);
    let mut tampered = p.body.clone();
    tampered.push(b' ');
    let r = send(&gw, &p, &tampered, &sig).await;
    assert_eq!(r.status(), 401);

    // Signed: the challenge comes back, and there is no message.
    let r = send(&gw, &p, &p.body, &sig).await;
    assert_eq!(r.status(), 200);
    assert!(!r.headers().contains_key("hookgate-message-id"));
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(r.text().await.unwrap(), challenge);

    // An ordinary event after it is the only thing delivered.
    let (_, ev) = prepare("slack-event_callback-message.json");
    let r = send(&gw, &ev, &ev.body, &sign(&ev, &gw)).await;
    assert_eq!(r.status(), 200);
    let id = message_id(&r);
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].header("webhook-id"), Some(id.as_str()));
    let (_, v) = gw.api_get("/api/v1/messages?source=slack").await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1, "{v}");
    gw.nothing_pending().await;
    assert_eq!(rx.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn meta_get_challenge_is_answered_and_never_delivered() {
    let rx = Receiver::start().await;
    let gw = Gateway::start(&providers_config(&rx, "")).await;
    let c = client();
    let url = |token: &str| {
        format!(
            "{}?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token={token}",
            gw.ingest_url("meta")
        )
    };
    let r = c.get(url(META_TOKEN)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(!r.headers().contains_key("hookgate-message-id"));
    assert_eq!(r.text().await.unwrap(), "1158201444");
    let r = c.get(url("wrong-token")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = c.get(url("")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    // A GET that is no handshake is an unsigned request.
    let r = c.get(gw.ingest_url("meta")).send().await.unwrap();
    assert_eq!(r.status(), 401);

    let (_, p) = prepare("whatsapp-message-text.json");
    let r = send(&gw, &p, &p.body, &sign(&p, &gw)).await;
    assert_eq!(r.status(), 200);
    let id = message_id(&r);
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].header("webhook-id"), Some(id.as_str()));
    assert_eq!(&got[0].body[..], &p.body[..]);
    gw.nothing_pending().await;
    assert_eq!(rx.count(), 1, "the handshakes were not delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicates_get_the_first_id_and_answer_and_are_delivered_once() {
    let rx = Receiver::start().await;
    let gw = Gateway::start(&providers_config(&rx, "")).await;

    // Sequential: Twilio retries a webhook with the same idempotency token.
    let (_, tw) = prepare("twilio-sms-received.json");
    let sig = sign(&tw, &gw);
    let a = send(&gw, &tw, &tw.body, &sig).await;
    let b = send(&gw, &tw, &tw.body, &sig).await;
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    assert_eq!(message_id(&a), message_id(&b));
    let mut ids = vec![message_id(&a)];
    assert_eq!(a.headers()["content-type"], b.headers()["content-type"]);
    assert_eq!(a.text().await.unwrap(), b.text().await.unwrap());

    // Concurrent: 20 copies of one Stripe event at the same moment, and 20 of one
    // GitHub delivery.
    for name in ["stripe-payment_intent.succeeded.json", "github-push.json"] {
        let (_, p) = prepare(name);
        let sig = sign(&p, &gw);
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(20));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (p, sig, barrier) = (p.clone(), sig.clone(), barrier.clone());
            let url = gw.ingest_url(p.source);
            tasks.push(tokio::spawn(async move {
                let mut r = client().post(url);
                for (k, v) in p.headers.iter().chain(&sig) {
                    r = r.header(k, v);
                }
                barrier.wait().await;
                let r = r.body(p.body.clone()).send().await.unwrap();
                assert_eq!(r.status(), 200);
                message_id(&r)
            }));
        }
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap());
        }
        got.dedup();
        assert_eq!(got.len(), 1, "{name}: every copy gets one id: {got:?}");
        ids.push(got.remove(0));
    }

    let got = rx.wait_for(3, Duration::from_secs(10)).await;
    let mut delivered: Vec<String> = got
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_string())
        .collect();
    delivered.sort();
    for source in ["twilio", "stripe", "github"] {
        let (_, v) = gw
            .api_get(&format!("/api/v1/messages?source={source}"))
            .await;
        assert_eq!(v["data"].as_array().unwrap().len(), 1, "{source}: {v}");
    }
    gw.nothing_pending().await;
    assert_eq!(rx.count(), 3, "one delivery per distinct message");
    for id in &ids {
        assert!(delivered.contains(id), "{id} delivered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limit_answers_429_with_retry_after() {
    let rx = Receiver::start().await;
    let extra = r#"
[[sources]]
name = "limited"
verify = { type = "bearer", secret = "lim-token" }
rate_limit = { per_second = 1, burst = 3 }
"#;
    let cfg = providers_config(&rx, extra) + "[[routes]]\nsource = \"limited\"\nto = \"rx\"\n";
    let gw = Gateway::start(&cfg).await;
    let c = client();
    let post = |i: usize| {
        c.post(gw.ingest_url("limited"))
            .bearer_auth("lim-token")
            .body(format!("{{\"n\":{i}}}"))
            .send()
    };
    let mut ok = 0;
    let mut limited = None;
    for i in 0..6 {
        let r = post(i).await.unwrap();
        match r.status().as_u16() {
            200 => ok += 1,
            429 => limited = Some(r),
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!(ok, 3, "the burst passes, then the limit holds");
    let r = limited.expect("a 429");
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert!(!r.headers().contains_key("hookgate-message-id"));
    // That a request passes again after Retry-After, and the refill rate, are
    // checked on a moved clock in ingest::source's unit tests.
    // Other sources are not limited by it.
    let (_, p) = prepare("telegram-message.json");
    for _ in 0..5 {
        let r = send(&gw, &p, &p.body, &sign(&p, &gw)).await;
        assert_eq!(r.status(), 200);
    }
    rx.wait_for(4, Duration::from_secs(10)).await;
    gw.nothing_pending().await;
    assert_eq!(
        rx.count(),
        4,
        "3 limited messages + 1 telegram (deduplicated)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn allow_ips_refuse_with_403_and_trusted_proxies_make_forwarded_for_count() {
    let rx = Receiver::start().await;
    let extra = r#"
[[sources]]
name = "office"
verify = { type = "bearer", secret = "office-token" }
allow_ips = ["203.0.113.0/24"]

[[sources]]
name = "local"
verify = { type = "bearer", secret = "office-token" }
allow_ips = ["127.0.0.0/8", "::1/128"]
"#;
    let cfg = providers_config(&rx, extra)
        + "[[routes]]\nsource = \"office\"\nto = \"rx\"\n[[routes]]\nsource = \"local\"\nto = \"rx\"\n";

    // The gateway's peer (127.0.0.1) is a trusted proxy here.
    let gw = Gateway::start_opts(&cfg, "trusted_proxies = [\"127.0.0.1/32\"]", &[]).await;
    let c = client();
    let post = |source: &'static str, xff: Option<&'static str>, token: &'static str| {
        let mut r = c.post(gw.ingest_url(source)).bearer_auth(token).body("{}");
        if let Some(x) = xff {
            r = r.header("X-Forwarded-For", x);
        }
        r.send()
    };
    let r = post("office", None, "office-token").await.unwrap();
    assert_eq!(r.status(), 403, "the proxy itself is not in the list");
    assert!(r.bytes().await.unwrap().is_empty());
    assert_eq!(
        post("office", Some("203.0.113.7"), "office-token")
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        post("office", Some("198.51.100.1"), "office-token")
            .await
            .unwrap()
            .status(),
        403
    );
    // The right-most untrusted entry counts; what the client wrote before it does not.
    assert_eq!(
        post(
            "office",
            Some("198.51.100.1, 203.0.113.7, 127.0.0.1"),
            "office-token"
        )
        .await
        .unwrap()
        .status(),
        200
    );
    assert_eq!(
        post("office", Some("203.0.113.7, 198.51.100.1"), "office-token")
            .await
            .unwrap()
            .status(),
        403
    );
    // allow_ips is checked before verification: a stranger learns nothing more.
    assert_eq!(
        post("office", Some("198.51.100.1"), "bad")
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        post("office", Some("203.0.113.7"), "bad")
            .await
            .unwrap()
            .status(),
        401
    );
    let accepted = 2;
    rx.wait_for(accepted, Duration::from_secs(10)).await;
    drop(gw);

    // Without trusted proxies, X-Forwarded-For is not believed.
    let gw = Gateway::start(&cfg).await;
    let c = client();
    let r = c
        .post(gw.ingest_url("office"))
        .bearer_auth("office-token")
        .header("X-Forwarded-For", "203.0.113.7")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .post(gw.ingest_url("local"))
        .bearer_auth("office-token")
        .header("X-Forwarded-For", "198.51.100.1")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the real peer is loopback");
    rx.wait_for(accepted + 1, Duration::from_secs(10)).await;
    gw.nothing_pending().await;
    assert_eq!(
        rx.count(),
        accepted + 1,
        "refused requests are never delivered"
    );
}

/// The fenced blocks of one language in a Markdown document.
fn fenced_blocks<'a>(text: &'a str, lang: &str) -> Vec<&'a str> {
    let fence = format!("```{lang}\n");
    text.split(fence.as_str())
        .skip(1)
        .map(|block| block.split("```").next().unwrap())
        .collect()
}

/// Reads a document of the repository.
fn repo_doc(rel: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Environment values for the `${VAR}` references of the documented configs.
fn doc_env(name: &str) -> Option<String> {
    Some(if name.contains("WHSEC") {
        SW.to_string()
    } else {
        format!("value-of-{name}")
    })
}

/// Every TOML block of the documentation (README and docs/) is a config the
/// gateway accepts.
#[test]
fn every_documented_config_is_valid() {
    let mut docs = vec!["README.md".to_string()];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".md") {
            docs.push(format!("docs/{name}"));
        }
    }
    let mut blocks = 0;
    for doc in &docs {
        let text = repo_doc(doc);
        for (i, toml) in fenced_blocks(&text, "toml").into_iter().enumerate() {
            if let Err(e) = hookgate::config::parse(toml, doc, &doc_env) {
                panic!("TOML block {i} of {doc}:\n{toml}\n{e:?}");
            }
            blocks += 1;
        }
    }
    assert!(blocks >= 12, "{blocks} blocks in {docs:?}");
}

/// The provider guide has a config example for every verifier type.
#[test]
fn the_provider_docs_configs_are_valid() {
    let text = repo_doc("docs/providers.md");
    let env = doc_env;
    let mut blocks = 0;
    let mut types = String::new();
    for (i, toml) in fenced_blocks(&text, "toml").into_iter().enumerate() {
        if let Err(e) = hookgate::config::parse(toml, "docs/providers.md", &env) {
            panic!("block {i} of docs/providers.md:\n{toml}\n{e:?}");
        }
        blocks += 1;
        types.push_str(toml);
    }
    assert!(blocks >= 10, "{blocks} blocks");
    for kind in [
        "telegram",
        "twilio",
        "stripe",
        "github",
        "slack",
        "shopify",
        "meta",
        "standard-webhooks",
        "svix",
        "hmac",
        "basic",
        "bearer",
        "header",
    ] {
        assert!(
            types.contains(&format!("type = \"{kind}\"")),
            "no example for {kind}"
        );
    }
}

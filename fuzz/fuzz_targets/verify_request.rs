//! Whole requests through every verifier: the input is split at NUL bytes into a
//! value put in every header a verifier reads, a query string, and the body.
//! No verifier may panic, and an arbitrary request must not pass the ones whose
//! secret it cannot know. A refused request's explanation (what the rejected-
//! requests log keeps) never panics and never holds the secret.
#![no_main]

use hookgate::config::{Secret, VerifyConfig, VerifyKind};
use hookgate::ingest::verify::{build, Request};
use libfuzzer_sys::fuzz_target;

const KINDS: [VerifyKind; 12] = VerifyKind::ALL;

const HEADERS: [&str; 16] = [
    "x-telegram-bot-api-secret-token",
    "x-twilio-signature",
    "x-twilio-webhooks-signature-settings",
    "stripe-signature",
    "x-hub-signature-256",
    "x-slack-signature",
    "x-slack-request-timestamp",
    "x-shopify-hmac-sha256",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-signature",
    "x-signature",
    "authorization",
    "host",
    "content-type",
];

fn secret(kind: VerifyKind) -> &'static str {
    match kind {
        VerifyKind::StandardWebhooks => "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        VerifyKind::Basic => "user:a-long-random-password",
        _ => "a-long-random-secret-nobody-guesses",
    }
}

fn config(kind: VerifyKind) -> VerifyConfig {
    let secret = secret(kind);
    VerifyConfig {
        kind,
        secret: Some(Secret::new(secret)),
        secrets: Vec::new(),
        url: None,
        tolerance: None,
        header: matches!(kind, VerifyKind::Hmac | VerifyKind::Header).then(|| "x-signature".into()),
        algorithm: None,
        encoding: None,
        prefix: None,
        verify_token: Some(Secret::new("verify-token")).filter(|_| kind == VerifyKind::Meta),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 0);
    let value = parts.next().unwrap_or_default();
    let query = parts
        .next()
        .and_then(|q| std::str::from_utf8(q).ok())
        .unwrap_or("");
    let body = parts.next().unwrap_or_default();
    let Ok(value) = http::HeaderValue::from_bytes(value) else {
        return;
    };
    let mut headers = http::HeaderMap::new();
    for h in HEADERS {
        headers.insert(h, value.clone());
    }
    let Ok(uri) = format!("/in/fuzz?{query}").parse::<http::Uri>() else {
        return;
    };
    let _ = hookgate::ingest::rejects::mask_query(query);
    for method in [http::Method::POST, http::Method::GET] {
        let req = Request {
            method: &method,
            uri: &uri,
            headers: &headers,
            body,
            now: 1_700_000_000,
        };
        for kind in KINDS {
            let v = build(&config(kind)).expect("the fuzz configs are valid");
            let _ = v.handshake(&req);
            let ok = v.verify(&req).is_ok();
            if !ok {
                let why = v.explain(&req);
                assert!(!why.code.is_empty() && !why.text.is_empty());
                // The fuzzer may put the secret in the request itself; only
                // then may it come back (as a URL the request carried).
                let given = String::from_utf8_lossy(data);
                assert!(given.contains(secret(kind)) || !why.text.contains(secret(kind)));
            }
            // An HMAC cannot be forged without the secret (the token schemes are
            // left out: a fuzzer may in principle guess a token byte by byte).
            if !matches!(
                kind,
                VerifyKind::Telegram | VerifyKind::Basic | VerifyKind::Bearer | VerifyKind::Header
            ) {
                assert!(!ok, "{kind:?} accepted an unsigned request");
            }
        }
    }
});

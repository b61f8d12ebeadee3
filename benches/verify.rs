//! Micro-benchmarks of request verification: every verifier type this build
//! has (a type whose module has not landed is skipped with a note), each on a
//! correctly signed 1 KiB JSON body, plus the HMAC primitive and Standard
//! Webhooks signing on their own.
//!
//! Run with `cargo bench --bench verify`.

use std::hint::black_box;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use sha1::Sha1;
use sha2::Sha256;

use hookgate::config::VerifyConfig;
use hookgate::ingest::verify::{self, Request};

const SECRET: &str = "bench-secret-0123456789abcdef";
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NOW: i64 = 1_700_000_000;
const TWILIO_URL: &str = "https://example.com/in/twilio";

fn body_1k() -> Vec<u8> {
    let (b, _) = hookgate::bench::load::body_template(1024).expect("1 KiB fits");
    b
}

fn hmac256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

/// A signed request for a verifier type: its `verify` table, headers, URI and body.
struct Case {
    kind: &'static str,
    table: String,
    uri: Uri,
    headers: HeaderMap,
    body: Vec<u8>,
}

fn case(kind: &'static str) -> Case {
    let json = body_1k();
    let ts = NOW.to_string();
    let mut h: Vec<(&str, String)> = Vec::new();
    let mut uri = "/in/bench".to_string();
    let mut body = json.clone();
    let table = match kind {
        "telegram" => {
            h.push(("x-telegram-bot-api-secret-token", SECRET.into()));
            format!(
                r#"type = "telegram"
secret = "{SECRET}""#
            )
        }
        "bearer" => {
            h.push(("authorization", format!("Bearer {SECRET}")));
            format!(
                r#"type = "bearer"
secret = "{SECRET}""#
            )
        }
        "basic" => {
            h.push((
                "authorization",
                format!("Basic {}", B64.encode(format!("user:{SECRET}"))),
            ));
            format!(
                r#"type = "basic"
secret = "user:{SECRET}""#
            )
        }
        "header" => {
            h.push(("x-api-key", SECRET.into()));
            format!(
                r#"type = "header"
header = "X-Api-Key"
secret = "{SECRET}""#
            )
        }
        "hmac" => {
            h.push((
                "x-signature",
                hex::encode(hmac256(SECRET.as_bytes(), &[&json])),
            ));
            format!(
                r#"type = "hmac"
header = "X-Signature"
secret = "{SECRET}"
algorithm = "sha256"
encoding = "hex""#
            )
        }
        "github" | "meta" => {
            let sig = format!(
                "sha256={}",
                hex::encode(hmac256(SECRET.as_bytes(), &[&json]))
            );
            h.push(("x-hub-signature-256", sig));
            format!(
                r#"type = "{kind}"
secret = "{SECRET}""#
            )
        }
        "shopify" => {
            h.push((
                "x-shopify-hmac-sha256",
                B64.encode(hmac256(SECRET.as_bytes(), &[&json])),
            ));
            format!(
                r#"type = "shopify"
secret = "{SECRET}""#
            )
        }
        "stripe" => {
            let sig = hex::encode(hmac256(SECRET.as_bytes(), &[ts.as_bytes(), b".", &json]));
            h.push(("stripe-signature", format!("t={ts},v1={sig}")));
            format!(
                r#"type = "stripe"
secret = "{SECRET}""#
            )
        }
        "slack" => {
            let sig = hex::encode(hmac256(
                SECRET.as_bytes(),
                &[b"v0:", ts.as_bytes(), b":", &json],
            ));
            h.push(("x-slack-signature", format!("v0={sig}")));
            h.push(("x-slack-request-timestamp", ts.clone()));
            format!(
                r#"type = "slack"
secret = "{SECRET}""#
            )
        }
        "standard-webhooks" => {
            let key = hookgate::signing::decode_secret(WHSEC).unwrap();
            let id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
            h.push(("webhook-id", id.into()));
            h.push(("webhook-timestamp", ts.clone()));
            h.push((
                "webhook-signature",
                hookgate::signing::sign(&key, id, NOW, &json),
            ));
            format!(
                r#"type = "standard-webhooks"
secret = "{WHSEC}""#
            )
        }
        "twilio" => {
            // A form body: the signature covers the URL and the sorted parameters.
            body = b"AccountSid=ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX&Body=Hello+there&From=%2B15005550006&MessageSid=SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX&To=%2B15005550001".to_vec();
            let mut params: Vec<(String, String)> = form_urlencoded::parse(&body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            params.sort();
            let mut data = TWILIO_URL.to_string();
            for (k, v) in &params {
                data.push_str(k);
                data.push_str(v);
            }
            let mut m = Hmac::<Sha1>::new_from_slice(SECRET.as_bytes()).unwrap();
            m.update(data.as_bytes());
            h.push(("x-twilio-signature", B64.encode(m.finalize().into_bytes())));
            h.push(("content-type", "application/x-www-form-urlencoded".into()));
            uri = "/in/twilio".into();
            format!(
                r#"type = "twilio"
secret = "{SECRET}"
url = "{TWILIO_URL}""#
            )
        }
        other => unreachable!("no case for {other}"),
    };
    let mut headers = HeaderMap::new();
    for (k, v) in h {
        headers.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(&v).unwrap(),
        );
    }
    Case {
        kind,
        table,
        uri: uri.parse().unwrap(),
        headers,
        body,
    }
}

fn verifiers(c: &mut Criterion) {
    let mut g = c.benchmark_group("verify");
    let method = Method::POST;
    for kind in [
        "telegram",
        "bearer",
        "basic",
        "header",
        "hmac",
        "github",
        "meta",
        "shopify",
        "stripe",
        "slack",
        "standard-webhooks",
        "twilio",
    ] {
        let case = case(kind);
        let cfg: VerifyConfig = toml::from_str(&case.table).expect("the verify table parses");
        let v = match verify::build(&cfg) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("verify/{kind}: skipped ({e})");
                continue;
            }
        };
        let req = Request {
            method: &method,
            uri: &case.uri,
            headers: &case.headers,
            body: &case.body,
            now: NOW,
        };
        if v.verify(&req).is_err() {
            // Benchmarking the rejection path would mislead: say so instead.
            eprintln!(
                "verify/{}: skipped (the bench's signature was refused)",
                case.kind
            );
            continue;
        }
        g.throughput(Throughput::Bytes(case.body.len() as u64));
        g.bench_function(case.kind, |b| {
            b.iter(|| black_box(v.verify(black_box(&req))))
        });
    }
    g.finish();
}

fn primitives(c: &mut Criterion) {
    let body = body_1k();
    let mut g = c.benchmark_group("primitive");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("hmac-sha256/1KiB", |b| {
        b.iter(|| black_box(hmac256(SECRET.as_bytes(), &[black_box(&body)])))
    });
    let key = hookgate::signing::decode_secret(WHSEC).unwrap();
    let id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
    g.bench_function("standard-webhooks-sign/1KiB", |b| {
        b.iter(|| black_box(hookgate::signing::sign(&key, id, NOW, black_box(&body))))
    });
    let sig = hookgate::signing::sign(&key, id, NOW, &body);
    g.bench_function("standard-webhooks-verify/1KiB", |b| {
        b.iter(|| {
            black_box(hookgate::signing::verify(
                &key,
                id,
                NOW,
                black_box(&body),
                &sig,
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, verifiers, primitives);
criterion_main!(benches);

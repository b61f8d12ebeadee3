//! Rejected requests over real HTTP: requests refused by ingest (a Twilio
//! signature over the wrong URL, a stale and a missing Stripe signature, a
//! disallowed address, a body over `max_body`, an unknown source) are found
//! through `GET /api/v1/rejected` and on the console's **Rejected** page with
//! their reasons in words, and never with a secret; hostile input is shown escaped.

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::Value;

use crate::console::{Browser, READ_TOKEN};
use crate::harness::{client, fixture, Gateway};
use crate::providers::{hmac_sha256, twilio_signature};

const TWILIO_TOKEN: &str = "rejected-twilio-auth-token";
const TWILIO_URL: &str = "https://hooks.example.com/twilio";
const STRIPE_SECRET: &str = "whsec_rejected_stripe_secret";

async fn gateway() -> Gateway {
    let body = format!(
        r#"
[[sources]]
name = "tw"
verify = {{ type = "twilio", secret = "{TWILIO_TOKEN}", url = "{TWILIO_URL}" }}

[[sources]]
name = "stripe"
verify = {{ type = "stripe", secret = "{STRIPE_SECRET}" }}

[[sources]]
name = "fenced"
allow_ips = ["10.9.9.0/24"]

[[sources]]
name = "limited"
rate_limit = {{ per_second = 1, burst = 1 }}
"#
    );
    Gateway::start_opts(
        &body,
        &format!("max_body = \"4KiB\"\nadmin_read_tokens = [\"{READ_TOKEN}\"]\n"),
        &[],
    )
    .await
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn twilio_form() -> String {
    fixture("twilio-sms-received.json")["body"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn post(
    gw: &Gateway,
    source: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> StatusCode {
    let mut r = client().post(gw.ingest_url(source)).body(body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap().status()
}

async fn rejected(gw: &Gateway, query: &str) -> Vec<Value> {
    let (st, v) = gw.api_get(&format!("/api/v1/rejected{query}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["data"].as_array().unwrap().clone()
}

/// The reason of the newest entry whose code is `code`.
fn reason<'a>(items: &'a [Value], code: &str) -> &'a Value {
    items
        .iter()
        .find(|r| r["code"] == code)
        .unwrap_or_else(|| panic!("no {code} in {items:#?}"))
}

const FORM: &str = "application/x-www-form-urlencoded";

#[tokio::test]
async fn refusals_are_listed_with_plain_reasons_and_no_secret() {
    let gw = gateway().await;
    let form = twilio_form();
    let wrong = twilio_signature(
        TWILIO_TOKEN,
        "https://wrong.example.com/in/tw",
        form.as_bytes(),
    );
    let sig_headers = [
        ("content-type", FORM),
        ("x-twilio-signature", wrong.as_str()),
    ];
    assert_eq!(post(&gw, "tw", &sig_headers, form.clone()).await, 401);
    let right = twilio_signature(TWILIO_TOKEN, TWILIO_URL, form.as_bytes());
    let ok_headers = [
        ("content-type", FORM),
        ("x-twilio-signature", right.as_str()),
    ];
    assert_eq!(post(&gw, "tw", &ok_headers, form.clone()).await, 200);

    let body = br#"{"id":"evt_1","type":"x"}"#;
    let t = (now() - 1000).to_string();
    let stripe_sig = hex::encode(hmac_sha256(
        STRIPE_SECRET.as_bytes(),
        &[t.as_bytes(), b".", body],
    ));
    let stale = format!("t={t},v1={stripe_sig}");
    assert_eq!(
        post(&gw, "stripe", &[("stripe-signature", &stale)], &body[..]).await,
        401
    );
    assert_eq!(post(&gw, "stripe", &[], &body[..]).await, 401);
    assert_eq!(post(&gw, "fenced", &[], "x").await, 403);
    assert_eq!(post(&gw, "tw", &ok_headers, vec![b'a'; 10_000]).await, 413);
    assert_eq!(post(&gw, "nope", &[], "x").await, 404);

    let all = rejected(&gw, "").await;
    assert_eq!(all.len(), 6, "the accepted request is not listed: {all:#?}");
    assert_eq!(all[0]["status"], 404, "newest first");
    let tw = reason(&all, "signature_mismatch");
    assert_eq!(tw["source"], "tw");
    assert_eq!(tw["status"], 401);
    let text = tw["reason"].as_str().unwrap();
    assert!(
        text.contains(&format!("computed over the URL {TWILIO_URL}")),
        "{text}"
    );
    assert!(text.contains("`url`"), "{text}");
    assert!(tw["body"].as_str().unwrap().starts_with("MessageSid="));
    let stale_reason = reason(&all, "stale_timestamp")["reason"].as_str().unwrap();
    assert!(
        stale_reason.contains("s old, more than the 300 s tolerance"),
        "{stale_reason}"
    );
    let missing = reason(&all, "missing_header")["reason"].as_str().unwrap();
    assert!(
        missing.contains("no `Stripe-Signature` header"),
        "{missing}"
    );
    let ip = reason(&all, "forbidden_ip")["reason"].as_str().unwrap();
    assert!(
        ip.contains("address 127.0.0.1") && ip.contains("`allow_ips`"),
        "{ip}"
    );
    let large = reason(&all, "too_large")["reason"].as_str().unwrap();
    assert!(
        large.contains("10000 bytes") && large.contains("4096 bytes"),
        "{large}"
    );
    assert!(reason(&all, "unknown_source")["reason"]
        .as_str()
        .unwrap()
        .contains("`nope`"));

    let json = serde_json::to_string(&all).unwrap();
    for secret in [
        TWILIO_TOKEN,
        STRIPE_SECRET,
        wrong.as_str(),
        right.as_str(),
        stripe_sig.as_str(),
    ] {
        assert!(!json.contains(secret), "{secret} shown");
    }
    assert!(json.contains("(masked)"));

    let stripe_only = rejected(&gw, "?source=stripe&limit=1").await;
    assert_eq!(stripe_only.len(), 1);
    assert_eq!(
        stripe_only[0]["code"], "missing_header",
        "the newest of stripe"
    );
    let (st, _) = gw.api_get("/api/v1/rejected?limit=0").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // The page, for a read-only session.
    let mut b = Browser::new(&gw);
    assert_eq!(b.login(READ_TOKEN).await, StatusCode::SEE_OTHER);
    let page = b.page("/rejected").await;
    assert!(page.contains(">Rejected</a>"), "the nav link");
    assert!(page.contains(&format!("computed over the URL {TWILIO_URL}")));
    assert!(page.contains("300 s tolerance"));
    assert!(page.contains("401 Unauthorized") && page.contains("413 Payload Too Large"));
    for secret in [
        TWILIO_TOKEN,
        STRIPE_SECRET,
        wrong.as_str(),
        stripe_sig.as_str(),
    ] {
        assert!(!page.contains(secret), "{secret} on the page");
    }
    let filtered = b.page("/rejected?source=fenced").await;
    assert!(filtered.contains("address 127.0.0.1"));
    assert!(!filtered.contains("300 s tolerance"));
}

#[tokio::test]
async fn hostile_requests_are_bounded_and_escaped() {
    let gw = gateway().await;
    let mut req = client()
        .post(gw.ingest_url("stripe") + "/x?token=hunter2&a=1")
        .header("x-note", "<script>alert(1)</script>");
    for i in 0..80 {
        req = req.header(format!("x-filler-{i}"), "v".repeat(500));
    }
    let mut body = b"<script>alert(2)</script>".to_vec();
    body.extend((0u8..=255).cycle().take(3000));
    let st = req.body(body).send().await.unwrap().status();
    assert_eq!(st, 401);

    let items = rejected(&gw, "?source=stripe").await;
    let r = &items[0];
    assert_eq!(r["path"], "/in/stripe/x?token=(masked)&a=1");
    let headers = r["headers"].as_array().unwrap();
    let kept: usize = headers
        .iter()
        .map(|h| h["name"].as_str().unwrap().len() + h["value"].as_str().unwrap().len())
        .sum();
    assert!(kept <= 8 * 1024, "{kept} bytes of headers kept");
    let omitted = r["headers_omitted"].as_u64().unwrap();
    assert!(omitted > 0, "the rest are counted");
    assert!(
        headers.len() as u64 + omitted >= 81,
        "80 fillers and x-note at least"
    );
    assert_eq!(r["body_len"], 3025);
    let shown = r["body"].as_str().unwrap();
    assert!(shown.len() <= 2048 + 3, "cut at 2 KiB");
    assert!(!serde_json::to_string(r).unwrap().contains("hunter2"));

    let mut b = Browser::new(&gw);
    assert_eq!(
        b.login(crate::harness::ADMIN_TOKEN).await,
        StatusCode::SEE_OTHER
    );
    let page = b.page("/rejected").await;
    assert!(!page.contains("<script>alert"), "escaped");
    assert!(page.contains("&lt;script&gt;alert(1)"));
    assert!(page.contains("&lt;script&gt;alert(2)"));
    assert!(page.contains("more headers"));
    assert!(!page.contains("hunter2"));
}

#[tokio::test]
async fn a_rate_limited_request_says_when_to_come_back() {
    let gw = gateway().await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(post(&gw, "limited", &[], "x").await);
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    let items = rejected(&gw, "?source=limited").await;
    let r = reason(&items, "rate_limited");
    assert_eq!(r["status"], 429);
    let text = r["reason"].as_str().unwrap();
    assert!(
        text.contains("`rate_limit`") && text.contains("retry in"),
        "{text}"
    );
    assert!(r["body"].is_null(), "a refused body is not read");
}

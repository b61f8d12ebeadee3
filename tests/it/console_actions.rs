//! The console's actions over real HTTP: creating, editing, deleting run-time
//! destinations (with the API's validation and SSRF rules), **Rotate secret**,
//! **Send test event**, **Send test webhook** through the real ingest listener,
//! and the failed-login limit. Each is checked for the read-only role, a
//! missing CSRF token and hostile input.

use std::time::Duration;

use reqwest::header::{LOCATION, RETRY_AFTER};
use reqwest::StatusCode;
use serde_json::json;

use crate::console::{Browser, READ_TOKEN};
use crate::harness::{client, eventually, Gateway, Receiver, ADMIN_TOKEN};

const SITE: &str = "same-origin";

/// Sources of every kind that can be signed (name, the rest of the table),
/// one without a secret, and one whose allowed addresses exclude loopback.
const SOURCES: &[(&str, &str)] = &[
    (
        "gh",
        r#"verify = { type = "github", secret = "gh-secret" }"#,
    ),
    (
        "sw",
        r#"verify = { type = "standard-webhooks", secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }"#,
    ),
    ("open", ""),
    (
        "stripe",
        r#"verify = { type = "stripe", secret = "whsec_stripe" }"#,
    ),
    (
        "slack",
        r#"verify = { type = "slack", secret = "slack-secret" }"#,
    ),
    (
        "shopify",
        r#"verify = { type = "shopify", secret = "shopify-secret" }"#,
    ),
    (
        "telegram",
        r#"verify = { type = "telegram", secret = "tg-secret" }"#,
    ),
    (
        "twilio",
        r#"verify = { type = "twilio", secret = "twilio-token" }"#,
    ),
    (
        "twilio-public",
        r#"verify = { type = "twilio", secret = "twilio-token", url = "https://hooks.example.com/in/twilio-public" }"#,
    ),
    (
        "meta",
        r#"verify = { type = "meta", secret = "meta-secret" }"#,
    ),
    (
        "generic",
        r#"verify = { type = "hmac", secret = "h", header = "X-Sig", algorithm = "sha1", prefix = "sha1=" }"#,
    ),
    (
        "fenced",
        "verify = { type = \"bearer\", secret = \"b\" }\nallow_ips = [\"10.9.9.0/24\"]",
    ),
];

/// `SOURCES`, destination `app` at the receiver, and routes from `gh` and `sw` to it.
fn config(rx: &Receiver) -> String {
    let mut text: String = SOURCES
        .iter()
        .map(|(name, rest)| format!("[[sources]]\nname = \"{name}\"\n{rest}\n\n"))
        .collect();
    text.push_str(&format!(
        "[[destinations]]\nname = \"app\"\nurl = \"{}\"\n\n",
        rx.url("/hook")
    ));
    for source in ["gh", "sw"] {
        text.push_str(&format!(
            "[[routes]]\nsource = \"{source}\"\nto = \"app\"\n\n"
        ));
    }
    text
}

async fn gateway(rx: &Receiver, private_ok: bool) -> Gateway {
    let extra = format!(
        "admin_read_tokens = [\"{READ_TOKEN}\"]\nallow_private_destinations = {private_ok}\n"
    );
    Gateway::binary_opts(&config(rx), &extra, &[]).await
}

async fn logged_in(g: &Gateway, token: &str) -> Browser {
    let mut b = Browser::new(g);
    assert_eq!(b.login(token).await, StatusCode::SEE_OTHER);
    b
}

/// The `whsec_…` value shown on a page, if any.
fn secret_on(html: &str) -> Option<String> {
    let i = html.find("whsec_")?;
    let rest = &html[i..];
    Some(rest[..rest.find('"')?].to_string())
}

/// What the API says about creating `body` (status, first problem message).
async fn api_problem(g: &Gateway, body: serde_json::Value) -> (StatusCode, String) {
    let (st, v) = g.api_post("/api/v1/destinations", body).await;
    (
        st,
        v["error"]["details"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[tokio::test]
async fn destinations_are_created_edited_rotated_tested_and_deleted() {
    let rx = Receiver::start().await;
    let g = gateway(&rx, true).await;
    let b = logged_in(&g, ADMIN_TOKEN).await;
    let csrf = csrf_of(&b, "/destinations/new").await;
    let url = rx.url("/rt");

    // A bad URL: the API's own message next to the field, the typed values kept.
    let html = expect(
        &b,
        "/destinations/new",
        &[
            ("csrf", &csrf),
            ("name", "rt"),
            ("url", "ftp://example.com/x"),
            ("timeout", "7s"),
        ],
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let (api_status, api_message) = api_problem(
        &g,
        json!({"name": "rt", "url": "ftp://example.com/x", "timeout": "7s"}),
    )
    .await;
    assert_eq!(api_status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!api_message.is_empty());
    assert!(
        html.contains(&maud::html! { (api_message) }.into_string()),
        "the API's message on the page: {api_message}\n{html}"
    );
    assert!(
        html.contains("id=\"url-error\""),
        "the problem is next to its field"
    );
    assert!(
        html.contains("value=\"ftp://example.com/x\"") && html.contains("value=\"7s\""),
        "values kept"
    );

    // Missing CSRF token: refused, nothing made.
    expect(
        &b,
        "/destinations/new",
        &[("name", "rt"), ("url", url.as_str())],
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_eq!(
        g.api_get("/api/v1/destinations/rt").await.0,
        StatusCode::NOT_FOUND
    );

    // Created: the secret shown once.
    let r = expect(
        &b,
        "/destinations/new",
        &[
            ("csrf", &csrf),
            ("name", "rt"),
            ("url", url.as_str()),
            ("event_types", "order.*, hookgate.test"),
        ],
        StatusCode::OK,
    )
    .await;
    let first = secret_on(&r).expect("the new secret is shown");
    let (st, v) = g.api_get("/api/v1/destinations/rt").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["origin"], "api");
    assert_eq!(v["event_types"], json!(["order.*", "hookgate.test"]));
    let list = b.page("/destinations").await;
    assert!(list.contains("/destinations/rt/rotate") && !list.contains("/destinations/app/rotate"));
    assert!(secret_on(&list).is_none(), "never shown again");

    // The same name again, and a malformed number on edit: refused, kept.
    let r = expect(
        &b,
        "/destinations/new",
        &[("csrf", &csrf), ("name", "rt"), ("url", url.as_str())],
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(r.contains("exists"));
    let r = expect(
        &b,
        "/destinations/rt/edit",
        &[
            ("csrf", &csrf),
            ("url", url.as_str()),
            ("max_in_flight", "lots"),
        ],
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(r.contains("value=\"lots\""));
    expect(
        &b,
        "/destinations/rt/edit",
        &[
            ("csrf", &csrf),
            ("url", url.as_str()),
            ("max_in_flight", "3"),
            ("event_types", "hookgate.test"),
        ],
        StatusCode::SEE_OTHER,
    )
    .await;
    assert_eq!(
        g.api_get("/api/v1/destinations/rt").await.1["max_in_flight"],
        3
    );

    let edit = b.page("/destinations/rt/edit").await;
    assert!(
        edit.contains(&format!("value=\"{url}\"")) && edit.contains("value=\"3\""),
        "the form shows the current values"
    );
    assert_eq!(
        b.post("/destinations/nope/test", &[("csrf", &csrf)], SITE)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    // Config-file destinations are read-only.
    assert_eq!(
        b.get("/destinations/app/edit").await.status(),
        StatusCode::CONFLICT
    );
    expect(
        &b,
        "/destinations/app/delete",
        &[("csrf", &csrf)],
        StatusCode::CONFLICT,
    )
    .await;
    expect(
        &b,
        "/destinations/app/rotate",
        &[("csrf", &csrf)],
        StatusCode::CONFLICT,
    )
    .await;

    // Rotate: a confirmation, then a new secret once; test events are signed with it.
    let confirm = b.page("/destinations/rt/rotate").await;
    assert!(confirm.contains(">Rotate secret</button>"));
    let r = expect(
        &b,
        "/destinations/rt/rotate",
        &[("csrf", &csrf)],
        StatusCode::OK,
    )
    .await;
    let second = secret_on(&r).expect("the rotated secret is shown");
    assert_ne!(first, second);
    assert!(secret_on(&b.page("/destinations").await).is_none());

    let r = b
        .post("/destinations/rt/test", &[("csrf", &csrf)], SITE)
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = r.headers()[LOCATION].to_str().unwrap().to_string();
    assert!(to.starts_with("/messages/msg_"), "{to}");
    let page = b.page(&to).await;
    assert!(page.contains("hookgate.test"));
    let got = rx.wait_for(1, Duration::from_secs(20)).await;
    let req = got
        .iter()
        .find(|r| r.path == "/rt")
        .expect("the test event reached rt");
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body["type"], "hookgate.test");
    let key = hookgate::signing::decode_secret(&second).unwrap();
    let h = |n: &str| req.headers[n].to_str().unwrap().to_string();
    assert!(hookgate::signing::verify(
        &key,
        &h("webhook-id"),
        h("webhook-timestamp").parse().unwrap(),
        &req.body,
        &h("webhook-signature")
    ));

    // Delete, after a confirmation.
    assert!(b
        .page("/destinations/rt/delete")
        .await
        .contains(">Delete</button>"));
    expect(
        &b,
        "/destinations/rt/delete",
        &[("csrf", &csrf)],
        StatusCode::SEE_OTHER,
    )
    .await;
    assert_eq!(
        g.api_get("/api/v1/destinations/rt").await.0,
        StatusCode::NOT_FOUND
    );

    // The log tells what was done, never a secret.
    let log = g.log();
    for line in [
        "destination created",
        "signing secret rotated",
        "test event sent",
        "destination deleted",
    ] {
        assert!(log.contains(line), "logged: {line}");
    }
    assert!(
        !log.contains(&first) && !log.contains(&second),
        "no secret in the log"
    );
}

async fn csrf_of(b: &Browser, path: &str) -> String {
    crate::console::csrf_field(&b.page(path).await)
}

#[tokio::test]
async fn hostile_input_private_addresses_and_the_read_only_role_are_refused() {
    let rx = Receiver::start().await;
    let g = gateway(&rx, false).await;
    let b = logged_in(&g, ADMIN_TOKEN).await;
    let csrf = csrf_of(&b, "/destinations/new").await;
    for url in [
        "http://127.0.0.1:9/x",
        "http://10.1.2.3/hook",
        "http://[::1]/x",
        "http://169.254.169.254/latest",
    ] {
        let html = expect(
            &b,
            "/destinations/new",
            &[("csrf", &csrf), ("name", "evil"), ("url", url)],
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        let (st, msg) = api_problem(&g, json!({"name": "evil", "url": url})).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{url}");
        assert!(
            html.contains(&maud::html! { (msg) }.into_string()),
            "{url}: the API's words: {msg}"
        );
    }
    assert_eq!(
        g.api_get("/api/v1/destinations/evil").await.0,
        StatusCode::NOT_FOUND
    );

    // Markup in a field comes back escaped.
    let r = expect(
        &b,
        "/destinations/new",
        &[
            ("csrf", &csrf),
            ("name", "<script>x</script>"),
            ("url", "javascript:alert(1)"),
        ],
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(!r.contains("<script>x"));

    // Oversized and malformed forms: refused without a panic.
    let big = "a".repeat(3 * 1024 * 1024);
    let r = b
        .post(
            "/destinations/new",
            &[("csrf", &csrf), ("name", &big)],
            SITE,
        )
        .await;
    assert!(r.status().is_client_error(), "{}", r.status());
    // The body was not read to its end: the connection ends with this answer,
    // and the answer says so (a client must not send its next request on it).
    assert_eq!(r.headers().get("connection").unwrap(), "close");
    let r = reqwest::Client::new()
        .post(g.admin_url("/destinations/new"))
        .header("sec-fetch-site", SITE)
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "cookie",
            format!("hookgate_session={}", b.cookie.clone().unwrap()),
        )
        .body(&b"%zz&&==%ff\xff\x00csrf"[..])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // On a new connection: the server may close the one the refused requests
    // came on, and a pooled connection it closed fails the next request sent
    // on it at the client, whatever the server does.
    assert!(
        client()
            .get(g.admin_url("/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            .is_success(),
        "still serving"
    );

    // Another origin: refused.
    let r = b
        .post("/sources/gh/test", &[("csrf", &csrf)], "cross-site")
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // The read-only role: every action refused.
    let ro = logged_in(&g, READ_TOKEN).await;
    let ro_csrf = csrf_of(&ro, "/destinations").await;
    for path in [
        "/destinations/new",
        "/destinations/app/test",
        "/destinations/app/rotate",
        "/destinations/app/delete",
        "/destinations/app/edit",
        "/sources/gh/test",
    ] {
        expect(
            &ro,
            path,
            &[
                ("csrf", &ro_csrf),
                ("name", "x"),
                ("url", "https://example.com/"),
            ],
            StatusCode::FORBIDDEN,
        )
        .await;
    }
    let (_, v) = g.api_get("/api/v1/messages").await;
    assert_eq!(
        v["data"].as_array().map(Vec::len),
        Some(0),
        "nothing was sent"
    );
}

#[tokio::test]
async fn send_test_webhook_goes_through_verification_and_storage() {
    let rx = Receiver::start().await;
    let g = gateway(&rx, false).await;
    let b = logged_in(&g, ADMIN_TOKEN).await;
    let sources = b.page("/sources").await;
    assert!(sources.contains(">Send test webhook</button>"));
    let csrf = crate::console::csrf_field(&sources);

    let mut ids = Vec::new();
    for source in ["gh", "gh", "sw"] {
        let html = expect(
            &b,
            &format!("/sources/{source}/test"),
            &[("csrf", &csrf)],
            StatusCode::OK,
        )
        .await;
        assert!(
            html.contains("Accepted: ingest answered 200"),
            "{source}: {html}"
        );
        let i = html
            .find("href=\"/messages/msg_")
            .expect("a link to the message")
            + "href=\"/messages/".len();
        let id = html[i..i + html[i..].find('"').unwrap()].to_string();
        assert!(!html.contains("gh-secret"), "the secret is not shown");
        let what = if source == "gh" {
            "github push"
        } else {
            "standard-webhooks contact.created"
        };
        assert!(html.contains(what), "{source}: says what was sent");
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1], "a repeat is not swallowed as a duplicate");
    for id in &ids {
        let v = g.settled(id).await;
        assert_eq!(v["deliveries"][0]["status"], "delivered", "{id}");
        assert!(b
            .page(&format!("/messages/{id}"))
            .await
            .contains(id.as_str()));
    }
    let got = rx.received();
    assert!(got
        .iter()
        .any(|r| r.headers.get("x-github-event").is_some_and(|v| v == "push")));
    let messages = b.page("/messages").await;
    assert!(
        ids.iter().all(|id| messages.contains(id.as_str())),
        "they arrive in Messages"
    );

    // No secret: said plainly, nothing sent. An address not allowed: the reason shown.
    let r = expect(
        &b,
        "/sources/open/test",
        &[("csrf", &csrf)],
        StatusCode::CONFLICT,
    )
    .await;
    assert!(r.contains("no secret to sign"));
    for source in [
        "stripe",
        "slack",
        "shopify",
        "telegram",
        "twilio",
        "twilio-public",
        "meta",
        "generic",
    ] {
        for _ in 0..2 {
            let html = expect(
                &b,
                &format!("/sources/{source}/test"),
                &[("csrf", &csrf)],
                StatusCode::OK,
            )
            .await;
            assert!(
                html.contains("Accepted: ingest answered 200"),
                "{source}: {html}"
            );
            assert!(html.contains("Stored as message"), "{source}");
        }
    }
    let text = b.get("/metrics").await.text().await.unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("hookgate_ingest_requests_total")
                && l.contains("source=\"stripe\"")
                && l.contains("outcome=\"stored\"")
        })
        .expect("stripe's stored counter");
    assert!(
        line.ends_with(" 2"),
        "both sends stored, none a duplicate: {line}"
    );
    let r = expect(
        &b,
        "/sources/fenced/test",
        &[("csrf", &csrf)],
        StatusCode::OK,
    )
    .await;
    assert!(r.contains("Refused: ingest answered 403"));
    assert_eq!(
        b.post("/sources/nope/test", &[("csrf", &csrf)], SITE)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    eventually(Duration::from_secs(5), "the log line", || async {
        g.log().contains("console: test webhook sent").then_some(())
    })
    .await;
    assert!(!g.log().contains("gh-secret"));
}

#[tokio::test]
async fn failed_logins_are_limited_per_address() {
    let rx = Receiver::start().await;
    let g = gateway(&rx, false).await;
    let mut b = Browser::new(&g);
    for i in 0..5 {
        assert_eq!(
            b.login("wrong-token").await,
            StatusCode::UNAUTHORIZED,
            "attempt {i}"
        );
    }
    // Past the limit even the right token is not looked at.
    let mut again = Browser::new(&g);
    assert_eq!(
        again.login(ADMIN_TOKEN).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert!(again.cookie.is_none(), "no session");
    let r = b.get("/login").await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the form itself is still served"
    );
    let c = Browser::new(&g);
    let r = c.login_response("wrong-token").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers()[RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    assert!(r.text().await.unwrap().contains("Too many wrong tokens"));
    let metrics = b.get("/metrics").await.text().await.unwrap();
    for (reason, n) in [("wrong_token", 5), ("limited", 2)] {
        let line = format!("hookgate_console_login_refused_total{{reason=\"{reason}\"}} {n}");
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    let log = g.log();
    assert!(
        log.contains("console login refused") && !log.contains("wrong-token"),
        "logged without the token"
    );
}

/// Posts a console form from its own pages and checks the status; the page.
async fn expect(b: &Browser, path: &str, form: &[(&str, &str)], want: StatusCode) -> String {
    let r = b.post(path, form, SITE).await;
    assert_eq!(r.status(), want, "POST {path} {form:?}");
    r.text().await.unwrap()
}

//! The web console over real HTTP: the real `hookgate` binary on 127.0.0.1,
//! driven like a browser would (cookies, forms, `Sec-Fetch-Site`), checking
//! login, roles, CSRF, session bounds, security headers and escaping. The
//! browser tests in `tests/console/*.py` drive the same pages in Chromium.

use std::time::Duration;

use crate::harness::{eventually, Gateway, Receiver, ADMIN_TOKEN};
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use reqwest::StatusCode;

pub(crate) const READ_TOKEN: &str = "test-read-token";

async fn gateway(receiver: &Receiver) -> Gateway {
    Gateway::start_opts(
        &format!(
            "[[sources]]\nname = \"hooks\"\n\n[[destinations]]\nname = \"app\"\nurl = \"{}\"\n\n[[routes]]\nsource = \"hooks\"\nto = \"app\"\n",
            receiver.url("/hook")
        ),
        &format!("admin_read_tokens = [\"{READ_TOKEN}\"]\n"),
        &[],
    )
    .await
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The value of a `Set-Cookie` named `name`, and the whole header.
fn set_cookie(h: &HeaderMap, name: &str) -> Option<(String, String)> {
    h.get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| {
            let value = v[name.len() + 1..].split(';').next().unwrap().to_string();
            (value, v.to_string())
        })
}

/// The value of the first hidden `csrf` field of a page.
pub(crate) fn csrf_field(html: &str) -> String {
    let i = html
        .find("name=\"csrf\" value=\"")
        .expect("a csrf field on the page");
    let rest = &html[i + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// A browser-like session on the console.
pub(crate) struct Browser {
    base: String,
    http: reqwest::Client,
    pub(crate) cookie: Option<String>,
}

impl Browser {
    pub(crate) fn new(g: &Gateway) -> Self {
        Browser {
            base: g.admin_url(""),
            http: client(),
            cookie: None,
        }
    }

    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        let mut r = self.http.get(format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            r = r.header("cookie", format!("hookgate_session={c}"));
        }
        r.send().await.unwrap()
    }

    pub(crate) async fn page(&self, path: &str) -> String {
        let r = self.get(path).await;
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        r.text().await.unwrap()
    }

    pub(crate) async fn post(
        &self,
        path: &str,
        form: &[(&str, &str)],
        site: &str,
    ) -> reqwest::Response {
        let mut r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("sec-fetch-site", site)
            .form(form);
        if let Some(c) = &self.cookie {
            r = r.header("cookie", format!("hookgate_session={c}"));
        }
        r.send().await.unwrap()
    }

    /// Posts the login form with `token`; the answer as it came.
    pub(crate) async fn login_response(&self, token: &str) -> reqwest::Response {
        let r = self.get("/login").await;
        assert_eq!(r.status(), StatusCode::OK);
        let (login_cookie, _) = set_cookie(r.headers(), "hookgate_login").unwrap();
        let html = r.text().await.unwrap();
        let csrf = csrf_field(&html);
        assert_eq!(csrf, login_cookie, "double-submit token");
        self.http
            .post(format!("{}/login", self.base))
            .header("sec-fetch-site", "same-origin")
            .header("cookie", format!("hookgate_login={login_cookie}"))
            .form(&[("csrf", csrf.as_str()), ("token", token), ("next", "/")])
            .send()
            .await
            .unwrap()
    }

    /// Logs in; returns the answer's status (303 on success).
    pub(crate) async fn login(&mut self, token: &str) -> StatusCode {
        let r = self.login_response(token).await;
        let status = r.status();
        if let Some((v, whole)) = set_cookie(r.headers(), "hookgate_session") {
            assert!(whole.contains("HttpOnly"), "{whole}");
            assert!(whole.contains("SameSite=Strict"), "{whole}");
            assert!(whole.contains("Path=/"), "{whole}");
            self.cookie = Some(v);
        }
        let body = r.text().await.unwrap();
        assert!(!body.contains(token), "a token is never echoed");
        status
    }

    pub(crate) async fn csrf(&self) -> String {
        csrf_field(&self.page("/destinations").await)
    }
}

async fn paused(g: &Gateway) -> bool {
    let (_, v) = g.api_get("/api/v1/destinations").await;
    v["data"][0]["paused"].as_bool().unwrap()
}

#[tokio::test]
async fn login_roles_and_logout() {
    let rx = Receiver::start().await;
    let g = gateway(&rx).await;
    let mut b = Browser::new(&g);

    // Not logged in: pages send to the login form, and come back after.
    let r = b.get("/").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/login?next=%2F");
    let r = b.get("/messages?source=hooks").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()[LOCATION],
        "/login?next=%2Fmessages%3Fsource%3Dhooks"
    );
    let r = b.get("/messages/rows").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // A wrong token is refused, and not echoed.
    assert_eq!(b.login("not-the-token").await, StatusCode::UNAUTHORIZED);
    assert!(b.cookie.is_none());
    // The login form without its double-submit cookie is refused.
    let r = client()
        .post(g.admin_url("/login"))
        .form(&[("csrf", "x"), ("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(r.headers(), "hookgate_session").is_none());

    // The admin token logs in with full rights.
    assert_eq!(b.login(ADMIN_TOKEN).await, StatusCode::SEE_OTHER);
    let html = b.page("/messages").await;
    assert!(html.contains("<label for=\"q\">Search</label>"));
    assert!(html.contains(">Admin<"));
    let csrf = b.csrf().await;
    let r = b
        .post("/destinations/app/pause", &[("csrf", &csrf)], "same-origin")
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(paused(&g).await);
    let r = b
        .post(
            "/destinations/app/resume",
            &[("csrf", &csrf)],
            "same-origin",
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(!paused(&g).await);

    // A read-only token can look, and every change is refused.
    let mut ro = Browser::new(&g);
    assert_eq!(ro.login(READ_TOKEN).await, StatusCode::SEE_OTHER);
    assert!(ro.page("/messages").await.contains("Read-only"));
    ro.page("/dead").await;
    assert!(ro.page("/sources").await.contains(&g.ingest_url("hooks")));
    let ro_csrf = ro.csrf().await;
    let r = ro
        .post(
            "/destinations/app/pause",
            &[("csrf", &ro_csrf)],
            "same-origin",
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(!paused(&g).await);
    let r = ro
        .post("/dead/replay", &[("csrf", &ro_csrf)], "same-origin")
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // ...and the read-only token is no key to the API.
    let r = client()
        .get(g.admin_url("/api/v1/messages"))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Logging out ends the session (the read-only one may log out).
    let r = ro
        .post("/logout", &[("csrf", &ro_csrf)], "same-origin")
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(ro.get("/messages").await.status(), StatusCode::SEE_OTHER);
    // The other session lives on.
    b.page("/messages").await;
}

#[tokio::test]
async fn every_post_needs_the_csrf_token_and_the_same_origin() {
    let rx = Receiver::start().await;
    let g = gateway(&rx).await;
    let mut b = Browser::new(&g);
    assert_eq!(b.login(ADMIN_TOKEN).await, StatusCode::SEE_OTHER);
    let csrf = b.csrf().await;

    for (form, site) in [
        (vec![], "same-origin"),
        (vec![("csrf", "0000")], "same-origin"),
        (vec![("csrf", csrf.as_str())], "cross-site"),
        (vec![("csrf", csrf.as_str())], "same-site"),
    ] {
        let r = b.post("/destinations/app/pause", &form, site).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{form:?} {site}");
    }
    // A foreign Origin (an older browser without Sec-Fetch-Site).
    let r = b
        .http
        .post(g.admin_url("/destinations/app/pause"))
        .header(
            "cookie",
            format!("hookgate_session={}", b.cookie.as_ref().unwrap()),
        )
        .header("origin", "http://evil.example")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Logging out needs the token too.
    let r = b.post("/logout", &[], "same-origin").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(!paused(&g).await, "no refused request changed anything");

    // Another session's token is not this session's.
    let mut other = Browser::new(&g);
    other.login(ADMIN_TOKEN).await;
    let r = other
        .post("/destinations/app/pause", &[("csrf", &csrf)], "same-origin")
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // The right token from the same origin works.
    let r = b
        .post("/destinations/app/pause", &[("csrf", &csrf)], "same-origin")
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(paused(&g).await);
}

#[tokio::test]
async fn sessions_are_bounded_oldest_first() {
    let rx = Receiver::start().await;
    let g = gateway(&rx).await;
    let mut first = Browser::new(&g);
    first.login(ADMIN_TOKEN).await;
    let mut second = Browser::new(&g);
    second.login(ADMIN_TOKEN).await;
    first.page("/messages").await;

    // 1,023 more logins fill the table: the first session is the one that goes.
    let r = client().get(g.admin_url("/login")).send().await.unwrap();
    let (login_cookie, _) = set_cookie(r.headers(), "hookgate_login").unwrap();
    let http = client();
    for _ in 0..1023 {
        let r = http
            .post(g.admin_url("/login"))
            .header("cookie", format!("hookgate_login={login_cookie}"))
            .form(&[("csrf", login_cookie.as_str()), ("token", ADMIN_TOKEN)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
    }
    assert_eq!(first.get("/messages").await.status(), StatusCode::SEE_OTHER);
    second.page("/messages").await;
}

#[tokio::test]
async fn pages_carry_the_security_headers_and_escape_what_they_show() {
    let rx = Receiver::start().await;
    rx.respond(|_| {
        (
            500,
            vec![],
            "<script>window.pwned=1</script> upstream said no".into(),
        )
    });
    let g = gateway(&rx).await;
    let mut b = Browser::new(&g);

    for path in ["/login", "/messages", "/static/console.js"] {
        let r = b.get(path).await;
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe"));
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
    }

    let payload = r#"{"name":"<script>alert(document.cookie)</script>","n":1}"#;
    let r = crate::harness::client()
        .post(g.ingest_url("hooks"))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", "sha256=topsecretsignature")
        .header("authorization", "Bearer topsecrettoken")
        .header("x-note", "<img src=x onerror=alert(1)>")
        .body(payload)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let id = crate::harness::message_id(&r);
    // Wait for the failed attempt to be recorded.
    eventually(Duration::from_secs(20), "an attempt recorded", || async {
        let (_, v) = g.api_get(&format!("/api/v1/messages/{id}")).await;
        (v["deliveries"][0]["attempt_count"].as_u64() >= Some(1)).then_some(())
    })
    .await;

    b.login(ADMIN_TOKEN).await;
    let html = b.page(&format!("/messages/{id}")).await;
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(document.cookie)&lt;/script&gt;"));
    assert!(!html.contains("<img src=x"));
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(!html.contains("<script>window.pwned"));
    assert!(html.contains("&lt;script&gt;window.pwned=1&lt;/script&gt; upstream said no"));
    // Secrets are masked everywhere, the curl text included.
    assert!(!html.contains("topsecret"), "{html}");
    assert!(html.contains("x-hub-signature-256: (masked)"));
    // The only script is the console's own file.
    assert_eq!(html.matches("<script").count(), 1);
    assert!(html.contains("<script src=\"/static/console.js\" defer></script>"));
    assert!(!html.contains("style=\""));

    // The search box takes a message id.
    let r = b.get(&format!("/messages?q={id}")).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], format!("/messages/{id}").as_str());
    // The live fragment shows the message.
    let rows = b.page("/messages/rows").await;
    assert!(rows.contains(&id));
}

#[tokio::test]
async fn form_posts_are_decoded_and_json_keeps_its_order() {
    let rx = Receiver::start().await;
    let g = gateway(&rx).await;
    let send = |ct: &'static str, body: &'static str| {
        let url = g.ingest_url("hooks");
        async move {
            let r = crate::harness::client()
                .post(url)
                .header("content-type", ct)
                .header("x-twilio-signature", "c2VjcmV0LXNpZ25hdHVyZQ==")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            crate::harness::message_id(&r)
        }
    };
    let form = send(
        "application/x-www-form-urlencoded",
        "From=%2B15551234567&Body=Hello+%3Cb%3Ethere%3C%2Fb%3E&MessageSid=SM1",
    )
    .await;
    let json = send("application/json", r#"{"zeta":1,"alpha":{"n":2.50}}"#).await;

    let mut b = Browser::new(&g);
    b.login(ADMIN_TOKEN).await;
    let html = b.page(&format!("/messages/{form}")).await;
    assert!(html.contains("<caption>Form fields</caption>"), "{html}");
    assert!(html.contains("<th scope=\"row\">From</th><td>+15551234567</td>"));
    assert!(html.contains("<th scope=\"row\">Body</th><td>Hello &lt;b&gt;there&lt;/b&gt;</td>"));
    assert!(
        !html.contains("c2VjcmV0LXNpZ25hdHVyZQ"),
        "the signature is masked"
    );

    let html = b.page(&format!("/messages/{json}")).await;
    assert!(
        html.contains(
            "{\n  &quot;zeta&quot;: 1,\n  &quot;alpha&quot;: {\n    &quot;n&quot;: 2.50\n  }\n}"
        ),
        "{html}"
    );
    // The raw body, byte-exact, as a download.
    let r = b.get(&format!("/messages/{json}/raw")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(
        r.headers()["content-disposition"],
        format!("attachment; filename=\"{json}.bin\"").as_str()
    );
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        br#"{"zeta":1,"alpha":{"n":2.50}}"#
    );
    // Unknown ids and malformed ones are a page that says so.
    let r = b.get("/messages/msg_01ARZ3NDEKTSV4RRFFQ69G5FAV").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = b.get("/messages/not-an-id").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn replay_to_one_destination_or_to_all() {
    let rx = Receiver::start().await;
    let g = Gateway::start(&format!(
        "[[sources]]\nname = \"hooks\"\n\n[[destinations]]\nname = \"one\"\nurl = \"{u}\"\n\n[[destinations]]\nname = \"two\"\nurl = \"{u}\"\n\n[[routes]]\nsource = \"hooks\"\nto = \"one\"\n\n[[routes]]\nsource = \"hooks\"\nto = \"two\"\n",
        u = rx.url("/hook")
    ))
    .await;
    let r = crate::harness::client()
        .post(g.ingest_url("hooks"))
        .body("{}")
        .send()
        .await
        .unwrap();
    let id = crate::harness::message_id(&r);
    let mut b = Browser::new(&g);
    b.login(ADMIN_TOKEN).await;
    let html = b.page(&format!("/messages/{id}")).await;
    // One Replay button, and a list to pick one destination.
    assert_eq!(html.matches(">Replay</button>").count(), 1);
    assert!(html.contains("<label for=\"replay-to\">Replay to</label>"));
    let csrf = csrf_field(&html);
    let path = format!("/messages/{id}/replay");

    let deliveries_to = |dest: &'static str| {
        let id = id.clone();
        let g = &g;
        async move {
            let (_, v) = g.api_get(&format!("/api/v1/messages/{id}")).await;
            v["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["destination"] == dest)
                .count()
        }
    };
    let r = b
        .post(
            &path,
            &[("csrf", &csrf), ("destination", "two")],
            "same-origin",
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()[LOCATION],
        format!("/messages/{id}?notice=replayed").as_str()
    );
    assert_eq!(
        (deliveries_to("one").await, deliveries_to("two").await),
        (1, 2)
    );
    let r = b
        .post(
            &path,
            &[("csrf", &csrf), ("destination", "")],
            "same-origin",
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        (deliveries_to("one").await, deliveries_to("two").await),
        (2, 3)
    );
    let r = b
        .post(
            &path,
            &[("csrf", &csrf), ("destination", "nope")],
            "same-origin",
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// The message filters of the console and the API: event type, a time range
/// and a dedup key (typed into Search), each with a clear error when malformed.
#[tokio::test]
async fn messages_filter_by_event_type_time_and_dedup_key() {
    let rx = Receiver::start().await;
    let g = Gateway::start(&format!(
        "[[sources]]\nname = \"shop\"\nevent_type = \"body:/type\"\ndedup = {{ key = \"body:/id\" }}\n\n\
         [[destinations]]\nname = \"app\"\nurl = \"{}\"\n\n[[routes]]\nsource = \"shop\"\nto = \"app\"\n",
        rx.url("/hook")
    ))
    .await;
    let http = client();
    let mut ids = Vec::new();
    for (id, ty) in [
        ("evt-1", "order.paid"),
        ("evt-2", "order.created"),
        ("evt-3", "order.paid"),
    ] {
        let r = http
            .post(g.ingest_url("shop"))
            .header("content-type", "application/json")
            .body(format!(r#"{{"id":"{id}","type":"{ty}"}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        ids.push(crate::harness::message_id(&r));
    }
    let mut b = Browser::new(&g);
    assert_eq!(b.login(ADMIN_TOKEN).await, StatusCode::SEE_OTHER);

    let paid = b.page("/messages?event_type=order.paid").await;
    assert!(paid.contains(&ids[0]) && paid.contains(&ids[2]), "{paid}");
    assert!(!paid.contains(&ids[1]));
    let keyed = b.page("/messages?q=evt-2").await;
    assert!(keyed.contains(&ids[1]) && !keyed.contains(&ids[0]) && !keyed.contains(&ids[2]));
    assert!(
        keyed.contains("dedup key"),
        "the page says what Search matched"
    );
    // A window that ends before any message, as a datetime-local field sends it.
    let none = b.page("/messages?until=2001-01-01T00%3A00").await;
    assert!(ids.iter().all(|id| !none.contains(id.as_str())));
    let bad = b.page("/messages?since=last+tuesday").await;
    assert!(bad.contains("From is a time like"), "{bad}");

    let (s, v) = g.api_get("/api/v1/messages?event_type=order.created").await;
    assert_eq!(s, 200);
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(v["data"][0]["id"], ids[1].as_str());
    let (s, v) = g
        .api_get("/api/v1/messages?dedup_key=evt-3&source=shop")
        .await;
    assert_eq!(
        (s.as_u16(), v["data"][0]["id"].as_str()),
        (200, Some(ids[2].as_str()))
    );
    let (s, v) = g
        .api_get("/api/v1/messages?since=2001-01-01T00:00:00Z&until=2999-01-01T00:00:00Z")
        .await;
    assert_eq!(
        (s.as_u16(), v["data"].as_array().map(Vec::len)),
        (200, Some(3))
    );
    let (s, v) = g.api_get("/api/v1/messages?until=soon").await;
    assert_eq!(s, 400);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("RFC 3339"),
        "{v}"
    );
}

/// The message detail shows how the message was verified, where it was routed,
/// and each attempt's response headers (secret ones masked), as the API does.
#[tokio::test]
async fn message_detail_shows_verification_routes_and_response_headers() {
    let rx = Receiver::start().await;
    rx.respond(|_| {
        (
            503,
            vec![
                ("retry-after".into(), "1".into()),
                ("x-request-id".into(), "req-<b>42</b>".into()),
                ("set-cookie".into(), "session=very-secret-cookie".into()),
            ],
            "down for maintenance".into(),
        )
    });
    let g = Gateway::start(&format!(
        "[[sources]]\nname = \"signed\"\nverify = {{ type = \"hmac\", header = \"x-sig\", secret = \"s3cret-key\", algorithm = \"sha256\", encoding = \"hex\" }}\n\n\
         [[sources]]\nname = \"open\"\n\n\
         [[destinations]]\nname = \"app\"\nurl = \"{}\"\nretry = {{ max_attempts = 1 }}\n\n\
         [[routes]]\nsource = \"open\"\nto = \"app\"\n",
        rx.url("/hook")
    ))
    .await;
    let r = crate::harness::client()
        .post(g.ingest_url("open"))
        .body("{}")
        .send()
        .await
        .unwrap();
    let id = crate::harness::message_id(&r);
    let (_, v) = eventually(
        Duration::from_secs(20),
        "the attempt is recorded",
        || async {
            let (s, v) = g.api_get(&format!("/api/v1/messages/{id}")).await;
            let done = v["deliveries"][0]["attempts"]
                .as_array()
                .is_some_and(|a| !a.is_empty());
            done.then_some((s, v))
        },
    )
    .await;
    let headers = &v["deliveries"][0]["attempts"][0]["response_headers"];
    assert_eq!(headers["x-request-id"], "req-<b>42</b>", "{v}");
    assert_eq!(headers["retry-after"], "1");

    let mut b = Browser::new(&g);
    b.login(ADMIN_TOKEN).await;
    let html = b.page(&format!("/messages/{id}")).await;
    assert!(html.contains("<summary>Response headers ("), "{html}");
    assert!(html.contains("req-&lt;b&gt;42&lt;/b&gt;"), "escaped");
    assert!(!html.contains("very-secret-cookie"), "set-cookie is masked");
    assert!(html.contains("<dt>Routed to</dt><dd>app</dd>"), "{html}");
    assert!(
        html.contains("anyone can send to it"),
        "an open source says so"
    );
    // The unrouted message of a verified source: passed, and routed nowhere.
    let body = "{\"a\":1}";
    let sig = {
        use hmac::Mac as _;
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"s3cret-key").unwrap();
        m.update(body.as_bytes());
        hex::encode(m.finalize().into_bytes())
    };
    let r = crate::harness::client()
        .post(g.ingest_url("signed"))
        .header("x-sig", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = b
        .page(&format!("/messages/{}", crate::harness::message_id(&r)))
        .await;
    assert!(
        html.contains("passed</span> the source's <code>verify</code> (hmac)"),
        "{html}"
    );
    assert!(html.contains("no route took it"));
}

/// The text of the figure `metric` in the overview card whose `attr` is `name`.
fn overview_figure(html: &str, attr: &str, name: &str, metric: &str) -> String {
    let card = html
        .split("<article ")
        .find(|c| c.contains(&format!("{attr}=\"{name}\"")))
        .unwrap_or_else(|| panic!("a card for {name} in {html}"));
    let m = card
        .split("<figure ")
        .find(|f| f.contains(&format!("data-metric=\"{metric}\"")))
        .unwrap_or_else(|| panic!("{metric} in the card of {name}"));
    let start = m.find("class=\"figure\">").expect("a written figure") + "class=\"figure\">".len();
    m[start..start + m[start..].find('<').unwrap()].to_string()
}

/// The hour's count at the start of a count figure ("7 in the last hour, …").
fn hour_count(figure: &str) -> u64 {
    figure
        .split(" in the last hour")
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count in {figure:?}"))
}

#[tokio::test]
async fn the_overview_shows_what_was_received_delivered_and_failed() {
    let ok = Receiver::start().await;
    let bad = Receiver::start().await;
    bad.respond(|_| (500, vec![], "no".into()));
    let g = Gateway::start_opts(&format!(
        "[[sources]]\nname = \"ov-in\"\n\n[[destinations]]\nname = \"ov-ok\"\nurl = \"{}\"\n\n[[destinations]]\nname = \"ov-bad\"\nurl = \"{}\"\nretry = {{ schedule = [\"0s\", \"1h\"] }}\n\n[[routes]]\nsource = \"ov-in\"\nto = \"ov-ok\"\n\n[[routes]]\nsource = \"ov-in\"\nto = \"ov-bad\"\n",
        ok.url("/hook"),
        bad.url("/hook")
    ), &format!("admin_read_tokens = [\"{READ_TOKEN}\"]\n"), &[])
    .await;
    let mut b = Browser::new(&g);
    // Without a session: the page sends to the login form, the fragment says 401.
    let r = b.get("/").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        b.get("/overview/fragment").await.status(),
        StatusCode::UNAUTHORIZED
    );
    b.login(READ_TOKEN).await;
    let html = b.page("/").await;
    assert!(
        html.contains("<a href=\"/\" aria-current=\"page\">Overview</a>"),
        "{html}"
    );
    assert!(html.contains("data-overview=\"/overview/fragment\""));

    for _ in 0..3 {
        let r = crate::harness::client()
            .post(g.ingest_url("ov-in"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
    ok.wait_for(3, Duration::from_secs(20)).await;
    bad.wait_for(3, Duration::from_secs(20)).await;
    // Counters move when attempts are recorded: sample until they show.
    let html = eventually(Duration::from_secs(20), "the overview's counts", || async {
        g.sample_overview().await;
        let html = b.page("/overview/fragment").await;
        let done = hour_count(&overview_figure(
            &html,
            "data-destination",
            "ov-ok",
            "delivered",
        )) == 3
            && hour_count(&overview_figure(
                &html,
                "data-destination",
                "ov-bad",
                "failed",
            )) == 3;
        done.then_some(html)
    })
    .await;
    let received = overview_figure(&html, "data-source", "ov-in", "received");
    assert_eq!(hour_count(&received), 3, "{received}");
    assert_eq!(
        hour_count(&overview_figure(&html, "data-source", "ov-in", "refused")),
        0
    );
    assert_eq!(
        hour_count(&overview_figure(
            &html,
            "data-destination",
            "ov-ok",
            "failed"
        )),
        0
    );
    assert_eq!(
        hour_count(&overview_figure(
            &html,
            "data-destination",
            "ov-bad",
            "delivered"
        )),
        0
    );
    let latency = overview_figure(&html, "data-destination", "ov-ok", "latency");
    assert!(
        latency.starts_with("p50 ") && latency.contains(", p99 "),
        "{latency}"
    );
    assert_eq!(
        overview_figure(&html, "data-destination", "ov-bad", "latency"),
        "nothing delivered in the last hour"
    );
    // The destinations page shows the same points as rates and latency.
    let page = b.page("/destinations").await;
    let row = |name: &str| {
        page.split("<tr ")
            .find(|r| r.contains(&format!("data-destination=\"{name}\"")))
            .unwrap_or_else(|| panic!("a row for {name} in {page}"))
            .to_string()
    };
    let (ok_row, bad_row) = (row("ov-ok"), row("ov-bad"));
    assert!(
        ok_row.contains("/s delivered, 0.0/s failed<br>latency p50 "),
        "{ok_row}"
    );
    assert!(
        bad_row.contains("0.0/s delivered, ") && !bad_row.contains("latency"),
        "{bad_row}"
    );
    // The failing destination's backlog, in words, with its dead letters linked.
    let bad_card = html
        .split("<article ")
        .find(|c| c.contains("data-destination=\"ov-bad\""))
        .unwrap();
    assert!(
        bad_card.contains("<dd data-figure=\"pending\">3</dd>"),
        "{bad_card}"
    );
    assert!(
        bad_card.contains("href=\"/dead?destination=ov-bad\""),
        "{bad_card}"
    );
    assert!(bad_card.contains(">running</span>"), "{bad_card}");
    // Every chart has an accessible name that carries its figures.
    let charts = html.matches("<svg ").count();
    assert_eq!(charts, 2 + 2 * 4, "two per source, four per destination");
    assert_eq!(html.matches("role=\"img\" aria-label=\"").count(), charts);
    assert!(html.contains(&format!("aria-label=\"Received, last hour: {received}\"")));
}

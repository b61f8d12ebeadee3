//! The app portal (`src/console/portal.rs`): the URL of
//! `app-portal-access` opens a console view of one tenant, over real HTTP on
//! the in-process gateway, driven like a browser (cookies, forms,
//! `Sec-Fetch-Site`). Checks the key exchange, what the tenant sees and
//! changes, and that nothing of another tenant nor the operator's pages is
//! reachable with the portal's session. `tests/console/portal.py` opens the
//! same URL in Chromium.

use std::time::Duration;

use reqwest::header::{LOCATION, SET_COOKIE};
use serde_json::{json, Value};

use crate::console::{client, csrf_field};
use crate::harness::*;

/// A browser holding a portal session.
struct Tenant {
    base: String,
    http: reqwest::Client,
    cookie: String,
}

impl Tenant {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .header("cookie", format!("hookgate_portal={}", self.cookie))
            .send()
            .await
            .unwrap()
    }

    async fn page(&self, path: &str) -> String {
        let r = self.get(path).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.text().await.unwrap()
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .header("sec-fetch-site", "same-origin")
            .header("cookie", format!("hookgate_portal={}", self.cookie))
            .form(form)
            .send()
            .await
            .unwrap()
    }
}

/// Logs in with `key`: the tenant's browser, and the `Set-Cookie` it got.
async fn open(gw: &Gateway, key: &str) -> (Tenant, String) {
    let r = login(gw, key).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/portal");
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    let t = Tenant {
        base: gw.admin_url(""),
        http: client(),
        cookie: set["hookgate_portal=".len()..]
            .split(';')
            .next()
            .unwrap()
            .to_string(),
    };
    (t, set)
}

/// Posts `key` to the portal's login; the answer.
async fn login(gw: &Gateway, key: &str) -> reqwest::Response {
    client()
        .post(gw.admin_url("/portal/login"))
        .header("sec-fetch-site", "same-origin")
        .form(&[("key", key)])
        .send()
        .await
        .unwrap()
}

async fn admin(
    gw: &Gateway,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    crate::svix::call(gw, ADMIN_TOKEN, method, path, body).await
}

/// Two tenants with an endpoint and a message each; ids of (apps, endpoints, messages).
async fn two_tenants(gw: &Gateway, rx: &Receiver) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut apps, mut eps, mut msgs) = (vec![], vec![], vec![]);
    for name in ["a", "b"] {
        let (_, app) = admin(
            gw,
            reqwest::Method::POST,
            "/api/v1/app",
            Some(json!({"name": name})),
        )
        .await;
        let id = app["id"].as_str().unwrap().to_string();
        let (_, ep) = admin(
            gw,
            reqwest::Method::POST,
            &format!("/api/v1/app/{id}/endpoint"),
            Some(json!({"url": rx.url(&format!("/{name}")), "description": format!("endpoint of {name}")})),
        )
        .await;
        let (st, m) = admin(
            gw,
            reqwest::Method::POST,
            &format!("/api/v1/app/{id}/msg"),
            Some(json!({"eventType": format!("order.{name}"), "payload": {"tenant": name}})),
        )
        .await;
        assert_eq!(st, 202, "{m}");
        eps.push(ep["id"].as_str().unwrap().to_string());
        msgs.push(m["id"].as_str().unwrap().to_string());
        apps.push(id);
    }
    (apps, eps, msgs)
}

/// The portal URL's key, after checking the URL's shape.
async fn portal_key(gw: &Gateway, app: &str) -> String {
    let (st, access) = admin(
        gw,
        reqwest::Method::POST,
        &format!("/api/v1/auth/app-portal-access/{app}"),
        Some(json!({})),
    )
    .await;
    assert_eq!(st, 200, "{access}");
    let url = access["url"].as_str().unwrap();
    let token = access["token"].as_str().unwrap();
    // The key rides in the fragment only: a browser never sends it.
    assert_eq!(url, gw.admin_url(&format!("/portal#key={token}")));
    token.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_portal_shows_and_changes_only_its_tenant() {
    let rx = Receiver::start().await;
    rx.respond(|r| {
        if r.path == "/a" {
            (503, vec![], "quota exceeded for this receiver".into())
        } else {
            (200, vec![], "ok".into())
        }
    });
    let gw = Gateway::start_opts("", "allow_private_destinations = true", &[]).await;
    let (apps, eps, msgs) = two_tenants(&gw, &rx).await;
    let (a, b) = (&apps[0], &apps[1]);
    eventually(Duration::from_secs(10), "a failed attempt of a", || async {
        let (_, v) = admin(
            &gw,
            reqwest::Method::GET,
            &format!("/api/v1/app/{a}/attempt/msg/{}", msgs[0]),
            None,
        )
        .await;
        (!v["data"].as_array()?.is_empty()).then_some(())
    })
    .await;

    // Without a session: the key form, and every other page refuses.
    let r = client().get(gw.admin_url("/portal")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("id=\"portal-login\""), "{html}");
    assert!(
        html.contains("<label for=\"key\">"),
        "the key field has a name"
    );
    let r = client()
        .get(gw.admin_url("/portal/messages"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(login(&gw, "appsk_guess").await.status(), 401);
    let key = portal_key(&gw, a).await;
    // A login from another site is refused.
    let r = client()
        .post(gw.admin_url("/portal/login"))
        .header("sec-fetch-site", "cross-site")
        .form(&[("key", key.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let (t, set) = open(&gw, &key).await;
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/portal"),
        "{set}"
    );
    assert!(!set.contains(&key), "the cookie is not the key");

    // Its endpoints and messages, none of the other tenant's.
    let home = t.page("/portal").await;
    assert!(
        home.contains(&eps[0]) && home.contains(&rx.url("/a")),
        "{home}"
    );
    assert!(
        !home.contains(&eps[1]) && !home.contains(&rx.url("/b")),
        "{home}"
    );
    assert!(
        !home.contains("href=\"/destinations\""),
        "no operator navigation"
    );
    assert!(!home.contains(&key), "the key is never echoed");
    let list = t.page("/portal/messages").await;
    assert!(
        list.contains(&msgs[0]) && !list.contains(&msgs[1]),
        "{list}"
    );
    // A message's attempts say why they failed.
    let detail = t.page(&format!("/portal/messages/{}", msgs[0])).await;
    assert!(
        detail.contains("quota exceeded for this receiver"),
        "{detail}"
    );
    assert!(
        detail.contains(&format!("aria-label=\"Resend to {}\"", eps[0])),
        "{detail}"
    );
    let csrf = csrf_field(&detail);

    // Nothing of tenant b through the portal, read or change: 404.
    for path in [
        format!("/portal/messages/{}", msgs[1]),
        format!("/portal/endpoints/{}", eps[1]),
    ] {
        assert_eq!(t.get(&path).await.status(), 404, "GET {path}");
    }
    for path in [
        format!("/portal/endpoints/{}/edit", eps[1]),
        format!("/portal/endpoints/{}/delete", eps[1]),
        format!("/portal/endpoints/{}/rotate", eps[1]),
        format!("/portal/endpoints/{}/secret", eps[1]),
        format!("/portal/messages/{}/resend/{}", msgs[1], eps[1]),
        format!("/portal/messages/{}/resend/{}", msgs[0], eps[1]),
    ] {
        let r = t
            .post(
                &path,
                &[("csrf", csrf.as_str()), ("url", "http://127.0.0.1:9/x")],
            )
            .await;
        assert_eq!(r.status(), 404, "POST {path}");
    }
    let (st, still) = admin(
        &gw,
        reqwest::Method::GET,
        &format!("/api/v1/app/{b}/endpoint/{}", eps[1]),
        None,
    )
    .await;
    assert_eq!(
        (st, still["url"].as_str()),
        (200, Some(rx.url("/b").as_str()))
    );

    // Nor the operator's pages, nor the APIs: the portal cookie is no login.
    for path in [
        "/",
        "/messages",
        "/dead",
        "/destinations",
        "/sources",
        "/rejected",
        "/alerts",
        "/transforms",
    ]
    .into_iter()
    .map(String::from)
    .chain([
        format!("/messages/{}", msgs[1]),
        format!("/destinations/{}/edit", eps[1]),
    ]) {
        assert_eq!(t.get(&path).await.status(), 403, "GET {path}");
    }
    assert_eq!(
        t.post(
            &format!("/destinations/{}/delete", eps[1]),
            &[("csrf", csrf.as_str())]
        )
        .await
        .status(),
        403
    );
    for path in [
        format!("/api/v1/app/{b}"),
        format!("/api/v1/app/{a}"),
        "/api/v1/messages".into(),
    ] {
        assert_eq!(t.get(&path).await.status(), 401, "GET {path}");
    }

    // A POST without the session's CSRF token changes nothing.
    let r = t
        .post("/portal/endpoints/new", &[("url", rx.url("/new").as_str())])
        .await;
    assert_eq!(r.status(), 403);

    // Create, edit, show and rotate the secret, delete: through the Svix API's rules.
    let new_form = t.page("/portal/endpoints/new").await;
    for label in [
        "for=\"url\"",
        "for=\"description\"",
        "for=\"types\"",
        "for=\"disabled\"",
    ] {
        assert!(new_form.contains(label), "{label} labelled");
    }
    let r = t
        .post(
            "/portal/endpoints/new",
            &[
                ("csrf", csrf.as_str()),
                ("url", rx.url("/new").as_str()),
                ("types", "order.a, order.z"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    let loc = r.headers()[LOCATION].to_str().unwrap().to_string();
    let new_ep = loc.strip_prefix("/portal/endpoints/").unwrap().to_string();
    let (st, ep) = admin(
        &gw,
        reqwest::Method::GET,
        &format!("/api/v1/app/{a}/endpoint/{new_ep}"),
        None,
    )
    .await;
    assert_eq!(st, 200, "the new endpoint is tenant a's");
    assert_eq!(ep["filterTypes"], json!(["order.a", "order.z"]));
    let r = t
        .post(
            &format!("{loc}/edit"),
            &[
                ("csrf", csrf.as_str()),
                ("url", rx.url("/new2").as_str()),
                ("description", "renamed"),
                ("disabled", "1"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    let (_, ep) = admin(
        &gw,
        reqwest::Method::GET,
        &format!("/api/v1/app/{a}/endpoint/{new_ep}"),
        None,
    )
    .await;
    assert_eq!(
        (
            ep["url"].as_str(),
            ep["description"].as_str(),
            ep["disabled"].as_bool()
        ),
        (Some(rx.url("/new2").as_str()), Some("renamed"), Some(true))
    );
    assert_eq!(
        ep["filterTypes"],
        Value::Null,
        "an empty field clears the types"
    );

    let (_, before) = admin(
        &gw,
        reqwest::Method::GET,
        &format!("/api/v1/app/{a}/endpoint/{new_ep}/secret"),
        None,
    )
    .await;
    let before = before["key"].as_str().unwrap().to_string();
    let page = t.page(&loc).await;
    assert!(
        !page.contains(&before),
        "the secret is shown only when asked for"
    );
    let shown = t
        .post(&format!("{loc}/secret"), &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(shown.status(), 200);
    assert_eq!(shown.headers()["cache-control"], "no-store");
    assert!(shown.text().await.unwrap().contains(&before));
    assert_eq!(
        t.post(&format!("{loc}/rotate"), &[("csrf", csrf.as_str())])
            .await
            .status(),
        303
    );
    let (_, after) = admin(
        &gw,
        reqwest::Method::GET,
        &format!("/api/v1/app/{a}/endpoint/{new_ep}/secret"),
        None,
    )
    .await;
    assert_ne!(after["key"].as_str().unwrap(), before, "rotated");
    assert_eq!(
        t.post(&format!("{loc}/delete"), &[("csrf", csrf.as_str())])
            .await
            .status(),
        303
    );
    let (st, _) = admin(
        &gw,
        reqwest::Method::GET,
        &format!("/api/v1/app/{a}/endpoint/{new_ep}"),
        None,
    )
    .await;
    assert_eq!(st, 404, "deleted");

    // Resend, once the receiver is back: one more delivery, answered 200.
    rx.respond(|_| (200, vec![], "ok".into()));
    let n = rx.received().iter().filter(|r| r.path == "/a").count();
    let r = t
        .post(
            &format!("/portal/messages/{}/resend/{}", msgs[0], eps[0]),
            &[("csrf", csrf.as_str())],
        )
        .await;
    assert_eq!(r.status(), 303);
    eventually(Duration::from_secs(10), "the resent delivery", || async {
        (rx.received().iter().filter(|r| r.path == "/a").count() > n).then_some(())
    })
    .await;

    // Revoking the token ends the session at once.
    let r = client()
        .post(gw.admin_url("/api/v1/auth/logout"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(t.get("/portal/messages").await.status(), 403);
    assert!(t.page("/portal").await.contains("id=\"portal-login\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_portal_log_out_ends_the_session_and_needs_its_csrf_token() {
    let rx = Receiver::start().await;
    let gw = Gateway::start_opts("", "allow_private_destinations = true", &[]).await;
    let (apps, _, _) = two_tenants(&gw, &rx).await;
    let key = portal_key(&gw, &apps[1]).await;
    let (t, _) = open(&gw, &key).await;
    let home = t.page("/portal").await;
    assert!(home.contains(&apps[1]) && !home.contains(&apps[0]));
    assert_eq!(
        t.post("/portal/logout", &[("csrf", "wrong")])
            .await
            .status(),
        403
    );
    let r = t
        .post("/portal/logout", &[("csrf", csrf_field(&home).as_str())])
        .await;
    assert_eq!(r.status(), 303);
    assert!(r.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(t.get("/portal/messages").await.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_portal_keys_are_limited_per_address() {
    let rx = Receiver::start().await;
    let gw = Gateway::start_opts("", "allow_private_destinations = true", &[]).await;
    let (apps, _, _) = two_tenants(&gw, &rx).await;
    let key = portal_key(&gw, &apps[0]).await;
    for _ in 0..5 {
        assert_eq!(login(&gw, "appsk_wrong").await.status(), 401);
    }
    // Past the limit even the right key waits: nothing is compared.
    let r = login(&gw, &key).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert!(!r.text().await.unwrap().contains(&key));
}

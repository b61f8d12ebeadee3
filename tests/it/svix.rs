//! The Svix-compatible API (`src/svix`): applications, event types,
//! endpoints, messages and attempts at Svix's paths and shapes; deliveries
//! with Svix's headers; tenants isolated from one another; tenant tokens;
//! bad input answered with Svix's error shapes, never a 5xx.

use serde_json::{json, Value};

use crate::harness::*;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn svix_gateway() -> Gateway {
    Gateway::start_opts("", "allow_private_destinations = true", &[]).await
}

/// A call with a token; status and JSON (Null for an empty body).
pub(crate) async fn call(
    gw: &Gateway,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = client()
        .request(method, gw.admin_url(path))
        .bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

async fn get(gw: &Gateway, path: &str) -> (u16, Value) {
    call(gw, ADMIN_TOKEN, reqwest::Method::GET, path, None).await
}

async fn post(gw: &Gateway, path: &str, body: Value) -> (u16, Value) {
    call(gw, ADMIN_TOKEN, reqwest::Method::POST, path, Some(body)).await
}

/// Verifies a delivery by its `svix-*` headers, as Svix's libraries read them.
fn verify_svix(secret: &str, r: &Received) -> bool {
    let key = hookgate::signing::decode_secret(secret).unwrap();
    let (Some(id), Some(ts), Some(sig)) = (
        r.header("svix-id"),
        r.header("svix-timestamp"),
        r.header("svix-signature"),
    ) else {
        return false;
    };
    hookgate::signing::verify(&key, id, ts.parse().unwrap(), &r.body, sig)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_application_its_endpoints_and_messages_through_the_svix_api() {
    let all = Receiver::start().await;
    let vip = Receiver::start().await;
    let gw = svix_gateway().await;
    let (st, et) = post(
        &gw,
        "/api/v1/event-type",
        json!({"name": "order.created", "description": "An order"}),
    )
    .await;
    assert_eq!(st, 201, "{et}");
    let (st, app) = post(&gw, "/api/v1/app", json!({"name": "Shop", "uid": "shop"})).await;
    assert_eq!(st, 201, "{app}");
    let app_id = app["id"].as_str().unwrap().to_string();
    assert!(app_id.starts_with("app_"));
    // get_if_exists answers the existing one; without it, the uid is taken.
    let (st, again) = post(
        &gw,
        "/api/v1/app?get_if_exists=true",
        json!({"name": "Shop", "uid": "shop"}),
    )
    .await;
    assert_eq!((st, again["id"].as_str()), (200, Some(app_id.as_str())));
    let (st, _) = post(&gw, "/api/v1/app", json!({"name": "Shop", "uid": "shop"})).await;
    assert_eq!(st, 409);

    let (st, ep) = post(
        &gw,
        "/api/v1/app/shop/endpoint",
        json!({"url": all.url("/all"), "secret": SECRET, "filterTypes": ["order.created"],
               "headers": {"x-tenant": "shop"}, "metadata": {"team": "a"}}),
    )
    .await;
    assert_eq!(st, 201, "{ep}");
    let ep_id = ep["id"].as_str().unwrap().to_string();
    assert!(ep_id.starts_with("ep_"));
    assert_eq!(ep["eventTypes"], json!(["order.created"]));
    let (st, vip_ep) = post(
        &gw,
        &format!("/api/v1/app/{app_id}/endpoint"),
        json!({"url": vip.url("/vip"), "channels": ["vip"], "uid": "vip-ep"}),
    )
    .await;
    assert_eq!(st, 201, "{vip_ep}");
    let (_, secret) = get(&gw, &format!("/api/v1/app/shop/endpoint/{ep_id}/secret")).await;
    assert_eq!(secret["key"], SECRET);

    // One message for everyone, one on channel vip, one of another type.
    let mut ids = Vec::new();
    for (et, channels) in [
        ("order.created", Value::Null),
        ("order.created", json!(["vip"])),
        ("user.signup", Value::Null),
    ] {
        let (st, m) = post(
            &gw,
            "/api/v1/app/shop/msg",
            json!({"eventType": et, "payload": {"total": 7}, "channels": channels}),
        )
        .await;
        assert_eq!(st, 202, "{m}");
        assert!(m["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(m["payload"], json!({"total": 7}));
        ids.push(m["id"].as_str().unwrap().to_string());
    }
    eventually(std::time::Duration::from_secs(10), "deliveries", || async {
        (all.count() == 2 && vip.count() == 1).then_some(())
    })
    .await;
    for r in all.received() {
        assert!(verify_svix(SECRET, &r), "svix-* headers verify");
        assert!(r.header("webhook-signature").is_some());
        assert_eq!(r.header("x-tenant"), Some("shop"));
        assert!(
            r.header("svix-channels").is_none(),
            "kept headers are not sent"
        );
    }
    assert_eq!(vip.received()[0].header("svix-id"), Some(ids[1].as_str()));
    gw.settled(&ids[0]).await;

    // Listings: newest first, paged to the end.
    let (_, page) = get(&gw, "/api/v1/app/shop/msg?limit=2&with_content=true").await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["done"], false);
    let it = page["iterator"].as_str().unwrap();
    let (_, rest) = get(&gw, &format!("/api/v1/app/shop/msg?limit=2&iterator={it}")).await;
    assert_eq!(rest["data"][0]["id"], ids[0].as_str());
    assert_eq!(rest["done"], true);
    let (_, vip_only) = get(&gw, "/api/v1/app/shop/msg?channel=vip").await;
    assert_eq!(vip_only["data"].as_array().unwrap().len(), 1);

    let (st, atts) = get(&gw, &format!("/api/v1/app/shop/attempt/msg/{}", ids[0])).await;
    assert_eq!(st, 200, "{atts}");
    let a = &atts["data"][0];
    assert_eq!(
        (a["status"].as_i64(), a["responseStatusCode"].as_i64()),
        (Some(0), Some(200))
    );
    assert_eq!(a["endpointId"], ep_id.as_str());
    let att_id = a["id"].as_str().unwrap();
    let (st, one) = get(
        &gw,
        &format!("/api/v1/app/shop/msg/{}/attempt/{att_id}", ids[0]),
    )
    .await;
    assert_eq!((st, one["id"].as_str()), (200, Some(att_id)));
    let (_, by_ep) = get(&gw, &format!("/api/v1/app/shop/attempt/endpoint/{ep_id}")).await;
    assert_eq!(by_ep["data"].as_array().unwrap().len(), 2);
    let (_, stats) = get(&gw, &format!("/api/v1/app/shop/endpoint/{ep_id}/stats")).await;
    assert_eq!(stats["success"], 2);

    // Resend to one endpoint; then rotate the secret and see the new one sign.
    let (st, _) = post(
        &gw,
        &format!("/api/v1/app/shop/msg/{}/endpoint/{ep_id}/resend", ids[0]),
        json!({}),
    )
    .await;
    assert_eq!(st, 202);
    eventually(std::time::Duration::from_secs(10), "the resend", || async {
        (all.count() == 3).then_some(())
    })
    .await;
    let (st, rotated) = post(
        &gw,
        &format!("/api/v1/app/shop/endpoint/{ep_id}/secret/rotate"),
        json!({}),
    )
    .await;
    assert_eq!(st, 200);
    let new = rotated["key"].as_str().unwrap().to_string();
    assert_ne!(new, SECRET);
    post(
        &gw,
        "/api/v1/app/shop/msg",
        json!({"eventType": "order.created", "payload": {}}),
    )
    .await;
    eventually(
        std::time::Duration::from_secs(10),
        "after rotation",
        || async { (all.count() == 4).then_some(()) },
    )
    .await;
    let last = all.received().pop().unwrap();
    assert!(verify_svix(&new, &last) && verify_svix(SECRET, &last));

    // Disabled: nothing is sent until it is enabled again.
    let (st, patched) = call(
        &gw,
        ADMIN_TOKEN,
        reqwest::Method::PATCH,
        &format!("/api/v1/app/shop/endpoint/{ep_id}"),
        Some(json!({"disabled": true, "description": "paused"})),
    )
    .await;
    assert_eq!((st, patched["disabled"].as_bool()), (200, Some(true)));
    assert_eq!(
        patched["eventTypes"],
        json!(["order.created"]),
        "patch keeps the rest"
    );
    let (st, _) = call(
        &gw,
        ADMIN_TOKEN,
        reqwest::Method::DELETE,
        &format!("/api/v1/app/shop/endpoint/{ep_id}"),
        None,
    )
    .await;
    assert_eq!(st, 204);
    let (st, _) = get(&gw, &format!("/api/v1/app/shop/endpoint/{ep_id}")).await;
    assert_eq!(st, 404);
    let (st, _) = call(
        &gw,
        ADMIN_TOKEN,
        reqwest::Method::DELETE,
        "/api/v1/app/shop",
        None,
    )
    .await;
    assert_eq!(st, 204);
    let (st, _) = get(&gw, "/api/v1/app/shop").await;
    assert_eq!(st, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenants_are_isolated_and_tenant_tokens_reach_only_their_own() {
    let rx = Receiver::start().await;
    let gw = svix_gateway().await;
    let mut apps = Vec::new();
    let mut msgs = Vec::new();
    let mut eps = Vec::new();
    for name in ["a", "b"] {
        let (_, app) = post(&gw, "/api/v1/app", json!({"name": name})).await;
        let id = app["id"].as_str().unwrap().to_string();
        let (_, ep) = post(
            &gw,
            &format!("/api/v1/app/{id}/endpoint"),
            json!({"url": rx.url(&format!("/{name}"))}),
        )
        .await;
        let (_, m) = post(
            &gw,
            &format!("/api/v1/app/{id}/msg"),
            json!({"eventType": "x", "payload": {"tenant": name}}),
        )
        .await;
        eps.push(ep["id"].as_str().unwrap().to_string());
        msgs.push(m["id"].as_str().unwrap().to_string());
        apps.push(id);
    }
    eventually(std::time::Duration::from_secs(10), "deliveries", || async {
        (rx.count() == 2).then_some(())
    })
    .await;
    // Each endpoint got its own tenant's message only.
    for r in rx.received() {
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(format!("/{}", body["tenant"].as_str().unwrap()), r.path);
    }
    // Another tenant's objects through this tenant's path: 404.
    let (a, b) = (&apps[0], &apps[1]);
    for path in [
        format!("/api/v1/app/{a}/msg/{}", msgs[1]),
        format!("/api/v1/app/{a}/endpoint/{}", eps[1]),
        format!("/api/v1/app/{a}/attempt/msg/{}", msgs[1]),
        format!("/api/v1/app/{a}/attempt/endpoint/{}", eps[1]),
    ] {
        let (st, body) = get(&gw, &path).await;
        assert_eq!(
            (st, body["code"].as_str()),
            (404, Some("not_found")),
            "{path}"
        );
    }

    let (st, access) = post(
        &gw,
        &format!("/api/v1/auth/app-portal-access/{a}"),
        json!({}),
    )
    .await;
    assert_eq!(st, 200, "{access}");
    let token = access["token"].as_str().unwrap().to_string();
    let as_tenant = |m, p: String| {
        let (gw, token) = (&gw, token.clone());
        async move { call(gw, &token, m, &p, None).await.0 }
    };
    assert_eq!(
        as_tenant(
            reqwest::Method::GET,
            format!("/api/v1/app/{a}/msg/{}", msgs[0])
        )
        .await,
        200
    );
    assert_eq!(
        as_tenant(
            reqwest::Method::GET,
            format!("/api/v1/app/{b}/msg/{}", msgs[1])
        )
        .await,
        404
    );
    assert_eq!(
        as_tenant(reqwest::Method::GET, format!("/api/v1/app/{b}")).await,
        404
    );
    assert_eq!(
        as_tenant(reqwest::Method::DELETE, format!("/api/v1/app/{a}")).await,
        403
    );
    let (_, listed) = call(&gw, &token, reqwest::Method::GET, "/api/v1/app", None).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    // The gateway's own API stays closed to it.
    assert_eq!(
        as_tenant(reqwest::Method::GET, "/api/v1/messages".into()).await,
        401
    );
    assert_eq!(
        as_tenant(reqwest::Method::POST, "/api/v1/auth/logout".into()).await,
        204
    );
    assert_eq!(
        as_tenant(reqwest::Method::GET, format!("/api/v1/app/{a}")).await,
        401
    );
    assert_eq!(
        call(
            &gw,
            "appsk_guess",
            reqwest::Method::GET,
            "/api/v1/app",
            None
        )
        .await
        .0,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_svix_errors_never_a_5xx() {
    let gw = svix_gateway().await;
    let (_, app) = post(&gw, "/api/v1/app", json!({"name": "t", "uid": "t"})).await;
    assert!(app["id"].is_string());
    // Malformed JSON, wrong types, missing fields: 422 with where and what.
    let raw = client()
        .post(gw.admin_url("/api/v1/app"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 422);
    let v: Value = raw.json().await.unwrap();
    assert!(v["detail"][0]["msg"].is_string(), "{v}");
    let (st, v) = post(&gw, "/api/v1/app", json!({"name": 5})).await;
    assert_eq!(
        (st, v["detail"][0]["loc"].clone()),
        (422, json!(["body", "name"]))
    );
    let (st, _) = post(&gw, "/api/v1/app/t/msg", json!({"eventType": "x"})).await;
    assert_eq!(st, 422);
    let (st, _) = post(
        &gw,
        "/api/v1/app/t/msg",
        json!({"eventType": "x", "payload": [1]}),
    )
    .await;
    assert_eq!(st, 422);
    // Hostile uids and keys.
    for uid in [
        "../../etc/passwd",
        "<script>",
        "a b",
        "é",
        &"x".repeat(300),
        "",
    ] {
        let (st, v) = post(&gw, "/api/v1/app", json!({"name": "n", "uid": uid})).await;
        assert_eq!(st, 422, "{uid:?}: {v}");
        let (st, _) = post(
            &gw,
            "/api/v1/app/t/msg",
            json!({"eventType": uid, "payload": {}}),
        )
        .await;
        assert_eq!(st, 422, "{uid:?}");
    }
    let (st, _) = post(
        &gw,
        "/api/v1/app/t/endpoint",
        json!({"url": "http://127.0.0.1:9/h", "channels": ["ok", "no way"]}),
    )
    .await;
    assert_eq!(st, 422);
    let (st, _) = post(&gw, "/api/v1/app/t/endpoint", json!({"url": "not a url"})).await;
    assert_eq!(st, 422);
    let (st, _) = post(
        &gw,
        "/api/v1/app/t/endpoint",
        json!({"url": "http://127.0.0.1:9/h", "secret": "whsec_short"}),
    )
    .await;
    assert_eq!(st, 422);
    // Unknown ids: 404 in Svix's shape.
    for path in [
        "/api/v1/app/app_01JDQ6TQ1R9W5V1HB3Q4Z2N7XK",
        "/api/v1/app/t/msg/msg_01JDQ6TQ1R9W5V1HB3Q4Z2N7XK",
        "/api/v1/app/t/msg/nothing-like-an-id",
        "/api/v1/app/t/endpoint/ep_nope",
        "/api/v1/event-type/nope",
        "/api/v1/app/t/msg/msg_01JDQ6TQ1R9W5V1HB3Q4Z2N7XK/attempt/atmpt_1_1",
    ] {
        let (st, v) = get(&gw, path).await;
        assert_eq!((st, v["code"].as_str()), (404, Some("not_found")), "{path}");
    }
    let (st, _) = get(&gw, "/api/v1/app?limit=lots").await;
    assert_eq!(st, 422);
    let (st, _) = get(&gw, "/api/v1/app/t/msg?iterator=bogus").await;
    assert_eq!(st, 422);
    // eventId: a second message with it is 409; the message is found by it.
    let body = json!({"eventType": "x", "payload": {}, "eventId": "evt-1"});
    let (st, first) = post(&gw, "/api/v1/app/t/msg", body.clone()).await;
    assert_eq!(st, 202);
    let (st, _) = post(&gw, "/api/v1/app/t/msg", body).await;
    assert_eq!(st, 409);
    let (_, by_event_id) = get(&gw, "/api/v1/app/t/msg/evt-1").await;
    assert_eq!(by_event_id["id"], first["id"]);
    // A message's `application` makes a missing one, with the path's uid.
    let (st, _) = post(
        &gw,
        "/api/v1/app/new-tenant/msg",
        json!({"eventType": "x", "payload": {}, "application": {"name": "New", "uid": "other"}}),
    )
    .await;
    assert_eq!(st, 422, "the uid must be the path's");
    let (st, _) = post(
        &gw,
        "/api/v1/app/new-tenant/msg",
        json!({"eventType": "x", "payload": {}, "application": {"name": "New"}}),
    )
    .await;
    assert_eq!(st, 202);
    let (st, made) = get(&gw, "/api/v1/app/new-tenant").await;
    assert_eq!((st, made["name"].as_str()), (200, Some("New")));
    // Over `server.max_body` (1 MiB by default): 413, not a 5xx.
    let big = "x".repeat(2 * 1024 * 1024);
    let r = client()
        .post(gw.admin_url("/api/v1/app/t/msg"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"eventType": "x", "payload": {"big": big}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    // What Svix has and hookgate does not: 501 with a clear message.
    let (st, v) = call(
        &gw,
        ADMIN_TOKEN,
        reqwest::Method::DELETE,
        &format!(
            "/api/v1/app/t/msg/{}/content",
            first["id"].as_str().unwrap()
        ),
        None,
    )
    .await;
    assert_eq!((st, v["code"].as_str()), (501, Some("not_implemented")));
    // Health, open as Svix's is.
    let r = client()
        .get(gw.admin_url("/api/v1/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn applications_listed_in_per_tenant_metrics_get_their_own_series() {
    let rx = Receiver::start().await;
    let mut gw = Gateway::binary_opts("", "allow_private_destinations = true", &[]).await;
    let mut ids = Vec::new();
    for name in ["listed", "pooled"] {
        let (_, app) = post(&gw, "/api/v1/app", json!({"name": name})).await;
        let app = app["id"].as_str().unwrap().to_string();
        let (_, ep) = post(
            &gw,
            &format!("/api/v1/app/{app}/endpoint"),
            json!({"url": rx.url(&format!("/{name}"))}),
        )
        .await;
        ids.push((app, ep["id"].as_str().unwrap().to_string()));
    }
    gw.terminate();
    let config = gw.data_dir().join("hookgate.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[telemetry]\nper_tenant_metrics = [\"{}\"]\n",
        ids[0].0
    ));
    std::fs::write(&config, text).unwrap();
    gw.restart().await;
    for (app, _) in &ids {
        let (st, m) = post(
            &gw,
            &format!("/api/v1/app/{app}/msg"),
            json!({"eventType": "x", "payload": {}}),
        )
        .await;
        assert_eq!(st, 202, "{m}");
    }
    rx.wait_for(2, std::time::Duration::from_secs(10)).await;
    let (listed, pooled) = (&ids[0].1, &ids[1].1);
    let text = eventually(std::time::Duration::from_secs(10), "the series", || async {
        let t = gw.metrics_text().await;
        t.contains(&format!(
            "hookgate_deliveries_total{{destination=\"{listed}\",outcome=\"delivered\"}} 1"
        ))
        .then_some(t)
    })
    .await;
    assert!(
        text.contains(
            "hookgate_deliveries_total{destination=\"tenant.*\",outcome=\"delivered\"} 1"
        ),
        "the other application's endpoint stays in the pooled series:\n{text}"
    );
    assert!(
        !text.contains(pooled.as_str()),
        "no series of its own:\n{text}"
    );
}

/// Two nodes on one PostgreSQL database: an application, its endpoint and a
/// tenant token made through one node work through the other, a message sent
/// to either is delivered once and signed, its attempts are read on the
/// other, and an `eventId` is unique across both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenants_span_two_postgres_nodes() {
    let Some(db) =
        hookgate::store::postgres::scratch::ScratchDatabase::for_test("svix_two_nodes").await
    else {
        return;
    };
    let rx = Receiver::start().await;
    let cfg = format!(
        "[storage]\nbackend = \"postgres\"\nurl = \"{}\"\npool_size = 4\n",
        db.url()
    );
    let a = Gateway::start_opts(&cfg, "allow_private_destinations = true", &[]).await;
    let b = Gateway::start_opts(&cfg, "allow_private_destinations = true", &[]).await;

    let (st, app) = post(&a, "/api/v1/app", json!({"name": "Acme", "uid": "acme"})).await;
    assert_eq!(st, 201, "{app}");
    let (st, other) = post(&a, "/api/v1/app", json!({"name": "Other", "uid": "other"})).await;
    assert_eq!(st, 201, "{other}");
    let (st, ep) = post(
        &a,
        "/api/v1/app/acme/endpoint",
        json!({"url": rx.url("/acme"), "secret": SECRET}),
    )
    .await;
    assert_eq!(st, 201, "{ep}");
    let ep_id = ep["id"].as_str().unwrap().to_string();

    // Node b reads the records from the store and routes to the endpoint
    // once its registry has synced it.
    let (st, seen) = get(&b, "/api/v1/app/acme").await;
    assert_eq!((st, seen["id"].clone()), (200, app["id"].clone()), "{seen}");
    eventually(
        std::time::Duration::from_secs(10),
        "b knows the endpoint",
        || async {
            let (st, _) = b.api_get(&format!("/api/v1/destinations/{ep_id}")).await;
            (st == 200).then_some(())
        },
    )
    .await;

    let mut ids = Vec::new();
    for (n, gw) in [&a, &b, &a, &b].into_iter().enumerate() {
        let (st, m) = post(
            gw,
            "/api/v1/app/acme/msg",
            json!({"eventType": "order.created", "payload": {"n": n}, "eventId": format!("evt-{n}")}),
        )
        .await;
        assert_eq!(st, 202, "{m}");
        ids.push(m["id"].as_str().unwrap().to_string());
    }
    // The same eventId through the other node is a conflict.
    let (st, dup) = post(
        &b,
        "/api/v1/app/acme/msg",
        json!({"eventType": "order.created", "payload": {}, "eventId": "evt-0"}),
    )
    .await;
    assert_eq!(st, 409, "{dup}");

    rx.wait_for(4, std::time::Duration::from_secs(10)).await;
    let got = rx.received();
    assert_eq!(got.len(), 4, "each message delivered once");
    for id in &ids {
        let r = got
            .iter()
            .find(|r| r.header("svix-id") == Some(id.as_str()))
            .unwrap_or_else(|| panic!("{id} delivered"));
        assert!(verify_svix(SECRET, r), "{id} verifies");
    }
    // Attempts of a message sent through b are read through a.
    let (st, atts) = eventually(
        std::time::Duration::from_secs(10),
        "a lists b's attempt",
        || async {
            let (st, v) = get(&a, &format!("/api/v1/app/acme/attempt/msg/{}", ids[1])).await;
            (v["data"].as_array().is_some_and(|d| !d.is_empty())).then_some((st, v))
        },
    )
    .await;
    assert_eq!(
        (st, atts["data"][0]["status"].clone()),
        (200, json!(0)),
        "{atts}"
    );

    // A tenant token made on a works on b, for its own application only.
    let (st, access) = post(&a, "/api/v1/auth/app-portal-access/acme", json!({})).await;
    assert_eq!(st, 200, "{access}");
    let token = access["token"].as_str().unwrap();
    let own = format!("/api/v1/app/acme/msg/{}", ids[0]);
    let (st, m) = call(&b, token, reqwest::Method::GET, &own, None).await;
    assert_eq!((st, m["id"].as_str()), (200, Some(ids[0].as_str())), "{m}");
    let (st, _) = call(&b, token, reqwest::Method::GET, "/api/v1/app/other", None).await;
    assert_eq!(st, 404);
}

//! The app portal: the console view a tenant token opens (Svix's "app portal").
//! `POST /api/v1/auth/app-portal-access/{app_id}` answers a URL
//! `/portal#key=<token>`; the page's script posts the fragment's key to
//! `/portal/login` and drops it from the address bar, so the token never
//! reaches a request line, a log or a `Referer`. The session that follows is
//! a cookie limited to `/portal`.
//!
//! Invariants:
//! - A portal session reaches one application: every read and change goes
//!   through the Svix API's own handlers ([`crate::svix::scoped_router`])
//!   with that tenant's [`Scope`], so another tenant's ids answer 404 exactly
//!   as they do to the tenant token.
//! - A portal session is not an operator session: the operator's pages answer
//!   403 to it ([`super::auth::Authed`]), and the Svix API needs its bearer.
//! - A session lasts while its token does: a revoked (logout) or expired
//!   token ends it at the next request. The token itself is not kept, only
//!   its hash.
//! - Every POST passes the same-origin check and the session's CSRF token.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup, DOCTYPE};
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::auth::{random_token, same_origin, set_cookie};
use super::{layout, Console, FormData};
use crate::svix::auth::Scope;

/// The portal's session cookie (`Path=/portal`).
pub const PORTAL_COOKIE: &str = "hookgate_portal";

/// A tenant's portal session.
#[derive(Debug, Clone)]
pub struct PortalSession {
    /// The application it is limited to.
    pub app: String,
    /// The hash of the tenant token it was opened with.
    pub token_hash: String,
    /// The token every form of this session carries.
    pub csrf: String,
    /// When it ends (at the latest).
    pub expires_at: i64,
}

/// Portal sessions, bounded like the console's.
#[derive(Default)]
pub struct PortalSessions {
    by_id: Mutex<HashMap<String, PortalSession>>,
}

impl PortalSessions {
    fn create(&self, s: PortalSession, now: i64) -> String {
        let id = random_token();
        let mut g = self.by_id.lock();
        g.retain(|_, s| s.expires_at > now);
        if g.len() >= super::auth::MAX_SESSIONS {
            // The one ending soonest goes first.
            if let Some(k) = g
                .iter()
                .min_by_key(|(_, s)| s.expires_at)
                .map(|(k, _)| k.clone())
            {
                g.remove(&k);
            }
        }
        g.insert(id.clone(), s);
        id
    }
}

/// A request with a live portal session.
struct Portal {
    id: String,
    session: PortalSession,
}

impl Portal {
    fn scope(&self) -> Scope {
        Scope::AppToken {
            app: self.session.app.clone(),
            hash: self.session.token_hash.clone(),
        }
    }
}

/// The live portal session of a request (its token still stored and unexpired).
async fn session_of(c: &Console, headers: &HeaderMap) -> Option<Portal> {
    let id = super::auth::cookie(headers, PORTAL_COOKIE)?;
    let now = c.admin.clock.now_millis();
    let session = {
        let g = c.portal.by_id.lock();
        g.get(id).filter(|s| s.expires_at > now).cloned()
    };
    let live = match &session {
        Some(s) => crate::svix::auth::token_live(&c.admin, &s.token_hash)
            .await
            .ok()
            .flatten()
            .is_some_and(|app| app == s.app),
        None => false,
    };
    if !live {
        c.portal.by_id.lock().remove(id);
        return None;
    }
    Some(Portal {
        id: id.to_string(),
        session: session?,
    })
}

/// Whether a request carries a portal cookie (the operator's pages refuse it).
pub fn has_portal_cookie(headers: &HeaderMap) -> bool {
    super::auth::cookie(headers, PORTAL_COOKIE).is_some()
}

/// Calls the Svix API as the session's tenant; the status and the JSON answer.
async fn api(
    c: &Console,
    p: &Portal,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    use tower_service::Service as _;
    let mut req = Request::builder().method(method).uri(path);
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let mut req = req
        .body(Body::from(body.map(|b| b.to_string()).unwrap_or_default()))
        .expect("a request from parts that parse");
    req.extensions_mut().insert(p.scope());
    let mut svc = crate::svix::scoped_router().with_state(c.admin.clone());
    let r = match svc.call(req).await {
        Ok(r) => r,
        Err(e) => match e {},
    };
    let status = r.status();
    let bytes = axum::body::to_bytes(r.into_body(), 16 << 20)
        .await
        .unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The application's base path in the Svix API.
fn app_path(p: &Portal) -> String {
    format!("/api/v1/app/{}", p.session.app)
}

/// An API failure as a page: its status, and Svix's message.
fn api_error(status: StatusCode, v: &Value) -> Response {
    let text = v["detail"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v["detail"].to_string());
    portal_error(status, &text)
}

fn portal_error(status: StatusCode, text: &str) -> Response {
    let title = if status == StatusCode::NOT_FOUND {
        "Not found"
    } else {
        "Refused"
    };
    layout::error_page(status, title, text)
}

/// The portal's shell: its own navigation, no operator links.
fn page(p: &Portal, title: &str, body: Markup) -> Response {
    let m = html! {
        (DOCTYPE)
        html lang="en" {
            (layout::head(title))
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "Webhooks" }
                    nav aria-label="Portal" {
                        a href="/portal" { "Endpoints" }
                        a href="/portal/messages" { "Messages" }
                    }
                    span.role { "Application " code { (p.session.app) } }
                    form.logout method="post" action="/portal/logout" {
                        input type="hidden" name="csrf" value=(p.session.csrf);
                        button type="submit" { "Log out" }
                    }
                }
                main id="main" { (body) }
            }
        }
    };
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        m.into_string(),
    )
        .into_response()
}

/// Checks a portal POST: same origin and the session's CSRF token.
fn check_post(p: &Portal, headers: &HeaderMap, form: &FormData) -> Option<Response> {
    let csrf = form.get("csrf").unwrap_or("");
    if !same_origin(headers)
        || !crate::ingest::verify::ct_eq(csrf.as_bytes(), p.session.csrf.as_bytes())
    {
        return Some(portal_error(
            StatusCode::FORBIDDEN,
            "The form's security token is missing or wrong. Reload the page and try again.",
        ));
    }
    None
}

/// The request's portal session, or a 403 answer without one.
async fn portal(c: &Console, headers: &HeaderMap) -> Result<Portal, Response> {
    session_of(c, headers).await.ok_or_else(|| {
        portal_error(
            StatusCode::FORBIDDEN,
            "Open the portal through the link your provider gave you.",
        )
    })
}

/// The session of a POST that passed [`check_post`].
async fn posted(c: &Console, headers: &HeaderMap, form: &FormData) -> Result<Portal, Response> {
    let p = portal(c, headers).await?;
    match check_post(&p, headers, form) {
        Some(r) => Err(r),
        None => Ok(p),
    }
}

/// [`api`], with a failure as its error page.
async fn api_ok(
    c: &Console,
    p: &Portal,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, Response> {
    let (st, v) = api(c, p, method, path, body).await;
    if st.is_success() {
        Ok(v)
    } else {
        Err(api_error(st, &v))
    }
}

/// The `data` of a Svix list answer.
async fn data(c: &Console, p: &Portal, path: &str) -> Result<Vec<Value>, Response> {
    let v = api_ok(c, p, Method::GET, path, None).await?;
    Ok(match v {
        Value::Object(mut m) => match m.remove("data") {
            Some(Value::Array(a)) => a,
            _ => vec![],
        },
        _ => vec![],
    })
}

type Answer = Result<Response, Response>;

/// `GET /portal`: the endpoints, or the key form without a session.
pub async fn home(State(c): State<Console>, headers: HeaderMap) -> Answer {
    let Some(p) = session_of(&c, &headers).await else {
        return Ok(key_form(None, StatusCode::OK));
    };
    let eps = data(&c, &p, &format!("{}/endpoint?limit=250", app_path(&p))).await?;
    Ok(page(
        &p,
        "Endpoints",
        html! {
            h1 { "Endpoints" }
            p { a href="/portal/endpoints/new" { "Add an endpoint" } }
            @if eps.is_empty() {
                p { "No endpoints yet." }
            } @else {
                table {
                    caption { "Endpoints of this application" }
                    (layout::header_row(&["Endpoint", "URL", "Event types", "State"]))
                    tbody {
                        @for e in &eps {
                            @let id = e["id"].as_str().unwrap_or("");
                            tr {
                                td { a href=(format!("/portal/endpoints/{}", layout::path_segment(id))) { (id) } }
                                td { (e["url"].as_str().unwrap_or("")) }
                                td { (types_text(e)) }
                                td { @if e["disabled"].as_bool() == Some(true) { "disabled" } @else { "enabled" } }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// The event types an endpoint takes, comma-separated ("all" when any).
fn types_text(e: &Value) -> String {
    match types_joined(e) {
        t if t.is_empty() => "all".into(),
        t => t,
    }
}

/// The event types an endpoint is limited to, comma-separated (empty: any).
fn types_joined(e: &Value) -> String {
    e["filterTypes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// The form that takes the key (filled from the URL fragment by the script).
fn key_form(error: Option<&str>, status: StatusCode) -> Response {
    layout::bare_page(
        "Webhooks portal",
        html! {
            section.login {
                h1 { "Webhooks portal" }
                @if let Some(e) = error { p.notice.error role="alert" { (e) } }
                form id="portal-login" method="post" action="/portal/login" {
                    label for="key" { "Portal key" }
                    input id="key" type="password" name="key" autocomplete="off" required;
                    button type="submit" { "Open" }
                }
                p.hint { "Open the link your provider gave you; it carries the key." }
            }
        },
        status,
    )
}

/// `POST /portal/login`: a tenant token for a session cookie.
pub async fn login(
    State(c): State<Console>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    form: FormData,
) -> Response {
    // Wrong keys count against the address as the console's wrong tokens do.
    let ip = peer.map(|p| (p.0).0.ip());
    let now = c.admin.clock.now_millis();
    if let Some(wait) = c.logins.blocked(ip, now) {
        let mut r = key_form(
            Some("Too many wrong keys from this address. Wait a minute and try again."),
            StatusCode::TOO_MANY_REQUESTS,
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, axum::http::HeaderValue::from(wait));
        return r;
    }
    if !same_origin(&headers) {
        return portal_error(
            StatusCode::FORBIDDEN,
            "This request did not come from the portal's page.",
        );
    }
    let key = form.get("key").unwrap_or("").trim();
    let scope = match crate::svix::auth::tenant_scope(&c.admin, key).await {
        Ok(s) => s,
        Err(_) => {
            return portal_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "The store did not answer; try again.",
            )
        }
    };
    let Some(Scope::AppToken { app, hash }) = scope else {
        c.logins.failed(ip, now);
        return key_form(
            Some("This key is not valid (or has expired, or was revoked)."),
            StatusCode::UNAUTHORIZED,
        );
    };
    c.logins.succeeded(ip);
    let expires_at = now + super::auth::SESSION_TTL_MS;
    let id = c.portal.create(
        PortalSession {
            app,
            token_hash: hash,
            csrf: random_token(),
            expires_at,
        },
        now,
    );
    let mut r = Redirect::to("/portal").into_response();
    *r.status_mut() = StatusCode::SEE_OTHER;
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            PORTAL_COOKIE,
            &id,
            "/portal",
            super::auth::SESSION_TTL_MS / 1000,
            c.secure_cookie,
        ),
    );
    r
}

/// `POST /portal/logout`
pub async fn logout(State(c): State<Console>, headers: HeaderMap, form: FormData) -> Answer {
    let p = posted(&c, &headers, &form).await?;
    c.portal.by_id.lock().remove(&p.id);
    let mut r = see_other("/portal");
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(PORTAL_COOKIE, "", "/portal", 0, c.secure_cookie),
    );
    Ok(r)
}

fn see_other(to: &str) -> Response {
    let mut r = Redirect::to(to).into_response();
    *r.status_mut() = StatusCode::SEE_OTHER;
    r
}

/// The endpoint form's fields (create and edit).
fn endpoint_fields(p: &Portal, action: &str, e: &Value, submit: &str) -> Markup {
    html! {
        form method="post" action=(action) {
            input type="hidden" name="csrf" value=(p.session.csrf);
            label for="url" { "URL" }
            input id="url" type="url" name="url" required value=(e["url"].as_str().unwrap_or(""));
            label for="description" { "Description" }
            input id="description" type="text" name="description" value=(e["description"].as_str().unwrap_or(""));
            label for="types" { "Event types (comma-separated; empty for all)" }
            input id="types" type="text" name="types" value=(types_joined(e));
            label for="disabled" {
                input id="disabled" type="checkbox" name="disabled" value="1" checked[e["disabled"].as_bool() == Some(true)];
                " Disabled"
            }
            button type="submit" { (submit) }
        }
    }
}

/// The JSON of an endpoint form.
fn endpoint_json(form: &FormData) -> Value {
    let types: Vec<&str> = form
        .get("types")
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    json!({
        "url": form.get("url").unwrap_or("").trim(),
        "description": form.get("description").unwrap_or(""),
        "filterTypes": if types.is_empty() { Value::Null } else { json!(types) },
        "disabled": form.get("disabled") == Some("1"),
    })
}

/// `GET /portal/endpoints/new`
pub async fn new_form(State(c): State<Console>, headers: HeaderMap) -> Answer {
    let p = portal(&c, &headers).await?;
    Ok(page(
        &p,
        "New endpoint",
        html! {
            h1 { "New endpoint" }
            (endpoint_fields(&p, "/portal/endpoints/new", &Value::Null, "Create endpoint"))
        },
    ))
}

/// `POST /portal/endpoints/new`
pub async fn create(State(c): State<Console>, headers: HeaderMap, form: FormData) -> Answer {
    let p = posted(&c, &headers, &form).await?;
    let v = api_ok(
        &c,
        &p,
        Method::POST,
        &format!("{}/endpoint", app_path(&p)),
        Some(endpoint_json(&form)),
    )
    .await?;
    Ok(see_other(&format!(
        "/portal/endpoints/{}",
        layout::path_segment(v["id"].as_str().unwrap_or(""))
    )))
}

fn ep_path(p: &Portal, ep: &str) -> String {
    format!("{}/endpoint/{}", app_path(p), layout::path_segment(ep))
}

/// `GET /portal/endpoints/{ep}`: the endpoint, its form and actions.
pub async fn endpoint(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(ep): Path<String>,
) -> Answer {
    let p = portal(&c, &headers).await?;
    let e = api_ok(&c, &p, Method::GET, &ep_path(&p, &ep), None).await?;
    let id = e["id"].as_str().unwrap_or("");
    let base = format!("/portal/endpoints/{}", layout::path_segment(id));
    Ok(page(
        &p,
        "Endpoint",
        html! {
            h1 { "Endpoint " code { (id) } }
            (endpoint_fields(&p, &format!("{base}/edit"), &e, "Save changes"))
            h2 { "Signing secret" }
            p { "The secret is shown only when asked for." }
            form method="post" action=(format!("{base}/secret")) {
                input type="hidden" name="csrf" value=(p.session.csrf);
                button type="submit" { "Show signing secret" }
            }
            form method="post" action=(format!("{base}/rotate")) {
                input type="hidden" name="csrf" value=(p.session.csrf);
                button type="submit" { "Rotate signing secret" }
            }
            h2 { "Delete" }
            form method="post" action=(format!("{base}/delete")) {
                input type="hidden" name="csrf" value=(p.session.csrf);
                button type="submit" { "Delete endpoint" }
            }
        },
    ))
}

/// `POST /portal/endpoints/{ep}/edit`
pub async fn edit(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(ep): Path<String>,
    form: FormData,
) -> Answer {
    let p = posted(&c, &headers, &form).await?;
    api_ok(
        &c,
        &p,
        Method::PATCH,
        &ep_path(&p, &ep),
        Some(endpoint_json(&form)),
    )
    .await?;
    Ok(see_other(&format!(
        "/portal/endpoints/{}",
        layout::path_segment(&ep)
    )))
}

/// `POST /portal/endpoints/{ep}/delete`
pub async fn delete(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(ep): Path<String>,
    form: FormData,
) -> Answer {
    let p = posted(&c, &headers, &form).await?;
    api_ok(&c, &p, Method::DELETE, &ep_path(&p, &ep), None).await?;
    Ok(see_other("/portal"))
}

/// `POST /portal/endpoints/{ep}/rotate`
pub async fn rotate(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(ep): Path<String>,
    form: FormData,
) -> Answer {
    let p = posted(&c, &headers, &form).await?;
    api_ok(
        &c,
        &p,
        Method::POST,
        &format!("{}/secret/rotate", ep_path(&p, &ep)),
        Some(json!({})),
    )
    .await?;
    Ok(see_other(&format!(
        "/portal/endpoints/{}",
        layout::path_segment(&ep)
    )))
}

/// `POST /portal/endpoints/{ep}/secret`: the secret, on a page not kept by caches.
pub async fn secret(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(ep): Path<String>,
    form: FormData,
) -> Answer {
    let p = posted(&c, &headers, &form).await?;
    let v = api_ok(
        &c,
        &p,
        Method::GET,
        &format!("{}/secret", ep_path(&p, &ep)),
        None,
    )
    .await?;
    Ok(page(
        &p,
        "Signing secret",
        html! {
            h1 { "Signing secret of " code { (ep) } }
            p { "Verify deliveries with this secret (Standard Webhooks / Svix libraries)." }
            pre aria-label="Signing secret" { (v["key"].as_str().unwrap_or("")) }
            p { a href=(format!("/portal/endpoints/{}", layout::path_segment(&ep))) { "Back to the endpoint" } }
        },
    ))
}

/// `GET /portal/messages`
pub async fn messages(State(c): State<Console>, headers: HeaderMap) -> Answer {
    let p = portal(&c, &headers).await?;
    let msgs = data(
        &c,
        &p,
        &format!("{}/msg?limit=100&with_content=false", app_path(&p)),
    )
    .await?;
    Ok(page(
        &p,
        "Messages",
        html! {
            h1 { "Messages" }
            @if msgs.is_empty() {
                p { "No messages yet." }
            } @else {
                table {
                    caption { "The latest messages of this application" }
                    (layout::header_row(&["Message", "Event type", "Sent"]))
                    tbody {
                        @for m in &msgs {
                            @let id = m["id"].as_str().unwrap_or("");
                            tr {
                                td { a href=(format!("/portal/messages/{}", layout::path_segment(id))) { (id) } }
                                td { (m["eventType"].as_str().unwrap_or("")) }
                                td { (m["timestamp"].as_str().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// `GET /portal/messages/{id}`: the payload, each endpoint's state and every
/// attempt with its answer (why it failed), and resend.
pub async fn message(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    let p = portal(&c, &headers).await?;
    let mp = format!("{}/msg/{}", app_path(&p), layout::path_segment(&id));
    let m = api_ok(&c, &p, Method::GET, &mp, None).await?;
    let eps = data(&c, &p, &format!("{mp}/endpoint")).await?;
    let atts = data(
        &c,
        &p,
        &format!(
            "{}/attempt/msg/{}?limit=250",
            app_path(&p),
            layout::path_segment(&id)
        ),
    )
    .await?;
    let payload = serde_json::to_string_pretty(&m["payload"]).unwrap_or_default();
    Ok(page(
        &p,
        "Message",
        html! {
            h1 { "Message " code { (id) } }
            p { "Event type " code { (m["eventType"].as_str().unwrap_or("")) } " · " (m["timestamp"].as_str().unwrap_or("")) }
            h2 { "Payload" }
            pre { (payload) }
            h2 { "Endpoints" }
            table {
                caption { "Where this message goes" }
                (layout::header_row(&["Endpoint", "Status", "Resend"]))
                tbody {
                    @for e in &eps {
                        @let eid = e["id"].as_str().unwrap_or("");
                        tr {
                            td { (eid) }
                            td { (e["statusText"].as_str().unwrap_or("")) }
                            td {
                                form method="post" action=(format!("/portal/messages/{}/resend/{}", layout::path_segment(&id), layout::path_segment(eid))) {
                                    input type="hidden" name="csrf" value=(p.session.csrf);
                                    button type="submit" aria-label=(format!("Resend to {eid}")) { "Resend" }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Attempts" }
            table {
                caption { "Every delivery attempt, with the endpoint's answer or the error" }
                (layout::header_row(&["Attempt", "Endpoint", "Status", "HTTP", "Answer or error", "When"]))
                tbody {
                    @for a in &atts {
                        tr {
                            td { (a["id"].as_str().unwrap_or("")) }
                            td { (a["endpointId"].as_str().unwrap_or("")) }
                            td { (a["statusText"].as_str().unwrap_or("")) }
                            td { (a["responseStatusCode"]) }
                            td { (a["response"].as_str().unwrap_or("")) }
                            td { (a["timestamp"].as_str().unwrap_or("")) }
                        }
                    }
                }
            }
        },
    ))
}

/// `POST /portal/messages/{id}/resend/{ep}`
pub async fn resend(
    State(c): State<Console>,
    headers: HeaderMap,
    Path((id, ep)): Path<(String, String)>,
    form: FormData,
) -> Answer {
    let p = posted(&c, &headers, &form).await?;
    let path = format!(
        "{}/msg/{}/endpoint/{}/resend",
        app_path(&p),
        layout::path_segment(&id),
        layout::path_segment(&ep)
    );
    api_ok(&c, &p, Method::POST, &path, None).await?;
    Ok(see_other(&format!(
        "/portal/messages/{}",
        layout::path_segment(&id)
    )))
}

//! Console authentication: the login form, sessions, roles and CSRF.
//!
//! Invariants:
//! - A token is compared in constant time (the admin API's comparison), and never
//!   logged, stored or echoed; a session is a fresh random id, unrelated to it.
//! - Sessions live in memory, at most [`MAX_SESSIONS`] (the oldest goes first) and
//!   each for [`SESSION_TTL_MS`] at most; a restart logs everyone out.
//! - Every POST passes [`check_post`]: same origin (`Sec-Fetch-Site`, else
//!   `Origin`), the session's CSRF token in the form, and, for a change, the
//!   admin role. The login form, which has no session yet, uses a double-submit
//!   cookie instead.
//! - Failed logins are limited per client address ([`super::ratelimit`]): past
//!   the limit the token is not even compared, the answer is 429.

use std::collections::{HashMap, VecDeque};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use parking_lot::Mutex;
use rand::RngCore;

use super::layout;
use super::Console;
use crate::config::Secret;
use crate::store::Millis;

/// Sessions held at once; a login beyond this ends the oldest session.
pub const MAX_SESSIONS: usize = 1024;
/// How long a session lasts after its login (12 hours).
pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;
/// The session cookie.
pub const SESSION_COOKIE: &str = "hookgate_session";
/// The login form's double-submit cookie.
pub const LOGIN_COOKIE: &str = "hookgate_login";

/// What a session may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything (a token of `server.admin_tokens`).
    Admin,
    /// Look only (a token of `server.admin_read_tokens`).
    ReadOnly,
}

impl Role {
    /// How the console names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::ReadOnly => "read-only",
        }
    }
}

/// A logged-in session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Its role.
    pub role: Role,
    /// The SHA-256 digest of the token it logged in with (never the token):
    /// a session ends when a reload takes the token away or changes its role.
    pub token_digest: [u8; 32],
    /// The token every form of this session carries.
    pub csrf: String,
    /// When it ends.
    pub expires_at: Millis,
}

/// The sessions, bounded in number and time.
pub struct Sessions {
    inner: Mutex<Inner>,
    max: usize,
    ttl_ms: i64,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<String, Session>,
    /// Ids in login order; may hold ids already gone (logged out), skipped on eviction.
    order: VecDeque<String>,
}

impl Sessions {
    /// At most `max` sessions, each lasting `ttl_ms`.
    pub fn new(max: usize, ttl_ms: i64) -> Self {
        Sessions {
            inner: Mutex::new(Inner::default()),
            max: max.max(1),
            ttl_ms,
        }
    }

    /// Starts a session; returns its id and the session.
    pub fn create(&self, role: Role, token_digest: [u8; 32], now: Millis) -> (String, Session) {
        let id = random_token();
        let s = Session {
            role,
            token_digest,
            csrf: random_token(),
            expires_at: now + self.ttl_ms,
        };
        let mut g = self.inner.lock();
        g.by_id.retain(|_, s| s.expires_at > now);
        while g.by_id.len() >= self.max {
            match g.order.pop_front() {
                Some(old) => {
                    g.by_id.remove(&old);
                }
                None => break,
            }
        }
        g.by_id.insert(id.clone(), s.clone());
        g.order.push_back(id.clone());
        // Ids of ended sessions are dropped from the order now and then, so it
        // stays bounded too.
        if g.order.len() > 2 * self.max {
            let Inner { by_id, order } = &mut *g;
            order.retain(|i| by_id.contains_key(i));
        }
        (id, s)
    }

    /// The live session with this id.
    pub fn get(&self, id: &str, now: Millis) -> Option<Session> {
        let mut g = self.inner.lock();
        match g.by_id.get(id) {
            Some(s) if s.expires_at > now => Some(s.clone()),
            Some(_) => {
                g.by_id.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends a session.
    pub fn remove(&self, id: &str) {
        self.inner.lock().by_id.remove(id);
    }

    /// Live and expired-but-not-yet-dropped sessions held.
    pub fn len(&self) -> usize {
        self.inner.lock().by_id.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// 32 random bytes, hex.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// The value of cookie `name`, if the request has it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value with the console's attributes.
pub fn set_cookie(name: &str, value: &str, path: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; HttpOnly; SameSite=Strict; Path={path}; Max-Age={max_age}{secure}"
    ))
    .expect("cookie values are hex")
}

/// Which role a token has, compared in constant time against every token.
pub fn role_of(c: &Console, token: &str) -> Option<Role> {
    if token.is_empty() {
        return None;
    }
    let cfg = c.admin.config();
    let admin = crate::ingest::verify::any_key_eq(&cfg.server.admin_tokens, token.as_bytes());
    let read = crate::ingest::verify::any_key_eq(&cfg.server.admin_read_tokens, token.as_bytes());
    if admin {
        Some(Role::Admin)
    } else if read {
        Some(Role::ReadOnly)
    } else {
        None
    }
}

/// The digest a session keeps of its token.
pub fn digest(token: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// The role of the token whose digest a session keeps, under the tokens
/// configured now (a reload may have taken it away).
fn role_of_digest(c: &Console, d: &[u8; 32]) -> Option<Role> {
    let cfg = c.admin.config();
    let any = |tokens: &[Secret]| {
        // Every token is compared, so the time taken says nothing of which matched.
        tokens.iter().fold(false, |hit, t| {
            crate::ingest::verify::ct_eq(&digest(t.expose()), d) | hit
        })
    };
    if any(&cfg.server.admin_tokens) {
        Some(Role::Admin)
    } else if any(&cfg.server.admin_read_tokens) {
        Some(Role::ReadOnly)
    } else {
        None
    }
}

/// Whether a state-changing request comes from the console's own pages:
/// `Sec-Fetch-Site` when the browser sends it, else `Origin` against `Host`.
/// A request with neither (not from a browser) relies on the CSRF token alone.
pub fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return site == "same-origin" || site == "none";
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
            return false;
        };
        return origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .is_some_and(|(scheme, rest)| (scheme == "http" || scheme == "https") && rest == host);
    }
    true
}

/// A logged-in request: its session id and session.
#[derive(Debug, Clone)]
pub struct Authed {
    /// The session id (the cookie's value).
    pub id: String,
    /// The session.
    pub session: Session,
}

impl Authed {
    /// The role.
    pub fn role(&self) -> Role {
        self.session.role
    }
}

/// The session of a request, if it has a live one.
pub fn session_of(c: &Console, headers: &HeaderMap) -> Option<Authed> {
    let id = cookie(headers, SESSION_COOKIE)?;
    let session = c.sessions.get(id, c.admin.clock.now_millis())?;
    if role_of_digest(c, &session.token_digest) != Some(session.role) {
        // The token was rotated out by a reload: the session ends with it.
        c.sessions.remove(id);
        return None;
    }
    Some(Authed {
        id: id.to_string(),
        session,
    })
}

/// Pages: without a session, a redirect to the login form (coming back here after).
impl FromRequestParts<Console> for Authed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, c: &Console) -> Result<Self, Response> {
        if let Some(a) = session_of(c, &parts.headers) {
            return Ok(a);
        }
        if super::portal::has_portal_cookie(&parts.headers) {
            // A tenant's portal session never reaches the operator's pages.
            return Err(layout::error_page(
                StatusCode::FORBIDDEN,
                "Not allowed",
                "A portal session does not reach the operator's console.",
            ));
        }
        if parts.method != axum::http::Method::GET {
            return Err(layout::error_page(
                StatusCode::FORBIDDEN,
                "Not logged in",
                "Log in first.",
            ));
        }
        let next = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("next", next)
            .finish();
        Err(Redirect::to(&format!("/login?{q}")).into_response())
    }
}

/// Checks a POST: same origin, the session's CSRF token, and the admin role when
/// it changes state (`change`). `Some` is the refusal to answer with (403).
pub fn check_post(
    a: &Authed,
    headers: &HeaderMap,
    form: &super::FormData,
    change: bool,
) -> Option<Response> {
    if !same_origin(headers) {
        return Some(layout::error_page(
            StatusCode::FORBIDDEN,
            "Refused",
            "This request did not come from the console's own pages.",
        ));
    }
    let given = form.get("csrf").unwrap_or("");
    if !crate::ingest::verify::ct_eq(given.as_bytes(), a.session.csrf.as_bytes()) {
        return Some(layout::error_page(
            StatusCode::FORBIDDEN,
            "Refused",
            "The form's security token is missing or wrong. Go back, reload the page and try again.",
        ));
    }
    if change && a.role() != Role::Admin {
        return Some(layout::error_page(
            StatusCode::FORBIDDEN,
            "Read-only",
            "You are logged in with a read-only token: this action is not allowed.",
        ));
    }
    None
}

/// A `next` target that stays on this server (a path, never `//host`).
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n
        }
        _ => "/",
    }
}

/// `GET /login`
pub async fn login_form(
    axum::extract::State(c): axum::extract::State<Console>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    login_page(&c, q.get("next").map(String::as_str), None, StatusCode::OK)
}

fn login_page(
    c: &Console,
    next: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let token = random_token();
    let body = html! {
        section.login {
            h1 { "Log in to hookgate" }
            @if let Some(e) = error {
                p.notice.error role="alert" { (e) }
            }
            form method="post" action="/login" {
                input type="hidden" name="csrf" value=(token);
                input type="hidden" name="next" value=(local_path(next));
                label for="token" { "Admin token" }
                input id="token" type="password" name="token" autocomplete="current-password" required;
                button type="submit" { "Log in" }
            }
            p.hint { "A token from " code { "server.admin_tokens" } " (full access) or "
                code { "server.admin_read_tokens" } " (read-only)." }
        }
    };
    let mut r = layout::bare_page("Log in", body, status);
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_COOKIE, &token, "/login", 3600, c.secure_cookie),
    );
    r
}

/// `POST /login`
pub async fn login(
    axum::extract::State(c): axum::extract::State<Console>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    form: super::FormData,
) -> Response {
    let next = form.get("next");
    let ip = peer.map(|p| (p.0).0.ip());
    let now = c.admin.clock.now_millis();
    if let Some(wait) = c.logins.blocked(ip, now) {
        crate::telemetry::events::ConsoleLoginRefused {
            client: ip,
            limited: true,
        }
        .emit();
        let mut r = login_page(
            &c,
            next,
            Some("Too many wrong tokens from this address. Wait a minute and try again."),
            StatusCode::TOO_MANY_REQUESTS,
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return r;
    }
    if !same_origin(&headers) {
        return layout::error_page(
            StatusCode::FORBIDDEN,
            "Refused",
            "This request did not come from the console's own pages.",
        );
    }
    let given = form.get("csrf").unwrap_or("");
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !crate::ingest::verify::ct_eq(given.as_bytes(), expected.as_bytes()) {
        return login_page(
            &c,
            next,
            Some("The login form expired. Try again."),
            StatusCode::FORBIDDEN,
        );
    }
    let token = form.get("token").unwrap_or("");
    let Some(role) = role_of(&c, token) else {
        c.logins.failed(ip, now);
        crate::telemetry::events::ConsoleLoginRefused {
            client: ip,
            limited: false,
        }
        .emit();
        return login_page(
            &c,
            next,
            Some("That token is not accepted."),
            StatusCode::UNAUTHORIZED,
        );
    };
    c.logins.succeeded(ip);
    let (id, _) = c.sessions.create(role, digest(token), now);
    let mut r = Redirect::to(local_path(next)).into_response();
    let h = r.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(
            SESSION_COOKIE,
            &id,
            "/",
            SESSION_TTL_MS / 1000,
            c.secure_cookie,
        ),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(LOGIN_COOKIE, "", "/login", 0, c.secure_cookie),
    );
    r
}

/// `POST /logout`
pub async fn logout(
    axum::extract::State(c): axum::extract::State<Console>,
    a: Authed,
    headers: HeaderMap,
    form: super::FormData,
) -> Response {
    if let Some(r) = check_post(&a, &headers, &form, false) {
        return r;
    }
    c.sessions.remove(&a.id);
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", "/", 0, c.secure_cookie),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_bounded_and_the_oldest_goes_first() {
        let s = Sessions::new(3, 1000);
        let ids: Vec<String> = (0..5)
            .map(|_| s.create(Role::Admin, digest("t"), 0).0)
            .collect();
        assert_eq!(s.len(), 3);
        assert!(s.get(&ids[0], 1).is_none());
        assert!(s.get(&ids[1], 1).is_none());
        for id in &ids[2..] {
            assert!(s.get(id, 1).is_some());
        }
    }

    #[test]
    fn logged_out_ids_do_not_grow_the_order_without_bound() {
        let s = Sessions::new(2, 1000);
        for _ in 0..100 {
            let (id, _) = s.create(Role::ReadOnly, digest("t"), 0);
            s.remove(&id);
        }
        assert!(s.inner.lock().order.len() <= 4);
        assert!(s.is_empty());
    }

    #[test]
    fn sessions_expire() {
        let s = Sessions::new(10, 1000);
        let (id, sess) = s.create(Role::ReadOnly, digest("t"), 5);
        assert_eq!(sess.role, Role::ReadOnly);
        assert!(s.get(&id, 1004).is_some());
        assert!(s.get(&id, 1005).is_none());
        assert!(s.is_empty(), "an expired session is dropped when seen");
    }

    #[test]
    fn ids_and_csrf_tokens_are_random_and_distinct() {
        let s = Sessions::new(10, 1000);
        let (a, sa) = s.create(Role::Admin, digest("t"), 0);
        let (b, sb) = s.create(Role::Admin, digest("t"), 0);
        assert_ne!(a, b);
        assert_ne!(sa.csrf, sb.csrf);
        assert_ne!(a, sa.csrf);
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn same_origin_checks() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        assert!(same_origin(&h(&[("sec-fetch-site", "same-origin")])));
        assert!(!same_origin(&h(&[("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(&h(&[("sec-fetch-site", "same-site")])));
        assert!(same_origin(&h(&[
            ("origin", "http://127.0.0.1:8081"),
            ("host", "127.0.0.1:8081")
        ])));
        assert!(!same_origin(&h(&[
            ("origin", "http://evil.example"),
            ("host", "127.0.0.1:8081")
        ])));
        assert!(!same_origin(&h(&[
            ("origin", "null"),
            ("host", "127.0.0.1:8081")
        ])));
        assert!(same_origin(&h(&[])));
    }

    #[test]
    fn next_stays_local() {
        assert_eq!(local_path(Some("/messages?x=1")), "/messages?x=1");
        assert_eq!(local_path(Some("//evil.example/")), "/");
        assert_eq!(local_path(Some("/\\evil.example")), "/");
        assert_eq!(local_path(Some("https://evil.example/")), "/");
        assert_eq!(local_path(None), "/");
        // Never a header-breaking or odd character (a redirect's Location).
        assert_eq!(local_path(Some("/messages\r\nSet-Cookie: x=1")), "/");
        assert_eq!(local_path(Some("/messages é")), "/");
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut m = HeaderMap::new();
        m.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; hookgate_session=abc; b=2"),
        );
        assert_eq!(cookie(&m, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&m, "c"), None);
        let v = set_cookie(SESSION_COOKIE, "abc", "/", 60, true);
        let v = v.to_str().unwrap();
        assert!(v.contains("HttpOnly") && v.contains("SameSite=Strict") && v.contains("Secure"));
        assert!(v.contains("Path=/;"));
    }
}

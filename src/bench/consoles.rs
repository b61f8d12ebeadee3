//! Open consoles during the load phases (`--consoles N`): N sessions that log
//! in as a browser does (the login form's double-submit token, then the
//! session cookie) and each load the overview page (`/`) and its live fragment
//! (`/overview/fragment`) every [`EVERY`], more than a visible tab asks (the
//! page itself only asks for the fragment). Their starts are spread over the
//! interval, as tabs opened at different times would be.
//!
//! The sessions are stopped (and their tasks aborted) when the
//! [`Consoles`] is stopped or dropped, so an early error in a phase leaves
//! nothing running.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

/// How often each open console asks.
pub const EVERY: Duration = Duration::from_secs(10);

/// What the open consoles did.
#[derive(Debug, Default)]
pub struct Tally {
    /// Answers with status 200.
    pub ok: AtomicU64,
    /// Failed logins, other statuses and transport errors.
    pub failed: AtomicU64,
}

/// Running console sessions.
pub struct Consoles {
    set: JoinSet<()>,
    tally: Arc<Tally>,
}

impl Consoles {
    /// Starts `n` sessions against the admin listener at `admin`, logging in
    /// with `token` (none when `n` is 0).
    pub fn start(admin: SocketAddr, token: &str, n: u32) -> Consoles {
        let tally = Arc::new(Tally::default());
        let mut set = JoinSet::new();
        for i in 0..n {
            let (tally, token) = (tally.clone(), token.to_string());
            let offset = EVERY.mul_f64(f64::from(i) / f64::from(n));
            set.spawn(async move {
                tokio::time::sleep(offset).await;
                session(admin, &token, &tally).await;
            });
        }
        Consoles { set, tally }
    }

    /// Stops the sessions; returns (answers with 200, failures).
    pub fn stop(mut self) -> (u64, u64) {
        self.set.abort_all();
        (
            self.tally.ok.load(Ordering::Relaxed),
            self.tally.failed.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Consoles {
    fn drop(&mut self) {
        self.set.abort_all();
    }
}

/// One browser tab: log in, then the page and the fragment every [`EVERY`].
async fn session(admin: SocketAddr, token: &str, tally: &Tally) {
    let Ok(http) = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
    else {
        tally.failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let base = format!("http://{admin}");
    let Some(session) = login(&http, &base, token).await else {
        tally.failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let cookie = format!("hookgate_session={session}");
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        for path in ["/", "/overview/fragment"] {
            let r = http
                .get(format!("{base}{path}"))
                .header("cookie", &cookie)
                .send()
                .await;
            let ok = match r {
                Ok(r) if r.status() == 200 => r.bytes().await.is_ok(),
                _ => false,
            };
            let counter = if ok { &tally.ok } else { &tally.failed };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Logs in through the form; the session cookie's value.
async fn login(http: &reqwest::Client, base: &str, token: &str) -> Option<String> {
    let r = http.get(format!("{base}/login")).send().await.ok()?;
    let form_cookie = cookie(r.headers(), "hookgate_login")?;
    let html = r.text().await.ok()?;
    let marker = "name=\"csrf\" value=\"";
    let rest = &html[html.find(marker)? + marker.len()..];
    let csrf = &rest[..rest.find('"')?];
    let r = http
        .post(format!("{base}/login"))
        .header("sec-fetch-site", "same-origin")
        .header("cookie", format!("hookgate_login={form_cookie}"))
        .form(&[("csrf", csrf), ("token", token), ("next", "/")])
        .send()
        .await
        .ok()?;
    cookie(r.headers(), "hookgate_session")
}

/// The value of the `Set-Cookie` named `name`.
fn cookie(h: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    h.get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(name)?.strip_prefix('='))
        .map(|v| v.split(';').next().unwrap_or_default().to_string())
}

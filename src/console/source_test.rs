//! **Send test webhook** on the sources page: the provider's example payload,
//! signed with the source's own secret ([`crate::ingest::verify::sign`]), POSTed
//! over real HTTP to the gateway's own ingest listener, so it goes through
//! verification, dedup, routing and storage like any request; the page then
//! shows what ingest answered.
//!
//! Invariants: admin only, CSRF-checked ([`check_post`]); the secret and the
//! signature are never shown or logged (the log has the source, the status and
//! the message id).

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;

use super::auth::{check_post, Authed};
use super::layout::{self, Nav};
use super::{Console, FormData};
use crate::ingest::verify::sign;

/// How long the test request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// What ingest answered.
struct Outcome {
    status: StatusCode,
    message_id: Option<String>,
}

/// Where to reach the ingest listener from inside the gateway (an unspecified
/// bind address is reached on loopback).
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], addr.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

async fn post(url: &str, ex: sign::Example) -> Result<Outcome, reqwest::Error> {
    let client = reqwest::Client::builder()
        .no_proxy()
        // The gateway calling its own ingest listener by its loopback (or
        // bound) address: the certificate names the public host, which this
        // address cannot match, and the request never leaves this host.
        .danger_accept_invalid_certs(true)
        .timeout(TIMEOUT)
        .build()?;
    let mut req = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, ex.content_type);
    for (k, v) in &ex.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let r = req.body(ex.body).send().await?;
    let message_id = r
        .headers()
        .get("hookgate-message-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok(Outcome {
        status: StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
        message_id,
    })
}

/// Why ingest refused, in words.
fn refusal(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "verification failed: the signature did not match the source's secret",
        403 => "this address is not allowed to send to the source (allow_ips)",
        413 => "the example is larger than the source's max_body",
        429 => "the source's rate limit was reached; try again in a moment",
        503 => "the store is unavailable or full",
        _ => "ingest refused the request",
    }
}

fn result_page(a: &Authed, name: &str, body: maud::Markup, status: StatusCode) -> Response {
    let body = html! {
        h1 { "Test webhook: " (name) }
        (body)
        p { a href="/sources" { "Back to sources" } }
    };
    layout::page_status(a, Nav::Sources, "Test webhook", body, status)
}

/// `POST /sources/{name}/test`
pub async fn send_test(
    State(c): State<Console>,
    a: Authed,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: FormData,
) -> Response {
    if let Some(r) = check_post(&a, &headers, &form, true) {
        return r;
    }
    let cfg = c.admin.config();
    let Some(src) = cfg.sources.iter().find(|s| s.name.get_ref() == &name) else {
        return layout::error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such source.",
        );
    };
    let Some(verify) = src.verify.as_ref().map(|v| v.get_ref()) else {
        let text = html! { p.notice.error role="alert" { "This source has no verify table (anyone, or only its allowed addresses, can send), so there is no secret to sign a test webhook with. Send one with curl instead." } };
        return result_page(&a, &name, text, StatusCode::CONFLICT);
    };
    let addr = reachable(c.admin.ingest_addr);
    let path = format!("/in/{}", layout::path_segment(&name));
    let scheme = if c.admin.ingest_tls { "https" } else { "http" };
    let url = format!("{scheme}://{addr}{path}");
    let unique = format!("{:016x}", rand::random::<u64>());
    let now = c.admin.clock.now_millis() / 1000;
    let ex = match sign::example(verify, &url, &unique, now) {
        Ok(ex) => ex,
        Err(e) => {
            let text = html! { p.notice.error role="alert" { "Not sent: " (e.to_string()) "." } };
            return result_page(&a, &name, text, StatusCode::CONFLICT);
        }
    };
    let what = ex.what.clone();
    let outcome = post(&url, ex).await;
    let body = match &outcome {
        Ok(o) => {
            super::dest_actions::action("test webhook sent", &name, o.message_id.as_deref());
            html! {
                p { "Sent a signed example (" (what) ") to " code { (url) } "." }
                @if o.status.is_success() {
                    p.notice role="status" { "Accepted: ingest answered " (o.status.as_u16()) "." }
                } @else {
                    p.notice.error role="alert" { "Refused: ingest answered " (o.status.as_u16()) ", " (refusal(o.status)) "." }
                }
                @if let Some(id) = &o.message_id {
                    p { "Stored as message " a.mono href={ "/messages/" (id) } { (id) } "." }
                }
            }
        }
        Err(e) => {
            tracing::warn!(source = %name, error = %e, "console: test webhook could not be sent");
            html! { p.notice.error role="alert" { "The ingest listener could not be reached: " (e.to_string()) } }
        }
    };
    let status = match &outcome {
        Ok(_) => StatusCode::OK,
        _ => StatusCode::BAD_GATEWAY,
    };
    result_page(&a, &name, body, status)
}

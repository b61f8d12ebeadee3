//! Rejected requests: the last requests each source refused (401, 403, 404,
//! 408, 413, 429), newest first, with the reason in plain words; a row opens
//! to the request's headers (secrets masked) and the start of its body. Read
//! from ingest's in-memory log ([`crate::ingest::rejects`]), the same one as
//! `GET /api/v1/rejected`; the page changes nothing, so read-only may see it.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};

use super::auth::Authed;
use super::layout::{self, Nav};
use super::{param, Console};
use crate::ingest::rejects::{RejectedRequest, BODY_MAX, PER_SOURCE, TOTAL};

/// Rows on the page.
const PAGE: usize = 200;

/// `GET /rejected`
pub async fn list(
    State(c): State<Console>,
    a: Authed,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let source = param(&q, "source");
    let s = &c.admin;
    let items = s.rejects.list(source, PAGE);
    let now = s.clock.now_millis();
    let cfg = s.config();
    let names: Vec<&str> = cfg
        .sources
        .iter()
        .map(|s| s.name.get_ref().as_str())
        .collect();
    let body = html! {
        h1 { "Rejected requests" }
        p.hint {
            "The last " (PER_SOURCE) " requests each source refused (" (TOTAL) " in all) and the last "
            "requests for sources that do not exist, newest first, since the gateway started. "
            "Secret and signature headers are masked; bodies are cut at 2 KiB."
        }
        form.filters method="get" action="/rejected" {
            div.field {
                label for="source" { "Source" }
                select id="source" name="source" {
                    option value="" { "Every source" }
                    @for n in &names {
                        option value=(n) selected[source == Some(*n)] { (n) }
                    }
                }
            }
            button type="submit" { "Filter" }
        }
        div.table-wrap {
            table id="rejected-list" {
                caption.visually-hidden { "Rejected requests, newest first" }
                thead {
                    tr {
                        th scope="col" { "Time" }
                        th scope="col" { "Source" }
                        th scope="col" { "Status" }
                        th scope="col" { "Reason" }
                    }
                }
                tbody {
                    @if items.is_empty() {
                        tr { td colspan="4" { "No rejected requests." } }
                    }
                    @for r in &items { (row(r, now)) }
                }
            }
        }
    };
    layout::page(&a, Nav::Rejected, "Rejected requests", body)
}

/// One refused request: when, where, the status and the reason, and the
/// request itself behind a disclosure.
fn row(r: &RejectedRequest, now: i64) -> Markup {
    let status_text = StatusCode::from_u16(r.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    html! {
        tr.rejected {
            td { (layout::when(r.at, Some(now))) }
            td {
                (r.source)
                @if !r.known { " " span.hint { "(no such source)" } }
            }
            td { span class="status s-dead" { (r.status) " " (status_text) } }
            td {
                p.reason { (words(&r.reason)) }
                details {
                    summary { "Request: " span.mono { (r.method) " " (r.path) } }
                    (request(r))
                }
            }
        }
    }
}

/// A reason's text with its `quoted` names (headers, config keys) as code.
fn words(text: &str) -> Markup {
    html! {
        @for (i, part) in text.split('`').enumerate() {
            @if i % 2 == 1 { code { (part) } } @else { (part) }
        }
    }
}

/// The request behind a row: client address, headers, body.
fn request(r: &RejectedRequest) -> Markup {
    html! {
        dl.summary {
            dt { "Client address" } dd.mono { (r.client_ip) }
            dt { "Reason code" } dd.mono { (r.code) }
        }
        table.kv {
            caption { "Headers (secrets and signatures masked)" }
            thead { tr { th scope="col" { "Header" } th scope="col" { "Value" } } }
            tbody {
                @for h in &r.headers {
                    tr { th scope="row" { (h.name) } td.mono { (h.value) } }
                }
                @if r.headers_omitted > 0 {
                    tr { td colspan="2" { "… and " (r.headers_omitted) " more headers" } }
                }
            }
        }
        @match (&r.body, r.body_len) {
            (Some(b), Some(len)) => {
                p { "Body (" (len) " bytes" @if len > BODY_MAX { ", the first 2 KiB shown" } "):" }
                pre.body { (b) }
            }
            _ => { p.hint { "The body was not read." } }
        }
    }
}

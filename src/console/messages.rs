//! Messages: the live, filterable listing (`/messages`, its rows fragment
//! `/messages/rows` that the script polls), the detail page with the received
//! request and each delivery's attempts (`/messages/{id}`), and replay.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};

use super::auth::{check_post, Authed};
use super::layout::{self, Nav};
use super::mask;
use super::{param, Console, FormData};
use crate::clock::Millis;
use crate::store::{
    DeliveryInfo, DeliveryQuery, DeliveryStatus, MessageDetail, MessageId, MessageQuery,
    MessageStatus, MessageSummary, StoreError, StoredMessage,
};
use crate::telemetry::events::Replayed;

/// Rows per page.
const PAGE: usize = 50;

/// A listing's filter, from the query string.
struct Filter {
    source: Option<String>,
    status: Option<String>,
    destination: Option<String>,
    event_type: Option<String>,
    /// Times as typed (`datetime-local`, UTC, or RFC 3339).
    since: Option<String>,
    until: Option<String>,
    /// A dedup key (what the search box holds when it is not a message id).
    key: Option<String>,
    cursor: Option<String>,
}

impl Filter {
    fn from(q: &HashMap<String, String>) -> Self {
        let own = |n: &str| param(q, n).map(str::to_string);
        Filter {
            source: own("source"),
            status: own("status"),
            destination: own("destination"),
            event_type: own("event_type"),
            since: own("since"),
            until: own("until"),
            key: own("q"),
            cursor: own("cursor"),
        }
    }

    /// The query string of this filter (without the cursor).
    fn query(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("q", &self.key),
            ("source", &self.source),
            ("status", &self.status),
            ("destination", &self.destination),
            ("event_type", &self.event_type),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if let Some(v) = v {
                s.append_pair(k, v);
            }
        }
        s.finish()
    }

    /// Whether a filter that only messages have is set (a listing by
    /// destination lists deliveries, which these do not filter).
    fn has_message_filters(&self) -> bool {
        self.event_type.is_some()
            || self.since.is_some()
            || self.until.is_some()
            || self.key.is_some()
    }

    /// The store's query for this filter; a bad value is a sentence for the user.
    fn message_query(&self) -> Result<MessageQuery, String> {
        let status = match self.status.as_deref() {
            Some(s) => Some(
                s.parse::<MessageStatus>()
                    .map_err(|_| "Status is one of pending, delivered, dead.".to_string())?,
            ),
            None => None,
        };
        let time = |label: &str, v: &Option<String>| match v {
            Some(v) => crate::clock::parse_form_time(v)
                .map(Some)
                .ok_or_else(|| format!("{label} is a time like 2026-01-31T12:00 (UTC).")),
            None => Ok(None),
        };
        Ok(MessageQuery {
            source: self.source.clone(),
            status,
            event_type: self.event_type.clone(),
            since: time("From", &self.since)?,
            until: time("To", &self.until)?,
            dedup_key: self.key.clone(),
            limit: PAGE,
            cursor: self.cursor.clone(),
        })
    }
}

/// What a listing found: messages, or (filtered by destination) deliveries.
enum Rows {
    Messages(Vec<MessageSummary>),
    Deliveries(Vec<DeliveryInfo>),
}

/// Reads one page; a problem with the filter is a sentence for the user.
async fn load(c: &Console, f: &Filter) -> Result<(Rows, Option<String>), String> {
    let bad_cursor = |e: StoreError| match e {
        StoreError::NotFound => "That page link is not valid any more.".to_string(),
        e => {
            tracing::warn!(error = %e, "console: store call failed");
            "The store is unavailable; try again.".to_string()
        }
    };
    if let Some(d) = &f.destination {
        let status = match f.status.as_deref() {
            Some(s) => Some(s.parse::<DeliveryStatus>().map_err(|_| {
                "Status is one of pending, queued, delivered, dead, replayed.".to_string()
            })?),
            None => None,
        };
        let q = DeliveryQuery {
            destination: Some(d.clone()),
            status,
            limit: PAGE,
            cursor: f.cursor.clone(),
        };
        let p = c.admin.store.deliveries(&q).await.map_err(bad_cursor)?;
        Ok((Rows::Deliveries(p.items), p.next_cursor))
    } else {
        let q = f.message_query()?;
        let p = c.admin.store.messages(&q).await.map_err(bad_cursor)?;
        Ok((Rows::Messages(p.items), p.next_cursor))
    }
}

fn message_status_str(s: MessageStatus) -> &'static str {
    match s {
        MessageStatus::Pending => "pending",
        MessageStatus::Delivered => "delivered",
        MessageStatus::Dead => "dead",
    }
}

fn head_cells(rows: &Rows) -> Markup {
    html! {
        @match rows {
            Rows::Messages(_) => {
                th scope="col" { "Received" }
                th scope="col" { "Message" }
                th scope="col" { "Source" }
                th scope="col" { "Event type" }
                th scope="col" { "Status" }
                th scope="col" { "Deliveries" }
            }
            Rows::Deliveries(_) => {
                th scope="col" { "Created" }
                th scope="col" { "Message" }
                th scope="col" { "Destination" }
                th scope="col" { "Status" }
                th scope="col" { "Attempts" }
            }
        }
    }
}

/// The table rows; `now` fills in relative times (the live fragment leaves them
/// to the script, so that it only changes when the data does).
fn body_rows(rows: &Rows, now: Option<i64>) -> Markup {
    html! {
        @match rows {
            Rows::Messages(items) => {
                @if items.is_empty() {
                    tr { td colspan="6" { "No messages." } }
                }
                @for m in items {
                    tr data-id=(m.id) {
                        td { (layout::when(m.received_at, now)) }
                        td { a.mono href={ "/messages/" (m.id) } { (m.id) } }
                        td { (m.source) }
                        td { (m.event_type.as_deref().unwrap_or("—")) }
                        td { (layout::status(message_status_str(m.status))) }
                        td { (m.deliveries) }
                    }
                }
            }
            Rows::Deliveries(items) => {
                @if items.is_empty() {
                    tr { td colspan="5" { "No deliveries." } }
                }
                @for d in items {
                    tr data-id=(d.id) {
                        td { (layout::when(d.created_at, now)) }
                        td { a.mono href={ "/messages/" (d.message_id) } { (d.message_id) } }
                        td { (d.destination) }
                        td { (layout::status(d.status.as_str())) }
                        td { (d.attempts) }
                    }
                }
            }
        }
    }
}

fn select(name: &str, label: &str, any: &str, options: &[String], current: Option<&str>) -> Markup {
    html! {
        div.field {
            label for=(name) { (label) }
            select id=(name) name=(name) {
                option value="" { (any) }
                @for o in options {
                    option value=(o) selected[current == Some(o.as_str())] { (o) }
                }
            }
        }
    }
}

/// `GET /messages`
pub async fn list(
    State(c): State<Console>,
    a: Authed,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let search = param(&q, "q");
    if let Some(s) = search {
        if let Ok(id) = s.parse::<MessageId>() {
            return Redirect::to(&format!("/messages/{id}")).into_response();
        }
    }
    let f = Filter::from(&q);
    let now = c.admin.clock.now_millis();
    let loaded = load(&c, &f).await;
    let body = html! {
        h1 { "Messages" }
        (filter_form(&c, &f, search))
        (filter_hints(&f))
        @match &loaded {
            Err(e) => { p.notice.error role="alert" { (e) } }
            Ok((rows, next)) => (results(&f, rows, next.as_deref(), now)),
        }
    };
    layout::page(&a, Nav::Messages, "Messages", body)
}

/// The filters of the messages list, set as `f` says.
fn filter_form(c: &Console, f: &Filter, search: Option<&str>) -> Markup {
    let mut sources: Vec<String> = c
        .admin
        .config()
        .sources
        .iter()
        .map(|s| s.name.get_ref().clone())
        .collect();
    sources.push(crate::config::API_SOURCE.to_string());
    let destinations: Vec<String> = c
        .admin
        .dispatcher
        .all()
        .iter()
        .map(|h| h.spec().name.clone())
        .collect();
    let statuses: &[&str] = if f.destination.is_some() {
        &[
            "pending",
            "queued",
            "delivered",
            "dead",
            "replayed",
            "dropped",
            "transform_failed",
        ]
    } else {
        &["pending", "delivered", "dead"]
    };
    let statuses: Vec<String> = statuses.iter().map(|s| s.to_string()).collect();
    html! {
        form.filters method="get" action="/messages" role="search" {
            div.field {
                label for="q" { "Search" }
                input id="q" type="search" name="q" placeholder="message id or dedup key" value=[search];
            }
            (select("source", "Source", "Any source", &sources, f.source.as_deref()))
            (select("status", "Status", "Any status", &statuses, f.status.as_deref()))
            (select("destination", "Destination", "Any destination", &destinations, f.destination.as_deref()))
            div.field {
                label for="event_type" { "Event type" }
                input id="event_type" type="text" name="event_type" value=[f.event_type.as_deref()];
            }
            div.field {
                label for="since" { "From (UTC)" }
                input id="since" type="datetime-local" step="1" name="since" value=[f.since.as_deref()];
            }
            div.field {
                label for="until" { "To (UTC)" }
                input id="until" type="datetime-local" step="1" name="until" value=[f.until.as_deref()];
            }
            button type="submit" { "Filter" }
        }
    }
}

/// What the filters mean for the list below them.
fn filter_hints(f: &Filter) -> Markup {
    html! {
        @if let Some(k) = &f.key {
            p.hint { "Messages remembered under the dedup key " code { (k) } " (a key is kept for its source's dedup window). A message id, msg_…, opens that message." }
        }
        @if f.destination.is_some() {
            p.hint { "Filtered by destination: one row per delivery to it." }
            @if f.has_message_filters() {
                p.notice.error role="alert" { "Search, event type and time filter messages, not deliveries: clear the destination to use them." }
            }
        }
    }
}

/// A page of the list, live on the first page, with the links to the others.
fn results(f: &Filter, rows: &Rows, next: Option<&str>, now: Millis) -> Markup {
    let live_url = format!("/messages/rows?{}", f.query());
    html! {
        div.table-wrap {
            table {
                caption.visually-hidden { "Messages, newest first" }
                thead { tr { (head_cells(rows)) } }
                @if f.cursor.is_none() {
                    tbody id="rows" data-live=(live_url) { (body_rows(rows, Some(now))) }
                } @else {
                    tbody { (body_rows(rows, Some(now))) }
                }
            }
        }
        p.pager {
            @if f.cursor.is_none() {
                span id="live" role="status" { "New messages appear here as they arrive." }
            } @else {
                a href={ "/messages?" (f.query()) } { "Newest" }
            }
            @if let Some(n) = next {
                @let q = if f.query().is_empty() { String::new() } else { format!("{}&", f.query()) };
                " "
                a rel="next" href={ "/messages?" (q) "cursor=" (n) } { "Older" }
            }
        }
    }
}

/// `GET /messages/rows`: the first page's rows, for the live table.
pub async fn rows(
    State(c): State<Console>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if super::auth::session_of(&c, &headers).is_none() {
        return (StatusCode::UNAUTHORIZED, "log in again").into_response();
    }
    let mut f = Filter::from(&q);
    f.cursor = None;
    match load(&c, &f).await {
        Ok((rows, _)) => (
            [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body_rows(&rows, None).into_string(),
        )
            .into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

fn not_found(a: &Authed) -> Response {
    layout::page_status(
        a,
        Nav::Messages,
        "Not found",
        html! { h1 { "Message not found" } p { "It may have been removed by retention." } },
        StatusCode::NOT_FOUND,
    )
}

/// The body, shown the most readable way: JSON indented, form posts decoded.
fn body_view(content_type: Option<&str>, body: &[u8]) -> Markup {
    let raw = String::from_utf8_lossy(body);
    let utf8 = std::str::from_utf8(body).is_ok();
    html! {
        @if body.is_empty() {
            p { "(empty body)" }
        } @else if let Some(p) = mask::pretty_json(body) {
            pre.body id="body" { code { (p) } }
            details { summary { "Raw body (" (body.len()) " bytes)" } pre.body { (raw) } }
        } @else if let Some(fields) = mask::form_fields(content_type, body) {
            div.table-wrap {
                table.kv id="body" {
                    caption { "Form fields" }
                    thead { tr { th scope="col" { "Field" } th scope="col" { "Value" } } }
                    tbody {
                        @for (k, v) in &fields {
                            tr { th scope="row" { (k) } td { (v) } }
                        }
                    }
                }
            }
            details { summary { "Raw body (" (body.len()) " bytes)" } pre.body { (raw) } }
        } @else {
            @if !utf8 { p.hint { "Not UTF-8: shown with replacement characters." } }
            pre.body id="body" { (raw) }
        }
    }
}

/// How a stored message was verified: every stored message passed its
/// source's check (a refused one is never stored), so this names the check.
fn verification(c: &Console, source: &str) -> Markup {
    if source == crate::config::API_SOURCE {
        return html! { "published through the API (admin token)" };
    }
    let verify = c
        .admin
        .config()
        .sources
        .iter()
        .find(|s| s.name.get_ref() == source)
        .map(|s| s.verify.as_ref().map(|v| v.get_ref().kind.as_str()));
    match verify {
        Some(Some(kind)) => {
            html! { (layout::status("passed")) " the source's " code { "verify" } " (" (kind) ")" }
        }
        Some(None) => {
            html! { "none: the source has no " code { "verify" } ", anyone can send to it" }
        }
        None => html! { "unknown: the source " code { (source) } " is no longer configured" },
    }
}

/// A two-column table of headers, secret values masked.
fn header_table(caption: &str, headers: &[(String, String)]) -> Markup {
    html! {
        div.table-wrap {
            table.kv {
                caption { (caption) }
                thead { tr { th scope="col" { "Header" } th scope="col" { "Value" } } }
                tbody {
                    @for (k, v) in headers {
                        tr {
                            th scope="row" { (k) }
                            @if mask::is_secret_header(k) {
                                td.masked { (mask::MASKED) }
                            } @else {
                                td { (v) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn delivery_view(d: &DeliveryInfo, now: i64) -> Markup {
    html! {
        section.delivery aria-labelledby={ "d" (d.id) } {
            h3 id={ "d" (d.id) } { "To " (d.destination) " " (layout::status(d.status.as_str())) }
            p.meta {
                (d.attempts) " attempt" @if d.attempts != 1 { "s" }
                @if let Some(t) = d.next_attempt_at {
                    @if matches!(d.status, DeliveryStatus::Pending) {
                        " · next attempt " (layout::when(t, Some(now)))
                    }
                }
                @if let Some(r) = d.replayed_by { " · replaced by a replay (delivery " (r) ")" }
            }
            @if let Some(log) = &d.attempt_log {
                @if log.is_empty() {
                    p.hint { "No attempt yet." }
                } @else {
                    ol.timeline {
                        @for t in log {
                            li class={ "attempt a-" (t.status()) } {
                                p {
                                    strong { "Attempt " (t.attempt) } " "
                                    (layout::status(t.status()))
                                    @if let Some(code) = t.response_status { " · HTTP " (code) }
                                    " · " (format!("{:.1}", t.duration_ms)) " ms · "
                                    (layout::when(t.started_at, Some(now)))
                                }
                                @if let Some(e) = &t.error {
                                    p.error { "Error: " (e) }
                                }
                                @if !t.response_headers.is_empty() {
                                    details.response-headers {
                                        summary { "Response headers (" (t.response_headers.len()) ")" }
                                        (header_table("Response headers (secrets masked)", &t.response_headers))
                                    }
                                }
                                @if let Some(b) = &t.response_body {
                                    p.label { "Response body (first 4 KiB)" }
                                    pre.body.response { (b) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /messages/{id}`
pub async fn detail(
    State(c): State<Console>,
    a: Authed,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Ok(id) = id.parse::<MessageId>() else {
        return not_found(&a);
    };
    let d = match c.admin.store.message(id).await {
        Ok(d) => d,
        Err(StoreError::NotFound) => return not_found(&a),
        Err(e) => {
            tracing::warn!(error = %e, "console: store call failed");
            return layout::error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Store unavailable",
                "The store is unavailable; try again.",
            );
        }
    };
    let now = c.admin.clock.now_millis();
    let mut dests: Vec<&str> = d
        .deliveries
        .iter()
        .map(|d| d.destination.as_str())
        .collect();
    dests.sort_unstable();
    dests.dedup();
    let body = html! {
        (layout::notice_box(param(&q, "notice")))
        h1.mono { (d.summary.id) }
        (summary(&c, &d, &dests, now))
        (message_actions(id, &dests, &a.session.csrf))
        (request_view(&c, id, &d.message))
        h2 { "Deliveries" }
        @if d.deliveries.is_empty() {
            p { "No route matched this message: it was not delivered anywhere." }
        }
        @for dl in &d.deliveries {
            (delivery_view(dl, now))
        }
    };
    layout::page(&a, Nav::Messages, &d.summary.id.to_string(), body)
}

/// A message's summary: status, source, type, times, and where it went.
fn summary(c: &Console, d: &MessageDetail, dests: &[&str], now: Millis) -> Markup {
    html! {
        dl.summary {
            dt { "Status" } dd { (layout::status(message_status_str(d.summary.status))) }
            dt { "Source" } dd { (d.summary.source) }
            dt { "Event type" } dd { (d.summary.event_type.as_deref().unwrap_or("—")) }
            dt { "Received" } dd { (layout::when(d.summary.received_at, Some(now))) }
            dt { "Content type" } dd { (d.message.content_type.as_deref().unwrap_or("—")) }
            dt { "Verification" } dd { (verification(c, &d.message.source)) }
            dt { "Routed to" } dd {
                @if dests.is_empty() { "no route took it" }
                @for (i, dest) in dests.iter().enumerate() {
                    @if i > 0 { ", " }
                    (dest)
                }
            }
        }
    }
}

/// Replay (to every destination or one of `dests`) and copy as curl.
fn message_actions(id: MessageId, dests: &[&str], csrf: &str) -> Markup {
    html! {
        div.actions {
            form.replay method="post" action={ "/messages/" (id) "/replay" } {
                input type="hidden" name="csrf" value=(csrf);
                @if dests.len() > 1 {
                    label for="replay-to" { "Replay to" }
                    select id="replay-to" name="destination" {
                        option value="" { "every destination" }
                        @for dest in dests {
                            option value=(dest) { (dest) }
                        }
                    }
                }
                button type="submit" { "Replay" }
            }
            button type="button" data-copy="curl" data-status="copy-status" hidden { "Copy as curl" }
            span id="copy-status" role="status" {}
        }
    }
}

/// The request as received: headers and body (secrets masked), the raw body's
/// download, and the request again as curl.
fn request_view(c: &Console, id: MessageId, m: &StoredMessage) -> Markup {
    let raw_headers = crate::store::decode_headers(&m.headers);
    let ingest = c.admin.ingest_addr;
    let scheme = if c.admin.ingest_tls { "https" } else { "http" };
    let curl = mask::curl(
        &format!("{scheme}://{ingest}/in/{}", m.source),
        &raw_headers,
        &m.body,
    );
    let headers: Vec<(String, String)> = raw_headers
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    html! {
        h2 { "Request" }
        (header_table("Headers (secrets and signatures masked)", &headers))
        h2 { "Body" }
        (body_view(m.content_type.as_deref(), &m.body))
        p { a href={ "/messages/" (id) "/raw" } download { "Download the raw body (" (m.body.len()) " bytes)" } }
        details {
            summary { "curl (secrets masked)" }
            pre id="curl" { (curl) }
        }
    }
}

/// `POST /messages/{id}/replay`: the API's replay (all destinations, or the one
/// in the form).
pub async fn replay(
    State(c): State<Console>,
    a: Authed,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: FormData,
) -> Response {
    if let Some(r) = check_post(&a, &headers, &form, true) {
        return r;
    }
    let Ok(id) = id.parse::<MessageId>() else {
        return not_found(&a);
    };
    let s = &c.admin;
    let dests = match form.get("destination").filter(|d| !d.is_empty()) {
        Some(d) => {
            if s.dispatcher.get(d).is_none() {
                return layout::error_page(
                    StatusCode::NOT_FOUND,
                    "Not found",
                    "There is no such destination.",
                );
            }
            vec![d.to_string()]
        }
        None => match s.store.message_destinations(id).await {
            Ok(d) => d,
            Err(StoreError::NotFound) => return not_found(&a),
            Err(e) => return unavailable(e),
        },
    };
    match s
        .store
        .replay_message(id, &dests, s.clock.now_millis())
        .await
    {
        Ok(_) => {}
        Err(StoreError::NotFound) => return not_found(&a),
        Err(e) => return unavailable(e),
    }
    for d in &dests {
        Replayed {
            destination: Some(d),
            count: 1,
        }
        .emit();
    }
    Redirect::to(&format!("/messages/{id}?notice=replayed")).into_response()
}

/// The answer when the store fails.
pub fn unavailable(e: StoreError) -> Response {
    tracing::warn!(error = %e, "console: store call failed");
    layout::error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Store unavailable",
        "The store is unavailable; try again.",
    )
}

/// `GET /messages/{id}/raw`: the body byte-exact, as a download (never shown
/// inline: it is the sender's content).
pub async fn raw(State(c): State<Console>, a: Authed, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<MessageId>() else {
        return not_found(&a);
    };
    match c.admin.store.message(id).await {
        Ok(d) => (
            [
                (
                    axum::http::header::CONTENT_TYPE,
                    "application/octet-stream".to_string(),
                ),
                (
                    axum::http::header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{id}.bin\""),
                ),
            ],
            d.message.body,
        )
            .into_response(),
        Err(StoreError::NotFound) => not_found(&a),
        Err(e) => unavailable(e),
    }
}

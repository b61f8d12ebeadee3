//! Alerts: the conditions that hold now and the alerts raised, newest first,
//! with the channel each went to and what became of it. Read from the alerts'
//! log ([`crate::alerts`]: the last 500, kept in the store across restarts), the
//! same as `GET /api/v1/alerts`; read-only may see it. The channels are listed
//! (secrets left out); an admin creates one (`POST /alerts/channels/new`) and
//! deletes one made at run time (`POST /alerts/channels/{name}/delete`) through
//! the registry's calls of the API, so the problems shown are the API's.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use maud::{html, Markup};
use serde_json::{Map, Value};

use super::auth::{check_post, Authed};
use super::layout::{self, Nav};
use super::{Console, FormData};
use crate::alerts::event::AlertEvent;
use crate::alerts::AlertRecord;

/// Past alerts on the page.
const PAGE: usize = 200;

/// `GET /alerts`
pub async fn list(State(c): State<Console>, a: Authed) -> Response {
    let alerts = &c.admin.alerts;
    let channels = alerts.channels();
    let registry = c.admin.registry.channels();
    let current = alerts.current();
    let past = alerts.past(PAGE).await;
    let body = html! {
        h1 { "Alerts" }
        @if channels.is_empty() {
            p.hint { "No alert channel is configured: add an " code { "[[alerts]]" } " table (docs/alerts.md) or create one below." }
        } @else {
            h2 id="channels-heading" { "Channels" }
            div.table-wrap {
                table id="alert-channels" aria-labelledby="channels-heading" {
                    thead { tr {
                        th scope="col" { "Name" }
                        th scope="col" { "Format" }
                        th scope="col" { "Events" }
                        th scope="col" { "Defined in" }
                    } }
                    tbody {
                        @for ch in channels.iter() {
                            tr {
                                td.mono { (ch.name) }
                                td { (ch.format.as_str()) }
                                td.mono { (ch.events.join(", ")) }
                                td {
                                    @if registry.is_file(&ch.name) {
                                        "config file"
                                    } @else {
                                        form method="post" action={ "/alerts/channels/" (layout::path_segment(&ch.name)) "/delete" } {
                                            input type="hidden" name="csrf" value=(a.session.csrf);
                                            "API "
                                            button type="submit" aria-label={ "Delete " (ch.name) } { "Delete" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 id="current-heading" { "Current" }
        div.table-wrap {
            table id="alerts-current" aria-labelledby="current-heading" {
                thead { tr {
                    th scope="col" { "Since" }
                    th scope="col" { "Event" }
                    th scope="col" { "Severity" }
                    th scope="col" { "What" }
                } }
                tbody {
                    @if current.is_empty() { tr { td colspan="4" { "Nothing is wrong now." } } }
                    @for e in &current { (current_row(e)) }
                }
            }
        }
        h2 id="past-heading" { "Past alerts" }
        div.table-wrap {
            table id="alerts-past" aria-labelledby="past-heading" {
                thead { tr {
                    th scope="col" { "Time" }
                    th scope="col" { "Channel" }
                    th scope="col" { "Event" }
                    th scope="col" { "What" }
                    th scope="col" { "Sent" }
                } }
                tbody {
                    @if past.is_empty() { tr { td colspan="5" { "No alert was raised." } } }
                    @for r in &past { (past_row(r)) }
                }
            }
        }
    };
    let body = html! { (body) (new_channel_form(&a)) };
    layout::page(&a, Nav::Alerts, "Alerts", body)
}

/// The fields of the new channel form: (name, label, kind of input, hint).
const FIELDS: &[(&str, &str, &str, &str)] = &[
    (
        "name",
        "Name",
        "text",
        "Letters, digits, - and _; its destination is alerts.<name>.",
    ),
    (
        "url",
        "URL",
        "password",
        "webhook, slack, discord, pagerduty: where to post (never shown again).",
    ),
    ("secret", "Signing secret", "password", "webhook: whsec_…"),
    ("bot_token", "Bot token", "password", "telegram"),
    ("chat_id", "Chat id", "text", "telegram"),
    (
        "api_url",
        "Bot API URL",
        "text",
        "telegram; empty: https://api.telegram.org",
    ),
    ("routing_key", "Routing key", "password", "pagerduty"),
    (
        "events",
        "Events",
        "text",
        "Comma-separated, globs such as destination.*; empty: all.",
    ),
];

/// The form that creates a channel (as `POST /api/v1/alert-channels` does).
fn new_channel_form(a: &Authed) -> Markup {
    html! {
        section aria-labelledby="new-channel" {
            h2 id="new-channel" { "New alert channel" }
            form method="post" action="/alerts/channels/new" {
                input type="hidden" name="csrf" value=(a.session.csrf);
                p {
                    label for="channel-format" { "Format" }
                    " "
                    select id="channel-format" name="format" {
                        @for f in ["webhook", "slack", "telegram", "discord", "pagerduty"] {
                            option value=(f) { (f) }
                        }
                    }
                }
                @for (name, label, kind, hint) in FIELDS {
                    @let id = format!("channel-{name}");
                    p {
                        label for=(id) { (label) }
                        " "
                        input.mono id=(id) type=(kind) name=(name) autocomplete="off" required[*name == "name"];
                        " " span.hint { (hint) }
                    }
                }
                button type="submit" { "Create channel" }
            }
        }
    }
}

/// A form's channel as the API's JSON: the fields given, `events` split.
fn channel_of(form: &FormData) -> Map<String, Value> {
    let mut body = Map::new();
    for field in std::iter::once("format").chain(FIELDS.iter().map(|f| f.0)) {
        let v = form.get(field).unwrap_or_default().trim();
        if v.is_empty() {
            continue;
        }
        let v = match field {
            "events" => Value::from(
                v.split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .collect::<Vec<_>>(),
            ),
            _ => Value::from(v),
        };
        body.insert(field.to_string(), v);
    }
    body
}

/// `POST /alerts/channels/new`
pub async fn create(
    State(c): State<Console>,
    a: Authed,
    headers: HeaderMap,
    form: FormData,
) -> Response {
    if let Some(r) = check_post(&a, &headers, &form, true) {
        return r;
    }
    layout::after_change(
        c.admin.registry.put_channel(None, channel_of(&form)).await,
        "/alerts",
    )
}

/// `POST /alerts/channels/{name}/delete`
pub async fn delete(
    State(c): State<Console>,
    a: Authed,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: FormData,
) -> Response {
    if let Some(r) = check_post(&a, &headers, &form, true) {
        return r;
    }
    layout::after_change(c.admin.registry.delete_channel(&name).await, "/alerts")
}

fn current_row(e: &AlertEvent) -> Markup {
    html! {
        tr {
            td { time datetime=(e.since) { (e.since) } }
            td.mono { (e.kind.as_str()) }
            td { (layout::status(e.severity.as_str())) }
            td { a href=(e.console_url) { (e.summary) } }
        }
    }
}

fn past_row(r: &AlertRecord) -> Markup {
    let e = &r.event;
    html! {
        tr {
            td { time datetime=(e.at) { (e.at) } }
            td { (r.channel) }
            td.mono {
                (e.kind.as_str())
                @if e.reminder { " " span.hint { "(reminder)" } }
            }
            td { a href=(e.console_url) { (e.summary) } }
            td { (r.outcome) }
        }
    }
}

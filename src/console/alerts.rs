//! Alerts: the conditions that hold now and the alerts raised, newest first,
//! with the channel each went to and what became of it. Read from the alerts'
//! log ([`crate::alerts`]: the last 500, kept in the store across restarts), the
//! same as `GET /api/v1/alerts`; the page changes nothing, so read-only may see it.

use axum::extract::State;
use axum::response::Response;
use maud::{html, Markup};

use super::auth::Authed;
use super::layout::{self, Nav};
use super::Console;
use crate::alerts::event::AlertEvent;
use crate::alerts::AlertRecord;

/// Past alerts on the page.
const PAGE: usize = 200;

/// `GET /alerts`
pub async fn list(State(c): State<Console>, a: Authed) -> Response {
    let alerts = &c.admin.alerts;
    let channels = alerts.channel_names();
    let current = alerts.current();
    let past = alerts.past(PAGE).await;
    let body = html! {
        h1 { "Alerts" }
        @if channels.is_empty() {
            p.hint { "No alert channel is configured: add an " code { "[[alerts]]" } " table (docs/alerts.md)." }
        } @else {
            p.hint { "Channels: " (channels.join(", ")) "." }
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
    layout::page(&a, Nav::Alerts, "Alerts", body)
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

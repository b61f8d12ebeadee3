//! Dead letters: per destination, filterable, and bulk replay of the filtered
//! set behind a confirmation page that shows how many will be replayed.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};

use super::auth::{check_post, Authed};
use super::layout::{self, Nav};
use super::messages::unavailable;
use super::{param, Console, FormData};
use crate::clock::Millis;
use crate::store::{
    DeliveryInfo, DeliveryQuery, DeliveryStatus, DestinationStats, Page, ReplayFilter,
};

const PAGE: usize = 50;

fn unknown_destination() -> Response {
    layout::error_page(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such destination.",
    )
}

/// `GET /dead`
pub async fn list(
    State(c): State<Console>,
    a: Authed,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let dest = param(&q, "destination").map(str::to_string);
    let cursor = param(&q, "cursor").map(str::to_string);
    let s = &c.admin;
    let stats = match s.store.destination_stats().await {
        Ok(st) => st,
        Err(e) => return unavailable(e),
    };
    let names: Vec<String> = s
        .dispatcher
        .all()
        .iter()
        .map(|h| h.spec().name.clone())
        .collect();
    let page = s
        .store
        .deliveries(&DeliveryQuery {
            destination: dest.clone(),
            status: Some(DeliveryStatus::Dead),
            limit: PAGE,
            cursor: cursor.clone(),
        })
        .await;
    let now = s.clock.now_millis();
    let dq = dest.as_deref().map(destination_query).unwrap_or_default();
    let body = html! {
        (layout::notice_box(param(&q, "notice")))
        h1 { "Dead letters" }
        (per_destination(&names, &stats, dest.as_deref()))
        @match &page {
            Err(crate::store::StoreError::NotFound) => {
                p.notice.error role="alert" { "That page link is not valid any more." }
            }
            Err(_) => { p.notice.error role="alert" { "The store is unavailable; try again." } }
            Ok(p) => (dead_page(p, &dq, now)),
        }
    };
    layout::page(&a, Nav::Dead, "Dead letters", body)
}

/// `destination=NAME`, URL-encoded.
pub(super) fn destination_query(name: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("destination", name)
        .finish()
}

/// The count of dead letters of each destination, and the destination filter.
fn per_destination(
    names: &[String],
    stats: &HashMap<String, DestinationStats>,
    dest: Option<&str>,
) -> Markup {
    html! {
        div.table-wrap {
            table {
                caption { "Dead letters per destination" }
                thead { tr { th scope="col" { "Destination" } th scope="col" { "Dead" } } }
                tbody {
                    @for n in names {
                        tr {
                            th scope="row" {
                                a href={ "/dead?" (destination_query(n)) } { (n) }
                            }
                            td { (stats.get(n).map_or(0, |s| s.dead)) }
                        }
                    }
                }
            }
        }
        form.filters method="get" action="/dead" {
            div.field {
                label for="destination" { "Destination" }
                select id="destination" name="destination" {
                    option value="" { "Every destination" }
                    @for n in names {
                        option value=(n) selected[dest == Some(n.as_str())] { (n) }
                    }
                }
            }
            button type="submit" { "Filter" }
        }
    }
}

/// A page of dead deliveries, newest first; `dq` is the destination filter's
/// query (empty: every destination).
fn dead_page(p: &Page<DeliveryInfo>, dq: &str, now: Millis) -> Markup {
    html! {
        @if !p.items.is_empty() {
            p { a.button href={ "/dead/replay?" (dq) } { "Replay these dead letters…" } }
        }
        div.table-wrap {
            table id="dead-list" {
                caption.visually-hidden { "Dead deliveries, newest first" }
                thead { (layout::header_row(&["Died", "Message", "Destination", "Status", "Attempts"])) }
                tbody {
                    @if p.items.is_empty() {
                        tr { td colspan="5" { "No dead letters." } }
                    }
                    @for d in &p.items {
                        tr {
                            td { (layout::when(d.finished_at.unwrap_or(d.created_at), Some(now))) }
                            td { a.mono href={ "/messages/" (d.message_id) } { (d.message_id) } }
                            td { (d.destination) }
                            td { (layout::status(d.status.as_str())) }
                            td { (d.attempts) }
                        }
                    }
                }
            }
        }
        @if let Some(n) = &p.next_cursor {
            p.pager {
                a rel="next" href={ "/dead?" (dq) @if !dq.is_empty() { "&" } "cursor=" (n) } { "Older" }
            }
        }
    }
}

/// `GET /dead/replay`: how many would be replayed, and the button.
pub async fn confirm(
    State(c): State<Console>,
    a: Authed,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let dest = param(&q, "destination").map(str::to_string);
    if let Some(d) = &dest {
        if c.admin.dispatcher.get(d).is_none() {
            return unknown_destination();
        }
    }
    // The count is of what is dead now; the replay takes the same set (`until`).
    let until = c.admin.clock.now_millis();
    let f = ReplayFilter {
        destination: dest.clone(),
        since: None,
        until: Some(until),
    };
    let count = match c.admin.store.count_dead(&f).await {
        Ok(n) => n,
        Err(e) => return unavailable(e),
    };
    let body = html! {
        h1 { "Replay dead letters" }
        p id="count" {
            "Replay " strong { (count) } " dead letter" @if count != 1 { "s" } " "
            @if let Some(d) = &dest { "to " strong { (d) } } @else { "to every destination" }
            "?"
        }
        p.hint { "Each is sent again from its first attempt, with its retry schedule restarted." }
        div.actions {
            form method="post" action="/dead/replay" {
                input type="hidden" name="csrf" value=(a.session.csrf);
                @if let Some(d) = &dest { input type="hidden" name="destination" value=(d); }
                input type="hidden" name="until" value=(until);
                button type="submit" disabled[count == 0] { "Replay" }
            }
            a href="/dead" { "Cancel" }
        }
    };
    layout::page(&a, Nav::Dead, "Replay dead letters", body)
}

/// `POST /dead/replay`: the API's bulk replay (in batches, in the background).
pub async fn replay(
    State(c): State<Console>,
    a: Authed,
    headers: HeaderMap,
    form: FormData,
) -> Response {
    if let Some(r) = check_post(&a, &headers, &form, true) {
        return r;
    }
    let dest = form
        .get("destination")
        .filter(|d| !d.is_empty())
        .map(str::to_string);
    if let Some(d) = &dest {
        if c.admin.dispatcher.get(d).is_none() {
            return unknown_destination();
        }
    }
    let now = c.admin.clock.now_millis();
    let until = form
        .get("until")
        .and_then(|u| u.parse::<i64>().ok())
        .map_or(now, |u| u.min(now));
    let f = ReplayFilter {
        destination: dest.clone(),
        since: None,
        until: Some(until),
    };
    crate::admin::deliveries::spawn_bulk_replay(&c.admin, f);
    let q = form_urlencoded::Serializer::new(String::new())
        .append_pair("notice", "bulk")
        .extend_pairs(dest.as_deref().map(|d| ("destination", d)))
        .finish();
    Redirect::to(&format!("/dead?{q}")).into_response()
}

//! Destinations: pending, dead, circuit and paused state of each, with **Pause**
//! and **Resume** through the dispatcher call the admin API uses.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use std::collections::HashMap;

use super::auth::{check_post, Authed};
use super::layout::{self, Nav};
use super::messages::unavailable;
use super::{mask, param, Console, FormData};

/// `GET /destinations`
pub async fn list(
    State(c): State<Console>,
    a: Authed,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let s = &c.admin;
    let stats = match s.store.destination_stats().await {
        Ok(st) => st,
        Err(e) => return unavailable(e),
    };
    let now = s.clock.now_millis();
    let csrf = &a.session.csrf;
    let body = html! {
        (layout::notice_box(param(&q, "notice")))
        h1 { "Destinations" }
        div.table-wrap {
            table {
                caption.visually-hidden { "Destinations" }
                thead {
                    tr {
                        th scope="col" { "Name" }
                        th scope="col" { "URL" }
                        th scope="col" { "State" }
                        th scope="col" { "Circuit" }
                        th scope="col" { "In flight" }
                        th scope="col" { "Pending" }
                        th scope="col" { "Oldest pending" }
                        th scope="col" { "Dead" }
                        th scope="col" { "Action" }
                    }
                }
                tbody {
                    @for h in s.dispatcher.all() {
                        @let spec = h.spec();
                        @let st = h.state();
                        @let stat = stats.get(&spec.name);
                        @let state = if st.disabled_at.is_some() { "disabled" } else if st.paused { "paused" } else { "running" };
                        @let circuit = if h.circuit_open() { "open" } else { "closed" };
                        @let row_id = format!("dest-{}", hex::encode(spec.name.as_bytes()));
                        tr data-destination=(spec.name) {
                            th scope="row" id=(row_id) { (spec.name) }
                            td.mono { (mask::safe_url(&spec.url)) }
                            td { (layout::status(state)) }
                            td { (layout::status(circuit)) }
                            td { (h.in_flight()) " / " (spec.max_in_flight) }
                            td { (stat.map_or(0, |s| s.pending)) }
                            td {
                                @match stat.and_then(|s| s.oldest_pending_at) {
                                    Some(t) => (layout::when(t, Some(now))),
                                    None => "—",
                                }
                            }
                            td {
                                a href={ "/dead?" (form_urlencoded::Serializer::new(String::new()).append_pair("destination", &spec.name).finish()) } {
                                    (stat.map_or(0, |s| s.dead))
                                }
                            }
                            td {
                                @let (action, label) = if st.paused { ("resume", "Resume") } else { ("pause", "Pause") };
                                form method="post" action={ "/destinations/" (urlencode(&spec.name)) "/" (action) } {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button type="submit" aria-describedby=(row_id) { (label) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout::page(&a, Nav::Destinations, "Destinations", body)
}

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn set_paused(
    c: Console,
    a: Authed,
    headers: HeaderMap,
    name: String,
    form: FormData,
    paused: bool,
) -> Response {
    if let Some(r) = check_post(&a, &headers, &form, true) {
        return r;
    }
    if c.admin.dispatcher.set_paused(&name, paused).await.is_none() {
        return layout::error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such destination.",
        );
    }
    let notice = if paused { "paused" } else { "resumed" };
    Redirect::to(&format!("/destinations?notice={notice}")).into_response()
}

/// `POST /destinations/{name}/pause`
pub async fn pause(
    State(c): State<Console>,
    a: Authed,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: FormData,
) -> Response {
    set_paused(c, a, headers, name, form, true).await
}

/// `POST /destinations/{name}/resume`
pub async fn resume(
    State(c): State<Console>,
    a: Authed,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: FormData,
) -> Response {
    set_paused(c, a, headers, name, form, false).await
}

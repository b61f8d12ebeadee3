//! Destinations: pending, dead, circuit and paused state of each, the last
//! five minutes' rates and latency (from the overview's sampler), with **Pause**
//! and **Resume** through the registry, as the admin API does (the state is
//! stored, so other nodes follow). Creating, editing, deleting, rotating and
//! test events are in [`super::dest_actions`].

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use std::collections::HashMap;

use super::auth::{check_post, Authed};
use super::layout::{self, Nav};
use super::messages::unavailable;
use super::{mask, param, stats, Console, FormData};
use crate::dispatch::destination::Origin;

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
    let text = s.metrics.render();
    let outcomes = stats::by_labels(&text, "hookgate_deliveries_total", "destination", "outcome");
    let outcome = |d: &str, o: &str| {
        outcomes
            .get(&(d.to_string(), o.to_string()))
            .copied()
            .unwrap_or(0.0) as u64
    };
    let attempt_sum = stats::by_label(
        &text,
        "hookgate_delivery_attempt_seconds_sum",
        "destination",
    );
    let attempt_count = stats::by_label(
        &text,
        "hookgate_delivery_attempt_seconds_count",
        "destination",
    );
    let body = html! {
        (layout::notice_box(param(&q, "notice")))
        h1 { "Destinations" }
        p { a href="/destinations/new" { "New destination" } }
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
                        th scope="col" { "Since start" }
                        th scope="col" { "Mean attempt" }
                        th scope="col" { "Last 5 minutes" }
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
                            @if spec.is_pull() {
                                td { "pull (consumers lease its deliveries)" }
                            } @else {
                                td.mono { (mask::safe_url(&spec.url)) }
                            }
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
                            @let (ok, retried, dead) = (outcome(&spec.name, "delivered"), outcome(&spec.name, "retried"), outcome(&spec.name, "dead"));
                            td {
                                (ok) " delivered, " (retried) " retried, " (dead) " dead"
                                @if ok + retried + dead > 0 {
                                    " (" (format!("{:.0}", 100.0 * ok as f64 / (ok + retried + dead) as f64)) "% succeeded)"
                                }
                            }
                            td {
                                @match (attempt_sum.get(&spec.name), attempt_count.get(&spec.name)) {
                                    (Some(sum), Some(n)) if *n > 0.0 => { (format!("{:.1}", 1000.0 * sum / n)) " ms" }
                                    _ => "—",
                                }
                            }
                            td { (recent(&c, &spec.name)) }
                            td.row-actions {
                                @let base = format!("/destinations/{}", layout::path_segment(&spec.name));
                                @let (action, label) = if st.paused { ("resume", "Resume") } else { ("pause", "Pause") };
                                form method="post" action={ (base) "/" (action) } {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button type="submit" aria-describedby=(row_id) { (label) }
                                }
                                form method="post" action={ (base) "/test" } {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button type="submit" aria-describedby=(row_id) { "Send test event" }
                                }
                                @if spec.origin == Origin::Api {
                                    a.button href={ (base) "/edit" } aria-describedby=(row_id) { "Edit" }
                                    a.button href={ (base) "/rotate" } aria-describedby=(row_id) { "Rotate secret" }
                                    a.button href={ (base) "/delete" } aria-describedby=(row_id) { "Delete" }
                                } @else {
                                    span.hint { "From the config file (read-only)" }
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

/// Points of the overview's sampler in the last five minutes.
const RECENT_POINTS: usize = 30;

/// A destination's last five minutes from the overview's points: attempts per
/// second (delivered, failed), and the delivery latency (receipt to delivered)
/// of the newest interval that delivered anything.
fn recent(c: &Console, name: &str) -> maud::Markup {
    let r = c.overview.read(|s| {
        let ring = s.destinations.get(name)?;
        // Oldest first.
        let skip = ring.len().saturating_sub(RECENT_POINTS);
        let points: Vec<_> = ring.iter().skip(skip).copied().collect();
        let first = points.first()?;
        let last = points.last()?;
        // Each point covers the 10 s before its time.
        let secs = ((last.at - first.at) as f64 / 1000.0 + 10.0).max(10.0);
        let delivered: u64 = points.iter().map(|p| p.delivered).sum();
        let failed: u64 = points.iter().map(|p| p.failed).sum();
        let latency = points.iter().rev().find_map(|p| Some((p.p50?, p.p99?)));
        Some((delivered as f64 / secs, failed as f64 / secs, latency))
    });
    let ms = |s: f64| {
        if s < 1.0 {
            format!("{:.0} ms", s * 1000.0)
        } else {
            format!("{s:.1} s")
        }
    };
    html! {
        @match r {
            None => span.hint { "no sample yet" },
            Some((ok, failed, latency)) => {
                (format!("{ok:.1}")) "/s delivered, " (format!("{failed:.1}")) "/s failed"
                @if let Some((p50, p99)) = latency {
                    br;
                    "latency p50 " (ms(p50)) ", p99 " (ms(p99))
                }
            }
        }
    }
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
    if c.admin.registry.set_paused(&name, paused).await.is_err() {
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

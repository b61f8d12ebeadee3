//! Destinations: pending, dead, circuit and paused state of each, the last
//! five minutes' rates and latency (from the overview's sampler), with **Pause**
//! and **Resume** through the registry, as the admin API does (the state is
//! stored, so other nodes follow). Creating, editing, deleting, rotating and
//! test events are in [`super::dest_actions`].

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use std::collections::HashMap;

use super::auth::{check_post, Authed};
use super::layout::{self, Nav};
use super::messages::unavailable;
use super::{mask, param, stats, Console, FormData};
use crate::clock::Millis;
use crate::dispatch::destination::{DestinationSpec, Origin};
use crate::dispatch::DestinationHandle;
use crate::store::DestinationStats;

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
    let figures = Figures {
        stats,
        counts: Counts::read(&s.metrics.render()),
        now: s.clock.now_millis(),
    };
    let body = html! {
        (layout::notice_box(param(&q, "notice")))
        h1 { "Destinations" }
        p { a href="/destinations/new" { "New destination" } }
        div.table-wrap {
            table {
                caption.visually-hidden { "Destinations" }
                thead { (layout::header_row(&COLUMNS)) }
                tbody {
                    @for h in s.dispatcher.all() {
                        (row(&c, &figures, &h, &a.session.csrf))
                    }
                }
            }
        }
    };
    layout::page(&a, Nav::Destinations, "Destinations", body)
}

/// The columns of the destinations table.
const COLUMNS: [&str; 12] = [
    "Name",
    "URL",
    "State",
    "Circuit",
    "In flight",
    "Pending",
    "Oldest pending",
    "Dead",
    "Since start",
    "Mean attempt",
    "Last 5 minutes",
    "Action",
];

/// What the table shows besides each destination's own state: the store's
/// backlog figures and the counters since start.
struct Figures {
    stats: HashMap<String, DestinationStats>,
    counts: Counts,
    now: Millis,
}

/// The delivery counters since start, from the metrics recorder.
struct Counts {
    outcomes: HashMap<(String, String), f64>,
    attempt_sum: HashMap<String, f64>,
    attempt_count: HashMap<String, f64>,
}

impl Counts {
    /// Reads them from the rendered metrics.
    fn read(text: &str) -> Self {
        Counts {
            outcomes: stats::by_labels(text, "hookgate_deliveries_total", "destination", "outcome"),
            attempt_sum: stats::by_label(
                text,
                "hookgate_delivery_attempt_seconds_sum",
                "destination",
            ),
            attempt_count: stats::by_label(
                text,
                "hookgate_delivery_attempt_seconds_count",
                "destination",
            ),
        }
    }

    /// Attempts of `destination` that ended with `outcome`.
    fn outcome(&self, destination: &str, outcome: &str) -> u64 {
        self.outcomes
            .get(&(destination.to_string(), outcome.to_string()))
            .copied()
            .unwrap_or(0.0) as u64
    }

    /// The mean attempt of `destination` in ms, when it made any.
    fn mean_attempt_ms(&self, destination: &str) -> Option<f64> {
        match (
            self.attempt_sum.get(destination),
            self.attempt_count.get(destination),
        ) {
            (Some(sum), Some(n)) if *n > 0.0 => Some(1000.0 * sum / n),
            _ => None,
        }
    }
}

/// One destination's row.
fn row(c: &Console, f: &Figures, h: &DestinationHandle, csrf: &str) -> Markup {
    let spec = h.spec();
    let st = h.state();
    let stat = f.stats.get(&spec.name);
    let (state, circuit) = layout::destination_state(h);
    let row_id = format!("dest-{}", hex::encode(spec.name.as_bytes()));
    let (ok, retried, dead) = (
        f.counts.outcome(&spec.name, "delivered"),
        f.counts.outcome(&spec.name, "retried"),
        f.counts.outcome(&spec.name, "dead"),
    );
    html! {
        tr data-destination=(spec.name) {
            th scope="row" id=(row_id) { (spec.name) }
            @if spec.is_pull() {
                td { "pull (consumers lease its deliveries)" }
            } @else {
                @if crate::config::alerts::is_channel_destination(&spec.name) {
                    td.mono { (crate::config::alerts::shown_url(&spec.name, &spec.url)) }
                } @else {
                    td.mono { (mask::safe_url(&spec.url)) }
                }
            }
            td { (layout::status(state)) }
            td { (layout::status(circuit)) }
            td { (h.in_flight()) " / " (spec.max_in_flight) }
            td { (stat.map_or(0, |s| s.pending)) }
            td {
                @match stat.and_then(|s| s.oldest_pending_at) {
                    Some(t) => (layout::when(t, Some(f.now))),
                    None => "—",
                }
            }
            td {
                a href={ "/dead?" (super::dead::destination_query(&spec.name)) } {
                    (stat.map_or(0, |s| s.dead))
                }
            }
            td {
                (ok) " delivered, " (retried) " retried, " (dead) " dead"
                @if ok + retried + dead > 0 {
                    " (" (format!("{:.0}", 100.0 * ok as f64 / (ok + retried + dead) as f64)) "% succeeded)"
                }
            }
            td {
                @match f.counts.mean_attempt_ms(&spec.name) {
                    Some(ms) => { (format!("{ms:.1}")) " ms" }
                    None => "—",
                }
            }
            td { (recent(c, &spec.name)) }
            td.row-actions { (actions(&spec, st.paused, &row_id, csrf)) }
        }
    }
}

/// A row's actions: pause or resume, a test event, and for an API destination
/// edit, rotate and delete.
fn actions(spec: &DestinationSpec, paused: bool, row_id: &str, csrf: &str) -> Markup {
    let base = format!("/destinations/{}", layout::path_segment(&spec.name));
    let (action, label) = if paused {
        ("resume", "Resume")
    } else {
        ("pause", "Pause")
    };
    html! {
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

//! The overview (`/`): per source and destination, the last hour as small SVG
//! charts with their figures written beside them, and each destination's
//! backlog and state in words. `console.js` swaps in `/overview/fragment` every
//! 10 s while the tab is visible.
//!
//! Both answers only read the [`Sampler`](super::sampler::Sampler)'s rings and
//! the dispatcher's in-memory state: no store query, no metrics render, so the
//! cost of an open console is bounded by the number of series, not by traffic.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};

use super::auth::{self, Authed};
use super::layout::{self, Nav};
use super::sampler::{DestinationPoint, Series, SourcePoint, EVERY, POINTS};
use super::svg::{self, Line};
use super::Console;
use crate::clock::Millis;

/// `GET /`
pub async fn page(State(c): State<Console>, a: Authed) -> Response {
    let body = html! {
        h1 { "Overview" }
        p.hint {
            "The last hour, one point every " (EVERY.as_secs()) " s, updated live. "
            "Counts are per " (EVERY.as_secs()) " s; latency is from receipt to delivery."
        }
        div #overview data-overview="/overview/fragment" { (sections(&c)) }
    };
    layout::page(&a, Nav::Overview, "Overview", body)
}

/// `GET /overview/fragment`: the page's sections alone, for the live refresh.
pub async fn fragment(State(c): State<Console>, headers: HeaderMap) -> Response {
    if auth::session_of(&c, &headers).is_none() {
        return (StatusCode::UNAUTHORIZED, "log in again").into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        sections(&c).into_string(),
    )
        .into_response()
}

/// The sources' and destinations' sections.
fn sections(c: &Console) -> Markup {
    let now = c.admin.clock.now_millis();
    let states: Vec<(String, &'static str, &'static str)> = c
        .admin
        .dispatcher
        .all()
        .iter()
        .map(|h| {
            let (state, circuit) = layout::destination_state(h);
            (h.spec().name.clone(), state, circuit)
        })
        .collect();
    let sources = c.overview.sources();
    c.overview.read(|s: &Series| {
        html! {
            section aria-labelledby="ov-sources" {
                h2 #ov-sources { "Sources" }
                @if sources.is_empty() { p { "No source is configured." } }
                div.cards {
                    @for name in &sources {
                        @let points: Vec<SourcePoint> = s.sources.get(name)
                            .map(|r| r.iter().copied().collect()).unwrap_or_default();
                        (source_card(name, &points))
                    }
                }
            }
            section aria-labelledby="ov-destinations" {
                h2 #ov-destinations { "Destinations" }
                @if states.is_empty() { p { "No destination is configured." } }
                div.cards {
                    @for (name, state, circuit) in &states {
                        @let points: Vec<DestinationPoint> = s.destinations.get(name)
                            .map(|r| r.iter().copied().collect()).unwrap_or_default();
                        (destination_card(name, state, circuit, &points, now))
                    }
                }
            }
            @if let Some(t) = last_sample(s) {
                p.hint { "Last sample " (layout::when(t, Some(now))) "." }
            }
        }
    })
}

/// The time of the newest point of any series.
fn last_sample(s: &Series) -> Option<Millis> {
    let d = s
        .destinations
        .values()
        .filter_map(|r| r.last().map(|p| p.at))
        .max();
    let src = s
        .sources
        .values()
        .filter_map(|r| r.last().map(|p| p.at))
        .max();
    d.max(src)
}

fn source_card(name: &str, points: &[SourcePoint]) -> Markup {
    let received: Vec<u64> = points.iter().map(|p| p.received).collect();
    let refused: Vec<u64> = points.iter().map(|p| p.refused).collect();
    html! {
        article.card data-source=(name) {
            h3 { (name) }
            (count_chart("Received", "received", &received))
            (count_chart("Refused", "refused", &refused))
        }
    }
}

fn destination_card(
    name: &str,
    state: &str,
    circuit: &str,
    points: &[DestinationPoint],
    now: Millis,
) -> Markup {
    let last = points.last();
    let dead_href = format!(
        "/dead?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("destination", name)
            .finish()
    );
    let col = |f: fn(&DestinationPoint) -> u64| points.iter().map(f).collect::<Vec<u64>>();
    html! {
        article.card data-destination=(name) {
            h3 { (name) }
            dl.facts {
                div { dt { "State" } dd { (layout::status(state)) } }
                div { dt { "Circuit" } dd { (layout::status(circuit)) } }
                div { dt { "Pending" } dd data-figure="pending" { (opt(last.and_then(|p| p.pending))) } }
                div {
                    dt { "Oldest pending" }
                    dd {
                        @match last.and_then(|p| p.oldest_pending_at) {
                            Some(t) => (layout::when(t, Some(now))),
                            None => "—",
                        }
                    }
                }
                div {
                    dt { "Dead" }
                    dd data-figure="dead" { a href=(dead_href) { (opt(last.and_then(|p| p.dead))) } }
                }
            }
            (count_chart("Delivered", "delivered", &col(|p| p.delivered)))
            (count_chart("Failed", "failed", &col(|p| p.failed)))
            (latency_chart(points))
            (lag_chart(points))
        }
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "—".to_string(), |n| n.to_string())
}

/// A chart of counts per interval, with its figures as text.
fn count_chart(title: &str, key: &str, counts: &[u64]) -> Markup {
    let total: u64 = counts.iter().sum();
    let latest = counts.last().copied().unwrap_or(0);
    let peak = counts.iter().copied().max().unwrap_or(0);
    let summary = format!(
        "{total} in the last hour, {latest} in the last {} s, at most {peak} per {} s",
        EVERY.as_secs(),
        EVERY.as_secs()
    );
    let values: Vec<Option<f64>> = counts.iter().map(|&n| Some(n as f64)).collect();
    let line = Line {
        class: "l-count",
        values: &values,
    };
    metric(
        title,
        key,
        &summary,
        svg::chart(&label(title, &summary), POINTS, &[line]),
    )
}

fn latency_chart(points: &[DestinationPoint]) -> Markup {
    let p50: Vec<Option<f64>> = points.iter().map(|p| p.p50).collect();
    let p99: Vec<Option<f64>> = points.iter().map(|p| p.p99).collect();
    let summary = match points.iter().rev().find(|p| p.p50.is_some()) {
        Some(p) => format!(
            "p50 {}, p99 {} (latest interval with deliveries)",
            seconds(p.p50.unwrap_or(0.0)),
            seconds(p.p99.unwrap_or(0.0))
        ),
        None => "nothing delivered in the last hour".to_string(),
    };
    let lines = [
        Line {
            class: "l-p99",
            values: &p99,
        },
        Line {
            class: "l-p50",
            values: &p50,
        },
    ];
    let title = "Delivery latency (p50, p99)";
    metric(
        title,
        "latency",
        &summary,
        svg::chart(&label(title, &summary), POINTS, &lines),
    )
}

fn lag_chart(points: &[DestinationPoint]) -> Markup {
    let lag: Vec<Option<f64>> = points.iter().map(|p| p.lag).collect();
    let now = points.last().and_then(|p| p.lag);
    let peak = lag
        .iter()
        .flatten()
        .copied()
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    let summary = match (now, peak) {
        (Some(n), Some(p)) => format!(
            "{} now, at most {} in the last hour",
            seconds(n),
            seconds(p)
        ),
        _ => "not known yet".to_string(),
    };
    let line = Line {
        class: "l-lag",
        values: &lag,
    };
    let title = "Lag (oldest pending)";
    metric(
        title,
        "lag",
        &summary,
        svg::chart(&label(title, &summary), POINTS, &[line]),
    )
}

fn label(title: &str, summary: &str) -> String {
    format!("{title}, last hour: {summary}")
}

/// A chart with its title and figures written out beside it.
fn metric(title: &str, key: &str, summary: &str, chart: Markup) -> Markup {
    html! {
        figure.metric data-metric=(key) {
            figcaption { strong { (title) } " " span.figure { (summary) } }
            (chart)
        }
    }
}

/// `0 s`, `0.25 ms`, `850 ms`, `12.5 s`, `3 min`, `2.0 h`.
pub fn seconds(s: f64) -> String {
    let s = if s.is_finite() { s.max(0.0) } else { 0.0 };
    if s == 0.0 {
        "0 s".to_string()
    } else if s < 0.001 {
        format!("{:.2} ms", s * 1000.0)
    } else if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well_and_never_show_nan() {
        assert_eq!(seconds(0.00025), "0.25 ms");
        assert_eq!(seconds(0.85), "850 ms");
        assert_eq!(seconds(12.5), "12.5 s");
        assert_eq!(seconds(180.0), "3 min");
        assert_eq!(seconds(7200.0), "2.0 h");
        assert_eq!(seconds(f64::NAN), "0 s");
        assert_eq!(seconds(-1.0), "0 s");
        assert_eq!(seconds(0.0), "0 s");
    }

    #[test]
    fn counts_are_written_beside_their_chart() {
        let m = count_chart("Received", "received", &[1, 0, 7, 2]).into_string();
        assert!(
            m.contains("10 in the last hour, 2 in the last 10 s, at most 7 per 10 s"),
            "{m}"
        );
        assert!(
            m.contains("aria-label=\"Received, last hour: 10 in the last hour"),
            "{m}"
        );
    }

    #[test]
    fn an_empty_destination_says_so_in_words() {
        let m = destination_card("a<b", "paused", "open", &[], 0).into_string();
        assert!(m.contains("a&lt;b") && !m.contains("a<b"), "{m}");
        assert!(m.contains(">paused<") && m.contains(">open<"), "{m}");
        assert!(m.contains("nothing delivered in the last hour"));
        assert!(m.contains("/dead?destination=a%3Cb"), "{m}");
    }
}

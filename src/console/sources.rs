//! Sources: the URL to give each provider, how requests are verified, and how
//! many were accepted and refused since the gateway started (read from the
//! ingest counters of `/metrics`, so the page adds nothing to the ingest path).
//! **Send test webhook** is in [`super::source_test`].

use axum::extract::State;
use axum::response::Response;
use maud::html;

use super::auth::Authed;
use super::layout::{self, Nav};
use super::Console;

/// Outcomes of `hookgate_ingest_requests_total` that mean the request was taken.
pub const ACCEPTED: &[&str] = &["stored", "duplicate", "handshake"];

/// Refusals as people read them.
const REFUSED: &[(&str, &str)] = &[
    ("unauthorized", "401 verification failed"),
    ("forbidden", "403 address not allowed"),
    ("rate_limited", "429 rate limited"),
    ("too_large", "413 too large"),
    ("bad_request", "400 bad request"),
    ("unavailable", "503 store unavailable"),
];

/// `GET /sources`
pub async fn list(State(c): State<Console>, a: Authed) -> Response {
    let csrf = &a.session.csrf;
    let counts = super::stats::by_labels(
        &c.admin.metrics.render(),
        "hookgate_ingest_requests_total",
        "source",
        "outcome",
    );
    let count = |s: &str, o: &str| {
        counts
            .get(&(s.to_string(), o.to_string()))
            .copied()
            .unwrap_or(0.0) as u64
    };
    let listen = c.admin.ingest_addr;
    let body = html! {
        h1 { "Sources" }
        p.hint {
            "Each source receives at " code { "/in/{name}" } " on the ingest listener ("
            code { (listen) } "); give providers that path on your public address. "
            "Counts are since the gateway started."
        }
        div.table-wrap {
            table {
                caption.visually-hidden { "Sources" }
                thead {
                    tr {
                        th scope="col" { "Name" }
                        th scope="col" { "Ingest URL" }
                        th scope="col" { "Verification" }
                        th scope="col" { "Accepted" }
                        th scope="col" { "Refused" }
                        th scope="col" { "Action" }
                    }
                }
                tbody {
                    @for s in &c.admin.config().sources {
                        @let name = s.name.get_ref();
                        @let verify = s.verify.as_ref().map(|v| v.get_ref());
                        @let refused: Vec<(&str, u64)> = REFUSED.iter()
                            .map(|(o, label)| (*label, count(name, o)))
                            .filter(|(_, n)| *n > 0)
                            .collect();
                        @let row_id = format!("src-{}", hex::encode(name.as_bytes()));
                        tr data-source=(name) {
                            th scope="row" id=(row_id) { (name) }
                            td.mono {
                                @match verify.and_then(|v| v.url.as_deref()) {
                                    Some(u) => (u),
                                    None => { "http://" (listen) "/in/" (name) }
                                }
                            }
                            td {
                                @match verify {
                                    Some(v) => (v.kind.as_str()),
                                    None => span.status.s-dead { "none: anyone can send" },
                                }
                            }
                            td { (ACCEPTED.iter().map(|o| count(name, o)).sum::<u64>()) }
                            td {
                                @if refused.is_empty() { "0" }
                                @for (i, (label, n)) in refused.iter().enumerate() {
                                    @if i > 0 { br; }
                                    (n) " × " (label)
                                }
                            }
                            td {
                                form method="post" action={ "/sources/" (super::layout::path_segment(name)) "/test" } {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button type="submit" aria-describedby=(row_id) { "Send test webhook" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout::page(&a, Nav::Sources, "Sources", body)
}

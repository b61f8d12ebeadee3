//! The page shell (header, navigation, log-out form) and small pieces every page
//! uses: times shown relative and absolute, statuses as text and colour, notices.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use super::auth::{Authed, Role};
use crate::store::Millis;

/// Which navigation entry is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// The overview.
    Overview,
    /// Messages and message detail.
    Messages,
    /// Dead letters.
    Dead,
    /// Destinations.
    Destinations,
    /// Sources.
    Sources,
    /// Rejected requests.
    Rejected,
    /// Alerts.
    Alerts,
    /// Transformations.
    Transforms,
}

/// The `<head>` of every page.
pub fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · hookgate" }
            link rel="stylesheet" href="/static/console.css";
            script src="/static/console.js" defer {}
        }
    }
}

fn html_response(status: StatusCode, m: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        m.into_string(),
    )
        .into_response()
}

/// A page with the console's header and navigation.
pub fn page(a: &Authed, nav: Nav, title: &str, body: Markup) -> Response {
    page_status(a, nav, title, body, StatusCode::OK)
}

/// Like [`page`] with another status.
pub fn page_status(
    a: &Authed,
    nav: Nav,
    title: &str,
    body: Markup,
    status: StatusCode,
) -> Response {
    let item = |n: Nav, href: &str, label: &str| {
        html! {
            @if n == nav {
                a href=(href) aria-current="page" { (label) }
            } @else {
                a href=(href) { (label) }
            }
        }
    };
    let m = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "hookgate" }
                    nav aria-label="Main" {
                        (item(Nav::Overview, "/", "Overview"))
                        (item(Nav::Messages, "/messages", "Messages"))
                        (item(Nav::Sources, "/sources", "Sources"))
                        (item(Nav::Dead, "/dead", "Dead letters"))
                        (item(Nav::Destinations, "/destinations", "Destinations"))
                        (item(Nav::Rejected, "/rejected", "Rejected"))
                        (item(Nav::Alerts, "/alerts", "Alerts"))
                        (item(Nav::Transforms, "/transforms", "Transforms"))
                    }
                    span.role {
                        @if a.role() == Role::ReadOnly { "Read-only" } @else { "Admin" }
                    }
                    form.logout method="post" action="/logout" {
                        input type="hidden" name="csrf" value=(a.session.csrf);
                        button type="submit" { "Log out" }
                    }
                }
                main id="main" { (body) }
            }
        }
    };
    html_response(status, m)
}

/// A page without navigation (the login form).
pub fn bare_page(title: &str, body: Markup, status: StatusCode) -> Response {
    let m = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body { main { (body) } }
        }
    };
    html_response(status, m)
}

/// The answer to a change made through the API's calls: back to the page
/// `back` (303), or the API's error, in its words, as a page.
pub fn after_change<T, E>(r: Result<T, E>, back: &str) -> Response
where
    crate::admin::error::ApiError: From<E>,
{
    match r {
        Ok(_) => axum::response::Redirect::to(back).into_response(),
        Err(e) => {
            let e = crate::admin::error::ApiError::from(e);
            error_page(e.status, "Not changed", &e.message)
        }
    }
}

/// An error page: a title and one sentence, with a link home.
pub fn error_page(status: StatusCode, title: &str, text: &str) -> Response {
    bare_page(
        title,
        html! {
            h1 { (title) }
            p role="alert" { (text) }
            p { a href="/messages" { "Back to the console" } }
        },
        status,
    )
}

/// `2026-01-31 12:00:00Z` (UTC).
pub fn absolute(ms: Millis) -> String {
    crate::clock::format_rfc3339(ms.max(0), crate::clock::Precision::Seconds).replacen('T', " ", 1)
}

/// The words of a destination's state (`running`, `paused`, `disabled`) and
/// of its circuit (`open`, `closed`).
pub fn destination_state(h: &crate::dispatch::DestinationHandle) -> (&'static str, &'static str) {
    let st = h.state();
    let state = if st.disabled_at.is_some() {
        "disabled"
    } else if st.paused {
        "paused"
    } else {
        "running"
    };
    let circuit = if h.circuit_open() { "open" } else { "closed" };
    (state, circuit)
}

/// A table's header row: one column header a title.
pub fn header_row(titles: &[&str]) -> Markup {
    html! {
        tr {
            @for title in titles {
                th scope="col" { (title) }
            }
        }
    }
}

/// `12 s ago`, `3 min ago`, `in 5 s`.
pub fn relative(ms: Millis, now: Millis) -> String {
    let d = (now - ms) / 1000;
    let (n, future) = if d < 0 { (-d, true) } else { (d, false) };
    let text = if n < 60 {
        format!("{n} s")
    } else if n < 3600 {
        format!("{} min", n / 60)
    } else if n < 86400 {
        format!("{} h", n / 3600)
    } else {
        format!("{} d", n / 86400)
    };
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// A time, relative and absolute; with `now` the relative part is filled in
/// here, without it (live fragments) the script fills it in.
pub fn when(ms: Millis, now: Option<Millis>) -> Markup {
    let abs = absolute(ms);
    html! {
        time datetime=(abs.replacen(' ', "T", 1)) {
            span.rel data-ts=(ms) { @if let Some(now) = now { (relative(ms, now)) } }
            " · " (abs)
        }
    }
}

/// A status: the word, coloured by its class.
pub fn status(s: &str) -> Markup {
    html! { span class={ "status s-" (s) } { (s) } }
}

/// The text of a notice code given back after an action (never the request's own text).
pub fn notice(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "replayed" => "Replay queued: a new delivery was made for each destination.",
        "paused" => "Destination paused: messages keep queueing.",
        "resumed" => "Destination resumed.",
        "saved" => "Destination saved.",
        "deleted" => "Destination deleted.",
        "test_sent" => "Test event stored: its delivery is below.",
        "bulk" => "Bulk replay started: the dead letters are being revived in the background.",
        _ => return None,
    })
}

/// A notice paragraph, if there is one.
pub fn notice_box(code: Option<&str>) -> Markup {
    html! {
        @if let Some(t) = notice(code) {
            p.notice role="status" { (t) }
        }
    }
}

/// What is escaped in a URL path segment: everything but the unreserved
/// characters (ingest matches `/in/{name}` as sent, so `-`, `_`, `.` and `~`
/// stay as they are).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A name (of a source or destination) as one segment of a URL path.
pub fn path_segment(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_well() {
        assert_eq!(absolute(0), "1970-01-01 00:00:00Z");
        assert_eq!(relative(0, 12_000), "12 s ago");
        assert_eq!(relative(0, 180_000), "3 min ago");
        assert_eq!(relative(10_000, 5_000), "in 5 s");
        assert_eq!(relative(0, 2 * 86_400_000), "2 d ago");
    }

    #[test]
    fn unknown_notice_codes_show_nothing() {
        assert!(notice(Some("<script>")).is_none());
        assert!(notice(Some("replayed")).is_some());
    }
}

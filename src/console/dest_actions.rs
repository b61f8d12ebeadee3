//! Destination actions beyond pause and resume: create, edit and delete
//! run-time (API) destinations, **Rotate secret** and **Send test event**.
//!
//! Invariants:
//! - Every change goes through the control [`Registry`](crate::control::Registry)
//!   calls of the admin API (`create`, `patch`, `delete`, `rotate`), so the
//!   console adds no validator of its own: the problems shown next to the form
//!   are the registry's, with their field paths, and the form keeps what was typed.
//! - Config-file destinations are read-only here (409), as in the API.
//! - A signing secret is shown once, in the answer to the POST that made it
//!   (`Cache-Control: no-store`), and never again; it is never logged.
//! - Every POST passes [`check_post`] as a change (admin only).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use maud::{html, Markup};
use serde_json::{json, Map, Value};

use super::auth::{check_post, Authed};
use super::layout::{self, Nav};
use super::{Console, FormData};
use crate::control::{ControlError, Problem};
use crate::dispatch::destination::Origin;
use crate::store::{Appended, NewDelivery};

/// The event type of **Send test event**.
pub const TEST_EVENT_TYPE: &str = "hookgate.test";

/// The fields of the destination form: (form name, label, hint).
const FIELDS: &[(&str, &str, &str)] = &[
    (
        "name",
        "Name",
        "Letters, digits, - and _; used in URLs and metrics.",
    ),
    (
        "url",
        "URL",
        "http:// or https://; private addresses are refused unless the gateway allows them.",
    ),
    (
        "event_types",
        "Event types",
        "Comma-separated types of published events sent here (globs such as order.*); empty: all.",
    ),
    (
        "timeout",
        "Timeout",
        "Per attempt, such as 10s; empty: the default.",
    ),
    (
        "max_in_flight",
        "Max in flight",
        "Concurrent requests at most; empty: the default.",
    ),
];

/// Logs a console action (see [`crate::telemetry::events::ConsoleAction`]).
pub fn action(action: &'static str, name: &str, message_id: Option<&str>) {
    crate::telemetry::events::ConsoleAction {
        action,
        name,
        message_id,
    }
    .emit();
}

fn not_found() -> Response {
    layout::error_page(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such destination.",
    )
}

fn read_only() -> Response {
    layout::error_page(
        StatusCode::CONFLICT,
        "Defined in the config file",
        "This destination is defined in the config file; change it there.",
    )
}

/// What refuses a change to destination `name`: a POST that fails
/// [`check_post`] (origin, CSRF token, role), or a destination not made at
/// run time ([`api_only`]).
fn change_of(
    c: &Console,
    a: &Authed,
    headers: &HeaderMap,
    form: &FormData,
    name: &str,
) -> Option<Response> {
    check_post(a, headers, form, true).or_else(|| api_only(c, name))
}

/// `None` when `name` is a run-time destination; otherwise the answer (404, 409).
fn api_only(c: &Console, name: &str) -> Option<Response> {
    match c.admin.dispatcher.get(name) {
        None => Some(not_found()),
        Some(h) if h.spec().origin != Origin::Api => Some(read_only()),
        Some(_) => None,
    }
}

/// The JSON body of the form, as the API would take it. Empty fields are
/// `null` when `nulls` (an edit: back to the default) and left out otherwise.
/// Values are passed on as typed, so the registry's checks judge them.
fn form_body(form: &FormData, nulls: bool, with_name: bool) -> Map<String, Value> {
    let mut m = Map::new();
    for (key, _, _) in FIELDS {
        if *key == "name" && !with_name {
            continue;
        }
        let v = form.get(key).map(str::trim).unwrap_or("");
        let value = match *key {
            _ if v.is_empty() => {
                if nulls && *key != "url" {
                    m.insert(key.to_string(), Value::Null);
                }
                continue;
            }
            "event_types" => Value::Array(
                v.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(|t| json!(t))
                    .collect(),
            ),
            "max_in_flight" => v.parse::<u64>().map_or_else(|_| json!(v), |n| json!(n)),
            _ => json!(v),
        };
        m.insert(key.to_string(), value);
    }
    m
}

/// The form's current values of a destination (for editing).
fn values_of(c: &Console, name: &str) -> Vec<(String, String)> {
    let Some(h) = c.admin.dispatcher.get(name) else {
        return Vec::new();
    };
    let spec = h.spec();
    vec![
        ("name".into(), spec.name.clone()),
        ("type".into(), spec.kind.as_str().to_string()),
        (
            "url".into(),
            if spec.is_pull() {
                String::new()
            } else {
                spec.url.to_string()
            },
        ),
        ("event_types".into(), spec.event_types.join(", ")),
        (
            "timeout".into(),
            crate::config::Dur(spec.timeout).to_string(),
        ),
        ("max_in_flight".into(), spec.max_in_flight.to_string()),
    ]
}

/// The form, with `values` kept and each problem next to its field (problems of
/// other fields above it).
fn form_page(
    a: &Authed,
    name: Option<&str>,
    values: &[(String, String)],
    problems: &[Problem],
) -> Response {
    let value = |k: &str| {
        values
            .iter()
            .find(|(n, _)| n == k)
            .map_or("", |(_, v)| v.as_str())
    };
    let field_of = |p: &Problem| p.path.first().cloned().unwrap_or_default();
    let known = |p: &Problem| FIELDS.iter().any(|(k, _, _)| *k == field_of(p));
    let (title, action) = match name {
        Some(n) => (
            format!("Edit {n}"),
            format!("/destinations/{}/edit", layout::path_segment(n)),
        ),
        None => (
            "New destination".to_string(),
            "/destinations/new".to_string(),
        ),
    };
    let body = html! {
        h1 { (title) }
        @if !problems.is_empty() {
            div.notice.error role="alert" id="problems" {
                p { "The destination was not saved:" }
                ul { @for p in problems { li { @if !p.path.is_empty() { code { (p.dotted()) } ": " } (p.message) } } }
            }
        }
        form.dest-form method="post" action=(action) {
            input type="hidden" name="csrf" value=(a.session.csrf);
            @for (key, label, hint) in FIELDS {
                // A pull destination has no URL to edit.
                @if (*key != "name" || name.is_none()) && !(*key == "url" && value("type") == "pull") {
                    @let mine: Vec<&Problem> = problems.iter().filter(|p| field_of(p) == *key).collect();
                    div.field {
                        label for=(key) { (label) }
                        input id=(key) name=(key) type=(if *key == "max_in_flight" { "number" } else { "text" }) value=(value(key))
                            aria-describedby={ (key) "-hint" @if !mine.is_empty() { " " (key) "-error" } }
                            aria-invalid=[(!mine.is_empty()).then_some("true")]
                            required[*key == "name" || *key == "url"];
                        span.hint id={ (key) "-hint" } { (hint) }
                        @if !mine.is_empty() {
                            span.error id={ (key) "-error" } { @for p in &mine { (p.message) " " } }
                        }
                    }
                }
            }
            @if problems.iter().any(|p| !known(p)) { p.hint { "See the problems above." } }
            button type="submit" { @if name.is_some() { "Save" } @else { "Create destination" } }
        }
        p { a href="/destinations" { "Back to destinations" } }
    };
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    layout::page_status(a, Nav::Destinations, &title, body, status)
}

/// A refusal with its problems, as a page of its own.
fn not_changed(problems: &[Problem]) -> Response {
    let text: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
    layout::error_page(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Not changed",
        &text.join("; "),
    )
}

/// The answer to a refused change: the form again with the problems (`form`),
/// or a page for other refusals.
fn refused(e: ControlError, form: impl FnOnce(&[Problem]) -> Response) -> Response {
    match e {
        ControlError::Invalid(p) => form(&p),
        ControlError::Exists(n) => form(&[Problem::at(
            "name",
            format!("a destination named `{n}` exists"),
        )]),
        ControlError::ReadOnly | ControlError::Channel(_) => read_only(),
        ControlError::NotFound => not_found(),
        ControlError::Store(e) => super::messages::unavailable(e),
    }
}

/// A page that shows a signing secret once.
fn secret_page(a: &Authed, name: &str, heading: &str, secret: &str, extra: Markup) -> Response {
    let body = html! {
        h1 { (heading) }
        p.notice role="status" {
            "Copy the signing secret of " strong { (name) } " now: it is not shown again."
        }
        div.field {
            label for="secret" { "Signing secret (Standard Webhooks)" }
            input.mono id="secret" type="text" readonly value=(secret) autocomplete="off" spellcheck="false";
        }
        button type="button" data-copy="secret" data-status="copy-status" hidden { "Copy secret" }
        span.copy-status id="copy-status" role="status" {}
        (extra)
        p { a href="/destinations" { "Back to destinations" } }
    };
    layout::page(a, Nav::Destinations, heading, body)
}

/// `GET /destinations/new`
pub async fn new_form(a: Authed) -> Response {
    form_page(&a, None, &[], &[])
}

/// `POST /destinations/new`
pub async fn create(
    State(c): State<Console>,
    a: Authed,
    headers: HeaderMap,
    form: FormData,
) -> Response {
    if let Some(r) = check_post(&a, &headers, &form, true) {
        return r;
    }
    let body = form_body(&form, false, true);
    let name = form.get("name").unwrap_or("").trim().to_string();
    match c.admin.registry.create(body).await {
        Ok(secret) => {
            action("destination created", &name, None);
            secret_page(&a, &name, "Destination created", &secret, html! {})
        }
        Err(e) => refused(e, |p| form_page(&a, None, &form.0, p)),
    }
}

/// `GET /destinations/{name}/edit`
pub async fn edit_form(State(c): State<Console>, a: Authed, Path(name): Path<String>) -> Response {
    if let Some(r) = api_only(&c, &name) {
        return r;
    }
    form_page(&a, Some(&name), &values_of(&c, &name), &[])
}

/// `POST /destinations/{name}/edit`
pub async fn edit(
    State(c): State<Console>,
    a: Authed,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: FormData,
) -> Response {
    if let Some(r) = change_of(&c, &a, &headers, &form, &name) {
        return r;
    }
    match c
        .admin
        .registry
        .patch(&name, form_body(&form, true, false))
        .await
    {
        Ok(()) => {
            action("destination changed", &name, None);
            Redirect::to("/destinations?notice=saved").into_response()
        }
        Err(e) => refused(e, |p| form_page(&a, Some(&name), &form.0, p)),
    }
}

/// A confirmation page: `question`, then a POST to `action` with `button`.
fn confirm_page(a: &Authed, title: &str, question: Markup, action: &str, button: &str) -> Response {
    let body = html! {
        h1 { (title) }
        (question)
        form method="post" action=(action) {
            input type="hidden" name="csrf" value=(a.session.csrf);
            button type="submit" { (button) }
        }
        p { a href="/destinations" { "Cancel" } }
    };
    layout::page(a, Nav::Destinations, title, body)
}

/// `GET /destinations/{name}/delete`: the confirmation.
pub async fn delete_confirm(
    State(c): State<Console>,
    a: Authed,
    Path(name): Path<String>,
) -> Response {
    if let Some(r) = api_only(&c, &name) {
        return r;
    }
    let q = html! { p { "Delete " strong { (name) } "? Its pending deliveries stay in the store but are no longer attempted." } };
    confirm_page(
        &a,
        "Delete destination",
        q,
        &format!("/destinations/{}/delete", layout::path_segment(&name)),
        "Delete",
    )
}

/// `POST /destinations/{name}/delete`
pub async fn delete(
    State(c): State<Console>,
    a: Authed,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: FormData,
) -> Response {
    if let Some(r) = change_of(&c, &a, &headers, &form, &name) {
        return r;
    }
    match c.admin.registry.delete(&name).await {
        Ok(()) => {
            action("destination deleted", &name, None);
            Redirect::to("/destinations?notice=deleted").into_response()
        }
        Err(e) => refused(e, not_changed),
    }
}

/// `GET /destinations/{name}/rotate`: the confirmation.
pub async fn rotate_confirm(
    State(c): State<Console>,
    a: Authed,
    Path(name): Path<String>,
) -> Response {
    if let Some(r) = api_only(&c, &name) {
        return r;
    }
    let grace = crate::config::Dur(crate::control::defaults::ROTATION_GRACE);
    let q = html! {
        p { "Make a new signing secret for " strong { (name) } "?" }
        p { "Requests are signed with both the new and the old secret for " (grace)
            ", so the receiver can switch over; after that only the new one signs. "
            "The new secret is shown once, on the next page." }
    };
    confirm_page(
        &a,
        "Rotate secret",
        q,
        &format!("/destinations/{}/rotate", layout::path_segment(&name)),
        "Rotate secret",
    )
}

/// `POST /destinations/{name}/rotate`
pub async fn rotate(
    State(c): State<Console>,
    a: Authed,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: FormData,
) -> Response {
    if let Some(r) = change_of(&c, &a, &headers, &form, &name) {
        return r;
    }
    match c.admin.registry.rotate(&name, None, None).await {
        Ok((secret, until)) => {
            action("signing secret rotated", &name, None);
            let extra = html! { p { "The previous secret keeps signing until " (layout::when(until, None)) "." } };
            secret_page(&a, &name, "Secret rotated", &secret, extra)
        }
        Err(e) => refused(e, not_changed),
    }
}

/// `POST /destinations/{name}/test`: stores a small `hookgate.test` event of
/// source `api` with one delivery, to this destination, through the publish
/// endpoint's own store call; then opens its message page.
pub async fn send_test(
    State(c): State<Console>,
    a: Authed,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: FormData,
) -> Response {
    if let Some(r) = check_post(&a, &headers, &form, true) {
        return r;
    }
    let s = &c.admin;
    if s.dispatcher.get(&name).is_none() {
        return not_found();
    }
    let now = s.clock.now_millis();
    let test_id = format!(
        "test_{}",
        super::auth::random_token().get(..16).unwrap_or("0")
    );
    let payload = json!({
        "type": TEST_EVENT_TYPE,
        "id": test_id,
        "destination": name,
        "sent_at": layout::absolute(now),
        "data": {"message": "A test event sent from the hookgate console."},
    });
    let delivery = NewDelivery {
        destination: name.clone(),
        due_at: now + crate::admin::events::first_delay(s, &name).as_millis() as i64,
        priority: crate::config::Priority::Normal,
        ordering_key: None,
    };
    let body = Bytes::from(payload.to_string());
    match crate::admin::events::store_event(s, TEST_EVENT_TYPE, body, None, vec![delivery]).await {
        Ok(Appended::Stored(id) | Appended::Duplicate(id)) => {
            action("test event sent", &name, Some(&id.to_string()));
            Redirect::to(&format!("/messages/{id}?notice=test_sent")).into_response()
        }
        Err(e) => layout::error_page(e.status, "Not sent", &e.message),
    }
}

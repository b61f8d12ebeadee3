//! Transformations: each script with its limits, and **Try it**: the script
//! (or an edited copy, never saved) run on a stored message through the API's
//! own call ([`crate::admin::transforms::run_try`]), showing what would be
//! delivered, the drop, or the error. Nothing is sent or stored.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{html, Markup};

use super::auth::{check_post, Authed};
use super::layout::{self, Nav};
use super::{Console, FormData};
use crate::admin::transforms::{run_try, TryOutcome, TryRequest, TryResult};
use crate::transform::Script;

/// `GET /transforms`
pub async fn list(State(c): State<Console>, a: Authed) -> Response {
    let all = c.admin.registry.transforms().all();
    let body = html! {
        h1 { "Transforms" }
        p.hint {
            "Scripts that reshape, enrich or drop messages before delivery, from "
            code { "[[transforms]]" } " in the config file. "
            "Try one on a stored message: nothing is sent or stored."
        }
        @if all.is_empty() {
            p { "No transformations are defined." }
        }
        @for t in &all {
            (section(&a, t, None, None))
        }
    };
    layout::page(&a, Nav::Transforms, "Transforms", body)
}

/// One transformation: its script, limits and the try-it form (with the
/// last try's input and result).
fn section(
    a: &Authed,
    t: &Script,
    tried: Option<(&str, &str)>,
    result: Option<&TryResult>,
) -> Markup {
    let id = format!("t-{}", hex::encode(t.name.as_bytes()));
    let (message_id, code) = tried.unwrap_or(("", &t.code));
    html! {
        section aria-labelledby=(id) {
            h2.mono id=(id) { (t.name) }
            p {
                "Time limit " (t.limits.time.as_millis()) " ms · memory limit "
                (t.limits.memory / (1024 * 1024)) " MiB"
            }
            form method="post" action={ "/transforms/" (layout::path_segment(&t.name)) "/try" } {
                input type="hidden" name="csrf" value=(a.session.csrf);
                @let mid = format!("{id}-message");
                @let cid = format!("{id}-code");
                p {
                    label for=(cid) { "Script" }
                    br;
                    textarea.mono id=(cid) name="code" rows="12" cols="80" spellcheck="false" { (code) }
                }
                p {
                    label for=(mid) { "Message id" }
                    " "
                    input.mono id=(mid) type="text" name="message_id" required placeholder="msg_…" value=(message_id);
                    " "
                    button type="submit" aria-describedby=(id) { "Try it" }
                }
            }
            @if let Some(r) = result {
                (outcome(r))
            }
        }
    }
}

/// A try's result.
fn outcome(r: &TryResult) -> Markup {
    html! {
        div role="status" {
            @match r.outcome {
                TryOutcome::Deliver => {
                    p.notice { "Would deliver (" (format!("{:.1}", r.duration_ms)) " ms), Content-Type "
                        code { (r.content_type.as_deref().unwrap_or("none")) } ":" }
                    pre.mono { (r.body.as_deref().unwrap_or_default()) }
                    @if let Some(out) = &r.output {
                        details {
                            summary { "Returned object" }
                            pre.mono { (serde_json::to_string_pretty(out).unwrap_or_default()) }
                        }
                    }
                }
                TryOutcome::Dropped => {
                    p.notice { "Dropped by transform: the script returned null, nothing would be sent." }
                }
                TryOutcome::TransformFailed => {
                    p.notice.error { "Transform failed: " (r.error.as_deref().unwrap_or_default()) }
                }
            }
        }
    }
}

/// `POST /transforms/{name}/try`
pub async fn try_it(
    State(c): State<Console>,
    a: Authed,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: FormData,
) -> Response {
    if let Some(r) = check_post(&a, &headers, &form, false) {
        return r;
    }
    let Some(t) = c.admin.registry.transforms().get(&name) else {
        return layout::error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such transformation.",
        );
    };
    let message_id = form
        .get("message_id")
        .unwrap_or_default()
        .trim()
        .to_string();
    let code = form
        .get("code")
        .map(str::to_string)
        .unwrap_or_else(|| t.code.clone());
    let req = TryRequest {
        message_id: Some(message_id.clone()),
        request: None,
        code: Some(code.clone()),
    };
    let (result, status, error) = match run_try(&c.admin, &name, req).await {
        Ok(r) => (Some(r), StatusCode::OK, None),
        Err(e) => (None, e.status, Some(e.message)),
    };
    let body = html! {
        h1 { "Try " (name) }
        @if let Some(e) = error {
            p.notice.error role="alert" { (e) }
        }
        (section(&a, &t, Some((&message_id, &code)), result.as_ref()))
        p { a href="/transforms" { "Back to transforms" } }
    };
    layout::page_status(&a, Nav::Transforms, "Try a transform", body, status)
}

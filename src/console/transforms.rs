//! Transformations: each script with its limits, and **Try it**: the script
//! (or an edited copy, never saved) run on a stored message through the API's
//! own call ([`crate::admin::transforms::run_try`]), showing what would be
//! delivered, the drop, or the error. Nothing is sent or stored. Those made
//! through the API (or here) can be created, saved and deleted, as operators.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{html, Markup};

use super::auth::{check_post, Authed};
use super::layout::{self, Nav};
use super::{Console, FormData};
use crate::admin::transforms::{run_try, TryOutcome, TryRequest, TryResult};
use crate::control::transforms::ApiTransform;
use crate::transform::Script;

/// `GET /transforms`
pub async fn list(State(c): State<Console>, a: Authed) -> Response {
    let all = c.admin.registry.transforms().all();
    let body = html! {
        h1 { "Transforms" }
        p.hint {
            "Scripts that reshape, enrich or drop messages before delivery, from "
            code { "[[transforms]]" } " in the config file (read-only here) or made here and through the API. "
            "Try one on a stored message: nothing is sent or stored."
        }
        @if all.is_empty() {
            p { "No transformations are defined." }
        }
        @for t in &all {
            (section(&a, t, None, None))
            @if !c.admin.registry.transforms().is_file(&t.name) {
                (changes(&a, t))
            }
        }
        section aria-labelledby="new-transform" {
            h2 id="new-transform" { "New transform" }
            form method="post" action="/transforms/new" {
                input type="hidden" name="csrf" value=(a.session.csrf);
                p {
                    label for="new-name" { "Name" }
                    " "
                    input.mono id="new-name" type="text" name="name" required;
                }
                p {
                    label for="new-code" { "Script" }
                    br;
                    textarea.mono id="new-code" name="code" rows="8" cols="80" spellcheck="false" required {
                        "function transform(request, context) {\n  return request;\n}\n"
                    }
                }
                button type="submit" { "Create transform" }
            }
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

/// Save and delete of a transformation made through the API (the config
/// file's are changed there).
fn changes(a: &Authed, t: &Script) -> Markup {
    let id = format!("e-{}", hex::encode(t.name.as_bytes()));
    let path = layout::path_segment(&t.name);
    html! {
        form method="post" action={ "/transforms/" (path) "/save" } {
            input type="hidden" name="csrf" value=(a.session.csrf);
            p {
                label for=(id) { "New script for " (t.name) }
                br;
                textarea.mono id=(id) name="code" rows="8" cols="80" spellcheck="false" required { (t.code) }
            }
            button type="submit" { "Save " (t.name) }
        }
        form method="post" action={ "/transforms/" (path) "/delete" } {
            input type="hidden" name="csrf" value=(a.session.csrf);
            button type="submit" { "Delete " (t.name) }
        }
    }
}

/// The script of a form (the limits left out: defaults, or as they were).
fn code_of(form: &FormData) -> ApiTransform {
    ApiTransform {
        code: Some(form.get("code").unwrap_or_default().to_string()),
        ..Default::default()
    }
}

/// `POST /transforms/new`
pub async fn create(
    State(c): State<Console>,
    a: Authed,
    headers: HeaderMap,
    form: FormData,
) -> Response {
    if let Some(r) = check_post(&a, &headers, &form, true) {
        return r;
    }
    let name = form.get("name").unwrap_or_default().trim().to_string();
    layout::after_change(
        c.admin
            .registry
            .put_transform(&name, &code_of(&form), true)
            .await,
        "/transforms",
    )
}

/// `POST /transforms/{name}/save`: a new script, the limits kept.
pub async fn save(
    State(c): State<Console>,
    a: Authed,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: FormData,
) -> Response {
    if let Some(r) = check_post(&a, &headers, &form, true) {
        return r;
    }
    layout::after_change(
        c.admin
            .registry
            .patch_transform(&name, &code_of(&form))
            .await,
        "/transforms",
    )
}

/// `POST /transforms/{name}/delete`
pub async fn delete(
    State(c): State<Console>,
    a: Authed,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: FormData,
) -> Response {
    if let Some(r) = check_post(&a, &headers, &form, true) {
        return r;
    }
    layout::after_change(
        c.admin.registry.delete_transform(&name).await,
        "/transforms",
    )
}

//! The checks of destinations and routes that need no I/O, for the file and the
//! API alike.
//!
//! [`destination`] returns every problem at once, each with the path of its
//! field. The config renders the path as `FILE:line:col` (through the table's
//! `FieldSpans`), the API as a JSON pointer ([`Problem::pointer`]); the message
//! is the same in both.

use std::fmt;

use super::def::{DestinationDef, DestinationType, Origin, RouteDef};
use super::error::{RetryError, UrlError};
use super::{OneOrMany, RetryConfig, API_SOURCE};
use crate::select::{Condition, FilterSpec};

/// One problem of a definition: the field it is about and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The field, as keys from the top of the definition (empty: the whole of it).
    pub path: Vec<String>,
    /// What is wrong, for people; never a secret's value.
    pub message: String,
}

impl Problem {
    /// A problem at the field `path` (dotted, as in `retry.max_attempts`).
    pub fn at(path: &str, message: impl Into<String>) -> Self {
        Problem {
            path: path
                .split('.')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            message: message.into(),
        }
    }

    /// A problem at the field whose keys are `path`.
    pub fn at_keys(path: &[&str], message: impl Into<String>) -> Self {
        Problem {
            path: path.iter().map(|s| s.to_string()).collect(),
            message: message.into(),
        }
    }

    /// The path as the config's field spans know it: `retry.max_attempts`.
    pub fn dotted(&self) -> String {
        self.path.join(".")
    }

    /// The path as a JSON pointer (RFC 6901): `/retry/max_attempts`.
    pub fn pointer(&self) -> String {
        self.path
            .iter()
            .map(|k| format!("/{}", k.replace('~', "~0").replace('/', "~1")))
            .collect()
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The message of a signing secret that is not in the Standard Webhooks form.
pub const BAD_SIGNING_SECRET: &str = "signing_secret must be `whsec_` followed by base64";

/// Whether a name fits in a URL path segment and a metric label.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// The message of a name that [`valid_name`] refuses.
pub fn bad_name(what: &str, name: &str) -> String {
    format!("{what} name {name:?} must be 1-64 letters, digits, '_', '-' or '.'")
}

/// Every problem of a destination defined in `origin`, in the order of its
/// parts: name and kind, the fields only the API takes, limits, retry and
/// breaker, secrets and headers.
pub fn destination(d: &DestinationDef, origin: Origin) -> Vec<Problem> {
    let mut out = Vec::new();
    if !valid_name(&d.name) {
        out.push(Problem::at("name", bad_name("destination", &d.name)));
    }
    if super::alerts::is_channel_destination(&d.name) {
        out.push(Problem::at(
            "name",
            format!(
                "destination names starting with `{}` are kept for the destinations of `[[alerts]]` channels",
                super::alerts::CHANNEL_PREFIX
            ),
        ));
    }
    url_and_type(d, &mut out);
    api_only(d, origin, &mut out);
    limits(d, &mut out);
    secrets_and_headers(d, origin, &mut out);
    out
}

/// `url` against `type`: a push destination needs one, a pull one has none
/// (nor the settings of sending).
fn url_and_type(d: &DestinationDef, out: &mut Vec<Problem>) {
    match (d.kind, &d.url) {
        (DestinationType::Push, Some(u)) => {
            if let Err(e) = check_url(u) {
                out.push(Problem::at("url", e.to_string()));
            }
        }
        // A `url` or `type` written with a bad value was reported where it was read.
        (DestinationType::Push, None) if d.spans.has("url") || d.spans.has("type") => {}
        (DestinationType::Push, None) => out.push(Problem::at(
            "url",
            "a destination needs a url (or type = \"pull\", for a consumer that pulls its deliveries)",
        )),
        (DestinationType::Pull, Some(_)) => out.push(Problem::at(
            "url",
            "a pull destination has no url: its consumer pulls the deliveries",
        )),
        (DestinationType::Pull, None) => {}
    }
    if d.kind == DestinationType::Pull {
        for (set, field, why) in [
            (
                d.circuit_breaker.is_some(),
                "circuit_breaker",
                "its consumer takes deliveries at its own pace",
            ),
            (
                d.timeout.is_some(),
                "timeout",
                "each pull says how long its leases last",
            ),
            (
                d.disable_after.is_some(),
                "disable_after",
                "a consumer that stops pulling leaves its deliveries queued",
            ),
            (
                d.transform.is_some(),
                "transform",
                "its consumer gets each message as received; transformations run on push deliveries",
            ),
        ] {
            if set {
                out.push(Problem::at(
                    field,
                    format!("{field} does not apply to a pull destination ({why})"),
                ));
            }
        }
    }
}

/// `source`, `filter` and `event_types`: an API destination's own route (in
/// the file, `[[routes]]` do that).
fn api_only(d: &DestinationDef, origin: Origin, out: &mut Vec<Problem>) {
    if origin == Origin::Config {
        if d.source.is_some() {
            out.push(Problem::at(
                "source",
                "source applies to destinations made through the API; in the file, [[routes]] send messages to a destination",
            ));
        }
        if !d.filter.is_empty() {
            out.push(Problem::at(
                "filter",
                "filter applies to destinations made through the API; in the file, put it on a [[routes]] table",
            ));
        }
    }
    if let Some(s) = &d.source {
        if s != API_SOURCE && !valid_name(s) {
            out.push(Problem::at("source", bad_name("source", s)));
        }
    }
    filter_problems(d.filter.iter(), out);
    match (&d.event_types, origin) {
        (Some(_), Origin::Config) => out.push(Problem::at(
            "event_types",
            "event_types applies to destinations made through the API; in the file, [[routes]] send events to a destination",
        )),
        (Some(t), Origin::Api) if !valid_event_types(t) => {
            out.push(Problem::at("event_types", BAD_EVENT_TYPES))
        }
        _ => {}
    }
}

/// The limits of sending: timeout, concurrency, rate, retry and breaker.
fn limits(d: &DestinationDef, out: &mut Vec<Problem>) {
    if d.timeout.is_some_and(|t| t.0.is_zero()) {
        out.push(Problem::at("timeout", "timeout must be more than 0"));
    }
    if d.max_in_flight == Some(0) {
        out.push(Problem::at(
            "max_in_flight",
            "max_in_flight must be at least 1",
        ));
    }
    if let Some(rl) = &d.rate_limit {
        if !(rl.per_second.is_finite() && rl.per_second > 0.0) {
            out.push(Problem::at(
                "rate_limit.per_second",
                "rate_limit.per_second must be more than 0",
            ));
        }
    }
    if let Some(r) = &d.retry {
        if let Err(e) = retry_problem(r) {
            out.push(Problem::at_keys(&["retry", e.field()], e.to_string()));
        }
    }
    if d.circuit_breaker.is_some_and(|b| b.failures == 0) {
        out.push(Problem::at(
            "circuit_breaker.failures",
            "circuit_breaker.failures must be at least 1",
        ));
    }
}

/// The signing secrets and the added headers.
fn secrets_and_headers(d: &DestinationDef, origin: Origin, out: &mut Vec<Problem>) {
    if let Some(s) = &d.signing_secret {
        if !crate::signing::valid_signing_secret(s.expose()) {
            out.push(Problem::at("signing_secret", BAD_SIGNING_SECRET));
        }
    }
    if !d.signing_secrets.is_empty() && origin == Origin::Config {
        out.push(Problem::at(
            "signing_secrets",
            "`signing_secrets` is managed by hookgate; use signing_secret",
        ));
    }
    for (i, k) in d.signing_secrets.iter().enumerate() {
        if crate::signing::decode_secret(&k.secret).is_none() {
            let i = i.to_string();
            out.push(Problem::at_keys(
                &["signing_secrets", &i, "secret"],
                BAD_SIGNING_SECRET,
            ));
        }
    }
    for (k, v) in &d.headers {
        if http::HeaderName::from_bytes(k.as_bytes()).is_err() {
            out.push(Problem::at_keys(
                &["headers", k],
                format!("header name {k:?} is not valid"),
            ));
        }
        if http::HeaderValue::from_str(v).is_err() {
            out.push(Problem::at_keys(
                &["headers", k],
                format!("the value of header {k:?} is not a valid header value"),
            ));
        }
    }
}

/// The message of event type patterns that [`valid_event_types`] refuses.
pub const BAD_EVENT_TYPES: &str = "event_types must hold non-empty patterns (use [\"*\"] for all)";

/// Whether a list of event type patterns is usable: not empty, no empty pattern.
fn valid_event_types(t: &[String]) -> bool {
    !t.is_empty() && t.iter().all(|p| !p.is_empty())
}

/// Every problem of a route; `is_source` and `is_destination` say which names
/// are defined (source `api` always is).
pub fn route(
    r: &RouteDef,
    is_source: &dyn Fn(&str) -> bool,
    is_destination: &dyn Fn(&str) -> bool,
) -> Vec<Problem> {
    let mut out = Vec::new();
    let src = r.source.get_ref();
    if src != API_SOURCE && !is_source(src) {
        out.push(Problem::at(
            "source",
            format!("route source `{src}` is not a defined source (nor `api`)"),
        ));
    }
    let names = r.to.get_ref().names();
    if names.is_empty() {
        out.push(Problem::at("to", "route `to` names no destination"));
    }
    let many = matches!(r.to.get_ref(), OneOrMany::Many(_));
    for (i, to) in names.into_iter().enumerate() {
        if !is_destination(to) {
            let i = i.to_string();
            let path: &[&str] = if many { &["to", &i] } else { &["to"] };
            out.push(Problem::at_keys(
                path,
                format!("route destination `{to}` is not a defined destination"),
            ));
        }
    }
    if !valid_event_types(&r.event_types) {
        out.push(Problem::at(
            "event_types",
            format!("route {BAD_EVENT_TYPES}"),
        ));
    }
    filter_problems(r.filter.iter().map(|f| f.get_ref()), &mut out);
    out
}

/// Every problem of a transformation's definition: its name, exactly one of
/// `file` and `code`, and limits a run can work within.
pub fn transform(t: &super::TransformDef) -> Vec<Problem> {
    let mut out = Vec::new();
    if !valid_name(&t.name) {
        out.push(Problem::at("name", bad_name("transform", &t.name)));
    }
    match (&t.file, &t.code) {
        (Some(_), Some(_)) => out.push(Problem::at(
            "code",
            format!(
                "transform `{}` has both `file` and `code`: give one",
                t.name
            ),
        )),
        (None, None) => out.push(Problem::at(
            "name",
            format!("transform `{}` needs `file` or `code`", t.name),
        )),
        _ => {}
    }
    if t.timeout
        .is_some_and(|d| d.0.is_zero() || d.0 > std::time::Duration::from_secs(10))
    {
        out.push(Problem::at(
            "timeout",
            "transform timeout must be more than 0 and at most 10s",
        ));
    }
    if t.memory_limit
        .is_some_and(|m| m.0 < (1 << 20) || m.0 > (1 << 30))
    {
        out.push(Problem::at(
            "memory_limit",
            "transform memory_limit must be between 1MiB and 1GiB",
        ));
    }
    out
}

/// A problem at `filter.N` for each filter table that is not a condition.
fn filter_problems<'a>(filter: impl Iterator<Item = &'a FilterSpec>, out: &mut Vec<Problem>) {
    for (i, f) in filter.enumerate() {
        if let Err(e) = Condition::try_from(f.clone()) {
            let i = i.to_string();
            out.push(Problem::at_keys(&["filter", &i], e.to_string()));
        }
    }
}

/// Checks a destination URL: absolute, http or https, with a host.
pub fn check_url(u: &str) -> Result<(), UrlError> {
    match url::Url::parse(u) {
        Ok(p) if (p.scheme() == "http" || p.scheme() == "https") && p.host().is_some() => Ok(()),
        Ok(_) => Err(UrlError::NotHttp(u.to_string())),
        Err(source) => Err(UrlError::Invalid {
            url: u.to_string(),
            source,
        }),
    }
}

/// Checks a retry table: one form, sane numbers.
pub fn retry_problem(r: &RetryConfig) -> Result<(), RetryError> {
    let exp = r.max_attempts.is_some() || r.initial.is_some() || r.max.is_some();
    match (&r.schedule, exp) {
        (Some(_), true) => Err(RetryError::BothForms),
        (Some(s), false) if s.is_empty() => Err(RetryError::EmptySchedule),
        (Some(s), false) if s.len() > 100 => Err(RetryError::LongSchedule),
        (None, true) => {
            if r.max_attempts == Some(0) {
                return Err(RetryError::NoAttempts);
            }
            if r.max_attempts.unwrap_or(0) > 100 {
                return Err(RetryError::TooManyAttempts);
            }
            if let (Some(i), Some(m)) = (r.initial, r.max) {
                if i > m {
                    return Err(RetryError::InitialOverMax);
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(json: serde_json::Value) -> DestinationDef {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let d = def(serde_json::json!({
            "name": "a b", "url": "ftp://x", "max_in_flight": 0,
            "retry": {"max_attempts": 0}, "headers": {"X/Y": "ok"},
        }));
        let p = destination(&d, Origin::Api);
        let pointers: Vec<String> = p.iter().map(Problem::pointer).collect();
        assert_eq!(
            pointers,
            [
                "/name",
                "/url",
                "/max_in_flight",
                "/retry/max_attempts",
                "/headers/X~1Y"
            ],
            "{p:#?}"
        );
        assert_eq!(p[3].dotted(), "retry.max_attempts");
    }

    #[test]
    fn the_file_refuses_what_only_the_api_may_set() {
        let d = def(serde_json::json!({
            "name": "d", "url": "http://127.0.0.1/", "event_types": ["*"],
        }));
        assert!(destination(&d, Origin::Api).is_empty());
        let p = destination(&d, Origin::Config);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert_eq!(p[0].pointer(), "/event_types");
    }
}

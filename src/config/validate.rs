//! Checks that need the whole config: names, references between routes,
//! sources and destinations, and the fields each verifier type takes.
//! Pure: it only reads the config and records errors, each at the field it is about.

use std::collections::HashSet;

use serde_spanned::Spanned;

use super::check::{bad_name, valid_name};
use super::def::Origin;
use super::report::Errors;
use super::{Config, DestinationDef, Secret, SourceConfig, VerifyConfig, VerifyKind};

/// The source name of events published through the API.
pub const API_SOURCE: &str = "api";

/// The prefix of a tenant's source: the messages of one application of the
/// Svix-compatible API are those of source `tenant.<app id>`, and only that
/// tenant's endpoints are routed from it.
pub const TENANT_SOURCE_PREFIX: &str = "tenant.";

/// Whether a source is a tenant's (see [`TENANT_SOURCE_PREFIX`]).
pub fn is_tenant_source(source: &str) -> bool {
    source.starts_with(TENANT_SOURCE_PREFIX)
}

/// The names the file defines, including those of tables that could not be built:
/// references are checked against these, so one bad field does not also make every
/// route that names its table wrong.
#[derive(Debug, Default)]
pub(super) struct Defined {
    /// `[[sources]]` names.
    pub sources: HashSet<String>,
    /// `[[destinations]]` names.
    pub destinations: HashSet<String>,
    /// `[[transforms]]` names.
    pub transforms: HashSet<String>,
}

pub(super) fn validate(cfg: &Config, defined: &Defined, errs: &mut Errors<'_>) {
    check_settings(cfg, errs);
    let mut sources = HashSet::new();
    for s in &cfg.sources {
        check_name(&s.name, "source", &mut sources, errs);
        if !valid_name(s.name.get_ref()) {
            errs.at(Some(s.name.span()), bad_name("source", s.name.get_ref()));
        }
        if s.name.get_ref() == API_SOURCE {
            errs.at(
                Some(s.name.span()),
                "the source name `api` is reserved for events published through the API",
            );
        }
        if is_tenant_source(s.name.get_ref()) {
            errs.at(
                Some(s.name.span()),
                "source names starting with `tenant.` are reserved for the tenants of the Svix-compatible API",
            );
        }
        check_source(s, errs);
    }

    let mut dests = HashSet::new();
    for d in &cfg.destinations {
        if !dests.insert(d.name.as_str()) {
            errs.field(
                &d.spans,
                "name",
                format!("destination `{}` is defined twice", d.name),
            );
        }
        check_destination(d, errs);
    }

    for r in &cfg.routes {
        let is_source = |n: &str| defined.sources.contains(n);
        let is_destination = |n: &str| defined.destinations.contains(n);
        for p in super::check::route(r, &is_source, &is_destination) {
            errs.field(&r.spans, &p.dotted(), p.message);
        }
        check_transform_ref(r.transform.as_deref(), &r.spans, defined, errs);
    }
    for d in &cfg.destinations {
        check_transform_ref(d.transform.as_deref(), &d.spans, defined, errs);
    }
    let mut transforms = HashSet::new();
    for t in &cfg.transforms {
        if !transforms.insert(t.name.as_str()) {
            errs.field(
                &t.spans,
                "name",
                format!("transform `{}` is defined twice", t.name),
            );
        }
        for p in super::check::transform(t) {
            errs.field(&t.spans, &p.dotted(), p.message);
        }
    }
}

/// A `transform = "name"` must name a `[[transforms]]` table.
fn check_transform_ref(
    name: Option<&str>,
    spans: &super::FieldSpans,
    defined: &Defined,
    errs: &mut Errors<'_>,
) {
    if let Some(n) = name {
        if !defined.transforms.contains(n) {
            errs.field(
                spans,
                "transform",
                format!("transform `{n}` is not a defined transform (add a [[transforms]] table with name = \"{n}\")"),
            );
        }
    }
}

/// The `[server]` and `[storage]` settings: each value in its range, and
/// the combinations that cannot work.
fn check_settings(cfg: &Config, errs: &mut Errors<'_>) {
    let at = &cfg.spans;
    if cfg.storage.backend == super::Backend::Postgres && cfg.storage.url.is_none() {
        errs.field(
            at,
            "storage.backend",
            "storage.backend = \"postgres\" needs storage.url",
        );
    }
    if cfg.storage.backend == super::Backend::Sqlite && cfg.storage.path.trim().is_empty() {
        errs.field(at, "storage.path", "storage.path must not be empty");
    }
    if cfg.server.max_body.0 == 0 {
        errs.field(at, "server.max_body", "server.max_body must be more than 0");
    }
    if cfg.server.read_timeout.0.is_zero() {
        errs.field(
            at,
            "server.read_timeout",
            "server.read_timeout must be more than 0",
        );
    }
    if let Some(max) = cfg.storage.max_size {
        if cfg.storage.backend == super::Backend::Postgres {
            errs.field(
                at,
                "storage.max_size",
                "storage.max_size applies to the embedded store only",
            );
        } else if max.0 < (1 << 20) {
            errs.field(
                at,
                "storage.max_size",
                "storage.max_size must be at least 1MiB",
            );
        }
    }
    if cfg.storage.max_pending == 0 {
        errs.field(
            at,
            "storage.max_pending",
            "storage.max_pending must be more than 0",
        );
    }
    if cfg.storage.connect_timeout.0.is_zero() {
        errs.at(None, "storage.connect_timeout must be more than 0");
    }
    if cfg.storage.query_timeout.0.is_zero() {
        errs.at(None, "storage.query_timeout must be more than 0");
    }
    if cfg.storage.max_waiting == 0 {
        errs.field(
            at,
            "storage.max_waiting",
            "storage.max_waiting must be more than 0",
        );
    }
    if cfg.storage.max_waiting_bytes.0 < 1024 {
        errs.field(
            at,
            "storage.max_waiting_bytes",
            "storage.max_waiting_bytes must be at least 1KiB",
        );
    }
    if cfg.storage.lease_margin.0.is_zero() {
        errs.at(None, "storage.lease_margin must be more than 0");
    }
    if cfg.server.listen.0 == cfg.server.admin_listen.0 && cfg.server.listen.0.port() != 0 {
        errs.field(
            at,
            "server.admin_listen",
            "server.listen and server.admin_listen must differ",
        );
    }
    check_telemetry(cfg, errs);
}

/// `[telemetry]`: an http(s) endpoint with a host, a ratio within 0 to 1, a
/// service name. The endpoint is not echoed: a URL may carry a credential.
fn check_telemetry(cfg: &Config, errs: &mut Errors<'_>) {
    let (at, t) = (&cfg.spans, &cfg.telemetry);
    if let Some(e) = &t.otlp_endpoint {
        let problem = match url::Url::parse(e.trim()) {
            Ok(u) if !matches!(u.scheme(), "http" | "https") || u.host().is_none() => {
                Some("must be an http:// or https:// URL with a host".to_string())
            }
            Ok(u) if u.query().is_some() || u.fragment().is_some() => {
                Some("must have no query or fragment".to_string())
            }
            Ok(_) => None,
            Err(e) => Some(format!("is not a valid URL: {e}")),
        };
        if let Some(p) = problem {
            errs.field(
                at,
                "telemetry.otlp_endpoint",
                format!(
                    "telemetry.otlp_endpoint {p} (the OTLP/HTTP receiver, e.g. http://127.0.0.1:4318)"
                ),
            );
        }
    }
    if !(0.0..=1.0).contains(&t.sample_ratio) {
        errs.field(
            at,
            "telemetry.sample_ratio",
            "telemetry.sample_ratio must be between 0.0 and 1.0",
        );
    }
    if t.service_name.trim().is_empty() {
        errs.field(
            at,
            "telemetry.service_name",
            "telemetry.service_name must not be empty",
        );
    }
    if let Some(bad) = t
        .per_tenant_metrics
        .iter()
        .find(|a| !a.starts_with("app_") || a.trim() != a.as_str())
    {
        errs.field(
            at,
            "telemetry.per_tenant_metrics",
            format!(
                "telemetry.per_tenant_metrics lists applications by id (app_…); {bad:?} is not one (uids are not accepted)"
            ),
        );
    }
}

/// What the config leaves open that is allowed but rarely meant; `check` prints
/// these and `serve` logs them.
pub fn warnings(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if cfg.server.admin_tokens.is_empty() {
        out.push(
            "server.admin_tokens is empty: the admin API (/api/*) refuses every call".to_string(),
        );
    }
    for s in &cfg.sources {
        if s.verify.is_none() {
            out.push(format!(
                "source `{}` has no `verify`: anyone who knows its URL can send to it",
                s.name.get_ref()
            ));
        }
    }
    out
}

/// Reports a name defined twice.
fn check_name<'a>(
    name: &'a Spanned<String>,
    what: &str,
    seen: &mut HashSet<&'a str>,
    errs: &mut Errors<'_>,
) {
    let n = name.get_ref();
    if !seen.insert(n.as_str()) {
        errs.at(Some(name.span()), format!("{what} `{n}` is defined twice"));
    }
}

fn check_source(s: &SourceConfig, errs: &mut Errors<'_>) {
    if let Some(v) = &s.verify {
        for (field, msg) in verify_problems_at(v.get_ref()) {
            let path = field.map_or("verify".to_string(), |f| format!("verify.{f}"));
            errs.field(&s.spans, &path, msg);
        }
    }
    let name = s.name.get_ref();
    let mut bad = |path: &str, msg: String| {
        errs.field(&s.spans, path, format!("source `{name}`: {msg}"));
    };
    if let Some(rl) = &s.rate_limit {
        if !(rl.per_second.is_finite() && rl.per_second > 0.0) {
            bad(
                "rate_limit.per_second",
                "rate_limit.per_second must be more than 0".into(),
            );
        }
    }
    if let Some(r) = &s.response {
        if let Some(st) = r.status {
            if !(200..=299).contains(&st) {
                bad(
                    "response.status",
                    format!("response.status must be a 2xx status, not {st}"),
                );
            }
        }
        if let Some(ct) = &r.content_type {
            if http::HeaderValue::from_str(ct).is_err() {
                bad(
                    "response.content_type",
                    "response.content_type is not a valid header value".into(),
                );
            }
        }
    }
}

/// The problems of one `verify` table; empty when it is right.
pub fn verify_problems(v: &VerifyConfig) -> Vec<String> {
    verify_problems_at(v).into_iter().map(|(_, m)| m).collect()
}

/// Problems of a `verify` table, each with the field it is about (`None`: the
/// table as a whole).
type VerifyProblems = Vec<(Option<&'static str>, String)>;

/// The problems of one `verify` table, each with the field it is about (`None`:
/// the table as a whole): its secrets, the fields its type takes, their values,
/// then the form of the secrets its type needs.
fn verify_problems_at(v: &VerifyConfig) -> VerifyProblems {
    let mut out = Vec::new();
    let keys = v.keys();
    secrets_given(v, &keys, &mut out);
    fields_of_kind(v, &mut out);
    field_values(v, &mut out);
    secret_forms(v, &keys, &mut out);
    out
}

/// The fields that only some verify types take: the field, whether a table
/// sets it, and the types that take it.
type FieldOfKind = (
    &'static str,
    fn(&VerifyConfig) -> bool,
    &'static [VerifyKind],
);

/// Every field that only some verify types take.
const FIELDS_OF_KIND: [FieldOfKind; 7] = {
    use VerifyKind::*;
    [
        ("url", |v| v.url.is_some(), &[Twilio]),
        (
            "tolerance",
            |v| v.tolerance.is_some(),
            &[Stripe, Slack, StandardWebhooks],
        ),
        ("header", |v| v.header.is_some(), &[Hmac, Header]),
        ("algorithm", |v| v.algorithm.is_some(), &[Hmac]),
        ("encoding", |v| v.encoding.is_some(), &[Hmac]),
        ("prefix", |v| v.prefix.is_some(), &[Hmac]),
        ("verify_token", |v| v.verify_token.is_some(), &[Meta]),
    ]
};

/// At least one secret, none of them empty.
fn secrets_given(v: &VerifyConfig, keys: &[Secret], out: &mut VerifyProblems) {
    let kind = v.kind.as_str();
    if keys.is_empty() {
        out.push((
            None,
            format!("verify type `{kind}` needs `secret` (or `secrets`)"),
        ));
    }
    if keys.iter().any(|k| k.expose().is_empty()) {
        let field = if v.secret.as_ref().is_some_and(|k| k.expose().is_empty()) {
            "secret"
        } else {
            "secrets"
        };
        out.push((
            Some(field),
            format!("verify type `{kind}`: a secret is empty"),
        ));
    }
}

/// A field set on a verify type that does not take it ([`FIELDS_OF_KIND`]).
fn fields_of_kind(v: &VerifyConfig, out: &mut VerifyProblems) {
    for (field, set, allowed) in FIELDS_OF_KIND {
        if set(v) && !allowed.contains(&v.kind) {
            out.push((
                Some(field),
                format!(
                    "`{field}` does not apply to verify type `{}`",
                    v.kind.as_str()
                ),
            ));
        }
    }
}

/// The values of `header`, `url`, `tolerance` and `verify_token`.
fn field_values(v: &VerifyConfig, out: &mut VerifyProblems) {
    if matches!(v.kind, VerifyKind::Hmac | VerifyKind::Header) {
        match &v.header {
            None => out.push((
                None,
                format!("verify type `{}` needs `header`", v.kind.as_str()),
            )),
            Some(h) if http::HeaderName::from_bytes(h.as_bytes()).is_err() => out.push((
                Some("header"),
                format!("`header` {h:?} is not a valid header name"),
            )),
            _ => {}
        }
    }
    if let Some(u) = &v.url {
        match url::Url::parse(u) {
            Ok(p) if (p.scheme() == "http" || p.scheme() == "https") && p.host().is_some() => {
                if p.query().is_some() || p.fragment().is_some() {
                    out.push((Some("url"), format!(
                        "`url` {u:?} must not have a query or fragment: the request's own query string is appended to it"
                    )));
                }
            }
            _ => out.push((
                Some("url"),
                format!("`url` {u:?} must be an absolute http(s) URL"),
            )),
        }
    }
    if v.tolerance.is_some_and(|t| t.0.is_zero()) {
        out.push((Some("tolerance"), "`tolerance` must be more than 0".into()));
    }
    if v.verify_token
        .as_ref()
        .is_some_and(|t| t.expose().is_empty())
    {
        out.push((
            Some("verify_token"),
            "`verify_token` must not be empty".into(),
        ));
    }
}

/// The form of the secrets that `basic` and `standard-webhooks` need.
fn secret_forms(v: &VerifyConfig, keys: &[Secret], out: &mut VerifyProblems) {
    if v.kind == VerifyKind::Basic && keys.iter().any(|k| !k.expose().contains(':')) {
        out.push((
            Some("secret"),
            "verify type `basic` takes `secret = \"user:password\"`".into(),
        ));
    }
    let bad_whsec = |k: &Secret| crate::signing::decode_secret(k.expose()).is_none();
    if v.kind == VerifyKind::StandardWebhooks && keys.iter().any(bad_whsec) {
        out.push((
            Some("secret"),
            "a standard-webhooks secret is `whsec_` followed by base64 (or plain base64)".into(),
        ));
    }
}

/// A destination's problems, from the one validator the API uses too, each at
/// its field and after the destination's name.
fn check_destination(d: &DestinationDef, errs: &mut Errors<'_>) {
    for p in super::check::destination(d, Origin::Config) {
        errs.field(
            &d.spans,
            &p.dotted(),
            format!("destination `{}`: {}", d.name, p.message),
        );
    }
}

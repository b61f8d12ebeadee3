//! The summary `hookgate check` prints of a valid config: one line per source,
//! destination and route, each with what sets it apart from the others.

use std::fmt::Write as _;

use crate::config::{Config, Priority, RouteDef};
use crate::select::FilterSpec;

/// A human-readable summary: listeners, store, sources, destinations, routes.
pub fn render(cfg: &Config) -> String {
    let mut s = String::new();
    let tls = |t: &Option<crate::config::TlsConfig>| {
        t.as_ref()
            .map_or(String::new(), |t| format!(" (TLS: {})", t.cert.display()))
    };
    let _ = writeln!(
        s,
        "listen       {}{}",
        cfg.server.listen.0,
        tls(&cfg.server.tls)
    );
    let _ = writeln!(
        s,
        "admin        {}{}",
        cfg.server.admin_listen.0,
        tls(&cfg.server.admin_tls)
    );
    let store = match cfg.storage.backend {
        crate::config::Backend::Sqlite => format!("sqlite {}", cfg.storage.path),
        crate::config::Backend::Postgres => "postgres (storage.url)".to_string(),
    };
    let _ = writeln!(
        s,
        "storage      {store}, retention {}",
        cfg.storage.retention
    );
    if let Some(e) = &cfg.telemetry.otlp_endpoint {
        let _ = writeln!(
            s,
            "traces       OTLP/HTTP to {}, sample ratio {}",
            crate::telemetry::trace::shown(e),
            cfg.telemetry.sample_ratio
        );
    }
    let _ = writeln!(s, "sources      {}", cfg.sources.len());
    for src in &cfg.sources {
        let verify = src
            .verify
            .as_ref()
            .map_or("none (warning: unauthenticated)", |v| {
                v.get_ref().kind.as_str()
            });
        let _ = writeln!(s, "  /in/{:<20} verify: {verify}", src.name.get_ref());
    }
    let _ = writeln!(s, "destinations {}", cfg.destinations.len());
    for d in &cfg.destinations {
        let target = match (&d.url, url::Url::parse(d.url.as_deref().unwrap_or(""))) {
            // An alert channel's URL holds its secret: its origin only.
            (Some(_), Ok(u)) if crate::config::alerts::is_channel_destination(&d.name) => {
                crate::config::alerts::shown_url(&d.name, &u)
            }
            (Some(u), _) => u.clone(),
            (None, _) => "pull (consumers lease its deliveries)".into(),
        };
        let _ = writeln!(s, "  {:<24} {target}", d.name);
    }
    let _ = writeln!(s, "routes       {}", cfg.routes.len());
    for r in &cfg.routes {
        let _ = writeln!(s, "  {}", route_line(r));
    }
    s
}

/// `source [event types] -> destinations`, then whatever the route sets beyond
/// that: filters, ordering key, priority, delay.
fn route_line(r: &RouteDef) -> String {
    let mut line = format!(
        "{} [{}] -> {}",
        r.source.get_ref(),
        r.event_types.join(", "),
        r.to.get_ref().names().join(", ")
    );
    if !r.filter.is_empty() {
        let tests: Vec<String> = r.filter.iter().map(|f| filter_text(f.get_ref())).collect();
        let _ = write!(line, " if {}", tests.join(" and "));
    }
    if let Some(k) = &r.ordering_key {
        let _ = write!(line, " ordered by {k}");
    }
    if r.priority != Priority::Normal {
        let _ = write!(line, " priority {}", r.priority.as_str());
    }
    if !r.delay.0.is_zero() {
        let _ = write!(line, " delay {}", r.delay);
    }
    line
}

/// One filter condition as written: `body:/a eq 1`, `header:X exists`.
fn filter_text(f: &FilterSpec) -> String {
    let mut tests = Vec::new();
    if let Some(v) = &f.eq {
        tests.push(format!("eq {v}"));
    }
    if let Some(v) = &f.ne {
        tests.push(format!("ne {v}"));
    }
    if let Some(v) = &f.in_ {
        let vs: Vec<String> = v.iter().map(ToString::to_string).collect();
        tests.push(format!("in [{}]", vs.join(", ")));
    }
    match f.exists {
        Some(true) => tests.push("exists".into()),
        Some(false) => tests.push("does not exist".into()),
        None => {}
    }
    if let Some(p) = &f.prefix {
        tests.push(format!("prefix {p:?}"));
    }
    format!("{} {}", f.field, tests.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(extra: &[&str]) -> Vec<String> {
        let mut text = String::from(
            "[[sources]]\nname = \"s\"\n[[destinations]]\nname = \"d\"\nurl = \"http://127.0.0.1:1/\"\n",
        );
        for e in extra {
            text.push_str(&format!("[[routes]]\nsource = \"s\"\nto = \"d\"\n{e}\n"));
        }
        let cfg = crate::config::parse(&text, "t.toml", &|_| None).unwrap();
        cfg.routes.iter().map(route_line).collect()
    }

    #[test]
    fn route_lines_tell_routes_apart() {
        let lines = routes(&[
            "",
            "filter = [ { field = \"body:/type\", eq = \"paid\" }, { field = \"header:X-Test\", exists = false } ]",
            "filter = [ { field = \"body:/n\", in = [1, 2] }, { field = \"query:q\", prefix = \"a\" } ]",
            "ordering_key = \"body:/customer\"",
            "priority = \"high\"",
            "priority = \"low\"",
            "delay = \"5s\"",
        ]);
        assert_eq!(
            lines,
            vec![
                "s [*] -> d",
                "s [*] -> d if body:/type eq \"paid\" and header:x-test does not exist",
                "s [*] -> d if body:/n in [1, 2] and query:q prefix \"a\"",
                "s [*] -> d ordered by body:/customer",
                "s [*] -> d priority high",
                "s [*] -> d priority low",
                "s [*] -> d delay 5s",
            ]
        );
    }

    #[test]
    fn an_alert_channel_url_is_shown_by_its_origin() {
        let cfg = crate::config::parse(
            "[[alerts]]\nname = \"ops\"\nformat = \"slack\"\nurl = \"https://hooks.slack.com/services/T0/B0/s3cr3t\"\n",
            "t.toml",
            &|_| None,
        )
        .unwrap();
        let text = render(&cfg);
        assert!(text.contains("alerts.ops"), "{text}");
        assert!(text.contains("https://hooks.slack.com/…"), "{text}");
        assert!(!text.contains("s3cr3t"), "{text}");
    }
}

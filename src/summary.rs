//! The summary `hookgate check` prints of a valid config.

use std::fmt::Write as _;

use crate::config::Config;

/// A human-readable summary: listeners, store, sources, destinations, routes.
pub fn render(cfg: &Config) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "listen       {}", cfg.server.listen.0);
    let _ = writeln!(s, "admin        {}", cfg.server.admin_listen.0);
    let store = match cfg.storage.backend {
        crate::config::Backend::Sqlite => format!("sqlite {}", cfg.storage.path),
        crate::config::Backend::Postgres => "postgres (storage.url)".to_string(),
    };
    let _ = writeln!(
        s,
        "storage      {store}, retention {}",
        cfg.storage.retention
    );
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
        let _ = writeln!(s, "  {:<24} {}", d.name.get_ref(), d.url.get_ref());
    }
    let _ = writeln!(s, "routes       {}", cfg.routes.len());
    for r in &cfg.routes {
        let _ = writeln!(
            s,
            "  {} [{}] -> {}",
            r.source.get_ref(),
            r.event_types.join(", "),
            r.to.get_ref().names().join(", ")
        );
    }
    s
}

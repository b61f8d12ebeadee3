//! Reads a config file into [`Config`], collecting every error with its position.
//!
//! The text is parsed once into a spanned TOML tree. `${VAR}` references are
//! replaced in string values (never in the raw text, so an environment value can
//! not change the file's structure). Each section and each array element is then
//! deserialized on its own, so one bad entry does not hide the errors of the others.

use std::collections::HashSet;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::EnvError;
use super::lenient;
use super::report::{unknown, ConfigError, ConfigErrors, Errors, FieldSpans};
use super::validate::{validate, Defined};
use super::Config;

/// The top-level sections of a config file.
const SECTIONS: &[&str] = &[
    "server",
    "storage",
    "telemetry",
    "sources",
    "destinations",
    "routes",
    "alerts",
    "transforms",
];

/// Reads and checks a config file. `env` looks up `${VAR}` references.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: file.clone(),
            line: None,
            col: None,
            message: format!("cannot read the config file: {e}"),
        }])
    })?;
    let mut cfg = parse_with(&text, &file, &|name| std::env::var(name).ok(), true)?;
    cfg.file = Some(path.to_path_buf());
    Ok(cfg)
}

/// Parses and checks config text; `file` names it in errors, `env` resolves `${VAR}`.
/// The TLS files it names are not read (see [`load`]); the transformations'
/// script files are, relative to `file`'s folder.
pub fn parse(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    parse_with(text, file, env, false)
}

/// Parses and checks config text; with `read_files`, also loads the TLS
/// certificates and keys it names.
fn parse_with(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
    read_files: bool,
) -> Result<Config, ConfigErrors> {
    let mut errs = Errors::new(file, text);
    let (root, syntax) = DeTable::parse_recoverable(text);
    for e in &syntax {
        errs.toml(e);
    }
    if !syntax.is_empty() {
        // A broken document would only produce follow-on errors.
        return errs.into_result(Config::default());
    }
    let mut cfg = Config::default();
    let mut defined = Defined::default();
    for (key, mut value) in root.into_inner() {
        substitute_env(&mut value, env, &mut errs);
        let key_span = key.span();
        match key.get_ref().as_ref() {
            "server" => {
                cfg.spans.add("server", &value);
                if let Some(v) = lenient::table(value, &mut errs) {
                    cfg.server = v;
                }
            }
            "storage" => {
                cfg.spans.add("storage", &value);
                if let Some(v) = lenient::table(value, &mut errs) {
                    cfg.storage = v;
                }
            }
            "telemetry" => {
                cfg.spans.add("telemetry", &value);
                if let Some(v) = lenient::table(value, &mut errs) {
                    cfg.telemetry = v;
                }
            }
            "sources" => {
                for (mut s, spans) in
                    many::<super::SourceConfig>(value, "sources", &mut defined.sources, &mut errs)
                {
                    s.spans = spans;
                    cfg.sources.push(s);
                }
            }
            "destinations" => {
                for (mut d, spans) in many::<super::DestinationDef>(
                    value,
                    "destinations",
                    &mut defined.destinations,
                    &mut errs,
                ) {
                    d.spans = spans;
                    cfg.destinations.push(d);
                }
            }
            "routes" => {
                for (mut r, spans) in
                    many::<super::RouteDef>(value, "routes", &mut HashSet::new(), &mut errs)
                {
                    r.spans = spans;
                    cfg.routes.push(r);
                }
            }
            "alerts" => {
                for (mut a, spans) in many::<super::alerts::AlertChannel>(
                    value,
                    "alerts",
                    &mut HashSet::new(),
                    &mut errs,
                ) {
                    a.spans = spans;
                    cfg.alerts.push(a);
                }
            }
            "transforms" => {
                for (mut t, spans) in many::<super::TransformDef>(
                    value,
                    "transforms",
                    &mut defined.transforms,
                    &mut errs,
                ) {
                    t.spans = spans;
                    cfg.transforms.push(t);
                }
            }
            other => errs.at(Some(key_span), unknown("section", other, SECTIONS)),
        }
    }
    validate(&cfg, &defined, &mut errs);
    super::alerts::check(&cfg.alerts, &mut errs);
    // Each channel is delivered through a file destination of its own.
    cfg.destinations
        .extend(cfg.alerts.iter().map(super::alerts::channel_destination));
    if read_files {
        check_tls_files(&cfg, &mut errs);
    }
    // Scripts are part of what runs (unlike certificates, which the listeners
    // load themselves): read them whichever way the config came.
    read_transform_files(&mut cfg, Path::new(file).parent(), &mut errs);
    errs.into_result(cfg)
}

/// Loads the certificate and key of each listener with TLS, as the listener
/// will; each error at the file it is about, naming the file, never its content.
fn check_tls_files(cfg: &Config, errs: &mut Errors<'_>) {
    for (setting, tls) in [
        ("server.tls", &cfg.server.tls),
        ("server.admin_tls", &cfg.server.admin_tls),
    ] {
        let Some(tls) = tls else { continue };
        if let Err((which, e)) = tls.files().load() {
            let field = match which {
                crate::tls::Which::Cert => "cert",
                crate::tls::Which::Key => "key",
                crate::tls::Which::Pair => "",
            };
            let path = if field.is_empty() {
                setting.to_string()
            } else {
                format!("{setting}.{field}")
            };
            errs.field(&cfg.spans, &path, format!("{path}: {e}"));
        }
    }
}

/// Reads the script of each transformation given as a `file`, relative to the
/// config file's folder; an error names the file, at its field.
fn read_transform_files(cfg: &mut Config, dir: Option<&Path>, errs: &mut Errors<'_>) {
    for t in &mut cfg.transforms {
        let Some(f) = &t.file else { continue };
        let path = match dir {
            Some(d) if f.is_relative() => d.join(f),
            _ => f.clone(),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => t.loaded = Some(text),
            Err(e) => errs.field(
                &t.spans,
                "file",
                format!(
                    "transform `{}`: cannot read {}: {e}",
                    t.name,
                    path.display()
                ),
            ),
        }
    }
}

/// Deserializes each table of an array of tables on its own, with its field spans.
/// The `name` of every table goes into `names`, even of one that cannot be built,
/// so references to it are not reported as well.
fn many<T: DeserializeOwned>(
    value: Spanned<DeValue<'_>>,
    section: &str,
    names: &mut HashSet<String>,
    errs: &mut Errors<'_>,
) -> Vec<(T, FieldSpans)> {
    let span = value.span();
    match value.into_inner() {
        DeValue::Array(items) => items
            .iter()
            .filter_map(|item| {
                if let DeValue::Table(t) = item.get_ref() {
                    let name = t.iter().find(|(k, _)| k.get_ref() == "name");
                    if let Some((_, n)) = name {
                        if let DeValue::String(n) = n.get_ref() {
                            names.insert(n.to_string());
                        }
                    }
                }
                let spans = FieldSpans::of(item);
                lenient::table(item.clone(), errs).map(|v| (v, spans))
            })
            .collect(),
        _ => {
            errs.at(
                Some(span),
                format!("`{section}` must be an array of tables: write [[{section}]]"),
            );
            Vec::new()
        }
    }
}

/// Replaces `${VAR}` in every string value; `$${` writes a literal `${`.
fn substitute_env(
    value: &mut Spanned<DeValue<'_>>,
    env: &dyn Fn(&str) -> Option<String>,
    errs: &mut Errors<'_>,
) {
    let span = value.span();
    match value.get_mut() {
        DeValue::String(s) if s.contains('$') => match expand(s, env) {
            Ok(new) => *s = new.into(),
            Err(e) => errs.at(Some(span), e.to_string()),
        },
        DeValue::Array(items) => {
            for v in items.iter_mut() {
                substitute_env(v, env, errs);
            }
        }
        DeValue::Table(t) => {
            for (_, v) in t.iter_mut() {
                substitute_env(v, env, errs);
            }
        }
        _ => {}
    }
}

/// Expands `${NAME}` references in one string.
pub(super) fn expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, EnvError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix("${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let end = tail.find('}').ok_or(EnvError::Unterminated)?;
            let name = &tail[..end];
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(EnvError::BadName(name.to_string()));
            }
            let value = env(name).ok_or_else(|| EnvError::Unset(name.to_string()))?;
            out.push_str(&value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".into()),
            "PORT" => Some("9000".into()),
            "QUOTE" => Some("a\"b]\n[x".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_variables() {
        assert_eq!(expand("a ${TOKEN} b", &env).unwrap(), "a s3cret b");
        assert_eq!(expand("${TOKEN}${PORT}", &env).unwrap(), "s3cret9000");
        assert_eq!(expand("cost $5", &env).unwrap(), "cost $5");
        assert_eq!(expand("lit $${TOKEN}", &env).unwrap(), "lit ${TOKEN}");
        assert_eq!(
            expand("${MISSING}", &env).unwrap_err().to_string(),
            "environment variable MISSING is not set"
        );
        assert_eq!(expand("${TOKEN", &env), Err(EnvError::Unterminated));
        assert_eq!(expand("${}", &env), Err(EnvError::BadName(String::new())));
        assert_eq!(
            expand("${A-B}", &env).unwrap_err().to_string(),
            "invalid variable reference ${A-B}: names are letters, digits and _"
        );
    }

    #[test]
    fn environment_values_cannot_inject_toml() {
        let cfg = parse("[server]\nadmin_tokens = [\"${QUOTE}\"]\n", "t.toml", &env).unwrap();
        assert_eq!(cfg.server.admin_tokens[0].expose(), "a\"b]\n[x");
    }
}

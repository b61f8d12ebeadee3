//! Reads a config file into [`Config`], collecting every error with its position.
//!
//! The text is parsed once into a spanned TOML tree. `${VAR}` references are
//! replaced in string values (never in the raw text, so an environment value can
//! not change the file's structure). Each section and each array element is then
//! deserialized on its own, so one bad entry does not hide the errors of the others.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::validate::validate;
use super::Config;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name as given.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub col: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.col) {
            (Some(l), Some(c)) => write!(f, "{}:{}:{}: {}", self.file, l, c, self.message),
            _ => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// All problems found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects errors against one source text.
pub(super) struct Errors<'a> {
    file: &'a str,
    text: &'a str,
    list: Vec<ConfigError>,
}

impl<'a> Errors<'a> {
    pub(super) fn new(file: &'a str, text: &'a str) -> Self {
        Errors {
            file,
            text,
            list: Vec::new(),
        }
    }

    /// Records an error at a byte span (or without a position).
    pub(super) fn at(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        let (line, col) = match span {
            Some(s) => {
                let (l, c) = line_col(self.text, s.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        self.list.push(ConfigError {
            file: self.file.to_string(),
            line,
            col,
            message: message.into(),
        });
    }

    fn toml(&mut self, e: &toml::de::Error) {
        self.at(e.span(), e.message().trim().to_string());
    }

    pub(super) fn into_result<T>(mut self, value: T) -> Result<T, ConfigErrors> {
        if self.list.is_empty() {
            Ok(value)
        } else {
            self.list.sort_by_key(|e| (e.line, e.col));
            self.list.dedup();
            Err(ConfigErrors(self.list))
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let mut start = offset;
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

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
    parse(&text, &file, &|name| std::env::var(name).ok())
}

/// Parses and checks config text; `file` names it in errors, `env` resolves `${VAR}`.
pub fn parse(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
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
    for (key, mut value) in root.into_inner() {
        substitute_env(&mut value, env, &mut errs);
        let key_span = key.span();
        match key.get_ref().as_ref() {
            "server" => {
                if let Some(v) = one(value, &mut errs) {
                    cfg.server = v;
                }
            }
            "storage" => {
                if let Some(v) = one(value, &mut errs) {
                    cfg.storage = v;
                }
            }
            "sources" => cfg.sources = many(value, "sources", &mut errs),
            "destinations" => cfg.destinations = many(value, "destinations", &mut errs),
            "routes" => cfg.routes = many(value, "routes", &mut errs),
            other => errs.at(
                Some(key_span),
                format!(
                    "unknown section `{other}`; expected one of `server`, `storage`, `sources`, `destinations`, `routes`"
                ),
            ),
        }
    }
    validate(&cfg, &mut errs);
    errs.into_result(cfg)
}

fn one<T: DeserializeOwned>(value: Spanned<DeValue<'_>>, errs: &mut Errors<'_>) -> Option<T> {
    T::deserialize(ValueDeserializer::from(value))
        .map_err(|e| errs.toml(&e))
        .ok()
}

fn many<T: DeserializeOwned>(
    value: Spanned<DeValue<'_>>,
    name: &str,
    errs: &mut Errors<'_>,
) -> Vec<T> {
    let span = value.span();
    match value.into_inner() {
        DeValue::Array(items) => items.into_iter().filter_map(|v| one(v, errs)).collect(),
        _ => {
            errs.at(
                Some(span),
                format!("`{name}` must be an array of tables: write [[{name}]]"),
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
            Err(msg) => errs.at(Some(span), msg),
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
pub(super) fn expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix("${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let end = tail
                .find('}')
                .ok_or_else(|| "unterminated ${ in string: write ${NAME}".to_string())?;
            let name = &tail[..end];
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "invalid variable reference ${{{name}}}: names are letters, digits and _"
                ));
            }
            let value =
                env(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
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
        assert!(expand("${MISSING}", &env).unwrap_err().contains("MISSING"));
        assert!(expand("${TOKEN", &env).is_err());
        assert!(expand("${}", &env).is_err());
        assert!(expand("${A-B}", &env).is_err());
    }

    #[test]
    fn line_and_column() {
        let t = "a\nbc\n\u{e9}xyz";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 3), (2, 2));
        assert_eq!(line_col(t, 7), (3, 2));
        assert_eq!(line_col(t, 999), (3, 5));
    }

    #[test]
    fn environment_values_cannot_inject_toml() {
        let cfg = parse("[server]\nadmin_tokens = [\"${QUOTE}\"]\n", "t.toml", &env).unwrap();
        assert_eq!(cfg.server.admin_tokens[0].expose(), "a\"b]\n[x");
    }
}

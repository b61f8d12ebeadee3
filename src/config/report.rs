//! Config problems and where they are: the error list every config check writes to.
//!
//! A check never stops at the first problem; it records each one with a location and
//! goes on. A location is a byte span of the TOML text, turned into `line:col` when
//! the error is recorded. Checks name the offending field by its dotted path
//! (`retry.max_attempts`, `to.1`) and look its span up in the table's [`FieldSpans`],
//! so the same check can later point into other documents (a JSON pointer is the
//! same path with `/`). Messages never carry a secret's value: type errors are
//! stripped of the value they found.

use std::collections::BTreeMap;
use std::ops::Range;

use serde_spanned::Spanned;
use toml::de::DeValue;

pub use super::error::{ConfigError, ConfigErrors};

/// The spans of a table's fields by dotted path (`""` is the table itself).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSpans(BTreeMap<String, Range<usize>>);

impl FieldSpans {
    /// Records the spans of `value` and, below it, of every key and array item.
    pub(super) fn of(value: &Spanned<DeValue<'_>>) -> Self {
        let mut spans = FieldSpans::default();
        spans.add("", value);
        spans
    }

    /// Adds `value` at `path` and everything below it.
    pub(super) fn add(&mut self, path: &str, value: &Spanned<DeValue<'_>>) {
        self.0.insert(path.to_string(), value.span());
        let join = |key: &str| {
            if path.is_empty() {
                key.to_string()
            } else {
                format!("{path}.{key}")
            }
        };
        match value.get_ref() {
            DeValue::Table(t) => {
                for (k, v) in t.iter() {
                    self.add(&join(k.get_ref()), v);
                }
            }
            DeValue::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    self.add(&join(&i.to_string()), v);
                }
            }
            _ => {}
        }
    }

    /// Whether `path` was written (even with a value that was then refused).
    pub fn has(&self, path: &str) -> bool {
        self.0.contains_key(path)
    }

    /// The span of `path`, or of the nearest enclosing field that has one.
    pub(super) fn find(&self, path: &str) -> Option<Range<usize>> {
        let mut p = path;
        loop {
            if let Some(s) = self.0.get(p) {
                return Some(s.clone());
            }
            if p.is_empty() {
                return None;
            }
            p = p.rfind('.').map_or("", |i| &p[..i]);
        }
    }
}

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

    /// Records an error at the field `path` of a table.
    pub(super) fn field(&mut self, spans: &FieldSpans, path: &str, message: impl Into<String>) {
        self.at(spans.find(path), message);
    }

    /// Records an error of the TOML parser or deserializer, in this crate's words.
    pub(super) fn toml(&mut self, e: &toml::de::Error) {
        self.at(e.span(), reword(e.message().trim()));
    }

    /// The config when nothing was recorded, else every error by position.
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
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
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

/// The known word closest to `word`, if one is close enough to be a typo of it.
pub(super) fn closest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    // A third of the word may be wrong, but never all of it.
    let len = word.chars().count();
    let limit = (len / 3).max(1);
    known
        .iter()
        .map(|k| (strsim::osa_distance(word, k), *k))
        .filter(|(d, _)| *d <= limit && *d < len)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// `unknown key "x", did you mean "y"?`, or the list of known keys when none is close.
pub(super) fn unknown(what: &str, word: &str, known: &[&str]) -> String {
    match closest(word, known) {
        Some(k) => format!("unknown {what} {word:?}, did you mean {k:?}?"),
        None if known.is_empty() => format!("unknown {what} {word:?}"),
        None => {
            let list: Vec<String> = known.iter().map(|k| format!("{k:?}")).collect();
            format!(
                "unknown {what} {word:?}; expected one of {}",
                list.join(", ")
            )
        }
    }
}

/// Rewrites serde's messages: unknown fields and variants get a suggestion, and a
/// type error does not repeat the value it found (it may be a secret). The API
/// words its JSON errors with it too.
pub(crate) fn reword(message: &str) -> String {
    for (prefix, what) in [("unknown field ", "key"), ("unknown variant ", "value")] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let mut words = backticked(rest);
            if let Some(word) = words.next() {
                let known: Vec<&str> = words.collect();
                return unknown(what, word, &known);
            }
        }
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some(i) = rest.rfind(", expected ") {
                let found = &rest[..i];
                // `string "…"`, `integer `5``: the kind is what comes before the value.
                let kind = found
                    .find(['`', '"'])
                    .map_or(found, |v| found[..v].trim_end());
                return format!("{prefix}{kind}{}", &rest[i..]);
            }
        }
    }
    message.to_string()
}

/// The words between backticks in a serde message, in order.
fn backticked(s: &str) -> impl Iterator<Item = &str> {
    s.split('`').skip(1).step_by(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        let t = "a\nbc\n\u{e9}xyz";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 3), (2, 2));
        assert_eq!(line_col(t, 7), (3, 2));
        assert_eq!(line_col(t, 999), (3, 5));
    }

    #[test]
    fn suggestions() {
        let known = ["verify", "name", "max_in_flight", "retention"];
        assert_eq!(closest("verfy", &known), Some("verify"));
        assert_eq!(closest("max_inflight", &known), Some("max_in_flight"));
        assert_eq!(closest("retension", &known), Some("retention"));
        assert_eq!(closest("zzzzzzz", &known), None);
        assert_eq!(
            unknown("key", "verfy", &known),
            "unknown key \"verfy\", did you mean \"verify\"?"
        );
        assert_eq!(closest("c", &["a", "b"]), None);
        assert!(unknown("key", "q", &["abcdef"]).contains("expected one of \"abcdef\""));
    }

    #[test]
    fn serde_messages_are_reworded() {
        assert_eq!(
            reword("unknown field `verfy`, expected one of `name`, `verify`"),
            "unknown key \"verfy\", did you mean \"verify\"?"
        );
        assert_eq!(
            reword("unknown variant `hihg`, expected one of `high`, `normal`, `low`"),
            "unknown value \"hihg\", did you mean \"high\"?"
        );
        assert_eq!(
            reword("invalid type: string \"hunter2, expected x\", expected a sequence"),
            "invalid type: string, expected a sequence"
        );
        assert_eq!(
            reword("invalid type: floating point `1.5`, expected u32"),
            "invalid type: floating point, expected u32"
        );
        assert_eq!(
            reword("invalid type: sequence, expected a string"),
            "invalid type: sequence, expected a string"
        );
    }
}

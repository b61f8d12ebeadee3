//! Lenient deserialization of one TOML table: every bad key and value is reported,
//! and the table is still built from what is left.
//!
//! Serde stops at the first error. To see them all, a table is deserialized, the
//! key or array item the error points at is taken out (so its default applies),
//! and it is deserialized again, until it succeeds or nothing more can be taken out
//! (a required field is missing or bad: the table cannot be built). Errors that only
//! follow from a removal ("missing field `x`" after `x` was taken out for a bad
//! value) are not reported twice. Unknown keys stay errors; they are just not the
//! last word on the rest of the table.

use std::ops::Range;

use serde::de::DeserializeOwned;
use serde_spanned::Spanned;
use toml::de::{DeArray, DeValue, ValueDeserializer};

use super::report::Errors;

/// A table with more problems than this is reported only this far.
const MAX_ERRORS_PER_TABLE: usize = 64;

/// Deserializes `value` as a `T`, recording each of its errors; `None` when a required
/// part is missing or wrong.
pub(super) fn table<T: DeserializeOwned>(
    mut value: Spanned<DeValue<'_>>,
    errs: &mut Errors<'_>,
) -> Option<T> {
    // (span of the table, key) of every entry taken out so far.
    let mut removed: Vec<(Range<usize>, String)> = Vec::new();
    for _ in 0..MAX_ERRORS_PER_TABLE {
        let e = match T::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(t) => return Some(t),
            Err(e) => e,
        };
        let span = e.span();
        let follow_on = missing_field_name(e.message()).is_some_and(|field| {
            removed
                .iter()
                .any(|(s, k)| Some(s) == span.as_ref() && k == field)
        });
        if !follow_on {
            errs.toml(&e);
        }
        match span.and_then(|s| remove_at(&mut value, &s)) {
            Some(taken) => removed.push(taken),
            None => return None,
        }
    }
    errs.at(
        Some(value.span()),
        format!("more than {MAX_ERRORS_PER_TABLE} errors in this table; the rest are not shown"),
    );
    None
}

/// The field of serde's "missing field" message, if it is one.
fn missing_field_name(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

/// Takes out the innermost key or array item at `span` below `node`; returns the span
/// of the table or array it was in and its key (or index).
fn remove_at(
    node: &mut Spanned<DeValue<'_>>,
    span: &Range<usize>,
) -> Option<(Range<usize>, String)> {
    let node_span = node.span();
    match node.get_mut() {
        DeValue::Table(t) => {
            let mut hit = None;
            for (k, v) in t.iter_mut() {
                if k.span() == *span || v.span() == *span {
                    hit = Some(k.clone());
                    break;
                }
                if contains(&v.span(), span) {
                    if let Some(found) = remove_at(v, span) {
                        return Some(found);
                    }
                    hit = Some(k.clone());
                    break;
                }
            }
            let key = hit?;
            t.remove(&key);
            Some((node_span, key.into_inner().into_owned()))
        }
        DeValue::Array(items) => {
            let i = items.iter().position(|v| contains(&v.span(), span))?;
            if items[i].span() != *span {
                if let Some(found) = remove_at(&mut items.as_mut()[i], span) {
                    return Some(found);
                }
            }
            let mut kept = DeArray::new();
            for (j, v) in items.iter().enumerate() {
                if j != i {
                    kept.push(v.clone());
                }
            }
            *items = kept;
            Some((node_span, i.to_string()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use toml::de::DeTable;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        a: u32,
        #[serde(default)]
        b: u32,
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        name: String,
        #[serde(default)]
        n: u32,
        #[serde(default)]
        inner: Option<Inner>,
        #[serde(default)]
        list: Vec<u32>,
    }

    fn run(text: &str) -> (Option<Outer>, Vec<String>) {
        let (root, syntax) = DeTable::parse_recoverable(text);
        assert!(syntax.is_empty());
        let mut errs = Errors::new("t", text);
        let value = Spanned::new(0..text.len(), DeValue::Table(root.into_inner()));
        let out = table::<Outer>(value, &mut errs);
        let msgs = match errs.into_result(()) {
            Ok(()) => Vec::new(),
            Err(e) => e.0.into_iter().map(|e| e.to_string()).collect(),
        };
        (out, msgs)
    }

    #[test]
    fn every_bad_key_is_reported_and_the_rest_is_kept() {
        let (out, errs) = run("name = \"x\"\nnn = 1\nn = \"two\"\nlist = [1, \"b\", 3]\n");
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(
            errs[0].starts_with("t:2:1: unknown key \"nn\""),
            "{errs:#?}"
        );
        assert!(errs[1].starts_with("t:3:5: invalid type"), "{errs:#?}");
        assert!(errs[2].starts_with("t:4:12: invalid type"), "{errs:#?}");
        let out = out.unwrap();
        assert_eq!(out.name, "x");
        assert_eq!(out.list, vec![1, 3]);
    }

    #[test]
    fn a_bad_required_field_is_reported_once_and_drops_its_table() {
        let (out, errs) = run("name = \"x\"\ninner = { a = \"one\", c = 2 }\n");
        assert_eq!(errs.len(), 2, "{errs:#?}");
        assert!(errs[0].contains("2:15: invalid type"), "{errs:#?}");
        assert!(
            errs[1].ends_with("2:22: unknown key \"c\"; expected one of \"a\", \"b\""),
            "{errs:#?}"
        );
        assert_eq!(out.unwrap().inner, None);
        let (out, errs) = run("n = 1\n");
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(errs[0].contains("missing field `name`"), "{errs:#?}");
        assert!(out.is_none());
    }
}

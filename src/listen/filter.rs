//! `--filter` arguments of `hookgate listen --create`: one condition each, in a
//! shell-friendly form, turned into the API's filter conditions (the same as a
//! `[[routes]]` filter).
//!
//! | argument            | condition                                  |
//! |---------------------|--------------------------------------------|
//! | `SELECTOR=VALUE`    | `{"field": SELECTOR, "eq": VALUE}`         |
//! | `SELECTOR!=VALUE`   | `{"field": SELECTOR, "ne": VALUE}`         |
//! | `SELECTOR^=PREFIX`  | `{"field": SELECTOR, "prefix": "PREFIX"}`  |
//! | `SELECTOR`          | `{"field": SELECTOR, "exists": true}`      |
//!
//! A VALUE that is valid JSON is sent as that JSON (`42`, `true`, `"42"`),
//! anything else as a string; a PREFIX is always a string. The selector is
//! checked here, so a typo is refused before anything is created.

use std::str::FromStr;

use serde_json::{json, Value};

use crate::select::{Condition, Selector, Test};

/// A condition as the API takes it (`field` in its normal form, `header:`
/// names in lower case).
pub fn to_json(c: &Condition) -> Value {
    let field = c.field.to_string();
    match &c.test {
        Test::Eq(v) => json!({"field": field, "eq": v}),
        Test::Ne(v) => json!({"field": field, "ne": v}),
        Test::In(vs) => json!({"field": field, "in": vs}),
        Test::Exists(e) => json!({"field": field, "exists": e}),
        Test::Prefix(p) => json!({"field": field, "prefix": p}),
    }
}

/// A value given on the command line: its JSON when it is valid JSON, else the text.
fn value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// Parses one `--filter` argument (see the module's header).
pub fn parse(arg: &str) -> Result<Condition, String> {
    let (selector, test) = match arg.find('=') {
        None => (arg, Test::Exists(true)),
        Some(i) => {
            let rest = &arg[i + 1..];
            match arg[..i].chars().last() {
                Some('!') => (&arg[..i - 1], Test::Ne(value(rest))),
                Some('^') => (&arg[..i - 1], Test::Prefix(rest.to_string())),
                _ => (&arg[..i], Test::Eq(value(rest))),
            }
        }
    };
    if selector.is_empty() {
        return Err(format!(
            "--filter {arg:?} names no field: write SELECTOR=VALUE, SELECTOR!=VALUE, \
             SELECTOR^=PREFIX or SELECTOR (like body:/message/chat/id=42)"
        ));
    }
    let field = Selector::from_str(selector).map_err(|e| format!("--filter {arg:?}: {e}"))?;
    Ok(Condition { field, test })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(arg: &str) -> Value {
        to_json(&parse(arg).unwrap())
    }

    #[test]
    fn the_four_forms() {
        assert_eq!(
            j("body:/message/chat/id=42"),
            json!({"field": "body:/message/chat/id", "eq": 42})
        );
        assert_eq!(
            j("body:/type!=ping"),
            json!({"field": "body:/type", "ne": "ping"})
        );
        assert_eq!(
            j("body:/text^=/start"),
            json!({"field": "body:/text", "prefix": "/start"})
        );
        assert_eq!(
            j("body:/message"),
            json!({"field": "body:/message", "exists": true})
        );
    }

    #[test]
    fn values_are_json_when_they_parse() {
        assert_eq!(j("body:/a=true"), json!({"field": "body:/a", "eq": true}));
        assert_eq!(j("body:/a=\"42\""), json!({"field": "body:/a", "eq": "42"}));
        assert_eq!(j("body:/a=null"), json!({"field": "body:/a", "eq": null}));
        assert_eq!(
            j("body:/a=[1,2]"),
            json!({"field": "body:/a", "eq": [1, 2]})
        );
        assert_eq!(j("body:/a="), json!({"field": "body:/a", "eq": ""}));
        assert_eq!(
            j("form:Body=hello world"),
            json!({"field": "form:Body", "eq": "hello world"})
        );
        // Only the first '=' splits; the rest belongs to the value.
        assert_eq!(j("query:a=b=c"), json!({"field": "query:a", "eq": "b=c"}));
        // A prefix stays text even when it looks like JSON.
        assert_eq!(
            j("body:/id^=12"),
            json!({"field": "body:/id", "prefix": "12"})
        );
    }

    #[test]
    fn header_names_are_normalised() {
        assert_eq!(
            j("header:X-Event=push"),
            json!({"field": "header:x-event", "eq": "push"})
        );
        assert_eq!(
            j("header:X-Event!=push"),
            json!({"field": "header:x-event", "ne": "push"})
        );
    }

    #[test]
    fn bad_arguments_are_refused_clearly() {
        for (arg, says) in [
            ("=42", "names no field"),
            ("!=42", "names no field"),
            ("", "names no field"),
            ("chat=42", "unknown selector"),
            ("body:message/id=1", "starts with '/'"),
            ("header:=1", "names nothing"),
            ("header:bad name=1", "not a valid header name"),
        ] {
            let e = parse(arg).unwrap_err();
            assert!(e.contains(says), "{arg:?}: {e}");
            assert!(e.starts_with("--filter"), "{e}");
        }
    }
}

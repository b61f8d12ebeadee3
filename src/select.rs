//! Selectors (`header:Name`, `body:/json/pointer`, `form:Param`, `query:param`) and
//! route filter conditions, evaluated against one inbound request.
//!
//! Invariants: evaluating never panics and never changes the body; the body is
//! parsed (as JSON or as a form) at most once per request, and only when a
//! selector asks for it. A selector that finds nothing yields `None`.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use http::header::{HeaderMap, HeaderName};
use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::Value;

/// Where a selector looks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// A request header, by name (case-insensitive).
    Header(HeaderName),
    /// An RFC 6901 JSON pointer into the body (`""` is the whole body).
    Body(String),
    /// A parameter of an `application/x-www-form-urlencoded` body.
    Form(String),
    /// A parameter of the request's query string.
    Query(String),
}

/// Why a selector string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectorError {
    /// The string has no known `kind:` prefix.
    #[error(
        "unknown selector {0:?}: use header:Name, body:/json/pointer, form:Param or query:param"
    )]
    UnknownKind(String),
    /// The part after the prefix is empty.
    #[error("selector {0:?} names nothing after its prefix")]
    Empty(String),
    /// `header:` with a name that is not a valid header name.
    #[error("selector {0:?}: not a valid header name")]
    BadHeader(String),
    /// `body:` with something that is not a JSON pointer.
    #[error("selector {0:?}: a body selector is a JSON pointer and starts with '/' (like body:/message/id)")]
    BadPointer(String),
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| SelectorError::UnknownKind(s.to_string()))?;
        match kind {
            "header" => {
                if rest.is_empty() {
                    return Err(SelectorError::Empty(s.into()));
                }
                HeaderName::from_bytes(rest.as_bytes())
                    .map(Selector::Header)
                    .map_err(|_| SelectorError::BadHeader(s.into()))
            }
            "body" => {
                if !rest.is_empty() && !rest.starts_with('/') {
                    return Err(SelectorError::BadPointer(s.into()));
                }
                Ok(Selector::Body(rest.to_string()))
            }
            "form" | "query" => {
                if rest.is_empty() {
                    return Err(SelectorError::Empty(s.into()));
                }
                Ok(if kind == "form" {
                    Selector::Form(rest.to_string())
                } else {
                    Selector::Query(rest.to_string())
                })
            }
            _ => Err(SelectorError::UnknownKind(s.to_string())),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Header(h) => write!(f, "header:{h}"),
            Selector::Body(p) => write!(f, "body:{p}"),
            Selector::Form(p) => write!(f, "form:{p}"),
            Selector::Query(p) => write!(f, "query:{p}"),
        }
    }
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// What a selector found.
#[derive(Debug, Clone, PartialEq)]
pub enum Found<'a> {
    /// A JSON value from the body.
    Json(&'a Value),
    /// A string from a header, the query or a form body.
    Text(Cow<'a, str>),
}

impl Found<'_> {
    /// The value as a key string (dedup key, ordering key, event type):
    /// JSON strings unquoted, other JSON values in compact form.
    pub fn to_key(&self) -> String {
        match self {
            Found::Text(t) => t.to_string(),
            Found::Json(Value::String(s)) => s.clone(),
            Found::Json(v) => v.to_string(),
        }
    }
}

/// One inbound request as selectors see it. Parses the body lazily, once.
pub struct Inbound<'a> {
    headers: &'a HeaderMap,
    query: Option<&'a str>,
    body: &'a [u8],
    json: OnceLock<Option<Value>>,
    form: OnceLock<Vec<(String, String)>>,
}

impl<'a> Inbound<'a> {
    /// Wraps the parts of a request.
    pub fn new(headers: &'a HeaderMap, query: Option<&'a str>, body: &'a [u8]) -> Self {
        Inbound {
            headers,
            query,
            body,
            json: OnceLock::new(),
            form: OnceLock::new(),
        }
    }

    /// The request headers.
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    /// The raw body bytes.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The raw query string, without `?`.
    pub fn query(&self) -> Option<&'a str> {
        self.query
    }

    /// The body parsed as JSON, or `None` when it is not JSON (or nested too deeply).
    pub fn json(&self) -> Option<&Value> {
        self.json
            .get_or_init(|| serde_json::from_slice(self.body).ok())
            .as_ref()
    }

    /// The body parsed as a urlencoded form (empty unless the content type says form or is absent).
    pub fn form(&self) -> &[(String, String)] {
        self.form.get_or_init(|| {
            let ct = self
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let is_form = ct.is_empty()
                || ct.split(';').next().is_some_and(|m| {
                    m.trim()
                        .eq_ignore_ascii_case("application/x-www-form-urlencoded")
                });
            if !is_form {
                return Vec::new();
            }
            form_urlencoded::parse(self.body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
    }

    /// Evaluates a selector. The first value wins for repeated headers and parameters.
    pub fn select(&self, sel: &Selector) -> Option<Found<'_>> {
        match sel {
            Selector::Header(name) => self
                .headers
                .get(name)
                .map(|v| Found::Text(String::from_utf8_lossy(v.as_bytes()))),
            Selector::Body(ptr) => self.json()?.pointer(ptr).map(Found::Json),
            Selector::Form(name) => self
                .form()
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| Found::Text(Cow::Borrowed(v.as_str()))),
            Selector::Query(name) => form_urlencoded::parse(self.query?.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| Found::Text(Cow::Owned(v.into_owned()))),
        }
    }

    /// Evaluates a selector and renders what it found as a key string.
    pub fn select_key(&self, sel: &Selector) -> Option<String> {
        self.select(sel).map(|f| f.to_key())
    }
}

/// One filter condition of a route, as written in the config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    /// The selector whose value is tested.
    pub field: Selector,
    /// Equal to this value.
    #[serde(default)]
    pub eq: Option<Value>,
    /// Not equal to this value (also true when the field has no value).
    #[serde(default)]
    pub ne: Option<Value>,
    /// Equal to one of these values.
    #[serde(default, rename = "in")]
    pub in_: Option<Vec<Value>>,
    /// The field has (true) or has not (false) a value.
    #[serde(default)]
    pub exists: Option<bool>,
    /// A string value starting with this text.
    #[serde(default)]
    pub prefix: Option<String>,
}

/// A checked filter condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// What is tested.
    pub field: Selector,
    /// How it is tested.
    pub test: Test,
}

/// The test a condition applies.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// `eq = v`
    Eq(Value),
    /// `ne = v`
    Ne(Value),
    /// `in = [..]`
    In(Vec<Value>),
    /// `exists = bool`
    Exists(bool),
    /// `prefix = ".."`
    Prefix(String),
}

/// Why a filter table is not a condition: it must hold exactly one test.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// No test at all.
    #[error("filter on {0} needs one test: eq, ne, in, exists or prefix")]
    NoTest(Selector),
    /// Two tests or more.
    #[error("filter on {0} has more than one test; write one condition per test")]
    ManyTests(Selector),
}

impl TryFrom<FilterSpec> for Condition {
    type Error = FilterError;

    fn try_from(f: FilterSpec) -> Result<Self, FilterError> {
        let mut tests = Vec::new();
        if let Some(v) = f.eq {
            tests.push(Test::Eq(v));
        }
        if let Some(v) = f.ne {
            tests.push(Test::Ne(v));
        }
        if let Some(v) = f.in_ {
            tests.push(Test::In(v));
        }
        if let Some(v) = f.exists {
            tests.push(Test::Exists(v));
        }
        if let Some(v) = f.prefix {
            tests.push(Test::Prefix(v));
        }
        match tests.len() {
            1 => Ok(Condition {
                field: f.field,
                test: tests.pop().expect("one test"),
            }),
            0 => Err(FilterError::NoTest(f.field)),
            _ => Err(FilterError::ManyTests(f.field)),
        }
    }
}

/// Compares a found value with an expected config value: JSON values compare as JSON
/// (`"7"` is not `7`); header, form and query values compare as strings.
fn equals(found: &Found<'_>, expected: &Value) -> bool {
    match found {
        Found::Json(v) => *v == expected,
        Found::Text(t) => match expected {
            Value::String(s) => s == t,
            Value::Number(n) => n.to_string() == *t,
            Value::Bool(b) => b.to_string() == *t,
            _ => false,
        },
    }
}

impl Condition {
    /// Whether the request satisfies this condition.
    pub fn matches(&self, req: &Inbound<'_>) -> bool {
        let found = req.select(&self.field);
        match (&self.test, found) {
            (Test::Exists(want), f) => f.is_some() == *want,
            (Test::Ne(_), None) => true,
            (_, None) => false,
            (Test::Eq(v), Some(f)) => equals(&f, v),
            (Test::Ne(v), Some(f)) => !equals(&f, v),
            (Test::In(vs), Some(f)) => vs.iter().any(|v| equals(&f, v)),
            (Test::Prefix(p), Some(Found::Text(t))) => t.starts_with(p.as_str()),
            (Test::Prefix(p), Some(Found::Json(Value::String(s)))) => s.starts_with(p.as_str()),
            (Test::Prefix(_), Some(Found::Json(_))) => false,
        }
    }
}

/// Whether a header's (or query parameter's) value is a secret or a signature
/// and must be masked.
pub fn is_secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    const EXACT: &[&str] = &[
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "apikey",
    ];
    const PARTS: &[&str] = &[
        "signature",
        "secret",
        "token",
        "hmac",
        "password",
        "api-key",
        "apikey",
        "auth",
        "credential",
        "api_key",
    ];
    EXACT.contains(&n.as_str()) || PARTS.iter().any(|p| n.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;
    use serde_json::json;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn cond(field: &str, test: Test) -> Condition {
        Condition {
            field: field.parse().unwrap(),
            test,
        }
    }

    #[test]
    fn parses_selectors() {
        assert_eq!(
            "header:X-GitHub-Event".parse::<Selector>().unwrap(),
            Selector::Header(HeaderName::from_static("x-github-event"))
        );
        assert_eq!(
            "body:/message/chat/id".parse::<Selector>().unwrap(),
            Selector::Body("/message/chat/id".into())
        );
        assert_eq!(
            "form:MessageSid".parse::<Selector>().unwrap(),
            Selector::Form("MessageSid".into())
        );
        assert_eq!(
            "query:hub.mode".parse::<Selector>().unwrap(),
            Selector::Query("hub.mode".into())
        );
        assert_eq!(
            "body:".parse::<Selector>().unwrap(),
            Selector::Body("".into())
        );
    }

    #[test]
    fn rejects_bad_selectors() {
        for bad in [
            "",
            "header",
            "header:",
            "header:bad name",
            "body:message",
            "cookie:x",
            "form:",
            "query:",
            ":x",
            "HEADER:x",
        ] {
            assert!(bad.parse::<Selector>().is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn selects_from_each_place() {
        let h = headers(&[
            ("x-github-event", "push"),
            ("content-type", "application/json"),
        ]);
        let body = br#"{"message":{"chat":{"id":42},"text":"hi"},"n":"7"}"#;
        let req = Inbound::new(&h, Some("a=1&b=two%20words"), body);
        assert_eq!(
            req.select_key(&"header:X-GitHub-Event".parse().unwrap()),
            Some("push".into())
        );
        assert_eq!(
            req.select_key(&"body:/message/chat/id".parse().unwrap()),
            Some("42".into())
        );
        assert_eq!(
            req.select_key(&"body:/message/text".parse().unwrap()),
            Some("hi".into())
        );
        assert_eq!(
            req.select_key(&"query:b".parse().unwrap()),
            Some("two words".into())
        );
        assert_eq!(req.select_key(&"body:/missing".parse().unwrap()), None);
        assert_eq!(req.select_key(&"header:x-none".parse().unwrap()), None);
        // A JSON body is not a form.
        assert_eq!(req.select_key(&"form:a".parse().unwrap()), None);
    }

    #[test]
    fn selects_form_params() {
        let h = headers(&[("content-type", "application/x-www-form-urlencoded")]);
        let body = b"MessageSid=SM123&Body=Hello+world%21&Body=second";
        let req = Inbound::new(&h, None, body);
        assert_eq!(
            req.select_key(&"form:MessageSid".parse().unwrap()),
            Some("SM123".into())
        );
        assert_eq!(
            req.select_key(&"form:Body".parse().unwrap()),
            Some("Hello world!".into())
        );
        assert_eq!(req.select_key(&"body:/x".parse().unwrap()), None);
    }

    #[test]
    fn filters_compare_json_types() {
        let h = headers(&[("x-kind", "7")]);
        let body = br#"{"n":7,"s":"7","text":"/start now","flag":true}"#;
        let req = Inbound::new(&h, None, body);
        assert!(cond("body:/n", Test::Eq(json!(7))).matches(&req));
        assert!(!cond("body:/n", Test::Eq(json!("7"))).matches(&req));
        assert!(cond("body:/s", Test::Eq(json!("7"))).matches(&req));
        assert!(cond("header:x-kind", Test::Eq(json!("7"))).matches(&req));
        assert!(cond("header:x-kind", Test::Eq(json!(7))).matches(&req));
        assert!(cond("body:/n", Test::Ne(json!(8))).matches(&req));
        assert!(cond("body:/n", Test::In(vec![json!(1), json!(7)])).matches(&req));
        assert!(cond("body:/text", Test::Prefix("/start".into())).matches(&req));
        assert!(!cond("body:/n", Test::Prefix("7".into())).matches(&req));
        assert!(cond("body:/flag", Test::Eq(json!(true))).matches(&req));
    }

    #[test]
    fn missing_fields_satisfy_only_exists_false_and_ne() {
        let h = HeaderMap::new();
        let req = Inbound::new(&h, None, b"not json at all");
        let f = "body:/x";
        assert!(cond(f, Test::Exists(false)).matches(&req));
        assert!(cond(f, Test::Ne(json!(1))).matches(&req));
        assert!(!cond(f, Test::Exists(true)).matches(&req));
        assert!(!cond(f, Test::Eq(json!(1))).matches(&req));
        assert!(!cond(f, Test::In(vec![json!(1)])).matches(&req));
        assert!(!cond(f, Test::Prefix(String::new())).matches(&req));
    }

    #[test]
    fn deeply_nested_body_is_not_json_but_does_not_panic() {
        let h = HeaderMap::new();
        let body = "[".repeat(100_000);
        let req = Inbound::new(&h, None, body.as_bytes());
        assert_eq!(req.select(&"body:/0".parse().unwrap()), None);
    }

    #[test]
    fn filter_spec_needs_exactly_one_test() {
        let none: FilterSpec = toml::from_str(r#"field = "body:/x""#).unwrap();
        assert!(Condition::try_from(none).is_err());
        let two: FilterSpec = toml::from_str("field = \"body:/x\"\neq = 1\nne = 2").unwrap();
        assert!(Condition::try_from(two).is_err());
        let one: FilterSpec = toml::from_str("field = \"body:/x\"\nexists = true").unwrap();
        assert_eq!(Condition::try_from(one).unwrap().test, Test::Exists(true));
        assert!(toml::from_str::<FilterSpec>("field = \"body:/x\"\nequals = 1").is_err());
    }

    proptest! {
        #[test]
        fn selector_parser_never_panics(s in "\\PC{0,64}") {
            if let Ok(sel) = s.parse::<Selector>() {
                // What parses prints back to something that parses to the same selector.
                let again: Selector = sel.to_string().parse().unwrap();
                prop_assert_eq!(again, sel);
            }
        }

        #[test]
        fn selecting_never_panics(
            body in proptest::collection::vec(any::<u8>(), 0..256),
            ptr in "(/[a-z0-9~]{0,4}){0,4}",
            query in "\\PC{0,32}",
        ) {
            let h = HeaderMap::new();
            let req = Inbound::new(&h, Some(&query), &body);
            let _ = req.select(&Selector::Body(ptr));
            let _ = req.select(&Selector::Form("a".into()));
            let _ = req.select(&Selector::Query("a".into()));
        }

        #[test]
        fn eq_and_ne_are_opposites_when_present(n in any::<i64>(), m in any::<i64>()) {
            let h = HeaderMap::new();
            let body = format!("{{\"v\":{n}}}");
            let req = Inbound::new(&h, None, body.as_bytes());
            let eq = cond("body:/v", Test::Eq(json!(m))).matches(&req);
            let ne = cond("body:/v", Test::Ne(json!(m))).matches(&req);
            prop_assert_eq!(eq, n == m);
            prop_assert_ne!(eq, ne);
        }
    }
}

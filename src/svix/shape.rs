//! What every area of the Svix API shares: the body and query extractors
//! (their refusals in Svix's 422 shape, never a plain-text axum answer), the
//! listing shape `{data, iterator, prevIterator, done}`, and the checks of
//! ids, uids and names.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde::Deserialize as _;
use serde::Serialize;

use super::SvixError;

/// A JSON body; a malformed one or one of the wrong shape is 422 with the
/// field at fault, a body over `server.max_body` 413.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = SvixError;

    async fn from_request(req: Request, state: &S) -> Result<Self, SvixError> {
        let bytes = body_bytes(req, state).await?;
        parse(&bytes).map(Body)
    }
}

/// A JSON body that may be left out (empty is the default value).
pub struct MaybeBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for MaybeBody<T> {
    type Rejection = SvixError;

    async fn from_request(req: Request, state: &S) -> Result<Self, SvixError> {
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(MaybeBody(T::default()));
        }
        parse(&bytes).map(MaybeBody)
    }
}

async fn body_bytes<S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<axum::body::Bytes, SvixError> {
    axum::body::Bytes::from_request(req, state)
        .await
        .map_err(|e| {
            SvixError::http(
                e.status(),
                "body_unreadable",
                "the request body could not be read (larger than server.max_body?)",
            )
        })
}

/// Parses a JSON body; a problem is 422 at its field.
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, SvixError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        SvixError::invalid(&path, e.into_inner().to_string())
    })?;
    de.end()
        .map_err(|e| SvixError::invalid("", e.to_string()))?;
    Ok(v)
}

/// Query parameters; ones that do not parse are 422.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = SvixError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, SvixError> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(q)
            .map(Query)
            .map_err(|e| SvixError::invalid_query(e.to_string()))
    }
}

/// One page of a listing, as Svix answers it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListResponse<T> {
    /// The items.
    pub data: Vec<T>,
    /// Pass as `iterator` for the next page (always present, `null` at the end).
    pub iterator: Option<String>,
    /// Pass as `iterator` for the page before.
    pub prev_iterator: Option<String>,
    /// Whether this is the last page.
    pub done: bool,
}

/// The paging parameters every listing takes.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Paging {
    /// Page size (default 50, at most 250).
    #[serde(default, deserialize_with = "number")]
    pub limit: Option<u64>,
    /// `ascending` or `descending` (accepted; listings are in id order).
    #[serde(default)]
    pub order: Option<String>,
    /// From a previous page's `iterator` (or `prevIterator`).
    #[serde(default)]
    pub iterator: Option<String>,
}

impl Paging {
    /// The page size in effect: 1 to 250, 50 unless given.
    pub fn limit(&self) -> usize {
        self.limit.map_or(50, |l| l.clamp(1, 250) as usize)
    }
}

/// Longest uid, event type, channel and event id.
const MAX_KEY: usize = 256;

/// Whether a uid, event type or channel is made of Svix's characters
/// (`[a-zA-Z0-9-_.]`, 1 to 256).
pub fn valid_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_KEY
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Checks an optional uid field.
pub fn check_uid(field: &str, uid: Option<&str>) -> Result<(), SvixError> {
    match uid {
        Some(u) if !valid_key(u) => Err(SvixError::invalid(
            field,
            "must be 1 to 256 characters of a-z, A-Z, 0-9, '-', '_' and '.'",
        )),
        _ => Ok(()),
    }
}

/// Checks a list of event types or channels (each a key, at most `max`).
pub fn check_keys(field: &str, keys: Option<&[String]>, max: usize) -> Result<(), SvixError> {
    let Some(keys) = keys else { return Ok(()) };
    if keys.is_empty() || keys.len() > max {
        return Err(SvixError::invalid(
            field,
            format!("must hold 1 to {max} items"),
        ));
    }
    if let Some(bad) = keys.iter().find(|k| !valid_key(k)) {
        let shown: String = bad.chars().take(40).collect();
        return Err(SvixError::invalid(
            field,
            format!("{shown:?} is not 1 to 256 characters of a-z, A-Z, 0-9, '-', '_' and '.'"),
        ));
    }
    Ok(())
}

/// Checks metadata: string values, at most 64 keys of 256 bytes.
pub fn check_metadata(m: &std::collections::BTreeMap<String, String>) -> Result<(), SvixError> {
    if m.len() > 64 || m.iter().any(|(k, v)| k.len() > 256 || v.len() > 4096) {
        return Err(SvixError::invalid(
            "metadata",
            "at most 64 keys of 256 bytes, values of 4 KiB",
        ));
    }
    Ok(())
}

/// Parses an optional RFC 3339 query time.
pub fn query_time(name: &str, v: Option<&str>) -> Result<Option<crate::clock::Millis>, SvixError> {
    v.map(|t| {
        crate::clock::parse_rfc3339(t)
            .ok_or_else(|| SvixError::invalid_query(format!("{name} must be an RFC 3339 time")))
    })
    .transpose()
}

/// A field of a patch where `null` (clear it) differs from absent (keep it).
pub mod double_option {
    use serde::{Deserialize, Deserializer};

    /// `Some(None)` for `null`, `Some(Some(v))` for a value (absent is the
    /// field's `default`, `None`).
    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// A number given as a number or as text (query values are text, and a
/// flattened struct sees them as such).
pub fn number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum N {
        Num(u64),
        Text(String),
    }
    match Option::<N>::deserialize(d)? {
        None => Ok(None),
        Some(N::Num(n)) => Ok(Some(n)),
        Some(N::Text(t)) => t
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("{t:?} is not a whole number"))),
    }
}

/// A boolean given as one or as text.
pub fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum B {
        Bool(bool),
        Text(String),
    }
    match Option::<B>::deserialize(d)? {
        None => Ok(None),
        Some(B::Bool(b)) => Ok(Some(b)),
        Some(B::Text(t)) => t
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("{t:?} is not true or false"))),
    }
}

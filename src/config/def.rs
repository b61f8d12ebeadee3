//! The definitions of destinations and routes as users write them: the same
//! serde structs read the `[[destinations]]` and `[[routes]]` tables of the
//! config file and the JSON bodies of the admin API. Unset fields stay `None`;
//! their defaults are applied in one place, [`super::defaults`], when compiled.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_spanned::Spanned;

use super::{
    BreakerConfig, Dur, FieldSpans, ForwardHeaders, OneOrMany, Priority, RateLimitConfig,
    RetryConfig, Secret, Size, API_SOURCE,
};
use crate::clock::Millis;
use crate::select::{FilterSpec, Selector};

/// Where a destination was defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// In the config file: trusted, read-only through the API.
    Config,
    /// Through the API: SSRF-guarded, changeable.
    Api,
    /// The destination of an alert channel made through the API
    /// (`/api/v1/alert-channels`): SSRF-guarded like `api`, never routed, and
    /// changed only with its channel.
    Channel,
}

impl Origin {
    /// Whether attempts go through the SSRF guard (made through the API).
    pub fn guarded(self) -> bool {
        matches!(self, Origin::Api | Origin::Channel)
    }
}

/// How a destination's deliveries reach it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DestinationType {
    /// hookgate sends each delivery to the destination's `url` (the default).
    #[default]
    Push,
    /// A consumer leases the deliveries over the admin API
    /// (`POST /api/v1/destinations/{name}/pull`) and reports each result.
    Pull,
}

impl DestinationType {
    /// `push` or `pull`.
    pub fn as_str(self) -> &'static str {
        match self {
            DestinationType::Push => "push",
            DestinationType::Pull => "pull",
        }
    }
}

/// A destination: an HTTP endpoint of the user's, or a queue a consumer pulls
/// from. `[[destinations]]` in the file, the body of `POST /api/v1/destinations`
/// in the API.
#[derive(Debug, Clone, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationDef {
    /// Name used by routes, the API and metrics.
    pub name: String,
    /// `push` (default) or `pull`.
    #[serde(default, rename = "type")]
    pub kind: DestinationType,
    /// `http://` or `https://` URL (push destinations only).
    #[serde(default)]
    pub url: Option<String>,
    /// API destinations: the event types routed here (globs; default all).
    /// File destinations are reached through `[[routes]]`.
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    /// API destinations: the source whose messages are routed here (default
    /// `api`, the events published through the API).
    #[serde(default)]
    pub source: Option<String>,
    /// API destinations: conditions a message must meet to be routed here (as a
    /// route's `filter`).
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub filter: Vec<FilterSpec>,
    /// Per-attempt timeout.
    #[serde(default)]
    pub timeout: Option<Dur>,
    /// Concurrent requests at most.
    #[serde(default)]
    pub max_in_flight: Option<u32>,
    /// Requests per second at most.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// Retry schedule.
    #[serde(default)]
    pub retry: Option<RetryConfig>,
    /// Disable the destination when every attempt has failed for this long.
    #[serde(default)]
    pub disable_after: Option<Dur>,
    /// Stop attempts after consecutive failures.
    #[serde(default)]
    pub circuit_breaker: Option<BreakerConfig>,
    /// Sign requests with Standard Webhooks. Through the API it is given at
    /// creation only and then kept in `signing_secrets`.
    #[serde(default)]
    pub signing_secret: Option<Secret>,
    /// Extra headers on every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Which of the original request's headers are passed on.
    #[serde(default)]
    pub forward_headers: Option<ForwardHeaders>,
    /// The transformation (`[[transforms]]` name) every delivery here runs
    /// through before it is sent, unless its route names one.
    #[serde(default)]
    pub transform: Option<String>,
    /// API destinations: the signing keys, kept by the gateway (never set by users).
    #[serde(default)]
    #[schema(ignore)]
    pub signing_secrets: Vec<StoredKey>,
    /// Where each field is in the file, for errors.
    #[serde(skip)]
    pub spans: FieldSpans,
}

/// A signing key as stored: the secret and, during a rotation's grace, its end.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredKey {
    /// `whsec_...`
    pub secret: String,
    /// Signs until then (ms), if set.
    pub until: Option<Millis>,
}

/// A route: from a source to destinations. `[[routes]]` in the file; an API
/// destination has one implied by its `event_types` ([`RouteDef::for_api_destination`]).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteDef {
    /// A source name, or `api` for events published through the API.
    pub source: Spanned<String>,
    /// Glob patterns of event types (default `["*"]`).
    #[serde(default = "super::defaults::event_types")]
    pub event_types: Vec<String>,
    /// Destination name(s).
    pub to: Spanned<OneOrMany>,
    /// Conditions that must all hold.
    #[serde(default)]
    pub filter: Vec<Spanned<FilterSpec>>,
    /// Same key, same destination: strict order.
    #[serde(default)]
    pub ordering_key: Option<Selector>,
    /// high, normal (default) or low.
    #[serde(default)]
    pub priority: Priority,
    /// Hold each delivery this long first.
    #[serde(default)]
    pub delay: Dur,
    /// The transformation (`[[transforms]]` name) this route's deliveries run
    /// through before they are sent.
    #[serde(default)]
    pub transform: Option<String>,
    /// Where each field is in the file, for errors.
    #[serde(skip)]
    pub spans: FieldSpans,
}

/// A transformation: JavaScript defining `function transform(request, context)`.
/// `[[transforms]]` in the file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TransformDef {
    /// Name used by routes and destinations (`transform = "name"`).
    pub name: String,
    /// A file with the script, relative to the config file's folder.
    #[serde(default)]
    pub file: Option<std::path::PathBuf>,
    /// The script itself.
    #[serde(default)]
    pub code: Option<String>,
    /// How long one run may take (default 50ms).
    #[serde(default)]
    pub timeout: Option<Dur>,
    /// Memory the script may use (default 16MiB).
    #[serde(default)]
    pub memory_limit: Option<Size>,
    /// The script read from `file` when the config was loaded.
    #[serde(skip)]
    pub loaded: Option<String>,
    /// Where each field is in the file, for errors.
    #[serde(skip)]
    pub spans: FieldSpans,
}

impl TransformDef {
    /// The script's text: `code`, or what was read from `file`.
    pub fn text(&self) -> Option<&str> {
        self.code.as_deref().or(self.loaded.as_deref())
    }

    /// The limits of a run, defaults filled in.
    pub fn limits(&self) -> crate::transform::Limits {
        crate::transform::Limits {
            memory: self
                .memory_limit
                .map_or(crate::transform::DEFAULT_MEMORY, |s| s.0 as usize),
            time: self
                .timeout
                .map_or(crate::transform::DEFAULT_TIMEOUT, |d| d.0),
        }
    }

    /// The script to run.
    pub fn script(&self) -> crate::transform::Script {
        crate::transform::Script::new(&self.name, self.text().unwrap_or_default(), self.limits())
    }
}

impl RouteDef {
    /// The route of an API destination: `api` events of these types, to it.
    pub fn for_api_destination(name: &str, event_types: &[String]) -> Self {
        Self::for_api_destination_from(name, API_SOURCE, event_types, &[])
    }

    /// The route of an API destination: messages of `source` of these types
    /// that meet `filter`, to it.
    pub fn for_api_destination_from(
        name: &str,
        source: &str,
        event_types: &[String],
        filter: &[FilterSpec],
    ) -> Self {
        RouteDef {
            source: Spanned::new(0..0, source.to_string()),
            event_types: event_types.to_vec(),
            to: Spanned::new(0..0, OneOrMany::One(name.to_string())),
            filter: filter
                .iter()
                .map(|f| Spanned::new(0..0, f.clone()))
                .collect(),
            ordering_key: None,
            priority: Priority::Normal,
            delay: Dur::default(),
            transform: None,
            spans: FieldSpans::default(),
        }
    }
}

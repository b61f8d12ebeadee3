//! The configuration: serde types for every section of the TOML file (docs/configuration.md),
//! parsed with positions, checked as a whole, then handed to `app::build`.
//!
//! Parse, validate, build: `load`/`parse` turn text into a [`Config`] and report
//! *every* problem at once with `FILE:line:col`; nothing here opens a socket or a file
//! other than the config itself and, from [`load`] only, the TLS certificate and
//! key files it names (so that `check` finds a bad certificate).

pub mod alerts;
pub mod check;
pub mod def;
pub mod defaults;
mod error;
mod lenient;
mod live;
mod load;
mod report;
mod units;
mod validate;

use std::net::SocketAddr;

use ipnet::IpNet;
use serde::Deserialize;
use serde_spanned::Spanned;

pub use error::{ConfigError, ConfigErrors, EnvError, RetryError, UrlError};
pub use live::Live;
pub use load::{load, parse};
pub(crate) use report::reword;
pub use report::FieldSpans;
pub use units::{Dur, Parsed, Secret, Size};
pub use validate::{is_tenant_source, verify_problems, warnings, API_SOURCE, TENANT_SOURCE_PREFIX};

pub use check::{check_url, valid_name};
pub use def::{DestinationDef, RouteDef, TransformDef};

use crate::select::Selector;

/// The whole configuration file.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `[server]`: listeners, admin tokens, request limits.
    pub server: ServerConfig,
    /// `[storage]`: which store and how long to keep messages.
    pub storage: StorageConfig,
    /// `[[sources]]`: where webhooks come in.
    pub sources: Vec<SourceConfig>,
    /// `[[destinations]]`: where they go.
    pub destinations: Vec<DestinationDef>,
    /// `[[routes]]`: which source's messages go to which destination.
    pub routes: Vec<RouteDef>,
    /// `[[transforms]]`: scripts that reshape, enrich or drop messages.
    pub transforms: Vec<TransformDef>,
    /// `[telemetry]`: traces exported over OTLP.
    pub telemetry: TelemetryConfig,
    /// `[[alerts]]`: the alert channels (each also delivered through a
    /// destination of `destinations`, named `alerts.<name>`).
    pub alerts: Vec<alerts::AlertChannel>,
    /// Where the `server.*`, `storage.*` and `telemetry.*` fields are in the file.
    pub spans: FieldSpans,
    /// The file it was read from ([`load`]; `None` for text given to
    /// [`parse`]): a reload reads it again.
    pub file: Option<std::path::PathBuf>,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Public ingest listener.
    pub listen: Parsed<SocketAddr>,
    /// Admin listener: API, metrics and health.
    pub admin_listen: Parsed<SocketAddr>,
    /// Bearer tokens accepted by `/api/*`. With none, the API refuses every call.
    pub admin_tokens: Vec<Secret>,
    /// Tokens that log in to the web console read-only: they may look at
    /// everything and change nothing (403 on every state-changing action).
    pub admin_read_tokens: Vec<Secret>,
    /// Let run-time destinations point at private, loopback and other non-public addresses.
    pub allow_private_destinations: bool,
    /// Proxies whose `X-Forwarded-For` is believed when checking `allow_ips`.
    pub trusted_proxies: Vec<Parsed<IpNet>>,
    /// Largest accepted request body.
    pub max_body: Size,
    /// The whole request (headers and body) must arrive within this.
    pub read_timeout: Dur,
    /// How long a shutdown waits for in-flight deliveries.
    pub shutdown_grace: Dur,
    /// Connections the admin listener holds open at once; more are closed as
    /// soon as they are accepted (the API is for operators, not for crowds).
    pub admin_max_connections: usize,
    /// Serve ingest over TLS with this certificate and key (PEM files).
    pub tls: Option<TlsConfig>,
    /// Serve the admin listener over TLS (HTTP/2 by ALPN) with this
    /// certificate and key (PEM files).
    pub admin_tls: Option<TlsConfig>,
    /// The web console's address as people reach it, for the links in alerts
    /// (default: `http://` and the admin listener's address).
    pub console_url: Option<String>,
}

/// `tls = { cert = "…", key = "…" }`: a listener's certificate and key, PEM
/// files read at start, on each reload and when they change. Relative paths
/// are relative to the working directory, as `storage.path` is.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, the listener's own certificate first.
    pub cert: std::path::PathBuf,
    /// The certificate's private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: std::path::PathBuf,
}

impl TlsConfig {
    /// The files, as the listener's TLS loads them.
    pub fn files(&self) -> crate::tls::CertFiles {
        crate::tls::CertFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: Parsed(SocketAddr::from(([127, 0, 0, 1], 8080))),
            admin_listen: Parsed(SocketAddr::from(([127, 0, 0, 1], 8081))),
            admin_tokens: Vec::new(),
            admin_read_tokens: Vec::new(),
            allow_private_destinations: false,
            trusted_proxies: Vec::new(),
            max_body: Size(1 << 20),
            read_timeout: Dur::secs(10),
            shutdown_grace: Dur::secs(30),
            admin_max_connections: 256,
            tls: None,
            admin_tls: None,
            console_url: None,
        }
    }
}

/// `[telemetry]`: OpenTelemetry traces, exported over OTLP (HTTP/protobuf)
/// while `otlp_endpoint` is set and off otherwise.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP receiver: a base URL (`http://127.0.0.1:4318`, spans go
    /// to its `/v1/traces`) or the full URL ending in `/v1/traces`.
    pub otlp_endpoint: Option<String>,
    /// The share of new traces kept, 0.0 to 1.0; a trace continued from an
    /// incoming `traceparent` follows its sampled flag instead.
    pub sample_ratio: f64,
    /// `service.name` of the spans.
    pub service_name: String,
    /// Applications (ids) of the Svix API whose endpoints get their own
    /// metric series, labelled by endpoint id, instead of sharing
    /// `destination="tenant.*"`.
    pub per_tenant_metrics: Vec<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            sample_ratio: 1.0,
            service_name: "hookgate".into(),
            per_tenant_metrics: Vec::new(),
        }
    }
}

impl TelemetryConfig {
    /// Where spans are posted: `otlp_endpoint` itself when it ends in
    /// `/v1/traces`, else that path under it. `None` when tracing is off.
    pub fn traces_url(&self) -> Option<String> {
        let base = self.otlp_endpoint.as_deref()?.trim();
        if base.trim_end_matches('/').ends_with("/v1/traces") {
            return Some(base.trim_end_matches('/').to_string());
        }
        Some(format!("{}/v1/traces", base.trim_end_matches('/')))
    }
}

/// Which store keeps messages and deliveries.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The embedded SQLite store (default).
    #[default]
    Sqlite,
    /// PostgreSQL, shared by several nodes.
    Postgres,
}

/// `[storage]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `sqlite` (default) or `postgres`.
    pub backend: Backend,
    /// Database file of the embedded store.
    pub path: String,
    /// Connection URL of the PostgreSQL store.
    pub url: Option<Secret>,
    /// Finished messages older than this are removed.
    pub retention: Dur,
    /// More undelivered deliveries than this and ingest answers 503.
    pub max_pending: u64,
    /// Largest number of PostgreSQL connections per node.
    pub pool_size: u32,
    /// Embedded store: the database's size bound; at 95% of it ingest answers 503.
    pub max_size: Option<Size>,
    /// PostgreSQL: the longest wait for a connection (including connecting). Short,
    /// so that an unreachable database costs a request this long, not minutes.
    pub connect_timeout: Dur,
    /// PostgreSQL: the longest one store operation (a batch commit, a lease) may
    /// take before the database is taken as unreachable; bounds a silent network.
    pub query_timeout: Dur,
    /// PostgreSQL: a store call (a batch commit, a lease, a count) that takes
    /// longer than this is logged (`slow store call`, at most one line a
    /// second); `"0s"` turns the log off.
    pub slow_query: Dur,
    /// Ingest requests waiting for the store at once; more are answered 503 at
    /// once, so a slow or unreachable store cannot pile up requests and memory.
    pub max_waiting: u32,
    /// Bytes of body that ingest requests waiting for the store may hold at
    /// once; more are answered 503 at once.
    pub max_waiting_bytes: Size,
    /// How much longer than the destination `timeout` a lease lasts: a node
    /// that dies holding leases delays that work by `timeout` plus this.
    pub lease_margin: Dur,
    /// Embedded store: open a database that holds another program's tables
    /// (`serve --adopt`); set from the command line, never from the file.
    #[serde(skip)]
    pub adopt: bool,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: Backend::Sqlite,
            path: "./hookgate-data/hookgate.db".into(),
            url: None,
            retention: Dur::secs(7 * 86_400),
            max_pending: 10_000_000,
            pool_size: 16,
            max_size: None,
            connect_timeout: Dur::secs(2),
            query_timeout: Dur::secs(5),
            slow_query: Dur::secs(1),
            max_waiting: 1024,
            max_waiting_bytes: Size(32 << 20),
            lease_margin: Dur::secs(30),
            adopt: false,
        }
    }
}

/// `[[sources]]`: one ingest endpoint, `/in/{name}`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The name in the ingest URL.
    pub name: Spanned<String>,
    /// How requests are authenticated.
    #[serde(default)]
    pub verify: Option<Spanned<VerifyConfig>>,
    /// Selector of the event type (overrides the provider's preset).
    #[serde(default)]
    pub event_type: Option<Selector>,
    /// Deduplication (overrides the provider's preset key).
    #[serde(default)]
    pub dedup: Option<DedupConfig>,
    /// Requests per second accepted from this source.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// Only these client networks may send (403 otherwise).
    #[serde(default)]
    pub allow_ips: Vec<Parsed<IpNet>>,
    /// The answer to an accepted request (overrides the provider's preset).
    #[serde(default)]
    pub response: Option<ResponseConfig>,
    /// Where each field is in the file, for errors.
    #[serde(skip)]
    pub spans: FieldSpans,
}

/// `verify = { type = "...", ... }`: how a source authenticates requests.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// The verifier: telegram, twilio, stripe, github, slack, shopify, meta,
    /// standard-webhooks (svix), hmac, basic, bearer, header.
    #[serde(rename = "type")]
    pub kind: VerifyKind,
    /// The key (token, signing secret, app secret).
    #[serde(default)]
    pub secret: Option<Secret>,
    /// Several keys during a rotation; any one may match.
    #[serde(default)]
    pub secrets: Vec<Secret>,
    /// Twilio: the public URL of this source as Twilio calls it.
    #[serde(default)]
    pub url: Option<String>,
    /// Timestamped schemes: how far a timestamp may be from now (default 5m).
    #[serde(default)]
    pub tolerance: Option<Dur>,
    /// hmac and header: the header that carries the signature or value.
    #[serde(default)]
    pub header: Option<String>,
    /// hmac: sha1, sha256 (default) or sha512.
    #[serde(default)]
    pub algorithm: Option<HmacAlgorithm>,
    /// hmac: hex (default) or base64.
    #[serde(default)]
    pub encoding: Option<SigEncoding>,
    /// hmac: a prefix before the signature, such as `sha256=`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// meta: the token of the GET subscription handshake.
    #[serde(default)]
    pub verify_token: Option<Secret>,
}

impl VerifyConfig {
    /// Every configured key: `secret` first, then `secrets`.
    pub fn keys(&self) -> Vec<Secret> {
        self.secret
            .iter()
            .chain(self.secrets.iter())
            .cloned()
            .collect()
    }
}

/// The verifier types (docs/providers.md).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum VerifyKind {
    /// `X-Telegram-Bot-Api-Secret-Token`
    Telegram,
    /// `X-Twilio-Signature`
    Twilio,
    /// `Stripe-Signature`
    Stripe,
    /// `X-Hub-Signature-256`
    Github,
    /// `X-Slack-Signature`
    Slack,
    /// `X-Shopify-Hmac-Sha256`
    Shopify,
    /// Meta (WhatsApp, Messenger, Instagram) `X-Hub-Signature-256` and the GET handshake.
    Meta,
    /// Standard Webhooks (`webhook-signature`).
    #[serde(alias = "svix")]
    StandardWebhooks,
    /// Generic HMAC of the body.
    Hmac,
    /// HTTP basic auth; `secret = "user:password"`.
    Basic,
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// A named header equal to the secret.
    Header,
}

impl VerifyKind {
    /// Every type, in the order of docs/providers.md.
    pub const ALL: [VerifyKind; 12] = [
        VerifyKind::Telegram,
        VerifyKind::Twilio,
        VerifyKind::Stripe,
        VerifyKind::Github,
        VerifyKind::Slack,
        VerifyKind::Shopify,
        VerifyKind::Meta,
        VerifyKind::StandardWebhooks,
        VerifyKind::Hmac,
        VerifyKind::Basic,
        VerifyKind::Bearer,
        VerifyKind::Header,
    ];

    /// The name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyKind::Telegram => "telegram",
            VerifyKind::Twilio => "twilio",
            VerifyKind::Stripe => "stripe",
            VerifyKind::Github => "github",
            VerifyKind::Slack => "slack",
            VerifyKind::Shopify => "shopify",
            VerifyKind::Meta => "meta",
            VerifyKind::StandardWebhooks => "standard-webhooks",
            VerifyKind::Hmac => "hmac",
            VerifyKind::Basic => "basic",
            VerifyKind::Bearer => "bearer",
            VerifyKind::Header => "header",
        }
    }
}

/// HMAC digest of the generic `hmac` verifier.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    /// HMAC-SHA1
    Sha1,
    /// HMAC-SHA256
    #[default]
    Sha256,
    /// HMAC-SHA512
    Sha512,
}

/// How a signature is written.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SigEncoding {
    /// Lower- or upper-case hexadecimal.
    #[default]
    Hex,
    /// Standard base64.
    Base64,
}

/// `dedup = { key, window }`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DedupConfig {
    /// Selector of the dedup key; the provider's preset when absent.
    #[serde(default)]
    pub key: Option<Selector>,
    /// How long a key is remembered (default: `storage.retention`).
    #[serde(default)]
    pub window: Option<Dur>,
}

/// `rate_limit = { per_second, burst }`
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained rate.
    pub per_second: f64,
    /// Largest burst (default: one second's worth, at least 1).
    #[serde(default)]
    pub burst: Option<u32>,
}

impl RateLimitConfig {
    /// The burst size in effect.
    pub fn burst(&self) -> u32 {
        self.burst
            .unwrap_or_else(|| defaults::rate_limit_burst(self.per_second))
            .max(1)
    }
}

/// `response = { status, content_type, body }`
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResponseConfig {
    /// HTTP status (2xx).
    #[serde(default)]
    pub status: Option<u16>,
    /// Content-Type of the body.
    #[serde(default)]
    pub content_type: Option<String>,
    /// The body text.
    #[serde(default)]
    pub body: Option<String>,
}

/// `retry = { schedule = [...] }` or `retry = { max_attempts, initial, max }`.
#[derive(Debug, Clone, Deserialize, Default, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Delay before each attempt: the first entry before attempt 1, and so on.
    #[serde(default)]
    pub schedule: Option<Vec<Dur>>,
    /// Exponential form: attempts in all.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Exponential form: the first retry's delay bound.
    #[serde(default)]
    pub initial: Option<Dur>,
    /// Exponential form: the largest delay.
    #[serde(default)]
    pub max: Option<Dur>,
    /// Retry 4xx answers too (410 always stops).
    #[serde(default)]
    pub on_4xx: bool,
}

/// `circuit_breaker = { failures, cooldown }`
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failures that open the circuit.
    pub failures: u32,
    /// How long it stays open before one probe.
    pub cooldown: Dur,
}

/// `forward_headers = "all" | "none" | [names]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardHeaders {
    /// Every original header but hop-by-hop ones, `Host` and `Content-Length`.
    All,
    /// None of them.
    None,
    /// Only these (lower-case names).
    Only(Vec<String>),
}

impl Default for ForwardHeaders {
    fn default() -> Self {
        defaults::FORWARD_HEADERS
    }
}

impl utoipa::PartialSchema for ForwardHeaders {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .description(Some(
                "`all` (every original header but hop-by-hop ones, `Host` and `Content-Length`), `none`, or a list of header names",
            ))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["all", "none"])),
            )
            .item(ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::String)))
            .into()
    }
}

impl utoipa::ToSchema for ForwardHeaders {}

impl<'de> Deserialize<'de> for ForwardHeaders {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            List(Vec<String>),
        }
        match Raw::deserialize(d)? {
            Raw::Word(w) if w == "all" => Ok(ForwardHeaders::All),
            Raw::Word(w) if w == "none" => Ok(ForwardHeaders::None),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "forward_headers is \"all\", \"none\" or a list of header names, not {w:?}"
            ))),
            Raw::List(l) => Ok(ForwardHeaders::Only(
                l.into_iter().map(|h| h.to_ascii_lowercase()).collect(),
            )),
        }
    }
}

/// Route priority.
#[derive(
    Debug, Clone, Copy, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash, Default, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Goes before everything else that is due.
    High,
    /// The default.
    #[default]
    Normal,
    /// Goes after everything else that is due.
    Low,
}

impl Priority {
    /// Sort rank: smaller goes first.
    pub fn rank(self) -> i64 {
        match self {
            Priority::High => 0,
            Priority::Normal => 1,
            Priority::Low => 2,
        }
    }
    /// Inverse of [`Priority::as_str`].
    pub fn from_name(s: &str) -> Option<Self> {
        [Priority::High, Priority::Normal, Priority::Low]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
    /// Inverse of [`Priority::rank`].
    pub fn from_rank(r: i64) -> Option<Self> {
        match r {
            0 => Some(Priority::High),
            1 => Some(Priority::Normal),
            2 => Some(Priority::Low),
            _ => None,
        }
    }
    /// The name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

/// One name or a list of names.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum OneOrMany {
    /// `to = "bot"`
    One(String),
    /// `to = ["bot", "archive"]`
    Many(Vec<String>),
}

impl OneOrMany {
    /// The names.
    pub fn names(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => vec![s.as_str()],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

#[cfg(test)]
mod tests;

//! `GET /api/v1/alerts`: the alert conditions that hold now and the alerts
//! raised, newest first, with the channel each went to and what became of it
//! (see [`crate::alerts`]). Past alerts are kept in the store across restarts.
//! `GET /api/v1/alert-channels` (and `/{name}`): the channels, with their
//! secrets shown only as being set and their URLs by origin only.
//! `POST /api/v1/alert-channels`, `PUT` and `DELETE /api/v1/alert-channels/{name}`:
//! channels made at run time (kept in the store, taken up by every node without
//! a restart); the config file's are read-only here. Thin over
//! [`crate::control::Registry`].

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{limit, JsonBody, Params};
use super::Shared;
use crate::alerts::event::AlertEvent;
use crate::alerts::AlertRecord;
use crate::config::alerts::{AlertChannel, ChannelKind};
use crate::config::Secret;

/// The routes of this area.
pub fn router() -> Router<Shared> {
    Router::new()
        .route("/api/v1/alerts", get(list_alerts))
        .route(
            "/api/v1/alert-channels",
            get(list_channels).post(create_channel),
        )
        .route(
            "/api/v1/alert-channels/{name}",
            get(get_channel).put(replace_channel).delete(delete_channel),
        )
}

/// The filters of `GET /api/v1/alerts`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AlertParams {
    /// Past alerts at most: 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// The answer of `GET /api/v1/alerts`.
#[derive(Serialize, ToSchema)]
pub(crate) struct AlertList {
    /// The channels' names (the config file's, then those made through the API).
    channels: Vec<String>,
    /// Whether this node judges the conditions of destinations and sources:
    /// with several nodes on one PostgreSQL database one of them does, and
    /// `current` is that node's (empty on the others). `past` is the same on
    /// every node.
    leader: bool,
    /// Conditions that hold now: the event that started each (or its last reminder).
    current: Vec<AlertEvent>,
    /// Alerts raised, newest first, one per channel they were raised for.
    past: Vec<AlertRecord>,
}

/// `GET /api/v1/alerts`: current conditions and past alerts.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", operation_id = "list_alerts",
    params(AlertParams),
    responses(
        (status = 200, description = "Current conditions and past alerts, newest first", body = AlertList),
        (status = 400, description = "A bad limit", body = ErrorBody),
    ))]
pub(crate) async fn list_alerts(
    State(s): State<Shared>,
    Params(p): Params<AlertParams>,
) -> ApiResult<Response> {
    let limit = limit(p.limit)?;
    Ok(Json(AlertList {
        channels: s.alerts.channel_names(),
        leader: s.alerts.leading(),
        current: s.alerts.current(),
        past: s.alerts.past(limit).await,
    })
    .into_response())
}

/// Which dead messages raise `message.dead` (every list empty: all of them).
#[derive(Serialize, ToSchema)]
pub(crate) struct DeadFilterView {
    sources: Vec<String>,
    destinations: Vec<String>,
    /// `high`, `normal`, `low`.
    priorities: Vec<&'static str>,
}

/// One alert channel as the API shows it: never a secret (a Slack, Discord
/// or Telegram URL, a bot token, a signing secret, a routing key), only
/// whether it is set, and URLs by origin.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"name": "ops", "origin": "config", "format": "slack",
    "url": "https://hooks.slack.com/…", "secret_set": false, "bot_token_set": false,
    "routing_key_set": false, "chat_id": null, "events": ["destination.*"],
    "dead": {"sources": [], "destinations": [], "priorities": []},
    "failing_below": 0.8, "warning_below": 0.9, "recovered_above": 0.95, "window": "5m",
    "min_attempts": 10, "stale_after": "15m", "rejections_above": 0.2, "disk_above": 0.9,
    "reminder": "1h", "max_per_hour": 20, "destination": "alerts.ops"}))]
pub(crate) struct ChannelView {
    name: String,
    /// Where the channel is defined: `config` (read-only through the API) or `api`.
    origin: &'static str,
    /// `webhook`, `slack`, `telegram`, `discord` or `pagerduty`.
    format: &'static str,
    /// The origin of where alerts are posted (`https://hooks.slack.com/…`).
    url: Option<String>,
    /// webhook: whether a signing secret is set.
    secret_set: bool,
    /// telegram: whether a bot token is set.
    bot_token_set: bool,
    /// pagerduty: whether a routing key is set.
    routing_key_set: bool,
    /// telegram: the chat.
    chat_id: Option<String>,
    /// The event types sent (globs).
    events: Vec<String>,
    dead: DeadFilterView,
    failing_below: f64,
    warning_below: f64,
    recovered_above: f64,
    window: String,
    min_attempts: u64,
    stale_after: String,
    rejections_above: f64,
    disk_above: f64,
    reminder: String,
    max_per_hour: u32,
    /// The destination that delivers the channel's alerts.
    destination: String,
}

/// Only the origin of a channel's URL (its path, query and user part may be
/// secrets), as the channel's destination is shown.
fn origin_of(c: &AlertChannel, url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => crate::config::alerts::shown_url(&c.destination_name(), &u),
        Err(_) => "…".into(),
    }
}

fn is_set(s: &Option<Secret>) -> bool {
    s.as_ref().is_some_and(|s| !s.expose().is_empty())
}

impl ChannelView {
    fn of(c: &AlertChannel, s: &Shared) -> Self {
        let url = match c.format {
            ChannelKind::Telegram => c
                .api_url
                .clone()
                .or(Some(crate::config::alerts::TELEGRAM_API.to_string())),
            _ => c.target_url(),
        };
        ChannelView {
            name: c.name.clone(),
            origin: if s.registry.channels().is_file(&c.name) {
                "config"
            } else {
                "api"
            },
            format: c.format.as_str(),
            url: url.as_deref().map(|u| origin_of(c, u)),
            secret_set: is_set(&c.secret),
            bot_token_set: is_set(&c.bot_token),
            routing_key_set: is_set(&c.routing_key),
            chat_id: c.chat_id.clone(),
            events: c.events.clone(),
            dead: DeadFilterView {
                sources: c.dead.sources.clone(),
                destinations: c.dead.destinations.clone(),
                priorities: c.dead.priorities.iter().map(|p| p.as_str()).collect(),
            },
            failing_below: c.failing_below,
            warning_below: c.warning_below,
            recovered_above: c.recovered_above,
            window: c.window.to_string(),
            min_attempts: c.min_attempts,
            stale_after: c.stale_after.to_string(),
            rejections_above: c.rejections_above,
            disk_above: c.disk_above,
            reminder: c.reminder.to_string(),
            max_per_hour: c.max_per_hour,
            destination: c.destination_name(),
        }
    }
}

/// The answer of `GET /api/v1/alert-channels`.
#[derive(Serialize, ToSchema)]
pub(crate) struct ChannelList {
    data: Vec<ChannelView>,
}

/// `GET /api/v1/alert-channels`: every alert channel, in order.
#[utoipa::path(get, path = "/api/v1/alert-channels", tag = "alerts", operation_id = "list_alert_channels",
    responses(
        (status = 200, description = "The alert channels, secrets left out", body = ChannelList),
    ))]
pub(crate) async fn list_channels(State(s): State<Shared>) -> Json<ChannelList> {
    Json(ChannelList {
        data: s
            .alerts
            .channels()
            .iter()
            .map(|c| ChannelView::of(c, &s))
            .collect(),
    })
}

/// The `name` path parameter of a channel's calls.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct ChannelPath {
    /// The channel's name.
    #[param(example = "ops")]
    #[allow(dead_code)]
    name: String,
}

/// `GET /api/v1/alert-channels/{name}`: one alert channel.
#[utoipa::path(get, path = "/api/v1/alert-channels/{name}", tag = "alerts", operation_id = "get_alert_channel",
    params(ChannelPath),
    responses(
        (status = 200, description = "The channel, secrets left out", body = ChannelView),
        (status = 404, description = "No such channel", body = ErrorBody),
    ))]
pub(crate) async fn get_channel(
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> ApiResult<Json<ChannelView>> {
    s.alerts
        .channels()
        .iter()
        .find(|c| c.name == name)
        .map(|c| Json(ChannelView::of(c, &s)))
        .ok_or_else(|| ApiError::not_found("alert channel"))
}

/// `POST /api/v1/alert-channels`: a channel made at run time; its alerts start
/// with the evaluator's next round, on every node.
#[utoipa::path(post, path = "/api/v1/alert-channels", tag = "alerts", operation_id = "create_alert_channel",
    request_body(content = AlertChannel, description = "The `[[alerts]]` fields"),
    responses(
        (status = 201, description = "Created; the answer leaves its secrets out", body = ChannelView,
            links(
                ("GetAlertChannel" = (operation_id = "get_alert_channel", parameters(("name" = "$response.body#/name")))),
                ("ReplaceAlertChannel" = (operation_id = "replace_alert_channel", parameters(("name" = "$response.body#/name")))),
                ("DeleteAlertChannel" = (operation_id = "delete_alert_channel", parameters(("name" = "$response.body#/name")))),
            )),
        (status = 409, description = "A channel of that name exists", body = ErrorBody),
        (status = 422, description = "The channel has problems (each in `details`, at its field)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub(crate) async fn create_channel(
    State(s): State<Shared>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult<(StatusCode, Json<ChannelView>)> {
    let c = s.registry.put_channel(None, body).await?;
    Ok((StatusCode::CREATED, Json(ChannelView::of(&c, &s))))
}

/// `PUT /api/v1/alert-channels/{name}`: the whole channel again (its secrets
/// too: they are never read back); applies from the evaluator's next round.
#[utoipa::path(put, path = "/api/v1/alert-channels/{name}", tag = "alerts", operation_id = "replace_alert_channel",
    params(ChannelPath),
    request_body(content = AlertChannel, description = "The `[[alerts]]` fields (`name` may be left out)"),
    responses(
        (status = 200, description = "Replaced; the answer leaves its secrets out", body = ChannelView),
        (status = 404, description = "No such channel made through the API", body = ErrorBody),
        (status = 409, description = "A config-file channel (read-only here)", body = ErrorBody),
        (status = 422, description = "The channel has problems (each in `details`, at its field)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub(crate) async fn replace_channel(
    State(s): State<Shared>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult<Json<ChannelView>> {
    let c = s.registry.put_channel(Some(&name), body).await?;
    Ok(Json(ChannelView::of(&c, &s)))
}

/// `DELETE /api/v1/alert-channels/{name}`: no more alerts go to it; those
/// queued and not yet sent stay stored (sent if a channel of that name
/// comes back), like a deleted destination's deliveries.
#[utoipa::path(delete, path = "/api/v1/alert-channels/{name}", tag = "alerts", operation_id = "delete_alert_channel",
    params(ChannelPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such channel made through the API", body = ErrorBody),
        (status = 409, description = "A config-file channel (read-only here)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub(crate) async fn delete_channel(
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.registry.delete_channel(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

//! Who may call the Svix API: an admin token (`server.admin_tokens`) reaches
//! every application; a tenant token, made by
//! `POST /api/v1/auth/app-portal-access/{app_id}` (Svix's app portal), only
//! its own. A tenant token is stored as its SHA-256 (the token itself is
//! shown once), compared by that hash, and revoked by `POST /api/v1/auth/logout`.

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::shape::MaybeBody;
use super::{apps, kind, SvixError, SvixResult};
use crate::admin::Shared;
use crate::store::TenantRecord;

/// What the caller's token reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every application (an admin token).
    All,
    /// One application, with the token's hash (for logout).
    AppToken {
        /// The application's id.
        app: String,
        /// The token's hash.
        hash: String,
    },
}

impl Scope {
    /// The application a tenant token is limited to.
    pub fn app(&self) -> Option<&str> {
        match self {
            Scope::All => None,
            Scope::AppToken { app: a, .. } => Some(a),
        }
    }
    /// Refuses a tenant token (403): only admin tokens may do this.
    pub fn admin_only(&self) -> SvixResult<()> {
        match self {
            Scope::All => Ok(()),
            _ => Err(SvixError::forbidden()),
        }
    }
}

/// Tenant tokens start with this, so they never pass for admin tokens by look.
const TOKEN_PREFIX: &str = "appsk_";

/// The stored key of a token: its SHA-256, hex.
fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The scope of a live tenant token, `None` for anything else.
pub async fn tenant_scope(s: &Shared, token: &str) -> SvixResult<Option<Scope>> {
    if !token.starts_with(TOKEN_PREFIX) {
        return Ok(None);
    }
    // The lookup is by hash: equal hashes are the only match, and the
    // hash of a guess tells nothing of a real token.
    let hash = token_hash(token);
    Ok(token_live(s, &hash)
        .await?
        .map(|app| Scope::AppToken { app, hash }))
}

/// The application of the live (stored, unexpired) token with this hash.
pub async fn token_live(s: &Shared, hash: &str) -> SvixResult<Option<String>> {
    match s.store.tenant_record(kind::TOKEN, "", hash).await? {
        Some(r)
            if r.id == hash
                && r.body["expiresAt"]
                    .as_i64()
                    .is_some_and(|t| t > s.clock.now_millis()) =>
        {
            Ok(r.body["app"].as_str().map(str::to_string))
        }
        _ => Ok(None),
    }
}

/// The middleware: an admin token, or a live tenant token; else 401.
pub async fn authorize(State(s): State<Shared>, mut req: Request, next: Next) -> Response {
    let token = crate::admin::bearer_token(req.headers())
        .unwrap_or("")
        .to_string();
    let scope = if !token.is_empty()
        && crate::ingest::verify::any_key_eq(&s.config().server.admin_tokens, token.as_bytes())
    {
        Some(Scope::All)
    } else {
        match tenant_scope(&s, &token).await {
            Ok(scope) => scope,
            Err(e) => return e.into_response(),
        }
    };
    match scope {
        Some(scope) => {
            req.extensions_mut().insert(scope);
            next.run(req).await
        }
        None => {
            let mut r = SvixError::http(
                StatusCode::UNAUTHORIZED,
                "authentication_failed",
                "a valid token is required: Authorization: Bearer <token>",
            )
            .into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("static"));
            r
        }
    }
}

/// The routes of this area.
pub fn router() -> Router<Shared> {
    Router::new()
        .route(
            "/api/v1/auth/app-portal-access/{app_id}",
            post(portal_access),
        )
        .route("/api/v1/auth/logout", post(logout))
}

/// The body of `app-portal-access` (every field optional).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortalAccessIn {
    /// Svix's feature flags (accepted, unused).
    #[serde(default)]
    pub feature_flags: Option<Vec<String>>,
    /// Makes the application if it does not exist (accepted and ignored
    /// when it does).
    #[serde(default)]
    pub application: Option<serde_json::Value>,
    /// Seconds the token is valid (default 7 days).
    #[serde(default)]
    pub expiry: Option<u64>,
}

/// How long a tenant token is valid unless `expiry` says.
const DEFAULT_EXPIRY_S: u64 = 7 * 86400;

/// The answer: the token, and the console's URL for it.
#[derive(Serialize)]
pub struct PortalAccessOut {
    /// The tenant token (shown once).
    pub token: String,
    /// Where a tenant sees its endpoints (the console).
    pub url: String,
}

/// `POST /api/v1/auth/app-portal-access/{app_id}`: a token for one application.
async fn portal_access(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Path(app_id): Path<String>,
    headers: axum::http::HeaderMap,
    MaybeBody(body): MaybeBody<PortalAccessIn>,
) -> SvixResult<Json<PortalAccessOut>> {
    let _ = (&body.feature_flags, &body.application);
    let expiry = body.expiry.unwrap_or(DEFAULT_EXPIRY_S);
    if expiry == 0 || expiry > 365 * 86400 {
        return Err(SvixError::invalid("expiry", "must be 1 second to 365 days"));
    }
    let app = apps::find(&s, &scope, &app_id).await?;
    let bytes: [u8; 32] = rand::random();
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let now = s.clock.now_millis();
    let rec = TenantRecord {
        kind: kind::TOKEN.into(),
        tenant: String::new(),
        id: token_hash(&token),
        uid: None,
        body: json!({"app": app.id, "expiresAt": now.saturating_add(expiry as i64 * 1000)}),
        created_at: now,
        updated_at: now,
    };
    s.store.put_tenant_record(&rec, true).await?;
    let scheme = if s.config().server.admin_tls.is_some() {
        "https"
    } else {
        "http"
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    Ok(Json(PortalAccessOut {
        // The token rides in the fragment, as in Svix's portal links: a
        // browser never sends a fragment, so it stays out of request logs
        // and `Referer`; the portal's page exchanges it for a cookie.
        url: format!("{scheme}://{host}/portal#key={token}"),
        token,
    }))
}

/// `POST /api/v1/auth/logout`: revokes the tenant token that calls it.
async fn logout(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
) -> SvixResult<StatusCode> {
    match scope {
        Scope::AppToken { hash, .. } => {
            s.store.delete_tenant_record(kind::TOKEN, "", &hash).await?;
            Ok(StatusCode::NO_CONTENT)
        }
        _ => Err(SvixError::http(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "only a tenant token can log out (admin tokens are set in the config)",
        )),
    }
}

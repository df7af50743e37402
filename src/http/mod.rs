//! The HTTP side: `/healthz`, `/readyz`, `/metrics`, and the approvals API that lets the social team pre-approve a post
//! before it is published (so the scheduled announcement does not page anyone).
//!
//! `/api/v1` is guarded by a bearer token compared in constant time. Bodies are capped, and a
//! body that does not parse is answered 400 with the field at fault, and counted.

pub mod health;

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::{
    config::Secret,
    detect::{content_from_text, fingerprint},
    sources::Health,
    store::{ApprovedEntry, Store},
};

/// Approval bodies are a post's text and a few fields; anything larger is not one.
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Clone)]
pub struct HttpState {
    pub store: Store,
    /// Readiness checks, and the metrics they read from.
    pub readiness: Arc<health::Readiness>,
    pub health: Health,
    pub api_token: Secret,
    pub accounts: Arc<HashSet<String>>,
    /// Requests refused for a bad token or body.
    pub rejected: Arc<AtomicU64>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/api/v1/approvals", post(add_approval))
        .route("/api/v1/incidents", get(list_incidents))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// An API error: a status and a message that says which field or header is at fault.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn authorize(s: &HttpState, headers: &HeaderMap) -> Result<(), ApiError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let expected = s.api_token.expose().as_bytes();
    if bool::from(given.as_bytes().ct_eq(expected)) {
        return Ok(());
    }
    s.rejected.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(
        reason = "bad or missing bearer token",
        "api request refused"
    );
    Err(ApiError(
        StatusCode::UNAUTHORIZED,
        "missing or wrong bearer token in Authorization".into(),
    ))
}

/// `POST /api/v1/approvals` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalRequest {
    account: String,
    text: String,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    by: Option<String>,
}

async fn add_approval(
    State(s): State<HttpState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&s, &headers)?;
    let bad = |msg: String| {
        s.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(reason = %msg, "approval request refused");
        ApiError(StatusCode::BAD_REQUEST, msg)
    };
    let req: ApprovalRequest =
        serde_json::from_slice(&body).map_err(|e| bad(format!("invalid approval body: {e}")))?;
    if !s.accounts.contains(&req.account) {
        return Err(bad(format!(
            "field `account`: `{}` is not a configured account",
            req.account
        )));
    }
    if req.text.trim().is_empty() {
        return Err(bad("field `text`: must not be empty".into()));
    }
    let fp = fingerprint(&content_from_text(&req.text));
    let by = format!("api:{}", req.by.as_deref().unwrap_or("token"));
    let entry = ApprovedEntry::ApprovedPost {
        account: req.account.clone(),
        fingerprint: Some(fp.clone()),
        post_id: None,
        expires_at: req.expires_at,
        by,
        note: req.note,
    };
    let record = s.store.approve(entry, Utc::now()).map_err(|e| {
        tracing::error!(error = %e, "cannot record an approval");
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the approval could not be recorded".into(),
        )
    })?;
    s.store
        .flush()
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    tracing::info!(account = %req.account, seq = record.seq, "post pre-approved");
    Ok((
        StatusCode::CREATED,
        Json(
            json!({ "seq": record.seq, "account": req.account, "fingerprint": fp, "hash": record.hash }),
        ),
    ))
}

async fn list_incidents(
    State(s): State<HttpState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&s, &headers)?;
    let incidents = s
        .store
        .incidents()
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(json!({ "incidents": incidents })))
}

//! The HTTP side: `/healthz`, `/readyz`, `/metrics`, and the approvals API that lets the social team pre-approve a post
//! before it is published (so the scheduled announcement does not page anyone).
//!
//! `/api/v1` is guarded by a bearer token compared in constant time. Bodies are capped, and a
//! body that does not parse is answered 400 with the field at fault, and counted.

mod api;
pub mod health;
pub mod hooks;

pub use api::openapi_document;

use std::{
    collections::HashSet,
    sync::{Arc, atomic::AtomicU64},
};

use axum::{
    Router,
    extract::DefaultBodyLimit,
    routing::{get, post},
};

use crate::{
    config::{Account, Secret},
    sources::Health,
    store::Store,
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
    /// The configured accounts in config order, for `GET /api/v1/accounts`.
    pub watched: Arc<Vec<Account>>,
    /// Requests refused for a bad token or body.
    pub rejected: Arc<AtomicU64>,
    /// The provider webhooks, when any is configured.
    pub hooks: Option<Arc<hooks::Hooks>>,
}

pub fn router(state: HttpState) -> Router {
    // The webhooks read their bodies themselves, each under its provider's own limit.
    let hooks = state
        .hooks
        .as_deref()
        .map(hooks::routes)
        .unwrap_or_default();
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/api/v1/openapi.json", get(api::openapi))
        .route(
            "/api/v1/approvals",
            get(api::list_approvals).post(api::add_approval),
        )
        .route("/api/v1/approvals/{seq}/revoke", post(api::revoke_approval))
        .route("/api/v1/incidents", get(api::list_incidents))
        .route("/api/v1/incidents/{id}", get(api::get_incident))
        .route("/api/v1/accounts", get(api::list_accounts))
        .route("/api/v1/timeline", get(api::timeline))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .merge(hooks)
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

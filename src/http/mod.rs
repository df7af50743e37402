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
    extract::{DefaultBodyLimit, Request},
    http::StatusCode,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};

use crate::{
    config::{Account, Secret},
    store::Store,
    watch::Health,
};

/// Approval bodies are a post's text and a few fields; anything larger is not one.
pub const MAX_BODY: usize = 64 * 1024;

/// Time a request has to arrive whole and be answered. A client dripping its body a byte at a
/// time would otherwise hold a connection and a task for as long as it likes.
pub const REQUEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

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
        .layer(middleware::from_fn(deadline))
        .with_state(state)
}

/// Answers 408 to a request not received and handled within [`REQUEST_DEADLINE`].
async fn deadline(req: Request, next: Next) -> Response {
    let what = format!("{} {}", req.method(), req.uri().path());
    match tokio::time::timeout(REQUEST_DEADLINE, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(request = %what, "request not complete within the deadline; answered 408");
            (
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "request not received within {} s",
                    REQUEST_DEADLINE.as_secs()
                ),
            )
                .into_response()
        }
    }
}

/// Time a client has to send a request's headers. hyper enforces it only with a timer, which
/// `axum::serve` does not set: without it a client sending a header byte now and then (slowloris)
/// holds its connection open for ever.
pub const HEADER_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves until `shutdown` resolves, then lets the requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::{
        rt::{TokioIo, TokioTimer},
        server::graceful::GracefulShutdown,
        service::TowerToHyperService,
    };

    let app = router(state);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors and the like: wait rather than spin, keep serving.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(app.clone());
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_DEADLINE)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

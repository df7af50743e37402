//! The HTTP side: `/healthz`, `/readyz`, `/metrics`, the approvals API that lets the social team
//! pre-approve a post before it is published (so the scheduled announcement does not page
//! anyone), and the provider webhooks.
//!
//! Two listeners at most: `general.listen` serves everything, unless `general.hooks_listen` is
//! set; then the webhooks (the only routes the internet must reach) are served there with
//! `/healthz` alone, and `listen` keeps the API, `/metrics` and `/readyz` private. Each
//! listener serves at most `general.max_connections` connections at once.
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

use crate::{config::Account, store::Store, watch::Health};

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
    /// Every operator token with its name and role (`general.api_token` is the admin `api`).
    pub api_tokens: Arc<Vec<crate::config::ApiToken>>,
    pub accounts: Arc<HashSet<String>>,
    /// The configured accounts in config order, for `GET /api/v1/accounts`.
    pub watched: Arc<Vec<Account>>,
    /// Requests refused for a bad token or body.
    pub rejected: Arc<AtomicU64>,
    /// The provider webhooks, when any is configured.
    pub hooks: Option<Arc<hooks::Hooks>>,
    /// The platforms' push routes (path prefix, router), served beside the webhooks.
    pub push_routes: Arc<Vec<(String, Router)>>,
}

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    /// `general.listen`: the API, health, metrics, and the webhooks when `hooks` is true.
    Main { hooks: bool },
    /// `general.hooks_listen`: the webhooks and `/healthz`, nothing else.
    Hooks,
}

impl Serves {
    /// The metric's `listener` label.
    pub fn label(self) -> &'static str {
        match self {
            Serves::Main { .. } => "listen",
            Serves::Hooks => "hooks_listen",
        }
    }
}

pub fn router(state: HttpState, serves: Serves) -> Router {
    // The webhooks read their bodies themselves, each under its provider's own limit.
    let hooks = || {
        let provider = state
            .hooks
            .as_deref()
            .map(hooks::routes)
            .unwrap_or_default();
        state.push_routes.iter().fold(provider, |r, (path, push)| {
            r.nest_service(path, push.clone())
        })
    };
    let r = match serves {
        Serves::Hooks => Router::new()
            .route("/healthz", get(health::healthz))
            .merge(hooks()),
        Serves::Main { hooks: with_hooks } => {
            let main = Router::new()
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
                .layer(DefaultBodyLimit::max(MAX_BODY));
            if with_hooks {
                main.merge(hooks())
            } else {
                main
            }
        }
    };
    r.layer(middleware::from_fn(deadline)).with_state(state)
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

/// The answer to a connection over the cap, written without reading anything from it.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 29\r\nconnection: close\r\n\r\ntoo many connections; retry\r\n";
/// Refused connections lingering at once to read what their client sent (so that closing
/// does not reset the connection before the 503 is read); past this they are just closed.
const MAX_LINGERING: usize = 64;
/// How long a refused connection lingers.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// Serves `app` on `listener` until `shutdown` resolves, then lets the requests in flight
/// finish. At most `max_connections` connections are served at once: one more is answered 503
/// and closed at once (counted in `tocsin_http_connections_refused_total{listener}`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    max_connections: usize,
    serves: Serves,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::{
        rt::{TokioIo, TokioTimer},
        server::graceful::GracefulShutdown,
        service::TowerToHyperService,
    };
    use tokio::sync::Semaphore;

    let permits = Arc::new(Semaphore::new(max_connections));
    let lingering = Arc::new(Semaphore::new(MAX_LINGERING));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of file descriptors and the like: wait rather than spin, keep serving.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics.connection_refused(serves.label());
            tracing::warn!(%peer, listener = serves.label(), max_connections, "connection over the cap refused");
            if let Ok(linger) = lingering.clone().try_acquire_owned() {
                tokio::spawn(refuse(stream, linger));
            }
            continue;
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
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Answers a connection over the cap 503 and closes it: once its request head has arrived (an
/// answer before the request is one no client expects), or after [`LINGER`]; what the client
/// sent is read, not parsed, so that the close does not reset the connection under the answer.
async fn refuse(mut stream: tokio::net::TcpStream, _linger: tokio::sync::OwnedSemaphorePermit) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let _ = tokio::time::timeout(LINGER, async {
        while head.len() < 16 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    let _ = tokio::time::timeout(LINGER, async {
        stream.write_all(BUSY).await?;
        stream.shutdown().await?;
        while stream.read(&mut buf).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

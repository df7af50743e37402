//! The provider event webhooks: `POST /hooks/{ses,sendgrid,mailgun,postmark}`, each present
//! when its `[email.*]` table is (on `general.hooks_listen` when set).
//!
//! Every handler does the same five steps: check the headers that say the request is the
//! provider's (401 before a byte of the body is read), read the body up to the provider's
//! `max_body` (413), let the provider verify its signature and only then parse (401 / 400
//! naming the field), commit the new deliveries to the durable inbox, and answer 200 once they
//! are on disk; deliveries the inbox already holds are answered 200 too and counted in
//! `tocsin_webhook_duplicates_total{provider}`. Each refusal is counted in
//! `tocsin_webhook_rejected_total{provider,reason}`; nothing refused is stored.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header::CONTENT_LENGTH},
    response::{IntoResponse, Response},
    routing::post,
};
use chrono::Utc;
use serde_json::json;

use super::HttpState;
use crate::{
    mail::webhooks::{
        Accepted, HookError, Inbox, InboxError, mailgun::Mailgun, postmark::Postmark,
        sendgrid::SendGrid, ses::Ses,
    },
    metrics::Metrics,
};

/// The configured webhooks and what they commit to.
pub struct Hooks {
    pub inbox: Inbox,
    pub metrics: Arc<Metrics>,
    pub ses: Option<(Ses, usize)>,
    pub sendgrid: Option<(SendGrid, usize)>,
    pub mailgun: Option<(Mailgun, usize)>,
    pub postmark: Option<(Postmark, usize)>,
}

pub fn routes(hooks: &Hooks) -> Router<HttpState> {
    let mut r = Router::new();
    if hooks.ses.is_some() {
        r = r.route("/hooks/ses", post(ses));
    }
    if hooks.sendgrid.is_some() {
        r = r.route("/hooks/sendgrid", post(sendgrid));
    }
    if hooks.mailgun.is_some() {
        r = r.route("/hooks/mailgun", post(mailgun));
    }
    if hooks.postmark.is_some() {
        r = r.route("/hooks/postmark", post(postmark));
    }
    r
}

/// The answer to a refused request, counted and logged.
fn refuse(hooks: &Hooks, provider: &str, e: &HookError) -> Response {
    let status = match e {
        HookError::Refused { .. } => StatusCode::UNAUTHORIZED,
        HookError::Malformed { .. } => StatusCode::BAD_REQUEST,
        HookError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    let reason = e.reason();
    hooks.metrics.webhook_rejected(provider, reason);
    tracing::warn!(provider, reason, error = %e, "webhook request refused");
    (status, Json(json!({ "error": e.to_string() }))).into_response()
}

/// The body, or the 413 that refuses it. A declared length over the limit is refused before a
/// byte is read.
async fn read_body(
    hooks: &Hooks,
    provider: &str,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<axum::body::Bytes, Response> {
    let too_large = || {
        hooks.metrics.webhook_rejected(provider, "too_large");
        tracing::warn!(provider, limit, "webhook body over the limit");
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            Json(json!({ "error": format!("request body over {limit} bytes") })),
        )
            .into_response()
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())
}

async fn finish(
    hooks: &Hooks,
    provider: &str,
    account: &str,
    verdict: Result<Accepted, HookError>,
) -> Response {
    let accepted = match verdict {
        Ok(a) => a,
        Err(e) => return refuse(hooks, provider, &e),
    };
    if accepted.deliveries.is_empty() && accepted.token.is_none() {
        return (StatusCode::OK, Json(json!({ "accepted": 0 }))).into_response();
    }
    match hooks.inbox.record(account, accepted).await {
        Ok(r) => {
            hooks.metrics.webhook_accepted(provider, r.accepted);
            if r.duplicates > 0 {
                hooks.metrics.webhook_duplicates(provider, r.duplicates);
                tracing::info!(
                    provider,
                    duplicates = r.duplicates,
                    "events already accepted once answered 200 and not judged again"
                );
            }
            (
                StatusCode::OK,
                Json(json!({ "accepted": r.accepted, "duplicates": r.duplicates })),
            )
                .into_response()
        }
        Err(InboxError::Replayed) => refuse(
            hooks,
            provider,
            &HookError::refused(
                crate::mail::webhooks::Refusal::Replayed,
                "this token was already used by another event",
            ),
        ),
        Err(e) => refuse(
            hooks,
            provider,
            &HookError::Unavailable(format!("cannot record the events now: {e}")),
        ),
    }
}

/// The configured webhook of one provider, or the 404 of a route that is not.
macro_rules! hook_of {
    ($s:expr, $field:ident) => {{
        let Some(hooks) = $s.hooks.as_deref() else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let Some((hook, limit)) = &hooks.$field else {
            return StatusCode::NOT_FOUND.into_response();
        };
        (hooks, hook, *limit)
    }};
}

async fn ses(State(s): State<HttpState>, req: Request) -> Response {
    let (hooks, hook, limit) = hook_of!(s, ses);
    let (parts, body) = req.into_parts();
    if let Err(e) = hook.precheck(&parts.headers) {
        return refuse(hooks, "ses", &e);
    }
    let body = match read_body(hooks, "ses", &parts.headers, body, limit).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let verdict = hook.accept(&parts.headers, &body, Utc::now()).await;
    finish(hooks, "ses", &hook.name, verdict).await
}

async fn sendgrid(State(s): State<HttpState>, req: Request) -> Response {
    let (hooks, hook, limit) = hook_of!(s, sendgrid);
    let (parts, body) = req.into_parts();
    if let Err(e) = hook.precheck(&parts.headers) {
        return refuse(hooks, "sendgrid", &e);
    }
    let body = match read_body(hooks, "sendgrid", &parts.headers, body, limit).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    // ECDSA verification and JSON parsing of a large batch are CPU work: off the I/O threads.
    let verdict = {
        let hooks = s.hooks.clone().expect("route exists");
        let headers = parts.headers;
        tokio::task::spawn_blocking(move || {
            let (hook, _) = hooks.sendgrid.as_ref().expect("route exists");
            hook.accept(&headers, &body, Utc::now())
        })
        .await
        .unwrap_or_else(|e| Err(HookError::Unavailable(e.to_string())))
    };
    finish(hooks, "sendgrid", &hook.name, verdict).await
}

async fn mailgun(State(s): State<HttpState>, req: Request) -> Response {
    let (hooks, hook, limit) = hook_of!(s, mailgun);
    let (parts, body) = req.into_parts();
    if let Err(e) = hook.precheck(&parts.headers) {
        return refuse(hooks, "mailgun", &e);
    }
    let body = match read_body(hooks, "mailgun", &parts.headers, body, limit).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let verdict = hook.accept(&parts.headers, &body, Utc::now());
    finish(hooks, "mailgun", &hook.name, verdict).await
}

async fn postmark(State(s): State<HttpState>, req: Request) -> Response {
    let (hooks, hook, limit) = hook_of!(s, postmark);
    let (parts, body) = req.into_parts();
    if let Err(e) = hook.precheck(&parts.headers) {
        return refuse(hooks, "postmark", &e);
    }
    let body = match read_body(hooks, "postmark", &parts.headers, body, limit).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let verdict = hook.accept(&parts.headers, &body, Utc::now());
    finish(hooks, "postmark", &hook.name, verdict).await
}

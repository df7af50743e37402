//! `/healthz` says the process answers; `/readyz` says tocsin is actually watching and paging:
//! the store answers (and verifies against its chains), the bot reached Telegram recently,
//! every source polled within its grace period, the page queue is moving, and the webhook inbox
//! (when webhooks are configured) can write. The JSON body names what is wrong, so an
//! orchestrator's
//! event log tells the operator where to look.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};
use serde_json::json;

use super::HttpState;
use crate::{
    metrics::Metrics,
    model::clock::SharedClock,
    store::{Integrity, Store},
};

/// What readiness is judged against.
pub struct Readiness {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// Each account with how long it may go without a successful poll.
    pub sources: Vec<(String, Duration)>,
    /// How long the bot may go without a successful `getUpdates`.
    pub bot_grace: Duration,
    /// A page older than this in the queue means delivery is stuck.
    pub outbox_max_age: Duration,
    /// Set by the Telegram worker while pages do not reach the chat.
    pub telegram_down: crate::notify::TelegramStatus,
    /// Whether a fallback channel is paged about it.
    pub has_fallback: bool,
    /// The webhook inbox's writer, when any provider webhook is configured.
    pub webhook_inbox: Option<crate::mail::webhooks::InboxHealth>,
    /// What time it is when ages are judged: the app's clock, so a test can put readiness
    /// two minutes later instead of waiting two minutes.
    pub clock: SharedClock,
}

impl Readiness {
    pub fn check(&self) -> (bool, serde_json::Value) {
        let now = self.clock.now();
        let mut checks = serde_json::Map::new();
        let mut ready = true;
        let mut put = |name: String, problem: Option<String>| {
            ready &= problem.is_none();
            checks.insert(name, problem.map_or_else(|| json!("ok"), |p| json!(p)));
        };
        let store_problem = match self.store.write_fault() {
            Some(f) => Some(format!("refusing writes since {}: {}", f.since, f.error)),
            None => self.store.log_len().err().map(|e| e.to_string()),
        };
        put("store".into(), store_problem);
        let last = self.metrics.refusals.bot_last_ok.load(Ordering::Relaxed);
        let bot = if last == 0 {
            Some("no successful getUpdates yet".to_owned())
        } else {
            let age = now.timestamp() - last;
            (age > self.bot_grace.as_secs() as i64)
                .then(|| format!("last successful getUpdates {age}s ago"))
        };
        let down = self.telegram_down.problem().map(|p| {
            let who = if self.has_fallback {
                "fallback channels paged"
            } else {
                "no fallback channel is configured: nobody is paged"
            };
            format!("pages are not reaching the chat: {p}; {who}")
        });
        let telegram = match (down, bot) {
            (Some(d), Some(b)) => Some(format!("{d}; {b}")),
            (d, b) => d.or(b),
        };
        put("telegram".into(), telegram);
        let health = self.metrics_health();
        for (account, grace) in &self.sources {
            let problem = match health.get(account).and_then(|h| h.last_success) {
                None => Some("no successful poll yet".to_owned()),
                Some(t) => {
                    let age = (now - t).to_std().unwrap_or_default();
                    (age > *grace).then(|| {
                        let err = health[account]
                            .last_error
                            .as_ref()
                            .map_or(String::new(), |(_, e)| format!(": {e}"));
                        format!("last successful poll {}s ago{err}", age.as_secs())
                    })
                }
            };
            put(format!("source:{account}"), problem);
        }
        let outbox = match self.store.outbox_depth() {
            Err(e) => Some(e.to_string()),
            Ok((n, Some(oldest))) => {
                let age = (now - oldest).to_std().unwrap_or_default();
                (age > self.outbox_max_age)
                    .then(|| format!("{n} page(s) queued, oldest {}s", age.as_secs()))
            }
            Ok(_) => None,
        };
        put("outbox".into(), outbox);
        if let Some(inbox) = &self.webhook_inbox {
            put("webhook_inbox".into(), inbox.problem());
        }
        // The chains: tampered fails readiness; unsigned is reported, but a daemon without a
        // signing key still watches and pages, which is what readiness is about.
        let mut warnings = Vec::new();
        match self.store.integrity() {
            Integrity::Tampered { problems, at } => put(
                "chain".into(),
                Some(format!(
                    "tampered: the state database does not verify (since {at}): {}",
                    crate::model::cut(&problems.join("; "), 500)
                )),
            ),
            Integrity::Unsigned { .. } => {
                checks.insert("chain".into(), json!("unsigned"));
                warnings.push(json!(
                    "chain: unsigned: no general.signing_key, so an edit of the state dir that \
                     recomputes the hashes is not caught"
                ));
            }
            Integrity::Verified { .. } | Integrity::Unverified => put("chain".into(), None),
        }
        let mut body = json!({ "ready": ready, "checks": checks });
        if !warnings.is_empty() {
            body["warnings"] = json!(warnings);
        }
        (ready, body)
    }

    fn metrics_health(&self) -> std::collections::BTreeMap<String, crate::watch::SourceHealth> {
        self.metrics.health().snapshot()
    }
}

pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(s): State<HttpState>) -> impl IntoResponse {
    let (ready, body) = s.readiness.check();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

pub async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.readiness.metrics.render(),
    )
}

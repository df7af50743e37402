//! A loopback stand-in for PagerDuty's Events API v2: alert events (`POST /v2/enqueue`) and
//! change events (`POST /v2/change/enqueue`, informational: they page nobody).
//!
//! It checks events the way the real service does, so that an event PagerDuty would refuse
//! fails in tests too: a 32-character `routing_key`, a known `event_action`, a `dedup_key`
//! for acknowledge and resolve, and `summary`, `source` and a valid `severity` for a trigger.
//! Accepted events answer 202 `{"status":"success","message":"Event processed","dedup_key":…}`
//! and are recorded; forced failures (429, 500, 400) exercise the sender's retry rules. A change
//! event needs the `routing_key` and a `payload.summary` of at most 1024 characters; accepted
//! ones answer 202 and are recorded apart from the alerts.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};

#[derive(Default)]
struct Inner {
    events: Vec<Value>,
    changes: Vec<Value>,
    requests: usize,
    /// When each request arrived, to time the sender's retries.
    arrivals: Vec<Instant>,
    /// Forced answers: the status and the `Retry-After` seconds to send with it.
    failures: VecDeque<(u16, Option<u64>)>,
}

/// Handle to a running fake; clones share one server.
#[derive(Clone)]
pub struct FakePagerDuty {
    url: url::Url,
    inner: Arc<Mutex<Inner>>,
}

impl FakePagerDuty {
    pub async fn start() -> std::io::Result<FakePagerDuty> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/v2/enqueue", post(enqueue))
            .route("/v2/change/enqueue", post(change))
            .with_state(inner.clone());
        // Never stopped: the sender is dropped at once, so it serves until the runtime ends.
        super::spawn_server(
            listener,
            app,
            tokio::sync::watch::channel(false).1,
            "fake PagerDuty",
        );
        let url = url::Url::parse(&format!("http://{addr}/")).map_err(std::io::Error::other)?;
        Ok(FakePagerDuty { url, inner })
    }

    /// Base URL for `api_url`.
    pub fn url(&self) -> url::Url {
        self.url.clone()
    }

    /// Accepted events in arrival order.
    pub fn events(&self) -> Vec<Value> {
        self.inner.lock().unwrap().events.clone()
    }

    /// Accepted change events in arrival order.
    pub fn changes(&self) -> Vec<Value> {
        self.inner.lock().unwrap().changes.clone()
    }

    /// `(event_action, dedup_key)` of each accepted event.
    pub fn actions(&self) -> Vec<(String, String)> {
        self.events()
            .iter()
            .map(|e| {
                (
                    e["event_action"].as_str().unwrap_or_default().to_owned(),
                    e["dedup_key"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// Every request, whatever the answer.
    pub fn requests(&self) -> usize {
        self.inner.lock().unwrap().requests
    }

    /// When each request arrived, whatever the answer.
    pub fn arrivals(&self) -> Vec<Instant> {
        self.inner.lock().unwrap().arrivals.clone()
    }

    /// Answers the next request with `status` (429, 500, 400…) instead of processing it.
    pub fn fail_next(&self, status: u16) {
        self.inner
            .lock()
            .unwrap()
            .failures
            .push_back((status, None));
    }

    /// Like [`fail_next`](Self::fail_next), with a `Retry-After: secs` header, as PagerDuty
    /// sends with its 429 when an integration is over its rate.
    pub fn fail_next_retry_after(&self, status: u16, secs: u64) {
        self.inner
            .lock()
            .unwrap()
            .failures
            .push_back((status, Some(secs)));
    }

    pub async fn wait_until(&self, timeout: Duration, f: impl Fn(&Self) -> bool) -> bool {
        super::wait_until(self, timeout, f).await
    }
}

fn invalid(errors: Vec<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors})),
    )
        .into_response()
}

/// What PagerDuty would refuse in an event, one message per problem.
pub fn validate(event: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    match event["routing_key"].as_str() {
        None => errors.push("'routing_key' is missing or blank".into()),
        Some(k) if k.len() != 32 => {
            errors.push("Length of 'routing_key' is incorrect (should be 32 characters)".into())
        }
        _ => {}
    }
    let action = event["event_action"].as_str().unwrap_or_default();
    match action {
        "trigger" => {
            let p = &event["payload"];
            for field in ["summary", "source"] {
                if p[field].as_str().is_none_or(str::is_empty) {
                    errors.push(format!("'payload.{field}' is missing or blank"));
                }
            }
            if p["summary"].as_str().is_some_and(|s| s.chars().count() > 1024) {
                errors.push("'payload.summary' is longer than 1024 characters".into());
            }
            match p["severity"].as_str() {
                Some("critical" | "error" | "warning" | "info") => {}
                _ => errors.push("'payload.severity' is invalid (must be one of the following: 'critical', 'warning', 'error' or 'info')".into()),
            }
        }
        "acknowledge" | "resolve" => {
            if event["dedup_key"].as_str().is_none_or(str::is_empty) {
                errors.push("'dedup_key' is missing or blank".into());
            }
        }
        _ => errors.push(
            "'event_action' is invalid (must be one of the following: 'trigger', 'acknowledge' or 'resolve')"
                .into(),
        ),
    }
    if event["dedup_key"].as_str().is_some_and(|k| k.len() > 255) {
        errors.push("'dedup_key' is longer than 255 characters".into());
    }
    errors
}

async fn enqueue(State(inner): State<Arc<Mutex<Inner>>>, body: Bytes) -> Response {
    let mut inner = inner.lock().unwrap();
    inner.requests += 1;
    inner.arrivals.push(Instant::now());
    if let Some((status, after)) = inner.failures.pop_front() {
        let mut response = match status {
            400 => invalid(vec!["forced by the test".into()]),
            s => {
                let status = StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                (status, "").into_response()
            }
        };
        if let Some(secs) = after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        return response;
    }
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        return invalid(vec!["Event object is not valid JSON".into()]);
    };
    let errors = validate(&event);
    if !errors.is_empty() {
        return invalid(errors);
    }
    let dedup_key = event["dedup_key"].as_str().map_or_else(
        || format!("generated-{}", inner.events.len()),
        str::to_owned,
    );
    inner.events.push(event);
    (
        StatusCode::ACCEPTED,
        Json(json!({"status": "success", "message": "Event processed", "dedup_key": dedup_key})),
    )
        .into_response()
}

/// What PagerDuty would refuse in a change event.
pub fn validate_change(event: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    match event["routing_key"].as_str() {
        Some(k) if k.len() == 32 => {}
        Some(_) => {
            errors.push("Length of 'routing_key' is incorrect (should be 32 characters)".into())
        }
        None => errors.push("'routing_key' is missing or blank".into()),
    }
    match event["payload"]["summary"].as_str() {
        None | Some("") => errors.push("'payload.summary' is missing or blank".into()),
        Some(s) if s.chars().count() > 1024 => {
            errors.push("'payload.summary' is longer than 1024 characters".into())
        }
        Some(_) => {}
    }
    errors
}

async fn change(State(inner): State<Arc<Mutex<Inner>>>, body: Bytes) -> Response {
    let mut inner = inner.lock().unwrap();
    inner.requests += 1;
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        return invalid(vec!["Event object is not valid JSON".into()]);
    };
    let errors = validate_change(&event);
    if !errors.is_empty() {
        return invalid(errors);
    }
    inner.changes.push(event);
    (
        StatusCode::ACCEPTED,
        Json(json!({"status": "success", "message": "Change event processed"})),
    )
        .into_response()
}

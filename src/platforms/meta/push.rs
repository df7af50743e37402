//! Graph API webhooks for Pages: `GET /hooks/meta` answers the subscription handshake,
//! `POST /hooks/meta` takes the deliveries, served on the hooks listener.
//!
//! The handshake (developers.facebook.com/docs/graph-api/webhooks/getting-started) sends
//! `hub.mode=subscribe`, `hub.verify_token` (the token typed into the App Dashboard) and
//! `hub.challenge`; the challenge is echoed only when the token matches. A delivery is
//! `{"object": "page", "entry": [{"id": PAGE_ID, "time": …, "changes": [{"field": "feed",
//! "value": {…}}]}]}` signed with `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body,
//! keyed with the app secret>`.
//!
//! Order of work: the signature header's presence and form (401 before a byte of the body is
//! read), the body up to `[meta] max_body` (413), the HMAC in constant time (401), and only then
//! the JSON (400). A delivery carries no id: each change is keyed by its content (object, Page
//! id, field and value, e.g. the post id and verb of a feed change), and a change already taken
//! is answered 200 and counted in `tocsin_webhook_duplicates_total{provider="meta"}` once per
//! redelivery. A new change wakes the Page's poller, which reads what changed with the Page
//! token: the delivery's own text is never judged, so a forged body that slipped through could
//! at most cause a read. Refusals are counted in `tocsin_webhook_rejected_total{provider="meta"}`.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Body,
    extract::{Query, Request, State},
    http::{HeaderMap, StatusCode, header::CONTENT_LENGTH},
    response::{IntoResponse, Response},
    routing::get,
};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Notify;

use crate::{config::Secret, metrics::Metrics};

/// The path Meta's App Dashboard is given, after `general.public_url`.
pub const PATH: &str = "/hooks/meta";
/// The metrics' `provider` label.
const PROVIDER: &str = "meta";
/// Change keys remembered; Meta retries a failed delivery for up to 36 hours.
const SEEN_MAX: usize = 100_000;
const SEEN_FOR: Duration = Duration::from_secs(36 * 3600);
/// The longest challenge echoed: Meta's are a few digits.
const MAX_CHALLENGE: usize = 256;

/// The webhook of the watched Pages.
pub struct MetaHooks {
    app_secret: Secret,
    verify_token: Secret,
    max_body: usize,
    /// Page id → its poller's wake-up.
    pages: HashMap<String, Arc<Notify>>,
    seen: Mutex<Seen>,
    metrics: Arc<Metrics>,
}

/// Keys of the changes taken, oldest first, forgotten after [`SEEN_FOR`] or past [`SEEN_MAX`].
#[derive(Default)]
struct Seen {
    keys: HashSet<[u8; 32]>,
    order: VecDeque<(Instant, [u8; 32])>,
}

impl Seen {
    /// Records `key`; false when it was already there.
    fn insert(&mut self, key: [u8; 32], now: Instant) -> bool {
        while let Some((at, old)) = self.order.front().copied() {
            if now.duration_since(at) < SEEN_FOR && self.order.len() < SEEN_MAX {
                break;
            }
            self.order.pop_front();
            self.keys.remove(&old);
        }
        if !self.keys.insert(key) {
            return false;
        }
        self.order.push_back((now, key));
        true
    }
}

impl MetaHooks {
    pub fn new(
        app_secret: Secret,
        verify_token: Secret,
        max_body: usize,
        pages: HashMap<String, Arc<Notify>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        MetaHooks {
            app_secret,
            verify_token,
            max_body,
            pages,
            seen: Mutex::default(),
            metrics,
        }
    }

    /// The routes, served wherever the provider webhooks are.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route(PATH, get(handshake).post(deliver))
            .with_state(self)
    }

    fn refuse(&self, status: StatusCode, reason: &str, detail: &str) -> Response {
        self.metrics.webhook_rejected(PROVIDER, reason);
        tracing::warn!(
            provider = PROVIDER,
            reason,
            detail,
            "webhook request refused"
        );
        (status, detail.to_owned()).into_response()
    }
}

#[derive(Deserialize)]
struct Handshake {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

async fn handshake(State(h): State<Arc<MetaHooks>>, Query(q): Query<Handshake>) -> Response {
    let token_ok = q
        .verify_token
        .as_deref()
        .is_some_and(|t| bool::from(t.as_bytes().ct_eq(h.verify_token.expose().as_bytes())));
    if q.mode.as_deref() != Some("subscribe") || !token_ok {
        return h.refuse(
            StatusCode::FORBIDDEN,
            "verify_token",
            "not a subscription with our verify token",
        );
    }
    match q.challenge {
        Some(c)
            if !c.is_empty()
                && c.len() <= MAX_CHALLENGE
                && c.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            tracing::info!(provider = PROVIDER, "webhook subscription verified");
            (StatusCode::OK, c).into_response()
        }
        _ => h.refuse(
            StatusCode::BAD_REQUEST,
            "malformed",
            "no usable hub.challenge",
        ),
    }
}

#[derive(Deserialize)]
struct Delivery {
    object: String,
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    id: String,
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Deserialize)]
struct Change {
    field: String,
    #[serde(default)]
    value: serde_json::Value,
}

/// The signature header's digest, when it is `sha256=` and 64 hex digits.
fn signature(headers: &HeaderMap) -> Option<[u8; 32]> {
    let v = headers.get("x-hub-signature-256")?.to_str().ok()?;
    let hex_digest = v.trim().strip_prefix("sha256=")?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut out).ok()?;
    Some(out)
}

/// A change's key: what it says, so a redelivery has the same one and another change does not.
fn change_key(object: &str, page: &str, change: &Change) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [object, page, &change.field, &change.value.to_string()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

async fn deliver(State(h): State<Arc<MetaHooks>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Some(claimed) = signature(&parts.headers) else {
        return h.refuse(
            StatusCode::UNAUTHORIZED,
            "unsigned",
            "X-Hub-Signature-256 missing or not sha256=<hex>",
        );
    };
    let body = match read_body(&parts.headers, body, h.max_body).await {
        Some(b) => b,
        None => {
            return h.refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                &format!("request body over {} bytes", h.max_body),
            );
        }
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(h.app_secret.expose().as_bytes())
        .expect("HMAC takes any key length");
    mac.update(&body);
    if mac.verify_slice(&claimed).is_err() {
        return h.refuse(
            StatusCode::UNAUTHORIZED,
            "signature",
            "X-Hub-Signature-256 does not match the body",
        );
    }
    let delivery: Delivery = match serde_json::from_slice(&body) {
        Ok(d) => d,
        Err(e) => {
            return h.refuse(
                StatusCode::BAD_REQUEST,
                "malformed",
                &format!("not a webhook delivery: {e}"),
            );
        }
    };
    let (mut accepted, mut duplicates, mut unknown) = (0usize, 0usize, 0usize);
    let now = Instant::now();
    for entry in &delivery.entry {
        let Some(wake) = h.pages.get(&entry.id).filter(|_| delivery.object == "page") else {
            unknown += entry.changes.len();
            continue;
        };
        let mut new = false;
        for change in &entry.changes {
            let key = change_key(&delivery.object, &entry.id, change);
            if h.seen.lock().expect("seen lock").insert(key, now) {
                accepted += 1;
                new = true;
            } else {
                duplicates += 1;
            }
        }
        if new {
            wake.notify_one();
        }
    }
    if accepted > 0 {
        h.metrics.webhook_accepted(PROVIDER, accepted);
    }
    if duplicates > 0 {
        h.metrics.webhook_duplicates(PROVIDER, duplicates);
        tracing::info!(
            provider = PROVIDER,
            duplicates,
            "changes already taken once answered 200 and not read again"
        );
    }
    if unknown > 0 {
        // Meta turns off a webhook that keeps failing: a change about a Page this daemon does
        // not watch is acknowledged, and counted.
        h.metrics.webhook_rejected(PROVIDER, "unknown_page");
        tracing::warn!(provider = PROVIDER, object = %delivery.object, unknown, "changes about no watched Page");
    }
    (StatusCode::OK, "EVENT_RECEIVED").into_response()
}

/// The body, or None over `limit` (a declared length over it is refused unread).
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Option<axum::body::Bytes> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return None;
    }
    axum::body::to_bytes(body, limit).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_keys_expire_and_are_bounded() {
        let mut s = Seen::default();
        let t = Instant::now();
        assert!(s.insert([1; 32], t));
        assert!(!s.insert([1; 32], t));
        assert!(s.insert([1; 32], t + SEEN_FOR + Duration::from_secs(1)));
    }

    #[test]
    fn a_change_is_keyed_by_what_it_says() {
        let c = |v: serde_json::Value| Change {
            field: "feed".into(),
            value: v,
        };
        let add = c(serde_json::json!({"item": "status", "verb": "add", "post_id": "1_2"}));
        let edit = c(serde_json::json!({"item": "status", "verb": "edited", "post_id": "1_2"}));
        assert_eq!(change_key("page", "1", &add), change_key("page", "1", &add));
        assert_ne!(
            change_key("page", "1", &add),
            change_key("page", "1", &edit)
        );
        assert_ne!(change_key("page", "1", &add), change_key("page", "2", &add));
    }

    #[test]
    fn the_signature_header_must_be_sha256_hex() {
        let mut h = HeaderMap::new();
        assert!(signature(&h).is_none());
        h.insert("x-hub-signature-256", "sha1=00".parse().unwrap());
        assert!(signature(&h).is_none());
        h.insert(
            "x-hub-signature-256",
            format!("sha256={}", "ab".repeat(32)).parse().unwrap(),
        );
        assert_eq!(signature(&h), Some([0xab; 32]));
    }
}

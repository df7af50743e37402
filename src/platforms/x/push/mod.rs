//! X push: the webhook X delivers the watched accounts' posts and deletions to, and the
//! subscriptions that make it deliver them.
//!
//! The webhook is registered once by the operator (`POST /2/webhooks` with the URL
//! `general.public_url` followed by [`PATH`]); its id is `[x] webhook_id`. X proves it owns the URL with the CRC challenge
//! (`GET ?crc_token=…`, answered with `sha256=` + base64 of HMAC-SHA256 under the consumer
//! secret) and signs every delivery the same way over the raw body
//! (`x-twitter-webhooks-signature`). A delivery is checked before a byte of it is parsed:
//! unsigned or forged is 401, over [`MAX_BODY`] is 413, and each refusal is counted in
//! `tocsin_webhook_rejected_total{provider="x"}`. The CRC answer is an HMAC of what the caller
//! sends, so only tokens that cannot be a delivery body (no `{`) are answered: otherwise anyone
//! could have tocsin sign a forged delivery for them.
//!
//! Deliveries carry no id of their own to deduplicate on, so each change is keyed by the post
//! id and the change (`create`, `delete`): X's retries of one delivery are answered 200 and
//! counted once (`tocsin_webhook_duplicates_total{provider="x"}`).
//!
//! Two APIs subscribe an account to the webhook (`[x] push`):
//! - the X Activity API (`POST /2/activity/subscriptions`, `post.create` and `post.delete`
//!   filtered on the account's user id, with the app's bearer token). Its deliveries are
//!   `{"data": {event_uuid, filter, event_type, tag, payload, includes}}`, the payload the post
//!   as the API v2 shapes it (`id`, `text`, `author_id`, `created_at`,
//!   `edit_history_tweet_ids`, `entities`, `attachments`; for `post.delete`, the post's `id` and
//!   `author_id`). Of `includes` only `media` is read: X's examples also carry `tweets` and
//!   `users`, the latter shaped differently per event (post.delete wraps each in `{"data"}`).
//!   It documents no edit event: an edit is the poll's to see. X's own example deliveries
//!   are in `tests/fixtures/platforms/x/examples/`;
//! - the Account Activity API (`POST /2/account_activity/webhooks/:id/subscriptions/all`, with
//!   the account's own user token), documented as being deprecated. Its deliveries are
//!   `{"for_user_id", "tweet_create_events": [v1.1 tweets], "tweet_delete_events":
//!   [{"status": {"id", "user_id"}, "timestamp_ms"}]}`; events about the account that it did
//!   not author (mentions, replies to it) are dropped.
//!
//! A pushed post is the same observation the poller makes of it (same id, text with the t.co
//! targets in place, media digests), so detect drops whichever of the two arrives second and
//! the push never raises an edit. Pushes before the account's first poll are dropped: that
//! poll decides what is history. The poll's cursor never moves on a push.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode, Uri, header::CONTENT_LENGTH},
    response::{IntoResponse, Response},
    routing::get,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;
use tokio::{sync::mpsc, time::Instant};

use super::api::{ApiMedia, ApiTweet, Attachments, TweetEntities, UrlEntity, newer, post};
use crate::{
    config::{Account, Config, Secret, XPushApi},
    metrics::Metrics,
    model::ObservationKind,
    platforms::WatchContext,
    watch::{SourceContext, SourceFuture},
};

use deliveries::parse;
use subscriptions::{recheck, subscribe};

/// Where X delivers, under `general.public_url`.
pub const PATH: &str = "/hooks/x";
/// A delivery larger than this is refused unread (413): X batches a few events at most.
pub const MAX_BODY: usize = 256 * 1024;
const SIGNATURE: &str = "x-twitter-webhooks-signature";
const PROVIDER: &str = "x";
/// Changes remembered to recognise X's redeliveries (X retries within minutes).
const REMEMBERED: usize = 8192;
/// Changes waiting for the pipeline; past this a delivery is answered 503 and X retries it.
const QUEUE: usize = 1024;
/// Waits between attempts to subscribe an account X refused, doubling up to a quarter hour.
const RETRY_FIRST: Duration = Duration::from_secs(30);
const RETRY_MAX: Duration = Duration::from_secs(900);
/// The X Activity API's event types tocsin subscribes each account to.
const ACTIVITY_EVENTS: [&str; 2] = ["post.create", "post.delete"];

type HmacSha256 = Hmac<Sha256>;

/// One change X pushed, verified.
#[derive(Debug)]
pub(super) struct Pushed {
    user_id: String,
    change: Change,
    received: Instant,
}

#[derive(Debug)]
enum Change {
    Created(Box<ApiTweet>, HashMap<String, ApiMedia>),
    Deleted { post_id: String, at: DateTime<Utc> },
}

impl Change {
    /// What makes a redelivery recognisable: the post and what happened to it.
    fn key(&self) -> String {
        match self {
            Change::Created(t, _) => format!("{}:create", t.id),
            Change::Deleted { post_id, .. } => format!("{post_id}:delete"),
        }
    }
}

/// The webhook's state: the key, the queue to the watcher, the changes already taken.
struct Hook {
    secret: Secret,
    metrics: Arc<Metrics>,
    tx: mpsc::Sender<Pushed>,
    recent: Mutex<Recent>,
}

/// A bounded set of the latest keys.
#[derive(Default)]
struct Recent {
    keys: HashSet<String>,
    order: VecDeque<String>,
}

impl Recent {
    /// False when `key` is already there.
    fn insert(&mut self, key: String) -> bool {
        if self.keys.contains(&key) {
            return false;
        }
        if self.order.len() >= REMEMBERED
            && let Some(old) = self.order.pop_front()
        {
            self.keys.remove(&old);
        }
        self.keys.insert(key.clone());
        self.order.push_back(key);
        true
    }

    fn forget(&mut self, key: &str) {
        self.keys.remove(key);
        self.order.retain(|k| k != key);
    }
}

/// Push for `accounts` when `[x]` has its keys: the webhook route goes to the hooks listener,
/// and the future returned subscribes the accounts and hands what X pushes to the pipeline.
pub fn start(accounts: &[&Account], cx: &mut WatchContext<'_>) -> Option<SourceFuture> {
    let x = &cx.config.x;
    let (Some(secret), Some(webhook_id)) = (x.consumer_secret.clone(), x.webhook_id.clone()) else {
        return None;
    };
    if accounts.is_empty() {
        return None;
    }
    let (tx, rx) = mpsc::channel(QUEUE);
    let hook = Arc::new(Hook {
        secret,
        metrics: cx.metrics.clone(),
        tx,
        recent: Mutex::new(Recent::default()),
    });
    cx.hook_routes.push(
        Router::new()
            .route(PATH, get(crc).post(deliver))
            .with_state(hook),
    );
    let watched: Vec<Account> = accounts.iter().map(|a| (*a).clone()).collect();
    Some(Box::pin(run(
        watched,
        webhook_id,
        x.push,
        rx,
        cx.source.clone(),
    )))
}

/// `check-config`'s lines: which accounts X pushes, through which API, to which URL.
pub fn describe(config: &Config) -> String {
    let x = &config.x;
    let accounts: Vec<&Account> = config
        .accounts
        .iter()
        .filter(|a| a.platform == crate::config::Platform::X)
        .collect();
    if accounts.is_empty() {
        return String::new();
    }
    let (Some(_), Some(webhook_id)) = (&x.consumer_secret, &x.webhook_id) else {
        return "x push        off: every X account is polled only (set [x] consumer_secret and \
                webhook_id, and general.public_url, to have X push posts and deletions)\n"
            .to_owned();
    };
    let url = config.general.public_url.as_ref().map_or_else(
        || "(general.public_url unset)".to_owned(),
        |u| format!("{}{PATH}", u.as_str().trim_end_matches('/')),
    );
    let (pushed, not): (Vec<&Account>, Vec<&Account>) =
        accounts.into_iter().partition(|a| match x.push {
            XPushApi::Activity => a.token.is_some(),
            XPushApi::AccountActivity => a.write_token.is_some(),
        });
    let names = |list: &[&Account]| {
        list.iter()
            .map(|a| a.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let what = match x.push {
        XPushApi::Activity => {
            "post.create and post.delete subscriptions with the app's bearer token"
        }
        XPushApi::AccountActivity => {
            "subscriptions/all with each account's user token (write_token); X documents this API as being deprecated"
        }
    };
    let mut out = format!(
        "x push        {} account(s) pushed by the {} ({what}) to webhook {webhook_id} at {url} \
         · CRC answers and delivery signatures under [x] consumer_secret · deliveries over {} KiB \
         refused · polling stays as the backstop and for profile fields: {}\n",
        pushed.len(),
        x.push.as_str(),
        MAX_BODY / 1024,
        names(&pushed),
    );
    if !not.is_empty() {
        out.push_str(&format!(
            "x push        polled only, no {} to subscribe with: {}\n",
            match x.push {
                XPushApi::Activity => "token",
                XPushApi::AccountActivity => "write_token",
            },
            names(&not)
        ));
    }
    out
}

/// `sha256=` + base64 of HMAC-SHA256(consumer secret, `message`).
pub fn sign(secret: &str, message: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(message);
    format!("sha256={}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// Checks `header` against the body in constant time.
fn verify(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(sent) = header
        .trim()
        .strip_prefix("sha256=")
        .and_then(|b| STANDARD.decode(b).ok())
    else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    mac.verify_slice(&sent).is_ok()
}

/// A token X could send: short, base64 or URL-safe characters. A delivery body (JSON) never is
/// one, so the answer can never sign a delivery.
fn is_crc_token(token: &str) -> bool {
    (1..=512).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=-_".contains(&b))
}

fn refuse(hook: &Hook, status: StatusCode, reason: &str, detail: &str) -> Response {
    hook.metrics.webhook_rejected(PROVIDER, reason);
    tracing::warn!(
        provider = PROVIDER,
        reason,
        detail,
        "X webhook request refused"
    );
    (status, Json(json!({ "error": detail }))).into_response()
}

/// The CRC challenge: X's proof that this URL holds the consumer secret.
async fn crc(State(hook): State<Arc<Hook>>, uri: Uri) -> Response {
    let token = uri.query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "crc_token")
            .map(|(_, v)| v.into_owned())
    });
    let Some(token) = token.filter(|t| is_crc_token(t)) else {
        return refuse(
            &hook,
            StatusCode::BAD_REQUEST,
            "malformed",
            "a crc_token of base64 characters is required",
        );
    };
    let response_token = sign(hook.secret.expose(), token.as_bytes());
    Json(json!({ "response_token": response_token })).into_response()
}

/// One delivery: signature, then size, then the body, then the changes.
async fn deliver(State(hook): State<Arc<Hook>>, headers: HeaderMap, body: Body) -> Response {
    let Some(signature) = headers.get(SIGNATURE).and_then(|v| v.to_str().ok()) else {
        return refuse(
            &hook,
            StatusCode::UNAUTHORIZED,
            "missing_signature",
            "no x-twitter-webhooks-signature",
        );
    };
    let too_large = || {
        refuse(
            &hook,
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            &format!("request body over {MAX_BODY} bytes"),
        )
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return too_large();
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return too_large();
    };
    if !verify(hook.secret.expose(), &bytes, signature) {
        return refuse(
            &hook,
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "the signature does not match the body under the consumer secret",
        );
    }
    let received = Instant::now();
    let changes = match parse(&bytes) {
        Ok(c) => c,
        Err(e) => {
            return refuse(&hook, StatusCode::BAD_REQUEST, "malformed", &e);
        }
    };
    let (mut accepted, mut duplicates) = (0, 0);
    for (user_id, change) in changes {
        let key = change.key();
        if !hook.recent.lock().expect("recent lock").insert(key.clone()) {
            duplicates += 1;
            continue;
        }
        let pushed = Pushed {
            user_id,
            change,
            received,
        };
        if hook.tx.try_send(pushed).is_err() {
            // Not taken: X's retry must be taken then.
            hook.recent.lock().expect("recent lock").forget(&key);
            return refuse(
                &hook,
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the watcher is not taking changes now; retry",
            );
        }
        accepted += 1;
    }
    hook.metrics.webhook_accepted(PROVIDER, accepted);
    if duplicates > 0 {
        hook.metrics.webhook_duplicates(PROVIDER, duplicates);
        tracing::info!(
            provider = PROVIDER,
            duplicates,
            "changes X delivered again answered 200 and not judged again"
        );
    }
    Json(json!({ "accepted": accepted, "duplicates": duplicates })).into_response()
}

// ---------------------------------------------------------------------------------------------
// The watcher's side.

/// Subscribes the accounts, then hands each pushed change to the pipeline until shutdown.
async fn run(
    accounts: Vec<Account>,
    webhook_id: String,
    api: XPushApi,
    mut rx: mpsc::Receiver<Pushed>,
    ctx: SourceContext,
) {
    let by_id: HashMap<String, &Account> =
        accounts.iter().map(|a| (a.account_id.clone(), a)).collect();
    if let Some(first) = accounts.first() {
        recheck(&ctx.http, &webhook_id, first).await;
    }
    let mut pending: Vec<&Account> = accounts.iter().collect();
    let mut retry = RETRY_FIRST;
    let mut next_attempt = Instant::now();
    loop {
        let attempt = async {
            if pending.is_empty() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep_until(next_attempt).await;
        };
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            () = attempt => {
                pending = subscribe(&ctx.http, api, &webhook_id, pending).await;
                if !pending.is_empty() {
                    next_attempt = Instant::now() + retry;
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
            pushed = rx.recv() => {
                let Some(p) = pushed else { return };
                let Some(account) = by_id.get(&p.user_id) else {
                    tracing::debug!(user = %p.user_id, "X pushed a change of an account not watched");
                    continue;
                };
                if !hand_over(&ctx, account, p).await {
                    return;
                }
            }
        }
    }
}

/// Sends one change as the observation the poller would make. False when the pipeline is gone.
async fn hand_over(ctx: &SourceContext, account: &Account, p: Pushed) -> bool {
    let name = &account.name;
    let origin = ctx.store.cursor(&format!("x:{name}:origin")).ok().flatten();
    let Some(origin) = origin else {
        tracing::info!(account = %name, "X pushed a change before the first poll: that poll reads it");
        return true;
    };
    let kind = match p.change {
        Change::Created(t, media) => {
            let mut post = post(&t, &media, false);
            post.history = !newer(&post.id, &origin);
            tracing::info!(account = %name, post = %t.id, "X pushed a post");
            ObservationKind::Post(post)
        }
        Change::Deleted { post_id, at } => {
            tracing::info!(account = %name, post = %post_id, "X pushed a deletion");
            ObservationKind::PostDeleted {
                post_id,
                deleted_at: at,
            }
        }
    };
    let sent = ctx.emit(name, kind).await;
    tracing::debug!(account = %name, elapsed_ms = p.received.elapsed().as_millis() as u64, "pushed change handed over");
    sent
}

mod deliveries;
mod subscriptions;
#[cfg(test)]
mod tests;

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
// The deliveries.

/// The X Activity API's envelope.
#[derive(Debug, Deserialize)]
struct ActivityDelivery {
    data: ActivityEvent,
}

#[derive(Debug, Deserialize)]
struct ActivityEvent {
    event_type: String,
    filter: ActivityFilter,
    #[serde(default)]
    payload: serde_json::Value,
    #[serde(default)]
    includes: ActivityIncludes,
}

#[derive(Debug, Deserialize)]
struct ActivityFilter {
    user_id: String,
}

#[derive(Debug, Default, Deserialize)]
struct ActivityIncludes {
    #[serde(default)]
    media: Vec<ApiMedia>,
}

/// A v2 post as the Activity API's payload carries it.
#[derive(Debug, Deserialize)]
struct PushedPost {
    id: String,
    /// Absent from a payload that only names the post: then the poll reads it, rather than a
    /// post judged empty here and then "edited" when the poll sees its words.
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    author_id: Option<String>,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    edit_history_tweet_ids: Vec<String>,
    #[serde(default)]
    entities: Option<TweetEntities>,
    #[serde(default)]
    attachments: Option<Attachments>,
    #[serde(default)]
    source: Option<String>,
}

/// The Account Activity API's delivery.
#[derive(Debug, Deserialize)]
struct AccountActivityDelivery {
    for_user_id: String,
    #[serde(default)]
    tweet_create_events: Vec<V1Tweet>,
    #[serde(default)]
    tweet_delete_events: Vec<V1Delete>,
}

#[derive(Debug, Deserialize)]
struct V1Tweet {
    id_str: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    created_at: Option<String>,
    user: V1User,
    #[serde(default)]
    entities: V1Entities,
    #[serde(default)]
    extended_entities: Option<V1Entities>,
    #[serde(default)]
    extended_tweet: Option<V1Extended>,
    #[serde(default)]
    edit_history: Option<V1EditHistory>,
    #[serde(default)]
    source: Option<String>,
}

#[derive(Debug, Deserialize)]
struct V1User {
    id_str: String,
}

#[derive(Debug, Default, Deserialize)]
struct V1Entities {
    #[serde(default)]
    urls: Vec<UrlEntity>,
    #[serde(default)]
    media: Vec<V1Media>,
}

#[derive(Debug, Deserialize)]
struct V1Media {
    id_str: String,
    url: String,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    media_url_https: Option<String>,
}

#[derive(Debug, Deserialize)]
struct V1Extended {
    full_text: String,
    #[serde(default)]
    entities: Option<V1Entities>,
    #[serde(default)]
    extended_entities: Option<V1Entities>,
}

#[derive(Debug, Deserialize)]
struct V1EditHistory {
    #[serde(default)]
    edit_tweet_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct V1Delete {
    status: V1DeletedStatus,
    #[serde(default)]
    timestamp_ms: Option<String>,
}

#[derive(Debug, Deserialize)]
struct V1DeletedStatus {
    id: String,
    user_id: String,
}

/// The changes of one verified delivery, by user id.
fn parse(body: &[u8]) -> Result<Vec<(String, Change)>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    if value.get("for_user_id").is_some() {
        let d: AccountActivityDelivery =
            serde_json::from_value(value).map_err(|e| format!("account activity: {e}"))?;
        return Ok(account_activity(d));
    }
    let d: ActivityDelivery =
        serde_json::from_value(value).map_err(|e| format!("activity event: {e}"))?;
    activity(d.data)
}

fn activity(e: ActivityEvent) -> Result<Vec<(String, Change)>, String> {
    let user = e.filter.user_id;
    let change = match e.event_type.as_str() {
        "post.create" => {
            let p: PushedPost = serde_json::from_value(e.payload)
                .map_err(|err| format!("post.create payload: {err}"))?;
            if p.author_id.as_deref().is_some_and(|a| a != user) {
                return Ok(Vec::new());
            }
            let Some(text) = p.text else {
                tracing::warn!(post = %p.id, "an X post.create without the post's text: left to the poll");
                return Ok(Vec::new());
            };
            let media = e
                .includes
                .media
                .into_iter()
                .map(|m| (m.media_key.clone(), m))
                .collect();
            Change::Created(
                Box::new(ApiTweet {
                    edit_history_tweet_ids: if p.edit_history_tweet_ids.is_empty() {
                        vec![p.id.clone()]
                    } else {
                        p.edit_history_tweet_ids
                    },
                    id: p.id,
                    text,
                    created_at: p.created_at.unwrap_or_else(Utc::now),
                    entities: p.entities,
                    attachments: p.attachments,
                    source: p.source,
                }),
                media,
            )
        }
        "post.delete" => {
            let id = e
                .payload
                .get("id")
                .and_then(|v| v.as_str())
                .ok_or("post.delete payload without an id")?;
            Change::Deleted {
                post_id: id.to_owned(),
                at: Utc::now(),
            }
        }
        // Other events of a subscription tocsin did not make: nothing to judge.
        _ => return Ok(Vec::new()),
    };
    Ok(vec![(user, change)])
}

fn account_activity(d: AccountActivityDelivery) -> Vec<(String, Change)> {
    let user = d.for_user_id;
    let mut out = Vec::new();
    for t in d.tweet_create_events {
        if t.user.id_str != user {
            continue;
        }
        let (tweet, media) = v1_tweet(t);
        out.push((user.clone(), Change::Created(Box::new(tweet), media)));
    }
    for del in d.tweet_delete_events {
        if del.status.user_id != user {
            continue;
        }
        let at = del
            .timestamp_ms
            .and_then(|ms| ms.parse::<i64>().ok())
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
            .unwrap_or_else(Utc::now);
        out.push((
            user.clone(),
            Change::Deleted {
                post_id: del.status.id,
                at,
            },
        ));
    }
    out
}

/// A v1.1 tweet in the v2 shape the poller reads: the full text, its t.co links, its media
/// as keys (the media's own t.co link marked as the attachment's, as v2 marks it).
fn v1_tweet(t: V1Tweet) -> (ApiTweet, HashMap<String, ApiMedia>) {
    let (text, entities, extended) = match t.extended_tweet {
        Some(x) => (
            x.full_text,
            x.entities.unwrap_or_default(),
            x.extended_entities,
        ),
        None => (t.text, t.entities, t.extended_entities),
    };
    let media_list = extended.map(|e| e.media).unwrap_or(entities.media);
    let mut urls = entities.urls;
    let mut media = HashMap::new();
    let mut keys = Vec::new();
    for m in media_list {
        if !urls.iter().any(|u| u.url == m.url) {
            urls.push(UrlEntity {
                url: m.url.clone(),
                expanded_url: None,
                media_key: Some(m.id_str.clone()),
            });
        }
        keys.push(m.id_str.clone());
        media.insert(
            m.id_str.clone(),
            ApiMedia {
                media_key: m.id_str,
                kind: m.kind,
                url: m.media_url_https,
                preview_image_url: None,
            },
        );
    }
    let created_at = t
        .created_at
        .and_then(|c| DateTime::parse_from_str(&c, "%a %b %d %H:%M:%S %z %Y").ok())
        .map_or_else(Utc::now, |d| d.with_timezone(&Utc));
    let history = t
        .edit_history
        .map(|h| h.edit_tweet_ids)
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| vec![t.id_str.clone()]);
    let tweet = ApiTweet {
        id: t.id_str,
        text,
        created_at,
        edit_history_tweet_ids: history,
        entities: Some(TweetEntities { urls }),
        attachments: (!keys.is_empty()).then_some(Attachments { media_keys: keys }),
        source: t.source.map(|s| client_name(&s)),
    };
    (tweet, media)
}

/// v1.1 names the client as an HTML link (`<a href="…">Name</a>`); v2 as the name.
fn client_name(source: &str) -> String {
    match (source.find('>'), source.rfind("</a>")) {
        (Some(start), Some(end)) if start < end => source[start + 1..end].to_owned(),
        _ => source.to_owned(),
    }
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

/// Asks X to run the CRC check on the webhook now (`PUT /2/webhooks/:id`): X disables a
/// webhook that failed one (tocsin down, say) and delivers nothing to it until one passes.
async fn recheck(http: &reqwest::Client, webhook_id: &str, account: &Account) {
    let Some(token) = &account.token else {
        return;
    };
    let Ok(url) = account.base_url.join(&format!("2/webhooks/{webhook_id}")) else {
        return;
    };
    let sent = http.put(url).bearer_auth(token.expose()).send().await;
    match answer::<serde_json::Value>(sent).await {
        Ok(_) => tracing::info!(webhook_id, "X checked the webhook (CRC) and delivers to it"),
        Err(e) => tracing::error!(
            webhook_id,
            error = %e,
            "X's CRC check of the webhook failed: X may deliver nothing (is general.public_url + /hooks/x reachable?)"
        ),
    }
}

/// Subscribes each account; the ones X did not accept, to try again.
async fn subscribe<'a>(
    http: &reqwest::Client,
    api: XPushApi,
    webhook_id: &str,
    accounts: Vec<&'a Account>,
) -> Vec<&'a Account> {
    let mut failed = Vec::new();
    for account in accounts {
        let result = match api {
            XPushApi::Activity => subscribe_activity(http, webhook_id, account).await,
            XPushApi::AccountActivity => {
                subscribe_account_activity(http, webhook_id, account).await
            }
        };
        match result {
            Ok(()) => tracing::info!(
                account = %account.name,
                api = api.as_str(),
                webhook_id,
                "X pushes this account's posts and deletions"
            ),
            Err(e) => {
                tracing::error!(account = %account.name, api = api.as_str(), error = %e, "X refused to push this account: polling only until it accepts");
                failed.push(account);
            }
        }
    }
    failed
}

#[derive(Debug, Deserialize)]
struct SubscriptionList {
    #[serde(default)]
    data: Vec<Subscription>,
    #[serde(default)]
    meta: ListMeta,
}

#[derive(Debug, Default, Deserialize)]
struct ListMeta {
    #[serde(default)]
    next_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Subscription {
    event_type: String,
    #[serde(default)]
    filter: Option<SubscriptionFilter>,
    #[serde(default)]
    webhook_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SubscriptionFilter {
    #[serde(default)]
    user_id: Option<String>,
}

/// `post.create` and `post.delete` for the account on the webhook, unless X has them already.
async fn subscribe_activity(
    http: &reqwest::Client,
    webhook_id: &str,
    account: &Account,
) -> Result<(), String> {
    let token = account
        .token
        .as_ref()
        .ok_or("no accounts[].token (the app's bearer token)")?;
    let url = account
        .base_url
        .join("2/activity/subscriptions")
        .map_err(|e| e.to_string())?;
    let mut have = HashSet::new();
    let mut page: Option<String> = None;
    loop {
        let mut req = http
            .get(url.clone())
            .bearer_auth(token.expose())
            .query(&[("max_results", "1000")]);
        if let Some(p) = &page {
            req = req.query(&[("pagination_token", p)]);
        }
        let list: SubscriptionList = answer(req.send().await).await?;
        for s in list.data {
            let user = s.filter.and_then(|f| f.user_id);
            if user.as_deref() == Some(account.account_id.as_str())
                && s.webhook_id.as_deref() == Some(webhook_id)
            {
                have.insert(s.event_type);
            }
        }
        match list.meta.next_token {
            Some(t) => page = Some(t),
            None => break,
        }
    }
    for event in ACTIVITY_EVENTS.iter().filter(|e| !have.contains(**e)) {
        let body = json!({
            "event_type": event,
            "filter": { "user_id": account.account_id },
            "webhook_id": webhook_id,
            "tag": format!("tocsin {}", account.name),
        });
        let req = http
            .post(url.clone())
            .bearer_auth(token.expose())
            .json(&body);
        answer::<serde_json::Value>(req.send().await).await?;
    }
    Ok(())
}

/// The account's subscription to the webhook, made with its own user token.
async fn subscribe_account_activity(
    http: &reqwest::Client,
    webhook_id: &str,
    account: &Account,
) -> Result<(), String> {
    let token = account.write_token.as_ref().ok_or(
        "no accounts[].write_token: the Account Activity API subscribes with the account's user token",
    )?;
    let url = account
        .base_url
        .join(&format!(
            "2/account_activity/webhooks/{webhook_id}/subscriptions/all"
        ))
        .map_err(|e| e.to_string())?;
    let resp = http
        .post(url)
        .bearer_auth(token.expose())
        .json(&json!({}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    match resp.status() {
        // Already subscribed.
        StatusCode::CONFLICT => Ok(()),
        s if s.is_success() => Ok(()),
        s => Err(format!(
            "{s}: {}",
            crate::model::cut(&resp.text().await.unwrap_or_default(), 200)
        )),
    }
}

async fn answer<T: serde::de::DeserializeOwned>(
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Result<T, String> {
    let resp = sent.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(format!("{status}: {}", crate::model::cut(&body, 200)));
    }
    serde_json::from_str(&body).map_err(|e| format!("{e}: {}", crate::model::cut(&body, 200)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crc_answer_is_xs_documented_hmac_and_never_signs_a_body() {
        // HMAC-SHA256("secret", "token") in base64, as `openssl dgst -sha256 -hmac secret
        // -binary | base64` prints it.
        assert_eq!(
            sign("secret", b"token"),
            "sha256=6UERDj0r/oJiHw4+FDRzDXMF0QbF9oyHFl0LJ6RhGko="
        );
        let body = br#"{"for_user_id":"1"}"#;
        assert!(verify("secret", body, &sign("secret", body)));
        assert!(!verify("other", body, &sign("secret", body)));
        assert!(!verify("secret", body, "sha256=AAAA"));
        assert!(!is_crc_token(std::str::from_utf8(body).unwrap()));
        assert!(is_crc_token("Zm9vYmFy-_+/="));
    }

    #[test]
    fn an_activity_post_without_its_text_is_left_to_the_poll() {
        let event = |payload: serde_json::Value| {
            serde_json::from_value::<ActivityDelivery>(json!({"data": {
                "event_uuid": "1", "filter": {"user_id": "783214"}, "event_type": "post.create",
                "payload": payload}}))
            .unwrap()
            .data
        };
        assert!(
            activity(event(json!({"id": "1800000000000000009"})))
                .unwrap()
                .is_empty()
        );
        let by_other = json!({"id": "1800000000000000009", "text": "hi", "author_id": "5"});
        assert!(activity(event(by_other)).unwrap().is_empty());
        let own = json!({"id": "1800000000000000009", "text": "hi", "author_id": "783214"});
        let changes = activity(event(own)).unwrap();
        assert_eq!(changes[0].1.key(), "1800000000000000009:create");
    }

    /// X's own example deliveries (`tests/fixtures/platforms/x/examples/`, sources in
    /// `tests/fixtures/platforms/SOURCE.md`), through the parser a verified body goes to.
    fn documented(name: &str) -> Vec<(String, Change)> {
        let path = format!(
            "{}/tests/fixtures/platforms/x/examples/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        parse(&body).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn the_documented_activity_post_create_reads_as_the_authors_post() {
        let changes = documented("activity-post-create.json");
        assert_eq!(changes.len(), 1);
        let (user, Change::Created(t, media)) = &changes[0] else {
            panic!("a post: {changes:?}")
        };
        // The payload's `author_id` is the filtered user: the post is the account's own.
        assert_eq!(user, "1111111111111111111");
        assert_eq!(t.id, "2080761390344937796");
        assert_eq!(
            t.edit_history_tweet_ids,
            vec!["2080761390344937796".to_owned()]
        );
        let p = post(t, media, false);
        assert_eq!(p.id, "2080761390344937796");
        assert_eq!(p.content.text, "Hello from the Activity API");
        assert_eq!(p.created_at.to_rfc3339(), "2026-07-24T21:05:48+00:00");
        assert_eq!(p.edited_at, None);
        assert!(p.content.links.is_empty() && p.content.media.is_empty());
    }

    #[test]
    fn the_documented_activity_post_delete_reads_as_the_deletion_of_the_authors_post() {
        // Its `includes.users[]` wrap each user in `{"data": …}`, unlike post.create's: the
        // parser reads neither.
        let changes = documented("activity-post-delete.json");
        assert_eq!(changes.len(), 1);
        let (user, Change::Deleted { post_id, .. }) = &changes[0] else {
            panic!("a deletion: {changes:?}")
        };
        assert_eq!(user, "1111111111111111111");
        assert_eq!(post_id, "2080761269309813134");
        assert_eq!(changes[0].1.key(), "2080761269309813134:delete");
    }

    #[test]
    fn the_documented_account_activity_deliveries_read_as_a_post_and_a_deletion() {
        let created = documented("account-activity-tweet-create-longform.json");
        assert_eq!(created.len(), 1);
        let (user, Change::Created(t, media)) = &created[0] else {
            panic!("a post: {created:?}")
        };
        assert_eq!(user, "1603419180975409153");
        let p = post(t, media, false);
        assert_eq!(p.id, "1924465506158878979");
        // A longform post: the whole text from `extended_tweet`, not the truncated `text`.
        assert!(
            p.content.text.starts_with("The Antikythera Mechanism")
                && p.content
                    .text
                    .ends_with("off the Greek island of Antikythera..."),
            "{:?}",
            p.content.text
        );
        assert!(!p.content.text.contains("https://t.co/"));
        assert_eq!(p.created_at.to_rfc3339(), "2025-05-19T14:01:46+00:00");

        let deleted = documented("account-activity-tweet-delete.json");
        assert_eq!(deleted.len(), 1);
        let (user, Change::Deleted { post_id, at }) = &deleted[0] else {
            panic!("a deletion: {deleted:?}")
        };
        assert_eq!(user, "930524282358325248");
        assert_eq!(post_id, "1045405559317569537");
        assert_eq!(at.timestamp_millis(), 1432228155593);
    }

    #[test]
    fn a_v1_tweet_reads_as_the_v2_post_the_poller_sees() {
        let d: AccountActivityDelivery = serde_json::from_value(json!({
            "for_user_id": "783214",
            "tweet_create_events": [{
                "id_str": "1800000000000000009",
                "created_at": "Wed Oct 10 20:19:24 +0000 2018",
                "text": "Look https://t.co/A https://t.co/P",
                "source": "<a href=\"https://x.com\" rel=\"nofollow\">Twitter Web App</a>",
                "user": {"id_str": "783214"},
                "entities": {"urls": [{"url": "https://t.co/A", "expanded_url": "https://evil.example/x"}],
                    "media": [{"id_str": "3_9", "url": "https://t.co/P", "type": "photo",
                        "media_url_https": "https://pbs.twimg.com/media/a.jpg"}]}
            }, {
                "id_str": "1800000000000000010", "text": "@examplecorp hi",
                "user": {"id_str": "5"}
            }],
            "tweet_delete_events": [{"status": {"id": "1800000000000000001", "user_id": "783214"},
                "timestamp_ms": "1539202764000"}]
        }))
        .unwrap();
        let changes = account_activity(d);
        assert_eq!(changes.len(), 2, "the mention by another user is dropped");
        let Change::Created(t, media) = &changes[0].1 else {
            panic!("a post")
        };
        let p = post(t, media, false);
        assert_eq!(p.content.text, "Look https://evil.example/x");
        assert_eq!(p.content.links, vec!["https://evil.example/x".to_owned()]);
        assert_eq!(p.content.media.len(), 1);
        assert!(p.content.media[0].starts_with("photo:url:"));
        assert_eq!(p.client.as_deref(), Some("Twitter Web App"));
        assert_eq!(p.created_at.timestamp(), 1539202764);
        assert_eq!(changes[1].1.key(), "1800000000000000001:delete");
    }
}

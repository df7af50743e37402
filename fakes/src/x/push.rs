//! X's webhooks, as the fake plays them: registration (`POST /2/webhooks`, `GET /2/webhooks`,
//! `PUT /2/webhooks/:id`), each checked with the CRC challenge (`GET url?crc_token=…`, the
//! answer's `response_token` must be `sha256=` + base64 HMAC-SHA256 of the token under the
//! consumer secret); X Activity API subscriptions (`GET`/`POST /2/activity/subscriptions`,
//! the app's bearer token); Account Activity API subscriptions
//! (`POST /2/account_activity/webhooks/:id/subscriptions/all`, the user's own token); and the
//! signed deliveries (`x-twitter-webhooks-signature` over the raw body) of each subscribed
//! user's posts and deletions.
//!
//! Shapes from X's documentation (docs.x.com: x-api/webhooks, x-api/activity/introduction and
//! event-payloads, x-api/account-activity): the Activity API's envelope `{"data": {event_uuid,
//! filter, event_type, tag, payload, includes}}` (post.create's payload the post in its API v2
//! shape, post.delete's `{id, author_id}`; `includes` as X's example deliveries in
//! `tests/fixtures/platforms/x/examples/` carry them), and the Account Activity API's `for_user_id` with `tweet_create_events` (v1.1
//! tweets) and `tweet_delete_events` (`{"status": {"id", "user_id"}, "timestamp_ms"}`).
//! Webhook URLs must be on loopback: the fake calls no other address.

use std::net::IpAddr;

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::*;

/// `sha256=` + base64 of HMAC-SHA256(`secret`, `message`): X's CRC answer and delivery
/// signature.
pub fn signature(secret: &str, message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(message);
    format!("sha256={}", STANDARD.encode(mac.finalize().into_bytes()))
}

pub(super) struct Webhook {
    pub(super) id: String,
    pub(super) url: url::Url,
    pub(super) valid: bool,
    pub(super) created_at: DateTime<Utc>,
}

pub(super) struct ActivitySub {
    pub(super) id: String,
    pub(super) event_type: String,
    pub(super) user_id: String,
    pub(super) webhook_id: Option<String>,
    pub(super) tag: Option<String>,
}

/// One delivery X made (or a test made through [`FakeX::deliver_raw`]).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub body: String,
    pub signature: Option<String>,
    /// When it was sent.
    pub at: Instant,
    /// The webhook's answer; 0 while in flight or when the connection failed.
    pub status: u16,
}

/// What a push delivery says happened.
pub(super) enum Event<'a> {
    Created(&'a Tweet),
    Deleted { id: u64, author: &'a str },
}

fn loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// The CRC challenge X sends to `url`: true when the answer proves the consumer secret.
async fn crc(url: &url::Url, secret: &str, token: &str) -> bool {
    let mut url = url.clone();
    url.query_pairs_mut().append_pair("crc_token", token);
    let Ok(resp) = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(3))
        .send()
        .await
    else {
        return false;
    };
    if !resp.status().is_success() {
        return false;
    }
    let Ok(body) = resp.json::<Value>().await else {
        return false;
    };
    body["response_token"].as_str() == Some(signature(secret, token.as_bytes()).as_str())
}

/// `POST /2/webhooks` and `PUT /2/webhooks/:id`: a CRC check, outside the fake's lock.
pub(super) async fn register(
    shared: &Arc<Shared>,
    method: &Method,
    segs: &[&str],
    body: &[u8],
) -> (StatusCode, Value) {
    let (secret, token) = {
        let mut inner = shared.inner.lock().expect("fake X lock");
        inner.next_crc += 1;
        (
            inner.consumer_secret.clone(),
            format!("Y3JjLXRva2Vu{}", inner.next_crc),
        )
    };
    let Some(secret) = secret else {
        return (
            StatusCode::FORBIDDEN,
            json!({"title": "Forbidden", "detail": "the app has no webhooks access", "status": 403}),
        );
    };
    let url = if method == Method::POST {
        let url = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["url"].as_str().map(str::to_owned))
            .and_then(|u| url::Url::parse(&u).ok());
        match url {
            Some(u) if loopback(&u) => u,
            _ => return invalid("url", &String::from_utf8_lossy(body)),
        }
    } else {
        let inner = shared.inner.lock().expect("fake X lock");
        match inner.webhooks.iter().find(|w| w.id == segs[2]) {
            Some(w) => w.url.clone(),
            None => {
                return (
                    StatusCode::NOT_FOUND,
                    json!({"title": "Not Found Error", "detail": "webhook not found", "status": 404}),
                );
            }
        }
    };
    let valid = crc(&url, &secret, &token).await;
    let mut inner = shared.inner.lock().expect("fake X lock");
    if method == Method::PUT {
        if let Some(w) = inner.webhooks.iter_mut().find(|w| w.id == segs[2]) {
            w.valid = valid;
        }
        return if valid {
            (StatusCode::OK, json!({"data": {"valid": true}}))
        } else {
            crc_failed()
        };
    }
    if !valid {
        return crc_failed();
    }
    let id = inner.next_id().to_string();
    let created_at = Utc::now();
    inner.webhooks.push(Webhook {
        id: id.clone(),
        url: url.clone(),
        valid: true,
        created_at,
    });
    (
        StatusCode::OK,
        json!({"data": {"id": id, "url": url.as_str(), "valid": true,
            "created_at": created_at.to_rfc3339_opts(SecondsFormat::Millis, true)}}),
    )
}

fn crc_failed() -> (StatusCode, Value) {
    (
        StatusCode::BAD_REQUEST,
        json!({"title": "Invalid Request", "detail": "CrcValidationFailed: the webhook did not answer the CRC challenge",
            "type": "https://api.twitter.com/2/problems/invalid-request", "status": 400}),
    )
}

/// The webhook, subscription and delivery endpoints that need no network call.
pub(super) fn route(
    inner: &mut Inner,
    method: &Method,
    endpoint: XEndpoint,
    segs: &[&str],
    body: &[u8],
    bearer: &str,
) -> (StatusCode, Value) {
    match endpoint {
        XEndpoint::AccountActivitySubscribe => {
            // The user's own token: the subscription is the user's consent.
            let Some(user) = inner
                .users
                .values()
                .find(|u| u.write_token.as_deref() == Some(bearer))
                .map(|u| u.id.clone())
            else {
                return (StatusCode::UNAUTHORIZED, problem(StatusCode::UNAUTHORIZED));
            };
            let webhook = segs[3];
            if !inner.webhooks.iter().any(|w| w.id == webhook) {
                return (
                    StatusCode::NOT_FOUND,
                    json!({"title": "Not Found Error", "detail": "webhook not found", "status": 404}),
                );
            }
            if !inner.aaa_subs.insert((webhook.to_owned(), user)) {
                return (
                    StatusCode::CONFLICT,
                    json!({"title": "DuplicateSubscriptionFailed", "detail": "already subscribed", "status": 409}),
                );
            }
            (StatusCode::OK, json!({"data": {"subscribed": true}}))
        }
        _ if bearer != inner.bearer => {
            (StatusCode::UNAUTHORIZED, problem(StatusCode::UNAUTHORIZED))
        }
        XEndpoint::Webhooks => {
            let data: Vec<Value> = inner
                .webhooks
                .iter()
                .map(|w| {
                    json!({"id": w.id, "url": w.url.as_str(), "valid": w.valid,
                        "created_at": w.created_at.to_rfc3339_opts(SecondsFormat::Millis, true)})
                })
                .collect();
            (
                StatusCode::OK,
                json!({"data": data, "meta": {"result_count": inner.webhooks.len()}}),
            )
        }
        XEndpoint::ActivitySubscriptions if method == Method::GET => {
            let data: Vec<Value> = inner
                .activity_subs
                .iter()
                .map(|s| {
                    let mut v = json!({"subscription_id": s.id, "event_type": s.event_type,
                        "filter": {"user_id": s.user_id}, "created_at": "2026-01-01T00:00:00Z",
                        "updated_at": "2026-01-01T00:00:00Z"});
                    if let Some(w) = &s.webhook_id {
                        v["webhook_id"] = json!(w);
                    }
                    if let Some(t) = &s.tag {
                        v["tag"] = json!(t);
                    }
                    v
                })
                .collect();
            let total = data.len();
            (
                StatusCode::OK,
                json!({"data": data, "meta": {"total_subscriptions": total}}),
            )
        }
        XEndpoint::ActivitySubscriptions => {
            let Ok(req) = serde_json::from_slice::<Value>(body) else {
                return invalid("body", &String::from_utf8_lossy(body));
            };
            let event_type = req["event_type"].as_str().unwrap_or_default().to_owned();
            if !["post.create", "post.delete", "profile.update.bio"].contains(&event_type.as_str())
            {
                return invalid("event_type", &event_type);
            }
            let Some(user_id) = req["filter"]["user_id"].as_str().map(str::to_owned) else {
                return invalid("filter", &req["filter"].to_string());
            };
            let webhook_id = req["webhook_id"].as_str().map(str::to_owned);
            if let Some(w) = &webhook_id
                && !inner.webhooks.iter().any(|h| &h.id == w)
            {
                return invalid("webhook_id", w);
            }
            if inner.activity_subs.iter().any(|s| {
                s.event_type == event_type && s.user_id == user_id && s.webhook_id == webhook_id
            }) {
                return (
                    StatusCode::CONFLICT,
                    json!({"title": "Conflict", "detail": "DuplicateSubscription", "status": 409}),
                );
            }
            let id = inner.next_id().to_string();
            let tag = req["tag"].as_str().map(str::to_owned);
            inner.activity_subs.push(ActivitySub {
                id: id.clone(),
                event_type: event_type.clone(),
                user_id: user_id.clone(),
                webhook_id: webhook_id.clone(),
                tag: tag.clone(),
            });
            let total = inner.activity_subs.len();
            (
                StatusCode::OK,
                json!({"data": {"subscription": {"subscription_id": id, "event_type": event_type,
                    "filter": {"user_id": user_id}, "webhook_id": webhook_id, "tag": tag},
                    "total_subscriptions_for_instance_id": total}}),
            )
        }
        _ => (StatusCode::NOT_FOUND, problem(StatusCode::NOT_FOUND)),
    }
}

impl Inner {
    /// The signed deliveries `event` makes: one per subscription on a valid webhook.
    pub(super) fn deliveries(&self, event: Event<'_>) -> Vec<(url::Url, String, String)> {
        let Some(secret) = self.consumer_secret.clone() else {
            return Vec::new();
        };
        let (author, event_type) = match &event {
            Event::Created(t) => (t.author.as_str(), "post.create"),
            Event::Deleted { author, .. } => (*author, "post.delete"),
        };
        let mut bodies: Vec<(url::Url, String)> = Vec::new();
        for s in &self.activity_subs {
            let Some(hook) = self
                .webhooks
                .iter()
                .find(|w| w.valid && Some(&w.id) == s.webhook_id.as_ref())
            else {
                continue;
            };
            if s.user_id != author || s.event_type != event_type {
                continue;
            }
            // `includes` as X's examples carry them: post.create the post again under `tweets`
            // and its author under `users`; post.delete the author wrapped in `{"data": …}`.
            let author_json = self.users.get(author).map(user_json);
            let (payload, includes) = match &event {
                Event::Created(t) => {
                    let (v, media) = v2(t);
                    let mut includes = json!({ "tweets": [v.clone()] });
                    if let Some(u) = author_json {
                        includes["users"] = json!([u]);
                    }
                    if !media.is_empty() {
                        includes["media"] = json!(media);
                    }
                    (v, includes)
                }
                Event::Deleted { id, author } => {
                    let users: Vec<Value> = author_json
                        .into_iter()
                        .map(|u| json!({ "data": u }))
                        .collect();
                    (
                        json!({"id": id.to_string(), "author_id": author}),
                        json!({ "users": users }),
                    )
                }
            };
            let mut data = json!({
                "event_uuid": (self.next_id + 7).to_string(),
                "filter": {"user_id": s.user_id},
                "event_type": event_type,
                "payload": payload,
                "includes": includes,
            });
            if let Some(tag) = &s.tag {
                data["tag"] = json!(tag);
            }
            bodies.push((hook.url.clone(), json!({ "data": data }).to_string()));
        }
        for (webhook, user) in &self.aaa_subs {
            let Some(hook) = self.webhooks.iter().find(|w| w.valid && &w.id == webhook) else {
                continue;
            };
            if user != author {
                continue;
            }
            let body = match &event {
                Event::Created(t) => {
                    json!({"for_user_id": user, "tweet_create_events": [v1(t, &self.users)]})
                }
                Event::Deleted { id, author } => json!({"for_user_id": user,
                    "tweet_delete_events": [{"status": {"id": id.to_string(), "user_id": author},
                    "timestamp_ms": Utc::now().timestamp_millis().to_string()}]}),
            };
            bodies.push((hook.url.clone(), body.to_string()));
        }
        bodies
            .into_iter()
            .map(|(url, body)| {
                let sig = signature(&secret, body.as_bytes());
                (url, body, sig)
            })
            .collect()
    }
}

/// The post as the API v2 shapes it, with its media objects.
fn v2(t: &Tweet) -> (Value, Vec<Value>) {
    let mut v = json!({
        "id": t.id.to_string(),
        "text": t.text,
        "author_id": t.author,
        "created_at": t.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "edit_history_tweet_ids": t.history,
    });
    if !t.urls.is_empty() {
        v["entities"] = json!({ "urls": t.urls });
    }
    let mut media = Vec::new();
    if !t.media.is_empty() {
        v["attachments"] =
            json!({ "media_keys": t.media.iter().map(|(k, _)| k).collect::<Vec<_>>() });
        for (k, url) in &t.media {
            media.push(json!({ "media_key": k, "type": "photo", "url": url }));
        }
    }
    (v, media)
}

/// The post as v1.1 shapes it: the attachment's t.co link under `entities.media`.
fn v1(t: &Tweet, users: &BTreeMap<String, User>) -> Value {
    let urls: Vec<&Value> = t
        .urls
        .iter()
        .filter(|u| u.get("media_key").is_none())
        .collect();
    let media_link = t.urls.iter().find(|u| u.get("media_key").is_some());
    let media: Vec<Value> = t
        .media
        .iter()
        .map(|(k, url)| {
            json!({"id_str": k, "type": "photo", "media_url_https": url,
                "url": media_link.map(|m| m["url"].clone()).unwrap_or_default(),
                "expanded_url": media_link.map(|m| m["expanded_url"].clone()).unwrap_or_default()})
        })
        .collect();
    let screen_name = users
        .get(&t.author)
        .map(|u| u.username.clone())
        .unwrap_or_default();
    let mut v = json!({
        "created_at": t.created_at.format("%a %b %d %H:%M:%S +0000 %Y").to_string(),
        "id": t.id,
        "id_str": t.id.to_string(),
        "text": t.text,
        "truncated": false,
        "user": {"id": t.author.parse::<u64>().unwrap_or_default(), "id_str": t.author, "screen_name": screen_name},
        "entities": {"hashtags": [], "urls": urls, "user_mentions": [], "symbols": []},
        "edit_history": {"initial_tweet_id": t.history[0], "edit_tweet_ids": t.history},
    });
    if !media.is_empty() {
        v["entities"]["media"] = json!(media);
        v["extended_entities"] = json!({ "media": media });
    }
    v
}

impl FakeX {
    /// The consumer secret of the app: enables webhooks, keys the CRC and the signatures.
    pub fn set_consumer_secret(&self, secret: &str) {
        self.lock().consumer_secret = Some(secret.to_owned());
    }

    /// Registers a webhook as the operator does (`POST /2/webhooks`, with the CRC check
    /// against it). The answer's status and body.
    pub async fn register_webhook(&self, url: &str) -> (u16, Value) {
        let bearer = self.lock().bearer.clone();
        let resp = reqwest::Client::new()
            .post(self.url().join("2/webhooks").expect("path"))
            .bearer_auth(bearer)
            .json(&json!({ "url": url }))
            .send()
            .await
            .expect("the fake answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or_default())
    }

    /// A webhook registered at `url` before this fake started (as an operator registers it
    /// before configuring tocsin): not valid until a CRC check (`PUT /2/webhooks/:id`) passes.
    /// Its id.
    pub fn add_webhook(&self, url: &str) -> String {
        let url = url::Url::parse(url).expect("a webhook URL");
        assert!(loopback(&url), "the fake calls loopback only");
        let mut inner = self.lock();
        let id = inner.next_id().to_string();
        inner.webhooks.push(Webhook {
            id: id.clone(),
            url,
            valid: false,
            created_at: Utc::now(),
        });
        id
    }

    /// Whether the webhook passed its last CRC check.
    pub fn webhook_valid(&self, id: &str) -> bool {
        self.lock().webhooks.iter().any(|w| w.id == id && w.valid)
    }

    /// The Activity API subscriptions: (event type, user id, webhook id).
    pub fn activity_subscriptions(&self) -> Vec<(String, String, Option<String>)> {
        self.lock()
            .activity_subs
            .iter()
            .map(|s| {
                (
                    s.event_type.clone(),
                    s.user_id.clone(),
                    s.webhook_id.clone(),
                )
            })
            .collect()
    }

    /// The Account Activity API subscriptions: (webhook id, user id).
    pub fn account_activity_subscriptions(&self) -> Vec<(String, String)> {
        self.lock().aaa_subs.iter().cloned().collect()
    }

    /// Deletes a post as its author does, delivering the deletion to subscribed webhooks.
    pub fn delete_by_author(&self, post: &str) {
        let id: u64 = post.parse().expect("a post id");
        let deliveries = {
            let mut inner = self.lock();
            let Some(t) = inner.tweets.get_mut(&id) else {
                return;
            };
            t.deleted = true;
            t.gone = true;
            let author = t.author.clone();
            inner.deliveries(Event::Deleted {
                id,
                author: &author,
            })
        };
        self.send(deliveries);
    }

    /// Every delivery so far, oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.lock().delivered.clone()
    }

    /// Sends the last delivery again, as X retries one it thinks failed. Its answer.
    pub async fn redeliver_last(&self) -> u16 {
        let last = self.lock().last_sent.clone().expect("a delivery to repeat");
        post_delivery(&self.shared, last.0, last.1, Some(last.2)).await
    }

    /// Posts `body` to the first valid webhook with `signature` (or none), as a forger would.
    pub async fn deliver_raw(&self, body: &str, signature: Option<&str>) -> u16 {
        let url = self
            .lock()
            .webhooks
            .iter()
            .find(|w| w.valid)
            .map(|w| w.url.clone())
            .expect("a registered webhook");
        post_delivery(
            &self.shared,
            url,
            body.to_owned(),
            signature.map(str::to_owned),
        )
        .await
    }

    /// Sends deliveries from a task of their own: X does not wait for the webhook to publish.
    pub(super) fn send(&self, deliveries: Vec<(url::Url, String, String)>) {
        if deliveries.is_empty() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shared = Arc::clone(&self.shared);
        rt.spawn(async move {
            for (url, body, sig) in deliveries {
                shared.inner.lock().expect("fake X lock").last_sent =
                    Some((url.clone(), body.clone(), sig.clone()));
                post_delivery(&shared, url, body, Some(sig)).await;
            }
        });
    }
}

async fn post_delivery(
    shared: &Arc<Shared>,
    url: url::Url,
    body: String,
    signature: Option<String>,
) -> u16 {
    let at = Instant::now();
    let index = {
        let mut inner = shared.inner.lock().expect("fake X lock");
        inner.delivered.push(Delivery {
            body: body.clone(),
            signature: signature.clone(),
            at,
            status: 0,
        });
        inner.delivered.len() - 1
    };
    let mut req = shared
        .client
        .post(url)
        .header("content-type", "application/json")
        .timeout(Duration::from_secs(10))
        .body(body);
    if let Some(s) = signature {
        req = req.header("x-twitter-webhooks-signature", s);
    }
    let status = req.send().await.map_or(0, |r| r.status().as_u16());
    shared.inner.lock().expect("fake X lock").delivered[index].status = status;
    status
}

//! A stand-in for YouTube on 127.0.0.1: the Data API v3 reads tocsin makes (`channels.list`,
//! `playlistItems.list`, `videos.list`), `videos.delete`, the daily unit quota, and Google's
//! WebSub hub pushing the channels' video feeds.
//!
//! Shapes from the Data API reference (developers.google.com/youtube/v3/docs: the `channel`,
//! `playlistItem` and `video` resources, the `…ListResponse` envelopes, the error envelope
//! `{"error": {"code", "message", "errors": [{"domain", "reason", "message"}]}}` with
//! `quotaExceeded`, `forbidden`, `videoNotFound`, and the `API_KEY_INVALID` detail of a bad key),
//! unit costs from "Quota costs" (determine_quota_cost: list 1, `videos.delete` 50, every request
//! at least 1 even when refused), the feed from the push notifications guide
//! (youtube/v3/guides/push_notifications: Atom with `yt:videoId` and `yt:channelId`, topic
//! `https://www.youtube.com/xml/feeds/videos.xml?channel_id=…`), and the hub from the WebSub
//! recommendation (W3C, 2018): a subscription request is answered 202, verified by a GET to the
//! callback carrying `hub.mode`, `hub.topic`, `hub.challenge` and `hub.lease_seconds` which must
//! echo the challenge, and deliveries are signed `X-Hub-Signature: sha1=<hex HMAC of the body
//! keyed with hub.secret>`, the algorithm Google's hub uses.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use tokio::sync::watch;

/// The topic URL of a channel's video feed at the hub.
pub fn topic(channel_id: &str) -> String {
    format!("https://www.youtube.com/xml/feeds/videos.xml?channel_id={channel_id}")
}

/// The signature header value of `body` under `secret`, as the hub writes it.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha1={}", hex::encode(mac.finalize().into_bytes()))
}

/// One verified subscription at the hub.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub topic: String,
    pub callback: String,
    pub secret: Option<String>,
    pub lease_seconds: u64,
    pub verified_at: Instant,
    /// How many times this callback was (re)verified for the topic.
    pub verifications: u32,
}

/// One push the hub made.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub callback: String,
    pub body: String,
    pub signature: Option<String>,
    pub status: u16,
    pub sent_at: Instant,
}

#[derive(Clone)]
pub struct FakeYouTube {
    shared: Arc<Shared>,
}

struct Shared {
    url: url::Url,
    http: reqwest::Client,
    inner: Mutex<Inner>,
    _shutdown: watch::Sender<bool>,
}

struct Channel {
    title: String,
    description: String,
    custom_url: String,
    avatar: String,
    banner: String,
    oauth_token: Option<String>,
}

struct Video {
    id: String,
    channel: String,
    title: String,
    description: String,
    published_at: DateTime<Utc>,
    /// `none`, `live` or `upcoming`.
    live: &'static str,
}

struct Inner {
    api_key: String,
    channels: BTreeMap<String, Channel>,
    /// Newest last.
    videos: Vec<Video>,
    quota: u64,
    units: u64,
    /// (method, units) of every Data API request.
    calls: Vec<(String, u64)>,
    subscriptions: BTreeMap<(String, String), Subscription>,
    /// (mode, topic, callback, answer) of every hub request.
    hub_requests: Vec<(String, String, String, u16)>,
    deliveries: Vec<Delivery>,
    /// Whether the hub pushes (off: only polling sees changes).
    push: bool,
    next_id: u64,
}

const MAX_RESULTS: usize = 50;

impl FakeYouTube {
    /// Serves the fake; every request needs `key=api_key`.
    pub async fn start(api_key: &str) -> std::io::Result<FakeYouTube> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            url: url::Url::parse(&format!("http://{addr}/")).expect("loopback URL"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client"),
            inner: Mutex::new(Inner {
                api_key: api_key.to_owned(),
                channels: BTreeMap::new(),
                videos: Vec::new(),
                quota: 10_000,
                units: 0,
                calls: Vec::new(),
                subscriptions: BTreeMap::new(),
                hub_requests: Vec::new(),
                deliveries: Vec::new(),
                push: true,
                next_id: 1,
            }),
            _shutdown: tx,
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        super::spawn_server(listener, app, rx, "fake YouTube");
        Ok(FakeYouTube { shared })
    }

    /// The Data API's base (`base_url` of an account).
    pub fn url(&self) -> url::Url {
        self.shared.url.clone()
    }

    /// The hub (`youtube.hub_url`).
    pub fn hub_url(&self) -> url::Url {
        self.shared.url.join("hub").expect("hub URL")
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.inner.lock().expect("fake YouTube lock")
    }

    pub fn add_channel(&self, id: &str, title: &str, handle: &str, description: &str) {
        self.lock().channels.insert(
            id.to_owned(),
            Channel {
                title: title.to_owned(),
                description: description.to_owned(),
                custom_url: handle.to_owned(),
                avatar: format!("https://yt3.ggpht.example/{id}/avatar=s800"),
                banner: format!("https://yt3.googleusercontent.example/{id}/banner"),
                oauth_token: None,
            },
        );
    }

    /// The OAuth token `videos.delete` accepts for the channel's videos.
    pub fn set_oauth_token(&self, channel: &str, token: Option<&str>) {
        if let Some(c) = self.lock().channels.get_mut(channel) {
            c.oauth_token = token.map(str::to_owned);
        }
    }

    /// Changes the key the API accepts (a revoked key: every request answered 400).
    pub fn set_api_key(&self, key: &str) {
        self.lock().api_key = key.to_owned();
    }

    /// Units the project may still spend before `quotaExceeded`.
    pub fn set_quota(&self, units: u64) {
        let mut inner = self.lock();
        inner.quota = inner.units + units;
    }

    pub fn units_spent(&self) -> u64 {
        self.lock().units
    }

    /// The Data API methods called, in order (`channels.list`, …).
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.iter().map(|(m, _)| m.clone()).collect()
    }

    pub fn set_push(&self, on: bool) {
        self.lock().push = on;
    }

    /// Renames the channel (`snippet.title`).
    pub fn set_title(&self, channel: &str, title: &str) {
        self.edit(channel, |c| c.title = title.to_owned());
    }

    pub fn set_handle(&self, channel: &str, handle: &str) {
        self.edit(channel, |c| c.custom_url = handle.to_owned());
    }

    pub fn set_description(&self, channel: &str, text: &str) {
        self.edit(channel, |c| c.description = text.to_owned());
    }

    pub fn set_avatar(&self, channel: &str, url: &str) {
        self.edit(channel, |c| c.avatar = url.to_owned());
    }

    pub fn set_banner(&self, channel: &str, url: &str) {
        self.edit(channel, |c| c.banner = url.to_owned());
    }

    fn edit(&self, channel: &str, f: impl FnOnce(&mut Channel)) {
        if let Some(c) = self.lock().channels.get_mut(channel) {
            f(c);
        }
    }

    /// Uploads a video; pushes it to the channel's subscribers. Its id.
    pub async fn upload(&self, channel: &str, title: &str, description: &str) -> String {
        self.add_video(channel, title, description, "none").await
    }

    /// Starts a live broadcast (a video whose `liveBroadcastContent` is `live`); pushes it.
    pub async fn go_live(&self, channel: &str, title: &str, description: &str) -> String {
        self.add_video(channel, title, description, "live").await
    }

    async fn add_video(
        &self,
        channel: &str,
        title: &str,
        description: &str,
        live: &'static str,
    ) -> String {
        let id = {
            let mut inner = self.lock();
            inner.next_id += 1;
            // Video ids are 11 characters of the URL-safe base64 alphabet.
            let id = format!("vid{:08}", inner.next_id);
            inner.videos.push(Video {
                id: id.clone(),
                channel: channel.to_owned(),
                title: title.to_owned(),
                description: description.to_owned(),
                published_at: Utc::now(),
                live,
            });
            id
        };
        self.push(channel, &id).await;
        id
    }

    pub fn video_exists(&self, id: &str) -> bool {
        self.lock().videos.iter().any(|v| v.id == id)
    }

    /// The hub's verified subscriptions.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        self.lock().subscriptions.values().cloned().collect()
    }

    /// (mode, topic, callback, answer) of every request the hub received.
    pub fn hub_requests(&self) -> Vec<(String, String, String, u16)> {
        self.lock().hub_requests.clone()
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.lock().deliveries.clone()
    }

    /// The Atom document the hub pushes for one video.
    pub fn feed_for(&self, video_id: &str) -> Option<String> {
        let inner = self.lock();
        let v = inner.videos.iter().find(|v| v.id == video_id)?;
        let author = inner
            .channels
            .get(&v.channel)
            .map(|c| c.title.clone())
            .unwrap_or_default();
        Some(atom(v, &author))
    }

    /// Pushes the feed entry of `video_id` to every verified subscriber of the channel's topic
    /// (when push is on), signed with each subscription's secret.
    pub async fn push(&self, channel: &str, video_id: &str) {
        let Some(body) = self.feed_for(video_id) else {
            return;
        };
        let targets: Vec<Subscription> = {
            let inner = self.lock();
            if !inner.push {
                return;
            }
            let t = topic(channel);
            inner
                .subscriptions
                .values()
                .filter(|s| s.topic == t)
                .cloned()
                .collect()
        };
        for s in targets {
            let signature = s.secret.as_deref().map(|k| sign(k, body.as_bytes()));
            self.deliver(&s.callback, body.clone(), signature).await;
        }
    }

    /// POSTs `body` to `callback` as the hub does, with the given signature header; the answer.
    pub async fn deliver(&self, callback: &str, body: String, signature: Option<String>) -> u16 {
        let mut req = self
            .shared
            .http
            .post(callback)
            .header(header::CONTENT_TYPE, "application/atom+xml")
            .header(
                header::LINK,
                format!(
                    "<{}>; rel=hub, <{}>; rel=self",
                    self.hub_url(),
                    "https://www.youtube.com/xml/feeds/videos.xml"
                ),
            )
            .body(body.clone());
        if let Some(sig) = &signature {
            req = req.header("X-Hub-Signature", sig);
        }
        let sent_at = Instant::now();
        let status = req.send().await.map_or(0, |r| r.status().as_u16());
        self.lock().deliveries.push(Delivery {
            callback: callback.to_owned(),
            body,
            signature,
            status,
            sent_at,
        });
        status
    }

    /// Verifies an intent as the hub does: GET the callback with a fresh challenge. Whether the
    /// subscriber echoed it.
    async fn verify(&self, mode: &str, topic: &str, callback: &str, lease: u64) -> bool {
        let challenge = format!("challenge-{}", rand_hex());
        let Ok(mut url) = url::Url::parse(callback) else {
            return false;
        };
        url.query_pairs_mut()
            .append_pair("hub.mode", mode)
            .append_pair("hub.topic", topic)
            .append_pair("hub.challenge", &challenge)
            .append_pair("hub.lease_seconds", &lease.to_string());
        match self.shared.http.get(url).send().await {
            Ok(r) if r.status().is_success() => r.text().await.is_ok_and(|b| b == challenge),
            _ => false,
        }
    }
}

fn rand_hex() -> String {
    let mut b = [0u8; 8];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    hex::encode(b)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn atom(v: &Video, author: &str) -> String {
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true);
    format!(
        r#"<?xml version='1.0' encoding='UTF-8'?>
<feed xmlns:yt="http://www.youtube.com/xml/schemas/2015" xmlns="http://www.w3.org/2005/Atom">
 <link rel="hub" href="https://pubsubhubbub.appspot.com"/>
 <link rel="self" href="https://www.youtube.com/xml/feeds/videos.xml?channel_id={channel}"/>
 <title>YouTube video feed</title>
 <updated>{now}</updated>
 <entry>
  <id>yt:video:{id}</id>
  <yt:videoId>{id}</yt:videoId>
  <yt:channelId>{channel}</yt:channelId>
  <title>{title}</title>
  <link rel="alternate" href="https://www.youtube.com/watch?v={id}"/>
  <author>
   <name>{author}</name>
   <uri>https://www.youtube.com/channel/{channel}</uri>
  </author>
  <published>{published}</published>
  <updated>{now}</updated>
 </entry>
</feed>
"#,
        channel = v.channel,
        id = v.id,
        title = xml_escape(&v.title),
        author = xml_escape(author),
        published = rfc3339(v.published_at),
    )
}

fn error(status: StatusCode, domain: &str, reason: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "error": {
                "code": status.as_u16(),
                "message": message,
                "errors": [{ "message": message, "domain": domain, "reason": reason }],
            }
        })),
    )
        .into_response()
}

fn bad_key() -> Response {
    let message = "API key not valid. Please pass a valid API key.";
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({
            "error": {
                "code": 400,
                "message": message,
                "errors": [{ "message": message, "domain": "global", "reason": "badRequest" }],
                "status": "INVALID_ARGUMENT",
                "details": [{
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": { "service": "youtube.googleapis.com" }
                }]
            }
        })),
    )
        .into_response()
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fake = FakeYouTube { shared };
    let query: BTreeMap<String, String> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let q = |k: &str| query.get(k).cloned().unwrap_or_default();
    match (&method, uri.path()) {
        (&Method::POST, "/hub") => return hub(&fake, &body).await,
        (&Method::GET, "/youtube/v3/channels")
        | (&Method::GET, "/youtube/v3/playlistItems")
        | (&Method::GET, "/youtube/v3/videos")
        | (&Method::DELETE, "/youtube/v3/videos") => {}
        _ => return error(StatusCode::NOT_FOUND, "global", "notFound", "Not Found"),
    }
    let delete = method == Method::DELETE;
    let name = match uri.path() {
        "/youtube/v3/channels" => "channels.list",
        "/youtube/v3/playlistItems" => "playlistItems.list",
        _ if delete => "videos.delete",
        _ => "videos.list",
    };
    let cost = if delete { 50 } else { 1 };
    let mut inner = fake.lock();
    inner.calls.push((name.to_owned(), cost));
    if inner.units + cost > inner.quota {
        inner.units += 1;
        return error(
            StatusCode::FORBIDDEN,
            "youtube.quota",
            "quotaExceeded",
            "The request cannot be completed because you have exceeded your quota.",
        );
    }
    inner.units += cost;
    if delete {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        let Some(bearer) = bearer else {
            return error(
                StatusCode::UNAUTHORIZED,
                "global",
                "required",
                "Login Required.",
            );
        };
        let id = q("id");
        let Some(pos) = inner.videos.iter().position(|v| v.id == id) else {
            return error(
                StatusCode::NOT_FOUND,
                "youtube.video",
                "videoNotFound",
                "The video that you are trying to delete cannot be found.",
            );
        };
        let owner = inner.videos[pos].channel.clone();
        let allowed = inner
            .channels
            .get(&owner)
            .and_then(|c| c.oauth_token.as_deref())
            .is_some_and(|t| t == bearer);
        if !allowed {
            return error(
                StatusCode::FORBIDDEN,
                "youtube.video",
                "forbidden",
                "The video that you are trying to delete cannot be deleted. The request might not be properly authorized.",
            );
        }
        inner.videos.remove(pos);
        return StatusCode::NO_CONTENT.into_response();
    }
    if q("key") != inner.api_key {
        return bad_key();
    }
    let body = match name {
        "channels.list" => {
            let items: Vec<Value> = q("id")
                .split(',')
                .filter_map(|id| inner.channels.get(id).map(|c| (id, c)))
                .map(|(id, c)| {
                    json!({
                        "kind": "youtube#channel",
                        "etag": format!("etag-{id}"),
                        "id": id,
                        "snippet": {
                            "title": c.title,
                            "description": c.description,
                            "customUrl": c.custom_url,
                            "publishedAt": "2012-06-01T17:00:00Z",
                            "thumbnails": {
                                "default": { "url": format!("{}=s88", c.avatar), "width": 88, "height": 88 },
                                "medium": { "url": format!("{}=s240", c.avatar), "width": 240, "height": 240 },
                                "high": { "url": c.avatar, "width": 800, "height": 800 }
                            },
                            "localized": { "title": c.title, "description": c.description }
                        },
                        "contentDetails": {
                            "relatedPlaylists": { "likes": "", "uploads": format!("UU{}", &id[2..]) }
                        },
                        "brandingSettings": {
                            "channel": { "title": c.title, "description": c.description },
                            "image": { "bannerExternalUrl": c.banner }
                        }
                    })
                })
                .collect();
            json!({
                "kind": "youtube#channelListResponse",
                "etag": "list-etag",
                "pageInfo": { "totalResults": items.len(), "resultsPerPage": 5 },
                "items": items,
            })
        }
        "playlistItems.list" => {
            let playlist = q("playlistId");
            let Some(channel) = playlist
                .strip_prefix("UU")
                .map(|rest| format!("UC{rest}"))
                .filter(|c| inner.channels.contains_key(c))
            else {
                return error(
                    StatusCode::NOT_FOUND,
                    "youtube.playlistItem",
                    "playlistNotFound",
                    "The playlist identified with the request's playlistId parameter cannot be found.",
                );
            };
            let max = q("maxResults").parse().unwrap_or(5).min(MAX_RESULTS);
            let items: Vec<Value> = inner
                .videos
                .iter()
                .rev()
                .filter(|v| v.channel == channel)
                .take(max)
                .enumerate()
                .map(|(i, v)| {
                    json!({
                        "kind": "youtube#playlistItem",
                        "etag": format!("etag-{}", v.id),
                        "id": format!("pli-{}", v.id),
                        "snippet": {
                            "publishedAt": rfc3339(v.published_at),
                            "channelId": channel,
                            "title": v.title,
                            "description": v.description,
                            "playlistId": playlist,
                            "position": i,
                            "resourceId": { "kind": "youtube#video", "videoId": v.id },
                            "videoOwnerChannelId": channel
                        },
                        "contentDetails": {
                            "videoId": v.id,
                            "videoPublishedAt": rfc3339(v.published_at)
                        }
                    })
                })
                .collect();
            json!({
                "kind": "youtube#playlistItemListResponse",
                "etag": "list-etag",
                "pageInfo": { "totalResults": items.len(), "resultsPerPage": max },
                "items": items,
            })
        }
        _ => {
            let ids = q("id");
            let items: Vec<Value> = ids
                .split(',')
                .filter_map(|id| inner.videos.iter().find(|v| v.id == id))
                .map(|v| {
                    let mut item = json!({
                        "kind": "youtube#video",
                        "etag": format!("etag-{}", v.id),
                        "id": v.id,
                        "snippet": {
                            "publishedAt": rfc3339(v.published_at),
                            "channelId": v.channel,
                            "title": v.title,
                            "description": v.description,
                            "liveBroadcastContent": v.live
                        }
                    });
                    if v.live != "none" {
                        item["liveStreamingDetails"] = json!({
                            "actualStartTime": rfc3339(v.published_at),
                            "concurrentViewers": "1254",
                            "activeLiveChatId": format!("chat-{}", v.id)
                        });
                    }
                    item
                })
                .collect();
            json!({
                "kind": "youtube#videoListResponse",
                "etag": "list-etag",
                "pageInfo": { "totalResults": items.len(), "resultsPerPage": items.len() },
                "items": items,
            })
        }
    };
    axum::Json(body).into_response()
}

/// The hub's subscription endpoint: 202, then the intent verified in the background.
async fn hub(fake: &FakeYouTube, body: &[u8]) -> Response {
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    let (mode, topic, callback) = (get("hub.mode"), get("hub.topic"), get("hub.callback"));
    let secret = form.get("hub.secret").cloned();
    let lease: u64 = get("hub.lease_seconds").parse().unwrap_or(432_000);
    let valid = matches!(mode.as_str(), "subscribe" | "unsubscribe")
        && topic.starts_with("https://www.youtube.com/xml/feeds/videos.xml?channel_id=")
        && url::Url::parse(&callback).is_ok();
    let status = if valid { 202 } else { 400 };
    fake.lock()
        .hub_requests
        .push((mode.clone(), topic.clone(), callback.clone(), status));
    if !valid {
        return (StatusCode::BAD_REQUEST, "Invalid request").into_response();
    }
    let fake = fake.clone();
    tokio::spawn(async move {
        if !fake.verify(&mode, &topic, &callback, lease).await {
            return;
        }
        let mut inner = fake.lock();
        let key = (topic.clone(), callback.clone());
        if mode == "unsubscribe" {
            inner.subscriptions.remove(&key);
            return;
        }
        let verifications = inner.subscriptions.get(&key).map_or(0, |s| s.verifications) + 1;
        inner.subscriptions.insert(
            key,
            Subscription {
                topic,
                callback,
                secret,
                lease_seconds: lease,
                verified_at: Instant::now(),
                verifications,
            },
        );
    });
    StatusCode::ACCEPTED.into_response()
}

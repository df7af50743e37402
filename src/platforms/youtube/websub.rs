//! WebSub (W3C recommendation, 2018; YouTube's "push notifications" guide): each channel's
//! feed topic `https://www.youtube.com/xml/feeds/videos.xml?channel_id=…` is subscribed at the
//! hub with the callback `general.public_url` + `/hooks/youtube/<account>`, a secret of our own
//! and a lease, and renewed at four fifths of the lease the hub granted.
//!
//! The callback, on the hooks listener:
//! - `GET` is the hub verifying an intent: answered with `hub.challenge` only for the topic and
//!   mode this daemon asked for, while it asks (404 otherwise), and the granted lease noted.
//! - `POST` is a delivery. The signature header is checked before a byte of the body is read,
//!   the body is read up to [`MAX_BODY`] (413 past it), its `X-Hub-Signature`
//!   (`sha1=` HMAC-SHA1 of the body keyed with the secret) verified, and only then the Atom
//!   parsed. An unsigned or forged delivery is answered 202 (the spec asks subscribers to
//!   acknowledge what they drop, so a hub does not retry it) and dropped, counted in
//!   `tocsin_webhook_rejected_total{provider="youtube",reason}`. A delivery has no id of its
//!   own: each entry's key is its video id and `updated` time (a deletion's, its ref and
//!   `when`), and a key already taken is counted once in `tocsin_webhook_duplicates_total`.
//!
//! The video ids go to the channel's watcher, which reads them with `videos.list` (the push
//! says which video changed; the API says what it is, live or not).

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header::CONTENT_LENGTH},
    response::{IntoResponse, Response},
    routing::get,
};
use hmac::{Hmac, Mac};
use tokio::sync::{mpsc, watch};
use url::Url;

use crate::{metrics::Metrics, watch::Health};

/// Where the callbacks are served on the hooks listener.
pub const ROUTE: &str = "/hooks/youtube";

/// A delivery carries one or a few feed entries: far under this.
pub const MAX_BODY: usize = 64 * 1024;

/// Delivery keys remembered for redeliveries.
const SEEN: usize = 4096;

/// What a verified delivery tells the channel's watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// Videos uploaded or edited: read them now.
    Videos(Vec<String>),
    /// A video the feed says was deleted, and when.
    Deleted {
        video_id: String,
        when: chrono::DateTime<chrono::Utc>,
    },
}

/// The topic of a channel's video feed.
pub fn topic(channel_id: &str) -> String {
    format!("https://www.youtube.com/xml/feeds/videos.xml?channel_id={channel_id}")
}

/// The callbacks of every subscribed channel.
#[derive(Clone)]
pub struct WebSub(Arc<Inner>);

struct Inner {
    metrics: Arc<Metrics>,
    channels: Mutex<HashMap<String, Channel>>,
    seen: Mutex<(HashSet<String>, VecDeque<String>)>,
}

struct Channel {
    channel_id: String,
    topic: String,
    secret: String,
    to_watcher: mpsc::Sender<Pushed>,
    /// Whether a subscription request is out (the only time a verification is answered).
    asking: bool,
    /// The lease the hub granted at its last verification.
    granted: watch::Sender<Option<u64>>,
}

impl WebSub {
    pub fn new(metrics: Arc<Metrics>) -> WebSub {
        WebSub(Arc::new(Inner {
            metrics,
            channels: Mutex::new(HashMap::new()),
            seen: Mutex::new((HashSet::new(), VecDeque::new())),
        }))
    }

    /// Registers a channel's callback; the receiver of its pushes and of its granted leases.
    pub fn add(
        &self,
        account: &str,
        channel_id: &str,
    ) -> (mpsc::Receiver<Pushed>, watch::Receiver<Option<u64>>) {
        let (tx, rx) = mpsc::channel(64);
        let (granted, leases) = watch::channel(None);
        let mut secret = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut secret);
        self.0.channels.lock().expect("websub lock").insert(
            account.to_owned(),
            Channel {
                channel_id: channel_id.to_owned(),
                topic: topic(channel_id),
                secret: hex::encode(secret),
                to_watcher: tx,
                asking: false,
                granted,
            },
        );
        (rx, leases)
    }

    fn secret(&self, account: &str) -> Option<String> {
        let map = self.0.channels.lock().expect("websub lock");
        map.get(account).map(|c| c.secret.clone())
    }

    fn set_asking(&self, account: &str, asking: bool) {
        if let Some(c) = self
            .0
            .channels
            .lock()
            .expect("websub lock")
            .get_mut(account)
        {
            c.asking = asking;
        }
    }

    /// The callback routes, for the hooks listener.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/{account}", get(verify).post(deliver))
            .with_state(self.clone())
    }

    fn refuse(&self, reason: &str) -> Response {
        self.0.metrics.webhook_rejected("youtube", reason);
        tracing::warn!(reason, "youtube push dropped");
        // Acknowledged, so the hub does not retry what will never be accepted.
        StatusCode::ACCEPTED.into_response()
    }

    /// Whether `key` is new (and now taken).
    fn first_time(&self, key: String) -> bool {
        let mut seen = self.0.seen.lock().expect("websub seen lock");
        let (set, order) = &mut *seen;
        if !set.insert(key.clone()) {
            return false;
        }
        order.push_back(key);
        if order.len() > SEEN
            && let Some(old) = order.pop_front()
        {
            set.remove(&old);
        }
        true
    }
}

/// The hub verifying an intent.
async fn verify(
    State(ws): State<WebSub>,
    Path(account): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    let map = ws.0.channels.lock().expect("websub lock");
    let Some(c) = map.get(&account) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let ours = c.asking && get("hub.mode") == "subscribe" && get("hub.topic") == c.topic;
    let challenge = get("hub.challenge");
    if !ours || challenge.is_empty() {
        tracing::warn!(%account, mode = get("hub.mode"), topic = get("hub.topic"), "a WebSub verification this daemon did not ask for was refused");
        return StatusCode::NOT_FOUND.into_response();
    }
    let lease = get("hub.lease_seconds").parse::<u64>().ok();
    c.granted.send_replace(Some(lease.unwrap_or(0)));
    (StatusCode::OK, challenge.to_owned()).into_response()
}

/// A delivery from the hub.
async fn deliver(
    State(ws): State<WebSub>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(secret) = ws.secret(&account) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // Before the body: a delivery without a well-formed signature is not read.
    let Some(signature) = headers.get("x-hub-signature") else {
        return ws.refuse("unsigned");
    };
    let Some(mac) = signature
        .to_str()
        .ok()
        .and_then(|s| s.strip_prefix("sha1="))
        .and_then(|h| hex::decode(h).ok())
        .filter(|m| m.len() == 20)
    else {
        return ws.refuse("bad_signature");
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let too_large = || {
        ws.0.metrics.webhook_rejected("youtube", "too_large");
        StatusCode::PAYLOAD_TOO_LARGE.into_response()
    };
    if declared.is_some_and(|n| n > MAX_BODY) {
        return too_large();
    }
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return too_large();
    };
    let mut hmac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("any key length");
    hmac.update(&body);
    if hmac.verify_slice(&mac).is_err() {
        return ws.refuse("bad_signature");
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return ws.refuse("malformed");
    };
    let feed = parse_feed(text);
    let (channel_id, to_watcher) = {
        let map = ws.0.channels.lock().expect("websub lock");
        let Some(c) = map.get(&account) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        (c.channel_id.clone(), c.to_watcher.clone())
    };
    let mut fresh = Vec::new();
    let mut duplicates = 0;
    for e in &feed.entries {
        if e.channel_id != channel_id {
            ws.0.metrics.webhook_rejected("youtube", "other_channel");
            continue;
        }
        if ws.first_time(format!("{account}\0{}\0{}", e.video_id, e.updated)) {
            fresh.push(e.video_id.clone());
        } else {
            duplicates += 1;
        }
    }
    let mut deleted = Vec::new();
    for (video_id, when) in &feed.deleted {
        if ws.first_time(format!("{account}\0deleted\0{video_id}\0{when}")) {
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(when) {
                deleted.push(Pushed::Deleted {
                    video_id: video_id.clone(),
                    when: t.with_timezone(&chrono::Utc),
                });
            }
        } else {
            duplicates += 1;
        }
    }
    if duplicates > 0 {
        ws.0.metrics.webhook_duplicates("youtube", duplicates);
        tracing::info!(%account, duplicates, "youtube redelivery acknowledged, not read again");
    }
    let accepted = fresh.len() + deleted.len();
    if accepted > 0 {
        ws.0.metrics.webhook_accepted("youtube", accepted);
    }
    if !fresh.is_empty() {
        deleted.insert(0, Pushed::Videos(fresh));
    }
    for p in deleted {
        // A full queue is a watcher far behind: its next poll reads the same videos.
        if to_watcher.try_send(p).is_err() {
            tracing::warn!(%account, "youtube push not handed to the watcher (queue full)");
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

/// One `<entry>` of a pushed feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) video_id: String,
    pub(super) channel_id: String,
    pub(super) updated: String,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Feed {
    pub(super) entries: Vec<Entry>,
    /// `<at:deleted-entry ref="yt:video:ID" when="…">`: (video id, when).
    pub(super) deleted: Vec<(String, String)>,
}

/// The entries of YouTube's pushed Atom feed. Only reached once the hub's signature is
/// verified; elements are read by name, namespaces by the prefixes YouTube writes.
pub(super) fn parse_feed(text: &str) -> Feed {
    let mut feed = Feed::default();
    for block in text.split("<entry>").skip(1) {
        let block = block.split("</entry>").next().unwrap_or_default();
        let video_id = element(block, "yt:videoId");
        let channel_id = element(block, "yt:channelId");
        if video_id.is_empty() || channel_id.is_empty() {
            continue;
        }
        feed.entries.push(Entry {
            video_id,
            channel_id,
            updated: element(block, "updated"),
        });
    }
    for tag in text.split("<at:deleted-entry").skip(1) {
        let tag = tag.split('>').next().unwrap_or_default();
        let reference = attribute(tag, "ref");
        if let Some(id) = reference.strip_prefix("yt:video:") {
            feed.deleted.push((id.to_owned(), attribute(tag, "when")));
        }
    }
    feed
}

fn element(block: &str, name: &str) -> String {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    block
        .split_once(&open)
        .and_then(|(_, rest)| rest.split_once(&close))
        .map(|(v, _)| v.trim().to_owned())
        .unwrap_or_default()
}

fn attribute(tag: &str, name: &str) -> String {
    for quote in ['"', '\''] {
        let needle = format!("{name}={quote}");
        if let Some((_, rest)) = tag.split_once(&needle) {
            return rest.split(quote).next().unwrap_or_default().to_owned();
        }
    }
    String::new()
}

/// Why a subscription request failed.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("the hub request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the hub answered {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("the hub did not verify the subscription within {0:?}")]
    NotVerified(Duration),
}

/// How long the hub has to verify a request before it is made again.
const VERIFY_WITHIN: Duration = Duration::from_secs(60);

/// Keeps one channel subscribed until shutdown: subscribes, waits for the hub's verification,
/// renews at four fifths of the granted lease; a failure is retried with backoff and reported as
/// the account's push stream being down (the poller carries on).
#[allow(clippy::too_many_arguments)]
pub async fn keep_subscribed(
    ws: WebSub,
    http: reqwest::Client,
    hub: Url,
    callback: Url,
    account: String,
    lease: Duration,
    mut leases: watch::Receiver<Option<u64>>,
    health: Health,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        let result = subscribe(&ws, &http, &hub, &callback, &account, lease, &mut leases).await;
        let wait = match result {
            Ok(granted) => {
                failures = 0;
                health.stream_up(&account);
                tracing::info!(%account, lease_seconds = granted.as_secs(), "youtube feed subscribed at the hub");
                granted.mul_f64(0.8).max(Duration::from_secs(1))
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(%account, error = %e, "youtube WebSub subscription failed");
                health.stream_down(&account, e.to_string());
                Duration::from_secs(2u64.saturating_pow(failures.min(8))).min(lease)
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn subscribe(
    ws: &WebSub,
    http: &reqwest::Client,
    hub: &Url,
    callback: &Url,
    account: &str,
    lease: Duration,
    leases: &mut watch::Receiver<Option<u64>>,
) -> Result<Duration, SubscribeError> {
    let Some(secret) = ws.secret(account) else {
        return Err(SubscribeError::NotVerified(Duration::ZERO));
    };
    let topic = {
        let map = ws.0.channels.lock().expect("websub lock");
        map.get(account)
            .map(|c| c.topic.clone())
            .unwrap_or_default()
    };
    leases.mark_unchanged();
    ws.set_asking(account, true);
    let answer = async {
        let resp = http
            .post(hub.clone())
            .form(&[
                ("hub.callback", callback.as_str()),
                ("hub.mode", "subscribe"),
                ("hub.topic", topic.as_str()),
                ("hub.verify", "async"),
                ("hub.secret", secret.as_str()),
                ("hub.lease_seconds", &lease.as_secs().to_string()),
            ])
            .send()
            .await?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(SubscribeError::Refused {
                status: status.as_u16(),
                body: crate::platforms::short(&body),
            });
        }
        match tokio::time::timeout(VERIFY_WITHIN, leases.changed()).await {
            Ok(Ok(())) => {
                let granted = (*leases.borrow()).unwrap_or(0);
                Ok(if granted == 0 {
                    lease
                } else {
                    Duration::from_secs(granted)
                })
            }
            _ => Err(SubscribeError::NotVerified(VERIFY_WITHIN)),
        }
    }
    .await;
    ws.set_asking(account, false);
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pushed_feed_is_read() {
        let text = r#"<feed xmlns:yt="http://www.youtube.com/xml/schemas/2015"
         xmlns="http://www.w3.org/2005/Atom">
  <link rel="hub" href="https://pubsubhubbub.appspot.com"/>
  <title>YouTube video feed</title>
  <updated>2015-04-01T19:05:24.552394234+00:00</updated>
  <entry>
    <id>yt:video:VIDEO_ID</id>
    <yt:videoId>VIDEO_ID</yt:videoId>
    <yt:channelId>CHANNEL_ID</yt:channelId>
    <title>Video title</title>
    <link rel="alternate" href="http://www.youtube.com/watch?v=VIDEO_ID"/>
    <published>2015-03-06T21:40:57+00:00</published>
    <updated>2015-03-09T19:05:24.552394234+00:00</updated>
  </entry>
</feed>"#;
        let feed = parse_feed(text);
        assert_eq!(
            feed.entries,
            vec![Entry {
                video_id: "VIDEO_ID".into(),
                channel_id: "CHANNEL_ID".into(),
                updated: "2015-03-09T19:05:24.552394234+00:00".into(),
            }]
        );
        let deleted = r#"<feed xmlns:at="http://purl.org/atompub/tombstones/1.0" xmlns="http://www.w3.org/2005/Atom"><at:deleted-entry ref="yt:video:VIDEO_ID" when="2015-03-10T19:05:24+00:00"><link href="https://www.youtube.com/watch?v=VIDEO_ID"/></at:deleted-entry></feed>"#;
        assert_eq!(
            parse_feed(deleted).deleted,
            vec![("VIDEO_ID".into(), "2015-03-10T19:05:24+00:00".into())]
        );
    }
}

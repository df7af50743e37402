//! A stand-in for X's API v2 on 127.0.0.1: the user timeline, users lookup and post deletion,
//! with the shapes and headers that make X hard to poll: snowflake ids, t.co-wrapped links with
//! their `expanded_url`, edits as new posts carrying `edit_history_tweet_ids`, `errors` arrays
//! beside (or instead of) `data`, per-endpoint `x-rate-limit-*` headers with a Unix `reset`,
//! 429 once a window is spent, and forced 5xx. Every endpoint counts its calls. With a consumer
//! secret it also plays X's webhooks (registration with the CRC check, subscriptions, signed
//! deliveries of posts and deletions: [`push`]).

mod http;
mod push;

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, SecondsFormat, Utc};
use http::*;
pub use push::{Delivery, signature};
use serde_json::{Value, json};
use tokio::sync::watch;

/// The fake's endpoints, each with its own rate-limit window and counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum XEndpoint {
    /// `GET /2/users/:id/tweets`
    Timeline,
    /// `GET /2/users`
    Users,
    /// `DELETE /2/tweets/:id`
    Delete,
    /// `POST`, `GET /2/webhooks`, `PUT /2/webhooks/:id`
    Webhooks,
    /// `GET`, `POST /2/activity/subscriptions`
    ActivitySubscriptions,
    /// `POST /2/account_activity/webhooks/:id/subscriptions/all`
    AccountActivitySubscribe,
}

/// A forced answer for the next request to an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// That status with X's problem JSON.
    Status(u16),
    /// 429 with `x-rate-limit-remaining: 0` and a reset this far ahead; further requests in
    /// that time are refused too, as X does.
    TooManyRequests { reset_in: Duration },
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Call {
    pub endpoint: XEndpoint,
    pub query: String,
    pub at: Instant,
    pub status: u16,
    /// Answered from [`FakeX::fail_next`], not by the endpoint.
    pub forced: bool,
}

#[derive(Clone)]
pub struct FakeX {
    shared: Arc<Shared>,
}

struct Shared {
    url: url::Url,
    /// Sends the webhook deliveries and CRC challenges (to loopback only).
    client: reqwest::Client,
    inner: Mutex<Inner>,
    _shutdown: watch::Sender<bool>,
}

struct Window {
    limit: u64,
    length: Duration,
    started: Instant,
    used: u64,
    /// Forced by a `TooManyRequests`: refused until then.
    blocked_until: Option<Instant>,
}

impl Window {
    fn new(limit: u64, length: Duration) -> Window {
        Window {
            limit,
            length,
            started: Instant::now(),
            used: 0,
            blocked_until: None,
        }
    }

    fn roll(&mut self, now: Instant) {
        if now >= self.started + self.length {
            self.started = now;
            self.used = 0;
        }
    }

    /// When requests are answered again: the end of a forced block, else of the window.
    fn reset_at(&self) -> Instant {
        self.blocked_until.unwrap_or(self.started + self.length)
    }
}

struct User {
    id: String,
    username: String,
    name: String,
    description: String,
    /// The profile link's t.co wrapper and target.
    url: Option<(String, String)>,
    profile_image_url: String,
    pinned_tweet_id: Option<String>,
    protected: bool,
    verified_type: String,
    write_token: Option<String>,
}

struct Tweet {
    id: u64,
    author: String,
    text: String,
    urls: Vec<Value>,
    media: Vec<(String, String)>,
    created_at: DateTime<Utc>,
    history: Vec<String>,
    /// Replaced by an edit or deleted: no longer on the timeline.
    gone: bool,
    deleted: bool,
}

struct Inner {
    bearer: String,
    users: BTreeMap<String, User>,
    tweets: BTreeMap<u64, Tweet>,
    next_id: u64,
    next_tco: u64,
    windows: HashMap<XEndpoint, Window>,
    failures: HashMap<XEndpoint, VecDeque<Failure>>,
    calls: Vec<Call>,
    consumer_secret: Option<String>,
    webhooks: Vec<push::Webhook>,
    activity_subs: Vec<push::ActivitySub>,
    /// (webhook id, user id)
    aaa_subs: std::collections::BTreeSet<(String, String)>,
    delivered: Vec<Delivery>,
    last_sent: Option<(url::Url, String, String)>,
    next_crc: u64,
}

impl FakeX {
    /// Starts the fake; requests must carry `bearer` (the app's token).
    pub async fn start(bearer: &str) -> std::io::Result<FakeX> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let url = url::Url::parse(&format!("http://{addr}/"))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let (shutdown, rx) = watch::channel(false);
        // X's published app limits per 15 minutes.
        let fifteen = Duration::from_secs(900);
        let windows = HashMap::from([
            (XEndpoint::Timeline, Window::new(1500, fifteen)),
            (XEndpoint::Users, Window::new(300, fifteen)),
            (XEndpoint::Delete, Window::new(50, fifteen)),
            (XEndpoint::Webhooks, Window::new(15, fifteen)),
            (XEndpoint::ActivitySubscriptions, Window::new(50, fifteen)),
            (
                XEndpoint::AccountActivitySubscribe,
                Window::new(500, fifteen),
            ),
        ]);
        let shared = Arc::new(Shared {
            url,
            client: reqwest::Client::new(),
            inner: Mutex::new(Inner {
                bearer: bearer.to_owned(),
                users: BTreeMap::new(),
                tweets: BTreeMap::new(),
                next_id: 1_800_000_000_000_000_000,
                next_tco: 1,
                windows,
                failures: HashMap::new(),
                calls: Vec::new(),
                consumer_secret: None,
                webhooks: Vec::new(),
                activity_subs: Vec::new(),
                aaa_subs: Default::default(),
                delivered: Vec::new(),
                last_sent: None,
                next_crc: 0,
            }),
            _shutdown: shutdown,
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        super::spawn_server(listener, app, rx, "fake X");
        Ok(FakeX { shared })
    }

    pub fn url(&self) -> url::Url {
        self.shared.url.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.inner.lock().expect("fake X lock")
    }

    /// Adds a user; `link` is the profile's website (served t.co-wrapped).
    pub fn add_user(&self, id: &str, username: &str, name: &str, bio: &str, link: Option<&str>) {
        let mut inner = self.lock();
        let url = link.map(|l| (inner.tco(), l.to_owned()));
        inner.users.insert(
            id.to_owned(),
            User {
                id: id.to_owned(),
                username: username.to_owned(),
                name: name.to_owned(),
                description: bio.to_owned(),
                url,
                profile_image_url: format!(
                    "https://pbs.twimg.com/profile_images/{id}/a_normal.jpg"
                ),
                pinned_tweet_id: None,
                protected: false,
                verified_type: "business".into(),
                write_token: None,
            },
        );
    }

    /// The OAuth 2.0 user token that may delete this user's posts.
    pub fn set_write_token(&self, user: &str, token: &str) {
        if let Some(u) = self.lock().users.get_mut(user) {
            u.write_token = Some(token.to_owned());
        }
    }

    /// Replaces the app token requests must carry (a revoked token: set another).
    pub fn set_bearer(&self, token: &str) {
        self.lock().bearer = token.to_owned();
    }

    /// Posts `text` as `user`; every http(s) word is wrapped in a new t.co link. The post's id.
    pub fn publish(&self, user: &str, text: &str) -> String {
        self.publish_with_media(user, text, &[])
    }

    pub fn publish_with_media(&self, user: &str, text: &str, media: &[&str]) -> String {
        let mut inner = self.lock();
        let id = inner.next_id();
        let (mut text, mut urls) = inner.wrap(text);
        let media: Vec<(String, String)> = media
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("3_{id}{i}"), (*m).to_owned()))
            .collect();
        // X appends one link for the attachments, pointing at the post's media view.
        if let Some((key, _)) = media.first() {
            let tco = inner.tco();
            let start = text.chars().count() + 1;
            text = format!("{text} {tco}");
            urls.push(json!({
                "start": start, "end": start + tco.chars().count(), "url": tco,
                "expanded_url": format!("https://x.com/i/web/status/{id}/photo/1"),
                "display_url": format!("pic.x.com/{}", &tco[13..]), "media_key": key,
            }));
        }
        inner.tweets.insert(
            id,
            Tweet {
                id,
                author: user.to_owned(),
                text,
                urls,
                media,
                created_at: Utc::now(),
                history: vec![id.to_string()],
                gone: false,
                deleted: false,
            },
        );
        let deliveries = inner.deliveries(push::Event::Created(&inner.tweets[&id]));
        drop(inner);
        self.send(deliveries);
        id.to_string()
    }

    /// Edits a post as X does: a new post whose history lists every version, the old one
    /// leaves the timeline. The new version's id.
    pub fn edit(&self, post: &str, text: &str) -> String {
        let mut inner = self.lock();
        let old: u64 = post.parse().expect("a post id");
        let id = inner.next_id();
        let (text, urls) = inner.wrap(text);
        let old = inner.tweets.get_mut(&old).expect("a known post");
        old.gone = true;
        let mut history = old.history.clone();
        history.push(id.to_string());
        let (author, media) = (old.author.clone(), old.media.clone());
        inner.tweets.insert(
            id,
            Tweet {
                id,
                author,
                text,
                urls,
                media,
                created_at: Utc::now(),
                history,
                gone: false,
                deleted: false,
            },
        );
        // X delivers an edit as the new version's post.create.
        let deliveries = inner.deliveries(push::Event::Created(&inner.tweets[&id]));
        drop(inner);
        self.send(deliveries);
        id.to_string()
    }

    /// Points the profile link's t.co wrapper at another target; the t.co URL stays.
    pub fn set_link_target(&self, user: &str, target: &str) {
        if let Some(u) = self.lock().users.get_mut(user)
            && let Some((_, t)) = &mut u.url
        {
            *t = target.to_owned();
        }
    }

    /// The profile link's t.co wrapper, as the API shows it in `url`.
    pub fn link_wrapper(&self, user: &str) -> Option<String> {
        self.lock()
            .users
            .get(user)
            .and_then(|u| u.url.as_ref().map(|(w, _)| w.clone()))
    }

    pub fn set_username(&self, user: &str, username: &str) {
        if let Some(u) = self.lock().users.get_mut(user) {
            u.username = username.to_owned();
        }
    }

    pub fn set_name(&self, user: &str, name: &str) {
        if let Some(u) = self.lock().users.get_mut(user) {
            u.name = name.to_owned();
        }
    }

    /// Whether the post (any version) is still there.
    pub fn exists(&self, post: &str) -> bool {
        post.parse::<u64>()
            .ok()
            .and_then(|id| self.lock().tweets.get(&id).map(|t| !t.deleted))
            .unwrap_or(false)
    }

    /// The endpoint's budget: `limit` requests per `window`, starting now.
    pub fn set_limit(&self, endpoint: XEndpoint, limit: u64, window: Duration) {
        self.lock()
            .windows
            .insert(endpoint, Window::new(limit, window));
    }

    pub fn fail_next(&self, endpoint: XEndpoint, failure: Failure) {
        self.lock()
            .failures
            .entry(endpoint)
            .or_default()
            .push_back(failure);
    }

    /// Every request so far.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    pub fn count(&self, endpoint: XEndpoint) -> usize {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.endpoint == endpoint)
            .count()
    }

    /// Requests answered 429 because the window was spent (not forced).
    pub fn over_budget(&self, endpoint: XEndpoint) -> usize {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.endpoint == endpoint && c.status == 429 && !c.forced)
            .count()
    }
}

impl Inner {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1 + (self.next_id % 7) * 4096;
        self.next_id
    }

    fn tco(&mut self) -> String {
        self.next_tco += 1;
        format!("https://t.co/F{:09}", self.next_tco)
    }

    /// The text with each link replaced by a t.co wrapper, and X's url entities for them.
    fn wrap(&mut self, text: &str) -> (String, Vec<Value>) {
        let mut out = String::new();
        let mut urls = Vec::new();
        for (i, word) in text.split(' ').enumerate() {
            if i > 0 {
                out.push(' ');
            }
            if word.starts_with("https://") || word.starts_with("http://") {
                let tco = self.tco();
                let start = out.chars().count();
                out.push_str(&tco);
                let display: String = word
                    .trim_start_matches("https://")
                    .trim_start_matches("http://")
                    .chars()
                    .take(25)
                    .collect();
                urls.push(json!({
                    "start": start,
                    "end": start + tco.chars().count(),
                    "url": tco,
                    "expanded_url": word,
                    "display_url": display,
                }));
            } else {
                out.push_str(word);
            }
        }
        (out, urls)
    }
}

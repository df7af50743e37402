//! An in-process stand-in for a Mastodon server's REST API v1.
//!
//! It exists so the daemon's poller can be tested against the behaviour that makes
//! polling hard in practice: snowflake-style ids compared numerically, `min_id` versus
//! `since_id` paging, `Link` headers, rate-limit headers and 429s, token checks, edits,
//! deletions, profile changes, and servers that hang or cut responses short. Shapes
//! follow Mastodon's own serializers (REST::StatusSerializer, REST::AccountSerializer)
//! rather than the documentation examples where the two differ.
//!
//! It binds to 127.0.0.1 only and never opens outbound connections.

mod entities;
mod html;
mod http;

use entities::*;
use html::*;

pub use html::{status_html, status_html_with_base};
use http::*;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

/// Mastodon's default per-token and per-IP API budget: 300 requests per 5 minutes.
const DEFAULT_RATE_LIMIT: u32 = 300;
const DEFAULT_RATE_WINDOW: Duration = Duration::from_secs(300);
const DEFAULT_STATUSES_LIMIT: u64 = 20;
/// Base used by [`status_html`] for hashtag links when no server is at hand.
pub const DEFAULT_BASE: &str = "https://mastodon.example";

/// A forced answer for the next request (whatever its path), to exercise the poller's
/// error handling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Answer that HTTP status with `{"error": "<reason phrase>"}`.
    Status(u16),
    /// Answer 429 as rack-attack does, with `X-RateLimit-Reset` this far ahead; the
    /// real rate-limit counter is left alone.
    TooManyRequests { reset_in_secs: u64 },
    /// Wait this long, then answer the request normally: a slow server, for client
    /// timeouts.
    Hang(Duration),
    /// Answer 200 with the normal headers but only the first half of the JSON body.
    TruncatedJson,
}

/// A change to an account's profile; `None` fields are left as they are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProfileUpdate {
    pub display_name: Option<String>,
    /// Bio, as HTML.
    pub note: Option<String>,
    pub url: Option<String>,
    pub avatar: Option<String>,
    pub header: Option<String>,
    /// Profile metadata as (name, value HTML) pairs.
    pub fields: Option<Vec<(String, String)>>,
    pub locked: Option<bool>,
    pub bot: Option<bool>,
    /// `Some(Some(acct))` marks the account as moved to `acct`; `Some(None)` clears it.
    pub moved_to: Option<Option<String>>,
}

/// One request as the fake received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// The bearer token the request carried, if any.
    pub bearer: Option<String>,
    pub received_at: DateTime<Utc>,
}

/// Handle to a running fake Mastodon server. Cheap to clone; clones share one server.
#[derive(Clone)]
pub struct FakeMastodon {
    shared: Arc<Shared>,
}

struct Shared {
    url: url::Url,
    /// `http://127.0.0.1:PORT`, the instance's own origin used in ids and links.
    base: String,
    authority: String,
    inner: Mutex<Inner>,
    /// When each status was first handed to a client: the moment a poller could first see it.
    first_served: Mutex<HashMap<u64, Instant>>,
    shutdown: watch::Sender<bool>,
    /// While true, every DELETE waits (recorded, unanswered): a platform slow to delete.
    hold_deletes: watch::Sender<bool>,
    /// Events for every open `GET /api/v1/streaming/user` connection.
    stream: broadcast::Sender<StreamMsg>,
}

/// What open streams are told: an event, or to hang up (a dropped connection).
#[derive(Clone, Debug)]
enum StreamMsg {
    Event { event: &'static str, data: String },
    Close,
}

struct Inner {
    accounts: HashMap<String, Account>,
    statuses: BTreeMap<u64, Status>,
    last_id: u64,
    changed: HashMap<String, Instant>,
    failures: VecDeque<Failure>,
    token: Option<String>,
    /// The token DELETE needs (`write:statuses`); other tokens get 403.
    write_token: Option<String>,
    /// Forced statuses for the next DELETE requests only, so the poller cannot take them.
    delete_failures: VecDeque<u16>,
    /// Streaming refuses connections (503) while set: an outage of the streaming server.
    streaming_down: bool,
    rate: RateWindow,
    /// Requests answered 429 because they were over the window's limit.
    over_limit: usize,
    requests: Vec<RecordedRequest>,
}

#[derive(Clone)]
struct Account {
    id: String,
    username: String,
    display_name: String,
    note: String,
    fields: Vec<(String, String)>,
    url: Option<String>,
    avatar: Option<String>,
    header: Option<String>,
    locked: bool,
    bot: bool,
    moved_to: Option<String>,
    created_at: DateTime<Utc>,
}

#[derive(Clone)]
struct Status {
    id: u64,
    account_id: String,
    content: String,
    created_at: DateTime<Utc>,
    edited_at: Option<DateTime<Utc>>,
    media: Vec<(u64, String)>,
    application: Option<String>,
    in_reply_to: Option<(u64, String)>,
    reblog_of: Option<u64>,
}

struct RateWindow {
    limit: u32,
    window: Duration,
    start: Instant,
    used: u32,
}

struct RateInfo {
    limit: u32,
    remaining: u32,
    reset_at: DateTime<Utc>,
    exceeded: bool,
}

impl RateWindow {
    /// Fixed windows measured from the last `set_rate_limit` (rack-attack aligns them
    /// to the epoch instead; measuring from a known point keeps tests deterministic).
    fn take(&mut self, now: Instant) -> RateInfo {
        let window = self.window.max(Duration::from_millis(1));
        let elapsed = now.saturating_duration_since(self.start);
        if elapsed >= window {
            let windows = elapsed.as_nanos() / window.as_nanos();
            let skip = u32::try_from(windows).unwrap_or(u32::MAX);
            self.start += window.saturating_mul(skip);
            self.used = 0;
        }
        self.used = self.used.saturating_add(1);
        let reset_in = (self.start + window).saturating_duration_since(now);
        RateInfo {
            limit: self.limit,
            remaining: self.limit.saturating_sub(self.used),
            reset_at: Utc::now() + chrono::Duration::from_std(reset_in).unwrap_or_default(),
            exceeded: self.used > self.limit,
        }
    }
}

impl FakeMastodon {
    /// Starts the fake on 127.0.0.1 with an ephemeral port.
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let url = url::Url::parse(&format!("http://{addr}/"))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            url,
            base: format!("http://{addr}"),
            authority: addr.to_string(),
            stream: broadcast::channel(4096).0,
            inner: Mutex::new(Inner {
                accounts: HashMap::new(),
                statuses: BTreeMap::new(),
                last_id: 0,
                changed: HashMap::new(),
                failures: VecDeque::new(),
                token: None,
                write_token: None,
                delete_failures: VecDeque::new(),
                streaming_down: false,
                rate: RateWindow {
                    limit: DEFAULT_RATE_LIMIT,
                    window: DEFAULT_RATE_WINDOW,
                    start: Instant::now(),
                    used: 0,
                },
                over_limit: 0,
                requests: Vec::new(),
            }),
            first_served: Mutex::new(HashMap::new()),
            shutdown,
            hold_deletes: watch::channel(false).0,
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        super::spawn_server(listener, app, shutdown_rx, "fake Mastodon");
        tracing::debug!(%addr, "fake Mastodon listening");
        Ok(Self { shared })
    }

    /// The instance URL, `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> url::Url {
        self.shared.url.clone()
    }

    /// Renders plain text as this instance would, with hashtag links on its own origin.
    pub fn render(&self, text: &str) -> String {
        status_html_with_base(&self.shared.base, text)
    }

    /// Adds (or replaces) a local account. `fields` are (name, value HTML) pairs.
    pub fn add_account(
        &self,
        id: &str,
        username: &str,
        display_name: &str,
        note_html: &str,
        fields: &[(&str, &str)],
    ) {
        let account = Account {
            id: id.to_owned(),
            username: username.to_owned(),
            display_name: display_name.to_owned(),
            note: note_html.to_owned(),
            fields: fields
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            url: None,
            avatar: None,
            header: None,
            locked: false,
            bot: false,
            moved_to: None,
            created_at: Utc::now(),
        };
        let mut inner = self.lock();
        inner.accounts.insert(id.to_owned(), account);
        inner.changed.insert(id.to_owned(), Instant::now());
    }

    /// Removes an account and its statuses, so its endpoints answer 404.
    pub fn remove_account(&self, account_id: &str) {
        let mut inner = self.lock();
        inner.accounts.remove(account_id);
        inner.statuses.retain(|_, s| s.account_id != account_id);
        inner.changed.insert(account_id.to_owned(), Instant::now());
    }

    /// Publishes a public status now. Panics if the account is unknown.
    pub fn publish(&self, account_id: &str, content_html: &str) -> String {
        self.publish_with(account_id, content_html, &[], None)
    }

    /// Publishes a status with one image attachment per blurhash and, optionally, the
    /// name of the posting application.
    pub fn publish_with(
        &self,
        account_id: &str,
        content_html: &str,
        media_blurhashes: &[&str],
        application: Option<&str>,
    ) -> String {
        let mut inner = self.lock();
        assert!(
            inner.accounts.contains_key(account_id),
            "publish: unknown account {account_id}"
        );
        let id = next_id(&mut inner);
        let media = media_blurhashes
            .iter()
            .map(|hash| (next_id(&mut inner), (*hash).to_owned()))
            .collect();
        let id = insert_status(
            &mut inner,
            Status {
                id,
                account_id: account_id.to_owned(),
                content: content_html.to_owned(),
                created_at: Utc::now(),
                edited_at: None,
                media,
                application: application.map(str::to_owned),
                in_reply_to: None,
                reblog_of: None,
            },
        );
        self.stream_status(&inner, "update", &id);
        id
    }

    /// Publishes a reply to `in_reply_to_id` (which must exist), for `exclude_replies`.
    pub fn publish_reply(
        &self,
        account_id: &str,
        in_reply_to_id: &str,
        content_html: &str,
    ) -> String {
        let mut inner = self.lock();
        let parent = parse_id(in_reply_to_id)
            .and_then(|id| inner.statuses.get(&id))
            .map(|s| (s.id, s.account_id.clone()))
            .unwrap_or_else(|| panic!("publish_reply: unknown status {in_reply_to_id}"));
        assert!(
            inner.accounts.contains_key(account_id),
            "publish_reply: unknown account {account_id}"
        );
        let id = next_id(&mut inner);
        insert_status(
            &mut inner,
            Status {
                id,
                account_id: account_id.to_owned(),
                content: content_html.to_owned(),
                created_at: Utc::now(),
                edited_at: None,
                media: Vec::new(),
                application: None,
                in_reply_to: Some(parent),
                reblog_of: None,
            },
        )
    }

    /// Boosts `status_id` from `account_id`, for `exclude_reblogs`.
    pub fn reblog(&self, account_id: &str, status_id: &str) -> String {
        let mut inner = self.lock();
        let original = parse_id(status_id)
            .filter(|id| inner.statuses.contains_key(id))
            .unwrap_or_else(|| panic!("reblog: unknown status {status_id}"));
        assert!(
            inner.accounts.contains_key(account_id),
            "reblog: unknown account {account_id}"
        );
        let id = next_id(&mut inner);
        insert_status(
            &mut inner,
            Status {
                id,
                account_id: account_id.to_owned(),
                content: String::new(),
                created_at: Utc::now(),
                edited_at: None,
                media: Vec::new(),
                application: None,
                in_reply_to: None,
                reblog_of: Some(original),
            },
        )
    }

    /// Replaces a status's content and sets `edited_at`. Panics if the status is unknown.
    pub fn edit(&self, status_id: &str, content_html: &str) {
        let mut inner = self.lock();
        let status = parse_id(status_id)
            .and_then(|id| inner.statuses.get_mut(&id))
            .unwrap_or_else(|| panic!("edit: unknown status {status_id}"));
        status.content = content_html.to_owned();
        status.edited_at = Some(Utc::now());
        inner.changed.insert(status_id.to_owned(), Instant::now());
        self.stream_status(&inner, "status.update", status_id);
    }

    /// Sends a status event to open streams, as Mastodon's streaming server does.
    fn stream_status(&self, inner: &Inner, event: &'static str, status_id: &str) {
        if let Some(status) = parse_id(status_id).and_then(|id| inner.statuses.get(&id)) {
            let data = status_json(&self.shared, inner, status).to_string();
            let _ = self.shared.stream.send(StreamMsg::Event { event, data });
        }
    }

    /// Hangs up every open stream (the client sees its connection end).
    pub fn drop_streams(&self) {
        let _ = self.shared.stream.send(StreamMsg::Close);
    }

    /// While true, the streaming endpoint answers 503 and open streams are hung up.
    pub fn set_streaming_down(&self, down: bool) {
        self.lock().streaming_down = down;
        if down {
            self.drop_streams();
        }
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.shared.stream.receiver_count()
    }

    /// With `Some(token)`, DELETE needs that bearer token (403 for any other), the way a
    /// status can only be deleted with a `write:statuses` token of its owner.
    pub fn require_write_token(&self, token: Option<String>) {
        self.lock().write_token = token;
    }

    /// Holds every DELETE (recorded as it arrives, not answered) until
    /// [`FakeMastodon::release_deletes`]: a platform that takes its time to delete.
    pub fn hold_deletes(&self) {
        self.shared.hold_deletes.send_replace(true);
    }

    /// Lets held and later DELETEs be answered.
    pub fn release_deletes(&self) {
        self.shared.hold_deletes.send_replace(false);
    }

    /// Answers the next DELETE with this status (`{"error": reason}`), leaving other requests be.
    pub fn fail_next_delete(&self, status: u16) {
        self.lock().delete_failures.push_back(status);
    }

    /// Whether a status exists now.
    pub fn has_status(&self, status_id: &str) -> bool {
        parse_id(status_id).is_some_and(|id| self.lock().statuses.contains_key(&id))
    }

    /// Deletes a status (and its boosts, as Mastodon does). Panics if it is unknown.
    pub fn delete(&self, status_id: &str) {
        let mut inner = self.lock();
        let removed = parse_id(status_id).is_some_and(|id| remove_status(&mut inner, id));
        assert!(removed, "delete: unknown status {status_id}");
        let _ = self.shared.stream.send(StreamMsg::Event {
            event: "delete",
            data: status_id.to_owned(),
        });
    }

    /// Changes an account's profile. Panics if the account is unknown.
    pub fn update_profile(&self, account_id: &str, update: ProfileUpdate) {
        let mut inner = self.lock();
        let account = inner
            .accounts
            .get_mut(account_id)
            .unwrap_or_else(|| panic!("update_profile: unknown account {account_id}"));
        let ProfileUpdate {
            display_name,
            note,
            url,
            avatar,
            header,
            fields,
            locked,
            bot,
            moved_to,
        } = update;
        if let Some(v) = display_name {
            account.display_name = v;
        }
        if let Some(v) = note {
            account.note = v;
        }
        if let Some(v) = url {
            account.url = Some(v);
        }
        if let Some(v) = avatar {
            account.avatar = Some(v);
        }
        if let Some(v) = header {
            account.header = Some(v);
        }
        if let Some(v) = fields {
            account.fields = v;
        }
        if let Some(v) = locked {
            account.locked = v;
        }
        if let Some(v) = bot {
            account.bot = v;
        }
        if let Some(v) = moved_to {
            account.moved_to = v;
        }
        inner.changed.insert(account_id.to_owned(), Instant::now());
    }

    /// When the fake last created, edited, deleted or updated that status or account,
    /// so tests can measure how long the daemon took to notice.
    pub fn changed_at(&self, status_or_account_id: &str) -> Option<Instant> {
        self.lock().changed.get(status_or_account_id).copied()
    }

    /// The Status entity as the API would serve it now, `None` if absent.
    pub fn status_json(&self, status_id: &str) -> Option<Value> {
        let inner = self.lock();
        let id = parse_id(status_id)?;
        inner
            .statuses
            .get(&id)
            .map(|s| status_json(&self.shared, &inner, s))
    }

    /// The Account entity as the API would serve it now, `None` if absent.
    pub fn account_json(&self, account_id: &str) -> Option<Value> {
        let inner = self.lock();
        inner
            .accounts
            .get(account_id)
            .map(|a| account_json(&self.shared, &inner, a, true))
    }

    /// Queues a forced answer; one is consumed per request, in order.
    pub fn fail_next(&self, failure: Failure) {
        self.lock().failures.push_back(failure);
    }

    /// With `Some(token)`, every request must carry `Authorization: Bearer <token>`.
    pub fn require_token(&self, token: Option<String>) {
        self.lock().token = token;
    }

    /// Replaces the rate limit and starts a fresh window now.
    pub fn set_rate_limit(&self, limit: u32, window: Duration) {
        self.lock().rate = RateWindow {
            limit,
            window,
            start: Instant::now(),
            used: 0,
        };
    }

    /// When status `id` was first listed to a client, if it has been: a polled change's latency
    /// counted from here is what the poller adds after its poll interval's wait.
    pub fn first_served(&self, id: &str) -> Option<Instant> {
        let id = parse_id(id)?;
        self.shared
            .first_served
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&id)
            .copied()
    }

    /// Requests received whose path starts with `path_prefix`, whatever their outcome.
    pub fn request_count(&self, path_prefix: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.path.starts_with(path_prefix))
            .count()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// Requests answered 429 because their window's limit was spent (forced 429s not counted).
    pub fn over_limit(&self) -> usize {
        self.lock().over_limit
    }

    /// Stops accepting connections and lets the server task end once open ones close.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.lock()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("fake Mastodon state poisoned")
    }
}

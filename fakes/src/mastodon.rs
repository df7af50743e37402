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
                requests: Vec::new(),
            }),
            first_served: Mutex::new(HashMap::new()),
            shutdown,
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

/// Snowflake-like: milliseconds shifted left 16 bits, forced strictly increasing so
/// ids order like publication even within one millisecond.
fn next_id(inner: &mut Inner) -> u64 {
    let ms = u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0);
    let candidate = ms << 16;
    inner.last_id = candidate.max(inner.last_id + 1);
    inner.last_id
}

fn insert_status(inner: &mut Inner, status: Status) -> String {
    let id = status.id.to_string();
    inner.statuses.insert(status.id, status);
    inner.changed.insert(id.clone(), Instant::now());
    id
}

fn remove_status(inner: &mut Inner, id: u64) -> bool {
    if inner.statuses.remove(&id).is_none() {
        return false;
    }
    let boosts: Vec<u64> = inner
        .statuses
        .values()
        .filter(|s| s.reblog_of == Some(id))
        .map(|s| s.id)
        .collect();
    for boost in boosts {
        inner.statuses.remove(&boost);
        inner.changed.insert(boost.to_string(), Instant::now());
    }
    inner.changed.insert(id.to_string(), Instant::now());
    true
}

/// Parses ids the way Rails' `to_i` does: leading digits only, blank means absent.
fn parse_id(raw: &str) -> Option<u64> {
    let digits: String = raw
        .trim()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

// ---------------------------------------------------------------------------------
// Entities
// ---------------------------------------------------------------------------------

fn account_json(shared: &Shared, inner: &Inner, account: &Account, with_moved: bool) -> Value {
    let base = &shared.base;
    let statuses: Vec<&Status> = inner
        .statuses
        .values()
        .filter(|s| s.account_id == account.id)
        .collect();
    let last_status_at = statuses
        .iter()
        .map(|s| s.created_at)
        .max()
        .map(|t| t.format("%Y-%m-%d").to_string());
    let avatar = account
        .avatar
        .clone()
        .unwrap_or_else(|| format!("{base}/avatars/original/missing.png"));
    let header = account
        .header
        .clone()
        .unwrap_or_else(|| format!("{base}/headers/original/missing.png"));
    let midnight = account
        .created_at
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or(account.created_at);
    let mut json = json!({
        "id": account.id,
        "username": account.username,
        "acct": account.username,
        "display_name": account.display_name,
        "locked": account.locked,
        "bot": account.bot,
        "discoverable": true,
        "indexable": false,
        "group": false,
        "created_at": millis(midnight),
        "note": account.note,
        "url": account.url.clone().unwrap_or_else(|| format!("{base}/@{}", account.username)),
        "uri": format!("{base}/users/{}", account.username),
        "avatar": avatar,
        "avatar_static": avatar,
        "header": header,
        "header_static": header,
        "followers_count": 0,
        "following_count": 0,
        "statuses_count": statuses.len(),
        "last_status_at": last_status_at,
        "hide_collections": null,
        "noindex": false,
        "emojis": [],
        "roles": [],
        "fields": account.fields.iter().map(|(name, value)| json!({
            "name": name,
            "value": value,
            "verified_at": null,
        })).collect::<Vec<_>>(),
    });
    // Mastodon only includes `moved` when the account has moved, and never nests it.
    if with_moved && let Some(target) = &account.moved_to {
        json["moved"] = moved_account_json(shared, inner, target);
    }
    json
}

fn moved_account_json(shared: &Shared, inner: &Inner, acct: &str) -> Value {
    let acct = acct.trim_start_matches('@');
    let (username, domain) = match acct.split_once('@') {
        Some((user, domain)) if domain != shared.authority => (user, Some(domain)),
        Some((user, _)) => (user, None),
        None => (acct, None),
    };
    if domain.is_none()
        && let Some(local) = inner
            .accounts
            .values()
            .find(|a| a.username.eq_ignore_ascii_case(username))
    {
        return account_json(shared, inner, local, false);
    }
    let domain = domain.unwrap_or(&shared.authority);
    let synthetic_id = acct.bytes().fold(1_000_000_007_u64, |h, b| {
        h.wrapping_mul(31).wrapping_add(u64::from(b))
    }) % 1_000_000_000_000;
    json!({
        "id": synthetic_id.to_string(),
        "username": username,
        "acct": format!("{username}@{domain}"),
        "display_name": username,
        "locked": false,
        "bot": false,
        "discoverable": true,
        "indexable": false,
        "group": false,
        "created_at": millis(Utc::now().date_naive().and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or_else(Utc::now)),
        "note": "",
        "url": format!("https://{domain}/@{username}"),
        "uri": format!("https://{domain}/users/{username}"),
        "avatar": format!("{}/avatars/original/missing.png", shared.base),
        "avatar_static": format!("{}/avatars/original/missing.png", shared.base),
        "header": format!("{}/headers/original/missing.png", shared.base),
        "header_static": format!("{}/headers/original/missing.png", shared.base),
        "followers_count": 0,
        "following_count": 0,
        "statuses_count": 0,
        "last_status_at": null,
        "hide_collections": null,
        "emojis": [],
        "roles": [],
        "fields": [],
    })
}

fn status_json(shared: &Shared, inner: &Inner, status: &Status) -> Value {
    let base = &shared.base;
    let Some(account) = inner.accounts.get(&status.account_id) else {
        return Value::Null;
    };
    let reblog = status
        .reblog_of
        .and_then(|id| inner.statuses.get(&id))
        .map(|original| status_json(shared, inner, original))
        .unwrap_or(Value::Null);
    let username = &account.username;
    let (uri, url) = if status.reblog_of.is_some() {
        let activity = format!("{base}/users/{username}/statuses/{}/activity", status.id);
        (activity, Value::Null)
    } else {
        (
            format!("{base}/users/{username}/statuses/{}", status.id),
            json!(format!("{base}/@{username}/{}", status.id)),
        )
    };
    let media: Vec<Value> = status
        .media
        .iter()
        .map(|(id, blurhash)| {
            let path = format!("{base}/system/media_attachments/files/{id}");
            json!({
                "id": id.to_string(),
                "type": "image",
                "url": format!("{path}/original/{id}.png"),
                "preview_url": format!("{path}/small/{id}.png"),
                "remote_url": null,
                "preview_remote_url": null,
                "text_url": null,
                "meta": {
                    "original": {"width": 640, "height": 480, "size": "640x480", "aspect": 1.3333333333333333},
                    "small": {"width": 400, "height": 300, "size": "400x300", "aspect": 1.3333333333333333},
                },
                "description": null,
                "blurhash": blurhash,
            })
        })
        .collect();
    let tags: Vec<Value> = hashtags(&status.content)
        .into_iter()
        .map(|name| json!({"name": name, "url": format!("{base}/tags/{}", encode_path(&name))}))
        .collect();
    let mut json = json!({
        "id": status.id.to_string(),
        "created_at": millis(status.created_at),
        "in_reply_to_id": status.in_reply_to.as_ref().map(|(id, _)| id.to_string()),
        "in_reply_to_account_id": status.in_reply_to.as_ref().map(|(_, account)| account.clone()),
        "sensitive": false,
        "spoiler_text": "",
        "visibility": "public",
        "language": if status.reblog_of.is_some() { Value::Null } else { json!("en") },
        "uri": uri,
        "url": url,
        "replies_count": inner.statuses.values().filter(|s| s.in_reply_to.as_ref().is_some_and(|(id, _)| *id == status.id)).count(),
        "reblogs_count": inner.statuses.values().filter(|s| s.reblog_of == Some(status.id)).count(),
        "favourites_count": 0,
        "quotes_count": 0,
        "edited_at": status.edited_at.map(millis),
        "content": status.content,
        "reblog": reblog,
        "account": account_json(shared, inner, account, true),
        "media_attachments": media,
        "mentions": [],
        "tags": tags,
        "emojis": [],
        "card": null,
        "poll": null,
        "quote": null,
    });
    // Mastodon omits `application` unless the author chose to show it.
    if let Some(name) = &status.application {
        json["application"] = json!({"name": name, "website": null});
    }
    json
}

/// Hashtags as Mastodon's formatter marks them up (`#<span>tag</span>`), lowercased.
fn hashtags(html: &str) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    for piece in html.split("#<span>").skip(1) {
        if let Some(end) = piece.find("</span>") {
            let tag = html_to_text(&piece[..end]).to_lowercase();
            if !tag.is_empty() && !tags.contains(&tag) {
                tags.push(tag);
            }
        }
    }
    tags
}

/// Recovers the source text Mastodon returns on deletion (for delete-and-redraft).
fn html_to_text(html: &str) -> String {
    let with_breaks = html
        .replace("</p><p>", "\n\n")
        .replace("<br />", "\n")
        .replace("<br/>", "\n")
        .replace("<br>", "\n");
    let mut text = String::new();
    let mut in_tag = false;
    for c in with_breaks.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

// ---------------------------------------------------------------------------------
// HTTP layer
// ---------------------------------------------------------------------------------

struct Reply {
    status: StatusCode,
    body: Value,
    link: Option<String>,
}

impl Reply {
    fn ok(body: Value) -> Self {
        Self {
            status: StatusCode::OK,
            body,
            link: None,
        }
    }

    fn error(status: StatusCode, message: &str) -> Self {
        Self {
            status,
            body: json!({"error": message}),
            link: None,
        }
    }

    fn not_found() -> Self {
        Self::error(StatusCode::NOT_FOUND, "Record not found")
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        });
    let (rate, forced, required_token, write_token) = {
        let mut inner = shared.lock();
        inner.requests.push(RecordedRequest {
            method: method.to_string(),
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            bearer: bearer.clone(),
            received_at: Utc::now(),
        });
        let rate = inner.rate.take(Instant::now());
        let forced = if rate.exceeded {
            None
        } else {
            inner.failures.pop_front()
        };
        (rate, forced, inner.token.clone(), inner.write_token.clone())
    };
    tracing::debug!(%method, %uri, "fake Mastodon request");
    if rate.exceeded {
        let reply = Reply::error(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
        return respond(reply, &rate, false);
    }
    let mut truncate = false;
    match forced {
        Some(Failure::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let reason = status.canonical_reason().unwrap_or("Error");
            return respond(Reply::error(status, reason), &rate, false);
        }
        Some(Failure::TooManyRequests { reset_in_secs }) => {
            let forced_rate = RateInfo {
                limit: rate.limit,
                remaining: 0,
                reset_at: Utc::now()
                    + chrono::Duration::seconds(
                        i64::try_from(reset_in_secs).unwrap_or(i64::MAX / 1000),
                    ),
                exceeded: true,
            };
            let reply = Reply::error(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
            return respond(reply, &forced_rate, false);
        }
        Some(Failure::Hang(duration)) => {
            let mut shutdown = shared.shutdown.subscribe();
            tokio::select! {
                _ = tokio::time::sleep(duration) => {}
                _ = shutdown.wait_for(|stopped| *stopped) => {}
            }
        }
        Some(Failure::TruncatedJson) => truncate = true,
        None => {}
    }
    // The write token is a token of the same account: it reads too.
    if let Some(required) = required_token
        && bearer.as_deref() != Some(required.as_str())
        && (write_token.is_none() || bearer != write_token)
    {
        let reply = Reply::error(StatusCode::UNAUTHORIZED, "The access token is invalid");
        let mut response = respond(reply, &rate, false);
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(
                "Bearer realm=\"Doorkeeper\", error=\"invalid_token\", error_description=\"The access token is invalid\"",
            ),
        );
        return response;
    }
    if method == Method::DELETE
        && let Some(code) = shared.lock().delete_failures.pop_front()
    {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let reason = status.canonical_reason().unwrap_or("Error");
        return respond(Reply::error(status, reason), &rate, false);
    }
    if method == Method::DELETE
        && let Some(write) = &write_token
        && bearer.as_deref() != Some(write.as_str())
    {
        let reply = Reply::error(
            StatusCode::FORBIDDEN,
            "This action is outside the authorized scopes",
        );
        return respond(reply, &rate, false);
    }
    let streaming = uri.path().trim_end_matches('/') == "/api/v1/streaming/user"
        || (uri.path().trim_end_matches('/') == "/api/v1/streaming"
            && uri
                .query()
                .is_some_and(|q| q.split('&').any(|p| p == "stream=user")));
    if method == Method::GET && streaming {
        return stream(&shared, bearer.is_some(), &rate);
    }
    let reply = route(&shared, &method, &uri);
    respond(reply, &rate, truncate)
}

/// `GET /api/v1/streaming/user`: server-sent events (`event: update|status.update|delete`,
/// `data: …`), a `:)` comment first and `:thump` heartbeats, as Mastodon's streaming server.
fn stream(shared: &Arc<Shared>, authorized: bool, rate: &RateInfo) -> Response {
    if !authorized {
        return respond(
            Reply::error(StatusCode::UNAUTHORIZED, "Missing access token"),
            rate,
            false,
        );
    }
    if shared.lock().streaming_down {
        return respond(
            Reply::error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
            rate,
            false,
        );
    }
    let mut events = shared.stream.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    let (mut writer, reader) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        if writer.write_all(b":)\n").await.is_err() {
            return;
        }
        let mut thump = tokio::time::interval(Duration::from_secs(10));
        loop {
            let text = tokio::select! {
                _ = shutdown.wait_for(|stopped| *stopped) => return,
                _ = thump.tick() => ":thump\n".to_owned(),
                msg = events.recv() => match msg {
                    Ok(StreamMsg::Event { event, data }) => format!("event: {event}\ndata: {data}\n\n"),
                    Ok(StreamMsg::Close) | Err(broadcast::error::RecvError::Closed) => return,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                },
            };
            if writer.write_all(text.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(reader));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-store")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn respond(reply: Reply, rate: &RateInfo, truncate: bool) -> Response {
    let mut body = reply.body.to_string();
    if truncate {
        let mut cut = body.len() / 2;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
    }
    let mut response = (
        reply.status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response();
    let headers = response.headers_mut();
    let reset = rate.reset_at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    for (name, value) in [
        ("x-ratelimit-limit", rate.limit.to_string()),
        ("x-ratelimit-remaining", rate.remaining.to_string()),
        ("x-ratelimit-reset", reset),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    if let Some(link) = reply.link
        && let Ok(value) = HeaderValue::from_str(&link)
    {
        headers.insert(header::LINK, value);
    }
    response
}

fn route(shared: &Shared, method: &Method, uri: &Uri) -> Reply {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    let query: Vec<(String, String)> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let param = |key: &str| {
        query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let inner = shared.lock();
    match (method.clone(), segments.as_slice()) {
        (Method::GET, ["api", "v1", "accounts", "lookup"]) => {
            let Some(acct) = param("acct") else {
                return Reply::not_found();
            };
            let acct = acct.trim_start_matches('@');
            let (username, domain) = acct.split_once('@').unwrap_or((acct, ""));
            if !domain.is_empty() && domain != shared.authority {
                return Reply::not_found();
            }
            inner
                .accounts
                .values()
                .find(|a| a.username.eq_ignore_ascii_case(username))
                .map_or_else(Reply::not_found, |a| {
                    Reply::ok(account_json(shared, &inner, a, true))
                })
        }
        (Method::GET, ["api", "v1", "accounts", id]) => {
            inner.accounts.get(*id).map_or_else(Reply::not_found, |a| {
                Reply::ok(account_json(shared, &inner, a, true))
            })
        }
        (Method::GET, ["api", "v1", "accounts", id, "statuses"]) => {
            account_statuses(shared, &inner, id, &query)
        }
        (Method::GET, ["api", "v1", "statuses", id]) => parse_id(id)
            .and_then(|id| inner.statuses.get(&id))
            .map_or_else(Reply::not_found, |s| {
                Reply::ok(status_json(shared, &inner, s))
            }),
        (Method::DELETE, ["api", "v1", "statuses", id]) => {
            let Some(status) = parse_id(id).and_then(|id| inner.statuses.get(&id)).cloned() else {
                return Reply::not_found();
            };
            let mut body = status_json(shared, &inner, &status);
            // Deletion returns the source text instead of the rendered content.
            if let Some(object) = body.as_object_mut() {
                object.remove("content");
                object.insert("text".into(), json!(html_to_text(&status.content)));
            }
            drop(inner);
            remove_status(&mut shared.lock(), status.id);
            let _ = shared.stream.send(StreamMsg::Event {
                event: "delete",
                data: status.id.to_string(),
            });
            Reply::ok(body)
        }
        _ => Reply::not_found(),
    }
}

/// Rails' `truthy_param?`: present and not one of ActiveModel's false spellings.
fn truthy(value: Option<&str>) -> bool {
    value.is_some_and(|v| !matches!(v, "0" | "f" | "F" | "false" | "FALSE" | "off" | "OFF"))
}

/// Filter keys that Mastodon carries over into the pagination links.
const LINK_KEYS: [&str; 6] = [
    "exclude_reblogs",
    "exclude_replies",
    "limit",
    "only_media",
    "pinned",
    "tagged",
];

fn account_statuses(
    shared: &Shared,
    inner: &Inner,
    account_id: &str,
    query: &[(String, String)],
) -> Reply {
    if !inner.accounts.contains_key(account_id) {
        return Reply::not_found();
    }
    let param = |key: &str| {
        query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    // Rails' limit_param: `to_i.abs`, capped at twice the default.
    let limit = match param("limit") {
        None => DEFAULT_STATUSES_LIMIT,
        Some(raw) => {
            let raw = raw.trim().trim_start_matches(['-', '+']);
            parse_id(raw).unwrap_or(0).min(DEFAULT_STATUSES_LIMIT * 2)
        }
    } as usize;
    let max_id = param("max_id").and_then(parse_id);
    let since_id = param("since_id").and_then(parse_id);
    let min_id = param("min_id").and_then(parse_id);
    let exclude_replies = truthy(param("exclude_replies"));
    let exclude_reblogs = truthy(param("exclude_reblogs"));
    let only_media = truthy(param("only_media"));
    let pinned = truthy(param("pinned"));
    let tagged = param("tagged").map(str::to_lowercase);

    let keep = |s: &Status| {
        if s.account_id != account_id || pinned {
            return false;
        }
        // "Replies" are replies to someone else: self-threads stay, as in Mastodon.
        let foreign_reply = s
            .in_reply_to
            .as_ref()
            .is_some_and(|(_, to)| to != account_id);
        if (exclude_replies && foreign_reply)
            || (exclude_reblogs && s.reblog_of.is_some())
            || (only_media && s.media.is_empty())
        {
            return false;
        }
        tagged
            .as_ref()
            .is_none_or(|tag| hashtags(&s.content).contains(tag))
            && max_id.is_none_or(|max| s.id < max)
    };
    let candidates = inner.statuses.values().rev().filter(|s| keep(s));
    let page: Vec<&Status> = if let Some(min) = min_id {
        // Mastodon pages forward from min_id: the oldest `limit` newer statuses,
        // then reversed so the page still reads newest first.
        let mut newer: Vec<&Status> = candidates.filter(|s| s.id > min).collect();
        newer.reverse();
        newer.truncate(limit);
        newer.reverse();
        newer
    } else {
        candidates
            .filter(|s| since_id.is_none_or(|since| s.id > since))
            .take(limit)
            .collect()
    };
    {
        let now = Instant::now();
        let mut served = shared
            .first_served
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for s in &page {
            served.entry(s.id).or_insert(now);
        }
    }
    let body = Value::Array(page.iter().map(|s| status_json(shared, inner, s)).collect());
    let endpoint = format!("{}/api/v1/accounts/{account_id}/statuses", shared.base);
    let carried: Vec<(&str, &str)> = LINK_KEYS
        .iter()
        .filter_map(|key| param(key).map(|v| (*key, v)))
        .collect();
    let link_for = |cursor: &str, id: u64| {
        let mut pairs: Vec<(&str, String)> =
            carried.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        pairs.push((cursor, id.to_string()));
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        let mut serializer = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &pairs {
            serializer.append_pair(k, v);
        }
        format!("{endpoint}?{}", serializer.finish())
    };
    let mut links = Vec::new();
    if let (Some(last), true) = (page.last(), page.len() == limit && limit > 0) {
        links.push(format!("<{}>; rel=\"next\"", link_for("max_id", last.id)));
    }
    if let Some(first) = page.first() {
        links.push(format!("<{}>; rel=\"prev\"", link_for("min_id", first.id)));
    }
    Reply {
        status: StatusCode::OK,
        body,
        link: (!links.is_empty()).then(|| links.join(", ")),
    }
}

// ---------------------------------------------------------------------------------
// Status HTML
// ---------------------------------------------------------------------------------

/// Renders plain text the way Mastodon's TextFormatter does, with hashtag links on
/// [`DEFAULT_BASE`]. Use [`FakeMastodon::render`] for links on the fake's own origin.
pub fn status_html(text: &str) -> String {
    status_html_with_base(DEFAULT_BASE, text)
}

/// Renders plain text as Mastodon's TextFormatter does: escaped text, shortened URL
/// anchors, hashtag anchors on `base`, and Rails' `simple_format` paragraphs. Mentions
/// are left as text (Mastodon links only mentions of accounts it knows).
pub fn status_html_with_base(base: &str, text: &str) -> String {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    if text.trim().is_empty() {
        return String::new();
    }
    let linked = linkify(base.trim_end_matches('/'), &text);
    // simple_format: paragraphs split on blank lines (trailing empty ones dropped, as
    // Ruby's split does), single newlines become <br />, then every newline removed.
    let mut paragraphs: Vec<&str> = Vec::new();
    let mut rest = linked.as_str();
    while let Some(start) = rest.find("\n\n") {
        paragraphs.push(&rest[..start]);
        rest = rest[start..].trim_start_matches('\n');
    }
    paragraphs.push(rest);
    while paragraphs.last().is_some_and(|p| p.is_empty()) {
        paragraphs.pop();
    }
    let mut html = String::new();
    for paragraph in paragraphs {
        let mut formatted = String::new();
        let chars: Vec<char> = paragraph.chars().collect();
        for (i, &c) in chars.iter().enumerate() {
            if c == '\n' {
                let after_text = i > 0 && chars[i - 1] != '\n';
                let before_text = chars.get(i + 1).is_some_and(|&n| n != '\n');
                if after_text && before_text {
                    formatted.push_str("<br />");
                }
            } else {
                formatted.push(c);
            }
        }
        html.push_str("<p>");
        html.push_str(&formatted);
        html.push_str("</p>");
    }
    html
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn encode_path(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn linkify(base: &str, text: &str) -> String {
    let mut out = String::new();
    let mut plain_start = 0;
    let mut i = 0;
    let mut prev: Option<char> = None;
    while i < text.len() {
        let rest = &text[i..];
        let Some(c) = rest.chars().next() else { break };
        let boundary = prev.is_none_or(|p| !p.is_alphanumeric());
        if boundary
            && (rest.starts_with("http://") || rest.starts_with("https://"))
            && let Some(len) = url_length(rest)
        {
            out.push_str(&escape(&text[plain_start..i]));
            out.push_str(&shortened_link(&rest[..len]));
            i += len;
            plain_start = i;
            prev = text[..i].chars().next_back();
            continue;
        }
        if c == '#' && prev.is_none_or(|p| !(p.is_alphanumeric() || matches!(p, '=' | '/' | ')'))) {
            let tag_len: usize = rest[1..]
                .chars()
                .take_while(|ch| ch.is_alphanumeric() || *ch == '_')
                .map(char::len_utf8)
                .sum();
            let tag = &rest[1..1 + tag_len];
            if tag.chars().any(char::is_alphabetic) {
                out.push_str(&escape(&text[plain_start..i]));
                out.push_str(&format!(
                    "<a href=\"{}\" class=\"mention hashtag\" rel=\"tag\">#<span>{}</span></a>",
                    escape(&format!("{base}/tags/{}", encode_path(tag))),
                    escape(tag)
                ));
                i += 1 + tag_len;
                plain_start = i;
                prev = tag.chars().next_back();
                continue;
            }
        }
        prev = Some(c);
        i += c.len_utf8();
    }
    out.push_str(&escape(&text[plain_start..]));
    out
}

/// Length of the URL at the start of `s`, without trailing punctuation or an
/// unbalanced closing parenthesis, as twitter-text's extractor leaves them out.
fn url_length(s: &str) -> Option<usize> {
    let mut end = s
        .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"'))
        .unwrap_or(s.len());
    loop {
        let candidate = &s[..end];
        let Some(last) = candidate.chars().next_back() else {
            break;
        };
        let unbalanced_paren =
            last == ')' && candidate.matches('(').count() < candidate.matches(')').count();
        if matches!(last, '.' | ',' | ';' | ':' | '!' | '?' | '\'') || unbalanced_paren {
            end -= last.len_utf8();
        } else {
            break;
        }
    }
    let scheme_len = if s.starts_with("https://") { 8 } else { 7 };
    (end > scheme_len).then_some(end)
}

fn shortened_link(url: &str) -> String {
    let prefix_len = ["https://www.", "http://www.", "https://", "http://"]
        .iter()
        .find(|p| url.starts_with(**p))
        .map_or(0, |p| p.len());
    let (prefix, rest) = url.split_at(prefix_len);
    let display: String = rest.chars().take(30).collect();
    let suffix: String = rest.chars().skip(30).collect();
    let class = if rest.chars().count() > 30 {
        "ellipsis"
    } else {
        ""
    };
    format!(
        "<a href=\"{}\" target=\"_blank\" rel=\"nofollow noopener noreferrer\" translate=\"no\"><span class=\"invisible\">{}</span><span class=\"{class}\">{}</span><span class=\"invisible\">{}</span></a>",
        escape(url),
        escape(prefix),
        escape(&display),
        escape(&suffix)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_html_matches_mastodon_markup() {
        assert_eq!(
            status_html("Hello <world> & \"you\""),
            "<p>Hello &lt;world&gt; &amp; &quot;you&quot;</p>"
        );
        assert_eq!(status_html("a\nb\n\nc"), "<p>a<br />b</p><p>c</p>");
        assert_eq!(
            status_html("see https://example.com/x."),
            "<p>see <a href=\"https://example.com/x\" target=\"_blank\" rel=\"nofollow noopener noreferrer\" translate=\"no\"><span class=\"invisible\">https://</span><span class=\"\">example.com/x</span><span class=\"invisible\"></span></a>.</p>"
        );
        assert_eq!(
            status_html("#Rust!"),
            "<p><a href=\"https://mastodon.example/tags/Rust\" class=\"mention hashtag\" rel=\"tag\">#<span>Rust</span></a>!</p>"
        );
        assert_eq!(
            status_html("issue #123 and a#b"),
            "<p>issue #123 and a#b</p>"
        );
        assert_eq!(status_html(""), "");
    }

    #[test]
    fn long_urls_are_ellipsized_after_thirty_characters() {
        let html = status_html("https://www.example.com/a/very/long/path/that/keeps/going");
        assert!(html.contains("<span class=\"invisible\">https://www.</span><span class=\"ellipsis\">example.com/a/very/long/path/t</span><span class=\"invisible\">hat/keeps/going</span>"));
    }

    #[test]
    fn source_text_and_tags_come_back_out_of_html() {
        let html = status_html("Hi #Tocsin\nhttps://example.com/a?b=1&c=2");
        assert_eq!(
            html_to_text(&html),
            "Hi #Tocsin\nhttps://example.com/a?b=1&c=2"
        );
        assert_eq!(hashtags(&html), vec!["tocsin".to_owned()]);
    }
}

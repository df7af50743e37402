//! An in-process stand-in for the Telegram Bot API.
//!
//! It exists so the daemon's real Telegram client (teloxide) can be exercised end to
//! end without a network: the fake speaks the Bot API wire format closely enough that
//! an unmodified `teloxide::Bot` pointed at [`FakeBotApi::url`] cannot tell the
//! difference for the methods tocsin uses. It also validates what a real server would
//! reject (malformed HTML, oversize callback data, no-op edits) because those are the
//! mistakes that only show up in production otherwise.
//!
//! It binds to 127.0.0.1 only and never opens outbound connections.

mod channels;
mod html;
mod http;
mod methods;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use html::*;
use http::*;
use methods::*;
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, watch};

/// Telegram caps long polling at 50 s; 30 s keeps test runs from stalling on a stray
/// poll while staying above the 10 s teloxide asks for by default.
const MAX_POLL_TIMEOUT_SECS: i64 = 30;
/// Telegram's limit on message text after entity parsing, counted in UTF-16 units.
const MAX_TEXT_UTF16: usize = 4096;
/// Telegram rejects callback data longer than this many bytes.
const MAX_CALLBACK_DATA_BYTES: usize = 64;

const NOT_MODIFIED: &str = "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message";
const QUERY_INVALID: &str =
    "Bad Request: query is too old and response timeout expired or query ID is invalid";
const NOT_A_MEMBER: &str = "Forbidden: bot is not a member of the channel chat";
const CONFLICT: &str = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running";

/// A Telegram user that pushes commands or presses buttons in tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeUser {
    pub id: u64,
    pub first_name: String,
    pub username: Option<String>,
}

impl FakeUser {
    pub fn new(id: u64, first_name: &str, username: Option<&str>) -> Self {
        Self {
            id,
            first_name: first_name.to_owned(),
            username: username.map(str::to_owned),
        }
    }

    pub fn json(&self) -> Value {
        let mut user = json!({"id": self.id, "is_bot": false, "first_name": self.first_name});
        if let Some(username) = &self.username {
            user["username"] = json!(username);
        }
        user
    }
}

/// A forced answer for the next request of one method, to exercise the daemon's
/// error handling without having to provoke the condition for real.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Answer `{"ok":false,"error_code":status,"description":...}` with that HTTP status.
    /// teloxide sleeps 10 s inside the request on any 5xx, so use 5xx sparingly.
    Status(u16, String),
    /// Flood control: HTTP 429 with `parameters.retry_after`.
    RetryAfter(u32),
    /// Sleep, then answer 500, to look like an overloaded server that eventually gives up
    /// (teloxide then adds its own 10 s pause, as for any 5xx). Ends early on `shutdown`.
    Hang(Duration),
    /// The connection breaks before an answer: headers of a 200, then the body fails. Nothing
    /// was done.
    Reset,
    /// The request is carried out (a message stored), then the connection breaks before the
    /// answer arrives: the client cannot know it worked, and a retry sends it twice.
    ResetAfterAccept,
    /// The request is carried out, and the answer is `{"ok":true,"result":null}` instead of
    /// what the method documents: what a Bot API emulator that cuts corners answers.
    NullResult,
    /// An edit refused for good, with the description the real Bot API gives for the case.
    EditRefused(EditRefusal),
    /// `can't parse entities`: the server refused the text's markup.
    EntityError,
    /// `message is too long`: the server counted more than it accepts.
    TooLong,
}

/// Why Telegram will never apply an edit to a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EditRefusal {
    /// A responder deleted the message.
    NotFound,
    /// Too old, or of a kind that cannot be edited.
    CantBeEdited,
    /// The id names no message of the chat.
    IdInvalid,
    /// The message is not the bot's own.
    NotAuthor,
}

impl EditRefusal {
    /// The description the Bot API answers with.
    pub fn description(self) -> &'static str {
        match self {
            EditRefusal::NotFound => "Bad Request: message to edit not found",
            EditRefusal::CantBeEdited | EditRefusal::NotAuthor => {
                "Bad Request: message can't be edited"
            }
            EditRefusal::IdInvalid => "Bad Request: MESSAGE_ID_INVALID",
        }
    }
}

/// How `getUpdates` treats its `timeout`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PollMode {
    /// As Telegram: hold the request until an update arrives or the timeout passes.
    #[default]
    LongPoll,
    /// Answer at once with whatever is queued, an empty list included, ignoring `timeout`.
    Immediate,
}

/// A response body that fails at once, so the client sees the connection break mid-answer.
struct BrokenBody;

impl axum::body::HttpBody for BrokenBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        std::task::Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "fake Bot API: connection reset",
        ))))
    }
}

fn broken_response() -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::new(BrokenBody))
        .expect("static response")
}

/// A message as the fake currently stores it, with the text the client sent (markup
/// included) so tests can assert on exactly what the daemon produced.
#[derive(Clone, Debug, PartialEq)]
pub struct SentMessage {
    pub chat_id: i64,
    pub message_id: i32,
    /// Text as sent, including any HTML markup.
    pub text: String,
    /// Text as Telegram would display it (markup removed, entities decoded).
    pub rendered_text: String,
    pub parse_mode: Option<String>,
    pub reply_markup: Option<Value>,
    pub disable_notification: bool,
    /// `reply_parameters.message_id` (or the older `reply_to_message_id`), when the message
    /// was sent as a reply.
    pub reply_to: Option<i32>,
    /// `reply_parameters.allow_sending_without_reply`: sent even if the message it replies to
    /// is gone.
    pub allow_sending_without_reply: bool,
    pub received_at: DateTime<Utc>,
    pub received_instant: Instant,
}

/// One accepted `editMessageText` or `editMessageReplyMarkup`.
#[derive(Clone, Debug, PartialEq)]
pub struct EditedMessage {
    pub chat_id: i64,
    pub message_id: i32,
    /// The message's text after the edit (unchanged for markup-only edits).
    pub text: String,
    pub reply_markup: Option<Value>,
    /// True for `editMessageReplyMarkup`.
    pub markup_only: bool,
    pub received_at: DateTime<Utc>,
    pub received_instant: Instant,
}

/// One accepted `answerCallbackQuery`.
#[derive(Clone, Debug, PartialEq)]
pub struct CallbackAnswer {
    pub callback_query_id: String,
    pub text: Option<String>,
    pub show_alert: bool,
    pub received_at: DateTime<Utc>,
    pub received_instant: Instant,
}

/// One accepted `deleteMessage`.
#[derive(Clone, Debug, PartialEq)]
pub struct DeletedMessage {
    pub chat_id: i64,
    pub message_id: i32,
    pub received_at: DateTime<Utc>,
    pub received_instant: Instant,
}

/// Every request that reached a method, with its merged parameters, so tests can check
/// details (such as `allowed_updates`) that the typed records do not keep.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedCall {
    /// Method name as the client spelled it.
    pub method: String,
    pub params: Value,
    pub received_at: DateTime<Utc>,
}

/// Handle to a running fake Bot API. Cheap to clone; all clones share one server.
#[derive(Clone)]
pub struct FakeBotApi {
    shared: Arc<Shared>,
}

struct Shared {
    token: String,
    bot_id: u64,
    url: url::Url,
    inner: Mutex<Inner>,
    /// Wakes long-polling `getUpdates` when an update is queued or a newer poll starts.
    updates: Notify,
    shutdown: watch::Sender<bool>,
}

#[derive(Default)]
struct Inner {
    next_update_id: u32,
    next_callback_seq: u64,
    queue: VecDeque<QueuedUpdate>,
    poll_generation: u64,
    allowed_updates: Option<Vec<String>>,
    messages: HashMap<(i64, i32), Stored>,
    next_message_id: HashMap<i64, i32>,
    chat_titles: HashMap<i64, String>,
    private_names: HashMap<i64, String>,
    open_queries: HashMap<String, bool>,
    sent: Vec<SentMessage>,
    edits: Vec<EditedMessage>,
    answers: Vec<CallbackAnswer>,
    deletions: Vec<DeletedMessage>,
    calls: Vec<RecordedCall>,
    counts: HashMap<String, usize>,
    failures: HashMap<String, VecDeque<Failure>>,
    /// Failures answered to every request of a method until cleared.
    standing: HashMap<String, Failure>,
    /// Failures answered to every edit of one message until cleared.
    message_faults: HashMap<(i64, i32), Failure>,
    poll_mode: PollMode,
    /// Every request breaks off unanswered (an outage), the listener kept.
    down: bool,
    commands: Option<Value>,
    channels: HashMap<i64, FakeChannel>,
}

/// A channel the bot administers, as `getChat` and `getChatAdministrators` show it.
#[derive(Clone, Debug)]
pub struct FakeChannel {
    pub title: String,
    pub description: String,
    pub username: Option<String>,
    pub photo_unique_id: Option<String>,
    pub pinned_message_id: Option<i32>,
    /// (user, status): `creator` or `administrator`, rights as Telegram lists them.
    pub admins: Vec<(FakeUser, &'static str)>,
    /// The bot is an admin; when false every channel method answers 403 as Telegram does.
    pub bot_admin: bool,
}

struct QueuedUpdate {
    id: u32,
    kind: &'static str,
    json: Value,
}

#[derive(Clone)]
struct Stored {
    from: Value,
    from_bot: bool,
    date: i64,
    edit_date: Option<i64>,
    rendered: Rendered,
    /// The inline keyboard as Telegram keeps it: absent when empty or not inline.
    inline_markup: Option<Value>,
    record: SentMessage,
}

impl FakeBotApi {
    /// Starts the fake on 127.0.0.1 with an ephemeral port, serving `token`.
    pub async fn start(token: &str) -> std::io::Result<Self> {
        Self::start_on(token, 0).await
    }

    /// Starts on a given loopback port: a test brings the Bot API back on the port it took
    /// down, to play an outage that the daemon sees as refused connections.
    pub async fn start_on(token: &str, port: u16) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let url = url::Url::parse(&format!("http://{addr}/"))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let bot_id = token
            .split(':')
            .next()
            .and_then(|id| id.parse().ok())
            .unwrap_or(1_000_000);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            token: token.to_owned(),
            bot_id,
            url,
            inner: Mutex::new(Inner {
                next_update_id: 10_000,
                ..Inner::default()
            }),
            updates: Notify::new(),
            shutdown,
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        super::spawn_server(listener, app, shutdown_rx, "fake Bot API");
        tracing::debug!(%addr, "fake Bot API listening");
        Ok(Self { shared })
    }

    /// Base URL to hand to `Bot::set_api_url`.
    pub fn url(&self) -> url::Url {
        self.shared.url.clone()
    }

    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// The bot's own user id, taken from the token's numeric prefix as Telegram does.
    pub fn bot_id(&self) -> u64 {
        self.shared.bot_id
    }

    /// Every accepted `sendMessage`, in arrival order, as it was sent.
    pub fn sent(&self) -> Vec<SentMessage> {
        self.lock().sent.clone()
    }

    pub fn edits(&self) -> Vec<EditedMessage> {
        self.lock().edits.clone()
    }

    pub fn callback_answers(&self) -> Vec<CallbackAnswer> {
        self.lock().answers.clone()
    }

    pub fn deletions(&self) -> Vec<DeletedMessage> {
        self.lock().deletions.clone()
    }

    pub fn calls(&self) -> Vec<RecordedCall> {
        self.lock().calls.clone()
    }

    /// The message as it stands now (after edits); `None` once deleted or if unknown.
    pub fn message(&self, chat_id: i64, message_id: i32) -> Option<SentMessage> {
        self.lock()
            .messages
            .get(&(chat_id, message_id))
            .map(|stored| stored.record.clone())
    }

    /// The commands last registered with `setMyCommands`, if any.
    pub fn my_commands(&self) -> Option<Value> {
        self.lock().commands.clone()
    }

    /// Names a group chat; chats not named here get a generic title.
    pub fn set_chat_title(&self, chat_id: i64, title: &str) {
        self.lock().chat_titles.insert(chat_id, title.to_owned());
    }

    /// Queues a text message from `from` in `chat_id`. Text starting with `/` carries a
    /// `bot_command` entity over its first word, which is what teloxide's command
    /// parsing keys on. Returns the update id.
    pub fn push_command(&self, chat_id: i64, from: &FakeUser, text: &str) -> i32 {
        self.push_text(chat_id, from, text, None)
    }

    /// Queues `text`, first written by `author`, as `from` forwarded it to `chat_id`: the
    /// message carries `forward_origin` (Bot API 7.0) naming the author, and `from` is the
    /// forwarder. Returns the update id.
    pub fn push_forwarded(
        &self,
        chat_id: i64,
        from: &FakeUser,
        author: &FakeUser,
        text: &str,
    ) -> i32 {
        let origin = json!({
            "type": "user",
            "date": Utc::now().timestamp() - 60,
            "sender_user": author.json(),
        });
        self.push_text(chat_id, from, text, Some(origin))
    }

    fn push_text(
        &self,
        chat_id: i64,
        from: &FakeUser,
        text: &str,
        forward_origin: Option<Value>,
    ) -> i32 {
        let mut inner = self.lock();
        if chat_id > 0 && chat_id as u64 == from.id {
            inner.private_names.insert(chat_id, from.first_name.clone());
        }
        let message_id = next_message_id(&mut inner, chat_id);
        let mut entities = Vec::new();
        if text.starts_with('/') {
            let word = text.split_whitespace().next().unwrap_or(text);
            entities.push(json!({"type": "bot_command", "offset": 0, "length": utf16_len(word)}));
        }
        let now = Utc::now();
        let stored = Stored {
            from: from.json(),
            from_bot: false,
            date: now.timestamp(),
            edit_date: None,
            rendered: Rendered {
                text: text.to_owned(),
                entities,
            },
            inline_markup: None,
            record: SentMessage {
                chat_id,
                message_id,
                text: text.to_owned(),
                rendered_text: text.to_owned(),
                parse_mode: None,
                reply_markup: None,
                disable_notification: false,
                reply_to: None,
                allow_sending_without_reply: false,
                received_at: now,
                received_instant: Instant::now(),
            },
        };
        let mut message = message_json(&inner, &stored);
        if let Some(origin) = forward_origin {
            message["forward_origin"] = origin;
        }
        inner.messages.insert((chat_id, message_id), stored);
        let id = self.enqueue(&mut inner, "message", "message", message);
        drop(inner);
        self.shared.updates.notify_waiters();
        id as i32
    }

    /// Queues a callback query as if `from` pressed a button carrying `data` under the
    /// message `message_id`. A message that no longer exists is delivered the way
    /// Telegram delivers inaccessible messages (`date` 0). Returns the query id.
    pub fn press_button(
        &self,
        chat_id: i64,
        from: &FakeUser,
        message_id: i32,
        data: &str,
    ) -> String {
        self.queue_press(chat_id, from, message_id, data, true)
    }

    /// [`FakeBotApi::press_button`] as a Bot API emulator sends it: without the
    /// `chat_instance` field Telegram always includes, which strict clients fail to parse.
    /// The query can still be answered. Returns the query id.
    pub fn press_button_without_chat_instance(
        &self,
        chat_id: i64,
        from: &FakeUser,
        message_id: i32,
        data: &str,
    ) -> String {
        self.queue_press(chat_id, from, message_id, data, false)
    }

    fn queue_press(
        &self,
        chat_id: i64,
        from: &FakeUser,
        message_id: i32,
        data: &str,
        chat_instance: bool,
    ) -> String {
        let mut inner = self.lock();
        inner.next_callback_seq += 1;
        let query_id = format!(
            "{}{:012}",
            self.shared.bot_id % 1_000_000,
            inner.next_callback_seq
        );
        let message = match inner.messages.get(&(chat_id, message_id)) {
            Some(stored) => message_json(&inner, stored),
            None => json!({
                "message_id": message_id,
                "chat": chat_json(&inner, chat_id),
                "date": 0,
            }),
        };
        let mut query = json!({
            "id": query_id,
            "from": from.json(),
            "message": message,
            "data": data,
        });
        if chat_instance {
            query["chat_instance"] = json!(format!("{}", (chat_id as u64) ^ 0x5bd1_e995_u64));
        }
        inner.open_queries.insert(query_id.clone(), false);
        self.enqueue(&mut inner, "callback_query", "callback_query", query);
        drop(inner);
        self.shared.updates.notify_waiters();
        query_id
    }

    /// Queues an arbitrary update body under `kind` (e.g. `"edited_message"`), for
    /// update types the typed helpers do not cover. Returns the update id.
    pub fn push_raw_update(&self, kind: &'static str, payload: Value) -> i32 {
        let mut inner = self.lock();
        let id = self.enqueue(&mut inner, kind, kind, payload);
        drop(inner);
        self.shared.updates.notify_waiters();
        id as i32
    }

    /// Number of updates queued and not yet confirmed by a later `offset`.
    pub fn pending_updates(&self) -> usize {
        self.lock().queue.len()
    }

    /// Forces the answer to the next request of `method` (case-insensitive); queued
    /// failures are consumed one per request, in order.
    pub fn fail_next(&self, method: &str, failure: Failure) {
        self.lock()
            .failures
            .entry(method.to_ascii_lowercase())
            .or_default()
            .push_back(failure);
    }

    /// Answers every request of `method` (case-insensitive) with `failure` until
    /// [`FakeBotApi::clear_failures`]; failures queued with `fail_next` come first.
    pub fn fail_always(&self, method: &str, failure: Failure) {
        self.lock()
            .standing
            .insert(method.to_ascii_lowercase(), failure);
    }

    /// Answers every edit (`editMessageText`, `editMessageReplyMarkup`) of one message with
    /// `failure` until [`FakeBotApi::clear_failures`]: one page that cannot be updated while
    /// every other message works.
    pub fn fail_edits_of(&self, chat_id: i64, message_id: i32, failure: Failure) {
        self.lock()
            .message_faults
            .insert((chat_id, message_id), failure);
    }

    /// Ends every standing failure (`fail_always`, `fail_edits_of`) and drops queued ones.
    pub fn clear_failures(&self) {
        let mut inner = self.lock();
        inner.standing.clear();
        inner.message_faults.clear();
        inner.failures.clear();
    }

    /// An outage while `down`: every request (long polls under way included) breaks off
    /// without an answer and without effect, while the listener keeps its port, so the Bot API
    /// comes back where the daemon looks for it.
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
        self.shared.updates.notify_waiters();
    }

    /// How `getUpdates` treats its `timeout` from now on.
    pub fn set_poll_mode(&self, mode: PollMode) {
        self.lock().poll_mode = mode;
        self.shared.updates.notify_waiters();
    }

    /// When each request of `method` (case-insensitive) arrived, oldest first.
    pub fn call_times(&self, method: &str) -> Vec<DateTime<Utc>> {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.method.eq_ignore_ascii_case(method))
            .map(|c| c.received_at)
            .collect()
    }

    /// Requests received for `method` (case-insensitive), whatever their outcome.
    pub fn request_count(&self, method: &str) -> usize {
        self.lock()
            .counts
            .get(&method.to_ascii_lowercase())
            .copied()
            .unwrap_or(0)
    }

    /// Polls `f` every 10 ms until it holds or `timeout` passes; returns whether it held.
    pub async fn wait_until(&self, timeout: Duration, f: impl Fn(&Self) -> bool) -> bool {
        super::wait_until(self, timeout, f).await
    }

    /// Stops accepting connections, ends pending long polls, and lets the server task
    /// finish once open connections close.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
        self.shared.updates.notify_waiters();
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.lock()
    }

    fn enqueue(&self, inner: &mut Inner, kind: &'static str, key: &str, payload: Value) -> u32 {
        let id = inner.next_update_id;
        inner.next_update_id += 1;
        let mut body = Map::new();
        body.insert("update_id".into(), json!(id));
        body.insert(key.into(), payload);
        inner.queue.push_back(QueuedUpdate {
            id,
            kind,
            json: Value::Object(body),
        });
        id
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("fake Bot API state poisoned")
    }
}

fn next_message_id(inner: &mut Inner, chat_id: i64) -> i32 {
    let counter = inner.next_message_id.entry(chat_id).or_insert(0);
    *counter += 1;
    *counter
}

fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

fn bot_user(bot_id: u64) -> Value {
    json!({"id": bot_id, "is_bot": true, "first_name": "tocsin", "username": "tocsin_bot"})
}

/// Chat kind follows Telegram's id ranges: positive ids are users, `-100…` ids are
/// supergroups and channels, other negative ids are basic groups.
fn chat_json(inner: &Inner, chat_id: i64) -> Value {
    if chat_id > 0 {
        let name = inner
            .private_names
            .get(&chat_id)
            .cloned()
            .unwrap_or_else(|| "User".to_owned());
        return json!({"id": chat_id, "type": "private", "first_name": name});
    }
    if let Some(c) = inner.channels.get(&chat_id) {
        let mut chat = json!({"id": chat_id, "type": "channel", "title": c.title});
        if let Some(u) = &c.username {
            chat["username"] = json!(u);
        }
        return chat;
    }
    let title = inner
        .chat_titles
        .get(&chat_id)
        .cloned()
        .unwrap_or_else(|| "tocsin test chat".to_owned());
    let kind = if chat_id <= -1_000_000_000_000 {
        "supergroup"
    } else {
        "group"
    };
    json!({"id": chat_id, "type": kind, "title": title})
}

fn message_json(inner: &Inner, stored: &Stored) -> Value {
    let mut message = json!({
        "message_id": stored.record.message_id,
        "chat": chat_json(inner, stored.record.chat_id),
        "date": stored.date,
        "text": stored.rendered.text,
    });
    // Channel posts have no `from`: the channel itself is the sender.
    if stored.from.is_null() {
        message["sender_chat"] = chat_json(inner, stored.record.chat_id);
    } else {
        message["from"] = stored.from.clone();
    }
    if !stored.rendered.entities.is_empty() {
        message["entities"] = Value::Array(stored.rendered.entities.clone());
    }
    if let Some(date) = stored.edit_date {
        message["edit_date"] = json!(date);
    }
    if let Some(markup) = &stored.inline_markup {
        message["reply_markup"] = markup.clone();
    }
    message
}

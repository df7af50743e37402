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

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
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
                received_at: now,
                received_instant: Instant::now(),
            },
        };
        let message = message_json(&inner, &stored);
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
        let query = json!({
            "id": query_id,
            "from": from.json(),
            "message": message,
            "chat_instance": format!("{}", (chat_id as u64) ^ 0x5bd1_e995_u64),
            "data": data,
        });
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

// ---------------------------------------------------------------------------------
// HTTP layer
// ---------------------------------------------------------------------------------

struct ApiError {
    status: StatusCode,
    description: String,
    retry_after: Option<u32>,
}

impl ApiError {
    fn bad_request(description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            description: description.into(),
            retry_after: None,
        }
    }

    fn new(status: u16, description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            description: description.into(),
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "ok": false,
            "error_code": self.status.as_u16(),
            "description": self.description,
        });
        if let Some(seconds) = self.retry_after {
            body["parameters"] = json!({"retry_after": seconds});
        }
        json_response(self.status, &body)
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn ok(result: Value) -> Result<Value, ApiError> {
    Ok(result)
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let segments: Vec<String> = uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let (bot_segment, method) = match segments.as_slice() {
        [bot, method] => (bot.as_str(), method.as_str()),
        _ => return ApiError::new(404, "Not Found").into_response(),
    };
    let method_key = method.to_ascii_lowercase();
    shared
        .lock()
        .counts
        .entry(method_key.clone())
        .and_modify(|n| *n += 1)
        .or_insert(1);
    let Some(token) = bot_segment.strip_prefix("bot") else {
        return ApiError::new(404, "Not Found").into_response();
    };
    if token != shared.token {
        return ApiError::new(401, "Unauthorized").into_response();
    }
    let params = match parse_params(&uri, &headers, &body) {
        Ok(params) => params,
        Err(error) => return error.into_response(),
    };
    tracing::debug!(method, ?params, "fake Bot API request");
    let forced = {
        let mut inner = shared.lock();
        inner.calls.push(RecordedCall {
            method: method.to_owned(),
            params: Value::Object(params.0.clone()),
            received_at: Utc::now(),
        });
        inner
            .failures
            .get_mut(&method_key)
            .and_then(VecDeque::pop_front)
    };
    let accept_then_reset = matches!(forced, Some(Failure::ResetAfterAccept));
    if let Some(failure) = forced.filter(|_| !accept_then_reset) {
        return forced_response(&shared, failure).await;
    }
    let result = match method_key.as_str() {
        "getme" => get_me(&shared),
        "getupdates" => get_updates(&shared, &params).await,
        "sendmessage" => send_message(&shared, &params),
        "editmessagetext" => edit_message(&shared, &params, false),
        "editmessagereplymarkup" => edit_message(&shared, &params, true),
        "answercallbackquery" => answer_callback_query(&shared, &params),
        "deletemessage" => delete_message(&shared, &params),
        "getchat" => get_chat(&shared, &params),
        "getchatadministrators" => get_chat_administrators(&shared, &params),
        "deletewebhook" | "sendchataction" => ok(json!(true)),
        "setmycommands" => {
            shared.lock().commands = params.json("commands").ok().flatten();
            ok(json!(true))
        }
        "deletemycommands" => {
            shared.lock().commands = None;
            ok(json!(true))
        }
        "getmycommands" => ok(shared.lock().commands.clone().unwrap_or_else(|| json!([]))),
        "getwebhookinfo" => {
            let pending = shared.lock().queue.len();
            ok(json!({"url": "", "has_custom_certificate": false, "pending_update_count": pending}))
        }
        _ => Err(ApiError::new(404, "Not Found")),
    };
    match result {
        _ if accept_then_reset => broken_response(),
        Ok(result) => json_response(StatusCode::OK, &json!({"ok": true, "result": result})),
        Err(error) => error.into_response(),
    }
}

async fn forced_response(shared: &Shared, failure: Failure) -> Response {
    match failure {
        Failure::Status(status, description) => ApiError::new(status, description).into_response(),
        Failure::RetryAfter(seconds) => ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            description: format!("Too Many Requests: retry after {seconds}"),
            retry_after: Some(seconds),
        }
        .into_response(),
        Failure::Hang(duration) => {
            let mut shutdown = shared.shutdown.subscribe();
            tokio::select! {
                _ = tokio::time::sleep(duration) => {}
                _ = shutdown.wait_for(|stopped| *stopped) => {}
            }
            ApiError::new(500, "Internal Server Error").into_response()
        }
        Failure::Reset | Failure::ResetAfterAccept => broken_response(),
    }
}

fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && let Ok(hex) = std::str::from_utf8(hex)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Method parameters merged from the query string and the body, the way the Bot API
/// accepts them: JSON bodies keep their types, form and query values arrive as strings.
#[derive(Debug)]
struct Params(Map<String, Value>);

fn parse_params(uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Result<Params, ApiError> {
    let mut map = Map::new();
    if let Some(query) = uri.query() {
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            map.insert(key.into_owned(), Value::String(value.into_owned()));
        }
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if body.is_empty() {
        return Ok(Params(map));
    }
    if content_type.starts_with("application/json") {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(object)) => map.extend(object),
            Ok(_) => {
                return Err(ApiError::bad_request(
                    "Bad Request: parameters must be a JSON object",
                ));
            }
            Err(_) => {
                return Err(ApiError::bad_request(
                    "Bad Request: can't parse JSON encoded request",
                ));
            }
        }
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        for (key, value) in url::form_urlencoded::parse(body) {
            map.insert(key.into_owned(), Value::String(value.into_owned()));
        }
    } else if content_type.starts_with("multipart/form-data") {
        return Err(ApiError::bad_request(
            "Bad Request: multipart uploads are not supported by the fake Bot API",
        ));
    }
    Ok(Params(map))
}

impl Params {
    fn string(&self, key: &str) -> Option<String> {
        match self.0.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    }

    fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| {
                ApiError::bad_request(format!("Bad Request: invalid {key} specified"))
            }),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!("Bad Request: invalid {key} specified"))
            }),
            Some(_) => Err(ApiError::bad_request(format!(
                "Bad Request: invalid {key} specified"
            ))),
        }
    }

    fn flag(&self, key: &str) -> bool {
        match self.0.get(key) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => matches!(s.as_str(), "true" | "True" | "1"),
            Some(Value::Number(n)) => n.as_i64() == Some(1),
            _ => false,
        }
    }

    /// Structured parameters arrive as JSON values in JSON bodies but as JSON-serialized
    /// strings in form and query encodings.
    fn json(&self, key: &str) -> Result<Option<Value>, ()> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => serde_json::from_str(s).map(Some).map_err(|_| ()),
            Some(other) => Ok(Some(other.clone())),
        }
    }

    fn chat_id(&self) -> Result<i64, ApiError> {
        match self.0.get("chat_id") {
            None | Some(Value::Null) => Err(ApiError::bad_request("Bad Request: chat_id is empty")),
            Some(Value::String(s)) if s.starts_with('@') => {
                Err(ApiError::bad_request("Bad Request: chat not found"))
            }
            _ => self
                .int("chat_id")?
                .ok_or_else(|| ApiError::bad_request("Bad Request: chat_id is empty")),
        }
    }

    fn message_id(&self) -> Result<i32, ApiError> {
        let id = self.int("message_id")?.ok_or_else(|| {
            ApiError::bad_request("Bad Request: message identifier is not specified")
        })?;
        i32::try_from(id)
            .map_err(|_| ApiError::bad_request("Bad Request: invalid message_id specified"))
    }
}

// ---------------------------------------------------------------------------------
// Methods
// ---------------------------------------------------------------------------------

fn get_me(shared: &Shared) -> Result<Value, ApiError> {
    let mut me = bot_user(shared.bot_id);
    for (key, value) in [
        ("can_join_groups", true),
        ("can_read_all_group_messages", false),
        ("supports_inline_queries", false),
        ("can_connect_to_business", false),
        // teloxide-core 0.13 requires this field on `Me`.
        ("has_main_web_app", false),
    ] {
        me[key] = json!(value);
    }
    ok(me)
}

async fn get_updates(shared: &Shared, params: &Params) -> Result<Value, ApiError> {
    let offset = params.int("offset")?.unwrap_or(0);
    let limit = params.int("limit")?.unwrap_or(100).clamp(1, 100) as usize;
    let timeout = params
        .int("timeout")?
        .unwrap_or(0)
        .clamp(0, MAX_POLL_TIMEOUT_SECS) as u64;
    let allowed = match params.json("allowed_updates") {
        Ok(Some(Value::Array(items))) => Some(
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect::<Vec<_>>(),
        ),
        Ok(_) => None,
        Err(()) => {
            return Err(ApiError::bad_request(
                "Bad Request: can't parse allowed updates JSON object",
            ));
        }
    };
    let generation = {
        let mut inner = shared.lock();
        inner.poll_generation += 1;
        if let Some(allowed) = allowed {
            inner.allowed_updates = Some(allowed);
        }
        inner.poll_generation
    };
    // Like Telegram, a newer poll terminates an older one still waiting.
    shared.updates.notify_waiters();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let notified = shared.updates.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut inner = shared.lock();
            if inner.poll_generation != generation {
                return Err(ApiError::new(409, CONFLICT));
            }
            confirm_updates(&mut inner, offset);
            let ready: Vec<Value> = inner
                .queue
                .iter()
                .take(limit)
                .map(|update| update.json.clone())
                .collect();
            if !ready.is_empty() || tokio::time::Instant::now() >= deadline {
                return ok(Value::Array(ready));
            }
        }
        if *shutdown.borrow() {
            return ok(json!([]));
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.wait_for(|stopped| *stopped) => return ok(json!([])),
        }
    }
}

/// Drops what the offset confirms and what `allowed_updates` excludes, as Telegram
/// forgets both.
fn confirm_updates(inner: &mut Inner, offset: i64) {
    if offset > 0 {
        inner.queue.retain(|update| i64::from(update.id) >= offset);
    } else if offset < 0 {
        let keep = offset.unsigned_abs() as usize;
        while inner.queue.len() > keep {
            inner.queue.pop_front();
        }
    }
    if let Some(allowed) = inner.allowed_updates.clone()
        && !allowed.is_empty()
    {
        inner
            .queue
            .retain(|update| allowed.iter().any(|kind| kind == update.kind));
    }
}

fn send_message(shared: &Shared, params: &Params) -> Result<Value, ApiError> {
    let chat_id = params.chat_id()?;
    let text = params.string("text").unwrap_or_default();
    let parse_mode = params.string("parse_mode").filter(|m| !m.is_empty());
    let rendered = render(&text, parse_mode.as_deref(), params)?;
    let markup = reply_markup(params)?;
    let mut inner = shared.lock();
    let message_id = next_message_id(&mut inner, chat_id);
    let now = Utc::now();
    let record = SentMessage {
        chat_id,
        message_id,
        text,
        rendered_text: rendered.text.clone(),
        parse_mode,
        reply_markup: markup.clone(),
        disable_notification: params.flag("disable_notification"),
        received_at: now,
        received_instant: Instant::now(),
    };
    let stored = Stored {
        from: bot_user(shared.bot_id),
        from_bot: true,
        date: now.timestamp(),
        edit_date: None,
        rendered,
        inline_markup: inline_markup(markup.as_ref()),
        record: record.clone(),
    };
    let message = message_json(&inner, &stored);
    inner.messages.insert((chat_id, message_id), stored);
    inner.sent.push(record);
    ok(message)
}

fn edit_message(shared: &Shared, params: &Params, markup_only: bool) -> Result<Value, ApiError> {
    if params.string("inline_message_id").is_some() {
        return Err(ApiError::bad_request(
            "Bad Request: inline messages are not supported by the fake Bot API",
        ));
    }
    let chat_id = params.chat_id()?;
    let message_id = params.message_id()?;
    let markup = reply_markup(params)?;
    let new_text = if markup_only {
        None
    } else {
        let text = params.string("text").unwrap_or_default();
        let parse_mode = params.string("parse_mode").filter(|m| !m.is_empty());
        let rendered = render(&text, parse_mode.as_deref(), params)?;
        Some((text, parse_mode, rendered))
    };
    let mut inner = shared.lock();
    let Some(current) = inner.messages.get(&(chat_id, message_id)).cloned() else {
        return Err(ApiError::bad_request(
            "Bad Request: message to edit not found",
        ));
    };
    if !current.from_bot {
        return Err(ApiError::bad_request(
            "Bad Request: message can't be edited",
        ));
    }
    let new_inline = inline_markup(markup.as_ref());
    let mut updated = current.clone();
    if let Some((text, parse_mode, rendered)) = new_text {
        updated.record.text = text;
        updated.record.parse_mode = parse_mode;
        updated.record.rendered_text = rendered.text.clone();
        updated.rendered = rendered;
    }
    // Telegram drops the keyboard when an edit omits reply_markup.
    updated.inline_markup = new_inline;
    updated.record.reply_markup = markup.clone();
    if updated.rendered == current.rendered && updated.inline_markup == current.inline_markup {
        return Err(ApiError::bad_request(NOT_MODIFIED));
    }
    let now = Utc::now();
    updated.edit_date = Some(now.timestamp());
    let message = message_json(&inner, &updated);
    inner.edits.push(EditedMessage {
        chat_id,
        message_id,
        text: updated.record.text.clone(),
        reply_markup: markup,
        markup_only,
        received_at: now,
        received_instant: Instant::now(),
    });
    inner.messages.insert((chat_id, message_id), updated);
    ok(message)
}

fn answer_callback_query(shared: &Shared, params: &Params) -> Result<Value, ApiError> {
    let Some(query_id) = params.string("callback_query_id") else {
        return Err(ApiError::bad_request("Bad Request: query_id is empty"));
    };
    let mut inner = shared.lock();
    match inner.open_queries.get_mut(&query_id) {
        Some(answered) if !*answered => *answered = true,
        _ => return Err(ApiError::bad_request(QUERY_INVALID)),
    }
    inner.answers.push(CallbackAnswer {
        callback_query_id: query_id,
        text: params.string("text"),
        show_alert: params.flag("show_alert"),
        received_at: Utc::now(),
        received_instant: Instant::now(),
    });
    ok(json!(true))
}

fn delete_message(shared: &Shared, params: &Params) -> Result<Value, ApiError> {
    let chat_id = params.chat_id()?;
    let message_id = params.message_id()?;
    let mut inner = shared.lock();
    if let Some(channel) = inner.channels.get(&chat_id) {
        if !channel.bot_admin {
            return Err(ApiError::new(403, NOT_A_MEMBER));
        }
        if let Some(m) = inner.messages.get(&(chat_id, message_id))
            && Utc::now().timestamp() - m.date >= 48 * 3600
        {
            return Err(ApiError::bad_request(
                "Bad Request: message can't be deleted",
            ));
        }
    }
    if inner.messages.remove(&(chat_id, message_id)).is_none() {
        return Err(ApiError::bad_request(
            "Bad Request: message to delete not found",
        ));
    }
    inner.deletions.push(DeletedMessage {
        chat_id,
        message_id,
        received_at: Utc::now(),
        received_instant: Instant::now(),
    });
    ok(json!(true))
}

fn reply_markup(params: &Params) -> Result<Option<Value>, ApiError> {
    let markup = params.json("reply_markup").map_err(|()| {
        ApiError::bad_request("Bad Request: can't parse reply keyboard markup JSON object")
    })?;
    let Some(markup) = markup else {
        return Ok(None);
    };
    if !markup.is_object() {
        return Err(ApiError::bad_request(
            "Bad Request: can't parse reply keyboard markup JSON object",
        ));
    }
    if let Some(rows) = markup.get("inline_keyboard") {
        let Some(rows) = rows.as_array() else {
            return Err(ApiError::bad_request(
                "Bad Request: field \"inline_keyboard\" of the InlineKeyboardMarkup should be an Array of Arrays",
            ));
        };
        for row in rows {
            let Some(buttons) = row.as_array() else {
                return Err(ApiError::bad_request(
                    "Bad Request: field \"inline_keyboard\" of the InlineKeyboardMarkup should be an Array of Arrays",
                ));
            };
            for button in buttons {
                if button.get("text").and_then(Value::as_str).is_none() {
                    return Err(ApiError::bad_request(
                        "Bad Request: can't find field \"text\"",
                    ));
                }
                if let Some(data) = button.get("callback_data") {
                    let len = data.as_str().map_or(0, str::len);
                    if len == 0 || len > MAX_CALLBACK_DATA_BYTES {
                        return Err(ApiError::bad_request("Bad Request: BUTTON_DATA_INVALID"));
                    }
                }
            }
        }
    }
    Ok(Some(markup))
}

/// Only inline keyboards are echoed on the Message, and an empty one means "none".
fn inline_markup(markup: Option<&Value>) -> Option<Value> {
    let markup = markup?;
    let rows = markup.get("inline_keyboard")?.as_array()?;
    if rows
        .iter()
        .all(|row| row.as_array().is_none_or(Vec::is_empty))
    {
        return None;
    }
    Some(json!({"inline_keyboard": rows}))
}

// ---------------------------------------------------------------------------------
// Text and entities
// ---------------------------------------------------------------------------------

#[derive(Clone, Debug, Default, PartialEq)]
struct Rendered {
    text: String,
    entities: Vec<Value>,
}

fn render(text: &str, parse_mode: Option<&str>, params: &Params) -> Result<Rendered, ApiError> {
    let rendered = match parse_mode.map(str::to_ascii_lowercase).as_deref() {
        Some("html") => parse_html(text).map_err(|e| {
            ApiError::bad_request(format!("Bad Request: can't parse entities: {e}"))
        })?,
        Some("markdownv2" | "markdown") | None => {
            // Markdown is passed through unparsed: the fake does not model its escaping rules.
            let entities = match params.json("entities") {
                Ok(Some(Value::Array(entities))) if parse_mode.is_none() => entities,
                _ => Vec::new(),
            };
            Rendered {
                text: text.to_owned(),
                entities,
            }
        }
        Some(_) => return Err(ApiError::bad_request("Bad Request: unsupported parse_mode")),
    };
    if rendered.text.trim().is_empty() {
        return Err(ApiError::bad_request("Bad Request: message text is empty"));
    }
    if utf16_len(&rendered.text) > MAX_TEXT_UTF16 {
        return Err(ApiError::bad_request("Bad Request: message is too long"));
    }
    Ok(rendered)
}

struct OpenTag {
    name: String,
    start: usize,
    entity: Option<Value>,
    code_language: Option<String>,
}

/// Parses Telegram's HTML dialect: the supported tags become entities with UTF-16
/// offsets, anything else is rejected the way the Bot API rejects it.
fn parse_html(input: &str) -> Result<Rendered, String> {
    let mut text = String::new();
    let mut offset16 = 0usize;
    let mut stack: Vec<OpenTag> = Vec::new();
    let mut entities: Vec<Value> = Vec::new();
    let mut i = 0usize;
    let push = |text: &mut String, offset16: &mut usize, c: char| {
        text.push(c);
        *offset16 += c.len_utf16();
    };
    while i < input.len() {
        let rest = &input[i..];
        let Some(c) = rest.chars().next() else { break };
        if c == '&' {
            if let Some((decoded, used)) = decode_entity(rest) {
                push(&mut text, &mut offset16, decoded);
                i += used;
            } else {
                push(&mut text, &mut offset16, '&');
                i += 1;
            }
            continue;
        }
        if c != '<' {
            push(&mut text, &mut offset16, c);
            i += c.len_utf8();
            continue;
        }
        let tag_start = i;
        let Some(close) = rest.find('>') else {
            return Err(format!("Unclosed start tag at byte offset {tag_start}"));
        };
        let inside = &rest[1..close];
        i += close + 1;
        if let Some(end_name) = inside.strip_prefix('/') {
            let end_name = end_name.trim().to_ascii_lowercase();
            let Some(open) = stack.pop() else {
                return Err(format!("Unexpected end tag at byte offset {tag_start}"));
            };
            if !end_name.is_empty() && end_name != open.name {
                return Err(format!(
                    "Unmatched end tag at byte offset {tag_start}, expected \"</{}>\", found \"</{end_name}>\"",
                    open.name
                ));
            }
            let length = offset16 - open.start;
            if open.name == "code"
                && let Some(language) = &open.code_language
                && let Some(parent) = stack.last_mut()
                && parent.name == "pre"
                && let Some(entity) = parent.entity.as_mut()
            {
                entity["language"] = json!(language);
                continue;
            }
            if let Some(mut entity) = open.entity
                && length > 0
            {
                entity["offset"] = json!(open.start);
                entity["length"] = json!(length);
                entities.push(entity);
            }
            continue;
        }
        let name_len = inside
            .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '-'))
            .unwrap_or(inside.len());
        let name = inside[..name_len].to_ascii_lowercase();
        let attrs = parse_attributes(&inside[name_len..]);
        let attr = |key: &str| attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let mut code_language = None;
        let entity = match name.as_str() {
            "b" | "strong" => Some(json!({"type": "bold"})),
            "i" | "em" => Some(json!({"type": "italic"})),
            "u" | "ins" => Some(json!({"type": "underline"})),
            "s" | "strike" | "del" => Some(json!({"type": "strikethrough"})),
            "tg-spoiler" => Some(json!({"type": "spoiler"})),
            "span" => {
                if attr("class").as_deref() != Some("tg-spoiler") {
                    return Err("Tag \"span\" must have class \"tg-spoiler\"".to_owned());
                }
                Some(json!({"type": "spoiler"}))
            }
            "a" => attr("href")
                .and_then(|href| link_url(&href))
                .map(|url| json!({"type": "text_link", "url": url})),
            "code" => {
                code_language = attr("class")
                    .and_then(|class| class.strip_prefix("language-").map(str::to_owned));
                Some(json!({"type": "code"}))
            }
            "pre" => Some(json!({"type": "pre"})),
            "blockquote" => {
                if attrs.iter().any(|(k, _)| k == "expandable") {
                    Some(json!({"type": "expandable_blockquote"}))
                } else {
                    Some(json!({"type": "blockquote"}))
                }
            }
            "tg-emoji" => {
                let Some(id) = attr("emoji-id") else {
                    return Err(
                        "Custom emoji entity must contain a valid custom emoji identifier"
                            .to_owned(),
                    );
                };
                Some(json!({"type": "custom_emoji", "custom_emoji_id": id}))
            }
            _ => {
                return Err(format!(
                    "Unsupported start tag \"{name}\" at byte offset {tag_start}"
                ));
            }
        };
        stack.push(OpenTag {
            name,
            start: offset16,
            entity,
            code_language,
        });
    }
    if let Some(open) = stack.last() {
        return Err(format!(
            "Can't find end tag corresponding to start tag \"{}\"",
            open.name
        ));
    }
    entities.sort_by_key(|e| {
        (
            e["offset"].as_u64().unwrap_or(0),
            std::cmp::Reverse(e["length"].as_u64().unwrap_or(0)),
        )
    });
    Ok(Rendered { text, entities })
}

fn parse_attributes(mut s: &str) -> Vec<(String, String)> {
    let mut attrs = Vec::new();
    loop {
        s = s.trim_start();
        if s.is_empty() || s == "/" {
            return attrs;
        }
        let name_len = s
            .find(|c: char| c.is_whitespace() || c == '=')
            .unwrap_or(s.len());
        let name = s[..name_len].to_ascii_lowercase();
        s = s[name_len..].trim_start();
        let value = if let Some(after) = s.strip_prefix('=') {
            let after = after.trim_start();
            let (value, rest) = match after.chars().next() {
                Some(quote @ ('"' | '\'')) => {
                    let body = &after[1..];
                    let end = body.find(quote).unwrap_or(body.len());
                    (&body[..end], body.get(end + 1..).unwrap_or(""))
                }
                _ => {
                    let end = after.find(char::is_whitespace).unwrap_or(after.len());
                    (&after[..end], &after[end..])
                }
            };
            s = rest;
            decode_entities(value)
        } else {
            String::new()
        };
        attrs.push((name, value));
    }
}

fn decode_entities(s: &str) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < s.len() {
        let rest = &s[i..];
        if let Some((c, used)) = decode_entity(rest) {
            out.push(c);
            i += used;
        } else if let Some(c) = rest.chars().next() {
            out.push(c);
            i += c.len_utf8();
        } else {
            break;
        }
    }
    out
}

/// Telegram understands the four named entities plus numeric ones; any other `&` is
/// taken literally.
fn decode_entity(s: &str) -> Option<(char, usize)> {
    let body = s.strip_prefix('&')?;
    let end = body.find(';')?;
    if end > 10 {
        return None;
    }
    let name = &body[..end];
    let c = match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "quot" => '"',
        _ => {
            let number = name.strip_prefix('#')?;
            let code = match number.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => number.parse().ok()?,
            };
            char::from_u32(code)?
        }
    };
    Some((c, end + 2))
}

fn link_url(href: &str) -> Option<String> {
    url::Url::parse(href)
        .or_else(|_| url::Url::parse(&format!("http://{href}")))
        .ok()
        .map(String::from)
}

fn channel_of<'a>(inner: &'a Inner, params: &Params) -> Result<&'a FakeChannel, ApiError> {
    let chat_id = params.chat_id()?;
    let channel = inner
        .channels
        .get(&chat_id)
        .ok_or_else(|| ApiError::bad_request("Bad Request: chat not found"))?;
    if !channel.bot_admin {
        return Err(ApiError::new(403, NOT_A_MEMBER));
    }
    Ok(channel)
}

fn get_chat(shared: &Shared, params: &Params) -> Result<Value, ApiError> {
    let inner = shared.lock();
    let chat_id = params.chat_id()?;
    let c = channel_of(&inner, params)?;
    let mut chat = chat_json(&inner, chat_id);
    chat["description"] = json!(c.description);
    chat["accent_color_id"] = json!(0);
    chat["max_reaction_count"] = json!(11);
    if let Some(p) = &c.photo_unique_id {
        chat["photo"] = json!({
            "small_file_id": format!("s-{p}"),
            "small_file_unique_id": format!("{p}-s"),
            "big_file_id": format!("b-{p}"),
            "big_file_unique_id": p,
        });
    }
    if let Some(id) = c.pinned_message_id
        && let Some(stored) = inner.messages.get(&(chat_id, id))
    {
        chat["pinned_message"] = message_json(&inner, stored);
    }
    ok(chat)
}

fn get_chat_administrators(shared: &Shared, params: &Params) -> Result<Value, ApiError> {
    let inner = shared.lock();
    let c = channel_of(&inner, params)?;
    let mut list = vec![json!({
        "user": bot_user(shared.bot_id),
        "status": "administrator",
        "can_be_edited": false,
        "is_anonymous": false,
        "can_manage_chat": true,
        "can_delete_messages": true,
        "can_post_messages": true,
        "can_edit_messages": true,
        "can_promote_members": false,
        "can_change_info": false,
        "can_invite_users": false,
        "can_restrict_members": false,
        "can_manage_video_chats": false,
    })];
    for (user, status) in &c.admins {
        let mut m = json!({"user": user.json(), "status": status, "is_anonymous": false});
        if *status == "administrator" {
            for right in ["can_manage_chat", "can_post_messages", "can_edit_messages"] {
                m[right] = json!(true);
            }
            m["can_be_edited"] = json!(false);
            m["can_delete_messages"] = json!(false);
            m["can_promote_members"] = json!(false);
        }
        list.push(m);
    }
    ok(Value::Array(list))
}

impl FakeBotApi {
    /// Creates a channel the bot administers, owned by `owner`.
    pub fn add_channel(&self, chat_id: i64, title: &str, owner: &FakeUser) {
        self.lock().channels.insert(
            chat_id,
            FakeChannel {
                title: title.to_owned(),
                description: String::new(),
                username: None,
                photo_unique_id: None,
                pinned_message_id: None,
                admins: vec![(owner.clone(), "creator")],
                bot_admin: true,
            },
        );
    }

    /// Changes what `getChat` shows (title, description, photo, pinned message, username).
    pub fn update_channel(&self, chat_id: i64, f: impl FnOnce(&mut FakeChannel)) {
        let mut inner = self.lock();
        let channel = inner
            .channels
            .get_mut(&chat_id)
            .unwrap_or_else(|| panic!("update_channel: unknown channel {chat_id}"));
        f(channel);
    }

    /// Publishes a post in the channel (dated `date`) and queues its `channel_post` update.
    pub fn push_channel_post_at(&self, chat_id: i64, text: &str, date: DateTime<Utc>) -> i32 {
        let mut inner = self.lock();
        assert!(
            inner.channels.contains_key(&chat_id),
            "unknown channel {chat_id}"
        );
        let message_id = next_message_id(&mut inner, chat_id);
        let stored = Stored {
            from: Value::Null,
            from_bot: false,
            date: date.timestamp(),
            edit_date: None,
            rendered: Rendered {
                text: text.to_owned(),
                entities: url_entities(text),
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
                received_at: date,
                received_instant: Instant::now(),
            },
        };
        let message = message_json(&inner, &stored);
        inner.messages.insert((chat_id, message_id), stored);
        self.enqueue(&mut inner, "channel_post", "channel_post", message);
        drop(inner);
        self.shared.updates.notify_waiters();
        message_id
    }

    /// Publishes a post in the channel now.
    pub fn push_channel_post(&self, chat_id: i64, text: &str) -> i32 {
        self.push_channel_post_at(chat_id, text, Utc::now())
    }

    /// Edits a channel post and queues its `edited_channel_post` update.
    pub fn edit_channel_post(&self, chat_id: i64, message_id: i32, text: &str) {
        let mut inner = self.lock();
        let stored = inner
            .messages
            .get_mut(&(chat_id, message_id))
            .unwrap_or_else(|| panic!("edit_channel_post: unknown message {message_id}"));
        stored.rendered = Rendered {
            text: text.to_owned(),
            entities: url_entities(text),
        };
        stored.record.text = text.to_owned();
        stored.edit_date = Some(Utc::now().timestamp());
        let stored = stored.clone();
        let message = message_json(&inner, &stored);
        self.enqueue(
            &mut inner,
            "edited_channel_post",
            "edited_channel_post",
            message,
        );
        drop(inner);
        self.shared.updates.notify_waiters();
    }

    /// Whether a message still exists (not deleted).
    pub fn has_message(&self, chat_id: i64, message_id: i32) -> bool {
        self.lock().messages.contains_key(&(chat_id, message_id))
    }

    /// `by` promotes `user` to `status` (`administrator` or `creator`): the admin list changes
    /// and a `chat_member` update is queued.
    pub fn add_channel_admin(
        &self,
        chat_id: i64,
        by: &FakeUser,
        user: &FakeUser,
        status: &'static str,
    ) {
        let mut inner = self.lock();
        let channel = inner.channels.get_mut(&chat_id).expect("unknown channel");
        channel.admins.push((user.clone(), status));
        let update = member_update(&inner, chat_id, by, user.json(), "member", status);
        self.enqueue(&mut inner, "chat_member", "chat_member", update);
        drop(inner);
        self.shared.updates.notify_waiters();
    }

    /// `by` removes the bot from the channel (`left`) or demotes it (`member`): channel
    /// methods answer 403 from now on and a `my_chat_member` update is queued.
    pub fn remove_bot_from_channel(&self, chat_id: i64, by: &FakeUser, status: &'static str) {
        let mut inner = self.lock();
        inner
            .channels
            .get_mut(&chat_id)
            .expect("unknown channel")
            .bot_admin = false;
        let bot = bot_user(self.shared.bot_id);
        let update = member_update(&inner, chat_id, by, bot, "administrator", status);
        self.enqueue(&mut inner, "my_chat_member", "my_chat_member", update);
        drop(inner);
        self.shared.updates.notify_waiters();
    }
}

/// A `ChatMemberUpdated` as Telegram sends it for a channel.
fn member_update(
    inner: &Inner,
    chat_id: i64,
    by: &FakeUser,
    user: Value,
    old: &str,
    new: &str,
) -> Value {
    let member = |status: &str| {
        let mut m = json!({"user": user, "status": status});
        match status {
            "administrator" => {
                m["can_be_edited"] = json!(false);
                m["is_anonymous"] = json!(false);
                for right in [
                    "can_manage_chat",
                    "can_delete_messages",
                    "can_manage_video_chats",
                    "can_restrict_members",
                    "can_promote_members",
                    "can_change_info",
                    "can_invite_users",
                    "can_post_messages",
                    "can_edit_messages",
                ] {
                    m[right] = json!(true);
                }
                m["can_post_stories"] = json!(false);
                m["can_edit_stories"] = json!(false);
                m["can_delete_stories"] = json!(false);
            }
            "creator" => m["is_anonymous"] = json!(false),
            "kicked" => m["until_date"] = json!(0),
            _ => {}
        }
        m
    };
    json!({
        "chat": chat_json(inner, chat_id),
        "from": by.json(),
        "date": Utc::now().timestamp(),
        "old_chat_member": member(old),
        "new_chat_member": member(new),
    })
}

/// `url` entities over every http(s) word, as Telegram's parser marks them.
fn url_entities(text: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut offset = 0;
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            offset += 1;
        }
        if word.starts_with("http://") || word.starts_with("https://") {
            out.push(json!({"type": "url", "offset": offset, "length": utf16_len(word)}));
        }
        offset += utf16_len(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_becomes_entities_with_utf16_offsets() {
        let r =
            parse_html("🚨 <b>alice</b> &lt;3 <a href=\"https://x.example/a\">link</a>").unwrap();
        assert_eq!(r.text, "🚨 alice <3 link");
        assert_eq!(
            r.entities[0],
            json!({"type": "bold", "offset": 3, "length": 5})
        );
        assert_eq!(
            r.entities[1],
            json!({"type": "text_link", "url": "https://x.example/a", "offset": 12, "length": 4})
        );
    }

    #[test]
    fn html_errors_match_telegram_categories() {
        assert!(
            parse_html("a <foo>b</foo>")
                .unwrap_err()
                .starts_with("Unsupported start tag")
        );
        assert!(
            parse_html("<b>x</i>")
                .unwrap_err()
                .starts_with("Unmatched end tag")
        );
        assert!(
            parse_html("<b>x")
                .unwrap_err()
                .starts_with("Can't find end tag")
        );
        assert!(parse_html("1 < 2").is_err());
        assert_eq!(parse_html("fish & chips").unwrap().text, "fish & chips");
    }

    #[test]
    fn code_with_language_inside_pre_sets_pre_language() {
        let r = parse_html("<pre><code class=\"language-rust\">fn</code></pre>").unwrap();
        assert_eq!(
            r.entities,
            vec![json!({"type": "pre", "language": "rust", "offset": 0, "length": 2})]
        );
    }
}

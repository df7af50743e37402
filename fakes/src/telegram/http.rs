//! The HTTP layer of the fake Bot API: routing `/bot<token>/<method>`, forced failures, and
//! parameters read from the query, a form or JSON, as Telegram reads them.

use super::*;

// ---------------------------------------------------------------------------------
// HTTP layer
// ---------------------------------------------------------------------------------

pub(super) struct ApiError {
    pub(super) status: StatusCode,
    pub(super) description: String,
    pub(super) retry_after: Option<u32>,
}

impl ApiError {
    pub(super) fn bad_request(description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            description: description.into(),
            retry_after: None,
        }
    }

    pub(super) fn new(status: u16, description: impl Into<String>) -> Self {
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

pub(super) fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub(super) fn ok(result: Value) -> Result<Value, ApiError> {
    Ok(result)
}

pub(super) async fn handle(
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
        if inner.down {
            return broken_response();
        }
        inner.calls.push(RecordedCall {
            method: method.to_owned(),
            params: Value::Object(params.0.clone()),
            received_at: Utc::now(),
        });
        let edited = match method_key.as_str() {
            "editmessagetext" | "editmessagereplymarkup" => params
                .chat_id()
                .ok()
                .zip(params.message_id().ok())
                .and_then(|key| inner.message_faults.get(&key).cloned()),
            _ => None,
        };
        inner
            .failures
            .get_mut(&method_key)
            .and_then(VecDeque::pop_front)
            .or(edited)
            .or_else(|| inner.standing.get(&method_key).cloned())
    };
    // These are answers to a request the server carried out: the method runs first.
    let carried_out = matches!(
        forced,
        Some(Failure::ResetAfterAccept | Failure::NullResult)
    );
    if let Some(failure) = forced.clone().filter(|_| !carried_out) {
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
    if shared.lock().down {
        return broken_response();
    }
    match (result, forced) {
        (Ok(_), Some(Failure::NullResult)) => {
            json_response(StatusCode::OK, &json!({"ok": true, "result": null}))
        }
        (_, Some(Failure::ResetAfterAccept)) => broken_response(),
        (Ok(result), _) => json_response(StatusCode::OK, &json!({"ok": true, "result": result})),
        (Err(error), _) => error.into_response(),
    }
}

pub(super) async fn forced_response(shared: &Shared, failure: Failure) -> Response {
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
        Failure::EditRefused(why) => ApiError::bad_request(why.description()).into_response(),
        Failure::EntityError => ApiError::bad_request(
            "Bad Request: can't parse entities: Can't find end of the entity starting at byte offset 12",
        )
        .into_response(),
        Failure::TooLong => ApiError::bad_request("Bad Request: message is too long").into_response(),
        Failure::Reset | Failure::ResetAfterAccept | Failure::NullResult => broken_response(),
    }
}

pub(super) fn percent_decode(segment: &str) -> String {
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
pub(super) struct Params(Map<String, Value>);

pub(super) fn parse_params(
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Params, ApiError> {
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
    pub(super) fn string(&self, key: &str) -> Option<String> {
        match self.0.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    }

    pub(super) fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
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

    pub(super) fn flag(&self, key: &str) -> bool {
        match self.0.get(key) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => matches!(s.as_str(), "true" | "True" | "1"),
            Some(Value::Number(n)) => n.as_i64() == Some(1),
            _ => false,
        }
    }

    /// Structured parameters arrive as JSON values in JSON bodies but as JSON-serialized
    /// strings in form and query encodings.
    pub(super) fn json(&self, key: &str) -> Result<Option<Value>, ()> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => serde_json::from_str(s).map(Some).map_err(|_| ()),
            Some(other) => Ok(Some(other.clone())),
        }
    }

    pub(super) fn chat_id(&self) -> Result<i64, ApiError> {
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

    pub(super) fn message_id(&self) -> Result<i32, ApiError> {
        let id = self.int("message_id")?.ok_or_else(|| {
            ApiError::bad_request("Bad Request: message identifier is not specified")
        })?;
        i32::try_from(id)
            .map_err(|_| ApiError::bad_request("Bad Request: invalid message_id specified"))
    }
}

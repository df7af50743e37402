//! The HTTP layer of the fake Mastodon: routing, forced failures, rate-limit headers, paging
//! (`max_id`, `min_id`, `since_id`, Link headers) and the user stream.

use super::*;

// ---------------------------------------------------------------------------------
// HTTP layer
// ---------------------------------------------------------------------------------

pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) body: Value,
    pub(super) link: Option<String>,
}

impl Reply {
    pub(super) fn ok(body: Value) -> Self {
        Self {
            status: StatusCode::OK,
            body,
            link: None,
        }
    }

    pub(super) fn error(status: StatusCode, message: &str) -> Self {
        Self {
            status,
            body: json!({"error": message}),
            link: None,
        }
    }

    pub(super) fn not_found() -> Self {
        Self::error(StatusCode::NOT_FOUND, "Record not found")
    }
}

pub(super) async fn handle(
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
            inner.over_limit += 1;
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
    if method == Method::DELETE {
        let mut held = shared.hold_deletes.subscribe();
        let mut shutdown = shared.shutdown.subscribe();
        tokio::select! {
            _ = held.wait_for(|held| !*held) => {}
            _ = shutdown.wait_for(|stopped| *stopped) => {}
        }
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
pub(super) fn stream(shared: &Arc<Shared>, authorized: bool, rate: &RateInfo) -> Response {
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

pub(super) fn respond(reply: Reply, rate: &RateInfo, truncate: bool) -> Response {
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

pub(super) fn route(shared: &Shared, method: &Method, uri: &Uri) -> Reply {
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
pub(super) fn truthy(value: Option<&str>) -> bool {
    value.is_some_and(|v| !matches!(v, "0" | "f" | "F" | "false" | "FALSE" | "off" | "OFF"))
}

/// Filter keys that Mastodon carries over into the pagination links.
pub(super) const LINK_KEYS: [&str; 6] = [
    "exclude_reblogs",
    "exclude_replies",
    "limit",
    "only_media",
    "pinned",
    "tagged",
];

pub(super) fn account_statuses(
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

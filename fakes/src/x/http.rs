//! The HTTP layer of the fake X API v2: routing, bearer checks, the per-endpoint 15-minute
//! windows and their headers, pagination, and the JSON X answers.

use super::*;

pub(super) fn problem(status: StatusCode) -> Value {
    let reason = status.canonical_reason().unwrap_or("Error");
    json!({ "title": reason, "detail": reason, "type": "about:blank", "status": status.as_u16() })
}

pub(super) async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    request_body: axum::body::Bytes,
) -> Response {
    let segments: Vec<String> = uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let endpoint = match (&method, segs.as_slice()) {
        (&Method::GET, ["2", "users", _, "tweets"]) => XEndpoint::Timeline,
        (&Method::GET, ["2", "users"]) => XEndpoint::Users,
        (&Method::DELETE, ["2", "tweets", _]) => XEndpoint::Delete,
        (&Method::GET | &Method::POST, ["2", "webhooks"])
        | (&Method::PUT, ["2", "webhooks", _]) => XEndpoint::Webhooks,
        (&Method::GET | &Method::POST, ["2", "activity", "subscriptions"]) => {
            XEndpoint::ActivitySubscriptions
        }
        (
            &Method::POST,
            [
                "2",
                "account_activity",
                "webhooks",
                _,
                "subscriptions",
                "all",
            ],
        ) => XEndpoint::AccountActivitySubscribe,
        _ => {
            let status = StatusCode::NOT_FOUND;
            return (status, axum::Json(problem(status))).into_response();
        }
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let query: Vec<(String, String)> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    // Registration calls the webhook back (the CRC check): not under the lock.
    if endpoint == XEndpoint::Webhooks && method != Method::GET {
        let authorized = bearer == shared.inner.lock().expect("fake X lock").bearer;
        let (status, body) = if authorized {
            push::register(&shared, &method, &segs, &request_body).await
        } else {
            (StatusCode::UNAUTHORIZED, problem(StatusCode::UNAUTHORIZED))
        };
        shared.inner.lock().expect("fake X lock").calls.push(Call {
            endpoint,
            query: uri.query().unwrap_or_default().to_owned(),
            at: Instant::now(),
            status: status.as_u16(),
            forced: false,
        });
        return (status, axum::Json(body)).into_response();
    }
    let mut inner = shared.inner.lock().expect("fake X lock");
    let now = Instant::now();
    let forced = inner
        .failures
        .get_mut(&endpoint)
        .and_then(VecDeque::pop_front);
    let window = inner.windows.get_mut(&endpoint).expect("every endpoint");
    window.roll(now);
    let status;
    let mut body;
    let was_forced = forced.is_some();
    match forced {
        Some(Failure::TooManyRequests { reset_in }) => {
            window.blocked_until = Some(now + reset_in);
            status = StatusCode::TOO_MANY_REQUESTS;
            body = problem(status);
        }
        Some(Failure::Status(code)) => {
            status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            body = problem(status);
        }
        None => {
            let blocked = window.blocked_until.is_some_and(|b| now < b);
            if !blocked {
                window.blocked_until = None;
            }
            if blocked || window.used >= window.limit {
                status = StatusCode::TOO_MANY_REQUESTS;
                body = problem(status);
            } else {
                window.used += 1;
                (status, body) = match endpoint {
                    XEndpoint::Webhooks
                    | XEndpoint::ActivitySubscriptions
                    | XEndpoint::AccountActivitySubscribe => {
                        push::route(&mut inner, &method, endpoint, &segs, &request_body, &bearer)
                    }
                    _ => route(&mut inner, endpoint, &segs, &query, &bearer),
                };
            }
        }
    }
    let window = inner.windows.get(&endpoint).expect("every endpoint");
    let remaining = window.limit.saturating_sub(window.used);
    let reset_in = window.reset_at().saturating_duration_since(now);
    // Unix seconds, rounded up: the window is over by then.
    let reset_at = Utc::now() + chrono::Duration::from_std(reset_in).unwrap_or_default();
    let reset = reset_at.timestamp() + i64::from(reset_at.timestamp_subsec_nanos() > 0);
    let limit = window.limit;
    if status == StatusCode::UNAUTHORIZED && body.is_null() {
        body = problem(status);
    }
    inner.calls.push(Call {
        endpoint,
        query: uri.query().unwrap_or_default().to_owned(),
        at: now,
        status: status.as_u16(),
        forced: was_forced,
    });
    drop(inner);
    let mut response = (status, axum::Json(body)).into_response();
    let h = response.headers_mut();
    for (name, value) in [
        ("x-rate-limit-limit", limit.to_string()),
        (
            "x-rate-limit-remaining",
            if status == StatusCode::TOO_MANY_REQUESTS {
                "0".to_owned()
            } else {
                remaining.to_string()
            },
        ),
        ("x-rate-limit-reset", reset.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    response
}

pub(super) fn route(
    inner: &mut Inner,
    endpoint: XEndpoint,
    segs: &[&str],
    query: &[(String, String)],
    bearer: &str,
) -> (StatusCode, Value) {
    let param = |k: &str| {
        query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    match endpoint {
        XEndpoint::Delete => {
            let Some(id) = segs[2].parse::<u64>().ok() else {
                return invalid("id", segs[2]);
            };
            let Some(t) = inner.tweets.get(&id).filter(|t| !t.deleted) else {
                return (
                    StatusCode::NOT_FOUND,
                    json!({"title": "Not Found Error", "detail": format!("Could not find tweet with id: [{id}]."),
                        "type": "https://api.twitter.com/2/problems/resource-not-found", "status": 404}),
                );
            };
            let author = inner.users.get(&t.author);
            if bearer == inner.bearer {
                // An app-only token cannot act for a user.
                return (
                    StatusCode::FORBIDDEN,
                    json!({"title": "Unsupported Authentication",
                        "detail": "Authenticating with OAuth 2.0 Application-Only is forbidden for this endpoint.  Supported authentication types are [OAuth 1.0a User Context, OAuth 2.0 User Context].",
                        "type": "https://api.twitter.com/2/problems/unsupported-authentication", "status": 403}),
                );
            }
            if author.and_then(|a| a.write_token.as_deref()) != Some(bearer) {
                return (StatusCode::UNAUTHORIZED, problem(StatusCode::UNAUTHORIZED));
            }
            // Deleting a post deletes every version of it.
            let history = t.history.clone();
            for v in history {
                if let Some(t) = v.parse().ok().and_then(|v| inner.tweets.get_mut(&v)) {
                    t.deleted = true;
                    t.gone = true;
                }
            }
            (StatusCode::OK, json!({"data": {"deleted": true}}))
        }
        _ if bearer != inner.bearer => {
            (StatusCode::UNAUTHORIZED, problem(StatusCode::UNAUTHORIZED))
        }
        // Answered by `push::route`.
        XEndpoint::Webhooks
        | XEndpoint::ActivitySubscriptions
        | XEndpoint::AccountActivitySubscribe => {
            (StatusCode::NOT_FOUND, problem(StatusCode::NOT_FOUND))
        }
        XEndpoint::Users => {
            let ids: Vec<&str> = param("ids")
                .unwrap_or_default()
                .split(',')
                .filter(|s| !s.is_empty())
                .collect();
            if ids.is_empty() || ids.len() > 100 {
                return invalid("ids", param("ids").unwrap_or_default());
            }
            let mut data = Vec::new();
            let mut errors = Vec::new();
            for id in ids {
                match inner.users.get(id) {
                    Some(u) => data.push(user_json(u)),
                    None => errors.push(json!({
                        "value": id, "detail": format!("Could not find user with ids: [{id}]."),
                        "title": "Not Found Error", "resource_type": "user", "parameter": "ids",
                        "resource_id": id, "type": "https://api.twitter.com/2/problems/resource-not-found"})),
                }
            }
            let mut body = serde_json::Map::new();
            if !data.is_empty() {
                body.insert("data".into(), Value::Array(data));
            }
            if !errors.is_empty() {
                body.insert("errors".into(), Value::Array(errors));
            }
            (StatusCode::OK, Value::Object(body))
        }
        XEndpoint::Timeline => {
            let user = segs[2];
            if !inner.users.contains_key(user) {
                return (
                    StatusCode::OK,
                    json!({"errors": [{"value": user, "detail": format!("Could not find user with id: [{user}]."),
                        "title": "Not Found Error", "resource_type": "user", "parameter": "id", "resource_id": user,
                        "type": "https://api.twitter.com/2/problems/resource-not-found"}]}),
                );
            }
            let max: usize = match param("max_results").map(str::parse::<usize>) {
                None => 10,
                Some(Ok(n)) if (5..=100).contains(&n) => n,
                Some(_) => return invalid("max_results", param("max_results").unwrap_or_default()),
            };
            let since: u64 = param("since_id").and_then(|s| s.parse().ok()).unwrap_or(0);
            let offset: usize = match param("pagination_token").map(str::parse) {
                None => 0,
                Some(Ok(n)) => n,
                Some(Err(_)) => {
                    return invalid(
                        "pagination_token",
                        param("pagination_token").unwrap_or_default(),
                    );
                }
            };
            let fields = param("tweet.fields").unwrap_or_default();
            let all: Vec<&Tweet> = inner
                .tweets
                .values()
                .rev()
                .filter(|t| t.author == user && !t.gone && t.id > since)
                .collect();
            let page: Vec<&Tweet> = all.iter().skip(offset).take(max).copied().collect();
            if page.is_empty() {
                return (StatusCode::OK, json!({"meta": {"result_count": 0}}));
            }
            let with = |f: &str| fields.split(',').any(|x| x == f);
            let mut media = Vec::new();
            let data: Vec<Value> = page
                .iter()
                .map(|t| {
                    let mut v = json!({
                        "id": t.id.to_string(),
                        "text": t.text,
                        "edit_history_tweet_ids": t.history,
                    });
                    if with("created_at") {
                        v["created_at"] = json!(t.created_at.to_rfc3339_opts(SecondsFormat::Millis, true));
                    }
                    if with("entities") && !t.urls.is_empty() {
                        v["entities"] = json!({ "urls": t.urls });
                    }
                    if with("attachments") && !t.media.is_empty() {
                        v["attachments"] = json!({ "media_keys": t.media.iter().map(|(k, _)| k).collect::<Vec<_>>() });
                        for (k, url) in &t.media {
                            media.push(json!({ "media_key": k, "type": "photo", "url": url }));
                        }
                    }
                    v
                })
                .collect();
            let mut meta = json!({
                "result_count": data.len(),
                "newest_id": page[0].id.to_string(),
                "oldest_id": page[page.len() - 1].id.to_string(),
            });
            if offset + max < all.len() {
                meta["next_token"] = json!((offset + max).to_string());
            }
            let mut body = json!({ "data": data, "meta": meta });
            if !media.is_empty()
                && param("expansions").is_some_and(|e| e.contains("attachments.media_keys"))
            {
                body["includes"] = json!({ "media": media });
            }
            (StatusCode::OK, body)
        }
    }
}

pub(super) fn invalid(parameter: &str, value: &str) -> (StatusCode, Value) {
    (
        StatusCode::BAD_REQUEST,
        json!({
            "errors": [{ "parameters": { parameter: [value] }, "message": format!("The `{parameter}` query parameter value [{value}] is not valid") }],
            "title": "Invalid Request",
            "detail": "One or more parameters to your request was invalid.",
            "type": "https://api.twitter.com/2/problems/invalid-request",
        }),
    )
}

pub(super) fn user_json(u: &User) -> Value {
    let mut v = json!({
        "id": u.id,
        "name": u.name,
        "username": u.username,
        "description": u.description,
        "profile_image_url": u.profile_image_url,
        "protected": u.protected,
        "verified_type": u.verified_type,
    });
    if let Some((wrapper, target)) = &u.url {
        v["url"] = json!(wrapper);
        let display: String = target
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .to_owned();
        v["entities"] = json!({ "url": { "urls": [{
            "start": 0, "end": wrapper.chars().count(), "url": wrapper,
            "expanded_url": target, "display_url": display,
        }]}});
    } else {
        v["url"] = json!("");
    }
    if let Some(p) = &u.pinned_tweet_id {
        v["pinned_tweet_id"] = json!(p);
    }
    v
}

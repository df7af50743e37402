//! The XRPC layer of the fake PDS: routing, rate-limit headers, forced failures, and the
//! answers of the methods tocsin calls.

use super::*;

pub(super) fn xrpc_error(status: StatusCode, error: &str, message: &str) -> Response {
    (status, Json(json!({"error": error, "message": message}))).into_response()
}

pub(super) fn at_uri(did: &str, collection: &str, rkey: &str) -> String {
    format!("at://{did}/{collection}/{rkey}")
}

pub(super) async fn xrpc(
    State(shared): State<Arc<Shared>>,
    Path(nsid): Path<String>,
    method: Method,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
) -> Response {
    let body: Option<Value> = serde_json::from_slice(&body).ok();
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let mut inner = shared.inner.lock().expect("fake Bluesky lock");
    inner.requests.push(RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        bearer: bearer.clone(),
        body: body.clone(),
    });
    let now = Utc::now().timestamp();
    if now >= inner.rate_reset {
        inner.rate_used = 0;
        inner.rate_reset = now + RATE_WINDOW_SECS;
    }
    inner.rate_used += 1;
    let mut rate = (RATE_LIMIT.saturating_sub(inner.rate_used), inner.rate_reset);
    let mut resp = match inner.failures.pop_front() {
        Some(Failure::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let name = match code {
                401 => "AuthenticationRequired",
                502 => "UpstreamFailure",
                _ => "InternalServerError",
            };
            xrpc_error(status, name, status.canonical_reason().unwrap_or("error"))
        }
        Some(Failure::RateLimited { reset_in_secs }) => {
            rate = (0, now + reset_in_secs);
            xrpc_error(
                StatusCode::TOO_MANY_REQUESTS,
                "RateLimitExceeded",
                "Rate Limit Exceeded",
            )
        }
        None if nsid == "app.bsky.feed.getPosts" && method == Method::GET => {
            get_posts(&inner, uri.query().unwrap_or_default())
        }
        None => answer(&shared, &mut inner, &nsid, &method, &q, bearer, body),
    };
    let h = resp.headers_mut();
    h.insert("ratelimit-limit", HeaderValue::from(RATE_LIMIT));
    h.insert("ratelimit-remaining", HeaderValue::from(rate.0));
    h.insert("ratelimit-reset", HeaderValue::from(rate.1));
    h.insert(
        "ratelimit-policy",
        HeaderValue::from_str(&format!("{RATE_LIMIT};w={RATE_WINDOW_SECS}")).expect("ascii"),
    );
    resp
}

pub(super) fn answer(
    shared: &Arc<Shared>,
    inner: &mut Inner,
    nsid: &str,
    method: &Method,
    q: &HashMap<String, String>,
    bearer: Option<String>,
    body: Option<Value>,
) -> Response {
    let param = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    let missing = |k: &str| {
        xrpc_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            &format!("Error: Params must have the property \"{k}\""),
        )
    };
    match (method.clone(), nsid) {
        (Method::GET, "com.atproto.identity.resolveHandle") => {
            let handle = param("handle");
            match inner.repos.iter().find(|(_, r)| r.handle == handle) {
                Some((did, _)) => Json(json!({"did": did})).into_response(),
                None => xrpc_error(
                    StatusCode::BAD_REQUEST,
                    "HandleNotFound",
                    "Unable to resolve handle",
                ),
            }
        }
        (Method::GET, "com.atproto.sync.getRepoStatus") => match inner.repos.get(param("did")) {
            Some(r) => {
                let mut v = json!({"did": param("did"), "active": r.active, "rev": r.rev});
                if let Some(s) = &r.status {
                    v["status"] = json!(s);
                }
                Json(v).into_response()
            }
            None => xrpc_error(
                StatusCode::BAD_REQUEST,
                "RepoNotFound",
                &format!("Could not find repo for DID: {}", param("did")),
            ),
        },
        (Method::GET, "com.atproto.repo.getRecord") => {
            for k in ["repo", "collection", "rkey"] {
                if param(k).is_empty() {
                    return missing(k);
                }
            }
            let (did, collection, rkey) = (param("repo"), param("collection"), param("rkey"));
            let Some(repo) = inner.repos.get(did) else {
                return xrpc_error(
                    StatusCode::BAD_REQUEST,
                    "RepoNotFound",
                    &format!("Could not find repo: {did}"),
                );
            };
            let found = match collection {
                "app.bsky.actor.profile" if rkey == "self" => repo.profile.clone(),
                "app.bsky.feed.post" => repo.posts.get(rkey).cloned(),
                _ => None,
            };
            match found {
                Some((value, cid)) => {
                    Json(json!({"uri": at_uri(did, collection, rkey), "cid": cid, "value": value}))
                        .into_response()
                }
                None => xrpc_error(
                    StatusCode::BAD_REQUEST,
                    NOT_FOUND,
                    &format!("Could not locate record: {}", at_uri(did, collection, rkey)),
                ),
            }
        }
        (Method::GET, "com.atproto.repo.listRecords") => {
            for k in ["repo", "collection"] {
                if param(k).is_empty() {
                    return missing(k);
                }
            }
            let limit: usize = match q.get("limit").map(|l| l.parse()) {
                None => 50,
                Some(Ok(l)) if (1..=100).contains(&l) => l,
                Some(_) => {
                    return xrpc_error(
                        StatusCode::BAD_REQUEST,
                        "InvalidRequest",
                        "Error: limit must be an integer between 1 and 100",
                    );
                }
            };
            let (did, collection) = (param("repo"), param("collection"));
            let Some(repo) = inner.repos.get(did) else {
                return xrpc_error(
                    StatusCode::BAD_REQUEST,
                    "RepoNotFound",
                    &format!("Could not find repo: {did}"),
                );
            };
            let all: Vec<(String, Value, String)> = match collection {
                "app.bsky.feed.post" => repo
                    .posts
                    .iter()
                    .map(|(k, (v, c))| (k.clone(), v.clone(), c.clone()))
                    .collect(),
                "app.bsky.actor.profile" => repo
                    .profile
                    .iter()
                    .map(|(v, c)| ("self".to_owned(), v.clone(), c.clone()))
                    .collect(),
                _ => Vec::new(),
            };
            let reverse = param("reverse") == "true";
            let cursor = q.get("cursor");
            let mut page: Vec<_> = if reverse {
                all.into_iter()
                    .filter(|(k, ..)| cursor.is_none_or(|c| k > c))
                    .take(limit)
                    .collect()
            } else {
                all.into_iter()
                    .rev()
                    .filter(|(k, ..)| cursor.is_none_or(|c| k < c))
                    .take(limit)
                    .collect()
            };
            let next = (page.len() == limit)
                .then(|| page.last().map(|(k, ..)| k.clone()))
                .flatten();
            let records: Vec<Value> = page
                .drain(..)
                .map(|(k, v, c)| json!({"uri": at_uri(did, collection, &k), "cid": c, "value": v}))
                .collect();
            let mut out = json!({"records": records});
            if let Some(c) = next {
                out["cursor"] = json!(c);
            }
            Json(out).into_response()
        }
        (Method::POST, "com.atproto.server.createSession") => {
            let body = body.unwrap_or_default();
            let id = body["identifier"].as_str().unwrap_or_default();
            let password = body["password"].as_str().unwrap_or_default();
            let found = inner
                .repos
                .iter()
                .find(|(did, r)| *did == id || r.handle == id)
                .map(|(did, r)| (did.clone(), r.clone()));
            match found {
                Some((did, r))
                    if r.app_password.as_deref() == Some(password) && !password.is_empty() =>
                {
                    let token = format!(
                        "at-{}",
                        cid_of(&json!([
                            did,
                            inner.sessions.len(),
                            Utc::now().timestamp_micros()
                        ]))
                    );
                    inner.sessions.insert(token.clone(), did.clone());
                    Json(json!({
                        "accessJwt": token,
                        "refreshJwt": format!("ref-{token}"),
                        "handle": r.handle,
                        "did": did,
                        "active": r.active,
                    }))
                    .into_response()
                }
                _ => xrpc_error(
                    StatusCode::UNAUTHORIZED,
                    "AuthenticationRequired",
                    "Invalid identifier or password",
                ),
            }
        }
        (Method::POST, "com.atproto.repo.deleteRecord") => {
            let Some(did) = bearer.as_ref().and_then(|t| inner.sessions.get(t)).cloned() else {
                return xrpc_error(
                    StatusCode::UNAUTHORIZED,
                    "InvalidToken",
                    "Token could not be verified",
                );
            };
            let body = body.unwrap_or_default();
            let repo = body["repo"].as_str().unwrap_or_default();
            let collection = body["collection"].as_str().unwrap_or_default();
            let rkey = body["rkey"].as_str().unwrap_or_default().to_owned();
            if repo != did {
                return xrpc_error(StatusCode::BAD_REQUEST, "InvalidRequest", "Invalid did");
            }
            let removed = inner
                .repos
                .get_mut(&did)
                .and_then(|r| match collection {
                    "app.bsky.feed.post" => r.posts.remove(&rkey),
                    _ => None,
                })
                .is_some();
            // The real PDS answers 200 for a record that is not there, with no commit.
            if !removed {
                return Json(json!({})).into_response();
            }
            let fake = FakeBluesky {
                shared: Arc::clone(shared),
            };
            fake.commit(inner, &did, "delete", collection, &rkey, None);
            let rev = inner
                .repos
                .get(&did)
                .map(|r| r.rev.clone())
                .unwrap_or_default();
            Json(json!({"commit": {"cid": cid_of(&json!([did, rev])), "rev": rev}})).into_response()
        }
        _ => xrpc_error(
            StatusCode::NOT_IMPLEMENTED,
            "MethodNotImplemented",
            "Method Not Implemented",
        ),
    }
}

/// The AppView's `app.bsky.feed.getPosts`: `uris` repeated (at most 25), a `postView` for
/// each post it has, in the order asked; posts it does not have are left out, not an error.
pub(super) fn get_posts(inner: &Inner, query: &str) -> Response {
    let uris: Vec<String> = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "uris")
        .map(|(_, v)| v.into_owned())
        .collect();
    if uris.len() > 25 {
        return xrpc_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "Error: uris must not have more than 25 elements",
        );
    }
    let mut posts = Vec::new();
    for uri in &uris {
        let Some(rest) = uri.strip_prefix("at://") else {
            return xrpc_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequest",
                "Error: uris/0 must be a valid at-uri",
            );
        };
        let mut parts = rest.splitn(3, '/');
        let (did, collection, rkey) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        let Some(repo) = inner.repos.get(did) else {
            continue;
        };
        if collection != "app.bsky.feed.post" {
            continue;
        }
        let Some((record, cid)) = repo.posts.get(rkey).or_else(|| repo.appview_only.get(rkey))
        else {
            continue;
        };
        posts.push(json!({
            "uri": uri,
            "cid": cid,
            "author": {"did": did, "handle": repo.handle, "labels": []},
            "record": record,
            "replyCount": 0,
            "repostCount": 0,
            "likeCount": 0,
            "quoteCount": 0,
            "indexedAt": record["createdAt"],
            "labels": [],
        }));
    }
    Json(json!({"posts": posts})).into_response()
}

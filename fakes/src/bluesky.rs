//! An in-process stand-in for the three Bluesky services a watcher talks to, on one loopback
//! port: a PDS (XRPC `com.atproto.*` with real JSON shapes, errors as
//! `{"error": "…", "message": "…"}` and `ratelimit-*` headers), a PLC directory (`GET /{did}`,
//! `GET /{did}/data`) and a Jetstream (`GET /subscribe` websocket, `wantedDids`,
//! `wantedCollections`, `cursor` replay).
//!
//! Every change made through the handle (publish, edit, delete, profile, handle, PDS, keys,
//! account status) is written to the repository or the DID document *and* broadcast as the
//! Jetstream event the real network would send, so tests can watch push and poll see the same
//! thing. The stream can be dropped (open sockets cut without a close frame, new ones refused
//! with 503) and restored.
//!
//! It binds to 127.0.0.1 only and never opens outbound connections.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{
        Path, Query, State,
        ws::{Message, WebSocket, WebSocketUpgrade},
    },
    http::{HeaderMap, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
};
use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, watch};

/// The PDS's per-IP budget as Bluesky documents it: 3,000 requests per 5 minutes.
const RATE_LIMIT: u32 = 3000;
const RATE_WINDOW_SECS: i64 = 300;
const NOT_FOUND: &str = "RecordNotFound";

/// A forced answer for the next XRPC request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// That HTTP status with an XRPC error body.
    Status(u16),
    /// 429 `RateLimitExceeded` with `ratelimit-remaining: 0` and a reset this far ahead.
    RateLimited { reset_in_secs: i64 },
}

/// One HTTP request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub bearer: Option<String>,
    pub body: Option<Value>,
}

#[derive(Clone)]
struct Repo {
    handle: String,
    pds: String,
    signing_key: String,
    rotation_keys: Vec<String>,
    active: bool,
    status: Option<String>,
    profile: Option<(Value, String)>,
    /// rkey → (record, cid).
    posts: BTreeMap<String, (Value, String)>,
    app_password: Option<String>,
    rev: String,
}

struct Inner {
    repos: HashMap<String, Repo>,
    sessions: HashMap<String, String>,
    failures: VecDeque<Failure>,
    requests: Vec<RecordedRequest>,
    last_tid_us: i64,
    last_time_us: i64,
    /// Every event sent, for `cursor` replay.
    events: Vec<(i64, Value)>,
    stream_up: bool,
    connects: usize,
    open_streams: usize,
    rate_used: u32,
    rate_reset: i64,
}

struct Shared {
    url: url::Url,
    inner: Mutex<Inner>,
    events: broadcast::Sender<(i64, Arc<Value>)>,
    /// Bumped to cut every open stream.
    cut: watch::Sender<u64>,
    shutdown: watch::Sender<bool>,
}

/// Handle to a running fake. Cheap to clone; clones share one server.
#[derive(Clone)]
pub struct FakeBluesky {
    shared: Arc<Shared>,
}

const TID_CHARS: &[u8] = b"234567abcdefghijklmnopqrstuvwxyz";

/// A TID: 64-bit (microseconds << 10 | clock id), base32-sortable, 13 characters.
fn tid(micros: i64) -> String {
    let v = (micros as u64) << 10;
    (0..13)
        .map(|i| TID_CHARS[((v >> (60 - 5 * i)) & 31) as usize] as char)
        .collect()
}

/// A CIDv1 (dag-cbor, sha-256) look-alike: `bafyrei` and base32 of the content's hash.
pub fn cid_of(value: &Value) -> String {
    let hash = Sha256::digest(value.to_string().as_bytes());
    let mut out = String::from("bafyrei");
    let mut bits = 0u32;
    let mut acc = 0u32;
    for byte in hash.iter() {
        acc = (acc << 8) | u32::from(*byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(b"abcdefghijklmnopqrstuvwxyz234567"[((acc >> bits) & 31) as usize] as char);
        }
    }
    out
}

/// A post record as the Bluesky app writes it: each URL shown shortened (no scheme, cut at 27
/// characters) with a link facet carrying the full target.
pub fn post_record(text: &str) -> Value {
    let mut shown = String::new();
    let mut facets = Vec::new();
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            shown.push(' ');
        }
        if word.starts_with("https://") || word.starts_with("http://") {
            let bare = word.split_once("://").map_or(word, |(_, r)| r);
            let display = if bare.chars().count() > 27 {
                let cut: String = bare.chars().take(24).collect();
                format!("{cut}...")
            } else {
                bare.to_owned()
            };
            let start = shown.len();
            shown.push_str(&display);
            facets.push(json!({
                "$type": "app.bsky.richtext.facet",
                "index": {"byteStart": start, "byteEnd": shown.len()},
                "features": [{"$type": "app.bsky.richtext.facet#link", "uri": word}]
            }));
        } else {
            shown.push_str(word);
        }
    }
    let mut record = json!({
        "$type": "app.bsky.feed.post",
        "text": shown,
        "langs": ["en"],
        "createdAt": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
    });
    if !facets.is_empty() {
        record["facets"] = Value::Array(facets);
    }
    record
}

/// A blob reference to an image of that CID.
pub fn blob(cid: &str) -> Value {
    json!({"$type": "blob", "ref": {"$link": cid}, "mimeType": "image/jpeg", "size": 48213})
}

impl FakeBluesky {
    /// Starts the fake on 127.0.0.1 with an ephemeral port.
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let url = url::Url::parse(&format!("http://{addr}/"))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (events, _) = broadcast::channel(4096);
        let (cut, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            url,
            inner: Mutex::new(Inner {
                repos: HashMap::new(),
                sessions: HashMap::new(),
                failures: VecDeque::new(),
                requests: Vec::new(),
                last_tid_us: 0,
                last_time_us: 0,
                events: Vec::new(),
                stream_up: true,
                connects: 0,
                open_streams: 0,
                rate_used: 0,
                rate_reset: Utc::now().timestamp() + RATE_WINDOW_SECS,
            }),
            events,
            cut,
            shutdown,
        });
        let app = Router::new()
            .route("/subscribe", get(subscribe))
            .route("/xrpc/{nsid}", get(xrpc).post(xrpc))
            .route("/{did}", get(plc_document))
            .route("/{did}/data", get(plc_data))
            .with_state(Arc::clone(&shared));
        super::spawn_server(listener, app, shutdown_rx, "fake Bluesky");
        Ok(Self { shared })
    }

    /// `http://127.0.0.1:PORT/`: the PDS, the PLC directory and the handle resolver.
    pub fn url(&self) -> url::Url {
        self.shared.url.clone()
    }

    /// `ws://127.0.0.1:PORT/subscribe`.
    pub fn jetstream_url(&self) -> url::Url {
        let mut u = self.shared.url.clone();
        u.set_scheme("ws").expect("ws scheme");
        u.join("subscribe").expect("constant path")
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.inner.lock().expect("fake Bluesky lock")
    }

    /// Adds an account whose PDS is this fake, with a profile record and an app password.
    pub fn add_account(&self, did: &str, handle: &str, display_name: &str, description: &str) {
        let profile = json!({
            "$type": "app.bsky.actor.profile",
            "displayName": display_name,
            "description": description,
            "avatar": blob(&cid_of(&json!(["avatar", did]))),
            "createdAt": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        });
        let cid = cid_of(&profile);
        let key = |n: &str| format!("did:key:zQ3sh{}", &cid_of(&json!([n, did]))[7..40]);
        let repo = Repo {
            handle: handle.to_owned(),
            pds: self.url().as_str().trim_end_matches('/').to_owned(),
            signing_key: format!("zQ3sh{}", &cid_of(&json!(["signing", did]))[7..40]),
            rotation_keys: vec![key("rotation-0"), key("rotation-1")],
            active: true,
            status: None,
            profile: Some((profile, cid)),
            posts: BTreeMap::new(),
            app_password: None,
            rev: tid(Utc::now().timestamp_micros()),
        };
        self.lock().repos.insert(did.to_owned(), repo);
    }

    /// Sets the app password `createSession` accepts; None revokes it and its sessions.
    pub fn set_app_password(&self, did: &str, password: Option<&str>) {
        let mut inner = self.lock();
        if let Some(r) = inner.repos.get_mut(did) {
            r.app_password = password.map(str::to_owned);
        }
        if password.is_none() {
            inner.sessions.retain(|_, d| d != did);
        }
    }

    /// Publishes a post written as the app writes it (see [`post_record`]); returns its rkey.
    pub fn publish(&self, did: &str, text: &str) -> String {
        self.publish_record(did, post_record(text))
    }

    /// Publishes a post record as given; returns its rkey.
    pub fn publish_record(&self, did: &str, record: Value) -> String {
        let mut inner = self.lock();
        let now = Utc::now().timestamp_micros().max(inner.last_tid_us + 1);
        inner.last_tid_us = now;
        let rkey = tid(now);
        let cid = cid_of(&record);
        let repo = inner.repos.get_mut(did).expect("unknown DID");
        repo.posts
            .insert(rkey.clone(), (record.clone(), cid.clone()));
        self.commit(
            &mut inner,
            did,
            "create",
            "app.bsky.feed.post",
            &rkey,
            Some((record, cid)),
        );
        rkey
    }

    /// Replaces a post's text (a `putRecord` update; Bluesky's app cannot, an API client can).
    pub fn edit(&self, did: &str, rkey: &str, text: &str) {
        let mut inner = self.lock();
        let repo = inner.repos.get_mut(did).expect("unknown DID");
        let (old, _) = repo.posts.get(rkey).expect("unknown post").clone();
        let mut record = post_record(text);
        record["createdAt"] = old["createdAt"].clone();
        let cid = cid_of(&record);
        repo.posts
            .insert(rkey.to_owned(), (record.clone(), cid.clone()));
        self.commit(
            &mut inner,
            did,
            "update",
            "app.bsky.feed.post",
            rkey,
            Some((record, cid)),
        );
    }

    /// Deletes a post (as its owner would).
    pub fn delete(&self, did: &str, rkey: &str) {
        let mut inner = self.lock();
        if let Some(repo) = inner.repos.get_mut(did) {
            repo.posts.remove(rkey);
        }
        self.commit(&mut inner, did, "delete", "app.bsky.feed.post", rkey, None);
    }

    pub fn has_post(&self, did: &str, rkey: &str) -> bool {
        self.lock()
            .repos
            .get(did)
            .is_some_and(|r| r.posts.contains_key(rkey))
    }

    /// Changes the profile record (`putRecord` of `app.bsky.actor.profile/self`).
    pub fn update_profile(&self, did: &str, change: impl FnOnce(&mut Value)) {
        let mut inner = self.lock();
        let repo = inner.repos.get_mut(did).expect("unknown DID");
        let mut record = repo.profile.as_ref().map_or_else(
            || json!({"$type": "app.bsky.actor.profile"}),
            |p| p.0.clone(),
        );
        change(&mut record);
        let cid = cid_of(&record);
        repo.profile = Some((record.clone(), cid.clone()));
        self.commit(
            &mut inner,
            did,
            "update",
            "app.bsky.actor.profile",
            "self",
            Some((record, cid)),
        );
    }

    /// A new handle in the DID document, announced by an `identity` event.
    pub fn set_handle(&self, did: &str, handle: &str) {
        let mut inner = self.lock();
        inner.repos.get_mut(did).expect("unknown DID").handle = handle.to_owned();
        let event = json!({"did": did, "handle": handle, "seq": inner.events.len() + 1,
            "time": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)});
        self.send(&mut inner, did, "identity", event);
    }

    /// A new PDS endpoint in the DID document (the repository moved), with an `identity` event.
    pub fn set_pds(&self, did: &str, pds: &url::Url) {
        let mut inner = self.lock();
        let repo = inner.repos.get_mut(did).expect("unknown DID");
        repo.pds = pds.as_str().trim_end_matches('/').to_owned();
        let handle = repo.handle.clone();
        let event = json!({"did": did, "handle": handle, "seq": inner.events.len() + 1,
            "time": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)});
        self.send(&mut inner, did, "identity", event);
    }

    /// New rotation keys in the PLC data; announced only if `announce` (a PLC operation that
    /// changes keys alone emits no identity event on some relays: the poll must catch it).
    pub fn set_rotation_keys(&self, did: &str, keys: &[&str], announce: bool) {
        let mut inner = self.lock();
        let repo = inner.repos.get_mut(did).expect("unknown DID");
        repo.rotation_keys = keys.iter().map(|k| (*k).to_owned()).collect();
        let handle = repo.handle.clone();
        if announce {
            let event = json!({"did": did, "handle": handle, "seq": inner.events.len() + 1,
                "time": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)});
            self.send(&mut inner, did, "identity", event);
        }
    }

    /// The account's hosting status, with an `account` event.
    pub fn set_status(&self, did: &str, active: bool, status: Option<&str>) {
        let mut inner = self.lock();
        let repo = inner.repos.get_mut(did).expect("unknown DID");
        repo.active = active;
        repo.status = status.map(str::to_owned);
        let mut event = json!({"active": active, "did": did, "seq": inner.events.len() + 1,
            "time": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)});
        if let Some(s) = status {
            event["status"] = json!(s);
        }
        self.send(&mut inner, did, "account", event);
    }

    fn commit(
        &self,
        inner: &mut Inner,
        did: &str,
        operation: &str,
        collection: &str,
        rkey: &str,
        record: Option<(Value, String)>,
    ) {
        let rev = tid(Utc::now().timestamp_micros().max(inner.last_tid_us + 1));
        if let Some(repo) = inner.repos.get_mut(did) {
            repo.rev = rev.clone();
        }
        let mut commit =
            json!({"rev": rev, "operation": operation, "collection": collection, "rkey": rkey});
        if let Some((record, cid)) = record {
            commit["record"] = record;
            commit["cid"] = json!(cid);
        }
        self.send(inner, did, "commit", commit);
    }

    fn send(&self, inner: &mut Inner, did: &str, kind: &str, payload: Value) {
        let time_us = Utc::now().timestamp_micros().max(inner.last_time_us + 1);
        inner.last_time_us = time_us;
        let mut event = json!({"did": did, "time_us": time_us, "kind": kind});
        event[kind] = payload;
        inner.events.push((time_us, event.clone()));
        // Nobody listening is fine: the event is kept for replay.
        let _ = self.shared.events.send((time_us, Arc::new(event)));
    }

    /// Cuts every open stream (no close frame) and refuses new ones with 503.
    pub fn drop_stream(&self) {
        self.lock().stream_up = false;
        self.shared.cut.send_modify(|n| *n += 1);
    }

    /// Accepts stream connections again.
    pub fn restore_stream(&self) {
        self.lock().stream_up = true;
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.lock().open_streams
    }

    /// Stream connections accepted since start.
    pub fn stream_connects(&self) -> usize {
        self.lock().connects
    }

    pub fn fail_next(&self, failure: Failure) {
        self.lock().failures.push_back(failure);
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// Requests whose path ends with `nsid_or_path`.
    pub fn request_count(&self, nsid_or_path: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.path.ends_with(nsid_or_path))
            .count()
    }

    pub async fn wait_until(&self, timeout: Duration, f: impl Fn(&Self) -> bool) -> bool {
        super::wait_until(self, timeout, f).await
    }

    pub fn shutdown(&self) {
        self.shared.cut.send_modify(|n| *n += 1);
        let _ = self.shared.shutdown.send(true);
    }
}

fn xrpc_error(status: StatusCode, error: &str, message: &str) -> Response {
    (status, Json(json!({"error": error, "message": message}))).into_response()
}

fn at_uri(did: &str, collection: &str, rkey: &str) -> String {
    format!("at://{did}/{collection}/{rkey}")
}

async fn xrpc(
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

fn answer(
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

fn document(did: &str, r: &Repo) -> Value {
    json!({
        "@context": [
            "https://www.w3.org/ns/did/v1",
            "https://w3id.org/security/multikey/v1",
            "https://w3id.org/security/suites/secp256k1-2019/v1"
        ],
        "id": did,
        "alsoKnownAs": [format!("at://{}", r.handle)],
        "verificationMethod": [{
            "id": format!("{did}#atproto"),
            "type": "Multikey",
            "controller": did,
            "publicKeyMultibase": r.signing_key,
        }],
        "service": [{
            "id": "#atproto_pds",
            "type": "AtprotoPersonalDataServer",
            "serviceEndpoint": r.pds,
        }]
    })
}

async fn plc_document(State(shared): State<Arc<Shared>>, Path(did): Path<String>) -> Response {
    let inner = shared.inner.lock().expect("fake Bluesky lock");
    match inner.repos.get(&did) {
        Some(r) => Json(document(&did, r)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": format!("DID not registered: {did}")})),
        )
            .into_response(),
    }
}

async fn plc_data(State(shared): State<Arc<Shared>>, Path(did): Path<String>) -> Response {
    let inner = shared.inner.lock().expect("fake Bluesky lock");
    match inner.repos.get(&did) {
        Some(r) => Json(json!({
            "did": did,
            "verificationMethods": {"atproto": format!("did:key:{}", r.signing_key)},
            "rotationKeys": r.rotation_keys,
            "alsoKnownAs": [format!("at://{}", r.handle)],
            "services": {"atproto_pds": {"type": "AtprotoPersonalDataServer", "endpoint": r.pds}},
        }))
        .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": format!("DID not registered: {did}")})),
        )
            .into_response(),
    }
}

/// `wantedDids`/`wantedCollections` repeat, so the query is read as pairs.
async fn subscribe(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    ws: WebSocketUpgrade,
) -> Response {
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let list = |k: &str| -> Vec<String> {
        pairs
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let dids = list("wantedDids");
    let collections = list("wantedCollections");
    let cursor: Option<i64> = pairs
        .iter()
        .find(|(n, _)| n == "cursor")
        .and_then(|(_, v)| v.parse().ok());
    {
        let mut inner = shared.inner.lock().expect("fake Bluesky lock");
        if !inner.stream_up {
            return (StatusCode::SERVICE_UNAVAILABLE, "jetstream unavailable").into_response();
        }
        inner.connects += 1;
    }
    ws.on_upgrade(move |socket| serve_stream(shared, socket, dids, collections, cursor))
}

fn wanted(event: &Value, dids: &[String], collections: &[String]) -> bool {
    let did = event["did"].as_str().unwrap_or_default();
    if !dids.is_empty() && !dids.iter().any(|d| d == did) {
        return false;
    }
    // Identity and account events pass whatever the collections.
    match event["commit"]["collection"].as_str() {
        Some(c) => collections.is_empty() || collections.iter().any(|w| w == c),
        None => true,
    }
}

async fn serve_stream(
    shared: Arc<Shared>,
    mut socket: WebSocket,
    dids: Vec<String>,
    collections: Vec<String>,
    cursor: Option<i64>,
) {
    let mut live = shared.events.subscribe();
    let mut cut = shared.cut.subscribe();
    cut.borrow_and_update();
    let backlog: Vec<(i64, Value)> = {
        let mut inner = shared.inner.lock().expect("fake Bluesky lock");
        inner.open_streams += 1;
        match cursor {
            Some(c) => inner
                .events
                .iter()
                .filter(|(t, _)| *t >= c)
                .cloned()
                .collect(),
            None => Vec::new(),
        }
    };
    let mut last = 0;
    let mut ok = true;
    for (t, event) in backlog {
        last = t;
        if wanted(&event, &dids, &collections)
            && socket
                .send(Message::Text(event.to_string().into()))
                .await
                .is_err()
        {
            ok = false;
            break;
        }
    }
    while ok {
        ok = tokio::select! {
            _ = cut.changed() => false,
            e = live.recv() => match e {
                Ok((t, event)) if t > last => {
                    last = t;
                    !wanted(&event, &dids, &collections)
                        || socket.send(Message::Text(event.to_string().into())).await.is_ok()
                }
                Ok(_) => true,
                // A subscriber too slow for the buffer is cut, as Jetstream does.
                Err(_) => false,
            },
            m = socket.recv() => !matches!(m, Some(Ok(Message::Close(_))) | None | Some(Err(_))),
        };
    }
    shared.inner.lock().expect("fake Bluesky lock").open_streams -= 1;
    // Dropped without a close frame: what a lost connection looks like to the client.
    drop(socket);
}

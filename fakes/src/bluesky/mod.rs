//! An in-process stand-in for the four Bluesky services a watcher talks to, on one loopback
//! port: a PDS (XRPC `com.atproto.*` with real JSON shapes, errors as
//! `{"error": "…", "message": "…"}` and `ratelimit-*` headers), a PLC directory (`GET /{did}`,
//! `GET /{did}/data`), an AppView (`app.bsky.feed.getPosts`) and a Jetstream (`GET /subscribe`
//! websocket, `wantedDids`, `wantedCollections`, `cursor` replay). [`AttackerPds`] is the
//! intruder's PDS an account can be moved to.
//!
//! Every change made through the handle (publish, edit, delete, profile, handle, PDS, keys,
//! account status) is written to the repository or the DID document *and* broadcast as the
//! Jetstream event the real network would send, so tests can watch push and poll see the same
//! thing. The stream can be dropped (open sockets cut without a close frame, new ones refused
//! with 503) and restored.
//!
//! It binds to 127.0.0.1 only and never opens outbound connections.

mod attacker;
mod directory;
mod jetstream;
mod xrpc;

pub use attacker::AttackerPds;

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
use directory::*;
use jetstream::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, watch};
use xrpc::*;

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
    /// Posts gone from the PDS that the AppView still shows (see [`FakeBluesky::hide_from_pds`]).
    appview_only: BTreeMap<String, (Value, String)>,
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
    /// The `cursor` each Jetstream subscription asked to resume from, in order.
    subscribe_cursors: Vec<Option<i64>>,
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
                subscribe_cursors: Vec::new(),
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
            appview_only: BTreeMap::new(),
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

    /// The PDS forgets a post (its `getRecord` answers `RecordNotFound`) without a commit, so
    /// the AppView keeps showing it: a PDS that lies about what readers see.
    pub fn hide_from_pds(&self, did: &str, rkey: &str) {
        let mut inner = self.lock();
        let repo = inner.repos.get_mut(did).expect("unknown DID");
        let post = repo.posts.remove(rkey).expect("unknown post");
        repo.appview_only.insert(rkey.to_owned(), post);
    }

    /// The AppView drops what only it still showed (it caught up with the PDS).
    pub fn appview_catch_up(&self, did: &str) {
        if let Some(repo) = self.lock().repos.get_mut(did) {
            repo.appview_only.clear();
        }
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
    /// The `cursor` of each Jetstream subscription accepted so far (`None`: live only).
    pub fn subscribe_cursors(&self) -> Vec<Option<i64>> {
        self.lock().subscribe_cursors.clone()
    }

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

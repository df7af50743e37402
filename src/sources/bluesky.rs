//! Bluesky: one account (a DID) read from its PDS, with Jetstream pushing its commits.
//!
//! Identity first: a handle in `account_id` is resolved once with
//! `com.atproto.identity.resolveHandle` at `base_url`; the DID document (PLC directory for
//! `did:plc:`, `/.well-known/did.json` for `did:web:`) names the PDS, the handle and the signing
//! key, and the PLC audit data the rotation keys. Those are profile fields, so a handle change, a
//! PDS move or a key rotation is a profile drift like a new bio, paged as critical by detect.
//!
//! The poller reads the profile record (`app.bsky.actor.profile/self`, with its CID), the repo
//! status and the newest posts (`listRecords`, newest first, paged back to the last post seen).
//! It is the backstop: Jetstream (`wantedDids` = this DID) pushes creates, updates and deletes
//! of posts and of the profile record, and `identity` and `account` events, which become the same
//! observations the moment they arrive. The stream's `time_us` cursor is checkpointed like the
//! poll cursor and resumed (a few seconds back: replays are judged "already seen") on reconnect.
//! A stream down past the account's grace reports as blind.
//!
//! Both halves share one state behind an async lock held across the emit, so the merged profile
//! they report reaches the pipeline in the order it was built.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use chrono::{DateTime, TimeZone, Utc};
use reqwest::{StatusCode, header::HeaderMap};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;
use tracing::Instrument;
use url::Url;

use super::{RateBudget, SourceContext, SourceError};
use crate::config::Account;
use crate::model::{ObservationKind, Post, PostContent, Profile};

pub const POST: &str = "app.bsky.feed.post";
pub const PROFILE: &str = "app.bsky.actor.profile";
/// Records per `listRecords` page; the lexicon's maximum.
const PAGE: usize = 100;
/// Pages read back in one poll to reach the last post seen.
const MAX_GAP_PAGES: usize = 10;
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Reconnect waits: short, because every second down is a second of polling latency.
const STREAM_BACKOFF_MIN: Duration = Duration::from_millis(250);
const STREAM_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How far back a reconnect resumes, so an event in flight at the drop is not lost.
const CURSOR_REWIND_US: i64 = 2_000_000;
/// A silent connection is pinged this often so a dead peer is noticed.
const PING_EVERY: Duration = Duration::from_secs(20);

/// Who the account is, per its DID document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub did: String,
    /// From `alsoKnownAs` (`at://HANDLE`); empty when there is none.
    pub handle: String,
    /// The `#atproto_pds` service endpoint.
    pub pds: Url,
    /// The `#atproto` verification method's `publicKeyMultibase`.
    pub signing_key: String,
    /// did:plc only: who may rewrite the identity.
    pub rotation_keys: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct DidDocument {
    id: String,
    #[serde(default, rename = "alsoKnownAs")]
    also_known_as: Vec<String>,
    #[serde(default, rename = "verificationMethod")]
    verification_method: Vec<VerificationMethod>,
    #[serde(default)]
    service: Vec<Service>,
}

#[derive(Debug, Deserialize)]
struct VerificationMethod {
    id: String,
    #[serde(default, rename = "publicKeyMultibase")]
    public_key_multibase: String,
}

#[derive(Debug, Deserialize)]
struct Service {
    id: String,
    #[serde(rename = "serviceEndpoint")]
    service_endpoint: String,
}

#[derive(Debug, Deserialize)]
struct PlcData {
    #[serde(default, rename = "rotationKeys")]
    rotation_keys: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ResolvedHandle {
    did: String,
}

#[derive(Debug, Deserialize)]
struct RecordEntry {
    uri: String,
    #[serde(default)]
    cid: Option<String>,
    value: Value,
}

#[derive(Debug, Deserialize)]
struct RecordPage {
    #[serde(default)]
    cursor: Option<String>,
    records: Vec<RecordEntry>,
}

#[derive(Debug, Deserialize)]
struct RepoStatus {
    active: bool,
    #[serde(default)]
    status: Option<String>,
}

/// An XRPC error body: `{"error": "RecordNotFound", "message": "…"}`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct XrpcError {
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub message: String,
}

/// A GET on an XRPC method; `Ok(None)` when the record or repo is not there.
async fn xrpc_get<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    base: &Url,
    nsid: &str,
    query: &[(&str, &str)],
    budget: &mut Option<RateBudget>,
) -> Result<Option<T>, SourceError> {
    let url = xrpc_url(base, nsid)?;
    let resp = http.get(url).query(query).send().await?;
    if let Some(b) = rate_budget(resp.headers()) {
        *budget = Some(b);
    }
    let status = resp.status();
    if status.is_success() {
        return resp
            .json::<T>()
            .await
            .map(Some)
            .map_err(|e| malformed(nsid, e));
    }
    let retry = retry_after(resp.headers());
    let body: XrpcError = resp.json().await.unwrap_or_default();
    match status {
        StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND
            if matches!(
                body.error.as_str(),
                "RecordNotFound" | "RepoNotFound" | "NotFound"
            ) =>
        {
            Ok(None)
        }
        StatusCode::TOO_MANY_REQUESTS => Err(SourceError::RateLimited(
            retry.unwrap_or(Duration::from_secs(60)),
        )),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(SourceError::Unauthorized {
            status: status.as_u16(),
        }),
        _ => Err(SourceError::Status {
            status: status.as_u16(),
            what: describe(nsid, &body),
        }),
    }
}

pub(crate) fn describe(nsid: &str, body: &XrpcError) -> String {
    match (body.error.is_empty(), body.message.is_empty()) {
        (true, _) => nsid.to_owned(),
        (false, true) => format!("{nsid} ({})", body.error),
        (false, false) => format!("{nsid} ({}: {})", body.error, body.message),
    }
}

pub(crate) fn xrpc_url(base: &Url, nsid: &str) -> Result<Url, SourceError> {
    base.join(&format!("xrpc/{nsid}"))
        .map_err(|e| malformed(nsid, e))
}

fn malformed(what: &str, e: impl std::fmt::Display) -> SourceError {
    SourceError::Malformed {
        what: what.into(),
        detail: e.to_string(),
    }
}

/// Bluesky's `ratelimit-limit/remaining/reset` (reset in Unix seconds).
fn rate_budget(h: &HeaderMap) -> Option<RateBudget> {
    super::rate_budget(h, "ratelimit-", |v| {
        v.parse::<i64>()
            .ok()
            .and_then(|s| Utc.timestamp_opt(s, 0).single())
    })
}

fn retry_after(h: &HeaderMap) -> Option<Duration> {
    super::retry_after(h, rate_budget(h).as_ref())
}

/// The DID of `account_id`: itself when it is one, else the handle resolved at `base_url`.
pub async fn resolve_did(
    http: &reqwest::Client,
    base: &Url,
    account_id: &str,
) -> Result<String, SourceError> {
    let id = account_id.trim();
    if id.starts_with("did:") {
        return Ok(id.to_owned());
    }
    let nsid = "com.atproto.identity.resolveHandle";
    let resolved: Option<ResolvedHandle> =
        xrpc_get(http, base, nsid, &[("handle", id)], &mut None).await?;
    match resolved {
        Some(r) if r.did.starts_with("did:") => Ok(r.did),
        Some(r) => Err(malformed(nsid, format!("`{}` is not a DID", r.did))),
        None => Err(SourceError::Status {
            status: 400,
            what: format!("{nsid}: handle `{id}` not found"),
        }),
    }
}

/// Where a DID's document lives: the PLC directory, or the did:web host's well-known path.
pub fn did_document_url(plc: &Url, did: &str) -> Result<Url, SourceError> {
    if let Some(rest) = did.strip_prefix("did:web:") {
        // did:web:host%3Aport:path → https://host:port/path/did.json (no path: /.well-known).
        let mut parts = rest.split(':');
        let host = parts.next().unwrap_or_default().replace("%3A", ":");
        let path: Vec<&str> = parts.collect();
        let url = if path.is_empty() {
            format!("https://{host}/.well-known/did.json")
        } else {
            format!("https://{host}/{}/did.json", path.join("/"))
        };
        return Url::parse(&url).map_err(|e| malformed(did, e));
    }
    if !did.starts_with("did:plc:") {
        return Err(malformed(did, "only did:plc and did:web are supported"));
    }
    plc.join(&format!("./{did}")).map_err(|e| malformed(did, e))
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: Url,
    what: &str,
) -> Result<T, SourceError> {
    let resp = http.get(url).send().await?;
    let status = resp.status();
    if !status.is_success() {
        return Err(match status {
            StatusCode::TOO_MANY_REQUESTS => SourceError::RateLimited(
                retry_after(resp.headers()).unwrap_or(Duration::from_secs(60)),
            ),
            _ => SourceError::Status {
                status: status.as_u16(),
                what: what.into(),
            },
        });
    }
    resp.json().await.map_err(|e| malformed(what, e))
}

/// Resolves the DID document (and, for did:plc, the rotation keys).
pub async fn resolve_identity(
    http: &reqwest::Client,
    plc: &Url,
    did: &str,
) -> Result<Identity, SourceError> {
    let url = did_document_url(plc, did)?;
    let what = format!("DID document of {did}");
    let doc: DidDocument = get_json(http, url.clone(), &what).await?;
    if doc.id != did {
        return Err(malformed(&what, format!("document is for {}", doc.id)));
    }
    let endpoint = doc
        .service
        .iter()
        .find(|s| s.id == "#atproto_pds" || s.id == format!("{did}#atproto_pds"))
        .map(|s| s.service_endpoint.clone())
        .ok_or_else(|| malformed(&what, "no #atproto_pds service"))?;
    let pds = Url::parse(&endpoint).map_err(|e| malformed(&what, e))?;
    let handle = doc
        .also_known_as
        .iter()
        .find_map(|a| a.strip_prefix("at://"))
        .unwrap_or_default()
        .to_owned();
    let signing_key = doc
        .verification_method
        .iter()
        .find(|m| m.id == "#atproto" || m.id == format!("{did}#atproto"))
        .map(|m| m.public_key_multibase.clone())
        .unwrap_or_default();
    let rotation_keys = if did.starts_with("did:plc:") {
        let data_url = plc
            .join(&format!("./{did}/data"))
            .map_err(|e| malformed(did, e))?;
        let data: PlcData = get_json(http, data_url, &format!("PLC data of {did}")).await?;
        data.rotation_keys
    } else {
        Vec::new()
    };
    Ok(Identity {
        did: did.to_owned(),
        handle,
        pds,
        signing_key,
        rotation_keys,
    })
}

/// What the account looks like, assembled from its three origins.
#[derive(Debug, Default)]
struct State {
    identity: BTreeMap<String, String>,
    record: BTreeMap<String, String>,
    status: String,
    /// The newest post of the first poll: anything at or before it is history.
    origin: Option<String>,
    pds: Option<Url>,
    /// The stream's last `time_us`.
    stream_cursor: Option<i64>,
}

impl State {
    fn profile(&self) -> Profile {
        let mut fields = self.identity.clone();
        fields.extend(self.record.clone());
        fields.insert("account_status".into(), self.status.clone());
        Profile { fields }
    }

    fn set_identity(&mut self, id: &Identity) {
        self.pds = Some(id.pds.clone());
        self.identity = BTreeMap::from([
            ("handle".to_owned(), id.handle.clone()),
            ("pds".to_owned(), id.pds.to_string()),
            ("signing_key".to_owned(), id.signing_key.clone()),
            ("rotation_keys".to_owned(), id.rotation_keys.join(", ")),
        ]);
    }

    fn history(&self, rkey: &str) -> bool {
        self.origin
            .as_deref()
            .is_some_and(|o| cmp_rkey(rkey, o) != std::cmp::Ordering::Greater)
    }
}

/// Record keys of posts are TIDs: base32-sortable, fixed length. Compare longer keys as later
/// so that a non-TID key cannot sort before everything.
fn cmp_rkey(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn status_text(active: bool, status: Option<&str>) -> String {
    if active {
        "active".into()
    } else {
        status.unwrap_or("inactive").to_owned()
    }
}

/// The profile record's fields by our names; every key present, empty when unset.
fn profile_fields(record: Option<&Value>, cid: Option<&str>) -> BTreeMap<String, String> {
    let empty = Value::Null;
    let r = record.unwrap_or(&empty);
    let text = |k: &str| {
        r.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    BTreeMap::from([
        ("display_name".to_owned(), text("displayName")),
        ("description".to_owned(), text("description")),
        (
            "avatar".to_owned(),
            r.get("avatar").map(blob_cid).unwrap_or_default(),
        ),
        (
            "banner".to_owned(),
            r.get("banner").map(blob_cid).unwrap_or_default(),
        ),
        (
            "pinned_post".to_owned(),
            r.pointer("/pinnedPost/uri")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        ),
        ("record_cid".to_owned(), cid.unwrap_or_default().to_owned()),
    ])
}

/// A blob's CID: `{"$type":"blob","ref":{"$link":CID}}`, or the legacy `{"cid":CID}`.
fn blob_cid(blob: &Value) -> String {
    blob.pointer("/ref/$link")
        .or_else(|| blob.get("cid"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The post as the fingerprint sees it: link facets written as their targets, the external
/// card, a quoted record and media blobs by CID.
pub fn post_content(record: &Value) -> PostContent {
    let text = record
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut links = Vec::new();
    let mut spans: Vec<(usize, usize, String)> = record
        .get("facets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|f| {
            let start = f.pointer("/index/byteStart")?.as_u64()? as usize;
            let end = f.pointer("/index/byteEnd")?.as_u64()? as usize;
            let uri = f.get("features")?.as_array()?.iter().find_map(|feat| {
                (feat.get("$type")?.as_str()? == "app.bsky.richtext.facet#link")
                    .then(|| feat.get("uri")?.as_str().map(str::to_owned))?
            })?;
            Some((start, end, uri))
        })
        .collect();
    spans.sort();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for (start, end, uri) in spans {
        // Overlapping or out-of-range facets (a client's bug) keep the text as written.
        if start < pos
            || end < start
            || end > text.len()
            || !text.is_char_boundary(start)
            || !text.is_char_boundary(end)
        {
            links.push(uri);
            continue;
        }
        out.push_str(&text[pos..start]);
        out.push_str(&uri);
        links.push(uri);
        pos = end;
    }
    out.push_str(&text[pos..]);
    let mut media = Vec::new();
    if let Some(embed) = record.get("embed") {
        embed_parts(embed, &mut links, &mut media);
    }
    PostContent {
        text: out.trim().to_owned(),
        links,
        media,
    }
}

fn embed_parts(embed: &Value, links: &mut Vec<String>, media: &mut Vec<String>) {
    let kind = embed
        .get("$type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let str_at = |p: &str| embed.pointer(p).and_then(Value::as_str).map(str::to_owned);
    match kind {
        "app.bsky.embed.external" => links.extend(str_at("/external/uri")),
        "app.bsky.embed.images" => {
            for image in embed
                .get("images")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(img) = image.get("image") {
                    media.push(format!("image:{}", blob_cid(img)));
                }
            }
        }
        "app.bsky.embed.video" => {
            if let Some(v) = embed.get("video") {
                media.push(format!("video:{}", blob_cid(v)));
            }
        }
        "app.bsky.embed.record" => links.extend(str_at("/record/uri")),
        "app.bsky.embed.recordWithMedia" => {
            links.extend(str_at("/record/record/uri"));
            if let Some(m) = embed.get("media") {
                embed_parts(m, links, media);
            }
        }
        _ => {}
    }
}

fn post(
    did: &str,
    rkey: &str,
    record: &Value,
    history: bool,
    edited_at: Option<DateTime<Utc>>,
) -> Post {
    let created_at = record
        .get("createdAt")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or_else(Utc::now, |t| t.with_timezone(&Utc));
    Post {
        id: rkey.to_owned(),
        url: Some(format!("https://bsky.app/profile/{did}/post/{rkey}")),
        created_at,
        edited_at,
        content: post_content(record),
        client: None,
        history,
    }
}

/// The rkey of an `at://did/collection/rkey` URI.
fn rkey_of(uri: &str) -> Option<&str> {
    uri.rsplit('/').next().filter(|r| !r.is_empty())
}

/// One watched Bluesky account: the poller and the stream share it.
struct Watch {
    account: Account,
    ctx: SourceContext,
    did: String,
    state: Mutex<State>,
    origin_key: String,
    cursor_key: String,
    stream_key: String,
}

impl Watch {
    fn name(&self) -> &str {
        &self.account.name
    }

    /// Emits the merged profile under the lock, so it reaches the pipeline in the order built.
    async fn emit_profile(&self, state: &State) -> bool {
        self.ctx
            .emit(self.name(), ObservationKind::Profile(state.profile()))
            .await
    }

    async fn checkpoint(&self, cursor: &str, value: String) -> bool {
        self.ctx
            .emit(
                self.name(),
                ObservationKind::Checkpoint {
                    cursor: cursor.into(),
                    value,
                },
            )
            .await
    }
}

/// Watches one account until shutdown.
pub async fn run(account: Account, ctx: SourceContext) {
    let name = account.name.clone();
    let mut budget = None;
    let mut failures = 0u32;
    // The DID first: nothing else can be read without it.
    let did = loop {
        match resolve_did(&ctx.http, &account.base_url, &account.account_id).await {
            Ok(did) => break did,
            Err(e) => {
                failures += 1;
                tracing::warn!(account = %name, error = %e, "cannot resolve the Bluesky handle");
                let refused = matches!(e, SourceError::Unauthorized { .. });
                ctx.health.failure(&name, e.to_string(), refused, None);
                if !ctx.sleep(backoff(account.poll_interval, failures)).await {
                    return;
                }
            }
        }
    };
    let store = ctx.store.clone();
    let origin_key = format!("bluesky:{name}:origin");
    let cursor_key = format!("bluesky:{name}:since");
    let stream_key = format!("bluesky:{name}:jetstream");
    let state = State {
        origin: store.cursor(&origin_key).ok().flatten(),
        stream_cursor: store
            .cursor(&stream_key)
            .ok()
            .flatten()
            .and_then(|c| c.parse().ok()),
        ..State::default()
    };
    let watch = Arc::new(Watch {
        account,
        ctx,
        did,
        state: Mutex::new(state),
        origin_key,
        cursor_key,
        stream_key,
    });
    let mut since = watch.ctx.store.cursor(&watch.cursor_key).ok().flatten();
    let mut stream_started = false;
    failures = 0;
    loop {
        let span = tracing::info_span!("poll", account = %name, platform = "bluesky");
        let result = poll(&watch, &mut since, &mut budget).instrument(span).await;
        let interval = watch.account.poll_interval;
        let wait = match result {
            Ok(true) => {
                failures = 0;
                watch.ctx.health.success(&name, budget.clone());
                // History is known now: the stream may report new posts as new.
                if !stream_started {
                    stream_started = true;
                    tokio::spawn(stream(watch.clone()));
                }
                match &budget {
                    Some(RateBudget {
                        remaining: 0,
                        reset: Some(reset),
                        ..
                    }) => (*reset - Utc::now())
                        .to_std()
                        .unwrap_or_default()
                        .max(interval),
                    _ => interval,
                }
            }
            Ok(false) => return,
            Err(e) => {
                failures += 1;
                tracing::warn!(account = %name, error = %e, failures, "bluesky poll failed");
                let refused = matches!(e, SourceError::Unauthorized { .. });
                watch
                    .ctx
                    .health
                    .failure(&name, e.to_string(), refused, budget.clone());
                match e {
                    SourceError::RateLimited(d) => d.max(interval),
                    _ => backoff(interval, failures),
                }
            }
        };
        if !watch.ctx.sleep(wait).await {
            return;
        }
    }
}

fn backoff(interval: Duration, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.min(16));
    interval
        .saturating_mul(factor)
        .min(MAX_BACKOFF.max(interval))
}

/// One poll of identity, repo status, profile record and posts. Ok(false): pipeline closed.
async fn poll(
    watch: &Watch,
    since: &mut Option<String>,
    budget: &mut Option<RateBudget>,
) -> Result<bool, SourceError> {
    let http = &watch.ctx.http;
    let did = watch.did.as_str();
    let identity = resolve_identity(http, &watch.account.plc_url(), did).await?;
    let pds = identity.pds.clone();
    let status: Option<RepoStatus> = xrpc_get(
        http,
        &pds,
        "com.atproto.sync.getRepoStatus",
        &[("did", did)],
        budget,
    )
    .await?;
    let status = match status {
        Some(s) => status_text(s.active, s.status.as_deref()),
        None => "not found".into(),
    };
    let profile: Option<RecordEntry> = xrpc_get(
        http,
        &pds,
        "com.atproto.repo.getRecord",
        &[("repo", did), ("collection", PROFILE), ("rkey", "self")],
        budget,
    )
    .await?;

    // Newest first; back through pages until the last post seen (or the first poll's page).
    let limit = PAGE.to_string();
    let mut records: Vec<RecordEntry> = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_GAP_PAGES {
        let mut query = vec![
            ("repo", did),
            ("collection", POST),
            ("limit", limit.as_str()),
        ];
        if let Some(c) = &cursor {
            query.push(("cursor", c.as_str()));
        }
        let page: Option<RecordPage> =
            xrpc_get(http, &pds, "com.atproto.repo.listRecords", &query, budget).await?;
        let Some(page) = page else { break };
        let full = page.records.len() == PAGE;
        let reached = since.as_deref().is_none_or(|s| {
            page.records
                .iter()
                .filter_map(|r| rkey_of(&r.uri))
                .any(|k| cmp_rkey(k, s) != std::cmp::Ordering::Greater)
        });
        records.extend(page.records);
        cursor = page.cursor;
        if reached || !full || cursor.is_none() {
            break;
        }
    }
    records.reverse();

    let mut state = watch.state.lock().await;
    state.set_identity(&identity);
    state.status = status;
    state.record = profile_fields(
        profile.as_ref().map(|p| &p.value),
        profile.as_ref().and_then(|p| p.cid.as_deref()),
    );
    if !watch.emit_profile(&state).await {
        return Ok(false);
    }
    let first_poll = state.origin.is_none();
    if first_poll {
        let origin = records
            .last()
            .and_then(|r| rkey_of(&r.uri))
            .unwrap_or_default()
            .to_owned();
        if !watch.checkpoint(&watch.origin_key, origin.clone()).await {
            return Ok(false);
        }
        state.origin = Some(origin);
    }
    let mut newest = since.clone();
    for r in &records {
        let Some(rkey) = rkey_of(&r.uri) else {
            continue;
        };
        let history = first_poll || state.history(rkey);
        let p = post(did, rkey, &r.value, history, None);
        if !watch.ctx.emit(watch.name(), ObservationKind::Post(p)).await {
            return Ok(false);
        }
        if newest
            .as_deref()
            .is_none_or(|n| cmp_rkey(rkey, n) == std::cmp::Ordering::Greater)
        {
            newest = Some(rkey.to_owned());
        }
    }
    if let Some(n) = newest
        && since.as_deref() != Some(n.as_str())
    {
        if !watch.checkpoint(&watch.cursor_key, n.clone()).await {
            return Ok(false);
        }
        *since = Some(n);
    }
    Ok(true)
}

/// One Jetstream event, as the service sends it.
#[derive(Debug, Deserialize)]
pub struct JetstreamEvent {
    pub did: String,
    pub time_us: i64,
    pub kind: String,
    #[serde(default)]
    pub commit: Option<JetstreamCommit>,
    #[serde(default)]
    pub identity: Option<JetstreamIdentity>,
    #[serde(default)]
    pub account: Option<JetstreamAccount>,
}

#[derive(Debug, Deserialize)]
pub struct JetstreamCommit {
    pub operation: String,
    pub collection: String,
    pub rkey: String,
    #[serde(default)]
    pub record: Option<Value>,
    #[serde(default)]
    pub cid: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct JetstreamIdentity {
    #[serde(default)]
    pub handle: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct JetstreamAccount {
    pub active: bool,
    #[serde(default)]
    pub status: Option<String>,
}

/// The subscribe URL for this account, resuming from `cursor` when there is one.
pub fn subscribe_url(base: &Url, did: &str, cursor: Option<i64>) -> Url {
    let mut url = base.clone();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("wantedDids", did);
        q.append_pair("wantedCollections", POST);
        q.append_pair("wantedCollections", PROFILE);
        if let Some(c) = cursor {
            q.append_pair("cursor", &(c - CURSOR_REWIND_US).max(0).to_string());
        }
    }
    url
}

fn tls_connector() -> Option<tokio_tungstenite::Connector> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .ok()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Some(tokio_tungstenite::Connector::Rustls(Arc::new(config)))
}

/// Keeps the Jetstream connection up until shutdown, turning events into observations.
async fn stream(watch: Arc<Watch>) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let name = watch.name().to_owned();
    let health = watch.ctx.health.clone();
    let base = watch.account.jetstream_url();
    let connector = tls_connector();
    let mut wait = STREAM_BACKOFF_MIN;
    health.stream_down(&name, "connecting".into());
    loop {
        let cursor = watch.state.lock().await.stream_cursor;
        let url = subscribe_url(&base, &watch.did, cursor);
        let connect = tokio_tungstenite::connect_async_tls_with_config(
            url.as_str(),
            None,
            true,
            connector.clone(),
        );
        let connected = tokio::select! {
            _ = watch.ctx.shutdown.cancelled() => return,
            r = tokio::time::timeout(Duration::from_secs(10), connect) => r,
        };
        match connected {
            Ok(Ok((mut ws, _))) => {
                tracing::info!(account = %name, "jetstream connected");
                health.stream_up(&name);
                // Connected from "now": a drop before the first event still resumes from here.
                watch
                    .state
                    .lock()
                    .await
                    .stream_cursor
                    .get_or_insert_with(|| Utc::now().timestamp_micros());
                wait = STREAM_BACKOFF_MIN;
                let mut ping = tokio::time::interval(PING_EVERY);
                ping.tick().await;
                let why = loop {
                    let msg = tokio::select! {
                        _ = watch.ctx.shutdown.cancelled() => {
                            let _ = ws.close(None).await;
                            return;
                        }
                        _ = ping.tick() => {
                            if let Err(e) = ws.send(Message::Ping(Vec::new().into())).await {
                                break e.to_string();
                            }
                            continue;
                        }
                        m = ws.next() => m,
                    };
                    match msg {
                        Some(Ok(Message::Text(text))) => {
                            health.stream_event(&name);
                            match serde_json::from_str::<JetstreamEvent>(text.as_str()) {
                                Ok(event) => {
                                    if !handle(&watch, event).await {
                                        return;
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!(account = %name, error = %e, "unreadable jetstream event")
                                }
                            }
                        }
                        Some(Ok(Message::Close(frame))) => {
                            break frame.map_or_else(
                                || "closed by the server".to_owned(),
                                |f| format!("closed by the server ({})", f.reason),
                            );
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => break e.to_string(),
                        None => break "connection ended".to_owned(),
                    }
                };
                tracing::warn!(account = %name, reason = %why, "jetstream disconnected");
                health.stream_down(&name, why);
            }
            Ok(Err(e)) => {
                tracing::warn!(account = %name, error = %e, "jetstream connect failed");
                health.stream_down(&name, e.to_string());
            }
            Err(_) => health.stream_down(&name, "connect timed out after 10s".into()),
        }
        if !watch.ctx.sleep(wait).await {
            return;
        }
        wait = (wait * 2).min(STREAM_BACKOFF_MAX);
    }
}

/// Turns one event into observations. False when the pipeline is gone.
async fn handle(watch: &Watch, event: JetstreamEvent) -> bool {
    if event.did != watch.did {
        return true;
    }
    let at = Utc
        .timestamp_micros(event.time_us)
        .single()
        .unwrap_or_else(Utc::now);
    let mut state = watch.state.lock().await;
    let alive = match (
        event.kind.as_str(),
        &event.commit,
        &event.identity,
        &event.account,
    ) {
        ("commit", Some(c), _, _) if c.collection == POST => {
            match (c.operation.as_str(), &c.record) {
                ("create" | "update", Some(record)) => {
                    let edited = (c.operation == "update").then_some(at);
                    let p = post(&watch.did, &c.rkey, record, state.history(&c.rkey), edited);
                    watch.ctx.emit(watch.name(), ObservationKind::Post(p)).await
                }
                ("delete", _) => {
                    let deleted = ObservationKind::PostDeleted {
                        post_id: c.rkey.clone(),
                        deleted_at: at,
                    };
                    watch.ctx.emit(watch.name(), deleted).await
                }
                _ => true,
            }
        }
        ("commit", Some(c), _, _) if c.collection == PROFILE && c.rkey == "self" => {
            let record = (c.operation != "delete")
                .then_some(c.record.as_ref())
                .flatten();
            state.record = profile_fields(record, c.cid.as_deref());
            watch.emit_profile(&state).await
        }
        ("identity", _, Some(id), _) => {
            // The event says something changed; the DID document says what.
            match resolve_identity(&watch.ctx.http, &watch.account.plc_url(), &watch.did).await {
                Ok(identity) => state.set_identity(&identity),
                Err(e) => {
                    tracing::warn!(account = %watch.name(), error = %e, "cannot resolve the DID after an identity event");
                    if let Some(handle) = &id.handle {
                        state.identity.insert("handle".into(), handle.clone());
                    }
                }
            }
            watch.emit_profile(&state).await
        }
        ("account", _, _, Some(a)) => {
            state.status = status_text(a.active, a.status.as_deref());
            watch.emit_profile(&state).await
        }
        _ => true,
    };
    if !alive {
        return false;
    }
    state.stream_cursor = Some(event.time_us);
    drop(state);
    watch
        .checkpoint(&watch.stream_key, event.time_us.to_string())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{content_from_text, fingerprint};
    use serde_json::json;

    #[test]
    fn link_facets_are_expanded_and_match_a_typed_approval() {
        let text = "Q4 update ✨ example.com/q4… read it";
        let start = text.find("example").unwrap();
        let end = start + "example.com/q4…".len();
        let record = json!({
            "$type": "app.bsky.feed.post",
            "text": text,
            "createdAt": "2026-11-24T10:00:00.000Z",
            "facets": [{
                "index": {"byteStart": start, "byteEnd": end},
                "features": [{"$type": "app.bsky.richtext.facet#link", "uri": "https://example.com/q4"}]
            }]
        });
        let c = post_content(&record);
        assert_eq!(c.text, "Q4 update ✨ https://example.com/q4 read it");
        assert_eq!(c.links, vec!["https://example.com/q4".to_string()]);
        let typed = content_from_text("Q4 update ✨ https://example.com/q4 read it");
        assert_eq!(fingerprint(&c), fingerprint(&typed));
    }

    #[test]
    fn embeds_give_links_and_media() {
        let record = json!({
            "text": "look",
            "embed": {
                "$type": "app.bsky.embed.recordWithMedia",
                "record": {"record": {"uri": "at://did:plc:x/app.bsky.feed.post/3k", "cid": "bafy"}},
                "media": {"$type": "app.bsky.embed.images", "images": [
                    {"alt": "", "image": {"$type": "blob", "ref": {"$link": "bafkreiimg"}, "mimeType": "image/png", "size": 3}}
                ]}
            }
        });
        let c = post_content(&record);
        assert_eq!(
            c.links,
            vec!["at://did:plc:x/app.bsky.feed.post/3k".to_string()]
        );
        assert_eq!(c.media, vec!["image:bafkreiimg".to_string()]);
        let ext = json!({"text": "x", "embed": {"$type": "app.bsky.embed.external",
            "external": {"uri": "https://evil.example", "title": "", "description": ""}}});
        assert_eq!(
            post_content(&ext).links,
            vec!["https://evil.example".to_string()]
        );
    }

    #[test]
    fn bad_facets_keep_the_text() {
        let record = json!({"text": "héllo", "facets": [{
            "index": {"byteStart": 2, "byteEnd": 99},
            "features": [{"$type": "app.bsky.richtext.facet#link", "uri": "https://a.example"}]
        }]});
        let c = post_content(&record);
        assert_eq!(c.text, "héllo");
        assert_eq!(c.links, vec!["https://a.example".to_string()]);
    }

    #[test]
    fn did_documents_are_found_where_each_method_keeps_them() {
        let plc = Url::parse("https://plc.directory").unwrap();
        assert_eq!(
            did_document_url(&plc, "did:plc:abc").unwrap().as_str(),
            "https://plc.directory/did:plc:abc"
        );
        assert_eq!(
            did_document_url(&plc, "did:web:example.com")
                .unwrap()
                .as_str(),
            "https://example.com/.well-known/did.json"
        );
        assert_eq!(
            did_document_url(&plc, "did:web:example.com%3A8443:u:alice")
                .unwrap()
                .as_str(),
            "https://example.com:8443/u/alice/did.json"
        );
        assert!(did_document_url(&plc, "did:key:z6Mk").is_err());
    }

    #[test]
    fn subscribe_url_names_the_did_collections_and_a_rewound_cursor() {
        let base = Url::parse("wss://jetstream.example/subscribe").unwrap();
        let url = subscribe_url(&base, "did:plc:abc", Some(10_000_000));
        assert_eq!(
            url.as_str(),
            "wss://jetstream.example/subscribe?wantedDids=did%3Aplc%3Aabc&wantedCollections=app.bsky.feed.post&wantedCollections=app.bsky.actor.profile&cursor=8000000"
        );
    }

    #[test]
    fn rkeys_compare_as_tids() {
        use std::cmp::Ordering;
        assert_eq!(cmp_rkey("3kabc", "3kabd"), Ordering::Less);
        assert_eq!(cmp_rkey("self", "3kabcdefghijk"), Ordering::Less);
    }
}

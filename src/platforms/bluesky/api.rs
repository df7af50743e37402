//! The AT Protocol as tocsin reads it from a PDS: XRPC calls and errors, the rate-limit headers,
//! the repo's records, and the conversion of post and profile records into observations.

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, TimeZone, Utc};
use reqwest::{StatusCode, header::HeaderMap};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use crate::{
    model::{Post, PostContent},
    watch::{RateBudget, SourceError},
};

pub const POST: &str = "app.bsky.feed.post";
pub const PROFILE: &str = "app.bsky.actor.profile";

#[derive(Debug, Deserialize)]
pub(super) struct RecordEntry {
    pub(super) uri: String,
    #[serde(default)]
    pub(super) cid: Option<String>,
    pub(super) value: Value,
}

#[derive(Debug, Deserialize)]
pub(super) struct RecordPage {
    #[serde(default)]
    pub(super) cursor: Option<String>,
    pub(super) records: Vec<RecordEntry>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RepoStatus {
    pub(super) active: bool,
    #[serde(default)]
    pub(super) status: Option<String>,
}

/// `app.bsky.feed.getPosts`'s output: the posts the AppView has, in the order asked; a post it
/// does not have (deleted, never indexed, taken down) is left out.
#[derive(Debug, Deserialize)]
pub(super) struct PostViews {
    pub(super) posts: Vec<PostView>,
}

#[derive(Debug, Deserialize)]
pub(super) struct PostView {
    pub(super) uri: String,
}

/// An XRPC error body: `{"error": "RecordNotFound", "message": "…"}`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct XrpcError {
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub message: String,
}

/// A GET on an XRPC method; `Ok(None)` when the record or repo is not there.
pub(super) async fn xrpc_get<T: serde::de::DeserializeOwned>(
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

pub(super) fn describe(nsid: &str, body: &XrpcError) -> String {
    match (body.error.is_empty(), body.message.is_empty()) {
        (true, _) => nsid.to_owned(),
        (false, true) => format!("{nsid} ({})", body.error),
        (false, false) => format!("{nsid} ({}: {})", body.error, body.message),
    }
}

pub(super) fn xrpc_url(base: &Url, nsid: &str) -> Result<Url, SourceError> {
    base.join(&format!("xrpc/{nsid}"))
        .map_err(|e| malformed(nsid, e))
}

pub(super) fn malformed(what: &str, e: impl std::fmt::Display) -> SourceError {
    SourceError::Malformed {
        what: what.into(),
        detail: e.to_string(),
    }
}

/// Bluesky's `ratelimit-limit/remaining/reset` (reset in Unix seconds).
pub(super) fn rate_budget(h: &HeaderMap) -> Option<RateBudget> {
    crate::watch::rate_budget(h, "ratelimit-", |v| {
        v.parse::<i64>()
            .ok()
            .and_then(|s| Utc.timestamp_opt(s, 0).single())
    })
}

pub(super) fn retry_after(h: &HeaderMap) -> Option<Duration> {
    crate::watch::retry_after(h, rate_budget(h).as_ref())
}

/// Record keys of posts are TIDs: base32-sortable, fixed length. Compare longer keys as later
/// so that a non-TID key cannot sort before everything.
pub(super) fn cmp_rkey(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

pub(super) fn status_text(active: bool, status: Option<&str>) -> String {
    if active {
        "active".into()
    } else {
        status.unwrap_or("inactive").to_owned()
    }
}

/// The profile record's fields by our names; every key present, empty when unset.
pub(super) fn profile_fields(
    record: Option<&Value>,
    cid: Option<&str>,
) -> BTreeMap<String, String> {
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
pub(super) fn blob_cid(blob: &Value) -> String {
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

pub(super) fn embed_parts(embed: &Value, links: &mut Vec<String>, media: &mut Vec<String>) {
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

pub(super) fn post(
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
pub(super) fn rkey_of(uri: &str) -> Option<&str> {
    uri.rsplit('/').next().filter(|r| !r.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{content_from_text, fingerprint};
    use crate::platforms::bluesky::identity::did_document_url;
    use crate::platforms::bluesky::jetstream::subscribe_url;
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

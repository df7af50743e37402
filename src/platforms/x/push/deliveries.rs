//! The deliveries of both APIs, parsed into the changes they carry.

use super::*;

/// The X Activity API's envelope.
#[derive(Debug, Deserialize)]
pub(super) struct ActivityDelivery {
    pub(super) data: ActivityEvent,
}

#[derive(Debug, Deserialize)]
pub(super) struct ActivityEvent {
    event_type: String,
    filter: ActivityFilter,
    #[serde(default)]
    payload: serde_json::Value,
    #[serde(default)]
    includes: ActivityIncludes,
}

#[derive(Debug, Deserialize)]
pub(super) struct ActivityFilter {
    user_id: String,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ActivityIncludes {
    #[serde(default)]
    media: Vec<ApiMedia>,
}

/// A v2 post as the Activity API's payload carries it.
#[derive(Debug, Deserialize)]
pub(super) struct PushedPost {
    id: String,
    /// Absent from a payload that only names the post: then the poll reads it, rather than a
    /// post judged empty here and then "edited" when the poll sees its words.
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    author_id: Option<String>,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    edit_history_tweet_ids: Vec<String>,
    #[serde(default)]
    entities: Option<TweetEntities>,
    #[serde(default)]
    attachments: Option<Attachments>,
    #[serde(default)]
    source: Option<String>,
}

/// The Account Activity API's delivery.
#[derive(Debug, Deserialize)]
pub(super) struct AccountActivityDelivery {
    for_user_id: String,
    #[serde(default)]
    tweet_create_events: Vec<V1Tweet>,
    #[serde(default)]
    tweet_delete_events: Vec<V1Delete>,
}

#[derive(Debug, Deserialize)]
pub(super) struct V1Tweet {
    id_str: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    created_at: Option<String>,
    user: V1User,
    #[serde(default)]
    entities: V1Entities,
    #[serde(default)]
    extended_entities: Option<V1Entities>,
    #[serde(default)]
    extended_tweet: Option<V1Extended>,
    #[serde(default)]
    edit_history: Option<V1EditHistory>,
    #[serde(default)]
    source: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct V1User {
    id_str: String,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct V1Entities {
    #[serde(default)]
    urls: Vec<UrlEntity>,
    #[serde(default)]
    media: Vec<V1Media>,
}

#[derive(Debug, Deserialize)]
pub(super) struct V1Media {
    id_str: String,
    url: String,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    media_url_https: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct V1Extended {
    full_text: String,
    #[serde(default)]
    entities: Option<V1Entities>,
    #[serde(default)]
    extended_entities: Option<V1Entities>,
}

#[derive(Debug, Deserialize)]
pub(super) struct V1EditHistory {
    #[serde(default)]
    edit_tweet_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct V1Delete {
    status: V1DeletedStatus,
    #[serde(default)]
    timestamp_ms: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct V1DeletedStatus {
    id: String,
    user_id: String,
}

/// The changes of one verified delivery, by user id.
pub(super) fn parse(body: &[u8]) -> Result<Vec<(String, Change)>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    if value.get("for_user_id").is_some() {
        let d: AccountActivityDelivery =
            serde_json::from_value(value).map_err(|e| format!("account activity: {e}"))?;
        return Ok(account_activity(d));
    }
    let d: ActivityDelivery =
        serde_json::from_value(value).map_err(|e| format!("activity event: {e}"))?;
    activity(d.data)
}

pub(super) fn activity(e: ActivityEvent) -> Result<Vec<(String, Change)>, String> {
    let user = e.filter.user_id;
    let change = match e.event_type.as_str() {
        "post.create" => {
            let p: PushedPost = serde_json::from_value(e.payload)
                .map_err(|err| format!("post.create payload: {err}"))?;
            if p.author_id.as_deref().is_some_and(|a| a != user) {
                return Ok(Vec::new());
            }
            let Some(text) = p.text else {
                tracing::warn!(post = %p.id, "an X post.create without the post's text: left to the poll");
                return Ok(Vec::new());
            };
            let media = e
                .includes
                .media
                .into_iter()
                .map(|m| (m.media_key.clone(), m))
                .collect();
            Change::Created(
                Box::new(ApiTweet {
                    edit_history_tweet_ids: if p.edit_history_tweet_ids.is_empty() {
                        vec![p.id.clone()]
                    } else {
                        p.edit_history_tweet_ids
                    },
                    id: p.id,
                    text,
                    created_at: p.created_at.unwrap_or_else(Utc::now),
                    entities: p.entities,
                    attachments: p.attachments,
                    source: p.source,
                }),
                media,
            )
        }
        "post.delete" => {
            let id = e
                .payload
                .get("id")
                .and_then(|v| v.as_str())
                .ok_or("post.delete payload without an id")?;
            Change::Deleted {
                post_id: id.to_owned(),
                at: Utc::now(),
            }
        }
        // Other events of a subscription tocsin did not make: nothing to judge.
        _ => return Ok(Vec::new()),
    };
    Ok(vec![(user, change)])
}

pub(super) fn account_activity(d: AccountActivityDelivery) -> Vec<(String, Change)> {
    let user = d.for_user_id;
    let mut out = Vec::new();
    for t in d.tweet_create_events {
        if t.user.id_str != user {
            continue;
        }
        let (tweet, media) = v1_tweet(t);
        out.push((user.clone(), Change::Created(Box::new(tweet), media)));
    }
    for del in d.tweet_delete_events {
        if del.status.user_id != user {
            continue;
        }
        let at = del
            .timestamp_ms
            .and_then(|ms| ms.parse::<i64>().ok())
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
            .unwrap_or_else(Utc::now);
        out.push((
            user.clone(),
            Change::Deleted {
                post_id: del.status.id,
                at,
            },
        ));
    }
    out
}

/// A v1.1 tweet in the v2 shape the poller reads: the full text, its t.co links, its media
/// as keys (the media's own t.co link marked as the attachment's, as v2 marks it).
pub(super) fn v1_tweet(t: V1Tweet) -> (ApiTweet, HashMap<String, ApiMedia>) {
    let (text, entities, extended) = match t.extended_tweet {
        Some(x) => (
            x.full_text,
            x.entities.unwrap_or_default(),
            x.extended_entities,
        ),
        None => (t.text, t.entities, t.extended_entities),
    };
    let media_list = extended.map(|e| e.media).unwrap_or(entities.media);
    let mut urls = entities.urls;
    let mut media = HashMap::new();
    let mut keys = Vec::new();
    for m in media_list {
        if !urls.iter().any(|u| u.url == m.url) {
            urls.push(UrlEntity {
                url: m.url.clone(),
                expanded_url: None,
                media_key: Some(m.id_str.clone()),
            });
        }
        keys.push(m.id_str.clone());
        media.insert(
            m.id_str.clone(),
            ApiMedia {
                media_key: m.id_str,
                kind: m.kind,
                url: m.media_url_https,
                preview_image_url: None,
            },
        );
    }
    let created_at = t
        .created_at
        .and_then(|c| DateTime::parse_from_str(&c, "%a %b %d %H:%M:%S %z %Y").ok())
        .map_or_else(Utc::now, |d| d.with_timezone(&Utc));
    let history = t
        .edit_history
        .map(|h| h.edit_tweet_ids)
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| vec![t.id_str.clone()]);
    let tweet = ApiTweet {
        id: t.id_str,
        text,
        created_at,
        edit_history_tweet_ids: history,
        entities: Some(TweetEntities { urls }),
        attachments: (!keys.is_empty()).then_some(Attachments { media_keys: keys }),
        source: t.source.map(|s| client_name(&s)),
    };
    (tweet, media)
}

/// v1.1 names the client as an HTML link (`<a href="…">Name</a>`); v2 as the name.
pub(super) fn client_name(source: &str) -> String {
    match (source.find('>'), source.rfind("</a>")) {
        (Some(start), Some(end)) if start < end => source[start + 1..end].to_owned(),
        _ => source.to_owned(),
    }
}

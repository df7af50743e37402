//! The X API v2 as tocsin reads it: the wire types, the client, the rate-limit headers, and
//! the conversion of tweets and users into observations.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use chrono::{DateTime, TimeZone, Utc};
use reqwest::{StatusCode, header::HeaderMap};
use serde::Deserialize;
use url::Url;

use crate::{
    config::Secret,
    model::{Post, PostContent, Profile, digest},
    watch::{RateBudget, SourceError},
};

/// Posts per timeline page: X's maximum.
pub(super) const PAGE: u32 = 100;
/// Pages read for one account before handing over what was read (3,200 posts: as far back as
/// X's timeline goes).
pub(super) const MAX_PAGES: usize = 32;

pub(super) const TWEET_FIELDS: &str =
    "created_at,edit_history_tweet_ids,entities,attachments,source";
pub(super) const MEDIA_FIELDS: &str = "media_key,type,url,preview_image_url,alt_text";
pub(super) const USER_FIELDS: &str = "name,username,description,url,entities,profile_image_url,pinned_tweet_id,protected,verified_type";

// ---------------------------------------------------------------------------------------------
// The wire.

#[derive(Debug, Deserialize)]
pub(super) struct ApiError {
    #[serde(default)]
    pub(super) title: String,
    #[serde(default)]
    pub(super) detail: String,
    #[serde(default)]
    pub(super) value: Option<String>,
    #[serde(default)]
    pub(super) resource_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct TimelinePage {
    #[serde(default)]
    pub(super) data: Vec<ApiTweet>,
    #[serde(default)]
    pub(super) includes: Includes,
    #[serde(default)]
    pub(super) meta: Meta,
    #[serde(default)]
    pub(super) errors: Vec<ApiError>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Includes {
    #[serde(default)]
    pub(super) media: Vec<ApiMedia>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Meta {
    #[serde(default)]
    pub(super) next_token: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct ApiTweet {
    pub(super) id: String,
    #[serde(default)]
    pub(super) text: String,
    pub(super) created_at: DateTime<Utc>,
    #[serde(default)]
    pub(super) edit_history_tweet_ids: Vec<String>,
    #[serde(default)]
    pub(super) entities: Option<TweetEntities>,
    #[serde(default)]
    pub(super) attachments: Option<Attachments>,
    #[serde(default)]
    pub(super) source: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct TweetEntities {
    #[serde(default)]
    pub(super) urls: Vec<UrlEntity>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct UrlEntity {
    pub(super) url: String,
    #[serde(default)]
    pub(super) expanded_url: Option<String>,
    /// Set on the link X appends for an attachment (`…/status/ID/photo/1`).
    #[serde(default)]
    pub(super) media_key: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct Attachments {
    #[serde(default)]
    pub(super) media_keys: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct ApiMedia {
    pub(super) media_key: String,
    #[serde(rename = "type", default)]
    pub(super) kind: String,
    #[serde(default)]
    pub(super) url: Option<String>,
    #[serde(default)]
    pub(super) preview_image_url: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct UsersPage {
    #[serde(default)]
    pub(super) data: Vec<ApiUser>,
    #[serde(default)]
    pub(super) errors: Vec<ApiError>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ApiUser {
    pub(super) id: String,
    #[serde(default)]
    pub(super) name: String,
    #[serde(default)]
    pub(super) username: String,
    #[serde(default)]
    pub(super) description: String,
    #[serde(default)]
    pub(super) url: Option<String>,
    #[serde(default)]
    pub(super) entities: Option<UserEntities>,
    #[serde(default)]
    pub(super) profile_image_url: Option<String>,
    #[serde(default)]
    pub(super) pinned_tweet_id: Option<String>,
    #[serde(default)]
    pub(super) protected: bool,
    #[serde(default)]
    pub(super) verified_type: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct UserEntities {
    #[serde(default)]
    pub(super) url: Option<TweetEntities>,
    #[serde(default)]
    pub(super) description: Option<TweetEntities>,
}

/// Reads `x-rate-limit-*`: `reset` is a Unix time in seconds.
pub fn rate_budget(h: &HeaderMap) -> Option<RateBudget> {
    let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let remaining = get("x-rate-limit-remaining")?.parse().ok()?;
    Some(RateBudget {
        limit: get("x-rate-limit-limit").and_then(|v| v.parse().ok()),
        remaining,
        reset: get("x-rate-limit-reset")
            .and_then(|v| v.parse::<i64>().ok())
            .and_then(|s| Utc.timestamp_opt(s, 0).single()),
    })
}

pub(super) fn until(reset: Option<DateTime<Utc>>) -> Option<Duration> {
    reset.map(|r| (r - Utc::now()).to_std().unwrap_or(Duration::ZERO))
}

/// An answer: the budget it announced (read even from errors) and its body or error.
pub(super) struct Answer<T> {
    pub(super) budget: Option<RateBudget>,
    pub(super) result: Result<T, SourceError>,
}

pub(super) struct Api {
    pub(super) http: reqwest::Client,
    pub(super) base: Url,
    pub(super) token: Secret,
}

impl Api {
    pub(super) async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Answer<T> {
        let url = match self.base.join(path) {
            Ok(u) => u,
            Err(e) => {
                return Answer {
                    budget: None,
                    result: Err(SourceError::Malformed {
                        what: path.into(),
                        detail: e.to_string(),
                    }),
                };
            }
        };
        let resp = match self
            .http
            .get(url)
            .query(query)
            .bearer_auth(self.token.expose())
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                return Answer {
                    budget: None,
                    result: Err(e.into()),
                };
            }
        };
        let budget = rate_budget(resp.headers());
        let status = resp.status();
        let result = match status {
            s if s.is_success() => resp.json::<T>().await.map_err(|e| SourceError::Malformed {
                what: path.into(),
                detail: e.to_string(),
            }),
            StatusCode::TOO_MANY_REQUESTS => Err(SourceError::RateLimited(
                until(budget.as_ref().and_then(|b| b.reset))
                    .unwrap_or(Duration::from_secs(60))
                    .max(Duration::from_secs(1)),
            )),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(SourceError::Unauthorized {
                status: status.as_u16(),
            }),
            _ => Err(SourceError::Status {
                status: status.as_u16(),
                what: path.into(),
            }),
        };
        Answer { budget, result }
    }
}

/// X ids are decimal snowflakes; compare them as numbers.
pub(super) fn newer(a: &str, b: &str) -> bool {
    (a.len(), a) > (b.len(), b)
}

/// Replaces every t.co wrapper in `text` with its target: what a reader lands on.
pub(super) fn expand(text: &str, entities: Option<&TweetEntities>) -> (String, Vec<String>) {
    let mut text = text.to_owned();
    let mut links = Vec::new();
    for u in entities.map(|e| e.urls.as_slice()).unwrap_or_default() {
        if u.media_key.is_some() {
            // The attachment's own link names the post's id, which changes with every edit:
            // the media are compared by their digests instead.
            text = text.replace(&u.url, "").trim_end().to_owned();
            continue;
        }
        let target = u.expanded_url.clone().unwrap_or_else(|| u.url.clone());
        text = text.replace(&u.url, &target);
        links.push(target);
    }
    (text, links)
}

pub(super) fn post(t: &ApiTweet, media: &HashMap<String, ApiMedia>, history: bool) -> Post {
    let (text, links) = expand(&t.text, t.entities.as_ref());
    let media = t
        .attachments
        .as_ref()
        .map(|a| a.media_keys.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|k| match media.get(k) {
            Some(m) => format!(
                "{}:url:{}",
                m.kind,
                digest(
                    m.url
                        .as_deref()
                        .or(m.preview_image_url.as_deref())
                        .unwrap_or(k)
                )
            ),
            None => format!("media:key:{k}"),
        })
        .collect();
    // The first id of the edit history is the post's identity across edits.
    let id = t
        .edit_history_tweet_ids
        .first()
        .cloned()
        .unwrap_or_else(|| t.id.clone());
    let edited = t.edit_history_tweet_ids.len() > 1;
    Post {
        id,
        url: Some(format!("https://x.com/i/web/status/{}", t.id)),
        created_at: t.created_at,
        edited_at: edited.then_some(t.created_at),
        content: PostContent { text, links, media },
        client: t.source.clone(),
        history,
    }
}

pub(super) fn profile(u: &ApiUser) -> Profile {
    let mut fields = BTreeMap::new();
    let entities = u.entities.as_ref();
    let (note, _) = expand(
        &u.description,
        entities.and_then(|e| e.description.as_ref()),
    );
    let wrapped = u.url.clone().unwrap_or_default();
    let (url, _) = expand(&wrapped, entities.and_then(|e| e.url.as_ref()));
    let mut put = |k: &str, v: String| {
        fields.insert(k.to_owned(), v);
    };
    put("handle", u.username.clone());
    put("display_name", u.name.clone());
    put("note", note);
    // The expanded target: a swapped target behind the same t.co wrapper is a changed link.
    put("url", url);
    put("avatar", u.profile_image_url.clone().unwrap_or_default());
    put("pinned_post", u.pinned_tweet_id.clone().unwrap_or_default());
    put("locked", u.protected.to_string());
    put("verified_type", u.verified_type.clone().unwrap_or_default());
    Profile { fields }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tco_links_are_compared_by_their_target_and_edits_by_their_first_id() {
        let t: ApiTweet = serde_json::from_value(serde_json::json!({
            "id": "1800000000000000002",
            "text": "Claim now https://t.co/AbC123 https://t.co/Pic456",
            "created_at": "2026-11-24T10:00:00.000Z",
            "edit_history_tweet_ids": ["1800000000000000001", "1800000000000000002"],
            "entities": {"urls": [{"start": 10, "end": 33, "url": "https://t.co/AbC123",
                "expanded_url": "https://evil.example/claim", "display_url": "evil.example/claim"},
                {"start": 34, "end": 57, "url": "https://t.co/Pic456", "media_key": "3_1",
                "expanded_url": "https://x.com/examplecorp/status/1800000000000000002/photo/1",
                "display_url": "pic.x.com/Pic456"}]},
            "attachments": {"media_keys": ["3_1"]}
        }))
        .unwrap();
        let media = HashMap::from([(
            "3_1".to_owned(),
            ApiMedia {
                media_key: "3_1".into(),
                kind: "photo".into(),
                url: Some("https://pbs.twimg.com/media/a.jpg".into()),
                preview_image_url: None,
            },
        )]);
        let p = post(&t, &media, false);
        assert_eq!(p.id, "1800000000000000001");
        assert_eq!(p.content.text, "Claim now https://evil.example/claim");
        assert_eq!(
            p.content.links,
            vec!["https://evil.example/claim".to_owned()]
        );
        assert_eq!(p.content.media.len(), 1);
        assert!(p.edited_at.is_some());
        assert!(newer("1800000000000000002", "999"));
    }

    #[test]
    fn reset_headers_are_unix_seconds() {
        let mut h = HeaderMap::new();
        h.insert("x-rate-limit-limit", "1500".parse().unwrap());
        h.insert("x-rate-limit-remaining", "7".parse().unwrap());
        h.insert("x-rate-limit-reset", "1705420800".parse().unwrap());
        let b = rate_budget(&h).unwrap();
        assert_eq!((b.limit, b.remaining), (Some(1500), 7));
        assert_eq!(b.reset.unwrap().timestamp(), 1705420800);
    }
}
